"""Shapes real FHIR exporters write that the mapping reads as a site means them (docs/FHIR.md).

* dates exported as instants at UTC midnight (``"authoredOn": "2025-06-06T00:00:00Z"``): a load whose every time
  (ten or more) is UTC midnight is read as dates, each its UTC calendar date, as a bare date is; read as instants,
  in a US site zone they fell on the evening before and an order 74 hours after its procedure was premature;
* an Encounter that lists several locations (a bed before its ward, the moves of a stay, a planned transfer): the
  department is where the patient was at the order's time, at the department's level (a bed or a room stands for
  the ward it is part of); the first location, as before, named a bed, or a ward the patient had left;
* ``urn:uuid:`` references (a Bundle's, left by Bundle-to-NDJSON converters): the resource of the expected type whose
  id is that uuid; a subject that resolves to no Patient is a reject as an unknown Patient is, and a requester that
  is a Patient's uuid (or no Practitioner's) is no provider published.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import duckdb
import polars as pl
import pytest
from conftest import files_showing, run_cli, write_small_input
from fhir_export import export_extract

from pipeline.ingest.fhir.settings import NPI


@pytest.fixture
def export(tmp_path) -> Path:
    d = tmp_path / "export"
    export_extract(write_small_input(tmp_path / "csv"), d, lines_per_file=1000, variety=False)
    (d / "manifest.json").unlink(missing_ok=True)  # the tests change the counts of resources
    return d


def _resources(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write(path: Path, resources: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in resources), encoding="utf-8")


def _run(tmp_path: Path, export: Path, *args: str) -> tuple[Path, Path]:
    out, wh = tmp_path / "out", tmp_path / "wh.duckdb"
    r = run_cli("run", "--input", export, "--out", out, "--warehouse", wh, "--no-validate", *args)
    assert r.returncode == 0, r.stderr
    return out, wh


def _orders(out: Path) -> dict[str, dict]:
    orders = pl.read_csv(out / "csf_leak" / "audited_orders.csv", infer_schema=False)
    return {row["order_id"]: row for row in orders.iter_rows(named=True)}


# ----------------------------------------------------------------------------------------------
# 1. dates exported as UTC midnight


def _orders_at_utc_midnight(export: Path, odd: str | None = None) -> None:
    """PR1 at 22:00 New York on 2025-06-02; every order (twelve) authored on 2025-06-06 as UTC midnight, but
    ``odd``'s, which is at 10:00 UTC when given. O1's date starts 74 hours after PR1 (not premature); as an
    instant it is 20:00 New York on 2025-06-05, 70 hours after (premature)."""
    procedures = _resources(export / "Procedure.000.ndjson")
    _write(
        export / "Procedure.000.ndjson",
        [p | {"performedDateTime": "2025-06-02T22:00:00-04:00"} if p["id"] == "PR1" else p for p in procedures],
    )
    held = _resources(export / "ServiceRequest.000.ndjson")
    orders = held + [r | {"id": f"{r['id']}-{copy}"} for copy in ("b", "c") for r in held]
    _write(
        export / "ServiceRequest.000.ndjson",
        [r | {"authoredOn": "2025-06-06T10:00:00Z" if r["id"] == odd else "2025-06-06T00:00:00Z"} for r in orders],
    )


def test_a_load_of_utc_midnights_is_read_as_dates(tmp_path, export):
    _orders_at_utc_midnight(export)
    out, wh = _run(tmp_path, export)
    orders = _orders(out)
    assert len(orders) == 12
    assert [(orders[o]["hours_since_index"], orders[o]["is_premature"]) for o in ("O1", "O1-b")] == [("74.0", "false")] * 2
    con = duckdb.connect(str(wh), read_only=True)
    try:
        read = con.execute(
            "SELECT DISTINCT strftime(ordered_at AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M'), ordered_at_is_date"
            " FROM src_imaging_orders"
        ).fetchall()
    finally:
        con.close()
    assert read == [("2025-06-06 04:00", True)]  # the site's midnight of 2025-06-06 (EDT), flagged a date


def test_a_load_with_one_time_of_day_is_read_as_delivered(tmp_path, export):
    _orders_at_utc_midnight(export, odd="O4-c")
    out, _ = _run(tmp_path, export)
    o1 = _orders(out)["O1"]
    assert (o1["hours_since_index"], o1["is_premature"], o1["verdict"]) == ("70.0", "true", "inappropriate")


def test_a_parquet_column_of_utc_midnights_is_read_as_dates_too(tmp_path):
    """The same rule for an extract: a typed Parquet Datetime(UTC) column of dates (what pandas writes of a date
    column made timestamps) had the same evening-before instants."""
    folder = write_small_input(tmp_path / "in")
    (folder / "imaging_orders.csv").unlink()
    pl.DataFrame(
        {
            "order_id": [f"O{i}" for i in range(1, 13)],
            "patient_id": ["MRN-1"] * 12,
            "ordered_at": pl.Series([dt.datetime(2025, 6, 6)] * 12).dt.replace_time_zone("UTC"),
            "order_code": ["72156", "72157", "72158"] * 4,
            "ordering_department": ["Neurology"] * 12,
            "indication_codes": ["G97.1"] * 12,
            "status": ["completed"] * 12,
        }
    ).write_parquet(folder / "imaging_orders.parquet")
    procedures = (folder / "procedures.csv").read_text(encoding="utf-8")
    (folder / "procedures.csv").write_text(procedures.replace("2025-06-02 09:00:00", "2025-06-02 22:00:00"), encoding="utf-8")
    out, _ = _run(tmp_path, folder)
    assert {(o["hours_since_index"], o["is_premature"]) for o in _orders(out).values()} == {("74.0", "false")}


# ----------------------------------------------------------------------------------------------
# 2. an Encounter's several locations

PHYSICAL = "http://terminology.hl7.org/CodeSystem/location-physical-type"


def _location(lid: str, name: str, kind: str, part_of: str | None = None) -> dict:
    res = {
        "resourceType": "Location",
        "id": lid,
        "status": "active",
        "name": name,
        "physicalType": {"coding": [{"system": PHYSICAL, "code": kind}]},
    }
    return res | ({"partOf": {"reference": f"Location/{part_of}"}} if part_of else {})


def _at(lid: str, display: str, status: str, start: str | None = None, end: str | None = None, kind: str | None = None):
    """One Encounter.location entry, as R4's examples write it."""
    entry = {"location": {"reference": f"Location/{lid}", "display": display}, "status": status}
    period = {k: v for k, v in (("start", start), ("end", end)) if v}
    if period:
        entry["period"] = period
    if kind:
        entry["physicalType"] = {"coding": [{"system": PHYSICAL, "code": kind}]}
    return entry


