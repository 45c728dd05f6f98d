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
from pipeline.measure import funnel_limits

log = logging.getLogger(__name__)

_RC = {
    "svg.hashsalt": "order-audit",  # stable clip-path ids: reruns are byte-identical
    "svg.fonttype": "none",  # text stays text (small, searchable); escaped by matplotlib
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": 100,
}
_ID = re.compile(r'(\bid="|url\(#|xlink:href="#|href="#)')


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
    """Monthly proportion with centre line and 3-sigma limits; points outside in red."""
    if chart.height == 0 or chart["centre"].null_count() == chart.height:
        return None
    with _style():
        fig, ax = _figure((8.4, 3.3))
        fig.subplots_adjust(left=0.075, right=0.78, bottom=0.2, top=0.9)
        x = np.arange(chart.height)
        rate = chart["rate"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        ax.plot(x, rate, marker="o", ms=3.5, lw=1.2, color="#1f4e79", label="monthly rate")
        ax.axhline(chart["centre"][0], color="#555555", lw=1, label="centre line (p\u0304)")
        ax.step(
            x, chart["ucl"].fill_null(np.nan).to_numpy(), where="mid", color="#b03a2e", lw=0.9, ls="--", label="3-sigma limits"
        )
        ax.step(x, chart["lcl"].fill_null(np.nan).to_numpy(), where="mid", color="#b03a2e", lw=0.9, ls="--")
        out = chart["outside"].to_numpy()
        if out.any():
            ax.plot(x[out], rate[out], ls="none", marker="D", ms=6, color="#d62728", label="special-cause variation")
        labels = chart["period"].to_list()
        step = max(1, len(labels) // 12)
        ax.set_xticks(x[::step], labels[::step], rotation=45, ha="right")
        ax.set_ylim(bottom=0)
        ax.set_ylabel("proportion")
        ax.set_title(title, loc="left")
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        return _svg(fig, name)


def funnel_svg(points: pl.DataFrame, overall_rate: float | None, title: str, name: str) -> str | None:
    """Groups' rate against denominator, with 95% and 99.8% funnel limits around the overall rate.

    ``points``: group_key, denominator, rate and optionally ``small`` (too few to rate: drawn hollow grey).
    """
    if overall_rate is None or points.height == 0:
        return None
    with _style():
        fig, ax = _figure((8.4, 3.6))
        fig.subplots_adjust(left=0.075, right=0.78, bottom=0.14, top=0.9)
        nmax = max(int(points["denominator"].max()), 10)
        grid = np.linspace(1, nmax * 1.05, 200)
        lim = funnel_limits(overall_rate, grid)
        ax.plot(grid, lim["hi95"], color="#e69f00", lw=1, ls="--", label="95% limits")
        ax.plot(grid, lim["lo95"], color="#e69f00", lw=1, ls="--")
        ax.plot(grid, lim["hi998"], color="#b03a2e", lw=1, label="99.8% limits")
        ax.plot(grid, lim["lo998"], color="#b03a2e", lw=1)
        ax.axhline(overall_rate, color="#555555", lw=1, label=f"overall rate {overall_rate:.1%}")
        small = points["small"].to_numpy() if "small" in points.columns else np.zeros(points.height, dtype=bool)
        x, y = points["denominator"].to_numpy(), points["rate"].cast(pl.Float64).to_numpy()
        if (~small).any():
            ax.scatter(x[~small], y[~small], s=16, color="#1f4e79", zorder=3, label="provider")
        if small.any():
            ax.scatter(x[small], y[small], s=16, facecolors="none", edgecolors="#8c8c8c", zorder=3, label="too few to rate")
        ax.set_xlabel("evaluated orders (denominator)")
        ax.set_ylabel("rate")
        ax.set_ylim(0, 1)
        ax.set_title(title, loc="left")
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        return _svg(fig, name)


def interval_svg(rows: pl.DataFrame, title: str, name: str, overall_rate: float | None = None) -> str | None:
    """Dot-and-whisker chart of group rates with 95% CIs; groups in alphabetical order (never ranked)."""
    rows = rows.filter(pl.col("rate").is_not_null()).sort("group_key", descending=True)
    if rows.height == 0:
        return None
    with _style():
        fig, ax = _figure((7.0, 0.9 + 0.28 * rows.height))
        y = np.arange(rows.height)
        rate = rows["rate"].to_numpy()
        err = np.vstack([rate - rows["ci_low"].to_numpy(), rows["ci_high"].to_numpy() - rate])
        ax.errorbar(rate, y, xerr=err, fmt="o", ms=4, color="#1f4e79", ecolor="#7f9fbf", capsize=2)
        if overall_rate is not None:
            ax.axvline(overall_rate, color="#555555", lw=1, ls=":")
        ax.set_yticks(y, [str(g) for g in rows["group_key"].to_list()])
        ax.set_xlim(0, 1)
        ax.set_xlabel("rate with 95% Wilson interval")
        ax.set_title(title, loc="left")
        return _svg(fig, name, tight=True)


def histogram_svg(hours: np.ndarray, threshold_hours: float, title: str, name: str) -> str | None:
    """Distribution of hours from procedure to first imaging, with the premature threshold marked."""
    hours = np.asarray(hours, dtype=float)
    hours = hours[~np.isnan(hours)]
    if hours.size == 0:
        return None
    with _style():
        fig, ax = _figure((8.4, 3.0))
        fig.subplots_adjust(left=0.075, right=0.78, bottom=0.16, top=0.9)
        top = max(float(hours.max()), threshold_hours * 1.5)
        bins = np.arange(0, top + 12, 12)
        ax.hist(hours, bins=bins, color="#1f4e79", edgecolor="white")
        ax.axvline(threshold_hours, color="#b03a2e", lw=1.2, ls="--", label=f"{threshold_hours:g} h")
        ax.set_xlabel("hours from procedure to first imaging order (12-hour bins)")
        ax.set_ylabel("cases")
        ax.set_title(title, loc="left")
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
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
            else (workers.process_pool("pipeline.charts", "matplotlib.figure") if process else None)
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
