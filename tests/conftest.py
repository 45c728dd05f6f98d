"""Shared helpers: run the real CLI in a subprocess, write small CSV inputs."""

from __future__ import annotations

import csv
import fcntl
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


SPARK_GROUP = "spark"


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    """`make test` runs the suite on several workers (pytest-xdist, --dist loadgroup): the Spark tests share
    one of them, so one JVM (the session's ``spark_models``) serves them all, as in a single process.

    Every other test is a work unit of its own, handed to whichever worker is free, so a module's tests went
    to both workers and each built the module's fixtures (a pipeline run, a generated export: up to 30 s) again.
    The tests using a module-scoped fixture are therefore one group a module: built once, as in one process."""
    in_groups = getattr(config.option, "loadgroup", False)  # an xdist worker's, under --dist loadgroup
    for item in items:
        # marked, or using the shared session without the mark (test_spark_gate's unmarked tests)
        if item.get_closest_marker("spark") or "spark_models" in getattr(item, "fixturenames", ()):
            _join_group(item, SPARK_GROUP, in_groups)
        elif _uses_a_module_fixture(item):
            _join_group(item, item.nodeid.split("::", 1)[0], in_groups)
    if in_groups:  # in one process a module's tests stay together, or its module fixtures would be built twice
        items[:] = _deck_modules_last(items)


def _deck_modules_last(items: list[pytest.Item]) -> list[pytest.Item]:
    """The Spark group's modules that run a deck (``deck_runs``, built once per test run by whichever worker asks
    first) after the others, the module building its own deck last. The Spark tests start first on one worker while
    the other starts on the largest groups, test_fhir_deck's among them: the Spark worker's first test, the FHIR
    export on Spark, sat waiting ~40 s on the lock while the other worker built that module's deck. A module's Spark
    tests stay together (apart, its module fixtures, the Connect server's JVM, would start twice); the rest keep their
    order."""

    def deck_rank(item: pytest.Item) -> int:
        info = getattr(item, "_fixtureinfo", None)
        defs = info.name2fixturedefs.get("deck_runs") if info else None
        if SPARK_GROUP not in _groups(item) or not defs:
            return 0
        return 2 if defs[-1].scope == "module" else 1  # the module's own deck, or the session's (conftest)

    rank: dict[str, int] = {}
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        rank[module] = max(rank.get(module, 0), deck_rank(item))
    return sorted(items, key=lambda item: rank[item.nodeid.split("::", 1)[0]] if SPARK_GROUP in _groups(item) else 0)


def _groups(item: pytest.Item) -> set[str]:
    return {m.args[0] for m in item.iter_markers("xdist_group") if m.args}


def _join_group(item: pytest.Item, name: str, in_groups: bool) -> None:
    """Mark the test for the group, and name the group in its id where xdist's scheduler reads it. pytest-xdist
    3.8 does that by setting ``item._nodeid``, which pytest 9 no longer reads (the id is ``item._id``): the
    groups were none, every test a unit of its own, the Spark tests spread over both workers."""
    item.add_marker(pytest.mark.xdist_group(name))
    if in_groups and not item.nodeid.endswith(f"@{name}"):
        from _pytest.nodeid import NodeId

        item._id = NodeId.parse(f"{item.nodeid}@{name}")


def _uses_a_module_fixture(item: pytest.Item) -> bool:
    """Whether the test needs (directly or through another fixture) one built once per module."""
    info = getattr(item, "_fixtureinfo", None)  # a pytest.Function's; doctests and the like have none
    definitions = info.name2fixturedefs.values() if info else ()
    return any(d.scope in ("module", "class") for defs in definitions for d in defs)


def pytest_xdist_make_scheduler(config, log):
    """--dist loadgroup hands out the groups largest (in tests) first: the module groups with more tests than the
    Spark group went ahead of it. The Spark group is the longest unit of work by minutes (its JVM runs the deck
    three times), so it goes first, to one worker, while the other takes the rest."""
    if config.getvalue("dist") != "loadgroup":
        return None  # xdist's own choice
    from xdist.scheduler import LoadGroupScheduling

    class SparkFirst(LoadGroupScheduling):
        def _assign_work_unit(self, node):
            if SPARK_GROUP in self.workqueue:
                self.workqueue.move_to_end(SPARK_GROUP, last=False)
            super()._assign_work_unit(node)

    return SparkFirst(config, log)


