"""The chart-review case list as an Excel workbook (xlsxwriter), with an explanation sheet.

Every cell is written as a string or number explicitly, and text that a spreadsheet would
run as a formula (``=``, ``+``, ``-``, ``@``, tab, CR first) gets a leading quote
(formula_guard, ``_as_cells``). File properties carry a fixed date so reruns produce the
same bytes.

The Cases sheet (some 500k cells at 10M orders) is the one large part: xlsxwriter's per-cell
Python path costs about 4 s there, so its rows are turned into sheet XML column-wise with
Polars instead (``_rows_xml``), producing exactly the bytes xlsxwriter's ``constant_memory``
mode writes (tests/test_workbook.py checks the two paths give identical files). Cells with
anything unusual (control characters, ``_xHHHH_`` sequences, non-ASCII first or last
characters) are formatted one by one with xlsxwriter's own helpers, so they
too match; a frame with a string over Excel's 32767-character limit takes the row-by-row path.
Text shaped like rich-text XML (``<r>...</r>``) is escaped like any other, on both paths.
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import polars as pl
import xlsxwriter
from xlsxwriter.utility import _preserve_whitespace, _utf16_len, xl_col_to_name
from xlsxwriter.xmlwriter import XMLwriter

from pipeline.bidi import visible_expr
from pipeline.formula_guard import neutralise_expr

COLUMN_NOTES = {
    "case_id": "Case = the index procedure (its procedure_id).",
    "patient_key": "Keyed pseudonym of the patient (HMAC-SHA256); the raw id is never in this file.",
    "index_local_date": "Site-local date of the index procedure.",
    "case_department": "Department of the index procedure.",
    "order_id": "Imaging order id.",
    "ordered_at_local": "Order time, site-local.",
    "hours_since_index": "Hours from the procedure to the order (absolute time).",
    "episode_number": "Imaging episode (orders within 24 h of the episode's first order); 1 = first.",
    "order_code": "Order code as sent (CPT, LOINC or local).",
    "order_name": "Order name as sent.",
    "study_type": "Study type from the imaging code map.",
    "ordering_department": "Department that placed the order.",
    "ordering_provider_id": "Provider who placed the order.",
    "status": "Order status.",
    "verdict": "appropriate, inappropriate, review, not_evaluable or excluded.",
    "reasons": "Reason codes of the verdict, in registry order.",
    "secondary_reasons": "Other reasons that fired but did not set the verdict.",
    "explanation": "The reasons in words.",
    "rule_ids": "Rule ids (see the Rules sheet).",
    "citations": "Guideline citations of the rules.",
    "indication_text": "Indication text as sent.",
}
_FIXED_DATE = dt.datetime(2000, 1, 1)


def write_case_list(path: Path, cases: pl.DataFrame, rules: pl.DataFrame, run_info: dict) -> Path:
    """Write ``case_list.xlsx``: sheet Cases (one row per audited order), Explanation and Rules."""
    # constant_memory: rows stream to disk as written (a 10k-order list neither piles up cell objects
    # nor pays for them); the Cases sheet is therefore written strictly row by row.
    # zipped in memory, then written in one go: on a full disk xlsxwriter's half-written ZipFile would
    # fail again when collected, printing "Exception ignored" lines after the run's one error line
    packed = io.BytesIO()
    wb = xlsxwriter.Workbook(
        packed,
        {"strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False, "constant_memory": True},
    )
    wb.set_properties({"title": "order-audit case list", "created": _FIXED_DATE, "comments": f"run {run_info['run_id']}"})
    head = wb.add_format({"bold": True, "bg_color": "#DDE5EE", "text_wrap": True, "valign": "top"})
    wrap = wb.add_format({"text_wrap": True, "valign": "top"})

    ws = wb.add_worksheet("Cases")
    # xlsxwriter writes a string that starts with "<r>" and ends with "</r>" as raw rich-text XML
    # (unescaped), so free text of that shape could corrupt the sheet: every cell is plain text here
    ws._xml_rich_inline_string = lambda string, attributes=(): ws._xml_inline_string(
        string, _preserve_whitespace(string), list(attributes)
    )
    columns = cases.columns
    widths = {"explanation": 60, "citations": 60, "order_name": 30, "indication_text": 30}
    for j, name in enumerate(columns):
        ws.set_column(j, j, widths.get(name, 16))
    ws.freeze_panes(1, 0)
    ws.write_row(0, 0, columns, head)
    _write_rows(ws, _as_cells(cases), first_row=1)
    if cases.height:
        ws.autofilter(0, 0, cases.height, len(columns) - 1)

    ex = wb.add_worksheet("Explanation")
    ex.set_column(0, 0, 24)
    ex.set_column(1, 1, 90)
    lines = [
        ("Run id", run_info["run_id"]),
        ("Period", str(run_info["period"])),
        ("Rule-set version", run_info["rule_set_version"]),
        ("Software version", run_info["software_version"]),
        (
            "Patient identifiers",
            "Only the keyed pseudonym patient_key appears. Reviewers who need the chart "
            "ask the operator for the crosswalk file (--reid-file), kept apart.",
        ),
        ("", ""),
        ("Column", "Meaning"),
    ] + [(c, COLUMN_NOTES.get(c, "")) for c in columns]
    for i, (a, b) in enumerate(lines):
        fmt = head if a in ("Column",) else wrap
        ex.write_string(i, 0, a, fmt)
        ex.write_string(i, 1, b, fmt)

    rs = wb.add_worksheet("Rules")
    cols = ["rule_id", "reason_code", "verdict", "explanation", "citation"]
    for j, c in enumerate(cols):
        rs.write_string(0, j, c, head)
    for i, r in enumerate(rules.select(cols).iter_rows(), start=1):
        for j, v in enumerate(r):
            rs.write_string(i, j, "" if v is None else str(v), wrap)
    rs.set_column(0, 2, 16)
    rs.set_column(3, 4, 70)
    wb.close()
    Path(path).write_bytes(packed.getvalue())
    return path


def _as_cells(frame: pl.DataFrame) -> pl.DataFrame:
    """Every value as a number or as the text a reviewer reads: temporal and other types in their
    string form, formula triggers neutralised (a spreadsheet would run them even when stored as
    text once edited or exported), bidirectional controls shown (bidi.py)."""
    text = [c for c, t in frame.schema.items() if not (t.is_numeric() or t == pl.Boolean)]
    frame = frame.with_columns(pl.col(c).cast(pl.String) for c in text)
    return frame.with_columns(*(neutralise_expr(c) for c in text)).with_columns(*(visible_expr(c) for c in text))


# ----------------------------------------------------------------------------- the Cases rows

XLS_STRMAX = 32767  # xlsxwriter's (and Excel's) longest cell string, in UTF-16 units
XLS_ROWMAX = 1048576
# a string cell the column-wise path does not format: control characters (escaped _xHHHH_),
# text that looks like such an escape, a possible rich string, non-ASCII first/last characters
# (is it whitespace to preserve?)
_SPECIAL = r"[\x00-\x08\x0B-\x1F\x{FFFE}\x{FFFF}]|_x[0-9a-fA-F]{4}_|^[^\x00-\x7F]|[^\x00-\x7F]$"


def _write_rows(ws, frame: pl.DataFrame, first_row: int) -> None:
    """Write ``frame``'s rows from sheet row ``first_row`` on, as ``ws.write_row`` row by row would.

    ``ws`` is a constant_memory worksheet of a workbook with strings_to_formulas/urls/numbers off
    and nothing but header rows written yet. The last non-blank row goes through ``write_row``
    (it flushes the rows before it to the row file and sets the sheet's dimensions, as the row by
    row path does); the XML of the rows before it is appended to the row file behind the header.
    """
    if not _columnwise_ok(frame, first_row):
        for i, row in enumerate(frame.iter_rows(), start=first_row):
            ws.write_row(i, 0, row)
        return
    xml, last = _rows_xml(frame, first_row)
    if last is None:
        return  # every cell blank: write_row would write nothing either
    ws.write_row(first_row + last, 0, frame.row(last))
    ws.fh.write(xml)


def _columnwise_ok(frame: pl.DataFrame, first_row: int) -> bool:
    """Only strings and finite numbers within the sheet's bounds (else the row-by-row path decides)."""
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
        if not dtype.is_numeric() or dtype.is_decimal():
            return False
        if dtype.is_float() and not frame[name].drop_nulls().is_finite().all():
            return False  # NaN/inf: write_number raises; let it
    return True


