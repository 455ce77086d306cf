"""``bayes_hlm.fit``: formula + data -> posterior.

One pipeline, each stage usable alone (as lme4's ``lFormula`` -> ``mkLmerDevfun`` ->
``optimizeLmer`` -> ``mkMerMod``):

1. :func:`bayes_hlm.settings.validate_settings` - every argument checked, kept as given;
2. :func:`.problem.build_problem` - spec, priors, scaling, sufficient statistics
   (or, out of core, :func:`bayes_hlm.fitting.fit_dask` builds the problem from Dask);
3. :func:`.sample.choose` - method and engine (:func:`bayes_hlm.backends.engine.choose_engine`);
4. :func:`.sample.sample` - NUTS;
5. :func:`.tail.finish_fit` - the result, its record and its warnings.
"""

from __future__ import annotations

import inspect
import time
import warnings
from typing import Literal

import pandas as pd
import xarray as xr

from ..spec import variable_names as naming
from ..errors import BayesHLMError
from ..families import get_family
from ..progress import phase, reporting
from ..results.bayes_result import BayesResult
from ..settings import METHODS, validate_settings
from ..spec.build import ModelSpec, build_spec
from ..spec.control import Control
from ..spec.priors import Prior, resolve_priors
from .problem import build_problem
from .sample import choose_and_sample, sampler_config
from .tail import finish_fit


def default_sampler(method: str) -> str:
    """Deprecated: the engine choice is :func:`bayes_hlm.backends.engine.choose_engine`."""
    warnings.warn("default_sampler is deprecated; the engine is chosen by "
                  "bayes_hlm.backends.engine.choose_engine", DeprecationWarning, stacklevel=2)
    return "auto" if method == "marginal" else "pymc"


def choose_method(spec: ModelSpec, method: str) -> str:
    """Resolve ``"auto"``: the marginal model (see :func:`bayes_hlm.backends.engine.choose_method`)."""
    from ..backends.engine import choose_method as _choose

    if method not in METHODS:
        raise BayesHLMError(f"method must be one of {METHODS}, not {method!r}")
    return _choose(method, bool(spec.design.groups))[0]


