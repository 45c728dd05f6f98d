"""An --input folder on a file system Spark's Hadoop reads (s3a://, abfss://, gs://, hdfs://, viewfs://):
copied into the run's scratch folder through its Spark session, then fingerprinted, checked and parsed
there as a local folder, and named by its URI wherever the run names a file.

Why a copy rather than Spark reading the URI: the ledger's idempotence is each file's content hash,
the header checks read each file's first lines, and a rejected record's physical line is found in
its bytes: all of it needs the whole file on the driver anyway, so one copy through Hadoop's own
``FileUtil`` (byte for byte, in the JVM, never through Python) costs a single read of the store. The
scratch folder sits beside the warehouse (which holds the same raw rows), goes when the run ends, and
a killed run's is swept by the next run of that warehouse. The connector (hadoop-aws, hadoop-azure,
gcs-connector) and its credentials come from the session's Hadoop configuration: ``[spark.conf]``
``spark.hadoop.*`` keys, spark-defaults.conf, spark-submit.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import AuditError, ConfigError, InputFileError, WriteRefusedError, first_line
from pipeline.wording import counted

log = logging.getLogger(__name__)

# two letters or more: "C:" is a Windows drive, not a scheme; Hadoop also reads "hdfs:/path" (default authority)
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+):")
_LOCAL_WRITE_FAILED = "org.apache.hadoop.fs.FSError"  # how Hadoop's local file system reports a refused write
_FIX = (
    "Check the URI, and that the session's Hadoop configuration has the file system's connector and credentials "
    "([spark.conf] spark.hadoop.* keys, spark.jars.packages)"
)


def scheme(text: str) -> str | None:
    """The URI scheme ``text`` starts with, lower case, or None for a path of this machine."""
    match = _SCHEME.match(text)
    return match["scheme"].lower() if match else None


def is_remote(text: str) -> bool:
    """A URI of a file system other than this machine's (file:// is a local folder)."""
    return scheme(text) not in (None, "file")


def refused_with(engine: str, remote: str | None, uri: str) -> ConfigError | None:
    """Why this run cannot read ``uri``, or None: only a Spark session whose JVM runs beside this
    process (a local master, or spark-submit's driver) can copy from the file systems Hadoop reads."""
    if engine != "spark":
        return ConfigError(
            f"--input {uri}: a folder on another file system is read through Spark: add --engine spark "
            "(with the file system's connector in [spark.conf]), or copy it to a folder this machine reads"
        )
    if remote:
        return ConfigError(
            f"--input {uri}: a Spark Connect client cannot copy from the server's file systems; run with a local "
            "Spark or under spark-submit, or copy the folder to this machine (aws s3 sync, azcopy, gcloud storage cp)"
        )
    return None


def fetch(session, uri: str, into: Path) -> Path:
    """The folder's files (not its subfolders, nor hidden ``.``/``_`` files such as a job's ``_SUCCESS``)
    copied into the new folder ``into``; returns it. One line when the URI cannot be read or the copy
    cannot be written."""
    jvm = session._jvm
    conf = session._jsc.hadoopConfiguration()
    hadoop = jvm.org.apache.hadoop.fs
    folder = hadoop.Path(uri)
    try:
        fs = folder.getFileSystem(conf)
        statuses = [s for s in fs.listStatus(folder) if s.isFile() and not s.getPath().getName().startswith((".", "_"))]
    except Exception as exc:  # noqa: BLE001 (py4j wraps every Java exception in one type)
        raise InputFileError(uri, f"cannot be listed ({_java_reason(exc)})", _FIX) from None
    local = hadoop.FileSystem.getLocal(conf).getRaw()  # the raw one writes no .crc files beside the copies
    into.mkdir()
    for status in statuses:
        source = status.getPath()
        # the local name as a URI built from its parts: a path given as text would be read as an
        # already-encoded URI (a space or an accent in it would come out as %20 or %C3%A9)
        target = hadoop.Path(jvm.java.net.URI("file", None, str(into / source.getName()), None))
        try:
            hadoop.FileUtil.copy(fs, source, local, target, False, conf)
        except Exception as exc:  # noqa: BLE001
            reason = _java_reason(exc)
            if _LOCAL_WRITE_FAILED in reason:
                raise WriteRefusedError(
                    f"could not copy {source.toString()} into {into.parent} beside the warehouse ({reason}); "
                    "nothing was changed: free space there (the run needs one copy of the extracts), then run again"
                ) from None
            raise InputFileError(source.toString(), f"cannot be read ({reason})", _FIX) from None
    size = sum(s.getLen() for s in statuses)
    log.info("fetched %s (%.1f MB) from %s", counted(len(statuses), "file"), size / 1e6, uri)
    return into


def _java_reason(exc: BaseException) -> str:
    """The Java exception's own one line (class: message), not py4j's 'An error occurred while calling'."""
    return first_line(getattr(exc, "java_exception", None) or exc)


def _as_uri(text: str, local: Path, uri: str) -> str:
    """``text`` naming the user's files: the copy's folder replaced by the URI they gave."""
    return text.replace(str(local), uri.rstrip("/"))


def shown_as(local: Path | None, uri: str | None) -> Callable[[str], str]:
    """How the run names a file of its input folder (its path, or a label that holds it): as it is, or, for
    the copy of a folder on another file system, by the URI the user gave. The readers take it (find_inputs,
    prepare_inputs, load_reference) and name each file with it as they meet it: the ledger, the rejects, an
    export's file labels, the code map's rows and run.json's reference files never hold the copy's path."""
    if uri is None or local is None:
        return str
    return functools.partial(_as_uri, local=local, uri=uri)


@contextlib.contextmanager
def names_by_uri(uri: str | None, local: Path):
    """While the run reads the copy at ``local``: every log line, and the message of an error it raises
    (before the run records it), names ``uri`` instead. Nothing to do for a local --input (``uri`` None)."""
    if uri is None:
        yield
        return
    renaming = _RenamingFilter(local, uri)
    handlers = list(logging.getLogger("pipeline").handlers)
    for handler in handlers:
        handler.addFilter(renaming)
    try:
        yield
    except AuditError as error:
        error.message = _as_uri(error.message, local, uri)
        error.args = (error.message, *error.args[1:])
        raise
    finally:
        for handler in handlers:
            handler.removeFilter(renaming)


class _RenamingFilter(logging.Filter):
    def __init__(self, local: Path, uri: str):
        super().__init__()
        self.local, self.uri = local, uri

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if str(self.local) in message:
            record.msg, record.args = _as_uri(message, self.local, self.uri), None
        return True
