"""offset(...) terms: coefficient fixed at 1, in every backend and in every prediction (issue #21)."""

import warnings

import numpy as np
import pandas as pd
import pytest

import bayes_hlm as bh
from bayes_hlm.reml import reml
from bayes_hlm.spec.build import build_spec

FORMULA = "Reaction ~ Days + offset(e) + offset(w) + (Days | Subject)"
KW = dict(chains=2, draws=150, tune=150, seed=3, warn=False, progressbar=False)


@pytest.fixture(scope="module")
def data(sleepstudy):
    d = sleepstudy.copy()
    d["e"] = np.linspace(1.0, 30.0, len(d))
    d["w"] = np.cos(np.arange(len(d)))
    d["work"] = d["Reaction"] - d["e"] - d["w"]
    return d


def test_design_has_no_offset_column(data):
    spec = build_spec(FORMULA, data)
    assert spec.design.fixed_names == ("Intercept", "Days")
    np.testing.assert_allclose(spec.design.offset, data["e"] + data["w"])
    np.testing.assert_allclose(spec.design.working_y, data["work"])


def test_collinear_offset_is_never_dropped(data):
    d = data.assign(e2=2 * data["Days"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "rank deficient" warning
        spec = build_spec("Reaction ~ Days + offset(e2) + (1 | Subject)", d)
    assert spec.design.fixed_names == ("Intercept", "Days")
    assert "dropped_fixed" not in spec.design.info


def test_offset_of_log(data):
    d = data.assign(expo=np.exp(data["e"] / 10))
    spec = build_spec("Reaction ~ Days + offset(log(expo)) + (1 | Subject)", d)
    np.testing.assert_allclose(spec.design.offset, d["e"] / 10)


def test_reml_offset_equals_working_response(data):
    a = reml(FORMULA, data)
    b = reml("work ~ Days + (Days | Subject)", data)
    np.testing.assert_allclose(a.beta, b.beta, atol=1e-8)
    assert abs(a.objective - b.objective) < 1e-8
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-5)
    np.testing.assert_allclose(a.fitted(), b.fitted() + data["e"] + data["w"], atol=1e-5)
    np.testing.assert_allclose(a.residuals(), b.residuals(), atol=1e-5)
    assert list(a.fixef().index) == ["Intercept", "Days"]
    new = data.iloc[:4].assign(e=[0.0, 10.0, 20.0, 30.0], w=0.0)
    p0 = a.predict(new)["estimate"].to_numpy()
    p1 = a.predict(new.assign(e=new["e"] + 5.0))["estimate"].to_numpy()
    np.testing.assert_allclose(p1 - p0, 5.0, atol=1e-9)


def test_full_model_density_equals_working_response(data):
    from bayes_hlm.backends.full import build_full_model
    from bayes_hlm.spec.priors import resolve_priors

    da = build_spec(FORMULA, data).design
    db = build_spec("work ~ Days + (Days | Subject)", data).design
    # Bambi 0.21 scales the default priors by the response as given, not y - offset
    # (PriorScaler reads response_term.data; checked against bambi in test_glm_priors_bambi)
    pa = resolve_priors(da)
    assert pa.priors["Intercept"].params["mu"] == pytest.approx(data["Reaction"].mean())
    ma, mb = build_full_model(da, pa, {}), build_full_model(db, pa, {})
    point = ma.initial_point()
    point = {k: v + 0.1 for k, v in point.items()}
    assert abs(ma.compile_logp()(point) - mb.compile_logp()(point)) < 1e-8


def _within_mc_error(a, b):
    sa, sb = a.summary(), b.summary()
    rows = [r for r in sa.index if r in sb.index and not str(r).startswith("r_")]
    se = np.sqrt(sa.loc[rows, "mcse_mean"] ** 2 + sb.loc[rows, "mcse_mean"] ** 2)
    return (np.abs(sa.loc[rows, "mean"] - sb.loc[rows, "mean"]) <= 4 * se + 1e-9).all()


@pytest.mark.parametrize("method,sampler", [("marginal", "numba"), ("full", "pymc")])
def test_bayes_offset_equals_working_response(data, method, sampler):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = bh.fit(FORMULA, data, method=method, sampler=sampler, **KW)
        b = bh.fit("work ~ Days + (Days | Subject)", data, method=method, sampler=sampler, **KW)
    # same seed, same working likelihood: identical chains up to rounding, which NUTS may
    # amplify into a different trajectory -- so: means within Monte Carlo error
    assert _within_mc_error(a, b)
    assert list(a.fixef().index) == ["Intercept", "Days"]
    assert not any("offset" in str(t) for t in a.tidy()["term"])
    assert not any("offset" in str(t) for t in a.summary().index)
    # fitted values include the offset (it spans 2..31 here): residuals centre on 0
    res = a.residuals()
    np.testing.assert_allclose(res, data["Reaction"] - a.fitted(), atol=1e-9)
    assert abs(res.mean()) < 2.0
    # predictions evaluate the offset on the new rows, coefficient exactly 1
    new = data.iloc[:5].assign(e=[0.0, 10.0, 20.0, 30.0, 40.0], w=0.0)
    p0 = a.predict(new)["mean"].to_numpy()
    p1 = a.predict(new.assign(e=new["e"] + 10.0))["mean"].to_numpy()
    np.testing.assert_allclose(p1 - p0, 10.0, atol=1e-8)
    ll = a.log_likelihood()["log_likelihood"]["y"].values
    assert np.isfinite(ll).all() and ll.mean() > -10  # would be ~-20 without the offset
    sim = a.simulate(n=2, seed=1, as_frame=False)
    assert np.isfinite(np.asarray(sim, dtype=float)).all()


def test_dask_refuses_offset_clearly(data):
    pytest.importorskip("dask")
    from bayes_hlm.errors import BayesHLMError
    with pytest.raises(BayesHLMError, match="offset"):
        bh.fit(FORMULA, data, engine="dask", **KW)
