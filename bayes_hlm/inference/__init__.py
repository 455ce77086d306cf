"""Inference helpers shared by every mixed-model result (Bayesian and REML alike).

* :mod:`.intervals` - the one interval default (95%) and how a table states its level;
* :mod:`.hypotheses` - brms ``hypothesis()``, ``lincom``;
* :mod:`.emmeans` - reference grid, marginal means, contrasts, slopes (emmeans);
* :mod:`.tidy` - broom.mixed ``tidy``; :mod:`.standardize` - standardised coefficients;
* :mod:`.frames` - :class:`ReportFrame`, the table type reports return;
* :mod:`.contract` - :class:`MixedModelResult`, the base class of both result types;
* :mod:`.variance` - ICC/R² variance parts (performance's rule) for both sides;
* :mod:`.reference` - the typed frequentist reference Bayesian comparisons take.

The helpers never look at how a result was computed: they build weight matrices and
tables, and ask the result for estimates through the contract of
:class:`bayes_hlm.inference.contract.MixedModelResult` (``_linear_estimates``, ``fixef``,
``varcorr``, ...). They import neither :mod:`bayes_hlm.results` nor :mod:`bayes_hlm.reml`.
"""

from __future__ import annotations

from .emmeans import contrasts, emmeans, reference_grid, slopes
from .frames import ReportFrame
from .hypotheses import hypothesis, lincom
from .intervals import DEFAULT_LEVEL, interval
from .standardize import scale_factors, standardize
from .tidy import tidy

__all__ = ["DEFAULT_LEVEL", "ReportFrame", "contrasts", "emmeans", "hypothesis", "interval",
           "lincom", "reference_grid", "scale_factors", "slopes", "standardize", "tidy"]
