"""The order-audit command line: commands, options, exit codes; nothing else.

Exit codes: 0 ok, 1 usage or configuration error, 2 input error, 3 data-quality gate
failed, 4 another run holds the warehouse, 70 a bug (an unexpected exception), 130 interrupted
(SIGINT), 143 stopped (SIGTERM).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import click

from pipeline import months as months_mod
from pipeline.errors import (
    EXIT_BUG,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    AuditError,
    bounded,
    files_named,
    first_line,
    printable,
    raise_if_stopped,
    refused_write,
    request_stop,
    stop_after_done,
    stop_signal,
    stop_text,
)
from pipeline.logs import event, json_logging, setup_logging
from pipeline.wording import counted


def _month(ctx, param, value):
    if value is not None and not months_mod.is_month(value):
        # quoted back on one line: a line break in it forged a second error line, 100 KB of it filled the screen
        raise click.BadParameter(bounded(f"'{printable(value)}' is not a month like 2026-10"))
    return value


def _input_folder(ctx, param, value):
    """--input as a folder: a path or a file:// URI (a Path); a URI of another file system (s3a://, abfss://,
    gs://, hdfs://) kept as text: a Spark run copies it through its session (``remote_input``)."""
    from urllib.parse import unquote, urlparse

    from pipeline.ingest import remote_input

    if value is None or "://" not in value:
        return None if value is None else Path(value)
    if remote_input.is_remote(value):
        return value
    uri = urlparse(value)
    if uri.netloc not in ("", "localhost"):
        raise click.BadParameter(f"{value}: a file:// URI names this machine's folder (file:///path); give the path")
    return Path(unquote(uri.path))


def _input_format_option(f):
    return click.option(
        "--input-format",
        type=click.Choice(["auto", "tables", "fhir"]),
        default=None,
        help="tables: CSV/Parquet/Excel extracts; fhir: a FHIR R4 Bulk Data export (NDJSON files, .gz too); "
        "auto: told by the folder's files [config: input_format; auto].",
    )(f)


def _logging_options(f):
    f = click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="Log lines on stderr as text or one JSON object per line (for schedulers).",
    )(f)
    f = click.option("--quiet", "-q", is_flag=True, help="Only warnings and errors on stderr.")(f)
    f = click.option("--verbose", "-v", is_flag=True, help="Debug detail on stderr.")(f)
    return f


def _log_as_asked(log_format: str, quiet: bool, verbose: bool) -> None:
    """The log as ``_logging_options`` asked for it (every command that takes them starts here)."""
    setup_logging(log_format, 1 if verbose else (-1 if quiet else 0))


class _Stopped(Exception):
    """A KeyboardInterrupt (Ctrl-C, or SIGTERM: ``errors.Terminated``) carried past click, which would turn it into
    ``Abort``: exit 1 ("fix the job, do not retry") and a blank line on stderr, instead of 130 or 143. ``command``:
    the command click resolved (None: stopped before it had), which the last line's advice depends on."""

    def __init__(self, command: str | None):
        super().__init__(command)
        self.command = command


class _OutputClosed(Exception):
    """stdout's reader went away (`order-audit runs | head`), carried past click, which would exit 1 (a
    configuration error, in the exit-code table) instead of ending as a Unix tool does (by SIGPIPE)."""


