"""The case list: every audited order with its case (the workbook), and the bounded selection of
flagged cases a printed report lists.

A case is flagged when one of its orders is inappropriate or for review. The report lists the most
recent flagged cases of each department, at most ``per_department`` of them, and counts the rest;
appropriate cases are counted, never listed. Everything is one Polars pass over the orders.
"""

from __future__ import annotations

import functools
from collections import namedtuple

import polars as pl

from pipeline import db
from pipeline.report.names import NOT_RECORDED, labelled, labelled_list, printed_named, printed_text
from pipeline.sqltext import ident

FLAGGED = ("inappropriate", "review")


# the order columns the case list takes when the audit's mart has them (the engine's, then the audit's own)
ORDER_COLUMNS = (
    "order_code",
    "order_name",
    "study_type",
    "ordering_department",
    "ordering_provider_id",
    "status",
    "verdict",
    "reasons",
    "secondary_reasons",
    "explanation",
    "rule_ids",
    "indication_text",
)
TIME_COLUMNS = ("minutes_since_index", "days_since_index")  # the case list's "after index", as the audit counts it
CASTS = {"date": "DATE", "datetime": "TIMESTAMP"}


def case_rows(con, spec, reason_labels: dict[str, str]) -> pl.DataFrame:
    """Every audited order with its case's date and departments, in chart-review order (each rule's
    citation is said once, by rule id: the report's methods and the workbook's Rules sheet). Columns
    starting with ``_`` are the case list's own (group, recency, date) and stay out of the workbook.
    ``reason_labels``: each reason code's words (``names.rule_labels``)."""
    orders, cases = db.columns(con, "mart_audited_orders"), db.columns(con, "mart_cases")
    audit_cols = {k: v for k, v in spec.columns.items()}
    select = ["o.case_id", "o.patient_key"]
    case_date = f"c.{ident(spec.case_date)}" if spec.case_date in cases else "CAST(NULL AS DATE)"
    if spec.case_date in cases:
        select.append(f"c.{ident(spec.case_date)}")
    recency = "c.index_at" if "index_at" in cases else case_date
    if "index_at" in cases:
        select.append("c.index_at")
    if spec.second_view_department in cases:
        select.append(f"c.{ident(spec.second_view_department)} AS case_department")
    group = "o.ordering_department"
    if spec.case_department in cases:
        select.append(f"c.{ident(spec.case_department)}")
        group = f"c.{ident(spec.case_department)}"
    select.append("o.order_id")
    # a column the case's side already gave (its id, date, department) is taken once: the workbook
    # would otherwise show it twice (case_id_1)
    taken = {"case_id", "patient_key", "order_id", "case_department"}
    taken |= {c for c in (spec.case_date, spec.case_department) if c in cases} | ({"index_at"} & set(cases))
    wanted = [c for c in [*audit_cols, *TIME_COLUMNS, *ORDER_COLUMNS] if c in orders and c not in taken]
    for col in dict.fromkeys(wanted):
        style = audit_cols.get(col, ("", 0, "", ""))
        cast = CASTS.get(style[3] if len(style) > 3 else "")
        select.append(f"CAST(o.{ident(col)} AS {cast}) AS {ident(col)}" if cast else f"o.{ident(col)}")
    select += [f"{case_date} AS _case_date", f"{group} AS _group", f"{recency} AS _recency"]
    # the flagged orders of a case in the order they were placed (site time), whether or not listed
    ordered = "o.ordered_at_local" if "ordered_at_local" in orders else "NULL"
    select.append(f"CAST({ordered} AS TIMESTAMP) AS _ordered")
    order_by = "o.ordered_at NULLS LAST, " if "ordered_at" in orders else ""
    rows = con.sql(
        f"""SELECT {", ".join(select)}
        FROM mart_audited_orders o LEFT JOIN mart_cases c ON c.case_id = o.case_id
        ORDER BY {recency}, o.case_id, {order_by}o.order_id"""
    ).pl()
    rows = with_reason_labels(rows, reason_labels)
    if "study_type" in rows.columns:  # the printed case list's study type in words (the workbook keeps the key)
        rows = rows.with_columns(labelled("study_type", spec.labels, "_study_type").fill_null("unmapped code"))
    return rows


