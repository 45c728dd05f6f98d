"""What a scheduled job meets besides its data (docs/SCHEDULING.md, "The job's environment"): a JSON log whose every
line parses, whatever the command and however it ends, and a system temporary folder that nothing of ours fills
across a month of nightly runs, SIGKILLs included."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import ROOT, run_cli, write_small_input

from pipeline import ownership
from pipeline.report import pdf


def _json_lines(stderr: str) -> list[dict]:
    """Every line of a --log-format json stderr, parsed (a line that is not JSON fails here), with the documented keys."""
    lines = [json.loads(line) for line in stderr.splitlines()]
    assert all({"time", "level", "logger", "message", "event"} <= set(line) for line in lines), stderr
    return lines


def test_validate_stopped_by_sigterm_ends_143_with_a_json_last_line(tmp_path):
    """A SIGTERM while the gate ran ended `validate` three ways: exit 143; exit 0 with its results (DuckDB turned
    the stop into "Query interrupted", which GX recorded as a check it could not run); or exit 134, the
    interpreter's shutdown aborting the thread still importing GX ("FATAL: exception not rethrown", not JSON)."""
    extract = tmp_path / "extract"
    result = run_cli("synth", "--patients", "300", "--months", "6", "--seed", "7", "--out", extract, "--quiet")
    assert result.returncode == 0, result.stderr
    err = tmp_path / "stderr"
    with err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "validate", "--input", str(extract), "--log-format", "json"],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    started = time.monotonic()
    while "parsed diagnoses" not in err.read_text() and time.monotonic() - started < 120:
        time.sleep(0.05)
    time.sleep(0.5)  # the gate: GX importing on its thread, the SQL checks' queries on theirs
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=120)
    lines = _json_lines(err.read_text())
    assert (proc.returncode, stdout) == (143, ""), err.read_text()
    assert {k: lines[-1][k] for k in ("level", "event", "exit_code")} == {"level": "warning", "event": "error", "exit_code": 143}
    assert lines[-1]["message"] == "stopped by SIGTERM; nothing was changed: run the command again"


def test_validate_logs_no_library_info_line(tmp_path, small_input):
    """GX sets its own logger to info: every `validate` printed 'Created temporary directory /tmp/tmpXXXX for ephemeral
    docs site' (a line of other bytes each time, a temp path in the scheduler's log)."""
    result = run_cli("validate", "--input", small_input, "--log-format", "json")
    assert result.returncode == 0, result.stderr
    # our own lines only: the loader's, and the gate's note on the months it could not compare
    assert {line["logger"] for line in _json_lines(result.stderr)} == {"pipeline", "pipeline.ingest.load"}


def test_runs_and_diff_take_the_log_format_and_give_their_error_as_json(tmp_path, small_input):
    """A job that logs JSON calls `runs --log-format json` too: click refused the option (exit 1, a usage text)."""
    wh = tmp_path / "wh.duckdb"
    assert run_cli("run", "--input", small_input, "--out", tmp_path / "out", "--warehouse", wh, "--no-validate").returncode == 0
    listed = run_cli("runs", "--warehouse", wh, "--json", "--log-format", "json")
    assert listed.returncode == 0 and listed.stderr == "", listed.stderr
    assert [r["status"] for r in json.loads(listed.stdout)] == ["succeeded"]
    unknown = run_cli("diff", "A", "B", "--warehouse", wh, "--log-format", "json")
    assert (unknown.returncode, unknown.stdout) == (1, "")
    [line] = _json_lines(unknown.stderr)
    assert (line["event"], line["exit_code"], line["message"]) == (
        "error",
        1,
        f"error: no run A or B in {wh}; 'order-audit runs' lists the run ids",
    )


