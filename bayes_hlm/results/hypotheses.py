"""Deprecated location: the hypothesis / marginal-means helpers live in :mod:`bayes_hlm.inference`.

``from bayes_hlm.results import hypotheses as H`` keeps working (with a
``DeprecationWarning``); use ``bayes_hlm.inference`` (or the methods on any result).
"""

from __future__ import annotations

import warnings

from ..inference.emmeans import contrasts, emmeans, reference_grid, slopes
from ..inference.hypotheses import expr_label, hypothesis, lincom, wald_hypothesis
from ..inference.intervals import interval
from .parameters import parameter_draws, prior_draws

warnings.warn("bayes_hlm.results.hypotheses is deprecated: use bayes_hlm.inference",
              DeprecationWarning, stacklevel=2)

__all__ = ["hypothesis", "hypothesis_reml", "lincom", "emmeans", "emmeans_reml", "contrasts",
           "contrasts_reml", "slopes", "slopes_reml", "reference_grid", "prior_draws",
           "parameter_draws", "interval", "expr_label"]


def hypothesis_reml(m, hypotheses, alpha: float = 0.05):
    """Deprecated: ``m.hypothesis(...)`` / :func:`bayes_hlm.inference.hypotheses.wald_hypothesis`."""
    return wald_hypothesis(m, hypotheses, alpha=alpha)


def emmeans_reml(m, specs, **kwargs):
    """Deprecated: :func:`bayes_hlm.inference.emmeans`."""
    return emmeans(m, specs, **kwargs)


def contrasts_reml(m, specs, **kwargs):
    """Deprecated: :func:`bayes_hlm.inference.contrasts`."""
    return contrasts(m, specs, **kwargs)


def slopes_reml(m, variable, **kwargs):
    """Deprecated: :func:`bayes_hlm.inference.slopes`."""
    return slopes(m, variable, **kwargs)
