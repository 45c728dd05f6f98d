"""Guess how a file is written: encoding, delimiter, timestamp and date formats (from samples).

Used by `order-audit inspect` to write a starter config, and by the loader to say which
setting would read a column it could not. A guess is only offered when it reads the
sample; where two readings fit equally (04/10/2026: April or October?) it says so.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from pipeline.ingest import formats

DELIMITERS = (",", "|", "\t", ";")
# The two ways a slashed date is written: 03/07/2025 is 7 March day first, 3 July month first. A column is guessed
# both ways (every month-first form below has its day-first twin, so a form missing from one way never decides it).
MONTH_FIRST, DAY_FIRST = "%m/%d/", "%d/%m/"
# month-first before day-first among equals: on a sample both ways read alike, the US reading is offered and
# flagged ambiguous (a person decides)
TIMESTAMP_FORMATS = (
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %I:%M %p",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%y %I:%M %p",
    "%m/%d/%y %H:%M",
    "%d/%m/%Y %I:%M:%S %p",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y %I:%M %p",
    "%d/%m/%y %I:%M %p",
    "%d/%m/%y %H:%M",
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
# a day count since 1899-12-30 (45719.375 is 2025-03-03 09:00): what Excel shows of a time in a cell without a date
# format, and writes to a CSV. No strftime format reads it; reading it here would take a guess at the workbook's
# date system (1900 or 1904, four years apart) and read any number column mapped here as dates.
EXCEL_SERIAL = r"^\d{1,6}(\.\d+)?$"
EXCEL_SERIALS_FIX = (
    "The values look like Excel date serials (days since 1899-12-30), which no strftime format reads: format the "
    "column as a date in Excel (Format Cells, yyyy-mm-dd hh:mm) and save or export the file again, or have the "
    "report export the times as ISO 8601 text (2025-03-07 09:00)"
)
DATE_FORMATS = ("%m/%d/%Y", "%m/%d/%y", "%d/%m/%Y", "%d/%m/%y", "%d.%m.%Y", "%d-%b-%Y", "%d-%b-%y", "%Y/%m/%d", "%Y%m%d")


MIXED_DAY_MONTH_FIX = (
    "no one order of day and month reads the column, and the values either order reads (05/06) cannot be told "
    "apart: have the extract write the times as ISO 8601 text (2025-03-07 09:00), or fix them at the source"
)


def normalise(name: str) -> str:
    """A column name without case, spaces or punctuation: 'Order ID', 'ORDER_ID' and 'order_id' agree."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def day_month_twin(fmt: str) -> str | None:
    """The format with day and month the other way round (%d/%m/%Y for %m/%d/%Y); None when it has no such twin."""
    for order, other in ((MONTH_FIRST, DAY_FIRST), (DAY_FIRST, MONTH_FIRST)):
        if fmt.startswith(order):
            return other + fmt[len(order) :]
    return None


def turned(formats: list[str], which: list[str]) -> list[str]:
    """formats with those in `which` read day and month the other way round."""
    return [day_month_twin(f) if f in which else f for f in formats]


@dataclass
class FormatGuess:
    """Formats that read a column's sample, in the order to try them, and what they leave unread."""

    formats: list[str] = field(default_factory=list)  # strftime formats needed beyond ISO 8601
    iso: int = 0  # sample values ISO 8601 reads
    unread: list[str] = field(default_factory=list)  # sample values no format reads
    # the month-first formats of a column whose values read alike day first: no value settles the order
    ambiguous: list[str] = field(default_factory=list)
    examples: dict[str, str] = field(default_factory=dict)  # format (or "ISO 8601") -> one value it reads
    excel_serials: bool = False  # every value no format reads looks like an Excel date serial (EXCEL_SERIALS_FIX)
    # (a value only month first reads, one only day first reads): the column writes day and month both ways, and
    # no one order reads it (MIXED_DAY_MONTH_FIX); the values either order reads are read wrong half the time
    mixed_day_month: tuple[str, str] | None = None

    @property
    def sure(self) -> bool:
        return not self.unread and not self.ambiguous

    def read_day_first(self) -> None:
        """The order settled day first (by another column): the ambiguous formats turned, no longer in doubt."""
        self.examples = {day_month_twin(f) if f in self.ambiguous else f: v for f, v in self.examples.items()}
        self.formats, self.ambiguous = turned(self.formats, self.ambiguous), []


def _iso_reads(values: pl.Series, dates: bool) -> pl.Series:
    if dates:
        return values.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False).is_not_null()
    from pipeline.ingest.timestamps import with_instant

    frame = pl.DataFrame({"v": values}).lazy()
    out = with_instant(frame, "v", pl.String, "UTC").collect()
    return out["_err_v"].is_null() | out["_err_v"].str.contains("DST")


def _reads(values: pl.Series, fmt: str, dates: bool) -> pl.Series:
    if dates and formats.is_date_only(fmt):
        parsed = values.str.to_date(fmt, strict=False)
    else:
        parsed = values.str.to_datetime(fmt, strict=False, time_unit="us", cache=False)
    if "%Y" in fmt:
        # %Y takes a year of any number of digits: '06/06/25 10:00' read as %Y/%m/%d, year 6, and as many values
        # as %d/%m/%y, so inspect wrote a config that reads no value right. A four-digit year is what %Y means.
        return parsed.dt.year().fill_null(0) >= 1000
    return parsed.is_not_null()


