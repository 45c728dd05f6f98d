"""A file's header, checked before anything is parsed, and mapped to the contract's column names.

File-level problems stop here with one line naming the file: empty, binary, Parquet named
.csv, not the configured encoding, a column name given twice, a required column missing
(with a hint when the header only splits at another delimiter).
"""

from __future__ import annotations

import polars as pl

from pipeline.config import Config
from pipeline.errors import InputFileError, MissingColumnError, printable
from pipeline.ingest import textfile, xlsx
from pipeline.ingest.contract import TableContract
from pipeline.ingest.formats import TableFormat
from pipeline.ingest.inputs import InputFile

OTHER_DELIMITERS = {",": "comma", ";": "semicolon", "|": "pipe", "\t": "tab"}


def _text_header(f: InputFile, fmt: TableFormat) -> tuple[list[str], str]:
    """(column names, header line) of a delimited text file."""
    head = textfile.read_head(f.path)
    if head.startswith(b"PAR1"):
        raise InputFileError(f.path, "is a Parquet file named " + f.path.suffix, "Rename it to .parquet")
    if head.startswith(b"PK\x03\x04"):
        raise InputFileError(f.path, "is a zip archive or an Excel workbook, not text", "Rename an Excel workbook to .xlsx")
    if b"\x00" in head and fmt.is_utf8:
        raise InputFileError(
            f.path, "is a binary file, not CSV", 'Export the table as UTF-8 CSV (for UTF-16 text set encoding = "utf-16")'
        )
    number = f.header_row or 1
    text = textfile.decode_head(f.path, head, fmt, f.table)
    line = textfile.line_at(text, number)
    if line is None:
        raise InputFileError(
            f.path, f"has no line {number} (header_row under [formats.{f.table}])", "Fix header_row in the config"
        )
    separator = fmt.delimiter_for(f.path.suffix)
    if fmt.quote and line.count(fmt.quote) % 2:
        # a quoted name holds a line break (a wrapped title cell): the header runs on to the line its quote closes
        # on, as the reader reads it. Cut at the break, the names after it were missed: one given twice, say
        return textfile.split_record(textfile.from_line(text, number), separator, fmt.quote), line
    return textfile.split_fields(line, separator, fmt.quote), line


def read_header(f: InputFile, fmt: TableFormat) -> tuple[list[str], str | None]:
    """The file's column names (and, for text, the header line), checking the file is what its name says."""
    if f.path.stat().st_size == 0:
        raise InputFileError(f.path, "file is empty", "Re-export the extract; it holds no header and no rows")
    if f.fmt == "parquet":
        try:
            return list(pl.scan_parquet(f.path, glob=False).collect_schema().keys()), None
        except Exception:
            raise InputFileError(f.path, "not a readable Parquet file", "Re-export it as Parquet, or as CSV named .csv") from None
    if f.fmt == "xlsx":
        names = xlsx.header(f.path, f.sheet, f.header_row)
        if not names and f.header_row is not None:
            raise InputFileError(f.label, f"sheet has no row {f.header_row} (header_row)", "Fix header_row in the config")
        if not names:
            raise InputFileError(f.label, "sheet is empty", "Put the table's header in its first row")
        return names, None
    return _text_header(f, fmt)


def header_line(f: InputFile) -> int | None:
    """The line (a workbook: Excel's row) an error about the header names; a Parquet file has none."""
    return None if f.fmt == "parquet" else f.header_row or 1


# names the reader gives its own columns beside the file's: each line's number and the per-check columns. An
# extract's column so named was a traceback (Polars: "cannot add row_index with name 'source_line'") or a parse
# failure naming no column
RESERVED_NAME = "source_line"
RESERVED_PREFIXES = ("_err_", "_raw_", "_ambiguous_", "_txt_", "_low_")


def _check_duplicates(f: InputFile, header: list[str]) -> None:
    seen: dict[str, int] = {}
    for i, name in enumerate(header, start=1):
        key = name.strip()
        if key.lower() == RESERVED_NAME or key.lower().startswith(RESERVED_PREFIXES):
            raise InputFileError(
                f.label,
                f"column {i}, '{printable(key)}', has a name order-audit gives its own columns as it reads a file",
                "Rename that column in the extract, or leave it out (order-audit does not read it)",
                line=header_line(f),
            )
        if key and key in seen:
            raise InputFileError(
                f.label,
                f"column name '{key}' appears twice in the header (columns {seen[key]} and {i})",
                "Rename or drop one of them in the extract, so the right one is read",
                line=header_line(f),
            )
        seen.setdefault(key, i)


