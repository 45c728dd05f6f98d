"""Extracts (delimited text, Parquet, Excel) -> typed Parquet in the scratch folder, with their rejects.

Polars parses (the table's formats from the config, explicit timestamp formats, one
streaming query to Parquet so a 100M-row extract never sits in memory); DuckDB lists the
rows that fail and the later duplicates. File-level problems raise InputFileError before
the warehouse is touched. The jobs around it have their own modules: where each table's
file is (inputs), its header and column names (headers), typing (typed_frame,
timestamps, value_maps), line numbers (physical_lines) and the warehouse side (ledger).
"""

from __future__ import annotations

import codecs
import csv
import logging
import tempfile
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from pipeline.config import Config
from pipeline.errors import InputFileError, MissingColumnError, printable
from pipeline.ingest import (
    headers,
    parse_checks,
    physical_lines,
    short_rows,
    source_store,
    textfile,
    utc_midnight,
    value_maps,
    xlsx,
)
from pipeline.ingest.contract import (
    CONTRACT_BY_NAME,
    CONTRACTS,
    CUT_OFF_REASON,
    INSTANT_YEARS,
    TableContract,
    longest_text,
    out_of_range_reason,
    too_long_reason,
    values_showing_a_patient_id,
)
from pipeline.ingest.files import Fingerprint, fingerprint_in_background, line_of
from pipeline.ingest.held_patient_ids import WITHHELD_REASON, withheld_values_sql
from pipeline.ingest.inputs import InputFile, find_inputs  # noqa: F401 - the loader's entry points
from pipeline.ingest.ledger import TableLoad, ensure_tables, merge_inputs  # noqa: F401 - re-exported for callers
from pipeline.ingest.reject_listing import FIRST_SEEN
from pipeline.ingest.segments import Segment, place
from pipeline.ingest.textfile import Source
from pipeline.ingest.typed_frame import typed_frame
from pipeline.ingest.value_maps import UnknownValues
from pipeline.models import reference
from pipeline.sqltext import ident, literal
from pipeline.warehouse import memory_limit
from pipeline.wording import counted

log = logging.getLogger(__name__)

LINE, FILE, ERR = source_store.LINE, source_store.FILE, source_store.ERR  # the stored file's columns
LONG_TEXT = source_store.LONG_TEXT
_column_map = headers.column_map


# ---------------------------------------------------------------------------- reading


def open_source(f: InputFile, cfg: Config, scratch: Path | None) -> Source:
    fmt = cfg.format_of(f.table)
    separator, quote, header_line = fmt.delimiter_for(f.path.suffix), fmt.quote, f.header_row or 1
    if scratch is not None and textfile.needs_utf8_copy(fmt, textfile.read_head(f.path)):
        copy = scratch / f"{f.table}.utf8.csv"
        breaks = textfile.utf8_copy(f.path, fmt, copy, f.table)  # line for line: the title lines are copied too
        return Source(copy, separator, quote, breaks, header_line)
    return Source(f.path, separator, quote, header_line=header_line)


def scan(
    f: InputFile, rename: dict[str, str], source: Source | None = None, rows: pl.LazyFrame | None = None
) -> tuple[pl.LazyFrame, dict]:
    """The file as a lazy frame (text columns; Parquet keeps its types) with each row's line number.

    rows: the table as a reader already holds it (a FHIR export's join), keyed by source_line."""
    if rows is not None:
        lf = rows
    elif f.fmt == "parquet":
        lf = _renamed(pl.scan_parquet(f.path, glob=False), rename)
        lf = lf.with_row_index(LINE, offset=1)  # Parquet rows are numbered from 1
    elif f.fmt == "xlsx":
        # the sheet's columns the run reads are the keys of ``rename`` (a contract column found under its own name
        # maps to itself), not every contract name: a site's own column named as one the config maps from another
        # header is not read, so a long number in it is no matter
        lf = _renamed(xlsx.read_sheet(f.path, f.sheet, LINE, f.header_row, frozenset(rename)).lazy(), rename)
    else:
        lf = _renamed(textfile.scan(source or Source(f.path), LINE), rename)
    lf = lf.with_columns(pl.col(LINE).cast(pl.Int64))
    schema = dict(lf.collect_schema())
    _refuse_nested_columns(f, schema)
    return lf, schema


def _renamed(lf: pl.LazyFrame, rename: dict[str, str]) -> pl.LazyFrame:
    """The file's columns under the contract's names; a column of the site's own with the name of a contract column
    the config maps from another header keeps its place under a name of its own (``headers.with_set_aside``)."""
    return lf.rename(headers.with_set_aside(rename, lf.collect_schema().names()), strict=False)


