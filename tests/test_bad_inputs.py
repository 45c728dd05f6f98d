"""A corpus of bad inputs, each with its expected outcome, through the real CLI.

Three kinds of outcome:

* file-level problems stop the run before anything is written: exit 2 (unreadable file)
  or 3 (a required column missing: the gate's schema check), one line naming the file;
* row-level problems set the row aside (``rejects.csv``: file, line, column, reason) or
  null the value (counted), and the run goes on (exit 0);
* warnings (volume, unmapped codes, unknown patients, code formats) are reported in
  ``run.json`` ``data_quality`` with status failed and severity warning, exit 0.

Row-level defects and warnings share one extract and one gated run (module fixture):
each CLI run with the gate costs several seconds.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import polars as pl
import pytest
from conftest import DX_HEADER, ORDER_HEADER, PROC_HEADER, files_showing, run_cli, write_csv, write_small_input

from pipeline import formula_guard
from pipeline.ingest.contract import CONTRACT_BY_NAME, CONTRACTS

PROC_HEADER_X = [*PROC_HEADER, "needle_gauge", "attempts"]


def _proc(pid: str, patient: str, when: str, code: str = "62270", gauge: str = "22", attempts: str = "1") -> list[str]:
    return [pid, patient, when, code, "Neurology", "1970-01-01", gauge, attempts]


def _order(oid: str, patient: str, when: str, code: str = "72148", status: str = "completed") -> list[str]:
    return [oid, patient, when, code, "Neurology", "G97.1", status]


def _clean_tables() -> tuple[list[list[str]], list[list[str]], list[list[str]]]:
    procs = [_proc(f"PR{i}", f"MRN-{i}", f"2025-{1 + i % 9:02d}-05 09:00:00") for i in range(1, 31)]
    orders = []
    for m in range(1, 11):  # 2025-01 .. 2025-10, 60 orders a month
        for j in range(60):
            orders.append(
                _order(f"O{m:02d}{j:03d}", f"MRN-{1 + (m * 60 + j) % 30}", f"2025-{m:02d}-{1 + j % 27:02d} 12:{j % 60:02d}:00")
            )
    dx = [[f"MRN-{i}", "G97.1", f"2025-0{1 + i % 9}-06 08:00:00"] for i in range(1, 31)]
    return procs, orders, dx


def _write_orders_raw(path: Path, rows: list[list[str]], tail: str = "", newline: str = "\n", bom: bool = False) -> None:
    """Orders CSV; ``tail`` is appended as-is after the last full row (a row cut off mid-way)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8-sig" if bom else "utf-8") as fh:
        w = csv.writer(fh, lineterminator=newline)
        w.writerow(ORDER_HEADER)
        w.writerows(rows)
        fh.write(tail)


# the run history and the mark that tells the warehouse as order-audit's (warehouse.MARK_TABLE)
HISTORY_TABLES = {"audit_runs", "audit_results", "run_verdicts", "order_audit_warehouse"}


def _assert_nothing_written(out: Path, wh: Path) -> None:
    """No output folder, and no data in the warehouse: at most the run history, recording a failed run."""
    import duckdb

    assert not out.exists()
    if wh.exists():
        con = duckdb.connect(str(wh), read_only=True)
        try:
            tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
            assert tables <= HISTORY_TABLES, tables
            if "audit_runs" in tables:
                assert {r[0] for r in con.execute("SELECT status FROM audit_runs").fetchall()} <= {"failed"}
        finally:
            con.close()


def _rejects(out: Path) -> pl.DataFrame:
    return pl.read_csv(out / "csf_leak" / "rejects.csv", infer_schema=False)


def _run_json(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


# ----------------------------------------------------------------------------------------------
# file-level: each required column missing -> exit 3, one line naming file and column, nothing written

REQUIRED = [(c.name, col) for c in CONTRACTS for col in c.required_columns]


@pytest.mark.parametrize(("table", "column"), REQUIRED, ids=[f"{t}.{c}" for t, c in REQUIRED])
def test_each_required_column_missing_exits_3_and_writes_nothing(tmp_path, small_input, table, column):
    path = small_input / f"{table}.csv"
    if not path.exists():  # a table the small input does not deliver (patients): one row of it
        write_csv(path, list(CONTRACT_BY_NAME[table].required_columns), [["MRN-1", "1970-05-05"]])
    df = pl.read_csv(path, infer_schema=False).drop(column)
    df.write_csv(path)
    out, wh = tmp_path / "out", tmp_path / "wh.duckdb"
    r = run_cli("run", "--input", small_input, "--out", out, "--warehouse", wh)
    assert r.returncode == 3, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert len(errors) == 1, r.stderr
    assert f"{table}.csv" in errors[0] and column in errors[0] and "required column" in errors[0]
    _assert_nothing_written(out, wh)
    assert "great_expectations" not in r.stderr


# ----------------------------------------------------------------------------------------------
# file-level: unreadable files -> exit 2, nothing written


def _expect_exit_2(tmp_path: Path, input_dir: Path, *needles: str) -> str:
    out, wh = tmp_path / "out", tmp_path / "wh.duckdb"
    r = run_cli("run", "--input", input_dir, "--out", out, "--warehouse", wh)
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    for n in needles:
        assert n in line, (n, r.stderr)
    _assert_nothing_written(out, wh)
    return line


def test_empty_file_exits_2(tmp_path, small_input):
    (small_input / "imaging_orders.csv").write_bytes(b"")
    _expect_exit_2(tmp_path, small_input, "imaging_orders.csv", "empty")


def test_header_only_exits_2(tmp_path, small_input):
    (small_input / "procedures.csv").write_text(",".join(PROC_HEADER) + "\n")
    _expect_exit_2(tmp_path, small_input, "procedures.csv", "no rows")


def test_non_utf8_byte_exits_2_naming_the_line(tmp_path, small_input):
    path = small_input / "imaging_orders.csv"
    lines = path.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b"Neurology", b"Neurolog\xe9")  # Latin-1 e-acute on line 4
    path.write_bytes(b"\n".join(lines))
    # and the setting that reads such a file (the site's export tool seldom offers UTF-8)
    setting = ("[formats.imaging_orders]", 'encoding = "cp1252"')
    _expect_exit_2(tmp_path, small_input, "imaging_orders.csv", "line 4", "0xe9", "UTF-8", *setting)


def test_parquet_named_csv_exits_2(tmp_path, small_input):
    pl.read_csv(small_input / "procedures.csv", infer_schema=False).write_parquet(tmp_path / "p.parquet")
    (small_input / "procedures.csv").write_bytes((tmp_path / "p.parquet").read_bytes())
    _expect_exit_2(tmp_path, small_input, "procedures.csv", "Parquet file named .csv")


# ----------------------------------------------------------------------------------------------
# loads normally: a byte-order mark, Windows line endings


def test_bom_and_windows_line_endings_load_normally(tmp_path):
    procs, orders, dx = _clean_tables()
    d = tmp_path / "in"
    d.mkdir()
    with (d / "procedures.csv").open("w", newline="", encoding="utf-8-sig") as fh:
        w = csv.writer(fh, lineterminator="\r\n")
        w.writerow(PROC_HEADER_X)
        w.writerows(procs)
    _write_orders_raw(d / "imaging_orders.csv", orders, newline="\r\n", bom=True)
    write_csv(d / "diagnoses.csv", DX_HEADER, dx, newline="\r\n")
    assert (d / "procedures.csv").read_bytes().startswith(b"\xef\xbb\xbfprocedure_id")
    assert b"\r\n" in (d / "imaging_orders.csv").read_bytes()
    out = tmp_path / "out"
    r = run_cli("run", "--input", d, "--out", out, "--warehouse", tmp_path / "wh.duckdb", "--no-validate")
    assert r.returncode == 0, r.stderr
    info = _run_json(out)
    loaded = {i["table"]: (i["rows_read"], i["rows_loaded"], i["rows_rejected"]) for i in info["inputs"]}
    assert loaded == {"procedures": (30, 30, 0), "imaging_orders": (600, 600, 0), "diagnoses": (30, 30, 0)}
    assert _rejects(out).height == 0
    # the CR did not end up in the last column's values
    import duckdb

    con = duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True)
    try:
        statuses = {r[0] for r in con.execute("SELECT DISTINCT status FROM src_imaging_orders").fetchall()}
        first = con.execute("SELECT count(*) FROM src_procedures WHERE procedure_id = 'PR1'").fetchall()[0][0]
    finally:
        con.close()
    assert statuses == {"completed"}
    assert first == 1


# ----------------------------------------------------------------------------------------------
# row-level defects and warnings: one extract, one gated run


BAD = {}  # kind -> (table, source line) of the defective row


def write_messy_input(d: Path) -> Path:
    """The row-level defects and warnings below, as one input folder (fills BAD)."""
    procs, orders, dx = _clean_tables()

    def mark(kind: str, table: str, rows: list, row: list[str]) -> None:
        rows.append(row)
        BAD[kind] = (table, len(rows) + 1)  # header is line 1

    # procedures: wrong types (value nulled), duplicate id, DST gap, a CPT code with a letter
    mark("needle_gauge_text", "procedures", procs, _proc("PR101", "MRN-1", "2025-04-07 09:00:00", gauge="twenty-two"))
    mark("attempts_text", "procedures", procs, _proc("PR102", "MRN-2", "2025-04-08 09:00:00", attempts="three"))
    mark("cpt_with_letter", "procedures", procs, _proc("PR103", "MRN-3", "2025-04-09 09:00:00", code="0001U"))
    mark("procedure_dst_gap", "procedures", procs, _proc("PR104", "MRN-4", "2025-03-09 02:30:00"))
    mark("duplicate_procedure_id", "procedures", procs, _proc("PR1", "MRN-5", "2025-04-10 09:00:00"))
    # a birth date after the procedure (and after every order of the patient)
    born_late = _proc("PR105", "MRN-10", "2025-04-11 09:00:00")
    born_late[5] = "2026-01-01"
    mark("procedure_before_birth", "procedures", procs, born_late)
    # 2025-06 keeps a tenth of its usual volume (6 of 60)
    orders[:] = [o for o in orders if not (o[0].startswith("O06") and int(o[0][3:]) >= 6)]
    # 7% of the orders carry a local code nobody mapped
    for o in orders[::14]:
        o[3] = "XLOC-MRI"
    BAD["n_local_codes"] = len(orders[::14])
    mark("duplicate_order_id", "imaging_orders", orders, _order("O01000", "MRN-9", "2025-07-01 10:00:00"))
    mark("future_ordered_at", "imaging_orders", orders, _order("O99001", "MRN-9", "2027-01-15 10:00:00"))
    mark("future_ordered_at_2", "imaging_orders", orders, _order("O99002", "MRN-9", "2030-02-01 10:00:00"))
    mark("second_time_format", "imaging_orders", orders, _order("O99003", "MRN-9", "03/07/2025 10:00"))
    mark("unknown_status", "imaging_orders", orders, _order("O99004", "MRN-9", "2025-07-02 10:00:00", status="lost"))
    mark("order_dst_gap", "imaging_orders", orders, _order("O99005", "MRN-9", "2025-03-09 02:15:00"))
    mark("excel_mangled_code", "imaging_orders", orders, _order("O99006", "MRN-9", "2025-07-03 10:00:00", code="72148.0"))
    mark("leading_zero_code", "imaging_orders", orders, _order("O99007", "MRN-9", "2025-07-04 10:00:00", code="07214"))
    # the file ends mid-row (no newline, too few fields)
    BAD["n_orders_before_birth"] = sum(o[1] == "MRN-10" for o in orders)
    BAD["truncated_last_row"] = ("imaging_orders", len(orders) + 2)
    tail = "O99999,MRN-9,2025-07-05 10:0"
    dx.append(["MRN-NOBODY", "G97.1", "2025-05-01 08:00:00"])
    BAD["unknown_patient_diagnosis"] = ("diagnoses", len(dx) + 1)

    write_csv(d / "procedures.csv", PROC_HEADER_X, procs)
    _write_orders_raw(d / "imaging_orders.csv", orders, tail=tail)
    write_csv(d / "diagnoses.csv", DX_HEADER, dx)
    return d


