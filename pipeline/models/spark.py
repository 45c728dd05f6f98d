"""The models on Apache Spark: the one home of the Spark session and of running the models there.

A local Spark also reads and types the input files (``pipeline.ingest.spark_read``, landing through
``to_parquet``); listing rejects and the gate stay on the driver; the run's DuckDB warehouse holds the
typed sources. ``SparkModels.run_models`` ships the declared sources the models read to Spark, runs
every model transpiled to Spark SQL (``dialects``) in dependency order, and lands each table model
back in the warehouse with the types DuckDB gives the same SQL, so everything after the models
(checks, measures, reports, feed, workbook) reads what it reads on the DuckDB engine. Views stay
views in both places (cheap, no data). Knows no audit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shlex
import shutil
import subprocess
import threading
from pathlib import Path

import duckdb

from pipeline.config import Spark as SparkSettings
from pipeline.config import spark_address
from pipeline.errors import ConfigError, first_line, on_stop, stop_requested
from pipeline.models import dialects, runner
from pipeline.sqltext import ident, literal

log = logging.getLogger(__name__)
REMOTE_ENV = "SPARK_REMOTE"
SUBMIT_ENV = "PYSPARK_GATEWAY_PORT"  # set by spark-submit for the Python program it starts
_QUIET_LOG4J = Path(__file__).with_name("log4j2-quiet.properties")
INSTALL = "install PySpark 4.3 with its Spark Connect client: pip install 'order-audit[spark]'"


def java_problem() -> str | None:
    """Why a local Spark cannot start its JVM here, or None (Java 17 found and runs)."""
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    if not java or not os.path.exists(java):
        return "Spark needs Java 17, which is not installed: apt-get install openjdk-17-jre-headless, or set JAVA_HOME"
    try:
        subprocess.run([java, "-version"], capture_output=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{java} -version failed ({exc}); install Java 17 (openjdk-17-jre-headless) or set JAVA_HOME"
    return None


def check_available(settings: SparkSettings) -> None:
    """Stop the run before anything is parsed when Spark cannot start: PySpark (and its Connect
    client) missing, or, for a local Spark, Java."""
    try:
        import pyspark  # noqa: F401
        from pyspark.sql import SparkSession  # noqa: F401

        if settings.remote:
            import pyspark.sql.connect.session  # noqa: F401  (needs grpcio, pandas, pyarrow)
    except ImportError as exc:
        raise ConfigError(f"--engine spark: PySpark cannot be imported ({exc}); {INSTALL}") from None
    if not settings.remote:
        problem = java_problem()
        if problem:
            raise ConfigError(f"--engine spark with a local Spark ({settings.master}): {problem}")


def described(settings: SparkSettings) -> str:
    """Where the models run, for run.json and the log: the master, or the Connect server without its
    parameters (a token may ride in them)."""
    if settings.remote:
        return "spark connect " + spark_address(settings.remote)
    return settings.master


class SparkModels:
    """A Spark session for one run; ``run_models`` is the Spark engine's ``runner.run_models``."""

    def __init__(self, settings: SparkSettings, scratch: Path):
        check_available(settings)
        self.scratch = scratch
        self.session = start_session(settings, scratch)
        if submitted() and not settings.remote:  # where it runs: spark-submit's master
            settings = dataclasses.replace(settings, master=self.session.sparkContext.master)
        self.settings = settings
        self.version = self.session.version
        # a local JVM shares this process's stderr (a server's log is its own)
        self._forget_stop = (lambda: None) if settings.remote else on_stop(self._quiet_now)
        self._shipped = 0

    def _quiet(self) -> None:
        """The JVM's log off: its errors about the tasks a stop cuts short ("Exception in statusUpdate", "Store
        broadcast ... fail") are the stop itself, said by the run's own last line; printed, they are not JSON under
        --log-format json. Run when the stop arrives (``errors.on_stop``): at close they had often been printed."""
        self.session.sparkContext.setLogLevel("OFF")

    def _quiet_now(self) -> None:
        """``_quiet`` from the stop's signal handler: on a thread of its own, since py4j gives each thread its own
        connection and the main thread's is the one the stop interrupts mid-command; waited for briefly."""
        thread = threading.Thread(target=self._quiet, daemon=True)
        thread.start()
        thread.join(timeout=5)

    def close(self) -> None:
        self._forget_stop()
        if stop_requested() and not self.settings.remote:
            with contextlib.suppress(Exception):
                self._quiet()
        self.session.stop()

    def run_models(self, con: duckdb.DuckDBPyConnection, models: list[runner.Model], layers: tuple[str, ...]) -> list[str]:
        """Build the models of the given layers on Spark; the warehouse gets their views and tables."""
        everything = runner.execution_order(models)
        names = {m.name for m in everything}
        ordered = [m for m in everything if m.layer in layers]
        for source in sorted(set().union(set(), *(m.reads for m in ordered)) - names):
            self.ship(con, source)  # what the warehouse holds now (audit_period changes per month)
        for m in ordered:
            log.debug("building %s (%s) on Spark", m.name, m.layer)
            dialects.check(m.sql, "spark")
            for view, sql, reads in dialects.split_ctes(m.name, m.sql, "spark"):
                frame = self.session.sql(sql)
                if reads > 1 or (view == m.name and m.materialisation == "TABLE"):
                    # built once, as a DuckDB table is; Spark would otherwise recompute it at every read
                    # (and plan the episode model's doubling passes 2^k times)
                    frame = frame.localCheckpoint()
                frame.createOrReplaceTempView(view)
            if m.materialisation == "VIEW":
                runner.build(con, m)  # a definition only: the warehouse's readers (maturity ...) see it
            else:
                self._land(con, m)
        return [m.name for m in ordered]

    @property
    def reads_inputs(self) -> bool:
        """Spark reads the input files itself when it runs on this machine; a Spark Connect server, or a
        cluster spark-submit names, may not see this machine's files, so there the driver parses them."""
        return self.shares_files

    @property
    def shares_files(self) -> bool:
        """Spark's executors see this machine's files: a local master (local, local[N], local-cluster)."""
        return not self.settings.remote and self.settings.master.startswith("local")

    def to_parquet(self, frame, path: Path, order_by: str) -> None:
        """A local Spark's frame as one Parquet file, its rows ordered by ``order_by``: Spark writes its
        parts into the scratch folder, DuckDB joins them (never held whole in memory)."""
        self._shipped += 1
        parts = self.scratch / f"{self._shipped:04d}-{path.stem}.parts"
        frame.write.parquet(str(parts))
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute(
                f"COPY (SELECT * FROM read_parquet({literal(str(parts / '*.parquet'))}) ORDER BY {ident(order_by)}) "
                f"TO {literal(path)} (FORMAT parquet, COMPRESSION lz4)"
            )
        finally:
            con.close()
        shutil.rmtree(parts)

    def ship(self, con: duckdb.DuckDBPyConnection, name: str) -> None:
        """One declared source (table or view of the warehouse) as a Spark temp view of the same name:
        through a Parquet file for a local Spark, through Arrow for a Spark Connect server or a cluster
        (which may not see this machine's files)."""
        query = f"SELECT * FROM {name}"
        if not self.shares_files:
            frame = self.session.createDataFrame(_signed(con.sql(query).to_arrow_table()))
        else:
            self._shipped += 1
            path = self.scratch / f"{self._shipped:04d}-{name}.parquet"
            con.execute(f"COPY ({query}) TO {literal(path)} (FORMAT parquet)")
            frame = self.session.read.parquet(str(path))
        frame.createOrReplaceTempView(name)

    def _land(self, con: duckdb.DuckDBPyConnection, m: runner.Model) -> None:
        """The model's Spark result as the warehouse table, each column cast to the type DuckDB gives
        the same SQL (bound, not run), so the readers see the DuckDB engine's types."""
        expected = con.sql(m.sql)
        table = self.session.table(m.name).toArrow()
        if table.column_names != expected.columns:
            raise RuntimeError(f"{m.name}: Spark gave the columns {table.column_names}, DuckDB {expected.columns}")
        columns = ", ".join(f'CAST("{c}" AS {t}) AS "{c}"' for c, t in zip(expected.columns, expected.types, strict=True))
        landed = f"spark_result__{m.name}"
        con.register(landed, table)
        try:
            runner.build(con, m, f"SELECT {columns} FROM {landed}")
        finally:
            con.unregister(landed)


