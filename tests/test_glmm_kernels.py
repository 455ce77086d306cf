"""The compiled per-row likelihood kernels of the generalized families (backends/glmm_kernels.py)
against each family's NumPy logpdf and against finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import polygamma, psi

from bayes_hlm.backends import glmm_kernels as gk
from bayes_hlm.errors import BayesHLMError
from bayes_hlm.families import get_family

CASES = [("bernoulli", "logit"), ("bernoulli", "probit"), ("bernoulli", "cloglog"),
         ("binomial", "logit"), ("binomial", "probit"), ("binomial", "cloglog"),
         ("poisson", "log"), ("negativebinomial", "log"),
         ("gamma", "log"), ("gamma", "inverse"), ("gamma", "identity")]


def _data(name, link, rng, size=200):
    """(y, n, eta, phi) valid for the family; eta spans the tails the kernels guard."""
    if name == "gamma":
        eta = rng.uniform(0.05, 3.0, size) if link != "log" else rng.normal(0, 2, size)
        return rng.gamma(2.0, 1.0, size) + 1e-3, np.ones(size), eta, 1.7
    eta = np.concatenate([rng.normal(0, 2.5, size - 8),
                          [-40.0, -25.0, -8.0, -1e-4, 1e-4, 3.0, 6.0, 30.0]])
    if name in ("poisson", "negativebinomial"):
        eta = np.clip(eta, -20, 8)
        return rng.poisson(3.0, size).astype(float), np.ones(size), eta, 2.3
    n = np.ones(size) if name == "bernoulli" else rng.integers(1, 12, size).astype(float)
    if link == "cloglog":
        eta = np.clip(eta, -30, 3.5)
    y = rng.binomial(n.astype(int), 0.4).astype(float)
    return y, n, eta, 0.0


def _family_logpdf(fam, y, n, eta, phi):
    kw = {}
    if fam.name == "binomial":
        kw["trials"] = n
    if gk.has_param(gk.kernel_code(fam)):
        kw["alpha"] = phi
    return fam.logpdf(y, eta, **kw)


def _terms(code, y, n, eta, phi):
    return np.array([gk.row_terms(code, y[i], n[i], eta[i], phi) for i in range(len(y))])


@pytest.mark.parametrize("name,link", CASES)
def test_kernel_equals_family_logpdf(name, link):
    rng = np.random.default_rng(1)
    fam = get_family(name, link)
    y, n, eta, phi = _data(name, link, rng)
    code = gk.kernel_code(fam)
    got = gk.loglik_rows(code, y, n, np.ones_like(y), eta, phi, True)
    want = _family_logpdf(fam, y, n, eta, phi)
    ok = np.isfinite(want)
    assert ok.sum() >= len(y) - 2
    np.testing.assert_allclose(got[ok], want[ok], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name,link", CASES)
def test_kernel_derivatives_match_finite_differences(name, link):
    rng = np.random.default_rng(2)
    fam = get_family(name, link)
    y, n, eta, phi = _data(name, link, rng, size=120)
    keep = np.abs(eta) < 12  # central differences lose the tail values to rounding
    y, n, eta = y[keep], n[keep], eta[keep]
    code = gk.kernel_code(fam)
    t = _terms(code, y, n, eta, phi)
    h = 1e-5
    tp, tm = _terms(code, y, n, eta + h, phi), _terms(code, y, n, eta - h, phi)
    np.testing.assert_allclose(t[:, 1], (tp[:, 0] - tm[:, 0]) / (2 * h), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(t[:, 2], (tp[:, 1] - tm[:, 1]) / (2 * h), rtol=1e-6, atol=1e-6)
    if gk.has_param(code):
        pp, pm_ = _terms(code, y, n, eta, phi + h), _terms(code, y, n, eta, phi - h)
        np.testing.assert_allclose(t[:, 3], (pp[:, 0] - pm_[:, 0]) / (2 * h), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(t[:, 4], (pp[:, 1] - pm_[:, 1]) / (2 * h), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(t[:, 5], (pp[:, 3] - pm_[:, 3]) / (2 * h), rtol=1e-6, atol=1e-6)
    else:
        assert not np.any(t[:, 3:])


def test_tails_are_finite_and_sane():
    """Extreme linear predictors: no NaN, log likelihood ≤ 0, curvature ≤ 0 (log-concave)."""
    eta = np.array([-800.0, -60.0, -37.0, -31.0, -29.0, 29.0, 37.0, 60.0, 800.0])
    for code in (0, 1, 2):
        for y in (0.0, 1.0):
            t = _terms(code, np.full(eta.size, y), np.ones(eta.size), eta, 0.0)
            finite = np.isfinite(t[:, 0])
            assert not np.isnan(t).any()
            assert (t[finite, 0] <= 1e-12).all() and (t[:, 2] <= 1e-12).all()
    # probit across the asymptotic switch at -30: continuous value and Mills ratio
    a = gk.row_terms(1, 1.0, 1.0, -30.0 + 1e-9, 0.0)
    b = gk.row_terms(1, 1.0, 1.0, -30.0 - 1e-9, 0.0)
    np.testing.assert_allclose(a[:3], b[:3], rtol=1e-8)


@given(st.floats(0.01, 200.0))
def test_digamma_trigamma(x):
    assert abs(gk.digamma(x) - psi(x)) <= 1e-12 * max(1.0, abs(psi(x)))
    assert abs(gk.trigamma(x) - polygamma(1, x)) <= 1e-11 * max(1.0, polygamma(1, x))


def test_weights_scale_and_sum_matches_rows():
    rng = np.random.default_rng(3)
    y, n, eta, phi = _data("negativebinomial", "log", rng, size=50)
    w = rng.uniform(0.5, 3.0, 50)
    d = np.empty(50)
    tot, dphi = gk.loglik_sum(4, y, n, w, eta, phi, d)
    rows = gk.loglik_rows(4, y, n, w, eta, phi, False)
    np.testing.assert_allclose(tot, rows.sum(), rtol=1e-12)
    t = _terms(4, y, n, eta, phi)
    np.testing.assert_allclose(d, w * t[:, 1], rtol=1e-12)
    np.testing.assert_allclose(dphi, (w * t[:, 3]).sum(), rtol=1e-12)
    d1, d2 = np.empty(50), np.empty(50)
    assert gk.eta_derivatives(4, y, n, w, eta, phi, d1, d2) == pytest.approx(tot)
    np.testing.assert_allclose(d2, w * t[:, 2], rtol=1e-12)


def test_uncovered_family_is_a_clear_error():
    with pytest.raises(BayesHLMError, match="no compiled likelihood for the gaussian"):
        gk.kernel_code(get_family("gaussian"))


def test_fast_exp_and_log1p_unit_within_two_ulp():
    """The libm-free exp and log1p of the gradient's hot loop (logit and Poisson rows)."""
    import numba

    xs = np.concatenate([np.linspace(-745.0, 709.0, 400_001), [0.0, -1e-300, 1e-300, 1e-8]])
    got = numba.njit(lambda a: np.array([gk.fast_exp(v) for v in a]))(xs)
    want = np.exp(xs)
    ok = want > 1e-300  # subnormals: absolute error only
    assert np.max(np.abs(got[ok] / want[ok] - 1.0)) <= 2 * np.finfo(float).eps
    assert np.max(np.abs(got[~ok] - want[~ok])) < 1e-300
    us = np.concatenate([np.linspace(0.0, 1.0, 200_001), [1e-300, 1e-17, 1e-9]])
    got = numba.njit(lambda a: np.array([gk.log1p_unit(v) for v in a]))(us)
    want = np.log1p(us)
    assert np.all(np.abs(got - want) <= 2 * np.finfo(float).eps * np.maximum(want, 1e-300))


