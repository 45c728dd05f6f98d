"""Expected failures and their exit codes; cli.py turns them into one line on stderr."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import unicodedata
from collections.abc import Callable, Iterator

EXIT_OK = 0
EXIT_USAGE = 1  # usage or configuration error
EXIT_INPUT = 2  # an input file cannot be read as the data contract says
EXIT_QUALITY_GATE = 3  # a blocking data-quality check failed
EXIT_LOCKED = 4  # another run holds the warehouse
EXIT_BUG = 70  # an unexpected exception: a bug (sysexits' EX_SOFTWARE), told from 1 (fix the job) by the scheduler
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGINT (128 + 2, the shell's convention)
EXIT_TERMINATED = 143  # SIGTERM (128 + 15): a scheduler's stop, `timeout`, systemd


class AuditError(Exception):
    """An error the user can fix; carries its exit code and a one-line message."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str):
        message = bounded(message)
        super().__init__(message)
        self.message = message


LONGEST_WORD = 300  # characters of one word (no white space) a message shows whole


def bounded(message: str) -> str:
    """``message`` with each word longer than LONGEST_WORD cut to its start and its length: a setting or a header
    name of 10 MB (quoted back in the message) made the one line 10 MB long, on a terminal or in a JSON log."""
    if len(message) <= LONGEST_WORD:
        return message
    return re.sub(rf"\S{{{LONGEST_WORD + 1},}}", lambda m: f"{m.group()[:60]}... ({len(m.group()):,} characters)", message)


class ConfigError(AuditError):
    exit_code = EXIT_USAGE


def printable(text: str) -> str:
    """``text`` with control and format characters as escapes (``\\n``, ``\\u202e``): a file name holding a
    line break or a bidi control keeps the error on one line, and shown as it is named. The line and paragraph
    separators (U+2028, U+2029: Zl, Zp, not C) are escaped too: Python's splitlines() and a JavaScript log viewer
    break a line at them (the hostile review, 2026-12-05: `--site-timezone $'X\\u2028FAKE'` printed two lines)."""
    return "".join(
        repr(ch)[1:-1] if unicodedata.category(ch) in _ESCAPED or unicodedata.category(ch)[0] == "C" else ch for ch in text
    )


_ESCAPED = ("Zl", "Zp")  # beside every C category: characters a reader takes for the end of a line


class InputFileError(AuditError):
    """A file-level problem: the run stops before anything is replaced."""

    exit_code = EXIT_INPUT

    def __init__(self, path, problem: str, fix: str, line: int | None = None, column: str | None = None):
        where = printable(str(path))
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column '{column}'"
        super().__init__(f"{where}: {problem}. {fix}")
        self.path, self.line, self.column = str(path), line, column
        self.problem, self.fix = problem, fix

    def rename(self, shown: Callable[[str], str]) -> None:
        """Name the file as the command names its inputs (``inputs.named_within``: relative to --input), here
        and in what `runs` records: the readers raise with the path they opened."""
        named = shown(self.path)
        where = printable(self.path)
        if named != self.path and self.message.startswith(where):
            self.message = printable(named) + self.message[len(where) :]
            self.args = (self.message,)
            self.path = named


@contextlib.contextmanager
def files_named(shown: Callable[[str], str]):
    """An input file's error raised inside names its file as ``shown`` does (relative to --input), in
    every command that reads a folder of extracts (run, validate, inspect)."""
    try:
        yield
    except InputFileError as exc:
        exc.rename(shown)
        raise


class MissingColumnError(InputFileError):
    """A required column is missing: the data-quality gate's schema check, so exit code 3."""

    exit_code = EXIT_QUALITY_GATE


class QualityGateError(AuditError):
    exit_code = EXIT_QUALITY_GATE


class WarehouseLockedError(AuditError):
    exit_code = EXIT_LOCKED


class WriteRefusedError(AuditError):
    """The machine refused a write (disk full, read-only, no permission): fix the machine, run again."""

    exit_code = EXIT_USAGE


# errno values that say the machine, not the data or the code, stopped a write
REFUSED_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO)
_REFUSED_WRITE_TEXTS = tuple(os.strerror(e) for e in REFUSED_WRITE_ERRNOS)


