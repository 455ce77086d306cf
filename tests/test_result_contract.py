"""Issue 14 items 5-6: one result contract, inference helpers shared, a typed REML reference,
one 95% interval default named in every header, one ICC/R² definition for (x||g), bh.reml."""

import inspect
import json
import os
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import bayes_hlm as bh  # noqa: E402
from bayes_hlm.errors import BayesHLMError, BayesHLMWarning  # noqa: E402
from bayes_hlm.results.base import MixedModelResult, ModelSummary, ValueTable  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "lme4_reference.json")
UNCORR = "Reaction ~ Days + (Days || Subject)"


@pytest.fixture(scope="module")
def rfit(sleepstudy):
    return bh.reml("Reaction ~ Days + (Days | Subject)", sleepstudy)


@pytest.fixture(scope="module")
def uncorr_reml(sleepstudy):
    return bh.reml(UNCORR, sleepstudy)


@pytest.fixture(scope="module")
def uncorr_fit(sleepstudy):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bh.fit(UNCORR, sleepstudy, method="marginal", sampler="pymc", chains=2, draws=150,
                      tune=150, seed=5, progressbar=False)


# ------------------------------------------------------------------ contract
CONTRACT = ["nobs", "ngrps", "fixef", "ranef", "coef", "varcorr", "summary", "confint", "icc",
            "r2", "predict", "tidy", "hypothesis", "lincom", "emmeans", "contrasts", "slopes",
            "standardize"]


def test_both_results_implement_one_contract():
    from bayes_hlm.reml import RemlResult

    for cls in (bh.BayesResult, RemlResult):
        assert issubclass(cls, MixedModelResult)
        assert not inspect.isabstract(cls)
        for name in CONTRACT:
            assert callable(getattr(cls, name, None)) or isinstance(
                inspect.getattr_static(cls, name), property), (cls, name)
    # written once on the base where it is the same computation
    for name in ("icc", "r2", "lincom", "emmeans", "contrasts", "slopes", "standardize", "ngrps",
                 "nobs"):
        assert name not in vars(bh.BayesResult), name
    for name in ("lincom", "emmeans", "contrasts", "slopes", "standardize", "ngrps", "nobs"):
        assert name not in vars(RemlResult), name
    # same leading parameters where the signature is unified
    for name in ("icc", "r2"):
        assert list(inspect.signature(getattr(bh.BayesResult, name)).parameters)[:4] == \
            list(inspect.signature(getattr(RemlResult, name)).parameters)[:4]


def test_nobs_method_and_deprecated_number(sleep_fit, rfit):
    assert sleep_fit.nobs() == 180 and rfit.nobs() == 180
    assert isinstance(rfit.nobs(), int) and type(rfit.nobs()) is int
    with pytest.warns(DeprecationWarning, match="nobs"):
        assert rfit.nobs + 0 == 180  # the old REML property, used as a number
    assert sleep_fit.ngrps() == rfit.ngrps() == {"Subject": 18}


def test_summary_same_kind_of_object(sleep_fit, rfit, capsys):
    sb, sr = sleep_fit.summary(), rfit.summary()
    assert isinstance(sb, ModelSummary) and isinstance(sr, ModelSummary)
    assert "kind" in sb.columns and "kind" in sr.columns
    assert list(sr.index[:2]) == ["Intercept", "Days"] and "sd(Days | Subject)" in sr.index
    print(sr)
    out = capsys.readouterr().out
    assert "REML criterion at convergence" in out and "Satterthwaite" in out
    assert "95% HDI" in repr(sb) and "Formula: Reaction ~ Days" in repr(sb)
    with pytest.warns(DeprecationWarning, match="print_out"):
        text = rfit.summary(print_out=False)
    assert isinstance(text, str) and text == sr.text


def test_icc_same_type_and_legacy_access(sleep_fit, rfit):
    ib, ir = sleep_fit.icc(), rfit.icc(by_factor=True)
    assert isinstance(ib, ValueTable) and isinstance(ir, ValueTable)
    assert {"icc", "icc_unadjusted"} <= set(ib.index) and {"icc", "icc_unadjusted"} <= set(ir.index)
    assert ir.loc["icc", "estimate"] == pytest.approx(0.721660259588857, abs=1e-4)
    with pytest.warns(DeprecationWarning):
        assert ir["icc_adjusted"] == ir.loc["icc", "estimate"]
    with pytest.warns(DeprecationWarning):
        assert ir["by_factor"] == {"Subject": pytest.approx(ir.loc["icc[Subject]", "estimate"])}
    r2 = rfit.r2()
    with pytest.warns(DeprecationWarning):
        assert r2["r2_marginal"] == pytest.approx(0.278651058161875, abs=1e-4)
    assert list(sleep_fit.r2().index) == ["r2_bayes", "r2_marginal", "r2_conditional"]


