"""Every model, transpiled to Spark SQL (pipeline/models/dialects.py), on a real local Spark (local[2]):
the deck's parsed tables go to Spark as the DuckDB run left them (the warehouse's typed sources and
the run's reference and parameter tables, through Parquet), every model runs in dependency order, and
each audit's marts equal the DuckDB run's, row by row.

Needs Java 17 (PySpark starts a JVM); without it the test is skipped and says what to install."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import math
from decimal import Decimal

import duckdb
import pytest

from pipeline import config, warehouse
from pipeline.models import dialects, runner

pytestmark = pytest.mark.spark


@pytest.fixture
def spark(spark_models):
    """The session of tests/conftest.py: local[2], UTC (the shims' assumption, dialects.py), two shuffle
    partitions, no whole-stage codegen or adaptive execution (a deck is tiny), ANSI SQL (Spark 4's default)."""
    assert spark_models.session.conf.get("spark.sql.ansi.enabled") == "true"
    return spark_models.session


def _sources(con: duckdb.DuckDBPyConnection, names: set[str]) -> list[str]:
    """The declared sources the models read that the warehouse holds (tables and views, temp ones too)."""
    query = "SELECT table_name FROM duckdb_tables() UNION SELECT view_name FROM duckdb_views()"
    held = {r[0] for r in con.execute(query).fetchall()}
    return sorted(names & held)


def _value(v):
    """One value as both engines agree to give it: instants as naive UTC, decimals and floats as floats."""
    if isinstance(v, dt.datetime) and v.tzinfo is not None:
        return v.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(v, Decimal | float):
        return None if math.isnan(float(v)) else round(float(v), 9)
    if isinstance(v, bytes | bytearray):
        return bytes(v)
    return v


def _rows(rows) -> list[tuple]:
    return sorted((tuple(_value(v) for v in r) for r in rows), key=repr)


def test_every_model_on_spark_gives_the_duckdb_marts(spark, deck_runs, tmp_path):
    wh = deck_runs["runs"]["combined"]["out"].parent / "wh.duckdb"
    chosen = [a for a in deck_runs["audits"].values() if a.runnable]
    assert "csf_leak" in {a.id for a in chosen}
    models = runner.core_models() + [m for a in chosen for m in runner.audit_models(a)]
    ordered = runner.execution_order(models)
    reads = set().union(*(m.reads for m in ordered)) - {m.name for m in ordered}

    con = warehouse.connect(wh, read_only=True)
    key, _ = config.pseudonym_key(config.load_config())
    warehouse.set_pseudonym_key(con, key)
    for name in _sources(con, reads):
        con.execute(f"COPY (SELECT * FROM {name}) TO '{tmp_path / name}.parquet' (FORMAT parquet)")
        spark.read.parquet(str(tmp_path / f"{name}.parquet")).createOrReplaceTempView(name)
    missing = reads - set(_sources(con, reads))
    assert not missing, f"the warehouse lacks sources the models read: {sorted(missing)}"

    for m in ordered:
        dialects.check(m.sql, "spark")  # nothing denied
        # Spark inlines common table expressions: each becomes a view, built once when read twice or
        # more (the episode model's doubling passes would otherwise plan their inputs 2^k times)
        for view, sql, reads in dialects.split_ctes(m.name, m.sql, "spark"):
            df = spark.sql(sql)
            if reads > 1 or (view == m.name and m.materialisation == "TABLE"):
                df = df.localCheckpoint()  # built once, as DuckDB's CREATE TABLE does; also cuts the plan
            df.createOrReplaceTempView(view)

    marts = [m for m in ordered if m.audit and m.layer == "mart"]
    assert {f"{a.id}__mart_audited_orders" for a in chosen} <= {m.name for m in marts}
    for m in marts:
        duck_columns = [r[0] for r in con.execute(f"DESCRIBE {m.name}").fetchall()]
        spark_df = spark.table(m.name)
        assert spark_df.columns == duck_columns, m.name
        duck_rows = _rows(con.execute(f"SELECT * FROM {m.name}").fetchall())
        spark_rows = _rows(spark_df.collect())
        assert len(spark_rows) == len(duck_rows), m.name
        for duck_row, spark_row in zip(duck_rows, spark_rows, strict=True):
            assert spark_row == duck_row, f"{m.name}: {dict(zip(duck_columns, spark_row, strict=True))}"
    con.close()


def test_a_spark_that_cannot_see_the_drivers_files_gets_the_sources_through_arrow(spark_models):
    # a cluster spark-submit names (or a Connect server): its executors do not see the driver's scratch folder
    cluster = copy.copy(spark_models)
    cluster.settings = dataclasses.replace(spark_models.settings, master="spark://cluster.example:7077")
    assert spark_models.shares_files and not cluster.shares_files and not cluster.reads_inputs
    con = duckdb.connect()
    con.execute("CREATE TABLE arrow_shipped AS SELECT 7::UTINYINT AS n, 'x' AS s")
    written = set(spark_models.scratch.iterdir())
    cluster.ship(con, "arrow_shipped")
    assert [tuple(r) for r in spark_models.session.table("arrow_shipped").collect()] == [(7, "x")]
    assert set(spark_models.scratch.iterdir()) == written  # no Parquet file for it


def test_a_local_jvm_keeps_its_files_in_the_run_scratch_folder(spark_models):
    """A local Spark's JVM wrote its block manager, ``spark-*`` and ``artifacts-*`` folders and native libraries to
    /tmp: a JVM the OOM killer ended left them there for good (94 files a kill). They are in the run's scratch
    folder now, which the next run removes (docs/SCHEDULING.md, "What a kill leaves behind")."""
    context = spark_models.session.sparkContext
    jvm_tmp, local = spark_models.scratch / "jvm-tmp", spark_models.scratch / "spark-local"
    assert context._jvm.System.getProperty("java.io.tmpdir") == str(jvm_tmp)
    assert context.getConf().get("spark.local.dir") == str(local)
    assert sorted(p.name.split("-")[0] for p in local.iterdir()) == ["blockmgr", "spark"]
