"""Machine-readable export of a Bayesian fit (the CLI's JSON schema)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..spec import variable_names as naming
from .tables import stat_dict, stat_frame

if TYPE_CHECKING:
    from .bayes_result import BayesResult


def _dist_stat(result: "BayesResult", draws: np.ndarray) -> dict:
    C = result._draws.n_chains
    arr = draws.reshape(C, -1) if draws.size % C == 0 and draws.size == result._draws.size else draws[None, :]
    return stat_dict(stat_frame(arr, ["x"]).iloc[0])


def fit_json(result: "BayesResult") -> dict:
    """The ``bayes-hlm fit`` JSON: family, link, fixed, sigma, dispersion, group
    SDs/correlations, ICC, R², diagnostics.

    ``sigma`` is present only where the family has one (Gaussian, Student-t);
    ``dispersion`` only where the family has other parameters of its own, by their names
    (negative binomial and Gamma ``alpha``; Student-t ``nu``).
    """
    from .family_draws import family_of

    summ = result.summary()
    d = result.design
    fam = family_of(result)
    out: dict = {
        "formula": d.formula,
        "family": fam.name,
        "link": fam.link.name,
        "n_obs": d.n,
        "groups": {k: int(v) for k, v in d.factors().items()},
        "fixed": {name: stat_dict(summ.loc[name]) for name in d.fixed_names},
    }
    if naming.SIGMA in fam.param_names:
        out["sigma"] = stat_dict(summ.loc[naming.SIGMA])
    others = [p for p in fam.param_names if p != naming.SIGMA]
    if others:
        out["dispersion"] = {p: stat_dict(summ.loc[p]) for p in others}
    out["group_sd"] = {}
    out["group_corr"] = {}
    for f in result.factors:
        terms = result._terms(f)
        out["group_sd"][f] = {t: stat_dict(summ.loc[f"sd({t} | {f})"]) for t in terms}
        if result._draws.has(naming.corr_var(f)):
            out["group_corr"][f] = {
                f"{terms[i]},{terms[j]}": stat_dict(summ.loc[f"cor({terms[i]}, {terms[j]} | {f})"])
                for i, j in result._corr_pairs(f)
            }
    vp = result.variance_parts()
    r2 = result.r2_draws()
    out["icc"] = _dist_stat(result, vp.icc())
    out["r2_bayes"] = _dist_stat(result, r2["r2_bayes"])
    used, total = len(r2["r2_bayes_idx"]), result._draws.size
    # post-fit work is bounded (#18): say when R² came from a subset of the draws
    out["r2_bayes"]["draws"] = (f"all {total}" if used == total
                                else f"{used} of {total}, evenly spaced (post-fit cost bounded)")
    out["r2_marginal"] = _dist_stat(result, r2["r2_marginal"])
    out["r2_conditional"] = _dist_stat(result, r2["r2_conditional"])
    diag = result.diagnostics()
    out["diagnostics"] = {
        "divergences": int(diag["divergences"]),
        "max_r_hat": float(diag["max_r_hat"]),
        "max_r_hat_all": float(diag["max_r_hat_all"]),
        "min_ess_bulk": float(diag["min_ess_bulk"]),
        "min_ess_tail": float(diag.get("min_ess_tail", float("nan"))),
        "treedepth_saturated": int(diag.get("treedepth_saturated", 0) or 0),
        "treedepth_cap": diag.get("treedepth_cap"),  # None: the sampler's default depth
        "bfmi_min": float(diag.get("bfmi_min", float("nan"))),
        "wall_s": float(result.info.wall_s),
    }
    if diag.get("effects_diagnostics"):  # which group effects R-hat/ESS covered (a subset at scale)
        out["diagnostics"]["effects_covered"] = dict(diag["effects_diagnostics"])
    from .diagnostics import marginal_available, warning_messages

    # one flag a pipeline can test: no convergence warning and a complete run
    msgs = warning_messages(diag, result.info.method, marginal_available(result))
    out["diagnostics"]["warnings"] = msgs
    out["diagnostics"]["converged"] = not msgs and not result.info.interrupted
    out["fit"] = {"method": result.info.method, "sampler": result.info.sampler,
                  "chains": result.info.chains, "draws": result.info.draws, "tune": result.info.tune,
                  "seed": result.info.seed, "compile_s": result.info.compile_s,
                  "sample_s": result.info.sample_s, "interrupted": result.info.interrupted}
    return out
