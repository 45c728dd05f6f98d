"""One run: load -> validate -> audit -> measure -> render, as one unit of work.

The warehouse changes inside one transaction (a failure or a kill leaves the previous
state); outputs are written to a staging folder and moved into place file by file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import platform
import shutil
import uuid
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from pipeline import audit, load, outputs, reference, warehouse
from pipeline.config import Config, pseudonym_key
from pipeline.logs import event, stage

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    input_dir: Path
    out_dir: Path
    warehouse_path: Path
    first_month: str | None = None
    last_month: str | None = None
    validate: bool = True
    pdf: bool = False
    reid_file: Path | None = None
    data_docs_dir: Path | None = None


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
    names = ("duckdb", "polars", "pyarrow", "jinja2", "great-expectations")
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return {"order-audit": software_version(), "python": platform.python_version(), **found}


def _counts(con) -> dict:
    q = lambda sql: con.execute(sql).fetchall()[0][0]  # noqa: E731
    verdicts = dict(con.execute("SELECT verdict, count(*) FROM mart_audited_orders GROUP BY ALL ORDER BY 1").fetchall())
    return {
        "index_procedures": q("SELECT count(*) FROM mart_index_procedures"),
        "cases": q("SELECT count(*) FROM mart_cases"),
        "audited_orders": q("SELECT count(*) FROM mart_audited_orders"),
        "verdicts": verdicts,
        "rejected_rows": dict(con.execute("""SELECT table_name, count(DISTINCT source_line) FROM load_rejects
            WHERE action = 'row_rejected' GROUP BY ALL ORDER BY 1""").fetchall()),
        "nulled_values": q("SELECT count(*) FROM load_rejects WHERE action = 'value_nulled'"),
    }


def execute(opts: RunOptions, cfg: Config) -> RunResult:
    run_id = uuid.uuid4().hex[:12]
    started = dt.datetime.now(dt.UTC)
    timings: dict = {}
    key, key_is_demo = pseudonym_key(cfg)
    warnings = []
    if key_is_demo:
        warnings.append("pseudonyms use the public demo key: set ORDER_AUDIT_PSEUDONYM_KEY or privacy.key_file "
                        "before running on real patient data")
        event(warnings[-1], level=logging.WARNING, event="demo_key")

    # file-level checks first: nothing is touched when an input cannot be read
    inputs = load.find_inputs(opts.input_dir)
    con = warehouse.connect(opts.warehouse_path)
    try:
        con.execute("BEGIN TRANSACTION")
        with stage("load", timings):
            loads = load.load_inputs(con, inputs, cfg, scratch_dir=opts.warehouse_path.parent)
        with stage("transform", timings):
            ref = reference.load_reference(con, cfg, opts.input_dir)
            con.execute("CREATE OR REPLACE TABLE rule_set AS SELECT ? AS rule_set_version", [ref.rule_set_version])
            reference.set_period(con, opts.first_month, opts.last_month)
            warehouse.set_pseudonym_key(con, key)
            audit.run_models(con)
        con.execute("COMMIT")
        counts = _counts(con)

        with stage("measure", timings):
            metrics = _build_metrics(con, cfg)

        staging = outputs.staging_dir_for(opts.out_dir)
        try:
            with stage("render", timings):
                run_info = {
                    "run_id": run_id,
                    "software_version": software_version(),
                    "versions": _versions(),
                    "rule_set_version": ref.rule_set_version,
                    "code_set_versions": ref.code_set_versions,
                    "reference_files": ref.files,
                    "inputs": [
                        {"table": ld.table, "path": ld.path, "sha256": reference.sha256_file(Path(ld.path)),
                         "rows_read": ld.rows_read, "rows_loaded": ld.rows_loaded,
                         "rows_rejected": ld.rows_rejected, "values_nulled": ld.values_nulled,
                         "ambiguous_local_times": ld.ambiguous_local_times}
                        for ld in loads
                    ],
                    "config": cfg.as_dict(),
                    "period": _period_label(opts),
                    "started_at": started.isoformat(timespec="seconds"),
                    "pseudonym_key_is_demo": key_is_demo,
                    "data_quality": [],
                    "counts": counts,
                    "warnings": warnings,
                }
                outputs.write_tables(con, staging)
                _render(con, staging, run_info, metrics, opts, cfg)
                run_info["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
                run_info["timings_seconds"] = {k: round(v, 3) for k, v in timings.items()}
                outputs.write_json(staging / "run.json", run_info)
            outputs.publish(staging, opts.out_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        with contextlib.suppress(Exception):  # nothing open to roll back
            con.execute("ROLLBACK")
        raise
    finally:
        con.close()
    event(f"run {run_id} done: {counts['cases']} cases, {counts['audited_orders']} audited orders",
          event="run_done", run_id=run_id, **{k: v for k, v in counts.items() if not isinstance(v, dict)})
    return RunResult(run_id, opts.out_dir, counts, timings, warnings)


def _period_label(opts: RunOptions) -> str:
    if opts.first_month is None and opts.last_month is None:
        return "all"
    if opts.first_month == opts.last_month:
        return opts.first_month
    return f"{opts.first_month or '...'}..{opts.last_month or '...'}"


def _build_metrics(con, cfg: Config):
    from pipeline import measure

    return measure.build_metrics(con, min_cell_count=cfg.reporting.min_cell_count)


def _render(con, staging: Path, run_info: dict, metrics, opts: RunOptions, cfg: Config) -> None:
    from pipeline import render

    render.render_outputs(con, staging, run_info, metrics, pdf=opts.pdf, reid_file=opts.reid_file,
                          min_cell_count=cfg.reporting.min_cell_count)
