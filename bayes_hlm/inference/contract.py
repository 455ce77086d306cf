"""The one result contract shared by the Bayesian and the frequentist (REML/ML) fits.

:class:`MixedModelResult` fixes the names, signatures and return types that users call on
any fit (as MixedModels.jl / lme4's generics do), and writes once what is the same
computation on both sides:

==================  ===========================================================
``nobs()``          number of observations (``nobs(fit)``); ``fit.nobs`` used as a number
                    still works (deprecated)
``ngrps()``         levels per grouping factor
``fixef()``         fixed effects table (posterior summary / estimates, SE, df, t, p)
``ranef()``         group effects per factor (posterior summary / conditional modes)
``coef()``          fixed + group effects per level
``varcorr()``       group SDs, correlations, residual SD (lme4 ``VarCorr``)
``summary()``       a :class:`ModelSummary` (a table; ``print`` shows the report)
``confint()``       intervals of every parameter, ``level=0.95``, ``method=``
``icc()``, ``r2()`` ICC and R² tables (performance's definitions, :mod:`.variance`)
``predict()``       predictions for the data or ``newdata``
``tidy()``, ``hypothesis()``, ``lincom()``, ``emmeans()``, ``contrasts()``,
``slopes()``, ``standardize()``  the helpers of :mod:`bayes_hlm.inference`
==================  ===========================================================

Every interval defaults to 95% and states its level in the table header
(``columns.name``, e.g. ``"95% HDI"``). A subclass provides the estimation hooks:
``_linear_estimates`` (estimates of ``L β``), ``linear_draws``, ``variance_parts`` and
``_value_table`` (how a derived quantity - one value or draws - is tabulated).
"""

from __future__ import annotations

import abc
import warnings
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .emmeans import contrasts as _contrasts
from .emmeans import emmeans as _emmeans
from .emmeans import slopes as _slopes
from .hypotheses import lincom as _lincom
from .standardize import standardize as _standardize
from .frames import ReportFrame
from .intervals import DEFAULT_LEVEL
from .variance import VarianceParts, VarianceTerms

__all__ = ["MixedModelResult", "ModelSummary", "ValueTable", "Nobs"]


# ------------------------------------------------------------------ nobs
def _deprecated_number(name):
    def op(self, *args):
        warnings.warn("using fit.nobs as a number is deprecated: call fit.nobs() (lme4's nobs(fit))",
                      DeprecationWarning, stacklevel=2)
        return getattr(int, name)(int(self), *args)
    op.__name__ = name
    return op


class Nobs(int):
    """The number of observations: call it (``fit.nobs()``, the one spelling); using it as
    a number directly (``fit.nobs * 2``, the old REML property) still works, with a
    ``DeprecationWarning``."""

    def __call__(self) -> int:
        return int(self)

    __hash__ = int.__hash__


for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__",
              "__truediv__", "__rtruediv__", "__floordiv__", "__rfloordiv__", "__mod__", "__pow__",
              "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__float__",
              "__index__", "__format__", "__neg__", "__abs__"):
    setattr(Nobs, _name, _deprecated_number(_name))


# --------------------------------------------------------------- tables
class ModelSummary(ReportFrame):
    """What ``summary()`` returns on every fit: the parameter table (a DataFrame, one row per
    parameter, column ``kind``) whose ``print``/``repr`` is the full report (lme4/lmerTest
    style for REML, brms style for Bayesian fits); ``.text`` holds that report."""

    _metadata = ["caption", "note", "text"]
    text: str | None = None

    @property
    def _constructor(self):
        # a table derived from the summary (a slice, a drop) is no longer the report
        return ReportFrame

    def __repr__(self) -> str:
        return self.text if self.text else super().__repr__()

    def __str__(self) -> str:
        return self.__repr__()


_LEGACY_KEYS = {"icc_adjusted": "icc", "r2m": "r2_marginal", "r2c": "r2_conditional"}


