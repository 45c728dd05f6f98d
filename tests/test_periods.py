"""A period's own state, through the real CLI: empty months are results, quiet months are warnings,
young months are provisional (and say when they become final), and reruns that revise a month say so."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import shutil
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import duckdb
import polars as pl
import pytest
from conftest import DX_HEADER, ORDER_HEADER, PROC_HEADER, ROOT, run_cli, write_csv, write_small_input

from pipeline.maturity import Maturity
from pipeline.quality import validate
from pipeline.synth import generate

KEY = {"ORDER_AUDIT_PSEUDONYM_KEY": "periods-test-key"}
TIME_COLUMN = {"procedures": "performed_at", "imaging_orders": "ordered_at", "diagnoses": "recorded_at"}


def cli(*args):
    return run_cli(*args, env=KEY)


# ----------------------------------------------------------------------------- empty months


@pytest.mark.parametrize("month", ["2030-01", "2025-05"])  # no rows at all; rows but no case
def test_a_month_without_cases_exits_0_with_a_report_that_says_so(tmp_path, month):
    inp = write_small_input(tmp_path / "in")  # two cases, both in 2025-06
    result = cli("run", "--input", inp, "--out", tmp_path / "out", "--month", month)  # the gate on
    assert result.returncode == 0, result.stderr
    assert "GX returned" not in result.stderr and "gate failed" not in result.stderr
    assert f"csf_leak: {month}: no cases" in result.stderr
    assert f"low_back_pain: {month}: no episodes" in result.stderr  # in the audit's unit: "no cases" of episodes
    episodes = (tmp_path / "out" / "low_back_pain" / "report.html").read_text(encoding="utf-8")
    assert "No episode has an audited order in this period." in episodes and "No flagged episode in this period" in episodes
    # a month after the last date of the data: the extract cannot hold it (a job whose extract stopped coming)
    after = f"csf_leak: {month}: the loaded data ends 2025-06-06, before the month: the extract does not reach it"
    assert (after in result.stderr) is (month == "2030-01"), result.stderr
    report = (tmp_path / "out" / "csf_leak" / "report.html").read_text(encoding="utf-8")
    # both months are provisional (the data reaches 2025-06-06): later data can still bring their cases
    assert f"No cases in {month} so far." in report and "later data can still bring cases" in report
    assert "nothing to audit" in report and "2025-06-02" in report  # where the loaded data is
    # the dates of the procedures and orders, not "the loaded data runs from ... to", which the provisional note below
    # says of every feed (the earliest of their last dates: a day apart from the procedures' and orders' last date);
    # each feed's own, where one that stopped early hid behind the other's last date
    said = " ".join(report.split())
    assert "the loaded procedures are dated 2025-06-02 to 2025-06-03, imaging orders 2025-06-04 to 2025-06-06)" in said
    assert "the loaded data runs from" not in report
    # a month before the data: as mistyped a year as one after it
    before = f"csf_leak: {month}: the loaded data starts 2025-06-02, after the month: the extract does not reach back"
    assert (before in result.stderr) is (month == "2025-05"), result.stderr
    assert f"No cases in {month} so far." in (tmp_path / "out" / "csf_leak" / "index.html").read_text(encoding="utf-8")
    # the workbook too: its Cases sheet is a header row only, which read as a broken file
    from xlsx_xml import Workbook  # noqa: PLC0415 - only this test reads a workbook

    cells = Workbook(tmp_path / "out" / "csf_leak" / "case_list.xlsx").cells("Explanation")
    said = [cells[(i, 1)]["text"] for i, j in cells if j == 1 and cells[(i, 0)]["text"] == "Period status"]
    assert any(t.startswith(f"No cases in {month} so far. ") and "Cases sheet is a header row only" in t for t in said), said
    run = json.loads((tmp_path / "out" / "csf_leak" / "run.json").read_text())
    assert run["counts"]["cases"] == 0
    # run.json lists the warnings the log gave about its audit (it had listed the demo key's alone), each audit's
    # folder its own
    logged = [line.removeprefix("order-audit: ") for line in result.stderr.splitlines()]
    for audit_id in ("csf_leak", "low_back_pain"):
        warned = json.loads((tmp_path / "out" / audit_id / "run.json").read_text())["warnings"]
        said = [line for line in logged if line.startswith(f"{audit_id}: {month}: the loaded data ")]
        assert len(said) == 1 and [w for w in warned if f": {month}: the loaded data " in w] == said, (warned, said)
    assert all(d["status"] != "error" for d in run["data_quality"])


def test_the_first_month_of_data_has_no_trend_to_read(tmp_path):
    """The first month of data (nothing before it): its p-charts have one month, whose own rate is the centre line,
    so no month can fall outside the limits. The report said "1 months" and "No month outside the control limits:
    common-cause variation only" of it, a conclusion no data supports."""
    inp = write_small_input(tmp_path / "in")  # two cases, both in 2025-06: the only month with data
    result = cli("run", "--input", inp, "--out", tmp_path / "out", "--month", "2025-06", "--no-validate")
    assert result.returncode == 0, result.stderr
    report = (tmp_path / "out" / "csf_leak" / "report.html").read_text(encoding="utf-8")
    trend = report[report.index('<section id="trend">') : report.index('<section id="groups">')]
    headings = re.findall(r"<h3>(.*?)</h3>", trend, flags=re.S)
    assert headings and all("2025-06 to 2025-06: 1 month;" in h for h in headings), headings
    assert "common-cause variation only" not in trend
    assert trend.count("One month with data") == len(headings)


