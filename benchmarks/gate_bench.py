"""Time the data-quality gate alone on prepared (parsed) inputs: the real path.

    python -m benchmarks.gate_bench prepare --input benchmarks/data/10M-csv --scratch /tmp/gb
    /usr/bin/time -v python -m benchmarks.gate_bench check --scratch /tmp/gb

``prepare`` parses the extract into typed Parquet (load.prepare_inputs, not timed) and
keeps the PreparedTable records; ``check`` runs gate.check_inputs on them (a scratch
DuckDB file whose src_* views read the Parquet, every input suite through Great
Expectations' SQL path plus the SQL checks, and the set-aside queries), printing each
check's result and seconds (a GX check: its table's batch) and the wall and CPU time of
check_inputs, import included. The machine is shared: compare runs made alternately.
"""

from __future__ import annotations

import argparse
import datetime as dt
import pickle
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("step", choices=["prepare", "check"])
    ap.add_argument("--input", type=Path)
    ap.add_argument("--scratch", type=Path, required=True)
    ap.add_argument("--now", default="2026-11-26T00:00:00+00:00")
    a = ap.parse_args(argv)
    from pipeline.config import load_config
    from pipeline.ingest import load

    cfg = load_config(None)
    if a.step == "prepare":
        a.scratch.mkdir(parents=True, exist_ok=True)
        inputs = load.find_inputs(a.input)
        t0 = time.perf_counter()
        prepared = load.prepare_inputs(inputs, cfg, a.scratch, {n: "bench" for n in inputs})
        (a.scratch / "prepared.pickle").write_bytes(pickle.dumps((prepared, str(a.input))))
        print(f"prepared in {time.perf_counter() - t0:.1f} s: " + ", ".join(f"{n} {p.rows_read}" for n, p in prepared.items()))
        return
    prepared, input_dir = pickle.loads((a.scratch / "prepared.pickle").read_bytes())
    (a.scratch / "gate.duckdb").unlink(missing_ok=True)
    from pipeline.quality import gate

    # the gate's own cost as a run pays it: importing Great Expectations included (it overlaps
    # with the DuckDB-only checks on a thread)
    t1, c1 = time.perf_counter(), time.process_time()
    results, set_aside = gate.check_inputs(prepared, cfg, a.scratch, dt.datetime.fromisoformat(a.now), Path(input_dir))
    t2, c2 = time.perf_counter(), time.process_time()
    for r in results:
        print(
            f"{r.status:7} {r.severity:8} {r.check_id:45} {r.violated_count}/{r.denominator} "
            f"{'' if r.seconds is None else f'{r.seconds:.2f}s'}"
        )
    print(
        f"check_inputs, import of great_expectations included: {t2 - t1:.2f} s (CPU, all threads: {c2 - c1:.2f} s); "
        f"rows set aside: {sum(getattr(r, 'rows_set_aside', 0) or 0 for r in results)}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
