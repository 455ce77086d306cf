"""glmer's adaptive Gauss–Hermite criterion beyond lme4's one scalar term (#16): one grouping
factor with two (correlated or not) effect columns, ``nagq²`` nodes per level.

lme4 refuses nAGQ > 1 for vector terms, so the reference is an independent brute-force
integration per level (scipy's adaptive ``dblquad`` of the Bernoulli likelihood times the
bivariate normal density, on a box of ±10 conditional SDs around the mode) at fixed (θ, β).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayes_hlm as bh
from bayes_hlm.errors import BayesHLMError
from bayes_hlm.glmer import glmer
from bayes_hlm.glmer.agq import agq_deviance
from bayes_hlm.statistics.quadrature import gh_rule, tensor_rule

SLOPE = "y ~ x + (x | g)"


@pytest.fixture(scope="module")
def binary():
    """Binary response, 30 groups of 20 rows, correlated random intercept and slope."""
    rng = np.random.default_rng(7)
    G, n = 30, 20
    g = np.repeat(np.arange(G), n)
    x = rng.normal(size=G * n)
    b = rng.normal(size=(G, 2)) @ np.array([[0.9, 0.0], [0.3, 0.5]]).T
    eta = -0.3 + 0.8 * x + b[g, 0] + b[g, 1] * x
    y = (rng.random(G * n) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{k:02d}" for k in g]})


@pytest.fixture(scope="module")
def lap(binary):
    return glmer(SLOPE, binary, family="binomial")


@pytest.fixture(scope="module")
def state(lap):
    dev = lap.fit.devfun
    return dev, dev.pirls(lap.theta, lap.beta)


def test_tensor_rule_integrates_bivariate_normal_moments():
    t, lw = tensor_rule(5, 2)
    w = np.exp(lw - 0.5 * np.sum(t * t, axis=1))
    assert t.shape == (25, 2) and w.sum() == pytest.approx(1.0, abs=1e-14)
    np.testing.assert_allclose(t.T @ (w[:, None] * t), np.eye(2), atol=1e-13)
    assert (w * t[:, 0] ** 2 * t[:, 1] ** 2).sum() == pytest.approx(1.0)
    z, wz = gh_rule(5)
    np.testing.assert_allclose(tensor_rule(5, 1)[0][:, 0], z)


def test_one_node_is_the_laplace_criterion(state):
    dev, st = state
    # AGQ drops the saturated log-likelihood (0 for 0/1 data); Laplace at the same exact modes
    assert dev.saturated_loglik == 0.0
    assert agq_deviance(dev, st, 1) == pytest.approx(st.laplace, rel=1e-13)


def test_converges_as_nodes_grow(state):
    dev, st = state
    d = {K: agq_deviance(dev, st, K) for K in (1, 3, 5, 9, 15, 25)}
    assert abs(d[9] - d[15]) < 1e-6 and abs(d[15] - d[25]) < 1e-6
    # the error shrinks with K towards the limit (the 25-node value)
    errs = [abs(d[K] - d[25]) for K in (1, 3, 5, 9)]
    assert all(a > b for a, b in zip(errs, errs[1:])), errs
    assert d[1] - d[25] > 0.5          # Laplace is visibly off on these small binary groups


def test_matches_brute_force_integration_per_group(binary, lap, state):
    """At the fitted (θ, β): Σ_g log ∫ Π_i p(y_i | u) φ₂(u) du by scipy dblquad vs nagq = 25."""
    from scipy.integrate import dblquad

    dev, st = state
    lam = lap.model.layout.lambdas(lap.theta)[0]
    y, x = binary["y"].to_numpy(), binary["x"].to_numpy()
    codes = lap.model.layout.factors[0].codes
    off = lap.beta[0] + lap.beta[1] * x
    U = st.u.reshape(-1, 2)
    Kinv = np.linalg.inv(st.factor.K)
    total = 0.0
    for g in range(U.shape[0]):
        r = codes == g
        yg, xg, og = y[r], x[r], off[r]

        def logf(u1, u0):           # log Π p(y|u) + log φ₂(u)
            b = lam @ np.array([u0, u1])
            eta = og + b[0] + b[1] * xg
            return float(np.sum(yg * eta - np.logaddexp(0.0, eta))
                         - 0.5 * (u0 * u0 + u1 * u1) - np.log(2 * np.pi))

        c = logf(U[g, 1], U[g, 0])    # scale by the peak so the integral is O(1)
        s = 10 * np.sqrt(np.diag(Kinv[g]))
        val, err = dblquad(lambda u1, u0: np.exp(logf(u1, u0) - c),
                           U[g, 0] - s[0], U[g, 0] + s[0], U[g, 1] - s[1], U[g, 1] + s[1],
                           epsabs=1e-11, epsrel=1e-11)
        total += c + np.log(val)
    agq = -0.5 * agq_deviance(dev, st, 25)
    assert agq == pytest.approx(total, abs=1e-8)
    assert abs(-0.5 * st.laplace - total) > 0.1      # and Laplace is not


def test_scalar_term_is_lme4s_glmeragq():
    """q = 1: the same numbers as lme4's glmerAGQ formula (û + z_k / sqrt(K_gg))."""
    cbpp = bh.datasets.load("cbpp")
    m = glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
              family="binomial")
    dev = m.fit.devfun
    st = dev.pirls(m.theta, m.beta)
    codes = m.model.layout.factors[0].codes
    G = m.model.layout.factors[0].n_levels
    devc0 = st.u ** 2 + np.bincount(codes, weights=st.devres, minlength=G)
    sd = 1.0 / np.sqrt(st.factor.diag())
    base = st.eta - dev.system.zl_u(st.u)
    for K in (2, 5, 9, 25):
        z, w = gh_rule(K)
        mult = np.zeros(G)
        for zk, wk in zip(z, w):
            uk = st.u + zk * sd
            devc = uk ** 2 + np.bincount(codes, weights=dev._devres(base + dev.system.zl_u(uk)),
                                         minlength=G)
            mult += np.exp(-0.5 * (devc - devc0) + 0.5 * zk * zk) * wk
        want = float(devc0.sum() + st.ldL2 - 2 * np.sum(np.log(mult)))
        assert agq_deviance(dev, st, K) == pytest.approx(want, rel=1e-13, abs=1e-11)


