"""Contract tables -> a FHIR R4 Bulk Data export (NDJSON): ``order-audit synth --format fhir``, the test deck.

The extract is first read by the audit's own loader (every instant the instant the audit
reads, every status the contract's word), then written by DuckDB as text, one resource a
line: Patient (its birth date the patients table's, else its procedures'),
Practitioner, Location (one per department), Encounter (one per patient, ordering department
and local day: the order's department is its encounter's location; and one per diagnosis row
with a setting or a position: its class is the setting, its diagnosis entry ranks the
Condition), ServiceRequest, Procedure, Condition. Files hold at most `lines_per_file`
resources each (``ServiceRequest.000.ndjson``, ``.001`` ...), as `$export` writes them.
Memory follows a file, not the extract: sql/rows_*.sql gives each resource's narrow row and
its order key n; only the keys are ranked whole, and each file's rows are sorted, then turned
into lines (sql/write_*.sql) as DuckDB writes them, so no line waits in memory for the others.
Read back by pipeline.ingest.fhir, the export gives the extract's verdicts.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import duckdb

from pipeline.config import Config
from pipeline.ingest import load
from pipeline.ingest.contract import CONTRACT_BY_NAME
from pipeline.ingest.source_store import sql_type
from pipeline.sqltext import ident, literal, typed_literal
from pipeline.warehouse import memory_limit

SQL_DIR = Path(__file__).resolve().parent / "sql"  # rows_<Type>.sql: contract rows -> resources; write_<Type>.sql: their lines


def sql(name: str) -> str:
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


# the site's own exam and procedure codes: a code system URI the local code map names
LOCAL_SYSTEM = "http://hospital.example.org/fhir/CodeSystem/local-exam-codes"
LINES_PER_FILE = 1_000_000
TYPES = ("Patient", "Practitioner", "Location", "Encounter", "ServiceRequest", "Procedure", "Condition")
# the typed columns each writer query reads (absent ones read as NULL)
COLUMNS = {
    "procedures": (
        "procedure_id patient_id performed_at performed_at_is_date _raw_performed_at procedure_code procedure_name "
        "department provider_id patient_birth_date patient_birth_earliest patient_birth_latest patient_age"
    ),
    "imaging_orders": (
        "order_id patient_id ordered_at ordered_at_is_date _raw_ordered_at order_code order_name ordering_department "
        "ordering_provider_id indication_codes indication_text status priority"
    ),
    "diagnoses": "patient_id diagnosis_code recorded_at recorded_at_is_date _raw_recorded_at setting is_principal diagnosis_rank",
    "patients": "patient_id birth_date birth_earliest birth_latest sex",
}
# FHIR ids: letters, digits, '-' and '.', at most 64 (the extract's ids become resource ids)
FHIR_ID = r"[A-Za-z0-9\-\.]{1,64}"


def _view(con: duckdb.DuckDBPyConnection, table: str, prep: load.PreparedTable | None) -> None:
    """w_<table>: every row the extract holds (rejected ones too), the columns the writers read."""
    contract = CONTRACT_BY_NAME[table]
    present = set()
    if prep is not None:
        rows = con.execute(f"DESCRIBE SELECT * FROM read_parquet({literal(prep.typed_parquet)})").fetchall()
        present = {r[0] for r in rows}
    cols = ["source_line", *COLUMNS[table].split()]
    select = []
    for c in cols:
        if c in present:
            select.append(ident(c))
        else:
            typ = (
                "BOOLEAN"
                if c.endswith("_is_date")
                else "BIGINT"
                if c == "source_line"
                else ("VARCHAR" if c.startswith("_raw_") else sql_type(contract, c))
            )
            select.append(f"CAST(NULL AS {typ}) AS {ident(c)}")
    source = f"read_parquet({literal(prep.typed_parquet)})" if prep is not None else "(SELECT 1) WHERE false"
    con.execute(f"CREATE OR REPLACE TEMP VIEW w_{table} AS SELECT {', '.join(select)} FROM {source}")


def _check_ids(con: duckdb.DuckDBPyConnection) -> None:
    checks = [
        ("procedures", "procedure_id"),
        ("procedures", "patient_id"),
        ("procedures", "provider_id"),
        ("imaging_orders", "order_id"),
        ("imaging_orders", "patient_id"),
        ("imaging_orders", "ordering_provider_id"),
        ("diagnoses", "patient_id"),
        ("patients", "patient_id"),
    ]
    for table, column in checks:
        bad = con.execute(
            f"SELECT {ident(column)} FROM w_{table} WHERE NOT regexp_full_match({ident(column)}, ?) LIMIT 1", [FHIR_ID]
        ).fetchall()
        if bad:
            raise ValueError(f"{table}.{column} {bad[0][0]!r} cannot be a FHIR id (letters, digits, '-', '.'; at most 64)")


def _write_type(con: duckdb.DuckDBPyConnection, resource_type: str, out_dir: Path, lines_per_file: int) -> list[tuple[str, int]]:
    """The type's files, each straight from the rows of its key range: the rows sorted, then their lines written;
    returns each file's name and resources."""
    con.execute(f"CREATE OR REPLACE TEMP VIEW w_rows AS {sql('rows_' + resource_type)}")
    # each file's key range, from the keys alone (no line is built here)
    parts = con.execute(
        """SELECT min(n), max(n), count(*) FROM (SELECT n, (row_number() OVER (ORDER BY n) - 1) // ? AS part FROM w_rows)
        GROUP BY part ORDER BY part""",
        [lines_per_file],
    ).fetchall()
    for part, (first, last, _) in enumerate(parts):
        # the narrow rows are sorted, not the lines: a file's lines are built in the order they are written
        con.execute(
            f"""CREATE OR REPLACE TEMP VIEW w_part AS
            SELECT * FROM w_rows WHERE n BETWEEN {typed_literal(first)} AND {typed_literal(last)} ORDER BY n"""
        )
        path = out_dir / f"{resource_type}.{part:03d}.ndjson"
        con.execute(
            f"""COPY ({sql("write_" + resource_type)}) TO {literal(path)}
            (FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\x01')"""
        )
    return [(f"{resource_type}.{part:03d}.ndjson", n) for part, (_, _, n) in enumerate(parts)]


