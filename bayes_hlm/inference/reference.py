"""The typed Bayes-vs-frequentist seam: what a frequentist fit hands to comparisons and plots.

* :class:`FrequentistReference` - point estimates of a frequentist fit of the same model
  (made by :meth:`bayes_hlm.reml.RemlResult.reference`; a ``glmer``-style engine will make
  the same object), keyed like :func:`~bayes_hlm.results.compare_reml.compare_reml` rows.
* :class:`MissingReference` - there is no reference, and why (the REML fit failed, the
  engine cannot be imported). Tables and plots print its ``reason``; nothing is dropped
  silently.

These types live in :mod:`bayes_hlm.inference` because both result packages use them:
:mod:`bayes_hlm.reml` makes them, :mod:`bayes_hlm.results` and the reporters read them.
The ICC and R² of a reference use the same definition as the posterior's
(:mod:`bayes_hlm.inference.variance`, performance's rule), so comparing them is meaningful.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Union

import numpy as np
import pandas as pd

__all__ = ["FrequentistReference", "MissingReference", "Reference", "norm_term"]


def norm_term(name: str) -> str:
    """lme4 spells the intercept ``(Intercept)``; the Bayesian side ``Intercept``."""
    s = str(name)
    return "Intercept" if s in ("(Intercept)", "Intercept") else s


@dataclass(frozen=True)
class FrequentistReference:
    """Point estimates of a frequentist fit, in the names the Bayesian tables use.

    Attributes
    ----------
    engine : str
        What made it (``"REML (bayes_hlm.reml, lme4-exact)"``).
    method : str
        ``"REML"`` or ``"ML"``.
    fixef : DataFrame
        Index = term (``Intercept`` spelling); columns ``estimate``, ``se`` (and ``df``, ``p``).
    varcorr : DataFrame
        lme4 ``VarCorr`` rows: ``group``, ``term``, ``term_b``, ``sd``, ``variance``, ``corr``.
    sigma, icc, r2_marginal, r2_conditional : float
        Residual SD; adjusted ICC and Nakagawa R² (performance's definitions; NaN where
        performance gives NA, e.g. a singular fit).
    singular : bool
    modes : dict of DataFrame
        Conditional modes per factor, index (level, term), column ``mode`` (and ``cond_sd``).
    """

    engine: str
    method: str
    fixef: pd.DataFrame
    varcorr: pd.DataFrame
    sigma: float
    icc: float
    r2_marginal: float
    r2_conditional: float
    singular: bool
    modes: dict[str, pd.DataFrame] = field(default_factory=dict)

    def __post_init__(self):
        fx = self.fixef.copy()
        fx.index = [norm_term(i) for i in fx.index]
        vc = self.varcorr.copy()
        for c in ("term", "term_b"):
            vc[c] = vc[c].fillna("").map(lambda t: norm_term(t) if t else "")
        modes = {}
        for f, df in self.modes.items():
            df = df.copy()
            lv, tm = df.index.get_level_values(0), df.index.get_level_values(1)
            df.index = pd.MultiIndex.from_arrays([lv.astype(str), [norm_term(t) for t in tm]],
                                                 names=["level", "term"])
            modes[f] = df
        object.__setattr__(self, "fixef", fx)
        object.__setattr__(self, "varcorr", vc)
        object.__setattr__(self, "modes", modes)

    # -- lookups, NaN when the reference has no such parameter
    @property
    def r2m(self) -> float:
        return self.r2_marginal

    @property
    def r2c(self) -> float:
        return self.r2_conditional

    def fixed(self, term: str) -> tuple[float, float]:
        """(estimate, SE) of a fixed effect."""
        if term not in self.fixef.index:
            return np.nan, np.nan
        row = self.fixef.loc[term]
        return float(row["estimate"]), float(row["se"]) if "se" in row else np.nan

    def _group_rows(self, factor: str) -> pd.DataFrame:
        vc = self.varcorr
        rows = vc[vc["group"] == factor]
        if not len(rows):  # lme4 names split (x||g) blocks g, g.1, ...
            rows = vc[vc["group"].astype(str).map(lambda g: re.sub(r"\.\d+$", "", g)) == factor]
        return rows

    def sd(self, factor: str, term: str) -> float:
        rows = self._group_rows(factor)
        rows = rows[(rows["term"] == term) & (rows["term_b"] == "")]
        return float(rows["sd"].iloc[0]) if len(rows) else np.nan

    def corr(self, factor: str, a: str, b: str) -> float:
        rows = self._group_rows(factor)
        hit = rows[((rows["term"] == a) & (rows["term_b"] == b))
                   | ((rows["term"] == b) & (rows["term_b"] == a))]
        return float(hit["corr"].iloc[0]) if len(hit) else np.nan

    def mode_table(self, factor: str) -> pd.DataFrame | None:
        """Conditional modes of ``factor`` indexed (level, term), or None."""
        return self.modes.get(factor)


@dataclass(frozen=True)
class MissingReference:
    """No frequentist reference, and why (shown as a note by every table and plot)."""

    reason: str
    singular: bool = False

    @property
    def note(self) -> str:
        return f"no REML reference values: {self.reason}"


Reference = Union[FrequentistReference, MissingReference]
