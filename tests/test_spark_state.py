"""The ledger and run history of Spark runs in a state folder written through Spark (pipeline/spark_state.py):
versions committed by a last commit row, parts of an uncommitted version never read, each run's verdicts
written once, and a warehouse lacking a load the state records refused. tests/test_spark_engine.py runs
the deck through the CLI with --spark-state and reads it back with `runs` and `diff`.

On the session's local[2] Spark (tests/conftest.py: spark_models). Needs Java 17, else skipped."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from pipeline import history
from pipeline.errors import ConfigError
from pipeline.ingest import ledger
from pipeline.spark_state import SparkState, state_uri

pytestmark = pytest.mark.spark
T0 = dt.datetime(2026, 11, 1, 2, 0, tzinfo=dt.UTC)


def _warehouse() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(ledger.LEDGER_DDL)
    history.ensure(con)
    return con


def _add_run(con, run_id: str, action: str, verdict: str, minutes: int) -> None:
    at = T0 + dt.timedelta(minutes=minutes)
    con.execute(
        "INSERT INTO load_ledger VALUES (?, ?, 'imaging_orders', 'orders.csv', 'abc', '2026-10', '2026-10', 3, ?, 0, 0, 0, "
        "?, NULL, NULL, ?)",
        [f"{run_id}-imaging_orders", run_id, 3 if action == "loaded" else 0, action, at],
    )
    con.execute(
        "INSERT INTO audit_runs (run_id, command, status, periods, started_at, audits) VALUES (?, 'run', 'succeeded', 'all', ?, "
        "'csf_leak')",
        [run_id, at],
    )
    for order, v in (("o1", "appropriate"), ("o2", verdict)):
        con.execute(
            "INSERT INTO run_verdicts (run_id, period, order_id, case_id, verdict, reasons, audit_id) "
            "VALUES (?, 'all', ?, 'c1', ?, 'r', 'csf_leak')",
            [run_id, order, v],
        )


def _rows(con, table: str) -> list[tuple]:
    return sorted(con.execute(f"SELECT * FROM {table}").fetchall(), key=repr)


def test_versions_commit_last_and_each_runs_verdicts_are_written_once(spark_models, tmp_path):
    state = SparkState(spark_models, str(tmp_path / "state"))
    assert state.uri == (tmp_path / "state").resolve().as_uri()  # a plain path is this machine's folder
    assert state.into_duckdb(_warehouse()) is None  # nothing committed yet: empty tables
    wh = _warehouse()
    _add_run(wh, "r1", "loaded", "appropriate", 0)
    first = state.write(wh, "r1")
    _add_run(wh, "r2", "skipped_already_loaded", "inappropriate", 5)  # the same file again: nothing added
    second = state.write(wh, "r2")
    assert [c["version"] for c in state.commits()] == [first, second] == ["00000001-r1", "00000002-r2"]
    assert [c["runs"] for c in state.commits()] == ["r1", "r2"]  # each run's verdicts once

    read = _warehouse()
    assert state.into_duckdb(read) == second
    for table in ("load_ledger", "audit_runs", "run_verdicts"):
        assert _rows(read, table) == _rows(wh, table), table
    assert [r["run_id"] for r in history.list_runs(read)] == ["r2", "r1"]
    missing, changed = history.diff_runs(read, "r1", "r2")
    assert missing == [] and [(r[2], r[4], r[6]) for r in changed] == [("o2", "appropriate", "inappropriate")]

    # a run killed after writing its parts, before its commit row: no reader sees them
    _add_run(wh, "r3", "loaded", "review", 10)
    assert state.write_parts(wh, "00000003-r3", {"r1", "r2"}) == ["r3"]
    again = _warehouse()
    assert state.into_duckdb(again) == second
    assert _rows(again, "audit_runs") == _rows(read, "audit_runs")
    # the next run's version brings the killed run's record and verdicts along
    assert state.write(wh, "r4") == "00000003-r4"
    last = _warehouse()
    state.into_duckdb(last, runs=["r3"])
    assert {r[0] for r in _rows(last, "run_verdicts")} == {"r3"}
    assert len(_rows(last, "audit_runs")) == 3


def test_a_warehouse_lacking_a_load_the_state_records_is_refused(spark_models, tmp_path):
    state = SparkState(spark_models, state_uri(str(tmp_path / "state")))
    wh = _warehouse()
    state.check_warehouse(wh)  # a new state: any warehouse
    _add_run(wh, "r1", "loaded", "appropriate", 0)
    state.write(wh, "r1")
    state.check_warehouse(wh)  # the warehouse that wrote it
    refused = r"records 1 load\(s\) this warehouse does not hold .*orders.csv, load r1-imaging_orders"
    with pytest.raises(ConfigError, match=refused):
        state.check_warehouse(_warehouse())


def test_a_second_warehouse_writing_the_same_state_folder_is_refused(spark_models, tmp_path):
    state = SparkState(spark_models, state_uri(str(tmp_path / "state")))
    first = _warehouse()
    first.execute(  # a run that failed before loading anything: no load for check_warehouse's first test
        "INSERT INTO audit_runs (run_id, command, status, periods, started_at, audits) VALUES ('r1', 'run', 'failed', 'all', ?, "
        "'csf_leak')",
        [T0],
    )
    state.write(first, "r1")
    state.check_warehouse(first)
    with pytest.raises(ConfigError, match=r"records 1 run\(s\) this warehouse does not hold \(e.g. r1\): another warehouse"):
        state.check_warehouse(_warehouse())

    # two writers at once: the one committing second finds the number taken and does not commit
    other = _warehouse()
    _add_run(other, "r9", "loaded", "appropriate", 0)
    write_parts = state.write_parts

    def meanwhile(con, version, held):
        brought = write_parts(con, version, held)
        SparkState(spark_models, state.uri).write(other, "r9")  # the other writer commits first
        return brought

    state.write_parts = meanwhile
    _add_run(first, "r2", "loaded", "appropriate", 5)
    with pytest.raises(ConfigError, match="version 00000002-r9 was committed by another writer while this run wrote 00000002-r2"):
        state.write(first, "r2")
    assert [c["version"] for c in state.commits()] == ["00000001-r1", "00000002-r9"]