def test_one_revised_order_reads_in_the_singular(tmp_path):
    """A rerun whose extract lost one audited order: the banner and the log said "Revised ...: 1 orders"."""
    inp, wh = write_small_input(tmp_path / "in"), tmp_path / "wh.duckdb"
    for out in ("first", "second"):
        result = cli("run", "--input", inp, "--out", tmp_path / out, "--warehouse", wh, "--month", "2025-06", "--no-validate")
        assert result.returncode == 0, result.stderr
        orders = inp / "imaging_orders.csv"
        orders.write_text("".join(row for row in orders.read_text().splitlines(True) if not row.startswith("O4,")))
    assert "revised since run" in result.stderr and ": 1 order (0 added, 1 removed" in result.stderr
    report = (tmp_path / "second" / "csf_leak" / "report.html").read_text(encoding="utf-8")
    assert "<strong>Revised since the last run: 1 order</strong>" in report
    # and the site index marks the month, with the run that revised it, the day it started and the run before it
    first, second = (json.loads((tmp_path / out / "csf_leak" / "run.json").read_text()) for out in ("first", "second"))
    index = (tmp_path / "second" / "index.html").read_text(encoding="utf-8")
    mark = re.search(r'<span class="revised">(.*?)</span>(?:<br>|</th>)', index).group(1)
    assert re.sub(r"<[^>]+>", "", mark) == (
        f"revised on {second['started_at'][:10]} by run {second['run_id']}: 1 order changed since run {first['run_id']}"
    )
    assert 'class="revised"' not in (tmp_path / "first" / "index.html").read_text(encoding="utf-8")


def _index_marks(out: Path) -> dict[str, str]:
    """The csf_leak row's marks on the site index (class -> text, tags dropped)."""
    index = (out / "index.html").read_text(encoding="utf-8")
    row = index[index.index('id="audit-csf_leak"') : index.index("</tbody>", index.index('id="audit-csf_leak"'))]
    marks = re.findall(r'<span class="(final|revised|provisional)">(.*?)</span>(?:<br>|</th>)', row)
    return {cls: re.sub(r"<[^>]+>", "", text) for cls, text in marks}


def _said(page: Path) -> str:
    """A page's words, tags dropped and spaces collapsed."""
    import html  # noqa: PLC0415

    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.read_text(encoding="utf-8"))).split())


def _september(sept: Path) -> Path:
    """September's extract: a case, an order and a diagnosis of September, nothing of June's (the small input's
    month): it takes the data past June's final date."""
    write_csv(
        sept / "procedures.csv", PROC_HEADER, [["PR9", "MRN-9", "2025-09-20 09:00:00", "62323", "Pain clinic", "1960-01-01"]]
    )
    write_csv(
        sept / "imaging_orders.csv",
        ORDER_HEADER,
        [["O91", "MRN-9", "2025-09-21 10:00:00", "72156", "Neurology", "G97.1", "completed"]],
    )
    write_csv(sept / "diagnoses.csv", DX_HEADER, [["MRN-9", "G97.1", "2025-09-21 08:00:00"]])
    return sept


