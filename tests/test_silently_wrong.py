"""Inputs that used to be fitted "successfully" and wrongly (issue #21, "Silently wrong"):
dates written as text, values that print alike, constant responses, more coefficients than
rows, dates as grouping factors. API and CLI apply one rule each."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bayes_hlm as bh
from bayes_hlm.cli import main
from bayes_hlm.errors import DataError
from bayes_hlm.spec.build import build_spec

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _frame(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n),
                         "g": np.repeat(list("abcd"), n // 4)})


@SETTINGS
@given(start=st.dates(min_value=pd.Timestamp("1900-01-01").date(),
                      max_value=pd.Timestamp("2100-01-01").date()),
       with_time=st.booleans(), n=st.integers(8, 30))
def test_dates_as_text_refused_alike_by_api_and_cli(tmp_path_factory, start, with_time, n):
    df = _frame(n - n % 4 or 4)
    days = pd.date_range(pd.Timestamp(start), periods=len(df), freq="D")
    df["d"] = days.strftime("%Y-%m-%d %H:%M:%S" if with_time else "%Y-%m-%d")
    with pytest.raises(DataError) as api:
        build_spec("y ~ d + (1 | g)", df)
    assert "'d' holds dates written as text" in str(api.value)
    path = tmp_path_factory.mktemp("csv") / "dates.csv"
    df.to_csv(path, index=False)
    import contextlib
    import io
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["reml", "y ~ d + (1 | g)", str(path)])
    assert code != 0
    assert "'d' holds dates written as text" in err.getvalue()


def test_dates_as_factor_on_purpose_still_allowed():
    df = _frame().assign(d=["2020-01-01", "2020-06-01"] * 20)
    spec = build_spec("y ~ d + (1 | g)", df.assign(d=pd.Categorical(df["d"])))
    assert spec.design.fixed_names == ("Intercept", "d2020-06-01")


@pytest.mark.parametrize("values", [[1, "1"], [2.0, "2.0"], [True, "True"]])
@pytest.mark.parametrize("role", ["predictor", "group"])
def test_values_that_print_alike_are_refused(values, role):
    df = _frame().assign(m=values * 20)
    formula = "y ~ m + (1 | g)" if role == "predictor" else "y ~ x + (1 | m)"
    with pytest.raises(DataError, match=r"column 'm' mixes value types that print alike"):
        build_spec(formula, df)


def test_mixed_but_distinct_labels_still_warn_only():
    df = _frame().assign(m=[1, "a"] * 20)
    with pytest.warns(Warning, match="mixes numbers and text"):
        build_spec("y ~ m + (1 | g)", df)


def test_constant_response_refused_before_sampling():
    with pytest.raises(DataError, match=r"response 'y' is constant"):
        bh.fit("y ~ x + (1 | g)", _frame().assign(y=3.0), draws=5, tune=5, chains=1)


def test_constant_response_after_offset_refused():
    df = _frame()
    with pytest.raises(DataError, match="is constant"):
        build_spec("y ~ 1 + offset(y) + (1 | g)", df)


def test_more_coefficients_than_rows_refused():
    df = _frame(12).assign(f=[f"l{i}" for i in range(12)])
    df["f"] = pd.Categorical(df["f"])
    with pytest.raises(DataError, match=r"12 fixed-effect coefficient\(s\) \(Intercept, .*\) but only 12 row"):
        build_spec("y ~ f + (1 | g)", df)


def test_datetime_grouping_fits_saves_and_predicts(tmp_path):
    df = _frame(60)
    df["day"] = pd.Timestamp("2021-03-01") + pd.to_timedelta(np.arange(60) % 6, "D")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = bh.fit("y ~ x + (1 | day)", df, method="marginal", chains=1, draws=30, tune=30,
                   seed=1, warn=False, progressbar=False)
    assert list(r.design.groups[0].levels[:2]) == ["2021-03-01", "2021-03-02"]
    path = tmp_path / "fit.bhlm"
    r.save(path)
    back = bh.load(path)
    np.testing.assert_allclose(back.predict(df.iloc[:4])["mean"], r.predict(df.iloc[:4])["mean"])
    assert str(back.ranef()["day"].index[0][0] if isinstance(back.ranef()["day"].index, pd.MultiIndex)
               else back.ranef()["day"].index[0]).startswith("2021-03-01")
