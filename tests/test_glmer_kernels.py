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
from bayes_hlm.glmer.crossed import CrossedSystem
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
    """Blocked Cholesky, SuperLU and the compiled blocked factor (E = the largest factor, a
    slope in the remainder) give the same PIRLS modes, Laplace criterion and K⁻¹ blocks."""
    rng = np.random.default_rng(2)
    n = 1500
    a, b = rng.integers(0, 60, n), rng.integers(0, 90, n)
    x = rng.normal(size=n)
    eta = 0.2 + 0.5 * x + rng.normal(0, .6, 60)[a] + rng.normal(0, .4, 90)[b]
    df = pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x, "a": pd.Categorical(a),
                       "b": pd.Categorical(b)})
    spec = build_spec("y ~ x + (x | a) + (1 | b)", df, family="poisson")
    vals = []
    for cls in (SparseSystem, LUSystem, CrossedSystem):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = build_model(spec, GlmFamily("poisson", "log"))
        m.system = cls(m.layout)
        dev = GlmerDevfun(m)
        st = dev.pirls(np.array([0.7, 0.1, 0.4, 0.5]), np.array([0.2, 0.5]))
        bi = st.factor.block_inverse()
        vals.append((st.laplace, st.u.copy(), [x.copy() for x in bi]))
    for other in vals[1:]:
        assert vals[0][0] == pytest.approx(other[0], rel=1e-12)
        np.testing.assert_allclose(vals[0][1], other[1], atol=1e-9)
        for p, q in zip(vals[0][2], other[2]):
            np.testing.assert_allclose(p, q, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("q", [1, 2, 3])
@pytest.mark.parametrize("mode", [kernels.MODE_LME4, kernels.MODE_SCORE, kernels.MODE_JOINT])
@pytest.mark.parametrize("fam,link", [("poisson", "log"), ("binomial", "logit")])
def test_block_pass_matches_row_pass_and_numpy_sums(q, mode, fam, link):
    """The fused single-factor pass (its q = 1, 2 and general loops, ZΛ formed per row; the
    binomial/logit split pass) against the row pass and the per-level sums written in NumPy."""
    rng = np.random.default_rng(q + 10 * mode)
    N, G, p = 400, 13, 3
    codes = rng.integers(0, G, N)
    Z = np.ascontiguousarray(rng.normal(size=(N, q)))
    lam = np.tril(rng.uniform(0.2, 1.0, (q, q)))
    ZL = Z @ lam
    X = np.ascontiguousarray(np.c_[np.ones(N), rng.normal(size=(N, p - 1))])
    U, beta = rng.normal(0, 0.5, (G, q)), rng.normal(0, 0.3, p)
    off = rng.normal(0, 0.1, N)
    y = rng.poisson(1.5, N).astype(float) if fam == "poisson" else rng.integers(0, 2, N) * 1.0
    pw = rng.uniform(0.5, 2, N)
    f = GlmFamily(fam, link)
    fc, lc = kernels.FAMILY_CODE[fam], kernels.LINK_CODE[link]
    sat = np.ascontiguousarray(f.saturated_terms(y, pw))
    out = [np.empty(N) for _ in range(4)]
    K, r, C, XtWX, rb, dsum, ll = kernels.block_pass(
        fc, lc, 1.0, y, pw, sat, off, X, beta, codes, Z, lam, U, G, mode, *out)
    base = off + X @ beta
    eta = base + np.einsum("ia,ia->i", ZL, U[codes])
    mu, W, s, dr = (np.empty(N) for _ in range(4))
    dsum_ref, ll_ref = kernels.rows(fc, lc, 1.0, y, np.ones(N), pw, sat, eta, mu, W, s, dr)
    for got, ref in zip(out, (eta, mu, W, dr)):     # eta summed in another order
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-13)
    assert dsum == pytest.approx(dsum_ref, rel=1e-12) and ll == pytest.approx(ll_ref, rel=1e-12)
    K_ref = np.zeros((G, q, q)) + np.eye(q)
    np.add.at(K_ref, codes, W[:, None, None] * ZL[:, :, None] * ZL[:, None, :])
    np.testing.assert_allclose(K, K_ref, rtol=1e-12)
    c = W * (eta - base) + s if mode == kernels.MODE_LME4 else s
    r_ref = np.zeros((G, q))
    np.add.at(r_ref, codes, c[:, None] * ZL)
    np.testing.assert_allclose(r, r_ref, rtol=1e-11, atol=1e-12)
    if mode == kernels.MODE_JOINT:
        C_ref = np.zeros((G, q, p))
        np.add.at(C_ref, codes, W[:, None, None] * ZL[:, :, None] * X[:, None, :])
        np.testing.assert_allclose(C, C_ref, rtol=1e-12)
        np.testing.assert_allclose(XtWX, X.T @ (W[:, None] * X), rtol=1e-12)
        np.testing.assert_allclose(rb, X.T @ s, rtol=1e-11, atol=1e-12)
    else:
        assert C.shape == (G, q, 0) and XtWX.shape == (0, 0)
    R3 = np.stack([r, 2 * r + 1], axis=2)
    np.testing.assert_allclose(kernels.block_solve(K, R3), np.linalg.solve(K, R3),
                               rtol=1e-10, atol=1e-13)


