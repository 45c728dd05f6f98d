"""Shared pieces of the benchmark: input files, the floor queries, ground truth, count comparison.

Counts are dicts {(case_index_month, ordering_department, verdict): n}; a verdict the
pipeline leaves empty is the string "NULL" so it shows up in a comparison. Per-order
verdicts are dicts {(case key, order_id): verdict}: the case key is the CSF-leak case's
index procedure id, and a low back pain episode's index date (the pipeline's case_id
holds the keyed pseudonym, which no baseline computes; an order has one patient).
"""

from __future__ import annotations

import csv
from pathlib import Path
from string import Template

import duckdb

ROOT = Path(__file__).resolve().parent.parent
CSF, LBP = "csf_leak", "low_back_pain"
AUDITS = (CSF, LBP)  # the audits the baselines compute
REFERENCE = ROOT / "audits" / CSF  # the seeds of the CSF-leak audit
LBP_REFERENCE = ROOT / "audits" / LBP
FLOOR_SQL = Path(__file__).resolve().parent / "floor.sql"
FLOOR_LBP_SQL = Path(__file__).resolve().parent / "floor_lbp.sql"

Key = tuple[str, str, str]
Counts = dict[Key, int]
OrderRow = tuple[str, str, str, str, str]  # case key, order_id, case_index_month, ordering_department, verdict
Verdicts = dict[tuple[str, str], str]

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
# the low back pain baselines also read the diagnoses' encounter columns and the patients table
LBP_COLUMNS = {
    **COLUMNS,
    "diagnoses": (*COLUMNS["diagnoses"], "setting", "is_principal", "diagnosis_rank"),
    "patients": ("patient_id", "birth_date"),
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


def relation(path: Path | None, table: str, columns: dict[str, tuple[str, ...]] = COLUMNS) -> str:
    """A SQL relation with the canonical columns (VARCHAR) read straight from the file."""
    cols = columns[table]
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


def _local_code_map(input_dir: Path) -> str:
    """The site's code map as a relation (an empty one without local_code_map.csv)."""
    local = input_dir / "local_code_map.csv"
    if local.exists():
        return f"read_csv({_sql_str(local)}, all_varchar = true, header = true)"
    return (
        "(SELECT NULL::VARCHAR AS code, NULL::VARCHAR AS study_type, NULL::VARCHAR AS regions, "
        "NULL::VARCHAR AS contrast WHERE false)"
    )


def floor_sql(input_dir: Path, tz: str = SITE_TZ) -> str:
    """The CSF-leak floor (floor.sql) on the input folder."""
    input_dir = Path(input_dir)
    return Template(FLOOR_SQL.read_text(encoding="utf-8")).substitute(
        procedures=relation(input_file(input_dir, "procedures"), "procedures"),
        imaging_orders=relation(input_file(input_dir, "imaging_orders"), "imaging_orders"),
        diagnoses=relation(input_file(input_dir, "diagnoses"), "diagnoses"),
        value_sets=str(REFERENCE / "value_sets.csv").replace("'", "''"),
        imaging_code_map=str(REFERENCE / "code_map.csv").replace("'", "''"),
        local_code_map=_local_code_map(input_dir),
        tz=tz,
    )


def floor_lbp_sql(input_dir: Path, tz: str = SITE_TZ) -> str:
    """The low back pain floor (floor_lbp.sql) on the input folder."""
    input_dir = Path(input_dir)
    dx = input_file(input_dir, "diagnoses")
    dx_cols = {h.strip().lower() for h in header(dx)} if dx else set()
    shipped_maps = sorted((ROOT / "audits").glob("*/code_map.csv"))
    return Template(FLOOR_LBP_SQL.read_text(encoding="utf-8")).substitute(
        **{t: relation(input_file(input_dir, t), t, LBP_COLUMNS) for t in ("procedures", "imaging_orders", "patients")},
        diagnoses=relation(dx, "diagnoses", LBP_COLUMNS),
        has_setting=str("setting" in dx_cols).lower(),
        has_position=str(bool({"is_principal", "diagnosis_rank"} & dx_cols)).lower(),
        value_sets=str(LBP_REFERENCE / "value_sets.csv").replace("'", "''"),
        shipped_code_maps=", ".join(_sql_str(p) for p in shipped_maps),
        local_code_map=_local_code_map(input_dir),
        tz=tz,
    )


FLOOR_SQLS = {CSF: floor_sql, LBP: floor_lbp_sql}


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


def floor_counts(input_dir: Path, con: duckdb.DuckDBPyConnection | None = None, audit: str = CSF) -> Counts:
    con = con or connect()
    return to_counts(con.execute(FLOOR_SQLS[audit](input_dir)).fetchall())


def _truth_sql_csf(input_dir: Path) -> str | None:
    """The CSF-leak truth per order: the case's index month (site-local), the order's department."""
    gt = input_dir / "ground_truth_orders.csv"
    if not gt.exists():
        return None
    # the CSF-leak truth of the audits' scenario patients (a patient who is a case in both audits) too
    scenario_gt = input_dir / "ground_truth" / CSF / "orders.csv"
    gt_files = [gt, scenario_gt] if scenario_gt.exists() else [gt]
    procs = relation(input_file(input_dir, "procedures"), "procedures")
    orders = relation(input_file(input_dir, "imaging_orders"), "imaging_orders")
    # the truth lists few orders: parse their times with a plain, slow-but-obvious expression
    return f"""
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
    SELECT gt.case_id, gt.order_id, strftime(timezone('{SITE_TZ}', p2.at), '%Y-%m'), o.dept, gt.verdict
    FROM gt JOIN o ON o.order_id = gt.order_id JOIN p2 ON p2.procedure_id = gt.case_id"""


def _truth_sql_lbp(input_dir: Path) -> str | None:
    """The low back pain truth per order (ground_truth/low_back_pain/orders.csv): the episode's index
    month and the order's department."""
    gt = input_dir / "ground_truth" / LBP / "orders.csv"
    if not gt.exists():
        return None
    orders = relation(input_file(input_dir, "imaging_orders"), "imaging_orders")
    return f"""
    WITH gt AS (SELECT * FROM read_csv({_sql_str(gt)}, all_varchar = true, header = true)),
    o AS (SELECT trim(order_id) AS order_id,
                 coalesce(nullif(trim(ordering_department), ''), '(not recorded)') AS dept
          FROM {orders} WHERE trim(order_id) IN (SELECT order_id FROM gt))
    SELECT gt.index_date, gt.order_id, substr(gt.index_date, 1, 7), o.dept, gt.verdict
    FROM gt JOIN o ON o.order_id = gt.order_id"""


TRUTH_SQLS = {CSF: _truth_sql_csf, LBP: _truth_sql_lbp}


def ground_truth_rows(input_dir: Path, audit: str = CSF) -> list[OrderRow] | None:
    """The generator's truth for the audit, one row per order (None: the folder has no truth of it)."""
    sql = TRUTH_SQLS[audit](Path(input_dir))
    return None if sql is None else connect().execute(sql).fetchall()


def ground_truth_counts(input_dir: Path, audit: str = CSF) -> Counts | None:
    """The generator's truth counted like the mart: the case's index month (site-local) and the
    order's ordering department."""
    rows = ground_truth_rows(input_dir, audit)
    return None if rows is None else counts_of(rows)


def counts_of(rows: list[OrderRow]) -> Counts:
    """Per-order rows counted by (month, department, verdict)."""
    return to_counts((month, dept, verdict, 1) for _, _, month, dept, verdict in rows)


def verdicts_of(rows: list[OrderRow]) -> Verdicts:
    """Per-order rows as {(case key, order_id): verdict}."""
    return {(str(case), str(order)): ("NULL" if v is None else str(v)) for case, order, _, _, v in rows}


def diff_orders(named: dict[str, Verdicts]) -> list[str]:
    """Orders whose verdict (or presence) differs between the named per-order sets (empty list: all agree)."""
    names = list(named)
    lines = []
    for k in sorted(set().union(*[set(v) for v in named.values()])):
        vals = [named[n].get(k, "absent") for n in names]
        if len(set(vals)) > 1:
            lines.append(f"{k[1]} (case {k[0]}): " + ", ".join(f"{n}={v}" for n, v in zip(names, vals, strict=True)))
    return lines


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


def floor_rows(input_dir: Path, con: duckdb.DuckDBPyConnection | None = None, audit: str = CSF) -> list[OrderRow]:
    """The floor's rows per audited order (case key, order_id, month, department, verdict)."""
    con = con or connect()
    sql = FLOOR_SQLS[audit](input_dir)
    head = sql[: sql.index("-- FINAL")]
    return con.execute(head + "SELECT case_id, order_id, case_index_month, ordering_department, verdict FROM verdicts").fetchall()


def floor_orders(input_dir: Path, con: duckdb.DuckDBPyConnection | None = None, audit: str = CSF) -> Verdicts:
    """The floor's verdict per (case key, order_id)."""
    return verdicts_of(floor_rows(input_dir, con, audit))


# the pipeline's case key of an order, comparable with the baselines' (see the module docstring)
PIPELINE_CASE_KEY = {CSF: "case_id", LBP: "strftime(index_date, '%Y-%m-%d')"}


def pipeline_rows(warehouse: str | Path, audit: str = CSF) -> list[OrderRow] | None:
    """The run's rows per audited order (<audit>__mart_audited_orders); None when the warehouse lacks them."""
    try:
        con = duckdb.connect(str(warehouse), read_only=True)
    except duckdb.Error:
        return None
    try:
        return con.execute(
            f"SELECT {PIPELINE_CASE_KEY[audit]}, order_id, case_index_month, ordering_department, verdict "
            f"FROM {audit}__mart_audited_orders"
        ).fetchall()
    except duckdb.Error:
        return None
    finally:
        con.close()
