"""The quadrature-collapsed engine of generalized models (backends/glmm_collapsed.py).

* the adaptive Gauss–Hermite sum against brute-force integration (scipy) in 1-D and 2-D;
* its gradient is the exact gradient of the quadrature sum (finite differences);
* the ratio-of-uniforms effect draws follow each group's conditional (moments by quadrature);
* the whole posterior equals the full PyMC model's within 4 combined MCSEs (Bernoulli and
  Poisson with a correlated random slope), every group effect included.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import integrate

import bayes_hlm as bh
from bayes_hlm.backends import glmm_collapsed as gc
from bayes_hlm.backends.engine import choose_engine
from bayes_hlm.backends.glmm_effect_draws import draw_effects
from bayes_hlm.backends.glmm_kernels import row_terms
from bayes_hlm.errors import BayesHLMError
from bayes_hlm.fitting.problem import build_problem

from posterior_compare import all_scalars, disagreements


def _data(family, G=20, n=12, seed=3):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(G), n)
    x = rng.normal(size=G * n)
    b = rng.multivariate_normal([0, 0], [[0.8, 0.3], [0.3, 0.4]], size=G)
    eta = (-0.3 if family == "bernoulli" else 0.5) + 0.5 * x + b[g, 0] + b[g, 1] * x
    if family == "binomial":  # 5 trials per row: successes y of n
        return pd.DataFrame({"y": rng.binomial(5, 1 / (1 + np.exp(-eta))), "n": 5, "x": x, "g": g})
    y = rng.binomial(1, 1 / (1 + np.exp(-eta))) if family == "bernoulli" else rng.poisson(np.exp(eta))
    return pd.DataFrame({"y": y, "x": x, "g": g})


def _problem(family, formula, **kw):
    pr = build_problem(formula, _data(family, **kw), family=family)
    return pr.design, pr.fit_priors, pr.spec.family


def _at(design, ps, fam, K, x):
    pk = gc.pack(design, ps, fam, K)
    _, beta, L = gc.hyper(x, pk.buf, np.empty(pk.ndim))
    per = np.empty(pk.G)
    gc.loglik_groups(beta, L, pk.buf, np.zeros(pk.p), np.zeros((pk.q, pk.q)), per)
    return pk, beta, L, per


def _group_density(design, fam, beta, L, gi, shift=0.0):
    """The integrand of group ``gi``'s marginal likelihood over standardized effects, divided
    by ``exp(shift)`` (keeps it O(1): scipy's absolute tolerances then mean something)."""
    from bayes_hlm.backends.glmm_kernels import kernel_code

    code = kernel_code(fam)
    rows = design.groups[0].codes == gi
    X = design.X[rows]
    Z = np.concatenate([g.Z for g in design.groups], axis=1)[rows]
    y = np.asarray(design.y, float)[rows]
    n = np.ones(len(y)) if design.trials is None else np.asarray(design.trials, float)[rows]
    q = Z.shape[1]

    def f(v):  # standardized effects v ~ N(0, I), b = L v
        eta = X @ beta + Z @ (L @ v)
        ll = sum(row_terms(code, a, m, e, 0.0)[0] for a, m, e in zip(y, n, eta))
        return np.exp(ll - 0.5 * v @ v - 0.5 * q * np.log(2 * np.pi) - shift)
    return f, q


@pytest.mark.parametrize("family,formula", [("bernoulli", "y ~ x + (1 | g)"),
                                            ("poisson", "y ~ x + (1 | g)"),
                                            ("binomial", "p(y, n) ~ x + (x | g)"),
                                            ("bernoulli", "y ~ x + (x | g)"),
                                            ("poisson", "y ~ x + (x | g)")])
def test_quadrature_matches_brute_force(family, formula):
    design, ps, fam = _problem(family, formula, G=4, n=25)
    x = gc.pack(design, ps, fam, 3).init + 0.1
    pk, beta, L, per = _at(design, ps, fam, 31, x)
    for gi in range(2):
        f, q = _group_density(design, fam, beta, L, gi, shift=per[gi])
        if q == 1:
            val = integrate.quad(lambda a: f(np.array([a])), -30, 30, epsabs=1e-14, epsrel=1e-12)[0]
        else:
            val = integrate.dblquad(lambda a, c: f(np.array([a, c])), -20, 20, -20, 20,
                                    epsabs=1e-13, epsrel=1e-10)[0]
        assert abs(np.log(val)) < 1e-6, (gi, np.log(val) + per[gi], per[gi])
    # fewer nodes: still close (the node chooser then picks K by doubling)
    per5 = _at(design, ps, fam, 5, x)[3]
    assert np.max(np.abs(per5 - per)) < 1e-2


@pytest.mark.parametrize("family,formula", [("bernoulli", "y ~ x + (x | g)"),
                                            ("poisson", "y ~ x + (x | g)"),
                                            ("bernoulli", "y ~ x + (x || g)"),
                                            ("binomial", "p(y, n) ~ x + (x | g)"),
                                            ("poisson", "y ~ x + (1 | g)")])
def test_gradient_is_exact(family, formula):
    design, ps, fam = _problem(family, formula, G=6, n=9)
    pk = gc.pack(design, ps, fam, 5)
    rng = np.random.default_rng(0)
    for _ in range(2):
        x0 = pk.init + rng.uniform(-0.7, 0.7, pk.ndim)
        grad = np.empty(pk.ndim)
        gc.logp_grad(x0, pk.buf, grad)
        fd = np.empty(pk.ndim)
        for i in range(pk.ndim):
            e = np.zeros(pk.ndim)
            e[i] = 1e-5
            fd[i] = (gc.logp_grad(x0 + e, pk.buf, np.empty(pk.ndim))
                     - gc.logp_grad(x0 - e, pk.buf, np.empty(pk.ndim))) / 2e-5
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6)


