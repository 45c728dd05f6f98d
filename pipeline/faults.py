"""Fault injection for the crash-safety tests: ORDER_AUDIT_FAULT=<point>[:<n>] kills the process there
(SIGKILL; ORDER_AUDIT_FAULT_SIGNAL=TERM or INT sends that signal instead: a scheduler's stop, Ctrl-C;
STOP freezes the run there, holding its locks, until it is sent SIGCONT: a run caught mid-way).

The points sit where a real crash would hurt most (inside the warehouse transaction,
between output files). Unset in normal use: a dictionary lookup and nothing else.
"""

from __future__ import annotations

import os
import signal

ENV = "ORDER_AUDIT_FAULT"
SIGNAL_ENV = "ORDER_AUDIT_FAULT_SIGNAL"
_hits: dict[str, int] = {}


def maybe_fail(point: str, detail: str | None = None) -> None:
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    name, _, nth = wanted.partition(":")
    if name != point:
        return
    _hits[point] = _hits.get(point, 0) + 1
    if _hits[point] == int(nth or 1):  # once: a run frozen there (STOP) goes on when continued
        os.kill(os.getpid(), getattr(signal, "SIG" + os.environ.get(SIGNAL_ENV, "KILL")))
