"""The report shell's sections as plain values: headline, trend, departments, providers, attrition,
methods. ``render`` puts them on pages; the audit's own sections (``audit_sections``) come between.

Every rate is shown with n / N and its Wilson interval (internal documents); a rate whose
denominator is below ``low`` (``[reporting] low_reliability_denominator``) is marked, never
hidden. Each measure names its numerator and denominator (the audit's manifest), and the same
measure uses the same denominator everywhere.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable

import numpy as np
import polars as pl

from pipeline.audits import plain_number
from pipeline.db import frame, has_table
from pipeline.months import MONTH, month_range, shift
from pipeline.period_status import feed_words
from pipeline.quality.result import OUTCOMES, outcome, outcome_counts, printed_examples
from pipeline.report import charts
from pipeline.report.measure import funnel_status, p_chart, with_rates
from pipeline.report.names import in_words, printed, printed_department
from pipeline.report.outputs import order_by
from pipeline.report.spec import ReportSpec
from pipeline.wording import counted

VERDICT_ORDER = ("inappropriate", "review", "appropriate", "not_evaluable", "excluded")


def marked(row: dict | None, low: int) -> dict | None:
    """A rate row with ``low`` (denominator above 0 but under the low-reliability threshold)."""
    if row is None:
        return None
    den = row.get("denominator") or 0
    return dict(row, low=0 < den < low)


def any_low(rows) -> bool:
    return any(r is not None and r.get("low") for r in rows)


# ----------------------------------------------------------------------------- headline


def headline(
    metrics: pl.DataFrame, period: str, level: str, key: str, rules: pl.DataFrame, low: int, spec: ReportSpec, verdicts: dict
) -> dict:
    """The page's measures and its orders by reason, grouped by verdict, each group with its overlap note.
    ``verdicts``: the page's audited orders per verdict (the overlap note)."""
    sel = metrics.filter((pl.col("period") == period) & (pl.col("level") == level) & (pl.col("group_key") == key))
    by_id = {r["measure_id"]: r for r in sel.to_dicts()}
    if by_id:
        # a measure of the page's own with nothing in its denominator has no row: it is shown as "no denominator",
        # never left out (a department page whose orders were none judged showed its other measures only, under
        # "Headline measures"); a case measure is a department's only where the audit attributes cases to one
        for m in spec.measures:
            if m.measure_id not in by_id and (level != "department" or m.unit == "order" or spec.case_department):
                by_id[m.measure_id] = {
                    "measure_id": m.measure_id,
                    "numerator": 0,
                    "denominator": 0,
                    "rate": None,
                    "direction": m.direction,
                }
    main = [
        marked(
            dict(
                by_id[m.measure_id],
                label=m.label,
                numerator_def=m.numerator,
                denominator_def=m.denominator,
                headline=m.headline,
            ),
            low,
        )
        for m in spec.measures
        if m.measure_id in by_id
    ]
    groups = []
    for verdict in VERDICT_ORDER:
        rows = []
        for r in rules.filter(pl.col("verdict") == verdict).to_dicts():
            row = by_id.get(f"reason_{r['reason_code']}")
            if row is not None:
                rows.append(marked(dict(row, **{k: r[k] for k in ("reason_code", "label", "rule_id", "explanation")}), low))
        if rows:
            groups.append(
                {
                    "verdict": verdict,
                    "denominator": rows[0]["denominator"],
                    "denominator_def": spec.reason_denominators[verdict],
                    "rows": [r for r in rows if r["numerator"]],
                    "unseen": [f"{r['rule_id']} {r['label']}" for r in rows if not r["numerator"]],
                    "reasons_sum": sum(r["numerator"] for r in rows),
                }
            )
    for g in groups:
        g["orders"] = verdicts.get(g["verdict"])
        g["overlap"] = g["orders"] is not None and g["reasons_sum"] > g["orders"]
    return {"main": main, "reason_groups": groups, "any_low": any_low(main) or any(any_low(g["rows"]) for g in groups)}


