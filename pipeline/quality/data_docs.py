"""Great Expectations Data Docs (static HTML) for the checks a run made, GX checks and SQL checks alike."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
from collections.abc import Iterable
from pathlib import Path

import markupsafe

from pipeline.errors import ConfigError
from pipeline.quality.result import CheckResult


def _suite_of(r: CheckResult) -> str:
    return (r.table or "checks").removeprefix("src_")


def _gx_result_for(r: CheckResult) -> dict:
    """An ExpectationValidationResult (JSON dict) for one check.

    GX checks keep GX's own result. SQL checks (and checks whose table was missing) are
    shown as an ``unexpected_rows_expectation`` holding the query that lists the violating
    rows, with our counts as the observed value.
    """
    meta = {
        "check_id": r.check_id,
        "severity": r.severity,
        "description": r.description,
        "row_level": r.row_level,
        "engine": r.engine,
        "table": r.table,
        "violated_count": r.violated_count,
        "denominator": r.denominator,
        "percent": r.percent,
        "sample_keys": list(r.sample_keys),
        "sample_key": r.sample_key,
        "rows_set_aside": getattr(r, "rows_set_aside", 0),
    }
    if r.gx_result is not None:
        out = json.loads(json.dumps(r.gx_result, default=str))
        out.setdefault("expectation_config", {}).setdefault("meta", {}).update(meta)
        out["expectation_config"]["description"] = f"{r.check_id} [{r.severity}]: {r.description}"
        # GX prints the failing values as they are, unescaped ('<img src=x onerror=...>' in needle_type ran in the
        # page) and raw (a patient id under a shifted column): the docs list the rows' keys instead, as the run's
        # messages do (pseudonymised patient keys, escaped)
        found = out.get("result") or {}
        for name in [k for k in found if k.startswith(("partial_unexpected", "unexpected_list", "unexpected_index"))]:
            del found[name]
        if found:
            found["partial_unexpected_list"] = _escaped(r.sample_keys)
        return out
    if r.expectation is not None:
        config = {"type": r.expectation["type"], "kwargs": dict(r.expectation["kwargs"])}
    else:
        query = (r.violations_sql or f"-- SQL check {r.check_id}").replace("{", "{{").replace("}", "}}")
        config = {"type": "unexpected_rows_expectation", "kwargs": {"unexpected_rows_query": query}}
    config["meta"] = meta
    config["description"] = f"{r.check_id} [{r.severity}]: {r.description}"
    exception = {
        "raised_exception": r.error is not None and r.status == "error",
        "exception_message": None if r.error is None else str(markupsafe.escape(r.error)),
        "exception_traceback": None,
    }
    result = {
        "observed_value": r.violated_count,
        "element_count": r.denominator,
        "unexpected_count": r.violated_count,
        "unexpected_percent": r.percent,
        "partial_unexpected_list": _escaped(r.sample_keys),
    }
    return {
        "success": r.status == "passed",
        "expectation_config": config,
        "result": result,
        "meta": {},
        "exception_info": exception,
    }


# in a folder the Data Docs were written to: a later --data-docs may write there again (order-audit never deletes it)
DOCS_MARK = ".order-audit-data-docs"
_DOCS_MARK_TEXT = "Great Expectations Data Docs written by order-audit --data-docs; a later --data-docs may write here\n"


def check_target(given: str | os.PathLike) -> None:
    """The Data Docs go into a new folder, an empty one, or one they were written to before (it holds order-audit's
    mark): Great Expectations writes index.html and its pages over whatever is there (a user's index.html was
    replaced, exit 0; a link named so had its target overwritten), and a file there was a traceback after the whole
    validation. Checked before any work."""
    path = Path(given)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise ConfigError(f"--data-docs {given}: is a file or a link, not a folder; give a new folder (nothing was written)")
    if path.is_dir() and any(path.iterdir()) and not (path / DOCS_MARK).is_file():
        raise ConfigError(
            f"--data-docs {given}: holds files order-audit did not write there; give a new or empty folder, or the one an "
            "earlier --data-docs wrote (nothing was written)"
        )


def _escaped(values: Iterable) -> list[str]:
    """Values as HTML text: GX's pages print what they are given as markup."""
    return [str(markupsafe.escape(str(v))) for v in values]


