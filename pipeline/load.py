"""CSV/Parquet extracts -> typed warehouse tables ``src_*``; bad rows -> ``load_rejects``.

Polars parses (explicit formats, streamed to Parquet so a 100M-row extract never sits
in memory); DuckDB takes the typed Parquet, sets duplicates aside and stores the rows.
File-level problems raise InputFileError before the warehouse is touched.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from pipeline.config import Config
from pipeline.contract import CONTRACTS, TableContract
from pipeline.errors import InputFileError, MissingColumnError

log = logging.getLogger(__name__)

SUFFIXES = (".csv", ".parquet")
LINE = "source_line"
FILE = "source_file"
ERR = "_err_"  # prefix of the per-check problem columns carried to DuckDB

@dataclass(frozen=True)
class InputFile:
    table: str
    path: Path
    fmt: str


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


def find_inputs(input_dir: Path) -> dict[str, InputFile]:
    """Locate each contract table's file in the input folder; file-level errors raise."""
    if not input_dir.is_dir():
        raise InputFileError(input_dir, "input folder not found", "Pass --input a folder holding procedures "
                             "and imaging_orders as .csv or .parquet")
    found: dict[str, InputFile] = {}
    for contract in CONTRACTS:
        candidates = [input_dir / f"{contract.name}{s}" for s in SUFFIXES if (input_dir / f"{contract.name}{s}").exists()]
        if len(candidates) > 1:
            raise InputFileError(input_dir, f"both {candidates[0].name} and {candidates[1].name} exist",
                                 "Keep one file per table")
        if not candidates:
            if contract.required_file:
                others = sorted(p.name for p in input_dir.iterdir() if p.name.startswith(contract.name))
                hint = f" (found {', '.join(others)}: only .csv and .parquet are read)" if others else ""
                raise InputFileError(input_dir / f"{contract.name}.csv", f"required file missing{hint}",
                                     f"Put {contract.name}.csv or {contract.name}.parquet in the input folder")
            continue
        path = candidates[0]
        found[contract.name] = InputFile(contract.name, path, path.suffix.lstrip("."))
    return found


# ---------------------------------------------------------------------------- headers


def _header(f: InputFile) -> list[str]:
    """The file's column names, checking that the file is what its name says."""
    if f.path.stat().st_size == 0:
        raise InputFileError(f.path, "file is empty", "Re-export the extract; it holds no header and no rows")
    if f.fmt == "parquet":
        try:
            return list(pl.read_parquet_schema(f.path).keys())
        except Exception:
            raise InputFileError(f.path, "not a readable Parquet file",
                                 "Re-export it as Parquet, or as CSV named .csv") from None
    with f.path.open("rb") as fh:
        head = fh.read(65536)
    if head.startswith(b"PAR1"):
        raise InputFileError(f.path, "is a Parquet file named .csv", "Rename it to .parquet")
    if b"\x00" in head:
        raise InputFileError(f.path, "is a binary file, not CSV", "Export the table as UTF-8 CSV")
    first = head.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        text = first.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputFileError(f.path, "header is not UTF-8 text", "Re-export the extract as UTF-8", line=1) from None
    return next(csv.reader([text]))


def _column_map(f: InputFile, contract: TableContract, cfg: Config) -> dict[str, str]:
    """source column name -> canonical name; raises on a missing required column."""
    header = _header(f)
    configured = cfg.columns.get(contract.name, {})
    by_lower = {h.strip().lower(): h for h in header}
    rename: dict[str, str] = {}
    for canonical in contract.columns:
        source = configured.get(canonical)
        if source is not None:
            if source not in header:
                raise InputFileError(f.path, f"column '{source}' (mapped to {canonical} in the config) not in the header",
                                     "Fix [columns." + contract.name + "] in the config or the extract", line=1)
            rename[source] = canonical
        elif canonical.lower() in by_lower:
            rename[by_lower[canonical.lower()]] = canonical
    missing = [c for c in contract.required_columns if c not in rename.values()]
    if missing:
        raise MissingColumnError(f.path, f"required column(s) missing: {', '.join(missing)}",
                             f"Add them, or map the extract's names under [columns.{contract.name}] in --config",
                             line=1 if f.fmt == "csv" else None)
    return rename


# ---------------------------------------------------------------------------- parsing


