"""Each resource type's NDJSON flattened by DuckDB's JSON functions: one row per line, in one pass.

`json_transform` parses a line into the struct a query names (sql/extract_<Type>.sql) and
the query picks codes by system, follows nothing yet (the joins are `tables`), and says
per row what is wrong (``problem``: not JSON, another type, a required element missing)
or why it is left out on purpose (``left_out``: not-done, entered-in-error, refuted ...).

A type's files are read whole by DuckDB's own NDJSON reader when it can (`whole`: every core,
no line text handed over, one reader for up to `whole.READER_FILES` files); the lines' path (`lines`) reads any
file, and is the one that names a broken line.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.ingest.fhir import whole
from pipeline.ingest.fhir.lines import SCHEMA, NumberedLines
from pipeline.ingest.fhir.settings import FhirSettings
from pipeline.ingest.segments import Segment
from pipeline.sqltext import literal

SQL_DIR = Path(__file__).resolve().parent / "sql"
# the lines of a chunk whose text tells why the query could not read them (macros.sql): few or none
TOLD_LINES = "SELECT key, fhir_line_problem(line).reason AS reason FROM lines WHERE fhir_line_problem(line) IS NOT NULL"


def sql(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


@dataclass
class Extracted:
    resource_type: str
    relation: str  # the SQL the type's view selects: its Parquet parts, keyed
    segments: list[Segment]
    keys: int  # keys used (the next type's files number on after them)
    records: int  # lines that hold something (blank lines are no record)
    whole_files: int  # files DuckDB's NDJSON reader read whole (the others line by line)


def set_variables(con: duckdb.DuckDBPyConnection, fhir: FhirSettings, local_systems: tuple[str, ...]) -> None:
    """The settings the queries read (`getvariable`), and the shared macros."""
    con.execute(sql("macros"))
    variables = {
        "fhir_order_systems": list(fhir.order_code_systems + local_systems),
        "fhir_procedure_systems": list(fhir.procedure_code_systems + local_systems),
        "fhir_diagnosis_systems": list(fhir.diagnosis_code_systems),
        "fhir_imaging_categories": list(fhir.imaging_categories),
        "fhir_department_extension": fhir.department_extension or None,
        "fhir_provider_system": fhir.provider_identifier_system or None,
    }
    flags = {  # department sources a query reads only when the settings name them
        "fhir_order_location": "location" in fhir.order_department,
        "fhir_procedure_location": "location" in fhir.procedure_department,
    }
    for name, value in variables.items():
        # a list variable needs its type even when empty
        cast = "::VARCHAR[]" if isinstance(value, list) else "::VARCHAR"
        con.execute(f"SET VARIABLE {name} = ?{cast}", [value])
    for name, value in flags.items():
        con.execute(f"SET VARIABLE {name} = ?::BOOLEAN", [value])


def extract(
    con: duckdb.DuckDBPyConnection,
    resource_type: str,
    paths: list[Path],
    labels: list[str],
    first_key: int,
    out: Path,
    read_whole: bool = True,
    lines_of: Callable[[Path], int | None] | None = None,
    query_name: str | None = None,
) -> Extracted:
    """The type's files through its query into Parquet files beside `out`: the files DuckDB's reader takes whole
    (read_whole) by one reader a `whole.READER_FILES` of them, each into one part, the others a chunk of lines at a
    time. lines_of: a file's lines, if known (the run's fingerprint pass); query_name: another query of sql/ than
    extract_<Type> (read the same way: it gives `problem` and `left_out` too).

    A type the export lacks gives one empty file: the joins read every type the same way."""
    query = sql(query_name or "extract_" + resource_type)
    structure = whole.structure_of(query)
    key, records, whole_files = first_key, 0, 0
    selects: list[str] = []
    segments: list[Segment] = []
    misread: list[tuple[int, str, str]] = []  # (key, element, why) of resources json_transform would misread
    told: list[pa.Table] = []  # (key, reason) of lines whose text tells why the query could not read them
    numbers = itertools.count()

    def part() -> Path:
        return out.with_name(f"{out.stem}.{next(numbers):05d}.parquet")

    # an empty file has no line: no row, no key, no reader (as the lines' way reads it)
    files = [(path, label) for path, label in zip(paths, labels, strict=True) if path.stat().st_size]
    whole_query = whole.query_of(con, query)
    if not read_whole:
        taken = [(file, None) for file in files]
    elif len(files) <= whole.OWN_READER:
        taken = [read for file in files for read in _whole(con, whole_query, [file], part, lines_of)]
    else:
        runs = (files[i : i + whole.READER_FILES] for i in range(0, len(files), whole.READER_FILES))
        taken = [read for run in runs for read in _whole(con, whole_query, run, part, lines_of)]
    for group, target in taken:
        if isinstance(target, Path):  # files read whole into one part: a row's key is its position in it
            selects.append(whole.keyed(target, key))
            for (_, label), rows in group:
                segments.append(Segment(label, key, key + rows - 1))
                key, records, whole_files = key + rows, records + rows, whole_files + 1
            continue
        (path, label), stopped = group, target is not False
        # a file the reader stopped at may give an element twice or in another shape on a later line, which
        # json_transform misreads silently (whole.misread)
        lines = NumberedLines([path], [label], key, structure if stopped else None, resource_type)
        for chunk in lines.chunks():
            selects.append(f"SELECT * FROM read_parquet({literal(_run(con, query, chunk, part(), told))})")
        segments += lines.segments
        misread += lines.misread
        key, records = lines.next_key, records + lines.records
    if not selects:  # no file, or only empty ones: an empty file of the query's columns
        empty = _run(con, query, pa.Table.from_batches([], SCHEMA), out.with_name(f"{out.stem}.empty.parquet"))
        selects.append(f"SELECT * FROM read_parquet({literal(empty)})")
    relation = "\nUNION ALL ".join(selects)
    if misread or any(t.num_rows for t in told):
        relation = _rejecting(con, relation, misread, told, out.with_name(f"{out.stem}.rejected.parquet"))
    return Extracted(resource_type, relation, segments, key - first_key, records, whole_files)


def _whole(
    con: duckdb.DuckDBPyConnection,
    query: str,
    files: list[tuple[Path, str]],
    part: Callable[[], Path],
    lines_of: Callable[[Path], int | None] | None,
) -> list[tuple]:
    """The files in order, as ([((path, label), rows) ...], part): a run read whole into one part by one reader; or as
    ((path, label), stopped): a file for the lines' way, stopped telling whether the reader stopped at one of its
    lines (True) or read it all into rows that are not its lines (False).

    One reader for all the files (the caller gives at most `whole.READER_FILES`): a reader per file cost a query and a
    part each, so an export cut into thousands of small files cost its file count. When the reader stops at a line,
    the list is halved until it is one file (bad input only: a few of the run's files read a few times more). A file
    whose rows are not its lines goes the lines' way, and the files between such files are read again, still one
    reader a run."""
    if not files:
        return []
    target = part()
    rows = whole.read(con, query, [path for path, _ in files], target)
    if rows is None:
        if len(files) == 1:
            return [(files[0], True)]
        half = len(files) // 2
        return _whole(con, query, files[:half], part, lines_of) + _whole(con, query, files[half:], part, lines_of)
    # every file asked (and logged), not only up to the first that fails
    took = [whole.took_every_line(path, n, lines_of) for (path, _), n in zip(files, rows, strict=True)]
    if all(took):
        return [(list(zip(files, rows, strict=True)), target)]
    target.unlink(missing_ok=True)
    taken: list[tuple] = []
    run: list[tuple[Path, str]] = []
    for file, ok in zip(files, took, strict=True):
        if ok:
            run.append(file)
            continue
        taken += _whole(con, query, run, part, lines_of) + [(file, False)]
        run = []
    return taken + _whole(con, query, run, part, lines_of)


def _rejecting(
    con: duckdb.DuckDBPyConnection, relation: str, misread: list[tuple[int, str, str]], told: list[pa.Table], path: Path
) -> str:
    """The relation with each resource json_transform would misread rejected, naming the element (whole.misread): an
    exporter that wrote two values for one element (two authoredOn), or one in another shape than R4's (an R5
    Encounter.class), is data the audit cannot trust, and json_transform read it silently. Its problem replaces any
    other, and it is no longer counted as left out. So is each line whose text tells why the query could not read
    it (told: tables of key, reason; fhir_line_problem), unless it is misread too."""
    keys = pa.array([k for k, _, _ in misread], pa.int64())
    told_rows = pa.concat_tables(told)  # a table a chunk of lines: the misread elements were found on those lines too
    told_rows = told_rows.filter(pc.invert(pc.is_in(told_rows["key"], keys)))
    rows = pa.table(
        {
            "key": pa.concat_arrays([keys, told_rows["key"].combine_chunks().cast(pa.int64())]),
            "element": pa.array([e for _, e, _ in misread] + [None] * told_rows.num_rows, pa.string()),
            "reason": pa.concat_arrays(
                [pa.array([why for _, _, why in misread], pa.string()), told_rows["reason"].combine_chunks().cast(pa.string())]
            ),
        }
    )
    con.register("fhir_rejected_lines", rows)
    try:
        con.execute(f"COPY fhir_rejected_lines TO {literal(path)} ({whole.PART})")
    finally:
        con.unregister("fhir_rejected_lines")
    problem = "CASE WHEN d.key IS NULL THEN p.problem ELSE fhir_problem(d.reason, d.element, NULL) END AS problem"
    return (
        f"SELECT p.* REPLACE ({problem}, CASE WHEN d.key IS NULL THEN p.left_out END AS left_out) "
        f"FROM ({relation}) p LEFT JOIN read_parquet({literal(path)}) d ON p.key = d.key"
    )


def _run(con: duckdb.DuckDBPyConnection, query: str, chunk: pa.Table, part: Path, told: list | None = None) -> Path:
    """The query over the chunk of lines into the part; told, when given, gets the (key, reason) of the lines whose text
    tells why the query could not read them (a few lines, or none: fhir_line_problem)."""
    con.register("lines", chunk)
    try:
        con.execute(f"COPY ({query}) TO {literal(part)} ({whole.PART})")
        if told is not None:
            told.append(con.sql(TOLD_LINES).to_arrow_table())
    finally:
        con.unregister("lines")
    return part
