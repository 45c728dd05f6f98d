"""The synthetic generator: deterministic, every scenario present, ground truth consistent."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from conftest import DESIGN_REASONS, ROOT

from pipeline.synth import generate
from pipeline.synth.audit_scenarios import scenario_modules

N = 3000
MONTHS = 36

VERDICT_OF = DESIGN_REASONS
CSF = ROOT / "audits" / "csf_leak"
REGISTRY = pl.read_csv(CSF / "rules.csv")["reason_code"].to_list()
LEAK_CODES_ALL = set(pl.read_csv(CSF / "value_sets.csv").filter(pl.col("value_set") == "leak_diagnosis")["code"])
SCENARIO_NAMES = [s.name for s in dict(scenario_modules())["csf_leak"].SCENARIOS]
FILES = (
    "procedures.csv",
    "imaging_orders.csv",
    "diagnoses.csv",
    "local_code_map.csv",
    "ground_truth_orders.csv",
    "ground_truth_cases.csv",
    "synth.json",
)


def _read(d: Path, name: str) -> pl.DataFrame:
    return pl.read_csv(d / name, infer_schema=False)


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("synth_a")
    generate(d, patients=N, months=MONTHS, seed=11)
    return d


def test_same_seed_same_bytes_other_seed_differs(out, tmp_path):
    again = tmp_path / "again"
    generate(again, patients=N, months=MONTHS, seed=11)
    for f in FILES:
        assert (out / f).read_bytes() == (again / f).read_bytes(), f
    other = tmp_path / "other"
    generate(other, patients=N, months=MONTHS, seed=12)
    assert (out / "imaging_orders.csv").read_bytes() != (other / "imaging_orders.csv").read_bytes()
    assert (out / "ground_truth_orders.csv").read_bytes() != (other / "ground_truth_orders.csv").read_bytes()


def test_every_scenario_present(out):
    meta = json.loads((out / "synth.json").read_text())
    for name in SCENARIO_NAMES:
        assert meta["scenarios"][name]["instances"] >= 1, name
    cases = _read(out, "ground_truth_cases.csv")
    case_scen = {n for n, v in meta["scenarios"].items() if v["is_case"]}
    assert set(cases["scenario"]) == case_scen
    assert not any(s.startswith("nc_") for s in cases["scenario"])
    assert meta["counts"]["imaging_orders"] == _read(out, "imaging_orders.csv").height


def test_ground_truth_consistent(out):
    gt = _read(out, "ground_truth_orders.csv")
    orders = _read(out, "imaging_orders.csv")
    procs = _read(out, "procedures.csv")
    cases = _read(out, "ground_truth_cases.csv")
    assert gt["order_id"].is_unique().all()
    assert set(gt["order_id"]) <= set(orders["order_id"])
    assert set(gt["case_id"]) == set(cases["case_id"])
    assert set(cases["case_id"]) <= set(procs["procedure_id"])
    # an order's case belongs to the same patient
    j = gt.join(orders.select("order_id", "patient_id"), on="order_id").join(
        cases.select("case_id", pl.col("patient_id").alias("case_patient")), on="case_id"
    )
    assert (j["patient_id"] == j["case_patient"]).all()
    seen = set()
    for verdict, reasons in gt.select("verdict", "reasons").iter_rows():
        rs = reasons.split("|")
        assert all(VERDICT_OF[r] == verdict for r in rs), (verdict, reasons)
        assert rs == sorted(rs, key=REGISTRY.index), reasons  # registry order
        seen.update(rs)
    assert seen == set(REGISTRY)
    # non-neuro codes are never audited
    codes = j.join(orders.select("order_id", "order_code"), on="order_id")["order_code"]
    assert not set(codes) & {"71046", "74177", "73721", "72100", "76700", "LOC-XR-CHEST", "71250", "73030"}


def test_background_has_no_leak_evidence(out):
    cases = _read(out, "ground_truth_cases.csv")
    meta = json.loads((out / "synth.json").read_text())
    procs = _read(out, "procedures.csv")
    orders = _read(out, "imaging_orders.csv")
    dx = _read(out, "diagnoses.csv")
    # scenario patients: the patients of any scenario row (cases plus the not-a-case examples)
    scen = set(cases["patient_id"]) | {p for v in meta["noncase_example_patients"].values() for p in v}
    leak_dx_pat = set(dx.filter(pl.col("diagnosis_code").is_in(sorted(LEAK_CODES_ALL)))["patient_id"])
    patch_pat = set(procs.filter(pl.col("procedure_code") == "62273")["patient_id"])
    ind = (
        orders.filter(pl.col("indication_codes").is_not_null())
        .with_columns(pl.col("indication_codes").str.split("|").alias("c"))
        .explode("c")
    )
    leak_ind_pat = set(ind.filter(pl.col("c").is_in(sorted(LEAK_CODES_ALL)))["patient_id"])
    evidence = leak_dx_pat | patch_pat | leak_ind_pat
    n_scen = meta["counts"]["scenario_patients"]
    assert len(evidence) <= n_scen
    # every patient with evidence is a scenario patient: cases, or not-a-case scenario patients
    non_case_evidence = evidence - set(cases["patient_id"])
    n_nc = sum(v["instances"] for v in meta["scenarios"].values() if not v["is_case"])
    assert len(non_case_evidence) <= n_nc
    assert scen & evidence


def test_noncase_patients_absent_from_ground_truth(out):
    meta = json.loads((out / "synth.json").read_text())
    gt = _read(out, "ground_truth_orders.csv")
    orders = _read(out, "imaging_orders.csv")
    nc = {p for v in meta["noncase_example_patients"].values() for p in v}
    gt_pat = set(gt.join(orders, on="order_id")["patient_id"])
    assert not nc & gt_pat
    # they do have neuro orders the audit must not list
    assert orders.filter(pl.col("patient_id").is_in(sorted(nc)) & pl.col("order_code").str.starts_with("72")).height


def test_ids_unique_and_timestamps_parse(out):
    procs = _read(out, "procedures.csv")
    orders = _read(out, "imaging_orders.csv")
    dx = _read(out, "diagnoses.csv")
    assert procs["procedure_id"].is_unique().all()
    assert orders["order_id"].is_unique().all()
    for df, col in ((procs, "performed_at"), (orders, "ordered_at"), (dx, "recorded_at")):
        s = df[col].drop_nulls()
        naive = s.filter(~s.str.contains(r"(Z|[+-]\d\d:\d\d)$"))
        aware = s.filter(s.str.contains(r"(Z|[+-]\d\d:\d\d)$"))
        assert (
            naive.str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False).null_count()
            == naive.filter(naive.str.len_chars() == 10).len()
        )
        assert aware.str.to_datetime(time_zone="UTC", strict=True).null_count() == 0
        assert 0.03 < aware.len() / s.len() < 0.2, col
    assert orders["ordered_at"].null_count() >= 1  # the missing_time scenario
    assert procs["patient_birth_date"].drop_nulls().str.to_date("%Y-%m-%d").null_count() == 0
    assert set(orders["status"]) <= {"ordered", "scheduled", "completed", "cancelled"}


def _hours_after_index(d: Path, zone: str) -> pl.DataFrame:
    """Each ground-truth order with its case's scenario and its hours after the index (absolute time)."""
    cases = _read(d, "ground_truth_cases.csv")
    gt = _read(d, "ground_truth_orders.csv")
    procs = _read(d, "procedures.csv")
    orders = _read(d, "imaging_orders.csv")

    def utc(col):
        c = pl.col(col)
        has_off = c.str.contains(r"(Z|[+-]\d\d:\d\d)$")
        return (
            pl.when(has_off)
            .then(c.str.to_datetime("%Y-%m-%dT%H:%M:%S%#z", time_zone="UTC", strict=False))
            .otherwise(
                c.str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False)
                .dt.replace_time_zone(zone, ambiguous="earliest")
                .dt.convert_time_zone("UTC")
            )
        )

    return (
        gt.join(cases, on="case_id")
        .join(orders.select("order_id", utc("ordered_at").alias("o")), on="order_id")
        .join(
            procs.select(pl.col("procedure_id").alias("case_id"), utc("performed_at").alias("i")),
            on="case_id",
        )
        .with_columns(((pl.col("o") - pl.col("i")).dt.total_seconds() / 3600).alias("h"))
    )


