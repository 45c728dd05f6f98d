"""The chart-review case list as an Excel workbook (xlsxwriter): a sheet reviewers work in.

Sheet Cases has one row per audited order with readable headers, real dates and times, column
widths, verdict colours, reviewer columns (agreement as a drop-down, comment, reviewer, review
date), print setup (landscape on the run's paper, fit to width, header row repeated), frozen panes and a filter.
Sheets Providers (every provider's rates), Explanation and Rules follow; a sheet too wide to print legibly on one
page's width (Providers) prints across pages, its first column repeated.

Every text cell goes through ``formula_guard.neutralise`` here and nowhere else: no cell starts
as a live formula (=, +, -, @, tab, CR). File properties carry a fixed date so reruns produce the
same bytes.

The Cases sheet (some 500k cells at 10M orders) is the one large part: its rows are turned into sheet
XML column-wise with Polars (``sheet_rows``), the bytes xlsxwriter's ``constant_memory`` mode writes but for
its repeated texts, which go to the shared string table. Text shaped like rich-text XML (``<r>...</r>``) is
escaped like any other, on both paths.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import io
import textwrap
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl
import xlsxwriter
import xlsxwriter.workbook
from xlsxwriter.utility import _preserve_whitespace, xl_col_to_name

from pipeline.formula_guard import neutralise, neutralise_expr
from pipeline.quality.result import OUTCOMES, outcome, outcome_counts, printed_examples
from pipeline.report import sheet_rows
from pipeline.report.caselist import TIME_AFTER_FORMAT, time_after_number
from pipeline.report.controls import visible_expr
from pipeline.report.names import department_names, labelled, labelled_list, named
from pipeline.report.paper import paper_of
from pipeline.report.sections import export_limits
from pipeline.report.sheet_rows import LINE_POINTS, MAX_LINES
from pipeline.wording import counted

# the Cases sheet's repeated texts (verdicts, explanations, departments...) as shared strings, as Excel writes
# them: at 10M orders a third less sheet XML to build and zip (sheet_rows); False: every text inline
SHARE_REPEATED_TEXT = True


@dataclass(frozen=True)
class Column:
    header: str
    width: float
    note: str
    style: str = ""  # "", "wrap", "date", "datetime", "hours", "typed", "count", "duration"


# the Cases sheet, in order: source column -> how it is shown; other columns keep their name. The
# columns up to the reviewer's are the printed review form (the print area); the rest are for filters.
# An audit's own columns ([report] columns of its manifest: header, width, note, style, "form") replace
# the engine's of the same name, or come in after patient_key ("form") or after the reviewer's.
FORM_HEAD: dict[str, Column] = {
    "case_id": Column("Case", 11, "The case (its id); the audit's DESIGN.md says what a case is."),
    "patient_key": Column("Patient key", 17, "Keyed pseudonym of the patient (HMAC-SHA256); the raw id is never in this file."),
}
FORM_TAIL: dict[str, Column] = {
    # the time after the index comes first, beside the order's date and time: an audit's own time column in the form
    # (the low back pain audit's Day) comes in there too, so both audits' forms have the same columns in the same places
    "time_after_index": Column("Time after index", 14, "Time from the case's index to the order.", "duration"),
    "order_id": Column("Order", 11, "Imaging order id."),
    "order_name": Column("Ordered study", 26, "Order name as sent.", "wrap"),
    "ordering_department": Column("Ordering department", 15, "Department that placed the order (order measures count here)."),
    "verdict": Column("Verdict", 13, "appropriate, inappropriate, review, not_evaluable or excluded (coloured)."),
    "explanation": Column("Why (in words)", 42, "The reasons in words.", "wrap"),
    "reviewer_agrees": Column("Reviewer agrees?", 11, "Reviewer: agree, disagree or unsure (drop-down)."),
    "reviewer_comment": Column("Reviewer comment", 22, "Reviewer: free text.", "typed"),
    "reviewer": Column("Reviewer", 11, "Reviewer: name or initials.", "typed"),
    "review_date": Column("Review date", 11, "Reviewer: date of the review.", "date"),
}
MORE: dict[str, Column] = {
    "ordering_provider_id": Column("Ordering provider", 13, "Provider who placed the order."),
    "order_code": Column("Code", 9, "Order code as sent (CPT, LOINC or local)."),
    "study_type": Column("Study type", 14, "Study type from the imaging code map."),
    "status": Column("Status", 10, "Order status."),
    "reason_labels": Column("Reasons", 30, "The reasons of the verdict in words, in rule order (the Rules sheet lists each)."),
    "reasons": Column("Reason codes", 20, "Reason codes of the verdict, in rule order (filter on them)."),
    "secondary_reason_labels": Column("Also fired", 24, "Other reasons that fired but did not set the verdict, in words."),
    "secondary_reasons": Column("Also fired (codes)", 16, "Reason codes of the other reasons that fired."),
    "rule_ids": Column("Rules", 10, "Rule ids: each rule's guideline citation is on the Rules sheet."),
    "indication_text": Column("Indication (as sent)", 30, "Indication text as sent."),
}


# what the time after the index holds, said under the audit's own words for the column (Explanation sheet)
TIME_AFTER_NOTE = (
    "A number, so it sorts and filters as the time does: hours x 100 + minutes (7159 shows 71 h 59 min; negative: "
    "before the index)."
)


def case_columns(audit_columns: dict | None = None) -> dict[str, Column]:
    """The Cases sheet's known columns in order, the audit's own placed as its manifest says."""
    own = {
        k: Column(str(v[0]), float(v[1]), str(v[2]), str(v[3]) if len(v) > 3 else "") for k, v in (audit_columns or {}).items()
    }
    form = [k for k, v in (audit_columns or {}).items() if len(v) > 4 and v[4] == "form"]
    engine = {**FORM_HEAD, **FORM_TAIL, **MORE}
    order = [*FORM_HEAD, *(k for k in form if k not in engine), *FORM_TAIL]
    order += [k for k in own if k not in engine and k not in form] + [*MORE]
    columns = {k: own.get(k, engine.get(k)) for k in order}
    # the time after the index is the engine's number (time_after_number) under the audit's header: its format and
    # what the number holds are the engine's too (an audit's style "" showed 7159 for 71 h 59 min)
    after = columns["time_after_index"]
    columns["time_after_index"] = replace(after, style="duration", note=f"{after.note} {TIME_AFTER_NOTE}")
    return columns


CASE_COLUMNS = case_columns()  # the engine's alone
REVIEW_COLUMNS = ("reviewer_agrees", "reviewer_comment", "reviewer", "review_date")  # empty: the reviewer fills them
DROPPED = ("index_at", "minutes_since_index")  # sort key and the source of time_after_index
AGREEMENT = ["agree", "disagree", "unsure"]
VERDICT_COLOURS = {
    "inappropriate": "#F4CCCC",
    "review": "#FCE8B2",
    "appropriate": "#D9EAD3",
    "not_evaluable": "#E7E6E6",
    "excluded": "#E7E6E6",
}
_FIXED_DATE = dt.datetime(2000, 1, 1)
# hours: two decimals always, as the value is truncated to 0.01 h: 96.8 beside 96.71 read as the larger
_NUM_FORMATS = {"date": "yyyy-mm-dd", "datetime": "yyyy-mm-dd hh:mm", "hours": "0.00"}
# a column's style (an audit's [report.columns] names one of them: audits.COLUMN_STYLES) -> its cell format
STYLE_FORMATS = {
    "": {"valign": "top"},
    "wrap": {"text_wrap": True, "valign": "top"},
    **{k: {"num_format": f, "valign": "top"} for k, f in _NUM_FORMATS.items()},
    # what a reviewer types stays as typed: a comment "1/2 views" or "3-4" became a date, "1e3" a number
    "typed": {"num_format": "@", "text_wrap": True, "valign": "top"},
    # a small count in a narrow column, centred: right-aligned, the Day's "10" ran into the next column's order id
    # in print ("10O00100146")
    "count": {"align": "center", "valign": "top"},
    # centred as the low back pain Day in the same place of the form: right-aligned, '96 h 43 min' ran into the
    # next column's order id in print
    "duration": {"num_format": TIME_AFTER_FORMAT, "align": "center", "valign": "top"},
}


def with_display_names(
    cases: pl.DataFrame, known: dict[str, Column], names: dict[str, str], spec=None
) -> tuple[pl.DataFrame, dict[str, Column]]:
    """Each department column printed by its display name (``names.department_name``, as the report prints it), the
    study type and the audit's ``[report] label_columns`` in words (its ``[report] labels``), each key kept in a
    ``<column>_key`` column after the others (a filter key, as the extracts and the code map spell it)."""
    columns = ["ordering_department", "case_department", getattr(spec, "case_department", None)]
    present = [c for c in dict.fromkeys(columns) if c is not None and c in cases.columns]
    shown = {c: named(c, names) for c in present}
    labels = getattr(spec, "labels", None) or {}
    if "study_type" in cases.columns:
        shown["study_type"] = labelled("study_type", labels)
    for col in getattr(spec, "label_columns", ()):
        if col in cases.columns:
            # a column of one key a row (the low back pain Modality) in words by its distinct keys: splitting
            # every row as a list costs ~0.3 s more per million orders for the same words
            several = cases[col].cast(pl.String).str.contains("|", literal=True).any()
            shown[col] = labelled_list(col, labels, col) if several else labelled(col, labels)
    known = dict(known)
    for col in shown:
        header = (known.get(col) or Column(col, 16, "")).header
        known[f"{col}_key"] = Column(
            f"{header} key", 16, f"{header}: the key as the data outputs (audited_orders.csv) hold it (filter on it)."
        )
    keys = [pl.col(c).cast(pl.String).alias(f"{c}_key") for c in shown]
    return cases.with_columns(*keys, *shown.values()), known


def with_why_naming(
    cases: pl.DataFrame, known: dict[str, Column], columns: tuple[str, ...]
) -> tuple[pl.DataFrame, dict[str, Column]]:
    """Each row's Why (in words) ending with the audit's ``[report] why_columns`` that hold a value, in words under
    their headers ('... outside this audit. Red flags: neurological impairment.'): the printed review form names the
    red flag a reviewer confirms in the chart, where a reason's own words said only 'a red flag (for example cancer,
    ...)'. The columns themselves stay among the filter columns, so both audits' forms keep their columns."""
    named = [c for c in columns if c in cases.columns]
    if not named or "explanation" not in cases.columns:
        return cases, known
    headers = [(known.get(c) or Column(c, 16, "")).header for c in named]
    parts = [pl.col("explanation")]
    for column, header in zip(named, headers, strict=True):
        value = pl.col(column).cast(pl.String)
        parts.append(pl.when(value.fill_null("") != "").then(f" {header}: " + value + ".").otherwise(pl.lit("")))
    why = known.get("explanation") or CASE_COLUMNS["explanation"]
    note = f"{why.note} Then, where the row has any: {', '.join(headers)} (what the reviewer confirms in the chart)."
    return cases.with_columns(pl.concat_str(parts).alias("explanation")), {**known, "explanation": replace(why, note=note)}


def cases_sheet_frame(cases: pl.DataFrame, known_columns: dict[str, Column] | None = None) -> pl.DataFrame:
    """The Cases sheet's columns in order: known columns shaped, text made formula-safe (one place);
    the case list's own columns (``_``...) stay out."""
    known_columns = known_columns or CASE_COLUMNS
    extra = [pl.lit(None, pl.String).alias(c) for c in REVIEW_COLUMNS[:3]] + [pl.lit(None, pl.Date).alias(REVIEW_COLUMNS[3])]
    if "minutes_since_index" in cases.columns:
        # a number in TIME_AFTER_FORMAT: as text ('100 h 0 min' before '71 h 59 min') a sort put the times out of order
        extra.append(time_after_number("minutes_since_index").alias("time_after_index"))
    frame = cases.with_columns(*extra)
    known = [c for c in known_columns if c in frame.columns]
    rest = [c for c in frame.columns if c not in known_columns and c not in DROPPED and not c.startswith("_")]
    frame = frame.select(*known, *rest)
    converted = []
    for name, dtype in frame.schema.items():
        if sheet_rows.is_date(dtype):
            continue  # written as real dates and times
        if not (dtype.is_numeric() or dtype == pl.Boolean):
            converted.append(pl.col(name).cast(pl.String))
    frame = frame.with_columns(converted)
    text = [c for c, t in frame.schema.items() if t == pl.String]
    # formula triggers neutralised (a spreadsheet runs them once a cell is edited or exported), then
    # control characters shown as [U+202E], [U+001B] (controls.py): a right-to-left override cannot spoof a row
    return frame.with_columns(neutralise_expr(c) for c in text).with_columns(visible_expr(c) for c in text)


