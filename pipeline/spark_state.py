"""The load ledger and run history of Spark runs in a folder the user names ([spark] state, --spark-state):
Parquet written through Spark, so a cluster's object store (s3a://, abfss://, gs://, hdfs://) can hold it.

    STATE/load_ledger/<version>/    the warehouse's whole ledger at that version (which files, hashes, rows)
    STATE/audit_runs/<version>/     the warehouse's whole run history at that version
    STATE/run_verdicts/<version>/   the verdicts of the runs this version brought (what `diff` compares)
    STATE/commits/<version>/        one row: the version is committed

A version (``<seq>-<run id>``) is written after the run's warehouse commit: its parts first, the
commit row last. Readers take only committed versions, so a run killed while writing leaves parts no
reader sees (the next version takes the same number with its own run id: another folder). Each part
lands through Spark's output committer (files appear at job commit; ``_temporary`` is hidden from
readers). The state mirrors the DuckDB warehouse that holds the rows: the same file twice adds nothing
there (the ledger records it as skipped), and a warehouse that lacks a load the state records is
refused rather than re-audited.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from pathlib import Path
from urllib.parse import unquote, urlparse

import duckdb

from pipeline import db, history, ownership
from pipeline.errors import ConfigError
from pipeline.ingest import ledger, remote_input, spark_read
from pipeline.ingest.source_store import LIVE_LOAD
from pipeline.sqltext import literal

log = logging.getLogger(__name__)

SNAPSHOTS = {"load_ledger": "loaded_at, load_id", "audit_runs": "started_at, run_id"}  # table -> row order
VERDICTS = "run_verdicts"
COMMITS = "commits"
_MISSING = ("PATH_NOT_FOUND", "UNABLE_TO_INFER_SCHEMA", "Path does not exist", "Unable to infer schema")


class RivalCommitError(ConfigError):
    """Another warehouse committed to the state folder while this run wrote its version."""


def state_uri(text: str) -> str:
    """A URI Spark reads: kept as given when it names another file system; this machine's folder (a path, or a
    file:// URI, read as --input reads one) as file:// and the path as it is. Hadoop takes the text after the
    scheme for the path itself, so the percent-encoded form (Path.as_uri: %20 for a space) named another
    folder, which the run then created (a literal "we%27ird%20dir" beside "we'ird dir")."""
    if remote_input.is_remote(text):
        return text.rstrip("/")
    if remote_input.scheme(text) == "file":
        text = unquote(urlparse(text).path)
    return "file://" + str(Path(text).expanduser().resolve())


@contextlib.contextmanager
def reading(settings, uri: str):
    """A state folder through a Spark session of its own ([spark] settings), for `runs` and `diff`."""
    from pipeline.models import spark as spark_engine

    # marked and held: a local JVM keeps its files there (spark.local_files), which a kill would leave
    with ownership.held_temp_dir("order-audit-state-") as scratch:
        spark = spark_engine.SparkModels(settings, scratch)
        try:
            yield SparkState(spark, uri)
        finally:
            spark.close()


class SparkState:
    """The state folder seen through one Spark session (``spark``: a ``SparkModels``, which ships
    DuckDB tables to Spark)."""

    def __init__(self, spark, uri: str):
        self.spark = spark
        self.session = spark.session
        self.uri = state_uri(uri)

    def _path(self, table: str, version: str) -> str:
        """Where a part is written (a writer takes the path as it is)."""
        return f"{self.uri}/{table}/{version}"

    def _read(self, table: str, version: str | None = None) -> str:
        """The same path to read: Hadoop expands glob characters in a path to read, so a state folder named
        "state [2026]" matched nothing, each run took it for a new one and wrote version 1 again, and `runs` listed
        no run."""
        return spark_read.glob_escaped(f"{self.uri}/{table}" if version is None else self._path(table, version))

    def commits(self) -> list[dict]:
        """The committed versions, oldest first."""
        try:
            rows = self.session.read.option("recursiveFileLookup", "true").parquet(self._read(COMMITS)).collect()
        except Exception as exc:  # noqa: BLE001 (pyspark's and Spark Connect's AnalysisException differ)
            if any(word in str(exc) for word in _MISSING):
                return []  # a new state folder
            raise
        return sorted((r.asDict() for r in rows), key=lambda r: r["seq"])

    def latest(self) -> dict | None:
        found = self.commits()
        return found[-1] if found else None

    def check_warehouse(self, con: duckdb.DuckDBPyConnection) -> None:
        """Refuse a warehouse that lacks a load or a run the state records: the state holds the ledger, not
        the rows, so a run on another (or a throw-away) warehouse would load the same file twice, and two
        warehouses writing one state folder would each overwrite the other's history."""
        top = self.latest()
        if top is None:
            return
        recorded = self.session.read.parquet(self._read("load_ledger", top["version"]))
        live = recorded.where(LIVE_LOAD)
        state_loads = {(r.load_id, r.table_name, r.path) for r in live.select("load_id", "table_name", "path").collect()}
        held = set()
        if db.has_table(con, "load_ledger"):
            held = {r[0] for r in con.execute("SELECT load_id FROM load_ledger").fetchall()}
        missing = sorted(x for x in state_loads if x[0] not in held)
        if missing:
            load_id, table, path = missing[0]
            raise ConfigError(
                f"--spark-state {self.uri} records {len(missing)} load(s) this warehouse does not hold (e.g. {table} "
                f"from {path}, load {load_id}): the state keeps the ledger and history, the rows stay in the warehouse; "
                "give the --warehouse the earlier runs used, or a new state folder"
            )
        self._check_runs(con, top["version"])

    def _check_runs(self, con: duckdb.DuckDBPyConnection, version: str) -> None:
        recorded = {r.run_id for r in self.session.read.parquet(self._read("audit_runs", version)).select("run_id").collect()}
        held = (
            {r[0] for r in con.execute("SELECT run_id FROM audit_runs").fetchall()} if db.has_table(con, "audit_runs") else set()
        )
        missing = sorted(recorded - held)
        if missing:
            raise ConfigError(
                f"--spark-state {self.uri} records {len(missing)} run(s) this warehouse does not hold (e.g. {missing[0]}): "
                "another warehouse writes this state folder; give the --warehouse the earlier runs used, or a new state folder"
            )

    def write(self, con: duckdb.DuckDBPyConnection, run_id: str) -> str:
        """Write the warehouse's ledger and run history as a new committed version; returns it."""
        commits = self.commits()
        seq = commits[-1]["seq"] + 1 if commits else 1
        version = f"{seq:08d}-{run_id}"
        held = {r for c in commits for r in c["runs"].split(",") if r}
        brought = self.write_parts(con, version, held)
        # another writer (another warehouse, against the one-writer rule) committed meanwhile: its version
        # and ours would share a number, and readers would take either; its commit stands, ours is not made
        rival = [c["version"] for c in self.commits() if c["seq"] >= seq]
        if rival:
            raise RivalCommitError(f"version {rival[0]} was committed by another writer while this run wrote {version}")
        self.commit(version, seq, run_id, brought)
        return version

    def write_parts(self, con: duckdb.DuckDBPyConnection, version: str, held: set[str]) -> list[str]:
        """The version's parts (nothing reads them before ``commit``); returns the runs whose verdicts it brings."""
        con.execute(ledger.LEDGER_DDL)  # a run that failed before its first load: an empty ledger
        history.ensure(con)
        for table, order in SNAPSHOTS.items():
            self._write(con, f"SELECT * FROM {table} ORDER BY {order}", self._path(table, version), one_file=True)
        runs = sorted(r[0] for r in con.execute(f"SELECT DISTINCT run_id FROM {VERDICTS}").fetchall() if r[0] not in held)
        if runs:
            listed = ", ".join(literal(r) for r in runs)
            query = f"SELECT * FROM {VERDICTS} WHERE run_id IN ({listed}) ORDER BY run_id, period, audit_id, order_id"
            self._write(con, query, self._path(VERDICTS, version))
        return runs

    def commit(self, version: str, seq: int, run_id: str, runs: list[str]) -> None:
        row = [(seq, version, run_id, ",".join(runs), dt.datetime.now(dt.UTC))]
        schema = "seq BIGINT, version STRING, run_id STRING, runs STRING, committed_at TIMESTAMP"
        self.session.createDataFrame(row, schema).coalesce(1).write.parquet(self._path(COMMITS, version))

    def _write(self, con, query: str, target: str, one_file: bool = False) -> None:
        name = "state__part"
        con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {query}")
        try:
            self.spark.ship(con, name)
        finally:
            con.execute(f"DROP VIEW {name}")
        frame = self.session.table(name)
        (frame.coalesce(1) if one_file else frame).write.parquet(target)

    def into_duckdb(self, con: duckdb.DuckDBPyConnection, runs: list[str] | None = None) -> str | None:
        """The committed state as the warehouse's tables in ``con`` (``runs``: only these runs' verdicts),
        for `runs` and `diff`; returns the version read (None: nothing committed yet)."""
        con.execute(ledger.LEDGER_DDL)
        history.ensure(con)
        found = self.commits()
        if not found:
            return None
        top = found[-1]["version"]
        for table in SNAPSHOTS:
            self._land(con, table, self.session.read.parquet(self._read(table, top)))
        parts = [self._read(VERDICTS, c["version"]) for c in found if c["runs"]]
        if parts:
            # a version written before case_ref has no such column: merged, its rows read it as NULL
            verdicts = self.session.read.option("mergeSchema", "true").parquet(*parts)
            if runs is not None:
                verdicts = verdicts.where(verdicts.run_id.isin(runs))
            self._land(con, VERDICTS, verdicts)
        return top

    @staticmethod
    def _land(con: duckdb.DuckDBPyConnection, table: str, frame) -> None:
        arrow = frame.toArrow()
        con.register("state__landed", arrow)
        try:
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM state__landed")
        finally:
            con.unregister("state__landed")
