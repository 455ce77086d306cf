"""Internal consistency of the pinned glmer references (tests/fixtures/glmer_reference.json).

The JSON is written by tests/r/make_glmer_fixtures.R (lme4 1.1-31, performance 0.10.2);
these checks need no R. They guard the fixture itself (every number obeys the
relations lme4 and performance define it by) and tie it to the data bayes_hlm
bundles: the file R read is byte for byte the bundled one, with the same rows
and levels, so later GLMM tests can compare against it directly.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from bayes_hlm import datasets

FIXTURES = Path(__file__).parent / "fixtures"
REF = json.loads((FIXTURES / "glmer_reference.json").read_text())
CASES = REF["cases"]
GAUSSIAN = REF["gaussian_cases"]
ALL = {**CASES, **GAUSSIAN}
BUNDLED = ("cbpp", "grouseticks", "verbagg", "contraception")
#: distribution-specific latent variance of the binomial links (performance / Nakagawa et al. 2017)
BINOMIAL_LATENT = {"logit": math.pi**2 / 3, "probit": 1.0, "cloglog": math.pi**2 / 6}


def _close(a, b, rel=1e-10, abs_=1e-12):
    return a == pytest.approx(b, rel=rel, abs=abs_)


def test_meta_versions_and_cases():
    meta = REF["meta"]
    assert meta["packages"]["lme4"] == "1.1.31"
    assert meta["packages"]["performance"] == "0.10.2"
    assert meta["R_version"].startswith("R version 4.2.2")
    assert "bobyqa" in meta["control"] and "1e5" in meta["control"]
    required = {"cbpp_laplace", "cbpp_agq9", "cbpp_probit", "cbpp_cloglog", "grouse", "grouse_olre",
                "grouse_nb", "verbagg", "contraception", "sim_gamma_log", "sim_nb_offset"}
    assert required <= set(CASES)
    assert {"machines_double_bar", "machines_independent"} <= set(GAUSSIAN)


# --------------------------------------------------------------------------
# the data R saw == the data bayes_hlm bundles
# --------------------------------------------------------------------------


def _bundled_bytes(name: str) -> bytes:
    with resources.files("bayes_hlm.datasets").joinpath("data", f"{name}.csv.gz").open("rb") as fh:
        return gzip.decompress(fh.read())


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_file_is_the_one_r_read(name):
    assert hashlib.md5(_bundled_bytes(name)).hexdigest() == REF["datasets"][name]["md5"]


def _check_frame_against_r(df: pd.DataFrame, info: dict):
    assert len(df) == info["n"]
    assert list(df.columns) == list(info["columns"])
    for col, c in info["columns"].items():
        assert int(df[col].isna().sum()) == c["n_na"] == 0, col
        if c["type"] in ("factor", "ordered"):
            cats = list(df[col].cat.categories)
            assert len(cats) == c["n_levels"], col
            if c.get("levels") is not None:
                assert cats == c["levels"], col
            assert cats[: len(c["first_levels"])] == c["first_levels"] and cats[-1] == c["last_level"], col
        else:
            assert df[col].dtype.kind in "if", col
            if c["type"] == "integer":  # read.csv's guess: every value a whole number (HEIGHT too)
                assert (df[col] == np.round(df[col])).all(), col
            assert float(df[col].sum()) == pytest.approx(c["sum"], rel=1e-12), col


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_dataset_matches_what_r_saw(name):
    _check_frame_against_r(datasets.load(name), REF["datasets"][name])


def _fixture_frame(name: str) -> pd.DataFrame:
    info = REF["datasets"][name]
    path = Path(__file__).parent.parent / info["file"]
    assert hashlib.md5(path.read_bytes()).hexdigest() == info["md5"], "CSV and JSON were not written together"
    factors = {c: v["levels"] for c, v in info["columns"].items() if v["type"] == "factor"}
    df = pd.read_csv(path, dtype={c: str for c in factors}, keep_default_na=False, na_values=["NA"])
    for c, levels in factors.items():
        df[c] = pd.Categorical(df[c], categories=levels)
    return df


@pytest.mark.parametrize("name", ["glmm_sim", "machines"])
def test_fixture_csvs_match_what_r_saw(name):
    _check_frame_against_r(_fixture_frame(name), REF["datasets"][name])


@pytest.mark.parametrize("case", sorted(ALL))
def test_case_n_and_grouping_levels(case):
    c = ALL[case]
    info = REF["datasets"][c["data"]]
    assert c["n_obs"] == info["n"]  # no row dropped
    for group, factor in c["factor_formula_name"].items():
        n = c["ngrps"][factor]
        if factor in info["columns"]:
            assert n == info["columns"][factor]["n_levels"]
        else:  # an interaction such as Worker:Machine
            parts = factor.split(":")
            assert n <= math.prod(info["columns"][p]["n_levels"] for p in parts)
        re = c["ranef"][factor]
        assert re["n_levels"] == n == len(re["levels"])
        if factor in info["columns"] and info["columns"][factor].get("levels"):
            assert re["levels"] == info["columns"][factor]["levels"]  # ranef rows in R's level order
        for term in re["terms"]:
            assert len(re["condval"][term]) == n
            assert all(s > 0 for s in re["condsd"][term])


# --------------------------------------------------------------------------
# likelihood bookkeeping
# --------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_information_criteria(case):
    c = CASES[case]
    ll, k, n = c["logLik"], c["logLik_df"], c["n_obs"]
    n_theta = len(c["theta"])
    assert k == len(c["fixed"]) + n_theta + (c["family"] in ("Gamma", "negative_binomial"))
    assert _close(c["AIC"], -2 * ll + 2 * k)
    assert _close(c["BIC"], -2 * ll + k * math.log(n))
    assert _close(c["minus2logLik"], -2 * ll)
    assert _close(c["objective"], -2 * ll)  # lme4 minimises -2 logLik (as it reports it)
    assert _close(c["AIC_full"], -2 * c["logLik_full"] + 2 * k)
    assert _close(c["BIC_full"], -2 * c["logLik_full"] + k * math.log(n))
    # deviance(m) is lme4's conditional deviance (sum of squared deviance residuals), not -2 logLik
    assert _close(c["deviance"], c["devcomp"]["drsum"])
    assert _close(c["devcomp"]["pwrss"], c["devcomp"]["wrss"] + c["devcomp"]["ussq"])
    if c["nAGQ"] > 1:
        assert _close(c["logLik_full"], c["logLik"] + c["loglik_saturated"])
    else:
        assert c["logLik_full"] == c["logLik"]
    if c["family"] == "binomial" and c["weights"] is None and c["data"] != "cbpp":
        assert c["loglik_saturated"] == 0  # Bernoulli: the saturated model is exact


def test_cbpp_laplace_and_adaptive_quadrature():
    lap, agq, nagq0 = CASES["cbpp_laplace"], CASES["cbpp_agq9"], CASES["cbpp_nagq0"]
    # issue #16's numbers: lme4 prints -50.005 for nAGQ = 9, -92.027 under Laplace
    assert agq["logLik"] == pytest.approx(-50.005, abs=5e-4)
    assert lap["logLik"] == pytest.approx(-92.027, abs=5e-4)
    assert agq["loglik_saturated"] == lap["loglik_saturated"]
    # the exact marginal likelihood by numerical integration, at each fit's estimates:
    # 9-point AGQ is exact to ~1e-5 here, and its optimum is at least as likely as
    # Laplace's estimates under the exact likelihood
    assert agq["logLik_full"] == pytest.approx(agq["logLik_integrate"], abs=1e-4)
    assert agq["logLik_full"] >= lap["logLik_integrate"] - 1e-4
    assert abs(lap["logLik_integrate"] - lap["logLik"]) < 0.1  # Laplace is close, not exact
    # nAGQ = 0 (fixed effects inside PIRLS) is a worse optimum of the Laplace criterion
    assert nagq0["logLik"] < lap["logLik"]
    for c in (lap, agq, nagq0):
        assert not c["singular"] and c["converged_messages"] == []


def test_proportion_with_weights_equals_cbind():
    a, b = CASES["cbpp_laplace"], CASES["cbpp_weights"]
    assert b["weights"] == "size"
    assert b["logLik"] == pytest.approx(a["logLik"], rel=1e-9)
    for name, v in a["fixed"].items():
        assert b["fixed"][name]["estimate"] == pytest.approx(v["estimate"], rel=1e-6, abs=1e-8)
        assert b["fixed"][name]["se"] == pytest.approx(v["se"], rel=1e-5)
    assert b["varcorr"]["herd"]["sd"]["(Intercept)"] == pytest.approx(a["varcorr"]["herd"]["sd"]["(Intercept)"], rel=1e-6)


# --------------------------------------------------------------------------
# fixed effects, variance components, theta
# --------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(ALL))
def test_fixed_effect_table(case):
    c = ALL[case]
    names = list(c["fixed"])
    assert names[0] == "(Intercept)"
    vcov = c.get("vcov_fixed")
    for i, name in enumerate(names):
        row = c["fixed"][name]
        stat = row["z"] if "z" in row else row["t"]
        assert _close(stat, row["estimate"] / row["se"], rel=1e-9)
        if case in CASES:  # glmer: normal p-values ("Pr(>|z|)") even for the t column of Gamma
            assert row["p"] == pytest.approx(2 * stats.norm.sf(abs(stat)), rel=1e-6, abs=1e-300)
            assert math.sqrt(vcov[name][i]) == pytest.approx(row["se"], rel=1e-10)
            assert row["se_rx"] > 0
        else:  # lmerTest: Satterthwaite t
            assert row["p"] == pytest.approx(2 * stats.t.sf(abs(stat), row["df"]), rel=1e-6)
    if vcov is not None:
        m = np.array([vcov[n] for n in names])
        np.testing.assert_allclose(m, m.T, rtol=1e-8, atol=1e-14)


def _blocks(c):
    """Split lme4's theta (column-major lower triangles, in VarCorr group order) per group."""
    theta = list(c["theta"].values())
    out, pos = {}, 0
    for group, vc in c["varcorr"].items():
        k = len(vc["sd"])
        tri = theta[pos : pos + k * (k + 1) // 2]
        pos += k * (k + 1) // 2
        lam = np.zeros((k, k))
        lam[np.triu_indices(k)[::-1]] = tri  # lower triangle, column by column
        out[group] = lam
    assert pos == len(theta)
    return out


@pytest.mark.parametrize("case", sorted(ALL))
def test_theta_gives_sds_and_correlations(case):
    c = ALL[case]
    # sigma scales theta: 1 for binomial/Poisson/NB, the residual SD for Gaussian and Gamma
    sigma = c["sigma"]
    if c.get("family") in ("binomial", "poisson", "negative_binomial"):
        assert sigma == 1
    for group, lam in _blocks(c).items():
        cov = sigma**2 * lam @ lam.T
        sd = np.sqrt(np.diag(cov))
        np.testing.assert_allclose(sd, list(c["varcorr"][group]["sd"].values()), rtol=1e-9)
        terms = list(c["varcorr"][group]["sd"])
        recs = c["varcorr"][group]["cor_records"]
        assert len(recs) == len(terms) * (len(terms) - 1) // 2
        for r in recs:
            i, j = terms.index(r["term1"]), terms.index(r["term2"])
            assert r["corr"] == pytest.approx(cov[i, j] / (sd[i] * sd[j]), rel=1e-8, abs=1e-12)
            assert c["varcorr"][group]["cor"][f"{r['term1']},{r['term2']}"] == r["corr"]


def test_correlated_slope_and_machines_expansion():
    vc = CASES["contraception"]["varcorr"]["district"]
    assert list(vc["sd"]) == ["(Intercept)", "urbanY"]
    assert -1 < vc["cor"]["(Intercept),urbanY"] < 0
    # issue #19 item 2: lme4 splits (Machine || Worker) into (1 | Worker) + (0 + Machine | Worker),
    # so the three machine effects stay correlated; four independent variances is another model
    db, ind = GAUSSIAN["machines_double_bar"], GAUSSIAN["machines_independent"]
    assert db["factor_formula_name"] == {"Worker": "Worker", "Worker.1": "Worker"}
    assert list(db["varcorr"]["Worker.1"]["sd"]) == ["MachineA", "MachineB", "MachineC"]
    assert len(db["varcorr"]["Worker.1"]["cor_records"]) == 3
    assert db["reml_criterion"] == pytest.approx(208.31, abs=5e-3)
    assert ind["reml_criterion"] == pytest.approx(211.94, abs=5e-3)
    assert len(ind["varcorr"]) == 4 and all(not g["cor_records"] for g in ind["varcorr"].values())
    for c in (db, ind):
        assert _close(c["AIC"], -2 * c["logLik"] + 2 * c["logLik_df"])
        assert _close(c["reml_criterion"], -2 * c["logLik"])


def test_negative_binomial_and_gamma():
    for name in ("grouse_nb", "sim_nb_offset"):
        c = CASES[name]
        assert c["family"] == "negative_binomial" and c["link"] == "log"
        assert c["nb_theta"] > 0
        assert c["family_r"] == f"Negative Binomial({c['nb_theta']:.4f})".replace(".0000", "")
    assert all(c["nb_theta"] is None for n, c in CASES.items() if not n.endswith(("_nb", "nb_offset")))
    # NB absorbs the overdispersion that the Poisson fit cannot: a much higher likelihood
    assert CASES["grouse_nb"]["logLik"] > CASES["grouse"]["logLik"] + 50
    g = CASES["sim_gamma_log"]
    assert g["family"] == "Gamma" and g["link"] == "log"
    r = g["gamma_recipe"]
    assert _close(r["dispersion"], g["deviance"] / g["n_obs"])
    assert _close(r["aic_term_by_hand"], r["aic_term"])
    assert _close(r["objective_by_hand"], g["objective"], rel=1e-9)
    assert _close(r["sigma_by_hand"], g["sigma"]) and _close(g["sigma"], g["devcomp"]["sigmaML"])
    # lme4's Hessian SEs are unusable for this Gamma fit; the RX ones are the reference
    for row in g["fixed"].values():
        assert row["se_rx"] > 10 * row["se"]


def test_restarts_recorded_where_lme4_stopped_short():
    for name, c in CASES.items():
        has_msg = bool(c["converged_messages"])
        assert ("restart" in c) == (has_msg and c["family"] != "negative_binomial"), name
        if "restart" in c:
            # where lme4 stops short, a correct engine must reach at least the better of the two
            assert abs(c["restart"]["logLik"] - c["logLik"]) < 0.1
    assert CASES["grouse"]["restart"]["logLik"] > CASES["grouse"]["logLik"]


def test_offset_cases_have_offsets():
    assert "offset(log(exposure))" in CASES["sim_nb_offset"]["formula"]
    c = CASES["sim_pois_offset"]
    assert "offset(log(exposure))" in c["formula"] and "(x | g)" in c["formula"]
    assert len(c["varcorr"]["g"]["cor_records"]) == 1


# --------------------------------------------------------------------------
# performance::icc / r2_nakagawa
# --------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_icc_and_r2_from_variance_components(case):
    p = CASES[case]["performance"]
    vf, vr, ve = p["var_fixed"], p["var_random"], p["var_residual"]
    assert _close(ve, p["var_distribution"] + p["var_dispersion"])
    total = vf + vr + ve
    assert _close(p["icc_adjusted"], vr / (vr + ve), rel=1e-8)
    assert _close(p["icc_conditional"], vr / total, rel=1e-8)
    assert p["icc_unadjusted"] == p["icc_conditional"]
    assert _close(p["r2_marginal"], vf / total, rel=1e-8)
    assert _close(p["r2_conditional"], (vf + vr) / total, rel=1e-8)
    c = CASES[case]
    if c["family"] == "binomial":
        assert _close(p["var_distribution"], BINOMIAL_LATENT[c["link"]])
    if c["family"] == "poisson":
        mu = p["null_model_mu"]
        assert _close(mu, math.exp(p["null_model_intercept"]))
        approx = p["approximations"]
        assert _close(approx["lognormal"]["var_distribution"], math.log1p(1 / mu))
        assert _close(approx["delta"]["var_distribution"], 1 / mu)
        assert _close(approx["trigamma"]["var_distribution"], float(special.polygamma(1, mu)))
        for key in ("icc_adjusted", "icc_conditional", "r2_marginal", "r2_conditional"):
            assert _close(approx["lognormal"][key], p[key], rel=1e-8)  # performance's default
        # for small mu: lognormal < delta < trigamma, so the ICC/R2 order reverses
        assert approx["lognormal"]["icc_adjusted"] > approx["delta"]["icc_adjusted"] > approx["trigamma"]["icc_adjusted"]


def test_observation_level_effect_is_dispersion_in_performance():
    c = CASES["grouse_olre"]
    p = c["performance"]
    assert p["var_dispersion"] == pytest.approx(c["varcorr"]["INDEX"]["sd"]["(Intercept)"] ** 2, rel=1e-8)
    other = sum(c["varcorr"][g]["sd"]["(Intercept)"] ** 2 for g in ("BROOD", "LOCATION"))
    assert p["var_random"] == pytest.approx(other, rel=1e-8)
