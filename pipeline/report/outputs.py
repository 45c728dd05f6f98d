"""Data outputs (tables as CSV and Parquet) and atomic publication of an output folder."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from pathlib import Path, PurePosixPath

import duckdb

from pipeline import ownership
from pipeline.errors import ConfigError
from pipeline.formula_guard import neutralise_sql
from pipeline.ingest.source_store import LIVE_LOAD
from pipeline.months import MONTH
from pipeline.sqltext import ident, literal

# table in the warehouse -> output file stem, and the formats written
DATA_OUTPUTS = {
    "mart_audited_orders": ("audited_orders", ("csv", "parquet")),
    "mart_cases": ("cases", ("csv", "parquet")),
    "mart_attrition": ("attrition", ("csv",)),
    "load_rejects": ("rejects", ("csv",)),
    "load_reject_groups": ("rejects_summary", ("csv",)),
    "load_ledger": ("load_ledger", ("csv",)),
}


# Parquet keeps types: the marts hold instants as ISO text, which the CSV files keep; the audit's
# manifest ([outputs.parquet_types], audits.PARQUET_KINDS) names the columns the Parquet files type.


# The row order of each standard mart in its files: engines do not keep the order of a CREATE TABLE AS
# (Spark, Trino), so the order is given here and every reader that lists rows sorts by it. An attrition
# mart's rows of one step follow the audit's own order (its ``row_order``: rule order for the reasons' rows,
# the model's for the rest), not the alphabet ("Excluded: outside_window" came before the rule listed ahead
# of it); an audit without the column gets them by name.
ROW_ORDER = {
    "mart_audited_orders": ("index_at", "case_id", "ordered_at NULLS LAST", "order_id"),
    "mart_cases": ("index_at", "case_id"),
    "mart_attrition": ("step_order", "kind DESC", "row_order", "step"),
}
# columns that only order a mart's rows: its files leave them out (attrition.csv's columns stay the contract's)
SORT_ONLY = {"mart_attrition": ("row_order",)}


def order_by(table: str, alias: str = "", columns: set[str] | None = None) -> str:
    """The ORDER BY list of a standard mart (``ROW_ORDER``), its columns qualified with ``alias``; with
    ``columns``, only the keys the audit's mart has (an audit need not have every one)."""
    keys = [k for k in ROW_ORDER[table] if columns is None or k.split()[0] in columns]
    return ", ".join(f"{alias}.{key}" if alias else key for key in keys)


def _ordered(con: duckdb.DuckDBPyConnection, table: str, query: str) -> str:
    """``query`` (which reads ``FROM (...) AS q``) in the table's ``ROW_ORDER``, on the mart's own values."""
    if table not in ROW_ORDER:
        return query
    columns = {name for name, *_ in con.execute(f"DESCRIBE ({query})").fetchall()}
    keys = order_by(table, "q", columns)
    hidden = [c for c in SORT_ONLY.get(table, ()) if c in columns]
    if hidden:  # ordered by them, then left out of the file
        return f"SELECT * EXCLUDE ({', '.join(hidden)}) FROM ({query}) AS q ORDER BY {keys}"
    return f"{query} ORDER BY {keys}" if keys else query


def _parquet_query(con: duckdb.DuckDBPyConnection, table: str, query: str, types: dict[str, str], manifest: Path) -> str:
    """``query`` with the text instants the audit declares for the table cast to their types; a declared
    column the mart lacks stops the write (the manifest is wrong)."""
    present = {name for name, *_ in con.execute(f"DESCRIBE ({query})").fetchall()}
    missing = sorted(set(types) - present)
    if missing:
        raise ConfigError(
            f"{manifest}: [outputs.parquet_types] {table} names {', '.join(missing)}, a column the audit's "
            f"{table} does not have; name the mart's columns"
        )
    if not types:
        return f"SELECT * FROM ({query}) AS q"
    casts = ", ".join(f"CAST({col} AS {kind}) AS {col}" for col, kind in types.items())
    return f"SELECT * REPLACE ({casts}) FROM ({query}) AS q"