def test_a_month_published_provisional_is_marked_final_since_the_run_that_made_it_final(tmp_path):
    """June published while provisional, then re-run once September's extract took the data past its final date:
    the index said nothing of the change of status (a month turning final without a changed verdict went unseen by
    the committee). It now names the run that made it final, its day and what it changed; the mark stays on a rerun
    that changes nothing, and a later correction is marked revised beside it."""
    inp, wh = write_small_input(tmp_path / "june"), tmp_path / "wh.duckdb"

    def run(inputs: Path, out: str) -> dict:
        result = cli("run", "--input", inputs, "--out", tmp_path / out, "--warehouse", wh, "--month", "2025-06", "--no-validate")
        assert result.returncode == 0, result.stderr
        return json.loads((tmp_path / out / "csf_leak" / "run.json").read_text()) | {"log": result.stderr}

    first = run(inp, "first")
    assert _index_marks(tmp_path / "first") == {"provisional": "provisional until the data reaches 2025-09-13"}
    sept = _september(tmp_path / "sept")
    second = run(sept, "second")
    final = (
        f"final since {second['started_at'][:10]} (run {second['run_id']}): no order or verdict changed since run "
        f"{first['run_id']} published it provisional"
    )
    assert _index_marks(tmp_path / "second") == {"final": final}
    assert f"csf_leak: 2025-06 is final since this run; run {first['run_id']} published it provisional (0 orders" in second["log"]
    assert "Final since: the run whose data first reached" in (tmp_path / "second" / "index.html").read_text(encoding="utf-8")
    # a sentence of its own: the template's line break before it was trimmed, "...2025-06-30.It was published"
    first_page = f". It was published provisional by run {first['run_id']}; this run is the first to publish it final, no order"
    assert f"{first_page} or verdict changed since run {first['run_id']}." in _said(
        tmp_path / "second" / "csf_leak" / "report.html"
    )
    third = run(sept, "third")  # the same data again: still final since the second run, nothing revised
    assert _index_marks(tmp_path / "third") == {"final": final}
    # the report's first page and the workbook say it as the index does
    since = (
        f"It was published provisional by run {first['run_id']}; run {second['run_id']} ({second['started_at'][:10]}) first "
        f"published it final, no order or verdict changed since run {first['run_id']}."
    )
    assert since in _said(tmp_path / "third" / "csf_leak" / "report.html")
    from xlsx_xml import Workbook  # noqa: PLC0415 - only these tests read a workbook

    said = {
        r["Run id"]: r[third["run_id"]] for r in Workbook(tmp_path / "third" / "csf_leak" / "case_list.xlsx").rows("Explanation")
    }
    # the audit's windows (74 days) from 2025-06-30 end on 2025-09-12: the page's banner says the same
    last_day = "past 2025-09-12, the last day of the audit's 74-day windows from the period's last index date, 2025-06-30."
    assert said["Period status"] == f"Final: the loaded data runs through 2025-09-20, {last_day} {since}"
    assert f"Final: the loaded data runs through 2025-09-20, {last_day}" in _said(tmp_path / "third" / "csf_leak" / "report.html")
    # a corrected June extract (order O4 withdrawn): revised by this run, final since the second
    orders = inp / "imaging_orders.csv"
    orders.write_text("".join(row for row in orders.read_text().splitlines(True) if not row.startswith("O4,")))
    fourth = run(inp, "fourth")
    revised = f"revised on {fourth['started_at'][:10]} by run {fourth['run_id']}: 1 order changed since run {third['run_id']}"
    assert _index_marks(tmp_path / "fourth") == {"final": final, "revised": revised}


def test_a_check_that_cannot_count_says_what_it_could_not_count():
    spec = {
        "type": "expect_column_values_to_not_be_null",
        "kwargs": {"column": "order_id"},
        "meta": {
            "check_id": "x.order_id.not_null",
            "severity": "blocking",
            "description": "Every row has an order_id.",
            "row_level": False,
        },
    }
    # what Great Expectations hands back when it computed no count (it does so for every table without rows)
    result = SimpleNamespace(result={"unexpected_count": None, "element_count": 5}, exception_info={}, success=False)
    args = (spec, "mart_audited_orders", ["order_id"], ["order_id"])
    r = validate._from_gx(result, *args, 5, {}, 0.0, {"order_id"})
    assert r.status == "error"
    assert r.error == (
        "could not count how many of the 5 rows of mart_audited_orders break this check "
        "(Every row has an order_id.): Great Expectations computed no count of unexpected rows"
    )
    empty = SimpleNamespace(result={"unexpected_count": None, "element_count": 0}, exception_info={}, success=False)
    r = validate._from_gx(empty, *args, 0, {}, 0.0, {"order_id"})
    assert (r.status, r.violated_count, r.denominator) == ("passed", 0, 0)