@pytest.mark.parametrize("name", ["bernoulli", "binomial", "poisson"])
def test_vectorised_loglik_sum_equals_row_terms(name):
    """loglik_sum's libm-free logit and Poisson loops against the per-row kernel, tails incl."""
    rng = np.random.default_rng(3)
    fam = get_family(name)
    code = gk.kernel_code(fam)
    y, n, eta, phi = _data(name, fam.link.name, rng, size=3000)
    if name != "poisson":
        eta[:6] = [-800.0, 800.0, -745.5, 709.5, 0.0, -0.0]
    w = rng.uniform(0.5, 2.0, y.size)
    terms = _terms(code, y, n, eta, phi)
    d = np.empty_like(eta)
    tot, dphi = gk.loglik_sum(code, y, n, w, eta, phi, d)
    want = np.sum(w * terms[:, 0])
    assert tot == pytest.approx(want, rel=1e-13, abs=1e-10)
    np.testing.assert_allclose(d, w * terms[:, 1], rtol=1e-13, atol=1e-15)
    assert dphi == 0.0


def test_vectorised_poisson_overflows_like_exp():
    d = np.empty(2)
    tot, _ = gk.loglik_sum(3, np.ones(2), np.ones(2), np.ones(2), np.array([0.0, 710.0]), 0.0, d)
    assert tot == -np.inf and d[1] == -np.inf


def test_unit_weight_bernoulli_logit_sum_equals_the_weighted_loop():
    rng = np.random.default_rng(4)
    eta = np.r_[rng.normal(0, 3, 2000), -800.0, 800.0, 0.0, -0.0, 709.5, -745.5]
    y = (rng.random(eta.size) < 0.5).astype(float)
    d1, d2 = np.empty_like(eta), np.empty_like(eta)
    one = np.ones_like(eta)
    tot, _ = gk.loglik_sum(0, y, one, one, eta, 0.0, d1)
    assert gk.bernoulli_logit_sum(y, eta, d2) == pytest.approx(tot, rel=1e-14)
    np.testing.assert_array_equal(d1, d2)
