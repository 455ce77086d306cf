"""Priors: Bambi's data-scaled defaults, user overrides, and ``get_prior``.

Defaults reproduce ``bambi.priors.PriorScaler`` (Bambi 0.21) for the Gaussian
family, so our posterior is Bambi's for the same model:

* residual SD ``sigma ~ HalfStudentT(nu=4, sigma=sd(y))``;
* slope of fixed column j ``~ Normal(0, 2.5 sd(y) / sd(x_j))``;
* intercept (of the *centred* predictors, as Bambi samples it)
  ``~ Normal(mean(y), sqrt((2.5 sd(y))^2 + sum_j s_j^2 mean(x_j)^2))``;
* SD of a random intercept ``~ HalfNormal(<intercept prior sigma>)``, of a random
  slope on column z ``~ HalfNormal(2.5 sd(y) / sd(z))``;
* correlations of ``(x | g)`` terms: ``LKJ(eta=1)`` as brms (Bambi has none).

All SDs use ``numpy.std`` (ddof=0) like Bambi.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import BayesHLMError
from .design import Design

STD = 2.5  # Bambi's multiplier


@dataclass(frozen=True)
class Prior:
    """A prior distribution by PyMC name with its parameters.

    Examples
    --------
    >>> Prior("Normal", mu=0, sigma=10)
    >>> Prior("HalfStudentT", nu=4, sigma=5)
    >>> Prior("LKJ", eta=2)          # for correlations, key ``"corr|<factor>"``
    """

    dist: str
    params: dict = field(default_factory=dict)

    def __init__(self, dist: str, **params):
        object.__setattr__(self, "dist", dist)
        object.__setattr__(self, "params", {k: _as_float(v) for k, v in params.items()})

    def __str__(self) -> str:
        args = ", ".join(f"{k}={_fmt(v)}" for k, v in self.params.items())
        return f"{self.dist}({args})"

    def to_dict(self) -> dict:
        return {"dist": self.dist, **{k: np.asarray(v).tolist() for k, v in self.params.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "Prior":
        d = dict(d)
        return cls(d.pop("dist"), **d)


def _as_float(v):
    a = np.asarray(v, dtype=float)
    return float(a) if a.ndim == 0 else a


def _fmt(v) -> str:
    a = np.asarray(v)
    return f"{float(a):.4g}" if a.ndim == 0 else "[" + ", ".join(f"{x:.4g}" for x in a) + "]"


@dataclass
class PriorSet:
    """Every prior of a model, keyed by parameter name.

    Keys: fixed-effect names (``"Intercept"`` is the intercept of centred
    predictors when there is an intercept), ``"sigma"``, ``"<term>|<factor>"``
    for the SD of a group-level term (Bambi's names: ``"1|Subject"``,
    ``"Days|Subject"``), and ``"corr|<factor>"`` for an LKJ prior.
    """

    priors: dict[str, Prior]
    x_mean: np.ndarray  # column means used to centre predictors (zeros when no intercept)
    centered: bool

    def table(self) -> pd.DataFrame:
        rows = [{"parameter": k, "prior": str(p)} for k, p in self.priors.items()]
        return pd.DataFrame(rows).set_index("parameter")


def sd_key(term: str, factor: str) -> str:
    """Bambi's name of a group-level term: ``1|Subject``, ``Days|Subject``."""
    return f"{'1' if term == 'Intercept' else term}|{factor}"


def corr_key(factor: str) -> str:
    return f"corr|{factor}"


def _pos(s: float) -> float:
    return s if s > 0 else 1.0


@dataclass(frozen=True)
class Moments:
    """Data moments Bambi's default priors depend on (population SDs, ddof=0).

    ``z_sd`` maps each GroupTerm index to the SDs of its Z columns. The
    in-memory path computes these from the rows; the out-of-core path from the
    sufficient statistics, so both give the same priors.
    """

    y_mean: float
    y_sd: float
    x_mean: np.ndarray
    x_sd: np.ndarray
    z_sd: dict

    @classmethod
    def of(cls, design: Design) -> "Moments":
        return cls(float(np.mean(design.y)), float(np.std(design.y)), design.X.mean(axis=0),
                   design.X.std(axis=0), {k: g.Z.std(axis=0) for k, g in enumerate(design.groups)})


