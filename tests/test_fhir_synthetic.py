"""`order-audit synth --format fhir` writes real FHIR R4 Bulk Data, and the audit of it agrees with the truth.

A library we did not write (fhir.resources, R4B models) validates a sample of every resource
type the generator writes; the real CLI then audits the export, order by order against the
generator's ground truth, as tests/test_cli_synthetic.py does for CSV.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from conftest import run_cli, truth_differences
from fhir.resources.R4B import get_fhir_model_class

from pipeline.synth.audit_scenarios import ground_truth
from pipeline.synth.fhir.writer import TYPES

SAMPLE_EVERY = 37  # lines validated: the first 200 of each file, then every 37th
SYNTH_ARGS = ("--patients", "4000", "--months", "12", "--seed", "11", "--start", "2025-01")
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
LBP = "low_back_pain"
LBP_COMPARED = ["order_id", "case_id", "index_date", "days_since_index", "verdict", "reasons", "red_flag_groups"]


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("synth_fhir")
    result = run_cli("synth", *SYNTH_ARGS, "--format", "fhir", "--out", d)
    assert result.returncode == 0, result.stderr
    return d


@pytest.fixture(scope="module")
def csv_audited(tmp_path_factory) -> Path:
    """The same generated extract as CSV, audited: what the export's audit must agree with."""
    base = tmp_path_factory.mktemp("synth_csv_run")
    result = run_cli("synth", *SYNTH_ARGS, "--format", "csv", "--out", base / "extract")
    assert result.returncode == 0, result.stderr
    result = run_cli("run", "--input", base / "extract", "--out", base / "out", "--warehouse", base / "wh.duckdb")
    assert result.returncode == 0, result.stderr
    return base / "out"


@pytest.fixture(scope="module")
def audited(export, tmp_path_factory) -> Path:
    """The export audited; its re-identification crosswalk beside the outputs (OUT/../reid.csv)."""
    base = tmp_path_factory.mktemp("synth_fhir_run")
    out = base / "out"
    (base / "warehouse").mkdir()  # (the crosswalk may not be in the warehouse's folder)
    wh = base / "warehouse" / "wh.duckdb"
    result = run_cli("run", "--input", export, "--out", out, "--warehouse", wh, "--reid-file", base / "reid.csv")
    assert result.returncode == 0, result.stderr
    return out


@pytest.mark.slow
def test_the_generator_writes_every_type_as_ndjson(export):
    names = sorted(p.name for p in export.iterdir())
    assert [n for n in names if n.endswith(".ndjson")] == sorted(f"{t}.000.ndjson" for t in TYPES)
    summary = json.loads((export / "synth.json").read_text())
    assert summary["parameters"]["format"] == "fhir"
    assert summary["fhir_resources"]["ServiceRequest"] == summary["counts"]["imaging_orders"]
    assert summary["fhir_resources"]["Procedure"] == summary["counts"]["procedures"]
    assert not [n for n in names if n.startswith(".")]  # the scratch extract is gone


@pytest.mark.slow
def test_the_generator_writes_the_manifest_a_client_saves_and_the_run_holds_the_export_to_it(export, audited):
    manifest = json.loads((export / "manifest.json").read_text())
    summary = json.loads((export / "synth.json").read_text())
    counted = {}
    for entry in manifest["output"]:
        counted[entry["type"]] = counted.get(entry["type"], 0) + entry["count"]
        assert (export / entry["url"].rsplit("/", 1)[1]).is_file()
    assert counted == {t: n for t, n in summary["fhir_resources"].items() if n}
    assert manifest["transactionTime"].endswith("T00:00:00Z") and manifest["error"] == []
    recorded = json.loads((audited / "csf_leak" / "run.json").read_text())["export_manifest"]
    assert recorded["resources_counted"] == counted and recorded["transaction_time"] == manifest["transactionTime"]


@pytest.mark.slow
@pytest.mark.parametrize("resource_type", TYPES)
def test_a_sample_of_every_type_is_valid_r4(export, resource_type):
    model = get_fhir_model_class(resource_type)
    checked = 0
    with (export / f"{resource_type}.000.ndjson").open(encoding="utf-8") as fh:
        for n, line in enumerate(fh):
            if n < 200 or n % SAMPLE_EVERY == 0:
                resource = json.loads(line)
                assert resource["resourceType"] == resource_type
                model.model_validate(resource)  # raises on anything R4 does not allow
                checked += 1
    assert checked >= min(n + 1, 200)


@pytest.mark.slow
def test_every_order_agrees_with_ground_truth(export, audited):
    truth = ground_truth(export, "csf_leak", "orders", "ground_truth_orders.csv")
    diff = truth_differences(truth, audited / "csf_leak" / "audited_orders.csv")
    assert diff.height == 0, f"{diff.height} orders differ from the ground truth:\n{diff.head(20)}"
    assert truth.height > 50
    truth_cases = set(ground_truth(export, "csf_leak", "cases", "ground_truth_cases.csv")["case_id"])
    assert set(pl.read_csv(audited / "csf_leak" / "cases.csv", infer_schema=False)["case_id"]) == truth_cases


