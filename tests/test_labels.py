"""Labels people read: every reason by its rules.csv label, every department by its display name, in the
report, the department pages and the workbook; the data outputs keep their codes and keys (the decks' run)."""

from __future__ import annotations

import html
import re
from pathlib import Path

import polars as pl
import pytest
from xlsx_xml import Workbook

from pipeline import audits
from pipeline.report import workbook
from pipeline.report.names import department_name

RUNNABLE = [a for a in audits.discover() if a.runnable]


def _out(deck_runs, audit) -> Path:
    return Path(deck_runs["runs"]["combined"]["out"]) / audit.id


def _rules(audit) -> dict[str, dict]:
    return {r["reason_code"]: r for r in audits.check_rules(audit)}


def _reason_rows(page: str) -> list[str]:
    """The row headers of a page's reasons table (headline section)."""
    start = page.index('<section id="headline">')
    section = page[start : page.index("</section>", start)]
    return [html.unescape(t) for t in re.findall(r'<td class="rule"><a [^>]*>[^<]*</a></td><th scope="row">([^<]*)<br>', section)]


@pytest.mark.parametrize("audit", RUNNABLE, ids=[a.id for a in RUNNABLE])
def test_reasons_are_shown_by_their_labels_on_every_page(deck_runs, audit):
    rules = _rules(audit)
    labels = {r["label"] for r in rules.values()}
    out = _out(deck_runs, audit)
    pages = [out / "report.html", *sorted((out / "departments").glob("*.html"))]
    shown = set()
    for page in pages:
        text = page.read_text(encoding="utf-8")
        rows = _reason_rows(text)
        assert set(rows) <= labels, (page.name, set(rows) - labels)
        shown |= set(rows)
        for also in re.findall(r"also: ([^<]*)</span>", text):
            assert all(part in labels for part in html.unescape(also).split("; ")), (page.name, also)
    assert shown, "the deck fires reasons: the reasons tables list some"
    orders = (out / "audited_orders.csv").read_text(encoding="utf-8")
    assert any(code in orders for code in rules), "the data output keeps the reason codes"


@pytest.mark.parametrize("audit", RUNNABLE, ids=[a.id for a in RUNNABLE])
def test_the_workbook_shows_reasons_in_words_and_keeps_their_codes(deck_runs, audit):
    rules = _rules(audit)
    book = Workbook(_out(deck_runs, audit) / "case_list.xlsx")
    cases = book.rows("Cases")
    assert cases
    for row in cases:
        for words, codes in (("Reasons", "Reason codes"), ("Also fired", "Also fired (codes)")):
            expected = "; ".join(rules[c]["label"] for c in (row[codes] or "").split("|") if c)
            assert (row[words] or "") == expected, row
    assert [(r["Reason"], r["Reason code"]) for r in book.rows("Rules")] == [(r["label"], c) for c, r in rules.items()]


@pytest.mark.parametrize("audit", RUNNABLE, ids=[a.id for a in RUNNABLE])
def test_the_workbook_names_departments_as_the_report_does_and_keeps_the_key(deck_runs, audit):
    cases = Workbook(_out(deck_runs, audit) / "case_list.xlsx").rows("Cases")
    keyed = [r for r in cases if r["Ordering department key"]]
    assert keyed
    for r in keyed:
        assert r["Ordering department"] == department_name(r["Ordering department key"], {}), r


def test_department_columns_show_the_display_name_and_keep_the_key_beside():
    cases = pl.DataFrame({"ordering_department": ["primary_care", None, "ICU"], "case_department": ["icu"] * 3})
    frame, known = workbook.with_department_names(cases, workbook.CASE_COLUMNS, {"ICU": "Intensive care"})
    assert frame["ordering_department"].to_list() == ["Primary Care", "(not recorded)", "Intensive care"]
    assert frame["ordering_department_key"].to_list() == ["primary_care", None, "ICU"]
    assert frame["case_department"].to_list() == ["Icu"] * 3 and frame["case_department_key"].to_list() == ["icu"] * 3
    assert known["ordering_department_key"].header == "Ordering department key"
    assert list(known)[-2:] == ["ordering_department_key", "case_department_key"]  # after the others
