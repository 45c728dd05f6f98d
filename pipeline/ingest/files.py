"""File fingerprints for provenance and the load ledger."""

from __future__ import annotations

import hashlib
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHUNK = 1 << 20
# the fingerprint's reads: half a megabyte stays in the cache between the hash and the LF count (a 630 MB
# NDJSON file: 0.605-0.631 CPU-s read a megabyte at a time into new bytes, 0.587-0.593 into one 512 KB buffer)
READ = 1 << 19
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Fingerprint:
    sha256: str  # "" when not asked for
    line_breaks: int  # LF bytes: the loader compares them with the records read (quoted line breaks)
    first_nul: int | None = None  # byte offset of the first NUL byte (no UTF-8 text holds one), else None
    gzip: bool = False  # its first bytes are gzip's
    # its lines as a line reader numbers them (its LF bytes and a last line without one); a gzip file's: its text's
    # when asked (`fingerprint`'s gzip_text), None when not asked or when the text cannot be decompressed to the end
    lines: int | None = None


def count_lf(data, scratch: np.ndarray | None = None) -> int:
    """LF bytes in `data` (bytes or a memoryview): numpy is 2.5x as fast as bytes.count and lets go of the GIL
    the parse threads need. `scratch`, a bool array at least as long, takes the comparison instead of a new one."""
    array = np.frombuffer(data, np.uint8)
    return int(np.count_nonzero(np.equal(array, 10, out=None if scratch is None else scratch[: array.size])))


def is_broken_link(path: Path) -> bool:
    """A link to a file that does not exist: it reads as missing, so a user would be told to add the file it names."""
    return path.is_symlink() and not path.exists()


def sha256_file(path: Path) -> str:
    return fingerprint(path).sha256


def fingerprint(path: Path, with_hash: bool = True, gzip_text: bool = False) -> Fingerprint:
    """One pass over the file: its SHA-256, its number of LF bytes (counting costs next to nothing), whether it
    is gzip, and its lines; with gzip_text, a gzip file's text is decompressed in the same pass to count its lines
    (a FHIR reader's check that it read every line: a second open and read of the file otherwise).

    Read into one buffer, compared into another: no new bytes per read (11 GB of NDJSON at 10M orders)."""
    digest = hashlib.sha256() if with_hash else None
    breaks, done, first_nul, last, gzipped = 0, 0, None, b"", False
    buffer = bytearray(READ)
    view, is_lf = memoryview(buffer), np.empty(READ, np.bool_)
    text: _GzipText | None = None
    with Path(path).open("rb", buffering=0) as fh:
        while size := fh.readinto(buffer):
            if digest is not None:
                digest.update(view[:size])
            breaks += count_lf(view[:size], is_lf)
            if first_nul is None and (at := buffer.find(0, 0, size)) >= 0:  # memchr: next to nothing
                first_nul = done + at
            if done == 0 and (gzipped := buffer.startswith(GZIP_MAGIC, 0, size)) and gzip_text:
                text = _GzipText()
            if text is not None:
                text.feed(view[:size], is_lf)
            done += size
            last = bytes(view[size - 1 : size])
    if text is not None:
        lines = text.lines()
    elif gzipped:  # not asked: the text's lines are not the bytes' LFs
        lines = None
    else:
        lines = breaks + (done > 0 and last != b"\n")
    return Fingerprint(digest.hexdigest() if digest is not None else "", breaks, first_nul, gzipped, lines)


class _GzipText:
    """The LF bytes of a gzip file's text, fed its compressed bytes: several members, as Python's gzip reads them
    (zero bytes padding the end are skipped; anything else after a member must be another one)."""

    def __init__(self):
        self.inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.breaks, self.last, self.broken, self.between = 0, b"\n", False, False

    def feed(self, data, scratch: np.ndarray) -> None:
        pending = bytes(data)
        while pending and not self.broken:
            if self.between:  # after a member: padding, or the next member
                pending = pending.lstrip(b"\0")
                if not pending:
                    return
                if not GZIP_MAGIC.startswith(pending[:2]):  # a chunk may end inside the magic
                    self.broken = True
                    return
                self.inflate, self.between = zlib.decompressobj(16 + zlib.MAX_WBITS), False
            try:
                out = self.inflate.decompress(pending, READ)
            except zlib.error:
                self.broken = True
                return
            if out:
                self.breaks += count_lf(out, scratch if len(out) <= scratch.size else None)
                self.last = out[-1:]
            if self.inflate.eof:
                pending, self.between = self.inflate.unused_data, True
            else:
                pending = self.inflate.unconsumed_tail

    def lines(self) -> int | None:
        """Lines of the text as `lines` numbers them; None when it could not be decompressed to the end."""
        if self.broken or not self.between:
            return None
        return self.breaks + (self.last != b"\n")


def line_of(path: Path, offset: int) -> int:
    """The line (from 1) holding byte `offset` of the file (error path only)."""
    lines, done = 1, 0
    with Path(path).open("rb") as fh:
        while done < offset and (chunk := fh.read(min(CHUNK, offset - done))):
            lines += count_lf(chunk)
            done += len(chunk)
    return lines


def fingerprint_in_background(paths: dict[str, Path], with_hash: bool = True, gzip_text: bool = False) -> dict[str, Future]:
    """Fingerprint each file on a thread (hashlib releases the GIL): overlaps with the parse.

    Names that share a file (the sheets of one workbook) share its one pass."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")
    by_path: dict[Path, Future] = {}
    futures = {}
    for name, path in paths.items():
        if path not in by_path:
            by_path[path] = pool.submit(fingerprint, path, with_hash, gzip_text)
        futures[name] = by_path[path]
    pool.shutdown(wait=False)
    return futures
