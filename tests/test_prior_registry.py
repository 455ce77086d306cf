"""The prior registry (#14 item 2): every fact about a prior distribution stated once, and
impossible priors refused with a named error before any sampling (#21)."""

import math

import numpy as np
import pandas as pd
import pytest

import bayes_hlm as bh
from bayes_hlm.backends import numba_density as nd
from bayes_hlm.errors import BayesHLMError
from bayes_hlm.spec.build import build_design
from bayes_hlm.spec.prior_registry import (PRIOR_DISTS, SPREAD_ROLES, PriorDist, PriorError,
                                           positive_dists)
from bayes_hlm.spec.priors import SD_DISTS, Prior, intercept_shift, resolve_priors
from bayes_hlm.spec.scaling import scale_prior
from bayes_hlm.results.sensitivity import widen_prior

#: a valid example of every registered distribution (the completeness test demands one)
EXAMPLES = {
    "Normal": [dict(mu=0.5, sigma=2.0), dict(mu=-1.0, tau=0.25)],
    "StudentT": [dict(nu=3.0, mu=0.5, sigma=2.0), dict(nu=5.0, mu=0.0, lam=0.5)],
    "Cauchy": [dict(alpha=1.0, beta=0.5)],
    "Laplace": [dict(mu=0.3, b=1.2)],
    "Logistic": [dict(mu=0.2, s=0.7)],
    "SkewNormal": [dict(mu=0.1, sigma=1.5, alpha=2.0)],
    "Uniform": [dict(lower=-1.0, upper=3.0)],
    "Flat": [dict()],
    "HalfFlat": [dict()],
    "HalfNormal": [dict(sigma=3.0), dict(tau=0.5)],
    "HalfStudentT": [dict(nu=4.0, sigma=2.0)],
    "HalfCauchy": [dict(beta=1.5)],
    "Exponential": [dict(lam=0.7), dict(scale=2.0)],
    "Gamma": [dict(alpha=2.0, beta=0.5), dict(mu=2.0, sigma=1.0)],
    "InverseGamma": [dict(alpha=3.0, beta=2.0)],
    "LogNormal": [dict(mu=0.2, sigma=0.8)],
    "Weibull": [dict(alpha=1.5, beta=2.0)],
    "LKJ": [dict(eta=2.0)],
}


def _data(seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(8), 6)
    x = rng.normal(size=g.size)
    return pd.DataFrame({"y": 2 + x + rng.normal(size=8)[g] + rng.normal(size=g.size),
                         "x": x, "g": [f"g{i}" for i in g]})


# --------------------------------------------------------------------------- completeness
def test_registry_is_complete():
    """Every registered distribution states its PyMC class, support/transform, a role for every
    parameter, a sensitivity rule (or says it has none) and, if compiled, a distinct numba code."""
    import pymc as pm

    assert set(EXAMPLES) == set(PRIOR_DISTS), "add an example for every registered distribution"
    codes = [d.numba_code for d in PRIOR_DISTS.values() if d.numba_code is not None]
    assert len(codes) == len(set(codes))
    for name, d in PRIOR_DISTS.items():
        assert isinstance(d, PriorDist) and d.name == name
        assert issubclass(d.pymc(), pm.Distribution) or d.pymc() is not None, name
        assert d.support in ("real", "positive", "correlation")
        assert d.transform == {"real": "none", "positive": "log", "correlation": "cholesky"}[
            d.support], name
        assert {p.role for p in d.params} <= {"loc", "scale", "prec", "rate", "log", "fixed"}
        for s in d.spellings:
            assert set(s) <= set(d.param_names), name
        assert d.widen_rule in ("spread", "none", None)
        if d.widen_rule == "spread":
            assert any(p.role in SPREAD_ROLES for p in d.params), name
        if d.numba_code is not None:
            assert d.support == "positive" and d.typical is not None, name
            assert set(d.numba_params) in [set(s) for s in d.spellings], name
            assert nd.POSITIVE_FAMILIES[name] == (d.numba_code, d.numba_params)
        for params in EXAMPLES[name]:
            d.validate(params)  # the examples are valid
    assert SD_DISTS == positive_dists()
    assert set(nd.POSITIVE_FAMILIES) == {n for n, d in PRIOR_DISTS.items()
                                         if d.numba_code is not None}


