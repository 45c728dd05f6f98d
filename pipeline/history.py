"""Run history in the warehouse: runs, per-period results, and each run's verdicts (for diff)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json

import duckdb

from pipeline import db
from pipeline.ingest.source_store import LIVE_LOAD

DDL = (
    """CREATE TABLE IF NOT EXISTS audit_runs (
        run_id VARCHAR PRIMARY KEY, command VARCHAR, status VARCHAR, periods VARCHAR, input_dir VARCHAR,
        started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ, duration_seconds DOUBLE, pid BIGINT,
        counts VARCHAR, timings VARCHAR, error VARCHAR, audits VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS audit_results (
        period VARCHAR, run_id VARCHAR, order_id VARCHAR, case_id VARCHAR, verdict VARCHAR, reasons VARCHAR,
        secondary_reasons VARCHAR, audit_id VARCHAR, case_ref VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS run_verdicts (
        run_id VARCHAR, period VARCHAR, order_id VARCHAR, case_id VARCHAR, verdict VARCHAR, reasons VARCHAR,
        audit_id VARCHAR, case_ref VARCHAR)""",
)
# a warehouse written before audits were folders: the column comes in empty (its rows predate the audit ids);
# one written before case_ref: its rows are compared on case_id (_same_case)
ADDED_COLUMNS = (
    ("audit_runs", "audits"),
    ("audit_results", "audit_id"),
    ("run_verdicts", "audit_id"),
    ("audit_results", "case_ref"),
    ("run_verdicts", "case_ref"),
    ("audit_runs", "key_fingerprint"),
)  # VARCHAR each
MIGRATIONS = tuple(f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {c} VARCHAR" for t, c in ADDED_COLUMNS)


KILLED_BEFORE_COMMIT = "stopped before its warehouse commit: nothing of it was kept"
KILLED_AFTER_COMMIT = (
    "stopped after its warehouse commit: its loads and results are in the warehouse, "
    "its outputs were not (all) published; run again to publish them"
)


def ensure(con: duckdb.DuckDBPyConnection) -> None:
    for ddl in (*DDL, *MIGRATIONS):
        con.execute(ddl)


def _input_named(opts) -> str | None:
    """The input folder as the user gave it (a URI of another file system, not the run's copy of it)."""
    return opts.input_uri or (str(opts.input_dir) if opts.input_dir else None)


def start(con: duckdb.DuckDBPyConnection, run_id: str, opts, started: dt.datetime, audits: str = "") -> None:
    """Record the run as running. We hold the writer lock, so any other 'running' row is a dead run."""
    import os

    con.execute(f"""UPDATE audit_runs SET status = 'interrupted', error = CASE status
                       WHEN 'running' THEN '{KILLED_BEFORE_COMMIT}' ELSE '{KILLED_AFTER_COMMIT}' END
                   WHERE status IN ('running', 'publishing')""")
    periods = ",".join(m or "all" for m in opts.months)
    con.execute(
        "INSERT INTO audit_runs (run_id, command, status, periods, input_dir, started_at, pid, audits) "
        "VALUES (?, ?, 'running', ?, ?, ?, ?, ?)",
        [run_id, opts.command, periods, _input_named(opts), started, os.getpid(), audits],
    )


def key_fingerprint(key: bytes) -> str:
    """Which pseudonym key a run used, without the key: HMAC-SHA256(key, a fixed text), 16 hex digits."""
    return hmac.new(key, b"order-audit pseudonym key fingerprint", hashlib.sha256).hexdigest()[:16]


def key_changed(con: duckdb.DuckDBPyConnection, run_id: str, key: bytes) -> str | None:
    """Record the run's key fingerprint; return the last succeeded run when it used another key (its outputs
    show other pseudonyms and episode ids), else None (the same key, or no run recorded one)."""
    fingerprint = key_fingerprint(key)
    con.execute("UPDATE audit_runs SET key_fingerprint = ? WHERE run_id = ?", [fingerprint, run_id])
    last = con.execute(
        """SELECT run_id, key_fingerprint FROM audit_runs WHERE status = 'succeeded' AND run_id <> ?
           AND key_fingerprint IS NOT NULL ORDER BY started_at DESC LIMIT 1""",
        [run_id],
    ).fetchall()
    return last[0][0] if last and last[0][1] != fingerprint else None


def set_audits(con: duckdb.DuckDBPyConnection, run_id: str, audits: str) -> None:
    """The audits of a run recorded before its inputs were known (a folder copied from another file system)."""
    con.execute("UPDATE audit_runs SET audits = ? WHERE run_id = ?", [audits, run_id])


def committing(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """Inside the warehouse transaction: once it commits, the run's data is in the warehouse and only
    the outputs remain to be published (a kill from here on is 'interrupted after commit')."""
    con.execute("UPDATE audit_runs SET status = 'publishing' WHERE run_id = ?", [run_id])


def _case_refs(audit_id: str) -> str:
    """The audit's period mart with ``case_ref``: its case id without the pseudonym it may hold (low back pain:
    pseudonym and index date, ``P…-2025-03-04`` -> ``-2025-03-04``), so a new pseudonym key revises nothing. Runs
    are compared order by order (``order_id``), and an order names its patient, so what is left tells a case from
    another of the order's patient. No hash of the patient id: the history leaves the warehouse (``--spark-state``
    writes it as Parquet to a shared store), and an unkeyed hash of a medical record number is undone by trying
    every number. (An order moved to another patient with the same index date is not seen as changed.)"""
    mart = f"{audit_id}__mart_audited_orders"
    return f"""(SELECT m.*, CASE WHEN m.patient_key IS NULL THEN m.case_id ELSE replace(m.case_id, m.patient_key, '') END
                       AS case_ref
                FROM {mart} AS m)"""


def _same_case(a: str, b: str) -> str:
    """Whether rows a and b name the same case: by case_ref, or by case_id for a row recorded before it."""
    return (
        f"CASE WHEN {a}.case_ref IS NULL OR {b}.case_ref IS NULL THEN {a}.case_id = {b}.case_id "
        f"ELSE {a}.case_ref = {b}.case_ref END"
    )


def record_period(con: duckdb.DuckDBPyConnection, run_id: str, period: str, audit_id: str) -> dict | None:
    """Replace the audit's results of the period with this run's (inside the caller's transaction); return
    how this run revises the results the previous run recorded for them (None: the period is new)."""
    # made once, read three times below (the mart is a view over every audited order of the period)
    con.execute(f"CREATE OR REPLACE TEMP TABLE period_results AS SELECT * FROM {_case_refs(audit_id)}")
    mart = "period_results"
    revision = con.execute(
        f"""WITH prev AS (SELECT * FROM audit_results WHERE period = ? AND audit_id = ?),
                cur AS (SELECT order_id, case_id, case_ref, verdict, reasons FROM {mart})
           SELECT coalesce((SELECT max(run_id) FROM prev), (
                      -- a period audited before without a single order (an empty month) has no results
                      SELECT run_id FROM audit_runs WHERE status = 'succeeded' AND run_id <> ?
                         AND list_contains(string_split(periods, ','), ?)
                         AND list_contains(string_split(coalesce(audits, ''), ','), ?) ORDER BY started_at DESC LIMIT 1)),
                  count(*) FILTER (WHERE prev.order_id IS NULL),
                  count(*) FILTER (WHERE cur.order_id IS NULL),
                  count(*) FILTER (WHERE prev.order_id IS NOT NULL AND cur.order_id IS NOT NULL
                                   AND (({_same_case("prev", "cur")}) IS NOT TRUE OR prev.verdict IS DISTINCT FROM cur.verdict
                                        OR prev.reasons IS DISTINCT FROM cur.reasons))
           FROM prev FULL JOIN cur ON prev.order_id = cur.order_id""",
        [period, audit_id, run_id, period, audit_id],
    ).fetchall()[0]
    since, added, removed, changed = revision
    con.execute("DELETE FROM audit_results WHERE period = ? AND audit_id = ?", [period, audit_id])
    con.execute(
        f"""INSERT INTO audit_results BY NAME SELECT ? AS period, ? AS run_id, order_id, case_id, verdict, reasons,
                   secondary_reasons, ? AS audit_id, case_ref FROM {mart}""",
        [period, run_id, audit_id],
    )
    con.execute(
        f"""INSERT INTO run_verdicts BY NAME SELECT ? AS run_id, ? AS period, order_id, case_id, verdict, reasons,
                   ? AS audit_id, case_ref FROM {mart}""",
        [run_id, period, audit_id],
    )
    con.execute("DROP TABLE period_results")
    if since is None:
        return None
    return {"since_run": since, "added": added, "removed": removed, "changed": changed, "orders": added + removed + changed}


def published(con: duckdb.DuckDBPyConnection, run_id: str, counts: dict, periods) -> None:
    """Mark the (audit id, period) pairs of ``counts`` (the run's per-audit, per-period counts) as published and
    record the counts so far: a run stopped later (failed, or killed before ``finish``) still tells the next run
    which periods it put out, and as what (``period_statuses``: a final mark the committee has seen stays)."""
    for audit_id, period in periods:
        counts[audit_id][period]["published"] = True
    con.execute("UPDATE audit_runs SET counts = ? WHERE run_id = ?", [json.dumps(counts, sort_keys=True), run_id])


def found_published(con: duckdb.DuckDBPyConnection, run_id: str, audit_id: str, period: str, entry: dict) -> bool:
    """A folder of the audit's period that run ``run_id`` published (its run.json says so, ``entry`` being that file's
    counts) but never recorded: killed between the folder's switch and ``published``. Recorded now, as ``published``
    would have, so that ``period_statuses`` names the run; False when the record already says so (a succeeded run
    recorded every period it published), or names no such run."""
    rows = con.execute("SELECT status, counts FROM audit_runs WHERE run_id = ?", [run_id]).fetchall()
    if not rows or rows[0][0] == "succeeded":
        return False
    counts = json.loads(rows[0][1] or "{}")
    if counts.get(audit_id, {}).get(period, {}).get("published"):
        return False
    kept = {k: v for k, v in entry.items() if k not in ("rejected_rows", "nulled_values")}  # run.json's, not the period's
    counts.setdefault(audit_id, {})[period] = {**kept, "published": True}
    con.execute("UPDATE audit_runs SET counts = ? WHERE run_id = ?", [json.dumps(counts, sort_keys=True), run_id])
    return True


def period_statuses(con: duckdb.DuckDBPyConnection, run_id: str, period: str, audit_id: str) -> list[dict]:
    """What the runs before ``run_id`` that published the audit's period recorded of it (their ``counts``), oldest
    first: the run, the UTC day it started (run.json's ``started_at`` names the same day), its maturity status
    (provisional, final; None where the run recorded none) and the orders it revised since which run (0 and None:
    none). A run that succeeded published every period it records; one that failed or was stopped after publishing
    some (``published``) counts for those: its folder said "final" to whoever read it before the next run."""
    # the period's entry picked out in SQL (a bound JSON path): a backfill asks once per month and audit, and
    # parsing every run's counts in Python each time cost ~2 CPU-s over 1,000 runs of 24 months
    rows = con.execute(
        """SELECT run_id, day, entry->>'status', coalesce(CAST(entry->>'revised_orders' AS BIGINT), 0), entry->>'revised_since'
           FROM (SELECT run_id, status, started_at, strftime(timezone('UTC', started_at), '%Y-%m-%d') AS day,
                        json_extract(counts, ?) AS entry
                 FROM audit_runs WHERE run_id <> ? AND counts IS NOT NULL)
           WHERE entry IS NOT NULL AND (status = 'succeeded' OR CAST(entry->>'published' AS BOOLEAN) IS TRUE)
           ORDER BY started_at, run_id""",
        [f"$.{json.dumps(audit_id)}.{json.dumps(period)}", run_id],
    ).fetchall()
    keys = ("run_id", "on", "status", "revised_orders", "revised_since")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def finish(
    con: duckdb.DuckDBPyConnection, run_id: str, status: str, counts: dict, timings: dict, error: str | None = None
) -> None:
    con.execute(
        """UPDATE audit_runs SET status = ?, finished_at = now(),
                   duration_seconds = epoch(now()) - epoch(started_at), counts = ?, timings = ?, error = ?
                   WHERE run_id = ?""",
        [status, json.dumps(counts, sort_keys=True), json.dumps({k: round(v, 3) for k, v in timings.items()}), error, run_id],
    )


def active_loads(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """The files whose rows the warehouse holds now (for run.json provenance)."""
    rows = con.execute(f"""SELECT table_name, path, sha256, first_month, last_month, rows_loaded, run_id
                          FROM load_ledger WHERE {LIVE_LOAD}
                          ORDER BY table_name, first_month, path""").fetchall()
    keys = ("table", "path", "sha256", "first_month", "last_month", "rows_loaded", "loaded_by_run")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def list_runs(con: duckdb.DuckDBPyConnection, limit: int = 50) -> list[dict]:
    rows = con.execute(
        """SELECT run_id, command, status, periods, strftime(started_at, '%Y-%m-%d %H:%M:%S'),
                                 round(duration_seconds, 1), counts, error
                          FROM audit_runs ORDER BY started_at DESC, run_id DESC LIMIT ?""",
        [limit],
    ).fetchall()
    keys = ("run_id", "command", "status", "periods", "started_at", "duration_seconds", "counts", "error")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def _as_migrated(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """The history table as the migrations leave it: `runs` and `diff` open the warehouse read-only, so a warehouse
    an older version wrote (no audit_id yet) is read with NULL in the columns added since (else a traceback)."""
    have = db.columns(con, table)
    missing = [c for t, c in ADDED_COLUMNS if t == table and c not in have]
    return f"(SELECT *, {', '.join(f'NULL::VARCHAR AS {c}' for c in missing)} FROM {table})" if missing else table


def diff_runs(con: duckdb.DuckDBPyConnection, run_a: str, run_b: str) -> tuple[list[str], list[tuple] | None]:
    """Orders whose verdict or reasons differ between two runs, over the periods both audited: (the ids no run
    has, the rows; None when the two runs audited no period in common, so that nothing was compared)."""
    # a run is known by its record, and it audited each period (and audit) it lists once it succeeded: a month
    # without a single order (record_period: an empty month) has no verdict rows, and was taken for "no run"
    # and left out of the comparison, so that orders the other run added there were never listed
    verdicts, runs = _as_migrated(con, "run_verdicts"), _as_migrated(con, "audit_runs")
    audited = f"""SELECT DISTINCT run_id, period, audit_id FROM {verdicts} WHERE run_id IN ($a, $b)
        UNION SELECT r.run_id, p.period, au.audit_id FROM {runs} AS r,
                     unnest(string_split(r.periods, ',')) AS p(period), unnest(string_split(r.audits, ',')) AS au(audit_id)
              WHERE r.run_id IN ($a, $b) AND r.status = 'succeeded' AND coalesce(r.audits, '') <> ''"""
    known = {
        r[0]
        for r in con.execute(
            f"SELECT run_id FROM audit_runs WHERE run_id IN ($a, $b) UNION SELECT run_id FROM ({audited})",
            {"a": run_a, "b": run_b},
        ).fetchall()
    }
    missing = [r for r in (run_a, run_b) if r not in known]
    if missing:
        return missing, []
    shared = (
        f"SELECT period, audit_id FROM ({audited}) WHERE run_id = $a "
        f"INTERSECT SELECT period, audit_id FROM ({audited}) WHERE run_id = $b"
    )
    if not con.execute(f"SELECT count(*) FROM ({shared})", {"a": run_a, "b": run_b}).fetchall()[0][0]:
        return [], None
    rows = con.execute(
        f"""
        WITH a AS (SELECT * FROM {verdicts} WHERE run_id = $a), b AS (SELECT * FROM {verdicts} WHERE run_id = $b),
        shared AS ({shared})
        SELECT coalesce(a.period, b.period) AS period, coalesce(a.audit_id, b.audit_id) AS audit_id,
               coalesce(a.order_id, b.order_id) AS order_id,
               coalesce(a.case_id, b.case_id) AS case_id,
               a.verdict, a.reasons, b.verdict, b.reasons,
               CASE WHEN a.order_id IS NULL THEN 'added' WHEN b.order_id IS NULL THEN 'removed' ELSE 'changed' END
        FROM a FULL JOIN b ON a.period = b.period AND a.audit_id IS NOT DISTINCT FROM b.audit_id
                           AND a.order_id = b.order_id AND {_same_case("a", "b")}
        WHERE EXISTS (SELECT 1 FROM shared AS s WHERE s.period = coalesce(a.period, b.period)
                      AND s.audit_id IS NOT DISTINCT FROM coalesce(a.audit_id, b.audit_id))
          AND (a.order_id IS NULL OR b.order_id IS NULL OR a.verdict <> b.verdict OR a.reasons <> b.reasons)
        ORDER BY 1, 2, 3""",
        {"a": run_a, "b": run_b},
    ).fetchall()
    return [], rows
