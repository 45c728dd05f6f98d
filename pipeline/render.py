"""Render the monthly report, department pages, index, metrics feed, case list workbook and PDF.

Jinja2 runs with ``autoescape=True`` and ``StrictUndefined``: every value is escaped and a
missing variable is an error. The only ``|safe`` values are matplotlib's SVG charts.
Only ``patient_key`` (the keyed pseudonym) is ever read for output; raw patient ids are read
solely for the re-identification crosswalk, written outside the output folder, mode 0600.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import jinja2
import markupsafe
import numpy as np
import polars as pl

from pipeline import bidi, charts, formula_guard, workbook
from pipeline.errors import AuditError
from pipeline.measure import SCHEMA_VERSION, funnel_status, p_chart, wilson_interval
from pipeline.resources import reports_dir

MAIN_MEASURES = [
    (
        "first_imaging_right_study",
        "Leak cases whose first imaging was the right study",
        "cases with evaluated imaging whose first imaging episode had a complete-spine MRI without and with "
        "contrast and no flagged order",
    ),
    ("inappropriate_order_rate", "Inappropriate orders", "evaluated orders with verdict inappropriate"),
    ("premature_order_rate", "Premature imaging (< 72 h)", "evaluated orders placed before the premature limit"),
    ("not_evaluable_rate", "Orders that could not be evaluated", "audited orders with verdict not_evaluable"),
]
REVIEW_MEASURE = ("review_order_rate", "Orders for clinician review", "evaluated orders with verdict review")
TREND_MEASURES = [("inappropriate_order_rate", "Inappropriate-order rate"), ("first_imaging_right_study", "Right first study")]
TABLE_MEASURES = ["first_imaging_right_study", "inappropriate_order_rate", "premature_order_rate"]
RISK_FACTORS = [
    ("needle_type", "Needle type"),
    ("needle_gauge", "Needle gauge"),
    ("attempts", "Attempts"),
    ("patient_position", "Patient position"),
]
CASE_COLUMNS = [
    "case_id",
    "patient_key",
    "index_local_date",
    "case_department",
    "order_id",
    "ordered_at_local",
    "hours_since_index",
    "episode_number",
    "order_code",
    "order_name",
    "study_type",
    "ordering_department",
    "ordering_provider_id",
    "status",
    "verdict",
    "reasons",
    "secondary_reasons",
    "explanation",
    "rule_ids",
    "citations",
]
RUN_INFO_KEYS = (
    "run_id",
    "software_version",
    "rule_set_version",
    "code_set_versions",
    "inputs",
    "config",
    "period",
    "started_at",
    "pseudonym_key_is_demo",
    "data_quality",
)
_MONTH = re.compile(r"^\d{4}-\d{2}$")
# Draw the charts in a worker process from this many audited orders in the case list (and 2+ CPUs).
# The charts cost about the same at any size (~1.5 s), the rest of the render grows with the case
# list: at 1M orders (2.4k listed) the worker (0.7 s of CPU to start) left the stage at 2.5 s and
# only added CPU; at 10M (23.6k listed) the stage took 3.7 s instead of 5.3 s on a quiet machine.
CHART_PROCESS_MIN_ORDERS = 5000


class ReportError(AuditError):
    """The report cannot be produced as asked (e.g. PDF without a PDF engine)."""


def make_env() -> jinja2.Environment:
    """The one Jinja2 environment: escape everything, fail on anything undefined."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(reports_dir())),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_shown,
    )
    env.filters["pct"] = _pct
    env.filters["num"] = _num
    return env


def _shown(value):
    """Every value a template prints: bidirectional controls made visible (no display spoofing), then
    escaped. Markup (charts, blocks rendered here) gets the same: the controls are never markup."""
    if isinstance(value, markupsafe.Markup):
        shown = bidi.visible(value)
        return value if shown is value else markupsafe.Markup(shown)
    return bidi.visible(value) if isinstance(value, str) else value


def _pct(value, digits: int = 1) -> str:
    return "" if value is None else f"{100 * value:.{digits}f}%"


def _num(value, digits: int = 1) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def slugify(name: str | None) -> str:
    """A file-name-safe, collision-resistant slug for a department name."""
    text = "" if name is None else str(name)
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "department"
    return f"{base}-{hashlib.sha256(text.encode()).hexdigest()[:6]}"


def _q(con, sql: str, params: list | None = None) -> pl.DataFrame:
    # DuckDB 2.0: an execute() result has no .pl(); a relation fetches whole, leaving no half-read result
    return con.sql(sql, params=params or None).pl()


def _has_table(con, name: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchall()[0][0])


def _columns(con, table: str) -> set[str]:
    return {
        r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]).fetchall()
    }


# ----------------------------------------------------------------------------- periods


def _periods(metrics: pl.DataFrame, run_period: str) -> tuple[str, str | None]:
    """(headline period label in the feed, last month of the trend)."""
    present = set(metrics["period"].unique().to_list())
    months = sorted(p for p in present if p and _MONTH.match(p))
    last = run_period.split("..")[-1] if ".." in run_period else run_period
    trend_end = last if _MONTH.match(last or "") else (months[-1] if months else None)
    if run_period in present:
        return run_period, trend_end
    if "all" in present:
        return "all", trend_end
    return (trend_end or run_period), trend_end


