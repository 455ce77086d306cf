"""Entry points: :func:`glmer` (lme4's ``glmer`` and ``glmer.nb``) and :func:`anova` (LRT).

The pipeline is lme4's: ``build_spec`` (``glFormula``) → :func:`~.model.build_model` (the
response as ``glm`` holds it) → :class:`~.pirls.GlmerDevfun` (``mkGlmerDevfun``) →
:func:`~.fit.fit_model` (``optimizeGlmer``, two stages) → :class:`~.result.GlmerResult`
(``mkMerMod``).
"""

from __future__ import annotations

import re
import time
import warnings

import numpy as np
import pandas as pd
from scipy import special as _sf

from ..errors import BayesHLMError, DataError
from ..reml.api import blas_threads, lrt_table  # shared with reml: BLAS limiter, LRT table
from .fit import GlmerFit, fit_model
from .glmfamily import GlmFamily, make_glm_family
from .model import build_model, spec_family_name
from .optimize import DEFAULT_CONTROL
from .result import GlmerResult

__all__ = ["glmer", "glmer_spec", "anova", "theta_ml", "GLMER_FAMILY_NAMES"]

#: bayes_hlm family names glmer fits (a Bayesian result's frequentist reference)
GLMER_FAMILY_NAMES = ("bernoulli", "binomial", "poisson", "negativebinomial", "gamma")

_NAME = re.compile(r"^\s*[A-Za-z_.][A-Za-z0-9_.]*\s*$")


def _spec_formula(formula: str, data) -> str:
    """A response expression such as ``incidence / size`` goes through ``I(...)`` (R evaluates
    it; formulae would read ``/`` as nesting)."""
    if "~" not in formula:
        return formula
    lhs, rhs = formula.split("~", 1)
    s = lhs.strip()
    if not s or _NAME.match(s) or s.startswith(("cbind(", "p(", "I(")) or \
            (isinstance(data, pd.DataFrame) and s in data.columns):
        return formula
    if re.match(r"^\s*(cbind|p)\s*\(", s):
        return formula
    return f"I({s}) ~{rhs}"


def _control(control) -> tuple[object, dict]:
    from ..spec.control import Control

    if control is None:
        return None, {}
    if isinstance(control, Control):
        ctl = dict(control.opt_ctrl)
        if control.optimizer not in ("bobyqa",):
            raise BayesHLMError(f"glmer() optimises with BOBYQA (lme4's glmerControl(optimizer = "
                                f"'bobyqa')); optimizer={control.optimizer!r} is not available")
        bad = sorted(set(ctl) - set(DEFAULT_CONTROL))
        if bad:
            raise TypeError(f"unknown glmer optimiser setting(s) {bad}; known: "
                            f"{sorted(DEFAULT_CONTROL)}")
        return control, ctl
    raise TypeError(f"control must be a bayes_hlm.Control, not {type(control).__name__}")


def glmer(formula: str, data: pd.DataFrame, family="binomial", link: str | None = None,
          nagq: int = 1, weights=None, control=None) -> GlmerResult:
    """Fit a generalized linear mixed model by maximum likelihood, as ``lme4::glmer``.

    Parameters
    ----------
    formula : str
        lme4 formula. Binomial responses: ``cbind(successes, failures)``, ``p(successes,
        trials)``, a 0/1 / two-level factor (the first level is the failure) or a proportion
        with ``weights=`` the trials. ``offset(...)`` terms are allowed.
    data : pandas.DataFrame
        Never modified.
    family : str
        ``"binomial"`` (also ``"bernoulli"``), ``"poisson"``, ``"gamma"`` or
        ``"negativebinomial"`` (θ estimated as ``glmer.nb`` does).
    link : str, optional
        Default: R's default link of the family (Gamma: ``inverse``).
    nagq : int
        1: Laplace (default); 0: fixed effects inside PIRLS (faster, less accurate);
        > 1: adaptive Gauss–Hermite quadrature with ``nagq`` points per dimension (at most
        25). lme4 allows it for one scalar term; here one grouping factor with up to two
        effect columns, e.g. ``(1 + x | g)`` (``nagq²`` nodes per level; crossed / nested
        factors and more columns are refused: see :mod:`bayes_hlm.glmer.agq`).
    weights : str, optional
        A column of prior weights: the trials of a binomial proportion response, else
        frequency weights (R's ``glmer(weights=)``).
    control : bayes_hlm.Control, optional
        Input checks (``check_*``) and optimiser settings (``opt_ctrl``, e.g. ``maxfun``,
        ``check_conv_tol``, ``check_singular_tol``; see :data:`.optimize.DEFAULT_CONTROL`).

    Returns
    -------
    GlmerResult
    """
    from ..spec.build import build_spec

    t0 = time.perf_counter()
    fam = make_glm_family(family, link)
    checks, ctl = _control(control)
    response = formula.split("~", 1)[0].strip() if isinstance(formula, str) else ""
    sname = spec_family_name(fam, data, response, weights)
    spec = build_spec(_spec_formula(formula, data), data, control=checks, family=sname,
                      weights=weights)
    fit = _fit_spec(spec, fam, nagq, ctl)
    return GlmerResult(fit, ctl, wall_s=time.perf_counter() - t0, formula=formula)