# ----------------------------------------------------------------------------- trend


def trend_months(
    metrics: pl.DataFrame,
    end: str | None,
    months: int,
    first: str | None = None,
    complete_from: str | None = None,
    data_from: str | None = None,
) -> list[str]:
    """``months`` calendar months ending at ``end``, from the first month with data (or ``first``, the
    run's trend window start): months without cases stay in as gaps. ``data_from``: the first month every feed of the
    audit covers whole (``status['feeds_begun']``): a month from it before the first with a case is a gap too (the
    CSF-leak trend began at its first case, 2024-08, a month after the data, without a word). ``complete_from``: the first
    month whose units have their whole look-back in the data (``first_complete_month``); the months before it start
    the trend only when ``end`` is before it too (their centre line would pool episodes that may not be new)."""
    if end is None:
        return []
    present = sorted(p for p in metrics["period"].unique().drop_nulls().to_list() if MONTH.match(p) and p <= end)
    if not present:
        return []
    base = min(present[0], data_from) if data_from else present[0]
    start = max(first, base) if first else base
    if complete_from is not None and complete_from <= end:
        start = max(start, complete_from)
    return month_range(start, end)[-months:]


def first_complete_month(verified_from: datetime.date | None) -> str | None:
    """The first month whose first day is on or after ``verified_from`` (the metrics feed's ``look_back``: a
    period starting before it is ``before_data``); None without a look-back."""
    if verified_from is None:
        return None
    month = f"{verified_from.year:04d}-{verified_from.month:02d}"
    return month if verified_from.day == 1 else shift(month, 1)


def trend(
    metrics: pl.DataFrame,
    level: str,
    key: str,
    window: list[str],
    name: str,
    low: int,
    spec: ReportSpec,
    provisional: frozenset[str] = frozenset(),
) -> list[dict]:
    """p-chart per trend measure (its SVG), and the special-cause months: good or bad news. ``provisional``:
    the window's months later data can still change (drawn hollow, judged against the final months' centre)."""
    out = []
    if not window:
        return out
    base = metrics.filter((pl.col("level") == level) & (pl.col("group_key") == key) & pl.col("period").is_in(window))
    frame = pl.DataFrame({"period": window})
    for m in spec.trend_measures:
        measure_id, label = m.measure_id, m.label
        got = base.filter(pl.col("measure_id") == measure_id).select("period", "numerator", "denominator")
        if got.height == 0:
            continue
        higher = m.direction == "higher_is_better"
        neutral = m.direction == "neutral"
        monthly = frame.join(got, on="period", how="left").with_columns(
            pl.col("numerator").fill_null(0), pl.col("denominator").fill_null(0)
        )
        pc = p_chart(monthly, provisional)
        n_data = int((pc["denominator"] > 0).sum())
        # what the centre pools: "all" the months (none provisional), the "final" ones, or, while no final month has
        # data, every month with data, "all provisional"
        in_centre = pc.filter(pl.col("baseline"))["period"].to_list()
        centre_of = (
            "all" if not provisional.intersection(window) else ("final" if set(in_centre) - provisional else "all provisional")
        )
        svg = charts.p_chart_svg(pc, f"{label}: p-chart, {window[0]} to {window[-1]}", f"{name}-{measure_id}", provisional)
        months = pc.select(
            "period",
            "numerator",
            "denominator",
            "rate",
            "lcl",
            "ucl",
            "outside",
            pl.col("period").is_in(list(provisional)).alias("provisional"),
        ).to_dicts()
        flagged = [_read(f, higher, neutral, low) for f in months if f["outside"]]
        # the last two months of the window as the headline's comparison reads them (None: nothing counted)
        previous, latest = ([None] * (2 - len(months[-2:]))) + months[-2:]
        out.append(
            {
                "measure_id": measure_id,
                "label": label,
                "svg": svg,
                "n_months": len(window),
                "n_empty": len(window) - n_data,
                # what a month without a denominator lacks, in the measure's unit: "11 without cases" was said of
                # an order measure too (its months had cases but no evaluated order, or the reverse)
                "counts": "orders" if m.unit == "order" else f"{spec.case_unit}s",
                # months with a denominator: with fewer than two the centre line is that month's own rate and no month
                # can fall outside the limits, so "common-cause variation only" would be said of nothing
                "n_data": n_data,
                "first": window[0],
                "last": window[-1],
                "centre": pc["centre"][0],
                # the centre's months as the heading and the headline's "Earlier" line say them: from the window's first
                # to its last final month (``centre_last``) when the centre is the final months'
                "centre_of": centre_of,
                "centre_last": [p for p in window if p not in provisional][-1] if centre_of == "final" else window[-1],
                "direction": "neither better nor worse" if neutral else ("higher is better" if higher else "lower is better"),
                "flagged": flagged,
                # the window's last month (the page's period) and the one before, as the headline compares them
                "latest": _read(latest, higher, neutral, low),
                "previous": marked(previous, low),
            }
        )
    return out


