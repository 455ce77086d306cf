"""``bayes_hlm.fit``: formula + data -> posterior (spec -> backend -> sampler -> result)."""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr

from .backends import naming
from .backends.sampling import SamplerConfig, sample_model
from .errors import BayesHLMError
from .results.bayes_result import BayesResult, FitInfo
from .results.diagnostics import warn_on
from .spec.build import ModelSpec, build_spec
from .spec.checks import Control
from .spec.priors import Prior, resolve_priors

METHODS = ("auto", "full", "marginal")


def default_sampler(method: str) -> str:
    """NUTS engine used when ``sampler=None``: PyMC for the full model, the fastest for marginal."""
    return "nutpie" if method == "marginal" else "pymc"


def choose_method(spec: ModelSpec, method: str) -> str:
    """Resolve ``"auto"``: marginal whenever the backend supports the design, else full."""
    if method not in METHODS:
        raise BayesHLMError(f"method must be one of {METHODS}, not {method!r}")
    if method != "auto":
        if method == "marginal" and not spec.design.groups:
            raise BayesHLMError("method='marginal' needs at least one random-effect term")
        return method
    from .backends.marginal import supports_marginal

    return "marginal" if supports_marginal(spec.design) else "full"


def _clean_tree(tree: xr.DataTree, design) -> xr.DataTree:
    """Drop internal sampler variables (``_`` prefix) and attach the observed data."""
    post = tree["posterior"].to_dataset()
    post = post.drop_vars([v for v in post.data_vars if str(v).startswith("_")])
    children = {"posterior": xr.DataTree(post)}
    if "sample_stats" in tree.children:
        children["sample_stats"] = xr.DataTree(tree["sample_stats"].to_dataset())
    obs = xr.Dataset({"y": ("obs", np.asarray(design.y))})
    children["observed_data"] = xr.DataTree(obs)
    return xr.DataTree.from_dict({k: v.to_dataset() for k, v in children.items()})


def fit(
    formula: str,
    data: pd.DataFrame,
    *,
    method: Literal["auto", "full", "marginal"] = "auto",
    sampler: Literal["pymc", "nutpie", "numpyro"] | None = None,
    chains: int = 4,
    draws: int = 1000,
    tune: int = 1000,
    target_accept: float = 0.8,
    seed: int | None = None,
    priors: dict[str, Prior] | None = None,
    na_action: Literal["omit", "raise"] = "omit",
    control: Control | None = None,
    centered: dict[str, bool] | Literal["auto"] | None = "auto",
    progressbar: bool | None = None,
    warn: bool = True,
    engine: Literal["memory", "dask"] = "memory",
    scheduler=None,
) -> BayesResult:
    """Fit a Bayesian hierarchical linear model written as an lme4 formula.

    Parameters
    ----------
    formula : str
        e.g. ``"Reaction ~ Days + (Days | Subject)"``. Supports ``(x|g)``
        (correlated, LKJ prior), ``(x||g)``, ``(1|a/b)``, ``(1|a:b)``, crossed
        factors, categorical predictors and interactions.
    data : pandas.DataFrame
        Never modified.
    method : {"auto", "full", "marginal"}
        ``"full"`` samples the group effects with NUTS; ``"marginal"``
        integrates them out analytically and draws them exactly afterwards (same
        posterior, cost per step independent of the number of rows);
        ``"auto"`` uses marginal whenever it applies.
    sampler : {"pymc", "nutpie", "numpyro"}, optional
        NUTS engine; default ``"pymc"`` for the full model and ``"nutpie"``
        for the marginal one.
    chains, draws, tune, target_accept, seed
        NUTS settings; the same seed gives identical draws.
    priors : dict, optional
        ``{parameter: Prior(...)}`` overriding Bambi's defaults; see
        :func:`bayes_hlm.get_prior` for the names.
    na_action : {"omit", "raise"}
        Rows with missing values in used columns are dropped (with a warning
        giving the count) or raise.
    control : Control, optional
        Actions for input checks (lme4's ``lmerControl``).
    centered : dict or "auto", optional
        Per factor, centred (True) or non-centred (False) group effects in the
        full model; ``"auto"`` chooses from the data.
    progressbar : bool, optional
        Default: on in interactive sessions.
    warn : bool
        Emit convergence warnings after sampling.
    engine : {"memory", "dask"}
        ``"dask"`` computes the sufficient statistics out of core on Dask; ``data``
        may then also be a Dask DataFrame, a CSV path or a Parquet file/directory/glob
        (see :func:`bayes_hlm.distributed.fit_dask`; marginal method only).
    scheduler : optional
        Dask scheduler (address, ``Client``, or ``"sync"``/``"threads"``/``"processes"``).

    Returns
    -------
    BayesResult
    """
    if engine == "dask":
        from .distributed import fit_dask

        return fit_dask(formula, data, scheduler, method=method, sampler=sampler, chains=chains,
                        draws=draws, tune=tune, target_accept=target_accept, seed=seed,
                        priors=priors, na_action=na_action, control=control,
                        progressbar=progressbar, warn=warn)
    if engine != "memory":
        raise BayesHLMError(f"engine must be 'memory' or 'dask', not {engine!r}")
    if scheduler is not None:
        raise BayesHLMError("scheduler= needs engine='dask'")
    t0 = time.perf_counter()
    spec = build_spec(formula, data, na_action=na_action, control=control)
    ps = resolve_priors(spec.design, priors)
    chosen = choose_method(spec, method)
    cfg = SamplerConfig(
        sampler=sampler or default_sampler(chosen), chains=chains,
        draws=draws, tune=tune, target_accept=target_accept, seed=seed, progressbar=progressbar,
    )
    if chosen == "marginal":
        from .backends.marginal import run_marginal

        out, generator, extra = run_marginal(spec.design, ps, cfg)
    else:
        from .backends.full import build_full_model
        from .backends.parametrization import choose_centering

        cent = choose_centering(spec.design) if centered == "auto" else (centered or {})
        out = sample_model(build_full_model(spec.design, ps, cent), cfg)
        generator, extra = None, {"centered": cent}
    wall = time.perf_counter() - t0
    info = FitInfo(method=chosen, sampler=cfg.sampler, chains=cfg.chains, draws=cfg.draws,
                   tune=cfg.tune, target_accept=cfg.target_accept, seed=cfg.seed, wall_s=wall,
                   compile_s=out.compile_s, sample_s=out.sample_s, interrupted=out.interrupted,
                   effects_s=float(extra.get("effects_s", 0.0)),
                   extra=extra)
    result = BayesResult(spec, ps, _clean_tree(out.tree, spec.design), info, generator)
    if warn:
        warn_on(result.diagnostics(), chosen)
    return result


__all__ = ["fit", "choose_method", "naming"]
