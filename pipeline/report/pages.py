"""What each page of the report shows: the period in words, the values every page shares, and one page's
context (the hospital page or a department's), its charts among them (SVG written from the numbers, ``charts``).
``render`` renders them through the templates and writes the files."""

from __future__ import annotations

import functools

import polars as pl

from pipeline import db
from pipeline.maturity import Maturity
from pipeline.months import MONTH, all_months
from pipeline.report import caselist, charts, feed, sections
from pipeline.report.audit_sections import section_rows
from pipeline.report.feed import SCHEMA_VERSION
from pipeline.report.names import department_names, printed_department, printed_named, rule_labels, slugify
from pipeline.report.paper import paper_of
from pipeline.report.spec import ReportSpec

# ----------------------------------------------------------------------------- periods


def periods(metrics: pl.DataFrame, run_period: str) -> tuple[str, str | None]:
    """(headline period label in the feed, last month of the trend)."""
    present = set(metrics["period"].unique().to_list())
    months = sorted(p for p in present if p and MONTH.match(p))
    last = run_period.split("..")[-1] if ".." in run_period else run_period
    trend_end = last if MONTH.match(last or "") else (months[-1] if months else None)
    if run_period in present:
        return run_period, trend_end
    if "all" in present:
        return "all", trend_end
    return (trend_end or run_period), trend_end


def audit_period(con) -> dict:
    """The run's period bounds from ``audit_period`` (first_month, last_month, trend_first_month); {} if unset."""
    if not db.has_table(con, "audit_period"):
        return {}
    rows = db.frame(con, "SELECT * FROM audit_period LIMIT 1").to_dicts()
    return {k: v for k, v in rows[0].items() if v is not None} if rows else {}


def period_label(period: str, metrics: pl.DataFrame, bounds: dict, trend_end: str | None, stated: str | None = None) -> str:
    """What the period means in words: a month, or 'all months, first to last'. ``stated``: the run's own words for
    it (run.json ``status.period``, ``period_status.build``: the months of the audit's cases), which the log and the
    site index print; the pages print the same (they read the months of the metrics, which an audit's cases without
    a cell in any measure leave out, and said '2025-01 to 2025-03' where the log said '2024-09 to 2025-03')."""
    if MONTH.match(period):
        return period
    if stated:
        return stated
    first, last = bounds.get("first_month"), bounds.get("last_month")
    if not (first and last):
        months = sorted(p for p in metrics["period"].unique().drop_nulls().to_list() if MONTH.match(p))
        if not months:
            return period
        first, last = months[0], trend_end or months[-1]
    return all_months(first, last)


def provisional_months(run_info: dict, window: list[str]) -> frozenset[str]:
    """The trend's months that are still provisional by the run's maturity (run.json ``maturity``)."""
    maturity = Maturity.from_dict(run_info.get("maturity"))
    return frozenset(m for m in window if maturity.status(m) == "provisional") if maturity else frozenset()


def overall_rates(metrics: pl.DataFrame, period: str) -> dict:
    sel = metrics.filter((pl.col("period") == period) & (pl.col("level") == "overall"))
    return {r["measure_id"]: r["rate"] for r in sel.to_dicts()}


def page_metrics(metrics: pl.DataFrame, period: str, spec: ReportSpec) -> pl.DataFrame:
    """The rows the pages read: hospital and department rows of every period, and the provider rows of
    the headline measures in the headline period (filtered once instead of on every page)."""
    level = pl.col("level")
    provider = (level == "provider") & (pl.col("period") == period) & pl.col("measure_id").is_in(spec.headline_ids)
    return metrics.filter(level.is_in(["overall", "department"]) | provider)


# ----------------------------------------------------------------------------- pages


