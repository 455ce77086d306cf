"""Poisson random intercepts through per-group sufficient statistics (backends/glmm_sufficient.py).

* the density and its gradient equal the row-by-row quadrature-collapsed density's
  (glmm_collapsed: same nodes, same quadrature sum), dense and hashed cell tables alike;
* the effect draws are the row form's draws (same keyed randomness, same method);
* ``method="auto"`` picks it for a Poisson random intercept only;
* the posterior equals the full model's within 4 combined MCSEs, every group effect
  included, and recovers the simulated truth.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

import bayes_hlm as bh
from bayes_hlm.backends import glmm_collapsed as gc
from bayes_hlm.backends import glmm_sufficient as gs
from bayes_hlm.backends.engine import choose_engine
from bayes_hlm.backends.glmm_effect_draws import draw_effects
from bayes_hlm.fitting.problem import build_problem
from bayes_hlm.statistics import poisson_lognormal as pl

from posterior_compare import all_scalars, disagreements

TRUTH = {"Intercept": 0.4, "aB": 0.3, "aC": -0.2, "x": 0.25, "sd": 0.6}


def _data(G=30, n=15, seed=2, offset=False):
    rng = np.random.default_rng(seed)
    N = G * n
    g = np.repeat(np.arange(G), n)
    a = rng.integers(0, 3, N)
    x = rng.normal(size=N).round(1)  # repeated values: several rows per cell
    eta = (TRUTH["Intercept"] + np.array([0.0, TRUTH["aB"], TRUTH["aC"]])[a] + TRUTH["x"] * x
           + rng.normal(0, TRUTH["sd"], G)[g])
    df = pd.DataFrame({"y": 0, "a": pd.Categorical.from_codes(a, list("ABC")), "x": x,
                       "g": [f"g{i}" for i in g]})
    if offset:
        df["t"] = rng.choice([1.0, 2.0, 4.0], N)
        eta = eta + np.log(df["t"].to_numpy())
    df["y"] = rng.poisson(np.exp(eta))
    return df


def _problem(formula="y ~ a + x + (1 | g)", family="poisson", **kw):
    pr = build_problem(formula, _data(**kw), family=family)
    return pr.design, pr.fit_priors, pr.spec.family


@pytest.mark.parametrize("dense", [True, False])
def test_density_equals_row_form(dense):
    design, ps, fam = _problem("y ~ a + x + offset(np.log(t)) + (1 | g)", G=12, n=10, offset=True)
    assert gs.unsupported_reason(design, ps, fam) is None
    stats = gs.reduce_rows(design, dense=dense)
    assert stats["m"].sum() == design.n and np.isclose(stats["Y"].sum(), design.y.sum())
    rows, suff = gc.pack(design, ps, fam, 9), gs.pack(design, ps, fam, 9, stats=stats)
    rng = np.random.default_rng(0)
    for _ in range(4):
        x = rows.init + rng.normal(0, 0.4, rows.ndim)
        g1, g2 = np.empty(rows.ndim), np.empty(rows.ndim)
        v1, v2 = gc.logp_grad(x, rows.buf, g1), gs.logp_grad(x, suff.buf, g2)
        assert abs(v1 - v2) < 1e-9 * (1 + abs(v1))
        np.testing.assert_allclose(g2, g1, rtol=1e-8, atol=1e-8)
        # and it is the gradient of this density (central differences)
        h = 1e-6
        fd = [(gs.logp_grad(x + h * e, suff.buf, np.empty(rows.ndim))
               - gs.logp_grad(x - h * e, suff.buf, np.empty(rows.ndim))) / (2 * h)
              for e in np.eye(rows.ndim)]
        np.testing.assert_allclose(g2, fd, rtol=1e-5, atol=1e-5)
    # the effect draws: the row form's ratio of uniforms with a cheaper (tangent) box, so
    # other draws from the same conditionals (exactness: test_pseudo_row_draws_are_exact)
    xs = np.array([rows.init + rng.normal(0, 0.1, rows.ndim) for _ in range(3)])
    b1, acc1 = draw_effects(rows, xs, 77, np.array([3, 0, 9]))
    b2, acc2 = gs.draw_effects(suff, xs, 77, np.array([3, 0, 9]))
    assert b2.shape == b1.shape == (3, design.groups[0].n_levels, 1) and acc2 > 0.6
    b3, _ = gs.draw_effects(suff, xs[[1]], 77, np.array([0]))  # keyed: the same draw alone
    np.testing.assert_array_equal(b3[0], b2[1])
    b4, _ = gs.draw_effects(suff, xs, 77, np.array([3, 0, 9]), dtype=np.float32)
    assert b4.dtype == np.float32 and np.allclose(b4, b2, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("sd", [0.05, 0.3, 0.7, 2.0])
@pytest.mark.parametrize("kw", [dict(G=12, n=10, offset=True), dict(G=30, n=3), dict(G=20, n=60)])
def test_table_density_equals_the_exact_integral(kw, sd):
    """The table form (each group's integral from statistics.poisson_lognormal where ρ ≤ RHO_MAX,
    quadrature elsewhere) equals the row form with 61 nodes (exact to ~1e-13 per group here)
    in value and gradient, whichever groups the table covers."""
    formula = "y ~ a + x + offset(np.log(t)) + (1 | g)" if kw.get("offset") else "y ~ a + x + (1 | g)"
    design, ps, fam = _problem(formula, **kw)
    rows = gc.pack(design, ps, fam, 61)
    suff = gs.density_form(design).pack(design, ps, fam, 61)
    rng = np.random.default_rng(1)
    for _ in range(2):
        x = rows.init + rng.normal(0, 0.1, rows.ndim)
        x[-1] = np.log(sd)
        g1, g2 = np.empty(rows.ndim), np.empty(rows.ndim)
        v1, v2 = gc.logp_grad(x, rows.buf, g1), gs.logp_grad(x, suff.buf, g2)
        assert abs(v1 - v2) < 1e-9 * design.groups[0].n_levels
        np.testing.assert_allclose(g2, g1, rtol=1e-9, atol=1e-9)
        h = 1e-5
        fd = [(gs.logp_grad(x + h * e, suff.buf, np.empty(rows.ndim))
               - gs.logp_grad(x - h * e, suff.buf, np.empty(rows.ndim))) / (2 * h)
              for e in np.eye(rows.ndim)]
        np.testing.assert_allclose(g2, fd, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("Y,S,sd", [(0.0, 2.0, 1.0), (3.0, 1.5, 0.5), (130.0, 120.0, 0.5),
                                    (1000.0, 900.0, 2.0), (5.0, 0.01, 3.0), (40.0, 60.0, 0.05)])
def test_pseudo_row_draws_are_exact(Y, S, sd):
    """Kolmogorov–Smirnov of 20,000 keyed draws of one pseudo-row's effect against its
    conditional's CDF (the density ∝ exp(Y b − S e^b − b²/(2σ²)) on a fine grid)."""
    from bayes_hlm.backends.keyed_noise import _mix

    n = 20_000
    base = np.uint64(_mix(np.uint64(20261130), 0))
    draws = np.array([gs.draw_pseudo_row(Y, S, sd, np.uint64(_mix(base, i)))[0] for i in range(n)])
    assert np.isfinite(draws).all()
    lo, hi = draws.min() - 1.0, draws.max() + 1.0
    b = np.linspace(lo, hi, 400_001)
    lp = Y * b - S * np.exp(b) - 0.5 * b * b / sd ** 2
    p = np.exp(lp - lp.max())
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (p[1:] + p[:-1]))])
    cdf /= cdf[-1]
    F = np.interp(np.sort(draws), b, cdf)
    ks = np.max(np.maximum(np.arange(1, n + 1) / n - F, F - np.arange(n) / n))
    assert ks < 1.95 / np.sqrt(n), ks  # p ≈ 0.001


