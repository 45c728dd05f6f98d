"""Whole NDJSON files through DuckDB's own reader (read_json): parsed on every core, no line handed over.

The reader parses straight into the struct the type's query names and keeps the files' order
(COPY writes the rows in the order read), so a row's line is its position in the Parquet part
plus one. That holds only when every line is one resource: the reader skips blank lines and
stops at the first line it cannot read (not JSON, not UTF-8, an element of another shape than
the query's, a repeated key). So a file is taken whole only when the reader read all of it and
wrote as many rows as the file has lines; otherwise it goes the lines' way (`lines`), which
numbers every line and names each broken one. A gzip file is read whole the same way: DuckDB
decompresses it as it reads, and the run's fingerprint pass counts its text's lines (`files.fingerprint`:
the file is opened and read once for its hash, its lines and whether it is gzip).

Many files are read by one reader, given the list (`source`): a reader per file cost a query's
planning and a part each (a 300-patient export cut into 1,000 files a type took minutes), while one
reader's cost is the bytes. Each row carries its file's index in the list (`file_index`). A reader is
given at most READER_FILES files: its cost a file grows with the list, and a broken line is looked for
in its list alone.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

import duckdb

from pipeline.ingest.fhir.export import is_gzip
from pipeline.ingest.files import fingerprint
from pipeline.sqltext import literal

log = logging.getLogger(__name__)

# how an extract_<Type>.sql query reads its lines: the struct it parses each line into
PARSED = re.compile(r"SELECT key, try\(json_transform\(line, '(?P<structure>[^']*)'\)\) AS r\s+FROM lines")
FILE = "/*file*/"  # where `source` puts the list of files' paths
COMPRESSION = "/*compression*/"  # ... how DuckDB decompresses them (by their first bytes, as the lines' way decides)
KEY = "/*key*/"  # ... and each row's key: its file's index in the list
# up to this many files a type, each file has a reader of its own (the usual export: tens of files at 10M orders):
# one reader of few files reads each with one thread (1M orders: the parse 12.6 -> 13.0 CPU-s), and the order stream
# keeps the files' order only with a reader each (orders.py). More files, one reader: a reader each cost the files'
# count (the 300-patient export in 1,000 files a type: 323 s against 17 s in one)
OWN_READER = 16
# at most this many files a reader: a reader's cost a file grew with the files it was given (DuckDB 2.0: 0.65 ms a file
# at 500 files, 1.15 ms at 10,000), and a line it stops at is looked for by halving its list, which re-read the
# whole export once or more for each broken file. Readers of a bounded size keep both to the files' count
READER_FILES = 500
# how an extracted part is written: uncompressed, it costs less to write and to read back than with lz4 (1M
# orders: the Encounter extract 1.84-1.99 -> 1.73-1.87 CPU-s; the scratch parts are read a few times, then deleted)
PART = "FORMAT parquet, COMPRESSION uncompressed"


def query_of(con: duckdb.DuckDBPyConnection, query: str) -> str:
    """The extract query reading one whole file with read_json into the same struct (the key is added by `keyed`)."""
    found = _parsed(query)
    structure = literal(found["structure"])
    struct = con.execute(f"SELECT typeof(json_transform('{{}}', {structure}))").fetchall()[0][0]
    # records=false: each line is one value of the struct, so a line `null` is a NULL r, as json_transform makes it
    options = f"format='newline_delimited', records=false, compression={COMPRESSION}, columns={{'r': {literal(struct)}}}"
    source = f"read_json({FILE}, {options})"
    return f"{query[: found.start()]}SELECT {KEY} AS key, r FROM {source}{query[found.end() :]}"


def read(con: duckdb.DuckDBPyConnection, query: str, paths: list[Path], part: Path) -> list[int] | None:
    """Each file's rows written to `part` (one reader for them all, `source`), in the files' order; None when the
    reader stopped at a line of one of them (logged, for a single file: the lines' way reads it then) or gave
    the files out of order. Whether each file's rows are its lines is the caller's to ask (`took_every_line`)."""
    try:
        copy = f"COPY ({source(query, paths)}) TO {literal(part)} ({PART})"
        written = con.execute(copy).fetchall()[0][0]
    except duckdb.Error as exc:
        part.unlink(missing_ok=True)
        if len(paths) == 1:  # which of several files: `extract` halves the list until it knows
            stopped(paths[0], exc)
        return None
    rows = [written] if len(paths) == 1 else file_rows(con, part, len(paths))
    if rows is None:
        part.unlink(missing_ok=True)
    return rows


def file_rows(con: duckdb.DuckDBPyConnection, part: Path, files: int) -> list[int] | None:
    """Each file's rows in a part `read` wrote from several files (its key: the file's index), or None when they
    are not in the files' order, one file after another (DuckDB's reader keeps the list's order: checked)."""
    counts = [0] * files
    first = 0
    found = con.execute(
        "SELECT key, count(*), min(file_row_number), max(file_row_number) "
        f"FROM read_parquet({literal(part)}, file_row_number = true) GROUP BY key ORDER BY key"
    ).fetchall()
    for index, n, low, high in found:
        if low != first or high != first + n - 1:
            log.warning("%s: DuckDB's reader gave the files' rows out of order", part)
            return None
        counts[index], first = n, first + n
    return counts


