"""Collapsed generalized models: group effects integrated out by adaptive Gauss–Hermite
quadrature (AGQ), NUTS (nutpie) on the fixed effects and variance parameters only.

One grouping factor with ``q ≤ 2`` effect columns (one correlated block or
uncorrelated terms; with several factors the one with most levels is integrated out this
way given the others' sampled effects, :mod:`.glmm_collapsed_crossed`), families whose compiled row kernel (:mod:`.glmm_kernels`) has a
third η-derivative here (:func:`_d3`: binomial/Bernoulli logit, Poisson log). Per
group ``g``, in standardized effects ``v`` (``b = L v``, ``v ~ N(0, I)``)::

    h(v) = Σ_i ℓ(y_i; o_i + ζ_iᵀ v) − ½|v|²,      o_i = x_iᵀβ + offset_i,  ζ_i = Lᵀ z_i
    v̂ = argmax h (Newton; h is concave),  H = −∇²h(v̂) = C Cᵀ,  M = C⁻ᵀ
    p_g ≈ |C|⁻¹ Σ_m ω_m exp(h(v̂ + M t_m) + |t_m|²/2)

with the tensor product of K probabilists' Gauss–Hermite nodes ``t_m`` and weights
``ω_m`` (Σ ω = 1); K = 1 would be the Laplace approximation. The log marginal likelihood
is ``Σ_g log p_g``; its gradient is the exact gradient of this *quadrature sum* (not of
the integral it approximates): reverse mode through the nodes, through M (the Cholesky
factor of H, which depends on β, L and v̂ through the second and third η-derivatives)
and through v̂ by the implicit-function theorem (``dv̂ = H⁻¹ ∂_φ∇h``). The node count K
is chosen per model (:func:`choose_nodes`) so that the summed log likelihood moves by
less than ``1e-6`` when the nodes are doubled.

Parameters (unconstrained, in this order) are those of the compiled Gaussian density
(:mod:`.numba_density`) without ``log σ``: raw fixed effects (p), then per group term the
log SDs and, for a correlated term, the partial correlations ``atanh c``. The priors are
the model's :class:`~bayes_hlm.spec.priors.PriorSet`, the same prior as the full PyMC
model (:mod:`.full`), evaluated by the same compiled prior code.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, replace

import numba
import numpy as np

from ..spec.design import Design
from ..spec.priors import PriorSet, corr_key
from ..statistics.quadrature import tensor_rule
from .glmm_kernels import kernel_code, row_terms
from .numba_density import (_log_positive, cpc_backward, fixed_prior,
                            lkj_cpc, n_corr, priors_unsupported, sd_prior_entries)

#: kernel codes with a third η-derivative in :func:`_d3` (binomial logit, Poisson log)
COVERED_CODES = (0, 3)
#: largest number of effect columns of the integrated factor (tensor-product nodes: K^q)
MAX_Q = 2
#: tolerance of the summed log likelihood against doubled nodes (issue #17)
NODE_TOL = 1e-6
_HEAD = 10
#: total Gauss–Hermite weight pruned from the tensor grid (0: none; see gauss_hermite)
PRUNE = 0.0


# --------------------------------------------------------------------------- #
# which models qualify
# --------------------------------------------------------------------------- #
def unsupported_reason(design: Design, ps: PriorSet, family) -> str | None:
    """``None`` when the quadrature-collapsed engine covers this model, else why not."""
    if family is None:
        return "Gaussian models use the conjugate collapsed engine"
    try:
        code = kernel_code(family)
    except Exception as e:  # no compiled likelihood at all
        return str(e)
    if code not in COVERED_CODES:
        return (f"family {family.name!r} with link {family.link.name!r} (quadrature engine: "
                "bernoulli/binomial logit, poisson log)")
    if family.param_names:
        return f"family {family.name!r} has parameters {list(family.param_names)}"
    if getattr(design, "weights", None) is not None:
        return "weights= (applied by the PyMC full model only)"
    factors = {g.factor for g in design.groups}
    if len(factors) > 1:  # the factor with most levels integrated out, the others sampled
        from .glmm_collapsed_crossed import unsupported_reason as crossed_reason

        why = crossed_reason(design, ps, family)
        if why is not None:
            return why
    elif sum(g.q for g in design.groups) > MAX_Q:
        return (f"{sum(g.q for g in design.groups)} effect columns per group (quadrature "
                f"engine: at most {MAX_Q})")
    return priors_unsupported(design, ps)


# --------------------------------------------------------------------------- #
# packing
# --------------------------------------------------------------------------- #
def gauss_hermite(K: int, q: int, prune: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The statistics layer's tensor-product rule (:func:`~bayes_hlm.statistics.quadrature.
    tensor_rule`: nodes (M, q), ``log ω_m + |t_m|²/2``); odd K only here, so the mode itself
    is a node and K = 1 is the Laplace approximation."""
    if K < 1 or K % 2 == 0:
        raise ValueError(f"K must be a positive odd number of nodes, not {K}")
    return tensor_rule(K, q, prune)


