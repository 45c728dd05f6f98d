"""Charts as inline SVG written from the numbers: scales and ticks here, the markup in ``reports/_charts.svg``.

The SVG is the only markup the page templates insert unescaped: it comes from a template of the report
environment (``templates.make_env``), so every label (a department named ``<script>``) is escaped there and
nothing here builds markup. Same inputs, same bytes: coordinates are printed with one decimal, ids derive
from the chart's name. Drawing costs milliseconds a chart, in the process rendering the pages.
"""

from __future__ import annotations

import math
import re

import markupsafe
import numpy as np
import polars as pl

from pipeline.report.measure import funnel_limits

WIDTH = 1000  # user units across the page's full width (about 11 in. printed on A4 landscape)
# text sizes in user units: at full width 13 is about 10 pt printed, read from the back of a meeting room
TICK, LABEL, TITLE = 13, 14, 16
TITLE_LINE = 20  # a title line's height: a title on two lines moves the plot down by one
CHAR = 0.56  # a character's average width in em (DejaVu Sans, Arial): to space the legend's entries
NAME_CHAR = 0.66  # the same, erring wide, for the department names: a name cut at the left edge is lost
LEFT, RIGHT, TOP, BOTTOM = 64, 34, 56, 44  # the plot area's margins: title and legend above, axis label below;
# on the right, half of a last tick label "100,000"
BLUE, GREY, RED, ORANGE, HOLLOW = "#1f4e79", "#555555", "#b03a2e", "#e69f00", "#8c8c8c"
CENTRE_DASH = "2 3"  # a centre or overall line: dotted, apart from the solid rates and limits in grey-scale print
_ID = re.compile(r"[^A-Za-z0-9_-]")
_env = None


def _template():
    global _env  # noqa: PLW0603 - one environment for the process's charts, made on the first chart
    if _env is None:
        from pipeline.report.templates import make_env  # noqa: PLC0415 - templates imports nothing from here

        _env = make_env()
    return _env.get_template("_charts.svg").module


# ----------------------------------------------------------------------------- scales and ticks


def nice_step(span: float, target: int = 6, integer: bool = False) -> float:
    """A tick step of 1, 2, 2.5 or 5 times a power of ten giving about ``target`` intervals over ``span``
    (counts: 1, 2 or 5 times a power of ten, never below 1)."""
    raw = max(span, 1e-12) / target
    power = 10.0 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10) if integer else (1, 2, 2.5, 5, 10):
        step = m * power
        if step >= raw * (1 - 1e-9):
            break
    return max(step, 1.0) if integer else step


def nice_range(lo: float, hi: float, target: int = 6, integer: bool = False) -> tuple[float, float, float]:
    """(low, high, step): ``[lo, hi]`` widened outwards to whole steps, so the ticks enclose the data."""
    step = nice_step(hi - lo, target, integer)
    low, high = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    if high <= low:
        high = low + step
    return low, high, step


def ticks(low: float, high: float, step: float) -> list[float]:
    n = round((high - low) / step)
    return [low + i * step for i in range(n + 1)]


def percent_labels(values: list[float], step: float) -> list[str]:
    """Proportions as percents with as few decimals as the step needs (5%, 2.5%, 0.5%)."""
    digits = next((d for d in range(4) if abs(round(step * 100, d) - step * 100) < 1e-9), 3)
    return [f"{v * 100:.{digits}f}%" for v in values]


def number_labels(values: list[float], step: float) -> list[str]:
    digits = next((d for d in range(4) if abs(round(step, d) - step) < 1e-9), 3)
    return [f"{v:,.{digits}f}" for v in values]


class Scale:
    """A linear map from data values to user units."""

    def __init__(self, lo: float, hi: float, start: float, end: float):
        self.lo, self.k, self.start = lo, (end - start) / ((hi - lo) or 1.0), start

    def __call__(self, value: float) -> float:
        return round(self.start + (value - self.lo) * self.k, 1)


def _path(xs, ys) -> str:
    """An SVG path through the points, broken where a value is missing (NaN): a gap, not a line across it."""
    parts, pen = [], "M"
    for x, y in zip(xs, ys, strict=True):
        if not (math.isfinite(x) and math.isfinite(y)):
            pen = "M"
            continue
        parts.append(f"{pen}{x:.1f} {y:.1f}")
        pen = "L"
    return " ".join(parts)