def _refuse_nested_columns(f: InputFile, schema: dict) -> None:
    """A contract column of a Parquet file holding structs, lists or arrays stops the run naming it: a struct was
    read as its text (a department `{"Neurology",1}`), a list stopped the run with no column named."""
    contract = CONTRACT_BY_NAME.get(f.table)
    nested = [(c, t) for c, t in schema.items() if contract is not None and c in contract.columns and t.is_nested()]
    if nested:
        column, dtype = nested[0]
        raise InputFileError(
            f.label,
            f"holds {dtype.base_type()} values (nested) where the contract reads one value",
            "Re-export the extract with one plain value (text, a number or a time) per cell",
            column=column,
        )


# the csv module's error for a field longer than it takes: no value of the contract is (LONGEST_TEXT)
FIELD_LIMIT = "field larger than field limit"


def _diagnose_csv_failure(f: InputFile, source: Source) -> tuple[int | None, str]:
    """Find the first line Polars could not read, for the error message (error path only). Streamed: the file was
    read, decoded and split whole, three copies of it (a 1.6 GB file: 12.8 GB of memory, then a MemoryError
    traceback)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with source.path.open("rb") as fh:
        while chunk := fh.read(textfile.CHUNK):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                return line + exc.object.count(b"\n", 0, exc.start), f"byte 0x{exc.object[exc.start]:02x} is not UTF-8"
            line += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return line, "the file ends inside a character that is not whole UTF-8"
    above = source.header_line - 1  # title lines: not CSV, not read
    kwargs = {"delimiter": source.separator} | (
        {"quotechar": source.quote_char} if source.quote_char else {"quoting": csv.QUOTE_NONE}
    )
    width, long_field = None, None
    with source.path.open(encoding="utf-8-sig", newline=None) as fh:
        rows = (text.rstrip("\n") for n, text in enumerate(fh) if n >= above)
        reader = csv.reader(rows, **kwargs)
        try:
            for n, row in enumerate(reader, start=source.header_line):
                if width is None:
                    width = len(row)
                elif len(row) > width:
                    return n, f"{len(row)} fields where the header has {width}"
        except csv.Error as exc:
            # a field past the csv module's limit (131,072 characters): a quote never closed that runs on (its line is
            # found below), or a field that long, which no value of the contract is
            if FIELD_LIMIT not in str(exc):
                return None, f"the CSV could not be parsed ({exc})"
            long_field = above + reader.line_num
    unclosed = _unclosed_quote_line(source.path, kwargs, above)
    if unclosed is not None:
        return above + unclosed, "a quoted field opens on this line and is never closed"
    if long_field is not None:
        limit = csv.field_size_limit()
        return long_field, f"a field longer than {limit:,} characters, longer than any value of the contract"
    return None, "the CSV could not be parsed"


def _unclosed_quote_line(path: Path, kwargs: dict, above: int) -> int | None:
    """The line (below the title lines) where a record starts whose quote runs to the end of the file (error path
    only, streamed)."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        for _ in range(above):
            fh.readline()
        reader = csv.reader(fh, strict=True, **kwargs)
        last_end = 0
        try:
            for _ in reader:
                last_end = reader.line_num
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                return last_end + 1
            if FIELD_LIMIT in str(exc) and _opens_a_quote(path, above + last_end + 1, kwargs.get("quotechar")):
                return last_end + 1
    return None


def _opens_a_quote(path: Path, line: int, quote: str | None) -> bool:
    """Whether the file's ``line`` holds the quote character (a field past the limit without one is long, not
    unclosed). Reads up to that line and that line's first MB."""
    if not quote:
        return False
    with path.open(encoding="utf-8-sig", newline="") as fh:
        for _ in range(line - 1):
            fh.readline()
        return quote in fh.readline(1 << 20)


def _check_unnamed_columns(f: InputFile, cfg: Config, typed_path: Path, schema: dict) -> None:
    """A column without a name in the header whose rows hold values stops the run: no contract column can be
    read from it, so its values (the status, say, of a header that lost its last name) were dropped silently."""
    header, _ = headers.read_header(f, cfg.format_of(f.table))
    names = [c for c in schema if c != LINE]
    unnamed = [(i, names[i - 1]) for i, h in enumerate(header, start=1) if not str(h).strip() and i <= len(names)]
    typed = set(pl.scan_parquet(typed_path, glob=False).collect_schema()) if unnamed else set()
    for position, name in ((i, name) for i, name in unnamed if name in typed):
        first = (
            pl.scan_parquet(typed_path, glob=False).filter(pl.col(name).is_not_null()).select(pl.col(LINE).min()).collect().item()
        )
        if first is not None:
            raise InputFileError(
                f.label,
                f"column {position} has no name in the header, yet line {first} holds a value in it",
                "Name the column in the header (or drop it from the extract), so its values are read",
                line=headers.header_line(f),
            )


