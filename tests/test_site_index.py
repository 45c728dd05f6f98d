"""The site index (``pipeline.report.site_index``) on folders written by hand: what it says of each period."""

from __future__ import annotations

import html
import json
import re

from pipeline.report import site_index


def test_site_index_marks_a_provisional_period(tmp_path):
    """A period whose run.json says it is provisional is marked so, with the date it becomes final; a final one is not."""
    about = {"title": "CSF leak", "measures": []}
    audit = tmp_path / "csf_leak"
    for month, status in (("2026-05", "final"), ("2026-06", "provisional")):
        (audit / month).mkdir(parents=True)
        maturity = {"status": status, "final_from": "2026-09-13" if status == "provisional" else "2026-08-14"}
        info = {"run_id": f"r-{month}", "period": month, "audit": about, "status": {"period": month, "maturity": maturity}}
        (audit / month / "run.json").write_text(json.dumps(info))
    text = site_index.render_site_index(tmp_path).read_text(encoding="utf-8")
    june, may = text.index("2026-06/index.html"), text.index("2026-05/index.html")
    assert text.count('class="provisional"') == 1
    assert june < text.index('provisional until the data reaches <span class="date">2026-09-13</span>') < may
    assert "2026-08-14" not in text
    assert "Provisional: later data can still change" in text


def _period(audit, month: str, status: dict, departments: int = 0, feed: bool = True, **info) -> None:
    """One published period folder: its run.json, ``departments`` department pages and, with ``feed``, the feed."""
    folder = audit / month
    (folder / "departments").mkdir(parents=True)
    if feed:
        (folder / "metrics.csv").write_text("schema_version\n")
    for i in range(departments):
        (folder / "departments" / f"d{i}.html").write_text("<p>page</p>")
    about = {"title": "Low back pain", "measures": []}
    info = {"run_id": f"r-{month}", "period": month, "audit": about, "status": {"period": month, **status}, **info}
    (folder / "run.json").write_text(json.dumps(info))


def _row(text: str, month: str) -> str:
    """The site index's row of a period, tags dropped and spaces collapsed."""
    start = text.index(f'href="low_back_pain/{month}/index.html"')
    row = text[text.rindex("<tr>", 0, start) : text.index("</tr>", start)]
    return " ".join(re.sub(r"<[^>]+>", " ", row).split())


def test_site_index_counts_department_pages_in_words_and_links_none_when_there_is_none(tmp_path):
    """'0 department pages' linked to an empty table and '1 department pages' read wrong: none, 1 page, 2 pages."""
    audit = tmp_path / "low_back_pain"
    for month, n in (("2026-02", 0), ("2026-03", 1), ("2026-04", 2)):
        _period(audit, month, {}, departments=n)
    text = site_index.render_site_index(tmp_path).read_text(encoding="utf-8")
    assert _row(text, "2026-02") == "2026-02 report · case list · feed: CSV · Parquet none r-2026-02"
    assert _row(text, "2026-03") == "2026-03 report · case list · feed: CSV · Parquet 1 department page r-2026-03"
    assert _row(text, "2026-04") == "2026-04 report · case list · feed: CSV · Parquet 2 department pages r-2026-04"
    assert 'href="low_back_pain/2026-02/index.html#departments"' not in text
    assert '<a href="low_back_pain/2026-03/index.html#departments">1 department page</a>' in text


def test_site_index_marks_a_revised_period_with_the_run_its_date_and_the_orders(tmp_path):
    """A period a later run judged otherwise (run.json status.revised, pipeline.history.record_period) is marked with
    the run that revised it, the day it started and the orders it changed, in the number the noun takes; a period
    rerun without a change (no revised, or 0 orders) and one audited for the first time are not marked."""
    audit = tmp_path / "low_back_pain"
    one = {"since_run": "r-A", "orders": 1, "added": 0, "removed": 0, "changed": 1}
    many = {"since_run": "r-B", "orders": 1234, "added": 1200, "removed": 4, "changed": 30}
    none = {"since_run": "r-C", "orders": 0, "added": 0, "removed": 0, "changed": 0}
    started = "2026-11-03T02:15:00+00:00"
    _period(audit, "2026-01", {"revised": one}, started_at=started)
    _period(
        audit, "2026-02", {"revised": many, "maturity": {"status": "provisional", "final_from": "2026-06-13"}}, started_at=started
    )
    _period(audit, "2026-03", {"revised": none}, started_at=started)
    _period(audit, "2026-04", {}, started_at=started)
    text = site_index.render_site_index(tmp_path).read_text(encoding="utf-8")
    assert _row(text, "2026-01") == (
        "2026-01 revised on 2026-11-03 by run r-2026-01: 1 order changed since run r-A report · case list"
        " · feed: CSV · Parquet none r-2026-01"
    )
    assert _row(text, "2026-02") == (
        "2026-02 provisional until the data reaches 2026-06-13 revised on 2026-11-03 by run r-2026-02: 1,234 orders changed"
        " since run r-B report · case list · feed: CSV · Parquet none r-2026-02"
    )
    assert _row(text, "2026-03") == "2026-03 report · case list · feed: CSV · Parquet none r-2026-03"
    assert _row(text, "2026-04") == "2026-04 report · case list · feed: CSV · Parquet none r-2026-04"
    assert text.count('class="revised"') == 2
    assert "Revised: the run that published the period judged its orders otherwise" in text