def test_node_choice_uses_the_sufficient_form():
    design, ps, fam = _problem(G=15, n=8)
    form = gc._density_form(design, ps, fam)
    assert form.name == "sufficient" and form.cells <= design.n
    base = form.pack(design, ps, fam, 3)
    _, pts = gc.mode_and_spread(base, logp=form.logp_grad)
    pk, rec = gc.choose_nodes(design, ps, fam, pts, form=form)
    assert rec["max_error_vs_doubled"] < gc.NODE_TOL
    rows_pk, rows_rec = gc.choose_nodes(design, ps, fam, pts)
    # the table covers some groups exactly: at most the row form's nodes for the rest
    assert rec["K"] <= rows_rec["K"]
    for x in pts:
        assert abs(gs.loglik_at(pk, x) - gc.loglik_at(rows_pk, x)) < 10 * gc.NODE_TOL
    # without the table: the row form's quadrature group by group, so the same node count
    quad = gs.density_form(design, table=False)
    _, rec_q = gc.choose_nodes(design, ps, fam, pts, form=quad)
    assert rec_q["K"] == rows_rec["K"]


def test_engine_auto_picks_it_for_poisson_intercepts_only():
    design, ps, fam = _problem(G=5, n=6)
    c = choose_engine(design, ps, None, method="auto", family=fam, unavailable={})
    assert (c.method, c.sampler) == ("marginal", "numba") and "sufficient" in c.reason
    # not when asked for another engine, nor without nutpie
    c = choose_engine(design, ps, None, method="auto", sampler="pymc", family=fam, unavailable={})
    assert c.method == "full"
    c = choose_engine(design, ps, None, method="auto", family=fam,
                      unavailable={"numba": "not installed"})
    assert c.method == "full"
    # centered= given: the full model, the only one with a parametrisation to set
    c = choose_engine(design, ps, None, method="auto", family=fam, unavailable={},
                      parametrised=True)
    assert c.method == "full"
    for formula, family in [("y ~ a + x + (x | g)", "poisson"), ("y ~ a + x + (1 | g)", "negativebinomial")]:
        d, p, f = _problem(formula, family=family, G=5, n=6)
        assert gs.unsupported_reason(d, p, f) is not None
        assert choose_engine(d, p, None, method="auto", family=f, unavailable={}).method == "full"
    d, p, f = _problem(G=5, n=6)
    bern = build_problem("y ~ a + x + (1 | g)", _data(G=5, n=6).assign(y=lambda df: (df.y > 1) * 1),
                         family="bernoulli")
    assert gs.unsupported_reason(bern.design, bern.fit_priors, bern.spec.family) is not None


