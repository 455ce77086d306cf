"""Exact draws of the group effects given hyperparameter draws (marginalised backend).

Given a posterior draw ``(β, Σ, σ [, b_other])`` the group effects are
Gaussian; one draw from that conditional per posterior draw yields draws from
the joint posterior ``p(β, Σ, σ, b | y)`` (``shared/notes/marginal-lmm.md``).
With the spherical parametrisation ``b_g = Λ w_g`` (``Λ = L/σ``)::

    w_g | · ~ N(M_g⁻¹ Λᵀ(c_g − B_g β), σ² M_g⁻¹),   M_g = I + ΛᵀA_gΛ = R_gR_gᵀ
    w_g = R_g⁻ᵀ (R_g⁻¹ d_g + σ ξ_g),                ξ_g ~ N(0, I)

Nested: the outer effect from its marginal (Schur complement ``S_a = R_S R_Sᵀ``),
then each inner effect given it: ``w_j = R_j⁻ᵀ(u_j − V_j w_parent + σ ξ_j)``.
Crossed: the marginalised factor given ``b_other`` (the other effects are
already posterior draws).

Everything is vectorised over groups and over a chunk of draws.  The noise of
draw ``s``, level ``g``, column ``j`` is a pure function of ``(seed, s, g, j)``
(:mod:`.keyed_noise`), so results do not depend on how draws are chunked or
which subset of levels is requested, and a subset costs only its own levels.

Output: ``{term_index: ndarray (S, G_sel, q_k)}`` keyed by the index of the
term in ``design.groups`` (merged blocks are split back into their terms),
absolute scale (the ``b`` of the model, not ``w``).
"""

from __future__ import annotations

import weakref
from dataclasses import replace
from typing import Iterator, Sequence

import numba
import numpy as np

from .group_kernel import cholesky_lower, cross_sandwich, sandwich
from .kernel_variants import pick, serial_twin
from .keyed_noise import keyed_normals, seed_key
from .marginal_loglik import (
    _flat_other,
    _np_resid_cross,
    block_factor,
    crossed_effective,
)
from .sufficient_stats import BaseStats, CrossedStats, FactorBlock, NestedStats, SingleStats

__all__ = [
    "conditional_mean",
    "draw_group_effects",
    "iter_group_effect_draws",
    "nested_inner_levels",
    "default_chunk_draws",
]


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #
def _entropy(seed) -> int | Sequence[int]:
    """Entropy for per-draw seed sequences; a Generator is consumed once."""
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**63))
    if isinstance(seed, np.random.SeedSequence):
        return seed.entropy
    if seed is None:
        raise ValueError("pass a seed (int, SeedSequence or Generator) for reproducible draws")
    return seed


def _noise(entropy, draw_index: np.ndarray, shapes: Sequence[tuple[int, int]], sel=None
           ) -> list[np.ndarray]:
    """Standard normals, one (S, G_sel, q) array per shape (stream), for the selected levels."""
    key = seed_key(entropy)
    return [keyed_normals(key, k, draw_index, np.arange(G) if sel is None else sel[k], q)
            for k, (G, q) in enumerate(shapes)]


def _split_terms(b: np.ndarray, block: FactorBlock) -> dict[int, np.ndarray]:
    """Split a merged block's effects (..., G, q) back into its terms."""
    return {k: b[..., off:off + qk] for k, off, qk in zip(block.term_index, block.offsets, block.q_sizes)}


def _lam(L_list, block, sigma) -> np.ndarray:
    return block_factor(L_list, block) / sigma[:, None, None]


def _as_draws(beta, sigma, L_list, b_other):
    """Promote single-draw parameters to a leading draw axis of length S."""
    beta = np.asarray(beta, dtype=np.float64)
    single = beta.ndim == 1
    if single:
        beta = beta[None]
        L_list = [None if L is None else np.asarray(L, dtype=np.float64)[None] for L in L_list]
        if b_other is not None:
            b_other = ([np.asarray(b)[None] for b in b_other] if isinstance(b_other, (list, tuple))
                       else np.asarray(b_other)[None])
    sigma = np.atleast_1d(np.asarray(sigma, dtype=np.float64))
    return beta, sigma, list(L_list), b_other, single


