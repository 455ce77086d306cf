"""The random-effect side of glmer's penalised IRLS: ``ZΛ`` and the penalised system
``K = ΛᵀZᵀWZΛ + I`` (lme4's ``merPredD``).

θ ↔ Λ and the layout of the spherical effects ``u`` (per grouping factor, the factor's terms
merged, formula order, level-major: ``u[off + g q + a]``) are the statistics layer's
:class:`~bayes_hlm.statistics.theta_map.ThetaMap`, shared with the REML criterion.
Implementations of one interface:

* :class:`BlockSystem` -- one grouping factor: ``K`` is block diagonal with one ``q × q`` block per
  level, assembled by per-level sums (``bincount``) and factorised by a batched Cholesky; every
  PIRLS step costs ``O(N q² + G q³)`` without a loop over groups;
* :class:`SparseSystem` -- several factors (nested or crossed): sparse ``ZΛ``; ``K`` factorised
  by :mod:`bayes_hlm.statistics.blocked_cholesky` (the one blocked sparse Cholesky, shared with
  the REML criterion).
"""

from __future__ import annotations

import numpy as np

from ..statistics import stacked_csr
from ..statistics.theta_map import ThetaMap

__all__ = ["BlockSystem", "SparseSystem", "make_system"]


# ----------------------------------------------------------------------------- systems
class BlockSystem:
    """One grouping factor: ``K`` block diagonal (G blocks of q × q)."""

    kind = "block"

    def __init__(self, layout: ThetaMap):
        self.layout = layout
        f = layout.factors[0]
        self.f = f
        self.codes = f.codes
        self.G, self.q = f.n_levels, f.q
        self.Q = layout.n_u
        self.Z = np.ascontiguousarray(f.Z, dtype=float)
        self.set_theta(layout.theta0)

    def set_theta(self, theta):
        self.lam = np.ascontiguousarray(self.layout.lambdas(theta)[0], dtype=float)
        self._ZL = None

    @property
    def ZL(self) -> np.ndarray:
        """Rows of ``ZΛ`` (N, q), formed when first asked for at this θ (PIRLS's compiled
        passes form them on the fly)."""
        if self._ZL is None:
            from .kernels import times_lambda

            self._ZL = times_lambda(self.Z, self.lam)
        return self._ZL

    def zl_u(self, u):
        from .kernels import row_dot

        return row_dot(self.codes, self.ZL, np.ascontiguousarray(u).reshape(self.G, self.q))

    def zlt(self, v):
        """``ΛᵀZᵀ v`` (Q,)."""
        from .kernels import group_sums

        return group_sums(self.codes, self.ZL, np.ascontiguousarray(v, dtype=float),
                          self.G).ravel()

    def zlt_mat(self, M):
        """``ΛᵀZᵀ M`` (Q, p)."""
        return np.stack([self.zlt(M[:, j]) for j in range(M.shape[1])], axis=1)

    def factor(self, W):
        from .kernels import block_cross

        return BlockFactor(block_cross(self.codes, self.ZL, np.ascontiguousarray(W), self.G))


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
    """Several grouping factors: ``ZΛ`` products through sparse ``ZΛ``; ``K`` factorised by the
    statistics layer's blocked Cholesky (largest factor's block-diagonal part first, the small
    Schur complement of the others after it; MixedModels.jl's layout) from ``Zᵀ W Z`` per
    PIRLS step."""

    kind = "sparse"

    def __init__(self, layout: ThetaMap):
        from ..statistics.blocked_cholesky import BlockedLayout, FactorColumns

        self.layout = layout
        self.Q = layout.n_u
        self.blocked = BlockedLayout([FactorColumns(f.codes, f.Z, f.n_levels)
                                      for f in layout.factors])
        self.set_theta(layout.theta0)

    def set_theta(self, theta):
        self.lams = self.layout.lambdas(theta)
        self.ZL = stacked_csr([(f.codes, f.Z @ L, f.n_levels)
                               for f, L in zip(self.layout.factors, self.lams)])
        self.ZLt = self.ZL.T.tocsr()

    def zl_u(self, u):
        return self.ZL @ u

    def zlt(self, v):
        return self.ZLt @ v

    def zlt_mat(self, M):
        return np.asarray(self.ZLt @ M)

    def factor(self, W):
        fac = self.blocked.cross(W).factor(self.lams)
        if fac is None:
            raise np.linalg.LinAlgError("K is not positive definite")
        return SparseFactor(fac, self.layout, self.blocked)