def test_posterior_equals_full_model_and_recovers_truth():
    df = _data(G=20, n=12)
    kw = dict(chains=2, draws=1500, tune=1000, warn=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        auto = bh.fit("y ~ a + x + (1 | g)", df, family="poisson", seed=11, **kw)
        full = bh.fit("y ~ a + x + (1 | g)", df, family="poisson", method="full", seed=3,
                      target_accept=0.95, sampler="nutpie", **kw)
    assert auto.info.method == "marginal" and auto.info.extra["form"] == "sufficient"
    assert auto.info.extra["quadrature"]["max_error_vs_doubled"] < gc.NODE_TOL
    assert auto.diagnostics()["divergences"] == 0
    n = len(all_scalars(full))
    assert n >= 5 + 20  # 4 fixed, 1 SD, one effect per group
    bad = disagreements(full, auto)
    assert bad.empty, f"{len(bad)} of {n} scalars disagree:\n{bad}"
    # recovery on a larger simulation: every truth within 4 posterior SDs
    big = _data(G=80, n=40, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = bh.fit("y ~ a + x + (1 | g)", big, family="poisson", seed=2, chains=2, draws=500,
                     tune=500, warn=False)
    s = res.summary()
    for name in ("Intercept", "aB", "aC", "x"):
        assert abs(s.loc[name, "mean"] - TRUTH[name]) < 4 * s.loc[name, "sd"], (name, s.loc[name])
    sd_row = [i for i in s.index if "1|g" in str(i) or "sd" in str(i).lower()][0]
    assert abs(s.loc[sd_row, "mean"] - TRUTH["sd"]) < 4 * s.loc[sd_row, "sd"] + 0.05


def test_centered_keeps_the_full_model_under_auto():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = bh.fit("y ~ a + x + (1 | g)", _data(G=6, n=5), family="poisson", centered={"g": True},
                   chains=1, draws=30, tune=30, seed=1, warn=False, progressbar=False)
    assert r.info.method == "full" and r.info.extra["centered"] == {"g": True}


def test_block_draws_equal_the_scalar_sampler():
    """_draw's vectorised first proposals + scalar retries give draw_pseudo_row's draws."""
    from bayes_hlm.backends.keyed_noise import _mix

    design, ps, fam = _problem(G=3000, n=4)
    form = gs.density_form(design)
    pk = form.pack(design, ps, fam, 7)
    x = pk.init.copy()
    x[-1] = np.log(0.7)
    b, acc = gs.draw_effects(pk, x[None, :], 99, np.array([5]))
    st = gs.reduce_rows(design)
    _, beta, L = gc.hyper(x, pk.buf, np.empty(pk.ndim))
    e = np.exp(st["Xp"] @ beta + st["offp"])
    S = np.add.reduceat(st["m"] * e[st["pat"]], st["indptr"][:-1])
    hd = np.uint64(_mix(np.uint64(_mix(np.uint64(99), 0)), 5))  # uint64 throughout, as in _draw
    ref = [gs.draw_pseudo_row(st["Y"][g], S[g], L[0, 0], np.uint64(_mix(hd, g)))[0]
           for g in range(len(S))]
    np.testing.assert_allclose(b[0, :, 0], ref, rtol=1e-12, atol=1e-12)
    assert 0.6 < acc < 0.85


def test_many_effect_draws_come_back_as_float32(monkeypatch):
    design, ps, fam = _problem(G=40, n=5)
    form = gs.density_form(design)
    pk = form.pack(design, ps, fam, 7)
    xs = np.array([pk.init] * 3)
    b64, _ = form.draw_effects(pk, xs, 3, np.arange(3))
    monkeypatch.setattr(gs, "FLOAT32_DRAWS", 100)  # 3 x 40 draws: above it
    b32, _ = form.draw_effects(pk, xs, 3, np.arange(3))
    assert b64.dtype == np.float64 and b32.dtype == np.float32
    np.testing.assert_array_equal(b32, b64.astype(np.float32))


@pytest.mark.parametrize("sd,long_series", [(0.05, False), (0.3, True), (1.5, None)])
def test_blockwise_passes_over_many_groups(sd, long_series):
    """Several blocks of groups (2,500 > the 1,024 of a block), table and quadrature groups
    mixed within blocks (small and large counts), short and long line series: value and
    gradient equal the row form's (61 nodes), the gradient its central differences, the
    per-group terms sum to the total, and the effect draws of the block pass equal the
    scalar sampler's."""
    from bayes_hlm.backends.keyed_noise import _mix
    from bayes_hlm.statistics.poisson_lognormal import RHO_MAX, lambert_w_log

    rng = np.random.default_rng(3)
    G = 2500
    n = rng.choice([1, 2, 40], G)  # 1-2 rows: ρ > RHO_MAX at larger σ (quadrature groups)
    g = np.repeat(np.arange(G), n)
    a = rng.integers(0, 3, len(g))
    y = rng.poisson(np.exp(0.3 + 0.2 * a + rng.normal(0, 0.8, G)[g]))
    df = pd.DataFrame({"y": y, "a": pd.Categorical.from_codes(a, list("ABC")), "g": g.astype(str)})
    pr = build_problem("y ~ a + (1 | g)", df, family="poisson")
    design, ps, fam = pr.design, pr.fit_priors, pr.spec.family
    assert design.groups[0].n_levels > gs._CHUNK * 2
    rows = gc.pack(design, ps, fam, 61)
    suff = gs.density_form(design).pack(design, ps, fam, 61)
    x = rows.init + rng.normal(0, 0.05, rows.ndim)
    x[-1] = np.log(sd)
    g1, g2 = np.empty(rows.ndim), np.empty(rows.ndim)
    v1, v2 = gc.logp_grad(x, rows.buf, g1), gs.logp_grad(x, suff.buf, g2)
    assert abs(v1 - v2) < 1e-9 * G
    np.testing.assert_allclose(g2, g1, rtol=1e-8, atol=1e-7)
    h = 1e-5
    fd = [(gs.logp_grad(x + h * e, suff.buf, np.empty(rows.ndim))
           - gs.logp_grad(x - h * e, suff.buf, np.empty(rows.ndim))) / (2 * h)
          for e in np.eye(rows.ndim)]
    np.testing.assert_allclose(g2, fd, rtol=1e-5, atol=1e-4)
    # per-group terms: their sum is the total less the patterns' Σ Y_c η_c
    _, beta, L = gc.hyper(x, suff.buf, np.empty(rows.ndim))
    per = np.empty(suff.G)
    tot = gs.loglik_groups(beta, L, suff.buf, np.zeros(suff.p), np.zeros((1, 1)), per)
    st = gs.reduce_rows(design)
    eta = st["Xp"] @ beta + st["offp"]
    assert np.isclose(per.sum() + st["Yc"] @ eta, tot, rtol=1e-12)
    tau = 1.0 / (1.0 + np.array([lambert_w_log(np.log(L[0, 0] ** 2 * s) + L[0, 0] ** 2 * yy)
                                 for s, yy in zip(np.add.reduceat(st["m"] * np.exp(eta)[st["pat"]],
                                                                  st["indptr"][:-1]), st["Y"])]))
    inside = L[0, 0] ** 2 * tau <= RHO_MAX ** 2
    if sd > 1:
        assert 0 < inside.sum() < G  # both kinds of group
    # the line series' interval (from bounds of the rates) holds every table group's τ
    unpacked = gs.unpack_sufficient(suff.buf, suff.p, suff.G)
    sig2 = L[0, 0] ** 2
    tlo, thi = gs.table_tau_range(np.exp(eta), unpacked[-1], st["Y"], sig2, np.log(sig2),
                                  RHO_MAX ** 2 / sig2)
    eps = 1e-14
    assert tlo <= tau.min() * (1 + eps) and tau[inside].max() <= thi * (1 + eps) and thi <= 1
    # the line series: short ones in registers (_clenshaw3_block), long ones term by term
    c, cx, A, nodes = pl.table()
    n = max(pl.line_series(s_, A, nodes, sig2, tlo, thi, np.empty(pl.LINE_N)) for s_ in (c, cx))
    if long_series is not None:  # sd 0.3: one-row groups put τ near 1 in the table
        assert (n > gs._CLEN) == long_series
    b, _ = gs.draw_effects(suff, x[None, :], 5, np.array([2]))
    e = np.exp(eta)
    S = np.add.reduceat(st["m"] * e[st["pat"]], st["indptr"][:-1])
    hd = np.uint64(_mix(np.uint64(_mix(np.uint64(5), 0)), 2))
    ref = [gs.draw_pseudo_row(st["Y"][k], S[k], L[0, 0], np.uint64(_mix(hd, k)))[0] for k in range(G)]
    np.testing.assert_allclose(b[0, :, 0], ref, rtol=1e-12, atol=1e-12)


def test_accept_rounds_keep_the_rejected_in_order():
    """The block sampler's rounds: accepted entries set their group's effect (b̂ + ρw),
    rejected ones move, in order and (later rounds) with every field, to the front."""
    rng = np.random.default_rng(4)
    r, sig = 9, 0.6
    Y, W = rng.uniform(5, 50, r), rng.uniform(1, 20, r)
    w = rng.normal(0, 1, r)
    lo, hi = -rng.uniform(2, 3, r), rng.uniform(2, 3, r)
    hg = rng.integers(0, 2**63, r).astype(np.uint64)
    lf_ = np.array([gs._log_fw(w[j], *gs._conditional(Y[j], W[j], sig)[:3])[0] for j in range(r)])
    acc = np.array([True, False, False, True, True, False, True, False, True])
    logu = np.where(acc, lf_ - 0.1, lf_ + 0.1) / 2.0  # accept exactly where acc

    Y0, W0 = Y.copy(), W.copy()

    def effect(j):
        mu, rho, C2, bhat = gs._conditional(Y0[j], W0[j], sig)
        return bhat + rho * w[j]

    # first round: group i is entry i; only the rejected indices are compacted
    b, ok, idx = np.empty(r), np.empty(r, dtype=np.bool_), np.empty(r, dtype=np.int64)
    m = gs._accept_first(sig, logu, w, Y, W, b, ok, idx)
    assert m == (~acc).sum() and list(idx[:m]) == list(np.flatnonzero(~acc))
    np.testing.assert_array_equal(ok, acc)
    assert np.isnan(b[~acc]).all()
    np.testing.assert_allclose(b[acc], [effect(j) for j in np.flatnonzero(acc)], rtol=1e-14)
    # a later round: entries j of groups idx[j], every field compacted
    idx = np.array([8, 1, 6, 3, 0, 5, 2, 7, 4])
    before = [a.copy() for a in (Y, W, lo, hi, hg, idx)]
    b = np.full(r, np.nan)
    m = gs._accept_compact(r, sig, logu, w, Y, W, lo, hi, hg, idx, b, ok, np.empty(r))
    assert m == (~acc).sum()
    for a, a0 in zip((Y, W, lo, hi, hg, idx), before):
        np.testing.assert_array_equal(a[:m], a0[~acc])
    for j in np.flatnonzero(acc):
        assert np.isclose(b[before[5][j]], effect(j), rtol=1e-14, atol=1e-14)
    assert np.isnan(b[before[5][~acc]]).all()


def test_groups_without_an_accepted_draw_are_an_error():
    """The block sampler counts groups left without a draw (no NaN scan of the output):
    a NaN SD never accepts, and that is an error, not NaN effects."""
    from bayes_hlm.backends.glmm_effect_draws import check_draws

    design, ps, fam = _problem(G=40, n=5)
    pk = gs.density_form(design).pack(design, ps, fam, 7)
    x = pk.init.copy()
    b, _ = gs.draw_effects(pk, x[None, :], 3, np.array([0]))
    assert np.isfinite(b).all()
    x[-1] = np.nan
    with pytest.raises(RuntimeError, match="did not accept"):
        gs.draw_effects(pk, x[None, :], 3, np.array([0]))
    with pytest.raises(RuntimeError, match="did not accept"):
        check_draws(np.zeros((1, 2, 1)), np.array([2]), failed=1)
    assert check_draws(np.zeros((1, 2, 1)), np.array([4]), failed=0)[1] == 0.5


def test_density_form_packs_once_per_arguments():
    """The form reuses its last pack for the same (design, priors, family, K) (the fit's start
    and node check; the node check's 2K + 1 and the check at posterior draws) and keeps none
    once the effects are drawn; the reused buffer is the one a fresh pack gives."""
    design, ps, fam = _problem(G=30, n=4)
    form = gs.density_form(design)
    p3 = form.pack(design, ps, fam, 3)
    assert form.pack(design, ps, fam, 3) is p3
    p7 = form.pack(design, ps, fam, 7)
    assert p7 is not p3 and form.pack(design, ps, fam, 7) is p7
    assert form.pack(design, ps, fam, 3) is not p3  # only the last one is kept
    np.testing.assert_array_equal(form.pack(design, ps, fam, 3).buf, p3.buf)
    _, ps2, _ = _problem(G=30, n=4)
    assert form.pack(design, ps2, fam, 3) is not form.pack(design, ps, fam, 3)
    last = form.pack(design, ps, fam, 3)
    form.draw_effects(last, np.array([last.init]), 1, np.array([0]))
    assert form.pack(design, ps, fam, 3) is not last  # cleared by the draws
