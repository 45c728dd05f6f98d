"""Opening the DuckDB warehouse: one writer at a time, UTC session, no progress bar; only a file order-audit made."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import socket
from pathlib import Path

import duckdb

from pipeline import locks, ownership
from pipeline.errors import (
    ConfigError,
    WarehouseLockedError,
    WriteRefusedError,
    exceptions_behind,
    first_line,
    printable,
    refused_write,
)
from pipeline.locks import describe
from pipeline.sqltext import literal

DEFAULT_MEMORY_LIMIT = "4GB"
MEMORY_LIMIT_ENV = "ORDER_AUDIT_MEMORY_LIMIT"


def memory_limit() -> str:
    """DuckDB's memory limit for the pipeline's connections ($ORDER_AUDIT_MEMORY_LIMIT, default 4GB)."""
    value = os.environ.get(MEMORY_LIMIT_ENV, DEFAULT_MEMORY_LIMIT).strip()
    if not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", value, re.IGNORECASE):
        raise ConfigError(f"{MEMORY_LIMIT_ENV}={value!r} is not a size like 4GB or 512MB")
    return value


def real_path(path: Path | str) -> Path:
    """The warehouse file with every symlink resolved: one warehouse, one lock, one .sources folder."""
    return Path(path).resolve()


def database_text(path: Path | str, named: str = "--warehouse") -> str:
    """What ``duckdb.connect`` gets for a database file: the absolute path, or one line when DuckDB would misread it.

    Relative, a name such as ``md:wh.duckdb`` or ``s3:wh.duckdb`` is to DuckDB an extension's prefix: `runs` tried to
    download MotherDuck's extension instead of reading the file. A ``?`` anywhere in the path DuckDB takes for the
    start of URL parameters and puts the write-ahead log before it (``/a?b/wh.duckdb`` logs to ``/a.wal?b/wh.duckdb``):
    the first commit failed with a traceback after the whole parse, or wrote the log under another file's name.
    ``named``: what the user set to choose the path (the option, or TMPDIR for a scratch file)."""
    text = os.path.abspath(path)
    remedy = "set TMPDIR to a folder" if named == "TMPDIR" else f"give {named} a path"
    if "?" in text:
        at = text.index("?")
        raise ConfigError(
            f"{named} {path}: a DuckDB database cannot live at a path holding '?' (DuckDB reads what follows it as "
            f"options and would write its log to {text[:at]}.wal{text[at:]}); {remedy} without '?' (nothing was changed)"
        )
    if "\\" in text:
        # DuckDB reads a backslash as a folder separator: '/a/b\\user.duckdb' opened (and wrote to) /a/b/user.duckdb,
        # another file than the one the lock and the ownership checks were made on
        raise ConfigError(
            f"{named} {printable(str(path))}: a DuckDB database cannot live at a path holding a backslash (DuckDB reads "
            f"it as a folder separator and would open another file); {remedy} without '\\' (nothing was changed)"
        )
    return text


def connect(path: Path | str, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    path = Path(path)
    text = database_text(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    try:
        con = duckdb.connect(text, read_only=read_only)
    except duckdb.Error as exc:
        text = str(exc)
        problem = refused_write(exc)
        if problem is not None and not read_only:  # a full disk is no damaged file: nothing to restore
            if new:  # the stub DuckDB began (its first 4 KB) would stop every later run as a damaged file
                for made in (path, path.with_name(path.name + ".wal")):
                    made.unlink(missing_ok=True)
            raise WriteRefusedError(
                f"--warehouse {path}: could not write ({problem}); nothing was changed: free space or fix the folder, "
                "then run again"
            ) from None
        if "Could not set lock" not in text and "Conflicting lock" not in text:
            # not a DuckDB file, corrupt, written by a newer DuckDB, unreadable: one line, not a traceback
            raise ConfigError(
                f"--warehouse {path} cannot be opened: {' '.join(text.split())} (nothing was changed; restore the file "
                "from a backup, or give a new path to start a warehouse)"
            ) from None
        run = running_run(path)
        if run is not None and run.get("pid") != os.getpid():  # another order-audit run
            raise WarehouseLockedError(
                f"{path}: {describe(run)} holds the warehouse for writing; wait for it "
                "to finish (readers can open it once the run ends)"
            ) from None
        pid = re.search(r"PID (\d+)", text)
        holder = f" (process {pid.group(1)})" if pid else ""
        raise WarehouseLockedError(
            f"{path}: another process holds the warehouse file open {_how_held(text, read_only, holder)} (DuckDB's "
            "lock; not an order-audit run); wait for it to close the file, or pass a different --warehouse"
        ) from None
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    if not read_only:
        # bounded memory: DuckDB spills to <warehouse>.tmp beyond this instead of taking 80% of RAM
        con.execute(f"SET memory_limit = {literal(memory_limit())}")
    return con


def _how_held(text: str, read_only: bool, holder: str) -> str:
    """How the process DuckDB's lock names (``holder``: its process id, in words) holds the file, as far as DuckDB's
    words tell. Its file lock is one lock for readers and writers: a dashboard's read-only connection blocks a run
    as a writer does, and was reported as a writer. DuckDB adds that the file could be opened read-only when its
    holder only reads; without that sentence the holder may do either."""
    if read_only:  # a reader is blocked by a writer only
        return f"for writing{holder}"
    if "open this database in read-only mode" in text:
        return f"read-only{holder}, a DuckDB connection such as a dashboard's or a notebook's; a run needs the file to itself"
    return f"({holder.strip(' ()') + ', ' if holder else ''}a DuckDB connection, read-only or for writing)"


# The warehouse's own mark: a table every run makes in the file (``mark_ours``). A file holding anything else
# is someone else's database, whose tables a run would alter and fill (a user's table named audit_runs got the
# history's columns added before the run crashed).
MARK_TABLE = "order_audit_warehouse"
# a warehouse made before the mark: the run history every run has recorded itself in since the warehouse
# kept one (history.DDL, first version; later columns are additions), which no other program writes
LEGACY_HISTORY = (
    "audit_runs",
    frozenset(
        ("run_id", "command", "status", "periods", "input_dir", "started_at", "finished_at", "duration_seconds")
        + ("pid", "counts", "timings", "error")
    ),
)
_OBJECTS = """
    SELECT 'table ' || table_name FROM duckdb_tables() WHERE database_name = current_database() AND NOT internal
    UNION ALL SELECT 'view ' || view_name FROM duckdb_views() WHERE database_name = current_database() AND NOT internal
    UNION ALL SELECT 'schema ' || schema_name FROM duckdb_schemas()
              WHERE database_name = current_database() AND NOT internal AND schema_name <> 'main'
    UNION ALL SELECT 'sequence ' || sequence_name FROM duckdb_sequences() WHERE database_name = current_database()
    UNION ALL SELECT 'macro ' || function_name FROM duckdb_functions()
              WHERE database_name = current_database() AND NOT internal AND function_type IN ('macro', 'table_macro')
    UNION ALL SELECT 'type ' || type_name FROM duckdb_types() WHERE database_name = current_database() AND NOT internal
    ORDER BY 1"""


def mark_ours(con: duckdb.DuckDBPyConnection) -> None:
    """Mark the warehouse as order-audit's (a new one, or one an earlier version made: it is adopted)."""
    con.execute(f"CREATE TABLE IF NOT EXISTS {MARK_TABLE} (made_by VARCHAR, marked_at TIMESTAMPTZ)")
    con.execute(f"INSERT INTO {MARK_TABLE} SELECT 'order-audit', now() WHERE NOT EXISTS (SELECT 1 FROM {MARK_TABLE})")


