"""The full model of a binomial GLMM equals Bambi's posterior (#15): cbpp ``(1|herd)``, every
scalar (fixed effects, the herd SD and each herd's effect) within 4 combined MCSE."""

import warnings

import numpy as np
import pytest

import bayes_hlm as bh
from bayes_hlm.results.tables import stat_frame

K = 4.0


def _frame(columns: dict):
    names = list(columns)
    return stat_frame(np.stack([columns[n] for n in names], axis=-1), names)


def test_cbpp_binomial_matches_bambi():
    bmb = pytest.importorskip("bambi")
    cbpp = bh.datasets.load("cbpp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = bmb.Model("p(incidence, size) ~ period + (1|herd)", cbpp, family="binomial")
        idata = model.fit(draws=1000, tune=1000, chains=2, random_seed=3, inference_method="pymc",
                          progressbar=False)
        ours = bh.fit("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
                      family="binomial", chains=2, draws=1000, tune=1000, seed=4,
                      progressbar=False, warn=False)
    post = idata["posterior"] if hasattr(idata, "children") else idata.posterior
    th = {"Intercept": post["Intercept"].values, "sd": post["1|herd_sigma"].values}
    per = post["period"].values
    for i in range(per.shape[-1]):
        th[f"period{i + 2}"] = per[..., i]
    eff = post["1|herd"]  # Bambi orders the levels as strings ("1", "10", ...): align by label
    dim = [d for d in eff.dims if d not in ("chain", "draw")][0]
    for lev in eff.coords[dim].values:
        th[f"r{lev}"] = eff.sel({dim: lev}).transpose("chain", "draw").values
    p = ours.posterior
    mine = {"Intercept": p["fixed"].sel(fixed_term="Intercept").values,
            "sd": p["sd__herd"].sel(herd__term="Intercept").values}
    for i in range(3):
        mine[f"period{i + 2}"] = p["fixed"].sel(fixed_term=f"period{i + 2}").values
    r = p["r__herd"].sel(herd__term="Intercept")
    for lev in r.coords["herd__level"].values:
        mine[f"r{lev}"] = r.sel(herd__level=lev).transpose("chain", "draw").values
    assert set(mine) == set(th)
    a, b = _frame(mine), _frame({k: th[k] for k in mine})
    bad = []
    for name in a.index:
        tm = K * np.hypot(a.loc[name, "mcse_mean"], b.loc[name, "mcse_mean"])
        ts = K * np.hypot(a.loc[name, "mcse_sd"], b.loc[name, "mcse_sd"])
        if abs(a.loc[name, "mean"] - b.loc[name, "mean"]) > tm or \
                abs(a.loc[name, "sd"] - b.loc[name, "sd"]) > ts:
            bad.append((name, a.loc[name, "mean"], b.loc[name, "mean"], a.loc[name, "sd"],
                        b.loc[name, "sd"]))
    assert not bad, bad
    assert len(a) == 3 + 1 + 1 + 15
