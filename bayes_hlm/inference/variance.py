"""Variance decomposition per posterior draw: ICC, marginal/conditional R², Bayesian R².

Definitions follow ``performance::icc`` / ``performance::r2_nakagawa``
(Nakagawa & Schielzeth 2013; Johnson 2014 for random slopes) and
``brms::bayes_R2`` (Gelman, Goodrich, Gabry & Vehtari 2019):

* random-effect variance of factor k: ``mean_i z_i' Sigma_k z_i = tr(Sigma_k Z_k'Z_k / n)``
  over the random terms that contain an intercept (``terms="performance"``, the default):
  a term without one - the slope part of ``(x || g)``, which lme4 splits into ``(1 | g)``
  and ``(0 + x | g)`` - contributes nothing, as in ``insight::get_variance`` (performance),
  so the Bayesian and the REML ICC/R² are the same quantity and match R.
  ``terms="all"`` counts every term (the variance of all group effects, slope-only terms too).
* fixed-effect variance: ``var(X beta)`` over rows (R's ``var``, ddof = 1)
* distribution-specific (residual) variance: the family's latent-scale variance
  (:meth:`bayes_hlm.families.Family.latent_variance`; Gaussian ``sigma^2``). Poisson and
  negative binomial: ``log(1 + 1/mu [+ 1/alpha])`` (lognormal) with ``mu = exp(eta_mean)``,
  where performance (insight 0.19's ``.variance_distributional``) takes ``eta_mean`` = the
  intercept of the *null model* (the same random effects, intercept only, refitted by glmer);
  the caller passes it (:func:`bayes_hlm.glmer.variance.null_intercept`)
* an observation-level random intercept (one level per row, e.g. grouseticks' ``(1 | INDEX)``)
  of a non-Gaussian model is overdispersion: its variance is residual, not random
  (performance's ``var_dispersion``; :func:`observation_level_factors`)
* adjusted ICC = ``sum_k var_k / (sum_k var_k + sigma^2)``
* R2m = ``var_f / (var_f + sum var_k + sigma^2)``; R2c = ``(var_f + sum var_k) / (...)``
* Bayesian R2 = ``var(mu) / (var(mu) + var(y - mu))`` per draw, mu the linear predictor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import BayesHLMError
from ..families import Family, default_family
from ..spec.design import Design


@dataclass
class VarianceParts:
    """Per-draw variance components, each an array of shape (S,)."""

    fixed: np.ndarray
    random: dict[str, np.ndarray]
    residual: np.ndarray

    @property
    def random_total(self) -> np.ndarray:
        return sum(self.random.values()) if self.random else np.zeros_like(self.residual)

    def icc(self) -> np.ndarray:
        r = self.random_total
        return r / (r + self.residual)

    def icc_by_factor(self) -> dict[str, np.ndarray]:
        denom = self.random_total + self.residual
        return {k: v / denom for k, v in self.random.items()}

    def r2_marginal(self) -> np.ndarray:
        return self.fixed / (self.fixed + self.random_total + self.residual)

    def r2_conditional(self) -> np.ndarray:
        return (self.fixed + self.random_total) / (self.fixed + self.random_total + self.residual)


VarianceTerms = Literal["performance", "all"]


def term_mask(design: Design, factor: str, terms: VarianceTerms = "performance") -> np.ndarray:
    """Which of ``factor``'s effect columns (its terms concatenated) count in its variance.

    ``"performance"``: the columns of the random terms that contain an intercept (performance's
    rule, see the module docstring); ``"all"``: every column.
    """
    if terms not in ("performance", "all"):
        raise BayesHLMError(f"terms must be 'performance' or 'all', not {terms!r}")
    keep = []
    for g in design.groups:
        if g.factor == factor:
            keep += [terms == "all" or "Intercept" in g.terms] * g.q
    return np.asarray(keep, dtype=bool)


def random_variance(cov: np.ndarray, ZtZ_n: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``tr(Σ M Zᵀ Z M / n)`` per draw for (S, q, q) covariances, M the column mask."""
    m = mask.astype(float)
    return np.einsum("sij,ji->s", cov, ZtZ_n * np.outer(m, m))


def factor_columns(design: Design) -> dict[str, np.ndarray]:
    """Z columns of every factor (its terms concatenated), in term order."""
    out: dict[str, list] = {}
    for g in design.groups:
        out.setdefault(g.factor, []).append(g.Z)
    return {k: np.hstack(v) for k, v in out.items()}


def observation_level_factors(design: Design) -> set[str]:
    """Factors with one intercept-only effect per row: observation-level random effects."""
    q: dict[str, int] = {}
    for g in design.groups:
        q[g.factor] = q.get(g.factor, 0) + g.q
    return {g.factor for g in design.groups
            if q[g.factor] == 1 and g.n_levels == design.n and np.unique(g.codes).size == design.n}


def fixed_covariance(design: Design) -> np.ndarray:
    """Covariance of the fixed design's columns (ddof = 1), for ``var(X beta)``."""
    if design.n < 2:
        return np.zeros((design.p, design.p))
    return np.atleast_2d(np.cov(design.X, rowvar=False, ddof=1))


def variance_parts(design: Design, beta: np.ndarray, sigma: np.ndarray | None,
                   covs: dict[str, np.ndarray], family: Family | None = None,
                   family_params: dict[str, np.ndarray] | None = None,
                   terms: VarianceTerms = "performance",
                   eta_mean: np.ndarray | None = None) -> VarianceParts:
    """Variance components for draws of ``beta`` (S,p), ``sigma`` (S,) and covariances.

    ``covs`` maps factor -> (S, q, q) covariance of that factor's effects (terms
    in the order of :func:`factor_columns`). The residual part is the family's
    latent-scale variance (default Gaussian: ``sigma^2``) of ``family_params``
    (default ``{"sigma": sigma}``); count families also need ``eta_mean`` (S,), the
    per-draw mean of the linear predictor (see :meth:`Family.latent_variance`). ``terms``:
    which random terms count (see :func:`term_mask`). A REML fit is one "draw" (S = 1) of
    the same function.
    """
    C = fixed_covariance(design)
    var_f = np.einsum("sp,pq,sq->s", beta, C, beta)
    random = {}
    for factor, Z in factor_columns(design).items():
        ZtZ_n = Z.T @ Z / design.n
        random[factor] = random_variance(covs[factor], ZtZ_n, term_mask(design, factor, terms))
    family = family or default_family()
    params = family_params if family_params is not None else {"sigma": sigma}
    residual = np.broadcast_to(family.latent_variance(params, eta_mean=eta_mean),
                               var_f.shape).astype(float)
    if family.name != "gaussian":  # overdispersion is residual variance (var_dispersion)
        for f in observation_level_factors(design):
            residual = residual + random.pop(f)
    return VarianceParts(fixed=var_f, random=random, residual=residual)


def bayes_r2(y: np.ndarray, mu_draws) -> np.ndarray:
    """brms' ``bayes_R2`` per draw; ``mu_draws`` yields (s, n) blocks of the linear predictor."""
    out = []
    for mu in mu_draws:
        e = y[None, :] - mu
        vf = mu.var(axis=1, ddof=1)
        ve = e.var(axis=1, ddof=1)
        out.append(vf / (vf + ve))
    return np.concatenate(out)
