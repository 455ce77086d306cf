"""Helpers shared by the plot modules: axes creation, factor/term defaults, REML lookup."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..errors import BayesHLMError
from ..results.reference import FrequentistReference, MissingReference, Reference, norm_term, reference_for

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


def reference(result: "BayesResult", reml_result=None) -> Reference:
    """The typed REML reference (or why there is none) for the plots of ``result``."""
    return reference_for(result, reml_result)


def values(ref: Reference) -> FrequentistReference | None:
    """The reference's values, or None when it is a :class:`MissingReference`."""
    return ref if isinstance(ref, FrequentistReference) else None


def note_missing(fig, ref: Reference | str | None) -> None:
    """Write why the REML marks are absent at the bottom of ``fig`` (nothing if they are there)."""
    text = ref.note if isinstance(ref, MissingReference) else ref if isinstance(ref, str) else None
    if text:
        fig.text(0.01, 0.005, f"Note: {text}", fontsize=7, color=REML_COLOR, ha="left", va="bottom",
                 wrap=True)


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
