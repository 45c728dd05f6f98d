"""Shared pieces of the benchmark: input files, the floor query, ground truth, count comparison.

Counts are dicts {(case_index_month, ordering_department, verdict): n}; a verdict the
pipeline leaves empty is the string "NULL" so it shows up in a comparison.
"""

from __future__ import annotations

import csv
from pathlib import Path
from string import Template

import duckdb

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "audits" / "csf_leak"  # the seeds of the audit the baselines compute
FLOOR_SQL = Path(__file__).resolve().parent / "floor.sql"

Key = tuple[str, str, str]
Counts = dict[Key, int]

# the columns each baseline reads; optional ones become NULL when the extract lacks them
COLUMNS = {
    "procedures": (
        "procedure_id",
        "patient_id",
        "performed_at",
        "procedure_code",
        "department",
        "patient_birth_date",
        "patient_age",
    ),
    "imaging_orders": ("order_id", "patient_id", "ordered_at", "order_code", "ordering_department", "indication_codes", "status"),
    "diagnoses": ("patient_id", "diagnosis_code", "recorded_at"),
}
SITE_TZ = "America/New_York"


def input_file(input_dir: Path, table: str) -> Path | None:
    for ext in ("csv", "parquet"):
        p = Path(input_dir) / f"{table}.{ext}"
        if p.exists():
            return p
    return None


def header(path: Path) -> list[str]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return next(csv.reader(fh))


def _sql_str(s: str) -> str:
    return "'" + str(s).replace("'", "''") + "'"


def relation(path: Path | None, table: str) -> str:
    """A SQL relation with the canonical columns (VARCHAR) read straight from the file."""
    cols = COLUMNS[table]
    if path is None:
        return "(SELECT " + ", ".join(f"NULL::VARCHAR AS {c}" for c in cols) + " WHERE false)"
    have = {h.strip().lower(): h for h in header(path)}
    if path.suffix == ".parquet":
        reader = f"read_parquet({_sql_str(path)})"
    else:
        reader = (
            f"read_csv({_sql_str(path)}, all_varchar = true, header = true, auto_detect = false, "
            "columns = {" + ", ".join(f"{_sql_str(h)}: 'VARCHAR'" for h in header(path)) + "})"
        )
    proj = []
    for c in cols:
        src = have.get(c)
        proj.append(f'CAST("{src}" AS VARCHAR) AS {c}' if src else f"NULL::VARCHAR AS {c}")
    return f"(SELECT {', '.join(proj)} FROM {reader})"


def floor_sql(input_dir: Path, tz: str = SITE_TZ) -> str:
    input_dir = Path(input_dir)
    local = input_dir / "local_code_map.csv"
    local_rel = (
        f"read_csv({_sql_str(local)}, all_varchar = true, header = true)"
        if local.exists()
        else "(SELECT NULL::VARCHAR AS code, NULL::VARCHAR AS study_type, NULL::VARCHAR AS regions, "
        "NULL::VARCHAR AS contrast WHERE false)"
    )
    return Template(FLOOR_SQL.read_text(encoding="utf-8")).substitute(
        procedures=relation(input_file(input_dir, "procedures"), "procedures"),
        imaging_orders=relation(input_file(input_dir, "imaging_orders"), "imaging_orders"),
        diagnoses=relation(input_file(input_dir, "diagnoses"), "diagnoses"),
        value_sets=str(REFERENCE / "value_sets.csv").replace("'", "''"),
        imaging_code_map=str(REFERENCE / "code_map.csv").replace("'", "''"),
        local_code_map=local_rel,
        tz=tz,
    )


