"""The warehouse side of a load: the ledger of input files, the rejects, and the merge.

A prepared file (typed Parquet in the scratch folder) comes into the warehouse in the
caller's transaction: the same file again adds nothing, a corrected file for the same
months replaces the earlier one, rows with an id already present are replaced (newest
wins), and the typed file itself moves into the source store (no second copy of rows).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from pipeline.ingest import reject_listing, segments, source_store
from pipeline.ingest.contract import CONTRACTS
from pipeline.logs import event
from pipeline.sqltext import ident, literal
from pipeline.wording import counted

if TYPE_CHECKING:
    from pipeline.ingest.load import PreparedTable

log = logging.getLogger(__name__)


@dataclass
class TableLoad:
    table: str
    path: str
    rows_read: int
    rows_loaded: int
    rows_rejected: int
    values_nulled: int
    ambiguous_local_times: int
    action: str = "loaded"  # loaded | replaced | skipped_already_loaded
    rows_updated: int = 0  # rows of other files replaced by id
    rows_removed: int = 0  # rows of an earlier version of this file removed


LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS load_ledger (
    load_id VARCHAR, run_id VARCHAR, table_name VARCHAR, path VARCHAR, sha256 VARCHAR,
    first_month VARCHAR, last_month VARCHAR, rows_read BIGINT, rows_loaded BIGINT, rows_rejected BIGINT,
    rows_updated BIGINT, rows_removed BIGINT, action VARCHAR, replaces VARCHAR, superseded_by VARCHAR,
    loaded_at TIMESTAMPTZ
)"""
REJECTS_DDL = """
CREATE TABLE IF NOT EXISTS load_rejects (
    table_name VARCHAR, source_file VARCHAR, source_line BIGINT, column_name VARCHAR,
    value VARCHAR, reason VARCHAR, action VARCHAR, load_id VARCHAR
)"""


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(LEDGER_DDL)
    con.execute(REJECTS_DDL)
    reject_listing.ensure(con)
    source_store.ensure(con)


def _say_overlaps(con: duckdb.DuckDBPyConnection, prep: PreparedTable, file_name: str) -> None:
    """Held files of the table whose months hold this file's without being the same: it is merged into them by id,
    not a correction of them (``merge_table``), and the log says so. A month re-delivered with its first order (one
    of the month before, in the site's time) gone covered one month where the held file covered two: its 858 orders
    were 'loaded', and the 5 it no longer had stayed, with no word (a data engineer's review). At info level: a file
    of late orders falls within a held file's months as a matter of course. A monthly extract whose first rows fall
    in the month before overlaps that month's file without falling within it: no line."""
    overlapping = con.execute(
        f"""SELECT path, first_month, last_month, run_id FROM load_ledger WHERE table_name = ? AND first_month <= ?
            AND last_month >= ? AND {source_store.LIVE_LOAD} ORDER BY first_month, path""",
        [prep.table, prep.first_month, prep.last_month],
    ).fetchall()
    span = lambda first, last: first if first == last else f"{first} to {last}"  # noqa: E731
    for held, first, last, run in overlapping:
        event(
            f"{prep.table}: {file_name} ({span(prep.first_month, prep.last_month)}) falls within the months of the held "
            f"{held} ({span(first, last)}, loaded by run {run}) without covering them all: merged into it by id, not "
            "a correction of it (the held file's rows this one lacks stay; a correction covers the held file's months)",
            event="load_overlaps",
            table=prep.table,
            file=file_name,
            held_file=held,
            held_run=run,
            months=[prep.first_month, prep.last_month],
            held_months=[first, last],
        )


KEPT_BY_A_CORRECTION = 0.5  # a correction of a held file keeps most of its ids; a part of an extract keeps few


