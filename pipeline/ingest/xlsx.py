"""Excel workbooks (.xlsx) as input: one sheet per table, read by Polars' read_excel with its calamine engine (fastexcel).

Every cell is read as text, so codes stay text (72148, 0001U) and the same contract and row
rules apply as for CSV. Rows are numbered as Excel numbers them (the header row is the
first non-empty row), and a reject names the sheet and that row. A date cell arrives as
'YYYY-MM-DD HH:MM:SS'; a cell at exactly midnight is read as a bare date (Excel does not
tell a date from a midnight timestamp, and a date is what such a cell holds in an extract).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import polars as pl

from pipeline.errors import InputFileError

MIDNIGHT = r"^(\d{4}-\d{2}-\d{2}) 00:00:00$"


def _reader(path: Path):
    import fastexcel

    try:
        return fastexcel.read_excel(str(path))
    except Exception:  # fastexcel raises its own error types for every kind of unreadable file
        raise InputFileError(path, "not a readable .xlsx workbook", "Save it again from Excel as .xlsx, or export CSV") from None


def sheet_names(path: Path) -> list[str]:
    return list(_reader(path).sheet_names)


def pick_sheet(path: Path, table: str, configured: str | None) -> str:
    """The sheet holding `table`: the configured one, else one named like the table, else the only sheet."""
    names = sheet_names(path)
    listed = ", ".join(f"'{n}'" for n in names)
    if configured is not None:
        if configured not in names:
            raise InputFileError(
                path, f"has no sheet '{configured}' (sheets: {listed})", f"Fix sheet under [formats.{table}] in the config"
            )
        return configured
    same = [n for n in names if n.strip().lower() == table]
    if same and _hidden(path, same[0]):
        # a hidden sheet named like the table is often a stale copy or a template: its few rows were read
        # as the whole table while the visible sheet with the data was left out, silently
        raise InputFileError(
            path,
            f"the sheet named {same[0]} is hidden (sheets: {listed})",
            f'Name the sheet to read under [formats.{table}] in the config (sheet = "..."), or unhide it in Excel',
        )
    if same:
        return same[0]
    if len(names) == 1:
        return names[0]
    raise InputFileError(
        path,
        f"no sheet is named {table} (sheets: {listed})",
        f'Name the sheet under [formats.{table}] in the config (sheet = "..."), or run order-audit inspect',
    )


def label(path: Path, sheet: str) -> str:
    """How rejects and the ledger name a sheet: the file, then the sheet."""
    return f"{path} [sheet {sheet}]"


def _sheet_attributes(z: zipfile.ZipFile) -> dict[str, dict[str, str]]:
    """Each sheet's attributes in xl/workbook.xml (r:id, state ...), by its name."""
    book = z.read("xl/workbook.xml").decode("utf-8", "replace")
    sheets = {}
    for m in re.finditer(r"<(?:\w+:)?sheet\b([^>]*)/?>", book):
        attrs = dict(re.findall(r'([\w:]+)="([^"]*)"', m.group(1)))
        sheets[_xml_unescape(attrs.get("name", ""))] = attrs
    return sheets


def _hidden(path: Path, sheet: str) -> bool:
    """Whether Excel hides the sheet (state hidden or veryHidden)."""
    try:
        with zipfile.ZipFile(path) as z:
            return _sheet_attributes(z).get(sheet, {}).get("state", "visible") != "visible"
    except (KeyError, OSError, zipfile.BadZipFile, ValueError):
        return False


def _sheet_xml(z: zipfile.ZipFile, sheet: str) -> str | None:
    """The member of the workbook holding the sheet's cells (xl/worksheets/sheet2.xml ...), if found."""
    rels = z.read("xl/_rels/workbook.xml.rels").decode("utf-8", "replace")
    rid = next((v for k, v in _sheet_attributes(z).get(sheet, {}).items() if k.endswith(":id")), None)
    target = None
    for m in re.finditer(r"<Relationship\b([^>]*)/?>", rels):
        attrs = dict(re.findall(r'([\w:]+)="([^"]*)"', m.group(1)))
        if attrs.get("Id") == rid:
            target = attrs.get("Target", "").lstrip("/")
    if target is None:
        return None
    return target if target.startswith("xl/") else f"xl/{target}"


