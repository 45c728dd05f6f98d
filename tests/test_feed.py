"""The shared metrics feed: its small-cell rule holds against subtraction, and a dashboard gets real rates.

The rule is checked two ways: on hand-built cells whose right answer is written out, and on a
`make demo`-sized run by an independent audit (`disclosure_breaches`) that knows nothing of
`pipeline.report.disclosure`: every released count, every sum over groups, and a linear-algebra search
for any withheld count the released ones determine.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from conftest import ROOT, run_cli, write_small_input

from pipeline.report import feed, relations
from pipeline.synth import generate

K = 11
README = (ROOT / "README.md").read_text(encoding="utf-8")
FEED_DOC = (ROOT / "docs" / "METRICS_FEED.md").read_text(encoding="utf-8")


def metrics(rows: list[tuple]) -> pl.DataFrame:
    """An internal metrics frame (measure.build_metrics' shape) from (period, level, group, measure, n, N)."""
    frame = pl.DataFrame(
        rows,
        schema={
            "period": pl.String,
            "level": pl.String,
            "group_key": pl.String,
            "measure_id": pl.String,
            "numerator": pl.Int64,
            "denominator": pl.Int64,
        },
        orient="row",
    )
    from pipeline.report.measure import with_rates

    return with_rates(frame).with_columns(pl.lit("lower_is_better").alias("direction"))


NO_TIES: dict[str, list[str]] = {}  # hand-built counts tied to nothing: each is its own atom
# the CSF-leak audit's order counts (mart_metric_atoms): evaluated orders are appropriate or inappropriate here, the
# orders not excluded are those and the not-evaluable ones
CSF_TIES = {
    "appropriate": ["d:inappropriate_order_rate", "d:not_evaluable_rate"],
    "inappropriate": ["d:inappropriate_order_rate", "n:inappropriate_order_rate", "d:not_evaluable_rate"],
    "not_evaluable": ["d:not_evaluable_rate", "n:not_evaluable_rate"],
}


def build(m: pl.DataFrame, info: dict, ties: dict[str, list[str]] = NO_TIES) -> pl.DataFrame:
    """The feed of ``m`` (``ties``: atom -> the counts it adds to, as mart_metric_atoms gives them)."""
    return feed.build_feed(m, info, relations.Atoms.of(ties))


def without_the_whole_feed_check(monkeypatch) -> None:
    """The passes alone: the feed's last check, every released count of the hospital and departments together
    (``whole_feed``), finds nothing. What each pass protects is seen with it off (it would catch the rest)."""
    from pipeline.report import whole_feed

    nothing = pl.DataFrame(schema={"den_key": pl.Int64}), pl.DataFrame(schema={"fam_key": pl.Int64})
    monkeypatch.setattr(whole_feed.Check, "__call__", lambda self, *args: nothing)


# the measures laid out per provider in the feed (the rest are hospital-wide and per department only)
HEADLINE = ("inappropriate_order_rate", "premature_order_rate", "first_imaging_right_study")


def run_info(period: str = "all", **feed_cfg) -> dict:
    return {
        "period": period,
        "audit": {"id": "toy", "measures": [{"id": m, "headline": True} for m in HEADLINE]},
        "config": {"feed": feed_cfg} if feed_cfg else {},
        "software_version": "t",
        "rule_set_version": "t",
    }


def cell(fed: pl.DataFrame, period: str, level: str, group: str, measure: str = "inappropriate_order_rate") -> dict:
    (row,) = fed.filter(
        (pl.col("period") == period)
        & (pl.col("level") == level)
        & (pl.col("group_key") == group)
        & (pl.col("measure_id") == measure)
    ).to_dicts()
    return row


def one_month(*departments: tuple[str, int, int], measure: str = "inappropriate_order_rate") -> list[tuple]:
    n = sum(d[1] for d in departments)
    den = sum(d[2] for d in departments)
    rows = [("2026-06", "overall", "all", measure, n, den)]
    rows += [("2026-06", "department", name, measure, a, b) for name, a, b in departments]
    rows += [("2026-06", "provider", f"P-{name}", measure, a, b) for name, a, b in departments]
    return rows


# ----------------------------------------------------------------------------- the rule on hand-built cells


def test_a_small_cell_is_withheld_whole_and_the_next_smallest_with_it():
    fed = build(metrics(one_month(("neuro", 4, 60), ("anes", 12, 80), ("emerg", 30, 90), ("pain", 25, 70))), run_info("2026-06"))
    neuro = cell(fed, "2026-06", "department", "neuro")
    assert neuro["suppressed"] is True
    assert neuro["numerator"] is None and neuro["rate"] is None and neuro["ci_low"] is None and neuro["ci_high"] is None
    assert neuro["denominator"] == 60  # 60 evaluated orders is no small count: shown, so a dashboard says why
    # the hospital total (71) minus the released departments would give neuro's 4: the next smallest goes too
    anes = cell(fed, "2026-06", "department", "anes")
    assert anes["suppressed"] is True and anes["numerator"] is None
    for name, n in (("emerg", 30), ("pain", 25)):
        assert cell(fed, "2026-06", "department", name)["numerator"] == n
    total = cell(fed, "2026-06", "overall", "all")
    assert total["numerator"] == 71 and total["suppressed"] is False
    # the same protection across the provider level
    assert cell(fed, "2026-06", "provider", "P-neuro")["suppressed"] and cell(fed, "2026-06", "provider", "P-anes")["suppressed"]
    assert cell(fed, "2026-06", "provider", "P-pain")["numerator"] == 25


def test_a_small_complement_or_denominator_is_withheld():
    fed = build(metrics(one_month(("neuro", 55, 60), ("anes", 3, 8), ("emerg", 30, 40))), run_info("2026-06"))
    neuro = cell(fed, "2026-06", "department", "neuro")  # 55 of 60: the 5 others are a small count too
    assert neuro["suppressed"] and neuro["numerator"] is None and neuro["denominator"] == 60
    anes = cell(fed, "2026-06", "department", "anes")  # 8 evaluated orders: the denominator itself is withheld
    assert anes["suppressed"] and anes["denominator"] is None
    # and the next-smallest denominator with it, or the total 108 minus 60 and 40 would give the 8
    emerg = cell(fed, "2026-06", "department", "emerg")
    assert emerg["suppressed"] and emerg["denominator"] is None and emerg["numerator"] is None


def test_the_threshold_is_configurable():
    rows = metrics(one_month(("neuro", 4, 60), ("anes", 12, 80), ("emerg", 30, 90)))
    assert cell(build(rows, run_info("2026-06", min_cell_count=3)), "2026-06", "department", "neuro")["numerator"] == 4
    assert cell(build(rows, run_info("2026-06")), "2026-06", "department", "neuro")["numerator"] is None


def test_identical_counts_under_two_measures_are_withheld_alike():
    rows = one_month(("neuro", 4, 60), ("anes", 12, 80), ("emerg", 30, 90), measure="premature_order_rate")
    rows += one_month(("neuro", 4, 60), ("anes", 12, 80), ("emerg", 30, 90), measure="reason_premature")
    fed = build(metrics(rows), run_info("2026-06"))
    above = pl.col("level") != "provider"
    a = fed.filter(above & (pl.col("measure_id") == "premature_order_rate")).drop("measure_id")
    b = fed.filter(above & (pl.col("measure_id") == "reason_premature")).drop("measure_id")
    assert a.equals(b)
    # the headline measure is laid out per provider too, the reason share is not: two tables, one fate
    assert fed.filter(~above & (pl.col("measure_id") == "reason_premature")).height == 0
    assert fed.filter(~above & (pl.col("measure_id") == "premature_order_rate")).height == 3


def test_a_non_headline_twin_does_not_release_what_the_providers_make_the_headline_withhold():
    # a case measure counts unattributed cases hospital-wide only: the providers' cells do not add up to the
    # total. The one provider's 4 is withheld, nothing is left to give up beside it, so the hospital total goes,
    # and with it a department. The twin measure has the same cells but no provider rows: linked, it withholds
    # the same cells, or its total would be the headline's hidden one.
    above = [
        ("2026-06", "overall", "all", 30, 40),
        ("2026-06", "department", "d1", 15, 20),
        ("2026-06", "department", "d2", 15, 20),
    ]
    rows = [(p, lv, g, m, n, d) for m in ("first_imaging_right_study", "case_twin") for p, lv, g, n, d in above]
    rows.append(("2026-06", "provider", "P1", "first_imaging_right_study", 4, 10))
    fed = build(metrics(rows), run_info("2026-06"))
    headline, twin = (
        fed.filter((pl.col("level") != "provider") & (pl.col("measure_id") == m)).drop("measure_id")
        for m in ("first_imaging_right_study", "case_twin")
    )
    assert cell(fed, "2026-06", "overall", "all", "first_imaging_right_study")["suppressed"]
    assert twin.equals(headline)


def test_nested_denominators_do_not_give_the_not_evaluable_orders_away():
    # evaluated orders 60, non-excluded 64: the 4 not-evaluable orders would be 64 - 60
    rows = one_month(("neuro", 4, 64), ("anes", 20, 90), ("emerg", 22, 95), measure="not_evaluable_rate")
    rows += one_month(("neuro", 20, 60), ("anes", 30, 70), ("emerg", 40, 80), measure="inappropriate_order_rate")
    fed = build(metrics(rows), run_info("2026-06"), CSF_TIES)
    ne = cell(fed, "2026-06", "department", "neuro", "not_evaluable_rate")
    assert ne["suppressed"] and ne["denominator"] is None
    assert disclosure_breaches(fed, metrics(rows), ties=CSF_TIES) == []


def months_of(start: str, count: int) -> list[str]:
    y, m = int(start[:4]), int(start[5:])
    out = []
    for _ in range(count):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def rare_event_year(seed: int = 3) -> pl.DataFrame:
    """18 months, four departments with a rare event (0-4 a month), ~20 evaluated orders a month each."""
    rng = np.random.default_rng(seed)
    rows = []
    for month in months_of("2025-01", 18):
        depts = [(name, int(rng.integers(0, 5)), int(rng.integers(15, 26))) for name in ("neuro", "anes", "emerg", "pain")]
        rows += [(month, *r[1:]) for r in one_month(*depts)]
    frame = pl.DataFrame(rows, schema=["period", "level", "group_key", "measure_id", "numerator", "denominator"], orient="row")
    run_total = frame.group_by("level", "group_key", "measure_id").agg(pl.col("numerator", "denominator").sum())
    rows += [("all", *r) for r in run_total.select(frame.columns[1:]).iter_rows()]  # the mart's run total
    return metrics(rows)


def test_rolling_and_quarterly_cells_sum_the_months_and_are_labelled():
    m = rare_event_year()
    fed = build(m, run_info("all"))
    assert set(fed["period_type"]) == {"month", "quarter", "rolling_12m", "all"}
    r = cell(fed, "2025-07..2026-06", "department", "neuro")
    assert (r["period_type"], r["period_start"], r["period_end"]) == ("rolling_12m", "2025-07", "2026-06")
    months = months_of("2025-07", 12)
    src = m.filter((pl.col("level") == "department") & (pl.col("group_key") == "neuro") & pl.col("period").is_in(months))
    if not r["suppressed"]:
        assert r["numerator"] == src["numerator"].sum() and r["denominator"] == src["denominator"].sum()
        assert r["rate"] == round(src["numerator"].sum() / src["denominator"].sum(), 6)
    q = cell(fed, "2025-Q2", "overall", "all")
    assert (q["period_type"], q["period_start"], q["period_end"]) == ("quarter", "2025-04", "2025-06")
    # a rare event: the months are mostly withheld, the 12-month rates mostly released
    dept = fed.filter(pl.col("level") == "department")
    month_released = (~dept.filter(pl.col("period_type") == "month")["suppressed"]).mean()
    rolling_released = (~dept.filter(pl.col("period_type") == "rolling_12m")["suppressed"]).mean()
    assert rolling_released > 0.5 > month_released


def test_the_run_totals_row_spans_the_months_of_the_cases_as_the_report_states_them():
    """A run over every month states its period as the months of its cases (``period_status.build``: the report,
    log and site index). A case never imaged is in no measure, so the months with figures can start later and end
    earlier: the ``all`` row said 2025-01 to 2026-06 (and the status of June) where the report said 2024-11 to 2026-08.
    It now spans the cases' months, status of its own last month; every other row and every count is unchanged."""
    m = rare_event_year()  # figures 2025-01 .. 2026-06
    info = run_info("all") | {
        "maturity": {"data_through": "2026-10-20T12:00:00+00:00", "horizon_days": 74.0, "site_timezone": "UTC"}
    }
    plain = feed.build_feed(m, info, relations.Atoms.of(NO_TIES))
    spanned = feed.build_feed(m, info, relations.Atoms.of(NO_TIES), case_months=("2024-11", "2026-08"))
    total = spanned.filter(pl.col("period") == "all")
    assert total.select("period_start", "period_end", "status").unique().rows() == [("2024-11", "2026-08", "provisional")]
    assert plain.filter(pl.col("period") == "all").select("period_start", "period_end", "status").unique().rows() == [
        ("2025-01", "2026-06", "final")
    ]
    dates = ["period_start", "period_end", "status"]
    assert spanned.drop(dates).equals(plain.drop(dates))
    assert spanned.filter(pl.col("period") != "all").equals(plain.filter(pl.col("period") != "all"))
    # cases within the months with figures, none given, or a run of one month: the months with figures
    for case_months, period in ((("2025-02", "2026-05"), "all"), (None, "all"), (("2026-06", "2026-06"), "2026-06")):
        one = m.filter(pl.col("period").is_in(["all", "2026-06"]) if period != "all" else pl.lit(True))
        got = feed.build_feed(one, run_info(period), relations.Atoms.of(NO_TIES), case_months=case_months)
        want = feed.build_feed(one, run_info(period), relations.Atoms.of(NO_TIES))
        assert got.equals(want), (case_months, period)


@pytest.mark.parametrize("day", [15, 31, 32], ids=["mid-march", "march-31", "april-1"])
def test_periods_starting_before_the_audits_look_back_is_covered_are_marked_and_nothing_else_changes(day):
    """An audit's units look back before their own date (low back pain: 180 days of history); ``verified_from`` is the
    first day that look-back lies within the data. Every period whose first day is before it, months, quarters,
    12-month windows and the run's total alike, is ``before_data``; a period starting on it is complete; an audit
    without a look-back marks none."""
    import datetime

    verified_from = datetime.date(2025, 3, 1) + datetime.timedelta(days=day - 1)
    m = rare_event_year()  # 2025-01 .. 2026-06
    info = run_info("all")
    plain = feed.build_feed(m, info, relations.Atoms.of(NO_TIES))
    marked = feed.build_feed(m, info, relations.Atoms.of(NO_TIES), verified_from)
    assert plain.group_by("look_back", "verified_from").len().rows() == [("complete", None, plain.height)]
    assert set(marked["verified_from"]) == {verified_from}
    before = marked.filter(pl.col("look_back") == "before_data")["period"].unique().sort().to_list()
    assert before == [
        "2025-01", "2025-01..2025-12", "2025-02", "2025-02..2026-01", "2025-03", "2025-03..2026-02", "2025-Q1", "all"
    ]  # fmt: skip
    assert set(marked["look_back"]) == {"complete", "before_data"} == set(feed.LOOK_BACK)
    assert marked.drop("look_back", "verified_from").equals(plain.drop("look_back", "verified_from"))


def test_no_hidden_month_is_a_rolling_or_quarterly_total_minus_released_months():
    m = rare_event_year(seed=5)
    fed = build(m, run_info("all"))
    assert disclosure_breaches(fed, m) == []


def mixed_year(seed: int) -> pl.DataFrame:
    """12 months, five departments whose monthly counts run from 0 to 30 (small and large cells side by side)."""
    rng = np.random.default_rng(seed)
    rows = []
    for month in months_of("2025-07", 12):
        counts = [int(rng.choice([0, 0, 1, 2, 3, 5, 8, 12, 20, 30])) for _ in range(5)]
        rows += [(month, *r[1:]) for r in one_month(*[(f"d{i}", a, a + int(rng.integers(0, 40))) for i, a in enumerate(counts)])]
    frame = pl.DataFrame(rows, schema=["period", "level", "group_key", "measure_id", "numerator", "denominator"], orient="row")
    run_total = frame.group_by("level", "group_key", "measure_id").agg(pl.col("numerator", "denominator").sum())
    rows += [("all", *r) for r in run_total.select(frame.columns[1:]).iter_rows()]
    return metrics(rows)


@pytest.mark.parametrize("seed", [18, 27])
def test_time_and_departments_together_give_no_hidden_count_away(seed, monkeypatch):
    m = mixed_year(seed)
    assert disclosure_breaches(build(m, run_info("all")), m) == []
    # these years are ones where the per-period and per-series passes alone leave a count determined
    from pipeline.report import disclosure

    monkeypatch.setattr(disclosure._Joint, "settle", lambda self, withheld: withheld)
    without_the_whole_feed_check(monkeypatch)
    assert any("determined by the released cells" in p for p in disclosure_breaches(build(m, run_info("all")), m))


def many_providers_year(seed: int) -> pl.DataFrame:
    """12 months, three departments of eight providers: two busy ones, six with 1 to 3 orders in a few months
    (withheld in every period, as most providers of a large hospital are)."""
    rng = np.random.default_rng(seed)
    rows = []
    for month in months_of("2025-07", 12):
        for d in range(3):
            cells = [(f"d{d}-p{p}", *(lambda n: (n, n + int(rng.integers(5, 40))))(int(rng.integers(0, 15)))) for p in range(2)]
            cells += [
                (f"d{d}-p{p}", int(rng.integers(0, 2)), int(rng.integers(1, 4))) for p in range(2, 8) if rng.random() < 0.25
            ]
            rows += [(month, "provider", *c) for c in cells]
            rows.append((month, "department", f"d{d}", sum(c[1] for c in cells), sum(c[2] for c in cells)))
    frame = pl.DataFrame(rows, schema=["period", "level", "group_key", "numerator", "denominator"], orient="row")
    overall = frame.filter(pl.col("level") == "department").group_by("period").agg(pl.col("numerator", "denominator").sum())
    frame = pl.concat(
        [
            frame,
            overall.select(
                "period", pl.lit("overall").alias("level"), pl.lit("all").alias("group_key"), "numerator", "denominator"
            ),
        ]
    )
    run_total = frame.group_by("level", "group_key").agg(pl.col("numerator", "denominator").sum())
    frame = pl.concat([frame, run_total.select(pl.lit("all").alias("period"), "level", "group_key", "numerator", "denominator")])
    rows = frame.select("period", "level", "group_key", pl.lit("inappropriate_order_rate"), "numerator", "denominator").rows()
    return metrics(rows)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_providers_withheld_throughout_are_passed_on_as_one_cell_and_change_nothing(seed, monkeypatch):
    """The passes see the providers withheld in every period of a table as one cell per period (their sum,
    counting as many withheld cells as it stands for): the feed is the one they give on every provider cell."""
    from pipeline.report import disclosure

    m = many_providers_year(seed)
    seen: list[int] = []
    passes = disclosure.Protection._protect
    monkeypatch.setattr(disclosure.Protection, "_protect", lambda self, cells: seen.append(cells.height) or passes(self, cells))
    merged = build(m, run_info("all"))
    monkeypatch.setattr(disclosure, "_settled", lambda cells, *_: np.zeros(cells.height, bool))
    every_cell = build(m, run_info("all"))
    assert merged.equals(every_cell)
    assert seen[0] < seen[2] and seen[1] < seen[3]  # the denominators' and the counts' passes had fewer cells
    assert disclosure_breaches(merged, m) == []


def test_metrics_json_and_the_log_name_the_measures_the_joint_pass_left_to_the_other_passes(tmp_path, monkeypatch, caplog):
    """Above disclosure.JOINT_PROVIDER_ENTRIES a measure's provider cells are protected by the line and time passes
    only: metrics.json's provider_joint_check says which measures and counts, and the log says it at info. Under the
    cap it says none. Here the year's inappropriate orders (their own numerator and denominator, no ties)."""
    import logging

    from pipeline.report import disclosure

    m = many_providers_year(1)
    logger = logging.getLogger("pipeline")
    monkeypatch.setattr(logger, "propagate", True)  # to caplog's handler (the CLI's logging turns it off)
    caplog.set_level(logging.INFO, logger="pipeline")

    def written(name: str) -> tuple[dict, list[dict]]:
        caplog.clear()
        (tmp_path / name).mkdir()
        feed.write_feed(tmp_path / name, m, run_info("all"), "all", relations.Atoms.of(NO_TIES))
        summary = json.loads((tmp_path / name / "metrics.json").read_text(encoding="utf-8"))
        logged = [r.fields for r in caplog.records if r.fields["event"] == "provider_joint_left_out"]
        return summary["provider_joint_check"], logged

    assert written("under") == ({"max_entries": 10_000_000, "left_out": {}}, [])
    monkeypatch.setattr(disclosure, "JOINT_PROVIDER_ENTRIES", 10)
    left_out = {"inappropriate_order_rate": ["denominator", "numerator"]}
    fields = {"event": "provider_joint_left_out", "audit_id": "toy", "measures": ["inappropriate_order_rate"], "max_entries": 10}
    assert written("over") == ({"max_entries": 10, "left_out": left_out}, [fields])
    assert "the provider cells of 1 measure (inappropriate_order_rate) are over the joint check's 10 matrix" in caplog.text


def test_metrics_json_names_the_time_zone_of_its_dates_and_months(tmp_path):
    """The rows' dates and months are site-local: metrics.json says in which zone (only run.json had said it; the
    same extract run in another zone has other months and figures)."""
    info = run_info("all")
    info["config"]["site_timezone"] = "Asia/Tokyo"
    feed.write_feed(tmp_path, mixed_year(4), info, "all", relations.Atoms.of(NO_TIES))
    assert json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))["site_timezone"] == "Asia/Tokyo"


