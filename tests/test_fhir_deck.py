"""Both audits' test decks as a FHIR Bulk Data export give the decks' verdicts, order by order, as the CSV decks do.

The CSF-leak and low back pain decks' inputs (audits/<id>/deck/*.toml) are written as one CSV input,
then as an export (pipeline.synth.fhir.writer: several NDJSON files per type, one gzip-compressed,
one named like a client's download), and the real CLI audits both. Every deck file's expectations
must hold for the export, and the two runs must agree on every audited order and case of each audit.
What the export cannot carry, the test says:
- FHIR ids allow no '_': the deck's ids are written with '-' instead, in both inputs alike;
- FHIR has no age, so brain_only's patient_age 52 becomes a birth date half a year past 52 years
  before the procedure (the same whole years at the procedure);
- a Patient has one birth date: low back pain's age_sources (procedure rows whose birth dates disagree,
  an age on a procedure a month before the index) and age_partial_birth_dates_procedure_rows (procedure rows'
  partial birth dates that overlap or conflict) are left out of the comparison.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import polars as pl
import pytest
from conftest import built_once, run_cli
from fhir_export import export_extract

from benchmarks.engine_compare import data_outputs
from pipeline.deck import SITE_TIMEZONE, DeckFile, deck_files, deck_outputs, deck_problems, write_deck_input
from pipeline.deck import rows_of as _rows
from pipeline.models import spark as spark_engine

AUDITS = ("csf_leak", "low_back_pain")
ONE_BIRTH_DATE = {
    "low_back_pain/age_sources",
    "low_back_pain/age_partial_birth_dates_procedure_rows",
}  # what one Patient.birthDate cannot say (above)


def _fhir_ids(value):
    """The deck's ids as FHIR allows them ('_' -> '-'): every *_id value of every row."""
    if isinstance(value, dict):
        return {k: (v.replace("_", "-") if k.endswith("_id") and isinstance(v, str) else _fhir_ids(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_fhir_ids(v) for v in value]
    return value


FILES: list[DeckFile] = [
    dataclasses.replace(f, case=_fhir_ids(f.case))
    for f in deck_files()
    if f.audit in AUDITS and not f.separate and f.id not in ONE_BIRTH_DATE
]
BY_ID = {f.id: f for f in FILES}
PAIRS = [(f.id, audit) for f in FILES for audit in AUDITS]

COMPARED = {
    "csf_leak": ["order_id", "case_id", "verdict", "reasons", "secondary_reasons", "hours_since_index", "episode_number"]
    + ["study_type", "ordering_department", "ordered_at", "status", "indication_codes"],
    "low_back_pain": ["order_id", "case_id", "verdict", "reasons", "secondary_reasons", "index_date", "days_since_index"]
    + ["study_type", "ordering_department", "ordered_at", "status", "indication_codes", "red_flag_groups"],
}
# what FHIR does not carry: the CSF cases' needle and position stratifiers (no core element holds them)
NOT_CARRIED = ("needle_gauge", "needle_type", "attempts", "patient_position", "site")


def _export_and_runs(base) -> tuple[dict, Path, dict]:
    """The deck as CSV and as an export, each run through the CLI: (resources written, the export's folder,
    {input: (out, reid)})."""
    csv_in, fhir_in = base / "csv", base / "fhir"
    write_deck_input(csv_in, FILES)
    written = export_extract(csv_in, fhir_in, lines_per_file=25)
    outs = {}
    for name, folder in (("csv", csv_in), ("fhir", fhir_in)):
        out, reid = base / f"out_{name}", base / f"{name}.reid.csv"
        result = run_cli("run", "--input", folder, "--out", out, "--site-timezone", SITE_TIMEZONE, "--reid-file", reid)
        if result.returncode != 0:
            pytest.fail(f"order-audit run on the {name} deck exited {result.returncode}\n{result.stderr[-4000:]}", pytrace=False)
        outs[name] = (out, reid)
    return written, fhir_in, outs


@pytest.fixture(scope="module")
def deck_runs(tmp_path_factory):
    # built once per test run: the Spark test runs on the Spark tests' worker, the others on whichever is free
    written, fhir_in, outs = built_once(tmp_path_factory, "fhir_deck", _export_and_runs)
    return {
        "written": written,
        "export": fhir_in,
        "fhir_out": outs["fhir"][0],
        "fhir_reid": outs["fhir"][1],
        # per input and audit: (audited orders, cases), each with the raw patient id
        "outputs": {(k, a): deck_outputs(out, reid, a) for k, (out, reid) in outs.items() for a in AUDITS},
    }


def test_the_export_is_several_files_per_type(deck_runs):
    names = sorted(p.name for p in deck_runs["export"].iterdir())
    assert "ServiceRequest.001.ndjson.gz" in names and "1.Patient.ndjson" in names
    assert sum(n.startswith("ServiceRequest.") for n in names) >= 3
    assert deck_runs["written"]["ServiceRequest"] == sum(len(_rows(f.case, "imaging_orders")) for f in FILES)


@pytest.mark.parametrize(("file_id", "audit"), PAIRS, ids=[f"{a}:{f}" for f, a in PAIRS])
def test_deck_file_from_fhir(deck_runs, file_id, audit):
    f = BY_ID[file_id]
    orders, cases = deck_runs["outputs"][("fhir", audit)]
    problems = deck_problems(orders, cases, f, audit)
    assert not problems, f"{audit} on deck {f.id} read as FHIR: {f.case['description']}\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("audit", AUDITS)
def test_fhir_and_csv_agree_on_every_order_and_case(deck_runs, audit):
    compared = COMPARED[audit]
    (csv, csv_cases), (fhir, fhir_cases) = (deck_runs["outputs"][(k, audit)] for k in ("csv", "fhir"))
    csv, fhir = (t.select(compared).sort("order_id") for t in (csv, fhir))
    assert csv.height > 90
    assert fhir.equals(csv), "\n" + str(
        fhir.join(csv, on="order_id", how="full", suffix="_csv").filter(
            pl.any_horizontal(pl.col(c).ne_missing(pl.col(f"{c}_csv")) for c in compared if c != "order_id")
        )
    )
    cols = [c for c in csv_cases.columns if c not in NOT_CARRIED]
    assert len(cols) > 10
    csv_cases, fhir_cases = (t.select(cols).sort("case_id") for t in (csv_cases, fhir_cases))
    assert fhir_cases.equals(csv_cases), "\n" + str(fhir_cases.join(csv_cases, on="case_id", how="full", suffix="_csv"))


def test_the_deck_export_loses_no_resource(deck_runs):
    info = json.loads((deck_runs["fhir_out"] / "csf_leak" / "run.json").read_text())
    assert info["input_format"] == "fhir"
    assert info["left_out"] == []
    assert info["counts"]["rejected_rows"] == {}
    read = {i["table"]: i["rows_read"] for i in info["inputs"]}
    want = {t: sum(len(_rows(f.case, t)) for f in FILES) for t in ("procedures", "imaging_orders", "diagnoses")}
    assert read == {**want, "patients": deck_runs["written"]["Patient"]}  # every patient is a Patient resource


@pytest.mark.spark
def test_the_export_on_local_spark_gives_the_duckdb_outputs(deck_runs, tmp_path):
    """The export read through a file system of Hadoop's own (viewfs: a mount table whose one link is the
    export's folder, as a bucket is read through s3a://), the models on a local Spark. Without the gate: its
    checks on Spark over sources the driver parsed (as it parses an export) are test_spark_engine's Connect deck
    run's, and here they were a fifth of the suite's longest test. The CSF-leak audit alone: what is the export's
    own here (its copy through Hadoop, the driver's parse, the sources shipped to Spark) is the same for either
    audit, and both audits' models on a local Spark are test_spark_engine's local deck run's (a quarter of this
    run's time was the second audit's models)."""
    from test_spark_engine import _config

    problem = spark_engine.java_problem()
    if problem:
        pytest.skip(problem)
    out, reid = tmp_path / "out", tmp_path / "crosswalk" / "spark.reid.csv"
    reid.parent.mkdir()
    export, uri = deck_runs["export"], "viewfs://hospital/export"
    viewfs = {"spark.hadoop.fs.viewfs.mounttable.hospital.link./export": export.as_uri()}
    config = _config(tmp_path / "spark.toml", conf=viewfs, master="local[2]")
    result = run_cli(
        "run", "--input", uri, "--out", out, "--warehouse", tmp_path / "wh" / "wh.duckdb",
        "--site-timezone", SITE_TIMEZONE, "--reid-file", reid, "--config", config, "--no-validate", "--audit", "csf_leak",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    assert "models on Spark" in result.stderr and f"from {uri}" in result.stderr
    info = json.loads((out / "csf_leak" / "run.json").read_text())
    assert info["engine"]["name"] == "spark" and info["input_format"] == "fhir"
    # the files are named by the URI the user gave (a local run's relative to --input), never by the run's local copy
    expected = {n: d for n, d in data_outputs(deck_runs["fhir_out"]).items() if n.startswith("csf_leak/")}
    got = {n: d.replace(uri.encode() + b"/", b"") for n, d in data_outputs(out).items()}
    assert {"csf_leak/audited_orders.csv", "csf_leak/cases.csv", "csf_leak/metrics.parquet"} <= set(expected)
    assert sorted(got) == sorted(expected)
    for name in expected:
        assert got[name] == expected[name], f"{name} differs from the DuckDB run's"
    # the crosswalk of the CSF-leak cases' patients: the DuckDB run's lines of those patients
    crosswalk = reid.read_text(encoding="utf-8").splitlines()
    cases = set(pl.read_csv(out / "csf_leak" / "cases.csv", infer_schema=False)["patient_key"])
    both = deck_runs["fhir_reid"].read_text(encoding="utf-8").splitlines()
    assert crosswalk == [both[0], *(ln for ln in both[1:] if ln.split(",")[0] in cases)] and len(crosswalk) > 30
    assert ".scratch-" not in json.dumps(info) and ".scratch-" not in result.stderr
