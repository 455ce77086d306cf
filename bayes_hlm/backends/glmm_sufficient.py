"""Poisson random intercepts collapsed through per-group sufficient statistics.

For ``y ~ x + (1 | g)`` with a Poisson log-link likelihood, group ``g``'s effect ``b``
enters its rows' log likelihood only through two numbers::

    Σ_i (y_i (η_i + b) − e^{η_i + b}) = Σ_i y_i η_i + Y_g b − e^b S_g,
    Y_g = Σ_i y_i,   S_g(β) = Σ_i e^{η_i} = Σ_c m_gc e^{x_cᵀβ + offset_c},

where ``c`` runs over the distinct ``(x, offset)`` patterns (a handful with categorical
predictors) and ``m_gc`` counts group g's rows of pattern c. Up to the term linear in the
``η_i``, that is the log likelihood of *one* Poisson pseudo-row per group with response
``Y_g`` and offset ``s_g = log S_g(β)``. The group's integral over ``b`` is then exactly the
quadrature-collapsed engine's (:mod:`.glmm_collapsed`) for that one row, evaluated by the
same code (:func:`~.glmm_collapsed._group_term`: adaptive Gauss–Hermite with its exact
gradient), and the effects are drawn exactly by :mod:`.glmm_effect_draws` from the same
pseudo-row. The log posterior is the same function of the parameters as the
row-by-row collapsed density (same nodes, same quadrature sum), but one gradient costs
``O(cells + groups × nodes)`` instead of ``O(rows × nodes)``::

    log p = prior + Σ_c Y_c η_c + Σ_g [F_g(Y_g, s_g, σ) − Y_g s_g],   Y_c = Σ_{i∈c} y_i

(``F_g``: the quadrature sum of the pseudo-row). Gradient: ``∂/∂β = Σ_c Y_c x_c + Σ_g
(∂F_g/∂s_g − Y_g) Σ_c m_gc e_c x_c / S_g``.

The buffer is :func:`.glmm_collapsed.pack`'s for the pseudo-rows (priors, node rule,
``Y_g``), followed by the sufficient section: the patterns and the per-group cells.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numba
import numpy as np

from ..spec.design import Design
from ..spec.priors import PriorSet
from ..spec.row_keys import firsts, row_key
from . import glmm_collapsed as gc
from .glmm_effect_draws import _MARGIN, _MAX_TRIES
from .glmm_kernels import kernel_code
from .keyed_noise import _mix, _uniform

#: kernel code of the Poisson log-link likelihood (glmm_kernels)
_POISSON = 3


def unsupported_reason(design: Design, ps: PriorSet, family) -> str | None:
    """``None`` when the model has the sufficient form (module docstring), else why not."""
    why = gc.unsupported_reason(design, ps, family)
    if why is not None:
        return why
    if kernel_code(family) != _POISSON:
        return f"family {family.name!r} (sufficient statistics: Poisson log link only)"
    if len(design.groups) != 1 or design.groups[0].terms != ("Intercept",):
        return "group terms other than one random intercept"
    if not np.all(design.groups[0].Z == 1.0):
        return "a random-intercept column that is not all ones"
    return None


def reduce_rows(design: Design, dense: bool | None = None) -> dict:
    """The sufficient statistics of ``design``'s rows (module docstring): patterns ``Xp``
    (P, p), ``offp`` (P,), ``Yc`` (P,), per group ``Y`` (G,) and its cells as CSR
    (``indptr`` (G+1,), ``pat`` and ``m`` (cells,)). ``dense``: count the cells in a
    (groups x patterns) table (default: when it is small) or hash them."""
    X = design.X
    N, G = design.n, design.groups[0].n_levels
    off = np.zeros(N) if design.offset is None else np.asarray(design.offset, float)
    key, P = row_key([X[:, j] for j in range(X.shape[1])] + [off], N)
    first = firsts(key)
    y = np.asarray(design.y, dtype=float)
    codes = np.asarray(design.groups[0].codes, dtype=np.int64)
    if dense is None:
        dense = G * P <= 8 * N + (1 << 20)
    if dense:  # a (groups x patterns) count table: O(N + G P), no sort
        m_dense = np.bincount(codes * P + key, minlength=G * P)
        nz = np.flatnonzero(m_dense)
        gid, pat, m = nz // P, nz % P, m_dense[nz].astype(float)
    else:  # many patterns (continuous x): the cells themselves
        cell, K = row_key([(codes, G), (key, P)], N)
        cf = firsts(cell)
        order = np.lexsort((key[cf], codes[cf]))
        gid, pat = codes[cf][order], key[cf][order]
        m = np.bincount(cell, minlength=K).astype(float)[order]
    indptr = np.zeros(G + 1, dtype=np.int64)
    np.cumsum(np.bincount(gid, minlength=G), out=indptr[1:])
    return {"Xp": np.ascontiguousarray(X[first], dtype=float), "offp": off[first],
            "Yc": np.bincount(key, weights=y, minlength=P),
            "Y": np.bincount(codes, weights=y, minlength=G),
            "indptr": indptr, "pat": pat.astype(np.int64), "m": m}


def pack(design: Design, ps: PriorSet, family, K: int = 7, stats: dict | None = None
         ) -> gc.CollapsedPacked:
    """:func:`.glmm_collapsed.pack` of the pseudo-rows (one per group, response ``Y_g``)
    followed by the sufficient section; the buffer's last slot holds where it starts."""
    st = reduce_rows(design) if stats is None else stats
    G, p = design.groups[0].n_levels, design.p
    g0 = design.groups[0]
    pseudo = replace(design, y=st["Y"], X=np.zeros((G, p)), trials=None, offset=None,
                     weights=None, groups=(replace(g0, codes=np.arange(G), Z=np.ones((G, 1))),))
    base = gc.pack(pseudo, ps, family, K)
    P = len(st["offp"])
    tail = [np.array([float(P), float(len(st["m"]))]), st["Xp"].ravel(), st["offp"], st["Yc"],
            st["indptr"].view(np.float64), st["pat"].view(np.float64), st["m"]]
    start = len(base.buf)
    buf = np.concatenate([base.buf] + tail + [np.array([float(start)])])
    buf[0] = len(buf)
    return replace(base, buf=buf, order=np.arange(G))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def unpack_sufficient(buf, p, G):
    """Views of the sufficient section: ``(Xp, offp, Yc, indptr, pat, m)``."""
    o = int(buf[buf.shape[0] - 1])
    P, nc = int(buf[o]), int(buf[o + 1])
    o += 2
    Xp = buf[o:o + P * p].reshape((P, p))
    o += P * p
    offp, Yc = buf[o:o + P], buf[o + P:o + 2 * P]
    o += 2 * P
    indptr = buf[o:o + G + 1].view(np.int64)
    o += G + 1
    pat = buf[o:o + nc].view(np.int64)
    o += nc
    return Xp, offp, Yc, indptr, pat, buf[o:o + nc]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def pattern_exp(beta, Xp, offp, eta, e):
    """``eta_c = x_cᵀβ + offset_c`` and ``e_c = exp(eta_c)`` of every pattern."""
    for c in range(Xp.shape[0]):
        s = offp[c]
        for j in range(Xp.shape[1]):
            s += Xp[c, j] * beta[j]
        eta[c] = s
        e[c] = np.exp(s)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def pseudo_mode(Y, s, sig):
    """``(v̂, μ̂)``: the mode of ``h(v) = Y η − e^η − v²/2`` (``η = s + σ v``) and ``e^η̂``."""
    # Newton on h'(v) = σ(Y − μ) − v (concave, decreasing) from a point right of the root:
    # h' ≤ 0 there, so the iterates decrease monotonically onto v̂ (no overshoot)
    v1 = (math.log(max(Y, 1.0)) - s) / sig
    v = min(sig * Y, max(v1, 0.0))
    for _ in range(200):
        muh = math.exp(s + sig * v)
        step = (sig * (Y - muh) - v) / (sig * sig * muh + 1.0)
        v += step
        if abs(step) < 1e-11 * (1.0 + abs(v)):
            break
    return v, math.exp(s + sig * v)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def pseudo_row_term(Y, s, sig, t, lw, mu, pi):
    """``(F, ∂F/∂s, ∂F/∂σ)`` of one Poisson pseudo-row (response ``Y``, offset ``s``,
    effect ``σ v``): :func:`.glmm_collapsed._group_term` for ``q = 1`` written out in
    scalars (no allocations; ``mu``, ``pi``: scratch of the node count). Same mode, nodes
    and quadrature sum; the gradient is the exact gradient of that sum::

        h(v) = Y η − e^η − v²/2,  η = s + σ v;   H = σ² μ̂ + 1 = C²;  v_m = v̂ + t_m / C
        F = log Σ_m exp(lw_m + h(v_m)) − log C

    through ``v̂`` by the implicit-function theorem and through ``C``.
    """
    v, muh = pseudo_mode(Y, s, sig)
    H = sig * sig * muh + 1.0
    Cc = math.sqrt(H)
    logC = 0.5 * math.log(H)
    Mn = t.shape[0]
    amax = -np.inf
    for m in range(Mn):
        vm = v + t[m, 0] / Cc
        em = s + sig * vm
        mu[m] = math.exp(em)
        hm = lw[m] + Y * em - mu[m] - 0.5 * vm * vm
        pi[m] = hm
        amax = max(amax, hm)
    S = 0.0
    for m in range(Mn):
        pi[m] = math.exp(pi[m] - amax)
        S += pi[m]
    F = amax + math.log(S) - logC
    A = 0.0
    B = 0.0
    Dv = 0.0
    Dt = 0.0
    for m in range(Mn):
        w = pi[m] / S
        vm = v + t[m, 0] / Cc
        r = Y - mu[m]
        hp = sig * r - vm
        A += w * r
        B += w * r * vm
        Dv += w * hp
        Dt += w * hp * t[m, 0] / Cc
    dv_s = -sig * muh / H
    dv_sig = ((Y - muh) - sig * muh * v) / H
    dlc_s = sig * sig * muh * (1.0 + sig * dv_s) / (2.0 * H)
    dlc_sig = (2.0 * sig * muh + sig * sig * muh * (v + sig * dv_sig)) / (2.0 * H)
    Fs = A + Dv * dv_s - (Dt + 1.0) * dlc_s
    Fsig = B + Dv * dv_sig - (Dt + 1.0) * dlc_sig
    return F, Fs, Fsig


