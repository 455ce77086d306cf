"""ICC and R² definitions against closed forms with known parameters, and a fit recovering them."""

import numpy as np
import pandas as pd
import pytest

import bayes_hlm as bh
from bayes_hlm.results.variance import variance_parts


def test_closed_form_random_slope_variance():
    rng = np.random.default_rng(0)
    n = 400
    x = rng.uniform(0, 9, n)
    df = pd.DataFrame({"y": rng.normal(size=n), "x": x, "g": np.repeat(np.arange(40), 10).astype(str)})
    d = bh.build_design("y ~ x + (x | g)", df)
    beta = np.array([[2.0, 1.5]])
    tau0, tau1, rho, sigma = 3.0, 0.7, 0.4, 2.0
    cov = np.array([[[tau0**2, rho * tau0 * tau1], [rho * tau0 * tau1, tau1**2]]])
    vp = variance_parts(d, beta, np.array([sigma]), {"g": cov})
    # Johnson (2014): mean over rows of z' Sigma z with z = (1, x)
    var_r = tau0**2 + 2 * rho * tau0 * tau1 * x.mean() + tau1**2 * np.mean(x**2)
    var_f = 1.5**2 * np.var(x, ddof=1)
    np.testing.assert_allclose(vp.random["g"][0], var_r, rtol=1e-12)
    np.testing.assert_allclose(vp.fixed[0], var_f, rtol=1e-12)
    np.testing.assert_allclose(vp.icc()[0], var_r / (var_r + sigma**2), rtol=1e-12)
    np.testing.assert_allclose(vp.r2_marginal()[0], var_f / (var_f + var_r + sigma**2), rtol=1e-12)
    np.testing.assert_allclose(vp.r2_conditional()[0], (var_f + var_r) / (var_f + var_r + sigma**2), rtol=1e-12)


def test_closed_form_two_factors():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"y": rng.normal(size=120), "a": np.repeat(list("abcdef"), 20),
                       "b": np.tile(list("uvwxyz"), 20)})
    d = bh.build_design("y ~ 1 + (1|a) + (1|b)", df)
    vp = variance_parts(d, np.array([[1.0]]), np.array([1.0]), {"a": np.array([[[4.0]]]), "b": np.array([[[1.0]]])})
    assert vp.fixed[0] == 0.0
    np.testing.assert_allclose(vp.icc()[0], 5 / 6)
    np.testing.assert_allclose(vp.icc_by_factor()["a"][0], 4 / 6)


def test_fit_recovers_icc_r2_and_correlation():
    sim = bh.datasets.simulate(n_groups=60, rows_per_group=25, slope=True, fixed=(1.0, 2.0),
                               group_sd=(1.5, 1.0), corr=0.6, sigma=1.0, seed=7)
    r = bh.fit(sim.formula, sim.data, method="full", chains=2, draws=400, tune=400, seed=3, warn=False)
    s = r.summary()
    corr = s.loc["cor(Intercept, x | g)"]
    assert corr["hdi_low"] < 0.6 < corr["hdi_high"] and corr["mean"] > 0.25
    # truth: the realised group effects' covariance (what the data can tell), on the realised design
    d = r.design
    eff = sim.truth["group_effects"][["Intercept", "x"]].to_numpy()
    cov = np.cov(eff, rowvar=False)[None]
    vp = variance_parts(d, np.array([[1.0, 2.0]]), np.array([1.0]), {"g": cov})
    icc = r.icc()
    assert icc.loc["icc", "hdi_low"] < vp.icc()[0] < icc.loc["icc", "hdi_high"]
    r2 = r.r2()
    assert r2.loc["r2_marginal", "hdi_low"] < vp.r2_marginal()[0] < r2.loc["r2_marginal", "hdi_high"]
    assert 0 < r2.loc["r2_bayes", "mean"] < 1
