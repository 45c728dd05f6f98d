"""How a site's extract is written, per table (``[formats.<table>]`` in the config).

Delimiter, encoding, quote character, timestamp and date formats, and which file (and
which sheet of a workbook) holds the table. The defaults read the canonical extract:
UTF-8 CSV, comma, double quote, ISO 8601 timestamps.
"""

from __future__ import annotations

import codecs
import dataclasses
from dataclasses import dataclass

from pipeline.errors import ConfigError

TEXT_SUFFIXES = (".csv", ".txt", ".tsv")  # delimited text
SUFFIXES = (*TEXT_SUFFIXES, ".parquet", ".xlsx")
UTF8 = "utf-8"
# spellings of UTF-8 the CSV reader takes as they are (a byte-order mark is skipped)
_UTF8_NAMES = {"utf-8", "utf8", "utf_8", "utf-8-sig", "utf_8_sig", "u8"}
# strftime directives that carry a time of day: a format without any is a date-only format
_TIME_DIRECTIVES = ("%H", "%I", "%M", "%S", "%T", "%R", "%X", "%c", "%k", "%l")


@dataclass(frozen=True)
class TableFormat:
    file: str | None = None  # the file in the input folder (default: <table>.csv, .txt, .tsv, .parquet or .xlsx)
    sheet: str | None = None  # .xlsx: the sheet holding the table (default: the sheet named like the table)
    delimiter: str | None = None  # default: tab for .tsv, else comma
    encoding: str = UTF8  # any Python codec name: utf-8, utf-8-sig, cp1252 (Windows-1252), latin-1, utf-16 ...
    quote_char: str = '"'  # "" = fields are never quoted
    timestamp_formats: tuple[str, ...] = ()  # strftime, tried in order before ISO 8601
    date_formats: tuple[str, ...] = ()  # strftime, tried in order before YYYY-MM-DD
    # the number of the line (a workbook: Excel's row) holding the header, when lines above it hold a title (default: the
    # first line; a workbook's first row that holds a value); the lines above are not read, and rejects keep the file's
    # own line numbers
    header_row: int | None = None
    # the code column's cells hold a code and its description ('72148 - MRI LUMBAR SPINE'): the leading token is the
    # code (contract.code_and_description)
    code_with_description: bool = False
    # number columns are written with a decimal comma ('45,5', '1.234,5': a European export)
    decimal_comma: bool = False

    def delimiter_for(self, suffix: str) -> str:
        if self.delimiter is not None:
            return self.delimiter
        return "\t" if suffix.lower() == ".tsv" else ","

    @property
    def is_utf8(self) -> bool:
        return self.encoding.strip().lower() in _UTF8_NAMES

    @property
    def quote(self) -> str | None:
        return self.quote_char or None


DEFAULT = TableFormat()


def is_date_only(fmt: str) -> bool:
    """A strftime format without a time-of-day directive reads a bare date (local midnight)."""
    return not any(d in fmt for d in _TIME_DIRECTIVES)


def has_offset(fmt: str) -> bool:
    return "%z" in fmt or "%:z" in fmt or "%#z" in fmt


def _check_strftime(fmt: object, where: str) -> str:
    if not isinstance(fmt, str) or "%" not in fmt:
        raise ConfigError(f'{where}: {fmt!r} is not a strftime format (for example "%m/%d/%Y %I:%M %p")')
    if not any(d in fmt for d in ("%Y", "%y", "%F", "%D")) or not any(d in fmt for d in ("%d", "%e", "%F", "%D", "%j")):
        raise ConfigError(f"{where}: {fmt!r} has no year or no day (%Y, %m, %d ...); a timestamp format needs a whole date")
    import polars as pl

    try:  # Polars rejects a format with an unknown directive only when it parses: check it now, not mid-run
        pl.Series(["2025-01-01"]).str.to_datetime(fmt, strict=False)
    except pl.exceptions.PolarsError:
        raise ConfigError(f"{where}: {fmt!r} is not a format Polars can read (see the strftime codes in the README)") from None
    return fmt


def parse_table_format(values: dict, where: str) -> TableFormat:
    """One ``[formats.<table>]`` section, checked setting by setting."""
    known = {f.name for f in dataclasses.fields(TableFormat)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    out: dict = {}
    for name in ("file", "sheet", "encoding"):
        if name in values:
            if not isinstance(values[name], str) or not values[name].strip():
                raise ConfigError(f"{where}.{name}: expected a non-empty text, got {values[name]!r}")
            out[name] = values[name]
    if "encoding" in out:
        try:
            # rot13, base64, zlib ... are codecs too, but of bytes to bytes: reading with one was a traceback
            text_codec = codecs.lookup(out["encoding"])._is_text_encoding
        except LookupError:
            text_codec = False
        if not text_codec:
            raise ConfigError(
                f"{where}.encoding: '{out['encoding']}' is not an encoding name of text (for example utf-8, cp1252, latin-1)"
            )
    if "delimiter" in values:
        d = values["delimiter"]
        if not isinstance(d, str) or len(d) != 1 or d in '\r\n"':
            raise ConfigError(f'{where}.delimiter: expected one character such as "," "|" ";" or "\\t", got {d!r}')
        out["delimiter"] = d
    if "quote_char" in values:
        q = values["quote_char"]
        if not isinstance(q, str) or len(q) > 1 or q in ("\r", "\n"):
            raise ConfigError(f'{where}.quote_char: expected one character (or "" for none), got {q!r}')
        out["quote_char"] = q
    for name in ("timestamp_formats", "date_formats"):
        if name in values:
            given = values[name]
            if isinstance(given, str):
                given = [given]
            if not isinstance(given, list):
                raise ConfigError(f"{where}.{name}: expected a list of strftime formats, got {given!r}")
            out[name] = tuple(_check_strftime(f, f"{where}.{name}") for f in given)
    if "header_row" in values:
        row = values["header_row"]
        if type(row) is not int or row < 1:
            raise ConfigError(
                f"{where}.header_row: expected the number of the header's line (a workbook: Excel's row; 1, 2 ...), got {row!r}"
            )
        out["header_row"] = row
    for name in ("code_with_description", "decimal_comma"):
        if name in values:
            if type(values[name]) is not bool:
                raise ConfigError(f"{where}.{name}: expected true or false, got {values[name]!r}")
            out[name] = values[name]
    fmt = TableFormat(**out)
    if fmt.delimiter is not None and fmt.delimiter == fmt.quote_char:
        raise ConfigError(f"{where}: delimiter and quote_char are the same character")
    return fmt
