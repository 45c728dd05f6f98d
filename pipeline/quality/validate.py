"""Data-quality checks on the warehouse: Great Expectations suites plus a few SQL checks.

The suites are declarative files in ``expectations/*.json``. Each expectation carries a
GX ``type`` and ``kwargs`` and our own ``meta`` (``check_id``, ``severity``,
``description``, ``row_level``). Checks GX cannot express over one table (two tables,
or an aggregate over time) are the ``sql_checks`` of a suite, plain SQL in
``pipeline.quality.sql_checks`` returning the same ``CheckResult``; ``pipeline.quality.data_docs``
writes GX Data Docs of them all.

GX runs through its SQL data source on the DuckDB file, read-only, with the shim of
``pipeline.quality.gx_duckdb``: one batch validation per table (all of its expectations at
once). With a Spark session (``--engine spark``) the GX checks run instead through GX's Spark
data source on the session's temp views of the same names (``pipeline.quality.gx_spark``); the
SQL checks stay plain DuckDB SQL on the driver's file. ``great_expectations`` is imported lazily,
inside ``run_suites`` only.
"""

from __future__ import annotations

import datetime as dt
import difflib
import importlib
import json
import os
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.quality.result import SAMPLE_SIZE, CheckResult, examples, own_error
from pipeline.resources import expectations_dir
from pipeline.sqltext import ident, typed_literal

SUITES_DIR = expectations_dir()

ALL_SUITES = ("procedures", "imaging_orders", "diagnoses", "patients")
OUTPUT_SUITES = ("outputs",)

DEFAULT_PARAMS: dict[str, Any] = {
    "timestamp_floor": dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
    "min_mapped_share": 0.95,
    "volume_min_ratio": 0.5,
    "volume_trailing_months": 3,
    "site_timezone": "America/New_York",
}
# BASIC: the counts, and GX's few unexpected values. Not SUMMARY: its index list is one more
# query per column-map expectation, and the rows GX returns there (a LIMIT without an order)
# change from run to run; _run_table lists the first keys of a failed check itself.
RESULT_FORMAT = "BASIC"
_ATTACHED = "validated"  # the alias of the validated file on phase 1's connection

_gx_importer: threading.Thread | None = None
GATE_THREADS = ("import-gx", "sql-checks")  # daemon threads a stop can leave running (cli._exit)
_gx_import_lock = threading.Lock()


