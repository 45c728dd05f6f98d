"""Every audit's deck (``audits/<id>/deck/*.toml``) as input folders for the real CLI.

All deck files of all audits are combined into one input folder (each table written with the union of
the columns its rows use; ids never collide across decks); a file with ``separate_input = true`` runs on
an input of its own (only its rows, only the columns they use). Shared by tests/test_decks.py (every
audit's expected results), tests/test_deck.py (the CSF deck's extras) and benchmarks/run.py (the deck
as the small-run benchmark scale).
"""

from __future__ import annotations

import csv
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pipeline import audits
from pipeline.models.reference import CODE_MAP_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
INPUT_TABLES = ("procedures", "imaging_orders", "diagnoses", "patients")
# canonical columns written first (the input contract); other columns a deck uses follow
TABLE_COLUMNS = {
    "procedures": ["procedure_id", "patient_id", "performed_at", "procedure_code", "department"],
    "imaging_orders": ["order_id", "patient_id", "ordered_at", "order_code", "ordering_department"],
    "diagnoses": ["patient_id", "diagnosis_code", "recorded_at"],
    "patients": ["patient_id", "birth_date"],
}
LOCAL_MAP_COLUMNS = [*CODE_MAP_COLUMNS, "valid_from", "valid_to", "source"]
LOCAL_MAP_DEFAULTS = {"valid_from": "2000-01-01", "valid_to": "", "source": "deck (synthetic site map)"}
SITE_TIMEZONE = "America/New_York"


@dataclass(frozen=True)
class DeckFile:
    audit: str  # the audit whose deck holds the file
    stem: str
    case: dict

    @property
    def id(self) -> str:
        return f"{self.audit}/{self.stem}"

    @property
    def separate(self) -> bool:
        return bool(self.case.get("separate_input"))


def load_deck(folder: Path) -> dict[str, dict]:
    deck = {}
    for path in sorted(folder.glob("*.toml")):
        with path.open("rb") as fh:
            deck[path.stem] = tomllib.load(fh)
    return deck


def deck_files(found: list | None = None) -> list[DeckFile]:
    """Every deck file of every audit found (the shipped ones and the audits path's)."""
    out = []
    for audit in found if found is not None else audits.discover():
        if audit.deck_dir.is_dir():
            out += [DeckFile(audit.id, stem, case) for stem, case in load_deck(audit.deck_dir).items()]
    return out


def rows_of(case: dict, table: str) -> list[dict]:
    return [{k: str(v) for k, v in row.items()} for row in case.get(table, [])]


def order_ids(case: dict) -> set[str]:
    return {r["order_id"] for r in rows_of(case, "imaging_orders")}


def procedure_ids(case: dict) -> set[str]:
    return {r["procedure_id"] for r in rows_of(case, "procedures")}


def patient_ids(case: dict) -> set[str]:
    return {r["patient_id"] for t in INPUT_TABLES for r in rows_of(case, t)}


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="raise")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})


def local_map_key(row: dict) -> str:
    return row["code"].strip().upper()


def write_input(folder: Path, cases: list[dict]) -> None:
    """The cases' rows as one input folder: a table with rows gets a file, with the union of their columns."""
    folder.mkdir(parents=True, exist_ok=True)
    for table, required in TABLE_COLUMNS.items():
        columns, rows = list(required), []
        for case in cases:
            for row in rows_of(case, table):
                rows.append(row)
                columns += [c for c in row if c not in columns]
        if rows:
            write_csv(folder / f"{table}.csv", columns, rows)
    local: dict[str, dict] = {}
    for case in cases:
        for row in rows_of(case, "local_codes"):
            local.setdefault(local_map_key(row), {**LOCAL_MAP_DEFAULTS, **row})
    if local:
        write_csv(folder / "local_code_map.csv", LOCAL_MAP_COLUMNS, list(local.values()))


def write_deck_input(folder: Path, files: list[DeckFile] | None = None) -> None:
    """Every deck file but the separate ones, as one input folder."""
    write_input(folder, [f.case for f in (files if files is not None else deck_files()) if not f.separate])
