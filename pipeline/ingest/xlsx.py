"""Excel workbooks (.xlsx) as input: one sheet per table, read by Polars' read_excel with its calamine engine (fastexcel).

Every cell is read as text, so codes stay text (72148, 0001U) and the same contract and row
rules apply as for CSV. Rows are numbered as Excel numbers them (the header row is the
first non-empty row), and a reject names the sheet and that row. A date cell arrives as
'YYYY-MM-DD HH:MM:SS'; a cell at exactly midnight is read as a bare date (Excel does not
tell a date from a midnight timestamp, and a date is what such a cell holds in an extract).
"""

from __future__ import annotations

import functools
import re
import zipfile
from decimal import Decimal
from pathlib import Path

import polars as pl

from pipeline.errors import InputFileError

MIDNIGHT = r"^(\d{4}-\d{2}-\d{2}) 00:00:00$"


# a workbook's list of sheets and its relationships are a few KB; one padded to 3 GB (a zip bomb of 3.5 MB) was read
# whole, as text, twice: 6.5 GB of memory and four minutes before a run went on as if nothing were wrong
PART_MOST = 16 << 20
PARTS = ("xl/workbook.xml", "xl/_rels/workbook.xml.rels", "[Content_Types].xml")


def _check_parts(path: Path) -> None:
    """Refuse a workbook whose small parts are not small (their uncompressed sizes, from the zip's directory)."""
    try:
        with zipfile.ZipFile(path) as z:
            sizes = {i.filename: i.file_size for i in z.infolist() if i.filename in PARTS}
    except (OSError, zipfile.BadZipFile, ValueError):
        return  # not a zip: the reader says so
    for part, size in sizes.items():
        if size > PART_MOST:
            raise InputFileError(
                path,
                f"its part {part} is {size:,} bytes uncompressed, where a workbook's is a few thousand: damaged, or "
                "not a workbook a spreadsheet wrote",
                "Save it again from Excel as .xlsx, or export CSV",
            )


def _reader(path: Path):
    import fastexcel

    _check_parts(path)
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


_CELL = rb"<(?:\w+:)?c\b[^>]*>"  # a cell's opening tag
# what calamine reads as an empty cell, without a word: kind -> (the text a piece must hold for the pattern to be
# searched, the pattern). The plain test first: a regex over every tag cost 25 ms a MB of cells; this, a few.
_PROBLEMS = {
    # a merged range gives its value to its first cell only (the ranges follow the cells, at the end of the XML)
    "merged": ((b"mergeCell",), re.compile(rb'<(?:\w+:)?mergeCell\b[^>]*\bref="([^"]+)"')),
    # an error value (#DIV/0!, #N/A, #REF!): a formula that failed in Excel
    "error": (
        (b't="e"',),
        re.compile(rb'<(?:\w+:)?c\b[^>]*\bt="e"[^>]*>(?:(?!</(?:\w+:)?c>).){0,8192}?<(?:\w+:)?v>([^<]*)<', re.S),
    ),
    # a formula with no saved result: written by a program that does not calculate (openpyxl, pandas' to_excel)
    # (no <v> at all: an empty <v></v> is a formula whose result is empty text, read right as empty)
    "formula": ((b"f>", b"<f ", b":f "), re.compile(rb"(?:</(?:\w+:)?f>|<(?:\w+:)?f\b[^>]*/>)\s*</(?:\w+:)?c>")),
}
_TAIL = 1 << 16  # what a piece keeps of the one before: a tag, or a cell with its formula, cut between two pieces
# a number of more digits than Excel keeps (15 significant): 16 or more before any point, or an exponent (Excel
# writes 1.2345678901234568E+19, LibreOffice 1.23456789012346E+019, another program may write 12.3456789E+18,
# 1234567E+9 or 123456789012345678E-2; XML Schema's double allows a sign of +, no digit before the point or none
# after it, +12345678901234567890, .12E+20, 1.E+19, and calamine reads each as the number), of a
# value of 10^15 or more (``LONG_NUMBER_FROM``: 1.2E+010 and 0000000000000001 are short). An id held so has lost its
# last digits (12345678901234567890 reads as 12345678901234569216), and two patients' ids may have become one.
# Searched by the value (6 ms a MB: by the cell's tag first, 18), then its cell checked to be a number's (no type,
# or t="n"): a formula's text result (t="str") may hold any digits
_LONG_NUMBER = re.compile(rb">([+-]?(?:\d{16,}(?:\.\d*)?|(?:\d+(?:\.\d*)?|\.\d+)[eE][+-]?\d+))</(?:\w+:)?v>")
LONG_NUMBER_FROM = 1e15
# a cell's opening tag and its attributes as XML allows them: any space before one, either quote (a writer's
# <c\nr='B2'> was passed over, its id read as another); r may be left out (the cell then follows the one before)
_TYPED = re.compile(rb"""\bt\s*=\s*["']([^"']*)["']""")
_ROW_OF = re.compile(rb"""\br\s*=\s*["'][A-Za-z]+(\d+)["']""")


