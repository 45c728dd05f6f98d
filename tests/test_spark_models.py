"""The Spark engine's session (``SparkModels``) on a real local Spark (local[2]): how the sources reach a Spark
that cannot see the driver's files, and where a local JVM keeps its own. That every model gives the DuckDB
marts on Spark is tested on the deck's whole run (test_spark_engine's local run compares every mart, row by row).

Needs Java 17 (PySpark starts a JVM); without it the tests are skipped and say what to install."""

from __future__ import annotations

import copy
import dataclasses

import duckdb
import pytest

pytestmark = pytest.mark.spark


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
    # Spark's SQL warehouse was spark-warehouse/ in the working directory: a scheduled run made it in the user's folder
    warehouse = spark_models.session.conf.get("spark.sql.warehouse.dir")
    assert warehouse.removeprefix("file:") == str(spark_models.scratch / "spark-sql-warehouse")
