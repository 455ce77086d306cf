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
from ..families import Family, default_family
from . import prior_registry
from .design import Design
from .intercept import intercept_shift  # noqa: F401 - its home; imported from here too
from .prior_registry import PriorError
from .row_keys import firsts

STD = 2.5  # Bambi's multiplier


@dataclass(frozen=True)
class Prior:
    """A prior distribution by PyMC name with its parameters.

    Examples
    --------
    >>> Prior("Normal", mu=0, sigma=10)
    >>> Prior("HalfStudentT", nu=4, sigma=5)
    >>> Prior("LKJ", eta=2)          # for correlations, key ``"corr|<factor>"``

    Impossible values of a known distribution's parameters (negative, zero, NaN
    or infinite scales) raise :class:`~bayes_hlm.spec.prior_registry.PriorError`
    here; unknown distributions and parameter names are refused when the prior
    is laid over a model (:func:`apply_user_priors`), before any sampling. The
    distributions and their parameters: :mod:`bayes_hlm.spec.prior_registry`.
    """

    dist: str
    params: dict = field(default_factory=dict)

    def __init__(self, dist: str, **params):
        if not isinstance(dist, str):
            raise PriorError(f"Prior's distribution must be a name such as 'Normal', not {dist!r}")
        vals = {}
        for k, v in params.items():
            try:
                vals[k] = _as_float(v)
            except (TypeError, ValueError):
                raise PriorError(f"{dist} prior: parameter {k!r} must be a number, got {v!r}") \
                    from None
        known = prior_registry.PRIOR_DISTS.get(dist)
        if known is not None:
            known.check_values(vals)
        object.__setattr__(self, "dist", dist)
        object.__setattr__(self, "params", vals)

    def validate(self, where: str = "") -> "Prior":
        """Check the distribution, its parameter names and values (``where``: the parameter
        the prior is for, named in the error); returns ``self``."""
        prior_registry.get_prior_dist(self.dist, where).validate(self.params, where)
        return self

    def __str__(self) -> str:
        args = ", ".join(f"{k}={_fmt(v)}" for k, v in self.params.items())
        return f"{self.dist}({args})"

    def to_dict(self) -> dict:
        return {"dist": self.dist, **{k: np.asarray(v).tolist() for k, v in self.params.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "Prior":
        d = dict(d)
        if "dist" not in d:
            raise PriorError(f"a prior given as a dict needs a 'dist' key (e.g. "
                             f"{{'dist': 'Normal', 'mu': 0, 'sigma': 1}}), got {d!r}")
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
    family_params: tuple[str, ...] = ("sigma",)  # keys of the family's own (positive) parameters

    def table(self) -> pd.DataFrame:
        rows = [{"parameter": k, "prior": str(p)} for k, p in self.priors.items()]
        return pd.DataFrame(rows).set_index("parameter")


def sd_key(term: str, factor: str) -> str:
    """Bambi's name of a group-level term: ``1|Subject``, ``Days|Subject``."""
    return f"{'1' if term == 'Intercept' else term}|{factor}"


def corr_key(factor: str) -> str:
    return f"corr|{factor}"


#: rows per block of the data moments' squared deviations
_MOMENT_BLOCK = 1 << 18


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
        """The moments of the rows; with frequency weights, of the rows repeated ``w`` times
        (so a weighted model has the priors Bambi gives the expanded data)."""
        w = getattr(design, "weights", None)

        def mean(a):
            return np.average(a, axis=0, weights=w)

        def sd(a):
            if w is not None or len(a) <= _MOMENT_BLOCK:
                return np.sqrt(np.average((a - mean(a)) ** 2, axis=0, weights=w))
            # many rows: the squared deviations block by block (no n x p temporaries:
            # 10M x 7 rows took ~9 s of a loaded machine for two 560 MB arrays)
            m = a.mean(axis=0)
            ss = sum(np.square(a[i:i + _MOMENT_BLOCK] - m).sum(axis=0)
                     for i in range(0, len(a), _MOMENT_BLOCK))
            return np.sqrt(ss / len(a))

        # Bambi 0.21 scales by the response as given, offset or not (PriorScaler reads
        # response_term.data); only Gaussian and t use these moments
        pat = getattr(design, "row_pattern", None)
        if w is None and pat is not None and len(pat) == design.n and design.n:
            # X's moments from its distinct rows and their counts (no pass over n x p)
            cnt = np.bincount(pat).astype(float)
            Xd = design.X[firsts(pat)]
            xm = cnt @ Xd / design.n
            x_mom = (xm, np.sqrt(cnt @ np.square(Xd - xm) / design.n))
        else:
            x_mom = (mean(design.X), sd(design.X))
        return cls(float(mean(design.y)), float(sd(design.y)), *x_mom,
                   {k: sd(g.Z) for k, g in enumerate(design.groups)})


def priors_from_moments(design: Design, mom: Moments, family: Family | None = None) -> PriorSet:
    """Bambi 0.21's default priors given the design's structure and the data moments.

    The family (default Gaussian) gives the response moments the linear predictor's
    priors are scaled with and the default priors of its own parameters.
    """
    family = family or default_family()
    y_mean, y_sd = family.prior_moments(mom.y_mean, mom.y_sd)
    y_sd = _pos(y_sd)
    names = design.fixed_names
    has_int = design.has_intercept
    if family.binary_prior_scaling:
        slope_sigma = _binary_slope_sigmas(design, mom)
    else:
        slope_sigma = {n: STD * y_sd / _pos(float(mom.x_sd[j])) for j, n in enumerate(names)
                       if n != "Intercept"}
    x_mean = np.asarray(mom.x_mean, dtype=float) if has_int else np.zeros(design.p)
    int_sigma = _intercept_sigma(STD * y_sd, slope_sigma, names, x_mean)
    priors: dict[str, Prior] = {}
    for name in names:
        if name == "Intercept" and family.binary_prior_scaling:
            priors[name] = Prior("Normal", mu=0.0, sigma=1.5)  # Bambi's logit/probit rule
        elif name == "Intercept":
            priors[name] = Prior("Normal", mu=y_mean, sigma=int_sigma)
        else:
            priors[name] = Prior("Normal", mu=0.0, sigma=slope_sigma[name])
    for key, (dist, params) in family.default_priors(mom.y_mean, y_sd).items():
        priors[key] = Prior(dist, **params)
    for k, g in enumerate(design.groups):
        for j, term in enumerate(g.terms):
            scale = int_sigma if term == "Intercept" else STD * y_sd / _pos(float(mom.z_sd[k][j]))
            priors[sd_key(term, g.factor)] = Prior("HalfNormal", sigma=scale)
        if g.correlated:
            priors[corr_key(g.factor)] = Prior("LKJ", eta=1.0)
    return PriorSet(priors=priors, x_mean=x_mean, centered=has_int,
                    family_params=family.param_names)


def _intercept_sigma(base: float, slope_sigma: dict, names, x_mean) -> float:
    """Bambi's ``get_intercept_stats``: ``sqrt(base^2 + sum_j s_j^2 mean(x_j)^2)``; also the
    default SD prior scale of a random intercept."""
    if not slope_sigma:
        return float(base)
    means = np.array([x_mean[j] for j, n in enumerate(names) if n != "Intercept"])
    sig = np.array([slope_sigma[n] for n in names if n != "Intercept"])
    return float(np.sqrt(base**2 + np.dot(sig**2, means**2)))


def _binary_slope_sigmas(design: Design, mom: Moments) -> dict[str, float]:
    """Bambi 0.21's slope prior SDs for Bernoulli/binomial models with a logit/probit link
    (``PriorScaler.scale_common``): 1 for a factor's columns and for interactions of factors
    only; ``1/sd(x)`` for a numeric column; for a numeric-by-factor interaction spanning several
    columns, ``1/sd`` of the row sums of its columns (Bambi's rule, reproduced as is)."""
    names = design.fixed_names
    out: dict[str, float] = {}
    terms = design.info.get("fixed_terms") or [("numeric", [j]) for j in range(design.p)]
    for kind, cols in terms:
        for j in cols:
            if names[j] == "Intercept":
                continue
            if kind in ("categoric", "interaction_categoric"):
                out[names[j]] = 1.0
            elif kind == "interaction" and len(cols) > 1:
                out[names[j]] = 1.0 / _pos(float(np.std(design.X[:, cols].sum(axis=1))))
            else:
                out[names[j]] = 1.0 / _pos(float(mom.x_sd[j]))
    return out


def default_priors(design: Design, family: Family | None = None) -> PriorSet:
    """Bambi 0.21's default priors for a model of ``family`` (default Gaussian) with this design."""
    return priors_from_moments(design, Moments.of(design), family)


#: positive-valued distributions, allowed for standard deviations (from the registry)
SD_DISTS = prior_registry.positive_dists()


def apply_user_priors(ps: PriorSet, user: dict | None) -> PriorSet:
    """Lay the user's priors over ``ps`` (in place); unknown keys and wrong families are errors."""
    if user is not None and not isinstance(user, dict):
        raise BayesHLMError(f"priors must be a dict {{parameter: Prior(...)}}, not "
                            f"{type(user).__name__}; see bayes_hlm.get_prior for the names")
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
        prior.validate(key)
        if key.startswith("corr|") and prior.dist != "LKJ":
            raise BayesHLMError(f"prior for {key!r} must be Prior('LKJ', eta=...)")
        if ("|" in key and not key.startswith("corr|") or key in ps.family_params) and \
                prior.dist not in SD_DISTS:
            raise BayesHLMError(
                f"prior for {'standard deviation ' if '|' in key or key == 'sigma' else ''}{key!r} "
                f"must be "
                f"positive-valued "
                f"({', '.join(sorted(SD_DISTS))}), got {prior.dist}"
            )
        ps.priors[key] = prior
    return ps


def resolve_priors(design: Design, user: dict | None = None,
                   family: Family | None = None) -> PriorSet:
    """Defaults with the user's priors laid over them; unknown keys and impossible priors are
    errors (:class:`~bayes_hlm.spec.prior_registry.PriorError`), raised before any sampling."""
    return apply_user_priors(default_priors(design, family), user)


def get_prior(formula: str, data: pd.DataFrame, *, family: "str | Family" = "gaussian",
              link: str | None = None, **kwargs) -> pd.DataFrame:
    """The priors a fit would use, before fitting (brms ``get_prior``).

    ``family``/``link`` as in :func:`bayes_hlm.fit` (Bambi 0.21's defaults per family).
    Returns a table indexed by parameter name; pass overrides to :func:`bayes_hlm.fit`
    as ``priors={name: Prior(...)}``.
    """
    from ..families import get_family
    from .build import build_spec

    fam = get_family(family, link)
    return default_priors(build_spec(formula, data, family=fam, **kwargs).design, fam).table()
