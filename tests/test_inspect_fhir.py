"""`order-audit inspect` on a FHIR Bulk Data export: the code systems of the orders and procedures, the order codes
no map knows and the starter local_code_map.csv, as an extract gets them (docs/FHIR.md gave a warehouse query)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from conftest import run_cli, write_small_input
from fhir_export import export_extract

LOCAL = "http://hospital.example.org/fhir/CodeSystem/exams"
IMAGING = [{"coding": [{"system": "http://snomed.info/sct", "code": "363679005"}]}]


def _order(rid: str, codings: list[dict], text: str | None = None, status: str = "completed", category=IMAGING) -> str:
    code: dict = {"coding": codings} | ({"text": text} if text else {})
    resource = {
        "resourceType": "ServiceRequest",
        "id": rid,
        "status": status,
        "intent": "order",
        "category": category,
        "code": code,
        "subject": {"reference": "Patient/MRN-1"},
        "authoredOn": "2025-06-07T10:00:00-04:00",
    }
    return json.dumps(resource)


# the site's orders beside the four CPT-coded ones of the small extract, in a second file
ORDERS = [
    _order("L1", [{"system": LOCAL, "code": "LCL-MRL", "display": "MRI L-spine (local)"}]),
    _order("L2", [{"system": LOCAL, "code": "lcl-mrl ", "display": "MRI L-spine (local)"}], text="MR LUMBAR SPINE WO"),
    _order("L3", [{"system": LOCAL, "code": "LCL-MRL"}], status="draft"),  # not placed: left out, not counted
    _order(
        "L4",
        [{"system": LOCAL, "code": "LCL-LAB"}],
        category=[{"coding": [{"system": "http://snomed.info/sct", "code": "108252007"}]}],
    ),
    # CPT comes first whatever the order of the codings: 72148 is known
    _order("L5", [{"system": LOCAL, "code": "LCL-X"}, {"system": "http://www.ama-assn.org/go/cpt", "code": "72148"}]),
    _order("L6", [{"code": "XR-99", "display": "XR special"}]),  # a coding without a system
    _order("L7", [{"system": "http://loinc.org", "code": "24558-9", "display": "MR lumbar spine"}]),
    _order("L8", [{"system": LOCAL, "code": "99999"}]),  # CPT's form: imaging outside the audits, not listed
    _order("L9", [{"system": "http://snomed.info/sct", "code": "241615005", "display": "MRI of lumbar spine"}]),
    '{"resourceType":"ServiceRequest","id":',  # a broken line: a run's reject, no code of anyone's
]
PCS = "http://www.cms.gov/Medicare/Coding/ICD10"
PROCEDURE = {
    "resourceType": "Procedure",
    "id": "PR9",
    "status": "completed",
    "code": {"coding": [{"system": PCS, "code": "009U3ZX"}]},
    "subject": {"reference": "Patient/MRN-2"},
    "performedDateTime": "2025-06-03T09:00:00-04:00",
}
UNKNOWN = [
    {"code": "LCL-MRL", "orders": 2, "system": LOCAL, "code_system": LOCAL, "name": "MR LUMBAR SPINE WO"},
    {
        "code": "241615005",
        "orders": 1,
        "system": "SNOMED CT",
        "code_system": "http://snomed.info/sct",
        "name": "MRI of lumbar spine",
    },
    {"code": "24558-9", "orders": 1, "system": "LOINC", "code_system": "http://loinc.org", "name": "MR lumbar spine"},
    {"code": "XR-99", "orders": 1, "system": "no system", "code_system": None, "name": "XR special"},
]


@pytest.fixture
def export(tmp_path) -> Path:
    folder = tmp_path / "export"
    export_extract(write_small_input(tmp_path / "csv"), folder, lines_per_file=1000, variety=False)
    (folder / "ServiceRequest.001.ndjson").write_text("\n".join(ORDERS) + "\n", encoding="utf-8")
    with (folder / "Procedure.000.ndjson").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(PROCEDURE) + "\n")
    (folder / "local_code_map.csv").unlink(missing_ok=True)
    return folder


def test_inspect_lists_an_exports_codes(export):
    r = run_cli("inspect", "--input", export, "--json")
    assert r.returncode == 0, r.stderr
    found = json.loads(r.stdout)
    assert found["code_systems"] == {
        "imaging_orders": {"no system": 1, "CPT": 5, "LOINC": 1, LOCAL: 3, "SNOMED CT": 1},
        "procedures": {"CPT": 2, "ICD-10-PCS": 1},
    }
    assert found["unknown_codes"] == UNKNOWN
    text = run_cli("inspect", "--input", export).stdout.splitlines()
    # files counted as every count is ("1 file(s)" read as no other count of the product)
    assert "  ServiceRequest 2 files: ServiceRequest.000.ndjson, ServiceRequest.001.ndjson" in text
    assert "  Patient        1 file: Patient.000.ndjson" in text
    at = text.index("imaging_orders (the coding a run reads):")
    assert text[at:-1] == [
        "imaging_orders (the coding a run reads):",
        f"  codes      CPT 45.5%, LOINC 9.1%, SNOMED CT 9.1%, {LOCAL} 27.3%, no system 9.1% of 11",
        f"  no map     LCL-MRL 'MR LUMBAR SPINE WO': 2 orders ({LOCAL}): not evaluable until mapped",
        "             241615005 'MRI of lumbar spine': 1 order (SNOMED CT): not evaluable until mapped",
        "             24558-9 'MR lumbar spine': 1 order (LOINC): not evaluable until mapped",
        "             XR-99 'XR special': 1 order (no system): not evaluable until mapped",
        "procedures (the coding a run reads):",
        "  codes      CPT 66.7%, ICD-10-PCS 33.3% of 3",
        "             CHECK: 1 procedure not coded in CPT; the audits' value sets list procedures by CPT code, so these are"
        " no audit's index procedure (export the CPT code where the EHR has one)",
    ]


def test_inspect_writes_an_exports_starter_code_map_and_the_run_agrees(export, tmp_path):
    """The codes listed are the order codes a run leaves unmapped (the warehouse query docs/FHIR.md gave)."""
    site = tmp_path / "site"
    site.mkdir()
    r = run_cli("inspect", "--input", export, "--write-config", site / "order-audit.toml")
    assert r.returncode == 0, r.stderr
    source = "order-audit inspect: {}; fill study_type, modality, regions, contrast"
    assert (site / "local_code_map.csv").read_text(encoding="utf-8").splitlines() == [
        "code_system,code,study_type,modality,regions,contrast,description,valid_from,valid_to,source",
        f'{LOCAL},LCL-MRL,,,,,MR LUMBAR SPINE WO,2000-01-01,,"{source.format("2 orders")}"',
        f'http://snomed.info/sct,241615005,,,,,MRI of lumbar spine,2000-01-01,,"{source.format("1 order")}"',
        f'LOINC,24558-9,,,,,MR lumbar spine,2000-01-01,,"{source.format("1 order")}"',
        f'LOCAL,XR-99,,,,,XR special,2000-01-01,,"{source.format("1 order")}"',
    ]
    assert (site / "order-audit.toml").read_text(encoding="utf-8") == (
        "# order-audit starter config, written by `order-audit inspect` from a FHIR Bulk Data export.\n"
        "# Lines marked CHECK need a person's decision. Every setting: examples/order-audit.toml; where the\n"
        "# department, the code systems and the imaging categories come from ([fhir]): docs/FHIR.md.\n"
        "\n"
        'input_format = "fhir"\n'
        'site_timezone = "America/New_York"   # CHECK: the zone the months are counted in\n'
        '# local_code_map = "local_code_map.csv"   # CHECK: fill in study_type, modality, regions and contrast for the'
        " codes listed, then remove the #\n"
    )
    wh = tmp_path / "wh.duckdb"
    r = run_cli("run", "--input", export, "--config", site / "order-audit.toml", "--warehouse", wh, "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    con = duckdb.connect(str(wh), read_only=True)
    unmapped = con.execute(
        "SELECT order_code, count(*) FROM src_imaging_orders "
        "WHERE upper(trim(order_code)) NOT IN (SELECT upper(trim(code)) FROM ref_imaging_codes) "
        "AND NOT regexp_matches(trim(order_code), '^[0-9]{4}[0-9A-Z]$') GROUP BY ALL ORDER BY 2 DESC, 1"
    ).fetchall()
    con.close()
    assert unmapped == [(u["code"], u["orders"]) for u in UNKNOWN]
