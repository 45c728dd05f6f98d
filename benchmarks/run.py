"""`make bench`: time `order-audit run` stage by stage against two baselines, check they agree.

    python -m benchmarks.run                      # 1M and 10M orders, CSV, Parquet and FHIR, 3 repetitions
    BENCH_SCALE=100M python -m benchmarks.run     # ... and 100M orders (CSV; pipeline + floor, 1 run)
    BENCH_SCALES=100k BENCH_REPEAT=1 python -m benchmarks.run   # a quick smoke run
    BENCH_SCALES=deck python -m benchmarks.run    # the fixed cost of a small run: the test decks
    BENCH_FORMATS=csv                              # one format only
    BENCH_FORMATS=csv,fhir                         # CSV and the same orders as a FHIR Bulk Data export
    BENCH_ENGINES=duckdb,spark                     # ... and each cell up to 10M on a local Spark (benchmarks/spark_cell.py)

Every timed command runs in a fresh wrapper process that waits for it and reports
`getrusage(RUSAGE_CHILDREN).ru_maxrss`: the peak resident memory of that one run (the
wrapper's only child), never a maximum over the session. Inputs are generated with
pipeline.synth and cached in benchmarks/data/<scale>-<fmt>/, keyed by the generator
parameters and the hash of the generator's files (pipeline/synth/). Writes benchmarks/results.md (and the raw
figures to benchmarks/data/results.json). Both audits (CSF leak, low back pain) run in the
pipeline, the floor and the pandas baseline. Exits 1 when, for either audit, the pipeline, the
floor, the pandas audit and the generator's truth do not agree, order by order or on the counts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from benchmarks import spark_cell
from benchmarks import targets as bench_targets
from benchmarks.common import (
    AUDITS,
    CSF,
    LBP,
    ROOT,
    Counts,
    Verdicts,
    connect,
    counts_of,
    diff_counts,
    diff_orders,
    floor_rows,
    ground_truth_rows,
    pipeline_rows,
    totals_by_verdict,
    verdicts_of,
)
from benchmarks.targets import DECK, fmt_s

BENCH = Path(__file__).resolve().parent
DATA = BENCH / "data"
RESULTS_MD = BENCH / "results.md"
PY = sys.executable

SCALES = {
    "deck": 0,
    "10k": 10_000,
    "100k": 100_000,
    "1M": 1_000_000,
    "10M": 10_000_000,
    "100M": 100_000_000,
    # case-dense: five times the leak work-ups (about 1.2% of orders audited: 120k orders, 40-50k cases
    # at 10M), so the cost of everything that grows with the cases (report, workbook) is measured
    "1M-dense": 1_000_000,
    "10M-dense": 10_000_000,
}
CASE_DENSITY = {"1M-dense": 5.0, "10M-dense": 5.0}
# the test decks (audits/*/deck/*.toml, 213 audited orders): what a small run costs before any data work
ORDERS_PER_PATIENT = 5  # pipeline.synth: ~5 orders and ~0.5 procedures per patient
# 36 months ending before the run date: the data-quality gate rejects future timestamps, and a
# real backfill holds none
MONTHS, SEED, START = 36, 7, "2023-01"
TZ = "America/New_York"
STAGES = ("parse", "gate", "merge", "models", "marts", "output_checks", "measure", "render")
CORE_STAGES = ("parse", "merge", "models", "marts")  # the work the floor query does too

# Runs one command, waits for it, reports its wall time and peak RSS (this wrapper's only child).
# It also reports how many cores *other* processes kept busy meanwhile (machine CPU time from
# /proc/stat minus the run's own): on a shared 2-core machine that is the noise to watch.
WRAPPER = r"""
import json, os, resource, subprocess, sys, time
def busy():
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")
out, err_path, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
b0, t0 = busy(), time.perf_counter()
with open(err_path, "wb") as err:
    rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=err).returncode
wall, b1 = time.perf_counter() - t0, busy()
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = ru.ru_utime + ru.ru_stime
with open(out, "w") as fh:
    json.dump({"rc": rc, "wall": wall, "maxrss_mb": ru.ru_maxrss / 1024, "cpu": cpu,
               "foreign_cores": max(0.0, (b1 - b0 - cpu) / wall) if wall > 0 else 0.0}, fh)
