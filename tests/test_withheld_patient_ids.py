"""A published text value that holds its row's own patient id is withheld (nulled at load, a reject without the
value), not published; the gate still stops the run when 0.1% of the rows or more hold it (a column mapping mistake).

Until 2026-12-05 fewer than 0.1% of the rows were a warning and the values were published as they were: one MRN typed
into an order's indication text reached audited_orders.csv, the workbook and the report."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars as pl
from conftest import ORDER_HEADER, PROC_HEADER, published_texts, run_cli, write_csv

from pipeline.ingest.held_patient_ids import WITHHELD_REASON

# 2,000 patients, each a lumbar procedure and a suspected leak's spine MRI four days later (every order audited)
MRNS = [f"{n:08d}" for n in range(73830000, 73832000)]
ORDER_MRN, PROCEDURE_MRN = MRNS[500], MRNS[1200]  # the two rows whose text holds their patient id


def _write_extract(d: Path, provider_is_patient: bool = False) -> Path:
    procedures = [
        [
            f"PR{i}",
            mrn,
            "2025-06-02 09:00:00",
            "62323",
            "Pain clinic " + mrn if mrn == PROCEDURE_MRN else "Pain clinic",
            "1970-05-05",
        ]
        for i, mrn in enumerate(MRNS)
    ]
    orders = [
        [
            f"O{i}",
            mrn,
            "2025-06-06 10:00:00",
            "72156",
            "Neurology",
            "G97.1",
            "completed",
            f"headache after LP, MRN {mrn}, recheck" if mrn == ORDER_MRN else "headache after LP",
            mrn if provider_is_patient else f"NPI{1000000000 + i}",
        ]
        for i, mrn in enumerate(MRNS)
    ]
    write_csv(d / "procedures.csv", PROC_HEADER, procedures)
    write_csv(d / "imaging_orders.csv", [*ORDER_HEADER, "indication_text", "ordering_provider_id"], orders)
    return d


def test_a_text_value_that_holds_its_patient_s_id_is_withheld_from_every_output(tmp_path):
    d = _write_extract(tmp_path / "in")
    out = tmp_path / "out"
    r = run_cli("run", "--input", d, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    kinds = {p.suffix for p, _ in published_texts(out)}
    assert {".csv", ".json", ".html", ".xlsx"} <= kinds, kinds
    for path, text in published_texts(out):
        for mrn in (ORDER_MRN, PROCEDURE_MRN):
            assert mrn not in text, (path, mrn)
    assert ORDER_MRN not in r.stderr and PROCEDURE_MRN not in r.stderr
    # the warnings name the lines and columns, never the values, and say the values were withheld
    for check, line, column in (
        ("orders.published_text.holds_no_patient_id", 502, "indication_text"),
        ("procedures.published_text.holds_no_patient_id", 1202, "department"),
    ):
        said = next(s for s in r.stderr.splitlines() if check in s)
        assert f"line {line} ({column})" in said and "withheld from every output" in said, said
    # the audit went on: the row's order is audited, without its indication text; the procedure's case without its
    # department
    audited = pl.read_csv(out / "csf_leak" / "audited_orders.csv", infer_schema=False)
    assert audited.height == len(MRNS)
    held = audited.filter(pl.col("order_id") == "O500").row(0, named=True)
    assert held["indication_text"] is None and held["verdict"] == "inappropriate"
    cases = pl.read_csv(out / "csf_leak" / "cases.csv", infer_schema=False)
    assert cases.filter(pl.col("case_id") == "PR1200")["department"].to_list() == ["(not recorded)"]
    rejects = pl.read_csv(out / "csf_leak" / "rejects.csv", infer_schema=False).filter(pl.col("reason") == WITHHELD_REASON)
    assert sorted(rejects.select("column_name", "action").rows()) == [
        ("department", "value_nulled"),
        ("indication_text", "value_nulled"),
    ]
    assert rejects["value"].null_count() == 2  # the value hidden


def test_a_column_whose_every_value_is_the_patient_id_still_stops_the_run(tmp_path):
    """Nulling at load must not hide a mapping mistake: the gate counts the values the loader withheld."""
    d = _write_extract(tmp_path / "in", provider_is_patient=True)
    out = tmp_path / "out"
    r = run_cli("run", "--input", d, "--out", out, "--warehouse", tmp_path / "wh.duckdb")
    assert r.returncode == 3, r.stderr
    assert "orders.published_text.holds_no_patient_id [src_imaging_orders] 2000 of 2000 (100.0%)" in r.stderr
    assert "(e.g. line 2 (ordering_provider_id), line 3 (ordering_provider_id)" in r.stderr
    assert "Traceback" not in r.stderr and not out.exists()


def test_the_check_counts_the_values_the_loader_withheld():
    """In the gate the text columns hold no such value any more (the loader nulled them): the check counts the
    loader's rejects with what the table still holds (its codes), and stops the run at 0.1%."""
    from pipeline.quality.sql_checks import check_order_text_hides_patient_ids

    con = duckdb.connect()
    con.execute(
        "CREATE TABLE src_imaging_orders (source_line BIGINT, order_id VARCHAR, patient_id VARCHAR, "
        "ordering_provider_id VARCHAR, order_code VARCHAR, indication_text VARCHAR)"
    )
    rows = [
        (2, "O1", "MRN104501", None, "72156", "back pain"),  # its provider withheld by the loader
        (3, "O2", "MRN104502", "NPI1", "MRN104502", None),  # its code holds it (and its indication was withheld)
        (4, "O3", "MRN104503", "NPI1", "72156", "back pain"),
    ]
    con.executemany("INSERT INTO src_imaging_orders VALUES (?, ?, ?, ?, ?, ?)", rows)
    con.execute(
        "CREATE TABLE incoming_rejects AS SELECT * FROM (VALUES ('imaging_orders', 2, 'ordering_provider_id', NULL, ?, "
        "'value_nulled'), ('imaging_orders', 3, 'indication_text', NULL, ?, 'value_nulled'), ('imaging_orders', 9, "
        "'indication_text', NULL, ?, 'value_nulled')) AS r(table_name, source_line, column_name, value, reason, action)",
        [WITHHELD_REASON] * 3,
    )
    violated, total, failed, sample, _, note, _ = check_order_text_hides_patient_ids({})[1](con)
    # line 9 is no row of the table (set aside for another reason): not counted
    assert (violated, total, failed, note) == (2, 3, True, None)
    assert sample == ["line 2 (ordering_provider_id)", "line 3 (order_code, indication_text)"]


