"""Hand-written resources shaped like the FHIR specification's examples: valid R4 (checked by
fhir.resources, a library we did not write), and read by the audit as the mapping says.

They carry what real exports carry and the generator does not: narrative, identifiers, several
codings (SNOMED CT beside CPT), a performedPeriod, an indication given only as a reference to a
Condition dated by its onset, a practitioner named by NPI, a department as an encounter's
Location, a procedure's department as its own Location.
"""

from __future__ import annotations

import json

import polars as pl
import pytest
from conftest import run_cli
from fhir.resources.R4B import get_fhir_model_class

SCT, CPT, ICD = "http://snomed.info/sct", "http://www.ama-assn.org/go/cpt", "http://hl7.org/fhir/sid/icd-10-cm"
NARRATIVE = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Example</div>'}
IMAGING = [{"coding": [{"system": SCT, "code": "363679005", "display": "Imaging"}]}]

PATIENT = {
    "resourceType": "Patient",
    "id": "example",
    "meta": {"lastUpdated": "2025-03-10T10:00:00Z"},
    "text": NARRATIVE,
    "identifier": [{"use": "usual", "system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}],
    "active": True,
    "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", "James"]}],
    "gender": "male",
    "birthDate": "1974-12-25",
    "address": [{"use": "home", "line": ["534 Erewhon St"], "city": "PleasantVille", "postalCode": "3999"}],
}
PRACTITIONER = {
    "resourceType": "Practitioner",
    "id": "example",
    "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}],
    "active": True,
    "name": [{"family": "Careful", "given": ["Adam"], "prefix": ["Dr"]}],
}
LOCATIONS = [
    {"resourceType": "Location", "id": "1", "status": "active", "name": "South Wing, second floor", "mode": "instance"},
    {
        "resourceType": "Location",
        "id": "neuro",
        "status": "active",
        "name": "Neurology clinic",
        "physicalType": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/location-physical-type", "code": "wi"}]},
    },
]
ENCOUNTER = {
    "resourceType": "Encounter",
    "id": "f201",
    "status": "finished",
    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
    "serviceType": {"coding": [{"system": SCT, "code": "394591006", "display": "Neurology"}]},
    "subject": {"reference": "Patient/example"},
    "period": {"start": "2025-03-07T09:30:00-05:00", "end": "2025-03-07T10:30:00-05:00"},
    "location": [{"location": {"reference": "Location/neuro"}, "status": "completed"}],
}
PROCEDURE = {
    "resourceType": "Procedure",
    "id": "example-lp",
    "text": NARRATIVE,
    "status": "completed",
    "code": {
        "coding": [
            {"system": SCT, "code": "277762005", "display": "Lumbar puncture"},
            {"system": CPT, "code": "62270"},
        ],
        "text": "Diagnostic lumbar puncture",
    },
    "subject": {"reference": "Patient/example"},
    "performedPeriod": {"start": "2025-03-03T09:00:00-05:00", "end": "2025-03-03T09:40:00-05:00"},
    "performer": [{"actor": {"reference": "Practitioner/example", "display": "Dr Adam Careful"}}],
    "location": {"reference": "Location/1"},
}
CONDITION = {
    "resourceType": "Condition",
    "id": "pdph",
    "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
    "verificationStatus": {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]
    },
    "category": [
        {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "encounter-diagnosis"}]}
    ],
    "code": {"coding": [{"system": SCT, "code": "230468007"}, {"system": ICD, "code": "G97.1"}], "text": "Post-LP headache"},
    "subject": {"reference": "Patient/example"},
    "onsetDateTime": "2025-03-04T08:00:00-05:00",
}


def _order(rid: str, cpt: str, authored: str, **extra) -> dict:
    return {
        "resourceType": "ServiceRequest",
        "id": rid,
        "identifier": [{"system": "http://www.acme.com/identifiers/accession", "value": rid.upper()}],
        "status": "active",
        "intent": "original-order",
        "category": IMAGING,
        "code": {"coding": [{"system": CPT, "code": cpt}], "text": f"CPT {cpt}"},
        "subject": {"reference": "Patient/example"},
        "encounter": {"reference": "Encounter/f201"},
        "occurrenceDateTime": authored,
        "authoredOn": authored,
        "requester": {"reference": "Practitioner/example", "display": "Dr Adam Careful"},
        "reasonReference": [{"reference": "Condition/pdph"}],
        **extra,
    }


ORDERS = [
    _order("mri-c", "72156", "2025-03-07T10:00:00-05:00"),
    _order("mri-t", "72157", "2025-03-07T10:02:00-05:00"),
    _order("mri-l", "72158", "2025-03-07T10:04:00-05:00"),
]
RESOURCES = {
    "Patient": [PATIENT],
    "Practitioner": [PRACTITIONER],
    "Location": LOCATIONS,
    "Encounter": [ENCOUNTER],
    "Procedure": [PROCEDURE],
    "Condition": [CONDITION],
    "ServiceRequest": ORDERS,
}


ALL = [r for rs in RESOURCES.values() for r in rs]


