"""Posterior summary tables: mean, sd, HDI, bulk/tail ESS, R-hat, MCSE.

Works on plain arrays shaped (chain, draw, ...) so every result type (and the
on-demand group-effect draws of the marginal backend) shares one code path.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

HDI_PROB = 0.94
STAT_COLUMNS = ["mean", "sd", "hdi_low", "hdi_high", "ess_bulk", "ess_tail", "r_hat",
                "mcse_mean", "mcse_sd"]


def hdi(draws: np.ndarray, prob: float = HDI_PROB) -> tuple[np.ndarray, np.ndarray]:
    """Highest-density interval over the leading (sample) axis of ``draws`` (S, ...)."""
    x = np.sort(np.asarray(draws, dtype=float), axis=0)
    n = x.shape[0]
    k = int(np.floor(prob * n))
    if k < 1 or n < 2:
        return x[0], x[-1]
    widths = x[k:] - x[: n - k]
    i = np.argmin(widths, axis=0)
    lo = np.take_along_axis(x, i[None], axis=0)[0]
    hi = np.take_along_axis(x, (i + k)[None], axis=0)[0]
    return lo, hi


def _diag(fn, arr: np.ndarray, **kw) -> np.ndarray:
    da = xr.DataArray(arr, dims=["chain", "draw"] + [f"d{i}" for i in range(arr.ndim - 2)])
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        out = fn(xr.Dataset({"x": da}), **kw)["x"]
    return np.asarray(out)


def stat_frame(arr: np.ndarray, index: list, prob: float = HDI_PROB) -> pd.DataFrame:
    """Statistics of each scalar in ``arr`` (chain, draw, k) as rows named by ``index``."""
    arr = np.asarray(arr, dtype=float)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    flat = arr.reshape(-1, arr.shape[2])
    lo, hi = hdi(flat, prob)
    constant = np.ptp(flat, axis=0) == 0
    out = pd.DataFrame(
        {
            "mean": flat.mean(axis=0),
            "sd": flat.std(axis=0, ddof=1) if flat.shape[0] > 1 else np.zeros(flat.shape[1]),
            "hdi_low": lo,
            "hdi_high": hi,
            "ess_bulk": _diag(az.ess, arr, method="bulk"),
            "ess_tail": _diag(az.ess, arr, method="tail"),
            "r_hat": _diag(az.rhat, arr),
            "mcse_mean": _diag(az.mcse, arr, method="mean"),
            "mcse_sd": _diag(az.mcse, arr, method="sd"),
        },
        index=pd.Index(index),
    )
    # constants (a correlation's diagonal, a fixed value) carry no sampling information
    out.loc[constant, ["ess_bulk", "ess_tail", "r_hat", "mcse_mean", "mcse_sd"]] = np.nan
    return out


def stat_dict(row: pd.Series) -> dict:
    """One row of :func:`stat_frame` as the CLI's STAT object."""
    keys = ["mean", "sd", "hdi_low", "hdi_high", "ess_bulk", "r_hat"]
    return {k: (None if pd.isna(row[k]) else float(row[k])) for k in keys}
