"""The data-quality gate: Great Expectations suites on the parsed inputs and on the outputs.

Inputs are checked before the warehouse changes, on a scratch DuckDB file whose views read
the parsed Parquet: the generic suites of expectations/ (one per input table), then each audit's
own (audits/<id>/expectations/*.json). Row-level failures set their rows aside (rejects) and the
run goes on; a blocking dataset-level failure, or a row-level one over max_rejected_share, stops it.
The output suite runs once per audit, on its marts.

With ``--engine spark`` the suites' Great Expectations checks run on Spark instead (``_on_spark``):
every table they read goes to the run's Spark session as a temp view of its name, GX validates
those frames through its Spark data source; the suites' SQL checks stay on the scratch DuckDB file.
Blocking, warning and setting rows aside follow the same results either way.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import duckdb

from pipeline import warehouse
from pipeline.config import Config, pseudonym_key
from pipeline.errors import AuditError, ConfigError, QualityGateError, first_line, printable, raise_if_stopped
from pipeline.ingest.contract import CONTRACT_BY_NAME, values_showing_a_patient_id
from pipeline.logs import event
from pipeline.models import reference
from pipeline.quality.catalog import (
    HELD_BIRTHS_VIEW,
    HELD_ORDERS_VIEW,
    HELD_PATIENTS_VIEW,
    HELD_REPLACED_ORDERS_VIEW,
    relations,
)
from pipeline.quality.held import Held
from pipeline.sqltext import literal

INPUT_SUITES = {"procedures": "procedures", "imaging_orders": "imaging_orders", "diagnoses": "diagnoses", "patients": "patients"}
# a row-level check that fails on more than this share of a table blocks even so
MAX_REJECTED_SHARE = 0.2
SAMPLE_LOGGED = 3  # sample keys (months, order ids, pseudonyms) a warning's log line names

DQ_DDL = """CREATE TABLE IF NOT EXISTS dq_results (
    run_id VARCHAR, check_id VARCHAR, table_name VARCHAR, severity VARCHAR, status VARCHAR,
    violated_count BIGINT, denominator BIGINT, percent DOUBLE, description VARCHAR, sample_keys VARCHAR,
    row_level BOOLEAN, rows_set_aside BIGINT)"""


# the tables whose patients make a diagnosis's patient known (diagnoses.patient_id.known_patient)
PATIENT_SOURCES = ("procedures", "imaging_orders", "patients")
# the procedures' column whose held values make the warehouse's birth dates (orders.ordered_at.after_birth)
BIRTH_COLUMN = "patient_birth_date"


def build_gate_db(
    prepared: dict,
    cfg: Config,
    scratch: Path,
    input_dir: Path | None,
    audits: list,
    held: Held | None = None,
) -> Path:
    """A DuckDB file with src_* views over the parsed Parquet and the reference tables. ``held``: what the run's
    warehouse holds (``quality.held.read``): its site code map, used when the input folder and config give none,
    and views of the rows of its loads the checks judge a monthly extract with (``_view_held``)."""
    path = scratch / "gate.duckdb"
    con = duckdb.connect(str(path))
    try:
        con.execute("SET TimeZone = 'UTC'")
        for name, prep in prepared.items():
            con.execute(f"CREATE OR REPLACE VIEW src_{name} AS {prep.good_rows_sql()}")
        if held is not None:
            _view_held(con, held, prepared)
            if held.site_map is not None:
                reference.keep_site_map(con, held.site_map)
        reference.load_reference(con, cfg, input_dir, audits)
        # the optional contract columns this delivery holds (the models' input_columns): an audit's
        # check of an optional column judges only a feed that has it (absent, the views read NULL)
        con.execute("CREATE OR REPLACE TABLE input_columns (table_name VARCHAR, column_name VARCHAR)")
        present = [(name, c) for name, prep in prepared.items() for c in prep.columns if c in CONTRACT_BY_NAME[name].columns]
        if present:
            con.executemany("INSERT INTO input_columns VALUES (?, ?)", present)
        # what the loader already set aside (duplicate ids among it), for the checks that report it
        parts = [
            f"SELECT '{name}' AS table_name, * FROM read_parquet({literal(prep.rejects_parquet)})"
            for name, prep in prepared.items()
        ]
        con.execute("CREATE OR REPLACE VIEW incoming_rejects AS " + " UNION ALL ".join(parts))
    finally:
        con.close()
    return path


def _pseudonymise_samples(results: list, cfg: Config) -> None:
    """Samples keyed by patient id are shown as the same keyed pseudonym the reports use (the engine's
    one pseudonym query, ``pipeline.models.generated.keys_sql``)."""
    from pipeline.models.generated import keys_sql

    keyed = [r for r in results if "patient_id" in (r.sample_key or "").split(":") and r.sample_keys]
    if not keyed:
        return
    key, _ = pseudonym_key(cfg)
    con = duckdb.connect()
    try:
        warehouse.set_pseudonym_key(con, key)
        for r in keyed:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE sample_patients AS SELECT unnest(?::VARCHAR[]) AS patient_id", [r.sample_keys]
            )
            keys = dict(con.execute(keys_sql("sample_patients")).fetchall())
            r.sample_keys = [keys[str(k)] for k in r.sample_keys]
    finally:
        con.close()


# the gate's copy of the (load_id, source_line) of the rows the warehouse set aside (``_view_held``)
HELD_EXCLUDED = "held_excluded"


def _view_held(con: duckdb.DuckDBPyConnection, held: Held, prepared: dict) -> None:
    """Views of what the warehouse will still hold of its loads once this delivery merges, over the store's Parquet
    files (read when a check asks, never copied; the run holds the warehouse's lock, so no file goes meanwhile):

    - ``HELD_PATIENTS_VIEW``, the patient ids of its procedures, orders and patients: a monthly extract's diagnosis
      of a patient whose orders came in an earlier month's is no mismatch of the feeds (judged on the extract alone,
      half a month's diagnoses were; docs/SCHEDULING.md's monthly job);
    - ``HELD_BIRTHS_VIEW``, the birth dates of its procedures: a monthly extract without procedures has its orders
      judged against the birth dates an earlier month's gave. Only the files that hold the optional column are read
      (their footers say: no row is read to decide); a file whose footer cannot be read is left out, not an error;
    - ``HELD_ORDERS_VIEW``, the ids and times of its orders: the volume check compares a monthly extract's month
      with the months the warehouse holds before it (on the extract alone, a month delivered with a third of its
      orders passed: nothing to compare it with).

    A row the warehouse set aside (``src_excluded``: replaced by a later file's row of the same id, rejected at load)
    stays in its file and is left out: a birth date July's file corrected (its PR1 replacing June's) had August's
    orders judged by June's typo. A held file this delivery replaces (a file of the table for the same months,
    ``ledger.merge_table``) is left out too; its orders' times are ``HELD_REPLACED_ORDERS_VIEW``, whose whole
    months the volume check judges (a file of two late orders of March replacing March's 1,835 left March two,
    and no month judged: the delivery covered none whole). Only the columns a view needs are read."""
    con.register("held_excluded_rows", held.excluded)
    try:
        con.execute(f"CREATE OR REPLACE TABLE {HELD_EXCLUDED} AS SELECT load_id, source_line FROM held_excluded_rows")
    finally:
        con.unregister("held_excluded_rows")
    patients = [f for table in PATIENT_SOURCES for f in held.files(table, prepared.get(table))]
    births = [f for f in held.files("procedures", prepared.get("procedures")) if _holds(con, f, BIRTH_COLUMN)]
    orders = held.files("imaging_orders", prepared.get("imaging_orders"))
    replaced = held.replaced("imaging_orders", prepared.get("imaging_orders"))
    for view, files, columns, where in (
        (HELD_PATIENTS_VIEW, patients, "patient_id", ""),
        (HELD_BIRTHS_VIEW, births, f"patient_id, {BIRTH_COLUMN}", f" WHERE {BIRTH_COLUMN} IS NOT NULL"),
        (HELD_ORDERS_VIEW, orders, "order_id, ordered_at", ""),
        (HELD_REPLACED_ORDERS_VIEW, replaced, "ordered_at", ""),
    ):
        if not files and view in (HELD_ORDERS_VIEW, HELD_REPLACED_ORDERS_VIEW) and (orders or replaced):
            # the volume check reads both once it has either: a second month's file replacing the first has no
            # other held orders, and its month is judged all the same
            con.execute(
                f"CREATE OR REPLACE VIEW {view} AS SELECT NULL::VARCHAR AS order_id, NULL::TIMESTAMPTZ AS ordered_at WHERE false"
            )
        if files:
            # each store file is <table>/<load_id>.parquet, the load_id its src_excluded rows name
            rows = " UNION ALL ".join(
                f"SELECT {literal(f.stem)} AS load_id, source_line, {columns} FROM read_parquet({literal(str(f))})" for f in files
            )
            con.execute(
                f"CREATE OR REPLACE VIEW {view} AS SELECT {columns} FROM ({rows}) AS h "
                f"ANTI JOIN {HELD_EXCLUDED} AS x USING (load_id, source_line){where}"
            )


def _holds(con: duckdb.DuckDBPyConnection, path: Path, column: str) -> bool:
    """Whether a Parquet file's schema has the column (its footer read, no row)."""
    try:
        return bool(con.execute("SELECT count(*) FROM parquet_schema(?) WHERE name = ?", [str(path), column]).fetchone()[0])
    except duckdb.Error:
        return False


