"""Moved to :mod:`bayes_hlm.inference.contract` (shared by the Bayesian and REML results).

Kept so ``from bayes_hlm.results.base import MixedModelResult`` keeps working.
"""

from ..inference.contract import MixedModelResult, ModelSummary, Nobs, ValueTable

__all__ = ["MixedModelResult", "ModelSummary", "Nobs", "ValueTable"]
