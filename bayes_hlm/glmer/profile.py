"""Profile-likelihood intervals of a glmer fit (``confint(m, method = "profile")``, lme4's
``profile.merMod`` + ``confint.thpr`` for GLMMs): the variance parameters and the fixed effects.

The parameters are lme4's profiling scale (its ``.sig01, .sig02, ...``): per grouping factor
the SDs of its terms and the within-term correlations, in our names ``sd(term | factor)`` /
``cor(a, b | factor)`` and lme4's order (the θ layout: per factor the lower triangle of the
covariance, column-major), then the fixed effects. The deviance is the fit's own criterion
(Laplace on lme4's PIRLS path, or AGQ) as lme4's ``devfun2`` uses it; for each value ``v`` of
one parameter it is minimised over all the others (SDs ≥ 0, correlations in [-1, 1], fixed
effects free) by bounded BOBYQA, warm-started from the neighbouring point, and
``ζ(v) = sign(v - v̂) sqrt(dev(v) - dev(v̂))``. The ends solve ``ζ = ∓z_{(1+level)/2}``: the
same machinery as lmer's profile (:mod:`bayes_hlm.reml.profile`: the φ ↔ θ map, the bounded
minimiser, the root finder :func:`~bayes_hlm.reml.profile.zeta_root`). lme4 evaluates ζ on a
grid and inverts an interpolating spline; the roots here are solved to ~1e-7, so the two agree
to the spline's accuracy (~1e-3 relative; tests/test_glmer_profile.py).

A negative-binomial fit is profiled with θ_NB held at its estimate (lme4: the family is fixed
in the fitted ``merMod``). Gamma fits have a scale parameter, which lme4 refuses to profile
("can't (yet) profile GLMMs with non-fixed scale parameters"): so do we, for their variance
parameters. ``nagq = 0`` fits have no (θ, β) criterion to profile (lme4's profile needs it too).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special as _sf

from ..errors import BayesHLMError
from ..reml.profile import (first_step, param_kinds, param_names, phi_to_theta, theta_to_phi,
                            warm_profile, zeta_root)

__all__ = ["profile_confint", "profile_fixed", "profile_names", "GlmerProfiler"]

#: relative accuracy of the interval ends (the inner minimiser's noise is far below it)
END_TOL = 1e-7
#: correlations are evaluated within ±COR_MAX (the profile at the ±1 bound stays finite)
COR_MAX = 1 - 1e-9


def profile_names(res) -> list[str]:
    """The rows of a full profile, in lme4's order: ``sd(...)`` / ``cor(...)`` (lme4's
    ``.sig01, ...``), then the fixed effects."""
    return param_names(res.fit.model.layout)[:-1] + list(res.fixed_names)


class GlmerProfiler:
    """The fit's criterion on the profiling scale ``z = (φ, β)``, φ the SDs / correlations."""

    def __init__(self, res):
        fit = res.fit
        if fit.nagq < 1:
            raise BayesHLMError("profile intervals need a Laplace / AGQ fit (nagq >= 1): the "
                                "nagq = 0 fit has no criterion over (theta, beta) to profile; "
                                "refit with nagq=1 or use method='wald'")
        self.res = res
        self.f2 = fit.devfun.criterion(fit.nagq)
        self.tmap = fit.model.layout
        self.k = self.tmap.n_theta
        self.kinds = np.append(param_kinds(self.tmap)[:-1], ["beta"] * len(fit.beta))
        self.names = profile_names(res)
        self.phi_hat = theta_to_phi(self.tmap, fit.theta, 1.0)[:-1]
        self.z_hat = np.concatenate([self.phi_hat, fit.beta])
        self.base = float(res.objective)
        self.se_beta = np.sqrt(np.diag(res.vcov()))
        cor = self.kinds == "cor"
        beta = self.kinds == "beta"
        self.lower = np.where(cor, -1.0, np.where(beta, -np.inf, 0.0))
        self.upper = np.where(cor, 1.0, np.inf)

    def deviance(self, z) -> float:
        """The criterion at ``z = (φ, β)`` (inf where the correlations are not valid)."""
        phi = np.where(self.kinds[:self.k] == "cor", np.clip(z[:self.k], -COR_MAX, COR_MAX),
                       z[:self.k])          # at exactly ±1 Λ does not exist
        theta = phi_to_theta(self.tmap, np.append(phi, 1.0))
        if theta is None:
            return np.inf
        return float(self.f2(np.concatenate([theta, z[self.k:]])))

    def _steps(self, x, free):
        """BOBYQA's first steps: 0.05 for a correlation, half an SE for a fixed effect, 10%
        for an SD."""
        kinds = self.kinds[free]
        se = np.concatenate([np.ones(self.k), self.se_beta])[free]
        return np.where(kinds == "cor", 0.05,
                        np.where(kinds == "beta", 0.5 * se, 0.1 * np.maximum(np.abs(x), 1e-2)))

    def profile(self, j: int):
        """``(dev(v), ζ(v), reset)`` for parameter ``j`` of ``z``: the criterion minimised over
        the others with ``z_j = v`` (warm-started from the last point; ``reset`` goes back to
        the estimates)."""
        free = np.array([i for i in range(len(self.z_hat)) if i != j], dtype=int)

        def objective_at(v):
            z = self.z_hat.copy()
            z[j] = v

            def fun(x):
                z[free] = x
                return self.deviance(z)
            return fun

        return warm_profile(objective_at, self.z_hat[free], self.lower[free], self.upper[free],
                            lambda x0: self._steps(x0, free), self.base, self.z_hat[j],
                            xtol_rel=1e-9, ftol_abs=1e-10)


