"""Profiled REML / ML deviance of a Gaussian LMM as a function of θ (lme4's ``mkLmerDevfun``).

Notation as in Bates, Mächler, Bolker & Walker (2015) and ``shared/notes/marginal-lmm.md``:
``b = Λ u``, ``u ~ N(0, σ² I)``, ``K(θ) = Λᵀ Zᵀ Z Λ + I = L Lᵀ``.

The random-effect unknowns are split in two parts:

* ``E``: the factor with most unknowns (levels × q). Its own block of ``K`` is block
  diagonal (one ``q × q`` block per level), so it is factorised by a vectorised batched
  ``q × q`` Cholesky over levels (no loop over groups).
* ``R``: all other factors (nested outer factors, crossed factors). Their block of ``K``
  after eliminating ``E`` (the Schur complement ``K_RR − F Fᵀ``, ``F = L_E⁻¹ K_ER``) is
  factorised densely (LAPACK) when small, else by a sparse LDLᵀ (``qdldl`` with AMD).

With one grouping factor ``R`` is empty and every evaluation costs
``O(G (q³ + q² p) + p³)``, independent of the number of rows: all data enter through
cross-products computed once (:class:`Stats`, from the statistics layer
:mod:`bayes_hlm.statistics` that the Bayesian backend and the Dask pass share).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from scipy.linalg.lapack import dpotrf as _potrf, dpotrs as _potrs

from ..spec.design import Design
from ..statistics import (block_columns, block_cross, factor_blocks, global_cross, indicator_csr,
                          sparse_cross, stacked_csr)

DENSE_MAX = 4000  # remainder sizes up to this use a dense Cholesky

__all__ = ["ThetaMap", "Stats", "DevFun", "Evaluation", "make_devfun"]


# --------------------------------------------------------------------------- #
# θ ↔ Λ
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class FactorInfo:
    """The merged terms of one grouping factor (columns concatenated in formula order)."""

    name: str
    term_index: tuple[int, ...]   # indices into design.groups
    terms: tuple[str, ...]        # column names (concatenated)
    term_slices: tuple[slice, ...]
    n_levels: int
    levels: object
    codes: np.ndarray
    Z: np.ndarray                 # (N, q)
    # Λ entries: Λ[rows[i], cols[i]] = θ[tidx[i]]
    rows: np.ndarray
    cols: np.ndarray
    tidx: np.ndarray

    @property
    def q(self) -> int:
        return len(self.terms)

    @property
    def size(self) -> int:
        return self.q * self.n_levels


@dataclass(frozen=True)
class ThetaMap:
    """Layout of θ: per term in formula order, lower-triangular Λ elements column-major.

    Correlated terms (``(x|g)``) contribute ``q(q+1)/2`` elements, uncorrelated (or
    scalar) terms their diagonal only. Diagonal elements have lower bound 0.
    """

    factors: tuple[FactorInfo, ...]
    n_theta: int
    lower: np.ndarray
    names: tuple[str, ...]
    theta0: np.ndarray

    def lambdas(self, theta: np.ndarray) -> list[np.ndarray]:
        out = []
        for f in self.factors:
            L = np.zeros((f.q, f.q))
            L[f.rows, f.cols] = theta[f.tidx]
            out.append(L)
        return out

    def factor(self, name: str) -> FactorInfo:
        for f in self.factors:
            if f.name == name:
                return f
        raise KeyError(name)


def make_theta_map(design: Design) -> ThetaMap:
    """θ layout of ``design``: its terms merged per factor (:func:`~bayes_hlm.statistics.factor_blocks`)."""
    factors = []
    t = 0
    lower, names, theta0 = [], [], []
    for blk in factor_blocks(design):
        fname, idx = blk.factor, blk.term_index
        gs = [design.groups[k] for k in idx]
        g0 = gs[0]
        terms, slices, rows, cols, tidx = [], [], [], [], []
        off = 0
        for g in gs:
            q = g.q
            slices.append(slice(off, off + q))
            terms.extend(g.terms)
            corr = g.correlated and q > 1
            for j in range(q):          # column-major lower triangle (lme4 order)
                for i in range(j, q):
                    if i != j and not corr:
                        continue
                    rows.append(off + i)
                    cols.append(off + j)
                    tidx.append(t)
                    lower.append(0.0 if i == j else -np.inf)
                    theta0.append(1.0 if i == j else 0.0)
                    names.append(f"{fname}.{g.terms[i]}" if i == j
                                 else f"{fname}.{g.terms[i]}.{g.terms[j]}")
                    t += 1
            off += q
        codes, Z = block_columns(design, blk)
        factors.append(FactorInfo(
            name=fname, term_index=tuple(idx), terms=tuple(terms), term_slices=tuple(slices),
            n_levels=g0.n_levels, levels=g0.levels, codes=codes,
            Z=Z, rows=np.array(rows, dtype=int), cols=np.array(cols, dtype=int),
            tidx=np.array(tidx, dtype=int)))
    return ThetaMap(factors=tuple(factors), n_theta=t, lower=np.array(lower),
                    names=tuple(names), theta0=np.array(theta0))


# --------------------------------------------------------------------------- #
# sufficient statistics (the statistics layer; one pass over the rows)
# --------------------------------------------------------------------------- #
def _outer_products(A: sp.csr_matrix, n: int):
    """Sparse P with ``(Aᵀ diag(w) A).ravel()[pos] = P @ w`` (row outer products of A)."""
    A = A.tocsr()
    A.sort_indices()
    G = A.shape[0]
    ng = np.diff(A.indptr)
    row_of = np.repeat(np.arange(G), ng)
    per = ng[row_of]
    first = np.repeat(np.arange(A.nnz), per)
    cum = np.concatenate([[0], np.cumsum(per)[:-1]])
    partner = A.indptr[row_of][first] + (np.arange(len(first)) - cum[first])
    vals = A.data[first] * A.data[partner]
    lin = A.indices[first].astype(np.int64) * n + A.indices[partner]
    pos, inv = np.unique(lin, return_inverse=True)
    P = sp.csr_matrix((vals, (inv, row_of[first])), shape=(len(pos), G))
    return P, pos


def remainder_Z(tmap: ThetaMap, R: tuple[int, ...]) -> sp.csr_matrix:
    """Sparse ``Z_R`` of the remainder factors ``R`` side by side (level-major per factor)."""
    return stacked_csr([(tmap.factors[k].codes, tmap.factors[k].Z, tmap.factors[k].n_levels)
                        for k in R])


def response_cross(f: FactorInfo, y: np.ndarray) -> np.ndarray:
    """``Z_gᵀ y_g`` per level of factor ``f`` (G, q) (e.g. for a simulated response)."""
    return block_cross(f.codes, f.n_levels, f.Z, y=y)["c"]


@dataclass
class Stats:
    """Cross-products of ``[Z X y]`` that the criterion needs (no per-row data kept)."""

    N: int
    p: int
    XtX: np.ndarray
    Xty: np.ndarray
    yty: float
    E: int                      # index of the eliminated factor in ThetaMap.factors
    R: tuple[int, ...]          # indices of the remainder factors
    A_E: np.ndarray             # (G, q, q)
    BC_E: np.ndarray            # (G, q, p+1): Z_gᵀ [X y]
    A_ER: sp.csr_matrix | None = None   # (n_E, n_R)
    A_RR: sp.csr_matrix | None = None   # (n_R, n_R)
    BC_R: np.ndarray | None = None      # (n_R, p+1)
    r_offsets: tuple[int, ...] = ()
    n_R: int = 0
    dense_R: bool = False
    scalar_R: bool = False          # all factors q = 1, large remainder: outer-product path
    P: sp.csr_matrix | None = None  # (n_pairs, G_E): vec(A_REᵀ diag(w) A_ER) = P @ w
    P_pos: np.ndarray | None = None
    A_ER_d: np.ndarray | None = None
    A_RR_d: np.ndarray | None = None


def compute_stats(design: Design, tmap: ThetaMap) -> Stats:
    """The cross-products of ``[Z X y]`` the criterion needs (:mod:`bayes_hlm.statistics`)."""
    X = np.asarray(design.X, dtype=float)
    y = np.asarray(design.working_y, dtype=float)
    N, p = X.shape
    sizes = [f.size for f in tmap.factors]
    E = int(np.argmax(sizes))
    R = tuple(k for k in range(len(tmap.factors)) if k != E)
    fE = tmap.factors[E]
    blk = block_cross(fE.codes, fE.n_levels, fE.Z, X, y)
    BC_E = np.concatenate([blk["B"], blk["c"][:, :, None]], axis=2)
    g = global_cross(X, y)
    st = Stats(N=N, p=p, XtX=g["XtX"], Xty=g["Xty"], yty=g["yty"], E=E, R=R, A_E=blk["A"], BC_E=BC_E)
    if R:
        cr = sparse_cross(indicator_csr(fE.codes, fE.Z, fE.size), remainder_Z(tmap, R), X, y)
        st.A_ER = cr["ERt"]
        st.A_RR = cr["RtR"]
        st.BC_R = np.column_stack([cr["RtX"], cr["Rty"]])
        offs, o = [], 0
        for k in R:
            offs.append(o)
            o += tmap.factors[k].size
        st.r_offsets = tuple(offs)
        st.n_R = o
        if st.A_ER.shape[0] * o * o <= 5e7:
            st.dense_R = True
            st.A_ER_d = st.A_ER.toarray()
            st.A_RR_d = st.A_RR.toarray()
        elif all(f.q == 1 for f in tmap.factors) and o <= DENSE_MAX:
            st.scalar_R = True
            st.A_RR_d = st.A_RR.toarray()
            st.P, st.P_pos = _outer_products(st.A_ER, o)
    return st


# --------------------------------------------------------------------------- #
# batched small linear algebra
# --------------------------------------------------------------------------- #
def batched_chol(M: np.ndarray) -> np.ndarray:
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
    """Solve L X = B for lower-triangular (G, q, q) L and (G, q, k) B."""
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
    """Solve Lᵀ X = B for lower-triangular (G, q, q) L and (G, q, k) B."""
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
# evaluation
# --------------------------------------------------------------------------- #
@dataclass
class Evaluation:
    """Everything computed at one θ (enough for the result builder)."""

    theta: np.ndarray
    ldL2: float                 # log|K| = log|L|²
    ldS: float                  # log|S| = log|RX|²
    S: np.ndarray               # XᵀV⁻¹X (unit σ)
    beta: np.ndarray
    r2: float                   # penalised RSS at (β̂, û)
    LE: np.ndarray              # (G, q, q) Cholesky blocks of the E part
    WE: np.ndarray              # (G, q, p+1) L_E⁻¹ Λᵀ Zᵀ [X y]
    lambdas: list
    F: sp.csr_matrix | None = None
    KR: object = None           # dense Cholesky factor (lower) or sparse solver
    KR_dense: bool = True
    rhsR: np.ndarray | None = None
    extra: dict = field(default_factory=dict)


class DevFun:
    """Profiled deviance ``θ -> d(θ)`` (REML criterion or ML deviance), like lme4's devfun."""

    def __init__(self, design: Design, reml: bool = True, tmap: ThetaMap | None = None,
                 stats: Stats | None = None):
        self.design = design
        self.reml = bool(reml)
        self.tmap = tmap or make_theta_map(design)
        self.stats = stats or compute_stats(design, self.tmap)
        st = self.stats
        if st.R:
            fE = self.tmap.factors[st.E]
            self._IR = sp.identity(st.n_R, format="csr")
            self._GE = fE.n_levels
        self.n_evals = 0

    def _lam_R_dense(self, lams) -> np.ndarray:
        st = self.stats
        out = np.zeros((st.n_R, st.n_R))
        for k, off in zip(st.R, st.r_offsets):
            f = self.tmap.factors[k]
            L = lams[k]
            blk = out[off:off + f.size, off:off + f.size]
            for g in range(f.n_levels):
                blk[g * f.q:(g + 1) * f.q, g * f.q:(g + 1) * f.q] = L
        return out

    # -- public -----------------------------------------------------------
    @property
    def lower(self) -> np.ndarray:
        return self.tmap.lower

    @property
    def theta0(self) -> np.ndarray:
        return self.tmap.theta0.copy()

    def __call__(self, theta) -> float:
        return self.deviance(self.evaluate(theta, full=False))

    def deviance(self, ev: Evaluation) -> float:
        N, p = self.stats.N, self.stats.p
        if ev.r2 <= 0 or not np.isfinite(ev.r2):
            return np.inf
        if self.reml:
            nmp = N - p
            return ev.ldL2 + ev.ldS + nmp * (1.0 + np.log(2.0 * np.pi * ev.r2 / nmp))
        return ev.ldL2 + N * (1.0 + np.log(2.0 * np.pi * ev.r2 / N))

    def deviance_unprofiled(self, ev: Evaluation, sigma: float) -> float:
        """Deviance in (θ, σ) with β profiled (lmerTest's ``devfun_vp``)."""
        N, p = self.stats.N, self.stats.p
        s2 = sigma * sigma
        dev = ev.ldL2 + ev.r2 / s2 + N * np.log(2 * np.pi * s2)
        if self.reml:
            dev += ev.ldS - p * np.log(2 * np.pi * s2)
        return dev

    def sigma_hat(self, ev: Evaluation) -> float:
        N, p = self.stats.N, self.stats.p
        return float(np.sqrt(ev.r2 / ((N - p) if self.reml else N)))

    def evaluate(self, theta, full: bool = True) -> Evaluation:
        self.n_evals += 1
        theta = np.asarray(theta, dtype=float)
        st = self.stats
        tm = self.tmap
        lams = tm.lambdas(theta)
        LamE = lams[st.E]
        q = LamE.shape[0]
        p = st.p
        # E block: D_g = I + Λᵀ A_g Λ
        if q == 1:
            l = LamE[0, 0]
            D = 1.0 + (l * l) * st.A_E
            LE = np.sqrt(D)
            WE = (l * st.BC_E) / LE
        else:
            D = LamE.T @ st.A_E @ LamE
            D[:, np.arange(q), np.arange(q)] += 1.0
            LE = batched_chol(D)
            WE = batched_fsolve(LE, LamE.T @ st.BC_E)
        ldL2 = 2.0 * float(np.sum(np.log(LE[:, np.arange(q), np.arange(q)])))
        G = WE.reshape(-1, p + 1)
        gram = G.T @ G
        ev_extra: dict = {}
        F = KR = rhsR = None
        dense = True
        if st.R:
            if st.scalar_R:
                lE = LamE[0, 0]
                lamR = np.concatenate([np.full(tm.factors[k].n_levels, lams[k][0, 0]) for k in st.R])
                dinv = (lE * lE) / D[:, 0, 0]
                Mv = st.P @ dinv
                Mfull = st.A_RR_d.copy().ravel()
                Mfull[st.P_pos] -= Mv
                KRm = Mfull.reshape(st.n_R, st.n_R) * np.outer(lamR, lamR)
                KRm[np.diag_indices(st.n_R)] += 1.0
                scaleE = lE / LE[:, 0, 0]
                rhsR = lamR[:, None] * (st.BC_R - st.A_ER.T @ (scaleE[:, None] * G))
                if full:
                    F = (sp.diags(scaleE) @ st.A_ER @ sp.diags(lamR)).tocsr()
            else:
                if st.dense_R:
                    LamR = self._lam_R_dense(lams)
                    C3 = st.A_ER_d.reshape(self._GE, q, st.n_R)
                    if q > 1:
                        C3 = LamE.T @ C3
                    else:
                        C3 = C3 * LamE[0, 0]
                    C3 = C3 @ LamR
                    F = batched_fsolve(LE, C3).reshape(-1, st.n_R)
                    KRm = LamR.T @ st.A_RR_d @ LamR - F.T @ F
                    KRm[np.diag_indices(st.n_R)] += 1.0
                    rhsR = LamR.T @ st.BC_R - F.T @ G
                else:
                    LamR = sp.block_diag([sp.kron(sp.identity(tm.factors[k].n_levels), lams[k])
                                          for k in st.R], format="csr")
                    LamEblk = sp.kron(sp.identity(self._GE), LamE.T, format="csr") if q > 1 \
                        else None
                    C = st.A_ER @ LamR
                    C = (LamEblk @ C) if q > 1 else C * LamE[0, 0]
                    Linv = np.linalg.inv(LE) if q > 1 else 1.0 / LE
                    F = (_blockdiag(Linv) @ C).tocsr()
                    KRm = (LamR.T @ st.A_RR @ LamR) - (F.T @ F) + self._IR
                    rhsR = LamR.T @ st.BC_R - F.T @ G
            if st.n_R <= DENSE_MAX:
                Kd = KRm if isinstance(KRm, np.ndarray) else KRm.toarray()
                try:
                    LR = sla.cholesky(Kd, lower=True, check_finite=False)
                except np.linalg.LinAlgError:
                    return self._bad(theta, lams)
                WR = sla.solve_triangular(LR, rhsR, lower=True, check_finite=False)
                ldL2 += 2.0 * float(np.sum(np.log(np.diag(LR))))
                gram = gram + WR.T @ WR
                KR = LR
            else:
                import qdldl
                dense = False
                Ku = sp.triu(KRm, format="csc")
                solver = qdldl.Solver(Ku, upper=True)
                _, Dd, _ = solver.factors()
                if np.any(Dd <= 0):
                    return self._bad(theta, lams)
                ldL2 += float(np.sum(np.log(Dd)))
                sol = np.column_stack([solver.solve(np.ascontiguousarray(rhsR[:, j]))
                                       for j in range(p + 1)])
                gram = gram + rhsR.T @ sol
                KR = solver
        S = st.XtX - gram[:p, :p]
        s = st.Xty - gram[:p, p]
        if p:
            RX, info = _potrf(S, lower=1, clean=1)
            if info != 0:
                return self._bad(theta, lams)
            beta, _ = _potrs(RX, s, lower=1)
            ldS = 2.0 * float(np.sum(np.log(np.diag(RX))))
        else:
            beta = np.zeros(0)
            ldS = 0.0
        r2 = st.yty - gram[p, p] - float(s @ beta)
        return Evaluation(theta=theta, ldL2=ldL2, ldS=ldS, S=S, beta=beta, r2=r2, LE=LE, WE=WE,
                          lambdas=lams, F=F, KR=KR, KR_dense=dense, rhsR=rhsR, extra=ev_extra)

    def _bad(self, theta, lams) -> Evaluation:
        p = self.stats.p
        return Evaluation(theta=theta, ldL2=np.inf, ldS=np.inf, S=np.full((p, p), np.nan),
                          beta=np.full(p, np.nan), r2=np.nan, LE=None, WE=None, lambdas=lams)

    # -- solves with K (result stage) ----------------------------------------
    def _KR_solve(self, ev: Evaluation, B: np.ndarray) -> np.ndarray:
        if ev.KR_dense:
            return sla.cho_solve((ev.KR, True), B, check_finite=False)
        B2 = B.reshape(B.shape[0], -1)
        out = np.column_stack([ev.KR.solve(np.ascontiguousarray(B2[:, j]))
                               for j in range(B2.shape[1])])
        return out.reshape(B.shape)

    def conditional_modes(self, ev: Evaluation) -> list[np.ndarray]:
        """Spherical modes ``u`` per factor as (G_k, q_k) arrays, at (θ, β̂)."""
        st = self.stats
        p = st.p
        beta = ev.beta
        zE = ev.WE[:, :, p] - ev.WE[:, :, :p] @ beta        # L_E⁻¹ v_E   (G, q)
        out: list = [None] * len(self.tmap.factors)
        if st.R:
            zR = ev.rhsR[:, p] - ev.rhsR[:, :p] @ beta        # v_R − Fᵀ z_E (already)
            uR = self._KR_solve(ev, zR)
            zE = zE - (ev.F @ uR).reshape(zE.shape)
            for k, off in zip(st.R, st.r_offsets):
                f = self.tmap.factors[k]
                out[k] = uR[off:off + f.size].reshape(f.n_levels, f.q)
        uE = batched_bsolve(ev.LE, zE[:, :, None])[:, :, 0]
        out[st.E] = uE
        return out

    def conditional_cov(self, ev: Evaluation) -> list[np.ndarray]:
        """Diagonal blocks of K⁻¹ per factor, as (G_k, q_k, q_k) (unit σ, spherical scale)."""
        st = self.stats
        LE = ev.LE
        G, q, _ = LE.shape
        Linv = np.linalg.inv(LE) if q > 1 else 1.0 / LE
        Dinv = np.einsum("gji,gjk->gik", Linv, Linv)         # (L Lᵀ)⁻¹ = L⁻ᵀ L⁻¹
        out: list = [None] * len(self.tmap.factors)
        if st.R:
            if ev.KR_dense:
                Kinv = sla.cho_solve((ev.KR, True), np.eye(st.n_R), check_finite=False)
            else:
                Kinv = self._KR_solve(ev, np.eye(st.n_R))
            for k, off in zip(st.R, st.r_offsets):
                f = self.tmap.factors[k]
                blk = Kinv[off:off + f.size, off:off + f.size]
                idx = np.arange(f.n_levels)[:, None] * f.q + np.arange(f.q)[None, :]
                out[k] = blk[idx[:, :, None], idx[:, None, :]]
            Y = _blockdiag(np.transpose(Linv, (0, 2, 1))) @ ev.F      # L_E⁻ᵀ F = D⁻¹C
            T = np.asarray(Y @ Kinv)                          # (n_E, n_R)
            if isinstance(Y, np.ndarray):
                Yd = Y
            else:
                Y = sp.csr_matrix(Y)
                Yd = Y.toarray() if Y.shape[0] * Y.shape[1] < 5e7 else None
            if Yd is not None:
                Tg = T.reshape(G, q, -1)
                Yg = Yd.reshape(G, q, -1)
                extra = np.einsum("gin,gjn->gij", Tg, Yg)
            else:
                extra = np.zeros((G, q, q))
                for i in range(q):
                    for j in range(q):
                        rows_i = np.arange(G) * q + i
                        rows_j = np.arange(G) * q + j
                        extra[:, i, j] = np.asarray(
                            Y[rows_j].multiply(T[rows_i]).sum(axis=1)).ravel()
            Dinv = Dinv + extra
        out[st.E] = Dinv
        return out


def make_devfun(design: Design, reml: bool = True) -> DevFun:
    """lme4's ``mkLmerDevfun``: the profiled criterion as a callable of θ."""
    return DevFun(design, reml=reml)