@pytest.fixture(scope="module")
def messy(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("messy")
    d = write_messy_input(base / "in")
    out = base / "out"
    r = run_cli("run", "--input", d, "--out", out, "--warehouse", base / "wh.duckdb", "--log-format", "json")
    assert r.returncode == 0, r.stderr
    (base / "stderr.jsonl").write_text(r.stderr, encoding="utf-8")  # what a scheduler reads of the run
    return out


def _reject_rows(out: Path, kind: str) -> pl.DataFrame:
    table, line = BAD[kind]
    rej = _rejects(out)
    return rej.filter((pl.col("table_name") == table) & (pl.col("source_line") == str(line)))


def _dq(out: Path) -> dict:
    return {d["check_id"]: d for d in _run_json(out)["data_quality"]}


@pytest.mark.parametrize(
    ("kind", "column", "reason", "action"),
    [
        ("needle_gauge_text", "needle_gauge", "not a whole number", "value_nulled"),
        ("attempts_text", "attempts", "not a whole number", "value_nulled"),
        ("duplicate_procedure_id", "procedure_id", "duplicate procedure_id: first seen at line 2", "row_rejected"),
        ("procedure_dst_gap", "performed_at", "DST gap", "row_rejected"),
        ("duplicate_order_id", "order_id", "duplicate order_id: first seen at line 2", "row_rejected"),
        ("second_time_format", "ordered_at", "unparseable timestamp", "row_rejected"),
        ("order_dst_gap", "ordered_at", "DST gap", "row_rejected"),
        ("truncated_last_row", None, "cut off mid-row", "row_rejected"),
        ("future_ordered_at", "ordered_at", "data-quality check orders.ordered_at.not_future", "row_rejected"),
        ("unknown_status", "status", "data-quality check orders.status.allowed", "row_rejected"),
    ],
)
def test_row_level_defect_is_set_aside_with_file_line_column_reason(messy, kind, column, reason, action):
    rows = _reject_rows(messy, kind)
    assert rows["action"].unique().to_list() == [action], rows  # one row, or several problems of one row
    rows = rows.filter(pl.col("reason").str.contains(reason, literal=True))
    assert rows.height == 1, (kind, _rejects(messy))
    row = rows.row(0, named=True)
    table = BAD[kind][0]
    assert row["source_file"].endswith(f"{table}.csv")
    assert row["column_name"] == column
    assert reason in row["reason"], row
    assert row["action"] == action


def test_a_file_cut_short_is_a_warning_a_scheduler_sees(messy):
    """A CSV whose last row is cut off mid-row was cut short in a copy or an export: the rows after the cut never
    arrived. Its one reject alone was a run that exited 0 and logged nothing at warning level."""
    table, line = BAD["truncated_last_row"]
    dq = _dq(messy)
    cut = dq["orders.file.whole"]
    assert (cut["status"], cut["severity"], cut["violated_count"]) == ("failed", "warning", 1)
    assert cut["sample_keys"] == [f"line {line}"]
    assert dq["procedures.file.whole"]["status"] == "passed"  # the other files end with a whole row
    events = [json.loads(x) for x in (messy.parent / "stderr.jsonl").read_text(encoding="utf-8").splitlines()]
    warned = [e for e in events if e.get("event") == "dq_warning" and e.get("check_id") == "orders.file.whole"]
    assert len(warned) == 1 and warned[0]["level"] == "warning", events
    assert "cut short" in warned[0]["message"] and f"line {line}" in warned[0]["message"]


def test_first_of_duplicates_is_kept_and_rejected_rows_are_not_audited(messy):
    audited = pl.read_csv(messy / "csf_leak" / "audited_orders.csv", infer_schema=False)
    ids = set(audited["order_id"])
    for oid in ("O99001", "O99002", "O99003", "O99004", "O99005", "O99999"):
        assert oid not in ids
    # O01000 was loaded from line 2 (the first copy): its patient is the first row's
    info = _run_json(messy)
    loads = {i["table"]: i for i in info["inputs"]}
    _, orders_line_count = BAD["truncated_last_row"]
    assert loads["imaging_orders"]["rows_read"] == orders_line_count - 1  # the cut row is read, then rejected
    rejected = set(_rejects(messy).filter(pl.col("table_name") == "imaging_orders")["source_line"])
    assert loads["imaging_orders"]["rows_loaded"] + len(rejected) == orders_line_count - 1
    assert loads["procedures"]["values_nulled"] == 2


def test_future_dates_are_counted_by_the_gate_and_the_run_goes_on(messy):
    dq = _dq(messy)["orders.ordered_at.not_future"]
    assert (dq["status"], dq["severity"], dq["violated_count"], dq["rows_set_aside"]) == ("failed", "blocking", 2, 2)
    assert sorted(dq["sample_keys"]) == ["O99001", "O99002"]
    assert dq["blocks"] is False
    status = _dq(messy)["orders.status.allowed"]
    assert (status["status"], status["violated_count"], status["rows_set_aside"]) == ("failed", 1, 1)
    assert _run_json(messy)["rejects"]["rejected_rows"]["imaging_orders"] == 7


def test_codes_read_as_numbers(messy):
    """0001U and a leading zero survive as text; Excel's 72148.0 is not repaired but reported.

    A code with ".0" is flagged by the order_code.format warning (its row named in the sample),
    counted as unmapped in the mapped-share warning, and audited as not_evaluable
    (unmapped_code): rewriting codes silently would hide an export that went through Excel.
    """
    dq = _dq(messy)
    assert dq["procedures.procedure_code.format"]["status"] == "passed"  # 0001U is CPT form
    fmt = dq["orders.order_code.format"]
    # every XLOC-MRI local code, plus 72148.0; 07214 is in CPT form and passes
    assert (fmt["status"], fmt["severity"], fmt["rows_set_aside"]) == ("failed", "warning", 0)
    assert fmt["violated_count"] == BAD["n_local_codes"] + 1
    assert dq["orders.order_code.mapped_share"]["violated_count"] == BAD["n_local_codes"] + 1
    assert not _rejects(messy).filter(pl.col("value") == "72148.0").height  # not rejected, loaded as is
    assert _reject_rows(messy, "leading_zero_code").height == 0
    assert _reject_rows(messy, "cpt_with_letter").height == 0


def test_code_text_survives_into_the_warehouse(messy):
    import duckdb

    con = duckdb.connect(str(messy.parent / "wh.duckdb"), read_only=True)
    try:
        codes = dict(
            con.execute("SELECT order_id, order_code FROM src_imaging_orders WHERE order_id IN ('O99006', 'O99007')").fetchall()
        )
        proc = con.execute("SELECT procedure_code FROM src_procedures WHERE procedure_id = 'PR103'").fetchall()
        nulled = con.execute(
            "SELECT needle_gauge, attempts FROM src_procedures WHERE procedure_id IN ('PR101', 'PR102') ORDER BY procedure_id"
        ).fetchall()
    finally:
        con.close()
    assert codes == {"O99006": "72148.0", "O99007": "07214"}
    assert proc == [("0001U",)]
    assert nulled == [(None, 1), (22, None)]


@pytest.mark.parametrize(
    ("check_id", "count", "sample"),
    [
        ("orders.volume.monthly", 1, "2025-06"),
        ("orders.order_code.mapped_share", "n_local_codes+1", None),
        ("procedures.performed_at.after_birth", 1, "PR105"),
        ("orders.ordered_at.after_birth", "n_orders_before_birth", None),
    ],
)
def test_warnings_are_reported_and_the_run_goes_on(messy, check_id, count, sample):
    dq = _dq(messy)[check_id]
    assert (dq["status"], dq["severity"], dq["blocks"], dq["rows_set_aside"]) == ("failed", "warning", False, 0)
    if count == "n_local_codes+1":
        count = BAD["n_local_codes"] + 1
    elif isinstance(count, str):
        count = BAD[count]
        assert count > 0
    if count is not None:
        assert dq["violated_count"] == count
    if sample is not None:
        assert dq["sample_keys"] == [sample]


def test_a_diagnosis_of_an_unknown_patient_is_counted_in_a_note(messy):
    """One diagnosis whose patient no other feed knows, among the extract's: no warning (a patient diagnosed and never
    imaged has no other row where no patients table is sent), a note counting it; the check fails when 90% or more
    do (test_gate.py: the feeds' patient ids do not match)."""
    dq = _dq(messy)["diagnoses.patient_id.known_patient"]
    assert (dq["status"], dq["violated_count"]) == ("passed", 1)
    assert dq["note"].startswith(f"1 of {dq['denominator']:,} diagnoses belong to a patient with no procedure")


def test_the_report_and_workbook_say_warning_and_set_aside_not_failed(messy):
    """A warning (its rows kept, the run not stopped) reads as a warning, in amber, and a blocking check whose few rows
    were set aside reads as rows set aside: both printed "failed" in red, which a committee reads as a run that failed.
    A blocking check that fails otherwise stops the run, so no report shows one."""
    import re  # noqa: PLC0415 - only this test reads the report's checks table

    from xlsx_xml import Workbook  # noqa: PLC0415

    checks = _run_json(messy)["data_quality"]
    assert any(d["severity"] == "warning" and d["status"] == "failed" for d in checks)
    assert any(d["severity"] == "blocking" and d["rows_set_aside"] for d in checks)
    for audit in ("csf_leak", "low_back_pain"):
        page = (messy / audit / "report.html").read_text(encoding="utf-8")
        section = page[page.index('id="data-quality"') : page.index("Rejected and corrected input rows")]
        shown = re.findall(r'<tr class="dq-([a-z_]+)"><td><code>([^<]+)</code>.*?<td class="status">([^<]+)</td>', section)
        rows = {check_id: (key, result) for key, check_id, result in shown}
        assert rows and "dq-failed" not in section and "failed</" not in section, section
        info = {d["check_id"]: d for d in _run_json(messy / audit)["data_quality"] if d["status"] != "passed"}
        assert set(rows) == set(info)
        for check_id, d in info.items():
            want = ("warning", "rows kept") if d["severity"] == "warning" else ("set_aside", "rows set aside")
            assert rows[check_id] == want, check_id
        summary = re.search(r"checks by the data-quality gate.*?</p>", section, flags=re.S).group(0)
        assert re.search(r'<span class="dq-warning">\d+ warnings?</span>', summary), summary
        cells = Workbook(messy / audit / "case_list.xlsx").cells("Explanation")
        explained = {cells[(i, 0)]["text"]: cells.get((i, 1), {}).get("text") for i, j in cells if j == 0}
        text = explained["Data quality"]
        assert "failed" not in text and "Warning, rows kept: orders.volume.monthly" in text, text
        if audit == "csf_leak":
            assert "Blocking, rows set aside: orders.ordered_at.not_future" in text, text


def test_unknown_patient_sample_is_pseudonymised(messy):
    dq = _dq(messy)["diagnoses.patient_id.known_patient"]
    assert dq["sample_key"] == "patient_id"
    assert len(dq["sample_keys"]) == 1 and dq["sample_keys"][0].startswith("P") and "NOBODY" not in dq["sample_keys"][0]
    assert "MRN-NOBODY" not in (messy / "run.json").read_text()


def test_no_blocking_check_failed_beyond_what_was_set_aside(messy):
    for d in _run_json(messy)["data_quality"]:
        if d["severity"] == "blocking" and d["status"] != "passed":
            assert d["row_level"] and d["rows_set_aside"] == d["violated_count"], d
        assert d["status"] != "error", d


# ----------------------------------------------------------------------------------------------
# extracts in another shape than the contract's (issue 11: ingest items); each through the real CLI


def _clean_input(d: Path) -> Path:
    procs, orders, dx = _clean_tables()
    write_csv(d / "procedures.csv", PROC_HEADER_X, procs)
    _write_orders_raw(d / "imaging_orders.csv", orders)
    write_csv(d / "diagnoses.csv", DX_HEADER, dx)
    return d


def test_input_path_that_is_a_file_says_so(tmp_path):
    d = _clean_input(tmp_path / "in")
    out, wh = tmp_path / "out", tmp_path / "wh.duckdb"
    r = run_cli("run", "--input", d / "imaging_orders.csv", "--out", out, "--warehouse", wh)
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert "imaging_orders.csv: is a file, not a folder" in line and str(d) in line, line
    assert "not found" not in line
    _assert_nothing_written(out, wh)


@pytest.mark.parametrize("kind", ["folder", "pipe"])
def test_table_name_that_is_a_folder_or_a_pipe_is_one_line(tmp_path, small_input, kind):
    """A folder named imaging_orders.csv was a traceback (IsADirectoryError); a pipe would have hung the run."""
    import os

    path = small_input / "imaging_orders.csv"
    path.unlink()
    if kind == "folder":
        path.mkdir()
    else:
        os.mkfifo(path)
    what = "is a folder" if kind == "folder" else "is not a regular file"
    _expect_exit_2(tmp_path, small_input, f"imaging_orders.csv: {what}", "Put the imaging_orders extract")


def test_table_file_that_is_a_broken_link_says_so(tmp_path, small_input):
    """It read as missing: 'required file missing (found imaging_orders.csv: only .csv ... are read)'."""
    path = small_input / "imaging_orders.csv"
    path.unlink()
    path.symlink_to(tmp_path / "moved_away.csv")
    line = _expect_exit_2(tmp_path, small_input, "imaging_orders.csv: is a link to a file that does not exist")
    assert "required file missing" not in line


def test_quote_never_closed_names_the_line_it_opens_on(tmp_path, small_input):
    """Said only 'the CSV could not be parsed', with no line: the quote opens on line 6, the last."""
    path = small_input / "imaging_orders.csv"
    with path.open("a") as fh:
        fh.write('O5,MRN-2,"2025-06-04 09:00:00,72148,Emergency,,completed\n')
    _expect_exit_2(tmp_path, small_input, "imaging_orders.csv, line 6", "quoted field opens on this line and is never closed")


def test_quote_never_closed_with_more_than_128_kib_after_it_names_its_line(tmp_path, small_input):
    """The rest of the file read as one field passed the csv module's limit (131,072 characters): the error said
    'field larger than field limit', with no line."""
    path = small_input / "imaging_orders.csv"
    with path.open("a") as fh:
        fh.write('O5,MRN-2,"2025-06-04 09:00:00,72148,Emergency,,completed\n' + ("x" * 1000 + "\n") * 200)
    _expect_exit_2(tmp_path, small_input, "imaging_orders.csv, line 6", "quoted field opens on this line and is never closed")


def test_file_name_with_a_line_break_keeps_the_error_on_one_line(tmp_path, small_input):
    """A configured file name holding a line break (and a bidi control) split the one line in two."""
    name = "it's; a\nname \u202e\u00fc.csv"
    path = small_input / name
    (small_input / "imaging_orders.csv").rename(path)
    with path.open("a") as fh:
        fh.write("O9,MRN-2,2025-06-04 09:00:00,72148,Emergency,,completed,x,y\n")
    config = tmp_path / "order-audit.toml"
    config.write_text(f"[formats.imaging_orders]\nfile = {json.dumps(name)}\n")
    out, wh = tmp_path / "out", tmp_path / "wh.duckdb"
    r = run_cli("run", "--input", small_input, "--out", out, "--warehouse", wh, "--config", config)
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("order-audit: error: ") and line.endswith("Fix or re-export the extract as UTF-8 CSV"), r.stderr
    assert "it's; a\\nname \\u202e\u00fc.csv, line 6: cannot be read as CSV: 9 fields" in line
    _assert_nothing_written(out, wh)


def test_nul_byte_past_the_first_64_kib_is_one_line_naming_its_line(tmp_path, small_input):
    """Only the first 64 KiB were looked at for NUL bytes: one further on was loaded, and printed raw into
    the report. Here on line 2005 (O4), after 2000 orders (about 130 KB)."""
    path = small_input / "imaging_orders.csv"
    header, rest = path.read_bytes().split(b"\n", 1)
    filler = b"".join(b"X%05d,MRN-9,2025-06-06 10:00:00,72148,Neurology,G97.1,completed\n" % i for i in range(2000))
    path.write_bytes(header + b"\n" + filler + rest.replace(b"Emergency", b"Emer\x00gency"))
    _expect_exit_2(tmp_path, small_input, "imaging_orders.csv, line 2005", "NUL byte", "Re-export")


def test_a_blocking_gate_failure_names_rows_to_look_at(tmp_path, small_input):
    """The gate's lines gave a count and a share only ('1 of 4 (25.0%)'): nothing to find the row by."""
    path = small_input / "imaging_orders.csv"
    # far in the future, yet inside the years an instant may have (contract.INSTANT_YEARS: 9999 is a parse reject)
    path.write_text(path.read_text().replace("2025-06-06 10:05:00", "2150-12-31 23:59:59"))
    out, wh = tmp_path / "out", tmp_path / "wh.duckdb"
    r = run_cli("run", "--input", small_input, "--out", out, "--warehouse", wh)
    assert r.returncode == 3, r.stderr
    assert "  orders.ordered_at.not_future [src_imaging_orders] 1 of 4 (25.0%) (e.g. order_id O2): " in r.stderr
    _assert_nothing_written(out, wh)


def test_a_repeated_patient_id_is_set_aside_without_showing_the_id(tmp_path, small_input):
    """The later copy of a patients row was listed in the published rejects.csv with its raw patient id."""
    write_csv(small_input / "patients.csv", ["patient_id", "birth_date"], [["MRN-1", "1970-05-05"], ["MRN-1", "1971-01-01"]])
    out = tmp_path / "out"
    r = run_cli("run", "--input", small_input, "--out", out, "--warehouse", tmp_path / "wh.duckdb", "--no-validate")
    assert r.returncode == 0, r.stderr
    rejects = _rejects(out).filter(pl.col("table_name") == "patients")
    assert rejects.select("source_line", "column_name", "value", "action").rows() == [("3", "patient_id", None, "row_rejected")]
    assert rejects["reason"].to_list() == ["duplicate patient_id: first seen at line 2"]
    leaked = files_showing(out, "MRN-")
    assert leaked == [] and "MRN-" not in r.stderr


@pytest.mark.parametrize("values", [True, False], ids=["values", "empty"])
def test_a_header_without_a_name_over_values_is_one_line(tmp_path, small_input, values):
    """A header that lost its last name ('...,indication_codes,') dropped every status silently (cancelled orders
    audited as done); an unnamed column that is empty (a trailing comma on every line) still loads."""
    path = small_input / "imaging_orders.csv"
    text = path.read_text().replace(",status\n", ",\n", 1)
    path.write_text(text if values else text.replace(",completed\n", ",\n"))
    if values:
        _expect_exit_2(tmp_path, small_input, "imaging_orders.csv, line 1: column 7 has no name", "line 2 holds a value")
    else:
        r = run_cli(
            "run", "--input", small_input, "--out", tmp_path / "out", "--warehouse", tmp_path / "wh.duckdb", "--no-validate"
        )
        assert r.returncode == 0, r.stderr


def test_semicolon_delimited_file_gets_a_delimiter_hint(tmp_path):
    d = _clean_input(tmp_path / "in")
    path = d / "imaging_orders.csv"
    path.write_text(path.read_text().replace(",", ";"))
    hint = ("semicolon-delimited", 'delimiter = ";"', "[formats.imaging_orders]")
    _expect_exit_2(tmp_path, d, "imaging_orders.csv, line 1", *hint)


def test_duplicated_header_name_is_an_error_naming_both_positions(tmp_path):
    d = _clean_input(tmp_path / "in")
    path = d / "imaging_orders.csv"
    lines = path.read_text().split("\n")
    lines[0] = lines[0].replace("indication_codes", "patient_id")  # columns 2 and 6 are both patient_id
    path.write_text("\n".join(lines))
    _expect_exit_2(tmp_path, d, "imaging_orders.csv, line 1", "'patient_id' appears twice", "columns 2 and 6")


def test_cr_only_line_ends_load_like_lf(tmp_path):
    d = _clean_input(tmp_path / "in")
    for name in ("procedures.csv", "imaging_orders.csv", "diagnoses.csv"):
        path = d / name
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r"))
    out = tmp_path / "out"
    r = run_cli("run", "--input", d, "--out", out, "--warehouse", tmp_path / "wh.duckdb", "--no-validate")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    loaded = {i["table"]: (i["rows_read"], i["rows_loaded"], i["rows_rejected"]) for i in _run_json(out)["inputs"]}
    assert loaded == {"procedures": (30, 30, 0), "imaging_orders": (600, 600, 0), "diagnoses": (30, 30, 0)}


def test_cr_cr_lf_line_ends_give_the_same_outputs_as_lf(tmp_path):
    """The scheduling review: a CRLF export converted to CRLF again (lines end CR CR LF) named its last column
    `setting\\r`; the optional column was dropped without a word (the low back pain month emptied) and the warehouse
    gained a column so named. Read as LF: the same outputs, byte for byte."""
    from conftest import DX_HEADER, write_csv

    def delivery(folder: Path) -> Path:
        d = _clean_input(folder)
        write_csv(d / "diagnoses.csv", [*DX_HEADER, "setting"], [["MRN-1", "M54.50", "2025-03-01 08:00:00", "outpatient"]])
        return d

    outs = {}
    for ends in (b"\n", b"\r\r\n"):
        d = delivery(tmp_path / f"in{len(ends)}")
        for path in d.glob("*.csv"):
            path.write_bytes(path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", ends))
        out = outs[ends] = tmp_path / f"out{len(ends)}"
        r = run_cli("run", "--input", d, "--out", out, "--warehouse", tmp_path / f"wh{len(ends)}.duckdb", "--no-validate")
        assert r.returncode == 0, r.stderr
    for name in ("audited_orders.csv", "cases.csv", "rejects.csv", "metrics.csv"):
        for audit in ("csf_leak", "low_back_pain"):
            lf, crcrlf = (outs[e] / audit / name for e in (b"\n", b"\r\r\n"))
            assert lf.read_bytes() == crcrlf.read_bytes(), (audit, name)
    import duckdb

    with duckdb.connect(str(tmp_path / "wh3.duckdb"), read_only=True) as con:
        names = {
            c for (c,) in con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = 'src_diagnoses'").fetchall()
        }
    assert "setting" in names and not any("\r" in c for c in names), names


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1 << 16])
def test_a_cr_cr_lf_copy_is_the_same_across_chunk_edges(tmp_path, monkeypatch, chunk):
    """CRs at a chunk's end wait for its next chunk: a CR CR | LF split did not become a lone CR in the copy."""
    from pipeline.ingest import textfile
    from pipeline.ingest.formats import TableFormat

    src, out = tmp_path / "t.csv", tmp_path / "copy.csv"
    src.write_bytes(b'a,b\r\r\n1,"x\r\r\ny"\r\r\n2,z\r\r\n3,\r')
    monkeypatch.setattr(textfile, "CHUNK", chunk)
    assert textfile.utf8_copy(src, TableFormat(), out, "t") == 4
    assert out.read_bytes() == b'a,b\n1,"x\ny"\n2,z\n3,\r'


