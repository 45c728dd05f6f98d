"""Is the input folder a Bulk Data export, and which contract tables it feeds.

``input_format`` (config) or ``--input-format`` decides; ``auto`` (the default) reads a
folder of NDJSON files as an export when no extract table (procedures.csv ...) is there
too. Both kinds in one folder is ambiguous: the run stops and asks which.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import Config
from pipeline.errors import InputFileError
from pipeline.ingest.fhir import export, manifest
from pipeline.ingest.fhir.tables import SOURCE_TYPE
from pipeline.ingest.inputs import InputFile
from pipeline.wording import counted

FORMAT = "fhir"


@dataclass(frozen=True)
class ExportInput(InputFile):
    """A table's input of an export, carrying the export as `find_inputs` found it: the run reads (`prepare`) the
    files listed and sniffed here, without listing and sniffing the folder again (26,608 files: ~1.5 CPU-s a time)."""

    bulk_export: export.BulkExport | None = field(default=None, compare=False, repr=False)


def selected(input_dir: Path, cfg: Config | None, has_table_files: Callable[[Path, Config | None], bool]) -> bool:
    chosen = cfg.input_format if cfg is not None else "auto"
    if chosen != "auto":
        return chosen == FORMAT
    if not export.has_ndjson_files(input_dir):
        return False
    if has_table_files(input_dir, cfg):
        raise InputFileError(
            input_dir,
            "holds both extract tables (procedures, imaging_orders ...) and FHIR NDJSON files",
            "Say which to read with --input-format tables or --input-format fhir (or input_format in the config)",
        )
    return True


def find_inputs(input_dir: Path, cfg: Config | None, shown: Callable[[str], str] = str) -> dict[str, InputFile]:
    """One InputFile per table the export feeds, named by ``shown`` (inputs.find_inputs); the folder is checked
    file by file (NDJSON or not)."""
    bulk = export.read_export(input_dir)
    if not bulk.files and not bulk.not_read:  # every NDJSON file is one or the other (or has raised)
        raise InputFileError(
            input_dir,
            f"no FHIR NDJSON files ({', '.join('*' + s for s in export.SUFFIXES)})",
            "Pass the folder the Bulk Data $export was downloaded to, or --input-format tables for CSV/Parquet extracts",
        )
    export.check_required(bulk)
    return {
        table: ExportInput(table, input_dir, FORMAT, display=shown(bulk.label(resource_type)), bulk_export=bulk)
        for table, resource_type in SOURCE_TYPE.items()
        if bulk.of(resource_type)
    }


def describe(input_dir: Path, bulk: export.BulkExport | None = None) -> dict:
    """What `order-audit inspect` shows for an export: the files of each type, and the files not read (bulk: the
    export as read already, else read here)."""
    bulk = bulk or export.read_export(input_dir)
    found_manifest, manifest_problem = None, None
    if bulk.manifest is not None:
        found_manifest = bulk.manifest.facts(bulk.manifest.path.name)
        try:
            manifest.check_files(bulk.manifest, bulk.files, export.RESOURCE_TYPES)
        except InputFileError as exc:  # shown, as a missing type is: inspect says what a run would stop at
            manifest_problem = str(exc)
    return {
        "input_format": FORMAT,
        "folder": str(input_dir),
        "resource_files": {t: [p.name for p in paths] for t, paths in bulk.files.items()},
        "not_read": [{"file": p.name, "why": why} for p, why in bulk.not_read],
        "missing_required": [t for t in export.REQUIRED_TYPES if not bulk.of(t)],
        "manifest": found_manifest,
        "manifest_problem": manifest_problem,
        "next": f"order-audit validate --input {input_dir} (the FHIR mapping and its [fhir] settings: docs/FHIR.md)",
    }


def describe_text(found: dict, code_lines: list[str] | tuple[str, ...] = ()) -> str:
    """The text of `describe`, with inspect's lines on the codes (code_lines) before the next step."""
    lines = [f"{found['folder']}: a FHIR Bulk Data export (read as FHIR, not as extract tables)"]
    for resource_type, names in found["resource_files"].items():
        lines.append(f"  {resource_type:14} {counted(len(names), 'file')}: {', '.join(names)}")
    for item in found["not_read"]:
        lines.append(f"  not read       {item['file']}: {item['why']}")
    if found["manifest"] is not None:
        m = found["manifest"]
        resources = ", ".join(f"{t} {n:,}" for t, n in m["resources_counted"].items()) or "no counts given"
        listed = counted(m["output_files"], "file")
        lines.append(f"  {m['path']}: transactionTime {m['transaction_time']}, {listed} listed ({resources})")
    if found["manifest_problem"]:
        lines.append(f"  MANIFEST       {found['manifest_problem']}")
    if found["missing_required"]:
        lines.append(f"  MISSING        {', '.join(found['missing_required'])}: a run needs them")
    lines += code_lines
    lines.append(f"Next: {found['next']}")
    return "\n".join(lines) + "\n"
