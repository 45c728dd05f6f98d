"""The outputs of one reported period, for every audit of the run: staged, then published at once.

One folder per audit under ``--out``: ``OUT/<audit id>/`` (report, department pages, workbook, data
files, metrics feed, run.json), and the site index ``OUT/index.html`` over audits and months. A
single period stages the whole tree and publishes it as one (``report.outputs.publish``: a new
``--out`` is a symlink switched in one rename); a backfill publishes ``OUT/<audit id>/<YYYY-MM>/``
month by month and refreshes the site index after each.

The report layer reads the audit being rendered through session views without the prefix
(``mart_audited_orders`` -> ``<id>__mart_audited_orders``), so one report shell serves every audit.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipeline import faults, locks, logs, ownership
from pipeline.audits import MANIFEST
from pipeline.logs import event, stage
from pipeline.months import is_month
from pipeline.report import outputs, reid, site_index

# audited orders (all audits of the period) below which the audits' pages overlap (``publish_period``): their
# tables are a few MB, so holding two audits' at once costs nothing
OVERLAP_MAX_ORDERS = 50_000


@dataclass(frozen=True)
class Period:
    label: str  # YYYY-MM or "all"
    base_info: dict  # run.json: what every audit's folder says of the run
    audit_info: dict  # audit id -> what run.json says of that audit
    counts: dict  # audit id -> the period's counts
    statuses: dict  # audit id -> period_status.build(...)
    # the run's warning lines (logs.Warned): each run.json lists those about its audit and period logged before it
    warned: logs.Warned

    def warnings(self, audit_id: str | None = None) -> list[str]:
        return self.warned.about(audit_id, self.label)


def publication_lock(out_root: Path, run_id: str, command: str, warehouse: Path | None):
    """Hold ``.<out>.lock`` beside --out (inside it when the folder above takes no new files) for
    the whole run: two runs on two warehouses with one --out would publish into it at once, the month folders
    of a backfill or the files of a plain folder mixed from both. The second stops before any work, exit 4."""
    out_root = Path(out_root)

    def refusal(holder: dict) -> str:
        from_warehouse = f" from --warehouse {holder['warehouse']}" if holder.get("warehouse") else ""
        return (
            f"--out {out_root}: {locks.describe(holder)} publishes into it{from_warehouse}; wait for it to finish, "
            "or give each warehouse an --out of its own (nothing was changed)"
        )

    beside = out_root.parent
    folder = beside if not beside.exists() or os.access(beside, os.W_OK | os.X_OK) else out_root
    lock_path = folder / f".{out_root.name}.lock"
    return locks.held(
        lock_path, out_root, run_id, command, f"--out {out_root}", refusal, warehouse=str(warehouse) if warehouse else None
    )


def select_audit(con: duckdb.DuckDBPyConnection, audit) -> None:
    """Session views without the prefix over the audit's marts and registry: what the report layer reads."""
    prefix = f"{audit.id}__"
    names = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
    for name in names:
        if name.startswith(prefix) and name.removeprefix(prefix).startswith(("mart_", "ref_")):
            con.execute(f"CREATE OR REPLACE TEMP VIEW {name.removeprefix(prefix)} AS SELECT * FROM {name}")


