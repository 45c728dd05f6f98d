"""Spreadsheet formula injection: text that a spreadsheet would run is neutralised.

OWASP's advice for CSV injection: a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or
a carriage return is read as a formula by Excel, LibreOffice and Google Sheets
(``=HYPERLINK(...)``, ``=cmd|' /C calc'!A0``). Such text gets a leading single quote, which
the spreadsheet shows as text. The change is reversible: drop the one leading quote of a
value whose second character is one of the triggers (the Parquet outputs keep the raw text).
"""

from __future__ import annotations

import polars as pl

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_TRIGGER_PATTERN = r"^[=+\-@\t\r]"


def neutralise(text: str | None) -> str | None:
    """The text as a spreadsheet must receive it: a leading quote before a formula trigger."""
    if text and text.startswith(TRIGGERS):
        return "'" + text
    return text


def neutralise_expr(column: str) -> pl.Expr:
    """`neutralise` for a whole String column (vectorised; nulls stay null)."""
    col = pl.col(column)
    return pl.when(col.str.contains(_TRIGGER_PATTERN)).then(pl.lit("'") + col).otherwise(col).alias(column)


def restore(text: str | None) -> str | None:
    """The raw text back from a neutralised value."""
    if text and text.startswith("'") and text[1:].startswith(TRIGGERS):
        return text[1:]
    return text
