"""Sampler diagnostics with plain-language remedies, one warning per problem."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConvergenceWarning

if TYPE_CHECKING:
    from .bayes_result import BayesResult

RHAT_MAX = 1.01
ESS_MIN = 400
BFMI_MIN = 0.3


def _stat(result: "BayesResult", name: str):
    ss = result.tree["sample_stats"] if "sample_stats" in result.tree.children else None
    if ss is None or name not in ss:
        return None
    return np.asarray(ss[name].values)


def diagnostics(result: "BayesResult", include_effects: bool = True) -> dict:
    """Divergences, max R-hat, min ESS, tree-depth saturation and BFMI of a fit.

    ``max_r_hat`` covers fixed effects, SDs, correlations and sigma;
    ``max_r_hat_all`` and ``min_ess_bulk`` add every group effect.
    """
    summ = result.summary()
    div = _stat(result, "diverging")
    out = {
        "divergences": int(div.sum()) if div is not None else 0,
        "max_r_hat": float(np.nanmax(summ["r_hat"])),
        "min_ess_bulk": float(np.nanmin(summ["ess_bulk"])),
        "min_ess_tail": float(np.nanmin(summ["ess_tail"])),
        "max_r_hat_all": float(np.nanmax(summ["r_hat"])),
    }
    if include_effects and result.factors:
        for frame in result.effects_stats().values():
            out["max_r_hat_all"] = max(out["max_r_hat_all"], float(np.nanmax(frame["r_hat"])))
            out["min_ess_bulk"] = min(out["min_ess_bulk"], float(np.nanmin(frame["ess_bulk"])))
            out["min_ess_tail"] = min(out["min_ess_tail"], float(np.nanmin(frame["ess_tail"])))
    depth = _stat(result, "tree_depth")
    maxdepth = _stat(result, "reached_max_treedepth")
    if maxdepth is not None:
        out["treedepth_saturated"] = int(np.asarray(maxdepth, dtype=bool).sum())
    elif depth is not None:
        out["treedepth_saturated"] = int((depth >= 10).sum())
    energy = _stat(result, "energy")
    if energy is not None and energy.ndim == 2 and energy.shape[1] > 2:
        num = np.mean(np.diff(energy, axis=1) ** 2, axis=1)
        den = np.var(energy, axis=1)
        out["bfmi_min"] = float(np.min(num / den))
    return out


def warn_on(diag: dict, method: str) -> list[str]:
    """Emit one :class:`ConvergenceWarning` per problem; return the messages."""
    msgs = []
    other = "method='marginal'" if method == "full" else "more tuning"
    if diag["divergences"]:
        msgs.append(f"{diag['divergences']} divergent transitions after tuning: the posterior has "
                    f"regions NUTS cannot explore. Raise target_accept (e.g. 0.95) or use {other}.")
    if diag["max_r_hat_all"] > RHAT_MAX:
        msgs.append(f"max R-hat {diag['max_r_hat_all']:.3f} > {RHAT_MAX}: chains disagree. Run longer "
                    "(more tune and draws) before trusting the estimates.")
    if diag["min_ess_bulk"] < ESS_MIN or diag.get("min_ess_tail", np.inf) < ESS_MIN:
        msgs.append(f"min bulk ESS {diag['min_ess_bulk']:.0f} / tail ESS {diag.get('min_ess_tail', np.nan):.0f}"
                    f" < {ESS_MIN}: too few effective draws for reliable intervals. Increase draws"
                    f" or use {other}.")
    if diag.get("treedepth_saturated", 0):
        msgs.append(f"{diag['treedepth_saturated']} iterations hit the maximum tree depth: sampling "
                    f"is inefficient. Increase tune or use {other}.")
    if diag.get("bfmi_min", 1.0) < BFMI_MIN:
        msgs.append(f"E-BFMI {diag['bfmi_min']:.2f} < {BFMI_MIN}: poor energy exploration (often a "
                    f"funnel). Use {other} or a different parametrisation (centered=...).")
    for m in msgs:
        warnings.warn(m, ConvergenceWarning, stacklevel=3)
    return msgs
