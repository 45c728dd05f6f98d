"""Rates, 95% Wilson intervals, p-chart and funnel limits.

Reads ``mart_metric_counts`` and returns every cell with its rate and interval: the internal
frame the report, department pages, index and workbook print in full (internal documents show
every rate with n / N). Privacy suppression for the shared feed is applied to this frame where
the feed is written, never here. Everything is vectorised over numpy/Polars columns.
"""

from __future__ import annotations

import csv

import duckdb
import numpy as np
import polars as pl

from pipeline.resources import REFERENCE_DIR

SCHEMA_VERSION = "1.0"
Z_95 = 1.959963984540054  # two-sided 95%
Z_998 = 3.090232306167813  # two-sided 99.8%

# the internal frame: every rate and interval wherever the denominator is above zero
METRICS_SCHEMA: dict[str, pl.DataType] = {
    "schema_version": pl.String(),
    "period": pl.String(),
    "level": pl.String(),
    "group_key": pl.String(),
    "measure_id": pl.String(),
    "numerator": pl.Int64(),
    "denominator": pl.Int64(),
    "rate": pl.Float64(),
    "ci_low": pl.Float64(),
    "ci_high": pl.Float64(),
    "direction": pl.String(),
}
# the shared feed's columns: the internal ones and ``suppressed`` before ``direction``
FEED_SCHEMA: dict[str, pl.DataType] = {
    **{c: t for c, t in METRICS_SCHEMA.items() if c != "direction"},
    "suppressed": pl.Boolean(),
    "direction": pl.String(),
}

# Measures where a larger share is the goal; every other measure is lower-is-better.
HIGHER_IS_BETTER = {"first_imaging_right_study"}


