"""The SVG charts written from the numbers (``pipeline.report.charts``): axes, markers, escaping, bytes."""

from __future__ import annotations

import re

import numpy as np
import polars as pl

from pipeline.report import charts

Y_TICK = re.compile(r'<text x="[\d.]+" y="([\d.]+)" dy="0.35em">([^<]*)</text>')
X_TICK = re.compile(r'<text x="([\d.]+)" y="[\d.]+">([^<]*)</text>')


def _x_percents(svg: str) -> list[float]:
    return [float(label.rstrip("%")) for _, label in X_TICK.findall(svg) if label.endswith("%")]


def _funnel(rates: list[float], denominators: list[int], small: list[bool] | None = None) -> pl.DataFrame:
    frame = pl.DataFrame({"group_key": [f"p{i}" for i in range(len(rates))], "denominator": denominators, "rate": rates})
    return frame.with_columns(pl.Series("small", small)) if small is not None else frame


def test_histogram_counts_one_case_in_whole_numbers():
    """One case used to give a count axis of 0, 0.25, ... 1.00: counts are whole."""
    svg = charts.histogram_svg(np.array([100.0]), 72, "Hours", "dept-hours", "hours", 12, "h", "cases")
    assert [label for _, label in Y_TICK.findall(svg)] == ["0", "1"]
    svg = charts.histogram_svg(np.array([1.0, 2.0, 2.5, 30.0, 31.0, 32.0]), None, "Hours", "h", bin_width=12)
    counts = [label for _, label in Y_TICK.findall(svg)]
    assert counts[0] == "0" and all(re.fullmatch(r"\d+", c) for c in counts) and int(counts[-1]) >= 3
    # the hour axis is ticked on bin edges (multiples of 12), the 72 h limit among them
    hours = charts.histogram_svg(np.array([5.0, 100.0]), 72, "Hours", "x", bin_width=12)
    assert {int(label) % 12 for _, label in X_TICK.findall(hours)} == {0} and ">72</text>" in hours


def test_funnel_point_at_100_percent_is_drawn_whole():
    """A provider at 100% sits on the top of the plot, not cut in half by the plot's clipping."""
    svg = charts.funnel_svg(_funnel([1.0, 0.2, 0.0], [4, 60, 3], [True, False, True]), 0.25, "Funnel", "f")
    top = next(float(y) for y, label in Y_TICK.findall(svg) if label == "100%")
    circles = [tuple(map(float, c)) for c in re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)" r="([\d.]+)"', svg)]
    at_top = [c for c in circles if c[1] == top]
    assert at_top and all(cy - r > 0 for _, cy, r in at_top)  # inside the picture
    clipped = "".join(re.findall(r"<g clip-path=[^>]*>(.*?)</g>", svg, flags=re.S))
    assert clipped.count("<path") == 4 and "<circle" not in clipped  # only the funnel curves are clipped


def test_funnel_marks_a_point_outside_the_95_percent_limits_and_dots_the_overall_line():
    """The report said "1 of them outside the 95% limits" under a funnel of hollow grey dots, the one outside on a limit
    line; and printed in grey scale the solid overall line read as a limit. The provider outside (3 of 3 against 40%)
    is a red diamond, as a p-chart's special cause; the overall and centre lines are dotted."""
    svg = charts.funnel_svg(_funnel([1.0, 0.4, 0.35], [3, 10, 20], [True, True, False]), 0.4, "Funnel", "f")
    assert svg.count('fill="#d62728"') == 2 and ">outside the 95% limits</text>" in svg  # the point and its key
    inside = charts.funnel_svg(_funnel([0.4, 0.35], [10, 20], [True, False]), 0.4, "Funnel", "g")
    assert 'fill="#d62728"' not in inside and "outside the 95%" not in inside
    overall = f'stroke="{charts.GREY}" stroke-width="1.5" stroke-dasharray="{charts.CENTRE_DASH}"'
    assert inside.count(overall) == 2  # the line and its key
    chart = pl.DataFrame(
        {"period": ["2025-01", "2025-02"], "rate": [0.1, 0.2], "centre": [0.15] * 2, "ucl": [0.4] * 2, "lcl": [0.0] * 2}
    )
    assert charts.p_chart_svg(chart.with_columns(outside=pl.lit(False)), "Rate", "r").count(overall) == 2


