"""The warehouse's source rows: one Parquet file per live load beside the DuckDB file, read through views."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
from conftest import write_july_input
from test_scheduling import audit, ok, query, with_order_code

TABLES = ("procedures", "imaging_orders", "diagnoses")


def store_files(wh: Path) -> list[str]:
    root = wh.with_name(wh.name + ".sources")
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def live_loads(wh: Path) -> list[str]:
    rows = query(
        wh,
        """SELECT table_name || '/' || load_id || '.parquet' FROM load_ledger
           WHERE action IN ('loaded', 'replaced') AND superseded_by IS NULL ORDER BY 1""",
    )
    return [r[0] for r in rows]


def view_kinds(wh: Path) -> set[tuple[str, str]]:
    rows = query(wh, "SELECT table_name, table_type FROM information_schema.tables WHERE table_name LIKE 'src\\_%' ESCAPE '\\'")
    return set(rows)


def test_one_file_per_live_load_superseded_file_deleted(small_input, tmp_path):
    wh, out = tmp_path / "wh.duckdb", tmp_path / "out"
    ok(audit(small_input, out, wh))
    assert store_files(wh) == live_loads(wh) and len(store_files(wh)) == 3
    assert {("src_procedures", "VIEW"), ("src_imaging_orders", "VIEW"), ("src_diagnoses", "VIEW")} <= view_kinds(wh)
    first = store_files(wh)

    # a corrected orders file for the same month: its file replaces the earlier one, which is deleted
    fixed = with_order_code(small_input, tmp_path / "fixed", "O4", "LOC-NEW-7")
    ok(audit(fixed, out, wh))
    now = store_files(wh)
    assert now == live_loads(wh)
    gone = sorted(set(first) - set(now))
    assert len(gone) == 1 and gone[0].startswith("imaging_orders/")
    assert query(wh, "SELECT count(*), count(*) FILTER (WHERE order_code = 'LOC-NEW-7') FROM src_imaging_orders") == [(4, 1)]


def test_rejected_rows_and_rows_replaced_by_id_stay_out_of_the_views(small_input, tmp_path):
    wh, out = tmp_path / "wh.duckdb", tmp_path / "out"
    ok(audit(small_input, out, wh))
    # July's extract repeats order O4 (a late correction) and brings one unreadable row
    july = write_july_input(
        tmp_path / "july",
        (
            ["O4", "MRN-2", "2025-07-03 10:00:00", "72156", "Emergency", "G97.1", "completed"],
            ["O72", "MRN-7", "not a time", "72148", "Emergency", "G97.1", "completed"],
        ),
    )
    ok(audit(july, out, wh))
    july_load = query(wh, "SELECT load_id FROM load_ledger WHERE table_name = 'imaging_orders' ORDER BY loaded_at DESC LIMIT 1")
    july_load = july_load[0][0]
    assert query(
        wh, "SELECT rows_read, rows_loaded, rows_rejected, rows_updated FROM load_ledger WHERE load_id = ?", [july_load]
    ) == [(3, 2, 1, 1)]
    assert query(wh, "SELECT why FROM src_excluded WHERE table_name = 'imaging_orders' ORDER BY why") == [
        (f"replaced by load {july_load}",),
        ("set aside at load",),
    ]
    assert query(
        wh, "SELECT order_id, load_id, CAST(ordered_at AS VARCHAR) FROM src_imaging_orders WHERE order_id IN ('O4', 'O72')"
    ) == [("O4", july_load, "2025-07-03 14:00:00+00")]
    assert query(wh, "SELECT count(*) FROM src_imaging_orders") == [(5,)]


def test_many_rows_set_aside_leave_the_stored_file_and_stay_counted(small_input, tmp_path):
    """Past 10,000 (and a tenth of the file), rows set aside at load are dropped from the stored file instead of
    listed in src_excluded: 2M bad rows had cost the warehouse 8 MB of typed copy and 3.5 MB of src_excluded."""
    import csv

    import pyarrow.parquet as pq

    wh, out = tmp_path / "wh.duckdb", tmp_path / "out"
    ok(audit(small_input, out, wh))
    bad = tuple([f"X{i}", "MRN-9", "not a time", "72148", "Emergency", "G97.1", "completed"] for i in range(10_001))
    july = write_july_input(
        tmp_path / "july", (["O4", "MRN-2", "2025-07-03 10:00:00", "72156", "Emergency", "G97.1", "completed"], *bad)
    )
    ok(audit(july, out, wh))
    (july_load,) = query(
        wh, "SELECT load_id FROM load_ledger WHERE table_name = 'imaging_orders' ORDER BY loaded_at DESC LIMIT 1"
    )[0]
    assert query(
        wh, "SELECT rows_read, rows_loaded, rows_rejected, rows_updated FROM load_ledger WHERE load_id = ?", [july_load]
    ) == [(10_003, 2, 10_001, 1)]
    stored = wh.with_name(wh.name + ".sources") / "imaging_orders" / f"{july_load}.parquet"
    assert pq.read_table(stored, columns=["order_id", "source_line"]).to_pylist() == [
        {"order_id": "O71", "source_line": 2},
        {"order_id": "O4", "source_line": 3},
    ]
    assert query(wh, "SELECT why, count(*) FROM src_excluded GROUP BY why") == [(f"replaced by load {july_load}", 1)]
    assert query(wh, "SELECT count(*), count(*) FILTER (WHERE order_id LIKE 'X%') FROM src_imaging_orders") == [(5, 0)]
    with (out / "csf_leak" / "rejects_summary.csv").open(newline="") as fh:
        summary = [(r["table_name"], r["rows"], r["rows_listed"], r["rows_not_listed"]) for r in csv.DictReader(fh)]
    assert summary == [("imaging_orders", "10001", "1000", "9001")]


def test_orphan_files_are_swept_and_a_moved_warehouse_reads_its_own_store(small_input, tmp_path):
    wh, out = tmp_path / "a" / "wh.duckdb", tmp_path / "out"
    ok(audit(small_input, out, wh))
    # a file moved in by a run that died before its commit: no ledger row refers to it
    orphan = wh.with_name(wh.name + ".sources") / "imaging_orders" / "20990101T000000Z-dead00-imaging_orders.parquet"
    shutil.copyfile(wh.with_name(wh.name + ".sources") / live_loads(wh)[1], orphan)
    assert live_loads(wh)[1].startswith("imaging_orders/")

    # the warehouse and its store moved together to another folder; the old place is gone
    moved = tmp_path / "b" / "wh.duckdb"
    moved.parent.mkdir()
    shutil.move(wh, moved)
    shutil.move(wh.with_name(wh.name + ".sources"), moved.with_name(moved.name + ".sources"))
    shutil.rmtree(wh.parent)
    ok(audit(small_input, out, moved))  # every file already loaded: nothing added
    assert not (moved.with_name(moved.name + ".sources") / "imaging_orders" / orphan.name).exists()
    assert store_files(moved) == live_loads(moved)
    assert query(moved, "SELECT count(*) FROM src_imaging_orders") == [(4,)]


def test_a_warehouse_with_rows_inside_duckdb_moves_into_the_store(small_input, tmp_path):
    """The layout before the store: src_* were tables holding every row, with its load_id."""
    wh, out = tmp_path / "wh.duckdb", tmp_path / "out"
    ok(audit(small_input, out, wh))
    con = duckdb.connect(str(wh))
    try:
        for t in TABLES:
            con.execute(f"CREATE TABLE old_{t} AS SELECT * FROM src_{t}")
            con.execute(f"DROP VIEW src_{t}")
            con.execute(f"ALTER TABLE old_{t} RENAME TO src_{t}")
        con.execute("DROP TABLE src_excluded")
    finally:
        con.close()
    shutil.rmtree(wh.with_name(wh.name + ".sources"))
    before = {t: query(wh, f"SELECT * FROM src_{t} ORDER BY ALL") for t in TABLES}
    assert ("src_imaging_orders", "BASE TABLE") in view_kinds(wh)

    ok(audit(small_input, out, wh))
    assert {("src_procedures", "VIEW"), ("src_imaging_orders", "VIEW"), ("src_diagnoses", "VIEW")} <= view_kinds(wh)
    assert store_files(wh) == live_loads(wh)
    assert {t: query(wh, f"SELECT * FROM src_{t} ORDER BY ALL") for t in TABLES} == before


def test_a_warehouse_without_its_store_folder_is_one_line_naming_the_folder(small_input, tmp_path):
    """A backup or a copy of the warehouse file alone (its .sources folder left behind, or a clean-up job that emptied
    it): the next run stopped with DuckDB's "No files found", a traceback and "a bug in order-audit"; a re-audit
    without --input said the warehouse held no procedures rows. Each command now says which folder lacks which file
    and what to do, exit 1, and nothing is written."""
    from conftest import run_cli

    wh, out = tmp_path / "wh.duckdb", tmp_path / "out"
    ok(audit(small_input, out, wh))
    july = write_july_input(tmp_path / "july")
    store = wh.with_name(wh.name + ".sources")
    first = store / live_loads(wh)[0]
    first.rename(tmp_path / "kept.parquet")  # one file of three gone

    def refused(*args) -> str:
        r = run_cli(*args)
        assert r.returncode == 1 and "Traceback" not in r.stderr and "bug" not in r.stderr, r.stderr
        errors = [line for line in r.stderr.splitlines() if line.startswith("order-audit: error:")]
        assert len(errors) == 1, r.stderr
        return errors[0]

    line = refused("run", "--input", july, "--out", tmp_path / "out2", "--warehouse", wh)
    assert f"{store} lacks 1 of the 3 files its ledger names (e.g. {first.relative_to(store)})" in line
    assert "restore the folder from the same backup or copy as the file" in line
    assert not (tmp_path / "out2").exists()
    shutil.rmtree(store)  # the file alone
    assert "lacks 3 of the 3 files" in refused("run", "--input", july, "--out", tmp_path / "out2", "--warehouse", wh)
    assert "lacks 3 of the 3 files" in refused("run", "--out", tmp_path / "out2", "--warehouse", wh, "--month", "2025-06")
    assert "lacks 3 of the 3 files" in refused("validate", "--input", july, "--warehouse", wh)
    assert not (tmp_path / "out2").exists()
