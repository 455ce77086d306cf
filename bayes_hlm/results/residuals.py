"""Residuals of a Bayesian fit: response, Pearson and simulation-based quantile residuals.

Quantile residuals are DHARMa's (Hartig, ``simulateResiduals``): for each row, the share
of posterior predictive draws below the observed value, with ties broken by a uniform draw
(randomised PIT: ``r_i = P(y_rep < y_i) + U * P(y_rep = y_i)``), so that they are uniform
on (0, 1) when the model is right, for discrete families too. Each posterior draw
contributes one replicate (its fixed and group effects, and the family's noise), as in
brms' ``posterior_predict``; overdispersion, zero inflation or a wrong link show up as
departures from uniformity (e.g. too many residuals near 0 and 1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..errors import BayesHLMError
from .draws import factor_design
from .family_draws import family_of, param_draws, replicate, trials_kw

if TYPE_CHECKING:
    from .bayes_result import BayesResult

KINDS = ("response", "pearson", "quantile")


def residuals(result: "BayesResult", kind: str = "response", *, ndraws: int | None = 1000,
              seed: int | None = None) -> pd.Series:
    """Residuals of ``result`` on its data rows.

    Parameters
    ----------
    kind : {"response", "pearson", "quantile"}
        ``"response"``: observed minus fitted (binomial: observed proportion minus
        probability, as lme4); ``"pearson"``: divided by the SD of ``y`` given the fitted mean
        and the posterior-mean family parameters; ``"quantile"``: DHARMa-style randomised
        quantile residuals from the posterior predictive (each row's randomised rank among
        its replicates, :func:`quantile_residuals`: uniform on (0, 1) when the model is right).
    ndraws : int, optional
        Quantile residuals: posterior draws used (evenly spaced; None: all).
    seed : int, optional
        Quantile residuals: seed of the replicates and the tie-breaking uniforms (default
        the fit's seed).
    """
    if kind not in KINDS:
        raise BayesHLMError(f"residual kind must be one of {', '.join(map(repr, KINDS))}, "
                            f"not {kind!r}")
    index = result.design.row_index
    if kind == "quantile":
        return pd.Series(quantile_residuals(result, ndraws=ndraws, seed=seed), index=index,
                         name="quantile")
    fit = result.fitted().to_numpy()
    if kind == "pearson":
        return pd.Series(pearson_residuals(result, fit), index=index, name="pearson")
    n = result.design.trials
    y = result.design.y if n is None else result.design.y / n
    return pd.Series(y - fit, index=index, name="residual")


def pearson_residuals(result: "BayesResult", fit: np.ndarray,
                      idx: np.ndarray | None = None, rows: slice = slice(None)) -> np.ndarray:
    """(n,) Pearson residuals ``(y - fit) / sd(y | fit)`` for fitted means ``fit`` (binomial:
    proportions), the family parameters at their posterior means over the flat draws ``idx``
    (default every draw). ``rows``: the residuals of these rows only (``fit`` is theirs)."""
    n = result.design.trials
    y = result.design.y[rows] if n is None else result.design.y[rows] / n[rows]
    fam = family_of(result)
    params = {k: v.mean() for k, v in param_draws(result._draws, fam, idx).items()}
    var = fam.response_variance(fit, **params)
    return (y - fit) / np.sqrt(var if n is None else var / n[rows])


def quantile_residuals(result: "BayesResult", ndraws: int | None = 1000,
                       seed: int | None = None) -> np.ndarray:
    """(n,) randomised PIT values of the observed responses under the posterior predictive.

    The observation's randomised rank among itself and its ``S`` replicates, scaled to
    (0, 1): ``(below + W (equal + 1)) / (S + 1)``, ``W ~ U(0, 1)``. Where ``y`` is exchangeable
    with its replicates (the model is right) the rank is uniform on ``0..S`` and the value
    exactly U(0, 1), for any ``S`` and discrete or not. DHARMa's ``(below + W equal) / S``
    is 0 or 1 whenever ``y`` lies outside every replicate, which a right model does for
    ~1 row in ``S + 1`` (its normal quantile is then infinite); here such rows get
    ``≤ 1/(S+1)`` or ``≥ S/(S+1)`` and stay finite on every scale."""
    src, design = result._draws, result.design
    fam = family_of(result)
    rng = np.random.default_rng(result.info.seed + 2 if seed is None else seed)
    idx = src.thinned(ndraws)
    y = np.asarray(design.y, dtype=float)
    below = np.zeros(len(y))
    equal = np.zeros(len(y))
    extra = trials_kw(design)
    start = 0
    for eta in src.linpred_chunks(idx, design.X, factor_design(design), offset=design.offset):
        sel = idx[start:start + eta.shape[0]]
        start += eta.shape[0]
        yrep = replicate(eta, src, sel, fam, rng, extra)
        below += (yrep < y).sum(axis=0)
        equal += (yrep == y).sum(axis=0)
    return randomised_rank(below, equal, len(idx), rng)


def randomised_rank(below: np.ndarray, equal: np.ndarray, S: int,
                    rng: np.random.Generator) -> np.ndarray:
    """``(below + W (equal + 1)) / (S + 1)``, ``W ~ U(0, 1)`` (:func:`quantile_residuals`):
    in (0, 1), exactly uniform when each observation is exchangeable with its ``S``
    replicates, of which ``below`` are smaller and ``equal`` equal to it."""
    w = rng.uniform(np.finfo(float).tiny, 1.0, size=np.shape(below))  # never exactly 0 or 1
    return (np.asarray(below, float) + w * (np.asarray(equal, float) + 1.0)) / (S + 1.0)
