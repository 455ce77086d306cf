"""Marginal (group effects integrated out) log-likelihood of a Gaussian LMM.

Two implementations of the same formulas (``shared/notes/marginal-lmm.md``):

* :func:`marginal_loglik` -- NumPy float64 reference, vectorised over groups
  and over any leading batch axis of the parameters;
* :func:`marginal_loglik_pt` -- a PyTensor graph, differentiable in every
  parameter, for use in ``pm.Potential``; batched over groups without ``scan``.

Parameters follow the package convention: ``beta`` (p,), residual SD
``sigma``, and one lower-triangular ``L_k`` (q_k × q_k, absolute covariance
``Σ_k = L_k L_kᵀ``; a length-``q_k`` vector is read as a diagonal of SDs) per
``design.groups`` entry.  Terms sharing a factor are merged block-diagonally.
For crossed designs the likelihood is conditional on the sampled effects
``b_other`` (one (G_k, q_k) array per ``stats.other_terms`` entry), and the
``L_k`` of those terms are not used (pass ``None`` if convenient).

Per group (relative factor ``Λ = L/σ``)::

    M_g = I + Λᵀ A_g Λ = R_g R_gᵀ,  d_g = Λᵀ (c_g − B_g β),  u_g = R_g⁻¹ d_g
    log p = −½ [N log 2πσ² + Σ_g 2 Σ log diag R_g + (rᵀr − Σ_g ‖u_g‖²) / σ²]

Nested: per inner group as above plus ``V_j = R_j⁻¹ Λ_iᵀ C_j Λ_o``; per outer
group the Schur complement ``S_a = I + Λ_oᵀA_aΛ_o − Σ_{j∈a} V_jᵀV_j`` and
``ẽ_a = Λ_oᵀ(c_a − B_aβ) − Σ_{j∈a} V_jᵀu_j`` add ``log|S_a|`` and ``‖R_S⁻¹ẽ_a‖²``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .group_kernel import GroupMarginalTerm
from .sufficient_stats import (
    BaseStats,
    CrossedStats,
    FactorBlock,
    NestedStats,
)

__all__ = ["marginal_loglik", "marginal_loglik_pt", "block_factor", "UNROLL_MAX_Q"]

_LOG2PI = float(np.log(2.0 * np.pi))

#: Largest block size for which the PyTensor graph unrolls Cholesky/solves into
#: elementwise ops on (G,) vectors.  Unrolled graphs run on every backend (C,
#: Numba, JAX) and fuse into a few loops; beyond this the graph uses batched
#: ``pt.linalg.cholesky`` / ``solve_triangular`` (C and Numba only: PyTensor's
#: JAX backend cannot compile their batched gradient).
UNROLL_MAX_Q = 4


# =========================================================================== #
# NumPy reference
# =========================================================================== #
def _np_L(L, q: int) -> np.ndarray:
    L = np.asarray(L, dtype=np.float64)
    if L.shape[-1:] == (q,) and (L.ndim == 1 or L.shape[-2:] != (q, q)):
        L = L[..., None, :] * np.eye(q)  # vector of SDs -> diagonal factor
    return L


def block_factor(L_list: Sequence, block: FactorBlock) -> np.ndarray:
    """Block-diagonal Cholesky factor (..., q, q) of a merged block (NumPy).

    Leading batch axes of the ``L_k`` (e.g. draws) are kept.
    """
    parts = [_np_L(L_list[k], qk) for k, qk in zip(block.term_index, block.q_sizes)]
    lead = np.broadcast_shapes(*(P.shape[:-2] for P in parts))
    out = np.zeros(lead + (block.q, block.q))
    for P, off, qk in zip(parts, block.offsets, block.q_sizes):
        out[..., off:off + qk, off:off + qk] = P
    return out


def _T(a: np.ndarray) -> np.ndarray:
    return np.swapaxes(a, -1, -2)


# numpy's batched linalg costs ~0.5 µs per tiny matrix; with draws x groups in the
# millions (exact effect draws) the q <= 2 cases below are written out elementwise.
SMALL_Q = 2


def _np_M(Lam: np.ndarray, A: np.ndarray) -> np.ndarray:
    """``I + Λᵀ A_g Λ`` for all groups: (..., G, q, q)."""
    q = A.shape[-1]
    Lb = Lam[..., None, :, :]
    if q > SMALL_Q:
        return np.eye(q) + _T(Lb) @ A @ Lb
    AL = [[sum(A[..., i, j] * Lb[..., j, k] for j in range(q)) for k in range(q)] for i in range(q)]
    M = np.empty(np.broadcast_shapes(Lb.shape, A.shape))
    for i in range(q):
        for k in range(q):
            M[..., i, k] = (i == k) + sum(Lb[..., j, i] * AL[j][k] for j in range(q))
    return M


def np_cholesky(M: np.ndarray) -> np.ndarray:
    """Batched Cholesky factor (lower), closed form for q <= 2."""
    q = M.shape[-1]
    if q > SMALL_Q:
        return np.linalg.cholesky(M)
    R = np.zeros_like(M)
    R[..., 0, 0] = np.sqrt(M[..., 0, 0])
    if q == 2:
        R[..., 1, 0] = M[..., 1, 0] / R[..., 0, 0]
        R[..., 1, 1] = np.sqrt(M[..., 1, 1] - R[..., 1, 0] ** 2)
    return R


def _np_trisolve(R: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``R⁻¹ b`` for batched triangular ``R``; ``b`` (..., q) or (..., q, k)."""
    vec = b.ndim == R.ndim - 1
    q = R.shape[-1]
    if q <= SMALL_Q:
        bb = b[..., None] if vec else b
        if q == 1:
            x = bb / R[..., :1, :1]
        else:
            a, c, d, e = (R[..., i, j][..., None] for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)))
            det = a * e - c * d
            x = np.stack([(e * bb[..., 0, :] - c * bb[..., 1, :]) / det,
                          (a * bb[..., 1, :] - d * bb[..., 0, :]) / det], axis=-2)
        return x[..., 0] if vec else x
    x = np.linalg.solve(R, b[..., None] if vec else b)
    return x[..., 0] if vec else x


