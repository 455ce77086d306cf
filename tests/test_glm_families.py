"""Generalized families (#15): likelihoods vs SciPy, Bambi 0.21's default priors reproduced
exactly, latent-scale variances vs performance's pinned numbers for glmer fits, and responses
as researchers hold them."""

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import expit, polygamma

import bayes_hlm as bh
from bayes_hlm.errors import DataError
from bayes_hlm.families import FAMILIES, get_family
from bayes_hlm.results.variance import variance_parts
from bayes_hlm.spec.build import build_spec
from bayes_hlm.spec.lme4_names import lme4_name
from bayes_hlm.spec.priors import default_priors, sd_key

FIXTURES = Path(__file__).parent / "fixtures"
GLMER = json.loads((FIXTURES / "glmer_reference.json").read_text())


def test_every_family_is_registered_with_bambis_default_link():
    expected = {"gaussian": "identity", "bernoulli": "logit", "binomial": "logit",
                "poisson": "log", "negativebinomial": "log", "t": "identity", "gamma": "inverse"}
    assert {n: FAMILIES[n].links[0] for n in expected} == expected
    assert get_family("gamma", "log").link.name == "log"
    for fam in ("bernoulli", "binomial"):
        assert {"probit", "cloglog"} <= set(FAMILIES[fam].links)
    for name in expected:  # no Gaussian engine (REML, JAX); the quadrature-collapsed engine
        if name != "gaussian":  # (method="marginal") where covered, the compiled density (numba)
            eng = get_family(name).engines()
            assert "full" in eng and eng <= {"full", "marginal", "numba"}
            assert ("marginal" in eng) == (name in ("bernoulli", "binomial", "poisson"))
    for name in ("bernoulli", "binomial"):  # only the default (logit) link keeps it
        assert "marginal" not in get_family(name, "probit").engines()
    assert get_family("negativebinomial").param_names == ("alpha",)
    assert get_family("t").param_names == ("sigma", "nu")
    assert not get_family("poisson").has_dispersion and get_family("gamma").has_dispersion


# --------------------------------------------------------------------------- likelihoods
RNG = np.random.default_rng(11)
ETA = RNG.normal(0.3, 0.8, size=9)


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
def test_bernoulli_and_binomial_logpdf_match_scipy(link):
    fam, binom = get_family("bernoulli", link), get_family("binomial", link)
    p = fam.link.inverse(ETA)
    y01 = (RNG.random(ETA.size) < 0.5).astype(float)
    np.testing.assert_allclose(fam.logpdf(y01, ETA), stats.bernoulli.logpmf(y01, p), rtol=1e-10)
    n = RNG.integers(1, 30, size=ETA.size).astype(float)
    y = np.floor(n * RNG.random(ETA.size))
    np.testing.assert_allclose(binom.logpdf(y, ETA, trials=n), stats.binom.logpmf(y, n, p),
                               rtol=1e-10)
    # extreme linear predictors stay finite
    assert np.all(np.isfinite(fam.logpdf(np.array([1.0, 0.0]), np.array([-40.0, 40.0]))))


def test_count_and_continuous_logpdfs_match_scipy():
    mu = np.exp(ETA)
    y = RNG.poisson(mu).astype(float)
    np.testing.assert_allclose(get_family("poisson").logpdf(y, ETA), stats.poisson.logpmf(y, mu),
                               rtol=1e-10)
    a = 2.7  # NB2 size = lme4's theta
    np.testing.assert_allclose(get_family("negativebinomial").logpdf(y, ETA, alpha=a),
                               stats.nbinom.logpmf(y, a, a / (a + mu)), rtol=1e-10)
    yc = RNG.gamma(2.0, 1.0, size=ETA.size)
    np.testing.assert_allclose(get_family("t").logpdf(yc, ETA, sigma=0.7, nu=5.0),
                               stats.t.logpdf(yc, 5.0, ETA, 0.7), rtol=1e-10)
    g = get_family("gamma", "log")
    np.testing.assert_allclose(g.logpdf(yc, ETA, alpha=3.0),
                               stats.gamma.logpdf(yc, 3.0, scale=mu / 3.0), rtol=1e-10)
    gi = get_family("gamma")
    eta_pos = np.abs(ETA) + 0.2
    np.testing.assert_allclose(gi.logpdf(yc, eta_pos, alpha=3.0),
                               stats.gamma.logpdf(yc, 3.0, scale=1 / eta_pos / 3.0), rtol=1e-10)