def _read(month: dict, higher: bool, neutral: bool, low: int) -> dict:
    """A month of a p-chart as the report reads it: outside the limits (``signal``: above or below) good or bad news
    by the measure's direction, or only unusual for a measure that is neither; inside them ``signal`` None."""
    if not month["outside"]:
        return marked(dict(month, signal=None, news=None, good=None), low)
    above = month["rate"] > month["ucl"]
    good = above == higher
    news = "good news: better than usual" if good else "bad news: worse than usual"
    return marked(
        dict(
            month,
            signal="above the upper limit" if above else "below the lower limit",
            news="unusual: look for a cause" if neutral else news,
            good=good and not neutral,
        ),
        low,
    )


# ----------------------------------------------------------------------------- departments and providers


def funnel_news(status: str, direction: str | None) -> str:
    """A funnel position with what it means by the measure's direction, as the p-charts say good or bad news:
    'below 99.8% limit' of the early-imaging rate read as failing to the committee, where it is better than the
    hospital. A neutral measure's position, and one within the limits, stay as they are."""
    if not status.startswith(("above", "below")) or direction not in ("higher_is_better", "lower_is_better"):
        return status
    better = status.startswith("above") == (direction == "higher_is_better")
    return f"{status} ({'better' if better else 'worse'})"


def group_rows(rates: pl.DataFrame, overall: dict, low: int, name: Callable[[str], str], spec: ReportSpec) -> list[dict]:
    """One row per group (``group_key``) with each headline measure (``cells``, in the spec's order), its
    funnel position (the funnel measure) and its printed name, ``name(group_key)`` (a department by its display
    name, a provider as delivered); alphabetical by printed name, never ranked."""
    table = spec.department_ids
    funnel = spec.funnel_measure
    by_key: dict[str, dict] = {}
    for r in rates.filter(pl.col("measure_id").is_in(table)).to_dicts():
        by_key.setdefault(r["group_key"], {"group_key": r["group_key"]})[r["measure_id"]] = marked(r, low)
    rows = list(by_key.values())
    p0 = overall.get(funnel)
    direction = getattr(spec.measure(funnel), "direction", None)
    placed = [m for row in rows if (m := row.get(funnel)) is not None and m["rate"] is not None]
    status = iter(funnel_status([m["rate"] for m in placed], [m["denominator"] for m in placed], p0) if p0 is not None else [])
    for row in rows:
        m = row.get(funnel)
        position = next(status) if p0 is not None and m is not None and m["rate"] is not None else ""
        row["outlier"] = position not in ("", "within limits")
        row["funnel"] = funnel_news(position, direction)
        row["orders"] = m["denominator"] if m is not None else 0
        row["name"] = name(row["group_key"])
        row["cells"] = [row.get(mid) for mid in table]
    return sorted(rows, key=lambda r: (r["name"].lower(), r["group_key"]))