# rejects and ledger: the load ids and times of a run are not data (reruns stay byte-identical)
OUTPUT_QUERIES = {
    "load_rejects": "SELECT table_name, source_file, source_line, column_name, value, reason, action FROM load_rejects "
    "ORDER BY table_name, source_file, source_line, column_name, reason",
    # every kind of reject with its count: rejects.csv lists the first ingest.reject_listing.LISTED_PER_KIND of each
    "load_reject_groups": "SELECT table_name, source_file, column_name, reason, action, sum(rows)::BIGINT AS rows, "
    "sum(rows_listed)::BIGINT AS rows_listed, (sum(rows) - sum(rows_listed))::BIGINT AS rows_not_listed "
    "FROM load_reject_groups GROUP BY ALL ORDER BY table_name, source_file, column_name, reason, action",
    "load_ledger": "SELECT table_name, path, sha256, first_month, last_month, rows_read, rows_loaded, rows_rejected "
    f"FROM load_ledger WHERE {LIVE_LOAD} "
    "ORDER BY table_name, first_month, path",
}


def write_tables(
    con: duckdb.DuckDBPyConnection, out_dir: Path, parquet_types: dict[str, dict[str, str]], manifest: Path | None = None
) -> list[Path]:
    """COPY each mart to CSV/Parquet in its ``ROW_ORDER``, so reruns are byte-identical.

    In CSV, text that a spreadsheet would run as a formula is neutralised (formula_guard); Parquet
    keeps the raw text and types the columns ``parquet_types`` names (table -> column -> type: the
    audit's ``manifest``)."""
    written = []
    for table, (stem, formats) in DATA_OUTPUTS.items():
        query = OUTPUT_QUERIES.get(table, f"SELECT * FROM {table}")
        for fmt in formats:
            path = out_dir / f"{stem}.{fmt}"
            if fmt == "csv":
                rows = _ordered(con, table, _spreadsheet_safe(con, query))
                con.execute(f"COPY ({rows}) TO {literal(path)} (FORMAT csv, HEADER true)")
            else:
                rows = _ordered(con, table, _parquet_query(con, table, query, parquet_types.get(table, {}), manifest))
                con.execute(f"COPY ({rows}) TO {literal(path)} (FORMAT parquet, COMPRESSION zstd)")
            written.append(path)
    return written


def _spreadsheet_safe(con: duckdb.DuckDBPyConnection, query: str) -> str:
    """The query with every text column neutralised for spreadsheets (numbers and times unchanged)."""
    columns = con.execute(f"DESCRIBE ({query})").fetchall()
    select = [
        f"{neutralise_sql(ident(name))} AS {ident(name)}" if kind == "VARCHAR" else ident(name) for name, kind, *_ in columns
    ]
    return f"SELECT {', '.join(select)} FROM ({query}) AS q"