@pytest.mark.parametrize("name,params,trials", [
    ("bernoulli", {}, None), ("binomial", {}, 12.0), ("poisson", {}, None),
    ("negativebinomial", {"alpha": 2.0}, None), ("t", {"sigma": 0.5, "nu": 6.0}, None),
    ("gamma", {"alpha": 4.0}, None)])
def test_random_draws_have_the_family_mean_and_variance(name, params, trials):
    fam = get_family(name, "log" if name == "gamma" else None)
    eta = np.full(200_000, 0.4)
    kw = dict(params, **({"trials": trials} if trials else {}))
    draws = fam.random(eta, np.random.default_rng(1), **kw)
    mu = fam.link.inverse(0.4) * (trials or 1.0)
    se = draws.std() / np.sqrt(draws.size)
    assert abs(draws.mean() - mu) < 5 * se
    if name in ("poisson", "negativebinomial", "gamma"):
        m = fam.link.inverse(0.4)
        var = {"poisson": m, "negativebinomial": m + m ** 2 / 2.0, "gamma": m ** 2 / 4.0}[name]
        assert abs(draws.var() / var - 1) < 0.03


def test_pymc_likelihood_equals_numpy_logpdf():
    import pymc as pm

    cases = [("bernoulli", "probit", {}, None), ("binomial", "logit", {}, 9.0),
             ("negativebinomial", "log", {"alpha": 1.7}, None),
             ("t", "identity", {"sigma": 0.8, "nu": 4.0}, None), ("gamma", "inverse", {"alpha": 2.5}, None)]
    for name, link, params, n in cases:
        fam = get_family(name, link)
        eta = np.abs(ETA) + 0.1 if name == "gamma" else ETA
        kw = dict(params, **({"trials": np.full(eta.size, n)} if n else {}))
        y = fam.random(eta, np.random.default_rng(2), **kw)
        with pm.Model() as m:
            fam.likelihood("y", pm.math.constant(eta), kw, y)
        got = m.compile_logp(sum=False)({})[0]
        np.testing.assert_allclose(got, fam.logpdf(y, eta, **kw), rtol=1e-8, err_msg=name)


# --------------------------------------------------------------------------- Bambi's priors
def _bambi_priors(formula, data, family, link=None):
    bmb = pytest.importorskip("bambi")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = {"link": link} if link else {}
        m = bmb.Model(formula, data, family=family, **kw)
    pc = m.parameters[m.family.likelihood.parent]
    out = {}
    if pc.intercept_term is not None:
        out["Intercept"] = (pc.intercept_term.prior.name, pc.intercept_term.prior.args)
    for name, t in pc.common_terms.items():
        out[name] = (t.prior.name, t.prior.args)
    for name, t in pc.group_specific_terms.items():
        out[name] = (t.prior.args["sigma"].name, t.prior.args["sigma"].args)
    for name, c in m.parameters.items():
        if name != m.family.likelihood.parent:
            out[name] = (c.prior.name, c.prior.args)
    return out


def _bambi_columns(formula, data, family, link=None):
    """Bambi's common terms and their design-matrix column labels."""
    bmb = pytest.importorskip("bambi")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = bmb.Model(formula, data, family=family, **({"link": link} if link else {}))
    pc = m.parameters[m.family.likelihood.parent]
    return {name: list(t.term.labels) for name, t in pc.common_terms.items()}


def _flat(ours, names_by_bambi):
    """Our priors laid out as Bambi's terms (a factor's columns as one array)."""
    out = {}
    for bname, keys in names_by_bambi.items():
        ps = [ours.priors[k] for k in keys]
        params = {p: np.array([q.params[p] for q in ps], dtype=float) for p in ps[0].params}
        out[bname] = (ps[0].dist, params)
    return out


def _sim(seed=5, n=120):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(12), n // 12)
    x = rng.normal(2.0, 1.5, n)
    f = np.array(["a", "b", "c"])[rng.integers(0, 3, n)]
    return pd.DataFrame({
        "x": x, "f": f, "g": [f"g{i}" for i in g],
        "y01": (rng.random(n) < expit(0.3 * x - 0.5)).astype(int),
        "cnt": rng.poisson(np.exp(0.5 + 0.2 * x)),
        "pos": rng.gamma(2.0, np.exp(0.5 + 0.1 * x) / 2.0),
        "yc": 3 + x + rng.standard_t(4, n),
        "k": rng.integers(0, 6, n), "n": 6,
    })