def _truncated_last_line(f: InputFile, source: Source, n_columns: int) -> int | None:
    """The line number of a last row cut off mid-row (file ends without a newline, too few fields)."""
    if f.fmt != "csv":
        return None
    with source.path.open("rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - 65536))
        tail = fh.read()
    if tail.endswith(b"\n"):
        return None
    last = tail.rsplit(b"\n", 1)[-1].decode("utf-8", "replace")
    fields = textfile.split_fields(last, source.separator, source.quote_char)
    if len(fields) >= n_columns:
        return None
    return textfile.count_line_breaks(source.path) + 1


def _write_typed(
    f: InputFile,
    contract: TableContract,
    cfg: Config,
    out: Path,
    source: Source | None = None,
    rows: pl.LazyFrame | None = None,
    known_codes: Collection[str] = (),
) -> dict:
    """Type every row and write it, with its problem columns, to one scratch Parquet file.

    One streaming Polars query from the extract to Parquet: the file is read in morsels on
    every core and never held whole (10M orders, 1.4 GB: about 17 CPU-s; benchmarks/profile_notes.md,
    "The parse stage at case-dense 10M", says where they go). Every
    expression in `typed_frame` must stay streamable, or Polars falls back to holding the
    whole file in memory (tests/test_load.py checks the plan). known_codes: as `typed_frame`.
    """
    rename = {} if rows is not None else headers.column_map(f, contract, cfg)  # a reader's rows: the contract's names
    source = source or Source(f.path)
    lf, schema = scan(f, rename, source, rows)
    try:
        # lz4: the file becomes the warehouse's copy of the rows (source_store); it halves the
        # file (10M orders: 468 -> 259 MB) at no measurable cost in the parse
        typed_frame(lf, schema, contract, cfg, known_codes).sink_parquet(out, compression="lz4")
    except pl.exceptions.PolarsError:
        raise unreadable(f, source) from None
    return schema


def unreadable(f: InputFile, source: Source) -> InputFileError:
    """The one line for a file Polars could not read (the parse, or inspect's look at it), by its kind."""
    if f.fmt == "parquet":
        return InputFileError(f.path, "Parquet file could not be read", "Re-export it")
    if f.fmt == "xlsx":
        return InputFileError(f.label, "sheet could not be read", "Save the workbook again, or export CSV")
    return unreadable_csv(f, source)


def unreadable_csv(f: InputFile, source: Source) -> InputFileError:
    """The one line for a CSV file the parse could not read: its first bad line, what is wrong there and what to do.
    A byte that is not UTF-8 is most often an extract in the site's Windows encoding: the setting that reads it is
    named (the line said only "re-export as UTF-8", which the site's export cannot do)."""
    line, what = _diagnose_csv_failure(f, source)
    fix = "Fix or re-export the extract as UTF-8 CSV"
    if what.endswith("is not UTF-8"):
        fix += f', or name its encoding under [formats.{f.table}] in the config (encoding = "cp1252"; order-audit inspect '
        fix += "tells which)"
    return InputFileError(f.path, f"cannot be read as CSV: {what}", fix, line=line)


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
    source_label: str = ""  # the file as rejects and the ledger name it (a workbook: with its sheet)
    unknown_values: list[UnknownValues] = field(default_factory=list)  # coded values no map knows
    # a table read from several files (a FHIR export): each file's range of source_line keys
    segments: list[Segment] = field(default_factory=list)
    # records the reader left out on purpose, counted (FHIR: not-done, entered-in-error ...)
    left_out: list[dict] = field(default_factory=list)
    # a FHIR export's manifest.json as checked (fhir.manifest: Manifest.facts); what it warns of is logged
    export_manifest: dict | None = None
    # a FHIR export's table: its own type's resources rejected and judged (rejected or kept; left-out ones apart)
    # and the first rejects where a person finds them (fhir.tables.own_rejected), the share <table>.rows.readable
    # judges (a table's rejects also name supporting lines: an order's Encounter)
    export_rejected: dict | None = None

    def __post_init__(self):
        self.source_label = self.source_label or str(self.path)

    def good_rows_sql(self, extra_excluded: str | None = None) -> str:
        """The rows that passed, as a query over the typed Parquet (no second copy of the data)."""
        cols = ", ".join([ident(c) for c in self.columns] + [f"CAST(NULL AS {t}) AS {ident(c)}" for c, t in self.absent.items()])
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
    ids = pl.read_parquet(typed_parquet, columns=[id_column], glob=False)[id_column].drop_nulls()
    if ids.len() < 2:
        return True
    return bool((ids.slice(1) > ids.slice(0, ids.len() - 1)).all())


def _rows_of(path: Path) -> int:
    return pl.scan_parquet(path, glob=False).select(pl.len()).collect().item()


def _physical_lines(f: InputFile, source: Source, typed_path: Path, schema: dict, fingerprint, scratch: Path) -> None:
    """Make the typed file's line numbers physical lines when quoted fields hold line breaks."""
    if f.fmt != "csv":
        return
    breaks = source.line_breaks
    if breaks is None:
        fp = fingerprint() if fingerprint is not None else None
        breaks = fp.line_breaks if fp is not None else textfile.count_line_breaks(source.path)
    header_breaks = sum(str(c).count("\n") for c in schema)
    # the title lines above the header (header_row) each end in a break too. A header whose name holds a break
    # (a wrapped title cell) moves every record down by it: the rows are renumbered even when no record holds one
    # (they were a line early)
    records = _rows_of(typed_path)
    if not header_breaks and physical_lines.records_match_lines(breaks - (source.header_line - 1), records):
        return
    physical_lines.rewrite(typed_path, source, header_breaks, scratch)


def prepare_table(
    f: InputFile,
    contract: TableContract,
    cfg: Config,
    scratch: Path,
    sha256: str,
    fingerprint=None,
    read_rejects: Path | None = None,
    segments: list[Segment] | None = None,
    rows: pl.LazyFrame | None = None,
    typed_writer=None,
    known_codes: Collection[str] = (),
) -> PreparedTable:
    """Parse one file into typed Parquet; list the rows that fail row-level checks and later duplicates.

    fingerprint: a callable returning the file's Fingerprint (hash and line breaks), or None.
    read_rejects: Parquet of rejects the reader made before the rows reached here (a FHIR
    export: lines that are not JSON ...), same columns as the loader's; their lines count as read.
    segments: the files behind the keys when the table was read from several.
    rows: the table's rows as a reader already holds them (a FHIR export), instead of reading f.
    typed_writer: what writes the typed file instead of the Polars parse (``spark_read.typed_writer``).
    known_codes: the code map's codes, which code_with_description reads as codes without a digit (`typed_frame`)."""
    typed_path = scratch / f"{contract.name}.typed.parquet"
    source = open_source(f, cfg, scratch) if f.fmt == "csv" else Source(f.path)
    schema = (typed_writer or _write_typed)(f, contract, cfg, typed_path, source, rows, known_codes=known_codes)
    _physical_lines(f, source, typed_path, schema, fingerprint, scratch)
    if rows is None and f.fmt in ("csv", "xlsx", "parquet"):  # a file with a header (not a FHIR export)
        _check_unnamed_columns(f, cfg, typed_path, schema)
    truncated = _truncated_last_line(f, source, len(schema) - 1)
    excluded_path = scratch / f"{contract.name}.excluded.parquet"
    rejects_path = scratch / f"{contract.name}.rejects.parquet"
    con = duckdb.connect()  # scratch engine: DuckDB does the set operations out of core
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"SET memory_limit = {literal(memory_limit())}")
        con.execute(f"SET temp_directory = {literal(scratch / 'duckdb_tmp')}")
        src = f"read_parquet({literal(typed_path)})"
        if rows is None:  # a file with a header (a FHIR reader reads past blank lines itself)
            _drop_blank_rows(con, typed_path, contract, f.label)
        rewrite_typed(con, typed_path, scratch, utc_midnight.as_dates(con, typed_path, contract, cfg.site_timezone, f.label))
        set_aside = set_aside_impossible(con, typed_path, contract, scratch)
        withheld = withhold_patient_ids(con, typed_path, contract, scratch)
        typed_cols = [row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()]
        problems = []
        for err in (c for c in typed_cols if c.startswith(ERR) and c != LONG_TEXT):
            column = err[len(ERR) :].removesuffix("_missing")
            value = ident(f"_raw_{column}") if f"_raw_{column}" in typed_cols else "CAST(NULL AS VARCHAR)"
            action = "row_rejected" if (column in contract.not_null or column in contract.instants) else "value_nulled"
            problems.append(
                f"SELECT {LINE} AS source_line, '{column}' AS column_name, {value} AS value, "
                f"{ident(err)} AS reason, '{action}' AS action FROM {src} WHERE {ident(err)} IS NOT NULL"
            )
        con.execute("CREATE TABLE rejects AS " + " UNION ALL ".join(problems)) if problems else con.execute(
            "CREATE TABLE rejects (source_line BIGINT, column_name VARCHAR, value VARCHAR, reason VARCHAR, action VARCHAR)"
        )
        if set_aside:
            con.execute("INSERT INTO rejects SELECT * FROM set_aside")
        if withheld:  # the value not shown: it holds the patient id
            con.execute(
                "INSERT INTO rejects SELECT source_line, column_name, NULL, ?, 'value_nulled' FROM withheld", [WITHHELD_REASON]
            )
        if rows is None and f.fmt in ("csv", "xlsx"):  # a file with a header row, which a pasted export repeats
            _name_repeated_headers(con, src, f, contract, cfg, typed_cols)
        if f.fmt == "csv" and rows is None:  # a row missing fields: its values may sit in the wrong columns
            short_rows.set_aside(con, typed_path, source, [c for c in schema if c != LINE], truncated)
        read_rejected = 0
        if read_rejects is not None:
            con.execute(f"INSERT INTO rejects SELECT * FROM read_parquet({literal(read_rejects)})")
            read_rejected = con.execute(
                f"SELECT count(DISTINCT source_line) FROM read_parquet({literal(read_rejects)}) WHERE action = 'row_rejected'"
            ).fetchall()[0][0]
        if truncated is not None:
            con.execute(
                "INSERT INTO rejects VALUES (?, NULL, NULL, ?, 'row_rejected')",
                [truncated, CUT_OFF_REASON],
            )
        if contract.id_column and not _strictly_increasing(typed_path, contract.id_column):
            # later duplicates of an id are set aside; the first occurrence stays. Only ids that
            # occur twice are ranked (a hash aggregate, not a sort of every row).
            idc = ident(contract.id_column)
            first_seen = place(con, "ranked.first_line", segments or [])  # 'line 7' (or the file too, across files)
            # rejects.csv is published: a repeated patient id (the patients table's key) is not shown in it
            shown = "CAST(NULL AS VARCHAR)" if contract.id_column == "patient_id" else f"ranked.{idc}"
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
                SELECT ranked.{LINE}, ?, {shown}, 'duplicate {contract.id_column}{FIRST_SEEN}' || {first_seen.where},
                       'row_rejected'
                FROM ranked{first_seen.join} WHERE ranked.{LINE} > ranked.first_line""",
                [contract.id_column],
            )
        _hide_patient_ids(con, src, typed_cols)
        con.execute(
            f"COPY (SELECT DISTINCT source_line FROM rejects WHERE action = 'row_rejected' ORDER BY 1) "
            f"TO {literal(excluded_path)} (FORMAT parquet)"
        )
        con.execute(f"COPY (SELECT * FROM rejects ORDER BY source_line, column_name) TO {literal(rejects_path)} (FORMAT parquet)")
        data_cols = [c for c in typed_cols if not c.startswith(source_store.INTERNAL_PREFIXES)]
        ambiguous_cols = [c for c in typed_cols if c.startswith("_ambiguous_")]
        # a table without instants (patients) covers no months: a new file of it replaces the earlier one
        month_col = ident(_month_column(contract)) if contract.instants else "CAST(NULL AS TIMESTAMPTZ)"
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
                (SELECT count(*) FILTER (WHERE {" OR ".join(ident(c) for c in ambiguous_cols) or "false"}) FROM {src})""",
            [cfg.site_timezone, cfg.site_timezone],
        ).fetchall()[0]
        parse_checks.check_columns_parsed(con, src, f, contract, cfg, segments)
        unknown = value_maps.unknown_values(con, typed_path, contract.name, f.label, data_cols, skip=REPEATED_HEADER)
    finally:
        con.close()
    rows_read, first_month, last_month, ambiguous = stats
    rows_read += read_rejected  # lines the reader rejected never reached the typed file
    absent = {c: source_store.sql_type(contract, c) for c in contract.columns if c not in data_cols}
    if source.path != f.path:
        source.path.unlink(missing_ok=True)  # the UTF-8 copy has served
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
        source_label=f.label,
        unknown_values=unknown,
        segments=list(segments or []),
    )