def nested_inner_levels(stats: NestedStats, groups) -> np.ndarray:
    """Inner levels (sorted) whose outer level is in ``groups``."""
    return np.flatnonzero(np.isin(stats.parent, np.asarray(groups)))


def _subset(stats, groups):
    """Statistics restricted to some levels of the (outer / marginalised) factor."""
    if groups is None:
        return stats, None
    groups = np.asarray(groups, dtype=np.int64)
    if isinstance(stats, NestedStats):
        inner = nested_inner_levels(stats, groups)
        pos = np.full(stats.c_out.shape[0], -1, dtype=np.int64)
        pos[groups] = np.arange(len(groups))
        sub = replace(
            stats, A_out=stats.A_out[groups], B_out=stats.B_out[groups], c_out=stats.c_out[groups],
            n_out=stats.n_out[groups], A_in=stats.A_in[inner], B_in=stats.B_in[inner], c_in=stats.c_in[inner],
            n_in=stats.n_in[inner], C=stats.C[inner], parent=pos[stats.parent[inner]],
        )
        return sub, (groups, inner)
    kw = dict(A=stats.A[groups], B=stats.B[groups], c=stats.c[groups], n_g=stats.n_g[groups])
    if isinstance(stats, CrossedStats):
        q = stats.c.shape[1]
        kw["BZo"] = stats.BZo[(groups[:, None] * q + np.arange(q)).ravel()]
    return replace(stats, **kw), (groups,)


#: per NestedStats: its inner levels sorted by outer level (see :func:`_inner_by_outer`)
_BY_OUTER: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _inner_by_outer(stats: NestedStats):
    """``(order, ptr, A_in, C, B_in, c_in)``: the inner levels sorted by outer level (those of
    outer level ``a`` at ``ptr[a]:ptr[a+1]``), contiguous. Computed once per statistics, not
    once per chunk of draws (at 14,000 inner levels and 3-draw chunks that was ~1 MB copied
    per chunk)."""
    got = _BY_OUTER.get(stats)
    if got is None:
        order = np.argsort(stats.parent, kind="stable")
        ptr = np.searchsorted(stats.parent[order], np.arange(stats.c_out.shape[0] + 1)).astype(np.int64)
        got = (order, ptr, *(np.ascontiguousarray(a[order]) for a in
                             (stats.A_in, stats.C, stats.B_in, stats.c_in)))
        _BY_OUTER[stats] = got
    return got


# --------------------------------------------------------------------------- #
# One chunk of draws
# --------------------------------------------------------------------------- #
def _chunk(stats, beta, sigma, L_list, b_other, xi):
    """Effects for one chunk of draws; ``xi=None`` gives the conditional mean.

    ``xi`` is a list of (S, G_sel, q) noise arrays matching the (subset) stats.
    """
    if isinstance(stats, NestedStats):
        Lo, Li = _lam(L_list, stats.outer, sigma), _lam(L_list, stats.inner, sigma)
        S = len(sigma)
        order, ptr, A_in, C_in, B_in, c_in = _inner_by_outer(stats)
        eo = _per_draw(_np_resid_cross(stats.B_out, stats.c_out, beta), S)
        ei = _per_draw(_np_resid_cross(B_in, c_in, beta), S)
        noisy = xi is not None
        draw = pick(_nested_draws, _nested_draws_serial, ei.size + eo.size)
        bo, bi = draw(
            eo, np.ascontiguousarray(stats.A_out), np.ascontiguousarray(Lo), ei, A_in, C_in,
            np.ascontiguousarray(Li), ptr, np.ascontiguousarray(sigma, dtype=np.float64),
            np.ascontiguousarray(xi[0]) if noisy else np.zeros((0, 0, 0)),
            np.ascontiguousarray(xi[1][:, order]) if noisy else np.zeros((0, 0, 0)))
        out_in = np.empty_like(bi)
        out_in[:, order] = bi
        out = _split_terms(bo, stats.outer)
        out.update(_split_terms(out_in, stats.inner))
        return out
    Lam = _lam(L_list, stats.block, sigma)
    if isinstance(stats, CrossedStats):
        _, e = crossed_effective(stats, beta, _flat_other(stats, b_other))
    else:
        e = _np_resid_cross(stats.B, stats.c, beta)
    e = _per_draw(e, len(sigma))
    noise = np.zeros((0, 0, 0)) if xi is None else np.ascontiguousarray(xi[0])
    draw = pick(_block_draws, _block_draws_serial, e.size)  # serial: a small first fit compiles less
    b = draw(e, np.ascontiguousarray(stats.A), np.ascontiguousarray(Lam),
             np.ascontiguousarray(sigma, dtype=np.float64), noise)
    return _split_terms(b, stats.block)


