"""Each resource type's NDJSON flattened by DuckDB's JSON functions: one row per line, in one pass.

`json_transform` parses a line into the struct a query names (sql/extract_<Type>.sql) and
the query picks codes by system, follows nothing yet (the joins are `tables`), and says
per row what is wrong (``problem``: not JSON, another type, a required element missing)
or why it is left out on purpose (``left_out``: not-done, entered-in-error, refuted ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from pipeline.ingest.fhir.lines import SCHEMA, NumberedLines
from pipeline.ingest.fhir.settings import FhirSettings
from pipeline.ingest.segments import Segment
from pipeline.sqltext import literal

SQL_DIR = Path(__file__).resolve().parent / "sql"


def sql(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


@dataclass
class Extracted:
    resource_type: str
    parquet: list[Path]  # one file per chunk of lines (none: the export has no file of this type)
    segments: list[Segment]
    keys: int  # keys used (the next type's files number on after them)
    records: int  # lines that hold something (blank lines are no record)


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
    con: duckdb.DuckDBPyConnection, resource_type: str, paths: list[Path], labels: list[str], first_key: int, out: Path
) -> Extracted:
    """The type's files through its query, a chunk of lines at a time, into Parquet files beside `out`.

    A type the export lacks gives one empty file: the joins read every type the same way."""
    lines = NumberedLines(paths, labels, first_key)
    query = sql("extract_" + resource_type)
    parts: list[Path] = []
    for chunk in lines.chunks():
        parts.append(_run(con, query, chunk, out.with_name(f"{out.stem}.{len(parts):05d}.parquet")))
    if not parts:  # no file, or only empty ones: an empty file of the query's columns
        parts.append(_run(con, query, pa.Table.from_batches([], SCHEMA), out.with_name(f"{out.stem}.empty.parquet")))
    return Extracted(resource_type, parts, lines.segments, lines.next_key - first_key, lines.records)


def _run(con: duckdb.DuckDBPyConnection, query: str, chunk: pa.Table, part: Path) -> Path:
    con.register("lines", chunk)
    try:
        con.execute(f"COPY ({query}) TO {literal(part)} (FORMAT parquet, COMPRESSION lz4)")
    finally:
        con.unregister("lines")
    return part