def test_every_timestamp_unparseable_says_so_and_names_the_setting(tmp_path):
    d = _clean_input(tmp_path / "in")
    path = d / "imaging_orders.csv"
    # 2025-03-14 12:05:00 -> 3/14/2025 12:05 PM: a US export, every value
    text = path.read_text()
    import re

    def us(m: re.Match) -> str:
        hour = int(m[4])
        return f"{int(m[2])}/{int(m[3])}/{m[1]} {hour % 12 or 12}:{m[5]} {'AM' if hour < 12 else 'PM'}"

    path.write_text(re.sub(r"(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):00", us, text))
    out, wh = tmp_path / "out", tmp_path / "wh.duckdb"
    r = run_cli("run", "--input", d, "--out", out, "--warehouse", wh)  # the gate on
    assert r.returncode == 2, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert len(errors) == 1, r.stderr
    line = errors[0]
    for needle in ("imaging_orders.csv", "column 'ordered_at'", "no timestamp in this column parsed", "on line 2"):
        assert needle in line, (needle, line)
    assert 'timestamp_formats = ["%m/%d/%Y %I:%M %p"]' in line and "[formats.imaging_orders]" in line, line
    assert "GX" not in r.stderr and "unexpected_count" not in r.stderr
    _assert_nothing_written(out, wh)