# ----------------------------------------------------------------------------- quiet months


def test_a_quiet_month_is_a_warning_in_the_log_and_the_report_never_exit_3(tmp_path):
    inp = tmp_path / "in"
    generate(inp, patients=3000, months=8, seed=3, start_month="2025-06")
    orders = pl.read_csv(inp / "imaging_orders.csv", infer_schema=False)
    quiet = orders.with_row_index("i").filter(
        (pl.col("ordered_at").str.slice(0, 7) != "2025-11") | (pl.col("i") % 10 == 0)
    )  # 2025-11 keeps a tenth of its orders: a partial extract
    quiet.drop("i").write_csv(inp / "imaging_orders.csv")
    result = cli("run", "--input", inp, "--out", tmp_path / "out", "--month", "2025-11")
    assert result.returncode == 0, result.stderr
    assert "data-quality warning orders.volume.monthly" in result.stderr and "2025-11" in result.stderr
    report = (tmp_path / "out" / "csf_leak" / "report.html").read_text(encoding="utf-8")
    assert "Fewer orders than usual</strong> in 2025-11" in report


# ----------------------------------------------------------------------------- provisional, final, revised


def test_maturity_needs_the_data_to_reach_the_month_end_plus_the_windows():
    ny = ZoneInfo("America/New_York")
    through = dt.datetime(2026, 4, 16, 1, 0, tzinfo=ny).astimezone(dt.UTC)
    m = Maturity(through, 74.0, "America/New_York")
    # January ends at local midnight on 1 February; + 74 days of 24 h (DST moved the clock an hour on)
    assert m.final_from("2026-01") == dt.datetime(2026, 4, 16, 1, 0, tzinfo=ny)
    assert m.status("2026-01") == "final"
    assert Maturity(through - dt.timedelta(seconds=1), 74.0, "America/New_York").status("2026-01") == "provisional"
    assert Maturity(None, 74.0, "America/New_York").status("2020-01") == "provisional"  # nothing loaded


def test_with_default_windows_a_monthly_load_leaves_three_months_provisional():
    # the scheduling examples rerun the last four months: the three still provisional and the one
    # that has just become final
    through = dt.datetime(2026, 8, 31, 23, 59, tzinfo=ZoneInfo("America/New_York"))
    m = Maturity(through, 74.0, "America/New_York")
    assert [m.status(x) for x in ("2026-04", "2026-05", "2026-06", "2026-07", "2026-08")] == [
        "final",
        "final",
        "provisional",
        "provisional",
        "provisional",
    ]
    before = Maturity(dt.datetime(2026, 7, 31, 23, 59, tzinfo=ZoneInfo("America/New_York")), 74.0, "America/New_York")
    assert before.status("2026-05") == "provisional"  # so the run after August publishes May's final figures
    for doc in (ROOT / "README.md", ROOT / "docs" / "SCHEDULING.md"):
        assert "-3 months" in doc.read_text(encoding="utf-8"), doc


def monthly_extracts(base: Path) -> dict[str, Path]:
    """Generated extracts cut into one folder per month of their timestamps, as a hospital delivers them."""
    generate(base / "all", patients=20000, months=6, seed=7, start_month="2025-11")
    folders = {}
    for table, column in TIME_COLUMN.items():
        rows = pl.read_csv(base / "all" / f"{table}.csv", infer_schema=False)
        for month in ("2026-01", "2026-02", "2026-03", "2026-04"):
            folders[month] = base / month
            folders[month].mkdir(exist_ok=True)
            rows.filter(pl.col(column).str.slice(0, 7) == month).write_csv(folders[month] / f"{table}.csv")
    return folders


def audited(out: Path) -> int:
    return pl.read_parquet(out / "csf_leak" / "audited_orders.parquet").height


