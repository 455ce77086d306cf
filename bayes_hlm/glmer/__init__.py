"""Frequentist generalized linear mixed models, matching ``lme4::glmer`` (1.1-31).

lme4's modular split:

* :func:`~.model.build_model` (``glFormula`` + ``mkRespMod``): response, prior weights,
  offset, the random-effect system (:mod:`.resystem`);
* :class:`~.pirls.GlmerDevfun` (``mkGlmerDevfun``): penalised IRLS, Laplace, adaptive
  Gauss–Hermite quadrature, nAGQ = 0;
* :func:`~.fit.fit_model` (``optimizeGlmer``): the two BOBYQA stages, finite-difference
  Hessian, convergence checks (:mod:`.optimize`);
* :class:`~.result.GlmerResult` (``mkMerMod``): estimates, VarCorr, conditional modes,
  predictions, ICC/R², intervals, summaries.

:func:`glmer` runs them (``glmer.nb``'s θ search for the negative binomial); :func:`anova`
compares nested fits.

The package itself is callable, as :mod:`bayes_hlm.reml`: ``bayes_hlm.glmer(formula, data,
family=...)`` is ``bayes_hlm.glmer.glmer(...)``.
"""

from __future__ import annotations

from .._numba_cache import install as _install_numba_cache

_install_numba_cache()  # before any kernel is defined: stamps cover every compiled file

import sys
import types

from .api import anova, glmer, theta_ml
from .result import GlmerResult

__all__ = ["glmer", "anova", "GlmerResult", "theta_ml"]


class _CallableModule(types.ModuleType):
    """This package, callable as its :func:`glmer` function."""

    def __call__(self, *args, **kwargs) -> GlmerResult:
        return glmer(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
