"""Shrinkage plots: no pooling -> partial pooling (posterior) <- complete pooling (link scale for GLMMs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.patches import Ellipse
from scipy.stats import chi2

from ..spec import variable_names as naming
from ..errors import BayesHLMError
from ..results import tables
from ..results.compare_reml import level2_columns, shrinkage_table
from ._util import (BAYES_COLOR, NOPOOL_COLOR, POOLED_COLOR, REML_COLOR, axes_or_new, factor_terms,
                    family_link, family_tag, link_scale_label, note_missing, pick_factor, reference_label)

if TYPE_CHECKING:
    from ..results.bayes_result import BayesResult


def _table(result, reml_result, factor, prob):
    """The shrinkage table with like compared with like: the no-pooling OLS intercept of a
    group absorbs its level-2 predictors (constant within it), which the model's intercept
    does not, so their fitted part is taken off the no-pooling intercept."""
    tab = shrinkage_table(result, reml_result, factor, prob)
    if link_scale_label(result) is not None:
        # generalized fits: the per-group GLM holds the other fixed effects (level-2 predictors
        # included) at their posterior means, so its intercept is already like the model's
        tab.attrs["level2"] = []
        tab.attrs["glm"] = family_link(result)
        return tab
    names, part = level2_columns(result, factor)
    if names and "Intercept" in tab.index.get_level_values("term"):
        levels = [str(v) for v in next(g for g in result.design.groups if g.factor == factor).levels]
        shift = dict(zip(levels, part))
        is_int = tab.index.get_level_values("term") == "Intercept"
        lv = tab.index.get_level_values("level").astype(str)
        adj = np.array([shift.get(v, 0.0) for v in lv])
        tab.loc[is_int, "no_pool"] = tab["no_pool"].to_numpy()[is_int] - adj[is_int]
    tab.attrs["level2"] = names
    return tab


def _nopool_label(tab) -> str:
    if tab.attrs.get("glm"):
        fam, link = tab.attrs["glm"]
        how = ("empirical logit" if link == "logit" else "GLM") if fam in ("bernoulli", "binomial") else "GLM"
        extra = ", +½ continuity correction" if fam in ("bernoulli", "binomial", "poisson",
                                                        "negativebinomial") else ""
        return f"no pooling (per-group {how}{extra})"
    names = tab.attrs.get("level2") or []
    return ("no pooling (OLS per group)" if not names else
            f"no pooling (OLS per group, minus the fitted {', '.join(names)} part)")


def plot_shrinkage(result: "BayesResult", reml_result=None, factor: str | None = None,
                   term: str | None = None, prob: float = tables.HDI_PROB, ax=None):
    """Per group: no-pooling estimate, posterior mean with HDI, complete pooling, and the pull.

    Generalized fits are compared on the link scale (log-odds, log rate): the no-pooling
    estimate is a per-group GLM with a continuity correction, complete pooling one GLM
    ignoring the groups (:mod:`bayes_hlm.results.glm_pooling`).

    Parameters
    ----------
    result : BayesResult
    reml_result : RemlResult, optional
        Adds the REML BLUPs (fixed + conditional mode) as crosses; fitted when omitted.
    factor, term : str, optional
        Grouping factor (default the first) and coefficient (default ``Intercept``).
    prob : float
        HDI probability of the posterior intervals.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    factor = pick_factor(result, factor)
    terms = factor_terms(result, factor)
    term = term or ("Intercept" if "Intercept" in terms else terms[0])
    if term not in terms:
        raise BayesHLMError(f"{term!r} is not a term of factor {factor!r}: {terms}")
    full = _table(result, reml_result, factor, prob)
    tab = full.xs(term, level="term")
    tab = tab.assign(order=tab["no_pool"].fillna(tab["post_mean"])).sort_values("order")
    fig, ax = axes_or_new(ax, figsize=(6.5, max(3.0, 0.22 * len(tab) + 1.2)))
    y = np.arange(len(tab))
    glm = bool(full.attrs.get("glm"))
    ax.axvline(tab["complete_pool"].iloc[0], color=POOLED_COLOR, lw=1.5,
               label="complete pooling (one GLM, groups ignored)" if glm else "complete pooling")
    if glm:  # a GLM's complete pooling is population-averaged; partial pooling pulls to the fixed effect
        ax.axvline(tab["population"].iloc[0], color=POOLED_COLOR, lw=1.2, ls="--",
                   label="population mean (fixed effect)")
    ax.hlines(y, tab["hdi_low"], tab["hdi_high"], color=BAYES_COLOR, alpha=0.5, lw=2,
              label=f"{prob:.0%} HDI")
    ax.scatter(tab["no_pool"], y, facecolor="white", edgecolor=NOPOOL_COLOR, zorder=3,
               label=_nopool_label(full) if term == "Intercept" or full.attrs.get("glm")
               else "no pooling (OLS per group)")
    ax.scatter(tab["post_mean"], y, color=BAYES_COLOR, zorder=4, s=22, label="partial pooling (posterior mean)")
    for yi, (a, b) in enumerate(zip(tab["no_pool"], tab["post_mean"])):
        if np.isfinite(a) and abs(b - a) > 0:
            ax.annotate("", xy=(b, yi), xytext=(a, yi),
                        arrowprops=dict(arrowstyle="->", color=NOPOOL_COLOR, lw=0.8, shrinkA=3, shrinkB=3))
    if tab["blup"].notna().any():
        ax.scatter(tab["blup"], y, marker="x", color=REML_COLOR, zorder=5, s=25,
                   label="REML BLUP" if reference_label(result) == "REML" else "glmer (fixed + conditional mode)")
    ax.set_yticks(y, list(tab.index), fontsize=8 if len(tab) <= 40 else 6)
    scale = link_scale_label(result)
    ax.set_xlabel(f"{term} (per {factor})" + (f", {scale}" if scale else ""))
    ax.set_title(f"Shrinkage of {term} by {factor}" + (f"\n{family_tag(result)}" if scale else ""))
    ax.legend(fontsize=7, loc="best")
    note_missing(fig, full.attrs.get("reference_note"))  # not the column legend
    return ax


