"""Fault injection beyond the kill test (test_scheduling.py): the disk fills up, a folder turns read-only.

Each fault is real: a small tmpfs mounted for the test (``mount -t tmpfs``), filled or
remounted read-only. Where the machine does not allow mounting (no root, no
CAP_SYS_ADMIN, a container without it) the tests are skipped, saying why. The run must
end with one line and exit 1, the previous outputs intact, and the run recorded so that
the next one (the command the line gives) publishes.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest
import xlsxwriter
from conftest import ROOT
from conftest import run_cli as _run_cli

from pipeline.errors import refused_write
from pipeline.sqltext import literal

KEY = {"ORDER_AUDIT_PSEUDONYM_KEY": "write-faults-test-key"}


def run_cli(*args) -> subprocess.CompletedProcess:
    return _run_cli(*args, env=KEY)


def audit(inp: Path, out: Path, wh: Path) -> subprocess.CompletedProcess:
    return run_cli("run", "--input", inp, "--out", out, "--warehouse", wh, "--no-validate", "--quiet")


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    # a month after the data's last date is a warning line before it (period_status: the extract does not reach it)
    lines = [line for line in result.stderr.strip().splitlines() if "before the month: the extract" not in line]
    assert len(lines) == 1 and lines[0].startswith("order-audit: error: "), result.stderr
    return lines[0]


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size) -> a fresh tmpfs of that many KiB under tmp_path; unmounted after the test."""
    mounted: list[Path] = []

    def mount(kib: int) -> Path:
        point = tmp_path / f"tmpfs{len(mounted)}"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={kib}k,mode=0755", "tmpfs", str(point)], capture_output=True, text=True
        )
        if done.returncode != 0:
            pytest.skip(f"this machine does not allow mounting a tmpfs for the test: {done.stderr.strip() or done.returncode}")
        mounted.append(point)
        return point

    if shutil.which("mount") is None:
        pytest.skip("no mount command on this machine")
    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def fill(folder: Path, leave_kib: int) -> Path:
    """Fill the file system of folder until about leave_kib KiB are free."""
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    filler = folder / "filler.bin"
    with filler.open("wb") as fh:
        fh.write(b"\0" * max(0, free - leave_kib * 1024))
    return filler


def test_disk_full_while_writing_outputs_keeps_the_previous_ones_and_the_next_run_publishes(small_input, tmp_path, tmpfs):
    disk = tmpfs(8 * 1024)
    out, wh = disk / "reports", tmp_path / "wh.duckdb"  # the warehouse has room; the reports' disk fills up
    assert audit(small_input, out, wh).returncode == 0
    before, entries = files(out), sorted(p.name for p in disk.iterdir())
    old_run = json.loads(before["run.json"])["run_id"]

    fixed = tmp_path / "fixed"  # a corrected extract: the next outputs differ from the published ones
    shutil.copytree(small_input, fixed)
    orders = pl.read_csv(fixed / "imaging_orders.csv", infer_schema=False)
    orders.with_columns(
        pl.when(pl.col("order_id") == "O4").then(pl.lit("72156")).otherwise(pl.col("order_code")).alias("order_code")
    ).write_csv(fixed / "imaging_orders.csv")
    filler = fill(disk, leave_kib=24)
    line = error_line(audit(fixed, out, wh))
    assert "No space left on device" in line and "previous outputs are unchanged" in line, line
    assert files(out) == before  # byte for byte, run.json included
    assert sorted(p.name for p in disk.iterdir()) == sorted([*entries, "filler.bin"])  # no staging folder left behind

    # the warehouse took the correction before the outputs failed: runs says so, and how to catch up
    runs = run_cli("runs", "--warehouse", wh)
    assert runs.returncode == 0
    newest = runs.stdout.splitlines()[1]
    assert "failed" in newest and "ahead of the published reports" in newest, runs.stdout
    con = duckdb.connect(str(wh), read_only=True)
    try:
        assert con.execute("SELECT order_code FROM src_imaging_orders WHERE order_id = 'O4'").fetchall() == [("72156",)]
    finally:
        con.close()

    filler.unlink()  # space is back: the command the error line gives publishes what the warehouse holds
    catch_up = shlex.split(line.split("`")[1])
    assert catch_up[:2] == ["order-audit", "run"] and "--input" not in catch_up
    again = run_cli(*catch_up[1:], "--quiet")
    assert again.returncode == 0, again.stderr
    info = json.loads((out / "run.json").read_text())
    assert info["run_id"] != old_run
    audited = pl.read_csv(out / "csf_leak" / "audited_orders.csv", infer_schema=False)
    assert audited.filter(pl.col("order_id") == "O4")["order_code"].to_list() == ["72156"]