def input_suites(tables, audits: list) -> list:
    """The generic suite of each table present, then every suite of each audit about a table present (a table of the
    contract this delivery lacks leaves its suite out). Each is read, and so checked (``validate.load_suite``: one
    line naming its file), before any data is: the caller asks first thing."""
    from pipeline.audits import suite_files
    from pipeline.quality import validate

    known = validate.input_tables()
    suites: list = [INPUT_SUITES[t] for t in tables if t in INPUT_SUITES]
    for name in suites:
        validate.load_suite(name, known_tables=known)
    for audit in audits:
        for path in suite_files(audit):
            if all(t["table"].removeprefix("src_") in tables for t in validate.load_suite(path, known_tables=known)["tables"]):
                suites.append(str(path))
    return suites


def check_inputs(
    prepared: dict,
    cfg: Config,
    scratch: Path,
    now: dt.datetime,
    input_dir: Path | None,
    gx=None,
    audits: list | None = None,
    spark=None,
    held: Held | None = None,
):
    """Run the input suites; returns (results, rows to set aside per table). ``gx``: a
    ``workers.GxWorker`` to validate in (a run starts one first thing), else this process;
    ``spark``: the run's ``SparkModels``, whose session then runs the GX checks; ``held``: see
    ``build_gate_db``."""
    from pipeline.quality import validate

    if gx is None or spark is not None:
        validate.start_gx_import()  # seconds of pure Python, overlapping the DuckDB work from here on
    audits = audits or []
    suites = input_suites(list(prepared), audits)  # read and checked before the gate's database is built
    db = build_gate_db(prepared, cfg, scratch, input_dir, audits, held)
    params = {
        "now": now,
        "site_timezone": cfg.site_timezone,
        "data_since": declared_start(prepared, cfg),
        "data_through": declared_reach(prepared, cfg),
        # the tables read from a FHIR export (its reader's segments): <table>.rows.readable judges the share of the
        # table's own resources rejected (rejected, judged), not its rejects over its rows
        "export_tables": sorted(name for name, prep in prepared.items() if prep.segments),
        "export_rejected": {name: prep.export_rejected for name, prep in prepared.items() if prep.export_rejected},
    }
    if spark is not None:
        results = _on_spark(spark, db, suites, params, ship=True, what="input checks")
    else:
        results = _run_suites(gx, db, suites, params)
    raise_if_stopped()  # a stop GX took for a failed query: results it could not compute are no results
    set_aside: dict[str, Path] = {}
    # GX has closed the file. The rows to set aside collect in a TEMP table (memory) and leave as
    # Parquet: nothing is written to the file, so no write-ahead log and no checkpoint on close.
    con = duckdb.connect(str(db), read_only=True)
    try:
        con.execute(
            "CREATE TEMP TABLE gate_rejects (table_name VARCHAR, source_line BIGINT, column_name VARCHAR, "
            "value VARCHAR, reason VARCHAR)"
        )
        # the delivery's patient ids, every table's: a value set aside that is one of them is not shown (a shifted row, or
        # status and patient_id swapped in the header, its ids no id of its own table)
        src_tables = con.execute("SELECT DISTINCT table_name FROM duckdb_columns() WHERE column_name = 'patient_id'").fetchall()
        with_ids = [t for (t,) in src_tables if t.startswith("src_")]
        patient_ids = " UNION ALL ".join(f"SELECT trim(patient_id) FROM {t} WHERE patient_id IS NOT NULL" for t in with_ids)
        for r in results:
            if r.set_aside_by_loader and "incoming_rejects" in (r.violations_sql or ""):
                r.rows_set_aside = r.violated_count or 0
                continue
            # a failed blocking row-level check sets its rows aside; a warning only reports them
            if not (r.row_level and r.severity == "blocking" and r.status == "failed" and r.violations_sql):
                continue
            table = r.table.removeprefix("src_")
            # the column a check is about: a column-map's kwarg, or meta.column of an unexpected_rows query
            column = (r.expectation or {}).get("column") or (r.expectation or {}).get("kwargs", {}).get("column")
            cols = {row[0] for row in con.execute(f"DESCRIBE {r.table}").fetchall()}
            value = f'CAST("{column}" AS VARCHAR)' if column in cols and column != "patient_id" else "NULL"
            reason = f"data-quality check {r.check_id}: {r.description}"
            if r.expectation and r.expectation.get("type") in validate.COLUMN_MAP_TYPES:
                # a column-map check's query is SELECT * FROM the table WHERE <violated>: its rows
                # are the table's rows, one per line, so they are set aside in one pass
                rows = f"SELECT * FROM ({r.violations_sql}) AS v"
            else:
                rows = f"SELECT * FROM {r.table} WHERE source_line IN ({_violating_lines_sql(con, r)})"
            r.rows_set_aside = con.execute(
                f"INSERT INTO gate_rejects SELECT ?, source_line, ?, {value}, ? FROM ({rows})", [table, column, reason]
            ).fetchall()[0][0]
        if patient_ids:
            # rejects.csv is published: a value that shows a patient id is not shown, as the loader's rejects hide
            # theirs (load._hide_patient_ids); asked once of all the values set aside
            shown = values_showing_a_patient_id("SELECT value FROM gate_rejects", patient_ids)
            con.execute(f"UPDATE gate_rejects SET value = NULL WHERE value IN ({shown})")
        for (table,) in con.execute("SELECT DISTINCT table_name FROM gate_rejects").fetchall():
            path = scratch / f"{table}.gate_rejects.parquet"
            con.execute(
                f"COPY (SELECT source_line, column_name, value, reason FROM gate_rejects WHERE table_name = ? "
                f"ORDER BY source_line) TO {literal(path)} (FORMAT parquet)",
                [table],
            )
            set_aside[table] = path
    finally:
        con.close()
    _pseudonymise_samples(results, cfg)
    for r in results:
        # too many broken rows is a broken extract, not a few bad rows
        # a blocking check that could not run (status error) blocks: nothing was set aside for it
        r.blocks = r.blocking_failure and (
            not r.row_level
            or r.status == "error"
            or not getattr(r, "rows_set_aside", 0)
            or (r.percent or 0) > 100 * MAX_REJECTED_SHARE
        )
    return results, set_aside