def _per_draw(x: np.ndarray, S: int) -> np.ndarray:
    """``x`` (G, q), or (S, G, q) already, as a C-contiguous writable (S, G, q) array: one
    kernel signature whatever S (a broadcast of one draw is a read-only view)."""
    shape = (S,) + x.shape[-2:]
    if x.shape == shape:
        return np.ascontiguousarray(x)
    return np.broadcast_to(x, shape).copy()


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _back_and_scale(R, L, z, w, out):
    """``w = R⁻ᵀ z`` (``w`` may be ``z``: in place), then ``out = Λ w`` (``L`` = Λ): the last
    step of every effect draw here, ``b = Λ R⁻ᵀ(…)``."""
    q = z.shape[0]
    for i in range(q - 1, -1, -1):
        t = z[i]
        for k in range(i + 1, q):
            t -= R[k, i] * w[k]
        w[i] = t / R[i, i]
    for i in range(q):
        t = 0.0
        for k in range(q):
            t += L[i, k] * w[k]
        out[i] = t


@numba.njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def _block_draws(e, A, Lam, sigma, xi):
    """``b = Λ R⁻ᵀ(R⁻¹Λᵀe + σξ)`` per draw and group, ``RRᵀ = I + ΛᵀAΛ`` (no noise: the mean).

    One fused loop (parallel over draws) instead of ~10 batched NumPy passes over
    (S, G, q, q) temporaries; ``q`` is small, so the per-group algebra stays in registers.
    """
    S, G, q = e.shape
    out = np.empty((S, G, q))
    noisy = xi.shape[0] > 0
    for s in numba.prange(S):
        L = Lam[s]
        AL = np.empty((q, q))
        M = np.empty((q, q))
        R = np.empty((q, q))
        z = np.empty(q)
        for g in range(G):
            sandwich(A, g, L, 1.0, AL, M)  # M = I + ΛᵀAΛ
            cholesky_lower(M, R)
            # z = R⁻¹ Λᵀ e (+ σ ξ)
            for i in range(q):
                t = 0.0
                for k in range(q):
                    t += L[k, i] * e[s, g, k]
                for k in range(i):
                    t -= R[i, k] * z[k]
                z[i] = t / R[i, i]
            if noisy:  # after the whole forward solve: the noise is not propagated through it
                for i in range(q):
                    z[i] += sigma[s] * xi[s, g, i]
            _back_and_scale(R, L, z, z, out[s, g])  # w = R⁻ᵀ z (in place), b = Λ w
    return out


_block_draws_serial = serial_twin(_block_draws, nogil=True, error_model="numpy")