# ----------------------------------------------------------------------------- sections


def _rows(frame: pl.DataFrame) -> list[dict]:
    return frame.to_dicts()


def _headline(metrics: pl.DataFrame, period: str, level: str, key: str, rules: pl.DataFrame) -> dict:
    sel = metrics.filter((pl.col("period") == period) & (pl.col("level") == level) & (pl.col("group_key") == key))
    by_id = {r["measure_id"]: r for r in sel.to_dicts()}
    main = [dict(by_id[m], label=label, definition=d) for m, label, d in MAIN_MEASURES if m in by_id]
    review = [dict(by_id[m], label=label, definition=d) for m, label, d in [REVIEW_MEASURE] if m in by_id]
    reasons = []
    for r in rules.to_dicts():
        row = by_id.get(f"reason_{r['reason_code']}")
        if row is not None:
            reasons.append(
                dict(row, reason_code=r["reason_code"], verdict=r["verdict"], rule_id=r["rule_id"], explanation=r["explanation"])
            )
    groups = [
        (v, [r for r in reasons if r["verdict"] == v])
        for v in ("inappropriate", "review", "appropriate", "not_evaluable", "excluded")
    ]
    return {"main": main, "review": review, "reason_groups": [(v, rs) for v, rs in groups if rs]}


def _month_range(first: str, last: str) -> list[str]:
    y, m = int(first[:4]), int(first[5:7])
    out = []
    while f"{y:04d}-{m:02d}" <= last:
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _trend_months(metrics: pl.DataFrame, end: str | None, months: int, first: str | None = None) -> list[str]:
    """The trend's months: ``months`` calendar months ending at ``end``, from the first month with data
    (or ``first``, the run's trend window start) -- months without cases stay in as gaps, not dropped."""
    if end is None:
        return []
    present = sorted(p for p in metrics["period"].unique().drop_nulls().to_list() if _MONTH.match(p) and p <= end)
    if not present:
        return []
    start = max(first or present[0], present[0]) if first else present[0]
    window = _month_range(start, end)
    return window[-months:]


def _trend(metrics: pl.DataFrame, level: str, key: str, window: list[str], name: str, draw) -> list[dict]:
    out = []
    if not window:
        return out
    base = metrics.filter((pl.col("level") == level) & (pl.col("group_key") == key) & pl.col("period").is_in(window))
    frame = pl.DataFrame({"period": window})
    for measure_id, label in TREND_MEASURES:
        got = base.filter(pl.col("measure_id") == measure_id).select("period", "numerator", "denominator")
        if got.height == 0:
            continue
        monthly = frame.join(got, on="period", how="left").with_columns(
            pl.col("numerator").fill_null(0), pl.col("denominator").fill_null(0)
        )
        pc = p_chart(monthly)
        n_data = int((pc["denominator"] > 0).sum())
        svg = draw(charts.p_chart_svg, pc, f"{label}: p-chart, {window[0]} to {window[-1]}", f"{name}-{measure_id}")
        out.append(
            {
                "measure_id": measure_id,
                "label": label,
                "svg": svg,
                "n_months": len(window),
                "n_empty": len(window) - n_data,
                "first": window[0],
                "last": window[-1],
                "centre": pc["centre"][0],
                "flagged": _rows(pc.filter(pl.col("outside")).select("period", "numerator", "denominator", "rate", "lcl", "ucl")),
            }
        )
    return out


def _group_table(metrics: pl.DataFrame, period: str, level: str, keys: list[str] | None, overall: dict) -> list[dict]:
    """One row per group with each table measure; funnel position for the inappropriate rate."""
    sel = metrics.filter((pl.col("period") == period) & (pl.col("level") == level) & pl.col("measure_id").is_in(TABLE_MEASURES))
    if keys is not None:
        sel = sel.filter(pl.col("group_key").is_in(keys))
    by_key: dict[str, dict] = {}
    for r in sel.sort("group_key").to_dicts():
        by_key.setdefault(r["group_key"], {"group_key": r["group_key"]})[r["measure_id"]] = r
    rows = list(by_key.values())
    p0 = overall.get("inappropriate_order_rate")
    placed = [m for row in rows if (m := row.get("inappropriate_order_rate")) is not None and m["rate"] is not None]
    status = iter(funnel_status([m["rate"] for m in placed], [m["denominator"] for m in placed], p0) if p0 is not None else [])
    for row in rows:
        m = row.get("inappropriate_order_rate")
        row["funnel"] = ""
        row["small"] = m is None or m["rate"] is None
        if p0 is not None and m is not None and m["rate"] is not None:
            row["funnel"] = next(status)
        elif m is not None and m["denominator"]:
            row["funnel"] = "too few orders to place"
        for mid in TABLE_MEASURES:
            row.setdefault(mid, None)
    return rows


def _overall_rates(metrics: pl.DataFrame, period: str) -> dict:
    sel = metrics.filter((pl.col("period") == period) & (pl.col("level") == "overall"))
    out = {}
    for r in sel.to_dicts():
        den = r["denominator"] or 0
        out[r["measure_id"]] = (r["numerator"] / den) if den else None
    return out