@pytest.mark.parametrize("resource", ALL, ids=[f"{r['resourceType']}/{r['id']}" for r in ALL])
def test_example_is_valid_r4(resource):
    model = get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    assert model.id == resource["id"]


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    base = tmp_path_factory.mktemp("fhir_examples")
    export = base / "export"
    export.mkdir()
    for resource_type, resources in RESOURCES.items():
        (export / f"{resource_type}.ndjson").write_text("".join(json.dumps(r) + "\n" for r in resources), encoding="utf-8")
    out = base / "out"
    result = run_cli("run", "--input", export, "--out", out, "--no-validate")
    assert result.returncode == 0, result.stderr
    return {
        "orders": pl.read_csv(out / "csf_leak" / "audited_orders.csv", infer_schema=False),
        "cases": pl.read_csv(out / "csf_leak" / "cases.csv", infer_schema=False),
        "run": json.loads((out / "csf_leak" / "run.json").read_text()),
    }


def test_the_examples_read_as_the_mapping_says(audited):
    orders = audited["orders"].sort("order_id")
    assert orders["order_id"].to_list() == ["mri-c", "mri-l", "mri-t"]
    # complete spine without and with contrast, 4 days after the lumbar puncture
    assert set(orders["verdict"]) == {"appropriate"} and set(orders["reasons"]) == {"mri_complete_spine_wwo"}
    assert set(orders["ordering_department"]) == {"Neurology clinic"}  # Encounter.location -> Location.name
    assert set(orders["ordering_provider_id"]) == {"1234567893"}  # the Practitioner's NPI
    assert set(orders["indication_codes"]) == {"G97.1"}  # reasonReference -> Condition's ICD-10-CM coding
    case = audited["cases"].row(0, named=True)
    assert case["case_id"] == "example-lp"
    assert case["index_code"] == "62270"  # the CPT coding, not the SNOMED one listed first
    assert case["department"] == "South Wing, second floor"  # Procedure.location -> Location.name
    assert case["age_years"] == "50.0"  # Patient.birthDate 1974-12-25, procedure 2025-03-03
    assert case["first_evidence_at"] == "2025-03-04T13:00:00Z"  # Condition.onsetDateTime, no recordedDate
    assert audited["run"]["left_out"] == [] and audited["run"]["counts"]["rejected_rows"] == {}


def _contained_reason(order: dict) -> dict:
    """The order naming its indication by a Condition it contains (R4 References: '#id'), as EHRs export an order's
    reason when the problem-list entry is not exported on its own."""
    contained = {k: v for k, v in CONDITION.items() if k not in ("id", "clinicalStatus", "category")} | {"id": "reason1"}
    return order | {"contained": [contained], "reasonReference": [{"reference": "#reason1"}]}


@pytest.mark.parametrize("order", [_contained_reason(o) for o in ORDERS[:1]], ids=["contained"])
def test_an_order_with_a_contained_condition_is_valid_r4(order):
    assert get_fhir_model_class("ServiceRequest").model_validate(order).contained[0].id == "reason1"


def test_a_reason_named_by_a_contained_condition_is_the_orders_indication(tmp_path):
    """A reasonReference to a contained Condition ('#reason1') was read as no indication, without a word: an order
    excluded for its red-flag indication was audited as inappropriate (a FHIR integration engineer's review). Its
    ICD-10-CM coding is now the order's, as a reasonReference to an exported Condition's is."""
    export = tmp_path / "export"
    export.mkdir()
    resources = dict(RESOURCES, Condition=[], ServiceRequest=[_contained_reason(o) for o in ORDERS])
    for resource_type, items in resources.items():
        (export / f"{resource_type}.ndjson").write_text("".join(json.dumps(r) + "\n" for r in items), encoding="utf-8")
    out = tmp_path / "out"
    result = run_cli("run", "--input", export, "--out", out, "--no-validate", "--audit", "csf_leak")
    assert result.returncode == 0, result.stderr
    orders = pl.read_csv(out / "csf_leak" / "audited_orders.csv", infer_schema=False)
    assert set(orders["indication_codes"]) == {"G97.1"}, orders.select("order_id", "indication_codes")


def test_a_refuted_contained_condition_is_no_indication(tmp_path):
    """A contained Condition refuted (or entered in error) counted as the order's indication, where an exported one
    is left out: a refuted red flag could exclude the order (a hostile review)."""
    export = tmp_path / "export"
    export.mkdir()
    refuted = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "refuted"}]}
    orders = [_contained_reason(o) for o in ORDERS]
    orders[0]["contained"][0]["verificationStatus"] = refuted
    resources = dict(RESOURCES, Condition=[], ServiceRequest=orders)
    for resource_type, items in resources.items():
        (export / f"{resource_type}.ndjson").write_text("".join(json.dumps(r) + "\n" for r in items), encoding="utf-8")
    out = tmp_path / "out"
    result = run_cli("run", "--input", export, "--out", out, "--no-validate", "--audit", "csf_leak")
    assert result.returncode == 0, result.stderr
    codes = dict(
        pl.read_csv(out / "csf_leak" / "audited_orders.csv", infer_schema=False).select("order_id", "indication_codes").rows()
    )
    assert codes == {"mri-c": None, "mri-t": "G97.1", "mri-l": "G97.1"}, codes
