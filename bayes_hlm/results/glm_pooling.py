"""No pooling and complete pooling on the link scale for generalized (non-Gaussian) fits.

The Gaussian shrinkage table regresses ``y`` by OLS; for a binary or count response that would
put the per-group estimates on the data scale while the posterior group coefficients live on the
link scale (log-odds, log rate). Here both are GLMs fitted by iteratively reweighted least squares
(IRLS, Fisher scoring with the family's variance function and link):

* **complete pooling**: one GLM of ``y`` on the fixed design, the factor's groups ignored;
* **no pooling**: per level of a factor, a GLM of the level's rows on the factor's own terms
  (intercept, slopes), with the rest of the linear predictor - the other fixed effects at their
  posterior means, and the offset - held fixed as an offset. The posterior coefficient
  (fixed + group effect) is the partial-pooling estimate of exactly these coefficients.

Both hold the *other* factors' group effects at their posterior means (:func:`other_effects`):
unlike OLS, a GLM fitted without them estimates a population-averaged coefficient (attenuated
towards 0 for the logit link, shifted up by about half their variance for the log link), which
is not what the model's group coefficients are.

A group whose responses are all 0 (or all successes) has no finite maximum-likelihood estimate.
The per-group fits therefore add a continuity correction of half a pseudo-success and half a
pseudo-failure per group (counts: half a pseudo-event), spread evenly over the group's rows; for an
intercept-only term this is the classical empirical logit ``log((s + 1/2) / (f + 1/2))`` and the
empirical log rate ``log((sum y + 1/2) / sum exposure)``. Spreading it over every row also leaves
every covariate pattern with both outcomes, so a slope has a finite estimate too. Levels whose
rows cannot identify the terms get NaN: a term whose column is zero on all the level's rows (the
urban slope of a district with rural women only) is left out of that level's fit, and a level whose
remaining columns are collinear (an urban-only district: intercept and urban slope aliased) gets
NaN for all of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..families import Family

if TYPE_CHECKING:
    from .bayes_result import BayesResult

#: families whose link-scale coefficients are compared with OLS on the response (identity link)
LINEAR_FAMILIES = ("gaussian", "t")
COUNT_FAMILIES = ("poisson", "negativebinomial")
CORRECTION = 0.5  # pseudo-successes (and pseudo-failures) per group


def is_linear(family: Family) -> bool:
    """Whether OLS on ``y`` estimates the fit's link-scale coefficients."""
    return family.name in LINEAR_FAMILIES and family.link.name == "identity"


def _dmu_deta(family: Family, eta: np.ndarray) -> np.ndarray:
    h = 1e-6 * np.maximum(1.0, np.abs(eta))
    return (family.link.inverse(eta + h) - family.link.inverse(eta - h)) / (2 * h)


def _start(family: Family, y: np.ndarray) -> np.ndarray:
    """A starting mean inside the family's support (R's ``mustart``)."""
    if family.name in ("bernoulli", "binomial"):
        return (y + 0.5) / 2.0  # y is a proportion here
    return np.maximum(y, 0.1) if family.link.name != "inverse" else np.full_like(y, max(y.mean(), 1e-3))


def irls(X: np.ndarray, y: np.ndarray, family: Family, offset: np.ndarray | None = None,
         weights: np.ndarray | None = None, max_iter: int = 100, tol: float = 1e-10) -> np.ndarray:
    """Maximum-likelihood GLM coefficients by Fisher scoring.

    ``y`` is the mean-scale response (binomial: the proportion, with the trials as ``weights``).
    Returns NaN coefficients when ``X`` is rank deficient or the iteration does not converge.
    """
    n, p = X.shape
    off = np.zeros(n) if offset is None else np.asarray(offset, float)
    w0 = np.ones(n) if weights is None else np.asarray(weights, float)
    if n < p or np.linalg.matrix_rank(X * np.sqrt(w0)[:, None]) < p:
        return np.full(p, np.nan)
    mu = _start(family, y)
    eta = family.link.link(mu)
    beta = np.linalg.lstsq(X, eta - off, rcond=None)[0]
    dev_old = np.inf
    for _ in range(max_iter):
        eta = off + X @ beta
        mu = family.link.inverse(eta)
        d = _dmu_deta(family, eta)
        var = np.maximum(family.variance(mu), 1e-300)
        w = w0 * d ** 2 / var
        z = eta - off + (y - mu) / np.where(d == 0, 1e-300, d)
        sw = np.sqrt(w)
        new = np.linalg.lstsq(X * sw[:, None], z * sw, rcond=None)[0]
        if not np.all(np.isfinite(new)):
            return np.full(p, np.nan)
        step = np.max(np.abs(new - beta))
        beta = new
        dev = float(np.sum(w0 * (y - mu) ** 2 / var))
        if step < tol * (1 + np.max(np.abs(beta))) or abs(dev - dev_old) < tol * (1 + dev):
            return beta
        dev_old = dev
    return beta if np.all(np.abs(beta) < 50) else np.full(p, np.nan)


