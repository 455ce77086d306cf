"""``engine="dask"``: sufficient statistics by map-reduce on Dask - a data source of the fit pipeline.

:func:`bayes_hlm.fitting.out_of_core.fit_dask` calls :func:`compute_stats_dask` and
:func:`priors_from_stats` and samples from what they return; this package never imports the
pipeline (see docs/architecture.md).

Pipeline (no step holds the full data or the full design matrix in one process):

1. metadata pass (:mod:`.design_meta`): levels, missing values, nesting, a small sample spec;
2. statistics pass (:mod:`.partition_stats`): each partition builds its design rows and its
   partial statistics keyed by global group id;
3. tree reduction by group (:mod:`.reduce`) to the backend's ``SingleStats`` / ``NestedStats``;
4. (in :mod:`bayes_hlm.fitting`) the marginalised NUTS model from the statistics (O(groups) per gradient), exact group-effect
   draws generated on demand (:func:`bayes_hlm.backends.marginal.effect_generator`).

Schedulers: ``None`` (a running ``distributed`` client if there is one, else threads),
``"sync"``/``"synchronous"``, ``"threads"``, ``"processes"``, a scheduler address
(``"tcp://host:8786"``), a ``distributed.Client`` or a cluster object.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np

from ..errors import BayesHLMError
from ..spec.control import Control
from ..spec.rules import check_group_sizes
from ..spec.priors import Moments, PriorSet, apply_user_priors, priors_from_moments
from .design_meta import (DesignMeta, ModelFrame, OutOfCoreError, build_meta,
                          check_formula_supported, merge_scans, scan_partition)
from .inputs import Partitions, open_source
from .partition_stats import partition_stats
from .reduce import StatsExtras, finalize, kept_columns, merge_partials, tree_reduce

__all__ = ["DaskStats", "compute_stats_dask", "fit_dask", "priors_from_stats"]

LOCAL = {"sync": "sync", "synchronous": "sync", "single-threaded": "sync", "threads": "threads",
         "threading": "threads", "processes": "processes", "multiprocessing": "processes"}


# --------------------------------------------------------------------------- #
# Scheduler handling
# --------------------------------------------------------------------------- #
class _Runner:
    """Computes delayed objects on the chosen scheduler, with a progress bar."""

    def __init__(self, scheduler, progressbar: bool):
        self.progressbar = progressbar
        self.client = None
        self.local = None
        self._own_client = False
        if isinstance(scheduler, str) and scheduler in LOCAL:
            self.local = LOCAL[scheduler]
        elif scheduler is None:
            try:
                from distributed import default_client

                self.client = default_client()
            except (ImportError, ValueError):
                self.local = "threads"
        else:
            from distributed import Client

            if isinstance(scheduler, Client):
                self.client = scheduler
            elif isinstance(scheduler, str):
                self.client = Client(scheduler)
                self._own_client = True
            elif hasattr(scheduler, "scheduler_address"):
                self.client = Client(scheduler)
                self._own_client = True
            else:
                raise BayesHLMError(
                    f"scheduler must be None, one of {sorted(LOCAL)}, an address, a "
                    f"distributed.Client or a cluster; got {type(scheduler).__name__}")
        if self.client is not None:
            link = getattr(self.client, "dashboard_link", None)
            if link:
                print(f"bayes_hlm: Dask dashboard at {link}", file=sys.stderr)

    @property
    def name(self) -> str:
        return self.local or f"distributed ({self.client.scheduler.address})"

    def compute(self, obj, label: str):
        import dask

        if self.client is not None:
            fut = self.client.compute(obj)
            if self.progressbar:
                from distributed import progress

                print(f"bayes_hlm: {label}", file=sys.stderr)
                progress(fut)
                print(file=sys.stderr)
            return fut.result()
        if self.progressbar:
            from dask.diagnostics import ProgressBar

            print(f"bayes_hlm: {label}", file=sys.stderr)
            with ProgressBar(out=sys.stderr):
                return dask.compute(obj, scheduler=self.local)[0]
        return dask.compute(obj, scheduler=self.local)[0]

    def warm(self):
        """One-time process costs kept out of the pass timings: the statistics kernel (loaded
        from Numba's cache; compiled once per machine) here and on every worker, and the import
        of ``distributed`` that dask's local schedulers do on their first call."""
        if self.client is not None:
            self.client.run(warm_process)
        else:
            warm_process()
            try:
                import distributed  # noqa: F401  (dask.compute imports it to look for a client)
            except ImportError:  # pragma: no cover
                pass

    def close(self):
        if self._own_client:
            self.client.close()


def warm_process() -> None:
    """Load the compiled kernels of the passes in this process (see :meth:`_Runner.warm`)."""
    from .kernels import lut_codes, merge_sorted, single_pairs

    i = np.zeros(1, dtype=np.int64)
    single_pairs((np.zeros(1),), 0, i, i, i, i, 1)
    single_pairs((np.zeros(1), np.zeros(1)), 0, i, i, i, i, 1)
    for dt in (np.int32, np.int64):
        lut_codes(np.zeros(1, dtype=dt), 0, np.zeros(1, dtype=np.int32))
    merge_sorted([(i, np.zeros((1, 1))), (i, np.zeros((1, 1)))])


# --------------------------------------------------------------------------- #
# Statistics
# --------------------------------------------------------------------------- #
@dataclass
class DaskStats:
    """Output of the statistics passes.

    Attributes
    ----------
    stats : SingleStats, NestedStats or BaseStats
        Same layout as :func:`bayes_hlm.backends.sufficient_stats.compute_stats` in memory.
    extras : StatsExtras
    meta : DesignMeta
    design : StatsDesign
        Names, levels and sizes; no rows.
    kept : ndarray
        Columns of formulae's fixed matrix kept (aliased ones dropped).
    timings : dict
        ``meta_s``, ``stats_s`` (seconds), ``n_partitions``, ``rows``, ``rows_per_s``.
    """

    stats: object
    extras: StatsExtras
    meta: DesignMeta
    design: object
    kept: np.ndarray
    timings: dict


def _open(source, mf_columns=None, npartitions=None) -> Partitions:
    return open_source(source, mf_columns, npartitions=npartitions)


def compute_stats_dask(formula: str, source, scheduler=None, *, na_action: str = "omit",
                       control: Control | None = None, progressbar: bool | None = None,
                       npartitions: int | None = None, split_every: int = 8) -> DaskStats:
    """Sufficient statistics of ``formula`` on ``source`` by map-reduce on Dask.

    Parameters
    ----------
    formula : str
        lme4 formula with one grouping factor or two nested ones.
    source : pandas.DataFrame, dask.dataframe.DataFrame or path
        CSV file, Parquet file, directory or glob of Parquet files.
    scheduler : see module docstring.
    npartitions : int, optional
        Number of partitions when ``source`` is a pandas frame.
    split_every : int
        Fan-in of the tree reductions.
    """
    import dask

    control = control or Control()
    progressbar = sys.stderr.isatty() if progressbar is None else progressbar
    cols = _open(source, None, npartitions).columns if not hasattr(source, "columns") else list(source.columns)
    mf = ModelFrame.make(formula, cols, na_action)
    check_formula_supported(mf)
    parts = _open(source, list(mf.used), npartitions)
    runner = _Runner(scheduler, progressbar)
    try:
        from dask.base import tokenize

        tw = time.perf_counter()
        runner.warm()
        t0 = time.perf_counter()
        scan_f = dask.delayed(scan_partition, pure=True)
        mf_d = dask.delayed(mf, traverse=False, name=f"bayes-hlm-mf-{tokenize(formula, parts.description)}")
        scans = [scan_f(p, mf_d) for p in parts.parts]
        scan = runner.compute(tree_reduce(scans, merge_scans, split_every, "merge-scans"),
                              f"metadata pass over {parts.npartitions} partition(s)")
        meta = build_meta(scan, mf, control, token=tokenize(formula, parts.description, scan.n_rows,
                                                               time.time()))
        t1 = time.perf_counter()
        stat_f = dask.delayed(partition_stats, pure=True)
        meta_d = dask.delayed(meta, traverse=False, name=f"bayes-hlm-meta-{meta.token}")
        partials = [stat_f(p, meta_d) for p in parts.parts]
        part = runner.compute(tree_reduce(partials, merge_partials, split_every, "merge-stats"),
                              f"statistics pass over {parts.npartitions} partition(s)")
        t2 = time.perf_counter()
    finally:
        runner.close()
    kept = kept_columns(part, meta, control)
    stats, extras = finalize(part, meta, kept)
    _checks(meta, stats, control)
    info = {"n_dropped_na": meta.na_rows}
    if len(kept) < len(meta.fixed_names_full):
        info["dropped_fixed"] = [meta.fixed_names_full[j] for j in range(len(meta.fixed_names_full))
                                 if j not in set(kept.tolist())]
    design = meta.design(kept, int(stats.N), info)
    spec = meta.spec()
    spec.design = design
    spec.kept_fixed = kept
    timings = {"warmup_s": t0 - tw, "meta_s": t1 - t0, "stats_s": t2 - t1,
               "n_partitions": parts.npartitions,
               "rows": int(scan.n_rows), "rows_per_s": scan.n_rows / max(t2 - t1, 1e-9),
               "scheduler": runner.name, "source": parts.description}
    return DaskStats(stats, extras, meta, design, kept, timings)


def _checks(meta: DesignMeta, stats, control: Control) -> None:
    """lme4's input checks on the global statistics (as build_spec does in memory)."""
    n = int(stats.N)
    for k, t in enumerate(meta.mf.parsed.random):
        f = meta.factors[meta.factor_of_term(k)]
        check_group_sizes(control, t.factor, t.source, f.n_levels, len(meta.term_names[k]), n)


# --------------------------------------------------------------------------- #
# Priors from the statistics (Bambi's defaults, as spec.priors.default_priors)
# --------------------------------------------------------------------------- #
def priors_from_stats(ds: DaskStats, user: dict | None = None) -> PriorSet:
    """``default_priors`` with means/SDs from the moments in the statistics, plus user overrides."""
    design, ex = ds.design, ds.extras
    offsets: dict = {}
    z_sd = {}
    for k, g in enumerate(design.groups):
        o = offsets.get(g.factor, 0)
        offsets[g.factor] = o + g.q
        z_sd[k] = np.sqrt(np.maximum(ex.Z_mom[g.factor].var()[o:o + g.q], 0.0))
    mom = Moments(y_mean=float(ex.y_mom.mean[0]), y_sd=float(np.sqrt(max(ex.y_mom.var()[0], 0.0))),
                  x_mean=np.asarray(ex.X_mom.mean, dtype=float),
                  x_sd=np.sqrt(np.maximum(ex.X_mom.var(), 0.0)), z_sd=z_sd)
    return apply_user_priors(priors_from_moments(design, mom), user)


def check_dask_args(npartitions, split_every) -> None:
    """The Dask-only arguments (the others: :func:`bayes_hlm.settings.validate_settings`)."""
    def whole(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))

    if npartitions is not None and (not whole(npartitions) or npartitions < 1):
        raise BayesHLMError(f"npartitions must be None or a whole number >= 1, not {npartitions!r}")
    if not whole(split_every) or split_every < 2:
        raise BayesHLMError(f"split_every must be a whole number >= 2 (the fan-in of the tree "
                            f"reductions), not {split_every!r}")


