"""Safe to schedule: idempotent loads, period runs and backfills, crash safety, one writer at a time.

Every run here is the real CLI in a subprocess. Most skip the Great Expectations gate
(--no-validate) to stay fast; test_cli.py keeps one run with the gate on.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest
from conftest import ROOT, write_july_input, write_small_input
from conftest import run_cli as _run_cli

from pipeline.report.templates import in_utc
from pipeline.synth import generate

KEY = {"ORDER_AUDIT_PSEUDONYM_KEY": "scheduling-test-key"}
DATA_NAMES = (
    "audited_orders.csv",
    "audited_orders.parquet",
    "cases.csv",
    "cases.parquet",
    "attrition.csv",
    "metrics.csv",
    "metrics.parquet",
    "rejects.csv",
    "load_ledger.csv",
)
DATA_FILES = tuple(f"csf_leak/{n}" for n in DATA_NAMES)  # in the output tree: one folder per audit


def run_cli(*args, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return _run_cli(*args, env={**KEY, **(env or {})}, timeout=timeout)


def audit(inp: Path, out: Path, wh: Path, *extra, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_cli("run", "--input", inp, "--out", out, "--warehouse", wh, "--no-validate", *extra, env=env)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


def files(folder: Path) -> dict[str, bytes]:
    """Every visible file under an output folder (through its symlink), by relative path."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_id_of(out: Path) -> str:
    return json.loads((out / "run.json").read_text())["run_id"]


