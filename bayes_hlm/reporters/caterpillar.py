"""Caterpillar plot of group effects: sorted posterior means with HDIs, REML modes marked."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np

from ..results import tables
from ..results.compare_reml import norm_term
from ._util import (BAYES_COLOR, REML_COLOR, factor_terms, family_tag, link_scale_label, note_missing,
                    reference_label,
                    pick_factor, reference, values)

if TYPE_CHECKING:
    from ..results.bayes_result import BayesResult


def plot_caterpillar(result: "BayesResult", reml_result=None, factor: str | None = None,
                     terms: list[str] | None = None, prob: float = tables.HDI_PROB,
                     max_levels: int = 60, axes=None):
    """Group effects (deviations from the fixed effects) sorted by posterior mean.

    Generalized fits: on the link scale, named on the axis (log-odds, log rate) with the family
    and link in the title.

    Parameters
    ----------
    result : BayesResult
    reml_result : RemlResult, optional
        Conditional modes shown as red marks; fitted when omitted (skipped if unavailable).
    factor : str, optional
        Grouping factor; default the first.
    terms : list of str, optional
        Terms to show (one panel each); default all of the factor's terms.
    prob : float
        HDI probability.
    max_levels : int
        With more levels, show evenly spaced ranks only (keeps the plot legible).
    axes : sequence of Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    factor = pick_factor(result, factor)
    terms = terms or factor_terms(result, factor)
    re_ = result.ranef(prob)[factor].copy()
    re_.index = re_.index.set_levels([re_.index.levels[0], [norm_term(t) for t in re_.index.levels[1]]])
    ref = reference(result, reml_result)
    vals = values(ref)
    modes = vals.mode_table(factor) if vals is not None else None
    n_lev = len(re_.index.get_level_values("level").unique())
    height = max(3.0, 0.16 * min(n_lev, max_levels) + 1.2)
    if axes is None:
        fig, axes = plt.subplots(1, len(terms), figsize=(3.6 * len(terms), height), layout="constrained",
                                 squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    scale = link_scale_label(result)
    for ax, t in zip(axes, terms):
        d = re_.xs(t, level="term").sort_values("mean")
        if len(d) > max_levels:
            d = d.iloc[np.unique(np.linspace(0, len(d) - 1, max_levels).astype(int))]
        y = np.arange(len(d))
        ax.hlines(y, d["hdi_low"], d["hdi_high"], color=BAYES_COLOR, alpha=0.6)
        ax.scatter(d["mean"], y, color=BAYES_COLOR, s=12, zorder=3, label="posterior mean")
        if modes is not None and "mode" in modes:
            m = modes["mode"].reindex([(lv, t) for lv in d.index])
            ax.scatter(m.to_numpy(), y, marker="|", s=80, color=REML_COLOR, zorder=4, label=f"{reference_label(result)} mode")
        ax.axvline(0, color="0.5", lw=0.8)
        ax.set_yticks(y, list(d.index), fontsize=7 if len(d) > 25 else 8)
        ax.set_title(f"{t} | {factor}")
        ax.set_xlabel("deviation from the fixed effect" + (f"\n{scale}" if scale else ""), fontsize=8)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Group effects ({prob:.0%} HDI)" + (f": {family_tag(result)}" if scale else ""))
    note_missing(fig, ref)
    return fig