def declared_reach(prepared: dict, cfg: Config | None = None) -> dt.datetime | None:
    """The instant the extract says its data reaches: the site's ``[extract] data_through`` in the config, else a FHIR
    export's manifest ``transactionTime`` (the server exported every resource as of then). None when nothing declares
    it or the time is no instant with a zone: the volume check then goes by the orders' own dates."""
    declared = cfg.extract.declared("data_through", cfg.site_timezone) if cfg is not None else None
    return declared or _declared(prepared, "transaction_time")


def declared_start(prepared: dict, cfg: Config | None = None) -> dt.datetime | None:
    """The instant the extract says its data starts: the config's ``[extract] data_since``, else the ``_since`` of a
    FHIR export's request (the server exported what changed after it). None as ``declared_reach``: the volume check
    then goes by the first order's date."""
    declared = cfg.extract.declared("data_since", cfg.site_timezone) if cfg is not None else None
    return declared or _declared(prepared, "since")


def _declared(prepared: dict, fact: str) -> dt.datetime | None:
    for prep in prepared.values():
        text = (prep.export_manifest or {}).get(fact)
        if not text:
            continue
        try:
            when = dt.datetime.fromisoformat(text)
        except ValueError:
            return None
        return when if when.tzinfo is not None else None
    return None


def _violating_lines_sql(con: duckdb.DuckDBPyConnection, r) -> str:
    """source_line of every row a check's violations query lists (it may list only the key)."""
    cols = [row[0] for row in con.execute(f"DESCRIBE {r.violations_sql}").fetchall()]
    if "source_line" in cols:
        return f"SELECT DISTINCT source_line FROM ({r.violations_sql}) AS v"
    key = ", ".join(f'"{c}"' for c in cols)
    return f"SELECT source_line FROM {r.table} WHERE ({key}) IN (SELECT {key} FROM ({r.violations_sql}) AS v)"


