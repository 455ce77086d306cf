"""DHARMa-style quantile residuals and population-averaged predictions (#15)."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import ndtr

import bayes_hlm as bh
from bayes_hlm.spec import variable_names as naming

TINY = dict(chains=2, draws=250, tune=250, seed=5, warn=False, progressbar=False)


def _counts(seed, overdispersed):
    rng = np.random.default_rng(seed)
    n, L = 300, 12
    g = np.repeat(np.arange(L), n // L)
    x = rng.normal(size=n)
    eta = 0.8 + 0.5 * x + rng.normal(0, 0.4, L)[g]
    mu = np.exp(eta)
    y = rng.negative_binomial(1.0, 1 / (1 + mu)) if overdispersed else rng.poisson(mu)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{k}" for k in g]})


def _fit(formula, data, family, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bh.fit(formula, data, family=family, **{**TINY, **kw})


@pytest.fixture(scope="module")
def poisson_right():
    return _fit("y ~ x + (1|g)", _counts(1, False), "poisson")


def test_quantile_residuals_are_uniform_when_the_model_is_right(poisson_right):
    r = poisson_right.residuals(kind="quantile", seed=3)
    assert r.name == "quantile" and ((r > 0) & (r < 1)).all()
    # discrete counts: the randomised PIT is continuous (no ties), and uniform
    assert r.nunique() == len(r)
    assert stats.kstest(r, "uniform").pvalue > 1e-3
    r2 = poisson_right.residuals("quantile", seed=3)  # type= spelling, same seed: same values
    np.testing.assert_array_equal(r, r2)


def test_quantile_residuals_of_a_bernoulli_fit_are_uniform():
    rng = np.random.default_rng(4)
    n = 400
    g = np.repeat(np.arange(20), 20)
    x = rng.normal(size=n)
    p = ndtr(-0.2 + 0.8 * x + rng.normal(0, 0.5, 20)[g])
    d = pd.DataFrame({"y": (rng.random(n) < p).astype(int), "x": x, "g": g.astype(str)})
    r = _fit("y ~ x + (1|g)", d, "bernoulli", link="probit").residuals(kind="quantile", seed=1)
    assert stats.kstest(r, "uniform").pvalue > 1e-3


def test_quantile_residuals_expose_overdispersion():
    r = _fit("y ~ x + (1|g)", _counts(2, True), "poisson").residuals(kind="quantile", seed=3)
    assert stats.kstest(r, "uniform").pvalue < 1e-6
    tails = ((r < 0.05) | (r > 0.95)).mean()
    assert tails > 0.2  # 10% expected: too many observations in the tails


def test_residual_kind_errors(poisson_right):
    with pytest.raises(bh.errors.BayesHLMError, match="residual kind must be one of"):
        poisson_right.residuals(kind="deviance")
    with pytest.raises(bh.errors.BayesHLMError, match="disagree"):
        poisson_right.residuals("pearson", kind="quantile")


def test_population_averaged_poisson_is_exp_eta_plus_half_variance(poisson_right):
    r = poisson_right
    new = pd.DataFrame({"x": [-1.0, 0.0, 1.5]})  # no grouping column needed
    _, pa = r.predict(new, population_averaged=True, return_draws=True)
    beta = r._draws.flat(naming.FIXED)
    sd = r._draws.flat(naming.sd_var("g"))[:, 0]
    eta = beta[:, :1] + beta[:, 1:2] * new["x"].to_numpy()[None, :]
    np.testing.assert_allclose(pa, np.exp(eta + sd[:, None] ** 2 / 2), rtol=1e-8)
    _, link = r.predict(new, population_averaged=True, kind="link", return_draws=True)
    np.testing.assert_allclose(link, eta, rtol=1e-12)
    # conditional on a zero effect is smaller (Jensen): exp(eta) < E exp(eta + b)
    zero = r.predict(new.assign(g="g0"), group_effects=False)["mean"].to_numpy()
    assert (zero < pa.mean(0)).all()


def test_population_averaged_probit_and_correlated_slope():
    rng = np.random.default_rng(6)
    n = 240
    g = np.repeat(np.arange(12), 20)
    x = rng.normal(size=n)
    p = ndtr(0.3 + 0.7 * x + rng.normal(0, 0.8, 12)[g])
    d = pd.DataFrame({"y": (rng.random(n) < p).astype(int), "x": x, "g": g.astype(str)})
    r = _fit("y ~ x + (1|g)", d, "bernoulli", link="probit", draws=100, tune=150)
    new = pd.DataFrame({"x": [-1.0, 0.5, 2.0], "g": "g1"})
    _, pa = r.predict(new, population_averaged=True, return_draws=True)
    beta = r._draws.flat(naming.FIXED)
    sd = r._draws.flat(naming.sd_var("g"))[:, 0]
    eta = beta[:, :1] + beta[:, 1:2] * new["x"].to_numpy()[None, :]
    np.testing.assert_allclose(pa, ndtr(eta / np.sqrt(1 + sd[:, None] ** 2)), atol=1e-10)
    _, yrep = r.predict(new, population_averaged=True, kind="response", return_draws=True)
    assert set(np.unique(yrep)) <= {0.0, 1.0}
    assert abs(yrep.mean() - pa.mean()) < 0.08
    with pytest.raises(bh.errors.BayesHLMError, match="leave group_effects"):
        r.predict(new, population_averaged=True, group_effects=False)


def test_population_averaged_with_a_correlated_slope_uses_z_sigma_z(poisson_right):
    d = _counts(7, False)
    r = _fit("y ~ x + (x|g)", d, "poisson", draws=100, tune=150)
    new = pd.DataFrame({"x": [-1.0, 0.0, 2.0]})
    _, pa = r.predict(new, population_averaged=True, return_draws=True)
    beta = r._draws.flat(naming.FIXED)
    cov = r._draws.covariance("g")
    Z = np.column_stack([np.ones(3), new["x"]])
    v = np.einsum("nq,sqr,nr->sn", Z, cov, Z)
    eta = beta[:, :1] + beta[:, 1:2] * new["x"].to_numpy()[None, :]
    np.testing.assert_allclose(pa, np.exp(eta + v / 2), rtol=1e-8)


@pytest.mark.parametrize("sd", [0.3, 1.5, 4.0])
def test_normal_grid_integrates_a_logit_mean(sd):
    from scipy.integrate import quad
    from scipy.special import expit

    from bayes_hlm.results.predict import normal_grid

    z, w = normal_grid(sd)
    for eta in (-2.0, 0.4, 3.0):
        exact = quad(lambda t: expit(eta + sd * t) * stats.norm.pdf(t), -np.inf, np.inf,
                     epsabs=1e-13)[0]
        assert (w * expit(eta + sd * z)).sum() == pytest.approx(exact, abs=1e-11)


def test_quantile_residual_is_the_randomised_rank_among_the_replicates(monkeypatch):
    """An observation above (below) every replicate gets a value in [S/(S+1), 1)
    ((0, 1/(S+1)]), never 1 (0): a right model puts ~1 row in S + 1 there; and the rank form
    is exactly uniform for exchangeable values even with few replicates (discrete values)."""
    from bayes_hlm.results import residuals as rs

    rng = np.random.default_rng(0)
    S, n = 9, 200_000
    # exchangeable: y and its S replicates iid from one discrete law, so the rank is uniform
    allv = rng.poisson(1.5, size=(S + 1, n)).astype(float)
    y, rep = allv[0], allv[1:]
    below, equal = (rep < y).sum(0), (rep == y).sum(0)
    u = rs.randomised_rank(below, equal, S, np.random.default_rng(1))
    assert (u > 0).all() and (u < 1).all()
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    # outside every replicate: the extreme ranks, finite on the normal scale
    top = rs.randomised_rank(np.array([S]), np.array([0]), S, rng)[0]
    low = rs.randomised_rank(np.array([0]), np.array([0]), S, rng)[0]
    assert S / (S + 1) <= top < 1 and 0 < low <= 1 / (S + 1)
    assert np.isfinite(stats.norm.ppf([top, low])).all()
    # DHARMa's (below + W equal) / S on the same values is not uniform for small S
    dh = (below + np.random.default_rng(1).uniform(size=n) * equal) / S
    assert stats.kstest(dh, "uniform").pvalue < 1e-6