@dataclass
class CollapsedPacked:
    """The buffer of :func:`logp_grad` and how to read the parameter vector back."""

    buf: np.ndarray
    ndim: int
    p: int
    q: int
    G: int
    K: int
    terms: list  # (q_t, correlated) per GroupTerm
    init: np.ndarray
    order: np.ndarray  # rows sorted by group (the data sections of buf are in this order)
    centered: dict  # nutpie front end reads it (no sampled factors here)


def _rows(design: Design) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row order sorted by group, group pointer, Z in the factor's term order."""
    codes = design.groups[0].codes
    order = np.argsort(codes, kind="stable")
    G = design.groups[0].n_levels
    indptr = np.zeros(G + 1, dtype=np.int64)
    np.cumsum(np.bincount(codes, minlength=G), out=indptr[1:])
    Z = np.concatenate([g.Z for g in design.groups], axis=1)
    return order, indptr, Z


def term_blocks(groups, ps: PriorSet) -> tuple[list, list, list]:
    """The integrated terms' header and prior entries of the buffer: per term ``(q,
    correlated, LKJ η, first column)`` and each SD's positive-prior code; the terms' ``(q,
    correlated)``; start values (log prior scale per SD, 0 per partial correlation)."""
    per_term, terms, init = [], [], []
    off = 0
    for g in groups:
        eta = float(ps.priors[corr_key(g.factor)].params.get("eta", 1.0)) if g.correlated else 0.0
        per_term += [g.q, float(g.correlated), eta, off]
        codes, starts = sd_prior_entries(g, ps)
        per_term += [v for c in codes for v in c]
        init += starts
        if g.correlated:
            init += [0.0] * n_corr(g.q)
        terms.append((g.q, g.correlated))
        off += g.q
    return per_term, terms, init


def pack(design: Design, ps: PriorSet, family, K: int = 7) -> CollapsedPacked:
    """Lay out priors, data (rows grouped) and the quadrature rule for :func:`logp_grad`."""
    p = design.p
    order, indptr, Z = _rows(design)
    q, G, N = Z.shape[1], len(indptr) - 1, len(order)
    names = design.fixed_names
    i_int = names.index("Intercept") if ps.centered else -1
    # pruned weight: at most a tenth of the tolerance over all groups (relative error of p_g)
    t, lw = gauss_hermite(K, q, prune=PRUNE)
    nmax = int(np.max(np.diff(indptr))) if G else 0
    head = [0.0, p, q, G, N, len(design.groups), i_int, kernel_code(family), len(lw), nmax]
    assert len(head) == _HEAD
    mu = np.array([float(ps.priors[n].params["mu"]) for n in names])
    sd = np.array([float(ps.priors[n].params["sigma"]) for n in names])
    per_term, terms, init = term_blocks(design.groups, ps)
    init = list(mu) + init
    y = np.asarray(design.y, dtype=float)[order]
    trials = (np.ones(N) if design.trials is None
              else np.asarray(design.trials, dtype=float)[order])
    offset = np.zeros(N) if design.offset is None else np.asarray(design.offset, float)[order]
    body = [np.asarray(head, dtype=float), np.asarray(per_term, dtype=float), mu, sd,
            np.asarray(ps.x_mean, dtype=float), indptr.view(np.float64), y, trials, offset,
            np.ascontiguousarray(design.X[order], dtype=float).ravel(),
            np.ascontiguousarray(Z[order], dtype=float).ravel(), t.ravel(), lw]
    buf = np.concatenate(body)
    buf[0] = len(buf)
    return CollapsedPacked(buf=buf, ndim=len(init), p=p, q=q, G=G, K=K, terms=terms,
                           init=np.asarray(init), order=order, centered={})


# --------------------------------------------------------------------------- #
# small dense algebra (q ≤ MAX_Q, any q works)
# --------------------------------------------------------------------------- #
@numba.njit(cache=True, nogil=True, error_model="numpy")
def _chol(H, C):
    """Lower Cholesky factor of a small SPD matrix into ``C``; False when a pivot is not
    positive (the factor then holds NaN from there on, as callers that test it expect)."""
    q = H.shape[0]
    ok = True
    for i in range(q):
        for j in range(q):
            C[i, j] = 0.0
    for j in range(q):
        s = H[j, j]
        for k in range(j):
            s -= C[j, k] * C[j, k]
        if not s > 0.0:
            ok = False
        C[j, j] = np.sqrt(s)
        for i in range(j + 1, q):
            s = H[i, j]
            for k in range(j):
                s -= C[i, k] * C[j, k]
            C[i, j] = s / C[j, j]
    return ok


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _inv_lower(C, Ci):
    q = C.shape[0]
    for i in range(q):
        for j in range(q):
            Ci[i, j] = 0.0
    for j in range(q):
        Ci[j, j] = 1.0 / C[j, j]
        for i in range(j + 1, q):
            s = 0.0
            for k in range(j, i):
                s -= C[i, k] * Ci[k, j]
            Ci[i, j] = s / C[i, i]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _spd_solve(C, b, out):
    """``out = (C Cᵀ)⁻¹ b``."""
    q = C.shape[0]
    for i in range(q):
        s = b[i]
        for k in range(i):
            s -= C[i, k] * out[k]
        out[i] = s / C[i, i]
    for i in range(q - 1, -1, -1):
        s = out[i]
        for k in range(i + 1, q):
            s -= C[k, i] * out[k]
        out[i] = s / C[i, i]


