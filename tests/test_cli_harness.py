"""The tests' way of running the CLI (conftest.run_cli) forks each command from a warm interpreter (cli_child): a
forked command must be the real command, byte for byte, in what it prints and how it exits."""

from __future__ import annotations

import os
import re

import conftest
import pytest
from conftest import run_cli

from benchmarks.engine_compare import data_outputs

REAL = {"ORDER_AUDIT_TEST_FORK": "0"}

# the suite run with every command a real process (the check of this harness itself) forks none to compare
pytestmark = pytest.mark.skipif(
    os.environ.get("ORDER_AUDIT_TEST_FORK", "1") == "0", reason="ORDER_AUDIT_TEST_FORK=0: no command is forked"
)


def _same(args: tuple) -> None:
    forked = run_cli(*args)
    assert conftest._CLI_SERVER, "run_cli did not fork the command"
    real = run_cli(*args, env=REAL)
    assert (forked.returncode, forked.stdout, forked.stderr) == (real.returncode, real.stdout, real.stderr)


def test_a_forked_command_prints_and_exits_as_the_real_one(small_input):
    _same(("validate", "--input", small_input))
    _same(("audits",))


def test_a_forked_run_gates_and_publishes_as_the_real_one(small_input, tmp_path):
    # the gate validates in a worker the forked run forks (cli_child), the real one spawns
    forked, real = tmp_path / "forked", tmp_path / "real"
    done = {}
    for name, env in (("forked", None), ("real", REAL)):
        out = tmp_path / name
        proc = run_cli("run", "--input", small_input, "--out", out, "--warehouse", tmp_path / f"{name}.duckdb", env=env)
        assert proc.returncode == 0, proc.stderr
        done[name] = re.sub(r"run \d{8}T\d{6}Z-[0-9a-f]+|\d+\.\d+ s\b", "#", proc.stderr)  # run ids, timings
    assert done["forked"] == done["real"]
    assert "data-quality" in done["real"]  # the gate ran, and said what it found
    assert data_outputs(forked) == data_outputs(real) != {}


def test_a_forked_command_that_fails_exits_with_its_code_and_one_line(tmp_path):
    args = ("validate", "--input", tmp_path / "no-such-folder")
    _same(args)
    failed = run_cli(*args)
    assert failed.returncode == 2 and len(failed.stderr.splitlines()) == 1, failed.stderr
    assert "Traceback" not in failed.stderr


def test_a_command_given_its_own_environment_is_a_real_process(tmp_path):
    # TMPDIR is read by the tempfile module when it is first asked, which the server did long before
    args = ("validate", "--input", tmp_path / "no-such-folder")
    started = conftest._start_cli([str(a) for a in args], {"TMPDIR": str(tmp_path)})
    try:
        assert not isinstance(started, conftest._ForkedCli)
    finally:
        started.communicate(timeout=600)
