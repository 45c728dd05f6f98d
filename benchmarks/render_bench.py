"""Time the render stage alone on a finished warehouse: what ``order-audit run`` does after the commit.

    cp /tmp/render_wh.duckdb /tmp/rh/wh.duckdb    # a finished warehouse (opening it may write: use a copy)
    python -m benchmarks.render_bench --warehouse /tmp/rh/wh.duckdb --out /tmp/rh/out \\
        --run-json /tmp/r10/out/csf_leak/run.json --audit csf_leak [--repeat 3] \\
        [--profile /tmp/rh/render.prof] [--compare /tmp/rh/base]

It repeats run.py's render loop for one period: connect, pseudonym key, measure
(``measure.build_metrics``), then the "render" stage: ``publishing.write_outputs`` (the data tables and the report),
into a fresh folder each repetition. ``--run-json`` supplies a realistic ``run_info`` (an earlier
run's run.json minus what is written after the render); without it a small one is made up.
Printed per repetition: wall seconds and CPU seconds of the stage (user + system of this process,
all its threads), and how many cores other processes kept busy meanwhile (machine busy time from
/proc/stat minus our own): on the shared 2-core machine read the wall time together with that figure,
and compare CPU seconds. ``--compare DIR`` checks every file written is byte-identical to DIR's (e.g. a
folder written by the code before a change, with the same run.json).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path


def _cpu() -> float:
    """CPU seconds of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _machine_busy() -> float:
    """CPU seconds all processes have used (Linux /proc/stat; 0 elsewhere)."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            f = [int(x) for x in fh.readline().split()[1:]]
    except OSError:
        return 0.0
    return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")


def _run_info(path: Path | None, cfg) -> dict:
    if path is not None:
        info = json.loads(path.read_text(encoding="utf-8"))
        if "rule_set_version" not in info:  # the top of a run's --out: what its audits share, not an audit's record
            raise SystemExit(f"--run-json {path}: the run's own run.json; give an audit's, {path.parent}/<audit id>/run.json")
        for k in ("files", "finished_at", "timings_seconds"):
            info.pop(k, None)
        return info
    return {
        "run_id": "bench",
        "software_version": "bench",
        "rule_set_version": "bench",
        "code_set_versions": {},
        "inputs": [],
        "config": cfg.as_dict(),
        "period": "all",
        "started_at": "2000-01-01T00:00:00+00:00",
        "pseudonym_key_is_demo": True,
        "data_quality": [],
        "rejects": {},
    }


def _compare(out: Path, ref: Path) -> list[str]:
    mine = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    theirs = {p.relative_to(ref).as_posix() for p in ref.rglob("*") if p.is_file()}
    diff = sorted(mine ^ theirs)
    diff += sorted(n for n in mine & theirs if (out / n).read_bytes() != (ref / n).read_bytes())
    return diff


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warehouse", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="output folder (replaced)")
    ap.add_argument("--run-json", type=Path, help="an earlier run.json for a realistic run_info")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--profile", type=Path, help="write a cProfile of the last repetition here")
    ap.add_argument("--compare", type=Path, help="a folder every written file must equal byte for byte")
    ap.add_argument("--audit", default=None, help="the audit to render (default: the first that can run)")
    a = ap.parse_args(argv)

    t_import = time.perf_counter()
    from pipeline import audits, publishing, warehouse
    from pipeline.config import load_config, pseudonym_key
    from pipeline.report import measure

    import_s = time.perf_counter() - t_import
    cfg = load_config(None)
    key, _ = pseudonym_key(cfg)
    run_info = _run_info(a.run_json, cfg)
    audit = next(x for x in audits.discover() if x.runnable and (a.audit is None or x.id == a.audit))
    con = warehouse.connect(a.warehouse)
    status = 0
    try:
        warehouse.set_pseudonym_key(con, key)
        publishing.select_audit(con, audit)
        t0 = time.perf_counter()
        metrics = measure.build_metrics(con)
        print(f"import {import_s:.2f} s; measure {time.perf_counter() - t0:.2f} s ({metrics.height} metric rows)")
        walls, cpus = [], []
        for i in range(a.repeat):
            shutil.rmtree(a.out, ignore_errors=True)
            a.out.mkdir(parents=True)
            prof = cProfile.Profile() if a.profile and i == a.repeat - 1 else None
            c0, w0, b0 = _cpu(), time.perf_counter(), _machine_busy()
            if prof:
                prof.enable()
            publishing.write_outputs(con, audit, a.out, dict(run_info), metrics)
            if prof:
                prof.disable()
                prof.dump_stats(str(a.profile))
            w2, c2, b2 = time.perf_counter(), _cpu(), _machine_busy()
            walls.append(w2 - w0)
            cpus.append(c2 - c0)
            others = max(0.0, (b2 - b0 - (c2 - c0)) / (w2 - w0))
            print(
                f"render #{i + 1}: wall {w2 - w0:.2f} s (data tables and report at once), "
                f"CPU {c2 - c0:.2f} s; other processes kept {others:.1f} cores busy",
                flush=True,
            )
        if a.repeat > 1:
            print(
                f"wall min {min(walls):.2f} median {statistics.median(walls):.2f} s; "
                f"CPU min {min(cpus):.2f} median {statistics.median(cpus):.2f} s"
            )
        if a.compare:
            diff = _compare(a.out, a.compare)
            print("identical to " + str(a.compare) if not diff else "DIFFERENT: " + ", ".join(diff))
            status = 1 if diff else 0
    finally:
        con.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