@pytest.mark.slow
def test_january_is_provisional_then_revised_then_final_as_later_extracts_arrive(tmp_path):
    extracts = monthly_extracts(tmp_path)
    wh = tmp_path / "wh.duckdb"

    def run(month_of_extract):
        out = tmp_path / f"out-{month_of_extract}"
        r = cli(
            "run", "--input", extracts[month_of_extract], "--warehouse", wh, "--month", "2026-01", "--out", out, "--no-validate"
        )
        assert r.returncode == 0, r.stderr
        return r, out

    first, jan = run("2026-01")
    # each line names its audit: two audits' periods over the same data differ
    assert "csf_leak: 2026-01 is provisional" in first.stderr and "final once the data reaches 2026-04-16" in first.stderr
    report = (jan / "csf_leak" / "report.html").read_text(encoding="utf-8")
    assert "<strong>Provisional.</strong>" in report and "2026-04-16" in report and "runs through\n2026-01-31" in report
    index = (jan / "csf_leak" / "index.html").read_text(encoding="utf-8")
    assert report.count("<strong>Provisional.</strong>") == 1 == index.count("<strong>Provisional.</strong>")  # said once
    # the trend draws the month as provisional, and the site index marks it so
    assert ">provisional month (may change)</text>" in report
    site = (jan / "index.html").read_text(encoding="utf-8")
    assert 'provisional until the data reaches <span class="date">2026-04-16</span>' in site
    fed = pl.read_parquet(jan / "csf_leak" / "metrics.parquet")
    assert set(fed["status"]) == {"provisional"} and set(fed["data_through"]) == {dt.date(2026, 1, 31)}
    first_run = json.loads((jan / "run.json").read_text())["run_id"]

    # February's extract brings January's late cases their imaging: the month changes, and says so
    second, feb = run("2026-02")
    added = audited(feb) - audited(jan)
    assert added > 0
    revised = f"csf_leak: 2026-01 revised since run {first_run}: {added} orders ({added} added, 0 removed, 0 changed)"
    assert revised in second.stderr
    report = (feb / "csf_leak" / "report.html").read_text(encoding="utf-8")
    assert f"Revised since the last run: {added} orders</strong>" in report
    runs = cli("runs", "--warehouse", wh)
    assert f"revised {added} orders since {first_run}" in runs.stdout
    assert "(provisional until the data reaches 2026-04-16)" in runs.stdout

    _, mar = run("2026-03")
    third_run = json.loads((mar / "run.json").read_text())["run_id"]
    fourth, apr = run("2026-04")  # the data now runs through 30 April: January is final
    assert " is provisional" not in fourth.stderr
    # and the log says which run published it provisional last (the site index marks it: test above)
    assert f"csf_leak: 2026-01 is final since this run; run {third_run} published it provisional (" in fourth.stderr
    fed = pl.read_parquet(apr / "csf_leak" / "metrics.parquet")
    assert set(fed["status"]) == {"final"} and set(fed["data_through"]) == {dt.date(2026, 4, 30)}
    report = (apr / "csf_leak" / "report.html").read_text(encoding="utf-8")
    assert "<strong>Provisional.</strong>" not in report and "Final: the loaded data runs through 2026-04-30" in report
    assert "provisional month" not in report and "provisional until" not in (apr / "index.html").read_text(encoding="utf-8")
    assert "(final)" in cli("runs", "--warehouse", wh).stdout.splitlines()[1]