def test_confint_unified_signature(sleep_fit, rfit):
    cb = sleep_fit.confint()
    assert cb.columns.name == "95% HDI" and list(cb.columns) == ["estimate", "lower", "upper"]
    cr = rfit.confint()
    assert cr.columns.name == "95% Wald CI" and list(cr.index) == ["Intercept", "Days"]
    cr90 = rfit.confint(0.9)
    assert (cr90["upper"] < cr["upper"]).all()
    with pytest.warns(DeprecationWarning, match="method first"):
        old = rfit.confint("wald")
    pd.testing.assert_frame_equal(old, cr)
    with pytest.warns(DeprecationWarning, match="method first"):
        pd.testing.assert_frame_equal(rfit.confint("wald", 0.9), cr90)
    with pytest.warns(DeprecationWarning, match="prob"):
        eti = sleep_fit.confint(prob=0.9, kind="eti", pars=["Days"])
    pd.testing.assert_frame_equal(eti, sleep_fit.confint(0.9, method="eti", parm=["Days"]))
    assert eti.columns.name == "90% ETI"


def test_default_level_is_95_and_named_in_headers(sleep_fit, rfit):
    from bayes_hlm.results.compare_reml import compare_reml

    tables = {
        "summary": pd.DataFrame(sleep_fit.summary()), "fixef": sleep_fit.fixef(),
        "ranef": sleep_fit.ranef()["Subject"], "icc": sleep_fit.icc(), "r2": sleep_fit.r2(),
        "tidy": sleep_fit.tidy(), "confint": sleep_fit.confint(),
        "hypothesis": sleep_fit.hypothesis("Days > 0"), "lincom": sleep_fit.lincom({"Days": 1}),
        "compare_reml": compare_reml(sleep_fit, rfit), "reml_tidy": rfit.tidy(),
        "reml_confint": rfit.confint(), "reml_hypothesis": rfit.hypothesis("Days > 0"),
    }
    for name, t in tables.items():
        assert str(t.columns.name).startswith("95% "), (name, t.columns.name)
    # the HDI default really is 95%: same bounds as asking for it
    d = sleep_fit._draws.flat("fixed")[:, 1]
    from bayes_hlm.inference.intervals import hdi

    lo, hi = hdi(d, 0.95)
    assert sleep_fit.fixef().loc["Days", "hdi_low"] == pytest.approx(lo)
    assert sleep_fit.fixef(0.94).columns.name == "94% HDI"


def test_inference_helpers_shared(sleep_fit, rfit):
    from bayes_hlm import inference

    a = inference.lincom(rfit, {"Days": 1})
    assert a.loc[0, "estimate"] == pytest.approx(rfit.fixef().loc["Days", "estimate"])
    assert a.loc[0, "df"] == pytest.approx(rfit.fixef().loc["Days", "df"])
    b = inference.lincom(sleep_fit, {"Days": 1})
    assert "pd" in b.columns
    assert inference.hypothesis(rfit, "Days = 0").loc[0, "p.value"] == pytest.approx(
        rfit.fixef().loc["Days", "p"], rel=1e-6)
    assert list(inference.tidy(rfit)["term"][:2]) == ["Intercept", "Days"]
    with pytest.raises(BayesHLMError, match="no draws"):
        rfit.standardize(return_draws=True)


def test_old_import_paths_still_work():
    from bayes_hlm.results import hypotheses as H
    from bayes_hlm.results import standardize as ST
    from bayes_hlm.results import tidy as T

    for mod, names in [(H, ["hypothesis", "hypothesis_reml", "emmeans_reml", "contrasts_reml",
                            "slopes_reml", "lincom", "reference_grid", "prior_draws"]),
                       (T, ["tidy", "tidy_reml", "confint"]), (ST, ["standardize", "standardize_reml"])]:
        for n in names:
            assert callable(getattr(mod, n)), n