# xlsxwriter leaves its half-written ZipFile to the garbage collector, which fails again on the full
# disk (workbook.py zips in memory for that reason; here xlsxwriter writes to the disk directly)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_each_writer_reports_a_full_disk_in_words_the_run_recognises(tmpfs):
    """DuckDB, Polars, xlsxwriter and plain Python each raise their own exception type on ENOSPC."""
    disk = tmpfs(256)
    fill(disk, leave_kib=0)
    big = pl.DataFrame({"x": ["y" * 1000] * 2000})
    attempts = {
        "duckdb": lambda: duckdb.connect().execute(
            f"COPY (SELECT repeat('y', 1000) AS x FROM range(2000)) TO {literal(disk / 'a.csv')} (FORMAT csv)"
        ),
        "polars": lambda: big.write_csv(disk / "b.csv"),
        "xlsxwriter": lambda: _workbook(disk / "c.xlsx"),
        "python": lambda: (disk / "d.txt").write_text("y" * 2_000_000),
    }
    for name, attempt in attempts.items():
        with pytest.raises(Exception) as caught:  # noqa: PT011 - each library has its own type
            attempt()
        assert refused_write(caught.value) and "No space left on device" in refused_write(caught.value), (name, caught.value)


def _workbook(path: Path) -> None:
    # spooling beside the workbook, as workbook.py does: the full disk is met by the spool or by the zip
    wb = xlsxwriter.Workbook(str(path), {"constant_memory": True, "tmpdir": str(path.parent)})
    ws = wb.add_worksheet()
    for i in range(3000):
        ws.write_string(i, 0, f"{i} " + os.urandom(200).hex())
    wb.close()


@pytest.mark.parametrize("which", ["out", "warehouse"])
def test_a_folder_turned_read_only_stops_before_any_work_and_keeps_everything(small_input, tmp_path, tmpfs, which):
    disk = tmpfs(16 * 1024)
    out = (disk if which == "out" else tmp_path) / "reports"
    wh = (disk if which == "warehouse" else tmp_path) / "wh.duckdb"
    assert audit(small_input, out, wh).returncode == 0
    before_out, before_wh = files(out), wh.read_bytes()
    remount = subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True, text=True)
    if remount.returncode != 0:
        pytest.skip(f"cannot remount the test tmpfs read-only: {remount.stderr.strip()}")
    line = error_line(audit(small_input, out, wh))
    assert f"--{which}" in line and "read-only file system" in line, line
    assert files(out) == before_out and wh.read_bytes() == before_wh


