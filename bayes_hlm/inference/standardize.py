"""Standardised fixed effects (``effectsize`` / ``parameters::standardize_parameters``).

``method="basic"``: every coefficient is rescaled as ``beta_j * sd(x_j) / sd(y)``
where ``x_j`` is its column of the design matrix (so dummy and interaction
columns are scaled by their own SD, as ``basic`` does) and both SDs use
``ddof=1`` like R's ``sd``. The intercept's standardised value is 0, as in
``effectsize``. On the posterior the rescaling is applied draw by draw; on a REML
fit the SEs and Wald intervals (Satterthwaite df) are rescaled.

Group-mean centring (``datawizard::demean`` / ``center(x, by)``) lives in
:func:`bayes_hlm.center`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from ..errors import BayesHLMError
from ._args import resolve_level

__all__ = ["standardize", "scale_factors"]


def scale_factors(model) -> pd.Series:
    """``sd(x_j) / sd(y)`` per fixed effect (0 for the intercept)."""
    X, y = model.design.X, np.asarray(model.design.y, dtype=float)
    sy = float(np.std(y, ddof=1))
    sx = X.std(axis=0, ddof=1)
    f = np.where(np.array(model.design.fixed_names) == "Intercept", 0.0, sx / sy)
    return pd.Series(f, index=pd.Index(model.design.fixed_names, name="term"))


def standardize(model, method: Literal["basic"] = "basic", level: float | None = None,
                kind: Literal["hdi", "eti"] = "hdi", return_draws: bool = False,
                prob: float | None = None):
    """Standardised coefficients (``standardize_parameters(model, method = "basic")``).

    Returns a table per fixed effect: ``estimate`` (``Std_Coefficient``),
    ``std.error``, ``conf.low``, ``conf.high`` (posterior HDI / ETI, or Wald with
    Satterthwaite df for REML) and the raw ``scale`` factor; with ``return_draws`` (Bayesian
    fits) also the (draws, p) array. ``level`` defaults to 0.95 (``prob``: deprecated).
    """
    level = resolve_level(level, prob, "standardize")
    if method != "basic":
        raise BayesHLMError("only method='basic' is implemented (beta * sd(x) / sd(y))")
    f = scale_factors(model)
    zero = f.to_numpy() == 0
    L = np.diag(f.to_numpy())
    out = model._linear_estimates(L, level, kind)
    if "p.value" in out.columns:  # Wald table
        out.loc[zero, ["std.error", "df", "statistic", "p.value", "conf.low", "conf.high"]] = np.nan
        out.loc[zero, ["estimate"]] = 0.0
    else:
        out = out.drop(columns="pd")
        out.loc[zero, ["std.error", "conf.low", "conf.high"]] = np.nan
    out.index = f.index
    out["scale"] = f.to_numpy()
    out = out.reset_index()
    return (out, model.linear_draws(L)) if return_draws else out
