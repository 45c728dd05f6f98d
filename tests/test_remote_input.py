"""An --input folder on another file system, copied through the run's Spark session
(pipeline/ingest/remote_input.py): the copy is byte for byte and leaves out subfolders and hidden files, a
URI Spark cannot read is one line naming it, and a killed run's copy is swept. tests/test_spark_engine.py
runs the deck through the CLI from such a folder (viewfs://) and compares every output with DuckDB's.

The Spark tests use the session's local[2] Spark (tests/conftest.py: spark_models); viewfs:// is Hadoop's
own mount-table file system, in Spark's jars: a real file system other than file://, with no server."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import ownership
from pipeline.cli import _input_folder
from pipeline.errors import InputFileError
from pipeline.ingest import remote_input
from pipeline.ingest.segments import Segment
from pipeline.logs import setup_logging


def _mount(spark_models, table: str, folder: Path) -> str:
    """viewfs://TABLE/extracts naming ``folder`` (a mount table of its own: Hadoop caches file systems by URI)."""
    conf = spark_models.session._jsc.hadoopConfiguration()
    conf.set(f"fs.viewfs.mounttable.{table}.link./extracts", folder.as_uri())
    return f"viewfs://{table}/extracts"


@pytest.mark.spark
def test_the_folder_s_files_are_copied_byte_for_byte(spark_models, tmp_path):
    bucket = tmp_path / "bucket"
    (bucket / "older").mkdir(parents=True)
    (bucket / "imaging_orders.csv").write_bytes(b"order_id,patient_id\r\no1,p\xc3\xa91\r\n")  # CRLF, UTF-8
    (bucket / "procedures.csv.gz").write_bytes(bytes(range(256)))
    (bucket / "_SUCCESS").write_bytes(b"")
    (bucket / ".procedures.csv.crc").write_bytes(b"x")
    (bucket / "older" / "imaging_orders.csv").write_bytes(b"not this one")
    parent = tmp_path / "out-parent"
    parent.mkdir()
    copy = remote_input.fetch(spark_models.session, _mount(spark_models, "copied", bucket), parent)
    assert copy.parent == parent and copy.name.startswith(f".order-audit-fetch-{os.getpid()}-")
    files = sorted(p.name for p in copy.iterdir() if p.name != ownership.MARK)
    assert files == ["imaging_orders.csv", "procedures.csv.gz"]  # no .crc files written beside the copies
    for name in files:
        assert (copy / name).read_bytes() == (bucket / name).read_bytes()


@pytest.mark.spark
def test_a_uri_spark_cannot_read_is_one_line_naming_it(spark_models, tmp_path):
    with pytest.raises(InputFileError) as no_connector:
        remote_input.fetch(spark_models.session, "s3a://bucket/extracts", tmp_path)
    message = no_connector.value.message
    assert message.startswith("s3a://bucket/extracts: cannot be listed (")
    assert "org.apache.hadoop.fs.s3a.S3AFileSystem not found" in message and "spark.jars.packages" in message  # no hadoop-aws
    assert "\n" not in message and "py4j" not in message.lower()
    with pytest.raises(InputFileError) as missing:
        remote_input.fetch(spark_models.session, _mount(spark_models, "missing", tmp_path / "nowhere"), tmp_path)
    assert "viewfs://missing/extracts: cannot be listed (java.io.FileNotFoundException" in missing.value.message
    assert list(tmp_path.iterdir()) == []  # nothing copied, nothing left


def test_a_killed_run_s_copy_is_swept_and_a_live_one_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    left = ownership.make_temp_dir(f"{remote_input.FETCH_PREFIX}{int(dead.stdout)}-", tmp_path)
    ours = ownership.make_temp_dir(f"{remote_input.FETCH_PREFIX}{os.getpid()}-", tmp_path)
    users = tmp_path / f"{remote_input.FETCH_PREFIX}{int(dead.stdout)}-theirs"
    users.mkdir()  # the same shape, not made by order-audit: left alone
    assert remote_input.sweep(tmp_path) == [left]
    assert ours.exists() and users.exists() and not left.exists()


def test_input_names_a_local_folder_or_keeps_another_file_system_s_uri(tmp_path):
    assert _input_folder(None, None, str(tmp_path)) == tmp_path
    assert _input_folder(None, None, tmp_path.as_uri()) == tmp_path
    assert _input_folder(None, None, "file://localhost/srv/extracts") == Path("/srv/extracts")
    assert _input_folder(None, None, "s3a://bucket/extracts/2026-10") == "s3a://bucket/extracts/2026-10"
    assert remote_input.is_remote("abfss://c@acct.dfs.core.windows.net/x") and not remote_input.is_remote("file:///x")


def test_log_lines_and_an_export_s_file_labels_name_the_uri_not_the_copy(tmp_path, capsys):
    copy, uri = tmp_path / ".order-audit-fetch-1-x", "s3a://bucket/export"

    class Prepared:
        segments = [Segment(f"{copy}/ServiceRequest.000.ndjson", 1, 10), Segment(f"{copy}/ServiceRequest.001.ndjson", 11, 12)]

    prepared = {"imaging_orders": Prepared()}
    remote_input.name_segments(prepared, copy, uri)
    assert [s.label for s in prepared["imaging_orders"].segments] == [
        f"{uri}/ServiceRequest.000.ndjson",
        f"{uri}/ServiceRequest.001.ndjson",
    ]
    setup_logging("text", 0)
    log = logging.getLogger("pipeline.ingest.fhir")
    with remote_input.log_names_by_uri(copy, uri):
        log.info("%s: read line by line", copy / "Patient.000.ndjson")
    log.info("%s: after the run", copy)
    lines = capsys.readouterr().err.splitlines()
    assert lines[-2] == f"order-audit: {uri}/Patient.000.ndjson: read line by line"
    assert lines[-1] == f"order-audit: {copy}: after the run"  # the filter is gone with the run
