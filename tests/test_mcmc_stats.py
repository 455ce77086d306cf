"""Vectorised ESS / R-hat / MCSE (bayes_hlm.results.mcmc_stats) against arviz_stats."""

import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.stats
import xarray as xr
from scipy.fftpack import next_fast_len as scipy_next_fast_len

from bayes_hlm.results import mcmc_stats, tables
from bayes_hlm.results.mcmc_stats import STAT_KEYS, average_ranks, chain_stats, next_fast_len

az = pytest.importorskip("arviz")

# Agreement is to rounding: the FFT (scipy.fft, spectra averaged over chains before
# one inverse transform), summation order and x*x*x*x instead of x**4 differ from
# arviz_stats by ulps, which the ESS sums amplify to at most ~1e-13 relative here.
RTOL = 1e-10


def arviz_stats_ref(arr: np.ndarray) -> dict[str, np.ndarray]:
    """What stat_frame computed before: arviz on a Dataset, one call per statistic."""
    ds = xr.Dataset({"x": xr.DataArray(arr, dims=["chain", "draw", "k"])})
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        out = {
            "ess_bulk": az.ess(ds, method="bulk"),
            "ess_tail": az.ess(ds, method="tail"),
            "r_hat": az.rhat(ds),
            "mcse_mean": az.mcse(ds, method="mean"),
            "mcse_sd": az.mcse(ds, method="sd"),
        }
    return {key: np.asarray(val["x"], dtype=float) for key, val in out.items()}


def assert_matches_arviz(arr: np.ndarray, mine: dict | None = None) -> None:
    mine = chain_stats(arr) if mine is None else mine
    ref = arviz_stats_ref(arr)
    for key in STAT_KEYS:
        assert mine[key].shape == (arr.shape[2],)
        # same NaN pattern and same infinities; finite values to RTOL
        np.testing.assert_array_equal(np.isnan(mine[key]), np.isnan(ref[key]), err_msg=key)
        np.testing.assert_allclose(mine[key], ref[key], rtol=RTOL, atol=0, equal_nan=True,
                                   err_msg=key)


def ar1(rng: np.random.Generator, n_chain: int, n_draw: int, k: int, rho: float) -> np.ndarray:
    e = rng.standard_normal((n_chain, n_draw, k))
    x = np.empty_like(e)
    x[:, 0] = e[:, 0] / np.sqrt(max(1 - rho**2, 1e-3))
    for t in range(1, n_draw):
        x[:, t] = rho * x[:, t - 1] + e[:, t]
    return x


def mixed_columns(rng: np.random.Generator, n_chain: int, n_draw: int, rho: float) -> np.ndarray:
    """AR(1) draws plus columns that exercise each special path of the algorithms."""
    x = ar1(rng, n_chain, n_draw, 9, rho)
    x[..., 1] += 3.0 * np.arange(n_chain)[:, None]  # chains disagree: large R-hat
    x[..., 2] = np.round(x[..., 2])  # many ties
    x[..., 3] = 1.5  # constant
    x[..., 4] = rng.standard_t(1.2, size=(n_chain, n_draw))  # heavy tails
    x[..., 5] = x[..., 5] > 0.3  # binary: tail indicators can be constant
    x[..., 6] = rng.integers(0, 3, size=(n_chain, n_draw))  # 3 values, iid
    x[..., 7] = np.cumsum(rng.standard_normal((n_chain, n_draw)), axis=1)  # random walk
    x[..., 8] = 1e6 + 1e-3 * x[..., 8]  # small spread on a large offset
    return x


@pytest.mark.parametrize("n_chain", [1, 2, 4])
@pytest.mark.parametrize("n_draw", [4, 5, 10, 101, 1000])
@pytest.mark.parametrize("rho", [0.0, 0.6, 0.99, -0.7])
def test_matches_arviz(n_chain, n_draw, rho):
    rng = np.random.default_rng([n_chain, n_draw, int(1000 * rho) % 997])
    assert_matches_arviz(mixed_columns(rng, n_chain, n_draw, rho))


