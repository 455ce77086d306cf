"""Interval helpers shared by every result type: one default level, one way to state it.

Every table that holds interval bounds states its level and kind in its header
(``columns.name``, e.g. ``"95% HDI"``) and in ``attrs`` (``level``, ``interval``), whatever
the bound columns are called (``hdi_low``/``hdi_high`` on posterior summaries, broom's
``conf.low``/``conf.high``, brms' ``CI.Lower``/``CI.Upper``, lme4's ``lower``/``upper``).
The default level is 95% everywhere, as lme4's ``confint`` and brms.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special as _sf  # not scipy.stats: its import costs seconds (CLI start-up)

from ..errors import BayesHLMError

__all__ = ["DEFAULT_LEVEL", "hdi", "interval", "summarise_draws", "wald_table", "interval_label",
           "label_interval"]

DEFAULT_LEVEL = 0.95

_KIND_NAMES = {"hdi": "HDI", "eti": "ETI", "wald": "Wald CI", "t": "t CI (Satterthwaite df)",
               "profile": "profile CI", "boot": "bootstrap CI"}


def hdi(draws: np.ndarray, prob: float = DEFAULT_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Highest-density interval over the leading (sample) axis of ``draws`` (S, ...)."""
    x = np.sort(np.asarray(draws, dtype=float), axis=0)
    n = x.shape[0]
    k = int(np.floor(prob * n))
    if k < 1 or n < 2:
        return x[0], x[-1]
    widths = x[k:] - x[: n - k]
    i = np.argmin(widths, axis=0)
    lo = np.take_along_axis(x, i[None], axis=0)[0]
    hi = np.take_along_axis(x, (i + k)[None], axis=0)[0]
    return lo, hi


def interval(draws: np.ndarray, prob: float = DEFAULT_LEVEL,
             kind: str = "hdi") -> tuple[np.ndarray, np.ndarray]:
    """HDI or equal-tailed interval over the leading axis of ``draws``."""
    if kind == "hdi":
        return hdi(draws, prob)
    if kind == "eti":
        a = (1 - prob) / 2
        q = np.quantile(draws, [a, 1 - a], axis=0)
        return q[0], q[1]
    raise BayesHLMError(f"kind must be 'hdi' or 'eti', not {kind!r}")


def summarise_draws(draws: np.ndarray, prob: float = DEFAULT_LEVEL,
                    kind: str = "hdi") -> pd.DataFrame:
    """estimate / std.error / conf.low / conf.high / pd of each column of (S, k) draws."""
    lo, hi = interval(draws, prob, kind)
    pos = (draws > 0).mean(0)
    out = pd.DataFrame({"estimate": draws.mean(0), "std.error": draws.std(0, ddof=1),
                        "conf.low": lo, "conf.high": hi, "pd": np.maximum(pos, 1 - pos)})
    return label_interval(out, prob, kind)


def wald_table(beta: np.ndarray, vcov: np.ndarray, df_of, L: np.ndarray,
               prob: float = DEFAULT_LEVEL, null: np.ndarray | float = 0.0) -> pd.DataFrame:
    """Estimates, SEs, df, t, two-sided p and t-based CIs of the rows of ``L``.

    ``df_of(L)`` gives the denominator df of each row (Satterthwaite for REML fits).
    """
    L = np.atleast_2d(np.asarray(L, dtype=float))
    est = L @ beta
    se = np.sqrt(np.einsum("ij,jk,ik->i", L, vcov, L))
    df = np.asarray(df_of(L), dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (est - null) / se
    q = _sf.stdtrit(df, 0.5 + prob / 2)
    out = pd.DataFrame({"estimate": est, "std.error": se, "df": df, "statistic": t,
                        "p.value": 2 * _sf.stdtr(df, -np.abs(t)),
                        "conf.low": est - q * se, "conf.high": est + q * se})
    return label_interval(out, prob, "t")


def interval_label(prob: float, kind: str) -> str:
    """``"95% HDI"``, ``"90% ETI"``, ``"95% Wald CI"`` ..."""
    pct = f"{100 * prob:.4g}%"
    return f"{pct} {_KIND_NAMES.get(kind, kind)}"


def label_interval(df: pd.DataFrame, prob: float, kind: str) -> pd.DataFrame:
    """State the interval level and kind in ``df``'s header and attrs (in place; returns df)."""
    df.columns.name = interval_label(prob, kind)
    df.attrs.update(level=float(prob), interval=kind)
    return df
