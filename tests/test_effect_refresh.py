"""The Gibbs refresh of sampled crossed effects draws from their full conditional."""

import numpy as np

import bayes_hlm as bh
from bayes_hlm.backends.effect_refresh import refresh_sampled_effects, refreshable_terms
from bayes_hlm.backends.sufficient_stats import compute_stats
from bayes_hlm.spec.build import build_spec


def _indicator(g):
    Z = np.zeros((g.codes.size, g.n_levels))
    Z[np.arange(g.codes.size), g.codes] = g.Z[:, 0]
    return Z


def test_refresh_matches_dense_full_conditional():
    sim = bh.datasets.simulate(n_groups=15, rows_per_group=8, slope=False, crossed=6, crossed_sd=0.7,
                               group_sd=(1.0,), sigma=0.8, seed=4)
    design = build_spec(sim.formula, sim.data).design
    stats = compute_stats(design)
    plan = stats.plan
    assert plan.structure == "crossed" and refreshable_terms(stats) == [0]
    k_m = plan.blocks[0].term_index[0]
    k_o = plan.other_terms[0]
    Zm, Zo = _indicator(design.groups[k_m]), _indicator(design.groups[k_o])
    rng = np.random.default_rng(0)
    beta = rng.normal(size=design.p)
    sigma, tau = 0.9, 0.6
    b_m = rng.normal(size=Zm.shape[1])
    b_o = rng.normal(size=Zo.shape[1])
    # dense full conditional of b_o given b_m
    r = design.y - design.X @ beta - Zm @ b_m
    Q = Zo.T @ Zo / sigma**2 + np.eye(Zo.shape[1]) / tau**2
    cov = np.linalg.inv(Q)
    mean = cov @ (Zo.T @ r) / sigma**2
    S = 20000
    out = refresh_sampled_effects(
        stats, np.tile(beta, (S, 1)), np.full(S, sigma), [np.full(S, tau)], np.tile(b_o, (S, 1)),
        np.tile(b_m, (S, 1))[:, :, None], seed=3, draw_index=np.arange(S))
    se = np.sqrt(np.diag(cov) / S)
    assert np.all(np.abs(out.mean(0) - mean) < 5 * se)
    np.testing.assert_allclose(out.var(0), np.diag(cov), rtol=5 * np.sqrt(2 / S))
    # levels are conditionally independent (Z_o'Z_o is diagonal for a q = 1 term)
    c = np.corrcoef(out.T)
    assert np.max(np.abs(c - np.eye(len(c)))) < 5 / np.sqrt(S)


def test_crossed_fit_records_the_refresh():
    d = bh.datasets.load("penicillin")
    m = bh.fit("diameter ~ 1 + (1|plate) + (1|sample)", d, chains=2, draws=200, tune=200, seed=1, warn=False)
    assert m.info.extra["gibbs_refreshed"] == ["sample"]
    # the marginalised factor's lazily regenerated draws condition on the NUTS draws, so the
    # stored draws are reproduced exactly
    b = m.posterior["r__plate"].values.reshape(400, 24, 1)
    np.testing.assert_array_equal(m._draws.generator("plate", np.arange(400)), b)


def test_threaded_chunks_give_the_same_draws(monkeypatch):
    """Chunks of draws run on threads (keyed noise): the stored marginalised draws and the
    refreshed sampled effects equal those of the chunks run one after another."""
    import copy

    from bayes_hlm.backends import kernel_variants, marginal

    monkeypatch.setattr(marginal, "CHUNK_BYTES", 2e3)  # many chunks of a few draws
    monkeypatch.setattr(kernel_variants.numba, "get_num_threads", lambda: 3)
    calls = []

    def serial(fn, starts, work):
        calls.append(len(list(starts)))
        for a in starts:
            fn(a)

    got = {}
    orig = marginal._attach_effects

    def both(design, stats, out, seed):
        tree = copy.deepcopy(out.tree)
        res = orig(design, stats, out, seed)
        threaded = out.tree["posterior"]
        with monkeypatch.context() as m:
            m.setattr(marginal, "map_chunks", serial)
            out.tree = tree
            orig(design, stats, out, seed)
        got["pair"] = (threaded.to_dataset(), out.tree["posterior"].to_dataset())
        return res

    monkeypatch.setattr(marginal, "_attach_effects", both)
    d = bh.datasets.load("penicillin")
    bh.fit("diameter ~ 1 + (1|plate) + (1|sample)", d, chains=2, draws=100, tune=100, seed=3,
           warn=False)
    threaded, serial_ = got["pair"]
    assert max(calls) > 2
    for v in ("r__plate", "r__sample"):
        np.testing.assert_array_equal(threaded[v].values, serial_[v].values)