# --------------------------------------------------------------------------- #
# one group
# --------------------------------------------------------------------------- #
@numba.njit(cache=True, nogil=True, error_model="numpy")
def _d3(code, y, n, eta):
    """Third η-derivative of one row's log likelihood (codes in COVERED_CODES)."""
    if code == 0:  # binomial logit: ℓ'' = −n p (1 − p)
        p = 1.0 / (1.0 + math.exp(-eta))
        return -n * p * (1.0 - p) * (1.0 - 2.0 * p)
    return -math.exp(eta)  # Poisson log: ℓ'' = −μ


@numba.njit(cache=True, nogil=True, error_model="numpy")
def prepare_group(a, b, X, Z, off, beta, L, o, zeta):
    """``o_i = x_iᵀβ + offset_i`` and ``ζ_i = Lᵀ z_i`` of rows ``a:b`` (into o[:n], zeta[:n])."""
    p, q = X.shape[1], Z.shape[1]
    for i in range(b - a):
        r = a + i
        s = off[r]
        for j in range(p):
            s += X[r, j] * beta[j]
        o[i] = s
        for k in range(q):
            s = 0.0
            for j in range(k, q):  # L lower: (Lᵀ z)_k = Σ_{j ≥ k} L_jk z_j
                s += L[j, k] * Z[r, j]
            zeta[i, k] = s


