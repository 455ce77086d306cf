"""The fused per-group kernel and the compiled collapsed density.

* ``group_kernel``: value against a dense per-group reference, gradients against
  central finite differences, for q = 1..4; the Op agrees with the elementwise
  PyTensor graph on the C, Numba and JAX backends (single and crossed).
* ``numba_density``: equals the PyMC marginal model's log density up to a
  constant (after the change of coordinates for LKJ terms) and its gradient
  matches finite differences; unsupported models say why; ``sampler="numba"``
  samples the same posterior as the PyMC engine.
"""

from __future__ import annotations

import numpy as np
import pytest

import bayes_hlm as bh
from bayes_hlm.backends.group_kernel import group_term_grad
from bayes_hlm.backends.marginal import build_marginal_model
from bayes_hlm.backends.numba_density import logp_grad, pack, unsupported_reason
from bayes_hlm.backends.sufficient_stats import CrossedStats, compute_stats
from bayes_hlm.spec.build import build_spec
from bayes_hlm.spec.priors import Prior, resolve_priors

from compiled_check import check_density as _check_density
from posterior_compare import correlated_block_data, correlated_block_formula


def _dense_F(e, A, L, sigma):
    s2 = sigma**2
    out = 0.0
    for g in range(e.shape[0]):
        K = s2 * np.eye(L.shape[0]) + L.T @ A[g] @ L
        v = L.T @ e[g]
        out += np.linalg.slogdet(K)[1] - v @ np.linalg.solve(K, v) / s2
    return out


@pytest.mark.parametrize("q", [1, 2, 3, 4])
def test_kernel_value_and_gradient(q):
    rng = np.random.default_rng(q)
    G = 6
    Z = rng.normal(size=(G, 5, q))
    A = np.einsum("gni,gnj->gij", Z, Z)
    A[0] = 0.0  # a group without rows for this block still counts
    e = rng.normal(size=(G, q))
    L = np.tril(rng.normal(size=(q, q)))
    sigma = 0.7
    F, gE, gL, gs = group_term_grad(e, A, L, sigma)
    assert F == pytest.approx(_dense_F(e, A, L, sigma), rel=1e-12)
    h = 1e-6
    for i in range(q):
        for j in range(q):
            d = np.zeros((q, q))
            d[i, j] = h
            num = (_dense_F(e, A, L + d, sigma) - _dense_F(e, A, L - d, sigma)) / (2 * h)
            assert gL[i, j] == pytest.approx(num, rel=1e-6, abs=1e-7)
    for g in range(G):
        for i in range(q):
            d = np.zeros_like(e)
            d[g, i] = h
            num = (_dense_F(e + d, A, L, sigma) - _dense_F(e - d, A, L, sigma)) / (2 * h)
            assert gE[g, i] == pytest.approx(num, rel=1e-6, abs=1e-7)
    num = (_dense_F(e, A, L, sigma + h) - _dense_F(e, A, L, sigma - h)) / (2 * h)
    assert gs == pytest.approx(num, rel=1e-6)


def _sim(seed=1, **kw):
    sim = bh.datasets.simulate(n_groups=15, rows_per_group=6, seed=seed, **kw)
    return sim.data if hasattr(sim, "data") else sim[0]


@pytest.mark.parametrize("formula,kw", [
    ("y ~ x + (x|g)", {}),
    ("y ~ x + (1|g) + (1|h)", dict(crossed=7)),
])
@pytest.mark.parametrize("mode", ["FAST_RUN", "NUMBA", "JAX"])
def test_fused_op_equals_graph(formula, kw, mode):
    pytensor = pytest.importorskip("pytensor")
    if mode == "JAX":
        pytest.importorskip("jax")
        from bayes_hlm.backends.group_kernel import register_jax

        register_jax()
    import pytensor.tensor as pt

    from bayes_hlm.backends.marginal_loglik import marginal_loglik_pt

    spec = build_spec(formula, _sim(**kw))
    st = compute_stats(spec.design)
    beta, sigma = pt.dvector("b"), pt.dscalar("s")
    Ls = [pt.dmatrix(f"L{k}") for k in range(len(spec.design.groups))]
    bo = [pt.dmatrix(f"o{k}") for k in st.plan.other_terms] if isinstance(st, CrossedStats) else None
    rng = np.random.default_rng(0)
    vals = [rng.normal(size=st.p), 0.8] + [np.tril(rng.normal(size=(g.q, g.q))) + 2 * np.eye(g.q)
                                           for g in spec.design.groups]
    if bo:
        vals += [rng.normal(size=(G, q)) for G, q in zip(st.plan.other_levels, st.plan.other_q)]
    res = []
    for fused in (True, False):
        out = marginal_loglik_pt(st, beta, sigma, Ls, bo, fused=fused)
        grads = pytensor.grad(out, [beta, sigma] + Ls, disconnected_inputs="ignore",
                              return_disconnected="zero")
        f = pytensor.function([beta, sigma] + Ls + (bo or []), [out] + grads, mode=mode,
                              on_unused_input="ignore")
        res.append(f(*vals))
    for a, b in zip(*res):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


