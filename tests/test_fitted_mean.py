"""fitted_mean: the posterior-mean fitted values without a draws x rows matrix.

Equal (to rounding) to ``predict(result)["mean"]`` in its cell form (log link, one random
intercept: exp(x'beta) exp(b) as a matrix product), in its streamed row chunks (every other
model), with and without group effects and offsets.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

import bayes_hlm as bh
from bayes_hlm.results import predict as pr


def _data(G=25, n=12, seed=4):
    rng = np.random.default_rng(seed)
    N = G * n
    g = np.repeat(np.arange(G), n)
    a = rng.integers(0, 3, N)
    x = rng.normal(size=N)
    t = rng.choice([1.0, 2.0], N)
    eta = 0.3 + 0.2 * a + 0.3 * x + rng.normal(0, 0.5, G)[g] + np.log(t)
    return pd.DataFrame({"y": rng.poisson(np.exp(eta)), "a": pd.Categorical.from_codes(a, list("ABC")),
                         "x": x, "t": t, "g": [f"g{i}" for i in g],
                         "k": rng.binomial(1, 0.4, N)})


def _fit(formula, family="poisson", **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bh.fit(formula, _data(), family=family, chains=2, draws=40, tune=40, seed=3,
                      progressbar=False, warn=False, **kw)


@pytest.mark.parametrize("formula,cells", [
    ("y ~ a + offset(np.log(t)) + (1 | g)", True),  # log link, random intercept: cell form
    ("y ~ a + x + (1 + x | g)", False),              # a slope: row chunks
])
def test_fitted_mean_equals_predict(formula, cells, monkeypatch):
    r = _fit(formula)
    beta = r._draws.flat("fixed")
    factors = pr._included(r, True)
    assert (pr._fitted_cells(r, factors, pr.family_of(r), beta) is not None) == cells
    for ge in (True, False):
        want = pr.predict(r, None, group_effects=ge)["mean"].to_numpy()
        np.testing.assert_allclose(pr.fitted_mean(r, ge), want, rtol=1e-12, atol=0)
    np.testing.assert_allclose(r.fitted().to_numpy(), pr.predict(r)["mean"].to_numpy(), rtol=1e-12)
    monkeypatch.setattr(pr, "FITTED_CHUNK", 7 * r._draws.size)  # 7 rows a chunk
    monkeypatch.setattr(pr, "_CELL_PATTERNS", 0)  # the row chunks for every model
    np.testing.assert_allclose(pr.fitted_mean(r), pr.predict(r)["mean"].to_numpy(), rtol=1e-12)


def test_fitted_mean_of_a_bernoulli_model():
    r = _fit("k ~ x + (1 | g)", family="bernoulli")
    np.testing.assert_allclose(r.fitted().to_numpy(), pr.predict(r)["mean"].to_numpy(), rtol=1e-12)
    assert r.residuals("pearson").notna().all()


def test_effect_draws_select_levels_and_draws_in_one_step():
    """DrawSource.effects: a subset of levels and/or draws equals the same selection of all
    effects (the fit-time check reads 1,000 of 100k levels without copying all of them)."""
    r = _fit("y ~ a + (1 | g)")
    src = r._draws
    full = src.effects("g")
    assert not np.shares_memory(full, r.posterior["r__g"].values)  # a copy, as before
    groups, idx = np.array([3, 0, 7]), np.array([5, 1, 60])
    np.testing.assert_array_equal(src.effects("g", groups=groups), full[:, groups])
    np.testing.assert_array_equal(src.effects("g", idx), full[idx])
    np.testing.assert_array_equal(src.effects("g", idx, groups), full[idx][:, groups])


@pytest.mark.parametrize("formula", ["y ~ a + offset(np.log(t)) + (1 | g)",
                                     "y ~ a + x + (1 + x | g)"])
def test_fitted_mean_over_a_subset_of_draws(formula, monkeypatch):
    """``idx``: the mean over those flat draws only, the same in the cell form and the row
    chunks; every draw's indices give the default."""
    r = _fit(formula)
    S = r._draws.size
    idx = r._draws.thinned(13)
    assert len(idx) == 13
    np.testing.assert_allclose(pr.fitted_mean(r, True, np.arange(S)), pr.fitted_mean(r), rtol=1e-12)
    sub = pr.fitted_mean(r, True, idx)
    assert not np.allclose(sub, pr.fitted_mean(r), rtol=1e-6)  # a different average
    fixed_only = pr.fitted_mean(r, False, idx)
    monkeypatch.setattr(pr, "_CELL_PATTERNS", 0)  # the row chunks
    np.testing.assert_allclose(pr.fitted_mean(r, True, idx), sub, rtol=1e-12)
    np.testing.assert_allclose(pr.fitted_mean(r, False, idx), fixed_only, rtol=1e-12)



def test_cell_product_runs_on_one_blas_thread(monkeypatch):
    """The cell form's many small products run under a one-thread BLAS limit (threads only
    contend there), with reml's and glmer's limiter; the same fitted means."""
    import bayes_hlm._blas as blas
    from bayes_hlm.reml import api as reml_api

    assert reml_api.blas_threads is blas.blas_threads is pr.blas_threads
    r = _fit("y ~ a + offset(np.log(t)) + (1 | g)")
    want = pr.predict(r)["mean"].to_numpy()
    seen = []

    def spy(n):
        seen.append(n)
        return blas.blas_threads(n)

    monkeypatch.setattr(pr, "blas_threads", spy)
    np.testing.assert_allclose(pr.fitted_mean(r), want, rtol=1e-12)
    assert seen == [1]
