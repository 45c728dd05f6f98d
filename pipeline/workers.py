"""Worker processes a run starts first thing, so that their slow imports overlap its own work.

Importing Great Expectations costs 2-3 s of CPU (it pulls in scipy, SQLAlchemy and pandas) and
matplotlib about 0.7 s: most of a small run. Imported on a thread they shared one core with the
run (an import holds the GIL); in a process of their own they load on the second core while the
run parses and checks its inputs, and the gate's validations and the charts then run there.
Workers are started with ``spawn`` (a fork would inherit the parent's DuckDB and Polars thread
pools mid-state) and die with the run, even when it is killed (``PR_SET_PDEATHSIG`` on Linux).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib
import logging
import multiprocessing
import os
import signal
import sys
from concurrent.futures import Future, ProcessPoolExecutor

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


def _start(parent: int, imports: tuple[str, ...]) -> None:
    """A worker's first steps: die with the run, then load what it is for (while the run works on)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent stops the pool
    if sys.platform.startswith("linux"):
        # killed with the parent, even by SIGKILL: a worker holds the run's stderr, and a scheduler
        # reading it would wait for ever (the pool's pipes do not end it: it holds both ends)
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)
    # the pool's results go back through a pipe as each task ends: at exit nothing is left to flush,
    # and tearing down GX's or matplotlib's modules costs a few tenths of a second the run waits for
    atexit.register(os._exit, 0)
    for name in imports:
        importlib.import_module(name)


def cpus_available() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def process_pool(*imports: str) -> ProcessPoolExecutor | None:
    """One spawned worker, started now, importing ``imports`` from now on; None where none can start."""
    try:
        pool = ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_start, initargs=(os.getpid(), imports)
        )
        pool.submit(os.getpid)  # start the worker now
    except (OSError, ImportError, NotImplementedError) as exc:
        log.warning("no worker process (%s): working in this process", exc)
        return None
    return pool


class GxWorker:
    """The data-quality gate's Great Expectations, in a process of its own (see the module docstring)."""

    def __init__(self):
        # pipeline.quality first: it silences the warning PySpark (which GX imports when installed) prints
        self._pool = process_pool(
            "pipeline.quality", "great_expectations", "pipeline.quality.gx_duckdb", "pipeline.quality.validate"
        )

    def run_suites(self, path, suites, params) -> list:
        """``validate.run_suites`` in the worker (inline when there is none)."""
        from pipeline.quality import validate  # noqa: PLC0415 - the main process imports GX only without a worker

        if self._pool is None:
            return validate.run_suites(path, suites=suites, params=params)
        future: Future = self._pool.submit(validate.run_suites, path, suites, params)
        return future.result()

    def close(self, wait: bool = True) -> None:
        """Stop the worker; ``wait=False`` once the run needs it no more (it exits while the run goes on)."""
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
            self._pool = None


class Warm:
    """A run's worker processes, started before the run imports anything heavy: Great Expectations
    (when the gate runs) and the chart worker (with two CPUs or more).

    With the gate, the chart worker starts once the inputs are checked (``start_charts``): three
    processes importing at once on two cores made the GX worker, which the run waits for, a second
    later. Without the gate it starts at once.
    """

    def __init__(self, gx: bool, charts: bool):
        self.gx = GxWorker() if gx else None
        self._want_charts = charts
        self.charts: ProcessPoolExecutor | None = None
        if self.gx is None:
            self.start_charts()

    def start_charts(self) -> None:
        if self._want_charts and self.charts is None:
            self.charts = process_pool("pipeline.report.charts", "matplotlib.figure")
            self._want_charts = self.charts is not None

    def close(self, cancel: bool = False) -> None:
        if self.gx is not None:
            self.gx.close()
        if self.charts is not None:
            self.charts.shutdown(wait=True, cancel_futures=cancel)
            self.charts = None

    def __enter__(self) -> Warm:
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.close(cancel=exc_type is not None)
