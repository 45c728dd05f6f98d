"""gate.earlier_reports: which warnings a rerun on the same files found before, and in which run (one query for
every finding; tests/test_false_alarms.py runs it end to end)."""

from __future__ import annotations

import duckdb

from pipeline.quality import gate
from pipeline.quality.result import CheckResult


def _result(check_id: str, status: str, violated: int | None, sample: list[str], severity: str = "warning") -> CheckResult:
    return CheckResult(check_id, "src_imaging_orders", severity, status, violated, 10, None, "d", sample_keys=sample)


def test_each_finding_is_matched_on_check_status_count_and_sample_to_its_earliest_run():
    con = duckdb.connect()
    gate.record_results(
        con,
        "run-b",
        [_result("volume", "failed", 1, ["2025-05"]), _result("format", "failed", 3, ["O1", "O2"])],
    )
    gate.record_results(
        con,
        "run-a",
        [
            _result("volume", "failed", 1, ["2025-05"]),
            _result("format", "failed", 2, ["O1", "O2"]),
            _result("gx", "error", None, []),
        ],
    )
    now = [
        _result("volume", "failed", 1, ["2025-05"]),  # the same in both runs: the earliest (a < b)
        _result("format", "failed", 3, ["O1", "O2"]),  # run-b's count
        _result("gx", "error", None, []),  # no count either time
        _result("mapped", "failed", 1, []),  # never recorded
        _result("unique", "failed", 1, ["O9"], severity="blocking"),  # not a warning: not asked
        _result("passed", "passed", 0, []),
    ]
    gate.record_results(con, "run-c", [_result("unique", "failed", 1, ["O9"], severity="blocking")])
    assert gate.earlier_reports(con, now) == {"volume": "run-a", "format": "run-b", "gx": "run-a"}


def test_nothing_to_ask_on_a_new_warehouse():
    con = duckdb.connect()
    assert gate.earlier_reports(con, [_result("volume", "failed", 1, ["2025-05"])]) == {}
    assert gate.earlier_reports(con, [_result("volume", "passed", 0, [])]) == {}
