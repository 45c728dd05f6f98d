"""File fingerprints for provenance and the load ledger."""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHUNK = 1 << 20
# the fingerprint's reads: half a megabyte stays in the cache between the hash and the LF count (a 630 MB
# NDJSON file: 0.605-0.631 CPU-s read a megabyte at a time into new bytes, 0.587-0.593 into one 512 KB buffer)
READ = 1 << 19


@dataclass(frozen=True)
class Fingerprint:
    sha256: str  # "" when not asked for
    line_breaks: int  # LF bytes: the loader compares them with the records read (quoted line breaks)
    first_nul: int | None = None  # byte offset of the first NUL byte (no UTF-8 text holds one), else None


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


def fingerprint(path: Path, with_hash: bool = True) -> Fingerprint:
    """One pass over the file: its SHA-256 and its number of LF bytes (counting costs next to nothing).

    Read into one buffer, compared into another: no new bytes per read (11 GB of NDJSON at 10M orders)."""
    digest = hashlib.sha256() if with_hash else None
    breaks, done, first_nul = 0, 0, None
    buffer = bytearray(READ)
    view, is_lf = memoryview(buffer), np.empty(READ, np.bool_)
    with Path(path).open("rb", buffering=0) as fh:
        while size := fh.readinto(buffer):
            if digest is not None:
                digest.update(view[:size])
            breaks += count_lf(view[:size], is_lf)
            if first_nul is None and (at := buffer.find(0, 0, size)) >= 0:  # memchr: next to nothing
                first_nul = done + at
            done += size
    return Fingerprint(digest.hexdigest() if digest is not None else "", breaks, first_nul)


def line_of(path: Path, offset: int) -> int:
    """The line (from 1) holding byte `offset` of the file (error path only)."""
    lines, done = 1, 0
    with Path(path).open("rb") as fh:
        while done < offset and (chunk := fh.read(min(CHUNK, offset - done))):
            lines += count_lf(chunk)
            done += len(chunk)
    return lines


def fingerprint_in_background(paths: dict[str, Path], with_hash: bool = True) -> dict[str, Future]:
    """Fingerprint each file on a thread (hashlib releases the GIL): overlaps with the parse.

    Names that share a file (the sheets of one workbook) share its one pass."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")
    by_path: dict[Path, Future] = {}
    futures = {}
    for name, path in paths.items():
        if path not in by_path:
            by_path[path] = pool.submit(fingerprint, path, with_hash)
        futures[name] = by_path[path]
    pool.shutdown(wait=False)
    return futures