def test_an_export_s_indication_text_that_holds_its_patient_s_id_is_withheld(tmp_path):
    """A FHIR export goes through the same loader: a ServiceRequest's reason text (indication_text) holding its
    subject's id is withheld alike."""
    from fhir_export import export_extract

    export = tmp_path / "export"
    export_extract(_write_extract(tmp_path / "in"), export, lines_per_file=5000, variety=False)
    requests = export / "ServiceRequest.000.ndjson"
    resources = [json.loads(line) for line in requests.read_text(encoding="utf-8").splitlines()]
    for resource in resources:
        if resource["subject"]["reference"] == f"Patient/{ORDER_MRN}":
            resource["reasonCode"][0]["text"] = f"headache after LP, MRN {ORDER_MRN}"
    requests.write_text("".join(json.dumps(r) + "\n" for r in resources), encoding="utf-8")
    out = tmp_path / "out"
    r = run_cli("run", "--input", export, "--out", out)
    assert r.returncode == 0, r.stderr
    for path, text in published_texts(out):
        assert ORDER_MRN not in text, path
    said = next(s for s in r.stderr.splitlines() if "orders.published_text.holds_no_patient_id" in s)
    assert "(indication_text)" in said and "withheld from every output" in said, said
    rejects = pl.read_csv(out / "csf_leak" / "rejects.csv", infer_schema=False).filter(pl.col("reason") == WITHHELD_REASON)
    assert rejects.select("source_file", "column_name", "value").rows() == [
        ("ServiceRequest.000.ndjson", "indication_text", None)
    ]
