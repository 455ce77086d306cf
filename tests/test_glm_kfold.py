"""kfold() for non-Gaussian families (#15): held-out rows of seen levels use the draws of
their group effects; a new level's effect is integrated out by Monte Carlo (checked against
the exact Gaussian integral); binomial trials and frequency weights reach the held-out
density."""

import warnings

import numpy as np
import pandas as pd
import pytest

import bayes_hlm as bh
from bayes_hlm.results.workflow import heldout_loglik, _logmeanexp

TINY = dict(chains=2, draws=150, tune=150, seed=2, warn=False, progressbar=False)


def test_monte_carlo_new_group_integral_matches_the_exact_gaussian_one(sleep_fit, sleepstudy):
    new = sleepstudy.assign(Subject="new").iloc[:30]
    y = new["Reaction"].to_numpy()
    exact = _logmeanexp(heldout_loglik(sleep_fit, new, y, max_draws=300), 0)
    mc = _logmeanexp(heldout_loglik(sleep_fit, new, y, max_draws=300, exact=False,
                                    new_group_draws=400), 0)
    np.testing.assert_allclose(mc, exact, atol=0.02)
    seen = sleepstudy.iloc[:30]
    np.testing.assert_allclose(  # seen levels: no integral, both paths agree exactly
        heldout_loglik(sleep_fit, seen, seen["Reaction"].to_numpy(), max_draws=50),
        heldout_loglik(sleep_fit, seen, seen["Reaction"].to_numpy(), max_draws=50, exact=False))


@pytest.fixture(scope="module")
def binom():
    rng = np.random.default_rng(8)
    d = pd.DataFrame({"g": np.repeat([f"g{k}" for k in range(6)], 5), "x": rng.normal(size=30)})
    d["n"] = rng.integers(4, 12, 30)
    d["s"] = rng.binomial(d["n"], 1 / (1 + np.exp(-(0.2 + 0.8 * d["x"]))))
    return d


def test_kfold_binomial_leave_group_out(binom):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = bh.fit("cbind(s, n - s) ~ x + (1 | g)", binom, family="binomial", **TINY)
        kf = r.kfold(k=3, group="g", draws=100, tune=100)
        loo = r.loo()
    assert kf.n_folds == 3 and np.isfinite(kf.elpd_i.values).all()
    # out-of-sample is worse than in-sample, and of loo's size for this well-specified model
    assert kf.elpd < float(_logmeanexp(r.log_likelihood()["log_likelihood"]["y"].values
                                       .reshape(-1, 30), 0).sum())
    assert abs(kf.elpd - loo.elpd) < 4 * (kf.se + loo.se)
    assert np.isfinite(bh.compare({"a": kf, "b": loo}, warn=False)["elpd"]).all() \
        if hasattr(bh, "compare") else True
