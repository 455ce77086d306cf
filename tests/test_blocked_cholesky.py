"""The blocked sparse Cholesky of K = Λᵀ Zᵀ W Z Λ + I (statistics/blocked_cholesky.py) equals
dense linear algebra on random crossed and nested designs, in every way of forming the Schur
complement; the REML criterion built on it equals a dense evaluation (crossed, with slopes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bayes_hlm.statistics.blocked_cholesky import BlockedLayout, FactorColumns

MODES = ["dense", "pairs", "sparse"]


def _design(seed: int, spec: list[tuple[int, int]], n: int, nested: bool):
    """Random factors ``spec = [(levels, q), ...]``; nested: factor k+1's levels nest in factor k's."""
    rng = np.random.default_rng(seed)
    factors = []
    inner = rng.integers(0, spec[-1][0], n)
    for k, (G, q) in enumerate(spec):
        if nested:   # coarser factors are functions of the finest one: a nested hierarchy
            codes = inner * G // spec[-1][0]
        else:
            codes = rng.integers(0, G, n)
        Z = np.column_stack([np.ones(n)] + [rng.standard_normal(n) for _ in range(q - 1)])
        factors.append(FactorColumns(codes, Z, G))
    lams = []
    for _, q in spec:
        L = np.tril(rng.standard_normal((q, q)))
        L[np.diag_indices(q)] = np.abs(L[np.diag_indices(q)]) + rng.choice([0.0, 0.3])
        lams.append(L)
    w = rng.uniform(0.2, 2.0, n)
    w[rng.random(n) < 0.1] = 0.0           # IRLS weights can vanish: the pattern must not change
    V = rng.standard_normal((n, 2))
    return factors, lams, w, V


def _dense(layout: BlockedLayout, lams, w):
    """Dense ``Z Λ`` in the layout's order ``[E; R...]`` and ``K``."""
    n = len(w)
    blocks = []
    for k in (layout.E,) + layout.R:
        f = layout.factors[k]
        Zk = np.zeros((n, f.size))
        for j in range(f.q):
            Zk[np.arange(n), f.codes * f.q + j] = f.Z[:, j]
        lam_blk = np.kron(np.eye(f.n_levels), lams[k])
        blocks.append(Zk @ lam_blk)
    ZL = np.hstack(blocks)
    K = ZL.T @ (w[:, None] * ZL) + np.eye(ZL.shape[1])
    return ZL, K


def _check(factors, lams, w, V, mode, weighted=True):
    lay = BlockedLayout(factors)
    ww = w if weighted else np.ones_like(w)
    cb = lay.cross(w if weighted else None, V, mode=None if not lay.R else mode)
    fac = cb.factor(lams)
    ZL, K = _dense(lay, lams, ww)
    assert fac is not None
    sign, ld = np.linalg.slogdet(K)
    assert sign > 0
    np.testing.assert_allclose(fac.logdet, ld, rtol=1e-10, atol=1e-9)
    # the factor itself (layout order), against LAPACK on the dense K
    np.testing.assert_allclose(fac.to_dense(), np.linalg.cholesky(K), rtol=1e-9, atol=1e-10)
    # a solve with the Λᵀ Zᵀ W V right-hand side, via forward/backward and via solve()
    rhs = ZL.T @ (ww * V[:, 0])
    want = np.linalg.solve(K, rhs)
    WE, zR = fac.forward(cb.BE, cb.BR)
    uE, uR = fac.backward(WE[:, :, 0], None if zR is None else zR[:, 0])
    got = np.concatenate([uE.ravel()] + ([] if uR is None else [uR]))
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)
    nE = lay.fE.size
    uE2, uR2 = fac.solve(rhs[:nE].reshape(lay.fE.n_levels, lay.fE.q),
                         rhs[nE:] if lay.R else None)
    got2 = np.concatenate([uE2.ravel()] + ([] if uR2 is None else [uR2]))
    np.testing.assert_allclose(got2, want, rtol=1e-8, atol=1e-10)
    # diagonal blocks of K⁻¹ per factor
    Kinv = np.linalg.inv(K)
    blocks = fac.diag_inverse()
    off = 0
    for k in (lay.E,) + lay.R:
        f = lay.factors[k]
        for g in range(f.n_levels):
            sl = slice(off + g * f.q, off + (g + 1) * f.q)
            np.testing.assert_allclose(blocks[k][g], Kinv[sl, sl], rtol=1e-8, atol=1e-11)
        off += f.size
    # per-factor split of u keeps the caller's order
    parts = lay.split(uE, uR)
    assert [p.shape for p in parts] == [(f.n_levels, f.q) for f in factors]


@settings(max_examples=40)
@given(seed=st.integers(0, 2**31 - 1),
       spec=st.lists(st.tuples(st.integers(1, 9), st.integers(1, 3)), min_size=1, max_size=3),
       n=st.integers(3, 60), nested=st.booleans(), mode=st.sampled_from(MODES),
       weighted=st.booleans())
