"""File fingerprints: the SHA-256 and LF count the ledger and the readers rely on, over chunk edges."""

from __future__ import annotations

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
