"""Simpson's paradox picture: the pooled regression line against the within-group lines."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._util import POOLED_COLOR, axes_or_new


def simpson_toy(n_per_group: int = 20, seed: int = 1) -> pd.DataFrame:
    """Three groups whose within-group slopes are negative while the pooled slope is positive.

    Returns
    -------
    DataFrame with columns ``x``, ``y``, ``group`` ("A", "B", "C").
    """
    rng = np.random.default_rng(seed)
    rows = []
    for k, g in enumerate("ABC"):
        x = rng.uniform(2 * k, 2 * k + 3, n_per_group)
        y = 4 * k + 4 - 0.8 * (x - 2 * k) + rng.normal(0, 0.5, n_per_group)
        rows.append(pd.DataFrame({"x": x, "y": y, "group": g}))
    out = pd.concat(rows, ignore_index=True)
    out["group"] = pd.Categorical(out["group"])
    return out


def plot_simpson(data: pd.DataFrame, x: str, y: str, group: str, ax=None):
    """Scatter coloured by group, each group's OLS line, and the pooled OLS line (no fit needed).

    Returns
    -------
    matplotlib.axes.Axes
    """
    fig, ax = axes_or_new(ax, figsize=(6, 4))
    xv, yv = data[x].to_numpy(float), data[y].to_numpy(float)
    grid = np.linspace(xv.min(), xv.max(), 50)
    for i, (g, d) in enumerate(data.groupby(group, observed=True, sort=True)):
        c = f"C{i % 10}"
        gx, gy = d[x].to_numpy(float), d[y].to_numpy(float)
        ax.scatter(gx, gy, s=14, color=c, alpha=0.8, label=f"{group} = {g}")
        if len(np.unique(gx)) > 1:
            b, a = np.polyfit(gx, gy, 1)
            xs = np.linspace(gx.min(), gx.max(), 20)
            ax.plot(xs, a + b * xs, color=c, lw=1.8)
    b, a = np.polyfit(xv, yv, 1)
    ax.plot(grid, a + b * grid, color=POOLED_COLOR, ls="--", lw=2.2, label=f"pooled: slope {b:+.2f}")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title("Simpson's paradox: pooled vs within-group regression")
    ax.legend(fontsize=8)
    return ax