PROVIDER_ROWS_MAX = 40  # more rated providers than this: only those outside the funnel limits are listed


def provider_table(rates: pl.DataFrame, overall: dict, low: int, spec: ReportSpec) -> dict:
    """Rated providers (at least ``low`` evaluated orders) are listed with their funnel position, or, when
    there are more than ``PROVIDER_ROWS_MAX``, the rated ones outside the 95% limits; when those are more
    too, the ones outside the 99.8% limits, and of those at most ``PROVIDER_ROWS_MAX``, the ones with the most
    orders in the measure (where an excess is surest and touches the most patients). ``selection`` says
    which rule chose the rows; the rest are one sentence with their counts (each is drawn in the funnel plot
    and listed in the workbook). Vectorised: only the listed providers become rows (a hospital has thousands)."""
    funnel = rates.filter(pl.col("measure_id") == spec.funnel_measure)
    keys = rates.select("group_key").unique()
    summary = keys.join(funnel.select("group_key", "numerator", "denominator", "rate"), on="group_key", how="left").with_columns(
        pl.col("numerator", "denominator").fill_null(0)
    )
    status = _positions(summary, overall.get(spec.funnel_measure))
    summary = summary.with_columns(
        pl.Series("outlier", [s not in ("", "within limits") for s in status], dtype=pl.Boolean),
        pl.Series("special", [s.endswith("99.8% limit") for s in status], dtype=pl.Boolean),
        (pl.col("denominator") >= low).alias("rated"),
    )
    rated, rest = summary.filter(pl.col("rated")), summary.filter(~pl.col("rated"))
    listed, selection = rated, "rated"
    if listed.height > PROVIDER_ROWS_MAX:
        listed, selection = rated.filter(pl.col("outlier")), "outside_95"
    if listed.height > PROVIDER_ROWS_MAX:
        listed, selection = rated.filter(pl.col("special")), "outside_998"
    if listed.height > PROVIDER_ROWS_MAX:
        listed = listed.sort(["denominator", "group_key"], descending=[True, False]).head(PROVIDER_ROWS_MAX)
        selection = "outside_998_largest"
    # a provider id is printed as delivered (no display name turns it into words), bounded
    rows = group_rows(rates.filter(pl.col("group_key").is_in(listed["group_key"].implode())), overall, low, printed, spec)
    return {
        "rows": rows,
        "selection": selection,
        "n_special": int(rated["special"].sum()),
        "n_rated": rated.height,
        "only_outliers": listed.height < rated.height,
        "any_low": any(any_low(r["cells"]) for r in rows),
        "n_outliers": int(rated["outlier"].sum()),
        "n_rest": rest.height,
        "rest_orders": int(rest["denominator"].sum()),
        "rest_inappropriate": int(rest["numerator"].sum()),
        "rest_outside": int(rest["outlier"].sum()),
        "n_all": summary.height,
    }


def _positions(funnel: pl.DataFrame, p0: float | None) -> np.ndarray:
    """Each row's funnel position (``funnel_status``) from its rate and denominator; '' without a rate."""
    placed = funnel["rate"].is_not_null().to_numpy()
    status = np.full(funnel.height, "", dtype=object)
    if p0 is not None and placed.any():
        status[placed] = funnel_status(funnel["rate"].to_numpy()[placed], funnel["denominator"].to_numpy()[placed], p0)
    return status


def funnel_positions(rates: pl.DataFrame, overall: dict, spec: ReportSpec) -> pl.DataFrame:
    """group_key, funnel_position: every provider's place against the funnel limits of the funnel measure (the
    workbook's Providers sheet carries it, so the providers the report leaves out can be filtered there)."""
    funnel = rates.filter(pl.col("measure_id") == spec.funnel_measure).select("group_key", "denominator", "rate")
    direction = getattr(spec.measure(spec.funnel_measure), "direction", None)
    shown = [funnel_news(s, direction) for s in _positions(funnel, overall.get(spec.funnel_measure))]
    return funnel.select("group_key", pl.Series("funnel_position", shown, dtype=pl.String))