@numba.njit(cache=True, nogil=True, error_model="numpy")
def group_mode(code, y, nn, a, b, o, zeta, v, H, d1, d2, d3):
    """Newton (step-halving) for the mode ``v`` of the concave ``h``; leaves ``H = −∇²h``
    and the rows' η-derivatives at the mode in ``d1, d2, d3``; returns ``h(v̂)``."""
    q = v.shape[0]
    n = b - a
    for k in range(q):
        v[k] = 0.0
    vprev = np.zeros(q)
    step = np.zeros(q)
    g = np.zeros(q)
    C = np.empty((q, q))
    hprev = -np.inf
    hval = 0.0
    for it in range(200):
        hval = 0.0
        for k in range(q):
            hval -= 0.5 * v[k] * v[k]
            g[k] = -v[k]
            for j in range(q):
                H[k, j] = 1.0 if k == j else 0.0
        for i in range(n):
            e = o[i]
            for k in range(q):
                e += zeta[i, k] * v[k]
            t = row_terms(code, y[a + i], nn[a + i], e, 0.0)
            hval += t[0]
            d1[i] = t[1]
            d2[i] = t[2]
            for k in range(q):
                g[k] += t[1] * zeta[i, k]
                for j in range(q):
                    H[k, j] -= t[2] * zeta[i, k] * zeta[i, j]
        if not (hval >= hprev - 1e-12 * (1.0 + abs(hprev))) and it < 150:
            # overshoot (or non-finite): halve the step from the last accepted point
            for k in range(q):
                step[k] *= 0.5
                v[k] = vprev[k] + step[k]
            continue
        hprev = hval
        _chol(H, C)
        _spd_solve(C, g, step)
        smax = 0.0
        for k in range(q):
            vprev[k] = v[k]
            smax = max(smax, abs(step[k]))
        if smax < 1e-11:
            break
        for k in range(q):
            v[k] += step[k]
    for i in range(n):
        e = o[i]
        for k in range(q):
            e += zeta[i, k] * v[k]
        d3[i] = _d3(code, y[a + i], nn[a + i], e)
    return hval


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _group_term(code, y, nn, a, b, Z, t, lw, o, zeta, d1, d2, d3, D, kap, r, T, zbar, obar,
                go, gL):
    """log p_g (AGQ) of rows ``a:b`` (``o, zeta`` prepared); writes its exact gradient
    w.r.t. each row's offset ``o_i`` to ``go[:n]`` (w.r.t. β: ``Σ_i go_i x_i``; w.r.t. a
    crossed factor's sampled effects likewise) and adds that w.r.t. L to ``gL`` (module
    docstring)."""
    q = zeta.shape[1]
    Mn = t.shape[0]
    n = b - a
    v = np.empty(q)
    H = np.empty((q, q))
    group_mode(code, y, nn, a, b, o, zeta, v, H, d1, d2, d3)
    C = np.empty((q, q))
    Ci = np.empty((q, q))
    _chol(H, C)
    _inv_lower(C, Ci)  # M = C⁻ᵀ = Ciᵀ: M[k, j] = Ci[j, k]
    logdet = 0.0
    for k in range(q):
        logdet += math.log(C[k, k])
    # nodes: η_im = η̂_i + κ_iᵀ t_m with κ_i = Mᵀ ζ_i = Ci ζ_i
    hm = np.zeros(Mn)
    for i in range(n):
        e0 = o[i]
        for k in range(q):
            e0 += zeta[i, k] * v[k]
        for k in range(q):
            s = 0.0
            for j in range(k + 1):
                s += Ci[k, j] * zeta[i, j]
            kap[i, k] = s
        for m in range(Mn):
            e = e0
            for k in range(q):
                e += kap[i, k] * t[m, k]
            tt = row_terms(code, y[a + i], nn[a + i], e, 0.0)
            hm[m] += tt[0]
            D[i, m] = tt[1]
    vm = np.empty((Mn, q))
    amax = -np.inf
    for m in range(Mn):
        s2 = 0.0
        for k in range(q):
            s = v[k]
            for j in range(k, q):
                s += Ci[j, k] * t[m, j]
            vm[m, k] = s
            s2 += s * s
        hm[m] += lw[m] - 0.5 * s2
        amax = max(amax, hm[m])
    S = 0.0
    for m in range(Mn):
        hm[m] = math.exp(hm[m] - amax)
        S += hm[m]
    F = amax + math.log(S) - logdet
    pv = np.zeros(q)
    pvt = np.zeros((q, q))
    for m in range(Mn):
        hm[m] /= S  # π_m
        for k in range(q):
            pv[k] += hm[m] * vm[m, k]
            for j in range(q):
                pvt[k, j] += hm[m] * vm[m, k] * t[m, j]
    # per row: r_i = Σ π_m ℓ'_im, T_i = Σ π_m ℓ'_im t_m
    vbar = np.zeros(q)
    Mbar = np.zeros((q, q))
    for k in range(q):
        vbar[k] = -pv[k]
        for j in range(q):
            Mbar[k, j] = -pvt[k, j]
    for i in range(n):
        ri = 0.0
        for k in range(q):
            T[i, k] = 0.0
        for m in range(Mn):
            w = hm[m] * D[i, m]
            ri += w
            for k in range(q):
                T[i, k] += w * t[m, k]
        r[i] = ri
        go[i] = ri
        for k in range(q):
            vbar[k] += zeta[i, k] * ri
            for j in range(q):
                Mbar[k, j] += zeta[i, k] * T[i, j]
        # ∂/∂L direct: z_i (r_i v̂ + M T_i)ᵀ
        for j in range(q):
            s = ri * v[j]
            for k in range(q):
                s += Ci[k, j] * T[i, k]
            for k2 in range(q):
                gL[k2, j] += Z[a + i, k2] * s
    # M = C⁻ᵀ: dM = −M dCᵀ M, so C̄ = −M M̄ᵀ M = −(Ci M̄ Ci)ᵀ; plus −1/C_kk from −log|C|
    tmp = Ci @ Mbar @ Ci
    Cbar = np.zeros((q, q))
    for k in range(q):
        for j in range(k + 1):
            Cbar[k, j] = -tmp[j, k]
        Cbar[k, k] -= 1.0 / C[k, k]
    # Cholesky backward: H̄ = M sym(Φ(Cᵀ C̄)) Mᵀ
    P = np.zeros((q, q))
    for k in range(q):
        for j in range(q):
            s = 0.0
            for l in range(q):
                s += C[l, k] * Cbar[l, j]
            P[k, j] = s
    Ph = np.zeros((q, q))
    for k in range(q):
        for j in range(q):
            if j < k:
                Ph[k, j] = 0.5 * P[k, j]
                Ph[j, k] = 0.5 * P[k, j]
            elif j == k:
                Ph[k, k] = 0.5 * P[k, k]
    Hbar = np.zeros((q, q))
    for k in range(q):
        for j in range(q):
            s = 0.0
            for l in range(q):
                for l2 in range(q):
                    s += Ci[l, k] * Ph[l, l2] * Ci[l2, j]
            Hbar[k, j] = s
    # H = I + Σ w_i ζ_i ζ_iᵀ, w_i = −ℓ''(η̂_i), η̂_i = o_i + ζ_iᵀ v̂
    Hz = np.empty(q)
    for i in range(n):
        wb = 0.0
        for k in range(q):
            s = 0.0
            for j in range(q):
                s += Hbar[k, j] * zeta[i, j]
            Hz[k] = s
            wb += zeta[i, k] * s
        eb = -wb * d3[i]
        obar[i] = eb
        for k in range(q):
            zbar[i, k] = -2.0 * d2[i] * Hz[k] + eb * v[k]
            vbar[k] += eb * zeta[i, k]
    # v̂ (implicit): λ = H⁻¹ v̄, then λᵀ ∂_φ ∇h at the mode
    lam = np.empty(q)
    _spd_solve(C, vbar, lam)
    for i in range(n):
        zl = 0.0
        for k in range(q):
            zl += zeta[i, k] * lam[k]
        go[i] += obar[i] + d2[i] * zl
        for k in range(q):
            zb = zbar[i, k] + d1[i] * lam[k] + d2[i] * zl * v[k]
            for k2 in range(q):  # ζ = Lᵀ z: L̄ += z ζ̄ᵀ
                gL[k2, k] += Z[a + i, k2] * zb
    return F


