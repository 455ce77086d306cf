"""Generalized models fitted end to end (#15): bh.fit(family=...), engine choice, results
through the family, and recovery of simulated fixed effects and group SDs."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

import bayes_hlm as bh
from bayes_hlm.backends.engine import choose_method
from bayes_hlm.errors import BayesHLMError
from bayes_hlm.families import get_family

TRUE = {"Intercept": -0.3, "x": 0.8, "sd": 0.7}


def _sim(family, seed, G=40, m=10):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(G), m)
    x = rng.normal(size=G * m)
    b = rng.normal(0.0, TRUE["sd"], G)
    eta = TRUE["Intercept"] + TRUE["x"] * x + b[g]
    y = (rng.random(eta.size) < expit(eta)).astype(int) if family == "bernoulli" \
        else rng.poisson(np.exp(eta))
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i:02d}" for i in g]})


def _fit(family, seed):
    d = _sim(family, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return d, bh.fit("y ~ x + (1|g)", d, family=family, chains=2, draws=300, tune=300,
                         seed=seed, progressbar=False, warn=False)


@pytest.fixture(scope="module")
def bern():
    return _fit("bernoulli", 7)


@pytest.fixture(scope="module")
def pois():
    return _fit("poisson", 8)


def _recovered(res):
    s = res.summary()
    rows = {"Intercept": "Intercept", "x": "x", "sd": "sd(Intercept | g)"}
    for key, row in rows.items():
        est, sd, mcse = s.loc[row, "mean"], s.loc[row, "sd"], s.loc[row, "mcse_mean"]
        # the truth lies within the posterior's spread (plus Monte Carlo error)
        assert abs(est - TRUE[key]) < 3.5 * np.hypot(sd, mcse), (key, est, sd, TRUE[key])
        assert s.loc[row, "r_hat"] < 1.05


@pytest.mark.parametrize("which", ["bern", "pois"])
def test_recovery_of_fixed_effects_and_group_sd(which, request):
    _, res = request.getfixturevalue(which)
    # "auto": the full model, except a Poisson random intercept (per-group sufficient
    # statistics of the collapsed density, backends/glmm_sufficient.py)
    assert res.info.method == {"bern": "full", "pois": "marginal"}[which]
    _recovered(res)


def test_bernoulli_results_go_through_the_family(bern):
    d, res = bern
    s = res.summary()
    assert "sigma" not in s.index and set(s["kind"]) == {"fixed", "sd"}
    assert "Family: bernoulli (link: logit)" in s.text
    assert "Residual" not in set(res.varcorr()["group"])
    link = res.predict(kind="link", max_draws=200, return_draws=True)[1]
    mean = res.predict(kind="mean", max_draws=200, return_draws=True)[1]
    np.testing.assert_allclose(mean, expit(link), rtol=1e-12)
    resp = res.predict(kind="response", max_draws=200, return_draws=True)[1]
    assert set(np.unique(resp)) <= {0.0, 1.0}
    np.testing.assert_allclose(res.fitted().to_numpy(), res.predict(kind="mean")["mean"],
                               rtol=1e-12)
    pr = res.residuals("pearson")
    f = res.fitted().to_numpy()
    np.testing.assert_allclose(pr, (d.y - f) / np.sqrt(f * (1 - f)), rtol=1e-10)
    # pointwise log likelihood is Bernoulli's at each draw
    ll = res.log_likelihood()["log_likelihood"]["y"].values.reshape(600, -1)
    eta = res.predict(kind="link", return_draws=True)[1]
    p = expit(eta)
    np.testing.assert_allclose(ll, np.where(d.y.to_numpy() == 1, np.log(p), np.log1p(-p)),
                               rtol=1e-8, atol=1e-12)
    loo = res.loo()
    assert np.isfinite(float(loo.elpd))  # arviz ELPDData
    yrep = res.posterior_predictive()["posterior_predictive"]["y"].values
    assert yrep.shape == (2, 300, len(d)) and set(np.unique(yrep)) <= {0.0, 1.0}
    vp = res.variance_parts()
    np.testing.assert_allclose(vp.residual, np.pi ** 2 / 3)


def test_poisson_latent_variance_per_draw(pois):
    """performance's mu: exp(intercept of the null model y ~ 1 + (1 | g), fitted by glmer)."""
    d, res = pois
    vp = res.variance_parts()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        null = bh.glmer("y ~ 1 + (1|g)", d, family="poisson")
    mu = np.exp(float(np.ravel(null.beta)[0]))
    assert vp.residual.shape == (600,)
    np.testing.assert_allclose(vp.residual, np.log1p(1 / mu), rtol=1e-6)
    # the fixed and random parts still vary per draw
    assert np.std(vp.fixed) > 0 and np.std(vp.random["g"]) > 0
    yrep = res.posterior_predictive()["posterior_predictive"]["y"].values
    assert np.all(yrep == np.round(yrep)) and yrep.min() >= 0
    mean = res.predict(kind="mean")["mean"].to_numpy()
    np.testing.assert_allclose(res.residuals().to_numpy(), d.y - mean, rtol=1e-12)
    np.testing.assert_allclose(res.residuals("pearson").to_numpy(), (d.y - mean) / np.sqrt(mean),
                               rtol=1e-12)