def someone_elses(con: duckdb.DuckDBPyConnection) -> list[str] | None:
    """What the database holds when order-audit did not make it (e.g. ``['table sales', 'table audit_runs']``);
    None for a warehouse of ours (its mark, or an earlier version's run history) or a database holding nothing."""
    from pipeline import db

    objects = [r[0] for r in con.execute(_OBJECTS).fetchall()]
    if not objects or f"table {MARK_TABLE}" in objects:
        return None
    table, columns = LEGACY_HISTORY
    if columns <= db.columns(con, table):
        return None
    return objects


def check_is_ours(path: Path | str, reader: bool = False) -> None:
    """Refuse, before anything is written or made, a DuckDB file order-audit did not make (it holds tables of
    someone else's). A new path passes (a run makes the warehouse), as does an empty DuckDB file. ``reader``: runs,
    diff, validate, which never make a warehouse. A file another process holds open is not looked into: the run
    checks again once it holds the writer lock (``writer_lock``), and a reader's own opening says who holds it
    (exit 4)."""
    path = Path(path)
    if not path.is_file():
        return
    try:
        con = connect(path, read_only=True)
    except WarehouseLockedError:
        return
    try:
        with damage_named(path, kept="nothing was changed", reader=reader):
            held = someone_elses(con)
    finally:
        con.close()
    if held is not None:
        fix = "give --warehouse the file an earlier run made" + ("" if reader else ", or a new path to start a warehouse")
        shown = ", ".join(held[:3]) + (f" and {len(held) - 3:,} more" if len(held) > 3 else "")
        raise ConfigError(
            f"--warehouse {path} is a DuckDB database that order-audit did not make (it holds {shown}); {fix} "
            "(nothing was changed)"
        )


