"""Vectorised MCMC diagnostics: bulk/tail ESS, rank-normalised R-hat, MCSE of mean and sd.

Numpy re-implementation of what ``arviz_stats`` (``arviz_stats.base.diagnostics``)
computes for ``ess(method="bulk")``, ``ess(method="tail")``, ``rhat()`` (method
"rank"), ``mcse(method="mean")`` and ``mcse(method="sd")``. arviz_stats runs its
per-parameter functions in a Python loop, which takes tens of seconds for a few
thousand group effects; here every step works on a block of parameters at once
(ranks by one argsort along the draw axis, autocovariances summed lag by lag for the
whole block while Geyer's truncation has not stopped (a few lags for draws that mix
well), one batched FFT for the rows that go on longer), and parameters are processed
in chunks of ~2**17 values, so the working set stays at tens of MB whatever ``k``
(bulk/tail ESS and R-hat: about 0.16 ms CPU per parameter for 2 chains x 1000 draws).

The algorithms follow arviz_stats step by step (Vehtari et al. 2021, "Rank-
normalization, folding, and localization: an improved R-hat"), so results agree
with it to rounding (1e-15 typically, 1e-13 at worst in the tests; the FFT
library and summation order differ), including its edge cases: fewer than 4
draws or any NaN gives NaN, R-hat needs at least 2 chains, an ESS input whose
range is below ``np.finfo(float).resolution`` has ESS equal to its size, and
the autocorrelation time is floored at ``1 / log10(size)`` (so ESS <=
size * log10(size)).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.fft as sfft
from scipy.special import ndtri

#: Tail ESS is the smaller ESS of the indicators ``x <= q`` at the ``1 - TAIL_PROB``
#: and ``TAIL_PROB`` quantiles; arviz_stats takes it from ``rcParams["stats.ci_prob"]``,
#: default 0.89 (so the 11% and 89% quantiles).
TAIL_PROB = 0.89
MIN_DRAWS = 4  # arviz_stats returns NaN below this many draws per chain
_BLOM_C = 3 / 8  # Blom's fractional offset used by arviz_stats' rank back-transform
_CHUNK_ELEMENTS = 2**17  # values per chunk: 1 MB per float array; small chunks stay in cache
STAT_KEYS = ("ess_bulk", "ess_tail", "r_hat", "mcse_mean", "mcse_sd")
#: threads for the chunks of many parameters (each chunk's work is NumPy/SciPy calls that
#: release the GIL): InstEval's 4,100 group effects, 4 x 1000 draws, 1.8 s CPU on 2 cores
_MAX_THREADS = 8


def next_fast_len(target: int) -> int:
    """Smallest 5-smooth integer (2^a 3^b 5^c) that is >= ``target``.

    Same as ``scipy.fftpack.next_fast_len``, the FFT length arviz_stats pads its
    autocovariance to; the same length gives the same rounding.
    """
    if target <= 6:
        return max(int(target), 1)
    best = 1 << (target - 1).bit_length()  # next power of two
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            # smallest power of two taking p35 to >= target, in exact integers
            best = min(best, p35 << (-(-target // p35) - 1).bit_length())
            p35 *= 3
        p5 *= 5
    return best


def split_chains(x: np.ndarray) -> np.ndarray:
    """Split each chain in two halves: (..., chain, draw) -> (..., 2 chain, draw // 2).

    Rows are all first halves, then all second halves (``np.vstack`` order in
    arviz_stats); an odd draw count drops the middle draw.
    """
    half = x.shape[-1] // 2
    return np.concatenate((x[..., :half], x[..., x.shape[-1] - half:]), axis=-2)


def _sorted_runs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort rows of ``x`` (kc, m) and locate runs of tied values.

    Returns
    -------
    order : np.ndarray
        (kc, m) argsort of each row.
    sorted_x : np.ndarray
        (kc, m) each row sorted.
    code : np.ndarray
        (kc, m) int, ``a + b`` for the sorted value at 0-based position i, where
        a..b is the run of values equal to it; its average rank is
        ``(a + b + 2) / 2`` (what ``scipy.stats.rankdata(method="average")``
        gives, exact in float64).
    """
    kc, m = x.shape
    order = np.argsort(x, axis=-1)
    xs = np.take_along_axis(x, order, axis=-1)
    differs = xs[:, 1:] != xs[:, :-1]  # a run boundary between i and i + 1
    code = np.broadcast_to(2 * np.arange(m), (kc, m))  # no ties: a = b = i
    tied = ~differs.all(axis=-1)
    if tied.any():  # run bounds only for rows with ties (rare for continuous draws)
        code = code.copy()
        pos = np.arange(m)
        d = differs[tied]
        first = np.zeros(d.shape[:1] + (m,), dtype=np.int64)
        first[:, 1:] = np.where(d, pos[1:], 0)
        np.maximum.accumulate(first, axis=-1, out=first)  # start of each value's run
        last = np.full_like(first, m - 1)
        last[:, :-1] = np.where(d, pos[:-1], m - 1)
        last = np.minimum.accumulate(last[:, ::-1], axis=-1)[:, ::-1]  # end of its run
        code[tied] = first + last
    return order, xs, code


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..m of each row of a NaN-free ``x`` (kc, m), ties given their average rank.

    Equals ``scipy.stats.rankdata(row, method="average")`` row by row.
    """
    order, _, code = _sorted_runs(x)
    ranks = np.empty(x.shape)
    np.put_along_axis(ranks, order, (code + 2) / 2.0, axis=-1)
    return ranks


def _normal_scores(m: int) -> np.ndarray:
    """``ndtri((r - 3/8) / (m - 2 * 3/8 + 1))`` for every average rank r = (code + 2) / 2.

    arviz_stats' ``_z_scale`` back-transform (Blom offsets, ``ndtri`` being what
    ``scipy.stats.norm.ppf`` calls), tabulated once per m over the 2m - 1
    possible half-integer ranks so no per-draw ``ndtri`` is needed.
    """
    ranks = (np.arange(2 * m - 1) + 2) / 2.0
    return ndtri((ranks - _BLOM_C) / (m - 2 * _BLOM_C + 1))


def z_scale(x: np.ndarray, table: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rank-normalise each row of ``x`` (kc, m) over all its m values (arviz ``_z_scale``).

    Parameters
    ----------
    x : np.ndarray
        (kc, m) NaN-free values.
    table : np.ndarray, optional
        ``_normal_scores(m)``, passed in to compute it once per call of
        :func:`chain_stats`.

    Returns
    -------
    z : np.ndarray
        (kc, m) normal scores of the average ranks.
    sorted_x : np.ndarray
        (kc, m) each row sorted (reused for the median).
    """
    if table is None:
        table = _normal_scores(x.shape[-1])
    order, xs, code = _sorted_runs(x)
    z = np.empty(x.shape)
    np.put_along_axis(z, order, table[code], axis=-1)
    return z, xs


