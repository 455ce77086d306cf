"""Vectorised PSIS-LOO equals ArviZ's (the slow per-observation path) to rounding."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bayes_hlm.backends import naming
from bayes_hlm.results import loo as L
from bayes_hlm.results import workflow as W
from bayes_hlm.results.draws import factor_design


def _old_loglik(result):
    """The pointwise log-likelihood as BayesResult computed it before (scipy norm.logpdf)."""
    from scipy.stats import norm

    src = result._draws
    sigma = src.flat(naming.SIGMA)
    blocks, start = [], 0
    for mu in src.linpred_chunks(np.arange(src.size), result.design.X, factor_design(result.design),
                                 offset=result.design.offset):
        blocks.append(norm.logpdf(result.design.y[None, :], mu, sigma[start:start + mu.shape[0], None]))
        start += mu.shape[0]
    return np.concatenate(blocks).reshape(src.n_chains, src.n_draws, -1)


def test_pointwise_loglik_equals_old(sleep_fit):
    new = L.pointwise_loglik(sleep_fit)
    np.testing.assert_allclose(new, _old_loglik(sleep_fit), rtol=0, atol=1e-10)
    tree_ll = sleep_fit.log_likelihood()["log_likelihood"]["y"].values
    np.testing.assert_array_equal(tree_ll, new)


def test_loo_equals_arviz(sleep_fit):
    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        new = sleep_fit.loo()
        old = az.loo(sleep_fit.log_likelihood(), pointwise=True)
    for f in ("elpd", "se", "p"):
        assert getattr(new, f) == pytest.approx(getattr(old, f), abs=1e-10, rel=0)
    np.testing.assert_allclose(np.asarray(new.pareto_k), np.asarray(old.pareto_k), atol=1e-10)
    np.testing.assert_allclose(np.asarray(new.elpd_i), np.asarray(old.elpd_i), atol=1e-10)
    assert sleep_fit.loo() is new  # cached
    assert type(new).__name__ == type(old).__name__ and new.n_samples == old.n_samples


@settings(derandomize=True, max_examples=15, deadline=None)
@given(df=st.sampled_from([1.5, 3.0, 30.0]), scale=st.floats(0.1, 20.0), r_eff=st.floats(0.3, 1.0),
       S=st.sampled_from([200, 1000, 4000]))
def test_psislw_equals_arviz_per_column(df, scale, r_eff, S):
    """Light and heavy tails (Pareto k from < 0.5 to > 1): same weights and k as arviz_stats."""
    from arviz_stats.base import array_stats

    rng = np.random.default_rng(int(df * 7 + S))
    ll = -scale * np.abs(rng.standard_t(df, size=(S, 6)))
    lw, k = L.psislw(ll, r_eff)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lw0, k0 = array_stats.psislw(ll.T, r_eff=r_eff, axis=-1)
    np.testing.assert_allclose(k, k0, atol=1e-10)
    np.testing.assert_allclose(lw, lw0.T, atol=1e-9)


def test_compare_keeps_readable_digits(sleep_fit):
    """ArviZ's auto rounding showed elpd -23225.2 as -23200.0; the table keeps one decimal."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e = sleep_fit.loo()
        tab = W.compare({"a": e, "b": e})
    assert tab.loc["a", "elpd"] == round(e.elpd, 1)
    assert tab.loc["a", "se"] == round(e.se, 1)
    assert tab.loc["b", "elpd_diff"] == 0.0
