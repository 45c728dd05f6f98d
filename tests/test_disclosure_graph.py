"""The time pass's graph shortcuts agree with the linear algebra they replace.

``pipeline.report.disclosure`` decides which withheld cells of a series the released ones determine,
and which released cells such a derivation uses, from a graph over running totals (connected
components, electrical flow). Here both answers are checked against the textbook computation, a
pseudo-inverse of the known cells' month vectors, on random patterns over a real feed's periods.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.months import label as month_label
from pipeline.report import disclosure, feed

EPS = 1e-8


def feed_periods(n_months: int) -> tuple[list[str], np.ndarray]:
    """The periods a feed over ``n_months`` months has (months, quarters, rolling windows, the run), as a
    0/1 matrix over the months, in the grid's column order."""
    months = [month_label(24 * 12 + i) for i in range(n_months)]
    windows = feed.period_windows(months, "all")
    index = {m: i for i, m in enumerate(months)}
    periods = {p: (kind, [index[m] for m in ms]) for p, (kind, ms) in windows.items()}
    order = sorted(periods, key=lambda p: (disclosure.PERIOD_PREFERENCE[periods[p][0]], p))
    cover = disclosure._month_cover(periods)
    return order, np.array([cover[p] for p in order])


def by_pseudo_inverse(withheld: np.ndarray, cover: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pattern: withheld cells in the span of the known ones, and the known cells with a nonzero part in
    the minimum-norm combinations that give them."""
    known_rows = cover[None, :, :] * (~withheld)[:, :, None]
    pinv = np.linalg.pinv(known_rows, rcond=1e-10)
    residual = np.abs(cover[None] - cover[None] @ pinv @ known_rows).max(axis=2)
    determined = withheld & (residual < EPS)
    coef = cover[None] @ pinv  # (patterns, cell, known cell)
    involved = ((np.abs(coef) > EPS) & determined[:, :, None]).any(axis=1) & ~withheld
    return determined, involved


@pytest.mark.parametrize(("n_months", "seed"), [(12, 1), (21, 2), (36, 3)])
def test_determined_and_involved_cells_match_the_pseudo_inverse(n_months, seed):
    _, cover = feed_periods(n_months)
    first, stop = disclosure._interval_ends(cover)
    rng = np.random.default_rng(seed)
    # sparse and dense patterns: a few withheld months up to nearly everything withheld
    withheld = rng.random((400, cover.shape[0])) < rng.uniform(0.05, 0.95, size=(400, 1))
    want_determined, want_involved = by_pseudo_inverse(withheld, cover)
    labels = disclosure._components(~withheld, first, stop)
    determined = disclosure._determined(withheld, labels, first, stop)
    assert (determined == want_determined).all()
    some = determined.any(axis=1)
    assert some.sum() > 50  # the random patterns exercise the derivations
    # and series with one determined cell up to dozens: _involved solves one or two cells a column each, more
    # as random mixes of their flows (disclosure.MIXES columns)
    assert len(np.unique(np.ceil(np.log2(determined[some].sum(axis=1))))) >= 4
    assert (determined[some].sum(axis=1) > disclosure.MIXES).sum() > 50
    involved = disclosure._involved(withheld[some], determined[some], labels[some], first, stop)
    assert (involved == want_involved[some]).all()


def test_a_period_that_is_not_a_run_of_months_is_refused():
    cover = np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    with pytest.raises(ValueError, match="consecutive months"):
        disclosure._interval_ends(cover)