def write_case_list(
    path: Path,
    cases: pl.DataFrame,
    rules: pl.DataFrame,
    run_info: dict,
    providers: pl.DataFrame | None = None,
    low: int = 20,
    spec=None,
    positions: pl.DataFrame | None = None,
    status_notes: list[str] = (),
) -> Path:
    """Write ``case_list.xlsx``: sheets Cases (one row per audited order), Providers, Explanation and Rules.
    ``positions``: group_key, funnel_position (``sections.funnel_positions``), a column of the Providers sheet.
    ``status_notes``: what the report's first page says of the period (``audit_sections.status_texts``)."""
    # constant_memory: rows stream to disk as written (a 100k-order list neither piles up cell objects
    # nor pays for them); the Cases sheet is therefore written strictly row by row.
    # zipped in memory, then written in one go: on a full disk xlsxwriter's half-written ZipFile would
    # fail again when collected, printing "Exception ignored" lines after the run's one error line
    # tmpdir: the rows and parts xlsxwriter spools to files go beside the workbook (a run's staging folder), so
    # a write that fails or is killed half-way leaves them where the run's clean-up or the next run's sweep
    # removes them, not in the machine's /tmp
    packed = io.BytesIO()
    wb = xlsxwriter.Workbook(
        packed,
        {
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "strings_to_numbers": False,
            "constant_memory": True,
            "tmpdir": str(Path(path).parent),
        },
    )
    wb.set_properties({"title": "order-audit case list", "created": _FIXED_DATE, "comments": f"run {run_info['run_id']}"})
    head = wb.add_format({"bold": True, "bg_color": "#DDE5EE", "text_wrap": True, "valign": "top", "border": 1})
    styles = {name: wb.add_format(properties) for name, properties in STYLE_FORMATS.items()}
    percent = wb.add_format({"num_format": "0.0%"})
    # text after a right-aligned number, a character in: the Providers sheet printed '100.0%within limits'
    indented = wb.add_format({"indent": 1})
    # xf indices fixed here, in one order, whichever writing path the rows take (the bytes must agree)
    for fmt in (head, *styles.values(), percent, indented):
        fmt._get_xf_index()

    known = case_columns(spec.columns if spec is not None else None)
    # the verdicts this audit's rules can give (the low back pain audit has no review verdict)
    given = set(rules["verdict"].to_list()) if "verdict" in rules.columns else set(VERDICT_COLOURS)
    verdicts = [v for v in VERDICT_COLOURS if v in given]
    named_verdicts = f"{', '.join(verdicts[:-1])} or {verdicts[-1]}" if len(verdicts) > 1 else "".join(verdicts)
    known["verdict"] = replace(known["verdict"], note=f"{named_verdicts} (coloured).")
    cases, known = with_display_names(cases, known, department_names(run_info.get("config") or {}), spec)
    cases, known = with_why_naming(cases, known, getattr(spec, "why_columns", ()))
    sheet = cases_sheet_frame(cases, known)
    columns = fitted_columns(sheet, [known.get(c, Column(c, 16, "")) for c in sheet.columns])
    ws = wb.add_worksheet("Cases")
    # xlsxwriter writes a string that starts with "<r>" and ends with "</r>" as raw rich-text XML
    # (unescaped), so free text of that shape could corrupt the sheet: every cell is plain text here
    ws._xml_rich_inline_string = lambda string, attributes=(): ws._xml_inline_string(
        string, _preserve_whitespace(string), list(attributes)
    )
    for j, col in enumerate(columns):
        ws.set_column(j, j, col.width, styles[col.style])
    ws.write_row(0, 0, [c.header for c in columns], head)
    ws.set_row(0, 30)
    sheet_rows.write_rows(ws, sheet, first_row=1, lines=_row_lines(sheet, columns), share_repeated=SHARE_REPEATED_TEXT)
    sheet_rows.copy_rows_as_bytes(ws)
    last_row, last_col = max(sheet.height, 1), len(columns) - 1
    ws.freeze_panes(1, 2)
    ws.autofilter(0, 0, last_row, last_col)
    # codes and ids are text on purpose (a CPT code 72156, a comment typed '3'): Excel marked every such cell with its
    # green 'number stored as text' triangle and offered to convert it
    ws.ignore_errors({"number_stored_as_text": f"A1:{xl_col_to_name(last_col)}{last_row + 1}"})
    if "reviewer_agrees" in sheet.columns:
        agrees, review_date = sheet.columns.index("reviewer_agrees"), sheet.columns.index("review_date")
        ws.data_validation(
            1,
            agrees,
            last_row,
            agrees,
            {
                "validate": "list",
                "source": AGREEMENT,
                "input_title": "Reviewer",
                "input_message": "agree, disagree or unsure",
                # a typo ("approprate", "agreed") is refused with the words to use, not the spreadsheet's generic
                # "does not match the restrictions": a judgement outside the list is lost when the answers are counted
                "error_title": "Reviewer agrees?",
                "error_message": "Choose agree, disagree or unsure from the list (or leave the cell empty).",
            },
        )
        ws.data_validation(
            1,
            review_date,
            last_row,
            review_date,
            {
                "validate": "date",
                "criteria": ">=",
                "value": dt.date(2000, 1, 1),
                "error_title": "Review date",  # titled as the agreement's is: "Microsoft Excel" told the reviewer nothing
                "error_message": "A date, e.g. 2026-07-15",
            },
        )
        ws.print_area(0, 0, last_row, review_date)  # the review form; the technical columns stay on screen
    if "verdict" in sheet.columns:
        v = sheet.columns.index("verdict")
        for verdict, colour in VERDICT_COLOURS.items():
            fmt = wb.add_format({"bg_color": colour})
            ws.conditional_format(1, v, last_row, v, {"type": "cell", "criteria": "==", "value": f'"{verdict}"', "format": fmt})
    # the review form one page wide: a reviewer's row whole on one sheet of paper, the reviewer's columns beside the
    # verdict and its reasons (its columns are fitted to the page: caselist.column_widths)
    _print_setup(ws, run_info, "case list", across=1)

    measures = [(i, spec.measure(i).label) for i in spec.provider_ids] if spec is not None else None
    funnel = spec.measure(spec.funnel_measure) if spec is not None else None
    funnel_label = funnel.label if funnel is not None else None
    _providers_sheet(wb, providers, head, percent, indented, low, run_info, measures, positions, funnel_label)
    provider_notes = provider_column_notes(spec, low, funnel_label if positions is not None else None)
    _explanation_sheet(wb, run_info, columns, head, styles["wrap"], provider_notes, status_notes)
    _rules_sheet(wb, rules, head, styles["wrap"], run_info)
    with _fast_zip():
        wb.close()
    Path(path).write_bytes(packed.getvalue())
    return path