@pytest.mark.parametrize("name", sorted(n for n, d in PRIOR_DISTS.items()
                                        if d.numba_code is not None))
def test_compiled_log_density_matches_pymc(name):
    """The compiled density of log v (prior + Jacobian u) equals PyMC's logp + u up to a
    constant, and its gradient matches a central difference."""
    import pymc as pm

    d = PRIOR_DISTS[name]
    params = EXAMPLES[name][0]
    vals = [float(params[k]) for k in d.numba_params] + [0.0]
    us = np.array([-1.3, -0.2, 0.4, 1.1])
    ours = np.array([nd._log_positive(d.numba_code, vals[0], vals[1], u)[0] for u in us])
    ref = pm.logp(d.pymc().dist(**params), np.exp(us)).eval() + us
    np.testing.assert_allclose(ours - ours[0], ref - ref[0], rtol=1e-9, atol=1e-9)
    h = 1e-6
    for u in us:
        g = nd._log_positive(d.numba_code, vals[0], vals[1], u)[1]
        fd = (nd._log_positive(d.numba_code, vals[0], vals[1], u + h)[0]
              - nd._log_positive(d.numba_code, vals[0], vals[1], u - h)[0]) / (2 * h)
        assert g == pytest.approx(fd, rel=1e-5, abs=1e-6)
    assert nd._scale(Prior(name, **params)) > 0


@pytest.mark.parametrize("name,params", [(n, p) for n, ps in EXAMPLES.items() for p in ps
                                         if PRIOR_DISTS[n].support != "correlation" and p],
                         ids=str)
def test_rescale_and_widen_are_densities_of_transformed_variables(name, params):
    """rescale: the prior of a*theta; widen: spread x f about the location (sensitivity)."""
    import pymc as pm

    d = PRIOR_DISTS[name]
    positive = d.support == "positive"
    t = np.array([0.3, 1.1, 2.7]) if positive else np.array([-0.6, 0.2, 1.5])
    lp = pm.logp(d.pymc().dist(**params), t).eval()
    a = 3.0
    sc = scale_prior(Prior(name, **params), a)
    np.testing.assert_allclose(pm.logp(d.pymc().dist(**sc.params), a * t).eval(),
                               lp - np.log(a), rtol=1e-6, atol=2e-6)
    if d.widen_rule is None:
        with pytest.raises(BayesHLMError, match="scale parameter"):
            widen_prior(Prior(name, **params), a)
        return
    loc = next((float(params[p.name]) for p in d.params if p.role == "loc" and p.name in params),
               0.0)
    w = widen_prior(Prior(name, **params), a)
    np.testing.assert_allclose(pm.logp(d.pymc().dist(**w.params), loc + a * (t - loc)).eval(),
                               lp - np.log(a), rtol=1e-6, atol=2e-6)


def test_widen_keeps_lkj_and_location():
    assert widen_prior(Prior("LKJ", eta=2.0), 5.0).params == {"eta": 2.0}
    w = widen_prior(Prior("Normal", mu=1.0, sigma=2.0), 3.0)
    assert w.params == {"mu": 1.0, "sigma": 6.0}


def test_old_sensitivity_scale_prior_name_still_works():
    from bayes_hlm.results import sensitivity as SE

    with pytest.warns(DeprecationWarning, match="widen_prior"):
        assert SE.scale_prior(Prior("Exponential", lam=2), 2).params == {"lam": 1.0}


# --------------------------------------------------------------------------- refusals (#21)
@pytest.mark.parametrize("dist,params,param,value", [
    ("HalfNormal", dict(sigma=-5), "sigma", "-5.0"),
    ("Normal", dict(mu=0, sigma=-1), "sigma", "-1.0"),
    ("LKJ", dict(eta=-1), "eta", "-1.0"),
    ("HalfNormal", dict(sigma=float("nan")), "sigma", "nan"),
    ("Normal", dict(mu=0, sigma=0.0), "sigma", "0.0"),
    ("HalfStudentT", dict(nu=4, sigma=float("inf")), "sigma", "inf"),
    ("Normal", dict(mu=float("nan"), sigma=1), "mu", "nan"),
    ("Exponential", dict(lam=0), "lam", "0.0"),
    ("Gamma", dict(alpha=-2, beta=1), "alpha", "-2.0"),
    ("Normal", dict(mu=[0.0, 1.0], sigma=[1.0, -3.0]), "sigma", "-3.0"),
])
def test_impossible_values_refused_at_construction(dist, params, param, value):
    with pytest.raises(PriorError) as e:
        Prior(dist, **params)
    msg = str(e.value)
    assert dist in msg and repr(param) in msg and value in msg