def test_runs_and_diff_on_a_warehouse_not_made_yet_say_so_in_one_line_of_the_logs_format(tmp_path):
    """A job's first `runs` before any run, or a mistyped path: click's own "Error: Invalid value for '--warehouse'"
    text, not JSON in a JSON log."""
    missing = tmp_path / "wh.duckdb"
    said = (
        f"error: --warehouse {missing} not found: no run has made it (a run with this --warehouse does); "
        "check the path the job gives"
    )
    for command in (("runs",), ("diff", "A", "B")):
        result = run_cli(*command, "--warehouse", missing, "--log-format", "json")
        assert (result.returncode, result.stdout) == (1, ""), result.stderr
        [line] = _json_lines(result.stderr)
        assert (line["event"], line["exit_code"], line["message"]) == ("error", 1, said)
    result = run_cli("runs", "--warehouse", missing)
    assert (result.returncode, result.stderr) == (1, f"order-audit: {said}\n")
    assert not missing.exists()


def test_a_sigkilled_run_without_warehouse_leaves_its_temp_folder_only_until_the_next_one(tmp_path, monkeypatch):
    """A run without --warehouse keeps its throw-away warehouse, the parsed extract and the gate's file in the system
    temporary folder: a SIGKILL (the OOM killer) left them there for good, one more folder per killed run. The next
    run (or validate, inspect, each for its own) removes those whose process is gone; a live one's, and a folder
    of the same name order-audit did not make, stay."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {"TMPDIR": str(temp)}
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # this process's live folder goes there too
    inp = write_small_input(tmp_path / "in")
    (temp / "order-audit-wh-mine").mkdir()  # a user's folder of the same shape: not ours to delete
    (temp / "order-audit-wh-mine" / "notes.txt").write_text("mine\n")
    with ownership.held_temp_dir("order-audit-wh-") as live:  # a run of this machine, still at work
        killed = run_cli(
            "run", "--input", inp, "--out", tmp_path / "out", "--no-validate", env={**env, "ORDER_AUDIT_FAULT": "after_transform"}
        )
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        [left] = [
            p.name
            for p in temp.iterdir()
            if p.name.startswith("order-audit-wh-") and p.name not in ("order-audit-wh-mine", live.name)
        ]
        assert (temp / left / "warehouse.duckdb").is_file()
        result = run_cli("run", "--input", inp, "--out", tmp_path / "out", "--no-validate", env=env)
        assert result.returncode == 0, result.stderr
        assert f"order-audit: removed {temp / left} (left by a killed order-audit process)" in result.stderr.splitlines()
        assert sorted(p.name for p in temp.iterdir() if p.name.startswith("order-audit-")) == sorted(
            ["order-audit-wh-mine", live.name]
        )
    assert (temp / "order-audit-wh-mine" / "notes.txt").read_text() == "mine\n"
    assert not os.path.exists(live)


def _stopped_after(calls: int, real):
    """``real`` (os.unlink), raising the run's SIGTERM exception at its ``calls``-th call."""
    from pipeline.errors import Terminated

    seen = [0]

    def call(*args, **kwargs):
        seen[0] += 1
        if seen[0] == calls:
            raise Terminated("SIGTERM")
        return real(*args, **kwargs)

    return call


def test_a_temp_folder_whose_removal_a_sigterm_stopped_is_removed_by_the_next_command(tmp_path, monkeypatch):
    """The scheduling review: a SIGTERM 4 ms after run_done stopped shutil.rmtree part-way, after it had deleted the
    mark: a 20 MB throw-away warehouse of raw patient ids was left in the temporary folder, which no later run
    removed (nor named). The mark goes last: stopped at any file, what is left is still order-audit's, and the
    next command removes it."""
    from pipeline.errors import Terminated

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    real_unlink = os.unlink
    for stop_at in range(1, 6):  # the three files, the lock file, the mark
        with pytest.raises(Terminated), ownership.held_temp_dir("order-audit-wh-") as folder:
            for name in ("warehouse.duckdb", "warehouse.duckdb.wal", "gate.duckdb"):
                (folder / name).write_text("patient_id\nMRN-1\n")
            monkeypatch.setattr(os, "unlink", _stopped_after(stop_at, real_unlink))
        monkeypatch.setattr(os, "unlink", real_unlink)
        assert folder.is_dir() and ownership.is_marked(folder), stop_at  # stopped part-way, still known as ours
        with ownership.held_temp_dir("order-audit-wh-") as again:
            assert not folder.exists() and again.is_dir(), stop_at
        assert not again.exists() and list(tmp_path.iterdir()) == [], stop_at


