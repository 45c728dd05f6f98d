"""Where the warehouse keeps the delivered rows: one Parquet file per load, read through views.

Copying 10M typed orders into DuckDB's own storage took 9-10 s (DuckDB ingesting 17
text-heavy columns; about the same with compression forced off), while the loader has
already written exactly those rows, typed, to Parquet. So a load moves that file in (one
rename: the scratch folder sits beside the warehouse) and ``src_<table>`` is a view over
the live files of the table:

    <warehouse>.duckdb            catalog, ledger, rejects, models, run history
    <warehouse>.duckdb.sources/   <table>/<load_id>.parquet, one per live load

Rows that must not count are listed, never rewritten: ``src_excluded`` holds
(load_id, source_line) of rows set aside at load (rejected, later duplicates, a failed
row-level check) and of rows replaced by a newer file's row with the same id. Only a load with
many rows set aside (``worth_dropping``) has them dropped from its file as it moves in, instead:
a file of 2M bad rows cost the warehouse their typed copy and 2M ``src_excluded`` rows. A corrected
file for the same months supersedes the earlier load in the ledger, and its file leaves
the view. Files no live load refers to (a superseded load's, or one moved in by a run
that then failed or was killed before its commit) are deleted by `sweep` once the ledger
that drops them is committed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
from pathlib import Path

import duckdb

from pipeline.db import has_table
from pipeline.errors import ConfigError
from pipeline.ingest.contract import CONTRACT_BY_NAME, CONTRACTS, TableContract
from pipeline.sqltext import ident
from pipeline.sqltext import literal as _sql_str

log = logging.getLogger(__name__)

STORE_SUFFIX = ".sources"
# the stored file's shape, shared with the loader that writes it
LINE = "source_line"
FILE = "source_file"
ERR = "_err_"  # prefix of the loader's per-check problem columns
INTERNAL_PREFIXES = (ERR, "_raw_", "_ambiguous_")  # the loader's per-check columns, not data
# the parse's flag of a row with a text of more bytes than its column may hold characters (load.set_aside_impossible)
LONG_TEXT = ERR + "long_text"

EXCLUDED_DDL = """
CREATE TABLE IF NOT EXISTS src_excluded (
    table_name VARCHAR, load_id VARCHAR, source_line BIGINT, why VARCHAR
)"""
# a ledger row whose load's rows the warehouse holds (not a skipped repeat, not replaced by a later file)
LIVE_LOAD = "action IN ('loaded', 'replaced') AND superseded_by IS NULL"
LIVE_LOADS = f"""SELECT load_id, path FROM load_ledger
    WHERE table_name = ? AND {LIVE_LOAD}
    ORDER BY loaded_at, load_id"""


def sql_type(contract: TableContract, col: str) -> str:
    if col in contract.instants:
        return "TIMESTAMPTZ"
    if col in contract.dates or col in contract.derived_columns:
        return "DATE"
    if col in contract.integers:
        return "BIGINT"
    if col in contract.numbers:
        return "DOUBLE"
    if col in contract.booleans:
        return "BOOLEAN"
    return "VARCHAR"


def stored_columns(warehouse_path: Path) -> dict[str, set[str]]:
    """The contract columns the warehouse's stored files hold, per table (no DuckDB opened: read
    before the run takes the warehouse, to decide which audits the data can feed)."""
    import pyarrow.parquet as pq

    root = store_root(warehouse_path)
    found: dict[str, set[str]] = {}
    for contract in CONTRACTS:
        for path in sorted((root / contract.name).glob("*.parquet")) if (root / contract.name).is_dir() else []:
            with contextlib.suppress(OSError, ValueError):  # a half-written file of a killed run: not data
                names = set(pq.read_schema(path).names)
                found.setdefault(contract.name, set()).update(names & set(contract.columns))
    return found


def present_columns(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(table, column) of every contract column some live load of the table holds: what the
    ``input_columns`` table tells the models (a column the extracts lack reads as NULL in the views)."""
    out = []
    for contract in CONTRACTS:
        held: set[str] = set()
        for load_id, _ in con.execute(LIVE_LOADS, [contract.name]).fetchall():
            held |= set(_file_columns(con, file_of(con, contract.name, load_id)))
        out += [(contract.name, c) for c in contract.columns if c in held]
    return out


def store_root(warehouse_path: Path | str) -> Path:
    """<warehouse file>.sources, beside the warehouse file (its real path: a symlinked warehouse's store is the one
    beside the file it names)."""
    path = Path(warehouse_path)
    return path.with_name(path.name + STORE_SUFFIX)


def load_id_of(run_id: str, table: str) -> str:
    """A load's id, and its file's name in the store: <run id>-<table> (``_made_here`` knows the shape)."""
    return f"{run_id}-{table}"


def store_dir(con: duckdb.DuckDBPyConnection) -> Path:
    """<warehouse file>.sources, beside the DuckDB file this connection opened."""
    path = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchall()[0][0]
    if not path:
        raise ValueError("the source store needs a warehouse file, not an in-memory database")
    return store_root(path)


