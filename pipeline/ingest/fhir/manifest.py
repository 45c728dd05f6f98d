"""The export's manifest: what the FHIR server says it wrote, checked against what the folder holds.

A server answers a finished Bulk Data ``$export`` with a manifest (JSON: ``transactionTime``,
``request``, ``output`` [{type, url, count}], ``error`` and ``deleted`` files); SMART's
bulk-data-client saves it beside the files as ``manifest.json`` (its ``saveManifest`` option).
When the folder holds one, a run holds the export to it: a file the download lost, or one cut
short at a line break, is still good NDJSON, and would audit fewer orders with no sign of it.

- A type the audit reads that the manifest lists and the folder lacks (or the other way round:
  files of another export) stops the run before anything is parsed (`check_files`).
- A type whose every listed file has a ``count`` must hold that many resources (lines that are not
  blank, rejected ones included: the server counted them): checked once the files are read
  (`check_counts`), before the warehouse changes.
- Error files (OperationOutcome: what the server could not export) and deleted-resource files (an
  export with ``_since``) are reported as warnings; ``transactionTime`` and the manifest's SHA-256
  go into run.json (`Manifest.facts`), and so does the ``_since`` of its ``request`` URL when it has one (the
  export holds what changed after that instant: the data-quality gate's first month goes by it).

A folder without ``manifest.json`` is read as before.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pipeline.errors import InputFileError, printable
from pipeline.ingest.contract import INSTANT_YEARS
from pipeline.wording import counted

NAME = "manifest.json"
MAX_BYTES = 64 << 20  # a manifest lists files, not resources: a bigger file is not one
_NOT_A_MANIFEST = "Save the $export status response (the manifest) as manifest.json, or move this file out of the folder"
_DOWNLOAD_AGAIN = "Download the export again: every file its manifest.json lists, to the end"


@dataclass(frozen=True)
class Manifest:
    path: Path
    sha256: str
    transaction_time: str
    counts: dict[str, int | None]  # resource type -> resources its files hold, as the server counts (None: not given)
    output_files: int
    error_files: int  # OperationOutcome files: resources the server could not export
    deleted_files: int  # resources deleted since `_since` (an incremental export)
    since: str | None = None  # the request's `_since`, as written: the export holds what changed after it

    def warnings(self, shown: str) -> list[tuple[str, str, int]]:
        """What the run warns of: (message, kind, files listed) (shown: the manifest as the run names its files)."""
        found = []
        if self.error_files:
            found.append(
                (
                    f"{shown}: the FHIR server listed {counted(self.error_files, 'file')} of errors (OperationOutcome) for this "
                    "export: some resources could not be exported, so the audit may miss orders; read the error files "
                    "the export client saved (SMART's bulk-data-client: the error/ folder)",
                    "error_files",
                    self.error_files,
                )
            )
        if self.deleted_files:
            found.append(
                (
                    f"{shown}: the export lists {counted(self.deleted_files, 'file')} of deleted resources (an export with "
                    "_since); order-audit does not apply deletions: a deleted resource stays in the warehouse until "
                    "an export of its months replaces the load that held it (docs/SCHEDULING.md)",
                    "deleted_files",
                    self.deleted_files,
                )
            )
        return found

    def facts(self, shown: str) -> dict:
        """What run.json records of it (shown: the manifest as the run names its files)."""
        return {
            "path": shown,
            "sha256": self.sha256,
            "transaction_time": self.transaction_time,
            "output_files": self.output_files,
            "error_files": self.error_files,
            "deleted_files": self.deleted_files,
            "resources_counted": {t: n for t, n in self.counts.items() if n is not None},
            **({"since": self.since} if self.since is not None else {}),
        }


def read(folder: Path) -> Manifest | None:
    """The folder's manifest.json, checked for the shape the Bulk Data specification gives it; None without one."""
    path = folder / NAME
    if not path.exists():
        return None
    if not path.is_file():
        raise InputFileError(path, "is not a file", _NOT_A_MANIFEST)
    if path.stat().st_size > MAX_BYTES:
        raise InputFileError(path, f"is larger than {MAX_BYTES >> 20} MB: not an export manifest", _NOT_A_MANIFEST)
    raw = path.read_bytes()
    try:
        value = json.loads(raw.decode("utf-8-sig"), object_pairs_hook=_Object)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputFileError(path, f"is not JSON ({str(exc).splitlines()[0]})", _NOT_A_MANIFEST) from None
    except RecursionError:
        raise InputFileError(path, "is not JSON (nested deeper than any manifest)", _NOT_A_MANIFEST) from None
    repeated = _first_repeated_key(value)
    if repeated is not None:
        key, where = (printable(part[:40]) + ("..." if len(part) > 40 else "") for part in repeated)
        raise InputFileError(
            path,
            f"gives the key '{key}' twice in one object ({where}): which value the server meant is unknown "
            "(a JSON reader keeps the last one without a word)",
            "Save the $export status response again as manifest.json; if the server wrote the key twice, "
            "keep the one value meant and tell the server's vendor",
        )
    if not isinstance(value, dict):
        raise InputFileError(path, f"is a JSON {type(value).__name__}, not an export manifest (an object)", _NOT_A_MANIFEST)
    transaction_time = value.get("transactionTime")
    if not isinstance(transaction_time, str) or not transaction_time.strip():
        raise InputFileError(path, "has no transactionTime: not a Bulk Data export manifest", _NOT_A_MANIFEST)
    since = _since(value.get("request"))
    for what, text in (("transactionTime", transaction_time), ("the request's _since", since)):
        if text is not None:
            _check_instant(path, what, text.strip())
    output = _entries(path, value, "output")
    counts: dict[str, int | None] = {}
    for number, entry in enumerate(output, start=1):
        resource_type, count = entry.get("type"), entry.get("count")
        if not isinstance(resource_type, str) or not resource_type:
            raise InputFileError(path, f"output entry {number} has no type", _NOT_A_MANIFEST)
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
            raise InputFileError(
                path, f"output entry {number} ({resource_type}) has a count that is not a whole number", _NOT_A_MANIFEST
            )
        # a type's total is known only when every one of its files is counted
        so_far = counts.get(resource_type, 0)
        counts[resource_type] = None if count is None or so_far is None else so_far + count
    return Manifest(
        path,
        hashlib.sha256(raw).hexdigest(),
        transaction_time.strip(),
        counts,
        len(output),
        len(_entries(path, value, "error")),
        len(_entries(path, value, "deleted")),
        since,
    )


