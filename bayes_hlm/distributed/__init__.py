"""Out-of-core fitting: sufficient statistics by map-reduce on Dask (``engine="dask"``).

>>> from bayes_hlm.distributed import fit_dask
>>> m = fit_dask("y ~ x + (x | g)", "data/part-*.parquet", scheduler="tcp://host:8786")

See :mod:`bayes_hlm.distributed.fit_dask`.
"""

from .design_meta import OutOfCoreError
from .fit_dask import DaskStats, compute_stats_dask, fit_dask, priors_from_stats

__all__ = ["DaskStats", "OutOfCoreError", "compute_stats_dask", "fit_dask", "priors_from_stats"]