class ValueTable(ReportFrame):
    """ICC / R² table: one row per quantity (``icc``, ``icc_unadjusted``, ``icc[factor]``;
    ``r2_marginal``, ``r2_conditional`` and, Bayesian, ``r2_bayes``).

    Reading a row as ``table["icc_adjusted"]`` (the dict a REML fit returned before) still
    gives its value, with a ``DeprecationWarning``; use ``table.loc[row, "estimate"]``.
    """

    @property
    def _constructor(self):
        return ValueTable

    def __getitem__(self, key):
        if isinstance(key, str) and key not in self.columns:
            row = _LEGACY_KEYS.get(key, key)
            col = "estimate" if "estimate" in self.columns else "mean"
            if row in self.index:
                warnings.warn(f"table[{key!r}] is deprecated: use table.loc[{row!r}, {col!r}]",
                              DeprecationWarning, stacklevel=2)
                return float(self.loc[row, col])
            if key == "by_factor":
                warnings.warn("table['by_factor'] is deprecated: use the icc[<factor>] rows",
                              DeprecationWarning, stacklevel=2)
                return {i[4:-1]: float(self.loc[i, col]) for i in self.index
                        if i.startswith("icc[")}
        return super().__getitem__(key)


# ---------------------------------------------------------------- result
class MixedModelResult(abc.ABC):
    """What every fitted mixed model offers (see the module docstring)."""

    spec: Any

    # ---- basics, written once
    @property
    @abc.abstractmethod
    def design(self):
        """The model design (:class:`bayes_hlm.spec.design.Design`)."""

    @property
    def formula(self) -> str:
        return self.design.formula

    @property
    def nobs(self) -> Nobs:
        """Number of observations used (after dropping missing values): call ``fit.nobs()``."""
        return Nobs(self.design.n)

    def ngrps(self) -> dict[str, int]:
        """Number of levels of each grouping factor, in formula order."""
        return self.design.factors()

    # ---- accessors each paradigm computes its own way
    @abc.abstractmethod
    def fixef(self, level: float | None = None) -> pd.DataFrame:
        """Fixed effects table, index = term."""

    @abc.abstractmethod
    def ranef(self) -> dict[str, pd.DataFrame]:
        """Group effects per factor, indexed (level, term)."""

    @abc.abstractmethod
    def coef(self) -> dict[str, pd.DataFrame]:
        """Fixed + group effects per level, per factor (lme4 ``coef``)."""

    @abc.abstractmethod
    def varcorr(self) -> pd.DataFrame:
        """group, term, term_b, sd, variance, corr (lme4 ``VarCorr``), residual last."""

    @abc.abstractmethod
    def summary(self, level: float | None = None) -> ModelSummary:
        """The parameter table; ``print`` it for the report."""

    @abc.abstractmethod
    def confint(self, level: float = DEFAULT_LEVEL, method: str | None = None, parm=None,
                **kwargs) -> pd.DataFrame:
        """Interval of each parameter: columns ``estimate``/``lower``/``upper`` or lme4's."""

    @abc.abstractmethod
    def predict(self, newdata: pd.DataFrame | None = None, **kwargs) -> pd.DataFrame:
        """Predictions for the data rows or ``newdata``."""

    @abc.abstractmethod
    def tidy(self, effects=("fixed", "ran_pars"), conf_level: float = DEFAULT_LEVEL,
             conf_method: str | None = None, **kwargs) -> ReportFrame:
        """broom.mixed ``tidy``; see :func:`bayes_hlm.inference.tidy.tidy`."""

    @abc.abstractmethod
    def hypothesis(self, hypotheses: str | Sequence[str], alpha: float = 0.05,
                   **kwargs) -> pd.DataFrame:
        """brms ``hypothesis`` (Bayesian) / Wald t-tests (REML)."""

    # ---- estimation hooks
    @abc.abstractmethod
    def _linear_estimates(self, L: np.ndarray, level: float = DEFAULT_LEVEL,
                          kind: str | None = None) -> pd.DataFrame:
        """Estimates of the rows of ``L β``: ``estimate``, ``std.error``, ``conf.low``,
        ``conf.high`` and either ``pd`` (posterior) or ``df``, ``statistic``, ``p.value``."""

    @abc.abstractmethod
    def linear_draws(self, L: np.ndarray) -> np.ndarray:
        """Posterior draws of ``L β`` (draws, rows); frequentist fits raise."""

    @abc.abstractmethod
    def variance_parts(self, terms: VarianceTerms = "performance") -> VarianceParts:
        """Variance components (arrays over draws; one element for a frequentist fit)."""

    @abc.abstractmethod
    def _value_table(self, values: dict[str, np.ndarray], level: float) -> ValueTable:
        """Tabulate derived quantities (per-draw arrays, or one value each)."""

    def _r2_extra(self, **kwargs) -> dict[str, np.ndarray]:
        """Extra R² rows (the Bayesian R² of a posterior); none by default."""
        if kwargs:
            raise TypeError(f"r2() got unexpected keyword argument(s) {sorted(kwargs)}")
        return {}

    # ---- ICC / R², written once
    def icc(self, by_factor: bool = False, level: float | None = None,
            terms: VarianceTerms = "performance", prob: float | None = None) -> ValueTable:
        """ICC table (``performance::icc``): rows ``icc`` (adjusted: random / (random +
        residual)), ``icc_unadjusted`` (fixed variance in the denominator too) and with
        ``by_factor`` one ``icc[<factor>]`` per factor.

        ``terms="performance"`` (default) counts the random terms that contain an intercept,
        as performance does (the slope-only part of ``(x || g)`` adds nothing);
        ``terms="all"`` counts every random term. See :mod:`bayes_hlm.inference.variance`.
        """
        from ..inference._args import resolve_level

        level = resolve_level(level, prob, "icc")
        vp = self.variance_parts(terms)
        vals = {"icc": vp.icc(), "icc_unadjusted": vp.random_total / (
            vp.fixed + vp.random_total + vp.residual)}
        if by_factor:
            vals.update({f"icc[{k}]": v for k, v in vp.icc_by_factor().items()})
        return self._value_table(vals, level)

    def r2(self, level: float | None = None, terms: VarianceTerms = "performance",
           prob: float | None = None, **kwargs) -> ValueTable:
        """R² table: Nakagawa's marginal and conditional R² (``performance::r2_nakagawa``;
        ``terms`` as in :meth:`icc`) and, for a posterior, brms' Bayesian R² first."""
        from ..inference._args import resolve_level

        level = resolve_level(level, prob, "r2")
        vp = self.variance_parts(terms)
        vals = {**self._r2_extra(**kwargs), "r2_marginal": vp.r2_marginal(),
                "r2_conditional": vp.r2_conditional()}
        return self._value_table(vals, level)

    # ---- inference helpers, written once (bayes_hlm.inference)
    def lincom(self, weights, level: float | None = None, kind: str = "hdi",
               prob: float | None = None) -> pd.DataFrame:
        """A linear combination of the fixed effects; see :func:`bayes_hlm.inference.lincom`."""
        return _lincom(self, weights, level=level, kind=kind, prob=prob)

    def emmeans(self, specs, **kwargs) -> pd.DataFrame:
        """Estimated marginal means (emmeans ``emmeans``); see :func:`bayes_hlm.inference.emmeans`."""
        return _emmeans(self, specs, **kwargs)

    def contrasts(self, specs, **kwargs) -> pd.DataFrame:
        """Contrasts of marginal means (emmeans ``pairs`` / ``contrast``)."""
        return _contrasts(self, specs, **kwargs)

    def slopes(self, variable: str, **kwargs) -> pd.DataFrame:
        """Slopes of a covariate at chosen values (emmeans ``emtrends``)."""
        return _slopes(self, variable, **kwargs)

    def standardize(self, method: str = "basic", **kwargs):
        """Standardised coefficients (``parameters::standardize_parameters``)."""
        return _standardize(self, method=method, **kwargs)