@contextlib.contextmanager
def _fast_zip():
    """Zip the workbook at zlib level 1: xlsxwriter uses the default level 6 and has no option for it;
    at 120k orders level 1 takes 1.2 s less for a file a third larger (same bytes every run)."""
    original = xlsxwriter.workbook.ZipFile
    xlsxwriter.workbook.ZipFile = functools.partial(zipfile.ZipFile, compresslevel=1)
    try:
        yield
    finally:
        xlsxwriter.workbook.ZipFile = original


FIT_WIDTH_MAX = 30  # an unwrapped text column widens to its longest value up to this many characters
MIN_WIDTH = {"date": 11, "datetime": 17}  # yyyy-mm-dd, yyyy-mm-dd hh:mm and a character apart from the next column


def fitted_columns(sheet: pl.DataFrame, columns: list[Column]) -> list[Column]:
    """Unwrapped text columns as wide as their longest value (plus a character), up to FIT_WIDTH_MAX, and
    wrapped beyond it; date and time columns as wide as their format: a long id (an episode, an order)
    is neither cut off nor run into the next column when the sheet is printed."""
    text = [n for n, c in zip(sheet.columns, columns, strict=True) if c.style == "" and sheet.schema[n] == pl.String]
    # a time after the index as long as its format shows it: a number wider than its column prints as ###
    times = [n for n, c in zip(sheet.columns, columns, strict=True) if c.style == "duration" and sheet.schema[n].is_integer()]
    shown = [pl.col(n).str.len_chars().max().alias(n) for n in text] + [_time_after_chars(n).max().alias(n) for n in times]
    longest = sheet.select(shown).row(0, named=True) if shown and sheet.height else {}
    out = []
    for name, col in zip(sheet.columns, columns, strict=True):
        need = max((longest.get(name) or 0) + 1, MIN_WIDTH.get(col.style, 0))
        if need > col.width:
            col = replace(col, width=float(min(need, FIT_WIDTH_MAX)), style="wrap" if need > FIT_WIDTH_MAX else col.style)
        out.append(col)
    return out


