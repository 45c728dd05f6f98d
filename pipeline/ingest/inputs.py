"""Which file (and which sheet) of the input folder holds each table of the contract."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.config import Config
from pipeline.errors import InputFileError, printable
from pipeline.ingest import xlsx
from pipeline.ingest.contract import CONTRACTS
from pipeline.ingest.files import is_broken_link
from pipeline.ingest.formats import SUFFIXES, TEXT_SUFFIXES, TableFormat


@dataclass(frozen=True)
class InputFile:
    table: str
    path: Path
    fmt: str  # csv (any delimited text) | parquet | xlsx | fhir (a Bulk Data export, read by pipeline.ingest.fhir)
    sheet: str | None = None  # xlsx: the sheet holding the table
    display: str | None = None  # how to name it when `path` is not what the user delivered (FHIR: the NDJSON files)
    header_row: int | None = None  # the header's line (xlsx: Excel's row) when a title is above it ([formats] header_row)

    @property
    def label(self) -> str:
        """The file as messages, rejects and the ledger name it (a workbook: with its sheet)."""
        if self.display is not None:
            return self.display
        return xlsx.label(self.path, self.sheet) if self.sheet is not None else str(self.path)


def kind_of(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return "csv"
    if suffix in (".parquet", ".xlsx"):
        return suffix.lstrip(".")
    return None


def _input_file(table: str, path: Path, sheet: str | None) -> InputFile:
    if not path.is_file():  # a folder (or a pipe, a socket) named like the table's file: reading it fails or never ends
        what = "a folder" if path.is_dir() else "not a regular file"
        raise InputFileError(path, f"is {what}, not the table's file", f"Put the {table} extract itself here, or rename this")
    kind = kind_of(path)
    if kind is None:
        packed = _packed(path.name)
        if packed:  # "Export the table as CSV" told a user with a CSV inside a .gz to do what was done
            raise InputFileError(path, f"is compressed ({packed}); order-audit reads {', '.join(SUFFIXES)}", _UNPACK)
        raise InputFileError(path, f"is not a file type order-audit reads ({', '.join(SUFFIXES)})", "Export the table as CSV")
    if kind == "xlsx":
        return InputFile(table, path, kind, xlsx.pick_sheet(path, table, sheet))
    return InputFile(table, path, kind)


def _workbook_with_sheet(input_dir: Path, table: str, sheet: str | None) -> InputFile | None:
    """A workbook of the folder holding a sheet for the table (named in the config, or like the table)."""
    found = []
    for book in sorted(p for p in input_dir.iterdir() if p.suffix.lower() == ".xlsx" and not p.name.startswith("~$")):
        names = xlsx.sheet_names(book)
        match = [n for n in names if (n == sheet if sheet else n.strip().lower() == table)]
        if match:
            found.append(InputFile(table, book, "xlsx", match[0]))
    if len(found) > 1:
        raise InputFileError(
            input_dir, f"{found[0].path.name} and {found[1].path.name} both have a sheet for {table}", "Keep one"
        )
    return found[0] if found else None


def locate(input_dir: Path, table: str, fmt: TableFormat) -> InputFile | None:
    """The file of one table: the configured one, else <table>.<suffix>, else a workbook's sheet named like it."""
    found = _locate(input_dir, table, fmt)
    if found is None or fmt.header_row is None:
        return found
    if found.fmt == "parquet":  # a Parquet file has no title lines: said, not ignored
        raise InputFileError(
            found.path, f"header_row is set under [formats.{table}], which a Parquet file does not take (it has no title lines)",
            "Remove header_row from the config",
        )  # fmt: skip
    return replace(found, header_row=fmt.header_row)


def _locate(input_dir: Path, table: str, fmt: TableFormat) -> InputFile | None:
    if fmt.file:
        path = input_dir / fmt.file
        if not path.is_file():
            raise InputFileError(path, "not found", f"Fix file under [formats.{table}] in the config")
        return _input_file(table, path, fmt.sheet)
    broken = [input_dir / f"{table}{s}" for s in SUFFIXES if is_broken_link(input_dir / f"{table}{s}")]
    if broken:  # else it reads as missing, and the message names the very file it says it did not find
        raise InputFileError(
            broken[0], "is a link to a file that does not exist", "Point the link at the extract, or put the file here"
        )
    candidates = [input_dir / f"{table}{s}" for s in SUFFIXES if (input_dir / f"{table}{s}").exists()]
    if len(candidates) > 1:
        raise InputFileError(input_dir, f"both {candidates[0].name} and {candidates[1].name} exist", "Keep one file per table")
    if candidates:
        return _input_file(table, candidates[0], fmt.sheet)
    return _workbook_with_sheet(input_dir, table, fmt.sheet)


def check_folder(input_dir: Path) -> None:
    if input_dir.is_file():
        raise InputFileError(
            input_dir,
            "is a file, not a folder",
            f"Pass --input the folder that holds the extracts (here perhaps {input_dir.parent})",
        )
    if not input_dir.is_dir():
        raise InputFileError(
            input_dir,
            "input folder not found",
            "Pass --input the folder holding the extracts (procedures and imaging_orders as CSV, text, Parquet or Excel"
            " files, or a FHIR Bulk Data export)",
        )


