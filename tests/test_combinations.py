"""The minimum-norm combination the small-cell passes use: the right answer on matrices an SVD fails on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.linalg

from pipeline.report import combinations

DATA = Path(__file__).parent / "data"


def _nonconvergent() -> np.ndarray:
    """A 188 x 169 0/1 table of the case-dense 10M bench (overall and department cells over department-months)
    on which numpy's pinv (LAPACK gesdd in OpenBLAS) raised "SVD did not converge" on an AMD EPYC, stopping the run."""
    saved = np.load(DATA / "gesdd_nonconvergent.npz")
    rows, cols = saved["shape"]
    return np.unpackbits(saved["rows"], axis=1, count=int(cols)).astype(float)[: int(rows)]


def _in_span(known: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Reference: a target is in the rows' span when adding it does not raise the rank (singular values by
    the QR-iteration SVD, gesvd, not the one that fails)."""

    def rank(m):
        s = scipy.linalg.svd(m, compute_uv=False, lapack_driver="gesvd")
        return int((s > s[0] * 1e-10).sum())

    base = rank(known)
    return np.array([rank(np.vstack([known, t])) == base for t in targets])


def test_a_matrix_gesdd_fails_on_gives_each_target_s_combination():
    known = _nonconvergent()
    assert known.shape == (188, 169)
    rng = np.random.default_rng(28)
    sums = (rng.random((40, known.shape[0])) < 0.05).astype(float) @ known  # in the span: sums of known rows
    units = np.eye(known.shape[1])  # each single department-month: in the span or not, as the rank says
    targets = np.vstack([sums, units])
    coef = combinations.min_norm_combination(known, targets)
    determined = np.abs(coef @ known - targets).max(axis=1) < 1e-8
    assert determined[:40].all()
    assert np.array_equal(determined, _in_span(known, targets))
    assert 0 < determined[40:].sum() < known.shape[1]  # the table determines some single cells, not all


def test_the_combination_is_the_minimum_norm_one():
    """Two equal rows: a target equal to them is half of each (what the passes' 'uses' test relies on: every row a
    derivation can use has a weight), not all of one."""
    known = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    coef = combinations.min_norm_combination(known, np.array([[1.0, 1.0, 0.0], [1.0, 2.0, 1.0]]))
    np.testing.assert_allclose(coef, [[0.5, 0.5, 0.0], [0.5, 0.5, 1.0]], atol=1e-12)


def test_nothing_known_or_nothing_asked():
    assert combinations.min_norm_combination(np.zeros((0, 4)), np.ones((2, 4))).shape == (2, 0)
    assert combinations.min_norm_combination(np.ones((3, 4)), np.zeros((0, 4))).shape == (0, 3)
