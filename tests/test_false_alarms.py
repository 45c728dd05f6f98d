"""No false alarm for the scheduler, through the real CLI (JSON logs): the volume check compares only the months
an extract covers whole, and a rerun that loads nothing new repeats an earlier run's findings at info level."""

from __future__ import annotations

import datetime as dt
import json

import duckdb
from conftest import DX_HEADER, ORDER_HEADER, PROC_HEADER, run_cli, write_csv

from pipeline.quality import gate
from pipeline.quality.result import CheckResult

KEY = {"ORDER_AUDIT_PSEUDONYM_KEY": "false-alarms-test-key"}


def _extract(d):
    """Orders on every day of 2025-01..2025-06, two a day, but May at 30% (one order on each of its first 19
    days: 19 of 62); one stray order on 2024-12-30 before the extract, two on 2025-07-02 and -03 after it."""
    days = [dt.date(2025, 1, 1) + dt.timedelta(days=i) for i in range(181)]  # 2025-01-01 .. 2025-06-30
    times = []
    for day in days:
        per_day = (1 if day.day <= 19 else 0) if day.month == 5 else 2
        times += [f"{day} {10 + j}:00:00" for j in range(per_day)]
    times = ["2024-12-30 10:00:00", *times, "2025-07-02 10:00:00", "2025-07-03 10:00:00"]
    orders = [[f"O{i:05d}", f"MRN-{i % 40}", t, "72148", "Neurology", "G97.1", "completed"] for i, t in enumerate(times)]
    write_csv(d / "imaging_orders.csv", ORDER_HEADER, orders)
    procedures = [
        [f"PR{i}", f"MRN-{i}", f"2025-0{1 + i % 6}-1{i % 9} 09:00:00", "62270", "Neurology", "1970-05-05"] for i in range(40)
    ]
    write_csv(d / "procedures.csv", PROC_HEADER, procedures)
    return d


def _events(stderr: str, name: str) -> list[dict]:
    lines = [json.loads(line) for line in stderr.splitlines()]  # every line is one JSON object
    return [e for e in lines if e.get("event") == name]


def _volume(stderr: str) -> list[tuple]:
    return [
        (e["level"], e["violated_count"], e["sample"], e.get("first_reported_by"))
        for e in _events(stderr, "dq_warning")
        if e["check_id"] == "orders.volume.monthly"
    ]


def _run(inp, tmp_path):
    result = run_cli(
        "run", "--input", inp, "--out", tmp_path / "out", "--warehouse", tmp_path / "wh.duckdb", "--log-format", "json", env=KEY
    )
    assert result.returncode == 0, result.stderr
    run_id = json.loads((tmp_path / "out" / "run.json").read_text(encoding="utf-8"))["run_id"]
    return result, run_id


def test_partial_months_at_either_end_are_noted_a_middle_drop_warns_and_a_rerun_does_not_alarm_again(tmp_path):
    inp = _extract(tmp_path / "in")
    first, first_id = _run(inp, tmp_path)
    # May (19 orders against 62, 59, 62: 31%) warns; December 2024 and July 2025, covered by a day or two
    # of the extract only, are neither judged nor baseline
    assert _volume(first.stderr) == [("warning", 1, ["2025-05"], None)]
    notes = [(e["level"], e["check_id"], e["message"]) for e in _events(first.stderr, "dq_note")]
    assert notes == [
        (
            "info",
            "orders.volume.monthly",
            "data-quality note orders.volume.monthly [src_imaging_orders]: 2025-05 has 19 orders, against a median of "
            "60 in the 3 months before it; 1 order dated before 2025-01, the first "
            "month the extract covers whole (its data starts 2024-12-30); 2 orders dated after 2025-06, the last "
            "month the extract covers whole (its data ends 2025-07-03): not compared (a month covered in part is no "
            "drop in volume)",
        )
    ]
    checks = json.loads((tmp_path / "out" / "run.json").read_text(encoding="utf-8"))["data_quality"]
    volume = next(c for c in checks if c["check_id"] == "orders.volume.monthly")
    # judged: April, May, June (three whole months before each)
    got = (volume["status"], volume["violated_count"], volume["denominator"], volume["sample_keys"])
    assert got == ("failed", 1, 3, ["2025-05"])

    # the same files again: nothing is loaded, the same finding is the first run's, said at info level
    again, again_id = _run(inp, tmp_path)
    assert again_id != first_id
    assert _volume(again.stderr) == [("info", 1, ["2025-05"], first_id)]
    line = next(e["message"] for e in _events(again.stderr, "dq_warning") if e["check_id"] == "orders.volume.monthly")
    assert line.endswith(f"(first reported by run {first_id}; no new file since)")
    assert [e for e in _events(again.stderr, "dq_warning") if e["level"] == "warning"] == []
    # ... and the report still shows it
    report = (tmp_path / "out" / "csf_leak" / "report.html").read_text(encoding="utf-8")
    assert "Fewer orders than usual</strong> in 2025-05" in report

    # a new file (a diagnoses extract) is a new load: the gate's findings are warnings again
    write_csv(inp / "diagnoses.csv", DX_HEADER, [["MRN-1", "G97.1", "2025-02-03 10:00:00"]])
    third, _ = _run(inp, tmp_path)
    assert _volume(third.stderr) == [("warning", 1, ["2025-05"], None)]


