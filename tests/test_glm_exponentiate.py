"""``tidy(exponentiate=True)`` and ``summary(exponentiate=True)`` (#15): odds and rate ratios
summarised from exp of each draw (not exp of the summary); refused where exp(coef) is no ratio."""

import warnings

import numpy as np
import pandas as pd
import pytest

import bayes_hlm as bh
from bayes_hlm.errors import BayesHLMError
from bayes_hlm.inference.tidy import ratio_name


def _data(seed=3, G=8, m=8):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(G), m)
    x = rng.normal(size=G * m)
    eta = -0.2 + 0.7 * x + rng.normal(0, 0.5, G)[g]
    return pd.DataFrame({"b": (rng.random(g.size) < 1 / (1 + np.exp(-eta))).astype(int),
                         "n": rng.poisson(np.exp(eta)), "y": eta + rng.normal(size=g.size),
                         "x": x, "g": [f"g{i}" for i in g]})


def _fit(formula, family, link=None, method="full"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bh.fit(formula, _data(), family=family, link=link, method=method, chains=2,
                      draws=60, tune=60, seed=4, progressbar=False, warn=False)


@pytest.fixture(scope="module")
def bern():
    return _fit("b ~ x + (1|g)", "bernoulli")


@pytest.fixture(scope="module")
def pois():
    return _fit("n ~ x + (1|g)", "poisson")


def test_tidy_exponentiates_each_draw_of_the_fixed_effects_only(bern):
    plain, ratio = bern.tidy(), bern.tidy(exponentiate=True)
    beta = bern.parameter_draws(["Intercept", "x"])
    fx = ratio[ratio["effect"] == "fixed"].set_index("term")
    for term, d in beta.items():
        e = np.exp(d)
        assert fx.loc[term, "estimate"] == pytest.approx(e.mean(), rel=1e-12)
        assert fx.loc[term, "std.error"] == pytest.approx(e.std(ddof=1), rel=1e-12)
        # quantile (ETI) bounds commute with exp; the mean does not (Jensen)
        assert fx.loc[term, "conf.low"] == pytest.approx(np.quantile(e, 0.025), rel=1e-9)
        assert fx.loc[term, "estimate"] > np.exp(d.mean())
    pd.testing.assert_frame_equal(pd.DataFrame(ratio[ratio["effect"] != "fixed"]),
                                  pd.DataFrame(plain[plain["effect"] != "fixed"]))
    assert "sd__Observation" not in set(plain["term"])  # a Bernoulli model has no residual SD
    assert bh.tidy(bern, exponentiate=True).equals(ratio)


def test_summary_exponentiates_draws_and_names_the_ratio(bern, pois):
    for res, name in ((bern, "odds ratios"), (pois, "rate ratios")):
        s, e = res.summary(), res.summary(exponentiate=True)
        d = np.exp(res.parameter_draws(["x"])["x"])
        assert e.loc["x", "mean"] == pytest.approx(d.mean(), rel=1e-12)
        assert e.loc["x", "hdi_low"] > 0 and e.loc["x", "mean"] != pytest.approx(
            np.exp(s.loc["x", "mean"]), rel=1e-6)
        assert f"Fixed effects exponentiated: {name}" in e.text
        sd = "sd(Intercept | g)"
        assert e.loc[sd, "mean"] == s.loc[sd, "mean"]
        assert "exponentiated" not in s.text


@pytest.mark.parametrize("family, link, ok", [
    ("bernoulli", "logit", "odds ratios"), ("binomial", "cloglog", "hazard ratios"),
    ("negativebinomial", "log", "rate ratios"), ("gamma", "log", "ratios of means"),
    ("gaussian", "identity", None), ("bernoulli", "probit", None), ("gamma", "inverse", None)])
def test_ratio_name_by_link(family, link, ok):
    if ok:
        assert ratio_name(family, link) == ok
    else:
        with pytest.raises(BayesHLMError, match=f"{family} model has the {link} link"):
            ratio_name(family, link)


def test_identity_link_fit_refuses_exponentiate():
    res = _fit("y ~ x + (1|g)", "gaussian", method="marginal")
    for call in (lambda: res.tidy(exponentiate=True), lambda: res.summary(exponentiate=True)):
        with pytest.raises(BayesHLMError, match="identity link"):
            call()
