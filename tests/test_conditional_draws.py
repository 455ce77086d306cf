"""Exact group-effect draws vs. the dense Gaussian conditional of b given (y, β, Σ, σ)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
from test_marginal_loglik import dense_Z, random_design, random_L

from bayes_hlm.backends.conditional_draws import (
    conditional_mean,
    draw_group_effects,
    iter_group_effect_draws,
    nested_inner_levels,
)
from bayes_hlm.backends.sufficient_stats import CrossedStats, compute_stats, make_plan

S = 4000


def dense_conditional(design, beta, sigma, Ls, other=(), b_other=()):
    """Mean and covariance of the marginalised terms' effects (term-major, level-major)."""
    resid = design.y - design.X @ beta
    Zs, D = [], []
    for k, t in enumerate(design.groups):
        if k in other:
            resid = resid - dense_Z(t) @ np.asarray(b_other[list(other).index(k)]).ravel()
        else:
            Zs.append(dense_Z(t))
            D.append(sla.block_diag(*[Ls[k] @ Ls[k].T] * t.n_levels))
    Z, D = np.hstack(Zs), sla.block_diag(*D)
    P = np.linalg.inv(D) + Z.T @ Z / sigma**2
    V = np.linalg.inv(P)
    return V @ Z.T @ resid / sigma**2, V


def _flatten(design, effects, keys):
    """Draws (S, ...) term-major like dense_conditional."""
    return np.concatenate([effects[k].reshape(effects[k].shape[:-2] + (-1,)) for k in keys], axis=-1)


def _check_draws(design, stats, rng, other=()):
    beta = rng.normal(size=design.p)
    sigma = 0.8
    Ls = [random_L(rng, t.q, t.correlated) for t in design.groups]
    b_other = [rng.normal(size=(design.groups[k].n_levels, design.groups[k].q)) for k in other]
    mu, V = dense_conditional(design, beta, sigma, Ls, other, b_other)
    keys = [k for k in range(len(design.groups)) if k not in other]

    mean = conditional_mean(stats, beta, sigma, Ls, b_other or None)
    np.testing.assert_allclose(_flatten(design, mean, keys), mu, rtol=1e-9, atol=1e-10)

    rep = lambda a: np.broadcast_to(a, (S,) + np.shape(a)).copy()  # noqa: E731
    draws = draw_group_effects(stats, rep(beta), rep(sigma), [rep(L) for L in Ls],
                               [rep(b) for b in b_other] or None, seed=11)
    flat = _flatten(design, draws, keys)
    assert flat.shape == (S, mu.size)
    Lv = np.linalg.cholesky(V)
    z = np.linalg.solve(Lv, (flat - mu).T).T  # whitened: ~ N(0, I) if draws are exact
    assert np.abs(z.mean(0)).max() < 5 / np.sqrt(S) * 1.2
    assert np.abs(np.cov(z.T) - np.eye(mu.size)).max() < 0.1


def test_single_draws_match_dense_conditional():
    rng = np.random.default_rng(0)
    d = random_design(rng, "single", 30, 4, (2,), 2)
    _check_draws(d, compute_stats(d), rng)


def test_single_merged_terms_draws():
    rng = np.random.default_rng(1)
    d = random_design(rng, "single", 30, 3, (3,), 2, split=True)
    assert len(d.groups) == 2
    _check_draws(d, compute_stats(d), rng)


def test_nested_joint_draws_match_dense_conditional():
    rng = np.random.default_rng(2)
    d = random_design(rng, "nested", 40, 3, (2, 1), 2)
    s = compute_stats(d)
    assert s.structure == "nested"
    _check_draws(d, s, rng)


def test_crossed_draws_match_dense_conditional():
    rng = np.random.default_rng(3)
    d = random_design(rng, "crossed", 40, 4, (2, 1, 1), 2)
    s = compute_stats(d, plan=make_plan(d, force="crossed"))
    assert isinstance(s, CrossedStats)
    _check_draws(d, s, rng, other=s.other_terms)


@pytest.mark.parametrize("kind,qs", [("single", (2,)), ("nested", (1, 2)), ("crossed", (1, 1))])
def test_chunking_and_subsets_are_consistent(kind, qs):
    rng = np.random.default_rng(4)
    d = random_design(rng, kind, 60, 6, qs, 2)
    s = compute_stats(d, plan=make_plan(d, force="crossed" if kind == "crossed" else None))
    n = 7
    beta = rng.normal(size=(n, d.p))
    sigma = rng.uniform(0.5, 1.5, n)
    Ls = [np.stack([random_L(rng, t.q) for _ in range(n)]) for t in d.groups]
    bo = None
    if isinstance(s, CrossedStats):
        bo = [rng.normal(size=(n, d.groups[k].n_levels, d.groups[k].q)) for k in s.other_terms]
    full = draw_group_effects(s, beta, sigma, Ls, bo, seed=5)
    again = draw_group_effects(s, beta, sigma, Ls, bo, seed=5)
    parts = list(iter_group_effect_draws(s, beta, sigma, Ls, bo, seed=5, chunk_draws=3))
    assert [sl.stop - sl.start for sl, _ in parts] == [3, 3, 1]
    for k in full:
        np.testing.assert_array_equal(full[k], again[k])
        np.testing.assert_allclose(np.concatenate([p[k] for _, p in parts]), full[k], rtol=1e-12)
    groups = np.array([4, 1])
    sub = draw_group_effects(s, beta, sigma, Ls, bo, seed=5, groups=groups)
    if kind == "nested":
        inner = nested_inner_levels(s, groups)
        np.testing.assert_allclose(sub[0], full[0][:, groups], rtol=1e-10)
        np.testing.assert_allclose(sub[1], full[1][:, inner], rtol=1e-10)
    else:
        for k in sub:
            np.testing.assert_allclose(sub[k], full[k][:, groups], rtol=1e-10)
    m_sub = conditional_mean(s, beta, sigma, Ls, bo, groups=groups)
    m_full = conditional_mean(s, beta, sigma, Ls, bo)
    k0 = next(iter(m_sub))
    np.testing.assert_allclose(m_sub[k0], m_full[k0][:, groups], rtol=1e-10)
