"""`python -m pipeline ARGS` for the tests, started from an interpreter that has already imported the pipeline.

A run's first seconds are imports (Great Expectations alone is 3-7 CPU-seconds, the pipeline's own modules
another one or two), and the suite runs the CLI hundreds of times. A stdlib forkserver (``multiprocessing``)
imports ``PRELOAD`` once a test process; each command is a fresh process forked from it that runs
``python -m pipeline`` as the interpreter does: ``sys.argv``, working folder and environment as given, its own
stdout and stderr, SystemExit's code as the exit status, non-daemon threads joined and ``atexit`` handlers run
before it ends. The gate's worker is forked from the command rather than spawned (``_gate_worker_forked``).
Measured on a 2-core machine: ``make test`` 44:27 -> 32:55 with the commands forked, 26:24 with the gate's worker
forked too (a small validating run 9.5 -> 5.1 s).

What a fork cannot repeat is what modules read from the environment *when imported*. So a command is forked only
when its environment is the test process's, give or take the project's own ORDER_AUDIT_* variables (read when a
command runs, never on import); the server is started again when the test process's environment changed since it
imported (PySpark sets SPARK_* variables in the process that starts a session). A command given another environment
(``run_cli(env={"TMPDIR": ...})``) is a real ``python -m pipeline`` process, and so are the tests that send signals,
change user or watch a process's resources (they use ``subprocess`` themselves). ``ORDER_AUDIT_TEST_FORK=0`` runs
every command as a real process.
"""

from __future__ import annotations

import atexit
import os
import runpy
import sys
import threading
import traceback

# what `order-audit run` imports, directly and lazily (validation, data docs, the report); the rest is cheap
PRELOAD = [
    "pipeline.cli",
    "pipeline.run",
    "pipeline.publishing",
    "pipeline.quality.validate",
    "pipeline.quality.gx_duckdb",
    "pipeline.quality.data_docs",
    "pipeline.report.render",
    "great_expectations",
    "tests.cli_child_models",  # every model's SQL parsed once here, not in each command (pipeline.models.runner)
]


def _gate_worker_forked() -> None:
    """The run's data-quality gate validates in a worker process it starts first thing (pipeline.workers), spawned: a
    fresh interpreter that imports Great Expectations again, 3-4 CPU-seconds of a small run's 9. Here that worker is
    forked from this process, which imported the same modules already: the same pool, initializer and validations,
    only its start differs. The fork happens as the run begins, before its DuckDB or Polars have started a thread
    (why the product spawns); ORDER_AUDIT_TEST_FORK=0 runs the product's own start."""
    import multiprocessing

    from pipeline import workers

    class _StartMethods:
        """``multiprocessing`` as pipeline.workers reads it, its spawn a fork."""

        def __getattr__(self, name: str):
            return getattr(multiprocessing, name)

        def get_context(self, method: str | None = None):
            return multiprocessing.get_context("fork" if method == "spawn" else method)

    workers.multiprocessing = _StartMethods()


def run_main(argv0: str, args: list[str], environ: dict[str, str], cwd: str, out_path: str, err_path: str) -> None:
    """In the forked process: be `python -m pipeline ARGS` with stdout and stderr in the two files; never returns."""
    os.environ.clear()
    os.environ.update(environ)
    os.chdir(cwd)
    for fd, path in ((1, out_path), (2, err_path)):
        opened = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(opened, fd)
        os.close(opened)
    sys.argv = [argv0, *args]
    _gate_worker_forked()
    code = 0
    try:
        runpy.run_module("pipeline", run_name="__main__", alter_sys=True)
    except SystemExit as exc:  # as the interpreter reads it
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 - printed as the interpreter prints an uncaught exception
        traceback.print_exc()
        code = 1
    # the interpreter's own ending: wait for non-daemon threads, run atexit handlers, flush
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 120  # as the interpreter exits when it cannot flush stdout
    os._exit(code & 0xFF)
