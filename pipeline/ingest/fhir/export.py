"""The files of a Bulk Data export folder: which resource type each holds, and whether it is NDJSON.

`$export` writes one NDJSON file per resource type, often several (``ServiceRequest.000.ndjson``,
``.001``; clients also write ``1.ServiceRequest.ndjson``), sometimes gzip-compressed. A file's
type comes from its name when a part of the name is a type the audit reads, else from its
first resource (as SMART Cumulus does); NDJSON of other types, and NDJSON that holds no FHIR
resources (an export log), is not read and is listed in the log. A file whose first line is
not a JSON object is not NDJSON: the run stops with one line naming it. The export's manifest.json, when the client saved
one, is read with the files (`manifest`): it says which types and how many resources the server wrote.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import InputFileError
from pipeline.ingest.fhir import manifest as export_manifest
from pipeline.ingest.files import GZIP_MAGIC, is_broken_link

log = logging.getLogger(__name__)

# the types the audit reads; a table is fed by the first, the others are looked up
RESOURCE_TYPES = ("Patient", "Procedure", "ServiceRequest", "Condition", "Encounter", "Location", "Practitioner")
REQUIRED_TYPES = ("Patient", "Procedure", "ServiceRequest")
SUFFIXES = (".ndjson", ".jsonl", ".ndjson.gz", ".jsonl.gz")
FIRST_LINE_LIMIT = 16 << 20  # a first resource longer than this is not sniffed further
SNIFF_LINES = 5  # NDJSON when one of the first lines is a JSON object
UTF8_FIX = "FHIR JSON is UTF-8: re-export the file from the FHIR server"
_BY_LOWER = {t.lower(): t for t in RESOURCE_TYPES}


@dataclass(frozen=True)
class BulkExport:
    folder: Path
    files: dict[str, list[Path]]  # resource type -> its files, in export order
    not_read: list[tuple[Path, str]] = field(default_factory=list)  # (file, why it is not read)
    manifest: export_manifest.Manifest | None = None  # the folder's manifest.json, if the client saved it

    def of(self, resource_type: str) -> list[Path]:
        return self.files.get(resource_type, [])

    def all_files(self) -> list[Path]:
        return [p for t in RESOURCE_TYPES for p in self.of(t)]

    def label(self, resource_type: str) -> str:
        """How rejects, the ledger and messages name a type's files."""
        paths = self.of(resource_type)
        if len(paths) == 1:
            return str(paths[0])
        names = [p.name for p in paths] if len(paths) <= 4 else [paths[0].name, paths[1].name, "...", paths[-1].name]
        return f"{self.folder}/{resource_type} ({len(paths)} files: {', '.join(names)})"


def is_ndjson_name(path: Path) -> bool:
    return path.name.lower().endswith(SUFFIXES)


def has_ndjson_files(folder: Path) -> bool:
    """Whether the folder holds an NDJSON file (nothing sorted, no Path made: 26,608 files cost 0.7 s so)."""
    return any(e.is_file() for e in _named_ndjson(folder))


def _named_ndjson(folder: Path) -> list[os.DirEntry]:
    """The folder's entries named like NDJSON files, listed once (scandir: whether each is a file costs no stat
    of its own, 26,608 files)."""
    with os.scandir(folder) as entries:
        return [e for e in entries if e.name.lower().endswith(SUFFIXES)]


def _ndjson_files(named: list[os.DirEntry]) -> list[Path]:
    return sorted((Path(e.path) for e in named if e.is_file()), key=_natural)


