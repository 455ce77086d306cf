"""PSIS-LOO for a fit: pointwise Gaussian log-likelihood and Pareto-smoothed weights, vectorised.

ArviZ's ``loo`` runs its PSIS fit and the pointwise sums one observation at a time in Python
(about 3 ms each: minutes for hsb82's 7,185 rows, six models of them in a notebook).
:func:`psislw` is the same algorithm as ``arviz_stats``' ``_psislw`` / ``_gpdfit`` (Vehtari et
al. 2024: tail length, empirical-Bayes generalised Pareto fit with its prior on k, smoothed
tail, clipping, normalisation) written over all observations at once, and :func:`loo` builds
ArviZ's ``ELPDDataLOO`` from it, so ``az.compare``/``bh.compare`` take the result as before.
The numbers equal ArviZ's to rounding (tests/test_loo.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..spec import variable_names as naming
from .draws import factor_design
from .family_draws import family_of
from .family_draws import pointwise_loglik as family_pointwise_loglik

if TYPE_CHECKING:
    from .bayes_result import BayesResult

_LOG_SQRT_2PI = 0.5 * np.log(2 * np.pi)
_COLS = 512  # observations per block in the generalised Pareto fit (bounds its m x tail x cols array)


def logsumexp(a: np.ndarray, axis: int = 0) -> np.ndarray:
    """log(sum(exp(a))) along ``axis``, stable; plain NumPy (scipy's is ~5x slower on large arrays)."""
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    out = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
    return np.squeeze(out, axis=axis)


def pointwise_loglik(result: "BayesResult") -> np.ndarray:
    """(chain, draw, obs) log-likelihood of every row given each draw (group effects included);
    other families than Gaussian (identity link) through the family's ``logpdf``."""
    src = result._draws
    fam = family_of(result)
    if fam.name != "gaussian" or fam.link.name != "identity":
        return family_pointwise_loglik(src, result.design, fam).reshape(
            src.n_chains, src.n_draws, -1)
    sigma = src.flat(naming.SIGMA)
    y = np.asarray(result.design.y, float)[None, :]
    out = np.empty((src.size, y.shape[1]))
    start = 0
    for mu in src.linpred_chunks(np.arange(src.size), result.design.X, factor_design(result.design),
                                 offset=result.design.offset):
        s = sigma[start:start + mu.shape[0], None]
        z = (y - mu) / s
        out[start:start + mu.shape[0]] = -0.5 * z * z - np.log(s) - _LOG_SQRT_2PI
        start += mu.shape[0]
    return out.reshape(src.n_chains, src.n_draws, -1)


def _gpdfit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Generalised Pareto (k, sigma) of each column of ascending ``x`` (n, cols); arviz_stats' ``_gpdfit``."""
    prior_bs, prior_k = 3, 10
    n = x.shape[0]
    m_est = 30 + int(n ** 0.5)
    xstar = x[int((n / 4 + 0.5) - 1)]
    ok = xstar > x[0]
    b = 1 - np.sqrt(m_est / (np.arange(1, m_est + 1, dtype=float) - 0.5))
    with np.errstate(divide="ignore", invalid="ignore"):
        b = b[:, None] / (prior_bs * xstar[None, :]) + 1 / x[-1][None, :]  # (m, cols)
        k = np.log1p(-b[:, None, :] * x[None, :, :]).mean(axis=1)  # (m, cols)
        len_scale = n * (np.log(-b / k) - k - 1)
        w = np.exp(len_scale - logsumexp(len_scale, axis=0))
    w = np.where(w >= 10 * np.finfo(float).eps, w, 0.0)  # negligible weights dropped
    with np.errstate(divide="ignore", invalid="ignore"):  # columns with no usable fit end as NaN
        w = w / w.sum(axis=0)
        b_post = (b * w).sum(axis=0)
        kappa = np.log1p(-b_post[None, :] * x).mean(axis=0)
        sigma = -kappa / b_post
    kappa = (n * kappa + prior_k * 0.5) / (n + prior_k)
    sigma = np.where(np.isnan(kappa), np.nan, sigma)
    kappa = np.where(np.isnan(kappa), np.inf, kappa)
    return np.where(ok, kappa, np.nan), np.where(ok, sigma, np.nan)


def psislw(loglik: np.ndarray, r_eff: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """PSIS log weights (S, n) and Pareto k (n,) for leave-one-out of each column of ``loglik`` (S, n)."""
    S, n = loglik.shape
    n_tail = int(np.floor(3 * (S / r_eff) ** 0.5) if S * r_eff > 225 else np.floor(S / 5))
    lw = -loglik
    lw = lw - lw.max(axis=0)
    # only the n_tail + 1 largest of each column need ordering (the tail and the value below it)
    top = np.argpartition(lw, S - n_tail - 1, axis=0)[S - n_tail - 1:]
    vals = np.take_along_axis(lw, top, axis=0)
    o = np.argsort(vals, axis=0)
    top, vals = np.take_along_axis(top, o, axis=0), np.take_along_axis(vals, o, axis=0)
    tail_idx, tail, cutoff = top[1:], vals[1:], vals[0]  # tail ascending; cutoff just below it
    max_tail = tail[-1]
    khat = np.empty(n)
    for s in range(0, n, _COLS):
        c = slice(s, s + _COLS)
        e_tail, e_cut = np.exp(tail[:, c]), np.exp(cutoff[c])
        k, sigma = _gpdfit(e_tail - e_cut)
        khat[c] = k
        smooth = np.isfinite(k) & (sigma > 0)
        if smooth.any():
            p = (np.arange(0.5, n_tail) / n_tail)[:, None]
            kk, ss = k[smooth], sigma[smooth]
            with np.errstate(divide="ignore", invalid="ignore"):
                q = np.where(kk == 0, e_cut[smooth] - ss * np.log1p(-p),
                             e_cut[smooth] + ss * np.expm1(-kk * np.log1p(-p)) / kk)
                q = np.log(q)
            q = np.minimum(q, max_tail[c][smooth])
            cols = np.arange(s, min(s + _COLS, n))[smooth]
            lw[tail_idx[:, cols], cols] = q
    lw -= logsumexp(lw, axis=0)
    return lw, khat


def relative_eff(result: "BayesResult") -> float:
    """ArviZ's relative efficiency for PSIS: mean ESS (method "mean") over every posterior value / draws."""
    post = result.tree["posterior"].to_dataset()
    if post.sizes["chain"] == 1:
        return 1.0
    ess = post.azstats.ess(method="mean")
    return float(np.hstack([ess[v].values.ravel() for v in ess.data_vars]).mean()
                 / (post.sizes["chain"] * post.sizes["draw"]))


def loo(result: "BayesResult", loglik: np.ndarray | None = None):
    """PSIS-LOO as ArviZ's ``loo(result.log_likelihood(), pointwise=True)`` returns it (``ELPDDataLOO``)."""
    import xarray as xr
    from arviz_stats.utils import ELPDDataLOO

    ll = pointwise_loglik(result) if loglik is None else np.asarray(loglik, float)
    C, D, n = ll.shape
    flat = ll.reshape(C * D, n)
    lw, khat = psislw(flat, relative_eff(result))
    elpd_i = logsumexp(lw + flat, axis=0)
    lppd_i = logsumexp(flat, axis=0) - np.log(C * D)
    p_i = lppd_i - elpd_i
    S = C * D
    good_k = min(1 - 1 / np.log10(S), 0.7) if S > 1 else 0.7
    obs = xr.DataArray(elpd_i, dims=["obs"])
    return ELPDDataLOO(
        elpd=float(elpd_i.sum()), se=float((n * np.var(elpd_i, ddof=1)) ** 0.5), p=float(p_i.sum()), n_samples=S,
        n_data_points=n, scale="log", warning=bool(np.any(khat > good_k)), good_k=good_k,
        elpd_i=obs, pareto_k=xr.DataArray(khat, dims=["obs"]), approx_posterior=False,
        log_weights=xr.DataArray(np.moveaxis(lw.reshape(C, D, n), -1, 0), dims=["obs", "chain", "draw"]))