def funnel_points(rates: pl.DataFrame, low: int, measure_id: str | None) -> pl.DataFrame:
    """Every provider with a denominator in the funnel measure; ``small`` (fewer than ``low``) drawn hollow, not hidden."""
    pts = rates.filter((pl.col("measure_id") == measure_id) & (pl.col("denominator") > 0))
    return pts.select(
        "group_key",
        "numerator",
        "denominator",
        (pl.col("numerator") / pl.col("denominator")).alias("rate"),
        (pl.col("denominator") < low).alias("small"),
    )


def department_provider_rates(con) -> pl.DataFrame:
    """Provider figures within each department (``mart_department_provider_counts``) with rates."""
    counts = frame(
        con,
        "SELECT department, provider_key AS group_key, measure_id, CAST(numerator AS BIGINT) AS numerator, "
        "CAST(denominator AS BIGINT) AS denominator FROM mart_department_provider_counts "
        "ORDER BY department, provider_key, measure_id",
    )
    return with_rates(counts)


def attribution(con, names: dict[str, str]) -> dict:
    """Who the numbers belong to: per department, orders placed and cases attributed (``[report]
    case_department``; ``second_view_department`` as a labelled second view), with totals that reconcile."""
    rows = frame(con, "SELECT * FROM mart_department_summary").to_dicts()
    for r in rows:
        r["name"] = printed_department(r["department"], names)
    rows.sort(key=lambda r: (r["name"].lower(), r["department"]))
    cols = [
        "orders",
        "orders_not_excluded",
        "orders_evaluated",
        "orders_inappropriate",
        "orders_review",
        "cases_attributed",
        "cases_flagged",
        "cases_second_view",
    ]
    total = {c: sum(r[c] for r in rows) for c in cols}
    n_cases = con.execute("SELECT count(*) FROM mart_cases").fetchall()[0][0]
    n_orders, n_flagged = con.execute(
        "SELECT count(*), count(DISTINCT case_id) FILTER (WHERE verdict IN ('inappropriate', 'review')) FROM mart_audited_orders"
    ).fetchall()[0]
    # the cases no department holds: whose orders were all excluded or not evaluable, that had no audited order,
    # or of an audit whose cases belong to no department (low back pain); some of those are flagged
    unattributed = {"cases": n_cases - total["cases_attributed"], "flagged": n_flagged - total["cases_flagged"]}
    total["cases_attributed"] += unattributed["cases"]
    total["cases_flagged"] += unattributed["flagged"]
    return {"rows": rows, "total": total, "n_cases": n_cases, "n_orders": n_orders, "unattributed": unattributed}


# ----------------------------------------------------------------------------- attrition, timing, risk


def attrition(con, labels: dict[str, str] | None = None) -> list[dict]:
    """Attrition rows; a step's percentage is of the last step of the same unit at an earlier step number
    (steps sharing a number are siblings, e.g. flagged and review orders both out of evaluated orders), and only
    between rows of their step's own unit (``_own_units``). A step naming a key names it in ``labels``' words
    (reason codes and the audit's own keys; the data output keeps the key)."""
    columns = set(frame(con, "SELECT * FROM mart_attrition LIMIT 0").columns)  # row_order is the audit's choice
    keys = order_by("mart_attrition", "", columns)
    query = f"SELECT step_order, step, unit, count, kind, note FROM mart_attrition ORDER BY {keys}"
    rows = frame(con, query).to_dicts()
    for r in rows:
        r["step"] = in_words(r["step"], labels or {})
    own = _own_units(rows)
    last: dict[str, tuple[int, int]] = {}
    before: dict[str, tuple[int, int]] = {}
    for r in rows:
        r["percent_of_previous"] = None
        r["of_step"] = None
        # a percentage is shown only where it means something: a step's row in its step's own unit, of an earlier
        # step's row in that step's own unit, the same (the "of #N" it names is that step's own row). A row counting
        # the same step in another unit ('Cases: patients', the patients of the step's cases) is a head count beside
        # the funnel: no exclusion row explains what it lost since an earlier one, so it has no percentage and is no
        # base for one ('Cases: patients' read '1.6% of #2', #2 being 260 index procedures; it was of 256 patients).
        # The percentage is the report's: attrition.csv has none, and keeps every row as the mart gives it.
        if r["kind"] != "step" or r["unit"] != own[r["step_order"]]:
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