def _natural(path: Path) -> list:
    """ServiceRequest.2.ndjson before ServiceRequest.10.ndjson."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def is_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def type_by_name(path: Path) -> str | None:
    """A resource type the audit reads named in the file name (ServiceRequest.000.ndjson, 1.Patient.ndjson.gz)."""
    stem = path.name
    for suffix in SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    found = {_BY_LOWER[part.lower()] for part in re.split(r"[._\- ]", stem) if part.lower() in _BY_LOWER}
    return found.pop() if len(found) == 1 else None


def first_lines(path: Path, count: int = SNIFF_LINES) -> Iterator[tuple[int, str]]:
    """(line number, text) of the first `count` lines that are not blank, read as they are asked for."""
    found = 0
    try:
        # one open: its first bytes say whether to read on through gzip
        with path.open("rb") as raw:
            gzipped = raw.read(2) == GZIP_MAGIC
            raw.seek(0)
            fh = gzip.GzipFile(fileobj=raw) if gzipped else raw
            for number, line in enumerate(iter(lambda: fh.readline(FIRST_LINE_LIMIT), b""), start=1):
                if not line.strip():
                    continue
                try:
                    text = line.decode("utf-8").strip()
                except UnicodeDecodeError as exc:
                    raise InputFileError(path, f"byte 0x{line[exc.start]:02x} is not UTF-8 text", UTF8_FIX, line=number) from None
                yield number, text
                found += 1
                if found == count:
                    break
    except (OSError, EOFError) as exc:
        raise InputFileError(path, f"cannot be read ({exc})", "Re-export or re-download the file") from None


def _resource(number: int, text: str) -> tuple[dict | None, str | None]:
    """One line as NDJSON holds a FHIR resource: (the JSON object, None), or (None, why it is not one)."""
    try:
        value = json.loads(text)  # a few lines only, to tell what the file is
    except RecursionError:  # '[' nested 200,000 deep: Python's parser gives up (a traceback, exit 70)
        return None, f"line {number} nests its JSON deeper than a reader follows: not a FHIR resource"
    except ValueError:
        if text in ("{", "["):
            return None, f"line {number} is '{text}' alone: pretty-printed JSON (a Bundle?), not one resource per line"
        return None, f"line {number} is not a JSON object"
    if not isinstance(value, dict):
        return None, f"line {number} is a JSON {type(value).__name__}, not an object"
    if value.get("resourceType") == "Bundle":
        return None, f"line {number} is a Bundle: Bulk Data NDJSON holds one resource per line, not Bundles"
    return value, None


def sniff(path: Path) -> tuple[str | None, str | None]:
    """(resourceType of the first resource or None, why the file is not NDJSON or None).

    The file is NDJSON when one of its first lines is a JSON object; a broken line after
    that is a reject of its own, not a reason to refuse the file. Read up to that line only, parsed once."""
    problems = []
    for number, text in first_lines(path):
        value, problem = _resource(number, text)
        if value is not None:
            resource_type = value.get("resourceType")
            return (resource_type if isinstance(resource_type, str) else None), None
        problems.append(problem)
    return None, (problems[0] if problems else None)


def read_export(folder: Path) -> BulkExport:
    """Every NDJSON file of the folder, sorted by type; a file that is not NDJSON raises."""
    files: dict[str, list[Path]] = {}
    not_read = []
    named = _named_ndjson(folder)  # the one listing of the folder: a run hands the export on (inputs.ExportInput)
    for path in sorted(Path(e.path) for e in named if not e.is_file()):
        # skipped by name before, so a folder or a broken link named Condition.000.ndjson lost its type silently
        what = "a broken link" if is_broken_link(path) else "a folder" if path.is_dir() else "not a file"
        raise InputFileError(
            path, f"is {what}, not an NDJSON file", "Put the downloaded file itself here, or move this out of the folder"
        )
    for path in _ndjson_files(named):
        declared = type_by_name(path)
        found, problem = sniff(path)
        if problem is not None:
            raise InputFileError(
                path,
                f"is not NDJSON ({problem})",
                "Export Bulk Data as application/fhir+ndjson (one JSON resource per line), or move the file out of the folder",
            )
        resource_type = declared or found
        if resource_type in RESOURCE_TYPES:
            files.setdefault(resource_type, []).append(path)
        else:
            why = f"holds {found} resources" if found else "holds no FHIR resources (no resourceType)"
            not_read.append((path, why + ": the audit does not read it"))
    export = BulkExport(folder, {t: files[t] for t in RESOURCE_TYPES if t in files}, not_read, export_manifest.read(folder))
    for path, why in not_read:
        log.info("%s %s", path, why)
    return export


def check_required(export: BulkExport) -> None:
    """The types without which there is nothing to audit; with a manifest, first the types it lists (`manifest`:
    a file the download lost is named as such, not as a type to export)."""
    if export.manifest is not None:
        export_manifest.check_files(export.manifest, export.files, RESOURCE_TYPES)
    for resource_type in REQUIRED_TYPES:
        if not export.of(resource_type):
            raise InputFileError(
                export.folder / f"{resource_type}.ndjson",
                f"no {resource_type} NDJSON file in the export",
                f"Include {resource_type} in the $export (_type={','.join(REQUIRED_TYPES)},Condition,Encounter,Location,"
                "Practitioner), or pass the folder that holds it",
            )