def test_every_birth_date_unparseable_names_date_formats(tmp_path):
    d = _clean_input(tmp_path / "in")
    path = d / "procedures.csv"
    path.write_text(path.read_text().replace("1970-01-01", "01.01.1970"))
    _expect_exit_2(tmp_path, d, "procedures.csv", "column 'patient_birth_date'", "no date in this column parsed", "date_formats")


def write_lines_input(d: Path) -> dict:
    """Orders whose free text holds quoted line breaks (LF and CRLF), then rows with bad timestamps;
    returns each bad row's physical line."""
    procs, orders, dx = _clean_tables()
    write_csv(d / "procedures.csv", PROC_HEADER_X, procs)
    write_csv(d / "diagnoses.csv", DX_HEADER, dx)
    header = [*ORDER_HEADER, "indication_text"]
    rows = [[*o, "headache\nworse upright\r\nsince the injection" if i % 7 == 0 else "headache"] for i, o in enumerate(orders)]
    bad = {
        "+25:00": _order("O99101", "MRN-9", "2025-07-02T10:00:00+25:00"),
        "-99:99": _order("O99102", "MRN-9", "2025-07-02T10:00:00-99:99"),
        "+14:30": _order("O99103", "MRN-9", "2025-07-02T10:00:00+14:30"),
        "unparseable": _order("O99104", "MRN-9", "02/07/2025 10:00"),
        "duplicate": _order("O01001", "MRN-9", "2025-07-03 10:00:00"),
    }
    good_offset = _order("O99105", "MRN-9", "2025-07-02T10:00:00+05:30")
    rows += [[*row, "x"] for row in bad.values()] + [[*good_offset, "x"]]
    write_csv(d / "imaging_orders.csv", header, rows)
    physical = {}
    for n, text in enumerate((d / "imaging_orders.csv").read_text().split("\n"), start=1):
        for kind, row in bad.items():
            if text.startswith(f"{row[0]},MRN-9,"):
                physical[kind] = n
        if text.startswith("O01001,") and "first O01001" not in physical:
            physical["first O01001"] = n
    assert physical["+25:00"] > len(rows) - 4, "the quoted line breaks must push the physical lines past the record numbers"
    return physical


@pytest.fixture(scope="module")
def lines_run(tmp_path_factory) -> tuple[Path, dict]:
    d = tmp_path_factory.mktemp("lines") / "in"
    physical = write_lines_input(d)
    out = d.parent / "out"
    r = run_cli("run", "--input", d, "--out", out, "--warehouse", d.parent / "wh.duckdb")
    assert r.returncode == 0, r.stderr
    return out, physical


@pytest.mark.parametrize("kind", ["+25:00", "-99:99", "+14:30"])
def test_impossible_offsets_are_row_level_rejects(lines_run, kind):
    out, physical = lines_run
    rows = _rejects(out).filter(pl.col("source_line") == str(physical[kind]))
    assert rows.height == 1, _rejects(out)
    row = rows.row(0, named=True)
    assert (row["column_name"], row["action"]) == ("ordered_at", "row_rejected")
    assert "impossible UTC offset" in row["reason"] and "14:00" in row["reason"]
    assert kind in row["value"]


def test_a_real_offset_loads_and_the_bad_ones_are_not_audited(lines_run):
    out, _ = lines_run
    assert not _rejects(out).filter(pl.col("value").str.contains("+05:30", literal=True)).height
    import duckdb

    con = duckdb.connect(str(out.parent / "wh.duckdb"), read_only=True)
    try:
        got = con.execute(
            "SELECT order_id, strftime(ordered_at AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M') FROM src_imaging_orders "
            "WHERE order_id LIKE 'O991%' ORDER BY 1"
        ).fetchall()
    finally:
        con.close()
    assert got == [("O99105", "2025-07-02 04:30")]


@pytest.mark.parametrize("kind", ["+25:00", "unparseable", "duplicate"])
def test_rejects_name_the_physical_line_where_the_record_starts(lines_run, kind):
    out, physical = lines_run
    rows = _rejects(out).filter(pl.col("table_name") == "imaging_orders")
    assert str(physical[kind]) in set(rows["source_line"]), (kind, physical[kind], rows)
    if kind == "duplicate":
        reason = rows.filter(pl.col("source_line") == str(physical[kind]))["reason"][0]
        # the first O01001 is the second record; the first record's text spans three lines
        assert physical["first O01001"] == 5
        assert reason == "duplicate order_id: first seen at line 5"


# ----------------------------------------------------------------------------------------------
# a row with fewer fields than the header (half of a row split by an unquoted line break)


def _split_row_input(d: Path) -> Path:
    """Orders whose free text comes before the patient id: a break inside it moves the id into ordered_at."""
    write_small_input(d)
    header = ["order_id", "ordered_at", "indication_text", "patient_id", "order_code", "ordering_department", "status"]
    rows = [
        "O1,2025-06-06 10:00:00,headache,MRN-1,72156,Neurology,completed",
        "O2,2025-06-06 10:05:00,headache,MRN-1,72157,Neurology,completed",
        "O5,2025-06-05 09:00:00,headache",  # the break: line 4 ends mid-text,
        "worse upright,MRN-77,72148,Neurology,completed",  # and line 5 holds the rest, MRN-77 under ordered_at
        "O4,2025-06-04 09:00:00,x,MRN-2,72148,Emergency,completed",
    ]
    (d / "imaging_orders.csv").write_text("\n".join([",".join(header), *rows]) + "\n")
    return d


def _run_showing_nothing_of(tmp_path: Path, d: Path, patient_id: str) -> Path:
    """A run without the gate that must succeed with `patient_id` in no output file and not in the log."""
    out = tmp_path / "out"
    r = run_cli("run", "--input", d, "--out", out, "--warehouse", tmp_path / "wh.duckdb", "--no-validate")
    assert r.returncode == 0, r.stderr
    leaked = files_showing(out, patient_id)
    assert leaked == [] and patient_id not in r.stderr
    return out


def test_a_split_rows_patient_id_never_reaches_rejects_csv(tmp_path):
    """The id of the second half (under ordered_at) was published in rejects.csv as the unparseable 'value'."""
    out = _run_showing_nothing_of(tmp_path, _split_row_input(tmp_path / "in"), "MRN-77")
    line5 = _rejects(out).filter((pl.col("table_name") == "imaging_orders") & (pl.col("source_line") == "5"))
    assert line5["value"].null_count() == line5.height == 2, line5
    assert set(line5["action"]) == {"row_rejected"}
    assert any(s.startswith("the row has 5 fields where the header has 7") for s in line5["reason"]), line5
    loaded = {i["table"]: (i["rows_read"], i["rows_loaded"]) for i in _run_json(out)["inputs"]}
    assert loaded["imaging_orders"] == (5, 3)


def test_a_short_rows_number_is_not_shown_either(tmp_path):
    """A bad optional number showed its raw text too: an all-digit patient id moved into patient_age was listed
    as the age outside 0-130."""
    d = tmp_path / "in"
    write_small_input(d)
    header = ["procedure_id", "patient_age", "patient_id", "performed_at", "procedure_code", "department"]
    rows = [
        "PR1,55,MRN-1,2025-06-02 09:00:00,62323,Pain clinic",
        "PR2,45,MRN-2,2025-06-03 09:00:00,62322,Pain clinic",
        "PR3,5",  # a break inside the age: line 5 starts with its last digit, and the id falls under patient_age
        "5,778899,2025-06-03 09:00:00,62322,Pain clinic",
    ]
    (d / "procedures.csv").write_text("\n".join([",".join(header), *rows]) + "\n")
    out = _run_showing_nothing_of(tmp_path, d, "778899")
    line5 = _rejects(out).filter((pl.col("table_name") == "procedures") & (pl.col("source_line") == "5"))
    assert {"patient_age", None} <= set(line5["column_name"]) and line5["value"].null_count() == line5.height, line5


def test_a_value_that_shows_a_patient_id_in_another_form_is_not_shown(tmp_path):
    """The hostile review (2026-12-04): rejects.csv, the log and the report hid a value only when it was a patient
    id whole; `MRN:<id>`, the id in lower case, after a zero-width space, before a date, or as a FHIR reference with
    its version were shown. Such values are not shown now, wherever they would be: a reject's value (the loader's),
    and a word no map knows (the log, run.json and the report)."""
    from conftest import ORDER_HEADER, PROC_HEADER, write_csv

    d = tmp_path / "in"
    write_csv(d / "procedures.csv", PROC_HEADER, [["PR1", "MRN-731942", "2025-06-02 09:00:00", "62323", "Pain", "1970-05-05"]])
    shown = ["MRN:MRN-731942", "mrn-731942 2025-06-06", "\u200bMRN-731942", "Patient/MRN-731942/_history/2"]
    orders = [[f"O{i}", "MRN-731942", when, "72156", "Neuro", "G97.1", "completed"] for i, when in enumerate(shown)]
    orders += [["O9", "MRN-731942", "2025-06-06 10:00:00", "72156", "Neuro", "G97.1", "Patient/mrn-731942/_history/2"]]
    orders += [[f"O{i}", "MRN-731942", "2025-06-06 10:00:00", "72156", "Neuro", "G97.1", "completed"] for i in range(10, 60)]
    write_csv(d / "imaging_orders.csv", ORDER_HEADER, orders)
    out = tmp_path / "out"
    r = run_cli("run", "--input", d, "--out", out, "--warehouse", tmp_path / "wh.duckdb")
    assert r.returncode == 0, r.stderr
    leaked = files_showing(out, "731942")
    assert leaked == [] and "731942" not in r.stderr
    bad_times = _rejects(out).filter(pl.col("column_name") == "ordered_at")
    assert bad_times.height == len(shown) and bad_times["value"].null_count() == len(shown), bad_times