@pytest.mark.parametrize("seed", [4, 18, 29])
def test_the_feed_does_not_depend_on_the_order_of_the_cells(seed):
    # these years have equal candidates for a complement: the choice must not follow the row order the
    # metrics (or a group-by inside the feed) happen to come in, or a rerun would give other bytes
    m = mixed_year(seed)
    fed = build(m, run_info("all"))
    for shuffle in range(3):
        assert fed.equals(build(m.sample(fraction=1.0, shuffle=True, seed=shuffle), run_info("all")))


def test_the_audit_finds_what_primary_suppression_alone_gives_away(monkeypatch):
    from pipeline.report import disclosure

    monkeypatch.setattr(disclosure.Protection, "__call__", lambda self, cells: cells["withheld"].to_numpy())
    without_the_whole_feed_check(monkeypatch)
    m = rare_event_year(seed=5)
    assert any("determined by the released cells" in p for p in disclosure_breaches(build(m, run_info("all")), m))
    m = metrics(one_month(("neuro", 4, 60), ("anes", 12, 80), ("emerg", 30, 90)))
    assert any("recoverable from the total" in p for p in disclosure_breaches(build(m, run_info("2026-06")), m))


def csf_month() -> pl.DataFrame:
    """A CSF-leak month of three departments: neuro's 5 evaluated orders, anes' 0 not-evaluable ones."""
    rows = []
    for group, evaluated, not_evaluable in (("neuro", 5, 15), ("anes", 40, 0), ("emerg", 50, 15)):
        rows += [
            ("2026-06", "department", group, "inappropriate_order_rate", evaluated // 2, evaluated),
            ("2026-06", "department", group, "not_evaluable_rate", not_evaluable, evaluated + not_evaluable),
        ]
    rows += [
        ("2026-06", "overall", "all", "inappropriate_order_rate", 47, 95),
        ("2026-06", "overall", "all", "not_evaluable_rate", 30, 125),
    ]
    return metrics(rows)


def test_a_count_that_is_the_difference_of_two_denominators_does_not_give_a_withheld_one_away():
    """The not-evaluable orders are the non-excluded orders less the evaluated ones: a released not-evaluable row
    (0 of 40) beside a withheld evaluated-orders denominator (40, withheld to protect neuro's 5) gave the 40
    back, and with it neuro's 5 (95 - 40 - 50)."""
    m = csf_month()
    fed = build(m, run_info("2026-06"), CSF_TIES)
    assert cell(fed, "2026-06", "department", "neuro")["denominator"] is None
    assert cell(fed, "2026-06", "department", "anes")["denominator"] is None  # the complement of neuro's 5
    assert cell(fed, "2026-06", "department", "anes", "not_evaluable_rate")["numerator"] is None
    assert disclosure_breaches(fed, m, ties=CSF_TIES) == []


# the low back pain audit's order counts: judged orders are early or after the conservative period; every audited
# order is judged, excluded (a red flag or cancelled) or not evaluable
LBP_TIES = {
    "early": [
        "d:early_imaging_order_rate",
        "n:early_imaging_order_rate",
        *(f"d:{m}" for m in ("excluded_order_rate", "not_evaluable_order_rate")),
    ],
    "after": ["d:early_imaging_order_rate", "d:excluded_order_rate", "d:not_evaluable_order_rate"],
    "red_flag": ["d:excluded_order_rate", "n:excluded_order_rate", "d:not_evaluable_order_rate", "n:reason_red_flag_condition"],
    "cancelled": ["d:excluded_order_rate", "n:excluded_order_rate", "d:not_evaluable_order_rate", "n:reason_cancelled"],
    "not_evaluable": ["d:excluded_order_rate", "d:not_evaluable_order_rate", "n:not_evaluable_order_rate"],
}


def lbp_month() -> pl.DataFrame:
    """The 20k-patient demo's low back pain orders: 147 audited, 110 judged (86 early), 30 excluded (29 for a red
    flag, 1 cancelled), 7 not evaluable; two departments."""
    rows = []
    for level, group, audited, judged, early, red_flag, cancelled, not_evaluable in (
        ("overall", "all", 147, 110, 86, 29, 1, 7),
        ("department", "d1", 80, 60, 47, 15, 0, 5),
        ("department", "d2", 67, 50, 39, 14, 1, 2),
    ):
        assert audited == judged + red_flag + cancelled + not_evaluable
        cells = {
            "early_imaging_order_rate": (early, judged),
            "excluded_order_rate": (red_flag + cancelled, audited),
            "not_evaluable_order_rate": (not_evaluable, audited),
            "reason_red_flag_condition": (red_flag, audited),
            "reason_cancelled": (cancelled, audited),
        }
        rows += [("2026-06", level, group, m, n, d) for m, (n, d) in cells.items()]
    return metrics(rows)


def test_a_withheld_count_the_other_counts_of_its_cell_give_is_withheld_no_more():
    """147 audited - 110 judged - 30 excluded = 7 not evaluable: the feed gave the 7 away, it now withholds one more
    count of the cell (an off-headline numerator, not the early-imaging rate), and the audit of the feed says so."""
    m = lbp_month()
    leaked = build(m, run_info("2026-06"))  # the feed told nothing of how the counts tie together
    assert any(
        "determined by its cell's released counts: not_evaluable_order_rate" in p
        for p in disclosure_breaches(leaked, m, ties=LBP_TIES)
    )
    fed = build(m, run_info("2026-06"), LBP_TIES)
    assert disclosure_breaches(fed, m, ties=LBP_TIES) == []
    total = {r["measure_id"]: r for r in fed.filter(pl.col("level") == "overall").to_dicts()}
    assert total["not_evaluable_order_rate"]["numerator"] is None
    assert total["early_imaging_order_rate"]["numerator"] == 86 and total["early_imaging_order_rate"]["denominator"] == 110
    assert total["excluded_order_rate"]["numerator"] is None  # the off-headline count given up
    assert all(r["denominator"] is not None for r in total.values())  # no denominator needed to go


def lbp_year(seed: int) -> pl.DataFrame:
    """12 months, four departments whose low back pain orders fall in the five atoms of ``LBP_TIES`` at random (0
    to 12 a month each): small counts tied within their cells and summed over departments and months."""
    rng = np.random.default_rng(seed)
    atoms = ("early", "after", "red_flag", "cancelled", "not_evaluable")
    per = {
        (month, f"d{d}"): dict(zip(atoms, rng.choice([0, 0, 1, 2, 4, 7, 12], size=len(atoms)).tolist(), strict=True))
        for month in months_of("2025-07", 12)
        for d in range(4)
    }

    def counts(n: dict) -> dict:
        judged, excluded = n["early"] + n["after"], n["red_flag"] + n["cancelled"]
        audited = judged + excluded + n["not_evaluable"]
        return {
            "early_imaging_order_rate": (n["early"], judged),
            "excluded_order_rate": (excluded, audited),
            "not_evaluable_order_rate": (n["not_evaluable"], audited),
            "reason_red_flag_condition": (n["red_flag"], audited),
            "reason_cancelled": (n["cancelled"], audited),
        }

    def total(cells: list[dict]) -> dict:
        return {a: sum(c[a] for c in cells) for a in atoms}

    groups = {}
    for (month, dept), n in per.items():
        groups[(month, "department", dept)] = n
        groups[("all", "department", dept)] = total([m for (mo, de), m in per.items() if de == dept])
    for month in {m for m, _ in per}:
        groups[(month, "overall", "all")] = total([n for (mo, _), n in per.items() if mo == month])
    groups[("all", "overall", "all")] = total(list(per.values()))
    rows = [(p, lv, g, m, n, d) for (p, lv, g), atom in groups.items() for m, (n, d) in counts(atom).items() if d > 0]
    return metrics(rows)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_counts_tied_within_cells_and_summed_across_them_give_nothing_away(seed, monkeypatch):
    m = lbp_year(seed)
    assert disclosure_breaches(build(m, run_info("all"), LBP_TIES), m, ties=LBP_TIES) == []
    # without the check within cells, these years give counts away
    empty = pl.DataFrame(schema={"den_key": pl.Int64}), pl.DataFrame(schema={"fam_key": pl.Int64})
    monkeypatch.setattr(relations, "exposed", lambda *args: empty)
    without_the_whole_feed_check(monkeypatch)
    assert any(
        "its cell's released counts" in p for p in disclosure_breaches(build(m, run_info("all"), LBP_TIES), m, ties=LBP_TIES)
    )


def test_rates_and_intervals_are_rounded_and_within_0_1():
    m = metrics([("2026-06", "overall", "all", "inappropriate_order_rate", 0, 300), ("2026-06", "overall", "all", "x", 300, 300)])
    fed = build(m, run_info("2026-06"))
    for c in ("rate", "ci_low", "ci_high"):
        values = fed[c].drop_nulls()
        assert ((values >= 0) & (values <= 1)).all()
        assert (values == values.round(6)).all()
    assert cell(fed, "2026-06", "overall", "all")["ci_low"] == 0.0


# ----------------------------------------------------------------------------- an independent audit of a feed


def _cover(periods: list[str], fed: pl.DataFrame) -> tuple[list[str], np.ndarray]:
    bounds = {
        r["period"]: (r["period_start"], r["period_end"])
        for r in fed.select("period", "period_start", "period_end").unique().to_dicts()
    }
    first = min(b[0] for b in bounds.values())
    last = max(b[1] for b in bounds.values())
    cal = months_of(first, 1 + (int(last[:4]) - int(first[:4])) * 12 + int(last[5:]) - int(first[5:]))
    cover = np.array([[bounds[p][0] <= mm <= bounds[p][1] for mm in cal] for p in periods], dtype=float)
    return cal, cover


def _determined(known: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Which target rows lie in the row space of the known rows (their value follows from the known ones)."""
    if known.shape[0] == 0:
        return np.zeros(target.shape[0], bool)
    proj = target @ np.linalg.pinv(known, rcond=1e-10) @ known
    return np.abs(proj - target).max(axis=1) < 1e-8


def disclosure_breaches(fed: pl.DataFrame, source: pl.DataFrame, k: int = K, ties: dict[str, list[str]] = NO_TIES) -> list[str]:
    """Every way a withheld count of 1..k-1 of ``fed`` (made from ``source``) can be had: released directly,
    by subtraction over groups, as any linear combination over time and departments, or of the other counts of
    its cell (``ties``: atom -> the counts it adds to)."""
    problems = []
    # the true counts of every cell, aggregates included (as the feed computes them); a --month run's ``all`` is its
    # one month, as the feed's own row says
    run = fed.filter(pl.col("period") == "all").select("period_start", "period_end").unique().rows()
    period = run[0][1] if len(run) == 1 and run[0][0] == run[0][1] else "all"
    true = feed.with_aggregates(source, feed.period_windows(sorted(p for p in source["period"].unique() if p != "all"), period))
    # a cell the feed lays out (its measure at its level) but leaves out is withheld: the reader knows it exists
    # only where its count is not zero, never its value
    laid_out = fed.select("measure_id", "level").unique()
    joined = (
        true.join(laid_out, on=["measure_id", "level"])
        .select(*feed.KEYS, "period_start", "period_end", pl.col("numerator").alias("n"), pl.col("denominator").alias("d"))
        .join(fed.select(*feed.KEYS, "numerator", "denominator"), on=feed.KEYS, how="left")
    )
    problems += _cell_breaches(joined, ties, k)
    joined = _with_differences(joined)
    rel_n, rel_d = joined["numerator"].is_not_null(), joined["denominator"].is_not_null()
    for what, values, released in (("numerator", joined["n"], rel_n), ("denominator", joined["d"], rel_d)):
        bad = joined.filter(released & (values >= 1) & (values < k))
        problems += [f"released small {what}: {r}" for r in bad.select(feed.KEYS).to_dicts()[:5]]
    comp = joined.filter(rel_n & rel_d & ((joined["d"] - joined["n"]).is_between(1, k - 1)))
    problems += [f"released small complement: {r}" for r in comp.select(feed.KEYS).to_dicts()[:5]]
    for count, true_count in (("numerator", "n"), ("denominator", "d")):
        problems += _line_breaches(joined, count, true_count, k) + _linear_breaches(joined, count, true_count, k)
    return problems


def _with_differences(joined: pl.DataFrame) -> pl.DataFrame:
    """``joined`` with what a reader works out across measures: where a measure's numerator is its denominator less
    another measure's denominator in every cell (not-evaluable orders = non-excluded less evaluated orders), any two
    released counts of a cell give the third."""
    cell = ["period", "level", "group_key"]
    laid_out = joined.select("level", pl.col("measure_id").alias("other")).unique()

    def with_other(frame: pl.DataFrame) -> pl.DataFrame:
        """Each row beside every other measure's denominator of its cell (no row: a known zero)."""
        dens = joined.select(
            *cell, pl.col("measure_id").alias("other"), pl.col("d").alias("d_b"), pl.col("denominator").alias("den_b")
        )
        return (
            frame.join(laid_out, on="level")
            .filter(pl.col("measure_id") != pl.col("other"))
            .join(dens, on=[*cell, "other"], how="left")
            .with_columns(pl.col("d_b").fill_null(0), pl.when(pl.col("d_b").is_null()).then(0).otherwise("den_b").alias("den_b"))
        )

    pairs = with_other(joined)
    tied = (
        pairs.group_by("measure_id", "other")
        .agg(((pl.col("n") == pl.col("d") - pl.col("d_b")).all() & (pl.col("d") != pl.col("d_b")).any()).alias("tied"))
        .filter("tied")
        .select("measure_id", "other")
    )
    for _ in range(3):  # a count worked out in one measure is released in every measure sharing it
        pairs = with_other(joined.join(tied, on="measure_id")).join(tied, on=["measure_id", "other"])
        numerators = pairs.filter(
            pl.col("numerator").is_null() & pl.col("denominator").is_not_null() & pl.col("den_b").is_not_null()
        )
        own = pairs.filter(pl.col("denominator").is_null() & pl.col("numerator").is_not_null() & pl.col("den_b").is_not_null())
        other = pairs.filter(pl.col("den_b").is_null() & pl.col("numerator").is_not_null() & pl.col("denominator").is_not_null())
        found_n = numerators.select(*cell, "measure_id", (pl.col("denominator") - pl.col("den_b")).alias("n_found"))
        found_d = pl.concat(
            [
                own.select(*cell, "measure_id", (pl.col("den_b") + pl.col("numerator")).alias("d_found")),
                other.select(
                    *cell, pl.col("other").alias("measure_id"), (pl.col("denominator") - pl.col("numerator")).alias("d_found")
                ),
            ]
        )
        # the same denominator under every measure that shares it (equal true denominators in every cell)
        same = joined.group_by("measure_id").agg(pl.struct(*cell, "d").hash().sum().alias("sig"))
        found_d = (
            found_d.join(same, on="measure_id").drop("measure_id").join(same, on="sig").drop("sig").unique([*cell, "measure_id"])
        )
        if found_n.height == 0 and found_d.height == 0:
            break
        joined = (
            joined.join(found_n.unique([*cell, "measure_id"]), on=[*cell, "measure_id"], how="left")
            .join(found_d, on=[*cell, "measure_id"], how="left")
            .with_columns(
                pl.coalesce("numerator", "n_found").alias("numerator"), pl.coalesce("denominator", "d_found").alias("denominator")
            )
            .drop("n_found", "d_found")
        )
    return joined


def _cell_breaches(joined: pl.DataFrame, ties: dict[str, list[str]], k: int) -> list[str]:
    """Within each cell: a withheld count of 1..k-1, or the complement (denominator less numerator) of 1..k-1 of a
    withheld numerator, that the released counts of the cell determine. Every count is the sum of its atoms; a
    released 0, or no row where the measure is laid out, shows its atoms empty."""
    names = sorted({f"{c}:{m}" for m in joined["measure_id"].unique() for c in "dn"})
    atoms = sorted(ties) + [f"own:{c}" for c in names if not any(c in v for v in ties.values())]
    column = {c: np.array([a == f"own:{c}" or c in ties.get(a, ()) for a in atoms], float) for c in names}
    laid_out = {lv: set(g["measure_id"]) for (lv,), g in joined.group_by("level")}
    problems = []
    for (period, level, group), rows in joined.group_by("period", "level", "group_key"):
        known, empty, hidden = [], np.zeros(len(atoms), bool), []
        present = set(rows["measure_id"])
        for m in laid_out[level] - present:  # no row: nothing in its denominator
            empty |= column[f"d:{m}"] > 0
        for r in rows.iter_rows(named=True):
            d, n = column[f"d:{r['measure_id']}"], column[f"n:{r['measure_id']}"]
            for vec, true, shown in ((d, r["d"], r["denominator"]), (n, r["n"], r["numerator"])):
                if shown is None:
                    hidden.append((vec, true, f"{r['measure_id']} {period} {level} {group}"))
                elif shown == 0:
                    empty |= vec > 0
                else:
                    known.append(vec)
            if r["numerator"] is None:
                hidden.append((d - n, r["d"] - r["n"], f"complement of {r['measure_id']} {period} {level} {group}"))
        basis = np.array(known + [np.eye(len(atoms))[i] for i in np.nonzero(empty)[0]])
        targets = [(vec, name) for vec, true, name in hidden if 1 <= true < k]
        if targets and basis.size:
            found = _determined(basis, np.array([vec for vec, _ in targets]))
            problems += [
                f"determined by its cell's released counts: {name}" for (_, name), f in zip(targets, found, strict=True) if f
            ]
    return problems


def _line_breaches(joined: pl.DataFrame, count: str, true_count: str, k: int) -> list[str]:
    """A released total and its level's cells leave no single withheld cell and no small withheld sum. The units the
    hospital counts and no cell of the level holds (its true count less theirs: a case without an attributed
    department) are one more cell no row releases: alone, they are the total less the level's cells."""
    lines = (
        joined.filter(pl.col("level") != "overall")
        .group_by("period", "level", "measure_id")
        .agg(
            pl.col(count).is_null().sum().alias("withheld"),
            pl.col(true_count).filter(pl.col(count).is_null()).sum().alias("hidden"),
            pl.col(true_count).sum().alias("held"),
        )
        .join(
            joined.filter(pl.col("level") == "overall").select(
                "period", "measure_id", pl.col(count).alias("total"), pl.col(true_count).alias("whole")
            ),
            on=["period", "measure_id"],
        )
        .with_columns((pl.col("whole") - pl.col("held")).alias("rest"))
        .filter(
            pl.col("total").is_not_null()
            & (
                ((pl.col("withheld") == 1) & (pl.col("rest") == 0))
                | ((pl.col("withheld") == 0) & pl.col("rest").is_between(1, k - 1))
                | (pl.col("hidden") + pl.col("rest")).is_between(1, k - 1)
            )
        )
    )
    return [f"{count} recoverable from the total: {r}" for r in lines.drop("held", "whole").to_dicts()[:5]]


REST = "\x00no department"  # the units the hospital counts and no department does


def _linear_breaches(joined: pl.DataFrame, count: str, true_count: str, k: int) -> list[str]:
    """Over time and departments together, per measure: any withheld count of 1..k-1 the released ones determine."""
    problems = []
    periods = sorted(joined["period"].unique())
    cal, cover = _cover(periods, joined)
    pidx = {p: i for i, p in enumerate(periods)}
    for measure in sorted(joined["measure_id"].unique()):
        mrows = joined.filter((pl.col("measure_id") == measure) & (pl.col("level") != "provider"))
        groups = sorted(mrows.filter(pl.col("level") == "department")["group_key"].fill_null("").unique())
        present = {(r["period"], r["level"], r["group_key"] or ""): r for r in mrows.to_dicts()}
        # the units the hospital counts and no department holds (a case without an attributed department): one more
        # group, never released, its true count the hospital's less the departments'
        rest = {
            p: present[p, "overall", "all"][true_count]
            - sum(present[p, "department", g][true_count] for g in groups if (p, "department", g) in present)
            for p in periods
            if (p, "overall", "all") in present
        }
        unattributed = bool(groups) and any(rest.values())
        groups += [REST] if unattributed else []
        gidx = {g: i for i, g in enumerate(groups)}
        n_unknown = max(len(groups), 1) * len(cal)  # a measure laid out hospital-wide only: its months are the unknowns
        known, hidden, names = [], [], []
        for p in periods:
            vec_all = np.zeros(n_unknown) if groups else cover[pidx[p]].copy()
            cells = []
            for g in groups:
                vec = np.zeros(n_unknown)
                vec[gidx[g] * len(cal) : (gidx[g] + 1) * len(cal)] = cover[pidx[p]]
                vec_all += vec
                if g == REST:
                    cells.append(({count: None, true_count: rest.get(p, 0)}, vec, "no department"))
                else:
                    cells.append((present.get((p, "department", g)), vec, f"department {g}"))
            cells.append((present.get((p, "overall", "all")), vec_all, "overall"))
            for r, vec, name in cells:
                if r is None or r[count] is not None:
                    known.append(vec)  # released, or no row: a known zero
                elif r[true_count] and 0 < r[true_count] < k:
                    hidden.append(vec)
                    names.append(f"{measure} {p} {name} {count} ({r[true_count]})")
        if hidden:
            found = _determined(np.array(known), np.array(hidden))
            problems += [f"determined by the released cells: {n}" for n, f in zip(names, found, strict=True) if f]
    return problems


# ----------------------------------------------------------------------------- the demo data, through the CLI


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    """`make demo`'s data (100k patients, 24 months from 2024-09, seed 7): leak work-ups are rare, so only a
    generation this size has department-year counts above 10 (a smaller one would test nothing)."""
    base = tmp_path_factory.mktemp("demo")
    generate(base / "input", patients=100_000, months=24, seed=7, start_month="2024-09")
    out = base / "out"
    result = run_cli("run", "--input", base / "input", "--out", out, "--warehouse", base / "wh.duckdb", "--no-validate")
    assert result.returncode == 0, result.stderr
    con = duckdb.connect(str(base / "wh.duckdb"), read_only=True)
    try:
        from pipeline import audits, publishing
        from pipeline.report.measure import build_metrics

        sources, ties = {}, {}
        for audit in audits.discover():
            publishing.select_audit(con, audit)  # as the run reads it
            sources[audit.id] = build_metrics(con)
            ties[audit.id] = {
                f"{u}:{a}": a.split("|") for u, a in con.execute("SELECT unit, atom FROM mart_metric_atoms").fetchall()
            }
    finally:
        con.close()
    return {"out": out, "source": sources["csf_leak"], "sources": sources, "ties": ties}


def readme_query() -> str:
    block = README[README.index("## The metrics feed") :]
    return re.search(r"```sql\n(.*?)```", block, re.S).group(1)


@pytest.mark.slow
def test_readme_dashboard_query_gives_released_nonzero_department_rates(demo):
    sql = readme_query().replace("REPORTS/", f"{demo['out']}/")
    rows = duckdb.sql(sql).pl()
    assert rows.height >= 10, rows
    assert rows["rate"].null_count() == 0 and (rows["rate"] > 0).all()
    assert rows["department"].n_unique() >= 3
    assert ((rows["ci_low"] <= rows["rate"]) & (rows["rate"] <= rows["ci_high"])).all()


@pytest.mark.slow
@pytest.mark.parametrize("audit_id", ["csf_leak", "low_back_pain"])
def test_demo_feed_gives_no_small_count_away(demo, audit_id):
    fed = pl.read_parquet(demo["out"] / audit_id / "metrics.parquet")
    assert fed["schema_version"].unique().to_list() == [feed.SCHEMA_VERSION] and fed["audit_id"].unique().to_list() == [audit_id]
    assert disclosure_breaches(fed, demo["sources"][audit_id], ties=demo["ties"][audit_id]) == []
    if audit_id == "csf_leak":
        # and it withheld what it had to, no more: the overall rolling inappropriate-order rates are all released
        rolling = fed.filter(
            (pl.col("period_type") == "rolling_12m")
            & (pl.col("level") == "overall")
            & (pl.col("measure_id") == "inappropriate_order_rate")
        )
        assert rolling.height >= 10 and not rolling["suppressed"].any()
    else:
        # the headline rates over 12 months hospital-wide stay released but for the first window (short of episodes)
        # and one whose off-headline count, withheld to protect a month, the others of its cell gave
        rolling = fed.filter(
            (pl.col("period_type") == "rolling_12m")
            & (pl.col("level") == "overall")
            & pl.col("measure_id").is_in(["early_imaging_order_rate", "episodes_without_early_imaging"])
        )
        assert rolling.height >= 20 and rolling["suppressed"].sum() <= 3


@pytest.mark.slow
def test_the_atoms_tie_the_counts_as_the_audits_define_them(demo):
    """mart_metric_atoms, from the measures' SQL: audited orders = judged + excluded + not evaluable (low back pain),
    non-excluded orders = evaluated + not evaluable (CSF leak), excluded = red flag + cancelled orders."""

    def column(audit_id: str, count: str) -> np.ndarray:
        ties = demo["ties"][audit_id]
        return np.array([count in ties[a] for a in sorted(ties)], int)

    lbp = functools.partial(column, "low_back_pain")
    assert np.array_equal(
        lbp("d:excluded_order_rate"),
        lbp("d:early_imaging_order_rate") + lbp("n:excluded_order_rate") + lbp("n:not_evaluable_order_rate"),
    )
    assert np.array_equal(lbp("n:excluded_order_rate"), lbp("n:reason_red_flag_condition") + lbp("n:reason_cancelled"))
    csf = functools.partial(column, "csf_leak")
    assert np.array_equal(csf("d:not_evaluable_rate"), csf("d:inappropriate_order_rate") + csf("n:not_evaluable_rate"))
    assert relations.Atoms.of(demo["ties"]["csf_leak"]).columns(["n:reason_none_such"]).any()  # unknown: its own


@pytest.mark.slow
def test_metrics_json_is_what_the_docs_say(demo):
    summary = json.loads((demo["out"] / "csf_leak" / "metrics.json").read_text())
    fed = pl.read_parquet(demo["out"] / "csf_leak" / "metrics.parquet")
    documented = set(re.findall(r"`(\w+)`", FEED_DOC[FEED_DOC.index("## metrics.json") :].split("\n## ")[0]))
    assert set(summary) <= documented, set(summary) - documented
    assert summary["columns"] == {c: str(t) for c, t in fed.schema.items()}
    assert summary["rows"] == fed.height
    head = fed.filter((pl.col("period") == summary["headline_period"]) & (pl.col("level") == "overall"))
    assert summary["headline"] == json.loads(head.drop("schema_version").write_json())
    assert "metrics.json" in README and "summary" in README[README.index("## The metrics feed") :]


def doc_blocks(language: str) -> list[str]:
    """The ``language`` code blocks of docs/METRICS_FEED.md, as written."""
    return re.findall(rf"```{language}\n(.*?)```", FEED_DOC, re.S)


@pytest.mark.slow
def test_the_documented_queries_run_as_written_and_give_rows(demo, monkeypatch):
    """A dashboard analyst pastes the doc's SQL and Python: they read the feed folders as documented and give rows
    (the SQL once filtered schema_version LIKE '2.%' and gave none from a 3.0 feed)."""
    sql = doc_blocks("sql")[0]  # the dashboard's query (the second loads feeds into a table: test_feed_schema.py)
    rows = duckdb.sql(sql.replace("/reports/order-audit/latest/", f"{demo['out']}/")).pl()
    # the figures the doc quotes for this demo (it said 35 points while the feed gave 36)
    points, departments = re.search(
        r"100k-patient demo \(`make demo`'s\) this gives (\d+) points over (\d+) departments", FEED_DOC
    ).groups()
    assert (rows.height, rows["department"].n_unique()) == (int(points), int(departments)), rows
    python = doc_blocks("python")[0]  # the dashboard's snippet (the second reads the CSV: test_feed_schema.py)
    monkeypatch.chdir(demo["out"])
    names: dict = {}
    exec(python, names)  # noqa: S102 - the documented snippet itself
    assert len(names["monthly"]) >= 12


def test_the_documented_columns_are_the_feed_columns_with_their_types():
    table = FEED_DOC[FEED_DOC.index("## Columns") :].split("\n## ")[0]
    documented = []
    for names, kind in re.findall(r"^\| ((?:`\w+`(?:, )?)+) \| (\w+)[^|]*\|", table, re.M):
        documented += [(name, kind) for name in re.findall(r"`(\w+)`", names)]
    words = {"string": pl.String, "int64": pl.Int64, "float64": pl.Float64, "bool": pl.Boolean, "date": pl.Date}
    assert [(c, words[t]) for c, t in documented] == list(feed.FEED_SCHEMA.items())


# The columns of each schema version, in order. A change to feed.FEED_SCHEMA without a new entry here (and a
# new SCHEMA_VERSION: docs/METRICS_FEED.md says which number) fails the test below: dashboards bind to these.
RELEASED_SCHEMAS = {
    "3.0": (
        "schema_version:String audit_id:String period:String level:String group_key:String measure_id:String "
        "numerator:Int64 denominator:Int64 rate:Float64 ci_low:Float64 ci_high:Float64 suppressed:Boolean "
        "direction:String period_type:String period_start:String period_end:String status:String data_through:Date"
    ),
    "3.1": (
        "schema_version:String audit_id:String period:String level:String group_key:String measure_id:String "
        "numerator:Int64 denominator:Int64 rate:Float64 ci_low:Float64 ci_high:Float64 suppressed:Boolean "
        "direction:String period_type:String period_start:String period_end:String status:String data_through:Date "
        "look_back:String verified_from:Date"
    ),
    # metrics.json's provider_joint_check; the columns of 3.1
    "3.2": (
        "schema_version:String audit_id:String period:String level:String group_key:String measure_id:String "
        "numerator:Int64 denominator:Int64 rate:Float64 ci_low:Float64 ci_high:Float64 suppressed:Boolean "
        "direction:String period_type:String period_start:String period_end:String status:String data_through:Date "
        "look_back:String verified_from:Date"
    ),
    # metrics.json's site_timezone, reasons' directions, the disclosure's scope; the columns of 3.1
    "3.3": (
        "schema_version:String audit_id:String period:String level:String group_key:String measure_id:String "
        "numerator:Int64 denominator:Int64 rate:Float64 ci_low:Float64 ci_high:Float64 suppressed:Boolean "
        "direction:String period_type:String period_start:String period_end:String status:String data_through:Date "
        "look_back:String verified_from:Date"
    ),
}


def test_a_column_change_needs_a_schema_version():
    columns = " ".join(f"{c}:{t}" for c, t in feed.FEED_SCHEMA.items())
    assert RELEASED_SCHEMAS.get(feed.SCHEMA_VERSION) == columns, (
        f"the feed's columns are not those of schema {feed.SCHEMA_VERSION}: bump feed.SCHEMA_VERSION (docs/METRICS_FEED.md"
        " says which number), record the new columns in RELEASED_SCHEMAS and describe the change under 'Changes'"
    )
    assert f"* **{feed.SCHEMA_VERSION}**" in FEED_DOC


def test_feed_threshold_from_the_config_through_the_cli(tmp_path):
    inp = write_small_input(tmp_path / "in")
    cfg = tmp_path / "c.toml"
    cfg.write_text("[feed]\nmin_cell_count = 1\n")
    for name, extra in (("default", []), ("one", ["--config", cfg])):
        result = run_cli("run", "--input", inp, "--out", tmp_path / name, "--no-validate", *extra)
        assert result.returncode == 0, result.stderr
    default = pl.read_parquet(tmp_path / "default" / "csf_leak" / "metrics.parquet")
    one = pl.read_parquet(tmp_path / "one" / "csf_leak" / "metrics.parquet")
    assert default.filter(pl.col("numerator") > 0).height == 0  # 2 cases, 4 orders: every count is small
    assert not one["suppressed"].any() and one.filter(pl.col("numerator") > 0).height > 0
    summary = json.loads((tmp_path / "one" / "csf_leak" / "metrics.json").read_text())
    assert summary["min_cell_count"] == 1
    # the rule as the feed's readers get it says it is off (it said "no count from 1 to 0 is released")
    assert "small-cell rule is off" in summary["disclosure"] and "1 to 0" not in summary["disclosure"]
    # the feed's own rule, not the report's framing of it (it opened "This report is an internal document")
    assert summary["disclosure"].startswith("The metrics feed (metrics.csv / .parquet) is shared beyond the committee")


@pytest.mark.parametrize(
    ("k", "said"),
    [
        (0, "every count is released"),
        (1, "every count is released"),
        (2, "no count of 1 is released"),
        (11, "no count from 1 to 10 is released"),
    ],
)
def test_the_disclosure_paragraph_states_the_rule_the_threshold_sets(k, said):
    """metrics.json's `disclosure` and the report's methods: at 1 (or 0) nothing is withheld, and the paragraph read
    "no count from 1 to 0 (or -1) is released, neither directly nor by subtraction", a rule that seemed on."""
    text = feed.methods_text(k)
    assert said in text and text.endswith(feed.disclosure_text(k)) and said in feed.disclosure_text(k)
    assert " to 0 " not in text and " to -1 " not in text and " 1 to 1 " not in text
    # the rule weighs one feed (the dashboard analyst's review: two months' feeds together gave a withheld 2 away,
    # and the paragraph shipped with each feed claimed "neither directly nor by subtraction" without a scope)
    assert (k > 1) == feed.disclosure_text(k).endswith(
        "feeds of two runs kept side by side can give a withheld count away by difference, so an archive of feeds is not shared."
    )


def test_a_rerun_without_input_keeps_the_site_code_map(tmp_path):
    """Re-auditing the warehouse (no --input) gives the feed and verdicts of the run that loaded the data: the
    site's local_code_map.csv came from the input folder, and without it the site's codes fell back to
    unmapped, their orders to not_evaluable, and the feed's numbers moved with no data changed."""
    inp = write_small_input(tmp_path / "in")
    orders = (inp / "imaging_orders.csv").read_text(encoding="utf-8")
    (inp / "imaging_orders.csv").write_text(orders.replace(",72148,", ",LOC-DSM,"), encoding="utf-8")
    (inp / "local_code_map.csv").write_bytes((ROOT / "examples" / "local_code_map.csv").read_bytes())
    cfg = tmp_path / "c.toml"
    cfg.write_text("[feed]\nmin_cell_count = 1\n")
    wh = tmp_path / "wh.duckdb"
    for name, extra in (("loaded", ["--input", inp]), ("again", [])):
        result = run_cli("run", *extra, "--out", tmp_path / name, "--warehouse", wh, "--config", cfg, "--no-validate")
        assert result.returncode == 0, result.stderr
    loaded, again = tmp_path / "loaded" / "csf_leak", tmp_path / "again" / "csf_leak"
    verdicts = pl.read_csv(loaded / "audited_orders.csv").filter(pl.col("order_code") == "LOC-DSM")["verdict"].to_list()
    assert verdicts and "not_evaluable" not in verdicts
    for name in ("audited_orders.csv", "metrics.csv", "metrics.parquet"):
        assert (again / name).read_bytes() == (loaded / name).read_bytes(), name
    files = json.loads((again / "run.json").read_text(encoding="utf-8"))["reference_files"]
    assert {"name": "local_code_map", "source": "warehouse", "path": "local_code_map.csv"} in files


def feed_without_departments(tmp_path: Path, blank: str = "", **departments: str) -> pl.DataFrame:
    """The CSF-leak feed of write_small_input's extracts, every count released (min_cell_count 1), where the
    departments ``departments`` names (extract -> department, e.g. ``imaging_orders="Emergency"``) are left empty
    (the field's text: ``blank``)."""
    inp = write_small_input(tmp_path / "in")
    for extract, department in departments.items():
        text = (inp / f"{extract}.csv").read_text(encoding="utf-8")
        (inp / f"{extract}.csv").write_text(text.replace(f",{department},", f",{blank},"), encoding="utf-8")
    cfg = tmp_path / "c.toml"
    cfg.write_text("[feed]\nmin_cell_count = 1\n")
    result = run_cli("run", "--input", inp, "--out", tmp_path / "out", "--config", cfg, "--no-validate")
    assert result.returncode == 0, result.stderr
    return pl.read_parquet(tmp_path / "out" / "csf_leak" / "metrics.parquet")


@pytest.mark.parametrize("blank", ["", '""', '"   "', "\t"], ids=["empty", "quoted", "spaces", "tab"])
def test_an_order_without_a_department_is_under_the_documented_group_key(tmp_path, blank):
    """Empty, a quoted "" or white space alone: no department, not a department named "" beside `(not recorded)`."""
    fed = feed_without_departments(tmp_path, blank, imaging_orders="Emergency")
    departments = set(fed.filter(pl.col("level") == "department")["group_key"].to_list())
    assert departments == {"Neurology", "(not recorded)"}
    assert "`(not recorded)` where the order has none" in FEED_DOC


def test_readme_and_docs_name_the_current_schema():
    assert feed.SCHEMA_VERSION == "3.3"
    assert f"schema version {feed.SCHEMA_VERSION}" in README
    assert f"(schema version {feed.SCHEMA_VERSION})" in FEED_DOC and "period_type" in FEED_DOC
    assert "| `audit_id` | string | 2.0:" in FEED_DOC and "* **2.0**:" in FEED_DOC
    assert Path(ROOT / "docs" / "METRICS_FEED.md").is_file()


def test_units_without_a_department_are_in_a_department_row_so_the_hospital_is_their_sum(tmp_path):
    """The small-cell passes take the hospital's count for its departments' sum (and its providers'): a case whose
    first imaging order names no department, and whose index procedure names none either, is counted under
    `(not recorded)`, not by the hospital alone (tests/test_feed_combined.py: what the feed does where it is not)."""
    fed = feed_without_departments(tmp_path, imaging_orders="Neurology", procedures="Pain clinic")
    case = fed.filter((pl.col("measure_id") == "first_imaging_right_study") & (pl.col("period") == "2025-06"))
    # two cases: MRN-1's (no department anywhere now) and MRN-2's (Emergency); the extracts name no provider
    assert case.select("level", "group_key", "numerator", "denominator").sort("level", "group_key").rows() == [
        ("department", "(not recorded)", 1, 1),
        ("department", "Emergency", 0, 1),
        ("overall", "all", 1, 2),
        ("provider", "(not recorded)", 1, 2),
    ]
    summed = (
        fed.filter(pl.col("level") != "overall")
        .group_by("period", "level", "measure_id")
        .agg(pl.col("numerator", "denominator").sum())
        .join(fed.filter(pl.col("level") == "overall"), on=["period", "measure_id"], suffix="_all")
    )
    assert summed.height > 0
    assert summed.filter(
        (pl.col("numerator") != pl.col("numerator_all")) | (pl.col("denominator") != pl.col("denominator_all"))
    ).is_empty()


def test_every_audit_s_measures_are_in_the_docs_measures_tables():
    """An analyst charts a measure the docs define: every audit's manifest measures have their row in docs/METRICS_FEED.md's
    Measures section, each in its audit's own table (the low back pain audit's had none: its ids were defined only in
    its manifest and DESIGN.md), and the engine's reason_<code> row in each."""
    from pipeline import audits

    section = FEED_DOC[FEED_DOC.index("## Measures") :].split("\n## ")[0]
    for audit in audits.discover():
        table = section[section.index(f"`audit_id = '{audit.id}'`") :].split("\n\n|")[1].split("\n\n")[0]
        rows = set(re.findall(r"^\| `(\w+|reason_<code>)` \|", "|" + table, re.M)) - {"measure_id"}  # less its header
        assert rows == {m.id for m in audit.measures} | {"reason_<code>"}, (audit.id, rows)
