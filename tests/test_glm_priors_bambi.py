"""Default priors with offset(...) terms and frequency weights against bambi 0.21 itself
(#15): Bambi scales the linear predictor's priors by the response as given (``y``, not
``y - offset``; only Gaussian and t models use the response's moments), and a weighted
model gets the priors Bambi gives the rows repeated ``w`` times."""

import warnings

import numpy as np
import pandas as pd
import pytest

import bayes_hlm as bh


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    n = 60
    d = pd.DataFrame({"g": rng.integers(0, 5, n).astype(str), "x": rng.normal(size=n),
                      "e": rng.uniform(1, 3, n), "w": rng.integers(1, 4, n)})
    d["y"] = rng.poisson(np.exp(0.3 + 0.5 * d["x"]) * d["e"])
    d["yg"] = d["y"] + 10 * d["e"]
    return d


def _bambi_priors(formula, data, family):
    bmb = pytest.importorskip("bambi")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = bmb.Model(formula, data, family=family)
        m.build()
    c = m.components["mu"]
    out = {"Intercept": (c.intercept_term.prior.args["mu"], c.intercept_term.prior.args["sigma"])}
    out.update({k: (0.0, t.prior.args["sigma"]) for k, t in c.common_terms.items()})
    out.update({k: (None, t.prior.args["sigma"].args["sigma"])
                for k, t in c.group_specific_terms.items()})
    if "sigma" in m.components:
        out["sigma"] = (None, m.components["sigma"].prior.args["sigma"])
    return out


def _ours(formula, data, family, **kw):
    from bayes_hlm.spec.build import build_spec
    from bayes_hlm.spec.priors import resolve_priors

    spec = build_spec(formula.replace("(x|g)", "(x||g)"), data, family=family, **kw)
    ps = resolve_priors(spec.design, None, spec.family).priors
    return {k: (p.params.get("mu"), p.params["sigma"]) for k, p in ps.items() if "sigma" in p.params}


def _assert_same(theirs, ours):
    for k, (mu, sigma) in theirs.items():
        assert ours[k][1] == pytest.approx(float(sigma), rel=1e-6), k
        if mu is not None:
            assert (ours[k][0] or 0.0) == pytest.approx(float(mu), rel=1e-6, abs=1e-9), k


@pytest.mark.parametrize("family,response", [("gaussian", "yg"), ("t", "yg"),
                                             ("poisson", "y"), ("negativebinomial", "y")])
def test_offset_priors_are_bambis(data, family, response):
    f = f"{response} ~ x + offset(e) + (x|g)"
    _assert_same(_bambi_priors(f, data, family), _ours(f, data, family))


@pytest.mark.parametrize("family", ["poisson", "t"])
def test_weighted_priors_are_bambis_on_the_repeated_rows(data, family):
    f = "y ~ x + (x|g)"
    expanded = data.loc[data.index.repeat(data["w"])].reset_index(drop=True)
    _assert_same(_bambi_priors(f, expanded, family), _ours(f, data, family, weights="w"))
