"""Our (x||g) model is Bambi's (x|g) model: same priors, same posterior (within MCSE)."""

import warnings

import numpy as np
import pytest

import bayes_hlm as bh
from bayes_hlm.results.tables import stat_frame


def _frame(arr2d_by_name):
    names = list(arr2d_by_name)
    arr = np.stack([arr2d_by_name[n] for n in names], axis=-1)
    return stat_frame(arr, names)


def test_uncorrelated_matches_bambi(sleepstudy):
    bmb = pytest.importorskip("bambi")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = bmb.Model("Reaction ~ Days + (Days|Subject)", sleepstudy)
        idata = model.fit(draws=1000, tune=1000, chains=2, random_seed=3, inference_method="pymc",
                          progressbar=False)
        ours = bh.fit("Reaction ~ Days + (Days||Subject)", sleepstudy, method="full", chains=2,
                      draws=1000, tune=1000, seed=4, warn=False)
    post = idata["posterior"] if hasattr(idata, "children") else idata.posterior
    theirs = _frame({
        "Intercept": post["Intercept"].values, "Days": post["Days"].values,
        "sigma": post["sigma"].values,
        "sd_int": post["1|Subject_sigma"].values, "sd_days": post["Days|Subject_sigma"].values,
    })
    p = ours.posterior
    mine = _frame({
        "Intercept": p["fixed"].sel(fixed_term="Intercept").values,
        "Days": p["fixed"].sel(fixed_term="Days").values, "sigma": p["sigma"].values,
        "sd_int": p["sd__Subject"].sel(Subject__term="Intercept").values,
        "sd_days": p["sd__Subject"].sel(Subject__term="Days").values,
    })
    assert "corr__Subject" not in p
    for name in mine.index:
        a, b = mine.loc[name], theirs.loc[name]
        tol_m = 4 * np.hypot(a.mcse_mean, b.mcse_mean)
        tol_s = 4 * np.hypot(a.mcse_sd, b.mcse_sd)
        assert abs(a["mean"] - b["mean"]) < tol_m, (name, a["mean"], b["mean"], tol_m)
        assert abs(a["sd"] - b["sd"]) < tol_s, (name, a["sd"], b["sd"], tol_s)
