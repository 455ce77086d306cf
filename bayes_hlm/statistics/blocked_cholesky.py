"""Blocked sparse Cholesky of ``K = Λᵀ Zᵀ W Z Λ + I`` over several grouping factors.

The layout MixedModels.jl uses (Bates et al.): the random-effect unknowns are ordered
factor by factor, the factor with most unknowns (levels × q) first ("E"), the others
("R") after it by decreasing size, so that

.. code-block:: text

    K = [K_EE  K_ER]  = L Lᵀ,   L = [L_E   0  ]     F = L_E⁻¹ K_ER
        [K_RE  K_RR]                [Fᵀ   L_R ]     L_R L_Rᵀ = K_RR − Fᵀ F

* ``K_EE`` is block diagonal (one ``q × q`` block per level): a batched Cholesky over
  levels, no loop over groups;
* ``F`` has the sparsity of ``Z_Eᵀ Z_R`` (a block-row scaling of it);
* the Schur complement ``K_RR − FᵀF`` of the other factors is small for the usual
  designs (crossed factors of a few thousand levels, nested outer factors) and is
  factorised densely (LAPACK), else by a sparse LDLᵀ (``qdldl``, AMD ordering).

All data enter through cross-products computed once per weight vector
(:meth:`BlockedLayout.cross`, from the statistics layer's :func:`.cross.block_cross`
and :class:`.cross.PatternCross`, whose sparsity is fixed once per model, so that the
structures built on it are reused across weight vectors); a new ``θ`` only rescales them
by ``Λθ`` and refactors (:meth:`CrossBlocks.factor`). When the first factor is scalar (``q_E = 1``)
and the remainder is dense, the downdate ``FᵀF = Λ_Rᵀ Z_RᵀZ_E D⁻¹ Z_EᵀZ_R Λ_R`` is one
sparse matrix–vector product with a pair matrix built once (no sparse–sparse product
per ``θ``).

Users: the REML criterion (:mod:`bayes_hlm.reml.criterion`, ``W = I``) and penalised
IRLS of GLMMs (a row weight vector ``W``, new cross-products per iteration, the same
structure). One PIRLS step with working response ``z`` and weights ``w`` at fixed ``β``::

    lay = BlockedLayout([FactorColumns(codes_k, Z_k, G_k) for each factor])   # once
    fac = lay.cross(w).factor(lams)                                 # per iteration
    BE, BR = lay.zt(z - X @ beta, w)                                # Zᵀ W (z − Xβ)
    WE, zR = fac.forward(BE, BR)
    uE, uR = fac.backward(WE[:, :, 0], None if zR is None else zR[:, 0])   # u = K⁻¹ Λᵀ Zᵀ W r
    u = lay.split(uE, uR)                 # per factor; b_k = u_k @ lams[k].T
    eta = X @ beta + lay.z_mul([u_k @ L.T for u_k, L in zip(u, lams)])
    # Laplace: −2 log L ≈ deviance + ‖u‖² + fac.logdet
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.linalg.lapack import dpotrf as _potrf

from .cross import PatternCross, block_cross, stacked_csr

__all__ = ["DENSE_MAX", "FactorColumns", "BlockedLayout", "CrossBlocks", "BlockedFactor",
           "batched_chol", "batched_fsolve", "batched_bsolve"]

DENSE_MAX = 4000          # Schur complements up to this size are factorised densely
DENSE_PRODUCT_MAX = 5e7   # n_E · n_R² up to this: the whole coupling block is held dense
PAIRS_MAX = 4e7           # entries of the pair matrix up to this (memory ~ 16 bytes each)


# --------------------------------------------------------------------------- #
# batched small linear algebra (one q × q block per level)
# --------------------------------------------------------------------------- #
def batched_chol(M: np.ndarray) -> np.ndarray:
    """Lower Cholesky factors of (G, q, q) symmetric positive-definite blocks."""
    q = M.shape[1]
    if q == 1:
        return np.sqrt(M)
    if q == 2:
        L = np.zeros_like(M)
        l11 = np.sqrt(M[:, 0, 0])
        l21 = M[:, 1, 0] / l11
        L[:, 0, 0] = l11
        L[:, 1, 0] = l21
        L[:, 1, 1] = np.sqrt(M[:, 1, 1] - l21 * l21)
        return L
    return np.linalg.cholesky(M)


def batched_fsolve(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve ``L X = B`` for lower-triangular (G, q, q) ``L`` and (G, q, k) ``B``."""
    q = L.shape[1]
    if q == 1:
        return B / L[:, 0, 0][:, None, None]
    X = np.empty_like(B)
    if q == 2:
        X[:, 0, :] = B[:, 0, :] / L[:, 0, 0, None]
        X[:, 1, :] = (B[:, 1, :] - L[:, 1, 0, None] * X[:, 0, :]) / L[:, 1, 1, None]
        return X
    for i in range(q):
        acc = B[:, i, :]
        if i:
            acc = acc - (L[:, i, :i, None] * X[:, :i, :]).sum(axis=1)
        X[:, i, :] = acc / L[:, i, i][:, None]
    return X


