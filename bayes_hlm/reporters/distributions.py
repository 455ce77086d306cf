"""Posterior densities of ICC, Bayesian R², R²m and R²c with the REML/performance values marked."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np

from ..errors import BayesHLMError
from ..results import tables
from ._kde import kde
from ._util import (BAYES_COLOR, REML_COLOR, family_tag, link_scale_label, note_missing, reference,
                    reference_label, values)

if TYPE_CHECKING:
    from ..results.bayes_result import BayesResult


def density(ax, draws: np.ndarray, prob: float = tables.HDI_PROB, color=BAYES_COLOR, label=None,
            lower: float | None = None, upper: float | None = None):
    """KDE of ``draws`` with the HDI shaded and the mean as a vertical line.

    ``lower`` / ``upper`` are hard bounds of the support (0 for an SD, [0, 1] for a
    proportion): the KDE reflects at them, so a density piling up at 0 is drawn that way
    instead of falling to zero there.
    """
    d = np.asarray(draws, float)
    d = d[np.isfinite(d)]
    lo, hi = tables.hdi(d, prob)
    if np.ptp(d) > 0:
        grid, dens = kde(d, lower=lower, upper=upper)
        ax.plot(grid, dens, color=color, label=label)
        inside = (grid >= lo) & (grid <= hi)
        ax.fill_between(grid[inside], dens[inside], color=color, alpha=0.25, lw=0)
    ax.axvline(d.mean(), color=color, lw=1, ls="--")
    ax.set_yticks([])


def degenerate(draws: np.ndarray, ref: float = np.nan) -> bool:
    """True when draws have no spread worth a panel (all ~0, e.g. R² marginal of an
    intercept-only model is exactly 0 up to rounding): the axis would read 1e-30."""
    d = np.asarray(draws, float)
    d = d[np.isfinite(d)]
    scale = max(np.abs(d).max(initial=0.0), abs(ref) if np.isfinite(ref) else 0.0)
    return d.size == 0 or scale < 1e-12 or np.ptp(d) <= 1e-9 * scale


def plot_variance_distributions(result: "BayesResult", reml_result=None, prob: float = tables.HDI_PROB,
                                axes=None, max_draws: int = 1000):
    """Panels: adjusted ICC, Bayesian R², marginal R² and conditional R².

    REML-based values (``performance::icc`` / ``r2_nakagawa`` at the REML estimates)
    are drawn as red vertical lines when a REML fit is available. A quantity that is
    identically zero (R² marginal without fixed predictors) gets no panel; the title says so.

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
    skipped = [name for name, d, _ in panels if degenerate(d)]
    panels = [p for p in panels if p[0] not in skipped]
    if axes is None:
        fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 2.8), layout="constrained",
                                 squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    for ax, (name, d, ref) in zip(axes, panels):
        density(ax, d, prob, lower=0.0, upper=1.0)
        if np.isfinite(ref):
            ax.axvline(ref, color=REML_COLOR, lw=1.8, label=f"{reference_label(result)} {ref:.3f}")
            ax.legend(fontsize=7, loc="upper left")
        lo, hi = tables.hdi(np.asarray(d), prob)
        ax.set_title(f"{name}\n{np.mean(d):.3f} [{float(lo):.3f}, {float(hi):.3f}]", fontsize=9)
    title = f"Posterior mean [{prob:.0%} HDI]"
    if skipped:
        title += f"; not drawn (identically 0): {', '.join(skipped)}"
    if link_scale_label(result) is not None:  # generalized fit: say which scale each quantity is on
        title += (f"\n{family_tag(result)}: ICC and R² marginal/conditional on the latent scale "
                  "(Nakagawa, as performance::icc / r2_nakagawa); Bayesian R² on the response scale")
    fig.suptitle(title, fontsize=9)
    note_missing(fig, ref_)
    return fig