@pytest.mark.slow
def test_local_exam_codes_are_read_by_their_code_system(export, audited):
    local = pl.read_csv(export / "local_code_map.csv", infer_schema=False)
    assert set(local["code_system"]) == {"http://hospital.example.org/fhir/CodeSystem/local-exam-codes"}
    orders = pl.read_csv(audited / "csf_leak" / "audited_orders.csv", infer_schema=False)
    dsm = orders.filter(pl.col("order_code") == "LOC-DSM")
    assert dsm.height and set(dsm["study_type"]) == {"dsm"}
    info = json.loads((audited / "csf_leak" / "run.json").read_text())
    assert info["input_format"] == "fhir" and info["counts"]["rejected_rows"] == {}


def _lines(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.mark.slow
def test_a_diagnosis_with_a_setting_is_in_an_encounter_of_that_class(export):
    """Each Condition refers to its Encounter, whose class (v3 ActCode) is the row's setting and whose
    diagnosis entry names the Condition; every such Encounter is valid R4."""
    model = get_fhir_model_class("Encounter")
    visits = {e["id"]: e for e in _lines(export / "Encounter.000.ndjson") if "diagnosis" in e}
    conditions = _lines(export / "Condition.000.ndjson")
    assert conditions and all("encounter" in c for c in conditions)  # the generator gives every diagnosis a setting
    for condition in conditions:
        visit = visits[condition["encounter"]["reference"].removeprefix("Encounter/")]
        assert visit["subject"] == condition["subject"]
        assert visit["diagnosis"][0]["condition"]["reference"] == "Condition/" + condition["id"]
    assert {v["class"]["system"] for v in visits.values()} == {ACT_CODE}
    assert {v["class"]["code"] for v in visits.values()} == {"AMB", "EMER", "IMP", "OBSENC", "VR"}
    for visit in list(visits.values())[:300]:
        model.model_validate(visit)


@pytest.mark.slow
def test_low_back_pain_verdicts_agree_with_the_same_extract_as_csv(audited, csv_audited):
    """Order by order, the export's low back pain verdicts are the CSV extract's: an inpatient diagnosis
    starts no episode in either (without the encounter's class every diagnosis would)."""
    fhir, csv = (
        pl.read_csv(out / LBP / "audited_orders.csv", infer_schema=False).fill_null("").select(LBP_COMPARED).sort("order_id")
        for out in (audited, csv_audited)
    )
    assert csv.height > 30 and fhir.height > 30
    assert fhir.equals(csv), "\n" + str(
        fhir.join(csv, on="order_id", how="full", suffix="_csv").filter(
            pl.any_horizontal(pl.col(c).ne_missing(pl.col(f"{c}_csv")) for c in LBP_COMPARED if c != "order_id")
        )
    )


@pytest.mark.slow
def test_an_export_whose_every_birth_date_is_a_year_finds_the_same_cases_but_those_across_an_age_bound(export, audited, tmp_path):
    """A de-identified export keeps the birth year alone (Patient.birthDate "1980", valid R4). Such a birth date was
    nulled: every age unknown, no case found. Now the age at the index date is a range (born on 31 December .. on
    1 January of that year): every case of the full-date export is found again, but the ones whose range crosses an
    age bound (CSF leak: 18; low back pain: 18 and 75/76), and no other; their orders read as before."""
    import shutil

    years = tmp_path / "export"
    shutil.copytree(export, years)
    born: dict[str, str] = {}
    patients = years / "Patient.000.ndjson"
    lines = []
    for resource in _lines(patients):
        if "birthDate" in resource:  # (the generator leaves a few patients without one)
            born[resource["id"]] = resource["birthDate"]
            resource["birthDate"] = resource["birthDate"][:4]
        lines.append(json.dumps(resource))
    patients.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    result = run_cli("run", "--input", years, "--out", out, "--warehouse", tmp_path / "wh.duckdb")
    assert result.returncode == 0, result.stderr
    patient_of = dict(
        pl.read_csv(audited.parent / "reid.csv", infer_schema=False).select("patient_key", "patient_id").iter_rows()
    )

    def settled(case: dict, index_column: str, highest: int | None) -> bool:
        """Whether the year alone settles the case's age band at its index date."""
        year, index = int(born[patient_of[case["patient_key"]]][:4]), date.fromisoformat(case[index_column])
        oldest = index.year - year  # born on 1 January
        youngest = oldest - (0 if (index.month, index.day) == (12, 31) else 1)  # born on 31 December
        return youngest >= 18 and (highest is None or oldest <= highest)

    dropped: dict[str, int] = {}
    for audit, index_column, highest in (("csf_leak", "index_local_date", None), (LBP, "index_date", 75)):
        full = pl.read_csv(audited / audit / "cases.csv", infer_schema=False)
        kept = {c["case_id"] for c in full.iter_rows(named=True) if settled(c, index_column, highest)}
        found = pl.read_csv(out / audit / "cases.csv", infer_schema=False)
        assert set(found["case_id"]) == kept, audit
        assert kept, audit
        dropped[audit] = full.height - len(kept)
        compared = ["order_id", "case_id", "verdict", "reasons"]
        before = pl.read_csv(audited / audit / "audited_orders.csv", infer_schema=False).select(compared)
        after = pl.read_csv(out / audit / "audited_orders.csv", infer_schema=False).select(compared)
        assert after.sort("order_id").equals(before.filter(pl.col("case_id").is_in(list(kept))).sort("order_id")), audit
    assert sum(dropped.values()) > 0, dropped  # the generator's ages do cross a bound (low back pain: 18, 75/76)