# (our formula, Bambi's formula, family, link, {Bambi term: our keys})
PRIOR_CASES = [
    ("cbind(incidence, size - incidence) ~ period + (1|herd)",
     "p(incidence, size) ~ period + (1|herd)", "binomial", None, "cbpp"),
    ("p(incidence, size) ~ period + (1|herd)", "p(incidence, size) ~ period + (1|herd)",
     "binomial", "probit", "cbpp"),
    ("p(incidence, size) ~ period + (1|herd)", "p(incidence, size) ~ period + (1|herd)",
     "binomial", "cloglog", "cbpp"),
    ("y01 ~ x + f + x:f + (x|g)", "y01 ~ x + f + x:f + (x|g)", "bernoulli", None, "sim"),
    ("y01 ~ x + f + (1|g)", "y01 ~ x + f + (1|g)", "bernoulli", "probit", "sim"),
    ("p(k, n) ~ x + (1|g)", "p(k, n) ~ x + (1|g)", "binomial", None, "sim"),
    ("cnt ~ x + f + (x|g)", "cnt ~ x + f + (x|g)", "poisson", None, "sim"),
    ("cnt ~ x + (1|g)", "cnt ~ x + (1|g)", "negativebinomial", None, "sim"),
    ("yc ~ x + f + (1|g)", "yc ~ x + f + (1|g)", "t", None, "sim"),
    ("pos ~ x + (1|g)", "pos ~ x + (1|g)", "gamma", None, "sim"),
    ("pos ~ x + f + (1|g)", "pos ~ x + f + (1|g)", "gamma", "log", "sim"),
    ("TICKS ~ YEAR + HEIGHT + (1|BROOD) + (1|LOCATION)",
     "TICKS ~ YEAR + HEIGHT + (1|BROOD) + (1|LOCATION)", "poisson", None, "grouseticks"),
]


@pytest.mark.parametrize("ours_f,bambi_f,family,link,data", PRIOR_CASES)
def test_default_priors_equal_bambis(ours_f, bambi_f, family, link, data):
    df = _sim() if data == "sim" else bh.datasets.load(data)
    spec = build_spec(ours_f, df, family=get_family(family, link))
    ours = default_priors(spec.design, spec.family)
    theirs = _bambi_priors(bambi_f, df, family, link)
    mapping = {k: [k] for k in theirs}  # group SDs ("1|g", "x|g") and family parameters
    for name, labels in _bambi_columns(bambi_f, df, family, link).items():
        mapping[name] = [lme4_name(c) for c in labels]
    flat = _flat(ours, mapping)
    assert set(flat) == set(theirs), (sorted(flat), sorted(theirs))
    for key, (dist, params) in theirs.items():
        d, ps = flat[key]
        assert d == dist, (key, d, dist)
        assert set(ps) == set(params), (key, ps, params)
        for p, v in params.items():
            np.testing.assert_allclose(np.ravel(ps[p]), np.ravel(np.asarray(v, dtype=float)),
                                       rtol=1e-10, atol=1e-12, err_msg=f"{key}.{p}")


# --------------------------------------------------------------------------- latent variance
def test_latent_variance_closed_forms():
    s = np.ones(3)
    assert np.allclose(get_family("bernoulli").latent_variance({}, eta_mean=s), np.pi ** 2 / 3)
    assert np.allclose(get_family("binomial", "probit").latent_variance({}, eta_mean=s), 1.0)
    assert np.allclose(get_family("binomial", "cloglog").latent_variance({}, eta_mean=s),
                       np.pi ** 2 / 6)
    eta = np.array([-0.5, 0.3, 1.2])
    mu = np.exp(eta)
    P = get_family("poisson")
    np.testing.assert_allclose(P.latent_variance({}, eta), np.log1p(1 / mu))
    np.testing.assert_allclose(P.latent_variance({}, eta, approximation="delta"), 1 / mu)
    np.testing.assert_allclose(P.latent_variance({}, eta, approximation="trigamma"),
                               polygamma(1, mu))
    a = np.array([0.5, 2.0, 9.0])
    NB = get_family("negativebinomial")
    np.testing.assert_allclose(NB.latent_variance({"alpha": a}, eta), np.log1p(1 / mu + 1 / a))
    np.testing.assert_allclose(get_family("gamma").latent_variance({"alpha": a}), 1 / a)
    np.testing.assert_allclose(get_family("t").latent_variance({"sigma": a, "nu": a}), a ** 2)


