"""A Bulk Data export -> the contract's tables, typed and checked by the same loader as an extract.

1. Each resource type's files are flattened by DuckDB (`extract`), the looked-up types first:
   Location, Practitioner, Patient, Encounter, Condition, then Procedure.
2. The flattened resources are joined into the contract's tables (`tables`); the ServiceRequests
   are parsed and joined as imaging_orders is loaded, in one stream (`orders`), keyed last.
3. `load.prepare_table` types each table as it types a CSV extract (timestamps, codes,
   duplicates, value maps) and carries the FHIR reading's rejects, each with its NDJSON file
   and line (`segments`).

Every input file is hashed while this runs; each table's hash covers every file of the
export, since every file can change what a table holds (a Location renames a department).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import duckdb
import polars as pl

from pipeline import audits
from pipeline.config import Config
from pipeline.errors import InputFileError
from pipeline.ingest import load
from pipeline.ingest.contract import CONTRACTS
from pipeline.ingest.fhir import export, extract, orders, tables, whole
from pipeline.ingest.fhir import manifest as export_manifest
from pipeline.ingest.fhir.inputs import ExportInput
from pipeline.ingest.files import fingerprint_in_background
from pipeline.ingest.inputs import InputFile
from pipeline.ingest.segments import Segment
from pipeline.logs import event
from pipeline.models import reference
from pipeline.sqltext import literal
from pipeline.warehouse import memory_limit
from pipeline.wording import counted

log = logging.getLogger(__name__)

# looked-up types before the types that look them up; the ServiceRequests last, streamed as imaging_orders loads
EXTRACTED = ("Location", "Practitioner", "Patient", "Encounter", "Condition", "Procedure")
ORDER = (*EXTRACTED, "ServiceRequest")


def local_code_systems(cfg: Config, folder: Path, kept_map: pl.DataFrame | None = None) -> tuple[str, ...]:
    """The site's own code systems: the config's, and every URI in the code_system column of the site's code
    map: the one given (config or export folder), else the one the warehouse keeps (``kept_map``), which the
    run then maps the codes with: a monthly export without local_code_map.csv must pick the same codings."""
    found = list(cfg.fhir.local_code_systems)
    path = reference.local_code_map_path(cfg, folder)
    if path is not None:
        vocabulary = reference.Vocabulary.of(audits.discover(cfg.audits_path))
        site_map = reference.read_code_map(path, "local", vocabulary)
    else:
        site_map = kept_map
    if site_map is not None:
        systems = site_map["code_system"].drop_nulls().unique(maintain_order=True).to_list()
        found += [s for s in systems if ":" in s and s not in found]
    return tuple(found)


def connect(work: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    # the joins are written with the side to hash on the right (the lookups); the planner's estimates
    # of the filtered orders made it hash the ten million orders instead (10M orders: 36 s -> 18 s)
    con.execute("SET disabled_optimizers = 'join_order,build_side_probe_side'")
    con.execute(f"SET memory_limit = {literal(memory_limit())}")
    con.execute(f"SET temp_directory = {literal(work / 'duckdb_tmp')}")
    return con


def lines_of(pending: dict | None):
    """A file's lines from its fingerprint being taken (they tell whether a file was read whole), or None."""
    return (lambda path: pending[str(path)].result().lines) if pending else None


def extract_export(
    con: duckdb.DuckDBPyConnection,
    bulk: export.BulkExport,
    cfg: Config,
    work: Path,
    pending: dict | None = None,
    shown: Callable[[str], str] = str,
    kept_map: pl.DataFrame | None = None,
) -> tuple[dict[str, list[Segment]], int, dict[str, int]]:
    """Flatten every type but ServiceRequest into views fhir_<type>, and the lookups; returns each type's segments
    (file -> key range, each file named by ``shown``: inputs.find_inputs), the next key and each type's
    resources read (lines that are not blank).

    pending: the files' fingerprints being taken (their line counts tell whether a file can be read whole);
    kept_map: the site code map the warehouse keeps (`local_code_systems`)."""
    lines = lines_of(pending)
    extract.set_variables(con, cfg.fhir, local_code_systems(cfg, bulk.folder, kept_map))
    key, segments, records = 1, {}, {}
    for resource_type in EXTRACTED:
        paths = bulk.of(resource_type)
        labels = [shown(str(p)) for p in paths]
        done = extract.extract(con, resource_type, paths, labels, key, work / f"{resource_type}.parquet", True, lines)
        key += done.keys
        segments[resource_type] = done.segments
        records[resource_type] = done.records
        # not temp views: the order stream's second cursor reads the Conditions (orders.py)
        con.execute(f"CREATE OR REPLACE VIEW fhir_{resource_type.lower()} AS {done.relation}")
        _log_read(resource_type, done.records, len(paths), done.whole_files)
        _refuse_a_type_read_in_no_line(con, resource_type, done.segments)
    con.execute(f"CREATE OR REPLACE TEMP TABLE fhir_supporting_rejects AS {extract.sql('supporting_rejects')}")
    con.execute(extract.sql("lookups"))
    return segments, key, records