def _fit_spec(spec, fam, nagq: int, ctl: dict):
    """PIRLS + optimisation of a built spec (both entry points), announced when it takes long:
    a family's first fit on a machine compiles its Numba kernels (measured 31-35 s on an empty
    cache against 0.03-0.4 s warm), which would otherwise be a silent stretch."""
    from ..progress import phase

    with phase("fitting by glmer's criterion (a family's first fit on this machine compiles "
               "its kernels once, about 30 s)"), blas_threads(1):
        if fam.name == "negative_binomial":
            return _fit_nb(spec, fam, nagq, ctl)
        return fit_model(build_model(spec, fam), nagq, ctl)


def glmer_spec(spec, nagq: int = 1, control=None) -> GlmerResult:
    """Fit an already-built :class:`~bayes_hlm.spec.build.ModelSpec` (its family and link) by
    glmer: the frequentist reference of a non-Gaussian Bayesian fit of the same model."""
    t0 = time.perf_counter()
    fam_b = spec.family
    if fam_b.name not in GLMER_FAMILY_NAMES:
        raise BayesHLMError(f"glmer has no {fam_b.name!r} family (it fits "
                            f"{', '.join(GLMER_FAMILY_NAMES)})")
    fam = make_glm_family(fam_b.name, fam_b.link.name)
    _, ctl = _control(control)
    fit = _fit_spec(spec, fam, nagq, ctl)
    return GlmerResult(fit, ctl, wall_s=time.perf_counter() - t0)


# ------------------------------------------------------------------------ negative binomial
def theta_ml(y, mu, weights=None, limit: int = 20, eps: float = 1e-4 ** 0.25) -> float:
    """MASS's ``theta.ml``: ML estimate of the NB size given the means (Newton on the score)."""
    y = np.asarray(y, float)
    mu = np.asarray(mu, float)
    w = np.ones_like(y) if weights is None else np.asarray(weights, float)
    n = w.sum()
    t0 = n / np.sum(w * (y / mu - 1) ** 2)
    for _ in range(limit):
        t0 = abs(t0)
        score = np.sum(w * (_sf.digamma(t0 + y) - _sf.digamma(t0) + np.log(t0) + 1
                            - np.log(t0 + mu) - (y + t0) / (mu + t0)))
        info = np.sum(w * (-_sf.polygamma(1, t0 + y) + _sf.polygamma(1, t0) - 1 / t0
                           + 2 / (mu + t0) - (y + t0) / (mu + t0) ** 2))
        delta = score / info
        t0 = t0 + delta
        if abs(delta) <= eps:
            break
    return float(max(t0, 1e-8))


def _fit_nb(spec, fam: GlmFamily, nagq, ctl) -> GlmerFit:
    """``glmer.nb``: a Poisson fit, θ from ``theta.ml`` on its fitted means, then θ optimised
    (Brent on log θ within ±3 of the start, tol 5e-5 as lme4's ``optTheta``), refitting the NB
    model (stage 2 from the previous estimates) at each θ; the returned fit is at the best θ."""
    from scipy.optimize import minimize_scalar

    pois = make_glm_family("poisson", fam.link)
    m0 = build_model(spec, pois)
    f0 = fit_model(m0, nagq, {**ctl, "calc_derivs": False})
    th0 = theta_ml(m0.y, f0.state.mu, m0.pw, eps=2 * 5e-5)
    model = build_model(spec, fam.with_theta(th0))
    fit = fit_model(model, nagq, {**ctl, "calc_derivs": False})
    cache = {}
    last = {"fit": fit}

    def nbdev(logt):
        t = float(np.exp(logt))
        model.family = fam.with_theta(t)
        last["fit"].devfun.family = model.family
        f = fit_model(model, nagq, {**ctl, "calc_derivs": False},
                      start=(last["fit"].theta, last["fit"].beta), devfun=last["fit"].devfun)
        last["fit"] = f
        cache[logt] = f.objective
        return f.objective

    lt0 = np.log(th0)
    r = minimize_scalar(nbdev, bounds=(lt0 - 3, lt0 + 3), method="bounded",
                        options={"xatol": 1e-6})
    t = float(np.exp(r.x))
    model.family = fam.with_theta(t)
    last["fit"].devfun.family = model.family
    out = fit_model(model, nagq, ctl, start=(last["fit"].theta, last["fit"].beta),
                    devfun=last["fit"].devfun)
    out.opt["nb_theta_evals"] = len(cache)
    return out


# ------------------------------------------------------------------------ anova
def anova(*models: GlmerResult) -> pd.DataFrame:
    """Likelihood-ratio tests of nested glmer fits (lme4 ``anova``), ordered by ``npar``."""
    if len(models) < 2:
        raise ValueError("anova needs at least two models")
    ns = {m.nobs() for m in models}
    if len(ns) > 1:
        raise DataError(f"models were fitted to different numbers of rows {sorted(ns)}: "
                        "likelihood-ratio tests need the same data")
    fams = {(m.family.name, m.family.link) for m in models}
    if len(fams) > 1:
        raise BayesHLMError(f"models have different families/links {sorted(fams)}")
    return lrt_table(models)