def _say_a_part_replaces(
    con: duckdb.DuckDBPyConnection, prep: PreparedTable, key: str, view: str, replaced: list[str], file_name: str
) -> None:
    """A file of the same months as a held one replaces it, as a correction does; one that keeps under half of the
    held file's ids (orders, procedures; a diagnosis's patients) is likely another part of the extract (a facility,
    a range of patients) loaded after the first: the held part's rows go. An adopting site split its extract by
    patient and loaded the halves in turn into one warehouse: the second replaced the first's procedures, merged its
    orders, and published 19 cases of 50, exit 0, the log saying only 'replacing 1 earlier file'."""
    k = ident(key)
    held, kept = con.execute(
        f"""WITH held AS (SELECT DISTINCT {k} AS id FROM {view} WHERE list_contains(?, load_id) AND {k} IS NOT NULL)
            SELECT (SELECT count(*) FROM held),
                   (SELECT count(*) FROM held SEMI JOIN read_parquet({literal(prep.typed_parquet)}) AS n ON n.{k} = held.id)""",
        [replaced],
    ).fetchone()
    if held == 0 or kept >= KEPT_BY_A_CORRECTION * held:
        return
    files = [
        r[0]
        for r in con.execute("SELECT path FROM load_ledger WHERE list_contains(?, load_id) ORDER BY path", [replaced]).fetchall()
    ]
    if prep.first_month is None:  # a table of no dates (patients): each file replaces the last whole
        why = (
            f"replaces the held {', '.join(files)} whole (a table without dates: each file is all of it), but keeps "
            f"only {kept:,} of its {held:,} {key}s: the others' rows are gone (a month's patients alone, where the held "
            "file had every patient?); send every patient in each such file, and run again"
        )
    else:
        why = (
            f"replaces the held {', '.join(files)} (the same months) as a correction does, but keeps only {kept:,} of "
            f"its {held:,} {key}s: if it is another part of the extract (a facility, a range of patients) and not a "
            "correction, the held part's rows are gone; deliver the parts as one file and run again"
        )
    event(
        f"{prep.table}: {file_name} {why}",
        level=logging.WARNING,
        event="load_replaces_a_part",
        table=prep.table,
        file=file_name,
        held_files=files,
        held_ids=held,
        kept_ids=kept,
    )


