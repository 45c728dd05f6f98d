"""File fingerprints: the SHA-256 and LF count the ledger and the readers rely on, over chunk edges."""

from __future__ import annotations

import gzip
import hashlib

import pytest

from pipeline.ingest.files import READ, fingerprint, fingerprint_in_background


@pytest.mark.parametrize(
    "data",
    [b"", b"\n", b"no line break", b'{"a": 1}\n' * 3, (b"x" * 1000 + b"\n") * (2 * READ // 1001) + b"tail without LF"],
    ids=["empty", "one LF", "no LF", "three lines", "over two chunks, last one short"],
)
def test_a_fingerprint_is_the_files_sha256_and_lf_count(data, tmp_path):
    path = tmp_path / "f.ndjson"
    path.write_bytes(data)
    assert fingerprint(path).sha256 == hashlib.sha256(data).hexdigest()
    assert fingerprint(path).line_breaks == data.count(b"\n")
    assert fingerprint(path, with_hash=False).sha256 == ""
    assert fingerprint(path, with_hash=False).line_breaks == data.count(b"\n")
    assert fingerprint_in_background({"f": path})["f"].result() == fingerprint(path)


def _member(text: bytes) -> bytes:
    return gzip.compress(text, mtime=0)


BIG = (b"y" * 999 + b"\n") * (3 * READ // 1000)  # its gzip bytes span chunks: members and padding cut across reads


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        (_member(b""), 0),
        (_member(b"one line, no LF"), 1),
        (_member(b'{"a": 1}\n' * 3), 3),
        (_member(b"a\nb") + _member(b"c\n"), 2),  # two members: the text runs on ("a", "bc")
        (_member(b"a\n") + b"\0" * 1000, 1),  # zero bytes padding the end (as gzip reads them)
        (_member(BIG) + _member(b"tail"), 3 * READ // 1000 + 1),
        (_member(b"a\nb\n")[:-9], None),  # cut short
        (_member(b"a\n") + b"junk", None),  # something after a member that is not another one
    ],
    ids=["empty text", "no LF", "three lines", "two members", "padded", "over chunks", "cut short", "trailing junk"],
)
def test_a_gzip_files_text_lines_are_counted_in_the_same_pass(tmp_path, data, lines):
    """gzip_text: the one pass that hashes a gzip file counts its text's lines as gzip.open reads them."""
    path = tmp_path / "f.ndjson.gz"
    path.write_bytes(data)
    found = fingerprint(path, gzip_text=True)
    assert (found.gzip, found.lines) == (True, lines)
    assert (found.sha256, found.line_breaks) == (hashlib.sha256(data).hexdigest(), data.count(b"\n"))
    assert fingerprint(path).lines is None  # not asked: a CSV extract's fingerprint decompresses nothing


@pytest.mark.parametrize(
    ("data", "lines"), [(b"", 0), (b"a\n", 1), (b"a\nb", 2), (b"\x1f", 1)], ids=["empty", "LF", "no LF", "one byte"]
)
def test_a_plain_files_lines_are_its_lf_bytes_and_a_last_line_without_one(tmp_path, data, lines):
    path = tmp_path / "f.ndjson"
    path.write_bytes(data)
    assert (fingerprint(path).gzip, fingerprint(path).lines) == (False, lines)
