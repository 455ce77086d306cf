"""Gamma's default inverse link (and its identity link) start inside the linear
predictor's domain (#15): PyMC's jittered start around eta = 0 has no density there."""

import warnings

import numpy as np
import pandas as pd
import pytest

import bayes_hlm as bh
from bayes_hlm.backends.full import build_full_model
from bayes_hlm.spec.build import build_spec
from bayes_hlm.spec.priors import resolve_priors


@pytest.fixture(scope="module")
def gamma_data():
    rng = np.random.default_rng(3)
    n = 120
    d = pd.DataFrame({"g": np.repeat([f"g{k}" for k in range(10)], 12), "x": rng.uniform(0, 1, n)})
    eta = 0.5 + 0.3 * d["x"] + np.repeat(rng.normal(0, 0.05, 10), 12)
    d["y"] = rng.gamma(4.0, 1 / eta / 4.0)
    d["c"] = rng.poisson(3 + 2 * d["x"])
    return d


@pytest.mark.parametrize("formula,family,link", [("y ~ x + (1|g)", "gamma", None),
                                                 ("y ~ x + (x|g)", "gamma", "identity")])
def test_initial_point_has_a_finite_density(gamma_data, formula, family, link):
    spec = build_spec(formula, gamma_data, family=bh.families.get_family(family, link))
    assert spec.family.bounded_eta
    model = build_full_model(spec.design, resolve_priors(spec.design, None, spec.family), {},
                             spec.family)
    assert np.isfinite(model.compile_logp()(model.initial_point()))


def test_log_link_keeps_pymcs_default_start(gamma_data):
    assert not bh.families.get_family("gamma", "log").bounded_eta
    assert not bh.families.get_family("poisson").bounded_eta


@pytest.mark.parametrize("seed", [0, 3])
def test_gamma_inverse_link_fit_runs_and_recovers(gamma_data, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = bh.fit("y ~ x + (1|g)", gamma_data, family="gamma", chains=2, draws=200, tune=200,
                   seed=seed, progressbar=False, warn=False)
    fx = r.fixef()
    lo, hi = fx.columns[2], fx.columns[3]
    for name, truth in (("Intercept", 0.5), ("x", 0.3)):
        assert fx.loc[name, lo] < truth < fx.loc[name, hi]
    assert 2.0 < r.summary().loc["alpha", "mean"] < 7.0  # shape 4