def connect(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


def to_counts(rows) -> Counts:
    out: Counts = {}
    for month, dept, verdict, n in rows:
        key = (str(month), str(dept), "NULL" if verdict is None else str(verdict))
        out[key] = out.get(key, 0) + int(n)
    return out


def floor_counts(input_dir: Path, con: duckdb.DuckDBPyConnection | None = None) -> Counts:
    con = con or connect()
    return to_counts(con.execute(floor_sql(input_dir)).fetchall())


def ground_truth_counts(input_dir: Path) -> Counts | None:
    """The generator's truth (ground_truth_orders.csv) counted like the mart: the case's index
    month (site-local) and the order's ordering department."""
    input_dir = Path(input_dir)
    gt = input_dir / "ground_truth_orders.csv"
    if not gt.exists():
        return None
    # the CSF-leak truth of the audits' scenario patients (a patient who is a case in both audits) too
    scenario_gt = input_dir / "ground_truth" / "csf_leak" / "orders.csv"
    gt_files = [gt, scenario_gt] if scenario_gt.exists() else [gt]
    con = connect()
    procs = relation(input_file(input_dir, "procedures"), "procedures")
    orders = relation(input_file(input_dir, "imaging_orders"), "imaging_orders")
    # the truth lists few orders: parse their times with a plain, slow-but-obvious expression
    sql = f"""
    WITH gt AS (SELECT * FROM read_csv([{", ".join(_sql_str(p) for p in gt_files)}], all_varchar = true, header = true)),
    p AS (SELECT trim(procedure_id) AS procedure_id, trim(performed_at) AS ts FROM {procs}
          WHERE trim(procedure_id) IN (SELECT case_id FROM gt)),
    p2 AS (SELECT procedure_id,
             CASE WHEN length(ts) = 10 THEN timezone('{SITE_TZ}', strptime(ts, '%Y-%m-%d'))
                  WHEN suffix(ts, 'Z') THEN timezone('UTC', strptime(replace(ts, 'T', ' '), '%Y-%m-%d %H:%M:%SZ'))
                  WHEN contains(ts[11:], '+') OR contains(ts[11:], '-')
                       THEN strptime(replace(ts, 'T', ' '), '%Y-%m-%d %H:%M:%S%z')
                  ELSE timezone('{SITE_TZ}', strptime(replace(ts, 'T', ' '), '%Y-%m-%d %H:%M:%S')) END AS at
           FROM p),
    o AS (SELECT trim(order_id) AS order_id,
                 coalesce(nullif(trim(ordering_department), ''), '(not recorded)') AS dept
          FROM {orders} WHERE trim(order_id) IN (SELECT order_id FROM gt))
    SELECT strftime(timezone('{SITE_TZ}', p2.at), '%Y-%m'), o.dept, gt.verdict, count(*)
    FROM gt JOIN o ON o.order_id = gt.order_id JOIN p2 ON p2.procedure_id = gt.case_id
    GROUP BY ALL ORDER BY ALL"""
    return to_counts(con.execute(sql).fetchall())


def diff_counts(named: dict[str, Counts]) -> list[str]:
    """Rows where the named count sets differ (empty list: all agree)."""
    names = list(named)
    keys = sorted(set().union(*[set(c) for c in named.values()]))
    lines = []
    for k in keys:
        vals = [named[n].get(k, 0) for n in names]
        if len(set(vals)) > 1:
            lines.append(f"{k[0]} | {k[1]} | {k[2]}: " + ", ".join(f"{n}={v}" for n, v in zip(names, vals, strict=True)))
    return lines


def totals_by_verdict(c: Counts) -> dict[str, int]:
    out: dict[str, int] = {}
    for (_, _, v), n in c.items():
        out[v] = out.get(v, 0) + n
    return dict(sorted(out.items()))


def floor_orders(input_dir: Path, con: duckdb.DuckDBPyConnection | None = None) -> dict[tuple[str, str], str]:
    """The floor's verdict per (case_id, order_id): for finding the orders behind a difference."""
    con = con or connect()
    sql = floor_sql(input_dir)
    head = sql[: sql.index("-- FINAL")]
    rows = con.execute(head + "SELECT case_id, order_id, verdict FROM verdicts").fetchall()
    return {(c, o): ("NULL" if v is None else v) for c, o, v in rows}
