"""The extracted resources joined into the contract's tables (sql/table_*.sql), with their rejects.

Each table is a DuckDB query over the extracted Parquet files (imaging_orders: over the
ServiceRequest files as they are parsed, `orders`), handed to the loader as a lazy Polars
frame (the loader types it as it streams: no second copy of the rows on disk), with text
columns named as the contract names them and keyed by ``source_line`` (the resource's line key).
What the FHIR reading rejects (a line's own problem, a Patient the export lacks, a looked-up
type's rejected lines) and what it leaves out on purpose (counted) are collected by light
queries of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from pipeline.ingest.fhir.extract import sql
from pipeline.ingest.fhir.settings import FhirSettings
from pipeline.ingest.segments import Segment, file_line
from pipeline.sqltext import literal

# each table's own resource type (its left-out counts and problems are about it)
SOURCE_TYPE = {"procedures": "Procedure", "imaging_orders": "ServiceRequest", "diagnoses": "Condition", "patients": "Patient"}
# tables whose resources' rejects another table's load carries (supporting_rejects.sql: Patient lines go
# with procedures, whose birth dates they gave first): their own load lists none again
REJECTED_ELSEWHERE = ("patients",)
# the types whose lines a table's rejects name: its own, and those supporting_rejects.sql gives its load
REJECTS_NAME = {
    "procedures": ("Procedure", "Patient"),
    "imaging_orders": ("ServiceRequest", "Encounter", "Location", "Practitioner"),
    "diagnoses": ("Condition",),
    "patients": ("Patient",),
}
# department source -> the expression over the joined row (lookups.sql names these columns)
DEPARTMENT_SQL = {
    # an Encounter of several locations: the one where the patient was at the row's time (macros.sql)
    "encounter.location": "coalesce(fhir_encounter_department(encounter_places, encounter_fallback, {at}),"
    " encounter_location_name, encounter_location_display)",
    "encounter.serviceType": "encounter_service_type",
    "location": "coalesce(own_location_name, location_display)",
    "extension": "coalesce(extension_text, extension_location_name, extension_location_display)",
}
# optional contract columns a table holds only when some row fills them: an audit reads an absent
# column as "the site does not say" (every diagnosis may start an episode), an empty one as "not this"
OPTIONAL_WHEN_FILLED = {"diagnoses": ("setting", "is_principal", "diagnosis_rank")}
REJECTS_COLUMNS = "source_line, column_name, value, reason, action"  # as the loader's rejects
# a birthDate that is no FHIR date, whole or partial (19700101, a dateTime): nulled by table_procedures.sql, noted
UNREAD_BIRTH_DATE = """SELECT s.key, 'patient_birth_date', p.birth_date, fhir_birth_date_note(p.birth_date), 'value_nulled'
    FROM fhir_procedure AS s JOIN fhir_patients AS p USING (patient_id)
    WHERE s.problem IS NULL AND s.left_out IS NULL AND fhir_birth_date_note(p.birth_date) IS NOT NULL"""

# the patients table's own note on the same (table_patients.sql nulls the value)
PATIENT_UNREAD_BIRTH_DATE = """SELECT key, 'birth_date', birth_date, fhir_birth_date_note(birth_date), 'value_nulled'
    FROM fhir_patient WHERE problem IS NULL AND fhir_birth_date_note(birth_date) IS NOT NULL"""


@dataclass
class MappedTable:
    table: str
    rows: pl.LazyFrame  # the rows the loader reads (a DuckDB query: the connection must stay open)
    rejects: Path  # source_line, column_name, value, reason, action: what the FHIR reading rejected
    left_out: list[dict]  # {"resource", "reason", "count"}: resources left out on purpose


def department_sql(sources: tuple[str, ...], at: str) -> str:
    """The first non-empty department of the sources, in order (fixed fragments, no user text); at: the row's time
    column (the pick among an Encounter's several locations)."""
    parts = [f"nullif(trim({DEPARTMENT_SQL[s].format(at=at)}), '')" for s in sources]
    return f"coalesce({', '.join(parts)}, NULL)"


def map_table(con: duckdb.DuckDBPyConnection, table: str, fhir: FhirSettings, scratch: Path) -> MappedTable:
    """One table's rows (lazy), its rejects (written) and its left-out counts (imaging_orders: `orders` streams it)."""
    rejects = write_rejects(con, table, scratch)
    left_out = left_out_counts(con, table)
    query = rows_query(table, fhir)
    if table in OPTIONAL_WHEN_FILLED:  # a column no resource fills is a column the extract lacks
        # joined once and kept (a Condition's rows, not ten million): counting the filled columns ran the joins twice
        kept = f"fhir_rows_{table}"
        con.execute(f"CREATE OR REPLACE TEMP TABLE {kept} AS {query}")
        cols = OPTIONAL_WHEN_FILLED[table]
        filled = con.execute(f"SELECT {', '.join(f'count({c})' for c in cols)} FROM {kept}").fetchall()[0]
        rows = con.table(kept)
        rows = rows.select(*[c for c in rows.columns if c not in cols or filled[cols.index(c)]])
    else:
        rows = con.sql(query)
    return MappedTable(table, rows.pl(lazy=True), rejects, left_out)


def rows_query(table: str, fhir: FhirSettings) -> str:
    """The table's query (sql/table_<table>.sql) with the site's department sources filled in."""
    query = sql(f"table_{table}")
    sources = {"imaging_orders": fhir.order_department, "procedures": fhir.procedure_department}.get(table)
    if sources is not None:
        at = {"imaging_orders": "ordered_at", "procedures": "performed_at"}[table]
        query = query.replace("/*department*/ NULL", department_sql(sources, at))
    return query


def write_rejects(con: duckdb.DuckDBPyConnection, table: str, scratch: Path) -> Path:
    """What the FHIR reading rejected of the table's rows, as the loader's rejects (Parquet, by line)."""
    extracted = f"fhir_{SOURCE_TYPE[table].lower()}"
    parts = [
        f"SELECT *, 'row_rejected' FROM fhir_own_rejects({literal(extracted)}, {literal(SOURCE_TYPE[table])})",
        f"""SELECT source_line, column_name, value, reason, 'row_rejected'
            FROM fhir_supporting_rejects WHERE table_name = {literal(table)}""",
    ]
    if table in REJECTED_ELSEWHERE:  # a line's own problem is listed once, by the other table
        parts = [PATIENT_UNREAD_BIRTH_DATE]
    if table == "procedures":
        parts.append(UNREAD_BIRTH_DATE)
    rejects = scratch / f"{table}.fhir_rejects.parquet"
    con.execute(
        f"COPY (SELECT * FROM ({' UNION ALL '.join(parts)}) AS r ({REJECTS_COLUMNS}) ORDER BY source_line) "
        f"TO {literal(rejects)} (FORMAT parquet)"
    )
    return rejects


def own_rejected(
    con: duckdb.DuckDBPyConnection, table: str, segments: list[Segment], records: int | None = None, sample: int = 5
) -> dict | None:
    """The table's own resources rejected (the ServiceRequests of imaging_orders, not the Encounter lines its
    rejects name too) and judged (rejected + kept, the left-out ones apart), with the first rejects' file, line and
    reason; None for a table whose lines another table rejects (REJECTED_ELSEWHERE: the Patients, with procedures)."""
    if table in REJECTED_ELSEWHERE:
        return None
    resource_type = SOURCE_TYPE[table]
    extracted = f"fhir_{resource_type.lower()}"
    own = f"fhir_own_rejects({literal(extracted)}, {literal(resource_type)})"
    # the orders' view holds only the rows the stream set aside (orders.aside_view): their judged are the resources
    # read (``records``) less those left out; the other types' views hold every resource
    judged_sql = (
        f"{int(records)} - (SELECT count(*) FROM {extracted} WHERE problem IS NULL AND left_out IS NOT NULL)"
        if records is not None
        else f"(SELECT count(*) FROM {extracted} WHERE problem IS NOT NULL OR left_out IS NULL)"
    )
    # the lines of looked-up types rejected with the table (an order's Encounter): in its rows_read and rows_rejected,
    # no row of the table (the first page's share of a table set aside leaves them out, sections.set_aside)
    supporting_sql = "SELECT count(DISTINCT source_line) FROM fhir_supporting_rejects WHERE table_name = ?"
    rejected, judged, supporting = con.execute(
        f"SELECT (SELECT count(DISTINCT source_line) FROM {own}), {judged_sql}, ({supporting_sql})", [table]
    ).fetchone()
    first = con.execute(
        f"SELECT source_line, min(coalesce(column_name || ': ', '') || reason) FROM {own} GROUP BY 1 ORDER BY 1 LIMIT {sample}"
    ).fetchall()
    # a key is the export's, across files: the file and line a person finds (a key had been given as 'line 11944'
    # of a 7,550-line file)
    places = {k: file_line(k, segments) for k, _ in first}
    where = {k: f"{at[0].rsplit('/', 1)[-1]} line {at[1]}" if at else f"line {k}" for k, at in places.items()}
    return {
        "rejected": int(rejected),
        "judged": int(judged),
        "supporting": int(supporting),
        "first": [f"{where[k]}: {why}" for k, why in first],
    }


def left_out_counts(con: duckdb.DuckDBPyConnection, table: str) -> list[dict]:
    """{"resource", "reason", "count"}: the table's resources left out on purpose, by reason."""
    resource_type = SOURCE_TYPE[table]
    counts = con.execute(
        f"SELECT left_out, count(*) FROM fhir_{resource_type.lower()} "
        "WHERE problem IS NULL AND left_out IS NOT NULL GROUP BY 1 ORDER BY 1"
    ).fetchall()
    return [{"resource": resource_type, "reason": reason, "count": n} for reason, n in counts]
