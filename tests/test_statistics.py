"""The statistics layer (bayes_hlm.statistics): one implementation of the per-group cross-products.

* the statistics of single, nested and crossed designs equal a dense NumPy reference
  (indicator matrices, no grouping tricks) -- property-based;
* the NumPy and compiled engines of the pair-sum kernel agree;
* the REML criterion built on the shared statistics equals the values of the former
  REML-only implementation (pinned below);
* Dask partials of a partition split, merged, equal the in-memory statistics.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bayes_hlm import statistics as S
from bayes_hlm.spec.design import Design, GroupTerm

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = max(np.max(np.abs(a)) if a.size else 0.0, 1e-300)
    return float(np.max(np.abs(a - b)) / scale) if a.size else 0.0


def _dense(a) -> np.ndarray:
    return a.toarray() if hasattr(a, "toarray") else np.asarray(a, dtype=float)


def _indicator(codes, Z, G):
    """Dense n × (G q) matrix: row i holds Z[i] in the block of its level."""
    n, q = Z.shape
    M = np.zeros((n, G * q))
    for i in range(n):
        M[i, codes[i] * q:(codes[i] + 1) * q] = Z[i]
    return M


def _per_level(codes, G, U, V):
    return np.stack([U[codes == g].T @ V[codes == g] for g in range(G)])


# --------------------------------------------------------------------------- #
# random designs
# --------------------------------------------------------------------------- #
@st.composite
def designs(draw, kind):
    """A Design with ``kind`` in {"single", "nested", "crossed"}: ones and repeated columns
    (X's columns reused in Z, as formulas do), empty levels, unequal group sizes."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(1, 60))
    p = draw(st.integers(0, 3))
    X = rng.standard_normal((n, p)) * rng.choice([1e-3, 1.0, 1e3])
    if p and draw(st.booleans()):
        X[:, 0] = 1.0
    y = rng.standard_normal(n) * 5 + 100

    def zcols(q):
        cols = []
        for j in range(q):
            src = draw(st.sampled_from(["ones", "x", "new"])) if (j or p) else "new"
            if src == "ones":
                cols.append(np.ones(n))
            elif src == "x" and p:
                cols.append(X[:, draw(st.integers(0, p - 1))].copy())
            else:
                cols.append(rng.uniform(-2, 2, n))
        return np.column_stack(cols)

    def term(name, codes, G, q, split=False):
        Z = zcols(q)
        if split and q > 1:   # (x || g): one term per column, same factor
            return [GroupTerm(name, (f"z{j}",), False, codes, pd.RangeIndex(G), Z[:, [j]])
                    for j in range(q)]
        return [GroupTerm(name, tuple(f"z{j}" for j in range(q)), True, codes, pd.RangeIndex(G), Z)]

    G1 = draw(st.integers(1, 8))
    c1 = rng.integers(0, G1, n)
    groups = term("g", c1, G1, draw(st.integers(1, 3)), split=draw(st.booleans()))
    if kind == "nested":
        per = draw(st.integers(1, 3))
        G2 = G1 * per
        c2 = c1 * per + rng.integers(0, per, n)
        groups += term("g:h", c2, G2, draw(st.integers(1, 2)))
    elif kind == "crossed":
        G2 = draw(st.integers(2, 6))
        c2 = rng.integers(0, G2, n)
        groups += term("h", c2, G2, draw(st.integers(1, 2)))
        if draw(st.booleans()):
            G3 = draw(st.integers(1, 4))
            groups += term("k", rng.integers(0, G3, n), G3, 1)
    return Design(formula="", response="y", y=y, X=X, fixed_names=tuple(f"x{j}" for j in range(p)),
                  groups=tuple(groups), row_index=pd.RangeIndex(n))


def _check_globals(st_, d):
    assert st_.N == d.n
    assert _rel(st_.XtX, d.X.T @ d.X) < 1e-12
    assert _rel(st_.Xty, d.X.T @ d.y) < 1e-12
    assert abs(st_.yty - d.y @ d.y) <= 1e-12 * (d.y @ d.y)


def _block(d, blk):
    codes, Z = S.block_columns(d, blk)
    return codes, Z


def _check_block(d, blk, n, A, B, c):
    codes, Z = _block(d, blk)
    G = blk.n_levels
    assert _rel(n, np.bincount(codes, minlength=G)) == 0
    assert _rel(A, _per_level(codes, G, Z, Z)) < 1e-12
    if d.X.shape[1]:
        assert _rel(B, _per_level(codes, G, Z, d.X)) < 1e-12
    assert _rel(c, _per_level(codes, G, Z, d.y[:, None])[:, :, 0]) < 1e-12


@SETTINGS
@given(designs("single"), st.sampled_from(["numpy", "numba"]))
def test_single_equals_dense_reference(d, engine):
    st_ = S.compute_stats(d)
    assert st_.structure == "single"
    _check_globals(st_, d)
    _check_block(d, st_.block, st_.n_g, st_.A, st_.B, st_.c)
    codes, Z = _block(d, st_.block)
    f = S.block_cross(codes, st_.block.n_levels, Z, d.X, d.y, engine=engine)
    for k in ("A", "B", "c"):      # the two engines: same sums in the same order
        assert np.array_equal(f[k], getattr(st_, k))


@SETTINGS
@given(designs("nested"))
def test_nested_equals_dense_reference(d):
    st_ = S.compute_stats(d)
    assert st_.structure == "nested"
    _check_globals(st_, d)
    _check_block(d, st_.outer, st_.n_out, st_.A_out, st_.B_out, st_.c_out)
    _check_block(d, st_.inner, st_.n_in, st_.A_in, st_.B_in, st_.c_in)
    ci, Zi = _block(d, st_.inner)
    _, Zo = _block(d, st_.outer)
    assert _rel(st_.C, _per_level(ci, st_.inner.n_levels, Zi, Zo)) < 1e-12


@SETTINGS
@given(designs("crossed"), st.sampled_from([None, 7]))
def test_crossed_equals_dense_reference(d, chunk):
    st_ = S.compute_stats(d, plan=S.make_plan(d, force="crossed"), chunk_rows=chunk)
    assert st_.structure == "crossed"
    _check_globals(st_, d)
    _check_block(d, st_.block, st_.n_g, st_.A, st_.B, st_.c)
    plan = st_.plan
    Zo = np.hstack([_indicator(d.groups[k].codes, d.groups[k].Z, d.groups[k].n_levels)
                    for k in plan.other_terms])
    codes, Z = _block(d, st_.block)
    Zm = _indicator(codes, Z, st_.block.n_levels)
    assert _rel(_dense(st_.ZotZo), Zo.T @ Zo) < 1e-12
    assert _rel(_dense(st_.BZo), Zm.T @ Zo) < 1e-12
    assert _rel(st_.XtZo, d.X.T @ Zo) < 1e-12 if d.X.shape[1] else st_.XtZo.shape == (0, Zo.shape[1])
    assert _rel(st_.Zoty, Zo.T @ d.y) < 1e-12


def test_group_cross_and_sparse_blocks():
    rng = np.random.default_rng(4)
    n, G = 500, 13
    codes = rng.integers(0, G, n)
    U, V = rng.standard_normal((n, 2)), rng.standard_normal((n, 3))
    assert _rel(S.group_cross(codes, G, U, V), _per_level(codes, G, U, V)) < 1e-12
    M = S.indicator_csr(codes, U, G * 2).toarray()
    assert np.array_equal(M, _indicator(codes, U, G))
    c2 = rng.integers(0, 4, n)
    both = S.stacked_csr([(codes, U, G), (c2, V[:, :1], 4)]).toarray()
    assert np.array_equal(both, np.hstack([_indicator(codes, U, G), _indicator(c2, V[:, :1], 4)]))


def test_engine_choice_and_errors():
    codes = np.array([0, 1, 5])
    with pytest.raises(IndexError):
        S.block_cross(codes, 3, np.ones((3, 1)), engine="numpy")
    with pytest.raises(IndexError):
        S.block_cross(codes, 3, np.ones((3, 1)), engine="numba")
    with pytest.raises(ValueError, match="engine"):
        S.block_cross(codes, 9, np.ones((3, 1)), engine="fast")
    # zero rows: empty per-level sums
    f = S.block_cross(np.zeros(0, dtype=np.int64), 2, np.zeros((0, 2)), np.zeros((0, 1)), np.zeros(0))
    assert f["A"].shape == (2, 2, 2) and not f["A"].any()


# moved from tests/test_dask_stats.py (the kernel now lives in the statistics layer)
def test_fused_kernel_equals_numpy_and_checks_codes():
    from bayes_hlm.statistics import pairs as kernels

    rng = np.random.default_rng(0)
    n, u = 5000, 37
    cols = (rng.standard_normal(n), rng.uniform(-1, 1, n) + 4.0, rng.standard_normal(n))
    codes = rng.integers(0, 50, n)
    remap = rng.permutation(50) % u
    args = (cols, 0, [-1, 1, 2], [-1, 2], codes, remap, u)
    got = kernels.single_partial(*args, engine="numba")
    ref = kernels.pair_sums_numpy  # the NumPy formulation of the same pair sums
    assert ref is not None
    want = kernels.single_partial(*args, engine="numpy")
    for a, b in zip(got, want):
        assert _rel(b, a) < 1e-12
    # against the textbook formulas
    X = np.column_stack([np.ones(n), cols[1], cols[2]])
    Z = np.column_stack([np.ones(n), cols[2]])
    g = remap[codes]
    A = np.stack([Z[g == k].T @ Z[g == k] for k in range(u)])
    B = np.stack([Z[g == k].T @ X[g == k] for k in range(u)])
    assert _rel(A, got[1]) < 1e-12 and _rel(B, got[2]) < 1e-12
    assert _rel(X.T @ X, got[5]) < 1e-12
    D = X - X.mean(0)
    assert _rel(D.T @ D, got[12]) < 1e-12
    for engine in ("numba", "numpy"):
        with pytest.raises(IndexError):
            kernels.single_partial(cols, 0, [-1], [-1], codes, remap, 3, engine=engine)


# --------------------------------------------------------------------------- #
# REML criterion on the shared statistics == the former REML-only statistics
# --------------------------------------------------------------------------- #
# Deviance at θ0, 0.5 θ0 + 0.1 and |θ0 + U(-0.3, 0.3)| (rng seed 0), computed with the
# REML engine's own compute_stats/_group_cross before the statistics layer existed.
REML_OLD = {
    "sleep_ri": [1787.3989206943788, 1801.8381835975129, 1786.7528206023546],
    "sleep_rs": [1773.680330616009, 1763.5597677337598, 1764.7594149872455],
    "sleep_uncorr": [1773.680330616009, 1763.0675367744382, 1769.1103281639257],
    "sleep_3level": [1789.7966076993273, 1802.6717184361378, 1792.411809342006],
    "sleep_3level_slope": [1797.40421931092, 1808.7535402574586, 1804.5252877002092],
    "hsb_full": [47054.58082556119, 46794.851996346086, 46991.05813359275],
    "hsb_cross": [47050.99088891335, 46789.48301093608, 46986.65028481982],
    "penicillin": [365.0734139567973, 417.2765967489773, 374.90400283877176],
    "sleep_rs_ml": [1784.6422961924561, 1773.0993715828176, 1775.2267835319092],
}


@pytest.mark.parametrize("case", sorted(REML_OLD))
def test_reml_criterion_unchanged(case):
    import json
    from pathlib import Path

    import bayes_hlm as bh
    from bayes_hlm.reml.criterion import make_devfun
    from bayes_hlm.spec.build import build_design

    fix = json.loads((Path(__file__).parent / "fixtures" / "lme4_reference.json").read_text())
    c = fix["cases"][case]
    data = bh.datasets.load(c["data"])
    if c["data"] == "sleepstudy":
        data["School"] = np.repeat(["1", "2", "3"], 60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = make_devfun(build_design(c["formula"], data), reml=c["REML"])
    th0 = df.theta0
    rng = np.random.default_rng(0)
    thetas = [th0, th0 * 0.5 + 0.1, np.abs(th0 + rng.uniform(-0.3, 0.3, len(th0)))]
    for th, want in zip(thetas, REML_OLD[case]):
        assert abs(df(th) - want) <= 1e-12 * abs(want), (case, th)


# --------------------------------------------------------------------------- #
# Dask: per-partition partials, merged, equal the in-memory statistics
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("formula", ["y ~ x + (x | g)", "y ~ x + (1 | g) + (0 + x | g)",
                                     "y ~ x + (x | g) + (1 | g:sub)"])
def test_dask_partials_reduce_to_in_memory(formula):
    pytest.importorskip("dask")
    from bayes_hlm.datasets.simulate import simulate
    from bayes_hlm.distributed import compute_stats_dask
    from bayes_hlm.spec.build import build_spec

    sim = simulate(60, "lognormal", seed=5, mean_rows=8, nested=3 if "sub" in formula else None)
    df = sim.data.sample(frac=1, random_state=1).reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = S.compute_stats(build_spec(formula, df).design)
        got = compute_stats_dask(formula, df, "sync", progressbar=False, npartitions=4).stats
    assert got.structure == ref.structure
    names = ["N", "yty", "Xty", "XtX"] + (
        ["n_g", "A", "B", "c"] if ref.structure == "single" else
        ["n_in", "A_in", "B_in", "c_in", "C", "n_out", "A_out", "B_out", "c_out"])
    for k in names:
        assert _rel(getattr(ref, k), getattr(got, k)) < 1e-9, k


def test_dask_levels_follow_in_memory_order_for_arrow_strings():
    """Level order is one rule (spec/collate's R order) for object and Arrow string columns."""
    pytest.importorskip("dask")
    pytest.importorskip("pyarrow")
    from bayes_hlm.distributed import compute_stats_dask
    from bayes_hlm.spec.build import build_spec

    rng = np.random.default_rng(2)
    labels = np.array(["b", "A", "a", "Nonchilled", "chilled", "B"])
    df = pd.DataFrame({"y": rng.standard_normal(300), "x": rng.standard_normal(300),
                       "g": labels[rng.integers(0, len(labels), 300)]})
    for dtype in (object, "string[pyarrow]"):
        d = df.astype({"g": dtype})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = list(build_spec("y ~ x + (1 | g)", d).design.groups[0].levels)
            ds = compute_stats_dask("y ~ x + (1 | g)", d, "sync", progressbar=False, npartitions=3)
        assert [str(v) for v in ds.meta.factors[0].labels] == [str(v) for v in want], dtype