"""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- data


def synth_hash() -> str:
    """SHA-256 over the generator's source files (pipeline/synth/**/*.py and every audit's scenarios.py, by path):
    a change to any of them regenerates the cached inputs."""
    digest = hashlib.sha256()
    paths = [*(ROOT / "pipeline" / "synth").rglob("*.py"), *(ROOT / "audits").glob("*/scenarios.py")]
    for path in sorted(paths):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def fhir_writer_hash() -> str:
    """The FHIR writer and its queries: a change regenerates the FHIR inputs."""
    fhir = ROOT / "pipeline" / "synth" / "fhir"
    files = [fhir / "writer.py", *sorted((fhir / "sql").glob("*.sql"))]
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()


def data_key(scale: str, fmt: str) -> dict:
    return {
        "patients": SCALES[scale] // ORDERS_PER_PATIENT,
        "months": MONTHS,
        "seed": SEED,
        "start_month": START,
        "fmt": fmt,
        "site_timezone": TZ,
        "case_density": CASE_DENSITY.get(scale, 1.0),
        "synth_sha256": synth_hash(),
    }


def ensure_deck() -> Path:
    """The test deck as one input folder (rewritten every time: it is 200 rows)."""
    from pipeline.deck import write_deck_input  # noqa: PLC0415 - the deck's one writer (tests, `order-audit deck`)

    d = DATA / f"{DECK}-csv"
    shutil.rmtree(d, ignore_errors=True)
    write_deck_input(d)
    return d


def _cached(d: Path, key: dict, what: str, cmd: list[str]) -> Path:
    """Folder d as cmd writes it, rewritten only when its key (generator parameters, code hashes) changed."""
    key_file = d / "bench-key.json"
    if key_file.exists() and json.loads(key_file.read_text()) == key:
        return d
    if d.exists():
        shutil.rmtree(d)
    log(f"{what} into {d}")
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    key_file.write_text(json.dumps(key, indent=1))
    log(f"done in {time.perf_counter() - t0:.0f} s")
    return d


def ensure_data(scale: str, fmt: str) -> Path:
    """The cached input folder for (scale, format): generated (csv, parquet), or the CSV extract of the
    scale written as a FHIR Bulk Data export (fhir: the same orders, as NDJSON, with the same truth)."""
    if scale == DECK:
        return ensure_deck()
    d = DATA / f"{scale}-{fmt}"
    if fmt == "fhir":
        csv_dir = ensure_data(scale, "csv")
        code = (
            "import sys, shutil; from pathlib import Path; from pipeline.config import load_config; "
            "from pipeline.synth.fhir.writer import write_bulk_export; "
            "src, out = Path(sys.argv[1]), Path(sys.argv[2]); "
            "write_bulk_export(src, out, load_config(site_timezone=sys.argv[3])); "
            "names = ('ground_truth_orders.csv', 'ground_truth_cases.csv', 'local_code_map.csv'); "
            "[shutil.copyfile(src / n, out / n) for n in names]"
        )
        key = {**data_key(scale, fmt), "fhir_writer_sha256": fhir_writer_hash()}
        return _cached(d, key, f"writing {scale} orders as a FHIR export", [PY, "-c", code, str(csv_dir), str(d), TZ])
    key = data_key(scale, fmt)
    code = (
        "import sys; from pipeline.synth import generate; "
        "generate(sys.argv[1], patients=int(sys.argv[2]), months=int(sys.argv[3]), seed=int(sys.argv[4]), "
        "start_month=sys.argv[5], fmt=sys.argv[6], site_timezone=sys.argv[7], case_density=float(sys.argv[8]))"
    )
    cmd = [PY, "-c", code, str(d), str(key["patients"]), str(MONTHS), str(SEED), START, fmt, TZ, str(key["case_density"])]
    return _cached(d, key, f"generating {scale} orders as {fmt} (patients={key['patients']}, months={MONTHS})", cmd)


# ----------------------------------------------------------------------------- timed runs


def measured(cmd: list[str], tag: str) -> tuple[dict, str]:
    """Run cmd in a fresh wrapper; (figures, stderr text)."""
    runs = DATA / "_runs"
    runs.mkdir(parents=True, exist_ok=True)
    out, err = runs / f"{tag}.json", runs / f"{tag}.stderr"
    subprocess.run([PY, "-c", WRAPPER, str(out), str(err), *cmd], check=True, cwd=ROOT)
    return json.loads(out.read_text()), err.read_text(errors="replace")


def cli_supports_no_validate() -> bool:
    r = subprocess.run([PY, "-m", "pipeline", "run", "--help"], capture_output=True, text=True, cwd=ROOT)
    return "--no-validate" in r.stdout


def stage_seconds(stderr: str) -> dict[str, float]:
    stages: dict[str, float] = {}
    for line in stderr.splitlines():
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("event") == "stage_done":
            stages[rec["stage"]] = stages.get(rec["stage"], 0.0) + float(rec["seconds"])
    return stages


def run_pipeline(d: Path, validate: bool, tag: str) -> dict:
    work = DATA / "_runs" / tag
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    wh = work / "warehouse.duckdb"
    cmd = [
        PY,
        "-m",
        "pipeline",
        "run",
        "--input",
        str(d),
        "--out",
        str(work / "out"),
        "--warehouse",
        str(wh),
        "--log-format",
        "json",
        # both audits named: an audit the run skipped fails the agreement instead of leaving it to the baselines
        *[arg for audit in AUDITS for arg in ("--audit", audit)],
    ] + ([] if validate else ["--no-validate"])
    fig, err = measured(cmd, tag)
    fig["stages"] = stage_seconds(err)
    fig["warehouse"] = str(wh)
    # the largest committee report of the run (issue 10 bounds it whatever the number of cases)
    fig["report_mb"] = max((f.stat().st_size / 1e6 for f in (work / "out").glob("*/report.html")), default=None)
    if fig["rc"] != 0:
        fig["error"] = "\n".join(err.strip().splitlines()[-6:])
    return fig


def run_baseline(name: str, d: Path, tag: str) -> dict:
    res = DATA / "_runs" / f"{tag}.result.json"
    fig, err = measured([PY, "-m", "benchmarks.run", "--baseline", name, "--input", str(d), "--result", str(res)], tag)
    if fig["rc"] != 0:
        fig["error"] = "\n".join(err.strip().splitlines()[-6:])
        return fig
    r = json.loads(res.read_text())
    fig["compute"] = r["seconds"]
    fig["compute_by_audit"] = r["seconds_by_audit"]
    rows = {audit: [tuple(row) for row in r["orders"][audit]] for audit in AUDITS}
    fig["counts"] = {audit: counts_of(rows[audit]) for audit in AUDITS}
    fig["orders"] = {audit: verdicts_of(rows[audit]) for audit in AUDITS}
    return fig


def baseline_main(name: str, input_dir: Path, result: Path) -> None:
    """In the measured child: both audits' verdicts per order, and the compute time (imports excluded)."""
    if name == "floor":
        con = connect()

        def compute(audit):
            return floor_rows(input_dir, con, audit)
    else:
        from benchmarks import pandas_audit, pandas_lbp

        modules = {CSF: pandas_audit, LBP: pandas_lbp}

        def compute(audit):
            return modules[audit].audit_orders(input_dir).itertuples(index=False, name=None)

    rows, seconds = {}, {}
    for audit in AUDITS:
        t0 = time.perf_counter()
        computed = compute(audit)
        seconds[audit] = time.perf_counter() - t0
        rows[audit] = [["NULL" if x is None else str(x) for x in row] for row in computed]  # as JSON text, untimed
    result.write_text(json.dumps({"seconds": sum(seconds.values()), "seconds_by_audit": seconds, "orders": rows}))


