"""Rates, 95% Wilson intervals, p-chart and funnel limits.

Reads ``mart_metric_counts`` and returns the internal metrics frame: every cell with its rate and
interval (the report shows them all; the shared feed's small-cell rule is ``pipeline.report.feed``).
Everything is vectorised over numpy/Polars columns: no Python loop over rows.
"""

from __future__ import annotations

from statistics import NormalDist

import duckdb
import numpy as np
import polars as pl

from pipeline import audits, db

Z_95 = 1.959963984540054  # two-sided 95%
Z_998 = 3.090232306167813  # two-sided 99.8%

METRICS_SCHEMA: dict[str, pl.DataType] = {
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


def wilson_interval(numerator, denominator, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval, NaN where the denominator is 0; clamped to [0, 1].

    The closed form (Wilson 1927), the same as statsmodels' ``proportion_confint(method="wilson")``
    (tests/test_measure.py compares them) without importing statsmodels (a second of start-up).
    """
    num = np.asarray(numerator, dtype=float)
    den = np.asarray(denominator, dtype=float)
    z = Z_95 if alpha == 0.05 else NormalDist().inv_cdf(1 - alpha / 2)
    ok = den > 0
    n = np.where(ok, den, 1.0)
    p = num / n
    scale = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / scale
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / scale
    # exactly 0 for 0 of n and 1 for n of n (the formula leaves 2.8e-17 of floating-point noise there)
    low = np.where(ok, np.where(num <= 0, 0.0, np.clip(centre - half, 0.0, 1.0)), np.nan)
    high = np.where(ok, np.where(num >= den, 1.0, np.clip(centre + half, 0.0, 1.0)), np.nan)
    return low, high


# a reason's direction by its verdict, where no measure of the audit counts that verdict's orders: an exclusion
# (cancelled, a red flag) is a share to show, neither better nor worse, as the audits' excluded rates declare
REASON_DIRECTIONS = {"appropriate": "higher_is_better", "excluded": "neutral"}  # any other verdict: lower is better


def directions(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """measure_id -> direction: the audit's declared measures (ref_measures, from its manifest), and a reason
    share ``reason_<code>`` as the order measure counting its verdict's orders (numerator ``verdict = '<v>'``),
    else as its verdict says (``REASON_DIRECTIONS``): the low back pain feed coloured its cancelled and red-flag
    reasons lower-is-better beside its neutral excluded-order rate, the same orders."""
    declared = (
        con.execute("SELECT measure_id, unit, numerator, direction FROM ref_measures").fetchall()
        if db.has_table(con, "ref_measures")
        else []
    )
    counting: dict[str, str] = {}
    for _, unit, numerator, direction in declared:
        if counts := audits.counted_verdict(unit, numerator):
            counting.setdefault(counts, direction)
    out = {}
    if db.has_table(con, "ref_rules"):
        for code, verdict in con.execute("SELECT reason_code, verdict FROM ref_rules").fetchall():
            out[f"reason_{code}"] = counting.get(verdict, REASON_DIRECTIONS.get(verdict, "lower_is_better"))
    out.update({measure_id: direction for measure_id, _, _, direction in declared})
    return out


def build_metrics(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Every cell of ``mart_metric_counts`` with its rate and Wilson 95% CI (wherever the denominator
    is above 0) and direction; nothing withheld (the feed applies its own rule, ``pipeline.report.feed``)."""
    counts = con.sql(
        "SELECT CAST(period AS VARCHAR) AS period, CAST(level AS VARCHAR) AS level, "
        "CAST(group_key AS VARCHAR) AS group_key, CAST(measure_id AS VARCHAR) AS measure_id, "
        "CAST(numerator AS BIGINT) AS numerator, CAST(denominator AS BIGINT) AS denominator "
        "FROM mart_metric_counts"
    ).pl()
    out = with_rates(counts).with_columns(
        pl.col("measure_id").replace_strict(directions(con), default="lower_is_better", return_dtype=pl.String).alias("direction")
    )
    return out.select([pl.col(c).cast(t) for c, t in METRICS_SCHEMA.items()]).sort(
        ["period", "level", "group_key", "measure_id"], nulls_last=True
    )


def with_rates(counts: pl.DataFrame) -> pl.DataFrame:
    """``counts`` with rate, ci_low and ci_high from its numerator and denominator (null where the
    denominator is 0): one home for the rate of a cell, monthly or summed over months."""
    num = counts["numerator"].fill_null(0).to_numpy()
    den = counts["denominator"].fill_null(0).to_numpy()
    low, high = wilson_interval(num, den)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
    return counts.with_columns(
        pl.Series("rate", rate, dtype=pl.Float64).fill_nan(None),
        pl.Series("ci_low", low, dtype=pl.Float64).fill_nan(None),
        pl.Series("ci_high", high, dtype=pl.Float64).fill_nan(None),
    )


def p_chart(monthly: pl.DataFrame, provisional: frozenset[str] = frozenset()) -> pl.DataFrame:
    """P-chart: centre line p-bar (pooled) and 3-sigma limits per month; ``outside`` flags special causes.

    Input: one row per month with ``period``, ``numerator``, ``denominator``. Months with a zero
    denominator keep null limits and are never flagged. The centre is pooled over the final months only
    (``baseline``): a month in ``provisional`` can still change as later data arrives, so it is judged
    against limits it does not move (a month counted in its own centre pulls the line towards itself and
    hides its own signal). While no final month has data, every month with data makes the centre.
    """
    df = monthly.select("period", "numerator", "denominator").sort("period")
    with_data = df.filter(pl.col("denominator") > 0)
    final = with_data.filter(~pl.col("period").is_in(list(provisional)))
    base = final if final.height else with_data
    df = df.with_columns(pl.col("period").is_in(base["period"].implode()).alias("baseline"))
    total_den = base["denominator"].sum() or 0
    p_bar = (base["numerator"].sum() / total_den) if total_den else None
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
