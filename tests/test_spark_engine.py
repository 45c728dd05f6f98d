"""`order-audit run --engine spark` through the real CLI: the deck (every audit's, as test_decks writes
it) on a local Spark (local[2]) and once more through a Spark Connect server this module starts on
localhost; each run's data outputs are byte-identical to the DuckDB run's (the deck_runs fixture), the
local run's marts equal the DuckDB run's row by row, and the Connect run's data-quality gate, run on Spark,
gives the DuckDB gate's results and log lines; a blocking failure exits as on DuckDB. What a user without PySpark or
Java sees is tested without either.

Needs Java 17 for the Spark runs; without it they are skipped and say what to install."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal
from importlib import metadata
from pathlib import Path

import pytest
from conftest import run_cli, run_cli_side_by_side

from benchmarks.engine_compare import data_outputs
from pipeline.deck import SITE_TIMEZONE
from pipeline.models import spark as spark_engine

# the deck is tiny: compiling code per stage, re-planning at run time and splitting a shuffle cost more than they save;
# so does compiling each expression (Janino): NO_CODEGEN evaluates them interpreted, Spark's own other form of the
# same expressions (its tests hold the two to the same results), as wholeStage off already does for whole stages
DECK_CONF = {
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.adaptive.enabled": "false",
    "spark.sql.shuffle.partitions": "1",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
}
# A JVM that lives a minute or two on the deck spends much of it compiling: the quick (C1) compiler alone, with room
# for its code (C1 alone fills the default 48 MB cache, stops compiling and says so on stderr), and one GC thread
# took a deck run from 114 to 79 s. Set where a JVM starts (a local master's launch, the Connect server's command
# line): a session cannot change them. Not the product's default: a long run on real data wants the full compiler.
DECK_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m -XX:+UseSerialGC"
LOCAL_DECK_CONF = DECK_CONF | {"spark.driver.defaultJavaOptions": DECK_JVM_OPTIONS}


def _config(path: Path, conf: dict | None = None, **spark) -> Path:
    """A config running the deck on Spark: a local master's JVM started as ``DECK_JVM_OPTIONS`` say."""
    lines = ['engine = "spark"', "[spark]", *(f'{k} = "{v}"' for k, v in spark.items()), "[spark.conf]"]
    deck_conf = LOCAL_DECK_CONF if spark.get("master", "").startswith("local") else DECK_CONF
    lines += [f'"{k}" = "{v}"' for k, v in (deck_conf | (conf or {})).items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _assert_same_as_duckdb(deck_runs, out: Path, reid: Path, input_uri: str | None = None) -> None:
    duck = deck_runs["runs"]["combined"]
    expected, got = data_outputs(duck["out"]), data_outputs(out)
    if input_uri is not None:  # the ledger names each file by the URI the user gave, a local run's relative to --input
        got = {name: data.replace(input_uri.encode() + b"/", b"") for name, data in got.items()}
        assert all(b".scratch-" not in data for data in got.values())  # the run's copy is in its scratch folder
        run_json = (out / "csf_leak" / "run.json").read_text(encoding="utf-8")
        assert ".scratch-" not in run_json and f"{input_uri}/imaging_orders.csv" in run_json
        assert not list(out.parent.glob("wh/.wh.duckdb.scratch-*"))  # gone with the run
    assert {"csf_leak/audited_orders.csv", "csf_leak/cases.csv", "csf_leak/metrics.parquet"} <= set(expected)
    assert sorted(got) == sorted(expected)
    for name in expected:
        assert got[name] == expected[name], f"{name} differs from the DuckDB run's"
    assert reid.read_bytes() == duck["reid"].read_bytes()  # the keyed pseudonyms, built on Spark


def _value(v):
    """One value as both engines agree to give it: decimals and floats as floats to 9 places, NaN as None (both
    warehouses read back through DuckDB, in the types DESCRIBE shows equal, so instants need no normalising)."""
    if isinstance(v, Decimal | float):
        return None if math.isnan(float(v)) else round(float(v), 9)
    return v


def _assert_same_marts(deck_runs, spark_warehouse: Path) -> None:
    """Every audit's marts (each model's table, as the run landed it from Spark) equal the DuckDB run's, row by row:
    the outputs compared above are drawn from a few of them."""
    from pipeline import warehouse
    from pipeline.models import runner

    chosen = [a for a in deck_runs["audits"].values() if a.runnable]
    marts = [m.name for a in chosen for m in runner.audit_models(a) if m.layer == "mart"]
    assert {f"{a.id}__mart_audited_orders" for a in chosen} <= set(marts) and len(marts) > 10
    duck = warehouse.connect(deck_runs["runs"]["combined"]["warehouse"], read_only=True)
    spark = warehouse.connect(spark_warehouse, read_only=True)
    try:
        for name in marts:
            described = [spark.execute(f"DESCRIBE {name}").fetchall(), duck.execute(f"DESCRIBE {name}").fetchall()]
            assert described[0] == described[1], name
            rows = [sorted((tuple(_value(v) for v in r) for r in c.execute(f"SELECT * FROM {name}").fetchall()), key=repr)
                    for c in (spark, duck)]  # fmt: skip
            assert rows[0] == rows[1], name
    finally:
        spark.close()
        duck.close()


def _dq_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "data-quality" in ln]