@pytest.fixture
def bind_mount(tmp_path):
    """mount() -> a folder of tmp_path bind-mounted on another (its name holding a space): one file system, yet a
    rename into it crosses mounts (EXDEV), as into a container's volume of the host's disk."""
    mounted: list[Path] = []

    def mount() -> Path:
        source, point = tmp_path / "volume", tmp_path / "re ports"
        source.mkdir()
        point.mkdir()
        done = subprocess.run(["mount", "--bind", str(source), str(point)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"this machine does not allow a bind mount for the test: {done.stderr.strip() or done.returncode}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


@pytest.mark.parametrize("kind", ["tmpfs", "bind"])
def test_out_a_mount_point_is_staged_inside_it_and_updated_file_by_file(small_input, tmp_path, tmpfs, bind_mount, kind):
    """--out a file system of its own (a tmpfs), or a bind mount (a container's volume): a rename from beside it
    crosses mounts (EXDEV: a traceback after the commit, a half-written csf_leak/ folder) and it cannot become a
    symlink. The run stages inside it and moves the files in one by one; nothing of the staging is left."""
    out, wh = tmpfs(16 * 1024) if kind == "tmpfs" else bind_mount(), tmp_path / "wh.duckdb"
    first = audit(small_input, out, wh)
    assert first.returncode == 0, first.stderr
    published_names = ["csf_leak", "index.html", "low_back_pain", "run.json"]
    assert not out.is_symlink() and sorted(p.name for p in out.iterdir()) == published_names
    # nothing staged beside it: only the lock of --out (docs/SCHEDULING.md, Locks)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [f".{out.name}.lock"]
    published = files(out)
    assert json.loads(published["run.json"])["files"].keys() == {k for k in published if not k.endswith("run.json")}
    again = audit(small_input, out, wh)  # the same inputs: the same data files, the run.json of the new run
    assert again.returncode == 0, again.stderr
    republished = files(out)
    assert republished.keys() == published.keys()
    for name in ("csf_leak/audited_orders.csv", "csf_leak/cases.csv", "csf_leak/metrics.csv", "csf_leak/load_ledger.csv"):
        assert republished[name] == published[name], name
    assert json.loads(republished["run.json"])["run_id"] != json.loads(published["run.json"])["run_id"]
    # a run killed mid-render leaves its staging folder inside --out (hidden), the outputs as they were; the
    # next run removes it
    fault = {**KEY, "ORDER_AUDIT_FAULT": "mid_render"}
    killed = _run_cli("run", "--input", small_input, "--out", out, "--warehouse", wh, "--no-validate", env=fault)
    assert killed.returncode == -9, killed.stderr
    (staging,) = [p.name for p in out.iterdir() if p.name not in published_names]
    assert re.fullmatch(rf"\.{re.escape(out.name)}\.staging-\d+", staging), staging
    assert {k: v for k, v in files(out).items() if not k.startswith(staging)} == republished
    assert audit(small_input, out, wh).returncode == 0
    assert sorted(p.name for p in out.iterdir()) == published_names


def _usage(folders) -> int:
    """Bytes the files under ``folders`` take on their disk (blocks, as a full disk counts them)."""
    return sum(p.stat().st_blocks * 512 for folder in folders for p in [folder, *folder.rglob("*")])


def test_disk_full_part_way_through_a_backfill_says_which_months_it_published(small_input, tmp_path, tmpfs):
    """A backfill publishes month by month: the line said 'the previous outputs are unchanged' when the months
    before the failure were already out. It names them; each month folder is whole, the rest as it was."""
    disk = tmpfs(8 * 1024)
    out, wh = disk / "reports", tmp_path / "wh.duckdb"
    first = run_cli(
        "run", "--input", small_input, "--out", out, "--warehouse", wh, "--from", "2025-06", "--to", "2025-07", "--quiet"
    )
    assert first.returncode == 0, first.stderr
    before = {m: files(out / a / m) for a in ("csf_leak", "low_back_pain") for m in ("2025-06", "2025-07")}
    empty_month = _usage([(out / a / "2025-07").resolve() for a in ("csf_leak", "low_back_pain")])
    # room for one more empty month (both audits' folders) and a quarter: the second month of the next run fails
    filler = fill(disk, leave_kib=empty_month * 5 // 4 // 1024)
    backfill = ["run", "--warehouse", wh, "--out", out, "--from", "2025-08", "--to", "2025-09"]
    line = error_line(run_cli(*backfill, "--quiet"))
    assert "No space left on device" in line, line
    assert (
        "this run published 2 month folders before it (csf_leak/2025-08, low_back_pain/2025-08), the others are "
        "unchanged and the warehouse already holds this run's data" in line
    ), line
    new_run = json.loads((out / "csf_leak" / "2025-08" / "run.json").read_text())["run_id"]
    assert json.loads((out / "low_back_pain" / "2025-08" / "run.json").read_text())["run_id"] == new_run
    assert not (out / "csf_leak" / "2025-09").exists() and not (out / "low_back_pain" / "2025-09").exists()
    assert {m: files(out / a / m) for a in ("csf_leak", "low_back_pain") for m in ("2025-06", "2025-07")} == before
    leftovers = [p.name for a in ("csf_leak", "low_back_pain") for p in (out / a).iterdir() if "staging" in p.name]
    assert leftovers == []
    filler.unlink()
    catch_up = shlex.split(line.split("`")[1])
    assert catch_up[1:] == [str(x) for x in backfill]
    assert run_cli(*catch_up[1:], "--quiet").returncode == 0
    assert (out / "csf_leak" / "2025-09" / "run.json").is_file()


@pytest.mark.parametrize(("warehouse", "room_kib"), [("kept", 0), ("new", 0), ("new", 8)])
def test_a_full_warehouse_disk_before_the_run_is_on_record_is_one_line(small_input, tmp_path, tmpfs, warehouse, room_kib):
    """The warehouse's disk full to the last byte: recording the run failed with DuckDB's TransactionException (a
    traceback), and a new warehouse's lock file with a bare 'No space left on device'; with room for the lock
    only, the new warehouse's first 4 KB were left, which every later run refused as a damaged file to restore
    from a backup. One line naming the file, exit 1, nothing changed; once there is room the same command runs."""
    disk = tmpfs(64 * 1024)  # room for the warehouse and a second run's rebuild
    out, wh = tmp_path / "reports", disk / ("wh.duckdb" if warehouse == "kept" else "new.duckdb")
    assert audit(small_input, out, disk / "wh.duckdb").returncode == 0
    before, kept = files(out), (disk / "wh.duckdb").read_bytes()
    filler = fill(disk, leave_kib=room_kib)
    line = error_line(audit(small_input, out, wh))
    if room_kib:
        assert line == (
            f'order-audit: error: --warehouse {wh}: could not write (IO Error: Could not write file "{wh}": No space '
            "left on device); nothing was changed: free space or fix the folder, then run again"
        )
        assert not wh.exists()
    elif warehouse == "kept":
        assert line == (
            'order-audit: error: could not write (TransactionContext Error: Failed to commit: Could not write file "'
            f'{disk}/wh.duckdb.wal": No space left on device); nothing was changed: free space or fix the folder, then run again'
        )
    else:
        assert line == (
            f"order-audit: error: --warehouse {wh}: could not write its lock file {wh}.lock (No space left on device); "
            "nothing was changed: free space or fix the folder, then run again"
        )
    assert files(out) == before and (disk / "wh.duckdb").read_bytes() == kept
    filler.unlink()
    assert audit(small_input, out, wh).returncode == 0


def test_out_whose_parent_takes_no_new_files_is_staged_inside_it(small_input, tmp_path):
    """A service account owns /srv/reports but not /srv: the run stopped before any work ('cannot write in /srv')
    as it staged beside --out; it stages inside it now, and keeps its lock there, and updates it file by file.
    As root, the run goes without the capability to override file permissions (setpriv), /srv being nobody's."""
    srv = tmp_path / "srv"
    out = srv / "reports"
    out.mkdir(parents=True)
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("no setpriv to run without root's file permission override")
        os.chown(srv, 65534, -1)
        drop = "-dac_override,-dac_read_search"
        prefix = ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}"]
    else:
        srv.chmod(0o555)
    probe = subprocess.run([*prefix, sys.executable, "-c", f"import os, sys; sys.exit(os.access({str(srv)!r}, os.W_OK))"])
    if probe.returncode != 0:
        pytest.skip("this machine lets the run write in a folder it does not own")

    def run() -> subprocess.CompletedProcess:
        args = ["run", "--input", small_input, "--out", out, "--warehouse", tmp_path / "wh.duckdb", "--no-validate", "--quiet"]
        command = [*prefix, sys.executable, "-m", "pipeline", *map(str, args)]
        return subprocess.run(command, cwd=ROOT, env={**os.environ, **KEY}, capture_output=True, text=True)

    for _ in range(2):
        result = run()
        assert result.returncode == 0, result.stderr
        assert sorted(p.name for p in out.iterdir()) == [".reports.lock", "csf_leak", "index.html", "low_back_pain", "run.json"]
        assert [p.name for p in srv.iterdir()] == ["reports"]
    srv.chmod(0o755)


def test_an_empty_out_the_job_cannot_write_stops_the_run_before_any_work(small_input, tmp_path):
    """An existing empty --out the job may not write in (its parent it may): the run parsed, gated and merged into the
    warehouse, and only at publication stopped, 'the warehouse already holds this run's data, ahead of the published
    reports' (a plain folder, even an empty one, is updated file by file). Now one line before any parsing, exit 1,
    and the warehouse is never made. As root, without the capability to override file permissions (setpriv)."""
    out, wh = tmp_path / "reports", tmp_path / "wh" / "wh.duckdb"
    out.mkdir()
    out.chmod(0o555)
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("no setpriv to run without root's file permission override")
        drop = "-dac_override,-dac_read_search"
        prefix = ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}"]
    probe = subprocess.run([*prefix, sys.executable, "-c", f"import os, sys; sys.exit(os.access({str(out)!r}, os.W_OK))"])
    if probe.returncode != 0:
        pytest.skip("this machine lets the run write in a folder it may not")
    args = ["run", "--input", small_input, "--out", out, "--warehouse", wh, "--no-validate"]
    command = [*prefix, sys.executable, "-m", "pipeline", *map(str, args)]
    result = subprocess.run(command, cwd=ROOT, env={**os.environ, **KEY}, capture_output=True, text=True)
    out.chmod(0o755)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"order-audit: error: --out {out}: cannot write in {out} (no permission to write there); choose another path or "
        "fix the folder"
    )
    assert "parse" not in result.stderr and not wh.exists() and list(out.iterdir()) == []


