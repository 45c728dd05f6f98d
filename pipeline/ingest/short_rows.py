"""Rows of a delimited file with fewer fields than the header: found among the rejects, set aside whole.

Polars reads a row's missing fields as empty, so half of a row split by an unquoted line
break is typed as if its values sat in the header's columns. When the break falls before
the patient id, the id lands in a timestamp or number column, fails its check, and its raw
text would be published in rejects.csv as that column's "value". A short row always ends
in an empty last column, so only rejected rows whose value is shown and whose last column
is empty are read again, from their physical lines (the error path: a clean file costs one
query over the rejects and no read of the file). Those found short are rejected whole, with
the field counts as the reason and no value shown.
"""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl

from pipeline.ingest.source_store import LINE
from pipeline.ingest.textfile import Source

REASON = (
    "the row has {n} fields where the header has {width} (a line break inside an unquoted field splits a row "
    "in two); its values are not shown, as they may sit in the wrong columns. Fix or re-export the extract"
)


def field_counts(path: Path, lines: set[int], separator: str, quote_char: str | None) -> dict[int, int]:
    """The number of fields of the record starting on each of `lines` (physical, from 1), read with the
    CSV rules the parse used: a quoted field may run on over later lines."""
    kwargs = {"delimiter": separator} | ({"quotechar": quote_char} if quote_char else {"quoting": csv.QUOTE_NONE})
    counts: dict[int, int] = {}
    with path.open("rb") as fh:
        state = {"line": 0}

        def lines_from_here(first: bytes) -> Iterator[str]:
            yield first.decode("utf-8", "replace")
            for more in fh:  # a quoted line break: the record goes on
                state["line"] += 1
                yield more.decode("utf-8", "replace")

        for raw in fh:
            state["line"] += 1
            start = state["line"]
            if start not in lines:
                continue
            with contextlib.suppress(csv.Error):  # a quote never closed: the parse already stopped on it
                counts[start] = len(next(csv.reader(lines_from_here(raw), **kwargs), []))
            if len(counts) == len(lines):
                break
    return counts


def set_aside(
    con: duckdb.DuckDBPyConnection,
    typed_path: Path,
    source: Source,
    header: list[str],
    cut_off: int | None = None,
) -> int:
    """Reject whole the short rows among the rejects of `con` (table ``rejects``) and hide their values;
    returns how many rows were found short. `typed_path`: the typed file; `source`: the text it was read
    from; `header`: its column names (as typed); `cut_off`: the last row's line when it was cut off mid-row
    (its own reject says so; its values are where they belong)."""
    shown = [r[0] for r in con.execute("SELECT DISTINCT source_line FROM rejects WHERE value IS NOT NULL").fetchall()]
    if not shown:
        return 0
    # Polars, not SQL: the last column may have no name in the header (then no SQL identifier names it);
    # an unnamed last column the typed file dropped: every such row is read again
    typed = pl.scan_parquet(typed_path, glob=False).filter(pl.col(LINE).is_in(shown))
    if header[-1] in typed.collect_schema():
        typed = typed.filter(pl.col(header[-1]).is_null())
    candidates = set(typed.select(LINE).collect()[LINE].to_list()) - {cut_off}
    if not candidates:
        return 0
    counts = field_counts(source.path, candidates, source.separator, source.quote_char)
    short = {line: n for line, n in counts.items() if n < len(header)}
    if not short:
        return 0
    con.execute("CREATE TEMP TABLE short_rows (source_line BIGINT, reason VARCHAR)")
    reasons = [(line, REASON.format(n=n, width=len(header))) for line, n in short.items()]
    con.executemany("INSERT INTO short_rows VALUES (?, ?)", reasons)
    con.execute("UPDATE rejects SET value = NULL WHERE source_line IN (SELECT source_line FROM short_rows)")
    con.execute("INSERT INTO rejects SELECT source_line, NULL, NULL, reason, 'row_rejected' FROM short_rows")
    con.execute("DROP TABLE short_rows")
    return len(short)