# Great Expectations' expectation types (its registry, ``registry.list_registered_expectation_implementations()``, at the
# locked version: tests/test_validate.py checks it): a suite's type is checked when it is read, without importing GX
# (seconds), so a misspelt one is one line naming the file before the run touches any data, not GX's
# ExpectationNotFoundError mid-gate, exit 70
GX_TYPES = frozenset((
    "expect_column_distinct_values_to_be_in_set", "expect_column_distinct_values_to_contain_set",
    "expect_column_distinct_values_to_equal_set", "expect_column_kl_divergence_to_be_less_than",
    "expect_column_max_to_be_between", "expect_column_mean_to_be_between", "expect_column_median_to_be_between",
    "expect_column_min_to_be_between", "expect_column_most_common_value_to_be_in_set",
    "expect_column_pair_values_a_to_be_greater_than_b", "expect_column_pair_values_to_be_equal",
    "expect_column_pair_values_to_be_in_set", "expect_column_proportion_of_non_null_values_to_be_between",
    "expect_column_proportion_of_unique_values_to_be_between", "expect_column_quantile_values_to_be_between",
    "expect_column_stdev_to_be_between", "expect_column_sum_to_be_between", "expect_column_to_exist",
    "expect_column_type_to_be", "expect_column_unique_value_count_to_be_between",
    "expect_column_value_lengths_to_be_between", "expect_column_value_lengths_to_equal",
    "expect_column_value_z_scores_to_be_less_than", "expect_column_values_to_be_between",
    "expect_column_values_to_be_dateutil_parseable", "expect_column_values_to_be_decreasing",
    "expect_column_values_to_be_in_set", "expect_column_values_to_be_in_type_list",
    "expect_column_values_to_be_increasing", "expect_column_values_to_be_json_parseable",
    "expect_column_values_to_be_null", "expect_column_values_to_be_of_type", "expect_column_values_to_be_unique",
    "expect_column_values_to_match_json_schema", "expect_column_values_to_match_like_pattern",
    "expect_column_values_to_match_like_pattern_list", "expect_column_values_to_match_regex",
    "expect_column_values_to_match_regex_list", "expect_column_values_to_match_strftime_format",
    "expect_column_values_to_not_be_in_set", "expect_column_values_to_not_be_null",
    "expect_column_values_to_not_be_outliers", "expect_column_values_to_not_match_like_pattern",
    "expect_column_values_to_not_match_like_pattern_list", "expect_column_values_to_not_match_regex",
    "expect_column_values_to_not_match_regex_list", "expect_compound_columns_to_be_unique",
    "expect_multicolumn_sum_to_equal", "expect_multicolumn_values_to_be_equal",
    "expect_query_results_to_match_comparison", "expect_select_column_values_to_be_unique_within_record",
    "expect_table_column_count_to_be_between", "expect_table_column_count_to_equal",
    "expect_table_columns_to_match_ordered_list", "expect_table_columns_to_match_set",
    "expect_table_row_count_to_be_between", "expect_table_row_count_to_equal",
    "expect_table_row_count_to_equal_other_table", "unexpected_rows_expectation",
))  # fmt: skip
META = ("check_id", "severity", "description", "row_level")  # what every expectation's meta holds


def input_tables() -> list[str]:
    """The tables an input suite may check: the views of the contract's tables (``src_<table>``), each whether or not
    this delivery holds it."""
    from pipeline.ingest.contract import CONTRACT_BY_NAME

    return sorted(f"src_{name}" for name in CONTRACT_BY_NAME)


def load_suite(name_or_path: str | os.PathLike, table_prefix: str = "", known_tables: Iterable[str] | None = None) -> dict:
    """A suite file (a name in expectations/, or a path): ``{prefix}`` in its table names and queries
    becomes ``table_prefix`` (an audit's ``<id>__`` for the output suite), ``"$verdicts"`` the engine's
    verdicts (pipeline/models/verdicts.csv). Its shape is checked as it is read (``known_tables``: the tables it
    may name, e.g. ``input_tables()``): a mistake in it is one line naming the file (ConfigError, exit 1), before
    any data is read; it was JSON's, GX's or a KeyError's traceback mid-gate, exit 70."""
    from pipeline.audits import verdicts
    from pipeline.config import regular_file

    path = suite_path(name_or_path)
    try:
        # a folder or a pipe named *.json in an audit's expectations/ was a traceback, or a run that never ended; JSON
        # nested too deep for Python's parser a RecursionError's traceback (the hostile review, 2026-12-05)
        regular_file(path, "make it a JSON file, or remove it")
        text = path.read_text(encoding="utf-8")
        json.loads(text)  # the file as written: its line and column, before {prefix} moves them
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save the suite as UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}, line {exc.lineno}, column {exc.colno}: not JSON ({exc.msg}); fix the file") from None
    except RecursionError:
        raise ConfigError(f"{path}: JSON nested too deeply to read; fix the file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the suite ({exc.strerror}); check its permissions") from None
    suite = json.loads(text.replace("{prefix}", table_prefix))
    _check_suite(path, suite, None if known_tables is None else sorted(known_tables))
    for table in suite["tables"]:
        for exp in table["expectations"]:
            if exp["kwargs"].get("value_set") == "$verdicts":
                exp["kwargs"]["value_set"] = verdicts()
    return suite


