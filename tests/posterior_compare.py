"""Posterior agreement of two fits within Monte Carlo error (used by backend-equivalence tests)."""

import numpy as np
import pandas as pd

K_MCSE = 4.0


def all_scalars(result) -> pd.DataFrame:
    """Every scalar parameter with its statistics: fixed, SDs, correlations, sigma, group effects."""
    frames = [result.summary().drop(columns="kind")]
    for factor, frame in result.effects_stats().items():
        frames.append(frame.rename(index=lambda s, f=factor: f"r[{f}]{s}"))
    return pd.concat(frames)


def disagreements(a, b, k: float = K_MCSE) -> pd.DataFrame:
    """Rows where means or SDs differ by more than ``k`` combined MCSEs."""
    sa, sb = all_scalars(a), all_scalars(b)
    assert list(sa.index) == list(sb.index)
    dm = (sa["mean"] - sb["mean"]).abs()
    ds = (sa["sd"] - sb["sd"]).abs()
    tm = k * np.hypot(sa["mcse_mean"], sb["mcse_mean"])
    ts = k * np.hypot(sa["mcse_sd"], sb["mcse_sd"])
    bad = (dm > tm) | (ds > ts)
    out = pd.DataFrame({"mean_a": sa["mean"], "mean_b": sb["mean"], "tol_mean": tm,
                        "sd_a": sa["sd"], "sd_b": sb["sd"], "tol_sd": ts})
    return out[bad.fillna(False)]


def correlated_block_data(q: int, seed: int = 0, n_groups: int = 25, rows: int = 8, crossed: int = 0,
                          ) -> pd.DataFrame:
    """Data for :func:`correlated_block_formula`: a q × q correlated block per group ``g``
    (all correlations 0.4), optionally a crossed intercept factor ``h`` of ``crossed`` levels."""
    rng = np.random.default_rng(seed)
    n = n_groups * rows
    g = np.repeat(np.arange(n_groups), rows)
    X = rng.normal(size=(n, q - 1))
    b = rng.multivariate_normal(np.zeros(q), 0.4 + 0.6 * np.eye(q), size=n_groups)
    y = 1.0 + X @ np.linspace(0.5, -0.5, q - 1) + b[g, 0] + np.sum(X * b[g, 1:], axis=1) + rng.normal(size=n)
    df = pd.DataFrame({"y": y, "g": g, **{f"x{i + 1}": X[:, i] for i in range(q - 1)}})
    if crossed:
        df["h"] = rng.integers(0, crossed, n)
        df["y"] += rng.normal(0, 0.7, crossed)[df["h"]]
    return df


def correlated_block_formula(q: int, extra: str = "") -> str:
    """``y ~ x1 + … + x_{q-1} + (x1 + … + x_{q-1} | g)`` plus ``extra``."""
    xs = " + ".join(f"x{i + 1}" for i in range(q - 1))
    return f"y ~ {xs} + ({xs} | g){extra}"
