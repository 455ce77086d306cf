"""Moved to :mod:`bayes_hlm.inference.variance` (shared by the Bayesian and REML results).

Kept so ``from bayes_hlm.results.variance import variance_parts`` keeps working.
"""

from ..inference.variance import (VarianceParts, VarianceTerms, bayes_r2, factor_columns,
                                  fixed_covariance, random_variance, term_mask, variance_parts)

__all__ = ["VarianceParts", "VarianceTerms", "bayes_r2", "factor_columns", "fixed_covariance",
           "random_variance", "term_mask", "variance_parts"]
