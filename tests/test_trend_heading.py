"""The trend heading over each p-chart: months shown, months with nothing to count (in the measure's own unit), centre."""

from __future__ import annotations

import re

import polars as pl

from pipeline import audits
from pipeline.report import sections
from pipeline.report.spec import ReportSpec
from pipeline.report.templates import make_env
from pipeline.resources import reports_dir


def _heading(audit_id: str, cells: dict[str, list[tuple[str, int, int]]]) -> list[str]:
    """The hospital's trend headings, as report.html prints them, over a window of 2026-01 to 2026-04 where each
    measure has the given (month, n, N) cells and none in the other months."""
    spec = ReportSpec.of(next(a for a in audits.discover() if a.id == audit_id))
    metrics = pl.DataFrame(
        [
            {"level": "hospital", "group_key": "all", "period": p, "measure_id": m, "numerator": n, "denominator": d}
            for m, rows in cells.items()
            for p, n, d in rows
        ]
    )
    trend = sections.trend(metrics, "hospital", "all", ["2026-01", "2026-02", "2026-03", "2026-04"], "overall", 20, spec)
    # the heading's own line of the page's template (the page renders it with the same values)
    line = re.search(r"<h3>\{\{ t\.label \}\}.*</h3>", (reports_dir() / "report.html").read_text(encoding="utf-8")).group(0)
    heading = make_env().from_string(line)
    return [re.sub(r"<[^>]+>", "", heading.render(t=t)) for t in trend]


def test_a_month_without_a_denominator_is_named_in_the_measures_own_unit():
    """A department's page said "2 without cases" of an order measure whose months had cases but no evaluated order
    (the second view's department); the months with N = 0 are now counted in the unit N counts."""
    months = {
        "first_imaging_right_study": [("2026-01", 1, 2), ("2026-02", 1, 1), ("2026-03", 0, 1)],
        "inappropriate_order_rate": [("2026-01", 1, 4), ("2026-04", 2, 3)],
    }
    assert _heading("csf_leak", months) == [
        "Leak cases whose first imaging was the right study (higher is better), 2026-01 to 2026-04: 4 months,"
        " 1 with no cases counted (N = 0); centre 50.0%",
        "Inappropriate orders (lower is better), 2026-01 to 2026-04: 4 months, 2 with no orders counted (N = 0); centre 42.9%",
    ]


def test_an_audit_of_episodes_counts_its_empty_months_in_episodes():
    heading = _heading("low_back_pain", {"episodes_without_early_imaging": [("2026-02", 1, 4)]})
    assert heading == [
        "Episodes without lumbar imaging in the first 28 days (HEDIS-style rate) (higher is better), 2026-01 to 2026-04:"
        " 4 months, 3 with no episodes counted (N = 0); centre 25.0%"
    ]