def _ellipse(ax, mean, cov, p, **kw):
    w, v = np.linalg.eigh(cov)
    w = np.clip(w, 0, None)
    r = np.sqrt(chi2.ppf(p, 2) * w)
    angle = np.degrees(np.arctan2(v[1, 1], v[0, 1]))
    ax.add_patch(Ellipse(mean, 2 * r[1], 2 * r[0], angle=angle, fill=False, **kw))


def plot_shrinkage_2d(result: "BayesResult", reml_result=None, factor: str | None = None,
                      terms: tuple[str, str] | None = None, ellipses=(0.5, 0.95), ax=None):
    """Intercept-vs-slope shrinkage: no-pooling points -> posterior means, with the population ellipses.

    The ellipses are contours of ``N(mean fixed effects, mean Sigma)`` (posterior means)
    enclosing ``ellipses`` probability; REML BLUPs (fixed + mode) are overlaid.

    Returns
    -------
    matplotlib.axes.Axes
    """
    factor = pick_factor(result, factor)
    all_terms = factor_terms(result, factor)
    if len(all_terms) < 2:
        raise BayesHLMError(f"factor {factor!r} has one term ({all_terms}); a 2-D shrinkage plot needs two")
    a, b = terms or all_terms[:2]
    ia, ib = all_terms.index(a), all_terms.index(b)
    tab = _table(result, reml_result, factor, tables.HDI_PROB)
    A, B = tab.xs(a, level="term"), tab.xs(b, level="term")
    fig, ax = axes_or_new(ax, figsize=(6, 5))
    ax.scatter(A["no_pool"], B["no_pool"], facecolor="white", edgecolor=NOPOOL_COLOR,
               label=_nopool_label(tab) if "Intercept" in (a, b) or tab.attrs.get("glm")
               else "no pooling (OLS per group)", zorder=3)
    ax.scatter(A["post_mean"], B["post_mean"], color=BAYES_COLOR, s=22, label="posterior mean", zorder=4)
    for x0, y0, x1, y1 in zip(A["no_pool"], B["no_pool"], A["post_mean"], B["post_mean"]):
        if np.all(np.isfinite([x0, y0])):
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                        arrowprops=dict(arrowstyle="->", color=NOPOOL_COLOR, lw=0.7, shrinkA=3, shrinkB=3))
    if A["blup"].notna().any():
        ax.scatter(A["blup"], B["blup"], marker="x", color=REML_COLOR, s=25, zorder=5,
                   label="REML BLUP" if reference_label(result) == "REML" else "glmer (fixed + conditional mode)")
    names = list(result.design.fixed_names)
    beta = result._draws.flat(naming.FIXED).mean(0)
    norm = [("Intercept" if n in ("(Intercept)", "Intercept") else n) for n in names]
    mean = np.array([beta[norm.index(t)] if t in norm else 0.0 for t in (a, b)])
    cov = result._draws.covariance(factor).mean(0)[np.ix_([ia, ib], [ia, ib])]
    for p, ls in zip(ellipses, ["--", ":", "-."]):
        _ellipse(ax, mean, cov, p, color=POOLED_COLOR, ls=ls, lw=1.2)
        ax.plot([], [], color=POOLED_COLOR, ls=ls, label=f"{p:.0%} population")
    ax.scatter(*mean, marker="*", s=160, color=POOLED_COLOR, edgecolor="k", zorder=6, label="population mean")
    scale = link_scale_label(result)
    ax.set_xlabel(a + (f", {scale}" if scale else ""))
    ax.set_ylabel(b + (f", {scale}" if scale else ""))
    ax.set_title(f"Shrinkage of ({a}, {b}) by {factor}" + (f"\n{family_tag(result)}" if scale else ""))
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncols=2, frameon=False)
    ax.autoscale_view()
    note_missing(fig, tab.attrs.get("reference_note"))
    return ax
