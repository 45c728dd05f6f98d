"""CSV/Parquet extracts -> typed warehouse tables ``src_*``; bad rows -> ``load_rejects``.

Polars parses (explicit formats, one streaming query to Parquet so a 100M-row extract
never sits in memory); DuckDB takes the typed Parquet, sets duplicates aside and stores the rows.
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

from pipeline import source_store
from pipeline.config import Config
from pipeline.contract import CONTRACTS, TableContract
from pipeline.errors import InputFileError, MissingColumnError
from pipeline.files import hash_in_background, sha256_file  # noqa: F401 - sha256_file re-exported
from pipeline.sqltext import ident as _q
from pipeline.sqltext import literal
from pipeline.warehouse import memory_limit

log = logging.getLogger(__name__)

SUFFIXES = (".csv", ".parquet")
LINE, FILE, ERR = source_store.LINE, source_store.FILE, source_store.ERR  # the stored file's columns


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
        raise InputFileError(
            input_dir, "input folder not found", "Pass --input a folder holding procedures and imaging_orders as .csv or .parquet"
        )
    found: dict[str, InputFile] = {}
    for contract in CONTRACTS:
        candidates = [input_dir / f"{contract.name}{s}" for s in SUFFIXES if (input_dir / f"{contract.name}{s}").exists()]
        if len(candidates) > 1:
            raise InputFileError(
                input_dir, f"both {candidates[0].name} and {candidates[1].name} exist", "Keep one file per table"
            )
        if not candidates:
            if contract.required_file:
                others = sorted(p.name for p in input_dir.iterdir() if p.name.startswith(contract.name))
                hint = f" (found {', '.join(others)}: only .csv and .parquet are read)" if others else ""
                raise InputFileError(
                    input_dir / f"{contract.name}.csv",
                    f"required file missing{hint}",
                    f"Put {contract.name}.csv or {contract.name}.parquet in the input folder",
                )
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
            raise InputFileError(f.path, "not a readable Parquet file", "Re-export it as Parquet, or as CSV named .csv") from None
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
                raise InputFileError(
                    f.path,
                    f"column '{source}' (mapped to {canonical} in the config) not in the header",
                    "Fix [columns." + contract.name + "] in the config or the extract",
                    line=1,
                )
            rename[source] = canonical
        elif canonical.lower() in by_lower:
            rename[by_lower[canonical.lower()]] = canonical
    missing = [c for c in contract.required_columns if c not in rename.values()]
    if missing:
        raise MissingColumnError(
            f.path,
            f"required column(s) missing: {', '.join(missing)}",
            f"Add them, or map the extract's names under [columns.{contract.name}] in --config",
            line=1 if f.fmt == "csv" else None,
        )
    return rename


# ---------------------------------------------------------------------------- parsing


def _text(col: str) -> pl.Expr:
    """Trimmed text; blank values are missing (the CSV reader already reads empty cells as null)."""
    s = pl.col(col).cast(pl.String).str.strip_chars()
    return pl.when(s == "").then(None).otherwise(s)


SUFFIX = r"^(\.\d{1,9})?([Zz]|[+-]\d{2}:?\d{2})?$"
UNPARSEABLE = "unparseable timestamp: expected ISO 8601 like 2025-03-07 10:00:00 or 2025-03-07T10:00:00-05:00"
DST_GAP = "local time does not exist in the site time zone (DST gap)"


def _with_instant(lf: pl.LazyFrame, col: str, dtype: pl.DataType, tz: str) -> pl.LazyFrame:
    """Replace one timestamp column by its instant in UTC, with `<col>_is_date`, `_ambiguous_<col>`
    and the problem column `_err_<col>`.

    Speed matters here (tens of millions of rows): every accepted ISO form is padded to
    'YYYY-MM-DD HH:MM:SS' and read with ONE explicit format; an optional fraction and offset
    are read from the short suffix. Each step is its own column (Polars would otherwise
    repeat the shared sub-expressions). Local wall-clock times become instants in the site
    zone; the repeated autumn hour is read as the earlier instant and flagged.
    """
    c = pl.col(col)
    t = f"_t_{col}_"  # prefix of the working columns, dropped at the end
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        return lf.with_columns(
            c.dt.convert_time_zone("UTC"),
            pl.lit(False).alias(f"{col}_is_date"),
            pl.lit(False).alias(f"_ambiguous_{col}"),
            pl.lit(None, pl.String).alias(ERR + col),
        )
    if isinstance(dtype, (pl.Date, pl.Datetime)):
        steps = [
            [
                c.cast(pl.Datetime("us")).alias(t + "wall"),
                pl.lit(None, pl.Int64).alias(t + "offset"),
                pl.lit(isinstance(dtype, pl.Date)).alias(t + "date"),
                pl.lit(False).alias(t + "bad"),
            ]
        ]
    else:
        raw = c.cast(pl.String).str.strip_chars()
        steps = [
            [raw.str.replace("T", " ", literal=True, n=1).alias(t + "norm")],
            [
                pl.when(pl.col(t + "norm").str.len_bytes() == 10)
                .then(pl.col(t + "norm") + " 00:00:00")
                .when(pl.col(t + "norm").str.len_bytes() == 16)
                .then(pl.col(t + "norm") + ":00")
                .otherwise(pl.col(t + "norm"))
                .alias(t + "padded"),
                (pl.col(t + "norm").str.len_bytes() == 10).alias(t + "date"),
            ],
            [
                pl.col(t + "padded").str.slice(19).alias(t + "suffix"),
                # cache=False: the timestamps are nearly all distinct, and Polars' per-value
                # cache made this step take 1.8x as long
                pl.col(t + "padded")
                .str.slice(0, 19)
                .str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False, time_unit="us", cache=False)
                .alias(t + "wall0"),
            ],
            [
                pl.col(t + "suffix").str.extract(r"([Zz]|[+-]\d{2}:?\d{2})$", 1).alias(t + "off"),
                pl.col(t + "suffix")
                .str.extract(r"^\.(\d{1,9})", 1)
                .str.slice(0, 6)
                .str.pad_end(6, "0")
                .cast(pl.Int64, strict=False)
                .fill_null(0)
                .alias(t + "micros"),
                (pl.col(t + "norm").is_not_null() & (pl.col(t + "norm") != "")).alias(t + "present"),
            ],
            [
                (pl.col(t + "wall0") + pl.duration(microseconds=pl.col(t + "micros"))).alias(t + "wall"),
                pl.when(pl.col(t + "off").str.to_uppercase() == "Z")
                .then(0)
                .otherwise(
                    pl.when(pl.col(t + "off").str.starts_with("-")).then(-1).otherwise(1)
                    * (
                        pl.col(t + "off").str.slice(1, 2).cast(pl.Int64, strict=False) * 60
                        + pl.col(t + "off").str.slice(-2, 2).cast(pl.Int64, strict=False)
                    )
                )
                .alias(t + "offset"),
                (pl.col(t + "present") & (pl.col(t + "wall0").is_null() | ~pl.col(t + "suffix").str.contains(SUFFIX))).alias(
                    t + "bad"
                ),
            ],
        ]
    wall, offset, bad = pl.col(t + "wall"), pl.col(t + "offset"), pl.col(t + "bad")
    steps += [
        [
            wall.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null")
            .dt.convert_time_zone("UTC")
            .alias(t + "local"),
            (wall - pl.duration(minutes=offset)).dt.replace_time_zone("UTC").alias(t + "from_offset"),
        ],
        [
            pl.when(bad)
            .then(None)
            .when(offset.is_not_null())
            .then(pl.col(t + "from_offset"))
            .otherwise(pl.col(t + "local"))
            .alias(col),
            pl.col(t + "date").alias(f"{col}_is_date"),
            pl.when(bad)
            .then(pl.lit(UNPARSEABLE))
            .when(offset.is_null() & wall.is_not_null() & pl.col(t + "local").is_null())
            .then(pl.lit(DST_GAP))
            .alias(ERR + col),
            # the same wall-clock time one hour later: the autumn hour that happens twice
            (
                offset.is_null()
                & pl.col(t + "local").is_not_null()
                & ((pl.col(t + "local") + pl.duration(hours=1)).dt.convert_time_zone(tz).dt.replace_time_zone(None) == wall)
            ).alias(f"_ambiguous_{col}"),
        ],
    ]
    for step in steps:
        lf = lf.with_columns(step)
    return lf.drop(pl.selectors.starts_with(t))


def _typed_frame(lf: pl.LazyFrame, schema: dict, contract: TableContract, tz: str) -> pl.LazyFrame:
    """All columns typed, plus one _err_<column> reason column per check and the ambiguity flags."""
    # the delivered text of checked columns, kept for the rejects list
    checked = [c for c in schema if c in contract.instants + contract.dates + contract.integers + contract.numbers]
    lf = lf.with_columns(pl.col(c).cast(pl.String).alias(f"_src_{c}") for c in checked)
    for col in contract.instants:
        if col in schema:
            lf = _with_instant(lf, col, schema[col], tz)
    exprs: list[pl.Expr] = [pl.col(LINE)]
    errs: list[pl.Expr] = []
    for col, dtype in schema.items():
        if col == LINE:
            continue
        if col in contract.instants:
            exprs += [pl.col(col), pl.col(f"{col}_is_date"), pl.col(f"_ambiguous_{col}")]
            errs.append(pl.col(ERR + col))
        elif col in contract.dates:
            parsed = (
                pl.col(col) if isinstance(dtype, pl.Date) else _text(col).str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
            )
            exprs.append(parsed.alias(col))
            errs.append(
                pl.when(_text(col).is_not_null() & parsed.is_null())
                .then(pl.lit("unparseable date: expected YYYY-MM-DD"))
                .alias(ERR + col)
            )
        elif col in contract.integers or col in contract.numbers:
            target = pl.Int64 if col in contract.integers else pl.Float64
            parsed = _text(col).cast(target, strict=False)
            low, high = next(((lo, hi) for c, lo, hi in contract.ranges if c == col), (None, None))
            outside = parsed.is_not_null() & ~parsed.is_between(low, high) if low is not None else pl.lit(False)
            exprs.append(pl.when(outside).then(None).otherwise(parsed).alias(col))
            errs.append(
                pl.when(_text(col).is_not_null() & parsed.is_null())
                .then(pl.lit(f"not a {'whole ' if target == pl.Int64 else ''}number"))
                .when(outside)  # NaN and inf too: no real value of the column
                .then(pl.lit(f"outside the possible range {low:g} to {high:g}" if low is not None else ""))
                .alias(ERR + col)
            )
        elif col in contract.codes or col in contract.not_null or col in contract.lowercase:
            text = _text(col)
            text = text.str.to_uppercase() if col in contract.codes else text
            text = text.str.to_lowercase() if col in contract.lowercase else text
            exprs.append(text.alias(col))
        else:
            exprs.append(pl.col(col).cast(pl.String))  # free text: kept as delivered
    for col in contract.not_null:
        # an unparseable value has its own reason above; this one is for empty cells
        source = pl.col(f"_src_{col}") if col in checked else pl.col(col)
        errs.append(
            # (not `.replace("", None)`: that expression is not streamable and made Polars hold the whole file)
            pl.when(source.is_null() | (source.cast(pl.String).str.strip_chars() == ""))
            .then(pl.lit("required value missing"))
            .alias(f"{ERR}{col}_missing")
        )
    keep_src = [pl.col(f"_src_{c}") for c in checked]
    return (
        lf.select(exprs + errs + keep_src)
        .with_columns([pl.when(pl.col(ERR + c).is_not_null()).then(pl.col(f"_src_{c}")).alias(f"_raw_{c}") for c in checked])
        .drop([f"_src_{c}" for c in checked])
    )


def _scan(f: InputFile, rename: dict[str, str]) -> tuple[pl.LazyFrame, dict]:
    if f.fmt == "parquet":
        lf = pl.scan_parquet(f.path).rename(rename, strict=False)
        lf = lf.with_row_index(LINE, offset=1)  # Parquet rows are numbered from 1
    else:
        lf = pl.scan_csv(
            f.path,
            infer_schema=False,
            encoding="utf8",
            row_index_name=LINE,
            row_index_offset=2,
            truncate_ragged_lines=False,
            raise_if_empty=False,
        )
        lf = lf.rename(rename, strict=False)
    lf = lf.with_columns(pl.col(LINE).cast(pl.Int64))
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
    """Type every row and write it, with its problem columns, to one scratch Parquet file.

    One streaming Polars query from the extract to Parquet: the file is read in morsels on
    every core and never held whole (10M orders, 1.4 GB: about 9 s and 0.5 GB peak). Every
    expression in `_typed_frame` must stay streamable, or Polars falls back to holding the
    whole file in memory (tests/test_load.py checks the plan).
    """
    rename = _column_map(f, contract, cfg)
    lf, schema = _scan(f, rename)
    try:
        # lz4: the file becomes the warehouse's copy of the rows (source_store); it halves the
        # file (10M orders: 468 -> 259 MB) at no measurable cost in the parse
        _typed_frame(lf, schema, contract, cfg.site_timezone).sink_parquet(out, compression="lz4")
    except pl.exceptions.PolarsError:
        if f.fmt == "parquet":
            raise InputFileError(f.path, "Parquet file could not be read", "Re-export it") from None
        line, what = _diagnose_csv_failure(f.path)
        raise InputFileError(
            f.path, f"cannot be read as CSV: {what}", "Fix or re-export the extract as UTF-8 CSV", line=line
        ) from None
    return schema


# ---------------------------------------------------------------------------- prepare (scratch)


@dataclass
class PreparedTable:
    """One input file parsed and checked, held as Parquet in the scratch folder."""

    table: str
    path: Path
    sha256: str
    rows_read: int
    typed_parquet: Path  # every row, typed (with the per-check problem columns)
    excluded_parquet: Path  # source_line of every row set aside (rejected or a later duplicate)
    rejects_parquet: Path  # one row per problem: source_line, column_name, value, reason, action
    columns: list[str]  # the data columns of the typed file
    absent: dict[str, str]  # optional contract columns the extract lacks -> SQL type (read as NULL)
    ambiguous_local_times: int
    first_month: str | None
    last_month: str | None

    def good_rows_sql(self, extra_excluded: str | None = None) -> str:
        """The rows that passed, as a query over the typed Parquet (no second copy of the data)."""
        cols = ", ".join([_q(c) for c in self.columns] + [f"CAST(NULL AS {t}) AS {_q(c)}" for c, t in self.absent.items()])
        excluded = f"SELECT source_line FROM read_parquet({literal(self.excluded_parquet)})"
        if extra_excluded:
            excluded += f" UNION ALL {extra_excluded}"
        return f"SELECT {cols} FROM read_parquet({literal(self.typed_parquet)}) WHERE {LINE} NOT IN ({excluded})"


def _month_column(contract: TableContract) -> str:
    return contract.instants[0]


def _strictly_increasing(typed_parquet: Path, id_column: str) -> bool:
    """True when the file's ids, empty ones left out, rise strictly: then no id repeats.

    Extracts usually come ordered by their id, and this one-column pass (10M orders: ~0.3 s)
    spares the hash aggregate over every id that finds the repeats (~3-4 s); any other
    order falls back to that aggregate.
    """
    ids = pl.read_parquet(typed_parquet, columns=[id_column])[id_column].drop_nulls()
    if ids.len() < 2:
        return True
    return bool((ids.slice(1) > ids.slice(0, ids.len() - 1)).all())


def prepare_table(f: InputFile, contract: TableContract, cfg: Config, scratch: Path, sha256: str) -> PreparedTable:
    """Parse one file into typed Parquet; list the rows that fail row-level checks and later duplicates."""
    typed_path = scratch / f"{contract.name}.typed.parquet"
    schema = _write_typed(f, contract, cfg, typed_path)
    truncated = _truncated_last_line(f, len(schema) - 1)
    excluded_path = scratch / f"{contract.name}.excluded.parquet"
    rejects_path = scratch / f"{contract.name}.rejects.parquet"
    con = duckdb.connect()  # scratch engine: DuckDB does the set operations out of core
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"SET memory_limit = {literal(memory_limit())}")
        con.execute(f"SET temp_directory = {literal(scratch / 'duckdb_tmp')}")
        src = f"read_parquet({literal(typed_path)})"
        typed_cols = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()]
        problems = []
        for err in (c for c in typed_cols if c.startswith(ERR)):
            column = err[len(ERR) :].removesuffix("_missing")
            value = _q(f"_raw_{column}") if f"_raw_{column}" in typed_cols else "CAST(NULL AS VARCHAR)"
            action = "row_rejected" if (column in contract.not_null or column in contract.instants) else "value_nulled"
            problems.append(
                f"SELECT {LINE} AS source_line, '{column}' AS column_name, {value} AS value, "
                f"{_q(err)} AS reason, '{action}' AS action FROM {src} WHERE {_q(err)} IS NOT NULL"
            )
        con.execute("CREATE TABLE rejects AS " + " UNION ALL ".join(problems)) if problems else con.execute(
            "CREATE TABLE rejects (source_line BIGINT, column_name VARCHAR, value VARCHAR, reason VARCHAR, action VARCHAR)"
        )
        if truncated is not None:
            con.execute(
                "INSERT INTO rejects VALUES (?, NULL, NULL, ?, 'row_rejected')",
                [
                    truncated,
                    "row cut off mid-row (file ends without a newline and the row has too few fields); re-export the extract",
                ],
            )
        if contract.id_column and not _strictly_increasing(typed_path, contract.id_column):
            # later duplicates of an id are set aside; the first occurrence stays. Only ids that
            # occur twice are ranked (a hash aggregate, not a sort of every row).
            idc = _q(contract.id_column)
            con.execute(
                f"""INSERT INTO rejects
                WITH dup_ids AS (
                    SELECT {idc} FROM {src}
                    WHERE {LINE} NOT IN (SELECT source_line FROM rejects WHERE action = 'row_rejected')
                    GROUP BY {idc} HAVING count(*) > 1
                ),
                ranked AS (
                    SELECT {LINE}, {idc}, min({LINE}) OVER (PARTITION BY {idc}) AS first_line FROM {src}
                    WHERE {idc} IN (SELECT {idc} FROM dup_ids)
                      AND {LINE} NOT IN (SELECT source_line FROM rejects WHERE action = 'row_rejected')
                )
                SELECT {LINE}, ?, {idc}, 'duplicate {contract.id_column}: first seen at line ' || first_line,
                       'row_rejected'
                FROM ranked WHERE {LINE} > first_line""",
                [contract.id_column],
            )
        con.execute(
            f"COPY (SELECT DISTINCT source_line FROM rejects WHERE action = 'row_rejected' ORDER BY 1) "
            f"TO {literal(excluded_path)} (FORMAT parquet)"
        )
        con.execute(f"COPY (SELECT * FROM rejects ORDER BY source_line, column_name) TO {literal(rejects_path)} (FORMAT parquet)")
        data_cols = [c for c in typed_cols if not c.startswith(source_store.INTERNAL_PREFIXES)]
        ambiguous_cols = [c for c in typed_cols if c.startswith("_ambiguous_")]
        month_col = _q(_month_column(contract))
        # the site-local months of the first and last instants. Converting every row (ICU, 10M
        # orders: 1.5 s) is not needed: local time runs backwards by at most the DST shift
        # (under 3 h), so only instants within a day of the extremes can hold the extreme months.
        stats = con.execute(
            f"""WITH bounds AS (SELECT min({month_col}) AS lo, max({month_col}) AS hi FROM {src})
            SELECT
                (SELECT count(*) FROM {src}),
                (SELECT strftime(min(timezone(?, {month_col})), '%Y-%m') FROM {src}, bounds
                 WHERE {month_col} <= lo + INTERVAL 1 DAY),
                (SELECT strftime(max(timezone(?, {month_col})), '%Y-%m') FROM {src}, bounds
                 WHERE {month_col} >= hi - INTERVAL 1 DAY),
                (SELECT count(*) FILTER (WHERE {" OR ".join(_q(c) for c in ambiguous_cols) or "false"}) FROM {src})""",
            [cfg.site_timezone, cfg.site_timezone],
        ).fetchall()[0]
    finally:
        con.close()
    rows_read, first_month, last_month, ambiguous = stats
    absent = {c: source_store.sql_type(contract, c) for c in contract.columns if c not in data_cols}
    return PreparedTable(
        contract.name,
        f.path,
        sha256,
        rows_read,
        typed_path,
        excluded_path,
        rejects_path,
        data_cols,
        absent,
        ambiguous,
        first_month,
        last_month,
    )


def check_headers(inputs: dict[str, InputFile], cfg: Config) -> None:
    """Every file's header, before anything is parsed: a bad last file stops the run early."""
    for contract in CONTRACTS:
        if contract.name in inputs:
            _column_map(inputs[contract.name], contract, cfg)