def test_a_new_pseudonym_key_revises_nothing_and_a_real_change_is_still_reported(tmp_path):
    """Rotating the pseudonym key (README "Privacy") is routine; the low back pain episode id holds the
    pseudonym, so the next run reported every order of every month "revised" (log, run.json, `runs`) and
    `diff` listed them all: a false alarm. Revisions compare the case key-independently now."""
    generate(tmp_path / "in", patients=1500, months=3, seed=5, start_month="2025-01")
    wh = tmp_path / "wh.duckdb"

    def run(name: str, key: str, inp: Path):
        out = tmp_path / name
        r = run_cli("run", "--input", inp, "--warehouse", wh, "--out", out, "--no-validate", env={**KEY, **key})
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        return r, out, json.loads((out / "run.json").read_text())["run_id"]

    started, before, first = run("a", {}, tmp_path / "in")
    assert "pseudonym key changed" not in started.stderr
    rotated, after, second = run("b", {"ORDER_AUDIT_PSEUDONYM_KEY": "periods-test-key-2027"}, tmp_path / "in")
    lbp = pl.read_csv(after / "low_back_pain" / "audited_orders.csv", infer_schema=False)
    old = pl.read_csv(before / "low_back_pain" / "audited_orders.csv", infer_schema=False)
    assert lbp.height > 0 and set(lbp["case_id"]).isdisjoint(old["case_id"])  # the key did change every episode id
    assert "revised" not in rotated.stderr
    # said once, plainly: the outputs' pseudonyms no longer match that run's
    assert f"the pseudonym key changed since run {first}: this run's pseudonyms and episode ids differ" in rotated.stderr
    assert "revised_orders" not in json.loads((after / "low_back_pain" / "run.json").read_text())["counts"]
    assert "revised" not in cli("runs", "--warehouse", wh).stdout
    assert "no order changed verdict" in cli("diff", first, second, "--warehouse", wh).stdout
    # what the history compares on holds nothing of the patient: no pseudonym, no hash of the patient id (it leaves
    # the warehouse with --spark-state, and an unkeyed hash of a record number is undone by trying every number)
    with duckdb.connect(str(wh), read_only=True) as con:
        refs = con.execute("SELECT DISTINCT case_ref FROM run_verdicts WHERE audit_id = 'low_back_pain'").fetchall()
    assert refs and all(re.fullmatch(r"-\d{4}-\d{2}-\d{2}", r[0]) for r in refs), refs[:3]

    # a corrected extract that does change one low back pain order is still reported, under the new key
    order = lbp["order_id"][0]
    shutil.copytree(tmp_path / "in", tmp_path / "fixed")
    orders = pl.read_csv(tmp_path / "fixed" / "imaging_orders.csv", infer_schema=False)
    orders.with_columns(
        pl.when(pl.col("order_id") == order).then(pl.lit("LOC-NEW-7")).otherwise(pl.col("order_code")).alias("order_code")
    ).write_csv(tmp_path / "fixed" / "imaging_orders.csv")
    changed, _, third = run("c", {"ORDER_AUDIT_PSEUDONYM_KEY": "periods-test-key-2027"}, tmp_path / "fixed")
    assert f"revised since run {second}: 1 order (0 added, 0 removed, 1 changed)" in changed.stderr
    assert "pseudonym key changed" not in changed.stderr  # the key of the run before
    assert "csf_leak" not in "".join(line for line in changed.stderr.splitlines() if "revised" in line)
    listed = [line for line in cli("diff", first, third, "--warehouse", wh).stdout.splitlines() if "order " in line]
    assert len(listed) == 1 and f"order {order} " in listed[0] and "changed" in listed[0], listed


def _june_provisional_then_september(tmp_path: Path) -> tuple[Path, str, Path, tuple]:
    """A warehouse where a run published June provisional, and September's extract, which makes June final:
    (the warehouse, that run's id, the extract, a backfill's command line into ``tmp_path/backfill``)."""
    inp, wh = write_small_input(tmp_path / "june"), tmp_path / "wh.duckdb"
    first = cli("run", "--input", inp, "--out", tmp_path / "first", "--warehouse", wh, "--month", "2025-06", "--no-validate")
    assert first.returncode == 0, first.stderr
    first_id = json.loads((tmp_path / "first" / "csf_leak" / "run.json").read_text())["run_id"]
    sept = _september(tmp_path / "sept")
    return wh, first_id, sept, ("run", "--input", sept, "--out", tmp_path / "backfill", "--warehouse", wh, "--no-validate")


@pytest.mark.parametrize(
    ("signal", "nth"),
    # stopped or killed in June's second audit (csf_leak's June out), or killed in July's first
    [("TERM", 2), ("KILL", 2), ("KILL", 3)],
)
def test_a_run_stopped_after_publishing_a_month_final_keeps_the_mark_it_gave(tmp_path, signal, nth):
    """A backfill published June final (its folder said "final since" to whoever opened it), then was stopped before
    it recorded its end. The next good run passed over it (only succeeded runs were read) and claimed to be the first
    to publish June final, moving the mark the committee had seen; the stopped run now records what it published
    (each audit's folder as it is out, before the next is rendered: a SIGKILL between csf_leak's June and low back
    pain's runs no handler), and the next run names it."""
    wh, first_id, sept, backfill = _june_provisional_then_september(tmp_path)
    stopped = run_cli(
        *backfill,
        "--from",
        "2025-06",
        "--to",
        "2025-07",
        env=KEY | {"ORDER_AUDIT_FAULT": f"mid_render:{nth}", "ORDER_AUDIT_FAULT_SIGNAL": signal},
    )
    assert stopped.returncode != 0, stopped.stderr
    june = json.loads((tmp_path / "backfill" / "csf_leak" / "2025-06" / "run.json").read_text())
    assert not (tmp_path / "backfill" / "csf_leak" / "2025-07").exists()  # killed before July was out
    final = (
        f"final since {june['started_at'][:10]} (run {june['run_id']}): no order or verdict changed since run "
        f"{first_id} published it provisional"
    )
    assert _index_marks_of(tmp_path / "backfill", "2025-06") == {"final": final}
    third = cli("run", "--input", sept, "--out", tmp_path / "third", "--warehouse", wh, "--month", "2025-06", "--no-validate")
    assert third.returncode == 0, third.stderr
    assert _index_marks(tmp_path / "third") == {"final": final}
    since = (
        f"It was published provisional by run {first_id}; run {june['run_id']} ({june['started_at'][:10]}) first "
        f"published it final, no order or verdict changed since run {first_id}."
    )
    assert since in _said(tmp_path / "third" / "csf_leak" / "report.html")
    # the stopped run's record: interrupted, June published, July not
    con = duckdb.connect(str(wh), read_only=True)
    status, counts = con.execute("SELECT status, counts FROM audit_runs WHERE run_id = ?", [june["run_id"]]).fetchall()[0]
    con.close()
    assert status == "interrupted"
    recorded = json.loads(counts)["csf_leak"]
    assert (recorded["2025-06"].get("published"), recorded["2025-07"].get("published")) == (True, None)


