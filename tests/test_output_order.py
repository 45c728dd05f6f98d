"""The standard marts' files are written in outputs.ROW_ORDER whatever order the mart's rows are
stored in (models carry no ORDER BY: Spark and Trino would not keep it)."""

from __future__ import annotations

import csv

import duckdb
import pyarrow.parquet as pq

from pipeline.report.outputs import write_tables


def _warehouse() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    # stored newest first, an untimed order before a timed one, a formula-looking case id
    con.execute(
        """CREATE TABLE mart_audited_orders AS SELECT * FROM (VALUES
        ('2025-02-01T08:00:00Z', 'C2', '2025-02-02T09:00:00Z', 'O5'),
        ('2025-01-01T08:00:00Z', 'C1', NULL, 'O3'),
        ('2025-01-01T08:00:00Z', 'C1', '2025-01-03T10:00:00Z', 'O4'),
        ('2025-01-01T08:00:00Z', 'C1', '2025-01-02T10:00:00Z', 'O9'),
        ('2025-01-01T08:00:00Z', '=C0', '2025-01-02T10:00:00Z', 'O1')
        ) AS t(index_at, case_id, ordered_at, order_id)"""
    )
    con.execute(
        """CREATE TABLE mart_cases AS SELECT * FROM (VALUES
        ('2025-02-01T08:00:00Z', 'C2'), ('2025-01-01T08:00:00Z', 'C1'), ('2025-01-01T08:00:00Z', '=C0')
        ) AS t(index_at, case_id)"""
    )
    con.execute(
        """CREATE TABLE mart_attrition AS SELECT * FROM (VALUES
        (2, 'Excluded: b', 'orders', 1, 'exclusion', ''), (2, 'Excluded: a', 'orders', 1, 'exclusion', ''),
        (2, 'Orders', 'orders', 5, 'step', ''), (1, 'Cases', 'cases', 3, 'step', '')
        ) AS t(step_order, step, unit, count, kind, note)"""
    )
    con.execute(
        "CREATE TABLE load_rejects (table_name VARCHAR, source_file VARCHAR, source_line BIGINT, column_name VARCHAR, "
        "value VARCHAR, reason VARCHAR, action VARCHAR)"
    )
    con.execute(
        "CREATE TABLE load_reject_groups (load_id VARCHAR, table_name VARCHAR, source_file VARCHAR, column_name VARCHAR, "
        "reason VARCHAR, action VARCHAR, rows BIGINT, rows_listed BIGINT)"
    )
    con.execute(
        "CREATE TABLE load_ledger (table_name VARCHAR, path VARCHAR, sha256 VARCHAR, first_month VARCHAR, last_month VARCHAR, "
        "rows_read BIGINT, rows_loaded BIGINT, rows_rejected BIGINT, action VARCHAR, superseded_by VARCHAR)"
    )
    return con


def _csv_column(path, column: str) -> list[str]:
    with path.open(newline="", encoding="utf-8") as f:
        return [row[column] for row in csv.DictReader(f)]


def test_the_files_follow_row_order_not_the_stored_order(tmp_path):
    write_tables(_warehouse(), tmp_path, {})
    # by index_at, case_id (raw: '=C0' sorts first, though its CSV text is neutralised), ordered_at NULLS LAST, order_id
    assert _csv_column(tmp_path / "audited_orders.csv", "order_id") == ["O1", "O9", "O4", "O3", "O5"]
    assert pq.read_table(tmp_path / "audited_orders.parquet")["order_id"].to_pylist() == ["O1", "O9", "O4", "O3", "O5"]
    assert pq.read_table(tmp_path / "cases.parquet")["case_id"].to_pylist() == ["=C0", "C1", "C2"]
    assert _csv_column(tmp_path / "attrition.csv", "step") == ["Cases", "Orders", "Excluded: a", "Excluded: b"]


def test_attrition_rows_of_a_step_follow_the_audits_row_order_which_the_file_leaves_out(tmp_path):
    """An audit's attrition mart may say its rows' order within a step (``row_order``: its rules.csv order for the
    reasons' rows): the rows were sorted by name, so 'Excluded: outside_window' came before the rule listed ahead of
    it. The column orders the file; the file's columns stay the contract's."""
    con = _warehouse()
    con.execute("DROP TABLE mart_attrition")
    con.execute(
        """CREATE TABLE mart_attrition AS SELECT * FROM (VALUES
        (2, 'Excluded: outside_window', 'orders', 1, 'exclusion', '', 3), (2, 'Orders', 'orders', 5, 'step', '', 0),
        (2, 'Excluded: red_flag_indication', 'orders', 1, 'exclusion', '', 2), (1, 'Cases', 'cases', 3, 'step', '', 0),
        (2, 'Excluded: cancelled', 'orders', 1, 'exclusion', '', 1)
        ) AS t(step_order, step, unit, count, kind, note, row_order)"""
    )
    write_tables(con, tmp_path, {})
    assert _csv_column(tmp_path / "attrition.csv", "step") == [
        "Cases",
        "Orders",
        "Excluded: cancelled",
        "Excluded: red_flag_indication",
        "Excluded: outside_window",
    ]
    with (tmp_path / "attrition.csv").open(encoding="utf-8") as f:
        assert f.readline().strip() == "step_order,step,unit,count,kind,note"
