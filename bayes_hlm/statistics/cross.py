"""Cross-products of design matrices: global, per group (dense) and between factors (sparse).

The in-memory entry points over the pair-sum kernel of :mod:`.pairs`, used by the
statistics of the Bayesian backend (:mod:`.compute`), by the REML criterion
(:mod:`bayes_hlm.reml.criterion`) and, through :func:`.pairs.single_pairs` on a
partition's data columns, by the Dask statistics pass.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .pairs import single_pairs

__all__ = ["PatternCross", "block_cross", "global_cross", "group_cross", "indicator_csr", "sparse_cross",
           "stacked_csr"]


def global_cross(X: np.ndarray, y: np.ndarray) -> dict:
    """``N, yᵀy, Xᵀy, XᵀX`` of the rows (BLAS products)."""
    return dict(N=int(y.shape[0]), yty=float(y @ y), Xty=X.T @ y, XtX=X.T @ X)


def _is_ones(v: np.ndarray) -> bool:
    return bool(v.shape[0]) and v[0] == 1.0 and bool(np.all(v == 1.0))


class _Columns:
    """Distinct columns of some matrices: columns of ones become -1 (the kernel's ones
    column) and a column equal to one already listed is listed once."""

    def __init__(self):
        self.cols: list[np.ndarray] = []

    def index(self, v: np.ndarray) -> int:
        if _is_ones(v):
            return -1
        for k, c in enumerate(self.cols):
            if c is v or np.array_equal(c, v):
                return k
        self.cols.append(v)
        return len(self.cols) - 1

    def matrix(self, M: np.ndarray) -> list[int]:
        return [self.index(M[:, j]) for j in range(M.shape[1])]


def block_cross(codes: np.ndarray, G: int, Z: np.ndarray, X: np.ndarray | None = None,
                y: np.ndarray | None = None, W: np.ndarray | None = None, *,
                engine: str = "auto") -> dict:
    """Per-level cross-products of one factor's columns ``Z`` with ``Z``, ``X``, ``y`` (and ``W``).

    Parameters
    ----------
    codes : int array, shape (n,)
        Level of each row, ``0..G-1``.
    G : int
    Z : (n, q) array
    X : (n, p) array, optional
    y : (n,) array, optional
    W : (n, r) array, optional
        Extra columns (e.g. the outer factor's ``Z`` for a nested inner factor).
    engine : {"auto", "numba", "numpy"}
        See :func:`.pairs.pair_sums`; both give the same sums.

    Returns
    -------
    dict
        ``n_g`` (G,), ``A`` = ``Z_gᵀZ_g`` (G, q, q), ``B`` = ``Z_gᵀX_g`` (G, q, p),
        ``c`` = ``Z_gᵀy_g`` (G, q), ``zsum`` = ``Z_gᵀ1`` (G, q) and with ``W`` ``C`` =
        ``Z_gᵀW_g`` (G, q, r).  Each sum runs over the level's rows in row order.
    """
    n = Z.shape[0]
    C = _Columns()
    zi = C.matrix(Z)
    xi = C.matrix(X) if X is not None else []
    yi = C.index(y) if y is not None else -1
    wi = C.matrix(W) if W is not None else None
    cols = tuple(C.cols) if C.cols else (np.ones(n),)
    H, layout = single_pairs(cols, yi, xi, zi, codes, np.zeros(0, dtype=np.int64), G,
                             moments=False, wi=wi, engine=engine)
    f = layout.expand(H)
    out = {"n_g": f["n"], "A": f["A"], "B": f["B"], "c": f["c"], "zsum": f["zsum"]}
    if W is not None:
        out["C"] = f["C"]
    return out


def group_cross(codes: np.ndarray, G: int, U: np.ndarray, V: np.ndarray, *,
                engine: str = "auto") -> np.ndarray:
    """Per-level ``U_gᵀ V_g`` as (G, a, b) (the kernel of :func:`block_cross`)."""
    return block_cross(codes, G, U, W=V, engine=engine)["C"]


def indicator_csr(codes: np.ndarray, Z: np.ndarray, n_cols: int | None = None,
                  offset: int = 0) -> sp.csr_matrix:
    """Sparse ``n × (G q)`` matrix of one factor: row ``i`` holds ``Z[i]`` at columns
    ``offset + codes[i] * q + (0..q-1)`` (level-major), built straight in CSR."""
    Z = np.asarray(Z, dtype=np.float64)
    n = Z.shape[0]
    Z = Z.reshape(n, -1)
    q = Z.shape[1]
    codes = np.asarray(codes, dtype=np.int64)
    if n_cols is None:
        n_cols = offset + (int(codes.max()) + 1 if n else 0) * q
    indices = (offset + codes[:, None] * q + np.arange(q)).ravel()
    indptr = np.arange(0, n * q + 1, q, dtype=np.int64)
    return sp.csr_matrix((Z.ravel(), indices, indptr), shape=(n, n_cols))


def stacked_csr(parts: list[tuple[np.ndarray, np.ndarray, int]]) -> sp.csr_matrix:
    """Several factors side by side: ``parts`` = ``(codes, Z, G)`` each, columns
    ``[factor 0 (G_0 q_0) | factor 1 | ...]``, each level-major (one CSR, no hstack)."""
    n = parts[0][1].shape[0] if parts else 0
    cols, vals, off = [], [], 0
    for codes, Z, G in parts:
        Z = np.asarray(Z, dtype=np.float64).reshape(n, -1)
        q = Z.shape[1]
        cols.append(off + np.asarray(codes, dtype=np.int64)[:, None] * q + np.arange(q))
        vals.append(Z)
        off += G * q
    nper = sum(v.shape[1] for v in vals)
    indices = np.concatenate(cols, axis=1).ravel() if cols else np.zeros(0, dtype=np.int64)
    data = np.concatenate(vals, axis=1).ravel() if vals else np.zeros(0)
    indptr = np.arange(0, n * nper + 1, nper, dtype=np.int64) if nper else np.zeros(n + 1, np.int64)
    return sp.csr_matrix((data, indices, indptr), shape=(n, off))


def sparse_cross(ZE: sp.csr_matrix, ZR: sp.csr_matrix, X: np.ndarray,
                 y: np.ndarray | None = None) -> dict:
    """Cross-products with the sparse columns ``Z_R`` of other factors.

    Returns
    -------
    dict
        ``ERt`` = ``Z_Eᵀ Z_R`` and ``RtR`` = ``Z_Rᵀ Z_R`` (canonical CSR: summed
        duplicates, sorted indices), ``RtX`` = ``Z_Rᵀ X`` (m, p) and ``Rty`` = ``Z_Rᵀ y`` (m,;
        None without ``y``).
    """
    ZRt = ZR.T.tocsr()
    RtR = (ZRt @ ZR).tocsr()
    ERt = (ZE.T.tocsr() @ ZR).tocsr()
    for M in (RtR, ERt):
        M.sum_duplicates()
        M.sort_indices()
    return dict(ERt=ERt, RtR=RtR, RtX=np.asarray(ZRt @ X),
                Rty=None if y is None else np.asarray(ZRt @ y).ravel())


class PatternCross:
    """``Uᵀ diag(w) V`` on a sparsity pattern fixed once, for many weight vectors.

    ``U`` (``n × n_u``) and ``V`` (``n × n_v``) have a few entries per row, given as column
    indices ``ucols`` (n, a) / ``vcols`` (n, b); their values come with each call. The
    pattern holds every (U column, V column) pair that shares a row, whatever the values
    or weights (an exact zero stays an entry, where a sparse product would drop it), so
    structures built on it -- a blocked Cholesky's pair map -- stay valid from one
    weight vector to the next (penalised IRLS).
    """

    def __init__(self, ucols: np.ndarray, vcols: np.ndarray, n_u: int, n_v: int):
        ucols = np.asarray(ucols, dtype=np.int64)
        vcols = np.asarray(vcols, dtype=np.int64)
        keys = ucols[:, :, None] * n_v + vcols[:, None, :]
        uniq, inv = np.unique(keys.ravel(), return_inverse=True)
        rows = uniq // n_v
        self.shape = (int(n_u), int(n_v))
        self.indices = (uniq - rows * n_v).astype(np.int32 if n_v < 2 ** 31 else np.int64)
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_u))])
        self.pos = inv.reshape(keys.shape)

    @property
    def nnz(self) -> int:
        return int(self.indices.shape[0])

    def __call__(self, uvals: np.ndarray, vvals: np.ndarray,
                 w: np.ndarray | None = None) -> sp.csr_matrix:
        """``Uᵀ diag(w) V`` (canonical CSR on the fixed pattern) for values ``uvals`` (n, a),
        ``vvals`` (n, b) and row weights ``w`` (n,) (ones when None)."""
        prod = np.asarray(uvals, dtype=np.float64)[:, :, None] * np.asarray(vvals, dtype=np.float64)[:, None, :]
        if w is not None:
            prod *= np.asarray(w, dtype=np.float64)[:, None, None]
        data = np.bincount(self.pos.ravel(), weights=prod.ravel(), minlength=self.nnz)
        M = sp.csr_matrix((data, self.indices, self.indptr), shape=self.shape)
        M.has_sorted_indices = True
        return M
