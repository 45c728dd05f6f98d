"""Delimited text as the CSV reader needs it: the header line, and a UTF-8 copy when the file is not.

Polars reads UTF-8 (a byte-order mark is skipped) with LF or CRLF line ends. Any other
encoding (Windows-1252, Latin-1, UTF-16 ...) and CR-only line ends (old Mac exports) are
first copied to a UTF-8 file in the scratch folder, in 4 MiB pieces (never the whole file
in memory); line numbers stay those of the delivered file.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipeline.errors import InputFileError
from pipeline.ingest.files import count_lf, fingerprint
from pipeline.ingest.formats import TableFormat

HEAD_BYTES = 65536
CHUNK = 1 << 22


@dataclass
class Source:
    """What the CSV reader reads for one file: the file itself, or its UTF-8 copy in the scratch folder."""

    path: Path
    separator: str = ","
    quote_char: str | None = '"'
    line_breaks: int | None = None  # known when the copy was made
    header_line: int = 1  # the header's line ([formats] header_row): the lines above hold a title and are not read


def scan(source: Source, index_name: str, ragged: bool = False) -> pl.LazyFrame:
    """Every column as text, each record numbered from the line after the header (2 when the header is line 1)."""
    lf = pl.scan_csv(
        source.path,
        glob=False,  # a path is a file: "Extract [2026-04]" is no pattern
        separator=source.separator,
        quote_char=source.quote_char,
        infer_schema=False,
        encoding="utf8",
        # whole lines, quotes not read: a title line's stray quote must not swallow the header
        skip_lines=source.header_line - 1,
        row_index_name=index_name,
        row_index_offset=source.header_line + 1,
        truncate_ragged_lines=ragged,
        raise_if_empty=False,
    )
    quote = source.quote_char
    # Polars keeps a header name's doubled quote as two ('"Order ""ID"""' as 'Order ""ID""'), where its values and
    # the csv module, which names the columns for the config and the checks, read one: a column mapped by that name
    # was not found, and the run stopped with 'the CSV could not be parsed'
    doubled = [c for c in lf.collect_schema().names() if quote and quote * 2 in c] if quote else []
    return lf.rename({c: c.replace(quote * 2, quote) for c in doubled}) if doubled else lf


def read_head(path: Path, size: int = HEAD_BYTES) -> bytes:
    with path.open("rb") as fh:
        return fh.read(size)


def cr_only(head: bytes) -> bool:
    """Line ends are a lone CR (no LF anywhere in the first 64 KiB)."""
    return b"\r" in head and b"\n" not in head


_CRS_BEFORE_LF = re.compile(rb"\r+\n")


def doubled_cr(head: bytes) -> bool:
    """Line ends are CR CR LF: a CRLF file converted to CRLF again (a transfer in text mode, a second unix2dos). The
    reader ends a line at the LF alone and keeps one CR in the last column: its name (`setting\\r`) matched no
    contract column, and a run dropped the column without a word (the scheduling review)."""
    return b"\r\r\n" in head


def needs_utf8_copy(fmt: TableFormat, head: bytes) -> bool:
    return not fmt.is_utf8 or cr_only(head) or doubled_cr(head)


def decode_head(path: Path, head: bytes, fmt: TableFormat, table: str = "<table>") -> str:
    """The first 64 KiB as text, in the configured encoding (a character cut at the end is dropped).

    A byte the encoding cannot read after the header line is left to the parse, which names its line."""
    encoding = "utf-8-sig" if fmt.is_utf8 else fmt.encoding
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        return decoder.decode(head, final=False)
    except UnicodeDecodeError as exc:
        before = exc.object[: exc.start].decode(encoding, "replace")
        if "\n" in before or "\r" in before:
            return before
        fix = _fix(fmt).replace("<table>", table)
        raise InputFileError(path, f"header is not {_name(fmt)} text (byte 0x{exc.object[exc.start]:02x})", fix, line=1) from None


def line_at(text: str, number: int = 1) -> str | None:
    """Line `number` (from 1; lines end at LF, CRLF or a lone CR, as the CSV reader's do), or None when the text has
    fewer lines (an empty text has an empty first line)."""
    lines = re.split(r"\r\n|\r|\n", text, maxsplit=number)
    if number > len(lines) or (number == len(lines) and not lines[-1] and number > 1):
        return None
    return lines[number - 1]