def page_context(
    con,
    run_info: dict,
    metrics: pl.DataFrame,
    rules: pl.DataFrame,
    period: str,
    window: list[str],
    settings: dict,
    shared: dict,
    spec: ReportSpec,
    *,
    department: str | None,
) -> dict:
    """One page's template values, its charts among them (SVG written from the numbers, milliseconds each)."""
    low, names = settings["low"], settings["names"]
    overall = settings["overall_rates"]
    funnel = spec.measure(spec.funnel_measure)
    if department is None:
        level, key, name = "overall", "all", "overall"
        provider_rates = metrics.filter((pl.col("level") == "provider") & (pl.col("period") == period))
    else:
        level, key, name = "department", department, "dept"
        provider_rates = shared["department_providers"].filter(pl.col("department") == department)
    in_period = metrics.filter(pl.col("period") == period)
    printed_name = functools.partial(printed_department, names=names)  # a department as the page prints it
    department_rows = sections.group_rows(in_period.filter(pl.col("level") == "department"), overall, low, printed_name, spec)
    if department is not None:
        department_rows = [r for r in department_rows if r["group_key"] == department]
    for row in department_rows:
        row["slug"] = slugify(row["group_key"])
    hospital_row = sections.group_rows(in_period.filter(pl.col("level") == "overall"), overall, low, printed_name, spec)
    attribution = shared["attribution"]
    if department is not None:
        attribution = dict(attribution, rows=[r for r in attribution["rows"] if r["department"] == department])
    points = sections.funnel_points(provider_rates, low, spec.funnel_measure)
    flagged = caselist.flagged_selection(shared["cases"], settings["per_department"], department)
    dept_chart_rows = (
        in_period.filter((pl.col("level") == "department") & (pl.col("measure_id") == spec.funnel_measure))
        .filter(pl.col("denominator") > 0)
        .with_columns(
            printed_named("group_key", names, "label"),
            (pl.col("denominator") < low).alias("small"),
        )
    )
    return {
        "scope": {
            "kind": "department" if department else "hospital",
            "key": department,
            "name": printed_department(department, names) if department else "All departments",
        },
        "period": period,
        "headline": sections.headline(metrics, period, level, key, rules, low, spec, shared["verdicts"].get(department, {})),
        "trend": sections.trend(metrics, level, key, window, name, low, spec, provisional_months(run_info, window)),
        "departments": department_rows,
        "hospital_row": hospital_row[0] if hospital_row else None,
        "attribution": attribution,
        "department_chart": None
        if department or funnel is None
        else charts.interval_svg(
            dept_chart_rows,
            f"{funnel.label} by department (alphabetical, not ranked)",
            "dept-rates",
            overall.get(funnel.measure_id),
        ),
        "providers": sections.provider_table(provider_rates, overall, low, spec),
        "funnel_svg": None
        if funnel is None
        else charts.funnel_svg(
            points,
            overall.get(funnel.measure_id),
            f"Providers: {funnel.label.lower()} against {funnel.denominator} (funnel plot)",
            f"{name}-funnel",
            funnel.denominator,
        ),
        "n_funnel": points.height,
        "n_small_providers": int(points["small"].sum()) if points.height else 0,
        "attrition": sections.attrition(con, {**rule_labels(rules), **spec.labels}) if department is None else [],
        "audit_sections": section_rows(con, spec, department, shared.get("reach")),
        "flagged": flagged,
        "case_rows": (case_rows := caselist.shaped_rows(flagged["rows"], names)),
        "case_columns": (case_columns := caselist.column_widths(case_rows, settings["paper"].print_width_pt)),
        "order_id_room": caselist.order_id_room(case_columns, settings["paper"].print_width_pt),
        "cited_rules": caselist.cited_rules(flagged["rows"], rules),
    }


def with_low_notes(ctx: dict) -> dict:
    """A page context ready for the template: where a † can stand, whether its footnote is needed there. The headline's
    counts the month before in its "Earlier" lines too (a † there had no note when the month's own figures had none);
    ``departments_low``: the departments table's (it had no note of its own, and prints pages away from the headline's)."""
    out = dict(ctx)
    shown = {m["measure_id"] for m in ctx["headline"]["main"]}
    earlier = [t["previous"] for t in ctx["trend"] if t["measure_id"] in shown and t["last"] == ctx["period"] and t["n_data"]]
    out["headline"] = dict(ctx["headline"], any_low=ctx["headline"]["any_low"] or sections.any_low(earlier))
    rows = [*ctx["departments"], *([ctx["hospital_row"]] if ctx["hospital_row"] else [])]
    out["departments_low"] = any(sections.any_low(r["cells"]) for r in rows)
    return out