def run_cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m pipeline ARGS` as a user would run it; returns the completed process."""
    (done,) = run_cli_side_by_side((args, env), timeout=timeout)
    return done


def inspect_writing_config(input_dir, tmp_path) -> tuple[Path, list[str]]:
    """`inspect --input INPUT --write-config tmp_path/site/order-audit.toml` as a site first runs it: the config's
    path and inspect's printed lines (a failure shows its stderr)."""
    (tmp_path / "site").mkdir()
    config = tmp_path / "site" / "order-audit.toml"
    r = run_cli("inspect", "--input", input_dir, "--write-config", config)
    assert r.returncode == 0, r.stderr
    return config, r.stdout.splitlines()


def run_cli_side_by_side(*commands: tuple[tuple, dict | None], timeout: float = 600) -> list[subprocess.CompletedProcess]:
    """Each (ARGS, env) as run_cli runs it, all started at once: commands that spend their time waiting (on a server
    nobody answers) wait together, not one after the other. The completed processes, in the commands' order."""
    started = [_start_cli([str(a) for a in args], env) for args, env in commands]
    try:
        # one after the other: a later process that fills a pipe meanwhile only pauses until its turn
        outputs = [proc.communicate(timeout=timeout) for proc in started]
    finally:
        for proc in started:  # a timeout (or an interrupt) leaves none running, as subprocess.run kills its own
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return [subprocess.CompletedProcess(proc.args, proc.returncode, *out) for proc, out in zip(started, outputs, strict=True)]


def _start_cli(args: list[str], env: dict | None):
    """`python -m pipeline ARGS`: forked from the warm interpreter (cli_child) when the environment is the server's,
    else a real process."""
    environ = {**os.environ, **(env or {})}
    server = _cli_server(environ)
    if server is None:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=environ,
        )
    return _ForkedCli(server, args, environ)


_CLI_SERVER: dict = {}


def _cli_server(environ: dict):
    """The forkserver context, or None where a command must be a real process: ORDER_AUDIT_TEST_FORK=0, or a command
    given its own environment. The server imports under the test process's environment; when that changed since (a
    test in this process ran validation, which sets GX_ANALYTICS_ENABLED), a new one is started: what it imports must
    have seen the environment the command runs in. Between two calls no forked command runs, so none is orphaned."""
    if environ.get("ORDER_AUDIT_TEST_FORK", "1") == "0":
        return None
    current = _imported_under(os.environ)
    if _imported_under(environ) != current:
        return None
    if _CLI_SERVER.get("environ") != current:
        import multiprocessing
        import multiprocessing.forkserver

        import cli_child

        if _CLI_SERVER:
            multiprocessing.forkserver._forkserver._stop()  # the stdlib's own way to stop it (its tests use it)
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(cli_child.PRELOAD)
        _CLI_SERVER.update(context=context, environ=current)
    return _CLI_SERVER["context"]


def _imported_under(environ) -> dict:
    """The environment as it matters to what the server imported. The project's own variables (ORDER_AUDIT_*: the
    pseudonym key, a fault to inject, the memory limit, Chromium's path, more audits) are read when a command runs,
    never on import, and pytest's name of the current test is read by nobody: a command that differs from the
    server only in those is forked with them."""
    return {k: v for k, v in environ.items() if not k.startswith("ORDER_AUDIT_") and k != "PYTEST_CURRENT_TEST"}


class _ForkedCli:
    """A command forked from the server, read as run_cli_side_by_side reads a subprocess.Popen (text, universal
    newlines); stdout and stderr go to files, so a command that writes much never waits on a pipe."""

    def __init__(self, context, args: list[str], environ: dict):
        import tempfile

        import cli_child

        self.args = [sys.executable, "-m", "pipeline", *args]
        self._folder = tempfile.mkdtemp(prefix="cli-")
        self._out, self._err = os.path.join(self._folder, "stdout"), os.path.join(self._folder, "stderr")
        for path in (self._out, self._err):  # there to read even if the command is killed before it opens them
            open(path, "w").close()
        argv0 = str(ROOT / "pipeline" / "__main__.py")  # sys.argv[0] under `python -m pipeline`
        self._process = context.Process(
            target=cli_child.run_main, args=(argv0, args, environ, str(ROOT), self._out, self._err), daemon=False
        )
        self._process.start()
        self.returncode = None

    def poll(self):
        if self.returncode is None and not self._process.is_alive():
            self._process.join()
            self.returncode = self._process.exitcode
        return self.returncode

    def kill(self) -> None:
        self._process.kill()

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        self._process.join(timeout)
        if self.poll() is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        try:
            with open(self._out) as out, open(self._err) as err:
                return out.read(), err.read()
        finally:
            shutil.rmtree(self._folder, ignore_errors=True)


def write_csv(path: Path, header: list[str], rows: list[list[str]], newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator=newline)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def published_texts(out: Path):
    """Every file a run wrote under ``out``, as text to search for what must not be published: CSV, JSON and HTML as
    they are, Parquet through Polars and a workbook's parts unzipped (both compressed: their bytes do not show a
    value written into them)."""
    import zipfile

    import polars as pl

    for path in sorted(p for p in Path(out).rglob("*") if p.is_file()):
        if path.suffix == ".parquet":
            yield path, pl.read_parquet(path).write_csv()
        elif path.suffix == ".xlsx":
            with zipfile.ZipFile(path) as z:
                yield path, "\n".join(z.read(n).decode("utf-8", "replace") for n in z.namelist())
        else:
            yield path, path.read_bytes().decode("utf-8", "replace")


def files_showing(out: Path, *values: str) -> list[str]:
    """The names of the files under ``out`` (``published_texts``) that show any of ``values``; ``out`` holding no file
    fails (nothing published is no proof that nothing leaked)."""
    texts = list(published_texts(out))
    assert texts, f"{out}: no file to search"
    return [path.name for path, text in texts if any(v in text for v in values)]


def truth_differences(truth, audited_csv: Path):
    """The orders where an audit's audited_orders.csv and the generator's ground truth (a frame of text
    columns, or a CSV file) differ (case, verdict or reasons; an order only one of them lists)."""
    import polars as pl

    cols = ["order_id", "case_id", "verdict", "reasons"]
    truth = (truth if isinstance(truth, pl.DataFrame) else pl.read_csv(truth, infer_schema=False)).select(cols)
    got = pl.read_csv(audited_csv, infer_schema=False).select(cols)
    both = truth.join(got, on="order_id", how="full", suffix="_got", coalesce=True)
    return both.filter(
        pl.col("verdict").is_null()
        | pl.col("verdict_got").is_null()
        | (pl.col("case_id") != pl.col("case_id_got"))
        | (pl.col("verdict") != pl.col("verdict_got"))
        | (pl.col("reasons").fill_null("") != pl.col("reasons_got").fill_null(""))
    )


PROC_HEADER = ["procedure_id", "patient_id", "performed_at", "procedure_code", "department", "patient_birth_date"]
ORDER_HEADER = ["order_id", "patient_id", "ordered_at", "order_code", "ordering_department", "indication_codes", "status"]
DX_HEADER = ["patient_id", "diagnosis_code", "recorded_at"]


def write_small_input(d: Path) -> Path:
    """One case (complete spine at day 4) and one premature lumbar-only order, as CSV files in d."""
    write_csv(
        d / "procedures.csv",
        PROC_HEADER,
        [
            ["PR1", "MRN-1", "2025-06-02 09:00:00", "62323", "Pain clinic", "1970-05-05"],
            ["PR2", "MRN-2", "2025-06-03 09:00:00", "62322", "Pain clinic", "1980-01-01"],
        ],
    )
    write_csv(
        d / "imaging_orders.csv",
        ORDER_HEADER,
        [
            ["O1", "MRN-1", "2025-06-06 10:00:00", "72156", "Neurology", "G97.1", "completed"],
            ["O2", "MRN-1", "2025-06-06 10:05:00", "72157", "Neurology", "G97.1", "completed"],
            ["O3", "MRN-1", "2025-06-06 10:10:00", "72158", "Neurology", "G97.1", "completed"],
            ["O4", "MRN-2", "2025-06-04 09:00:00", "72148", "Emergency", "", "completed"],
        ],
    )
    write_csv(d / "diagnoses.csv", DX_HEADER, [["MRN-2", "G97.1", "2025-06-04 08:00:00"]])
    return d


def write_july_input(d: Path, more_orders: tuple = ()) -> Path:
    """The next month's extract for write_small_input's: one more case (PR7) and its premature order O71, with
    ``more_orders`` (order rows) beside it."""
    write_csv(d / "procedures.csv", PROC_HEADER, [["PR7", "MRN-7", "2025-07-01 09:00:00", "62323", "Pain clinic", "1960-01-01"]])
    write_csv(
        d / "imaging_orders.csv",
        ORDER_HEADER,
        [["O71", "MRN-7", "2025-07-02 10:00:00", "72148", "Emergency", "G97.1", "completed"], *more_orders],
    )
    write_csv(d / "diagnoses.csv", DX_HEADER, [["MRN-7", "G97.1", "2025-07-02 08:00:00"]])
    return d


@pytest.fixture
def small_input(tmp_path: Path) -> Path:
    return write_small_input(tmp_path / "in")


# The reason registry as audits/csf_leak/DESIGN.md lists it (registry order = order inside `reasons`): written
# out here, not read from rules.csv, so the tests check the registry against the design.
DESIGN_REASONS: dict[str, str] = {
    "cancelled": "excluded",
    "red_flag_indication": "excluded",
    "outside_window": "excluded",
    "unmapped_code": "not_evaluable",
    "missing_time": "not_evaluable",
    "premature": "inappropriate",
    "contrast_only": "inappropriate",
    "wrong_region": "inappropriate",
    "ct_initial": "inappropriate",
    "ct_myelography_initial": "inappropriate",
    "cisternography_initial": "inappropriate",
    "mr_myelography_initial": "inappropriate",
    "noncontrast_only": "review",
    "dsm_initial": "review",
    "brain_only_initial": "review",
    "mri_complete_spine_wwo": "appropriate",
    "brain_mri_companion": "appropriate",
    "subsequent_after_mri": "appropriate",
}


# ----------------------------------------------------------------------------------------- the decks


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build):
    """``build(folder)``'s result, built into a fresh folder once per test run: under pytest-xdist the first
    worker to ask builds it (the others wait on a lock, then read what it kept), as xdist's docs advise for
    session data; in one process, into the session's own temporary folder. What is built is read, never
    written: a test writing beside it copies it first (as test_benchmarks copies the warehouse)."""
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")  # the same in every worker of one run
    if run_id is None:
        return build(tmp_path_factory.mktemp(name))
    # the workers' session folders (popen-gw0, popen-gw1) share this parent, new for each run
    shared = tmp_path_factory.getbasetemp().parent / f"built-once-{run_id}"
    shared.mkdir(exist_ok=True)
    folder, kept = shared / name, shared / f"{name}.pickle"
    with (shared / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released as the file closes; the kernel's, so a worker's crash frees it
        if not kept.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a build that failed part way on the other worker
            folder.mkdir()
            result = build(folder)
            written = kept.with_suffix(".part")
            written.write_bytes(pickle.dumps(result))
            written.replace(kept)  # whole or absent
    return pickle.loads(kept.read_bytes())


@pytest.fixture(scope="session")
def deck_runs(tmp_path_factory):
    """Every audit's deck through the real CLI: the combined input once (all audits, with the
    re-identification crosswalk), and each ``separate_input`` file on its own input. Built once per test
    run (``built_once``): the runs take a quarter of a minute, and every worker reads the same ones."""
    from pipeline import audits
    from pipeline.deck import deck_files

    found = audits.discover()
    files = deck_files(found)
    runs = built_once(tmp_path_factory, "decks", lambda base: _deck_runs(base, found, files))
    return {"audits": {a.id: a for a in found}, "files": files, "runs": runs}


def _deck_runs(base: Path, found, files) -> dict:
    from pipeline.deck import run_decks

    def run(name: str, args: list) -> str:
        proc = run_cli("run", *args)
        if proc.returncode != 0:
            pytest.fail(
                f"order-audit run on the deck ({name}) exited {proc.returncode} (input kept in {base / name})\n"
                f"--- stderr ---\n{proc.stderr[-6000:]}",
                pytrace=False,
            )
        return proc.stderr

    return run_decks(base, found, files, run)


# ----------------------------------------------------------------------------------------- Spark


@pytest.fixture(scope="session")
def spark_models(tmp_path_factory):
    """One local[2] Spark (a ``SparkModels``, as a run starts it) for every Spark test module that needs
    a session: the JVM's start is the cost. Needs Java 17, else the tests using it are skipped."""
    from test_spark_engine import LOCAL_DECK_CONF

    from pipeline.config import Spark
    from pipeline.models import spark as spark_engine

    problem = spark_engine.java_problem()
    if problem:
        pytest.skip(problem)
    session = spark_engine.SparkModels(Spark(master="local[2]", conf=LOCAL_DECK_CONF), tmp_path_factory.mktemp("spark-scratch"))
    yield session
    session.close()