def _own_units(rows: list[dict]) -> dict[int, str]:
    """Each step number's own unit: the unit its exclusion rows count (the units that leave the step); a step that
    loses none (a last step, or one that only counts) continues the step before's unit where it counts it, else its
    first step row's unit is its own."""
    leaving = {r["step_order"]: r["unit"] for r in reversed(rows) if r["kind"] == "exclusion"}  # each step's first
    counted: dict[int, list[str]] = {}
    for r in rows:
        if r["kind"] == "step":
            counted.setdefault(r["step_order"], []).append(r["unit"])
    own: dict[int, str] = {}
    previous = None
    for step in sorted(counted.keys() | leaving.keys()):
        units = counted.get(step, [])
        own[step] = leaving.get(step) or (previous if previous in units else units[0])
        previous = own[step]
    return own


# ----------------------------------------------------------------------------- methods


def low_reliability(run_info: dict) -> int:
    """The run's low-reliability denominator (``[reporting]``): a rate on fewer is marked, on every page that shows it
    (the site index's too: it had marked at 20 whatever the setting)."""
    return int((run_info.get("config") or {}).get("reporting", {}).get("low_reliability_denominator", 20))


def _doi_unprinted(guideline: dict, reference: str) -> str | None:
    doi = guideline.get("doi")
    return doi if doi and doi not in " ".join([reference, *guideline.get("also", [])]) else None