DST_HOURS = {
    "dst_spring_72h": 72.0,
    "dst_spring_71h30": 71.5,
    "dst_fall_72h": 72.0,
    "dst_fall_72h30": 72.5,
    "dst_fall_71h30": 71.5,
    "exactly_72h": 72.0,
}


def test_dst_orders_exact_hours(out):
    """DST scenarios: hours since index are computed on absolute time."""
    j = _hours_after_index(out, "America/New_York")
    for scen, h in DST_HOURS.items():
        hs = j.filter(pl.col("scenario") == scen)["h"].min()
        assert hs == pytest.approx(h), scen
    prem = j.filter(pl.col("verdict") == "inappropriate", pl.col("reasons").str.contains("premature"))
    assert (prem["h"] < 72).all()
    ok = j.filter(pl.col("verdict") == "appropriate")
    assert (ok["h"] >= 72).all()
    # the fall-back scenario's index is within 3 days before the change: wall clock differs from absolute
    fall = j.filter(pl.col("scenario") == "dst_fall_72h")
    assert fall.height >= 1


def test_a_zone_without_dst_places_the_dst_cases_at_any_time(tmp_path):
    """Asia/Tokyo has no change of offset: the generator crashed (numpy's "high <= 0", no transition to pick the
    DST cases' night from), so a site in Japan, India or most of the world had no demo data. Their hours after
    the index, which give their verdicts, hold at any time."""
    generate(tmp_path, patients=2000, months=14, seed=4, site_timezone="Asia/Tokyo")
    j = _hours_after_index(tmp_path, "Asia/Tokyo")
    for scen, h in DST_HOURS.items():
        assert j.filter(pl.col("scenario") == scen)["h"].min() == pytest.approx(h), scen


