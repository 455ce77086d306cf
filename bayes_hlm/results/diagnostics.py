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
MAX_TREEDEPTH = 10  # PyMC, nutpie and NumPyro default
# Group effects the default diagnostics cover: all up to this many effect parameters, else
# this many random levels per factor. Exact conditional effect draws are independent across
# levels given the hyperparameters, so a random subset shows how they mix; the fit-time
# check then stays a few seconds for 100k+ groups instead of minutes.
EFFECTS_ALL_MAX = 5000
EFFECTS_SUBSET = 1000

# names engines give the same statistic: PyMC / nutpie / NumPyro + our JAX engine
_SATURATED = ("reached_max_treedepth", "maxdepth_reached")
_DEPTH = ("tree_depth", "depth")


def _nanmax(a) -> float:
    a = np.asarray(a, dtype=float)
    return float(np.nanmax(a)) if a.size and not np.all(np.isnan(a)) else float("nan")


def _nanmin(a) -> float:
    a = np.asarray(a, dtype=float)
    return float(np.nanmin(a)) if a.size and not np.all(np.isnan(a)) else float("nan")


def _first_stat(result, names):
    for n in names:
        v = _stat(result, n)
        if v is not None:
            return v
    return None


def bfmi(energy: np.ndarray) -> np.ndarray:
    """E-BFMI per chain from ``energy`` of shape (chain, draw) (Betancourt 2016)."""
    energy = np.asarray(energy, dtype=float)
    num = np.mean(np.diff(energy, axis=1) ** 2, axis=1)
    den = np.var(energy, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return num / den


def _stat(result: "BayesResult", name: str):
    ss = result._group("sample_stats")  # does not build the ArviZ layout of the posterior
    if ss is None or name not in ss:
        return None
    return np.asarray(ss[name].values)


def diagnostics(result: "BayesResult", include_effects: bool = True, effects="auto") -> dict:
    """Divergences, max R-hat, min ESS, tree-depth saturation and BFMI of a fit.

    ``max_r_hat`` covers fixed effects, SDs, correlations and sigma;
    ``max_r_hat_all`` and ``min_ess_bulk`` add the group effects: all of them
    (``effects="all"``, or ``"auto"`` up to :data:`EFFECTS_ALL_MAX` effect
    parameters), else a seeded random subset of :data:`EFFECTS_SUBSET` levels per
    large factor (``"auto"``) or of ``effects`` levels (an int).
    ``"effects_diagnostics"`` says what was covered per factor.
    """
    summ = result.summary()
    div = _stat(result, "diverging")
    out = {
        "divergences": int(np.asarray(div, dtype=bool).sum()) if div is not None else 0,
        "max_r_hat": _nanmax(summ["r_hat"]),
        "min_ess_bulk": _nanmin(summ["ess_bulk"]),
        "min_ess_tail": _nanmin(summ["ess_tail"]),
        "max_r_hat_all": _nanmax(summ["r_hat"]),
    }
    if include_effects and result.factors:
        frames, notes = _effect_frames(result, effects)
        for frame in frames:
            out["max_r_hat_all"] = _nanmax([out["max_r_hat_all"], _nanmax(frame["r_hat"])])
            out["min_ess_bulk"] = _nanmin([out["min_ess_bulk"], _nanmin(frame["ess_bulk"])])
            out["min_ess_tail"] = _nanmin([out["min_ess_tail"], _nanmin(frame["ess_tail"])])
        out["effects_diagnostics"] = notes
    maxdepth = _first_stat(result, _SATURATED)
    depth = _first_stat(result, _DEPTH)
    cap = treedepth_cap(result)
    if maxdepth is not None:
        out["treedepth_saturated"] = int(np.asarray(maxdepth, dtype=bool).sum())
    elif depth is not None:
        out["treedepth_saturated"] = int((np.asarray(depth) >= (cap or MAX_TREEDEPTH)).sum())
    if cap is not None:
        out["treedepth_cap"] = cap
    energy = _stat(result, "energy")
    if energy is not None and energy.ndim == 2 and energy.shape[1] > 2:
        out["bfmi_min"] = _nanmin(bfmi(energy))
    return out


def treedepth_cap(result: "BayesResult") -> int | None:
    """The tree depth an engine capped NUTS at on purpose (``None``: the sampler's default).

    On a whitened, near-standard-normal posterior the collapsed GLMM engine caps nutpie's
    depth (:mod:`bayes_hlm.backends.affine_density`): trajectories stop at the cap by design,
    which is still exact NUTS, so reaching it is no sign of poor adaptation."""
    info = getattr(result, "info", None)
    cap = (getattr(info, "extra", None) or {}).get("nuts_maxdepth")
    return None if cap is None else int(cap)


def _effect_frames(result: "BayesResult", effects) -> tuple[list, dict]:
    """Statistics frames of the group effects the diagnostics cover, and a note per factor."""
    sizes = {f: result.ngrps()[f] * len(result._terms(f)) for f in result.factors}
    if effects == "all" or (effects == "auto" and sum(sizes.values()) <= EFFECTS_ALL_MAX):
        stats = result._effects_checks()
        return list(stats.values()), {f: f"all {result.ngrps()[f]} levels" for f in stats}
    n = EFFECTS_SUBSET if effects == "auto" else int(effects)
    frames, notes = [], {}
    for f in result.factors:
        frame = result.effects_stats_subset(f, n)
        frames.append(frame)
        notes[f] = frame.attrs.get("subset", f"all {result.ngrps()[f]} levels")
    return frames, notes


def warn_on(diag: dict, method: str, marginal_available: bool = True) -> list[str]:
    """Emit one :class:`ConvergenceWarning` per problem; return the messages."""
    msgs = warning_messages(diag, method, marginal_available)
    for m in msgs:
        warnings.warn(m, ConvergenceWarning, stacklevel=3)
    return msgs


def _is_nan(value) -> bool:
    try:
        return bool(np.isnan(float(value)))
    except (TypeError, ValueError):
        return False


def marginal_available(result) -> bool:
    """Whether the collapsed engine could fit ``result``'s model (Gaussian families): only then
    is ``method='marginal'`` a remedy worth suggesting."""
    from .family_draws import family_of

    return "marginal" in family_of(result).engines()


def warning_messages(diag: dict, method: str, marginal_available: bool = True) -> list[str]:
    """The warnings :func:`warn_on` would emit, one per problem, each with its remedy
    (``method='marginal'`` only where ``marginal_available``)."""
    msgs = []
    other = "method='marginal'" if method == "full" and marginal_available else "more tuning"
    if diag.get("divergences", 0):
        msgs.append(f"{diag['divergences']} divergent transitions after tuning: the posterior has "
                    f"regions NUTS cannot explore. Raise target_accept (e.g. 0.95) or use {other}.")
    # NaN compares False with every threshold: left alone it would silence the warnings
    # below exactly when the draws are too few (1-3) or not finite to judge convergence
    unknown = [k for k in ("max_r_hat_all", "max_r_hat", "min_ess_bulk", "min_ess_tail")
               if k in diag and _is_nan(diag[k])]
    if unknown:
        msgs.append(f"convergence cannot be judged: {', '.join(unknown)} is NaN (too few draws, "
                    "or draws that are not finite). Do not trust these estimates; run more draws.")
    if diag.get("max_r_hat_all", diag.get("max_r_hat", 1.0)) > RHAT_MAX:
        rhat = diag.get("max_r_hat_all", diag.get("max_r_hat"))
        msgs.append(f"max R-hat {rhat:.3f} > {RHAT_MAX}: chains disagree. Run longer "
                    "(more tune and draws) before trusting the estimates.")
    if diag.get("min_ess_bulk", np.inf) < ESS_MIN or diag.get("min_ess_tail", np.inf) < ESS_MIN:
        bulk, tail = diag.get("min_ess_bulk", np.nan), diag.get("min_ess_tail", np.nan)
        msgs.append(f"min bulk ESS {bulk:.0f} / tail ESS {tail:.0f}"
                    f" < {ESS_MIN}: too few effective draws for reliable intervals. Increase draws"
                    f" or use {other}.")
    # a depth the engine capped on purpose (``treedepth_cap``) is reached by design: no warning
    if diag.get("treedepth_saturated", 0) and diag.get("treedepth_cap") is None:
        remedy = "Increase tune" + (f" or use {other}" if other != "more tuning" else "")
        msgs.append(f"{diag['treedepth_saturated']} iterations hit the maximum tree depth: sampling "
                    f"is inefficient. {remedy}.")
    if diag.get("bfmi_min", 1.0) < BFMI_MIN:
        msgs.append(f"E-BFMI {diag['bfmi_min']:.2f} < {BFMI_MIN}: poor energy exploration (often a "
                    f"funnel). Use {other} or a different parametrisation (centered=...).")
    return msgs
