"""Integration: the real CLI on generated data agrees with the generator's ground truth."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from conftest import run_cli, truth_differences

from pipeline.synth import generate

DATA_FILES = (
    "audited_orders.csv",
    "audited_orders.parquet",
    "cases.csv",
    "cases.parquet",
    "attrition.csv",
    "rejects.csv",
    "metrics.csv",
    "metrics.parquet",
)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("synth")
    generate(d, patients=4000, months=12, seed=11, start_month="2025-01")
    return d


@pytest.fixture(scope="module")
def audited(synthetic, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out")
    result = run_cli("run", "--input", synthetic, "--out", out, "--warehouse", tmp_path_factory.mktemp("wh") / "wh.duckdb")
    assert result.returncode == 0, result.stderr
    return out


def _strings(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False)


def test_every_order_agrees_with_ground_truth(synthetic, audited):
    diff = truth_differences(synthetic / "ground_truth_orders.csv", audited / "csf_leak" / "audited_orders.csv")
    assert diff.height == 0, f"{diff.height} orders differ from the ground truth:\n{diff.head(20)}"
    assert _strings(synthetic / "ground_truth_orders.csv").height > 50


def test_cases_agree_with_ground_truth(synthetic, audited):
    truth = set(_strings(synthetic / "ground_truth_cases.csv")["case_id"])
    got = set(_strings(audited / "csf_leak" / "cases.csv")["case_id"])
    assert got == truth


def test_no_raw_patient_id_in_any_output(synthetic, audited):
    ids = set(_strings(synthetic / "procedures.csv")["patient_id"]) | set(
        _strings(synthetic / "imaging_orders.csv")["patient_id"]
    )
    case_patients = set(_strings(synthetic / "ground_truth_cases.csv")["patient_id"])
    for path in audited.rglob("*"):
        # the warehouse (the DuckDB file and its source store) holds raw ids by design; outputs never
        if not path.is_file() or path.suffix == ".duckdb" or any(part.endswith(".duckdb.sources") for part in path.parts):
            continue
        blob = path.read_bytes()
        leaked = [i for i in case_patients if i.encode() in blob]
        assert not leaked, f"raw patient ids {leaked[:3]} in {path.name}"
    assert ids


def test_run_json_records_provenance(audited, synthetic):
    import json

    info = json.loads((audited / "csf_leak" / "run.json").read_text())
    assert info["rule_set_version"] and info["software_version"] and info["code_set_versions"]
    tables = {i["table"]: i for i in info["inputs"]}
    assert set(tables) == {"procedures", "imaging_orders", "diagnoses"}
    assert all(len(i["sha256"]) == 64 for i in info["inputs"])
    assert info["counts"]["cases"] > 0
    assert info["audit"]["parameters"]["premature_hours"] == 72.0  # the manifest's default, in force


def test_rerun_gives_byte_identical_data_outputs(synthetic, audited, tmp_path):
    out = tmp_path / "again"
    result = run_cli("run", "--input", synthetic, "--out", out, "--warehouse", tmp_path / "wh.duckdb")
    assert result.returncode == 0, result.stderr
    for name in DATA_FILES:
        assert (out / "csf_leak" / name).read_bytes() == (audited / "csf_leak" / name).read_bytes(), name


def test_attrition_adds_up(audited):
    att = _strings(audited / "csf_leak" / "attrition.csv").with_columns(pl.col("count").cast(pl.Int64))
    step = {r["step"]: r["count"] for r in att.iter_rows(named=True)}
    orders = _strings(audited / "csf_leak" / "audited_orders.csv")
    assert step["Audited orders (listed)"] == orders.height
    excluded = att.filter(pl.col("step").str.starts_with("Excluded: "))["count"].sum()
    assert step["Orders in the window, not excluded"] == orders.height - orders.filter(pl.col("verdict") == "excluded").height
    assert excluded >= orders.filter(pl.col("verdict") == "excluded").height
    assert step["Flagged orders (inappropriate)"] == orders.filter(pl.col("verdict") == "inappropriate").height
