"""Named scalar parameters of a Bayesian fit and their draws (posterior and prior).

Names follow brms: fixed effects as in ``fixef()`` (``Days``; also ``b_Days``), ``sigma``,
``sd_<factor>__<term>`` and ``cor_<factor>__<a>__<b>``; the tidy/summary names
(``sd(Days | Subject)``, ``cor(Intercept, Days | Subject)``) come with
:func:`posterior_parameters`. Used by the inference helpers through
:class:`~bayes_hlm.results.bayes_result.BayesResult`'s methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import numpy as np

from ..spec import variable_names as naming
from ..errors import BayesHLMError
from ..inference.tidy import Parameter, check_effects
from .family_draws import family_of

if TYPE_CHECKING:
    from .bayes_result import BayesResult

__all__ = ["parameter_keys", "parameter_draws", "prior_draws", "posterior_parameters"]


def parameter_keys(result: "BayesResult") -> dict[str, tuple]:
    """Names usable in hypotheses -> how to get them: fixed effects (plain and ``b_``
    prefixed), ``sigma``, brms-style ``sd_<factor>__<term>`` and ``cor_<factor>__<a>__<b>``."""
    keys: dict[str, tuple] = {}
    for j, n in enumerate(result.design.fixed_names):
        keys[n] = ("fixed", j)
        keys[f"b_{n}"] = ("fixed", j)
    keys["sigma"] = ("sigma",)
    for f in result.factors:
        terms = result._terms(f)
        for i, t in enumerate(terms):
            keys[f"sd_{f}__{t}"] = ("sd", f, i)
        if result._draws.has(naming.corr_var(f)):
            for i, j in result._corr_pairs(f):
                keys[f"cor_{f}__{terms[i]}__{terms[j]}"] = ("cor", f, i, j)
    return keys


def parameter_draws(result: "BayesResult", names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Flat posterior draws of named parameters (see :func:`parameter_keys` for the names)."""
    keys = parameter_keys(result)
    names = list(keys) if names is None else list(names)
    out = {}
    src = result._draws
    for n in names:
        if n not in keys:
            raise BayesHLMError(f"unknown parameter {n!r}; parameters: {', '.join(keys)}")
        k = keys[n]
        if k[0] == "fixed":
            out[n] = src.flat(naming.FIXED)[:, k[1]]
        elif k[0] == "sigma":
            out[n] = src.flat(naming.SIGMA)
        elif k[0] == "sd":
            out[n] = src.flat(naming.sd_var(k[1]))[:, k[2]]
        else:
            out[n] = src.flat(naming.corr_var(k[1]))[:, k[2], k[3]]
    return out


def _draw_dist(prior, n: int, rng: np.random.Generator) -> np.ndarray:
    import pymc as pm

    from ..spec.prior_registry import get_prior_dist

    dist = get_prior_dist(prior.dist).pymc().dist(**prior.params)
    return np.asarray(pm.draw(dist, draws=n, random_seed=int(rng.integers(2**31))), dtype=float)


def prior_draws(result: "BayesResult", n: int = 4000, seed: int | None = 0) -> dict[str, np.ndarray]:
    """Draws from the prior of every named parameter (as brms ``sample_prior = "only"``).

    Fixed effects are drawn on Bambi's centred-intercept scale and transformed back, as
    the model does; a correlation of an LKJ(eta) block of size q has the marginal
    ``2 Beta(a, a) - 1`` with ``a = eta - 1 + q / 2``.
    """
    from ..spec.priors import corr_key, intercept_shift, sd_key

    rng = np.random.default_rng(seed)
    ps = result.priors
    names = list(result.design.fixed_names)
    raw = np.column_stack([_draw_dist(ps.priors[nm], n, rng) for nm in names]) if names else \
        np.zeros((n, 0))
    if ps.centered and "Intercept" in names:
        i = names.index("Intercept")
        raw[:, i] = raw[:, i] - intercept_shift(raw, ps.x_mean, i)
    out = {}
    for j, nm in enumerate(names):
        out[nm] = out[f"b_{nm}"] = raw[:, j]
    out["sigma"] = _draw_dist(ps.priors["sigma"], n, rng)
    for f in result.factors:
        terms = result._terms(f)
        for t in terms:
            out[f"sd_{f}__{t}"] = _draw_dist(ps.priors[sd_key(t, f)], n, rng)
        if result._draws.has(naming.corr_var(f)):
            eta = ps.priors.get(corr_key(f))
            eta = 1.0 if eta is None else float(eta.params.get("eta", 1.0))
            q = sum(g.q for g in result.design.groups if g.factor == f and g.correlated)
            a = eta - 1 + q / 2
            for i, j in result._corr_pairs(f):
                out[f"cor_{f}__{terms[i]}__{terms[j]}"] = 2 * rng.beta(a, a, n) - 1
    return out


def posterior_parameters(result: "BayesResult", effects: Iterable[str]) -> list[Parameter]:
    """Every scalar parameter of the chosen ``effects`` (fixed / ran_pars / ran_vals) with
    its broom.mixed term name, its summary row name and its flat draws."""
    effects = check_effects(effects)
    src = result._draws
    out = []
    if "fixed" in effects:
        beta = src.flat(naming.FIXED)
        for j, n in enumerate(result.design.fixed_names):
            out.append(Parameter("fixed", "", "", n, n, beta[:, j]))
    if "ran_pars" in effects:
        for f in result.factors:
            terms = result._terms(f)
            sd = src.flat(naming.sd_var(f))
            for i, t in enumerate(terms):
                out.append(Parameter("ran_pars", f, "", f"sd__{t}", f"sd({t} | {f})", sd[:, i]))
            if src.has(naming.corr_var(f)):
                c = src.flat(naming.corr_var(f))
                for i, j in result._corr_pairs(f):
                    out.append(Parameter("ran_pars", f, "", f"cor__{terms[i]}.{terms[j]}",
                                         f"cor({terms[i]}, {terms[j]} | {f})", c[:, i, j]))
        if naming.SIGMA in family_of(result).param_names:  # no residual SD in a Poisson fit
            out.append(Parameter("ran_pars", "Residual", "", "sd__Observation", "sigma",
                                 src.flat(naming.SIGMA)))
    if "ran_vals" in effects:
        for f in result.factors:
            b = src.effects(f)
            levels = [str(v) for v in result._levels(f)]
            for li, lvl in enumerate(levels):
                for i, t in enumerate(result._terms(f)):
                    out.append(Parameter("ran_vals", f, lvl, t, f"r_{f}[{lvl},{t}]", b[:, li, i]))
    return out