def _check_family(res, names_wanted):
    if res.family.has_scale and any(n.startswith(("sd(", "cor(")) for n in names_wanted):
        raise BayesHLMError(
            f"profile intervals of the variance parameters of a {res.family.name} GLMM: the "
            "family has a scale parameter, which lme4 cannot profile ('can't (yet) profile "
            "GLMMs with non-fixed scale parameters') and neither does bayes_hlm. Profile the "
            "fixed effects (parm=[...their names...]) or use method='wald'")


def profile_confint(res, level: float, parm=None) -> pd.DataFrame:
    """Lower / upper profile bounds of the variance parameters and fixed effects named in
    ``parm`` (default all; see the module docstring)."""
    P = GlmerProfiler(res)
    which = P.names if parm is None else [n for n in P.names if n in parm]
    _check_family(res, which)
    zc = float(_sf.ndtri(0.5 + level / 2))
    rows = {}
    for name in which:
        j = P.names.index(name)
        _, zeta, reset = P.profile(j)
        kind, v0 = P.kinds[j], P.z_hat[j]
        if kind == "beta":
            se = P.se_beta[j - P.k]
            s0, scale = zc * se, 1e-3 * se
        else:
            s0, scale = first_step(kind, v0, zc)
        ends = []
        for d in (-1, 1):
            reset()
            if kind == "sd" and d < 0 and v0 <= 1e-8:
                ends.append(0.0)                 # a zero SD: the lower end is the bound
                continue
            ends.append(zeta_root(zeta, v0, d, zc, s0, P.lower[j], P.upper[j], scale,
                                  rel_tol=END_TOL))
        rows[name] = ends
    return pd.DataFrame([rows[n] for n in which], index=pd.Index(which),
                        columns=["lower", "upper"])


def profile_fixed(res, level: float, parm=None) -> pd.DataFrame:
    """The fixed-effect rows of :func:`profile_confint` (all fixed effects, or those in
    ``parm``)."""
    names = list(res.fixed_names)
    return profile_confint(res, level, names if parm is None else [p for p in parm if p in names])


def _profile_dev(res, j: int):
    """The profiled criterion of fixed effect ``j`` as a function of its value."""
    P = GlmerProfiler(res)
    return P.profile(P.k + j)[0]
