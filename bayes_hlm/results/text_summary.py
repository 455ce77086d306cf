"""A printed summary of a Bayesian fit in the layout of brms's ``summary()`` (what
``bayes-hlm fit`` prints): model, data, draws, population- and group-level tables with
95% intervals, R-hat and ESS, then any convergence problem with its remedy."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from .bayes_result import BayesResult

PROB = 0.95
COLUMNS = {"mean": "Estimate", "sd": "Est.Error", "hdi_low": "l-95% CI", "hdi_high": "u-95% CI",
           "r_hat": "Rhat", "ess_bulk": "Bulk_ESS", "ess_tail": "Tail_ESS"}


def _num(x: float, digits: int) -> str:
    """Fixed decimals for ordinary magnitudes, significant digits for tiny or huge ones."""
    if not np.isfinite(x):
        return "NA"
    if x != 0 and (abs(x) < 10 ** -digits or abs(x) >= 1e6):
        return f"{x:.{digits + 1}g}"
    return f"{x:.{digits}f}"


def _table(frame: pd.DataFrame, labels: list[str], digits: int = 2) -> str:
    rows = []
    for lab, (_, r) in zip(labels, frame.iterrows()):
        row = {COLUMNS[c]: _num(float(r[c]), digits) for c in ("mean", "sd", "hdi_low", "hdi_high")}
        row["Rhat"] = _num(float(r["r_hat"]), 2)
        row["Bulk_ESS"] = "NA" if not np.isfinite(r["ess_bulk"]) else f"{int(r['ess_bulk'])}"
        row["Tail_ESS"] = "NA" if not np.isfinite(r["ess_tail"]) else f"{int(r['ess_tail'])}"
        rows.append(row)
    out = pd.DataFrame(rows, index=labels, columns=list(COLUMNS.values()))
    return out.to_string()


def format_summary(result: "BayesResult", data_label: str | None = None) -> str:
    """The fit as brms prints it, one string (95% highest-density intervals).

    Parameters
    ----------
    result : BayesResult
    data_label : str, optional
        Name of the data (e.g. the CSV path) shown on the ``Data:`` line.
    """
    from .diagnostics import marginal_available, warning_messages
    from .family_draws import family_of

    info, d = result.info, result.design
    summ = result.summary(PROB)
    total = info.chains * result._draws.n_draws
    fam = family_of(result)
    lines = [
        f" Family: {fam.name}",
        "  Links: " + "; ".join([f"mu = {fam.link.name}"]
                                + [f"{p} = identity" for p in fam.param_names]),
        f"Formula: {result.formula}",
        f"   Data: {data_label or 'data'} (Number of observations: {d.n})",
        f"  Draws: {info.chains} chains, each with iter = {info.tune + result._draws.n_draws}; "
        f"warmup = {info.tune}; thin = 1;",
        f"         total post-warmup draws = {total}",
        f" Method: {info.method} (sampler {info.sampler}), {info.wall_s:.1f} s",
        "",
        "Population-Level Effects:",
        _table(summ[summ["kind"] == "fixed"], list(d.fixed_names)),
        "",
        "Group-Level Effects:",
    ]
    for f, n in d.factors().items():
        rows = summ[summ.index.str.endswith(f" | {f})") & summ["kind"].isin(["sd", "corr"])]
        labels = [i.replace(f" | {f})", ")") for i in rows.index]
        lines += [f"~{f} (Number of levels: {n})", _table(rows, labels), ""]
    if fam.param_names:  # sigma, NB/Gamma alpha, t nu; none for Bernoulli, binomial, Poisson
        own = summ.loc[list(fam.param_names)]
        lines += ["Family Specific Parameters:", _table(own, list(fam.param_names)), ""]
    lines += textwrap.wrap(f"Intervals are {PROB:.0%} highest-density intervals. Bulk_ESS and "
                           "Tail_ESS are effective sample sizes; Rhat is the potential scale "
                           "reduction factor on rank-normalised split chains (at convergence, "
                           "Rhat = 1).", 100)
    diag = result.diagnostics()
    msgs = warning_messages(diag, info.method, marginal_available(result))
    lines.append("")
    if msgs:
        lines += ["Convergence warnings:"] + [f"  - {m}" for m in msgs]
    else:
        lines.append(f"Diagnostics: {diag['divergences']} divergences, max Rhat "
                     f"{diag.get('max_r_hat_all', diag['max_r_hat']):.3f}, min bulk ESS "
                     f"{diag['min_ess_bulk']:.0f} (group effects included).")
    return "\n".join(lines)