def suite_path(name_or_path: str | os.PathLike) -> Path:
    """A suite's file: a name is one of the engine's (expectations/<name>.json), else the path itself."""
    path = Path(name_or_path)
    return path if path.suffix else SUITES_DIR / f"{name_or_path}.json"


def _check_suite(path: Path, suite, known_tables: list[str] | None) -> None:
    """What the gate reads of a suite is there and of its kind; the tables are known, the types GX's, the ids once."""
    shape = 'a suite is a JSON object with "suite" (its name) and "tables" (a list of objects)'
    if not isinstance(suite, dict) or not isinstance(suite.get("suite"), str) or not isinstance(suite.get("tables"), list):
        raise ConfigError(f"{path}: {shape}; fix the file")
    seen: set[str] = set()
    for n, table in enumerate(suite["tables"], start=1):
        if not isinstance(table, dict) or not isinstance(table.get("table"), str):
            raise ConfigError(f'{path}: table {n} of "tables" has no "table" (the table it checks); fix the file')
        name = table["table"]
        if known_tables is not None and name not in known_tables:
            raise ConfigError(f"{path}: table {name!r} is no input table (known: {', '.join(known_tables)}); fix its name")
        for key in ("key_columns", "expectations"):
            if not isinstance(table.get(key), list):
                raise ConfigError(f'{path}: table {name} has no "{key}" list; fix the file')
        for k, exp in enumerate(table["expectations"], start=1):
            meta = exp.get("meta") if isinstance(exp, dict) else None
            check = meta.get("check_id") if isinstance(meta, dict) else None
            where = f"check {check}" if isinstance(check, str) else f"table {name}, expectation {k}"
            if not isinstance(exp, dict) or not isinstance(exp.get("kwargs"), dict) or not isinstance(meta, dict):
                raise ConfigError(f'{path}: {where}: an expectation is an object with "type", "kwargs" and "meta"; fix it')
            missing = [m for m in META if m not in meta]
            if missing:
                raise ConfigError(f"{path}: {where}: meta lacks {', '.join(missing)}; every check's meta has {', '.join(META)}")
            etype = exp.get("type")
            if etype not in GX_TYPES:
                close = difflib.get_close_matches(str(etype), GX_TYPES, n=1)
                hint = (
                    f"did you mean {close[0]}?"
                    if close
                    else "e.g. unexpected_rows_expectation, expect_column_values_to_be_in_set"
                )
                raise ConfigError(f"{path}: {where}: type {etype!r} is no Great Expectations expectation ({hint}); fix its type")
            if meta["severity"] not in ("blocking", "warning"):
                raise ConfigError(f"{path}: {where}: severity {meta['severity']!r} must be blocking or warning")
            if check in seen:
                raise ConfigError(f"{path}: {where} is listed twice; each check id once")
            seen.add(check)


def tables_read(suites: Iterable[str | os.PathLike], table_prefix: str = "") -> set[str]:
    """Every table the suites' GX checks read: the tables they validate and those their row queries join."""
    from pipeline.quality.gx_spark import tables_read as query_reads

    names: set[str] = set()
    for suite in (load_suite(s, table_prefix) for s in suites):
        for tspec in suite["tables"]:
            names.add(tspec["table"])
            for e in tspec["expectations"]:
                if e["type"] == "unexpected_rows_expectation":
                    names |= query_reads(e["kwargs"]["unexpected_rows_query"])
    return names


def resolve_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults + the caller's values. ``now`` is required: the run supplies it."""
    p = {**DEFAULT_PARAMS, **(params or {})}
    if "now" not in p:
        raise ValueError("params['now'] is required (the run's reference time, tz-aware)")
    for key in ("now", "timestamp_floor"):
        v = p[key]
        if isinstance(v, str):
            v = dt.datetime.fromisoformat(v)
        if isinstance(v, dt.date) and not isinstance(v, dt.datetime):
            v = dt.datetime(v.year, v.month, v.day)
        if v.tzinfo is None:
            raise ValueError(f"params['{key}'] must be timezone-aware")
        p[key] = v
    p.setdefault("today", p["now"].date())
    return p


