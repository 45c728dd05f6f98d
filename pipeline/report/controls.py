"""Control characters, shown instead of obeyed where people read the data.

A right-to-left override (U+202E) or isolate inside a free-text field reorders what follows
on screen: ``exe.txt`` can display as ``txt.exe``, a provider id as someone else's. The C0 and
C1 controls (an escape sequence, a bell, a NUL from a JSON string's ``\u0000``) are invalid in
XML, so a workbook cell or an SVG label holding one is refused or cut by the program that opens
it, and a browser prints them as nothing or as boxes. A character that is drawn as nothing (a zero-width
space or joiner, a soft hyphen, a variation selector: Unicode's Default_Ignorable_Code_Point) makes
``neuro\u200blogy`` look like ``neurology``: two departments that read alike, counted apart. In the
report and the workbook each such character is replaced by a visible code, ``[U+202E]``, ``[U+001B]``,
``[U+200B]`` (Unicode's Bidi_Control set, the Cc category but tab, line feed and carriage return, which
text uses, and the default-ignorable characters Unicode has assigned); the CSV and
Parquet data outputs keep the delivered text. A NUL is stopped earlier: a UTF-8 CSV extract with
one is refused (ingest/load.py), a FHIR line with one rejected (ingest/fhir/sql/macros.sql, fhir_nul).
"""

from __future__ import annotations

import re

import polars as pl

BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
CC = "".join(chr(c) for c in [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0)])


def _chars(*spans: tuple[int, int]) -> str:
    return "".join(chr(c) for first, last in spans for c in range(first, last + 1))


# Default_Ignorable_Code_Point (Unicode 15.1 DerivedCoreProperties), the assigned ones, beyond BIDI
INVISIBLE = _chars(
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200D),
    (0x2060, 0x2064), (0x206A, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0),
    (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0001, 0xE0001), (0xE0020, 0xE007F), (0xE0100, 0xE01EF),
)  # fmt: skip
CONTROLS = BIDI + CC + INVISIBLE
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