def _stdout_closed() -> bool:
    """Whether stdout is a pipe (or socket) nobody reads any more: poll reports an error on its write end."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no stdout, or not a file descriptor
        return False


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            done = super().invoke(ctx)
            raise_if_stopped()  # a stop a library swallowed (its own error, caught): still a stop, not exit 0
            return done
        except KeyboardInterrupt as exc:
            raise _Stopped(ctx.invoked_subcommand) from exc
        except BrokenPipeError as exc:
            if _stdout_closed():  # not a pipe of the run's own (its workers')
                raise _OutputClosed() from exc
            if stop_signal(exc):
                raise _Stopped(ctx.invoked_subcommand) from exc
            raise
        except (AuditError, click.ClickException):  # said as they are (main), as before a stop
            raise
        except Exception as exc:
            if stop_signal(exc):  # a stop a library turned into its own error (DuckDB: "Query interrupted")
                raise _Stopped(ctx.invoked_subcommand) from exc
            raise


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="order-audit")
def cli():
    """Audit imaging orders against clinical guidelines: every audit folder found (`order-audit audits`
    lists them), each with its own report under --out."""


def _months(month, first, last) -> tuple[list, bool]:
    """The months a run reports and whether each gets its own folder (a backfill)."""
    if month and (first or last):
        raise click.UsageError("use either --month or --from/--to")
    if (first is None) != (last is None):
        raise click.UsageError("--from and --to go together")
    if first:
        if first > last:
            raise click.UsageError(f"--from {first} is after --to {last}")
        return months_mod.month_range(first, last), True
    return [month], False


@cli.command()
@click.option(
    "--input",
    "input_dir",
    callback=_input_folder,
    default=None,
    metavar="DIR",
    help="Folder (a path, a file:// URI, or with --engine spark any URI Spark's Hadoop reads: s3a://, abfss://, "
    "gs://, hdfs://) with procedures, imaging_orders and optionally diagnoses (.csv or .parquet), "
    "or a FHIR Bulk Data export (NDJSON), and optionally local_code_map.csv. Without it, the run re-audits what the "
    "warehouse holds.",
)
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option(
    "--warehouse",
    "warehouse_path",
    type=click.Path(path_type=Path),
    default=None,
    help="DuckDB warehouse file kept across runs [config: warehouse; default: a throw-away file].",
)
@click.option("--site-timezone", default=None, help="IANA zone for times without an offset [America/New_York].")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None, help="TOML settings file.")
@click.option(
    "--month",
    callback=_month,
    default=None,
    help="Audit the cases whose index is in this month (YYYY-MM). Without --month or --from, all the loaded data is one "
    "period ('all'). Not with --from/--to.",
)
@click.option(
    "--from",
    "first",
    callback=_month,
    default=None,
    help="Backfill from this month (YYYY-MM), one folder per month; not with --month.",
)
@click.option("--to", "last", callback=_month, default=None, help="Backfill up to this month (YYYY-MM), inclusive.")
@click.option("--no-validate", is_flag=True, help="Skip the Great Expectations data-quality gate.")
@click.option(
    "--data-docs",
    "data_docs",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write Great Expectations Data Docs (HTML) of the checks here.",
)
@_input_format_option
@click.option("--pdf", is_flag=True, help="Also write report.pdf.")
@click.option(
    "--audit",
    "audit_ids",
    multiple=True,
    help="Run this audit (repeatable; `order-audit audits` lists them). Default: every audit the input can feed.",
)
@click.option(
    "--reid-file",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the pseudonym -> patient id crosswalk here (restricted: mode 0600).",
)
@click.option(
    "--engine",
    type=click.Choice(["duckdb", "spark"]),
    default=None,
    help="Where the models run [config: engine; default duckdb]. spark: a local Spark ([spark] master, "
    "default local[*]) or a Spark Connect server (--spark-remote).",
)
@click.option(
    "--spark-remote",
    default=None,
    metavar="sc://HOST:PORT",
    help="With --engine spark: attach to this Spark Connect server [$SPARK_REMOTE; config: [spark] remote].",
)
@click.option(
    "--spark-state",
    default=None,
    metavar="URI",
    help="With --engine spark: keep the load ledger and run history here too, as Parquet written through Spark "
    "(a folder or any URI Spark writes: s3a://, abfss://, gs://) [config: [spark] state].",
)
@_logging_options
def run(
    input_dir,
    out_dir,
    warehouse_path,
    site_timezone,
    config_path,
    month,
    first,
    last,
    no_validate,
    data_docs,
    input_format,
    pdf,
    audit_ids,
    reid_file,
    engine,
    spark_remote,
    spark_state,
    log_format,
    quiet,
    verbose,
):
    """Load the extracts, check them, run every audit they can feed, and write each audit's report and
    data outputs (OUT/<audit id>/) with a site index (OUT/index.html)."""
    from pipeline import faults, workers

    # the log format before anything that can stop: a SIGTERM while the worker starts or the modules load
    # ended the log with a plain line in a --log-format json log
    _log_as_asked(log_format, quiet, verbose)
    # first thing, before the heavy imports below: the gate's worker imports GX meanwhile
    with workers.Warm(gx=not no_validate) as warm:
        faults.maybe_fail("started")  # a stop while the worker starts (tests: ORDER_AUDIT_FAULT_SIGNAL=TERM)
        from pipeline.config import load_config
        from pipeline.run import RunOptions, execute

        cfg = _with_engine(
            load_config(config_path, site_timezone=site_timezone, input_format=input_format, engine=engine),
            spark_remote,
            spark_state,
        )
        months, per_month = _months(month, first, last)
        input_uri = input_dir if isinstance(input_dir, str) else None
        if input_uri is not None:
            from pipeline.ingest import remote_input

            refused = remote_input.refused_with(cfg.engine, cfg.spark.remote, input_uri)
            if refused is not None:
                raise refused
            input_dir = None  # the run's own copy, once fetched
        warehouse_path = warehouse_path or (Path(cfg.warehouse) if cfg.warehouse else None)
        if input_dir is None and input_uri is None and warehouse_path is None:
            raise click.UsageError("give --input, or --warehouse to re-audit what a warehouse holds")
        opts = RunOptions(
            input_dir=input_dir,
            input_uri=input_uri,
            out_dir=out_dir,
            warehouse_path=warehouse_path,
            months=months,
            validate=not no_validate,
            pdf=pdf,
            reid_file=reid_file,
            data_docs_dir=data_docs,
            per_month_folders=per_month,
            progress=per_month and not quiet,
            progress_bar=per_month and not quiet and log_format == "text" and sys.stderr.isatty(),
            command=" ".join(sys.argv[1:]) or "run",
            audits=list(audit_ids),
        )
        execute(opts, cfg, warm)


def _with_engine(cfg, spark_remote: str | None, spark_state: str | None = None):
    """The config with the Spark Connect server the command line or $SPARK_REMOTE names (in that order),
    and the command line's Spark state folder."""
    import dataclasses

    remote = spark_remote or os.environ.get("SPARK_REMOTE") or None
    for option, given in (("--spark-remote", spark_remote), ("--spark-state", spark_state)):
        if given and cfg.engine != "spark":
            raise click.UsageError(f'{option} goes with the Spark engine: add --engine spark (or engine = "spark" in the config)')
    if spark_state:
        cfg = dataclasses.replace(cfg, spark=dataclasses.replace(cfg.spark, state=spark_state))
    if remote and cfg.engine == "spark":
        if not remote.startswith("sc://"):
            raise click.UsageError(f"Spark Connect address {remote!r}: write it as sc://HOST:PORT")
        cfg = dataclasses.replace(cfg, spark=dataclasses.replace(cfg.spark, remote=remote))
    return cfg