def _assert_same_gate(deck_runs, out: Path, stderr: str) -> None:
    """The gate's checks ran on Spark (the log says so, naming the SQL checks left on the driver) with the
    DuckDB gate's results in run.json and the same warning lines in the log."""
    duck = deck_runs["runs"]["combined"]
    dq = json.loads((out / "run.json").read_text(encoding="utf-8"))["data_quality"]
    assert dq == json.loads((duck["out"] / "run.json").read_text(encoding="utf-8"))["data_quality"]
    assert any(d["status"] == "failed" and d["sample_keys"] for d in dq)  # the deck has warnings with samples
    assert _dq_lines(stderr) == _dq_lines(duck["stderr"])
    (inputs,) = [ln for ln in stderr.splitlines() if "input checks on Spark:" in ln]
    assert "Great Expectations checks; on the driver's DuckDB (SQL checks, not Great Expectations): " in inputs
    assert "orders.volume.monthly" in inputs
    assert "csf_leak output checks on Spark:" in stderr


def _run_spark(deck_runs, where: Path, *args: str, input_uri: str | None = None):
    inp = deck_runs["runs"]["combined"]["input"]
    out, reid = where / "out", where / "crosswalk" / "reid.csv"
    reid.parent.mkdir()
    proc = run_cli(
        "run", "--input", input_uri or inp, "--out", out, "--warehouse", where / "wh" / "wh.duckdb",
        "--site-timezone", SITE_TIMEZONE, "--reid-file", reid, *args,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, reid, proc.stderr


def _engine_of(out: Path) -> dict:
    return json.loads((out / "run.json").read_text(encoding="utf-8"))["engine"]


@pytest.fixture(scope="module")
def java():
    problem = spark_engine.java_problem()
    if problem:
        pytest.skip(problem)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def connect_server(java, tmp_path_factory):
    """A Spark Connect server on localhost, started here as a user starts one: PySpark's bundled
    spark-submit running org.apache.spark.sql.connect.service.SparkConnectServer on local[2]."""
    import pyspark

    port = _free_port()
    log = tmp_path_factory.mktemp("connect") / "server.log"
    command = [
        os.path.join(os.path.dirname(pyspark.__file__), "bin", "spark-submit"),
        "--class", "org.apache.spark.sql.connect.service.SparkConnectServer", "--master", "local[2]",
        "--conf", f"spark.connect.grpc.binding.port={port}", "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
        "--conf", "spark.ui.enabled=false", "--conf", "spark.driver.memory=1g", "--driver-java-options", DECK_JVM_OPTIONS,
    ]  # fmt: skip
    with log.open("wb") as sink:
        # its cwd a scratch folder: the server's SQL warehouse (spark-warehouse/) had been made in the checkout
        server = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=log.parent)
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the Spark Connect server did not start:\n{log.read_text(errors='replace')[-3000:]}")
                time.sleep(1)
        yield f"sc://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.mark.spark
