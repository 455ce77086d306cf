"""Which columns of a matrix are constant within every level of a grouping factor.

Such columns are level-2 predictors of that factor (a school's ``meanses``, an item's
type): inside one level they are aliased with the level's intercept. Read by the
shrinkage table (like-with-like no-pooling intercepts) and by the centring choice of
generalized models (a centred factor with level-2 predictors samples along a ridge).
"""

from __future__ import annotations

import numpy as np

__all__ = ["constant_within_levels"]


def constant_within_levels(X: np.ndarray, codes: np.ndarray, n_levels: int) -> np.ndarray:
    """Boolean mask over the columns of ``X`` (n, p): True where the column takes one value
    in every level of ``codes`` (levels without rows are ignored).

    The tolerance is relative to the column's largest absolute value (1e-12), so a
    rescaled or shifted copy of a level-2 predictor is still recognised.
    """
    X = np.asarray(X, float)
    codes = np.asarray(codes)
    out = np.zeros(X.shape[1], bool)
    for j in range(X.shape[1]):
        lo = np.full(n_levels, np.inf)
        hi = np.full(n_levels, -np.inf)
        np.minimum.at(lo, codes, X[:, j])
        np.maximum.at(hi, codes, X[:, j])
        seen = np.isfinite(lo)
        out[j] = bool(np.all(hi[seen] - lo[seen] <= 1e-12 * max(1.0, np.abs(X[:, j]).max())))
    return out