def query(wh: Path, sql: str, params=None) -> list[tuple]:
    con = duckdb.connect(str(wh), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def warehouse_state(wh: Path) -> dict:
    """What a killed run must not change: source rows, the active ledger, results, past runs."""
    return {
        "rows": {t: query(wh, f"SELECT count(*) FROM src_{t}")[0][0] for t in ("procedures", "imaging_orders", "diagnoses")},
        "ledger": query(
            wh,
            """SELECT load_id, table_name, sha256, action, superseded_by FROM load_ledger
                               ORDER BY load_id""",
        ),
        "results": query(wh, "SELECT period, order_id, case_id, verdict, reasons FROM audit_results ORDER BY ALL"),
        "results_run_ids": query(wh, "SELECT DISTINCT run_id FROM audit_results ORDER BY ALL"),
        "runs": query(
            wh,
            """SELECT run_id, status, periods, counts FROM audit_runs
                             WHERE status <> 'running' AND status <> 'publishing' AND status <> 'interrupted'
                             ORDER BY run_id""",
        ),
    }


def leftovers(folder: Path) -> list[str]:
    """Hidden staging/version/scratch entries in folder other than what an output symlink points to."""
    current = {os.readlink(p) for p in folder.iterdir() if p.is_symlink()}
    return sorted(
        p.name for p in folder.iterdir() if p.name.startswith(".") and p.name not in current and not p.name.endswith(".lock")
    )


def with_order_code(src: Path, dest: Path, order_id: str, code: str) -> Path:
    """A copy of an input folder whose imaging_orders has one order's code changed (a corrected extract)."""
    shutil.copytree(src, dest)
    path = dest / "imaging_orders.csv"
    frame = pl.read_csv(path, infer_schema=False)
    assert order_id in frame["order_id"].to_list()
    frame.with_columns(
        pl.when(pl.col("order_id") == order_id).then(pl.lit(code)).otherwise(pl.col("order_code")).alias("order_code")
    ).write_csv(path)
    return dest


# ------------------------------------------------------------------ 1. ledger: idempotent, corrections, accumulation


def test_load_twice_correct_once_then_add_a_month(small_input, tmp_path):
    wh, out = tmp_path / "wh.duckdb", tmp_path / "out"
    first = ok(audit(small_input, out, wh, "--log-format", "json"))
    run_a = run_id_of(out)
    before = warehouse_state(wh)
    first_files = files(out)
    ledger_csv = (out / "csf_leak" / "load_ledger.csv").read_text()
    assert ledger_csv.count("\n") == 4  # header + procedures, imaging_orders, diagnoses
    assert all(json.loads(line)["event"] for line in first.stderr.splitlines())

    # the same files again: nothing added, every file skipped, data outputs byte-identical
    ok(audit(small_input, out, wh, "--quiet"))
    run_b = run_id_of(out)
    assert run_b != run_a
    after = warehouse_state(wh)
    assert after["rows"] == before["rows"] == {"procedures": 2, "imaging_orders": 4, "diagnoses": 1}
    assert query(wh, "SELECT table_name, action FROM load_ledger WHERE run_id = ? ORDER BY 1", [run_b]) == [
        ("diagnoses", "skipped_already_loaded"),
        ("imaging_orders", "skipped_already_loaded"),
        ("procedures", "skipped_already_loaded"),
    ]
    second_files = files(out)
    for name in DATA_FILES:
        assert second_files[name] == first_files[name], name
    # presentation files differ only by the run id (and the HTML's start time); run.json holds both
    assert second_files["csf_leak/metrics.json"].replace(run_b.encode(), run_a.encode()) == first_files["csf_leak/metrics.json"]
    info_a = json.loads(first_files["run.json"])
    html_b = (
        second_files["csf_leak/report.html"]
        .decode()
        .replace(run_b, run_a)
        .replace(json.loads(second_files["run.json"])["started_at"], info_a["started_at"])
        .replace(in_utc(json.loads(second_files["run.json"])["started_at"]), in_utc(info_a["started_at"]))  # as printed
    )
    assert html_b == first_files["csf_leak/report.html"].decode()

    # a corrected extract of the same months: the earlier file's rows go, the ledger says what it replaced
    fixed = with_order_code(small_input, tmp_path / "fixed", "O4", "LOC-NEW-7")  # now an unmapped local code
    ok(audit(fixed, out, wh))
    run_c = run_id_of(out)
    assert warehouse_state(wh)["rows"] == before["rows"]
    ((action, replaces, removed, updated),) = query(
        wh,
        "SELECT action, replaces, rows_removed, rows_updated FROM load_ledger WHERE run_id = ? AND table_name = 'imaging_orders'",
        [run_c],
    )
    assert (action, removed, updated) == ("replaced", 4, 0)
    assert replaces == f"{run_a}-imaging_orders"
    assert query(wh, "SELECT superseded_by FROM load_ledger WHERE load_id = ?", [replaces]) == [(f"{run_c}-imaging_orders",)]
    assert query(wh, "SELECT order_code FROM src_imaging_orders WHERE order_id = 'O4'") == [("LOC-NEW-7",)]
    ledger = pl.read_csv(out / "csf_leak" / "load_ledger.csv", infer_schema=False)
    assert ledger.filter(pl.col("table_name") == "imaging_orders")["sha256"].to_list() == [
        query(wh, "SELECT sha256 FROM load_ledger WHERE load_id = ?", [f"{run_c}-imaging_orders"])[0][0]
    ]

    # diff shows exactly that order, with both reasons
    d = ok(run_cli("diff", run_a, run_c, "--warehouse", wh))
    changed = [line for line in d.stdout.splitlines() if "order " in line]
    assert len(changed) == 1, d.stdout
    assert "order O4 " in changed[0] and "A inappropriate [premature|wrong_region]" in changed[0], changed[0]
    assert "-> B not_evaluable [unmapped_code]" in changed[0], changed[0]
    assert "no order changed" in ok(run_cli("diff", run_a, run_b, "--warehouse", wh)).stdout

    # a monthly extract for another month accumulates beside the first
    july = write_july_input(tmp_path / "july")
    ok(audit(july, out, wh))
    assert warehouse_state(wh)["rows"] == {"procedures": 3, "imaging_orders": 5, "diagnoses": 2}
    active = query(
        wh,
        """SELECT table_name, first_month, last_month, action FROM load_ledger
                          WHERE action IN ('loaded', 'replaced') AND superseded_by IS NULL ORDER BY ALL""",
    )
    assert active == [
        ("diagnoses", "2025-06", "2025-06", "loaded"),
        ("diagnoses", "2025-07", "2025-07", "loaded"),
        ("imaging_orders", "2025-06", "2025-06", "replaced"),
        ("imaging_orders", "2025-07", "2025-07", "loaded"),
        ("procedures", "2025-06", "2025-06", "loaded"),
        ("procedures", "2025-07", "2025-07", "loaded"),
    ]
    assert pl.read_csv(out / "csf_leak" / "load_ledger.csv").height == 6
    assert set(pl.read_csv(out / "csf_leak" / "audited_orders.csv", infer_schema=False)["order_id"]) == {
        "O1",
        "O2",
        "O3",
        "O4",
        "O71",
    }

    # runs lists them all, newest first, with period, status, counts and duration
    listed = json.loads(ok(run_cli("runs", "--warehouse", wh, "--json")).stdout)
    assert [r["status"] for r in listed] == ["succeeded"] * 4
    assert [r["periods"] for r in listed] == [["all"]] * len(listed)
    assert listed[0]["counts"]["csf_leak"]["all"]["audited_orders"] == 5  # data, not a string of JSON
    # the start as run.json writes it: a scheduler compares the two
    assert listed[0]["started_at"] == json.loads((out / "run.json").read_text())["started_at"]
    assert all(r["duration_seconds"] is not None for r in listed)
    table = ok(run_cli("runs", "--warehouse", wh)).stdout
    assert run_a in table and "succeeded" in table and "cases" in table


# ------------------------------------------------------------------ 2. period runs and backfill


@pytest.fixture(scope="module")
def synth36(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("synth36")
    generate(d, patients=300, months=36, seed=3, start_month="2024-01")
    return d


def test_backfill_36_months_equals_whole_run_and_month_rerun_is_byte_identical(synth36, tmp_path):
    # the CSF-leak audit alone: its outputs are the ones compared (the backfill loops over audits alike), and the
    # low back pain audit's 36 reports would double the run's time
    audit = ("--audit", "csf_leak")
    whole = tmp_path / "whole"
    ok(run_cli("run", "--input", synth36, "--out", whole, "--warehouse", tmp_path / "whole.duckdb", "--no-validate", *audit))
    wh, bf = tmp_path / "bf.duckdb", tmp_path / "bf"
    result = ok(
        run_cli(
            "run",
            "--input",
            synth36,
            "--out",
            bf,
            "--warehouse",
            wh,
            "--no-validate",
            "--from",
            "2024-01",
            "--to",
            "2026-12",
            "--log-format",
            "json",
            *audit,
        )
    )
    events = [json.loads(line) for line in result.stderr.splitlines()]
    done = [e for e in events if e["event"] == "month_done"]
    assert [e["period"] for e in done][:2] == ["2024-01", "2024-02"] and len(done) == 36
    assert (done[-1]["done"], done[-1]["total"]) == (36, 36)
    assert "\r" not in result.stderr  # no progress bar when stderr is not a terminal
    months = sorted(p.name for p in (bf / "csf_leak").iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(months) == 36 and months[0] == "2024-01" and months[-1] == "2026-12"
    assert (bf / "index.html").is_file()  # the site index linking every month
    assert not (bf / "low_back_pain").exists()  # only the audit named
    assert leftovers(bf) == [] and leftovers(bf / "csf_leak") == []
    # one feed a run, the last month's, in the audit's folder: the months' feeds side by side gave away counts each
    # withholds; the months' pages and the site index point to it
    assert [m for m in months if (bf / "csf_leak" / m / "metrics.csv").exists()] == []
    assert json.loads((bf / "csf_leak" / "metrics.json").read_text())["period"] == months[-1]
    index = (bf / "index.html").read_text(encoding="utf-8")
    assert index.count("metrics.csv") == 1 and 'href="csf_leak/metrics.csv"' in index
    assert 'href="../../csf_leak/metrics.csv"' in (bf / "csf_leak" / "2024-01" / "index.html").read_text()

    def rows(path: Path) -> list[tuple]:
        return sorted(pl.read_csv(path, infer_schema=False).rows())

    union = sorted(r for m in months for r in rows(bf / "csf_leak" / m / "audited_orders.csv"))
    assert union == rows(whole / "csf_leak" / "audited_orders.csv")
    assert len(union) > 100
    cases = sorted(r for m in months for r in rows(bf / "csf_leak" / m / "cases.csv"))
    assert cases == rows(whole / "csf_leak" / "cases.csv")
    # the warehouse keeps every audit's results: these are the CSF-leak audit's
    periods = query(wh, "SELECT period, count(*) FROM audit_results WHERE audit_id = 'csf_leak' GROUP BY ALL ORDER BY 1")
    # every month is on record (months without cases have no result rows)
    assert sum(n for _, n in periods) == len(union) and {m for m, _ in periods} <= set(months)
    assert query(wh, "SELECT periods FROM audit_runs WHERE status = 'succeeded'")[0][0].count(",") == 35

    # one month again, alone (files already loaded): the same data outputs, byte for byte
    month = max(months, key=lambda m: len(rows(bf / "csf_leak" / m / "audited_orders.csv")))
    again = tmp_path / "again"
    ok(run_cli("run", "--input", synth36, "--out", again, "--warehouse", wh, "--no-validate", "--month", month, *audit))
    first, second = files(bf / "csf_leak" / month), files(again / "csf_leak")
    for name in DATA_NAMES:  # the feed: one a run, the backfill's in the audit's folder (above)
        assert second[name] == first[name] if not name.startswith("metrics.") else name not in first, name
    assert json.loads(second["run.json"])["period"] == month
    # the rerun replaced that month's results, the others stay
    assert (
        query(wh, "SELECT count(*) FROM audit_results WHERE period = ? AND audit_id = 'csf_leak'", [month])[0][0]
        == dict(periods)[month]
    )
    assert len(query(wh, "SELECT DISTINCT run_id FROM audit_results")) == 2


def test_diff_lists_what_a_run_added_to_a_month_an_earlier_run_found_empty(small_input, tmp_path):
    """A month audited without a single order has no verdict rows: diff called that run unknown ("no run ..."),
    though `runs` lists it and the later run's log says the month was revised and points to diff; and two runs
    with no period in common printed the all-clear "no order changed" for a comparison never made."""
    wh, out = tmp_path / "wh.duckdb", tmp_path / "out"
    ok(audit(small_input, out, wh, "--month", "2025-07"))  # June's data: July is empty
    empty = run_id_of(out)
    july = write_july_input(tmp_path / "july")
    revised = ok(audit(july, out, wh, "--month", "2025-07"))
    assert f"2025-07 revised since run {empty}: 1 order (1 added" in revised.stderr
    filled = run_id_of(out)
    d = ok(run_cli("diff", empty, filled, "--warehouse", wh))
    assert [line for line in d.stdout.splitlines() if "order " in line] == [
        "2025-07  csf_leak  order O71 (case PR7) added: A - [] -> B inappropriate [premature|wrong_region]"
    ], d.stdout
    ok(audit(small_input, tmp_path / "june", wh, "--month", "2025-06"))
    apart = run_cli("diff", empty, run_id_of(tmp_path / "june"), "--warehouse", wh)
    assert apart.returncode == 1 and "no order changed" not in apart.stdout, apart.stdout
    assert "audited no period in common" in apart.stderr


def test_runs_and_diff_read_a_warehouse_an_older_version_wrote(small_input, tmp_path):
    """runs and diff open the warehouse read-only, so the history migrations (the audit ids added when audits
    became folders) cannot run: diff on such a warehouse ended in a traceback (no column audit_id)."""
    wh = tmp_path / "wh.duckdb"
    ok(audit(small_input, tmp_path / "a", wh, "--month", "2025-06"))
    ok(audit(with_order_code(small_input, tmp_path / "fixed", "O4", "LOC-NEW-7"), tmp_path / "b", wh, "--month", "2025-06"))
    con = duckdb.connect(str(wh))  # the history tables as a version before audit folders wrote them
    try:
        for table, column in (("audit_runs", "audits"), ("audit_results", "audit_id"), ("run_verdicts", "audit_id")):
            con.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    finally:
        con.close()
    assert run_id_of(tmp_path / "a") in ok(run_cli("runs", "--warehouse", wh)).stdout
    d = ok(run_cli("diff", run_id_of(tmp_path / "a"), run_id_of(tmp_path / "b"), "--warehouse", wh))
    assert [line.split(" A ")[0] for line in d.stdout.splitlines() if "order " in line] == [
        "2025-06    order O4 (case PR2) changed:"
    ], d.stdout


SITE_MAP = (
    "code_system,code,study_type,modality,regions,contrast,description,valid_from,valid_to,source\n"
    "LOCAL,LOC-CSPINE,mri_spine,MR,C,without_and_with,MRI cervical spine w/wo,2000-01-01,,site exam master\n"
)


def test_the_site_code_map_is_kept_for_a_reaudit_and_a_folder_without_it(small_input, tmp_path):
    """The site's local_code_map.csv sits beside the extracts: a re-audit without --input (or a monthly folder
    without the map) used to audit its codes as unmapped and report the month revised: a false alarm; and
    the gate warned that their orders' codes were unmapped."""
    shutil.copyfile(small_input / "imaging_orders.csv", tmp_path / "orders.csv")
    frame = pl.read_csv(tmp_path / "orders.csv", infer_schema=False)
    frame.with_columns(
        pl.when(pl.col("order_id") == "O1").then(pl.lit("LOC-CSPINE")).otherwise(pl.col("order_code")).alias("order_code")
    ).write_csv(small_input / "imaging_orders.csv")
    (small_input / "local_code_map.csv").write_text(SITE_MAP)
    wh = tmp_path / "wh.duckdb"

    def reasons_of_o1(out: Path) -> str:
        orders = pl.read_csv(out / "csf_leak" / "audited_orders.csv", infer_schema=False)
        return orders.filter(pl.col("order_id") == "O1")["reasons"][0]

    ok(audit(small_input, tmp_path / "a", wh))
    first = files(tmp_path / "a")
    assert "unmapped_code" not in reasons_of_o1(tmp_path / "a")
    again = ok(run_cli("run", "--warehouse", wh, "--out", tmp_path / "b", "--no-validate"))
    monthly = tmp_path / "next"
    shutil.copytree(small_input, monthly)
    (monthly / "local_code_map.csv").unlink()
    # with the gate on: its mapped-share check reads the kept map too (no warning that the run's verdicts contradict)
    from_folder = ok(run_cli("run", "--input", monthly, "--out", tmp_path / "c", "--warehouse", wh))
    assert "data-quality warning orders.order_code.mapped_share" not in from_folder.stderr
    for result, out in ((again, "b"), (from_folder, "c")):
        assert "revised" not in result.stderr and "site code map: none given; the one the warehouse kept" in result.stderr
        assert {n: files(tmp_path / out)[n] for n in DATA_FILES} == {n: first[n] for n in DATA_FILES}
        info = json.loads((tmp_path / out / "run.json").read_text())
        assert {"name": "local_code_map", "source": "warehouse"}.items() <= next(
            f for f in info["reference_files"] if f["name"] == "local_code_map"
        ).items()
    # validate on that folder judges the codes as the run did with --warehouse (read only), and warns without it
    (tmp_path / "site.toml").write_text(f"warehouse = {json.dumps(str(wh))}\n")  # the config's warehouse too
    before = wh.read_bytes(), sorted(p.name for p in wh.parent.iterdir())
    share = "orders.order_code.mapped_share"
    with_map = ok(run_cli("validate", "--input", monthly, "--warehouse", wh, "--json"))
    assert next(r for r in json.loads(with_map.stdout) if r["check_id"] == share)["status"] == "passed"
    assert "site code map: none given; the one the warehouse kept" in with_map.stderr
    without = ok(run_cli("validate", "--input", monthly, "--json"))
    assert next(r for r in json.loads(without.stdout) if r["check_id"] == share)["status"] == "failed"
    from_config = ok(run_cli("validate", "--input", monthly, "--config", tmp_path / "site.toml", "--json"))
    assert next(r for r in json.loads(from_config.stdout) if r["check_id"] == share)["status"] == "passed"
    assert (wh.read_bytes(), sorted(p.name for p in wh.parent.iterdir())) == before
    # a map with its header only removes the site's rows: the local code is unmapped again
    (monthly / "local_code_map.csv").write_text(SITE_MAP.splitlines()[0] + "\n")
    assert "revised" in ok(audit(monthly, tmp_path / "d", wh)).stderr
    assert "unmapped_code" in reasons_of_o1(tmp_path / "d")


def test_validate_with_a_warehouse_never_makes_or_waits_on_it(small_input, tmp_path):
    """validate --warehouse only reads the kept site code map: a missing file is one line and exit 1 (no
    warehouse made), a file another process writes is exit 4 naming it (not DuckDB's lock text)."""
    missing = tmp_path / "wh" / "warehouse.duckdb"
    result = run_cli("validate", "--input", small_input, "--warehouse", missing)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"order-audit: error: --warehouse {missing} not found; validate reads the site code map a run kept there "
        "and never makes a warehouse: give the file your runs use, or leave --warehouse out"
    ]
    assert not missing.parent.exists()
    held = tmp_path / "held.duckdb"
    writer = duckdb.connect(str(held))
    try:
        result = run_cli("validate", "--input", small_input, "--warehouse", held)
    finally:
        writer.close()
    assert result.returncode == 4 and "Traceback" not in result.stderr, result.stderr
    assert "another process holds the warehouse file open for writing" in result.stderr


# ------------------------------------------------------------------ 3. crash safety

PRE_COMMIT = ("after_parse", "after_merge", "after_transform")
POST_COMMIT = ("mid_render", "mid_publish:1", "mid_publish:2")


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    """A warehouse and outputs after one successful run (copied by each kill test)."""
    d = tmp_path_factory.mktemp("baseline")
    inp = write_small_input(d / "in")
    ok(audit(inp, d / "site" / "out", d / "site" / "wh.duckdb"))
    return d


@pytest.mark.parametrize("point", PRE_COMMIT + POST_COMMIT)
def test_kill_leaves_previous_state_and_next_run_succeeds(baseline, tmp_path, point):
    site = tmp_path / "site"
    shutil.copytree(baseline / "site", site, symlinks=True)
    wh, out = site / "wh.duckdb", site / "out"
    old_files, old_state = files(out), warehouse_state(wh)
    old_run = run_id_of(out)

    killed = audit(baseline / "in", out, wh, env={"ORDER_AUDIT_FAULT": point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    state = warehouse_state(wh)
    assert state["rows"] == old_state["rows"]
    assert state["runs"] == old_state["runs"]  # the earlier run's record is untouched
    assert state["results"] == old_state["results"]
    if point in PRE_COMMIT:
        assert state == old_state  # the transaction never committed
    else:
        # committed before the kill: the same files were only marked as already loaded
        assert query(wh, "SELECT DISTINCT action FROM load_ledger WHERE run_id <> ?", [old_run]) == [("skipped_already_loaded",)]
    assert not any(p.name.startswith(".") for p in out.iterdir())  # nothing half-made inside the output folder
    if point == "mid_publish:2":
        # killed after the switch: the whole new set is visible (and its run.json names the new run)
        assert run_id_of(out) != old_run
        assert all(files(out)[n] == old_files[n] for n in DATA_FILES)
    else:
        assert files(out) == old_files  # byte-identical, run.json included

    status = query(wh, "SELECT status FROM audit_runs WHERE run_id <> ? ORDER BY run_id", [old_run])
    assert status == [("publishing",)] if point in POST_COMMIT else [("running",)]
    # `runs` does not leave the operator waiting for a run that is dead (the next run records it as interrupted)
    (listed,) = [r for r in json.loads(ok(run_cli("runs", "--warehouse", wh, "--json")).stdout) if r["run_id"] != old_run]
    assert listed["status"] == status[0][0] and "its process is gone" in listed["error"]

    nxt = ok(audit(baseline / "in", out, wh))
    assert run_id_of(out) != old_run
    assert leftovers(site) == []
    assert [(s, e is not None) for s, e in query(wh, "SELECT status, error FROM audit_runs ORDER BY started_at, run_id")] == [
        ("succeeded", False),
        ("interrupted", True),
        ("succeeded", False),
    ]
    ((error,),) = query(wh, "SELECT error FROM audit_runs WHERE status = 'interrupted'")
    assert ("after its warehouse commit" in error) == (point in POST_COMMIT), error
    new_files = files(out)
    for name in DATA_FILES:
        assert new_files[name] == old_files[name], name
    assert nxt.returncode == 0


def test_a_kill_between_writing_and_renaming_the_site_index_leaves_a_file_the_next_run_removes(baseline, tmp_path):
    """A backfill writes OUT/index.html beside its name (``.index.html.tmp-<pid>``), then renames it: a SIGKILL
    in between leaves that file, and the next run's sweep removes it (a dead process's; a like-named file of
    someone else's, not a process id, stays)."""
    out, wh = tmp_path / "out", tmp_path / "wh.duckdb"
    backfill = ("--from", "2025-05", "--to", "2025-06")
    killed = audit(baseline / "in", out, wh, *backfill, env={"ORDER_AUDIT_FAULT": "mid_index"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = sorted(p.name for p in out.iterdir() if p.name.startswith(".index.html.tmp-"))
    assert len(left) == 1 and left[0].removeprefix(".index.html.tmp-").isdigit(), left
    (out / ".index.html.tmp-notes").write_text("mine", encoding="utf-8")
    ok(audit(baseline / "in", out, wh, *backfill))
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".index")) == [".index.html.tmp-notes"]
    assert (out / "index.html").is_file()


@pytest.mark.parametrize("fmt", [(), ("--json",)])
def test_runs_into_a_pipe_closed_early_ends_quietly_as_a_unix_tool_does(baseline, fmt):
    """`order-audit runs | head`: the reader is gone before the listing is written. The command ends as `seq`
    or `cat` do, killed by SIGPIPE (the shell's 141), nothing on stderr; not exit 1, which the exit-code table
    reads as a configuration error."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # closed before the command writes: its first write breaks the pipe
    try:
        closed = subprocess.run(
            [sys.executable, "-m", "pipeline", "runs", "--warehouse", baseline / "site" / "wh.duckdb", *fmt],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert (closed.returncode, closed.stderr) == (-signal.SIGPIPE, "")
    # read to the end, the same command exits 0
    assert ok(run_cli("runs", "--warehouse", baseline / "site" / "wh.duckdb", *fmt)).stdout


def test_a_file_within_a_held_file_s_months_is_merged_and_the_log_says_so(small_input, tmp_path):
    """A month re-delivered without its first order, one of the month before in the site's time: the held file had
    covered two months, the new one covers one, so it is no correction of the held file (a correction covers the
    same months) and is merged into it by id, the order it lacks staying. It said only 'loaded'; the log now names
    both files at info level. A next month's extract overlapping no held file's months whole says nothing."""
    from conftest import ORDER_HEADER, write_csv

    wh, out = tmp_path / "wh.duckdb", tmp_path / "out"
    june_july = small_input
    orders = (june_july / "imaging_orders.csv").read_text(encoding="utf-8")
    (june_july / "imaging_orders.csv").write_text(orders + "O9,MRN-2,2025-07-01 09:00:00,72148,Emergency,,completed\n")
    ok(audit(june_july, out, wh))
    july = tmp_path / "july"
    july.mkdir()
    again = [["O9", "MRN-2", "2025-07-01 09:30:00", "72148", "Emergency", "", "completed"]]  # its time corrected
    write_csv(july / "imaging_orders.csv", ORDER_HEADER, again)
    merged = ok(audit(july, out, wh, "--log-format", "json"))
    (said,) = [e for e in map(json.loads, merged.stderr.splitlines()) if e["event"] == "load_overlaps"]
    assert (said["level"], said["months"], said["held_months"]) == ("info", ["2025-07", "2025-07"], ["2025-06", "2025-07"])
    assert said["message"] == (
        "imaging_orders: imaging_orders.csv (2025-07) falls within the months of the held imaging_orders.csv (2025-06 "
        f"to 2025-07, loaded by run {said['held_run']}) without covering them all: merged into it by id, not a "
        "correction of it (the held file's rows this one lacks stay; a correction covers the held file's months)"
    )
    assert said["held_run"] == query(wh, "SELECT min(run_id) FROM load_ledger")[0][0]
    assert query(wh, "SELECT action, rows_updated FROM load_ledger WHERE table_name = 'imaging_orders' ORDER BY loaded_at") == [
        ("loaded", 0),
        ("loaded", 1),
    ]
    assert query(wh, "SELECT count(*) FROM src_imaging_orders") == [(5,)]  # June's four stay
    # the next month's extract, whose first order falls in a held file's last month: no line
    august = tmp_path / "august"
    august.mkdir()
    rows = [["O10", "MRN-2", "2025-07-31 23:00:00", "72148", "Emergency", "", "completed"]]
    rows.append(["O11", "MRN-2", "2025-08-02 09:00:00", "72148", "Emergency", "", "completed"])
    write_csv(august / "imaging_orders.csv", ORDER_HEADER, rows)
    later = ok(audit(august, out, wh, "--log-format", "json"))
    assert [e for e in map(json.loads, later.stderr.splitlines()) if e["event"] == "load_overlaps"] == []


def test_a_part_of_an_extract_that_replaces_a_held_part_is_a_warning(small_input, tmp_path):
    """An extract split by patient, its halves loaded in turn into one warehouse: the second half's procedures cover
    the same months as the first's, so they replaced them as a correction does, and the run published the second
    half's cases alone, exit 0, the log saying 'replacing 1 earlier file' (an adopting site's review: 19 cases of
    50). A file keeping under half of the held file's ids now warns; a correction (one row dropped) says nothing."""
    from conftest import PROC_HEADER, write_csv

    wh, out = tmp_path / "wh.duckdb", tmp_path / "out"
    ok(audit(small_input, out, wh))
    other_half = tmp_path / "other_half"
    other_half.mkdir()
    rows = [["PR21", "MRN-21", "2025-06-02 10:00:00", "62323", "Pain clinic", "1970-05-05"]]
    rows.append(["PR22", "MRN-22", "2025-06-03 11:00:00", "62322", "Pain clinic", "1980-01-01"])
    write_csv(other_half / "procedures.csv", PROC_HEADER, rows)
    part = ok(audit(other_half, out, wh, "--log-format", "json"))
    (said,) = [e for e in map(json.loads, part.stderr.splitlines()) if e["event"] == "load_replaces_a_part"]
    assert (said["level"], said["held_ids"], said["kept_ids"]) == ("warning", 2, 0), said
    assert said["message"].startswith(
        "procedures: procedures.csv replaces the held procedures.csv (the same months) as a correction does, but keeps"
        " only 0 of its 2 procedure_ids: if it is another part of the extract"
    )
    assert said["message"] in json.loads((out / "csf_leak" / "run.json").read_text())["warnings"]
    # a correction of the same months keeps most of the held ids: no line
    fixed = tmp_path / "fixed"
    fixed.mkdir()
    write_csv(fixed / "procedures.csv", PROC_HEADER, [rows[0], [*rows[1][:2], "2025-06-03 11:30:00", *rows[1][3:]]])
    again = ok(audit(fixed, out, wh, "--log-format", "json"))
    assert [e for e in map(json.loads, again.stderr.splitlines()) if e["event"] == "load_replaces_a_part"] == []
    # a patients file (a table without dates: each file is all of it) of other patients: said as such, not as months
    for name, patient in (("all", "MRN-1"), ("month", "MRN-21")):
        folder = tmp_path / f"patients_{name}"
        folder.mkdir()
        (folder / "patients.csv").write_text(f"patient_id,birth_date\n{patient},1970-05-05\n", encoding="utf-8")
        said = ok(audit(folder, out, wh, "--log-format", "json"))
    (part,) = [e for e in map(json.loads, said.stderr.splitlines()) if e["event"] == "load_replaces_a_part"]
    assert part["message"].startswith(
        "patients: patients.csv replaces the held patients.csv whole (a table without dates: each file is all of it), but"
        " keeps only 0 of its 1 patient_ids"
    ), part


def test_kill_before_commit_drops_a_correction_and_next_run_applies_it(baseline, tmp_path):
    site = tmp_path / "site"
    shutil.copytree(baseline / "site", site, symlinks=True)
    wh, out = site / "wh.duckdb", site / "out"
    old_state, old_files = warehouse_state(wh), files(out)
    fixed = with_order_code(baseline / "in", tmp_path / "fixed", "O4", "72156")
    killed = audit(fixed, out, wh, env={"ORDER_AUDIT_FAULT": "after_transform"})
    assert killed.returncode == -signal.SIGKILL
    assert warehouse_state(wh) == old_state and files(out) == old_files
    assert query(wh, "SELECT order_code FROM src_imaging_orders WHERE order_id = 'O4'") == [("72148",)]
    ok(audit(fixed, out, wh))
    assert query(wh, "SELECT order_code FROM src_imaging_orders WHERE order_id = 'O4'") == [("72156",)]
    assert query(wh, "SELECT count(*) FROM load_ledger WHERE action = 'replaced'") == [(1,)]


def test_kill_mid_publish_into_a_plain_folder_leaves_run_json_naming_the_old_run(baseline, tmp_path):
    """An --out that is a real folder with files (not made by order-audit) is updated file by file."""
    site = tmp_path / "site"
    shutil.copytree(baseline / "site", site, symlinks=True)
    wh, plain = site / "wh.duckdb", tmp_path / "plain"
    shutil.copytree(site / "out", plain)  # a real folder holding the previous outputs
    old_files = files(plain)
    old_run = run_id_of(plain)
    fixed = with_order_code(baseline / "in", tmp_path / "fixed", "O4", "72156")
    killed = audit(fixed, plain, wh, env={"ORDER_AUDIT_FAULT": "mid_publish:2"})
    assert killed.returncode == -signal.SIGKILL
    now = files(plain)
    # the record of what the killed run was moving in: the next run removes what of it that run does not write
    pending = json.loads(now.pop(".order-audit-publishing.json"))["files"]
    changed = sorted(n for n in now if now[n] != old_files[n])
    # two files moved in, in name order (attrition.csv is the same bytes here), the rest are the old ones
    assert "csf_leak/audited_orders.csv" in changed and set(changed) <= {"csf_leak/attrition.csv", "csf_leak/audited_orders.csv"}
    # run.json moves last: it still names the previous run, and its manifest shows which files are not its own
    info = json.loads(now["run.json"])
    assert info["run_id"] == old_run
    import hashlib

    stale = sorted(n for n, meta in info["files"].items() if hashlib.sha256(now[n]).hexdigest() != meta["sha256"])
    assert stale == changed
    assert set(changed) <= set(pending)
    assert [p.name for p in plain.iterdir() if p.name.startswith(".")] == [".order-audit-publishing.json"]
    ok(audit(fixed, plain, wh))
    assert leftovers(tmp_path) == [] and not (plain / ".order-audit-publishing.json").exists()
    info = json.loads((plain / "run.json").read_text())
    assert all(hashlib.sha256((plain / n).read_bytes()).hexdigest() == m["sha256"] for n, m in info["files"].items())


STOPS = (
    ("INT", "after_merge", 130, "interrupted (SIGINT)"),
    ("TERM", "after_transform", 143, "stopped by SIGTERM"),
    ("TERM", "mid_render", 143, "after the warehouse commit: stopped by SIGTERM"),
)


@pytest.mark.parametrize(("sig", "point", "code", "recorded"), STOPS)
def test_sigint_and_sigterm_stop_the_run_cleanly_with_their_exit_codes(baseline, tmp_path, sig, point, code, recorded):
    """Ctrl-C and a scheduler's SIGTERM (Airflow, systemd, `timeout`) stop a run as documented: exit 130 / 143 (not
    1, "fix the job, do not retry"), the run recorded as interrupted by the run itself, its scratch folder removed
    and the lock released, the warehouse and outputs as a kill leaves them."""
    site = tmp_path / "site"
    shutil.copytree(baseline / "site", site, symlinks=True)
    wh, out = site / "wh.duckdb", site / "out"
    old_files, old_state, old_run = files(out), warehouse_state(wh), run_id_of(out)

    stopped = audit(
        baseline / "in", out, wh, "--log-format", "json", env={"ORDER_AUDIT_FAULT": point, "ORDER_AUDIT_FAULT_SIGNAL": sig}
    )
    assert stopped.returncode == code, stopped.stderr
    assert "Traceback" not in stopped.stderr
    last = json.loads(stopped.stderr.splitlines()[-1])
    assert (last["event"], last["exit_code"]) == ("error", code)
    # the advice of the command click resolved (`run`), not of the others, which change nothing
    again = "run again to finish: a rerun adds nothing twice (`order-audit runs` says what it left)"
    assert last["message"] == f"{recorded.split(': ')[-1]}; {again}"
    assert files(out) == old_files and warehouse_state(wh)["results"] == old_state["results"]
    if point != "mid_render":
        assert warehouse_state(wh) == old_state
    assert leftovers(site) == []  # the run removed its own scratch and staging folders
    assert query(wh, "SELECT status, error FROM audit_runs WHERE run_id <> ?", [old_run]) == [("interrupted", recorded)]
    ok(audit(baseline / "in", out, wh))  # the lock went with the process


def test_sigterm_from_outside_mid_run_exits_143_and_leaves_nothing(baseline, tmp_path):
    """A real SIGTERM to the whole process group, as Airflow sends it, once the run has parsed its inputs: it lands
    wherever the run is (a DuckDB query, which ends as "Query interrupted", or Python code)."""
    site = tmp_path / "site"
    shutil.copytree(baseline / "site", site, symlinks=True)
    wh, out = site / "wh.duckdb", site / "out"
    old_files = files(out)
    args = ["run", "--input", baseline / "in", "--out", out, "--warehouse", wh, "--log-format", "json"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", *map(str, args)],
        cwd=ROOT,
        env={**os.environ, **KEY},
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if '"stage": "parse"' in line:
            os.killpg(proc.pid, signal.SIGTERM)
            signalled = time.monotonic()
            break
    lines += proc.stderr.readlines()
    assert proc.wait(timeout=120) == 143, "".join(lines)
    # the gate's worker (it ignores the signal) is stopped, not waited for: it was still importing GX and had the
    # input checks to run, seconds a scheduler spends waiting before it sends SIGKILL (0.6 s against 4 s here)
    assert time.monotonic() - signalled < 2.5
    assert all(json.loads(line) for line in lines)  # the last line too: no traceback, no blank line
    assert json.loads(lines[-1])["exit_code"] == 143
    assert files(out) == old_files
    assert leftovers(site) == []
    assert [s for (s,) in query(wh, "SELECT status FROM audit_runs ORDER BY started_at")] == ["succeeded", "interrupted"]


def test_a_sigterm_after_the_run_is_on_record_lets_it_finish_with_exit_0(baseline, tmp_path):
    """The scheduling review: a SIGTERM that landed after `run_done`, while the run removed its scratch folder,
    ended the process 143 ("stopped by SIGTERM; run again") although `runs` said the run had succeeded, and the
    retry it asked for added nothing. Once the success is on record, a stop lets the clean-up finish: exit 0, a
    line that says so, nothing left behind, the lock released."""
    site = tmp_path / "site"
    shutil.copytree(baseline / "site", site, symlinks=True)
    wh, out = site / "wh.duckdb", site / "out"
    old_run = run_id_of(out)

    term_as_it_ends = {"ORDER_AUDIT_FAULT": "after_done", "ORDER_AUDIT_FAULT_SIGNAL": "TERM"}
    done = audit(baseline / "in", out, wh, "--log-format", "json", env=term_as_it_ends)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines()]
    assert [e["event"] for e in events][-2:] == ["run_done", "stop_after_done"]
    assert events[-1]["signal"] == "SIGTERM" and events[-1]["level"] == "info"
    assert leftovers(site) == []
    assert run_id_of(out) != old_run
    assert query(wh, "SELECT status, error FROM audit_runs WHERE run_id <> ?", [old_run]) == [("succeeded", None)]
    ok(audit(baseline / "in", out, wh))  # the lock went with the process


@pytest.mark.parametrize("point", ["started", "after_merge"])
def test_a_sigterm_ends_a_json_log_with_json(small_input, tmp_path, point):
    """A stop while the gate's worker starts, before the run read its log format: the last line was plain text
    in a --log-format json log, the one line a scheduler reads to learn why the run stopped. A stop once the gate
    had validated (after_merge): the worker, killed, left a semaphore whose removal multiprocessing's resource
    tracker announced in two plain lines after it."""
    args = ("--out", tmp_path / "out", "--log-format", "json")
    result = run_cli("run", "--input", small_input, *args, env={"ORDER_AUDIT_FAULT": point, "ORDER_AUDIT_FAULT_SIGNAL": "TERM"})
    assert result.returncode == 143, result.stderr
    lines = result.stderr.splitlines()
    assert lines and all(json.loads(line) for line in lines), result.stderr
    assert json.loads(lines[-1])["exit_code"] == 143 and not (tmp_path / "out").exists()


# ------------------------------------------------------------------ 4. one writer at a time

HOLD_WRITER_LOCK = """
import sys, time
from pathlib import Path
from pipeline import warehouse
with warehouse.writer_lock(Path(sys.argv[1]), "20260101T000000Z-abc123", "run --month 2026-10"):
    print("ready", flush=True)
    time.sleep(60)
"""
HOLD_DUCKDB = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("CREATE TABLE IF NOT EXISTS someone_elses (x INTEGER)")
print("ready", flush=True)
time.sleep(60)
"""


def _holder(code: str, wh: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", code, str(wh)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_second_writer_exits_4_naming_the_running_run(baseline, tmp_path):
    site = tmp_path / "site"
    shutil.copytree(baseline / "site", site, symlinks=True)
    wh, out = site / "wh.duckdb", site / "out"
    before = files(out)
    con = duckdb.connect(str(wh))  # the holder's run on record, as a run records itself when it starts
    con.execute(
        "INSERT INTO audit_runs SELECT * REPLACE ('20260101T000000Z-abc123' AS run_id, 'running' AS status) FROM audit_runs"
    )
    con.close()
    holder = _holder(HOLD_WRITER_LOCK, wh)
    try:
        (running,) = [r for r in json.loads(ok(run_cli("runs", "--warehouse", wh, "--json")).stdout) if r["status"] == "running"]
        assert running["error"] is None  # alive: not reported gone
        second = audit(baseline / "in", out, wh)
        assert second.returncode == 4, second.stderr
        assert "parsed" not in second.stderr  # stopped before any parsing
        assert "run 20260101T000000Z-abc123" in second.stderr and f"process {holder.pid}" in second.stderr
        assert "Traceback" not in second.stderr and len(second.stderr.strip().splitlines()) <= 2
        # a reader is not blocked: the holder does not have the DuckDB file open
        assert "succeeded" in ok(run_cli("runs", "--warehouse", wh)).stdout
    finally:
        holder.kill()
        holder.wait()
    assert files(out) == before
    (gone,) = [r for r in json.loads(ok(run_cli("runs", "--warehouse", wh, "--json")).stdout) if r["status"] == "running"]
    assert "its process is gone" in gone["error"]
    ok(audit(baseline / "in", out, wh))  # the kernel released the lock with the process


def test_other_process_holding_duckdb_file_exits_4(baseline, tmp_path):
    site = tmp_path / "site"
    shutil.copytree(baseline / "site", site, symlinks=True)
    wh, out = site / "wh.duckdb", site / "out"
    holder = _holder(HOLD_DUCKDB, wh)
    try:
        second = audit(baseline / "in", out, wh)
        assert second.returncode == 4, second.stderr
        assert "DuckDB's lock" in second.stderr and f"process {holder.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        assert not list(site.glob(".wh.duckdb.scratch-*"))  # refused before parsing anything
        reader = run_cli("runs", "--warehouse", wh)  # a writer blocks readers too (DuckDB): same exit code
        assert reader.returncode == 4 and "Traceback" not in reader.stderr
    finally:
        holder.kill()
        holder.wait()
    runs = ok(run_cli("runs", "--warehouse", wh, "--json"))
    assert len(json.loads(runs.stdout)) == 1


HOLD_DUCKDB_READ_ONLY = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)  # a dashboard's connection, kept open
print("ready", flush=True)
time.sleep(60)
"""


def test_a_read_only_connection_left_open_blocks_a_run_and_is_named_a_reader(baseline, tmp_path):
    """DuckDB's file lock is one lock for readers and writers: a dashboard's read-only connection stops a run (exit 4),
    which said the process held the file open for writing. Its refusal now says it reads; readers go on."""
    site = tmp_path / "site"
    shutil.copytree(baseline / "site", site, symlinks=True)
    wh, out = site / "wh.duckdb", site / "out"
    before = files(out)
    holder = _holder(HOLD_DUCKDB_READ_ONLY, wh)
    try:
        second = audit(baseline / "in", out, wh)
        assert second.returncode == 4 and "Traceback" not in second.stderr, second.stderr
        said = f"another process holds the warehouse file open read-only (process {holder.pid}), a DuckDB connection"
        assert said in second.stderr
        assert "for writing" not in second.stderr
        assert "succeeded" in ok(run_cli("runs", "--warehouse", wh)).stdout  # readers share the file
    finally:
        holder.kill()
        holder.wait()
    assert files(out) == before
    ok(audit(baseline / "in", out, wh))


def _stopped(proc: subprocess.Popen, within: float = 300) -> None:
    """Wait until ``proc`` has stopped itself (ORDER_AUDIT_FAULT_SIGNAL=STOP: frozen where the fault point is)."""
    deadline = time.monotonic() + within
    while Path(f"/proc/{proc.pid}/stat").read_text().split(") ")[1][0] != "T":
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)


def test_two_warehouses_publishing_into_one_out_the_second_exits_4_and_the_first_finishes(small_input, tmp_path):
    """Two runs at once on two warehouses with the same --out: the second published its month folders between
    the first's, a backfill of both mixed (a plain folder: the files of both). It stops before any work, naming
    the first run, its process and warehouse; the first finishes its publication whole."""
    out = tmp_path / "out"
    backfill = ("--from", "2025-05", "--to", "2025-07", "--quiet")
    # the first run freezes once it has published its first month folder (csf_leak/2025-05), holding its locks
    first = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", "--input", small_input, "--out", out, "--warehouse", tmp_path / "a.duckdb"]
        + ["--no-validate", *backfill],
        cwd=ROOT,
        env={**os.environ, **KEY, "ORDER_AUDIT_FAULT": "mid_publish:2", "ORDER_AUDIT_FAULT_SIGNAL": "STOP"},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _stopped(first)
        mid_way = published(out)
        month = out / "csf_leak" / "2025-05"  # the first month folder out, the site index not yet written
        assert sorted(mid_way) == [f"csf_leak/2025-05/{p.name}" for p in sorted(month.iterdir())]
        holder = json.loads((tmp_path / ".out.lock").read_text())
        assert json.loads(mid_way["csf_leak/2025-05/run.json"])["run_id"] == holder["run_id"]
        second = audit(small_input, out, tmp_path / "b.duckdb", *backfill)
        assert second.returncode == 4, second.stderr
        assert second.stderr.splitlines() == [
            f"order-audit: error: --out {out}: run {holder['run_id']} "
            f"(process {first.pid}, 'run --input {small_input} --out {out} --warehouse {tmp_path / 'a.duckdb'} "
            f"--no-validate --from 2025-05 --to 2025-07 --quiet', started {holder['started_at']}) "
            f"publishes into it from --warehouse {tmp_path / 'a.duckdb'}; wait for it to finish, or give each warehouse "
            "an --out of its own (nothing was changed)"
        ]
        assert published(out) == mid_way
        assert not (tmp_path / "b.duckdb").exists() and not (tmp_path / "b.duckdb.lock").exists()  # nothing left
    finally:
        first.send_signal(signal.SIGCONT)
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    runs = {
        json.loads((out / a / m / "run.json").read_text())["run_id"]
        for a in ("csf_leak", "low_back_pain")
        for m in ("2025-05", "2025-06", "2025-07")
    }
    assert len(runs) == 1  # every month folder the first run's
    ok(audit(small_input, out, tmp_path / "b.duckdb", *backfill))  # the lock went with the first run


def published(out: Path) -> dict[str, bytes]:
    """Every visible file under an output folder, through the month folders' links, by relative path."""
    found = {}
    for folder, subfolders, names in os.walk(out, followlinks=True):
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]
        found.update({(Path(folder) / n).relative_to(out).as_posix(): (Path(folder) / n).read_bytes() for n in names})
    return dict(sorted(found.items()))


@pytest.mark.parametrize(("umask", "file_mode", "folder_mode"), [("002", 0o664, 0o775), ("077", 0o600, 0o700)])
def test_outputs_and_warehouse_take_the_jobs_umask(small_input, tmp_path, umask, file_mode, folder_mode):
    """docs/SCHEDULING.md, The job's environment: a group-shared report folder needs the umask honoured (nothing
    made with a fixed mode of its own), in a backfill's month folders and the warehouse's files alike."""
    args = ["run", "--input", small_input, "--out", tmp_path / "out", "--warehouse", tmp_path / "wh" / "wh.duckdb"]
    done = subprocess.run(
        ["sh", "-c", f'umask {umask} && exec "$0" -m pipeline "$@"', sys.executable, *map(str, args)]
        + ["--from", "2025-06", "--to", "2025-07", "--no-validate", "--quiet"],
        cwd=ROOT,
        env={**os.environ, **KEY},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    modes = {}
    for root in (tmp_path / "out", tmp_path / "wh"):
        for folder, _, names in os.walk(root, followlinks=True):
            modes[folder] = os.stat(folder).st_mode & 0o777
            modes.update({os.path.join(folder, n): os.stat(os.path.join(folder, n)).st_mode & 0o777 for n in names})
    assert len(modes) > 40 and (tmp_path / "out" / "csf_leak" / "2025-07" / "report.html").is_file()
    wrong = {path: oct(mode) for path, mode in modes.items() if mode != (folder_mode if os.path.isdir(path) else file_mode)}
    assert wrong == {}


@pytest.mark.parametrize("command", ["run", "validate"])
@pytest.mark.parametrize("held", [[], ["README.txt"]], ids=["empty", "no-table"])
def test_a_delivery_that_did_not_come_stops_a_warehouse_run(small_input, tmp_path, command, held):
    """The scheduling review: `run --input EMPTY --warehouse WH` (the extract not yet copied, a wrong path) exited 0,
    republished the warehouse's months and published the new one as "no cases"; `validate` so was exit 70, a
    traceback. Exit 2, one line naming the folder, nothing written: the cron line's `|| alert` fires."""
    wh, out = tmp_path / "wh.duckdb", tmp_path / "out"
    assert run_cli("run", "--input", small_input, "--out", out, "--warehouse", wh).returncode == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    runs = run_cli("runs", "--warehouse", wh).stdout
    empty = tmp_path / "delivery"
    empty.mkdir()
    for name in held:
        (empty / name).write_text("the export's notes\n")
    more = ("--out", out) if command == "run" else ()
    r = run_cli(command, "--input", empty, "--warehouse", wh, *more)
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert "Traceback" not in r.stderr and line.startswith(f"order-audit: error: {empty}: holds no table's file"), line
    assert ("(it is empty)" if not held else "(it holds README.txt, none named after a table)") in line, line
    assert line.endswith("to re-run the warehouse's months without a new delivery, leave --input out"), line
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert run_cli("runs", "--warehouse", wh).stdout == runs


def test_a_new_delivery_stopped_before_the_commit_leaves_no_file_in_the_source_store(small_input, tmp_path):
    """The scheduling review: a SIGTERM during the models left the new delivery's typed files in
    `wh.duckdb.sources/` (the next run swept them: 'no live load refers to it'), where the warehouse is to be as it
    was. They go as the transaction rolls back."""
    wh, out = tmp_path / "wh.duckdb", tmp_path / "out"
    ok(audit(small_input, out, wh))
    store = tmp_path / "wh.duckdb.sources"
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    july = write_july_input(tmp_path / "july")
    stopped = audit(july, out, wh, env={"ORDER_AUDIT_FAULT": "after_transform", "ORDER_AUDIT_FAULT_SIGNAL": "TERM"})
    assert stopped.returncode == 143, stopped.stderr
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before
    ok(audit(july, out, wh))
    assert len(sorted(store.rglob("*.parquet"))) > len([p for p in before if p.suffix == ".parquet"])


@pytest.mark.parametrize("backfill", [False, True], ids=["month", "backfill"])
def test_a_one_off_run_of_an_earlier_month_says_the_feed_goes_back(small_input, tmp_path, backfill):
    """The scheduling review: a one-off run of an old month into the monthly job's --out replaced the feed the
    dashboards read (OUT/<audit>/metrics.parquet) with one ending that month, exit 0, without a word. Published as
    asked, with a warning naming both months; the next run of the latest month puts it back, without one."""
    wh, out = tmp_path / "wh.duckdb", tmp_path / "out"

    def months(first: str, last: str) -> tuple:
        return ("--from", first, "--to", last) if backfill else ("--month", last)

    def feed_goes_back(r) -> list[dict]:
        assert r.returncode == 0, r.stderr
        return [e for e in map(json.loads, r.stderr.splitlines()) if e.get("event") == "feed_goes_back"]

    latest = audit(small_input, out, wh, *months("2025-05", "2025-06"), "--log-format", "json")
    assert feed_goes_back(latest) == []
    earlier = audit(small_input, out, wh, *months("2025-05", "2025-05"), "--log-format", "json")
    (said,) = [e for e in feed_goes_back(earlier) if e["audit_id"] == "csf_leak"]
    # the small extract's data starts in June: a May feed holds no month
    assert (said["level"], said["feed_last"], said["replaced_last"]) == ("warning", None, "2025-06")
    assert said["message"].startswith("csf_leak: the feed this run publishes holds no month, where the one it replaces ")
    assert f"dashboards reading {out / 'csf_leak' / 'metrics.parquet'} lose the later months" in said["message"]
    assert feed_goes_back(audit(small_input, out, wh, *months("2025-05", "2025-06"), "--log-format", "json")) == []


def test_a_feed_ending_earlier_is_said_and_one_ending_as_late_is_not(tmp_path, monkeypatch):
    from pipeline import publishing

    said: list[dict] = []
    monkeypatch.setattr(publishing, "event", lambda message, **fields: said.append({"message": message, **fields}))

    def feed(name: str, periods: list[str]) -> Path:
        (tmp_path / name).write_text(json.dumps({"periods": periods}))
        return tmp_path / name

    monthly = feed("published.json", ["2026-03", "2026-04", "2026-Q1", "2025-05..2026-04", "all"])
    publishing.say_if_feed_goes_back("csf_leak", monthly, feed("old.json", ["2025-02", "2025-03", "2025-Q1", "all"]))
    assert [(s["feed_last"], s["replaced_last"]) for s in said] == [("2025-03", "2026-04")]
    assert said[0]["message"].startswith("csf_leak: the feed this run publishes ends 2025-03, where the one it replaces ended")
    said.clear()
    for later in (["2026-04", "all"], ["2026-05", "all"]):
        publishing.say_if_feed_goes_back("csf_leak", monthly, feed("new.json", later))
    publishing.say_if_feed_goes_back("csf_leak", tmp_path / "none.json", feed("new.json", ["2025-01"]))  # a first run
    assert said == []