@numba.njit(cache=True, nogil=True, error_model="numpy")
def loglik_groups(beta, L, buf, gbeta, gL, per_group):
    """The likelihood part of the log posterior (module docstring); adds ∂/∂β to ``gbeta``
    and ∂/∂L to ``gL``; writes each group's ``F_g − Y_g s_g`` to ``per_group``."""
    (p, q, G, N, T, i_int, code, nmax, term_at, mu, sd, xm, indptr0, y, nn, off, X, Z, t,
     lw) = gc.unpack(buf)
    Xp, offp, Yc, indptr, pat, m = unpack_sufficient(buf, p, G)
    P = Xp.shape[0]
    Mn = t.shape[0]
    eta = np.empty(P)
    e = np.empty(P)
    pattern_exp(beta, Xp, offp, eta, e)
    ebar = np.zeros(P)  # ∂/∂e_c of the group terms
    tot = 0.0
    for c in range(P):
        tot += Yc[c] * eta[c]
    sig = L[0, 0]
    mu_w = np.empty(Mn)
    pi_w = np.empty(Mn)
    for g in range(G):
        a, b = indptr[g], indptr[g + 1]
        S = 0.0
        for k in range(a, b):
            S += m[k] * e[pat[k]]
        s = np.log(S)
        F, Fs, Fsig = pseudo_row_term(y[g], s, sig, t, lw, mu_w, pi_w)
        gL[0, 0] += Fsig
        F -= y[g] * s
        per_group[g] = F
        tot += F
        w = (Fs - y[g]) / S  # ∂/∂S_g
        for k in range(a, b):
            ebar[pat[k]] += w * m[k]
    for c in range(P):
        wc = Yc[c] + ebar[c] * e[c]  # ∂/∂η_c
        for j in range(p):
            gbeta[j] += wc * Xp[c, j]
    return tot


