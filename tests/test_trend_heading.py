"""What the report says of each trend measure over the months: the heading over its p-chart (months shown, months with
nothing to count in the measure's own unit, centre) and, beside the headline figure, the month before and the centre."""

from __future__ import annotations

import html
import re

import polars as pl

from pipeline import audits
from pipeline.report import sections
from pipeline.report.spec import ReportSpec
from pipeline.report.templates import make_env
from pipeline.resources import reports_dir

WINDOW = ["2026-01", "2026-02", "2026-03", "2026-04"]


def _trend(
    audit_id: str,
    cells: dict[str, list[tuple[str, int, int]]],
    window: list[str] = WINDOW,
    provisional: frozenset[str] = frozenset(),
) -> list[dict]:
    """The hospital's trend of each measure over a window (2026-01 to 2026-04) where each measure has the given
    (month, n, N) cells and none in the other months; ``provisional``: the months later data can still change."""
    spec = ReportSpec.of(next(a for a in audits.discover() if a.id == audit_id))
    metrics = pl.DataFrame(
        [
            {"level": "hospital", "group_key": "all", "period": p, "measure_id": m, "numerator": n, "denominator": d}
            for m, rows in cells.items()
            for p, n, d in rows
        ]
    )
    return sections.trend(metrics, "hospital", "all", window, "overall", 20, spec, provisional)


def _heading(audit_id: str, cells: dict[str, list[tuple[str, int, int]]], provisional: frozenset[str] = frozenset()) -> list[str]:
    """The trend headings, as report.html prints them."""
    trend = _trend(audit_id, cells, provisional=provisional)
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


def _earlier(trend: list[dict]) -> list[str]:
    """The "Earlier" line under each headline figure (_macros.html ``earlier``), tags dropped."""
    macro = make_env().from_string('{% from "_macros.html" import earlier %}{{ earlier(t) }}')
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", "", macro.render(t=t))).split()) for t in trend]


def test_beside_the_headline_figure_the_month_before_and_the_centre():
    """The chair asks how the month compares: the month before (n / N, † under 20) and the p-chart's centre over the
    window, and whether the month is inside the limits or a special cause, good or bad by the measure's direction."""
    steady = [(m, 2, 10) for m in WINDOW[:-1]] + [("2026-04", 3, 10)]
    worse = [(m, 1, 50) for m in WINDOW[:-1]] + [("2026-04", 30, 50)]  # inappropriate orders: lower is better
    trend = _trend("csf_leak", {"first_imaging_right_study": steady, "inappropriate_order_rate": worse})
    assert _earlier(trend) == [
        "Earlier: 20.0% † (2 / 10) in 2026-03; centre 22.5% over 2026-01 to 2026-04 (Trend): 2026-04 inside the control limits",
        "Earlier: 2.0% (1 / 50) in 2026-03; centre 16.5% over 2026-01 to 2026-04 (Trend): 2026-04 above the upper limit,"
        " bad news: worse than usual",
    ]
    # better than usual for a higher-is-better measure; a month before with nothing counted says so
    better = [("2026-01", 5, 50), ("2026-02", 5, 50), ("2026-04", 45, 50)]
    assert _earlier(_trend("csf_leak", {"first_imaging_right_study": better})) == [
        "Earlier: nothing counted in 2026-03; centre 36.7% over 2026-01 to 2026-04 (Trend): 2026-04 above the upper"
        " limit, good news: better than usual; also outside the limits: 2026-01: bad news, 2026-02: bad news"
    ]


def test_the_first_month_with_data_has_nothing_earlier_to_compare_with():
    first = _trend("csf_leak", {"inappropriate_order_rate": [("2026-04", 1, 4)]})
    assert _earlier(first) == ["Earlier: nothing counted in 2026-03; no earlier month with data in the trend's window"]
    alone = _trend("csf_leak", {"inappropriate_order_rate": [("2024-07", 1, 4)]}, window=["2024-07"])
    assert _earlier(alone) == ["Earlier: no earlier month with data in the trend's window"]