def test_funnel_axis_names_the_measures_denominator():
    """The x axis says what N counts (the low back pain measure's N is orders judged, not 'evaluated orders')."""
    points = _funnel([0.5, 0.2], [10, 30])
    svg = charts.funnel_svg(points, 0.3, "Funnel", "f", denominator="orders judged (days 0-42)")
    assert ">orders judged (days 0-42) (N)<" in svg and ">rate (n / N)<" in svg
    assert "inappropriate" not in svg and "evaluated orders" not in svg


def test_department_axis_is_fitted_to_the_intervals():
    """Rates of 12-19% are not crushed into 0-100%: the ticks enclose the intervals within one step."""
    rows = pl.DataFrame(
        {
            "group_key": ["b", "a", "c"],
            "label": ["Neurology", "Emergency", "Radiology"],
            "rate": [0.15, 0.14, 0.17],
            "ci_low": [0.12, 0.125, 0.15],
            "ci_high": [0.18, 0.16, 0.19],
            "small": [False, False, True],
        }
    )
    svg = charts.interval_svg(rows, "By department", "dept-rates", 0.155)
    ticks = _x_percents(svg)
    step = ticks[1] - ticks[0]
    assert ticks[0] <= 12 < ticks[0] + step and ticks[-1] - step < 19 <= ticks[-1]
    assert ticks[-1] - ticks[0] <= 10
    # alphabetical from the top, never ranked; low reliability marked after the name
    names = re.findall(r'dy="0.35em">([^<]*)</text>', svg)
    assert names == ["Emergency", "Neurology", "Radiology \u2020"]


def test_percent_ticks_carry_the_decimals_their_step_needs():
    assert charts.percent_labels([0.0, 0.025, 0.05], 0.025) == ["0.0%", "2.5%", "5.0%"]
    assert charts.percent_labels([0.0, 0.2, 0.4], 0.2) == ["0%", "20%", "40%"]
    low, high, step = charts.nice_range(0.0, 0.9, target=4)
    assert (low, high) == (0.0, 1.0) and step == 0.25


def test_p_chart_marks_special_causes_and_leaves_gaps_for_empty_months():
    chart = pl.DataFrame(
        {
            "period": ["2025-01", "2025-02", "2025-03", "2025-04"],
            "rate": [0.1, None, 0.12, 0.6],
            "centre": [0.12] * 4,
            "ucl": [0.3, None, 0.3, 0.3],
            "lcl": [0.0, None, 0.0, 0.0],
            "outside": [False, False, False, True],
        }
    )
    svg = charts.p_chart_svg(chart, "Rate", "overall-rate")
    rate_line = re.search(r'<path d="([^"]*)" fill="none" stroke="#1f4e79" stroke-width="2"/>', svg).group(1)
    assert rate_line.count("M") == 2  # broken at the empty month
    assert svg.count('fill="#d62728"') == 2  # the point outside, and its legend entry
    assert ">special cause</text>" in svg and ">2025-02</text>" in svg
    assert ">rate that month (n / N)</text>" in svg  # the y axis: each month's n of its own N


def test_labels_are_escaped_and_bytes_repeat():
    rows = pl.DataFrame({"group_key": ["<script>alert(1)</script>"], "rate": [0.2], "ci_low": [0.1], "ci_high": [0.3]})
    first = charts.interval_svg(rows, 'Title "<b>"', "dept-rates", 0.2)
    assert "<script" not in first and "<b>" not in first
    assert ">&lt;script&gt;alert(1)&lt;/script&gt;</text>" in first
    assert first.startswith('<svg role="img" aria-label="dept-rates chart" class="chart"')
    assert charts.interval_svg(rows, 'Title "<b>"', "dept-rates", 0.2) == first