def _steps(xs: list[float], ys: np.ndarray, scale_y: Scale, half: float) -> str:
    """A step line with each value held from half-way before its point to half-way after (limits per month)."""
    xs_out, ys_out = [], []
    for x, y in zip(xs, ys, strict=True):
        if not math.isfinite(y):
            xs_out.append(math.nan)
            ys_out.append(math.nan)
            continue
        xs_out += [x - half, x + half]
        ys_out += [scale_y(y)] * 2
    return _path(xs_out, ys_out)


def _text_width(text: str, size: float, em: float = CHAR) -> float:
    return len(text) * size * em


LEGEND_GAP, LEGEND_GAP_MIN = 18, 6  # between a legend entry's label and the next swatch
LEGEND_ROW = 18  # a second row of legend entries: the plot moves down by it, as for a title's second line


def _legend(items: list[dict], x0: float, y: float) -> list[dict]:
    """Legend entries laid out in a row from ``x0``: each gets its x (the swatch's left). The gaps between them
    narrow so the row ends inside the chart: a p-chart with provisional months and a special cause ran its last
    entry past the right edge, printed as 'special cau'. Entries that do not fit at the narrowest gaps go on to
    further rows (``row``), which ``_frame`` makes room for: a funnel with low-reliability, outside and shared
    points has seven entries."""
    widths = [34 + _text_width(item["label"], TICK) for item in items]
    end = WIDTH - 8
    rows: list[list[int]] = [[]]
    for i, width in enumerate(widths):
        used = sum(widths[j] + LEGEND_GAP_MIN for j in rows[-1])
        if rows[-1] and x0 + used + width > end:
            rows.append([])
        rows[-1].append(i)
    out = []
    for row, members in enumerate(rows):
        room = end - x0 - sum(widths[i] for i in members)
        gap = LEGEND_GAP if len(members) < 2 else max(LEGEND_GAP_MIN, min(LEGEND_GAP, room / (len(members) - 1)))
        x = x0
        for i in members:
            out.append({**items[i], "x": round(x, 1), "y": y + LEGEND_ROW * row, "row": row})
            x += widths[i] + gap
    return out


def fitted(text: str, limit: int) -> str:
    """``text`` kept to ``limit`` characters: its start kept, its end cut with an ellipsis."""
    return text if len(text) <= limit else text[: max(limit - 1, 1)].rstrip() + "\u2026"


def title_lines(title: str, width: float = WIDTH - 8, most: int = 3) -> list[str]:
    """The chart's title in lines that fit ``width`` (broken between words), at most ``most`` of them: the
    last one cut with an ellipsis where the title is longer still (the chart's ``<title>`` keeps it whole)."""
    limit = max(int(width / (TITLE * CHAR)), 8)
    lines: list[str] = []
    for word in title.split():
        if lines and len(lines[-1]) + 1 + len(word) <= limit:
            lines[-1] += " " + word
        else:
            lines.append(word)
    if len(lines) > most:
        lines = lines[: most - 1] + [fitted(" ".join(lines[most - 1 :]), limit)]
    return [fitted(line, limit) for line in lines] or [""]


def _frame(name: str, title: str, height: float, plot: tuple[float, float, float, float], **parts) -> str:
    """The chart's markup from the template (escaped there); ``plot``: the plot area (left, top, right, bottom).
    A title on more than one line moves everything under it down by its extra lines."""
    lines = title_lines(title)
    # a legend on more rows than one moves the plot down too: its rows drawn from where the first was, above it
    more_rows = LEGEND_ROW * max((item["row"] for item in parts.get("legend", [])), default=0)
    if more_rows:
        parts["legend"] = [{**item, "y": item["y"] - more_rows} for item in parts["legend"]]
    drop = TITLE_LINE * (len(lines) - 1) + more_rows
    markup = _template().chart(
        name=name,
        id=_ID.sub("_", name),
        title=title,
        title_lines=[{"y": 20 + TITLE_LINE * i, "text": line} for i, line in enumerate(lines)],
        drop=drop,
        width=WIDTH,
        height=round(height + drop, 1),
        plot=plot,
        sizes={"tick": TICK, "label": LABEL, "title": TITLE},
        **parts,
    )
    return str(markupsafe.Markup(markup)).strip() + "\n"  # the page puts the caption on the next line


def _axis_ticks(values: list[float], labels: list[str], scale: Scale) -> list[dict]:
    return [{"at": scale(v), "label": label} for v, label in zip(values, labels, strict=True)]


# ----------------------------------------------------------------------------- the four kinds