def _text(col: str) -> pl.Expr:
    """Trimmed text; empty strings are missing values."""
    s = pl.col(col).cast(pl.String).str.strip_chars()
    return pl.when(s == "").then(None).otherwise(s)


def _instant(col: str, dtype: pl.DataType, tz: str) -> tuple[pl.Expr, pl.Expr, pl.Expr, pl.Expr]:
    """(instant in UTC, date-only flag, problem reason, ambiguous flag) for one timestamp column."""
    if isinstance(dtype, pl.Datetime):
        c = pl.col(col)
        if dtype.time_zone is None:
            local = c.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
            later = c.dt.replace_time_zone(tz, ambiguous="latest", non_existent="null")
            value = local.dt.convert_time_zone("UTC")
            gap = c.is_not_null() & local.is_null()
            return (value, pl.lit(False), pl.when(gap).then(pl.lit("local time does not exist (DST gap)")),
                    local.is_not_null() & (local != later))
        return c.dt.convert_time_zone("UTC"), pl.lit(False), pl.lit(None, pl.String), pl.lit(False)
    if isinstance(dtype, pl.Date):
        local = pl.col(col).cast(pl.Datetime("us")).dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
        return local.dt.convert_time_zone("UTC"), pl.col(col).is_not_null(), pl.lit(None, pl.String), pl.lit(False)
    raw = _text(col)
    norm = raw.str.replace(" ", "T", literal=True, n=1).str.replace("Z", "+00:00", literal=True)
    norm = pl.when(norm.str.len_bytes() == 16).then(norm + ":00").otherwise(norm)
    with_offset = norm.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%z", strict=False, time_zone="UTC", time_unit="us")
    naive = norm.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False, time_unit="us")
    date_only = norm.str.to_date("%Y-%m-%d", strict=False)
    local_naive = pl.coalesce(naive, date_only.cast(pl.Datetime("us")))
    local = local_naive.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
    later = local_naive.dt.replace_time_zone(tz, ambiguous="latest", non_existent="null")
    value = pl.coalesce(with_offset, local.dt.convert_time_zone("UTC"))
    problem = (
        pl.when(raw.is_not_null() & local_naive.is_not_null() & local.is_null())
        .then(pl.lit("local time does not exist in the site time zone (DST gap)"))
        .when(raw.is_not_null() & value.is_null())
        .then(pl.lit("unparseable timestamp: expected ISO 8601 like 2025-03-07 10:00:00 or 2025-03-07T10:00:00-05:00"))
    )
    ambiguous = with_offset.is_null() & local.is_not_null() & (local != later)
    return value, date_only.is_not_null(), problem, ambiguous


def _typed_frame(lf: pl.LazyFrame, schema: dict, contract: TableContract, tz: str) -> pl.LazyFrame:
    """All columns typed, plus one _err_<column> reason column per check and counters."""
    exprs: list[pl.Expr] = [pl.col(LINE)]
    errs: list[pl.Expr] = []
    for col, dtype in schema.items():
        if col == LINE:
            continue
        if col in contract.instants:
            value, date_only, problem, ambiguous = _instant(col, dtype, tz)
            exprs += [value.alias(col), date_only.alias(f"{col}_is_date"), ambiguous.alias(f"_ambiguous_{col}")]
            errs.append(problem.alias(ERR + col))
        elif col in contract.dates:
            raw = _text(col)
            parsed = (pl.col(col) if isinstance(dtype, pl.Date)
                      else raw.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False))
            exprs.append(parsed.alias(col))
            errs.append(pl.when(pl.col(col).is_not_null() & parsed.is_null())
                        .then(pl.lit("unparseable date: expected YYYY-MM-DD")).alias(ERR + col))
        elif col in contract.integers or col in contract.numbers:
            target = pl.Int64 if col in contract.integers else pl.Float64
            raw = _text(col)
            parsed = raw.cast(target, strict=False)
            exprs.append(parsed.alias(col))
            errs.append(pl.when(raw.is_not_null() & parsed.is_null())
                        .then(pl.lit(f"not a {'whole ' if target == pl.Int64 else ''}number")).alias(ERR + col))
        elif col in contract.codes:
            exprs.append(_text(col).str.to_uppercase().alias(col))
        elif col in contract.lowercase:
            exprs.append(_text(col).str.to_lowercase().alias(col))
        else:
            exprs.append(_text(col).alias(col))
    for col in contract.not_null:
        # an unparseable value has its own reason above; this one is for empty cells
        errs.append(pl.when(_text(col).is_null()).then(pl.lit("required value missing")).alias(f"{ERR}{col}_missing"))
    # the raw text of checked columns travels along so a reject shows what was there
    raws = [pl.col(c).cast(pl.String).alias(f"_raw_{c}") for c in schema if c != LINE and
            (c in contract.instants or c in contract.dates or c in contract.integers or c in contract.numbers)]
    return lf.select(exprs + errs + raws)


