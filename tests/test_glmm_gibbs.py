"""The Metropolis-within-Gibbs GLMM engine (backends/glmm_gibbs.py) is exact MCMC on the full
model's posterior.

* its pieces leave known targets invariant: the per-group independence-MH step (one group,
  beta and Sigma fixed) against quadrature moments of the group's conditional; the fixed
  effects' conditional draw against its closed form; the slice step of an SD against
  quadrature of its conditional;
* every scalar (fixed effects, SDs, correlation, every group effect) agrees with the compiled
  NUTS engine within 4 combined MCSEs in mean and SD: Bernoulli correlated slope, binomial,
  Poisson with an offset;
* the same seed gives the same draws; the engine choice (explicit and under "auto").
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayes_hlm as bh
from bayes_hlm.backends import glmm_density as gd
from bayes_hlm.backends import glmm_gibbs as gg
from bayes_hlm.backends import glmm_gibbs_kernels as gk2
from bayes_hlm.backends.engine import choose_engine
from bayes_hlm.families import get_family
from bayes_hlm.fitting.problem import build_problem

from posterior_compare import all_scalars, disagreements


def simulate(family: str, seed: int = 0, G: int = 10, m: int = 40) -> pd.DataFrame:
    """Groups with much information (centred) and a correlated slope."""
    rng = np.random.default_rng(seed)
    n = G * m
    g = np.repeat(np.arange(G), m)
    x = rng.normal(size=n)
    b = rng.multivariate_normal([0, 0], [[0.8, 0.2], [0.2, 0.3]], G)
    eta = -0.3 + b[g, 0] + (0.6 + b[g, 1]) * x
    d = pd.DataFrame({"x": x, "g": [f"g{v}" for v in g]})
    if family == "bernoulli":
        d["y"] = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    elif family == "binomial":
        d["n"] = rng.integers(1, 6, n)
        d["y"] = rng.binomial(d["n"], 1 / (1 + np.exp(-eta)))
    else:
        d["expo"] = rng.uniform(0.5, 2.0, n)
        d["y"] = rng.poisson(d["expo"] * np.exp(eta + 0.5))
    return d


FORMULAS = {"bernoulli": "y ~ x + (x | g)", "binomial": "cbind(y, n - y) ~ x + (x | g)",
            "poisson": "y ~ x + offset(log(expo)) + (x | g)"}


def _model(family="bernoulli", formula=None, data=None):
    d = simulate(family) if data is None else data
    fam = get_family(family)
    pr = build_problem(formula or FORMULAS[family], d, method="full", family=fam)
    packed = gd.pack(pr.design, pr.fit_priors, fam, {"g": True})
    return pr, fam, packed, gg._model(pr.design, pr.fit_priors, fam, packed)


# --------------------------------------------------------------------------- #
# the pieces leave their conditionals invariant
# --------------------------------------------------------------------------- #
def _grid_moments(logp, lo, hi, k=161):
    """Mean and covariance of a 2-D density on a grid (quadrature)."""
    a = np.linspace(lo[0], hi[0], k)
    b = np.linspace(lo[1], hi[1], k)
    A, B = np.meshgrid(a, b, indexing="ij")
    pts = np.stack([A.ravel(), B.ravel()], 1)
    lp = np.array([logp(v) for v in pts])
    w = np.exp(lp - lp.max())
    w /= w.sum()
    mean = w @ pts
    cov = (pts - mean).T @ ((pts - mean) * w[:, None])
    return mean, cov


@pytest.mark.parametrize("family", ["bernoulli", "binomial", "poisson"])
def test_group_derivatives_match_finite_differences(family):
    """The Newton pieces: the rows' gradient and negative Hessian in a group's effects, and the
    fused log likelihood (every shortcut of it) against the derivative pass's value."""
    pr, fam, packed, m = _model(family)
    a, e = m.gstart[2], m.gstart[3]
    eta, d = np.empty(m.maxg), np.empty(m.maxg)
    gl, Hl = np.empty(2), np.empty((2, 2))
    v = np.array([0.3, -0.4])
    ll = gk2.group_grad_hess(m.code, m.y, m.n, m.Zc, m.off, m.N, a, e, 2, v, eta, d, gl, Hl)
    for unit in {m.unit, 0}:
        assert np.isclose(gk2.group_ll(m.code, m.y, m.n, m.Zc, m.off, m.N, a, e, 2, v, eta, unit),
                          ll, rtol=1e-12)
    h = 1e-5
    g2, H2 = np.empty(2), np.empty((2, 2))
    for i in range(2):
        dv = np.eye(2)[i] * h
        up = gk2.group_ll(m.code, m.y, m.n, m.Zc, m.off, m.N, a, e, 2, v + dv, eta, m.unit)
        dn = gk2.group_ll(m.code, m.y, m.n, m.Zc, m.off, m.N, a, e, 2, v - dv, eta, m.unit)
        assert np.isclose((up - dn) / (2 * h), gl[i], rtol=1e-6, atol=1e-6)
        gk2.group_grad_hess(m.code, m.y, m.n, m.Zc, m.off, m.N, a, e, 2, v + dv, eta, d, g2, H2)
        gp = g2.copy()
        gk2.group_grad_hess(m.code, m.y, m.n, m.Zc, m.off, m.N, a, e, 2, v - dv, eta, d, g2, H2)
        assert np.allclose(-(gp - g2) / (2 * h), Hl[i], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family,nu,newton", [("bernoulli", 0.0, 1), ("poisson", 0.0, 2),
                                              ("bernoulli", 5.0, 1), ("poisson", 6.0, 1)])
