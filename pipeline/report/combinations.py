"""Which counts follow from which: the minimum-norm combination of known rows that gives each target row.

The small-cell passes (``disclosure._Joint``) and the derivation search (``relations._derivations``) ask the
same question of 0/1 sum matrices: is a hidden count a linear combination of released ones, and which of them
does the combination use. The minimum-norm combination answers both.

It is computed by a complete orthogonal factorisation (LAPACK ``gelsy``: QR with column pivoting), not a
pseudo-inverse: numpy's ``pinv`` is an SVD by divide and conquer (``gesdd``), whose iteration OpenBLAS fails to
converge on some matrices and CPUs ("SVD did not converge" on a 188 x 169 table of the case-dense 10M bench on
an AMD EPYC, the same matrix fine with ``OPENBLAS_CORETYPE=Haswell``). A run must not stop, nor its feed depend
on the machine, for that. The factorisation has no iteration to fail, and the rank it finds on these integer
matrices is the SVD's (singular values either ~1 or ~1e-16).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

RCOND = 1e-10  # a column whose condition estimate is below this is dependent on the others


def min_norm_combination(known: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(targets, known rows): each target row's minimum-norm coefficients over the rows of ``known``, the
    least-squares fit where a target is not in their span (check ``coef @ known`` against it)."""
    if known.size == 0 or targets.size == 0:
        return np.zeros((targets.shape[0], known.shape[0]))
    coef, *_ = scipy.linalg.lstsq(known.T, targets.T, cond=RCOND, lapack_driver="gelsy", check_finite=False)
    return coef.T
