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

from ..backends import naming
from ..errors import BayesHLMError
from .hypotheses import _summarise_draws, _wald, is_bayes

__all__ = ["standardize", "standardize_reml", "scale_factors"]


def scale_factors(model) -> pd.Series:
    """``sd(x_j) / sd(y)`` per fixed effect (0 for the intercept)."""
    X, y = model.design.X, np.asarray(model.design.y, dtype=float)
    sy = float(np.std(y, ddof=1))
    sx = X.std(axis=0, ddof=1)
    f = np.where(np.array(model.design.fixed_names) == "Intercept", 0.0, sx / sy)
    return pd.Series(f, index=pd.Index(model.design.fixed_names, name="term"))


def standardize(model, method: Literal["basic"] = "basic", prob: float = 0.95,
                kind: Literal["hdi", "eti"] = "hdi", return_draws: bool = False):
    """Standardised coefficients (``standardize_parameters(model, method = "basic")``).

    Returns a table per fixed effect: ``estimate`` (``Std_Coefficient``),
    ``std.error``, ``conf.low``, ``conf.high`` (posterior HDI / ETI, or Wald for REML)
    and the raw ``scale`` factor; with ``return_draws`` also the (draws, p) array.
    """
    if method != "basic":
        raise BayesHLMError("only method='basic' is implemented (beta * sd(x) / sd(y))")
    f = scale_factors(model)
    if is_bayes(model):
        d = model._draws.flat(naming.FIXED) * f.to_numpy()[None, :]
        out = _summarise_draws(d, prob, kind).drop(columns="pd")
        out.loc[f.to_numpy() == 0, ["std.error", "conf.low", "conf.high"]] = np.nan
    else:
        d = None
        out = _wald(model, np.diag(f.to_numpy()), prob)
        out.loc[f.to_numpy() == 0, ["std.error", "df", "statistic", "p.value", "conf.low",
                                    "conf.high"]] = np.nan
        out.loc[f.to_numpy() == 0, ["estimate"]] = 0.0
    out.index = f.index
    out["scale"] = f.to_numpy()
    out = out.reset_index()
    return (out, d) if return_draws else out


def standardize_reml(m, **kwargs) -> pd.DataFrame:
    """:func:`standardize` for a :class:`~bayes_hlm.reml.RemlResult`."""
    return standardize(m, **kwargs)