# ---------------------------------------------------------------------------------------
# the runner


def run_suites(
    warehouse_path: str | os.PathLike,
    suites: Iterable[str | os.PathLike] = ALL_SUITES,
    params: Mapping[str, Any] | None = None,
    spark=None,
) -> list[CheckResult]:
    """Run the named suites against the DuckDB file (read-only) and return one result per check.
    ``spark``: a SparkSession whose temp views hold the same tables; the GX checks run there."""
    import duckdb

    p = resolve_params(params)
    path = Path(warehouse_path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"warehouse file not found: {path}")
    suites = list(suites)
    loaded = [load_suite(s, p.get("table_prefix", "")) for s in suites]

    importer = start_gx_import()

    # Phase 1, plain DuckDB (read-only): which tables exist, their columns and row counts.
    # The connection is an in-memory DuckDB that ATTACHes the file read-only: a database
    # instance of its own, so it can stay open while GX opens the file through duckdb-engine
    # (which adds its own custom_user_agent, and DuckDB refuses a second in-process
    # connect() of one file with different settings).
    tables: dict[str, dict] = {}
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute(f"ATTACH {typed_literal(str(path))} AS {ident(_ATTACHED)} (READ_ONLY)")
        con.execute(f"USE {ident(_ATTACHED)}")
        # views too: the input gate reads the parsed Parquet through views
        existing = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = $db "
                "UNION SELECT view_name FROM duckdb_views() WHERE NOT internal AND database_name = $db",
                {"db": _ATTACHED},
            ).fetchall()
        }
        for suite in loaded:
            for tspec in suite["tables"]:
                t = tspec["table"]
                if t in existing and t not in tables:
                    cols = {
                        r[0]
                        for r in con.execute(
                            "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND table_name = ?", [_ATTACHED, t]
                        ).fetchall()
                    }
                    rows = con.execute(f"SELECT count(*) FROM {ident(t)}").fetchall()[0][0]
                    tables[t] = {"columns": cols, "rows": rows}
    except BaseException:
        con.close()
        raise

    # The SQL checks run on a thread of their own, on that connection, while Great
    # Expectations is imported (seconds of pure Python) and then validates: DuckDB releases
    # the GIL while it executes, so their scans use the cores the import and GX's own
    # Python leave idle.
    sql_results: dict[tuple[int, int], CheckResult] = {}
    sql_error: list[BaseException] = []

    from pipeline.quality.sql_checks import run_sql_check

    def run_sql_checks() -> None:
        try:
            for i, suite in enumerate(loaded):
                for j, spec in enumerate(suite.get("sql_checks", [])):
                    sql_results[(i, j)] = run_sql_check(con, spec, existing, p)
        except BaseException as exc:  # re-raised on the caller's thread
            sql_error.append(exc)
        finally:
            con.close()

    sql_thread = threading.Thread(target=run_sql_checks, name="sql-checks", daemon=True)
    sql_thread.start()

    importer.join()
    # Phase 2, GX: one batch validation per table.
    gx_results: dict[tuple[int, int], list[CheckResult]] = {}
    datasource = None
    try:
        for i, suite in enumerate(loaded):
            for k, tspec in enumerate(suite["tables"]):
                t = tspec["table"]
                if t not in tables:
                    if not tspec.get("optional"):
                        gx_results[(i, k)] = _missing_table_results(tspec)
                    continue
                if datasource is None:
                    if spark is not None:
                        from pipeline.quality.gx_spark import make_context
                    else:
                        from pipeline.quality.gx_duckdb import make_context

                    _context, datasource = make_context(path if spark is None else spark)
                gx_results[(i, k)] = _run_table(datasource, suite["suite"], tspec, tables[t], p, spark)
    finally:
        if datasource is not None and spark is None:
            from pipeline.quality.gx_duckdb import close_datasource

            close_datasource(datasource)
        sql_thread.join()
    if sql_error:
        raise sql_error[0]
    results: list[CheckResult] = []
    for i, (name, suite) in enumerate(zip(suites, loaded, strict=True)):
        first = len(results)
        for k in range(len(suite["tables"])):
            results.extend(gx_results.get((i, k), []))
        results.extend(sql_results[(i, j)] for j in range(len(suite.get("sql_checks", []))))
        for r in results[first:]:
            r.suite = str(suite_path(name))
    return results


