"""Response families (#14 item 1): the Family interface, the Gaussian family, and a family
added by one module (here: defined in the test) without editing any other module."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bayes_hlm import families as F
from bayes_hlm.backends.full import build_full_model
from bayes_hlm.errors import BayesHLMError
from bayes_hlm.families import Family, FamilyParam, get_family, get_link
from bayes_hlm.results.variance import variance_parts
from bayes_hlm.spec.build import build_design, build_spec
from bayes_hlm.spec.priors import Prior, default_priors, resolve_priors


def _data(seed=0, n_groups=6, m=5):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), m)
    x = rng.normal(size=g.size)
    return pd.DataFrame({"y": 3 + x + rng.normal(size=n_groups)[g] + rng.normal(size=g.size),
                         "x": x, "g": [f"g{i}" for i in g]})


# --------------------------------------------------------------------------- registry
def test_get_family_default_and_links():
    fam = get_family()
    assert fam.name == "gaussian" and fam.link.name == "identity"
    assert get_family("Gaussian", link="log").link.name == "log"
    assert get_family(fam) is fam
    assert get_family(fam, "log") == get_family("gaussian", "log")
    assert F.default_family() == fam
    assert build_spec("y ~ x + (1|g)", _data()).family == fam


def test_unknown_family_and_link_errors_name_the_valid_ones():
    with pytest.raises(BayesHLMError, match="unknown family 'poison'.*gaussian"):
        get_family("poison")
    with pytest.raises(BayesHLMError, match="link 'logit'.*gaussian.*identity, log, inverse"):
        get_family("gaussian", link="logit")
    with pytest.raises(BayesHLMError, match="unknown link 'nope'.*logit"):
        get_link("nope")
    with pytest.raises(BayesHLMError, match="unknown family"):
        get_family(3)


# --------------------------------------------------------------------------- links
@pytest.mark.parametrize("name", sorted(F.LINKS))
def test_link_round_trip_and_tensor_inverse(name):
    import pytensor.tensor as pt

    link = get_link(name)
    mu = np.array([0.05, 0.3, 0.5, 0.9]) if name in ("logit", "probit", "cloglog") \
        else np.array([0.2, 1.0, 3.5])
    eta = link.link(mu)
    np.testing.assert_allclose(link.inverse(eta), mu, rtol=1e-12)
    v = pt.vector("eta")
    np.testing.assert_allclose(link.inverse_tensor(v).eval({v: eta}), mu, rtol=1e-10)


# --------------------------------------------------------------------------- Gaussian
@pytest.mark.parametrize("link", ["identity", "log", "inverse"])
def test_gaussian_logpdf_matches_scipy(link):
    fam = get_family("gaussian", link)
    rng = np.random.default_rng(3)
    y = rng.normal(2.0, 1.0, size=7)
    eta = rng.uniform(0.5, 2.0, size=7)
    sigma = 0.7
    np.testing.assert_allclose(fam.logpdf(y, eta, sigma=sigma),
                               stats.norm.logpdf(y, fam.link.inverse(eta), sigma), rtol=1e-12)


def test_gaussian_facts():
    fam = get_family("gaussian")
    s = np.array([0.5, 1.0, 2.0])
    np.testing.assert_allclose(fam.latent_variance({"sigma": s}), s ** 2)
    np.testing.assert_allclose(fam.variance(np.array([1.0, 5.0])), [1.0, 1.0])
    assert fam.has_dispersion and fam.param_names == ("sigma",)
    assert fam.engines() == {"full", "marginal", "numba", "jax", "reml"}
    assert get_family("gaussian", "log").engines() == {"full"}
    assert fam.supports("reml") and not get_family("gaussian", "log").supports("marginal")
    draws = fam.random(np.zeros(20000), np.random.default_rng(0), sigma=2.0)
    assert draws.std() == pytest.approx(2.0, rel=0.03)


def test_check_response_names_column_and_family():
    fam = get_family("gaussian")
    fam.check_response(np.array([1.0, -2.5]), "y")
    with pytest.raises(BayesHLMError, match="'Reaction'.*row 1.*gaussian"):
        fam.check_response(np.array([1.0, np.inf]), "Reaction")


def test_gaussian_default_priors_are_bambis():
    """sigma ~ HalfStudentT(nu=4, sigma=sd(y)) (numpy.std, ddof=0): Bambi 0.21's PriorScaler."""
    df = _data()
    d = build_design("y ~ x + (1|g)", df)
    ps = default_priors(d)
    assert ps.priors["sigma"] == Prior("HalfStudentT", nu=4.0, sigma=float(np.std(df["y"])))
    assert ps.priors["Intercept"].params["mu"] == pytest.approx(float(np.mean(df["y"])))
    assert ps.family_params == ("sigma",)
    assert list(ps.priors)[:3] == ["Intercept", "x", "sigma"]