def test_an_encounters_department_is_where_the_patient_was_at_the_order(tmp_path, export):
    """MRN-1's stay: bed 12 of ward 4 North until 10:02, then the ICU (active), a rehabilitation bed planned: O1
    (10:00) was ordered on 4 North, O2 (10:05) in the ICU. O3's encounter gives no periods: the active location.
    MRN-2's: a bed of a room of the emergency department, and a transfer planned: the department, not the bed."""
    locations = _resources(export / "Location.000.ndjson") + [
        _location("ward-4n", "Neurology ward 4 North", "wa"),
        _location("bed-12", "Bed 12", "bd", "ward-4n"),
        _location("icu", "Intensive care unit", "wa"),
        _location("rehab", "Rehabilitation", "wa"),
        _location("ed", "Emergency department", "wa"),
        _location("room-3", "ED room 3", "ro", "ed"),
        _location("bed-7", "ED bed 7", "bd", "room-3"),
    ]
    _write(export / "Location.000.ndjson", locations)
    stay = [
        _at("bed-12", "Bed 12", "completed", "2025-06-05T08:00:00-04:00", "2025-06-06T10:02:00-04:00", kind="bd"),
        _at("ward-4n", "4 North", "completed", "2025-06-05T08:00:00-04:00", "2025-06-06T10:02:00-04:00"),
        _at("icu", "ICU", "active", "2025-06-06T10:02:00-04:00"),
        _at("rehab", "Rehabilitation", "planned", "2025-06-09"),
    ]
    no_periods = [_at("ward-4n", "4 North", "completed"), _at("icu", "ICU", "active")]
    emergency = [_at("bed-7", "ED bed 7", "active", "2025-06-04T07:00:00-04:00"), _at("rehab", "Rehabilitation", "planned")]
    encounters = _resources(export / "Encounter.000.ndjson")
    by_patient = {e["subject"]["reference"]: e for e in encounters}
    mrn1, mrn2 = by_patient["Patient/MRN-1"], by_patient["Patient/MRN-2"]
    added = {**mrn1, "id": "enc-no-periods", "location": no_periods}
    _write(
        export / "Encounter.000.ndjson",
        [e | {"location": stay} if e is mrn1 else e | {"location": emergency} if e is mrn2 else e for e in encounters] + [added],
    )
    orders = _resources(export / "ServiceRequest.000.ndjson")
    _write(
        export / "ServiceRequest.000.ndjson",
        [o | {"encounter": {"reference": "Encounter/enc-no-periods"}} if o["id"] == "O3" else o for o in orders],
    )
    out, _ = _run(tmp_path, export)
    departments = {o: row["ordering_department"] for o, row in _orders(out).items()}
    assert departments == {
        "O1": "Neurology ward 4 North",
        "O2": "Intensive care unit",
        "O3": "Intensive care unit",
        "O4": "Emergency department",
    }