def has_table_files(input_dir: Path, cfg: Config | None) -> bool:
    """A file the contract's tables could be read from: <table>.<suffix>, a configured file, a workbook."""
    for contract in CONTRACTS:
        fmt = cfg.format_of(contract.name) if cfg is not None else TableFormat()
        if fmt.file and (input_dir / fmt.file).is_file():
            return True
        if any((input_dir / f"{contract.name}{s}").exists() for s in SUFFIXES):
            return True
    return any(p.suffix.lower() == ".xlsx" and not p.name.startswith("~$") for p in input_dir.iterdir())


def named_within(input_dir: Path | None) -> Callable[[str], str]:
    """How a run names a file of its input folder (a path, or a label that starts with one): relative to the
    folder. The folder's own path may hold a person's name (``/data/jane_doe/``) and would make the same
    extract in another folder give other bytes, so rejects, the ledger, run.json and the report name
    ``imaging_orders.csv``, never ``/data/jane_doe/imaging_orders.csv``. A file outside the folder (a config's
    ``file = "/elsewhere/x.csv"``) keeps the path the config gives."""
    if input_dir is None:
        return str
    prefix = str(input_dir).rstrip("/") + "/"
    return lambda text: text[len(prefix) :] if text.startswith(prefix) else text


def find_inputs(input_dir: Path, cfg: Config | None = None, shown: Callable[[str], str] = str) -> dict[str, InputFile]:
    """Locate each contract table's file in the input folder (the tables present); file-level errors raise.
    Which tables must be present is the audits' business (``pipeline.audits.plan``). shown: how the run names
    a file of the folder (``named_within``: relative to the folder)."""
    check_folder(input_dir)
    from pipeline.ingest.fhir import inputs as fhir_inputs  # a FHIR Bulk Data export is read by its own package

    if fhir_inputs.selected(input_dir, cfg, has_table_files):
        return fhir_inputs.find_inputs(input_dir, cfg, shown)
    found: dict[str, InputFile] = {}
    for contract in CONTRACTS:
        fmt = cfg.format_of(contract.name) if cfg is not None else TableFormat()
        f = locate(input_dir, contract.name, fmt)
        if f is not None:
            found[contract.name] = replace(f, display=shown(f.label))
    return found


_PACKED = (".gz", ".zip", ".bz2", ".xz", ".zst", ".7z")
_UNPACK = "Decompress it into the input folder (gunzip, unzip), then run again"


def _packed(name: str) -> str | None:
    """A compressed file's suffix (``procedures.csv.gz``: '.gz'), else None."""
    suffix = Path(name).suffix.lower()
    return suffix if suffix in _PACKED else None


def found_like(input_dir: Path, table: str) -> tuple[str, str | None]:
    """What the folder holds named like a table it lacks, and what to do: (' (found ...: why)', the fix), the fix
    None when nothing like it is there. Compressed, in parts (one table is one file), or of a type not read: the
    missing-file line and an audit's skip line both say it. It had said "found procedures_part1.csv,
    procedures_part2.csv: only .csv, ... are read" of CSV files, and "name its file under [formats]" of a .csv.gz,
    which that setting refuses too (an adopting site's review)."""
    others = sorted(p.name for p in input_dir.iterdir() if p.name.startswith(table)) if input_dir.is_dir() else []
    packed = [n for n in others if _packed(n)]
    parts = [n for n in others if kind_of(Path(n)) is not None]
    if packed:
        return f" (found {', '.join(packed)}: compressed; order-audit reads {', '.join(SUFFIXES)})", _UNPACK
    if len(parts) > 1:
        todo = f"Join the parts into one {table}.csv (one header row), or name the one file under [formats.{table}]"
        return f" (found {', '.join(parts)}: a table is read from one file)", todo
    if others and not parts:
        return f" (found {', '.join(others)}: only {', '.join(SUFFIXES)} are read)", None
    return (f" (found {others[0]})" if others else ""), None


def missing_file_error(input_dir: Path, table: str, needed_by: list[str]) -> InputFileError:
    """The one line for a table every audit the run could do needs, and the folder lacks (``found_like``)."""
    hint, todo = found_like(input_dir, table)
    todo = todo or (
        f"Put {table}.csv (or .parquet, .xlsx) in the input folder, or name its file under "
        f"[formats.{table}] in the config (order-audit inspect --input DIR suggests one)"
    )
    return InputFileError(
        input_dir / f"{table}.csv", f"required file missing{hint}; the audits that need it: {', '.join(needed_by)}", todo
    )


def empty_input_error(input_dir: Path) -> InputFileError:
    """The one line for an --input that holds no table's file, given with a warehouse that holds the tables."""
    tables = ", ".join(c.name for c in CONTRACTS)
    held = sorted(p.name for p in input_dir.iterdir()) if input_dir.is_dir() else []
    shown = ", ".join(printable(n) for n in held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5 else "")
    hint = f" (it holds {shown}, none named after a table)" if held else " (it is empty)"
    return InputFileError(
        input_dir,
        f"holds no table's file ({tables}; .csv, .parquet, .xlsx, or a FHIR export){hint}: the delivery has not "
        "come, or the path is wrong",
        "Run again once it is there; to re-run the warehouse's months without a new delivery, leave --input out",
    )
