"""bayes_hlm: Bayesian hierarchical (multilevel, mixed-effects) linear models.

>>> import bayes_hlm as bh
>>> m = bh.fit("Reaction ~ Days + (Days | Subject)", data=bh.datasets.load("sleepstudy"))
>>> m.summary(); m.icc(); m.r2()

Architecture: model spec (``bayes_hlm.spec``: formula -> Design, priors,
checks) -> backends (``bayes_hlm.backends``: full PyMC model, marginalised
NUTS) -> results (``bayes_hlm.results``) -> reporters (``bayes_hlm.reporters``).
The frequentist reference lives in ``bayes_hlm.reml``.
"""

from . import datasets
from .errors import BayesHLMError, BayesHLMWarning, ConvergenceWarning, DataError, FormulaError
from .fitting import fit, sample_prior_predictive
from .results.bayes_result import BayesResult
from .results.hypotheses import contrasts, emmeans, hypothesis, lincom, slopes
from .results.sensitivity import prior_sensitivity
from .results.standardize import standardize
from .results.tidy import tidy
from .results.workflow import compare, kfold, update_formula
from .spec.build import build_design, build_spec
from .spec.centering import center
from .spec.checks import Control
from .spec.priors import Prior, get_prior

load = BayesResult.load

__version__ = "0.1.0"

__all__ = [
    "BayesHLMError", "BayesHLMWarning", "BayesResult", "Control", "ConvergenceWarning",
    "DataError", "FormulaError", "Prior", "build_design", "build_spec", "center", "datasets",
    "fit", "get_prior", "load", "compare", "kfold", "update_formula", "hypothesis", "emmeans",
    "contrasts", "slopes", "lincom", "tidy", "standardize", "prior_sensitivity",
    "sample_prior_predictive",
]