def fit(
    formula: str,
    data: pd.DataFrame | None = None,
    *,
    method: Literal["auto", "full", "marginal"] = "auto",
    sampler: Literal["auto", "numba", "jax", "pymc", "nutpie", "numpyro", "gibbs"] | None = None,
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
    family: str = "gaussian",
    link: str | None = None,
    weights: str | None = None,
) -> BayesResult:
    """Fit a Bayesian hierarchical linear model written as an lme4 formula.

    Parameters
    ----------
    formula : str or bambi.Model
        e.g. ``"Reaction ~ Days + (Days | Subject)"``. Supports ``(x|g)``
        (correlated, LKJ prior), ``(x||g)``, ``(1|a/b)``, ``(1|a:b)``, crossed
        factors, categorical predictors and interactions. A ``bambi.Model`` is fitted
        as Bambi defines it (formula, family, priors, data; ``data`` must then be
        omitted): see :func:`bayes_hlm.interop.bambi.fit_arguments`.
    data : pandas.DataFrame
        Never modified.
    method : {"auto", "full", "marginal"}
        ``"full"`` samples the group effects with NUTS; ``"marginal"``
        integrates them out analytically and draws them exactly afterwards (same
        posterior, cost per step independent of the number of rows);
        ``"auto"`` is marginal. A formula without a ``( | )`` term is refused
        (as lme4 does): fit an ordinary linear model instead.
    sampler : {"auto", "numba", "jax", "pymc", "nutpie", "numpyro", "gibbs"}, optional
        NUTS engine; ``None``: ``"auto"`` for the marginal model, ``"pymc"`` for the
        full one. ``"gibbs"``: exact Metropolis-within-Gibbs on a one-factor
        Bernoulli/binomial/Poisson model with a centred factor (:mod:`bayes_hlm.backends.glmm_gibbs`). What ``"auto"`` picks, and why, is documented once in
        :mod:`bayes_hlm.backends.engine` and recorded in ``result.info.engine_reason``.
    chains, draws, tune, target_accept, seed
        NUTS settings (``tune`` >= 1); the same seed gives identical draws. Every
        argument is checked first (:func:`bayes_hlm.settings.validate_settings`) and
        recorded as given in ``result.info.requested``, which ``update()`` replays.
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
        full model (``method="full"``; the marginal model has none to set, so a dict is
        an error there); ``"auto"`` chooses from the data.
    progressbar : bool, optional
        The sampler's progress bar; default: on in interactive sessions. Steps that take
        seconds (compiling once per machine, drawing group effects, diagnostics) say what
        they are doing on stderr (:mod:`bayes_hlm.progress`); ``False`` silences them too,
        as does the environment variable ``BAYES_HLM_QUIET=1``.
    warn : bool
        Emit convergence warnings after sampling.
    engine : {"memory", "dask"}
        ``"dask"`` computes the sufficient statistics out of core on Dask; ``data``
        may then also be a Dask DataFrame, a CSV path or a Parquet file/directory/glob
        (see :func:`bayes_hlm.fitting.fit_dask`; marginal method only).
    scheduler : optional
        Dask scheduler (address, ``Client``, or ``"sync"``/``"threads"``/``"processes"``).
    rescale : bool or "auto"
        Sample a rescaled copy of the problem (``y`` and every model column
        divided by its SD; priors transformed exactly) and map the draws back,
        so results are always on the data's scale. ``"auto"`` rescales only when
        some parameter's natural scale is outside [1e-2, 1e2] (e.g. ``y ~ 1e6``
        or ``x ~ 1e-6``), where NUTS otherwise mixes badly. Gaussian models only.
    family : str
        Response family: ``"gaussian"`` (default), ``"bernoulli"`` (0/1, booleans or a
        two-level factor; R's rule: the first level is the failure), ``"binomial"``
        (``cbind(successes, failures)`` or ``p(successes, trials)``), ``"poisson"``,
        ``"negativebinomial"`` (NB2; ``alpha`` = lme4's ``theta``), ``"t"`` (Student-t) or
        ``"gamma"``. Non-Gaussian families run the full model (``method="auto"`` picks it;
        ``"marginal"`` is refused) with Bambi 0.21's default priors for the family.
    link : str, optional
        The family's link; default Bambi's (logit, log, identity; Gamma: inverse).
        ``"probit"``/``"cloglog"`` for the binomial families, ``"log"`` for Gamma.
    weights : str, optional
        A data column of row weights, as R's ``glm``/``glmer`` and brms use them: with
        ``family="binomial"`` and a proportion response, the numbers of trials
        (``prop * n`` successes of ``n``); otherwise frequency weights (row ``i``'s log
        likelihood counted ``w_i`` times, the same posterior as repeating the row). Refused for
        the Gaussian family (lme4's are precision weights). See :mod:`bayes_hlm.spec.weights`.

    Returns
    -------
    BayesResult
    """
    from ..interop.bambi import fit_arguments, is_bambi_model

    if is_bambi_model(formula):  # translate Bambi's model, then fit it here (priors= laid over Bambi's)
        given = {k: v for k, v in locals().items()
                 if k not in ("formula", "data", "fit_arguments", "is_bambi_model")}
        defaults = {k: p.default for k, p in inspect.signature(fit).parameters.items()}
        result = fit(**fit_arguments(formula, data, given, defaults))
        result.bambi_model = formula  # to_bambi() needs no argument
        return result
    if data is None:
        raise BayesHLMError("fit(formula, data): data is required with a formula")
    settings = validate_settings(method=method, sampler=sampler, chains=chains, draws=draws,
                                 tune=tune, target_accept=target_accept, seed=seed,
                                 mass_matrix=mass_matrix, rescale=rescale, centered=centered,
                                 priors=priors, na_action=na_action, control=control,
                                 engine=engine, progressbar=progressbar, warn=warn,
                                 family=family, link=link, weights=weights)
    if engine == "dask":
        from .out_of_core import fit_dask

        fam = get_family(settings.family, settings.link)
        if fam.name != "gaussian" or fam.link.name != "identity":  # else silently Gaussian
            raise BayesHLMError(f"engine='dask' fits Gaussian models only, not the {fam.name} "
                                f"family with the {fam.link.name} link; use engine='memory'")
        if weights is not None:
            raise BayesHLMError("engine='dask' does not take weights=; use engine='memory'")

        return fit_dask(formula, data, scheduler, method=method, sampler=sampler, chains=chains,
                        draws=draws, tune=tune, target_accept=target_accept, seed=seed,
                        mass_matrix=mass_matrix, priors=priors, na_action=na_action, control=control,
                        centered=centered, rescale=rescale, progressbar=progressbar, warn=warn,
                        _stacklevel=4)
    if scheduler is not None:
        raise BayesHLMError("scheduler= needs engine='dask'")
    t0 = time.perf_counter()
    with reporting(progressbar):  # every slow step says what it is doing (progressbar=False: none)
        with phase("building the model (formula, data, statistics)"):
            problem = build_problem(formula, data, priors=priors, na_action=na_action,
                                    control=control, rescale=rescale, method=method,
                                    family=get_family(settings.family, settings.link),
                                    weights=weights)
        cfg = sampler_config(settings, progressbar)
        choice, (out, generator, extra) = choose_and_sample(problem, settings, cfg)
        return finish_fit(problem, choice, out, generator, extra, settings, cfg,
                          time.perf_counter() - t0, warn=warn)


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

    from ..backends.full import build_full_model

    validate_settings(draws=draws, seed=seed)  # messages name `draws` / `seed`
    from ..spec.priors import PriorSet

    spec = formula_or_spec if isinstance(formula_or_spec, ModelSpec) else build_spec(
        formula_or_spec, data, **build_kwargs)
    ps = priors if isinstance(priors, PriorSet) else resolve_priors(spec.design, priors,
                                                                     spec.family)
    from ..foreign_warnings import quiet_pymc_steps

    model = build_full_model(spec.design, ps, family=spec.family)
    with model, quiet_pymc_steps():  # no "Sampling: [...]" INFO line
        tree = pm.sample_prior_predictive(draws=draws, random_seed=seed)
    groups = {k: tree[k].to_dataset() for k in tree.children}
    if "prior" in groups:
        prior = groups["prior"]
        groups["prior"] = prior.drop_vars([v for v in prior.data_vars if str(v).startswith("_")])
    return xr.DataTree.from_dict(groups)


__all__ = ["fit", "choose_method", "default_sampler", "naming", "sample_prior_predictive"]