class SparseFactor:
    """A blocked factor of ``K`` seen in glmer's ``u`` layout (formula order, level-major)."""

    def __init__(self, fac, layout: ThetaMap, blocked):
        self.fac = fac
        self.layout = layout
        self.blocked = blocked
        self.logdet = fac.logdet

    def _split(self, b):
        bl = self.blocked
        fE = self.layout.factors[bl.E]
        cE = b[fE.offset:fE.offset + fE.size].reshape(fE.n_levels, fE.q)
        cR = np.concatenate([b[self.layout.factors[k].offset:
                               self.layout.factors[k].offset + self.layout.factors[k].size]
                             for k in bl.R]) if bl.R else None
        return cE, cR

    def _solve1(self, b):
        cE, cR = self._split(np.asarray(b, dtype=float))
        uE, uR = self.fac.solve(cE, cR)
        parts = self.blocked.split(uE, uR)
        return np.concatenate([p.reshape(-1) for p in parts])

    def solve(self, b):
        b = np.asarray(b, dtype=float)
        if b.ndim == 1:
            return self._solve1(b)
        return np.stack([self._solve1(b[:, j]) for j in range(b.shape[1])], axis=1)

    def block_inverse(self) -> list[np.ndarray]:
        return self.fac.diag_inverse()


class LUSystem(SparseSystem):
    """Several factors, small problems: ``K`` assembled as a sparse matrix and factorised by
    SuperLU with a symmetric fill-reducing order (no pivoting: ``K`` is positive definite), so
    ``log det K`` is the sum of ``log U_ii``. Far less Python overhead per PIRLS step than the
    blocked factor when ``K`` has a few hundred unknowns (grouseticks: 584)."""

    kind = "lu"

    def factor(self, W):
        import scipy.sparse as sp

        K = (self.ZLt @ self.ZL.multiply(W[:, None]).tocsr()
             + sp.identity(self.Q, format="csr")).tocsc()
        return LUFactor(K, self.layout)


class LUFactor:
    def __init__(self, K, layout):
        from scipy.sparse.linalg import splu

        self.layout = layout
        self.n = K.shape[0]
        self.lu = splu(K, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                       options={"SymmetricMode": True})
        d = self.lu.U.diagonal()
        if np.any(d <= 0) or not np.all(np.isfinite(d)):
            raise np.linalg.LinAlgError("K is not positive definite")
        self.logdet = float(np.sum(np.log(d)))

    def solve(self, b):
        return self.lu.solve(np.asarray(b, dtype=float))

    def block_inverse(self) -> list[np.ndarray]:
        out = []
        for f in self.layout.factors:
            blocks = np.empty((f.n_levels, f.q, f.q))
            idx = f.offset + np.arange(f.n_levels)[:, None] * f.q + np.arange(f.q)[None, :]
            for a in range(f.q):
                E = np.zeros((self.n, f.n_levels))
                E[idx[:, a], np.arange(f.n_levels)] = 1.0
                X = self.lu.solve(E)                       # columns of K⁻¹
                for b in range(f.q):
                    blocks[:, b, a] = X[idx[:, b], np.arange(f.n_levels)]
            out.append(blocks)
        return out


#: several factors: :class:`LUSystem` when K has at most LU_MAX unknowns and the blocked
#: factor's dense remainder (all but the largest factor) would have more than BLOCKED_R_MAX
#: (measured: verbagg, remainder 24: blocked 1.0 s CPU vs LU 4.9 s; grouseticks with an
#: observation-level effect, remainder 181: LU 3.1 s vs blocked 7.5 s; grouseticks BROOD +
#: LOCATION, remainder 63: LU 1.0 s vs blocked 2.4 s)
LU_MAX = 5000
BLOCKED_R_MAX = 32


def make_system(layout: ThetaMap):
    from .crossed import CrossedSystem, fits_crossed

    if len(layout.factors) == 1:
        return BlockSystem(layout)
    if fits_crossed(layout):
        return CrossedSystem(layout)
    sizes = sorted(f.size for f in layout.factors)
    n_R = sum(sizes[:-1])
    if layout.n_u <= LU_MAX and n_R > BLOCKED_R_MAX:
        return LUSystem(layout)
    return SparseSystem(layout)