def test_node_count_meets_tolerance():
    design, ps, fam = _problem("bernoulli", "y ~ x + (x | g)", G=8, n=10)
    base = gc.pack(design, ps, fam, 3)
    packed, rec = gc.choose_nodes(design, ps, fam, gc.mode_and_spread(base)[1])
    assert rec["max_error_vs_doubled"] < gc.NODE_TOL and rec["K"] == packed.K >= 3
    with pytest.raises(ValueError):
        gc.gauss_hermite(4, 1)


@pytest.mark.parametrize("formula", ["y ~ x + (1 | g)", "y ~ x + (x | g)"])
def test_effect_draws_follow_the_conditional(formula):
    design, ps, fam = _problem("bernoulli", formula, G=3, n=10)
    pk = gc.pack(design, ps, fam, 5)
    x = pk.init + 0.3
    S = 20000
    b, acc = draw_effects(pk, np.tile(x, (S, 1)), 12345, np.arange(S))
    assert 0.3 < acc <= 1.0
    _, beta, L = gc.hyper(x, pk.buf, np.empty(pk.ndim))
    f, q = _group_density(design, fam, beta, L, 0)
    lim = 25
    if q == 1:
        Zc = integrate.quad(lambda a: f(np.array([a])), -lim, lim)[0]
        for k, mom in enumerate((1, 2)):
            m = integrate.quad(lambda a: (L[0, 0] * a) ** mom * f(np.array([a])), -lim, lim)[0] / Zc
            est = np.mean(b[:, 0, 0] ** mom)
            se = np.std(b[:, 0, 0] ** mom) / np.sqrt(S)
            assert abs(est - m) < 4.5 * se, (mom, est, m, se)
    else:
        Zc = integrate.dblquad(lambda a, c: f(np.array([a, c])), -lim, lim, -lim, lim, epsabs=1e-10)[0]
        for fn in (lambda bb: bb[0], lambda bb: bb[1], lambda bb: bb[0] * bb[1], lambda bb: bb[1] ** 2):
            m = integrate.dblquad(lambda a, c: fn(L @ np.array([a, c])) * f(np.array([a, c])),
                                  -lim, lim, -lim, lim, epsabs=1e-10)[0] / Zc
            vals = fn(b[:, 0, :].T)
            assert abs(vals.mean() - m) < 4.5 * vals.std() / np.sqrt(S), (vals.mean(), m)
    # deterministic: the same draw index gives the same effects in any chunk
    b2, _ = draw_effects(pk, np.tile(x, (3, 1)), 12345, np.array([7, 2, 19999]))
    np.testing.assert_array_equal(b2, b[[7, 2, 19999]])


