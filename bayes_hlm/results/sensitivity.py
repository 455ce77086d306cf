"""Prior sensitivity: refits with scaled priors, and power-scaling (``priorsense``).

* :func:`prior_sensitivity` - multiply the scale parameter of every prior by each
  factor in ``scales``, refit, and report how far each posterior mean moved in
  units of the original posterior SD (a parameter moving by more than
  ``threshold`` SDs is flagged).
* :func:`power_sensitivity` - ``priorsense::powerscale_sensitivity`` through
  ``arviz.psense_summary`` (no refits): the log prior is evaluated on the draws and
  power-scaled by importance sampling.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from ..spec import variable_names as naming
from ..errors import BayesHLMError
from ..spec.prior_registry import PRIOR_DISTS, get_prior_dist
from ..spec.priors import Prior, corr_key, intercept_shift, sd_key
from .compare_reml import ReportFrame

if TYPE_CHECKING:
    from .bayes_result import BayesResult

__all__ = ["widen_prior", "scale_prior", "scaled_priors", "prior_sensitivity", "log_prior", "power_sensitivity"]

def widen_prior(prior: Prior, factor: float) -> Prior:
    """``prior`` with its spread multiplied by ``factor`` and its location kept (scales
    multiplied, rates divided, LogNormal's ``mu`` shifted by ``log factor``; LKJ unchanged).

    Which parameter is the spread is stated once, in :mod:`bayes_hlm.spec.prior_registry`.
    """
    dist = PRIOR_DISTS.get(prior.dist)
    if dist is None:
        raise BayesHLMError(f"don't know the scale parameter of {prior}")
    return Prior(prior.dist, **dist.widen(prior.params, factor))


def scale_prior(prior: Prior, factor: float) -> Prior:
    """Deprecated name of :func:`widen_prior` (``spec.scaling.scale_prior`` is the prior of a
    rescaled variable, a different operation)."""
    warnings.warn("bayes_hlm.results.sensitivity.scale_prior is deprecated; use widen_prior",
                  DeprecationWarning, stacklevel=2)
    return widen_prior(prior, factor)


def scaled_priors(result: "BayesResult", factor: float) -> dict[str, Prior]:
    """Every prior of ``result`` with its scale multiplied by ``factor``."""
    return {k: widen_prior(p, factor) for k, p in result.priors.priors.items()}


def prior_sensitivity(result: "BayesResult", scales: Sequence[float] = (0.5, 2.0),
                      threshold: float = 0.5, return_fits: bool = False, **fit_kwargs):
    """Refit with every prior's scale multiplied by each factor in ``scales``.

    Returns one row per (parameter, scale): ``mean_base``, ``sd_base``, ``mean``,
    ``sd``, ``shift_sd`` = (mean - mean_base) / sd_base, ``sd_ratio`` and
    ``sensitive`` (``|shift_sd| > threshold``). ``fit_kwargs`` go to every refit
    (default: the original fit's settings). With ``return_fits`` the refits are
    returned too, as ``(table, {scale: result})``.
    """
    from .workflow import update

    base = result.summary()
    rows, fits = [], {}
    for s in scales:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = update(result, priors=scaled_priors(result, s), warn=False, **fit_kwargs)
        fits[s] = fit
        new = fit.summary()
        for name, r in base.iterrows():
            if name not in new.index:
                continue
            n = new.loc[name]
            shift = (n["mean"] - r["mean"]) / r["sd"] if r["sd"] > 0 else np.nan
            rows.append({"parameter": name, "kind": r["kind"], "scale": s,
                         "mean_base": r["mean"], "sd_base": r["sd"], "mean": n["mean"],
                         "sd": n["sd"], "shift_sd": shift, "sd_ratio": n["sd"] / r["sd"],
                         "sensitive": bool(abs(shift) > threshold)})
    out = ReportFrame(pd.DataFrame(rows).set_index(["parameter", "scale"]))
    return (out, fits) if return_fits else out


def _logp(prior: Prior, values: np.ndarray) -> np.ndarray:
    import pymc as pm

    dist = get_prior_dist(prior.dist).pymc().dist(**prior.params)
    return np.asarray(pm.logp(dist, np.asarray(values, dtype=float)).eval(), dtype=float)


def log_prior(result: "BayesResult") -> np.ndarray:
    """Log prior density of each draw (flat), on the parameters the model samples:
    the fixed effects with Bambi's centred intercept, group SDs, residual SD and LKJ
    correlation blocks (up to constants)."""
    src = result._draws
    ps = result.priors
    names = list(result.design.fixed_names)
    beta = src.flat(naming.FIXED).copy()
    if ps.centered and "Intercept" in names:
        i = names.index("Intercept")
        beta[:, i] = beta[:, i] + intercept_shift(beta, ps.x_mean, i)  # back to Bambi's raw
    lp = np.zeros(src.size)
    for j, n in enumerate(names):
        lp += _logp(ps.priors[n], beta[:, j])
    lp += _logp(ps.priors["sigma"], src.flat(naming.SIGMA))
    for f in result.factors:
        sd = src.flat(naming.sd_var(f))
        for i, t in enumerate(result._terms(f)):
            lp += _logp(ps.priors[sd_key(t, f)], sd[:, i])
        pri = ps.priors.get(corr_key(f))
        if pri is not None and src.has(naming.corr_var(f)) and pri.params.get("eta", 1.0) != 1.0:
            C = src.flat(naming.corr_var(f))
            start = 0
            for g in result.design.groups:
                if g.factor != f:
                    continue
                if g.correlated:
                    block = C[:, start:start + g.q, start:start + g.q]
                    lp += (pri.params["eta"] - 1) * np.linalg.slogdet(block)[1]
                start += g.q
    return lp


def power_sensitivity(result: "BayesResult", threshold: float = 0.05, **kwargs) -> pd.DataFrame:
    """Power-scaling prior and likelihood sensitivity (``priorsense``) via ArviZ ``psense_summary``.

    Values above ``threshold`` (0.05) flag prior sensitivity / prior-data conflict
    (see the ``diagnosis`` column). Uses the pointwise log likelihood conditional
    on the group effects, like brms.
    """
    import arviz as az

    tree = result.log_likelihood()
    lp = log_prior(result).reshape(result._draws.n_chains, result._draws.n_draws)
    groups = {k: tree[k].to_dataset() for k in tree.children}
    groups["log_prior"] = xr.Dataset({"prior": (("chain", "draw"), lp)},
                                     coords={"chain": result.posterior.chain,
                                             "draw": result.posterior.draw})
    dt = xr.DataTree.from_dict(groups)
    var_names = [naming.FIXED, naming.SIGMA] + [naming.sd_var(f) for f in result.factors]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.psense_summary(dt, var_names=var_names, threshold=threshold, **kwargs)
