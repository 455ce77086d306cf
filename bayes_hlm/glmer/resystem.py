"""The random-effect side of glmer's penalised IRLS: θ ↔ Λ, ``ZΛ`` and the penalised system
``K = ΛᵀZᵀWZΛ + I`` (lme4's ``merPredD``).

Spherical effects ``u`` are laid out per grouping factor (the factor's terms merged, formula
order), level-major: ``u[off + g q + a]``. Two implementations of one interface:

* :class:`BlockSystem` -- one grouping factor: ``K`` is block diagonal with one ``q × q`` block per
  level, assembled by per-level sums (``bincount``) and factorised by a batched Cholesky; every
  PIRLS step costs ``O(N q² + G q³)`` without a loop over groups;
* :class:`SparseSystem` -- several factors (nested or crossed): sparse ``ZΛ``; ``K`` factorised
  by :func:`factorize_spd` (dense LAPACK Cholesky up to :data:`DENSE_MAX` unknowns, sparse LU
  with a fill-reducing order beyond). That one function is the place to swap in a blocked
  sparse Cholesky.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ..statistics import block_columns, factor_blocks, stacked_csr

__all__ = ["ThetaLayout", "make_layout", "BlockSystem", "SparseSystem", "make_system",
           "factorize_spd", "DENSE_MAX"]

DENSE_MAX = 4000


@dataclass(frozen=True)
class FactorLayout:
    name: str
    term_index: tuple[int, ...]
    terms: tuple[str, ...]
    term_slices: tuple[slice, ...]
    correlated: tuple[bool, ...]
    n_levels: int
    levels: object
    codes: np.ndarray
    Z: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    tidx: np.ndarray
    offset: int                       # first index of this factor in u

    @property
    def q(self) -> int:
        return len(self.terms)

    @property
    def size(self) -> int:
        return self.q * self.n_levels


@dataclass(frozen=True)
class ThetaLayout:
    """θ: per term, the lower triangle of its Λ block column by column (lme4's order);
    diagonal elements have lower bound 0 and start at 1."""

    factors: tuple[FactorLayout, ...]
    lower: np.ndarray
    theta0: np.ndarray
    names: tuple[str, ...]
    n_u: int

    @property
    def n_theta(self) -> int:
        return len(self.lower)

    def lambdas(self, theta) -> list[np.ndarray]:
        out = []
        for f in self.factors:
            L = np.zeros((f.q, f.q))
            L[f.rows, f.cols] = np.asarray(theta)[f.tidx]
            out.append(L)
        return out


def make_layout(design) -> ThetaLayout:
    factors, lower, theta0, names = [], [], [], []
    t = off_u = 0
    for blk in factor_blocks(design):
        gs = [design.groups[k] for k in blk.term_index]
        terms, slices, corr, rows, cols, tidx = [], [], [], [], [], []
        off = 0
        for g in gs:
            q = g.q
            slices.append(slice(off, off + q))
            terms.extend(g.terms)
            c = bool(g.correlated and q > 1)
            corr.append(c)
            for j in range(q):
                for i in range(j, q):
                    if i != j and not c:
                        continue
                    rows.append(off + i)
                    cols.append(off + j)
                    tidx.append(t)
                    lower.append(0.0 if i == j else -np.inf)
                    theta0.append(1.0 if i == j else 0.0)
                    names.append(f"{blk.factor}.{g.terms[i]}" if i == j
                                 else f"{blk.factor}.{g.terms[i]}.{g.terms[j]}")
                    t += 1
            off += q
        codes, Z = block_columns(design, blk)
        f = FactorLayout(blk.factor, tuple(blk.term_index), tuple(terms), tuple(slices),
                         tuple(corr), gs[0].n_levels, gs[0].levels, codes, Z,
                         np.array(rows, int), np.array(cols, int), np.array(tidx, int), off_u)
        factors.append(f)
        off_u += f.size
    return ThetaLayout(tuple(factors), np.array(lower), np.array(theta0), tuple(names), off_u)


# ----------------------------------------------------------------------------- factorisation
class SPDFactor:
    """Cholesky-type factor of a symmetric positive-definite matrix: ``solve`` and ``logdet``."""

    def __init__(self, A):
        self.n = A.shape[0]
        if sp.issparse(A) and self.n > DENSE_MAX:
            from scipy.sparse.linalg import splu

            self._lu = splu(sp.csc_matrix(A), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                            options={"SymmetricMode": True})
            self.logdet = float(np.sum(np.log(np.abs(self._lu.U.diagonal()))))
            self._c = None
        else:
            Ad = A.toarray() if sp.issparse(A) else np.asarray(A)
            self._c = sla.cho_factor(Ad, lower=True, check_finite=False)
            self.logdet = 2.0 * float(np.sum(np.log(np.diag(self._c[0]))))

    def solve(self, b):
        if self._c is not None:
            return sla.cho_solve(self._c, b, check_finite=False)
        return self._lu.solve(np.asarray(b, dtype=float))

    def inverse(self) -> np.ndarray:
        return self.solve(np.eye(self.n))


def factorize_spd(A) -> SPDFactor:
    """Factorise ``K`` (dense or sparse SPD); the one swap point for a blocked sparse Cholesky."""
    return SPDFactor(A)


# ----------------------------------------------------------------------------- systems
class BlockSystem:
    """One grouping factor: ``K`` block diagonal (G blocks of q × q)."""

    kind = "block"

    def __init__(self, layout: ThetaLayout):
        self.layout = layout
        f = layout.factors[0]
        self.f = f
        self.codes = f.codes
        self.G, self.q = f.n_levels, f.q
        self.Q = layout.n_u
        self._pairs = [(a, b) for a in range(self.q) for b in range(a, self.q)]
        self.set_theta(layout.theta0)

    def set_theta(self, theta):
        self.lam = self.layout.lambdas(theta)[0]
        self.ZL = self.f.Z @ self.lam            # rows of ZΛ (N, q)

    def _bc(self, w):
        return np.bincount(self.codes, weights=w, minlength=self.G)

    def zl_u(self, u):
        U = u.reshape(self.G, self.q)
        return np.einsum("nq,nq->n", self.ZL, U[self.codes]) if self.q > 1 else \
            self.ZL[:, 0] * U[self.codes, 0]

    def zlt(self, v):
        """``ΛᵀZᵀ v`` (Q,)."""
        return np.stack([self._bc(v * self.ZL[:, a]) for a in range(self.q)], axis=1).ravel()

    def zlt_mat(self, M):
        """``ΛᵀZᵀ M`` (Q, p)."""
        return np.stack([self.zlt(M[:, j]) for j in range(M.shape[1])], axis=1)

    def factor(self, W):
        K = np.empty((self.G, self.q, self.q))
        for a, b in self._pairs:
            s = self._bc(W * self.ZL[:, a] * self.ZL[:, b])
            K[:, a, b] = s
            K[:, b, a] = s
        K[:, np.arange(self.q), np.arange(self.q)] += 1.0
        return BlockFactor(K)


class BlockFactor:
    def __init__(self, K):
        self.K = K
        self.L = np.linalg.cholesky(K)
        self.G, self.q = K.shape[0], K.shape[1]
        self.logdet = 2.0 * float(np.sum(np.log(np.diagonal(self.L, axis1=1, axis2=2))))

    def solve(self, b):
        b = np.asarray(b, dtype=float)
        if b.ndim == 1:
            B = b.reshape(self.G, self.q, 1)
            return np.linalg.solve(self.K, B).reshape(-1)
        p = b.shape[1]
        B = b.reshape(self.G, self.q, p)
        return np.linalg.solve(self.K, B).reshape(-1, p)

    def block_inverse(self) -> list[np.ndarray]:
        """Per factor, the (G, q, q) diagonal blocks of ``K⁻¹``."""
        return [np.linalg.inv(self.K)]

    def diag(self):
        return np.diagonal(self.K, axis1=1, axis2=2).reshape(-1)


class SparseSystem:
    """Several grouping factors: sparse ``ZΛ``."""

    kind = "sparse"

    def __init__(self, layout: ThetaLayout):
        self.layout = layout
        self.Q = layout.n_u
        self.set_theta(layout.theta0)

    def set_theta(self, theta):
        lams = self.layout.lambdas(theta)
        self.ZL = stacked_csr([(f.codes, f.Z @ L, f.n_levels)
                               for f, L in zip(self.layout.factors, lams)])
        self.ZLt = self.ZL.T.tocsr()

    def zl_u(self, u):
        return self.ZL @ u

    def zlt(self, v):
        return self.ZLt @ v

    def zlt_mat(self, M):
        return np.asarray(self.ZLt @ M)

    def factor(self, W):
        K = (self.ZLt @ self.ZL.multiply(W[:, None]).tocsr() + sp.identity(self.Q, format="csr"))
        return SparseFactor(K, self.layout)


class SparseFactor:
    def __init__(self, K, layout):
        self.K = K
        self.layout = layout
        self.F = factorize_spd(K)
        self.logdet = self.F.logdet

    def solve(self, b):
        return self.F.solve(b)

    def block_inverse(self) -> list[np.ndarray]:
        out = []
        for f in self.layout.factors:
            cols = np.arange(f.offset, f.offset + f.size)
            if self.F._c is not None:
                Kinv_cols = self.F.solve(_unit_cols(self.F.n, cols))
            else:
                Kinv_cols = self.F.solve(_unit_cols(self.F.n, cols))
            sub = Kinv_cols[cols]
            blocks = np.empty((f.n_levels, f.q, f.q))
            for a in range(f.q):
                for b in range(f.q):
                    blocks[:, a, b] = sub[np.arange(f.n_levels) * f.q + a,
                                          np.arange(f.n_levels) * f.q + b]
            out.append(blocks)
        return out

    def diag(self):
        return self.K.diagonal()


def _unit_cols(n, cols):
    E = np.zeros((n, len(cols)))
    E[cols, np.arange(len(cols))] = 1.0
    return E


def make_system(layout: ThetaLayout):
    return BlockSystem(layout) if len(layout.factors) == 1 else SparseSystem(layout)