@cli.command()
@click.option("--input", "input_dir", required=True, type=click.Path(path_type=Path), help="Folder with the extracts.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None, help="TOML settings file.")
@click.option("--site-timezone", default=None, help="IANA zone for times without an offset [America/New_York].")
@click.option(
    "--data-docs",
    "data_docs",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write Great Expectations Data Docs (HTML) here.",
)
@click.option(
    "--warehouse",
    "warehouse_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Read only: judge the local codes with the site code map this warehouse keeps, as a run with it does "
    "when the folder has no local_code_map.csv [config: warehouse, when the file exists].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of a table.")
@_input_format_option
@_logging_options
def validate(input_dir, config_path, site_timezone, data_docs, warehouse_path, as_json, input_format, log_format, quiet, verbose):
    """Run the data-quality gate alone on a folder of extracts (nothing is written to a warehouse)."""
    from pipeline import workers

    _log_as_asked(log_format, quiet, verbose)
    # as a run does: the gate's worker imports GX (without PySpark) while the extracts are parsed; imported here
    # instead, it took most of the command's time (a 7-row folder: 9-10 s)
    with workers.Warm(gx=True) as warm:
        from pipeline import preflight
        from pipeline.config import load_config
        from pipeline.ingest import inputs as inputs_mod

        cfg = load_config(config_path, site_timezone=site_timezone, input_format=input_format)
        preflight.check_temp_dir()  # the gate's DuckDB file goes there
        if data_docs is not None:  # before the work, as a run checks it: a file there was a traceback at the end
            from pipeline.quality import data_docs as docs

            docs.check_target(data_docs)
        shown = inputs_mod.named_within(input_dir)  # as a run names its inputs: relative to --input
        with files_named(shown):
            _validate(input_dir, cfg, data_docs, warehouse_path, as_json, shown, warm.gx)


def _validate(
    input_dir: Path,
    cfg,
    data_docs: Path | None,
    warehouse_path: Path | None,
    as_json: bool,
    shown: Callable[[str], str],
    gx=None,
) -> None:
    import datetime as dt
    import json

    from pipeline import ownership, warehouse
    from pipeline.ingest import load, value_maps
    from pipeline.logs import log
    from pipeline.models import reference
    from pipeline.quality import gate
    from pipeline.quality import held as held_state
    from pipeline.run import choose_audits

    warehouse_path = _read_warehouse(warehouse_path, cfg)
    held = None  # what the warehouse holds: the site code map it keeps, the loads the gate judges the extract with
    if warehouse_path is not None:
        with warehouse.damage_named(warehouse_path, kept="nothing was changed", reader=True):
            held = held_state.read(warehouse_path)
    site_map = held.site_map if held is not None else None
    if site_map is not None and reference.local_code_map_path(cfg, input_dir) is None:  # the words a run logs
        kept_from = ", ".join(sorted(set(site_map["source_file"])))
        log.info("site code map: none given; the one the warehouse kept, from %s", kept_from)
    inputs = load.find_inputs(input_dir, cfg, shown)
    # the audits a run on this folder (and warehouse) does: their own input checks are part of its gate, which
    # ran without them (a pass, then a run that warned or stopped); a config or folder the run refuses, refused
    chosen, _ = choose_audits(cfg, load.check_headers(inputs, cfg), warehouse_path=warehouse_path, input_dir=input_dir)
    with ownership.held_temp_dir("order-audit-validate-") as tmp:  # a killed command's is removed by the next
        prepared = load.prepare_inputs(inputs, cfg, tmp, shown=shown, kept_map=site_map)
        now = dt.datetime.now(dt.UTC)
        with warehouse.store_damage_named(warehouse_path, kept="nothing was changed") if held else contextlib.nullcontext():
            results, _ = gate.check_inputs(prepared, cfg, tmp, now, input_dir, gx, audits=chosen, held=held)
    if data_docs:
        gate.write_data_docs(results, data_docs)
    if as_json:
        click.echo(json.dumps([gate.as_dict(r) for r in results], indent=2))
    else:
        # pass; FAIL (stops a run); SET-ASIDE (a run sets the rows aside and goes on); warn; ERROR (could not run)
        for r in results:
            if r.status == "passed":
                mark = "pass"
            elif getattr(r, "blocks", False):
                mark = "FAIL"
            elif r.severity == "blocking":
                mark = "SET-ASIDE"
            else:
                mark = "warn" if r.status == "failed" else "ERROR"
            counts = "" if r.violated_count is None else f"{r.violated_count}/{r.denominator}"
            click.echo(f"{mark:9} {r.severity:8} {r.check_id:45} {counts}")
    gate.log_warnings(results)  # each warning's sentence and each note, as the run on this folder logs them
    unknown = [u for prep in prepared.values() for u in prep.unknown_values]
    failed = gate.blocking(results)
    if failed:
        raise gate.stop_error(failed, value_maps.note(unknown))


def _read_warehouse(warehouse_path: Path | None, cfg) -> Path | None:
    """The warehouse ``validate`` reads (never makes or changes): its site code map and the columns it holds.
    --warehouse must exist; the config's ``warehouse`` counts once a run has made it (before the first run
    there is no kept map, and validating the first extract is no error)."""
    from pipeline import preflight, warehouse
    from pipeline.errors import ConfigError

    if warehouse_path is None:
        if not cfg.warehouse or not Path(cfg.warehouse).is_file():
            return None
        warehouse_path = Path(cfg.warehouse)
    elif not warehouse_path.exists():
        raise ConfigError(
            f"--warehouse {warehouse_path} not found; validate reads the site code map a run kept there and never "
            "makes a warehouse: give the file your runs use, or leave --warehouse out"
        )
    preflight.check_warehouse_file(warehouse_path, reader=True)
    return warehouse.real_path(warehouse_path)


@cli.command()
@click.option("--input", "input_dir", required=True, type=click.Path(path_type=Path), help="Folder with the extracts.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None, help="TOML settings file to start from.")
@click.option(
    "--write-config",
    "write_config",
    type=click.Path(path_type=Path),
    default=None,
    help="Write a starter TOML here (and local_code_map.csv beside it when codes need mapping); never overwrites.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON instead of text.")
@_logging_options
def inspect(input_dir, config_path, write_config, as_json, log_format, quiet, verbose):
    """Show what the audit will and will not understand in a folder of extracts, before the first run:
    file formats, column matches, timestamp formats, coded values and codes no map knows."""
    from pipeline.config import load_config
    from pipeline.ingest import inputs

    _log_as_asked(log_format, quiet, verbose)
    cfg = load_config(config_path)
    shown = inputs.named_within(input_dir)  # as a run names its inputs: relative to --input
    with files_named(shown):
        _inspect(input_dir, cfg, write_config, as_json, shown)


def _inspect(input_dir: Path, cfg, write_config: Path | None, as_json: bool, shown: Callable[[str], str]) -> None:
    import json

    from pipeline.ingest import inspector, starter_config
    from pipeline.models import reference
    from pipeline.run import choose_audits

    if _is_fhir_export(input_dir, cfg):  # an export: its files and codes, and the site code map to fill in
        from pipeline.ingest.fhir import export
        from pipeline.ingest.fhir import inputs as fhir_inputs

        bulk = export.read_export(input_dir)
        found, codes = fhir_inputs.describe(input_dir, bulk), inspector.export_codes(bulk, cfg)
        if as_json:
            click.echo(json.dumps(found | starter_config.export_codes_dict(codes), indent=2, ensure_ascii=False))
        else:
            click.echo(fhir_inputs.describe_text(found, starter_config.export_code_lines(codes)), nl=False)
        if write_config is not None:
            _, local_map = reference.code_map_codes(cfg, input_dir)
            for path in starter_config.write_export(codes.unknown_codes, cfg, write_config, local_map):
                click.echo(f"order-audit: wrote {path}", err=True)
        return
    reports = inspector.inspect(input_dir, cfg, shown)
    if as_json:
        click.echo(json.dumps(starter_config.as_dict(reports), indent=2, ensure_ascii=False))
    else:
        click.echo(starter_config.as_text(reports, input_dir), nl=False)
    # a folder holding no table's file (an empty one, the wrong path) stops as `run` and `validate` do, exit 2,
    # after the findings: a job checking a delivery with inspect had read exit 0. One holding some tables is
    # described, exit 0: a month's diagnoses alone are a delivery `run --warehouse` reads (the warehouse holds the
    # rest), and inspect knows no warehouse
    if all(isinstance(r, str) for r in reports.values()):  # each table's entry says why no file was found
        choose_audits(cfg, {}, input_dir=input_dir)
    if write_config is not None:
        _, local_map = reference.code_map_codes(cfg, input_dir)
        for path in starter_config.write(reports, cfg, write_config, local_map):
            click.echo(f"order-audit: wrote {path}", err=True)


def _existing_warehouse(help_text: str):
    """The options of the commands that read a run history (runs, diff): a warehouse file, or the state
    folder of Spark runs (read through a Spark session the config's [spark] and $SPARK_REMOTE name)."""

    def options(command):
        for option in reversed(
            (
                # its existence checked by the command: a missing file is one line in the log's format, not click's text
                click.option("--warehouse", "warehouse_path", type=click.Path(path_type=Path), help=help_text),
                click.option(
                    "--spark-state",
                    metavar="URI",
                    default=None,
                    help="Instead of --warehouse: the state folder of Spark runs (run --spark-state), read through Spark.",
                ),
                click.option(
                    "--config", "config_path", type=click.Path(path_type=Path), default=None, help="TOML settings ([spark])."
                ),
            )
        ):
            command = option(command)
        return command

    return options


@contextlib.contextmanager
def _run_history(warehouse_path: Path | None, state_uri: str | None, config_path: Path | None, runs: list[str] | None = None):
    """(connection, where) over the run history: the warehouse read-only, or the Spark state's committed
    version in an in-memory DuckDB (``runs``: only these runs' verdicts)."""
    from pipeline import preflight, warehouse
    from pipeline.errors import ConfigError

    if (warehouse_path is None) == (state_uri is None):
        raise click.UsageError("give --warehouse FILE, or --spark-state URI for the history of Spark runs")
    if warehouse_path is not None:
        if not warehouse_path.exists():
            raise ConfigError(
                f"--warehouse {warehouse_path} not found: no run has made it (a run with this --warehouse does); "
                "check the path the job gives"
            )
        preflight.check_warehouse_file(warehouse_path, reader=True)
        con = warehouse.connect(warehouse_path, read_only=True)
        where = str(warehouse_path)
    else:
        import duckdb

        from pipeline import spark_state
        from pipeline.config import load_config

        cfg = _with_engine(load_config(config_path, engine="spark"), None)
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        with spark_state.reading(cfg.spark, state_uri) as state:
            state.into_duckdb(con, runs)
            where = state.uri
    try:
        if warehouse_path is None:
            yield con, where
        else:
            with warehouse.damage_named(warehouse_path, kept="nothing was changed", reader=True):
                yield con, where
    finally:
        con.close()


def _is_fhir_export(input_dir: Path, cfg) -> bool:
    from pipeline.ingest import inputs
    from pipeline.ingest.fhir import inputs as fhir_inputs

    inputs.check_folder(input_dir)
    return fhir_inputs.selected(input_dir, cfg, inputs.has_table_files)


@cli.command()
@_existing_warehouse("The DuckDB warehouse file (this or --spark-state is required).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Show at most this many runs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_logging_options
def runs(warehouse_path, spark_state, config_path, limit, as_json, log_format, quiet, verbose):
    """List past runs on a warehouse, newest first: run id, status, periods, start, duration, and per
    period the counts, whether its figures are provisional or final, and how many orders it revised.

    The run ids listed here (also in each output folder's run.json) are what `order-audit diff` takes.
    """
    import json

    from pipeline import db, history

    _log_as_asked(log_format, quiet, verbose)  # an error line as JSON too
    with _run_history(warehouse_path, spark_state, config_path) as (con, _):
        rows = history.list_runs(con, limit) if db.has_table(con, "audit_runs") else []
    if warehouse_path is not None:  # a killed run stays 'running' until the next run records it interrupted
        from pipeline import warehouse

        for r in rows:
            if r["status"] in ("running", "publishing") and warehouse.run_is_gone(warehouse_path, r["run_id"]):
                r["error"] = "its process is gone (killed?): the next run records it as interrupted and cleans up"
    if as_json:  # data, not text: a scheduler had to parse the counts out of a string, and the periods out of a list
        click.echo(json.dumps([_run_as_data(r) for r in rows], indent=2))
        return
    from pipeline import audits as audits_mod
    from pipeline.config import load_config

    # each audit counts its own unit (the low back pain audit's cases are episodes), as the run's log says it
    units = {a.id: a.case_unit for a in audits_mod.discover(load_config(config_path).audits_path)}
    click.echo(f"{'run_id':28} {'status':11} {'periods':16} {'started (UTC)':20} {'seconds':>8}  counts")
    for r in rows:
        counts = json.loads(r["counts"]) if r["counts"] else {}
        summary = ", ".join(
            _period_summary(f"{a} {p}", c, units.get(a, "case")) for a, periods in counts.items() for p, c in periods.items()
        )
        periods = r["periods"] if len(r["periods"]) <= 16 else r["periods"][:7] + ".." + r["periods"][-7:]
        click.echo(
            f"{r['run_id']:28} {r['status']:11} {periods:16} {r['started_at']:20} "
            f"{r['duration_seconds'] if r['duration_seconds'] is not None else '':>8}  "
            + "; ".join(x for x in (summary, r["error"]) if x)  # a run that failed after its commit has both
        )


def _run_as_data(row: dict) -> dict:
    """A run of ``history.list_runs`` as ``runs --json`` gives it: the periods a list, the counts an object (audit
    -> period -> counts), the start in ISO 8601 UTC as run.json's (``2026-11-03T02:15:07+00:00``)."""
    import json

    return {
        **row,
        "periods": [p for p in (row["periods"] or "").split(",") if p],
        "started_at": row["started_at"].replace(" ", "T") + "+00:00" if row["started_at"] else None,
        "counts": json.loads(row["counts"]) if row["counts"] else {},
    }


def _period_summary(period: str, c: dict, unit: str = "case") -> str:
    """One period of a run as `runs` prints it: counts (in the audit's unit: cases, episodes), provisional or
    final, and what it revised."""
    text = f"{period}: {counted(c.get('cases', 0), unit)}/{counted(c.get('audited_orders', 0), 'order')}"
    if c.get("status") == "provisional":
        text += f" (provisional until the data reaches {c.get('final_from')})"
    elif c.get("status"):
        text += f" ({c['status']})"
    if c.get("revised_orders"):
        text += f", revised {counted(c['revised_orders'], 'order')} since {c.get('revised_since')}"
    return text


@cli.command()
@click.argument("run_a")
@click.argument("run_b")
@_existing_warehouse("The DuckDB warehouse file both runs wrote to (this or --spark-state is required).")
@_logging_options
def diff(run_a, run_b, warehouse_path, spark_state, config_path, log_format, quiet, verbose):
    """Orders whose verdict or reasons differ between two runs, over the periods both audited.

    RUN_A and RUN_B are run ids such as 20261103T021500Z-1a2b3c: `order-audit runs --warehouse FILE`
    lists them (newest first), and each output folder's run.json names the run that wrote it. A is
    the earlier run, B the later: "added" orders are in B only, "removed" in A only.
    """
    from pipeline import db, history
    from pipeline.errors import ConfigError

    _log_as_asked(log_format, quiet, verbose)  # an error line as JSON too
    with _run_history(warehouse_path, spark_state, config_path, [run_a, run_b]) as (con, where):
        missing, rows = history.diff_runs(con, run_a, run_b) if db.has_table(con, "run_verdicts") else ([run_a, run_b], [])
    if missing:
        raise ConfigError(f"no run {' or '.join(missing)} in {where}; 'order-audit runs' lists the run ids")
    if rows is None:  # "no order changed" would be an all-clear for a comparison that was never made
        raise ConfigError(
            f"{run_a} and {run_b} audited no period in common (`order-audit runs` lists each run's periods); "
            "diff compares the orders of the periods both runs audited"
        )
    if not rows:
        click.echo(f"no order changed verdict between {run_a} and {run_b}")
        return
    click.echo(f"{len(rows)} order(s) differ between {run_a} (A) and {run_b} (B):")
    for period, audit_id, order_id, case_id, va, ra, vb, rb, kind in rows:
        click.echo(
            f"{period}  {audit_id or ''}  order {printable(order_id)} (case {printable(case_id)}) {kind}: "
            f"A {va or '-'} [{ra or ''}] -> B {vb or '-'} [{rb or ''}]"
        )


@cli.command("audits")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None, help="TOML settings file.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def audits_command(config_path, as_json):
    """List the audits found (shipped, the config's audits_path, $ORDER_AUDIT_AUDITS_PATH): id, version,
    title, the input tables and columns each needs, its parameters, and whether it can run."""
    import json

    from pipeline import audits as audits_mod
    from pipeline.config import load_config

    cfg = load_config(config_path)
    found = audits_mod.discover(cfg.audits_path)
    rows = [audits_mod.describe(a, cfg.audits.get(a.id)) for a in found]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['id']}  {r['rule_set_version']}  {r['title']}")
        click.echo(
            f"  needs: {', '.join(r['required_tables'])}"
            + (f"; reads if present: {', '.join(r['optional_tables'])}" if r["optional_tables"] else "")
        )
        for table, cols in r["required_columns"].items():
            click.echo(f"  needs columns: {table}: {', '.join(cols)}")
        click.echo("  parameters: " + (", ".join(f"{k} = {v}" for k, v in r["parameters"].items()) or "none"))
        click.echo(f"  folder: {r['folder']}")
        if r["problem"]:
            click.echo(f"  NOT READY: {r['problem']}")


@cli.command("deck")
@click.option(
    "--audit",
    "audit_ids",
    multiple=True,
    help="Check this audit's deck (repeatable; `order-audit audits` lists them). Default: every audit found.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="TOML settings file: its audits_path finds your own audits (no other setting applies to the deck).",
)
@_logging_options
def deck_command(audit_ids, config_path, log_format, quiet, verbose):
    """Run the audits' deck cases (deck/*.toml) through the real pipeline and compare each order and case with the
    file's expected result: one line per mismatch, then a summary. Exit 0 when all agree, 1 on a mismatch. Writes
    nothing outside a temporary folder, removed at the end."""
    import secrets
    import tempfile

    from pipeline import audits as audits_mod
    from pipeline import deck
    from pipeline.config import load_config
    from pipeline.errors import ConfigError

    _log_as_asked(log_format, quiet, verbose)
    cfg = load_config(config_path)
    chosen = audits_mod.named(audits_mod.discover(cfg.audits_path), list(audit_ids))
    for a in chosen:
        if not a.runnable:
            why = f"cannot run yet, its deck is not checked: {a.problem}"
            event(f"{a.id} skipped: {why}", level=logging.WARNING, event="audit_skipped", audit_id=a.id, reason=why)
    ran = [a for a in chosen if a.runnable]
    files = deck.deck_files(ran)
    if not files:
        raise ConfigError("no deck file (deck/*.toml) in the audits chosen: write one case per path (docs/AUDITS.md, The deck)")
    # named only when asked: by default a separate file's input may lack a table another audit needs, which the run
    # then skips (as the tests' runs do), where an audit named on the command line stops it
    chosen_args = [arg for a in ran for arg in ("--audit", a.id)] if audit_ids else []
    # the runs' own progress lines only with --verbose: the deck's findings are what the author reads
    run_log = [] if verbose else ["--quiet"]

    def run_one(name: str, args: list) -> str:
        # `order-audit run` itself, in this process: the same command a user and the tests run (make_context and
        # invoke, not main: main turns a Ctrl-C into click's Abort, where the group ends a stopped command 130 or 143)
        argv = [str(a) for a in (*args, *chosen_args, "--log-format", log_format, *run_log)]
        try:
            with run.make_context("order-audit run", argv) as ctx:
                run.invoke(ctx)
        except AuditError as exc:  # the deck's rows or the audit's own files: said as the run said it, with the run
            said = AuditError(f"the deck's run ({name}) stopped: {exc.message}")
            said.exit_code = exc.exit_code
            raise said from None
        return ""

    with tempfile.TemporaryDirectory(prefix="order-audit-deck-") as base:
        # a key of the deck's own: its pseudonyms never leave this folder, and no run warns of the public demo key
        key_file = Path(base) / "pseudonym.key"
        key_file.write_text(secrets.token_hex(32), encoding="utf-8")
        runs = deck.run_decks(Path(base), ran, files, run_one, cfg.audits_path, key_file)
        checked = deck.check(runs, ran, files)
    _log_as_asked(log_format, quiet, verbose)  # each run set the log as it was asked; the deck's own again
    for f, audit_id, problem in checked.mismatches:
        click.echo(f"{f.path or f.id}: {audit_id}: {printable(problem)}")
    summary = f"deck: {counted(checked.files, 'case')}, {counted(checked.orders, 'order')}, " + counted(
        len(checked.mismatches), "mismatch", "mismatches"
    )
    click.echo(summary)
    if checked.mismatches:
        found_n = counted(len(checked.mismatches), "mismatch", "mismatches")
        raise ConfigError(f"the deck disagrees with its audit ({found_n} above): fix the audit's rule or the file's expected row")


@cli.command()
@click.option("--patients", type=click.IntRange(min=1), default=20000, show_default=True)
@click.option("--months", type=click.IntRange(min=1), default=24, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--start",
    "start_month",
    callback=_month,
    default="2024-01",
    show_default=True,
    help="First month of the generated data (YYYY-MM).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "parquet", "fhir"]),
    default="csv",
    show_default=True,
    help="fhir: a FHIR R4 Bulk Data export (NDJSON, one file per resource type and million resources).",
)
@click.option("--site-timezone", default="America/New_York", show_default=True)
@click.option(
    "--case-density",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Multiply every audit's cases (leak work-ups, low back pain episodes); 5 makes a case-dense extract.",
)
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path))
@_logging_options
def synth(patients, months, seed, start_month, fmt, site_timezone, case_density, out_dir, log_format, quiet, verbose):
    """Generate synthetic extracts with their ground truth (deterministic per seed)."""
    _log_as_asked(log_format, quiet, verbose)
    if fmt == "fhir":
        from pipeline.synth.fhir.generate import generate
    else:
        from pipeline.synth import generate
    summary = generate(
        out_dir,
        patients=patients,
        months=months,
        seed=seed,
        start_month=start_month,
        fmt=fmt,
        site_timezone=site_timezone,
        case_density=case_density,
    )
    if not quiet:
        counts = ", ".join(f"{k} {v}" for k, v in summary["counts"].items())
        click.echo(f"order-audit: wrote synthetic extracts to {out_dir} ({counts})", err=True)


