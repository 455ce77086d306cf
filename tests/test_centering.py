"""Tests for bayes_hlm.spec.centering.center."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayes_hlm.datasets import load
from bayes_hlm.spec.centering import ColumnNotFoundError, center


@pytest.fixture(scope="module")
def hsb():
    return load("hsb82")


def _fingerprint(df: pd.DataFrame):
    return (
        pd.util.hash_pandas_object(df, index=True).to_numpy().copy(),
        list(df.columns),
        df.dtypes.to_dict(),
    )


def test_reproduces_hsb82_cses_meanses(hsb):
    base = hsb.drop(columns=["cses", "meanses"])
    out = center(base, "ses", by="school")
    assert list(out.columns) == list(base.columns) + ["cses", "meanses"]
    # hsb82 ships meanses/cses with 15 significant digits: they agree to ~1e-14
    np.testing.assert_allclose(out.meanses, hsb.meanses, rtol=0, atol=1e-12)
    np.testing.assert_allclose(out.cses, hsb.cses, rtol=0, atol=1e-12)
    assert out.cses.dtype == np.float64 and out.meanses.dtype == np.float64


def test_input_unchanged(hsb):
    base = hsb.drop(columns=["cses", "meanses"])
    before = _fingerprint(base)
    out = center(base, "ses", by="school")
    after = _fingerprint(base)
    np.testing.assert_array_equal(before[0], after[0])
    assert before[1:] == after[1:]
    assert out is not base
    out.loc[0, "ses"] = 99.0  # the result does not share memory with the input
    assert base.loc[0, "ses"] != 99.0


def test_grand_mean(hsb):
    out = center(hsb, "ses", name="ses_c", mean_name="ses_m")
    assert np.allclose(out.ses_m, hsb.ses.mean())
    assert abs(out.ses_c.mean()) < 1e-12
    np.testing.assert_allclose(out.ses_c + out.ses_m, hsb.ses)


def test_custom_names_and_position(hsb):
    out = center(hsb, "mAch", by="school", name="within", mean_name="between")
    assert list(out.columns[-2:]) == ["within", "between"]
    grp = hsb.groupby("school", observed=True).mAch.mean()
    np.testing.assert_allclose(out.between, grp.loc[hsb.school.astype(str)].to_numpy())
    np.testing.assert_allclose(out.groupby("school", observed=True).within.mean(), 0, atol=1e-12)


def test_multiple_by_columns_and_index_kept():
    df = pd.DataFrame(
        {"a": ["p", "p", "q", "q", "p"], "b": [1, 2, 1, 1, 1], "v": [1.0, 5.0, 2.0, 4.0, 3.0]},
        index=[10, 11, 12, 13, 14],
    )
    out = center(df, "v", by=["a", "b"])
    assert out.index.tolist() == [10, 11, 12, 13, 14]
    np.testing.assert_allclose(out.meanv, [2.0, 5.0, 3.0, 3.0, 2.0])
    np.testing.assert_allclose(out.cv, [-1.0, 0.0, -1.0, 1.0, 1.0])


def test_missing_values():
    df = pd.DataFrame({"g": ["a", "a", "b", None], "v": pd.array([1, 3, None, 7], dtype="Int64")})
    out = center(df, "v", by="g")
    assert out.meanv.tolist()[:2] == [2.0, 2.0]
    assert np.isnan(out.meanv[2]) and np.isnan(out.cv[2])  # group b has no observed value
    assert np.isnan(out.meanv[3]) and np.isnan(out.cv[3])  # missing group key
    np.testing.assert_allclose(out.cv[:2], [-1.0, 1.0])


def test_missing_column_suggests_closest(hsb):
    with pytest.raises(KeyError) as err:
        center(hsb, "SES", by="school")
    assert isinstance(err.value, ColumnNotFoundError)
    msg = str(err.value)
    assert "'SES'" in msg and "Did you mean 'ses'?" in msg
    with pytest.raises(ColumnNotFoundError, match="Did you mean 'school'"):
        center(hsb, "ses", by="schol")
    with pytest.raises(KeyError, match="'zzz' is not a column"):
        center(hsb, "zzz")


def test_value_errors(hsb):
    with pytest.raises(ValueError, match="already exist"):
        center(hsb, "ses", by="school")
    out = center(hsb, "ses", by="school", overwrite=True)
    np.testing.assert_allclose(out.cses, hsb.cses, atol=1e-12)
    assert list(out.columns) == [c for c in hsb.columns if c not in ("cses", "meanses")] + ["cses", "meanses"]
    with pytest.raises(ValueError, match="not a numeric"):
        center(hsb, "sx", by="school")
    with pytest.raises(ValueError, match="itself"):
        center(hsb, "ses", by="ses")
    with pytest.raises(ValueError, match="differ"):
        center(hsb, "ses", name="z", mean_name="z")
    with pytest.raises(TypeError):
        center(hsb.ses, "ses")
