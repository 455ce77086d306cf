"""Core Bayesian fit: agreement with lme4, result accessors, seeding, save/load, predict."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayes_hlm as bh

FIXTURE = Path(__file__).parent / "fixtures" / "lme4_reference.json"


@pytest.fixture(scope="module")
def lme4():
    return json.loads(FIXTURE.read_text())["cases"]


def test_sleepstudy_fixed_effects_near_reml(sleep_fit, lme4):
    ref = lme4["sleep_rs"]["fixed"]
    f = sleep_fit.fixef()
    for ours, theirs in (("Intercept", "(Intercept)"), ("Days", "Days")):
        z = abs(f.loc[ours, "mean"] - ref[theirs]["estimate"]) / f.loc[ours, "sd"]
        assert z < 0.25, (ours, f.loc[ours, "mean"], ref[theirs]["estimate"])
    s = sleep_fit.summary()
    assert "cor(Intercept, Days | Subject)" in s.index
    assert -1 < s.loc["cor(Intercept, Days | Subject)", "mean"] < 1


def test_accessors_shapes(sleep_fit):
    assert sleep_fit.nobs() == 180 and sleep_fit.ngrps() == {"Subject": 18}
    re = sleep_fit.ranef()["Subject"]
    assert re.shape == (36, 4) and re.index.names == ["level", "term"]
    co = sleep_fit.coef()["Subject"]
    np.testing.assert_allclose(co["Days"].mean(), sleep_fit.fixef().loc["Days", "mean"]
                               + re.xs("Days", level="term")["mean"].mean(), rtol=1e-10)
    vc = sleep_fit.varcorr()
    assert set(vc["group"]) == {"Subject", "Residual"}
    fitted = sleep_fit.fitted()
    np.testing.assert_allclose(sleep_fit.residuals() + fitted, sleep_fit.design.y)
    assert sleep_fit.prior_summary().loc["corr|Subject", "prior"] == "LKJ(eta=1)"


def test_posterior_contains_standard_variables(sleep_fit):
    post = sleep_fit.posterior
    for v in ("fixed", "sigma", "sd__Subject", "corr__Subject", "r__Subject"):
        assert v in post
    assert not [v for v in post.data_vars if str(v).startswith("_")]
    assert post["r__Subject"].dims[2:] == ("Subject__level", "Subject__term")
    assert "observed_data" in sleep_fit.tree.children


def test_predict_known_and_new_groups(sleep_fit):
    new = pd.DataFrame({"Days": [0.0, 9.0, 0.0], "Subject": ["308", "308", "new"]})
    p = sleep_fit.predict(new, new_groups="sample")
    coef = sleep_fit.coef()["Subject"].loc["308"]
    np.testing.assert_allclose(p["mean"].iloc[0], coef["Intercept"], rtol=1e-10)
    np.testing.assert_allclose(p["mean"].iloc[1], coef["Intercept"] + 9 * coef["Days"], rtol=1e-10)
    pop = sleep_fit.predict(new, group_effects=False)
    # a new subject: centred on the population line, wider than a known subject
    assert abs(p["mean"].iloc[2] - pop["mean"].iloc[2]) < 3 * pop["sd"].iloc[2] / np.sqrt(1000) + 2.0
    assert p["sd"].iloc[2] > 2 * p["sd"].iloc[0]
    zero = sleep_fit.predict(new, new_groups="zero")
    np.testing.assert_allclose(zero["mean"].iloc[2], pop["mean"].iloc[2])
    resp = sleep_fit.predict(new, kind="response", new_groups="sample")
    assert (resp["sd"] > p["sd"]).all()


def test_predict_refuses_unseen_levels_by_default(sleep_fit):
    """lme4 allow.new.levels = FALSE: a misspelt level is an error naming it and the option."""
    new = pd.DataFrame({"Days": [1.0] * 9, "Subject": ["308", "3O8"] + [f"x{i}" for i in range(7)]})
    with pytest.raises(bh.errors.DataError) as e:
        sleep_fit.predict(new)
    msg = str(e.value)
    assert "'3O8'" in msg and "'Subject'" in msg and "8 level(s)" in msg and "3 more" in msg
    assert "new_groups='sample'" in msg and "new_groups='zero'" in msg
    # population-level predictions do not use the factor, so they need no level check
    sleep_fit.predict(new, group_effects=False)
    # seen levels only: no error
    sleep_fit.predict(new.iloc[:1])


def test_save_load_roundtrip(sleep_fit, tmp_path):
    path = tmp_path / "fit.nc"
    sleep_fit.save(path)
    back = bh.load(path)
    for v in sleep_fit.posterior.data_vars:
        np.testing.assert_array_equal(back.posterior[v].values, sleep_fit.posterior[v].values)
    pd.testing.assert_frame_equal(back.summary(), sleep_fit.summary())
    new = pd.DataFrame({"Days": [3.0], "Subject": ["330"]})
    pd.testing.assert_frame_equal(back.predict(new, seed=1), sleep_fit.predict(new, seed=1))
    assert back.info.seed == sleep_fit.info.seed and back.prior_summary().equals(sleep_fit.prior_summary())


def test_save_is_atomic(sleep_fit, tmp_path, monkeypatch):
    path = tmp_path / "fit.nc"
    path.write_bytes(b"old contents")
    import xarray as xr

    def boom(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(xr.DataTree, "to_netcdf", boom)
    with pytest.raises(KeyboardInterrupt):
        sleep_fit.save(path)
    assert path.read_bytes() == b"old contents"
    assert list(tmp_path.iterdir()) == [path]


def test_same_seed_same_draws_and_chains_differ(sleepstudy):
    kw = dict(method="full", chains=2, draws=60, tune=60, seed=5, warn=False)
    a = bh.fit("Reaction ~ Days + (1 | Subject)", sleepstudy, **kw)
    b = bh.fit("Reaction ~ Days + (1 | Subject)", sleepstudy, **kw)
    np.testing.assert_array_equal(a.posterior["fixed"].values, b.posterior["fixed"].values)
    f = a.posterior["fixed"].values
    assert not np.array_equal(f[0], f[1])


def test_user_priors_are_used(sleepstudy):
    tight = bh.Prior("Normal", mu=0.0, sigma=0.01)
    r = bh.fit("Reaction ~ Days + (1 | Subject)", sleepstudy, method="full", chains=1, draws=100,
               tune=100, seed=1, priors={"Days": tight}, warn=False)
    assert abs(r.fixef().loc["Days", "mean"]) < 0.05
    assert "Normal(mu=0, sigma=0.01)" in r.prior_summary().loc["Days", "prior"]
    with pytest.raises(bh.BayesHLMError, match="not a parameter"):
        bh.fit("Reaction ~ Days + (1 | Subject)", sleepstudy, priors={"Dayz": tight})


def test_get_prior_matches_bambi_defaults(sleepstudy):
    t = bh.get_prior("Reaction ~ Days + (Days | Subject)", sleepstudy)
    y = sleepstudy["Reaction"].to_numpy()
    days = sleepstudy["Days"].to_numpy()
    slope = 2.5 * y.std() / days.std()
    inter = np.sqrt((2.5 * y.std()) ** 2 + slope**2 * days.mean() ** 2)
    assert t.loc["Days", "prior"] == f"Normal(mu=0, sigma={slope:.4g})"
    assert t.loc["Intercept", "prior"] == f"Normal(mu={y.mean():.4g}, sigma={inter:.4g})"
    assert t.loc["1|Subject", "prior"] == f"HalfNormal(sigma={inter:.4g})"
    assert t.loc["sigma", "prior"] == f"HalfStudentT(nu=4, sigma={y.std():.4g})"


def test_prior_and_posterior_predictive(sleep_fit, sleepstudy):
    tree = bh.sample_prior_predictive("Reaction ~ Days + (Days | Subject)", sleepstudy, draws=200, seed=1)
    assert {"prior", "prior_predictive"} <= set(tree.children)
    prior = tree["prior"].to_dataset()
    assert {"fixed", "sigma", "sd__Subject", "corr__Subject"} <= set(prior.data_vars)
    assert not [v for v in prior.data_vars if str(v).startswith("_")]
    # Bambi's default prior for sigma: HalfStudentT(4, sd(y)); its median is ~0.74 sd(y)
    med = float(np.median(prior["sigma"].values))
    assert 0.4 * sleepstudy["Reaction"].std() < med < 1.2 * sleepstudy["Reaction"].std()
    assert tree["prior_predictive"].to_dataset()["y"].shape[-1] == 180
    pp = sleep_fit.posterior_predictive()["posterior_predictive"].to_dataset()["y"]
    assert pp.shape == (2, 500, 180)
    # replicated data resemble the observed data
    assert abs(float(pp.mean()) - sleepstudy["Reaction"].mean()) < 10
    assert sleep_fit.prior_predictive(draws=50, seed=2)["prior"].to_dataset()["fixed"].shape[-1] == 2
