"""Opening the DuckDB warehouse: one writer at a time, UTC session, no progress bar."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import duckdb

from pipeline.errors import WarehouseLockedError


def connect(path: Path | str, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        text = str(exc)
        if "lock" in text.lower():
            pid = re.search(r"PID (\d+)", text)
            holder = f" (process {pid.group(1)})" if pid else ""
            raise WarehouseLockedError(
                f"{path}: another process holds the warehouse for writing{holder}; "
                "wait for it to finish, or pass a different --warehouse") from None
        raise
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    return con


def set_pseudonym_key(con: duckdb.DuckDBPyConnection, key: bytes) -> None:
    """HMAC pads for the pseudonym model, in a temp table that never reaches the file."""
    block = key if len(key) <= 64 else hashlib.sha256(key).digest()
    block = block.ljust(64, b"\0")
    ipad = bytes(b ^ 0x36 for b in block)
    opad = bytes(b ^ 0x5C for b in block)
    con.execute("CREATE OR REPLACE TEMP TABLE pseudonym_key_pads AS SELECT ?::BLOB AS ipad, ?::BLOB AS opad",
                [ipad, opad])