def structure_of(query: str) -> dict:
    """The elements an extract query reads (its json_transform structure) as a dict: element -> type name,
    a dict of its elements, or a list of one such dict (an array)."""
    return json.loads(_parsed(query)["structure"])


def _parsed(query: str) -> re.Match:
    found = PARSED.search(query)
    if found is None:
        raise ValueError("an extract query must read its lines as: SELECT key, try(json_transform(line, '...')) AS r FROM lines")
    return found


class _Pairs(list):
    """A JSON object as its (key, value) pairs in order, repeats kept (json's object_pairs_hook)."""


TWICE = "element {element} given twice in one resource (two values for one element; fix the export)"
# json_transform reads an element of another shape than the query's struct as absent, or as the JSON text of a
# list where a value belongs: an R5 Encounter.class (a list) lost the setting, a reasonCode given as one object its
# indication, and the verdicts with them, without a word. DuckDB's reader refuses such a line, so the lines' way asks
SHAPES = {list: "a list", dict: "an object", str: "a single value"}
SHAPE_MARK = " where FHIR R4 has "  # in every such reject's reason: a type whose every line has one is no R4 (prepare.py)
MISSHAPEN = (
    "element {element} is {given}" + SHAPE_MARK + "{shape}: it cannot be read as R4 (an R5 or a damaged export); "
    "re-export it in R4's shape"
)


def misread(line: str, structure: dict, resource_type: str) -> tuple[str, str] | None:
    """(element, reason) of the first element the query reads that json_transform would misread without a word: given
    twice (`ServiceRequest.authoredOn`: json_transform reads the first value), or in another shape than the query's
    struct (a list where R4 has an object, an object where it has a list, either where it has a single value); None
    when there is none. DuckDB's reader stops at such a line, so this is asked only on the lines' way, of a file the
    reader stopped at. A line that is not JSON: None (its reject is the query's)."""
    try:
        value = json.loads(line, object_pairs_hook=_Pairs)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, _Pairs):  # not a resource: the query's reject says so
        return None
    try:
        return _misread(value, structure, resource_type)
    except RecursionError:  # nested past Python's limit inside an element the audit reads: no R4 shape is that deep
        return resource_type, MISSHAPEN.format(element=resource_type, given="nested without end", shape="a resource")