def _long_number_cells(text: bytes) -> list[tuple[int | None, str]]:
    """(Excel's row number, the text calamine reads) of each number cell in ``text`` longer than Excel keeps: a
    whole number's digits as the double holds them (1.234567890123457E+19 reads as 12345678901234569216). The row is
    None where the cell does not name it (no r, or its tag too far back to find): any row holding that text."""
    cells = []
    for m in _LONG_NUMBER.finditer(text):
        # the cell's tag: the last one opened before its value (a formula's <f> may come between)
        lo = m.start() - 8192
        opening = _cell_opening(text, max(0, lo), m.start())
        if opening < 0 and lo < 0:
            continue  # its tag was cut off with the piece before, which held the cell whole
        tag = text[opening : text.find(b">", opening, m.start()) + 1] if opening >= 0 else b""
        typed, row = _TYPED.search(tag), _ROW_OF.search(tag)
        value = float(m.group(1))
        if abs(value) >= LONG_NUMBER_FROM and (typed is None or typed.group(1) == b"n"):
            text_read = format(Decimal(value), "f")  # as calamine reads it: the double's exact decimal digits
            cells.append((int(row.group(1)) if row else None, text_read))
    return cells


def _cell_opening(text: bytes, lo: int, hi: int) -> int:
    """Where the attributes of the last cell tag opened in ``text[lo:hi]`` begin (after `<c` or `<x:c`), else -1.
    Walked back tag by tag from the value: its tag is a few tags before it (`<v>`, a formula's `<f>`). A search for
    `<c` and for `:c` each ran to ``lo`` when the sheet has no such text (8 KB a number, 14 us; a regular expression
    over the window cost 6x as much)."""
    while (at := text.rfind(b"<", lo, hi)) >= 0:
        if m := _CELL_TAG_NAME.match(text, at + 1):  # not <col, <cfRule, <v
            return m.end() - 1
        hi = at
    return -1


# a cell tag's name, with any namespace prefix, and what may follow it
_CELL_TAG_NAME = re.compile(rb"(?:[A-Za-z_][\w.-]*:)?c[ \t\n\r>/]")


def _overlapping_pieces(path: Path, sheet: str):
    """The sheet's XML in pieces of 1 MiB, each led by the last ``_TAIL`` bytes of the one before (a tag, or a cell
    with its formula, cut between two pieces is whole in one of them). Nothing for a workbook calamine cannot read:
    its read names it."""
    try:
        with zipfile.ZipFile(path) as z:
            name = _sheet_xml(z, sheet)
            if name is None:
                return
            with z.open(name) as fh:
                tail = b""
                while chunk := fh.read(1 << 20):
                    text = tail + chunk
                    yield text
                    tail = text[-_TAIL:]
    except (KeyError, OSError, zipfile.BadZipFile, ValueError):
        return


def _cell_problem(path: Path, sheet: str) -> tuple[str, str, str] | None:
    """The first cell calamine would read as empty although the workbook holds something there: (kind, where,
    what) for a merged range (kind "merged", where 'E3:E5'), an error value ("error", 'F4', '#DIV/0!') or a
    formula whose result was never saved ("formula", 'E3', '')."""
    for text in _overlapping_pieces(path, sheet):
        for kind, (hints, pattern) in _PROBLEMS.items():
            if any(h in text for h in hints) and (m := pattern.search(text)):
                return kind, *_where(kind, text, m)
    return None


def _sheet_long_number_cells(path: Path, sheet: str) -> list[tuple[int | None, str]]:
    """``_long_number_cells`` of the whole sheet (a cell of a piece's tail, found twice, is one cell)."""
    return [cell for text in _overlapping_pieces(path, sheet) for cell in _long_number_cells(text)]


def _where(kind: str, text: bytes, m: re.Match) -> tuple[str, str]:
    """(the range or cell, the value shown) of a match of ``_PROBLEMS[kind]`` in ``text``."""
    if kind == "merged":
        return m.group(1).decode("ascii", "replace"), ""
    # an error's match starts at its cell's tag; a formula's cell is the last one opened before the match's end
    opening = [c.group(0) for c in re.finditer(_CELL, text[m.start() : m.end()] if kind == "error" else text[: m.end()])]
    ref = re.search(rb'\br="([A-Z]+\d+)"', opening[0 if kind == "error" else -1]) if opening else None
    value = m.group(1).decode("utf-8", "replace") if kind == "error" else ""
    # Excel's error codes only (#DIV/0!, #N/A, #REF!): a workbook's own text in such a cell is not shown
    shown = value if re.fullmatch(r"#[A-Z0-9/!?.]{1,10}", value) else "value"
    return (ref.group(1).decode("ascii") if ref else "?"), shown


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