def _attrition(con) -> list[dict]:
    """Attrition rows; a step's percentage is of the last step of the same unit at an earlier step number
    (steps sharing a number are siblings, e.g. flagged and review orders both out of evaluated orders)."""
    rows = _rows(_q(con, "SELECT step_order, step, unit, count, kind, note FROM mart_attrition ORDER BY step_order"))
    last: dict[str, tuple[int, int]] = {}  # unit -> (step_order, count) of the latest step
    before: dict[str, tuple[int, int]] = {}  # unit -> the latest step at a lower step_order
    for r in rows:
        r["percent_of_previous"] = None
        r["of_step"] = None
        if r["kind"] != "step":
            continue
        unit = r["unit"]
        if unit in last and last[unit][0] < r["step_order"]:
            before[unit] = last[unit]
        ref = before.get(unit)
        if ref and ref[1]:
            r["percent_of_previous"] = r["count"] / ref[1]
            r["of_step"] = ref[0]
        if unit not in last or last[unit][0] < r["step_order"]:
            last[unit] = (r["step_order"], r["count"])
    return rows


def _hours_frame(con) -> pl.DataFrame:
    """Hours from procedure to first imaging of every case with its department (one query for all pages)."""
    return _q(
        con,
        "SELECT first_imaging_department AS department, hours_to_first_imaging AS h FROM mart_cases "
        "WHERE hours_to_first_imaging IS NOT NULL",
    )


def _hours(hours: pl.DataFrame, department: str | None, threshold: float, name: str, draw) -> dict:
    """The page's timing summary: every case, or the cases whose first imaging order came from ``department``."""
    if department is not None:
        hours = hours.filter(pl.col("department") == department)
    h = hours["h"].cast(pl.Float64).to_numpy()
    if h.size == 0:
        return {"n": 0, "svg": None, "median": None, "q1": None, "q3": None, "under": 0, "threshold": threshold}
    q1, med, q3 = np.percentile(h, [25, 50, 75])
    return {
        "n": int(h.size),
        "median": float(med),
        "q1": float(q1),
        "q3": float(q3),
        "under": int((h < threshold).sum()),
        "threshold": threshold,
        "svg": draw(charts.histogram_svg, h, threshold, "Hours from procedure to first imaging order", name),
    }


def _risk_counts(con) -> list[tuple[str, str, pl.DataFrame]]:
    """(factor, label, counts by department and value) for each factor the procedure log has: one query
    per factor for all pages; ``_risk_factors`` sums or filters it for a page."""
    cols = _columns(con, "mart_index_procedures")
    out = []
    for col, label in RISK_FACTORS:
        if col not in cols:
            continue
        df = _q(
            con,
            f"""SELECT department, coalesce(CAST({col} AS VARCHAR), 'not recorded') AS value,
                       count(*) FILTER (WHERE is_adult) AS denominator,
                       count(*) FILTER (WHERE is_case) AS numerator,
                       count({col}) AS recorded
                FROM mart_index_procedures GROUP BY ALL""",
        )
        out.append((col, label, df))
    return out


def _risk_factors(counts: list[tuple[str, str, pl.DataFrame]], min_cell: int, department: str | None) -> list[dict]:
    out = []
    measures = ["denominator", "numerator", "recorded"]
    for col, label, by_department in counts:
        if department is None:
            df = by_department.group_by("value").agg(pl.col(measures).sum())
        else:
            df = by_department.filter(pl.col("department") == department)
        df = df.select("value", *measures).sort("value")
        if df.height == 0 or df["recorded"].sum() == 0:
            continue  # the log does not hold this factor
        num, den = df["numerator"].to_numpy(), df["denominator"].to_numpy()
        low, high = wilson_interval(num, den)
        sup = (den < min_cell) | ((num > 0) & (num < min_cell))
        rows = []
        for i, r in enumerate(df.to_dicts()):
            ok = not sup[i] and r["denominator"] > 0
            rows.append(
                dict(
                    r,
                    suppressed=bool(sup[i]),
                    rate=(r["numerator"] / r["denominator"]) if ok else None,
                    ci_low=float(low[i]) if ok else None,
                    ci_high=float(high[i]) if ok else None,
                )
            )
        out.append({"factor": col, "label": label, "rows": rows})
    return out


def _case_rows(con, where: str = "", params: list | None = None) -> pl.DataFrame:
    """Audited orders with their case's index date and department, in chart-review order."""
    ocols = _columns(con, "mart_audited_orders")
    extra = ", o.indication_text" if "indication_text" in ocols else ", CAST(NULL AS VARCHAR) AS indication_text"
    return _q(
        con,
        f"""
        SELECT o.case_id, o.patient_key, CAST(c.index_local_date AS VARCHAR) AS index_local_date,
               c.department AS case_department, o.order_id, CAST(o.ordered_at_local AS VARCHAR) AS ordered_at_local,
               o.hours_since_index, o.episode_number, o.order_code, o.order_name, o.study_type,
               o.ordering_department, o.ordering_provider_id, o.status, o.verdict, o.reasons,
               o.secondary_reasons, o.explanation, o.rule_ids, o.citations{extra}
        FROM mart_audited_orders o LEFT JOIN mart_cases c ON c.case_id = o.case_id
        WHERE TRUE {where}
        ORDER BY c.index_at, o.case_id, o.ordered_at NULLS LAST, o.order_id""",
        params,
    )


