"""One run: load -> validate -> audit -> measure -> render, as one unit of work.

1. Parse every input file into typed Parquet in a scratch folder (nothing else touched).
2. Data-quality gate on the parsed data: blocking failures stop here (exit 3).
3. One warehouse transaction: merge the files (ledger), rebuild the models, record the run.
4. Output checks, metrics and reports, written to a staging folder and moved into place.

A failure or a kill at any point leaves the previous warehouse state and outputs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import platform
import shlex
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import duckdb

from pipeline import (
    audit,
    charts,
    faults,
    gate,
    history,
    load,
    maturity,
    outputs,
    ownership,
    period_status,
    preflight,
    reference,
    source_store,
    value_maps,
    warehouse,
    workers,
)
from pipeline.config import Config, pseudonym_key
from pipeline.errors import AuditError, QualityGateError, WriteRefusedError, refused_write
from pipeline.logs import event, stage

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    input_dir: Path | None
    out_dir: Path
    warehouse_path: Path | None  # None: a throw-away warehouse for this run only
    months: list[str | None] = field(default_factory=lambda: [None])  # None = every month
    validate: bool = True
    pdf: bool = False
    reid_file: Path | None = None
    data_docs_dir: Path | None = None
    per_month_folders: bool = False  # backfill: one folder per month under out_dir
    progress: bool = False  # month_done log lines (backfill)
    progress_bar: bool = False  # a terminal progress bar over the months (stderr is a TTY)
    command: str = "run"


@dataclass
class RunResult:
    run_id: str
    out_dir: Path
    counts: dict
    timings: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def software_version() -> str:
    try:
        return metadata.version("order-audit")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _versions() -> dict:
    found = {}
    for name in ("duckdb", "polars", "pyarrow", "jinja2", "great-expectations", "matplotlib"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return {"order-audit": software_version(), "python": platform.python_version(), **found}


def period_counts(con: duckdb.DuckDBPyConnection) -> dict:
    one = lambda sql: con.execute(sql).fetchall()[0][0]  # noqa: E731
    return {
        "index_procedures": one("SELECT count(*) FROM mart_index_procedures"),
        "cases": one("SELECT count(*) FROM mart_cases"),
        "audited_orders": one("SELECT count(*) FROM mart_audited_orders"),
        "verdicts": dict(con.execute("SELECT verdict, count(*) FROM mart_audited_orders GROUP BY ALL ORDER BY 1").fetchall()),
    }


def _reject_counts(con: duckdb.DuckDBPyConnection) -> dict:
    return {
        "rejected_rows": dict(
            con.execute("""SELECT table_name, count(DISTINCT (load_id, source_file, source_line)) FROM load_rejects
            WHERE action = 'row_rejected' GROUP BY ALL ORDER BY 1""").fetchall()
        ),
        "nulled_values": con.execute("SELECT count(*) FROM load_rejects WHERE action = 'value_nulled'").fetchall()[0][0],
    }


def _revision_counts(revision: dict | None) -> dict:
    """What `runs` shows of a revision: the orders that changed since the run that last audited the period."""
    if not revision or not revision["orders"]:
        return {}
    return {"revised_orders": revision["orders"], "revised_since": revision["since_run"]}


def _period_label(month: str | None) -> str:
    return month or "all"


@contextlib.contextmanager
def _warehouse_file(opts: RunOptions):
    """The warehouse path; without --warehouse, a throw-away file removed after the run."""
    if opts.warehouse_path is not None:
        yield warehouse.real_path(opts.warehouse_path)  # a symlinked warehouse is the same warehouse
        return
    with tempfile.TemporaryDirectory(prefix="order-audit-wh-") as tmp:
        yield Path(tmp) / "warehouse.duckdb"


def execute(opts: RunOptions, cfg: Config, warm: workers.Warm | None = None) -> RunResult:
    run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    started = dt.datetime.now(dt.UTC)
    timings: dict = {}
    key, key_is_demo = pseudonym_key(cfg)
    warnings: list[str] = []
    if key_is_demo:
        warnings.append(
            "pseudonyms use the public demo key: set ORDER_AUDIT_PSEUDONYM_KEY or privacy.key_file "
            "before running on real patient data"
        )
        event(warnings[-1], level=logging.WARNING, event="demo_key")

    # the workers' imports (Great Expectations, matplotlib) overlap everything from here on; the CLI
    # starts them even before it imports this module
    with contextlib.ExitStack() as stack:
        if warm is None:
            warm = stack.enter_context(workers.Warm(gx=opts.validate, charts=workers.cpus_available() > 1))
        return _execute(opts, cfg, run_id, started, timings, key, key_is_demo, warnings, warm)


def _execute(opts, cfg, run_id, started, timings, key, key_is_demo, warnings, warm) -> RunResult:
    # the folders and files the run will write, then the inputs' file-level checks: an unusable --out,
    # an unreadable input or a missing column stops the run before the warehouse is touched
    out_root = outputs.publication_dir(opts.out_dir)  # a user's symlink to a folder: that folder
    preflight.check_run(opts, out_root)
    opts.out_dir = out_root
    inputs = None
    if opts.input_dir is not None:
        inputs = load.find_inputs(opts.input_dir, cfg)
        load.check_headers(inputs, cfg)
    with _warehouse_file(opts) as wh_path, warehouse.writer_lock(wh_path, run_id, opts.command):
        # fail fast (exit 4) when another process holds DuckDB's own lock, before any parsing; the run is
        # on record as 'running' from here (a kill at any later point shows as interrupted in `runs`)
        con = warehouse.connect(wh_path)
        try:
            history.ensure(con)
            history.start(con, run_id, opts, started)
        finally:
            con.close()
        try:
            _sweep_leftovers(opts, wh_path)
            scratch = ownership.make_temp_dir(f".{wh_path.name}.scratch-", wh_path.parent)
            try:
                return _execute_locked(
                    opts, cfg, inputs, run_id, started, timings, key, key_is_demo, warnings, wh_path, scratch, warm
                )
            finally:
                ownership.remove(scratch)
        except BaseException as exc:
            refused = _refused_write_error(exc, opts, committed=False)
            _record_failure(wh_path, run_id, refused or exc, timings)
            if refused is not None:
                raise refused from None
            raise


def _record_failure(wh_path: Path, run_id: str, exc: BaseException, timings: dict) -> None:
    """A run that stopped with an error (input, gate, crash) or Ctrl-C is recorded as such, unless done already."""
    status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    with contextlib.suppress(Exception):
        con = warehouse.connect(wh_path)
        try:
            if con.execute("SELECT status FROM audit_runs WHERE run_id = ?", [run_id]).fetchall() in (
                [("running",)],
                [("publishing",)],
            ):
                history.finish(con, run_id, status, {}, timings, error=message.splitlines()[0])
        finally:
            con.close()


def _refused_write_error(exc: BaseException, opts: RunOptions, committed: bool) -> WriteRefusedError | None:
    """One line for a write the machine refused (disk full, read-only, no permission), saying what
    was kept and how to catch up; None for any other failure."""
    if isinstance(exc, (AuditError, KeyboardInterrupt)):
        return None
    problem = refused_write(exc)
    if problem is None:
        return None
    if not committed or opts.warehouse_path is None:
        kept = "nothing was changed" if not committed else "the previous outputs are unchanged"
        return WriteRefusedError(f"could not write ({problem}); {kept}: free space or fix the folder, then run again")
    periods = ""
    if opts.per_month_folders:
        periods = f" --from {opts.months[0]} --to {opts.months[-1]}"
    elif opts.months != [None]:
        periods = f" --month {opts.months[0]}"
    again = f"order-audit run --warehouse {shlex.quote(str(opts.warehouse_path))} --out {shlex.quote(str(opts.out_dir))}{periods}"
    return WriteRefusedError(
        f"could not write the outputs in {opts.out_dir} ({problem}); the previous outputs are unchanged and the "
        f"warehouse already holds this run's data, ahead of the published reports: free space or fix the folder, "
        f"then publish with `{again}`"
    )


def _sweep_leftovers(opts: RunOptions, wh_path: Path) -> None:
    """What a killed run left behind: its scratch folder (we hold the writer lock, so any scratch
    folder of this warehouse is a dead run's), and hidden staging/version folders beside the outputs."""
    for old in wh_path.parent.glob(f".{wh_path.name}.scratch-*"):
        if ownership.remove(old):
            log.info("removed %s (left by an interrupted run)", old)
    folders = [opts.out_dir.parent] + ([opts.out_dir] if opts.per_month_folders else [])
    for folder in folders:
        for old in outputs.sweep(folder):
            log.info("removed %s (left by an interrupted run)", old)


def _execute_locked(
    opts, cfg, inputs, run_id, started, timings, key, key_is_demo, warnings, wh_path: Path, scratch: Path, warm
) -> RunResult:
    gx = warm.gx
    now = dt.datetime.now(dt.UTC)
    prepared: dict = {}
    if inputs is not None:
        with stage("parse", timings):
            prepared = load.prepare_inputs(inputs, cfg, scratch)  # fingerprints the files while parsing
        faults.maybe_fail("after_parse")

    dq_results: list = []
    gate_rejects: dict = {}
    if opts.validate and prepared:
        with stage("gate", timings):
            dq_results, gate_rejects = gate.check_inputs(prepared, cfg, scratch, now, opts.input_dir, gx)
        failed = gate.blocking(dq_results)
        if failed:
            unknown = [u for prep in prepared.values() for u in prep.unknown_values]
            raise QualityGateError(gate.failure_message(failed) + value_maps.note(unknown))
        gate.log_warnings(dq_results)
    warm.start_charts()  # (no-op when started already) it imports matplotlib while the models run

    con = warehouse.connect(wh_path)
    try:
        con.execute("BEGIN TRANSACTION")
        with stage("merge", timings):
            # also (re)defines the src_* views, so a moved warehouse folder reads its own store
            loads = load.merge_inputs(con, prepared, run_id, gate_rejects)
        faults.maybe_fail("after_merge")
        with stage("models", timings):
            ref = reference.load_reference(con, cfg, opts.input_dir)
            con.execute("CREATE OR REPLACE TABLE rule_set AS SELECT ? AS rule_set_version", [ref.rule_set_version])
            warehouse.set_pseudonym_key(con, key)
            reference.set_period(con, None, None)
            # the marts are period-specific: built below, once per reported month
            audit.run_models(con, layers=("staging", "intermediate"))
            gate.record_results(con, run_id, dq_results)
        faults.maybe_fail("after_transform")
        month_counts, revisions = {}, {}
        with stage("marts", timings):
            for month in opts.months:
                reference.set_period(con, month, month, cfg.reporting.trend_months)
                audit.run_models(con, layers=("marts",))
                revisions[_period_label(month)] = history.record_period(con, run_id, _period_label(month))
                month_counts[_period_label(month)] = period_counts(con) | _revision_counts(revisions[_period_label(month)])
            history.committing(con, run_id)
            con.execute("COMMIT")
            source_store.sweep(con)  # files of superseded loads, or moved in by a run that never committed
            # every run rebuilds the models: a checkpoint lets the next run reuse the freed blocks
            con.execute("CHECKPOINT")
    except BaseException as exc:
        with contextlib.suppress(Exception):  # nothing open to roll back
            con.execute("ROLLBACK")
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        with contextlib.suppress(Exception):
            history.finish(con, run_id, status, {}, timings, error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        con.close()
        raise
    rejects = _reject_counts(con)
    warehouse_inputs = history.active_loads(con)
    mature = maturity.assess(con, cfg, now)
    spans = {"cases": period_status.case_span(con), "data": period_status.data_span(con, cfg.site_timezone)}
    con.close()
    for label, counts in month_counts.items():  # `order-audit runs` shows each period's maturity
        counts.update(period_status.maturity_counts(label, mature, spans))

    if opts.validate:
        with stage("output_checks", timings):
            out_checks = gate.check_outputs(wh_path, now, gx)
        dq_results = dq_results + out_checks
        failed = gate.blocking(out_checks)
        if failed:
            _finish(wh_path, run_id, "failed", month_counts, timings, gate.failure_message(failed))
            raise QualityGateError(gate.failure_message(failed))
    if gx is not None:
        gx.close(wait=False)  # no more checks: it exits while the reports are written

    base_info = {
        "run_id": run_id,
        "software_version": software_version(),
        "versions": _versions(),
        "rule_set_version": ref.rule_set_version,
        "code_set_versions": ref.code_set_versions,
        "reference_files": ref.files,
        "inputs": [
            {
                "table": ld.table,
                "path": ld.path,
                "sha256": prepared[ld.table].sha256,
                "action": ld.action,
                "rows_read": ld.rows_read,
                "rows_loaded": ld.rows_loaded,
                "rows_rejected": ld.rows_rejected,
                "values_nulled": ld.values_nulled,
                "rows_updated": ld.rows_updated,
                "rows_removed": ld.rows_removed,
                "ambiguous_local_times": ld.ambiguous_local_times,
            }
            for ld in loads
        ],
        "warehouse_inputs": warehouse_inputs,
        "config": cfg.as_dict(),
        "started_at": started.isoformat(timespec="seconds"),
        "pseudonym_key_is_demo": key_is_demo,
        "maturity": mature.as_dict(),
        "data_quality": [gate.as_dict(r) for r in dq_results],
        "rejects": rejects,
        # coded values (status ...) no map knows: what they are, how many rows, the config lines that map them
        "unknown_values": [u.as_dict() for prep in prepared.values() for u in prep.unknown_values],
        "input_format": "fhir" if any(f.fmt == "fhir" for f in (inputs or {}).values()) else "tables",
        # records the reader left out on purpose, counted (FHIR: entered-in-error, not-done, refuted ...)
        "left_out": [{"table": name, **out} for name, prep in prepared.items() for out in prep.left_out],
        "warnings": warnings,
    }
    con = warehouse.connect(wh_path)
    bar = _progress_bar(opts)
    try:
        warehouse.set_pseudonym_key(con, key)
        for i, month in enumerate(opts.months):
            label = _period_label(month)
            out_dir = outputs.publication_dir(opts.out_dir / label) if opts.per_month_folders else opts.out_dir
            if len(opts.months) > 1:  # one month: the marts still hold it from the transform
                reference.set_period(con, month, month, cfg.reporting.trend_months)
                audit.run_models(con, layers=("marts",))
            per_month = label if len(opts.months) > 1 else None
            with stage("measure", timings, per_month):
                metrics = _build_metrics(con, cfg)
            staging = outputs.staging_dir_for(out_dir)
            try:
                with stage("render", timings, per_month):
                    run_info = {**base_info, "period": label, "counts": {**month_counts[label], **rejects}}
                    run_info["status"] = period_status.build(
                        label, month_counts[label], mature, revisions[label], dq_results, spans
                    )
                    outputs.write_tables(con, staging)
                    _render(con, staging, run_info, metrics, opts, cfg, warm)
                    faults.maybe_fail("mid_render")
                    run_info["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
                    run_info["timings_seconds"] = {k: round(v, 3) for k, v in timings.items()}
                    run_info["files"] = outputs.file_manifest(staging)
                    outputs.write_json(staging / "run.json", run_info)
                outputs.publish(staging, out_dir, version=run_id, on_file=lambda n: faults.maybe_fail("mid_publish", n))
            finally:
                ownership.remove(staging)
            if opts.pdf:
                event(f"wrote {out_dir / 'report.pdf'}", event="pdf_written", path=str(out_dir / "report.pdf"), period=label)
            if bar is not None:
                bar.update(1, label)
            if opts.progress:
                event(
                    f"month {label} done ({i + 1}/{len(opts.months)})",
                    event="month_done",
                    period=label,
                    done=i + 1,
                    total=len(opts.months),
                    level=logging.DEBUG if bar is not None else logging.INFO,
                )
        if bar is not None:
            bar.render_finish()
        if opts.data_docs_dir is not None:
            gate.write_data_docs(dq_results, opts.data_docs_dir)
        gate.record_results(con, run_id, [r for r in dq_results if r.table.startswith(("mart_", "audited", "attrition"))])
        history.finish(con, run_id, "succeeded", month_counts, timings)
    except BaseException as exc:
        # the warehouse transaction has committed; record why the outputs were not (all) published
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        refused = _refused_write_error(exc, opts, committed=True)
        why = (refused or exc).message if isinstance(refused or exc, AuditError) else str(exc)
        with contextlib.suppress(Exception):
            history.finish(
                con,
                run_id,
                status,
                month_counts,
                timings,
                error=f"after the warehouse commit: {why.splitlines()[0] if why else type(exc).__name__}",
            )
        if refused is not None:
            raise refused from None
        raise
    finally:
        con.close()
    total = {k: sum(c[k] for c in month_counts.values()) for k in ("cases", "audited_orders")}
    event(
        f"run {run_id} done: {total['cases']} cases, {total['audited_orders']} audited orders",
        event="run_done",
        run_id=run_id,
        **total,
    )
    return RunResult(run_id, opts.out_dir, month_counts, timings, warnings)


def _progress_bar(opts: RunOptions):
    """A progress bar over the months of a backfill, only when stderr is a terminal."""
    if not (opts.progress_bar and len(opts.months) > 1):
        return None
    import click

    bar = click.progressbar(
        length=len(opts.months), label="order-audit: months", file=sys.stderr, show_pos=True, item_show_func=lambda m: m or ""
    )
    bar.render_progress()
    return bar


def _finish(wh_path: Path, run_id: str, status: str, counts: dict, timings: dict, error: str | None = None) -> None:
    con = warehouse.connect(wh_path)
    try:
        history.finish(con, run_id, status, counts, timings, error=error)
    finally:
        con.close()


def _build_metrics(con, cfg: Config):
    from pipeline import measure

    return measure.build_metrics(con)


def _render(con, staging: Path, run_info: dict, metrics, opts: RunOptions, cfg: Config, warm=None) -> None:
    """The render stage (``warm``: the run's workers; without them the charts are drawn as render decides)."""
    from pipeline import render

    render.render_outputs(
        con,
        staging,
        run_info,
        metrics,
        pdf=opts.pdf,
        reid_file=opts.reid_file,
        chart_pool=charts.ChartPool(process=False, executor=warm.charts) if warm and warm.charts is not None else None,
    )