#: :func:`ess_split` sums autocovariances lag by lag up to this many lag pairs (Geyer's
#: sequence stops after a few pairs for well-mixing draws), the FFT for the rows that go on
_DIRECT_PAIRS = 24


def ess_split(y: np.ndarray) -> np.ndarray:
    """Effective sample size of each (already split) block ``y`` (kc, chain, draw): the
    autocovariances summed directly lag by lag while Geyer's initial sequence goes on
    (:func:`_ess_direct`; draws that mix well stop after a few lags: 100k group effects x
    2 x 1000 draws, ~10x less work than the FFT), :func:`ess_fft` for the rows that need more
    than :data:`_DIRECT_PAIRS` lag pairs. Same numbers to rounding (the same sums in
    another order)."""
    y = np.asarray(y, dtype=float)
    ess, pending = _ess_direct(y, _DIRECT_PAIRS)
    if pending.size:
        ess[pending] = ess_fft(y[pending])
    return ess


def _ess_direct(y: np.ndarray, max_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`ess_fft`'s ESS with each autocovariance ``mean_c Σ_i d_ci d_c,i+t / n`` summed
    directly, lag pair after lag pair, only while a row's Geyer sequence goes on; returns
    ``(ess, rows still going after max_pairs pairs)`` (their ESS is left NaN)."""
    kc, n_chain, n = y.shape
    size = n_chain * n
    flat = y.reshape(kc, size)
    const = (flat.max(axis=-1) - flat.min(axis=-1)) < np.finfo(float).resolution
    chain_mean = y.mean(axis=-1)
    d = y - chain_mean[..., None]
    acov0 = np.einsum("kci,kci->kc", d, d).mean(axis=-1) / n
    mean_var = acov0 * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    var_plus += np.var(chain_mean, axis=-1, ddof=1)
    cap = len(range(1, n - 3, 2))
    ess = np.full(kc, np.nan)
    rows = np.arange(kc)  # the rows whose sequence goes on, and their data
    dr, mv, vp = d, mean_var, var_plus
    total = np.zeros(kc)
    run_min = np.full(kc, np.inf)
    floor = 1 / np.log10(size)

    def rho(t):
        acov = np.einsum("kci,kci->kc", dr[:, :, :n - t], dr[:, :, t:]).mean(axis=-1) / n
        return 1.0 - (mv - acov) / vp

    rho1, pending = None, np.zeros(0, dtype=np.int64)
    for p in range(cap + 1):
        if p >= max_pairs:
            pending = rows
            break
        even = np.ones(len(rows)) if p == 0 else rho(2 * p)
        odd = rho(2 * p + 1)
        if p == 0:
            rho1 = odd
        psum = even + odd
        stop = ~(psum > 0.0) if p < cap else np.ones(len(rows), dtype=bool)
        if stop.any():  # the last pair visited: its even lag kept if > 0 (arviz)
            keep = (psum[stop] >= 0.0) | (even[stop] > 0.0)
            tau = -1.0 + 2.0 * total[stop] + np.where(keep, even[stop], 0.0)
            tau = np.where(floor > tau, floor, tau)  # Python max(tau, floor): NaN stays NaN
            ess[rows[stop]] = size / tau
            go = ~stop
            rows, dr, mv, vp = rows[go], dr[go], mv[go], vp[go]
            total, run_min, psum = total[go], run_min[go], psum[go]
            if not len(rows):
                break
        run_min = np.minimum(run_min, psum)  # Geyer's initial monotone sequence
        total += run_min
    if rho1 is not None:
        ess[np.isnan(rho1)] = np.nan  # the only NaN arviz can have stored in rho_hat_t
    ess[const] = size
    return ess, pending


def ess_fft(y: np.ndarray) -> np.ndarray:
    """Effective sample size of each (already split) block ``y`` (kc, chain, draw).

    arviz_stats' ``_ess``: FFT autocovariance per chain averaged over chains,
    combined autocorrelations, Geyer's initial positive sequence truncated at
    the first pair with non-positive sum, Geyer's initial monotone sequence, and
    the autocorrelation time floored at ``1 / log10(size)``. The ``while`` loops
    become array logic: pair sums ``s_p`` of lags (2p, 2p+1); the loop stops
    after ``P`` pairs, ``P`` = first non-positive pair (capped by the lag
    limit); the monotone step is a running minimum of the pair sums, and
    ``tau = -1 + 2 * sum_{p<P} min(s_0..s_p) + rho_{2P}`` (the last term only
    if arviz keeps it).

    Returns
    -------
    np.ndarray
        (kc,) ESS; ``chain * draw`` for a block with range below
        ``np.finfo(float).resolution``; NaN if the lag-1 autocorrelation is NaN.
    """
    kc, n_chain, n = y.shape
    size = n_chain * n
    flat = y.reshape(kc, size)
    const = (flat.max(axis=-1) - flat.min(axis=-1)) < np.finfo(float).resolution

    chain_mean = y.mean(axis=-1)
    m = next_fast_len(2 * n)  # arviz's zero padding: linear, not circular, lags
    padded = np.zeros((kc, n_chain, m))
    np.subtract(y, chain_mean[..., None], out=padded[..., :n])  # demeaned per chain
    spec = sfft.rfft(padded, axis=-1)  # scipy.fft: ~2x numpy's speed on batches
    del padded
    power = spec.real**2
    power += spec.imag**2
    del spec
    # only the chain-averaged autocovariance is used, and irfft is linear: one
    # inverse transform of the averaged power spectrum instead of one per chain
    acov = sfft.irfft(power.mean(axis=-2), n=m, axis=-1)[:, :n]
    del power
    acov /= n

    mean_var = acov[:, 0] * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    var_plus += np.var(chain_mean, axis=-1, ddof=1)  # n_chain >= 2 after splitting
    # autocorrelation at every lag, pooled over chains; lag 0 is exactly 1 as in arviz
    rho = 1.0 - (mean_var[:, None] - acov) / var_plus[:, None]
    del acov
    rho[:, 0] = 1.0

    # pairs p = 0..cap: the while loop visits t = 1, 3, ... < n - 3, i.e. pairs 1..cap
    cap = len(range(1, n - 3, 2))
    even = rho[:, 0 : 2 * cap + 2 : 2]
    odd = rho[:, 1 : 2 * cap + 2 : 2]
    psum = even + odd
    rows = np.arange(kc)
    stop = ~(psum > 0.0)  # NaN stops the loop too
    first_stop = np.where(stop.any(axis=-1), stop.argmax(axis=-1), cap + 1)
    n_pairs = np.minimum(first_stop, cap)  # pairs taken in full: 0..n_pairs-1
    # last pair visited: stored when its sum is >= 0; its even lag is kept if > 0
    # (arviz's "improve estimation" step); for n_pairs == 0 that lag is rho[0] = 1
    e_last = even[rows, n_pairs]
    keep = (psum[rows, n_pairs] >= 0.0) | (e_last > 0.0)
    tail_term = np.where(keep, e_last, 0.0)

    # initial monotone sequence: a pair whose sum exceeds the previous (already
    # clipped) pair's sum is replaced by two halves of that sum, so clipped pair sums
    # are the running minimum of the pair sums; tau needs only those sums
    run_min = np.minimum.accumulate(psum, axis=-1)
    taken = np.arange(cap + 1)[None, :] < n_pairs[:, None]
    tau = -1.0 + 2.0 * np.where(taken, run_min, 0.0).sum(axis=-1) + tail_term
    floor = 1 / np.log10(size)
    tau = np.where(floor > tau, floor, tau)  # Python max(tau, floor): NaN tau stays NaN
    ess = size / tau
    ess[np.isnan(rho[:, 1])] = np.nan  # the only NaN arviz can have stored in rho_hat_t
    ess[const] = size
    return ess


def rhat_split(z: np.ndarray) -> np.ndarray:
    """Gelman-Rubin R-hat of each block ``z`` (kc, chain, draw) (arviz_stats' ``_rhat``)."""
    n = z.shape[-1]
    between = n * np.var(z.mean(axis=-1), axis=-1, ddof=1)
    within = np.var(z, axis=-1, ddof=1).mean(axis=-1)
    return np.sqrt((between / within + n - 1) / n)


def _chunk_stats(x: np.ndarray, tail_prob: float, table: np.ndarray,
                 keys=STAT_KEYS) -> dict[str, np.ndarray]:
    """The statistics ``keys`` (default all) of one NaN-free chunk ``x`` (kc, chain, draw) with
    draw >= 4; the MCSEs (two more ESS passes) only when asked for."""
    kc, n_chain, n_draw = x.shape
    full = x.reshape(kc, n_chain * n_draw)
    split = split_chains(x)
    m = split.shape[-2] * split.shape[-1]
    split_flat = split.reshape(kc, m)
    out = {}

    # rank-normalised split draws: bulk ESS and the bulk half of R-hat
    z, xs = z_scale(split_flat, table)
    z = z.reshape(split.shape)
    out["ess_bulk"] = ess_split(z)
    if n_chain >= 2:
        # folded draws |x - median| (median of the split draws; m is even) for tail R-hat
        med = (xs[:, m // 2 - 1] + xs[:, m // 2]) / 2
        zf = z_scale(np.abs(split_flat - med[:, None]), table)[0].reshape(split.shape)
        rh_bulk, rh_tail = rhat_split(z), rhat_split(zf)
        out["r_hat"] = np.where(rh_tail > rh_bulk, rh_tail, rh_bulk)  # Python max() order
        del zf
    else:
        out["r_hat"] = np.full(kc, np.nan)  # arviz: R-hat needs >= 2 chains
    del z

    # tail ESS: the smaller ESS of the indicators x <= q at the two tail quantiles of
    # all draws; with an even draw count the split draws are all draws, already sorted
    p_low, p_high = sorted((tail_prob, 1 - tail_prob))
    q = np.quantile(xs if n_draw % 2 == 0 else full, [p_low, p_high], axis=-1)
    del xs
    ind = (split[None] <= q[:, :, None, None]).astype(float)  # (2, kc, 2 chain, draw // 2)
    lo, hi = ess_split(ind.reshape((2 * kc,) + split.shape[1:])).reshape(2, kc)
    del ind
    out["ess_tail"] = np.where(hi < lo, hi, lo)  # Python min() order
    if "mcse_mean" not in keys and "mcse_sd" not in keys:
        return out

    # MCSE of the mean: sd of all draws / sqrt(split ESS of the raw draws)
    out["mcse_mean"] = full.std(axis=-1, ddof=1) / np.sqrt(ess_split(split))

    # MCSE of the sd: delta method on the variance, with the ESS of squared deviations
    mean = full.mean(axis=-1)
    sq = (full - mean[:, None]) ** 2
    ess_sq = ess_split((split - mean[:, None, None]) ** 2)
    evar = sq.mean(axis=-1)
    sq *= sq  # 4th powers; x**4 would call pow(), ~10x slower (differs by an ulp)
    varvar = (sq.mean(axis=-1) - evar**2) / ess_sq
    out["mcse_sd"] = np.sqrt(varvar / evar / 4)
    return out


def chain_stats(arr: np.ndarray, tail_prob: float = TAIL_PROB,
                chunk_size: int | None = None, keys=STAT_KEYS) -> dict[str, np.ndarray]:
    """Bulk/tail ESS, rank R-hat and MCSE of mean and sd of every parameter.

    Parameters
    ----------
    arr : np.ndarray
        Draws shaped (chain, draw, k).
    tail_prob : float, default 0.89
        Tail ESS uses the quantiles ``1 - tail_prob`` and ``tail_prob``, as
        arviz_stats' ``ess(method="tail")`` does with its default
        ``rcParams["stats.ci_prob"]`` (0.89).
    chunk_size : int, optional
        Parameters per chunk; default keeps chunk * chain * draw near 2**17.
    keys : sequence of str, optional
        The statistics to compute (default all of :data:`STAT_KEYS`); without the MCSEs
        two of the five ESS passes are skipped (the fit-time convergence check).

    Returns
    -------
    dict[str, np.ndarray]
        Arrays of length k under "ess_bulk", "ess_tail", "r_hat", "mcse_mean" and
        "mcse_sd". A parameter with any NaN draw, or fewer than 4 draws per
        chain, gets NaN everywhere; "r_hat" is NaN with one chain. A constant
        parameter gets arviz's values (ESS = number of split draws, R-hat and
        MCSE NaN or 0); callers decide how to report those.
    """
    arr = np.asarray(arr)  # converted to float64 chunk by chunk, not as a whole
    if arr.ndim != 3:
        raise ValueError(f"arr must be (chain, draw, k), got shape {arr.shape}")
    n_chain, n_draw, k = arr.shape
    keys = tuple(keys)
    out = {key: np.full(k, np.nan) for key in keys}
    if n_chain < 1 or n_draw < MIN_DRAWS or k == 0:
        return out
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_ELEMENTS // (n_chain * n_draw))
    table = _normal_scores(2 * n_chain * (n_draw // 2))  # one rank->z table for all chunks

    def one(j0):
        # (kc, chain, draw), draws contiguous: FFTs and sorts run along the last axis
        x = np.ascontiguousarray(np.moveaxis(arr[:, :, j0:j0 + chunk_size], 2, 0), dtype=float)
        good = ~np.isnan(x).any(axis=(1, 2))
        if not good.any():
            return
        if not good.all():
            x = x[good]
        with np.errstate(all="ignore"):  # 0/0 for constants; arviz's path silenced these too
            res = _chunk_stats(x, tail_prob, table, keys)
        idx = np.arange(j0, j0 + len(good))[good]
        for key in keys:
            out[key][idx] = res[key]

    starts = range(0, k, chunk_size)
    threads = min(len(starts), os.cpu_count() or 1, _MAX_THREADS)
    if threads > 1:  # sorts and FFTs release the GIL: chunks on every core, same numbers
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, starts))
    else:
        for j0 in starts:
            one(j0)
    return out