def test_lp0_moments_give_the_start_system():
    """Stage 2's first system from the per-level moments at lp0 equals the one summed over the
    rows at the current θ (ΛᵀZᵀW₀ZΛ + I and ΛᵀZᵀ(W₀(lp0 - offset - Xβ) + s₀))."""
    rng = np.random.default_rng(5)
    n, G = 600, 20
    g, x = rng.integers(0, G, n), rng.normal(size=n)
    eta = -0.3 + 0.6 * x + rng.normal(0, .7, G)[g] + rng.normal(0, .3, G)[g] * x
    df = pd.DataFrame({"y": (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int), "x": x,
                       "g": pd.Categorical(g)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = build_model(build_spec("y ~ x + (x | g)", df, family="bernoulli"),
                        GlmFamily("binomial", "logit"))
    dev = GlmerDevfun(m)
    dev.lp0 = dev.pirls(np.array([0.8, 0.2, 0.4]), joint=True).eta.copy()
    theta, beta = np.array([0.7, -0.1, 0.3]), np.array([-0.2, 0.5])
    dev.set_theta(theta)
    A, b, C = dev._lp0_moments()
    lam, sysm = m.system.lam, m.system
    _, W0, s0, _ = dev._rows(dev.lp0)
    off = m.offset + m.X @ beta
    K_ref = kernels.block_cross(sysm.codes, sysm.ZL, W0, sysm.G)
    r_ref = kernels.group_sums(sysm.codes, sysm.ZL, W0 * (dev.lp0 - off) + s0, sysm.G)
    np.testing.assert_allclose(np.eye(2) + lam.T @ A @ lam, K_ref, rtol=1e-12)
    np.testing.assert_allclose((b - C @ beta) @ lam, r_ref, rtol=1e-10, atol=1e-12)


def test_lambda_kernels_match_numpy():
    rng = np.random.default_rng(3)
    G, q, p = 7, 3, 2
    Z, lam = rng.normal(size=(50, q)), np.tril(rng.normal(size=(q, q)))
    np.testing.assert_allclose(kernels.times_lambda(Z, lam), Z @ lam, rtol=1e-13)
    A = rng.normal(size=(G, q, q))
    b, C, beta = rng.normal(size=(G, q)), rng.normal(size=(G, q, p)), rng.normal(size=p)
    K, r = kernels.lambda_system(A, b, C, beta, lam)
    np.testing.assert_allclose(K, np.eye(q) + lam.T @ A @ lam, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(r, (b - C @ beta) @ lam, rtol=1e-12, atol=1e-14)


def test_crossed_factor_solves_and_logdet_match_dense():
    """The compiled blocked factor against dense algebra: E with a slope (q = 2), two factors
    in the remainder, some E levels touching several R columns."""
    rng = np.random.default_rng(11)
    n = 300
    a, b, c = rng.integers(0, 25, n), rng.integers(0, 7, n), rng.integers(0, 4, n)
    x = rng.normal(size=n)
    df = pd.DataFrame({"y": rng.poisson(2.0, n), "x": x, "a": pd.Categorical(a),
                       "b": pd.Categorical(b), "c": pd.Categorical(c)})
    spec = build_spec("y ~ x + (x | a) + (1 | b) + (x | c)", df, family="poisson")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = build_model(spec, GlmFamily("poisson", "log"))
    sysm = CrossedSystem(m.layout)
    theta = rng.uniform(0.2, 1.0, len(m.layout.lower))
    sysm.set_theta(theta)
    ref = LUSystem(m.layout)
    ref.set_theta(theta)
    ZL = ref.ZL.toarray()
    W = rng.uniform(0.1, 3.0, n)
    K = ZL.T @ (W[:, None] * ZL) + np.eye(sysm.Q)
    F = sysm.factor(W)
    assert F.logdet == pytest.approx(np.linalg.slogdet(K)[1], rel=1e-12)
    B = rng.normal(size=(sysm.Q, 3))
    np.testing.assert_allclose(F.solve(B), np.linalg.solve(K, B), rtol=1e-9, atol=1e-12)
    u, v = rng.normal(size=sysm.Q), rng.normal(size=n)
    np.testing.assert_allclose(sysm.zl_u(u), ZL @ u, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(sysm.zlt(v), ZL.T @ v, rtol=1e-12, atol=1e-14)
    Ki = np.linalg.inv(K)
    for f, blocks in zip(m.layout.factors, F.block_inverse()):
        for g in range(f.n_levels):
            sl = slice(f.offset + g * f.q, f.offset + (g + 1) * f.q)
            np.testing.assert_allclose(blocks[g], Ki[sl, sl], rtol=1e-9, atol=1e-12)


def test_logit_fast_rows_match_general_row_step():
    """The vectorised binomial/logit row loop (fast_exp / log1p_unit) equals the general row
    step :func:`kernels._row` to 1e-13, including |eta| > 30 (clamped) and weights x trials."""
    rng = np.random.default_rng(7)
    N = 3000
    eta = np.r_[rng.normal(0, 4, N - 8), [-800.0, -45.0, -30.5, -30.0, 30.0, 31.0, 60.0, 900.0]]
    n = rng.integers(1, 9, N).astype(float)
    y = rng.binomial(n.astype(int), 0.3) / n
    pw = n * rng.uniform(0.2, 3.0, N)
    sat = np.ascontiguousarray(GlmFamily("binomial", "logit").saturated_terms(y, pw))
    mu, W, s, dr = (np.empty(N) for _ in range(4))
    dsum, ll = kernels._logit_rows(y, pw, sat, eta, mu, W, s, dr)
    ref = np.array([kernels._row(0, 0, 1.0, y[i], pw[i], sat[i], eta[i]) for i in range(N)])
    for got, col in zip((mu, W, s, dr), ref.T):
        np.testing.assert_allclose(got, col, rtol=1e-13, atol=1e-13 * np.abs(col).max())
    assert dsum == pytest.approx(ref[:, 3].sum(), rel=1e-13)
    assert ll == pytest.approx(ref[:, 4].sum(), rel=1e-13)
    # rows() dispatches binomial/logit to the fast loop
    out = [np.empty(N) for _ in range(4)]
    assert kernels.rows(0, 0, 1.0, y, n, pw, sat, eta, *out) == (dsum, ll)
