"""An export's manifest.json (the $export status response a Bulk Data client saves) holds the export to it.

A file the download lost, or cut short at a line break, is still good NDJSON: without the manifest
the run would audit fewer orders with no sign. With it, through the real CLI:

* a type whose resources do not add up to the manifest's counts stops the run (one line naming the
  type's files and both numbers, exit 2, nothing written), the lost Encounter before the orders are read;
* a type the manifest lists that the folder lacks, or files of a type it does not list (another
  export's), stop the run the same way;
* a manifest that is not one (not JSON, no transactionTime, a count that is not a whole number) too;
* error files (OperationOutcome) and deleted-resource files listed are warnings (run.json, the log);
* run.json records the manifest's hash, transactionTime and counts; without counts, no count is checked.
"""

from __future__ import annotations

import gzip
import html
import json
import re
from pathlib import Path

import pytest
from conftest import run_cli, write_small_input
from fhir_export import export_extract
from test_fhir_input import _exit_2
from xlsx_xml import Workbook

from pipeline.ingest.fhir.export import is_ndjson_name, type_by_name

TRANSACTION_TIME = "2026-10-31T23:00:00Z"


def _records(path: Path) -> int:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def _write_manifest(folder: Path, counts: bool = True, **extra) -> dict:
    """The manifest a server would give for the folder's files, as bulk-data-client saves it."""
    output = []
    for path in sorted(p for p in folder.iterdir() if is_ndjson_name(p)):
        entry = {"type": type_by_name(path), "url": f"https://fhir.example.org/bulk/job-7/{path.name}"}
        if counts:
            entry["count"] = _records(path)
        output.append(entry)
    manifest = {
        "transactionTime": TRANSACTION_TIME,
        "request": "https://fhir.example.org/fhir/$export?_type=Patient,Procedure,ServiceRequest,Condition,Encounter",
        "requiresAccessToken": True,
        "output": output,
        "error": [],
        **extra,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=4), encoding="utf-8")
    return manifest


@pytest.fixture
def export(tmp_path) -> Path:
    """The small extract as an export of several files per type (one gzip-compressed, one client-named)."""
    d = tmp_path / "export"
    export_extract(write_small_input(tmp_path / "csv"), d, lines_per_file=2)
    _write_manifest(d)
    return d


def _run(tmp_path: Path, folder: Path, *args: str) -> tuple[dict, str]:
    out = tmp_path / "out"
    r = run_cli("run", "--input", folder, "--out", out, "--warehouse", tmp_path / "wh.duckdb", *args)
    assert r.returncode == 0, r.stderr
    return json.loads((out / "csf_leak" / "run.json").read_text()), r.stderr


def test_a_complete_export_is_recorded_with_its_manifest(tmp_path, export):
    info, _ = _run(tmp_path, export)
    facts = info["export_manifest"]
    assert facts["transaction_time"] == TRANSACTION_TIME
    assert facts["path"].endswith("manifest.json") and len(facts["sha256"]) == 64
    assert facts["error_files"] == facts["deleted_files"] == 0
    read = {i["table"]: i["rows_read"] for i in info["inputs"]}
    assert facts["resources_counted"]["ServiceRequest"] == read["imaging_orders"]
    assert facts["output_files"] == sum(1 for p in export.iterdir() if is_ndjson_name(p))
    assert not [w for w in info["warnings"] if "manifest.json" in w]
    report = (tmp_path / "out" / "csf_leak" / "report.html").read_text(encoding="utf-8")
    assert "export-limit" not in report
    # every table carries the export's one hash: the Inputs table says so beside the file it names
    assert len({i["sha256"] for i in info["inputs"]}) == 1
    assert "SHA-256 (one for the whole export: of all its NDJSON files)</th>" in report


def test_a_lost_servicerequest_file_stops_the_run(tmp_path, export):
    lost = sorted(export.glob("ServiceRequest.*"))[-1]
    missing = _records(lost)
    lost.unlink()
    listed = json.loads((export / "manifest.json").read_text())["output"]
    total = sum(e["count"] for e in listed if e["type"] == "ServiceRequest")
    _exit_2(
        tmp_path,
        export,
        f"manifest.json: counts {total:,} ServiceRequest resources",
        f"ServiceRequest files in the folder (1) hold {total - missing:,} ({missing:,} fewer)",
        "Download the export again",
    )


def test_an_encounter_file_cut_short_stops_the_run_before_the_orders_are_read(tmp_path, export):
    path = sorted(export.glob("Encounter.*.ndjson"))[0]
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[:-1]), encoding="utf-8")  # cut at a line break: every line left is good JSON
    out = tmp_path / "out"
    r = run_cli("run", "--input", export, "--out", out, "--warehouse", tmp_path / "wh.duckdb", "--verbose")
    assert r.returncode == 2, r.stderr
    assert "but the Encounter files in the folder" in r.stderr and "(1 fewer)" in r.stderr
    assert "read ServiceRequest" not in r.stderr  # stopped before the orders' stream


