"""File fingerprints for provenance and the load ledger."""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_in_background(paths: dict[str, Path]) -> dict[str, Future]:
    """Start hashing each file on a thread (hashlib releases the GIL): overlaps with the parse."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")
    futures = {name: pool.submit(sha256_file, path) for name, path in paths.items()}
    pool.shutdown(wait=False)
    return futures
