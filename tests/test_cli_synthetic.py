"""Integration: the real CLI on generated data agrees with the generator's ground truth."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from conftest import ROOT, run_cli, truth_differences

from pipeline.synth import generate
from pipeline.synth.audit_scenarios import ground_truth

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
    """Every audit at once (the default run), with the re-identification crosswalk beside the outputs."""
    out = tmp_path_factory.mktemp("out")
    reid = tmp_path_factory.mktemp("reid") / "reid.csv"
    wh = tmp_path_factory.mktemp("wh") / "wh.duckdb"
    result = run_cli("run", "--input", synthetic, "--out", out, "--warehouse", wh, "--reid-file", reid)
    assert result.returncode == 0, result.stderr
    (out.parent / f"{out.name}.reid.csv").write_bytes(reid.read_bytes())
    return out


def _strings(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False)


def test_every_order_agrees_with_groundground_truth(synthetic, audited):
    truth = ground_truth(synthetic, "csf_leak", "orders", "ground_truth_orders.csv")
    diff = truth_differences(truth, audited / "csf_leak" / "audited_orders.csv")
    assert diff.height == 0, f"{diff.height} orders differ from the ground truth:\n{diff.head(20)}"
    assert truth.height > 50


def test_cases_agree_with_groundground_truth(synthetic, audited):
    truth = set(ground_truth(synthetic, "csf_leak", "cases", "ground_truth_cases.csv")["case_id"])
    got = set(_strings(audited / "csf_leak" / "cases.csv")["case_id"])
    assert got == truth


LBP = "low_back_pain"
LBP_ORDER_COLUMNS = ("days_since_index", "modality", "verdict", "reasons", "red_flag_groups")
LBP_EPISODE_COLUMNS = ("outcome", "is_complicated", "red_flag_groups", "n_orders")


def _lbp_outputs(audited: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The low back pain audit's orders and episodes with the raw patient id (through the crosswalk)."""
    crosswalk = _strings(audited.parent / f"{audited.name}.reid.csv").select("patient_key", "patient_id")
    cases = _strings(audited / LBP / "cases.csv").join(crosswalk, on="patient_key", how="left").fill_null("")
    episode = cases.select(
        "case_id", pl.col("patient_id").alias("case_patient_id"), pl.col("index_date").alias("case_index_date")
    )
    orders = _strings(audited / LBP / "audited_orders.csv").fill_null("").join(episode, on="case_id", how="left")
    return orders, cases


def test_low_back_pain_orders_agree_with_groundground_truth(synthetic, audited):
    """Order by order: its episode (patient and index date), day, modality, verdict, reasons, red flags."""
    truth = ground_truth(synthetic, LBP, "orders").fill_null("")
    got, _ = _lbp_outputs(audited)
    both = truth.join(got, on="order_id", how="full", suffix="_got", coalesce=True)
    wrong = [pl.col(c).fill_null("(none)") != pl.col(f"{c}_got").fill_null("(missing)") for c in LBP_ORDER_COLUMNS]
    wrong += [
        pl.col("patient_id").fill_null("(none)") != pl.col("case_patient_id").fill_null("(missing)"),
        pl.col("index_date").fill_null("(none)") != pl.col("case_index_date").fill_null("(missing)"),
    ]
    diff = both.filter(pl.any_horizontal(wrong))
    assert diff.height == 0, f"{diff.height} low back pain orders differ from the ground truth:\n{diff.head(20)}"
    assert truth.height > 30 and set(truth["reasons"]) >= {
        "early_imaging", "after_conservative_period", "cancelled", "red_flag_condition", "unmapped_code", "missing_time"
    }  # fmt: skip


def test_low_back_pain_episodes_agree_with_groundground_truth(synthetic, audited):
    """Episode by episode: every expected (patient, index date) and no other, with its outcome and red flags."""
    truth = ground_truth(synthetic, LBP, "episodes").fill_null("")
    _, got = _lbp_outputs(audited)
    both = truth.join(got, on=["patient_id", "index_date"], how="full", suffix="_got", coalesce=True)
    wrong = [pl.col(c).fill_null("(none)") != pl.col(f"{c}_got").fill_null("(missing)") for c in LBP_EPISODE_COLUMNS]
    diff = both.filter(pl.any_horizontal(wrong))
    assert diff.height == 0, f"{diff.height} low back pain episodes differ from the ground truth:\n{diff.head(20)}"
    assert set(truth["outcome"]) == {"no_early_imaging", "early_imaging", "excluded", "not_evaluable"}


def test_a_patient_is_a_case_in_both_audits(synthetic, audited):
    """The generated patient who is a case in both audits is listed by each, with its own verdicts."""
    lbp = set(
        ground_truth(synthetic, LBP, "episodes").filter(pl.col("scenario") == "both_audits_injection_then_leak")["patient_id"]
    )
    csf = set(ground_truth(synthetic, "csf_leak", "cases")["patient_id"])
    assert lbp and lbp <= csf


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
    # the code that made them: the checkout's commit (this suite runs from one), '+modified' beside local changes
    import subprocess

    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert info["versions"]["order-audit-source"].removesuffix("+modified") == head


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


# The SHA-256 of each audit's metrics.csv on this module's generated extract (4,000 patients, 12 months, seed 11),
# per feed schema version. Dashboards store feeds and tell rows apart by schema_version: a change that moves these
# bytes (a count, a withheld cell, a direction) needs a new version (docs/METRICS_FEED.md, Columns: a correction bumps
# the third number) and an entry under Changes; then pin its hashes here. 3.2 had five such corrections, each a 3.2.
PINNED_FEEDS = {
    "3.3": {
        "csf_leak": "7ba0daadf994f5634138c968693e8c992620d22e6056488c6de3cd1e0ec0d036",
        "low_back_pain": "a8a0430dfde65763c1589f4d81279cd209a8d1b03cca1d45f9746f3e96367715",
    },
}


def test_a_feed_whose_rows_change_has_a_new_schema_version(audited):
    import hashlib

    from pipeline.report.feed import SCHEMA_VERSION

    got = {a: hashlib.sha256((audited / a / "metrics.csv").read_bytes()).hexdigest() for a in ("csf_leak", "low_back_pain")}
    assert PINNED_FEEDS.get(SCHEMA_VERSION) == got, (
        f"the feeds' rows are not those pinned for schema_version {SCHEMA_VERSION} ({got}): a correction bumps the "
        "version's third number (docs/METRICS_FEED.md, Columns), logs it under Changes, and pins the new hashes here"
    )