def _cell_exact(value: str, ref: str) -> str:
    """One string cell (within Excel's length limit) as xlsxwriter's constant_memory writer formats it."""
    value = XMLwriter._escape_control_characters(value)
    preserve = ' xml:space="preserve"' if _preserve_whitespace(value) else ""
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f'<c r="{ref}" t="inlineStr"><is><t{preserve}>{value}</t></is></c>'


def _rows_xml(frame: pl.DataFrame, first_row: int) -> tuple[str, int | None]:
    """The ``<row>`` elements of every row of ``frame`` but its last non-blank one, and that row's index.

    Blank cells (null or empty string) are left out and rows without any cell too, as xlsxwriter does.
    """
    s = pl.col
    n = frame.height
    rownum = pl.int_range(first_row + 1, first_row + 1 + n, dtype=pl.Int64).cast(pl.String).alias("_r")
    base = frame.with_columns(rownum)
    cells: list[pl.Expr] = []
    filled: list[pl.Expr] = []
    extra: dict[str, pl.Series] = {}
    for j, (name, dtype) in enumerate(frame.schema.items()):
        col = xl_col_to_name(j)
        v = s(name)
        if dtype == pl.String:
            present = v.is_not_null() & (v != "")
            special = present & v.str.contains(_SPECIAL)
            idx = base.select(pl.arg_where(special)).to_series()
            exact = pl.Series(f"_x{j}", [None] * n, dtype=pl.String)
            if idx.len():
                values = frame[name].gather(idx).to_list()
                refs = [f"{col}{first_row + 1 + i}" for i in idx.to_list()]
                exact = exact.scatter(idx, [_cell_exact(val, ref) for val, ref in zip(values, refs, strict=True)])
            extra[exact.name] = exact
            escaped = v.str.replace_all("&", "&amp;", literal=True).str.replace_all("<", "&lt;", literal=True)
            escaped = escaped.str.replace_all(">", "&gt;", literal=True)
            preserve = pl.when(v.str.contains(r"^[ \t\n]|[ \t\n]$")).then(pl.lit(' xml:space="preserve"')).otherwise(pl.lit(""))
            plain = pl.concat_str(
                [
                    pl.lit(f'<c r="{col}'),
                    s("_r"),
                    pl.lit('" t="inlineStr"><is><t'),
                    preserve,
                    pl.lit(">"),
                    escaped,
                    pl.lit("</t></is></c>"),
                ]
            )
            cells.append(pl.when(~present).then(pl.lit("")).otherwise(pl.coalesce(s(exact.name), plain)))
        else:  # a finite number: write_number's f"{number:.16G}"
            text = pl.Series(f"_x{j}", [None if x is None else f"{x:.16G}" for x in frame[name].to_list()], dtype=pl.String)
            extra[text.name] = text
            present = v.is_not_null()
            cells.append(
                pl.when(~present)
                .then(pl.lit(""))
                .otherwise(pl.concat_str([pl.lit(f'<c r="{col}'), s("_r"), pl.lit('"><v>'), s(text.name), pl.lit("</v></c>")]))
            )
        filled.append(present)
    rows = base.with_columns(*extra.values()).select(
        pl.any_horizontal(filled).alias("filled"),
        pl.concat_str([pl.lit('<row r="'), s("_r"), pl.lit('">'), *cells, pl.lit("</row>")]).alias("xml"),
    )
    non_blank = rows.select(pl.arg_where(s("filled"))).to_series()
    if non_blank.len() == 0:
        return "", None
    last = int(non_blank[-1])
    xml = rows.head(last).filter(s("filled")).select(s("xml").str.join(""))["xml"][0]
    return xml, last
