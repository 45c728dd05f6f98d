"""An audit's own report sections: ``audits/<id>/report/<name>.sql`` gives the rows, ``<name>.html``
(a Jinja partial, escaped like every page) shows them. They stand in the report's body, on the hospital
page and on every department page.

The SQL reads the audit's tables (``<id>__mart_*``) and may name the page's department as
``$department`` (NULL on the hospital page), and the columns of ``report/verified_from.sql``'s row as
``$verified_from``, ``$history_days``... (``section_rows``). The partial receives ``section.rows`` (a list of dicts),
``scope``, ``parameters`` (the audit's, in force) and ``low``, and these helpers:

* ``rate(n, N)``: the row ``rate_cells`` prints (rate, 95% Wilson interval, low-reliability mark);
* ``quantile(values, q)``: a quantile of a list of numbers (None when empty);
* ``label_of(key)``: an audit's key (a recorded value) in words: the manifest's ``[report] labels``, else the key
  with underscores as spaces (``names.label``);
* ``histogram(values, title, name=..., marker=..., xlabel=..., bin_width=..., unit=..., ylabel=..., tail_from=...)``: an SVG
  chart (``charts.histogram_svg``), drawn as the partial asks for it; ``tail_from`` ends the axis, later values one last bar.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import duckdb
import jinja2
import numpy as np

from pipeline.db import frame
from pipeline.errors import ConfigError, first_line
from pipeline.models.runner import AUTHOR_ERRORS
from pipeline.report import charts, names
from pipeline.report.measure import wilson_interval
from pipeline.report.sections import set_aside
from pipeline.report.spec import ReportSpec


def helpers(low: int, labels: dict[str, str] | None = None) -> dict:
    """The functions a section's partial may call (``labels``: the audit's keys in words)."""

    def label_of(key) -> str:
        return names.label(None if key is None else str(key), labels or {})

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

    @jinja2.pass_context
    def histogram(
        context,
        values,
        title: str,
        name: str = "histogram",
        marker=None,
        xlabel: str = "",
        bin_width: float = 1.0,
        unit="",
        ylabel="count",
        tail_from=None,
    ):
        # the page is part of the chart's ids (as of the page's own charts): "overall" or "dept"
        page = "overall" if context["scope"]["kind"] == "hospital" else "dept"
        data = np.asarray([v for v in values if v is not None], dtype=float)
        return charts.histogram_svg(data, marker, title, f"{page}-{name}", xlabel, bin_width, unit, ylabel, tail_from)

    return {"rate": rate, "quantile": quantile, "count_below": count_below, "histogram": histogram, "label_of": label_of}


def period_note(con, spec: ReportSpec, reach: dict) -> dict | None:
    """The audit's note on the period for the first page of every page (``report/period_note.html``, its rows from
    ``period_note.sql``, hospital-wide: the period's, not a department's); None when the audit has none. The SQL may
    name the columns of ``look_back``'s row as ``$parameters`` (``reach``: that row, ``{}`` without a look-back; the
    render reads it once for the feed and the note, so the note never reads ``verified_from.sql`` a second time)."""
    s = spec.period_note
    if s is None:
        return None
    rows = [] if s.sql is None else audit_rows(con, s.sql, "the period note's query", reach)
    return {"template": f"audit/{s.name}.html", "rows": rows}


def look_back(con, spec: ReportSpec) -> dict | None:
    """How far back the data lets the audit look before its units (``report/verified_from.sql``: one row, its
    ``verified_from`` the first site-local date whose units have their whole look-back within the data held); None
    when the audit declares no look-back. The feed marks the periods starting before that date (``look_back``)."""
    if spec.verified_from is None:
        return None
    rows = audit_rows(con, spec.verified_from, "the look-back query", {})
    return rows[0] if rows else None


# what DuckDB raises for a query its author got wrong: a name, the syntax, a cast, a $parameter it is not given
QUERY_ERRORS = (*AUTHOR_ERRORS, duckdb.InvalidInputException)


def audit_rows(con, path: Path, what: str, given: dict) -> list[dict]:
    """The rows of one of the audit's report queries (a section's, the period note's, ``verified_from.sql``), the one
    place they run: the query may name each of ``given`` as ``$name``, and is given those it names. A query DuckDB
    cannot run is its author's to fix, in that file: one line naming it, with DuckDB's first line (all but a section's
    unknown column were exit 70, "a bug in order-audit", with a traceback)."""
    sql = path.read_text(encoding="utf-8")
    params = {k: v for k, v in given.items() if f"${k}" in sql}
    try:
        return frame(con, sql, params or None).to_dicts()
    except QUERY_ERRORS as exc:
        said = first_line(exc)
        may = ""
        if isinstance(exc, duckdb.InvalidInputException) and "parameters" in said:
            # a $name it is not given (a typo, or $department in a hospital-wide query): say which it may name
            may = f"; it may name {', '.join(f'${k}' for k in given)} only" if given else "; it may name no $parameter"
        raise ConfigError(f"{path}: DuckDB cannot run {what} ({said}){may}; fix it") from None


def note_texts(env: jinja2.Environment, note: dict | None) -> list[dict]:
    """The period note in plain words, one per row, for what is not a page (run.json ``period_notes``, the workbook's
    Explanation, the site index): its title (the first ``<strong>``) and its whole text, from the partial itself, so
    the wording has one home."""
    out = []
    for row in (note or {}).get("rows", []):
        shown = env.get_template(note["template"]).render(note={**note, "rows": [row]})
        title = re.search(r"<strong>(.*?)</strong>", shown, flags=re.S)
        out.append({"title": _words(title.group(1)) if title else "", "text": _words(shown)})
    return out


def status_texts(env: jinja2.Environment, run_info: dict, spec: ReportSpec) -> list[str]:
    """What the first page says of the period itself (``_status_banner.html``: empty, a feed short, provisional or
    final, revised, quiet months), one plain text per note, for the workbook's Explanation: rendered from the partial,
    so a note the page gains the workbook says too (it had lacked three of them)."""
    if not run_info.get("status"):
        return []
    run = {"run_id": run_info.get("run_id")}
    shown = env.get_template("_status_banner.html").render(
        status=run_info["status"], spec=spec, run=run, set_aside=set_aside(run_info), in_workbook=True
    )
    return [_words(body) for _, body in re.findall(r"<(div|p)\b[^>]*>(.*?)</\1>", shown, flags=re.S)]


def _words(markup: str) -> str:
    """Rendered markup as a reader reads it: tags dropped, entities decoded, spaces collapsed. An inline tag goes
    without a trace (a space for it printed "reaches <strong>2026-09-13</strong>," as "2026-09-13 ,"), any other
    one as a space (paragraphs, cells and line breaks part words)."""
    inline = re.sub(r"</?(?:strong|em|b|i|code|a|span|abbr|small)\b[^>]*>", "", markup)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", inline)).split())


def section_rows(con, spec: ReportSpec, department: str | None, reach: dict | None = None) -> list[dict]:
    """Every section of the audit with its rows for one page (hospital: ``department`` None). A section's SQL may name
    the columns of ``look_back``'s row as ``$parameters``, as the period note does (``reach``: that row): a table by
    month marks the months whose units look back past the data held, as the feed's ``look_back`` does."""
    out = []
    for s in spec.sections:
        rows: list[dict] = []
        if s.sql is not None:
            rows = audit_rows(con, s.sql, "the section's query", {"department": department, **(reach or {})})
        out.append({"name": s.name, "title": s.title, "template": f"audit/{s.name}.html", "rows": rows})
    return out
