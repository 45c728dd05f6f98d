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
}


def write_tables(con: duckdb.DuckDBPyConnection, out_dir: Path) -> list[Path]:
    """COPY each mart to CSV/Parquet; rows keep the mart's ORDER BY, so reruns are byte-identical."""
    written = []
    for table, (stem, formats) in DATA_OUTPUTS.items():
        order = " ORDER BY table_name, source_line, column_name, reason" if table == "load_rejects" else ""
        query = f"SELECT * FROM {table}{order}"
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


def publish(staging: Path, out_dir: Path) -> None:
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
    shutil.rmtree(staging, ignore_errors=True)