class _Object(dict):
    """A JSON object (json's object_pairs_hook), with the first key it gives more than once: a dict keeps the last
    value of a repeated key and no sign of the others."""

    def __init__(self, pairs: list[tuple[str, object]]):
        super().__init__(pairs)
        self.repeated = None
        if len(self) < len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    self.repeated = key
                    break
                seen.add(key)


def _first_repeated_key(value) -> tuple[str, str] | None:
    """The first key an object of the manifest gives twice, at any depth, and where (``output[2]``: the third output
    entry; ``the top level``), or None. Walked with a stack, not recursion: a file nested deep needs no deep stack."""
    stack = [(value, "")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, _Object):
            if item.repeated is not None:
                return item.repeated, where or "the top level"
            stack += [(v, f"{where}.{k}" if where else k) for k, v in reversed(item.items())]
        elif isinstance(item, list):
            stack += [(v, f"{where}[{i}]") for i, v in reversed(list(enumerate(item)))]
    return None


def _check_instant(path: Path, what: str, text: str) -> None:
    """A FHIR instant (``2025-07-01T06:00:00Z``: a date, a time and a zone) of the years an event may have: the
    volume check reads the export's reach and start from it, and run.json and the report print it (a 64 MB
    transactionTime of other text went whole into both, and was passed over by the check without a word)."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        when = None
    first, last = INSTANT_YEARS
    if when is None or when.tzinfo is None or not first <= when.year <= last:
        shown = printable(text[:40]) + ("..." if len(text) > 40 else "")
        raise InputFileError(
            path,
            f"{what} '{shown}' is not an instant of the years {first}-{last} with its zone (2025-07-01T06:00:00Z)",
            _NOT_A_MANIFEST,
        )


def _since(request) -> str | None:
    """The ``_since`` parameter of the manifest's ``request`` URL (the kick-off request), or None. Percent-escapes
    are decoded, a '+' is kept (an instant's offset written unescaped, not a space)."""
    if not isinstance(request, str):
        return None
    for pair in urlsplit(request).query.split("&"):
        name, _, value = pair.partition("=")
        if unquote(name) == "_since" and value.strip():
            return unquote(value).strip()
    return None


def _entries(path: Path, value: dict, key: str) -> list[dict]:
    entries = value.get(key, [])
    if entries is None:
        return []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InputFileError(path, f"'{key}' is not a list of files", _NOT_A_MANIFEST)
    return entries


def check_files(manifest: Manifest, files: dict[str, list[Path]], types_read: tuple[str, ...]) -> None:
    """Every type the audit reads: listed by the manifest exactly when the folder has its files (files: by type)."""
    for resource_type in types_read:
        listed = resource_type in manifest.counts and manifest.counts[resource_type] != 0
        present = bool(files.get(resource_type))
        if listed and not present:
            counted = manifest.counts[resource_type]
            what = f"{counted:,} resources" if counted is not None else "files"
            raise InputFileError(
                manifest.path,
                f"lists {resource_type} output ({what}), but the folder holds no {resource_type} file",
                _DOWNLOAD_AGAIN,
            )
        if present and resource_type not in manifest.counts:
            raise InputFileError(
                files[resource_type][0],
                f"is a {resource_type} file, but the export's {NAME} lists no {resource_type} output: "
                "the folder mixes files of two exports",
                "Keep one export per folder, with its own manifest.json",
            )


def check_counts(manifest: Manifest, read: dict[str, int], files: dict[str, int]) -> None:
    """Each counted type's resources read (lines that are not blank) against the server's count.

    files: how many files of each type the folder holds."""
    for resource_type, records in read.items():
        counted = manifest.counts.get(resource_type)
        if counted is None or counted == records:
            continue
        fewer = "fewer" if records < counted else "more"
        raise InputFileError(
            manifest.path,
            f"counts {counted:,} {resource_type} resources, but the {resource_type} files in the folder "
            f"({files.get(resource_type, 0)}) hold {records:,} ({abs(counted - records):,} {fewer}): a file was lost, "
            "cut short or added after the export",
            _DOWNLOAD_AGAIN,
        )