# --------------------------------------------------------------------------- #
# the density
# --------------------------------------------------------------------------- #
@numba.njit(cache=True, nogil=True, error_model="numpy")
def unpack(buf):
    """Views of the packed sections: (p, q, G, N, T, i_int, code, nmax, term_at, mu, sd, xm,
    indptr, y, nn, off, X, Z, t, lw)."""
    p, q, G, N = int(buf[1]), int(buf[2]), int(buf[3]), int(buf[4])
    T, i_int, code, Mn, nmax = int(buf[5]), int(buf[6]), int(buf[7]), int(buf[8]), int(buf[9])
    o = _HEAD
    term_at = o
    for _ in range(T):
        o += 4 + 3 * int(buf[o])
    mu, sd, xm = buf[o:o + p], buf[o + p:o + 2 * p], buf[o + 2 * p:o + 3 * p]
    o += 3 * p
    indptr = buf[o:o + G + 1].view(np.int64)
    o += G + 1
    y, nn, off = buf[o:o + N], buf[o + N:o + 2 * N], buf[o + 2 * N:o + 3 * N]
    o += 3 * N
    X = buf[o:o + N * p].reshape((N, p))
    o += N * p
    Z = buf[o:o + N * q].reshape((N, q))
    o += N * q
    t = buf[o:o + Mn * q].reshape((Mn, q))
    o += Mn * q
    lw = buf[o:o + Mn]
    return (p, q, G, N, T, i_int, code, nmax, term_at, mu, sd, xm, indptr, y, nn, off, X, Z, t, lw)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def term_priors(x, k, buf, ot, T, q, grad):
    """Prior of the integrated factor's SDs and correlations, read from ``x[k:]`` with the
    ``T`` term blocks at ``buf[ot:]``: adds their gradient to ``grad``; returns ``(lp, L)``."""
    lp = 0.0
    L = np.zeros((q, q))
    for _ in range(T):
        qt, corr, eta, o2 = int(buf[ot]), buf[ot + 1] > 0.5, buf[ot + 2], int(buf[ot + 3])
        for i in range(qt):
            l_i, d_i = _log_positive(int(buf[ot + 4 + 3 * i]), buf[ot + 5 + 3 * i],
                                     buf[ot + 6 + 3 * i], x[k + i])
            lp += l_i
            grad[k + i] += d_i
            L[o2 + i, o2 + i] = np.exp(x[k + i])
        nc = n_corr(qt) if corr else 0
        if corr:
            W = np.empty((qt, qt))
            gz = np.zeros(nc)
            lp += lkj_cpc(x[k + qt:k + qt + nc], eta, W, gz)
            for i in range(nc):
                grad[k + qt + i] += gz[i]
            for i in range(qt):
                sd_i = L[o2 + i, o2 + i]
                for j in range(i + 1):
                    L[o2 + i, o2 + j] = sd_i * W[i, j]
        ot += 4 + 3 * qt
        k += qt + nc
    return lp, L


@numba.njit(cache=True, nogil=True, error_model="numpy")
def terms_backward(x, k, buf, ot, T, L, gL, grad):
    """Adds the gradient w.r.t. L (``gL``) to ``grad`` in the SD/correlation coordinates
    (the transpose of :func:`term_priors`'s map from ``x[k:]`` to L)."""
    for _ in range(T):
        qt, corr, o2 = int(buf[ot]), buf[ot + 1] > 0.5, int(buf[ot + 3])
        for i in range(qt):
            s = 0.0
            for jj in range(qt):
                s += gL[o2 + i, o2 + jj] * L[o2 + i, o2 + jj]
            grad[k + i] += s
        nc = n_corr(qt) if corr else 0
        if corr:
            gW = np.empty((qt, qt))
            for i in range(qt):
                sd_i = np.exp(x[k + i])
                for j in range(qt):
                    gW[i, j] = gL[o2 + i, o2 + j] * sd_i
            cpc_backward(x[k + qt:k + qt + nc], qt, gW, grad[k + qt:k + qt + nc])
        ot += 4 + 3 * qt
        k += qt + nc


@numba.njit(cache=True, nogil=True, error_model="numpy")
def hyper(x, buf, grad):
    """Prior terms: returns ``(lp, β, L)`` and sets ``grad`` to the prior's gradient."""
    (p, q, G, N, T, i_int, code, nmax, term_at, mu, sd, xm, indptr, y, nn, off, X, Z, t,
     lw) = unpack(buf)
    for i in range(grad.shape[0]):
        grad[i] = 0.0
    lp, beta = fixed_prior(x, p, mu, sd, xm, i_int, grad)
    lpt, L = term_priors(x, p, buf, term_at, T, q, grad)
    return lp + lpt, beta, L