def _glmer_design(case):
    data = case["data"]
    df = pd.read_csv(FIXTURES / "glmm_sim.csv") if data == "glmm_sim" else bh.datasets.load(data)
    formula = case["formula"].replace("^2", "**2")
    fam = {"binomial": "binomial", "poisson": "poisson", "Gamma": "gamma",
           "negative_binomial": "negativebinomial"}[case["family"]]
    if case["family"] == "binomial" and "cbind" not in formula:
        fam = "bernoulli"
    return build_spec(formula, df, family=get_family(fam, case["link"])).design, \
        get_family(fam, case["link"])


@pytest.mark.parametrize("name", ["cbpp_laplace", "cbpp_probit", "cbpp_cloglog", "grouse",
                                  "grouse_olre", "sim_gamma_log", "contraception", "verbagg"])
def test_icc_r2_at_glmer_estimates_match_performance(name):
    """Our per-draw function, fed glmer's estimates as one 'draw', gives performance's numbers
    (grouse_olre: the observation-level (1 | INDEX) is residual variance, var_dispersion)."""
    case = GLMER["cases"][name]
    perf = case["performance"]
    design, fam = _glmer_design(case)
    beta = np.array([[v["estimate"] for v in case["fixed"].values()]])
    assert beta.shape[1] == design.p
    covs = {}
    for factor, vc in case["varcorr"].items():
        sd = np.array(list(vc["sd"].values()))
        R = np.eye(sd.size)
        for rec in vc["cor_records"]:
            terms = list(vc["sd"])
            i, j = terms.index(rec["term1"]), terms.index(rec["term2"])
            R[i, j] = R[j, i] = rec["corr"]
        covs[factor] = (np.outer(sd, sd) * R)[None]
    params = {}
    if fam.name == "gamma":
        params["alpha"] = np.array([case["sigma"] ** -2.0])  # lme4's sigma^2 = 1/shape
    eta_mean = np.array([perf.get("null_model_intercept", 0.0)])
    vp = variance_parts(design, beta, None, covs, family=fam, family_params=params,
                        eta_mean=eta_mean)
    np.testing.assert_allclose(vp.fixed, perf["var_fixed"], rtol=1e-6)
    np.testing.assert_allclose(vp.random_total, perf["var_random"], rtol=1e-6)
    np.testing.assert_allclose(vp.residual, perf["var_residual"], rtol=1e-9)
    np.testing.assert_allclose(vp.icc(), perf["icc_adjusted"], rtol=1e-6)
    np.testing.assert_allclose(vp.r2_marginal(), perf["r2_marginal"], rtol=1e-6)
    np.testing.assert_allclose(vp.r2_conditional(), perf["r2_conditional"], rtol=1e-6)
    for approx, ref in perf.get("approximations", {}).items():
        np.testing.assert_allclose(fam.latent_variance({}, eta_mean, approximation=approx),
                                   ref["var_distribution"], rtol=1e-9)


# --------------------------------------------------------------------------- responses
def _resp_data():
    return pd.DataFrame({"g": list("aabbccdd") * 3, "x": np.arange(24.0) % 5,
                         "y01": [0, 1] * 12, "yb": [False, True, True] * 8,
                         "ys": ["no", "yes", "yes"] * 8,
                         "s": [1, 2, 0, 3] * 6, "f": [2, 1, 3, 0] * 6})


def test_binary_responses_as_researchers_hold_them():
    d = _resp_data()
    bern = get_family("bernoulli")
    ref = build_spec("y01 ~ x + (1|g)", d, family=bern).design.y
    assert ref.tolist() == d.y01.tolist()
    assert build_spec("yb ~ x + (1|g)", d, family=bern).design.y.tolist() == \
        d.yb.astype(float).tolist()
    ys = build_spec("ys ~ x + (1|g)", d, family=bern).design.y  # first level "no" = failure
    assert ys.tolist() == (d.ys == "yes").astype(float).tolist()
    d2 = d.assign(ys=pd.Categorical(d.ys, categories=["yes", "no"]))  # user's order rules
    assert build_spec("ys ~ x + (1|g)", d2, family=bern).design.y.tolist() == \
        (d.ys == "no").astype(float).tolist()
    # all True: still ones (booleans are values, not levels)
    d3 = d.assign(yb=True)
    assert build_spec("yb ~ x + (1|g)", d3, family=bern).design.y.tolist() == [1.0] * 24
    pd.testing.assert_frame_equal(d, _resp_data())  # user data untouched