def test_variance_parts_uses_the_family_latent_variance():
    d = build_design("y ~ x + (1|g)", _data())
    beta = np.array([[1.0, 0.5], [2.0, 0.2]])
    covs = {"g": np.array([[[1.0]], [[4.0]]])}
    sigma = np.array([0.5, 3.0])
    vp = variance_parts(d, beta, sigma, covs)
    np.testing.assert_allclose(vp.residual, sigma ** 2)

    class Fixed(Family):
        name, links = "fixed_var", ("identity",)

        def latent_variance(self, params, eta_mean=None):
            return np.full(2, 7.0)

    vp2 = variance_parts(d, beta, sigma, covs, family=Fixed())
    np.testing.assert_allclose(vp2.residual, 7.0)
    np.testing.assert_allclose(vp2.random["g"], vp.random["g"])


def test_full_model_density_unchanged_for_gaussian():
    """The family-built likelihood is PyMC's Normal(mu, sigma) on y, as before."""
    import pymc as pm

    df = _data()
    d = build_design("y ~ x + (x|g)", df)
    ps = default_priors(d)
    model = build_full_model(d, ps)
    obs = model["y"]
    assert obs.owner.op.__class__.__name__ == "NormalRV"
    ip = model.initial_point()
    lp = model.compile_logp()(ip)
    model2 = build_full_model(d, ps, family=get_family("gaussian"))
    assert model2.compile_logp()(ip) == pytest.approx(lp, rel=1e-12)
    assert set(v.name for v in model.free_RVs) == set(v.name for v in model2.free_RVs)
    assert isinstance(model, pm.Model)


# --------------------------------------------------------------------------- plug-in family
class ToyLaplace(Family):
    """A toy family with its own positive parameter ``b`` (Laplace residuals)."""

    name = "toy_laplace"
    links = ("identity", "log")
    params = (FamilyParam("b", lambda y_mean, y_sd: ("HalfNormal", {"sigma": y_sd})),)

    def prior_moments(self, y_mean, y_sd):
        return y_mean, y_sd

    def likelihood(self, name, eta, params, observed):
        import pymc as pm

        return pm.Laplace(name, mu=self.link.inverse_tensor(eta), b=params["b"],
                          observed=observed)

    def logpdf(self, y, eta, *, b, **_):
        return stats.laplace.logpdf(y, self.link.inverse(eta), b)

    def latent_variance(self, params, eta_mean=None):
        return 2.0 * np.asarray(params["b"]) ** 2


def test_a_family_module_plugs_in_without_editing_others(monkeypatch):
    monkeypatch.setitem(F.FAMILIES, ToyLaplace.name, ToyLaplace)
    F.register(ToyLaplace)
    fam = get_family("toy_laplace")
    assert isinstance(fam, ToyLaplace) and fam.engines() == {"full"}
    df = _data()
    d = build_design("y ~ x + (1|g)", df)
    ps = default_priors(d, fam)
    assert "sigma" not in ps.priors and ps.priors["b"] == Prior("HalfNormal",
                                                                sigma=float(np.std(df["y"])))
    with pytest.raises(BayesHLMError, match="positive-valued"):
        resolve_priors(d, {"b": Prior("Normal", mu=0, sigma=1)}, family=fam)
    model = build_full_model(d, ps, family=fam)
    assert model["y"].owner.op.__class__.__name__ == "LaplaceRV"
    assert {"b"} <= {v.name for v in model.free_RVs}
    ip = model.initial_point()
    assert np.isfinite(model.compile_logp()(ip))
    # the observed log density is the family's NumPy logpdf at the same point
    import pytensor

    outs = model.replace_rvs_by_values([model["fixed"], model["r__g"]])
    beta, r = pytensor.function(model.value_vars, outs, on_unused_input="ignore")(**ip)
    eta = d.X @ beta + (d.groups[0].Z * r[d.groups[0].codes]).sum(axis=1)
    b = float(np.exp(ip["b_log__"]))
    got = model.compile_logp(vars=[model["y"]])(ip)
    assert got == pytest.approx(fam.logpdf(d.y, eta, b=b).sum(), rel=1e-10)


def test_register_refuses_non_families():
    with pytest.raises(TypeError):
        F.register(object)
