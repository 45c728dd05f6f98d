"""The command line as a scheduler sees it: exit codes, stderr logs, quiet/verbose, progress bar."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys

import pytest
from conftest import ORDER_HEADER, ROOT, write_csv
from conftest import run_cli as _run_cli

KEY = {"ORDER_AUDIT_PSEUDONYM_KEY": "cli-test-key"}


def run_cli(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    return _run_cli(*args, env={**KEY, **(env or {})})


def expect(result: subprocess.CompletedProcess, code: int, text: str | None = None) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    if text is not None:
        assert text in result.stderr, result.stderr


def test_exit_0_json_logs_one_object_per_line(small_input, tmp_path):
    result = run_cli(
        "run",
        "--input",
        small_input,
        "--out",
        tmp_path / "out",
        "--warehouse",
        tmp_path / "wh.duckdb",
        "--no-validate",
        "--log-format",
        "json",
    )
    expect(result, 0)
    events = [json.loads(line) for line in result.stderr.splitlines()]  # every line is one JSON object
    assert all("event" in e and "level" in e and "time" in e for e in events)
    done_stages = [e for e in events if e["event"] == "stage_done"]
    # one name per stage, in the order they run (no "load: done" twice); a per-audit stage names its audit
    # (the input has diagnoses: both shipped audits run)
    assert [(e["stage"], e.get("audit")) for e in done_stages] == [
        ("parse", None), ("merge", None), ("models", None), ("marts", None),
        ("measure", "csf_leak"), ("measure", "low_back_pain"), ("render", None),
    ]  # fmt: skip
    assert all(isinstance(e["seconds"], float | int) for e in done_stages)
    (done,) = [e for e in events if e["event"] == "run_done"]
    assert done["cases"] == 2 and done["audited_orders"] == 4 and done["run_id"]
    # the line people read names the audits: each audit's own line counts its unit (cases, episodes), which do not add
    assert done["message"] == f"run {done['run_id']} done (csf_leak, low_back_pain)"
    # each count through wording.counted, in the number it takes ("1 episodes, 1 audited orders" before)
    assert [e["message"] for e in events if e["event"] == "audit_done"] == [
        "csf_leak: 2 cases, 4 audited orders", "low_back_pain: 0 episodes, 0 audited orders",
    ]  # fmt: skip
    assert result.stdout == ""


def test_stage_names_are_unique_with_the_gate(small_input, tmp_path):
    result = run_cli("run", "--input", small_input, "--out", tmp_path / "out", "--log-format", "json")
    expect(result, 0)
    done = [json.loads(line) for line in result.stderr.splitlines() if '"stage_done"' in line]
    stages = [(e["stage"], e.get("audit")) for e in done]
    assert stages == [
        ("parse", None), ("gate", None), ("merge", None), ("models", None), ("marts", None), ("output_checks", None),
        ("measure", "csf_leak"), ("measure", "low_back_pain"), ("render", None),
    ]  # fmt: skip
    assert len(set(stages)) == len(stages)


def test_stage_names_are_unique_in_a_backfill(small_input, tmp_path):
    """A backfill renders each audit's month apart: the two render lines of a month were alike (no audit named)."""
    args = ("--out", tmp_path / "out", "--from", "2025-05", "--to", "2025-06", "--no-validate", "--log-format", "json")
    result = run_cli("run", "--input", small_input, *args)
    expect(result, 0)
    done = [json.loads(line) for line in result.stderr.splitlines() if '"stage_done"' in line]
    stages = [(e["stage"], e.get("audit"), e.get("period")) for e in done]
    assert [s for s in stages if s[0] == "render"] == [
        ("render", a, m) for m in ("2025-05", "2025-06") for a in ("csf_leak", "low_back_pain")
    ]
    assert len(set(stages)) == len(stages)


def test_exit_0_with_the_gate_on_and_quiet_prints_nothing(small_input, tmp_path):
    result = run_cli("run", "--input", small_input, "--out", tmp_path / "out", "--warehouse", tmp_path / "wh.duckdb", "--quiet")
    expect(result, 0)
    assert result.stderr == "" and result.stdout == ""
    info = json.loads((tmp_path / "out" / "run.json").read_text())
    assert info["data_quality"]  # the gate ran
    runs = run_cli("runs", "--warehouse", tmp_path / "wh.duckdb")
    expect(runs, 0)
    assert "succeeded" in runs.stdout
    # each audit's count in its own unit, as the run's log gives it (the low back pain audit's were "cases")
    assert "csf_leak all: 2 cases/" in runs.stdout and "low_back_pain all: 0 episodes/0 orders" in runs.stdout, runs.stdout