def test_nothing_to_draw_is_none():
    assert charts.histogram_svg(np.array([np.nan]), 72, "t", "n") is None
    assert charts.funnel_svg(_funnel([], []), 0.1, "t", "n") is None
    assert charts.funnel_svg(_funnel([0.1], [5]), None, "t", "n") is None


def test_p_chart_always_labels_the_reported_month():
    """At most 12 month labels: counted back from the last month, so the reported month is labelled whatever the
    number of months (22 months labelled every second month from the first left 2026-06 without a label)."""
    months = [f"{2024 + (m + 8) // 12}-{(m + 8) % 12 + 1:02d}" for m in range(22)]  # 2024-09 .. 2026-06
    steady = {"rate": [0.1] * 22, "centre": [0.1] * 22, "ucl": [0.3] * 22, "lcl": [0.0] * 22, "outside": [False] * 22}
    chart = pl.DataFrame({"period": months, **steady})
    labels = [label for _, label in X_TICK.findall(charts.p_chart_svg(chart, "Rate", "overall-rate"))]
    assert months[-1] == "2026-06" and labels[-1] == "2026-06" and len(labels) == 11
    assert labels == months[1::2]


def test_funnel_providers_at_the_same_point_are_counted_not_hidden():
    """Providers with the same orders and rate share one point: it is drawn larger with their number beside it
    (four providers at 1 of 1 read as one before), and the legend says so; a lone provider stays a plain point."""
    svg = charts.funnel_svg(_funnel([1.0, 1.0, 1.0, 1.0, 0.25], [1, 1, 1, 1, 4], [True] * 5), 0.14, "Funnel", "f")
    circles = re.findall(r'<circle cx="[\d.]+" cy="[\d.]+" r="([\d.]+)" fill="white"', svg)
    # the four at 100% as one point of twice the radius, the provider at 25%, and the legend's two hollow swatches
    # (low reliability 4.5, shared points 7.8)
    assert sorted(float(r) for r in circles) == [4.5, 4.5, 7.8, 9.0]
    assert ">\u00d74</text>" in svg and "providers with the same orders and rate</text>" in svg
    alone = charts.funnel_svg(_funnel([1.0, 0.25], [1, 4], [True, True]), 0.14, "Funnel", "g")
    assert "\u00d7" not in alone


def test_p_chart_draws_a_provisional_month_hollow_and_dashed():
    """The newest month, still provisional (pipeline.maturity), is not drawn like a final one: hollow point,
    dashed line into it, and the word in the legend; final months keep the solid line and filled points."""
    chart = pl.DataFrame(
        {
            "period": ["2026-04", "2026-05", "2026-06"],
            "rate": [0.1, 0.12, 0.2],
            "centre": [0.14] * 3,
            "ucl": [0.3] * 3,
            "lcl": [0.0] * 3,
            "outside": [False] * 3,
        }
    )
    final = charts.p_chart_svg(chart, "Rate", "overall-rate")
    assert "provisional" not in final and 'fill="white"' not in final
    svg = charts.p_chart_svg(chart, "Rate", "overall-rate", frozenset({"2026-06"}))
    solid = re.search(r'<path d="([^"]*)" fill="none" stroke="#1f4e79" stroke-width="2"/>', svg).group(1)
    dashed = re.search(r'<path d="([^"]*)" fill="none" stroke="#1f4e79" stroke-width="2" stroke-dasharray="5 4"/>', svg).group(1)
    assert solid.count("L") == 1 and dashed.count("L") == 1  # April-May solid, May-June dashed
    points = re.findall(r'<circle cx="[\d.]+" cy="[\d.]+" r="([\d.]+)" fill="(\w+|#[0-9a-f]+)"', svg)
    assert points[:3] == [("3.5", "#1f4e79"), ("3.5", "#1f4e79"), ("4.5", "white")]
    assert ">provisional month (may change)</text>" in svg