def _case_list(frame: pl.DataFrame) -> list[dict]:
    """The case-list rows shaped for the template in one Polars pass: every cell a plain string.

    The template only prints these (escaped); no per-row formatting, macro or filter runs in Jinja,
    which keeps a 10k-order list cheap to render. ``first`` marks a case's first order (the case cells
    are printed once per case).
    """
    if frame.height == 0:
        return []
    s = pl.col
    blank = lambda c: s(c).cast(pl.String).fill_null("")  # noqa: E731
    shaped = frame.select(
        (s("case_id") != s("case_id").shift(1)).fill_null(True).alias("first"),
        blank("verdict").alias("verdict"),
        blank("patient_key").alias("patient_key"),
        blank("case_id").alias("case_id"),
        blank("index_local_date").alias("index_date"),
        blank("case_department").alias("case_department"),
        blank("order_id").alias("order_id"),
        s("ordered_at_local").cast(pl.String).str.slice(0, 16).fill_null("no order time").alias("ordered"),
        pl.when(s("hours_since_index").is_null())
        .then(pl.lit(""))
        .otherwise(s("hours_since_index").cast(pl.Float64).round(1).cast(pl.String))
        .alias("hours"),
        blank("episode_number").alias("episode"),
        pl.concat_str([blank("order_code"), blank("order_name")], separator=" ").str.strip_chars().alias("study"),
        s("study_type").cast(pl.String).fill_null("unmapped code").str.replace_all("_", " ").alias("study_type"),
        blank("indication_text").alias("indication"),
        blank("ordering_department").alias("department"),
        blank("ordering_provider_id").alias("provider"),
        blank("status").alias("status"),
        blank("explanation").alias("why"),
        blank("secondary_reasons").str.replace_all("|", ", ", literal=True).str.replace_all("_", " ").alias("also"),
        blank("rule_ids").str.split("|").list.eval(pl.element().filter(pl.element() != "")).alias("rules"),
    )
    row = namedtuple("CaseRow", shaped.columns)  # attribute access: Jinja's fast path (a dict would miss getattr first)
    return [row(*r) for r in shaped.iter_rows()]


CASE_BLOCK_MARK = "<!--case-->"


def _blocks(env: jinja2.Environment, template: str, keys: list, **context) -> dict[str, markupsafe.Markup]:
    """Render a partial that prints ``mark`` before each block and return the blocks by ``keys``."""
    if not keys:
        return {}
    html = env.get_template(template).render(**context, mark=CASE_BLOCK_MARK)
    parts = html.split(CASE_BLOCK_MARK)[1:]
    if len(parts) != len(keys):
        raise ReportError(f"{template}: {len(parts)} blocks rendered for {len(keys)} keys")
    return {k: markupsafe.Markup(part) for k, part in zip(keys, parts, strict=True)}


def _case_blocks(env: jinja2.Environment, frame: pl.DataFrame) -> dict[str, markupsafe.Markup]:
    """Each case's rows of the case-list table as HTML, rendered once and shared by every page
    (the hospital report and each department page list the same case the same way)."""
    rows = _case_list(frame)
    return _blocks(env, "_case_rows.html", [r.case_id for r in rows if r.first], cases=rows)


def _provider_blocks(env: jinja2.Environment, table: list[dict]) -> dict[str, markupsafe.Markup]:
    """Each provider's row of the provider table as HTML, rendered once: a department page lists its
    providers' rows exactly as the hospital report does (a row depends on the provider and the overall rate only)."""
    return _blocks(env, "_provider_rows.html", [r["group_key"] for r in table], providers=table)


def _cited_rules(frame: pl.DataFrame, rules: pl.DataFrame) -> list[dict]:
    """The rules the listed orders cite, with their citation (the case list's references)."""
    if frame.height == 0:
        return []
    used = set(frame["rule_ids"].drop_nulls().str.split("|").explode().to_list())
    return [r for r in rules.to_dicts() if r["rule_id"] in used]


def _rejects(con) -> list[dict]:
    # counts only: a rejected value may itself be a raw patient id, so values are never shown
    if not _has_table(con, "load_rejects"):
        return []
    return _rows(
        _q(
            con,
            """SELECT table_name, action, reason, count(*) AS n FROM load_rejects
                            GROUP BY ALL ORDER BY table_name, action, reason""",
        )
    )


