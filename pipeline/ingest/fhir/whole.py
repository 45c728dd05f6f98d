"""A whole NDJSON file through DuckDB's own reader (read_json): parsed on every core, no line handed over.

The reader parses straight into the struct the type's query names and keeps the file's order
(COPY writes the rows in the order read), so a row's line is its position in the Parquet part
plus one. That holds only when every line is one resource: the reader skips blank lines and
stops at the first line it cannot read (not JSON, not UTF-8, an element of another shape than
the query's, a repeated key). So a file is taken whole only when the reader read all of it and
wrote as many rows as the file has lines; otherwise it goes the lines' way (`lines`), which
numbers every line and names each broken one. Compressed files go that way too (counting
their lines would mean decompressing them twice).
"""

from __future__ import annotations

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
FILE = "/*file*/"  # where read() puts the file's path


def query_of(con: duckdb.DuckDBPyConnection, query: str) -> str:
    """The extract query reading one whole file with read_json into the same struct (the key is added by `keyed`)."""
    found = PARSED.search(query)
    if found is None:
        raise ValueError("an extract query must read its lines as: SELECT key, try(json_transform(line, '...')) AS r FROM lines")
    structure = literal(found["structure"])
    struct = con.execute(f"SELECT typeof(json_transform('{{}}', {structure}))").fetchall()[0][0]
    # records=false: each line is one value of the struct, so a line `null` is a NULL r, as json_transform makes it
    options = f"format='newline_delimited', records=false, compression='none', columns={{'r': {literal(struct)}}}"
    source = f"read_json({FILE}, {options})"
    return f"{query[: found.start()]}SELECT CAST(NULL AS BIGINT) AS key, r FROM {source}{query[found.end() :]}"


def read(
    con: duckdb.DuckDBPyConnection, query: str, path: Path, part: Path, line_breaks: Callable[[Path], int] | None = None
) -> int | None:
    """Rows written to `part` (one per line of the file), or None: the file must be read line by line.

    line_breaks: the file's LF bytes (the run's fingerprints count them while hashing); else counted here."""
    if is_gzip(path):
        return None
    try:
        copy = f"COPY ({query.replace(FILE, literal(path))}) TO {literal(part)} (FORMAT parquet, COMPRESSION lz4)"
        rows = con.execute(copy).fetchall()[0][0]
    except duckdb.Error as exc:
        part.unlink(missing_ok=True)
        # not the reader's message: it quotes the line's values (a patient reference among them)
        log.info("%s: read line by line (DuckDB's reader stopped at a line: %s)", path, type(exc).__name__)
        return None
    breaks = line_breaks(path) if line_breaks is not None else fingerprint(path, with_hash=False).line_breaks
    if rows == 0 or rows != line_count(path, breaks):  # blank lines (or none at all): the lines' way numbers them
        part.unlink(missing_ok=True)
        log.info("%s: read line by line (blank lines)", path)
        return None
    return rows


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