CASES = [
    ("y ~ x + (x|g)", dict(corr=0.4), None),
    ("y ~ x + (1|g)", dict(slope=False), None),
    ("y ~ x + (x||g)", {}, None),
    ("y ~ 0 + x + (x|g)", {}, None),
    ("y ~ x + (x|g)", {}, {"sigma": Prior("HalfCauchy", beta=2.0),
                           "1|g": Prior("Exponential", lam=0.5),
                           "x|g": Prior("Exponential", lam=3.0),
                           "corr|g": Prior("LKJ", eta=2.5)}),
    ("y ~ x + (1|g) + (0 + x|g)", {}, {"1|g": Prior("Gamma", alpha=2.0, beta=1.0),
                                       "x|g": Prior("InverseGamma", alpha=3.0, beta=1.0),
                                       "sigma": Prior("LogNormal", mu=0.0, sigma=1.0)}),
    ("y ~ x + (x|g) + (1|h)", dict(crossed=7), None),
    ("penicillin", {}, None),
    ("insteval", {}, None),
]
REAL = {"penicillin": "diameter ~ 1 + (1|plate) + (1|sample)",
        "insteval": "y ~ service + (1|s) + (1|d) + (1|dept)"}


@pytest.mark.parametrize("formula,kw,priors", CASES)
def test_compiled_density_equals_pymc_model(formula, kw, priors):
    if formula in REAL:
        spec = build_spec(REAL[formula], bh.datasets.load(formula))
    else:
        spec = build_spec(formula, _sim(**kw))
    pk = _check_density(spec, resolve_priors(spec.design, priors))
    if formula == "insteval":  # lecturers centred on their department's effect
        assert any(st.parent >= 0 for st in pk.sampled)


@pytest.mark.parametrize("q,priors,kw", [
    (3, None, {}),
    (4, None, {}),
    (3, {"corr|g": Prior("LKJ", eta=2.5), "sigma": Prior("HalfCauchy", beta=2.0),
         "1|g": Prior("Exponential", lam=0.5), "x1|g": Prior("Exponential", lam=1.0),
         "x2|g": Prior("Exponential", lam=3.0)}, {}),
    (3, None, dict(crossed=6)),  # the q = 3 block marginalised, a crossed intercept sampled
])
def test_compiled_density_correlated_block_any_q(q, priors, kw):
    """LKJ(η) on a q > 2 block in partial-correlation coordinates = PyMC's LKJCholeskyCov."""
    extra = " + (1|h)" if kw.get("crossed") else ""
    spec = build_spec(correlated_block_formula(q, extra), correlated_block_data(q, seed=q, **kw))
    ps = resolve_priors(spec.design, priors)
    _check_density(spec, ps, points=5, seed=q)