def test_a_value_that_shows_a_patient_id_with_punctuation_or_without_zeros_is_not_shown(tmp_path):
    """The hostile review (2026-12-05): a word kept '-', '_' and '.', and a number its zeros, so that the id before a
    full stop, a suffix or Excel's '.0', between underscores, glued to a prefix or a letter, or without its leading
    zeros was shown in rejects.csv as the value of an unparseable time."""
    from conftest import ORDER_HEADER, PROC_HEADER, write_csv

    d = tmp_path / "in"
    write_csv(d / "procedures.csv", PROC_HEADER, [["PR1", "P0731942", "2025-06-02 09:00:00", "62323", "Pain", "1970-05-05"]])
    shown = ["P0731942.", "P0731942-01", "p0731942.0", "_P0731942_", "MRNP0731942", "P0731942x", "731942"]
    orders = [[f"O{i}", "P0731942", when, "72156", "Neuro", "G97.1", "completed"] for i, when in enumerate(shown)]
    # and a status the gate sets aside (orders.status.allowed): its rejects hide theirs too
    orders += [
        [f"O{i}", "P0731942", "2025-06-06 10:00:00", "72156", "Neuro", "G97.1", s] for i, s in [(8, "P0731942."), (9, "731942")]
    ]
    orders += [[f"O{i}", "P0731942", "2025-06-06 10:00:00", "72156", "Neuro", "G97.1", "completed"] for i in range(10, 60)]
    write_csv(d / "imaging_orders.csv", ORDER_HEADER, orders)
    out = tmp_path / "out"
    r = run_cli("run", "--input", d, "--out", out, "--warehouse", tmp_path / "wh.duckdb")
    assert r.returncode == 0, r.stderr
    leaked = files_showing(out, "731942")
    assert leaked == [] and "731942" not in r.stderr
    bad_times = _rejects(out).filter(pl.col("column_name") == "ordered_at")
    assert bad_times.height == len(shown) and bad_times["value"].null_count() == len(shown), bad_times
    bad_status = _rejects(out).filter(pl.col("column_name") == "status")
    assert bad_status.height == 2 and bad_status["value"].null_count() == 2, bad_status


# ----------------------------------------------------------------------------------------------
# a config file that is not what a config should be: one line, exit 1, nothing read or written

BAD_CONFIGS = {
    "a number for a time zone": ("site_timezone = 5\n", 'site_timezone: expected a text in quotes (site_timezone = "...")'),
    "a number for a path": ("local_code_map = 5\n", "local_code_map: expected a text in quotes"),
    "a number for the key file": ("[privacy]\nkey_file = 5\n", "[privacy].key_file: expected a text in quotes"),
    "a number for a column map": ("[columns]\nimaging_orders = 5\n", "[columns.imaging_orders]: write each column as"),
    "a codec of bytes": ('[formats.imaging_orders]\nencoding = "rot13"\n', "'rot13' is not an encoding name of text"),
    "not UTF-8": (b"\xff\xfe[\x00", "not UTF-8 text (byte 0xff); save the config file as UTF-8"),
    "a folder": (None, "is not a regular file (a folder, a pipe or a device)"),
    "a pipe": ("fifo", "is not a regular file (a folder, a pipe or a device)"),
}


@pytest.mark.parametrize("kind", list(BAD_CONFIGS))
def test_a_bad_config_is_one_line_not_a_traceback(tmp_path, small_input, kind):
    """Each was a traceback (TypeError, UnicodeDecodeError, IsADirectoryError); a pipe hung the run."""
    import os

    content, message = BAD_CONFIGS[kind]
    config = tmp_path / "site.toml"
    if content is None:
        config.mkdir()
    elif content == "fifo":
        os.mkfifo(config)
    else:
        config.write_bytes(content if isinstance(content, bytes) else content.encode())
    out, wh = tmp_path / "out", tmp_path / "wh.duckdb"
    r = run_cli("run", "--input", small_input, "--out", out, "--warehouse", wh, "--config", config, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"order-audit: error: {config}") and message in line, line
    _assert_nothing_written(out, wh)


BAD_KEY_FILES = {
    # read to its end, /dev/zero took 23 GB of memory before the run was killed; a pipe hung it
    "a device": "is not a regular file (a folder, a pipe or a device); pass the file that holds the key",
    "a pipe": "is not a regular file (a folder, a pipe or a device); pass the file that holds the key",
    "a folder": "is not a regular file (a folder, a pipe or a device); pass the file that holds the key",
    "another file": "holds more than 4,096 bytes, more than a pseudonym key; set privacy.key_file to the file that holds the key",
}