# DuckDB's words for a database file it cannot read back as written (a checksum, a block past the end); its
# Python error is the plain duckdb.Error, so the text tells. A damaged input Parquet file or temp file is no
# damaged warehouse: "Corrupt Parquet file", "Corrupt temporary file" are left out.
_DAMAGE = re.compile(r"Corrupt database file|Corrupt (Encrypted )?WAL|Corrupt file - database|Corrupted \w")
_SHORT_READ = re.compile(r'Could not read enough bytes from file "([^"]*)"')


def damage(exc: BaseException, path: Path | str) -> str | None:
    """DuckDB's first line when ``exc`` (or an error behind it) says the warehouse file ``path`` is damaged; else
    None (any other failure, a bug included, stays what it is)."""
    files = {os.path.abspath(path), os.path.abspath(str(path) + ".wal")}
    for e in exceptions_behind(exc):
        if not isinstance(e, duckdb.Error):
            continue
        text = str(e)
        short = _SHORT_READ.search(text)
        if _DAMAGE.search(text) or (short is not None and short.group(1) in files):
            return " ".join(first_line(e).split())
    return None


def damaged_error(path: Path | str, problem: str, kept: str, reader: bool = False) -> ConfigError:
    """The one line for a damaged warehouse file: what DuckDB found, what the command left, and the remedy."""
    fix = "restore the file from a backup" + ("" if reader else ", or point --warehouse at a new path to start a new warehouse")
    return ConfigError(f"--warehouse {path} is damaged ({problem}); {kept}: {fix}")


# DuckDB's words for a Parquet file it cannot find or read as Parquet (cut short, overwritten, emptied), with the file
_STORE_FILE = re.compile(
    r'No files found that match the pattern "(?P<missing>[^"]*)"'
    r"|No magic bytes found at end of file '(?P<damaged>[^']*)'|File '(?P<small>[^']*)' too small to be a Parquet file"
)


def store_damage_error(exc: BaseException, path: Path | str, kept: str) -> ConfigError | None:
    """One line for a file of the warehouse's store (``<warehouse>.sources``: the rows of each load) that is gone or
    no Parquet file now (a restore that left the folder out, a disk that cut it short), found while a command reads
    it; None for any other failure. Without it the gate's or the merge's read of it was "a bug in order-audit",
    exit 70, with a traceback."""
    from pipeline.ingest.source_store import store_root  # the store's one home for its name (error path only)

    store = os.path.join(str(store_root(real_path(path))), "")
    for e in exceptions_behind(exc):
        found = _STORE_FILE.search(str(e)) if isinstance(e, duckdb.Error) else None
        if found is None:
            continue
        file = found.group("missing") or found.group("damaged") or found.group("small")
        if os.path.abspath(file).startswith(store):
            what = "is missing" if found.group("missing") else f"is damaged ({' '.join(first_line(e).split())})"
            return ConfigError(
                f"--warehouse {path}: its stored rows file {file} {what}; {kept}: restore the warehouse's "
                f"{Path(store).name} folder with the warehouse file from the same backup"
            )
    return None


