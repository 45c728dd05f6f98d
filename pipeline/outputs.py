"""Data outputs (tables as CSV and Parquet) and atomic publication of an output folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import duckdb

# table in the warehouse -> output file stem, and the formats written
DATA_OUTPUTS = {
    "mart_audited_orders": ("audited_orders", ("csv", "parquet")),
    "mart_cases": ("cases", ("csv", "parquet")),
    "mart_attrition": ("attrition", ("csv",)),
    "load_rejects": ("rejects", ("csv",)),
    "load_ledger": ("load_ledger", ("csv",)),
}


# rejects and ledger: the load ids and times of a run are not data (reruns stay byte-identical)
OUTPUT_QUERIES = {
    "load_rejects": "SELECT table_name, source_file, source_line, column_name, value, reason, action FROM load_rejects "
                    "ORDER BY table_name, source_file, source_line, column_name, reason",
    "load_ledger": "SELECT table_name, path, sha256, first_month, last_month, rows_read, rows_loaded, rows_rejected "
                   "FROM load_ledger WHERE action IN ('loaded', 'replaced') AND superseded_by IS NULL "
                   "ORDER BY table_name, first_month, path",
}


def write_tables(con: duckdb.DuckDBPyConnection, out_dir: Path) -> list[Path]:
    """COPY each mart to CSV/Parquet; rows keep the mart's ORDER BY, so reruns are byte-identical."""
    written = []
    for table, (stem, formats) in DATA_OUTPUTS.items():
        query = OUTPUT_QUERIES.get(table, f"SELECT * FROM {table}")
        for fmt in formats:
            path = out_dir / f"{stem}.{fmt}"
            options = "FORMAT csv, HEADER true" if fmt == "csv" else "FORMAT parquet, COMPRESSION zstd"
            con.execute(f"COPY ({query}) TO '{path.as_posix()}' ({options})")
            written.append(path)
    return written


def write_json(path: Path, payload: dict) -> Path:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return path


def staging_dir_for(out_dir: Path) -> Path:
    """A fresh folder beside the destination (same file system, so the final move is a rename)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.staging-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    return staging


def publish(staging: Path, out_dir: Path, on_file=None) -> None:
    """Move every staged file into out_dir, each by an atomic rename, then drop the staging folder.

    A reader sees either the old or the new version of each file, never a half-written one.
    Files of an earlier run that this run does not write (for example another month's
    folder) are left alone.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    for src in sorted(staging.rglob("*")):
        if src.is_dir():
            continue
        dest = out_dir / src.relative_to(staging)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)
        if on_file is not None:
            on_file(dest.name)
    shutil.rmtree(staging, ignore_errors=True)
