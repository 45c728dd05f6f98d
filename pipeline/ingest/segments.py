"""Several files read as one table: a row's key is its file's base plus its line number.

The loader keys rows by ``source_line``; a table made from several files (a FHIR Bulk
Data export writes ``ServiceRequest.000.ndjson``, ``.001``, ...) numbers their lines one
after another. A reject must still name the file and the line a person finds in it, so
each file's key range is kept as a segment, and a query maps a key back by a range join
on a small table of them (`place`). An export can hold thousands of files: a mapping written
into the query (a CASE with a branch a file) made the query's text and its cost grow as rows
times files (10,000 files a type: seconds to plan each query); the join costs rows plus files.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

TABLE = "_segments"  # the temp table `place` fills on the caller's connection


@dataclass(frozen=True)
class Segment:
    label: str  # the file as rejects name it
    first_key: int  # the key of its line 1
    last_key: int


@dataclass(frozen=True)
class Place:
    """SQL naming the file and line of a key: `join` goes after the FROM item that holds the key."""

    join: str
    file: str
    line: str
    where: str  # 'line 12', or 'ServiceRequest.001.ndjson line 12' across files


def file_line(key: int, segments: list[Segment]) -> tuple[str, int] | None:
    """The file (as rejects name it) and line of one key, in Python: for the few keys a message names (a query's
    many keys go through ``place``). None for a key in no segment."""
    return next(((s.label, key - s.first_key + 1) for s in segments if s.first_key <= key <= s.last_key), None)


def place(con: duckdb.DuckDBPyConnection, key: str, segments: list[Segment], default_file: str = "NULL") -> Place:
    """How a query names the file and line of `key` (a SQL expression). Without segments: the line is the key and the
    file `default_file` (a SQL expression). With them: a LEFT JOIN on `TABLE`, filled here on `con` with one row a
    file (label, its base name, first_key, last_key); a key in no segment has no file and no line, as before."""
    if not segments:
        return Place("", default_file, key, f"'line ' || {key}")
    _fill(con, segments)
    line = f"({key} - {TABLE}.first_key + 1)"
    return Place(
        f" LEFT JOIN {TABLE} ON {key} BETWEEN {TABLE}.first_key AND {TABLE}.last_key",
        f"{TABLE}.label",
        line,
        f"{TABLE}.name || ' line ' || {line}",
    )


def _fill(con: duckdb.DuckDBPyConnection, segments: list[Segment]) -> None:
    # handed over as Arrow, never as SQL text: a literal a file was what made the query's text grow with the files
    rows = pa.table(
        {
            "label": pa.array([s.label for s in segments], pa.string()),
            "name": pa.array([s.label.rsplit("/", 1)[-1] for s in segments], pa.string()),
            "first_key": pa.array([s.first_key for s in segments], pa.int64()),
            "last_key": pa.array([s.last_key for s in segments], pa.int64()),
        }
    )
    con.register("_segments_arrow", rows)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {TABLE} AS SELECT * FROM _segments_arrow")
    finally:
        con.unregister("_segments_arrow")