def test_reml_predict(rfit, sleepstudy):
    p = rfit.predict()
    np.testing.assert_allclose(p["estimate"].to_numpy(), rfit.fitted().to_numpy())
    new = sleepstudy.head(3).copy()
    np.testing.assert_allclose(rfit.predict(new)["estimate"].to_numpy(), rfit.fitted().to_numpy()[:3])
    new["Subject"] = "new-subject"
    with pytest.raises(BayesHLMError, match="allow_new_levels"):
        rfit.predict(new)
    pop = rfit.predict(new, allow_new_levels=True)["estimate"].to_numpy()
    np.testing.assert_allclose(pop, rfit.beta[0] + rfit.beta[1] * new["Days"].to_numpy())


# --------------------------------------------------------- (x || g) ICC / R²
def test_uncorrelated_icc_r2_one_definition(uncorr_reml):
    """performance's rule on both sides: the slope-only term of (x||g) adds nothing."""
    from bayes_hlm.results.variance import variance_parts

    m = uncorr_reml
    with open(FIXTURES) as fh:
        perf = json.load(fh)["cases"]["sleep_uncorr"]["performance"]
    icc, r2 = m.icc(), m.r2()
    assert icc.loc["icc", "estimate"] == pytest.approx(perf["icc_adjusted"], abs=1e-4)
    assert r2.loc["r2_conditional", "estimate"] == pytest.approx(perf["r2_conditional"], abs=1e-4)
    # the Bayesian variance_parts function at the REML estimates gives REML's numbers
    covs = {f: S[None] for f, S in m.covariances().items()}
    vp = variance_parts(m.design, m.beta[None, :], np.array([m.sigma]), covs)
    assert vp.icc()[0] == pytest.approx(icc.loc["icc", "estimate"], abs=1e-10)
    assert vp.r2_marginal()[0] == pytest.approx(r2.loc["r2_marginal", "estimate"], abs=1e-10)
    assert vp.r2_conditional()[0] == pytest.approx(r2.loc["r2_conditional", "estimate"], abs=1e-10)
    # and that definition is intercept variance only (by hand)
    vc = m.varcorr()
    tau00 = float(vc.loc[(vc["group"] == "Subject") & (vc["term"] == "Intercept"), "variance"].iloc[0])
    assert icc.loc["icc", "estimate"] == pytest.approx(tau00 / (tau00 + m.sigma ** 2), rel=1e-10)
    # all terms on request: larger, and the slope variance enters as tr(Σ ZᵀZ / n)
    allv = m.variance_components(terms="all")["random"]["Subject"]
    tau11 = float(vc.loc[(vc["group"] == "Subject") & (vc["term"] == "Days"), "variance"].iloc[0])
    days = m.design.X[:, 1]
    assert allv == pytest.approx(tau00 + tau11 * np.mean(days ** 2), rel=1e-10)
    assert m.icc(terms="all").loc["icc", "estimate"] > icc.loc["icc", "estimate"]
    with pytest.raises(BayesHLMError, match="terms"):
        m.icc(terms="some")


def test_uncorrelated_bayes_uses_the_same_rule(uncorr_fit, uncorr_reml):
    from bayes_hlm.backends import naming

    vp = uncorr_fit.variance_parts()
    terms = uncorr_fit._terms("Subject")

    sd = uncorr_fit._draws.flat(naming.sd_var("Subject"))
    i = terms.index("Intercept")
    np.testing.assert_allclose(vp.random["Subject"], sd[:, i] ** 2, rtol=1e-10)
    assert (uncorr_fit.variance_parts("all").random["Subject"] > vp.random["Subject"]).all()
    # compare_reml puts the same quantity side by side
    tab = uncorr_fit.compare_reml(uncorr_reml)
    assert tab.loc["ICC (adjusted)", "reml"] == pytest.approx(
        uncorr_reml.icc().loc["icc", "estimate"], abs=1e-12)