# an order's reason codes ('|'-separated) -> the same reasons in words, a column of the case list's own
REASON_LABEL_COLUMNS = {"reasons": "reason_labels", "secondary_reasons": "secondary_reason_labels"}


def with_reason_labels(rows: pl.DataFrame, labels: dict[str, str]) -> pl.DataFrame:
    """``rows`` with each reason column's labels (rules.csv) beside it, joined by '; ': mapped once per distinct
    list of codes (an order's reasons repeat across orders), not once per order."""
    for codes, words in REASON_LABEL_COLUMNS.items():
        if codes not in rows.columns:
            continue
        distinct = rows.select(pl.col(codes).cast(pl.String).unique().drop_nulls())
        mapped = distinct.with_columns(labelled_list(codes, labels, words))
        rows = rows.with_columns(
            pl.col(codes).cast(pl.String).replace_strict(mapped[codes], mapped[words], default=None).alias(words)
        )
    return rows


def time_after(minutes: str) -> pl.Expr:
    """Whole minutes after the case's index as '71 h 59 min' (truncated: never reads as the next hour), the minutes
    in two digits ('72 h 00 min'), as the workbook's number format shows them (``TIME_AFTER_FORMAT``); before it as
    '1 h 05 min before'; '' when unknown."""
    m = pl.col(minutes)
    a = m.abs()
    text = pl.format("{} h {} min", a // 60, (a % 60).cast(pl.String).str.zfill(2))
    return pl.when(m.is_null()).then(pl.lit("")).when(m < 0).then(text + pl.lit(" before")).otherwise(text)


# the workbook's time after the index: a number that sorts as the time does, hours x 100 + minutes (7159 is 71 h 59 min,
# -105 is 1 h 05 min before), shown by this format as time_after writes it. Not a spreadsheet duration (a fraction of
# a day under [h] "h" m "min"): Excel shows a negative one as ##### (1900 date system), so every order placed before
# the procedure would read #####; nor text, which sorted 100 h before 71 h
TIME_AFTER_FORMAT = '0" h "00" min";0" h "00" min before"'


def time_after_number(minutes: str) -> pl.Expr:
    """Whole minutes after the case's index as the number ``TIME_AFTER_FORMAT`` shows: the sign of the minutes, the
    hours times 100 plus the minutes (4319 -> 7159, -65 -> -105); null when unknown."""
    m = pl.col(minutes)
    a = m.abs()
    return (m.sign() * ((a // 60) * 100 + a % 60)).cast(pl.Int64)


def flagged_selection(cases: pl.DataFrame, per_department: int, department: str | None = None) -> dict:
    """The flagged cases a page lists, and the counts that say what was left out.

    Hospital page (``department`` None): cases with a flagged order, grouped by the case's department
    (``[report] case_department``; else the flagged order's), the ``per_department`` most recent of each. Department page:
    cases with a flagged order placed by that department, the most recent ``per_department``, counting
    that department's orders only. The rows are the flagged orders; ``other_orders`` counts the case's
    other listed-scope orders by verdict ("2 appropriate, 1 excluded").
    """
    if department is not None:
        cases = cases.filter(pl.col("ordering_department") == department)
    flagged_order = pl.col("verdict").is_in(FLAGGED)
    group = pl.lit(department).first()
    if department is None:
        # a case without a department of its own is grouped by its first flagged order's, as the page says:
        # its first order may be another department's, unflagged (an unmapped code placed the day before)
        group = pl.col("_group").cast(pl.String).fill_null(NOT_RECORDED)
        group = group.filter(flagged_order).first().fill_null(group.first())
    per_case = (
        cases.group_by("case_id", maintain_order=True)
        .agg(
            group.alias("group"),
            pl.col("_recency").first(),
            flagged_order.sum().alias("n_flagged"),
        )
        .with_columns((pl.col("n_flagged") > 0).alias("flagged"))
    )
    flagged = per_case.filter(pl.col("flagged")).with_columns(
        pl.col("_recency").rank("ordinal", descending=True).over("group").alias("recency")
    )
    chosen = flagged.filter(pl.col("recency") <= per_department)
    groups = (
        flagged.group_by("group")
        .agg(pl.len().alias("flagged_cases"), (pl.col("recency") <= per_department).sum().alias("listed_cases"))
        .sort("group")
    )
    order = chosen.select("case_id", "group", "recency")
    listed = cases.join(order, on="case_id", how="inner")
    # the flagged orders are listed; a case's other orders are counted on its first row (the workbook lists them)
    others = (
        listed.filter(~pl.col("verdict").is_in(FLAGGED))
        .group_by("case_id", "verdict")
        .len()
        .sort("case_id", "verdict")
        .group_by("case_id", maintain_order=True)
        .agg(pl.format("{} {}", pl.col("len"), pl.col("verdict").str.replace_all("_", " ")).str.join(", ").alias("other_orders"))
    )
    rows = (
        listed.filter(pl.col("verdict").is_in(FLAGGED))
        .join(others, on="case_id", how="left")
        .sort(
            ["group", "recency", "_ordered", "order_id"],
            nulls_last=True,
        )
        .with_columns(pl.col("group").alias("case_group"))
    )
    return {
        "rows": rows,
        "groups": groups.to_dicts(),
        "per_department": per_department,
        "n_cases": per_case.height,
        "n_orders": cases.height,
        "n_flagged_cases": flagged.height,
        "n_flagged_orders": int(cases["verdict"].is_in(FLAGGED).sum()) if cases.height else 0,
        "n_listed_cases": chosen.height,
        "n_listed_orders": rows.height,
        "n_unflagged_cases": per_case.height - flagged.height,
    }


def shaped_rows(frame: pl.DataFrame, names: dict[str, str]) -> list:
    """The listed orders shaped for the template in one Polars pass: every cell a plain string.

    ``first`` marks a case's first listed order, ``group_start`` a department's first case. The case id
    is on every row, so a case continued on a new printed page still says whose orders these are. Names, the study
    and the indication are bounded as a page prints them (``names.printed``); the workbook has them whole.
    """
    if frame.height == 0:
        return []
    s = pl.col
    blank = lambda c: s(c).cast(pl.String).fill_null("") if c in frame.columns else pl.lit("")  # noqa: E731
    ordered = "ordered_at_local" if "ordered_at_local" in frame.columns else "_ordered"
    if "minutes_since_index" in frame.columns:
        when = time_after("minutes_since_index")
    elif "days_since_index" in frame.columns:
        when = pl.when(s("days_since_index").is_null()).then(pl.lit("")).otherwise(pl.format("day {}", s("days_since_index")))
    else:
        when = pl.lit("")
    shaped = frame.select(
        (s("case_id") != s("case_id").shift(1)).fill_null(True).alias("first"),
        (s("case_group") != s("case_group").shift(1)).fill_null(True).alias("group_start"),
        printed_named("case_group", names, "group"),
        blank("verdict").alias("verdict"),
        blank("patient_key").alias("patient_key"),
        blank("case_id").alias("case_id"),
        blank("_case_date").alias("index_date"),
        (
            printed_named("case_department", names, "procedure_department")
            if "case_department" in frame.columns
            else pl.lit("").alias("procedure_department")
        ),
        blank("order_id").alias("order_id"),
        order_id_points(blank("order_id")).alias("order_id_pt"),
        s(ordered).cast(pl.Datetime).dt.strftime("%Y-%m-%d %H:%M").fill_null("no order time").alias("ordered"),
        when.alias("time"),
        blank("episode_number").alias("episode"),
        pl.concat_str([blank("order_code"), blank("order_name")], separator=" ").str.strip_chars().alias("study"),
        (s("_study_type") if "_study_type" in frame.columns else pl.lit("")).alias("study_type"),
        printed_text("indication_text", "indication").fill_null("")
        if "indication_text" in frame.columns
        else pl.lit("").alias("indication"),
        printed_named("ordering_department", names, "department"),
        printed_text("ordering_provider_id", "provider").fill_null("")
        if "ordering_provider_id" in frame.columns
        else pl.lit("").alias("provider"),
        blank("status").alias("status"),
        blank("reason_labels").alias("reasons"),
        blank("explanation").alias("why"),
        # a case's orders often share their reasons (three regional orders of one study): said once
        ((s("explanation") == s("explanation").shift(1)) & (s("case_id") == s("case_id").shift(1)))
        .fill_null(False)
        .alias("same_why"),
        blank("secondary_reason_labels").alias("also"),
        blank("rule_ids").str.split("|").list.eval(pl.element().filter(pl.element() != "")).alias("rules"),
        blank("other_orders").alias("other_orders"),
    ).with_columns(printed_text("study"))  # free text a page bounds as it does a name (``names.printed``)
    row = namedtuple("CaseRow", shaped.columns)  # attribute access: Jinja's fast path
    return [row(*r) for r in shaped.iter_rows()]


# The printed case list's columns, in percent of the printed width (A4 landscape 784 pt, Letter 734 pt: paper.py):
# case id · patient key, case date,
# order, time after index, study, ordered by, verdict, why, rules. Why is the tallest cell of a row (four lines),
# so it is the last to give width up: a narrower Why adds a line to every row and a page to the list.
CASE_COLUMNS = (9.0, 8.0, 8.0, 7.5, 15.0, 9.0, 8.5, 29.0, 6.0)
KEY, DATE, ORDER, TIME, WHY, RULE = 0, 1, 2, 3, 7, 8
CELL_PAD_PT = 10.2  # a cell's padding (0.3rem each side), its border and a little room
# print sizes (style.css): the case list is 7 pt; a case id and the patient key under it are DejaVu Sans Mono
# (0.602 em a character) at 0.92 of it (the key was 0.88 x 0.82, 5 pt: too small to copy from paper to ask for
# the patient's chart); DejaVu Sans's digits are 0.636 em wide and its other characters on average less
ID_CHAR_PT = PATIENT_KEY_CHAR_PT = 7 * 0.92 * 0.602
TEXT_CHAR_PT = 7 * 0.64
# an order id's width in print (7 pt DejaVu Sans), by its characters ('RAD-ACC-2026041500012345': 109 pt): digits
# 0.636 em, a hyphen, dot, slash, colon or space at most 0.361, the widest (M, W, m, w, @, #, %) 1.0, any other
# character 0.78 (DejaVu Sans's capitals are 0.55-0.79, O and Q the widest of them; lower case is narrower). An
# estimate short of the text printed it over the next column: it errs wide
ORDER_ID_EM = {"[0-9]": 0.636, "[-./: ]": 0.361, "[MWmw@#%]": 1.0}
ORDER_ID_OTHER_EM = 0.78
CASE_LIST_PT = 7.0
# a hospital's accession number is printed whole up to the order column's widest (about 24 characters): at the
# column's 8% a 24-character one was printed on three lines ('RAD-ACC-' over '200000000009' over '0106'). Its room
# comes from Why last, and Why keeps at least WHY_LEAST: a longer id wraps, at its hyphens first. The widest is in
# points (16% of A4's width), so Letter's narrower page holds the same id whole: a larger share of it, Why giving
# what A4's need not; Why's least is a share, its text's lines as on A4.
ORDER_MOST_PT = 125.4
WHY_LEAST = 19.0


def order_most(print_width_pt: float) -> float:
    """The order column's widest, in percent of ``print_width_pt`` (A4: 16.0, Letter: 17.1)."""
    return round(ORDER_MOST_PT * 100 / print_width_pt, 1)


def _percent(points: float, print_width_pt: float) -> float:
    """A cell holding ``points`` of text, in percent of the printed width, rounded up to the tenth."""
    return -(-(points + CELL_PAD_PT) * 1000 // print_width_pt) / 10


def column_widths(rows: list, print_width_pt: float) -> list[float]:
    """The case list's column widths (percent of ``print_width_pt``, the paper's width between its margins) for
    ``rows`` (``shaped_rows``): the case id column as wide as its longest id, which never wraps inside itself (a low
    back pain episode id, the patient key and the date, is 28 characters and was printed 'P64bcc6657d88da' over
    '4-2026-04-15'), and the order column as wide as its longest order id, up to ORDER_MOST_PT. What they take comes
    from the time and rule columns and the case date's, down to what their longest text needs, and only then from
    Why, down to WHY_LEAST (the order column grows no further)."""
    widths = list(CASE_COLUMNS)
    if not rows:
        return widths
    longest = lambda texts: max((len(t) for t in texts), default=0)  # noqa: E731
    percent = functools.partial(_percent, print_width_pt=print_width_pt)
    most = order_most(print_width_pt)
    key = percent(max(longest(r.case_id for r in rows) * ID_CHAR_PT, longest(r.patient_key for r in rows) * PATIENT_KEY_CHAR_PT))
    order = min(most, percent(max(r.order_id_pt for r in rows)))
    wanted = {KEY: max(0.0, key - widths[KEY]), ORDER: max(0.0, order - widths[ORDER])}
    if not any(wanted.values()):
        return widths
    needs = {
        TIME: percent(longest(r.time for r in rows) * TEXT_CHAR_PT),
        RULE: percent(max((len(i) for r in rows for i in r.rules), default=0) * TEXT_CHAR_PT),
        DATE: percent(max(longest(r.index_date for r in rows), longest(r.procedure_department for r in rows)) * TEXT_CHAR_PT),
    }
    spare = {col: max(0.0, widths[col] - need) for col, need in needs.items()}
    # the case id's column first: it never wraps; the order column then gets what is left above Why's least
    wanted[ORDER] = min(wanted[ORDER], max(0.0, sum(spare.values()) + widths[WHY] - WHY_LEAST - wanted[KEY]))
    extra = sum(wanted.values())
    for col, grown in wanted.items():
        widths[col] = round(widths[col] + grown, 1)
    for col, room in spare.items():
        given = min(extra, room)
        widths[col] = round(widths[col] - given, 1)
        extra -= given
    widths[WHY] = round(widths[WHY] - extra, 1)
    return widths


def order_id_points(ids: pl.Expr) -> pl.Expr:
    """Each order id's printed width (pt), estimated from its characters (ORDER_ID_EM)."""
    counted = [ids.str.count_matches(chars).fill_null(0) for chars in ORDER_ID_EM]
    others = ids.str.len_chars().fill_null(0) - pl.sum_horizontal(counted)
    ems = pl.sum_horizontal([n * em for n, em in zip(counted, ORDER_ID_EM.values(), strict=True)]) + others * ORDER_ID_OTHER_EM
    return ems * CASE_LIST_PT


def order_id_room(widths: list[float], print_width_pt: float) -> float:
    """The printed width (pt) an order id fits on one line in the order column of ``widths``: a wider one wraps."""
    return widths[ORDER] * print_width_pt / 100 - CELL_PAD_PT


def cited_rules(frame: pl.DataFrame, rules: pl.DataFrame) -> list[dict]:
    """The rules the listed orders cite (the case list's references)."""
    if frame.height == 0:
        return []
    used = set(frame["rule_ids"].drop_nulls().str.split("|").explode().to_list())
    return [r for r in rules.to_dicts() if r["rule_id"] in used]
