"""The test deck's input: every ``tests/deck/*.toml`` patient combined into one input folder.

Shared by tests/test_deck.py (the deck's expected results) and benchmarks/run.py (the deck as the
small-run benchmark scale), so both run the very same files.
"""

from __future__ import annotations

import csv
import tomllib
from pathlib import Path

from pipeline.models.reference import CODE_MAP_COLUMNS

DECK_DIR = Path(__file__).resolve().parent / "deck"

# canonical columns written first (DOMAIN.md section 5); other columns a deck uses follow
TABLE_COLUMNS = {
    "procedures": ["procedure_id", "patient_id", "performed_at", "procedure_code", "department"],
    "imaging_orders": ["order_id", "patient_id", "ordered_at", "order_code", "ordering_department"],
    "diagnoses": ["patient_id", "diagnosis_code", "recorded_at"],
}
LOCAL_MAP_COLUMNS = [*CODE_MAP_COLUMNS, "valid_from", "valid_to", "source"]
LOCAL_MAP_DEFAULTS = {"valid_from": "2000-01-01", "valid_to": "", "source": "tests/deck (synthetic site map)"}


def load_deck() -> dict[str, dict]:
    deck = {}
    for path in sorted(DECK_DIR.glob("*.toml")):
        with path.open("rb") as fh:
            deck[path.stem] = tomllib.load(fh)
    return deck


DECK = load_deck()
STEMS = sorted(DECK)


def rows_of(case: dict, table: str) -> list[dict]:
    return [{k: str(v) for k, v in row.items()} for row in case.get(table, [])]


def order_ids(case: dict) -> set[str]:
    return {r["order_id"] for r in rows_of(case, "imaging_orders")}


def procedure_ids(case: dict) -> set[str]:
    return {r["procedure_id"] for r in rows_of(case, "procedures")}


def patient_ids(case: dict) -> set[str]:
    return {r["patient_id"] for t in ("procedures", "imaging_orders", "diagnoses") for r in rows_of(case, t)}


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="raise")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})


def local_map_key(row: dict) -> str:
    return row["code"].strip().upper()


def write_deck_input(folder: Path) -> None:
    """All deck files as one input folder (every value a string; headers always present)."""
    folder.mkdir(parents=True, exist_ok=True)
    for table, required in TABLE_COLUMNS.items():
        columns = list(required)
        rows: list[dict] = []
        for stem in STEMS:
            for row in rows_of(DECK[stem], table):
                rows.append(row)
                columns += [c for c in row if c not in columns]
        write_csv(folder / f"{table}.csv", columns, rows)
    local: dict[str, dict] = {}
    for stem in STEMS:
        for row in rows_of(DECK[stem], "local_codes"):
            local.setdefault(local_map_key(row), {**LOCAL_MAP_DEFAULTS, **row})
    if local:
        write_csv(folder / "local_code_map.csv", LOCAL_MAP_COLUMNS, list(local.values()))
