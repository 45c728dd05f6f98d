"""Rates, Wilson intervals, p-chart and funnel limits against hand-computed values."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from pipeline.report.measure import (
    METRICS_SCHEMA,
    build_metrics,
    directions,
    funnel_limits,
    funnel_status,
    p_chart,
    wilson_interval,
    with_rates,
)


def _con(rows):
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE mart_metric_counts (period VARCHAR, level VARCHAR, group_key VARCHAR, "
        "measure_id VARCHAR, numerator BIGINT, denominator BIGINT)"
    )
    con.executemany("INSERT INTO mart_metric_counts VALUES (?, ?, ?, ?, ?, ?)", rows)
    # what the audit declares: its measures' directions (manifest) and its reasons' verdicts (rules.csv)
    con.execute(
        "CREATE TABLE ref_measures AS SELECT * FROM (VALUES "
        "('first_imaging_right_study', 'case', 'first_imaging_right_study', 'higher_is_better'), "
        "('inappropriate_order_rate', 'order', 'verdict = ''inappropriate''', 'lower_is_better')) "
        "AS m(measure_id, unit, numerator, direction)"
    )
    con.execute(
        "CREATE TABLE ref_rules AS SELECT * FROM (VALUES ('mri_complete_spine_wwo', 'appropriate'), "
        "('premature', 'inappropriate')) AS r(reason_code, verdict)"
    )
    return con


def test_wilson_hand_computed():
    # Wilson 95%: (p + z^2/2n +/- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), z = 1.959964
    low, high = wilson_interval([3, 0, 10, 20], [10, 10, 10, 100])
    assert low[0] == pytest.approx(0.1078, abs=5e-5) and high[0] == pytest.approx(0.6032, abs=5e-5)
    assert low[1] == pytest.approx(0.0, abs=1e-12) and high[1] == pytest.approx(0.2775, abs=5e-5)
    assert low[2] == pytest.approx(0.7225, abs=5e-5) and high[2] == pytest.approx(1.0, abs=1e-12)
    assert low[3] == pytest.approx(0.1334, abs=5e-5) and high[3] == pytest.approx(0.2888, abs=5e-5)


def test_wilson_zero_denominator_is_nan():
    low, high = wilson_interval([0], [0])
    assert math.isnan(low[0]) and math.isnan(high[0])


def test_wilson_is_statsmodels_closed_form():
    from statsmodels.stats.proportion import proportion_confint

    num = np.array([0, 1, 3, 5, 10, 50, 99, 100, 7, 0])
    den = np.array([1, 1, 10, 7, 10, 100, 100, 100, 9999, 3])
    for alpha in (0.05, 0.1, 0.01):
        low, high = wilson_interval(num, den, alpha=alpha)
        ref_low, ref_high = proportion_confint(num, den, alpha=alpha, method="wilson")
        assert np.allclose(low, np.clip(ref_low, 0, 1), atol=1e-12, rtol=0)
        assert np.allclose(high, np.clip(ref_high, 0, 1), atol=1e-12, rtol=0)


def test_wilson_bounds_are_clamped_proportions():
    low, high = wilson_interval([0, 0, 7, 1, 3], [7, 1, 7, 1, 10])
    assert (low >= 0).all() and (high <= 1).all()
    assert low[0] == 0.0 and low[1] == 0.0  # exactly: the formula leaves 5.6e-17 there
    assert high[2] == 1.0 and high[3] == 1.0
    assert 0 < low[4] < high[4] < 1


def test_build_metrics_every_cell_rated_nothing_withheld():
    con = _con(
        [
            ("2026-10", "overall", "all", "inappropriate_order_rate", 20, 100),
            ("2026-10", "overall", "all", "first_imaging_right_study", 0, 100),
            ("2026-10", "department", "Neuro", "inappropriate_order_rate", 3, 10),  # small denominator: still rated
            ("2026-10", "department", "Anes", "inappropriate_order_rate", 5, 100),  # small numerator: still rated
            ("2026-10", "provider", "P1", "inappropriate_order_rate", 11, 11),
            ("2026-10", "provider", "P2", "premature_order_rate", 0, 0),
            ("2026-10", "overall", "all", "reason_mri_complete_spine_wwo", 40, 100),
        ]
    )
    m = build_metrics(con)
    assert m.columns == list(METRICS_SCHEMA) and "suppressed" not in m.columns
    assert m.schema == pl.Schema(METRICS_SCHEMA)
    row = {(r["level"], r["group_key"], r["measure_id"]): r for r in m.to_dicts()}

    r = row[("overall", "all", "inappropriate_order_rate")]
    assert (r["rate"], r["direction"]) == (0.2, "lower_is_better")
    assert r["ci_low"] == pytest.approx(0.1334, abs=5e-5) and r["ci_high"] == pytest.approx(0.2888, abs=5e-5)
    r = row[("overall", "all", "first_imaging_right_study")]
    assert (r["rate"], r["direction"]) == (0.0, "higher_is_better")
    assert r["ci_low"] == 0.0 and r["ci_high"] == pytest.approx(0.0370, abs=5e-5)  # 0/100: 3.84/103.84
    # small cells keep their rate and interval: the report marks them, the feed (pipeline.report.feed) withholds them
    r = row[("department", "Neuro", "inappropriate_order_rate")]
    assert r["rate"] == 0.3 and r["ci_low"] == pytest.approx(0.1078, abs=5e-5) and r["ci_high"] == pytest.approx(0.6032, abs=5e-5)
    r = row[("provider", "P2", "premature_order_rate")]
    assert r["rate"] is None and r["ci_low"] is None and r["numerator"] == 0  # nothing to rate over 0
    assert row[("provider", "P1", "inappropriate_order_rate")]["rate"] == 1.0
    assert row[("overall", "all", "reason_mri_complete_spine_wwo")]["direction"] == "higher_is_better"
    assert m.equals(m.sort(["period", "level", "group_key", "measure_id"]))


def test_with_rates_on_any_counts():
    frame = with_rates(pl.DataFrame({"numerator": [3, 0], "denominator": [10, 0]}))
    assert frame["rate"].to_list()[0] == pytest.approx(0.3) and frame["rate"][1] is None
    assert frame["ci_low"][0] == pytest.approx(0.1078, abs=5e-5) and frame["ci_high"][1] is None


def test_p_chart_hand_computed():
    monthly = pl.DataFrame(
        {"period": ["2026-03", "2026-01", "2026-02"], "numerator": [50, 5, 20], "denominator": [100, 100, 100]}
    )
    pc = p_chart(monthly)
    assert pc["period"].to_list() == ["2026-01", "2026-02", "2026-03"]
    # p-bar = 75/300 = 0.25; sigma = sqrt(0.25 * 0.75 / 100) = 0.0433013
    assert pc["centre"].to_list() == pytest.approx([0.25] * 3)
    assert pc["lcl"][0] == pytest.approx(0.120096, abs=1e-6)
    assert pc["ucl"][0] == pytest.approx(0.379904, abs=1e-6)
    assert pc["outside"].to_list() == [True, False, True]


def test_p_chart_limits_vary_with_n_and_clip_at_zero():
    pc = p_chart(pl.DataFrame({"period": ["a", "b"], "numerator": [1, 10], "denominator": [10, 90]}))
    # p-bar = 11/100 = 0.11; n=10: sigma = 0.098944, lcl = max(0, 0.11 - 0.296833) = 0, ucl = 0.406833
    assert pc["lcl"][0] == 0.0
    assert pc["ucl"][0] == pytest.approx(0.406833, abs=1e-6)
    # n=90: sigma = 0.032981, limits 0.011056 .. 0.208944
    assert pc["lcl"][1] == pytest.approx(0.011056, abs=1e-6)
    assert pc["ucl"][1] == pytest.approx(0.208944, abs=1e-6)
    assert not pc["outside"].any()


def test_funnel_limits_hand_computed():
    lim = funnel_limits(0.2, [100, 0])
    # se = sqrt(0.2 * 0.8 / 100) = 0.04; 95%: 0.2 +/- 1.96 se; 99.8%: 0.2 +/- 3.0902 se
    assert lim["lo95"][0] == pytest.approx(0.121601, abs=1e-6)
    assert lim["hi95"][0] == pytest.approx(0.278399, abs=1e-6)
    assert lim["lo998"][0] == pytest.approx(0.076391, abs=1e-6)
    assert lim["hi998"][0] == pytest.approx(0.323609, abs=1e-6)
    assert lim["hi95"][1] is None  # no limits without a denominator
    assert funnel_status([0.2, 0.3, 0.4, 0.1, 0.05], [100] * 5, 0.2) == [
        "within limits",
        "above 95% limit",
        "above 99.8% limit",
        "below 95% limit",
        "below 99.8% limit",
    ]


def test_p_chart_centre_and_limits_come_from_the_final_months():
    """A provisional month's figures can still change: it is judged against the final months' centre and limits and
    does not move them. Counted in its own centre, 35 of 100 pulled p-bar to 23.75% and its upper limit to 36.5%,
    hiding its own signal."""
    monthly = pl.DataFrame(
        {"period": ["2026-01", "2026-02", "2026-03", "2026-04"], "numerator": [20, 20, 20, 35], "denominator": [100] * 4}
    )
    pc = p_chart(monthly, frozenset({"2026-04"}))
    # p-bar = 60/300 = 0.2 (2026-04 left out); sigma = sqrt(0.2 * 0.8 / 100) = 0.04: limits 0.08 .. 0.32 every month
    assert pc["centre"].to_list() == pytest.approx([0.2] * 4)
    assert pc["lcl"].to_list() == pytest.approx([0.08] * 4)
    assert pc["ucl"].to_list() == pytest.approx([0.32] * 4)
    assert pc["baseline"].to_list() == [True, True, True, False]
    assert pc["outside"].to_list() == [False, False, False, True]
    pooled = p_chart(monthly)  # the rule before: every month in the centre, 2026-04 inside its own limits
    assert pooled["centre"][0] == pytest.approx(0.2375) and pooled["ucl"][3] == pytest.approx(0.365165, abs=1e-6)
    assert pooled["outside"].to_list() == [False] * 4


def test_p_chart_with_no_final_month_pools_the_provisional_ones():
    """While no final month has data (a final month with N = 0 counts for nothing), the centre is every month's."""
    monthly = pl.DataFrame({"period": ["2026-03", "2026-04", "2026-05"], "numerator": [0, 10, 30], "denominator": [0, 100, 100]})
    pc = p_chart(monthly, frozenset({"2026-04", "2026-05"}))
    # p-bar = 40/200 = 0.2: limits 0.08 .. 0.32
    assert pc["centre"].to_list() == pytest.approx([0.2] * 3)
    assert pc["baseline"].to_list() == [False, True, True]
    assert pc["lcl"][0] is None and pc["lcl"][1] == pytest.approx(0.08) and pc["ucl"][2] == pytest.approx(0.32)
    assert pc["outside"].to_list() == [False, False, False]