def _run_suites(gx, path: Path, suites, params: dict) -> list:
    from pipeline.quality import validate

    return validate.run_suites(path, suites=suites, params=params) if gx is None else gx.run_suites(path, suites, params)


def _on_spark(spark, path: Path, suites, params: dict, ship: bool, what: str) -> list:
    """The suites with their GX checks on Spark. ``ship``: every table of the DuckDB file they read goes
    to the session first as a temp view of its name (dropped after); else the session holds them (the
    marts the run built there). The log says which checks ran where."""
    from pipeline.quality import validate

    shipped: list[str] = []
    if ship:
        con = duckdb.connect(str(path), read_only=True)
        try:
            shipped = sorted(validate.tables_read(suites, params.get("table_prefix", "")) & relations(con))
            for name in shipped:
                spark.ship(con, name)
        finally:
            con.close()
    try:
        results = validate.run_suites(path, suites=suites, params=params, spark=spark.session)
    finally:
        for name in shipped:
            spark.session.catalog.dropTempView(name)
    on_driver = [r.check_id for r in results if r.engine == "sql"]
    event(
        f"{what} on Spark: {sum(r.engine == 'gx' for r in results)} Great Expectations checks; "
        f"on the driver's DuckDB (SQL checks, not Great Expectations): {', '.join(on_driver) or 'none'}",
        event="dq_engine",
        engine="spark",
        sql_checks=on_driver,
    )
    return results