@pytest.mark.parametrize(
    "args, text",
    [
        (["--month", "2026-13"], "2026-13"),
        (["--month", "2026-10", "--from", "2026-01", "--to", "2026-02"], "either --month or --from/--to"),
        (["--from", "2026-03", "--to", "2026-01"], "after --to"),
        (["--from", "2026-03"], "go together"),
    ],
)
def test_exit_1_usage(small_input, tmp_path, args, text):
    expect(run_cli("run", "--input", small_input, "--out", tmp_path / "out", "--no-validate", *args), 1, text)
    assert not (tmp_path / "out").exists()


def test_exit_1_unknown_config_key_and_unknown_run(small_input, tmp_path):
    cfg = tmp_path / "audit.toml"
    cfg.write_text("[reporting]\nmin_cell_count = 5\ntrend_monthz = 12\n")
    expect(run_cli("run", "--input", small_input, "--out", tmp_path / "out", "--config", cfg, "--no-validate"), 1, "trend_monthz")
    wh = tmp_path / "wh.duckdb"
    expect(run_cli("run", "--input", small_input, "--out", tmp_path / "out", "--warehouse", wh, "--no-validate", "--quiet"), 0)
    expect(run_cli("diff", "NOPE-1", "NOPE-2", "--warehouse", wh), 1, "no run NOPE-1")


COLUMNS_SHAPE = '[columns.procedures]: write each column as contract_name = "Extract name"'


@pytest.mark.parametrize(
    "setting, text",
    [
        ("site_timezone = 5", 'site_timezone: expected a text in quotes (site_timezone = "..."), got 5'),
        ('warehouse = ["wh.duckdb"]', "warehouse: expected a text in quotes (warehouse = \"...\"), got ['wh.duckdb']"),
        ("local_code_map = 3", 'local_code_map: expected a text in quotes (local_code_map = "..."), got 3'),
        ("[privacy]\nkey_file = 3", '[privacy].key_file: expected a text in quotes (key_file = "..."), got 3'),
        ("[spark]\nmaster = 3", '[spark].master: expected a text in quotes (master = "..."), got 3'),
        ('[columns]\nprocedures = "MRN"', COLUMNS_SHAPE + ", got 'MRN'"),
        ("[columns.procedures]\npatient_id = 3", COLUMNS_SHAPE + ", got {'patient_id': 3}"),
        ("[reporting]\ntrend_months = 1.5", "[reporting].trend_months: expected a whole number, 0 or more, got 1.5"),
        ("[reporting]\npaper = 3", '[reporting].paper: expected a text in quotes (paper = "..."), got 3'),
        ('[reporting]\npaper = "legal"', "[reporting] paper = 'legal'; one of 'a4', 'letter'"),
    ],
)
def test_exit_1_config_value_of_the_wrong_type(small_input, tmp_path, setting, text):
    """A setting of the wrong type is one line naming it, exit 1, before any work: these ended in a traceback
    (a number where a path or zone goes), in exit 2 blaming the extract (a column named 3), or were cut
    without a word (1.5 months read as 1)."""
    cfg = tmp_path / "audit.toml"
    cfg.write_text(setting + "\n")
    result = run_cli("validate", "--input", small_input, "--config", cfg)
    assert result.returncode == 1 and result.stderr.splitlines() == [f"order-audit: error: {cfg}: {text}"], result.stderr


def test_exit_2_unreadable_input(small_input, tmp_path):
    (small_input / "procedures.csv").write_bytes(b"\x00\x01garbage")
    expect(run_cli("run", "--input", small_input, "--out", tmp_path / "out", "--no-validate"), 2, "procedures")
    expect(
        run_cli("run", "--input", tmp_path / "nowhere", "--out", tmp_path / "out", "--no-validate"), 2, "input folder not found"
    )
    # what to do names every form a run reads, not CSV and Parquet alone
    assert run_cli("validate", "--input", tmp_path / "nowhere").stderr.endswith(
        "input folder not found. Pass --input the folder holding the extracts (procedures and imaging_orders as CSV,"
        " text, Parquet or Excel files, or a FHIR Bulk Data export)\n"
    )


