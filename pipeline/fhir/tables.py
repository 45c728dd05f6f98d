"""The extracted resources joined into the contract's tables (sql/table_*.sql), with their rejects.

Each table comes out as one Parquet file of text columns named as the contract names them,
keyed by ``source_line`` (the resource's line key), plus ``_fhir_problem`` (why the row is
rejected) and ``_fhir_left_out`` (why it is left out on purpose). The loader reads the rows
with neither; the rejects and the left-out counts are collected here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from pipeline.fhir.extract import sql
from pipeline.fhir.settings import FhirSettings
from pipeline.sqltext import literal

PROBLEM, LEFT_OUT, PARTIAL_BIRTH_DATE = "_fhir_problem", "_fhir_left_out", "_fhir_partial_birth_date"
# each table's own resource type (its left-out counts and problems are about it)
SOURCE_TYPE = {"procedures": "Procedure", "imaging_orders": "ServiceRequest", "diagnoses": "Condition"}
# department source -> the expression over the joined row (sql/table_*.sql names these columns)
DEPARTMENT_SQL = {
    "encounter.location": "coalesce(encounter_location_name, encounter_location_display)",
    "encounter.serviceType": "encounter_service_type",
    "location": "coalesce(own_location_name, location_display)",
    "extension": "coalesce(extension_text, extension_location_name, extension_location_display)",
}
REJECTS_COLUMNS = "source_line BIGINT, column_name VARCHAR, value VARCHAR, reason VARCHAR, action VARCHAR"


@dataclass
class MappedTable:
    table: str
    parquet: Path  # every row of the table's resources, with _fhir_problem and _fhir_left_out
    rejects: Path  # source_line, column_name, value, reason, action: what the FHIR reading rejected
    rejected_lines: int  # distinct lines among those rejects
    left_out: list[dict]  # {"resource", "reason", "count"}: resources left out on purpose


def department_sql(sources: tuple[str, ...]) -> str:
    """The first non-empty department of the sources, in order (fixed fragments, no user text)."""
    parts = [f"nullif(trim({DEPARTMENT_SQL[s]}), '')" for s in sources]
    return f"coalesce({', '.join(parts)}, NULL)"


def map_table(con: duckdb.DuckDBPyConnection, table: str, fhir: FhirSettings, scratch: Path) -> MappedTable:
    """Join one table, write it, and collect its rejects (its own and the looked-up types' it carries)."""
    query = sql(f"table_{table}")
    sources = {"imaging_orders": fhir.order_department, "procedures": fhir.procedure_department}.get(table)
    if sources is not None:
        query = query.replace("/*department*/ NULL", department_sql(sources))
    out = scratch / f"{table}.fhir.parquet"
    con.execute(f"COPY ({query}) TO {literal(out)} (FORMAT parquet, COMPRESSION lz4)")
    mapped = f"read_parquet({literal(out)})"
    parts = [
        f"""SELECT source_line, {PROBLEM}.element, {PROBLEM}.value, {PROBLEM}.reason, 'row_rejected'
            FROM {mapped} WHERE {PROBLEM} IS NOT NULL""",
        f"""SELECT source_line, column_name, value, reason, 'row_rejected'
            FROM fhir_supporting_rejects WHERE table_name = {literal(table)}""",
    ]
    if table == "procedures":
        parts.append(
            f"""SELECT source_line, 'patient_birth_date', {PARTIAL_BIRTH_DATE},
                'Patient.birthDate is a partial date (year or year-month): no day to count the age from', 'value_nulled'
                FROM {mapped} WHERE {PARTIAL_BIRTH_DATE} IS NOT NULL AND {PROBLEM} IS NULL AND {LEFT_OUT} IS NULL"""
        )
    rejects = scratch / f"{table}.fhir_rejects.parquet"
    con.execute(f"CREATE OR REPLACE TEMP TABLE fhir_table_rejects ({REJECTS_COLUMNS})")
    con.execute("INSERT INTO fhir_table_rejects " + " UNION ALL ".join(parts))
    con.execute(f"COPY (SELECT * FROM fhir_table_rejects ORDER BY source_line) TO {literal(rejects)} (FORMAT parquet)")
    rejected = con.execute("SELECT count(DISTINCT source_line) FROM fhir_table_rejects WHERE action = 'row_rejected'").fetchall()[
        0
    ][0]
    counts = con.execute(
        f"SELECT {LEFT_OUT}, count(*) FROM {mapped} WHERE {LEFT_OUT} IS NOT NULL GROUP BY 1 ORDER BY 1"
    ).fetchall()
    left_out = [{"resource": SOURCE_TYPE[table], "reason": reason, "count": n} for reason, n in counts]
    return MappedTable(table, out, rejects, rejected, left_out)


def readable_rows(path: Path) -> pl.LazyFrame:
    """The rows the loader reads: neither rejected nor left out, without the FHIR reading's own columns."""
    return (
        pl.scan_parquet(path)
        .filter(pl.col(PROBLEM).is_null() & pl.col(LEFT_OUT).is_null())
        .drop(PROBLEM, LEFT_OUT, PARTIAL_BIRTH_DATE, strict=False)
    )