def test_a_location_entry_in_another_shape_is_a_reject_naming_file_line_and_element(tmp_path, export):
    """The entries' status, period and physicalType are read now: a period written as a text (not R4's Period) is a
    reject of the Encounter's line, with the file and the line, as any element in another shape, never a guess."""
    encounters = _resources(export / "Encounter.000.ndjson")
    first = encounters[0]
    bad = first | {"location": [*first["location"], {"location": {"reference": "Location/x"}, "period": "2025-06-05"}]}
    _write(export / "Encounter.000.ndjson", [bad, *encounters[1:]])
    out, _ = _run(tmp_path, export)
    rejects = pl.read_csv(out / "csf_leak" / "rejects.csv", infer_schema=False)
    found = (
        rejects.filter(pl.col("reason").str.contains("Encounter.location.period"))
        .select("source_file", "source_line", "reason")
        .rows()
    )
    assert found == [
        (
            "Encounter.000.ndjson",
            "1",
            "element Encounter.location.period is a single value where FHIR R4 has an object: it cannot be read as R4"
            " (an R5 or a damaged export); re-export it in R4's shape",
        )
    ], rejects.rows()


# ----------------------------------------------------------------------------------------------
# 3. urn:uuid: references

LOOKED_UP = ("Patient", "Encounter", "Location", "Condition", "Practitioner")


