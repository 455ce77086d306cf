"""Posterior summary tables: mean, sd, HDI, bulk/tail ESS, R-hat, MCSE.

Works on plain arrays shaped (chain, draw, ...) so every result type (and the
on-demand group-effect draws of the marginal backend) shares one code path.
ESS, R-hat and MCSE come from :mod:`.mcmc_stats`, a vectorised re-implementation
of arviz_stats' diagnostics (same values to rounding, thousands of parameters per
second instead of a Python loop per parameter).
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from ..inference.intervals import DEFAULT_LEVEL, hdi, label_interval
from .mcmc_stats import TAIL_PROB, chain_stats

# the interval level of every posterior table: 95%, as lme4's confint and brms (one default)
HDI_PROB = DEFAULT_LEVEL
STAT_COLUMNS = ["mean", "sd", "hdi_low", "hdi_high", "ess_bulk", "ess_tail", "r_hat",
                "mcse_mean", "mcse_sd"]
DIAG_COLUMNS = ["ess_bulk", "ess_tail", "r_hat", "mcse_mean", "mcse_sd"]


def _tail_prob() -> float:
    """Tail-ESS probability: arviz's ``rcParams["stats.ci_prob"]`` when arviz is loaded.

    That is what ``az.ess(method="tail")`` used before, so a user's arviz setting
    still applies; without arviz loaded it is arviz's default (0.89), and the
    (slow) arviz import is not forced just to read it.
    """
    base = sys.modules.get("arviz_base")
    return float(base.rcParams["stats.ci_prob"]) if base is not None else TAIL_PROB


def stat_frame(arr: np.ndarray, index: list, prob: float = HDI_PROB) -> pd.DataFrame:
    """Statistics of each scalar in ``arr`` (chain, draw, k) as rows named by ``index``.

    ESS/R-hat/MCSE are arviz_stats' (bulk and tail ESS, rank-normalised split
    R-hat, MCSE of mean and sd; NaN with fewer than 4 draws per chain, R-hat NaN
    with one chain), set to NaN for constant parameters.
    """
    arr = np.asarray(arr, dtype=float)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    flat = arr.reshape(-1, arr.shape[2])
    lo, hi = hdi(flat, prob)
    constant = np.ptp(flat, axis=0) == 0
    diag = chain_stats(arr, tail_prob=_tail_prob())
    out = pd.DataFrame(
        {
            "mean": flat.mean(axis=0),
            "sd": flat.std(axis=0, ddof=1) if flat.shape[0] > 1 else np.zeros(flat.shape[1]),
            "hdi_low": lo,
            "hdi_high": hi,
            **{key: diag[key] for key in DIAG_COLUMNS},
        },
        index=pd.Index(index),
    )
    # constants (a correlation's diagonal, a fixed value) carry no sampling information
    out.loc[constant, DIAG_COLUMNS] = np.nan
    return label_interval(out, prob, "hdi")


#: the columns the convergence check reads (:func:`check_frame`)
CHECK_COLUMNS = ["ess_bulk", "ess_tail", "r_hat"]


def check_frame(arr: np.ndarray, index: list) -> pd.DataFrame:
    """:func:`stat_frame`'s ``CHECK_COLUMNS`` alone (the same numbers): what the fit-time
    convergence check reads, without the intervals and MCSEs (InstEval's 4,100 group
    effects: ~40% less work)."""
    arr = np.asarray(arr, dtype=float)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    flat = arr.reshape(-1, arr.shape[2])
    diag = chain_stats(arr, tail_prob=_tail_prob(), keys=CHECK_COLUMNS)
    out = pd.DataFrame({key: diag[key] for key in CHECK_COLUMNS}, index=pd.Index(index))
    out.loc[np.ptp(flat, axis=0) == 0, CHECK_COLUMNS] = np.nan  # as stat_frame
    return out


def stat_dict(row: pd.Series) -> dict:
    """One row of :func:`stat_frame` as the CLI's STAT object."""
    keys = ["mean", "sd", "hdi_low", "hdi_high", "ess_bulk", "r_hat"]
    return {k: (None if pd.isna(row[k]) else float(row[k])) for k in keys}