# ------------------------------------------------------------ typed reference
def test_failed_reml_fit_is_reported_not_dropped(sleep_fit, monkeypatch):
    from bayes_hlm import reporters as rp
    from bayes_hlm.results.compare_reml import compare_reml, shrinkage_table
    from bayes_hlm.results.reference import MissingReference

    def boom(self, method="REML"):
        raise np.linalg.LinAlgError("boom: the REML criterion is not finite")

    monkeypatch.setattr(bh.BayesResult, "reml", boom)
    with pytest.warns(BayesHLMWarning, match="REML fit failed.*boom"):
        tab = compare_reml(sleep_fit)
    assert tab["reml"].isna().all() and tab["mean"].notna().all()
    assert "boom" in tab.attrs["reference"] and "boom" in repr(tab)
    assert "boom" in tab.to_markdown() and "boom" in tab._repr_html_()
    with pytest.warns(BayesHLMWarning):
        ref = sleep_fit.reference()
    assert isinstance(ref, MissingReference) and "LinAlgError" in ref.reason
    st = shrinkage_table(sleep_fit, ref)
    assert st["blup"].isna().all() and "boom" in st.note
    for fig in (rp.plot_forest(sleep_fit, ref), rp.plot_caterpillar(sleep_fit, ref),
                rp.plot_shrinkage(sleep_fit, ref).figure,
                rp.plot_variance_distributions(sleep_fit, ref, max_draws=100)):
        assert any("boom" in t.get_text() for t in fig.texts), fig
    plt.close("all")
    assert "boom" in rp.tab_model(sleep_fit, ref).html


def test_reference_is_typed(sleep_fit, rfit):
    from bayes_hlm.results.compare_reml import compare_reml
    from bayes_hlm.results.reference import FrequentistReference

    ref = rfit.reference()
    assert isinstance(ref, FrequentistReference) and ref.method == "REML"
    assert ref.fixed("Days")[0] == pytest.approx(rfit.beta[1])
    pd.testing.assert_frame_equal(compare_reml(sleep_fit, ref), compare_reml(sleep_fit, rfit))

    class LooksLikeReml:
        fixef = rfit.fixef
        varcorr = rfit.varcorr
        sigma = rfit.sigma

    with pytest.raises(TypeError, match="RemlResult"):   # "a RemlResult, a GlmerResult, ..."
        compare_reml(sleep_fit, LooksLikeReml())


# ----------------------------------------------------------------- top level
def test_bh_reml_callable_and_lmer(sleepstudy, rfit):
    import bayes_hlm.reml as reml_pkg
    from bayes_hlm.reml import anova, ranova, reml  # noqa: F401 - still importable

    assert bh.reml is reml_pkg and callable(bh.reml)
    f = "Reaction ~ Days + (Days | Subject)"
    a, b, c = bh.reml(f, sleepstudy), bh.reml.reml(f, sleepstudy), bh.lmer(f, sleepstudy)
    assert a.reml_criterion == b.reml_criterion == c.reml_criterion == rfit.reml_criterion
    import bayes_hlm.glmer as glmer_pkg   # the GLMM engine is a callable module like reml

    assert bh.glmer is glmer_pkg and callable(bh.glmer)


def test_reml_control_is_the_fit_control(sleepstudy, rfit):
    f = "Reaction ~ Days + (Days | Subject)"
    ctl = bh.Control(optimizer="L-BFGS-B", opt_ctrl={"maxiter": 500})
    m = bh.reml(f, sleepstudy, control=ctl)
    assert m.control["optimizer"] == "L-BFGS-B" and m.control["maxiter"] == 500
    assert m.reml_criterion == pytest.approx(rfit.reml_criterion, abs=1e-5)
    assert hash(ctl) == hash(bh.Control(optimizer="L-BFGS-B", opt_ctrl={"maxiter": 500}))
    with pytest.warns(DeprecationWarning, match="dict"):
        old = bh.reml(f, sleepstudy, control={"optimizer": "L-BFGS-B"})
    assert old.reml_criterion == pytest.approx(m.reml_criterion, abs=1e-8)
    with pytest.warns(DeprecationWarning, match="checks"):
        bh.reml(f, sleepstudy, checks=bh.Control())
    with pytest.raises(TypeError, match="unknown optimiser setting"):
        bh.reml(f, sleepstudy, control=bh.Control(opt_ctrl={"maxitr": 5}))
    with pytest.raises(ValueError, match="optimizer"):
        bh.reml(f, sleepstudy, control=bh.Control(optimizer="nelder"))
    # the input checks of the same object apply
    two = sleepstudy[sleepstudy["Days"] <= 1]  # 36 rows, 18 x 2 random effects
    with pytest.raises(BayesHLMError, match="check_nobs_vs_nRE"):
        bh.reml(f, two, control=bh.Control())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bh.reml(f, two, control=bh.Control(check_nobs_vs_nRE="ignore"))