def test_engine_choice():
    design, ps, fam = _problem("bernoulli", "y ~ x + (x | g)", G=4, n=5)
    c = choose_engine(design, ps, None, method="marginal", family=fam, unavailable={})
    assert (c.method, c.sampler) == ("marginal", "numba")
    # "auto" keeps the full model (measured faster), saying why
    c = choose_engine(design, ps, None, method="auto", family=fam, unavailable={})
    assert c.method == "full" and "quadrature" in c.reason
    # not covered: a clear error naming the reason
    with pytest.raises(BayesHLMError, match="marginal"):
        choose_engine(design, ps, None, method="marginal", sampler="pymc", family=fam, unavailable={})
    pr = build_problem("y ~ x + (x | g)", _data("bernoulli", G=4, n=5).assign(w=2.0),
                       family="bernoulli", weights="w")
    with pytest.raises(BayesHLMError, match="weights"):
        choose_engine(pr.design, pr.fit_priors, None, method="marginal", family=pr.spec.family,
                      unavailable={})
    # several factors: the one with most levels integrated out (glmm_collapsed_crossed) ...
    pr = build_problem("y ~ x + (x | g) + (1 | h)", _data("bernoulli", G=4, n=5).assign(h=lambda d: d.index % 3),
                       family="bernoulli")
    c = choose_engine(pr.design, pr.fit_priors, None, method="marginal", family=pr.spec.family,
                      unavailable={})
    assert (c.method, c.sampler) == ("marginal", "numba")
    # ... unless it has more effect columns than the quadrature covers: a clear error naming it
    df = _data("bernoulli", G=4, n=5).assign(h=lambda d: d.index % 3, z=lambda d: d.x ** 2)
    pr = build_problem("y ~ x + (x + z | g) + (1 | h)", df, family="bernoulli")
    with pytest.raises(BayesHLMError, match="integrated factor 'g'"):
        choose_engine(pr.design, pr.fit_priors, None, method="marginal", family=pr.spec.family,
                      unavailable={})


# the logit row costs ~4x the Poisson row and needs more nodes: a smaller Bernoulli case
CASES = {"bernoulli": (dict(G=12, n=14), dict(chains=2, draws=1000, tune=700)),
         "poisson": (dict(G=20, n=12), dict(chains=2, draws=1500, tune=1000))}


@pytest.mark.parametrize("family", ["bernoulli", "poisson"])
def test_posterior_equals_full_model(family):
    size, kw = CASES[family]
    df = _data(family, **size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        marg = bh.fit("y ~ x + (x | g)", df, family=family, method="marginal", seed=101,
                      warn=False, **kw)
        full = bh.fit("y ~ x + (x | g)", df, family=family, method="full", seed=1,
                      target_accept=0.95, sampler="nutpie", warn=False, **kw)
    assert marg.info.method == "marginal" and "r__g" in marg.posterior
    assert marg.info.extra["quadrature"]["max_error_vs_doubled"] < gc.NODE_TOL
    assert marg.diagnostics()["divergences"] == 0
    assert full.diagnostics()["divergences"] <= 0.001 * kw["chains"] * kw["draws"]
    n = len(all_scalars(full))
    assert n >= 5 + 2 * size["G"]  # 2 fixed, 2 SDs, 1 correlation, 2 effects per group
    bad = disagreements(full, marg)
    assert bad.empty, f"{len(bad)} of {n} scalars disagree:\n{bad}"