def test_a_scratch_folder_whose_removal_was_stopped_stays_order_audit_s(tmp_path, monkeypatch):
    """The same stop in a warehouse's scratch folder left it unmarked: every later run logged 'left ... in place: it
    was not made by order-audit' about a folder it had made. Stopped at any of its files, it keeps its mark."""
    from pipeline.errors import Terminated

    real_unlink = os.unlink
    for stop_at in range(1, 4):  # two files, one in a folder, and the mark
        scratch = ownership.make_dir(tmp_path / f".wh.duckdb.scratch-{stop_at}")
        (scratch / "rejects.parquet").write_text("x")
        (scratch / "sub").mkdir()
        (scratch / "sub" / "typed.parquet").write_text("x")
        monkeypatch.setattr(os, "unlink", _stopped_after(stop_at, real_unlink))
        with pytest.raises(Terminated):
            ownership.remove(scratch)
        monkeypatch.setattr(os, "unlink", real_unlink)
        assert ownership.is_marked(scratch), stop_at
        assert ownership.remove(scratch) and not scratch.exists(), stop_at


@pytest.mark.skipif(pdf.find_chromium() is None, reason="Chromium is not installed (apt-get install -y chromium)")
def test_a_pdf_run_killed_while_chromium_prints_leaves_its_profile_only_until_the_next_command(tmp_path):
    """A --pdf run SIGKILLed while Chromium printed left the browser's profile (2 MB) in the system temporary folder
    for good; it is marked and held like the run's own folder, so the next command of any kind (here `validate`)
    removes both. The folder's path here is 62 bytes or more: Chromium's lock socket would not fit under it, and a
    --pdf run with such a TMPDIR failed after its warehouse commit ("Chromium stopped before it printed")."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    assert len(str(temp)) >= 62, temp  # Chromium's lock socket does not fit under it
    env = {"TMPDIR": str(temp)}
    inp = write_small_input(tmp_path / "in")
    run = ("run", "--input", inp, "--out", tmp_path / "out", "--month", "2025-06", "--no-validate", "--pdf")
    killed = run_cli(*run, env={**env, "ORDER_AUDIT_FAULT": "mid_pdf"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = sorted(p.name for p in temp.iterdir() if p.name.startswith("order-audit-"))
    assert [name.rsplit("-", 1)[0] for name in left] == [
        "order-audit-chromium",
        "order-audit-wh",
    ], left
    assert (temp / left[0] / "Default").is_dir()  # the browser's profile
    result = run_cli("validate", "--input", inp, env=env)
    assert result.returncode == 0, result.stderr
    removed = [f"order-audit: removed {temp / name} (left by a killed order-audit process)" for name in left]
    assert [line for line in result.stderr.splitlines() if "left by a killed" in line] == removed
    assert not [p for p in temp.iterdir() if p.name.startswith("order-audit-")]


def test_a_folder_whose_mark_cannot_be_written_is_not_left(tmp_path, monkeypatch):
    """A full disk as a staging folder was made: its mark, an empty file, could not be written, and the folder was
    left beside --out (the scheduling review). Removed again, and the error raised as it was."""

    def full(self, *args, **kwargs):
        self.touch()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError, match="No space left"):
        ownership.make_dir(tmp_path / ".out.staging-1")
    with pytest.raises(OSError, match="No space left"):
        ownership.make_temp_dir(".wh.duckdb.scratch-", tmp_path)
    assert list(tmp_path.iterdir()) == []
