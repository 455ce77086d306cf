"""The settings of a fit as the user gave them, validated in one place.

:func:`validate_settings` is used by :func:`bayes_hlm.fit`, :func:`bayes_hlm.fitting.fit_dask`
and the command line, so every argument is checked once, with a message naming it
(``--tune`` on the command line, ``tune`` in Python). :class:`FitSettings` is what
``FitInfo.requested`` stores and what ``update()`` replays. Light on purpose (no
PyMC import): the command line validates before loading the engines.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from .errors import BayesHLMError

METHODS = ("auto", "full", "marginal")
SAMPLERS = ("auto", "numba", "jax", "pymc", "nutpie", "numpyro", "gibbs")
MASS_MATRICES = ("auto", "diag", "low_rank")
NA_ACTIONS = ("omit", "raise")
ENGINES = ("memory", "dask")
#: engines whose mass-matrix adaptation ``mass_matrix=`` sets (the others adapt a diagonal one)
NUTPIE_SAMPLERS = ("numba", "nutpie")
#: largest seed every engine accepts (NumPy's legacy ``RandomState`` takes 32 bits)
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class FitSettings:
    """Every setting of a fit exactly as given (``None`` and ``"auto"`` kept), JSON-able.

    ``priors`` holds ``{name: Prior.to_dict()}`` and ``control`` the check actions as a
    dict, so the record survives ``save``/``load``; :meth:`fit_kwargs` turns them back
    into :func:`bayes_hlm.fit` arguments.
    """

    method: str = "auto"
    sampler: str | None = None
    chains: int = 4
    draws: int = 1000
    tune: int = 1000
    target_accept: float = 0.8
    seed: int | None = None
    mass_matrix: str = "auto"
    rescale: bool | str = "auto"
    centered: Any = "auto"  # "auto", None or {factor: bool}
    priors: dict | None = None
    na_action: str = "omit"
    control: dict | None = None
    engine: str = "memory"
    family: str = "gaussian"
    link: str | None = None
    weights: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping | None) -> "FitSettings | None":
        """Inverse of :meth:`to_dict`; unknown keys (a newer file) are ignored."""
        if d is None:
            return None
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def fit_kwargs(self) -> dict:
        """Keyword arguments for :func:`bayes_hlm.fit` that reproduce these settings."""
        from .spec.control import Control
        from .spec.priors import Prior

        kw = asdict(self)
        if self.priors is not None:
            kw["priors"] = {k: Prior.from_dict(v) for k, v in self.priors.items()}
        if self.control is not None:
            kw["control"] = Control(**self.control)
        if isinstance(self.centered, dict):
            kw["centered"] = dict(self.centered)
        return kw


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_bool(v) -> bool:
    return isinstance(v, (bool, np.bool_))


def _choice(name: str, value, allowed: tuple, label) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise BayesHLMError(f"{label(name)} must be one of {', '.join(map(repr, allowed))}, "
                            f"not {value!r}")


def _count(name: str, value, label, what: str) -> int:
    if not _is_int(value) or value < 1:
        raise BayesHLMError(f"{label(name)} must be a whole number >= 1 ({what}), not {value!r}")
    return int(value)


def validate_settings(*, method="auto", sampler=None, chains=4, draws=1000, tune=1000,
                      target_accept=0.8, seed=None, mass_matrix="auto", rescale="auto",
                      centered="auto", priors=None, na_action="omit", control=None,
                      engine="memory", progressbar=None, warn=True, family="gaussian",
                      link=None, weights=None,
                      names: Mapping[str, str] | None = None) -> FitSettings:
    """Check every argument of :func:`bayes_hlm.fit`; returns them as :class:`FitSettings`.

    Parameters
    ----------
    names : mapping, optional
        How to name an argument in messages (the command line passes ``{"tune": "--tune"}``).

    Raises
    ------
    BayesHLMError
        Naming the first bad argument, the value and what is allowed. Checks that need the
        data (a ``centered`` factor that does not exist, a prior for a parameter the model
        lacks) are made when the model is built (:func:`check_centered`).
    """
    names = dict(names or {})

    def label(n: str) -> str:
        return names.get(n, n)

    _choice("method", method, METHODS, label)
    if sampler is not None:
        _choice("sampler", sampler, SAMPLERS, label)
    chains = _count("chains", chains, label, "the number of Markov chains")
    draws = _count("draws", draws, label, "posterior draws kept per chain")
    # nutpie panics on tune=0 (its adaptation needs one warm-up step) and PyMC's NUTS
    # cannot adapt its step size without one
    tune = _count("tune", tune, label, "warm-up steps per chain")
    if (isinstance(target_accept, (bool, np.bool_, str, bytes))
            or not isinstance(target_accept, (int, float, np.integer, np.floating))
            or not math.isfinite(float(target_accept)) or not 0 < float(target_accept) < 1):
        raise BayesHLMError(f"{label('target_accept')} must be a number strictly between 0 and 1 "
                            f"(e.g. 0.9), not {target_accept!r}")
    target_accept = float(target_accept)
    if seed is not None and (not _is_int(seed) or not 0 <= seed <= MAX_SEED):
        raise BayesHLMError(f"{label('seed')} must be None or a whole number from 0 to {MAX_SEED}, "
                            f"not {seed!r}")
    seed = None if seed is None else int(seed)
    _choice("mass_matrix", mass_matrix, MASS_MATRICES, label)
    if not (_is_bool(rescale) or (isinstance(rescale, str) and rescale == "auto")):
        raise BayesHLMError(f"{label('rescale')} must be True, False or 'auto', not {rescale!r}")
    rescale = rescale if isinstance(rescale, str) else bool(rescale)
    centered = _centered(centered, label)
    priors = _priors(priors, label)
    _choice("na_action", na_action, NA_ACTIONS, label)
    control = _control(control, label)
    _choice("engine", engine, ENGINES, label)
    if progressbar is not None and not _is_bool(progressbar):
        raise BayesHLMError(f"{label('progressbar')} must be True, False or None, not {progressbar!r}")
    if not _is_bool(warn):
        raise BayesHLMError(f"{label('warn')} must be True or False, not {warn!r}")
    family, link = _family(family, link, label)
    if weights is not None and not isinstance(weights, str):
        raise BayesHLMError(f"{label('weights')} must be None or the name of a data column "
                            f"(e.g. 'n'), not {type(weights).__name__}")
    if sampler == "numba" and method == "full" and family == "gaussian":
        # non-Gaussian families: 'numba' is the compiled full-model GLMM density
        raise BayesHLMError(
            f"{label('sampler')}='numba' samples the marginal model (group effects integrated "
            f"out) and cannot run {label('method')}='full'; use {label('method')}='marginal' "
            f"(or 'auto'), or a sampler for the full model: 'auto', 'pymc', 'nutpie', 'jax', 'numpyro'")
    if sampler == "gibbs" and method == "marginal":
        raise BayesHLMError(
            f"{label('sampler')}='gibbs' samples the full model (every group effect, "
            f"Metropolis-within-Gibbs); use {label('method')}='full' or 'auto'")
    if mass_matrix == "low_rank" and sampler not in (None, "auto") + NUTPIE_SAMPLERS:
        raise BayesHLMError(
            f"{label('mass_matrix')}='low_rank' is an adaptation of the nutpie engines "
            f"({', '.join(map(repr, NUTPIE_SAMPLERS))}); {label('sampler')}={sampler!r} adapts a "
            f"diagonal mass matrix: use {label('mass_matrix')}='auto' or 'diag', or a nutpie sampler")
    return FitSettings(method=method, sampler=sampler, chains=chains, draws=draws, tune=tune,
                       target_accept=target_accept, seed=seed, mass_matrix=mass_matrix,
                       rescale=rescale, centered=centered, priors=priors, na_action=na_action,
                       control=control, engine=engine, family=family, link=link,
                       weights=weights)


def _family(family, link, label):
    """Family name and link as given (a Family instance is recorded by name and link)."""
    from .families import Family, get_family

    if isinstance(family, Family):
        return family.name, family.link.name if link is None else link
    if not isinstance(family, str):
        raise BayesHLMError(f"{label('family')} must be a family name such as 'bernoulli', not "
                            f"{family!r}")
    if link is not None and not isinstance(link, str):
        raise BayesHLMError(f"{label('link')} must be None or a link name such as 'probit', not "
                            f"{link!r}")
    fam = get_family(family, link)  # unknown names: an error listing the valid ones
    return fam.name, link


def _centered(centered, label):
    if centered is None or (isinstance(centered, str) and centered == "auto"):
        return centered
    if not isinstance(centered, Mapping):
        raise BayesHLMError(f"{label('centered')} must be 'auto', None or a dict "
                            f"{{factor: True/False}}, not {centered!r}")
    out = {}
    for k, v in centered.items():
        if not isinstance(k, str) or not _is_bool(v):
            raise BayesHLMError(f"{label('centered')} must map grouping-factor names to True/False; "
                                f"got {k!r}: {v!r}")
        out[k] = bool(v)
    return out


def _priors(priors, label):
    from .spec.priors import Prior

    if priors is None:
        return None
    if not isinstance(priors, Mapping):
        raise BayesHLMError(f"{label('priors')} must be a dict {{parameter: Prior(...)}} (see "
                            f"bayes_hlm.get_prior for the names), not a {type(priors).__name__}")
    out = {}
    for k, p in priors.items():
        if not isinstance(k, str):
            raise BayesHLMError(f"{label('priors')}: parameter names must be strings, got {k!r}")
        if isinstance(p, Mapping):
            try:
                p = Prior.from_dict(dict(p))
            except Exception as exc:
                raise BayesHLMError(f"{label('priors')}[{k!r}]: cannot read {dict(p)!r} as a prior "
                                    f"({exc})") from None
        if not isinstance(p, Prior):
            raise BayesHLMError(f"{label('priors')}[{k!r}] must be a bayes_hlm.Prior, got {p!r}")
        out[k] = p.to_dict()
    return out


def _control(control, label):
    from dataclasses import asdict as _asdict

    from .spec.control import Control

    if control is None:
        return None
    if not isinstance(control, Control):
        raise BayesHLMError(f"{label('control')} must be a bayes_hlm Control(...) (lme4's "
                            f"lmerControl), not {control!r}")
    return _asdict(control)


def check_centered(centered, factors, method: str) -> None:
    """``centered`` against the model: every named factor exists, and only the full model
    (which samples the group effects) has a parametrisation to set."""
    if not isinstance(centered, Mapping) or not centered:
        return
    unknown = [k for k in centered if k not in factors]
    if unknown:
        raise BayesHLMError(f"centered names {unknown[0]!r}, which is not a grouping factor of this "
                            f"model (factors: {', '.join(map(repr, factors))})")
    if method != "full":
        raise BayesHLMError(
            "centered= sets how the full model samples the group effects; method="
            f"{method!r} integrates them out, so it has no effect there. Use method='full' "
            "to choose the parametrisation, or leave centered='auto'")
