"""Data checks a GLMM user needs, on plain arrays (the fit calls them and warns).

* :func:`find_separation` - complete or quasi-complete separation of a binary/binomial
  outcome by the fixed effects, before sampling (the linear program of Konis 2007, as R's
  ``detectseparation``): some direction ``beta`` of the coefficients makes every success's
  linear predictor ``>= 0`` and every failure's ``<= 0``. The likelihood then keeps rising
  along ``beta`` for ever, so those coefficients are determined by their prior alone (glm's
  "fitted probabilities numerically 0 or 1", huge SEs in glmer).
* :func:`pearson_dispersion` - Pearson chi-square over its residual degrees of freedom, the
  overdispersion statistic of ``performance::check_overdispersion`` (> 1: more variance than
  the family allows).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

__all__ = ["SEPARATION_FAMILIES", "Separation", "find_separation", "pearson_dispersion",
           "OVERDISPERSION_RATIO", "OVERDISPERSION_DRAWS"]

#: families whose outcome can be separated by the predictors
SEPARATION_FAMILIES = ("bernoulli", "binomial")
#: Pearson chi2/df above which a Poisson fit is reported as overdispersed
OVERDISPERSION_RATIO = 1.5
#: posterior draws (evenly spaced) behind the overdispersion check's fitted means: a Monte
#: Carlo error ``e`` in a cell's fitted mean ``mu`` adds ~``e^2/mu`` to its Pearson term, and
#: ``Var e ~ Var_post(mu) / S ~ mu / (n_g S)``, so chi2/df moves by ~``1/S`` = 0.005 at most,
#: far below the margin of :data:`OVERDISPERSION_RATIO` (2,000 draws at 100k groups: 2 CPU-s
#: for the same decision)
OVERDISPERSION_DRAWS = 200
#: largest linear program solved (unique signed rows x columns; ~5 s with HiGHS); larger
#: designs get only the indicator check (:func:`_indicator_separation`)
_MAX_LP_CELLS = 5_000_000


def _not_separated(A: np.ndarray, tol: float) -> bool:
    """True when weights ``lam >= 1`` with ``||A'lam||_1 <= tol`` exist: then every
    ``beta`` in [-1, 1]^p with ``A beta >= 0`` has ``sum(A beta) <= lam'A beta <= tol``, so
    the LP below would find no separation (Stiemke's alternative). ``lam = 1 + mu``, ``mu >= 0``
    by NNLS on a few hundred rows (those pointing most against ``A'1``, each column's extremes,
    a seeded random few); False (undecided: solve the LP) when they cannot cancel it. 20k
    binary rows: ~20 ms instead of the LP's ~1 s CPU; 200k: the LP took 20 s."""
    from scipy.optimize import nnls

    n, p = A.shape
    if A.size == 0:
        return False
    total = A.sum(axis=0)
    k, e = min(n, 32 * p), min(n, 16)
    rows = [np.argpartition(A @ total, k - 1)[:k],
            np.random.default_rng(0).integers(0, n, k)]
    for j in range(p):
        rows += [np.argpartition(A[:, j], e - 1)[:e], np.argpartition(-A[:, j], e - 1)[:e]]
    against = np.unique(np.concatenate(rows))
    try:
        mu, _ = nnls(A[against].T, -total)
    except RuntimeError:  # NNLS iteration limit
        return False
    return float(np.abs(total + A[against].T @ mu).sum()) <= tol


@dataclass(frozen=True)
class Separation:
    """Terms whose coefficients separate the outcome; ``complete``: every row is predicted
    perfectly (else quasi-complete: some rows sit on the boundary); ``examples``: a plain
    description per 0/1 indicator term (``"every row with x = 1 is a success"``)."""

    terms: tuple[str, ...]
    complete: bool
    examples: dict[str, str] = field(default_factory=dict)

    def message(self) -> str:
        kind = "complete" if self.complete else "quasi-complete"
        what = "; ".join(self.examples[t] for t in self.terms if t in self.examples)
        return (f"{kind} separation: the outcome is perfectly predicted by the fixed effect(s) "
                f"{list(self.terms)}" + (f" ({what})" if what else "") + "; the likelihood "
                "keeps rising as these coefficients grow, so their posterior is set by the prior "
                "alone (odds ratios near 0 or infinity). Drop or merge the level, give the "
                "coefficients an informative prior (e.g. Normal(0, 2.5) on the logit scale), or "
                "report the separation instead of the estimate")


def find_separation(X: np.ndarray, successes: np.ndarray, names, trials: np.ndarray | None = None,
                    tol: float = 1e-7) -> Separation | None:
    """Complete or quasi-complete separation of a binary/binomial outcome by ``X``.

    Parameters
    ----------
    X : ndarray (n, p)
        Fixed-effect design (full column rank).
    successes : ndarray (n,)
        0/1 outcomes, or numbers of successes out of ``trials``.
    names : sequence of str
        Column names of ``X``.
    trials : ndarray (n,), optional
        Binomial trials (default 1 per row).

    Returns
    -------
    Separation or None
        None when no direction separates the outcome (or the design is too large to check).
    """
    from scipy.optimize import linprog

    X = np.asarray(X, dtype=float)
    s = np.asarray(successes, dtype=float)
    n = np.ones_like(s) if trials is None else np.asarray(trials, dtype=float)
    scale = np.abs(X).max(axis=0)
    Xs = X / np.where(scale > 0, scale, 1.0)
    # each success wants x'beta >= 0, each failure x'beta <= 0 (a row with both: x'beta = 0)
    A = np.vstack([Xs[s > 0], -Xs[(n - s) > 0]])
    if _not_separated(A, tol):  # the common case, proved without the LP
        return None
    A = np.unique(np.round(A, 12), axis=0)
    if A.size == 0:
        return None
    if A.size > _MAX_LP_CELLS:
        return _indicator_separation(X, s, n, names)
    p = A.shape[1]
    res = linprog(-A.sum(axis=0), A_ub=-A, b_ub=np.zeros(len(A)), bounds=[(-1.0, 1.0)] * p,
                  method="highs")
    if res.status != 0 or -res.fun <= tol * max(1, len(A)):
        return None
    bounds = [(-1.0, 1.0)] * p
    # which coefficients move in some separating direction: max and min of each (2p small LPs,
    # run only once separation is found); the largest reach first
    reach = np.zeros(p)
    for j in range(p):
        for sign in (-1.0, 1.0):
            c = np.zeros(p)
            c[j] = -sign
            r = linprog(c, A_ub=-A, b_ub=np.zeros(len(A)), bounds=bounds, method="highs")
            if r.status == 0:
                reach[j] = max(reach[j], -r.fun)
    order = [j for j in np.argsort(-reach, kind="stable") if reach[j] > 1e-3]
    terms = tuple(str(names[j]) for j in order)
    # complete: some direction puts every row strictly on its side (max t with A beta >= t)
    r = linprog(np.r_[np.zeros(p), -1.0], A_ub=np.c_[-A, np.ones(len(A))], b_ub=np.zeros(len(A)),
                bounds=bounds + [(None, 1.0)], method="highs")
    complete = bool(r.status == 0 and -r.fun > 1e-9)
    big = np.zeros(p, dtype=bool)
    big[order] = True
    examples = {}
    for j in np.flatnonzero(big):
        text = _same_outcome(X[:, j], s, n, str(names[j]))
        if text:
            examples[str(names[j])] = text
    return Separation(terms, complete, examples)


def _same_outcome(col: np.ndarray, s: np.ndarray, n: np.ndarray, name: str) -> str:
    """``"every row with x = 1 is a success"`` for a 0/1 column whose rows share one outcome
    (for the intercept: every outcome the same), else ``""``."""
    if np.all(col == 1):
        on, what = np.ones(col.size, dtype=bool), "every outcome"
    elif np.isin(col, (0.0, 1.0)).all():
        on, what = col == 1, f"every row with {name} = 1"
    else:
        return ""
    kind = "success" if np.all(s[on] >= n[on]) else "failure" if np.all(s[on] == 0) else ""
    return f"{what} is a {kind}" if kind and on.any() else ""


def _indicator_separation(X, s, n, names) -> Separation | None:
    """The check for designs too large for the linear program: 0/1 columns (factor levels)
    whose rows are all successes or all failures (quasi-complete separation)."""
    examples = {str(names[j]): t for j in range(X.shape[1])
                if (t := _same_outcome(X[:, j], s, n, str(names[j])))}
    if not examples:
        return None
    return Separation(tuple(examples), False, examples)


def pearson_dispersion(pearson_residuals, n_params: int) -> float:
    """Pearson chi-square / residual df: ``sum(r^2) / (n - n_params)`` (``n_params``: fixed
    effects plus variance parameters, as ``performance::check_overdispersion``).

    ``pearson_residuals``: an array, or an iterator of arrays (the rows in chunks: no
    N-long temporaries at 10⁷ rows)."""
    parts = pearson_residuals if isinstance(pearson_residuals, Iterator) else [pearson_residuals]
    ss, n = 0.0, 0
    for part in parts:
        r = np.asarray(part, dtype=float)
        ss += float(np.sum(r * r))
        n += r.size
    return float(ss / max(n - n_params, 1))