def test_partial_correlations_give_a_correlation_matrix():
    """``cpc_corr`` (draws -> corr) and the compiled ``cpc_cholesky`` agree and give a unit
    diagonal, symmetric, positive-definite matrix; q = 2 is ρ = tanh z."""
    from bayes_hlm.backends.numba_density import cpc_cholesky, cpc_corr

    rng = np.random.default_rng(0)
    for q in (2, 3, 5):
        z = rng.normal(scale=1.5, size=(7, q * (q - 1) // 2))
        R = cpc_corr(z, q)
        for s in range(7):
            W = np.empty((q, q))
            cpc_cholesky(z[s], q, W)
            np.testing.assert_allclose(W @ W.T, R[s], atol=1e-13)
            assert np.all(np.linalg.eigvalsh(R[s]) > 0)
        np.testing.assert_allclose(R[:, np.arange(q), np.arange(q)], 1.0)
        if q == 2:
            np.testing.assert_allclose(R[:, 1, 0], np.tanh(z[:, 0]), rtol=1e-14)


def test_unsupported_models_say_why():
    # sampled crossed terms with slopes are covered since #20 (tests/test_compiled_nested.py)
    spec = build_spec("y ~ x + (1|g) + (x|h)", _sim(crossed=5))
    ps = resolve_priors(spec.design)
    assert unsupported_reason(spec.design, ps, compute_stats(spec.design)) is None
    spec = build_spec("y ~ x + (x|g)", _sim())
    ps = resolve_priors(spec.design, {"x": Prior("StudentT", nu=3.0, mu=0.0, sigma=1.0)})
    assert "'x'" in unsupported_reason(spec.design, ps, compute_stats(spec.design))
    with pytest.raises(ValueError, match="does not cover this model: prior StudentT"):
        bh.fit("y ~ x + (1|g) + (x|h)", _sim(crossed=5), sampler="numba", chains=1, draws=10,
               tune=10, seed=1, priors={"x": Prior("StudentT", nu=3.0, mu=0.0, sigma=1.0)})


def test_auto_falls_back_for_unsupported_priors():
    df = _sim()
    m = bh.fit("y ~ x + (1|g)", df, priors={"x": Prior("StudentT", nu=3.0, mu=0.0, sigma=1.0)},
               chains=1, draws=50, tune=50, seed=1)
    assert m.info.sampler in ("jax", "pymc")
    m = bh.fit("y ~ x + (1|g)", df, chains=1, draws=50, tune=50, seed=1)
    assert m.info.sampler == "numba"


def test_numba_engine_matches_pymc_engine():
    """Same posterior as PyMC's NUTS on the PyMC marginal model, within Monte Carlo error."""
    from posterior_compare import disagreements

    df = _sim(seed=4, corr=0.5)
    kw = dict(chains=4, draws=1000, tune=1000, seed=7)
    a = bh.fit("y ~ x + (x|g)", df, sampler="numba", **kw)
    b = bh.fit("y ~ x + (x|g)", df, sampler="pymc", method="marginal", **kw)
    assert a.info.sampler == "numba" and b.info.sampler == "pymc"
    bad = disagreements(a, b)
    assert bad.empty, bad


def test_effect_diagnostics_subset_for_many_groups():
    """Above 5000 effect parameters the default check covers a random 1000 levels, with
    statistics identical to those of the same levels in the full table."""
    sim = bh.datasets.simulate(n_groups=3000, rows_per_group=4, seed=2)
    df = sim.data if hasattr(sim, "data") else sim[0]
    m = bh.fit("y ~ x + (x|g)", df, chains=2, draws=200, tune=300, seed=1, warn=False)
    d = m.diagnostics()
    assert d["effects_diagnostics"]["g"].startswith("random subset of 1000 of 3000 levels")
    full = m.diagnostics(effects="all")
    assert full["effects_diagnostics"]["g"] == "all 3000 levels"
    sub = m.effects_stats_subset("g", 1000)
    ref = m.effects_stats()["g"].loc[sub.index]
    np.testing.assert_allclose(sub[["mean", "ess_bulk", "r_hat"]].values,
                               ref[["mean", "ess_bulk", "r_hat"]].values, rtol=1e-12)
    assert full["min_ess_bulk"] <= d["min_ess_bulk"]


@pytest.mark.parametrize("mode", ["FAST_RUN", "NUMBA"])
def test_degenerate_point_gives_nan_not_an_exception(mode):
    """σ = 0 with a zero covariance (a wild leapfrog step) must give a non-finite density,
    which NUTS rejects, never ZeroDivisionError from Numba's Python error model."""
    import pytensor
    import pytensor.tensor as pt

    from bayes_hlm.backends.group_kernel import GroupMarginalTerm

    e, A, L, s = pt.dmatrix("e"), pt.tensor3("A", dtype="float64"), pt.dmatrix("L"), pt.dscalar("s")
    out = GroupMarginalTerm()(e, A, L, s)[0]
    f = pytensor.function([e, A, L, s], [out] + pytensor.grad(out, [e, L, s]), mode=mode)
    val = f(np.ones((3, 1)), np.ones((3, 1, 1)), np.zeros((1, 1)), 0.0)[0]
    assert not np.isfinite(val)
    spec = build_spec("y ~ x + (1|g)", _sim(slope=False))
    pk = pack(spec.design, resolve_priors(spec.design), compute_stats(spec.design))
    x = pk.init.copy()
    x[spec.design.p] = -800.0  # σ = exp(-800) = 0
    assert not np.isfinite(logp_grad(x, pk.buf, np.zeros(pk.ndim)))
