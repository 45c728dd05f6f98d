"""Bidirectional control characters, shown instead of obeyed where people read the data.

A right-to-left override (U+202E) or isolate inside a free-text field reorders what follows
on screen: ``exe.txt`` can display as ``txt.exe``, a provider id as someone else's. In the
report and the workbook each such character is replaced by a visible ``[U+202E]`` (Unicode's
Bidi_Control set); the CSV and Parquet data outputs keep the delivered text.
"""

from __future__ import annotations

import re

import polars as pl

CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_PATTERN = re.compile(f"[{CONTROLS}]")
_SHOWN = [f"[U+{ord(c):04X}]" for c in CONTROLS]


def visible(text: str) -> str:
    """``text`` with each bidirectional control replaced by its visible code (``[U+202E]``)."""
    if _PATTERN.search(text) is None:  # the common case: one regex scan, no copy
        return text
    return _PATTERN.sub(lambda m: f"[U+{ord(m.group()):04X}]", text)


def visible_expr(column: str) -> pl.Expr:
    """``visible`` for a whole String column (vectorised; nulls stay null)."""
    return pl.col(column).str.replace_many(list(CONTROLS), _SHOWN).alias(column)