def test_a_folder_a_killed_run_published_but_never_recorded_is_recorded_by_the_next_run_into_it(tmp_path):
    """A SIGKILL in the instant between a folder's switch and its record (``mid_publish:2``: csf_leak's June folder
    out, the run's history not yet told): the folder said "final since" under the killed run's id. The next run into
    the same --out reads that folder's run.json before replacing it, records what it published, and names the
    killed run as the one that first published June final, as after a stop."""
    wh, first_id, sept, backfill = _june_provisional_then_september(tmp_path)
    months = ("--from", "2025-06", "--to", "2025-07")
    killed = run_cli(*backfill, *months, env=KEY | {"ORDER_AUDIT_FAULT": "mid_publish:2"})
    assert killed.returncode == -9, killed.stderr
    june = json.loads((tmp_path / "backfill" / "csf_leak" / "2025-06" / "run.json").read_text())
    with duckdb.connect(str(wh), read_only=True) as con:
        ((counts,),) = con.execute("SELECT counts FROM audit_runs WHERE run_id = ?", [june["run_id"]]).fetchall()
    assert counts is None  # killed before its record
    again = cli(*backfill, *months)
    assert again.returncode == 0, again.stderr
    folder = tmp_path / "backfill" / "csf_leak" / "2025-06"
    said = f"order-audit: {folder}: run {june['run_id']} published it but did not record it (killed?); recorded now"
    assert said in again.stderr.splitlines()
    final = (
        f"final since {june['started_at'][:10]} (run {june['run_id']}): no order or verdict changed since run "
        f"{first_id} published it provisional"
    )
    assert _index_marks_of(tmp_path / "backfill", "2025-06") == {"final": final}
    since = (
        f"It was published provisional by run {first_id}; run {june['run_id']} ({june['started_at'][:10]}) first "
        f"published it final, no order or verdict changed since run {first_id}."
    )
    assert since in _said(folder / "report.html")
    with duckdb.connect(str(wh), read_only=True) as con:
        ((counts,),) = con.execute("SELECT counts FROM audit_runs WHERE run_id = ?", [june["run_id"]]).fetchall()
    assert json.loads(counts) == {
        "csf_leak": {
            "2025-06": {
                **{k: v for k, v in june["counts"].items() if k not in ("rejected_rows", "nulled_values")},
                "published": True,
            }
        }
    }


def _index_marks_of(out: Path, month: str) -> dict[str, str]:
    """One month's row of the csf_leak audit on a backfill's site index (class -> text, tags dropped)."""
    index = (out / "index.html").read_text(encoding="utf-8")
    start = index.index(f'href="csf_leak/{month}/index.html"')
    row = index[start : index.index("</tr>", start)]
    marks = re.findall(r'<span class="(final|revised|provisional)">(.*?)</span>(?:<br>|</th>)', row)
    return {cls: re.sub(r"<[^>]+>", "", text) for cls, text in marks}


