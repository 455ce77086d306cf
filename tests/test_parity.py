"""Issue 9: everyday parity with lme4 / lmerTest / brms / Bambi on sleepstudy and hsb82.

Small fits only (2 chains x 200 draws, PyMC sampler); refitting features
(update, kfold, prior_sensitivity) use even smaller refits.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import bayes_hlm as bh
from bayes_hlm.backends import naming
from bayes_hlm.reml import anova, ranova, reml
from bayes_hlm.results import hypotheses as H
from bayes_hlm.results import sensitivity as SE
from bayes_hlm.results import standardize as ST
from bayes_hlm.results import tidy as T
from bayes_hlm.results import workflow as W

SMALL = dict(method="marginal", sampler="pymc", chains=2, draws=200, tune=200, progressbar=False,
             warn=False)
TINY = dict(draws=100, tune=100)
SLEEP_F = "Reaction ~ Days + (Days | Subject)"
HSB_F = "mAch ~ cses * sector + sx + (1 | school)"


def _fit(formula, data, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bh.fit(formula, data, seed=seed, **SMALL)


@pytest.fixture(scope="module")
def sleep():
    return _fit(SLEEP_F, bh.datasets.load("sleepstudy"), 21)


@pytest.fixture(scope="module")
def hsb():
    return _fit(HSB_F, bh.datasets.load("hsb82"), 22)


@pytest.fixture(scope="module")
def sleep_reml():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return reml(SLEEP_F, bh.datasets.load("sleepstudy"))


@pytest.fixture(scope="module")
def hsb_reml():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return reml(HSB_F, bh.datasets.load("hsb82"))


def _beta(result, name):
    j = list(result.design.fixed_names).index(name)
    return result._draws.flat(naming.FIXED)[:, j]


# ------------------------------------------------------------- update / compare
@pytest.mark.parametrize("new, expected", [
    (". ~ . + x", "Reaction ~ Days + (Days | Subject) + x"),
    (". ~ . - (Days | Subject) + (1 | Subject)", "Reaction ~ Days + (1 | Subject)"),
    ("~ . - Days", "Reaction ~ (Days | Subject)"),
    ("log(.) ~ .", "log(Reaction) ~ Days + (Days | Subject)"),
    (". ~ . - 1", "Reaction ~ Days + (Days | Subject) - 1"),
    ("y ~ a * b", "y ~ a * b"),
])
def test_update_formula(new, expected):
    assert W.update_formula(SLEEP_F, new) == expected


def test_update_formula_unknown_term():
    with pytest.raises(bh.FormulaError):
        W.update_formula(SLEEP_F, ". ~ . - foo")


def test_update_and_compare_sleepstudy(sleep):
    m0 = sleep.update(". ~ . - (Days | Subject) + (1 | Subject)", warn=False, **TINY)
    assert m0.formula == "Reaction ~ Days + (1 | Subject)"
    assert m0.info.method == sleep.info.method and m0.info.seed == sleep.info.seed
    assert m0.info.draws == 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tab = W.compare({"slopes": sleep, "intercepts": m0})
    assert list(tab.index) == ["slopes", "intercepts"]  # random slopes clearly win
    assert {"elpd", "elpd_diff", "dse", "weight", "n_pareto_k_bad", "max_pareto_k"} <= set(tab.columns)
    assert tab.loc["intercepts", "elpd_diff"] < 0


def test_update_new_column_needs_data(sleep):
    with pytest.raises(bh.FormulaError, match="pass data"):
        sleep.update(". ~ . + nonexistent")


def test_update_keeps_user_priors(sleep):
    from types import SimpleNamespace

    from bayes_hlm.spec.priors import resolve_priors

    ps = resolve_priors(sleep.design, {"Days": bh.Prior("Normal", mu=0, sigma=5)})
    assert set(W.user_priors(SimpleNamespace(design=sleep.design, priors=ps))) == {"Days"}
    assert W.user_priors(sleep) == {}


def test_kfold_grouped_sleepstudy(sleep):
    folds = W.make_folds(sleep, k=None, group="Subject")
    assert len(np.unique(folds)) == 18  # leave-one-group-out
    kf = sleep.kfold(k=2, group="Subject", seed=1, **TINY)
    assert kf.n_folds == 2 and kf.kind == "loo_kfold"
    assert np.isfinite(kf.elpd) and kf.elpd < 0 and kf.se > 0
    assert np.asarray(kf.elpd_i).shape == (180,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loo = sleep.loo()
    assert kf.elpd < loo.elpd  # new subjects are harder to predict than held-out rows


def test_heldout_loglik_integrates_new_group(sleep):
    from scipy.stats import norm

    new = sleep.spec.data.iloc[:3].copy()
    new["Subject"] = "new-subject"
    y = sleep.design.y[:3]
    ll = W.heldout_loglik(sleep, new, y, max_draws=50)
    src = sleep._draws
    idx = src.thinned(50)
    cov = src.covariance("Subject")[idx]
    z = np.column_stack([np.ones(3), new["Days"].to_numpy()])
    mu = src.flat(naming.FIXED)[idx] @ z.T
    var = src.flat(naming.SIGMA)[idx, None] ** 2 + np.einsum("nq,sqr,nr->sn", z, cov, z)
    np.testing.assert_allclose(ll, norm.logpdf(y, mu, np.sqrt(var)))


def test_reml_anova_ranova(sleep_reml, hsb_reml):
    d = bh.datasets.load("sleepstudy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m0 = reml("Reaction ~ Days + (1 | Subject)", d)
        tab = anova(m0, sleep_reml)
    assert tab["Chisq"].iloc[1] == pytest.approx(42.14, abs=0.05)  # lme4: 42.139
    assert tab["Df"].iloc[1] == 2
    rt = ranova(hsb_reml)
    assert rt.loc["(1 | school)", "p"] < 1e-10


# -------------------------------------------------------------------- simulate
def test_simulate(sleep):
    s = sleep.simulate(50, seed=3)
    assert s.shape == (50, 180) and list(s.columns) == list(sleep.design.row_index)
    assert abs(s.to_numpy().mean() - sleep.design.y.mean()) < 10
    arr = sleep.simulate(5, seed=3, as_frame=False)
    assert isinstance(arr, np.ndarray) and arr.shape == (5, 180)


def test_predict_group_effects_and_new_groups(sleep):
    p_all = sleep.predict(group_effects=True, max_draws=100)
    p_list = sleep.predict(group_effects=["Subject"], max_draws=100)
    np.testing.assert_allclose(p_all["mean"], p_list["mean"])
    new = sleep.spec.data.iloc[:2].assign(Subject="zzz")
    zero = sleep.predict(new, new_groups="zero", max_draws=100)
    pop = sleep.predict(new, group_effects=False, max_draws=100)
    np.testing.assert_allclose(zero["mean"], pop["mean"])
    samp = sleep.predict(new, new_groups="sample", max_draws=100)
    assert (samp["sd"] > zero["sd"]).all()


# -------------------------------------------------------------------- intervals
def test_confint_hdi_eti(sleep):
    ci = sleep.confint()
    assert list(ci.index) == list(sleep.summary().index)
    assert (ci["lower"] < ci["estimate"]).all() and (ci["estimate"] < ci["upper"]).all()
    eti = sleep.confint(prob=0.9, kind="eti", pars=["Days"])
    np.testing.assert_allclose(eti.loc["Days", ["lower", "upper"]],
                               np.quantile(_beta(sleep, "Days"), [0.05, 0.95]))
    with_r = sleep.confint(ranef=True)
    assert len(with_r) == len(ci) + 36


# ------------------------------------------------------------------ hypotheses
def test_hypothesis_sleepstudy(sleep):
    h = sleep.hypothesis(["Days > 0", "Days - 2*Intercept = 0", "sigma < 100"])
    assert list(h.columns) == ["Hypothesis", "Estimate", "Est.Error", "CI.Lower", "CI.Upper",
                               "Evid.Ratio", "Post.Prob", "Star"]
    assert h.loc[0, "Post.Prob"] == 1.0 and h.loc[0, "Star"] == "*"
    assert h.loc[0, "CI.Upper"] == np.inf
    d = _beta(sleep, "Days") - 2 * _beta(sleep, "Intercept")
    assert h.loc[1, "Estimate"] == pytest.approx(d.mean())
    assert h.loc[1, "CI.Lower"] == pytest.approx(np.quantile(d, 0.025))
    assert h.loc[1, "Evid.Ratio"] < 1e-3  # far from the point: evidence against
    assert h.loc[2, "Post.Prob"] == 1.0
    # a point near the posterior mass gets Savage-Dickey evidence in its favour
    near = sleep.hypothesis(f"Days = {_beta(sleep, 'Days').mean():.3f}")
    assert near.loc[0, "Evid.Ratio"] > 1
    sd = sleep.hypothesis("sd_Subject__Days > 0")
    assert sd.loc[0, "Post.Prob"] == 1.0
    with pytest.raises(bh.BayesHLMError, match="unknown"):
        sleep.hypothesis("Weeks > 0")


def test_hypothesis_hsb82_bayes_and_reml(hsb, hsb_reml):
    h = hsb.hypothesis("sectorCatholic > 0")
    assert h.loc[0, "Post.Prob"] > 0.99
    hr = H.hypothesis_reml(hsb_reml, ["sectorCatholic = 0", "cses + cses:sectorCatholic > 0"])
    fe = hsb_reml.fixef()
    assert hr.loc[0, "estimate"] == pytest.approx(fe.loc["sectorCatholic", "estimate"])
    assert hr.loc[0, "p.value"] == pytest.approx(fe.loc["sectorCatholic", "p"], rel=1e-6)
    assert hr.loc[0, "df"] == pytest.approx(fe.loc["sectorCatholic", "df"], rel=1e-6)
    assert hr.loc[1, "estimate"] == pytest.approx(fe.loc["cses", "estimate"]
                                                 + fe.loc["cses:sectorCatholic", "estimate"])
    # lincom = the same combination
    lc = hsb.lincom({"cses": 1, "cses:sectorCatholic": 1})
    draws = _beta(hsb, "cses") + _beta(hsb, "cses:sectorCatholic")
    assert lc.loc[0, "estimate"] == pytest.approx(draws.mean())
    with pytest.raises(bh.BayesHLMError, match="linear"):
        H.hypothesis_reml(hsb_reml, "cses * sectorCatholic = 0")


# ---------------------------------------------------- marginal means / contrasts
def test_emmeans_contrasts_hsb82(hsb, hsb_reml):
    em = hsb.emmeans("sector")
    assert list(em["sector"]) == ["Public", "Catholic"]
    cbar = float(hsb.spec.data["cses"].mean())
    b = {n: _beta(hsb, n) for n in hsb.design.fixed_names}
    public = b["Intercept"] + b["cses"] * cbar + 0.5 * b["sxFemale"]
    assert em.loc[0, "estimate"] == pytest.approx(public.mean())
    emr = H.emmeans_reml(hsb_reml, "sector")
    assert {"df", "p.value"} <= set(emr.columns)
    # Bayesian and REML marginal means agree within the posterior SD scale
    assert np.all(np.abs(em["estimate"] - emr["estimate"]) < 2 * em["std.error"])
    by = hsb.emmeans("sector", by="sx")
    assert len(by) == 4
    con = hsb.contrasts("sector")
    assert list(con["contrast"]) == ["Public - Catholic"]
    diff = -(b["sectorCatholic"] + b["cses:sectorCatholic"] * cbar)
    assert con.loc[0, "estimate"] == pytest.approx(diff.mean())
    assert con.loc[0, "pd"] > 0.99
    conr = H.contrasts_reml(hsb_reml, "sector")
    fe = hsb_reml.fixef()
    assert conr.loc[0, "estimate"] == pytest.approx(
        -(fe.loc["sectorCatholic", "estimate"] + fe.loc["cses:sectorCatholic", "estimate"] * cbar))
    four = H.contrasts_reml(hsb_reml, ["sector", "sx"])
    assert len(four) == 6 and four.attrs["adjust"] == "tukey"
    within = H.contrasts_reml(hsb_reml, "sx", by="sector", adjust="bonferroni")
    assert list(within["sector"]) == ["Public", "Catholic"]


def test_emmeans_numeric_at_sleepstudy(sleep, sleep_reml):
    em = sleep.emmeans("Days", at={"Days": [0, 9]})
    d9 = _beta(sleep, "Intercept") + 9 * _beta(sleep, "Days")
    assert em.loc[1, "estimate"] == pytest.approx(d9.mean())
    emr = H.emmeans_reml(sleep_reml, "Days", at={"Days": [0]})
    assert emr.loc[0, "estimate"] == pytest.approx(sleep_reml.beta[0])
    assert emr.loc[0, "std.error"] == pytest.approx(np.sqrt(sleep_reml.vcov()[0, 0]))


def test_slopes(hsb, hsb_reml, sleep):
    sl = hsb.slopes("cses", at={"sector": ["Public", "Catholic"]})
    assert list(sl["sector"]) == ["Public", "Catholic"]
    assert sl.loc[0, "estimate"] == pytest.approx(_beta(hsb, "cses").mean(), rel=1e-6)
    cath = _beta(hsb, "cses") + _beta(hsb, "cses:sectorCatholic")
    assert sl.loc[1, "estimate"] == pytest.approx(cath.mean(), rel=1e-6)
    slr = H.slopes_reml(hsb_reml, "cses", at={"sector": ["Public", "Catholic"]})
    fe = hsb_reml.fixef()
    assert slr.loc[0, "estimate"] == pytest.approx(fe.loc["cses", "estimate"], rel=1e-6)
    assert slr.loc[0, "std.error"] == pytest.approx(fe.loc["cses", "se"], rel=1e-5)
    assert sleep.slopes("Days").loc[0, "estimate"] == pytest.approx(_beta(sleep, "Days").mean(),
                                                                    rel=1e-6)


# ------------------------------------------------------------------------ tidy
@pytest.mark.parametrize("which", ["sleep", "hsb"])
def test_tidy_bayes_and_reml(which, request):
    fit = request.getfixturevalue(which)
    rm = request.getfixturevalue(f"{which}_reml")
    cols = ["effect", "group", "level", "term", "estimate", "std.error", "conf.low", "conf.high"]
    tb = fit.tidy()
    assert list(tb.columns) == cols
    assert set(tb["effect"]) == {"fixed", "ran_pars"}
    assert "sd__Observation" in set(tb["term"])
    tr = T.tidy(rm)
    assert list(tr.columns)[:8] == cols and "p.value" in tr.columns
    np.testing.assert_allclose(tr.query("effect == 'fixed'")["estimate"], rm.beta)
    assert list(tb["term"]) == list(tr["term"])  # same rows in the same order
    rv = fit.tidy(effects="ran_vals")
    n = sum(g.n_levels * g.q for g in fit.design.groups)
    assert len(rv) == n and len(T.tidy(rm, effects=["ran_vals"])) == n
    md, tex = tb.to_markdown(), tb.to_latex()
    assert md.startswith("|") and "sd__Observation" in md and "\\begin{tabular}" in tex


def test_tidy_sleep_values(sleep, sleep_reml):
    tb = sleep.tidy(conf_method="hdi", conf_level=0.9)
    row = tb.set_index("term").loc["Days"]
    d = _beta(sleep, "Days")
    assert row["estimate"] == pytest.approx(d.mean()) and row["std.error"] == pytest.approx(d.std(ddof=1))
    tr = T.tidy(sleep_reml).set_index("term")
    assert tr.loc["cor__Intercept.Days", "estimate"] == pytest.approx(0.0656, abs=2e-3)  # lme4
    assert tr.loc["sd__Observation", "estimate"] == pytest.approx(25.592, abs=1e-2)


# ----------------------------------------------------------------- standardize
@pytest.mark.parametrize("which", ["sleep", "hsb"])
def test_standardize(which, request):
    fit = request.getfixturevalue(which)
    rm = request.getfixturevalue(f"{which}_reml")
    X, y = fit.design.X, fit.design.y
    j = 1  # the first slope
    name = fit.design.fixed_names[j]
    f = X[:, j].std(ddof=1) / y.std(ddof=1)
    st, draws = fit.standardize(return_draws=True)
    assert st.loc[0, "estimate"] == 0.0  # intercept, as effectsize
    assert st.loc[j, "term"] == name
    assert st.loc[j, "estimate"] == pytest.approx((_beta(fit, name) * f).mean())
    sr = ST.standardize_reml(rm)
    assert sr.loc[j, "estimate"] == pytest.approx(rm.beta[j] * f)
    assert sr.loc[j, "p.value"] == pytest.approx(rm.fixef()["p"].iloc[j], rel=1e-6)


def test_center_helper():
    d = bh.center(bh.datasets.load("hsb82"), "ses", by="school", name="cses2", mean_name="m2")
    np.testing.assert_allclose(d["cses2"], d["cses"], atol=1e-6)


# ----------------------------------------------------------------------- priors
def test_scale_prior():
    assert SE.scale_prior(bh.Prior("Normal", mu=1, sigma=2), 3).params == {"mu": 1.0, "sigma": 6.0}
    assert SE.scale_prior(bh.Prior("Exponential", lam=2), 2).params == {"lam": 1.0}
    assert SE.scale_prior(bh.Prior("LKJ", eta=2), 5).params == {"eta": 2.0}


def test_prior_sensitivity_sleepstudy(sleep):
    tab, fits = sleep.prior_sensitivity(scales=(4.0,), return_fits=True, **TINY)
    assert set(tab.index.get_level_values("scale")) == {4.0}
    assert {"shift_sd", "sd_ratio", "sensitive"} <= set(tab.columns)
    assert len(tab) == len(sleep.summary())
    # the data dominate these weakly informative priors
    assert tab.loc[("Days", 4.0), "shift_sd"] == pytest.approx(0, abs=1.0)
    fit = fits[4.0]
    assert fit.priors.priors["Days"].params["sigma"] == pytest.approx(
        4 * sleep.priors.priors["Days"].params["sigma"])


@pytest.mark.parametrize("which", ["sleep", "hsb"])
def test_power_sensitivity(which, request):
    fit = request.getfixturevalue(which)
    ps = fit.power_sensitivity()
    assert {"prior", "likelihood", "diagnosis"} <= set(ps.columns)
    assert (ps["prior"] < 0.05).all()  # default priors are weakly informative
    lp = SE.log_prior(fit)
    assert lp.shape == (fit._draws.size,) and np.isfinite(lp).all()


def test_get_prior_and_prior_summary(sleep):
    gp = bh.get_prior(SLEEP_F, bh.datasets.load("sleepstudy"))
    assert list(gp.index) == list(sleep.prior_summary().index)


# ------------------------------------------------------------ conditional effects
def test_conditional_effects_hsb82(hsb):
    tab = hsb.conditional_effects("cses", by="sector", n_points=20)
    assert len(tab) == 40 and (tab["lower"] < tab["estimate"]).all()
    ax = hsb.plot_conditional_effects("cses", by="sector", n_points=20)
    assert len(ax.lines) == 2 and ax.get_xlabel() == "cses"
    assert len(ax.collections) >= 3  # two bands + data points
    plt.close(ax.figure)
    ax = hsb.plot_conditional_effects("sector", by="sx")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Public", "Catholic"]
    plt.close(ax.figure)


def test_conditional_effects_sleepstudy(sleep):
    tab = sleep.conditional_effects("Days", n_points=10)
    b0, b1 = _beta(sleep, "Intercept").mean(), _beta(sleep, "Days").mean()
    np.testing.assert_allclose(tab["estimate"], b0 + b1 * tab["Days"], rtol=1e-8)
    subj = sleep.conditional_effects("Days", conditions={"Subject": "308"},
                                     group_effects=True, kind="response", n_points=5)
    assert len(subj) == 5
    ax = sleep.plot_conditional_effects("Days", points=True)
    assert ax.get_ylabel() == "Reaction"
    plt.close(ax.figure)


def test_reml_result_parity_methods():
    from bayes_hlm.reml import reml

    r = reml("mAch ~ cses * sector + meanses + (cses | school)", bh.datasets.load("hsb82"))
    h = r.hypothesis("sectorCatholic = 0")
    fx = r.fixef().loc["sectorCatholic"]
    assert abs(h.iloc[0]["estimate"] - fx["estimate"]) < 1e-10 and abs(h.iloc[0]["df"] - fx["df"]) < 1e-6
    em = r.emmeans("sector")
    assert list(em["sector"]) == ["Public", "Catholic"]
    assert {"effect", "term", "estimate", "std.error"} <= set(r.tidy().columns)
    assert len(r.contrasts("sector")) == 1 and len(r.slopes("cses", at={"sector": ["Public", "Catholic"]})) == 2
    assert "cses" in set(r.standardize()["term"])