def test_binomial_responses_cbind_and_p():
    d = _resp_data()
    binom = get_family("binomial")
    a = build_spec("cbind(s, f) ~ x + (1|g)", d, family=binom).design
    b = build_spec("p(s, n) ~ x + (1|g)", d.assign(n=d.s + d.f), family=binom).design
    assert a.y.tolist() == d.s.tolist() and a.trials.tolist() == (d.s + d.f).tolist()
    np.testing.assert_array_equal(a.trials, b.trials)
    c = build_spec("cbind(s, s + f - s) ~ x + (1|g)", d, family=binom).design
    np.testing.assert_array_equal(c.trials, a.trials)


@pytest.mark.parametrize("formula,family,data,match", [
    ("y ~ x + (1|g)", "bernoulli", {"y": [0, 1, 3, 0] * 6}, r"'y'.*value 3.*row 2.*bernoulli"),
    ("y ~ x + (1|g)", "poisson", {"y": [0, 1, -1, 2] * 6}, r"'y'.*-1.*row 2.*poisson.*counts"),
    ("y ~ x + (1|g)", "poisson", {"y": [0, 1, 1.5, 2] * 6}, r"'y'.*1\.5.*row 2.*poisson"),
    ("y ~ x + (1|g)", "negativebinomial", {"y": [0, 1, 0.5, 2] * 6}, r"negativebinomial"),
    ("y ~ x + (1|g)", "gamma", {"y": [1, 2, 0, 3] * 6}, r"'y'.*row 2.*gamma.*positive"),
    ("p(s, n) ~ x + (1|g)", "binomial", {"s": [1, 5, 0, 2] * 6, "n": 4},
     r"binomial.*successes exceed trials.*row 1: 5 successes of 4"),
    ("cbind(s, f) ~ x + (1|g)", "binomial", {"s": [1, 2, 0, 2] * 6, "f": [1, -1, 0, 2] * 6},
     r"failures must be >= 0.*row 1"),
    ("y ~ x + (1|g)", "binomial", {"y": [0, 1, 1, 0] * 6}, r"number of trials.*cbind"),
    ("cbind(s, f) ~ x + (1|g)", "poisson", {"s": [1] * 24, "f": [1] * 24}, r"family='binomial'"),
    ("y ~ x + (1|g)", "bernoulli", {"y": list("abca") * 6}, r"'y' has 3 levels.*bernoulli"),
])
def test_responses_not_fitting_the_family_are_clear_errors(formula, family, data, match):
    d = _resp_data()[["g", "x"]].assign(**data)
    with pytest.raises(DataError, match=match):
        build_spec(formula, d, family=get_family(family))


def test_observation_level_effect_allowed_only_for_non_gaussian_families():
    g = bh.datasets.load("grouseticks")
    d = build_spec("TICKS ~ YEAR + (1|BROOD) + (1|INDEX)", g, family=get_family("poisson")).design
    assert d.groups[1].n_levels == d.n
    with pytest.raises(Exception, match="INDEX"):
        build_spec("TICKS ~ YEAR + (1|BROOD) + (1|INDEX)", g)


def test_observation_level_effect_is_residual_variance_per_draw():
    """(1 | obs) with one level per row is overdispersion (performance's var_dispersion): its
    variance moves to the residual part for non-Gaussian families, draw by draw; a factor with
    one level per row but a slope, or fewer levels than rows, stays random."""
    from bayes_hlm.inference.variance import observation_level_factors

    rng = np.random.default_rng(0)
    n = 24
    df = pd.DataFrame({"y": rng.poisson(3.0, n), "x": rng.normal(size=n),
                       "g": [f"g{i % 4}" for i in range(n)], "obs": [f"o{i}" for i in range(n)]})
    fam = get_family("poisson")
    design = build_spec("y ~ x + (1 | g) + (1 | obs)", df, family=fam).design
    assert observation_level_factors(design) == {"obs"}
    beta = np.array([[0.5, 0.1], [0.7, -0.2]])
    covs = {"g": np.array([[[0.3]], [[0.5]]]), "obs": np.array([[[0.2]], [[0.4]]])}
    eta0 = np.array([1.0, 1.2])
    vp = variance_parts(design, beta, None, covs, family=fam, eta_mean=eta0)
    assert set(vp.random) == {"g"}
    np.testing.assert_allclose(vp.residual, np.log1p(np.exp(-eta0)) + [0.2, 0.4])
    two = build_spec("y ~ x + (1 | g)", df, family=fam).design
    assert observation_level_factors(two) == set()
    slope = build_spec("y ~ x + (x || obs)", df, family=fam,
                       control=bh.Control(check_nobs_vs_nRE="ignore")).design
    assert observation_level_factors(slope) == set()
