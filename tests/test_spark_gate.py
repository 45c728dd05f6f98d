"""The data-quality gate on Spark (pipeline/quality/gx_spark.py): the suites' Great Expectations checks
run on the Spark session's frames through GX's Spark data source and give the DuckDB gate's results;
a query Spark cannot run is a check that could not run, by name. tests/test_spark_engine.py runs the
deck through the CLI on Spark and compares the gate's results, log lines and exit codes with DuckDB's.

One local[2] Spark for the whole session (tests/conftest.py: spark_models). Needs Java 17, else skipped
(the transpile test runs without)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pytest

from pipeline.config import Config
from pipeline.ingest import load
from pipeline.quality import gate, gx_spark, validate

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def spark(spark_models):
    return spark_models  # the session of tests/conftest.py


def _row_queries() -> list[tuple[str, str]]:
    suites = sorted(validate.SUITES_DIR.glob("*.json")) + sorted(Path("audits").glob("*/expectations/*.json"))
    assert len(suites) >= 6
    return [
        (e["meta"]["check_id"], e["kwargs"]["unexpected_rows_query"])
        for path in suites
        for t in json.loads(path.read_text(encoding="utf-8"))["tables"]
        for e in t["expectations"]
        if e["type"] == "unexpected_rows_expectation"
    ]


def test_every_row_query_of_the_suites_has_a_spark_form_keeping_gxs_template():
    queries = _row_queries()
    assert len(queries) >= 10
    for check_id, query in queries:
        spark_sql = gx_spark.unexpected_rows_query(query)  # raises NotOnSpark naming the construct
        assert ("{batch}" in spark_sql) == ("{batch}" in query), check_id
        # GX formats the query: doubled braces stay doubled, and the regular expressions keep group 0
        # (Spark's regexp_extract returns group 1 when none is given)
        assert spark_sql.count("{{") == query.count("{{"), check_id
        if "regexp_extract" in query:
            assert ", 0) = ''" in spark_sql, (check_id, spark_sql)
    with pytest.raises(gx_spark.NotOnSpark, match=r"cannot run on Spark: jaro_similarity\(\)"):
        gx_spark.unexpected_rows_query("SELECT order_id FROM {batch} WHERE jaro_similarity(status, 'x') > 0.5")


def _prepared(small_input: Path, scratch: Path) -> dict:
    cfg = Config()
    scratch.mkdir()
    return load.prepare_inputs(load.find_inputs(small_input, cfg), cfg, scratch)


def test_the_gate_on_spark_gives_the_duckdb_gates_results_and_sets_the_same_rows_aside(spark, small_input, tmp_path):
    path = small_input / "imaging_orders.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2].replace(",completed", ",lost")  # O2: a blocking row-level failure, 1 of 4 (over 20%: blocks)
    lines[3] = lines[3].replace("72158", "7215")  # O3: a code in neither CPT nor LOINC form, a warning with a sample
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = Config()
    prepared = _prepared(small_input, tmp_path / "scratch")
    duck, duck_aside = gate.check_inputs(prepared, cfg, tmp_path / "scratch", NOW, small_input)
    (tmp_path / "spark").mkdir()
    got, got_aside = gate.check_inputs(prepared, cfg, tmp_path / "spark", NOW, small_input, spark=spark)
    assert [gate.as_dict(r) for r in got] == [gate.as_dict(r) for r in duck]
    by_id = {r.check_id: r for r in got}
    assert by_id["orders.status.allowed"].violated_count == 1 and by_id["orders.status.allowed"].blocks
    assert by_id["orders.order_code.format"].sample_keys == ["O3"]
    assert sorted(got_aside) == sorted(duck_aside) == ["imaging_orders"]
    assert got_aside["imaging_orders"].read_bytes() == duck_aside["imaging_orders"].read_bytes()
    assert gate.failure_message(gate.blocking(got)) == gate.failure_message(gate.blocking(duck))
    assert not spark.session.catalog.tableExists("src_imaging_orders")  # the gate's views are gone


def test_the_gx_checks_read_the_spark_frames_and_a_query_spark_cannot_run_is_named(spark, small_input, tmp_path):
    from pyspark.sql import functions as F

    prepared = _prepared(small_input, tmp_path / "scratch")
    db = gate.build_gate_db(prepared, Config(), tmp_path / "scratch", small_input, [])
    # the session's frame of the table, not the DuckDB file, is what GX validates on Spark
    frame = spark.session.read.parquet(str(prepared["imaging_orders"].typed_parquet))
    frame.withColumn("status", F.lit("lost")).createOrReplaceTempView("src_imaging_orders")
    suite = json.loads((validate.SUITES_DIR / "imaging_orders.json").read_text(encoding="utf-8"))
    suite["sql_checks"] = []
    unrunnable = json.loads(json.dumps(suite["tables"][0]["expectations"][-1]))
    unrunnable["kwargs"]["unexpected_rows_query"] = "SELECT order_id FROM {batch} WHERE jaro_similarity(status, 'x') > 0.5"
    unrunnable["meta"] |= {"check_id": "orders.status.similar", "severity": "blocking"}
    suite["tables"][0]["expectations"].append(unrunnable)
    (tmp_path / "suite.json").write_text(json.dumps(suite), encoding="utf-8")
    try:
        on_spark = {r.check_id: r for r in validate.run_suites(db, [tmp_path / "suite.json"], {"now": NOW}, spark=spark.session)}
    finally:
        spark.session.catalog.dropTempView("src_imaging_orders")
    on_duckdb = {r.check_id: r for r in validate.run_suites(db, [tmp_path / "suite.json"], {"now": NOW})}
    assert on_duckdb["orders.status.allowed"].violated_count == 0
    assert on_spark["orders.status.allowed"].violated_count == 4
    assert on_spark["orders.status.allowed"].status == "failed"
    similar = on_spark["orders.status.similar"]
    assert similar.status == "error" and similar.blocking_failure
    assert similar.error.startswith("cannot run on Spark: jaro_similarity()"), similar.error


def test_a_check_of_an_audits_suite_that_cannot_run_for_its_own_query_stops_as_on_duckdb(spark, small_input, tmp_path):
    """A blocking check of an audit's own suite naming a column the table lacks: on DuckDB one line naming the suite,
    the check and the database's first line, exit 1 (gate.stop_error); on Spark it was the gate's failure, exit 3,
    'fix the extract', Spark's many-line error after it. Both engines now give the same line, each naming its own
    database's first line; a warning check that cannot run logs one line on both."""
    prepared = _prepared(small_input, tmp_path / "scratch")
    db = gate.build_gate_db(prepared, Config(), tmp_path / "scratch", small_input, [])
    suite = tmp_path / "my_audit" / "expectations" / "orders.json"  # an audit's folder, not the engine's expectations/
    suite.parent.mkdir(parents=True)
    query = "SELECT order_id FROM {batch} WHERE ordred_at IS NULL"
    checks = [
        {"type": "unexpected_rows_expectation", "kwargs": {"unexpected_rows_query": query + extra}, "meta": {"check_id": cid,
         "severity": severity, "row_level": True, "description": "A time."}}
        for cid, severity, extra in (("my_audit.orders.timed", "blocking", ""),
                                     ("my_audit.orders.timed_warning", "warning", " AND order_id <> 'x'"))
    ]  # fmt: skip
    table = {"table": "src_imaging_orders", "key_columns": ["order_id"], "expectations": checks}
    suite.write_text(json.dumps({"suite": "my_audit.orders", "tables": [table]}), encoding="utf-8")
    con = duckdb.connect(str(db), read_only=True)
    try:
        spark.ship(con, "src_imaging_orders")  # as the gate ships the tables it checks (gate._on_spark)
    finally:
        con.close()
    try:
        on_spark = validate.run_suites(db, [suite], {"now": NOW}, spark=spark.session)
    finally:
        spark.session.catalog.dropTempView("src_imaging_orders")
    on_duckdb = validate.run_suites(db, [suite], {"now": NOW})
    for blocking, _ in (on_duckdb, on_spark):
        stop = gate.stop_error([blocking])
        assert stop.exit_code == 1, stop.message
        assert stop.message.startswith(f"{suite}: check my_audit.orders.timed [src_imaging_orders] could not run ("), stop
        assert "ordred_at" in stop.message and "\n" not in stop.message, stop.message
    for _, warning in (on_duckdb, on_spark):
        said = gate.could_not_run(warning)  # the warning's log line: one line, the suite named
        assert said.startswith("could not run (") and "ordred_at" in said and "\n" not in said, said
        assert said.endswith(f"({suite}; the check is wrong, not the extract: fix the check)"), said
    assert on_duckdb[0].check_error.startswith("Binder Error: Referenced column")
    assert on_spark[0].check_error.startswith("[UNRESOLVED_COLUMN"), on_spark[0].check_error