@pytest.mark.parametrize("room_kib", [64, 8])
def test_a_full_temporary_folder_is_named_in_the_one_line(small_input, tmp_path, tmpfs, room_kib):
    """A run without --warehouse keeps its throw-away warehouse and parsed extract in the temporary folder. With that
    folder's disk full, Python's write names no file: the line said 'could not write (No space left on device) ...
    fix the folder', and the operator was left to guess which folder of the machine's was full; with less room,
    DuckDB's words named a '--warehouse' the job never gave."""
    temp = tmpfs(16 * 1024)
    filler = fill(temp, leave_kib=room_kib)  # room for Python's test file (none: it takes /tmp), not for the run
    out = tmp_path / "reports"
    r = _run_cli("run", "--input", small_input, "--out", out, "--no-validate", "--quiet", env={**KEY, "TMPDIR": str(temp)})
    line = error_line(r)
    if room_kib == 64:  # the scratch folder's first file
        assert line == (
            f"order-audit: error: could not write in the temporary folder {temp} (No space left on device); nothing was "
            "changed: free space or fix the folder, then run again"
        )
    else:  # the throw-away warehouse's first pages
        assert line.startswith(
            f"order-audit: error: the run's throw-away warehouse in the temporary folder {temp}: could not write "
        ), line
        assert "--warehouse" not in line and line.endswith("nothing was changed: free space or fix the folder, then run again")
    assert not out.exists() and not out.is_symlink()
    filler.unlink()
    again = _run_cli("run", "--input", small_input, "--out", out, "--no-validate", "--quiet", env={**KEY, "TMPDIR": str(temp)})
    assert again.returncode == 0, again.stderr