@numba.njit(cache=True, nogil=True, error_model="numpy")
def hyper_backward(x, buf, L, gbeta, gL, grad):
    """Adds the likelihood's gradient w.r.t. β and L to ``grad`` (x-coordinates)."""
    (p, q, G, N, T, i_int, code, nmax, term_at, mu, sd, xm, indptr, y, nn, off, X, Z, t,
     lw) = unpack(buf)
    for jj in range(p):
        grad[jj] += gbeta[jj]
        if i_int >= 0 and jj != i_int:
            grad[jj] -= xm[jj] * gbeta[i_int]
    terms_backward(x, p, buf, term_at, T, L, gL, grad)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def term_scratch(nmax, q, Mn):
    """Work arrays of :func:`_group_term` for groups of up to ``nmax`` rows, ``q`` effect
    columns and ``Mn`` nodes: ``(o, zeta, d1, d2, d3, D, kap, r, Tm, zbar, obar, go)``."""
    return (np.empty(nmax), np.empty((nmax, q)), np.empty(nmax), np.empty(nmax), np.empty(nmax),
            np.empty((nmax, Mn)), np.empty((nmax, q)), np.empty(nmax), np.empty((nmax, q)),
            np.empty((nmax, q)), np.empty(nmax), np.empty(nmax))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def loglik_groups(beta, L, buf, gbeta, gL, per_group):
    """Σ_g log p_g (AGQ); adds ∂/∂β, ∂/∂L; writes each group's term to ``per_group``."""
    (p, q, G, N, T, i_int, code, nmax, term_at, mu, sd, xm, indptr, y, nn, off, X, Z, t,
     lw) = unpack(buf)
    o, zeta, d1, d2, d3, D, kap, r, Tm, zbar, obar, go = term_scratch(nmax, q, t.shape[0])
    tot = 0.0
    for g in range(G):
        a, b = indptr[g], indptr[g + 1]
        prepare_group(a, b, X, Z, off, beta, L, o, zeta)
        F = _group_term(code, y, nn, a, b, Z, t, lw, o, zeta, d1, d2, d3, D, kap, r, Tm,
                        zbar, obar, go, gL)
        for i in range(b - a):
            for j in range(p):
                gbeta[j] += go[i] * X[a + i, j]
        per_group[g] = F
        tot += F
    return tot


@numba.njit(cache=True, nogil=True, error_model="numpy")
def logp_grad(x, buf, grad):
    """Log posterior (up to a constant) at ``x``; writes its gradient to ``grad``."""
    p, q, G = int(buf[1]), int(buf[2]), int(buf[3])
    lp, beta, L = hyper(x, buf, grad)
    gbeta = np.zeros(p)
    gL = np.zeros((q, q))
    per = np.empty(G)
    lp += loglik_groups(beta, L, buf, gbeta, gL, per)
    hyper_backward(x, buf, L, gbeta, gL, grad)
    return lp


# --------------------------------------------------------------------------- #
# node count
# --------------------------------------------------------------------------- #
def loglik_at(packed: CollapsedPacked, x: np.ndarray) -> float:
    """The summed AGQ log likelihood (no prior) at parameter vector ``x``."""
    g = np.empty(packed.ndim)
    _, beta, L = hyper(np.asarray(x, float), packed.buf, g)
    return float(loglik_groups(beta, L, packed.buf, np.zeros(packed.p),
                               np.zeros((packed.q, packed.q)), np.empty(packed.G)))


def mode_and_spread(packed: CollapsedPacked, n: int = 3, seed: int = 0, logp=None
                    ) -> tuple[np.ndarray, list[np.ndarray]]:
    """The posterior mode of the collapsed model (L-BFGS on its exact gradient) and ``n``
    points from the Laplace approximation there: where the node count is checked (the
    sampler's jittered start points can lie far outside the posterior). ``logp``: the
    density (default :func:`logp_grad`; :mod:`.glmm_sufficient` passes its own)."""
    from scipy.optimize import minimize

    logp = logp_grad if logp is None else logp

    def f(x):
        g = np.empty(packed.ndim)
        v = logp(x, packed.buf, g)
        if not np.isfinite(v):
            return 1e300, np.zeros(packed.ndim)
        return -v, -g

    res = minimize(f, packed.init, jac=True, method="BFGS", options={"maxiter": 500, "gtol": 1e-6})
    cov = np.asarray(res.hess_inv)
    cov = 0.5 * (cov + cov.T) + 1e-9 * np.eye(packed.ndim)
    rng = np.random.default_rng(seed)
    try:
        pts = list(rng.multivariate_normal(res.x, cov, size=n))
    except Exception:  # noqa: BLE001 - a degenerate inverse Hessian: the mode alone
        pts = []
    return res.x, [res.x] + pts


def choose_nodes(design: Design, ps: PriorSet, family, points, tol: float = NODE_TOL,
                 k_min: int = 3, k_max: int = 41, form=None) -> tuple[CollapsedPacked, dict]:
    """The smallest odd K whose summed log likelihood differs from that with 2K + 1 nodes
    by less than ``tol`` at every point of ``points`` (parameter vectors); returns the
    packed model with that K and a record of the check. ``form``: the density's module
    (default this one; :mod:`.glmm_sufficient` for its pseudo-rows), read for ``pack`` and
    ``loglik_at``."""
    points = [np.asarray(x, float) for x in points]
    cache: dict[int, CollapsedPacked] = {}
    pack_k = pack if form is None else form.pack
    loglik_at_ = loglik_at if form is None else form.loglik_at

    def packed(K):
        if K not in cache:
            cache[K] = pack_k(design, ps, family, K)
        return cache[K]

    K = k_min
    while True:
        errs = [abs(loglik_at_(packed(K), x) - loglik_at_(packed(2 * K + 1), x)) for x in points]
        if max(errs) < tol or K >= k_max:
            return packed(K), {"K": K, "nodes": int(packed(K).buf[8]),
                               "max_error_vs_doubled": float(max(errs)),
                               "points": len(points), "tol": tol}
        K += 2