def test_independence_step_keeps_a_groups_conditional(family, nu, newton):
    """Many exact MH steps on one group (beta, Sigma fixed, Newton start deliberately off the
    mode) reproduce its conditional's mean and covariance (quadrature)."""
    pr, fam, packed, m = _model(family, data=simulate(family, seed=3, G=3, m=12))
    g, q = 1, m.q
    mu = np.array([-0.2, 0.4])
    Sigma = np.array([[0.6, 0.15], [0.15, 0.3]])
    P = np.linalg.inv(Sigma)
    a, e = m.gstart[g], m.gstart[g + 1]
    eta, d = np.empty(e - a), np.empty(e - a)

    def logp(v):
        return (gk2.group_ll(m.code, m.y, m.n, m.Zc, m.off, m.N, a, e, q, v, eta, m.unit)
                - 0.5 * (v - mu) @ P @ (v - mu))

    mean, cov = _grid_moments(logp, [-4, -4], [4, 4])
    # one group as its own model: the chain's arrays restricted to group g
    G1 = 1
    gstart = np.array([0, e - a], dtype=np.int64)
    Zc = np.concatenate([m.Zc[i * m.N + a:i * m.N + e] for i in range(q)])
    x = mean.copy()  # a state in the target's bulk (from its tail an independence chain
    # takes long to leave: the engine's warm-up restarts from the proposal for that reason)
    start = (mean + [0.25, -0.2])[None]  # off the mode: the step is exact anyway
    g0, H0, llc = np.zeros((1, q)), np.zeros((1, q, q)), np.zeros(1)
    gk2.seed(5)
    gk2.freeze(x, 0, G1, q, m.code, m.unit, m.y[a:e], m.n[a:e], Zc, m.off[a:e], e - a,
               gstart, start, g0, H0, llc, eta, d, mu, P, 0)
    S = 40000
    out = np.empty((S, q))
    acc = np.zeros(1)
    n_acc = 0
    for s in range(S):
        n_acc += gk2.effects_step(x, 0, G1, q, mu, P, m.code, m.unit, m.y[a:e], m.n[a:e],
                                  Zc, m.off[a:e], e - a, gstart, start, g0, H0, llc, newton, nu, 0,
                                  eta, d, acc)
        out[s] = x
    assert n_acc / S > 0.5
    se = np.sqrt(np.diag(cov) / S * 4)  # ESS >= S/4 at this acceptance
    assert np.all(np.abs(out.mean(0) - mean) < 4 * se), (out.mean(0), mean)
    assert np.allclose(np.cov(out.T), cov, rtol=0.06, atol=0.004)