def _finding(count, sample, status="failed", severity="warning"):
    return CheckResult("orders.volume.monthly", "src_imaging_orders", severity, status, count, 3, 33.3, "d", sample)


def test_a_finding_is_first_reported_by_the_earliest_run_that_recorded_the_same_one():
    """The info level needs the same finding (check, status, count, sample keys), not only the same check."""
    con = duckdb.connect()
    gate.record_results(con, "20260101T000000Z-aaaaaa", [_finding(1, ["2025-05"])])
    gate.record_results(con, "20260201T000000Z-bbbbbb", [_finding(1, ["2025-05"]), _finding(0, [], status="passed")])
    asked = {
        "same": _finding(1, ["2025-05"]),
        "another month": _finding(1, ["2025-04"]),
        "one more month": _finding(2, ["2025-04", "2025-05"]),
        "could not run": _finding(None, [], status="error"),
    }
    assert {what: gate.earlier_reports(con, [r]) for what, r in asked.items()} == {
        "same": {"orders.volume.monthly": "20260101T000000Z-aaaaaa"},
        "another month": {},
        "one more month": {},
        "could not run": {},
    }
    # passed checks and blocking ones are never asked about (a blocking failure stops the run)
    assert gate.earlier_reports(con, [_finding(0, [], status="passed"), _finding(1, ["2025-05"], severity="blocking")]) == {}


def test_every_finding_of_a_run_is_asked_about_at_once():
    """Several warnings in one call (one query for them all): each matched on its own check, status, count and
    sample to the earliest run that recorded it; a check whose only match is another check's finding has none."""

    def finding(check_id, status, count, sample, severity="warning"):
        return CheckResult(check_id, "src_imaging_orders", severity, status, count, 10, None, "d", sample)

    con = duckdb.connect()
    gate.record_results(con, "run-b", [finding("volume", "failed", 1, ["2025-05"]), finding("format", "failed", 3, ["O1"])])
    gate.record_results(
        con,
        "run-a",
        [finding("volume", "failed", 1, ["2025-05"]), finding("format", "failed", 2, ["O1"]), finding("gx", "error", None, [])],
    )
    gate.record_results(con, "run-c", [finding("unique", "failed", 1, ["O9"], severity="blocking")])
    now = [
        finding("volume", "failed", 1, ["2025-05"]),  # in both runs: the earliest
        finding("format", "failed", 3, ["O1"]),  # run-b's count, not run-a's
        finding("gx", "error", None, []),  # no count either time
        finding("mapped", "failed", 1, ["2025-05"]),  # volume's sample, another check
        finding("unique", "failed", 1, ["O9"], severity="blocking"),  # not a warning: not asked
        finding("passed", "passed", 0, []),
    ]
    assert gate.earlier_reports(con, now) == {"volume": "run-a", "format": "run-b", "gx": "run-a"}


# ------------------------------------------------------------- an extract that declares how far it reaches