def _np_rr(stats: BaseStats, beta: np.ndarray) -> np.ndarray:
    """``rᵀr`` for the fixed part: ``yᵀy − 2βᵀXᵀy + βᵀXᵀXβ``."""
    return stats.yty - 2.0 * beta @ stats.Xty + np.einsum("...i,ij,...j->...", beta, stats.XtX, beta)


def _np_resid_cross(B: np.ndarray, c: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """``c_g − B_g β`` (..., G, q)."""
    return c - np.einsum("gqp,...p->...gq", B, beta)


def _np_d(e: np.ndarray, Lam: np.ndarray) -> np.ndarray:
    """``Λᵀ e_g`` (..., G, q) (as the row vector ``e_gᵀ Λ``)."""
    return np.einsum("...gk,...kj->...gj", e, Lam)


def _flat_other(stats: CrossedStats, b_other) -> np.ndarray:
    """Sampled effects as one ``b_o`` (..., m).

    A list/tuple holds one (..., G_k, q_k) array per ``stats.other_terms``
    entry; a bare array is taken as already flat (..., m).
    """
    if b_other is None:
        raise ValueError("crossed structure: b_other (one array per stats.other_terms) is required")
    if not isinstance(b_other, (list, tuple)):
        return np.asarray(b_other, dtype=np.float64)
    if len(b_other) != len(stats.other_terms):
        raise ValueError(f"b_other needs {len(stats.other_terms)} arrays (stats.other_terms)")
    parts = []
    for b, G, q in zip(b_other, stats.plan.other_levels, stats.plan.other_q):
        b = np.asarray(b, dtype=np.float64)
        parts.append(b.reshape(b.shape[:-2] + (G * q,)))
    lead = np.broadcast_shapes(*(b.shape[:-1] for b in parts))
    return np.concatenate([np.broadcast_to(b, lead + b.shape[-1:]) for b in parts], axis=-1)


def crossed_effective(stats: CrossedStats, beta, b_o):
    """``rᵀr`` (...) and ``e_g = c_g − B_gβ − (Z_gᵀZ_o) b_o`` (..., G, q) for crossed stats."""
    beta = np.asarray(beta, dtype=np.float64)
    rr = (
        _np_rr(stats, beta)
        - 2.0 * b_o @ stats.Zoty
        + 2.0 * np.einsum("...i,ij,...j->...", beta, stats.XtZo, b_o)
        + np.einsum("...j,...j->...", b_o, (stats.ZotZo @ b_o.reshape(-1, stats.m).T).T.reshape(b_o.shape))
    )
    G, q = stats.c.shape
    Bb = (stats.BZo @ b_o.reshape(-1, stats.m).T).T.reshape(b_o.shape[:-1] + (G, q))
    e = _np_resid_cross(stats.B, stats.c, beta) - Bb
    return rr, e


def _segment_sum(x: np.ndarray, seg: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Sums over the group axis ``axis`` of ``x`` within each segment ``seg[g]`` (``n`` segments)."""
    import scipy.sparse as sp

    G = len(seg)
    xm = np.moveaxis(x, axis, 0)
    ind = sp.csr_matrix((np.ones(G), (np.asarray(seg, dtype=np.int64), np.arange(G))), shape=(n, G))
    out = np.asarray(ind @ xm.reshape(G, int(np.prod(xm.shape[1:])))).reshape((n,) + xm.shape[1:])
    return np.moveaxis(out, 0, axis)


def nested_parts(stats: NestedStats, beta, Lo, Li):
    """Inner-stage factorisation for nested stats (NumPy, batched).

    Returns
    -------
    dict with ``Ri`` (..., G_i, q_i, q_i), ``ui`` (..., G_i, q_i) = R_i⁻¹ d_i,
    ``V`` (..., G_i, q_i, q_o) = R_i⁻¹ K_i, ``S`` (..., G_o, q_o, q_o) Schur
    complements, ``et`` (..., G_o, q_o) reduced outer right-hand sides, ``di``
    (..., G_i, q_i) and ``K`` (..., G_i, q_i, q_o) = Λ_iᵀ C Λ_o.
    """
    Go, qo = stats.c_out.shape
    Mi = _np_M(Li, stats.A_in)
    Ri = np_cholesky(Mi)
    di = _np_d(_np_resid_cross(stats.B_in, stats.c_in, beta), Li)
    # K_j = Λ_iᵀ C_j Λ_o in two einsums (a batched @ of tiny matrices is several times slower)
    K = np.einsum("...ki,...gkj->...gij", Li, np.einsum("gkl,...lj->...gkj", stats.C, Lo))
    ui = _np_trisolve(Ri, di)
    V = _np_trisolve(Ri, K)
    # Segment sums over inner groups of each outer group: one sparse product on the group axis
    P = _segment_sum(np.einsum("...iab,...iac->...ibc", V, V), stats.parent, Go, -3)
    h = _segment_sum(np.einsum("...iab,...ia->...ib", V, ui), stats.parent, Go, -2)
    S = _np_M(Lo, stats.A_out) - P
    et = _np_d(_np_resid_cross(stats.B_out, stats.c_out, beta), Lo) - h
    return dict(Ri=Ri, ui=ui, V=V, S=S, et=et, di=di, K=K)


def marginal_loglik(stats: BaseStats, beta, sigma, L_list: Sequence = (), b_other=None) -> np.ndarray:
    """Marginal log-likelihood ``log p(y | β, Σ, σ [, b_other])`` (NumPy, float64).

    Parameters
    ----------
    stats : BaseStats, SingleStats, NestedStats or CrossedStats
        From :func:`~bayes_hlm.backends.sufficient_stats.compute_stats`.
    beta : array_like, shape (..., p)
    sigma : array_like, shape (...)
    L_list : sequence
        One Cholesky factor per ``design.groups`` entry, each (..., q_k, q_k)
        or a (..., q_k) vector of SDs.
    b_other : sequence of array_like, optional
        Crossed only: sampled effects, one (..., G_k, q_k) per
        ``stats.other_terms`` entry (or one flat (..., m) array).

    Returns
    -------
    ndarray, shape (...)
        Leading batch axes of the parameters broadcast.
    """
    beta = np.asarray(beta, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    s2 = sigma**2
    const = stats.N * (_LOG2PI + np.log(s2))
    if type(stats) is BaseStats:
        return -0.5 * (const + _np_rr(stats, beta) / s2)
    if isinstance(stats, NestedStats):
        Lo = block_factor(L_list, stats.outer) / sigma[..., None, None]
        Li = block_factor(L_list, stats.inner) / sigma[..., None, None]
        parts = nested_parts(stats, beta, Lo, Li)
        RS = np.linalg.cholesky(parts["S"])
        v = _np_trisolve(RS, parts["et"])
        logdet = 2.0 * (
            np.log(np.diagonal(parts["Ri"], axis1=-2, axis2=-1)).sum((-2, -1))
            + np.log(np.diagonal(RS, axis1=-2, axis2=-1)).sum((-2, -1))
        )
        quad = (parts["ui"] ** 2).sum((-2, -1)) + (v**2).sum((-2, -1))
        return -0.5 * (const + logdet + (_np_rr(stats, beta) - quad) / s2)
    Lam = block_factor(L_list, stats.block) / sigma[..., None, None]
    if isinstance(stats, CrossedStats):
        rr, e = crossed_effective(stats, beta, _flat_other(stats, b_other))
    else:
        rr, e = _np_rr(stats, beta), _np_resid_cross(stats.B, stats.c, beta)
    R = np.linalg.cholesky(_np_M(Lam, stats.A))
    u = _np_trisolve(R, _np_d(e, Lam))
    logdet = 2.0 * np.log(np.diagonal(R, axis1=-2, axis2=-1)).sum((-2, -1))
    return -0.5 * (const + logdet + (rr - (u**2).sum((-2, -1))) / s2)


# =========================================================================== #
# PyTensor graph
# =========================================================================== #
def _pt():
    import pytensor
    import pytensor.tensor as pt

    return pytensor, pt


def _shared(x, name: str):
    """Statistics as shared variables: new data of the same shape reuse compiled code."""
    pytensor, _ = _pt()
    x = np.array(x, order="C")  # np.array keeps 0-d as 0-d
    # Static shapes: JAX needs them to trace allocs in the gradient graph.
    return pytensor.shared(x, name=name, borrow=False, shape=x.shape)


def _pt_L(L, q: int):
    _, pt = _pt()
    L = pt.as_tensor_variable(L)
    # Static shapes let JAX trace the gradient graph (no shape-dependent allocs).
    if L.ndim == 1:
        return pt.diag(pt.specify_shape(L, (q,)))
    return pt.specify_shape(L, (q, q))


def _pt_block_factor(L_list, block: FactorBlock):
    """Block-diagonal factor (q, q) of a merged block from the terms' factors."""
    _, pt = _pt()
    parts = [_pt_L(L_list[k], qk) for k, qk in zip(block.term_index, block.q_sizes)]
    if len(parts) == 1:
        return parts[0]
    out = pt.zeros((block.q, block.q))
    for P, off, qk in zip(parts, block.offsets, block.q_sizes):
        out = pt.set_subtensor(out[off:off + qk, off:off + qk], P)
    return out


def _pt_M(Lam, A, G: int, q: int):
    """``I + Λᵀ A_g Λ`` (G, q, q) via two reshaped GEMMs (no batched matmul).

    Shapes are Python ints (JAX needs static reshapes).
    """
    _, pt = _pt()
    T = pt.dot(A.reshape((G * q, q)), Lam).reshape((G, q, q))  # A_g Λ
    # (A_g Λ)ᵀ Λ = Λᵀ A_g Λ since A_g is symmetric.
    W = pt.dot(T.transpose(0, 2, 1).reshape((G * q, q)), Lam).reshape((G, q, q))
    return W + pt.eye(q)


class _Small:
    """Batched small-matrix kernels on (G, q, q) tensors.

    ``unroll=True`` writes Cholesky and triangular solves as elementwise ops on
    the (G,) entry vectors (portable to every PyTensor backend, fuses well);
    ``False`` uses PyTensor's batched (Blockwise) linalg ops.
    """

    def __init__(self, unroll: bool):
        self.unroll = unroll
        _, self.pt = _pt()

    def chol(self, M, q: int):
        pt = self.pt
        if not self.unroll:
            return pt.linalg.cholesky(M)
        R = [[None] * q for _ in range(q)]
        for j in range(q):
            s = M[:, j, j]
            for k in range(j):
                s = s - R[j][k] ** 2
            R[j][j] = pt.sqrt(s)
            for i in range(j + 1, q):
                s = M[:, i, j]
                for k in range(j):
                    s = s - R[i][k] * R[j][k]
                R[i][j] = s / R[j][j]
        return R  # lower-triangular entries as a list of lists of (G,) vectors

    def logdiag_sum(self, R, q: int):
        pt = self.pt
        if not self.unroll:
            return pt.sum(pt.log(pt.diagonal(R, axis1=1, axis2=2)))
        return sum(pt.sum(pt.log(R[i][i])) for i in range(q))

    def solve_vec(self, R, b, q: int):
        """``R⁻¹ b`` for ``b`` (G, q); unrolled: returns a list of (G,) vectors."""
        pt = self.pt
        if not self.unroll:
            return pt.linalg.solve_triangular(R, b[..., None], lower=True)[..., 0]
        return self._fsolve(R, [b[:, i] for i in range(q)], q)

    def solve_mat(self, R, Bm, q: int, k: int):
        """``R⁻¹ B`` for ``B`` (G, q, k); unrolled: list (rows) of lists (cols)."""
        pt = self.pt
        if not self.unroll:
            return pt.linalg.solve_triangular(R, Bm, lower=True)
        cols = [self._fsolve(R, [Bm[:, i, c] for i in range(q)], q) for c in range(k)]
        return [[cols[c][i] for c in range(k)] for i in range(q)]

    @staticmethod
    def _fsolve(R, b, q):
        x = []
        for i in range(q):
            s = b[i]
            for k in range(i):
                s = s - R[i][k] * x[k]
            x.append(s / R[i][i])
        return x

    def sumsq(self, u, q: int):
        pt = self.pt
        if not self.unroll:
            return pt.sum(u**2)
        return sum(pt.sum(u[i] ** 2) for i in range(q))


def group_term(e, A, L, sigma):
    """``Σ_g log|K_g| − v_gᵀK_g⁻¹v_g/σ²`` as one fused Op (output 0 of GroupMarginalTerm)."""
    return GroupMarginalTerm()(e, A, L, sigma)[0]


def _pt_rr(sh, beta):
    _, pt = _pt()
    return sh["yty"] - 2.0 * pt.dot(beta, sh["Xty"]) + pt.dot(beta, pt.dot(sh["XtX"], beta))


def _pt_group_term(sm: _Small, Lam, A, e, G: int, q: int):
    """``(Σ_g 2 log|R_g|... as Σ log diag, Σ_g ‖u_g‖²)`` for one merged block."""
    _, pt = _pt()
    R = sm.chol(_pt_M(Lam, A, G, q), q)
    d = pt.dot(e, Lam)  # rows e_gᵀ Λ = (Λᵀ e_g)ᵀ
    u = sm.solve_vec(R, d, q)
    return sm.logdiag_sum(R, q), sm.sumsq(u, q)


def _pt_nested(sm: _Small, stats: NestedStats, sh, beta, Lo, Li):
    """Two-stage elimination: inner groups, then the outer Schur complement."""
    _, pt = _pt()
    qo, qi = stats.outer.q, stats.inner.q
    Gi, Go = stats.c_in.shape[0], stats.c_out.shape[0]
    Ri = sm.chol(_pt_M(Li, sh["A_in"], Gi, qi), qi)
    di = pt.dot(sh["c_in"] - pt.dot(sh["B_in"], beta), Li)
    ui = sm.solve_vec(Ri, di, qi)
    # K_j = Λ_iᵀ C_j Λ_o via reshaped GEMMs: Kᵀ_j = Λ_oᵀ C_jᵀ Λ_i.
    CL = pt.dot(sh["C"].reshape((Gi * qi, qo)), Lo).reshape((Gi, qi, qo))
    K = pt.dot(CL.transpose(0, 2, 1).reshape((Gi * qo, qi)), Li).reshape((Gi, qo, qi)).transpose(0, 2, 1)
    V = sm.solve_mat(Ri, K, qi, qo)
    tril = [(a, b) for a in range(qo) for b in range(a + 1)]
    if sm.unroll:
        P = [sum(V[i][a] * V[i][b] for i in range(qi)) for a, b in tril]
        h = [sum(V[i][a] * ui[i] for i in range(qi)) for a in range(qo)]
        contrib = pt.stack(P + h, axis=1)
    else:
        VtV = (V[:, :, :, None] * V[:, :, None, :]).sum(axis=1)
        P = pt.stack([VtV[:, a, b] for a, b in tril], axis=1)
        h = (V * ui[:, :, None]).sum(axis=1)
        contrib = pt.concatenate([P, h], axis=1)
    # Segment sum over the inner groups of each outer group (scatter-add).
    agg = pt.inc_subtensor(pt.zeros((Go, len(tril) + qo))[sh["parent"]], contrib)
    Mo = _pt_M(Lo, sh["A_out"], Go, qo)
    do = pt.dot(sh["c_out"] - pt.dot(sh["B_out"], beta), Lo)
    S = pt.zeros((Go, qo, qo))
    for t, (a, b) in enumerate(tril):
        S = pt.set_subtensor(S[:, a, b], Mo[:, a, b] - agg[:, t])
        if a != b:
            S = pt.set_subtensor(S[:, b, a], Mo[:, a, b] - agg[:, t])
    et = do - agg[:, len(tril):]
    RS = sm.chol(S, qo)
    v = sm.solve_vec(RS, et, qo)
    logdet = sm.logdiag_sum(Ri, qi) + sm.logdiag_sum(RS, qo)
    return logdet, sm.sumsq(ui, qi) + sm.sumsq(v, qo)


def _pt_flat_other(stats: CrossedStats, b_other):
    _, pt = _pt()
    if b_other is None:
        raise ValueError("crossed structure: b_other (one tensor per stats.other_terms) is required")
    if not isinstance(b_other, (list, tuple)):
        return pt.specify_shape(pt.as_tensor_variable(b_other), (stats.m,))  # already flat
    if len(b_other) != len(stats.other_terms):
        raise ValueError(f"b_other needs {len(stats.other_terms)} arrays (stats.other_terms)")
    parts = [pt.specify_shape(pt.as_tensor_variable(b), (G, q)).reshape((G * q,)) for b, G, q in
             zip(b_other, stats.plan.other_levels, stats.plan.other_q)]
    return parts[0] if len(parts) == 1 else pt.concatenate(parts)


def _crossed_shared(stats: CrossedStats, dense_max: int) -> dict:
    """Shared variables for the sampled-effect parts of crossed stats.

    ``Z_oᵀZ_o`` is dense (one GEMV) when ``m ≤ dense_max``: for a few
    thousand columns a dense product beats gather/scatter and stays small
    (dense_max² floats).  Larger ``m`` use COO triplets (cost O(nnz)).
    ``Z_gᵀZ_o`` is always COO: its dense form would be G q × m.
    """
    sh = {"Zoty": _shared(stats.Zoty, "Zoty"), "XtZo": _shared(stats.XtZo, "XtZo")}
    if stats.m <= dense_max:
        sh["ZotZo"] = _shared(stats.ZotZo.toarray(), "ZotZo")
    else:
        coo = stats.ZotZo.tocoo()
        sh["ZZ_r"], sh["ZZ_c"] = _shared(coo.row.astype(np.int64), "ZZ_r"), _shared(coo.col.astype(np.int64), "ZZ_c")
        sh["ZZ_v"] = _shared(coo.data, "ZZ_v")
    coo = stats.BZo.tocoo()
    sh["BZ_r"], sh["BZ_c"] = _shared(coo.row.astype(np.int64), "BZ_r"), _shared(coo.col.astype(np.int64), "BZ_c")
    sh["BZ_v"] = _shared(coo.data, "BZ_v")
    return sh


def _pt_crossed_effective(stats: CrossedStats, sh, beta, b_o):
    """Graph for ``rᵀr`` and ``e_g = c_g − B_gβ − Z_gᵀZ_o b_o`` (no O(N) work)."""
    _, pt = _pt()
    G, q = stats.c.shape
    if "ZotZo" in sh:
        quad_o = pt.dot(b_o, pt.dot(sh["ZotZo"], b_o))
    else:
        quad_o = pt.sum(sh["ZZ_v"] * b_o[sh["ZZ_r"]] * b_o[sh["ZZ_c"]])
    rr = _pt_rr(sh, beta) - 2.0 * pt.dot(b_o, sh["Zoty"]) + 2.0 * pt.dot(beta, pt.dot(sh["XtZo"], b_o)) + quad_o
    Bb = pt.inc_subtensor(pt.zeros((G * q,))[sh["BZ_r"]], sh["BZ_v"] * b_o[sh["BZ_c"]]).reshape((G, q))
    e = sh["c"] - pt.dot(sh["B"], beta) - Bb
    return rr, e


def marginal_loglik_pt(
    stats: BaseStats,
    beta,
    sigma,
    L_list: Sequence = (),
    b_other=None,
    *,
    unroll_max_q: int = UNROLL_MAX_Q,
    dense_max: int = 2000,
    shared: dict | None = None,
    fused: bool = True,
):
    """PyTensor graph of the marginal log-likelihood (scalar, differentiable).

    Parameters
    ----------
    stats : BaseStats, SingleStats, NestedStats or CrossedStats
    beta : TensorVariable, shape (p,)
    sigma : TensorVariable, scalar
    L_list : sequence of TensorVariable
        One (q_k, q_k) lower-triangular factor (or (q_k,) SD vector) per
        ``design.groups`` entry; entries of crossed ``other_terms`` are unused.
    b_other : sequence of TensorVariable, optional
        Crossed only: one (G_k, q_k) tensor per ``stats.other_terms`` entry.
    unroll_max_q : int
        Blocks with ``q`` up to this use unrolled elementwise Cholesky (all
        backends incl. JAX); larger blocks use batched ``pt.linalg`` ops.
    dense_max : int
        Crossed only: largest ``m`` for a dense ``Z_oᵀZ_o``.
    shared : dict, optional
        If given, filled with the created shared variables (name -> variable)
        so a caller can ``set_value`` statistics of new data of the same shape.
    fused : bool
        Single and crossed structures: compute the per-group algebra and its
        gradient in one kernel (:class:`~.group_kernel.GroupMarginalTerm`)
        instead of an elementwise graph (same value; ``False`` is the reference).

    Returns
    -------
    TensorVariable
        Scalar ``log p(y | β, Σ, σ [, b_other])``.  Per-evaluation cost is
        O(G q³ + G q p + p²) (+ O(nnz) for crossed); ``N`` does not appear.
    """
    _, pt = _pt()
    beta = pt.specify_shape(pt.as_tensor_variable(beta), (stats.p,))
    sigma = pt.as_tensor_variable(sigma)
    sh = {name: _shared(getattr(stats, name), name) for name in ("Xty", "XtX")}
    sh["yty"] = _shared(np.asarray(stats.yty, dtype=np.float64), "yty")
    s2 = sigma**2
    const = stats.N * (_LOG2PI + pt.log(s2))
    if type(stats) is BaseStats:
        out = -0.5 * (const + _pt_rr(sh, beta) / s2)
    elif isinstance(stats, NestedStats):
        for name in ("A_in", "B_in", "c_in", "C", "A_out", "B_out", "c_out"):
            sh[name] = _shared(getattr(stats, name), name)
        sh["parent"] = _shared(np.asarray(stats.parent, dtype=np.int64), "parent")
        sm = _Small(max(stats.outer.q, stats.inner.q) <= unroll_max_q)
        Lo = _pt_block_factor(L_list, stats.outer) / sigma
        Li = _pt_block_factor(L_list, stats.inner) / sigma
        logdet, quad = _pt_nested(sm, stats, sh, beta, Lo, Li)
        out = -0.5 * (const + 2.0 * logdet + (_pt_rr(sh, beta) - quad) / s2)
    else:
        for name in ("A", "B", "c"):
            sh[name] = _shared(getattr(stats, name), name)
        q = stats.block.q
        if not fused:
            Lam = _pt_block_factor(L_list, stats.block) / sigma
        if isinstance(stats, CrossedStats):
            sh.update(_crossed_shared(stats, dense_max))
            rr, e = _pt_crossed_effective(stats, sh, beta, _pt_flat_other(stats, b_other))
        else:
            rr, e = _pt_rr(sh, beta), sh["c"] - pt.dot(sh["B"], beta)
        G = stats.c.shape[0]
        if fused:
            # one kernel for the per-group algebra and its gradient (group_kernel)
            F = group_term(e, sh["A"], _pt_block_factor(L_list, stats.block), sigma)
            out = -0.5 * (const + F - G * q * pt.log(s2) + rr / s2)
        else:
            logdet, quad = _pt_group_term(_Small(q <= unroll_max_q), Lam, sh["A"], e, G, q)
            out = -0.5 * (const + 2.0 * logdet + (rr - quad) / s2)
    if shared is not None:
        shared.update(sh)
    return out