def methods(con, run_info: dict, rules: pl.DataFrame, spec: ReportSpec) -> dict:
    """Definitions, rules, data quality, inputs and settings for the Methods section."""
    cfg = run_info["config"]
    reporting = cfg.get("reporting", {})
    # the verdicts this audit's rules give, each with its rules: the engine's descriptions are the same for every
    # audit, so the examples are the audit's own (the low back pain report listed the CSF-leak audit's 'outside the
    # window' and a review verdict it does not have)
    rule_ids: dict[str, list[str]] = {}
    for r in rules.iter_rows(named=True):
        rule_ids.setdefault(r["verdict"], []).append(r["rule_id"])
    described = (
        frame(con, "SELECT verdict, precedence, description FROM ref_verdicts ORDER BY precedence").to_dicts()
        if has_table(con, "ref_verdicts")
        else []
    )
    verdicts = [dict(v, rule_ids=rule_ids[v["verdict"]]) for v in described if v["verdict"] in rule_ids]
    keys = ("check_id", "table", "severity", "status", "violated_count", "denominator", "percent", "description")
    checks = run_info.get("data_quality", [])
    # each check with what it did (a warning's rows stayed in; it did not "fail"): quality.result.OUTCOMES
    dq = [
        {
            **{k: d.get(k) for k in keys},
            "outcome": outcome(d),
            "result": OUTCOMES[outcome(d)][0],
            # a look-alike pair or a quiet month: what to correct, on the page (a row's key stays in run.json)
            "examples": [printed(e) for e in printed_examples(d)],
        }
        for d in checks
    ]
    rejects_info = run_info.get("rejects") or {}
    rejects = _rejects(con)
    listed_per_kind = int(rejects_info.get("listed_per_kind") or 0)
    rule_rows = []
    reference = str(spec.guideline.get("reference", ""))
    for r in rules.to_dicts():
        citation = r["citation"] or ""
        cites_guideline = bool(reference) and citation.startswith(reference)
        detail = citation.removeprefix(reference).strip() if cites_guideline else citation
        # printed: the variant (or the audit definition), not the supporting quotation
        variant = detail.split("; secondary summary of the criteria:")[0].strip()
        rule_rows.append(dict(r, detail=detail, variant=variant, acr=cites_guideline))
    case = {k: plain_number(v) for k, v in spec.parameters.items()}
    return {
        "case": case,
        "site_timezone": cfg.get("site_timezone", ""),
        "config_json": json.dumps(cfg, indent=2, sort_keys=True, default=str),
        "code_set_versions": sorted((str(k), str(v)) for k, v in run_info.get("code_set_versions", {}).items()),
        "reference": reference,
        # the guideline's doi where no printed reference holds it already: the low back pain audit's doi is its ACR
        # criteria's, among the "see also" (printed after HEDIS, it read as HEDIS's)
        "doi": _doi_unprinted(spec.guideline, reference),
        "guideline": spec.guideline,
        "rules": rule_rows,
        "verdicts": verdicts,
        "data_quality": [d for d in dq if d["status"] != "passed"],
        "dq_total": len(dq),
        "dq_counts": outcome_counts(checks),
        "rejects": rejects,
        "listed_per_kind": listed_per_kind,
        "listing_cut": listing_cut(rejects, listed_per_kind),
        "rejected_rows": sorted((str(k), int(v)) for k, v in (rejects_info.get("rejected_rows") or {}).items()),
        "nulled_values": int(rejects_info.get("nulled_values") or 0),
        # coded values no map knows (status words ...): vocabulary, not ids; a column with more
        # distinct unknown values than value_maps.MAX_NAMED_VALUES arrives here counted, not listed
        "unknown_values": run_info.get("unknown_values", []),
        # FHIR resources left out on purpose (not-done, entered-in-error, refuted ...), counted by type and reason
        "left_out": run_info.get("left_out", []),
        "inputs": run_info.get("inputs", []),
        # a FHIR export's tables carry one hash, of every NDJSON file (ingest.fhir.prepare): the table says so, or a
        # reader checks it against the one file named beside it and finds it wrong
        "input_format": run_info.get("input_format", "tables"),
        "low": low_reliability(run_info),
        "per_department": reporting.get("flagged_cases_per_department", 5),
        "measures": spec.measures,
        # each denominator of the reasons' shares with the verdicts whose reasons it is taken over
        "reason_denominators": [
            (den, [v.replace("_", " ") for v, d in spec.reason_denominators.items() if d == den])
            for den in dict.fromkeys(spec.reason_denominators.values())
        ],
    }


SET_ASIDE_NOTED = 0.01  # a share of a table's rows set aside the first page says (a few future dates do not)


def set_aside(run_info: dict) -> list[dict]:
    """The run's input tables with 1% or more of their rows set aside (run.json ``inputs``: unreadable, or failing a
    blocking row-level check): ``table`` in words, ``rejected``, ``read``, ``share``. The Methods counted them; the
    first page said nothing while 595 of 7,550 orders set aside for a status word no map knew turned ten complete
    spines' other orders into 'wrong region' (an adopting site's review)."""
    by_table: dict[str, list[int]] = {}
    for i in run_info.get("inputs") or []:
        counts = by_table.setdefault(i["table"], [0, 0])
        # a FHIR export's table counts the looked-up lines rejected with it (an order's Encounter): no row of it
        supporting = int(i.get("supporting_lines_rejected") or 0)
        counts[0] += int(i.get("rows_rejected") or 0) - supporting
        counts[1] += int(i.get("rows_read") or 0) - supporting
    return [
        {"table": feed_words(t), "rejected": n, "read": total, "share": n / total}
        for t, (n, total) in sorted(by_table.items())
        if total and n / total >= SET_ASIDE_NOTED
    ]