def _misread(value, structure, path: str) -> tuple[str, str] | None:
    """`misread` below the resource: value is an object (its pairs), structure the query's struct for it."""
    seen = set()
    for key, _ in value:
        if key not in structure:
            continue
        if key in seen:
            return f"{path}.{key}", TWICE.format(element=f"{path}.{key}")
        seen.add(key)
    for key, item in value:
        if key not in structure or item is None or structure[key] == "JSON":  # JSON: read as text, any shape
            continue
        element, want = f"{path}.{key}", structure[key]
        shape = list if isinstance(want, list) else dict if isinstance(want, dict) else str
        given = list if type(item) is list else dict if isinstance(item, _Pairs) else str
        if given is not shape:
            return element, MISSHAPEN.format(element=element, given=SHAPES[given], shape=SHAPES[shape])
        if shape is list:
            inner = want[0]
            for entry in item:
                if entry is None:
                    continue
                if isinstance(inner, dict) and not isinstance(entry, _Pairs):
                    given = f"a list of {'lists' if type(entry) is list else 'single values'}"
                    return element, MISSHAPEN.format(element=element, given=given, shape="a list of objects")
                found = _misread(entry, inner, element) if isinstance(inner, dict) else None
                if found:
                    return found
        elif shape is dict and (found := _misread(item, want, element)):
            return found
    return None


def source(query: str, paths: list[Path], first: int = 0) -> str:
    """The query of `query_of` reading every file of `paths` (none empty), each row keyed by its file's index in the
    list plus `first`: one reader for all of them, unless their compression asks for more (`_runs`)."""
    readers = [
        query.replace(FILE, "[" + ", ".join(literal(p) for p in run) + "]")
        .replace(COMPRESSION, literal(compression))
        .replace(KEY, f"CAST({first + offset} AS BIGINT)" if len(run) == 1 else f"CAST(file_index + {first + offset} AS BIGINT)")
        for offset, run, compression in _runs(paths)
    ]
    return union(readers)


def union(queries: list[str]) -> str:
    """The queries' rows one after another (each one a subquery: an extract query begins with WITH)."""
    return queries[0] if len(queries) == 1 else "\nUNION ALL ".join(f"SELECT * FROM ({q})" for q in queries)


def _runs(paths: list[Path]) -> list[tuple[int, list[Path], str]]:
    """(index of its first file, files, compression) of each reader `source` needs. DuckDB's 'auto_detect' decompresses
    a file by its name (.gz), the lines' way by its first bytes: files whose name says what their bytes are share one
    reader, however mixed; a file named otherwise (gzip bytes without .gz) gets a reader told which, shared with its
    neighbours of the same kind. An export's files are named as they are compressed: one reader."""
    runs: list[tuple[int, list[Path], str]] = []
    for i, path in enumerate(paths):
        compressed = is_gzip(path)
        compression = "auto_detect" if compressed == path.name.lower().endswith(".gz") else "gzip" if compressed else "none"
        if runs and runs[-1][2] == compression:
            runs[-1][1].append(path)
        else:
            runs.append((i, [path], compression))
    return runs


def stopped(path: Path, exc: duckdb.Error) -> None:
    """Log why a file goes the lines' way: not the reader's message, which quotes the line's values (a patient reference)."""
    log.info("%s: read line by line (DuckDB's reader stopped at a line: %s)", path, type(exc).__name__)


def took_every_line(path: Path, rows: int, lines_of: Callable[[Path], int | None] | None = None) -> bool:
    """Whether the reader's `rows` are the file's lines, one each (logged when not: the lines' way numbers them).

    lines_of: a file's lines from the run's fingerprint pass (`files.fingerprint`, a gzip file's text decompressed in
    that pass), else the file is read here."""
    lines = lines_of(path) if lines_of is not None else fingerprint(path, with_hash=False, gzip_text=True).lines
    if rows == 0 or rows != lines:  # blank lines (or none at all), a gzip cut short (no count)
        log.info("%s: read line by line (blank lines)", path)
        return False
    return True


def keyed(part: Path, first_key: int) -> str:
    """The rows of a part `read` wrote, keyed by their line: the row's position in the file plus the file's first key."""
    return (
        f"SELECT * EXCLUDE (file_row_number) REPLACE (file_row_number + {int(first_key)} AS key) "
        f"FROM read_parquet({literal(part)}, file_row_number = true)"
    )