def test_fit_with_correlated_slope_and_uncorrelated_pair(binary, lap):
    with warnings.catch_warnings():
        warnings.simplefilter("error", bh.errors.ConvergenceWarning)
        a9 = glmer(SLOPE, binary, family="binomial", nagq=9)
    assert a9.nagq == 9 and a9.converged
    # its optimum: the AGQ criterion is lower there than at the Laplace estimates
    f = a9.fit.devfun.criterion(9)
    assert a9.objective <= f(np.concatenate([lap.theta, lap.beta])) + 1e-8
    assert a9.loglik == pytest.approx(-0.5 * a9.objective)       # 0/1 data: no saturated term
    np.testing.assert_allclose(a9.beta, lap.beta, atol=0.05)
    assert "nAGQ = 9" in str(a9.summary().text)
    un = glmer("y ~ x + (x || g)", binary, family="binomial", nagq=5)
    assert len(un.theta) == 2 and np.isfinite(un.loglik)


def test_unsupported_quadrature_is_refused_naming_the_term(binary):
    df = binary.assign(z=binary["x"] ** 2, h=np.arange(len(binary)) % 7)
    with pytest.raises(BayesHLMError, match=r"at most 2 random-effect columns.*'g' 3 columns"
                       r".*nagq\^3 = 125.*nagq=1"):
        glmer("y ~ x + (x + z | g)", df, family="binomial", nagq=5)
    with pytest.raises(BayesHLMError, match=r"2 grouping factors \('g', 'h'.*nagq=1"):
        glmer("y ~ x + (1 | g) + (1 | h)", df, family="binomial", nagq=5)
    with pytest.raises(BayesHLMError, match="at most 25"):
        glmer(SLOPE, binary, family="binomial", nagq=26)
    with pytest.raises(BayesHLMError, match="nagq"):
        glmer(SLOPE, binary, family="binomial", nagq=-1)


def test_cli_nagq_with_a_correlated_slope(binary, tmp_path, capsys):
    import json

    from bayes_hlm.cli import main

    csv = tmp_path / "b.csv.gz"
    import gzip

    csv.write_bytes(gzip.compress(binary.to_csv(index=False).encode()))
    out = tmp_path / "a.json"
    rc = main(["glmer", SLOPE, str(csv), "--family", "binomial", "--nagq", "5", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    d = json.loads(out.read_text())
    assert d["nagq"] == 5 and set(d["group_corr"]["g"]) == {"Intercept,x"}
    r = glmer(SLOPE, binary, family="binomial", nagq=5)
    assert d["loglik"] == pytest.approx(r.loglik, abs=1e-6)