# ----------------------------------------------------------------------------- summary


def med(xs):
    return statistics.median(xs) if xs else None


def spread(xs):
    return (min(xs), max(xs)) if xs else None


def pct(x):
    return "—" if x is None else f"{x:+.0%}"


def fmt_range(r, nd=2):
    return "—" if r is None else f"{r[0]:.{nd}f}–{r[1]:.{nd}f}"


def summarise(runs: list[dict]) -> dict:
    ok = [r for r in runs if r["rc"] == 0]
    out = {
        "n": len(runs),
        "ok": len(ok),
        "wall": med([r["wall"] for r in ok]),
        "wall_range": spread([r["wall"] for r in ok]),
        "rss": max((r["maxrss_mb"] for r in ok), default=None),
        "rss_median": med([r["maxrss_mb"] for r in ok]),
        "compute": med([r["compute"] for r in ok if "compute" in r]),
        "compute_range": spread([r["compute"] for r in ok if "compute" in r]),
        "compute_by_audit": {
            a: med([r["compute_by_audit"][a] for r in ok if a in r.get("compute_by_audit", {})])
            for a in AUDITS
            if any(a in r.get("compute_by_audit", {}) for r in ok)
        },
        "stages": {},
        "foreign_cores": max((r.get("foreign_cores", 0.0) for r in runs), default=0.0),
        "cpu": med([r["cpu"] for r in ok]),
        "report_mb": max((r["report_mb"] for r in ok if r.get("report_mb")), default=None),
    }
    for st in STAGES:
        xs = [r["stages"][st] for r in ok if st in r.get("stages", {})]
        if xs:
            out["stages"][st] = {"median": med(xs), "range": spread(xs)}
    errors = [r.get("error") for r in runs if r["rc"] != 0]
    if errors:
        out["error"] = errors[0]
    return out


