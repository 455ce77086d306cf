"""Fitting: ``bayes_hlm.fit`` and its stages (see :mod:`.api`)."""

from ..spec import variable_names as naming
from .api import choose_method, default_sampler, fit, sample_prior_predictive
from .out_of_core import fit_dask

__all__ = ["fit", "fit_dask", "choose_method", "default_sampler", "naming", "sample_prior_predictive"]
