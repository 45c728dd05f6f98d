"""An audit's own report sections: ``audits/<id>/report/<name>.sql`` gives the rows, ``<name>.html``
(a Jinja partial, escaped like every page) shows them. They stand in the report's body, on the hospital
page and on every department page.

The SQL reads the audit's tables (``<id>__mart_*``) and may name the page's department as
``$department`` (NULL on the hospital page). The partial receives ``section.rows`` (a list of dicts),
``scope``, ``parameters`` (the audit's, in force) and ``low``, and these helpers:

* ``rate(n, N)``: the row ``rate_cells`` prints (rate, 95% Wilson interval, low-reliability mark);
* ``quantile(values, q)``: a quantile of a list of numbers (None when empty);
* ``histogram(values, title, name=..., marker=..., xlabel=..., bin_width=..., unit=..., ylabel=...)``: an SVG
  chart (``charts.histogram_svg``; a placeholder until ``ChartSlots.fill``).
"""

from __future__ import annotations

import re
from itertools import count

import markupsafe
import numpy as np

from pipeline.db import frame
from pipeline.report import charts
from pipeline.report.measure import wilson_interval
from pipeline.report.spec import ReportSpec

_SLOT = re.compile(r"<!--chart-slot-(\d+)-->")


class ChartSlots:
    """Charts a page asks for: each becomes a placeholder now and its SVG when the page is filled, so that
    a ``draw`` returning Futures not yet done (a lazy pool) is waited for only once, when the pages are filled."""

    def __init__(self, draw):
        self.draw = draw
        self.futures: dict[int, object] = {}
        self._shown: dict[int, object] = {}  # slot -> how its chart is shown (``later``); else the SVG itself
        self._ids = count(1)
        self.page = "overall"  # the page being rendered ("overall" or "dept"): part of each chart's name

    def slot(self, fn, *args) -> markupsafe.Markup:
        return self._placeholder(self.draw(fn, *args))

    def later(self, svg, macro, *args):
        """``macro(svg, *args)`` (a template's macro), for a chart that may still be drawing (a Future): then
        a placeholder, and the macro's markup once it is drawn (the macro may test the SVG for none)."""
        if not hasattr(svg, "result"):
            return macro(svg, *args)
        placeholder = self._placeholder(svg)
        self._shown[int(_SLOT.fullmatch(placeholder).group(1))] = lambda drawn: str(macro(drawn, *args))
        return placeholder

    def _placeholder(self, future) -> markupsafe.Markup:
        n = next(self._ids)
        self.futures[n] = future
        return markupsafe.Markup(f"<!--chart-slot-{n}-->")

    def fill(self, html: str) -> str:
        def svg(match: re.Match) -> str:
            n = int(match.group(1))
            drawn = self.futures[n].result()
            return self._shown[n](drawn) if n in self._shown else drawn or ""

        return _SLOT.sub(svg, html)


def helpers(slots: ChartSlots, low: int) -> dict:
    """The functions a section's partial may call."""

    def rate(numerator, denominator) -> dict:
        n, d = int(numerator or 0), int(denominator or 0)
        lo, hi = wilson_interval([n], [d])
        return {
            "numerator": n,
            "denominator": d,
            "rate": n / d if d else None,
            "ci_low": None if np.isnan(lo[0]) else float(lo[0]),
            "ci_high": None if np.isnan(hi[0]) else float(hi[0]),
            "low": 0 < d < low,
        }

    def quantile(values, q: float):
        arr = np.asarray([v for v in values if v is not None], dtype=float)
        return float(np.quantile(arr, q)) if arr.size else None

    def count_below(values, limit) -> int:
        """How many values are below ``limit`` (Jinja's ``select("lt", ...)`` tests one value per call: 84k
        calls per page at 40k cases)."""
        arr = np.asarray([v for v in values if v is not None], dtype=float)
        return int((arr < limit).sum())

    def histogram(
        values,
        title: str,
        name: str = "histogram",
        marker=None,
        xlabel: str = "",
        bin_width: float = 1.0,
        unit="",
        ylabel="count",
    ):
        name = f"{slots.page}-{name}"
        data = np.asarray([v for v in values if v is not None], dtype=float)
        return slots.slot(charts.histogram_svg, data, marker, title, name, xlabel, bin_width, unit, ylabel)

    return {"rate": rate, "quantile": quantile, "count_below": count_below, "histogram": histogram}


def section_rows(con, spec: ReportSpec, department: str | None) -> list[dict]:
    """Every section of the audit with its rows for one page (hospital: ``department`` None)."""
    out = []
    for s in spec.sections:
        rows: list[dict] = []
        if s.sql is not None:
            sql = s.sql.read_text(encoding="utf-8")
            params = {"department": department} if "$department" in sql else None
            rows = frame(con, sql, params).to_dicts()
        out.append({"name": s.name, "title": s.title, "template": f"audit/{s.name}.html", "rows": rows})
    return out
