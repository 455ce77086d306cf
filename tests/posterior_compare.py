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