@pytest.mark.parametrize("code", [2, 3])
def test_json_logs_end_with_the_error_as_json(small_input, tmp_path, code):
    """With --log-format json every stderr line is a JSON object, the error that ends the run too (event ``error``
    with its exit code): a scheduler that ships the log as JSON lines keeps the one line that matters."""
    if code == 2:
        (small_input / "procedures.csv").write_bytes(b"\x00\x01garbage")
    else:
        write_csv(small_input / "imaging_orders.csv", [c for c in ORDER_HEADER if c != "order_code"], [])
    result = run_cli("run", "--input", small_input, "--out", tmp_path / "out", "--no-validate", "--log-format", "json")
    expect(result, code)
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert (lines[-1]["event"], lines[-1]["level"], lines[-1]["exit_code"]) == ("error", "error", code)
    assert lines[-1]["message"].startswith("error: ")
    assert ("procedures.csv" if code == 2 else "order_code") in lines[-1]["message"]
    text = run_cli("run", "--input", small_input, "--out", tmp_path / "out", "--no-validate")
    assert text.stderr.splitlines()[-1] == "order-audit: " + lines[-1]["message"]  # the same words as plain text


BUG = """
import sys
import pipeline.synth
from pipeline import cli

def broken(*args, **kwargs):
    raise RuntimeError("a bug in the generator")

pipeline.synth.generate = broken  # what no expected failure is: a bug
cli.main(sys.argv[1:])
"""


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_bug_exits_70_with_its_traceback_not_1(tmp_path, log_format):
    """docs/SCHEDULING.md: a bug (any other code) prints a traceback and alerts the maintainers, while 1 tells the
    operator to fix the job. An unexpected exception exited 1 (Python's own traceback), and its lines were no JSON."""
    args = ["synth", "--patients", "1", "--out", str(tmp_path / "s"), "--log-format", log_format]
    result = subprocess.run([sys.executable, "-c", BUG, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 70, (result.returncode, result.stderr)
    message = "error: an unexpected error, a bug in order-audit (RuntimeError: a bug in the generator); report it"
    if log_format == "json":
        (line,) = [json.loads(line) for line in result.stderr.splitlines()]
        assert (line["event"], line["exit_code"]) == ("error", 70)
        assert line["message"].startswith(message)
        assert line["traceback"].startswith("Traceback") and "a bug in the generator" in line["traceback"]
    else:
        assert result.stderr.startswith("Traceback (most recent call last):")
        assert result.stderr.splitlines()[-1].startswith("order-audit: " + message)


def test_exit_3_missing_required_column_touches_nothing(small_input, tmp_path):
    """A missing column is found from the header, before the warehouse or its history is opened."""
    wh = tmp_path / "wh.duckdb"
    expect(run_cli("run", "--input", small_input, "--out", tmp_path / "out", "--warehouse", wh, "--no-validate"), 0)
    before = json.loads(run_cli("runs", "--warehouse", wh, "--json").stdout)
    write_csv(
        small_input / "imaging_orders.csv",
        [c for c in ORDER_HEADER if c != "order_code"],
        [["O1", "MRN-1", "2025-06-06 10:00:00", "Neurology", "G97.1", "completed"]],
    )
    expect(
        run_cli("run", "--input", small_input, "--out", tmp_path / "out2", "--warehouse", wh, "--no-validate"), 3, "order_code"
    )
    assert not (tmp_path / "out2").exists()
    assert json.loads(run_cli("runs", "--warehouse", wh, "--json").stdout) == before


def test_progress_bar_only_on_a_terminal(small_input, tmp_path):
    """--from/--to on a terminal draws a bar over the months; through a pipe it logs one line per month."""
    args = [
        sys.executable,
        "-m",
        "pipeline",
        "run",
        "--input",
        str(small_input),
        "--out",
        str(tmp_path / "bf"),
        "--warehouse",
        str(tmp_path / "wh.duckdb"),
        "--no-validate",
        "--from",
        "2025-05",
        "--to",
        "2025-06",
    ]
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        args, cwd=ROOT, env={**os.environ, **KEY}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave
    )
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            break
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(master)
    tty_err = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, tty_err
    assert "order-audit: months" in tty_err and "2/2" in tty_err, tty_err
    assert "month 2025-06 done" not in tty_err  # the bar replaces the per-month lines

    piped = run_cli(
        "run",
        "--input",
        small_input,
        "--out",
        tmp_path / "bf2",
        "--warehouse",
        tmp_path / "wh.duckdb",
        "--no-validate",
        "--from",
        "2025-05",
        "--to",
        "2025-06",
    )
    expect(piped, 0)
    assert "order-audit: months" not in piped.stderr and "\r" not in piped.stderr
    assert "month 2025-05 done (1/2)" in piped.stderr and "month 2025-06 done (2/2)" in piped.stderr
    # the input has diagnoses: both shipped audits run, each with a folder per month
    assert sorted(p.name for p in (tmp_path / "bf2").iterdir() if not p.name.startswith(".")) == [
        "csf_leak",
        "index.html",
        "low_back_pain",
    ]
    for audit_id in ("csf_leak", "low_back_pain"):
        assert sorted(p.name for p in (tmp_path / "bf2" / audit_id).iterdir() if not p.name.startswith(".")) == [
            "2025-05",
            "2025-06",
            "metrics.csv",  # the backfill's one feed, its last month's, beside the months
            "metrics.json",
            "metrics.parquet",
        ]


def test_runs_and_diff_help_say_what_the_run_ids_are_and_where_to_find_them():
    diff = " ".join(run_cli("diff", "--help").stdout.split())  # click wraps the text
    assert "RUN_A and RUN_B are run ids" in diff and "order-audit runs --warehouse FILE" in diff and "run.json" in diff
    assert "earlier" in diff and "later" in diff
    runs = " ".join(run_cli("runs", "--help").stdout.split())
    assert "order-audit diff" in runs and "provisional" in runs and "run.json" in runs


def test_a_moved_setting_says_where_it_went(tmp_path, small_input):
    config = tmp_path / "old.toml"
    config.write_text("[reporting]\nmin_cell_count = 11\n")
    result = run_cli("run", "--input", small_input, "--out", tmp_path / "out", "--config", config, "--no-validate")
    assert result.returncode == 1
    assert "min_cell_count moved: write it as [feed] min_cell_count" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_the_cli_loads_neither_duckdb_nor_polars_before_run_starts_its_workers():
    """`run` starts its worker process (Great Expectations) first thing; the command line module itself
    imports neither DuckDB nor Polars (0.2 s), so the worker's import begins that much sooner."""
    code = "import sys, pipeline.cli; print(sorted(m for m in ('duckdb', 'polars') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--bogus", "--log-format", "json"], "error: No such option '--bogus'."),
        (["--month", "2026-13", "--log-format=json"], "error: Invalid value for '--month': '2026-13' is not a month"),
        (["--from", "2026-05", "--to", "2026-02", "--log-format", "json"], "error: --from 2026-05 is after --to 2026-02"),
    ],
)
def test_a_bad_option_with_the_json_log_is_one_json_error_line(tmp_path, args, said):
    """A bad option or value stops the command before its --log-format is read: click printed four plain lines of
    usage into a log a scheduler parses line by line. With --log-format json it is one error event, exit 1."""
    result = run_cli("run", "--input", tmp_path, "--out", tmp_path / "out", *args)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    event = json.loads(line)
    assert (event["event"], event["exit_code"], event["level"]) == ("error", 1, "error")
    assert event["message"].startswith(said) and event["message"].endswith("(see order-audit run --help)")
    # a plain log: one line too (click's four lines of usage, 'Usage: order-audit run ...', before 2026-12-04)
    plain = run_cli("run", "--input", tmp_path, "--out", tmp_path / "out", "--bogus")
    assert plain.returncode == 1 and plain.stderr.splitlines() == [
        "order-audit: error: No such option '--bogus'. (Did you mean one of: '--out', '--verbose'?) (see order-audit run --help)"
    ], plain.stderr
    nothing = run_cli("nosuchcommand")
    assert nothing.returncode == 1 and nothing.stderr.splitlines() == [
        "order-audit: error: No such command 'nosuchcommand'. (see order-audit --help)"
    ], nothing.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("run", "--input", "IN", "--out", "OUT", "--site-timezone", "X\nFAKE LINE"),
        ("run", "--input", "IN", "--out", "OUT", "--config", "/nope\nFAKE.toml"),
        ("runs", "--warehouse", "/tmp/n\nFAKE.duckdb"),
        ("validate", "--input", "IN", "--warehouse", "/tmp/n\nFAKE.duckdb"),
    ],
    ids=["timezone", "config", "runs-warehouse", "validate-warehouse"],
)
def test_an_error_line_is_one_line_whatever_a_value_quoted_in_it_holds(small_input, tmp_path, args):
    """The hostile review: a line break in a value the error quotes back printed a second line, which a log reader
    took for a line of its own (a value could forge one)."""
    args = [str(small_input) if a == "IN" else str(tmp_path / "out") if a == "OUT" else a for a in args]
    result = run_cli(*args)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("order-audit: error: ") and "\\n" in lines[0], result.stderr


def test_an_error_line_is_one_line_whatever_line_separator_a_value_holds(small_input, tmp_path):
    """The hostile review (2026-12-05): U+2028 and U+2029 (Unicode's line and paragraph separators, not control
    characters) were printed as they are, and Python's splitlines() read the error as two lines."""
    for sep in ("\u2028", "\u2029"):
        result = run_cli("run", "--input", small_input, "--out", tmp_path / "out", "--site-timezone", f"X{sep}FAKE LINE")
        assert result.returncode == 1, result.stderr
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and f"X\\u{ord(sep):04x}FAKE" in lines[0], result.stderr
