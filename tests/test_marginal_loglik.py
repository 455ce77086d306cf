"""Marginal log-likelihood and sufficient statistics vs. dense multivariate-normal references."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import scipy.linalg as sla
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import multivariate_normal

from bayes_hlm.backends.marginal_loglik import marginal_loglik, marginal_loglik_pt
from bayes_hlm.backends.sufficient_stats import (
    CrossedStats,
    NestedStats,
    compute_stats,
    make_plan,
    merge_stats,
    structure,
)
from bayes_hlm.spec.design import Design, GroupTerm

HYP = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))


# --------------------------------------------------------------------------- #
# Random designs and dense references (shared with test_conditional_draws)
# --------------------------------------------------------------------------- #
def _term(factor, codes, G, Z, names, correlated=True):
    return GroupTerm(factor, tuple(names), correlated, np.asarray(codes, np.int64),
                     pd.Index([f"{factor}{i}" for i in range(G)]), np.asarray(Z, float).reshape(len(codes), -1))


def _Z(rng, n, q):
    """Intercept plus q-1 covariates."""
    return np.column_stack([np.ones(n)] + [rng.normal(size=n) for _ in range(q - 1)])


def random_design(rng, kind, n, G, qs, p, split=False):
    """A small random design.

    kind: "single" (qs=(q,)), "nested" (qs=(q_outer, q_inner)), "crossed" (qs=(q1, q2[, q3])).
    split=True splits a q>=2 single term into (1|g) + (0+x..|g) to test merging.
    """
    X = np.column_stack([np.ones(n)] + [rng.normal(size=n) for _ in range(p - 1)])
    y = rng.normal(size=n) * 2 + X @ rng.normal(size=p)
    groups = []
    if kind == "single":
        codes = rng.integers(0, G, n)
        Z = _Z(rng, n, qs[0])
        if split and qs[0] >= 2:
            groups += [_term("g", codes, G, Z[:, :1], ["Intercept"]),
                       _term("g", codes, G, Z[:, 1:], [f"x{j}" for j in range(1, qs[0])])]
        else:
            groups.append(_term("g", codes, G, Z, ["Intercept"] + [f"x{j}" for j in range(1, qs[0])]))
    elif kind == "nested":
        Gi = G + int(rng.integers(1, 5))
        parent = rng.integers(0, G, Gi)
        ci = rng.integers(0, Gi, n)
        co = parent[ci]
        groups.append(_term("o", co, G, _Z(rng, n, qs[0]), ["Intercept"] + [f"x{j}" for j in range(1, qs[0])]))
        groups.append(_term("o:i", ci, Gi, _Z(rng, n, qs[1]), ["Intercept"] + [f"x{j}" for j in range(1, qs[1])]))
    else:
        for k, q in enumerate(qs):
            Gk = G + k  # distinct sizes so the marginalised factor is unique
            codes = rng.integers(0, Gk, n)
            codes[:2] = [0, min(1, Gk - 1)]  # first rows differ so factors are rarely nested
            groups.append(_term(f"f{k}", codes, Gk, _Z(rng, n, q), ["Intercept"] + [f"x{j}" for j in range(1, q)]))
    return Design("y ~ ...", "y", y, X, tuple(f"X{j}" for j in range(p)), tuple(groups), pd.RangeIndex(n))


def random_L(rng, q, correlated=True):
    L = np.tril(rng.normal(size=(q, q)) * 0.7) if correlated else np.zeros((q, q))
    L[np.diag_indices(q)] = rng.uniform(0.2, 1.5, q)
    return L


def dense_Z(term):
    """n × (G q) dense Z of one term, level-major columns."""
    n, q = term.Z.shape
    out = np.zeros((n, term.n_levels * q))
    for j in range(q):
        out[np.arange(n), term.codes * q + j] = term.Z[:, j]
    return out


def dense_loglik(design, beta, sigma, Ls, other=(), b_other=()):
    """``log N(y; Xβ + Σ_other Z_k b_k, σ²I + Σ_marg Z_k (I⊗Σ_k) Z_kᵀ)`` built densely."""
    mean = design.X @ beta
    cov = sigma**2 * np.eye(design.n)
    for k, t in enumerate(design.groups):
        Zk = dense_Z(t)
        if k in other:
            mean = mean + Zk @ np.asarray(b_other[list(other).index(k)]).ravel()
        else:
            cov += Zk @ sla.block_diag(*[Ls[k] @ Ls[k].T] * t.n_levels) @ Zk.T
    return multivariate_normal.logpdf(design.y, mean, cov)


def random_params(rng, design, stats):
    p = design.p
    beta = rng.normal(size=p)
    sigma = float(rng.uniform(0.3, 2.0))
    Ls = [random_L(rng, t.q, t.correlated) for t in design.groups]
    b_other = []
    if isinstance(stats, CrossedStats):
        b_other = [rng.normal(size=(design.groups[k].n_levels, design.groups[k].q)) for k in stats.other_terms]
    return beta, sigma, Ls, b_other


kinds = st.sampled_from(["single", "nested", "crossed"])


@st.composite
def designs(draw, kind=None):
    kind = draw(kinds) if kind is None else kind
    seed = draw(st.integers(0, 2**31 - 1))
    n = draw(st.integers(5, 40))
    G = draw(st.integers(1, 6))
    p = draw(st.integers(1, 3))
    if kind == "single":
        qs = (draw(st.integers(1, 3)),)
    elif kind == "nested":
        qs = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    else:
        qs = tuple(draw(st.integers(1, 2)) for _ in range(draw(st.integers(2, 3))))
    rng = np.random.default_rng(seed)
    return random_design(rng, kind, n, G, qs, p, split=draw(st.booleans())), rng


def _stats_for(design, kind):
    plan = make_plan(design, force="crossed" if kind == "crossed" else None)
    return compute_stats(design, plan=plan)


# --------------------------------------------------------------------------- #
# Structure and statistics
# --------------------------------------------------------------------------- #
def test_structure_classifier():
    rng = np.random.default_rng(0)
    assert structure(random_design(rng, "single", 30, 4, (2,), 2)) == "single"
    assert structure(random_design(rng, "nested", 30, 4, (1, 1), 2)) == "nested"
    assert structure(random_design(rng, "crossed", 200, 5, (1, 1, 1), 2)) == "crossed"
    d = random_design(rng, "single", 10, 3, (1,), 1)
    assert structure(Design("y~1", "y", d.y, d.X, ("Intercept",), (), d.row_index)) == "none"
    s = compute_stats(random_design(rng, "crossed", 200, 5, (1, 2, 1), 2))
    assert s.block.n_levels == 7 and s.other_terms == (0, 1)


def test_nested_orientation_detected():
    """Inner listed first still finds the containing factor as outer."""
    rng = np.random.default_rng(1)
    d = random_design(rng, "nested", 40, 3, (1, 2), 2)
    d2 = Design(d.formula, "y", d.y, d.X, d.fixed_names, d.groups[::-1], d.row_index)
    s = compute_stats(d2)
    assert isinstance(s, NestedStats) and s.outer.factor == "o" and s.inner.factor == "o:i"
    beta, sigma, Ls, _ = random_params(rng, d2, s)
    np.testing.assert_allclose(marginal_loglik(s, beta, sigma, Ls), dense_loglik(d2, beta, sigma, Ls), rtol=1e-10)


@pytest.mark.parametrize("kind", ["single", "nested", "crossed"])
def test_chunked_stats_equal_one_pass(kind):
    rng = np.random.default_rng(2)
    d = random_design(rng, kind, 257, 6, {"single": (3,), "nested": (2, 2), "crossed": (2, 1, 1)}[kind], 3)
    one = compute_stats(d)
    chunked = compute_stats(d, chunk_rows=50)
    assert type(one) is type(chunked)
    for name in ("yty", "Xty", "XtX", "A", "B", "c", "n_g", "A_in", "B_in", "c_in", "C", "A_out", "B_out",
                 "c_out", "XtZo", "Zoty", "ZotZo", "BZo"):
        if not hasattr(one, name):
            continue
        a, b = getattr(one, name), getattr(chunked, name)
        a, b = (a.toarray(), b.toarray()) if hasattr(a, "toarray") else (np.asarray(a), np.asarray(b))
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12 * max(1.0, np.abs(a).max()))
    assert chunked.N == one.N == 257
    # merge_stats of explicit partitions, same plan
    plan = make_plan(d)
    parts = [compute_stats(_rows(d, sl), plan=plan) for sl in (slice(0, 100), slice(100, 257))]
    np.testing.assert_allclose(merge_stats(parts).XtX, one.XtX, rtol=1e-12)


def _rows(d, sl):
    gs = tuple(GroupTerm(t.factor, t.terms, t.correlated, t.codes[sl], t.levels, t.Z[sl]) for t in d.groups)
    return Design(d.formula, d.response, d.y[sl], d.X[sl], d.fixed_names, gs, d.row_index[sl])


# --------------------------------------------------------------------------- #
# NumPy reference vs dense MVN
# --------------------------------------------------------------------------- #
@HYP
@given(designs())
def test_numpy_loglik_matches_dense(case):
    design, rng = case
    kind = "crossed" if len({t.factor for t in design.groups}) >= 3 or design.groups[0].factor == "f0" else None
    stats = _stats_for(design, kind)
    beta, sigma, Ls, b_other = random_params(rng, design, stats)
    got = marginal_loglik(stats, beta, sigma, Ls, b_other if b_other else None)
    other = stats.other_terms if isinstance(stats, CrossedStats) else ()
    want = dense_loglik(design, beta, sigma, Ls, other, b_other)
    np.testing.assert_allclose(got, want, rtol=1e-8)


def test_numpy_loglik_no_groups_and_singular_L():
    rng = np.random.default_rng(3)
    d = random_design(rng, "single", 25, 4, (2,), 2)
    s = compute_stats(d)
    beta = rng.normal(size=2)
    L = np.array([[0.8, 0.0], [0.3, 0.0]])  # rank-deficient Σ: boundary fit
    np.testing.assert_allclose(marginal_loglik(s, beta, 0.7, [L]), dense_loglik(d, beta, 0.7, [L]), rtol=1e-10)
    d0 = Design("y~x", "y", d.y, d.X, d.fixed_names, (), d.row_index)
    s0 = compute_stats(d0)
    np.testing.assert_allclose(marginal_loglik(s0, beta, 0.7), dense_loglik(d0, beta, 0.7, []), rtol=1e-12)


def test_numpy_loglik_batched_params():
    rng = np.random.default_rng(4)
    d = random_design(rng, "nested", 30, 3, (2, 1), 2)
    s = compute_stats(d)
    params = [random_params(rng, d, s) for _ in range(3)]
    got = marginal_loglik(s, np.stack([p[0] for p in params]), np.array([p[1] for p in params]),
                          [np.stack([p[2][k] for p in params]) for k in range(2)])
    want = [marginal_loglik(s, *p[:3]) for p in params]
    np.testing.assert_allclose(got, want, rtol=1e-12)


# --------------------------------------------------------------------------- #
# PyTensor graph vs NumPy reference (value and gradient)
# --------------------------------------------------------------------------- #
def _pt_function(stats, design, mode, unroll_max_q=4, dense_max=2000):
    import pytensor
    import pytensor.tensor as pt

    beta = pt.vector("beta")
    sigma = pt.scalar("sigma")
    Ls = [pt.matrix(f"L{k}") for k in range(len(design.groups))]
    bo = [pt.matrix(f"b{k}") for k in getattr(stats, "other_terms", ())]
    out = marginal_loglik_pt(stats, beta, sigma, Ls, bo or None, unroll_max_q=unroll_max_q, dense_max=dense_max)
    used = [L for k, L in enumerate(Ls) if k not in getattr(stats, "other_terms", ())]
    inputs = [beta, sigma, *used, *bo]
    f = pytensor.function(inputs, [out, *pytensor.grad(out, inputs)], mode=mode)
    return f, [k for k in range(len(design.groups)) if k not in getattr(stats, "other_terms", ())]


def _fd_grad(fun, xs, h=1e-6):
    """Central finite differences of a scalar function of a list of arrays."""
    grads = []
    for i, x in enumerate(xs):
        x = np.asarray(x, float)
        g = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            xp, xm = [np.array(v, float) for v in xs], [np.array(v, float) for v in xs]
            xp[i][idx] += h
            xm[i][idx] -= h
            g[idx] = (fun(xp) - fun(xm)) / (2 * h)
        grads.append(g)
    return grads


def _check_pt(design, stats, rng, mode, **kw):
    beta, sigma, Ls, b_other = random_params(rng, design, stats)
    f, used = _pt_function(stats, design, mode, **kw)
    args = [beta, sigma, *[Ls[k] for k in used], *b_other]
    val, *grads = f(*args)
    bo = b_other if b_other else None
    np.testing.assert_allclose(val, marginal_loglik(stats, beta, sigma, Ls, bo), rtol=1e-10)

    def ref(xs):
        Lfull = list(Ls)
        for j, k in enumerate(used):
            Lfull[k] = xs[2 + j]
        bo_ = list(xs[2 + len(used):]) or None
        return marginal_loglik(stats, xs[0], xs[1], Lfull, bo_)

    fd = _fd_grad(ref, args)
    for k, (g, gf) in enumerate(zip(grads, fd)):
        if k >= 2 and k < 2 + len(used):  # only the lower triangle of L is a parameter
            g, gf = np.tril(g), np.tril(gf)
        np.testing.assert_allclose(g, gf, rtol=1e-5, atol=1e-5 * (1 + np.abs(gf).max()))


@HYP
@given(designs())
def test_pytensor_value_and_grad_match_reference(case):
    design, rng = case
    kind = "crossed" if design.groups[0].factor == "f0" else None
    stats = _stats_for(design, kind)
    _check_pt(design, stats, rng, "FAST_COMPILE", dense_max=int(rng.integers(0, 40)))


@pytest.mark.parametrize("kind,qs", [("single", (3,)), ("nested", (2, 2))])
def test_pytensor_blockwise_path(kind, qs):
    """Batched pt.linalg path (used for q > UNROLL_MAX_Q) agrees too."""
    rng = np.random.default_rng(5)
    d = random_design(rng, kind, 40, 4, qs, 2)
    _check_pt(d, compute_stats(d), rng, "FAST_COMPILE", unroll_max_q=0)


@pytest.mark.parametrize("mode", ["FAST_RUN", "NUMBA", "JAX"])
@pytest.mark.parametrize("kind,qs", [("single", (2,)), ("nested", (2, 1)), ("crossed", (1, 2, 1))])
def test_pytensor_backends(mode, kind, qs):
    if mode == "JAX":
        pytest.importorskip("jax")
        import jax

        from bayes_hlm.backends.group_kernel import register_jax

        jax.config.update("jax_enable_x64", True)
        register_jax()
    rng = np.random.default_rng(6)
    d = random_design(rng, kind, 60, 5, qs, 2)
    s = compute_stats(d, plan=make_plan(d, force="crossed" if kind == "crossed" else None))
    _check_pt(d, s, rng, mode, dense_max=5)


def test_shared_variables_reuse_compiled_function():
    import pytensor
    import pytensor.tensor as pt

    rng = np.random.default_rng(7)
    d1 = random_design(rng, "single", 50, 5, (2,), 2)
    d2 = random_design(rng, "single", 80, 5, (2,), 2)
    s1, s2 = compute_stats(d1), compute_stats(d2)
    beta, sigma, L = pt.vector("b"), pt.scalar("s"), pt.matrix("L")
    sh = {}
    f = pytensor.function([beta, sigma, L], marginal_loglik_pt(s1, beta, sigma, [L], shared=sh))
    # N is a Python constant in the graph; same-N data reuse: swap the per-group arrays of s2 scaled to s1's N.
    b, L0 = rng.normal(size=2), random_L(rng, 2)
    np.testing.assert_allclose(f(b, 0.8, L0), marginal_loglik(s1, b, 0.8, [L0]), rtol=1e-10)
    for name in ("A", "B", "c", "Xty", "XtX"):
        sh[name].set_value(getattr(s2, name))
    sh["yty"].set_value(np.asarray(s2.yty))
    expected = marginal_loglik(s2, b, 0.8, [L0]) + 0.5 * (s2.N - s1.N) * (np.log(2 * np.pi * 0.64))
    np.testing.assert_allclose(f(b, 0.8, L0), expected, rtol=1e-10)


# --------------------------------------------------------------------------- #
# Timings (printed, not asserted)
# --------------------------------------------------------------------------- #
def test_timing_printout(capsys):
    import pytensor
    import pytensor.tensor as pt

    rng = np.random.default_rng(8)
    n, G = 1_000_000, 10_000
    d = random_design(rng, "single", n, G, (2,), 3)
    t0 = time.perf_counter()
    compute_stats(d)
    t_stats = time.perf_counter() - t0

    d2 = random_design(rng, "single", 20_000, 2_000, (2,), 3)
    s2 = compute_stats(d2)
    beta, sigma, L = pt.vector("b"), pt.scalar("s"), pt.matrix("L")
    out = marginal_loglik_pt(s2, beta, sigma, [L])
    f = pytensor.function([beta, sigma, L], [out, *pytensor.grad(out, [beta, sigma, L])], mode="FAST_RUN")
    args = (rng.normal(size=3), 0.9, random_L(rng, 2))
    f(*args)
    t0 = time.perf_counter()
    reps = 200
    for _ in range(reps):
        f(*args)
    t_eval = (time.perf_counter() - t0) / reps
    with capsys.disabled():
        print(f"\n[timing] compute_stats 1M rows / 10k groups (q=2, p=3): {t_stats:.3f} s")
        print(f"[timing] logp+grad, 2k groups (q=2, p=3), C backend: {t_eval * 1e6:.0f} µs")