def _drop_blank_rows(con: duckdb.DuckDBPyConnection, typed_path: Path, contract: TableContract, label: str) -> None:
    """Drop the rows whose every field is empty, and log how many: a blank line (an export's last line, a line break
    a person added), a line of delimiters alone or a spreadsheet's empty row holds no record. Rejected, it was
    counted as a bad row with three 'required value missing' rejects. Its line numbers stay the file's (the rows
    keep theirs). The common case (none) reads only the file's footer: a blank row has no value in a required
    column, and the typed file's statistics count its nulls."""
    required = contract.required_columns[0]
    nulls = con.execute(
        "SELECT coalesce(sum(stats_null_count), 0) FROM parquet_metadata(?) WHERE path_in_schema = ?",
        [str(typed_path), required],
    ).fetchall()[0][0]
    if not nulls:
        return
    src = f"read_parquet({literal(typed_path)})"
    columns = [c for (c,) in con.execute(f"SELECT column_name FROM (DESCRIBE SELECT * FROM {src})").fetchall()]
    # an instant's `_is_date` flag is the parse's, not the row's: false on a blank cell of a typed (xlsx, Parquet)
    # column or one of spaces, it kept such a row as a record
    flags = {f"{c}_is_date" for c in contract.instants}
    fields = [c for c in columns if c != LINE and c not in flags and not c.startswith(source_store.INTERNAL_PREFIXES)]
    blank = " AND ".join(f"{ident(c)} IS NULL" for c in fields)
    lines = [line for (line,) in con.execute(f"SELECT {LINE} FROM {src} WHERE {blank} ORDER BY 1").fetchall()]
    if lines:
        kept = typed_path.with_name(typed_path.stem + ".unblanked.parquet")
        con.execute(f"COPY (SELECT * FROM {src} WHERE NOT ({blank})) TO {literal(kept)} (FORMAT parquet, COMPRESSION lz4)")
        kept.replace(typed_path)
        shown = ", ".join(map(str, lines[:5])) + (", ..." if len(lines) > 5 else "")
        log.info("%s: %s skipped, no record on it (line %s)", label, counted(len(lines), "blank line"), shown)


