"""NUTS in whitened coordinates (backends/affine_density.py).

* the whitened kernel's log density equals the model's at ``x = m + C z`` (the Jacobian
  ``log |det C|`` is a constant left out), its gradient is ``Cᵀ ∇ₓ`` (and matches finite
  differences);
* draws map back exactly; the start points are the unwhitened model's;
* the whitening of a Gaussian density is exact (mode, Hessian, deviation 0: short
  trajectories); skewed, too large or saddle-point densities are told apart;
* a default Poisson random-intercept fit samples whitened and says so; with its trajectories
  capped it gives the full model's posterior (every scalar within 4 MCSEs of NUTS);
* the sufficient form's per-gradient cuts made alongside (glmm_sufficient): the τ interval's
  bounds from count_extremes's few groups equal those over every group, and the 12-term
  register Clenshaw equals the 16-term one.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

import bayes_hlm as bh
from bayes_hlm.backends import affine_density as ad
from bayes_hlm.backends import glmm_collapsed as gc
from bayes_hlm.backends import glmm_sufficient as gs
from bayes_hlm.fitting.problem import build_problem


def _poisson(G=40, n=20, sd=0.5, seed=3):
    rng = np.random.default_rng(seed)
    N = G * n
    g = np.repeat(np.arange(G), n)
    a = rng.integers(0, 4, N)
    eta = 0.3 + np.array([0.0, 0.3, -0.2, 0.4])[a] + rng.normal(0, sd, G)[g]
    return pd.DataFrame({"y": rng.poisson(np.exp(eta)), "a": pd.Categorical.from_codes(a, list("ABCD")),
                         "g": [f"g{i}" for i in g]})


def _packed(**kw):
    pr = build_problem("y ~ a + (1 | g)", _poisson(**kw), family="poisson")
    form = gs.density_form(pr.design)
    packed = form.pack(pr.design, pr.fit_priors, pr.spec.family, 3)
    mode, _ = gc.mode_and_spread(packed, n=0, logp=gs.logp_grad)
    return packed, mode


def _gaussian(mean, cov):
    P = np.linalg.inv(cov)

    def logp(x, buf, grad):
        d = x - mean
        grad[:] = -P @ d
        return -0.5 * float(d @ P @ d)

    return logp


def test_whitened_kernel_is_the_density_at_m_plus_cz():
    packed, mode = _packed()
    w = ad.whiten(gs.logp_grad, packed.buf, mode)
    assert w is not None and w.n == packed.ndim
    assert np.allclose(w.C, np.tril(w.C))  # lower triangular, as the kernel reads it
    k = ad.kernel(gs.logp_grad)
    assert ad.kernel(gs.logp_grad) is k  # one dispatcher per density
    buf = ad.pack_buffer(w, packed.buf)
    assert buf[0] == len(buf) and buf[1] == w.n
    rng = np.random.default_rng(0)
    for _ in range(5):
        z = rng.normal(size=w.n) * 1.5
        gz, gx = np.empty(w.n), np.empty(w.n)
        v = k(z, buf, gz)
        vx = gs.logp_grad(w.to_model(z), packed.buf, gx)
        # the same density (x rounded in another order); the Jacobian is a constant, left out
        assert v == pytest.approx(vx, rel=1e-13, abs=1e-11)
        assert np.allclose(gz, w.C.T @ gx, rtol=1e-12, atol=1e-10)
        # and the gradient is the whitened density's own (central differences)
        h = 1e-5
        fd = [(k(z + h * e, buf, np.empty(w.n)) - k(z - h * e, buf, np.empty(w.n))) / (2 * h)
              for e in np.eye(w.n)]
        assert np.allclose(gz, fd, rtol=1e-5, atol=1e-5)


def test_whitened_density_is_near_standard_normal_at_the_mode():
    packed, mode = _packed(G=200, n=30)
    w = ad.whiten(gs.logp_grad, packed.buf, mode)
    buf = ad.pack_buffer(w, packed.buf)
    k = ad.kernel(gs.logp_grad)
    g0 = np.empty(w.n)
    k(np.zeros(w.n), buf, g0)
    assert np.abs(g0).max() < 1e-3  # the mode
    # curvature: −∇² of the whitened density ≈ I
    H = ad.hessian(k, buf, np.zeros(w.n))
    assert np.abs(H - np.eye(w.n)).max() < 1e-4
    assert w.deviation < ad.GAUSS_TOL and w.nuts_settings() == {"maxdepth": ad.SHORT_DEPTH}


def test_draws_and_start_points_map_back():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(5, 5))
    w = ad.Whitening(m=rng.normal(size=5), C=np.linalg.cholesky(A @ A.T + 5 * np.eye(5)))
    z = rng.normal(size=(2, 7, 5))
    x = w.to_model(z)
    assert x.shape == z.shape
    assert np.allclose(x[1, 3], w.m + w.C @ z[1, 3])
    assert np.allclose(w.to_white(x), z, atol=1e-12)
    init = rng.normal(size=5)
    start = ad.initial_point(w, init)
    for seed in (0, 1):  # the unwhitened start, init + U(-1, 1), in z
        u = np.random.default_rng(seed).uniform(-1.0, 1.0, 5)
        assert np.allclose(w.to_model(start(seed)), init + u)
    assert np.allclose(w.to_model(ad.initial_point(w, init, jitter=False)(3)), init)


def test_whitening_of_a_gaussian_is_exact():
    rng = np.random.default_rng(2)
    A = rng.normal(size=(6, 6))
    cov = A @ A.T / 6 + 0.1 * np.eye(6)
    mean = rng.normal(size=6)
    w = ad.whiten(_gaussian(mean, cov), None, mean)
    assert np.allclose(w.C @ w.C.T, cov, rtol=1e-6, atol=1e-9)
    assert w.deviation < 1e-6 and w.short_trajectories()
    # more dimensions than SHORT_MAX_DIM: whitened, but the default tree depth
    big = ad.whiten(_gaussian(np.zeros(ad.SHORT_MAX_DIM + 1), np.eye(ad.SHORT_MAX_DIM + 1)), None,
                    np.zeros(ad.SHORT_MAX_DIM + 1))
    assert big is not None and big.nuts_settings() == {}


def test_skewed_saddle_and_large_densities_are_told_apart():
    def skewed(x, buf, grad):  # log-gamma-like in x[0] (an SD's log posterior with few groups)
        grad[:] = -x
        grad[0] = 2.0 - 2.0 * np.exp(x[0])
        return float(2.0 * x[0] - 2.0 * np.exp(x[0]) - 0.5 * x[1:] @ x[1:])

    w = ad.whiten(skewed, None, np.zeros(3))
    assert w is not None and w.deviation > ad.GAUSS_TOL and w.nuts_settings() == {}

    def saddle(x, buf, grad):
        grad[:] = [-x[0], x[1]]
        return float(-0.5 * x[0] ** 2 + 0.5 * x[1] ** 2)

    assert ad.whiten(saddle, None, np.zeros(2)) is None
    assert ad.whiten(_gaussian(np.zeros(ad.MAX_DIM + 1), np.eye(ad.MAX_DIM + 1)), None,
                     np.zeros(ad.MAX_DIM + 1)) is None

    def nan_density(x, buf, grad):
        grad[:] = 0.0
        return float("nan")

    assert ad.whiten(nan_density, None, np.zeros(2)) is None


@pytest.mark.parametrize("G,n,short", [(300, 10, True), (8, 30, False)])
def test_default_poisson_fit_samples_whitened(G, n, short):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = bh.fit("y ~ a + (1 | g)", _poisson(G=G, n=n), family="poisson", chains=2, draws=400,
                   tune=400, seed=5, warn=False, progressbar=False)
    x = r.info.extra
    assert x["form"] == "sufficient" and x["whitened"]
    assert (x["nuts_maxdepth"] == ad.SHORT_DEPTH) == short
    depth = r._group("sample_stats")["depth"].values
    assert depth.max() <= (ad.SHORT_DEPTH if short else 10)
    d = r.diagnostics()
    assert d["divergences"] == 0
    fixed = r.posterior["fixed"]
    assert np.all(np.isfinite(fixed.values))
    # the draws are on the model's scale (not whitened): near the simulated truth
    m, sd = fixed.mean(("chain", "draw")).values, fixed.std(("chain", "draw")).values
    assert abs(m[1] - 0.3) < 4 * sd[1] and abs(m[2] + 0.2) < 4 * sd[2]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_count_candidates_bound_like_every_group(seed):
    """The τ interval's bounds of log n_g + σ² Y_g over glmm_sufficient.count_extremes's few
    groups (stored in the buffer) are those over every group, for any σ² ≥ 0."""
    rng = np.random.default_rng(seed)
    G = 5000
    n = rng.integers(1, 40, G) if seed else np.full(G, 12)  # unbalanced, balanced
    lnn = np.log(n.astype(float))
    Y = rng.poisson(n * rng.gamma(2.0, 0.7, G)).astype(float)
    lc, yc = gs.count_extremes(lnn, Y)
    assert len(yc) < G / 10
    for s in (0.0, 1e-4, 0.01, 0.3, 1.0, 7.0, 1e3):
        assert gs._count_range(lc, yc, s) == gs._count_range(lnn, Y, s)
    assert gs.count_extremes(np.zeros(0), np.zeros(0))[0].shape == (0,)
    # the packed buffer holds them where count_candidates reads them
    packed, _ = _packed(G=50, n=8)
    lc, yc = gs.count_candidates(packed.buf)
    lnn = gs.unpack_sufficient(packed.buf, packed.p, packed.G)[-1]
    Yg = gc.unpack(packed.buf)[13]
    for s in (0.01, 0.25, 2.0):
        assert gs._count_range(lc, yc, s) == gs._count_range(lnn, Yg, s)


def test_short_clenshaw_variant_gives_the_same_bits():
    """glmm_sufficient's register Clenshaw with 12 terms equals the 16-term one on series of
    at most 12 terms (zeros beyond) up to rounding (the compiler fuses the first steps of
    each differently), and the term-by-term pass."""
    rng = np.random.default_rng(4)
    t = rng.uniform(-1.0, 1.0, 1000)
    for n in (1, 5, gs._CLEN_SHORT):
        cs = [np.zeros(gs._CLEN) for _ in range(3)]
        for c in cs:
            c[:n] = rng.normal(size=n)
        a, b = [np.empty(1000) for _ in range(3)], [np.empty(1000) for _ in range(3)]
        gs._clenshaw3_short(*cs, t, *a)
        gs._clenshaw3_block(*cs, t, *b)
        ref = np.empty(1000)
        gs._clenshaw_block(cs[0], n, t, ref, np.empty(1000))
        assert all(np.allclose(x, y, rtol=1e-14, atol=1e-14) for x, y in zip(a, b))
        assert np.allclose(a[0], ref, rtol=1e-13, atol=1e-13)


def test_capped_whitened_posterior_equals_the_full_model():
    """The short-trajectory path (whitened, tree depth capped) gives the full model's posterior:
    every scalar, each group's effect included, within 4 combined MCSEs of NUTS on the full
    model (the sufficient-form equivalence test in test_glmm_sufficient runs uncapped)."""
    from posterior_compare import all_scalars, disagreements

    df = _poisson(G=60, n=10, seed=7)
    kw = dict(chains=2, draws=1500, tune=1000, warn=False, progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        capped = bh.fit("y ~ a + (1 | g)", df, family="poisson", seed=11, **kw)
        full = bh.fit("y ~ a + (1 | g)", df, family="poisson", method="full", seed=3,
                      target_accept=0.95, sampler="nutpie", **kw)
    x = capped.info.extra
    assert x["form"] == "sufficient" and x["whitened"] and x["nuts_maxdepth"] == ad.SHORT_DEPTH
    assert len(all_scalars(full)) >= 4 + 1 + 60
    bad = disagreements(full, capped)
    assert bad.empty, f"{len(bad)} scalars disagree:\n{bad}"
