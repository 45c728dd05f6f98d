"""Charts drawn with matplotlib and returned as inline SVG text (deterministic, no scripts).

The SVG is the only markup the templates insert unescaped; matplotlib escapes every label it
writes (tests feed it a ``<script>`` department name), and nothing here builds SVG by hand.

Figures are made with matplotlib's object API (``Figure``, saved through the SVG backend): no
pyplot, no global figure registry to close. ``ChartPool`` draws them in one worker process
(the render stage's other work goes on meanwhile), else inline. matplotlib is imported on the
first chart (``_figure``, ``_style``) or by the worker as it starts: a main process whose charts
are drawn by the worker never loads it (0.7 s of CPU).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from concurrent.futures import Future

import numpy as np
import polars as pl

from pipeline import workers
from pipeline.report.measure import funnel_limits

log = logging.getLogger(__name__)

_RC = {
    "svg.hashsalt": "order-audit",  # stable clip-path ids: reruns are byte-identical
    "svg.fonttype": "none",  # text stays text (small, searchable); escaped by matplotlib
    "text.parse_math": False,  # labels are data (a department "ER $x$"): plain text, never mathtext
    "text.usetex": False,
    # drawn at the page's full width (about 11 in. printed on A4 landscape): text at 11 pt
    # reads from the back of a meeting room
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.titley": 1.0,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e3e3e3",
    "grid.linewidth": 0.6,
    "figure.dpi": 100,
}
_ID = re.compile(r'(\bid="|url\(#|xlink:href="#|href="#)')
WIDTH_IN = 11.0  # every chart spans the page width


@contextlib.contextmanager
def _style():
    """The charts' matplotlib settings (``_RC``) for the figures drawn inside."""
    import matplotlib  # noqa: PLC0415 - on first use, see the module docstring

    with matplotlib.rc_context(_RC):
        yield


def _figure(figsize: tuple[float, float]):
    """A figure with one axes, as ``pyplot.subplots(figsize=...)`` makes it (inside ``_style()``)."""
    from matplotlib.figure import Figure  # noqa: PLC0415 - on first use, see the module docstring

    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def _percent_axis(axis, span: float) -> None:
    """Proportions shown as percent, as the tables print them (whole percents unless the range is narrow)."""
    from matplotlib.ticker import PercentFormatter  # noqa: PLC0415 - on first use

    axis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0 if span >= 0.05 else 1))