def test_a_provisional_month_is_judged_against_the_final_months_centre():
    """The centre and limits come from the final months: the heading, the headline's "Earlier" line and the special-cause
    table say so and mark the provisional months. 2026-01 to 2026-02: 20 of 100 each, p-bar 20.0% and limits 8.0% to
    32.0%; 2026-03 (25 of 100) and 2026-04 (35 of 100) are provisional: 2026-04 is above the limit it does not move
    (pooled with them, p-bar was 25.0% and its upper limit 38.0%: inside)."""
    cells = {"inappropriate_order_rate": [("2026-01", 20, 100), ("2026-02", 20, 100), ("2026-03", 25, 100), ("2026-04", 35, 100)]}
    late = frozenset({"2026-03", "2026-04"})
    assert _heading("csf_leak", cells, late) == [
        "Inappropriate orders (lower is better), 2026-01 to 2026-04: 4 months; centre 20.0% over the final months,"
        " 2026-01 to 2026-02"
    ]
    trend = _trend("csf_leak", cells, provisional=late)
    assert _earlier(trend) == [
        "Earlier: 25.0% (25 / 100) in 2026-03 (provisional); centre 20.0% over the final months, 2026-01 to 2026-02 (Trend):"
        " 2026-04 (provisional) above the upper limit, bad news: worse than usual"
    ]
    assert _flagged_rows(trend[0]) == [
        "2026-04 (provisional) | 35 | 100 | 35.0% | 8.0% – 32.0% | above the upper limit | bad news: worse than usual"
    ]
    assert _heading("csf_leak", cells) == ["Inappropriate orders (lower is better), 2026-01 to 2026-04: 4 months; centre 25.0%"]


def test_while_no_month_is_final_the_centre_pools_them_all():
    cells = {"inappropriate_order_rate": [("2026-03", 10, 100), ("2026-04", 30, 100)]}
    late = frozenset(WINDOW)
    assert _heading("csf_leak", cells, late) == [
        "Inappropriate orders (lower is better), 2026-01 to 2026-04: 4 months, 2 with no orders counted (N = 0); centre 20.0%,"
        " every month still provisional"
    ]
    assert _earlier(_trend("csf_leak", cells, provisional=late)) == [
        "Earlier: 10.0% (10 / 100) in 2026-03 (provisional); centre 20.0% over 2026-01 to 2026-04, every month still provisional"
        " (Trend): 2026-04 (provisional) inside the control limits"
    ]


def _flagged_rows(t: dict) -> list[str]:
    """The special-cause table's rows of one trend measure, as report.html prints them, cells joined by " | "."""
    page = (reports_dir() / "report.html").read_text(encoding="utf-8")
    row = re.search(r"\{% for f in t\.flagged %\}\n(.*)\n\{% endfor %\}", page).group(1)
    imports = page.splitlines()[0]
    text = make_env().from_string(imports + "{% for f in t.flagged %}" + row + "\n{% endfor %}").render(t=t, low=20)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", line) for line in text.splitlines() if line.startswith("<tr>")]
    return [" | ".join(html.unescape(re.sub(r"<[^>]+>", "", c)) for c in row) for row in cells]


def test_the_trends_other_special_causes_are_named_beside_the_headline_figure():
    """The one special cause of the committee's month (2026-02, inappropriate orders above the upper limit) was on the
    Trend page alone: page 1 said the month was inside the limits. The latest three other months outside the limits
    are named beside the figure, good or bad news, the rest counted."""
    window = [f"2025-{m:02d}" for m in range(1, 13)]
    cells = [(m, 10, 100) for m in window]
    for month in ("2025-02", "2025-04", "2025-06", "2025-08"):
        cells[window.index(month)] = (month, 40, 100)
    trend = _trend("csf_leak", {"inappropriate_order_rate": cells}, window=window)
    assert _earlier(trend) == [
        "Earlier: 10.0% (10 / 100) in 2025-11; centre 20.0% over 2025-01 to 2025-12 (Trend): 2025-12 inside the control"
        " limits; also outside the limits: 2025-04: bad news, 2025-06: bad news, 2025-08: bad news and 1 earlier"
    ]
    steady = _trend("csf_leak", {"inappropriate_order_rate": [(m, 10, 100) for m in window]}, window=window)
    assert "also outside" not in _earlier(steady)[0]