class _NeverRaised(Exception):
    pass


def _duckdb_out_of_memory() -> type[Exception]:
    """DuckDB's out-of-memory error, matched only when DuckDB was loaded (the module is not imported before
    ``run`` starts its GX worker: its import starts 0.2 s sooner)."""
    duckdb = sys.modules.get("duckdb")
    return duckdb.OutOfMemoryException if duckdb is not None else _NeverRaised


def _fail(message: str, exit_code: int, level: int = logging.ERROR) -> None:
    """The run's last line, then its exit: ``order-audit: error: ...``, or with --log-format json the same
    text as one JSON object (event ``error`` with ``exit_code``), so that every line of the log parses."""
    if json_logging():
        event(message, level=level, event="error", exit_code=exit_code)
    else:
        # one line whatever a value quoted in it holds: `--site-timezone $'X\nFAKE'`, a --config or --warehouse path
        # with a line break printed a second line a log reader took for another (the hostile review)
        click.echo(f"order-audit: {printable(message)}", err=True)
    _exit(exit_code)


def _exit(code: int) -> None:
    """End with ``code``. A gate thread still at work (`validate`'s import of GX, or its SQL checks' queries,
    which a SIGTERM cut short) is unwound by the interpreter's shutdown inside C++ code, which aborts the
    process (exit 134, "FATAL: exception not rethrown" on stderr, not JSON): with one alive, the process ends
    without that shutdown, its output flushed (every file and folder the command made is closed or removed by
    now). Other threads (py4j's, a Spark run's) keep the interpreter's shutdown and its exit handlers."""
    import threading

    gate = sys.modules.get("pipeline.quality.validate")  # not imported: no gate thread was started
    names = gate.GATE_THREADS if gate is not None else ()
    if not any(t.name in names and t.is_alive() for t in threading.enumerate()):
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> None:
    # a scheduler stops a task with SIGTERM (Airflow, systemd, `timeout`): handled as Ctrl-C is, not a
    # death mid-step that leaves the run 'running' and its scratch folder behind
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) != signal.SIG_IGN:  # `nohup` and `cmd &` in a script ignore SIGINT: keep it so
            signal.signal(signum, request_stop)
    try:
        cli.main(args=argv, prog_name="order-audit", standalone_mode=False)
        _say_stop_after_done()
        _flush_stdout()
    except _OutputClosed:
        _end_quietly_closed_stdout()
    except click.exceptions.Abort:
        click.echo("order-audit: aborted", err=True)
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        # a bad option or value stops the command before its --log-format is read: one line, as every error, not
        # click's four of usage ('Usage: ...', 'Try ... --help', a blank, 'Error: ...'): a JSON log still ends in one
        # JSON line, and a cron job's text log in one 'order-audit: error:' line (the scheduling review)
        if _asks_json_log(sys.argv[1:] if argv is None else argv):
            setup_logging("json")
        ctx = getattr(exc, "ctx", None)
        hint = f" (see {ctx.command_path} --help)" if ctx is not None else " (see order-audit --help)"
        _fail(f"error: {exc.format_message()}{hint}", EXIT_USAGE)
    except AuditError as exc:
        _fail(f"error: {exc.message}", exc.exit_code)
    except _Stopped as exc:
        _stopped(exc.__cause__, exc.command)
    except _duckdb_out_of_memory():
        from pipeline.warehouse import MEMORY_LIMIT_ENV, memory_limit

        _fail(
            f"error: DuckDB ran out of memory within its limit of {memory_limit()} (${MEMORY_LIMIT_ENV}); "
            f"the published outputs are as they were: raise the limit ({MEMORY_LIMIT_ENV}=8GB) or free memory, "
            "and run again (a rerun adds nothing twice)",
            EXIT_USAGE,
        )
    except OSError as exc:
        if stop_signal(exc):  # before click resolved a command
            _stopped(exc, None)
        problem = refused_write(exc)  # disk full, read-only, no permission: the machine's, not a bug
        if problem is None:
            _bug(exc)
        _fail(f"error: {problem}", EXIT_USAGE)
    except Exception as exc:
        if stop_signal(exc):  # before click resolved a command
            _stopped(exc, None)
        problem = refused_write(exc)  # a library's own error for a full disk (DuckDB's TransactionException)
        if problem is None:
            _bug(exc)
        _fail(f"error: could not write ({problem}): free space or fix the folder, then run again", EXIT_USAGE)
    sys.exit(0)


