"""Conditional-effects plots (brms ``conditional_effects``, Bambi ``interpret.plot_predictions``).

The posterior prediction (expected value, or a new observation with
``kind="response"``) along one predictor, optionally split by a second one, with
the other predictors held fixed: numeric ones at their mean, factors at their
reference (first) level, or at the values in ``conditions``. By default the
prediction is population-level (``group_effects=False``, brms ``re_formula = NA``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from ..errors import BayesHLMError
from ._util import axes_or_new, family_link, family_tag, response_label

if TYPE_CHECKING:
    from ..results.bayes_result import BayesResult

__all__ = ["conditional_effects", "plot_conditional_effects"]


def _is_factor(col: pd.Series) -> bool:
    return isinstance(col.dtype, pd.CategoricalDtype)


def _values(col: pd.Series, n_points: int, role: str) -> list:
    if _is_factor(col):
        return list(col.cat.categories)
    x = col.astype(float)
    if role == "effect":
        return list(np.linspace(x.min(), x.max(), n_points))
    m, s = float(x.mean()), float(x.std())
    return [m - s, m, m + s]  # brms: mean -/+ one SD for a numeric 'by'


def conditional_effects(result: "BayesResult", effect: str, by: str | None = None,
                        conditions: dict | None = None, group_effects: bool | str | list = False,
                        kind: Literal["mean", "response"] = "mean", prob: float = 0.95,
                        n_points: int = 50, **predict_kwargs) -> pd.DataFrame:
    """The prediction grid with posterior ``estimate`` (mean), ``lower``, ``upper`` (HDI).

    ``conditions`` fixes other variables (e.g. a grouping column's level when
    ``group_effects`` includes its factor).
    """
    from ..results.predict import predict

    data = result.spec.data
    conditions = dict(conditions or {})
    for v in [effect] + ([by] if by else []):
        if v not in data.columns:
            raise BayesHLMError(f"{v!r} is not a column of the model's data ({list(data.columns)})")
    axes = {effect: _values(data[effect], n_points, "effect")}
    if by:
        axes[by] = _values(data[by], n_points, "by")
    others = {}
    for c in data.columns:
        if c in axes or c == result.spec.parsed.response:
            continue
        if c in conditions:
            others[c] = conditions[c]
        elif _is_factor(data[c]):
            others[c] = data[c].cat.categories[0]
        else:
            others[c] = float(data[c].astype(float).mean())
    idx = pd.MultiIndex.from_product(list(axes.values()), names=list(axes))
    grid = idx.to_frame(index=False)
    for c, v in others.items():
        grid[c] = v
    for c in grid.columns:
        if _is_factor(data[c]):
            grid[c] = pd.Categorical(grid[c], categories=data[c].cat.categories)
    p = predict(result, grid, group_effects=group_effects, kind=kind, prob=prob, **predict_kwargs)
    out = grid.copy()
    out["estimate"] = p["mean"].to_numpy()
    out["lower"] = p["hdi_low"].to_numpy()
    out["upper"] = p["hdi_high"].to_numpy()
    return out


def _binned_proportions(ax, data, effect, by, y, numeric_x, cats, by_levels, n_bins: int = 8):
    """Observed proportions of a 0/1 response (raw 0/1 points say little): per level of a factor
    ``effect``, or per quantile bin of a numeric one, split by ``by``'s levels when it is a factor.
    Marker area grows with the rows behind each proportion."""
    x = data[effect]
    groups = [(None, np.ones(len(y), bool), "0.3")]
    if by and _is_factor(data[by]):
        groups = [(lvl, (data[by] == lvl).to_numpy(), f"C{i}") for i, lvl in enumerate(by_levels)]
    if numeric_x:
        xv = x.astype(float).to_numpy()
        edges = np.unique(np.quantile(xv, np.linspace(0, 1, n_bins + 1)))
        codes = np.clip(np.searchsorted(edges, xv, side="right") - 1, 0, len(edges) - 2)
    else:
        xv = x.cat.codes.to_numpy().astype(float)
        codes = x.cat.codes.to_numpy()
    first = True
    for _, m, color in groups:
        for c in np.unique(codes[m]):
            sel = m & (codes == c)
            ax.scatter([xv[sel].mean()], [y[sel].mean()], s=8 + 60 * sel.sum() / len(y) * len(np.unique(codes)),
                       color=color, marker="s", alpha=0.45, edgecolor="k", linewidths=0.4, zorder=2,
                       label="observed proportion (binned)" if first else None)
            first = False


def plot_conditional_effects(result: "BayesResult", effect: str, by: str | None = None, *,
                             conditions: dict | None = None,
                             group_effects: bool | str | list = False,
                             kind: Literal["mean", "response"] = "mean", prob: float = 0.95,
                             points: bool = True, n_points: int = 50, ax=None, **predict_kwargs):
    """Plot :func:`conditional_effects`: line and band (numeric ``effect``) or points and
    error bars (factor), one colour per level of ``by``, with the data points.

    Generalized fits (``kind="mean"``): on the response scale - the success probability or the
    expected count - with the observed proportions (binary: binned; binomial: per row) or counts.

    Returns the matplotlib Axes.
    """
    tab = conditional_effects(result, effect, by, conditions, group_effects, kind, prob,
                              n_points, **predict_kwargs)
    fig, ax = axes_or_new(ax)
    data = result.spec.data
    y = np.asarray(result.design.y)
    numeric_x = not _is_factor(data[effect])
    by_levels = list(dict.fromkeys(tab[by])) if by else [None]
    cats = list(data[effect].cat.categories) if not numeric_x else None
    width = 0.6
    for i, lvl in enumerate(by_levels):
        sub = tab if lvl is None else tab[tab[by] == lvl]
        color = f"C{i}"
        label = None if lvl is None else (f"{by} = {lvl:.3g}" if isinstance(lvl, float)
                                          else f"{by} = {lvl}")
        if numeric_x:
            ax.plot(sub[effect], sub["estimate"], color=color, label=label)
            ax.fill_between(sub[effect].astype(float), sub["lower"], sub["upper"], color=color,
                            alpha=0.25, linewidth=0)
        else:
            off = (i - (len(by_levels) - 1) / 2) * width / max(len(by_levels), 1)
            xs = np.array([cats.index(v) for v in sub[effect]]) + off
            ax.errorbar(xs, sub["estimate"], yerr=[sub["estimate"] - sub["lower"],
                                                   sub["upper"] - sub["estimate"]],
                        fmt="o", color=color, capsize=3, label=label, zorder=3)
    fam, _ = family_link(result)
    if points:
        if by and _is_factor(data[by]):
            col_of = {lvl: f"C{i}" for i, lvl in enumerate(by_levels)}
            colors = np.array([col_of.get(v, "0.5") for v in data[by]], dtype=object)
        else:
            colors = np.full(len(y), "0.4", dtype=object)
        if fam == "bernoulli" and kind == "mean":
            _binned_proportions(ax, data, effect, by, y, numeric_x, cats, by_levels)
        else:
            if fam == "binomial" and kind == "mean":  # the observed proportion of each row
                y = y / np.asarray(result.design.trials, float)
            if numeric_x:
                xs = data[effect].astype(float).to_numpy()
            else:
                rng = np.random.default_rng(0)
                xs = data[effect].cat.codes.to_numpy() + rng.uniform(-0.15, 0.15, len(y))
            ax.scatter(xs, y, s=6, c=list(colors), alpha=0.3, linewidths=0, zorder=1)
    if not numeric_x:
        ax.set_xticks(range(len(cats)), [str(c) for c in cats])
    ax.set_xlabel(effect)
    if fam == "gaussian" or kind != "mean":
        ax.set_ylabel(result.spec.parsed.response)
        ax.set_title(f"Conditional effect of {effect} ({int(prob * 100)}% HDI)")
    else:
        ax.set_ylabel(response_label(result))
        ax.set_title(f"Conditional effect of {effect} on {response_label(result)} ({int(prob * 100)}% HDI)\n"
                     f"{family_tag(result)}; response scale", fontsize=10)
    if by or (points and fam == "bernoulli" and kind == "mean"):
        ax.legend(frameon=False, fontsize="small")
    return ax
