"""A Condition's setting and position come from its Encounter: Encounter.class and Encounter.diagnosis.

Hand-written Encounters and Conditions (shaped like the FHIR specification's examples) added to an
export: each class code gives its contract setting, a NullFlavor none, another code itself; the
diagnosis entry that names the Condition gives its rank and principal use, also when the Condition
does not name its encounter.
"""

from __future__ import annotations

import json

import polars as pl
import pytest
from conftest import write_small_input
from fhir_export import export_extract

from pipeline.config import load_config
from pipeline.ingest import load

ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
PRINCIPAL = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/ex-diagnosistype", "code": "principal"}]}
SECONDARY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/diagnosis-role", "code": "CM"}]}


def _encounter(eid: str, code: str, system: str = ACT, diagnosis: list | None = None) -> dict:
    res = {"resourceType": "Encounter", "id": eid, "status": "finished", "class": {"system": system, "code": code}}
    res["subject"] = {"reference": "Patient/MRN-2"}
    return {**res, "diagnosis": diagnosis} if diagnosis else res


def _condition(cid: str, encounter: str | None) -> dict:
    res = {
        "resourceType": "Condition",
        "id": cid,
        "code": {"coding": [{"system": ICD, "code": "M54.50"}]},
        "subject": {"reference": "Patient/MRN-2"},
        "recordedDate": "2025-06-01T09:00:00-04:00",
    }
    return {**res, "encounter": {"reference": f"Encounter/{encounter}"}} if encounter else res


# condition id -> (its encounter: class code [, system, diagnosis entries], whether it names it, expected row)
CASES = {
    "C-amb": ("AMB", ACT, None, True, ("outpatient", None, None)),
    "C-emer": ("EMER", ACT, None, True, ("emergency", None, None)),
    "C-imp": ("IMP", ACT, None, True, ("inpatient", None, None)),
    "C-acute": ("ACUTE", ACT, None, True, ("inpatient", None, None)),
    "C-obs": ("OBSENC", ACT, None, True, ("observation", None, None)),
    "C-vr": ("VR", ACT, None, True, ("telehealth", None, None)),
    "C-unk": ("UNK", "http://terminology.hl7.org/CodeSystem/v3-NullFlavor", None, True, (None, None, None)),
    "C-hh": ("HH", ACT, None, True, ("HH", None, None)),
    "C-principal": ("AMB", ACT, [{"use": PRINCIPAL, "rank": 1}], True, ("outpatient", True, 1)),
    "C-listed": ("EMER", ACT, [{"use": SECONDARY, "rank": 2}], False, ("emergency", False, 2)),
}


@pytest.fixture(scope="module")
def diagnoses(tmp_path_factory) -> pl.DataFrame:
    base = tmp_path_factory.mktemp("fhir_setting")
    export = base / "export"
    export_extract(write_small_input(base / "csv"), export, lines_per_file=1000, variety=False)
    encounters, conditions = [], [_condition("C-none", None)]
    for cid, (code, system, entries, named, _) in CASES.items():
        eid = "E-" + cid[2:]
        entries = [{"condition": {"reference": f"Condition/{cid}"}, **e} for e in entries or []]
        encounters.append(_encounter(eid, code, system, entries))
        conditions.append(_condition(cid, eid if named else None))
    for name, items in (("Encounter.001.ndjson", encounters), ("Condition.001.ndjson", conditions)):
        (export / name).write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    cfg = load_config()
    prepared = load.prepare_inputs(load.find_inputs(export, cfg), cfg, base)
    return pl.read_parquet(prepared["diagnoses"].typed_parquet)


def test_each_condition_gets_its_encounters_setting_and_position(diagnoses):
    assert diagnoses.height == 1 + 1 + len(CASES)  # the small extract's one diagnosis, C-none, CASES
    rows = diagnoses.sort("source_line").select("setting", "is_principal", "diagnosis_rank").rows()
    # the Conditions are read in file order: the small extract's first, then C-none, then CASES
    assert rows[-len(CASES) - 1 :] == [(None, None, None)] + [want for *_, want in CASES.values()]
