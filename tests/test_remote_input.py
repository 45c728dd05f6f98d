"""An --input folder on another file system, copied through the run's Spark session
(pipeline/ingest/remote_input.py): the copy is byte for byte under the files' own names and leaves out
subfolders and hidden files, a URI Spark cannot read is one line naming it, a copy the disk refuses is a
refused write, and logs and errors name the URI. tests/test_spark_engine.py runs the deck through the CLI
from such a folder (viewfs://), compares every output with DuckDB's, and checks a failed run's record.

The Spark tests use the session's local[2] Spark (tests/conftest.py: spark_models); viewfs:// is Hadoop's
own mount-table file system, in Spark's jars: a real file system other than file://, with no server."""

from __future__ import annotations

import logging
import resource
import shutil
from pathlib import Path

import duckdb
import pytest
from conftest import ROOT, write_small_input
from fhir_export import export_extract

from pipeline import audits
from pipeline.cli import _input_folder
from pipeline.config import load_config
from pipeline.errors import InputFileError, QualityGateError, WriteRefusedError
from pipeline.ingest import load, remote_input
from pipeline.logs import setup_logging
from pipeline.models import reference
from pipeline.spark_state import state_uri


def _mount(spark_models, table: str, folder: Path) -> str:
    """viewfs://TABLE/extracts naming ``folder`` (a mount table of its own: Hadoop caches file systems by URI)."""
    conf = spark_models.session._jsc.hadoopConfiguration()
    conf.set(f"fs.viewfs.mounttable.{table}.link./extracts", folder.as_uri())
    return f"viewfs://{table}/extracts"


@pytest.mark.spark
def test_the_folder_s_files_are_copied_byte_for_byte_under_their_own_names(spark_models, tmp_path):
    bucket = tmp_path / "bucket"
    (bucket / "older").mkdir(parents=True)
    (bucket / "imaging_orders.csv").write_bytes(b"order_id,patient_id\r\no1,p\xc3\xa91\r\n")  # CRLF, UTF-8
    (bucket / "Imaging Orders é 100%.csv").write_bytes(b"a space, an accent and a percent sign in the name")
    (bucket / "procedures.csv.gz").write_bytes(bytes(range(256)))
    (bucket / "_SUCCESS").write_bytes(b"")
    (bucket / ".procedures.csv.crc").write_bytes(b"x")
    (bucket / "older" / "imaging_orders.csv").write_bytes(b"not this one")
    scratch = tmp_path / "wh folder é" / ".wh.duckdb.scratch-1"  # the run's scratch: a space and an accent too
    scratch.mkdir(parents=True)
    copy = remote_input.fetch(spark_models.session, _mount(spark_models, "copied", bucket), scratch / "input")
    assert copy == scratch / "input"
    files = sorted(p.name for p in copy.iterdir())
    assert files == ["Imaging Orders é 100%.csv", "imaging_orders.csv", "procedures.csv.gz"]  # no .crc files beside them
    for name in files:
        assert (copy / name).read_bytes() == (bucket / name).read_bytes()
    assert sorted(p.name for p in scratch.iterdir()) == ["input"]  # nothing written outside the copy


@pytest.mark.spark
def test_a_uri_spark_cannot_read_is_one_line_naming_it(spark_models, tmp_path):
    with pytest.raises(InputFileError) as no_connector:
        remote_input.fetch(spark_models.session, "s3a://bucket/extracts", tmp_path / "input")
    message = no_connector.value.message
    assert message.startswith("s3a://bucket/extracts: cannot be listed (")
    assert "org.apache.hadoop.fs.s3a.S3AFileSystem not found" in message and "spark.jars.packages" in message  # no hadoop-aws
    assert "\n" not in message and "py4j" not in message.lower()
    with pytest.raises(InputFileError) as missing:
        remote_input.fetch(spark_models.session, _mount(spark_models, "missing", tmp_path / "nowhere"), tmp_path / "input")
    assert "viewfs://missing/extracts: cannot be listed (java.io.FileNotFoundException" in missing.value.message
    assert list(tmp_path.iterdir()) == []  # nothing copied


