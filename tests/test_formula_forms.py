"""Every formula form fits end to end with both backends and yields the expected parameters."""

import warnings

import numpy as np
import pandas as pd
import pytest

import bayes_hlm as bh


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    n_g, per = 12, 10
    g = np.repeat(np.arange(n_g), per)
    w = rng.normal(size=n_g)[g]                      # level-2 (group-constant) predictor
    x = rng.normal(size=n_g * per)
    sub = np.tile(np.repeat([0, 1], per // 2), n_g)  # nested in g
    h = rng.integers(0, 5, size=n_g * per)           # crossed with g
    cat = pd.Categorical(rng.choice(["lo", "mid", "hi"], size=n_g * per), categories=["lo", "mid", "hi"])
    y = 1 + 0.5 * x + 0.3 * w + rng.normal(0, 0.8, n_g)[g] + rng.normal(0, 0.3, n_g)[g] * x \
        + rng.normal(0, 0.5, 5)[h] + rng.normal(size=n_g * per)
    return pd.DataFrame({"y": y, "x": x, "w": w, "g": pd.Categorical(g.astype(str)),
                         "sub": sub.astype(str), "h": h.astype(str), "cat": cat})


FORMS = {
    "(1|g)": ("y ~ x + (1|g)", {"g": ["Intercept"]}, False),
    "(x|g)": ("y ~ x + (x|g)", {"g": ["Intercept", "x"]}, True),
    "(x||g)": ("y ~ x + (x||g)", {"g": ["Intercept", "x"]}, False),
    "(0+x|g)": ("y ~ x + (0 + x|g)", {"g": ["x"]}, False),
    "(1|g/sub)": ("y ~ x + (1|g/sub)", {"g": ["Intercept"], "g:sub": ["Intercept"]}, False),
    "(1|g:sub)": ("y ~ x + (1|g:sub)", {"g:sub": ["Intercept"]}, False),
    "crossed": ("y ~ x + (1|g) + (1|h)", {"g": ["Intercept"], "h": ["Intercept"]}, False),
    "level2+cat+cross-level": ("y ~ x * w + cat + (x|g)", {"g": ["Intercept", "x"]}, True),
}


FULL_DEFAULT = {"(x|g)", "(1|g/sub)", "crossed"}  # the full model on the rest runs with --runslow
CASES = [(f, "marginal") for f in FORMS] + [
    pytest.param(f, "full", marks=() if f in FULL_DEFAULT else pytest.mark.slow) for f in FORMS]


@pytest.mark.parametrize("form, method", CASES)
def test_form_fits(data, form, method):
    formula, groups, corr = FORMS[form]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = bh.fit(formula, data, method=method, sampler="pymc", chains=1, draws=60, tune=60, seed=1,
                   warn=False, progressbar=False)
    s = r.summary()
    assert r.info.method == method
    for factor, terms in groups.items():
        for t in terms:
            assert f"sd({t} | {factor})" in s.index
        assert r._draws.effects(factor).shape[1:] == (r.ngrps()[factor], len(terms))
    assert any(s.index.str.startswith("cor(")) == corr
    assert np.isfinite(s["mean"]).all()
    if form == "level2+cat+cross-level":
        assert {"x:w", "catmid", "cathi"} <= set(r.design.fixed_names)
