"""Frequentist REML / ML fits of Gaussian LMMs, matching lme4 (+ lmerTest, performance).

lme4's modular split:

* :func:`make_devfun` (``mkLmerDevfun``): the profiled criterion θ -> d(θ);
* :func:`optimize_theta` (``optimizeLmer``: nlopt BOBYQA as lme4's default ``nloptwrap``,
  scipy L-BFGS-B when nlopt is absent) and :func:`check_convergence` (``checkConv``);
* :class:`RemlResult` (``mkMerMod``): estimates, Satterthwaite tests, VarCorr, ranef, ICC/R²,
  confidence intervals (Wald, profile likelihood, parametric bootstrap: :mod:`.profile`),
  summaries.

:func:`reml` runs the three; :func:`anova` and :func:`ranova` give likelihood-ratio tests.

The module itself is callable: ``bayes_hlm.reml(formula, data, ...)`` is
``bayes_hlm.reml.reml(formula, data, ...)`` (so ``import bayes_hlm as bh; bh.reml(...)`` reads
like lme4's ``lmer(...)``; ``bh.lmer`` is the same function).
"""

from __future__ import annotations

import sys
import types

from .api import anova, ranova, reml
from .criterion import DevFun, make_devfun
from .optimize import check_convergence, optimize_theta
from .result import RemlResult

__all__ = ["reml", "RemlResult", "anova", "ranova", "make_devfun", "DevFun", "optimize_theta",
           "check_convergence"]


class _CallableModule(types.ModuleType):
    """This package, callable as its :func:`reml` function."""

    def __call__(self, *args, **kwargs) -> RemlResult:
        return reml(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
