"""Time the parse stage alone: extracts -> typed Parquet (``load.prepare_inputs``), nothing else.

    python -m benchmarks.parse_bench --input benchmarks/data/1M-csv [--repeat 3] [--config site.toml]

Each repetition parses every file of the folder into a fresh scratch folder (fingerprints
included, as a run does) and prints the wall and CPU seconds (CPU: every thread of the
process, steadier than wall time while other processes share the cores); the last line
gives the medians. Use it to compare the parse before and after a change on the same
files (benchmarks/README.md). It needs find_inputs(folder, config) (this version on).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path, required=True)
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--scratch", type=Path, default=None, help="folder for the scratch Parquet (default: the system's)")
    a = ap.parse_args()

    from pipeline.config import load_config
    from pipeline.ingest import load

    cfg = load_config(a.config)
    seconds, cpu = [], []
    for i in range(a.repeat):
        inputs = load.find_inputs(a.input, cfg)
        with tempfile.TemporaryDirectory(prefix="parse-bench-", dir=a.scratch) as tmp:
            t0, c0 = time.perf_counter(), time.process_time()
            prepared = load.prepare_inputs(inputs, cfg, Path(tmp))
            seconds.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        rows = ", ".join(f"{n} {p.rows_read}" for n, p in prepared.items())
        print(f"run {i + 1}: {seconds[-1]:.2f} s wall, {cpu[-1]:.2f} s CPU ({rows})", flush=True)
    print(
        f"median {statistics.median(seconds):.2f} s wall (min {min(seconds):.2f}), "
        f"median {statistics.median(cpu):.2f} s CPU (min {min(cpu):.2f}) over {len(seconds)} runs"
    )


if __name__ == "__main__":
    main()
