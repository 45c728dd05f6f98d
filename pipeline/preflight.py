"""Checks before any work: the folders and files a run will write are usable, or one line and exit 1.

What would otherwise fail at the end of a run, after the parse and the warehouse commit
(``--out`` is a file, a folder the run cannot write, a warehouse file that is not DuckDB,
a crosswalk of raw ids that would land beside the reports, ``--pdf`` with nothing that can print),
stops here instead.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pipeline import ownership, warehouse
from pipeline.errors import ConfigError
from pipeline.ingest import source_store
from pipeline.quality import data_docs
from pipeline.report import outputs, pdf
from pipeline.report.reid import check_target as check_crosswalk_target

DUCKDB_MAGIC = b"DUCK"  # bytes 8-11 of every DuckDB database file


def check_warehouse_file(path: Path, reader: bool = False) -> None:
    """An existing warehouse file must be a DuckDB database order-audit made (not a folder, not empty, not other
    bytes, not someone else's database).
    ``reader``: a command that only reads it (runs, diff, validate), for which no new warehouse is made."""
    path = Path(path)
    warehouse.database_text(warehouse.real_path(path))  # its scratch files go beside the file the link names
    if path.is_dir():
        raise ConfigError(f"--warehouse {path} is a folder; give the warehouse file (e.g. {path / 'warehouse.duckdb'})")
    try:
        with path.open("rb") as fh:
            head = fh.read(12)
    except FileNotFoundError:
        return  # a new warehouse
    except OSError as exc:
        raise ConfigError(f"--warehouse {path} cannot be read ({exc.strerror}); check its permissions") from None
    if head[8:12] != DUCKDB_MAGIC:
        what = "an empty file" if not head else "not a DuckDB database file"
        new = "" if reader else ", or a path that does not exist yet to start a new warehouse"
        raise ConfigError(f"--warehouse {path} is {what}; give the warehouse file an earlier run made{new} (nothing was changed)")
    warehouse.check_is_ours(path, reader)  # someone else's DuckDB database: refused, unchanged


def check_run(opts, out_root: Path, audit_ids: tuple[str, ...] = ()) -> None:
    """Everything ``run`` will write to, before it parses anything. ``out_root``: where --out publishes;
    ``audit_ids``: the audits the run may publish (each into a folder of its id)."""
    if out_root.exists() and not out_root.is_dir():
        # a relative --out is the same path made absolute, not a link followed
        via = "" if out_root == Path(os.path.abspath(opts.out_dir)) else f" (through a link, {out_root})"
        raise ConfigError(f"--out {opts.out_dir} is a file{via}, not a folder; give a folder path (it is created if missing)")
    # the staging folder goes beside a single --out (inside it when it is a mount point or the folder above
    # takes no new files: outputs.staging_parent), and inside the root of a backfill
    _check_writable(out_root if opts.per_month_folders else outputs.staging_parent(out_root), "--out", opts.out_dir)
    if out_root.is_dir() and not out_root.is_symlink():
        # a plain folder, even an empty one, is updated file by file (outputs.switch_mode): an empty one the job
        # could not write was found only at publication, after the warehouse had taken the run's data
        _check_writable(out_root, "--out", opts.out_dir)
        if any(out_root.iterdir()):
            _check_site_files(opts, out_root)
            _check_audit_folders(opts, out_root, audit_ids)
    for audit_id in audit_ids:  # a plain folder or a link to a version folder order-audit made: one layout
        if (out_root / audit_id).is_dir():
            _check_layout(opts, out_root / audit_id, audit_id)
    if opts.warehouse_path is None:
        check_temp_dir()  # the throw-away warehouse
    else:
        check_warehouse_file(opts.warehouse_path)
        _check_out_is_not_the_warehouses(opts, out_root)
        if Path(opts.warehouse_path).resolve().parent.is_relative_to(out_root.resolve()):
            # the warehouse and its .sources/ hold raw patient ids: never beside what is published
            raise ConfigError(
                f"--warehouse {opts.warehouse_path} is inside the output folder (--out {opts.out_dir}); the warehouse "
                "holds raw patient ids and must be kept apart from the published reports (a folder of its own)"
            )
        _check_writable(
            Path(opts.warehouse_path).resolve().parent, "--warehouse", opts.warehouse_path
        )  # lock, scratch and .sources go beside it
    if opts.input_dir is not None and Path(opts.input_dir).resolve().is_relative_to(out_root.resolve()):
        # --out the extracts' folder (or one above it): the reports were published beside the raw extracts
        raise ConfigError(
            f"--input {opts.input_dir} is inside the output folder (--out {opts.out_dir}); the extracts hold raw "
            "patient ids and must be kept apart from the published reports: give --out a folder of its own"
        )
    if opts.input_dir is not None and out_root.resolve().is_relative_to(Path(opts.input_dir).resolve()):
        # the extracts' folder is the site's: a run only reads it (the next export may replace it, reports and all)
        raise ConfigError(
            f"--out {opts.out_dir} is inside the input folder (--input {opts.input_dir}); a run only reads the "
            "extracts' folder: give --out a folder of its own (nothing was changed)"
        )
    if opts.data_docs_dir is not None:
        data_docs.check_target(opts.data_docs_dir)
        _check_writable(Path(opts.data_docs_dir), "--data-docs", opts.data_docs_dir)
    if opts.reid_file is not None:
        check_reid_file(opts, out_root)
    if opts.pdf:
        pdf.pdf_engine()  # a warehouse loaded and committed, then no PDF: the next run would find nothing new to load


def _check_out_is_not_the_warehouses(opts, out_root: Path) -> None:
    """--out the warehouse file's own path (or its .sources store, lock or log): the run loaded and committed the
    warehouse, then stopped with a traceback when it made the output folder over that file, or published the
    reports among the raw extracts' Parquet files."""
    wh = Path(opts.warehouse_path).resolve()
    out = out_root.resolve()
    for suffix in ("", source_store.STORE_SUFFIX, ".lock", ".wal"):
        if out.is_relative_to(wh.with_name(wh.name + suffix)):
            raise ConfigError(
                f"--out {opts.out_dir} is the warehouse's own path (--warehouse {opts.warehouse_path}"
                f"{f', its {suffix} beside it' if suffix else ''}); give the reports a folder of their own "
                "(nothing was changed)"
            )


def check_temp_dir() -> None:
    """The temporary folder (TMPDIR) can hold the DuckDB files of a run without --warehouse and of `validate`."""
    warehouse.database_text(tempfile.gettempdir(), "TMPDIR")


SITE_FILES = ("index.html", "run.json")  # what every run writes at the top of --out, whatever its audits
MONTH_FOLDER = "[0-9][0-9][0-9][0-9]-[0-9][0-9]"  # a backfill's OUT/<audit id>/<month>/


def _published_into(folder: Path, month_folders: str) -> bool:
    """Whether an order-audit run published into ``folder``: the run.json it wrote there, or in a month folder
    of a backfill (``month_folders``: the glob from ``folder`` to them)."""
    records = [folder / "run.json", *folder.glob(f"{month_folders}/run.json")]
    return any(ownership.run_record(r) for r in records)


def _check_site_files(opts, out_root: Path) -> None:
    """A plain --out folder is updated file by file: the top files it would replace must be order-audit's. A
    folder an earlier run published into holds that run's run.json (at the top, or in each month folder of a
    backfill); in any other folder (a web server's root, a shared folder) an index.html or run.json is
    someone else's, and replacing it is not the run's to do."""
    present = [n for n in SITE_FILES if (out_root / n).exists() or (out_root / n).is_symlink()]
    if not present or _published_into(out_root, f"*/{MONTH_FOLDER}"):
        return
    them = "them" if len(present) > 1 else "it"
    raise ConfigError(
        f"--out {opts.out_dir} holds {' and '.join(present)}, which no order-audit run wrote (no run.json of one "
        f"is there), and a run would replace {them}; give a new or empty folder, or move {them} away (nothing was "
        "changed)"
    )


def _check_audit_folders(opts, out_root: Path, audit_ids: tuple[str, ...]) -> None:
    """Each audit publishes into OUT/<audit id>/, file by file in a plain --out folder: a folder of that name
    that no order-audit run published into (no run.json of one in it, nor in a month folder of a backfill)
    is someone else's, and the run would write into it and replace its report.html or index.html."""
    for audit_id in audit_ids:
        folder = out_root / audit_id
        if not (folder.exists() or folder.is_symlink()):
            continue
        if folder.is_dir() and not any(folder.iterdir()):
            continue  # an empty folder: nothing in it to replace
        if folder.is_dir() and _published_into(folder, MONTH_FOLDER):
            continue
        what = "a folder" if folder.is_dir() else "a file"
        raise ConfigError(
            f"--out {opts.out_dir} holds {what} {audit_id}/ that no order-audit run wrote (no run.json of one is in "
            f"it), and the {audit_id} audit would publish its reports into it; give a new or empty folder, or move it "
            "away (nothing was changed)"
        )


def _check_layout(opts, folder: Path, audit_id: str) -> None:
    """One --out holds one layout: a backfill's month folders (OUT/<audit>/<YYYY-MM>/, the feed at OUT/<audit>/) or
    one period's reports (OUT/<audit>/report.html ...). Mixed, a backfill wrote its months among one period's files
    (the site index and run.json naming neither whole), its feed over that period's, and a later period run left
    the months to a record that did not list them."""
    months = any(ownership.run_record(r) for r in folder.glob(f"{MONTH_FOLDER}/run.json"))
    period = ownership.run_record(folder / "run.json")
    if opts.per_month_folders and period:
        held, wanted = "one period's reports", "a backfill (--from/--to) publishes one folder per month"
    elif not opts.per_month_folders and months:
        held, wanted = "a backfill's month folders", "a run of one period (--month, or every month) publishes beside none"
    else:
        return
    raise ConfigError(
        f"--out {opts.out_dir} holds {held} in {audit_id}/, and {wanted}: give this run an --out of its own "
        "(the monthly job and a one-off run each theirs), or move that folder away (nothing was changed)"
    )


def check_reid_file(opts, out_root: Path) -> None:
    """The crosswalk of raw patient ids goes nowhere near what is published, kept or delivered."""
    reid = Path(opts.reid_file).resolve()
    places = [(f"the output folder (--out {opts.out_dir})", Path(opts.out_dir).resolve()), (None, out_root.resolve())]
    if opts.warehouse_path is not None:
        warehouse_folder = Path(opts.warehouse_path).resolve().parent
        places.append((f"the warehouse's folder ({warehouse_folder})", warehouse_folder))
    if opts.input_dir is not None:
        places.append((f"the input folder (--input {opts.input_dir})", Path(opts.input_dir).resolve()))
    for what, folder in places:
        if reid.is_relative_to(folder):
            raise ConfigError(
                f"--reid-file {opts.reid_file} is inside {what or places[0][0]}; the crosswalk holds raw patient "
                "ids and must be written elsewhere (a restricted folder of its own)"
            )
    if reid.is_dir():
        raise ConfigError(f"--reid-file {opts.reid_file} is a folder; give a file path")
    check_crosswalk_target(opts.reid_file)
    _check_writable(reid.parent, "--reid-file", opts.reid_file)


def _check_writable(folder: Path, option: str, given) -> None:
    """``folder`` (or, where it does not exist yet, the nearest folder above it) takes new files."""
    existing = Path(folder).resolve()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{option} {given}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        why = "a read-only file system" if _read_only(existing) else "no permission to write there"
        raise ConfigError(f"{option} {given}: cannot write in {existing} ({why}); choose another path or fix the folder")


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False