def test_the_deck_on_local_spark_gives_the_duckdb_outputs(deck_runs, java, tmp_path):
    # the input folder through a file system of Hadoop's own that is not file:// (viewfs: a mount table
    # whose one link is the deck's folder), as a bucket is read through s3a:// or abfss://
    deck = deck_runs["runs"]["combined"]["input"]
    viewfs = {"spark.hadoop.fs.viewfs.mounttable.hospital.link./extracts": deck.as_uri()}
    # Without the gate (a sixth of the run): the gate on a local Spark is test_spark_gate's (its results, samples
    # and rows set aside against DuckDB's, on the session's frames of the typed files), and through the CLI, its
    # log lines and run.json, the Connect deck run's below
    config = _config(tmp_path / "spark.toml", conf=viewfs, master="local[2]")
    args = ("--config", config, "--no-validate")
    out, reid, stderr = _run_spark(deck_runs, tmp_path, *args, input_uri="viewfs://hospital/extracts")
    _assert_same_as_duckdb(deck_runs, out, reid, input_uri="viewfs://hospital/extracts")
    _assert_same_marts(deck_runs, tmp_path / "wh" / "wh.duckdb")
    assert "fetched 5 files" in stderr and ".scratch-" not in stderr  # the log names the URI
    assert "checks on Spark" not in stderr  # no checks ran
    spark_version = metadata.version("pyspark")
    assert _engine_of(out) == {"name": "spark", "spark_version": spark_version, "spark": "local[2]"}
    assert f"models on Spark {spark_version} (local[2])" in stderr
    assert "imaging_orders.csv on Spark (1 split)" in stderr  # a local Spark reads the inputs itself
    # the JVM logs errors only: Spark's default profile prints a banner and WARN lines (no native Hadoop
    # library, a loopback hostname) that a scheduler reading the run's stderr would take for alarms
    jvm_noise = [ln for ln in stderr.splitlines() if " WARN " in ln or "log4j" in ln or "default log level" in ln]
    assert jvm_noise == []
    assert _engine_of(deck_runs["runs"]["combined"]["out"]) == {"name": "duckdb"}  # the default


@pytest.mark.spark
def test_the_deck_through_spark_connect_gives_the_duckdb_outputs(deck_runs, connect_server, tmp_path):
    config = _config(tmp_path / "spark.toml")  # engine = "spark" from the config; the server from the flag
    # the ledger and run history, written by the server, in a folder named as users name them: --spark-state went
    # to Spark percent-encoded (Path.as_uri), which Hadoop took for the name itself (a new folder
    # "we%27ird%20%22state%22", the named one empty); and Hadoop reads a path as a glob, so "state [2026]" held the
    # versions while every read of it matched nothing (`runs` listed no run, each run wrote version 1 again)
    state = tmp_path / 'we\'ird "state" [2026] {a,b} *'
    args = ("--config", config, "--spark-remote", connect_server, "--spark-state", state)
    out, reid, stderr = _run_spark(deck_runs, tmp_path, *args)
    _assert_same_as_duckdb(deck_runs, out, reid)
    _assert_same_gate(deck_runs, out, stderr)
    assert _engine_of(out)["spark"] == f"spark connect {connect_server}"
    assert f"({'spark connect ' + connect_server})" in stderr
    assert "csv on Spark" not in stderr  # the server may not see this machine's files: the driver parses
    run_id = json.loads((out / "run.json").read_text(encoding="utf-8"))["run_id"]
    assert f"ledger and run history on Spark: file://{state} (version 00000001-{run_id})" in stderr  # as named

    # `runs` and `diff` read it through Spark ($SPARK_REMOTE: the same server), as from the warehouse
    on_server = {"SPARK_REMOTE": connect_server}
    listed = run_cli("runs", "--spark-state", state.as_uri(), "--json", env=on_server)
    assert listed.returncode == 0, listed.stderr[-3000:]
    in_warehouse = run_cli("runs", "--warehouse", tmp_path / "wh" / "wh.duckdb", "--json")
    assert json.loads(listed.stdout) == json.loads(in_warehouse.stdout)
    assert [(r["run_id"], r["status"]) for r in json.loads(listed.stdout)] == [(run_id, "succeeded")]
    assert (state / "commits" / f"00000001-{run_id}").is_dir()
    assert not [p.name for p in tmp_path.iterdir() if "%" in p.name]
    # runs --spark-state imports PySpark without the gate, and printed its pandas 3 FutureWarning (two lines)
    assert "FutureWarning" not in listed.stderr and "Warning:" not in listed.stderr, listed.stderr
    same = run_cli("diff", run_id, run_id, "--spark-state", state, env=on_server)
    assert same.returncode == 0 and same.stdout.startswith("no order changed verdict"), same.stderr[-3000:]


