"""engine='dask': the posterior from the statistics equals the in-memory marginal posterior.

Same seed: the draws are bit-identical when the statistics and priors are (checked
with the in-memory statistics injected into the Dask design); the Dask sums run in
partition order, so the statistics differ from the in-memory ones in the last bits
(~1e-16 relative) and chaotic NUTS trajectories drift apart after a few hundred
iterations -- so the fits are compared within Monte Carlo error.
"""

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("dask")
sys.path.insert(0, str(Path(__file__).parent))

import bayes_hlm as bh  # noqa: E402
from bayes_hlm.backends.sampling import SamplerConfig  # noqa: E402
from bayes_hlm.backends.sufficient_stats import compute_stats  # noqa: E402
from bayes_hlm.datasets.simulate import simulate  # noqa: E402
from bayes_hlm.distributed import OutOfCoreError, compute_stats_dask, fit_dask  # noqa: E402
from bayes_hlm.backends.marginal import run_marginal  # noqa: E402
from bayes_hlm.results.stats_result import StatsResult  # noqa: E402
from bayes_hlm.results.variance import bayes_r2  # noqa: E402
from bayes_hlm.spec.priors import default_priors  # noqa: E402
from posterior_compare import disagreements  # noqa: E402

KW = dict(chains=2, draws=300, tune=300, seed=11, progressbar=False, warn=False)


@pytest.fixture(scope="module")
def data():
    sim = simulate(40, "poisson", corr=0.3, seed=7, mean_rows=8)
    df = sim.data.sample(frac=1, random_state=1).reset_index(drop=True)
    df.loc[[3, 50], "x"] = np.nan
    return sim.formula, df


@pytest.fixture(scope="module")
def fits(data):
    formula, df = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mem = bh.fit(formula, df, method="marginal", **KW)
        dsk = fit_dask(formula, df, "sync", npartitions=4, **KW)
    return mem, dsk


def test_posterior_matches_in_memory(fits):
    mem, dsk = fits
    assert isinstance(dsk, StatsResult)
    assert dsk.nobs() == mem.nobs() and dsk.ngrps() == mem.ngrps()
    bad = disagreements(mem, dsk)
    assert bad.empty, bad


@pytest.mark.slow
def test_same_stats_same_seed_identical_draws(data):
    formula, df = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = bh.build_spec(formula, df)
        ds = compute_stats_dask(formula, df, "sync", npartitions=4, progressbar=False)
    ref, ps = compute_stats(spec.design), default_priors(spec.design)
    cfg = lambda: SamplerConfig(sampler="nutpie", chains=1, draws=50, tune=50, seed=3, progressbar=False)  # noqa: E731
    a = run_marginal(spec.design, ps, cfg(), ref)[0].tree["posterior"]["fixed"].values
    b = run_marginal(ds.design, ps, cfg(), ref)[0].tree["posterior"]["fixed"].values
    np.testing.assert_array_equal(a, b)


def test_variance_and_r2_from_statistics_equal_row_formulas(fits, data):
    """Same draws: ICC/R2m/R2c and Bayesian R2 from the statistics equal the row-level ones."""
    mem, dsk = fits
    formula, df = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = compute_stats_dask(formula, df, "sync", npartitions=3, progressbar=False)
    spec = ds.meta.spec()
    twin = StatsResult(spec, mem.priors, mem.tree, mem.info, mem._draws.generator, ds.stats, ds.extras)
    v0, v1 = mem.variance_parts(), twin.variance_parts()
    np.testing.assert_allclose(v1.fixed, v0.fixed, rtol=1e-9)
    for f in v0.random:
        np.testing.assert_allclose(v1.random[f], v0.random[f], rtol=1e-9)
    r0, r1 = mem.r2_draws(max_draws=200), twin.r2_draws(max_draws=200)
    np.testing.assert_allclose(r1["r2_bayes"], r0["r2_bayes"], rtol=1e-8)
    assert set(dsk.r2().index) == {"r2_bayes", "r2_marginal", "r2_conditional"}
    assert 0 < float(dsk.icc()["mean"].iloc[0]) < 1


def test_predict_newdata_and_row_level_errors(fits, data):
    mem, dsk = fits
    _, df = data
    new = df.dropna().head(6).copy()
    new["g"] = new["g"].astype(object)
    new.loc[new.index[0], "g"] = "unseen"
    p0 = mem.predict(new, new_groups="zero")
    p1 = dsk.predict(new, new_groups="zero")
    assert np.all(np.abs(p0["mean"] - p1["mean"]) < 4 * np.hypot(p0["sd"], p1["sd"]) / np.sqrt(50))
    for call in (dsk.fitted, dsk.residuals, dsk.loo, lambda: dsk.predict()):
        with pytest.raises(OutOfCoreError, match="out-of-core"):
            call()
    rf = dsk.ranef()["g"]
    assert len(rf) == 2 * dsk.ngrps()["g"]


def test_large_factor_effect_diagnostics_subset_or_skipped(fits, monkeypatch):
    """diagnostics() of a statistics-only fit: as in memory (all effects of a small fit; a
    labelled random subset on request), skipping -- and saying why -- a factor whose subset
    check would cost too much; effects='all' refuses what does not fit in memory."""
    import bayes_hlm.results.stats_result as sr

    _, dsk = fits

    def twin():
        return StatsResult(dsk.spec, dsk.priors, dsk.tree, dsk.info, dsk._draws.generator,
                           dsk.stats, dsk.extras)

    full_stats = dsk.effects_stats()["g"]
    assert twin().diagnostics()["effects_diagnostics"]["g"] == "all 40 levels"
    d = twin().diagnostics(effects=10)
    assert d["effects_diagnostics"]["g"].startswith("random subset of 10 of 40 levels")
    sub = twin().effects_stats_subset("g", 10, seed=3)
    assert len(sub) == 10 * 2 and sub.attrs["subset"].startswith("random subset of 10 of 40")
    full = full_stats.loc[sub.index]                      # same draws as the full table
    np.testing.assert_allclose(sub[["mean", "ess_bulk"]].values, full[["mean", "ess_bulk"]].values,
                               rtol=1e-10)
    monkeypatch.setattr(sr, "EFFECTS_DIAG_MAX_NORMALS", 1.0)
    d2 = twin().diagnostics()
    assert d2["effects_diagnostics"]["g"].startswith("skipped")
    assert np.isfinite(d2["max_r_hat"]) and d2["max_r_hat_all"] == d2["max_r_hat"]
    assert twin().diagnostics(effects=5)["effects_diagnostics"]["g"].startswith("random subset of 5")
    monkeypatch.setattr(sr, "EFFECTS_BUDGET_BYTES", 1.0)
    with pytest.raises(OutOfCoreError, match="effects='auto'"):
        twin().diagnostics(effects="all")
