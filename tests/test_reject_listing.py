"""A small input that rejects many rows must not make huge outputs: every reject is counted, the first
``LISTED_PER_KIND`` of each kind (table, file, column, reason) are listed.

A 0.7 MB gzip of one bad NDJSON line repeated 2M times wrote a 200 MB rejects.csv into each audit's folder
(the same listing once per audit), a 180 MB CSV of bad rows 586 MB each. The tests make just over 1,000
rejects of one kind, through the real CLI, and a warehouse made before the listing was cut.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from pathlib import Path

import duckdb
import pytest
from conftest import run_cli
from fhir_export import export_extract

from pipeline.ingest import ledger, reject_listing
from pipeline.ingest.reject_listing import LISTED_PER_KIND

UNPARSEABLE = "unparseable timestamp: expected ISO 8601 like 2025-03-07 10:00:00 or 2025-03-07T10:00:00-05:00"
BAD_TIMES = LISTED_PER_KIND + 2  # one kind: two over the listing
SUMMARY_HEADER = "table_name,source_file,column_name,reason,action,rows,rows_listed,rows_not_listed"


def _read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _complete(out: Path, audit: str) -> None:
    """The audit's folder holds its run.json and exactly the files it lists, each with its hash and size."""
    folder = out / audit
    listed = json.loads((folder / "run.json").read_text())["files"]
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != "run.json"}
    assert set(listed) == on_disk, set(listed) ^ on_disk
    for name, meta in listed.items():
        data = (folder / name).read_bytes()
        assert meta == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}, name
    assert {"rejects.csv", "rejects_summary.csv"} <= on_disk


@pytest.fixture
def bad_times(small_input: Path) -> Path:
    """The small extract's orders with BAD_TIMES more whose ordered_at is no time (lines 6 ..), then one without
    an order_id (a second kind, listed whole)."""
    orders = small_input / "imaging_orders.csv"
    rows = [f"B{i:04d},MRN-1,soon {i},72148,Neurology,G97.1,completed" for i in range(BAD_TIMES)]
    rows.append(",MRN-1,2025-06-06 11:00:00,72148,Neurology,G97.1,completed")
    orders.write_text(orders.read_text() + "\n".join(rows) + "\n")
    return small_input


def test_a_file_of_bad_rows_lists_the_first_of_each_kind_and_counts_every_one(tmp_path, bad_times):
    out = tmp_path / "out"
    r = run_cli("run", "--input", bad_times, "--out", out, "--no-validate")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    source = "imaging_orders.csv"  # named relative to --input
    # the header is line 1 and the four good orders lines 2-5: the bad times are lines 6 .. 6 + BAD_TIMES - 1
    expected_rows = [
        {
            "table_name": "imaging_orders",
            "source_file": source,
            "source_line": str(6 + i),
            "column_name": "ordered_at",
            "value": f"soon {i}",
            "reason": UNPARSEABLE,
            "action": "row_rejected",
        }
        for i in range(LISTED_PER_KIND)
    ]
    expected_rows.append(
        {
            "table_name": "imaging_orders",
            "source_file": source,
            "source_line": str(6 + BAD_TIMES),
            "column_name": "order_id",
            "value": "",
            "reason": "required value missing",
            "action": "row_rejected",
        }
    )
    summary = (
        f"{SUMMARY_HEADER}\n"
        f"imaging_orders,{source},order_id,required value missing,row_rejected,1,1,0\n"
        f"imaging_orders,{source},ordered_at,{UNPARSEABLE},row_rejected,{BAD_TIMES},{LISTED_PER_KIND},2\n"
    )
    audits = json.loads((out / "run.json").read_text())["audits"]
    assert audits == ["csf_leak", "low_back_pain"]  # the same listing in each audit's folder
    for audit in audits:
        assert _read_csv(out / audit / "rejects.csv") == expected_rows
        assert (out / audit / "rejects_summary.csv").read_text() == summary
        info = json.loads((out / audit / "run.json").read_text())
        assert info["counts"]["rejected_rows"] == {"imaging_orders": BAD_TIMES + 1}
        assert info["counts"]["nulled_values"] == 0
        _complete(out, audit)
    info = json.loads((out / "run.json").read_text())
    assert info["rejects"] == {
        "rejected_rows": {"imaging_orders": BAD_TIMES + 1},
        "nulled_values": 0,
        "listed_per_kind": LISTED_PER_KIND,
        "listing_cut": [
            {
                "table_name": "imaging_orders",
                "source_file": source,
                "column_name": "ordered_at",
                "reason": UNPARSEABLE,
                "action": "row_rejected",
                "rows": BAD_TIMES,
                "rows_listed": LISTED_PER_KIND,
            }
        ],
    }
    loaded = {i["table"]: (i["rows_read"], i["rows_loaded"], i["rows_rejected"]) for i in info["inputs"]}
    assert loaded["imaging_orders"] == (4 + BAD_TIMES + 1, 4, BAD_TIMES + 1)
    for audit in audits:
        _said_in_report(out / audit / "report.html")

    # the same input and config again: the same bytes
    again = tmp_path / "again"
    assert run_cli("run", "--input", bad_times, "--out", again, "--no-validate").returncode == 0
    for name in ("rejects.csv", "rejects_summary.csv"):
        assert (again / "csf_leak" / name).read_bytes() == (out / "csf_leak" / name).read_bytes(), name


