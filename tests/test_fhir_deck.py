"""The test deck as a FHIR Bulk Data export gives the deck's verdicts, order by order, as the CSV deck does.

The CSF-leak deck's input (audits/csf_leak/deck/*.toml) is written as CSV, then as an export (pipeline.synth.fhir.writer:
several NDJSON files per type, one gzip-compressed, one named like a client's download), and
the real CLI audits both. Every deck file's expectations must hold for the export, and the
two runs must agree on every audited order and case. One approximation is the writer's: FHIR
has no age, so brain_only's patient_age 52 becomes a birth date half a year past 52 years
before the procedure (the same whole years at the procedure).
"""

from __future__ import annotations

import json

import polars as pl
import pytest
from conftest import run_cli
from deck_input import SITE_TIMEZONE, deck_files, write_deck_input
from deck_input import order_ids as _order_ids
from deck_input import procedure_ids as _procedure_ids
from deck_input import rows_of as _rows
from fhir_export import export_extract

AUDIT = "csf_leak"  # the deck whose every input column a FHIR export carries
FILES = [f for f in deck_files() if f.audit == AUDIT and not f.separate]
DECK = {f.stem: f.case for f in FILES}
STEMS = sorted(DECK)

COMPARED = ["order_id", "case_id", "verdict", "reasons", "secondary_reasons", "hours_since_index", "episode_number"]
COMPARED += ["study_type", "ordering_department", "ordered_at", "status", "indication_codes"]


@pytest.fixture(scope="module")
def deck_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("fhir_deck")
    csv_in, fhir_in = base / "csv", base / "fhir"
    write_deck_input(csv_in, FILES)
    written = export_extract(csv_in, fhir_in, lines_per_file=25)
    outs = {}
    for name, folder in (("csv", csv_in), ("fhir", fhir_in)):
        out = base / f"out_{name}"
        result = run_cli("run", "--input", folder, "--out", out, "--site-timezone", SITE_TIMEZONE)
        if result.returncode != 0:
            pytest.fail(f"order-audit run on the {name} deck exited {result.returncode}\n{result.stderr[-4000:]}", pytrace=False)
        outs[name] = out
    read = lambda out, name: pl.read_csv(out / name, infer_schema=False).fill_null("")  # noqa: E731
    return {
        "written": written,
        "export": fhir_in,
        "fhir_out": outs["fhir"],
        "audited": {k: read(v / AUDIT, "audited_orders.csv") for k, v in outs.items()},
        "cases": {k: read(v / AUDIT, "cases.csv") for k, v in outs.items()},
    }


def test_the_export_is_several_files_per_type(deck_runs):
    names = sorted(p.name for p in deck_runs["export"].iterdir())
    assert "ServiceRequest.001.ndjson.gz" in names and "1.Patient.ndjson" in names
    assert sum(n.startswith("ServiceRequest.") for n in names) >= 3
    assert deck_runs["written"]["ServiceRequest"] == sum(len(_rows(DECK[s], "imaging_orders")) for s in STEMS)


@pytest.mark.parametrize("stem", STEMS)
def test_deck_case_from_fhir(deck_runs, stem):
    case = DECK[stem]
    audited = deck_runs["audited"]["fhir"]
    ours = audited.filter(pl.col("order_id").is_in(sorted(_order_ids(case))))
    got = {r["order_id"]: (r["case_id"], r["verdict"], r["reasons"]) for r in ours.iter_rows(named=True)}
    want = {e["order_id"]: (e["case_id"], e["verdict"], e["reasons"]) for e in _rows(case, "expected_orders")}
    assert ours.height == len(got), f"{stem}: an order is listed twice"
    assert got == want, f"{stem}: {case['description']}"
    cases = deck_runs["cases"]["fhir"]
    got_cases = set(cases.filter(pl.col("case_id").is_in(sorted(_procedure_ids(case))))["case_id"])
    assert got_cases == {c["case_id"] for c in _rows(case, "expected_cases")}, stem


def test_fhir_and_csv_agree_on_every_order_and_case(deck_runs):
    csv, fhir = (deck_runs["audited"][k].select(COMPARED).sort("order_id") for k in ("csv", "fhir"))
    assert csv.height > 90
    assert fhir.equals(csv), "\n" + str(
        fhir.join(csv, on="order_id", how="full", suffix="_csv").filter(
            pl.any_horizontal(pl.col(c).ne_missing(pl.col(f"{c}_csv")) for c in COMPARED if c != "order_id")
        )
    )
    csv_cases, fhir_cases = (deck_runs["cases"][k].sort("case_id") for k in ("csv", "fhir"))
    # what FHIR does not carry: the needle and position stratifiers (no core element holds them)
    cols = [c for c in csv_cases.columns if c not in ("needle_gauge", "needle_type", "attempts", "patient_position", "site")]
    assert len(cols) > 20
    assert fhir_cases.select(cols).equals(csv_cases.select(cols)), "\n" + str(
        fhir_cases.select(cols).join(csv_cases.select(cols), on="case_id", suffix="_csv")
    )


def test_the_deck_export_loses_no_resource(deck_runs):
    info = json.loads((deck_runs["fhir_out"] / "csf_leak" / "run.json").read_text())
    assert info["input_format"] == "fhir"
    assert info["left_out"] == []
    assert info["counts"]["rejected_rows"] == {}
    read = {i["table"]: i["rows_read"] for i in info["inputs"]}
    assert read == {t: sum(len(_rows(DECK[s], t)) for s in STEMS) for t in ("procedures", "imaging_orders", "diagnoses")}