def write_data_docs(results: Iterable[CheckResult], out_dir: str | os.PathLike, run_name: str | None = None) -> Path:
    """Great Expectations Data Docs (static HTML) for the checks that ran; returns index.html.

    One suite validation result per table (GX checks with GX's own results, SQL checks as
    the query that lists their violating rows), stored in an ephemeral GX context whose
    only Data Docs site is ``out_dir``, then ``context.build_data_docs()``.
    """
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    check_target(out_dir)  # again: the run took its time since the preflight
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / DOCS_MARK).write_text(_DOCS_MARK_TEXT, encoding="utf-8")  # the next --data-docs here may write over it
    context = gx.get_context(mode="ephemeral")
    site = "order_audit"
    for name in list(context.get_config().data_docs_sites or {}):
        context.delete_data_docs_site(name)
    context.add_data_docs_site(
        site,
        {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(out)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    now = dt.datetime.now(dt.UTC)
    run_id = RunIdentifier(run_name=run_name or now.strftime("%Y%m%dT%H%M%SZ"), run_time=now)
    by_suite: dict[str, list[CheckResult]] = {}
    for r in results:
        by_suite.setdefault(_suite_of(r), []).append(r)
    for suite_name, checks in by_suite.items():
        evrs = []
        for r in checks:
            d = _gx_result_for(r)
            cfg = d["expectation_config"]
            econf = ExpectationConfiguration(
                type=cfg["type"], kwargs=cfg.get("kwargs", {}), meta=cfg.get("meta"), description=cfg.get("description")
            )
            evrs.append(
                ExpectationValidationResult(
                    success=bool(d.get("success")),
                    expectation_config=econf,
                    result=d.get("result") or {},
                    meta=d.get("meta") or {},
                    exception_info=d.get("exception_info") or {},
                )
            )
        passed = sum(e.success for e in evrs)
        suite_result = ExpectationSuiteValidationResult(
            success=all(e.success for e in evrs),
            results=evrs,
            suite_name=suite_name,
            statistics={
                "evaluated_expectations": len(evrs),
                "successful_expectations": passed,
                "unsuccessful_expectations": len(evrs) - passed,
                "success_percent": round(100.0 * passed / len(evrs), 2) if evrs else None,
            },
            meta={
                "run_id": run_id,
                "active_batch_definition": {
                    "datasource_name": "gate",
                    "data_asset_name": checks[0].table or suite_name,
                    "batch_definition_name": "whole_table",
                },
            },
            batch_id=f"gate-{checks[0].table or suite_name}",
        )
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite_name),
            run_id=run_id,
            batch_identifier=f"gate-{checks[0].table or suite_name}",
        )
        context.validation_results_store.set(key, suite_result)
    # GX prints a note to stdout for every unexpected_rows query without {batch} (the SQL checks)
    with contextlib.redirect_stdout(io.StringIO()):
        context.build_data_docs(site_names=[site])
    index = out / "index.html"
    if not index.is_file():
        raise RuntimeError(f"Great Expectations built no Data Docs index at {index}")
    _add_check_list(index, [r for rs in by_suite.values() for r in rs])
    return index


def _add_check_list(index: Path, results: list[CheckResult]) -> None:
    """GX's index lists suites and runs only: add one line per check (id, severity, status, counts)."""
    import html

    rows = []
    for r in results:
        mark = {"passed": "pass"}.get(r.status, "FAIL" if r.severity == "blocking" else "warn")
        counts = "" if r.violated_count is None else f"{r.violated_count} of {r.denominator} ({r.percent}%)"
        rows.append(
            f"<tr><td>{html.escape(mark)}</td><td><code>{html.escape(r.check_id)}</code></td>"
            f"<td>{html.escape(r.severity)}</td><td>{html.escape(r.table)}</td>"
            f"<td>{html.escape(counts)}</td><td>{html.escape(r.error or '')}</td></tr>"
        )
    section = (
        '<section id="order-audit-checks" class="container"><h3>order-audit checks</h3>'
        '<table class="table table-sm"><thead><tr><th>result</th><th>check</th><th>severity</th>'
        "<th>table</th><th>violations</th><th>error</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></section>"
    )
    text = index.read_text(encoding="utf-8")
    pos = text.rfind("</body>")
    text = text[:pos] + section + text[pos:] if pos >= 0 else text + section
    index.write_text(text, encoding="utf-8")
