"""ICC / R² of a glmer fit with performance's (0.10.2) conventions.

The same :func:`~bayes_hlm.inference.variance.variance_parts` as the Bayesian and REML fits
(one "draw"), with the family's latent-scale variance:

* binomial: π²/3 (logit), 1 (probit), π²/6 (cloglog);
* Gamma: ``sigma²`` (lme4's ``sigma()``);
* Poisson / negative binomial: the lognormal approximation ``log(1 + 1/mu [+ 1/θ])`` with
  ``mu = exp(intercept of the null model)``, the null model being the same random effects
  (and offset) with an intercept only, refitted (insight's ``null_model``);
* an observation-level random intercept (a factor with one level per row, e.g. ``(1 | INDEX)``
  on grouseticks) is overdispersion: its variance moves from the random to the residual part
  (performance's ``var_dispersion``; done by ``variance_parts`` for every non-Gaussian fit).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..families import get_family
from ..inference.variance import VarianceParts, variance_parts

__all__ = ["glmer_variance_parts", "null_intercept", "null_model_intercept"]

_BHLM = {"binomial": "bernoulli", "poisson": "poisson", "Gamma": "gamma",
         "negative_binomial": "negativebinomial"}


def null_intercept(spec, family, control=None, nagq: int = 1) -> float:
    """Intercept of the null model (intercept + the same random effects + offset) of ``spec``,
    fitted by glmer (Laplace) with the glmer ``family`` (NB: its θ held): insight's
    ``null_model``, whose ``exp(intercept)`` is performance's ``mu`` for count families."""
    from .fit import fit_model
    from .model import build_model
    import dataclasses

    d0 = dataclasses.replace(spec.design, X=np.ones((spec.design.n, 1)), fixed_names=("Intercept",))
    model0 = build_model(dataclasses.replace(spec, design=d0), family)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f0 = fit_model(model0, nagq, control)   # with the restarts: no stopping short
    return float(f0.beta[0])


def null_model_intercept(res) -> float:
    """Intercept of the null model of glmer result ``res`` (:func:`null_intercept`), cached."""
    if "_null_intercept" not in res.__dict__:
        if res.spec is None:
            raise ValueError("the glmer result has no model spec to refit the null model from")
        res.__dict__["_null_intercept"] = null_intercept(res.spec, res.model.family, res.control,
                                                         min(res.nagq, 1))
    return res.__dict__["_null_intercept"]


def glmer_variance_parts(res, terms="performance") -> VarianceParts:
    fam = res.family
    bh = get_family(_BHLM[fam.name], fam.link if fam.name != "Gamma" else fam.link)
    covs = {k: S[None] for k, S in res.covariances().items()}
    params: dict = {}
    eta_mean = None
    if fam.name == "Gamma":
        params = {"alpha": np.array([1.0 / res.sigma ** 2])}
    elif fam.name in ("poisson", "negative_binomial"):
        eta_mean = np.array([null_model_intercept(res)])
        if fam.name == "negative_binomial":
            params = {"alpha": np.array([fam.nb_theta])}
    else:
        params = {"p": np.zeros(1)}
    return variance_parts(res.design, res.beta[None, :], None, covs, family=bh,
                          family_params=params, terms=terms, eta_mean=eta_mean)
