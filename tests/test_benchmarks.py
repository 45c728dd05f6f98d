"""The benchmark baselines compute the audit right (nothing here is timed).

On a small generated extract the floor query (benchmarks/floor.sql) and the pandas audit
(benchmarks/pandas_audit.py) must give the same verdict counts per month, department and
verdict as each other and as the generator's ground truth; the pipeline, when it can run,
must give them too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.common import diff_counts, floor_counts, floor_orders, ground_truth_counts, to_counts
from benchmarks.pandas_audit import audit_counts, audit_orders
from pipeline.synth import generate

ROOT = Path(__file__).resolve().parent.parent
PIPELINE_READY = (ROOT / "pipeline" / "run.py").exists() and (ROOT / "pipeline" / "cli.py").exists()


@pytest.fixture(scope="module", params=["csv", "parquet"])
def extract(request, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp(f"bench-{request.param}")
    generate(d, patients=3000, months=12, seed=11, fmt=request.param)
    return d


def test_floor_and_pandas_agree_with_the_ground_truth(extract):
    truth = ground_truth_counts(extract)
    floor = floor_counts(extract)
    pandas = audit_counts(extract)
    assert truth, "the generator wrote no ground truth orders"
    assert diff_counts({"floor": floor, "pandas": pandas, "truth": truth}) == []


def test_floor_and_pandas_agree_order_by_order(extract):
    floor = floor_orders(extract)
    p = audit_orders(extract)
    pandas = dict(zip(zip(p["case_id"], p["order_id"], strict=True), p["verdict"], strict=True))
    assert floor == pandas


def test_every_verdict_is_exercised(extract):
    verdicts = {k[2] for k in floor_counts(extract)}
    assert verdicts == {"appropriate", "inappropriate", "review", "excluded", "not_evaluable"}


@pytest.mark.slow
@pytest.mark.skipif(not PIPELINE_READY, reason="pipeline/run.py (the order-audit run command) does not exist yet")
def test_pipeline_agrees_with_the_baselines(extract, tmp_path):
    import duckdb

    wh = tmp_path / "wh.duckdb"
    env = {**os.environ, "ORDER_AUDIT_PSEUDONYM_KEY": "bench-test-key"}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "run",
            "--input",
            str(extract),
            "--out",
            str(tmp_path / "out"),
            "--warehouse",
            str(wh),
            "--log-format",
            "json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    con = duckdb.connect(str(wh), read_only=True)
    try:
        pipeline = to_counts(
            con.execute(
                "SELECT case_index_month, ordering_department, verdict, count(*) FROM csf_leak__mart_audited_orders GROUP BY ALL"
            ).fetchall()
        )
    finally:
        con.close()
    assert diff_counts({"pipeline": pipeline, "floor": floor_counts(extract)}) == []