def start_gx_import() -> threading.Thread:
    """Import Great Expectations on a thread (once per process); join the thread to wait for it.

    The import is seconds of pure Python: callers start it as early as they can and do
    DuckDB work meanwhile.
    """
    global _gx_importer
    with _gx_import_lock:
        if _gx_importer is None:
            _gx_importer = threading.Thread(
                target=importlib.import_module, args=("great_expectations",), name="import-gx", daemon=True
            )
            _gx_importer.start()
        return _gx_importer


def _missing_table_results(tspec: dict) -> list[CheckResult]:
    error = f"table {tspec['table']} does not exist in the warehouse"
    return [_not_run(tspec, e, error) for e in tspec["expectations"]]


def _run_table(datasource, suite_name: str, tspec: dict, info: dict, p: dict, spark=None) -> list[CheckResult]:
    """One batch validation of a table: on the DuckDB file, or (``spark``) on the session's temp view."""
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    table = tspec["table"]
    keys = tspec["key_columns"]
    index_cols = [k for k in keys if k in info["columns"]]
    row_count = info["rows"]

    asset_name = f"{suite_name}__{table}"
    batch_parameters = None
    try:
        asset = datasource.get_asset(asset_name)
    except LookupError:
        if spark is None:
            asset = datasource.add_table_asset(name=asset_name, table_name=table)
        else:
            asset = datasource.add_dataframe_asset(name=asset_name)
    if spark is None:
        batch_def = asset.add_batch_definition_whole_table(f"{asset_name}__whole")
    else:
        batch_def = asset.add_batch_definition_whole_dataframe(f"{asset_name}__whole")
        batch_parameters = {"dataframe": spark.table(table)}
    suite = gx.ExpectationSuite(name=asset_name)
    by_id: dict[str, dict] = {}
    not_run: list[CheckResult] = []
    for e in tspec["expectations"]:
        by_id[e["meta"]["check_id"]] = e
        kwargs = e["kwargs"]
        if spark is not None and e["type"] == "unexpected_rows_expectation":
            from pipeline.quality.gx_spark import NotOnSpark, unexpected_rows_query

            try:
                kwargs = {**kwargs, "unexpected_rows_query": unexpected_rows_query(kwargs["unexpected_rows_query"])}
            except NotOnSpark as exc:
                not_run.append(_not_run(tspec, e, str(exc)))
                continue
        suite.add_expectation(ExpectationConfiguration(type=e["type"], kwargs=kwargs, meta=e["meta"]).to_domain_obj())
    gx_params = {k: p[k] for k in ("now", "timestamp_floor", "today")}
    result_format: dict[str, Any] = {
        "result_format": RESULT_FORMAT,
        "partial_unexpected_count": SAMPLE_SIZE,
    }

    t0 = time.perf_counter()
    batch = batch_def.get_batch(batch_parameters=batch_parameters)
    try:
        validation = batch.validate(suite, expectation_parameters=gx_params, result_format=result_format)
    finally:
        if batch_parameters is not None:
            batch_parameters["dataframe"].unpersist()  # GX's Spark engine persists the frame it validates
    seconds = time.perf_counter() - t0

    out = list(not_run)
    for r in validation.results:
        meta = r.expectation_config.meta or {}
        spec = by_id[meta["check_id"]]
        c = _from_gx(r, spec, table, keys, index_cols, row_count, p, seconds, info["columns"])
        if spark is not None and c.error:
            c.error = c.error.strip().splitlines()[0]  # Spark appends the query plan
        try:
            c.gx_result = r.to_json_dict()
        except Exception:  # Data Docs fall back to a result built from the counts
            c.gx_result = None
        out.append(c)
    # the first keys (or values) of each failed check, in order: the same every run
    need_sample = [c for c in out if c.status == "failed" and c.violations_sql]
    if need_sample:
        if spark is None:
            engine = datasource.get_execution_engine()
            with engine.get_connection() as conn:
                for c in need_sample:
                    sql = f"SELECT {_sample_key(c, index_cols)} FROM ({c.violations_sql}) AS v ORDER BY ALL LIMIT {SAMPLE_SIZE}"
                    c.sample_keys = examples(_joined(conn.exec_driver_sql(sql).fetchall()))
        else:
            from pipeline.quality.gx_spark import spark_sample

            for c in need_sample:
                c.sample_keys = examples(_joined(spark_sample(spark, c.violations_sql, _sample_key(c, index_cols), SAMPLE_SIZE)))
    order = {cid: i for i, cid in enumerate(by_id)}
    out.sort(key=lambda c: order[c.check_id])
    return out