def _say_stop_after_done() -> None:
    """A stop that came once the run was done and on record: it ends 0, as `runs` says, and says so (info: a
    scheduler's timeout that lands as a run finishes is no failure, and there is nothing to run again)."""
    signum = stop_after_done()
    if signum is not None:
        name = "SIGTERM" if signum == signal.SIGTERM else "SIGINT"
        event(
            f"{name} came after the run was done and recorded; it finished removing its scratch files: nothing to run again",
            event="stop_after_done",
            signal=name,
        )


def _asks_json_log(args: list[str]) -> bool:
    """Whether the command line asks for the JSON log (``--log-format json`` or ``--log-format=json``)."""
    args = [str(a) for a in args]
    return "--log-format=json" in args or any(a == "--log-format" and b == "json" for a, b in itertools.pairwise(args))


def _bug(exc: BaseException) -> None:
    """An exception no part of the pipeline expected: a bug, not the job's input, options or machine. Its traceback
    (for the maintainers), then the last line, exit 70: exit 1 told the scheduler to fix the job definition
    (docs/SCHEDULING.md), and a JSON log ended in lines that are no JSON (the traceback goes in the event)."""
    import traceback

    trace = "".join(traceback.format_exception(exc))
    message = (
        f"error: an unexpected error, a bug in order-audit ({type(exc).__name__}: {first_line(exc)}); "
        "report it to the maintainers with the traceback"
    )
    if json_logging():
        event(bounded(message), level=logging.ERROR, event="error", exit_code=EXIT_BUG, traceback=trace)
        _exit(EXIT_BUG)
    sys.stderr.write(trace)
    _fail(bounded(message), EXIT_BUG)


def _flush_stdout() -> None:
    """What the command printed, written now (not at the interpreter's exit, where a closed pipe is a
    traceback-like message and exit 120)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError as exc:
        raise _OutputClosed() from exc


def _end_quietly_closed_stdout() -> None:
    """The reader of stdout has gone (`runs | head`): end as a Unix tool does, killed by SIGPIPE (the shell's
    141), with nothing on stderr."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing left to flush into the closed pipe at exit
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGPIPE)


def _stopped(exc: BaseException, command: str | None) -> None:
    """The last line of a stopped command (130 or 143). ``command``: the one click resolved (not read back from
    argv); None when the stop came before click had resolved one, when nothing was started."""
    code = EXIT_TERMINATED if stop_signal(exc) == signal.SIGTERM else EXIT_INTERRUPTED
    if command == "run":
        again = "run again to finish: a rerun adds nothing twice (`order-audit runs` says what it left)"
    else:  # validate, inspect, runs, diff: they change nothing
        again = "nothing was changed: run the command again"
    _fail(f"{stop_text(exc)}; {again}", code, logging.WARNING)
