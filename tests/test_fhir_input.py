"""A FHIR Bulk Data export through the real CLI: bad input gets the same promise as a CSV extract.

* a bad line (not JSON, another resource type, a required element missing, a Patient the
  export lacks, a dateTime without its offset, a repeated id) is a reject naming the NDJSON
  file, its line and why; the run goes on (exit 0);
* a resource that says it is not what the audit reads (entered-in-error, not-done, draft,
  refuted, a proposal, a non-imaging category, a Condition without an ICD-10-CM code) is left
  out and counted (run.json ``left_out``, the report's Methods section), never rejected;
* a file that is not NDJSON (a pretty-printed Bundle, CSV, text that is not UTF-8, a broken
  gzip), an export without Patients, a folder that holds both kinds of input: one line, exit 2,
  nothing written.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest
from conftest import files_showing, run_cli, write_small_input
from fhir_export import export_extract
from test_bad_inputs import _assert_nothing_written

CPT = "http://www.ama-assn.org/go/cpt"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"


def _sr(rid: str, patient: str | None = "MRN-1", **extra) -> dict:
    res = {
        "resourceType": "ServiceRequest",
        "id": rid,
        "status": "active",
        "intent": "order",
        "code": {"coding": [{"system": CPT, "code": "72148"}]},
        "authoredOn": "2025-06-07T10:00:00-04:00",
    }
    if patient is not None:
        res["subject"] = {"reference": f"Patient/{patient}"}
    return {**res, **extra}


def _lines(*items) -> str:
    return "".join((json.dumps(i, separators=(",", ":")) if isinstance(i, dict) else i) + "\n" for i in items)


def _misshapen(element: str, given: str, shape: str, rtype: str = "ServiceRequest") -> str:
    return (
        f"element {rtype}.{element} is {given} where FHIR R4 has {shape}: it cannot be read as R4 (an R5 or a damaged"
        " export); re-export it in R4's shape"
    )


# the second ServiceRequest file, line by line: (line, what the audit must do with it)
SR_FILE = [
    (_sr("S1"), "kept"),
    ("this is not json", "line is not JSON"),
    ({"resourceType": "Patient", "id": "MRN-9"}, "a resource of another type in a ServiceRequest file"),
    ("", "blank: no record"),
    (_sr("S2", patient=None), "required element ServiceRequest.subject missing"),
    (_sr("S3", patient="NOBODY"), "reference to a Patient that is not in the export"),
    (_sr("S4", status="entered-in-error"), "left out: ServiceRequest.status entered-in-error"),
    (_sr("S5", status="draft"), "left out: ServiceRequest.status draft"),
    (_sr("S6", authoredOn="2025-06-07T10:00:00"), "dateTime with a time but no UTC offset (FHIR requires one)"),
    (_sr("O1"), "duplicate order_id: first seen at ServiceRequest.000.ndjson line 1"),
    (
        _sr("S7", category=[{"coding": [{"system": "http://snomed.info/sct", "code": "108252007"}]}]),
        "left out: ServiceRequest.category is not imaging",
    ),
    (_sr("S8", subject={"reference": "Group/g1"}), "ServiceRequest.subject is not a reference to a Patient"),
    (_sr("S9", intent="proposal"), "left out: ServiceRequest.intent proposal (not an order)"),
    (
        _sr("S10", code={"text": "MRI lumbar spine"}),
        "required element ServiceRequest.code.coding missing (no coding with a code)",
    ),
    (_sr("S11", status="revoked"), "kept"),
    # a lone UTF-16 surrogate escape: DuckDB's reader refuses the line, which read "line is not JSON"
    (
        _sr("S12", priority="\ud800"),
        "a string holds an unpaired UTF-16 surrogate \\ud800 (not valid Unicode): re-export the line",
    ),
    (  # a low surrogate alone, written in capitals
        json.dumps(_sr("S13", priority="\udc00 x"), separators=(",", ":")).replace("\\udc00", "\\uDC00"),
        "a string holds an unpaired UTF-16 surrogate \\udc00 (not valid Unicode): re-export the line",
    ),
    (_sr("S14", priority="\\ud800 \U0001f600"), "kept"),  # the text \ud800 (its backslash escaped) and a whole pair
    (  # both: the element given twice is named (Python's json reads the surrogate)
        json.dumps(_sr("S15", priority="\ud800"), separators=(",", ":")).replace(
            '"authoredOn":', '"authoredOn":"2025-06-07T11:00:00-04:00","authoredOn":'
        ),
        "element ServiceRequest.authoredOn given twice in one resource (two values for one element; fix the export)",
    ),
    # an element in another shape than R4's: json_transform read it as absent, without a word (the indication lost,
    # an excluded order audited as inappropriate; a category not read, a non-imaging order audited)
    (_sr("S16", reasonCode={"coding": [{"system": ICD, "code": "C79.51"}]}), _misshapen("reasonCode", "an object", "a list")),
    (_sr("S17", encounter=[{"reference": "Encounter/E1"}]), _misshapen("encounter", "a list", "an object")),
    (
        _sr("S18", category={"coding": [{"system": "http://loinc.org", "code": "LP7839-6"}]}),
        _misshapen("category", "an object", "a list"),
    ),
    (
        _sr("S19", reasonCode=[{"coding": {"system": ICD, "code": "C79.51"}}]),
        _misshapen("reasonCode.coding", "an object", "a list"),
    ),
    (_sr("S20", status={"code": "active"}), _misshapen("status", "an object", "a single value")),
    (_sr("S21", reasonReference=["Condition/c1"]), _misshapen("reasonReference", "a list of single values", "a list of objects")),
    # a code in another case: 'Proposal' was read as an order
    (
        _sr("S22", intent="Proposal"),
        "ServiceRequest.intent is not one of its codes (proposal, plan, directive, order, original-order, reflex-order,"
        " filler-order, instance-order, option; case-sensitive)",
    ),
    # an id of spaces alone, ASCII or Unicode's (fhir_blank tests the first character before it trims)
    (_sr("   "), "required element ServiceRequest.id missing"),
    (_sr("\u00a0\u3000"), "required element ServiceRequest.id missing"),
    (_sr(" S26"), "kept"),
    # the subject's reference in a date: rejects.csv showed Patient/MRN-1 (test_no_reject_shows_a_patient_id)
    (
        _sr("S27", authoredOn="Patient/MRN-1"),
        "unparseable timestamp: expected ISO 8601 like 2025-03-07 10:00:00 or 2025-03-07T10:00:00-05:00",
    ),
    # JSON, but no resource: each had read "line is not JSON" (null) or "no resourceType" (the others)
    ("null", "line is JSON null, not a resource: an NDJSON line holds one resource object"),
    (
        json.dumps([_sr("S23"), _sr("S24")]),  # a JSON file's list of resources, on one line
        "line is a JSON list, not a resource: an NDJSON line holds one resource object",
    ),
    ('  "ServiceRequest"', "line is a JSON string, not a resource: an NDJSON line holds one resource object"),
    ("42", "line is a JSON number, not a resource: an NDJSON line holds one resource object"),
    ("false", "line is a JSON true or false, not a resource: an NDJSON line holds one resource object"),
    ("{}", "not a FHIR resource (no resourceType)"),
    ('{"resourceType": "ServiceRequest", "id": "S25"', "line is not JSON"),  # cut short
]


@pytest.fixture(scope="module")
def messy(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("fhir_messy")
    export = base / "export"
    export_extract(write_small_input(base / "csv"), export, lines_per_file=1000, variety=False)
    (export / "ServiceRequest.001.ndjson").write_text(_lines(*(item for item, _ in SR_FILE)), encoding="utf-8")
    with (export / "Patient.000.ndjson").open("a", encoding="utf-8") as fh:
        fh.write(
            _lines(
                {"resourceType": "Patient", "id": "MRN-1", "birthDate": "1999-01-01"},  # line 3: a repeated id
                "{broken",  # line 4
                {"resourceType": "Patient", "id": "MRN-3", "birthDate": "1970"},  # line 5: partial birth date, read
            )
        )
    with (export / "Procedure.000.ndjson").open("a", encoding="utf-8") as fh:
        proc = {"resourceType": "Procedure", "status": "completed", "code": {"coding": [{"system": CPT, "code": "62323"}]}}
        fh.write(
            _lines(
                {**proc, "id": "PR9", "status": "not-done", "subject": {"reference": "Patient/MRN-1"}},  # line 3
                {
                    **proc,
                    "id": "PR10",
                    "subject": {"reference": "Patient/MRN-3"},  # line 4
                    "performedPeriod": {"start": "2025-06-02T09:00:00-04:00"},
                },
                # line 5: a status in another case was read as done
                {**proc, "id": "PR11", "status": "Not-Done", "subject": {"reference": "Patient/MRN-1"}},
            )
        )
    with (export / "Condition.000.ndjson").open("a", encoding="utf-8") as fh:
        cond = {"resourceType": "Condition", "subject": {"reference": "Patient/MRN-1"}, "recordedDate": "2025-06-04"}
        fh.write(
            _lines(
                {
                    **cond,
                    "id": "c2",
                    "verificationStatus": {"coding": [{"code": "refuted"}]},
                    "code": {"coding": [{"system": ICD, "code": "G97.1"}]},
                },
                {**cond, "id": "c3", "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]}},
                {  # line 4: 'Refuted' was read as confirmed
                    **cond,
                    "id": "c4",
                    "verificationStatus": {"coding": [{"code": "Refuted"}]},
                    "code": {"coding": [{"system": ICD, "code": "G97.1"}]},
                },
            )
        )
    with (export / "Encounter.000.ndjson").open("a", encoding="utf-8") as fh:
        fh.write("not json either\n")  # line 3
        # line 4: R5's Encounter.class, a list, was read as no class: the diagnosis's setting lost
        fh.write(json.dumps({"resourceType": "Encounter", "id": "E9", "class": [{"coding": [{"code": "IMP"}]}]}) + "\n")
    out = base / "out"
    # --no-validate: the bad lines are most of each file, a share of a table's own resources the gate stops at
    # (test_an_export_whose_resources_are_mostly_rejected_stops_at_the_gate); here each line's reject is the point
    result = run_cli("run", "--input", export, "--out", out, "--warehouse", base / "wh.duckdb", "--no-validate")
    assert result.returncode == 0, result.stderr
    return {
        "export": export,
        "out": out,
        "rejects": pl.read_csv(out / "csf_leak" / "rejects.csv", infer_schema=False),
        "run": json.loads((out / "csf_leak" / "run.json").read_text()),
    }


SR_REJECTS = [
    (n, why) for n, (_, why) in enumerate(SR_FILE, start=1) if why != "kept" and not why.startswith(("left out", "blank"))
]


@pytest.mark.parametrize(("line", "reason"), SR_REJECTS, ids=[f"line{n}" for n, _ in SR_REJECTS])
def test_a_bad_servicerequest_line_is_a_reject_naming_file_line_and_reason(messy, line, reason):
    rows = messy["rejects"].filter(
        pl.col("source_file").str.ends_with("ServiceRequest.001.ndjson") & (pl.col("source_line") == str(line))
    )
    assert rows.height == 1, messy["rejects"]
    row = rows.row(0, named=True)
    assert (row["table_name"], row["reason"], row["action"]) == ("imaging_orders", reason, "row_rejected")


def test_lines_of_looked_up_types_are_rejects_too(messy):
    rej = messy["rejects"]

    def at(name: str, line: int) -> dict:
        rows = rej.filter(pl.col("source_file").str.ends_with(name) & (pl.col("source_line") == str(line)))
        assert rows.height == 1, rej
        return rows.row(0, named=True)

    assert at("Encounter.000.ndjson", 3)["reason"] == "line is not JSON"
    assert at("Encounter.000.ndjson", 4)["reason"] == _misshapen("class", "a list", "an object", "Encounter")
    not_done = at("Procedure.000.ndjson", 5)
    assert (not_done["column_name"], not_done["value"]) == ("Procedure.status", "Not-Done")
    assert not_done["reason"].startswith("Procedure.status is not one of its codes (preparation, in-progress, not-done")
    refuted = at("Condition.000.ndjson", 4)
    assert (refuted["table_name"], refuted["column_name"], refuted["value"]) == (
        "diagnoses",
        "Condition.verificationStatus",
        "Refuted",
    )
    assert "is one of its codes in another case" in refuted["reason"]
    assert at("Patient.000.ndjson", 4)["reason"] == "line is not JSON"
    repeat = at("Patient.000.ndjson", 3)
    assert (repeat["table_name"], repeat["column_name"]) == ("procedures", "Patient.id")
    assert "repeats an earlier line" in repeat["reason"]
    # the procedure of the patient born "1970": a partial birth date is read (as the days it spans), no reject
    assert rej.filter(pl.col("source_file").str.ends_with("Procedure.000.ndjson") & (pl.col("source_line") == "4")).is_empty()


def test_no_reject_shows_a_patient_id(messy):
    values = set(messy["rejects"]["value"].drop_nulls())
    assert not values & {"MRN-1", "MRN-3", "MRN-9", "NOBODY", "Patient/NOBODY", "Patient/MRN-1"}, values


def test_left_out_resources_are_counted_not_rejected(messy):
    left = {(x["table"], x["resource"], x["reason"]): x["count"] for x in messy["run"]["left_out"]}
    assert left == {
        ("imaging_orders", "ServiceRequest", "ServiceRequest.status entered-in-error"): 1,
        ("imaging_orders", "ServiceRequest", "ServiceRequest.status draft"): 1,
        ("imaging_orders", "ServiceRequest", "ServiceRequest.category is not imaging"): 1,
        ("imaging_orders", "ServiceRequest", "ServiceRequest.intent proposal (not an order)"): 1,
        ("procedures", "Procedure", "Procedure.status not-done"): 1,
        ("diagnoses", "Condition", "Condition.verificationStatus refuted"): 1,
        ("diagnoses", "Condition", "Condition.code has no ICD-10-CM coding"): 1,
    }
    html = (messy["out"] / "csf_leak" / "report.html").read_text(encoding="utf-8")
    assert "Resources left out on purpose" in html and "Procedure.status not-done" in html


def test_read_loaded_and_rejected_add_up(messy):
    loads = {i["table"]: i for i in messy["run"]["inputs"]}
    orders = loads["imaging_orders"]
    # 4 + 4 good ServiceRequests (S1, S11, S14, " S26"), 28 rejected lines of the file, 2 rejected Encounter lines
    assert (orders["rows_loaded"], orders["rows_rejected"]) == (8, 30)
    assert orders["rows_read"] == orders["rows_loaded"] + orders["rows_rejected"]
    assert "ServiceRequest (2 files" in orders["path"] and "ServiceRequest.001.ndjson" in orders["path"]
    procs = loads["procedures"]
    # (no value nulled: PR10's patient born "1970" is a partial birth date, read as the days it spans)
    assert (procs["rows_loaded"], procs["rows_rejected"], procs["values_nulled"]) == (3, 3, 0)


def test_revoked_is_cancelled(messy):
    import duckdb

    con = duckdb.connect(str(messy["out"].parent / "wh.duckdb"), read_only=True)
    try:
        status = dict(con.execute("SELECT order_id, status FROM src_imaging_orders WHERE order_id IN ('S1', 'S11')").fetchall())
    finally:
        con.close()
    assert status == {"S1": "ordered", "S11": "cancelled"}


# ----------------------------------------------------------------------------------------------
# file-level: one line, exit 2, nothing written


@pytest.fixture
def export(tmp_path) -> Path:
    d = tmp_path / "export"
    export_extract(write_small_input(tmp_path / "csv"), d, lines_per_file=1000, variety=False)
    return d


def _exit_2(tmp_path: Path, folder: Path, *needles: str, args: tuple = ()) -> str:
    out, wh = tmp_path / "out", tmp_path / "wh.duckdb"
    r = run_cli("run", "--input", folder, "--out", out, "--warehouse", wh, *args)
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, r.stderr
    for needle in needles:
        assert needle in errors[0], (needle, r.stderr)
    assert "Traceback" not in r.stderr
    _assert_nothing_written(out, wh)
    return errors[0]


def test_a_pretty_printed_bundle_is_not_ndjson(tmp_path, export):
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "ServiceRequest"}}]}
    (export / "ServiceRequest.001.ndjson").write_text(json.dumps(bundle, indent=2), encoding="utf-8")
    _exit_2(tmp_path, export, "ServiceRequest.001.ndjson", "is not NDJSON", "pretty-printed JSON")


def test_json_nested_deeper_than_a_reader_follows_is_no_resource_not_a_traceback(tmp_path):
    """A first line of '[' 200,000 deep: Python's JSON parser raised RecursionError while the export's files were
    told apart, a traceback, exit 70 (the hostile review's export, with its manifest). It is a line that holds no
    resource: the next line tells the file's type; alone, the file is not NDJSON, in one line."""
    from pipeline.ingest.fhir import export as bulk  # noqa: PLC0415

    deep = "[" * 200_000 + "]" * 200_000
    path = tmp_path / "ServiceRequest.000.ndjson"
    path.write_text(deep + "\n" + json.dumps(_sr("X1")) + "\n", encoding="utf-8")
    assert bulk.sniff(path) == ("ServiceRequest", None)
    path.write_text(deep + "\n", encoding="utf-8")
    assert bulk.sniff(path) == (None, "line 1 nests its JSON deeper than a reader follows: not a FHIR resource")


def test_a_csv_named_ndjson_is_not_ndjson(tmp_path, export):
    (export / "Patient.000.ndjson").write_text("patient_id,birth_date\nMRN-1,1970-05-05\n", encoding="utf-8")
    _exit_2(tmp_path, export, "Patient.000.ndjson", "is not NDJSON", "line 1 is not a JSON object")


@pytest.mark.parametrize("line", [3, 12], ids=["among the first lines", "further down"])
def test_a_byte_that_is_not_utf8_stops_the_run_naming_the_line(tmp_path, export, line):
    path = export / "ServiceRequest.000.ndjson"
    lines = path.read_bytes().rstrip(b"\n").split(b"\n")
    lines += [json.dumps(_sr(f"X{i}")).encode() for i in range(12)]
    lines[line - 1] = lines[line - 1].replace(b'"intent"', b'"int\xe9nt"')
    path.write_bytes(b"\n".join(lines) + b"\n")
    _exit_2(tmp_path, export, "ServiceRequest.000.ndjson", f"line {line}", "0xe9", "UTF-8")


def test_a_broken_gzip_stops_the_run(tmp_path, export):
    data = gzip.compress((export / "ServiceRequest.000.ndjson").read_bytes() * 200)
    (export / "ServiceRequest.000.ndjson").unlink()
    (export / "ServiceRequest.000.ndjson.gz").write_bytes(data[: len(data) // 2])
    _exit_2(tmp_path, export, "ServiceRequest.000.ndjson.gz")


def test_a_gzip_line_that_expands_without_end_stops_the_run(tmp_path, export):
    """A small gzip holding one huge line: Polars asked for ~16 times the line (a 2 GB line, 2 MB of gzip: 33 GB)
    and the run aborted. Here 100 MiB (100 KB of gzip), over the 64 MiB limit and small enough to load without it."""
    with gzip.open(export / "Condition.001.ndjson.gz", "wb") as fh:
        fh.write(json.dumps({"resourceType": "Condition", "id": "C1"}).encode() + b"\n")
        fh.write(b'{"resourceType": "Condition", "id": "' + b"a" * (100 << 20) + b'"}\n')
    assert (export / "Condition.001.ndjson.gz").stat().st_size < 200_000
    _exit_2(tmp_path, export, "Condition.001.ndjson.gz, line 2", "a line longer than 64 MiB", "Re-export")


@pytest.mark.parametrize("kind", ["folder", "broken link"])
def test_a_folder_or_broken_link_named_like_ndjson_stops_the_run(tmp_path, export, kind):
    """Skipped by name before: the export's only Condition file as a folder left the diagnoses out, silently."""
    path = export / "Condition.000.ndjson"
    path.unlink()
    if kind == "folder":
        path.mkdir()
    else:
        path.symlink_to(tmp_path / "moved_away.ndjson")
    _exit_2(tmp_path, export, f"Condition.000.ndjson: is a {kind}, not an NDJSON file")


def test_an_export_without_patients_stops_the_run(tmp_path, export):
    (export / "Patient.000.ndjson").unlink()
    _exit_2(tmp_path, export, "no Patient NDJSON file in the export", "_type=")


def test_a_folder_with_tables_and_ndjson_is_ambiguous_until_told(tmp_path, export):
    write_small_input(export)  # the extract's CSV files beside the NDJSON
    _exit_2(tmp_path, export, "both extract tables", "--input-format")
    out = tmp_path / "told"
    r = run_cli("run", "--input", export, "--out", out, "--input-format", "fhir", "--no-validate")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "csf_leak" / "run.json").read_text())["input_format"] == "fhir"


def test_a_type_without_records_is_an_empty_table_or_an_incomplete_export(tmp_path, export):
    """Conditions (diagnoses may be empty): the run goes on; Procedures (never empty): one line, exit 2."""
    (export / "Condition.000.ndjson").write_text("\n", encoding="utf-8")
    out = tmp_path / "told"
    r = run_cli("run", "--input", export, "--out", out, "--warehouse", tmp_path / "wh.duckdb")
    assert r.returncode == 0, r.stderr
    read = {i["table"]: i["rows_read"] for i in json.loads((out / "csf_leak" / "run.json").read_text())["inputs"]}
    assert read["diagnoses"] == 0
    (export / "Procedure.000.ndjson").write_text("\n\n", encoding="utf-8")
    (tmp_path / "again").mkdir()
    _exit_2(tmp_path / "again", export, "holds no Procedure resources", "export again")


def test_a_patient_file_without_patients_stops_the_run_as_a_procedure_file_does(tmp_path, export):
    """An empty Patient file (no manifest to count it) published an audit of nothing with exit 0: every procedure,
    order and diagnosis rejected as a reference to a Patient not in the export. A Patient file holding other
    resources alone did the same."""
    patients = export / "Patient.000.ndjson"
    held = patients.read_text(encoding="utf-8")
    (export / "manifest.json").unlink(missing_ok=True)
    patients.write_text("", encoding="utf-8")
    _exit_2(tmp_path / "empty", export, "Patient.000.ndjson: holds no Patient resources", "export again")
    others = [json.loads(line) | {"resourceType": "Location"} for line in held.splitlines() if line.strip()]
    patients.write_text("".join(json.dumps(r) + "\n" for r in others), encoding="utf-8")
    _exit_2(tmp_path / "others", export, "Patient.000.ndjson: holds no Patient resources", "export again")


def test_an_export_whose_every_encounter_is_in_r5s_shape_stops_the_run(tmp_path, export):
    """Every Encounter's class a list (R5's shape): each line a reject left every order without its department and
    every diagnosis without its setting, an audit of something else with exit 0. One misshapen line is a reject
    (test_lines_of_looked_up_types_are_rejects_too); a type none of whose lines is R4's shape stops the run."""
    path = export / "Encounter.000.ndjson"
    encounters = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert encounters and all("class" in e for e in encounters)
    path.write_text("".join(json.dumps(e | {"class": [{"coding": [e["class"]]}]}) + "\n" for e in encounters), encoding="utf-8")
    line = _exit_2(tmp_path, export, "Encounter.000.ndjson, line 1: no Encounter line is in FHIR R4's shape")
    assert _misshapen("class", "a list", "an object", "Encounter") in line and "export the Encounter resources as R4" in line


def test_a_birth_date_that_is_no_fhir_date_is_nulled_with_a_note_that_says_so(tmp_path, export):
    """'19700505' was noted as "a partial date (year or year-month)"; a birth date with a time was nulled in the
    procedures without a word and kept in the patients table. A whole date with spaces around it is read, as an
    extract's value is."""
    import duckdb

    path = export / "Patient.000.ndjson"
    patients = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    shapes = {"MRN-1": "19700505", "MRN-2": " 1980-01-01 "}
    path.write_text("".join(json.dumps(p | {"birthDate": shapes[p["id"]]}) + "\n" for p in patients), encoding="utf-8")
    out, wh = tmp_path / "out", tmp_path / "wh.duckdb"
    r = run_cli("run", "--input", export, "--out", out, "--warehouse", wh, "--no-validate")
    assert r.returncode == 0, r.stderr
    rejects = pl.read_csv(out / "csf_leak" / "rejects.csv", infer_schema=False)
    notes = rejects.filter(pl.col("action") == "value_nulled").select("column_name", "value", "reason").rows()
    no_date = "Patient.birthDate is not a FHIR date (YYYY-MM-DD, or a partial YYYY or YYYY-MM): no day to count the age from"
    assert sorted(notes) == [("birth_date", "19700505", no_date), ("patient_birth_date", "19700505", no_date)]
    con = duckdb.connect(str(wh), read_only=True)
    try:
        born = dict(con.execute("SELECT procedure_id, CAST(patient_birth_date AS VARCHAR) FROM src_procedures").fetchall())
    finally:
        con.close()
    assert born == {"PR1": None, "PR2": "1980-01-01"}


def test_a_patient_as_requester_or_performer_is_no_provider_published(tmp_path, export):
    """FHIR R4 allows a Patient or a RelatedPerson as a ServiceRequest's requester and a Procedure's performer (a
    self-referral, a parent). The reference as written was the provider, so the hostile review found `Patient/<id>`
    published as the ordering provider in the case list, the workbook and the report, beside the patient's
    pseudonym. Such a reference is no provider now; a PractitionerRole's is still the provider as written."""
    requesters = iter(["Patient/MRN-1", "https://ehr.example.org/fhir/RelatedPerson/MRN-2/_history/3", "PractitionerRole/PR-77"])
    others = "patient/MRN-1"  # any letter case
    _every_line(export / "ServiceRequest.000.ndjson", lambda r: r | {"requester": {"reference": next(requesters, others)}})
    _every_line(export / "Procedure.000.ndjson", lambda r: r | {"performer": [{"actor": r["subject"]}]})
    out = tmp_path / "out"
    r = run_cli("run", "--input", export, "--out", out, "--no-validate")
    assert r.returncode == 0, r.stderr
    orders = pl.read_csv(out / "csf_leak" / "audited_orders.csv", infer_schema=False)
    providers = dict(zip(orders["order_id"], orders["ordering_provider_id"], strict=True))
    assert providers == {"O1": None, "O2": None, "O3": "PractitionerRole/PR-77"} | {
        o: None for o in providers if o not in ("O1", "O2", "O3")
    }
    assert files_showing(out, "MRN-") == []


def test_a_conditional_reference_to_a_patient_is_no_provider_published(tmp_path, export):
    """The hostile review (2026-12-05): a requester or performer written as a conditional reference to a Patient or a
    RelatedPerson (`Patient?identifier=<system>|<MRN>`) was the provider as written, so the MRN, which is not the
    Patient's id and so not found by the gate's published-text check, was published as the ordering provider."""
    requesters = iter(
        ["Patient?identifier=urn:oid:1.2.3|MRN-4417", "https://ehr.example.org/fhir/RelatedPerson?identifier=x|MRN-4418"]
    )
    conditional = {"reference": "Patient?identifier=urn:oid:1.2.3|MRN-4419"}
    _every_line(
        export / "ServiceRequest.000.ndjson", lambda r: r | {"requester": {"reference": next(requesters, "Organization/ORG-1")}}
    )
    _every_line(export / "Procedure.000.ndjson", lambda r: r | {"performer": [{"actor": conditional}]})
    out = tmp_path / "out"
    r = run_cli("run", "--input", export, "--out", out, "--no-validate")
    assert r.returncode == 0, r.stderr
    orders = pl.read_csv(out / "csf_leak" / "audited_orders.csv", infer_schema=False)
    providers = dict(zip(orders["order_id"], orders["ordering_provider_id"], strict=True))
    assert providers["O1"] is None and providers["O2"] is None and providers["O3"] == "Organization/ORG-1", providers
    assert files_showing(out, "MRN-44") == []


def test_input_format_fhir_on_a_folder_without_ndjson(tmp_path):
    folder = write_small_input(tmp_path / "csv")
    _exit_2(tmp_path, folder, "no FHIR NDJSON files", args=("--input-format", "fhir"))


def test_input_format_tables_reads_no_ndjson(tmp_path, export):
    _exit_2(tmp_path, export, "procedures.csv", "required file missing", args=("--input-format", "tables"))


def test_other_resource_types_and_export_logs_are_not_read(tmp_path, export):
    (export / "Observation.000.ndjson").write_text('{"resourceType":"Observation","id":"o1"}\n', encoding="utf-8")
    (export / "log.ndjson").write_text('{"exportId":"x","eventId":"kickoff"}\n', encoding="utf-8")
    inspected = run_cli("inspect", "--input", export)
    assert inspected.returncode == 0, inspected.stderr
    assert "a FHIR Bulk Data export" in inspected.stdout
    assert "Observation.000.ndjson: holds Observation resources" in inspected.stdout
    assert "log.ndjson: holds no FHIR resources" in inspected.stdout
    validated = run_cli("validate", "--input", export, "--json")
    assert validated.returncode == 0, validated.stderr
    assert json.loads(validated.stdout)


# ----------------------------------------------------------------------------------------------
# [fhir] settings: where the department is, checked before any work


def test_the_department_can_come_from_an_extension(tmp_path, export):
    url = "http://hospital.example.org/fhir/StructureDefinition/ordering-department"
    path = export / "ServiceRequest.000.ndjson"
    lines = path.read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    first["extension"] = [{"url": "http://other.example.org/x", "valueString": "no"}, {"url": url, "valueString": "Stroke unit"}]
    path.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n", encoding="utf-8")
    config = tmp_path / "site.toml"
    config.write_text(f'[fhir]\norder_department = ["extension", "encounter.location"]\ndepartment_extension = "{url}"\n')
    out = tmp_path / "out"
    r = run_cli("run", "--input", export, "--out", out, "--config", config, "--no-validate")
    assert r.returncode == 0, r.stderr
    orders = pl.read_csv(out / "csf_leak" / "audited_orders.csv", infer_schema=False)
    departments = dict(zip(orders["order_id"], orders["ordering_department"], strict=True))
    assert departments["O1"] == "Stroke unit" and departments["O2"] == "Neurology"


@pytest.mark.parametrize(
    ("setting", "needle"),
    [
        ('order_department = ["ward"]', "'ward' is not a department source"),
        ('order_department = ["extension"]', "department_extension (its URL) is not set"),
        ('imaging_categories = ["363679005"]', '"system|code"'),
        ("cpt = 1", "unknown setting(s) cpt"),
    ],
)
def test_a_bad_fhir_setting_stops_before_any_work(tmp_path, export, setting, needle):
    config = tmp_path / "site.toml"
    config.write_text(f"[fhir]\n{setting}\n")
    out = tmp_path / "out"
    r = run_cli("run", "--input", export, "--out", out, "--config", config)
    assert r.returncode == 1, r.stderr
    assert needle in r.stderr and "[fhir]" in r.stderr
    assert not out.exists()


def test_the_same_export_gives_the_same_bytes_and_loads_once(messy, tmp_path):
    again = tmp_path / "again"
    r = run_cli("run", "--input", messy["export"], "--out", again, "--warehouse", tmp_path / "wh.duckdb", "--no-validate")
    assert r.returncode == 0, r.stderr
    for name in ("audited_orders.csv", "cases.csv", "rejects.csv", "metrics.csv", "attrition.csv"):
        assert (again / "csf_leak" / name).read_bytes() == (messy["out"] / "csf_leak" / name).read_bytes(), name
    # into the same warehouse: every table's files are already loaded, nothing is added
    same = tmp_path / "same"
    r = run_cli(
        "run", "--input", messy["export"], "--out", same, "--warehouse", messy["out"].parent / "wh.duckdb", "--no-validate"
    )
    assert r.returncode == 0, r.stderr
    actions = {i["table"]: i["action"] for i in json.loads((same / "csf_leak" / "run.json").read_text())["inputs"]}
    assert actions == dict.fromkeys(("procedures", "imaging_orders", "diagnoses", "patients"), "skipped_already_loaded")
    assert (same / "csf_leak" / "audited_orders.csv").read_bytes() == (
        messy["out"] / "csf_leak" / "audited_orders.csv"
    ).read_bytes()


# a site's own exam codes, named by the EHR's OID for them; the site map's code_system column says so
LOCAL_SYSTEM = "urn:oid:1.2.840.114350.1.13.99.2.7.2.696580"
FHIR_SITE_MAP = (
    "code_system,code,study_type,modality,regions,contrast,description,valid_from,valid_to,source\n"
    f"{LOCAL_SYSTEM},LOC-CSPINE,mri_spine,MR,C,without_and_with,MRI cervical spine w/wo,2000-01-01,,site exam master\n"
)


def test_an_export_without_the_site_code_map_picks_codings_by_the_one_the_warehouse_keeps(tmp_path):
    """An order coded first in SNOMED CT, then in the site's own system: the site map's code_system names the
    system to take. A monthly export without local_code_map.csv took the first coding instead (unmapped: not
    evaluable), while the run maps codes with the site map the warehouse keeps."""
    wh = tmp_path / "wh" / "wh.duckdb"
    first = tmp_path / "june"
    export_extract(write_small_input(tmp_path / "csv"), first, lines_per_file=1000, variety=False)
    (first / "local_code_map.csv").write_text(FHIR_SITE_MAP, encoding="utf-8")
    ran = run_cli("run", "--input", first, "--out", tmp_path / "a", "--warehouse", wh, "--site-timezone", "America/New_York")
    assert ran.returncode == 0, ran.stderr[-3000:]

    later = tmp_path / "june-again"  # the next delivery: one more order, no site map beside it
    export_extract(tmp_path / "csv", later, lines_per_file=1000, variety=False)
    codings = [{"system": "http://snomed.info/sct", "code": "241615005"}, {"system": LOCAL_SYSTEM, "code": "LOC-CSPINE"}]
    order = _sr("O9", code={"coding": codings}, authoredOn="2025-06-06T10:20:00-04:00")
    (later / "ServiceRequest.001.ndjson").write_text(_lines(order), encoding="utf-8")
    assert not (later / "local_code_map.csv").exists()
    ran = run_cli("run", "--input", later, "--out", tmp_path / "b", "--warehouse", wh, "--site-timezone", "America/New_York")
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "site code map: none given; the one the warehouse kept" in ran.stderr
    orders = pl.read_csv(tmp_path / "b" / "csf_leak" / "audited_orders.csv", infer_schema=False)
    o9 = orders.filter(pl.col("order_id") == "O9").row(0, named=True)
    assert (o9["order_code"], o9["study_type"]) == ("LOC-CSPINE", "mri_spine")
    assert "unmapped_code" not in o9["reasons"]


def test_the_export_is_listed_and_sniffed_once_and_handed_on(tmp_path, export):
    """find_inputs lists the folder and sniffs each file; the run reads what it found (ExportInput), without
    listing the folder again: a file added after that (here one no sniff would take) is not read."""
    from pipeline.config import load_config
    from pipeline.ingest import load
    from pipeline.ingest.fhir.inputs import ExportInput

    cfg = load_config(site_timezone="America/New_York")
    found = load.find_inputs(export, cfg)
    assert all(isinstance(f, ExportInput) and f.bulk_export is found["imaging_orders"].bulk_export for f in found.values())
    listed = found["imaging_orders"].bulk_export.of("ServiceRequest")
    (export / "ServiceRequest.999.ndjson").write_text("not NDJSON\n", encoding="utf-8")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    prepared = load.prepare_inputs(found, cfg, scratch)
    assert listed == [export / "ServiceRequest.000.ndjson"]
    assert prepared["imaging_orders"].rows_read == len(_ndjson_lines(listed[0]))


def _ndjson_lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _every_line(path: Path, change) -> None:
    """Each resource of the NDJSON file rewritten by ``change`` (a dict in, a dict out)."""
    rows = [change(json.loads(line)) for line in _ndjson_lines(path)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_an_export_whose_resources_are_mostly_rejected_stops_at_the_gate(tmp_path, export):
    """Every ServiceRequest's code given as text alone (legal R4, but no coding to audit): each a reject, and the
    run published empty reports with exit 0, where a CSV extract that loses more than 20% of its rows stops (a FHIR
    integration engineer's review). The share is of the table's own resources, named by file and line."""
    (export / "manifest.json").unlink(missing_ok=True)
    _every_line(export / "ServiceRequest.000.ndjson", lambda r: r | {"code": {"text": "MRI lumbar spine"}})
    out, wh = tmp_path / "out", tmp_path / "wh.duckdb"
    r = run_cli("run", "--input", export, "--out", out, "--warehouse", wh)
    assert r.returncode == 3, r.stderr
    (check,) = [line for line in r.stderr.splitlines() if "orders.rows.readable" in line]
    assert "orders.rows.readable [src_imaging_orders] 4 of 4 (100.0%)" in check, check
    assert "e.g. ServiceRequest.000.ndjson line 1: ServiceRequest.code: required element ServiceRequest.code.coding" in check
    assert "Traceback" not in r.stderr
    _assert_nothing_written(out, wh)


def test_an_export_whose_every_servicerequest_is_left_out_stops_the_run(tmp_path, export):
    """An Epic-style export codes the imaging category in the site's own system: every ServiceRequest was left out
    ('category is not imaging'), and the run published empty reports with exit 0. An export the audits read none
    of is as empty as one without the type: one line naming why, exit 2."""
    (export / "manifest.json").unlink(missing_ok=True)
    site = {"coding": [{"system": "urn:oid:1.2.840.114350.1.13.0.1.7.10.798268.30", "code": "7", "display": "Imaging"}]}
    _every_line(export / "ServiceRequest.000.ndjson", lambda r: r | {"category": [site]})
    line = _exit_2(tmp_path, export, "ServiceRequest", "every ServiceRequest resource is left out (4 ServiceRequest.category")
    assert "so the audits have none to read. Check the [fhir] settings that choose them" in line


def test_an_export_whose_every_condition_date_is_partial_names_the_files_line(tmp_path, export):
    """Every Condition's recordedDate partial (2025-01, a dateTime R4 allows): the line named was the export's key
    ('line 10127' of a 1,022-line file) and the fix a CSV's [formats] setting."""
    (export / "manifest.json").unlink(missing_ok=True)
    _every_line(
        export / "Condition.000.ndjson",
        lambda r: {k: v for k, v in r.items() if k != "onsetDateTime"} | {"recordedDate": "2025-06"},
    )
    line = _exit_2(tmp_path, export, "Condition.000.ndjson, column 'recorded_at': no timestamp in this column parsed")
    assert "e.g. '2025-06' on line 1)" in line and "[formats" not in line, line


def test_the_share_of_rejected_servicerequests_leaves_out_those_left_out_on_purpose(tmp_path, export):
    """The share's denominator is the ServiceRequests judged (rejected or kept), the ones left out on purpose apart:
    of four, two drafts (left out), one code given as text alone (rejected), one kept: 1 of 2. The orders' view
    holds only the rows the stream set aside, so counting it gave 1 of 1."""
    (export / "manifest.json").unlink(missing_ok=True)
    changes = iter([{"status": "draft"}, {"status": "draft"}, {"code": {"text": "MRI lumbar spine"}}, {}])
    _every_line(export / "ServiceRequest.000.ndjson", lambda r: r | next(changes))
    r = run_cli("run", "--input", export, "--out", tmp_path / "out", "--warehouse", tmp_path / "wh.duckdb")
    assert r.returncode == 3, r.stderr
    (check,) = [line for line in r.stderr.splitlines() if "orders.rows.readable" in line]
    assert "orders.rows.readable [src_imaging_orders] 1 of 2 (50.0%)" in check, check


def test_one_rejected_servicerequest_among_many_is_a_reject_not_a_stop(tmp_path, export):
    """One order of twelve rejected (a code as text alone) is a reject and the run goes on: the share is 1 of 12,
    under the gate's 20%. Its denominator had been the rows the stream set aside, '1 of 1 (100.0%)', and one bad
    order of 7,550 stopped the run (a hostile review)."""
    (export / "manifest.json").unlink(missing_ok=True)
    path = export / "ServiceRequest.000.ndjson"
    held = [json.loads(line) for line in _ndjson_lines(path)]
    more = [r | {"id": f"{r['id']}-{copy}"} for copy in ("b", "c") for r in held]
    path.write_text("".join(json.dumps(r) + "\n" for r in held + more), encoding="utf-8")
    first = iter([{"code": {"text": "MRI lumbar spine"}}])
    _every_line(path, lambda r: r | next(first, {}))
    out = tmp_path / "out"
    r = run_cli("run", "--input", export, "--out", out, "--warehouse", tmp_path / "wh.duckdb")
    assert r.returncode == 0, r.stderr
    (check,) = [
        c
        for c in json.loads((out / "csf_leak" / "run.json").read_text())["data_quality"]
        if c["check_id"] == "orders.rows.readable"
    ]
    assert (check["violated_count"], check["denominator"]) == (1, 12), check


def test_encounter_lines_rejected_with_the_orders_are_no_orders_set_aside(tmp_path, export):
    """An export whose Encounter file repeats its lines (each repeat a reject, counted in the orders' load): the first
    page and the workbook said '300 of 7,850 imaging orders set aside' though no order was lost (a hostile review).
    run.json counts those lines apart (supporting_lines_rejected) and the note leaves them out."""
    (export / "manifest.json").unlink(missing_ok=True)
    path = export / "Encounter.000.ndjson"
    lines = _ndjson_lines(path)
    path.write_text("".join(f"{line}\n" for line in lines + lines), encoding="utf-8")
    out = tmp_path / "out"
    r = run_cli("run", "--input", export, "--out", out, "--warehouse", tmp_path / "wh.duckdb")
    assert r.returncode == 0, r.stderr
    orders = next(i for i in json.loads((out / "csf_leak" / "run.json").read_text())["inputs"] if i["table"] == "imaging_orders")
    assert orders["rows_rejected"] == orders["supporting_lines_rejected"] == len(lines) > 0, orders
    assert "imaging orders set aside" not in (out / "csf_leak" / "index.html").read_text(encoding="utf-8")