def export_limits(run_info: dict) -> list[dict]:
    """What the FHIR export's manifest says the data lack (run.json ``export_manifest``): its error files
    (resources the server could not export) and deleted-resource files (deletions order-audit does not apply),
    each as ``title`` (the report's first-page note), ``text`` (Methods, the workbook's Explanation sheet) and
    ``files``. The run warns of them in its log; a committee reads the report, so the report says it too."""
    manifest = run_info.get("export_manifest") or {}
    when = f" (transactionTime {manifest['transaction_time']})" if manifest.get("transaction_time") else ""
    found = []
    if errors := int(manifest.get("error_files") or 0):
        found.append(
            {
                "kind": "error_files",
                "files": errors,
                "title": f"Incomplete export: the FHIR server listed {counted(errors, 'file')} of errors",
                "text": f"The FHIR export's manifest{when} lists {counted(errors, 'file')} of errors (OperationOutcome): "
                "resources the server could not export. Orders, procedures or diagnoses among them are missing from "
                "this report, so its counts and rates may be wrong. Read the error files the export client saved "
                "(SMART's bulk-data-client: the error/ folder) and, if they name lost resources, export again before "
                "acting on these figures.",
            }
        )
    if deleted := int(manifest.get("deleted_files") or 0):
        found.append(
            {
                "kind": "deleted_files",
                "files": deleted,
                "title": f"Deletions not applied: the FHIR export lists {counted(deleted, 'file')} of deleted resources",
                "text": f"The FHIR export's manifest{when} lists {counted(deleted, 'file')} of deleted resources (an export "
                "with _since). order-audit does not apply deletions: a resource the server deleted stays in these "
                "figures until an export of its months replaces the load that held it (docs/SCHEDULING.md).",
            }
        )
    return found


def _rejects(con) -> list[dict]:
    # counts only: a rejected value may itself be a raw patient id, so values are never shown. n counts every
    # reject of the kind, listed those rejects.csv lists (ingest.reject_listing: the first of each file and column)
    if not has_table(con, "load_reject_groups"):
        return []
    return frame(
        con,
        """SELECT table_name, action, reason, sum(rows)::BIGINT AS n, sum(rows_listed)::BIGINT AS listed
        FROM load_reject_groups GROUP BY ALL ORDER BY table_name, action, reason""",
    ).to_dicts()


def listing_cut(rejects: list[dict], listed_per_kind: int) -> list[str]:
    """Each kind of reject (a row of ``_rejects``) of which rejects.csv lists only some, in words."""
    said = []
    for r in rejects:
        if r["listed"] < r["n"]:
            # one file and column: the first N; over several, each one's first N
            first = "the first " if r["listed"] == listed_per_kind else ""
            nulled = r["action"] == "value_nulled"
            what = f"{counted(r['n'], 'value')} set to empty" if nulled else f"{counted(r['n'], 'row')} rejected"
            said.append(f"{first}{r['listed']:,} of the {what} in {r['table_name']} for '{r['reason']}' are listed")
    return said


def month_summary(
    metrics: pl.DataFrame, window: list[str], low: int, spec: ReportSpec, provisional: frozenset[str] = frozenset()
) -> list[dict]:
    """Overall monthly numbers of the trend measures for the index page (each month of the trend, newest
    first): ``cells`` in the order of ``spec.trend_measures``; ``provisional``: the months later data can still
    change (``pages.provisional_months``), marked so, as the p-charts draw them hollow."""
    if not window:
        return []
    ids = [m.measure_id for m in spec.trend_measures]
    sel = metrics.filter((pl.col("level") == "overall") & pl.col("period").is_in(window) & pl.col("measure_id").is_in(ids))
    by_month: dict[str, dict] = {m: {} for m in reversed(window)}
    for r in sel.to_dicts():
        by_month[r["period"]][r["measure_id"]] = marked(r, low)
    return [{"period": m, "cells": [cells.get(i) for i in ids], "provisional": m in provisional} for m, cells in by_month.items()]