def test_auto_picks_full_and_marginal_is_refused_for_non_gaussian_families():
    # poisson has the quadrature-collapsed form (method="marginal"), not chosen by "auto";
    # negativebinomial has none
    fam, nb = get_family("poisson"), get_family("negativebinomial")
    assert choose_method("auto", True, family=fam)[0] == "full"
    assert choose_method("auto", True, family=nb)[0] == "full"
    assert choose_method("auto", True, family=get_family())[0] == "marginal"
    with pytest.raises(BayesHLMError, match="method='marginal'.*negativebinomial.*method='full'"):
        choose_method("marginal", True, family=nb)
    with pytest.raises(BayesHLMError, match="engine='dask'.*poisson"):
        choose_method("auto", True, out_of_core=True, family=fam)
    d = _sim("poisson", 1, G=5, m=4)
    with pytest.raises(BayesHLMError, match="method='marginal'"):
        bh.fit("y ~ x + (1|g)", d, family="negativebinomial", method="marginal", chains=1,
               draws=5, tune=5, progressbar=False)
    with pytest.raises(BayesHLMError, match="unknown family 'poison'"):
        bh.fit("y ~ x + (1|g)", d, family="poison")
    with pytest.raises(BayesHLMError, match="link 'logit'.*poisson"):
        bh.fit("y ~ x + (1|g)", d, family="poisson", link="logit")


def test_get_prior_with_family():
    d = _sim("bernoulli", 3, G=6, m=5)
    tab = bh.get_prior("y ~ x + (1|g)", d, family="bernoulli")
    assert tab.loc["Intercept", "prior"] == "Normal(mu=0, sigma=1.5)"
    assert "sigma" not in tab.index
    nb = bh.get_prior("y ~ x + (1|g)", d, family="negativebinomial")
    assert nb.loc["alpha", "prior"].startswith("HalfCauchy")
    assert "sigma" in bh.get_prior("y ~ x + (1|g)", d.assign(y=d.x * 2)).index


def test_settings_record_family_for_update():
    from bayes_hlm.settings import validate_settings

    s = validate_settings(family="binomial", link="probit")
    assert (s.family, s.link) == ("binomial", "probit")
    assert s.fit_kwargs()["family"] == "binomial"
    with pytest.raises(BayesHLMError, match="family"):
        validate_settings(family=3)


