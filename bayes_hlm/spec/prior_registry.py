"""Every fact about a prior distribution, stated once.

For each distribution a :class:`~bayes_hlm.spec.priors.Prior` may name, the
registry says

* its parameter names (each PyMC spelling), their domains, and PyMC's defaults:
  :meth:`PriorDist.validate` refuses impossible values (``HalfNormal(sigma=-5)``,
  ``LKJ(eta=-1)``, NaN or zero scales) and unknown names (``Normal(mean=, sd=)``)
  with an error naming the prior, the parameter and the value, before any sampling;
* its support and PyMC's transform (``"log"`` for positive supports);
* the PyMC class (:meth:`PriorDist.pymc`);
* the integer code of its compiled log density and gradient in
  :mod:`bayes_hlm.backends.numba_density` (``numba_code``; the jitted code dispatches
  on these integers, so a code is a stable identifier: never renumber one, as
  Numba's on-disk cache keeps compiled branches), the parameter order the kernel
  reads, and a typical value (the sampler's starting point);
* the role of each parameter when the variable is rescaled, ``theta' = a theta``
  (:meth:`PriorDist.rescale`, used by :mod:`bayes_hlm.spec.scaling`);
* what prior-sensitivity analysis scales (:meth:`PriorDist.widen`, used by
  :mod:`bayes_hlm.results.sensitivity`): the spread, never the location.

A new prior distribution is one :func:`register` call. This module imports
neither PyMC nor Numba (the spec stage stays light).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Mapping

import numpy as np

from ..errors import BayesHLMError

__all__ = ["Param", "PriorDist", "PriorError", "ScalingError", "PRIOR_DISTS", "register",
           "get_prior_dist", "positive_dists", "numba_code"]

#: how a parameter changes when the variable is multiplied by ``a > 0``:
#: ``loc``/``scale`` x a, ``prec`` / a², ``rate`` / a, ``log`` + log a, ``fixed`` unchanged
Role = Literal["loc", "scale", "prec", "rate", "log", "fixed"]
#: the roles that describe the spread of a distribution (what sensitivity analysis widens)
SPREAD_ROLES = ("scale", "prec", "rate", "log")


class PriorError(BayesHLMError):
    """A prior names an unknown distribution or parameter, or an impossible value."""


class ScalingError(NotImplementedError):
    """A prior cannot be transformed to the rescaled problem (unknown family or parameter)."""


@dataclass(frozen=True)
class Param:
    """One parameter of a prior distribution.

    Attributes
    ----------
    name : str
        PyMC's keyword.
    role : Role
        Transformation under ``theta' = a theta`` (see :data:`Role`).
    domain : {"real", "positive"}
        ``"real"``: any finite value; ``"positive"``: finite and > 0.
    """

    name: str
    role: Role
    domain: Literal["real", "positive"] = "positive"


@dataclass(frozen=True)
class PriorDist:
    """What the package knows about one prior distribution (see the module docstring).

    Attributes
    ----------
    name : str
        The name users write in ``Prior(name, ...)``.
    params : tuple of Param
        Every accepted parameter.
    spellings : tuple of tuple of str
        The parameter sets PyMC accepts together (``("mu", "sigma")``, ``("mu", "tau")``);
        a prior's names must all belong to one spelling.
    defaults : dict
        PyMC's defaults: a parameter of the chosen spelling that is neither given
        nor defaulted is an error.
    support : {"real", "positive", "correlation"}
    transform : {"none", "log", "cholesky"}
        PyMC's default transform to the unconstrained space.
    pymc_name : str
        Attribute of ``pymc`` (``"LKJCorr"`` for ``"LKJ"``).
    numba_code : int or None
        Branch of the compiled positive-prior density (``None``: not compiled).
    numba_params : tuple of str
        The parameters, in the order the compiled density reads them.
    typical : callable or None
        ``params -> float``: a typical value, used as the sampler's starting point.
    widen : {"spread", "none"} or None
        Sensitivity analysis: ``"spread"`` multiplies the spread by the factor,
        ``"none"`` leaves the prior as it is (LKJ), ``None`` has no rule (an error).
    """

    name: str
    params: tuple[Param, ...]
    spellings: tuple[tuple[str, ...], ...]
    defaults: Mapping[str, float] = field(default_factory=dict)
    support: Literal["real", "positive", "correlation"] = "real"
    transform: Literal["none", "log", "cholesky"] = "none"
    pymc_name: str = ""
    numba_code: int | None = None
    numba_params: tuple[str, ...] = ()
    typical: Callable[[Mapping[str, float]], float] | None = None
    widen_rule: Literal["spread", "none"] | None = "spread"
    relation: Callable[[Mapping[str, float]], str | None] | None = None

    # ------------------------------------------------------------------ facts
    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def roles(self) -> dict[str, str]:
        return {p.name: p.role for p in self.params}

    def pymc(self):
        """The PyMC distribution class."""
        import pymc as pm

        return getattr(pm, self.pymc_name or self.name)

    # ------------------------------------------------------------- validation
    def check_values(self, params: Mapping[str, object], where: str = "") -> None:
        """Refuse non-finite values and non-positive values of positive parameters.

        Parameters this distribution does not have are left to :meth:`validate`.
        """
        dom = {p.name: p.domain for p in self.params}
        for k, v in params.items():
            if k not in dom:
                continue
            a = np.asarray(v, dtype=float)
            bad = ~np.isfinite(a) if dom[k] == "real" else ~(np.isfinite(a) & (a > 0))
            if np.any(bad):
                what = "a finite number" if dom[k] == "real" else "a finite number > 0"
                shown = a if a.ndim == 0 else a[bad][0]
                raise PriorError(
                    f"{_prefix(where)}{self.name} prior: parameter {k!r} must be {what}, "
                    f"got {float(shown)!r}"
                )

    def validate(self, params: Mapping[str, object], where: str = "") -> None:
        """Full check: names belong to one PyMC spelling, none missing, values possible."""
        unknown = [k for k in params if k not in self.param_names]
        if unknown:
            raise PriorError(
                f"{_prefix(where)}{self.name} prior has no parameter {unknown[0]!r}; "
                f"it accepts {_spellings(self)}"
            )
        given = set(params)
        fits = [s for s in self.spellings if given <= set(s)]
        if not fits:
            raise PriorError(
                f"{_prefix(where)}{self.name} prior: parameters {sorted(given)} cannot be "
                f"given together; use one of {_spellings(self)}"
            )
        missing = [k for k in fits[0] if k not in given and k not in self.defaults]
        if missing and not any(all(k in given or k in self.defaults for k in s) for s in fits):
            raise PriorError(
                f"{_prefix(where)}{self.name} prior needs parameter {missing[0]!r} "
                f"(accepted: {_spellings(self)})"
            )
        self.check_values(params, where)
        msg = self.relation(params) if self.relation else None
        if msg:
            raise PriorError(f"{_prefix(where)}{self.name} prior: {msg}")

    # ---------------------------------------------------------- transformations
    def rescale(self, params: Mapping[str, object], a) -> dict:
        """Parameters of the prior of ``a * theta`` when ``theta`` has this prior (``a > 0``)."""
        roles = self.roles()
        out = {}
        for k, v in params.items():
            role = roles.get(k)
            if role is None:
                raise ScalingError(f"cannot rescale parameter {k!r} of a {self.name} prior")
            out[k] = _apply(role, np.asarray(v, dtype=float), a)
        return out

    def widen(self, params: Mapping[str, object], factor: float) -> dict:
        """Parameters with the spread multiplied by ``factor``, location kept (sensitivity)."""
        if self.widen_rule == "none":
            return dict(params)
        roles = self.roles()
        spread = [k for k in params if roles.get(k) in SPREAD_ROLES]
        if self.widen_rule is None or not spread:
            raise BayesHLMError(f"don't know the scale parameter of {self.name}"
                                f"({', '.join(params)})")
        return {k: _apply(roles[k], np.asarray(v, dtype=float), factor) if k in spread else v
                for k, v in params.items()}


def _apply(role: str, v: np.ndarray, a):
    if role in ("loc", "scale"):
        return v * a
    if role == "prec":
        return v / a**2
    if role == "rate":
        return v / a
    if role == "log":
        return v + np.log(a)
    return v


def _prefix(where: str) -> str:
    return f"prior for {where!r}: " if where else ""


def _spellings(d: PriorDist) -> str:
    return " or ".join(f"{d.name}({', '.join(s)})" for s in d.spellings) if d.spellings \
        else f"{d.name}() without parameters"


# --------------------------------------------------------------------------- #
# the registry
# --------------------------------------------------------------------------- #
PRIOR_DISTS: dict[str, PriorDist] = {}


def register(d: PriorDist) -> PriorDist:
    """Add (or replace) a prior distribution; numba codes must stay unique."""
    if d.numba_code is not None:
        for other in PRIOR_DISTS.values():
            if other.numba_code == d.numba_code and other.name != d.name:
                raise ValueError(f"numba code {d.numba_code} of {d.name} is taken by {other.name}")
    PRIOR_DISTS[d.name] = d
    return d


def get_prior_dist(name: str, where: str = "") -> PriorDist:
    """The registry entry of ``name``; an unknown name is a :class:`PriorError` listing the known."""
    try:
        return PRIOR_DISTS[name]
    except (KeyError, TypeError):
        raise PriorError(f"{_prefix(where)}unknown prior distribution {name!r}; known: "
                         f"{', '.join(sorted(PRIOR_DISTS))}") from None


def positive_dists() -> set[str]:
    """Distributions on the positive half-line (allowed for standard deviations)."""
    return {n for n, d in PRIOR_DISTS.items() if d.support == "positive"}


def numba_code(name: str) -> int:
    """Compiled-density code of ``name`` (used as a constant inside the jitted code)."""
    code = PRIOR_DISTS[name].numba_code
    assert code is not None, name
    return code


def _loc(name="mu"):
    return Param(name, "loc", "real")


def _sc(name):
    return Param(name, "scale")


_P = Param
# real line
register(PriorDist("Normal", (_loc(), _sc("sigma"), _P("tau", "prec")),
                   (("mu", "sigma"), ("mu", "tau")), {"mu": 0.0, "sigma": 1.0}))
register(PriorDist("StudentT", (_P("nu", "fixed"), _loc(), _sc("sigma"), _P("lam", "prec")),
                   (("nu", "mu", "sigma"), ("nu", "mu", "lam")), {"mu": 0.0, "sigma": 1.0}))
register(PriorDist("Cauchy", (_loc("alpha"), _sc("beta")), (("alpha", "beta"),)))
register(PriorDist("Laplace", (_loc(), _sc("b")), (("mu", "b"),)))
register(PriorDist("Logistic", (_loc(), _sc("s")), (("mu", "s"),), {"mu": 0.0, "s": 1.0}))
register(PriorDist("SkewNormal", (_loc(), _sc("sigma"), _P("tau", "prec"),
                                  _P("alpha", "fixed", "real")),
                   (("mu", "sigma", "alpha"), ("mu", "tau", "alpha")),
                   {"mu": 0.0, "sigma": 1.0, "alpha": 1.0}))
register(PriorDist("Uniform", (_loc("lower"), _loc("upper")), (("lower", "upper"),),
                   {"lower": 0.0, "upper": 1.0}, widen_rule=None,
                   relation=lambda p: None if np.all(np.asarray(p.get("lower", 0.0))
                                                     < np.asarray(p.get("upper", 1.0)))
                   else f"'lower' ({p.get('lower', 0.0)}) must be below 'upper' "
                        f"({p.get('upper', 1.0)})"))
register(PriorDist("Flat", (), ((),), widen_rule=None))
# positive half-line (standard deviations)
_POS = dict(support="positive", transform="log")
register(PriorDist("HalfFlat", (), ((),), widen_rule=None, **_POS))
register(PriorDist("HalfNormal", (_sc("sigma"), _P("tau", "prec")), (("sigma",), ("tau",)),
                   {"sigma": 1.0}, numba_code=1, numba_params=("sigma",),
                   typical=lambda p: p["sigma"], **_POS))
register(PriorDist("HalfStudentT", (_P("nu", "fixed"), _sc("sigma"), _P("lam", "prec")),
                   (("nu", "sigma"), ("nu", "lam")), {"sigma": 1.0}, numba_code=2,
                   numba_params=("nu", "sigma"), typical=lambda p: p["sigma"], **_POS))
register(PriorDist("HalfCauchy", (_sc("beta"),), (("beta",),), numba_code=3,
                   numba_params=("beta",), typical=lambda p: p["beta"], **_POS))
register(PriorDist("Exponential", (_P("lam", "rate"), _sc("scale")), (("lam",), ("scale",)),
                   numba_code=4, numba_params=("lam",), typical=lambda p: 1.0 / p["lam"], **_POS))
register(PriorDist("Gamma", (_P("alpha", "fixed"), _P("beta", "rate"), _sc("mu"), _sc("sigma")),
                   (("alpha", "beta"), ("mu", "sigma")), numba_code=5,
                   numba_params=("alpha", "beta"), typical=lambda p: p["alpha"] / p["beta"], **_POS))
register(PriorDist("InverseGamma", (_P("alpha", "fixed"), _sc("beta"), _sc("mu"), _sc("sigma")),
                   (("alpha", "beta"), ("mu", "sigma")), numba_code=6,
                   numba_params=("alpha", "beta"),
                   typical=lambda p: p["beta"] / (p["alpha"] + 1.0), **_POS))
register(PriorDist("LogNormal", (_P("mu", "log", "real"), _P("sigma", "fixed"),
                                 _P("tau", "fixed")),
                   (("mu", "sigma"), ("mu", "tau")), {"mu": 0.0, "sigma": 1.0}, numba_code=7,
                   numba_params=("mu", "sigma"), typical=lambda p: np.exp(p["mu"]), **_POS))
register(PriorDist("Weibull", (_P("alpha", "fixed"), _sc("beta")), (("alpha", "beta"),), **_POS))
# correlation matrices: LKJ(eta) is invariant under rescaling the variables
register(PriorDist("LKJ", (_P("eta", "fixed"),), (("eta",),), {"eta": 1.0},
                   support="correlation", transform="cholesky", pymc_name="LKJCorr",
                   widen_rule="none"))