def _said_in_report(path: Path) -> None:
    """The data-quality section: the exact totals, the listed counts, and in words which listing is cut."""
    report = path.read_text(encoding="utf-8")
    assert "Rows rejected at load:\nimaging_orders 1,003;" in report
    assert (
        "<td>imaging_orders</td><td>row rejected</td><td>" + UNPARSEABLE + '</td><td class="num">1,002</td>'
        '<td class="num">1,000</td>'
    ) in report
    assert '<td>required value missing</td><td class="num">1</td><td class="num">1</td>' in report
    assert (
        "<code>rejects.csv</code> lists the first 1,000 of each kind (file, column and reason) and "
        "<code>rejects_summary.csv</code> counts every kind: the first 1,000 of the 1,002 rows rejected in "
        f"imaging_orders for &#39;{UNPARSEABLE}&#39; are listed.</p>"
    ) in report


def test_a_gzip_of_one_bad_ndjson_line_repeated_lists_the_first_of_them(tmp_path, small_input):
    """The hostile case itself, small: a compressed ServiceRequest file of one good line and one broken line
    repeated; the listing stops at LISTED_PER_KIND lines, the counts do not."""
    export = tmp_path / "export"
    export_extract(small_input, export, variety=False)
    good = (export / "ServiceRequest.000.ndjson").read_text(encoding="utf-8").splitlines()[0]
    broken = '{"resourceType":"ServiceRequest","id":"X1","status":"completed"'  # no closing brace: not JSON
    repeated = LISTED_PER_KIND + 5
    bomb = export / "ServiceRequest.001.ndjson.gz"
    bomb.write_bytes(gzip.compress((good.replace('"id":"O1"', '"id":"Z1"') + "\n" + (broken + "\n") * repeated).encode()))
    out = tmp_path / "out"
    r = run_cli("run", "--input", export, "--out", out, "--no-validate")
    assert r.returncode == 0, r.stderr
    rejects = _read_csv(out / "csf_leak" / "rejects.csv")
    assert [(x["source_file"], x["source_line"], x["column_name"], x["reason"]) for x in rejects] == [
        (bomb.name, str(line), "", "line is not JSON") for line in range(2, 2 + LISTED_PER_KIND)
    ]
    assert (out / "csf_leak" / "rejects_summary.csv").read_text() == (
        f"{SUMMARY_HEADER}\nimaging_orders,{bomb.name},,line is not JSON,row_rejected,{repeated},{LISTED_PER_KIND},5\n"
    )
    info = json.loads((out / "run.json").read_text())
    assert info["rejects"]["rejected_rows"] == {"imaging_orders": repeated}
    assert [(c["source_file"], c["rows"], c["rows_listed"]) for c in info["rejects"]["listing_cut"]] == [
        (bomb.name, repeated, LISTED_PER_KIND)
    ]
    _complete(out, "csf_leak")


def _rejects_of(load_id: str, kinds: dict[tuple[str, str], int]) -> str:
    """load_rejects' columns for a load: ``kinds`` (column, action) -> how many rejects, lines from 1."""
    parts = [
        f"SELECT 'imaging_orders' AS table_name, 'orders.csv' AS source_file, i AS source_line, '{column}' AS column_name, "
        f"'v' || i AS value, 'bad {column}' AS reason, '{action}' AS action, '{load_id}' AS load_id FROM range(1, {n + 1}) t(i)"
        for (column, action), n in kinds.items()
    ]
    return " UNION ALL ".join(parts)