def set_aside_impossible(con: duckdb.DuckDBPyConnection, typed_path: Path, contract: TableContract, scratch: Path) -> bool:
    """Values no row can hold, as rejects in table set_aside (True when there is one), each row set aside and the
    value nulled in the typed file (the warehouse's copy of the rows) before anything reads it:

    * a text longer than its column may hold (contract.LONGEST_TEXT): nulled with its reasons and delivered copy,
      so no reject, count or list of unknown words shows it and no later stage holds it. The parse flags the rows
      whose text has more bytes than the limit (LONG_TEXT, set by typed_frame and spark_typed alike: bytes are
      free to count, characters are not); only those rows are measured here, in characters;
    * an instant outside contract.INSTANT_YEARS, shown in the reject: no month, period or maturity is computed
      from it.

    The common case (none) costs one query: the flag and the instants' bounds in one scan."""
    src = f"read_parquet({literal(typed_path)})"
    types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {src})").fetchall())
    # each contract column's text: the column when it is text, else the delivered copy of a value that failed
    texts = {c: c if types[c] == "VARCHAR" else f"_raw_{c}" for c in contract.columns if c in types}
    texts = {c: text for c, text in texts.items() if types.get(text) == "VARCHAR"}
    over = {c: f"coalesce(length({ident(text)}) > {longest_text(c)}, false)" for c, text in texts.items()}
    first, last = INSTANT_YEARS
    lowest, highest = f"TIMESTAMPTZ '{first}-01-01 00:00:00+00'", f"TIMESTAMPTZ '{last + 1}-01-01 00:00:00+00'"
    tests = {c: f"coalesce({ident(c)} < {lowest} OR {ident(c)} >= {highest}, false)" for c in contract.instants if c in types}
    probe = [f"bool_or({LONG_TEXT})"] + [f"bool_or({t})" for t in tests.values()]
    long_rows, *hits = con.execute(f"SELECT {', '.join(probe)} FROM {src}").fetchall()[0]
    outside = {c: test for (c, test), hit in zip(tests.items(), hits, strict=True) if hit}
    selects = [
        f"SELECT {LINE} AS source_line, {literal(c)} AS column_name, CAST(NULL AS VARCHAR) AS value, "
        f"{literal(too_long_reason(c))} AS reason, 'row_rejected' AS action FROM {src} "
        f"WHERE {LONG_TEXT} AND {test}"
        for c, test in (over.items() if long_rows else ())
    ] + [
        f"SELECT {LINE} AS source_line, {literal(c)} AS column_name, CAST({ident(c)} AS VARCHAR) AS value, "
        f"{literal(out_of_range_reason())} AS reason, 'row_rejected' AS action FROM {src} WHERE {test}"
        for c, test in outside.items()
    ]
    if not selects:
        return False
    con.execute("CREATE OR REPLACE TEMP TABLE set_aside AS " + " UNION ALL ".join(selects))
    long_columns = "SELECT DISTINCT column_name FROM set_aside WHERE reason LIKE 'longer than %'"
    too_long = {c for (c,) in con.execute(long_columns).fetchall()}
    nulled = dict(outside)
    for c in too_long:  # the column, its reasons and its delivered copy, where the text is too long
        for name in (c, ERR + c, f"{ERR}{c}_missing", f"_raw_{c}"):
            if name in types and not (name == c and types[c] != "VARCHAR"):
                nulled[name] = over[c]
    _null_where(con, typed_path, scratch, nulled)
    return True


