"""Spreadsheet formula injection: text that a spreadsheet would run is neutralised.

OWASP's advice for CSV injection: a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or
a carriage return is read as a formula by Excel, LibreOffice and Google Sheets
(``=HYPERLINK(...)``, ``=cmd|' /C calc'!A0``). Such text gets a leading single quote, which
the spreadsheet shows as text. So does text whose trigger comes after white space (`` =1+1``,
a line break, a no-break or ideographic space: an import that trims, or a user who does, runs
it) and the full-width forms (``＝``, ``＋``, ``－``, ``＠``: OWASP lists them; an IME and some
locales' Excel read them as the ASCII ones). The change is reversible: ``restore`` drops the
one leading quote of a value that, after its leading quotes, starts a formula (text that
already started with quotes before a trigger gets one more, so no raw value is ever lost;
the Parquet outputs keep the raw text).
"""

from __future__ import annotations

import re

import polars as pl

from pipeline.sqltext import literal

TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
# what may come before a trigger: every character Python's str.strip() removes (the C0 separators \x1c-\x1f and
# \x0b too; and the Unicode spaces: '\u2003=1+1' was written unquoted, and an import that trims, the README's case,
# made it a live formula), with the zero-width space and the BOM, which JavaScript's trim() removes. One set, read
# alike by Python, Polars and DuckDB
_SPACE = "".join(ch for ch in map(chr, range(0x3001)) if ch.isspace()) + "\u200b\ufeff"
# the characters themselves, not escapes: Python's re, Polars' (Rust) regex and DuckDB's RE2 read them alike
_TRIGGER_PATTERN = f"^'*(?:[\t\r]|[{_SPACE}]*[=+@\uff1d\uff0b\uff0d\uff20-])"
_STARTS_FORMULA = re.compile(_TRIGGER_PATTERN)


def starts_formula(text: str | None) -> bool:
    """Whether a spreadsheet could run ``text`` as a formula (text that starts with a quote it shows as text)."""
    return bool(text) and not text.startswith("'") and _STARTS_FORMULA.match(text) is not None


def neutralise(text: str | None) -> str | None:
    """The text as a spreadsheet must receive it: a leading quote before a formula trigger."""
    if text and _STARTS_FORMULA.match(text):
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


def restore_expr(column: str) -> pl.Expr:
    """`restore` for a whole String column (vectorised; nulls stay null)."""
    col = pl.col(column)
    neutralised = col.str.starts_with("'") & col.str.contains(_TRIGGER_PATTERN)
    return pl.when(neutralised).then(col.str.slice(1)).otherwise(col).alias(column)


def restore(text: str | None) -> str | None:
    """The raw text back from a neutralised value."""
    if text and text.startswith("'") and _STARTS_FORMULA.match(text):
        return text[1:]
    return text
