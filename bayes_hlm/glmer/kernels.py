"""Compiled row passes of glmer's PIRLS (Numba; ``cache=True``, compiled once per machine).

Every pass over the rows goes through one row step, :func:`_row` (mean, Fisher weight ``W``,
score ``s`` = d log-likelihood / d eta, deviance residual and the part of the log-likelihood
that depends on the mean; the rest is a per-model constant), applied over arrays by
:func:`rows` (binomial/logit: its vectorised form :func:`_logit_rows`). One single-factor
PIRLS step :func:`block_pass` forms ``η``, the row quantities and the per-level
``K = I + Σ W zl zlᵀ`` and right-hand sides in one fused pass (``ZΛ`` formed per row; the
row step :func:`_eta_row`), binomial/logit in three (η, :func:`rows`, the sums) so that its
row loop vectorises. The formulas are those of :mod:`.glmfamily` (which remains the reference implementation, used for Gamma's dispersion-dependent likelihood
and by the tests).

Family codes: 0 binomial, 1 Poisson, 2 Gamma, 3 negative binomial; link codes: 0 logit,
1 probit, 2 cloglog, 3 log, 4 identity, 5 inverse.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ..statistics.fast_math import FASTMATH as _FAST, fast_exp, log1p_unit

__all__ = ["FAMILY_CODE", "LINK_CODE", "rows", "block_pass", "group_moments", "group_sums",
           "block_cross", "row_dot", "block_solve", "MODE_LME4", "MODE_SCORE", "MODE_JOINT"]

FAMILY_CODE = {"binomial": 0, "poisson": 1, "Gamma": 2, "negative_binomial": 3}
LINK_CODE = {"logit": 0, "probit": 1, "cloglog": 2, "log": 3, "identity": 4, "inverse": 5}
_EPS = np.finfo(float).eps
_PROBIT_T = 8.125890664701906   # -qnorm(eps)


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _link(lk, e):  # pragma: no cover - compiled
    if lk == 0:
        e = min(max(e, -30.0), 30.0)
        mu = 1.0 / (1.0 + math.exp(-e))
        return mu, max(mu * (1.0 - mu), _EPS)
    if lk == 1:
        e = min(max(e, -_PROBIT_T), _PROBIT_T)
        return 0.5 * math.erfc(-e / math.sqrt(2.0)), max(math.exp(-0.5 * e * e) / math.sqrt(2 * math.pi), _EPS)
    if lk == 2:
        ex = math.exp(min(e, 700.0))
        mu = min(max(-math.expm1(-ex), _EPS), 1.0 - _EPS)
        return mu, max(ex * math.exp(-ex), _EPS)
    if lk == 3:
        mu = max(math.exp(min(e, 700.0)), _EPS)
        return mu, mu
    if lk == 4:
        return e, 1.0
    return 1.0 / e, -1.0 / (e * e)


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _ylogy(y, mu):  # pragma: no cover - compiled
    return y * math.log(y / mu) if y > 0 else 0.0


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _row(fam, lk, th, yi, pwi, sati, e):  # pragma: no cover - compiled
    """One row at linear predictor ``e``: (mean, Fisher weight ``W``, score ``s``, deviance
    residual, mean-dependent log-likelihood). Every row pass goes through this helper.

    ``sati``: the row's ``2 pw (y log y + (1 - y) log(1 - y))`` (binomial; constant, computed
    once), so a binomial row costs one ``exp`` and one ``log`` (logit link). Canonical links
    (logit, Poisson log) have ``dmu/deta = V(mu)``: ``W = pw d``, ``s = pw (y - mu)`` without
    the division."""
    if fam == 0:
        if lk == 0:
            e = min(max(e, -30.0), 30.0)
            ex = math.exp(-e)
            m = 1.0 / (1.0 + ex)
            lm = -math.log(1.0 + ex)   # log1p is ~5x slower here; absolute error < 1e-16
            d = max(m * (1.0 - m), _EPS)
            lli = pwi * (yi * lm + (1.0 - yi) * (lm - e))
            return m, pwi * d, pwi * (yi - m), sati - 2.0 * lli, lli
        m, d = _link(lk, e)
        v = max(m * (1.0 - m), _EPS)
        lli = pwi * (yi * math.log(m) + (1.0 - yi) * math.log1p(-m))
        r = sati - 2.0 * lli
    else:
        m, d = _link(lk, e)
        if fam == 1:
            lli = pwi * ((yi * math.log(m) if yi > 0 else 0.0) - m)
            r = 2 * pwi * (_ylogy(yi, m) - (yi - m))
            if lk == 3:
                return m, pwi * m, pwi * (yi - m), r, lli
            v = m
        elif fam == 2:
            v = m * m
            r = -2 * pwi * (math.log(yi / m) - (yi - m) / m)
            lli = 0.0
        else:
            v = m + m * m / th
            r = 2 * pwi * (_ylogy(yi, m) - (yi + th) * math.log((yi + th) / (m + th)))
            lli = pwi * ((yi * math.log(m) if yi > 0 else 0.0) - (th + yi) * math.log(th + m))
    dv = pwi * d / v
    return m, dv * d, dv * (yi - m), r, lli


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=_FAST)
def _logit_rows(y, pw, sat, eta, mu, W, s, dr):  # pragma: no cover - compiled
    """:func:`_row`'s binomial/logit branch over 1-D arrays, branch-free on the libm-free
    ``fast_exp`` / ``log1p_unit`` (within 2 ulp of libm) so that LLVM vectorises the loop.

    Why: LLVM does not vectorise libm ``exp``/``log`` (no SVML with llvmlite >= 0.45; see
    benchmarks/README.md, "SVML and vectorised row loops"). Measured, 200k rows, binary
    correlated slope: one LME4 ``block_pass`` 3.24 -> 1.42 ms, the whole ``glmer`` fit 2.04x
    faster, log-likelihood equal to 1.4e-14 relative. ``fastmath`` only here (no nnan/ninf)."""
    dsum = 0.0
    ll = 0.0
    for i in range(eta.shape[0]):
        e = min(max(eta[i], -30.0), 30.0)
        ee = fast_exp(-abs(e))
        inv = 1.0 / (1.0 + ee)
        m = inv if e >= 0.0 else ee * inv                # sigmoid without cancellation
        lm = -(max(-e, 0.0) + log1p_unit(ee))            # log(mu)
        lli = pw[i] * (y[i] * lm + (1.0 - y[i]) * (lm - e))
        d = sat[i] - 2.0 * lli
        mu[i] = m
        W[i] = pw[i] * max(m * (1.0 - m), _EPS)
        s[i] = pw[i] * (y[i] - m)
        dr[i] = d
        dsum += d
        ll += lli
    return dsum, ll


@numba.njit(cache=True, nogil=True, error_model="numpy")
def rows(fam, lk, th, y, n, pw, sat, eta, mu, W, s, dr):  # pragma: no cover - compiled
    """Fill ``mu, W, s, dr`` from ``eta`` (:func:`_row` per row; binomial/logit by its
    vectorised form :func:`_logit_rows`); return (sum dr, mean-dependent log-likelihood).
    ``n`` is unused (kept for the callers' signature)."""
    if fam == 0 and lk == 0:
        return _logit_rows(y, pw, sat, eta, mu, W, s, dr)
    dsum = 0.0
    ll = 0.0
    for i in range(eta.shape[0]):
        m, w, si, r, lli = _row(fam, lk, th, y[i], pw[i], sat[i], eta[i])
        mu[i] = m
        W[i] = w
        s[i] = si
        dr[i] = r
        dsum += r
        ll += lli
    return dsum, ll


@numba.njit(cache=True, nogil=True, error_model="numpy")
def group_sums(codes, ZL, v, G):  # pragma: no cover - compiled
    """``out[g, a] = Σ_{i in g} v_i ZL[i, a]`` (ΛᵀZᵀ v of one factor)."""
    q = ZL.shape[1]
    out = np.zeros((G, q))
    for i in range(codes.shape[0]):
        g = codes[i]
        for a in range(q):
            out[g, a] += v[i] * ZL[i, a]
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def block_cross(codes, ZL, W, G):  # pragma: no cover - compiled
    """``K[g] = I + Σ_{i in g} W_i zl_i zl_iᵀ``."""
    q = ZL.shape[1]
    K = np.zeros((G, q, q))
    for i in range(codes.shape[0]):
        g = codes[i]
        for a in range(q):
            wa = W[i] * ZL[i, a]
            for b in range(a + 1):
                K[g, a, b] += wa * ZL[i, b]
    for g in range(G):
        for a in range(q):
            K[g, a, a] += 1.0
            for b in range(a):
                K[g, b, a] = K[g, a, b]
    return K


@numba.njit(cache=True, nogil=True, error_model="numpy")
def row_dot(codes, ZL, U):  # pragma: no cover - compiled
    """``out_i = ZL[i] · U[codes[i]]`` (ZΛu of one factor)."""
    n, q = ZL.shape
    out = np.empty(n)
    for i in range(n):
        acc = 0.0
        g = codes[i]
        for a in range(q):
            acc += ZL[i, a] * U[g, a]
        out[i] = acc
    return out


MODE_LME4, MODE_SCORE, MODE_JOINT = 0, 1, 2


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _eta_row(fam, lk, th, y, pw, sat, offset, X, beta, i, zu, eta, mu, W, dr):  # pragma: no cover
    """Row ``i`` at ``eta = offset + x·β + zu`` (``zu``: its random-effect part): stores
    ``eta, mu, W, dr`` and returns (W, s, deviance residual, log-likelihood part). The one
    row step of every pass over the rows."""
    e = offset[i]
    for j in range(X.shape[1]):
        e += X[i, j] * beta[j]
    e += zu
    m, w, s, d, lli = _row(fam, lk, th, y[i], pw[i], sat[i], e)
    eta[i] = e
    mu[i] = m
    W[i] = w
    dr[i] = d
    return w, s, d, lli


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _zrow(Z, lam, U, g, i, zl):  # pragma: no cover - compiled
    """``zl = Λᵀ z_i`` (row ``i`` of ``ZΛ``, into ``zl``) and ``zl · U[g]``; q = 1 and 2
    unrolled."""
    q = Z.shape[1]
    if q == 1:
        zl[0] = Z[i, 0] * lam[0, 0]
        return zl[0] * U[g, 0]
    if q == 2:
        zl[0] = Z[i, 0] * lam[0, 0] + Z[i, 1] * lam[1, 0]
        zl[1] = Z[i, 0] * lam[0, 1] + Z[i, 1] * lam[1, 1]
        return zl[0] * U[g, 0] + zl[1] * U[g, 1]
    zu = 0.0
    for a in range(q):
        acc = 0.0
        for b in range(q):
            acc += Z[i, b] * lam[b, a]
        zl[a] = acc
        zu += acc * U[g, a]
    return zu


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _joint_acc(C, XtWX, rb, g, zl, X, i, w, s):  # pragma: no cover - compiled
    """β inside PIRLS: ``C[g] += W zl xᵀ`` (flat (q, p)), ``XᵀWX += W x xᵀ`` (packed lower
    triangle), ``rb += s x``. Flat arrays indexed directly: with views (``C[g]``) the inlined
    helper ran 2x slower."""
    q, p = zl.shape[0], X.shape[1]
    t = 0
    for j in range(p):
        xj = X[i, j]
        wx = w * xj
        rb[j] += s * xj
        for a in range(q):
            C[g, a * p + j] += wx * zl[a]
        for k in range(j + 1):
            XtWX[t] += wx * X[i, k]
            t += 1


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _unpack(Kp, q):  # pragma: no cover - compiled
    """``I +`` the packed lower triangles (G, q(q+1)/2) as full (G, q, q) blocks."""
    G = Kp.shape[0]
    K = np.empty((G, q, q))
    for g in range(G):
        t = 0
        for a in range(q):
            for b in range(a + 1):
                K[g, a, b] = Kp[g, t]
                K[g, b, a] = Kp[g, t]
                t += 1
            K[g, a, a] += 1.0
    return K


@numba.njit(cache=True, nogil=True, error_model="numpy")
def block_pass(fam, lk, th, y, pw, sat, offset, X, beta, codes, Z, lam, U, G, mode,
               eta, mu, W, dr):  # pragma: no cover - compiled
    """One PIRLS step of a single grouping factor: one pass over the rows.

    At ``eta = base + zl·U[g]``, ``base = offset + Xβ``, ``zl = Λᵀz`` (the row's ``ZΛ``, formed
    on the fly: no (N, q) array to rebuild per θ), it fills ``eta, mu, W, dr`` (the row
    quantities of :func:`_row`) and accumulates ``K[g] = I + Σ W zl zlᵀ`` and, by ``mode``,

    * ``MODE_LME4``: ``r[g] = Σ (W (eta - base) + s) zl`` (lme4's penalised weighted
      least-squares right-hand side: ``u_new = K⁻¹ r``);
    * ``MODE_SCORE``: ``r[g] = Σ s zl`` (the score, for the exact Newton step);
    * ``MODE_JOINT``: the score and, for β inside PIRLS (nAGQ = 0), ``C[g] = Σ W zl xᵀ``,
      ``XᵀWX`` and ``rb = Xᵀ s``.

    Returns (K, r, C, XtWX, rb, sum dr, mean-dependent log-likelihood)."""
    # binomial/logit: the row step runs over 1-D arrays first (eta loop, then :func:`rows` ->
    # :func:`_logit_rows`, which LLVM vectorises); the fused loop then reads W and s back. A
    # loop that gathers U[codes[i]] or scatters into per-level sums is not vectorised, hence
    # the split. 200k rows, binary correlated slope: one LME4 pass 3.2 -> 1.6 ms, the glmer
    # fit ~2x faster (benchmarks/README.md). Other families keep the single fused loop (split,
    # Poisson/log ran 0.9x at q = 2, 0.7x at q = 3).
    if fam == 0 and lk == 0:
        N, q = Z.shape
        zl = np.empty(q)
        for i in range(N):
            e = offset[i] + _zrow(Z, lam, U, codes[i], i, zl)
            for j in range(X.shape[1]):
                e += X[i, j] * beta[j]
            eta[i] = e
        S = np.empty(N)
        dsum, ll = rows(fam, lk, th, y, y, pw, sat, eta, mu, W, S, dr)
        K, r, C, XX, rb, _, _ = _fused_pass(fam, lk, th, y, pw, sat, offset, X, beta, codes, Z,
                                            lam, U, G, mode, eta, mu, W, dr, S)
        return K, r, C, XX, rb, dsum, ll
    return _fused_pass(fam, lk, th, y, pw, sat, offset, X, beta, codes, Z, lam, U, G, mode,
                       eta, mu, W, dr, None)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _fused_pass(fam, lk, th, y, pw, sat, offset, X, beta, codes, Z, lam, U, G, mode,
                eta, mu, W, dr, S):  # pragma: no cover - compiled
    """:func:`block_pass`'s loop over the rows: the row step (:func:`_eta_row`) and the
    per-level sums; with ``S`` (the scores) the row quantities are already formed and only
    ``W`` and ``S`` are read."""
    N, q = Z.shape
    p = X.shape[1]
    zl = np.empty(q)
    joint = mode == MODE_JOINT
    lme4 = mode == MODE_LME4
    pj = p if joint else 0
    Kp = np.zeros((G, q * (q + 1) // 2))    # packed lower triangles
    r = np.zeros((G, q))
    C = np.zeros((G, q * pj))
    XtWX = np.zeros(pj * (pj + 1) // 2)
    rb = np.zeros(pj)
    dsum = 0.0
    ll = 0.0
    # q = 1 and 2 (intercepts, one slope) get their own loop: the row step is the shared
    # helper, the unrolled accumulation runs ~1.4x faster than the general one (200k rows)
    if q == 1:
        for i in range(N):
            g = codes[i]
            z0 = Z[i, 0] * lam[0, 0]
            zu = z0 * U[g, 0]
            if S is None:                    # resolved at compile time
                w, s, d, lli = _eta_row(fam, lk, th, y, pw, sat, offset, X, beta, i, zu,
                                        eta, mu, W, dr)
                dsum += d
                ll += lli
            else:
                w, s = W[i], S[i]
            c = w * zu + s if lme4 else s
            Kp[g, 0] += w * z0 * z0
            r[g, 0] += c * z0
            if joint:
                zl[0] = z0
                _joint_acc(C, XtWX, rb, g, zl, X, i, w, s)
    elif q == 2:
        for i in range(N):
            g = codes[i]
            z0 = Z[i, 0] * lam[0, 0] + Z[i, 1] * lam[1, 0]
            z1 = Z[i, 0] * lam[0, 1] + Z[i, 1] * lam[1, 1]
            zu = z0 * U[g, 0] + z1 * U[g, 1]
            if S is None:                    # resolved at compile time
                w, s, d, lli = _eta_row(fam, lk, th, y, pw, sat, offset, X, beta, i, zu,
                                        eta, mu, W, dr)
                dsum += d
                ll += lli
            else:
                w, s = W[i], S[i]
            c = w * zu + s if lme4 else s
            w0 = w * z0
            Kp[g, 0] += w0 * z0
            Kp[g, 1] += w0 * z1
            Kp[g, 2] += w * z1 * z1
            r[g, 0] += c * z0
            r[g, 1] += c * z1
            if joint:
                zl[0] = z0
                zl[1] = z1
                _joint_acc(C, XtWX, rb, g, zl, X, i, w, s)
    else:
        for i in range(N):
            g = codes[i]
            zu = _zrow(Z, lam, U, g, i, zl)
            if S is None:                    # resolved at compile time
                w, s, d, lli = _eta_row(fam, lk, th, y, pw, sat, offset, X, beta, i, zu,
                                        eta, mu, W, dr)
                dsum += d
                ll += lli
            else:
                w, s = W[i], S[i]
            c = w * zu + s if lme4 else s
            t = 0
            for a in range(q):
                wa = w * zl[a]
                r[g, a] += c * zl[a]
                for b in range(a + 1):
                    Kp[g, t] += wa * zl[b]
                    t += 1
            if joint:
                _joint_acc(C, XtWX, rb, g, zl, X, i, w, s)
    XX = np.empty((pj, pj))
    t = 0
    for j in range(pj):
        for k in range(j + 1):
            XX[j, k] = XX[k, j] = XtWX[t]
            t += 1
    return _unpack(Kp, q), r, C.reshape((G, q, pj)), XX, rb, dsum, ll


@numba.njit(cache=True, nogil=True, error_model="numpy")
def group_moments(codes, Z, X, W, v, G):  # pragma: no cover - compiled
    """Per level: ``A[g] = Σ W z zᵀ``, ``b[g] = Σ v z``, ``C[g] = Σ W z xᵀ`` over the rows of
    the (unscaled) ``Z``; with them ``ΛᵀZᵀWZΛ`` and ``ΛᵀZᵀ(v - W Xβ)`` cost O(G q²) per θ."""
    N, q = Z.shape
    p = X.shape[1]
    A = np.zeros((G, q, q))
    b = np.zeros((G, q))
    C = np.zeros((G, q, p))
    for i in range(N):
        g = codes[i]
        for a in range(q):
            wa = W[i] * Z[i, a]
            b[g, a] += v[i] * Z[i, a]
            for c in range(q):
                A[g, a, c] += wa * Z[i, c]
            for j in range(p):
                C[g, a, j] += wa * X[i, j]
    return A, b, C


@numba.njit(cache=True, nogil=True, error_model="numpy")
def block_solve(K, R):  # pragma: no cover - compiled
    """``K[g]⁻¹ R[g]`` for every level, ``R`` (G, q, k) (K[g] symmetric positive definite,
    q × q; Cholesky per block, no batched-LAPACK call overhead)."""
    G, q, k = R.shape
    out = np.empty((G, q, k))
    L = np.empty((q, q))
    z = np.empty(q)
    for g in range(G):
        for a in range(q):
            for b in range(a + 1):
                acc = K[g, a, b]
                for c in range(b):
                    acc -= L[a, c] * L[b, c]
                if a == b:
                    if acc <= 0.0:
                        raise np.linalg.LinAlgError("K is not positive definite")
                    L[a, a] = math.sqrt(acc)
                else:
                    L[a, b] = acc / L[b, b]
        for j in range(k):
            for a in range(q):
                acc = R[g, a, j]
                for c in range(a):
                    acc -= L[a, c] * z[c]
                z[a] = acc / L[a, a]
            for a in range(q - 1, -1, -1):
                acc = z[a]
                for c in range(a + 1, q):
                    acc -= L[c, a] * out[g, c, j]
                out[g, a, j] = acc / L[a, a]
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def times_lambda(Z, lam):  # pragma: no cover - compiled
    """``Z Λ`` for an (N, q) ``Z`` (NumPy's matmul takes ~10x longer on this tall, thin
    shape)."""
    N, q = Z.shape
    out = np.empty((N, q))
    for i in range(N):
        for b in range(q):
            acc = 0.0
            for a in range(q):
                acc += Z[i, a] * lam[a, b]
            out[i, b] = acc
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def lambda_system(A, b, C, beta, lam):  # pragma: no cover - compiled
    """``K[g] = I + Λᵀ A[g] Λ`` and ``r[g] = Λᵀ (b[g] - C[g] β)`` (stage 2's start from the
    moments at lp0, :func:`group_moments`)."""
    G, q = b.shape
    p = beta.shape[0]
    K = np.empty((G, q, q))
    r = np.empty((G, q))
    v = np.empty(q)
    AL = np.empty((q, q))
    for g in range(G):
        for a in range(q):
            acc = b[g, a]
            for j in range(p):
                acc -= C[g, a, j] * beta[j]
            v[a] = acc
        for a in range(q):
            for c in range(q):
                acc = 0.0
                for d in range(q):
                    acc += A[g, a, d] * lam[d, c]
                AL[a, c] = acc
        for c in range(q):
            acc = 0.0
            for a in range(q):
                acc += lam[a, c] * v[a]
            r[g, c] = acc
            for e in range(q):
                acc = 0.0
                for a in range(q):
                    acc += lam[a, e] * AL[a, c]
                K[g, e, c] = acc + (1.0 if e == c else 0.0)
    return K, r