def department_list(metrics: pl.DataFrame, period: str, attribution: dict) -> list[str]:
    """Every department any output of the period names: with figures, orders placed, cases attributed
    to it, or cases of its second view."""
    names = set(
        metrics.filter((pl.col("level") == "department") & (pl.col("period") == period))["group_key"].drop_nulls().to_list()
    )
    names |= {r["department"] for r in attribution["rows"]}
    return sorted(names)


def common_values(run_info: dict, period_label: str, settings: dict, spec: ReportSpec) -> dict:
    common = {
        "spec": spec,
        "parameters": spec.parameters,
        "table_measures": [spec.measure(m) for m in spec.department_ids],
        "funnel_label": funnel.label if (funnel := spec.measure(spec.funnel_measure)) else "",
        "funnel_unit": funnel.denominator if funnel else "",
        "funnel_numerator": funnel.numerator if funnel else "",  # what the funnel's n counts, in words
        "run": {k: run_info.get(k) for k in ("run_id", "software_version", "rule_set_version", "period", "started_at")},
        "demo_key": bool(run_info.get("pseudonym_key_is_demo")),
        "low": settings["low"],
        "per_department": settings["per_department"],
        "schema_version": SCHEMA_VERSION,
        "period_label": period_label,
        "audit_title": audit_title(run_info),
        # the shared feed's small-cell rule in words, for the methods (pipeline.report.feed)
        "feed_disclosure": feed.methods_text(feed.min_cell_count(run_info)),
        # what the FHIR export's manifest says the data lack: a note on every page, the whole text in the Methods
        "export_limits": sections.export_limits(run_info),
        "set_aside": sections.set_aside(run_info),  # a share of an input's rows left out: the first page says it
        "paper": settings["paper"],  # the print sheet's page size (_style.html)
        "period_note": None,  # the audit's own note on the period (audit_sections.period_note), set by the renderer
    }
    if run_info.get("status"):  # the period's own state (empty, provisional, revised): _status_banner.html
        common["status"] = run_info["status"]
    return common


def audit_title(run_info: dict) -> str:
    audit = run_info.get("audit", {})
    return audit.get("short_title") or audit.get("title") or "order-audit"


def running_header(run_info: dict, period_label: str) -> tuple[str, str]:
    """What every printed page of the report says at its top, left and right: a page taken from the meeting's copy
    still names the audit, the period and whether it is final, the rule set, how far the data reaches, and the run."""
    maturity = (run_info.get("status") or {}).get("maturity") or {}
    status = f" ({maturity['status']})" if maturity.get("status") else ""
    right = [
        f"rule set {run_info['rule_set_version']}" if run_info.get("rule_set_version") else "",
        f"data through {maturity['data_through']}" if maturity.get("data_through") else "",
        f"run {run_info['run_id']}",
    ]
    return f"{audit_title(run_info)} · All departments · {period_label}{status}", " · ".join(r for r in right if r)


def page_settings(run_info: dict, overall_rates: dict) -> dict:
    reporting = run_info["config"].get("reporting", {})
    return {
        "low": sections.low_reliability(run_info),
        "per_department": int(reporting.get("flagged_cases_per_department", 5)),
        "names": department_names(run_info["config"]),
        "overall_rates": overall_rates,
        "paper": paper_of(run_info),
    }


def verdict_counts(con) -> dict:
    """Audited orders per verdict of the period, for the hospital (key None) and each ordering department."""
    rows = con.execute(
        "SELECT coalesce(CAST(ordering_department AS VARCHAR), '(not recorded)'), verdict, count(*) "
        "FROM mart_audited_orders GROUP BY ALL"
    ).fetchall()
    out: dict = {None: {}}
    for department, verdict, n in rows:
        out.setdefault(department, {})[verdict] = n
        out[None][verdict] = out[None].get(verdict, 0) + n
    return out