def write_json(path: Path, payload: dict) -> Path:
    """Written beside and renamed over: never into the file already there, which may be a hard link into a
    published version (``carry_unpublished``)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def staged_inside(out_dir: Path) -> bool:
    """Whether ``out_dir``'s outputs are staged inside it rather than beside it: a real folder that a run can
    neither replace by a symlink nor reach by a rename from the folder above, because it is a mount point
    (a tmpfs, a container's volume: another file system, where a rename from beside it fails with EXDEV) or
    the folder above it takes no new files (a service account owning /srv/reports but not /srv). It is then
    updated file by file (``publish``)."""
    out_dir = Path(out_dir)
    if out_dir.is_symlink() or not out_dir.is_dir():
        return False
    return mount_point(out_dir) or not os.access(out_dir.parent, os.W_OK | os.X_OK)


def mount_point(folder: Path) -> bool:
    """Whether ``folder`` is where a file system is mounted. A bind mount (a container's volume of the host's
    disk) has the st_dev of the folder above it, so ``os.path.ismount`` misses it, yet a rename into it fails
    with EXDEV: the kernel's table of this process's mounts says (where there is none, ``ismount``)."""
    real = os.path.realpath(folder)
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as table:
            # the fifth field is the mount point, with space, tab, newline and backslash as octal escapes
            points = {re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[4]) for line in table}
    except (OSError, IndexError):
        points = set()
    return real in points or os.path.ismount(real)


def staging_parent(out_dir: Path) -> Path:
    """The folder the staging folder goes in: beside ``out_dir`` (same file system, so the final move is a rename),
    or inside it (``staged_inside``). The run's lock of --out decides on its own (``publishing.publication_lock``:
    beside a mount point, whose parent takes files, and inside only when the folder above takes none)."""
    return Path(out_dir) if staged_inside(out_dir) else Path(out_dir).parent


def staging_dir_for(out_dir: Path) -> Path:
    """A fresh, marked folder beside the destination (or inside it: ``staged_inside``)."""
    parent = staging_parent(out_dir)
    parent.mkdir(parents=True, exist_ok=True)
    staging = parent / f".{out_dir.name}.staging-{os.getpid()}"
    if not ownership.remove(staging):
        raise ConfigError(f"{staging} is in the way and was not made by order-audit; move it elsewhere and run again")
    return ownership.make_dir(staging)


STAGING_RE = re.compile(r"^\.(?P<name>.+)\.staging-(?P<pid>\d+)$")
VERSION_RE = re.compile(r"^\.(?P<name>.+)\.v-(?P<run>\d{8}T\d{6}Z-[0-9a-f]+)\.(?P<pid>\d+)$")
LINK_RE = re.compile(r"^\.(?P<name>.+)\.link-(?P<pid>\d+)$")
# the site index written beside its final name, then renamed over it (site_index.render_site_index)
INDEX_TMP_RE = re.compile(r"^\.index\.html\.tmp-(?P<pid>\d+)$")


def _our_link(link: Path, target: str) -> bool:
    """A symlink publish() made: out -> .out.v-<run>.<pid> beside it (that version, or nothing, behind it)."""
    m = VERSION_RE.match(target)
    if not m or m["name"] != link.name:
        return False
    version = link.parent / target
    return ownership.is_version_of(version, m["run"]) or not (version.exists() or version.is_symlink())


def publication_dir(out_dir: Path) -> Path:
    """Where the outputs of ``--out out_dir`` go: out_dir, or, when it is a symlink someone else
    made (e.g. to a folder of their own), the path it points to, followed link by link."""
    path = Path(os.path.abspath(out_dir))  # `--out .` has a name and a parent to stage beside
    for _ in range(40):
        if not path.is_symlink():
            return path
        target = os.readlink(path)
        if _our_link(path, target):
            return path
        path = Path(os.path.normpath(path.parent.resolve() / target))
    raise ConfigError(f"--out {out_dir}: too many levels of symbolic links")


def switch_mode(out_dir: Path) -> bool:
    """All-or-nothing publication (a symlink switch) where out_dir is new or a symlink publish() made. A folder
    that exists, even empty, is the user's: replacing it by a link had removed it, and with it its owner, group,
    setgid bit and mode (a folder shared with a group only became a world-readable one of root's)."""
    return out_dir.is_symlink() or not out_dir.exists()


def publish(staging: Path, out_dir: Path, version: str, on_file=None) -> str:
    """Make the staged outputs the visible ones. Returns 'switch' or 'files' (how it was done).

    switch (out_dir is new, or already a symlink made here): the staging folder is
    renamed to a hidden version folder beside out_dir, then out_dir -- a symlink -- is
    switched to it with one atomic rename. A reader sees the whole old set or the whole new
    set, never a mix. The previous version folder is removed afterwards (a reader that has a
    file open keeps reading it).

    files (out_dir is a real folder, even an empty one: the user's, e.g. made by an older version or
    holding other things, or one staged inside, ``staged_inside``: a mount point): every staged
    file is moved in by an atomic rename, run.json last.
    Each file is whole, but a crash part-way leaves some new files beside old ones; run.json
    (with the sha256 of every file) still names the previous run until the end.

    on_file(step) is called between steps (the crash-test hook).
    """
    hook = on_file or (lambda _step: None)
    out_dir = publication_dir(out_dir)  # a user's link is followed, never replaced (run.py resolves it first)
    if staging.parent != out_dir and switch_mode(out_dir):
        target = out_dir.parent / f".{out_dir.name}.v-{version}.{os.getpid()}"
        if not ownership.remove(target, run_id=version):
            raise ConfigError(f"{target} is in the way and was not made by order-audit; move it elsewhere and run again")
        os.rename(staging, target)
        (target / ownership.MARK).unlink(missing_ok=True)  # from here its run.json is its mark: readers see only outputs
        _fsync_dir(target)
        hook("version_ready")
        previous = os.readlink(out_dir) if out_dir.is_symlink() else None
        link = out_dir.parent / f".{out_dir.name}.link-{os.getpid()}"
        link.unlink(missing_ok=True)
        os.symlink(target.name, link)
        os.replace(link, out_dir)
        _fsync_dir(out_dir.parent)
        hook("switched")
        m = VERSION_RE.match(previous or "")
        if m and previous != target.name and m["name"] == out_dir.name:
            ownership.remove(out_dir.parent / previous, run_id=m["run"])
        return "switch"
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [p for p in sorted(staging.rglob("*")) if not p.is_dir() and p.relative_to(staging).as_posix() != ownership.MARK]
    files.sort(key=lambda p: p.name == "run.json")  # run.json last: it names the run the files belong to
    found = _stale(staging, out_dir)
    stale, pending = list(found), _write_pending(staging, out_dir, found)
    for src in files:
        if src.name == "run.json" and stale:  # before any run.json: one that names the new run names all it left
            _remove_files(stale, out_dir)
            stale = []
        dest = out_dir / src.relative_to(staging)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)
        hook(dest.name)
    _remove_files(stale, out_dir)  # no run.json staged (never so for a run's folder, but its record decides)
    pending.unlink()
    _fsync_dir(out_dir)
    ownership.remove(staging)
    return "files"


