"""bh.fit(bambi.Model) fits Bambi's model; result.to_bambi() works with Bambi's and ArviZ tools."""

import warnings

import numpy as np
import pytest

import bayes_hlm as bh
from bayes_hlm.errors import BayesHLMError
from bayes_hlm.interop.bambi import translate
from bayes_hlm.results.tables import stat_frame

bmb = pytest.importorskip("bambi")
K = 4.0  # combined MCSEs

FORMULA = "Reaction ~ Days + (Days|Subject)"  # uncorrelated in Bambi


def _model(data, formula=FORMULA, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bmb.Model(formula, data, **kw)


@pytest.fixture(scope="module")
def fits(sleepstudy):
    """One Bambi model, fitted by Bambi and by us (2 chains x 1000 + 1000 each)."""
    model = _model(sleepstudy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = model.fit(draws=1000, tune=1000, chains=2, random_seed=3, inference_method="pymc",
                           progressbar=False)
        ours = bh.fit(model, chains=2, draws=1000, tune=1000, seed=4, warn=False,
                      progressbar=False)
    return model, theirs, ours


def test_translation_takes_formula_and_bambis_default_priors(sleepstudy):
    tr = translate(_model(sleepstudy))
    assert tr.formula == "Reaction ~ 1 + Days + (1 + Days || Subject)"
    assert (tr.family, tr.link) == ("gaussian", "identity")
    defaults = bh.get_prior("Reaction ~ Days + (Days||Subject)", sleepstudy)["prior"]
    assert {k: str(p) for k, p in tr.priors.items()} == defaults.to_dict()


def test_translation_takes_the_users_priors(sleepstudy):
    days = bmb.Prior("Normal", mu=5.0, sigma=3.0)
    sd_days = bmb.Prior("Normal", mu=0.0, sigma=bmb.Prior("HalfNormal", sigma=2.0))
    model = _model(sleepstudy, priors={"Days": days, "Days|Subject": sd_days})
    tr = translate(model)
    defaults = bh.get_prior("Reaction ~ Days + (Days||Subject)", sleepstudy)["prior"]
    assert str(tr.priors["Days"]) == "Normal(mu=5, sigma=3)" != defaults["Days"]
    assert str(tr.priors["Days|Subject"]) == "HalfNormal(sigma=2)" != defaults["Days|Subject"]
    # Bambi rescales the intercept's prior with the slopes' priors: we take its final value
    terms = model.parameters["mu"].terms
    assert tr.priors["Intercept"].params["sigma"] == pytest.approx(
        float(terms["Intercept"].prior.args["sigma"]))
    assert tr.priors["1|Subject"].params["sigma"] == pytest.approx(
        float(terms["1|Subject"].prior.args["sigma"].args["sigma"]))


def test_offset_term_is_translated(sleepstudy):
    tr = translate(_model(sleepstudy, "Reaction ~ Days + offset(Days) + (1|Subject)"))
    assert tr.formula == "Reaction ~ 1 + Days + offset(Days) + (1 | Subject)"
    assert set(tr.priors) == {"Intercept", "Days", "sigma", "1|Subject"}


@pytest.mark.parametrize("build, named", [
    (lambda d: _model(d, "Reaction ~ hsgp(Days, m=10, c=2) + (1|Subject)"), "hsgp"),
    (lambda d: _model(d, "Reaction ~ Days + (1|Subject) + (1|Days:Subject)",
                      priors={"1|Days:Subject": bmb.Prior("StudentT", nu=3, mu=0, sigma=bmb.Prior(
                          "HalfNormal", sigma=2.0))}),
     "'1|Days:Subject'"),
    (lambda d: _model(d, bmb.Formula("Reaction ~ Days + (1|Subject)", "sigma ~ Days")), "'sigma'"),
    (lambda d: _model(d.assign(y=d.Reaction / 1000), "y ~ Days + (1|Subject)", family="beta"),
     "'beta'"),
    (lambda d: _model(d, "Reaction ~ Days + (Days|Subject)", priors={"sigma": 10.0}), "'sigma'"),
    (lambda d: _model(d, "Reaction ~ Days + (Days|Subject)",
                      priors={"Days|Subject": bmb.Prior("Normal", mu=1.0, sigma=bmb.Prior(
                          "HalfNormal", sigma=1.0))}), "'Days|Subject'"),
])
def test_unsupported_is_named_before_sampling(sleepstudy, monkeypatch, build, named):
    import bayes_hlm.fitting.api as api

    def no_sampling(*a, **k):
        raise AssertionError("sampling started")

    monkeypatch.setattr(api, "build_problem", no_sampling)
    model = build(sleepstudy)
    with pytest.raises(BayesHLMError, match=named.replace("(", r"\(").replace(")", r"\)")):
        bh.fit(model)


def test_data_or_family_with_a_bambi_model_is_an_error(sleepstudy):
    with pytest.raises(BayesHLMError, match="data"):
        bh.fit(_model(sleepstudy), sleepstudy)
    with pytest.raises(BayesHLMError, match="family"):
        bh.fit(_model(sleepstudy), family="poisson")


def _scalars(post, names):
    cols, labels = [], []
    for v in names:
        a = np.asarray(post[v].values)
        if a.ndim == 2:
            cols.append(a[..., None])
            labels.append(v)
        else:
            cols.append(a)
            labels += [f"{v}[{c}]" for c in post[v].coords[post[v].dims[-1]].values]
    return stat_frame(np.concatenate(cols, axis=-1), labels)


def test_posterior_equals_bambis(fits):
    _, theirs, ours = fits
    tree = ours.to_bambi()
    tp, op = theirs["posterior"], tree["posterior"]
    # Bambi's names, dims and coordinates
    assert set(op.data_vars) == set(tp.data_vars)
    for v in tp.data_vars:
        assert op[v].dims == tp[v].dims, v
        for d in tp[v].dims[2:]:
            assert list(op[v].coords[d].values) == list(tp[v].coords[d].values), v
    assert list(tree["observed_data"].data_vars) == ["Reaction"]
    np.testing.assert_allclose(tree["observed_data"]["Reaction"].values,
                               theirs["observed_data"]["Reaction"].values)
    # every scalar (fixed, SDs, sigma, 36 group effects) within K combined MCSE, mean and SD
    names = sorted(tp.data_vars)
    a, b = _scalars(op, names), _scalars(tp, names)
    assert len(a) == 5 + 36
    dm = (a["mean"] - b["mean"]).abs() / np.hypot(a["mcse_mean"], b["mcse_mean"])
    ds = (a["sd"] - b["sd"]).abs() / np.hypot(a["mcse_sd"], b["mcse_sd"])
    assert (dm < K).all(), dm[dm >= K]
    assert (ds < K).all(), ds[ds >= K]


def test_plot_predictions_draws_our_posterior(fits):
    model, _, ours = fits
    tree = ours.to_bambi()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bmb.PlottingFutureWarning)
        plot = bmb.interpret.plot_predictions(model, tree, conditional="Days").plot()
    summary = bmb.interpret.predictions(model, tree, conditional="Days").summary
    (ax,) = plot._figure.axes
    assert ax.get_xlabel() == "Days"
    line = ax.lines[0]
    np.testing.assert_allclose(line.get_xdata(), summary["Days"])
    np.testing.assert_allclose(line.get_ydata(), summary["estimate"])
    # the drawn means are our posterior's: Intercept + Days x + that subject's effects
    subject = str(summary["Subject"].iloc[0])
    post = tree["posterior"]
    x = summary["Days"].to_numpy()
    mu = (post["Intercept"].values[..., None] + post["Days"].values[..., None] * x
          + post["1|Subject"].sel(Subject__factor_dim=subject).values[..., None]
          + post["Days|Subject"].sel(Subject__factor_dim=subject).values[..., None] * x)
    np.testing.assert_allclose(line.get_ydata(), mu.mean(axis=(0, 1)), rtol=1e-10)


def test_comparisons_and_slopes_use_our_posterior(fits):
    model, _, ours = fits
    tree = ours.to_bambi()
    post = tree["posterior"]
    subjects = ["308", "309"]
    slope = (post["Days"] + post["Days|Subject"].sel(Subject__factor_dim=subjects))
    expected = slope.mean(("chain", "draw")).values
    cmp = bmb.interpret.comparisons(model, tree, contrast={"Days": [0, 1]},
                                    conditional={"Subject": subjects}).summary
    dydx = bmb.interpret.slopes(model, tree, wrt="Days", conditional={"Subject": subjects}).summary
    for table in (cmp, dydx):
        assert [str(v) for v in table["Subject"]] == subjects
        np.testing.assert_allclose(table["estimate"], expected, rtol=1e-8)


def test_forest_overlays_both_posteriors(fits):
    import arviz as az

    _, theirs, ours = fits
    trees = {"bambi": theirs, "bayes_hlm": ours.to_bambi()}
    pc = az.plot_forest(trees, var_names=["Intercept", "Days", "1|Subject_sigma", "sigma"],
                        combined=True, point_estimate="mean")
    labels = {str(v): pc.viz["variable_label"][v].item().get_text()
              for v in pc.viz["variable_label"].data_vars}
    assert labels["Days"] == "Days" and labels["1|Subject_sigma"] == "1|Subject_sigma"
    points = pc.viz["point_estimate"]
    assert list(points["model"].values) == ["bambi", "bayes_hlm"]
    for var in ("Intercept", "Days", "1|Subject_sigma", "sigma"):
        for name, tree in trees.items():
            artist = points[var].sel(model=name).item()
            x = artist.get_offsets()[0][0]
            assert x == pytest.approx(float(tree["posterior"][var].mean()), rel=1e-10), (var, name)


def test_correlated_fit_exports_sds_and_effects(sleep_fit):
    tree = sleep_fit.to_bambi()
    post = tree["posterior"]
    assert {"Intercept", "Days", "sigma", "1|Subject_sigma", "Days|Subject_sigma", "1|Subject",
            "Days|Subject"} <= set(post.data_vars)
    assert post["1|Subject"].dims == ("chain", "draw", "Subject__factor_dim")
    assert "corr__Subject" in post.attrs["bayes_hlm_dropped"]
    np.testing.assert_allclose(post["Days|Subject_sigma"].values,
                               sleep_fit.posterior["sd__Subject"].sel(Subject__term="Days").values)


def _glm_data(family: str) -> "pd.DataFrame":
    """Small simulated data: 20 groups x 12 rows, one slope, a random intercept."""
    import pandas as pd

    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(20), 12)
    x = rng.normal(size=g.size)
    eta = 0.3 + 0.8 * x + rng.normal(0, 0.7, 20)[g]
    p = 1 / (1 + np.exp(-eta))
    y = rng.binomial(1, p) if family == "bernoulli" else rng.poisson(np.exp(eta))
    return pd.DataFrame({"y": y, "x": x, "g": pd.Categorical([f"g{i:02d}" for i in g])})