def file_of(con: duckdb.DuckDBPyConnection, table: str, load_id: str) -> Path:
    return store_dir(con) / table / f"{load_id}.parquet"


def add_file(con: duckdb.DuckDBPyConnection, table: str, load_id: str, typed_parquet: Path) -> Path:
    """Move a load's typed Parquet into the store (a rename; a copy only across file systems)."""
    target = file_of(con, table, load_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(typed_parquet, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        partial = target.with_suffix(".partial")
        shutil.copyfile(typed_parquet, partial)
        os.replace(partial, target)
    return target


def ensure(con: duckdb.DuckDBPyConnection) -> None:
    """The exclusion list, and the views (first use: empty views of the contract's shape), over a complete store."""
    con.execute(EXCLUDED_DDL)
    _migrate_tables(con)
    require_complete(con)  # once, as the warehouse opens: a merge's rebuilds then read files it just moved in
    rebuild_views(con)


def _file_columns(con: duckdb.DuckDBPyConnection, path: Path) -> dict[str, str]:
    rows = con.execute(f"DESCRIBE SELECT * FROM read_parquet({_sql_str(path.as_posix())})").fetchall()
    return {r[0]: r[1] for r in rows if not r[0].startswith(INTERNAL_PREFIXES)}


def _view_sql(con: duckdb.DuckDBPyConnection, contract: TableContract) -> str:
    """SELECT over every live file of the table, in the contract's column order, extras last."""
    fixed = [(c, sql_type(contract, c)) for c in contract.columns + contract.derived_columns]
    fixed += [(f"{c}_is_date", "BOOLEAN") for c in contract.instants]
    fixed += [(LINE, "BIGINT"), (FILE, "VARCHAR"), ("load_id", "VARCHAR")]
    names = {c for c, _ in fixed}
    files = []
    for load_id, source in con.execute(LIVE_LOADS, [contract.name]).fetchall():
        path = file_of(con, contract.name, load_id)
        files.append((load_id, source, path, _file_columns(con, path)))
    extras: dict[str, str] = {}  # columns beyond the contract, kept; VARCHAR when the files disagree
    for _, _, _, cols in files:
        for col, typ in cols.items():
            if col not in names:
                extras[col] = typ if extras.get(col, typ) == typ else "VARCHAR"
    columns = fixed + list(extras.items())
    if not files:
        return "SELECT " + ", ".join(f"CAST(NULL AS {t}) AS {ident(c)}" for c, t in columns) + " WHERE false"
    parts = []
    for load_id, source, path, cols in files:
        given = {FILE: _sql_str(source), "load_id": _sql_str(load_id)}
        select = [f"CAST({given.get(c) or (ident(c) if c in cols else 'NULL')} AS {t}) AS {ident(c)}" for c, t in columns]
        parts.append(f"SELECT {', '.join(select)} FROM read_parquet({_sql_str(path.as_posix())})")
    union = "\nUNION ALL\n".join(parts)
    return f"""SELECT f.* FROM ({union}) AS f
ANTI JOIN (SELECT load_id, source_line FROM src_excluded WHERE table_name = {_sql_str(contract.name)}) AS x
    ON x.load_id = f.load_id AND x.source_line = f.source_line"""


def require_complete(con: duckdb.DuckDBPyConnection) -> None:
    """Stop with one line when a live load's file is missing from the store. A warehouse is its DuckDB file and the
    ``.sources`` folder beside it; a backup or a copy of the file alone (or a folder emptied by a clean-up job) ran
    into DuckDB's "No files found" as a bug, with a traceback. Nothing to check before the first load (no ledger)."""
    if not has_table(con, "load_ledger"):
        return
    inside = rows_inside(con)  # their rows become files as the run opens the warehouse to write (_migrate_tables)
    live = con.execute(f"SELECT table_name, load_id FROM load_ledger WHERE {LIVE_LOAD} ORDER BY loaded_at, load_id").fetchall()
    live = [(table, load_id) for table, load_id in live if table not in inside]
    missing = [path for table, load_id in live if not (path := file_of(con, table, load_id)).is_file()]
    if missing:
        store = store_dir(con)
        raise ConfigError(
            f"the warehouse's rows are missing: {store} lacks {len(missing):,} of the {len(live):,} files its ledger "
            f"names (e.g. {missing[0].relative_to(store)}). A warehouse is its file and the {STORE_SUFFIX} folder "
            "beside it: restore the folder from the same backup or copy as the file, or point --warehouse at a new "
            "path to start a new warehouse"
        )


def rebuild_views(con: duckdb.DuckDBPyConnection, table: str | None = None) -> None:
    """(Re)define src_<table> (every table when None) over the ledger's live loads; part of the
    caller's transaction."""
    for contract in CONTRACTS:
        if table is None or contract.name == table:
            con.execute(f"CREATE OR REPLACE VIEW src_{contract.name} AS {_view_sql(con, contract)}")


def rows_inside(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The tables whose rows a warehouse written before the store holds inside DuckDB (src_* a table, not a view
    over files): no file of theirs is in the store until ``_migrate_tables`` writes them."""
    return {
        contract.name
        for contract in CONTRACTS
        if con.execute(
            "SELECT table_type FROM information_schema.tables WHERE table_name = ?", [f"src_{contract.name}"]
        ).fetchall()
        == [("BASE TABLE",)]
    }


def _migrate_tables(con: duckdb.DuckDBPyConnection) -> None:
    """A warehouse written before the store held src_* as tables: each load's rows become its file."""
    for contract in CONTRACTS:
        if contract.name not in rows_inside(con):
            continue
        name = f"src_{contract.name}"
        for (load_id,) in con.execute(f"SELECT DISTINCT load_id FROM {name}").fetchall():
            target = file_of(con, contract.name, load_id)
            target.parent.mkdir(parents=True, exist_ok=True)
            con.execute(
                f"COPY (SELECT * EXCLUDE ({FILE}, load_id) FROM {name} WHERE load_id = ? ORDER BY {LINE}) "
                f"TO {_sql_str(target.as_posix())} (FORMAT parquet)",
                [load_id],
            )
        con.execute(f"DROP TABLE {name}")
        log.info("moved %s into the source store %s", name, store_dir(con))


def exclude(con: duckdb.DuckDBPyConnection, table: str, rows_sql: str, why: str, params: list | None = None) -> int:
    """Set aside the rows a query returns (columns load_id, source_line); returns how many."""
    return con.execute(
        f"INSERT INTO src_excluded SELECT DISTINCT ?, load_id, source_line, ? FROM ({rows_sql})", [table, why, *(params or [])]
    ).fetchall()[0][0]


# rows set aside at load that a load's stored file keeps, listed in src_excluded: beyond this many and a tenth of
# the file's rows, they are dropped from the file instead (one rewrite of it)
EXCLUDED_MOST = 10_000


def worth_dropping(set_aside: int, rows_read: int) -> bool:
    """Whether a load's rows set aside at load leave its file rather than being listed in ``src_excluded``.

    Listing costs nothing now and a little in every view read and in the warehouse (2M bad rows: their typed copy
    8 MB of the store and their src_excluded rows 3.5 MB of the DuckDB file); dropping costs one rewrite of the file.
    A few set aside are listed (a rewrite of 10M good rows for a handful of bad ones would cost seconds); many
    (a file of bad rows, a broken export) leave the file, whose rewrite is then mostly what it leaves out."""
    return set_aside > max(EXCLUDED_MOST, rows_read // 10)


def drop_lines(con: duckdb.DuckDBPyConnection, typed_parquet: Path, lines_sql: str) -> None:
    """Rewrite a load's typed file (before it moves into the store) without the rows whose ``source_line`` the
    query returns. The rejects stay counted and listed (load_rejects, load_reject_groups); only the rows go."""
    kept = typed_parquet.with_name(typed_parquet.stem + ".kept.parquet")
    con.execute(
        f"""COPY (SELECT t.* FROM read_parquet({_sql_str(typed_parquet.as_posix())}) AS t
            ANTI JOIN ({lines_sql}) AS x ON x.source_line = t.{LINE} ORDER BY t.{LINE})
            TO {_sql_str(kept.as_posix())} (FORMAT parquet, COMPRESSION lz4)"""
    )
    os.replace(kept, typed_parquet)


def forget(con: duckdb.DuckDBPyConnection, load_ids: list[str]) -> None:
    """A superseded load's own exclusions go with it (its file leaves the views)."""
    con.execute("DELETE FROM src_excluded WHERE list_contains(?, load_id)", [load_ids])


def _made_here(path: Path) -> bool:
    """A load's file as the store names it: <table>/<run id>-<table>.parquet (or its .partial copy, cut short)."""
    table = path.parent.name
    return (
        table in CONTRACT_BY_NAME
        and re.fullmatch(rf"\d{{8}}T\d{{6}}Z-[0-9a-f]+-{table}\.(?:parquet|partial)", path.name) is not None
    )


def discard(warehouse_path: Path, run_id: str) -> None:
    """The files a run moved into the store, removed when its transaction did not commit (a SIGTERM during the
    models): the next run swept them, and until then the warehouse's folder held files no load names (the
    scheduling review: 'the warehouse exactly as it was')."""
    root = store_root(warehouse_path)
    for contract in CONTRACTS:
        for suffix in (".parquet", ".partial"):
            with contextlib.suppress(OSError):
                (root / contract.name / f"{load_id_of(run_id, contract.name)}{suffix}").unlink()


def sweep(con: duckdb.DuckDBPyConnection) -> list[Path]:
    """Delete store files no live load refers to; call only with the ledger committed."""
    root = store_dir(con)
    if not root.is_dir():
        return []
    live = {(t, lid) for t, lid in con.execute(f"SELECT table_name, load_id FROM load_ledger WHERE {LIVE_LOAD}").fetchall()}
    removed = []
    for path in sorted(root.glob("*/*")):
        if not _made_here(path):
            # what the store never writes (a user's file put in the folder) is not the store's to delete
            log.info("left %s alone: not a file the source store writes", path)
            continue
        if path.suffix != ".parquet" or (path.parent.name, path.stem) not in live:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            removed.append(path)
            log.info("removed %s (no live load refers to it)", path)
    return removed
