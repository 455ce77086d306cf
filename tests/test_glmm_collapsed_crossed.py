"""The quadrature-collapsed engine with several grouping factors
(backends/glmm_collapsed_crossed.py): the factor with most levels integrated out per level,
the others sampled; exact gradient, quadrature sum against brute force, exact effect draws,
and the same posterior as the full model on every scalar incl. every group effect."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import integrate

import bayes_hlm as bh
from bayes_hlm.backends import glmm_collapsed as gc
from bayes_hlm.backends import glmm_collapsed_crossed as cc
from bayes_hlm.backends import glmm_density as gd
from bayes_hlm.backends.glmm_kernels import kernel_code, row_terms
from bayes_hlm.fitting.problem import build_problem

from posterior_compare import all_scalars, disagreements


def _data(family="bernoulli", S=30, I=8, seed=5, item_level=False):
    """Subjects x items, every pair once; ``w`` an item-level predictor when asked."""
    rng = np.random.default_rng(seed)
    s, i = np.divmod(np.arange(S * I), I)
    x = rng.normal(size=S * I)
    us, ui, sl = rng.normal(0, 0.9, S), rng.normal(0, 0.6, I), rng.normal(0, 0.4, S)
    w = (np.arange(I) % 2).astype(float)
    eta = (-0.2 if family == "bernoulli" else 0.4) + 0.6 * x + us[s] + ui[i] + sl[s] * x
    if item_level:
        eta = eta + 0.5 * w[i]
    y = (rng.binomial(1, 1 / (1 + np.exp(-eta))) if family == "bernoulli"
         else rng.poisson(np.exp(eta)))
    return pd.DataFrame({"y": y, "x": x, "w": w[i], "subj": [f"s{k}" for k in s],
                         "item": [f"i{k}" for k in i]})


def _problem(formula, family="bernoulli", **kw):
    pr = build_problem(formula, _data(family, **kw), family=family)
    return pr.design, pr.fit_priors, pr.spec.family


MODELS = [("bernoulli", "y ~ x + (1 | subj) + (1 | item)", {"item": False}),
          ("bernoulli", "y ~ x + w + (1 | subj) + (1 | item)", {"item": True}),
          ("bernoulli", "y ~ x + (x | subj) + (1 | item)", {"item": True}),
          ("poisson", "y ~ x + (1 | subj) + (x || item)", {"item": False})]


def test_integrated_factor_is_the_one_with_most_levels():
    design, ps, fam = _problem("y ~ x + (1 | item) + (1 | subj)")
    assert cc.integrated_factor(design) == "subj"
    pk = cc.pack(design, ps, fam, 3, {"item": True, "subj": True})
    assert pk.factor == "subj" and pk.centered == {"item": True} and pk.G == 30
    assert [g.factor for g in pk.rest.groups] == ["item"]


@pytest.mark.parametrize("family,formula,cent", MODELS)
def test_gradient_is_exact(family, formula, cent):
    design, ps, fam = _problem(formula, family, S=8, I=5, item_level="w" in formula)
    pk = cc.pack(design, ps, fam, 5, cent)
    rng = np.random.default_rng(0)
    for _ in range(2):
        x0 = pk.init + rng.uniform(-0.5, 0.5, pk.ndim)
        grad = np.empty(pk.ndim)
        cc.logp_grad(x0, pk.buf, grad)
        fd = np.empty(pk.ndim)
        for i in range(pk.ndim):
            e = np.zeros(pk.ndim)
            e[i] = 1e-5
            fd[i] = (cc.logp_grad(x0 + e, pk.buf, np.empty(pk.ndim))
                     - cc.logp_grad(x0 - e, pk.buf, np.empty(pk.ndim))) / 2e-5
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("family,formula,cent", MODELS[:3])
def test_quadrature_matches_brute_force(family, formula, cent):
    """Σ_g log ∫ Π_i p(y_i | o_i + z_iᵀ L v) φ(v) dv by scipy, the offsets o_i computed here
    from the sampled effects (the full model's own map from x to β and b)."""
    design, ps, fam = _problem(formula, family, S=5, I=12, item_level="w" in formula)
    pk = cc.pack(design, ps, fam, 31, cent)
    x = pk.init + np.random.default_rng(1).uniform(-0.4, 0.4, pk.ndim)
    A = pk.sampled
    v = gd.constrained(A, ps, pk.rest, x[None, :A.ndim])
    o = design.X @ v["fixed"][0]
    for g in pk.rest.groups:
        o = o + np.sum(g.Z * v["factors"][g.factor]["b"][0][g.codes], axis=1)
    fterms = [g for g in design.groups if g.factor == pk.factor]
    Z = np.concatenate([g.Z for g in fterms], axis=1)
    # the integrated factor's L from its (log SD, atanh corr) coordinates at the end of x
    sd = np.exp(x[A.ndim:A.ndim + pk.q])
    if pk.q == 2:
        from bayes_hlm.backends.numba_density import cpc_corr
        W = np.linalg.cholesky(cpc_corr(x[None, A.ndim + 2:A.ndim + 3], 2)[0])
    else:
        W = np.eye(1)
    L = sd[:, None] * W
    code, y = kernel_code(fam), np.asarray(design.y, float)
    per = []
    for gi in range(pk.G):
        rows = fterms[0].codes == gi
        approx_shift = None

        def f(vv, rows=rows):
            eta = o[rows] + Z[rows] @ (L @ vv)
            ll = sum(row_terms(code, a, 1.0, e, 0.0)[0] for a, e in zip(y[rows], eta))
            return ll - 0.5 * vv @ vv - 0.5 * pk.q * np.log(2 * np.pi)

        approx_shift = f(np.zeros(pk.q))
        if pk.q == 1:
            val = integrate.quad(lambda a: np.exp(f(np.array([a])) - approx_shift), -30, 30,
                                 epsabs=1e-13, epsrel=1e-12)[0]
        else:
            val = integrate.dblquad(lambda a, c: np.exp(f(np.array([a, c])) - approx_shift),
                                    -15, 15, -15, 15, epsabs=1e-12, epsrel=1e-10)[0]
        per.append(np.log(val) + approx_shift)
    assert abs(cc.loglik_at(pk, x) - sum(per)) < 1e-6
    # the node chooser meets the tolerance against doubled nodes
    base = cc.pack(design, ps, fam, 3, cent)
    _, pts = gc.mode_and_spread(base, logp=cc.logp_grad)
    form = type("F", (), {"pack": staticmethod(lambda d, p, f, K: cc.pack(d, p, f, K, cent)),
                          "loglik_at": staticmethod(cc.loglik_at)})
    packed, rec = gc.choose_nodes(design, ps, fam, pts, form=form)
    assert rec["max_error_vs_doubled"] < gc.NODE_TOL and packed.K == rec["K"]


def test_effect_draws_follow_the_conditional():
    """Draws of one subject's effect given x (incl. the sampled item effects) against the
    moments of its conditional, computed by quadrature from the offsets."""
    design, ps, fam = _problem("y ~ x + (1 | subj) + (1 | item)", S=12, I=8)
    pk = cc.pack(design, ps, fam, 5, {"item": False})
    x = pk.init + np.random.default_rng(2).uniform(-0.5, 0.5, pk.ndim)
    S = 20000
    b, acc = cc.draw_effects(pk, np.tile(x, (S, 1)), 777, np.arange(S))
    assert 0.3 < acc <= 1.0
    A = pk.sampled
    v = gd.constrained(A, ps, pk.rest, x[None, :A.ndim])
    g_item = pk.rest.groups[0]
    o = design.X @ v["fixed"][0] + g_item.Z[:, 0] * v["factors"]["item"]["b"][0][g_item.codes, 0]
    assert pk.factor == "subj" and design.groups[0].factor == "subj"
    rows = design.groups[0].codes == 0
    sd = np.exp(x[A.ndim])
    y = np.asarray(design.y, float)[rows]

    def dens(bb):
        eta = o[rows] + bb
        return np.exp(sum(row_terms(0, a, 1.0, e, 0.0)[0] for a, e in zip(y, eta))
                      - 0.5 * (bb / sd) ** 2)
    Zc = integrate.quad(dens, -25, 25)[0]
    for mom in (1, 2):
        m = integrate.quad(lambda bb: bb ** mom * dens(bb), -25, 25)[0] / Zc
        vals = b[:, 0, 0] ** mom
        assert abs(vals.mean() - m) < 4.5 * vals.std() / np.sqrt(S), (mom, vals.mean(), m)
    # keyed: the same draw index gives the same effects in any batch
    b2, _ = cc.draw_effects(pk, np.tile(x, (2, 1)), 777, np.array([5, 19999]))
    np.testing.assert_array_equal(b2, b[[5, 19999]])


def test_posterior_equals_full_model():
    """Crossed binary model: every scalar (fixed effects, both SDs, every subject and item
    effect) within 4 combined MCSE of the full model's posterior."""
    df = _data("bernoulli", S=24, I=6, seed=11)
    kw = dict(chains=2, draws=1000, tune=700, warn=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        marg = bh.fit("y ~ x + (1 | subj) + (1 | item)", df, family="bernoulli",
                      method="marginal", seed=101, **kw)
        full = bh.fit("y ~ x + (1 | subj) + (1 | item)", df, family="bernoulli", method="full",
                      seed=1, target_accept=0.95, **kw)
    assert marg.info.method == "marginal" and marg.info.extra["form"] == "crossed"
    assert marg.info.extra["marginalised"] == ["subj"]
    assert marg.info.extra["quadrature"]["max_error_vs_doubled"] < gc.NODE_TOL
    assert marg.diagnostics()["divergences"] == 0
    n = len(all_scalars(full))
    assert n >= 2 + 2 + 24 + 6
    bad = disagreements(full, marg)
    assert bad.empty, f"{len(bad)} of {n} scalars disagree:\n{bad}"
