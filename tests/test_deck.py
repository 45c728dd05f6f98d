"""The CSF-leak deck's own checks (the verdicts, order by order, are tests/test_decks.py for every audit).

Each ``audits/csf_leak/deck/*.toml`` file holds input rows (procedures, imaging orders, diagnoses,
optional site-local code map rows) and the FULL expected result: every order the audit must list
for those patients (case, verdict, reasons of the winning verdict) and every case. The expectations
were written from DOMAIN.md and the audit's DESIGN.md, not from the implementation.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from conftest import DESIGN_REASONS
from xlsx_xml import Workbook

from pipeline.deck import TABLE_COLUMNS, deck_files, local_map_key, order_ids, patient_ids, procedure_ids, rows_of
from pipeline.report.caselist import TIME_AFTER_FORMAT

ROOT = Path(__file__).resolve().parents[1]
RULES_CSV = ROOT / "audits" / "csf_leak" / "rules.csv"
DECK_DIR = ROOT / "audits" / "csf_leak" / "deck"
DECK = {f.stem: f.case for f in deck_files() if f.audit == "csf_leak"}
STEMS = sorted(DECK)
DESIGN_ORDER = list(DESIGN_REASONS)


def _read_all_strings(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False).fill_null("")


def _csf_output(deck_runs, name: str) -> Path:
    return Path(deck_runs["runs"]["combined"]["out"]) / "csf_leak" / name


def test_times_never_read_past_the_72_hour_line(deck_runs):
    """71 h 59 min is shown as such, never rounded up to 72 beside a premature verdict; exactly 72 h is 72 h 00 min."""
    rows = {r["order_id"]: r for r in _read_all_strings(_csf_output(deck_runs, "audited_orders.csv")).iter_rows(named=True)}
    premature, exact = rows["or-p7159-1"], rows["or-e72-1"]
    assert (premature["minutes_since_index"], premature["hours_since_index"]) == ("4319", "71.98")
    assert (exact["minutes_since_index"], exact["hours_since_index"]) == ("4320", "72.0")
    for r in rows.values():  # truncated everywhere: a premature order always reads under 72 h
        if "premature" in r["reasons"].split("|"):
            assert int(r["minutes_since_index"]) < 72 * 60 and float(r["hours_since_index"]) < 72, r["order_id"]
    # the workbook's time after the procedure: hours x 100 + minutes, shown '71 h 59 min' by its format
    book = Workbook(_csf_output(deck_runs, "case_list.xlsx"))
    shown = {(r["Order"], r["Time after procedure"]) for r in book.rows("Cases")}
    assert {("or-p7159-1", 7159), ("or-e72-1", 7200)} <= shown
    column = list(book.rows("Cases")[0]).index("Time after procedure")
    assert {c["format"] for (i, j), c in book.cells("Cases").items() if i and j == column} == {TIME_AFTER_FORMAT}


def test_deck_files_are_well_formed():
    problems: list[str] = []
    seen: dict[tuple[str, str], str] = {}
    local_rows: dict[str, tuple[str, dict]] = {}
    assert len(STEMS) >= 35, f"only {len(STEMS)} deck files in {DECK_DIR}"
    for stem in STEMS:
        case = DECK[stem]
        if not str(case.get("description", "")).strip():
            problems.append(f"{stem}: no description")
        for table, required in TABLE_COLUMNS.items():
            for row in rows_of(case, table):
                missing = [c for c in required if c not in row]
                if missing:
                    problems.append(f"{stem}: a {table} row lacks {missing}")
        # ids unique across files (a patient belongs to one file only)
        ids = [("procedure_id", r["procedure_id"]) for r in rows_of(case, "procedures")] + [
            ("order_id", r["order_id"]) for r in rows_of(case, "imaging_orders")
        ]
        ids += [("patient_id", p) for p in patient_ids(case)]
        for kind, value in ids:
            other = seen.get((kind, value))
            if other is not None and (other != stem or kind != "patient_id"):
                problems.append(f"{stem}: {kind} {value} also used in {other}")
            seen[(kind, value)] = stem
        orders, procs = order_ids(case), procedure_ids(case)
        expected_cases = [c["case_id"] for c in rows_of(case, "expected_cases")]
        for cid in expected_cases:
            if cid not in procs:
                problems.append(f"{stem}: expected case {cid} is not one of its procedures")
        if len(set(expected_cases)) != len(expected_cases):
            problems.append(f"{stem}: duplicate expected case")
        expected_orders = rows_of(case, "expected_orders")
        if len({e["order_id"] for e in expected_orders}) != len(expected_orders):
            problems.append(f"{stem}: duplicate expected order")
        for e in expected_orders:
            oid = e.get("order_id")
            if oid not in orders:
                problems.append(f"{stem}: expected order {oid} is not one of its imaging_orders")
            if e.get("case_id") not in expected_cases:
                problems.append(
                    f"{stem}: expected order {oid} is audited under {e.get('case_id')}, which is not an expected case"
                )
            reasons = e.get("reasons", "").split("|")
            unknown = [r for r in reasons if r not in DESIGN_REASONS]
            if unknown:
                problems.append(f"{stem}: order {oid} has unknown reasons {unknown}")
                continue
            wrong = [r for r in reasons if DESIGN_REASONS[r] != e.get("verdict")]
            if wrong:
                problems.append(
                    f"{stem}: order {oid} verdict {e.get('verdict')} lists reasons of "
                    f"another verdict {wrong} (reasons = winning verdict only)"
                )
            if reasons != sorted(reasons, key=DESIGN_ORDER.index) or len(set(reasons)) != len(reasons):
                problems.append(f"{stem}: order {oid} reasons not in registry order: {e['reasons']}")
        for row in rows_of(case, "local_codes"):
            key = local_map_key(row)
            prev = local_rows.get(key)
            if prev is not None and prev[1] != row:
                problems.append(f"{stem}: local code {key} differs from its definition in {prev[0]}")
            local_rows.setdefault(key, (stem, row))
    assert not problems, "deck files are malformed:\n  " + "\n  ".join(problems)


def _registry_codes() -> list[str]:
    if not RULES_CSV.is_file():
        pytest.skip(f"{RULES_CSV.relative_to(ROOT)} does not exist yet: no registry to check the deck with")
    return list(_read_all_strings(RULES_CSV)["reason_code"])


def test_registry_order_matches_the_deck():
    """The deck writes `reasons` in DESIGN.md order; the registry must list them the same way."""
    assert _registry_codes() == DESIGN_ORDER, (
        "audits/csf_leak/rules.csv lists reason codes in a different order (or set) than DESIGN.md; "
        "the deck's expected `reasons` follow DESIGN.md"
    )
