"""Deprecated location: ``standardize`` lives in :mod:`bayes_hlm.inference.standardize`.

Imports from here keep working (with a ``DeprecationWarning``).
"""

from __future__ import annotations

import warnings

from ..inference.standardize import scale_factors, standardize

warnings.warn("bayes_hlm.results.standardize is deprecated: use bayes_hlm.inference.standardize",
              DeprecationWarning, stacklevel=2)

__all__ = ["standardize", "standardize_reml", "scale_factors"]


def standardize_reml(m, **kwargs):
    """Deprecated: ``m.standardize(...)``."""
    return standardize(m, **kwargs)
