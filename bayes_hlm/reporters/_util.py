"""Helpers shared by the plot modules: axes creation, factor/term defaults, REML lookup."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..errors import BayesHLMError
from ..results.compare_reml import RemlValues, get_reml, norm_term

if TYPE_CHECKING:
    from ..results.bayes_result import BayesResult

BAYES_COLOR = "C0"
REML_COLOR = "C3"
NOPOOL_COLOR = "0.35"
POOLED_COLOR = "C2"


def axes_or_new(ax=None, figsize=(6, 4)):
    """(figure, axes): the given axes' figure, or a new single-panel figure."""
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return fig, ax


def pick_factor(result: "BayesResult", factor: str | None) -> str:
    if not result.factors:
        raise BayesHLMError("the model has no grouping factors")
    if factor is None:
        return result.factors[0]
    if factor not in result.factors:
        raise BayesHLMError(f"unknown factor {factor!r}; factors: {result.factors}")
    return factor


def factor_terms(result: "BayesResult", factor: str) -> list[str]:
    return [norm_term(t) for t in result._terms(factor)]


def reml_values(result: "BayesResult", reml_result=None) -> RemlValues | None:
    """REML point estimates, or None if the engine is unavailable or the fit fails."""
    ref = get_reml(result, reml_result, required=False)
    try:
        return RemlValues(ref) if ref is not None else None
    except Exception:
        return None


def row_levels(result: "BayesResult", factor: str) -> np.ndarray:
    """Level label (str) of each fitted row for ``factor``."""
    g = next(g for g in result.design.groups if g.factor == factor)
    return np.asarray([str(v) for v in g.levels], dtype=object)[g.codes]


def slope_column(result: "BayesResult", factor: str | None = None) -> str | None:
    """A numeric data column used as a slope (in the factor's terms, else the fixed part)."""
    data = result.spec.data
    cands = factor_terms(result, factor) if factor else []
    cands += [norm_term(n) for n in result.design.fixed_names]
    for t in cands:
        if t != "Intercept" and t in data and pd.api.types.is_numeric_dtype(data[t]):
            return t
    return None


def pc_figure(pc):
    """The matplotlib figure of an ArviZ 1.x PlotCollection."""
    try:
        return pc.viz["figure"].item()
    except Exception:
        return plt.gcf()
