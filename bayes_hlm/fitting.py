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
from .spec.scaling import (ScalingError, choose_scaling, scale_design, scale_priors,
                           unscale_posterior, wrap_generator)

METHODS = ("auto", "full", "marginal")


def default_sampler(method: str) -> str:
    """NUTS engine used when ``sampler=None``: PyMC for the full model; for the marginal one
    ``"auto"`` (the cached JAX/NumPyro engine when JAX is installed, else PyMC), measured fastest
    end to end (benchmarks/README.md)."""
    return "auto" if method == "marginal" else "pymc"


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
    sampler: Literal["auto", "numba", "jax", "pymc", "nutpie", "numpyro"] | None = None,
    chains: int = 4,
    draws: int = 1000,
    tune: int = 1000,
    target_accept: float = 0.8,
    seed: int | None = None,
    mass_matrix: Literal["auto", "diag", "low_rank"] = "auto",
    priors: dict[str, Prior] | None = None,
    na_action: Literal["omit", "raise"] = "omit",
    control: Control | None = None,
    centered: dict[str, bool] | Literal["auto"] | None = "auto",
    progressbar: bool | None = None,
    warn: bool = True,
    engine: Literal["memory", "dask"] = "memory",
    scheduler=None,
    rescale: bool | Literal["auto"] = "auto",
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
    sampler : {"auto", "numba", "jax", "pymc", "nutpie", "numpyro"}, optional
        NUTS engine; default ``"pymc"`` for the full model and ``"auto"`` for the
        marginal one. ``"auto"`` uses ``"numba"`` (nutpie's NUTS on a compiled,
        cached collapsed density: one grouping factor, the usual prior families)
        when it covers the model, else ``"jax"`` (NumPyro's NUTS on the model's JAX
        log density, compiled programs cached across processes), else PyMC.
    chains, draws, tune, target_accept, seed
        NUTS settings; the same seed gives identical draws.
    mass_matrix : {"auto", "diag", "low_rank"}
        Mass-matrix adaptation of the nutpie engines (``"numba"``, ``"nutpie"``):
        diagonal, or diagonal plus a low-rank correction learnt from the
        gradients (nutpie's ``adaptation="low_rank"``), which removes ridges
        such as intercept vs. sampled effects. ``"auto"``: low-rank up to 64
        unconstrained parameters, diagonal above.
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
    rescale : bool or "auto"
        Sample a rescaled copy of the problem (``y`` and every model column
        divided by its SD; priors transformed exactly) and map the draws back,
        so results are always on the data's scale. ``"auto"`` rescales only when
        some parameter's natural scale is outside [1e-2, 1e2] (e.g. ``y ~ 1e6``
        or ``x ~ 1e-6``), where NUTS otherwise mixes badly.

    Returns
    -------
    BayesResult
    """
    if engine == "dask":
        from .distributed import fit_dask

        return fit_dask(formula, data, scheduler, method=method, sampler=sampler, chains=chains,
                        draws=draws, tune=tune, target_accept=target_accept, seed=seed,
                        mass_matrix=mass_matrix, priors=priors, na_action=na_action, control=control,
                        progressbar=progressbar, warn=warn)
    if engine != "memory":
        raise BayesHLMError(f"engine must be 'memory' or 'dask', not {engine!r}")
    if scheduler is not None:
        raise BayesHLMError("scheduler= needs engine='dask'")
    t0 = time.perf_counter()
    spec = build_spec(formula, data, na_action=na_action, control=control)
    ps = resolve_priors(spec.design, priors)
    chosen = choose_method(spec, method)
    design, ps_fit, scaling = spec.design, ps, choose_scaling(spec.design, rescale)
    if scaling is not None:
        try:
            ps_fit = scale_priors(ps, spec.design, scaling)
            design = scale_design(spec.design, scaling)
        except ScalingError as exc:  # a user prior of a family we cannot transform
            if rescale is True:
                raise BayesHLMError(f"rescale=True: {exc}") from None
            scaling = None
    cfg = SamplerConfig(
        sampler=sampler or default_sampler(chosen), chains=chains,
        draws=draws, tune=tune, target_accept=target_accept, seed=seed, progressbar=progressbar,
        mass_matrix=mass_matrix,
    )
    if chosen == "marginal":
        from .backends.marginal import run_marginal

        out, generator, extra = run_marginal(design, ps_fit, cfg)
    else:
        from .backends.full import build_full_model
        from .backends.parametrization import choose_centering

        cent = choose_centering(design) if centered == "auto" else (centered or {})
        out = sample_model(build_full_model(design, ps_fit, cent), cfg)
        generator, extra = None, {"centered": cent}
    if scaling is not None:  # draws back to the user's scale (R-hat/ESS are scale-free)
        groups = {k: out.tree[k].to_dataset() for k in out.tree.children}
        groups["posterior"] = unscale_posterior(groups["posterior"], spec.design, scaling)
        out.tree = xr.DataTree.from_dict(groups)
        generator = wrap_generator(generator, spec.design, scaling)
        extra = {**extra, "rescaled": scaling.to_dict()}
    wall = time.perf_counter() - t0
    info = FitInfo(method=chosen, sampler=cfg.sampler, chains=cfg.chains, draws=cfg.draws,
                   tune=cfg.tune, target_accept=cfg.target_accept, seed=cfg.seed, wall_s=wall,
                   compile_s=out.compile_s, sample_s=out.sample_s, interrupted=out.interrupted,
                   effects_s=float(extra.get("effects_s", 0.0)),
                   extra=extra)
    result = BayesResult(spec, ps, _clean_tree(out.tree, spec.design), info, generator)
    if out.interrupted:
        import warnings

        from .errors import ConvergenceWarning

        n_done = result.tree["posterior"].sizes.get("draw", 0)
        warnings.warn(f"sampling was interrupted (Ctrl-C): the result holds the {n_done} draws "
                      f"per chain done so far, not the {draws} asked for", ConvergenceWarning,
                      stacklevel=2)
    if warn:
        warn_on(result.diagnostics(), chosen)
    return result


def sample_prior_predictive(formula_or_spec, data: pd.DataFrame | None = None, *, draws: int = 500,
                            seed: int | None = None, priors=None, **build_kwargs) -> xr.DataTree:
    """Prior and prior-predictive draws of a model (PyMC ``sample_prior_predictive``).

    Parameters
    ----------
    formula_or_spec : str or ModelSpec
        A formula (with ``data``) or an already built spec.
    priors : dict or PriorSet, optional
        Overrides as in :func:`fit` (or a resolved ``PriorSet``).

    Returns
    -------
    DataTree with groups ``prior`` (fixed, sigma, sd__*, corr__*, r__*) and
    ``prior_predictive`` (y).
    """
    import pymc as pm

    from .backends.full import build_full_model
    from .spec.priors import PriorSet

    spec = formula_or_spec if isinstance(formula_or_spec, ModelSpec) else build_spec(
        formula_or_spec, data, **build_kwargs)
    ps = priors if isinstance(priors, PriorSet) else resolve_priors(spec.design, priors)
    model = build_full_model(spec.design, ps)
    with model:
        tree = pm.sample_prior_predictive(draws=draws, random_seed=seed)
    groups = {k: tree[k].to_dataset() for k in tree.children}
    if "prior" in groups:
        prior = groups["prior"]
        groups["prior"] = prior.drop_vars([v for v in prior.data_vars if str(v).startswith("_")])
    return xr.DataTree.from_dict(groups)


__all__ = ["fit", "choose_method", "naming", "sample_prior_predictive"]
