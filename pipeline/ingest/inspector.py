"""`order-audit inspect`: what the audit will and will not understand in a site's extract, before the first run.

Per table: the file (and sheet), its encoding and delimiter, each contract column matched
to a file column (by name, case, spelling, or a shipped EHR synonym), the timestamp and
date formats that read it (guessed on a sample, then counted over the whole file), the
distinct values of coded columns and how each would be read, the code systems of the
codes and the most frequent order codes no map knows. Nothing is written here; the
starter config is `starter_config.py`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from pipeline import ownership
from pipeline.config import Config
from pipeline.errors import InputFileError
from pipeline.ingest import code_cells, code_systems, detect, headers, inputs, load, textfile, timestamps, value_maps, xlsx
from pipeline.ingest.contract import CONTRACT_BY_NAME, CONTRACTS, TableContract
from pipeline.ingest.formats import TableFormat
from pipeline.ingest.source_store import ERR
from pipeline.ingest.typed_frame import partial_date
from pipeline.models import reference
from pipeline.resources import REFERENCE_DIR
from pipeline.wording import counted

normalise = detect.normalise

SYNONYMS = REFERENCE_DIR / "column_synonyms.csv"
SAMPLE_ROWS = 20_000  # rows read to guess the formats; the counts then cover the whole file
TOP_CODES = 20
TEMPLATE_CODES = 500
TITLE_ROWS = 10  # rows of a sheet looked at for a header below a title
# words in a file or sheet name that say which table it holds, when it is not named like the table
NAME_HINTS = {
    "diagnoses": ("diagnos", "dx"),
    "imaging_orders": ("order", "imaging", "radiology"),
    "procedures": ("proc",),
    "patients": ("patient", "person", "demograph"),
}
CODE_COLUMNS = {"procedures": "procedure_code", "imaging_orders": "order_code", "diagnoses": "diagnosis_code"}


@dataclass
class ColumnMatch:
    column: str
    required: bool
    source: str | None  # the file's column, or None
    how: str  # config | name | case | spelling | synonym | ambiguous | missing
    others: list[str] = field(default_factory=list)  # other file columns that fit equally (ambiguous)


@dataclass
class ColumnFormats:
    column: str
    kind: str  # timestamp | date
    guess: detect.FormatGuess
    values: int = 0  # non-empty values in the whole file
    unread: int = 0  # of them, not read by the formats
    unread_examples: list[str] = field(default_factory=list)


@dataclass
class TableReport:
    table: str
    file: inputs.InputFile | None
    found_by: str = ""  # how the file was found
    rows: int = 0
    encoding: detect.EncodingGuess | None = None
    delimiter: str | None = None
    delimiter_sure: bool = True
    fmt: TableFormat = field(default_factory=TableFormat)  # the formats that read it (detected, or the config's)
    columns: list[ColumnMatch] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)
    formats: list[ColumnFormats] = field(default_factory=list)
    values: dict[str, list[dict]] = field(default_factory=dict)  # coded column -> [{value, rows, reads_as, by}]
    code_systems: dict[str, int] = field(default_factory=dict)
    unknown_codes: list[dict] = field(default_factory=list)  # [{code, orders, system, name}]
    problems: list[str] = field(default_factory=list)
    # number column -> {"comma": values only a decimal comma reads (45,5), "point": values only a point reads (45.5)}
    decimal_marks: dict[str, dict[str, int]] = field(default_factory=dict)
    # the code column's cells that hold a code and its description: {"column", "cells", "of", "example", "no_code"}
    code_cells: dict | None = None


# ----------------------------------------------------------------------------- files


def _name_hint(name: str, table: str) -> bool:
    n = normalise(name)
    if table == "procedures" and "order" in n:  # ORDER_PROC is an orders table
        return False
    return any(h in n for h in NAME_HINTS[table])


def locate(input_dir: Path, cfg: Config, shown: Callable[[str], str] = str) -> dict[str, tuple[inputs.InputFile | None, str]]:
    """Each table's file as the loader finds it, else a file or sheet whose name says the table. shown: how
    the command names a file of the folder (``inputs.named_within``: relative to it, as a run does)."""
    inputs.check_folder(input_dir)
    found: dict[str, tuple[inputs.InputFile | None, str]] = {}
    claimed: set[tuple[Path, str | None]] = set()
    for contract in CONTRACTS:
        f = inputs.locate(input_dir, contract.name, cfg.format_of(contract.name))
        if f is not None:
            f = dataclasses.replace(f, display=shown(f.label))
            found[contract.name] = (f, "config" if cfg.format_of(contract.name).file else "name")
            claimed.add((f.path, f.sheet))
    files = sorted(p for p in input_dir.iterdir() if p.is_file() and inputs.kind_of(p) and not p.name.startswith("~$"))
    files = [p for p in files if p.name != reference.LOCAL_MAP_NAME and not p.name.startswith("ground_truth")]
    for contract in CONTRACTS:
        if contract.name in found:
            continue
        hits = []
        for path in files:
            if inputs.kind_of(path) == "xlsx":
                sheets = [s for s in xlsx.sheet_names(path) if _name_hint(s, contract.name)]
                hits += [inputs.InputFile(contract.name, path, "xlsx", s, shown(xlsx.label(path, s))) for s in sheets]
            elif _name_hint(path.stem, contract.name):
                hits.append(inputs.InputFile(contract.name, path, inputs.kind_of(path), display=shown(str(path))))
        hits = [h for h in hits if (h.path, h.sheet) not in claimed]
        if len(hits) == 1:
            found[contract.name] = (hits[0], "name hint")
            claimed.add((hits[0].path, hits[0].sheet))
        else:
            found[contract.name] = (None, "ambiguous: " + ", ".join(h.label for h in hits) if hits else "not found")
    return {c.name: found[c.name] for c in CONTRACTS}


# ----------------------------------------------------------------------------- columns


def synonyms(table: str) -> dict[str, set[str]]:
    """canonical column -> normalised EHR spellings (shipped table, rows for '*' apply to every table)."""
    frame = pl.read_csv(SYNONYMS, infer_schema=False, glob=False).filter(pl.col("table").is_in([table, "*"]))
    out: dict[str, set[str]] = {}
    for column, spelling in frame.select("column", "spelling").iter_rows():
        out.setdefault(column, set()).add(normalise(spelling))
    return out


def match_columns(contract: TableContract, header: list[str], configured: dict[str, str]) -> list[ColumnMatch]:
    """Each contract column's file column: the config's, else the same name, case, spelling or a synonym."""
    spellings = synonyms(contract.name)
    # each distinct header name keyed once by what a tier compares, in the header's order: compared name by name for
    # every contract column and tier, a file of one 6 MB line (half a million columns) kept inspect busy 88 CPU-s
    first_at: dict[str, int] = {}
    for i, h in enumerate(header):
        first_at.setdefault(h, i)
    by_case: dict[str, list[str]] = {}
    by_spelling: dict[str, list[str]] = {}
    for h in first_at:
        by_case.setdefault(h.strip().lower(), []).append(h)
        by_spelling.setdefault(normalise(h), []).append(h)
    used: set[str] = set()
    out = []
    for column in contract.columns:
        required = column in contract.required_columns
        synonym_hits = {h for spelling in spellings.get(column, set()) for h in by_spelling.get(spelling, [])}
        tiers = [
            ("config", [configured[column]] if configured.get(column) in first_at else []),
            ("name", [column] if column in first_at else []),
            ("case", by_case.get(column, [])),
            ("spelling", by_spelling.get(normalise(column), [])),
            ("synonym", sorted(synonym_hits, key=first_at.__getitem__)),
        ]
        match = ColumnMatch(column, required, None, "missing")
        for how, hits in tiers:
            hits = [h for h in hits if h not in used]
            if len(hits) == 1:
                match = ColumnMatch(column, required, hits[0], how)
                used.add(hits[0])
                break
            if len(hits) > 1:
                match = ColumnMatch(column, required, None, "ambiguous", hits)
                break
        out.append(match)
    return out


# ----------------------------------------------------------------------------- one table


def _text_format(f: inputs.InputFile, cfg: Config, report: TableReport, wanted: set[str]) -> TableFormat:
    """The configured format where the config says it, else what the file shows (its header's line too)."""
    configured = cfg.format_of(f.table)
    given = cfg.formats.get(f.table)
    enc = detect.guess_encoding(f.path)
    report.encoding = enc
    encoding = configured.encoding if given and given.encoding != TableFormat().encoding else enc.encoding
    probe = dataclasses.replace(configured, encoding=encoding)
    text = textfile.decode_head(f.path, textfile.read_head(f.path, 1 << 20), probe)
    lines = text.splitlines()[:200]
    header_row = configured.header_row
    if header_row is None:  # a report writer's title above the header: the loader would read it as the header
        contract = CONTRACT_BY_NAME[f.table]
        splits = [given.delimiter] if given and given.delimiter is not None else list(detect.DELIMITERS)
        rows = [[textfile.split_fields(line, d, probe.quote) for d in splits] for line in lines[:TITLE_ROWS]]
        above = _rows_above_header(contract, rows, cfg.columns.get(f.table, {}))
        header_row = above + 1 if above else None
    lines = lines[(header_row or 1) - 1 :]
    if given and given.delimiter is not None:
        delimiter, sure = given.delimiter, True
    else:
        delimiter, sure = detect.guess_delimiter(lines, wanted)
    report.delimiter, report.delimiter_sure = delimiter, sure
    return dataclasses.replace(configured, encoding=encoding, delimiter=delimiter, header_row=header_row)


def _rows_above_header(contract: TableContract, rows: list[list[list[str]]], configured: dict[str, str]) -> int:
    """How many of the first rows stand above the header: the header is the row that the most contract columns match
    (two at least; the first of equals), and the rows above it a title (a title may name a column or two: 'Orders by
    status, site'). rows: each row's fields, as each way of splitting it gives them (a text line: at each delimiter).
    """

    def matched(ways: list[list[str]]) -> int:
        return max((sum(m.source is not None for m in match_columns(contract, fields, configured)) for fields in ways), default=0)

    counts = [matched(ways) for ways in rows]
    if not counts or max(counts) < 2:
        return 0
    return counts.index(max(counts))


def _guess_formats(contract: TableContract, sample: pl.DataFrame) -> list[ColumnFormats]:
    out = []
    for col in contract.instants + contract.dates:
        if col in sample.columns:
            dates = col in contract.dates
            values = sample[col].cast(pl.String).drop_nulls()
            if col in dict(contract.partial_dates):  # a partial birth date (1980) is read as it is: no format to find
                read = partial_date(pl.col(col).str.strip_chars(), pl.lit(None, pl.Date))[0]
                values = values.to_frame().filter(~read)[col]
            guess = detect.guess_formats(values.to_list(), dates=dates)
            out.append(ColumnFormats(col, "date" if dates else "timestamp", guess))
    return out


def _table_formats(fmt: TableFormat, given: TableFormat | None, cols: list[ColumnFormats]) -> TableFormat:
    """The table's lists (a config names them per table): the config's, else every column's guesses in order."""
    found = {kind: [x for c in cols if c.kind == kind for x in c.guess.formats] for kind in ("timestamp", "date")}
    ts = given.timestamp_formats if given and given.timestamp_formats else tuple(dict.fromkeys(found["timestamp"]))
    ds = given.date_formats if given and given.date_formats else tuple(dict.fromkeys(found["date"]))
    return dataclasses.replace(fmt, timestamp_formats=ts, date_formats=ds)


def _format_counts(
    lf: pl.LazyFrame, schema: dict, cols: list[ColumnFormats], tz: str, partial: Collection[str] = ()
) -> pl.LazyFrame:
    """One row over the whole file: rows, and per column the values and those the formats do not read (a partial
    date in a ``partial`` column is read, as the loader reads it)."""
    lf = lf.with_columns(timestamps.text(c.column).alias(f"_raw_{c.column}") for c in cols)
    exprs = [pl.len().alias("_rows")]
    for c in cols:
        if c.kind == "timestamp":
            lf = timestamps.with_instant(lf, c.column, schema[c.column], tz, tuple(c.guess.formats))
            unread = pl.col(ERR + c.column).str.starts_with(timestamps.UNPARSEABLE_PREFIX).fill_null(False)
        else:
            parsed, problem = timestamps.date_expr(c.column, schema[c.column], tuple(c.guess.formats))
            if c.column in partial:
                problem = pl.when(~partial_date(timestamps.text(c.column), parsed)[0]).then(problem)
            lf = lf.with_columns(problem.alias(ERR + c.column))
            unread = pl.col(ERR + c.column).is_not_null()
        raw = pl.col(f"_raw_{c.column}")
        exprs += [
            raw.is_not_null().sum().alias(f"{c.column}__values"),
            unread.sum().alias(f"{c.column}__unread"),
            raw.filter(unread).head(3).implode().alias(f"{c.column}__examples"),
        ]
    return lf.select(exprs)


def inspect_table(contract: TableContract, f: inputs.InputFile, found_by: str, cfg: Config, code_map: set[str], scratch: Path):
    report = TableReport(contract.name, f, found_by)
    configured_cols = cfg.columns.get(contract.name, {})
    wanted = {normalise(c) for c in contract.columns} | {s for spell in synonyms(contract.name).values() for s in spell}
    given = cfg.formats.get(contract.name)
    fmt = _text_format(f, cfg, report, wanted) if f.fmt == "csv" else cfg.format_of(contract.name)
    report.fmt = fmt
    if fmt.header_row != f.header_row:  # a text file's title lines, found above: read as the loader will
        f = report.file = dataclasses.replace(f, header_row=fmt.header_row)
    header, _ = headers.read_header(f, fmt)
    report.columns = match_columns(contract, header, configured_cols)
    header_row = _header_below_title(contract, f, configured_cols)
    if header_row is not None:  # read from there, as the loader does once the config says header_row
        f = report.file = dataclasses.replace(f, header_row=header_row)
        fmt = report.fmt = dataclasses.replace(fmt, header_row=header_row)
        header, _ = headers.read_header(f, fmt)
        report.columns = match_columns(contract, header, configured_cols)
    rename = {m.source: m.column for m in report.columns if m.source}
    report.extra_columns = [h for h in header if h not in rename]
    dupes = sorted({h for h in header if h.strip() and header.count(h) > 1})  # empty names: the loader's check skips them
    if dupes:
        report.problems.append(f"column name(s) given twice: {', '.join(dupes)} (the loader stops on this)")
        return report
    probe_cfg = dataclasses.replace(cfg, formats={**cfg.formats, contract.name: fmt})
    source = load.open_source(f, probe_cfg, scratch) if f.fmt == "csv" else None
    lf, schema = load.scan(f, rename, source)
    try:
        _read_table(report, contract, lf, schema, fmt, given, cfg, code_map)
    except pl.exceptions.PolarsError:  # a line the parse would stop on too: its one line, as a problem
        raise load.unreadable(f, source or load.Source(f.path)) from None
    finally:
        if source is not None and source.path != f.path:
            source.path.unlink(missing_ok=True)
    return report


def _read_table(report: TableReport, contract: TableContract, lf: pl.LazyFrame, schema, fmt, given, cfg, code_map) -> None:
    """The formats, values and codes of one table's file, read whole."""
    sample = lf.head(SAMPLE_ROWS).collect()
    report.formats = _guess_formats(contract, sample)
    detect.settle_day_month([c.guess for c in report.formats])
    report.fmt = fmt = _table_formats(fmt, given, report.formats)
    for c in report.formats:  # counted with the table's whole list, as the loader will read it
        c.guess.formats = list(fmt.date_formats if c.kind == "date" else fmt.timestamp_formats)
        if given and (given.date_formats if c.kind == "date" else given.timestamp_formats):
            c.guess.ambiguous = []  # the config's list: a person chose day and month, nothing left to decide
    queries = [_format_counts(lf, schema, report.formats, cfg.site_timezone, dict(contract.partial_dates))]
    numbers = [c for c in contract.numbers if c in schema and schema[c] == pl.String]
    if numbers:  # a decimal comma ('45,5') or point: counted, no value shown
        marks = [
            pl.col(c).str.contains(pattern).sum().alias(f"{c}__{mark}")
            for c in numbers
            for mark, pattern in (("comma", code_cells.WITH_DECIMAL_COMMA), ("point", code_cells.WITH_DECIMAL_POINT))
        ]
        queries.append(lf.select(marks))
    vocab = [c for c in contract.allowed_values if c in schema]
    queries += [lf.group_by(c).agg(pl.len().alias("rows")).sort(["rows", c], descending=[True, False]) for c in vocab]
    code_col = CODE_COLUMNS.get(contract.name)  # (the patients table has no codes)
    name_col = "order_name" if contract.name == "imaging_orders" and "order_name" in schema else None
    if code_col in schema:
        code = pl.col(code_col).cast(pl.String).str.strip_chars().str.to_uppercase().alias("code")
        aggs = [pl.len().alias("rows")] + ([pl.col(name_col).drop_nulls().mode().first().alias("name")] if name_col else [])
        queries.append(lf.group_by(code).agg(aggs))
    totals, *rest = pl.collect_all(queries, engine="streaming")
    if numbers:
        marks, rest = rest[0], rest[1:]
        report.decimal_marks = {c: {m: int(marks[f"{c}__{m}"][0]) for m in ("comma", "point")} for c in numbers}
        _decimal_marks(report)
    report.rows = int(totals["_rows"][0])
    for c in report.formats:
        c.values = int(totals[f"{c.column}__values"][0])
        c.unread = int(totals[f"{c.column}__unread"][0])
        c.unread_examples = totals[f"{c.column}__examples"][0].to_list()
    for col in vocab:
        frame, rest = rest[0], rest[1:]
        readings = value_maps.effective_map(contract.name, col, cfg.values)
        rows = []
        if frame.height > value_maps.MAX_NAMED_VALUES:  # not a vocabulary: values not shown (they could be ids)
            report.problems.append(
                f"{col} holds {frame.height:,} different values: not a vocabulary; check the column mapping and the delimiter"
            )
            frame = frame.clear()
        for value, n in frame.iter_rows():
            if value is None or not value.strip():  # an empty cell (a workbook's '') is no value, not a word to map
                continue
            reads_as, by = readings.get(value.strip().lower(), (None, None))
            rows.append({"value": value, "rows": n, "reads_as": reads_as, "by": by})
        report.values[col] = rows
    if code_col in schema:
        _codes(report, rest[0], code_map)


def _header_below_title(contract: TableContract, f: inputs.InputFile, configured: dict[str, str]) -> int | None:
    """Excel's number of the header's row when a sheet's first row is no header and a row below it is (a title above
    the header, which the loader would read as the header), else None."""
    if f.fmt != "xlsx" or f.header_row is not None:
        return None
    first, rows = xlsx.first_rows(f.path, f.sheet, TITLE_ROWS)
    above = _rows_above_header(contract, [[row] for row in rows], configured)
    return first + above if above else None


def _decimal_marks(report: TableReport) -> None:
    """decimal_comma for the starter config when the number columns are written with a decimal comma and never with a
    point; a PROBLEM when a column mixes both (no setting reads both) or the config's setting leaves values unread."""
    commas = sum(m["comma"] for m in report.decimal_marks.values())
    points = sum(m["point"] for m in report.decimal_marks.values())
    if commas and not points:
        report.fmt = dataclasses.replace(report.fmt, decimal_comma=True)
        return
    if not (commas and points) and report.fmt.decimal_comma == bool(commas):
        return
    for c, m in report.decimal_marks.items():
        unread = m["point"] if report.fmt.decimal_comma else m["comma"]
        if not unread:
            continue
        marks = ("a decimal point (45.5)", "a decimal comma (45,5)")
        written, other = marks if report.fmt.decimal_comma else marks[::-1]
        setting = "true" if report.fmt.decimal_comma else "false"
        mixed = f" while others have {other}" if commas and points else ""
        report.problems.append(
            f"{c}: {counted(unread, 'value')} written with {written}{mixed}, which decimal_comma = {setting} does not read as "
            "a number (it is left empty, listed in rejects.csv): export every number one way"
        )


def _codes(report: TableReport, codes: pl.DataFrame, code_map: set[str]) -> None:
    codes = codes.filter(pl.col("code").is_not_null() & (pl.col("code") != ""))
    if "name" not in codes.columns:
        codes = codes.with_columns(pl.lit(None, pl.String).alias("name"))
    known = code_map if report.table == "imaging_orders" else ()  # the code map maps order codes (LOC-DSM: no digit)
    joined = codes.filter(code_cells.looks_joined(pl.col("code"), known))
    # most cells a code and its description ('72148 - MRI LUMBAR SPINE', 'CPT 72148'): the code is their first word
    if report.fmt.code_with_description or (joined.height and joined["rows"].sum() * 2 > codes["rows"].sum()):
        codes = _split_codes(report, codes, joined, known)
    forms = code_systems.PROCEDURE_FORMS if report.table == "procedures" else code_systems.FORMS
    codes = codes.with_columns(code_systems.system_expr(pl.col("code"), forms).alias("system"))
    report.code_systems = dict(codes.group_by("system").agg(pl.col("rows").sum()).sort("system").iter_rows())
    if report.table != "imaging_orders":
        return
    unknown = codes.filter(~pl.col("code").is_in(sorted(code_map))).sort(["rows", "code"], descending=[True, False])
    # the five-digit codes outside CPT's radiology section (maybe the site's own, which inspect names) are listed
    # past the most used: among 500 radiology codes with more orders, a local code of two orders was cut, unnamed
    low, high = code_systems.RADIOLOGY_CPT
    five_digits = (pl.col("system") == "CPT") & pl.col("code").str.contains(r"^\d+$")
    outside = unknown.filter(five_digits & ((pl.col("code") < low) | (pl.col("code") > high)))
    listed = pl.concat([unknown.head(TEMPLATE_CODES), outside.head(TEMPLATE_CODES)])
    listed = listed.unique("code", keep="first", maintain_order=True)
    report.unknown_codes = [
        {"code": c, "orders": n, "system": s, "name": name}
        for c, n, s, name in listed.select("code", "rows", "system", "name").iter_rows()
    ]


def _split_codes(report: TableReport, codes: pl.DataFrame, joined: pl.DataFrame, known: Collection[str]) -> pl.DataFrame:
    """The codes as code_with_description reads them (their descriptions as names), noted in the report; the cells
    whose first word is no code are counted (the loader sets their rows aside). known: the code map's codes, codes
    without a digit too."""
    report.fmt = dataclasses.replace(report.fmt, code_with_description=True)
    cell = pl.col("code")
    read = codes.with_columns(
        code_cells.leading_code(cell, known).alias("_code"), code_cells.description(cell, known).alias("_text")
    )
    no_code = read.filter(pl.col("_code").is_null())
    example = joined.sort(["rows", "code"], descending=[True, False])["code"][0] if joined.height else None
    report.code_cells = {
        "column": CODE_COLUMNS[report.table],
        "cells": int(joined["rows"].sum()),
        "of": int(codes["rows"].sum()),
        "example": example,
        "no_code": int(no_code["rows"].sum()),
    }
    if no_code.height:
        shown = no_code.sort(["rows", "code"], descending=[True, False])["code"][0]
        cells = int(no_code["rows"].sum())
        report.problems.append(
            f"{CODE_COLUMNS[report.table]}: {counted(cells, 'cell')} {'holds' if cells == 1 else 'hold'} no code before "
            f"the description (e.g. '{shown}': its first word holds no digit and no code map lists it); "
            "code_with_description = true sets their rows aside (rejects.csv): put the code in those cells, or a local "
            "code without a digit in local_code_map.csv"
        )
    return (
        read.filter(pl.col("_code").is_not_null())
        .group_by(pl.col("_code").alias("code"))
        .agg(pl.col("rows").sum(), pl.coalesce("name", "_text").drop_nulls().first().alias("name"))
    )


def export_codes(bulk, cfg: Config):
    """A FHIR export's order and procedure codes (``fhir.codes.ExportCodes``), the unknown order codes judged
    against the same code map as an extract's."""
    from pipeline.ingest.fhir import codes

    code_map, _ = reference.code_map_codes(cfg, bulk.folder)
    with ownership.held_temp_dir("order-audit-inspect-") as tmp:
        return codes.read(bulk, cfg, code_map, tmp)


def inspect(input_dir: Path, cfg: Config, shown: Callable[[str], str] = str) -> dict[str, TableReport | str]:
    """Every table of the folder inspected; a table whose file was not found maps to why. shown: as ``locate``."""
    code_map, _ = reference.code_map_codes(cfg, input_dir)
    out: dict[str, TableReport | str] = {}
    with ownership.held_temp_dir("order-audit-inspect-") as tmp:  # a killed command's is removed by the next
        for table, (f, how) in locate(input_dir, cfg, shown).items():
            if f is None:
                out[table] = how
                continue
            try:
                out[table] = inspect_table(CONTRACT_BY_NAME[table], f, how, cfg, code_map, tmp)
            except InputFileError as exc:
                exc.rename(shown)
                report = TableReport(table, f, how)
                report.problems.append(exc.message)
                out[table] = report
    return out
