"""The Cases sheet's rows written column-wise: Polars builds the sheet XML xlsxwriter's ``constant_memory``
mode would write cell by cell (about 4 s of Python at 10M orders), byte for byte.

With ``share_repeated`` the text columns whose values repeat (verdicts, explanations, departments, rule ids)
go to the workbook's shared string table instead, as Excel itself writes text: each distinct text once, and a
cell only its number (at 10M orders a third less Cases sheet XML; the cells read the same).

Cells with anything unusual (control characters, ``_xHHHH_`` sequences, non-ASCII first or last characters)
are formatted one by one with xlsxwriter's own helpers, so they too match; a frame with a string over
Excel's 32767-character limit takes the row-by-row path. tests/test_workbook.py checks the two paths give
identical files.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil

import polars as pl
from xlsxwriter.utility import _preserve_whitespace, _utf16_len, xl_col_to_name
from xlsxwriter.xmlwriter import XMLwriter

LINE_POINTS = 15  # one line of 11-point text
MAX_LINES = 12

XLS_STRMAX = 32767  # xlsxwriter's (and Excel's) longest cell string, in UTF-16 units
XLS_ROWMAX = 1048576
# a string cell the column-wise path does not format: control characters (escaped _xHHHH_),
# text that looks like such an escape, a possible rich string, non-ASCII first/last characters
# (is it whitespace to preserve?)
_SPECIAL = r"[\x00-\x08\x0B-\x1F\x{FFFE}\x{FFFF}]|_x[0-9a-fA-F]{4}_|^[^\x00-\x7F]|[^\x00-\x7F]$"
# a text column goes to the shared string table when its values appear this many times each on average: a
# cell then costs its number instead of its text (ids, unique per row or nearly, stay inline)
SHARE_REPEATS = 4


def write_rows(ws, frame: pl.DataFrame, first_row: int, lines: pl.Series | None = None, share_repeated: bool = False) -> None:
    """Write ``frame``'s rows from sheet row ``first_row`` on, as ``ws.write_row`` row by row would.

    ``ws`` is a constant_memory worksheet of a workbook with strings_to_formulas/urls/numbers off
    and nothing but header rows written yet; a column's format (``set_column``) styles its cells;
    a row with ``lines[i]`` over 1 is that many lines high. The last non-blank row goes through
    ``write_row`` (it flushes the rows before it to the row file and sets the sheet's dimensions,
    as the row by row path does); the XML of the rows before it is appended behind the header.
    ``share_repeated``: the column-wise path writes the repeated text columns (``SHARE_REPEATS``) of every row
    but that last one as shared strings of the workbook (the row-by-row path writes every text inline).
    """
    lines = lines if lines is not None else pl.Series("lines", [1] * frame.height, dtype=pl.Int64)
    if not columnwise_ok(frame, first_row):
        for i, (row, n) in enumerate(zip(frame.iter_rows(), lines, strict=True), start=first_row):
            if n > 1:
                ws.set_row(i, LINE_POINTS * n)
            ws.write_row(i, 0, row)
        return
    styles = [_column_style(ws, j) for j in range(frame.width)]
    xml, last = _rows_xml(frame, first_row, styles, lines, ws.str_table if share_repeated else None)
    if last is None:
        return  # every cell blank: write_row would write nothing either
    if lines[last] > 1:
        ws.set_row(first_row + last, LINE_POINTS * lines[last])
    ws.write_row(first_row + last, 0, frame.row(last))
    ws.fh.flush()
    ws.fh.buffer.write(xml)


def copy_rows_as_bytes(ws) -> None:
    """Have xlsxwriter copy a constant_memory sheet's row file into its sheet XML as bytes: its own copy reads the
    file back as text, decoding (at 10M orders) 170 MB only to encode them again. The same bytes: text mode
    changes only carriage returns, and the row file has none (a control character in a cell is written _x000D_)."""

    def write_sheet_data() -> None:  # xlsxwriter 3.3's Worksheet._write_optimized_sheet_data, the copy in binary
        if ws.dim_rowmin is None:
            ws._xml_empty_tag("sheetData")
            return
        ws._xml_start_tag("sheetData")
        ws.row_data_fh.close()
        ws.fh.flush()
        with open(ws.row_data_filename, "rb") as rows:
            shutil.copyfileobj(rows, ws.fh.buffer, 1 << 20)
        os.unlink(ws.row_data_filename)
        ws._xml_end_tag("sheetData")

    ws._write_optimized_sheet_data = write_sheet_data


def _column_style(ws, col: int) -> str:
    """The ``s="n"`` attribute xlsxwriter gives an unformatted cell of column ``col`` (its column format)."""
    info = ws.col_info.get(col)
    fmt = info.column_format if info is not None else None
    return f' s="{fmt._get_xf_index()}"' if fmt is not None else ""


EXCEL_EPOCH = dt.datetime(1899, 12, 31)
_EARLIEST = dt.date(1900, 3, 1)  # from here on, Excel's serial is days since 1899-12-31 plus one (1900 leap bug)


def is_date(dtype) -> bool:
    return dtype == pl.Date or (isinstance(dtype, pl.Datetime) and dtype.time_zone is None)


def columnwise_ok(frame: pl.DataFrame, first_row: int) -> bool:
    """Only strings, finite numbers and dates from 1900-03-01 within the sheet's bounds (else the
    row-by-row path decides)."""
    if frame.height == 0 or first_row + frame.height > XLS_ROWMAX:
        return False
    for name, dtype in frame.schema.items():
        if dtype == pl.String:
            # a string over Excel's limit is truncated and write_row then stops (the row's later
            # cells are not written): leave that to the row-by-row path. UTF-8 bytes >= UTF-16 units.
            long = frame[name].filter(frame[name].str.len_bytes() > XLS_STRMAX).to_list()
            if any(_utf16_len(v) > XLS_STRMAX for v in long):
                return False
            continue
        if is_date(dtype):
            earliest = frame[name].min()
            if earliest is not None and (earliest if dtype == pl.Date else earliest.date()) < _EARLIEST:
                return False
            continue
        if not dtype.is_numeric() or dtype.is_decimal():
            return False
        if dtype.is_float() and not frame[name].drop_nulls().is_finite().all():
            return False  # NaN/inf: write_number raises; let it
    return True


def _excel_serial(column: pl.Series) -> pl.Series:
    """Dates and naive datetimes as Excel serial numbers, computed as xlsxwriter's
    ``_datetime_to_excel_datetime`` does: days + (seconds + microseconds / 1e6) / 86400, plus one."""
    if column.dtype == pl.Date:
        days = (column - EXCEL_EPOCH.date()).dt.total_days()
        return days.cast(pl.Float64) + 1.0
    us = (column.cast(pl.Datetime("us")) - EXCEL_EPOCH).dt.total_microseconds()
    days = us // 86_400_000_000
    rest = us - days * 86_400_000_000
    fraction = ((rest // 1_000_000).cast(pl.Float64) + (rest % 1_000_000).cast(pl.Float64) / 1e6) / 86400.0
    return days.cast(pl.Float64) + fraction + 1.0


def _cell_exact(value: str, ref: str, style: str) -> str:
    """One string cell (within Excel's length limit) as xlsxwriter's constant_memory writer formats it."""
    value = XMLwriter._escape_control_characters(value)
    preserve = ' xml:space="preserve"' if _preserve_whitespace(value) else ""
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f'<c r="{ref}"{style} t="inlineStr"><is><t{preserve}>{value}</t></is></c>'


def _rows_xml(
    frame: pl.DataFrame, first_row: int, styles: list[str], lines: pl.Series, shared_strings=None
) -> tuple[bytes, int | None]:
    """The ``<row>`` elements of every row of ``frame`` but its last non-blank one (UTF-8), and that row's index.

    Blank cells (null or empty string) are left out and rows without any cell too, as xlsxwriter does;
    ``styles[j]`` is column j's ``s`` attribute (or ''); ``shared_strings``: the workbook's shared string table,
    for the repeated text columns (None: every text inline).
    """
    s = pl.col
    n = frame.height
    rownum = pl.int_range(first_row + 1, first_row + 1 + n, dtype=pl.Int64).cast(pl.String).alias("_r")
    base = frame.with_columns(rownum)
    presence = {name: _present(s(name), dtype) for name, dtype in frame.schema.items()}
    non_blank = frame.select(pl.arg_where(pl.any_horizontal(presence.values()))).to_series()
    if non_blank.len() == 0:
        return b"", None
    last = int(non_blank[-1])
    shared = _share(frame.head(last), shared_strings) if shared_strings is not None else {}
    cells: list[pl.Expr] = []
    extra: dict[str, pl.Series] = {}
    for j, (name, dtype) in enumerate(frame.schema.items()):
        col = xl_col_to_name(j)
        v = s(name)
        present = presence[name]
        if name in shared:  # the text's number in the shared string table
            number = v.replace_strict(shared[name], default=None, return_dtype=pl.String)
            ref = [pl.lit(f'<c r="{col}'), s("_r"), pl.lit(f'"{styles[j]} t="s"><v>'), number, pl.lit("</v></c>")]
            cells.append(pl.when(~present).then(pl.lit("")).otherwise(pl.concat_str(ref)))
        elif dtype == pl.String:
            special = present & v.str.contains(_SPECIAL)
            idx = base.select(pl.arg_where(special)).to_series()
            exact = pl.Series(f"_x{j}", [None] * n, dtype=pl.String)
            if idx.len():
                values = frame[name].gather(idx).to_list()
                refs = [f"{col}{first_row + 1 + i}" for i in idx.to_list()]
                exact = exact.scatter(idx, [_cell_exact(val, ref, styles[j]) for val, ref in zip(values, refs, strict=True)])
            extra[exact.name] = exact
            escaped = v  # most columns hold no & < >: three replacements would copy every value for nothing
            if frame[name].str.contains("[&<>]").any():
                escaped = v.str.replace_all("&", "&amp;", literal=True).str.replace_all("<", "&lt;", literal=True)
                escaped = escaped.str.replace_all(">", "&gt;", literal=True)
            preserve = pl.when(v.str.contains(r"^[ \t\n]|[ \t\n]$")).then(pl.lit(' xml:space="preserve"')).otherwise(pl.lit(""))
            plain = pl.concat_str(
                [
                    pl.lit(f'<c r="{col}'),
                    s("_r"),
                    pl.lit(f'"{styles[j]} t="inlineStr"><is><t'),
                    preserve,
                    pl.lit(">"),
                    escaped,
                    pl.lit("</t></is></c>"),
                ]
            )
            cells.append(pl.when(~present).then(pl.lit("")).otherwise(pl.coalesce(s(exact.name), plain)))
        else:  # a finite number (a date as its serial number): write_number's f"{number:.16G}"
            values = _excel_serial(frame[name]) if is_date(dtype) else frame[name]
            whole = dtype == pl.Date or (dtype.is_integer() and (values.abs().max() or 0) < 10**16)
            if whole:  # whole numbers under 16 digits: their digits are what .16G prints
                digits = values.cast(pl.Int64).cast(pl.String)
            else:
                digits = pl.Series([None if x is None else f"{x:.16G}" for x in values.to_list()], dtype=pl.String)
            text = digits.alias(f"_x{j}")
            extra[text.name] = text
            cells.append(
                pl.when(~present)
                .then(pl.lit(""))
                .otherwise(
                    pl.concat_str(
                        [pl.lit(f'<c r="{col}'), s("_r"), pl.lit(f'"{styles[j]}><v>'), s(text.name), pl.lit("</v></c>")]
                    )
                )
            )
    # set_row(points): pixels = int(points * 4 / 3 + 0.5), written back as ht = pixels * 0.75
    heights = {n: f"{int(LINE_POINTS * n * 4.0 / 3.0 + 0.5) * 0.75:.16g}" for n in range(1, MAX_LINES + 1)}
    height = lines.replace_strict(heights, return_dtype=pl.String).alias("_ht")
    row_open = (
        pl.when(s("_lines") > 1)
        .then(pl.concat_str([pl.lit('" ht="'), s("_ht"), pl.lit('" customHeight="1">')]))
        .otherwise(pl.lit('">'))
    )
    rows = base.with_columns(*extra.values(), lines.alias("_lines"), height).select(
        pl.any_horizontal(presence.values()).alias("filled"),
        pl.concat_str([pl.lit('<row r="'), s("_r"), row_open, *cells, pl.lit("</row>")]).alias("xml"),
    )
    # as bytes: a Python str of 170 MB (at 10M orders) would be decoded from Polars' UTF-8 only to be encoded again
    xml = rows.head(last).filter(s("filled")).select(s("xml").str.join("").cast(pl.Binary))["xml"][0]
    return xml, last


def _present(v: pl.Expr, dtype) -> pl.Expr:
    """A cell xlsxwriter writes: not null, and for text not empty."""
    return v.is_not_null() & (v != "") if dtype == pl.String else v.is_not_null()


def _share(rows: pl.DataFrame, table) -> dict[str, dict[str, str]]:
    """The repeated text columns of ``rows`` put in the workbook's shared string ``table``: column -> text -> its
    number. Each distinct text once, in column order then order of appearance (the same rows, the same table);
    the table's reference count grows by the cells. A column with text shaped like rich text (``<r>...</r>``)
    stays inline: xlsxwriter would write that text into the table as raw XML."""
    out: dict[str, dict[str, str]] = {}
    for name, dtype in rows.schema.items():
        if dtype != pl.String:
            continue
        texts = rows.select(pl.col(name).filter(_present(pl.col(name), dtype))).to_series()
        distinct = texts.unique(maintain_order=True)
        if distinct.len() == 0 or texts.len() < SHARE_REPEATS * distinct.len():
            continue
        if (distinct.str.starts_with("<r>") & distinct.str.ends_with("</r>")).any():
            continue
        out[name] = {value: str(table._get_shared_string_index(value)) for value in distinct.to_list()}
        table.count += texts.len() - distinct.len()  # one reference per cell (each text counted once above)
    return out