def test_non_numeric_parameter_refused():
    with pytest.raises(PriorError, match="'sigma' must be a number"):
        Prior("Normal", mu=0, sigma="wide")


@pytest.mark.parametrize("key,prior,match", [
    ("x", Prior("Normal", mean=0, sd=1), r"no parameter 'mean'.*Normal\(mu, sigma\)"),
    ("x", Prior("Normal", mu=0, sigma=1, tau=1), "cannot be given together"),
    ("x", Prior("Gamma", alpha=2.0), "needs parameter 'beta'"),
    ("x", Prior("Foo", a=1), "unknown prior distribution 'Foo'.*Normal"),
    ("x", Prior("Uniform", lower=2.0, upper=1.0), "'lower'.*below 'upper'"),
    ("sigma", Prior("HalfNormal", scale=1.0), "no parameter 'scale'"),
])
def test_bad_names_refused_when_resolved(key, prior, match):
    d = build_design("y ~ x + (1|g)", _data())
    with pytest.raises(PriorError, match=match) as e:
        resolve_priors(d, {key: prior})
    assert repr(key) in str(e.value)


@pytest.mark.parametrize("priors,match", [
    ({"Intercept": Prior("Normal", mean=300, sd=50)}, "'mean'"),
    ({"1|g": {"dist": "HalfNormal", "sigma": -5}}, "'sigma'.*-5"),
    ({"corr|g": Prior("LKJ", eta=2), "sigma": {"dist": "HalfCauchy", "beta": float("nan")}},
     "'beta'.*nan"),
    ([("x", Prior("Normal", mu=0, sigma=1))], "must be a dict"),
    ({"x": {"mu": 0, "sigma": 1}}, "'dist' key"),
])
def test_fit_refuses_before_sampling(priors, match, monkeypatch):
    """bh.fit raises the named error before any sampler is started."""
    import bayes_hlm.fitting as F

    def no_sampling(*a, **k):
        raise AssertionError("sampling started")

    monkeypatch.setattr(F, "sample_model", no_sampling, raising=False)
    with pytest.raises(BayesHLMError, match=match):
        bh.fit("y ~ x + (x|g)", _data(), method="full", priors=priors)


def test_lkj_negative_eta_refused_through_fit():
    with pytest.raises(PriorError, match="LKJ prior: parameter 'eta'"):
        bh.fit("y ~ x + (x|g)", _data(), priors={"corr|g": Prior("LKJ", eta=-1)})


def test_valid_alternative_spellings_accepted():
    d = build_design("y ~ x + (1|g)", _data())
    ps = resolve_priors(d, {"x": Prior("Normal", mu=0, tau=0.5), "sigma": Prior("Exponential",
                                                                               scale=2.0),
                            "1|g": Prior("HalfNormal")})
    assert ps.priors["x"].params == {"mu": 0.0, "tau": 0.5}


# --------------------------------------------------------------------------- intercept shift
def test_intercept_shift_is_one_definition_for_numpy_pytensor_numba():
    import pytensor.tensor as pt

    rng = np.random.default_rng(1)
    raw = rng.normal(size=(5, 4))
    xm = rng.normal(size=4)
    ref = np.array([sum(xm[j] * r[j] for j in range(4) if j != 2) for r in raw])
    np.testing.assert_allclose(intercept_shift(raw, xm, 2), ref, rtol=1e-12)
    v = pt.vector("v")
    f = intercept_shift(v, xm, 2).eval({v: raw[0]})
    assert float(f) == pytest.approx(ref[0], rel=1e-12)
    assert nd._intercept_shift(raw[0].copy(), xm, 2) == pytest.approx(ref[0], rel=1e-12)
    assert not math.isnan(nd._intercept_shift(raw[0].copy(), xm, 0))
