"""Per-group panels: data, no-pooling / complete-pooling / partial-pooling lines (sleepstudy style)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import LineCollection
import pandas as pd

from ..errors import BayesHLMError
from ..results import tables
from ._util import BAYES_COLOR, NOPOOL_COLOR, POOLED_COLOR, pick_factor, row_levels, slope_column

if TYPE_CHECKING:
    from ..results.bayes_result import BayesResult


def _ols_line(x, y):
    if len(np.unique(x)) < 2:
        return np.nan, np.nan
    b, a = np.polyfit(x, y, 1)
    return a, b


def _setup(result, x, factor, levels, max_panels):
    factor = pick_factor(result, factor)
    x = x or slope_column(result, factor)
    data = result.spec.data
    if x is None or x not in data:
        raise BayesHLMError("give x=<numeric column> for the per-group lines")
    lab = row_levels(result, factor)
    all_levels = list(pd.unique(lab))
    levels = [str(v) for v in levels] if levels is not None else all_levels[:max_panels]
    return factor, x, data, lab, levels


def _grid(data, lab, levels, x, n=25):
    """Prediction rows: for each level, its first data row repeated over a grid of x."""
    lo, hi = float(data[x].min()), float(data[x].max())
    xs = np.linspace(lo, hi, n)
    frames = []
    for lv in levels:
        tmpl = data[lab == lv].iloc[[0] * n].copy()
        tmpl[x] = xs
        tmpl["_level"] = lv
        frames.append(tmpl)
    return pd.concat(frames, ignore_index=True), xs


def _panels(n, ncols, sharey=True):
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    # fixed margins instead of a constrained layout: with one axes per group the layout
    # solver and per-axes tick labels were most of the drawing time
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.1 * ncols, 1.7 * nrows + 0.9), sharex=True,
                             sharey=sharey, squeeze=False, gridspec_kw=dict(hspace=0.35, wspace=0.08))
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.6 / (1.7 * nrows + 0.9) + 0.03,
                        top=1 - 0.55 / (1.7 * nrows + 0.9))
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()


def plot_group_lines(result: "BayesResult", x: str | None = None, factor: str | None = None,
                     levels=None, ncols: int = 6, prob: float = tables.HDI_PROB, max_draws: int = 400,
                     max_panels: int = 24):
    """One panel per group: data, no-pooling (per-group OLS), complete-pooling and posterior lines.

    Parameters
    ----------
    result : BayesResult
    x : str, optional
        Numeric predictor on the x axis (default: the factor's slope term or first numeric fixed term).
    factor : str, optional
        Grouping factor (default the first).
    levels : list, optional
        Groups to show; default the first ``max_panels``.
    ncols : int
        Panels per row.
    prob : float
        Probability of the posterior band around the partial-pooling line (group mean).
    max_draws : int
        Draws used for the band.

    Returns
    -------
    matplotlib.figure.Figure
    """
    factor, x, data, lab, levels = _setup(result, x, factor, levels, max_panels)
    y = result.design.y
    grid, xs = _grid(data, lab, levels, x)
    pred = result.predict(grid, group_effects=True, new_groups="zero", prob=prob, max_draws=max_draws)
    pooled_a, pooled_b = _ols_line(data[x].to_numpy(float), y)
    fig, axes = _panels(len(levels), ncols)
    for ax, lv in zip(axes, levels):
        m = lab == lv
        xv, yv = data[x].to_numpy(float)[m], y[m]
        ax.scatter(xv, yv, s=9, color="k", zorder=3)
        p = pred[(grid["_level"] == lv).to_numpy()]
        ax.fill_between(xs, p["hdi_low"], p["hdi_high"], color=BAYES_COLOR, alpha=0.25, lw=0)
        ax.plot(xs, p["mean"], color=BAYES_COLOR, lw=1.8, label="partial pooling")
        ax.plot(xs, pooled_a + pooled_b * xs, color=POOLED_COLOR, lw=1.2, ls="--", label="complete pooling")
        a, b = _ols_line(xv, yv)
        if np.isfinite(a):
            ax.plot(xs, a + b * xs, color=NOPOOL_COLOR, lw=1.2, ls=":", label="no pooling")
        ax.set_title(str(lv), fontsize=8)
        ax.tick_params(labelsize=7)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="upper right", ncols=3, fontsize=7, frameon=False)
    fig.supxlabel(x)
    fig.supylabel(result.design.response)
    fig.suptitle(f"{result.formula}: fits per {factor} ({prob:.0%} interval of the group mean)", fontsize=10,
                 x=0.01, ha="left")
    return fig


def plot_spaghetti(result: "BayesResult", x: str | None = None, factor: str | None = None, levels=None,
                   n_draws: int = 40, ncols: int = 6, max_panels: int = 24):
    """Posterior draws of each group's line ("spaghetti") over the group's data.

    Returns
    -------
    matplotlib.figure.Figure
    """
    factor, x, data, lab, levels = _setup(result, x, factor, levels, max_panels)
    y = result.design.y
    grid, xs = _grid(data, lab, levels, x)
    _, mu = result.predict(grid, group_effects=True, new_groups="zero", max_draws=n_draws,
                           return_draws=True)
    fig, axes = _panels(len(levels), ncols)
    for ax, lv in zip(axes, levels):
        m = lab == lv
        sel = (grid["_level"] == lv).to_numpy()
        ax.add_collection(LineCollection([np.column_stack([xs, d]) for d in mu[:, sel]], colors=BAYES_COLOR,
                                         alpha=0.15, lw=0.8))
        ax.autoscale_view()
        ax.scatter(data[x].to_numpy(float)[m], y[m], s=9, color="k", zorder=3)
        ax.set_title(str(lv), fontsize=8)
        ax.tick_params(labelsize=7)
    fig.supxlabel(x)
    fig.supylabel(result.design.response)
    fig.suptitle(f"{len(mu)} posterior draws of each {factor}'s line", fontsize=10, x=0.01, ha="left")
    return fig

