"""Render the monthly report, department pages, index, metrics feed, case list workbook and PDF.

Jinja2 runs with ``autoescape=True`` and ``StrictUndefined``: every value is escaped and a
missing variable is an error. The only ``|safe`` values are matplotlib's SVG charts.
Only ``patient_key`` (the keyed pseudonym) is ever read for output; raw patient ids are read
solely for the re-identification crosswalk, written outside the output folder, mode 0600.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import duckdb
import jinja2
import numpy as np
import polars as pl

from pipeline import charts, workbook
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
    )
    env.filters["pct"] = _pct
    env.filters["num"] = _num
    return env


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


def _trend(metrics: pl.DataFrame, level: str, key: str, end: str | None, months: int, name: str) -> list[dict]:
    out = []
    if end is None:
        return out
    base = metrics.filter(
        (pl.col("level") == level)
        & (pl.col("group_key") == key)
        & pl.col("period").str.contains(r"^\d{4}-\d{2}$")
        & (pl.col("period") <= end)
    )
    for measure_id, label in TREND_MEASURES:
        monthly = base.filter(pl.col("measure_id") == measure_id).sort("period").tail(months)
        if monthly.height == 0:
            continue
        pc = p_chart(monthly)
        svg = charts.p_chart_svg(pc, f"{label}: p-chart, {pc.height} months", f"{name}-{measure_id}")
        out.append(
            {
                "measure_id": measure_id,
                "label": label,
                "svg": svg,
                "n_months": pc.height,
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
    rows: dict[str, dict] = {}
    for r in sel.sort("group_key").to_dicts():
        rows.setdefault(r["group_key"], {"group_key": r["group_key"]})[r["measure_id"]] = r
    p0 = overall.get("inappropriate_order_rate")
    for row in rows.values():
        m = row.get("inappropriate_order_rate")
        row["funnel"] = ""
        if p0 is not None and m is not None and m["rate"] is not None:
            row["funnel"] = funnel_status([m["rate"]], [m["denominator"]], p0)[0]
        for mid in TABLE_MEASURES:
            row.setdefault(mid, None)
    return list(rows.values())


def _overall_rates(metrics: pl.DataFrame, period: str) -> dict:
    sel = metrics.filter((pl.col("period") == period) & (pl.col("level") == "overall"))
    out = {}
    for r in sel.to_dicts():
        den = r["denominator"] or 0
        out[r["measure_id"]] = (r["numerator"] / den) if den else None
    return out


def _attrition(con) -> list[dict]:
    rows = _rows(_q(con, "SELECT step_order, step, unit, count, kind, note FROM mart_attrition ORDER BY step_order"))
    prev: dict[str, int] = {}
    for r in rows:
        r["percent_of_previous"] = None
        if r["kind"] == "step":
            before = prev.get(r["unit"])
            if before:
                r["percent_of_previous"] = r["count"] / before
            prev[r["unit"]] = r["count"]
    return rows


def _hours(con, threshold: float, where: str, params: list, name: str) -> dict:
    h = (
        _q(con, f"SELECT hours_to_first_imaging AS h FROM mart_cases WHERE hours_to_first_imaging IS NOT NULL {where}", params)[
            "h"
        ]
        .cast(pl.Float64)
        .to_numpy()
    )
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
        "svg": charts.histogram_svg(h, threshold, "Hours from procedure to first imaging order", name),
    }


def _risk_factors(con, min_cell: int, where: str, params: list) -> list[dict]:
    cols = _columns(con, "mart_index_procedures")
    out = []
    for col, label in RISK_FACTORS:
        if col not in cols:
            continue
        df = _q(
            con,
            f"""SELECT coalesce(CAST({col} AS VARCHAR), 'not recorded') AS value,
                                count(*) FILTER (WHERE is_adult) AS denominator,
                                count(*) FILTER (WHERE is_case) AS numerator,
                                count({col}) AS recorded
                         FROM mart_index_procedures WHERE TRUE {where}
                         GROUP BY ALL ORDER BY value""",
            params,
        )
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
    rows = frame.to_dicts()
    for r in rows:
        r["rule_id_list"] = [x for x in (r["rule_ids"] or "").split("|") if x]
    return rows


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


def _methods(con, run_info: dict, min_cell: int, rules: pl.DataFrame) -> dict:
    cfg = run_info["config"]
    verdicts = (
        _rows(_q(con, "SELECT verdict, precedence, description FROM ref_verdicts ORDER BY precedence"))
        if _has_table(con, "ref_verdicts")
        else []
    )
    dq = [
        {k: d.get(k) for k in ("check_id", "severity", "status", "violated_count", "denominator", "percent", "description")}
        for d in run_info.get("data_quality", [])
    ]
    return {
        "case": cfg.get("case", {}),
        "site_timezone": cfg.get("site_timezone", ""),
        "config_json": json.dumps(cfg, indent=2, sort_keys=True, default=str),
        "code_set_versions": sorted((str(k), str(v)) for k, v in run_info.get("code_set_versions", {}).items()),
        "rules": rules.to_dicts(),
        "verdicts": verdicts,
        "data_quality": dq,
        "rejects": _rejects(con),
        "inputs": run_info.get("inputs", []),
        "min_cell_count": min_cell,
        "measures": [(m, label, d) for m, label, d in MAIN_MEASURES + [REVIEW_MEASURE]],
    }


# ----------------------------------------------------------------------------- pages


def _department_list(con, metrics: pl.DataFrame) -> list[str]:
    names = set(metrics.filter(pl.col("level") == "department")["group_key"].drop_nulls().to_list())
    names |= set(
        _q(con, "SELECT DISTINCT ordering_department AS d FROM mart_audited_orders WHERE ordering_department IS NOT NULL")[
            "d"
        ].to_list()
    )
    return sorted(names)


def _page_context(
    con,
    run_info,
    metrics,
    rules,
    min_cell,
    period,
    trend_end,
    *,
    department: str | None,
    departments: list[dict],
    overall_rates: dict,
) -> dict:
    months = int(run_info["config"].get("reporting", {}).get("trend_months", 24))
    threshold = float(run_info["config"].get("case", {}).get("premature_hours", 72.0))
    if department is None:
        level, key, name = "overall", "all", "overall"
        providers = None
        hours_where, hours_params = "", []
        rf_where, rf_params = "", []
        case_frame = _case_rows(con)
    else:
        level, key, name = "department", department, "dept"
        providers = sorted(
            _q(
                con,
                "SELECT DISTINCT ordering_provider_id AS p FROM mart_audited_orders "
                "WHERE ordering_department = ? AND ordering_provider_id IS NOT NULL",
                [department],
            )["p"].to_list()
        )
        hours_where, hours_params = "AND first_imaging_department = ?", [department]
        rf_where, rf_params = "AND department = ?", [department]
        case_frame = _case_rows(
            con, "AND o.case_id IN (SELECT case_id FROM mart_audited_orders WHERE ordering_department = ?)", [department]
        )
    dept_rows = _group_table(metrics, period, "department", None if department is None else [department], overall_rates)
    for row in dept_rows:
        row["slug"] = slugify(row["group_key"])
    prov_rows = _group_table(metrics, period, "provider", providers, overall_rates)
    funnel_points = metrics.filter(
        (pl.col("period") == period)
        & (pl.col("level") == "provider")
        & (pl.col("measure_id") == "inappropriate_order_rate")
        & pl.col("rate").is_not_null()
    )
    if providers is not None:
        funnel_points = funnel_points.filter(pl.col("group_key").is_in(providers))
    dept_chart_rows = metrics.filter(
        (pl.col("period") == period) & (pl.col("level") == "department") & (pl.col("measure_id") == "inappropriate_order_rate")
    )
    return {
        "scope": {"kind": "department" if department else "hospital", "name": department or "All departments"},
        "period": period,
        "headline": _headline(metrics, period, level, key, rules),
        "trend": _trend(metrics, level, key, trend_end, months, name),
        "departments": dept_rows,
        "providers": prov_rows,
        "department_chart": None
        if department
        else charts.interval_svg(
            dept_chart_rows,
            "Inappropriate-order rate by department (alphabetical)",
            "dept-rates",
            overall_rates.get("inappropriate_order_rate"),
        ),
        "funnel_svg": charts.funnel_svg(
            funnel_points,
            overall_rates.get("inappropriate_order_rate"),
            "Providers: inappropriate-order rate (funnel plot)",
            f"{name}-funnel",
        ),
        "n_small_providers": sum(
            1 for r in prov_rows if r["inappropriate_order_rate"] is not None and r["inappropriate_order_rate"]["suppressed"]
        ),
        "attrition": _attrition(con) if department is None else [],
        "hours": _hours(con, threshold, hours_where, hours_params, f"{name}-hours"),
        "risk_factors": _risk_factors(con, min_cell, rf_where, rf_params),
        "cases": _case_list(case_frame),
        "n_cases": case_frame["case_id"].n_unique() if case_frame.height else 0,
        "department_links": departments,
    }


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
    metrics.write_csv(csv_path, float_precision=6)
    metrics.write_parquet(pq_path, compression="zstd", statistics=False)
    headline = metrics.filter((pl.col("period") == period) & (pl.col("level") == "overall"))
    summary = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_info["run_id"],
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
        w.writerows(rows)
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
) -> list[Path]:
    """Write every report and feed file into ``out_dir``; return the paths written."""
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
    env = make_env()
    rules = _q(
        con,
        "SELECT rule_id, reason_code, verdict, explanation, citation FROM ref_rules "
        f"ORDER BY {'rule_order' if 'rule_order' in _columns(con, 'ref_rules') else 'rule_id'}",
    )
    period, trend_end = _periods(metrics, str(run_info["period"]))
    overall_rates = _overall_rates(metrics, period)
    common = _common(run_info, min_cell_count)
    departments = [{"name": d, "slug": slugify(d)} for d in _department_list(con, metrics)]
    written: list[Path] = []

    ctx = _page_context(
        con,
        run_info,
        metrics,
        rules,
        min_cell_count,
        period,
        trend_end,
        department=None,
        departments=departments,
        overall_rates=overall_rates,
    )
    methods = _methods(con, run_info, min_cell_count, rules)
    report = env.get_template("report.html").render(**common, **ctx, methods=methods, root="")
    written.append(_write_text(out_dir / "report.html", report))

    for d in departments:
        dctx = _page_context(
            con,
            run_info,
            metrics,
            rules,
            min_cell_count,
            period,
            trend_end,
            department=d["name"],
            departments=departments,
            overall_rates=overall_rates,
        )
        html = env.get_template("report.html").render(**common, **dctx, methods=None, root="../")
        written.append(_write_text(out_dir / "departments" / f"{d['slug']}.html", html))

    months = _month_summary(metrics, trend_end)
    index = env.get_template("index.html").render(
        **common, period=period, departments=departments, months=months, headline=ctx["headline"], pdf=pdf
    )
    written.append(_write_text(out_dir / "index.html", index))

    written += _write_feed(out_dir, metrics, run_info, period, min_cell_count)
    case_frame = _case_rows(con)
    written.append(workbook.write_case_list(out_dir / "case_list.xlsx", case_frame, rules, run_info))
    if pdf:
        written.append(write_pdf(out_dir / "report.html", out_dir / "report.pdf"))
    if reid_file is not None:
        written.append(write_reid_file(con, Path(reid_file), out_dir))
    return written


def _month_summary(metrics: pl.DataFrame, trend_end: str | None) -> list[dict]:
    """Overall monthly headline numbers for the index page (each month of the feed)."""
    if trend_end is None:
        return []
    sel = metrics.filter(
        (pl.col("level") == "overall")
        & pl.col("period").str.contains(r"^\d{4}-\d{2}$")
        & (pl.col("period") <= trend_end)
        & pl.col("measure_id").is_in(["inappropriate_order_rate", "first_imaging_right_study"])
    )
    out: dict[str, dict] = {}
    for r in sel.sort("period", descending=True).to_dicts():
        out.setdefault(r["period"], {"period": r["period"], "inappropriate_order_rate": None, "first_imaging_right_study": None})[
            r["measure_id"]
        ] = r
    return list(out.values())
