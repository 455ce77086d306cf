"""glmer engine (bayes_hlm.glmer) against the pinned lme4 1.1-31 fits of
tests/fixtures/glmer_reference.json (tests/r/make_glmer_fixtures.R).

Tolerances (issue #16): fixed effects and SEs to 4 significant figures or 1e-3 of the SE, SDs to
4 significant figures, correlations to 5e-4, -2 logLik to 1e-3, the singular flag equal.

Where lme4 stops short of its optimum our log-likelihood must be at least as high, and the
test says which case and why:

* ``grouse``: bobyqa stops 0.022 log-likelihood units short (lme4 warns); the fixture's restart
  from lme4's own estimates reaches the optimum, which we compare with;
* ``grouse_nb``, ``sim_nb_offset``: glmer.nb's Brent search over log θ stops within its
  tolerance 5e-5; our θ is closer to the optimum (higher log-likelihood);
* ``sim_gamma_log``: lme4's Gamma criterion rides on a PIRLS stopped at tolPwrss = 1e-7 with
  linear (Fisher) convergence, and bobyqa stops short (lme4 warns; its restart too): ours is
  higher; estimates agree to 0.1 SE. Gamma SEs are compared with lme4's RX-based ones
  (``vcov(m, use.hessian = FALSE)``): lme4's default Hessian SEs are ~20x too small for this fit
  (see the fixture's notes), so bayes_hlm reports the RX ones for Gamma.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from bayes_hlm import datasets
from bayes_hlm.glmer import glmer

from test_glmer_reference import _fixture_frame

REF = json.loads((Path(__file__).parent / "fixtures" / "glmer_reference.json").read_text())
CASES = REF["cases"]
FAMILY = {"binomial": "binomial", "poisson": "poisson", "Gamma": "gamma",
          "negative_binomial": "negativebinomial"}
SHORT = {"grouse", "grouse_nb", "sim_nb_offset", "sim_gamma_log"}
SLOW = {"grouse_nb", "grouse_olre"}
_FITS: dict = {}


def _data(c):
    if c["data"] in ("cbpp", "grouseticks", "verbagg", "contraception"):
        return datasets.load(c["data"])
    return _fixture_frame(c["data"])


def fit(name):
    if name not in _FITS:
        c = CASES[name]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _FITS[name] = glmer(c["formula"], _data(c), family=FAMILY[c["family"]],
                                link=c["link"], nagq=c["nAGQ"],
                                weights=c["weights"] if isinstance(c["weights"], str) else None)
    return _FITS[name]


def _term(t):
    return "Intercept" if t == "(Intercept)" else t


def _params(name):
    marks = [pytest.mark.slow] if name in SLOW else []
    return pytest.param(name, marks=marks, id=name)


ALL = [_params(n) for n in CASES]
EXACT = [_params(n) for n in CASES if n not in SHORT]


@pytest.mark.parametrize("name", ALL)
def test_loglik_and_singular(name):
    c, r = CASES[name], fit(name)
    assert r.singular == c["singular"]
    ll_lme4 = c["logLik"]
    if name in SHORT:   # lme4 stopped short: ours at least as high (see the module docstring)
        best = max(ll_lme4, c.get("restart", {}).get("logLik", -np.inf))
        assert r.loglik_lme4 >= best - 5e-4
        assert r.loglik_lme4 - best < 0.05
    else:
        assert -2 * r.loglik_lme4 == pytest.approx(-2 * ll_lme4, abs=1e-3)
    assert r.loglik == pytest.approx(r.loglik_lme4 + (c["loglik_saturated"] if c["nAGQ"] > 1
                                                       else 0.0), abs=1e-9)
    assert r.npar == c["logLik_df"]


@pytest.mark.parametrize("name", EXACT)
def test_fixed_effects_and_ses(name):
    c, r = CASES[name], fit(name)
    fe = r.fixef()
    assert [_term(t) for t in c["fixed"]] == list(fe.index)
    for t, v in c["fixed"].items():
        row = fe.loc[_term(t)]
        se_ref = v["se_rx"] if c["family"] == "Gamma" else v["se"]
        tol = max(5e-4 * abs(v["estimate"]), 1e-3 * v["se"])
        assert abs(row["estimate"] - v["estimate"]) <= tol, t
        assert abs(row["se"] - se_ref) <= 1e-3 * se_ref, t


@pytest.mark.parametrize("name", EXACT)
def test_variance_components(name):
    c, r = CASES[name], fit(name)
    vc = r.varcorr()
    for g, gv in c["varcorr"].items():
        for t, sd in gv["sd"].items():
            ours = vc[(vc.group == g) & (vc.term == _term(t)) & (vc.term_b == "")]["sd"]
            assert float(ours.iloc[0]) == pytest.approx(sd, rel=5e-4), (g, t)
        for rec in gv["cor_records"]:
            ours = vc[(vc.group == g) & (vc.term == _term(rec["term1"]))
                      & (vc.term_b == _term(rec["term2"]))]["corr"]
            assert float(ours.iloc[0]) == pytest.approx(rec["corr"], abs=5e-4)


def test_grouse_reaches_lme4s_restart_optimum():
    c, r = CASES["grouse"], fit("grouse")
    rs = c["restart"]
    assert r.loglik == pytest.approx(rs["logLik"], abs=1e-3)   # not lme4's -987.960
    assert r.loglik > c["logLik"] + 0.02
    for t, est in rs["fixed"].items():
        assert r.fixef().loc[_term(t), "estimate"] == pytest.approx(est, abs=2e-3)
    vc = r.varcorr()
    for g, gv in rs["varcorr"].items():
        sd = float(vc[vc.group == g]["sd"].iloc[0])
        assert sd == pytest.approx(gv["sd"]["(Intercept)"], rel=2e-3)


@pytest.mark.parametrize("name", [_params("sim_nb_offset"), _params("grouse_nb")])
def test_negative_binomial_theta(name):
    c, r = CASES[name], fit(name)
    # glmer.nb's Brent search (tol 5e-5 on log theta) vs ours: the same theta to ~1e-4
    assert r.nb_theta == pytest.approx(c["nb_theta"], rel=2e-4)
    for t, v in c["fixed"].items():
        row = r.fixef().loc[_term(t)]
        assert abs(row["estimate"] - v["estimate"]) <= max(5e-4 * abs(v["estimate"]), 1e-3 * v["se"]) * 5
        assert row["se"] == pytest.approx(v["se"], rel=2e-3)


def test_gamma_against_lme4():
    c, r = CASES["sim_gamma_log"], fit("sim_gamma_log")
    assert r.vcov_method == "RX"
    for t, v in c["fixed"].items():
        row = r.fixef().loc[_term(t)]
        assert abs(row["estimate"] - v["estimate"]) < 0.1 * v["se_rx"]
        assert row["se"] == pytest.approx(v["se_rx"], rel=0.01)
    assert r.sigma == pytest.approx(c["sigma"], rel=2e-3)


@pytest.mark.parametrize("name", ["cbpp_laplace", "cbpp_agq9", "contraception", "verbagg"])
def test_conditional_modes_and_sds(name):
    c, r = CASES[name], fit(name)
    re = r.ranef()
    for fac, info in c["ranef"].items():
        df = re[fac]
        for t in info["terms"]:
            modes = df.xs(_term(t), level="term")
            assert list(modes.index) == [str(v) for v in info["levels"]]
            np.testing.assert_allclose(modes["mode"], info["condval"][t], atol=2e-3, rtol=2e-3)
            np.testing.assert_allclose(modes["cond_sd"], info["condsd"][t], rtol=2e-3)


@pytest.mark.parametrize("name", ["cbpp_laplace", "cbpp_probit", "contraception", "verbagg",
                                  "sim_gamma_log", _params("grouse_olre"), "sim_pois_offset"])
def test_icc_r2_match_performance(name):
    c, r = CASES[name], fit(name)
    p = c["performance"]
    tol = 2e-3 if name not in SHORT else 1e-2
    if name == "grouse_olre":
        # performance's mu comes from a refit null model (TICKS ~ 1 + the three effects) whose
        # lme4 criterion is very flat in the intercept (an observation-level effect): the
        # refits stop at intercepts 0.4228 (ours) and 0.4389 (insight's), the log-likelihoods
        # within 0.01 of each other; the ICC / R² then agree to 0.5%
        tol = 1e-2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        icc, r2 = r.icc(), r.r2()
    assert icc.loc["icc", "estimate"] == pytest.approx(p["icc_adjusted"], rel=tol)
    assert icc.loc["icc_unadjusted", "estimate"] == pytest.approx(p["icc_unadjusted"], rel=tol)
    assert r2.loc["r2_marginal", "estimate"] == pytest.approx(p["r2_marginal"], rel=tol)
    assert r2.loc["r2_conditional", "estimate"] == pytest.approx(p["r2_conditional"], rel=tol)


def test_predictions_match_lme4():
    c, r = CASES["cbpp_laplace"], fit("cbpp_laplace")
    np.testing.assert_allclose(r.predict().estimate.to_numpy()[:10], c["eta_head"], rtol=1e-4)
    np.testing.assert_allclose(r.predict(type="response").estimate.to_numpy()[:10],
                               c["fitted_head"], rtol=1e-4)
