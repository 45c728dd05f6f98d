"""A small hand-built warehouse with the CSF-leak audit's mart tables (audits/csf_leak/DESIGN.md), for
renderer tests. The tables are the audit's (``csf_leak__mart_*``); the renderer reads them through the
session views ``publishing.select_audit`` makes, as in a run.

Hostile strings (a ``<script>`` department, order name and indication text) and recognisable
raw patient ids (``MRN-RAW-...``) are planted so tests can prove escaping and pseudonymisation.
"""

from __future__ import annotations

import csv
import datetime as dt

import duckdb
import numpy as np
import polars as pl

from pipeline import audits, publishing
from pipeline.models import runner

HOSTILE = "<script>alert(1)</script>"
RAW_ID_PREFIX = "MRN-RAW-"
RAW_ID = "MRN-RAW-12345"
REJECTED_RAW_ID = "MRN-RAW-99999"
DEPARTMENTS = ["Anesthesia", "Neurology", HOSTILE, "Tiny & Rare"]
PROVIDERS = [f"PRV-{i:02d}" for i in range(1, 9)]
REPORT_MONTH = "2026-10"
MONTHS = [f"{y}-{m:02d}" for y in (2024, 2025, 2026) for m in range(1, 13)]
MONTHS = [m for m in MONTHS if "2024-11" <= m <= REPORT_MONTH]  # 24 months

_VERDICT_ROWS = {
    "appropriate": ("mri_complete_spine_wwo", "CSF-16"),
    "inappropriate": ("premature", "CSF-06"),
    "review": ("noncontrast_only", "CSF-13"),
    "excluded": ("cancelled", "CSF-01"),
    "not_evaluable": ("unmapped_code", "CSF-04"),
}


AUDIT = next(a for a in audits.discover() if a.id == "csf_leak")


def _rules() -> pl.DataFrame:
    # as a run builds ref_rules: the labels and explanations in the words of the (default) parameters
    return pl.DataFrame(audits.rules_in_force(AUDIT)).with_row_index("rule_order", offset=1)


def _table(con, name: str, frame: pl.DataFrame) -> None:
    con.register("_f", frame.to_arrow())
    con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _f")
    con.unregister("_f")