def _signed(table):
    """The Arrow table with unsigned integer columns widened to signed ones (Spark has no unsigned
    types; a Parquet file read by Spark gets the same widening)."""
    import pyarrow as pa

    wider = {pa.uint8(): pa.int16(), pa.uint16(): pa.int32(), pa.uint32(): pa.int64(), pa.uint64(): pa.decimal128(20, 0)}
    schema = pa.schema([f.with_type(wider.get(f.type, f.type)) for f in table.schema])
    return table if schema == table.schema else table.cast(schema)


def _local_files(scratch: Path) -> dict[str, str]:
    """Where a local JVM writes its files: in the run's scratch folder (marked, removed when the command ends, and
    a killed command's by the next one, ``ownership``), not in /tmp, where a JVM the OOM killer ends leaves its
    block manager, ``spark-*`` and ``artifacts-*`` folders and its native libraries (94 files a kill). Its log:
    errors only (Spark's default prints WARN lines and a banner on every run); no hsperfdata file in /tmp. Its SQL
    warehouse too: Spark makes ``spark-warehouse/`` in the working directory (a scheduled run's, the user's own
    folder) though a run keeps nothing in Spark's catalog."""
    jvm_tmp, local = scratch / "jvm-tmp", scratch / "spark-local"
    jvm_tmp.mkdir(exist_ok=True)
    local.mkdir(exist_ok=True)
    options = [f"-Dlog4j2.configurationFile={_QUIET_LOG4J.as_uri()}", f"-Djava.io.tmpdir={jvm_tmp}", "-XX:-UsePerfData"]
    # the launcher splits the options as a shell does: a folder's name with a space or a quote stays one word
    return {
        "spark.driver.extraJavaOptions": " ".join(shlex.quote(o) for o in options),
        "spark.local.dir": str(local),
        "spark.sql.warehouse.dir": str(scratch / "spark-sql-warehouse"),
    }