def _fitted(values: np.ndarray, floor: float = 0.0, pad: float = 0.1) -> tuple[float, float]:
    """An axis range around ``values`` (proportions): padded, within [0, 1], never a 0-1 crush of 12-19%."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return 0.0, 1.0
    lo, hi = float(v.min()), float(v.max())
    span = max(hi - lo, 0.02)
    return max(floor, lo - pad * span), min(1.0, hi + pad * span)


def _svg(fig, name: str, tight: bool = False) -> str:
    """Serialise a figure to an SVG fragment; ids are prefixed so several charts share a page.

    Charts with a fixed layout (``fig.subplots_adjust``) are drawn once; ``tight`` (labels of unknown
    length, e.g. department names) costs a second draw to measure them.
    """
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None}, bbox_inches="tight" if tight else None)
    text = buf.getvalue()
    text = text[text.index("<svg") :]  # drop the XML declaration and DOCTYPE
    text = _ID.sub(r"\g<1>" + name.replace("\\", "\\\\") + "-", text)  # a template: no Python call per id
    return text.replace("<svg ", f'<svg role="img" aria-label="{name} chart" class="chart" ', 1)


def p_chart_svg(chart: pl.DataFrame, title: str, name: str) -> str | None:
    """Monthly proportion with centre line and 3-sigma limits; points outside in red; percent axis."""
    if chart.height == 0 or chart["centre"].null_count() == chart.height:
        return None
    with _style():
        fig, ax = _figure((WIDTH_IN, 2.3))
        fig.subplots_adjust(left=0.07, right=0.84, bottom=0.15, top=0.87)
        x = np.arange(chart.height)
        rate = chart["rate"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        ucl = chart["ucl"].fill_null(np.nan).to_numpy()
        ax.plot(x, rate, marker="o", ms=4.5, lw=1.6, color="#1f4e79", label="monthly rate")
        ax.axhline(chart["centre"][0], color="#555555", lw=1.2, label="centre line (p\u0304)")
        ax.step(x, ucl, where="mid", color="#b03a2e", lw=1.1, ls="--", label="3-sigma limits")
        ax.step(x, chart["lcl"].fill_null(np.nan).to_numpy(), where="mid", color="#b03a2e", lw=1.1, ls="--")
        out = chart["outside"].to_numpy()
        if out.any():
            ax.plot(x[out], rate[out], ls="none", marker="D", ms=8, color="#d62728", label="special cause")
        labels = chart["period"].to_list()
        step = max(1, -(-len(labels) // 12))  # at most 12 labels, upright
        ax.set_xticks(x[::step], labels[::step])
        top = np.nanmax(np.concatenate([rate, ucl])) if np.isfinite(np.concatenate([rate, ucl])).any() else 1.0
        ax.set_ylim(0, min(1.0, max(0.05, top * 1.08)))
        _percent_axis(ax.yaxis, ax.get_ylim()[1])
        ax.set_ylabel("share of the month")
        ax.set_title(title, loc="left")
        ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        return _svg(fig, name)


def funnel_svg(points: pl.DataFrame, overall_rate: float | None, title: str, name: str) -> str | None:
    """Groups' rate against denominator, with 95% and 99.8% funnel limits around the overall rate.

    ``points``: group_key, denominator, rate and optionally ``small`` (low reliability: drawn hollow
    grey, still drawn). A point's position is not a rank.
    """
    if overall_rate is None or points.height == 0:
        return None
    with _style():
        fig, ax = _figure((WIDTH_IN, 2.7))
        fig.subplots_adjust(left=0.07, right=0.84, bottom=0.18, top=0.87)
        nmax = max(int(points["denominator"].max()), 10)
        grid = np.linspace(1, nmax * 1.05, 200)
        lim = funnel_limits(overall_rate, grid)
        ax.plot(grid, lim["hi95"], color="#e69f00", lw=1.2, ls="--", label="95% limits")
        ax.plot(grid, lim["lo95"], color="#e69f00", lw=1.2, ls="--")
        ax.plot(grid, lim["hi998"], color="#b03a2e", lw=1.2, label="99.8% limits")
        ax.plot(grid, lim["lo998"], color="#b03a2e", lw=1.2)
        ax.axhline(overall_rate, color="#555555", lw=1.2, label=f"overall {overall_rate:.1%}")
        if "small" not in points.columns:
            points = points.with_columns(pl.lit(False).alias("small"))
        # providers with the same n and N are the same point: drawn once (thousands of providers, a few
        # hundred distinct points), as markers (a third of a scatter's cost in SVG)
        drawn = points.select("denominator", pl.col("rate").cast(pl.Float64), "small").unique(maintain_order=True)
        small = drawn["small"].to_numpy()
        x, y = drawn["denominator"].to_numpy(), drawn["rate"].to_numpy()
        if (~small).any():
            ax.plot(x[~small], y[~small], "o", ls="none", ms=5.5, color="#1f4e79", zorder=3, label="provider")
        if small.any():
            ax.plot(x[small], y[small], "o", ls="none", ms=5.5, mfc="none", mec="#8c8c8c", zorder=3, label="low reliability")
        ax.set_xlabel("evaluated orders (denominator)")
        ax.set_ylabel("inappropriate")
        _, hi = _fitted(np.concatenate([y, [overall_rate]]), pad=0.15)
        ax.set_ylim(0, max(hi, min(1.0, overall_rate * 2)))
        ax.set_xlim(0, nmax * 1.05)
        _percent_axis(ax.yaxis, ax.get_ylim()[1])
        ax.set_title(title, loc="left")
        ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        return _svg(fig, name)


def interval_svg(rows: pl.DataFrame, title: str, name: str, overall_rate: float | None = None) -> str | None:
    """Dot-and-whisker chart of group rates with 95% CIs; groups in alphabetical order (never ranked).

    ``rows``: rate, ci_low, ci_high, ``label`` (the printed name; else group_key) and optionally
    ``small`` (low reliability: hollow marker, '†' after the name). The rate axis is fitted to the data.
    """
    rows = rows.filter(pl.col("rate").is_not_null())
    if rows.height == 0:
        return None
    if "label" not in rows.columns:
        rows = rows.with_columns(pl.col("group_key").cast(pl.String).alias("label"))
    rows = rows.sort(pl.col("label").str.to_lowercase(), descending=True)
    with _style():
        fig, ax = _figure((WIDTH_IN, 1.0 + 0.3 * rows.height))
        y = np.arange(rows.height)
        rate = rows["rate"].to_numpy()
        low, high = rows["ci_low"].to_numpy(), rows["ci_high"].to_numpy()
        small = rows["small"].to_numpy() if "small" in rows.columns else np.zeros(rows.height, dtype=bool)
        err = np.clip(np.vstack([rate - low, high - rate]), 0.0, None)  # a 0 rate may sit 1e-17 below its interval
        ax.errorbar(rate, y, xerr=err, fmt="none", ecolor="#7f9fbf", capsize=3, lw=1.4)
        ax.plot(rate[~small], y[~small], "o", ms=7, color="#1f4e79")
        if small.any():
            ax.plot(rate[small], y[small], "o", ms=7, mfc="white", mec="#8c8c8c")
        if overall_rate is not None:
            ax.axvline(overall_rate, color="#555555", lw=1.2, ls=":")
        labels = [f"{lab} \u2020" if s else str(lab) for lab, s in zip(rows["label"].to_list(), small, strict=True)]
        ax.set_yticks(y, labels)
        ax.set_ylim(-0.6, rows.height - 0.4)
        ax.grid(axis="y", visible=False)
        values = np.concatenate([low, high, [overall_rate] if overall_rate is not None else []])
        lo, hi = _fitted(values.astype(float), pad=0.08)
        ax.set_xlim(lo, hi)
        _percent_axis(ax.xaxis, hi - lo)
        ax.set_xlabel("rate with 95% Wilson interval (dotted: hospital)")
        ax.set_title(title, loc="left")
        return _svg(fig, name, tight=True)


def histogram_svg(
    values: np.ndarray,
    marker: float | None,
    title: str,
    name: str,
    xlabel: str = "",
    bin_width: float = 1.0,
    unit: str = "",
    ylabel: str = "count",
) -> str | None:
    """A distribution in bins of ``bin_width`` (from 0), with a dashed line at ``marker`` (a threshold)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return None
    with _style():
        fig, ax = _figure((WIDTH_IN, 2.2))
        fig.subplots_adjust(left=0.07, right=0.84, bottom=0.22, top=0.87)
        top = max(float(values.max()), (marker or 0) * 1.5)
        bins = np.arange(0, top + bin_width, bin_width)
        ax.hist(values, bins=bins, color="#1f4e79", edgecolor="white")
        if marker is not None:
            ax.axvline(marker, color="#b03a2e", lw=1.6, ls="--", label=f"{marker:g} {unit}".strip())
            ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(axis="x", visible=False)
        ax.set_title(title, loc="left")
        return _svg(fig, name)