def test_save_load_keeps_the_family(bern, tmp_path):
    _, res = bern
    path = tmp_path / "bern.nc"
    res.save(path)
    back = bh.load(path)
    assert back.spec.family == get_family("bernoulli")
    assert "sigma" not in back.summary().index
    np.testing.assert_allclose(back.variance_parts().residual, np.pi ** 2 / 3)


def test_simulate_draws_from_the_family(pois):
    d, res = pois
    sims = res.simulate(n=20, seed=1, as_frame=False)
    assert sims.shape == (20, len(d))
    assert np.all(sims == np.round(sims)) and sims.min() >= 0


@pytest.mark.parametrize("family,link,formula,params", [
    ("t", None, "yc ~ x + (1|g)", ["sigma", "nu"]),
    ("gamma", "log", "pos ~ x + (1|g)", ["alpha"]),
    ("binomial", "probit", "p(k, n) ~ x + (1|g)", []),
])
def test_other_families_fit_and_report_their_parameters(family, link, formula, params):
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(12), 8)
    x = rng.normal(size=g.size)
    b = rng.normal(0, 0.3, 12)[g]
    d = pd.DataFrame({"x": x, "g": [f"g{i}" for i in g], "n": 8,
                      "pos": rng.gamma(3.0, np.exp(0.5 + 0.3 * x + b) / 3.0),
                      "yc": 1 + x + b + rng.standard_t(4, g.size),
                      "k": rng.binomial(8, 1 / (1 + np.exp(-(0.2 * x + b))))})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = bh.fit(formula, d, family=family, link=link, chains=2, draws=100, tune=200, seed=1,
                     progressbar=False, warn=False)
    s = res.summary()
    assert [k for k in s.index if s.loc[k, "kind"] in ("sigma", "family")] == params
    assert f"Family: {family} (link: {link or get_family(family).link.name})" in s.text
    ll = res.log_likelihood()["log_likelihood"]["y"].values
    assert ll.shape == (2, 100, len(d)) and np.all(np.isfinite(ll))


def test_no_gaussian_reml_reference_for_other_families(bern):
    """REML is the Gaussian criterion: reml() on a Bernoulli spec refuses instead of fitting a
    Gaussian LMM to 0/1 data; the frequentist column of a Bernoulli fit is glmer's Laplace fit
    of the same model (issue #16)."""
    from bayes_hlm.glmer.api import glmer_spec
    from bayes_hlm.results.reference import FrequentistReference

    _, m = bern
    with pytest.raises(BayesHLMError, match="family is 'bernoulli'"):
        m.reml()
    ref = m.reference()
    assert isinstance(ref, FrequentistReference) and "glmer" in ref.engine
    direct = glmer_spec(m.spec)
    assert ref.fixed("x")[0] == pytest.approx(float(direct.fixef().loc["x", "estimate"]))
    table = m.compare_reml()
    assert table.loc["x", "reml"] == pytest.approx(ref.fixed("x")[0])
    assert table.loc["sd(Intercept | g)", "reml"] == pytest.approx(ref.sd("g", "Intercept"))
    assert "glmer" in table.caption


def test_convergence_remedies_only_name_engines_the_family_has():
    """method='marginal' is suggested for Gaussian full-model fits only (the collapsed engine
    does not exist for other families)."""
    from bayes_hlm.results.diagnostics import warning_messages

    low = {"divergences": 2, "min_ess_bulk": 50.0, "min_ess_tail": 60.0}
    assert any("method='marginal'" in m for m in warning_messages(low, "full"))
    assert not any("method='marginal'" in m for m in warning_messages(low, "full", False))


def test_reml_refuses_a_gaussian_model_with_a_non_identity_link():
    """REML is the identity-link criterion: a log-link Gaussian spec is refused by name."""
    d = bh.datasets.load("sleepstudy")
    spec = bh.build_spec("Reaction ~ Days + (1 | Subject)", d, family=get_family("gaussian", "log"))
    with pytest.raises(BayesHLMError, match="link 'log'"):
        bh.reml(spec)
