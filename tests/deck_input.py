"""Every audit's deck (``audits/<id>/deck/*.toml``) as input folders for the real CLI.

All deck files of all audits are combined into one input folder (each table written with the union of
the columns its rows use; ids never collide across decks); a file with ``separate_input = true`` runs on
an input of its own (only its rows, only the columns they use), with its ``[extract]`` as its config
(``deck_config``). Shared by tests/test_decks.py (every audit's expected results), tests/test_deck.py (the
CSF deck's extras) and benchmarks/run.py (the deck as the small-run benchmark scale).
"""

from __future__ import annotations

import csv
import tomllib
from dataclasses import dataclass
from pathlib import Path

import polars as pl

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


def deck_config(case: dict) -> str:
    """The config a separate file runs with: its ``[extract]`` (where the site declares its extract starts and
    reaches, each a quoted ISO date or time), '' when it has none."""
    extract = case.get("extract") or {}
    return "".join(["[extract]\n", *(f'{k} = "{v}"\n' for k, v in extract.items())]) if extract else ""


def write_deck_input(folder: Path, files: list[DeckFile] | None = None) -> None:
    """Every deck file but the separate ones, as one input folder."""
    write_input(folder, [f.case for f in (files if files is not None else deck_files()) if not f.separate])


# ----------------------------------------------------------------------------- checking a deck file

EPISODE_KEYS = ("patient_id", "index_date")  # a case named by its patient and index date, not by its id


def _read(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False).fill_null("")


def deck_outputs(out: Path, reid: Path, audit_id: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The audit's audited orders and cases (``OUT/<audit id>/``), each with the raw patient id from the crosswalk."""
    crosswalk = _read(reid).select("patient_key", "patient_id")
    folder = out / audit_id
    orders = _read(folder / "audited_orders.csv").join(crosswalk, on="patient_key", how="left").fill_null("")
    cases = _read(folder / "cases.csv").join(crosswalk, on="patient_key", how="left").fill_null("")
    return orders, cases


def mine(row: dict, f: DeckFile, audit_id: str) -> bool:
    """Whether an expected row is the audit's (rows of another audit say ``audit = "<id>"``)."""
    return row.get("audit", f.audit) == audit_id


def _case_key(case: dict) -> tuple[str, str]:
    return case.get("patient_id", ""), case.get("index_date", "")


def _shown(e: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in e.items() if k != "order_id")


def deck_problems(orders: pl.DataFrame, cases: pl.DataFrame, f: DeckFile, audit_id: str) -> list[str]:
    """What differs between the audit's outputs and the deck file's full expected result (empty: none)."""
    case_by_id = {c["case_id"]: c for c in cases.iter_rows(named=True)}
    ours = orders.filter(pl.col("order_id").is_in(sorted(order_ids(f.case))))
    actual = {r["order_id"]: r for r in ours.iter_rows(named=True)}
    expected = {e["order_id"]: e for e in rows_of(f.case, "expected_orders") if mine(e, f, audit_id)}
    problems: list[str] = []
    for oid, n in ours.group_by("order_id").len().filter(pl.col("len") > 1).iter_rows():
        problems.append(f"order {oid} listed {n} times (one row per order expected)")
    for oid in sorted(expected.keys() - actual.keys()):
        problems.append(f"missing order {oid}: expected {_shown(expected[oid])}")
    for oid in sorted(actual.keys() - expected.keys()):
        a = actual[oid]
        problems.append(f"unexpected order {oid}: got case {a['case_id']} {a['verdict']} [{a['reasons']}] (not expected here)")
    for oid in sorted(expected.keys() & actual.keys()):
        e, a = expected[oid], actual[oid]
        wrong = {
            k: (v, a.get(k, "(no such column)")) for k, v in e.items() if k not in ("audit", *EPISODE_KEYS) and a.get(k) != v
        }
        if any(k in e for k in EPISODE_KEYS):
            case = case_by_id.get(a["case_id"], {})
            got = (case.get("patient_id", "?"), case.get("index_date", "?"))
            if got != _case_key(e):
                wrong["case"] = (_case_key(e), got)
        if wrong:
            detail = "; ".join(f"{k}: expected {w!r}, got {g!r}" for k, (w, g) in wrong.items())
            problems.append(f"order {oid} (case {a['case_id']}): {detail} [secondary={a.get('secondary_reasons', '')}]")

    theirs = cases.filter(pl.col("patient_id").is_in(sorted(patient_ids(f.case))))
    want_ids = {c["case_id"]: c for c in rows_of(f.case, "expected_cases") if mine(c, f, audit_id)}
    want_eps = {_case_key(c): c for c in rows_of(f.case, "expected_episodes") if mine(c, f, audit_id)}
    seen_eps = set()
    for c in theirs.iter_rows(named=True):
        key = _case_key(c)
        if c["case_id"] in want_ids:  # named by its id: any other key is a column of cases.csv
            e = want_ids[c["case_id"]]
        elif key in want_eps:
            seen_eps.add(key)
            e = want_eps[key]
        else:
            problems.append(f"unexpected case {c['case_id']} of patient {c['patient_id']} (index {c.get('index_date', '')})")
            continue
        checked = [k for k in e if k not in ("audit", *EPISODE_KEYS)]
        wrong = {k: (e[k], c.get(k, "(no such column)")) for k in checked if c.get(k) != e[k]}
        if wrong:
            detail = "; ".join(f"{k}: expected {w!r}, got {g!r}" for k, (w, g) in wrong.items())
            problems.append(f"case {c['case_id']} ({key[0]}, {key[1]}): {detail}")
    missing_ids = sorted(set(want_ids) - set(theirs["case_id"]))
    missing_eps = sorted(set(want_eps) - seen_eps)
    if missing_ids or missing_eps:
        problems.append(f"missing cases: {missing_ids + [f'{p} on {d}' for p, d in missing_eps]}")
    return problems