def carry_unpublished(out_dir: Path, staging: Path) -> None:
    """Link into the staged tree what the version out_dir points to holds and this run does not publish, but the
    files of the run before that this run does not write again (``stale_files``): a file the user put in --out or
    changed, hidden ones too (an .htaccess), the folders of audits this run did not run, a backfill's month folders.
    A switch had dropped them with the old version, where a plain folder, updated file by file, keeps them: now
    both ways leave the same tree. Called before the site index is written, which lists what is carried. Hard
    links: the old version stays whole until the switch, and a killed run leaves only its own version, which the
    next run's sweep removes. A folder made again takes its mode, owner and group."""
    current = os.readlink(out_dir) if out_dir.is_symlink() else ""
    version = out_dir.parent / current
    if not _our_link(out_dir, current) or not version.is_dir():
        return
    stale = {p.relative_to(version) for p in stale_files(staging, version)}
    stale |= {Path("run.json"), Path("index.html")}  # the run's own record and site index, written after this
    _carry(version, staging, stale, Path())


# a killed run's leftovers in a version folder, never carried: the next run's sweep removes them where they are
_LEFTOVERS = (STAGING_RE, LINK_RE, INDEX_TMP_RE)


def _carry(source: Path, dest: Path, stale: set[Path], below: Path) -> None:
    for entry in sorted(source.iterdir()):
        rel, target = below / entry.name, dest / entry.name
        if rel in stale or entry.name == ownership.MARK or any(r.match(entry.name) for r in _LEFTOVERS):
            continue
        taken = target.exists() or target.is_symlink()  # staged: this run's own wins
        if entry.is_symlink():
            if not taken:
                os.symlink(os.readlink(entry), target)
        elif entry.is_dir():
            if taken and (target.is_symlink() or not target.is_dir()):
                continue
            if not taken:
                target.mkdir()
            _carry(entry, target, stale, rel)
            if not taken:
                if any(entry.iterdir()) and not any(target.iterdir()):
                    target.rmdir()  # it held only the run before's stale files
                else:
                    _same_owner_and_mode(entry, target)
        elif not taken:
            try:
                os.link(entry, target)
            except OSError:  # a file system without hard links
                shutil.copy2(entry, target)


def _same_owner_and_mode(source: Path, target: Path) -> None:
    """A folder made again as it was: a group's setgid folder closed to others must not come back world-readable."""
    info = source.stat()
    with contextlib.suppress(OSError):  # not root: the run's own user and group, as a folder it makes
        os.chown(target, info.st_uid, info.st_gid)
    shutil.copystat(source, target)


# in a plain --out while a run moves its files in: the files it brings and the stale ones it is to remove, so that
# a run killed part-way leaves the next one a record of both (the old run.json names neither)
PENDING = ".order-audit-publishing.json"


def stale_files(staging: Path, out_dir: Path) -> list[Path]:
    """The files out_dir holds from runs before that this run does not publish again (a month without the
    department pages of the month before): listed by an audit folder's run.json, or by the record of a run killed
    while it moved its files in (``PENDING``), and unchanged since (the same sha256). A plain folder had kept
    them, named by no run.json, pages of another month beside the new report. A file the user put there or
    changed is no file of a run's, and stays; nothing outside out_dir is ever one."""
    return list(_stale(staging, out_dir))