# the cells calamine is let to lay out: it holds every cell of the range from the first to the last cell with
# a value (~32 bytes each, empty ones too), so one stray cell at XFD1048576 in a 6 kB workbook asked for 512 GB and
# aborted the run (a cell further in, a few GB, would be the machine's memory). Excel's every row of 64 columns.
LARGEST_RANGE = 1_048_576 * 64
# a cell beyond column BL (64) or row 999,999: only a sheet holding one can span more, and only its cells are
# then read one by one (a plain search costs a fraction of calamine's read; the cell by cell pass, as much again)
_FAR_CELL = re.compile(rb'r="(?:[A-Z]{3}|[C-Z][A-Z][0-9]|B[M-Z][0-9]|[A-Z]+[0-9]{7})')
_CELL_REF = r' r="([A-Z]+)([0-9]+)"'


def _refuse_a_range_too_large(path: Path, sheet: str) -> None:
    """Stop on a sheet whose cells span more than LARGEST_RANGE (from A1 to its furthest row and column); once per
    version of the file (a run reads its header, then its rows)."""
    try:
        stat = path.stat()
    except OSError:
        return  # calamine's read names it
    _check_range(path, sheet, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _check_range(path: Path, sheet: str, size: int, mtime_ns: int) -> None:
    if not any(_FAR_CELL.search(text) for text in _sheet_pieces(path, sheet)):
        return
    rows = columns = 0
    for text in _sheet_pieces(path, sheet):
        refs = pl.Series([text.decode("utf-8", "replace")]).str.extract_all(_CELL_REF).explode().drop_nulls()
        if refs.len():
            parts = refs.str.extract_groups(_CELL_REF).struct.unnest()
            widest = parts["1"].str.pad_start(8, "@").max()  # '@' sorts before 'A': by length, then letters
            columns = max(columns, _column_number(widest.lstrip("@")))
            rows = max(rows, int(parts["2"].str.slice(0, 12).cast(pl.Int64).max()))
    if rows * columns > LARGEST_RANGE:
        raise InputFileError(
            label(path, sheet),
            f"its cells reach row {rows:,} and column {columns:,} ({rows * columns:,} cells from A1), more than the "
            f"{LARGEST_RANGE:,} a sheet is read with (every row of 64 columns): a value far from the table "
            "(Ctrl+End in Excel goes to it)",
            "Delete it and save the workbook again, or export CSV",
        )


def _sheet_pieces(path: Path, sheet: str):
    """The sheet's XML in pieces of 16 MB, each cut after its last whole tag, read as they are asked for. A workbook
    calamine cannot read yields nothing more: its read names it."""
    try:
        with zipfile.ZipFile(path) as z:
            name = _sheet_xml(z, sheet)
            if name is None:
                return
            with z.open(name) as fh:
                tail = b""
                while chunk := fh.read(1 << 24):
                    text = tail + chunk
                    cut = text.rfind(b"<")
                    text, tail = (text[:cut], text[cut:]) if cut > 0 else (text, b"")
                    yield text
                yield tail
    except (KeyError, OSError, zipfile.BadZipFile, ValueError):
        return


def _column_number(letters: str) -> int:
    number = 0
    for letter in letters[:8]:
        number = number * 26 + ord(letter) - 64
    return number


def _rows(path: Path, sheet: str, n_rows: int | None = None) -> pl.DataFrame:
    """The sheet's rows as text, the header row included (so a name given twice is seen, not renamed)."""
    _refuse_a_range_too_large(path, sheet)
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


def _rows_above(path: Path, sheet: str, header_row: int | None) -> tuple[int, int]:
    """(Excel's number of the first row that holds a value, how many rows from it come before the header)."""
    first = _first_row_number(path, sheet)
    if header_row is None:
        return first, 0
    if header_row < first:
        raise InputFileError(
            label(path, sheet), f"header_row {header_row} is above the sheet's first row that holds a value ({first})",
            "Fix header_row under [formats] in the config (order-audit inspect finds the header's row)",
        )  # fmt: skip
    return first, header_row - first


def header(path: Path, sheet: str, header_row: int | None = None) -> list[str]:
    """The sheet's header: the row header_row names, else its first non-empty row, as text (duplicates kept, to be
    reported). Empty when the sheet has no such row."""
    _, above = _rows_above(path, sheet, header_row)
    frame = _rows(path, sheet, n_rows=above + 1)
    if frame.height <= above:
        return []
    return ["" if v is None else str(v) for v in frame.row(above)]


def first_rows(path: Path, sheet: str, n_rows: int) -> tuple[int, list[list[str]]]:
    """(Excel's number of the first row that holds a value, the first n_rows rows from there as text)."""
    frame = _rows(path, sheet, n_rows=n_rows)
    rows = [["" if v is None else str(v) for v in row] for row in frame.iter_rows()]
    return _first_row_number(path, sheet), rows


def read_sheet(
    path: Path, sheet: str, line_column: str, header_row: int | None = None, read: frozenset[str] = frozenset()
) -> pl.DataFrame:
    """Every data row of the sheet as text, with its Excel row number; blank rows left out, and the rows above the
    header (header_row: Excel's number of its row, else the first row that holds a value). ``read``: the columns
    (by their names in the sheet) the run reads, of which none may hold a number longer than Excel keeps."""
    problem = _cell_problem(path, sheet)
    if problem is not None:
        # calamine reads each of these as an empty cell: a department merged over three orders left two of them
        # without one, and an indication code computed by a formula (#N/A, or never calculated) was lost, silently
        kind, where, shown = problem
        what, fix = {
            "merged": (f"has merged cells ({where}): only the first of them holds the value, the others read as empty",
                       "Unmerge the cells in Excel (filling each with its value), or export CSV"),
            "error": (f"cell {where} holds the error {shown} (a formula that failed), which would read as empty",
                      "Fix the formula in Excel, or replace its results by their values, or export CSV"),
            "formula": (f"cell {where} holds a formula whose result was never saved (the program that wrote the "
                        "workbook does not calculate), which would read as empty",
                        "Open the workbook in Excel or LibreOffice and save it (that calculates it), or export CSV"),
        }[kind]  # fmt: skip
        row = re.search(r"\d+$", where) if kind != "merged" else None
        raise InputFileError(label(path, sheet), what, fix, line=int(row.group(0)) if row else None)
    first, above = _rows_above(path, sheet, header_row)
    raw = _rows(path, sheet)
    if raw.height <= above:
        return pl.DataFrame({line_column: []}, schema={line_column: pl.Int64})
    names = ["" if v is None else str(v) for v in raw.row(above)]
    body = raw.slice(above + 1).rename(dict(zip(raw.columns, names, strict=True)))
    body = body.with_columns(pl.all().str.replace(MIDNIGHT, "$1"))
    body = body.with_row_index(line_column, offset=first + above + 1).with_columns(pl.col(line_column).cast(pl.Int64))
    _refuse_a_long_number(path, sheet, body, line_column, [n for n in body.columns if n in read])
    return body.filter(~pl.all_horizontal(pl.exclude(line_column).is_null()))


def _refuse_a_long_number(path: Path, sheet: str, body: pl.DataFrame, line_column: str, read: list[str]) -> None:
    """Stop at the first number cell longer than Excel keeps in a column the run reads, naming its row and column;
    one in a column of the site's own that the run does not read is no matter. The sheet's XML is searched for such
    cells only when a column the run reads holds a value of 16 digits or more, as each of them reads (a 20-digit
    accession number in every row cost ~8 us a cell to find); the XML gives each one's row and the text calamine
    reads, and its column is the one holding that text in that row."""
    digits = [pl.col(c).str.len_bytes().ge(16) & pl.col(c).str.count_matches(r"\d").ge(16) for c in read]
    if not digits or not body.select(pl.any_horizontal(digits).any()).item():
        return
    cells = _sheet_long_number_cells(path, sheet)
    if not cells:
        return
    found = pl.DataFrame(cells, schema={line_column: pl.Int64, "_long": pl.String}, orient="row").unique()
    in_rows, anywhere = found.drop_nulls(), found.filter(pl.col(line_column).is_null()).select("_long")
    hits = []
    for c in read:
        values = body.select(line_column, pl.col(c).alias("_long"), pl.lit(c).alias("_column"))
        hits += [values.join(in_rows, on=[line_column, "_long"]), values.join(anywhere, on="_long")]
    first = pl.concat(hits).sort(line_column).head(1)
    if first.height:
        line, value, column = first.row(0)
        raise InputFileError(
            label(path, sheet),
            f"column {column} holds the number {value} in a number cell, more digits than Excel keeps (15): an id "
            "held as a number has lost its last digits, and two ids may have become one",
            "Export the column as text (format it as Text before the data goes in), or export CSV",
            line=line,
        )