def _merged_cells(path: Path, sheet: str) -> str | None:
    """The first range of merged cells in the sheet ('E3:E5'), or None. Read in pieces: the ranges follow the
    cells at the end of the sheet's XML."""
    pattern = re.compile(rb'<(?:\w+:)?mergeCell\b[^>]*\bref="([^"]+)"')
    try:
        with zipfile.ZipFile(path) as z:
            name = _sheet_xml(z, sheet)
            if name is None:
                return None
            with z.open(name) as fh:
                tail = b""
                while chunk := fh.read(1 << 20):
                    tail = tail[-512:] + chunk  # a tag cut between two pieces is found in the next
                    if m := pattern.search(tail):
                        return m.group(1).decode("ascii", "replace")
    except (KeyError, OSError, zipfile.BadZipFile, ValueError):
        pass
    return None


def _first_row_number(path: Path, sheet: str) -> int:
    """Excel's number of the first row that holds a value (calamine starts the sheet there)."""
    try:
        with zipfile.ZipFile(path) as z:
            name = _sheet_xml(z, sheet)
            if name is None:
                return 1
            with z.open(name) as fh:
                head = b""
                while chunk := fh.read(1 << 16):  # stop at the first cell with a value (<v> or inline <is>)
                    head += chunk
                    m = re.search(
                        rb'<(?:\w+:)?row\b[^>]*\br="(\d+)"[^>]*>(?:(?!</(?:\w+:)?row>).)*?<(?:\w+:)?(?:v|is)>', head, re.S
                    )
                    if m:
                        return int(m.group(1))
                    if len(head) > 1 << 24:
                        break
    except (KeyError, OSError, zipfile.BadZipFile, ValueError):
        pass
    return 1


def _xml_unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&apos;", "'").replace("&amp;", "&")


def _rows(path: Path, sheet: str, n_rows: int | None = None) -> pl.DataFrame:
    """The sheet's rows as text, the header row included (so a name given twice is seen, not renamed)."""
    options = {"header_row": None, "dtypes": "string"} | ({"n_rows": n_rows} if n_rows else {})
    try:
        return pl.read_excel(
            path,
            sheet_name=sheet,
            engine="calamine",
            read_options=options,
            infer_schema_length=0,
            drop_empty_rows=False,
            drop_empty_cols=False,
        )
    except Exception:  # calamine's own error types, for a sheet it cannot read
        raise InputFileError(label(path, sheet), "sheet could not be read", "Save the workbook again, or export CSV") from None


def header(path: Path, sheet: str) -> list[str]:
    """The sheet's first non-empty row, as text (duplicates kept, to be reported)."""
    frame = _rows(path, sheet, n_rows=1)
    if frame.height == 0:
        return []
    return ["" if v is None else str(v) for v in frame.row(0)]


def read_sheet(path: Path, sheet: str, line_column: str) -> pl.DataFrame:
    """Every data row of the sheet as text, with its Excel row number; blank rows left out."""
    merged = _merged_cells(path, sheet)
    if merged is not None:
        # calamine gives a merged range's value to its first cell only: the rows below read as empty
        # (a department merged over three orders left two of them without one, silently)
        raise InputFileError(
            label(path, sheet),
            f"has merged cells ({merged}): only the first of them holds the value, the others read as empty",
            "Unmerge the cells in Excel (filling each with its value), or export CSV",
        )
    raw = _rows(path, sheet)
    if raw.height == 0:
        return pl.DataFrame({line_column: []}, schema={line_column: pl.Int64})
    names = ["" if v is None else str(v) for v in raw.row(0)]
    first = _first_row_number(path, sheet)
    body = raw.slice(1).rename(dict(zip(raw.columns, names, strict=True)))
    body = body.with_columns(pl.all().str.replace(MIDNIGHT, "$1"))
    body = body.with_row_index(line_column, offset=first + 1).with_columns(pl.col(line_column).cast(pl.Int64))
    return body.filter(~pl.all_horizontal(pl.exclude(line_column).is_null()))