def test_a_checkpoint_the_disk_refuses_after_the_commit_says_the_data_is_held(tmp_path):
    """The scheduling review: a warehouse whose file could not grow as DuckDB wrote the committed data from its log
    into it (the checkpoint after the commit) said "nothing was changed", yet the rerun found its delivery 'already
    loaded'. The line says the warehouse holds the data and gives the command that publishes; that command, once
    there is room, publishes the month with the delivery's orders. A file size limit (RLIMIT_FSIZE, below the
    warehouse's size: its log still grows from 0) stands in for the full disk."""
    import resource

    from conftest import write_july_input, write_small_input

    wh, out = tmp_path / "wh.duckdb", tmp_path / "reports"
    assert audit(write_small_input(tmp_path / "june"), out, wh).returncode == 0
    before = files(out)
    limit = wh.stat().st_size // 3  # the checkpoint writes past it; the log of a small delivery does not reach it

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    july = write_july_input(tmp_path / "july")
    args = ["run", "--input", july, "--out", out, "--warehouse", wh, "--no-validate", "--quiet"]
    # a process of its own: the limit is the process's, not the test server's
    refused = subprocess.run(
        [sys.executable, "-m", "pipeline", *map(str, args)],
        capture_output=True, text=True, env={**os.environ, **KEY}, preexec_fn=small_files, cwd=ROOT,
    )  # fmt: skip
    line = error_line(refused)
    assert line.startswith(f"order-audit: error: could not write in {tmp_path} (the warehouse's folder) as DuckDB "
                           "checkpointed this run's committed data (FATAL Error: Failed to create checkpoint"), line  # fmt: skip
    # the run's record says 'after the warehouse commit' once (it said it twice, the line repeating the prefix)
    with duckdb.connect(str(wh), read_only=True) as con:
        (error,) = [e for (e,) in con.execute("SELECT error FROM audit_runs WHERE status = 'failed'").fetchall()]
    assert error.startswith("after the warehouse commit: could not write in ") and error.count("commit") == 2, error
    assert line.endswith(f"the outputs are as they were and the warehouse holds the data: free space, then publish with "
                         f"`order-audit run --warehouse {wh} --out {out}`"), line  # fmt: skip
    assert files(out) == before
    assert run_cli(*shlex.split(line.split("`")[1])[1:], "--quiet").returncode == 0
    orders = pl.read_csv(out / "csf_leak" / "audited_orders.csv", infer_schema=False)
    assert "O71" in set(orders["order_id"])  # July's order, from the data the refused run committed