@pytest.mark.parametrize("family, link", [("bernoulli", "logit"), ("poisson", "log")])
def test_glm_families_translate_with_bambis_priors(family, link):
    from bayes_hlm.families import get_family
    from bayes_hlm.spec.build import build_design
    from bayes_hlm.spec.priors import default_priors

    model = _model(_glm_data(family), "y ~ x + (x|g)", family=family)
    tr = translate(model)
    assert (tr.family, tr.link) == (family, link)
    assert tr.formula == "y ~ 1 + x + (1 + x || g)"
    fam = get_family(family, link)
    ours = default_priors(build_design(tr.formula, tr.data, family=fam), fam).priors
    assert set(tr.priors) == set(ours)
    for key, prior in tr.priors.items():  # Bambi's final priors = our reproduction of its defaults
        assert prior.dist == ours[key].dist, key
        for p, v in prior.params.items():
            assert v == pytest.approx(ours[key].params[p], rel=1e-6), (key, p)


@pytest.mark.parametrize("family", ["bernoulli", "poisson"])
def test_glm_posterior_equals_bambis(family):
    model = _model(_glm_data(family), "y ~ x + (1|g)", family=family)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = model.fit(draws=1000, tune=1000, chains=2, random_seed=3, progressbar=False)
        ours = bh.fit(model, chains=2, draws=1000, tune=1000, seed=4, warn=False,
                      progressbar=False)
    tp, op = theirs["posterior"], ours.to_bambi()["posterior"]
    assert set(op.data_vars) == set(tp.data_vars)
    names = sorted(tp.data_vars)
    a, b = _scalars(op, names), _scalars(tp, names)
    dm = (a["mean"] - b["mean"]).abs() / np.hypot(a["mcse_mean"], b["mcse_mean"])
    ds = (a["sd"] - b["sd"]).abs() / np.hypot(a["mcse_sd"], b["mcse_sd"])
    assert (dm < K).all(), dm[dm >= K]
    assert (ds < K).all(), ds[ds >= K]