def test_blocked_equals_dense(seed, spec, n, nested, mode, weighted):
    factors, lams, w, V = _design(seed, spec, n, nested)
    _check(factors, lams, w, V, mode, weighted)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("spec", [[(30, 1), (8, 2), (3, 1)],    # scalar first factor, slopes after
                                  [(25, 2), (6, 1)],             # slopes in the first factor
                                  [(12, 1), (12, 1)]])           # a size tie
def test_crossed_with_slopes(mode, spec):
    factors, lams, w, V = _design(7, spec, 200, nested=False)
    _check(factors, lams, w, V, mode)


def test_sparse_schur_ldl():
    """Remainders above ``dense_max`` are factorised by a sparse LDLᵀ: same log-determinant."""
    pytest.importorskip("qdldl")
    factors, lams, w, V = _design(3, [(40, 1), (15, 1), (10, 2)], 150, nested=False)
    lay = BlockedLayout(factors)
    cb = lay.cross(w, V, mode="sparse", dense_max=5)
    fac = cb.factor(lams)
    assert not fac.schur_dense
    _, K = _dense(lay, lams, w)
    np.testing.assert_allclose(fac.logdet, np.linalg.slogdet(K)[1], rtol=1e-10)
    rhs = np.random.default_rng(0).standard_normal(K.shape[0])
    nE = lay.fE.size
    uE, uR = fac.solve(rhs[:nE].reshape(-1, 1), rhs[nE:])
    np.testing.assert_allclose(np.concatenate([uE.ravel(), uR]), np.linalg.solve(K, rhs), rtol=1e-8)


def test_weights_change_values_not_structure():
    """Penalised IRLS: one layout, new weight vectors; the pair structure is built once and the
    factor still equals dense linear algebra (rows with weight 0 included)."""
    factors, lams, w, V = _design(11, [(50, 1), (12, 2), (4, 1)], 300, nested=False)
    lay = BlockedLayout(factors)
    cb1 = lay.cross(w, V, mode="pairs")
    struct = lay.pair_structure()
    w2 = np.where(np.arange(len(w)) % 3 == 0, 0.0, w[::-1])
    cb2 = lay.cross(w2, V, mode="pairs")
    assert lay.pair_structure() is struct
    np.testing.assert_array_equal(cb1.A_ER.indices, cb2.A_ER.indices)
    for cb, ww in ((cb1, w), (cb2, w2)):
        fac = cb.factor(lams)
        _, K = _dense(lay, lams, ww)
        np.testing.assert_allclose(fac.logdet, np.linalg.slogdet(K)[1], rtol=1e-10)
        np.testing.assert_allclose(fac.to_dense(), np.linalg.cholesky(K), rtol=1e-9, atol=1e-10)


def test_pirls_helpers():
    """``zt`` is ``Zᵀ W v`` and ``z_mul`` is ``Z b``; one PIRLS-style solve equals dense."""
    factors, lams, w, V = _design(4, [(20, 1), (7, 2)], 120, nested=False)
    lay = BlockedLayout(factors)
    ZL, K = _dense(lay, lams, w)
    r = V[:, 0]
    BE, BR = lay.zt(r, w)
    cb = lay.cross(w)
    fac = cb.factor(lams)
    WE, zR = fac.forward(BE, BR)
    uE, uR = fac.backward(WE[:, :, 0], zR[:, 0])
    want = np.linalg.solve(K, ZL.T @ (w * r))
    np.testing.assert_allclose(np.concatenate([uE.ravel(), uR]), want, rtol=1e-8, atol=1e-10)
    u = lay.split(uE, uR)
    b = [uk @ L.T for uk, L in zip(u, lams)]
    np.testing.assert_allclose(lay.z_mul(b), ZL @ want, rtol=1e-9, atol=1e-10)


