"""Record number -> the physical line where the record starts, when quoted fields hold line breaks.

The CSV reader numbers records; a reject must name the line a person finds in an editor.
They agree unless a quoted field holds a line break, which shows as more line breaks in
the file than records (counted while the file is fingerprinted, so the common case costs
nothing). Only then one vectorised pass counts the breaks inside each record's fields and
the typed file's line numbers are rewritten; no Python loop over rows.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import polars as pl

from pipeline.ingest import textfile
from pipeline.ingest.source_store import LINE
from pipeline.ingest.textfile import Source
from pipeline.sqltext import ident, literal

RECORD = "_record_line"


def records_match_lines(line_breaks: int, records: int, header_breaks: int = 0) -> bool:
    """One break ends the header and each record (the last one may lack it): nothing to remap."""
    return line_breaks - header_breaks in (records, records + 1)


def _line_map(source: Source, header_breaks: int) -> pl.LazyFrame:
    lf = textfile.scan(source, RECORD, ragged=True)
    names = [c for c in lf.collect_schema().names() if c != RECORD]
    inside = pl.sum_horizontal([pl.col(c).str.count_matches("\n", literal=True).fill_null(0) for c in names])
    # a record starts after the header's breaks, one break per earlier record, and the breaks inside earlier records
    return lf.select(
        pl.col(RECORD).cast(pl.Int64),
        (pl.col(RECORD).cast(pl.Int64) + header_breaks + inside.cum_sum() - inside).alias("_physical_line"),
    )


def rewrite(typed_parquet: Path, source: Source, header_breaks: int, scratch: Path) -> None:
    """Rewrite the typed file's line numbers as physical lines (DuckDB joins out of core)."""
    mapping = scratch / f"{typed_parquet.stem}.lines.parquet"
    _line_map(source, header_breaks).sink_parquet(mapping)
    out = typed_parquet.with_name(typed_parquet.stem + ".relined.parquet")
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute(f"SET temp_directory = {literal(scratch / 'duckdb_tmp')}")
        con.execute(
            f"""COPY (SELECT t.* REPLACE (m._physical_line AS {ident(LINE)})
                FROM read_parquet({literal(typed_parquet)}) AS t
                JOIN read_parquet({literal(mapping)}) AS m ON m.{RECORD} = t.{ident(LINE)}
                ORDER BY m.{RECORD})
            TO {literal(out)} (FORMAT parquet, COMPRESSION lz4)"""
        )
    finally:
        con.close()
    os.replace(out, typed_parquet)
    mapping.unlink()