def withhold_patient_ids(con: duckdb.DuckDBPyConnection, typed_path: Path, contract: TableContract, scratch: Path) -> bool:
    """Null in the typed file (the warehouse's copy of the rows) every published text value that holds its row's own
    patient id (``held_patient_ids.withheld_values_sql``: a provider, department, site, name, indication text, needle
    type or position), listing them in temp table withheld (True when there is one) for their rejects, before anything
    reads them: the outputs name a patient only by a keyed pseudonym, and an MRN typed into an order's indication
    reached audited_orders.csv, the workbook and the report as a warning of the gate. The codes are not withheld (they
    drive the verdicts): the gate judges them. The common case (none) costs one scan of those columns, most rows ruled
    out by plain string tests; the gate stops the run when many rows hold it (a column mapped from the patient id)."""
    src = f"read_parquet({literal(typed_path)})"
    columns = [c for (c,) in con.execute(f"SELECT column_name FROM (DESCRIBE SELECT * FROM {src})").fetchall()]
    query = withheld_values_sql(src, contract.name, columns)
    if query is None:
        return False
    con.execute(f"CREATE OR REPLACE TEMP TABLE withheld AS {query}")
    found = [c for (c,) in con.execute("SELECT DISTINCT column_name FROM withheld ORDER BY 1").fetchall()]
    held = {c: f"{LINE} IN (SELECT source_line FROM withheld WHERE column_name = {literal(c)})" for c in found}
    _null_where(con, typed_path, scratch, held)
    return bool(found)