def check_outputs(warehouse_path: Path, now: dt.datetime, gx=None, audits: list | None = None, spark=None) -> list:
    """The output suite on each audit's marts (its tables are ``<id>__mart_*``; on Spark, the session's
    views of the marts the run built there)."""
    from pipeline.quality import validate

    results = []
    for audit in audits or []:
        params = {"now": now, "table_prefix": f"{audit.id}__"}
        if spark is not None:
            checked = _on_spark(
                spark, warehouse_path, validate.OUTPUT_SUITES, params, ship=False, what=f"{audit.id} output checks"
            )
        else:
            checked = _run_suites(gx, warehouse_path, validate.OUTPUT_SUITES, params)
        for r in checked:
            r.blocks = r.blocking_failure
            results.append(r)
    raise_if_stopped()  # as in check_inputs
    return results


def blocking(results: list) -> list:
    return [r for r in results if getattr(r, "blocks", False)]


def log_warnings(results: list, reported: dict[str, str] | None = None) -> None:
    """One log line per warning check that failed or could not run (the report lists them too), and one info
    line per check that left something out (its note). ``reported``: check id -> the run that first reported
    the same finding on the same files (``earlier_reports``); such a line is logged at info, not as a warning,
    so a rerun that loads nothing new does not raise the same alarm again."""
    for r in results:
        if r.note:
            level = logging.WARNING if getattr(r, "note_warns", False) else logging.INFO
            event(f"data-quality note {r.check_id} [{r.table}]: {r.note}", level=level, event="dq_note", check_id=r.check_id)
        if r.severity != "warning" or r.status == "passed":
            continue
        if r.status == "error":
            text = could_not_run(r)
        else:
            # the description says what should hold: the count says how many do not, in the report's figures
            counts = "" if r.violated_count is None else f"{r.violated_count:,} of {r.denominator:,} fail it"
            text = f"{counts}{_sample_text(r)}. The check: {r.description}"
        first = (reported or {}).get(r.check_id)
        event(
            f"data-quality warning {r.check_id} [{r.table}] {text}"
            + (f" (first reported by run {first}; no new file since)" if first else ""),
            level=logging.INFO if first else logging.WARNING,
            event="dq_warning",
            check_id=r.check_id,
            violated_count=r.violated_count,
            sample=[str(k) for k in list(r.sample_keys)[:SAMPLE_LOGGED]],
            **({"first_reported_by": first} if first else {}),
        )


