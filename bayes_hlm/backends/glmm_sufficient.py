"""Poisson random intercepts collapsed through per-group sufficient statistics.

For ``y ~ x + (1 | g)`` with a Poisson log-link likelihood, group ``g``'s effect ``b``
enters its rows' log likelihood only through two numbers::

    Σ_i (y_i (η_i + b) − e^{η_i + b}) = Σ_i y_i η_i + Y_g b − e^b S_g,
    Y_g = Σ_i y_i,   S_g(β) = Σ_i e^{η_i} = Σ_c m_gc e^{x_cᵀβ + offset_c},

where ``c`` runs over the distinct ``(x, offset)`` patterns (a handful with categorical
predictors) and ``m_gc`` counts group g's rows of pattern c. Up to the term linear in the
``η_i``, that is the log likelihood of *one* Poisson pseudo-row per group with response
``Y_g`` and offset ``s_g = log S_g(β)``: the group's integral over ``b`` is that of one row,
and one gradient costs ``O(cells + groups)`` instead of ``O(rows × nodes)``::

    log p = prior + Σ_c Y_c η_c + Σ_g [F_g(Y_g, s_g, σ) − Y_g s_g],   Y_c = Σ_{i∈c} y_i

(``F_g``: the pseudo-row's log integral). Gradient: ``∂/∂β = Σ_c Y_c x_c + Σ_g
(∂F_g/∂s_g − Y_g) Σ_c m_gc e_c x_c / S_g``.

Each ``F_g`` is the exact integral where the Poisson–lognormal table covers the group
(:mod:`bayes_hlm.statistics.poisson_lognormal`: explicit mode through Lambert's W, the
non-Gaussian remainder ``log J(ρ², τ)`` from a precomputed 2-D Chebyshev series, error
< 1e-12 per group; ``ρ = σ / C ≤ 0.3``, i.e. all but small-count groups) and the K-node
quadrature of the pseudo-row elsewhere (``table=False``: every group, the row form's
density exactly). A table term costs a few ``log`` instead of the quadrature's ~2K ``exp``
(10M rows / 100k groups: 8 vs 27 ms per gradient, CPU time at load ~12).

The effects are drawn exactly from each pseudo-row's conditional by ratio of uniforms
(:func:`draw_pseudo_row`: explicit mode, box from one tangent per side of the concave log
density, keyed uniforms), float32 above :data:`FLOAT32_DRAWS` values.

The buffer is :func:`.glmm_collapsed.pack`'s for the pseudo-rows (priors, node rule,
``Y_g``), followed by the sufficient section: the patterns, the per-group cells (CSR, and
a dense groups x patterns table when at least half full) and the table's coefficients.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numba
import numpy as np

from .._large_arrays import empty as large_empty
from ..spec.design import Design
from ..spec.priors import PriorSet
from ..spec.row_keys import firsts, row_key
from ..statistics import poisson_lognormal as pl
from ..statistics.fast_math import FASTMATH, fast_exp, log_array
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
    pat = getattr(design, "row_pattern", None)
    if pat is not None and len(pat) == N:  # the spec's distinct fixed rows: no hashing
        key = np.asarray(pat, dtype=np.int64)
        first = firsts(key)
        P = len(first)
    else:
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


#: largest cell count of the dense uint16 table
_MAX_DENSE_COUNT = 65535
#: effect draws above this many values are returned as float32 (2 x 10⁸ draws: 0.8 GB, not 1.6)
FLOAT32_DRAWS = 50_000_000


def density_form(design: Design, table: bool = True):
    """The sufficient form as :func:`.glmm_collapsed.run_collapsed` reads it: ``pack`` (the
    statistics reduced once: every node count packs the same; the last pack reused for the same
    arguments until the effects are drawn), ``loglik_at``, ``logp_grad``,
    ``draw_effects`` (float32 above :data:`FLOAT32_DRAWS` values), ``cells``, ``reduce_s``.
    ``table``: the Poisson–lognormal table where it covers a group (:func:`pack`)."""
    import time
    from types import SimpleNamespace

    t0 = time.perf_counter()
    stats = reduce_rows(design)
    G = design.groups[0].n_levels

    last: dict = {}  # the last pack and its arguments

    def pack_once(design_, ps, family, K=7):
        """:func:`pack` of these statistics; the last one again for the same arguments (a fit
        packs K = 3 for its start and again in the node check, 2K + 1 in the check and again
        at posterior draws: 2 packs instead of 4, each a copy of the ~40 MB section)."""
        args = last.get("args")
        if args is not None and args[:3] == (id(design_), id(ps), id(family)) and args[3] == K:
            return last["packed"]
        packed = pack(design_, ps, family, K, stats=stats, table=table)
        last.update(args=(id(design_), id(ps), id(family), K), keep=(design_, ps, family),
                    packed=packed)
        return packed

    def draws(packed, xs, key, draw_index):
        last.clear()  # packing is over: the result keeps no extra pack alive
        big = np.shape(xs)[0] * G > FLOAT32_DRAWS
        return draw_effects(packed, xs, key, draw_index, dtype=np.float32 if big else np.float64)

    # whiten: NUTS in whitened coordinates (backends/affine_density.py; 2 chains x (1000 +
    # 1000): 12-15% fewer gradients, 1.6-1.8x the ESS per gradient, 10M rows to 20k rows)
    return SimpleNamespace(name="sufficient", pack=pack_once,
                           loglik_at=loglik_at, logp_grad=logp_grad, draw_effects=draws,
                           cells=len(stats["m"]), reduce_s=time.perf_counter() - t0, whiten=True)


def pack(design: Design, ps: PriorSet, family, K: int = 7, stats: dict | None = None,
         table: bool = False) -> gc.CollapsedPacked:
    """:func:`.glmm_collapsed.pack` of the pseudo-rows (one per group, response ``Y_g``)
    followed by the sufficient section; the buffer's last slot holds where it starts.

    ``table``: each group's integral from the Poisson–lognormal table
    (:mod:`bayes_hlm.statistics.poisson_lognormal`, exact to 1e-12) where it covers the
    group, the K-node quadrature elsewhere; otherwise the quadrature for every group (the
    row form's density, pseudo-row by pseudo-row). The cells are stored as a dense
    (groups x patterns) table when at least half of it is filled, else as CSR."""
    st = reduce_rows(design) if stats is None else stats
    G, p = design.groups[0].n_levels, design.p
    g0 = design.groups[0]
    pseudo = replace(design, y=st["Y"], X=np.zeros((G, p)), trials=None, offset=None,
                     weights=None, row_pattern=None, groups=(replace(g0, codes=np.arange(G), Z=np.ones((G, 1))),))
    base = gc.pack(pseudo, ps, family, K)
    P = len(st["offp"])
    nc = len(st["m"])
    # dense: a (patterns x groups) uint16 count table, ~10x less to read per gradient than
    # the CSR cells, where it is at least half full and every count fits
    dense = nc >= 0.5 * G * P and (nc == 0 or st["m"].max() <= _MAX_DENSE_COUNT)
    if dense:
        gid = np.repeat(np.arange(G), np.diff(st["indptr"]))
        Mt = np.zeros(P * G + (-P * G) % 4, dtype=np.uint16)
        Mt[st["pat"] * G + gid] = st["m"]
        Md = Mt.view(np.float64)
    else:
        Md = np.zeros(0)
    c, cx, A, nodes = pl.table()
    rows = np.bincount(np.repeat(np.arange(G), np.diff(st["indptr"])), weights=st["m"], minlength=G)
    lnn = np.log(np.maximum(rows, 1.0))
    lnn_c, y_c = count_extremes(lnn, np.asarray(st["Y"], dtype=float))
    tail = [np.array([float(P), float(nc), float(dense), float(table)]), st["Xp"].ravel(),
            st["offp"], st["Yc"], st["indptr"].view(np.float64), st["pat"].view(np.float64),
            st["m"], Md, c.ravel(), cx.ravel(), A.ravel(), nodes, lnn,
            lnn_c, y_c, np.array([float(len(y_c))])]
    start = len(base.buf)
    buf = np.concatenate([base.buf] + tail + [np.array([float(start)])])
    buf[0] = len(buf)
    return replace(base, buf=buf, order=np.arange(G))


def count_extremes(lnn: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(log n_g, Y_g)`` of the groups that can attain ``min`` or ``max`` over all groups of
    ``log n_g + s Y_g`` for some ``s ≥ 0`` (:func:`table_tau_range`'s bounds, every
    gradient): per distinct ``Y`` the smallest and largest ``log n``, or per distinct
    ``log n`` (balanced designs: one) the smallest and largest ``Y``, whichever are fewer.
    The same extremes as over every group (a linear function's extremes over points that
    share one coordinate lie at that set's ends), from hundreds of values instead of 10⁵."""
    def ends(key, val):
        order = np.lexsort((val, key))
        k = key[order]
        new = np.r_[True, k[1:] != k[:-1]] if len(k) else np.zeros(0, bool)
        return order[new | np.r_[new[1:], True][:len(k)]]

    a, b = ends(Y, lnn), ends(lnn, Y)
    idx = a if len(a) <= len(b) else b
    return np.ascontiguousarray(lnn[idx]), np.ascontiguousarray(Y[idx], dtype=float)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def count_candidates(buf):
    """:func:`count_extremes`'s ``(log n, Y)``, stored before the buffer's last slot (after
    everything :func:`unpack_sufficient` reads, as ``[log n (K), Y (K), K, start]``)."""
    K = int(buf[buf.shape[0] - 2])
    o = buf.shape[0] - 2 - 2 * K
    return buf[o:o + K], buf[o + K:o + 2 * K]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def unpack_sufficient(buf, p, G):
    """Views of the sufficient section: ``(Xp, offp, Yc, indptr, pat, m, dense, Md, table,
    c, cx, A, nodes, lnn)`` (``Md``: the dense (P, G) uint16 cell counts when ``dense``;
    ``lnn``: log of each group's row count)."""
    o = int(buf[buf.shape[0] - 1])
    P, nc, dense, table = int(buf[o]), int(buf[o + 1]), buf[o + 2] > 0.5, buf[o + 3] > 0.5
    o += 4
    Xp = buf[o:o + P * p].reshape((P, p))
    o += P * p
    offp, Yc = buf[o:o + P], buf[o + P:o + 2 * P]
    o += 2 * P
    indptr = buf[o:o + G + 1].view(np.int64)
    o += G + 1
    pat = buf[o:o + nc].view(np.int64)
    o += nc
    m = buf[o:o + nc]
    o += nc
    nd = (P * G + (-P * G) % 4) // 4 if dense else 0
    Md = buf[o:o + nd].view(np.uint16)[:P * G if dense else 0].reshape((P if dense else 0, G))
    o += nd
    nx, nt, nl = pl._NX, pl._NT, pl.LINE_N
    c = buf[o:o + nx * nt].reshape((nx, nt))
    o += nx * nt
    cx = buf[o:o + nx * nt].reshape((nx, nt))
    o += nx * nt
    A = buf[o:o + nl * nl].reshape((nl, nl))
    o += nl * nl
    return Xp, offp, Yc, indptr, pat, m, dense, Md, table, c, cx, A, buf[o:o + nl], buf[o + nl:o + nl + G]


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def group_rates(dense, Md, indptr, pat, m, e, S, a=0):
    """``S_g = Σ_c m_gc e_c`` of groups ``a, …, a + len(S) − 1`` into ``S`` (one vectorised
    loop per pattern over the dense table, else the CSR cells)."""
    n = S.shape[0]
    if dense:
        for i in range(n):
            S[i] = 0.0
        for c in range(e.shape[0]):
            ec = e[c]
            row = Md[c, a:a + n]
            for i in range(n):
                S[i] += row[i] * ec
    else:
        for i in range(n):
            s = 0.0
            for k in range(indptr[a + i], indptr[a + i + 1]):
                s += m[k] * e[pat[k]]
            S[i] = s


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def group_rates_backward(dense, Md, indptr, pat, m, w, ebar, a=0):
    """``ebar_c += Σ_g w_g m_gc`` over groups ``a, …, a + len(w) − 1`` (the backward of
    :func:`group_rates`)."""
    n = w.shape[0]
    if dense:
        for c in range(ebar.shape[0]):
            row = Md[c, a:a + n]
            acc = 0.0
            for i in range(n):
                acc += row[i] * w[i]
            ebar[c] += acc
    else:
        for i in range(n):
            for k in range(indptr[a + i], indptr[a + i + 1]):
                ebar[pat[k]] += w[i] * m[k]


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
def _cheb_deriv(cq, n, scale, out):
    """Coefficients of the derivative of the Chebyshev series ``cq[:n]`` times ``scale``."""
    if n < 2:
        out[0] = 0.0
        return 1
    d2 = 0.0
    d1 = 0.0
    for k in range(n - 2, -1, -1):  # d_k = d_{k+2} + 2 (k + 1) c_{k+1}
        dk = d2 + 2.0 * (k + 1) * cq[k + 1]
        out[k] = dk
        d2, d1 = d1, dk
    out[0] *= 0.5
    for k in range(n - 1):
        out[k] *= scale
    return n - 1


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _cheb1(cq, n, t):
    b1 = 0.0
    b2 = 0.0
    for k in range(n - 1, 0, -1):
        b1, b2 = 2.0 * t * b1 - b2 + cq[k], b1
    return cq[0] + t * b1 - b2


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def table_term(Y, W, l1w, sig, q, qp, qx):
    """``(F̃, ∂F̃/∂log S, ∂F̃/∂σ)`` of one pseudo-row from Lambert's ``W`` (``l1w`` =
    ``log(1 + W)``) and the table line's ``Q``, ``dQ/dτ`` (along the line) and ``∂Q/∂x`` at its
    ``τ`` (:mod:`bayes_hlm.statistics.poisson_lognormal`); every derivative in closed form
    (the mode's by the envelope theorem: ``b̂`` maximises the integrand)."""
    sig2 = sig * sig
    isig2 = 1.0 / sig2
    tau = 1.0 / (1.0 + W)
    mu = W * isig2
    u = sig2 * Y - W  # the mode b̂
    logj = sig2 * tau * q
    dj_tau = sig2 * (q + tau * qp)
    dj_sig = 2.0 * sig * tau * (q + sig2 * tau * qx / (pl.RHO_MAX * pl.RHO_MAX))
    F = Y * u - mu - 0.5 * u * u * isig2 - 0.5 * l1w + logj
    D = -0.5 * tau - tau * tau * dj_tau  # ∂/∂W through τ = 1 / (1 + W)
    dW = W * tau  # dW/dℓ
    return (F, -mu + D * dW,
            u * u * isig2 / sig + dj_sig + D * dW * 2.0 * (1.0 / sig + sig * Y))


#: groups per block of the vectorised passes (the block's scratch stays in L1/L2)
_CHUNK = 1024


def _w_start_coefficients(degree: int = 12) -> tuple:
    """Monomial coefficients in ``t = (2ℓ − 13.5) / 10.5`` of a degree-12 Chebyshev fit of
    ``W(e^ℓ)`` on ``ℓ ∈ [1.5, 12]`` (relative error 2e-8: one Halley step from it is exact to
    an ulp, where the asymptotic start needs two)."""
    from numpy.polynomial import chebyshev as cheb

    n = 200
    nodes = np.cos(np.pi * (np.arange(n) + 0.5) / n)
    vals = [pl.lambert_w_log(v) for v in 6.75 + 5.25 * nodes]
    return tuple(float(a) for a in cheb.cheb2poly(cheb.chebfit(nodes, vals, degree)))


_WA = _w_start_coefficients()
_W_MID, _W_HALF = 6.75, 5.25


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def _w_start(ell):
    """:data:`_WA`'s polynomial at ``ℓ`` (meant for ``1.5 ≤ ℓ < 12``)."""
    t = (ell - _W_MID) / _W_HALF
    acc = _WA[12]
    for k in range(11, -1, -1):
        acc = acc * t + _WA[k]
    return acc


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def lambert_w_block(ell, W, tmp, tmp2):
    """:func:`~bayes_hlm.statistics.poisson_lognormal.lambert_w_log` of every entry in
    vectorised loops (:func:`log_array` for the logs): one Halley step from the asymptotic
    start ``ℓ − L + L/ℓ + …`` (``L = log ℓ``) for ``ℓ ≥ 12``, from :func:`_w_start`'s
    polynomial for ``1.5 ≤ ℓ < 12`` (no ``log ℓ`` where a block has no ``ℓ ≥ 12``), and the
    scalar function for ``ℓ < 1.5`` (few groups: small counts). Within an ulp or two of the
    scalar function (tested)."""
    big = False
    for i in range(ell.shape[0]):
        big |= ell[i] >= 12.0
    if big:  # log ℓ for the asymptotic start (meaningless where ℓ ≤ 0: redone below)
        log_array(ell, tmp2, tmp)
        for i in range(ell.shape[0]):
            el = max(ell[i], 1.5)
            L = tmp2[i]
            il = 1.0 / el
            wa = el - L + L * il * (1.0 + il * (0.5 * (L - 2.0) + il * (L * (2.0 * L - 9.0) + 6.0) / 6.0))
            W[i] = wa if el >= 12.0 else _w_start(el)
    else:
        for i in range(ell.shape[0]):
            W[i] = _w_start(max(ell[i], 1.5))
    log_array(W, tmp2, tmp)
    for i in range(ell.shape[0]):
        w = W[i]
        f = w + tmp2[i] - ell[i]
        W[i] = w - 2.0 * f * w * (w + 1.0) / (2.0 * (w + 1.0) * (w + 1.0) + f)
    for i in range(ell.shape[0]):
        if ell[i] < 1.5:
            W[i] = pl.lambert_w_log(ell[i])


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _clenshaw_block(cq, n, t, out, b2):
    """``out_i = Σ_k cq_k T_k(t_i)`` for a block (k outer, i inner: a vectorised loop)."""
    for i in range(t.shape[0]):
        out[i] = 0.0
        b2[i] = 0.0
    for k in range(n - 1, 0, -1):
        ck = cq[k]
        for i in range(t.shape[0]):
            b = 2.0 * t[i] * out[i] - b2[i] + ck
            b2[i] = out[i]
            out[i] = b
    for i in range(t.shape[0]):
        out[i] = cq[0] + t[i] * out[i] - b2[i]


#: :func:`_clenshaw3_block`'s fixed number of Chebyshev terms
_CLEN = 16
#: :func:`_clenshaw3_short`'s (the line series at 10M rows / 100k groups: 10-11 terms;
#: 12 instead of 16 terms: 0.155 -> 0.10 ms per 100k groups)
_CLEN_SHORT = 12


def _clenshaw3_terms(c1, c2, c3, t, o1, o2, o3):
    """Three series of at most ``_NTERMS`` terms (zero beyond their lengths: the leading
    zeros leave Clenshaw's recurrence at 0: a larger count gives the same sum up to rounding,
    the compiler fusing the first steps differently) at
    every ``t`` of a block, each element's three recurrences in registers (a constant trip
    count: unrolled, the loop over the block vectorised; 2.3x faster than three
    :func:`_clenshaw_block` passes). A template: :func:`_clenshaw3_variant` binds
    ``_NTERMS``."""
    for i in range(t.shape[0]):
        x = t[i]
        x2 = 2.0 * x
        a1 = b1 = a2 = b2 = a3 = b3 = 0.0
        for k in range(_NTERMS - 1, 0, -1):  # noqa: F821 - bound per variant
            a1, b1 = x2 * a1 - b1 + c1[k], a1
            a2, b2 = x2 * a2 - b2 + c2[k], a2
            a3, b3 = x2 * a3 - b3 + c3[k], a3
        o1[i] = c1[0] + x * a1 - b1
        o2[i] = c2[0] + x * a2 - b2
        o3[i] = c3[0] + x * a3 - b3


def _clenshaw3_variant(nterms: int):
    """:func:`_clenshaw3_terms` compiled with ``_NTERMS = nterms`` (a compile-time
    constant: the unrolled trip count), cached on disk under its own name."""
    import types

    f = _clenshaw3_terms
    name = f"_clenshaw3_{nterms}"
    g = types.FunctionType(f.__code__.replace(co_name=name), {**f.__globals__, "_NTERMS": nterms},
                           name)
    g.__qualname__ = name
    g.__module__ = f.__module__
    g.__doc__ = f.__doc__
    return numba.njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")(g)


#: the three line series at once, up to :data:`_CLEN` / :data:`_CLEN_SHORT` terms
_clenshaw3_block = _clenshaw3_variant(_CLEN)
_clenshaw3_short = _clenshaw3_variant(_CLEN_SHORT)


#: rates at or below this (zero, subnormal) take libm's log
_TINY = 2.3e-308


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _ell_block(S, Y, lsig2, sig2, ell, tmp):
    """``ℓ = log(σ² S) + σ² Y`` of a block; returns how many rates need libm's log."""
    log_array(S, ell, tmp)
    bad = 0
    for i in range(S.shape[0]):
        ell[i] += lsig2 + sig2 * Y[i]
        bad += 0 if S[i] > _TINY else 1
    return bad


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _tau_block(W, tcut, L1w, tau, tmp, tmp2):
    """``log(1 + W)``, ``τ = 1 / (1 + W)`` of a block; returns the ``τ`` range of the table
    groups (``τ ≤ tcut``) and how many groups lie outside."""
    for i in range(W.shape[0]):
        tmp2[i] = 1.0 + W[i]
        tau[i] = 1.0 / tmp2[i]
    log_array(tmp2, L1w, tmp)
    lo, hi, out = np.inf, -np.inf, 0
    for i in range(W.shape[0]):
        inside = tau[i] <= tcut
        lo = min(lo, tau[i] if inside else np.inf)
        hi = max(hi, tau[i] if inside else -np.inf)
        out += 0 if inside else 1
    return lo, hi, out


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _affine(x, mid, inv_half, out):
    for i in range(x.shape[0]):
        out[i] = (x[i] - mid) * inv_half


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _finish_block(F, dl, ds, S, wS):
    """``(Σ F, Σ ∂F/∂σ)`` of a block; ``wS = ∂F/∂S``."""
    tot = 0.0
    gs_ = 0.0
    for i in range(F.shape[0]):
        tot += F[i]
        gs_ += ds[i]
        wS[i] = dl[i] / S[i]
    return tot, gs_


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _table_block(Y, W, L1w, sig, q, qp, qx, F, dl, ds):
    for i in range(Y.shape[0]):
        F[i], dl[i], ds[i] = table_term(Y[i], W[i], L1w[i], sig, q[i], qp[i], qx[i])


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _block_ell(dense, Md, indptr, pat, m, e, y, a, lsig2, sig2, S, ell, tmp):
    """Rates ``S`` and ``ℓ = log(σ² S) + σ² Y`` of the block of groups from ``a``."""
    n = S.shape[0]
    group_rates(dense, Md, indptr, pat, m, e, S, a)
    if _ell_block(S, y[a:a + n], lsig2, sig2, ell, tmp):
        for i in range(n):  # zero or subnormal rates: libm's log (−inf at 0)
            if not S[i] > _TINY:
                ell[i] = lsig2 + math.log(S[i]) + sig2 * y[a + i]


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _count_range(lnn, y, sig2):
    """``(min, max)`` over the groups of ``log n_g + σ² Y_g``."""
    lo, hi = np.inf, -np.inf
    for g in range(y.shape[0]):
        v = lnn[g] + sig2 * y[g]
        lo = min(lo, v)
        hi = max(hi, v)
    return lo, hi


@numba.njit(cache=True, nogil=True, error_model="numpy")
def table_tau_range(e, lnn, y, sig2, lsig2, tcut):
    """An interval ``[τ_lo, τ_hi]`` holding every table group's ``τ = 1 / (1 + W(ℓ_g))``
    without the groups' rates: ``n_g min_c e_c ≤ S_g ≤ n_g max_c e_c`` bounds each
    ``ℓ_g = log(σ² S_g) + σ² Y_g`` and ``τ`` decreases with ``ℓ``; the table groups have
    ``τ ≤ tcut`` (``lnn``, ``y``: every group's, or :func:`count_extremes`'s candidates:
    the same bounds). (Only the line series' interval: a little wider than the groups' own
    range, it keeps as many terms here; a group a rounding error outside lies where the
    polynomial is the same.) ``τ_lo > τ_hi``: no table groups; NaN: an overflowing rate."""
    emin, emax = np.inf, -np.inf
    for c in range(e.shape[0]):
        emin = min(emin, e[c])
        emax = max(emax, e[c])
    lo, hi = _count_range(lnn, y, sig2)
    ell = np.array([lsig2 + math.log(emax) + hi, lsig2 + math.log(emin) + lo])
    if not ell[0] < np.inf:
        return np.nan, np.nan
    W, t1, t2 = np.empty(2), np.empty(2), np.empty(2)
    lambert_w_block(ell, W, t1, t2)
    return 1.0 / (1.0 + W[0]), min(tcut, 1.0 / (1.0 + W[1]))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def loglik_groups(beta, L, buf, gbeta, gL, per_group):
    """The likelihood part of the log posterior (module docstring); adds ∂/∂β to ``gbeta``
    and ∂/∂L to ``gL``; writes each group's ``F_g − Y_g s_g`` to ``per_group`` (unless it is
    empty).

    With the table: one pass over blocks of groups, with block-sized scratch only (arrays
    of all groups would be fresh pages at every gradient: ~0.7 µs a page fault, 40% of the
    gradient at 100k groups): the table groups' ``τ`` interval from bounds of the rates
    (:func:`table_tau_range` over :func:`count_extremes`'s few groups) sets the table's line series; then per
    block the rates ``S_g``, ``ℓ``, Lambert's ``W``, ``log(1 + W)``, the three line series,
    each group's term and the block's share of the backward pass (the K-node quadrature
    redoing the groups the table does not cover). Without the table: the
    quadrature group by group."""
    (p, q, G, N, T, i_int, code, nmax, term_at, mu, sd, xm, indptr0, y, nn, off, X, Z, t,
     lw) = gc.unpack(buf)
    Xp, offp, Yc, indptr, pat, m, dense, Md, table, c, cx, A, nodes, lnn = unpack_sufficient(buf, p, G)
    P = Xp.shape[0]
    Mn = t.shape[0]
    keep = per_group.shape[0] > 0
    eta = np.empty(P)
    e = np.empty(P)
    pattern_exp(beta, Xp, offp, eta, e)
    ebar = np.zeros(P)  # ∂/∂e_c of the group terms
    tot = 0.0
    for c_ in range(P):
        tot += Yc[c_] * eta[c_]
    sig = L[0, 0]
    sig2 = sig * sig
    lsig2 = math.log(sig2)
    mu_w = np.empty(Mn)
    pi_w = np.empty(Mn)
    gsig = 0.0
    ch = min(_CHUNK, G)
    Sb, ell, W, L1w, tau = np.empty(ch), np.empty(ch), np.empty(ch), np.empty(ch), np.empty(ch)
    t1, t2, q1, q2, q3 = np.empty(ch), np.empty(ch), np.empty(ch), np.empty(ch), np.empty(ch)
    F, dl, ds, wS = np.empty(ch), np.empty(ch), np.empty(ch), np.empty(ch)
    if not table:
        for a in range(0, G, ch):
            n = min(a + ch, G) - a
            group_rates(dense, Md, indptr, pat, m, e, Sb[:n], a)
            for i in range(n):
                g = a + i
                S = Sb[i]
                s = math.log(S)
                Fg, Fs, Fsig = pseudo_row_term(y[g], s, sig, t, lw, mu_w, pi_w)
                Fg -= y[g] * s
                if keep:
                    per_group[g] = Fg
                tot += Fg
                gsig += Fsig
                wS[i] = (Fs - y[g]) / S
            group_rates_backward(dense, Md, indptr, pat, m, wS[:n], ebar, a)
    else:
        # table groups: ρ² = σ² τ ≤ RHO_MAX², i.e. τ ≤ tcut
        tcut = pl.RHO_MAX * pl.RHO_MAX / sig2
        lnn_c, y_c = count_candidates(buf)  # the groups that bound log n + σ² Y
        tlo, thi = table_tau_range(e, lnn_c, y_c, sig2, lsig2, tcut)
        if tlo != tlo:  # an overflowing (or NaN) rate: no density here
            return -np.inf
        nl = nodes.shape[0]
        cq, cqp, cqx = np.zeros(nl), np.zeros(nl), np.zeros(nl)
        nq = nqp = nqx = 1
        half, mid = 1.0, 0.0
        if tlo <= thi + 1e-12:  # some table groups may lie in it
            if thi - tlo < 1e-12:
                tlo, thi = max(min(tlo, thi) - 1e-9, 0.0), min(max(tlo, thi) + 1e-9, 1.0)
            nq = pl.line_series(c, A, nodes, sig2, tlo, thi, cq)
            nqx = pl.line_series(cx, A, nodes, sig2, tlo, thi, cqx)
            half, mid = 0.5 * (thi - tlo), 0.5 * (thi + tlo)
            nqp = _cheb_deriv(cq, nq, 1.0 / half, cqp)
        short = max(nq, nqp, nqx) <= _CLEN
        shorter = max(nq, nqp, nqx) <= _CLEN_SHORT
        if short:  # zeros beyond each series' length (line_series wrote all LINE_N)
            cq[nq:] = 0.0
            cqp[nqp:] = 0.0
            cqx[nqx:] = 0.0
        for a in range(0, G, ch):
            n = min(a + ch, G) - a
            Sn, en, Wn = Sb[:n], ell[:n], W[:n]
            _block_ell(dense, Md, indptr, pat, m, e, y, a, lsig2, sig2, Sn, en, t1[:n])
            lambert_w_block(en, Wn, t1[:n], t2[:n])
            _, _, nout = _tau_block(Wn, tcut, L1w[:n], tau[:n], t1[:n], t2[:n])
            tt = en  # ℓ is spent
            _affine(tau[:n], mid, 1.0 / half, tt)
            if shorter:
                _clenshaw3_short(cq, cqp, cqx, tt, q1[:n], q2[:n], q3[:n])
            elif short:
                _clenshaw3_block(cq, cqp, cqx, tt, q1[:n], q2[:n], q3[:n])
            else:
                _clenshaw_block(cq, nq, tt, q1[:n], t1[:n])
                _clenshaw_block(cqp, nqp, tt, q2[:n], t1[:n])
                _clenshaw_block(cqx, nqx, tt, q3[:n], t1[:n])
            Fb, dlb, dsb = F[:n], dl[:n], ds[:n]
            _table_block(y[a:a + n], Wn, L1w[:n], sig, q1[:n], q2[:n], q3[:n], Fb, dlb, dsb)
            if nout:
                for i in range(n):
                    g = a + i
                    if not tau[i] <= tcut:  # outside the table: the quadrature
                        s = math.log(Sn[i])
                        Fg, Fs, Fsig = pseudo_row_term(y[g], s, sig, t, lw, mu_w, pi_w)
                        Fb[i], dlb[i], dsb[i] = Fg - y[g] * s, Fs - y[g], Fsig
            f_, s_ = _finish_block(Fb, dlb, dsb, Sn, wS[:n])
            tot += f_
            gsig += s_
            if keep:
                per_group[a:a + n] = Fb
            group_rates_backward(dense, Md, indptr, pat, m, wS[:n], ebar, a)
    gL[0, 0] += gsig
    for c_ in range(P):
        wc_ = Yc[c_] + ebar[c_] * e[c_]  # ∂/∂η_c
        for j in range(p):
            gbeta[j] += wc_ * Xp[c_, j]
    return tot


@numba.njit(cache=True, nogil=True, error_model="numpy")
def logp_grad(x, buf, grad):
    """Log posterior (up to a constant) at ``x``; writes its gradient to ``grad``."""
    p, q, G = int(buf[1]), int(buf[2]), int(buf[3])
    lp, beta, L = gc.hyper(x, buf, grad)
    gbeta = np.zeros(p)
    gL = np.zeros((q, q))
    lp += loglik_groups(beta, L, buf, gbeta, gL, np.empty(0))  # no per-group terms kept
    gc.hyper_backward(x, buf, L, gbeta, gL, grad)
    return lp


def loglik_at(packed: gc.CollapsedPacked, x: np.ndarray) -> float:
    """The likelihood part of the log posterior at parameter vector ``x`` (no prior)."""
    g = np.empty(packed.ndim)
    _, beta, L = gc.hyper(np.asarray(x, float), packed.buf, g)
    return float(loglik_groups(beta, L, packed.buf, np.zeros(packed.p), np.zeros((1, 1)),
                               np.empty(packed.G)))


_SQRT2 = math.sqrt(2.0)


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def _log_fw(w, mu, rho, C2):
    """``log f`` and its derivative of a pseudo-row's whitened conditional
    ``f(w) = exp(h(v̂ + w/C) − h(v̂)) = exp(−μ̂ (e^{ρw} − 1 − ρw) − w² / (2C²))`` (branch-free
    ``fast_exp``: the same value in the vectorised block and the scalar retries)."""
    y = rho * w
    em = fast_exp(y) - 1.0
    return -mu * (em - y) - 0.5 * w * w / C2, -mu * rho * em - w / C2


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def _side_bound(mu, rho, C2, sign):
    """An upper bound of ``max_{sign·w > 0} |w| f(w)^{1/2}`` (the ratio-of-uniforms box)
    from one tangent of the concave ``log f`` at ``sign·√2`` (where a Gaussian's maximum
    lies): ``log f ≤ min(0, l + a (|w| − √2))`` on that side, whose bound is explicit."""
    l1, g1 = _log_fw(sign * _SQRT2, mu, rho, C2)
    a = min(sign * g1, -1e-300)  # the slope away from the mode: negative (strictly concave)
    ws = _SQRT2 - l1 / a  # where the tangent crosses 0 (≥ 0: the tangent lies above log f(0) = 0)
    wm = -2.0 / a  # the maximiser of |w| exp((l + a (|w| − √2)) / 2)
    B = max(ws, wm * fast_exp(0.5 * l1 - 1.0 - 0.5 * a * _SQRT2)) if wm > ws else ws
    return B * (1.0 + _MARGIN)


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def _conditional(Y, W, sig):
    """``(μ̂, ρ, C², b̂)`` of a pseudo-row's conditional from Lambert's ``W``."""
    sig2 = sig * sig
    C2 = 1.0 + W
    return W / sig2, sig / math.sqrt(C2), C2, sig2 * Y - W


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _retry(mu, rho, C2, lo, hi, hg, k0):
    """Ratio-of-uniforms proposals ``k0, k0 + 1, …`` (keyed) until one is accepted:
    ``(w, proposals)``; ``w`` NaN if none was within _MAX_TRIES."""
    for k in range(k0, _MAX_TRIES):
        hk = _mix(hg, k)
        u = _uniform(_mix(hk, 0))
        w = (lo + (hi - lo) * _uniform(_mix(hk, 1))) / u
        if 2.0 * math.log(u) <= _log_fw(w, mu, rho, C2)[0]:
            return w, k + 1
    return np.nan, _MAX_TRIES


@numba.njit(cache=True, nogil=True, error_model="numpy")
def draw_pseudo_row(Y, S, sig, hg):
    """One exact draw of the effect ``b`` of a pseudo-row (response ``Y``, rate ``S e^b``,
    ``b ~ N(0, σ²)``) by ratio of uniforms with keyed uniforms (as
    :func:`.glmm_effect_draws.draw_group`): the mode is explicit (Lambert's W,
    :mod:`bayes_hlm.statistics.poisson_lognormal`), the box comes from one tangent per side
    (:func:`_side_bound`: a valid bound, about as tight as the exact one for these
    near-Gaussian conditionals), so a draw costs a few ``log``/``exp`` instead of Newton
    searches. Returns ``(b, proposals)`` (``b`` NaN if none was accepted). :func:`_draw`
    does the same in vectorised blocks (each round: the proposals of every still rejected
    group of a block at once; the same draws up to the rounding of b̂ + ρw)."""
    sig2 = sig * sig
    W = pl.lambert_w_log(math.log(sig2 * S) + sig2 * Y)
    mu, rho, C2, bhat = _conditional(Y, W, sig)
    lo = -_side_bound(mu, rho, C2, -1.0)
    hi = _side_bound(mu, rho, C2, 1.0)
    w, k = _retry(mu, rho, C2, lo, hi, hg, 0)
    return bhat + rho * w, k


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _boxes(Y, W, sig, hd, g0, lo, hi, hg):
    """Per group ``i`` of a block (groups ``g0 + i``): its ratio-of-uniforms box ``lo, hi``
    and key ``hg``."""
    for i in range(Y.shape[0]):
        mu, rho, C2, _ = _conditional(Y[i], W[i], sig)
        lo[i] = -_side_bound(mu, rho, C2, -1.0)
        hi[i] = _side_bound(mu, rho, C2, 1.0)
        hg[i] = _mix(hd, g0 + i)


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _proposals(k, r, lo, hi, hg, u, w):
    """Keyed proposal ``k`` ``(u, w)`` of the first ``r`` entries."""
    for j in range(r):
        hk = _mix(hg[j], k)
        uj = _uniform(_mix(hk, 0))
        u[j] = uj
        w[j] = (lo[j] + (hi[j] - lo[j]) * _uniform(_mix(hk, 1))) / uj


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _accept_first(sig, logu, w, Y, W, b, ok, idx):
    """The first round: ``b_i`` where group ``i``'s proposal is accepted, else NaN; the
    rejected groups' indices, in order, to the front of ``idx``; returns how many."""
    for i in range(Y.shape[0]):  # vectorised
        mu, rho, C2, bhat = _conditional(Y[i], W[i], sig)
        ok[i] = 2.0 * logu[i] <= _log_fw(w[i], mu, rho, C2)[0]
        b[i] = bhat + rho * w[i] if ok[i] else np.nan
    m = 0
    for i in range(Y.shape[0]):  # branch-free compaction
        idx[m] = i
        m += 0 if ok[i] else 1
    return m


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _gather(r, idx, Y, W, lo, hi, hg, Yc, Wc, loc, hic, hgc):
    """The still rejected groups' ``Y, W``, box and key, compacted (``idx[:r]``)."""
    for j in range(r):
        i = idx[j]
        Yc[j], Wc[j], loc[j], hic[j], hgc[j] = Y[i], W[i], lo[i], hi[i], hg[i]


@numba.njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _accept_compact(r, sig, logu, w, Y, W, lo, hi, hg, idx, b, ok, bv):
    """A later round over the ``r`` compacted entries: ``b[idx[j]]`` set where accepted, the
    rejected entries moved, in order and with every field, to the front (branch-free);
    returns how many are left."""
    for j in range(r):  # the log density at every proposal and its effect (vectorised)
        mu, rho, C2, bhat = _conditional(Y[j], W[j], sig)
        ok[j] = 2.0 * logu[j] <= _log_fw(w[j], mu, rho, C2)[0]
        bv[j] = bhat + rho * w[j]
    m = 0
    for j in range(r):
        i = idx[j]
        b[i] = bv[j] if ok[j] else b[i]
        idx[m], Y[m], W[m], lo[m], hi[m], hg[m] = i, Y[j], W[j], lo[j], hi[j], hg[j]
        m += 0 if ok[j] else 1
    return m


@numba.njit(cache=True, nogil=True, error_model="numpy", parallel=True)
def _draw(xs, draw_index, key, buf, out, tries, failed):
    (p, q, G, N, T, i_int, code, nmax, term_at, mu, sd, xm, indptr0, y, nn, off, X, Z, t,
     lw) = gc.unpack(buf)
    Xp, offp, Yc, indptr, pat, m, dense, Md, table, c, cx, A, nodes, lnn = unpack_sufficient(buf, p, G)
    P = Xp.shape[0]
    base = _mix(np.uint64(key), 0)
    ch = min(_CHUNK, G)
    for s in numba.prange(xs.shape[0]):
        grad = np.empty(xs.shape[1])
        _, beta, L = gc.hyper(xs[s], buf, grad)
        sig = L[0, 0]
        sig2 = sig * sig
        lsig2 = math.log(sig2)
        eta = np.empty(P)
        e = np.empty(P)
        pattern_exp(beta, Xp, offp, eta, e)
        hd = _mix(base, draw_index[s])
        Sb, ell, W, t1, t2 = np.empty(ch), np.empty(ch), np.empty(ch), np.empty(ch), np.empty(ch)
        lo, hi, u, w, b, bv = (np.empty(ch), np.empty(ch), np.empty(ch), np.empty(ch),
                               np.empty(ch), np.empty(ch))
        Yr, Wr, lor, hir = np.empty(ch), np.empty(ch), np.empty(ch), np.empty(ch)
        hg, hgr = np.empty(ch, dtype=np.uint64), np.empty(ch, dtype=np.uint64)
        idx = np.empty(ch, dtype=np.int64)
        ok = np.empty(ch, dtype=np.bool_)
        ntry = 0
        for a in range(0, G, ch):  # block-sized scratch only (no fresh pages per draw)
            n = min(a + ch, G) - a
            Y = y[a:a + n]
            _block_ell(dense, Md, indptr, pat, m, e, y, a, lsig2, sig2, Sb[:n], ell[:n], t1[:n])
            lambert_w_block(ell[:n], W[:n], t1[:n], t2[:n])
            _boxes(Y, W[:n], sig, hd, a, lo, hi, hg)
            _proposals(0, n, lo, hi, hg, u, w)  # every group's first proposal at once
            log_array(u[:n], t1[:n], t2[:n])
            r = _accept_first(sig, t1[:n], w, Y, W, b, ok, idx)
            ntry += n
            _gather(r, idx, Y, W, lo, hi, hg, Yr, Wr, lor, hir, hgr)
            k = 1
            while r and k < _MAX_TRIES:  # proposal k of the still rejected groups at once
                _proposals(k, r, lor, hir, hgr, u, w)
                log_array(u[:r], t1[:r], t2[:r])
                ntry += r
                r = _accept_compact(r, sig, t1, w, Yr, Wr, lor, hir, hgr, idx, b, ok, bv)
                k += 1
            failed[s] += r  # groups left without a draw (NaN): never, short of a bug
            for i in range(n):
                out[s, a + i, 0] = b[i]
        tries[s] = ntry


def draw_effects(packed: gc.CollapsedPacked, xs: np.ndarray, key: int, draw_index,
                 dtype=np.float64) -> tuple[np.ndarray, float]:
    """Exact draws ``b`` (S, G, 1) of every group's intercept (:func:`draw_pseudo_row`; keyed
    randomness: draw ``i`` of group ``g`` depends on ``(key, draw_index[i], g)`` only).
    ``dtype``: of the returned draws (float32 halves the memory of 10⁸+ draws; each draw is
    computed in float64 and rounded once)."""
    from .glmm_effect_draws import check_draws

    xs = np.ascontiguousarray(xs, dtype=float)
    out = large_empty((xs.shape[0], packed.G, 1), dtype)  # written once: no THP stalls
    tries = np.zeros(xs.shape[0], dtype=np.int64)
    failed = np.zeros(xs.shape[0], dtype=np.int64)
    _draw(xs, np.ascontiguousarray(draw_index, dtype=np.int64), np.uint64(key), packed.buf, out,
          tries, failed)
    return check_draws(out, tries, failed=int(failed.sum()))  # counted: no NaN scan
