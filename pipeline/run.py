"""One run: load -> validate -> audit -> measure -> render, as one unit of work, for every audit it does.

0. Which audits: those named with --audit (default: every audit found), less those the data cannot
   feed (a required table or column absent: skipped, said in the log) or whose folder cannot run.
1. Parse every input file into typed Parquet in a scratch folder (nothing else touched).
2. Data-quality gate on the parsed data (generic suites, then each audit's): blocking failures stop here (exit 3).
3. One warehouse transaction: merge the files (ledger), rebuild the core and the audits' models, record the run.
4. Output checks, metrics and reports per audit, written to a staging folder and moved into place
   (``pipeline.publishing``): ``OUT/<audit id>/`` each, and a site index ``OUT/index.html``.

A failure or a kill at any point leaves the previous warehouse state and outputs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import duckdb

from pipeline import audits as audits_mod
from pipeline import (
    faults,
    history,
    logs,
    maturity,
    ownership,
    period_status,
    preflight,
    publishing,
    spark_state,
    warehouse,
    workers,
)
from pipeline.config import Config, pseudonym_key
from pipeline.errors import (
    AuditError,
    ConfigError,
    QualityGateError,
    WriteRefusedError,
    files_named,
    first_line,
    refused_write,
    run_is_done,
    stop_signal,
    stop_text,
)
from pipeline.ingest import inputs as inputs_mod
from pipeline.ingest import load, reject_listing, remote_input, source_store, spark_read, value_maps
from pipeline.logs import event, stage
from pipeline.models import reference, runner
from pipeline.models import spark as spark_engine
from pipeline.quality import gate
from pipeline.quality import held as held_state
from pipeline.report import outputs, workbook
from pipeline.wording import counted

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
    audits: list[str] = field(default_factory=list)  # --audit: the audits asked for (none: every audit found)
    input_uri: str | None = None  # --input on another file system: input_dir is then the run's copy of it

    def shown(self, text: str) -> str:
        """A file of the input folder (or a label starting with it) as the run names it: relative to a local
        folder (no user's folder in any output; the same bytes from another folder), a fetched copy's by the URI."""
        if self.input_uri is not None:
            return remote_input.shown_as(self.input_dir, self.input_uri)(text)
        return inputs_mod.named_within(self.input_dir)(text)


@dataclass
class RunResult:
    run_id: str
    out_dir: Path
    counts: dict  # audit id -> period -> counts
    timings: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def software_version() -> str:
    try:
        return metadata.version("order-audit")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _versions() -> dict:
    found = {}
    for name in ("duckdb", "polars", "pyarrow", "jinja2", "great-expectations"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return {
        "order-audit": software_version(),
        "order-audit-source": source_commit(),
        "python": platform.python_version(),
        **found,
    }


@functools.cache
def source_commit() -> str | None:
    """The git commit of the checkout the running code is from, '+modified' when its tracked files differ from it;
    None for an installed copy (no .git beside it) or without git. The package's version (0.1.0) stayed one number
    over a thousand commits, the verdicts and feeds changing under it (the dashboard analyst's review): this names
    the code that made the outputs."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    changed = git("status", "--porcelain", "--untracked-files=no")
    return commit + ("+modified" if changed else "")


def check_report_columns(con: duckdb.DuckDBPyConnection, audit) -> None:
    """The columns the audit's [report] names are its marts' (``audits.check_report_columns``): once a run, on the
    first month's marts (every month's have the same columns)."""
    described = lambda table: {row[0] for row in con.execute(f"DESCRIBE {audit.model_name(table)}").fetchall()}  # noqa: E731
    audits_mod.check_report_columns(audit, described("mart_audited_orders"), described("mart_cases"), set(workbook.CASE_COLUMNS))


def period_counts(con: duckdb.DuckDBPyConnection, audit) -> dict:
    """What `runs` records of one audit's period: cases, audited orders, orders by verdict."""
    orders, cases = audit.model_name("mart_audited_orders"), audit.model_name("mart_cases")
    one = lambda sql: con.execute(sql).fetchall()[0][0]  # noqa: E731
    unjudged = con.execute(f"SELECT count(*), min(order_id) FROM {orders} WHERE verdict IS NULL").fetchall()[0]
    if unjudged[0]:  # the audit's models, not the data: every audited order fires a rule of its registry
        raise ConfigError(
            f"{audit.rules_csv}: {unjudged[0]} audited order(s) fire no rule (e.g. order {unjudged[1]}); every order in "
            f"{orders} fires at least one rule (a rule of verdict appropriate says why an order passes)"
        )
    return {
        "cases": one(f"SELECT count(*) FROM {cases}"),
        "audited_orders": one(f"SELECT count(*) FROM {orders}"),
        "verdicts": dict(con.execute(f"SELECT verdict, count(*) FROM {orders} GROUP BY ALL ORDER BY 1").fetchall()),
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
    with ownership.held_temp_dir("order-audit-wh-") as tmp:  # a killed run's is removed by the next
        throw_away = tmp / "warehouse.duckdb"
        try:
            yield throw_away
        except WriteRefusedError as exc:
            # the warehouse's own words name a --warehouse the job never gave: name the temporary folder instead
            named = f"--warehouse {throw_away}: "
            if not exc.message.startswith(named):
                raise
            raise WriteRefusedError(
                f"the run's throw-away warehouse in the temporary folder {tmp.parent}: {exc.message.removeprefix(named)}"
            ) from None


def execute(opts: RunOptions, cfg: Config, warm: workers.Warm | None = None) -> RunResult:
    run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    started = dt.datetime.now(dt.UTC)
    timings: dict = {}
    key, key_is_demo = pseudonym_key(cfg)
    # the gate worker's import of Great Expectations overlaps everything from here on; the CLI
    # starts it even before it imports this module
    with contextlib.ExitStack() as stack:
        # every warning the run logs, as it logs it: run.json's "warnings" (each folder's lists those logged by then)
        warnings = stack.enter_context(logs.warnings_logged())
        if key_is_demo:
            event(
                "pseudonyms use the public demo key: set ORDER_AUDIT_PSEUDONYM_KEY or privacy.key_file "
                "before running on real patient data",
                level=logging.WARNING,
                event="demo_key",
            )
        if warm is None:
            warm = stack.enter_context(workers.Warm(gx=opts.validate))
        with files_named(opts.shown):  # the inputs' file-level checks, before the run is on record
            return _execute(opts, cfg, run_id, started, timings, key, key_is_demo, warnings, warm)


def _execute(opts, cfg, run_id, started, timings, key, key_is_demo, warnings, warm) -> RunResult:
    # the folders and files the run will write, then the inputs' file-level checks: an unusable --out,
    # an unreadable input or a missing column stops the run before the warehouse is touched
    out_root = outputs.publication_dir(opts.out_dir)  # a user's symlink to a folder: that folder
    preflight.check_run(opts, out_root, tuple(a.id for a in audits_mod.discover(cfg.audits_path)))
    opts.out_dir = out_root
    inputs, chosen, skipped = None, [], []
    if opts.input_uri is None:  # a folder on another file system is copied once the run holds the warehouse
        inputs, chosen, skipped = _inputs_and_audits(opts, cfg)
    if cfg.engine == "spark":  # PySpark and Java present, before anything is written
        spark_engine.check_available(cfg.spark)
    with (
        _warehouse_file(opts) as wh_path,
        warehouse.writer_lock(wh_path, run_id, opts.command),
        publishing.publication_lock(out_root, run_id, opts.command, opts.warehouse_path and wh_path),
    ):
        # fail fast (exit 4) when another process holds DuckDB's own lock, before any parsing; the run is
        # on record as 'running' from here (a kill at any later point shows as interrupted in `runs`)
        try:
            con = warehouse.connect(wh_path)
            try:
                warehouse.mark_ours(con)  # what tells this file from someone else's database (check_is_ours)
                history.ensure(con)
                history.start(con, run_id, opts, started, ",".join(a.id for a in chosen))
                rekeyed_since = history.key_changed(con, run_id, key)
            finally:
                con.close()
        except Exception as exc:  # the warehouse's disk full (or its file damaged) before the run is even on record
            refused = _one_line_error(exc, opts, wh_path, committed=False)
            if refused is None:
                raise
            raise refused from None
        if rekeyed_since:  # a rotation is routine (README "Privacy"), but reviewers' earlier lists no longer match
            event(
                f"the pseudonym key changed since run {rekeyed_since}: this run's pseudonyms and episode ids differ "
                "from that run's outputs (orders are compared across the change as before)",
                level=logging.WARNING,
                event="pseudonym_key_changed",
                since_run=rekeyed_since,
            )
        _say_skipped(skipped)
        try:
            _sweep_scratch(wh_path)
            if opts.input_uri is None:
                _sweep_published(opts, chosen)
            scratch = ownership.make_temp_dir(f".{wh_path.name}.scratch-", wh_path.parent)
            try:
                with _engine(cfg, scratch, timings) as spark:
                    state = _spark_state(cfg, spark, wh_path)
                    try:
                        # an input's error names its file as the outputs do, before the run records it
                        with remote_input.names_by_uri(opts.input_uri, scratch / "input"), files_named(opts.shown):
                            if opts.input_uri is not None:
                                inputs, chosen = _fetched_inputs(opts, cfg, spark, scratch / "input", wh_path, run_id, timings)
                            args = (
                                opts,
                                cfg,
                                inputs,
                                chosen,
                                run_id,
                                started,
                                timings,
                                key,
                                key_is_demo,
                                warnings,
                                wh_path,
                                scratch,
                            )
                            result = _execute_locked(*args, warm, spark)
                    except Exception as exc:  # recorded in the warehouse, then in the state (Ctrl-C: the next run's)
                        if state is not None:
                            _record_failure(
                                wh_path, run_id, _refused_write_error(exc, opts, False, wh_path=wh_path) or exc, timings
                            )
                            with contextlib.suppress(Exception):
                                _write_state(state, wh_path, run_id, timings)
                        raise
                    if state is not None:
                        _write_state(state, wh_path, run_id, timings)
                    return result
            finally:
                ownership.remove(scratch)
        except BaseException as exc:
            refused = _one_line_error(exc, opts, wh_path, committed=False)
            _record_failure(wh_path, run_id, refused or exc, timings)
            if refused is not None:
                raise refused from None
            raise


@contextlib.contextmanager
def _engine(cfg: Config, scratch: Path, timings: dict):
    """None for DuckDB; for Spark, the session that runs the models (stopped when the run ends)."""
    if cfg.engine != "spark":
        yield None
        return
    with stage("spark_start", timings):
        (scratch / "spark").mkdir()
        spark = spark_engine.SparkModels(cfg.spark, scratch / "spark")
    where = spark_engine.described(spark.settings)
    event(f"models on Spark {spark.version} ({where})", event="engine", engine="spark", spark_version=spark.version, spark=where)
    try:
        yield spark
    finally:
        spark.close()


def _spark_state(cfg: Config, spark, wh_path: Path) -> spark_state.SparkState | None:
    """The Spark run's state folder ([spark] state, --spark-state), checked against the warehouse before
    anything is parsed; None without one."""
    if spark is None or not cfg.spark.state:
        return None
    state = spark_state.SparkState(spark, cfg.spark.state)
    con = warehouse.connect(wh_path)
    try:
        state.check_warehouse(con)
    finally:
        con.close()
    return state


def _write_state(state: spark_state.SparkState, wh_path: Path, run_id: str, timings: dict) -> None:
    """The warehouse's ledger and run history as the state's next version (after the run is recorded)."""
    with stage("spark_state", timings):
        con = warehouse.connect(wh_path)
        try:
            version = state.write(con, run_id)
        except spark_state.RivalCommitError as exc:
            raise AuditError(
                f"--spark-state {state.uri}: {exc.message}; this run is in the warehouse and its outputs, not in the state, "
                "and another warehouse writes that state folder now: give this warehouse a state folder of its own"
            ) from None
        except Exception as exc:
            raise AuditError(
                f"--spark-state {state.uri}: could not write the ledger and run history ({first_line(exc)}); the warehouse and "
                "outputs hold this run; the next Spark run with this state writes them"
            ) from None
        finally:
            con.close()
    event(f"ledger and run history on Spark: {state.uri} (version {version})", event="spark_state", version=version)


def _engine_info(cfg: Config, spark) -> dict:
    """What run.json records of where the models ran."""
    if spark is None:
        return {"name": "duckdb"}
    return {"name": "spark", "spark_version": spark.version, "spark": spark_engine.described(spark.settings)}


def choose_audits(
    cfg: Config, columns: dict[str, set[str]], asked=(), warehouse_path: Path | None = None, input_dir: Path | None = None
) -> tuple[list, list[tuple[str, str, bool]]]:
    """The audits a run does (``asked``: its --audit ids) and those it skips (id, why, whether a table is there in a
    shape not read), before anything is written:
    an input no audit can use stops here. ``validate`` asks too: their own input checks are part of the gate."""
    known = audits_mod.discover(cfg.audits_path)
    audits_mod.check_config(known, cfg.audits, cfg.source_path or "config")
    present = {t: set(c) for t, c in columns.items()}
    if warehouse_path is not None:  # what earlier runs loaded counts too
        for table, held in source_store.stored_columns(warehouse.real_path(warehouse_path)).items():
            present[table] = present.get(table, set()) | held
    plan = audits_mod.plan(known, asked, present)
    if plan.audits and input_dir is not None and not columns:
        # an --input holding no table's file beside a warehouse that holds them all: the delivery did not come (an
        # empty folder, a wrong path). It republished the months from the warehouse and published the new one as
        # "no cases", exit 0 (the scheduling review); without a warehouse (or with a new one) the missing file's own
        # line says so, exit 2, below
        raise inputs_mod.empty_input_error(input_dir)
    if plan.audits:
        return plan.audits, _with_found(plan.skipped, plan.missing_tables, input_dir)
    if any(why.startswith(audits_mod.NOT_READY) for _, why in plan.skipped):
        # no audit can run and one's folder cannot: that is the first thing to fix, said first. The missing file of
        # another audit, said alone, hid it (a third audit's template with a syntax error: "procedures.csv: required
        # file missing")
        skipped = sorted(plan.skipped, key=lambda s: not s[1].startswith(audits_mod.NOT_READY))
        raise ConfigError("no audit can run: " + "; ".join(f"{a}: {why}" for a, why in skipped))
    if plan.missing_tables:
        table, needed_by = next(iter(plan.missing_tables.items()))
        if warehouse_path is not None:  # a table it held seems absent when its store folder is (a copy of the file alone)
            held_state.require_complete(warehouse_path)
        if input_dir is not None:
            raise inputs_mod.missing_file_error(input_dir, table, needed_by)
        raise ConfigError(f"the warehouse holds no {table} rows, which {', '.join(needed_by)} need; give --input")
    raise ConfigError("no audit can run: " + "; ".join(f"{a}: {why}" for a, why in plan.skipped) or "no audit found")


def _record_failure(wh_path: Path, run_id: str, exc: BaseException, timings: dict) -> None:
    """A run that stopped with an error (input, gate, crash), Ctrl-C or SIGTERM is recorded as such, unless done already."""
    status = "interrupted" if stop_signal(exc) else "failed"
    message = stop_text(exc) or getattr(exc, "message", None) or str(exc) or type(exc).__name__
    with contextlib.suppress(Exception):
        con = warehouse.connect(wh_path)
        try:
            ((was,),) = con.execute("SELECT status FROM audit_runs WHERE run_id = ?", [run_id]).fetchall() or [(None,)]
            if was in ("running", "publishing"):
                # 'publishing': stopped between the commit and the outputs' own record (their checks, say)
                after = "after the warehouse commit: " if was == "publishing" else ""
                history.finish(con, run_id, status, {}, timings, error=after + message.splitlines()[0])
        finally:
            con.close()


def _refused_write_error(
    exc: BaseException, opts: RunOptions, committed: bool, published: list[tuple[str, str]] = (), wh_path: Path | None = None
) -> WriteRefusedError | None:
    """One line for a write the machine refused (disk full, read-only, no permission), saying what
    was kept and how to catch up; None for any other failure. ``published``: the month folders a backfill
    published before the failure, (audit id, month) (new; the rest as they were); ``wh_path``: the warehouse
    the run opened (a throw-away one's is in the temporary folder)."""
    if isinstance(exc, AuditError) or stop_signal(exc):
        return None
    problem = refused_write(exc)
    if problem is None:
        return None
    if committed and opts.warehouse_path is None:  # the throw-away warehouse took the run: the outputs did not
        return WriteRefusedError(
            f"could not write the outputs in {opts.out_dir} ({problem}); the previous outputs are unchanged: "
            "free space or fix the folder, then run again"
        )
    if not committed:
        # Python's own write and close name no file ('No space left on device'): the line then names the folders
        # a run writes in before its commit, else "fix the folder" left the operator to guess which
        where = "" if os.sep in problem else f" in {_scratch_places(opts, wh_path)}"
        return WriteRefusedError(
            f"could not write{where} ({problem}); nothing was changed: free space or fix the folder, then run again"
        )
    again = _publish_again(opts)
    kept = "the previous outputs are unchanged"
    if published and opts.per_month_folders:  # a backfill publishes month by month: those before the failure are out
        folders = ["/".join(p) for p in published[:3]]  # as they are named under --out: <audit id>/2026-04
        shown = ", ".join(folders) + (f" and {len(published) - 3:,} more" if len(published) > 3 else "")
        kept = f"this run published {counted(len(published), 'month folder')} before it ({shown}), the others are unchanged"
    return WriteRefusedError(
        f"could not write the outputs in {opts.out_dir} ({problem}); {kept} and the "
        f"warehouse already holds this run's data, ahead of the published reports: free space or fix the folder, "
        f"then publish with `{again}`"
    )


def _after_commit_error(exc: BaseException, opts: RunOptions, wh_path: Path) -> WriteRefusedError | None:
    """The line for a write refused between the warehouse's commit and the outputs (its checkpoint: DuckDB writes the
    committed data from its log into the file): the data is in the log, which the next open replays. It said "nothing
    was changed", and the rerun found its delivery 'already loaded' (the scheduling review). None for any other
    failure, and for a throw-away warehouse (nothing of it is kept)."""
    problem = refused_write(exc) if opts.warehouse_path is not None and not stop_signal(exc) else None
    if problem is None:
        return None
    return WriteRefusedError(
        f"could not write in {wh_path.parent} (the warehouse's folder) as DuckDB checkpointed this run's committed data "
        f"({problem}); the outputs are as they were and the warehouse holds the data: free space, then publish with "
        f"`{_publish_again(opts)}`"
    )


def _publish_again(opts: RunOptions) -> str:
    """The command that publishes the run's periods from the warehouse that holds its data."""
    periods = ""
    if opts.per_month_folders:
        periods = f" --from {opts.months[0]} --to {opts.months[-1]}"
    elif opts.months != [None]:
        periods = f" --month {opts.months[0]}"
    return f"order-audit run --warehouse {shlex.quote(str(opts.warehouse_path))} --out {shlex.quote(str(opts.out_dir))}{periods}"


def _scratch_places(opts: RunOptions, wh_path: Path | None) -> str:
    """The folders a run writes in before its commit: the warehouse's (its scratch folder beside it), and the
    temporary folder (a throw-away warehouse, the data-quality gate's own files)."""
    temp = tempfile.gettempdir()
    if opts.warehouse_path is None or wh_path is None or str(wh_path.parent) == temp:
        return f"the temporary folder {temp}"
    return f"{wh_path.parent} (the warehouse's folder) or the temporary folder {temp}"


def _one_line_error(
    exc: BaseException, opts: RunOptions, wh_path: Path, committed: bool, published: list[tuple[str, str]] = ()
) -> AuditError | None:
    """The one line for a failure that is the machine's or the warehouse file's, not a bug: a refused write, then a
    damaged warehouse; None for any other failure, which stays what it is."""
    return (
        _refused_write_error(exc, opts, committed, published, wh_path)
        or _damaged_error(exc, opts, wh_path, committed)
        or _store_damaged_error(exc, opts, wh_path, committed)
    )


def _store_damaged_error(exc: BaseException, opts: RunOptions, wh_path: Path, committed: bool) -> ConfigError | None:
    """One line for a file of the warehouse's store gone or damaged (``warehouse.store_damage_error``)."""
    if isinstance(exc, AuditError) or stop_signal(exc) or opts.warehouse_path is None:
        return None
    kept = (
        "this run had committed its data; the outputs it had not published are as they were"
        if committed
        else "this run loaded nothing into it and published nothing"
    )
    return warehouse.store_damage_error(exc, wh_path, kept)


def _damaged_error(exc: BaseException, opts: RunOptions, wh_path: Path, committed: bool) -> ConfigError | None:
    """One line for a warehouse file DuckDB finds damaged while the run reads it (a checksum that does not match, a
    block cut off), wherever it shows first; None for any other failure, which stays what it is."""
    if isinstance(exc, AuditError) or stop_signal(exc) or opts.warehouse_path is None:
        return None  # a throw-away warehouse is the run's own file: nothing of the user's to restore
    problem = warehouse.damage(exc, wh_path)
    if problem is None:
        return None
    kept = (
        "this run had committed its data; the outputs it had not published are as they were"
        if committed
        else "this run loaded nothing into it and published nothing"
    )
    return warehouse.damaged_error(opts.warehouse_path, problem, kept)


def _inputs_and_audits(opts: RunOptions, cfg: Config) -> tuple[dict | None, list, list[tuple[str, str]]]:
    """The input folder's files (their headers checked) and the audits they feed: (inputs, chosen, skipped)."""
    inputs, columns = None, {}
    if opts.input_dir is not None:
        inputs = load.find_inputs(opts.input_dir, cfg, opts.shown)
        columns = load.check_headers(inputs, cfg)
    chosen, skipped = choose_audits(cfg, columns, opts.audits, opts.warehouse_path, opts.input_dir)
    return inputs, chosen, skipped


def _fetched_inputs(opts: RunOptions, cfg: Config, spark, into: Path, wh_path: Path, run_id: str, timings: dict):
    """A folder on another file system, copied into the run's scratch through its Spark session (once the
    run holds the warehouse and the state accepts it: a refused run copies nothing), then checked as a local
    folder; the run's record gets its audits. Returns (inputs, chosen)."""
    if spark is None:
        raise remote_input.refused_with(cfg.engine, cfg.spark.remote, opts.input_uri)
    with stage("fetch", timings):
        opts.input_dir = remote_input.fetch(spark.session, opts.input_uri, into)
    inputs, chosen, skipped = _inputs_and_audits(opts, cfg)
    con = warehouse.connect(wh_path)
    try:
        history.set_audits(con, run_id, ",".join(a.id for a in chosen))
    finally:
        con.close()
    _say_skipped(skipped)
    _sweep_published(opts, chosen)
    return inputs, chosen


def _with_found(skipped: list[tuple[str, str]], missing: dict[str, list[str]], input_dir: Path | None) -> list:
    """An audit skipped for a table the folder lacks, when the folder holds it in a shape not read (compressed, in
    parts): the skip says so, and is a warning. A folder with procedures.csv.gz dropped the CSF-leak audit with an
    info line that -q hid, exit 0 (a hostile review)."""
    out = []
    for audit_id, why in skipped:
        table = next((t for t, ids in missing.items() if audit_id in ids), None)
        hint, todo = inputs_mod.found_like(input_dir, table) if table and input_dir is not None else ("", None)
        out.append((audit_id, f"{why}{hint}; {todo}" if todo else why, bool(todo)))
    return out


def _say_skipped(skipped: list[tuple[str, str, bool]]) -> None:
    for audit_id, why, unread in skipped:  # said once the run is on: an error before it stays one line
        level = logging.WARNING if unread else logging.INFO  # a table there in a shape not read
        event(f"{audit_id} skipped: {why}", level=level, event="audit_skipped", audit_id=audit_id, reason=why)


def _sweep_scratch(wh_path: Path) -> None:
    """A killed run's scratch folder: we hold the writer lock, so any scratch folder of this warehouse is a dead run's."""
    for old in wh_path.parent.glob(f".{wh_path.name}.scratch-*"):
        if ownership.remove(old):
            log.info("removed %s (left by an interrupted run)", old)


def _sweep_published(opts: RunOptions, chosen: list) -> None:
    """Hidden staging and version folders a killed run left beside the outputs."""
    folders = [opts.out_dir.parent]
    if outputs.staged_inside(opts.out_dir):  # a mount point: its staging folder was inside it
        folders.append(opts.out_dir)
    if opts.per_month_folders:  # a backfill publishes OUT/<audit>/<month>/ one by one
        folders += [opts.out_dir] + [opts.out_dir / a.id for a in chosen]
    for folder in folders:
        for old in outputs.sweep(folder):
            log.info("removed %s (left by an interrupted run)", old)


def _execute_locked(
    opts, cfg, inputs, chosen, run_id, started, timings, key, key_is_demo, warnings, wh_path: Path, scratch: Path, warm, spark
) -> RunResult:
    gx = warm.gx
    now = dt.datetime.now(dt.UTC)
    prepared: dict = {}
    site_map = held = None
    if inputs is not None:
        # what the warehouse holds, read once: the site code map it keeps (the run maps codes with it when none is
        # given, so an export's reader picks codings by it and the gate judges the codes by it, as the run will),
        # and the loads and set-aside rows of the extracts loaded before, which the gate judges a monthly one with
        held = held_state.read(wh_path)
        site_map = held.site_map if held is not None else None
        with stage("parse", timings):
            # fingerprints the files while parsing; a local Spark reads and types CSV and Parquet itself
            writer = spark_read.typed_writer(spark) if spark is not None and spark.reads_inputs else None
            prepared = load.prepare_inputs(inputs, cfg, scratch, typed_writer=writer, shown=opts.shown, kept_map=site_map)
        faults.maybe_fail("after_parse")

    models = runner.core_models() + [m for a in chosen for m in runner.audit_models(a)]
    # the models' graph checked now (sqlglot parses each model once, 0.2 s, kept for the run): before the
    # gate, that time is spent while the GX worker still imports instead of in the models stage
    runner.execution_order(models)
    dq_results: list = []
    gate_rejects: dict = {}
    if opts.validate and prepared:
        with stage("gate", timings):
            dq_results, gate_rejects = gate.check_inputs(prepared, cfg, scratch, now, opts.input_dir, gx, chosen, spark, held)
        failed = gate.blocking(dq_results)
        if failed:
            unknown = [u for prep in prepared.values() for u in prep.unknown_values]
            raise gate.stop_error(failed, value_maps.note(unknown))

    con = warehouse.connect(wh_path)
    committed = False
    try:
        con.execute("BEGIN TRANSACTION")
        with stage("merge", timings):
            # also (re)defines the src_* views, so a moved warehouse folder reads its own store
            loads = load.merge_inputs(con, prepared, run_id, gate_rejects)
        # logged once the merge knows what is new: a run that loads nothing new repeats an earlier run's
        # findings on the same files, at info level (a scheduler alerting on warnings is not paged again)
        nothing_new = all(ld.action == "skipped_already_loaded" for ld in loads)  # no --input: nothing new either
        gate.log_warnings(dq_results, gate.earlier_reports(con, dq_results) if loads and nothing_new else None)
        faults.maybe_fail("after_merge")
        with stage("models", timings):
            ref = reference.load_reference(con, cfg, opts.input_dir, chosen, opts.shown)
            for kept in (f for f in ref.files if f["source"] == "warehouse"):
                log.info("site code map: none given; the one the warehouse kept, from %s", kept["path"])
            con.execute("CREATE OR REPLACE TABLE input_columns (table_name VARCHAR, column_name VARCHAR)")
            con.executemany("INSERT INTO input_columns VALUES (?, ?)", source_store.present_columns(con))
            warehouse.set_pseudonym_key(con, key)
            reference.set_period(con, None, None)
            # the marts are period-specific: built below, once per reported month
            runner.run_models(con, models, layers=("stg", "int"), spark=spark)
            gate.record_results(con, run_id, dq_results)
        faults.maybe_fail("after_transform")
        month_counts: dict = {a.id: {} for a in chosen}
        revisions: dict = {a.id: {} for a in chosen}
        case_spans: dict = {}
        with stage("marts", timings):
            for i, month in enumerate(opts.months):
                label = _period_label(month)
                reference.set_period(con, month, month, cfg.reporting.trend_months)
                runner.run_models(con, models, layers=("mart",), spark=spark)
                for audit in chosen:
                    if i == 0:
                        check_report_columns(con, audit)
                    revisions[audit.id][label] = history.record_period(con, run_id, label, audit.id)
                    counts = period_counts(con, audit) | _revision_counts(revisions[audit.id][label])
                    month_counts[audit.id][label] = counts
                    if month is None:
                        case_spans[audit.id] = period_status.case_span(con, audit)
            history.committing(con, run_id)
            con.execute("COMMIT")
            committed = True
            source_store.sweep(con)  # files of superseded loads, or moved in by a run that never committed
            # every run rebuilds the models: a checkpoint lets the next run reuse the freed blocks
            con.execute("CHECKPOINT")
    except BaseException as exc:
        with contextlib.suppress(Exception):  # nothing open to roll back
            con.execute("ROLLBACK")
        if not committed:  # the files this run moved into the source store: no load names them
            source_store.discard(wh_path, run_id)
        after_commit = _after_commit_error(exc, opts, wh_path) if committed else None
        status = "interrupted" if stop_signal(exc) else "failed"
        why = stop_text(exc) or (str(after_commit or exc).splitlines()[0] if str(exc) else type(exc).__name__)
        with contextlib.suppress(Exception):
            history.finish(con, run_id, status, {}, timings, error=why)
        con.close()
        if after_commit is not None:
            raise after_commit from None
        raise
    rejects = reject_listing.totals(con)
    warehouse_inputs = history.active_loads(con)
    matured = {a.id: maturity.assess(con, cfg, now, audits_mod.maturity_horizon_days(a, ref.parameters[a.id])) for a in chosen}
    # each audit's empty month names the dates of the feeds its cases and orders come from (its required tables)
    feed_dates = {a.id: period_status.feed_dates(con, cfg.site_timezone, a.required_tables) for a in chosen}
    con.close()
    per_feed = {a.id: period_status.feed_spans(feed_dates[a.id]) for a in chosen}
    spans = {
        a.id: {
            "cases": case_spans.get(a.id, (None, None)),
            "data": period_status.spanning(per_feed[a.id]),
            "per_feed": per_feed[a.id],
            "feed_months": {f: months for f, (_, _, months) in feed_dates[a.id].items()},
            # this run's extract, table -> its months (None: no --input), and whether it brought nothing new
            "delivered": {t: (p.first_month, p.last_month) for t, p in prepared.items()} if opts.input_dir is not None else None,
            "nothing_new": nothing_new,
            "feeds": period_status.feeds_in_words(a.required_tables),
        }
        for a in chosen
    }
    for audit in chosen:  # `order-audit runs` shows each period's maturity
        for label, counts in month_counts[audit.id].items():
            counts.update(period_status.maturity_counts(label, matured[audit.id], spans[audit.id]))

    if opts.validate:
        with stage("output_checks", timings):
            out_checks = gate.check_outputs(wh_path, now, gx, chosen, spark)
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
        "engine": _engine_info(cfg, spark),
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
                # a FHIR export's lines of looked-up types rejected with the table (an order's Encounter line)
                **_supporting_lines(prepared.get(ld.table)),
            }
            for ld in loads
        ],
        "warehouse_inputs": warehouse_inputs,
        "config": cfg.as_dict(),
        "audits_run": [a.id for a in chosen],
        "started_at": started.isoformat(timespec="seconds"),
        "pseudonym_key_is_demo": key_is_demo,
        "data_quality": [gate.as_dict(r) for r in dq_results],
        "rejects": rejects,
        # coded values (status ...) no map knows: what they are, how many rows, the config lines that map them
        "unknown_values": [u.as_dict() for prep in prepared.values() for u in prep.unknown_values],
        "input_format": "fhir" if any(f.fmt == "fhir" for f in (inputs or {}).values()) else "tables",
        # records the reader left out on purpose, counted (FHIR: entered-in-error, not-done, refuted ...)
        "left_out": [{"table": name, **out} for name, prep in prepared.items() for out in prep.left_out],
        # a FHIR export's manifest.json, when the client saved one: its hash, transactionTime, files listed
        "export_manifest": next((prep.export_manifest for prep in prepared.values() if prep.export_manifest), None),
        **_extract_declared(cfg),
    }
    audit_info = {
        a.id: {
            "audit": {
                "id": a.id,
                "title": a.title,
                "version": a.version,
                "case_unit": a.case_unit,
                "short_title": a.short_title,
                "guideline": a.guideline,
                "parameters": ref.parameters[a.id],
                "measures": [
                    {"id": m.id, "label": m.label, "unit": m.unit, "direction": m.direction, "headline": m.headline}
                    for m in a.measures
                ],
            },
            "rule_set_version": ref.rule_set_versions[a.id],
            "code_set_versions": ref.code_set_versions[a.id],
            "maturity": matured[a.id].as_dict(),
        }
        for a in chosen
    }
    # an audit's counts: the totals (what was cut is said once, in run.json's rejects)
    reject_counts = {k: rejects[k] for k in ("rejected_rows", "nulled_values")}
    con = warehouse.connect(wh_path)
    bar = _progress_bar(opts)
    published: list[tuple[str, str]] = []  # (audit id, period) of the folders out so far: new, on a failure

    def record_published(audit_id: str, label: str) -> None:
        # committed as each folder is out, before the next is rendered: a run killed later (SIGKILL, which runs no
        # handler) has still told the next run what its folders said (history.period_statuses: "final since")
        published.append((audit_id, label))
        history.published(con, run_id, month_counts, published)

    try:
        warehouse.set_pseudonym_key(con, key)
        for i, month in enumerate(opts.months):
            label = _period_label(month)
            if len(opts.months) > 1:  # one month: the marts still hold it from the transform
                reference.set_period(con, month, month, cfg.reporting.trend_months)
                runner.run_models(con, models, layers=("mart",), spark=spark)
            _record_found_folders(con, opts, chosen, label, run_id)
            period = publishing.Period(
                label=label,
                warned=warnings,
                base_info=base_info,
                audit_info=audit_info,
                counts={a.id: {**month_counts[a.id][label], **reject_counts} for a in chosen},
                statuses={
                    a.id: period_status.build(
                        a.id,
                        label,
                        month_counts[a.id][label],
                        matured[a.id],
                        revisions[a.id][label],
                        dq_results,
                        spans[a.id],
                        history.period_statuses(con, run_id, label, a.id),  # a month published provisional before
                        case_unit=a.case_unit,
                    )
                    for a in chosen
                },
            )
            publishing.publish_period(con, chosen, period, opts, cfg, timings, record_published)
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
        gate.record_results(con, run_id, out_checks if opts.validate else [])
        history.finish(con, run_id, "succeeded", month_counts, timings)
        run_is_done()  # a stop from here on lets the clean-up finish, and the run ends 0 as `runs` says
    except BaseException as exc:
        # the warehouse transaction has committed; record why the outputs were not (all) published
        status = "interrupted" if stop_signal(exc) else "failed"
        refused = _one_line_error(exc, opts, wh_path, committed=True, published=published)
        why = stop_text(exc) or ((refused or exc).message if isinstance(refused or exc, AuditError) else str(exc))
        with contextlib.suppress(Exception):
            # recorded as each was out (record_published); again in case a stop landed inside that record
            history.published(con, run_id, month_counts, published)
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
    for audit in chosen:
        total = {k: sum(c[k] for c in month_counts[audit.id].values()) for k in ("cases", "audited_orders")}
        event(
            f"{audit.id}: {counted(total['cases'], audit.case_unit)}, {counted(total['audited_orders'], 'audited order')}",
            event="audit_done",
            audit_id=audit.id,
            **total,
        )
    totals = {k: sum(c[k] for a in chosen for c in month_counts[a.id].values()) for k in ("cases", "audited_orders")}
    # the message names the audits only: each audit's line above counts its own unit (cases, episodes), which
    # do not add up; the JSON event keeps its documented sums for schedulers that read them
    event(
        f"run {run_id} done ({', '.join(a.id for a in chosen)})",
        event="run_done",
        run_id=run_id,
        audits=[a.id for a in chosen],
        **totals,
    )
    faults.maybe_fail("after_done")  # a scheduler's stop as the run ends (tests: ORDER_AUDIT_FAULT_SIGNAL=TERM)
    return RunResult(run_id, opts.out_dir, month_counts, timings, warnings.about())