@contextlib.contextmanager
def store_damage_named(path: Path | str, kept: str):
    """A file of the warehouse's store found gone or damaged while the block reads it becomes one line naming it."""
    try:
        yield
    except Exception as exc:
        error = store_damage_error(exc, path, kept)
        if error is None:
            raise
        raise error from None


@contextlib.contextmanager
def damage_named(path: Path | str, kept: str, reader: bool = False):
    """A damaged file found while the block reads the warehouse becomes one line naming it (``damaged_error``)."""
    try:
        yield
    except Exception as exc:
        problem = damage(exc, path)
        if problem is None:
            raise
        raise damaged_error(path, problem, kept, reader) from None


def set_pseudonym_key(con: duckdb.DuckDBPyConnection, key: bytes) -> None:
    """HMAC pads for the pseudonym model, in a temp table that never reaches the file."""
    block = key if len(key) <= 64 else hashlib.sha256(key).digest()
    block = block.ljust(64, b"\0")
    ipad = bytes(b ^ 0x36 for b in block)
    opad = bytes(b ^ 0x5C for b in block)
    con.execute("CREATE OR REPLACE TEMP TABLE pseudonym_key_pads AS SELECT ?::BLOB AS ipad, ?::BLOB AS opad", [ipad, opad])


def _lock_path(path: Path) -> Path:
    path = real_path(path)  # wh2.duckdb -> wh.duckdb takes wh.duckdb's lock
    return path.with_name(path.name + ".lock")


def running_run(path: Path | str) -> dict | None:
    """The order-audit run holding the writer lock of this warehouse now, or None."""
    lock_path = _lock_path(Path(path))
    if not lock_path.exists():
        return None
    with open(lock_path, encoding="utf-8") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return json.loads(fh.read() or "{}")
            except json.JSONDecodeError:
                return {}
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


def run_is_gone(path: Path | str, run_id: str) -> bool:
    """Whether a run the history records as running (or publishing) has ended without saying so (killed, out
    of memory): the lock file names another run, or names it with a process of this machine that no longer
    exists. The file is read, not locked (a probe of the lock could make a run that starts now exit 4);
    False where it cannot tell (no lock file, a run on another machine)."""
    try:
        holder = json.loads(_lock_path(Path(path)).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return False
    if not isinstance(holder, dict) or not holder.get("run_id"):
        return False
    if holder["run_id"] != run_id:
        return True  # a later run took the lock (and records this one as interrupted)
    return holder.get("host") == socket.gethostname() and not ownership.process_alive(int(holder.get("pid", 0)))


@contextlib.contextmanager
def writer_lock(path: Path, run_id: str, command: str):
    """Hold <warehouse>.lock for the whole run: one writer at a time, named in the refusal (``locks.held``). The
    file is checked again under the lock (``check_is_ours``): the check before it could not look into a file
    another process held open, nor see it replaced since; a lock file made for a refused file is removed."""
    path = Path(path)
    lock_path = _lock_path(path)

    def refusal(holder: dict) -> str:
        return (
            f"{path}: {describe(holder)} holds the warehouse; wait for it to finish "
            "(order-audit runs lists it), or pass a different --warehouse"
        )

    with locks.held(lock_path, path, run_id, command, f"--warehouse {path}", refusal) as made:
        try:
            check_is_ours(path)
        except ConfigError:
            if made:  # held by us alone, and a refused run writes nothing: no other holder loses its lock
                lock_path.unlink(missing_ok=True)
            raise
        yield
