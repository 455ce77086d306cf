"""bayes_hlm: Bayesian hierarchical (multilevel, mixed-effects) linear models.

>>> import bayes_hlm as bh
>>> m = bh.fit("Reaction ~ Days + (Days | Subject)", data=bh.datasets.load("sleepstudy"))
>>> m.summary(); m.icc(); m.r2()

Architecture: model spec (``bayes_hlm.spec``: formula -> Design, priors,
checks) -> backends (``bayes_hlm.backends``: full PyMC model, marginalised
NUTS) -> results (``bayes_hlm.results``) -> reporters (``bayes_hlm.reporters``).
The frequentist reference lives in ``bayes_hlm.reml``, which is also callable:
``bh.reml(formula, data)`` (alias ``bh.lmer``) fits by REML as ``lme4::lmer``.
"""

from .errors import (BayesHLMError, BayesHLMWarning, ColumnNotFoundError, ConvergenceWarning,
                     DataError, FormulaError, OutOfCoreError)

# Everything else is imported on first use (PEP 562), so that ``import bayes_hlm`` - and the
# ``bayes-hlm reml`` command - do not pay for PyMC / PyTensor / ArviZ when they are not needed.
_LAZY = {
    "datasets": (".datasets", None),
    "fit": (".fitting", "fit"),
    "sample_prior_predictive": (".fitting", "sample_prior_predictive"),
    "BayesResult": (".results.bayes_result", "BayesResult"),
    "MixedModelResult": (".inference.contract", "MixedModelResult"),
    "contrasts": (".inference.emmeans", "contrasts"),
    "emmeans": (".inference.emmeans", "emmeans"),
    "hypothesis": (".inference.hypotheses", "hypothesis"),
    "lincom": (".inference.hypotheses", "lincom"),
    "slopes": (".inference.emmeans", "slopes"),
    "prior_sensitivity": (".results.sensitivity", "prior_sensitivity"),
    "standardize": (".inference.standardize", "standardize"),
    "tidy": (".inference.tidy", "tidy"),
    "compare": (".results.workflow", "compare"),
    "kfold": (".results.workflow", "kfold"),
    "update_formula": (".results.workflow", "update_formula"),
    "build_design": (".spec.build", "build_design"),
    "build_spec": (".spec.build", "build_spec"),
    "center": (".spec.centering", "center"),
    "Control": (".spec.control", "Control"),
    "Prior": (".spec.priors", "Prior"),
    "get_prior": (".spec.priors", "get_prior"),
    "load": (".results.bayes_result", "BayesResult.load"),
    "reml": (".reml", None),           # a callable module: bh.reml(formula, data)
    "lmer": (".reml.api", "reml"),     # lme4's name for the same fit
    "glmer": (".glmer", None),         # a callable module: bh.glmer(formula, data, family=)
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'bayes_hlm' has no attribute {name!r}")
    import importlib

    from .progress import phase

    module, attr = _LAZY[name]
    # the first fit imports PyMC, ArviZ and the samplers: seconds, more after an install
    with phase("loading libraries (pandas, PyMC, ArviZ; once per session)"):
        if name == "fit":  # on a cold compile cache a child starts compiling meanwhile
            from .backends.numba_density import prestart

            prestart()
        obj = importlib.import_module(module, __name__)
    for part in (attr.split(".") if attr else []):
        obj = getattr(obj, part)
    globals()[name] = obj  # cache: later look-ups skip __getattr__
    return obj


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "BayesHLMError", "BayesHLMWarning", "BayesResult", "MixedModelResult", "Control",
    "ConvergenceWarning", "ColumnNotFoundError", "OutOfCoreError",
    "DataError", "FormulaError", "Prior", "build_design", "build_spec", "center", "datasets",
    "fit", "get_prior", "load", "compare", "kfold", "update_formula", "hypothesis", "emmeans",
    "contrasts", "slopes", "lincom", "tidy", "standardize", "prior_sensitivity",
    "sample_prior_predictive", "reml", "lmer", "glmer",
]