def _uuid_of(rtype: str, rid: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{rtype}/{rid}"))


def _as_urn_uuids(value, ids: dict[str, str]):
    """Every 'Type/id' reference to a looked-up resource written as 'urn:uuid:<its uuid>', as a converter leaves it."""
    if isinstance(value, dict):
        return {
            k: f"urn:uuid:{ids[v]}" if k == "reference" and isinstance(v, str) and v in ids else _as_urn_uuids(v, ids)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_as_urn_uuids(v, ids) for v in value]
    return value


def _urn_uuid_export(export: Path) -> dict[str, str]:
    """The export with every looked-up resource's id a uuid and every reference to one a urn:uuid; and a Practitioner
    (with an NPI) as O1's requester, MRN-1 (a Patient) as O2's, a uuid no resource has as O3's."""
    _write(
        export / "Practitioner.000.ndjson",
        [
            {
                "resourceType": "Practitioner",
                "id": "dr-1",
                "identifier": [{"system": NPI, "value": "1234567893"}],
                "name": [{"family": "Careful"}],
            }
        ],
    )
    files = {path: _resources(path) for path in sorted(export.glob("*.ndjson"))}
    ids = {
        f"{r['resourceType']}/{r['id']}": _uuid_of(r["resourceType"], r["id"])
        for resources in files.values()
        for r in resources
        if r["resourceType"] in LOOKED_UP
    }
    requesters = {"O1": "Practitioner/dr-1", "O2": "Patient/MRN-1", "O3": "Practitioner/not-exported"}
    ids["Practitioner/not-exported"] = _uuid_of("Practitioner", "not-exported")
    for path, resources in files.items():
        changed = []
        for r in resources:
            if r["resourceType"] == "ServiceRequest" and r["id"] in requesters:
                r = r | {"requester": {"reference": requesters[r["id"]]}}
            r = _as_urn_uuids(r, ids)
            if r["resourceType"] in LOOKED_UP:
                r = r | {"id": ids[f"{r['resourceType']}/{r['id']}"]}
            changed.append(r)
        _write(path, changed)
    return ids


def test_urn_uuid_references_resolve_to_the_resources_whose_ids_they_are(tmp_path, export):
    """The same export twice: as Bulk Data writes references, then with every looked-up resource's id a uuid and
    every reference a urn:uuid. The same verdicts, departments, indications; every order was a reject before."""
    plain, _ = _run(tmp_path / "plain", export)
    ids = _urn_uuid_export(export)
    assert "urn:uuid:" in (export / "ServiceRequest.000.ndjson").read_text(encoding="utf-8")
    out, _ = _run(tmp_path / "uuids", export)
    compared = ("verdict", "reasons", "ordering_department", "indication_codes", "hours_since_index")
    before, after = _orders(plain), _orders(out)
    assert {o: [row[c] for c in compared] for o, row in after.items()} == {
        o: [row[c] for c in compared] for o, row in before.items()
    }
    assert len(after) == 4
    providers = {o: after[o]["ordering_provider_id"] for o in ("O1", "O2", "O3")}
    # the Practitioner's NPI; a Patient's uuid and a uuid no Practitioner has: no provider, never the uuid as written
    assert providers == {"O1": "1234567893", "O2": None, "O3": None}
    patient_uuids = [v for k, v in ids.items() if k.startswith("Patient/")]
    assert patient_uuids and files_showing(out, *patient_uuids) == []


def test_a_urn_uuid_subject_no_patient_has_is_a_reject_as_an_unknown_patient(tmp_path, export):
    """A subject's urn:uuid that no Patient of the export has: the reject an unknown Patient/<id> gets, with the
    file and the line (it was 'not a reference to a Patient', as every urn:uuid subject was)."""
    _urn_uuid_export(export)
    orders = _resources(export / "ServiceRequest.000.ndjson")
    lost = {"reference": f"urn:uuid:{_uuid_of('Patient', 'not-exported')}"}
    _write(export / "ServiceRequest.000.ndjson", [o | {"subject": lost} if o["id"] == "O4" else o for o in orders])
    out, _ = _run(tmp_path, export)
    rejects = pl.read_csv(out / "csf_leak" / "rejects.csv", infer_schema=False)
    assert rejects.select("source_file", "source_line", "column_name", "value", "reason").rows() == [
        ("ServiceRequest.000.ndjson", "4", "ServiceRequest.subject", None, "reference to a Patient that is not in the export")
    ]
    assert set(_orders(out)) == {"O1", "O2", "O3"}
