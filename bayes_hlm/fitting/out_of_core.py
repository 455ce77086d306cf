"""Dask as a data source of the fit pipeline: :func:`fit_dask` (``bh.fit(..., engine="dask")``).

:mod:`bayes_hlm.distributed` computes the sufficient statistics out of core; this module
turns them into the :class:`~.problem.Problem` and runs the same engine choice, sampling and
result stages as :func:`bayes_hlm.fit`. The dependency goes one way: fitting imports
distributed (lazily: Dask is imported only for ``engine="dask"``), never the reverse.
"""

from __future__ import annotations

import time

from ..backends.engine import choose_method, no_groups_message
from ..errors import BayesHLMError, OutOfCoreError
from ..results.stats_result import StatsResult
from ..settings import validate_settings
from ..spec.control import Control
from ..spec.formula import parse_formula
from ..progress import reporting
from .problem import Problem
from .sample import choose_and_sample, sampler_config
from .tail import finish_fit

__all__ = ["fit_dask"]


def fit_dask(formula: str, source, scheduler=None, *, method: str = "auto", sampler: str | None = None,
             chains: int = 4, draws: int = 1000, tune: int = 1000, target_accept: float = 0.8,
             seed: int | None = None, mass_matrix: str = "auto", priors: dict | None = None,
             na_action: str = "omit",
             control: Control | None = None, centered="auto", progressbar: bool | None = None,
             warn: bool = True, npartitions: int | None = None, split_every: int = 8,
             rescale: bool | str = "auto", _stacklevel: int = 3):
    """Fit a Gaussian hierarchical model out of core: statistics on Dask, NUTS on the statistics.

    Dask is a data source of :func:`bayes_hlm.fit`'s pipeline: the statistics make the
    :class:`~bayes_hlm.fitting.problem.Problem`, and the same engine choice, sampling and
    result stages follow. Same arguments and posterior as :func:`bayes_hlm.fit` with
    ``method="marginal"``; what the statistics cannot honour is refused before any pass:
    ``method="full"``, a ``centered`` dict (every group effect is integrated out), and
    ``rescale=True`` (the statistics are on the data's scale; ``rescale="auto"`` refuses a
    badly scaled model, see :func:`check_scales`). Plus:

    Parameters
    ----------
    source : pandas.DataFrame, dask.dataframe.DataFrame or path
        CSV file, a Parquet file, or a directory / glob of Parquet files.
    scheduler : None, str, distributed.Client or cluster
        See :mod:`bayes_hlm.distributed.out_of_core`.
    npartitions, split_every
        See :func:`bayes_hlm.distributed.compute_stats_dask`.

    Returns
    -------
    bayes_hlm.results.stats_result.StatsResult
    """
    from ..distributed.out_of_core import (check_dask_args, check_scales, compute_stats_dask,
                                           priors_from_stats)

    settings = validate_settings(method=method, sampler=sampler, chains=chains, draws=draws,
                                 tune=tune, target_accept=target_accept, seed=seed,
                                 mass_matrix=mass_matrix, rescale=rescale, centered=centered,
                                 priors=priors, na_action=na_action, control=control,
                                 engine="dask", progressbar=progressbar, warn=warn)
    check_dask_args(npartitions, split_every)
    choose_method(method, True, out_of_core=True)  # method="full": refused before any pass
    if isinstance(settings.centered, dict) and settings.centered:
        raise OutOfCoreError(
            "centered= is not available with engine='dask': it sets how the full model samples "
            "the group effects, and the out-of-core engine integrates every one of them out; "
            "leave centered='auto'")
    if settings.rescale is True:
        raise OutOfCoreError(
            "rescale=True is not available with engine='dask': the sufficient statistics are "
            "computed on the data's scale. Rescale the columns in the data, or use "
            "rescale='auto' (refuses a badly scaled model) or False")
    if not parse_formula(formula).random:  # before any pass over the data
        raise BayesHLMError(no_groups_message())
    t0 = time.perf_counter()
    ds = compute_stats_dask(formula, source, scheduler, na_action=na_action, control=control,
                            progressbar=progressbar, npartitions=npartitions, split_every=split_every)
    ps = priors_from_stats(ds, priors)
    if settings.rescale == "auto":
        check_scales(ds)
    problem = Problem(spec=ds.meta.spec(), priors=ps, design=ds.design, fit_priors=ps,
                      stats=ds.stats, out_of_core=True, result_type=StatsResult,
                      result_args=(ds.stats, ds.extras),
                      source={"engine": "dask", "stats_timings": ds.timings})
    cfg = sampler_config(settings, progressbar)
    with reporting(progressbar):  # slow steps after the data passes say what they are doing
        choice, (out, gen, extra) = choose_and_sample(problem, settings, cfg)
        return finish_fit(problem, choice, out, gen, extra, settings, cfg,
                          time.perf_counter() - t0, warn=warn, stacklevel=_stacklevel)
