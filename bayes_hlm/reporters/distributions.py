"""Posterior densities of ICC, Bayesian R², R²m and R²c with the REML/performance values marked."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import gaussian_kde

from ..errors import BayesHLMError
from ..results import tables
from ._util import BAYES_COLOR, REML_COLOR, note_missing, reference, values

if TYPE_CHECKING:
    from ..results.bayes_result import BayesResult


def density(ax, draws: np.ndarray, prob: float = tables.HDI_PROB, color=BAYES_COLOR, label=None):
    """KDE of ``draws`` with the HDI shaded and the mean as a vertical line."""
    d = np.asarray(draws, float)
    d = d[np.isfinite(d)]
    lo, hi = tables.hdi(d, prob)
    if np.ptp(d) > 0:
        grid = np.linspace(d.min(), d.max(), 256)
        dens = gaussian_kde(d)(grid)
        ax.plot(grid, dens, color=color, label=label)
        inside = (grid >= lo) & (grid <= hi)
        ax.fill_between(grid[inside], dens[inside], color=color, alpha=0.25, lw=0)
    ax.axvline(d.mean(), color=color, lw=1, ls="--")
    ax.set_yticks([])


def plot_variance_distributions(result: "BayesResult", reml_result=None, prob: float = tables.HDI_PROB,
                                axes=None, max_draws: int = 1000):
    """Four panels: adjusted ICC, Bayesian R², marginal R² and conditional R².

    REML-based values (``performance::icc`` / ``r2_nakagawa`` at the REML estimates)
    are drawn as red vertical lines when a REML fit is available.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not result.factors:
        raise BayesHLMError("ICC and R2m/R2c need grouping factors")
    vp = result.variance_parts()
    r2b = result.r2_draws(max_draws)["r2_bayes"]
    ref_ = reference(result, reml_result)
    vals = values(ref_)
    panels = [("ICC (adjusted)", vp.icc(), vals.icc if vals else np.nan),
              ("Bayesian R²", r2b, np.nan),
              ("R² marginal", vp.r2_marginal(), vals.r2m if vals else np.nan),
              ("R² conditional", vp.r2_conditional(), vals.r2c if vals else np.nan)]
    if axes is None:
        fig, axes = plt.subplots(1, 4, figsize=(12, 2.8), layout="constrained")
    fig = axes[0].figure
    for ax, (name, d, ref) in zip(axes, panels):
        density(ax, d, prob)
        if np.isfinite(ref):
            ax.axvline(ref, color=REML_COLOR, lw=1.8, label=f"REML {ref:.3f}")
            ax.legend(fontsize=7, loc="upper left")
        lo, hi = tables.hdi(np.asarray(d), prob)
        ax.set_title(f"{name}\n{np.mean(d):.3f} [{float(lo):.3f}, {float(hi):.3f}]", fontsize=9)
    note_missing(fig, ref_)
    return fig
