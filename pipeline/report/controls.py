"""Control characters, shown instead of obeyed where people read the data.

A right-to-left override (U+202E) or isolate inside a free-text field reorders what follows
on screen: ``exe.txt`` can display as ``txt.exe``, a provider id as someone else's. The C0 and
C1 controls (an escape sequence, a bell, a NUL from a JSON string's ``\u0000``) are invalid in
XML, so a workbook cell or an SVG label holding one is refused or cut by the program that opens
it, and a browser prints them as nothing or as boxes. In the report and the workbook each such
character is replaced by a visible code, ``[U+202E]``, ``[U+001B]`` (Unicode's Bidi_Control set
and the Cc category but tab, line feed and carriage return, which text uses); the CSV and
Parquet data outputs keep the delivered text. A NUL is stopped earlier: a UTF-8 CSV extract with
one is refused (ingest/load.py), a FHIR line with one rejected (ingest/fhir/sql/macros.sql, fhir_nul).
"""

from __future__ import annotations

import re

import polars as pl

BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
CC = "".join(chr(c) for c in [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0)])
CONTROLS = BIDI + CC
_PATTERN = re.compile(f"[{CONTROLS}]")
_SHOWN = [f"[U+{ord(c):04X}]" for c in CONTROLS]


def visible(text: str) -> str:
    """``text`` with each control character replaced by its visible code (``[U+202E]``)."""
    if _PATTERN.search(text) is None:  # the common case: one regex scan, no copy
        return text
    return _PATTERN.sub(lambda m: f"[U+{ord(m.group()):04X}]", text)


def visible_expr(column: str) -> pl.Expr:
    """``visible`` for a whole String column (vectorised; nulls stay null)."""
    return pl.col(column).str.replace_many(list(CONTROLS), _SHOWN).alias(column)
