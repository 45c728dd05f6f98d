"""A library's report of the stop the run asked for never reaches the log; its other errors do, in the log's format.

The CI run of 2026-12-02 caught py4j, cut off mid-command by a scheduler's SIGTERM, logging "Exception occurred
while shutting down connection" with a BrokenPipeError raised while handling the stop: a JSON line carrying a
traceback amid the run's JSON lines (test_spark_engine's SIGTERM test, one run in two dozen). Here the same
records, made in this process as py4j makes them.
"""

from __future__ import annotations

import json
import logging
import signal

import pytest

from pipeline import errors, logs


@pytest.fixture
def stderr(capsys):
    """What the log wrote to stderr (``setup_logging`` takes capsys' stream); the logging set-up put back after."""
    saved = {name: (lg.handlers[:], lg.level, lg.propagate) for name, lg in (("", logging.root), ("pipeline", logs.log))}
    yield lambda: capsys.readouterr().err
    for name, (handlers, level, propagate) in saved.items():
        lg = logging.getLogger(name or None)
        lg.handlers[:], lg.propagate = handlers, propagate
        lg.setLevel(level)


@pytest.fixture
def stopped(monkeypatch):
    monkeypatch.setattr(errors, "_stop_signals", [signal.SIGTERM])


def _py4j_shutdown_error() -> None:
    """py4j's ClientServerConnection.shutdown_socket after the stop cut its command short."""
    try:
        try:
            raise errors.Terminated()
        except errors.Terminated:
            raise BrokenPipeError(32, "Broken pipe")  # noqa: B904 (a library's clean-up, as py4j's)
    except Exception:
        logging.getLogger("py4j.clientserver").exception("Exception occurred while shutting down connection")


def _py4j_send_interrupted() -> None:
    try:
        raise errors.Terminated()
    except KeyboardInterrupt:
        logging.getLogger("py4j.java_gateway").exception("KeyboardInterrupt while sending command.")


def _library_error() -> None:
    try:
        raise BrokenPipeError(32, "Broken pipe")
    except Exception:
        logging.getLogger("py4j.clientserver").exception("Exception occurred while shutting down connection")


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize("report", [_py4j_shutdown_error, _py4j_send_interrupted])
def test_a_librarys_report_of_the_stop_or_of_what_it_broke_is_dropped(stderr, stopped, fmt, report):
    logs.setup_logging(fmt)
    report()
    assert stderr() == ""


@pytest.mark.parametrize("report", [_py4j_shutdown_error, _library_error])
def test_without_a_stop_a_librarys_error_is_one_line_of_the_logs_format(stderr, report):
    logs.setup_logging("text")
    report()
    (line,) = stderr().splitlines()
    assert line == (
        "order-audit: py4j.clientserver: Exception occurred while shutting down connection "
        "(BrokenPipeError: [Errno 32] Broken pipe)"
    )
    logs.setup_logging("json")
    report()
    (line,) = stderr().splitlines()
    record = json.loads(line)
    assert (record["level"], record["logger"]) == ("error", "py4j.clientserver")
    assert record["exception"].endswith("BrokenPipeError: [Errno 32] Broken pipe")


def test_while_stopping_an_error_the_stop_did_not_raise_is_still_logged(stderr, stopped):
    logs.setup_logging("text")
    _library_error()
    assert "BrokenPipeError" in stderr()


def test_a_chain_that_loops_ends(stderr, stopped):
    first, second = ValueError("a"), ValueError("b")
    first.__context__, second.__context__ = second, first
    logs.setup_logging("text")
    try:
        raise first
    except ValueError:
        logging.getLogger("somelib").exception("failed")
    assert "somelib: failed (ValueError: a)" in stderr()
