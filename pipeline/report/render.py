"""Render the monthly report, department pages, index, metrics feed, case list workbook and PDF: what each
page shows comes from ``pages``; here the templates render it and the files are written.

Jinja2 runs with ``autoescape=True`` and ``StrictUndefined``: every value is escaped and a
missing variable is an error. The only ``|safe`` values are the SVG charts (``charts``: the report
environment's own ``_charts.svg`` template, which escapes every label).
Only ``patient_key`` (the keyed pseudonym) is ever read for output; raw patient ids are read
solely for the re-identification crosswalk, written outside the output folder, mode 0600.

The report, department pages, index and workbook are internal documents: every rate is shown
with n / N and its interval (``sections``). The report lists a bounded selection of flagged cases
(``caselist``), so its size does not grow with the number of cases; the workbook lists every order.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from pipeline import db, period_status
from pipeline.report import caselist, feed, pages, relations, sections, workbook
from pipeline.report.audit_sections import helpers, look_back, note_texts, period_note, status_texts
from pipeline.report.names import printed_department, rule_labels, slugify
from pipeline.report.pdf import CHROMIUM_FLAGS, RunningHeader, find_chromium, pdf_engine, write_pdf  # noqa: F401 - re-exported
from pipeline.report.spec import ReportSpec
from pipeline.report.templates import audit_templates_named, make_env

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


class Pending:
    """Work begun and paused once (``steps``, a generator that yields once): ``finish`` completes it and
    returns what it returns; ``close`` abandons it (its threads are waited for, nothing more is written)."""

    def __init__(self, steps: Generator[None, None, Any]):
        self._steps = steps
        next(steps)

    def finish(self) -> Any:
        try:
            next(self._steps)
        except StopIteration as done:
            return done.value
        raise RuntimeError("the steps paused twice")

    def close(self) -> None:
        self._steps.close()


def render_outputs(con: duckdb.DuckDBPyConnection, out_dir: Path, run_info: dict, metrics: pl.DataFrame, **options) -> list[Path]:
    """Write every report and feed file into ``out_dir``; return the paths written (``render_steps``, at once)."""
    return Pending(render_steps(con, out_dir, run_info, metrics, **options)).finish()


def render_steps(
    con: duckdb.DuckDBPyConnection,
    out_dir: Path,
    run_info: dict,
    metrics: pl.DataFrame,
    **options,
) -> Generator[None, None, list[Path]]:
    """``_render_steps``, an error of the audit's own templates named as its author's (``audit_templates_named``)."""
    spec = options.get("spec") or ReportSpec.from_run_info(run_info)
    with audit_templates_named(spec.report_dir):
        return (yield from _render_steps(con, out_dir, run_info, metrics, **{**options, "spec": spec}))


def _render_steps(
    con: duckdb.DuckDBPyConnection,
    out_dir: Path,
    run_info: dict,
    metrics: pl.DataFrame,
    *,
    pdf: bool = False,
    site_root: str = "../",
    spec: ReportSpec,
    feed_in: str | None = None,
    feed_dir: Path | None = None,
) -> Generator[None, None, list[Path]]:
    """Write every report and feed file into ``out_dir``; return the paths written. Pauses (yields) once
    every page is written, before it waits for the feed and workbook threads: until it goes on, ``con`` is
    free for the next audit's pages (``Pending``, ``publishing.publish_period``).

    ``metrics`` is the internal frame (every rate); the shared feed applies its own privacy rule (``pipeline.report.feed``).
    ``site_root``: the way from the folder to the site index (``OUT/index.html``): ``../`` from
    ``OUT/<audit>/``, ``../../`` from a backfill's ``OUT/<audit>/<YYYY-MM>/``.
    ``run_info`` gains ``headline`` (the hospital's headline rates), which run.json records. ``spec``: the
    audit's report spec (default: the audit run_info names, ``ReportSpec.from_run_info``). ``feed_in``: the folder
    (from the site root) holding the run's one feed, where it is not this one (a backfill's months: every feed
    carries the whole trend, and two feeds side by side give away counts each withholds, METRICS_FEED.md); the
    feed is then written into ``feed_dir``, or not at all.
    """
    missing = [k for k in RUN_INFO_KEYS if k not in run_info]
    if missing:
        raise KeyError(f"run_info lacks {', '.join(missing)}")
    out_dir = Path(out_dir)
    if pdf:
        pdf_engine()  # fail before any work when no engine can print
    out_dir.mkdir(parents=True, exist_ok=True)
    period, trend_end = pages.periods(metrics, str(run_info["period"]))
    written: list[Path] = []
    # three lines of work at once: the feed on a thread from the start (the longest line at scale; its numpy and
    # Polars work releases the GIL), the workbook on a second thread (zlib and file writes release it too), the
    # pages and their charts (milliseconds each) here
    with ThreadPoolExecutor(2, thread_name_prefix="render-files") as files:
        atoms = relations.Atoms.read(con)  # here: the connection is not the feed thread's to use
        reach = look_back(con, spec) or {}  # the feed's look_back and the period note's: read here, as the atoms
        # the months of the cases: the period a run over every month states, which the feed's 'all' row names too
        case_months = period_status.cases_span(con)
        feed_to = out_dir if feed_in is None else feed_dir
        feed_files = (
            files.submit(feed.write_feed, feed_to, metrics, run_info, period, atoms, reach.get("verified_from"), case_months)
            if feed_to is not None
            else None
        )
        rules = db.frame(
            con,
            "SELECT rule_id, reason_code, label, verdict, explanation, citation FROM ref_rules "
            f"ORDER BY {'rule_order' if 'rule_order' in db.columns(con, 'ref_rules') else 'rule_id'}",
        )
        all_cases = caselist.case_rows(con, spec, rule_labels(rules))
        env = make_env(spec.report_dir)
        settings = pages.page_settings(run_info, pages.overall_rates(metrics, period))
        env.globals.update(helpers(settings["low"], spec.labels))
        bounds = pages.audit_period(con)
        months_n = int(run_info["config"].get("reporting", {}).get("trend_months", 24))
        # an audit with a look-back: its trend starts at the first month whose units have all of it in the data held
        complete_from = sections.first_complete_month(reach.get("verified_from"))
        # the first month the audit's feeds cover whole (a first row on 30 June, in UTC on 1 July, put a June of one
        # day in the trend as a month of no cases)
        begun = (run_info.get("status") or {}).get("feeds_begun")
        data_from = sections.first_complete_month(datetime.date.fromisoformat(begun)) if begun else None
        trend_first = bounds.get("trend_first_month")
        window = sections.trend_months(metrics, trend_end, months_n, trend_first, complete_from, data_from)
        uncut = sections.trend_months(metrics, trend_end, months_n, trend_first, data_from=data_from)
        stated = (run_info.get("status") or {}).get("period")
        label = pages.period_label(period, metrics, bounds, trend_end, stated)
        common = pages.common_values(run_info, label, settings, spec)
        common["site_root"] = site_root
        # the pages say why the trend starts where it does, when the look-back moved its start
        common["trend_cut"] = {"first": window[0], "verified_from": reach["verified_from"]} if window != uncut else None
        common["period_note"] = period_note(con, spec, reach)
        # the same in plain words, where no page is: run.json (the site index reads it) and the workbook's Explanation
        run_info["period_notes"] = note_texts(env, common["period_note"])
        # the verdicts this audit's rules give: a review column only for an audit that has a review verdict
        common["gives_review"] = "review" in rules["verdict"].to_list()
        page_metrics = pages.page_metrics(metrics, period, spec)
        shared = {
            "cases": all_cases,
            "attribution": sections.attribution(con, settings["names"]),
            "department_providers": sections.department_provider_rates(con),
            "verdicts": pages.verdict_counts(con),
            "reach": reach,  # the audit's sections mark their months whose look-back reaches before the data
        }
        for row in shared["attribution"]["rows"]:
            row["slug"] = slugify(row["department"])
        providers = page_metrics.filter((pl.col("level") == "provider") & (pl.col("period") == period))
        book = files.submit(
            workbook.write_case_list,
            out_dir / "case_list.xlsx",
            all_cases,
            rules,
            run_info,
            providers,
            settings["low"],
            spec,
            sections.funnel_positions(providers, settings["overall_rates"], spec),
            status_texts(env, run_info, spec),
        )

        departments = [
            {"key": d, "name": printed_department(d, settings["names"]), "slug": slugify(d)}
            for d in pages.department_list(metrics, period, shared["attribution"])
        ]
        departments.sort(key=lambda d: (d["name"].lower(), d["key"]))
        page_context = functools.partial(
            pages.page_context, con, run_info, page_metrics, rules, period, window, settings, shared, spec
        )
        report_tpl = env.get_template("report.html")
        page = {**common, "department_links": departments}
        ctx = pages.with_low_notes(page_context(department=None))
        methods = sections.methods(con, run_info, rules, spec)
        written.append(_write_text(out_dir / "report.html", report_tpl.render(**page, **ctx, methods=methods, root="")))
        for d in departments:
            html = report_tpl.render(**page, **pages.with_low_notes(page_context(department=d["key"])), methods=None, root="../")
            written.append(_write_text(out_dir / "departments" / f"{d['slug']}.html", html))
        yield  # nothing below reads con
        written += feed_files.result() if feed_files is not None else []
        written.append(book.result())

    index = env.get_template("index.html").render(
        **common,
        period=period,
        attribution=shared["attribution"],
        months=sections.month_summary(metrics, window, settings["low"], spec, pages.provisional_months(run_info, window)),
        pdf=pdf,
        feed_in=feed_in,
    )
    written.append(_write_text(out_dir / "index.html", index))
    run_info["headline"] = _headline_record(metrics, period)
    if pdf:
        header = RunningHeader(*pages.running_header(run_info, common["period_label"]))
        written.append(write_pdf(out_dir / "report.html", out_dir / "report.pdf", header, common["paper"]))
    return written


def _headline_record(metrics: pl.DataFrame, period: str) -> list[dict]:
    """The hospital's headline rows of the period, as run.json keeps them (the site index reads them)."""
    sel = metrics.filter((pl.col("period") == period) & (pl.col("level") == "overall"))
    return sel.select("measure_id", "numerator", "denominator", "rate", "ci_low", "ci_high").sort("measure_id").to_dicts()


# ----------------------------------------------------------------------------- files


def _write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")
    return path