def _scan(f: InputFile, rename: dict[str, str]) -> tuple[pl.LazyFrame, dict]:
    if f.fmt == "parquet":
        lf = pl.scan_parquet(f.path).rename(rename, strict=False)
        lf = lf.with_row_index(LINE, offset=1)  # Parquet rows are numbered from 1
    else:
        lf = pl.scan_csv(f.path, infer_schema=False, encoding="utf8", row_index_name=LINE, row_index_offset=2,
                         truncate_ragged_lines=False, raise_if_empty=False)
        lf = lf.rename(rename, strict=False)
    schema = dict(lf.collect_schema())
    return lf, schema


def _diagnose_csv_failure(path: Path) -> tuple[int | None, str]:
    """Find the first line Polars could not read, for the error message (error path only)."""
    with path.open("rb") as fh:
        data = fh.read()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return line, f"byte 0x{data[exc.start]:02x} is not UTF-8"
    text = data.decode("utf-8-sig")
    rows = csv.reader(text.splitlines())
    width = None
    for n, row in enumerate(rows, start=1):
        if width is None:
            width = len(row)
        elif len(row) > width:
            return n, f"{len(row)} fields where the header has {width}"
    return None, "the CSV could not be parsed"


def _truncated_last_line(f: InputFile, n_columns: int) -> int | None:
    """The line number of a last row cut off mid-row (file ends without a newline, too few fields)."""
    if f.fmt != "csv":
        return None
    with f.path.open("rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - 65536))
        tail = fh.read()
    if tail.endswith(b"\n"):
        return None
    last = tail.rsplit(b"\n", 1)[-1].decode("utf-8", "replace")
    fields = next(csv.reader([last]), [])
    if len(fields) >= n_columns:
        return None
    with f.path.open("rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b"")) + 1


def _write_typed(f: InputFile, contract: TableContract, cfg: Config, out: Path) -> dict:
    rename = _column_map(f, contract, cfg)
    lf, schema = _scan(f, rename)
    typed = _typed_frame(lf, schema, contract, cfg.site_timezone)
    try:
        typed.sink_parquet(out, compression="lz4")
    except pl.exceptions.PolarsError:
        if f.fmt == "parquet":
            raise InputFileError(f.path, "Parquet file could not be read", "Re-export it") from None
        line, what = _diagnose_csv_failure(f.path)
        raise InputFileError(f.path, f"cannot be read as CSV: {what}", "Fix or re-export the extract as UTF-8 CSV",
                             line=line) from None
    return schema


# ---------------------------------------------------------------------------- prepare (scratch)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class PreparedTable:
    """One input file parsed and checked, held as Parquet in the scratch folder."""

    table: str
    path: Path
    sha256: str
    rows_read: int
    good_parquet: Path  # rows that passed the row-level checks, typed
    rejects_parquet: Path  # one row per problem: source_line, column_name, value, reason, action
    columns: list[str]
    ambiguous_local_times: int
    first_month: str | None
    last_month: str | None


def _month_column(contract: TableContract) -> str:
    return contract.instants[0]


def prepare_table(f: InputFile, contract: TableContract, cfg: Config, scratch: Path, sha256: str) -> PreparedTable:
    """Parse one file into typed Parquet; set aside rows that fail row-level checks and later duplicates."""
    typed_path = scratch / f"{contract.name}.typed.parquet"
    schema = _write_typed(f, contract, cfg, typed_path)
    truncated = _truncated_last_line(f, len(schema) - 1)
    good_path = scratch / f"{contract.name}.good.parquet"
    rejects_path = scratch / f"{contract.name}.rejects.parquet"
    con = duckdb.connect()  # scratch engine: DuckDB does the set operations out of core
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute(f"SET temp_directory = '{(scratch / 'duckdb_tmp').as_posix()}'")
        src = f"read_parquet('{typed_path.as_posix()}')"
        typed_cols = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()]
        con.execute("CREATE TABLE rejects (source_line BIGINT, column_name VARCHAR, value VARCHAR, "
                    "reason VARCHAR, action VARCHAR)")
        # one reject row per problem found in a row
        for err in (c for c in typed_cols if c.startswith(ERR)):
            column = err[len(ERR):].removesuffix("_missing")
            value = _q(f"_raw_{column}") if f"_raw_{column}" in typed_cols else "NULL"
            action = "row_rejected" if (column in contract.not_null or column in contract.instants) else "value_nulled"
            con.execute(f"INSERT INTO rejects SELECT {LINE}, ?, {value}, {_q(err)}, ? FROM {src} "
                        f"WHERE {_q(err)} IS NOT NULL", [column, action])
        if truncated is not None:
            con.execute("INSERT INTO rejects VALUES (?, NULL, NULL, ?, 'row_rejected')",
                        [truncated, "row cut off mid-row (file ends without a newline and the row has too few "
                                    "fields); re-export the extract"])
        data_cols = [c for c in typed_cols if not c.startswith((ERR, "_raw_", "_ambiguous_"))]
        ambiguous_cols = [c for c in typed_cols if c.startswith("_ambiguous_")]
        ambiguous = 0
        if ambiguous_cols:
            ambiguous = con.execute(f"SELECT count(*) FROM {src} WHERE " +
                                    " OR ".join(_q(c) for c in ambiguous_cols)).fetchall()[0][0]
        con.execute(f"""CREATE TABLE good AS SELECT {", ".join(_q(c) for c in data_cols)} FROM {src}
            WHERE {LINE} NOT IN (SELECT source_line FROM rejects WHERE action = 'row_rejected')""")
        if contract.id_column:
            # later duplicates of an id are set aside; the first occurrence stays
            idc = _q(contract.id_column)
            con.execute(f"""INSERT INTO rejects
                SELECT {LINE}, ?, {idc}, 'duplicate {contract.id_column}: first seen at line ' || first_line,
                       'row_rejected'
                FROM (SELECT {LINE}, {idc}, min({LINE}) OVER (PARTITION BY {idc}) AS first_line FROM good)
                WHERE {LINE} > first_line""", [contract.id_column])
            con.execute(f"DELETE FROM good WHERE {LINE} IN "
                        "(SELECT source_line FROM rejects WHERE reason LIKE 'duplicate %')")
        # optional columns absent from the extract still exist, as NULL
        absent = [c for c in contract.columns if c not in data_cols]
        absent_sql = "".join(f", CAST(NULL AS {_sql_type(contract, c)}) AS {c}" for c in absent)
        con.execute(f"COPY (SELECT *{absent_sql} FROM good ORDER BY {LINE}) TO '{good_path.as_posix()}' "
                    "(FORMAT parquet, COMPRESSION lz4)")
        con.execute(f"COPY (SELECT * FROM rejects ORDER BY source_line, column_name) TO "
                    f"'{rejects_path.as_posix()}' (FORMAT parquet)")
        rows_read = con.execute(f"SELECT count(*) FROM {src}").fetchall()[0][0]
        month_col = _q(_month_column(contract))
        first_month, last_month = con.execute(
            f"SELECT strftime(min(timezone(?, {month_col})), '%Y-%m'), strftime(max(timezone(?, {month_col})), '%Y-%m') "
            "FROM good", [cfg.site_timezone, cfg.site_timezone]).fetchall()[0]
        columns = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{good_path.as_posix()}')").fetchall()]
    finally:
        con.close()
    typed_path.unlink(missing_ok=True)
    return PreparedTable(contract.name, f.path, sha256, rows_read, good_path, rejects_path, columns, ambiguous,
                         first_month, last_month)


def _sql_type(contract: TableContract, col: str) -> str:
    if col in contract.instants:
        return "TIMESTAMPTZ"
    if col in contract.dates:
        return "DATE"
    if col in contract.integers:
        return "BIGINT"
    if col in contract.numbers:
        return "DOUBLE"
    return "VARCHAR"


def check_headers(inputs: dict[str, InputFile], cfg: Config) -> None:
    """Every file's header, before anything is parsed: a bad last file stops the run early."""
    for contract in CONTRACTS:
        if contract.name in inputs:
            _column_map(inputs[contract.name], contract, cfg)


def prepare_inputs(inputs: dict[str, InputFile], cfg: Config, scratch: Path, hashes: dict[str, str]
                   ) -> dict[str, PreparedTable]:
    check_headers(inputs, cfg)
    prepared = {}
    for contract in CONTRACTS:
        if contract.name not in inputs:
            continue
        f = inputs[contract.name]
        result = prepare_table(f, contract, cfg, scratch, hashes[contract.name])
        if result.rows_read == 0 and contract.required_file:
            raise InputFileError(f.path, "has a header but no rows", "The extract looks incomplete; re-export it", line=1)
        log.info("parsed %s: %d rows read", contract.name, result.rows_read)
        prepared[contract.name] = result
    return prepared


# ---------------------------------------------------------------------------- merge (warehouse)

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
    for contract in CONTRACTS:
        cols = ", ".join(f"{c} {_sql_type(contract, c)}" for c in contract.columns)
        flags = "".join(f", {c}_is_date BOOLEAN" for c in contract.instants)
        con.execute(f"CREATE TABLE IF NOT EXISTS src_{contract.name} ({cols}{flags}, {LINE} BIGINT, "
                    f"{FILE} VARCHAR, load_id VARCHAR)")


def merge_table(con: duckdb.DuckDBPyConnection, prep: PreparedTable, run_id: str, gate_rejects: list[tuple]
                ) -> TableLoad:
    """Bring one prepared file into the warehouse, recorded in the ledger.

    The same file (same content hash) loaded again adds nothing. A file covering the same
    months as an earlier file of the table is a correction: the earlier file's rows go.
    Rows whose id is already in the warehouse from another file are replaced (newest wins).
    gate_rejects: (source_line, column, value, reason) of rows a data-quality check set aside.
    """
    contract = next(c for c in CONTRACTS if c.name == prep.table)
    table = f"src_{prep.table}"
    file_name = str(prep.path)
    seen = con.execute("""SELECT load_id FROM load_ledger WHERE table_name = ? AND sha256 = ?
                          AND action <> 'skipped_already_loaded' AND superseded_by IS NULL""",
                       [prep.table, prep.sha256]).fetchall()
    load_id = f"{run_id}-{prep.table}"
    if seen:
        earlier = seen[0][0]
        counts = con.execute("SELECT rows_loaded, rows_rejected FROM load_ledger WHERE load_id = ?", [earlier]).fetchall()[0]
        con.execute("INSERT INTO load_ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 0, 0, 'skipped_already_loaded', ?, "
                    "NULL, now())", [load_id, run_id, prep.table, file_name, prep.sha256, prep.first_month,
                                     prep.last_month, prep.rows_read, earlier])
        log.info("%s: %s already loaded (load %s); nothing added", prep.table, prep.path.name, earlier)
        return TableLoad(prep.table, file_name, prep.rows_read, counts[0], counts[1], 0, prep.ambiguous_local_times,
                         action="skipped_already_loaded")
    # a corrected file for the same months replaces what the earlier file brought
    replaced = [r[0] for r in con.execute(
        """SELECT load_id FROM load_ledger WHERE table_name = ? AND first_month IS NOT DISTINCT FROM ?
           AND last_month IS NOT DISTINCT FROM ? AND action IN ('loaded', 'replaced') AND superseded_by IS NULL""",
        [prep.table, prep.first_month, prep.last_month]).fetchall()]
    removed = 0
    if replaced:
        removed = con.execute(f"SELECT count(*) FROM {table} WHERE list_contains(?, load_id)", [replaced]).fetchall()[0][0]
        con.execute(f"DELETE FROM {table} WHERE list_contains(?, load_id)", [replaced])
        con.execute("DELETE FROM load_rejects WHERE list_contains(?, load_id)", [replaced])
        con.execute("UPDATE load_ledger SET superseded_by = ? WHERE list_contains(?, load_id)", [load_id, replaced])
    good = f"read_parquet('{prep.good_parquet.as_posix()}')"
    con.execute("CREATE OR REPLACE TEMP TABLE _gate_rejects (source_line BIGINT, column_name VARCHAR, value VARCHAR, "
                "reason VARCHAR)")
    if gate_rejects:
        con.executemany("INSERT INTO _gate_rejects VALUES (?, ?, ?, ?)", gate_rejects)
    # columns an extract brings that the warehouse has not seen yet are added (extra columns are kept)
    existing = {r[0] for r in con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = ?",
                                          [table]).fetchall()}
    types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {good})").fetchall())
    for col in prep.columns:
        if col not in existing:
            con.execute(f"ALTER TABLE {table} ADD COLUMN {_q(col)} {types[col]}")
    incoming = (f"SELECT *, CAST(? AS VARCHAR) AS {FILE}, CAST(? AS VARCHAR) AS load_id FROM {good} "
                f"WHERE {LINE} NOT IN (SELECT source_line FROM _gate_rejects)")
    con.execute(f"CREATE OR REPLACE TEMP TABLE _incoming AS {incoming}", [file_name, load_id])
    if contract.id_column:
        key = _q(contract.id_column)
        updated = con.execute(f"SELECT count(*) FROM {table} WHERE {key} IN (SELECT {key} FROM _incoming)").fetchall()[0][0]
        con.execute(f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM _incoming)")
    else:
        # no id: a row equal on every contract column is the same fact
        cols = [c for c in contract.required_columns]
        match = " AND ".join(f"t.{_q(c)} IS NOT DISTINCT FROM i.{_q(c)}" for c in cols)
        updated = con.execute(f"SELECT count(*) FROM {table} AS t WHERE EXISTS (SELECT 1 FROM _incoming AS i WHERE {match})"
                              ).fetchall()[0][0]
        con.execute(f"DELETE FROM {table} AS t WHERE EXISTS (SELECT 1 FROM _incoming AS i WHERE {match})")
    con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _incoming")
    loaded = con.execute("SELECT count(*) FROM _incoming").fetchall()[0][0]
    con.execute(f"""INSERT INTO load_rejects
        SELECT ?, ?, source_line, column_name, value, reason, action, ? FROM read_parquet('{prep.rejects_parquet.as_posix()}')
        UNION ALL
        SELECT ?, ?, source_line, column_name, value, reason, 'row_rejected', ? FROM _gate_rejects""",
                [prep.table, file_name, load_id, prep.table, file_name, load_id])
    rejected, nulled = con.execute("""SELECT count(DISTINCT source_line) FILTER (WHERE action = 'row_rejected'),
        count(*) FILTER (WHERE action = 'value_nulled') FROM load_rejects WHERE load_id = ?""", [load_id]).fetchall()[0]
    action = "replaced" if replaced else "loaded"
    con.execute("INSERT INTO load_ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, now())",
                [load_id, run_id, prep.table, file_name, prep.sha256, prep.first_month, prep.last_month, prep.rows_read,
                 loaded, rejected, updated, removed, action, ",".join(replaced) or None])
    con.execute("DROP TABLE _incoming")
    con.execute("DROP TABLE _gate_rejects")
    log.info("loaded %s: %d rows read, %d loaded, %d rejected%s", prep.table, prep.rows_read, loaded, rejected,
             f", replacing {len(replaced)} earlier file(s)" if replaced else "")
    return TableLoad(prep.table, file_name, prep.rows_read, loaded, rejected, nulled, prep.ambiguous_local_times,
                     action=action, rows_updated=updated, rows_removed=removed)


def merge_inputs(con: duckdb.DuckDBPyConnection, prepared: dict[str, PreparedTable], run_id: str,
                 gate_rejects: dict[str, list[tuple]] | None = None) -> list[TableLoad]:
    """Merge every prepared table; the caller holds the transaction."""
    ensure_tables(con)
    return [merge_table(con, prep, run_id, (gate_rejects or {}).get(name, [])) for name, prep in prepared.items()]


def load_inputs(con: duckdb.DuckDBPyConnection, inputs: dict[str, InputFile], cfg: Config,
                scratch_dir: Path | None = None, run_id: str = "adhoc") -> list[TableLoad]:
    """Parse and merge in one call (no data-quality gate between): for tests and tools."""
    with tempfile.TemporaryDirectory(prefix="order-audit-load-", dir=scratch_dir) as tmp:
        hashes = {name: sha256_file(f.path) for name, f in inputs.items()}
        prepared = prepare_inputs(inputs, cfg, Path(tmp), hashes)
        return merge_inputs(con, prepared, run_id)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