def test_edge_cases_match_arviz():
    rng = np.random.default_rng(3)
    n_chain, n_draw = 2, 50
    x = rng.standard_normal((n_chain, n_draw, 9))
    x[0, 3, 0] = np.nan  # any NaN: all NaN
    x[:, :, 1] = np.arange(n_chain)[:, None]  # each chain stuck at its own value: R-hat inf
    x[0, 5, 2] = np.inf
    x[:, :, 3] = 0.0
    x[1, 7, 3] = 1.0  # a single jump
    x[:, :, 4] = np.where(rng.random((n_chain, n_draw)) < 0.5, -1.0, 1.0)  # |x - mean| constant
    x[:, :, 5] = 0.0
    x[:, ::2, 5] = -0.0  # signed zeros are ties
    x[:, :, 6] = 1e300 * rng.standard_normal((n_chain, n_draw))  # variance overflows
    x[:, :, 7] = 1e-300 * rng.standard_normal((n_chain, n_draw))  # "constant" for arviz's ESS
    x[:, :, 8] = np.nan
    mine = chain_stats(x)
    assert np.isnan([mine[key][0] for key in STAT_KEYS]).all()
    assert np.isposinf(mine["r_hat"][1])
    assert_matches_arviz(x, mine)


def test_too_few_draws_and_one_chain():
    rng = np.random.default_rng(4)
    for shape in [(2, 3, 4), (1, 1, 3), (4, 0, 2)]:
        out = chain_stats(rng.standard_normal(shape))
        assert all(np.isnan(out[key]).all() for key in STAT_KEYS)
    x = rng.standard_normal((1, 4, 3))  # smallest valid input: 2 half-chains of 2 draws
    out = chain_stats(x)
    assert np.isnan(out["r_hat"]).all() and np.isfinite(out["ess_bulk"]).all()
    assert_matches_arviz(x, out)
    assert all(chain_stats(np.zeros((2, 10, 0)))[key].shape == (0,) for key in STAT_KEYS)
    ints = rng.integers(0, 5, size=(2, 30, 3))  # non-float input is converted per chunk
    for key, val in chain_stats(ints).items():
        np.testing.assert_array_equal(val, chain_stats(ints.astype(float))[key])
    with pytest.raises(ValueError):
        chain_stats(np.zeros((2, 10)))


def test_chunking_does_not_change_results():
    x = mixed_columns(np.random.default_rng(5), 3, 40, 0.5)
    x = np.concatenate([x, x[..., ::-1]], axis=2)
    x[1, 2, 4] = np.nan  # a dropped column in the middle of a chunk
    whole = chain_stats(x, chunk_size=x.shape[2])
    for chunk in (1, 4, 7):
        parts = chain_stats(x, chunk_size=chunk)
        for key in STAT_KEYS:
            np.testing.assert_array_equal(parts[key], whole[key], err_msg=key)


def test_average_ranks_equal_scipy_with_ties():
    rng = np.random.default_rng(6)
    x = np.round(rng.standard_normal((7, 200)), 1)
    x[1] = 2.0  # all tied
    x[2] = rng.standard_normal(200)  # no ties
    x[3, ::3] = -0.0
    x[3, 1::3] = 0.0
    x[4] = np.repeat([3.0, 1.0, 2.0, 1.0], 50)
    x[5, :100] = np.inf
    np.testing.assert_array_equal(average_ranks(x), scipy.stats.rankdata(x, axis=-1))


def test_next_fast_len_equals_scipy_fftpack():
    assert [next_fast_len(n) for n in range(1, 5000)] == [
        scipy_next_fast_len(n) for n in range(1, 5000)]


