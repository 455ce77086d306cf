"""glmer's compiled row pass and its random-effect systems against the reference formulas."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from bayes_hlm.glmer import kernels
from bayes_hlm.glmer.glmfamily import GlmFamily
from bayes_hlm.glmer.model import build_model
from bayes_hlm.glmer.pirls import GlmerDevfun
from bayes_hlm.glmer.resystem import LUSystem, SparseSystem
from bayes_hlm.spec.build import build_spec

COMBOS = [("binomial", "logit"), ("binomial", "probit"), ("binomial", "cloglog"),
          ("poisson", "log"), ("Gamma", "log"), ("Gamma", "inverse"),
          ("negative_binomial", "log")]


@pytest.mark.parametrize("fam,link", COMBOS)
def test_row_pass_matches_numpy_formulas(fam, link):
    rng = np.random.default_rng(0)
    N = 500
    f = GlmFamily(fam, link, 2.5 if fam == "negative_binomial" else None)
    if fam == "binomial":
        n = rng.integers(1, 6, N).astype(float)
        y = rng.binomial(n.astype(int), 0.4) / n
        pw = n.copy()
        eta = rng.normal(0, 1, N)
    else:
        n = np.ones(N)
        pw = rng.uniform(0.5, 2, N)
        eta = rng.normal(0.3, 0.5, N) + (2.0 if link == "inverse" else 0.0)
        mu = f.mu_eta(eta)[0]
        y = rng.gamma(2.0, mu / 2.0) if fam == "Gamma" else rng.poisson(mu).astype(float)
    mu, W, s, dr = (np.empty(N) for _ in range(4))
    sat = f.saturated_terms(y, pw)
    dsum, llvar = kernels.rows(kernels.FAMILY_CODE[fam], kernels.LINK_CODE[link],
                               float(f.nb_theta or 1.0), y, n, pw, sat, eta, mu, W, s, dr)
    m_ref, d_ref = f.mu_eta(eta)
    v = f.variance(m_ref)
    np.testing.assert_allclose(mu, m_ref, rtol=1e-12)
    np.testing.assert_allclose(W, pw * d_ref ** 2 / v, rtol=1e-10)
    np.testing.assert_allclose(s, pw * (y - m_ref) * d_ref / v, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dr, f.dev_resid(y, m_ref, pw), rtol=1e-9, atol=1e-11)
    assert dsum == pytest.approx(dr.sum())
    if fam != "Gamma":   # -aic/2 = constant + the compiled part
        aic = f.aic(y, n, m_ref, pw, dsum)
        assert -2 * (f.loglik_constant(y, n, pw) + llvar) == pytest.approx(aic, rel=1e-10)


def test_crossed_systems_agree():
    """Blocked Cholesky and SuperLU give the same PIRLS modes and Laplace criterion."""
    rng = np.random.default_rng(2)
    n = 1500
    a, b = rng.integers(0, 60, n), rng.integers(0, 90, n)
    x = rng.normal(size=n)
    eta = 0.2 + 0.5 * x + rng.normal(0, .6, 60)[a] + rng.normal(0, .4, 90)[b]
    df = pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x, "a": pd.Categorical(a),
                       "b": pd.Categorical(b)})
    spec = build_spec("y ~ x + (x | a) + (1 | b)", df, family="poisson")
    vals = []
    for cls in (SparseSystem, LUSystem):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = build_model(spec, GlmFamily("poisson", "log"))
        m.system = cls(m.layout)
        dev = GlmerDevfun(m)
        st = dev.pirls(np.array([0.7, 0.1, 0.4, 0.5]), np.array([0.2, 0.5]))
        bi = st.factor.block_inverse()
        vals.append((st.laplace, st.u.copy(), [x.copy() for x in bi]))
    assert vals[0][0] == pytest.approx(vals[1][0], rel=1e-12)
    np.testing.assert_allclose(vals[0][1], vals[1][1], atol=1e-9)
    for p, q in zip(vals[0][2], vals[1][2]):
        np.testing.assert_allclose(p, q, rtol=1e-8, atol=1e-12)
