"""Design building: names, level order, NA handling, checks, aliasing, new data."""

import warnings

import numpy as np
import pandas as pd
import pytest

import bayes_hlm as bh
from bayes_hlm.errors import BayesHLMWarning, DataError, FormulaError
from bayes_hlm.spec.build import build_spec


def test_sleepstudy_design(sleepstudy):
    d = bh.build_design("Reaction ~ Days + (Days | Subject)", sleepstudy)
    assert d.fixed_names == ("Intercept", "Days")
    g = d.groups[0]
    assert g.factor == "Subject" and g.terms == ("Intercept", "Days") and g.correlated
    assert g.n_levels == 18 and list(g.levels[:2]) == ["308", "309"]
    np.testing.assert_array_equal(g.Z[:, 1], sleepstudy["Days"].to_numpy())


def test_reference_level_follows_category_order():
    h = bh.datasets.load("hsb82")
    d = bh.build_design("mAch ~ cses * sector + meanses + (cses | school)", h)
    assert d.fixed_names == ("Intercept", "cses", "sectorCatholic", "cses:sectorCatholic", "meanses")


def test_string_factor_sorted_levels_and_numeric_group():
    df = pd.DataFrame({"y": np.arange(12.0), "f": list("bca") * 4, "g": [1, 2, 3] * 4})
    d = bh.build_design("y ~ f + (1|g)", df)
    assert d.fixed_names == ("Intercept", "fb", "fc")
    assert list(d.groups[0].levels) == ["1", "2", "3"]


def test_nested_factor_codes(sleepstudy):
    df = sleepstudy.assign(School=np.repeat(["1", "2", "3"], 60))
    d = bh.build_design("Reaction ~ Days + (1 | School/Subject)", df)
    assert [g.factor for g in d.groups] == ["School", "School:Subject"]
    assert d.groups[1].n_levels == 18


def test_missing_rows_dropped_with_count(sleepstudy):
    df = sleepstudy.copy()
    df.loc[[0, 5], "Reaction"] = np.nan
    with pytest.warns(BayesHLMWarning, match="dropped 2 of 180"):
        d = bh.build_design("Reaction ~ Days + (1|Subject)", df)
    assert d.n == 178 and 0 not in d.row_index
    with pytest.raises(DataError, match="2 row"):
        bh.build_design("Reaction ~ Days + (1|Subject)", df, na_action="raise")


def test_inf_is_error(sleepstudy):
    df = sleepstudy.copy()
    df.loc[3, "Days"] = np.inf
    with pytest.raises(DataError, match="'Days' has 1 infinite"):
        bh.build_design("Reaction ~ Days + (1|Subject)", df)


def test_unknown_column_suggests(sleepstudy):
    with pytest.raises(FormulaError, match="did you mean 'Days'"):
        bh.build_design("Reaction ~ Dayz + (1|Subject)", sleepstudy)


def test_aliased_columns_dropped(sleepstudy):
    df = sleepstudy.assign(Days2=sleepstudy["Days"] * 2)
    with pytest.warns(BayesHLMWarning, match="rank deficient so dropping 1 column.*Days2"):
        d = bh.build_design("Reaction ~ Days + Days2 + (1|Subject)", df)
    assert d.fixed_names == ("Intercept", "Days")


def test_single_level_and_singleton_groups(sleepstudy):
    with pytest.raises(DataError, match="has 1 level"):
        bh.build_design("Reaction ~ Days + (1|g)", sleepstudy.assign(g="a"))
    with pytest.raises(DataError, match=r"\(=180\) must be < number of observations \(=180\)"):
        bh.build_design("Reaction ~ Days + (1|g)", sleepstudy.assign(g=np.arange(180)))
    with pytest.raises(DataError, match="number of random effects"):
        bh.build_design("Reaction ~ Days + (Days|g)", sleepstudy.assign(g=np.arange(180) // 2))


def test_control_downgrades_check(sleepstudy):
    ctl = bh.Control().with_(check_nobs_vs_nRE="ignore")
    d = bh.build_design("Reaction ~ Days + (Days|g)", sleepstudy.assign(g=np.arange(180) // 2), control=ctl)
    assert d.groups[0].n_levels == 90


def test_user_data_not_mutated(sleepstudy):
    df = sleepstudy.copy()
    df.loc[1, "Reaction"] = np.nan
    before = pd.util.hash_pandas_object(df, index=True).to_numpy().copy()
    dtypes = df.dtypes.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bh.build_design("Reaction ~ Days + (Days|Subject)", df)
    assert (pd.util.hash_pandas_object(df, index=True).to_numpy() == before).all()
    assert (df.dtypes == dtypes).all()


def test_new_data_rows_and_unseen_levels(sleepstudy):
    spec = build_spec("Reaction ~ Days + (Days | Subject)", sleepstudy)
    new = pd.DataFrame({"Days": [1.0, 2.0], "Subject": [309, "nope"]})
    np.testing.assert_array_equal(spec.fixed_matrix(new), [[1, 1], [1, 2]])
    codes, Z = spec.group_columns(0, new)
    assert codes.tolist() == [1, -1] and Z.shape == (2, 2)


def test_response_must_be_numeric(sleepstudy):
    with pytest.raises(DataError, match="not numeric"):
        bh.build_design("Subject ~ Days + (1|Days)", sleepstudy.assign(Days=sleepstudy.Days.astype(int)))
