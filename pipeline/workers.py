"""The gate's worker process, started first thing, so that its slow import overlaps the run's own work.

Importing Great Expectations costs 2-3 s of CPU (it pulls in scipy, SQLAlchemy and pandas): most of
a small run. Imported on a thread it shared one core with the run (an import holds the GIL); in a
process of its own it loads on the second core while the run parses its inputs, and the gate's
validations then run there.
Workers are started with ``spawn`` (a fork would inherit the parent's DuckDB and Polars thread
pools mid-state) and die with the run, even when it is killed (``PR_SET_PDEATHSIG`` on Linux).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib
import importlib.util
import logging
import multiprocessing
import os
import signal
import sys
import types
from concurrent.futures import Future, ProcessPoolExecutor

from pipeline.errors import stop_requested

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


def _start(parent: int, imports: tuple[str, ...], absent: tuple[str, ...] = (), deferred: tuple[str, ...] = ()) -> None:
    """A worker's first steps: die with the run, then load what it is for (while the run works on);
    the ``absent`` modules import as if not installed, the ``deferred`` ones on first use."""
    # Ctrl-C reaches the whole group, and so does a scheduler's SIGTERM (Airflow signals the task's group): the
    # parent stops the pool as it unwinds (and a parent that dies takes the worker with it, below)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        # killed with the parent, even by SIGKILL: a worker holds the run's stderr, and a scheduler
        # reading it would wait for ever (the pool's pipes do not end it: it holds both ends)
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)
    # the pool's results go back through a pipe as each task ends: at exit nothing is left to flush,
    # and tearing down GX's modules costs a few tenths of a second the run waits for
    atexit.register(os._exit, 0)
    for name in absent:
        sys.modules.setdefault(name, None)  # ``import name`` raises ImportError, as when it is not installed
    for name in deferred:
        defer(name)
    for name in imports:
        importlib.import_module(name)


class _Deferred(types.ModuleType):
    """A top-level package not imported yet (``defer``): the first attribute read imports it, in its place in
    ``sys.modules``; this stand-in, bound where the package was imported, then reads on through it."""

    def __init__(self, name: str, spec) -> None:
        super().__init__(name)
        self.__spec__ = spec

    def __getattr__(self, attribute: str):  # only for what the stand-in itself lacks
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attribute)


def defer(name: str) -> None:
    """The module ``name`` (``package`` or ``package.module``) loaded when one of its attributes is first used,
    not when it is imported (importlib's ``LazyLoader``). A submodule is also bound on its package, so that
    ``from package import module`` takes it as it is: the import system would load it by reading its ``__spec__``."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return
    if "." not in name:
        # ``import package`` reads the module's ``__spec__`` (a LazyLoader's module loads on any attribute read):
        # a stand-in holding the spec, that imports the package on the first read of anything else
        sys.modules[name] = _Deferred(name, spec)
        return
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    package, _, attribute = name.rpartition(".")
    setattr(sys.modules[package], attribute, module)


# -W for the resource tracker: a stop kills the worker (GxWorker.close), and the semaphore its validations made
# (tqdm's lock) is left for the tracker, which removes it and warns in two plain lines at the end of the run's
# stderr, after the last line of a --log-format json log: every line of that log must parse
_TRACKER_QUIET = "ignore:resource_tracker:UserWarning"


def _start_resource_tracker() -> None:
    """The multiprocessing resource tracker, started before the pool would start it, without that warning."""
    from multiprocessing import resource_tracker

    sys.warnoptions.append(_TRACKER_QUIET)  # the tracker's command line takes the interpreter's -W options
    try:
        resource_tracker.ensure_running()
    finally:
        sys.warnoptions.remove(_TRACKER_QUIET)


def process_pool(*imports: str, absent: tuple[str, ...] = (), deferred: tuple[str, ...] = ()) -> ProcessPoolExecutor | None:
    """One spawned worker, started now, importing ``imports`` from now on (``absent``: modules it must not
    load, ``deferred``: modules loaded on first use; see ``_start``); None where none can start."""
    try:
        _start_resource_tracker()
        pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start,
            initargs=(os.getpid(), imports, absent, deferred),
        )
        pool.submit(os.getpid)  # start the worker now
    except (OSError, ImportError, NotImplementedError) as exc:
        log.warning("no worker process (%s): working in this process", exc)
        return None
    return pool


class GxWorker:
    """The data-quality gate's Great Expectations, in a process of its own (see the module docstring)."""

    def __init__(self):
        # GX imports PySpark whenever it is installed (0.24 s of CPU); this worker validates on DuckDB only (a
        # Spark run validates on its own session, in the run's process: ``gate._on_spark``), so PySpark is left
        # out, and GX takes it as not installed (its ``compatibility.pyspark`` catches the ImportError)
        # GX's core expectations import scipy.stats (0.7-0.8 s of CPU) for the distribution expectations
        # (KL divergence, KS tests), and altair (0.5 s) to draw the KL divergence's chart, neither of which our
        # suites use: loaded on first use instead
        gx_modules = ("pipeline.quality", "great_expectations", "pipeline.quality.gx_duckdb", "pipeline.quality.validate")
        self._pool = process_pool(*gx_modules, absent=("pyspark",), deferred=("scipy.stats", "altair"))

    def run_suites(self, path, suites, params) -> list:
        """``validate.run_suites`` in the worker (inline when there is none)."""
        from pipeline.quality import validate  # noqa: PLC0415 - the main process imports GX only without a worker

        if self._pool is None:
            return validate.run_suites(path, suites=suites, params=params)
        future: Future = self._pool.submit(validate.run_suites, path, suites, params)
        return future.result()

    def close(self, wait: bool = True, abandon: bool = False) -> None:
        """Stop the worker; ``wait=False`` once the run needs it no more (it exits while the run goes on);
        ``abandon``: the run is leaving on an error, and nothing the worker does now can reach it."""
        if self._pool is not None:
            if stop_requested() or abandon:
                # the run is stopping (Ctrl-C, SIGTERM) and the worker ignores both: a shutdown would wait for the
                # validation it is running, seconds to minutes, while a scheduler waits to SIGKILL the run. A run
                # that fails (a bad input, a missing folder) mostly fails while the worker still imports GX: a
                # shutdown waited those 1-2 CPU-s out before the error line's exit
                for process in list((self._pool._processes or {}).values()):
                    process.kill()
            self._pool.shutdown(wait=wait, cancel_futures=True)
            self._pool = None


class Warm:
    """A run's worker process, started before the run imports anything heavy: Great Expectations, when
    the gate runs (the charts need none: ``pipeline.report.charts`` writes them in milliseconds)."""

    def __init__(self, gx: bool):
        self.gx = GxWorker() if gx else None

    def close(self, abandon: bool = False) -> None:
        if self.gx is not None:
            self.gx.close(abandon=abandon)

    def __enter__(self) -> Warm:
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.close(abandon=exc_type is not None)