def _g(value) -> str:
    """A config number in words: 72.0 -> '72', 0.5 -> '0.5'."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _methods(con, run_info: dict, min_cell: int, rules: pl.DataFrame) -> dict:
    cfg = run_info["config"]
    verdicts = (
        _rows(_q(con, "SELECT verdict, precedence, description FROM ref_verdicts ORDER BY precedence"))
        if _has_table(con, "ref_verdicts")
        else []
    )
    dq = [
        {
            k: d.get(k)
            for k in ("check_id", "table", "severity", "status", "violated_count", "denominator", "percent", "description")
        }
        for d in run_info.get("data_quality", [])
    ]
    status_counts: dict[str, int] = {}
    for d in dq:
        status_counts[str(d["status"])] = status_counts.get(str(d["status"]), 0) + 1
    rejects_info = run_info.get("rejects") or {}
    rejected_rows = rejects_info.get("rejected_rows") or {}
    return {
        "case": {k: _g(v) for k, v in cfg.get("case", {}).items()},
        "site_timezone": cfg.get("site_timezone", ""),
        "config_json": json.dumps(cfg, indent=2, sort_keys=True, default=str),
        "code_set_versions": sorted((str(k), str(v)) for k, v in run_info.get("code_set_versions", {}).items()),
        "rules": rules.to_dicts(),
        "verdicts": verdicts,
        "data_quality": dq,
        "dq_counts": sorted(status_counts.items()),
        "rejects": _rejects(con),
        "rejected_rows": sorted((str(k), int(v)) for k, v in rejected_rows.items()),
        "nulled_values": int(rejects_info.get("nulled_values") or 0),
        # coded values no map knows (status words ...): vocabulary, not ids; a column with more
        # distinct unknown values than value_maps.MAX_NAMED_VALUES arrives here counted, not listed
        "unknown_values": run_info.get("unknown_values", []),
        "left_out": run_info.get("left_out", []),
        "inputs": run_info.get("inputs", []),
        "min_cell_count": min_cell,
        "measures": [(m, label, d) for m, label, d in MAIN_MEASURES + [REVIEW_MEASURE]],
    }


# ----------------------------------------------------------------------------- pages


def _department_list(con, metrics: pl.DataFrame, period: str) -> list[str]:
    """Departments with figures in the headline period or orders in the case list (not every trend month's)."""
    names = set(
        metrics.filter((pl.col("level") == "department") & (pl.col("period") == period))["group_key"].drop_nulls().to_list()
    )
    names |= set(
        _q(con, "SELECT DISTINCT ordering_department AS d FROM mart_audited_orders WHERE ordering_department IS NOT NULL")[
            "d"
        ].to_list()
    )
    return sorted(names)


def _funnel_points(metrics: pl.DataFrame, period: str, providers: list[str] | None) -> pl.DataFrame:
    """Every provider with evaluated orders; ``small`` marks those too few to rate (drawn hollow, not rated)."""
    pts = metrics.filter(
        (pl.col("period") == period)
        & (pl.col("level") == "provider")
        & (pl.col("measure_id") == "inappropriate_order_rate")
        & (pl.col("denominator") > 0)
    )
    if providers is not None:
        pts = pts.filter(pl.col("group_key").is_in(providers))
    return pts.select(
        "group_key",
        "numerator",
        "denominator",
        (pl.col("numerator") / pl.col("denominator")).alias("rate"),
        (pl.col("suppressed") | pl.col("rate").is_null()).alias("small"),
    )


def _page_context(
    con,
    run_info,
    metrics,
    rules,
    min_cell,
    period,
    window,
    *,
    department: str | None,
    departments: list[dict],
    overall_rates: dict,
    all_cases: pl.DataFrame,
    shared: dict,
    draw,
) -> dict:
    """One page's template values, but for what every page takes its part of (``_page`` adds those).

    Charts are Futures (``draw`` submits them); ``shared`` holds the department providers and the
    hours of every case (``_shared``); ``case_ids``, ``provider_keys`` (None: all) and ``department``
    say which rows of the shared case list, provider table and risk factors ``_page`` puts in.
    """
    threshold = float(run_info["config"].get("case", {}).get("premature_hours", 72.0))
    if department is None:
        level, key, name = "overall", "all", "overall"
        providers = None
        case_frame = all_cases
    else:
        level, key, name = "department", department, "dept"
        providers = shared["department_providers"].get(department, [])
        # every order of each case that has an order from this department (the reviewer sees the whole case)
        ids = all_cases.filter(pl.col("ordering_department") == department)["case_id"].unique()
        case_frame = all_cases.filter(pl.col("case_id").is_in(ids.implode()))
    dept_rows = _group_table(metrics, period, "department", None if department is None else [department], overall_rates)
    for row in dept_rows:
        row["slug"] = slugify(row["group_key"])
    funnel_points = _funnel_points(metrics, period, providers)
    dept_chart_rows = metrics.filter(
        (pl.col("period") == period) & (pl.col("level") == "department") & (pl.col("measure_id") == "inappropriate_order_rate")
    )
    return {
        "scope": {"kind": "department" if department else "hospital", "name": department or "All departments"},
        "period": period,
        "headline": _headline(metrics, period, level, key, rules),
        "trend": _trend(metrics, level, key, window, name, draw),
        "departments": dept_rows,
        "department_chart": None
        if department
        else draw(
            charts.interval_svg,
            dept_chart_rows,
            "Inappropriate-order rate by department (alphabetical)",
            "dept-rates",
            overall_rates.get("inappropriate_order_rate"),
        ),
        "funnel_svg": draw(
            charts.funnel_svg,
            funnel_points,
            overall_rates.get("inappropriate_order_rate"),
            "Providers: inappropriate-order rate (funnel plot)",
            f"{name}-funnel",
        ),
        "n_funnel": funnel_points.height,
        "n_small_providers": int(funnel_points["small"].sum()) if funnel_points.height else 0,
        "attrition": _attrition(con) if department is None else [],
        "hours": _hours(shared["hours"], department, threshold, f"{name}-hours", draw),
        "department": department,
        "provider_keys": providers,
        "case_ids": case_frame["case_id"].unique(maintain_order=True).to_list(),
        "cited_rules": _cited_rules(case_frame, rules),
        "n_cases": case_frame["case_id"].n_unique() if case_frame.height else 0,
        "n_orders": case_frame.height,
        "department_links": departments,
    }


def _page_metrics(metrics: pl.DataFrame, period: str) -> pl.DataFrame:
    """The feed rows the pages read: hospital and department rows of every period, and the provider rows
    of the table measures in the headline period (a tenth of the feed at 10M orders, filtered once
    instead of on every page)."""
    level = pl.col("level")
    provider = (level == "provider") & (pl.col("period") == period) & pl.col("measure_id").is_in(TABLE_MEASURES)
    return metrics.filter(level.is_in(["overall", "department"]) | provider)


def _shared(con) -> dict:
    """What the page contexts filter per page: every department's providers and every case's hours
    to first imaging (one query each, instead of one per page)."""
    pairs = _q(
        con,
        "SELECT DISTINCT ordering_department AS d, ordering_provider_id AS p FROM mart_audited_orders "
        "WHERE ordering_department IS NOT NULL AND ordering_provider_id IS NOT NULL",
    )
    department_providers = {d: sorted(g["p"].to_list()) for (d,), g in pairs.partition_by("d", as_dict=True).items()}
    return {"department_providers": department_providers, "hours": _hours_frame(con)}


def _common(run_info: dict, min_cell: int) -> dict:
    return {
        "run": {k: run_info.get(k) for k in ("run_id", "software_version", "rule_set_version", "period", "started_at")},
        "demo_key": bool(run_info.get("pseudonym_key_is_demo")),
        "min_cell_count": min_cell,
        "schema_version": SCHEMA_VERSION,
    }


# ----------------------------------------------------------------------------- files


def _write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")
    return path


def _write_feed(out_dir: Path, metrics: pl.DataFrame, run_info: dict, period: str, min_cell: int) -> list[Path]:
    csv_path, pq_path, json_path = out_dir / "metrics.csv", out_dir / "metrics.parquet", out_dir / "metrics.json"
    formula_guard.neutralised(metrics).write_csv(csv_path, float_precision=6)  # the Parquet keeps the raw text
    metrics.write_parquet(pq_path, compression="zstd", statistics=False)
    headline = metrics.filter((pl.col("period") == period) & (pl.col("level") == "overall"))
    summary = {
        "schema_version": SCHEMA_VERSION,
        # no run id or time here: the feed is data and a rerun must give the same bytes (run.json has them)
        "software_version": run_info["software_version"],
        "rule_set_version": run_info["rule_set_version"],
        "period": run_info["period"],
        "headline_period": period,
        "min_cell_count": min_cell,
        "interval": "Wilson score, 95%",
        "rows": metrics.height,
        "columns": {c: str(t) for c, t in metrics.schema.items()},
        "periods": sorted(metrics["period"].unique().drop_nulls().to_list()),
        "headline": headline.drop("schema_version").to_dicts(),
        "files": {"csv": "metrics.csv", "parquet": "metrics.parquet"},
    }
    _write_text(json_path, json.dumps(summary, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return [csv_path, pq_path, json_path]


def write_reid_file(con, reid_file: Path, out_dir: Path) -> Path:
    """Crosswalk patient_key -> patient_id for the case patients; readable by its owner alone (0600)."""
    reid_file = Path(reid_file)
    if reid_file.resolve().is_relative_to(out_dir.resolve()):
        raise ReportError(
            f"--reid-file {reid_file} is inside the output folder {out_dir}; the crosswalk holds "
            "raw patient ids and must be written elsewhere (e.g. a restricted folder)"
        )
    rows = con.execute("""SELECT DISTINCT c.patient_key, p.patient_id FROM mart_cases c
                          JOIN src_procedures p ON p.procedure_id = c.index_procedure_id
                          ORDER BY 1, 2""").fetchall()
    reid_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(reid_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when the file already existed with wider permissions
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["patient_key", "patient_id"])
        w.writerows((key, formula_guard.neutralise(patient_id)) for key, patient_id in rows)
    return reid_file


def find_chromium() -> str | None:
    override = os.environ.get("ORDER_AUDIT_CHROMIUM")
    if override:
        return override
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def pdf_engine() -> str:
    """'chromium' or 'weasyprint', whichever can print here; else a ReportError saying what to install."""
    if find_chromium():
        return "chromium"
    try:
        import weasyprint  # noqa: F401, PLC0415 - optional engine
    except (ImportError, OSError):
        raise ReportError(
            "--pdf needs a PDF engine: install Chromium (Debian/Ubuntu: "
            "`apt-get install -y chromium`) or WeasyPrint with its system libraries "
            "(`pip install weasyprint` and `apt-get install -y libpango-1.0-0 libpangoft2-1.0-0`), "
            "or set ORDER_AUDIT_CHROMIUM to a Chromium/Chrome binary; or run without --pdf"
        ) from None
    return "weasyprint"


def write_pdf(html_path: Path, pdf_path: Path) -> Path:
    """The same HTML as PDF: headless Chromium when installed, else WeasyPrint when importable."""
    if pdf_engine() == "chromium":
        chromium = find_chromium()
        with tempfile.TemporaryDirectory(prefix="order-audit-chromium-") as profile:
            cmd = [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                "--no-pdf-header-footer",
                f"--print-to-pdf={pdf_path}",
                html_path.resolve().as_uri(),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        if proc.returncode != 0 or not pdf_path.is_file():
            raise ReportError(
                f"Chromium could not print {html_path.name} to PDF (exit {proc.returncode}): {proc.stderr.strip()[-500:]}"
            )
        return pdf_path
    import weasyprint  # noqa: PLC0415 - optional engine, checked by pdf_engine()

    weasyprint.HTML(filename=str(html_path)).write_pdf(str(pdf_path))
    return pdf_path


def render_outputs(
    con: duckdb.DuckDBPyConnection,
    out_dir: Path,
    run_info: dict,
    metrics: pl.DataFrame,
    *,
    pdf: bool = False,
    reid_file: Path | None = None,
    min_cell_count: int = 11,
    site: bool | None = None,
    chart_process: bool | None = None,
) -> list[Path]:
    """Write every report and feed file into ``out_dir``; return the paths written.

    ``site``: the folder is one month of a backfill (``OUT/<YYYY-MM>/``): its pages link the
    top-level ``OUT/index.html`` and that index is refreshed (``render_site_index``). ``None``
    infers it from the staging folder's name (``.<YYYY-MM>.staging-<pid>``).
    ``chart_process``: draw the charts in a worker process (``charts.ChartPool``); ``None`` does so
    when the case list has ``CHART_PROCESS_MIN_ORDERS`` orders or more and two CPUs are available.
    """
    missing = [k for k in RUN_INFO_KEYS if k not in run_info]
    if missing:
        raise KeyError(f"run_info lacks {', '.join(missing)}")
    out_dir = Path(out_dir)
    if reid_file is not None and Path(reid_file).resolve().is_relative_to(out_dir.resolve()):
        raise ReportError(
            f"--reid-file {reid_file} is inside the output folder {out_dir}; the crosswalk holds "
            "raw patient ids and must be written elsewhere (e.g. a restricted folder)"
        )
    if pdf:
        pdf_engine()  # fail before any work when no engine can print
    out_dir.mkdir(parents=True, exist_ok=True)
    if chart_process is None:
        n_orders = con.execute("SELECT count(*) FROM mart_audited_orders").fetchall()[0][0]
        chart_process = n_orders >= CHART_PROCESS_MIN_ORDERS and charts.cpus_available() > 1
    written: list[Path] = []
    # three lines of work at once: the charts in a worker process (ChartPool, started first: it takes
    # a while to start), the workbook and the feed on a thread (mostly Polars, zlib and file writes,
    # which release the GIL), the pages here
    with charts.ChartPool(process=chart_process) as pool, ThreadPoolExecutor(1, thread_name_prefix="render-files") as files:
        env = make_env()
        rules = _q(
            con,
            "SELECT rule_id, reason_code, verdict, explanation, citation FROM ref_rules "
            f"ORDER BY {'rule_order' if 'rule_order' in _columns(con, 'ref_rules') else 'rule_id'}",
        )
        period, trend_end = _periods(metrics, str(run_info["period"]))
        bounds = _audit_period(con)
        months_n = int(run_info["config"].get("reporting", {}).get("trend_months", 24))
        window = _trend_months(metrics, trend_end, months_n, bounds.get("trend_first_month"))
        overall_rates = _overall_rates(metrics, period)
        common = _common(run_info, min_cell_count)
        common["period_label"] = _period_label(period, metrics, bounds, trend_end)
        if site is None:  # a backfill stages each month as .<YYYY-MM>.staging-<pid> beside its siblings
            site = bool(_MONTH.match(period)) and out_dir.name.startswith(f".{period}.staging-")
        common["site"] = bool(site)
        departments = [{"name": d, "slug": slugify(d)} for d in _department_list(con, metrics, period)]
        all_cases = _case_rows(con)
        book = files.submit(workbook.write_case_list, out_dir / "case_list.xlsx", all_cases, rules, run_info)
        feed = files.submit(_write_feed, out_dir, metrics, run_info, period, min_cell_count)

        # the site-wide page and every department page differ only in the department they filter to;
        # every page's figures first, so that the worker draws the charts while the rest is prepared
        page_metrics = _page_metrics(metrics, period)
        page_context = functools.partial(
            _page_context,
            con,
            run_info,
            page_metrics,
            rules,
            min_cell_count,
            period,
            window,
            departments=departments,
            overall_rates=overall_rates,
            all_cases=all_cases,
            shared=_shared(con),
            draw=pool.submit,
        )
        ctx = page_context(department=None)
        dept_ctx = [page_context(department=d["name"]) for d in departments]
        # rendered once, each page takes its part
        parts = {
            "case_blocks": _case_blocks(env, all_cases),
            "provider_blocks": _provider_blocks(env, _group_table(page_metrics, period, "provider", None, overall_rates)),
            "risk_counts": _risk_counts(con),
            "min_cell": min_cell_count,
        }
        methods = _methods(con, run_info, min_cell_count, rules)

        report_tpl = env.get_template("report.html")
        report = report_tpl.render(**common, **_page(ctx, parts), methods=methods, root="")
        written.append(_write_text(out_dir / "report.html", report))
        dept_counts = []
        for d, dctx in zip(departments, dept_ctx, strict=True):
            dept_counts.append(dict(d, n_cases=dctx["n_cases"], n_orders=dctx["n_orders"]))
            html = report_tpl.render(**common, **_page(dctx, parts), methods=None, root="../")
            written.append(_write_text(out_dir / "departments" / f"{d['slug']}.html", html))
        written += feed.result()
        written.append(book.result())

    months = _month_summary(metrics, window)
    index = env.get_template("index.html").render(
        **common, period=period, departments=dept_counts, months=months, headline=ctx["headline"], pdf=pdf
    )
    written.append(_write_text(out_dir / "index.html", index))
    if pdf:
        written.append(write_pdf(out_dir / "report.html", out_dir / "report.pdf"))
    if reid_file is not None:
        written.append(write_reid_file(con, Path(reid_file), out_dir))
    if site:
        # keep the backfill's top-level index current, this month included before it is published
        render_site_index(out_dir.parent, pending={period: out_dir})
    return written


def _page(ctx: dict, parts: dict) -> dict:
    """A page context ready for the template: charts drawn (Futures resolved), and the page's part of
    the case list, provider table and risk factors in place."""
    out = dict(ctx)
    out["trend"] = [dict(t, svg=t["svg"].result()) for t in ctx["trend"]]
    out["hours"] = dict(ctx["hours"], svg=ctx["hours"]["svg"] and ctx["hours"]["svg"].result())
    for key in ("department_chart", "funnel_svg"):
        out[key] = ctx[key] and ctx[key].result()
    out["case_blocks"] = [parts["case_blocks"][c] for c in out.pop("case_ids")]
    keys = out.pop("provider_keys")
    listed = None if keys is None else set(keys)
    out["provider_rows"] = [row for p, row in parts["provider_blocks"].items() if listed is None or p in listed]
    out["risk_factors"] = _risk_factors(parts["risk_counts"], parts["min_cell"], out.pop("department"))
    return out


def _audit_period(con) -> dict:
    """The run's period bounds from ``audit_period`` (first_month, last_month, trend_first_month); {} if unset."""
    if not _has_table(con, "audit_period"):
        return {}
    rows = _rows(_q(con, "SELECT * FROM audit_period LIMIT 1"))
    return {k: v for k, v in rows[0].items() if v is not None} if rows else {}


def _period_label(period: str, metrics: pl.DataFrame, bounds: dict, trend_end: str | None) -> str:
    """What the period means in words: a month, or 'all months, first to last'."""
    if _MONTH.match(period):
        return period
    first, last = bounds.get("first_month"), bounds.get("last_month")
    if not (first and last):
        months = sorted(p for p in metrics["period"].unique().drop_nulls().to_list() if _MONTH.match(p))
        if not months:
            return period
        first, last = months[0], trend_end or months[-1]
    return f"all months, {first} to {last}" if first != last else first


def _month_summary(metrics: pl.DataFrame, window: list[str]) -> list[dict]:
    """Overall monthly headline numbers for the index page (each month of the trend, newest first)."""
    if not window:
        return []
    sel = metrics.filter(
        (pl.col("level") == "overall")
        & pl.col("period").is_in(window)
        & pl.col("measure_id").is_in(["inappropriate_order_rate", "first_imaging_right_study"])
    )
    out: dict[str, dict] = {
        m: {"period": m, "inappropriate_order_rate": None, "first_imaging_right_study": None} for m in reversed(window)
    }
    for r in sel.to_dicts():
        out[r["period"]][r["measure_id"]] = r
    return list(out.values())


# ----------------------------------------------------------------------------- site index

SITE_INDEX_TEMPLATE = "site_index.html"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def render_site_index(out_root: Path, pending: dict[str, Path] | None = None) -> Path:
    """Write ``out_root/index.html`` listing every month folder (``YYYY-MM/index.html``) present.

    For a backfill (``--from/--to``, one folder per month under ``--out``). Call it after each month
    is published, or once after all; it is cheap (reads each month's ``metrics.json``) and idempotent.
    ``pending`` maps a month to the folder it is staged in (listed although not yet published).
    The page is written to a temporary file and renamed into place.
    """
    out_root = Path(out_root)
    found: dict[str, Path] = {}
    if out_root.is_dir():
        for entry in out_root.iterdir():
            if _MONTH.match(entry.name) and (entry / "index.html").is_file():
                found[entry.name] = entry
    found.update(pending or {})
    months = []
    for month in sorted(found, reverse=True):
        folder = found[month]
        summary = _read_json(folder / "metrics.json")
        head = {r.get("measure_id"): r for r in summary.get("headline", []) if r.get("level") == "overall"}
        departments = sorted(p.name for p in (folder / "departments").glob("*.html")) if (folder / "departments").is_dir() else []
        months.append(
            {
                "month": month,
                "run_id": _read_json(folder / "run.json").get("run_id", ""),
                "pdf": (folder / "report.pdf").is_file(),
                "n_departments": len(departments),
                "inappropriate_order_rate": head.get("inappropriate_order_rate"),
                "first_imaging_right_study": head.get("first_imaging_right_study"),
            }
        )
    html = make_env().get_template(SITE_INDEX_TEMPLATE).render(months=months, schema_version=SCHEMA_VERSION)
    target = out_root / "index.html"
    out_root.mkdir(parents=True, exist_ok=True)
    tmp = out_root / f".index.html.tmp-{os.getpid()}"
    tmp.write_text(html, encoding="utf-8", newline="\n")
    os.replace(tmp, target)
    return target
