"""The chart-review case list as an Excel workbook (xlsxwriter), with an explanation sheet.

Every cell is written as a string or number explicitly: a free-text value starting with
``=`` stays text (no formula injection). File properties carry a fixed date so reruns
produce the same bytes.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import xlsxwriter

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
    wb = xlsxwriter.Workbook(
        str(path),
        {"strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False, "constant_memory": True},
    )
    wb.set_properties({"title": "order-audit case list", "created": _FIXED_DATE, "comments": f"run {run_info['run_id']}"})
    head = wb.add_format({"bold": True, "bg_color": "#DDE5EE", "text_wrap": True, "valign": "top"})
    wrap = wb.add_format({"text_wrap": True, "valign": "top"})

    ws = wb.add_worksheet("Cases")
    columns = cases.columns
    widths = {"explanation": 60, "citations": 60, "order_name": 30, "indication_text": 30}
    for j, name in enumerate(columns):
        ws.set_column(j, j, widths.get(name, 16))
    ws.freeze_panes(1, 0)
    ws.write_row(0, 0, columns, head)
    # every value as text or number: temporal and other types become their string form; with
    # strings_to_formulas off, write_row stores a leading "=" as text (no formula injection)
    text = [c for c, t in cases.schema.items() if not (t.is_numeric() or t == pl.Boolean)]
    shaped = cases.with_columns(pl.col(c).cast(pl.String) for c in text)
    for i, row in enumerate(shaped.iter_rows(), start=1):
        ws.write_row(i, 0, row)
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
    return path
