"""Small questions to a DuckDB connection, asked one way everywhere: a query as a frame, a table's presence."""

from __future__ import annotations

import duckdb
import polars as pl


def frame(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pl.DataFrame:
    """The query's rows as a Polars frame."""
    # DuckDB 2.0: an execute() result has no .pl(); a relation fetches whole, leaving no half-read result
    return con.sql(sql, params=params or None).pl()


def has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """A table or view of that name exists (in any schema of the connection's databases)."""
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchall()[0][0])


def tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The names of every table and view."""
    return {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}


def columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    """The column names of a table or view (empty when there is none)."""
    rows = con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]).fetchall()
    return {r[0] for r in rows}
