"""Spreadsheet formula injection: text that a spreadsheet would run is neutralised.

OWASP's advice for CSV injection: a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or
a carriage return is read as a formula by Excel, LibreOffice and Google Sheets
(``=HYPERLINK(...)``, ``=cmd|' /C calc'!A0``). Such text gets a leading single quote, which
the spreadsheet shows as text. The change is reversible: ``restore`` drops the one leading
quote of a value whose first character after its leading quotes is a trigger (text that
already started with quotes before a trigger gets one more, so no raw value is ever lost;
the Parquet outputs keep the raw text).
"""

from __future__ import annotations

import polars as pl

from pipeline.sqltext import literal

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_TRIGGER_PATTERN = r"^'*[=+\-@\t\r]"


def neutralise(text: str | None) -> str | None:
    """The text as a spreadsheet must receive it: a leading quote before a formula trigger."""
    if text and text.lstrip("'").startswith(TRIGGERS):
        return "'" + text
    return text


def neutralise_expr(column: str) -> pl.Expr:
    """`neutralise` for a whole String column (vectorised; nulls stay null)."""
    col = pl.col(column)
    return pl.when(col.str.contains(_TRIGGER_PATTERN)).then(pl.lit("'") + col).otherwise(col).alias(column)


def neutralised(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame with `neutralise` applied to every String column (numbers stay numbers)."""
    return frame.with_columns(neutralise_expr(c) for c, t in frame.schema.items() if t == pl.String)


def neutralise_sql(expr: str) -> str:
    """`neutralise` as a DuckDB expression over a VARCHAR expression (for ``COPY ... TO`` CSV)."""
    return f"CASE WHEN regexp_matches({expr}, {literal(_TRIGGER_PATTERN)}) THEN '''' || {expr} ELSE {expr} END"


def restore(text: str | None) -> str | None:
    """The raw text back from a neutralised value."""
    if text and text.startswith("'") and text.lstrip("'").startswith(TRIGGERS):
        return text[1:]
    return text