def _record_found_folders(con: duckdb.DuckDBPyConnection, opts: RunOptions, chosen: list, label: str, run_id: str) -> None:
    """The folders this run is about to replace that an earlier run published but never recorded (killed in the
    instant between a folder's switch and its record): their run.json says what readers saw, so the history
    takes it in before this run reads it (``history.period_statuses``: who first published the period final)."""
    for audit in chosen:
        folder = opts.out_dir / audit.id / label if opts.per_month_folders else opts.out_dir / audit.id
        info = ownership.run_record(folder / "run.json")
        if info is None or info["run_id"] == run_id or info.get("period") != label or not isinstance(info.get("counts"), dict):
            continue
        if history.found_published(con, info["run_id"], audit.id, label, info["counts"]):
            log.info("%s: run %s published it but did not record it (killed?); recorded now", folder, info["run_id"])


def _extract_declared(cfg: Config) -> dict:
    """How far the site's config says the extract reaches ([extract]), as the instants (UTC) the volume check judges
    its months by; nothing when it says nothing (a run.json of such a run is as it was)."""
    declared = {name: cfg.extract.declared(name, cfg.site_timezone) for name in ("data_since", "data_through")}
    if not any(declared.values()):
        return {}
    return {"extract_declared": {name: when.isoformat() if when else None for name, when in declared.items()}}


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


def _supporting_lines(prep) -> dict:
    """run.json ``inputs[].supporting_lines_rejected`` of a FHIR export's table: lines of the types looked up for it
    (Encounter, Location, Practitioner for the orders; Patient for the procedures) counted in its rows_read and
    rows_rejected, rows of no table; absent for an extract's."""
    own = prep.export_rejected if prep is not None else None
    return {"supporting_lines_rejected": own["supporting"]} if own else {}