def _refuse_a_type_read_in_no_line(con: duckdb.DuckDBPyConnection, resource_type: str, segments: list[Segment]) -> None:
    """Stop when the type has lines and every one gives an element the audit reads in another shape than R4's
    (whole.misread): not a few bad lines but an export of another version (an R5 export's Encounter.class is a list
    in every Encounter). Its rejects alone would leave every order without a department and every diagnosis without
    a setting: an audit of something else, exit 0. Named by its first line, as a file-level error. Other rejects stay
    the lines' own, however many (a one-line Location file with a NUL). The test stops at the type's first line
    read in R4's shape."""
    view, mark = f"fhir_{resource_type.lower()}", f"%{whole.SHAPE_MARK}%"
    read = f"SELECT count(*) FROM (SELECT 1 FROM {view} WHERE coalesce(problem.reason NOT LIKE ?, true) LIMIT 1)"
    if con.execute(read, [mark]).fetchone()[0]:
        return
    first = con.execute(f"SELECT key, problem.reason FROM {view} ORDER BY key LIMIT 1").fetchone()
    if first is None:  # no line at all: the type is absent or empty, which each table's load judges
        return
    key, reason = first
    label, line = next((s.label, key - s.first_key + 1) for s in segments if s.first_key <= key <= s.last_key)
    raise InputFileError(
        label,
        f"no {resource_type} line is in FHIR R4's shape, each one a reject ({reason})",
        f"The export is not FHIR R4 as the audit reads it: export the {resource_type} resources as R4 and run again",
        line=line,
    )


def _log_read(resource_type: str, records: int, files: int, whole: int) -> None:
    resources, in_files = counted(records, "resource"), counted(files, "file")
    log.info("read %s: %s in %s, %s read whole", resource_type, resources, in_files, f"{whole:,}")


def _load_orders(
    con: duckdb.DuckDBPyConnection,
    stream: orders.OrderStream,
    f: InputFile,
    cfg: Config,
    scratch: Path,
    sha: str,
    segments: list[Segment],
) -> tuple[load.PreparedTable, list[dict]]:
    """imaging_orders typed as its ServiceRequests stream in; its rejects and left-out counts from the rows set aside."""
    rejects, left_out = scratch / "fhir" / "imaging_orders.fhir_rejects.parquet", []

    # load._write_typed, fed by the stream (known_codes: none, an export's codes are codings, not cells with a description)
    def typed_writer(f, contract, cfg, out, source, rows, known_codes=()):
        schema = stream.write(lambda lf: load._write_typed(f, contract, cfg, out, source, lf))
        stream.aside_view()
        tables.write_rejects(con, "imaging_orders", scratch / "fhir")
        left_out.extend(tables.left_out_counts(con, "imaging_orders"))
        segments.extend(stream.segments)
        files = len(stream.paths)
        _log_read("ServiceRequest", stream.records, files, stream.whole_files)
        return schema

    contract = next(c for c in CONTRACTS if c.name == "imaging_orders")
    prep = load.prepare_table(f, contract, cfg, scratch, sha, read_rejects=rejects, segments=segments, typed_writer=typed_writer)
    return prep, left_out


def _export_hash(pending: dict) -> str:
    """One hash for the export: every file's SHA-256 (each table can change with any file)."""
    digest = hashlib.sha256()
    for name, future in sorted(pending.items()):
        digest.update(f"{Path(name).name}\t{future.result().sha256}\n".encode())
    return digest.hexdigest()