def _volume_check(orders_per_day, through: dt.datetime | None, since: dt.datetime | None = None) -> tuple:
    """The volume check on hand-built orders (New York; two a day at 10:00 and 11:00 local unless
    ``orders_per_day(day)`` says otherwise) of 2025-01-01..2025-06-30: (violated, judged months, sample, note).
    ``through``, ``since``: what the extract declares (``data_through``, ``data_since``)."""
    from pipeline.quality import sql_checks, validate

    con = duckdb.connect()
    con.execute("CREATE TABLE src_imaging_orders (ordered_at TIMESTAMPTZ)")
    days = [dt.date(2025, 1, 1) + dt.timedelta(days=i) for i in range(181)]
    rows = [(f"{day} {10 + j}:00:00-04:00",) for day in days for j in range(orders_per_day(day))]
    con.executemany("INSERT INTO src_imaging_orders VALUES (CAST(? AS TIMESTAMPTZ))", rows)
    params = validate.resolve_params(
        {
            "now": dt.datetime(2025, 10, 1, tzinfo=dt.UTC),
            "site_timezone": "America/New_York",
            "data_through": through,
            "data_since": since,
        }
    )
    _, run = sql_checks.check_monthly_volume(params)
    violated, judged, _, sample, _, note = run(con)
    return violated, judged, sample, note


JULY_1_NY = dt.datetime(2025, 7, 1, 4, 0, tzinfo=dt.UTC)  # midnight at the start of July in New York


def test_a_declared_reach_judges_the_last_month_whatever_its_last_day_holds():
    """June's last day without an order (a small site's quiet day): by the orders' own dates June is covered in part
    and left out, April and May judged; an export that declares its data through July 1 has June whole, judged."""
    quiet_last_day = lambda day: 0 if day == dt.date(2025, 6, 30) else 2  # noqa: E731
    assert _volume_check(quiet_last_day, None) == (
        0,
        2,
        [],
        "58 orders dated after 2025-05, the last month the extract covers whole (its data ends 2025-06-29): not "
        "compared (a month covered in part is no drop in volume)",
    )
    assert _volume_check(quiet_last_day, JULY_1_NY) == (0, 3, [], None)
    # a June of ten days' orders: a partial month by its dates (no alarm), a drop once the export says June is whole
    short_june = lambda day: (2 if day.day <= 10 else 0) if day.month == 6 else 2  # noqa: E731
    assert _volume_check(short_june, None)[:3] == (0, 2, [])
    low = "2025-06 has 20 orders, against a median of 62 in the 3 months before it"  # the figures the data team reads
    assert _volume_check(short_june, JULY_1_NY) == (1, 3, ["2025-06"], low)


def test_a_declared_month_without_orders_is_a_drop_and_the_month_the_export_time_falls_in_is_not_judged():
    two_a_day = lambda day: 2  # noqa: E731
    # exported on August 1: July ended before it and holds no order (a missing file), so it is judged, and low
    assert _volume_check(two_a_day, dt.datetime(2025, 8, 1, 4, 0, tzinfo=dt.UTC))[:3] == (1, 4, ["2025-07"])
    # exported on July 31: July is the export's partial month, not judged; June, ended before it, is
    assert _volume_check(two_a_day, dt.datetime(2025, 7, 31, 16, 0, tzinfo=dt.UTC)) == (0, 3, [], None)
    # exported a minute before July began in New York: June is not whole (its last minute not exported)
    assert _volume_check(two_a_day, dt.datetime(2025, 7, 1, 3, 59, tzinfo=dt.UTC))[:3] == (0, 2, [])


def _two_a_day(source, first: dt.date):
    """CSV extracts of 180 days from ``first``, two orders a day (10:00 and 11:00), and one procedure."""
    days = [first + dt.timedelta(days=i) for i in range(180)]
    orders = [
        [f"O{i:05d}", f"MRN-{i % 40}", f"{day} {10 + j}:00:00", "72148", "Neurology", "G97.1", "completed"]
        for i, (day, j) in enumerate((day, j) for day in days for j in range(2))
    ]
    write_csv(source / "imaging_orders.csv", ORDER_HEADER, orders)
    procedure = ["PR1", "MRN-1", "2025-02-10 09:00:00", "62270", "Neurology", "1970-05-05"]
    write_csv(source / "procedures.csv", PROC_HEADER, [procedure])
    return source


def test_a_fhir_export_is_judged_by_its_manifests_transaction_time(tmp_path):
    """Through `validate`: the same export with a manifest saying July 1 has June judged; without a manifest
    (nothing declared), June's quiet last day leaves it to the orders' own dates."""
    from fhir_export import export_extract
    from test_fhir_manifest import _write_manifest

    source = _two_a_day(tmp_path / "csv", dt.date(2025, 1, 1))  # to 2025-06-29
    judged = {}
    for declared in (False, True):
        export = tmp_path / f"export-{declared}"
        export_extract(source, export)
        if declared:
            _write_manifest(export, transactionTime="2025-07-01T06:00:00Z")
        r = run_cli("validate", "--input", export, "--json", env=KEY)
        assert r.returncode == 0, r.stderr
        volume = next(c for c in json.loads(r.stdout) if c["check_id"] == "orders.volume.monthly")
        judged[declared] = (volume["status"], volume["violated_count"], volume["denominator"])
    assert judged == {False: ("passed", 0, 2), True: ("passed", 0, 3)}