# --------------------------------------------------------------------------- #
# sampling: nutpie on the collapsed density, then exact effect draws
# --------------------------------------------------------------------------- #
def constrained(packed: CollapsedPacked, ps: PriorSet, design: Design, z: np.ndarray) -> dict:
    """``fixed`` (S, p), and per factor ``sd`` (S, q_f) and ``corr`` (S, q_f, q_f) from the
    unconstrained draws ``z`` (S, ndim)."""
    from ..spec.priors import intercept_shift
    from .numba_density import cpc_corr

    p = packed.p
    raw = z[:, :p]
    beta = raw.copy()
    if ps.centered:
        i = design.fixed_names.index("Intercept")
        beta[:, i] = raw[:, i] - intercept_shift(raw, ps.x_mean, i)
    sds, q, k = [], packed.q, p
    corr = np.broadcast_to(np.eye(q), (z.shape[0], q, q)).copy()
    o = 0
    for qt, correlated in packed.terms:
        sds.append(np.exp(z[:, k:k + qt]))
        nc = n_corr(qt) if correlated else 0
        if correlated:
            corr[:, o:o + qt, o:o + qt] = cpc_corr(z[:, k + qt:k + qt + nc], qt)
        k += qt + nc
        o += qt
    return {"fixed": beta, "sd": np.concatenate(sds, axis=1), "corr": corr}


def posterior_dataset(design: Design, ps: PriorSet, packed: CollapsedPacked, z: np.ndarray,
                      b: np.ndarray):
    """The full PyMC model's variables, dims and coords: ``fixed``, ``sd__f``, ``corr__f``
    (correlated factors) and ``r__f`` from draws ``z`` (C, D, ndim) and effects ``b``."""
    import xarray as xr

    from ..spec import variable_names as naming
    from .hyperparameters import coords as model_coords

    C, D = z.shape[:2]
    v = constrained(packed, ps, design, z.reshape(C * D, -1))
    f = design.groups[0].factor
    td, tdb, ld = naming.term_dim(f), naming.term_dim_b(f), naming.level_dim(f)
    out = {naming.FIXED: (("chain", "draw", naming.FIXED_DIM), v["fixed"].reshape(C, D, -1)),
           naming.sd_var(f): (("chain", "draw", td), v["sd"].reshape(C, D, -1))}
    if any(g.correlated for g in design.groups):
        out[naming.corr_var(f)] = (("chain", "draw", td, tdb), v["corr"].reshape(C, D, packed.q, packed.q))
    out[naming.effect_var(f)] = (("chain", "draw", ld, td), b.reshape(C, D, packed.G, packed.q))
    cs = model_coords(design)
    used = {d for dims, _ in out.values() for d in dims} - {"chain", "draw"}
    return xr.Dataset(out, coords={"chain": np.arange(C), "draw": np.arange(D),
                                   **{k: cs[k] for k in used}})


def _density_form(design: Design, ps: PriorSet, family):
    """The collapsed density's implementation: per group sufficient statistics
    (:mod:`.glmm_sufficient`, Poisson random intercepts: O(cells) per gradient) where the
    model has them (each group's integral from a table exact to 1e-12 where it covers the
    group, else the same quadrature sum), else this module's row-by-row form."""
    from types import SimpleNamespace

    from . import glmm_sufficient as gs
    from .glmm_effect_draws import draw_effects as draw_rows

    single = dict(factor=design.groups[0].factor, centered={}, initial_point=None,
                  posterior=functools.partial(posterior_dataset, design, ps))
    if len({g.factor for g in design.groups}) > 1:
        from . import glmm_collapsed_crossed as cc
        from .glmm_nuts import _initial_point
        from .parametrization import choose_centering

        cent = choose_centering(design, family, nested=True)
        f = cc.integrated_factor(design)
        cent = {k: v for k, v in cent.items() if k != f}
        return SimpleNamespace(name="crossed", pack=functools.partial(cc.pack, centered=cent),
                               loglik_at=cc.loglik_at, logp_grad=cc.logp_grad,
                               draw_effects=cc.draw_effects, cells=design.n, reduce_s=0.0,
                               factor=f, centered=cent,
                               initial_point=lambda packed: _initial_point(packed, design, ps),
                               posterior=functools.partial(cc.posterior_dataset, design, ps))
    if gs.unsupported_reason(design, ps, family) is None:
        form = gs.density_form(design)
        vars(form).update(single)
        return form
    return SimpleNamespace(name="rows", pack=pack, loglik_at=loglik_at, logp_grad=logp_grad,
                           draw_effects=draw_rows, cells=design.n, reduce_s=0.0, **single)


