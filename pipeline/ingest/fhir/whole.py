"""A whole NDJSON file through DuckDB's own reader (read_json): parsed on every core, no line handed over.

The reader parses straight into the struct the type's query names and keeps the file's order
(COPY writes the rows in the order read), so a row's line is its position in the Parquet part
plus one. That holds only when every line is one resource: the reader skips blank lines and
stops at the first line it cannot read (not JSON, not UTF-8, an element of another shape than
the query's, a repeated key). So a file is taken whole only when the reader read all of it and
wrote as many rows as the file has lines; otherwise it goes the lines' way (`lines`), which
numbers every line and names each broken one. A gzip file is read whole the same way: DuckDB
decompresses it as it reads, and its lines are counted in a second pass of zlib (a fraction of
the parse; the lines' way costs Python a batch of lines at a time).
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import zlib
from collections.abc import Callable
from pathlib import Path

import duckdb

from pipeline.ingest.fhir.export import is_gzip
from pipeline.ingest.files import CHUNK, count_lf, fingerprint
from pipeline.sqltext import literal

log = logging.getLogger(__name__)

# how an extract_<Type>.sql query reads its lines: the struct it parses each line into
PARSED = re.compile(r"SELECT key, try\(json_transform\(line, '(?P<structure>[^']*)'\)\) AS r\s+FROM lines")
FILE = "/*file*/"  # where read() puts the file's path
COMPRESSION = "/*compression*/"  # ... and 'gzip' or 'none' (by the file's first bytes, as the lines' way decides)
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
    return f"{query[: found.start()]}SELECT CAST(NULL AS BIGINT) AS key, r FROM {source}{query[found.end() :]}"


def read(
    con: duckdb.DuckDBPyConnection, query: str, path: Path, part: Path, line_breaks: Callable[[Path], int] | None = None
) -> tuple[int | None, bool]:
    """(rows written to `part`, one per line of the file, or None: the file must be read line by line; whether
    the reader stopped at a line). A file the reader stopped at may hold a repeated key past that line, which
    the lines' way must look for (`repeated_key`); one whose every line it read holds none.

    line_breaks: the file's LF bytes (the run's fingerprints count them while hashing); else counted here."""
    try:
        copy = f"COPY ({source(query, path)}) TO {literal(part)} ({PART})"
        rows = con.execute(copy).fetchall()[0][0]
    except duckdb.Error as exc:
        part.unlink(missing_ok=True)
        stopped(path, exc)
        return None, True
    if not took_every_line(path, rows, line_breaks):
        part.unlink(missing_ok=True)
        return None, False
    return rows, False


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


def repeated_key(line: str, structure: dict, resource_type: str) -> str | None:
    """The first element the query reads that the line's resource gives twice (`ServiceRequest.authoredOn`), or
    None. json_transform reads the first value and says nothing; DuckDB's reader stops at the line, so this is
    asked only on the lines' way, of a file the reader stopped at. A line that is not JSON: None (its reject
    is the query's)."""
    try:
        value = json.loads(line, object_pairs_hook=_Pairs)
    except (ValueError, RecursionError):
        return None
    return _repeated(value, structure, resource_type)


def _repeated(value, structure, path: str) -> str | None:
    if isinstance(structure, list) and type(value) is list:  # an array: each element as the structure's one
        return next((found for item in value if (found := _repeated(item, structure[0], path))), None)
    if not (isinstance(structure, dict) and isinstance(value, _Pairs)):
        return None
    seen = set()
    for key, _ in value:
        if key in structure:
            if key in seen:
                return f"{path}.{key}"
            seen.add(key)
    inner = (_repeated(item, structure[key], f"{path}.{key}") for key, item in value if key in structure)
    return next((found for found in inner if found), None)


def source(query: str, path: Path) -> str:
    """The query of `query_of` reading `path` (gzip or not, by the file's first bytes, as the lines' way decides)."""
    compressed = is_gzip(path)
    return query.replace(FILE, literal(path)).replace(COMPRESSION, literal("gzip" if compressed else "none"))


def stopped(path: Path, exc: duckdb.Error) -> None:
    """Log why a file goes the lines' way: not the reader's message, which quotes the line's values (a patient reference)."""
    log.info("%s: read line by line (DuckDB's reader stopped at a line: %s)", path, type(exc).__name__)


def took_every_line(path: Path, rows: int, line_breaks: Callable[[Path], int] | None = None) -> bool:
    """Whether the reader's `rows` are the file's lines, one each (logged when not: the lines' way numbers them).

    A gzip file's lines are those of its text, counted here (the fingerprint counts the compressed bytes)."""
    if is_gzip(path):
        lines = gzip_line_count(path)
    else:
        breaks = line_breaks(path) if line_breaks is not None else fingerprint(path, with_hash=False).line_breaks
        lines = line_count(path, breaks)
    if rows == 0 or rows != lines:  # blank lines (or none at all), a gzip cut short
        log.info("%s: read line by line (blank lines)", path)
        return False
    return True


def keyed(part: Path, first_key: int) -> str:
    """The rows of a part `read` wrote, keyed by their line: the row's position in the file plus the file's first key."""
    return (
        f"SELECT * EXCLUDE (file_row_number) REPLACE (file_row_number + {int(first_key)} AS key) "
        f"FROM read_parquet({literal(part)}, file_row_number = true)"
    )


def line_count(path: Path, line_breaks: int) -> int:
    """Lines in the file as `lines` numbers them: its LF bytes, and a last line without one."""
    with path.open("rb") as fh:
        if fh.seek(0, 2) == 0:
            return 0
        fh.seek(-1, 2)
        return line_breaks + (fh.read(1) != b"\n")


def gzip_line_count(path: Path) -> int | None:
    """Lines of a gzip file's text as `lines` numbers them; None when it cannot be decompressed to the end."""
    breaks, last = 0, b"\n"
    try:
        with gzip.open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(CHUNK), b""):
                breaks += count_lf(chunk)
                last = chunk[-1:]
    except (OSError, EOFError, zlib.error):  # cut short or corrupt: the lines' way names the file
        return None
    return breaks + (last != b"\n")