def test_fixed_step_draws_the_gaussian_conditional():
    """Raw fixed effects given the effects and Sigma: the closed form, intercept shift included."""
    pr, fam, packed, m = _model("bernoulli")
    rng = np.random.default_rng(0)
    x = packed.init.copy()
    x[m.ex:] = rng.normal(size=m.G * m.q) + np.tile([0.3, -0.5], m.G)
    Sigma = np.array([[0.5, 0.1], [0.1, 0.2]])
    P = np.linalg.inv(Sigma)
    Lam = m.G * m.F.T @ P @ m.F + np.diag(1 / m.sd0 ** 2)
    rhs = m.F.T @ P @ x[m.ex:].reshape(m.G, m.q).sum(0) + m.mu0 / m.sd0 ** 2
    mean, cov = np.linalg.solve(Lam, rhs), np.linalg.inv(Lam)
    assert abs(m.F[0, 1]) > 0  # the intercept shift is in F (x has a nonzero mean)
    gk2.seed(3)
    S = 20000
    out = np.empty((S, m.p))
    for s in range(S):
        gk2.fixed_step(x, m.ex, m.G, m.q, m.p, m.F, P, m.mu0, m.sd0)
        out[s] = x[:m.p]
    assert np.all(np.abs(out.mean(0) - mean) < 4 * np.sqrt(np.diag(cov) / S))
    assert np.allclose(np.cov(out.T), cov, rtol=0.05)


def test_slice_step_keeps_an_sds_conditional():
    """Slice sampling of one log SD given the effects' scatter (the other coordinates fixed)
    matches quadrature of :func:`hyper_logp`, the compiled priors' density."""
    pr, fam, packed, m = _model("bernoulli", formula="y ~ 1 + (1 | g)")
    rng = np.random.default_rng(1)
    x = packed.init.copy()
    x[m.ex:] = rng.normal(0, 0.7, m.G) + x[0]
    mu = np.array([x[0]])
    S = np.zeros((1, 1))
    gk2.scatter(x, m.ex, m.G, 1, mu, S)
    L, scratch = np.zeros((1, 1)), np.zeros(m.ndim)

    def f(u):
        xx = x.copy()
        xx[m.u0] = u
        return gk2.hyper_logp(xx, m.buf, m.tb, 1, False, m.G, S, L, scratch)

    grid = np.linspace(-4, 2, 4001)
    lp = np.array([f(u) for u in grid])
    w = np.exp(lp - lp.max())
    w /= w.sum()
    mean = w @ grid
    sd = np.sqrt(w @ (grid - mean) ** 2)
    gk2.seed(2)
    n = 20000
    out = np.empty(n)
    for s in range(n):
        gk2.hyper_step(x, m.buf, m.tb, m.u0, 1, 1, False, m.G, S, L, scratch, np.array([1.0]), 1)
        out[s] = x[m.u0]
    assert abs(out.mean() - mean) < 4 * sd / np.sqrt(n / 3)
    assert abs(out.std() - sd) < 0.04 * sd


def test_reported_effects_are_m_minus_the_fixed_shift():
    """The engine's effects are ``m_g = F raw + b_g``; the reported ``r__g`` is ``m_g - F raw``
    also when a term column is constant within every level (a level-2 predictor, on which the
    compiled density would centre the intercept as well: that shift is not this engine's)."""
    rng = np.random.default_rng(0)
    G, k = 12, 15
    g = np.repeat(np.arange(G), k)
    x = rng.normal(size=G)[g]
    d = pd.DataFrame({"x": x, "y": rng.binomial(1, 1 / (1 + np.exp(-0.7 * x))),
                      "g": [f"g{v}" for v in g]})
    fam = get_family("bernoulli")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the slope's variance is not identified: warned
        pr = build_problem("y ~ x + (1 + x | g)", d, method="full", family=fam)
    assert gg.unsupported_reason(pr.design, pr.fit_priors, fam) is None
    packed = gg._pack(pr.design, pr.fit_priors, fam)
    m = gg._model(pr.design, pr.fit_priors, fam, packed)
    z = packed.init.copy()
    z[:m.p] = [0.5, 1.0]
    eff = rng.normal(size=(G, 2))
    z[m.ex:m.ex + G * 2] = eff.ravel()
    b = gd.constrained(packed, pr.fit_priors, pr.design, z[None])["factors"]["g"]["b"][0]
    assert np.allclose(b, eff - m.F @ z[:m.p])


