"""Model checks: posterior predictive density overlay, trace, rank and energy plots.

Trace/rank/energy use ArviZ 1.x (``arviz.plot_trace`` etc., matplotlib backend)
and fall back to plain matplotlib if that fails.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
from scipy.stats import gaussian_kde

from ..backends import naming
from ..errors import BayesHLMError
from ._util import BAYES_COLOR, axes_or_new, pc_figure

if TYPE_CHECKING:
    from ..results.bayes_result import BayesResult


def default_var_names(result: "BayesResult") -> list[str]:
    """Population-level variables (not the per-group effects): fixed, sigma, SDs, correlations."""
    names = [naming.FIXED, naming.SIGMA]
    for f in result.factors:
        names.append(naming.sd_var(f))
        if result._draws.has(naming.corr_var(f)) and result._corr_pairs(f):
            names.append(naming.corr_var(f))
    return [n for n in names if n in result.posterior]


def plot_ppc(result: "BayesResult", n_draws: int = 50, seed: int | None = 0, ax=None):
    """Density of the observed response over densities of ``n_draws`` replicated data sets.

    ``y_rep`` comes from ``result.predict(kind="response", return_draws=True)``.

    Returns
    -------
    matplotlib.axes.Axes
    """
    _, yrep = result.predict(None, kind="response", max_draws=n_draws, seed=seed, return_draws=True)
    y = np.asarray(result.design.y, float)
    fig, ax = axes_or_new(ax, figsize=(6, 3.5))
    lo = min(y.min(), np.percentile(yrep, 0.5))
    hi = max(y.max(), np.percentile(yrep, 99.5))
    grid = np.linspace(lo, hi, 300)
    for i, rep in enumerate(yrep):
        ax.plot(grid, gaussian_kde(rep)(grid), color=BAYES_COLOR, alpha=0.15, lw=0.8,
                label="y_rep (posterior predictive)" if i == 0 else None)
    ax.plot(grid, gaussian_kde(y)(grid), color="k", lw=2, label="y (observed)")
    ax.set_xlabel(result.design.response)
    ax.set_yticks([])
    ax.set_title("Posterior predictive check")
    ax.legend(fontsize=8)
    return ax


def _arviz(fn_name: str, result, **kw):
    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pc = getattr(az, fn_name)(result.tree, backend="matplotlib", **kw)
    return pc_figure(pc)


def _fallback_trace(result, var_names):
    series = []
    for v in var_names:
        a = result._draws.chained(v)
        a = a.reshape(a.shape[0], a.shape[1], -1)
        for k in range(a.shape[2]):
            if np.ptp(a[:, :, k]) > 0:
                series.append((f"{v}[{k}]" if a.shape[2] > 1 else v, a[:, :, k]))
    fig, axes = plt.subplots(len(series), 2, figsize=(9, 1.4 * len(series) + 0.5), squeeze=False,
                             layout="constrained")
    for (name, a), (a1, a2) in zip(series, axes):
        for c in range(a.shape[0]):
            a1.hist(a[c], bins=30, histtype="step", density=True)
            a2.plot(a[c], lw=0.6)
        a1.set_title(name, fontsize=8)
    return fig


def plot_trace(result: "BayesResult", var_names: list[str] | None = None):
    """Trace plot of the population-level parameters (ArviZ ``plot_trace``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    var_names = var_names or default_var_names(result)
    try:
        return _arviz("plot_trace", result, var_names=var_names)
    except Exception:
        return _fallback_trace(result, var_names)


def plot_rank(result: "BayesResult", var_names: list[str] | None = None):
    """Rank (fractional rank ECDF) plot per chain (ArviZ ``plot_rank``); histograms on fallback.

    Returns
    -------
    matplotlib.figure.Figure
    """
    var_names = var_names or default_var_names(result)
    try:
        return _arviz("plot_rank", result, var_names=var_names)
    except Exception:
        from scipy.stats import rankdata

        series = []
        for v in var_names:
            a = result._draws.chained(v)
            a = a.reshape(a.shape[0], a.shape[1], -1)
            series += [(f"{v}[{k}]", a[:, :, k]) for k in range(a.shape[2]) if np.ptp(a[:, :, k]) > 0]
        fig, axes = plt.subplots(len(series), 1, figsize=(6, 1.3 * len(series) + 0.5), squeeze=False,
                                 layout="constrained")
        for (name, a), (ax,) in zip(series, axes):
            r = rankdata(a.ravel()).reshape(a.shape)
            for c in range(a.shape[0]):
                ax.hist(r[c], bins=20, histtype="step")
            ax.set_title(name, fontsize=8)
        return fig


def plot_energy(result: "BayesResult"):
    """Marginal energy vs energy transition distributions with BFMI (ArviZ ``plot_energy``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    ss = result.tree["sample_stats"] if "sample_stats" in result.tree.children else None
    if ss is None or "energy" not in ss:
        raise BayesHLMError("this fit has no energy sample statistics")
    try:
        return _arviz("plot_energy", result)
    except Exception:
        e = np.asarray(ss["energy"].values)
        fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
        ax.hist((e - e.mean(axis=1, keepdims=True)).ravel(), bins=40, density=True, alpha=0.5,
                label="marginal energy")
        ax.hist(np.diff(e, axis=1).ravel(), bins=40, density=True, alpha=0.5, label="energy transition")
        ax.legend()
        return fig