@numba.njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def _nested_draws(eo, Ao, Lamo, ei, Ai, Cc, Lami, ptr, sigma, xio, xii):
    """Nested effects per draw (parallel over draws): the outer effect from its marginal, then
    each inner effect given it (module docstring), all in relative units ``b = Λ w``.

    Per outer level ``a`` and its inner levels ``j`` (``ptr[a]:ptr[a+1]``):
    ``R_jR_jᵀ = I + Λ_iᵀA_jΛ_i``, ``u_j = R_j⁻¹Λ_iᵀe_j``, ``V_j = R_j⁻¹Λ_iᵀC_jΛ_o``,
    ``R_SR_Sᵀ = I + Λ_oᵀA_aΛ_o − Σ_j V_jᵀV_j``, ``ẽ = Λ_oᵀe_a − Σ_j V_jᵀu_j``;
    ``w_o = R_S⁻ᵀ(R_S⁻¹ẽ + σξ_o)``, ``w_j = R_j⁻ᵀ(u_j − V_j w_o + σξ_j)``.
    No noise arrays (size 0): the conditional mean.
    """
    S, Go, qo = eo.shape
    Gi, qi = ei.shape[1], ei.shape[2]
    nmax = 0
    for a in range(Go):
        nmax = max(nmax, ptr[a + 1] - ptr[a])
    noisy = xio.shape[0] > 0
    bo = np.empty((S, Go, qo))
    bi = np.empty((S, Gi, qi))
    for s in numba.prange(S):
        Lo, Li = Lamo[s], Lami[s]
        ALo, Mo, RS = np.empty((qo, qo)), np.empty((qo, qo)), np.empty((qo, qo))
        ALi, Mi = np.empty((qi, qi)), np.empty((qi, qi))
        R = np.empty((nmax, qi, qi))
        V = np.empty((nmax, qi, qo))
        u = np.empty((nmax, qi))
        K = np.empty((qi, qo))
        CL = np.empty((qi, qo))
        et, zo, wo = np.empty(qo), np.empty(qo), np.empty(qo)
        t, zi = np.empty(qi), np.empty(qi)
        for a in range(Go):
            sandwich(Ao, a, Lo, 1.0, ALo, Mo)
            for i in range(qo):
                v = 0.0
                for k in range(qo):
                    v += Lo[k, i] * eo[s, a, k]
                et[i] = v
            j0, n = ptr[a], ptr[a + 1] - ptr[a]
            for jj in range(n):
                j = j0 + jj
                sandwich(Ai, j, Li, 1.0, ALi, Mi)
                cholesky_lower(Mi, R[jj])
                for i in range(qi):  # u_j = R_j⁻¹ Λ_iᵀ e_j
                    v = 0.0
                    for k in range(qi):
                        v += Li[k, i] * ei[s, j, k]
                    for k in range(i):
                        v -= R[jj, i, k] * u[jj, k]
                    u[jj, i] = v / R[jj, i, i]
                cross_sandwich(Cc, j, Li, Lo, CL, K)  # K = Λ_iᵀ C_j Λ_o
                for b in range(qo):  # V_j = R_j⁻¹ K
                    for i in range(qi):
                        v = K[i, b]
                        for k in range(i):
                            v -= R[jj, i, k] * V[jj, k, b]
                        V[jj, i, b] = v / R[jj, i, i]
                for b in range(qo):  # Schur complement and reduced right-hand side
                    for c in range(qo):
                        v = 0.0
                        for k in range(qi):
                            v += V[jj, k, b] * V[jj, k, c]
                        Mo[b, c] -= v
                    v = 0.0
                    for k in range(qi):
                        v += V[jj, k, b] * u[jj, k]
                    et[b] -= v
            cholesky_lower(Mo, RS)
            for i in range(qo):  # z = R_S⁻¹ ẽ (+ σ ξ)
                v = et[i]
                for k in range(i):
                    v -= RS[i, k] * zo[k]
                zo[i] = v / RS[i, i]
            if noisy:
                for i in range(qo):
                    zo[i] += sigma[s] * xio[s, a, i]
            _back_and_scale(RS, Lo, zo, wo, bo[s, a])  # w_o = R_S⁻ᵀ z, b_o = Λ_o w_o
            for jj in range(n):
                j = j0 + jj
                for i in range(qi):
                    v = u[jj, i]
                    for k in range(qo):
                        v -= V[jj, i, k] * wo[k]
                    if noisy:
                        v += sigma[s] * xii[s, j, i]
                    zi[i] = v
                _back_and_scale(R[jj], Li, zi, t, bi[s, j])  # w_j = R_j⁻ᵀ z_j, b_j = Λ_i w_j
    return bo, bi