@numba.njit(cache=True, nogil=True, error_model="numpy")
def logp_grad(x, buf, grad):
    """Log posterior (up to a constant) at ``x``; writes its gradient to ``grad``."""
    p, q, G = int(buf[1]), int(buf[2]), int(buf[3])
    lp, beta, L = gc.hyper(x, buf, grad)
    gbeta = np.zeros(p)
    gL = np.zeros((q, q))
    per = np.empty(G)
    lp += loglik_groups(beta, L, buf, gbeta, gL, per)
    gc.hyper_backward(x, buf, L, gbeta, gL, grad)
    return lp


def loglik_at(packed: gc.CollapsedPacked, x: np.ndarray) -> float:
    """The likelihood part of the log posterior at parameter vector ``x`` (no prior)."""
    g = np.empty(packed.ndim)
    _, beta, L = gc.hyper(np.asarray(x, float), packed.buf, g)
    return float(loglik_groups(beta, L, packed.buf, np.zeros(packed.p), np.zeros((1, 1)),
                               np.empty(packed.G)))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _log_f1(w, Y, sig, C, v, muh):
    """``(log f, d/dw, d²/dw²)`` of the whitened conditional ``f(w) = exp(h(v̂ + w/C) − h(v̂))``
    of one pseudo-row (differences taken exactly: ``e^η − e^η̂ = μ̂ expm1(σ w/C)``)."""
    d = w / C
    ex = math.exp(sig * d)
    lf = Y * sig * d - muh * math.expm1(sig * d) - d * (v + 0.5 * d)
    return lf, (sig * (Y - muh * ex) - (v + d)) / C, -(sig * sig * muh * ex + 1.0) / (C * C)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _box_bound1(Y, sig, C, v, muh, sign):
    """:func:`.glmm_effect_draws._box_bound` for ``q = 1`` in scalars: ``sign ·
    max_{sign w > 0} |w| f(w)^{1/2}`` (Newton on the concave log, the same stopping rule
    and margin)."""
    w = sign * math.sqrt(2.0)
    lf, g1, g2 = _log_f1(w, Y, sig, C, v, muh)
    phi = math.log(sign * w) + 0.5 * lf
    for _ in range(100):
        gp = 1.0 / w + 0.5 * g1
        A = 1.0 / (w * w) - 0.5 * g2
        step = gp / A
        if abs(step) < 1e-12 * (1.0 + abs(w)) or gp * step < 1e-14:
            break
        t = 1.0
        accepted = False
        for _ in range(60):
            wn = w + t * step
            if sign * wn > 0.0:
                lfn, g1n, g2n = _log_f1(wn, Y, sig, C, v, muh)
                pn = math.log(sign * wn) + 0.5 * lfn
                if pn >= phi - 1e-14 * (1.0 + abs(phi)):
                    accepted = True
                    break
            t *= 0.5
        if not accepted:
            break
        w, phi, g1, g2 = wn, pn, g1n, g2n
    return sign * math.exp(phi) * (1.0 + _MARGIN)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def draw_pseudo_row(Y, s, sig, hg):
    """One exact draw of the effect ``b`` of a pseudo-row: :func:`.glmm_effect_draws.draw_group`
    for ``q = 1`` in scalars (the same ratio-of-uniforms method, box and keyed uniforms, so
    the same draw). Returns ``(b, proposals)`` (``b`` NaN if none was accepted)."""
    v, muh = pseudo_mode(Y, s, sig)
    C = math.sqrt(sig * sig * muh + 1.0)
    lo = _box_bound1(Y, sig, C, v, muh, -1.0)
    hi = _box_bound1(Y, sig, C, v, muh, 1.0)
    for k in range(_MAX_TRIES):
        hk = _mix(hg, k)
        u = _uniform(_mix(hk, 0))
        w = (lo + (hi - lo) * _uniform(_mix(hk, 1))) / u
        if 2.0 * math.log(u) <= _log_f1(w, Y, sig, C, v, muh)[0]:
            return sig * (v + w / C), k + 1
    return np.nan, _MAX_TRIES