def test_parquet_same_rows(out, tmp_path):
    pq = tmp_path / "pq"
    generate(pq, patients=N, months=MONTHS, seed=11, fmt="parquet")
    for name in ("procedures", "imaging_orders", "diagnoses"):
        a = _read(out, f"{name}.csv")
        b = pl.read_parquet(pq / f"{name}.parquet")
        assert a.columns == b.columns
        assert a.equals(b.select(pl.all().cast(pl.String))), name
    assert (out / "ground_truth_orders.csv").read_bytes() == (pq / "ground_truth_orders.csv").read_bytes()


def test_complete_spine_split_orders_come_from_one_clinician_and_department(out):
    """C + T + L ordered within minutes for one case is one clinician's order set, not three departments'."""
    orders = _read(out, "imaging_orders.csv")
    truth = _read(out, "ground_truth_orders.csv").select("order_id", "case_id")
    spine = (
        orders.join(truth, on="order_id")
        .filter(pl.col("order_code").is_in(["72156", "72157", "72158"]) & (pl.col("ordered_at") != ""))
        .with_columns(pl.col("ordered_at").str.slice(0, 13).alias("hour"))  # placed within the same hour
    )
    sets = spine.group_by("case_id", "hour").agg(
        pl.col("order_code").n_unique().alias("regions"),
        pl.col("ordering_provider_id").n_unique().alias("providers"),
        pl.col("ordering_department").n_unique().alias("departments"),
    )
    complete = sets.filter(pl.col("regions") == 3)
    assert complete.height > 5
    assert (complete["providers"] == 1).all() and (complete["departments"] == 1).all()


# ----------------------------------------------------------------------------- audits' own scenarios


def test_audit_scenarios_are_deterministic_and_their_truth_is_written(out, tmp_path):
    again = tmp_path / "again"
    generate(again, patients=N, months=MONTHS, seed=11)
    truth = sorted(p.relative_to(out) for p in (out / "ground_truth").rglob("*.csv"))
    assert [str(p) for p in truth] == [
        "ground_truth/csf_leak/cases.csv",
        "ground_truth/csf_leak/orders.csv",
        "ground_truth/low_back_pain/episodes.csv",
        "ground_truth/low_back_pain/orders.csv",
    ]
    for p in truth:
        assert (out / p).read_bytes() == (again / p).read_bytes(), p