def write_manifest(out_dir: Path, files: dict[str, list[tuple[str, int]]], transaction_time: str) -> Path:
    """manifest.json as a Bulk Data client saves the server's answer to a finished $export (SMART's
    bulk-data-client, saveManifest): each file's type, URL and count (the URLs of a host that does not exist)."""
    manifest = {
        "transactionTime": transaction_time,
        "request": f"https://synthetic.invalid/fhir/$export?_type={','.join(TYPES)}",
        "requiresAccessToken": False,
        "output": [
            {"type": resource_type, "url": f"https://synthetic.invalid/bulk/{name}", "count": count}
            for resource_type in TYPES
            for name, count in files[resource_type]
        ],
        "error": [],
    }
    path = out_dir / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return path


def local_map_with_uri(src: Path, dst: Path, system: str = LOCAL_SYSTEM) -> None:
    """The site's code map for the export: its LOCAL code system named by the URI the export codes local exams with."""
    import polars as pl

    local = pl.read_csv(src, infer_schema=False, glob=False)
    local.with_columns(
        pl.when(pl.col("code_system") == "LOCAL").then(pl.lit(system)).otherwise(pl.col("code_system")).alias("code_system")
    ).write_csv(dst)


def write_bulk_export(
    extract_dir: Path,
    out_dir: Path,
    cfg: Config,
    lines_per_file: int = LINES_PER_FILE,
    local_system: str = LOCAL_SYSTEM,
    manifest: bool = False,
) -> dict[str, int]:
    """Write the extract in `extract_dir` as NDJSON files into `out_dir`; returns resources written per type.

    manifest: also write the export's manifest.json (`write_manifest`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = dataclasses.replace(cfg, input_format="tables")
    with tempfile.TemporaryDirectory(prefix="order-audit-fhir-writer-", dir=out_dir) as tmp:
        scratch = Path(tmp)
        prepared = load.prepare_inputs(load.find_inputs(extract_dir, cfg), cfg, scratch)
        con = duckdb.connect()
        try:
            con.execute("SET enable_progress_bar = false")
            con.execute("SET TimeZone = 'UTC'")
            con.execute(f"SET memory_limit = {literal(memory_limit())}")
            con.execute(f"SET temp_directory = {literal(scratch / 'duckdb_tmp')}")
            # one thread: an ordered COPY fed by several holds every batch that is ahead of the one it writes
            con.execute("SET threads = 1")
            con.execute("SET VARIABLE w_timezone = ?", [cfg.site_timezone])
            con.execute("SET VARIABLE w_local_system = ?", [local_system])
            con.execute(sql("write_macros"))
            for table in COLUMNS:
                _view(con, table, prepared.get(table))
            _check_ids(con)
            files = {t: _write_type(con, t, out_dir, lines_per_file) for t in TYPES}
            # as of the day after the last order or procedure (UTC): what a server exporting then would say
            as_of = con.execute(
                """SELECT strftime(coalesce(date_trunc('day', greatest((SELECT max(ordered_at) FROM w_imaging_orders),
                (SELECT max(performed_at) FROM w_procedures))) + INTERVAL 1 DAY, TIMESTAMP '2000-01-01'), '%Y-%m-%dT%H:%M:%SZ')"""
            ).fetchone()[0]
        finally:
            con.close()
    if manifest:
        write_manifest(out_dir, files, as_of)
    return {t: sum(n for _, n in parts) for t, parts in files.items()}
