"""Where the models' time goes: rebuild every model of a finished warehouse, one at a time, and profile each.

    cp WH.duckdb /tmp/mp/wh.duckdb     # the models are rebuilt in it: use a copy
    python -m benchmarks.model_profile --warehouse /tmp/mp/wh.duckdb [--audit csf_leak] [--top 12] [--operators 4] [--as-run]

Models are rebuilt in the run's order (staging and intermediate models, then the marts), each with DuckDB's
JSON profiler on (``enable_profiling``): printed per model are its wall seconds, DuckDB's CPU seconds
(``query.cpu_time``, the operators' time summed over its threads: inflated when other work holds the cores),
the process's CPU seconds (``time.process_time``), the rows it wrote, and for the ``--top`` slowest models the
``--operators`` most expensive operators of the plan (operator seconds, rows out, and what they work on).
The warehouse's period and pseudonym settings are those the run left (the pads are set again with the
configured key, as a run does). ``--as-run`` builds them all in one transaction and commits it, as a run
does, and lists the commit as a row of its own: inside a transaction DuckDB keeps a new table of less than
five row groups uncompressed in memory and compresses and writes it at the commit, so each model's
storage cost moves there (a model built alone is committed at once). Issue 16 item 2: the per-model half
of the profile; the Python side is profiled with py-spy or ``render_bench --profile``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def _operators(node: dict, out: list) -> None:
    for child in node.get("children", []):
        out.append(child)
        _operators(child, out)


def _what(op: dict) -> str:
    info = op.get("extra_info") or {}
    for key in ("Table", "Conditions", "Join Type", "Groups", "Aggregates", "Projections", "Filters"):
        if key in info:
            text = info[key] if isinstance(info[key], str) else "; ".join(map(str, info[key]))
            return f"{key}: {text}"[:110]
    return ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warehouse", type=Path, required=True, help="a finished warehouse (a copy: its models are rebuilt)")
    ap.add_argument("--audit", action="append", help="the audit(s) whose models to rebuild (default: every runnable one)")
    ap.add_argument("--top", type=int, default=10, help="how many of the slowest models to show operators for")
    ap.add_argument("--operators", type=int, default=4, help="operators shown per model")
    ap.add_argument("--as-run", action="store_true", help="one transaction for every model, then its commit timed, as a run")
    a = ap.parse_args(argv)

    from pipeline import audits, warehouse
    from pipeline.config import load_config, pseudonym_key
    from pipeline.models import runner

    cfg = load_config(None)
    key, _ = pseudonym_key(cfg)
    chosen = [x for x in audits.discover() if x.runnable and (not a.audit or x.id in a.audit)]
    models = runner.core_models() + [m for x in chosen for m in runner.audit_models(x)]
    ordered = [m for layers in (("stg", "int"), ("mart",)) for m in runner.execution_order(models) if m.layer in layers]
    con = warehouse.connect(a.warehouse)
    rows = []
    try:
        warehouse.set_pseudonym_key(con, key)
        with tempfile.TemporaryDirectory() as tmp:
            profile = Path(tmp) / "profile.json"
            con.execute("SET enable_profiling = 'json'")
            con.execute("SET profiling_output = ?", [str(profile)])
            if a.as_run:
                con.execute("BEGIN TRANSACTION")
            for m in ordered:
                t0, c0 = time.perf_counter(), time.process_time()
                runner.build(con, m)
                wall, process_cpu = time.perf_counter() - t0, time.process_time() - c0
                doc = json.loads(profile.read_text(encoding="utf-8")) if profile.exists() else {}
                ops: list = []
                for root in doc.get("operator", []):
                    _operators(root, ops)
                query = doc.get("query", {})
                is_table = m.materialisation == "TABLE"
                written = con.execute(f"SELECT count(*) FROM {m.name}").fetchone()[0] if is_table else None
                rows.append((m.name, m.layer, wall, float(query.get("cpu_time", 0.0)), process_cpu, written, ops))
            con.execute("SET enable_profiling = 'no_output'")
            if a.as_run:
                t0, c0 = time.perf_counter(), time.process_time()
                con.execute("COMMIT")
                rows.append(("(commit)", "-", time.perf_counter() - t0, 0.0, time.process_time() - c0, None, []))
    finally:
        con.close()

    total_wall, total_cpu, total_process = (sum(r[i] for r in rows) for i in (2, 3, 4))
    what = f"{len(ordered)} models" + (" and the commit" if a.as_run else "")
    print(f"{what}: {total_wall:.2f} s wall, {total_cpu:.2f} s DuckDB CPU, {total_process:.2f} s process CPU\n")
    print("| model | layer | wall s | DuckDB CPU s | process CPU s | rows written |")
    print("|---|---|---|---|---|---|")
    for name, layer, wall, cpu, process_cpu, written, _ in sorted(rows, key=lambda r: -r[2]):
        print(f"| {name} | {layer} | {wall:.2f} | {cpu:.2f} | {process_cpu:.2f} | {'' if written is None else f'{written:,}'} |")
    print()
    for name, _, wall, _, _, _, ops in sorted((r for r in rows if r[6]), key=lambda r: -r[2])[: a.top]:
        print(f"{name} ({wall:.2f} s):")
        for op in sorted(ops, key=lambda o: -float(o.get("timing", 0.0)))[: a.operators]:
            seconds, kind, rows_out = float(op.get("timing", 0.0)), op.get("type", "?"), op.get("intermediate_rows", 0)
            print(f"  {seconds:7.3f} s  {kind:22s} {rows_out:>12,} rows  {_what(op)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
