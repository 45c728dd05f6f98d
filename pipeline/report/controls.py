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

Letters that look alike across scripts do the same: ``Neur\u043elogy`` with a Cyrillic о reads as
``Neurology``, and the two are two departments (the data says two, so nothing folds them together). In a word
that mixes Latin letters with Cyrillic or Greek ones, the letters of the script it has fewer of (the non-Latin
ones on a tie) are shown as codes too, ``Neur[U+043E]logy``: a word all in one script (``Неврология``, a name
in Cyrillic beside one in Latin) is shown as it is.
"""

from __future__ import annotations

import re
from collections import Counter

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


def _class(chars: str) -> str:
    """A regex character class of ``chars`` written as runs (``\\U...-\\U...``), as Python's re and Polars' (Rust)
    regex both read it: the ~470 control characters listed one by one, astral ones among them, took Python's re
    ~1.4 ms per 1,000 characters to search (150 ms for one chart's SVG)."""
    points = sorted(map(ord, set(chars)))
    runs, first = [], points[0]
    for before, point in zip(points, [*points[1:], None], strict=True):
        if point is None or point != before + 1:  # a run ends at ``before``
            runs.append(f"\\U{first:08X}" if first == before else f"\\U{first:08X}-\\U{before:08X}")
            first = point
    return "[" + "".join(runs) + "]"


_PATTERN = re.compile(_class(CONTROLS))
_SHOWN = [f"[U+{ord(c):04X}]" for c in CONTROLS]


# the scripts whose letters pass for Latin ones (Unicode's blocks: Greek and Coptic, Greek Extended; Cyrillic and
# its Supplement, Extended-A/B/C), and Latin's (Basic, Latin-1's letters, Extended-A/B, Extended Additional)
_SPANS = {
    "Greek": ((0x0370, 0x03FF), (0x1F00, 0x1FFF)),
    "Cyrillic": ((0x0400, 0x052F), (0x1C80, 0x1C8F), (0x2DE0, 0x2DFF), (0xA640, 0xA69F)),
}
_SCRIPTS = {name: _chars(*spans) for name, spans in _SPANS.items()}
_LATIN = re.compile("[A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff]")
_OTHER_CLASS = _class("".join(_SCRIPTS.values()))  # Python's re and Polars' (Rust) regex read it alike
_OTHER = re.compile(_OTHER_CLASS)
_WORD = re.compile(r"[^\W\d_]+")  # a run of letters


def _script(letter: str) -> str:
    if _LATIN.match(letter):
        return "Latin"
    return next((name for name, letters in _SCRIPTS.items() if letter in letters), "")


def _unmixed_word(word: str) -> str:
    """A word with the letters of its minority script as codes, when it mixes Latin with Cyrillic or Greek."""
    if _OTHER.search(word) is None or _LATIN.search(word) is None:
        return word
    scripts = Counter(s for s in map(_script, word) if s)
    most = max(scripts, key=lambda s: (scripts[s], s == "Latin"))
    return "".join(f"[U+{ord(c):04X}]" if _script(c) not in ("", most) else c for c in word)


def unmixed(text: str) -> str:
    """``text`` with each word that mixes Latin with Cyrillic or Greek letters shown as ``_unmixed_word`` does."""
    if _OTHER.search(text) is None:  # the common case: no Greek or Cyrillic letter at all
        return text
    return _WORD.sub(lambda m: _unmixed_word(m.group()), text)


def visible(text: str) -> str:
    """``text`` with each control character replaced by its visible code (``[U+202E]``), and each letter that
    passes for one of another script in its word (``unmixed``)."""
    if _PATTERN.search(text) is not None:  # rare: the common case is one regex scan and no copy
        text = _PATTERN.sub(lambda m: f"[U+{ord(m.group()):04X}]", text)
    return unmixed(text)


def _unmixed_series(column: pl.Series) -> pl.Series:
    """``unmixed`` over a column: only its distinct values that hold a Greek or Cyrillic letter are looked at."""
    wide = column.filter(column.str.len_bytes() != column.str.len_chars())  # ASCII text (most) is never looked at
    touched = wide.filter(wide.str.contains(_OTHER_CLASS)).unique().to_list()
    shown = {v: unmixed(v) for v in touched}
    changed = {k: v for k, v in shown.items() if k != v}
    return column.replace(changed) if changed else column


def visible_expr(column: str) -> pl.Expr:
    """``visible`` for a whole String column (vectorised; nulls stay null)."""
    shown = pl.col(column).str.replace_many(list(CONTROLS), _SHOWN)
    return shown.map_batches(_unmixed_series, return_dtype=pl.String).alias(column)