def _null_where(con: duckdb.DuckDBPyConnection, typed_path: Path, scratch: Path, nulled: dict[str, str]) -> None:
    """Rewrite the typed file with each column of `nulled` NULL where its condition holds (the error path only)."""
    rewrite_typed(
        con,
        typed_path,
        scratch,
        [f"CASE WHEN {test} THEN NULL ELSE {ident(name)} END AS {ident(name)}" for name, test in nulled.items()],
    )


def rewrite_typed(con: duckdb.DuckDBPyConnection, typed_path: Path, scratch: Path, replaced: list[str]) -> None:
    """Rewrite the typed file with columns replaced (``SELECT * REPLACE`` expressions: a value nulled, a time read as a
    date), compressed as the parse writes it; nothing to replace, nothing read or written."""
    if not replaced:
        return
    src = f"read_parquet({literal(typed_path)})"
    rewritten = scratch / f"{typed_path.stem}.rewritten.parquet"
    con.execute(
        f"COPY (SELECT * REPLACE ({', '.join(replaced)}) FROM {src}) TO {literal(rewritten)} (FORMAT parquet, COMPRESSION lz4)"
    )
    rewritten.replace(typed_path)


REPEATED_HEADER = "the line repeats the header row (a second export pasted below the first?): not a record"


def _name_repeated_headers(
    con: duckdb.DuckDBPyConnection, src: str, f: InputFile, contract: TableContract, cfg: Config, typed_cols: list[str]
) -> None:
    """A line whose id and first time (or date) read as the header's names is the header again (two exports
    appended, a report's page header): its reasons were an 'unparseable timestamp', and its status word 'status' was
    offered as a value to map (`"status" = "?"`, an adopting site's review). Its reasons become this one; the
    value maps skip it. Only a file with such a time problem is read here."""
    when = next((c for c in (*contract.instants, *contract.dates) if f"_raw_{c}" in typed_cols), None)
    key = contract.id_column or "patient_id"
    # a header line's time is a reject of its column: a file without one pays nothing more (no header read, no scan)
    if (
        when is None
        or key not in typed_cols
        or not con.execute("SELECT count(*) FROM (SELECT 1 FROM rejects WHERE column_name = ? LIMIT 1)", [when]).fetchone()[0]
    ):
        return
    header = {canonical: source for source, canonical in headers.column_map(f, contract, cfg).items()}
    if when not in header or key not in header:
        return
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _header_lines AS SELECT {LINE} AS source_line FROM {src}
        WHERE {LINE} IN (SELECT source_line FROM rejects WHERE column_name = ?)
          AND lower(trim({ident("_raw_" + when)})) = lower(?) AND lower(trim({ident(key)})) = lower(?)""",
        [when, header[when].strip(), header[key].strip()],
    )
    if not con.execute("SELECT count(*) FROM _header_lines").fetchone()[0]:
        return
    con.execute("DELETE FROM rejects WHERE source_line IN (SELECT source_line FROM _header_lines)")
    con.execute("INSERT INTO rejects SELECT source_line, NULL, NULL, ?, 'row_rejected' FROM _header_lines", [REPEATED_HEADER])


def _hide_patient_ids(con: duckdb.DuckDBPyConnection, src: str, typed_cols: list[str]) -> None:
    """No reject shows a value that is a patient id of the table: rejects.csv is published. A row whose fields
    moved (an unquoted delimiter in one field, another field missing: as many fields as the header, so
    short_rows cannot tell) put the id under ordered_at, and it was listed as the unparseable value. Only
    the error path pays: a file without a shown value is not read here."""
    if "patient_id" not in typed_cols or not con.execute("SELECT count(*) FROM rejects WHERE value IS NOT NULL").fetchall()[0][0]:
        return
    patient_ids = f"SELECT patient_id FROM {src} WHERE patient_id IS NOT NULL"
    shown = values_showing_a_patient_id("SELECT value FROM rejects", patient_ids)
    con.execute(f"UPDATE rejects SET value = NULL WHERE value IN ({shown})")


def say_unknown_values(prepared: dict[str, PreparedTable]) -> dict[str, PreparedTable]:
    """Log every table's coded values no map knows, none of them a patient id of any table of the delivery
    (``value_maps.without_patient_ids``, one pass over the typed files): an extract's and an export's alike (the
    export's reader had logged its own, unchecked)."""
    unknowns = [u for p in prepared.values() for u in p.unknown_values]
    unknowns = value_maps.without_patient_ids(unknowns, [p.typed_parquet for p in prepared.values()])
    for name, result in prepared.items():
        result.unknown_values = [u for u in unknowns if u.table == name]
    for unknown in unknowns:
        log.warning("%s", unknown.message())
    return prepared


def check_headers(inputs: dict[str, InputFile], cfg: Config) -> dict[str, set[str]]:
    """Every file's header, before anything is parsed (a bad last file stops the run early); returns
    the contract columns each file holds."""
    found = {}
    missing: list[tuple[InputFile, MissingColumnError]] = []
    for contract in CONTRACTS:
        if contract.name not in inputs:
            continue
        if inputs[contract.name].fmt == "fhir":  # an export: its files were checked when found; its columns are fixed
            from pipeline.ingest.fhir.mapping import columns_filled

            found[contract.name] = columns_filled(contract.name)
            continue
        try:
            found[contract.name] = set(headers.column_map(inputs[contract.name], contract, cfg).values())
        except MissingColumnError as exc:  # every file's missing columns in one line: one round of fixes, not one a file
            missing.append((inputs[contract.name], exc))
    if missing:
        raise _all_missing(missing)
    return found


def _all_missing(missing: list[tuple[InputFile, MissingColumnError]]) -> MissingColumnError:
    """The first file's missing columns, the other files' after them, each named as the run names it (its label:
    relative to --input, a subfolder's file with its folder, a workbook's with its sheet)."""
    (_, first), others = missing[0], missing[1:]
    if not others:
        return first
    also = "; ".join(f"{printable(f.label)}: {exc.problem}" for f, exc in others)
    return MissingColumnError(first.path, f"{first.problem}; also {also}", first.fix, line=first.line)


def _known_order_codes(inputs: dict[str, InputFile], cfg: Config, kept_map: pl.DataFrame | None) -> set[str]:
    """The codes the run's code map knows, when an orders file holds its codes with their descriptions: a site's
    code without a digit (LOC-DSM) is a code there too. The map is the one the run reads: the config's, the one
    beside the extracts (the folder of the orders' file), else the warehouse's (kept_map)."""
    orders = inputs.get("imaging_orders")
    if orders is None or not cfg.format_of("imaging_orders").code_with_description:
        return set()
    return reference.code_map_codes(cfg, orders.path.parent, kept_map)[0]


def prepare_inputs(
    inputs: dict[str, InputFile],
    cfg: Config,
    scratch: Path,
    hashes: dict[str, str] | None = None,
    typed_writer=None,
    shown: Callable[[str], str] = str,
    kept_map: pl.DataFrame | None = None,
) -> dict[str, PreparedTable]:
    """Parse every delivered file; without `hashes`, the files are fingerprinted while they parse.
    typed_writer: what types the files instead of the Polars parse (Spark: ``spark_read.typed_writer``).
    shown: how the run names a file of the input folder (find_inputs); an export's files are read one by one.
    kept_map: the site code map the warehouse keeps (an export without one picks its codings by it)."""
    if any(f.fmt == "fhir" for f in inputs.values()):
        from pipeline.ingest.fhir import prepare  # a Bulk Data export: its own reader, then prepare_table

        return say_unknown_values(prepare.prepare_inputs(inputs, cfg, scratch, hashes, shown, kept_map))
    check_headers(inputs, cfg)
    # the fingerprint also counts line breaks (physical line numbers); a workbook has several tables
    paths = {name: f.path for name, f in inputs.items()}
    pending = fingerprint_in_background(paths, with_hash=hashes is None)
    known = _known_order_codes(inputs, cfg, kept_map)
    prepared = {}
    for contract in CONTRACTS:
        if contract.name not in inputs:
            continue
        f = inputs[contract.name]
        future = pending[contract.name]
        sha = hashes[contract.name] if hashes else ""
        known_codes = known if contract.name == "imaging_orders" else ()  # the code map maps order codes alone
        result = prepare_table(f, contract, cfg, scratch, sha, future.result, typed_writer=typed_writer, known_codes=known_codes)
        if result.rows_read == 0 and not contract.may_be_empty:
            raise InputFileError(
                f.label, "has a header but no rows", "The extract looks incomplete; re-export it", line=headers.header_line(f)
            )
        log.info("parsed %s: %s read", contract.name, counted(result.rows_read, "row"))
        prepared[contract.name] = result
    say_unknown_values(prepared)
    for name, future in pending.items():
        _check_no_nul(inputs[name], cfg, future.result())
        if hashes is None:
            prepared[name].sha256 = future.result().sha256
    return prepared


def _check_no_nul(f: InputFile, cfg: Config, fp: Fingerprint) -> None:
    """A NUL byte anywhere in a UTF-8 text extract stops the run, as one in its first 64 KiB does (headers.py):
    past there it was loaded into the warehouse and printed raw into the reports."""
    if f.fmt == "csv" and fp.first_nul is not None and cfg.format_of(f.table).is_utf8:
        raise InputFileError(
            f.path,
            "holds a NUL byte, which no text has (a damaged or partly binary export)",
            "Re-export the extract as UTF-8 CSV",
            line=line_of(f.path, fp.first_nul),
        )


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
