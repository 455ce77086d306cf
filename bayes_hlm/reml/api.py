"""Entry points: :func:`reml`, :func:`anova` (LRT, lme4) and :func:`ranova` (lmerTest)."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
from scipy import special as _sf  # not scipy.stats: its import costs seconds (CLI start-up)

from .._blas import blas_threads  # shared with glmer and the fitted means' cell form
from ..errors import BayesHLMError, DataError, FormulaError
from ..spec.design import Design, GroupTerm
from .criterion import DevFun
from .optimize import DEFAULT_CONTROL, check_convergence, optimize_theta
from .result import RemlResult

__all__ = ["reml", "anova", "ranova", "fit_design", "optimizer_dict", "blas_threads", "lrt_table"]


def _as_spec(formula_or_spec, data, checks=None):
    from ..spec.build import ModelSpec, build_spec
    if isinstance(formula_or_spec, ModelSpec):
        family = getattr(formula_or_spec, "family", None)
        if family is not None and "reml" not in family.engines():
            # REML is the identity-link Gaussian LMM's criterion: fitting it to 0/1 or count
            # data would be a silently wrong reference; glmer's Laplace/AGQ engine is the one
            raise BayesHLMError(
                f"reml() fits Gaussian linear mixed models (identity link); this model's family "
                f"is {family.name!r} with link {family.link.name!r}. Fit generalized models with "
                "bh.glmer(formula, data, family=...) (lme4's Laplace / adaptive quadrature)")
        return formula_or_spec, formula_or_spec.design
    if isinstance(formula_or_spec, Design):
        return None, formula_or_spec
    if isinstance(formula_or_spec, str):
        if data is None:
            raise DataError("reml() got a formula but no data: pass data=<DataFrame>")
        spec = build_spec(formula_or_spec, data, control=checks)
        return spec, spec.design
    raise TypeError("reml() needs a formula string + DataFrame, a ModelSpec or a Design")


def fit_design(design: Design, method: str = "REML", control: dict | None = None,
               spec=None, theta0=None) -> RemlResult:
    method = method.upper()
    if method not in ("REML", "ML"):
        raise BayesHLMError(f"method must be 'REML' or 'ML', not {method!r}")
    if not design.groups:
        raise FormulaError("the model has no random-effect terms such as (1 | group); "
                           "use a linear model")
    ctl = {**DEFAULT_CONTROL, **(control or {})}
    with blas_threads(ctl.get("blas_threads", 1)):
        devfun = DevFun(design, reml=(method == "REML"))
        opt = optimize_theta(devfun, ctl, theta0=theta0)
        msgs = check_convergence(devfun, opt, ctl)
        return RemlResult(spec, devfun, opt, msgs, ctl)


_blas_threads = blas_threads   # the old private spelling (tests import it)


def reml(formula_or_spec, data: pd.DataFrame | None = None, method: str = "REML",
         control=None, checks=None) -> RemlResult:
    """Fit a Gaussian LMM by REML (default) or ML, as ``lme4::lmer``.

    Also reachable as ``bayes_hlm.reml(formula, data)`` and ``bayes_hlm.lmer(formula, data)``.

    Parameters
    ----------
    formula_or_spec : str, ModelSpec or Design
        lme4 formula (with ``data``) or an already-built spec / design.
    data : pandas.DataFrame, optional
    method : {"REML", "ML"}
    control : bayes_hlm.Control, optional
        The same object as ``fit(control=)`` (lme4's ``lmerControl``): its ``check_*`` actions
        apply when building from a formula, its ``optimizer`` / ``opt_ctrl`` set the optimiser
        (see :data:`optimize.DEFAULT_CONTROL`). A plain dict of optimiser settings (the older
        spelling) still works, with a ``DeprecationWarning``.
    checks : bayes_hlm.Control, optional
        Deprecated: pass ``control=Control(...)``.
    """
    checks, ctl = _split_control(control, checks)
    spec, design = _as_spec(formula_or_spec, data, checks)
    return fit_design(design, method, ctl, spec=spec)


def _split_control(control, checks):
    """(input-check Control or None, optimiser dict) from ``reml``'s arguments."""
    from ..spec.control import Control
    if checks is not None:
        warnings.warn("reml(checks=...) is deprecated: pass control=Control(...), the same object "
                      "fit(control=) takes", DeprecationWarning, stacklevel=3)
        if not isinstance(checks, Control):
            raise TypeError(f"checks must be a bayes_hlm.Control, not {type(checks).__name__}")
    if control is None:
        return checks, {}
    if isinstance(control, Control):
        if checks is not None:
            raise TypeError("pass the input checks and the optimiser settings in one "
                            "control=Control(...), not control= and checks= together")
        return control, optimizer_dict(control)
    if isinstance(control, dict):
        warnings.warn("reml(control={...}) with a dict of optimiser settings is deprecated: pass "
                      "control=Control(optimizer=..., opt_ctrl={...})", DeprecationWarning,
                      stacklevel=3)
        return checks, _validated(dict(control))
    raise TypeError(f"control must be a bayes_hlm.Control, not {type(control).__name__}")


# settings the optimiser and convergence checks read, besides DEFAULT_CONTROL's
_EXTRA_KEYS = {"xtol_abs", "xtol_rel", "ftol_abs", "maxfun", "polish", "polish_ftol", "blas_threads"}
OPTIMIZERS = ("bobyqa", "L-BFGS-B")


def _validated(ctl: dict) -> dict:
    known = set(DEFAULT_CONTROL) | _EXTRA_KEYS
    bad = sorted(set(ctl) - known)
    if bad:
        raise TypeError(f"unknown optimiser setting(s) {bad}; known: {sorted(known)}")
    if ctl.get("optimizer", "bobyqa") not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, not {ctl['optimizer']!r}")
    return ctl


def optimizer_dict(control) -> dict:
    """The optimiser settings of a :class:`~bayes_hlm.Control` (``optimizer`` + ``opt_ctrl``)."""
    return _validated(control.optimizer_settings())


# --------------------------------------------------------------------------- #
# likelihood-ratio tests
# --------------------------------------------------------------------------- #
def _refit_ml(m: RemlResult) -> RemlResult:
    if m.method == "ML":
        return m
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_design(m.design, "ML", m.control, spec=m.spec)


def anova(*models: RemlResult, refit: bool = True) -> pd.DataFrame:
    """Likelihood-ratio test of nested models (lme4 ``anova``; REML fits are refitted by ML)."""
    if len(models) < 2:
        raise ValueError("anova needs at least two models")
    if refit and any(m.method == "REML" for m in models):
        models = tuple(_refit_ml(m) for m in models)
    return lrt_table(models)


def lrt_table(models) -> pd.DataFrame:
    """lme4's ``anova`` table of likelihood-ratio tests between fits ordered by ``npar``
    (each row tested against the row above; lmer and glmer fits)."""
    models = sorted(models, key=lambda m: m.npar)
    rows, prev = [], None
    for m in models:
        r = {"model": m.formula, "npar": m.npar, "AIC": m.aic, "BIC": m.bic, "logLik": m.loglik,
             "deviance": -2 * m.loglik, "Chisq": np.nan, "Df": np.nan, "p": np.nan}
        if prev is not None:
            chisq = max(2 * (m.loglik - prev.loglik), 0.0)
            dfd = m.npar - prev.npar
            r.update(Chisq=chisq, Df=dfd, p=float(_sf.chdtrc(dfd, chisq)) if dfd > 0 else np.nan)
        rows.append(r)
        prev = m
    return pd.DataFrame(rows).set_index("model")


def _lm_loglik(design: Design, reml: bool) -> tuple[float, int]:
    X, y = design.X, design.working_y
    N, p = X.shape
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    rss = float(np.sum((y - X @ beta) ** 2))
    if reml:
        _, ld = np.linalg.slogdet(X.T @ X)
        dev = (N - p) * (1 + np.log(2 * np.pi * rss / (N - p))) + ld
    else:
        dev = N * (1 + np.log(2 * np.pi * rss / N))
    return -0.5 * dev, p + 1


def _term_label(g: GroupTerm) -> str:
    expr = "1" if g.terms == ("Intercept",) else " + ".join(
        t for t in g.terms if t != "Intercept") if "Intercept" in g.terms else \
        "0 + " + " + ".join(g.terms)
    bar = "|" if g.correlated or g.q == 1 else "||"
    return f"({expr} {bar} {g.factor})"


def ranova(m: RemlResult) -> pd.DataFrame:
    """lmerTest ``ranova``: drop each random term (reduce ``(x|g)`` to ``(1|g)``), LRT."""
    reml_fit = m.method == "REML"
    rows = [{"term": "<none>", "npar": m.npar, "logLik": m.loglik, "AIC": m.aic,
             "LRT": np.nan, "Df": np.nan, "p": np.nan}]
    groups = list(m.design.groups)
    for k, g in enumerate(groups):
        if g.q > 1 and "Intercept" in g.terms:
            j = g.terms.index("Intercept")
            new = dataclasses.replace(g, terms=("Intercept",), Z=g.Z[:, [j]], correlated=False)
            label = " + ".join(t for t in g.terms if t != "Intercept") + f" in {_term_label(g)}"
            gs = groups[:k] + [new] + groups[k + 1:]
        else:
            label = _term_label(g)
            gs = groups[:k] + groups[k + 1:]
        d2 = dataclasses.replace(m.design, groups=tuple(gs))
        if gs:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m2 = fit_design(d2, m.method, m.control)
            ll, npar = m2.loglik, m2.npar
        else:
            ll, npar = _lm_loglik(d2, reml_fit)
        lrt = max(2 * (m.loglik - ll), 0.0)
        dfd = m.npar - npar
        rows.append({"term": label, "npar": npar, "logLik": ll, "AIC": -2 * ll + 2 * npar,
                     "LRT": lrt, "Df": dfd, "p": float(_sf.chdtrc(dfd, lrt))})
    return pd.DataFrame(rows).set_index("term")
