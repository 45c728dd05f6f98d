"""The Spark cells of `make bench` (`BENCH_ENGINES=duckdb,spark`): `order-audit run --engine spark` on a local
Spark, timed over its whole process tree, its data outputs compared byte for byte with the DuckDB run's.

Spark runs without the gate (`--no-validate`), like the DuckDB run it is compared with: the gate reads the
parsed inputs on the driver either way (docs/SCALING.md). 100M is left out: a local Spark on 2 cores would
take most of an hour, and the point of Spark there is a cluster.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from benchmarks.engine_compare import differing, measured, spark_config

MASTER, DRIVER_MEMORY = "local[2]", "4g"
MAX_ORDERS = 10_000_000


def run(input_dir: Path, work: Path, duckdb_out: Path, audits: tuple[str, ...]) -> dict:
    """One Spark run of ``input_dir``: wall, CPU and peak RSS over the process tree (the JVM included), stage
    times, and which data outputs differ from ``duckdb_out`` (an `order-audit run --no-validate` of the same input)."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    config = spark_config(work, MASTER, DRIVER_MEMORY)
    out = work / "out"
    command = [sys.executable, "-m", "pipeline", "run", "--input", str(input_dir), "--out", str(out)]
    command += ["--warehouse", str(work / "warehouse.duckdb"), "--no-validate", "--engine", "spark", "--config", str(config)]
    command += [arg for audit in audits for arg in ("--audit", audit)]
    fig = measured(command)
    result = {"rc": fig["rc"], "wall": fig["wall"], "cpu": fig["cpu"], "rss": fig["rss_mb"], "master": MASTER}
    if fig["rc"] != 0:
        result["error"] = "\n".join(fig["stderr"].strip().splitlines()[-6:])
        return result
    result["files"], result["differ"] = differing(duckdb_out, out)
    shutil.rmtree(work, ignore_errors=True)
    return result


def results_lines(cells: list[dict], fmt_s) -> list[str]:
    """The results.md section: one row per cell that has a Spark run."""
    rows = [c for c in cells if c.get("spark")]
    if not rows:
        return []
    lines = [
        "",
        f"## Apache Spark ({MASTER}, driver memory {DRIVER_MEMORY}, `--engine spark --no-validate`)",
        "",
        "One run per cell; the DuckDB column is the same cell's `--no-validate` median. Identical: every data output "
        "(CSV, Parquet, metrics.json) of both audits byte for byte.",
        "",
        "| scale | format | Spark wall s | Spark CPU s | Spark peak RSS MB (process tree) | DuckDB wall s | Spark / DuckDB "
        "| identical |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in rows:
        s, duck = c["spark"], c.get("no_validate", {})
        if s["rc"] != 0:
            lines.append(f"| {c['scale']} | {c['fmt']} | FAILED: {s.get('error', '')[-200:]} | | | | | |")
            continue
        ratio = s["wall"] / duck["wall"] if duck.get("wall") else None
        same = "yes" if not s["differ"] else "NO: " + ", ".join(s["differ"][:5])
        lines.append(
            f"| {c['scale']} | {c['fmt']} | {fmt_s(s['wall'])} | {fmt_s(s['cpu'], 1)} | {fmt_s(s['rss'], 0)} | "
            f"{fmt_s(duck.get('wall'))} | {fmt_s(ratio)}x | {same} ({s['files']} files) |"
        )
    return lines