@pytest.mark.spark
def test_a_copy_the_disk_refuses_is_a_refused_write_not_an_unreadable_input(spark_models, tmp_path):
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    (bucket / "imaging_orders.csv").write_bytes(b"x" * 3_000_000)
    jvm_pid = spark_models.session._jvm.java.lang.ProcessHandle.current().pid()
    limit = resource.prlimit(jvm_pid, resource.RLIMIT_FSIZE)
    resource.prlimit(jvm_pid, resource.RLIMIT_FSIZE, (1_000_000, limit[1]))  # files over 1 MB: "File too large", as a full disk
    try:
        with pytest.raises(WriteRefusedError) as refused:
            remote_input.fetch(spark_models.session, _mount(spark_models, "full", bucket), tmp_path / "input")
    finally:
        resource.prlimit(jvm_pid, resource.RLIMIT_FSIZE, limit)
    message = refused.value.message
    assert message.startswith("could not copy viewfs://full/extracts/imaging_orders.csv into ")
    assert "File too large" in message and "free space there" in message and refused.value.exit_code == 1


def test_input_names_a_local_folder_or_keeps_another_file_system_s_uri(tmp_path):
    assert _input_folder(None, None, str(tmp_path)) == tmp_path
    assert _input_folder(None, None, tmp_path.as_uri()) == tmp_path
    assert _input_folder(None, None, "file://localhost/srv/extracts") == Path("/srv/extracts")
    assert _input_folder(None, None, "s3a://bucket/extracts/2026-10") == "s3a://bucket/extracts/2026-10"
    assert remote_input.is_remote("abfss://c@acct.dfs.core.windows.net/x") and not remote_input.is_remote("file:///x")


def test_one_scheme_test_for_inputs_and_state_folders():
    assert remote_input.scheme("HDFS:/warehouse/state") == "hdfs" and remote_input.is_remote("hdfs:/x")
    assert remote_input.scheme("C:\\extracts") is None and remote_input.scheme("C:/extracts") is None
    assert remote_input.scheme("/srv/extracts") is None and remote_input.scheme("2026-01:x") is None
    assert state_uri("s3a://bucket/state/") == "s3a://bucket/state"
    assert state_uri("/srv/state") == "file:///srv/state"


def test_the_readers_name_a_copy_s_files_by_the_uri(tmp_path):
    # the readers take the run's naming (remote_input.shown_as): the located files, an export's per-file labels
    # (which rejects and the ledger name), the site code map's rows and run.json's reference files
    copy, uri = tmp_path / ".wh.duckdb.scratch-x" / "input", "s3a://bucket/export"
    export_extract(write_small_input(tmp_path / "csv"), copy, lines_per_file=3, variety=False)
    shutil.copy(ROOT / "examples" / "local_code_map.csv", copy / "local_code_map.csv")
    cfg, shown = load_config(), remote_input.shown_as(copy, uri)
    inputs = load.find_inputs(copy, cfg, shown)
    assert inputs["imaging_orders"].label.startswith(f"{uri}/ServiceRequest (")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    prepared = load.prepare_inputs(inputs, cfg, scratch, shown=shown)
    labels = [s.label for s in prepared["imaging_orders"].segments]
    assert f"{uri}/ServiceRequest.000.ndjson" in labels and f"{uri}/ServiceRequest.001.ndjson" in labels
    assert all(label.startswith(f"{uri}/") for prep in prepared.values() for label in [s.label for s in prep.segments])
    con = duckdb.connect()
    try:
        ref = reference.load_reference(con, cfg, copy, audits.discover(cfg.audits_path), shown)
        sources = {row[0] for row in con.execute("SELECT DISTINCT source_file FROM ref_imaging_codes").fetchall()}
    finally:
        con.close()
    assert f"{uri}/local_code_map.csv" in sources and not any(str(copy) in s for s in sources)
    assert [f["path"] for f in ref.files if f["name"] == "local_code_map"] == [f"{uri}/local_code_map.csv"]
    assert remote_input.shown_as(copy, None)(str(copy / "x.csv")) == str(copy / "x.csv")  # a local folder as it is


def test_log_lines_and_errors_name_the_uri_not_the_copy(tmp_path, capsys):
    copy, uri = tmp_path / ".wh.duckdb.scratch-x" / "input", "s3a://bucket/export"
    setup_logging("text", 0)
    log = logging.getLogger("pipeline.ingest.fhir")
    with pytest.raises(QualityGateError) as stopped, remote_input.names_by_uri(uri, copy):
        log.info("%s: read line by line", copy / "Patient.000.ndjson")
        raise QualityGateError(f"{copy}/imaging_orders.csv: 3 rows fail a blocking check")
    assert stopped.value.message == stopped.value.args[0] == f"{uri}/imaging_orders.csv: 3 rows fail a blocking check"
    log.info("%s: after the run", copy)
    lines = capsys.readouterr().err.splitlines()
    assert lines[-2] == f"order-audit: {uri}/Patient.000.ndjson: read line by line"
    assert lines[-1] == f"order-audit: {copy}: after the run"  # the filter is gone with the run