def test_bad_input():
    f = FactorColumns(np.array([0, 1, 1]), np.ones((3, 1)), 2)
    lay = BlockedLayout([f, FactorColumns(np.array([0, 0, 1]), np.ones((3, 1)), 2)])
    with pytest.raises(ValueError, match="weights"):
        lay.cross(np.array([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="mode"):
        lay.cross(mode="cholmod")
    with pytest.raises(ValueError, match="at least one"):
        BlockedLayout([])


# --------------------------------------------------------------------------- #
# the REML criterion on top of it
# --------------------------------------------------------------------------- #
def _dense_reml(X, y, ZL):
    n, p = X.shape
    K = ZL.T @ ZL + np.eye(ZL.shape[1])
    M = np.block([[K, ZL.T @ X], [X.T @ ZL, X.T @ X]])
    rhs = np.concatenate([ZL.T @ y, X.T @ y])
    sol = np.linalg.solve(M, rhs)
    r2 = y @ y - rhs @ sol
    ldK = np.linalg.slogdet(K)[1]
    S = X.T @ X - X.T @ ZL @ np.linalg.solve(K, ZL.T @ X)
    ldS = np.linalg.slogdet(S)[1]
    return ldK + ldS + (n - p) * (1 + np.log(2 * np.pi * r2 / (n - p)))


@pytest.mark.parametrize("mode", MODES)
def test_reml_criterion_crossed_slopes_equals_dense(mode):
    import pandas as pd

    from bayes_hlm.reml.criterion import DevFun, compute_stats, make_theta_map
    from bayes_hlm.spec.build import build_design
    import dataclasses

    rng = np.random.default_rng(5)
    n = 400
    d = pd.DataFrame({"s": rng.integers(0, 60, n).astype(str), "t": rng.integers(0, 9, n).astype(str),
                      "x": rng.standard_normal(n)})
    d["y"] = 1 + 0.5 * d.x + rng.standard_normal(n)
    design = build_design("y ~ x + (1 | s) + (x | t)", d)
    tmap = make_theta_map(design)
    stats = compute_stats(design, tmap)
    lay = stats.blocks.layout
    X = np.asarray(design.X, dtype=float)
    cb = lay.cross(V=np.column_stack([X, design.y]), mode=mode)
    df = DevFun(design, tmap=tmap, stats=dataclasses.replace(stats, blocks=cb))
    assert df.stats.blocks.mode == mode
    for th in ([1.0, 1.0, 0.0, 1.0], [0.3, 0.8, -0.4, 0.2], [0.5, 0.0, 0.0, 0.7]):
        th = np.array(th)
        ZL, _ = _dense(lay, tmap.lambdas(th), np.ones(n))
        assert df(th) == pytest.approx(_dense_reml(X, np.asarray(design.y, float), ZL), rel=1e-11)


# --------------------------------------------------------------------------- #
# crossed REML with slopes vs pinned lme4 1.1-31 (tests/r/make_crossed_fixtures.R)
# --------------------------------------------------------------------------- #
_FIX = Path(__file__).parent / "fixtures"
_FITS: dict = {}


def _crossed_fit(case: str, mode: str | None):
    import dataclasses
    import json
    import warnings

    import pandas as pd

    from bayes_hlm.reml.api import _blas_threads
    from bayes_hlm.reml.criterion import DevFun
    from bayes_hlm.reml.optimize import DEFAULT_CONTROL, check_convergence, optimize_theta
    from bayes_hlm.reml.result import RemlResult
    from bayes_hlm.spec.build import build_spec

    key = (case, mode)
    if key not in _FITS:
        ref = json.loads((_FIX / "lme4_crossed.json").read_text())["cases"][case]
        data = pd.read_csv(_FIX / "crossed_slopes.csv")
        with warnings.catch_warnings(), _blas_threads(1):   # as reml() runs (small BLAS calls)
            warnings.simplefilter("ignore")
            spec = build_spec(ref["formula"], data)
            df = DevFun(spec.design)
            if mode is not None:
                st = df.stats
                X = np.asarray(spec.design.X, dtype=float)
                cb = st.blocks.layout.cross(V=np.column_stack([X, spec.design.working_y]), mode=mode)
                df = DevFun(spec.design, tmap=df.tmap, stats=dataclasses.replace(st, blocks=cb))
            ctl = dict(DEFAULT_CONTROL)
            opt = optimize_theta(df, ctl)
            m = RemlResult(spec, df, opt, check_convergence(df, opt, ctl), ctl)
        _FITS[key] = (m, ref)
    return _FITS[key]


@pytest.mark.parametrize("case,mode", [("slopes_in_remainder", None), ("slopes_in_remainder", "pairs"),
                                       ("slopes_in_remainder", "sparse"), ("slopes_in_first", None),
                                       ("slopes_in_first", "pairs"), ("slopes_in_first", "sparse")])
def test_crossed_slopes_vs_lme4(case, mode):
    m, ref = _crossed_fit(case, mode)
    if mode is not None:
        assert m.devfun.stats.blocks.mode == mode
    assert m.reml_criterion < ref["reml_criterion"] + 1e-6          # at least as good as lme4
    assert abs(m.reml_criterion - ref["reml_criterion"]) < 1e-3
    assert not m.convergence_messages and m.singular == ref["singular"]
    assert abs(m.sigma - ref["sigma"]) < 1e-4 * ref["sigma"]
    fe = m.fixef()
    for name, r in ref["fixed"].items():
        row = fe.loc["Intercept" if name == "(Intercept)" else name]
        assert abs(row["estimate"] - r["estimate"]) < 1e-4 * abs(r["estimate"])
        assert abs(row["se"] - r["se"]) < 1e-4 * r["se"]
    vc = m.varcorr()
    for r in ref["varcorr"]:
        if r["grp"] == "Residual":
            continue
        a = "Intercept" if r["var1"] == "(Intercept)" else r["var1"]
        b = "" if r["var2"] is None else ("Intercept" if r["var2"] == "(Intercept)" else r["var2"])
        row = vc[(vc.group == r["grp"]) & (vc.term == a) & (vc.term_b == b)]
        if b == "":
            assert abs(row["sd"].iloc[0] - r["sdcor"]) < 1e-4 * r["sdcor"], (case, r)
        else:
            assert abs(row["corr"].iloc[0] - r["sdcor"]) < 1e-3, (case, r)