def test_p_chart_legend_ends_inside_the_chart():
    """Every legend entry of a p-chart with a provisional month and a special cause (five entries) ends inside the
    chart's width: the last ran past the right edge, printed as 'special cau' on the demo month's trend page."""
    chart = pl.DataFrame(
        {
            "period": ["2026-01", "2026-02", "2026-03", "2026-04"],
            "rate": [0.1, 0.6, 0.12, 0.2],
            "centre": [0.14] * 4,
            "ucl": [0.3] * 4,
            "lcl": [0.0] * 4,
            "outside": [False, True, False, False],
        }
    )
    svg = charts.p_chart_svg(chart, "Rate", "overall-rate", frozenset({"2026-04"}))
    labels = re.findall(r'<text x="([\d.]+)" y="38" fill="#222">([^<]*)</text>', svg)
    assert [label for _, label in labels][-2:] == ["provisional month (may change)", "special cause"]
    ends = [float(x) + charts._text_width(label, charts.TICK) for x, label in labels]
    assert max(ends) <= charts.WIDTH, ends
    swatches = [float(x) - 34 for x, _ in labels[1:]]  # each next entry's swatch starts after the label before it
    assert all(end < swatch for end, swatch in zip(ends[:-1], swatches, strict=True)), (ends, swatches)


def test_a_legend_too_long_for_one_row_goes_on_to_a_second_and_the_plot_moves_down():
    """A funnel with providers of both kinds, shared points and one outside the 95% limits has seven legend entries:
    in one row the last ran past the chart's right edge ("n providers with the sa")."""
    points = _funnel([1.0, 0.4, 0.4, 0.35, 0.2], [3, 10, 10, 30, 40], [True, True, True, False, False])
    svg = charts.funnel_svg(points, 0.3, "Funnel", "f")
    labels = re.findall(r'<text x="([\d.]+)" y="([\d.]+)" fill="#222">([^<]*)</text>', svg)
    rows = sorted({float(y) for _, y, _ in labels})
    assert len(labels) == 7 and len(rows) == 2 and rows[1] - rows[0] == charts.LEGEND_ROW
    assert max(float(x) + charts._text_width(label, charts.TICK) for x, _, label in labels) <= charts.WIDTH
    assert 'transform="translate(0 18)"' in svg  # the plot below, moved down by the second row
    one_row = charts.funnel_svg(_funnel([0.4, 0.35], [10, 20], [True, False]), 0.4, "Funnel", "g")
    assert "translate(" not in one_row


def test_provisional_months_come_from_the_runs_maturity():
    """run.json's maturity says which of the trend's months later data can still change."""
    from pipeline.report.pages import provisional_months  # noqa: PLC0415 - the one test of the pages module here

    maturity = {"data_through": "2026-09-01T03:36:16+00:00", "horizon_days": 74.0, "site_timezone": "America/New_York"}
    window = ["2026-04", "2026-05", "2026-06"]
    assert provisional_months({"maturity": maturity}, window) == {"2026-06"}
    assert provisional_months({}, window) == frozenset()


def test_long_department_name_keeps_its_start_with_the_full_name_in_a_title():
    """A 90-character department name lost its start at the chart's left edge: it keeps its start, loses its end
    with an ellipsis, and the whole name is the label's <title>; short names are drawn as they are."""
    long_name = "Department of Interventional Neuroradiology and Minimally Invasive Spine Procedures, Ann B"
    assert len(long_name) == 90
    rows = pl.DataFrame(
        {
            "label": [long_name, "ENT"],
            "rate": [0.2, 0.3],
            "ci_low": [0.1, 0.2],
            "ci_high": [0.3, 0.4],
            "small": [True, False],
        }
    )
    svg = charts.interval_svg(rows, "By department", "dept-rates", 0.25)
    shown = re.findall(r'<text x="([\d.]+)" y="[\d.]+" dy="0.35em">([^<]*)</text>', svg)
    cut = next(label for _, label in shown if label.startswith("Department of Interventional"))
    assert cut.endswith("\u2026 \u2020") and len(cut) < 60  # the start kept, the low-reliability mark kept
    assert long_name[: len(cut) - 3] == cut[:-3]
    assert f"<g><title>{long_name} \u2020</title><text" in svg
    assert ">ENT</text>" in svg and svg.count("<g><title>") == 1
    # the name's room: about 8.6 user units a character, from the left edge to the plot
    left = float(shown[0][0]) + 10
    assert len(cut) * charts.TICK * charts.NAME_CHAR <= left