def _stale(staging: Path, out_dir: Path) -> dict[Path, dict]:
    """``stale_files`` with what the record that lists each says of it (its sha256, which the file still has)."""
    staged = {p.relative_to(staging).as_posix() for p in staging.rglob("*") if not p.is_dir()}
    listed = dict(read_json_object(out_dir / PENDING).get("files") or {})
    for folder, _ in _audit_records(staging):
        earlier = read_json_object(out_dir / folder / "run.json").get("files")
        for name, info in earlier.items() if isinstance(earlier, dict) else ():
            listed[(folder / name).as_posix()] = info
    stale = {}
    for name, info in sorted(listed.items()):
        parts = PurePosixPath(name).parts
        # a backfill's month folders have records of their own
        inside = parts and not PurePosixPath(name).is_absolute() and ".." not in parts
        if not inside or any(MONTH.match(part) for part in parts) or name in staged or not isinstance(info, dict):
            continue
        path = out_dir / name
        # under out_dir itself: no folder on the way may be a link out of it (a run.json is only a file)
        within = path.resolve().is_relative_to(out_dir.resolve())
        if within and path.is_file() and not path.is_symlink() and sha256_of(path) == info.get("sha256"):
            stale[path] = info
    return stale


def _audit_records(staging: Path):
    """(folder under staging, record) of each staged audit folder's run.json; the run's own record at the top,
    which lists every audit's files, is none."""
    for record in sorted(staging.rglob("run.json")):
        info = read_json_object(record)
        if "audit" in info:
            yield record.parent.relative_to(staging), info


def _write_pending(staging: Path, out_dir: Path, stale: dict[Path, dict]) -> Path:
    """``PENDING``: this run's files (as its audit folders' records list them) and the stale ones it removes."""
    files = {}
    for folder, info in _audit_records(staging):
        if isinstance(info.get("files"), dict):
            files.update({(folder / name).as_posix(): v for name, v in info["files"].items()})
    files.update({p.relative_to(out_dir).as_posix(): info for p, info in stale.items()})
    return write_json(out_dir / PENDING, {"files": files})


def _remove_files(paths: list[Path], out_dir: Path) -> None:
    """Remove the files, then each folder they leave empty, up to out_dir."""
    for path in paths:
        path.unlink(missing_ok=True)
        folder = path.parent
        while folder != out_dir and out_dir in folder.parents:
            try:
                folder.rmdir()  # only if empty: a folder holding anything else stays
            except OSError:
                break
            folder = folder.parent


def read_json_object(path: Path) -> dict:
    """The JSON object in a file, or {} when it is missing, unreadable or holds something else."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def publish_feed(staged: Path, audit_dir: Path) -> None:
    """A backfill's one feed into the audit's folder beside its months, file by file (each whole; metrics.json,
    the summary naming the run, last)."""
    audit_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted((p for p in staged.iterdir() if p.name != ownership.MARK), key=lambda p: p.name == "metrics.json"):
        os.replace(path, audit_dir / path.name)
    _fsync_dir(audit_dir)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sweep(folder: Path) -> list[Path]:
    """Remove what killed runs left in folder: staging folders, half-made links and site index files
    (``.index.html.tmp-<pid>``) of dead processes, and version folders no output symlink points to. Returns
    what was removed."""
    if not folder.is_dir():
        return []
    removed = []
    for entry in folder.iterdir():
        name = entry.name
        if not name.startswith("."):
            continue
        m = STAGING_RE.match(name)
        if m:
            if not ownership.process_alive(int(m["pid"])) and ownership.remove(entry):
                removed.append(entry)
            continue
        m = LINK_RE.match(name)
        if m:
            # a half-made link of ours points at one of our version folders; anything else is not ours
            if entry.is_symlink() and VERSION_RE.match(os.readlink(entry)) and not ownership.process_alive(int(m["pid"])):
                entry.unlink(missing_ok=True)
                removed.append(entry)
            continue
        m = INDEX_TMP_RE.match(name)
        if m:
            # a killed run's site index, never renamed: a plain file of a process that is gone
            if entry.is_file() and not entry.is_symlink() and not ownership.process_alive(int(m["pid"])):
                entry.unlink(missing_ok=True)
                removed.append(entry)
            continue
        m = VERSION_RE.match(name)
        if m and not entry.is_symlink():
            live = folder / m["name"]
            current = live.is_symlink() and os.readlink(live) == name
            if not current and not ownership.process_alive(int(m["pid"])) and ownership.remove(entry, run_id=m["run"]):
                removed.append(entry)
    return removed


def file_manifest(folder: Path, names: list[str] | None = None) -> dict:
    """sha256 and size of every file under folder, or of the ``names`` in it (run.json lists them: a
    reader can check a set is whole)."""
    found = {}
    for p in sorted(folder.rglob("*")) if names is None else [folder / n for n in names]:
        if p.is_file() and p.name != "run.json" and p.relative_to(folder).as_posix() != ownership.MARK:
            found[p.relative_to(folder).as_posix()] = {"sha256": sha256_of(p), "bytes": p.stat().st_size}
    return found
