"""Deprecated location: ``tidy`` lives in :mod:`bayes_hlm.inference.tidy`.

``from bayes_hlm.results import tidy as T`` keeps working (with a ``DeprecationWarning``).
"""

from __future__ import annotations

import warnings

from ..inference.tidy import EFFECTS, TIDY_COLUMNS, tidy, wald_tidy

warnings.warn("bayes_hlm.results.tidy is deprecated: use bayes_hlm.inference.tidy",
              DeprecationWarning, stacklevel=2)

__all__ = ["tidy", "confint", "tidy_reml", "TIDY_COLUMNS", "EFFECTS"]


def tidy_reml(m, effects=("fixed", "ran_pars"), conf_level: float = 0.95,
              conf_method: str = "wald", **kwargs):
    """Deprecated: ``m.tidy(...)``."""
    return wald_tidy(m, effects, conf_level, conf_method, **kwargs)


def confint(result, prob: float = 0.95, kind: str = "hdi", pars=None, ranef: bool = False):
    """Deprecated: ``result.confint(level, method=, parm=)``."""
    return result.confint(prob, method=kind, parm=pars, ranef=ranef)