def batched_bsolve(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Solve ``Lᵀ X = B`` for lower-triangular (G, q, q) ``L`` and (G, q, k) ``B``."""
    q = L.shape[1]
    if q == 1:
        return B / L[:, 0, 0][:, None, None]
    X = np.empty_like(B)
    for i in range(q - 1, -1, -1):
        acc = B[:, i, :]
        if i < q - 1:
            acc = acc - (L[:, i + 1:, i, None] * X[:, i + 1:, :]).sum(axis=1)
        X[:, i, :] = acc / L[:, i, i][:, None]
    return X


def _blockdiag(blocks: np.ndarray) -> sp.csr_matrix:
    """Sparse block-diagonal matrix from (G, q, q) blocks."""
    G, q, _ = blocks.shape
    if q == 1:
        return sp.diags(blocks[:, 0, 0]).tocsr()
    r = (np.arange(G)[:, None, None] * q + np.arange(q)[None, :, None]).repeat(q, axis=2)
    c = (np.arange(G)[:, None, None] * q + np.arange(q)[None, None, :]).repeat(q, axis=1)
    return sp.csr_matrix((blocks.ravel(), (r.ravel(), c.ravel())), shape=(G * q, G * q))


# --------------------------------------------------------------------------- #
# structure (once per model)
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class FactorColumns:
    """One grouping factor's random-effect columns.

    Attributes
    ----------
    codes : int array (n,)
        Level of each row, ``0..n_levels-1``.
    Z : (n, q) array
        The factor's columns (its terms concatenated); ``Z[:, j]`` multiplies the level's
        ``j``-th effect.
    n_levels : int
    """

    codes: np.ndarray
    Z: np.ndarray
    n_levels: int

    @property
    def q(self) -> int:
        return int(self.Z.shape[1])

    @property
    def size(self) -> int:
        return self.q * int(self.n_levels)


class BlockedLayout:
    """Order and sparsity of ``K`` for some grouping factors (computed once per model).

    Parameters
    ----------
    factors : sequence of FactorColumns
        In the caller's order; ``lambdas`` passed later follow this order.

    Attributes
    ----------
    E : int
        Index (caller's order) of the first, largest factor.
    R : tuple of int
        The other factors by decreasing size (ties: caller's order).
    r_offsets : tuple of int
        Column offset of each ``R`` factor inside the remainder block.
    n_R : int
        Unknowns of the remainder.
    """

    def __init__(self, factors: Sequence[FactorColumns]):
        if not factors:
            raise ValueError("BlockedLayout needs at least one grouping factor")
        self.factors = tuple(FactorColumns(np.asarray(f.codes, dtype=np.int64),
                                           np.asarray(f.Z, dtype=np.float64).reshape(len(f.codes), -1),
                                           int(f.n_levels)) for f in factors)
        sizes = [f.size for f in self.factors]
        self.E = int(np.argmax(sizes))
        self.R = tuple(sorted((k for k in range(len(sizes)) if k != self.E), key=lambda k: -sizes[k]))
        offs, o = [], 0
        for k in self.R:
            offs.append(o)
            o += sizes[k]
        self.r_offsets = tuple(offs)
        self.n_R = o
        self._ER = self._RR = self._ZR = self._pairs = None
        if self.R:    # each row's remainder columns (level-major per factor) and values
            self._colsR = np.concatenate(
                [off + self.factors[k].codes[:, None] * self.factors[k].q + np.arange(self.factors[k].q)
                 for k, off in zip(self.R, self.r_offsets)], axis=1)
            self._valsR = np.concatenate([self.factors[k].Z for k in self.R], axis=1)

    def _patterns(self):
        """The fixed sparsity of ``Z_EᵀZ_R`` and ``Z_RᵀZ_R`` (built on first use)."""
        if self._ER is None:
            fE = self.fE
            colsE = fE.codes[:, None] * fE.q + np.arange(fE.q)
            self._ER = PatternCross(colsE, self._colsR, fE.size, self.n_R)
            self._RR = PatternCross(self._colsR, self._colsR, self.n_R, self.n_R)
            self._ZR = self.remainder_Z().T.tocsr()
        return self._ER, self._RR, self._ZR

    def pair_structure(self):
        """Index arrays of the pair matrix of ``Z_EᵀZ_R`` (built once, see :func:`_pair_matrix`)."""
        if self._pairs is None:
            ER, _, _ = self._patterns()
            q = self.fE.q
            self._pairs = (_pair_structure(ER.indptr, ER.indices, self.n_R) if q == 1 else
                           _pair_structure_q(ER.indptr, ER.indices, self.n_R, q))
        return self._pairs

    def pair_count(self) -> int:
        """Entries the pair matrix would have (:func:`_pair_structure`; about ``Σ_g (q m_g)²/2``
        with ``m_g`` the remainder columns level ``g`` meets)."""
        ER, _, _ = self._patterns()
        q = self.fE.q
        per_level = np.diff(ER.indptr[::q]).astype(np.int64)    # entries of each level's q rows
        return int(np.sum(per_level * (per_level + 1) // 2))

    @property
    def fE(self) -> FactorColumns:
        return self.factors[self.E]

    def remainder_Z(self, weights: np.ndarray | None = None) -> sp.csr_matrix:
        """Sparse ``Z_R`` (rows × n_R), optionally with rows scaled by ``weights``."""
        Z = stacked_csr([(self.factors[k].codes, self.factors[k].Z, self.factors[k].n_levels)
                         for k in self.R])
        return _scale_rows(Z, weights)

    def cross(self, weights: np.ndarray | None = None, V: np.ndarray | None = None, *,
              mode: str | None = None, dense_max: int = DENSE_MAX) -> "CrossBlocks":
        """The cross-products ``Zᵀ W Z`` (and ``Zᵀ W V``) that every ``θ`` reuses.

        Parameters
        ----------
        weights : (n,) array of non-negative row weights, optional (``W = I``)
        V : (n, k) array, optional
            Columns to cross with ``Z`` (the REML criterion passes ``[X y]``).
        mode : {None, "dense", "pairs", "sparse"}
            How to form the Schur complement (see :class:`CrossBlocks`); None chooses by size.
        dense_max : int
            Largest Schur complement factorised densely (above: sparse LDLᵀ).
        """
        fE = self.fE
        sw = None
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (len(fE.codes),) or np.any(w < 0) or not np.all(np.isfinite(w)):
                raise ValueError("weights must be a finite, non-negative vector with one entry per row")
            sw = np.sqrt(w)
        V2 = None if V is None else np.asarray(V, dtype=np.float64).reshape(len(fE.codes), -1)
        # per-level sums of the first factor through the statistics layer: √w on both sides
        ZE = fE.Z if sw is None else fE.Z * sw[:, None]
        Vw = V2 if V2 is None or sw is None else V2 * sw[:, None]
        blk = block_cross(fE.codes, fE.n_levels, ZE, Vw)
        A_ER = A_RR = BR = None
        if self.R:
            ER, RR, ZRt = self._patterns()
            w = None if sw is None else sw * sw
            A_ER = ER(fE.Z, self._valsR, w)
            A_RR = RR(self._valsR, self._valsR, w)
            if V2 is not None:
                BR = np.asarray(ZRt @ (V2 if w is None else V2 * w[:, None]))
        return CrossBlocks(self, blk["A"], A_ER, A_RR, BE=None if V is None else blk["B"],
                           BR=None if V is None else BR, mode=mode, dense_max=dense_max)

    def zt(self, v: np.ndarray, weights: np.ndarray | None = None):
        """``Zᵀ W v`` in the two blocks: ``(BE (G_E, q_E, k), BR (n_R, k) or None)`` for
        ``v`` (n,) or (n, k) -- the right-hand side :meth:`BlockedFactor.forward` takes
        (e.g. a penalised IRLS step's ``Zᵀ W (z − Xβ)``)."""
        fE = self.fE
        V = np.asarray(v, dtype=np.float64).reshape(len(fE.codes), -1)
        Vw = V if weights is None else V * np.asarray(weights, dtype=np.float64)[:, None]
        cols = (fE.codes[:, None] * fE.q + np.arange(fE.q)).ravel()
        BE = np.stack([np.bincount(cols, weights=(fE.Z * Vw[:, [j]]).ravel(), minlength=fE.size)
                       for j in range(V.shape[1])], axis=1).reshape(fE.n_levels, fE.q, -1)
        if not self.R:
            return BE, None
        _, _, ZRt = self._patterns()
        return BE, np.asarray(ZRt @ Vw)

    def z_mul(self, b: Sequence[np.ndarray]) -> np.ndarray:
        """``Z b`` per row for effects ``b`` given per factor (caller's order) as
        ``(n_levels, q)`` arrays (e.g. ``b_k = u_k Λ_kᵀ`` from :meth:`split`)."""
        out = np.zeros(len(self.fE.codes))
        for f, bk in zip(self.factors, b):
            out += np.einsum("nq,nq->n", f.Z, np.asarray(bk, dtype=np.float64).reshape(f.n_levels, f.q)[f.codes])
        return out

    def split(self, uE: np.ndarray, uR: np.ndarray | None) -> list[np.ndarray]:
        """Per factor (caller's order) ``(n_levels, q)`` arrays from the two blocks of ``u``."""
        out: list = [None] * len(self.factors)
        out[self.E] = np.asarray(uE).reshape(self.fE.n_levels, self.fE.q)
        for k, off in zip(self.R, self.r_offsets):
            f = self.factors[k]
            out[k] = np.asarray(uR[off:off + f.size]).reshape(f.n_levels, f.q)
        return out


def _scale_rows(M: sp.csr_matrix, s: np.ndarray | None) -> sp.csr_matrix:
    if s is None:
        return M
    M = M.copy()
    M.data *= np.repeat(s, np.diff(M.indptr))
    return M


# --------------------------------------------------------------------------- #
# cross-products (once per weight vector)
# --------------------------------------------------------------------------- #
def _pair_structure(indptr: np.ndarray, indices: np.ndarray, n: int):
    """Index arrays of :func:`_pair_matrix` for a CSR pattern (rows = levels, ``n`` columns).

    Each row's column pairs ``(i ≥ j)`` are listed row after row, so the pair matrix is
    built straight in CSC (column = row of the pattern, row = the row-major position
    ``i n + j``) with no sorting or deduplication.
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    G = len(indptr) - 1
    ng = np.diff(indptr)
    nnz = int(indptr[-1])
    row_start = np.repeat(indptr[:-1], ng)
    per = np.arange(nnz, dtype=np.int64) - row_start + 1     # partners at or left of an entry
    total = int(per.sum())
    first = np.repeat(np.arange(nnz, dtype=np.int64), per)
    # partner = row_start + (k − start of the entry's pair run), k the running pair index
    shift = row_start - (np.cumsum(per) - per)
    partner = np.arange(total, dtype=np.int64) + shift[first]
    itype = np.int32 if n * n < 2 ** 31 else np.int64
    cols = np.asarray(indices, dtype=np.int64)
    lin = (cols[first] * n + cols[partner]).astype(itype)
    pindptr = np.concatenate([[0], np.cumsum(ng * (ng + 1) // 2)]).astype(itype)
    return first, partner, lin, pindptr, G


def _pair_structure_q(indptr: np.ndarray, indices: np.ndarray, n: int, q: int):
    """:func:`_pair_structure` for a first factor with ``q > 1`` columns per level.

    Rows ``g q + a`` of the pattern belong to level ``g``. The downdate is
    ``M = Σ_g A_gᵀ W_g A_g`` with a ``q × q`` weight ``W_g`` per level, so a pair is two
    entries of one level (any rows ``a, b``) with columns ``i ≥ j`` -- both orders when
    ``i = j`` -- and the pair matrix's column is ``(g, a, b)``: ``M = P @ vec(W)``.
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    G = (len(indptr) - 1) // q
    nnz = int(indptr[-1])
    row = np.repeat(np.arange(G * q, dtype=np.int64), np.diff(indptr))
    lvl, a = row // q, row % q
    cols = np.asarray(indices, dtype=np.int64)
    key = lvl * n + cols
    order = np.argsort(key, kind="stable")               # entries by (level, column)
    ks = key[order]
    lvl_start = np.searchsorted(ks, lvl[order] * n, side="left")
    ub = np.searchsorted(ks, ks, side="right")           # after the last entry of that column
    per = ub - lvl_start
    total = int(per.sum())
    first = np.repeat(np.arange(nnz, dtype=np.int64), per)
    shift = lvl_start - (np.cumsum(per) - per)
    partner = np.arange(total, dtype=np.int64) + shift[first]
    e1, e2 = order[first], order[partner]                # data indices of the two entries
    wcol = lvl[e1] * q * q + a[e1] * q + a[e2]
    grp = np.argsort(wcol, kind="stable")                # CSC: grouped by the (g, a, b) column
    e1, e2 = e1[grp], e2[grp]
    itype = np.int32 if n * n < 2 ** 31 else np.int64
    lin = (cols[e1] * n + cols[e2]).astype(itype)
    pindptr = np.concatenate([[0], np.cumsum(np.bincount(wcol, minlength=G * q * q))]).astype(itype)
    return e1, e2, lin, pindptr, G * q * q


def _pair_matrix(A: sp.csr_matrix, n: int, structure=None) -> sp.csc_matrix:
    """``P`` with ``(P @ d).reshape(n, n)`` = the lower triangle of ``Aᵀ diag(d) A``
    (``q_E = 1``; with ``q_E > 1`` ``d`` is ``vec`` of the per-level ``q × q`` weights, see
    :func:`_pair_structure_q`).

    ``A``: CSR with sorted indices (rows = levels of the first factor, ``n`` columns);
    ``structure``: its :func:`_pair_structure` when already known (the same pattern for
    every weight vector). One sparse matrix–vector product per ``θ`` then gives the whole
    downdate as a dense ``n × n`` array.
    """
    if structure is None:
        A = A.tocsr()
        A.sort_indices()
        structure = _pair_structure(A.indptr, A.indices, n)
    first, partner, lin, pindptr, G = structure
    vals = A.data[first] * A.data[partner]
    return sp.csc_matrix((vals, lin, pindptr), shape=(n * n, G))


class CrossBlocks:
    """``Zᵀ W Z`` in blocks (and ``Zᵀ W V`` when asked): what :meth:`factor` rescales per ``θ``.

    Attributes
    ----------
    A_E : (G_E, q_E, q_E)
        Per level of the first factor ``Z_gᵀ W Z_g``.
    A_ER : csr (n_E, n_R) or None
    A_RR : csr (n_R, n_R) or None
    BE : (G_E, q_E, k) or None
        ``Z_Eᵀ W V`` per level.
    BR : (n_R, k) or None
    mode : {"single", "dense", "pairs", "sparse"}
        How the Schur complement is formed: one factor; everything dense (small);
        a pair-matrix product (dense remainder); sparse products (large remainder).
    """

    def __init__(self, layout: BlockedLayout, A_E, A_ER=None, A_RR=None, BE=None, BR=None, *,
                 mode: str | None = None, dense_max: int = DENSE_MAX):
        self.layout = layout
        self.dense_max = int(dense_max)
        self.A_E = A_E
        self.A_ER = A_ER
        self.A_RR = A_RR
        self.BE = BE
        self.BR = BR
        n_R = layout.n_R
        qE = layout.fE.q
        self.A_ER_d = self.A_RR_d = self.P = None
        if mode not in (None, "dense", "pairs", "sparse"):
            raise ValueError(f"mode must be None, 'dense', 'pairs' or 'sparse', not {mode!r}")
        if mode == "pairs" and n_R > self.dense_max:
            raise ValueError("mode='pairs' needs a dense remainder (n_R <= dense_max)")
        if not layout.R:
            mode = "single"
        elif mode is None:
            mode = ("dense" if A_ER.shape[0] * n_R * n_R <= DENSE_PRODUCT_MAX else
                    "pairs" if n_R <= self.dense_max and layout.pair_count() <= PAIRS_MAX
                    else "sparse")
        self.mode = mode
        if mode == "dense":
            self.A_ER_d = A_ER.toarray()
            self.A_RR_d = A_RR.toarray()
        elif mode == "pairs":
            self.A_RR_d = np.tril(A_RR.toarray())
            self.P = _pair_matrix(A_ER, n_R, layout.pair_structure())
        self._scalar_R = all(layout.factors[k].q == 1 for k in layout.R)

    # -- Λ_R helpers (block diagonal, one q_k × q_k block per level of each R factor) --
    def _lamR_vec(self, lams) -> np.ndarray:
        lay = self.layout
        return np.concatenate([np.full(lay.factors[k].n_levels, lams[k][0, 0]) for k in lay.R])

    def _lamR_dense(self, lams) -> np.ndarray:
        lay = self.layout
        out = np.zeros((lay.n_R, lay.n_R))
        for k, off in zip(lay.R, lay.r_offsets):
            f = lay.factors[k]
            blk = out[off:off + f.size, off:off + f.size]
            for g in range(f.n_levels):
                blk[g * f.q:(g + 1) * f.q, g * f.q:(g + 1) * f.q] = lams[k]
        return out

    def _lamR_sparse(self, lams) -> sp.csr_matrix:
        lay = self.layout
        return sp.block_diag([sp.kron(sp.identity(lay.factors[k].n_levels), lams[k])
                              for k in lay.R], format="csr")

    def lamR_t(self, lams, M: np.ndarray) -> np.ndarray:
        """``Λ_Rᵀ M`` for an (n_R,) or (n_R, k) array (a reshape per factor, no n_R² work)."""
        return self._lam_apply(lams, M, "ai,gak->gik")

    def lamR(self, lams, M: np.ndarray) -> np.ndarray:
        """``Λ_R M`` for an (n_R,) or (n_R, k) array."""
        return self._lam_apply(lams, M, "ia,gak->gik")

    def _lam_apply(self, lams, M, spec):
        lay = self.layout
        M = np.asarray(M, dtype=float)
        out = np.empty_like(M)
        for k, off in zip(lay.R, lay.r_offsets):
            f = lay.factors[k]
            sl = slice(off, off + f.size)
            if f.q == 1:
                out[sl] = lams[k][0, 0] * M[sl]
            else:
                M3 = M[sl].reshape(f.n_levels, f.q, -1)
                out[sl] = np.einsum(spec, lams[k], M3).reshape(M[sl].shape)
        return out

    def _scale_sym(self, buf: np.ndarray, lams) -> None:
        """``buf ← Λ_Rᵀ buf Λ_R`` in place for a dense symmetric ``buf`` (all q = 1: lower only)."""
        lay = self.layout
        if self._scalar_R:
            ls = [lams[k][0, 0] for k in lay.R]
            for a, (ka, oa) in enumerate(zip(lay.R, lay.r_offsets)):
                sa = slice(oa, oa + lay.factors[ka].size)
                for b in range(a + 1):
                    ob = lay.r_offsets[b]
                    sb = slice(ob, ob + lay.factors[lay.R[b]].size)
                    buf[sa, sb] *= ls[a] * ls[b]
            return
        full = np.tril(buf) + np.tril(buf, -1).T
        full = self.lamR_t(lams, full)
        buf[:] = self.lamR_t(lams, full.T).T

    # -- the factorisation ---------------------------------------------------------
    def factor(self, lams: Sequence[np.ndarray]) -> "BlockedFactor | None":
        """Cholesky factor of ``K(θ)`` for the relative covariance factors ``lams``.

        Parameters
        ----------
        lams : sequence of (q_k, q_k) lower-triangular arrays
            ``Λ`` block of each factor (the layout's caller order).

        Returns
        -------
        BlockedFactor, or None when ``K`` is not numerically positive definite.
        """
        lay = self.layout
        LamE = lams[lay.E]
        q = LamE.shape[0]
        if q == 1:
            l = LamE[0, 0]
            D = 1.0 + (l * l) * self.A_E
        else:
            D = LamE.T @ self.A_E @ LamE
            D[:, np.arange(q), np.arange(q)] += 1.0
        LE = batched_chol(D)
        if not np.all(np.isfinite(LE)):
            return None
        logdet = 2.0 * float(np.sum(np.log(LE[:, np.arange(q), np.arange(q)])))
        fac = BlockedFactor(self, lams, LE, logdet)
        if self.mode == "single":
            return fac
        n_R = lay.n_R
        GE = lay.fE.n_levels
        if self.mode == "pairs":
            if q == 1:
                fac.scaleE = LamE[0, 0] / LE[:, 0, 0]
                wvec = fac.scaleE * fac.scaleE                 # λ_E² / D_g
            else:   # T_g = L_g⁻¹ Λ_Eᵀ, W_g = T_gᵀ T_g = Λ_E D_g⁻¹ Λ_Eᵀ
                fac.T = batched_fsolve(LE, np.broadcast_to(LamE.T, LE.shape).copy())
                wvec = np.einsum("gai,gaj->gij", fac.T, fac.T).ravel()
            # −lower(A_REᵀ blockdiag(W) A_ER) in one product, then + A_RR (lower)
            KS = (self.P @ -wvec).reshape(n_R, n_R)
            KS += self.A_RR_d
            self._scale_sym(KS, lams)
            KS.ravel()[::n_R + 1] += 1.0
        elif self.mode == "dense":
            LamR = self._lamR_dense(lams)
            C3 = self.A_ER_d.reshape(GE, q, n_R)
            C3 = LamE.T @ C3 if q > 1 else C3 * LamE[0, 0]
            C3 = C3 @ LamR
            fac._F = batched_fsolve(LE, C3).reshape(-1, n_R)
            KS = LamR.T @ self.A_RR_d @ LamR - fac._F.T @ fac._F
            KS[np.diag_indices(n_R)] += 1.0
        else:
            LamR = self._lamR_sparse(lams)
            C = self.A_ER @ LamR
            C = (sp.kron(sp.identity(GE), LamE.T, format="csr") @ C) if q > 1 else C * LamE[0, 0]
            Linv = np.linalg.inv(LE) if q > 1 else 1.0 / LE
            fac._F = (_blockdiag(Linv) @ C).tocsr()
            KS = (LamR.T @ self.A_RR @ LamR) - (fac._F.T @ fac._F) + sp.identity(n_R, format="csr")
        if not fac._factor_schur(KS):
            return None
        return fac


# --------------------------------------------------------------------------- #
# the factor (per θ)
# --------------------------------------------------------------------------- #
class BlockedFactor:
    """``K(θ) = L Lᵀ`` in blocks: ``L_E`` (batched), ``F`` (sparse / structured), ``L_R``.

    Attributes
    ----------
    LE : (G_E, q_E, q_E)
        Cholesky blocks of ``K_EE``.
    logdet : float
        ``log|K| = log|L|²``.
    LR : (n_R, n_R) array or None
        Lower Cholesky factor of the Schur complement (dense case; only its lower
        triangle is meaningful) -- ``schur_dense`` says which.
    solver : qdldl.Solver or None
        Sparse ``LDLᵀ`` of the Schur complement (large remainders).
    """

    def __init__(self, cross: CrossBlocks, lams, LE: np.ndarray, logdet: float):
        self.cross = cross
        self.layout = cross.layout
        self.lams = [np.asarray(L, dtype=float) for L in lams]
        self.LE = LE
        self.logdet = logdet
        self.LR = None
        self.solver = None
        self.schur_dense = True
        self.scaleE = None      # pairs mode, q_E = 1: λ_E / L_g
        self.T = None           # pairs mode, q_E > 1: L_g⁻¹ Λ_Eᵀ (G, q, q)
        self._F = None

    def _factor_schur(self, KS) -> bool:
        n_R = self.layout.n_R
        if n_R <= self.cross.dense_max:
            Kd = KS if isinstance(KS, np.ndarray) else KS.toarray()
            # the C-ordered lower triangle is the Fortran-ordered upper one of Kdᵀ: no copy
            U, info = _potrf(Kd.T, lower=0, overwrite_a=1, clean=0)
            if info != 0:
                return False
            self.LR = U.T
            self.logdet += 2.0 * float(np.sum(np.log(np.diagonal(self.LR))))
            return True
        import qdldl
        self.schur_dense = False
        solver = qdldl.Solver(sp.triu(KS, format="csc"), upper=True)
        _, Dd, _ = solver.factors()
        if np.any(Dd <= 0):
            return False
        self.logdet += float(np.sum(np.log(Dd)))
        self.solver = solver
        return True

    # -- F = L_E⁻¹ Λ_Eᵀ A_ER Λ_R ---------------------------------------------------
    @property
    def F(self):
        """``F`` as a dense (small designs) or sparse (n_E, n_R) matrix (built on demand)."""
        if self._F is None and self.layout.R:
            cb = self.cross
            T = sp.diags(self.scaleE) if self.T is None else _blockdiag(self.T)
            self._F = (T @ cb.A_ER @ cb._lamR_sparse(self.lams)).tocsr()
        return self._F

    def _Tt(self, W: np.ndarray) -> np.ndarray:
        """``blockdiag(T)ᵀ W`` for (n_E, k) ``W`` (pairs mode)."""
        if self.T is None:
            return self.scaleE[:, None] * W
        G, q, _ = self.T.shape
        return np.einsum("gab,gak->gbk", self.T, W.reshape(G, q, -1)).reshape(W.shape)

    def _T(self, v: np.ndarray) -> np.ndarray:
        """``blockdiag(T) v`` for (n_E,) or (n_E, k) ``v`` (pairs mode)."""
        if self.T is None:
            return (self.scaleE[:, None] * v) if v.ndim == 2 else self.scaleE * v
        G, q, _ = self.T.shape
        return np.einsum("gab,gbk->gak", self.T, v.reshape(G, q, -1)).reshape(v.shape)

    def F_t(self, WE: np.ndarray) -> np.ndarray:
        """``Fᵀ W`` for (n_E, k) ``W``."""
        if self.cross.mode == "pairs":
            return self.cross.lamR_t(self.lams, self.cross.A_ER.T @ self._Tt(WE))
        return self.F.T @ WE

    def F_mul(self, uR: np.ndarray) -> np.ndarray:
        """``F u`` for (n_R,) or (n_R, k) ``u``."""
        if self.cross.mode == "pairs":
            return self._T(self.cross.A_ER @ self.cross.lamR(self.lams, uR))
        return self.F @ uR

    # -- solves ------------------------------------------------------------------------
    def schur_solve(self, B: np.ndarray) -> np.ndarray:
        """``(K_RR − FᵀF)⁻¹ B``."""
        if self.schur_dense:
            return sla.cho_solve((self.LR, True), B, check_finite=False)
        B2 = B.reshape(B.shape[0], -1)
        out = np.column_stack([self.solver.solve(np.ascontiguousarray(B2[:, j]))
                               for j in range(B2.shape[1])])
        return out.reshape(B.shape)

    def schur_half(self, B: np.ndarray) -> np.ndarray:
        """``L_R⁻¹ B`` (dense Schur factor only)."""
        return sla.solve_triangular(self.LR, B, lower=True, check_finite=False)

    def forward(self, BE: np.ndarray, BR: np.ndarray | None):
        """First half of a solve with right-hand side ``Λᵀ [BE; BR]`` (``B = Zᵀ W V``).

        Returns
        -------
        WE : (G_E, q_E, k)
            ``L_E⁻¹ Λ_Eᵀ BE``.
        zR : (n_R, k) or None
            ``Λ_Rᵀ BR − Fᵀ WE``: the remainder's right-hand side after eliminating ``E``.
        """
        LamE = self.lams[self.layout.E]
        if LamE.shape[0] == 1:
            WE = (LamE[0, 0] * BE) / self.LE
        else:
            WE = batched_fsolve(self.LE, LamE.T @ BE)
        if not self.layout.R:
            return WE, None
        k = BE.shape[2]
        if self.cross.mode == "pairs":
            zR = self.cross.lamR_t(self.lams, BR - self.cross.A_ER.T @ self._Tt(WE.reshape(-1, k)))
        else:
            zR = self.cross.lamR_t(self.lams, BR) - self.F.T @ WE.reshape(-1, k)
        return WE, zR

    def backward(self, wE: np.ndarray, zR: np.ndarray | None):
        """Second half: ``u`` from ``wE = L_E⁻¹(...)`` (G_E, q_E) and ``zR`` (n_R,).

        Returns ``(uE (G_E, q_E), uR (n_R,) or None)`` with ``K u`` = the right-hand side.
        """
        uR = None
        if self.layout.R:
            uR = self.schur_solve(zR)
            wE = wE - self.F_mul(uR).reshape(wE.shape)
        uE = batched_bsolve(self.LE, wE[:, :, None])[:, :, 0]
        return uE, uR

    def solve(self, cE: np.ndarray, cR: np.ndarray | None = None):
        """``u = K⁻¹ c`` for ``c = [cE (G_E, q_E); cR (n_R,)]`` (already in the ``Λᵀ`` scale).

        Returns ``(uE, uR)``; :meth:`BlockedLayout.split` gives them per factor.
        """
        wE = batched_fsolve(self.LE, np.asarray(cE, dtype=float)[:, :, None])[:, :, 0]
        zR = None
        if self.layout.R:
            zR = np.asarray(cR, dtype=float) - self.F_t(wE.reshape(-1, 1))[:, 0]
        return self.backward(wE, zR)

    def diag_inverse(self) -> list[np.ndarray]:
        """Diagonal ``q × q`` blocks of ``K⁻¹`` per factor (caller's order), (G_k, q_k, q_k)."""
        lay = self.layout
        LE = self.LE
        G, q, _ = LE.shape
        Linv = np.linalg.inv(LE) if q > 1 else 1.0 / LE
        Dinv = np.einsum("gji,gjk->gik", Linv, Linv)         # (L Lᵀ)⁻¹ = L⁻ᵀ L⁻¹
        out: list = [None] * len(lay.factors)
        if lay.R:
            n_R = lay.n_R
            Kinv = self.schur_solve(np.eye(n_R))
            for k, off in zip(lay.R, lay.r_offsets):
                f = lay.factors[k]
                blk = Kinv[off:off + f.size, off:off + f.size]
                idx = np.arange(f.n_levels)[:, None] * f.q + np.arange(f.q)[None, :]
                out[k] = blk[idx[:, :, None], idx[:, None, :]]
            Y = _blockdiag(np.transpose(Linv, (0, 2, 1))) @ self.F      # L_E⁻ᵀ F
            T = np.asarray(Y @ Kinv)                                      # (n_E, n_R)
            if isinstance(Y, np.ndarray):
                Yd = Y
            else:
                Y = sp.csr_matrix(Y)
                Yd = Y.toarray() if Y.shape[0] * Y.shape[1] < 5e7 else None
            if Yd is not None:
                extra = np.einsum("gin,gjn->gij", T.reshape(G, q, -1), Yd.reshape(G, q, -1))
            else:
                extra = np.zeros((G, q, q))
                for i in range(q):
                    for j in range(q):
                        rows_i = np.arange(G) * q + i
                        rows_j = np.arange(G) * q + j
                        extra[:, i, j] = np.asarray(
                            Y[rows_j].multiply(T[rows_i]).sum(axis=1)).ravel()
            Dinv = Dinv + extra
        out[lay.E] = Dinv
        return out

    def to_dense(self) -> np.ndarray:
        """``L`` as a dense matrix in the layout's order ``[E; R]`` (dense Schur factor only; for checks)."""
        if not self.schur_dense:
            raise ValueError("to_dense needs a dense Schur factor")
        lay = self.layout
        G, q, _ = self.LE.shape
        nE = G * q
        n = nE + lay.n_R
        L = np.zeros((n, n))
        L[:nE, :nE] = _blockdiag(self.LE).toarray()
        if lay.R:
            F = self.F
            L[nE:, :nE] = (F.toarray() if sp.issparse(F) else F).T
            L[nE:, nE:] = np.tril(self.LR)
        return L