def _mean_response(result: "BayesResult") -> tuple[np.ndarray, np.ndarray | None]:
    """(mean-scale response, binomial trials or None)."""
    d = result.design
    y = np.asarray(d.y, float)
    if d.trials is None:
        return y, None
    t = np.asarray(d.trials, float)
    return y / t, t


def other_effects(result: "BayesResult", factor: str | None) -> np.ndarray:
    """Per row, the posterior-mean group effects of every factor but ``factor`` (Z b summed).

    A GLM's coefficients do not average over omitted effects the way a linear model's do (the
    log of a mean count is not the mean of the log rates), so the pooling fits of one factor
    hold the other factors' effects (a brood within a location, a chick's own effect) at their
    posterior means instead of leaving them out."""
    from .reference import norm_term

    d = result.design
    out = np.zeros(d.n)
    for f in result.factors:
        if f == factor:
            continue
        means = result.ranef()[f]["mean"]
        for g in d.groups:
            if g.factor != f:
                continue
            levels = [str(v) for v in g.levels]
            for j, t in enumerate(g.terms):
                key = means.reindex(pd.MultiIndex.from_arrays([levels, [t] * len(levels)]))
                if key.isna().all():  # ranef's term spelling differs ("(Intercept)")
                    idx = means.index
                    sub = means[[norm_term(x) == norm_term(t) for x in idx.get_level_values(-1)]]
                    sub.index = [str(v) for v in sub.index.get_level_values(0)]
                    key = sub.reindex(levels)
                out += np.nan_to_num(key.to_numpy(float))[g.codes] * np.asarray(g.Z, float)[:, j]
    return out


def complete_pooling_glm(result: "BayesResult", family: Family, factor: str | None = None) -> pd.Series:
    """One GLM of ``y`` on the fixed design with ``factor``'s groups ignored (the other factors'
    effects held at their posterior means; all ignored when ``factor`` is None), link scale."""
    from .reference import norm_term

    d = result.design
    y, trials = _mean_response(result)
    held = (np.zeros(d.n) if d.offset is None else np.asarray(d.offset, float))
    if factor is not None:
        held = held + other_effects(result, factor)
    beta = irls(np.asarray(d.X, float), y, family, held, trials)
    return pd.Series(beta, index=[norm_term(n) for n in d.fixed_names])


def no_pooling_glm(result: "BayesResult", factor: str, family: Family, terms: list[str],
                   codes: np.ndarray, Z: np.ndarray) -> pd.DataFrame:
    """Per level of ``factor``: link-scale GLM coefficients of the factor's terms (see the module)."""
    from ..spec import variable_names as naming
    from .reference import norm_term

    d = result.design
    y, trials = _mean_response(result)
    zn = set(terms)
    other = [i for i, n in enumerate(d.fixed_names) if norm_term(n) not in zn]
    beta = result._draws.flat(naming.FIXED).mean(0)
    held = np.asarray(d.X, float)[:, other] @ beta[other] + other_effects(result, factor)
    if d.offset is not None:
        held = held + d.offset
    levels = [str(v) for v in result._levels(factor)]
    est = np.full((len(levels), len(terms)), np.nan)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(levels) + 1))
    binary = family.name in ("bernoulli", "binomial")
    for j in range(len(levels)):
        rows = order[bounds[j]:bounds[j + 1]]
        if len(rows) == 0:
            continue
        m = len(rows)
        # a term whose column is 0 on every row of the level (a rural-only district's urban
        # slope) is not estimable there: NaN for it, the others still estimated
        cols = np.flatnonzero(np.any(Z[rows] != 0, axis=0))
        Zj = Z[rows][:, cols]
        if binary:
            t = np.ones(m) if trials is None else trials[rows]
            succ = y[rows] * t + CORRECTION / m
            t = t + 2 * CORRECTION / m
            est[j, cols] = irls(Zj, succ / t, family, held[rows], t)
        elif family.name in COUNT_FAMILIES:
            est[j, cols] = irls(Zj, y[rows] + CORRECTION / m, family, held[rows])
        else:  # positive continuous (Gamma): every group has a finite estimate
            est[j, cols] = irls(Zj, y[rows], family, held[rows])
    return pd.DataFrame(est, index=pd.Index(levels, name="level"), columns=terms)