def test_long_chart_title_wraps_and_moves_the_plot_down():
    """A title wider than the chart was one line cut at the right edge: it wraps onto a second (or third) line,
    the picture grows by the lines added, and the <title> keeps the whole text."""
    chart = pl.DataFrame({"period": ["2026-05", "2026-06"], "rate": [0.1, 0.2], "centre": [0.15] * 2, "ucl": [0.3] * 2})
    chart = chart.with_columns(lcl=pl.lit(0.0), outside=pl.lit(False))
    short = charts.p_chart_svg(chart, "Rate", "overall-rate")
    title = "Leak cases whose first imaging was the right study, by the month of their index procedure: " * 2 + "p-chart"
    svg = charts.p_chart_svg(chart, title.strip(), "overall-rate")
    lines = re.findall(r'<text x="4" y="([\d.]+)" font-size="16" fill="#222">([^<]*)</text>', svg)
    assert [y for y, _ in lines] == ["20", "40"]
    assert " ".join(text for _, text in lines) == title.strip()
    assert all(len(text) * charts.TITLE * charts.CHAR <= charts.WIDTH - 8 for _, text in lines)
    assert f"<title>{title.strip()}</title>" in svg
    height = lambda s: float(re.search(r'viewBox="0 0 1000 ([\d.]+)"', s).group(1))  # noqa: E731
    assert height(svg) == height(short) + 20 and '<g transform="translate(0 20)">' in svg
    # longer still: three lines, the last cut with an ellipsis
    lines = charts.title_lines(title * 3)
    assert len(lines) == 3 and lines[-1].endswith("\u2026") and lines[0] == title[: len(lines[0])]


def _bars(svg: str) -> list[tuple[float, float, float]]:
    """(x, width, height) of each bar of a histogram."""
    found = re.findall(r'<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)" height="([\d.]+)" fill="#1f4e79"', svg)
    return [tuple(map(float, bar)) for bar in found]


def test_histogram_gathers_the_tail_into_one_last_bin():
    """First orders up to the 720 h audit window stretched the hour axis and squashed the days around the 72 h
    limit: the axis ends at ``tail_from`` and the values from there on are one last bar, labelled, its count exact."""
    hours = np.array([10.0, 80.0, 100.0, 150.0, 167.9, 168.0, 300.0, 719.0])
    svg = charts.histogram_svg(hours, 72, "Hours", "overall-hours", "hours", 12, "h", "cases", tail_from=168)
    labels = [label for _, label in X_TICK.findall(svg)]
    assert labels[-1] == "\u2265 168 h" and "720" not in labels and "168" in labels  # the axis: 0-168 h, then the tail
    bars = _bars(svg)
    assert len(bars) == 6  # 0-12, 72-84, 96-108, 144-156, 156-168 (167.9 h is not in the tail), the tail
    unit = bars[0][2]  # one case's height
    assert abs(bars[-1][2] - 3 * unit) < 0.2  # 168, 300 and 719 h
    assert re.search(rf'<text x="{bars[-1][0]}" y="[\d.]+" dy="0.35em" fill="#222">3</text>', svg)  # and its count
    assert bars[-1][0] - (bars[-2][0] + bars[-2][1]) > bars[-2][1] * 0.4  # it stands apart
    # the tail's edge is at least 1.5 times the marker, on a bin edge; no value past it: no tail, as before
    assert ">\u2265 108 h</text>" in charts.histogram_svg(hours, 72, "Hours", "x", bin_width=12, unit="h", tail_from=100)
    plain = charts.histogram_svg(np.array([5.0, 100.0]), 72, "Hours", "x", bin_width=12, unit="h", tail_from=168)
    assert "\u2265" not in plain and plain == charts.histogram_svg(
        np.array([5.0, 100.0]), 72, "Hours", "x", bin_width=12, unit="h"
    )