def test_counts_and_listing_by_kind_and_a_replaced_load_forgets_both(tmp_path):
    con = duckdb.connect(str(tmp_path / "wh.duckdb"))
    ledger.ensure_tables(con)
    kinds = {
        ("ordered_at", "row_rejected"): LISTED_PER_KIND + 3,
        ("order_id", "row_rejected"): 5,  # lines 1-5 rejected twice: each row counts once
        ("attempts", "value_nulled"): 2,
    }
    assert reject_listing.record(con, _rejects_of("L1", kinds), []) == (LISTED_PER_KIND + 3, 2)
    assert con.execute("SELECT * FROM load_reject_groups ORDER BY column_name").fetchall() == [
        ("L1", "imaging_orders", "orders.csv", "attempts", "bad attempts", "value_nulled", 2, 2),
        ("L1", "imaging_orders", "orders.csv", "order_id", "bad order_id", "row_rejected", 5, 5),
        ("L1", "imaging_orders", "orders.csv", "ordered_at", "bad ordered_at", "row_rejected", LISTED_PER_KIND + 3, 1000),
    ]
    listed = con.execute("SELECT column_name, source_line, value FROM load_rejects ORDER BY column_name, source_line").fetchall()
    assert listed == (
        [("attempts", 1, "v1"), ("attempts", 2, "v2")]
        + [("order_id", i, f"v{i}") for i in range(1, 6)]
        + [("ordered_at", i, f"v{i}") for i in range(1, LISTED_PER_KIND + 1)]
    )
    reject_listing.record(con, _rejects_of("L2", {("order_id", "row_rejected"): 1}), [])
    reject_listing.forget(con, ["L1"])
    assert con.execute("SELECT load_id, column_name, rows, rows_listed FROM load_reject_groups").fetchall() == [
        ("L2", "order_id", 1, 1)
    ]
    assert con.execute("SELECT load_id, column_name, source_line FROM load_rejects").fetchall() == [("L2", "order_id", 1)]


def test_a_warehouse_made_before_the_listing_was_cut_is_counted_then_cut(tmp_path):
    """Its load_rejects lists every reject: the groups are counted from it, then it keeps the first of each kind."""
    con = duckdb.connect(str(tmp_path / "old.duckdb"))
    con.execute(ledger.REJECTS_DDL)
    con.execute(
        "INSERT INTO load_rejects SELECT table_name, source_file, source_line, column_name, value, reason, action, load_id "
        f"FROM ({_rejects_of('L1', {('ordered_at', 'row_rejected'): LISTED_PER_KIND + 7})})"
    )
    ledger.ensure_tables(con)
    assert con.execute("SELECT load_id, column_name, rows, rows_listed FROM load_reject_groups").fetchall() == [
        ("L1", "ordered_at", LISTED_PER_KIND + 7, LISTED_PER_KIND)
    ]
    assert con.execute("SELECT min(source_line), max(source_line), count(*) FROM load_rejects").fetchall() == [
        (1, LISTED_PER_KIND, LISTED_PER_KIND)
    ]
    ledger.ensure_tables(con)  # once only: a second look changes nothing
    assert con.execute("SELECT sum(rows), sum(rows_listed) FROM load_reject_groups").fetchall() == [
        (LISTED_PER_KIND + 7, LISTED_PER_KIND)
    ]


def test_duplicates_of_many_ids_are_one_kind_listed_with_their_own_reasons(tmp_path):
    """A duplicate's reason names the line its id was first seen at: a file of ids each given twice made as many
    kinds as ids, each listed. The kind leaves the line out; each listed row keeps its whole reason."""
    con = duckdb.connect(str(tmp_path / "wh.duckdb"))
    ledger.ensure_tables(con)
    duplicates = LISTED_PER_KIND + 4
    # the second copy of id i on line 2i, first seen on line 2i - 1
    sql = (
        "SELECT 'imaging_orders' AS table_name, 'orders.csv' AS source_file, 2 * i AS source_line, 'order_id' AS column_name, "
        "'O' || i AS value, 'duplicate order_id: first seen at line ' || (2 * i - 1) AS reason, 'row_rejected' AS action, "
        f"'L1' AS load_id FROM range(1, {duplicates + 1}) t(i)"
    )
    assert reject_listing.record(con, sql, []) == (duplicates, 0)
    assert con.execute("SELECT reason, rows, rows_listed FROM load_reject_groups").fetchall() == [
        ("duplicate order_id", duplicates, LISTED_PER_KIND)
    ]
    listed = con.execute("SELECT source_line, value, reason FROM load_rejects ORDER BY source_line").fetchall()
    assert listed == [
        (2 * i, f"O{i}", f"duplicate order_id: first seen at line {2 * i - 1}") for i in range(1, LISTED_PER_KIND + 1)
    ]
    assert reject_listing.totals(con)["listing_cut"] == [
        {
            "table_name": "imaging_orders",
            "source_file": "orders.csv",
            "column_name": "order_id",
            "reason": "duplicate order_id",
            "action": "row_rejected",
            "rows": duplicates,
            "rows_listed": LISTED_PER_KIND,
        }
    ]