_nested_draws_serial = serial_twin(_nested_draws, nogil=True, error_model="numpy")


def compile_cache_cold(structure: str | None = None) -> bool:
    """True when drawing group effects will first compile its Numba kernels (no usable
    cache entry on this machine; the serial twins a first, small fit uses): those of
    ``structure`` (a stats plan's: "nested" draws with the nested kernel, the others with the
    block kernel), or of every structure."""
    from ..progress import numba_cache_cold
    from .keyed_noise import compiled_kernels

    draws = {"nested": (_nested_draws_serial,), None: (_block_draws_serial, _nested_draws_serial)}
    return numba_cache_cold(*draws.get(structure, (_block_draws_serial,)), *compiled_kernels())


def compile_ahead(stats) -> None:
    """Compile (or load) the effect-draw kernels a fit on ``stats`` (one factor or nested)
    runs, by drawing its effects for one draw: the same argument types as the fit's draws,
    so those then only run. A fit does this while a child process compiles its
    density (:mod:`.background_compile`), instead of after sampling."""
    if type(stats) not in (SingleStats, NestedStats):  # crossed draws need the sampled effects
        return
    blocks = [stats.outer, stats.inner] if isinstance(stats, NestedStats) else [stats.block]
    L_list = [None] * (1 + max(k for b in blocks for k in b.term_index))
    for b in blocks:
        for k, qk in zip(b.term_index, b.q_sizes):
            L_list[k] = np.eye(qk)[None]
    draw_group_effects(stats, np.zeros((1, stats.p)), np.ones(1), L_list, seed=0)


def _noise_shapes(stats):
    if isinstance(stats, NestedStats):
        return [stats.c_out.shape, stats.c_in.shape]
    return [stats.c.shape]


def _check(stats):
    if not isinstance(stats, (SingleStats, NestedStats)):
        raise ValueError("no group effects to draw (structure 'none')")


def chunk_work(stats: BaseStats, draws: int) -> int:
    """An upper bound on the work (elements) a :func:`draw_group_effects` call of ``draws`` draws
    hands its kernels, by which they choose serial or parallel (:func:`.kernel_variants.pick`)."""
    return int(draws) * sum(int(np.prod(s)) for s in _noise_shapes(stats))


