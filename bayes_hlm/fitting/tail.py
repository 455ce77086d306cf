"""Stage 4 of a fit, shared by every data source: the result.

Draws back to the user's scale, the observed data, :class:`FitInfo` (settings as given and
as resolved), the Ctrl-C warning, the convergence warnings and overdispersion (Poisson).
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from .._xarray_build import unimported_duck_arrays_absent
from ..backends.engine import EngineChoice
from ..backends.sampling import SampleOutput, SamplerConfig
from ..errors import ConvergenceWarning
from ..progress import phase
from ..results.bayes_result import BayesResult, FitInfo
from ..results.diagnostics import marginal_available, warning_messages
from ..settings import FitSettings
from ..spec.scaling import unscale_posterior, wrap_generator
from .problem import Problem


def clean_tree(tree: xr.DataTree, observed=None) -> xr.DataTree:
    """Drop internal sampler variables (``_`` prefix); attach the observed response if given."""
    with unimported_duck_arrays_absent():  # numpy draws: no dask import (~0.2-0.6 s)
        post = tree["posterior"].to_dataset()
        post = post.drop_vars([v for v in post.data_vars if str(v).startswith("_")])
        groups = {"posterior": post}
        if "sample_stats" in tree.children:
            groups["sample_stats"] = tree["sample_stats"].to_dataset()
        if observed is not None:
            groups["observed_data"] = xr.Dataset({"y": ("obs", np.asarray(observed))})
        return xr.DataTree.from_dict(groups)


def finish_fit(problem: Problem, choice: EngineChoice, out: SampleOutput, generator, extra: dict,
               settings: FitSettings, cfg: SamplerConfig, wall_s: float, warn: bool = True,
               stacklevel: int = 3) -> BayesResult:
    """Build the result of a fit from the sampler's output (every data source ends here).

    ``stacklevel`` points the warnings at the user's call (``fit`` -> here = 3).
    """
    with phase("collecting the draws"):
        result = _result(problem, choice, out, generator, extra, settings, cfg, wall_s)
    if out.interrupted:
        kept = int(result.info.draws)
        warnings.warn(f"sampling was interrupted (Ctrl-C): the result holds the {kept} draws "
                      f"per chain done so far, not the {cfg.draws} asked for", ConvergenceWarning,
                      stacklevel=stacklevel)
    if warn:  # as results.diagnostics.warn_on, pointed at the user's call
        with phase("computing convergence diagnostics (R-hat, ESS)"):
            messages = warning_messages(result.diagnostics(), choice.method,
                                         marginal_available(result))
        for msg in messages:
            warnings.warn(msg, ConvergenceWarning, stacklevel=stacklevel)
        warn_overdispersion(result, stacklevel + 1)
    return result


def _result(problem: Problem, choice: EngineChoice, out: SampleOutput, generator, extra: dict,
            settings: FitSettings, cfg: SamplerConfig, wall_s: float) -> BayesResult:
    """The result object: draws on the user's scale, observed data and :class:`FitInfo`."""
    if problem.scaling is not None:  # draws back to the user's scale (R-hat/ESS are scale-free)
        groups = {k: out.tree[k].to_dataset() for k in out.tree.children}
        groups["posterior"] = unscale_posterior(groups["posterior"], problem.spec.design,
                                                problem.scaling)
        out.tree = xr.DataTree.from_dict(groups)
        generator = wrap_generator(generator, problem.spec.design, problem.scaling)
        extra = {**extra, "rescaled": problem.scaling.to_dict()}
    extra = {**extra, **problem.source, "sampler": choice.sampler}
    tree = clean_tree(out.tree, problem.observed)
    kept = int(tree["posterior"].sizes.get("draw", 0))  # fewer than asked after Ctrl-C
    info = FitInfo(method=choice.method, sampler=choice.sampler, chains=cfg.chains,
                   draws=kept, tune=cfg.tune, target_accept=cfg.target_accept, seed=cfg.seed,
                   wall_s=wall_s, compile_s=out.compile_s, sample_s=out.sample_s,
                   interrupted=out.interrupted, effects_s=float(extra.get("effects_s", 0.0)),
                   extra=extra, requested=settings, engine_reason=choice.reason)
    return problem.result_type(problem.spec, problem.priors, tree, info, generator,
                               *problem.result_args)


#: rows per chunk of :func:`warn_overdispersion`'s Pearson residuals
_PEARSON_ROWS = 1 << 18


def warn_overdispersion(result: BayesResult, stacklevel: int = 4) -> None:
    """After a Poisson fit: an :class:`OverdispersionWarning` when Pearson chi2/df at the
    posterior-mean fitted values (group effects included) exceeds
    :data:`~bayes_hlm.families.checks.OVERDISPERSION_RATIO`.

    The fitted means average :data:`~bayes_hlm.families.checks.OVERDISPERSION_DRAWS` evenly
    spaced draws, not every draw: a diagnostic's decision, the same one (chi2/df within
    ~1/200 of every draw's value; see that constant) at a tenth of the cost."""
    from ..errors import OverdispersionWarning
    from ..families.checks import OVERDISPERSION_DRAWS, OVERDISPERSION_RATIO, pearson_dispersion
    from ..results.family_draws import family_of
    from ..results.predict import fitted_mean
    from ..results.residuals import pearson_residuals

    if family_of(result).name != "poisson":
        return
    n_params = result.design.p + len(result.varcorr())  # fixed effects + SDs and correlations
    idx = result._draws.thinned(OVERDISPERSION_DRAWS)
    fit = fitted_mean(result, True, idx)
    # the residuals in row chunks: no N-long temporaries (10M rows: 4 x 80 MB of fresh pages)
    rows = (slice(a, a + _PEARSON_ROWS) for a in range(0, len(fit), _PEARSON_ROWS))
    ratio = pearson_dispersion((pearson_residuals(result, fit[s], idx, rows=s) for s in rows),
                               n_params)
    if ratio > OVERDISPERSION_RATIO:
        warnings.warn(
            f"overdispersion: Pearson chi2/df = {ratio:.2f} (> {OVERDISPERSION_RATIO}) at the "
            f"posterior-mean fitted values ({len(idx)} evenly spaced draws); the counts vary "
            "more than a Poisson model allows, so intervals are too narrow. Refit with "
            "family='negativebinomial', or add an observation-level effect (1 | obs) with one "
            "level per row",
            OverdispersionWarning, stacklevel=stacklevel)
