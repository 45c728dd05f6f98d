"""The test deck: hand-built synthetic patients, one per path through the rules.

Each ``tests/deck/*.toml`` file holds input rows (procedures, imaging orders, diagnoses,
optional site-local code map rows) and the FULL expected result: every order the audit
must list for those patients (case, verdict, reasons of the winning verdict) and every
case. The expectations were written from DOMAIN.md and docs/DESIGN.md, not from the
implementation. All files are combined into one input folder and the real CLI runs once.
"""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import polars as pl
import pytest
from conftest import DESIGN_REASONS
from deck_input import (
    DECK,
    DECK_DIR,
    STEMS,
    TABLE_COLUMNS,
    local_map_key,
    order_ids,
    patient_ids,
    procedure_ids,
    rows_of,
    write_deck_input,
)

ROOT = Path(__file__).resolve().parents[1]
RULES_CSV = ROOT / "pipeline" / "reference" / "rules.csv"
SITE_TIMEZONE = "America/New_York"

DESIGN_ORDER = list(DESIGN_REASONS)


def _read_all_strings(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False).fill_null("")


@pytest.fixture(scope="module")
def deck_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("deck")
    inp, out, wh = base / "input", base / "output", base / "warehouse.duckdb"
    write_deck_input(inp)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "run",
            "--input",
            str(inp),
            "--out",
            str(out),
            "--warehouse",
            str(wh),
            "--site-timezone",
            SITE_TIMEZONE,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"order-audit run on the deck exited {proc.returncode} (input kept in {inp})\n"
            f"--- stderr ---\n{proc.stderr[-6000:]}\n--- stdout ---\n{proc.stdout[-2000:]}",
            pytrace=False,
        )
    audited_path, cases_path = out / "audited_orders.csv", out / "cases.csv"
    for p in (audited_path, cases_path):
        assert p.is_file(), f"the run exited 0 but wrote no {p.name} in {out}"
    return {
        "audited": _read_all_strings(audited_path),
        "cases": _read_all_strings(cases_path),
        "audited_path": audited_path,
        "cases_path": cases_path,
    }


@pytest.mark.parametrize("stem", STEMS)
def test_deck_case(deck_run, stem):
    case = DECK[stem]
    audited: pl.DataFrame = deck_run["audited"]
    ours = audited.filter(pl.col("order_id").is_in(sorted(order_ids(case))))
    actual = {r["order_id"]: r for r in ours.iter_rows(named=True)}
    expected = {e["order_id"]: e for e in rows_of(case, "expected_orders")}

    problems: list[str] = []
    dupes = ours.group_by("order_id").len().filter(pl.col("len") > 1)
    for oid, n in dupes.iter_rows():
        problems.append(f"order {oid} listed {n} times (one row per order expected)")
    for oid in sorted(expected.keys() - actual.keys()):
        e = expected[oid]
        problems.append(f"missing order {oid}: expected {e['case_id']} {e['verdict']} [{e['reasons']}]")
    for oid in sorted(actual.keys() - expected.keys()):
        a = actual[oid]
        problems.append(
            f"unexpected order {oid}: got {a.get('case_id')} {a.get('verdict')} "
            f"[{a.get('reasons')}] (this deck expects it not to be audited)"
        )
    for oid in sorted(expected.keys() & actual.keys()):
        e, a = expected[oid], actual[oid]
        got = (a.get("case_id"), a.get("verdict"), a.get("reasons"))
        want = (e["case_id"], e["verdict"], e["reasons"])
        if got != want:
            problems.append(
                f"order {oid}: expected case={want[0]} verdict={want[1]} reasons=[{want[2]}]\n"
                f"{' ' * (len(oid) + 8)}got      case={got[0]} verdict={got[1]} reasons=[{got[2]}]"
                f" secondary=[{a.get('secondary_reasons', '')}] hours={a.get('hours_since_index', '')}"
                f" episode={a.get('episode_number', '')} study={a.get('study_type', '')}"
            )

    cases_df: pl.DataFrame = deck_run["cases"]
    got_cases = set(cases_df.filter(pl.col("case_id").is_in(sorted(procedure_ids(case))))["case_id"])
    want_cases = {c["case_id"] for c in rows_of(case, "expected_cases")}
    if got_cases != want_cases:
        missing, unexpected = sorted(want_cases - got_cases), sorted(got_cases - want_cases)
        problems.append(
            f"cases: expected {sorted(want_cases)}, got {sorted(got_cases)} (missing {missing}, unexpected {unexpected})"
        )

    assert not problems, f"deck {stem}: {case['description']}\n  " + "\n  ".join(problems)


def test_no_order_outside_the_deck(deck_run):
    all_orders = set().union(*(order_ids(DECK[s]) for s in STEMS))
    stray = sorted(set(deck_run["audited"]["order_id"]) - all_orders)
    assert not stray, f"audited_orders.csv lists orders that are not in any deck file: {stray}"


def test_times_never_read_past_the_72_hour_line(deck_run):
    """71 h 59 min is shown as such, never rounded up to 72 beside a premature verdict; exactly 72 h is 72 h 0 min."""
    rows = {r["order_id"]: r for r in deck_run["audited"].iter_rows(named=True)}
    premature, exact = rows["or-p7159-1"], rows["or-e72-1"]
    assert (premature["minutes_since_index"], premature["hours_since_index"]) == ("4319", "71.98")
    assert (exact["minutes_since_index"], exact["hours_since_index"]) == ("4320", "72.0")
    for r in rows.values():  # truncated everywhere: a premature order always reads under 72 h
        if "premature" in r["reasons"].split("|"):
            assert int(r["minutes_since_index"]) < 72 * 60 and float(r["hours_since_index"]) < 72, r["order_id"]
    workbook = (deck_run["audited_path"].parent / "case_list.xlsx").read_bytes()
    with zipfile.ZipFile(io.BytesIO(workbook)) as z:
        sheet = z.read("xl/worksheets/sheet1.xml").decode()
    assert ">71 h 59 min<" in sheet and ">72 h 0 min<" in sheet


@pytest.mark.parametrize("output", ["audited_path", "cases_path"])
def test_no_raw_patient_id_in_outputs(deck_run, output):
    text = deck_run[output].read_text(encoding="utf-8")
    leaked = sorted(p for s in STEMS for p in patient_ids(DECK[s]) if p in text)
    assert not leaked, (
        f"{deck_run[output].name} shows raw patient ids {leaked}; patients must appear only as the keyed pseudonym patient_key"
    )


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


def test_every_rule_fired():
    registry = _registry_codes()
    carried = {r for s in STEMS for e in rows_of(DECK[s], "expected_orders") for r in e["reasons"].split("|")}
    unfired = [code for code in registry if code not in carried]
    assert not unfired, (
        f"rules in the registry that no deck order expects as a reason (add a deck case that fires each): {unfired}"
    )
    unknown = sorted(carried - set(registry))
    assert not unknown, f"deck expects reason codes that are not in the registry: {unknown}"


def test_registry_order_matches_the_deck():
    """The deck writes `reasons` in DESIGN.md order; the registry must list them the same way."""
    assert _registry_codes() == DESIGN_ORDER, (
        "pipeline/reference/rules.csv lists reason codes in a different order (or set) than DESIGN.md; "
        "the deck's expected `reasons` follow DESIGN.md"
    )
