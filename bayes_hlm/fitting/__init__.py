"""Fitting: ``bayes_hlm.fit`` and its stages (see :mod:`.api`)."""

from ..backends import naming
from .api import choose_method, default_sampler, fit, sample_prior_predictive

__all__ = ["fit", "choose_method", "default_sampler", "naming", "sample_prior_predictive"]
