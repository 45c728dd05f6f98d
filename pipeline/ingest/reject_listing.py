"""What the warehouse keeps of a load's rejects: every one counted, the first few of each kind listed.

A kind is (table, source file, column, reason, action), a duplicate's reason without the line it names.
An extract of a few MB (a gzip of one bad line repeated, a CSV of bad rows) rejects millions of rows of
one kind; listing each made a 200 MB rejects.csv per 2M lines in every audit's folder, the same listing
once per audit. So ``load_reject_groups`` counts every reject of each kind of a load and ``load_rejects``
keeps the first ``LISTED_PER_KIND`` of each, by line: what is published (rejects.csv, rejects_summary.csv,
run.json, the report) grows with the kinds of problem, not with the number of bad rows, and the warehouse
likewise.
"""

from __future__ import annotations

import duckdb

from pipeline.db import has_table
from pipeline.ingest.source_store import LIVE_LOAD

LISTED_PER_KIND = 1_000  # rows of one kind listed in load_rejects and rejects.csv: enough to find the pattern

GROUPS_DDL = """
CREATE TABLE IF NOT EXISTS load_reject_groups (
    load_id VARCHAR, table_name VARCHAR, source_file VARCHAR, column_name VARCHAR, reason VARCHAR, action VARCHAR,
    rows BIGINT, rows_listed BIGINT
)"""

KIND = "table_name, source_file, column_name, reason, action"
# a duplicate's reason ends naming where its id was first seen (load.py): the kind is the reason without it, or
# a file of a million ids given twice would be a million kinds of one row each, every one listed
FIRST_SEEN = ": first seen at "
KIND_OF = f"table_name, source_file, column_name, split_part(reason, '{FIRST_SEEN}', 1) AS reason, action"


def ensure(con: duckdb.DuckDBPyConnection) -> None:
    """The groups table; a warehouse made before it gets its load_rejects counted and cut to the listing."""
    if has_table(con, "load_reject_groups"):
        return
    con.execute(GROUPS_DDL)
    _count_kinds(con, "SELECT * FROM load_rejects")
    con.execute("DELETE FROM load_rejects")
    _store_kinds(con)


def record(con: duckdb.DuckDBPyConnection, rejects_sql: str, params: list) -> tuple[int, int]:
    """Count and list the rejects of one load: ``rejects_sql`` (with ``params``) gives load_rejects' columns.

    Returns (rows rejected, values nulled), exact: a row rejected on two columns counts once."""
    _count_kinds(con, rejects_sql, params)
    _store_kinds(con)
    return con.execute(
        f"""SELECT count(DISTINCT (source_file, source_line)) FILTER (WHERE action = 'row_rejected'),
        count(*) FILTER (WHERE action = 'value_nulled') FROM ({rejects_sql})""",
        params,
    ).fetchall()[0]


def _count_kinds(con: duckdb.DuckDBPyConnection, rejects_sql: str, params: list | None = None) -> None:
    # one pass, memory by kinds: each kind's count and its first rejects by line (then value: the same every run).
    # A window over every reject (row_number) doubled the merge's memory for 2M rejects of one kind.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _reject_kinds AS
        SELECT load_id, {KIND_OF}, count(*) AS rows,
            min_by(struct_pack(source_line, value, reason), struct_pack(source_line, value, reason), {LISTED_PER_KIND})
                AS listed
        FROM ({rejects_sql}) GROUP BY ALL""",
        params or None,
    )


def _store_kinds(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"INSERT INTO load_reject_groups SELECT load_id, {KIND}, rows, len(listed) FROM _reject_kinds")
    con.execute(
        """INSERT INTO load_rejects
        SELECT table_name, source_file, kept.source_line, column_name, kept.value, kept.reason, action, load_id
        FROM (SELECT *, unnest(listed) AS kept FROM _reject_kinds)"""
    )
    con.execute("DROP TABLE _reject_kinds")


def forget(con: duckdb.DuckDBPyConnection, load_ids: list[str]) -> None:
    """The rejects of loads a corrected file replaces."""
    con.execute("DELETE FROM load_rejects WHERE list_contains(?, load_id)", [load_ids])
    con.execute("DELETE FROM load_reject_groups WHERE list_contains(?, load_id)", [load_ids])


def totals(con: duckdb.DuckDBPyConnection) -> dict:
    """run.json's ``rejects``: rows rejected by table and values nulled over the loads the warehouse holds, and
    the kinds whose listing was cut (every reject of them counted, the first ``LISTED_PER_KIND`` listed)."""
    cut = con.execute(f"""SELECT {KIND}, sum(rows), sum(rows_listed) FROM load_reject_groups GROUP BY ALL
        HAVING sum(rows) > sum(rows_listed) ORDER BY {KIND}""").fetchall()
    names = [*KIND.split(", "), "rows", "rows_listed"]
    return {
        "rejected_rows": dict(
            con.execute(f"""SELECT table_name, sum(rows_rejected)::BIGINT FROM load_ledger
            WHERE {LIVE_LOAD} AND rows_rejected > 0
            GROUP BY ALL ORDER BY 1""").fetchall()
        ),
        "nulled_values": con.execute(
            "SELECT coalesce(sum(rows), 0)::BIGINT FROM load_reject_groups WHERE action = 'value_nulled'"
        ).fetchall()[0][0],
        "listed_per_kind": LISTED_PER_KIND,
        "listing_cut": [dict(zip(names, row, strict=True)) for row in cut],
    }
