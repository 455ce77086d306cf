"""Posterior predictive checks for discrete responses: bars and rootograms for counts, a
calibration plot for binary and binomial outcomes.

A density overlay smooths a count or a 0/1 response into something it is not; these compare the
data with the replicates where discrete data live:

* :func:`plot_ppc_bars` - observed frequency of each count as bars, the replicates' median and
  interval per count as points with error bars (bayesplot ``ppc_bars``);
* :func:`plot_rootogram` - Kleiber and Zeileis' hanging rootogram: on the square-root scale the
  observed frequency of each count hangs from the expected (replicated) frequency, so a bar that
  misses the zero line shows too few (above) or too many (below) expected counts; the
  replicates' interval is drawn around the expected curve;
* :func:`plot_calibration` - rows binned by their predicted probability; per bin the observed
  proportion against the mean predicted probability, with the posterior predictive interval of
  the bin's proportion (where the observed point should fall when the model is calibrated).

Like ArviZ's plots they take the data (observed responses, replicates ``(draws, rows)``, predicted
probabilities), draw on ``ax`` (a new one by default) and return the Axes.
"""

from __future__ import annotations

import numpy as np

from ._util import BAYES_COLOR, axes_or_new

OBS_COLOR = "k"


def count_frequencies(y: np.ndarray, yrep: np.ndarray, max_count: int | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(counts 0..K, observed frequency of each, replicated frequencies ``(draws, K + 1)``).

    ``K`` is ``max_count`` or the largest observed count or the 99.5th percentile of the
    replicates, whichever is larger (a long replicated tail is cut there, not drawn to its end),
    but at most three times the largest observed count plus 10: a model that replicates absurd
    counts shows them as missing mass, not as a plot (or an array) of astronomical width.
    """
    y = np.asarray(y)
    yrep = np.atleast_2d(np.asarray(yrep, float))
    if max_count is None:
        tail = float(np.nanpercentile(np.where(np.isfinite(yrep), yrep, np.nan), 99.5))
        max_count = int(max(y.max(), min(tail, 3 * y.max() + 10)))
    yrep = np.nan_to_num(yrep, nan=max_count + 1, posinf=max_count + 1)
    k = np.arange(max_count + 1)
    obs = np.bincount(np.clip(y.astype(int), 0, max_count + 1), minlength=max_count + 2)[:max_count + 1]
    rep = np.stack([np.bincount(np.clip(r, 0, max_count + 1).astype(int), minlength=max_count + 2)[:max_count + 1]
                    for r in yrep])  # clipped as floats: a huge count must not overflow the int cast
    return k, obs.astype(float), rep.astype(float)


def _interval(a: np.ndarray, prob: float, axis=0) -> tuple[np.ndarray, np.ndarray]:
    return (np.quantile(a, (1 - prob) / 2, axis=axis), np.quantile(a, (1 + prob) / 2, axis=axis))


def plot_ppc_bars(y, yrep, *, prob: float = 0.95, max_count: int | None = None, ax=None,
                  xlabel: str = "y", title: str | None = None):
    """Observed frequency of each count (bars) and the replicates' median with a ``prob``
    interval (points and error bars).

    Parameters
    ----------
    y : array (n,)
        Observed counts (or 0/1).
    yrep : array (draws, n)
        Posterior predictive replicates.
    prob : float
        Central interval of the replicated frequencies (95%, as everywhere in the package).
    max_count : int, optional
        Largest count shown (see :func:`count_frequencies`).
    ax : matplotlib Axes, optional
    xlabel, title : str

    Returns
    -------
    matplotlib.axes.Axes
    """
    k, obs, rep = count_frequencies(y, yrep, max_count)
    fig, ax = axes_or_new(ax, figsize=(7, 3.8))
    med = np.median(rep, axis=0)
    lo, hi = _interval(rep, prob)
    ax.bar(k, obs, width=0.9, color="0.75", edgecolor="0.55", label="y (observed)")
    ax.errorbar(k, med, yerr=[med - lo, hi - med], fmt="o", ms=3, color=BAYES_COLOR, capsize=2, lw=1,
                label=f"y_rep median, {prob:.0%} interval ({len(rep)} draws)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("frequency")
    ax.set_title(title or "Posterior predictive check: bars")
    ax.legend(fontsize=8)
    return ax


def plot_rootogram(y, yrep, *, prob: float = 0.95, max_count: int | None = None, ax=None,
                   xlabel: str = "y", title: str | None = None):
    """Hanging rootogram: sqrt(observed frequency) hanging from sqrt(expected frequency).

    The expected frequency of each count is the replicates' mean; the shaded band is the
    ``prob`` interval of the replicated frequencies (square-root scale). A bar whose bottom
    stays above 0 marks a count the model expects more often than it was seen; below 0, less.

    Parameters
    ----------
    y : array (n,)
        Observed counts.
    yrep : array (draws, n)
        Posterior predictive replicates.
    prob : float
    max_count : int, optional
    ax : matplotlib Axes, optional
    xlabel, title : str

    Returns
    -------
    matplotlib.axes.Axes
    """
    k, obs, rep = count_frequencies(y, yrep, max_count)
    fig, ax = axes_or_new(ax, figsize=(7, 3.8))
    exp_ = np.sqrt(rep.mean(axis=0))
    lo, hi = _interval(np.sqrt(rep), prob)
    so = np.sqrt(obs)
    ax.bar(k, so, bottom=exp_ - so, width=0.9, color="0.78", edgecolor="0.5",
           label="√observed frequency, hanging from the expected")
    ax.fill_between(k, lo, hi, step=None, color=BAYES_COLOR, alpha=0.2, lw=0,
                    label=f"{prob:.0%} interval of y_rep ({len(rep)} draws)")
    ax.plot(k, exp_, "o-", color=BAYES_COLOR, ms=3, lw=1.2, label="√expected frequency (y_rep mean)")
    ax.axhline(0, color=OBS_COLOR, lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("√frequency")
    ax.set_title(title or "Posterior predictive check: hanging rootogram")
    ax.legend(fontsize=8)
    return ax


def calibration_table(y, p, yrep=None, trials=None, *, n_bins: int = 10, prob: float = 0.95):
    """Per bin of predicted probability: rows, trials, mean predicted probability, observed
    proportion and the ``prob`` posterior predictive interval of the bin's proportion.

    Bins are quantiles of ``p`` (equal numbers of rows; ties merged). Returns a DataFrame.
    """
    import pandas as pd

    y = np.asarray(y, float)
    p = np.asarray(p, float)
    t = np.ones_like(y) if trials is None else np.asarray(trials, float)
    edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)))
    b = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
    rows = []
    for j in np.unique(b):
        m = b == j
        tt = t[m].sum()
        row = dict(rows=int(m.sum()), trials=tt, predicted=float((p[m] * t[m]).sum() / tt),
                   observed=float(y[m].sum() / tt))
        if yrep is not None:
            props = np.asarray(yrep, float)[:, m].sum(axis=1) / tt
            row["rep_low"], row["rep_high"] = (float(v) for v in _interval(props, prob))
        rows.append(row)
    return pd.DataFrame(rows)


def plot_calibration(y, p, yrep=None, trials=None, *, n_bins: int = 10, prob: float = 0.95, ax=None,
                     xlabel: str = "predicted probability", ylabel: str = "observed proportion",
                     title: str | None = None):
    """Calibration plot: binned observed proportion against predicted probability.

    Parameters
    ----------
    y : array (n,)
        Observed successes (0/1, or counts out of ``trials``).
    p : array (n,)
        Predicted success probability per row (posterior mean).
    yrep : array (draws, n), optional
        Posterior predictive replicates (successes): each bin's ``prob`` interval of the
        replicated proportion is drawn as an error bar at the bin's predicted probability.
    trials : array (n,), optional
        Binomial trials per row (default 1).
    n_bins : int
        Quantile bins of ``p``.
    prob : float
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    tab = calibration_table(y, p, yrep, trials, n_bins=n_bins, prob=prob)
    fig, ax = axes_or_new(ax, figsize=(5.2, 4.6))
    lo_ = float(min(tab["predicted"].min(), tab["observed"].min(), tab.get("rep_low", tab["observed"]).min()))
    hi_ = float(max(tab["predicted"].max(), tab["observed"].max(), tab.get("rep_high", tab["observed"]).max()))
    pad = 0.05 * max(hi_ - lo_, 0.05)
    lims = (max(0.0, lo_ - pad), min(1.0, hi_ + pad))
    ax.plot(lims, lims, ls="--", color="0.5", lw=1, label="perfect calibration")
    if "rep_low" in tab:
        ax.errorbar(tab["predicted"], (tab["rep_low"] + tab["rep_high"]) / 2,
                    yerr=(tab["rep_high"] - tab["rep_low"]) / 2, fmt="none", color=BAYES_COLOR, lw=6,
                    alpha=0.35, label=f"{prob:.0%} posterior predictive interval")
    ax.plot(tab["predicted"], tab["observed"], "o", color=OBS_COLOR, ms=5,
            label=f"observed proportion ({len(tab)} bins, ~{int(tab['rows'].median())} rows each)")
    ax.set_xlim(lims)
    ax.set_ylim(lims)
    ax.set_aspect("equal")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title or "Calibration")
    ax.legend(fontsize=7, loc="upper left")
    return ax