def _widen_to_longest(frame: pl.DataFrame, widths: list[float], fitted: dict[int, tuple[str, int]]) -> None:
    """``widths[j]`` widened to the longest value of ``frame``'s column named in ``fitted[j]`` (name, indent) plus a
    character and its indent, up to FIT_WIDTH_MAX: a one-word column (an id, a code) neither cut off nor run into the
    next column in print. ``fitted_columns`` does so for the Cases sheet, wrapping what is longer."""
    present = {j: fit for j, fit in fitted.items() if fit[0] in frame.columns}
    if not present or not frame.height:
        return
    longest = frame.select(pl.col(name).str.len_chars().max().alias(str(j)) for j, (name, _) in present.items()).row(0)
    for (j, (_, indent)), n in zip(present.items(), longest, strict=True):
        widths[j] = max(widths[j], min(float((n or 0) + 1 + indent), FIT_WIDTH_MAX))


def _time_after_chars(name: str) -> pl.Expr:
    """The characters TIME_AFTER_FORMAT shows for a time after the index: its hours, ' h 00 min', ' before'."""
    number = pl.col(name)
    hours = (number.abs() // 100).cast(pl.String).str.len_chars()
    return hours + len(" h 00 min") + pl.when(number < 0).then(len(" before")).otherwise(0)


def _row_lines(sheet: pl.DataFrame, columns: list[Column]) -> pl.Series:
    """Lines each row needs for its wrapped columns (LibreOffice does not fit row heights on opening)."""
    parts = [pl.lit(1)]
    for name, col in zip(sheet.columns, columns, strict=True):
        if col.style in ("wrap", "typed") and sheet.schema[name] == pl.String:  # typed: wrapped text too
            text = pl.col(name).fill_null("")
            per_line = max(1, int(col.width * 1.1))  # characters of running text per line
            parts.append((text.str.len_chars() // per_line + 1 + text.str.count_matches("\n")).cast(pl.Int64))
    return sheet.select(pl.max_horizontal(parts).clip(1, MAX_LINES).alias("lines"))["lines"]


# a bold header's characters per unit of column width (xlsxwriter's width is in the default font's characters)
BOLD_CHARS_PER_WIDTH = 0.9


def header_width(text: str) -> float:
    """The column width at which a bold header's longest word fits on one line (with a character to spare)."""
    return max((len(word) for word in text.split()), default=0) / BOLD_CHARS_PER_WIDTH + 1


def header_lines(text: str, width: float) -> int:
    """The lines a bold header takes in a column ``width`` wide, wrapped at its word breaks."""
    return len(textwrap.wrap(text, max(1, int(width * BOLD_CHARS_PER_WIDTH)), break_long_words=False)) or 1


def fitted_header_width(headers: list[str], least: float, lines: int) -> float:
    """The narrowest width from ``least`` on (in whole characters) at which every one of ``headers`` wraps in ``lines``
    lines at most, and its longest word fits on one."""
    width = max(least, *(header_width(h) for h in headers))
    while any(header_lines(h, width) > lines for h in headers):
        width += 1
    return width


def _fit_heights(ws, sheet: pl.DataFrame, widths: list[float], first_row: int, min_lines: int = 1) -> None:
    """Rows of wrapped text written cell by cell (a few dozen) as high as their lines, as the Cases rows are:
    LibreOffice keeps a row one line high on opening and prints its wrapped lines over the next row's. Called
    before the rows are written (a constant_memory sheet takes a row's height only before its cells)."""
    columns = [Column(name, width, "", "wrap") for name, width in zip(sheet.columns, widths, strict=True)]
    for i, n in enumerate(_row_lines(sheet, columns).to_list()):
        if max(n, min_lines) > 1:
            ws.set_row(first_row + i, LINE_POINTS * max(n, min_lines))


# the smallest scale a sheet is shrunk to to fit the page's width: the workbook's 11 pt at 6.6 pt (the report prints
# its tables at 7 to 8.5 pt). Fitted to one page wide, the CSF-leak Providers sheet (18 columns, each header naming
# its measure in full) printed at 48%, its type 5.3 pt: a sheet too wide for the page at this scale prints on as many
# pages across as it needs (at this scale or larger), its first column, whose row it is, repeated on each
LEGIBLE_SCALE = 0.6
SHEET_MARGINS_IN = 0.7 + 0.7  # the sheets' left and right page margins (xlsxwriter's and Excel's default)
PIXELS_PER_INCH = 96


def column_pixels(width: float) -> int:
    """A column ``width`` characters wide (as set_column takes it) in Excel's pixels: 7 a digit of the default
    font (Calibri 11) and 5 of padding."""
    return int(width * 7 + 5)


def pages_across(widths: list[float], paper) -> int:
    """The fewest pages across that columns ``widths`` wide print on at LEGIBLE_SCALE or larger on ``paper``
    (landscape), a page's columns whole and the first column repeated on each page after the first; 1 when they
    fit one page wide. Fitted to that many pages wide, the sheet prints at the largest scale that fills them."""
    page = (paper.width_in - SHEET_MARGINS_IN) * PIXELS_PER_INCH / LEGIBLE_SCALE
    pixels = [column_pixels(w) for w in widths]
    pages, used = 1, 0
    for px in pixels:
        if used and used + px > page:  # the page is full: the next starts with the repeated first column
            pages, used = pages + 1, pixels[0]
        used += px
    return pages


def _print_setup(
    ws, run_info: dict, what: str, widths: list[float] = (), header_row: bool = True, across: int | None = None
) -> None:
    """Landscape on the run's paper (A4 or Letter: ``[reporting] paper``), as many pages tall as the rows need and
    fitted to the width of ``across`` pages (else as many as the printed columns, ``widths``, need to print at
    LEGIBLE_SCALE or larger: ``pages_across``), the header row on every page (``header_row``: the sheet has one)
    and, on a sheet more than a page wide, its first column too, the pages printed across then down (a row's pages
    one after the other), with the run on every page."""
    paper = paper_of(run_info)
    ws.set_paper(paper.xlsx_code)
    ws.set_landscape()
    across = across or pages_across(widths, paper)
    ws.fit_to_pages(across, 0)
    if header_row:
        ws.repeat_rows(0)
    if across > 1:
        ws.repeat_columns(0)
        ws.print_across()
    title = run_info.get("audit", {}).get("short_title") or "order-audit"
    text = f"{title} {what}, period {run_info['period']}, run {run_info['run_id']}".replace("&", "&&")
    ws.set_header(f"&L{text}")
    ws.set_footer("&RPage &P of &N")


# a provider measure's columns: its numerator, denominator, rate and the rate's 95% interval
PROVIDER_STATISTICS = ("n", "N", "rate", "95% CI low", "95% CI high")
PROVIDER_HEADER_LINES = 5
PROVIDERS_GLOSSARY = "Providers sheet column"  # the Explanation's header over the Providers columns' meanings


def _providers_sheet(
    wb,
    providers: pl.DataFrame | None,
    head,
    percent,
    indented,
    low: int,
    run_info: dict,
    measures=None,
    positions=None,
    funnel_label=None,
) -> None:
    """Every provider of the period with n, N, rate and interval of each headline measure it has (a case measure
    only where a case belongs to a provider: ``ReportSpec.provider_ids``), its funnel position
    (with ``positions``) and the low-reliability mark (the report lists only providers with enough orders, or
    outside the funnel limits). ``measures``: (id, label) pairs."""
    ps = wb.add_worksheet("Providers")
    if measures is None:
        ids = sorted(providers["measure_id"].unique().to_list()) if providers is not None and providers.height else []
        measures = [(m, m) for m in ids]
    header = ["Provider"]
    # each column named in full (one header row): a measure's name over its n column alone read as a grouped header
    # in print, but a filter, a sort or a CSV export saw three columns each of "N", "rate" and "95% CI low"
    for _, label in measures:
        header += [f"{label}: {stat}" for stat in PROVIDER_STATISTICS]
    with_position = positions is not None
    if with_position:
        header.append(f"Funnel position ({funnel_label.lower()})" if funnel_label else "Funnel position")
    header.append(f"Low reliability (N under {low})")
    ps.write_row(0, 0, header, head)
    # a measure's five columns one width, at which each of their headers wraps in PROVIDER_HEADER_LINES lines at most:
    # named in full, 'Leak cases whose first imaging was the right study: 95% CI high' took ten lines at 10
    measure_widths = [
        fitted_header_width(header[1 + 5 * k : 6 + 5 * k], 10.0, PROVIDER_HEADER_LINES) for k in range(len(measures))
    ]
    widths = [16.0] + [w for w in measure_widths for _ in range(5)] + ([18.0] if with_position else []) + [14.0]
    # each column as wide as the longest word of its header at least: a narrower one split 'Inappropria-te'
    widths = [max(w, header_width(h)) for w, h in zip(widths, header, strict=True)]
    sheet = providers_sheet_frame(providers, [m for m, _ in measures], low, positions)
    # the provider and its funnel position as wide as their longest value (plus a character), as the Cases sheet's
    # text: 'above 95% limit (worse)' ran into the next column's 'yes' in print
    # (the funnel position a character more: it is indented by one)
    _widen_to_longest(sheet, widths, {0: ("group_key", 0), len(header) - 2: ("funnel_position", 1)})
    ps.set_column(0, 0, widths[0])
    for k in range(len(measures)):  # n and N as counts, the rate and its interval as percent
        for j in range(1 + 5 * k, 6 + 5 * k):
            ps.set_column(j, j, widths[j], percent if j >= 3 + 5 * k else None)
    if with_position:
        ps.set_column(len(header) - 2, len(header) - 2, widths[-2], indented)
    # indented too: without a funnel position it follows the last interval ('100.0%yes')
    ps.set_column(len(header) - 1, len(header) - 1, widths[-1], indented)
    # the header row as high as its longest label wrapped at word breaks (a measure's name in a narrow column),
    # two lines at least: a count of its characters gave 'study: n' no line, clipped in LibreOffice's print
    ps.set_row(0, LINE_POINTS * max(2, *(header_lines(h, w) for h, w in zip(header, widths, strict=True))))
    if sheet.height:
        sheet_rows.write_rows(ps, sheet, first_row=1)
        ps.autofilter(0, 0, sheet.height, len(header) - 1)
    ps.freeze_panes(1, 1)
    _print_setup(ps, run_info, "providers", widths)


def providers_sheet_frame(
    providers: pl.DataFrame | None, measure_ids: list[str], low: int, positions: pl.DataFrame | None = None
) -> pl.DataFrame:
    """The Providers sheet's rows: one per provider (sorted), per measure n, N, rate, interval (null where the
    provider has no such cell), its funnel position (with ``positions``), and "yes" where any denominator is
    under ``low``."""
    if providers is None or providers.height == 0:
        return pl.DataFrame()
    key = pl.col("group_key").cast(pl.String).fill_null("None")  # as the sheet prints a provider without a key
    cells = providers.select(
        key,
        "measure_id",
        "numerator",
        "denominator",
        "rate",
        "ci_low",
        "ci_high",
    )
    sheet = cells.select("group_key").unique().sort("group_key")
    for k, mid in enumerate(measure_ids):
        one = (
            cells.filter(pl.col("measure_id") == mid)
            .unique("group_key", keep="last", maintain_order=True)
            .select(
                "group_key",
                *[
                    pl.col(c).cast(pl.Float64 if c in ("rate", "ci_low", "ci_high") else pl.Int64).alias(f"{c}_{k}")
                    for c in ("numerator", "denominator", "rate", "ci_low", "ci_high")
                ],
            )
        )
        sheet = sheet.join(one, on="group_key", how="left", maintain_order="left")
    small = [(pl.col(f"denominator_{k}") > 0) & (pl.col(f"denominator_{k}") < low) for k in range(len(measure_ids))]
    low_col = (
        pl.when(pl.any_horizontal(small).fill_null(False)).then(pl.lit("yes")).otherwise(pl.lit(None, pl.String))
        if small
        else pl.lit(None, pl.String)
    )
    if positions is not None:
        place = positions.select(
            key,
            pl.when(pl.col("funnel_position") != "").then("funnel_position").alias("funnel_position"),
        )
        sheet = sheet.join(
            place.unique("group_key", keep="last", maintain_order=True), on="group_key", how="left", maintain_order="left"
        )
    return sheet.with_columns(neutralise_expr("group_key"), low_col.alias("low_reliability"))


def provider_column_notes(spec, low: int, funnel_label: str | None) -> list[tuple[str, str]]:
    """The Providers sheet's columns in words, for the Explanation: what each measure's n and N count (its numerator
    and denominator, as the report names them under its rates), then the rate, interval, funnel position and
    low-reliability mark. A header 'Inappropriate orders: N' said which measure, not which orders; without the
    audit's ``spec`` (its measures' words) none."""
    if spec is None or not spec.provider_ids:
        return []
    notes = []
    for measure_id in spec.provider_ids:  # one row a measure: its five columns
        measure = spec.measure(measure_id)
        notes.append(
            (
                measure.label,
                f"n: {measure.numerator}. N: {measure.denominator}. rate: n / N; 95% CI low and high: its Wilson interval.",
            )
        )
    if funnel_label:
        notes.append(
            (
                f"Funnel position ({funnel_label.lower()})",  # as the sheet heads it
                f"Where the provider's rate of {funnel_label.lower()} falls on the report's funnel plot: within limits, "
                "or above or below its 95% or 99.8% limit, better or worse by the measure's direction.",
            )
        )
    notes.append((f"Low reliability (N under {low})", f"yes where any N of the provider is under {low}: too few to judge by."))
    return notes


def _explanation_sheet(
    wb, run_info: dict, columns: list[Column], head, wrap, provider_notes=(), status_notes: list[str] = ()
) -> None:
    ex = wb.add_worksheet("Explanation")
    # its first row is the run id, no header: repeated, it stood atop each printed page over the columns' glossary
    # 110 wide: the A4 landscape page holds it unshrunk, and the longer notes take a line less each (at 90, the
    # Providers columns' meanings pushed the CSF-leak Explanation onto a third page)
    widths = [24.0, 110.0]
    _print_setup(ex, run_info, "case list: explanation", widths, header_row=False)
    ex.set_column(0, 0, widths[0])
    ex.set_column(1, 1, widths[1])
    lines = [
        ("Run id", run_info["run_id"]),
        ("Period", str(run_info["period"])),
        ("Rule-set version", run_info["rule_set_version"]),
        ("Software version", run_info["software_version"]),
        (
            "Patient identifiers",
            "Only the keyed pseudonym (patient key) appears. Reviewers who need the chart "
            "ask the operator for the crosswalk file (--reid-file), kept apart.",
        ),
        ("Reviewing", _reviewing(columns)),
        *_period_status(run_info, status_notes),
        *_data_quality(run_info),
        # what the FHIR export's manifest says the data lack, as the report's Data quality says it
        *(("Data limits", f"{e['title']}. {e['text']}") for e in export_limits(run_info)),
        ("", ""),
        ("Column", "Meaning"),
    ] + [(c.header, c.note) for c in columns]
    if provider_notes:  # what each Providers column counts, under a header of its own
        lines += [("", ""), (PROVIDERS_GLOSSARY, "Meaning"), *provider_notes]
    _fit_heights(ex, pl.DataFrame(lines, schema=["item", "text"], orient="row"), widths, 0)
    for i, (a, b) in enumerate(lines):
        fmt = head if a in ("Column", PROVIDERS_GLOSSARY) else wrap
        ex.write_string(i, 0, neutralise(a) or "", fmt)
        ex.write_string(i, 1, neutralise(b) or "", fmt)


def _reviewing(columns: list[Column]) -> str:
    """Where the reviewer writes: the reviewer's columns end the printed form, but on screen the filter columns
    (codes and keys) follow them, so "the last four columns" sent a reviewer to the far right of the sheet."""
    headers = [c.header for c in columns]
    first, last = (FORM_TAIL[k].header for k in (REVIEW_COLUMNS[0], REVIEW_COLUMNS[-1]))
    if first not in headers or last not in headers:  # a sheet without the review form
        return "Sheet Cases lists every audited order. Filters are on the header row."
    where = f"{xl_col_to_name(headers.index(first))} to {xl_col_to_name(headers.index(last))}"
    return (
        f"Sheet Cases lists every audited order. Fill in the four reviewer columns, {where} ({first} to {last}, the "
        "last columns of the printed form): agreement with the verdict (drop-down), a comment, your name and the date. "
        "Filters are on the header row; the columns after the reviewer's (codes and keys) are there to filter on."
    )


def _period_status(run_info: dict, status_notes: list[str]) -> list[tuple[str, str]]:
    """Whether the period's verdicts can still change, and what else the report's first page says of the period
    (``status_notes``: its notes in its words), then the audit's own note on the period: a reviewer works in this
    file, not on the report's first page."""
    notes = [*status_notes, *(n["text"] for n in run_info.get("period_notes") or [])]
    return [("Period status", text) for text in notes]


def _data_quality(run_info: dict) -> list[tuple[str, str]]:
    """The data-quality gate's outcome as the report's Methods says it (quality.result.OUTCOMES): a warning's rows are
    in the Cases sheet, so a reviewer should know it was a warning and not a failure; a run without the gate says so."""
    checks = run_info.get("data_quality") or []
    if not checks:
        return [("Data quality", "The data-quality gate did not run for this file (--no-validate): no checks are recorded.")]
    counts = ", ".join(text for _, text in outcome_counts(checks))
    text = f"{counted(len(checks), 'check')} by the data-quality gate: {counts}."
    for d in checks:
        if (key := outcome(d)) == "passed":
            continue
        rows = "" if d.get("violated_count") is None else f" {d['violated_count']:,} of {d.get('denominator') or 0:,} rows"
        what = f"{d['severity'].capitalize()}, {OUTCOMES[key][0]}"
        text += f"\n{what}: {d['check_id']} ({d.get('table') or ''}){rows}. {d.get('description') or ''}"
        if found := printed_examples(d):
            text += f" Found: {'; '.join(found)}"
    return [("Data quality", text)]


def _rules_sheet(wb, rules: pl.DataFrame, head, wrap, run_info: dict) -> None:
    rs = wb.add_worksheet("Rules")
    cols = ["rule_id", "label", "reason_code", "verdict", "explanation", "citation"]
    for j, c in enumerate(["Rule", "Reason", "Reason code", "Verdict", "Explanation", "Citation"]):
        rs.write_string(0, j, c, head)
    shown = rules.select(pl.col(c).cast(pl.String) for c in cols)
    widths = [10.0, 30.0, 20.0, 13.0, 70.0, 70.0]
    # the rule id, reason code and verdict are one word each, never wrapped: as wide as the longest (plus a character),
    # as the Cases sheet's ids are; 'after_conservative_period' ran into its verdict in print
    _widen_to_longest(shown, widths, {0: ("rule_id", 0), 2: ("reason_code", 0), 3: ("verdict", 0)})
    _fit_heights(rs, shown, widths, 1)
    for i, r in enumerate(shown.iter_rows(), start=1):
        for j, v in enumerate(r):
            rs.write_string(i, j, neutralise("" if v is None else v) or "", wrap)
    for j, width in enumerate(widths):
        rs.set_column(j, j, width)
    _print_setup(rs, run_info, "rules", widths)
    # as the Cases and Providers sheets: the header stays in view over rules three and four lines high, and a
    # reviewer filters the rules by verdict or reason code
    rs.freeze_panes(1, 0)
    rs.autofilter(0, 0, max(shown.height, 1), len(cols) - 1)