def refused_write(exc: BaseException) -> str | None:
    """Why the OS refused a write, when that is what ``exc`` (or an exception behind it) says; else None.

    DuckDB, Polars and xlsxwriter report the same failures in their own exception types, with
    the OS's text (``No space left on device``) inside their message.
    """
    for e in exceptions_behind(exc):
        if isinstance(e, OSError) and e.errno in REFUSED_WRITE_ERRNOS:
            return f"{e.filename}: {e.strerror}" if e.filename else e.strerror
        text = str(e)
        found = next((t for t in _REFUSED_WRITE_TEXTS if t in text), None)
        if found is not None:
            return " ".join(text.split())[:300]
    return None


def exceptions_behind(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then every exception behind it, each once (a chain can loop): the one it was raised from or while
    handling, and any a library wrapped among its arguments."""
    seen: set[int] = set()
    stack: list = [exc]
    while stack:
        e = stack.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        stack += [e.__cause__, e.__context__, *e.args]


def first_line(exc: object) -> str:
    """The first line of an exception's message (Spark and DuckDB append plans and stacks; py4j hands a Java
    exception over as an object whose text is its class and message), else its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's stop, `timeout`, systemd), raised in the main thread by ``request_stop``: a
    KeyboardInterrupt, so that every path that handles Ctrl-C (roll back, record the run as interrupted,
    remove the scratch and staging folders, release the lock) handles it too, instead of a death mid-step."""


_stop_signals: list[int] = []  # the stops (SIGINT, SIGTERM) this process received, in order
_before_stop: list[Callable[[], None]] = []  # what must happen before the stop is raised (``on_stop``)
_stops_after_done: list[int] = []  # the stops that came once the run was done and on record (``run_is_done``)
_run_done = False


def on_stop(callback: Callable[[], None]) -> Callable[[], None]:
    """Run ``callback`` when a stop arrives, before it is raised (a local Spark's log turned off before the stop
    cuts its tasks short); returns the function that takes it back."""
    _before_stop.append(callback)
    return lambda: _before_stop.remove(callback) if callback in _before_stop else None


def request_stop(signum: int, frame=None) -> None:
    """The CLI's handler of SIGINT and SIGTERM: note the stop (a library may turn the exception below into
    its own), let a second one end the process at once, and raise the stop in the main thread."""
    signal.signal(signum, signal.SIG_DFL)
    if _run_done:  # nothing left to stop: the clean-up finishes (a second one ends the process at once)
        _stops_after_done.append(signum)
        return
    _stop_signals.append(signum)
    for callback in list(_before_stop):
        with contextlib.suppress(Exception):
            callback()
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def run_is_done() -> None:
    """The run's success is on record (the warehouse's history says `succeeded`): a stop that comes from now on, while
    its scratch folder is removed and its lock released, is noted and not raised. Raised, it ended the process 143
    while `runs` said the run had succeeded, and a scheduler retried a run that had nothing left to do."""
    global _run_done
    _run_done = True


def stop_after_done() -> int | None:
    """The stop (SIGINT, SIGTERM) that came after ``run_is_done``, if any."""
    return _stops_after_done[0] if _stops_after_done else None


def stop_requested() -> bool:
    """Whether this process was asked to stop (SIGINT, SIGTERM)."""
    return bool(_stop_signals)


def raise_if_stopped() -> None:
    """Raise the stop this process received, if any: a library may have turned it into its own error and gone
    on (GX records DuckDB's "Query interrupted" as a check that could not run), and the command would then
    finish, exit 0, after a scheduler's SIGTERM."""
    if _stop_signals:
        raise Terminated() if _stop_signals[0] == signal.SIGTERM else KeyboardInterrupt()


def stop_signal(exc: BaseException) -> int | None:
    """The signal that stopped the run when ``exc`` is how the stop surfaced: the KeyboardInterrupt itself, or
    whatever followed a stop (DuckDB ends the query a signal interrupts with ``RuntimeError: Query
    interrupted``); None for any other failure."""
    if isinstance(exc, Terminated):
        return signal.SIGTERM
    if isinstance(exc, KeyboardInterrupt):
        return signal.SIGINT
    return _stop_signals[0] if _stop_signals else None


def stop_text(exc: BaseException) -> str | None:
    """What `runs` and the last log line say of a stopped run; None when ``exc`` is no stop."""
    signum = stop_signal(exc)
    if signum is None:
        return None
    return "stopped by SIGTERM" if signum == signal.SIGTERM else "interrupted (SIGINT)"


class ReportError(AuditError):
    """The report cannot be produced as asked (e.g. PDF without a PDF engine)."""
