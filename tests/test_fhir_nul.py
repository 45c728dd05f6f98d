"""A NUL inside a FHIR JSON string (``"knee\\u0000pain"``) through the real CLI.

JSON allows the escape, but no text holds a NUL: a CSV extract with one is refused whole
(test_bad_inputs), and a C program, a database's text type or a spreadsheet cuts the value at
it. The export's line is a reject naming the file, the line and the element, and the run goes
on; no published output holds a NUL. The value is never rewritten (a code must match its map
exactly). Other control characters stay as delivered, as in an extract (docs/FHIR.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from conftest import run_cli, write_small_input
from fhir_export import export_extract
from test_fhir_input import CPT, ICD, _lines, _sr

from pipeline.ingest.fhir.settings import NPI

NUL = "\u0000"
ESC = "\u001b"

# the second ServiceRequest file: (line, the element named in its reject, or None: loaded)
SR_FILE = [
    (_sr("N1", code={"coding": [{"system": CPT, "code": "72148"}], "text": f"MRI knee{NUL}pain"}), "ServiceRequest.code.text"),
    (_sr("N2", reasonCode=[{"text": f"knee{NUL}pain"}]), "ServiceRequest.reasonCode.text"),
    (_sr("N3", code={"coding": [{"system": CPT, "code": f"7214{NUL}8"}]}), "ServiceRequest.code.coding.code"),
    (_sr("N4", reasonCode=[{"text": f"an escape {ESC} stays"}]), None),
    (_sr("N5"), None),
]


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("fhir_nul")
    export = base / "export"
    export_extract(write_small_input(base / "csv"), export, lines_per_file=1000, variety=False)
    (export / "ServiceRequest.001.ndjson").write_text(_lines(*(item for item, _ in SR_FILE)), encoding="utf-8")
    assert "\\u0000" in (export / "ServiceRequest.001.ndjson").read_text(encoding="utf-8")  # as JSON escapes it
    appended = {
        "Location.000.ndjson": {"resourceType": "Location", "id": "L9", "name": f"Neuro{NUL}logy"},
        "Condition.000.ndjson": {
            "resourceType": "Condition",
            "id": "c9",
            "subject": {"reference": "Patient/MRN-1"},
            "recordedDate": "2025-06-04",
            "code": {"coding": [{"system": ICD, "code": f"G97.{NUL}1"}]},
        },
        "Procedure.000.ndjson": {
            "resourceType": "Procedure",
            "id": "PR9",
            "status": "completed",
            "subject": {"reference": "Patient/MRN-2"},
            "performedDateTime": "2025-06-03T09:00:00-04:00",
            "code": {"coding": [{"system": CPT, "code": "62323"}], "text": f"epidural{NUL}"},
        },
        "Practitioner.000.ndjson": {
            "resourceType": "Practitioner",
            "id": "DR9",
            "identifier": [{"system": NPI, "value": f"12{NUL}3"}],
        },
    }
    lines = {}
    for name, resource in appended.items():
        path = export / name
        with path.open("a", encoding="utf-8") as fh:
            # a blank line sends the Procedure file the lines' way (fhir/lines.py), the others are read whole
            fh.write(("\n" if name.startswith("Procedure") else "") + _lines(resource))
        lines[name] = len(path.read_text(encoding="utf-8").splitlines())
    out = base / "out"
    # --no-validate: the NUL lines are a large share of the small export's own resources, which the gate stops at
    # (test_fhir_input: ..._mostly_rejected_stops_at_the_gate); here each line's reject is the point
    result = run_cli("run", "--input", export, "--out", out, "--warehouse", base / "wh.duckdb", "--no-validate")
    assert result.returncode == 0, result.stderr
    return {"out": out, "lines": lines, "rejects": pl.read_csv(out / "csf_leak" / "rejects.csv", infer_schema=False)}


def _reject(ran: dict, file: str, line: int) -> dict:
    rows = ran["rejects"].filter(pl.col("source_file").str.ends_with(file) & (pl.col("source_line") == str(line)))
    assert rows.height == 1, ran["rejects"]
    return rows.row(0, named=True)


CASES = [(n, element) for n, (_, element) in enumerate(SR_FILE, start=1) if element]


@pytest.mark.parametrize(("line", "element"), CASES, ids=[e for _, e in CASES])
def test_a_nul_in_a_servicerequest_is_a_reject_naming_file_line_and_element(ran, line, element):
    row = _reject(ran, "ServiceRequest.001.ndjson", line)
    assert (row["table_name"], row["column_name"], row["action"]) == ("imaging_orders", element, "row_rejected")
    assert row["reason"] == f"a NUL character (\\u0000) in {element}: no text holds one (a damaged export)"
    assert row["value"] is None  # the value is not shown (it could be anything the line held)


@pytest.mark.parametrize(
    ("file", "table", "element"),
    [
        ("Location.000.ndjson", "imaging_orders", "Location.name"),
        ("Condition.000.ndjson", "diagnoses", "Condition.code.coding.code"),
        ("Procedure.000.ndjson", "procedures", "Procedure.code.text"),
        ("Practitioner.000.ndjson", "imaging_orders", "Practitioner.identifier"),
    ],
)
def test_a_nul_in_another_type_is_a_reject_too(ran, file, table, element):
    row = _reject(ran, file, ran["lines"][file])
    assert (row["table_name"], row["column_name"], row["action"]) == (table, element, "row_rejected")


def test_no_published_output_holds_a_nul(ran):
    published = [p for p in ran["out"].rglob("*") if p.is_file()]
    for path in published:
        if path.suffix == ".parquet":  # binary: its text columns are read back
            frame = pl.read_parquet(path)
            for column in frame.select(pl.col(pl.String)).columns:
                assert not frame[column].str.contains(NUL, literal=True).any(), (path, column)
        elif path.suffix in {".csv", ".json", ".html", ".svg", ".txt"}:
            assert NUL not in path.read_text(encoding="utf-8"), path


def test_other_control_characters_stay_as_delivered(ran):
    orders = pl.read_csv(ran["out"] / "csf_leak" / "audited_orders.csv", infer_schema=False)
    loaded = dict(orders.filter(pl.col("order_id").is_in(["N4", "N5"])).select("order_id", "indication_text").iter_rows())
    assert loaded == {"N4": f"an escape {ESC} stays", "N5": None}
    html = (ran["out"] / "csf_leak" / "report.html").read_text(encoding="utf-8")
    assert ESC not in html  # the report shows it as [U+001B] (report/controls.py), as for an extract


def test_the_report_counts_the_rejected_lines(ran):
    run = json.loads((Path(ran["out"]) / "csf_leak" / "run.json").read_text())
    orders = {i["table"]: i for i in run["inputs"]}["imaging_orders"]
    # 4 orders of the first file and N4, N5 loaded; N1-N3, the Location line and the Practitioner line rejected
    assert (orders["rows_loaded"], orders["rows_rejected"]) == (6, 5)