def priors_from_moments(design: Design, mom: Moments) -> PriorSet:
    """Bambi 0.21's default priors given the design's structure and the data moments."""
    y_sd = _pos(mom.y_sd)
    names = design.fixed_names
    has_int = design.has_intercept
    slope_sigma = {n: STD * y_sd / _pos(float(mom.x_sd[j])) for j, n in enumerate(names)
                   if n != "Intercept"}
    x_mean = np.asarray(mom.x_mean, dtype=float) if has_int else np.zeros(design.p)
    int_sigma = STD * y_sd
    if slope_sigma:
        means = np.array([x_mean[j] for j, n in enumerate(names) if n != "Intercept"])
        sig = np.array(list(slope_sigma.values()))
        int_sigma = float(np.sqrt(int_sigma**2 + np.dot(sig**2, means**2)))
    priors: dict[str, Prior] = {}
    for name in names:
        if name == "Intercept":
            priors[name] = Prior("Normal", mu=mom.y_mean, sigma=int_sigma)
        else:
            priors[name] = Prior("Normal", mu=0.0, sigma=slope_sigma[name])
    priors["sigma"] = Prior("HalfStudentT", nu=4.0, sigma=y_sd)
    for k, g in enumerate(design.groups):
        for j, term in enumerate(g.terms):
            scale = int_sigma if term == "Intercept" else STD * y_sd / _pos(float(mom.z_sd[k][j]))
            priors[sd_key(term, g.factor)] = Prior("HalfNormal", sigma=scale)
        if g.correlated:
            priors[corr_key(g.factor)] = Prior("LKJ", eta=1.0)
    return PriorSet(priors=priors, x_mean=x_mean, centered=has_int)


def default_priors(design: Design) -> PriorSet:
    """Bambi 0.21's default priors for a Gaussian model with this design."""
    return priors_from_moments(design, Moments.of(design))


SD_DISTS = {"HalfNormal", "HalfStudentT", "HalfCauchy", "Exponential", "Gamma", "InverseGamma",
            "LogNormal", "Weibull", "HalfFlat"}


def apply_user_priors(ps: PriorSet, user: dict | None) -> PriorSet:
    """Lay the user's priors over ``ps`` (in place); unknown keys and wrong families are errors."""
    for key, prior in (user or {}).items():
        if key not in ps.priors:
            raise BayesHLMError(
                f"prior given for {key!r}, which is not a parameter of this model; parameters "
                f"with priors: {', '.join(ps.priors)}"
            )
        if isinstance(prior, dict):
            prior = Prior.from_dict(prior)
        if not isinstance(prior, Prior):
            raise BayesHLMError(f"prior for {key!r} must be a bayes_hlm.Prior, got {prior!r}")
        if key.startswith("corr|") and prior.dist != "LKJ":
            raise BayesHLMError(f"prior for {key!r} must be Prior('LKJ', eta=...)")
        if ("|" in key and not key.startswith("corr|") or key == "sigma") and \
                prior.dist not in SD_DISTS:
            raise BayesHLMError(
                f"prior for standard deviation {key!r} must be positive-valued "
                f"({', '.join(sorted(SD_DISTS))}), got {prior.dist}"
            )
        ps.priors[key] = prior
    return ps


def resolve_priors(design: Design, user: dict | None = None) -> PriorSet:
    """Defaults with the user's priors laid over them; unknown keys are errors."""
    return apply_user_priors(default_priors(design), user)


def get_prior(formula: str, data: pd.DataFrame, **kwargs) -> pd.DataFrame:
    """The priors a fit would use, before fitting (brms ``get_prior``).

    Returns a table indexed by parameter name; pass overrides to :func:`bayes_hlm.fit`
    as ``priors={name: Prior(...)}``.
    """
    from .build import build_design

    return default_priors(build_design(formula, data, **kwargs)).table()