def p_chart_svg(chart: pl.DataFrame, title: str, name: str, provisional: frozenset[str] = frozenset()) -> str | None:
    """Monthly proportion with centre line and 3-sigma limits; points outside as red diamonds; percent axis.
    Months in ``provisional`` (``pipeline.maturity``: later data can still change them) are drawn hollow, dashed."""
    if chart.height == 0 or chart["centre"].null_count() == chart.height:
        return None
    height = 250
    left, top, right, bottom = LEFT, TOP, WIDTH - RIGHT, height - BOTTOM + 14
    rate = chart["rate"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    ucl = chart["ucl"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    lcl = chart["lcl"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    centre = float(chart["centre"].drop_nulls()[0])
    seen = np.concatenate([rate, ucl, [centre]])
    peak = float(np.nanmax(seen)) if np.isfinite(seen).any() else 1.0
    y_lo, y_hi, step = nice_range(0.0, min(1.0, max(0.05, peak * 1.05)), target=4)
    sy = Scale(y_lo, y_hi, bottom, top)
    n = chart.height
    slot = (right - left) / n  # one month's width: points at the centre of their slot
    xs = [round(left + slot * (i + 0.5), 1) for i in range(n)]
    out = chart["outside"].fill_null(False).to_numpy()
    periods = chart["period"].to_list()
    every = max(1, -(-n // 12))  # at most 12 labels, upright
    late = [p in provisional for p in periods]
    ys = [sy(v) if math.isfinite(v) else math.nan for v in rate]
    # the line is solid between final months and dashed into and between provisional ones
    final_ys = [math.nan if is_late else y for y, is_late in zip(ys, late, strict=True)]
    late_ys = [y if late[i] or (i + 1 < n and late[i + 1]) else math.nan for i, y in enumerate(ys)]
    # the centre dotted: printed in grey scale, a solid grey line and the solid blue rate read alike
    lines = [
        {"d": _path([left, right], [sy(centre)] * 2), "stroke": GREY, "width": 1.5, "dash": CENTRE_DASH},
        {"d": _steps(xs, ucl, sy, slot / 2), "stroke": RED, "width": 1.4, "dash": "6 4"},
        {"d": _steps(xs, lcl, sy, slot / 2), "stroke": RED, "width": 1.4, "dash": "6 4"},
        {"d": _path(xs, final_ys), "stroke": BLUE, "width": 2},
    ]
    if any(late):
        lines.append({"d": _path(xs, late_ys), "stroke": BLUE, "width": 2, "dash": "5 4"})
    dots = [
        {"x": x, "y": y, "r": 4.5, "fill": "white", "stroke": BLUE} if is_late else {"x": x, "y": y, "r": 3.5, "fill": BLUE}
        for x, y, is_late in zip(xs, ys, late, strict=True)
        if math.isfinite(y)
    ]
    diamonds = [{"x": x, "y": sy(v), "r": 7} for x, v, o in zip(xs, rate, out, strict=True) if o and math.isfinite(v)]
    # the centre pools the final months alone when there are both (measure.p_chart): the key says so
    final_centre = any(late) and any(math.isfinite(y) for y in final_ys)
    legend = [
        {"label": "monthly rate", "stroke": BLUE, "width": 2, "marker": "dot"},
        {
            "label": "centre line (p\u0304, final months)" if final_centre else "centre line (p\u0304)",
            "stroke": GREY,
            "width": 1.5,
            "dash": CENTRE_DASH,
        },
        {"label": "3-sigma limits", "stroke": RED, "width": 1.4, "dash": "6 4"},
    ]
    if any(late):
        legend.append({"label": "provisional month (may change)", "stroke": BLUE, "width": 2, "dash": "5 4", "marker": "open"})
    if diamonds:
        legend.append({"label": "special cause", "marker": "diamond"})
    return _frame(
        name,
        title,
        height,
        (left, top, right, bottom),
        y_ticks=_axis_ticks(ticks(y_lo, y_hi, step), percent_labels(ticks(y_lo, y_hi, step), step), sy),
        # counted back from the last month: the reported month is always labelled
        x_ticks=[{"at": xs[i], "label": periods[i]} for i in range((n - 1) % every, n, every)],
        grid="y",
        y_label="rate that month (n / N)",  # the month's own n of its N: "share of the month" read as a share of time
        lines=lines,
        dots=dots,
        diamonds=diamonds,
        legend=_legend(legend, left, 38),
    )


def funnel_svg(
    points: pl.DataFrame, overall_rate: float | None, title: str, name: str, denominator: str = "evaluated orders"
) -> str | None:
    """Groups' rate against denominator, with 95% and 99.8% funnel limits around the overall rate.

    ``points``: group_key, denominator, rate and optionally ``small`` (low reliability: drawn hollow
    grey, still drawn). A point's position is not a rank. ``denominator``: the measure's N in words (the x axis).
    """
    if overall_rate is None or points.height == 0:
        return None
    height = 290
    left, top, right, bottom = LEFT, TOP, WIDTH - RIGHT, height - BOTTOM
    if "small" not in points.columns:
        points = points.with_columns(pl.lit(False).alias("small"))
    # providers with the same n and N are the same point: drawn once (thousands of providers, a few hundred points),
    # larger and with their number beside it, so that four providers at 1 of 1 do not read as one
    drawn = (
        points.select("denominator", pl.col("rate").cast(pl.Float64), "small")
        .filter(pl.col("rate").is_not_null())
        .group_by("denominator", "rate", "small", maintain_order=True)
        .len("providers")
    )
    nmax = max(int(points["denominator"].max()), 10)
    x_lo, x_hi, x_step = nice_range(0.0, nmax * 1.05, target=8, integer=True)
    peak = max(float(drawn["rate"].max()) if drawn.height else 0.0, overall_rate)
    y_lo, y_hi, y_step = nice_range(0.0, min(1.0, max(peak * 1.1, overall_rate * 2, 0.02)), target=4)
    sx, sy = Scale(x_lo, x_hi, left, right), Scale(y_lo, y_hi, bottom, top)
    grid = np.linspace(1, x_hi, 200)
    lim = funnel_limits(overall_rate, grid)
    gx = [sx(v) for v in grid]

    def curve(values) -> str:
        return _path(gx, [sy(v) for v in np.asarray(values, dtype=float)])

    lines = [
        {"d": curve(lim["hi95"]), "stroke": ORANGE, "width": 1.4, "dash": "6 4", "clip": True},
        {"d": curve(lim["lo95"]), "stroke": ORANGE, "width": 1.4, "dash": "6 4", "clip": True},
        {"d": curve(lim["hi998"]), "stroke": RED, "width": 1.4, "clip": True},
        {"d": curve(lim["lo998"]), "stroke": RED, "width": 1.4, "clip": True},
        {"d": _path([left, right], [sy(overall_rate)] * 2), "stroke": GREY, "width": 1.5, "dash": CENTRE_DASH},
    ]
    small, shared = drawn["small"].to_list(), drawn["providers"].to_list()
    xy = list(zip(drawn["denominator"].to_list(), drawn["rate"].to_list(), strict=True))
    # points are never clipped: one at 100% sits on the top edge, whole (the plot area leaves room above)
    solid, hollow = {"fill": BLUE}, {"fill": "white", "stroke": HOLLOW}
    # a dot's area grows with the providers it stands for (capped); their number is written beside it where
    # few points are shared (hundreds of numbers would hide the funnel)
    radius = [round(4.5 * min(math.sqrt(k), 3.0), 1) for k in shared]
    dots = [{"x": sx(x), "y": sy(y), "r": r, **solid} for (x, y), s, r in zip(xy, small, radius, strict=True) if not s]
    dots += [{"x": sx(x), "y": sy(y), "r": r, **hollow} for (x, y), s, r in zip(xy, small, radius, strict=True) if s]
    # a point outside the 95% limits is a red diamond, as a p-chart's special cause is, small or not: the text counts it,
    # and a hollow grey dot on a limit line could not be found
    at = funnel_limits(overall_rate, drawn["denominator"].to_list())
    beyond = [
        lo is not None and (y < lo or y > hi)
        for (_, y), lo, hi in zip(xy, at["lo95"].to_list(), at["hi95"].to_list(), strict=True)
    ]
    diamonds = [{"x": sx(x), "y": sy(y), "r": r + 4} for (x, y), r, b in zip(xy, radius, beyond, strict=True) if b]
    merged = [(sx(x), sy(y), r, k) for (x, y), r, k in zip(xy, radius, shared, strict=True) if k > 1]
    counts = [{"x": round(x + r + 3, 1), "y": y, "label": f"\u00d7{k}"} for x, y, r, k in merged] if len(merged) <= 30 else []
    legend = [
        {"label": "95% limits", "stroke": ORANGE, "width": 1.4, "dash": "6 4"},
        {"label": "99.8% limits", "stroke": RED, "width": 1.4},
        {"label": f"overall {overall_rate:.1%}", "stroke": GREY, "width": 1.5, "dash": CENTRE_DASH},
    ]
    if not all(small):
        legend.append({"label": "provider", "marker": "dot"})
    if any(small):
        legend.append({"label": "low reliability", "marker": "hollow"})
    if diamonds:
        legend.append({"label": "outside the 95% limits", "marker": "diamond"})
    if merged:
        # drawn as the shared points are: hollow where every point is of low reliability
        legend.append({"label": "\u00d7n: n providers with the same orders and rate", "marker": "shared", "hollow": all(small)})
    x_values = ticks(x_lo, x_hi, x_step)
    y_values = ticks(y_lo, y_hi, y_step)
    return _frame(
        name,
        title,
        height,
        (left, top, right, bottom),
        y_ticks=_axis_ticks(y_values, percent_labels(y_values, y_step), sy),
        x_ticks=_axis_ticks(x_values, number_labels(x_values, x_step), sx),
        grid="xy",
        y_label="rate (n / N)",  # the measure is the title's; the axis says what is plotted, n of the N below
        x_label=f"{denominator} (N)",
        lines=lines,
        dots=dots,
        diamonds=diamonds,
        notes=counts,
        legend=_legend(legend, left, 38),
    )


def interval_svg(rows: pl.DataFrame, title: str, name: str, overall_rate: float | None = None) -> str | None:
    """Dot-and-whisker chart of group rates with 95% CIs; groups in alphabetical order (never ranked).

    ``rows``: rate, ci_low, ci_high, ``label`` (the printed name; else group_key) and optionally
    ``small`` (low reliability: hollow marker, '†' after the name). The rate axis is fitted to the data:
    from the nearest tick below the lowest interval to the nearest above the highest.
    """
    rows = rows.filter(pl.col("rate").is_not_null())
    if rows.height == 0:
        return None
    if "label" not in rows.columns:
        rows = rows.with_columns(pl.col("group_key").cast(pl.String).alias("label"))
    if "small" not in rows.columns:
        rows = rows.with_columns(pl.lit(False).alias("small"))
    rows = rows.sort(pl.col("label").str.to_lowercase())
    names = [str(lab) for lab in rows["label"].to_list()]
    # names keep their start: one wider than the left half of the chart is cut at its end (the full name in a <title>)
    room = int((WIDTH / 2 - 16) / (TICK * NAME_CHAR))
    marks = [" \u2020" if s else "" for s in rows["small"].to_list()]
    labels = [fitted(n, room - len(m)) + m for n, m in zip(names, marks, strict=True)]
    row_h = 28
    left = min(WIDTH / 2, max(LEFT, max(_text_width(lab, TICK, NAME_CHAR) for lab in labels) + 16))
    top = 40
    bottom = top + row_h * rows.height
    height = bottom + BOTTOM
    rate = rows["rate"].cast(pl.Float64).to_numpy()
    low = rows["ci_low"].cast(pl.Float64).to_numpy()
    high = rows["ci_high"].cast(pl.Float64).to_numpy()
    values = np.concatenate([low, high, rate, [overall_rate] if overall_rate is not None else []])
    values = values[np.isfinite(values)]
    lo, hi = max(0.0, float(values.min())), min(1.0, float(values.max()))
    x_lo, x_hi, step = nice_range(lo, max(hi, lo + 0.01), target=6)  # steps divide 1: within 0-100%
    sx = Scale(x_lo, x_hi, left, WIDTH - RIGHT)
    ys = [round(top + row_h * (i + 0.5), 1) for i in range(rows.height)]
    whiskers = []
    for y, a, b in zip(ys, low, high, strict=True):
        if math.isfinite(a) and math.isfinite(b):
            whiskers.append({"x1": sx(min(a, b)), "x2": sx(max(a, b)), "y": y})
    small = rows["small"].to_list()
    dots = [
        {"x": sx(r), "y": y, "r": 5.5, **({"fill": "white", "stroke": HOLLOW} if s else {"fill": BLUE})}
        for y, r, s in zip(ys, rate, small, strict=True)
    ]
    lines = []
    if overall_rate is not None:
        lines.append({"d": _path([sx(overall_rate)] * 2, [top, bottom]), "stroke": GREY, "width": 1.5, "dash": "2 3"})
    x_values = ticks(x_lo, x_hi, step)
    return _frame(
        name,
        title,
        height,
        (left, top, WIDTH - RIGHT, bottom),
        x_ticks=_axis_ticks(x_values, percent_labels(x_values, step), sx),
        row_labels=[
            {"at": y, "label": lab, "full": n + m if lab != n + m else None}
            for y, lab, n, m in zip(ys, labels, names, marks, strict=True)
        ],
        whiskers=whiskers,
        grid="x",
        x_label="rate with 95% Wilson interval (dotted: hospital)",
        lines=lines,
        dots=dots,
    )


def histogram_svg(
    values: np.ndarray,
    marker: float | None,
    title: str,
    name: str,
    xlabel: str = "",
    bin_width: float = 1.0,
    unit: str = "",
    ylabel: str = "count",
    tail_from: float | None = None,
) -> str | None:
    """A distribution in bins of ``bin_width`` (from 0), with a dashed line at ``marker`` (a threshold).
    The count axis has whole-number ticks only. ``tail_from``: the axis ends there (raised to a whole bin and
    to 1.5 times the marker) and the values from it on are one last bin, labelled "≥ tail_from", after a gap."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return None
    height = 240
    left, top, right, bottom = LEFT, TOP, WIDTH - RIGHT, height - BOTTOM
    floor = (marker or 0) * 1.5
    if tail_from is not None:
        tail_from = math.ceil(max(tail_from, floor) / bin_width - 1e-9) * bin_width
    tail = tail_from is not None and float(values.max()) >= tail_from
    peak = tail_from if tail else max(float(values.max()), floor)
    edges = np.arange(0, peak + bin_width, bin_width)
    if edges.size < 2:
        edges = np.array([0.0, bin_width])
    # the bins are [a, b): a value on the tail's edge is in the tail, as 72 h is not before 72 h
    counts, edges = np.histogram(values[values < edges[-1]] if tail else values, bins=edges)
    x_step = bin_width * nice_step(edges.size - 1, target=10, integer=True)  # ticks on bin edges
    x_lo, x_top = 0.0, math.ceil(float(edges[-1]) / x_step - 1e-9) * x_step
    x_hi = float(edges[-1]) if tail else x_top  # with a tail the hours end where it starts
    n_tail = int((values >= edges[-1]).sum()) if tail else 0
    y_lo, y_hi, y_step = nice_range(0.0, max(int(counts.max()), n_tail, 1), target=4, integer=True)
    gap = bin_width * 0.5 if tail else 0.0  # the tail bar stands apart: it is not one bin's width of hours
    sx = Scale(x_lo, x_hi + (gap + bin_width if tail else 0.0), left, right)
    sy = Scale(y_lo, y_hi, bottom, top)
    bars = [
        {"x": sx(a), "y": sy(c), "w": round(sx(b) - sx(a), 1), "h": round(sy(0) - sy(c), 1)}
        for a, b, c in zip(edges[:-1], edges[1:], counts.tolist(), strict=True)
        if c > 0
    ]
    tail_tick, notes = [], []
    if tail:
        a, b = x_hi + gap, x_hi + gap + bin_width
        bars.append({"x": sx(a), "y": sy(n_tail), "w": round(sx(b) - sx(a), 1), "h": round(sy(0) - sy(n_tail), 1)})
        tail_tick = [{"at": sx((a + b) / 2), "label": f"\u2265 {edges[-1]:g} {unit}".strip()}]
        notes = [{"x": sx(a), "y": round(sy(n_tail) - 9, 1), "label": f"{n_tail:,}"}]  # a bar of 1 is a hairline
    lines, legend = [], []
    if marker is not None:
        lines.append({"d": _path([sx(marker)] * 2, [bottom, top]), "stroke": RED, "width": 2, "dash": "6 4"})
        legend.append({"label": f"{marker:g} {unit}".strip(), "stroke": RED, "width": 2, "dash": "6 4"})
    x_values = [v for v in ticks(x_lo, x_top, x_step) if v <= x_hi + 1e-9]
    y_values = ticks(y_lo, y_hi, y_step)
    return _frame(
        name,
        title,
        height,
        (left, top, right, bottom),
        y_ticks=_axis_ticks(y_values, number_labels(y_values, y_step), sy),
        x_ticks=_axis_ticks(x_values, number_labels(x_values, x_step), sx) + tail_tick,
        bars=bars,
        notes=notes,
        grid="y",
        y_label=ylabel,
        x_label=xlabel,
        lines=lines,
        legend=_legend(legend, left, 38),
    )