@pytest.mark.spark
def test_a_blocking_failure_on_spark_exits_as_on_duckdb(connect_server, small_input, tmp_path):
    # every order's status unknown: more than MAX_REJECTED_SHARE of the table fails a blocking check.
    # Through the module's Spark Connect server: no JVM to start in the run, GX on Connect frames.
    path = small_input / "imaging_orders.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([lines[0], *(ln.replace(",completed", ",lost") for ln in lines[1:])]) + "\n", encoding="utf-8")
    runs = {}
    for engine in ("duckdb", "spark"):
        spark = ["--config", _config(tmp_path / "spark.toml"), "--spark-remote", connect_server] if engine == "spark" else []
        out, wh = tmp_path / engine / "out", tmp_path / engine / "wh.duckdb"
        runs[engine] = run_cli("run", "--input", small_input, "--out", out, "--warehouse", wh, *spark)
        assert runs[engine].returncode == 3, runs[engine].stderr[-3000:]
        assert not out.exists()
    duck, spark = runs["duckdb"].stderr, runs["spark"].stderr
    failure = [ln for ln in spark.splitlines() if "data-quality gate failed" in ln or ln.startswith("  orders.")]
    assert failure == [ln for ln in duck.splitlines() if "data-quality gate failed" in ln or ln.startswith("  orders.")]
    assert any("orders.status.allowed [src_imaging_orders] 4 of 4" in ln for ln in failure), spark[-3000:]
    assert "input checks on Spark:" in spark and "input checks on Spark:" not in duck
    assert "Traceback" not in spark


@pytest.mark.spark
def test_a_sigterm_while_spark_builds_the_models_stops_the_run_in_json_lines_without_a_traceback(java, small_input, tmp_path):
    """py4j logs a stop that lands while it talks to the JVM ("KeyboardInterrupt while sending command.") through
    the root logger, which then got Python's default handler: an "ERROR:root:" line and a traceback amid the
    run's JSON lines, on the stop a scheduler sends on every timeout."""
    wh, out = tmp_path / "wh.duckdb", tmp_path / "out"
    command = [
        sys.executable, "-m", "pipeline", "run", "--input", str(small_input), "--out", str(out), "--warehouse", str(wh),
        "--config", str(_config(tmp_path / "spark.toml", master="local[2]")), "--no-validate", "--log-format", "json",
    ]  # fmt: skip
    env = {**os.environ, "ORDER_AUDIT_PSEUDONYM_KEY": "spark-test-key"}
    proc = subprocess.Popen(command, cwd=Path(__file__).parents[1], env=env, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:  # the models run on Spark once the merge is done: the driver waits on py4j
        lines.append(line)
        if '"stage": "merge"' in line:
            time.sleep(3)
            proc.send_signal(signal.SIGTERM)
            break
    lines += proc.stderr.readlines()
    assert proc.wait(timeout=180) == 143, "".join(lines)
    assert any('"stage": "merge"' in ln for ln in lines), "".join(lines)
    stderr = "".join(lines)
    assert "Traceback" not in stderr and "ERROR:root" not in stderr, stderr
    jvm = "WARNING: Using incubator modules"  # the JVM's own line (docs/SCALING.md)
    records = [json.loads(ln) for ln in lines if ln.strip() and not ln.startswith(jvm)]
    assert records[-1]["exit_code"] == 143 and "stopped by SIGTERM" in records[-1]["message"]
    assert not out.exists()


def _one_line_error(proc, code: int = 1) -> str:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("order-audit: error") or x.startswith("Error:")]
    return line