def _sample_key(c: CheckResult, index_cols: list[str]) -> str:
    """What a failed check's sample lists: the table's keys, else a row query's columns, else the values."""
    if index_cols:
        return ", ".join(ident(k) for k in index_cols)
    if c.expectation["type"] == "unexpected_rows_expectation":
        return "*"
    return ident(c.expectation["kwargs"]["column"])  # the unexpected values themselves


def _joined(rows) -> list[str]:
    return [":".join("" if v is None else str(v) for v in row) for row in rows]


def _not_run(tspec: dict, e: dict, error: str) -> CheckResult:
    """A check that could not run (status error, named with why): it blocks when blocking, is logged when a warning."""
    return CheckResult(
        check_id=e["meta"]["check_id"],
        table=tspec["table"],
        severity=e["meta"]["severity"],
        status="error",
        violated_count=None,
        denominator=None,
        percent=None,
        description=e["meta"]["description"],
        row_level=e["meta"]["row_level"],
        expectation={"type": e["type"], "kwargs": e["kwargs"]},
        error=error,
    )


def _from_gx(
    r, spec: dict, table: str, keys: list[str], index_cols: list[str], row_count: int, p: dict, seconds: float, columns: set[str]
) -> CheckResult:
    meta = spec["meta"]
    res = CheckResult(
        check_id=meta["check_id"],
        table=table,
        severity=meta["severity"],
        status="passed",
        violated_count=0,
        denominator=row_count,
        percent=0.0,
        description=meta["description"],
        row_level=meta["row_level"],
        expectation={
            "type": spec["type"],
            "kwargs": spec["kwargs"],
            "column": spec["kwargs"].get("column") or meta.get("column"),
        },
        seconds=seconds,
        sample_key=":".join(index_cols) or spec["kwargs"].get("column"),
    )
    error = gx_exception_message(r)
    empty = False
    column = spec["kwargs"].get("column")
    if column is not None and column not in columns:
        error = f"column {column} does not exist in {table}"
    elif error is None and r.result and "unexpected_count" in r.result and r.result["unexpected_count"] is None:
        if row_count == 0:
            # an empty table (a month without cases): no row breaks the check, and GX counts nothing
            r.result["unexpected_count"] = 0
            empty = True
        else:
            error = (
                f"could not count how many of the {row_count} rows of {table} break this check "
                f"({meta['description']}): Great Expectations computed no count of unexpected rows"
            )
    if error is not None:
        res.status, res.violated_count, res.percent = "error", None, None
        res.error = error
        # a column the table lacks, or a query naming one: the check's own mistake (the views hold every contract column)
        res.check_error = error if column is not None and column not in columns else own_error(error)
        return res
    result = r.result or {}
    etype = spec["type"]
    if etype == "unexpected_rows_expectation":
        n = int(result.get("observed_value") or 0)
        # SUMMARY drops the rows GX fetched (only COMPLETE keeps them, and COMPLETE would
        # return every unexpected value of the column-map checks): _run_table samples them.
        res.violations_sql = spec["kwargs"]["unexpected_rows_query"].format(batch=ident(table))
    elif "unexpected_count" in result:
        n = int(result["unexpected_count"])
        res.denominator = int(result.get("element_count", row_count))
        res.violations_sql = _column_map_sql(spec, table, p)
        if r.success or not index_cols or res.violations_sql is None:
            res.sample_key = spec["kwargs"].get("column")  # the unexpected values themselves
        if res.violations_sql is None:  # a type _column_map_sql does not know: GX's own values
            res.sample_keys = examples(result.get("partial_unexpected_list") or [])
    else:  # table-level expectation (columns, row count): 0 or 1 violation
        n = 0 if r.success else 1
        res.denominator = 1
        mismatched = (result.get("details") or {}).get("mismatched") or {}
        res.sample_key = "missing column"
        if mismatched.get("missing"):
            res.sample_keys = [str(c) for c in mismatched["missing"]][:SAMPLE_SIZE]
    res.violated_count = n
    res.percent = round(100.0 * n / res.denominator, 4) if res.denominator else 0.0
    res.status = "passed" if r.success or empty else "failed"
    return res


