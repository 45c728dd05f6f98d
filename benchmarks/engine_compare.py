"""DuckDB vs Spark on one input: wall, CPU and peak memory of `order-audit run` per engine, and
whether the data outputs agree byte for byte (docs/SCALING.md's table).

    nice python -m benchmarks.engine_compare INPUT WORKDIR [--spark-master local[2]] [--spark-memory 2g]

The Spark run's JVM is a grandchild the run never waits for, so getrusage cannot see it (make bench's
wrapper can): this samples the whole process tree from /proc every 0.2 s (peak RSS summed over the
tree; CPU as each process last showed it, so the last 0.2 s of a process may be missed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def measured(command: list[str]) -> dict:
    """Run the command; its wall time, CPU seconds and peak RSS (MB) over its process tree."""
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    cpu: dict[int, float] = {}
    peak = 0
    while proc.poll() is None:
        rss = 0
        for pid in _tree(proc.pid):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            cpu[pid] = (int(fields[11]) + int(fields[12])) / TICKS
            rss += int(fields[21]) * PAGE
        peak = max(peak, rss)
        time.sleep(0.2)
    stderr = proc.stderr.read()
    wall = time.monotonic() - started
    return {"rc": proc.returncode, "wall": wall, "cpu": sum(cpu.values()), "rss_mb": peak / 2**20, "stderr": stderr}


def data_outputs(out: Path) -> dict[str, bytes]:
    """Every data output of every audit (CSV, Parquet, metrics.json), by path under OUT."""
    data = (".csv", ".parquet")
    files = [p for p in out.resolve().rglob("*") if p.is_file() and (p.suffix in data or p.name == "metrics.json")]
    return {str(p.relative_to(out.resolve())): p.read_bytes() for p in files}


def spark_config(workdir: Path, master: str, driver_memory: str) -> Path:
    """A config file naming the Spark master and driver memory, written into ``workdir``."""
    config = workdir / "spark.toml"
    config.write_text(f'[spark]\nmaster = "{master}"\n[spark.conf]\n"spark.driver.memory" = "{driver_memory}"\n')
    return config


def differing(a: Path, b: Path) -> tuple[int, list[str]]:
    """How many data outputs ``a`` holds, and which of them (or of ``b``'s) are not byte for byte the same in both."""
    left, right = data_outputs(a), data_outputs(b)
    return len(left), sorted(n for n in left.keys() | right.keys() if left.get(n) != right.get(n))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("input", type=Path)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--spark-master", default="local[2]")
    parser.add_argument("--spark-memory", default="2g")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    config = spark_config(args.workdir, args.spark_master, args.spark_memory)
    results = {}
    for engine in ("duckdb", "spark"):
        out = args.workdir / f"out-{engine}"
        command = [sys.executable, "-m", "pipeline", "run", "--input", str(args.input), "--out", str(out), "--no-validate"]
        command += ["--engine", engine, "--config", str(config)]
        load = os.getloadavg()[0]
        results[engine] = r = measured(command)
        if r["rc"] != 0:
            sys.exit(f"{engine} run failed ({r['rc']}):\n{r['stderr'][-3000:]}")
        print(f"{engine}: wall {r['wall']:.1f} s, cpu {r['cpu']:.1f} s, peak rss {r['rss_mb']:.0f} MB, load before {load:.2f}")
        stages = [line for line in r["stderr"].splitlines() if ": done in " in line]
        print("  " + "\n  ".join(stages))
    files, differ = differing(args.workdir / "out-duckdb", args.workdir / "out-spark")
    print(f"data outputs: {files} files, " + (f"DIFFER: {', '.join(differ)}" if differ else "byte-identical"))


if __name__ == "__main__":
    main()