JANUARY_1_NY = dt.datetime(2025, 1, 1, 5, 0, tzinfo=dt.UTC)  # midnight at the start of January in New York


def test_a_declared_start_judges_the_first_month_whatever_its_first_day_holds():
    """January 1 without an order (a holiday): by the orders' own dates January is covered in part and left out
    (May and June judged); an export that declares its data since midnight of January 1 has January whole, a
    baseline month, so April is judged too. A start declared later than midnight of a 1st makes that month partial."""
    quiet_first_day = lambda day: 0 if day == dt.date(2025, 1, 1) else 2  # noqa: E731
    assert _volume_check(quiet_first_day, None) == (
        0,
        2,
        [],
        "60 orders dated before 2025-02, the first month the extract covers whole (its data starts 2025-01-02): not "
        "compared (a month covered in part is no drop in volume)",
    )
    assert _volume_check(quiet_first_day, None, JANUARY_1_NY) == (0, 3, [], None)
    # an hour after midnight in New York: January's first hour was not exported, so January is partial
    assert _volume_check(quiet_first_day, None, JANUARY_1_NY + dt.timedelta(hours=1)) == (
        0,
        2,
        [],
        "60 orders dated before 2025-02, the first month the extract covers whole (it declares its data since "
        "2025-01-01T06:00:00+00:00): not compared (a month covered in part is no drop in volume)",
    )
    # an export since mid-January that also holds earlier orders changed since: those are noted, not compared
    two_a_day = lambda day: 2  # noqa: E731
    assert _volume_check(two_a_day, None, dt.datetime(2025, 1, 15, 5, 0, tzinfo=dt.UTC))[3] == (
        "62 orders dated before 2025-02, the first month the extract covers whole (it declares its data since "
        "2025-01-15T05:00:00+00:00): not compared (a month covered in part is no drop in volume)"
    )
    # both ends declared: January to June whole, a January of ten days' orders then counts as a month (baseline)
    short_january = lambda day: (2 if day.day > 21 else 0) if day.month == 1 else 2  # noqa: E731
    assert _volume_check(short_january, JULY_1_NY, JANUARY_1_NY) == (0, 3, [], None)
    assert _volume_check(short_january, JULY_1_NY)[:3] == (0, 2, [])


def test_a_declared_start_before_the_first_order_makes_its_empty_months_whole():
    """An export since December 1 whose orders begin on January 1: December is declared and holds none, a whole
    month of 0 orders (a baseline: March is judged against the median of 0, 62 and 56)."""
    two_a_day = lambda day: 2  # noqa: E731
    assert _volume_check(two_a_day, None, dt.datetime(2024, 12, 1, 5, 0, tzinfo=dt.UTC)) == (0, 4, [], None)


def test_a_fhir_export_is_judged_from_its_requests_since(tmp_path):
    """Through `validate`: an export whose request says `_since` midnight of January 1 (New York) has January
    judged whole though its first day holds no order; the same export requested without `_since` leaves January to
    the orders' own dates (covered in part, not compared)."""
    from fhir_export import export_extract
    from test_fhir_manifest import _write_manifest

    source = _two_a_day(tmp_path / "csv", dt.date(2025, 1, 2))  # to 2025-06-30
    kick_off = "https://fhir.example.org/fhir/$export?_type=Patient,Procedure,ServiceRequest,Condition,Encounter"
    judged = {}
    for since in ("", "&_since=2025-01-01T05%3A00%3A00Z", "&_since=2025-01-01T00:00:00-05:00"):
        export = tmp_path / f"export-{len(judged)}"
        export_extract(source, export)
        _write_manifest(export, transactionTime="2025-07-01T06:00:00Z", request=kick_off + since)
        r = run_cli("validate", "--input", export, "--json", env=KEY)
        assert r.returncode == 0, r.stderr
        volume = next(c for c in json.loads(r.stdout) if c["check_id"] == "orders.volume.monthly")
        judged[since] = (volume["status"], volume["violated_count"], volume["denominator"])
    assert list(judged.values()) == [("passed", 0, 2), ("passed", 0, 3), ("passed", 0, 3)]