def test_a_type_the_manifest_lists_and_the_folder_lacks_stops_the_run(tmp_path, export):
    for path in export.glob("Condition.*"):
        path.unlink()
    _exit_2(tmp_path, export, "manifest.json", "lists Condition output", "holds no Condition file", "Download the export again")


def test_files_of_a_type_the_manifest_does_not_list_are_another_exports(tmp_path, export):
    manifest = json.loads((export / "manifest.json").read_text())
    manifest["output"] = [e for e in manifest["output"] if e["type"] != "Encounter"]
    (export / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    _exit_2(tmp_path, export, "Encounter", "lists no Encounter output", "two exports", "one export per folder")


@pytest.mark.parametrize(
    "text, needle",
    [
        ("{not json", "is not JSON"),
        ("[" * 100_000, "is not JSON (nested deeper than any manifest)"),  # was a traceback (RecursionError)
        ("[]", "is a JSON list"),
        (json.dumps({"output": []}), "has no transactionTime"),
        (json.dumps({"transactionTime": TRANSACTION_TIME, "output": {"type": "Patient"}}), "'output' is not a list"),
        (
            json.dumps({"transactionTime": TRANSACTION_TIME, "output": [{"type": "Patient", "url": "x", "count": "12"}]}),
            "count that is not a whole number",
        ),
        (json.dumps({"transactionTime": TRANSACTION_TIME, "output": [{"url": "x", "count": 1}]}), "output entry 1 has no type"),
    ],
    ids=["not json", "nested deep", "a list", "no transactionTime", "output not a list", "count as text", "no type"],
)
def test_a_manifest_that_is_not_one_stops_the_run(tmp_path, export, text, needle):
    (export / "manifest.json").write_text(text, encoding="utf-8")
    _exit_2(tmp_path, export, "manifest.json", needle, "Save the $export status response")


@pytest.mark.parametrize(
    ("old", "new", "key", "where"),
    [
        ('"request"', '"transactionTime": "2027-01-01T00:00:00Z",\n    "request"', "transactionTime", "the top level"),
        ('"error"', '"output": [],\n    "error"', "output", "the top level"),
        ('"url"', '"url": "https://fhir.example.org/bulk/job-7/other.ndjson",\n            "url"', "url", "output[0]"),
        ('"error": []', '"error": [],\n    "extension": {"x": [{"a": 1, "a": 2}]}', "a", "extension.x[0]"),
    ],
    ids=["transactionTime", "output", "an entry's url", "deep"],
)
def test_a_key_given_twice_in_the_manifest_stops_every_command_that_reads_it(tmp_path, export, old, new, key, where):
    """json keeps a repeated key's last value without a word: a second transactionTime moved the export's reach, a
    second (empty) output list hid the files listed. Which value is meant is the server's to say."""
    path = export / "manifest.json"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    said = f"manifest.json: gives the key '{key}' twice in one object ({where})"
    _exit_2(tmp_path, export, said, "Save the $export status response again")
    for command in ("inspect", "validate"):
        r = run_cli(command, "--input", export)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        (line,) = [line for line in r.stderr.splitlines() if "error" in line]
        assert said in line, line


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"transactionTime": "<script>alert(1)</script>\n" + "A" * 200_000}, "transactionTime '<script>alert(1)</script>\\nAAAA"),
        ({"transactionTime": "2026-10-31T23:00:00"}, "transactionTime '2026-10-31T23:00:00' is not an instant"),
        ({"transactionTime": "9999-12-31T23:59:59-14:00"}, "transactionTime '9999-12-31T23:59:59-14:00' is not an instant"),
        ({"request": "https://fhir.example.org/fhir/$export?_since=last%20week"}, "the request's _since 'last week' is not"),
    ],
    ids=["200 kB of markup", "no zone", "year 9999", "_since in words"],
)
def test_a_manifest_time_that_is_no_instant_stops_the_run_in_a_short_line(tmp_path, export, body, needle):
    """The volume check passed over a transactionTime (or _since) that is no instant without a word, and run.json
    (three times) and the report's note on the export's error files printed it whole: 200 kB of markup there."""
    _write_manifest(export, error=[{"type": "OperationOutcome", "url": "https://fhir.example.org/bulk/err.ndjson"}], **body)
    line = _exit_2(tmp_path, export, "manifest.json: " + needle, "with its zone (2025-07-01T06:00:00Z)")
    assert len(line) < 400, line