def default_chunk_draws(stats: BaseStats, budget_bytes: float = 2.5e8) -> int:
    """Draws per chunk keeping the (S, G, q, q) temporaries within ``budget_bytes``."""
    if isinstance(stats, NestedStats):
        # one fused kernel: per draw only e, noise and the effects (~5 arrays of G_i q_i + G_o q_o)
        size = stats.c_in.size + stats.c_out.size
        return int(max(1, budget_bytes // (8 * 5 * max(size, 1))))
    size = stats.A.size
    return int(max(1, budget_bytes // (8 * 8 * max(size, 1))))  # ~8 live temporaries


# --------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------- #
def conditional_mean(stats, beta, sigma, L_list, b_other=None, *, groups=None) -> dict[int, np.ndarray]:
    """Posterior mean of the group effects given hyperparameters.

    Parameters
    ----------
    stats : SingleStats, NestedStats or CrossedStats
    beta : array_like, shape (p,) or (S, p)
    sigma : float or array_like, shape (S,)
    L_list : sequence
        One factor per ``design.groups`` entry, (q_k, q_k) or (S, q_k, q_k)
        (a trailing (q_k,) vector is read as SDs); crossed ``other_terms``
        entries are unused.
    b_other : sequence of array_like, optional
        Crossed only: (G_k, q_k) or (S, G_k, q_k) per ``stats.other_terms``.
    groups : array_like of int, optional
        Levels of the single / marginalised / outer factor to return (nested:
        the inner levels returned are :func:`nested_inner_levels`).

    Returns
    -------
    dict
        ``{term_index: (G_sel, q_k)}`` for single-draw input, else (S, G_sel, q_k).
    """
    _check(stats)
    beta, sigma, L_list, b_other, single = _as_draws(beta, sigma, L_list, b_other)
    sub, _ = _subset(stats, groups)
    out = _chunk(sub, beta, sigma, L_list, b_other, None)
    return {k: v[0] for k, v in out.items()} if single else out


def draw_group_effects(
    stats, beta, sigma, L_list, b_other=None, *, seed, draw_index=None, groups=None
) -> dict[int, np.ndarray]:
    """One exact conditional draw of the group effects per hyperparameter draw.

    Parameters
    ----------
    stats, L_list, b_other, groups
        As in :func:`conditional_mean`, with a leading draw axis S.
    beta : ndarray, shape (S, p)
    sigma : ndarray, shape (S,)
    seed : int, SeedSequence or Generator
        Noise keyed by ``(seed, draw, level, column)`` (:mod:`.keyed_noise`); with
        an int or SeedSequence, draws are identical whatever the chunking and
        group subset.  A Generator is consumed once to derive the entropy.
    draw_index : array_like of int, shape (S,), optional
        Global indices of these draws (default ``0..S-1``): pass
        ``range(start, stop)`` when processing a chunk of a longer chain.

    Returns
    -------
    dict
        ``{term_index: ndarray (S, G_sel, q_k)}``.
    """
    _check(stats)
    beta, sigma, L_list, b_other, _ = _as_draws(beta, sigma, L_list, b_other)
    S = beta.shape[0]
    draw_index = np.arange(S) if draw_index is None else np.asarray(draw_index)
    sub, sel = _subset(stats, groups)
    xi = _noise(_entropy(seed), draw_index, _noise_shapes(stats), sel)
    return _chunk(sub, beta, np.broadcast_to(sigma, (S,)), L_list, b_other, xi)


def iter_group_effect_draws(
    stats, beta, sigma, L_list, b_other=None, *, seed, chunk_draws=None, groups=None
) -> Iterator[tuple[slice, dict[int, np.ndarray]]]:
    """Yield ``(draw_slice, effects)`` over chunks of the S hyperparameter draws.

    Same draws as one :func:`draw_group_effects` call on all S draws with an
    int/SeedSequence ``seed``, but only ``chunk_draws × G`` effects are held at
    once (e.g. 100k groups × 2000 draws streamed to disk).

    Parameters
    ----------
    beta : ndarray, shape (S, p); sigma : (S,); L_list : (S, q_k, q_k) each;
    b_other : (S, G_k, q_k) each (crossed).
    chunk_draws : int, optional
        Default :func:`default_chunk_draws`.
    """
    entropy = _entropy(seed)
    beta = np.asarray(beta, dtype=np.float64)
    S = beta.shape[0]
    step = chunk_draws or default_chunk_draws(stats)
    for a in range(0, S, step):
        sl = slice(a, min(a + step, S))
        bo = None
        if b_other is not None:
            bo = [np.asarray(b)[sl] for b in b_other] if isinstance(b_other, (list, tuple)) else np.asarray(b_other)[sl]
        Ls = [None if L is None else np.asarray(L)[sl] for L in L_list]
        yield sl, draw_group_effects(stats, beta[sl], np.asarray(sigma)[sl], Ls, bo, seed=entropy,
                                     draw_index=np.arange(sl.start, sl.stop), groups=groups)