def publish_period(
    con: duckdb.DuckDBPyConnection,
    audits: list,
    period: Period,
    opts,
    cfg,
    timings: dict,
    on_published: Callable[[str, str], None] = lambda audit_id, label: None,
) -> None:
    """Render every audit's outputs of the period and publish them (all at once, or month by month).
    ``on_published(audit id, period)``: called for each audit's folder as soon as it is out, before the next audit's
    is rendered (the run records it there: a SIGKILL between two audits' folders of a month must not leave one
    out that no record names)."""
    per_month = period.label if len(opts.months) > 1 else None
    if opts.per_month_folders:
        # one feed a run, the last month's, in the audit's folder beside the months (OUT/<audit>/metrics.*: a path a
        # dashboard keeps): every feed carries the whole trend, and the months' feeds side by side gave away counts
        # each withholds (a 12-month window less the one a month before, docs/METRICS_FEED.md)
        last = max(opts.months)
        for audit in audits:
            audit_dir = outputs.publication_dir(opts.out_dir / audit.id)
            target = outputs.publication_dir(opts.out_dir / audit.id / period.label)
            staging = outputs.staging_dir_for(target)
            feed_staging = outputs.staging_dir_for(audit_dir / "metrics") if period.label == last else None
            try:
                # one render per audit and month here: the audit named, so that no two lines of the run are alike
                with stage("render", timings, per_month, audit.id if len(audits) > 1 else None):
                    _render_audit(
                        con, audit, period, staging, opts, cfg, timings, "../../", len(audits) > 1, (f"{audit.id}/", feed_staging)
                    )
                    faults.maybe_fail("mid_render")
                outputs.carry_unpublished(target, staging)
                outputs.publish(staging, target, version=period.base_info["run_id"], on_file=_publish_hook)
                if feed_staging is not None:
                    say_if_feed_goes_back(audit.id, audit_dir / "metrics.json", feed_staging / "metrics.json")
                    outputs.publish_feed(feed_staging, audit_dir)
                on_published(audit.id, period.label)
            finally:
                ownership.remove(staging)
                if feed_staging is not None:
                    ownership.remove(feed_staging)
            site_index.render_site_index(opts.out_dir)
            _say_pdf(opts, target, period.label)
        if opts.reid_file is not None:
            reid.write_reid_file(con, opts.reid_file, opts.out_dir, audits)
        return
    from pipeline.report import render  # the report's modules load when a run reaches them

    staging = outputs.staging_dir_for(opts.out_dir)
    try:
        files: dict = {}
        with stage("render", timings, per_month), contextlib.ExitStack() as started:
            # small audits: the next audit's pages are rendered while this one's workbook and feed are still
            # being written on their threads (``render.Pending``); large ones one after the other
            overlap = _orders(period) < OVERLAP_MAX_ORDERS
            begun = []
            for audit in audits:
                folder = staging / audit.id
                folder.mkdir()
                steps = render.Pending(_audit_steps(con, audit, period, folder, opts, cfg, timings, "../", len(audits) > 1))
                started.callback(steps.close)  # abandoned on an error (a no-op once finished)
                begun.append((audit, steps))
                if not overlap:
                    _finish_audit(files, *begun.pop())
            for audit, steps in begun:
                _finish_audit(files, audit, steps)
            published = outputs.publication_dir(opts.out_dir)
            outputs.carry_unpublished(published, staging)
            # a plain --out keeps the folders this run does not publish where they are: its index lists them too
            site_index.render_site_index(staging, also=None if published.is_symlink() else published)
            # the run's own record at the top: what it read and did, and every file of the tree (its mark too:
            # a published version is a folder holding the run.json order-audit wrote, ownership.is_version_of)
            run_info = {**period.base_info, "period": period.label, "audits": [a.id for a in audits]}
            run_info["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            run_info["files"] = {**files, **outputs.file_manifest(staging, ["index.html"])}
            run_info["warnings"] = period.warnings()
            outputs.write_json(staging / "run.json", run_info)
        if opts.reid_file is not None:
            reid.write_reid_file(con, opts.reid_file, opts.out_dir, audits)
        for audit in audits:
            say_if_feed_goes_back(audit.id, opts.out_dir / audit.id / "metrics.json", staging / audit.id / "metrics.json")
        outputs.publish(staging, opts.out_dir, version=period.base_info["run_id"], on_file=_publish_hook)
    finally:
        ownership.remove(staging)
    for audit in audits:  # one switch published them all
        on_published(audit.id, period.label)
    for audit in audits:
        _say_pdf(opts, opts.out_dir / audit.id, period.label)


def say_if_feed_goes_back(audit_id: str, published: Path, new: Path) -> None:
    """A warning when the feed a run publishes ends on an earlier month than the one it replaces: a one-off run of an
    old month (`--month 2025-03`, `--from 2025-03 --to 2025-03`) into the monthly job's --out replaced the feed the
    dashboards read with one that ends there, exit 0, without a word (the scheduling review). It is published all
    the same (the run was asked for); the line says what the dashboards now show and what to do."""
    last = {}
    for which, path in (("published", published), ("new", new)):
        try:
            periods = json.loads(path.read_text(encoding="utf-8")).get("periods") or []
        except (OSError, ValueError, AttributeError):
            return
        last[which] = max((p for p in periods if isinstance(p, str) and is_month(p)), default=None)
    if last["published"] is not None and (last["new"] or "") < last["published"]:
        ends = f"ends {last['new']}" if last["new"] else "holds no month"
        event(
            f"{audit_id}: the feed this run publishes {ends}, where the one it replaces ended "
            f"{last['published']}: dashboards reading {published.parent / 'metrics.parquet'} lose the later months (publish "
            "a one-off run of earlier months into an --out of its own; the next monthly run puts the later months back)",
            level=logging.WARNING,
            event="feed_goes_back",
            audit_id=audit_id,
            feed_last=last["new"],
            replaced_last=last["published"],
        )


def _orders(period: Period) -> int:
    return sum(int(c.get("audited_orders") or 0) for c in period.counts.values())


def _finish_audit(files: dict, audit, steps) -> None:
    """An audit's begun folder (``render.Pending``) completed; its files join the run's manifest."""
    files.update({f"{audit.id}/{name}": v for name, v in steps.finish().items()})
    faults.maybe_fail("mid_render")


def _publish_hook(step: str) -> None:
    faults.maybe_fail("mid_publish", step)


def _say_pdf(opts, folder: Path, label: str) -> None:
    if opts.pdf:
        event(f"wrote {folder / 'report.pdf'}", event="pdf_written", path=str(folder / "report.pdf"), period=label)


def _render_audit(
    con, audit, period: Period, folder: Path, opts, cfg, timings: dict, site_root: str, several: bool = False, feed=None
) -> dict:
    """One audit's folder of the period: data files, report pages, workbook, feed, run.json; returns its files'
    manifest (run.json lists it). ``feed``: (the folder its pages point to for the feed, the folder it is written
    to or None) where the feed is not this folder's (a backfill's: render.render_steps)."""
    from pipeline.report import render

    steps = _audit_steps(con, audit, period, folder, opts, cfg, timings, site_root, several, feed)
    return render.Pending(steps).finish()


def _audit_steps(
    con, audit, period: Period, folder: Path, opts, cfg, timings: dict, site_root: str, several: bool = False, feed=None
) -> Generator[None, None, dict]:
    """``_render_audit`` in steps: pauses once the pages are rendered (``render.render_steps``)."""
    from pipeline.report import measure

    select_audit(con, audit)
    with stage("measure", timings, period.label if len(opts.months) > 1 else None, audit.id if several else None):
        metrics = measure.build_metrics(con)
    run_info = {
        **period.base_info,
        **period.audit_info[audit.id],
        "period": period.label,
        "counts": period.counts[audit.id],
        "status": period.statuses[audit.id],
        "data_quality": [d for d in period.base_info["data_quality"] if _about(d, audit)],
    }
    feed_in, feed_dir = feed or (None, None)
    if feed_in is not None:
        run_info["feed_in"] = feed_in  # where this run's one feed is (from the site root): not in this folder
    options = {"pdf": opts.pdf, "site_root": site_root, "feed_in": feed_in, "feed_dir": feed_dir}
    yield from _write_steps(con, audit, folder, run_info, metrics, **options)
    run_info["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    run_info["timings_seconds"] = {k: round(v, 3) for k, v in timings.items()}
    run_info["files"] = outputs.file_manifest(folder)
    run_info["warnings"] = period.warnings(audit.id)
    outputs.write_json(folder / "run.json", run_info)
    return run_info["files"]


def write_outputs(con: duckdb.DuckDBPyConnection, audit, folder: Path, run_info: dict, metrics, **render_options) -> list[Path]:
    """One audit's files of the period at once (``_write_steps`` without its pause): the render stage as
    ``benchmarks/render_bench.py`` times it."""
    from pipeline.report import render

    return render.Pending(_write_steps(con, audit, folder, run_info, metrics, **render_options)).finish()


def _write_steps(con: duckdb.DuckDBPyConnection, audit, folder: Path, run_info: dict, metrics, **render_options):
    """One audit's files of the period: the data tables (``outputs.write_tables``) and the report, workbook and
    feed (``render.render_steps``, given ``render_options``; pausing as it does), at once: the tables are written
    through a cursor of their own on a thread (DuckDB's COPY releases the GIL) while the report is rendered."""
    from pipeline.report import render

    def tables() -> list[Path]:
        cursor = con.cursor()  # its own connection to the warehouse: the session views are made again
        try:
            select_audit(cursor, audit)
            return outputs.write_tables(cursor, folder, audit.parquet_types, audit.folder / MANIFEST)
        finally:
            cursor.close()

    with ThreadPoolExecutor(1, thread_name_prefix="data-files") as side:
        data_files = side.submit(tables)
        written = yield from render.render_steps(con, folder, run_info, metrics, **render_options)
        return data_files.result() + written


def _about(check: dict, audit) -> bool:
    """A data-quality result belongs to every audit's report unless it is another audit's output check."""
    table = check.get("table") or ""
    return "__" not in table or table.startswith(f"{audit.id}__")
