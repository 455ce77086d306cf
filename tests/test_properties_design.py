"""Property-based tests (hypothesis): random data frames and formulas through ``build_spec``.

Valid input -> a design whose shapes agree with the data (rows = complete rows,
levels = observed levels, independent X columns). Invalid input -> one of our
error classes, naming the offender; never an unrelated exception.
"""

from __future__ import annotations

import keyword
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from bayes_hlm.errors import BayesHLMError, BayesHLMWarning
from bayes_hlm.spec.build import FORMULA_FUNCTIONS, build_spec
from bayes_hlm.spec.collate import r_sorted
from bayes_hlm.spec.formula import parse_formula

RESERVED = set(FORMULA_FUNCTIONS) | {"C", "I", "scale", "center", "standardize", "poly", "bs", "B",
                                     "S", "T", "p", "prop", "proportion", "offset", "binary",
                                     "True", "False", "None"}
NAME = st.from_regex(r"\A[a-zA-Z][a-zA-Z0-9_]{0,7}\Z").filter(
    lambda s: s not in RESERVED and not keyword.iskeyword(s))
SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def frames(draw):
    """A frame with response, numeric x, factor f, grouping g; NaN/None sprinkled in."""
    names = draw(st.lists(NAME, min_size=5, max_size=5, unique_by=str.lower))
    y, x, f, g, extra = names
    n_groups = draw(st.integers(2, 6))
    sizes = draw(st.lists(st.integers(1, 6), min_size=n_groups, max_size=n_groups))
    labels = draw(st.lists(st.from_regex(r"\A[a-zA-Z0-9]{1,4}\Z"), min_size=n_groups,
                           max_size=n_groups, unique=True))
    gcol = np.repeat(labels, sizes).astype(object)
    n = len(gcol)
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    flev = draw(st.lists(st.sampled_from(["lo", "mid", "hi", "x1", "Z"]), min_size=1, max_size=4,
                         unique=True))
    df = pd.DataFrame({
        y: rng.normal(size=n) * draw(st.sampled_from([1e-3, 1.0, 1e4])),
        x: rng.normal(size=n),
        f: rng.choice(flev, size=n).astype(object),
        g: gcol,
        extra: rng.normal(size=n),
    })
    for col in (y, x, f, g, extra):
        k = draw(st.integers(0, max(0, n // 4)))
        idx = rng.choice(n, size=k, replace=False)
        df.loc[df.index[idx], col] = None if df[col].dtype == object else np.nan
    if draw(st.booleans()):
        df[g] = pd.Categorical(df[g], categories=draw(st.permutations(labels)))
    return df, (y, x, f, g, extra)


def _formula(draw_shape: int, y, x, f, g) -> str:
    return [f"{y} ~ {x} + ({x} | {g})", f"{y} ~ {x} + {f} + (1 | {g})",
            f"{y} ~ {x} * {f} + (1 | {g})", f"{y} ~ 1 + ({x} || {g})",
            f"{y} ~ 0 + {x} + (1 | {g})"][draw_shape]


def _build(formula, df, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BayesHLMWarning)
        return build_spec(formula, df, **kw)


@SETTINGS
@given(data=frames(), shape=st.integers(0, 4))
def test_valid_frames_give_consistent_designs(data, shape):
    df, (y, x, f, g, extra) = data
    formula = _formula(shape, y, x, f, g)
    tokens = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", formula))
    used = sorted({c for c in (y, x, f, g) if c in tokens}, key=list(df.columns).index)
    before = pd.util.hash_pandas_object(df, index=True).sum()
    try:
        spec = _build(formula, df)
    except BayesHLMError as exc:  # a Control check failed: it must name the factor / rows
        msg = str(exc)
        assert g in msg or f in msg or "no rows left" in msg, msg
        return
    finally:
        assert pd.util.hash_pandas_object(df, index=True).sum() == before
    d = spec.design
    complete = df[used].notna().all(axis=1)
    assert d.n == int(complete.sum()) == len(d.y) == d.X.shape[0]
    assert list(d.row_index) == list(df.index[complete])
    np.testing.assert_array_equal(d.y, df.loc[complete, y].to_numpy(dtype=float))
    # X has independent columns
    if d.p:
        assert np.linalg.matrix_rank(d.X) == d.p
    # levels of the grouping factor = levels observed in complete rows, in the user's order
    grp = d.groups[0]
    seen = set(df.loc[complete, g].astype(str))
    assert set(map(str, grp.levels)) == seen and grp.n_levels == len(seen)
    if isinstance(df[g].dtype, pd.CategoricalDtype):
        order = [c for c in df[g].cat.categories if c in seen]
        assert list(grp.levels) == order
    else:  # R's sort() order (issue 19: "a" before "A"; strings case-insensitively first)
        assert list(grp.levels) == r_sorted(seen)
    assert grp.codes.min() == 0 and grp.codes.max() == grp.n_levels - 1
    labels = np.asarray(grp.levels, dtype=object)[grp.codes]
    np.testing.assert_array_equal(labels, df.loc[complete, g].astype(str).to_numpy())
    for gt in d.groups:
        assert gt.Z.shape == (d.n, gt.q)


@SETTINGS
@given(data=frames(), shape=st.integers(0, 4))
def test_missing_values_raise_when_asked(data, shape):
    df, (y, x, f, g, extra) = data
    formula = _formula(shape, y, x, f, g)
    tokens = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", formula))
    used = [c for c in (y, x, f, g) if c in tokens]
    assume(df[used].isna().any().any())
    with pytest.raises(BayesHLMError) as info:
        _build(formula, df, na_action="raise")
    bad_cols = [c for c in used if df[c].isna().any()]
    assert any(repr(c) in str(info.value) for c in bad_cols), str(info.value)


FAULTS = ["missing_column", "inf", "text_response", "single_level", "empty", "unclosed",
          "empty_bar", "unknown_fn", "all_singletons", "duplicate"]


@SETTINGS
@given(data=frames(), fault=st.sampled_from(FAULTS), other=NAME)
def test_invalid_input_names_the_offender(data, fault, other):
    df, (y, x, f, g, extra) = data
    df = df.copy()
    formula = f"{y} ~ {x} + (1 | {g})"
    offender = None
    if fault == "missing_column":
        assume(other not in df.columns)
        formula, offender = f"{y} ~ {x} + {other} + (1 | {g})", other
    elif fault == "inf":
        col = [y, x][len(other) % 2]
        df.loc[df.index[len(other) % len(df)], col] = np.inf
        offender = col
    elif fault == "text_response":
        df[y] = df[y].astype(object)
        df.loc[df.index[0], y] = "n/a?"
        offender = y
    elif fault == "single_level":
        df[g] = "only"
        offender = g
    elif fault == "empty":
        df = df.iloc[:0]
        offender = "no rows"
    elif fault == "unclosed":
        formula, offender = f"{y} ~ {x} + (1 | {g}", "unbalanced"
    elif fault == "empty_bar":
        formula, offender = f"{y} ~ {x} + ({x} | )", "no grouping factor"
    elif fault == "unknown_fn":
        assume(other not in RESERVED and other != "np")
        formula, offender = f"{y} ~ {other}({x}) + (1 | {g})", repr(other)
    elif fault == "all_singletons":
        df[g] = [f"s{i}" for i in range(len(df))]
        offender = g
    elif fault == "duplicate":
        df = pd.concat([df, df[[x]]], axis=1)
        offender = x
    with pytest.raises(BayesHLMError) as info:
        _build(formula, df)
    assert offender in str(info.value), (fault, str(info.value))


@SETTINGS
@given(st.text(alphabet="yxg~+|()0123 *:/-", min_size=0, max_size=25))
# every crash hypothesis has found stays here, whatever the seed explores
@example("0~2")  # TypeError: 'int' object is not iterable (fresh machine, issue #21)
@example("y~0+(1|g)")  # no fixed effects
@example("y~(1|g)+(1|g)")  # duplicated random term
def test_random_formula_strings_never_crash(text):
    """Any string: parse_formula returns or raises FormulaError, nothing else."""
    df = pd.DataFrame({"y": [1.0, 2.0, 3.0, 4.0, 2.5, 1.5], "x": [0.1, 0.5, 0.2, 0.9, 0.3, 0.7],
                       "g": list("aabbcc")})
    try:
        parse_formula(text)
    except BayesHLMError:
        return
    try:
        _build(text, df)
    except BayesHLMError:
        pass