def test_many_parameters_bounded_memory():
    """(2, 1000, 20000): correct on sampled columns, working memory independent of k."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 1000, 20000))
    x[:, 1:] += 0.8 * x[:, :-1]  # some autocorrelation
    x[1, :, 3] += 5.0
    x[..., 17] = 2.0
    tracemalloc.start()
    out = chain_stats(x)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 100e6, f"peak {peak / 1e6:.0f} MB"
    assert all(out[key].shape == (20000,) for key in STAT_KEYS)
    assert np.isfinite(out["ess_bulk"]).all() and np.isfinite(out["r_hat"][np.arange(20000) != 17]).all()
    cols = np.r_[0, 3, 17, 64, 65, 9999, rng.choice(20000, 6, replace=False), 19999]
    picked = {key: val[cols] for key, val in out.items()}
    assert_matches_arviz(x[:, :, cols], picked)


def test_stat_frame_matches_previous_arviz_version():
    rng = np.random.default_rng(8)
    x = mixed_columns(rng, 2, 200, 0.3)
    names = [f"b{i}" for i in range(x.shape[2])]
    frame = tables.stat_frame(x, names)
    assert list(frame.columns) == tables.STAT_COLUMNS and list(frame.index) == names
    ref = arviz_stats_ref(x)
    constant = np.ptp(x.reshape(-1, x.shape[2]), axis=0) == 0
    for key in STAT_KEYS:
        expect = np.where(constant, np.nan, ref[key])
        np.testing.assert_allclose(frame[key].to_numpy(), expect, rtol=RTOL, equal_nan=True)
    assert frame.loc["b3", tables.DIAG_COLUMNS].isna().all()  # the constant column
    # a single chain as a 2-D array, and too few draws: NaN where arviz gives NaN
    one = tables.stat_frame(x[:1, :, 0], ["a"])
    assert np.isnan(one.loc["a", "r_hat"]) and np.isfinite(one.loc["a", "ess_bulk"])
    short = tables.stat_frame(x[:, :3, :2], ["a", "b"])
    assert short[tables.DIAG_COLUMNS].isna().all().all()


def test_tail_prob_follows_arviz_rcparams():
    x = mixed_columns(np.random.default_rng(9), 2, 300, 0.5)
    with az.rc_context({"stats.ci_prob": 0.8}):
        frame = tables.stat_frame(x, list(range(x.shape[2])))
        ref = arviz_stats_ref(x)["ess_tail"]
    ref[3] = np.nan  # constant column
    np.testing.assert_allclose(frame["ess_tail"].to_numpy(), ref, rtol=RTOL, equal_nan=True)
    np.testing.assert_array_equal(chain_stats(x, tail_prob=0.8)["ess_tail"][:3],
                                  frame["ess_tail"].to_numpy()[:3])
    assert mcmc_stats.TAIL_PROB == az.rcParams["stats.ci_prob"]


def test_threads_and_check_columns_give_the_same_numbers(monkeypatch):
    """Chunks on several threads, or only the convergence check's statistics (``keys``,
    ``tables.check_frame``), change no number."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 200, 300)).cumsum(axis=1) * 0.1 + rng.normal(size=(4, 200, 300))
    x[:, :, 7] = 2.0  # a constant
    x[1, 5, 11] = np.nan
    monkeypatch.setattr(mcmc_stats, "_MAX_THREADS", 1)
    one = chain_stats(x, chunk_size=16)
    monkeypatch.setattr(mcmc_stats, "_MAX_THREADS", 8)
    many = chain_stats(x, chunk_size=16)
    some = chain_stats(x, chunk_size=16, keys=("ess_bulk", "r_hat"))
    assert set(some) == {"ess_bulk", "r_hat"}
    for key in STAT_KEYS:
        np.testing.assert_array_equal(one[key], many[key])
    for key in some:
        np.testing.assert_array_equal(one[key], some[key])
    names = [f"p{i}" for i in range(300)]
    full, check = tables.stat_frame(x, names), tables.check_frame(x, names)
    assert list(check.columns) == tables.CHECK_COLUMNS
    np.testing.assert_array_equal(check.to_numpy(), full[tables.CHECK_COLUMNS].to_numpy())


@pytest.mark.parametrize("max_pairs", [1, 3, mcmc_stats._DIRECT_PAIRS])
def test_lag_by_lag_ess_equals_the_fft(max_pairs, monkeypatch):
    """ess_split (autocovariances summed lag by lag while Geyer's sequence goes on, the FFT
    for rows that go on longer) = ess_fft (every lag at once) to rounding, every special
    column included; with few direct pairs most rows take the FFT."""
    monkeypatch.setattr(mcmc_stats, "_DIRECT_PAIRS", max_pairs)
    rng = np.random.default_rng(11)
    for n_chain, n_draw, rho in [(2, 2, 0.0), (2, 3, 0.6), (4, 5, -0.7), (2, 50, 0.99),
                                 (4, 500, 0.0), (2, 500, 0.6), (8, 40, 0.3)]:
        y = np.ascontiguousarray(np.moveaxis(mixed_columns(rng, n_chain, n_draw, rho), 2, 0))
        with np.errstate(all="ignore"):
            got, want = mcmc_stats.ess_split(y), mcmc_stats.ess_fft(y)
            _, pending = mcmc_stats._ess_direct(y, max_pairs)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)
        if max_pairs == 1 and n_draw >= 50:
            assert len(pending)  # the FFT's share is exercised