def test_a_reason_s_direction_is_its_verdict_measure_s_else_its_verdict_s():
    """reason_<code>'s direction: the order measure counting its verdict's orders says it (a review measure declared
    neutral makes its reasons neutral); without one, appropriate is higher-is-better, excluded neutral (a cancelled
    order or a red flag is neither better nor worse: the low back pain feed had its cancelled and red-flag reasons
    lower-is-better beside its neutral excluded-order rate), any other verdict lower-is-better."""
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE ref_measures AS SELECT * FROM (VALUES "
        "('review_order_rate', 'order', 'verdict = ''review''', 'neutral'), "
        "('early_rate', 'order', 'verdict = ''inappropriate''', 'lower_is_better'), "
        "('episodes_ok', 'case', 'outcome = ''ok''', 'higher_is_better')) AS m(measure_id, unit, numerator, direction)"
    )
    verdicts = {
        "wwo": "appropriate",
        "cancelled": "excluded",
        "early": "inappropriate",
        "dsm": "review",
        "unmapped": "not_evaluable",
    }
    rules = ", ".join(f"('{code}', '{verdict}')" for code, verdict in verdicts.items())
    con.execute(f"CREATE TABLE ref_rules AS SELECT * FROM (VALUES {rules}) AS r(reason_code, verdict)")
    assert directions(con) == {
        "reason_wwo": "higher_is_better",
        "reason_cancelled": "neutral",
        "reason_early": "lower_is_better",
        "reason_dsm": "neutral",
        "reason_unmapped": "lower_is_better",
        "review_order_rate": "neutral",
        "early_rate": "lower_is_better",
        "episodes_ok": "higher_is_better",
    }


def test_the_decks_feeds_colour_an_exclusion_s_reasons_as_its_rate(deck_runs):
    """Both audits' feeds as the CLI writes them: an excluded verdict's reasons are neutral (the low back pain
    audit's excluded_order_rate is), the others as their verdict's measure."""
    out = Path(deck_runs["runs"]["combined"]["out"])
    for audit_id, audit in deck_runs["audits"].items():
        fed = pl.read_parquet(out / audit_id / "metrics.parquet")
        shown = dict(fed.select("measure_id", "direction").unique().iter_rows())
        with open(audit.rules_csv, newline="", encoding="utf-8") as fh:
            verdict_of = {f"reason_{r['reason_code']}": r["verdict"] for r in csv.DictReader(fh)}
        for reason, verdict in verdict_of.items():
            if reason in shown:
                expected = {"appropriate": "higher_is_better", "excluded": "neutral"}.get(verdict, "lower_is_better")
                assert shown[reason] == expected, (audit_id, reason)
        assert any(verdict_of.get(m) == "excluded" for m in shown), audit_id  # the deck has an exclusion's reason