def test_every_low_back_pain_scenario_is_present(out):
    meta = json.loads((out / "synth.json").read_text())
    scenarios = meta["audit_scenarios"]["low_back_pain"]["scenarios"]
    assert min(scenarios.values()) >= 1 and len(scenarios) > 30
    assert meta["counts"]["audit_scenario_patients"] == sum(scenarios.values())
    episodes = _read(out, "ground_truth/low_back_pain/episodes.csv")
    assert set(episodes["outcome"]) == {"no_early_imaging", "early_imaging", "excluded", "not_evaluable"}


def test_only_scenario_patients_have_a_low_back_pain_diagnosis(out):
    """The background holds no low back pain episode, so the audit's ground truth is exact."""
    sets = pl.read_csv(ROOT / "audits" / "low_back_pain" / "value_sets.csv").filter(pl.col("value_set") == "lbp_uncomplicated")
    codes = _read(out, "diagnoses.csv").with_columns(pl.col("diagnosis_code").str.replace(".", "", literal=True).alias("c"))
    exact = sets.filter(pl.col("match") == "exact")["code"].str.replace(".", "", literal=True).to_list()
    prefixes = sets.filter(pl.col("match") == "prefix")["code"].str.replace(".", "", literal=True).to_list()
    lbp = codes.filter(pl.col("c").is_in(exact) | pl.any_horizontal([pl.col("c").str.starts_with(p) for p in prefixes]))
    assert lbp.height
    numbers = lbp["patient_id"].str.slice(1).cast(pl.Int64)
    assert numbers.min() > N  # every one numbered after the population: an audit's scenario patient


def test_an_audits_rows_must_fit_the_generated_tables():
    from pipeline.synth.audit_scenarios import ScenarioRows, rows_for

    rows = ScenarioRows(tables={"diagnoses": pl.DataFrame({"patient_id": ["P1"], "mood": ["calm"]})})
    with pytest.raises(ValueError, match="diagnoses has columns the generator does not write: \\['mood'\\]"):
        rows_for("diagnoses", ["patient_id", "diagnosis_code", "recorded_at", "setting"], [("some_audit", rows)])


# ----------------------------------------------------------------------------- the engine's side of the hooks


def test_an_audits_codes_must_agree_with_the_generators_tables():
    import numpy as np

    from pipeline.synth.population_scenarios import CodeTable

    table = CodeTable("order code", {"72148": "MRI lumbar spine without contrast"})
    with pytest.raises(ValueError, match="some_audit: order code '72148' is named 'MRI lumbar spine without contrast'"):
        table.indexes(np.array(["72148"]), {"72148": "Lumbar MRI"}, "some_audit")
    with pytest.raises(ValueError, match="some_audit: order code 'LOC-NEW' needs its text"):
        table.indexes(np.array(["LOC-NEW"]), {}, "some_audit")
    assert table.indexes(np.array(["LOC-NEW", "72148", "LOC-NEW"]), {"LOC-NEW": "New study"}, "some_audit").tolist() == [1, 0, 1]
    assert table.codes == ["72148", "LOC-NEW"] and table.text() == ["MRI lumbar spine without contrast", "New study"]


def test_population_rows_need_every_column_of_their_table():
    import numpy as np

    from pipeline.synth.population_scenarios import PopulationRows

    rows = PopulationRows()
    with pytest.raises(ValueError, match="diagnoses rows need the columns \\['code', 'date_only', 'pat', 't'\\]"):
        rows.add("diagnoses", pat=np.zeros(1), t=np.zeros(1), code=np.array(["R51.9"]))
    rows.add("diagnoses", pat=np.zeros(1), t=np.zeros(1), code=np.array(["R51.9"]), date_only=np.zeros(1, bool))
    assert [len(v) for v in rows.diagnoses.values()] == [1, 1, 1, 1]