def prepare_inputs(
    inputs: dict[str, InputFile], cfg: Config, scratch: Path, hashes: dict[str, str] | None = None
) -> dict[str, PreparedTable]:
    """Parse every delivered file; without `hashes`, the files are fingerprinted while they parse."""
    check_headers(inputs, cfg)
    pending = hash_in_background({name: f.path for name, f in inputs.items()}) if hashes is None else {}
    prepared = {}
    for contract in CONTRACTS:
        if contract.name not in inputs:
            continue
        f = inputs[contract.name]
        result = prepare_table(f, contract, cfg, scratch, hashes[contract.name] if hashes else "")
        if result.rows_read == 0 and contract.required_file:
            raise InputFileError(f.path, "has a header but no rows", "The extract looks incomplete; re-export it", line=1)
        log.info("parsed %s: %d rows read", contract.name, result.rows_read)
        prepared[contract.name] = result
    for name, future in pending.items():
        prepared[name].sha256 = future.result()
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
    source_store.ensure(con)


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
    file_name = str(prep.path)
    seen = con.execute(
        """SELECT load_id FROM load_ledger WHERE table_name = ? AND sha256 = ?
                          AND action <> 'skipped_already_loaded' AND superseded_by IS NULL""",
        [prep.table, prep.sha256],
    ).fetchall()
    load_id = f"{run_id}-{prep.table}"
    if seen:
        earlier = seen[0][0]
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
            """SELECT load_id FROM load_ledger WHERE table_name = ? AND first_month IS NOT DISTINCT FROM ?
           AND last_month IS NOT DISTINCT FROM ? AND action IN ('loaded', 'replaced') AND superseded_by IS NULL""",
            [prep.table, prep.first_month, prep.last_month],
        ).fetchall()
    ]
    removed = 0
    if replaced:
        removed = con.execute(f"SELECT count(*) FROM {view} WHERE list_contains(?, load_id)", [replaced]).fetchall()[0][0]
        con.execute("DELETE FROM load_rejects WHERE list_contains(?, load_id)", [replaced])
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
            key = _q(contract.id_column)
            match = f"SELECT load_id, source_line FROM {view} WHERE {key} IN (SELECT {key} FROM ({incoming}))"
        else:
            # no id: a row equal on every required column is the same fact
            on = " AND ".join(f"t.{_q(c)} IS NOT DISTINCT FROM i.{_q(c)}" for c in contract.required_columns)
            match = f"SELECT t.load_id, t.source_line FROM {view} AS t SEMI JOIN ({incoming}) AS i ON {on}"
        updated = source_store.exclude(con, prep.table, match, f"replaced by load {load_id}")
    set_aside = source_store.exclude(
        con,
        prep.table,
        f"""SELECT ? AS load_id, source_line FROM read_parquet({literal(prep.excluded_parquet)})
            UNION SELECT ?, source_line FROM _gate_rejects""",
        "set aside at load",
        [load_id, load_id],
    )
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
    con.execute(
        f"""INSERT INTO load_rejects
        SELECT ?, ?, source_line, column_name, value, reason, action, ? FROM read_parquet({literal(prep.rejects_parquet)})
        UNION ALL
        SELECT ?, ?, source_line, column_name, value, reason, 'row_rejected', ? FROM _gate_rejects""",
        [prep.table, file_name, load_id, prep.table, file_name, load_id],
    )
    rejected, nulled = con.execute(
        """SELECT count(DISTINCT source_line) FILTER (WHERE action = 'row_rejected'),
        count(*) FILTER (WHERE action = 'value_nulled') FROM load_rejects WHERE load_id = ?""",
        [load_id],
    ).fetchall()[0]
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
    log.info(
        "loaded %s: %d rows read, %d loaded, %d rejected%s",
        prep.table,
        prep.rows_read,
        loaded,
        rejected,
        f", replacing {len(replaced)} earlier file(s)" if replaced else "",
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


def load_inputs(
    con: duckdb.DuckDBPyConnection,
    inputs: dict[str, InputFile],
    cfg: Config,
    scratch_dir: Path | None = None,
    run_id: str = "adhoc",
) -> list[TableLoad]:
    """Parse and merge in one call (no data-quality gate between): for tests and tools."""
    with tempfile.TemporaryDirectory(prefix="order-audit-load-", dir=scratch_dir) as tmp:
        prepared = prepare_inputs(inputs, cfg, Path(tmp))
        return merge_inputs(con, prepared, run_id)
