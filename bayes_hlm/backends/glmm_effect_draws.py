"""Exact draws of each group's effects from its conditional posterior (generalized models).

Given one posterior draw of the fixed effects and the group covariance (from the
quadrature-collapsed NUTS, :mod:`.glmm_collapsed`), group ``g``'s standardized effects
``v`` have density ∝ ``exp h(v)`` with ``h`` concave (:mod:`.glmm_collapsed`). In the
whitened coordinates ``w`` (``v = v̂ + C⁻ᵀ w``, ``C Cᵀ = −∇²h(v̂)``) the density
``f(w) = exp(h(v) − h(v̂))`` is log-concave with its mode at 0 and ``f(0) = 1``.

The draws are the generalized ratio-of-uniforms method (Wakefield, Gelfand & Smith 1991,
r = 1): ``(u, a)`` uniform on ``{0 < u ≤ f(a/u)^{1/(q+1)}}`` gives ``w = a/u ~ f``. The
bounding box is ``0 < u ≤ 1`` and, per coordinate j, ``a_j`` between
``−sup_{w_j<0} |w_j| f(w)^{1/(q+1)}`` and ``sup_{w_j>0} w_j f(w)^{1/(q+1)}``. Each bound
is the maximum of ``log|w_j| + log f(w)/(q+1)``, a concave function on its half space
(log-concavity of f), so Newton's method finds it exactly (to rounding; a relative margin
of 1e-9 is added). Uniform proposals in the box are accepted when
``(q+1) log u ≤ log f(a/u)``: the accepted draws are exact, not approximate.

Every uniform is a pure function of (seed key, posterior draw index, group, attempt,
component) (:mod:`.keyed_noise`'s hash), so a draw does not depend on which other draws,
groups or chunks are computed alongside.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .glmm_collapsed import _chol, _inv_lower, _spd_solve, group_mode, hyper, prepare_group, unpack
from .glmm_kernels import row_terms
from .keyed_noise import _mix, _uniform

#: relative safety margin on the box bounds (Newton's maxima are exact to rounding)
_MARGIN = 1e-9
#: proposals per group before giving up (acceptance is ≈ 0.5–0.75; never reached in practice)
_MAX_TRIES = 100000


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _log_f(code, y, nn, a, n, e0, kap, Ci, v, hhat, w, grad, Hw, want):
    """``log f(w) = h(v̂ + Ciᵀ w) − h(v̂)``; with ``want`` also its w-gradient and Hessian."""
    q = w.shape[0]
    vv = np.empty(q)
    for k in range(q):
        s = v[k]
        for j in range(k, q):
            s += Ci[j, k] * w[j]
        vv[k] = s
    val = 0.0
    for k in range(q):
        val -= 0.5 * vv[k] * vv[k]
    if want:
        for k in range(q):  # ∇ of −½|v|²: −Ci v;  ∇²: −Ci Ciᵀ
            s = 0.0
            for j in range(k + 1):
                s += Ci[k, j] * vv[j]
            grad[k] = -s
            for j2 in range(q):
                s2 = 0.0
                for j in range(min(k, j2) + 1):
                    s2 += Ci[k, j] * Ci[j2, j]
                Hw[k, j2] = -s2
    for i in range(n):
        e = e0[i]
        for k in range(q):
            e += kap[i, k] * w[k]
        t = row_terms(code, y[a + i], nn[a + i], e, 0.0)
        val += t[0]
        if want:
            for k in range(q):
                grad[k] += t[1] * kap[i, k]
                for j in range(q):
                    Hw[k, j] += t[2] * kap[i, k] * kap[i, j]
    return val - hhat


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _box_bound(code, y, nn, a, n, e0, kap, Ci, v, hhat, j, sign):
    """``max log(sign·w_j) + log f(w)/(q+1)`` over ``sign·w_j > 0`` (concave: Newton)."""
    q = v.shape[0]
    c = 1.0 / (q + 1.0)
    w = np.zeros(q)
    w[j] = sign * math.sqrt(q + 1.0)  # the Gaussian's maximiser
    g = np.empty(q)
    Hw = np.empty((q, q))
    A = np.empty((q, q))
    C = np.empty((q, q))
    step = np.empty(q)
    wn = np.empty(q)
    phi = math.log(sign * w[j]) + c * _log_f(code, y, nn, a, n, e0, kap, Ci, v, hhat, w, g, Hw, True)
    for it in range(100):
        for k in range(q):
            g[k] *= c
            for l in range(q):
                A[k, l] = -c * Hw[k, l]  # −Hessian (positive definite)
        g[j] += 1.0 / w[j]
        A[j, j] += 1.0 / (w[j] * w[j])
        _chol(A, C)
        _spd_solve(C, g, step)
        smax = 0.0
        dec = 0.0  # Newton decrement gᵀA⁻¹g: twice the gap to the maximum (concave)
        for k in range(q):
            smax = max(smax, abs(step[k]))
            dec += g[k] * step[k]
        # converged: the gap is far below the bound's margin (and rounding decides the
        # line search below: it would halve 60 times per iteration for nothing)
        if smax < 1e-12 * (1.0 + abs(w[j])) or dec < 1e-14:
            break
        t = 1.0
        accepted = False
        for _ in range(60):
            for k in range(q):
                wn[k] = w[k] + t * step[k]
            if sign * wn[j] > 0.0:
                pn = math.log(sign * wn[j]) + c * _log_f(code, y, nn, a, n, e0, kap, Ci, v, hhat,
                                                         wn, g, Hw, True)
                if pn >= phi - 1e-14 * (1.0 + abs(phi)):
                    accepted = True
                    break
            t *= 0.5
        if not accepted:
            _log_f(code, y, nn, a, n, e0, kap, Ci, v, hhat, w, g, Hw, True)
            break
        for k in range(q):
            w[k] = wn[k]
        phi = pn
    return sign * math.exp(phi) * (1.0 + _MARGIN)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def workspace(nmax, q):
    """Scratch arrays of :func:`draw_group` for groups of at most ``nmax`` rows."""
    return (np.empty(nmax), np.empty(nmax), np.empty(nmax), np.empty((nmax, q)), np.empty(nmax),
            np.empty(q), np.empty((q, q)), np.empty((q, q)), np.empty((q, q)), np.empty(q),
            np.empty(q), np.empty(q), np.empty(q), np.empty((q, q)))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def draw_group(code, y, nn, a, b, o, zeta, L, hg, out_g, ws):
    """One exact draw of the effects of the group of rows ``a:b`` (``o, zeta`` prepared as
    :func:`~.glmm_collapsed.prepare_group` does) into ``out_g`` (q,); randomness keyed by
    ``hg``; ``ws`` from :func:`workspace`. Returns the number of proposals (``out_g`` is NaN
    if none was accepted)."""
    q = zeta.shape[1]
    n = b - a
    d1, d2, d3, kap, e0, v, H, C, Ci, lo, hi, w, dummy_g, dummy_H = ws
    hhat = group_mode(code, y, nn, a, b, o, zeta, v, H, d1, d2, d3)
    _chol(H, C)
    _inv_lower(C, Ci)
    for i in range(n):
        e = o[i]
        for k in range(q):
            e += zeta[i, k] * v[k]
        e0[i] = e
        for k in range(q):
            sk = 0.0
            for j in range(k + 1):
                sk += Ci[k, j] * zeta[i, j]
            kap[i, k] = sk
    # hhat was evaluated at v̂ itself: log f(0) = 0 (recomputed to the same rounding)
    hhat = hhat + _log_f(code, y, nn, a, n, e0, kap, Ci, v, hhat, np.zeros(q),
                         dummy_g, dummy_H, False)
    for j in range(q):
        lo[j] = _box_bound(code, y, nn, a, n, e0, kap, Ci, v, hhat, j, -1.0)
        hi[j] = _box_bound(code, y, nn, a, n, e0, kap, Ci, v, hhat, j, 1.0)
    done = False
    ntry = 0
    for k in range(_MAX_TRIES):
        ntry += 1
        hk = _mix(hg, k)
        u = _uniform(_mix(hk, 0))
        for j in range(q):
            w[j] = (lo[j] + (hi[j] - lo[j]) * _uniform(_mix(hk, j + 1))) / u
        lf = _log_f(code, y, nn, a, n, e0, kap, Ci, v, hhat, w, dummy_g, dummy_H, False)
        if (q + 1.0) * math.log(u) <= lf:
            done = True
            break
    for k in range(q):  # b = L (v̂ + Ciᵀ w)
        s2 = v[k]
        for j in range(k, q):
            s2 += Ci[j, k] * w[j]
        dummy_g[k] = s2
    for k in range(q):
        s3 = 0.0
        for j in range(k + 1):
            s3 += L[k, j] * dummy_g[j]
        out_g[k] = s3 if done else np.nan
    return ntry


@numba.njit(cache=True, nogil=True, error_model="numpy")
def draw_groups(code, y, nn, indptr, nmax, X, Z, off, beta, L, hd, out_s):
    """Exact draws of every integrated group's effects for one posterior draw (its linear
    predictor ``X β + off``, its Cholesky factor ``L``, its noise key ``hd``) into ``out_s``
    (G, q); returns the proposals tried. One factor (rows' own X, β) and crossed (X empty,
    the sampled effects in ``off``) alike."""
    q = Z.shape[1]
    o = np.empty(nmax)
    zeta = np.empty((nmax, q))
    ws = workspace(nmax, q)
    ntry = 0
    for g in range(indptr.shape[0] - 1):
        a, b = indptr[g], indptr[g + 1]
        prepare_group(a, b, X, Z, off, beta, L, o, zeta)
        ntry += draw_group(code, y, nn, a, b, o, zeta, L, _mix(hd, g), out_s[g], ws)
    return ntry


@numba.njit(cache=True, nogil=True, error_model="numpy", parallel=True)
def _draw(xs, draw_index, key, buf, out, tries):
    (p, q, G, N, T, i_int, code, nmax, term_at, mu, sd, xm, indptr, y, nn, off, X, Z, t,
     lw) = unpack(buf)
    base = _mix(np.uint64(key), 0)
    for s in numba.prange(xs.shape[0]):
        grad = np.empty(xs.shape[1])
        _, beta, L = hyper(xs[s], buf, grad)
        tries[s] = draw_groups(code, y, nn, indptr, nmax, X, Z, off, beta, L,
                               _mix(base, draw_index[s]), out[s])


def draw_effects(packed, xs: np.ndarray, key: int, draw_index) -> tuple[np.ndarray, float]:
    """Exact draws ``b`` (S, G, q) of every group's effects, one per parameter vector in
    ``xs`` (S, ndim); returns ``(b, acceptance rate)``.

    Parameters
    ----------
    packed : CollapsedPacked
    xs : ndarray (S, ndim)
        Unconstrained posterior draws (the NUTS coordinates).
    key : int
        From :func:`bayes_hlm.backends.keyed_noise.seed_key`.
    draw_index : array_like of int
        Global index of each draw (keys its randomness).
    """
    xs = np.ascontiguousarray(xs, dtype=float)
    di = np.ascontiguousarray(draw_index, dtype=np.int64)
    out = np.empty((xs.shape[0], packed.G, packed.q))
    tries = np.zeros(xs.shape[0], dtype=np.int64)
    _draw(xs, di, np.uint64(key), packed.buf, out, tries)
    return check_draws(out, tries)


def check_draws(out: np.ndarray, tries: np.ndarray,
                failed: int | None = None) -> tuple[np.ndarray, float]:
    """``(out, acceptance rate)``; an error if a group accepted no proposal (``failed``: how
    many did not, where the sampler counted them; else ``out`` is scanned for NaN)."""
    if (np.isnan(out).any() if failed is None else failed > 0):
        raise RuntimeError("ratio-of-uniforms effect draws did not accept within "
                           f"{_MAX_TRIES} proposals (a bug: please report it)")
    return out, float(out.shape[0] * out.shape[1] / max(tries.sum(), 1))