def test_without_java_a_local_spark_run_says_what_to_install(small_input, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("run", "--input", small_input, "--out", out, "--engine", "spark", env={"JAVA_HOME": str(tmp_path / "no-java")})
    assert "install openjdk-17-jre-headless" in _one_line_error(proc)
    assert not out.exists()


def test_without_pyspark_a_spark_run_says_what_to_install(small_input, tmp_path):
    fake = tmp_path / "site" / "pyspark"  # an import of pyspark that fails, as when it is not installed
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named pyspark')\n", encoding="utf-8")
    out = tmp_path / "out"
    env = {"PYTHONPATH": str(fake.parent)}
    proc = run_cli("run", "--input", small_input, "--out", out, "--engine", "spark", "--no-validate", env=env)
    assert "pip install 'order-audit[spark]'" in _one_line_error(proc)
    assert not out.exists()


def test_spark_remote_needs_the_spark_engine_and_an_sc_address(small_input, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("run", "--input", small_input, "--out", out, "--spark-remote", "sc://localhost:15002")
    assert "add --engine spark" in _one_line_error(proc)
    proc = run_cli("run", "--input", small_input, "--out", out, "--engine", "spark", env={"SPARK_REMOTE": "http://x:1"})
    assert "sc://HOST:PORT" in _one_line_error(proc)  # $SPARK_REMOTE is read
    proc = run_cli("run", "--input", small_input, "--out", out, "--spark-state", tmp_path / "state")
    assert "--spark-state goes with the Spark engine: add --engine spark" in _one_line_error(proc)
    assert not out.exists() and not (tmp_path / "state").exists()
    proc = run_cli("runs", "--json")
    assert "give --warehouse FILE, or --spark-state URI" in _one_line_error(proc)


def test_an_unreachable_spark_connect_server_is_one_line_and_exit_1_within_a_minute(small_input, tmp_path):
    """PySpark's default retries waited over ten minutes for a server nobody answers at, ended in a multi-line
    gRPC repr and a RETRIES_EXCEEDED warning, then waited as long again at exit (a SIGTERM there: a traceback)."""
    pytest.importorskip("pyspark.sql.connect.session")
    address, out = f"sc://127.0.0.1:{_free_port()}", tmp_path / "out"  # nothing listens there
    started = time.monotonic()
    # side by side: each waits out the product's bounded retries (about 25 s) on a socket, using no CPU
    run, runs = run_cli_side_by_side(
        (("run", "--input", small_input, "--out", out, "--warehouse", tmp_path / "wh.duckdb", "--engine", "spark",
          "--spark-remote", address, "--no-validate"), None),
        (("runs", "--spark-state", tmp_path / "state"), {"SPARK_REMOTE": address}),
        timeout=120,
    )  # fmt: skip
    line = _one_line_error(run)
    assert f"the Spark Connect server spark connect {address} did not answer" in line and "UNAVAILABLE" in line, line
    assert "RETRIES_EXCEEDED" not in run.stderr and not out.exists()
    assert "did not answer" in _one_line_error(runs)
    assert time.monotonic() - started < 120  # both


def test_an_input_uri_of_another_file_system_needs_a_spark_beside_the_driver(tmp_path):
    # read through Spark's Hadoop file systems (tests/test_remote_input.py), so not by DuckDB, and not by a
    # Spark Connect client, whose server's file systems are not this machine's
    out = tmp_path / "out"
    proc = run_cli("run", "--input", "s3a://bucket/extracts", "--out", out)
    assert "--input s3a://bucket/extracts: a folder on another file system is read through Spark: add --engine spark" in (
        _one_line_error(proc)
    )
    proc = run_cli("run", "--input", "s3a://bucket/extracts", "--out", out, "--engine", "spark", "--spark-remote", "sc://h:1")
    assert "a Spark Connect client cannot copy from the server's file systems" in _one_line_error(proc)
    proc = run_cli("run", "--input", "file://otherhost/extracts", "--out", out)
    assert "a file:// URI names this machine's folder (file:///path)" in _one_line_error(proc)
    assert not out.exists()


@pytest.mark.spark
def test_a_bad_extract_on_another_file_system_is_named_by_its_uri_in_the_error_and_the_run_s_record(java, small_input, tmp_path):
    orders = small_input / "imaging_orders.csv"
    orders.write_text(
        orders.read_text(encoding="utf-8") + "o-bad,p1,2026-01-01T10:00:00,x,y,z,1,2,3,4,5,6,7,8\n", encoding="utf-8"
    )
    lines = orders.read_text(encoding="utf-8").count("\n")
    viewfs = {"spark.hadoop.fs.viewfs.mounttable.bad.link./extracts": small_input.as_uri()}
    config = _config(tmp_path / "spark.toml", conf=viewfs, master="local[2]")
    wh = tmp_path / "wh" / "wh.duckdb"
    proc = run_cli("run", "--input", "viewfs://bad/extracts", "--out", tmp_path / "out", "--warehouse", wh, "--config", config)
    line = _one_line_error(proc, code=2)
    assert f"viewfs://bad/extracts/imaging_orders.csv, line {lines}: cannot be read as CSV" in line and ".scratch-" not in line
    (run,) = json.loads(run_cli("runs", "--warehouse", wh, "--json").stdout)
    assert run["status"] == "failed" and run["error"] == line.removeprefix("order-audit: error: ")
    assert not (tmp_path / "out").exists() and not list(wh.parent.glob(".wh.duckdb.scratch-*"))


def test_a_spark_connect_token_never_reaches_run_json_or_the_log():
    from pipeline.config import Config, Spark

    settings = Spark(remote="sc://workspace.example:443/;token=dapi-secret;x-databricks-cluster-id=c1")
    assert "secret" not in json.dumps(Config(engine="spark", spark=settings).as_dict())
    assert spark_engine.described(settings) == "spark connect sc://workspace.example:443"


def test_an_unknown_engine_or_a_spark_setting_not_a_string_is_a_config_error(small_input, tmp_path):
    config = tmp_path / "spark.toml"
    config.write_text('engine = "spark"\n[spark.conf]\n"spark.driver.memory" = 4\n', encoding="utf-8")
    proc = run_cli("run", "--input", small_input, "--out", tmp_path / "out", "--config", config)
    assert '"spark.setting" = "value"' in _one_line_error(proc)
    config.write_text('engine = "trino"\n', encoding="utf-8")
    proc = run_cli("run", "--input", small_input, "--out", tmp_path / "out", "--config", config)
    assert "one of duckdb, spark" in _one_line_error(proc)
    assert not (tmp_path / "out").exists()


def test_the_spark_submit_entry_file_is_the_command_line():
    # spark-submit runs a .py file (with that file's folder first on sys.path), not -m: the commands are the CLI's
    entry = Path(spark_engine.__file__).parent.parent / "spark_submit.py"
    root = str(entry.parent.parent)
    proc = subprocess.run(
        [sys.executable, str(entry), "runs", "--help"], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": root}
    )
    assert proc.returncode == 0, proc.stderr
    assert "--spark-state URI" in proc.stdout
    assert not spark_engine.submitted()  # PYSPARK_GATEWAY_PORT: only a spark-submit child has it