def from_line(text: str, number: int) -> str:
    """The text from the start of line `number` (from 1; line ends as line_at reads them)."""
    return re.split(r"\r\n|\r|\n", text, maxsplit=number - 1)[-1] if number > 1 else text  # (maxsplit 0: no limit)


def split_record(text: str, separator: str, quote_char: str) -> list[str]:
    """The first record of text, its quoted fields running over line breaks as the CSV reader reads them."""
    try:
        return next(csv.reader(io.StringIO(text, newline=""), delimiter=separator, quotechar=quote_char), [])
    except csv.Error:  # a quote never closed: the loader names its line
        return split_fields(text.splitlines()[0] if text else "", separator, quote_char)


def split_fields(line: str, separator: str, quote_char: str | None) -> list[str]:
    """One line split as the CSV reader will split it (delimiter, quote character)."""
    kwargs = {"delimiter": separator}
    kwargs |= {"quotechar": quote_char} if quote_char else {"quoting": csv.QUOTE_NONE}
    try:
        return next(csv.reader([line], **kwargs), [])
    except csv.Error:
        return line.split(kwargs["delimiter"])


def _name(fmt: TableFormat) -> str:
    return "UTF-8" if fmt.is_utf8 else fmt.encoding


def _fix(fmt: TableFormat) -> str:
    if fmt.is_utf8:
        return 'Re-export the extract as UTF-8, or set encoding (for example "cp1252") under [formats.<table>] in the config'
    return f'Check encoding = "{fmt.encoding}" under [formats.<table>] in the config, or re-export the extract'


def _single_byte(encoding: str) -> bool:
    """An encoding that reads every byte as one character and ASCII as ASCII (cp1252, latin-1 ...):
    its ASCII-only pieces are already UTF-8, and its decoder keeps no state between pieces."""
    try:
        ascii_same = bytes(range(128)).decode(encoding) == "".join(map(chr, range(128)))
        # a multi-byte encoding reads the two bytes of UTF-8's 'é' as one character (or fewer than 256 in all)
        one_per_byte = (
            len(bytes(range(256)).decode(encoding, "replace")) == 256 and len(b"\xc3\xa9".decode(encoding, "replace")) == 2
        )
        return ascii_same and one_per_byte
    except (LookupError, UnicodeDecodeError):
        return False


def utf8_copy(path: Path, fmt: TableFormat, out: Path, table: str) -> int:
    """Write `path` as UTF-8 with LF line ends to `out`; returns its number of line breaks.

    Pieces of a single-byte encoding that hold only ASCII are copied as they are (most of
    an extract; decoding them cost 3-4 s per GB). A byte that is not valid in the encoding
    stops with the line that holds it."""
    encoding = "utf-8-sig" if fmt.is_utf8 else fmt.encoding
    decoder = codecs.getincrementaldecoder(encoding)()
    head = read_head(path)
    translate_cr, doubled = cr_only(head), doubled_cr(head)
    shortcut = _single_byte(encoding)
    lines, carried = 0, b""
    with path.open("rb") as src, out.open("wb") as dst:
        while True:
            chunk = src.read(CHUNK)
            final = not chunk
            if doubled:
                # every run of CRs before an LF is one line end; CRs at the chunk's end wait for the next chunk's start
                chunk = carried + chunk
                kept = chunk.rstrip(b"\r") if not final else chunk
                carried, chunk = chunk[len(kept) :], _CRS_BEFORE_LF.sub(b"\n", kept)
            if (shortcut and chunk.isascii()) or (doubled and fmt.is_utf8):  # UTF-8 CR CR LF: its bytes, as they are
                data = chunk.replace(b"\r", b"\n") if translate_cr else chunk
            else:
                try:
                    text = decoder.decode(chunk, final=final)
                except UnicodeDecodeError as exc:
                    before = exc.object[: exc.start].decode(encoding, "replace")
                    line = lines + (before.replace("\r", "\n") if translate_cr else before).count("\n") + 1
                    fix = _fix(fmt).replace("<table>", table)
                    raise InputFileError(
                        path, f"byte 0x{exc.object[exc.start]:02x} is not {_name(fmt)} text", fix, line=line
                    ) from None
                data = (text.replace("\r", "\n") if translate_cr else text).encode("utf-8")
            lines += count_lf(data)
            dst.write(data)
            if final:
                return lines


def count_line_breaks(path: Path) -> int:
    return fingerprint(path, with_hash=False).line_breaks