# --------------------------------------------------------------------------- #
# the posterior equals the compiled NUTS engine's (the PyMC full model's, tested there)
# --------------------------------------------------------------------------- #
KW = dict(chains=2, draws=1500, tune=600, warn=False, progressbar=False)


@pytest.mark.parametrize("family,noncentred", [("bernoulli", False), ("binomial", False),
                                               ("poisson", False), ("bernoulli", True)])
def test_posterior_equals_the_full_model(family, noncentred, monkeypatch):
    """``noncentred``: with the optional interweaving move (off by default)."""
    monkeypatch.setattr(gg, "NONCENTRED", noncentred)
    d = simulate(family, seed=["bernoulli", "binomial", "poisson"].index(family) + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = bh.fit(FORMULAS[family], d, family=family, sampler="gibbs", seed=11, **KW)
        ref = bh.fit(FORMULAS[family], d, family=family, method="full", sampler="numba", seed=12,
                     target_accept=0.95, **KW)
    assert (ours.info.method, ours.info.sampler) == ("full", "gibbs")
    facts = ours.info.extra["gibbs"]
    assert facts["row_passes_per_sweep"] == 1 + noncentred
    assert (facts["scale_move_rate"] > 0.1) == noncentred
    po, pr = ours.tree["posterior"].to_dataset(), ref.tree["posterior"].to_dataset()
    assert sorted(po.data_vars) == sorted(pr.data_vars)
    for v in po.data_vars:
        assert po[v].dims == pr[v].dims
        for dim in po[v].dims[2:]:
            assert list(po[dim].values) == list(pr[dim].values)
    assert ours.diagnostics()["divergences"] == 0
    ss = ours.tree["sample_stats"]
    assert "diverging" not in ss and float(ss["acceptance_rate"].mean()) > 0.6
    n = len(all_scalars(ours))
    assert n >= 25
    bad = disagreements(ref, ours)
    assert bad.empty, f"{len(bad)} of {n} scalars disagree:\n{bad}"


# --------------------------------------------------------------------------- #
# seeds, results, engine choice
# --------------------------------------------------------------------------- #
def test_same_seed_same_draws_and_results_work():
    d = simulate("bernoulli", seed=4)
    kw = dict(chains=2, draws=60, tune=60, warn=False, progressbar=False, sampler="gibbs")
    a = bh.fit(FORMULAS["bernoulli"], d, family="bernoulli", seed=3, **kw)
    b = bh.fit(FORMULAS["bernoulli"], d, family="bernoulli", seed=3, **kw)
    c = bh.fit(FORMULAS["bernoulli"], d, family="bernoulli", seed=4, **kw)
    pa, pb, pc = (r.tree["posterior"]["r__g"].values for r in (a, b, c))
    assert np.array_equal(pa, pb) and not np.array_equal(pa, pc)
    assert not np.array_equal(pa[0], pa[1])  # chains differ
    import arviz as az

    assert set(a.summary().index) >= {"Intercept", "x", "sd(x | g)"}
    assert a.ranef()["g"].shape[0] == 2 * 10 or len(a.ranef()["g"]) >= 10
    az.summary(a.tree, var_names=["fixed", "sd__g"])
    assert a.info.extra["gibbs"]["row_passes_per_sweep"] >= 1
    assert a.info.extra["gibbs"]["sweeps_per_draw"] == gg.SWEEPS_PER_DRAW


def test_a_draw_is_the_last_of_its_sweeps():
    """``sweeps=k`` keeps every k-th sweep of the same chain (the others run and are dropped,
    as NUTS drops its leapfrog states): draw i of k = 2 is sweep 2i + 1 of k = 1, bit for bit,
    and its acceptance rate is the mean over its two sweeps."""
    pr, fam, packed, m = _model()
    x0 = gg._initial_points(packed, pr.design, pr.fit_priors, 1, np.random.SeedSequence(5))[0]
    one, r1, _ = gg.run_chain(m, x0, 40, 130, seed=11, sweeps=1)
    two, r2, _ = gg.run_chain(m, x0, 40, 65, seed=11, sweeps=2)
    assert one.shape == (130, m.ndim) and two.shape == (65, m.ndim)
    assert np.array_equal(two, one[1::2])
    np.testing.assert_allclose(r2, r1.reshape(-1, 2).mean(axis=1), rtol=0, atol=1e-15)
    three, _, _ = gg.run_chain(m, x0, 40, 43, seed=11, sweeps=3)
    assert np.array_equal(three, one[2:129:3])


def test_engine_choice():
    fam = get_family("bernoulli")
    d = simulate("bernoulli", G=50, m=100)
    pr = build_problem(FORMULAS["bernoulli"], d, family=fam, method="full")
    c = choose_engine(pr.design, pr.fit_priors, None, family=fam, unavailable={})
    assert (c.method, c.sampler, c.automatic) == ("full", "gibbs", True), c.reason
    # explicit
    c = choose_engine(pr.design, pr.fit_priors, None, method="full", sampler="gibbs", family=fam,
                      unavailable={})
    assert (c.sampler, c.automatic) == ("gibbs", False)
    # the user's centred= or another sampler keep NUTS
    c = choose_engine(pr.design, pr.fit_priors, None, family=fam, unavailable={}, parametrised=True)
    assert c.sampler == "numba"
    assert choose_engine(pr.design, pr.fit_priors, None, method="full", sampler="numba",
                         family=fam, unavailable={}).sampler == "numba"
    # little information per group: not centred, NUTS
    few = simulate("bernoulli", G=2000, m=3)
    pf = build_problem(FORMULAS["bernoulli"], few, family=fam, method="full")
    c = choose_engine(pf.design, pf.fit_priors, None, family=fam, unavailable={})
    assert c.sampler == "numba" and "gibbs" not in c.reason
    # small data: NUTS (the rows-per-fit rule)
    small = build_problem(FORMULAS["bernoulli"], simulate("bernoulli", G=20, m=60), family=fam,
                          method="full")
    c = choose_engine(small.design, small.fit_priors, None, family=fam, unavailable={})
    assert c.sampler == "numba"
    # not covered: a fixed column outside the term, two terms, probit; explicit refuses
    d["z"] = np.cos(np.arange(len(d)))
    for formula, family in (("y ~ x + z + (x | g)", "bernoulli"),
                            ("y ~ x + (1 | g) + (0 + x | g)", "bernoulli")):
        p2 = build_problem(formula, d, family=get_family(family), method="full")
        assert choose_engine(p2.design, p2.fit_priors, None, family=get_family(family),
                             unavailable={}).sampler == "numba"
        with pytest.raises(bh.BayesHLMError, match="sampler='gibbs' does not cover"):
            choose_engine(p2.design, p2.fit_priors, None, sampler="gibbs",
                          family=get_family(family), unavailable={})
    probit = get_family("bernoulli", "probit")
    p3 = build_problem(FORMULAS["bernoulli"], d, family=probit, method="full")
    assert "logit and Poisson log only" in gg.unsupported_reason(p3.design, p3.fit_priors, probit)
    with pytest.raises(bh.BayesHLMError, match="full model"):
        bh.fit(FORMULAS["bernoulli"], d, family="bernoulli", method="marginal", sampler="gibbs")
    with pytest.raises(bh.BayesHLMError, match="does not cover"):
        bh.fit("y ~ x + (x | g)", d.assign(y=d.x + 0.1), sampler="gibbs", method="full")


def test_a_cold_kernel_cache_is_announced(monkeypatch, capfd):
    """With nothing in Numba's cache the sampling phase's first ~30 s are compiling: its line
    says so (issue #18: no silent or mislabelled minutes)."""
    monkeypatch.setattr(gg, "numba_cache_cold", lambda *f: True)
    d = simulate("bernoulli", seed=4)
    bh.fit(FORMULAS["bernoulli"], d, family="bernoulli", seed=3, chains=2, draws=30, tune=30,
           warn=False, sampler="gibbs")
    err = capfd.readouterr().err
    assert (f"Gibbs sampling (2 chains x 30 warm-up sweeps + 30 draws of {gg.SWEEPS_PER_DRAW} "
            "sweeps), first compiling its kernels with Numba (once per machine)") in err