def wilson_interval(numerator, denominator, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval (statsmodels ``method="wilson"``); NaN where the denominator is 0."""
    num = np.asarray(numerator, dtype=float)
    den = np.asarray(denominator, dtype=float)
    ok = den > 0
    low = np.full(num.shape, np.nan)
    high = np.full(num.shape, np.nan)
    if ok.any():
        # imported here: statsmodels takes about a second to import, and the chart worker (which
        # imports this module for funnel_limits) never needs it
        from statsmodels.stats.proportion import proportion_confint  # noqa: PLC0415

        lo, hi = proportion_confint(num[ok], den[ok], alpha=alpha, method="wilson")
        low[ok], high[ok] = lo, hi
    return low, high


def _appropriate_reasons(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Reason codes whose verdict is 'appropriate' (their share is higher-is-better)."""
    try:
        rows = con.execute("SELECT reason_code FROM ref_rules WHERE verdict = 'appropriate'").fetchall()
        return {r[0] for r in rows}
    except duckdb.CatalogException:
        with open(REFERENCE_DIR / "rules.csv", newline="", encoding="utf-8") as fh:
            return {r["reason_code"] for r in csv.DictReader(fh) if r["verdict"] == "appropriate"}


def with_rates(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` (numerator, denominator) with ``rate``, ``ci_low``, ``ci_high`` (Wilson 95%); null where N is 0."""
    num = frame["numerator"].fill_null(0).to_numpy()
    den = frame["denominator"].fill_null(0).to_numpy()
    low, high = wilson_interval(num, den)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
    return frame.with_columns(
        pl.Series("rate", rate, dtype=pl.Float64).fill_nan(None),
        pl.Series("ci_low", low, dtype=pl.Float64).fill_nan(None),
        pl.Series("ci_high", high, dtype=pl.Float64).fill_nan(None),
    )


def build_metrics(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Every cell of ``mart_metric_counts`` with its rate, Wilson 95% CI and direction (no suppression)."""
    counts = con.sql(
        "SELECT CAST(period AS VARCHAR) AS period, CAST(level AS VARCHAR) AS level, "
        "CAST(group_key AS VARCHAR) AS group_key, CAST(measure_id AS VARCHAR) AS measure_id, "
        "CAST(numerator AS BIGINT) AS numerator, CAST(denominator AS BIGINT) AS denominator "
        "FROM mart_metric_counts"
    ).pl()
    higher = HIGHER_IS_BETTER | {f"reason_{r}" for r in _appropriate_reasons(con)}
    out = with_rates(counts).with_columns(
        pl.lit(SCHEMA_VERSION).alias("schema_version"),
        pl.when(pl.col("measure_id").is_in(sorted(higher)))
        .then(pl.lit("higher_is_better"))
        .otherwise(pl.lit("lower_is_better"))
        .alias("direction"),
    )
    return out.select([pl.col(c).cast(t) for c, t in METRICS_SCHEMA.items()]).sort(
        ["period", "level", "group_key", "measure_id"], nulls_last=True
    )


def p_chart(monthly: pl.DataFrame) -> pl.DataFrame:
    """P-chart: centre line p-bar (pooled) and 3-sigma limits per month; ``outside`` flags special causes.

    Input: one row per month with ``period``, ``numerator``, ``denominator``. Months with a zero
    denominator keep null limits and are never flagged.
    """
    df = monthly.select("period", "numerator", "denominator").sort("period")
    total_den = df["denominator"].sum() or 0
    p_bar = (df["numerator"].sum() / total_den) if total_den else None
    if p_bar is None:
        return df.with_columns(pl.lit(None, pl.Float64).alias(c) for c in ("rate", "centre", "sigma", "lcl", "ucl")).with_columns(
            pl.lit(False).alias("outside")
        )
    n = pl.col("denominator").cast(pl.Float64)
    sigma = pl.when(n > 0).then((p_bar * (1 - p_bar) / n).sqrt())
    return (
        df.with_columns(
            pl.when(n > 0).then(pl.col("numerator") / n).alias("rate"),
            pl.lit(p_bar).alias("centre"),
            sigma.alias("sigma"),
        )
        .with_columns(
            (pl.col("centre") - 3 * pl.col("sigma")).clip(0.0, 1.0).alias("lcl"),
            (pl.col("centre") + 3 * pl.col("sigma")).clip(0.0, 1.0).alias("ucl"),
        )
        .with_columns(((pl.col("rate") > pl.col("ucl")) | (pl.col("rate") < pl.col("lcl"))).fill_null(False).alias("outside"))
    )


def funnel_limits(overall_rate: float, denominators) -> pl.DataFrame:
    """Funnel-plot control limits around ``overall_rate`` for each denominator.

    Normal approximation to the binomial (Spiegelhalter 2005): p0 +/- z * sqrt(p0 (1 - p0) / n),
    z = 1.960 (95%) and 3.090 (99.8%), clipped to [0, 1]. Columns: denominator, lo95, hi95,
    lo998, hi998.
    """
    n = np.asarray(denominators, dtype=float)
    p0 = float(overall_rate)
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.where(n > 0, np.sqrt(p0 * (1 - p0) / np.where(n > 0, n, 1)), np.nan)
    return pl.DataFrame(
        {
            "denominator": n,
            "lo95": np.clip(p0 - Z_95 * se, 0, 1),
            "hi95": np.clip(p0 + Z_95 * se, 0, 1),
            "lo998": np.clip(p0 - Z_998 * se, 0, 1),
            "hi998": np.clip(p0 + Z_998 * se, 0, 1),
        }
    ).fill_nan(None)


def funnel_status(rate, denominator, overall_rate: float) -> list[str]:
    """Where each group's rate falls against the funnel: 'within', 'above 95%' ... (not a rank)."""
    lim = funnel_limits(overall_rate, denominator)
    r = np.asarray(rate, dtype=float)
    out = np.full(r.shape, "within limits", dtype=object)
    out[r > lim["hi95"].to_numpy()] = "above 95% limit"
    out[r > lim["hi998"].to_numpy()] = "above 99.8% limit"
    out[r < lim["lo95"].to_numpy()] = "below 95% limit"
    out[r < lim["lo998"].to_numpy()] = "below 99.8% limit"
    out[np.isnan(r)] = ""
    return out.tolist()