def submitted() -> bool:
    """Started by spark-submit (``pipeline/spark_submit.py``): its JVM and its --master are already there."""
    return bool(os.environ.get(SUBMIT_ENV))


# the first contact with a Spark Connect server: PySpark's default retries wait 10 minutes and more for an
# unreachable one, twice (again at exit, to clean its caches); a scheduler's job should fail within seconds
REACH_RETRIES = {"max_retries": 6, "max_backoff": 10_000}  # backoffs 0.05, 0.2, 0.8, 3.2, 10, 10 s: about 25 s
REACH_SECONDS = 25


def _reason(exc: BaseException) -> str:
    """A gRPC failure as its status and details (the exception's text is a multi-line repr), else its first line."""
    for cause in (exc, exc.__cause__, exc.__context__):
        if cause is not None and callable(getattr(cause, "details", None)) and callable(getattr(cause, "code", None)):
            return f"{cause.code().name}: {cause.details()}"
    return first_line(exc)


def reach(settings: SparkSettings) -> None:
    """Stop at once, in one line, when the Spark Connect server does not answer (bounded retries)."""
    import warnings

    from pyspark.sql.connect.client.core import SparkConnectClient

    client = SparkConnectClient(connection=settings.remote, retry_policy=REACH_RETRIES)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PySpark's "[RETRIES_EXCEEDED]" warning: the error below says it
            client.get_configs("spark.app.name")
    except Exception as exc:  # noqa: BLE001 (gRPC's and PySpark's errors differ)
        raise ConfigError(
            f"--engine spark: the Spark Connect server {described(settings)} did not answer "
            f"(tried for about {REACH_SECONDS} s): {_reason(exc)}"
        ) from None
    finally:
        client.close()  # closed: its exit hook sends nothing


def start_session(settings: SparkSettings, scratch: Path):
    """The [spark] settings' session: started here, or the one this process has already started with them
    (getOrCreate: the input's copy from another file system and the models share one session). A local JVM
    started here keeps its files in ``scratch`` (``_local_files``)."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("order-audit")
    if settings.remote:
        reach(settings)
        builder = builder.remote(settings.remote)
    else:
        if not submitted():  # under spark-submit its --master and --conf hold, not [spark] master
            builder = builder.master(settings.master).config("spark.ui.enabled", "false")
            for key, value in _local_files(scratch).items():
                builder = builder.config(key, value)
        builder = builder.config("spark.ui.showConsoleProgress", "false")
        # instants written as such (INT96, the default, reads back as a wall clock)
        builder = builder.config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    for key, value in settings.conf.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # the JVM or the server: say which, in one line
        where = f"the Spark Connect server {described(settings)}" if settings.remote else f"a local Spark ({settings.master})"
        raise ConfigError(f"--engine spark: could not start {where}: {first_line(exc)}") from None
    # the shims' assumption (dialects.py): a TIMESTAMP holds the UTC instant
    session.conf.set("spark.sql.session.timeZone", "UTC")
    if not settings.remote:
        session.sparkContext.setLogLevel("ERROR")
    return session