@numba.njit(cache=True, nogil=True, error_model="numpy", parallel=True)
def _draw(xs, draw_index, key, buf, out, tries):
    (p, q, G, N, T, i_int, code, nmax, term_at, mu, sd, xm, indptr0, y, nn, off, X, Z, t,
     lw) = gc.unpack(buf)
    Xp, offp, Yc, indptr, pat, m = unpack_sufficient(buf, p, G)
    P = Xp.shape[0]
    base = _mix(np.uint64(key), 0)
    for s in numba.prange(xs.shape[0]):
        grad = np.empty(xs.shape[1])
        _, beta, L = gc.hyper(xs[s], buf, grad)
        eta = np.empty(P)
        e = np.empty(P)
        pattern_exp(beta, Xp, offp, eta, e)
        hd = _mix(base, draw_index[s])
        ntry = 0
        for g in range(G):
            S = 0.0
            for k in range(indptr[g], indptr[g + 1]):
                S += m[k] * e[pat[k]]
            b, nt = draw_pseudo_row(y[g], math.log(S), L[0, 0], _mix(hd, g))
            out[s, g, 0] = b
            ntry += nt
        tries[s] = ntry


def draw_effects(packed: gc.CollapsedPacked, xs: np.ndarray, key: int, draw_index
                 ) -> tuple[np.ndarray, float]:
    """Exact draws ``b`` (S, G, 1) of every group's intercept, as
    :func:`.glmm_effect_draws.draw_effects` (same keyed randomness, same method)."""
    from .glmm_effect_draws import check_draws

    xs = np.ascontiguousarray(xs, dtype=float)
    out = np.empty((xs.shape[0], packed.G, 1))
    tries = np.zeros(xs.shape[0], dtype=np.int64)
    _draw(xs, np.ascontiguousarray(draw_index, dtype=np.int64), np.uint64(key), packed.buf, out,
          tries)
    return check_draws(out, tries)
