"""CSV/Parquet extracts -> typed warehouse tables ``src_*``; bad rows -> ``load_rejects``.

Polars parses (explicit formats, streamed to Parquet so a 100M-row extract never sits
in memory); DuckDB takes the typed Parquet, sets duplicates aside and stores the rows.
File-level problems raise InputFileError before the warehouse is touched.
"""

from __future__ import annotations

import csv
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from pipeline.config import Config
from pipeline.contract import CONTRACTS, TableContract
from pipeline.errors import InputFileError

log = logging.getLogger(__name__)

SUFFIXES = (".csv", ".parquet")
LINE = "source_line"
FILE = "source_file"
ERR = "_err_"  # prefix of the per-check problem columns carried to DuckDB

REJECTS_DDL = """
CREATE TABLE IF NOT EXISTS load_rejects (
    table_name VARCHAR, source_file VARCHAR, source_line BIGINT, column_name VARCHAR,
    value VARCHAR, reason VARCHAR, action VARCHAR
)"""


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
        raise InputFileError(f.path, f"required column(s) missing: {', '.join(missing)}",
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
                         truncate_ragged_lines=True, raise_if_empty=False)
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


# ---------------------------------------------------------------------------- into DuckDB


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def load_table(con: duckdb.DuckDBPyConnection, f: InputFile, contract: TableContract, cfg: Config,
               scratch: Path) -> TableLoad:
    """Parse one file and replace src_<table> with its good rows; problems go to load_rejects."""
    typed_path = scratch / f"{contract.name}.parquet"
    schema = _write_typed(f, contract, cfg, typed_path)
    truncated = _truncated_last_line(f, len(schema) - 1)
    src = f"read_parquet('{typed_path.as_posix()}')"
    typed_cols = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()]
    file_name = str(f.path)
    con.execute(REJECTS_DDL)
    con.execute("DELETE FROM load_rejects WHERE table_name = ?", [contract.name])
    # one reject row per problem found in a row
    for err in (c for c in typed_cols if c.startswith(ERR)):
        column = err[len(ERR):].removesuffix("_missing")
        value = _q(f"_raw_{column}") if f"_raw_{column}" in typed_cols else "NULL"
        action = "row_rejected" if (column in contract.not_null or column in contract.instants) else "value_nulled"
        con.execute(f"""INSERT INTO load_rejects
            SELECT ?, ?, {LINE}, ?, {value}, {_q(err)}, ?
            FROM {src} WHERE {_q(err)} IS NOT NULL""", [contract.name, file_name, column, action])
    if truncated is not None:
        con.execute("INSERT INTO load_rejects VALUES (?, ?, ?, NULL, NULL, ?, 'row_rejected')",
                    [contract.name, file_name, truncated,
                     "row cut off mid-row (file ends without a newline and the row has too few fields); "
                     "re-export the extract"])
    data_cols = [c for c in typed_cols if not c.startswith(("_err_", "_raw_", "_ambiguous_"))]
    ambiguous_cols = [c for c in typed_cols if c.startswith("_ambiguous_")]
    ambiguous = 0
    if ambiguous_cols:
        ambiguous = con.execute(f"SELECT count(*) FROM {src} WHERE " +
                                " OR ".join(_q(c) for c in ambiguous_cols)).fetchall()[0][0]
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _good AS
        SELECT {", ".join(_q(c) for c in data_cols)}, ? AS {FILE} FROM {src}
        WHERE {LINE} NOT IN (SELECT source_line FROM load_rejects
                             WHERE table_name = ? AND action = 'row_rejected')""", [file_name, contract.name])
    if contract.id_column:
        # DuckDB sets later duplicates of an id aside (a set operation Polars would hold in memory)
        idc = _q(contract.id_column)
        con.execute(f"""INSERT INTO load_rejects
            SELECT ?, ?, {LINE}, ?, {idc}, 'duplicate {contract.id_column}: first seen at line ' || first_line,
                   'row_rejected'
            FROM (SELECT {LINE}, {idc}, min({LINE}) OVER (PARTITION BY {idc}) AS first_line FROM _good)
            WHERE {LINE} > first_line""", [contract.name, file_name, contract.id_column])
        con.execute(f"""DELETE FROM _good WHERE {LINE} IN (
            SELECT source_line FROM load_rejects WHERE table_name = ? AND reason LIKE 'duplicate %')""",
                    [contract.name])
    # optional columns absent from the extract still exist in the warehouse, as NULL
    absent = [c for c in contract.columns if c not in data_cols]
    absent_sql = "".join(f", CAST(NULL AS {_sql_type(contract, c)}) AS {c}" for c in absent)
    con.execute(f"CREATE OR REPLACE TABLE src_{contract.name} AS SELECT *{absent_sql} FROM _good ORDER BY {LINE}")
    con.execute("DROP TABLE _good")
    rows_read = con.execute(f"SELECT count(*) FROM {src}").fetchall()[0][0]
    loaded = con.execute(f"SELECT count(*) FROM src_{contract.name}").fetchall()[0][0]
    rejected, nulled = con.execute("""SELECT count(DISTINCT source_line) FILTER (WHERE action = 'row_rejected'),
        count(*) FILTER (WHERE action = 'value_nulled') FROM load_rejects WHERE table_name = ?""",
                                   [contract.name]).fetchall()[0]
    return TableLoad(contract.name, file_name, rows_read, loaded, rejected, nulled, ambiguous)


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


def empty_table(con: duckdb.DuckDBPyConnection, contract: TableContract) -> None:
    """An optional table that was not delivered exists, empty, with its contract's columns."""
    cols = ", ".join(f"{c} {_sql_type(contract, c)}" for c in contract.columns)
    flags = "".join(f", {c}_is_date BOOLEAN" for c in contract.instants)
    con.execute(f"CREATE OR REPLACE TABLE src_{contract.name} ({cols}{flags}, {LINE} BIGINT, {FILE} VARCHAR)")


def load_inputs(con: duckdb.DuckDBPyConnection, inputs: dict[str, InputFile], cfg: Config,
                scratch_dir: Path | None = None) -> list[TableLoad]:
    """Load every delivered table; the caller wraps this in a transaction."""
    # headers first: a missing column in the last file must stop the run before any load
    for contract in CONTRACTS:
        if contract.name in inputs:
            _column_map(inputs[contract.name], contract, cfg)
    loads = []
    with tempfile.TemporaryDirectory(prefix="order-audit-load-", dir=scratch_dir) as tmp:
        for contract in CONTRACTS:
            if contract.name not in inputs:
                empty_table(con, contract)
                continue
            result = load_table(con, inputs[contract.name], contract, cfg, Path(tmp))
            if result.rows_read == 0 and contract.required_file:
                raise InputFileError(inputs[contract.name].path, "has a header but no rows",
                                     "The extract looks incomplete; re-export it", line=1)
            log.info("loaded %s: %d rows read, %d loaded, %d rejected", contract.name, result.rows_read,
                     result.rows_loaded, result.rows_rejected)
            loads.append(result)
    return loads
