"""The Poisson–lognormal table (bayes_hlm/statistics/poisson_lognormal.py).

* the table's log J is within TABLE_TOL of independent quadrature over its whole domain
  (random points, the edges τ → 0, τ = 1, ρ → 0, ρ = RHO_MAX);
* the reference itself: Gauss–Hermite agrees with a trapezoid rule on a fine grid;
* Lambert's W solve to ~1 ulp from ℓ = −700 to 10⁷;
* the per-gradient line series reproduces the table along σ² τ / RHO_MAX² exactly;
* the whole pseudo-row integral equals brute-force quadrature in the original variable.
"""

import numpy as np
import pytest
from scipy.special import lambertw

from bayes_hlm.statistics import poisson_lognormal as pl


def _table_logj(rho2, tau):
    c = pl.table()[0]
    return np.array([pl._cheb2d(c, 2 * r / pl.RHO_MAX ** 2 - 1, 2 * t - 1) * r
                     for r, t in zip(rho2, tau)])


def test_table_matches_quadrature_on_its_domain():
    rng = np.random.default_rng(3)
    r2 = rng.uniform(0, pl.RHO_MAX ** 2, 3000)
    tau = rng.uniform(0, 1, 3000)
    edges_r = np.r_[np.full(50, pl.RHO_MAX ** 2), rng.uniform(0, 1e-6, 50), rng.uniform(0, 0.09, 100)]
    edges_t = np.r_[rng.uniform(0, 1, 100), np.zeros(50), np.ones(50)]
    r2, tau = np.r_[r2, edges_r], np.r_[tau, edges_t]
    ref = pl.log_j_reference(r2, tau, nodes=241)
    assert np.max(np.abs(_table_logj(r2, tau) - ref)) < pl.TABLE_TOL


@pytest.mark.parametrize("rho", [0.02, 0.15, 0.3])
@pytest.mark.parametrize("tau", [0.0, 0.03, 0.6])
def test_reference_quadrature_agrees_with_a_trapezoid_rule(rho, tau):
    h = 0.01
    w = np.arange(-60, 60 + h / 2, h)
    r = -(1 - tau) * pl._cubic_tail(rho * w) / rho ** 2 - 0.5 * w * w
    trap = np.log(np.sum(np.exp(r - r.max())) * h / np.sqrt(2 * np.pi)) + r.max()
    gh = pl.log_j_reference(rho ** 2, tau)
    assert abs(trap - gh) < 1e-12


def test_lambert_w_to_an_ulp():
    ell = np.r_[np.linspace(-700, -29, 200), np.linspace(-29, 1.6, 3000), np.linspace(1.4, 30, 5000),
                np.geomspace(30, 1e7, 2000)]
    W = np.array([pl.lambert_w_log(x) for x in ell])
    assert (W > 0).all()
    # backward error: the defining equation to a few ulp of ℓ (W's forward error is that
    # times 1/(1 + W): the conditioning of W(e^ℓ) in ℓ)
    res = np.abs(W + np.log(W) - ell)
    assert np.all(res <= 4 * np.spacing(np.maximum(np.abs(ell), 1.0)))
    small = ell < 600
    np.testing.assert_allclose(W[small], np.real(lambertw(np.exp(ell[small]))), rtol=1e-14, atol=0)


@pytest.mark.parametrize("sig2,tlo,thi", [(0.25, 0.01, 0.2), (0.01, 0.0, 1.0), (4.0, 0.001, 0.0225),
                                          (0.09, 0.3, 0.3 + 1e-9)])
def test_line_series_reproduces_the_table(sig2, tlo, thi):
    c, cx, A, nodes = pl.table()
    out = np.empty(pl.LINE_N)
    k = pl.line_series(c, A, nodes, sig2, tlo, thi, out)
    assert 1 <= k <= pl.LINE_N
    tau = np.linspace(tlo, thi, 101)
    s = (2 * tau - tlo - thi) / (thi - tlo)
    got = np.polynomial.chebyshev.chebval(s, out[:k])
    want = [pl._cheb2d(c, 2 * sig2 * t / pl.RHO_MAX ** 2 - 1, 2 * t - 1) for t in tau]
    np.testing.assert_allclose(got, want, rtol=0, atol=5e-15)


@pytest.mark.parametrize("Y,S,sig", [(0.0, 3.0, 0.2), (7.0, 5.0, 0.8), (130.0, 110.0, 0.5),
                                     (2000.0, 2100.0, 1.5)])
def test_pseudo_row_integral_by_brute_force(Y, S, sig):
    """F̃ = log ∫ exp(Y b − S e^b) N(b | 0, σ²) db from W and the table (where it applies)."""
    ell = np.log(sig * sig * S) + sig * sig * Y
    W = pl.lambert_w_log(ell)
    tau = 1 / (1 + W)
    rho2 = sig * sig * tau
    if rho2 > pl.RHO_MAX ** 2:
        pytest.skip("outside the table (quadrature groups)")
    u = sig * sig * Y - W
    F = Y * u - W / sig ** 2 - 0.5 * u * u / sig ** 2 - 0.5 * np.log1p(W) + _table_logj([rho2], [tau])[0]
    b = np.linspace(u - 40 * sig * np.sqrt(tau), u + 40 * sig * np.sqrt(tau), 400_001)
    lp = Y * b - S * np.exp(b) - 0.5 * b * b / sig ** 2
    m = lp.max()
    brute = m + np.log(np.trapezoid(np.exp(lp - m), b) / (sig * np.sqrt(2 * np.pi)))
    assert abs(F - brute) < 1e-10


def test_vectorised_log_and_lambert_w_blocks():
    from bayes_hlm.backends.glmm_sufficient import lambert_w_block
    from bayes_hlm.statistics.fast_math import log_array

    rng = np.random.default_rng(5)
    x = np.r_[np.exp(rng.uniform(-700, 700, 5000)), 1.0, 2.0, np.sqrt(2.0), 1 - 1e-16, 1 + 1e-15,
              np.nextafter(np.sqrt(2.0), 3), 2.3e-308]
    out, tmp = np.empty_like(x), np.empty_like(x)
    log_array(x, out, tmp)
    np.testing.assert_allclose(out, np.log(x), rtol=4.5e-16, atol=4.5e-16)
    ell = np.r_[np.linspace(-700, 40, 4000), np.geomspace(40, 1e7, 1000)]
    W = np.empty_like(ell)
    lambert_w_block(ell, W, np.empty_like(ell), np.empty_like(ell))
    ref = np.array([pl.lambert_w_log(v) for v in ell])
    np.testing.assert_allclose(W, ref, rtol=2e-15, atol=0)


@pytest.mark.parametrize("lo,hi", [(1.5, 12.0), (6.9, 7.2), (11.0, 14.0), (-3.0, 2.0)])
def test_lambert_w_block_from_the_polynomial_start(lo, hi):
    """Blocks with every ℓ in [1.5, 12) take one Halley step from a polynomial start (no
    log ℓ), mixed blocks select per entry: within 2 ulp of the scalar function."""
    from bayes_hlm.backends.glmm_sufficient import lambert_w_block

    ell = np.linspace(lo, hi, 1024, endpoint=False)
    W = np.empty_like(ell)
    lambert_w_block(ell, W, np.empty_like(ell), np.empty_like(ell))
    ref = np.array([pl.lambert_w_log(v) for v in ell])
    np.testing.assert_allclose(W, ref, rtol=4.5e-16, atol=0)