def test_site_index_says_nothing_of_revisions_when_no_period_was_revised(tmp_path):
    _period(tmp_path / "low_back_pain", "2026-04", {"revised": {"since_run": "r", "orders": 0}})
    text = site_index.render_site_index(tmp_path).read_text(encoding="utf-8")
    assert 'class="revised"' not in text and "Revised:" not in text


def test_site_index_marks_a_period_final_since_the_run_that_made_it_final(tmp_path):
    """run.json status.finalised (pipeline.period_status.finalised): the run that made the period final is this one
    (run_id None: the publishing run, dated by its start) or an earlier one (a rerun since); its changes are counted,
    and a revision by the same run is not said twice."""
    audit = tmp_path / "low_back_pain"
    started = "2026-11-03T02:15:00+00:00"
    final = {"status": "final", "final_from": "2026-06-13"}
    by_this_run = {"run_id": None, "on": None, "provisional_run": "r-A", "orders": 3, "since_run": "r-A"}
    revised = {"since_run": "r-A", "orders": 3, "added": 3, "removed": 0, "changed": 0}
    _period(audit, "2026-01", {"maturity": final, "finalised": by_this_run, "revised": revised}, started_at=started)
    earlier = {"run_id": "r-F", "on": "2026-10-01", "provisional_run": "r-P", "orders": 0, "since_run": "r-P"}
    _period(audit, "2026-02", {"maturity": final, "finalised": earlier, "revised": revised}, started_at=started)
    apart = {"run_id": "r-F", "on": "2026-10-01", "provisional_run": "r-P", "orders": 1, "since_run": "r-Q"}
    _period(audit, "2026-03", {"maturity": final, "finalised": apart}, started_at=started)
    text = site_index.render_site_index(tmp_path).read_text(encoding="utf-8")
    assert _row(text, "2026-01") == (
        "2026-01 final since 2026-11-03 (run r-2026-01): 3 orders changed since run r-A published it provisional"
        " report · case list · feed: CSV · Parquet none r-2026-01"
    )
    assert _row(text, "2026-02") == (
        "2026-02 final since 2026-10-01 (run r-F): no order or verdict changed since run r-P published it provisional"
        " revised on 2026-11-03 by run r-2026-02: 3 orders changed since run r-A report · case list"
        " · feed: CSV · Parquet none r-2026-02"
    )
    assert _row(text, "2026-03") == (
        "2026-03 final since 2026-10-01 (run r-F): 1 order changed since run r-Q; provisional in run r-P"
        " report · case list · feed: CSV · Parquet none r-2026-03"
    )
    assert text.count('class="final"') == 3 and text.count('class="revised"') == 1
    # the cell is period_status.final_mark's, its day kept on one line as the other dates are
    assert '<span class="final">final since <span class="date">2026-10-01</span> (run r-F): 1 order changed' in text
    assert "Final since: the run whose data first reached the date the period becomes final" in text
    # the dates are the runs' UTC days (run.json started_at, history.period_statuses), the site's zone aside
    assert "dated by the UTC day it started (as <code>order-audit runs</code> lists it; so is Revised)" in text


def test_site_index_names_what_the_audit_says_of_the_period(tmp_path):
    """The audit's note on the period (run.json period_notes: the low back pain look-back before the diagnoses held)
    is named under the period, as the report's first page names it."""
    note = {
        "title": "New episodes not verified: 6 of the 6 episodes",
        "text": "New episodes not verified: 6 of the 6 episodes (...)",
    }
    _period(tmp_path / "low_back_pain", "2024-07", {}, period_notes=[note])
    _period(tmp_path / "low_back_pain", "2026-04", {}, period_notes=[])
    text = site_index.render_site_index(tmp_path).read_text(encoding="utf-8")
    assert (
        _row(text, "2024-07")
        == "2024-07 New episodes not verified: 6 of the 6 episodes report · case list · feed: CSV · Parquet none r-2024-07"
    )
    assert _row(text, "2026-04") == "2026-04 report · case list · feed: CSV · Parquet none r-2026-04"