def _delimiter_hint(f: InputFile, contract: TableContract, cfg: Config, line: str, found: int) -> str | None:
    """When the header splits into the contract's columns at another delimiter, say which and how to set it."""
    fmt = cfg.format_of(f.table)
    current = fmt.delimiter_for(f.path.suffix)
    wanted = {c.lower() for c in contract.columns} | {v.lower() for v in cfg.columns.get(f.table, {}).values()}
    best = None
    for d, name in OTHER_DELIMITERS.items():
        if d == current or d not in line:
            continue
        fields = [x.strip().lower() for x in line.split(d)]
        hits = sum(x in wanted for x in fields)
        if len(fields) > 1 and hits > found and (best is None or hits > best[2]):
            best = (d, name, hits)
    if best is None:
        return None
    shown = "\\t" if best[0] == "\t" else best[0]
    return (
        f"The header splits into {best[2]} contract column(s) at '{shown}': the file looks {best[1]}-delimited; "
        f'set delimiter = "{shown}" under [formats.{f.table}] in the config'
    )


def with_set_aside(rename: dict[str, str], names: list[str]) -> dict[str, str]:
    """``rename`` (``column_map``'s) with a name of its own for each column of ``names`` that has the name of a
    contract column the config maps from another header (``order_id = "ORDER_NO"`` beside an ``order_id`` column):
    the config chose the other one, so it is not read, yet keeps its place (the checks count and place the
    columns: a short row, a column without a name) and its values (an extra column, ``order_id (not read)``).
    Renamed beside it, the name was there twice: a Polars DuplicateError the run reported as a bug (exit 70),
    Spark's ambiguous reference."""
    aside: dict[str, str] = {}
    for c in (c for c in names if c in set(rename.values()) and c not in rename):
        aside[c] = f"{c} (not read)"
        while aside[c] in names:
            aside[c] += "_"
    return {**aside, **rename}


def column_map(f: InputFile, contract: TableContract, cfg: Config) -> dict[str, str]:
    """source column name -> canonical name; raises on a missing required column."""
    header, line = read_header(f, cfg.format_of(f.table))
    _check_duplicates(f, header)
    configured = cfg.columns.get(contract.name, {})
    by_lower: dict[str, list[tuple[int, str]]] = {}
    for i, h in enumerate(header, start=1):
        by_lower.setdefault(h.strip().lower(), []).append((i, h))
    rename: dict[str, str] = {}
    for canonical in contract.columns:
        source = configured.get(canonical)
        if source is not None:
            if source not in header:
                raise InputFileError(
                    f.label,
                    f"column '{source}' (mapped to {canonical} in the config) not in the header",
                    "Fix [columns." + contract.name + "] in the config or the extract",
                    line=header_line(f),
                )
            rename[source] = canonical
        elif canonical.lower() in by_lower:
            same = by_lower[canonical.lower()]
            if len(same) > 1:
                (i, a), (j, b) = same[:2]
                raise InputFileError(
                    f.label,
                    f"columns '{a}' (column {i}) and '{b}' (column {j}) both read as {canonical}",
                    f"Rename one in the extract, or name the right one under [columns.{contract.name}] in the config",
                    line=header_line(f),
                )
            rename[same[0][1]] = canonical
    missing = [c for c in contract.required_columns if c not in rename.values()]
    if missing:
        hint = _delimiter_hint(f, contract, cfg, line, len(rename)) if line is not None else None
        if hint:
            raise InputFileError(f.label, f"required column(s) missing: {', '.join(missing)}", hint, line=header_line(f))
        raise MissingColumnError(
            f.label,
            f"required column(s) missing: {', '.join(missing)}",
            f"Add them, or map the extract's names under [columns.{contract.name}] in --config "
            "(order-audit inspect --input DIR --write-config FILE writes the mapping it can find)",
            line=header_line(f),
        )
    return rename