# ----------------------------------------------------------------------------- drawing in a worker


class ChartPool:
    """Draw charts in one worker process (``process=True``) or inline; ``submit`` returns a Future.

    The worker (``pipeline.workers``) imports matplotlib as it starts: a run starts the pool first
    thing, so that the import overlaps its parsing and checks, and the drawing its page rendering.
    Charts only take and return plain data (Polars frames, arrays, SVG text). Where no worker can
    be started (no working ``sem_open``, e.g. without /dev/shm), charts are drawn inline.
    """

    def __init__(self, process: bool, executor=None):
        # ``executor``: a worker the run started first thing (``workers.Warm``); it closes it, not this pool.
        # Otherwise the worker loads matplotlib while the parent works, not on the first chart
        self._owned = executor is None
        self._pool = (
            executor
            if executor is not None
            else (workers.process_pool("pipeline.report.charts", "matplotlib.figure") if process else None)
        )

    def submit(self, fn, *args) -> Future:
        if self._pool is not None:
            return self._pool.submit(fn, *args)
        done: Future = Future()
        done.set_result(fn(*args))
        return done

    def close(self, cancel: bool = False) -> None:
        if self._pool is not None and self._owned:
            self._pool.shutdown(wait=True, cancel_futures=cancel)
        self._pool = None

    def __enter__(self) -> ChartPool:
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.close(cancel=exc_type is not None)
