"""Guess how a file is written: encoding, delimiter, timestamp and date formats (from samples).

Used by `order-audit inspect` to write a starter config, and by the loader to say which
setting would read a column it could not. A guess is only offered when it reads the
sample; where two readings fit equally (04/10/2026: April or October?) it says so.
"""

from __future__ import annotations

import codecs
import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from pipeline.ingest import formats

DELIMITERS = (",", "|", "\t", ";")
# month-first before day-first: on a sample where both read every value, the US reading is
# offered and flagged ambiguous (a person decides)
TIMESTAMP_FORMATS = (
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %I:%M %p",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%y %I:%M %p",
    "%m/%d/%y %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y %I:%M %p",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d-%b-%Y %H:%M:%S",
    "%d-%b-%Y %H:%M",
    "%d-%b-%y %H:%M:%S",
    "%d-%b-%y %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y%m%d %H:%M:%S",
    "%Y%m%d%H%M%S",
    "%Y%m%d%H%M",
)
DATE_FORMATS = ("%m/%d/%Y", "%m/%d/%y", "%d/%m/%Y", "%d.%m.%Y", "%d-%b-%Y", "%d-%b-%y", "%Y/%m/%d", "%Y%m%d")
_SWAPPED = {"%m/%d": "%d/%m", "%d/%m": "%m/%d"}


def normalise(name: str) -> str:
    """A column name without case, spaces or punctuation: 'Order ID', 'ORDER_ID' and 'order_id' agree."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclass
class FormatGuess:
    """Formats that read a column's sample, in the order to try them, and what they leave unread."""

    formats: list[str] = field(default_factory=list)  # strftime formats needed beyond ISO 8601
    iso: int = 0  # sample values ISO 8601 reads
    by_format: dict[str, int] = field(default_factory=dict)  # values each format reads
    unread: list[str] = field(default_factory=list)  # sample values no format reads
    ambiguous: list[str] = field(default_factory=list)  # formats whose day/month swap reads the same values
    examples: dict[str, str] = field(default_factory=dict)  # format (or "ISO 8601") -> one value it reads

    @property
    def sure(self) -> bool:
        return not self.unread and not self.ambiguous


def _iso_reads(values: pl.Series, dates: bool) -> pl.Series:
    if dates:
        return values.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False).is_not_null()
    from pipeline.ingest.timestamps import with_instant

    frame = pl.DataFrame({"v": values}).lazy()
    out = with_instant(frame, "v", pl.String, "UTC").collect()
    return out["_err_v"].is_null() | out["_err_v"].str.contains("DST")


def _reads(values: pl.Series, fmt: str, dates: bool) -> pl.Series:
    if dates and formats.is_date_only(fmt):
        return values.str.to_date(fmt, strict=False).is_not_null()
    return values.str.to_datetime(fmt, strict=False, time_unit="us", cache=False).is_not_null()


def guess_formats(sample: list[str], dates: bool = False) -> FormatGuess:
    """The fewest formats (greedy, most values first) that read the sample, ISO 8601 first."""
    values = pl.Series([v.strip() for v in sample if v is not None and v.strip()], dtype=pl.String).unique(maintain_order=True)
    guess = FormatGuess()
    if values.len() == 0:
        return guess
    iso = _iso_reads(values, dates)
    guess.iso = int(iso.sum())
    if guess.iso:
        guess.examples["ISO 8601"] = values.filter(iso)[0]
    left = values.filter(~iso)
    candidates = list(DATE_FORMATS if dates else TIMESTAMP_FORMATS + DATE_FORMATS)
    while left.len():
        scored = [(int(_reads(left, f, dates).sum()), -i, f) for i, f in enumerate(candidates)]
        best, _, fmt = max(scored)
        if best == 0:
            break
        hits = _reads(left, fmt, dates)
        guess.formats.append(fmt)
        guess.by_format[fmt] = best
        guess.examples[fmt] = left.filter(hits)[0]
        swapped = next((fmt.replace(a, b, 1) for a, b in _SWAPPED.items() if a in fmt), None)
        if swapped and swapped in candidates and bool((_reads(left, swapped, dates) == hits).all()):
            guess.ambiguous.append(fmt)
        candidates.remove(fmt)
        left = left.filter(~hits)
    guess.unread = left.head(5).to_list()
    return guess


def settle_day_month(guesses: list[FormatGuess]) -> None:
    """A convention some value settles (a day over 12) is settled for the whole table: its other
    formats are no longer ambiguous (an extract writes day and month one way)."""
    for order in ("%m/%d", "%d/%m"):
        settled = any(order in f and f not in g.ambiguous for g in guesses for f in g.formats)
        if settled:
            for g in guesses:
                g.ambiguous = [f for f in g.ambiguous if order not in f]


# ----------------------------------------------------------------------------- encoding and delimiter


@dataclass
class EncodingGuess:
    encoding: str  # a name the config takes
    sure: bool
    example: str | None = None  # the first character outside ASCII, with its line (a person checks it reads right)
    note: str = ""


def guess_encoding(path: Path) -> EncodingGuess:
    """UTF-8 when the whole file decodes as UTF-8 (checked to the end); else Windows-1252 or Latin-1."""
    with path.open("rb") as fh:
        head = fh.read(4)
    if head.startswith(codecs.BOM_UTF8):
        return EncodingGuess("utf-8-sig", True, note="UTF-8 with a byte-order mark")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return EncodingGuess("utf-16", True, note="UTF-16 with a byte-order mark")
    candidates = ["utf-8", "cp1252", "latin-1"]
    for encoding in candidates:
        decoder = codecs.getincrementaldecoder(encoding)()
        lines, example = 0, None
        try:
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 22), b""):
                    text = decoder.decode(chunk)
                    if example is None:
                        example = _first_non_ascii(text, lines)
                    lines += text.count("\n")
                decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            continue
        if encoding == "utf-8":
            return EncodingGuess("utf-8", True, example, "every byte is UTF-8")
        note = (
            "not UTF-8; every byte is Windows-1252 (the usual export of Windows reporting tools)"
            if encoding == "cp1252"
            else "not UTF-8 and not Windows-1252; read as Latin-1"
        )
        # Windows-1252 and Latin-1 read the same bytes differently (0x80-0x9f): check the example
        return EncodingGuess(encoding, False, example, note)
    return EncodingGuess("latin-1", False, None, "undecided")


_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _first_non_ascii(text: str, lines_before: int) -> str | None:
    """The first character outside ASCII and its line (not the text around it: it may be a name)."""
    if text.isascii():
        return None
    m = _NON_ASCII.search(text)
    return f"'{m.group()}' on line {lines_before + text.count(chr(10), 0, m.start()) + 1}"


def guess_delimiter(lines: list[str], wanted: set[str] | None = None) -> tuple[str, bool]:
    """(delimiter, sure): the candidate that splits the header into the most fields and every
    sample line into as many; header names that match `wanted` (normalised names) come first."""
    if not lines:
        return ",", False
    scored = []
    for i, d in enumerate(DELIMITERS):
        rows = list(csv.reader(lines, delimiter=d))
        width = len(rows[0]) if rows else 0
        consistent = sum(len(r) == width for r in rows[1:]) / max(1, len(rows) - 1)
        known = sum(normalise(name) in (wanted or set()) for name in rows[0]) if rows else 0
        scored.append((width > 1 and consistent >= 0.9, known, width, -i, d))
    best = max(scored)
    ties = [s for s in scored if s[:3] == best[:3] and s[4] != best[4]]
    return best[4], best[0] and not ties