def prepare_inputs(
    inputs: dict[str, InputFile],
    cfg: Config,
    scratch: Path,
    hashes: dict[str, str] | None = None,
    shown: Callable[[str], str] = str,
    kept_map: pl.DataFrame | None = None,
) -> dict[str, load.PreparedTable]:
    """The loader's prepare_inputs for a FHIR export (inputs: what pipeline.ingest.fhir.inputs found;
    kept_map: the site code map the warehouse keeps, `local_code_systems`)."""
    first = next(iter(inputs.values()))
    folder = first.path
    # the export as find_inputs listed and sniffed it (ExportInput); read again only for inputs made otherwise
    bulk = first.bulk_export if isinstance(first, ExportInput) and first.bulk_export else export.read_export(folder)
    export.check_required(bulk)
    work = scratch / "fhir"
    work.mkdir(exist_ok=True)
    # in the order the files are read, so that each file's count is there when its reading needs it
    in_order = [p for resource_type in ORDER for p in bulk.of(resource_type)]
    # each file opened once for its hash, its lines and a gzip file's text lines (whole.took_every_line)
    pending = fingerprint_in_background({str(p): p for p in in_order}, gzip_text=True) if hashes is None else None
    prepared = {}
    con = connect(work)
    try:
        by_type, key, records = extract_export(con, bulk, cfg, work, pending, shown, kept_map)
        _check_counts(bulk, records)  # before the orders' stream: a lost Encounter file stops the run here
        requests = bulk.of("ServiceRequest")
        stream = orders.OrderStream(
            con,
            requests,
            [shown(str(p)) for p in requests],
            key,
            tables.rows_query("imaging_orders", cfg.fhir),
            work,
            lines_of(pending),
        )
        # the export's hash is every table's: taken once (26,608 files: 0.36 s a time)
        export_sha = _export_hash(pending) if pending else ""
        for contract in CONTRACTS:
            if contract.name not in inputs:
                continue
            f = InputFile(contract.name, folder, "fhir", display=inputs[contract.name].label)
            sha = hashes[contract.name] if hashes else export_sha
            # only the files whose lines the table's rejects can name: the loader joins each reject's key to a table
            # of them (segments.py), the smaller the better
            segments = [s for t in tables.REJECTS_NAME[contract.name] for s in by_type.get(t, [])]
            # the orders streamed: their count is the stream's (its view holds the rows set aside alone, own_rejected)
            records = None
            if contract.name == "imaging_orders":
                prep, left_out = _load_orders(con, stream, f, cfg, scratch, sha, segments)
                _check_counts(bulk, {"ServiceRequest": stream.records})
                records = stream.records
            else:
                m = tables.map_table(con, contract.name, cfg.fhir, work)
                prep = load.prepare_table(f, contract, cfg, scratch, sha, read_rejects=m.rejects, segments=segments, rows=m.rows)
                left_out = m.left_out
            # an extract's patients table may be a header alone (the procedures carry birth dates); an export's
            # Patient resources are what every reference resolves to: none at all rejected every row of every table
            required = not contract.may_be_empty or tables.SOURCE_TYPE[contract.name] in export.REQUIRED_TYPES
            if prep.rows_read == 0 and required:
                raise _nothing_read(f.label, tables.SOURCE_TYPE[contract.name], left_out)
            prep.left_out = left_out
            prep.export_rejected = tables.own_rejected(con, contract.name, prep.segments, records)
            log.info("parsed %s: %d resources read", contract.name, prep.rows_read)
            for out in left_out:
                log.info("%s: %d %s resources left out (%s)", contract.name, out["count"], out["resource"], out["reason"])
            prepared[contract.name] = prep  # its words no map knows are said by the loader (load.say_unknown_values)
    finally:
        con.close()
    if bulk.manifest is not None:
        shown_as = shown(str(bulk.manifest.path))
        warnings = bulk.manifest.warnings(shown_as)
        for message, kind, files in warnings:
            event(message, level=logging.WARNING, event="export_warning", kind=kind, files=files)
        facts = bulk.manifest.facts(shown_as)
        for prep in prepared.values():  # the export's, so every table's: run.json takes it once
            prep.export_manifest = facts
    return prepared


def _nothing_read(label: str, resource_type: str, left_out: list[dict]) -> InputFileError:
    """A required table the export gave no resource of. Every one left out (an Epic export's imaging category coded
    in its own system: 7,550 ServiceRequests 'category is not imaging') had published empty reports with exit 0:
    an export the audit reads nothing of is as empty as one without the type."""
    if not left_out:
        return InputFileError(label, f"holds no {resource_type} resources", "The export looks incomplete; export again")
    reasons = "; ".join(f"{o['count']:,} {o['reason']}" for o in left_out)
    return InputFileError(
        label,
        f"every {resource_type} resource is left out ({reasons}), so the audits have none to read",
        "Check the [fhir] settings that choose them (docs/FHIR.md, the mapping), or export the ones the audits read",
    )


def _check_counts(bulk: export.BulkExport, records: dict[str, int]) -> None:
    """The types read against the resources the export's manifest counts, if it has one (`manifest`)."""
    if bulk.manifest is not None:
        export_manifest.check_counts(bulk.manifest, records, {t: len(bulk.of(t)) for t in records})
