"""Frequentist REML / ML fits of Gaussian LMMs, matching lme4 (+ lmerTest, performance).

lme4's modular split:

* :func:`make_devfun` (``mkLmerDevfun``): the profiled criterion θ -> d(θ);
* :func:`optimize_theta` (``optimizeLmer``: nlopt BOBYQA as lme4's default ``nloptwrap``,
  scipy L-BFGS-B when nlopt is absent) and :func:`check_convergence` (``checkConv``);
* :class:`RemlResult` (``mkMerMod``): estimates, Satterthwaite tests, VarCorr, ranef, ICC/R²,
  confidence intervals (Wald, profile likelihood, parametric bootstrap: :mod:`.profile`),
  summaries.

:func:`reml` runs the three; :func:`anova` and :func:`ranova` give likelihood-ratio tests.
"""

from __future__ import annotations

from .api import anova, ranova, reml
from .criterion import DevFun, make_devfun
from .optimize import check_convergence, optimize_theta
from .result import RemlResult

__all__ = ["reml", "RemlResult", "anova", "ranova", "make_devfun", "DevFun", "optimize_theta",
           "check_convergence"]