def test_error_and_deleted_files_listed_are_warnings(tmp_path, export):
    _write_manifest(
        export,
        error=[{"type": "OperationOutcome", "url": "https://fhir.example.org/bulk/job-7/err_1.ndjson"}],
        deleted=[{"type": "Bundle", "url": "https://fhir.example.org/bulk/job-7/del_1.ndjson"}] * 2,
    )
    info, stderr = _run(tmp_path, export, "--log-format", "json")
    assert info["export_manifest"]["error_files"] == 1 and info["export_manifest"]["deleted_files"] == 2
    warned = [w for w in info["warnings"] if "manifest.json" in w]
    assert len(warned) == 2
    assert "1 file of errors (OperationOutcome)" in warned[0] and "may miss orders" in warned[0]
    assert "2 files of deleted resources" in warned[1] and "does not apply deletions" in warned[1]
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    kinds = {(e.get("kind"), e.get("files")) for e in events if e.get("event") == "export_warning"}
    assert kinds == {("error_files", 1), ("deleted_files", 2)}


def _plain(html_text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html.unescape(html_text)))


def test_an_error_file_listed_is_in_the_report_and_the_workbook(tmp_path, export):
    """The server said it could not export some resources: the committee reads it in the report (a note on the
    first page of each page, the whole text under Methods, Data quality) and in the workbook's Explanation sheet,
    not only in the log and run.json."""
    _write_manifest(export, error=[{"type": "OperationOutcome", "url": "https://fhir.example.org/bulk/job-7/err_1.ndjson"}])
    _run(tmp_path, export)
    folder = tmp_path / "out" / "csf_leak"
    title = "Incomplete export: the FHIR server listed 1 file of errors"
    report = _plain((folder / "report.html").read_text(encoding="utf-8"))
    assert report.index(title) < report.index("Headline measures")  # first page, above the numbers
    methods = report[report.index("Data quality") :]
    assert f"{title}. The FHIR export's manifest (transactionTime {TRANSACTION_TIME}) lists 1 file of errors" in methods
    assert "missing from this report, so its counts and rates may be wrong" in methods
    assert "deleted resources" not in report
    for page in [tmp_path / "out" / "index.html", folder / "index.html", *sorted((folder / "departments").glob("*.html"))]:
        assert title in _plain(page.read_text(encoding="utf-8")), page.name
    cells = Workbook(folder / "case_list.xlsx").cells("Explanation")
    limits = [cells[(i, 1)]["text"] for (i, j), c in cells.items() if j == 0 and c["text"] == "Data limits"]
    assert len(limits) == 1 and limits[0].startswith(f"{title}. The FHIR export's manifest") and "export again" in limits[0]


def test_without_counts_the_types_are_checked_but_not_the_counts(tmp_path, export):
    """`count` is optional in the specification: a manifest without it cannot tell a file cut short."""
    _write_manifest(export, counts=False)
    path = sorted(export.glob("Encounter.*.ndjson"))[0]
    path.write_text("".join(path.read_text(encoding="utf-8").splitlines(keepends=True)[:-1]), encoding="utf-8")
    info, _ = _run(tmp_path, export)
    assert info["export_manifest"]["resources_counted"] == {}


def test_inspect_shows_the_manifest(tmp_path, export):
    r = run_cli("inspect", "--input", export)
    assert r.returncode == 0, r.stderr
    assert f"manifest.json: transactionTime {TRANSACTION_TIME}" in r.stdout
    r = run_cli("inspect", "--input", export, "--json")
    found = json.loads(r.stdout)
    assert found["manifest"]["transaction_time"] == TRANSACTION_TIME


@pytest.mark.parametrize(
    ("request_url", "since"),
    [
        ("https://fhir.example.org/fhir/$export?_type=Patient&_since=2025-01-01T00:00:00Z", "2025-01-01T00:00:00Z"),
        ("https://fhir.example.org/fhir/$export?_since=2025-01-01T00%3A00%3A00%2B02%3A00", "2025-01-01T00:00:00+02:00"),
        ("https://fhir.example.org/fhir/$export?_since=2025-01-01T00:00:00+02:00&_type=Patient", "2025-01-01T00:00:00+02:00"),
        ("https://fhir.example.org/fhir/$export?_type=Patient", None),
        ("https://fhir.example.org/fhir/$export?_since=", None),
        (None, None),
    ],
    ids=["plain", "escaped", "offset unescaped", "none", "empty", "no request"],
)
def test_the_requests_since_is_read_and_recorded_only_when_given(tmp_path, request_url, since):
    from pipeline.ingest.fhir import manifest

    body = {"transactionTime": TRANSACTION_TIME, "output": [], "error": []}
    if request_url is not None:
        body["request"] = request_url
    (tmp_path / "manifest.json").write_text(json.dumps(body), encoding="utf-8")
    read = manifest.read(tmp_path)
    assert read is not None and read.since == since
    facts = read.facts("manifest.json")
    assert facts.get("since") == since and ("since" in facts) == (since is not None)
