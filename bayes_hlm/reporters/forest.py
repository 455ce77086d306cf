"""Forest plot: every parameter's posterior interval next to the REML estimate ± 1.96 SE."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np

from ..results import tables
from ..results.compare_reml import posterior_rows, reml_value
from ._util import BAYES_COLOR, REML_COLOR, note_missing, reference, reference_label, values
from .distributions import degenerate

if TYPE_CHECKING:
    from ..results.bayes_result import BayesResult


def plot_forest(result: "BayesResult", reml_result=None, prob: float = tables.HDI_PROB,
                include: tuple[str, ...] = ("fixed", "sd", "corr", "sigma", "icc", "r2")):
    """One row per parameter, each on its own scale (intercepts and slopes rarely share one).

    Bayesian: posterior mean and ``prob`` HDI (blue). REML: estimate (red) with
    ±1.96 SE (fixed effects; point only for variance parameters, ICC and R²).

    Returns
    -------
    matplotlib.figure.Figure
    """
    ref = reference(result, reml_result)
    vals = values(ref)
    rows = [r for r in posterior_rows(result) if r[1] in include]
    # a quantity that is identically 0 (R² marginal without fixed predictors) would get an
    # axis of width 1e-30; it is left out and named in the title instead
    skipped = [r[0] for r in rows if r[1] in ("icc", "r2") and degenerate(r[2])]
    rows = [r for r in rows if r[0] not in skipped]
    fig, axes = plt.subplots(len(rows), 1, figsize=(6.5, 0.42 * len(rows) + 0.9), layout="constrained",
                             squeeze=False)
    for ax, (name, kind, d, key) in zip(axes[:, 0], rows):
        lo, hi = tables.hdi(d, prob)
        ax.hlines(0.2, lo, hi, color=BAYES_COLOR, lw=2.5)
        ax.plot(d.mean(), 0.2, "o", color=BAYES_COLOR, ms=5)
        est, se = reml_value(vals, key)
        span = [float(lo), float(hi)]
        if np.isfinite(est):
            if np.isfinite(se):
                ax.hlines(-0.2, est - 1.96 * se, est + 1.96 * se, color=REML_COLOR, lw=2.5)
                span += [est - 1.96 * se, est + 1.96 * se]
            ax.plot(est, -0.2, "s", color=REML_COLOR, ms=5)
            span.append(est)
        pad = 0.08 * (max(span) - min(span) or 1.0)
        ax.set_xlim(min(span) - pad, max(span) + pad)
        ax.set_ylim(-0.6, 0.6)
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(axis="x", labelsize=7, pad=1)
        for s in ("top", "right", "left"):
            ax.spines[s].set_visible(False)
    axes[0, 0].plot([], [], color=BAYES_COLOR, lw=2.5, marker="o", label=f"posterior mean, {prob:.0%} HDI")
    axes[0, 0].plot([], [], color=REML_COLOR, lw=2.5, marker="s", label=f"{reference_label(result)} ± 1.96 SE")
    fig.legend(loc="outside upper center", ncols=2, fontsize=8, frameon=False)
    note_missing(fig, ref)
    if skipped:
        fig.supxlabel(f"not drawn (identically 0): {', '.join(skipped)}", fontsize=8)
    return fig