def machine() -> dict:
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    mem = next((int(line.split()[1]) for line in meminfo if line.startswith("MemTotal")), 0)
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), platform.processor())
    vers = {"python": platform.python_version()}
    for pkg in ("duckdb", "polars", "pandas", "great-expectations", "pyarrow"):
        try:
            vers[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            vers[pkg] = "not installed"
    return {
        "nproc": os.cpu_count(),
        "ram_gib": round(mem / 1024 / 1024, 1),
        "cpu": cpu,
        "versions": vers,
        "os": platform.platform(),
    }


def verdict_mark(ok) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def write_results(res: dict) -> str:
    m = res["machine"]
    L = [
        "# Benchmark results",
        "",
        f"Generated by `make bench` (`python -m benchmarks.run`) on {res['finished_at']}; "
        f"{res['repeat']} repetition(s) per figure; see benchmarks/README.md for how to read it.",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']} ({m['nproc']} cores visible)",
        f"- RAM: {m['ram_gib']} GiB; OS: {m['os']}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        "",
    ]
    notes = list(res.get("notes", []))
    for c in res["cells"]:
        for k in ("validate", "no_validate", "floor", "pandas"):
            s = c.get(k)
            if s and s.get("foreign_cores", 0) > 0.25:
                notes.append(
                    f"{c['scale']} {c['fmt']} {k}: other processes kept up to {s['foreign_cores']:.1f} of "
                    f"{res['machine']['nproc']} cores busy during a run: figures disturbed"
                )
            if s and s.get("error"):
                err = s["error"].strip().splitlines()[-1][:300]
                notes.append(f"{c['scale']} {c['fmt']} {k}: {s['n'] - s['ok']} of {s['n']} run(s) failed: `{err}`")
    if notes:
        L += ["## Notes on this run", ""] + [f"- {n}" for n in notes] + [""]
    L += [
        "## Pipeline stages (seconds: median, min–max) and whole process",
        "",
        "| scale | format | validation | " + " | ".join(STAGES) + " | whole process | CPU s | peak RSS MB |",
        "|---|---|---|" + "---|" * len(STAGES) + "---|---|---|",
    ]
    for c in res["cells"]:
        for variant in ("validate", "no_validate"):
            s = c.get(variant)
            if not s:
                continue
            cells = []
            for st in STAGES:
                x = s["stages"].get(st)
                cells.append("—" if x is None else f"{x['median']:.2f} ({fmt_range(x['range'])})")
            whole = f"{fmt_s(s['wall'])} ({fmt_range(s['wall_range'])})" if s["ok"] else "FAILED"
            L.append(
                f"| {c['scale']} | {c['fmt']} | {'yes' if variant == 'validate' else 'no'} | "
                + " | ".join(cells)
                + f" | {whole} | {fmt_s(s.get('cpu'), 1)} | {fmt_s(s['rss'], 0)} |"
            )
    L += [
        "",
        "## Baselines (seconds: median, min–max)",
        "",
        "Each baseline process computes both audits (CSF leak, then low back pain) on the same files; "
        "the query / audit columns are their compute time together, then each audit's (median).",
        "",
        "| scale | format | floor query | floor query per audit | floor process | floor CPU s | floor RSS MB "
        "| pandas audit | pandas audit per audit | pandas process | pandas CPU s | pandas RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in res["cells"]:
        f, p = c.get("floor") or {}, c.get("pandas") or {}

        def col(s, key, rng):
            return "—" if not s or s.get(key) is None else f"{s[key]:.2f} ({fmt_range(s[rng])})"

        def per_audit(s):
            by = (s or {}).get("compute_by_audit") or {}
            return ", ".join(f"{a} {fmt_s(by[a])}" for a in AUDITS if by.get(a) is not None) or "—"

        L.append(
            f"| {c['scale']} | {c['fmt']} | {col(f, 'compute', 'compute_range')} | {per_audit(f)} | "
            f"{col(f, 'wall', 'wall_range')} | {fmt_s(f.get('cpu'), 1)} | {fmt_s(f.get('rss'), 0)} | "
            f"{col(p, 'compute', 'compute_range')} | {per_audit(p)} | "
            f"{col(p, 'wall', 'wall_range')} | {fmt_s(p.get('cpu'), 1)} | {fmt_s(p.get('rss'), 0)} |"
        )
    L += [
        "",
        "## Ratios (medians of whole processes unless said)",
        "",
        "| scale | format | pipeline / floor (no validation) | load+transform / floor query | "
        "validation overhead | pandas / pipeline (no validation) | CPU-time ratios: pipeline / floor, "
        "validation overhead, pandas / pipeline |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in res["cells"]:
        r = c["ratios"]
        vo = r.get("validation_overhead")
        L.append(
            f"| {c['scale']} | {c['fmt']} | {fmt_s(r.get('pipeline_over_floor'))} | "
            f"{fmt_s(r.get('core_over_floor_query'))} | {'—' if vo is None else f'{vo:+.0%}'} | "
            f"{fmt_s(r.get('pandas_over_pipeline'))} | {fmt_s(r.get('cpu_pipeline_over_floor'))}, "
            f"{pct(r.get('cpu_validation_overhead'))}, "
            f"{fmt_s(r.get('cpu_pandas_over_pipeline'))} |"
        )
    sc = res.get("scaling", {})
    if sc:
        L += ["", "Scaling 10M / 1M (whole process, median): " + "; ".join(f"{k}: {v:.1f}x" for k, v in sc.items())]
    L += ["", "## Agreement (per audit: order by order, and counts by month, department and verdict)", ""]
    for c in res["cells"]:
        # a results.json written before the low back pain baselines holds one CSF-leak agreement per cell
        for audit, a in (c["agreement"].get("audits") or {"csf_leak": c["agreement"]}).items():
            n = f" ({a['orders_compared']} orders)" if "orders_compared" in a else ""
            L.append(
                f"- {c['scale']} {c['fmt']} {audit}: {a['status']}{n}. Totals: "
                + ", ".join(f"{k}={v}" for k, v in a.get("totals", {}).items())
            )
            for line in a.get("diff", [])[:30]:
                L.append(f"    - {line}")
            if a.get("n_order_diff"):
                L.append(f"    - {a['n_order_diff']} order(s) differ; the first:")
            for line in a.get("orders", [])[:30]:
                L.append(f"    - order {line}")
    L += spark_cell.results_lines(res["cells"], fmt_s)
    L += [
        "",
        "## Targets (issues 6, 10, 15 and 16)",
        "",
        "A missed target names what holds it in this run's own figures (stage medians, seconds); the profile notes "
        "below say why, from the profiles.",
        "",
        "| target | measured | result | what holds it |",
        "|---|---|---|---|",
    ]
    for t in res["targets"]:
        L.append(f"| {t['target']} | {t['measured']} | {verdict_mark(t['ok'])} | {t.get('holds') or '—'} |")
    L.append("")
    if res.get("profile"):
        L += ["## Profile notes", ""] + res["profile"] + [""]
    text = "\n".join(L)
    RESULTS_MD.write_text(text, encoding="utf-8")
    return text


# ----------------------------------------------------------------------------- the benchmark


def audit_agreement(c: dict, d: Path, warehouses: dict[str, str], audit: str) -> dict:
    """One audit's verdicts compared order by order and counted by (month, department, verdict): the
    pipeline's mart (each warehouse), the floor, the pandas audit and the generator's truth."""
    orders: dict[str, Verdicts] = {}
    counts: dict[str, Counts] = {}
    missing = []
    for name, wh in warehouses.items():
        rows = pipeline_rows(wh, audit)
        if rows is None:
            missing.append(f"{name}: the run's warehouse has no {audit}__mart_audited_orders")
        else:
            orders[name], counts[name] = verdicts_of(rows), counts_of(rows)
    for name in ("floor", "pandas"):
        runs = [r for r in c["_raw"][name] if r["rc"] == 0]
        for i, r in enumerate(runs):  # a repetition that differs from the first is compared too
            if i == 0 or r["orders"][audit] != runs[0]["orders"][audit]:
                key = name if i == 0 else f"{name}#{i + 1}"
                orders[key], counts[key] = r["orders"][audit], r["counts"][audit]
    # a FHIR export's truth is its CSV extract's (the truth's month and department come from the CSV tables)
    truth = ground_truth_rows(DATA / f"{c['scale']}-csv" if c["fmt"] == "fhir" else d, audit)
    if truth is not None:
        orders["truth"], counts["truth"] = verdicts_of(truth), counts_of(truth)
    compared = len(orders) > 1
    diff = missing + (diff_counts(counts) if compared else [])
    order_diff = diff_orders(orders) if compared else []
    first = next(iter(counts.values()), {})
    out = {
        "compared": list(orders),
        "orders_compared": max((len(v) for v in orders.values()), default=0),
        "diff": diff[:200],
        "orders": order_diff[:200],
        "n_order_diff": len(order_diff),
        "totals": totals_by_verdict(first),
        "ok": not diff and not order_diff,
    }
    if compared or missing:
        out["status"] = ("DISAGREE" if diff or order_diff else "agree") + " order by order: " + ", ".join(orders)
    else:  # the deck: its verdicts are checked order by order by tests/test_decks.py
        out["status"] = "nothing to compare" + (f" ({', '.join(orders)} only)" if orders else "")
    return out


def agreement(c: dict, d: Path, warehouses: dict[str, str]) -> dict:
    audits = {audit: audit_agreement(c, d, warehouses, audit) for audit in AUDITS}
    return {
        "audits": audits,
        "ok": all(a["ok"] for a in audits.values()),
        "status": "; ".join(f"{audit}: {a['status']}" for audit, a in audits.items()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", choices=["floor", "pandas"], help=argparse.SUPPRESS)
    ap.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    ap.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite results.md from benchmarks/data/results.json (e.g. after editing profile_notes.md)",
    )
    args = ap.parse_args()
    if args.render_only:
        res = json.loads((DATA / "results.json").read_text())
        prof = BENCH / "profile_notes.md"
        if prof.exists():
            res["profile"] = prof.read_text(encoding="utf-8").strip().splitlines()
        # the targets again from the stored cells: a run written before a target (or its reason) was added gets it
        cells = {(c["scale"], c["fmt"]): c for c in res["cells"]}
        no_validate = any(c.get("no_validate") for c in res["cells"])
        res["targets"] = bench_targets.targets(lambda scale, fmt: cells.get((scale, fmt)), res["scaling"], no_validate)
        print(write_results(res))
        return 0
    if args.baseline:
        baseline_main(args.baseline, args.input, args.result)
        return 0

    repeat = int(os.environ.get("BENCH_REPEAT", "3"))
    if os.environ.get("BENCH_SCALES"):
        scales = [s.strip() for s in os.environ["BENCH_SCALES"].split(",") if s.strip()]
    else:
        scales = [DECK, "1M", "10M", "10M-dense"] + (["100M"] if os.environ.get("BENCH_SCALE", "").upper() == "100M" else [])
    formats = [f.strip() for f in os.environ.get("BENCH_FORMATS", "csv,parquet,fhir").split(",") if f.strip()]
    engines = {e.strip() for e in os.environ.get("BENCH_ENGINES", "duckdb").split(",") if e.strip()}
    bad = [s for s in scales if s not in SCALES]
    if bad:
        print(f"unknown scale(s) {bad}; known: {', '.join(SCALES)}", file=sys.stderr)
        return 2
    pipeline_present = (ROOT / "pipeline" / "run.py").exists() and (ROOT / "pipeline" / "cli.py").exists()
    no_validate = pipeline_present and cli_supports_no_validate()
    notes = []
    if not pipeline_present:
        notes.append("pipeline/run.py or pipeline/cli.py is missing: only the baselines were timed.")
    elif not no_validate:
        notes.append(
            "`order-audit run` has no `--no-validate` flag yet: the no-validation variant was not run, "
            "and like-for-like ratios use the run with validation."
        )
    started = time.perf_counter()
    cells = []
    for scale in scales:
        for fmt in formats:
            if (scale in ("100M", DECK) or scale.endswith("-dense")) and fmt != "csv":
                continue  # 100M: the CSV backfill is the target; dense: the report's cost, not the format's; the deck is CSV
            d = ensure_data(scale, fmt)
            big = scale == "100M"
            reps = 1 if big else repeat
            raw = {"validate": [], "no_validate": [], "floor": [], "pandas": []}
            for rep in range(reps):
                tag = f"{scale}-{fmt}-{rep}"
                if pipeline_present:
                    log(f"{tag}: pipeline with validation")
                    raw["validate"].append(run_pipeline(d, True, f"{tag}-pipe-v"))
                    log(
                        f"  {raw['validate'][-1]['wall']:.1f} s, {raw['validate'][-1]['maxrss_mb']:.0f} MB, "
                        f"rc={raw['validate'][-1]['rc']}, others busy {raw['validate'][-1]['foreign_cores']:.1f} cores"
                    )
                    if no_validate and not big:
                        log(f"{tag}: pipeline without validation")
                        raw["no_validate"].append(run_pipeline(d, False, f"{tag}-pipe-nv"))
                        log(f"  {raw['no_validate'][-1]['wall']:.1f} s, {raw['no_validate'][-1]['maxrss_mb']:.0f} MB")
                if scale == DECK:
                    continue  # the deck measures the fixed cost: no baseline computes its verdicts
                if fmt == "fhir":
                    continue  # the baselines read CSV or Parquet; the FHIR cell is compared with the CSV cell
                log(f"{tag}: floor")
                raw["floor"].append(run_baseline("floor", d, f"{tag}-floor"))
                log(f"  {raw['floor'][-1]['wall']:.1f} s, {raw['floor'][-1]['maxrss_mb']:.0f} MB")
                if not big:  # pandas holds everything in memory: 100M orders do not fit in 24 GiB
                    log(f"{tag}: pandas")
                    raw["pandas"].append(run_baseline("pandas", d, f"{tag}-pandas"))
                    log(f"  {raw['pandas'][-1]['wall']:.1f} s, {raw['pandas'][-1]['maxrss_mb']:.0f} MB")
            c = {"scale": scale, "fmt": fmt, "_raw": raw}
            for k in raw:
                if raw[k]:
                    c[k] = summarise(raw[k])
            duck_out = DATA / "_runs" / f"{scale}-{fmt}-0-pipe-nv" / "out"
            on_spark = "spark" in engines and fmt in ("csv", "parquet") and 0 < SCALES[scale] <= spark_cell.MAX_ORDERS
            if on_spark and duck_out.is_dir():
                log(f"{scale}-{fmt}: pipeline on Spark ({spark_cell.MASTER})")
                c["spark"] = spark_cell.run(d, DATA / "_runs" / f"{scale}-{fmt}-spark", duck_out, AUDITS)
                s = c["spark"]
                log(f"  {s['wall']:.1f} s, rc={s['rc']}" + (f", outputs differ: {s['differ']}" if s.get("differ") else ""))
            whs = {}
            for name, key in (("pipeline", "validate"), ("pipeline --no-validate", "no_validate")):
                wh = next((r["warehouse"] for r in raw[key] if r["rc"] == 0), None)
                if wh:
                    whs[name] = wh
            c["agreement"] = agreement(c, d, whs)
            log(f"{scale} {fmt}: {c['agreement']['status']}")
            like = c.get("no_validate") or c.get("validate")
            r = {}
            if like and like.get("wall") and c.get("floor", {}).get("wall"):
                r["pipeline_over_floor"] = like["wall"] / c["floor"]["wall"]
                core = sum(like["stages"].get(s, {}).get("median", 0) for s in CORE_STAGES)
                if core and c["floor"].get("compute"):
                    r["core_over_floor_query"] = core / c["floor"]["compute"]
            if c.get("validate", {}).get("wall") and c.get("no_validate", {}).get("wall"):
                r["validation_overhead"] = c["validate"]["wall"] / c["no_validate"]["wall"] - 1
            if like and like.get("wall") and c.get("pandas", {}).get("wall"):
                r["pandas_over_pipeline"] = c["pandas"]["wall"] / like["wall"]
            # CPU seconds of the process: less sensitive than wall time to other work on the machine
            fl, pd_, va = c.get("floor", {}), c.get("pandas", {}), c.get("validate", {})
            if like and like.get("cpu") and fl.get("cpu"):
                r["cpu_pipeline_over_floor"] = like["cpu"] / fl["cpu"]
            if va.get("cpu") and c.get("no_validate", {}).get("cpu"):
                r["cpu_validation_overhead"] = va["cpu"] / c["no_validate"]["cpu"] - 1
            if like and like.get("cpu") and pd_.get("cpu"):
                r["cpu_pandas_over_pipeline"] = pd_["cpu"] / like["cpu"]
            c["ratios"] = r
            cells.append(c)
            # drop the per-run work folders of this cell (warehouses of 10M+ are large)
            for p in (DATA / "_runs").glob(f"{scale}-{fmt}-*"):
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)

    def cell(scale, fmt):
        return next((c for c in cells if c["scale"] == scale and c["fmt"] == fmt), None)

    scaling = {}
    for fmt in formats:
        a, b = cell("1M", fmt), cell("10M", fmt)
        for variant in ("validate", "no_validate"):
            if a and b and a.get(variant, {}).get("wall") and b.get(variant, {}).get("wall"):
                scaling[f"pipeline {fmt}{'' if variant == 'validate' else ' (no validation)'}"] = (
                    b[variant]["wall"] / a[variant]["wall"]
                )
        if a and b and a.get("floor", {}).get("wall") and b.get("floor", {}).get("wall"):
            scaling[f"floor {fmt}"] = b["floor"]["wall"] / a["floor"]["wall"]

    targets = bench_targets.targets(cell, scaling, no_validate)

    res = {
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "repeat": repeat,
        "machine": machine(),
        "notes": notes,
        "scaling": scaling,
        "targets": targets,
        "total_bench_seconds": time.perf_counter() - started,
        "cells": [{k: v for k, v in c.items() if k != "_raw"} for c in cells],
    }
    prof = BENCH / "profile_notes.md"
    if prof.exists():
        res["profile"] = prof.read_text(encoding="utf-8").strip().splitlines()
    DATA.mkdir(parents=True, exist_ok=True)
    (DATA / "results.json").write_text(
        json.dumps(
            res
            | {
                "raw": [
                    {
                        "scale": c["scale"],
                        "fmt": c["fmt"],
                        "runs": {
                            k: [{kk: vv for kk, vv in x.items() if kk not in ("counts", "orders")} for x in v]
                            for k, v in c["_raw"].items()
                        },
                    }
                    for c in cells
                ]
            },
            indent=1,
            default=str,
        )
    )
    print(write_results(res))
    disagree = [c for c in cells if not c["agreement"]["ok"]]
    failed = [c for c in cells for k in ("validate", "no_validate", "floor", "pandas") if c.get(k) and c[k]["ok"] < c[k]["n"]]
    if disagree:
        print("\nVERDICTS DISAGREE: see 'Agreement' in benchmarks/results.md", file=sys.stderr)
    if failed:
        print("\nSOME RUNS FAILED: see the tables in benchmarks/results.md", file=sys.stderr)
    return 1 if (disagree or failed) else 0


if __name__ == "__main__":
    sys.exit(main())