def gx_exception_message(r) -> str | None:
    """The exception a GX result carries, or None.

    ``exception_info`` is either flat (``{"raised_exception": ..., "exception_message": ...}``)
    or, when a metric failed, keyed by metric id with one such dict per metric.
    """
    info = r.exception_info or {}
    if "raised_exception" in info:
        return info.get("exception_message") if info["raised_exception"] else None
    messages = [v.get("exception_message") for v in info.values() if isinstance(v, Mapping) and v.get("raised_exception")]
    return "; ".join(sorted({str(m) for m in messages})) if messages else None


# the expectations _column_map_sql knows: their violations_sql is SELECT * FROM <table> WHERE ...,
# one row per violating row of the table
COLUMN_MAP_TYPES = frozenset(
    {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_unique",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_be_between",
    }
)


def _column_map_sql(spec: dict, table: str, p: dict) -> str | None:
    """The DuckDB SQL that lists the rows a column-map expectation counts as unexpected."""
    kw = spec["kwargs"]
    col = ident(kw.get("column", ""))
    t = ident(table)

    def val(v):
        return p[v["$PARAMETER"]] if isinstance(v, Mapping) and "$PARAMETER" in v else v

    etype = spec["type"]
    if etype == "expect_column_values_to_not_be_null":
        return f"SELECT * FROM {t} WHERE {col} IS NULL"
    if etype == "expect_column_values_to_be_unique":
        return (
            f"SELECT * FROM {t} WHERE {col} IN (SELECT {col} FROM {t} WHERE {col} IS NOT NULL GROUP BY {col} HAVING count(*) > 1)"
        )
    if etype == "expect_column_values_to_be_in_set":
        values = ", ".join(typed_literal(v) for v in val(kw["value_set"]))
        return f"SELECT * FROM {t} WHERE {col} IS NOT NULL AND {col} NOT IN ({values})"
    if etype == "expect_column_values_to_be_between":
        conds = []
        if kw.get("min_value") is not None:
            conds.append(f"{col} {'<=' if kw.get('strict_min') else '<'} {typed_literal(val(kw['min_value']))}")
        if kw.get("max_value") is not None:
            conds.append(f"{col} {'>=' if kw.get('strict_max') else '>'} {typed_literal(val(kw['max_value']))}")
        return f"SELECT * FROM {t} WHERE {col} IS NOT NULL AND ({' OR '.join(conds)})"
    return None


def blocking_failures(results: Iterable[CheckResult]) -> list[CheckResult]:
    return [r for r in results if r.blocking_failure]