def earlier_reports(con: duckdb.DuckDBPyConnection, results: list) -> dict[str, str]:
    """For each warning that failed or could not run: the earliest run that recorded the same finding (check,
    status, count and sample keys) in ``dq_results``. Asked only when every input file of the run was already
    loaded: the gate then judged the very files an earlier run judged, and found what it found."""
    con.execute(DQ_DDL)
    asked = [as_dict(r) for r in results if r.severity == "warning" and r.status != "passed"]
    if not asked:
        return {}
    # one query for every finding: the lists unnest side by side, one row per finding
    rows = con.execute(
        """SELECT f.check_id, min(d.run_id)
           FROM (SELECT unnest(?::VARCHAR[]) AS check_id, unnest(?::VARCHAR[]) AS status,
                        unnest(?::BIGINT[]) AS violated_count, unnest(?::VARCHAR[]) AS sample_keys) AS f
           JOIN dq_results AS d ON d.check_id = f.check_id AND d.status = f.status
            AND d.violated_count IS NOT DISTINCT FROM f.violated_count AND d.sample_keys = f.sample_keys
           GROUP BY f.check_id""",
        [
            [d["check_id"] for d in asked],
            [d["status"] for d in asked],
            [d["violated_count"] for d in asked],
            [json.dumps(d["sample_keys"]) for d in asked],
        ],
    ).fetchall()
    return dict(rows)


def _sample_text(r, named: bool = False) -> str:
    """' (e.g. O2, O7)': the first violating rows' keys (pseudonyms for patients), so a row can be found;
    named: with what the keys are (' (e.g. order_id O2, O7)')."""
    if not r.sample_keys:
        return ""
    # a line's example says so itself ('line 12', sql_checks): 'source_line line 12' named it twice
    what = f"{r.sample_key} " if named and r.sample_key and r.sample_key != "source_line" else ""
    # escaped (errors.printable): an id holding a line break or a bidi override keeps the line one line, as read
    return f" (e.g. {what}{', '.join(printable(str(k)) for k in list(r.sample_keys)[:SAMPLE_LOGGED])})"


