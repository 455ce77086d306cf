"""Spec building at scale (spec/build.py, spec/row_keys.py): the fixed design evaluated on
the distinct rows only, the O(N) unused-category drop and factor codes, give exactly what
evaluating every row gives (same matrix, names, checks and messages)."""

import warnings

import numpy as np
import pandas as pd
import pytest

import bayes_hlm.spec.build as build
from bayes_hlm.errors import DataError
from bayes_hlm.spec.row_keys import firsts, row_key


def _frame(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    a = pd.Categorical.from_codes(rng.integers(0, 4, n), list("ABCDE"))  # E unused
    return pd.DataFrame({
        "y": rng.poisson(3, n), "a": a, "s": rng.choice(["u", "v", "w"], n),
        "x": rng.integers(0, 4, n).astype(float), "k": rng.integers(0, 3, n),
        "z": rng.normal(size=n), "g": rng.integers(0, 40, n).astype(str),
        "h": pd.Categorical.from_codes(rng.integers(0, 5, n), list("pqrst"))})


def _both(formula, df, **kw):
    fast = build.build_spec(formula, df, **kw)
    orig = build._distinct_fixed_rows
    build._distinct_fixed_rows = lambda *a: None
    try:
        slow = build.build_spec(formula, df, **kw)
    finally:
        build._distinct_fixed_rows = orig
    return fast, slow


@pytest.mark.parametrize("formula", [
    "y ~ a + s + (1 | g)", "y ~ a * s + x + (1 | g)", "y ~ 0 + a + x + (1 | g)",
    "y ~ a:s + k + (x | g)", "y ~ a + s + a:s + (1 | g) + (1 | h)", "y ~ z + a + (1 | g)",
    "y ~ scale(x) + a + (1 | g)", "y ~ 1 + (1 | g:h)"])
def test_distinct_rows_give_the_same_design(formula):
    df = _frame()
    df.loc[[3, 70], "a"] = np.nan  # dropped rows (warning), categories kept
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast, slow = _both(formula, df, family="poisson")
    d1, d2 = fast.design, slow.design
    np.testing.assert_array_equal(d1.X, d2.X)
    np.testing.assert_array_equal(d1.y, d2.y)
    assert d1.fixed_names == d2.fixed_names and d1.info == d2.info
    assert list(d1.row_index) == list(d2.row_index)
    for g1, g2 in zip(d1.groups, d2.groups):
        np.testing.assert_array_equal(g1.codes, g2.codes)
        assert list(g1.levels) == list(g2.levels)
    # prediction rebuilds the same rows from new data
    new = df.dropna().iloc[:50]
    np.testing.assert_array_equal(fast.fixed_matrix(new), slow.fixed_matrix(new))


def test_distinct_rows_used_only_where_the_matrix_is_row_wise():
    df = _frame()
    sub = df.assign(s=pd.Categorical(df.s))  # as _prepare leaves it
    parsed = build.parse_formula("y ~ a + s + (1 | g)")
    assert build._distinct_fixed_rows(parsed, sub) is not None
    for f in ["y ~ scale(x) + (1 | g)", "y ~ z + (1 | g)", "np.log(y + 1) ~ a + (1 | g)"]:
        assert build._distinct_fixed_rows(build.parse_formula(f), sub) is None, f


def test_aliased_and_nonfinite_checks_unchanged():
    df = _frame().assign(x2=lambda d: 2 * d.x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast, slow = _both("y ~ x + x2 + a + (1 | g)", df)
    assert fast.design.info["dropped_fixed"] == slow.design.info["dropped_fixed"] == ["x2"]
    bad = _frame().assign(x=lambda d: d.x.where(d.index % 7 != 0, np.inf))
    msgs = []
    for use in (True, False):
        orig = build._distinct_fixed_rows
        if not use:
            build._distinct_fixed_rows = lambda *a: None
        try:
            with pytest.raises(DataError) as e:
                build.build_spec("y ~ x + a + (1 | g)", bad)
            msgs.append(str(e.value))
        finally:
            build._distinct_fixed_rows = orig
    assert msgs[0] == msgs[1]


def test_drop_unused_and_codes_match_pandas():
    rng = np.random.default_rng(1)
    cat = pd.Categorical.from_codes(rng.integers(-1, 6, 500), list("abcdefgh"))
    got = build._drop_unused(cat)
    want = pd.Series(cat).cat.remove_unused_categories().array
    assert list(got.categories) == list(want.categories) and got.ordered
    np.testing.assert_array_equal(got.codes, want.codes)
    codes = rng.integers(0, 50, 1000) * 3
    u, inv = build._sorted_inverse(codes)
    u2, inv2 = np.unique(codes, return_inverse=True)
    np.testing.assert_array_equal(u, u2)
    np.testing.assert_array_equal(inv, inv2.reshape(-1))



@pytest.mark.parametrize("lo,hi,n", [(0, 8, 500), (0, 5, 500), (-1, 8, 300), (0, 8, 0)])
def test_drop_unused_with_and_without_missing_or_unused_levels(lo, hi, n):
    """Every case of the count-based drop (no missing: no N-long mask; all used or not)
    equals pandas' remove_unused_categories."""
    cat = pd.Categorical.from_codes(np.random.default_rng(n).integers(lo, hi, n), list("abcdefgh"))
    got = build._drop_unused(cat)
    want = pd.Series(cat).cat.remove_unused_categories().array
    assert list(got.categories) == list(want.categories) and got.ordered
    np.testing.assert_array_equal(got.codes, want.codes)


def test_row_key():
    a = np.array([1.0, -0.0, 0.0, 1.0, 2.0])
    b = np.array([0, 1, 1, 0, 0])
    key, k = row_key([a, (b, 2)], 5)
    assert k == 3 and list(key) == [0, 1, 1, 0, 2]
    assert list(firsts(key)) == [0, 1, 4]
    assert row_key([a], 5, max_keys=2) is None


def test_row_key_hashes_float_columns_exactly():
    rng = np.random.default_rng(3)
    cols = [rng.integers(0, 3, 2000).astype(float) for _ in range(4)] + [rng.integers(0, 2, 2000)]
    key, k = row_key(cols, 2000)
    # reference: one factorization of the rows as tuples
    ref, uniq = pd.factorize(pd.Series(list(zip(*cols))), sort=False)
    assert k == len(uniq)
    np.testing.assert_array_equal(key, ref)
    # mirrored columns and a constant one: still one key per distinct row
    a = np.array([1.0, 2.0, 1.0, 2.0] * 10)
    b, c = a[::-1].copy(), np.zeros(40)
    key, k = row_key([a, b, c], 40)
    ref, uniq = pd.factorize(pd.Series(list(zip(a, b, c))), sort=False)
    assert k == len(uniq)
    np.testing.assert_array_equal(key, ref)


@pytest.mark.parametrize("formula", ["y ~ a + s + (1 | g)", "y ~ a * s + x + (1 | g)",
                                     "y ~ z + a + (1 | g)"])
def test_row_pattern_marks_equal_rows_and_gives_the_same_moments(formula):
    """Design.row_pattern (set when the distinct-row path ran): equal codes have equal X rows
    and offsets; the data moments and the Poisson sufficient statistics computed from it
    equal those computed from every row."""
    from dataclasses import replace

    from bayes_hlm.backends.glmm_sufficient import reduce_rows
    from bayes_hlm.spec.priors import Moments

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast, slow = _both(formula, _frame(), family="poisson")
    d, plain = fast.design, slow.design
    assert plain.row_pattern is None
    if "z" in formula:  # continuous: too many distinct rows, no pattern
        assert d.row_pattern is None
        return
    pat = d.row_pattern
    assert pat.shape == (d.n,) and pat.dtype == np.int64
    first = firsts(pat)
    np.testing.assert_array_equal(d.X[first][pat], d.X)
    if d.offset is not None:
        np.testing.assert_array_equal(d.offset[first][pat], d.offset)
    m1, m2 = Moments.of(d), Moments.of(replace(d, row_pattern=None))
    np.testing.assert_allclose(m1.x_mean, m2.x_mean, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(m1.x_sd, m2.x_sd, rtol=1e-13, atol=1e-15)
    assert (m1.y_mean, m1.y_sd) == (m2.y_mean, m2.y_sd)
    s1, s2 = reduce_rows(d), reduce_rows(replace(d, row_pattern=None))
    for k in s1:
        np.testing.assert_array_equal(s1[k], s2[k])


def test_moments_in_blocks_equal_the_one_pass_moments(monkeypatch):
    from bayes_hlm.spec import priors

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = build.build_spec("y ~ z + x + (1 | g)", _frame(), family="poisson").design
    whole = priors.Moments.of(d)
    monkeypatch.setattr(priors, "_MOMENT_BLOCK", 7)
    blocks = priors.Moments.of(d)
    np.testing.assert_allclose(blocks.x_sd, whole.x_sd, rtol=1e-13)
    np.testing.assert_allclose(blocks.z_sd[0], whole.z_sd[0], rtol=1e-13)


def test_row_key_of_integer_codes_is_the_column_by_column_key():
    rng = np.random.default_rng(4)
    a, b = rng.integers(0, 5, 5000), rng.integers(0, 3, 5000)
    fast = row_key([(a, 5), (b, 3)], 5000)
    slow = row_key([(a, 5), b.astype(float)], 5000)  # a float column: the general path
    np.testing.assert_array_equal(fast[0], slow[0])
    assert fast[1] == slow[1] == 15
    assert row_key([(a, 5), (b, 3)], 5000, max_keys=10) is None
    neg = row_key([(a - 1, 5), (b, 3)], 5000)  # codes outside 0..n-1: the general path
    np.testing.assert_array_equal(neg[0], fast[0])
    k = fast[0]
    np.testing.assert_array_equal(firsts(k), np.unique(k, return_index=True)[1])
    late = np.r_[np.zeros(100_000, dtype=np.int64), 1]  # a key first seen at the very end
    np.testing.assert_array_equal(firsts(late), [0, 100_000])


@pytest.mark.parametrize("chunk", [3, 7, 1 << 18])
def test_first_rows_of_codes_match_numpys_unique(monkeypatch, chunk):
    """The grouping factor's first row per level (its labels), slice by slice: as
    np.unique's first indices, whatever the slice length (sorted and shuffled codes)."""
    from bayes_hlm.spec import build

    monkeypatch.setattr(build, "_FIRST_CHUNK", chunk)
    rng = np.random.default_rng(2)
    for inv in (np.repeat(np.arange(9), rng.integers(1, 6, 9)), rng.integers(0, 13, 200)):
        k = int(inv.max()) + 1
        assert set(inv) == set(range(k))
        np.testing.assert_array_equal(build._first_rows(inv, k), np.unique(inv, return_index=True)[1])


def test_interacted_factor_codes_and_labels():
    from bayes_hlm.spec import build

    rng = np.random.default_rng(5)
    df = pd.DataFrame({"s": pd.Categorical(rng.choice(["x", "y", "z"], 50)),
                       "t": rng.choice(["B", "a"], 50)})
    codes, labels = build._factor_codes(df, ("s", "t"))
    assert codes.dtype == np.int64
    pairs = [f"{s}:{t}" for s, t in zip(df["s"], df["t"])]
    assert [labels[c] for c in codes] == pairs
    assert list(labels) == sorted(set(pairs), key=lambda p: (p.split(":")[0], p.split(":")[1].lower()))