def natural_scales(ds: DaskStats) -> np.ndarray:
    """Prior-implied scale of every parameter from the statistics' moments (as
    :func:`bayes_hlm.spec.scaling.natural_scales` from the rows): ``sd(y)``, ``sd(y)/sd(x_j)``,
    ``sd(y)/sd(z_kj)`` (constant columns count 1)."""
    ex, design = ds.extras, ds.design

    def sd(v):
        v = np.sqrt(np.maximum(np.asarray(v, dtype=float), 0.0))
        return np.where((v > 0) & np.isfinite(v), v, 1.0)

    y = float(sd(ex.y_mom.var())[0])
    x = sd(ex.X_mom.var())
    x = np.where(np.asarray(design.fixed_names) == "Intercept", 1.0, x)
    vals, offsets = [y, *(y / x)], {}
    for g in design.groups:
        o = offsets.get(g.factor, 0)
        offsets[g.factor] = o + g.q
        z = sd(ex.Z_mom[g.factor].var()[o:o + g.q])
        z = np.where(np.asarray(g.terms) == "Intercept", 1.0, z)
        vals += list(y / z)
    return np.asarray(vals, dtype=float)


def check_scales(ds: DaskStats) -> None:
    """``rescale="auto"`` out of core: the statistics cannot be rescaled, so a model that
    would be (some natural scale outside ``[1/AUTO_RATIO, AUTO_RATIO]``) is refused."""
    from ..spec.scaling import AUTO_RATIO

    s = natural_scales(ds)
    if np.any(s > AUTO_RATIO) or np.any(s < 1.0 / AUTO_RATIO):
        raise OutOfCoreError(
            f"the model's parameter scales span {s.min():.3g} to {s.max():.3g}: in memory "
            "bayes_hlm would sample a rescaled copy (rescale='auto'), which the out-of-core "
            "statistics cannot do. Rescale the response/predictor columns in the data (e.g. "
            "to units where their SDs are between 0.01 and 100), or pass rescale=False to "
            "sample as is (NUTS may mix badly)")