def test_an_empty_cell_names_what_its_measure_counts(tmp_path):
    """A month without a case (2025-09 of the demo, csf_leak) printed "no cases" under the order measures too."""
    measures = [
        {"id": "cases_right", "label": "Right first study", "unit": "case", "headline": True},
        {"id": "inappropriate", "label": "Inappropriate orders", "unit": "order", "headline": True},
    ]
    about = {"title": "CSF leak", "case_unit": "case", "measures": measures}
    folder = tmp_path / "csf_leak" / "2025-09"
    folder.mkdir(parents=True)
    info = {"run_id": "r1", "period": "2025-09", "audit": about, "status": {"period": "2025-09"}, "headline": []}
    (folder / "run.json").write_text(json.dumps(info))
    (folder / "metrics.csv").write_text("schema_version\n")
    # a month with cases but no evaluated order: the order measure's N is 0
    (tmp_path / "csf_leak" / "2025-10").mkdir()
    zero = {"numerator": 0, "denominator": 0, "rate": None, "ci_low": None, "ci_high": None}
    headline = [
        {"measure_id": "cases_right", "numerator": 1, "denominator": 2, "rate": 0.5, "ci_low": 0.1, "ci_high": 0.9},
        {"measure_id": "inappropriate", **zero},
    ]
    (tmp_path / "csf_leak" / "2025-10" / "run.json").write_text(
        json.dumps({**info, "period": "2025-10", "status": {"period": "2025-10"}, "headline": headline})
    )
    text = site_index.render_site_index(tmp_path).read_text(encoding="utf-8")

    def row(month):
        start = text.index(f'href="csf_leak/{month}/index.html"')
        cells = text[text.rindex("<tr>", 0, start) : text.index("</tr>", start)]
        return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", cells)).split())

    assert row("2025-09") == "2025-09 report · case list · feed: CSV · Parquet none no cases no orders r1"
    # 2025-10 without a feed: a backfill's month before its last (the feed is in the last month's folder)
    assert row("2025-10") == "2025-10 report · case list none 1 / 2 = 50.0% † (10.0% – 90.0%) no orders r1"
    # the one low-reliability mark of every page (_macros.html dagger), its tooltip on screen and the note for print
    assert '50.0%<span class="lowrel" title="low reliability: small denominator (see the † note)">&#8201;†</span>' in text
    assert (
        '<p class="footnote">† Low reliability: fewer than 20 in the denominator; the interval shows how uncertain the'
        " rate is.</p>" in text
    )


def test_a_periods_feed_is_linked_as_csv_and_parquet_as_a_backfills_is(tmp_path):
    """docs/METRICS_FEED.md: the Parquet file is the feed to use (typed); a one-period run's row linked the CSV alone
    (a backfill's audit line links both)."""
    _period(tmp_path / "low_back_pain", "2026-03", {})
    text = site_index.render_site_index(tmp_path).read_text(encoding="utf-8")
    assert 'href="low_back_pain/2026-03/metrics.csv"' in text and 'href="low_back_pain/2026-03/metrics.parquet"' in text


def test_a_rate_is_marked_by_its_run_s_low_reliability_setting_and_the_page_prints_on_its_paper(tmp_path):
    """The site index marked a rate † below 20 whatever the run's [reporting] low_reliability_denominator: with 30,
    the audit's own index marked 25 cases and the site index beside it did not. It prints on the latest run's paper
    ([reporting] paper), as the report does."""
    measures = [{"id": "cases_right", "label": "Right first study", "unit": "case", "headline": True}]
    about = {"title": "CSF leak", "case_unit": "case", "measures": measures}
    rate = {"measure_id": "cases_right", "numerator": 5, "denominator": 25, "rate": 0.2, "ci_low": 0.09, "ci_high": 0.39}
    for month, low, paper, started in (("2026-03", 20, "a4", "2026-04-02"), ("2026-04", 30, "letter", "2026-05-02")):
        (tmp_path / "csf_leak" / month).mkdir(parents=True)
        config = {"reporting": {"low_reliability_denominator": low, "paper": paper}}
        info = {"run_id": f"r-{month}", "period": month, "audit": about, "headline": [rate], "config": config}
        (tmp_path / "csf_leak" / month / "run.json").write_text(json.dumps({**info, "started_at": started}))
    text = site_index.render_site_index(tmp_path).read_text(encoding="utf-8")
    cells = {m: text[text.index(f'href="csf_leak/{m}/index.html"') :].split("</tr>")[0] for m in ("2026-03", "2026-04")}
    assert "lowrel" in cells["2026-04"] and "lowrel" not in cells["2026-03"]
    assert "† Low reliability: fewer than the run's threshold (20 or 30) in the denominator;" in text
    assert "@page { size: letter landscape; }" in text
