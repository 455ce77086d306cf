"""Out-of-core sufficient statistics by map-reduce on Dask: a data source of the fit pipeline.

>>> import bayes_hlm as bh
>>> m = bh.fit("y ~ x + (x | g)", "data/part-*.parquet", engine="dask",
...            scheduler="tcp://host:8786")

:func:`compute_stats_dask` makes the statistics (see :mod:`.out_of_core`); the fit itself is
:func:`bayes_hlm.fitting.fit_dask`. This package does not import :mod:`bayes_hlm.fitting`,
except for ``bayes_hlm.distributed.fit_dask``: a lazy, deprecated alias kept for existing code
(listed in docs/architecture.md).
"""

from .._numba_cache import install as _install_numba_cache

_install_numba_cache()  # before any kernel is defined: stamps cover every compiled file

from .design_meta import OutOfCoreError
from .out_of_core import DaskStats, compute_stats_dask, priors_from_stats

__all__ = ["DaskStats", "OutOfCoreError", "compute_stats_dask", "fit_dask", "priors_from_stats"]


def __getattr__(name: str):
    # The one import back into the pipeline: the old public spelling of the out-of-core fit.
    if name == "fit_dask":
        import warnings

        from ..fitting.out_of_core import fit_dask

        warnings.warn("bayes_hlm.distributed.fit_dask moved to bayes_hlm.fitting.fit_dask "
                      "(or call bayes_hlm.fit(..., engine='dask'))", DeprecationWarning, stacklevel=2)
        return fit_dask
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