def _metric_counts(rng: np.random.Generator, rules: pl.DataFrame) -> pl.DataFrame:
    rows = []
    reason_measures = [f"reason_{r}" for r in rules["reason_code"].to_list()]
    groups = [("overall", "all")] + [("department", d) for d in DEPARTMENTS] + [("provider", p) for p in PROVIDERS]
    for month in MONTHS:
        for level, key in groups:
            size = {"overall": 400, "department": 150, "provider": 80}[level]
            if key == "Tiny & Rare" or key == "PRV-08":
                size = 4  # too few to rate
            den = int(rng.integers(size // 2, size + 1))
            p_inap = 0.2 if month != "2026-03" else 0.45  # a special-cause month
            if key == "PRV-07":
                p_inap = 0.6  # an outlier provider for the funnel
            rows.append((month, level, key, "inappropriate_order_rate", int(rng.binomial(den, p_inap)), den))
            rows.append((month, level, key, "premature_order_rate", int(rng.binomial(den, 0.1)), den))
            rows.append((month, level, key, "review_order_rate", int(rng.binomial(den, 0.1)), den))
            rows.append((month, level, key, "not_evaluable_rate", int(rng.binomial(den, 0.02)), den))
            cases = max(den // 3, 1)
            rows.append((month, level, key, "first_imaging_right_study", int(rng.binomial(cases, 0.55)), cases))
            for m in reason_measures:
                rows.append((month, level, key, m, int(rng.binomial(den, 0.05)), den))
    # a hand-checkable row: 3 of 10
    rows.append(("2026-10", "provider", "PRV-HAND", "inappropriate_order_rate", 3, 10))
    return pl.DataFrame(rows, schema=["period", "level", "group_key", "measure_id", "numerator", "denominator"], orient="row")


def build_fixture(
    con: duckdb.DuckDBPyConnection | None = None, n_cases: int = 30, seed: int = 1, orders_per_case: int = 3
) -> duckdb.DuckDBPyConnection:
    """Create src_*, load_rejects, ref_* and mart_* tables in ``con`` (a new in-memory one if None)."""
    con = con or duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    rng = np.random.default_rng(seed)
    rules = _rules()
    _table(con, "csf_leak__ref_rules", rules)
    with open(audits.VERDICTS_CSV, newline="", encoding="utf-8") as fh:
        _table(con, "ref_verdicts", pl.DataFrame(list(csv.DictReader(fh))))

    procs, src_orders, cases, orders, index_rows = [], [], [], [], []
    verdict_cycle = list(_VERDICT_ROWS)
    # the hostile order name and indication sit in the most recent case: a flagged case the report lists
    hostile_case = min(n_cases - 1, 27)
    for i in range(n_cases):
        pid = RAW_ID if i == 0 else f"{RAW_ID_PREFIX}{10000 + i}"
        pkey = f"P{i:016x}"
        proc_id = f"PROC-{i:05d}"
        dept = DEPARTMENTS[i % len(DEPARTMENTS)]
        day = 1 + i % 28
        index_at = f"2026-10-{day:02d}T08:00:00Z"
        procs.append((proc_id, pid, index_at, "62270", dept))
        first_hours = float(rng.gamma(3, 30))
        n_eval = 0
        first_right = None
        for j in range(orders_per_case):
            verdict = verdict_cycle[(i + j) % len(verdict_cycle)]
            reason, rule_id = _VERDICT_ROWS[verdict]
            rule = rules.filter(pl.col("rule_id") == rule_id).row(0, named=True)
            oid = f"ORD-{i:05d}-{j}"
            hours = round(first_hours + 30 * j, 2)
            name = HOSTILE if (i, j) == (hostile_case, 0) else "MRI spine complete w/o & w contrast"
            indication = f"headache {HOSTILE}" if (i, j) == (hostile_case, 0) else "positional headache"
            src_orders.append((oid, pid, name, indication))
            odept = dept if j == 0 else DEPARTMENTS[(i + j) % len(DEPARTMENTS)]
            orders.append(
                {
                    "order_id": oid,
                    "case_id": proc_id,
                    "patient_key": pkey,
                    "ordered_at": f"2026-10-{day:02d}T{8 + j:02d}:00:00Z",
                    "ordered_at_local": f"2026-10-{day:02d} {4 + j:02d}:00:00",
                    "hours_since_index": hours,
                    "minutes_since_index": int(hours * 60),
                    "episode_number": j + 1,
                    "order_code": "72156",
                    "order_name": name,
                    "study_type": "mri_spine",
                    "effective_study_type": "mri_spine",
                    "regions": "CTL",
                    "contrast": "without_and_with",
                    "ordering_department": odept,
                    "ordering_provider_id": PROVIDERS[(i + j) % len(PROVIDERS)],
                    "status": "completed",
                    "indication_codes": "G97.1",
                    "indication_text": indication,
                    "verdict": verdict,
                    "reasons": reason,
                    "secondary_reasons": None,
                    "explanation": rule["explanation"],
                    "citations": rule["citation"],
                    "rule_ids": rule_id,
                    "rule_set_version": "2026.1",
                    "case_index_month": REPORT_MONTH,
                    "index_at": index_at,
                    "is_premature": reason == "premature",
                }
            )
            if verdict in ("appropriate", "inappropriate", "review"):
                n_eval += 1
                if first_right is None:
                    first_right = verdict == "appropriate"
        cases.append(
            {
                "case_id": proc_id,
                "patient_key": pkey,
                "index_procedure_id": proc_id,
                "index_code": "62270",
                "index_at": index_at,
                "index_local_date": dt.date(2026, 10, day),
                "index_month": REPORT_MONTH,
                "department": dept,
                "site": "Main",
                "provider_id": PROVIDERS[i % len(PROVIDERS)],
                "age_years": 30.0 + i % 50,
                "needle_gauge": [22, 25, 20][i % 3],
                "needle_type": ["cutting", "atraumatic"][i % 2],
                "attempts": 1 + i % 3,
                "patient_position": ["sitting", "lateral"][i % 2],
                "evidence_sources": "diagnosis|indication",
                "first_evidence_at": index_at,
                "n_orders": orders_per_case,
                "n_evaluated": n_eval,
                "n_inappropriate": 1,
                "n_review": 0,
                "n_appropriate": 1,
                "first_imaging_at": index_at,
                "hours_to_first_imaging": round(first_hours, 2),
                "first_imaging_department": dept,
                "first_imaging_provider_id": PROVIDERS[i % len(PROVIDERS)],
                "first_imaging_right_study": first_right,
            }
        )
    # non-case index procedures for the risk-factor denominators
    for k in range(max(4 * n_cases, 120)):
        is_case = k < n_cases
        index_rows.append(
            {
                "procedure_id": f"PROC-{k:05d}",
                "patient_key": f"P{k:016x}",
                "index_month": REPORT_MONTH,
                "procedure_code": "62270",
                "department": DEPARTMENTS[k % len(DEPARTMENTS)],
                "needle_gauge": [22, 25, 20][k % 3],
                "needle_type": ["cutting", "atraumatic"][k % 2],
                "attempts": 1 + k % 3,
                "patient_position": ["sitting", "lateral"][k % 2],
                "age_years": 40.0,
                "is_adult": True,
                "is_age_unknown": False,
                "has_leak_evidence": is_case,
                "has_late_evidence_only": False,
                "is_case": is_case,
            }
        )
        if k >= n_cases:
            procs.append(
                (
                    f"PROC-{k:05d}",
                    f"{RAW_ID_PREFIX}{50000 + k}",
                    "2026-10-02T08:00:00Z",
                    "62270",
                    DEPARTMENTS[k % len(DEPARTMENTS)],
                )
            )

    _table(
        con,
        "src_procedures",
        pl.DataFrame(procs, schema=["procedure_id", "patient_id", "performed_at", "procedure_code", "department"], orient="row"),
    )
    _table(
        con,
        "src_imaging_orders",
        pl.DataFrame(src_orders, schema=["order_id", "patient_id", "order_name", "indication_text"], orient="row"),
    )
    _table(con, "csf_leak__mart_cases", pl.DataFrame(cases))
    _table(con, "csf_leak__mart_audited_orders", pl.DataFrame(orders))
    _table(con, "csf_leak__mart_index_procedures", pl.DataFrame(index_rows))
    keys = [(c["patient_key"], RAW_ID if i == 0 else f"{RAW_ID_PREFIX}{10000 + i}") for i, c in enumerate(cases)]
    _table(con, "csf_leak__int_patient_keys", pl.DataFrame(keys, schema=["patient_key", "patient_id"], orient="row"))
    _table(
        con,
        "csf_leak__mart_attrition",
        pl.DataFrame(
            [
                (1, "Index procedures (lumbar dural puncture codes)", "procedures", len(index_rows), "step", None),
                (2, "Procedures with leak evidence within 14 days", "procedures", n_cases + 3, "step", None),
                (3, "No age recorded", "procedures", 3, "exclusion", "age unknown: not a case"),
                (4, "Cases (adults)", "cases", n_cases, "step", None),
                (5, "Audited orders", "orders", len(orders), "step", None),
                (
                    6,
                    "Flagged orders (inappropriate or review)",
                    "orders",
                    sum(o["verdict"] in ("inappropriate", "review") for o in orders),
                    "step",
                    HOSTILE,
                ),
            ],
            schema=["step_order", "step", "unit", "count", "kind", "note"],
            orient="row",
        ),
    )
    _table(con, "csf_leak__mart_metric_counts", _metric_counts(rng, rules))
    # its counts are drawn one by one, tied to nothing: no atom is shared (the feed treats each count as its own)
    _table(con, "csf_leak__mart_metric_atoms", pl.DataFrame(schema={"unit": pl.String, "atom": pl.String}))
    # the attribution marts are computed from the marts above by the audit's SQL models
    names = ("csf_leak__mart_department_summary", "csf_leak__mart_department_provider_counts")
    marts = [m for m in runner.audit_models(AUDIT) if m.name in names]
    for m in marts:  # they read only the marts made above
        con.execute(f"CREATE OR REPLACE TABLE {m.name} AS {m.sql}")
    publishing.select_audit(con, AUDIT)
    _table(
        con,
        "load_rejects",
        pl.DataFrame(
            [
                ("procedures", "procedures.csv", 17, "patient_id", REJECTED_RAW_ID, "duplicate procedure_id", "row_rejected"),
                (
                    "imaging_orders",
                    "imaging_orders.csv",
                    4,
                    "ordered_at",
                    "2026-03-08 02:30",
                    "nonexistent local time",
                    "row_rejected",
                ),
                ("imaging_orders", "imaging_orders.csv", 9, "status", HOSTILE, "unknown status", "value_nulled"),
            ],
            schema=["table_name", "source_file", "source_line", "column_name", "value", "reason", "action"],
            orient="row",
        ),
    )
    # every kind listed whole (a load the warehouse counts in load_reject_groups, ingest.reject_listing)
    con.execute(
        "CREATE OR REPLACE TABLE load_reject_groups AS SELECT 'L1' AS load_id, table_name, source_file, column_name, "
        "reason, action, count(*) AS rows, count(*) AS rows_listed FROM load_rejects GROUP BY ALL"
    )
    return con


def run_info(period: str = REPORT_MONTH, demo_key: bool = True) -> dict:
    """A run_info dict as the orchestrator passes it."""
    return {
        "run_id": "20261101T020000Z-abc123",
        "software_version": "0.1.0",
        "rule_set_version": "2026.1",
        "code_set_versions": {"cpt": "2026", "icd10cm": "FY2026", "imaging_code_map": "2026.1"},
        "inputs": [
            {
                "table": "procedures",
                "path": "/data/in/procedures.csv",
                "sha256": "a" * 64,
                "rows_read": 150,
                "rows_loaded": 149,
                "rows_rejected": 1,
            },
            {
                "table": "imaging_orders",
                "path": f"/data/in/{HOSTILE}.csv",
                "sha256": "b" * 64,
                "rows_read": 93,
                "rows_loaded": 92,
                "rows_rejected": 1,
            },
        ],
        "config": {
            "site_timezone": "America/New_York",
            "reporting": {"min_cell_count": 11, "trend_months": 24},
        },
        "audit": {
            "id": AUDIT.id,
            "title": AUDIT.title,
            "short_title": AUDIT.short_title,
            "parameters": dict(AUDIT.parameters),
        },
        "period": period,
        "started_at": "2026-11-01T02:00:00+00:00",
        "pseudonym_key_is_demo": demo_key,
        "data_quality": [
            {
                "check_id": "orders_ordered_at_not_null",
                "severity": "warning",
                "status": "failed",
                "violated_count": 3,
                "denominator": 93,
                "percent": 3.2258,
                "description": f"order time {HOSTILE}",
                "sample_keys": [RAW_ID],
            },
        ],
    }