def _config_error_line(tmp_path: Path, small_input: Path, config_text: str) -> str:
    """The one error line of a run with this config, which must stop with exit 1 having written nothing."""
    config = tmp_path / "site.toml"
    config.write_text(config_text)
    out, wh = tmp_path / "out", tmp_path / "wh.duckdb"
    r = run_cli("run", "--input", small_input, "--out", out, "--warehouse", wh, "--config", config, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    (line,) = [x for x in r.stderr.strip().splitlines() if "error" in x]
    _assert_nothing_written(out, wh)
    return line


@pytest.mark.parametrize("kind", list(BAD_KEY_FILES))
def test_a_key_file_that_holds_no_key_is_one_line_read_no_further(tmp_path, small_input, kind):
    import os

    key_file = {"a device": Path("/dev/zero"), "a pipe": tmp_path / "key.fifo", "a folder": tmp_path}.get(kind)
    if kind == "a pipe":
        os.mkfifo(key_file)
    if kind == "another file":
        key_file = tmp_path / "extract.csv"
        key_file.write_text("x" * 5000)
    line = _config_error_line(tmp_path, small_input, f'[privacy]\nkey_file = "{key_file}"\n')
    assert line == f"order-audit: error: {key_file}: {BAD_KEY_FILES[kind]}"


@pytest.mark.parametrize("blank", ["", "  \n"])
def test_a_key_variable_set_but_empty_stops_the_run_rather_than_use_the_demo_key(tmp_path, small_input, blank):
    """A scheduler whose secret did not arrive (an empty Airflow Variable in docs/SCHEDULING.md's DAG) set the variable
    to nothing: the run took the public demo key, exit 0, and published pseudonyms anyone can recompute over the
    reports of the real key. An empty key file was already refused; unset, the variable still means the demo key."""
    out, wh = tmp_path / "out", tmp_path / "wh.duckdb"
    r = run_cli("run", "--input", small_input, "--out", out, "--warehouse", wh, env={"ORDER_AUDIT_PSEUDONYM_KEY": blank})
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("order-audit: error: ORDER_AUDIT_PSEUDONYM_KEY is set but empty: set it to"), line
    _assert_nothing_written(out, wh)


@pytest.mark.parametrize("kind", ["a device", "a pipe", "missing"])
def test_a_local_code_map_setting_that_names_no_file_says_what_it_names(tmp_path, small_input, kind):
    """A device or a pipe was reported as "local code map not found", though it is there."""
    import os

    path = {"a device": Path("/dev/zero"), "a pipe": tmp_path / "map.fifo", "missing": tmp_path / "no_map.csv"}[kind]
    if kind == "a pipe":
        os.mkfifo(path)
    line = _config_error_line(tmp_path, small_input, f'local_code_map = "{path}"\n')
    found = "local code map not found" if kind == "missing" else "is not a regular file (a folder, a pipe or a device)"
    assert line == f"order-audit: error: {path}: {found}; fix local_code_map in the config"


@pytest.mark.parametrize("program", ["/dev/zero", "/no/such/chromium", "chro\nmium"])
def test_a_chromium_setting_that_names_no_program_is_one_line(tmp_path, small_input, program):
    """A missing path was a traceback (posix_spawn's FileNotFoundError) after the whole run; /dev/zero a
    'could not write (/dev/zero: Permission denied) ... free space' line. It is found before the parse: the
    warehouse is not made (a loaded warehouse would leave the next run nothing new to load)."""
    out, wh = tmp_path / "out", tmp_path / "wh" / "w.duckdb"
    wh.parent.mkdir()
    r = run_cli(
        "run", "--input", small_input, "--out", out, "--warehouse", wh, "--pdf",
        env={"ORDER_AUDIT_CHROMIUM": program}, timeout=120,
    )  # fmt: skip
    assert not wh.exists() and "parsed" not in r.stderr, r.stderr
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    (line,) = [x for x in r.stderr.strip().splitlines() if "error" in x]
    shown = program.replace("\n", "\\n")
    assert line == (
        f"order-audit: error: ORDER_AUDIT_CHROMIUM={shown}: no such program, or not a file this user may run;"
        " set it to a Chromium or Chrome binary, or unset it"
    )
    assert not out.exists()


HOSTILE_ARGUMENTS = {
    "a month that is SQL": (
        ["--month", "2026-04'; --"],
        "order-audit: error: Invalid value for '--month': '2026-04'; --' is not a month like 2026-10 "
        "(see order-audit run --help)",
    ),
    "a month that is a path": (
        ["--from", "../../etc", "--to", "2026-04"],
        "order-audit: error: Invalid value for '--from': '../../etc' is not a month like 2026-10 (see order-audit run --help)",
    ),
    # a line break forged a second line; a right-to-left override reversed the rest on a terminal
    "a month with a line break": (
        ["--month", "2026-04\nError: forged\u202e"],
        "order-audit: error: Invalid value for '--month': '2026-04\\nError: forged\\u202e' is not a month like 2026-10 "
        "(see order-audit run --help)",
    ),
    "a month of 100,000 characters": (
        ["--month", "x" * 100_000],
        "order-audit: error: Invalid value for '--month': '"
        + "x" * 59
        + "... (100,002 characters) is not a month like 2026-10 (see order-audit run --help)",
    ),
    "an audit with a line break": (
        ["--audit", "csf_leak\norder-audit: error: forged"],
        "order-audit: error: --audit csf_leak\\norder-audit: error: forged: no such audit; known: csf_leak, "
        "low_back_pain (order-audit audits)",
    ),
    "an audit that is a path": (
        ["--audit", "../csf_leak"],
        "order-audit: error: --audit ../csf_leak: no such audit; known: csf_leak, low_back_pain (order-audit audits)",
    ),
}


@pytest.mark.parametrize("kind", list(HOSTILE_ARGUMENTS))
def test_a_hostile_argument_is_quoted_back_on_one_bounded_line(tmp_path, small_input, kind):
    args, expected = HOSTILE_ARGUMENTS[kind]
    out = tmp_path / "out"
    r = run_cli("run", "--input", small_input, "--out", out, "--no-validate", *args, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == expected
    assert "forged" not in "".join(r.stderr.strip().splitlines()[:-1])  # no line of its own
    assert not out.exists()


def _orders_as_workbook_rows(d: Path) -> list[list]:
    """The orders CSV's rows (the header first), the CSV removed: a workbook is to take its place."""
    path = d / "imaging_orders.csv"
    rows = [line.split(",") for line in path.read_text().splitlines()]
    path.unlink()
    return rows


def _write_workbook(path: Path, sheets: dict[str, list[list]], hide_last: bool = False, merge: str | None = None) -> None:
    """Sheets of rows as written (a float is a number cell, with no date format); `merge`: a range of the last
    sheet merged, holding its first cell's value."""
    import xlsxwriter

    book = xlsxwriter.Workbook(str(path))
    for name, rows in sheets.items():
        sheet = book.add_worksheet(name)
        for r, row in enumerate(rows):
            sheet.write_row(r, 0, row)
    if hide_last:
        sheet.hide()
    if merge:
        first = xlsxwriter.utility.xl_cell_to_rowcol(merge.split(":")[0])
        sheet.merge_range(merge, sheets[name][first[0]][first[1]])
    book.close()


def test_merged_cells_stop_the_run_not_empty_the_rows_below(tmp_path, small_input):
    """A department merged over orders O1-O3 (E2:E4) reached O2 and O3 as empty, and the run went on."""
    rows = _orders_as_workbook_rows(small_input)
    _write_workbook(small_input / "imaging_orders.xlsx", {"imaging_orders": rows}, merge="E2:E4")
    _expect_exit_2(tmp_path, small_input, "imaging_orders.xlsx [sheet imaging_orders]: has merged cells (E2:E4)", "Unmerge")


def test_a_workbook_whose_list_of_sheets_is_inflated_is_refused_before_it_is_read(tmp_path, small_input):
    """A 3.5 MB .xlsx whose xl/workbook.xml was padded to 3 GB of spaces was read whole, as text, twice: 6.5 GB of
    memory and four minutes, then the run went on (the hostile review). Its size in the zip's directory refuses it.
    Here 20 MB of spaces, over the 16 MB a workbook's small parts may have."""
    import zipfile  # noqa: PLC0415

    plain = tmp_path / "plain.xlsx"
    _write_workbook(plain, {"imaging_orders": _orders_as_workbook_rows(small_input)})
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(small_input / "imaging_orders.xlsx", "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "xl/workbook.xml":
                data = data.replace(b"<sheets>", b"<sheets>" + b" " * (20 << 20))
            dst.writestr(item, data)
    (small_input / "imaging_orders.csv").unlink(missing_ok=True)
    _expect_exit_2(tmp_path, small_input, "imaging_orders.xlsx: its part xl/workbook.xml is 20,97", "bytes uncompressed")


def test_an_id_held_as_a_number_longer_than_excel_keeps_stops_the_run_naming_its_row_and_column(tmp_path, small_input):
    """A 20-digit patient id in a number cell: Excel keeps 15 significant digits, and 12345678901234567890 read as
    12345678901234569216, a different id, without a word (two patients may become one). The same id in a text cell,
    numbers of 15 digits or fewer, and a long number in a column of the site's own that the run does not read
    (an accession number) read as they are."""
    rows = _orders_as_workbook_rows(small_input)
    rows[0].append("accession_number")  # the site's own column: not read
    for row in rows[1:]:
        row.append(98765432109876543210.0)
    as_text = [row[:] for row in rows]
    rows[3][1] = 12345678901234567890.0  # O3's patient id, as Excel holds a number (xlsxwriter: a float)
    rows[1][0] = 123456789012345.0  # 15 digits: kept whole
    _write_workbook(small_input / "imaging_orders.xlsx", {"imaging_orders": rows})
    _expect_exit_2(
        tmp_path,
        small_input,
        "imaging_orders.xlsx [sheet imaging_orders], line 4: column patient_id holds the number 12345678901234569216 "
        "in a number cell, more digits than Excel keeps (15): an id held as a number has lost its last digits, and "
        "two ids may have become one. Export the column as text",
    )
    as_text[3][1] = "12345678901234567890"  # a text cell: every digit kept
    _write_workbook(small_input / "imaging_orders.xlsx", {"imaging_orders": as_text})
    r = run_cli("run", "--input", small_input, "--out", tmp_path / "out", "--warehouse", tmp_path / "wh.duckdb")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "parquet"])
def test_a_site_column_named_as_a_contract_column_the_config_maps_from_another_is_not_read(tmp_path, small_input, fmt):
    """The config maps order_id from ORDER_NO, and the extract has a column of the site's own named order_id (20-digit
    numbers): the run reads ORDER_NO and leaves the other alone. Renamed beside it, order_id was there twice: a
    CSV or Parquet file stopped the run as a bug (DuplicateError, exit 70); a workbook stopped it on the long
    numbers of the column it does not read ("column order_id holds the number ..."), exit 2."""
    import duckdb

    rows = _orders_as_workbook_rows(small_input)
    rows[0][0] = "ORDER_NO"
    rows[0].append("order_id")
    for row in rows[1:]:
        row.append(98765432109876543210.0 if fmt == "xlsx" else "98765432109876543210")
    if fmt == "xlsx":
        _write_workbook(small_input / "imaging_orders.xlsx", {"imaging_orders": rows})
    else:
        frame = pl.DataFrame(rows[1:], schema=rows[0], orient="row")
        getattr(frame, f"write_{fmt}")(small_input / f"imaging_orders.{fmt}")
    config = tmp_path / "order-audit.toml"
    config.write_text('[columns.imaging_orders]\norder_id = "ORDER_NO"\n')
    wh = tmp_path / "wh.duckdb"
    r = run_cli("run", "--input", small_input, "--out", tmp_path / "out", "--warehouse", wh, "--config", config)
    assert r.returncode == 0, r.stderr
    con = duckdb.connect(str(wh), read_only=True)
    try:
        ids = con.execute("SELECT order_id FROM src_imaging_orders ORDER BY 1").fetchall()
        assert ids == [("O1",), ("O2",), ("O3",), ("O4",)]
    finally:
        con.close()


@pytest.mark.parametrize(
    ("spelling", "cell"),
    [
        ("single quotes", "<c r='B4'>"),  # XML allows either quote
        ("a line break", '<c\nr="B4">'),  # any space between the tag and its attributes
        ("no cell reference", "<c>"),  # r is optional: the cell follows the one before
    ],
)
def test_a_long_number_cell_is_found_however_its_tag_is_spelled(tmp_path, small_input, spelling, cell):
    """A cell tag spelled as XML allows but Excel does not write (another program's workbook): the check looked for
    `<c r="B4"` and passed over the cell, and the 20-digit patient id was read as another, silently."""
    import zipfile

    rows = _orders_as_workbook_rows(small_input)
    rows[3][1] = 12345678901234567890.0  # O3's patient id, B4
    book = small_input / "imaging_orders.xlsx"
    _write_workbook(book, {"imaging_orders": rows})
    with zipfile.ZipFile(book) as z:
        members = {n: z.read(n) for n in z.namelist()}
    sheet = members["xl/worksheets/sheet1.xml"].decode()
    assert '<c r="B4">' in sheet
    members["xl/worksheets/sheet1.xml"] = sheet.replace('<c r="B4">', cell).encode()
    with zipfile.ZipFile(book, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    _expect_exit_2(tmp_path, small_input, "line 4: column patient_id holds the number 12345678901234569216")


def test_a_long_number_whose_tag_the_piece_before_held_is_not_counted_again_without_its_row():
    """The sheet's XML is read in pieces, each starting with the end of the one before: a cell there whose tag was
    cut off is the piece before's (found there with its row), not a cell without a row, which any row's text of
    the same digits would have matched."""
    from pipeline.ingest import xlsx

    cut = b'2"><v>1.234567890123457E+19</v></c></row><row r="3"><c r="B3"><v>9.876543210987654E+19</v></c>'
    assert xlsx._long_number_cells(cut) == [(3, "98765432109876543488")]
    far = b'<c r="B4"><f>' + b"A" * 9000 + b"</f><v>1.234567890123457E+19</v></c>"  # a long formula: its tag far back
    assert xlsx._long_number_cells(b"<row>" + b" " * 9000 + far) == [(None, "12345678901234569216")]


def test_a_long_number_is_known_by_its_value_however_written():
    """An exponent of another program's form: 12.3456789012345E+18 (a mantissa of two digits) was passed over; and
    1.2E+010 (twelve billion, LibreOffice's three-digit exponent) or 0000000000000001 (one) stopped the run though
    Excel keeps every digit of them."""
    from pipeline.ingest import xlsx

    cells = b'<c r="B2"><v>1.2E+010</v></c><c r="B3"><v>0000000000000001</v></c><c r="B4"><v>12.3456789012345E+18</v></c>'
    assert xlsx._long_number_cells(cells) == [(4, "12345678901234499584")]
    # an exponent of one digit, or a negative one, on a value still of 10^15 or more, was passed over
    cells = b'<c r="B5"><v>1234567E+9</v></c><c r="B6"><v>123456789012345678E-2</v></c><c r="B7"><v>123E+9</v></c>'
    assert xlsx._long_number_cells(cells) == [
        (5, "1234567000000000"),
        (6, "1234567890123456.75"),
    ]  # the double's digits, as calamine reads them


def test_a_long_number_of_any_form_xml_schema_allows_is_seen():
    """XML Schema's double may have a + sign, no digit before its point or none after it: calamine reads
    +12345678901234567890 as 12345678901234567168, .12E+20 and +1.2E+19 as 12000000000000000000, 1.E+19 as
    10000000000000000000, and the check passed over each (its pattern wanted -? and digits on both sides of a point):
    a patient id read as another, silently."""
    from pipeline.ingest import xlsx

    cells = b"".join(
        b'<c r="B%d"><v>%s</v></c>' % (row, value)
        for row, value in enumerate([b"+12345678901234567890", b".12E+20", b"+1.2E+19", b"1.E+19", b"+123456789012345"], 2)
    )
    assert xlsx._long_number_cells(cells) == [
        (2, "12345678901234567168"),
        (3, "12000000000000000000"),
        (4, "12000000000000000000"),
        (5, "10000000000000000000"),
    ]  # +123456789012345: 15 digits, kept whole


def test_the_sheet_is_searched_for_long_numbers_only_when_a_column_the_run_reads_holds_one(tmp_path, monkeypatch):
    """A 20-digit accession number in every row of a column the run does not read cost ~14 us a cell to find in the
    sheet's XML (40 s for 3M rows), though no such cell can stop the run: the XML is searched only when a column the
    run reads holds a value of 16 digits or more as it reads."""
    from pipeline.ingest import xlsx

    book = tmp_path / "orders.xlsx"
    rows = [["order_id", "accession_number"], *[[f"O{i}", 98765432109876543210.0 + i] for i in range(3)]]
    _write_workbook(book, {"orders": rows})
    searched = []
    monkeypatch.setattr(xlsx, "_long_number_cells", lambda text: searched.append(len(text)) or [])
    body = xlsx.read_sheet(book, "orders", "_line", read=frozenset({"order_id"}))
    assert body["order_id"].to_list() == ["O0", "O1", "O2"] and searched == []
    rows[2][0] = "1234567890123456"  # a text cell of 16 digits in a column the run reads: the XML is searched
    _write_workbook(book, {"orders": rows})
    assert xlsx.read_sheet(book, "orders", "_line", read=frozenset({"order_id"})).height == 3 and searched


def _orders_workbook_with_a_stray_cell(folder: Path, row: int, column: int) -> Path:
    import xlsxwriter

    rows = _orders_as_workbook_rows(folder)
    book = xlsxwriter.Workbook(str(folder / "imaging_orders.xlsx"))
    sheet = book.add_worksheet("imaging_orders")
    for r, values in enumerate(rows):
        sheet.write_row(r, 0, values)
    sheet.write_string(row, column, "x")
    book.close()
    return folder / "imaging_orders.xlsx"


def test_a_stray_cell_far_from_the_table_stops_the_run_in_one_line(tmp_path, small_input):
    """One value at XFD1048576 in a 6 kB workbook: calamine laid out every cell from A1 to it, asked for 512 GB
    and aborted the run (exit 134, a Rust backtrace)."""
    _orders_workbook_with_a_stray_cell(small_input, 1_048_575, 16_383)
    _expect_exit_2(
        tmp_path,
        small_input,
        "imaging_orders.xlsx [sheet imaging_orders]: its cells reach row 1,048,576 and column 16,384 "
        "(17,179,869,184 cells from A1), more than the 67,108,864 a sheet is read with",
        "Delete it and save the workbook again, or export CSV",
    )


def test_a_sheet_is_refused_by_the_cells_its_range_spans_not_by_its_width_alone(tmp_path, small_input):
    """ALL70001 (70,001,000 cells from A1) is refused; ALL60001 (60,001,000: a wide sheet, not a stray cell) is not."""
    from pipeline.errors import InputFileError
    from pipeline.ingest import xlsx

    with pytest.raises(InputFileError, match="row 70,001 and column 1,000"):
        xlsx._refuse_a_range_too_large(_orders_workbook_with_a_stray_cell(small_input, 70_000, 999), "imaging_orders")
    wide = _orders_workbook_with_a_stray_cell(write_small_input(tmp_path / "wide"), 60_000, 999)
    xlsx._refuse_a_range_too_large(wide, "imaging_orders")


CELL_XML = {  # how a workbook holds a cell calamine reads as empty: an error value, a formula never calculated
    "error": ('<c r="F3"><f>1/0</f><v>0</v></c>', '<c r="F3" t="e"><f>1/0</f><v>#DIV/0!</v></c>'),
    "formula": ('<c r="F3"><f>1/0</f><v>0</v></c>', '<c r="F3"><f>1/0</f></c>'),
    "shared formula": ('<c r="F3"><f>1/0</f><v>0</v></c>', '<c r="F3"><f t="shared" si="0"/></c>'),
}


@pytest.mark.parametrize("kind", list(CELL_XML))
def test_a_cell_that_would_read_as_empty_stops_the_run_naming_it(tmp_path, small_input, kind):
    """An indication code computed in Excel that failed (#DIV/0!, #N/A), or a workbook written by a program that
    does not calculate (openpyxl, pandas' to_excel: formulas without a saved result): calamine read the cell as
    empty and O2 lost its leak diagnosis, silently. An empty text result (<v></v>) is read as empty, rightly."""
    import zipfile

    rows = _orders_as_workbook_rows(small_input)
    rows[2][5] = "=1/0"  # O2's indication codes, F3
    book = small_input / "imaging_orders.xlsx"
    _write_workbook(book, {"imaging_orders": rows})
    with zipfile.ZipFile(book) as z:
        members = {n: z.read(n) for n in z.namelist()}
    sheet = members["xl/worksheets/sheet1.xml"].decode()
    assert CELL_XML[kind][0] in sheet
    members["xl/worksheets/sheet1.xml"] = sheet.replace(*CELL_XML[kind]).encode()
    with zipfile.ZipFile(book, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    what = "holds the error #DIV/0!" if kind == "error" else "holds a formula whose result was never saved"
    _expect_exit_2(tmp_path, small_input, "imaging_orders.xlsx [sheet imaging_orders], line 3: cell F3", what)


def test_excel_date_serials_are_named_as_such(tmp_path, small_input):
    """Times stored as numbers without a date format (45814.4166 = 2025-06-06 10:00) were met with 'set
    timestamp_formats', which no strftime format can satisfy."""
    rows = _orders_as_workbook_rows(small_input)
    rows = [rows[0]] + [[*row[:2], 45814.4166 + i, *row[3:]] for i, row in enumerate(rows[1:])]
    _write_workbook(small_input / "imaging_orders.xlsx", {"imaging_orders": rows})
    line = _expect_exit_2(tmp_path, small_input, "column 'ordered_at'", "e.g. '45814.4166' on line 2", "Excel date serials")
    assert "timestamp_formats" not in line and "format the column as a date in Excel" in line


def test_a_hidden_sheet_named_like_the_table_is_not_read_silently(tmp_path, small_input):
    """The hidden sheet 'imaging_orders' (one stale row) was read as the table; the visible 'Orders' sheet with
    the extract was left out, silently. Named in the config, the hidden sheet is read."""
    rows = _orders_as_workbook_rows(small_input)
    # imaging_orders hidden (the first sheet cannot be hidden)
    _write_workbook(small_input / "imaging_orders.xlsx", {"Orders": rows, "imaging_orders": rows[:2]}, hide_last=True)
    _expect_exit_2(tmp_path, small_input, "imaging_orders.xlsx: the sheet named imaging_orders is hidden", 'sheet = "..."')
    config = tmp_path / "site.toml"
    config.write_text('[formats.imaging_orders]\nsheet = "Orders"\n')
    out = tmp_path / "out"
    wh = tmp_path / "wh2.duckdb"
    r = run_cli("run", "--input", small_input, "--out", out, "--warehouse", wh, "--config", config, "--no-validate")
    assert r.returncode == 0, r.stderr
    assert {i["table"]: i["rows_loaded"] for i in _run_json(out)["inputs"]}["imaging_orders"] == 4


def test_a_code_on_two_rows_of_the_site_map_at_once_is_one_line(tmp_path, small_input):
    """A site map giving 72148 twice (mri_spine and ct_head, no dates) listed order O4 four times in
    audited_orders.csv, each reason four times, and exited 0. Rows that follow each other in time still load."""
    header = "code_system,code,study_type,modality,regions,contrast,description,valid_from,valid_to,source\n"
    path = small_input / "local_code_map.csv"
    path.write_text(header + "LOCAL,72148,mri_spine,MR,L,without,a,,,\nLOCAL,72148,ct_head,CT,,without,b,,,\n")
    out, wh = tmp_path / "out", tmp_path / "wh.duckdb"
    r = run_cli("run", "--input", small_input, "--out", out, "--warehouse", wh, "--no-validate")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        f"order-audit: error: {path}, line 3: code 72148 is on line 2 too, for dates that overlap; "
        "keep one row per code, or set valid_from and valid_to so that the rows follow each other"
    )
    _assert_nothing_written(out, wh)
    rows = "LOCAL,72148,mri_spine,MR,L,without,a,,2025-06-04,\nLOCAL,72148,ct_head,CT,,without,b,2025-06-05,,\n"
    path.write_text(header + rows)
    r = run_cli("run", "--input", small_input, "--out", out, "--warehouse", wh, "--no-validate")
    assert r.returncode == 0, r.stderr
    orders = pl.read_csv(out / "csf_leak" / "audited_orders.csv", infer_schema=False)
    assert orders["order_id"].to_list() == ["O1", "O2", "O3", "O4"]


@pytest.mark.parametrize("kind", ["folder", "pipe", "broken link"])
def test_a_code_map_that_is_no_file_is_one_line_not_passed_over(tmp_path, small_input, kind):
    """A folder, a pipe or a broken link named local_code_map.csv was passed over: the site's codes went
    unmapped (not_evaluable) and the run exited 0 without a word."""
    import os

    path = small_input / "local_code_map.csv"
    if kind == "folder":
        path.mkdir()
    elif kind == "pipe":
        os.mkfifo(path)
    else:
        path.symlink_to(tmp_path / "moved_away.csv")
    out, wh = tmp_path / "out", tmp_path / "wh.duckdb"
    r = run_cli("run", "--input", small_input, "--out", out, "--warehouse", wh, "--no-validate", timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith(f"order-audit: error: {path}: is not a regular file"), line
    _assert_nothing_written(out, wh)


def test_an_id_moved_by_an_unquoted_delimiter_is_not_shown(tmp_path, small_input):
    """A comma inside an order id, and the row's last field missing: as many fields as the header, so the row
    is not short, yet every field after the id moved one column right and MRN-2 was listed in rejects.csv as
    the unparseable ordered_at. A value that is a patient id of the table is not shown."""
    with (small_input / "imaging_orders.csv").open("a") as fh:
        fh.write("O5,A,MRN-2,2025-06-05 09:00:00,72148,Neurology,G97.1\n")
    out = _run_showing_nothing_of(tmp_path, small_input, "MRN-2")
    line6 = _rejects(out).filter((pl.col("table_name") == "imaging_orders") & (pl.col("source_line") == "6"))
    assert line6.select("column_name", "value", "action").rows() == [("ordered_at", None, "row_rejected")]


def test_the_starter_code_map_holds_no_live_formula_and_is_read_back_as_written(tmp_path, small_input):
    """inspect --write-config copied an order code `=HYPERLINK(...)` and its order name `@SUM(...)` from the
    extract into local_code_map.csv as they were: live formulas in the file a person opens in a spreadsheet to
    fill in. They are neutralised there, and a run reads the filled-in row back as the code the orders hold."""
    rows = [[*row, "MRI"] for row in csv.reader((small_input / "imaging_orders.csv").open(encoding="utf-8"))][1:]
    code = '=HYPERLINK("HTTP://X.INVALID/?"&A1)'
    rows.append(["O5", "MRN-2", "2025-06-06 10:00:00", code, "Emergency", "G97.1", "completed", "@SUM(1+1)*cmd|' /C calc'!A0"])
    write_csv(small_input / "imaging_orders.csv", [*ORDER_HEADER, "order_name"], rows)
    site = tmp_path / "site"
    site.mkdir()
    r = run_cli("inspect", "--input", small_input, "--write-config", site / "site.toml")
    assert r.returncode == 0, r.stderr
    with (site / "local_code_map.csv").open(newline="", encoding="utf-8") as fh:
        template = list(csv.DictReader(fh))
    assert not [v for row in template for v in row.values() if formula_guard.starts_formula(v)], template
    (row,) = template
    assert (row["code"], row["description"]) == ("'" + code, "'@SUM(1+1)*cmd|' /C calc'!A0")
    row |= {"study_type": "mri_spine", "modality": "MR", "regions": "CTL", "contrast": "without_and_with"}
    with (small_input / "local_code_map.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)
    out = tmp_path / "out"
    r = run_cli("run", "--input", small_input, "--out", out, "--no-validate", "--quiet")
    assert r.returncode == 0, r.stderr
    audited = pl.read_parquet(out / "csf_leak" / "audited_orders.parquet").filter(pl.col("order_id") == "O5")
    assert audited.select("order_code", "study_type", "regions").rows() == [(code, "mri_spine", "CTL")]


def test_required_columns_missing_in_several_files_are_named_in_one_line(tmp_path, small_input):
    """`validate` named the first file's missing columns only: the next file's came on the next try."""
    for table, column in (("procedures", "performed_at"), ("imaging_orders", "order_code")):
        path = small_input / f"{table}.csv"
        pl.read_csv(path, infer_schema=False).drop(column).write_csv(path)
    r = run_cli("validate", "--input", small_input)
    assert r.returncode == 3, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert len(errors) == 1, r.stderr
    assert errors[0].startswith(
        "order-audit: error: procedures.csv, line 1: required column(s) missing: performed_at; also imaging_orders.csv: "
        "required column(s) missing: order_code. Add them, or map"
    ), errors[0]


def test_a_file_in_a_subfolder_is_named_with_its_folder_among_several_files_missing_columns(tmp_path, small_input):
    """The combined line named the files after the first by their bare name: an orders file the config puts in
    a subfolder (`file = "epic/orders.csv"`) came out as `orders.csv`, a file the folder does not hold."""
    (small_input / "epic").mkdir()
    pl.read_csv(small_input / "procedures.csv", infer_schema=False).drop("performed_at").write_csv(small_input / "procedures.csv")
    orders = small_input / "epic" / "orders.csv"
    pl.read_csv(small_input / "imaging_orders.csv", infer_schema=False).drop("order_code").write_csv(orders)
    (small_input / "imaging_orders.csv").unlink()
    config = tmp_path / "order-audit.toml"
    config.write_text('[formats.imaging_orders]\nfile = "epic/orders.csv"\n', encoding="utf-8")
    r = run_cli("validate", "--input", small_input, "--config", config)
    assert r.returncode == 3, r.stderr
    (error,) = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert "; also epic/orders.csv: required column(s) missing: order_code." in error, error
    assert str(small_input) not in error, error


def test_a_column_name_given_twice_after_a_wrapped_name_stops_the_run(tmp_path, small_input):
    """A header cell wrapped over two lines ("Order\\nnote", quoted) cut the header at its line break for the checks
    of the names: the second 'order_id' after it was not seen, and the run read one of the two, silently."""
    path = small_input / "imaging_orders.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    body = [lines[0] + ',"Order\nnote",order_id'] + [f"{line},n,X{i}" for i, line in enumerate(lines[1:])]
    path.write_text("\n".join(body) + "\n", encoding="utf-8")
    _expect_exit_2(tmp_path, small_input, "imaging_orders.csv, line 1", "column name 'order_id' appears twice")


def test_a_wrapped_column_name_reads_and_keeps_the_rows_lines(tmp_path, small_input):
    """A header cell wrapped over two lines and no record holding a break: the rows were numbered a line early (the
    header's break taken for the end of a record that holds none)."""
    path = small_input / "imaging_orders.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    body = [lines[0] + ',"Order\nnote"'] + [f"{line},n" for line in lines[1:]]
    body[2] = body[2].replace("MRN-1", "")  # physical line 4: the header takes lines 1 and 2
    path.write_text("\n".join(body) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    r = run_cli("run", "--input", small_input, "--out", out, "--no-validate")
    assert r.returncode == 0, r.stderr
    assert _rejects(out).select("source_line", "column_name").rows() == [("4", "patient_id")]


@pytest.mark.parametrize(
    ("names", "said", "todo"),
    [
        (
            ["imaging_orders_part1.csv", "imaging_orders_part2.csv"],
            "(found imaging_orders_part1.csv, imaging_orders_part2.csv: a table is read from one file)",
            "Join the parts into one imaging_orders.csv (one header row)",
        ),
        (
            ["imaging_orders.csv.gz"],
            "(found imaging_orders.csv.gz: compressed; order-audit reads .csv,",
            "Decompress it into the input folder",
        ),
        (
            ["imaging_orders.json"],
            "(found imaging_orders.json: only .csv, .txt, .tsv, .parquet, .xlsx are read)",
            "Put imaging_orders.csv",
        ),
    ],
)
def test_a_missing_table_file_says_why_the_files_named_like_it_were_not_read(tmp_path, small_input, names, said, todo):
    """An extract in parts was 'found imaging_orders_part1.csv, imaging_orders_part2.csv: only .csv, ... are read' (they are
    CSV), and a .csv.gz was told to be named under [formats], which refuses it too (an adopting site's review)."""
    source = small_input / "imaging_orders.csv"
    for name in names:
        target = small_input / name
        if name.endswith(".gz"):
            import gzip  # noqa: PLC0415

            target.write_bytes(gzip.compress(source.read_bytes()))
        else:
            target.write_bytes(source.read_bytes())
    source.unlink()
    line = _expect_exit_2(tmp_path, small_input, "imaging_orders.csv: required file missing " + said, todo)
    assert line.count("\n") == 0


def test_a_compressed_file_named_in_the_config_says_to_decompress_it(tmp_path, small_input):
    """[formats.imaging_orders] file = "imaging_orders.csv.gz" said 'is not a file type order-audit reads ... Export the table
    as CSV' of a CSV."""
    import gzip  # noqa: PLC0415

    source = small_input / "imaging_orders.csv"
    (small_input / "imaging_orders.csv.gz").write_bytes(gzip.compress(source.read_bytes()))
    source.unlink()
    config = tmp_path / "site.toml"
    config.write_text('[formats.imaging_orders]\nfile = "imaging_orders.csv.gz"\n')
    out, wh = tmp_path / "out", tmp_path / "wh.duckdb"
    r = run_cli("run", "--input", small_input, "--out", out, "--warehouse", wh, "--config", config)
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert "imaging_orders.csv.gz: is compressed (.gz); order-audit reads .csv," in line, line
    assert line.endswith("Decompress it into the input folder (gunzip, unzip), then run again"), line
    _assert_nothing_written(out, wh)


def test_a_repeated_header_row_is_named_as_such_not_a_value_to_map(tmp_path, small_input):
    """Two exports pasted into one file repeat the header in the middle: the line was rejected as an 'unparseable
    timestamp', and its status word 'status' was offered as a value to map (`"status" = "?"`, an adopting site's
    review). It is now one reject saying what it is, and no value of it is offered."""
    path = small_input / "imaging_orders.csv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join([*lines[:3], lines[0], *lines[3:]]), encoding="utf-8")
    out = tmp_path / "out"
    r = run_cli("run", "--input", small_input, "--out", out, "--warehouse", tmp_path / "wh.duckdb", "--no-validate")
    assert r.returncode == 0, r.stderr
    assert "no map knows" not in r.stderr and '"status" = "?"' not in r.stderr, r.stderr
    rejects = pl.read_csv(out / "csf_leak" / "rejects.csv", infer_schema=False)
    assert rejects.select("source_line", "reason").rows() == [
        ("4", "the line repeats the header row (a second export pasted below the first?): not a record")
    ]
    assert pl.read_csv(out / "csf_leak" / "audited_orders.csv", infer_schema=False)["order_id"].to_list() == [
        "O1",
        "O2",
        "O3",
        "O4",
    ]


def test_an_audit_skipped_for_a_compressed_table_says_so_as_a_warning(tmp_path, small_input):
    """procedures.csv.gz beside the other tables: the CSF-leak audit was skipped with an info line -q hid ('the input
    has no procedures table'), exit 0, the low back pain audit run alone (a hostile review). The skip now says what
    it found and what to do, as a warning."""
    import gzip  # noqa: PLC0415

    source = small_input / "procedures.csv"
    (small_input / "procedures.csv.gz").write_bytes(gzip.compress(source.read_bytes()))
    source.unlink()
    out = tmp_path / "out"
    r = run_cli("run", "--input", small_input, "--out", out, "--warehouse", tmp_path / "wh.duckdb", "-q")
    assert r.returncode == 0, r.stderr
    assert (
        "order-audit: csf_leak skipped: the input has no procedures table (found procedures.csv.gz: compressed; "
        "order-audit reads .csv, .txt, .tsv, .parquet, .xlsx); Decompress it into the input folder (gunzip, unzip), "
        "then run again"
    ) in r.stderr.splitlines(), r.stderr
    assert (out / "low_back_pain" / "run.json").is_file() and not (out / "csf_leak").exists()


def test_status_and_patient_id_swapped_in_the_header_name_no_patient_id(tmp_path, small_input):
    """With status and patient_id swapped in the orders' header, the gate stopped the run listing every MRN as a
    status word no map knows, with the config lines to map them (the hostile review: 20 MRNs in one message). Its
    ids are no id of the orders table (that column holds the statuses): they are the procedures'. Nothing is named."""
    rows = list(csv.reader((small_input / "imaging_orders.csv").open(encoding="utf-8")))
    swapped = ["order_id", "status", *ORDER_HEADER[2:-1], "patient_id"]
    write_csv(small_input / "imaging_orders.csv", swapped, rows[1:])
    r = run_cli("run", "--input", small_input, "--out", tmp_path / "out", "--warehouse", tmp_path / "wh.duckdb")
    assert r.returncode == 3, r.stderr
    assert "MRN-" not in r.stderr, r.stderr
    assert "imaging_orders.status holds 2 different values no map knows (4 rows), 4 of those rows a patient id" in r.stderr


def test_a_status_that_is_its_rows_patient_id_is_set_aside_without_showing_it(tmp_path, small_input):
    """A shifted row put its own patient id under status: the gate set it aside and rejects.csv, the log, run.json
    and the report printed the id as the value (and as a word to map)."""
    rows = list(csv.reader((small_input / "imaging_orders.csv").open(encoding="utf-8")))[1:]
    rows += [[f"OX{i}", "MRN-1", "2025-06-06 11:00:00", "72156", "Neurology", "G97.1", "completed"] for i in range(40)]
    rows.append(["OY", "MRN-2", "2025-06-05 09:00:00", "72148", "Emergency", "", "MRN-2"])
    write_csv(small_input / "imaging_orders.csv", ORDER_HEADER, rows)
    out = tmp_path / "out"
    r = run_cli("run", "--input", small_input, "--out", out, "--warehouse", tmp_path / "wh.duckdb")
    assert r.returncode == 0, r.stderr
    leaked = files_showing(out, "MRN-2")
    assert leaked == [] and "MRN-2" not in r.stderr, (leaked, r.stderr)
    status = _rejects(out).filter((pl.col("table_name") == "imaging_orders") & (pl.col("column_name") == "status"))
    assert status.select("source_line", "value").rows() == [("46", None)], status
    report = (out / "csf_leak" / "report.html").read_text(encoding="utf-8")
    assert "1 different value (not listed: 1 row holds a patient id)" in report
    (unknown,) = json.loads((out / "csf_leak" / "run.json").read_text(encoding="utf-8"))["unknown_values"]
    assert (unknown["values"], unknown["rows_holding_patient_ids"]) == ([], 1)


@pytest.mark.parametrize("name", ["source_line", "_ambiguous_ordered_at", "_err_long_text"])
def test_an_extra_column_named_as_the_readers_own_is_one_line_naming_it(tmp_path, small_input, name):
    """An extract's extra column named source_line was a Polars traceback, exit 70 ("cannot add row_index with name
    'source_line'"); one named _ambiguous_ordered_at or _err_long_text, 'the CSV could not be parsed', naming no
    column (the hostile review). One line naming the column and what to do."""
    path = small_input / "imaging_orders.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([f"{lines[0]},{name}"] + [f"{line},x" for line in lines[1:]]) + "\n", encoding="utf-8")
    _expect_exit_2(tmp_path, small_input, "imaging_orders.csv, line 1", f"column 8, '{name}', has a name order-audit gives")


def test_inspect_prints_an_order_code_holding_terminal_escapes_and_a_line_break_escaped(tmp_path, small_input):
    """inspect printed an order code as the extract held it: 'LOC\\x1b]0;PWNED\\x07-X\\nFORGED LINE' retitled the
    terminal and forged a line of its own (the hostile review); the run's log escaped it already."""
    rows = list(csv.reader((small_input / "imaging_orders.csv").open(encoding="utf-8")))[1:]
    rows.append(["O9", "MRN-1", "2025-06-06 11:00:00", "LOC\x1b]0;PWNED\x07-X\nFORGED LINE", "Neurology", "G97.1", "completed"])
    write_csv(small_input / "imaging_orders.csv", ORDER_HEADER, rows)
    r = run_cli("inspect", "--input", small_input)
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout
    assert "LOC\\x1b]0;PWNED\\x07-X\\nFORGED LINE" in r.stdout, r.stdout


def test_the_diagnosis_of_an_unreadable_csv_says_a_long_field_is_long_not_an_unclosed_quote(tmp_path):
    """A 1.5 GB field without a quote, which Polars could not read: the diagnosis read the whole file three times
    over (12.8 GB of memory, a MemoryError traceback under a limit) and said 'a quoted field opens on this line and
    is never closed'. It streams the file now and names the long field; an unclosed quote is still told apart."""
    from pipeline.ingest import load  # noqa: PLC0415
    from pipeline.ingest.textfile import Source  # noqa: PLC0415

    path = tmp_path / "imaging_orders.csv"
    head = "order_id,patient_id,ordered_at\nO1,MRN-1,2025-06-06 10:00:00\n"
    path.write_text(head + "O2,MRN-1," + "x" * 200_000 + "\nO3,MRN-2,2025-06-06 10:00:00\n", encoding="utf-8")
    assert load._diagnose_csv_failure(None, Source(path)) == (
        3,
        "a field longer than 131,072 characters, longer than any value of the contract",
    )
    path.write_text(head + 'O2,MRN-1,"2025-06-06\n' + "x" * 200_000 + "\nO3,MRN-2,2025-06-06 10:00:00\n", encoding="utf-8")
    assert load._diagnose_csv_failure(None, Source(path)) == (3, "a quoted field opens on this line and is never closed")
    path.write_bytes(head.encode() + b"O2,MRN-1,2025-06-06 10:00:00\nO3,\xe9\n")
    assert load._diagnose_csv_failure(None, Source(path)) == (4, "byte 0xe9 is not UTF-8")