def merge_table(con: duckdb.DuckDBPyConnection, prep: PreparedTable, run_id: str, gate_rejects: Path | None = None) -> TableLoad:
    """Bring one prepared file into the warehouse, recorded in the ledger.

    The same file (same content hash) loaded again adds nothing. A file covering the same
    months as an earlier file of the table is a correction: the earlier file's rows go.
    Rows whose id is already in the warehouse from another file are replaced (newest wins).
    gate_rejects: Parquet of (source_line, column_name, value, reason): rows a data-quality check set aside.
    The rows themselves are not copied: the typed Parquet moves into the source store.
    """
    contract = next(c for c in CONTRACTS if c.name == prep.table)
    view = f"src_{prep.table}"
    file_name = prep.source_label
    seen = con.execute(
        """SELECT load_id FROM load_ledger WHERE table_name = ? AND sha256 = ?
                          AND action <> 'skipped_already_loaded' AND superseded_by IS NULL""",
        [prep.table, prep.sha256],
    ).fetchall()
    load_id = source_store.load_id_of(run_id, prep.table)
    if seen:
        earlier = seen[0][0]
        # its counts are the earlier load's, what the warehouse holds of the file: run.json and the report's inputs say
        # them, so a rerun on the same files publishes the same report (the ledger's row says this run loaded none)
        counts = con.execute("SELECT rows_loaded, rows_rejected FROM load_ledger WHERE load_id = ?", [earlier]).fetchall()[0]
        con.execute(
            "INSERT INTO load_ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 0, 0, 'skipped_already_loaded', ?, NULL, now())",
            [load_id, run_id, prep.table, file_name, prep.sha256, prep.first_month, prep.last_month, prep.rows_read, earlier],
        )
        log.info("%s: %s already loaded (load %s); nothing added", prep.table, prep.path.name, earlier)
        return TableLoad(
            prep.table,
            file_name,
            prep.rows_read,
            counts[0],
            counts[1],
            0,
            prep.ambiguous_local_times,
            action="skipped_already_loaded",
        )
    # a corrected file for the same months replaces what the earlier file brought
    replaced = [
        r[0]
        for r in con.execute(
            f"""SELECT load_id FROM load_ledger WHERE table_name = ? AND first_month IS NOT DISTINCT FROM ?
           AND last_month IS NOT DISTINCT FROM ? AND {source_store.LIVE_LOAD}""",
            [prep.table, prep.first_month, prep.last_month],
        ).fetchall()
    ]
    if not replaced and prep.first_month is not None:
        _say_overlaps(con, prep, file_name)
    removed = 0
    if replaced:
        _say_a_part_replaces(con, prep, contract.id_column or "patient_id", view, replaced, file_name)
        removed = con.execute(f"SELECT count(*) FROM {view} WHERE list_contains(?, load_id)", [replaced]).fetchall()[0][0]
        reject_listing.forget(con, replaced)
        con.execute("UPDATE load_ledger SET superseded_by = ? WHERE list_contains(?, load_id)", [load_id, replaced])
        source_store.forget(con, replaced)
        source_store.rebuild_views(con, prep.table)  # the upsert below must not match the replaced rows
    # rows a data-quality check set aside: a Parquet file the gate wrote (never a row-by-row insert)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _gate_rejects (source_line BIGINT, column_name VARCHAR, value VARCHAR, reason VARCHAR)"
    )
    if gate_rejects is not None:
        con.execute(
            f"INSERT INTO _gate_rejects SELECT source_line, column_name, value, reason "
            f"FROM read_parquet({literal(Path(gate_rejects))})"
        )
    # rows of earlier files with an id this file brings again are replaced by this file's row
    updated = 0
    if con.execute(f"SELECT 1 FROM {view} LIMIT 1").fetchall():
        incoming = prep.good_rows_sql("SELECT source_line FROM _gate_rejects")
        if contract.id_column:
            key = ident(contract.id_column)
            match = f"SELECT load_id, source_line FROM {view} WHERE {key} IN (SELECT {key} FROM ({incoming}))"
        else:
            # no id: a row equal on every required column is the same fact
            on = " AND ".join(f"t.{ident(c)} IS NOT DISTINCT FROM i.{ident(c)}" for c in contract.required_columns)
            match = f"SELECT t.load_id, t.source_line FROM {view} AS t SEMI JOIN ({incoming}) AS i ON {on}"
        updated = source_store.exclude(con, prep.table, match, f"replaced by load {load_id}")
    # the loader's and the gate's set-aside lines, once: counted here, then dropped from the file or listed
    set_aside = con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _set_aside AS SELECT source_line FROM read_parquet({literal(prep.excluded_parquet)})
            UNION SELECT source_line FROM _gate_rejects"""
    ).fetchall()[0][0]
    set_aside_lines = "SELECT source_line FROM _set_aside"
    if source_store.worth_dropping(set_aside, prep.rows_read):
        source_store.drop_lines(con, prep.typed_parquet, set_aside_lines)
    else:
        source_store.exclude(
            con, prep.table, f"SELECT ? AS load_id, source_line FROM ({set_aside_lines})", "set aside at load", [load_id]
        )
    con.execute("DROP TABLE _set_aside")
    source_store.add_file(con, prep.table, load_id, prep.typed_parquet)
    record = _record_load(con, prep, run_id, load_id, file_name, prep.rows_read - set_aside, updated, removed, replaced)
    source_store.rebuild_views(con, prep.table)
    return record


def _record_load(
    con,
    prep: PreparedTable,
    run_id: str,
    load_id: str,
    file_name: str,
    loaded: int,
    updated: int,
    removed: int,
    replaced: list[str],
) -> TableLoad:
    # a table read from several files (a FHIR export) names each reject's own file and line
    at = segments.place(con, "r.source_line", prep.segments, literal(file_name))
    # every reject counted; the first of each kind listed (a bad extract of millions of rows lists a few thousand)
    rejected, nulled = reject_listing.record(
        con,
        f"""SELECT ? AS table_name, {at.file} AS source_file, {at.line} AS source_line, r.column_name, r.value, r.reason,
            r.action, ? AS load_id
        FROM (SELECT source_line, column_name, value, reason, action FROM read_parquet({literal(prep.rejects_parquet)})
              UNION ALL
              SELECT source_line, column_name, value, reason, 'row_rejected' FROM _gate_rejects) AS r{at.join}""",
        [prep.table, load_id],
    )
    action = "replaced" if replaced else "loaded"
    con.execute(
        "INSERT INTO load_ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, now())",
        [
            load_id,
            run_id,
            prep.table,
            file_name,
            prep.sha256,
            prep.first_month,
            prep.last_month,
            prep.rows_read,
            loaded,
            rejected,
            updated,
            removed,
            action,
            ",".join(replaced) or None,
        ],
    )
    con.execute("DROP TABLE _gate_rejects")
    con.execute(f"DROP TABLE IF EXISTS {segments.TABLE}")
    log.info(
        "loaded %s: %s read, %s loaded, %s rejected%s",
        prep.table,
        counted(prep.rows_read, "row"),
        f"{loaded:,}",
        f"{rejected:,}",
        f", replacing {counted(len(replaced), 'earlier file')}" if replaced else "",
    )
    return TableLoad(
        prep.table,
        file_name,
        prep.rows_read,
        loaded,
        rejected,
        nulled,
        prep.ambiguous_local_times,
        action=action,
        rows_updated=updated,
        rows_removed=removed,
    )


def merge_inputs(
    con: duckdb.DuckDBPyConnection, prepared: dict[str, PreparedTable], run_id: str, gate_rejects: dict[str, Path] | None = None
) -> list[TableLoad]:
    """Merge every prepared table; the caller holds the transaction."""
    ensure_tables(con)
    return [merge_table(con, prep, run_id, (gate_rejects or {}).get(name)) for name, prep in prepared.items()]
