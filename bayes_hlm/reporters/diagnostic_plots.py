"""Model checks: posterior predictive density overlay, trace, rank and energy plots.

Drawn with plain matplotlib from the draws, one panel per scalar parameter under its
user-facing name (``Intercept``, ``sd(Days | Subject)``, ``cor(Intercept, Days | Subject)``,
``sigma``), the names of ``summary()``. ArviZ's own plots stay one call away on
``result.tree``; here they would cost seconds (imports, one axes per variable slot) and
show storage names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import LineCollection

from ..errors import BayesHLMError
from ..results.compare_reml import posterior_rows
from ._kde import kde
from . import ppc_discrete as ppd
from ._util import (BAYES_COLOR, BINARY_FAMILIES, COUNT_FAMILIES, axes_or_new, family_link, family_of, family_tag,
                    response_label)

if TYPE_CHECKING:
    from ..results.bayes_result import BayesResult

POPULATION_KINDS = ("fixed", "sd", "corr", "sigma", "family")
PPC_KINDS = ("auto", "dens_overlay", "hist", "stat", "bars", "rootogram", "calibration")


def population_series(result: "BayesResult", var_names: list[str] | None = None
                      ) -> list[tuple[str, str, np.ndarray]]:
    """(user-facing name, kind, (chain, draw) draws) of every population-level parameter.

    ``var_names`` selects by user-facing name (as in ``summary()``'s index) or by kind
    (``"fixed"``, ``"sd"``, ``"corr"``, ``"sigma"``, ``"family"``: the family's own parameters
    such as the negative binomial's ``alpha``).
    """
    C, D = result._draws.n_chains, result._draws.n_draws
    rows = [(n, k, d.reshape(C, D)) for n, k, d, _ in posterior_rows(result) if k in POPULATION_KINDS]
    seen = {n for n, _, _ in rows}
    for name in family_of(result).param_names:  # NB/Gamma alpha, Student-t nu (sigma is listed)
        if name not in seen and result._draws.has(name):
            rows.append((name, "family", result._draws.flat(name).reshape(C, D)))
    if var_names is not None:
        known = {n for n, _, _ in rows}
        bad = [v for v in var_names if v not in known and v not in POPULATION_KINDS]
        if bad:
            raise BayesHLMError(f"unknown parameter(s) {bad}; choose from {sorted(known)} or the kinds "
                                f"{list(POPULATION_KINDS)}")
        rows = [r for r in rows if r[0] in var_names or r[1] in var_names]
    return rows


def _yrep(result, n_draws, seed):
    _, yrep = result.predict(None, kind="response", max_draws=n_draws, seed=seed, return_draws=True)
    return np.asarray(result.design.y, float), np.asarray(yrep, float)


def default_ppc_kind(result: "BayesResult") -> str:
    """The check that suits the family: a hanging rootogram for counts, a calibration plot for
    binary and binomial outcomes, a density overlay for continuous responses."""
    fam, _ = family_link(result)
    return "rootogram" if fam in COUNT_FAMILIES else "calibration" if fam in BINARY_FAMILIES else "dens_overlay"


def plot_ppc(result: "BayesResult", n_draws: int | None = None, seed: int | None = 0, ax=None,
             kind: str = "auto"):
    """Posterior predictive check: observed response against replicated data sets.

    Parameters
    ----------
    result : BayesResult
    n_draws : int, optional
        Replicated data sets (``result.predict(kind="response", return_draws=True)``); default 50
        for the continuous kinds, 200 for the discrete ones (their intervals need more).
    seed : int, optional
    ax : matplotlib Axes, optional
    kind : {"auto", "dens_overlay", "hist", "stat", "bars", "rootogram", "calibration"}
        ``auto`` (default): the family's check, see :func:`default_ppc_kind`.
        ``dens_overlay``: density of y over the densities of the replicates (bayesplot's
        ``ppc_dens_overlay``); ``hist``: histograms of y and the pooled replicates;
        ``stat``: the replicates' means and SDs against the observed ones (``ppc_stat_2d``);
        ``bars``: frequency of each count, observed vs replicated (``ppc_bars``);
        ``rootogram``: hanging rootogram (``ppc_rootogram``); ``calibration``: binned observed
        proportion vs predicted probability with posterior predictive intervals (binary and
        binomial fits). See :mod:`bayes_hlm.reporters.ppc_discrete`.

    Returns
    -------
    matplotlib.axes.Axes
    """
    if kind not in PPC_KINDS:
        raise BayesHLMError(f"unknown pp_check kind {kind!r}; choose one of {list(PPC_KINDS)}")
    if kind == "auto":
        kind = default_ppc_kind(result)
    fam, _ = family_link(result)
    if kind == "calibration" and fam not in BINARY_FAMILIES:
        raise BayesHLMError(f"a calibration plot needs a bernoulli or binomial fit; this one is {fam}: "
                            "use kind='dens_overlay', 'bars' or 'rootogram'")
    discrete = kind in ("bars", "rootogram", "calibration")
    n_draws = n_draws or (200 if discrete else 50)
    y, yrep = _yrep(result, n_draws, seed)
    resp = result.design.response
    title = f"Posterior predictive check ({kind})\n{family_tag(result)}"
    if kind == "calibration":
        trials = result.design.trials
        p = result.predict(None, kind="mean", max_draws=500).loc[:, "mean"].to_numpy()
        return ppd.plot_calibration(y, p, yrep, trials, ax=ax, title=title,
                                    xlabel=f"predicted {response_label(result)} (posterior mean)",
                                    ylabel="observed proportion")
    if kind in ("bars", "rootogram"):
        fn = ppd.plot_ppc_bars if kind == "bars" else ppd.plot_rootogram
        return fn(y, yrep, ax=ax, xlabel=resp, title=title)
    fig, ax = axes_or_new(ax, figsize=(6, 3.5))
    if kind == "dens_overlay":
        lims = (min(y.min(), np.percentile(yrep, 0.5)), max(y.max(), np.percentile(yrep, 99.5)))
        grid, dens = kde(np.vstack([yrep, y[None, :]]), lims=lims)
        ax.add_collection(LineCollection([np.column_stack([grid, d]) for d in dens[:-1]], colors=BAYES_COLOR,
                                         alpha=0.2, lw=0.8, label=f"y_rep ({len(yrep)} posterior predictive draws)"))
        ax.plot(grid, dens[-1], color="k", lw=2, label="y (observed)")
        ax.autoscale_view()
        ax.set_yticks([])
    elif kind == "hist":
        bins = np.histogram_bin_edges(np.concatenate([y, yrep.ravel()]), bins=40)
        ax.hist(yrep.ravel(), bins=bins, density=True, color=BAYES_COLOR, alpha=0.4,
                label=f"y_rep ({len(yrep)} draws, pooled)")
        ax.hist(y, bins=bins, density=True, histtype="step", color="k", lw=1.5, label="y (observed)")
        ax.set_yticks([])
    else:
        ax.scatter(yrep.mean(1), yrep.std(1, ddof=1), s=10, color=BAYES_COLOR, alpha=0.6,
                   label=f"y_rep ({len(yrep)} draws)")
        ax.scatter([y.mean()], [y.std(ddof=1)], s=80, color="k", marker="*", label="y (observed)", zorder=3)
        ax.set_ylabel(f"sd({resp})")
        resp = f"mean({resp})"
    ax.set_xlabel(resp)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return ax


def _grid(n_rows, ncols, width, row_h):
    fig, axes = plt.subplots(n_rows, ncols, figsize=(width, row_h * n_rows + 0.5), squeeze=False,
                             layout="constrained")
    return fig, axes


def _chain_lines(ax, x, ys, lw=0.6, alpha=0.8):
    """One line per chain (C, n) over ``x`` as a single LineCollection."""
    cols = [f"C{c}" for c in range(len(ys))]
    ax.add_collection(LineCollection([np.column_stack([x, y]) for y in ys], colors=cols, lw=lw, alpha=alpha))
    ax.autoscale_view()


def plot_trace(result: "BayesResult", var_names: list[str] | None = None):
    """Trace plot of the population-level parameters: per-chain densities (left), draws (right).

    Parameters
    ----------
    var_names : list of str, optional
        User-facing names (``summary()``'s index) or kinds (``"fixed"``, ``"sd"``, ``"corr"``, ``"sigma"``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    series = population_series(result, var_names)
    fig, axes = _grid(len(series), 2, 9, 1.25)
    for (name, kind, a), (a1, a2) in zip(series, axes):
        lower = 0.0 if kind in ("sd", "sigma", "family") else (-1.0 if kind == "corr" else None)
        upper = 1.0 if kind == "corr" else None
        grid, dens = kde(a, lower=lower, upper=upper)
        _chain_lines(a1, grid, dens, lw=1.0)
        _chain_lines(a2, np.arange(a.shape[1]), a)
        a1.set_yticks([])
        a1.set_title(name, fontsize=8, loc="left")
        a2.set_title(name, fontsize=8, loc="left")
        for ax in (a1, a2):
            ax.tick_params(labelsize=7)
    axes[-1, 1].set_xlabel("draw", fontsize=8)
    fig.suptitle(f"{a.shape[0]} chains (one colour each)", fontsize=9)
    return fig


def plot_rank(result: "BayesResult", var_names: list[str] | None = None, bins: int = 20):
    """Rank plots: histogram of each chain's ranks among all draws (flat when chains mix well).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from scipy.stats import rankdata

    series = population_series(result, var_names)
    ncols = 2 if len(series) > 3 else 1
    nrows = int(np.ceil(len(series) / ncols))
    fig, axes = _grid(nrows, ncols, 4.5 * ncols, 1.3)
    flat_axes = axes.ravel()
    for ax in flat_axes[len(series):]:
        ax.set_visible(False)
    for (name, _, a), ax in zip(series, flat_axes):
        C, D = a.shape
        r = rankdata(a.ravel()).reshape(a.shape)
        edges = np.linspace(0.5, a.size + 0.5, bins + 1)
        counts = np.stack([np.histogram(r[c], bins=edges)[0] for c in range(C)])
        steps_x = np.repeat(edges, 2)[1:-1]
        _chain_lines(ax, steps_x, np.repeat(counts, 2, axis=1), lw=1.0, alpha=0.9)
        ax.axhline(D / bins, color="0.4", ls="--", lw=0.8)
        ax.set_ylim(0, None)
        ax.set_yticks([])
        ax.set_title(name, fontsize=8, loc="left")
        ax.tick_params(labelsize=7)
    fig.suptitle("Rank histograms per chain (dashed: uniform)", fontsize=9)
    return fig


def plot_energy(result: "BayesResult"):
    """Marginal energy vs energy transition distributions, with the E-BFMI of each chain.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from ..results.diagnostics import bfmi

    ss = result.tree["sample_stats"] if "sample_stats" in result.tree.children else None
    if ss is None or "energy" not in ss:
        raise BayesHLMError("this fit has no energy sample statistics")
    e = np.asarray(ss["energy"].values, float)
    fig, ax = plt.subplots(figsize=(6, 3.2), layout="constrained")
    marg = (e - e.mean(axis=1, keepdims=True)).ravel()
    trans = np.diff(e, axis=1).ravel()
    lims = (min(marg.min(), trans.min()), max(marg.max(), trans.max()))
    for d, col, lab in ((marg, "C0", "marginal energy"), (trans, "C1", "energy transition")):
        grid, dens = kde(d, lims=lims)
        ax.fill_between(grid, dens, color=col, alpha=0.4, lw=0, label=lab)
    ax.set_yticks([])
    ax.set_title("Energy: E-BFMI per chain " + ", ".join(f"{b:.2f}" for b in bfmi(e)), fontsize=9)
    ax.legend(fontsize=8)
    return fig
