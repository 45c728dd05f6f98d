"""Great Expectations 1.x on Spark: the context factory and the suites' SQL in Spark's dialect.

With ``--engine spark`` the gate validates Spark DataFrames (temp views of the run's Spark session)
through GX's Spark data source (``context.data_sources.add_spark``, one dataframe asset per table,
a whole-dataframe batch definition, the frame passed as the batch parameter ``dataframe``). The
suites are written once, in DuckDB SQL: an ``unexpected_rows_query`` and the queries that sample a
failed check's keys are transpiled with ``pipeline.models.dialects`` (the models' shims), and a query
that cannot run on Spark is a check that could not run, by name, never a check left out.

Import this module only from code that validates: ``import great_expectations`` costs 2-3 s.
"""

from __future__ import annotations

import logging
import os

from pipeline.models import dialects

DATASOURCE_NAME = "spark_frames"
# what {batch} stands for while sqlglot reads a query (GX puts its own view name there)
_BATCH_STANDIN = "gx_batch_standin"


class NotOnSpark(ValueError):
    """A suite's query uses a construct Spark cannot run (or would run with another meaning)."""


def make_context(session):
    """An ephemeral GX context with a Spark data source on ``session`` (the run's own session, local
    or Spark Connect). Returns ``(context, datasource)``; nothing is written to disk."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    datasource = context.data_sources.add_spark(name=DATASOURCE_NAME)
    # a query Spark rejects is the check's error (its first line, in the log and report); PySpark would
    # also log the whole plan as a JSON record on stderr
    from pyspark.logger import PySparkLogger

    PySparkLogger.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
    # GX 1.24.1 hands this session to its execution engine; without it GX makes one of its own guess
    # (a Spark Connect builder first, then a local JVM), not the run's. Its row queries run on that
    # session against a temp view of the batch, so through Spark Connect a wrong session fails every
    # unexpected_rows check: tests/test_spark_engine.py's Connect deck run would show it
    datasource._spark = session
    return context, datasource


def spark_sql(duckdb_sql: str) -> str:
    """A query of a suite (DuckDB SQL) as Spark SQL; raises NotOnSpark naming what Spark cannot run."""
    try:
        return dialects.check(duckdb_sql, "spark")
    except dialects.NotPortable as exc:
        raise NotOnSpark(f"cannot run on Spark: {exc}") from None


def unexpected_rows_query(duckdb_query: str) -> str:
    """An ``unexpected_rows_query`` as Spark SQL, keeping GX's template: ``{batch}`` and doubled braces."""
    plain = duckdb_query.replace("{batch}", _BATCH_STANDIN).replace("{{", "{").replace("}}", "}")
    return spark_sql(plain).replace("{", "{{").replace("}", "}}").replace(_BATCH_STANDIN, "{batch}")


def tables_read(duckdb_sql: str) -> set[str]:
    """The tables (or views) a query reads besides its own CTEs and GX's ``{batch}``."""
    import sqlglot
    from sqlglot import exp

    tree = sqlglot.parse_one(duckdb_sql.replace("{batch}", _BATCH_STANDIN), read=dialects.SOURCE)
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    return {t.name for t in tree.find_all(exp.Table) if t.name not in ctes | {_BATCH_STANDIN}}


def spark_sample(session, violations_sql: str, key: str, limit: int) -> list[tuple]:
    """The first ``limit`` rows of ``key`` (DuckDB SQL over a check's violations query) on Spark, ordered
    by every column with NULLs last, as DuckDB's ORDER BY ALL; an instant as the aware UTC time
    DuckDB gives (the session's time zone is UTC)."""
    import datetime as dt

    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampType

    frame = session.sql(spark_sql(f"SELECT {key} FROM ({violations_sql}) AS v"))
    instants = [isinstance(f.dataType, TimestampType) for f in frame.schema.fields]
    rows = frame.orderBy(*[F.col(c).asc_nulls_last() for c in frame.columns]).limit(limit).collect()
    return [
        tuple(v.replace(tzinfo=dt.UTC) if utc and isinstance(v, dt.datetime) else v for v, utc in zip(row, instants, strict=True))
        for row in rows
    ]
