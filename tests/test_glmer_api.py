"""bh.glmer's API around the engine: errors, results contract, anova, CLI JSON."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

import bayes_hlm as bh
from bayes_hlm.errors import BayesHLMError, DataError
from bayes_hlm.glmer import anova, glmer
from bayes_hlm.glmer.pirls import gh_rule

CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


@pytest.fixture(scope="module")
def cbpp():
    return bh.datasets.load("cbpp")


@pytest.fixture(scope="module")
def lap(cbpp):
    return glmer(CBPP, cbpp, family="binomial")


def test_exported_and_repr(lap):
    assert callable(bh.glmer)
    assert bh.glmer(CBPP, bh.datasets.load('cbpp'), family='binomial').loglik == lap.loglik
    assert "binomial(logit)" in repr(lap)
    assert lap.nobs() == 56 and lap.ngrps() == {"herd": 15}


def test_gh_rule_integrates_normal_moments():
    z, w = gh_rule(9)
    assert w.sum() == pytest.approx(1.0)
    assert (w * z ** 2).sum() == pytest.approx(1.0)
    assert (w * z ** 4).sum() == pytest.approx(3.0)


def test_agq_needs_one_factor_with_at_most_two_columns(cbpp):
    # lme4 allows one scalar term; here up to two columns of one factor (tests/test_glmer_agq.py)
    df = cbpp.assign(x=np.arange(len(cbpp)) % 3, z=np.arange(len(cbpp)) % 5)
    with pytest.raises(BayesHLMError, match=r"at most 2 random-effect columns.*\(1 \+ x \+ z \| herd\)"):
        glmer("cbind(incidence, size - incidence) ~ period + (x + z | herd)", df,
              family="binomial", nagq=5)
    with pytest.raises(BayesHLMError, match="nagq"):
        glmer(CBPP, cbpp, family="binomial", nagq=-1)


def test_bad_family_link_and_response(cbpp):
    with pytest.raises(BayesHLMError, match="reml"):
        glmer(CBPP, cbpp, family="gaussian")
    with pytest.raises(BayesHLMError, match="link"):
        glmer(CBPP, cbpp, family="binomial", link="inverse")
    with pytest.raises(DataError):
        glmer("size ~ period + (1 | herd)", cbpp, family="binomial")   # not 0/1


def test_binary_response_as_factor_and_01(cbpp):
    rng = np.random.default_rng(1)
    n = 600
    g = rng.integers(0, 30, n)
    x = rng.normal(size=n)
    eta = -0.3 + 0.8 * x + rng.normal(0, 0.7, 30)[g]
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    df = pd.DataFrame({"y": y, "x": x, "g": pd.Categorical(g),
                       "yf": pd.Categorical(np.where(y == 1, "yes", "no"))})
    a = glmer("y ~ x + (1 | g)", df, family="binomial")
    b = glmer("yf ~ x + (1 | g)", df, family="bernoulli")
    assert a.loglik == pytest.approx(b.loglik, abs=1e-9)
    np.testing.assert_allclose(a.beta, b.beta, rtol=1e-8)
    assert df["y"].dtype.kind == "i"     # user data untouched


def test_contract_tables(lap, cbpp):
    fe = lap.fixef()
    assert list(fe.columns) == ["estimate", "se", "z", "p"]
    ci = lap.confint()
    assert ci.columns.name == "95% Wald CI"
    np.testing.assert_allclose(ci["upper"] - ci["lower"], 2 * 1.959963985 * fe["se"], rtol=1e-8)
    co = lap.coef()["herd"]
    re = lap.ranef()["herd"].xs("Intercept", level="term")
    np.testing.assert_allclose(co["Intercept"].to_numpy(), fe.loc["Intercept", "estimate"]
                               + re["mode"].to_numpy())
    t = lap.tidy(exponentiate=True)
    fx = t[t.effect == "fixed"].set_index("term")
    np.testing.assert_allclose(fx["estimate"], np.exp(fe["estimate"]))
    text = str(lap.summary())
    assert "Laplace Approximation" in text and "Family: binomial  ( logit )" in text
    assert "Pr(>|z|)" in text


def test_predict_new_levels(lap, cbpp):
    new = cbpp.iloc[:3].copy()
    new["herd"] = pd.Categorical(["99", "1", "1"])
    with pytest.raises(BayesHLMError, match="allow_new_levels"):
        lap.predict(new)
    p = lap.predict(new, allow_new_levels=True, type="response")
    pop = lap.predict(new, group_effects=False, type="response")
    assert p.estimate.iloc[0] == pytest.approx(pop.estimate.iloc[0])
    assert p.estimate.iloc[1] != pytest.approx(pop.estimate.iloc[1])
    assert np.all((p.estimate > 0) & (p.estimate < 1))


def test_anova_lrt(cbpp, lap):
    m0 = glmer("cbind(incidence, size - incidence) ~ 1 + (1 | herd)", cbpp, family="binomial")
    a = anova(m0, lap)
    assert a["Df"].iloc[1] == 3
    assert a["Chisq"].iloc[1] == pytest.approx(2 * (lap.loglik - m0.loglik))
    assert 0 <= a["p"].iloc[1] < 1e-3


def test_to_dict_keys(lap):
    d = lap.to_dict()
    for k in ("family", "link", "nagq", "n_obs", "groups", "fixed", "group_sd", "group_corr",
              "dispersion", "loglik", "loglik_lme4", "deviance", "aic", "bic", "singular",
              "converged", "messages", "wall_s"):
        assert k in d
    assert set(d["fixed"]["Intercept"]) == {"estimate", "se", "z", "p"}
    json.dumps(d)


def test_singular_fit_flagged():
    rng = np.random.default_rng(3)
    n = 400
    df = pd.DataFrame({"x": rng.normal(size=n), "g": pd.Categorical(rng.integers(0, 20, n))})
    df["y"] = rng.poisson(np.exp(0.5 + 0.3 * df.x))      # no group variation at all
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        r = glmer("y ~ x + (1 | g)", df, family="poisson")
    if r.singular:
        assert any("singular" in str(x.message) for x in w)
        assert np.isnan(r.icc().loc["icc", "estimate"])
    assert r.theta[0] < 0.1


def test_cli_glmer_json(tmp_path, cbpp):
    csv = tmp_path / "cbpp.csv"
    cbpp.to_csv(csv, index=False)
    out = tmp_path / "o.json"
    r = subprocess.run([sys.executable, "-m", "bayes_hlm", "glmer", CBPP, str(csv), "--family",
                        "binomial", "--factor", "herd", "--factor", "period", "--nagq", "9",
                        "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert d["nagq"] == 9
    assert d["loglik_lme4"] == pytest.approx(-50.005, abs=5e-4)
    assert d["loglik"] == pytest.approx(-50.005 - 42.0, abs=0.1)
    assert d["wall_s"] > 0


def test_profile_interval_is_where_the_deviance_rises_by_the_chi2_quantile(lap):
    from bayes_hlm.glmer.profile import _profile_dev

    ci = lap.confint(method="profile", parm=["period2"])
    assert ci.columns.name == "95% profile CI"
    lo, hi = ci.loc["period2", "lower"], ci.loc["period2", "upper"]
    b = lap.beta[1]
    assert lo < b < hi
    pdev = _profile_dev(lap, 1)
    for end in (lo, hi):
        assert pdev(end) - lap.objective == pytest.approx(3.841459, abs=2e-3)
    wald = lap.confint().loc["period2"]
    assert abs(hi - lo) == pytest.approx(wald["upper"] - wald["lower"], rel=0.1)


def test_control_settings_reach_the_fit(cbpp):
    from bayes_hlm import Control

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        r = glmer(CBPP, cbpp, family="binomial",
                  control=Control(opt_ctrl={"check_singular_tol": 0.7}))   # theta = 0.642
    assert r.singular and any("singular" in str(x.message) for x in w)
    with pytest.raises(TypeError, match="unknown glmer optimiser setting"):
        glmer(CBPP, cbpp, family="binomial", control=Control(opt_ctrl={"bogus": 1}))
    with pytest.raises(BayesHLMError, match="BOBYQA"):
        glmer(CBPP, cbpp, family="binomial", control=Control(optimizer="L-BFGS-B"))