def test_a_final_period_names_the_last_day_of_its_windows():
    """The first page and the workbook name the day the audit's windows from the period's last index date end (the
    day before the data had to reach), so the chair holds it beside the orders' dates; a window with hours in it ends
    within a day, so that one says the index date plus the days."""
    from pipeline.period_status import final_text  # noqa: PLC0415

    maturity = {"data_through": "2026-06-30", "final_from": "2026-06-12", "last_index_date": "2026-04-30", "horizon_days": "42"}
    assert final_text(maturity) == (
        "Final: the loaded data runs through 2026-06-30, past 2026-06-11, the last day of the audit's 42-day windows from"
        " the period's last index date, 2026-04-30."
    )
    assert final_text(maturity | {"horizon_days": "3.5"}) == (
        "Final: the loaded data runs through 2026-06-30, past the period's last index date, 2026-04-30, plus 3.5 days."
    )


@pytest.mark.parametrize(
    ("published_as", "level"), [("provisional", logging.INFO), ("final", logging.WARNING), (None, logging.WARNING)]
)
def test_a_revision_warns_only_where_the_run_compared_with_did_not_call_the_month_provisional(caplog, published_as, level):
    """The monthly job reruns the three provisional months every load, and each is revised as late orders arrive: a
    warning every month, a page for a scheduler alerting on warnings, for what the report calls provisional. Late
    data changing a month an earlier run published final (or without a status) is still a warning."""
    from pipeline import period_status

    revision = {"since_run": "R2", "orders": 3, "added": 3, "removed": 0, "changed": 0}
    earlier = [
        {"run_id": "R1", "on": "2026-01-05", "status": "final", "revised_orders": 0, "revised_since": None},
        {"run_id": "R2", "on": "2026-02-05", "status": published_as, "revised_orders": 0, "revised_since": None},
    ]
    with caplog.at_level(logging.INFO):
        period_status.build("csf_leak", "2026-01", {"cases": 5}, None, revision, [], {}, earlier)
    (record,) = [r for r in caplog.records if "revised since run R2" in r.getMessage()]
    assert record.levelno == level, record.levelname


def test_a_monthly_delivery_without_its_orders_file_is_a_warning_and_said_on_the_first_page(tmp_path):
    """A monthly extract that came without imaging_orders.csv (a data engineer's review): July's procedures and
    diagnoses, no orders. It published July with exit 0, its first page naming the feeds' common last date as the
    orders', and only a check that could not run as a sign. Now the log warns, run.json lists it, and the first
    page says the month lacks its orders."""
    from conftest import write_july_input  # noqa: PLC0415

    wh, out = tmp_path / "wh.duckdb", tmp_path / "out"
    june = cli("run", "--input", write_small_input(tmp_path / "june"), "--warehouse", wh, "--out", out, "--month", "2025-06")
    assert june.returncode == 0, june.stderr
    july = write_july_input(tmp_path / "july")
    (july / "imaging_orders.csv").unlink()
    result = cli("run", "--input", july, "--warehouse", wh, "--out", out, "--month", "2025-07")  # the gate on
    assert result.returncode == 0, result.stderr
    # the diagnoses' patients judged with the procedures and the held orders: it warned 'could not run: missing
    # table(s): src_imaging_orders', words no operator reads as 'the orders did not come'
    assert "could not run" not in result.stderr, result.stderr
    said = (
        "csf_leak: 2025-07: no imaging orders are dated in the month (the loaded imaging orders are dated 2025-06-04 to "
        "2025-06-06, and this delivery has no file of them), while the other feeds reach it"
    )
    assert said in result.stderr, result.stderr
    assert any(w.startswith(said) for w in json.loads((out / "csf_leak" / "run.json").read_text())["warnings"])
    page = " ".join((out / "csf_leak" / "report.html").read_text(encoding="utf-8").split())
    banner = "<strong>No imaging orders dated in 2025-07.</strong> The loaded imaging orders are dated 2025-06-04 to 2025-06-06"
    assert banner in page
    # and the workbook a reviewer works in, under Period status in the page's words (it had said only "Final")
    from xlsx_xml import Workbook  # noqa: PLC0415 - only these tests read a workbook

    cells = Workbook(out / "csf_leak" / "case_list.xlsx").cells("Explanation")
    status = [cells[(i, 1)]["text"] for i, j in cells if j == 1 and cells[(i, 0)]["text"] == "Period status"]
    short = [t for t in status if t.startswith("No imaging orders dated in 2025-07. The loaded imaging orders are dated")]
    assert len(short) == 1 and short[0].endswith("Load the imaging orders extract, then run the period again."), status