def run_collapsed(design: Design, ps: PriorSet, family, cfg) -> tuple:
    """Sample the quadrature-collapsed model with nutpie and attach exact effect draws
    (several factors: the one with most levels integrated out, :mod:`.glmm_collapsed_crossed`).

    Returns ``(SampleOutput, effect generator, extra)`` as
    :func:`bayes_hlm.backends.marginal.run_marginal` does. The node count is chosen at the
    start points and checked again at posterior draws (``extra["quadrature"]``).
    """
    from ..progress import phase
    from . import affine_density
    from .keyed_noise import seed_key
    from .marginal import effects_seed
    from .numba_nuts import _compiled_model, callback_phase, callbacks
    from .sampling import SampleOutput, run_nutpie, with_posterior

    why = unsupported_reason(design, ps, family)
    if why is not None:
        from ..errors import BayesHLMError

        raise BayesHLMError(f"the quadrature-collapsed engine does not cover this model: {why}; "
                            "use method='full'")
    t0 = time.perf_counter()
    form = _density_form(design, ps, family)
    what, cold = callback_phase(form.logp_grad, "quadrature-collapsed density", "")
    with phase(what if cold else "choosing the quadrature nodes", long=cold):
        cbs = callbacks(form.logp_grad)
        base = form.pack(design, ps, family, 3)
        _, points = mode_and_spread(base, seed=cfg.seed or 0, logp=form.logp_grad)
        packed, record = choose_nodes(design, ps, family, points, form=form)
        # a small near-Gaussian posterior: NUTS in whitened coordinates (affine_density)
        white = (affine_density.whiten(form.logp_grad, packed.buf, points[0])
                 if getattr(form, "whiten", False) else None)
        if white is not None:
            compiled = _compiled_model(affine_density.pack(white, packed),
                                       cbs=callbacks(affine_density.kernel(form.logp_grad)))
            compiled = replace(compiled, initial_point_func=affine_density.initial_point(white, packed.init))
        else:
            compiled = _compiled_model(packed, cbs=cbs)
        if form.initial_point is not None:  # sampled effects: the full model's jittered start
            compiled = replace(compiled, initial_point_func=form.initial_point(packed))
    t1 = time.perf_counter()
    tree, interrupted = run_nutpie(compiled, cfg,
                                   settings=white.nuts_settings() if white is not None else None)
    t2 = time.perf_counter()
    z = np.asarray(tree["posterior"]["_x"].values)
    if white is not None:  # the draws in the model's coordinates (exact)
        z = white.to_model(z)
    C, D = z.shape[:2]
    flat = z.reshape(C * D, -1)
    # the node count again at posterior draws (the start points may lie far from them)
    pick = flat[np.linspace(0, C * D - 1, 4).astype(int)]
    finer = form.pack(design, ps, family, 2 * packed.K + 1)
    post_err = max(abs(form.loglik_at(packed, x) - form.loglik_at(finer, x)) for x in pick)
    record["max_error_at_draws"] = float(post_err)
    if post_err > 10 * NODE_TOL:
        import warnings

        warnings.warn(f"the quadrature's log-likelihood error at posterior draws is {post_err:.2g} "
                      f"with K = {packed.K} nodes per dimension (tolerance {NODE_TOL:g} at the "
                      "mode); the collapsed posterior may differ slightly from the full "
                      "model's: compare with method='full'", RuntimeWarning, stacklevel=2)
    key = seed_key(effects_seed(cfg.seed))
    with phase("drawing group effects exactly (ratio of uniforms)"):
        b, acc = form.draw_effects(packed, flat, key, np.arange(C * D))
    t3 = time.perf_counter()
    out = SampleOutput(tree=with_posterior(tree, form.posterior(packed, z, b),
                                           "bayes_hlm.glmm_collapsed"),
                       compile_s=t1 - t0, sample_s=t2 - t1,
                       interrupted=interrupted, extra={"centered": dict(form.centered)})
    factor = form.factor

    def generate(f: str, idx, groups=None):
        if f != factor:
            raise KeyError(f"{f!r} is not a marginalised factor")
        idx = np.asarray(idx)
        eff = form.draw_effects(packed, flat[idx], key, idx)[0]
        return eff if groups is None else eff[:, np.asarray(groups)]

    extra = {"structure": "crossed" if form.name == "crossed" else "single",
             "marginalised": [factor], "lazy_effects": [],
             "effects_s": t3 - t2, "effects_seed": effects_seed(cfg.seed), "gibbs_refreshed": [],
             "sampler": "numba", "centered": dict(form.centered), "quadrature": record,
             "form": form.name,
             "rows": design.n, "cells": form.cells, "reduce_s": form.reduce_s,
             "effects_acceptance": acc,
             "whitened": white is not None,
             "nuts_maxdepth": (white.nuts_settings().get("maxdepth") if white is not None else None),
             "gaussian_deviation": white.deviation if white is not None else None}
    return out, generate, extra