def failure_message(failed: list) -> str:
    lines = [
        f"data-quality gate failed ({len(failed)} blocking check{'s' if len(failed) != 1 else ''}); "
        "fix the extract and run again:"
    ]
    for r in failed:
        counts = "" if r.violated_count is None else f" {r.violated_count} of {r.denominator} ({r.percent}%)"
        # the rows are named: with only a count, a user of a 10M-row extract could not find them
        lines.append(f"  {r.check_id} [{r.table}]{counts}{_sample_text(r, named=True)}: {r.error or r.description}")
    return "\n".join(lines)


def could_not_run(r) -> str:
    """Why a check could not run, in one line: the database's first line (``check_error``) or the first line of the
    error, and the suite file the check is in. A warning's line held Great Expectations' whole error (SQLAlchemy's
    wrapped query, twice), a dozen lines in a log that reads a line an event."""
    why = getattr(r, "check_error", None) or (first_line(r.error) if r.error else "no reason given")
    suite = getattr(r, "suite", None)
    where = f" ({suite}" + ("; the check is wrong, not the extract: fix the check)" if _authors_mistake(r) else ")")
    return f"could not run ({printable(why)})" + (where if suite else "")


def stop_error(failed: list, note: str = "") -> AuditError:
    """What stops the run when blocking checks fail (``failed``; ``note``: what follows the gate's message): the gate's
    failure, exit 3, the extract's to fix; but when a check of an audit's own suite could not run because of its own
    query or column (``CheckResult.check_error``), one line naming its suite file and the database's first line, exit 1:
    the audit author's to fix (it read "fix the extract and run again", a GX traceback after it, blaming the site)."""
    broken = [r for r in failed if _authors_mistake(r)]
    if not broken:
        return QualityGateError(failure_message(failed) + note)
    r = broken[0]
    others = [x.check_id for x in failed if x is not r]
    return ConfigError(
        f"{r.suite}: check {r.check_id} [{r.table}] could not run ({r.check_error}): the check is wrong, not the extract; "
        "fix the check" + (f" (blocking too: {', '.join(others)})" if others else "")
    )


def _authors_mistake(r) -> bool:
    """A check of an audit's suite (not the engine's expectations/) that could not run because of its own query."""
    from pipeline.quality import validate

    suite = getattr(r, "suite", None)
    return bool(getattr(r, "check_error", None) and suite and Path(suite).resolve().parent != validate.SUITES_DIR.resolve())


def as_dict(r) -> dict:
    return {
        "check_id": r.check_id,
        "table": r.table,
        "severity": r.severity,
        "status": r.status,
        "violated_count": r.violated_count,
        "denominator": r.denominator,
        "percent": r.percent,
        "description": r.description,
        "sample_keys": list(r.sample_keys),
        "row_level": r.row_level,
        "rows_set_aside": getattr(r, "rows_set_aside", 0),
        "error": r.error,
        "note": getattr(r, "note", None),  # what a passing check counted (the log's dq_note)
        "sample_key": getattr(r, "sample_key", None),
        "blocks": bool(getattr(r, "blocks", False)),
    }


def dq_row(d: dict) -> list:
    """One check as run.json holds it (``as_dict``) as its dq_results row after the run_id (DQ_DDL's columns)."""
    return [
        d["check_id"],
        d["table"],
        d["severity"],
        d["status"],
        d["violated_count"],
        d["denominator"],
        d["percent"],
        d["description"],
        json.dumps(d["sample_keys"]),
        d["row_level"],
        d["rows_set_aside"],
    ]


def record_results(con: duckdb.DuckDBPyConnection, run_id: str, results: list) -> None:
    con.execute(DQ_DDL)
    for r in results:
        con.execute("INSERT INTO dq_results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [run_id, *dq_row(as_dict(r))])


def write_data_docs(results: list, out_dir: Path) -> Path:
    from pipeline.quality import data_docs

    return data_docs.write_data_docs(results, out_dir)