def _cover(reads: dict[str, pl.Series], allowed: list[str], n: int) -> tuple[list[tuple[str, pl.Series]], pl.Series]:
    """Greedy: the format that reads the most values not read yet (the earlier among equals), until none reads one
    more. reads: each format's reading of the n values. ([(format, the values it adds)], the values read)."""
    read = pl.Series([False] * n)
    chosen: list[tuple[str, pl.Series]] = []
    while True:
        scored = [(int((reads[f] & ~read).sum()), -i, f) for i, f in enumerate(allowed) if f not in dict(chosen)]
        best, _, fmt = max(scored, default=(0, 0, ""))
        if best == 0:
            return chosen, read
        chosen.append((fmt, reads[fmt] & ~read))
        read = read | reads[fmt]


def guess_formats(sample: list[str], dates: bool = False) -> FormatGuess:
    """The fewest formats (greedy, most values first) that read the sample, ISO 8601 first.

    One column writes day and month one way (a value that settles it settles it for every form of the column):
    the formats are chosen all month first or all day first, whichever reads more values; where both read the
    same values, month first, and those formats are ambiguous."""
    values = pl.Series([v.strip() for v in sample if v is not None and v.strip()], dtype=pl.String).unique(maintain_order=True)
    guess = FormatGuess()
    if values.len() == 0:
        return guess
    iso = _iso_reads(values, dates)
    guess.iso = int(iso.sum())
    if guess.iso:
        guess.examples["ISO 8601"] = values.filter(iso)[0]
    left = values.filter(~iso)
    if left.len() == 0:
        return guess
    candidates = list(DATE_FORMATS if dates else TIMESTAMP_FORMATS + DATE_FORMATS)
    reads = {f: _reads(left, f, dates) for f in candidates}
    month_first, read = _cover(reads, [f for f in candidates if not f.startswith(DAY_FIRST)], left.len())
    day_first, read_day_first = _cover(reads, [f for f in candidates if not f.startswith(MONTH_FIRST)], left.len())
    only_month_first, only_day_first = read & ~read_day_first, read_day_first & ~read
    if only_month_first.any() and only_day_first.any():
        guess.mixed_day_month = (left.filter(only_month_first)[0], left.filter(only_day_first)[0])
    if int(read_day_first.sum()) > int(read.sum()):
        chosen, read = day_first, read_day_first
    else:
        chosen = month_first
        if bool((read == read_day_first).all()):  # no value tells the two ways apart
            guess.ambiguous = [f for f, _ in chosen if f.startswith(MONTH_FIRST)]
    guess.formats = [f for f, _ in chosen]
    guess.examples |= {f: left.filter(added)[0] for f, added in chosen}
    not_read = left.filter(~read)
    guess.unread = not_read.head(5).to_list()
    guess.excel_serials = not_read.len() > 0 and bool(not_read.str.contains(EXCEL_SERIAL).all())
    return guess


def settle_day_month(guesses: list[FormatGuess]) -> None:
    """An order some column settles (a day over 12) is settled for the whole table: its other columns read day and
    month that way too, no longer ambiguous (an extract writes day and month one way). Columns that settle it both
    ways leave the others in doubt."""
    # a column written both ways settles nothing (its chosen order is only the one that reads more of its values)
    settled = {
        f[: len(MONTH_FIRST)]
        for g in guesses
        if not g.mixed_day_month
        for f in g.formats
        if day_month_twin(f) and f not in g.ambiguous
    }
    if len(settled) != 1:
        return
    for g in guesses:
        if g.ambiguous and settled == {DAY_FIRST}:
            g.read_day_first()
        g.ambiguous = []


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


def _split_rows(lines: list[str], delimiter: str) -> list[list[str]]:
    """The sample's rows split by delimiter, up to a field longer than the csv module takes (131,072 characters: a
    file of one huge line, a quote never closed that runs to the end of the sample): the lines from there on judge
    no delimiter. Read as they were, they stopped inspect with a traceback."""
    rows: list[list[str]] = []
    reader = csv.reader(lines, delimiter=delimiter)
    with contextlib.suppress(csv.Error):
        rows.extend(reader)
    return rows


def guess_delimiter(lines: list[str], wanted: set[str] | None = None) -> tuple[str, bool]:
    """(delimiter, sure): the candidate that splits the header into the most fields and every
    sample line into as many; header names that match `wanted` (normalised names) come first."""
    if not lines:
        return ",", False
    scored = []
    for i, d in enumerate(DELIMITERS):
        rows = _split_rows(lines, d)
        width = len(rows[0]) if rows else 0
        consistent = sum(len(r) == width for r in rows[1:]) / max(1, len(rows) - 1)
        known = sum(normalise(name) in (wanted or set()) for name in rows[0]) if rows else 0
        scored.append((width > 1 and consistent >= 0.9, known, width, -i, d))
    best = max(scored)
    ties = [s for s in scored if s[:3] == best[:3] and s[4] != best[4]]
    return best[4], best[0] and not ties
