"""Profiled REML / ML deviance of a Gaussian LMM as a function of θ (lme4's ``mkLmerDevfun``).

Notation as in Bates, Mächler, Bolker & Walker (2015) and ``shared/notes/marginal-lmm.md``:
``b = Λ u``, ``u ~ N(0, σ² I)``, ``K(θ) = Λᵀ Zᵀ Z Λ + I = L Lᵀ``.

``K`` is factorised by the blocked sparse Cholesky of the statistics layer
(:mod:`bayes_hlm.statistics.blocked_cholesky`, MixedModels.jl's layout): the factor with
most unknowns ("E") first, its block diagonal factorised by a batched ``q × q`` Cholesky,
then the small dense Schur complement of the other factors ("R").

With one grouping factor ``R`` is empty and every evaluation costs
``O(G (q³ + q² p) + p³)``, independent of the number of rows: all data enter through
cross-products computed once (:class:`Stats`, from the statistics layer
:mod:`bayes_hlm.statistics` that the Bayesian backend and the Dask pass share); a new θ
only rescales them by Λθ and refactors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from scipy.linalg.lapack import dpotrf as _potrf, dpotrs as _potrs

from ..spec.design import Design
from ..statistics import block_cross, global_cross, stacked_csr
from ..statistics.blocked_cholesky import BlockedFactor, BlockedLayout, CrossBlocks, FactorColumns
# θ ↔ Λ lives in the statistics layer: one layout shared with glmer (lme4 shares it too)
from ..statistics.theta_map import FactorInfo, ThetaMap, make_theta_map  # noqa: F401

__all__ = ["ThetaMap", "Stats", "DevFun", "Evaluation", "make_devfun", "lme4_start"]


# --------------------------------------------------------------------------- #
# sufficient statistics (the statistics layer; one pass over the rows)
# --------------------------------------------------------------------------- #
def remainder_Z(tmap: ThetaMap, R: tuple[int, ...]) -> sp.csr_matrix:
    """Sparse ``Z_R`` of the remainder factors ``R`` side by side (level-major per factor)."""
    return stacked_csr([(tmap.factors[k].codes, tmap.factors[k].Z, tmap.factors[k].n_levels)
                        for k in R])


def response_cross(f: FactorInfo, y: np.ndarray) -> np.ndarray:
    """``Z_gᵀ y_g`` per level of factor ``f`` (G, q) (e.g. for a simulated response)."""
    return block_cross(f.codes, f.n_levels, f.Z, y=y)["c"]


@dataclass
class Stats:
    """Cross-products of ``[Z X y]`` that the criterion needs (no per-row data kept).

    The ``Z``-only blocks (``ZᵀZ``) and the factor order live in ``blocks``
    (:class:`~bayes_hlm.statistics.blocked_cholesky.CrossBlocks`); ``BC_E`` / ``BC_R``
    are ``Zᵀ[X y]`` in the same order.
    """

    N: int
    p: int
    XtX: np.ndarray
    Xty: np.ndarray
    yty: float
    E: int                      # index of the eliminated factor in ThetaMap.factors
    R: tuple[int, ...]          # indices of the remainder factors (decreasing size)
    BC_E: np.ndarray            # (G, q, p+1): Z_gᵀ [X y]
    blocks: CrossBlocks
    BC_R: np.ndarray | None = None      # (n_R, p+1)
    r_offsets: tuple[int, ...] = ()
    n_R: int = 0

    @property
    def A_E(self) -> np.ndarray:
        return self.blocks.A_E


def layout_of(tmap: ThetaMap) -> BlockedLayout:
    """The blocked-Cholesky layout of the model's factors (ThetaMap order)."""
    return BlockedLayout([FactorColumns(f.codes, f.Z, f.n_levels) for f in tmap.factors])


def compute_stats(design: Design, tmap: ThetaMap) -> Stats:
    """The cross-products of ``[Z X y]`` the criterion needs (:mod:`bayes_hlm.statistics`)."""
    X = np.asarray(design.X, dtype=float)
    y = np.asarray(design.working_y, dtype=float)
    N, p = X.shape
    lay = layout_of(tmap)
    cb = lay.cross(V=np.column_stack([X, y]))
    g = global_cross(X, y)
    return Stats(N=N, p=p, XtX=g["XtX"], Xty=g["Xty"], yty=g["yty"], E=lay.E, R=lay.R,
                 BC_E=cb.BE, blocks=cb, BC_R=cb.BR, r_offsets=lay.r_offsets, n_R=lay.n_R)


def lme4_start(design: Design, tmap: ThetaMap) -> np.ndarray:
    """lme4's starting θ (``mkLmerDevfun``): for models whose every factor has one scalar
    intercept term, ``θ_f = sqrt(v_f / v_e)`` with ``v_f = var(ave(y, f))`` and
    ``v_e = var(y) − Σ v_f`` when positive; the identity start otherwise."""
    theta = tmap.theta0.copy()
    if not all(f.terms == ("Intercept",) and f.q == 1 and len(f.term_index) == 1
               for f in tmap.factors):
        return theta
    y = np.asarray(design.y, dtype=float)
    n = len(y)
    if n < 2:
        return theta
    ybar = y.mean()
    v = []
    for f in tmap.factors:
        cnt = np.bincount(f.codes, minlength=f.n_levels)
        s = np.bincount(f.codes, weights=y, minlength=f.n_levels)
        mean = np.divide(s, cnt, out=np.zeros_like(s), where=cnt > 0)
        v.append(float(np.sum(cnt * (mean - ybar) ** 2)) / (n - 1))
    ve = float(np.sum((y - ybar) ** 2)) / (n - 1) - sum(v)
    if np.isfinite(ve) and ve > 0:
        theta = np.sqrt(np.array(v) / ve)
    return theta


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
    fac: BlockedFactor | None = None    # the blocked Cholesky factor of K(θ)
    rhsR: np.ndarray | None = None      # (n_R, p+1) remainder right-hand side after E
    extra: dict = field(default_factory=dict)

    @property
    def F(self):
        """``L_E⁻¹ K_ER`` (dense or sparse), None with one factor."""
        return None if self.fac is None or not self.fac.layout.R else self.fac.F

    @property
    def KR(self):
        """The Schur complement's factor: dense lower Cholesky factor or sparse solver."""
        if self.fac is None:
            return None
        return self.fac.LR if self.fac.schur_dense else self.fac.solver

    @property
    def KR_dense(self) -> bool:
        return True if self.fac is None else self.fac.schur_dense


class DevFun:
    """Profiled deviance ``θ -> d(θ)`` (REML criterion or ML deviance), like lme4's devfun."""

    def __init__(self, design: Design, reml: bool = True, tmap: ThetaMap | None = None,
                 stats: Stats | None = None):
        self.design = design
        self.reml = bool(reml)
        self.tmap = tmap or make_theta_map(design)
        self.stats = stats or compute_stats(design, self.tmap)
        self.n_evals = 0

    # -- public -----------------------------------------------------------
    @property
    def lower(self) -> np.ndarray:
        return self.tmap.lower

    @property
    def theta0(self) -> np.ndarray:
        """The identity θ (Λ = I)."""
        return self.tmap.theta0.copy()

    def start(self) -> np.ndarray:
        """Where the optimiser starts: lme4's start (:func:`lme4_start`)."""
        return lme4_start(self.design, self.tmap)

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
        """The criterion's pieces at ``θ`` (``full`` is kept for callers; every piece is
        cheap or built on demand)."""
        self.n_evals += 1
        theta = np.asarray(theta, dtype=float)
        st = self.stats
        lams = self.tmap.lambdas(theta)
        p = st.p
        fac = st.blocks.factor(lams)
        if fac is None:
            return self._bad(theta, lams)
        WE, rhsR = fac.forward(st.BC_E, st.BC_R)
        G = WE.reshape(-1, p + 1)
        gram = G.T @ G
        if rhsR is not None:
            if fac.schur_dense:
                WR = fac.schur_half(rhsR)
                gram = gram + WR.T @ WR
            else:
                gram = gram + rhsR.T @ fac.schur_solve(rhsR)
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
        return Evaluation(theta=theta, ldL2=fac.logdet, ldS=ldS, S=S, beta=beta, r2=r2,
                          LE=fac.LE, WE=WE, lambdas=lams, fac=fac, rhsR=rhsR)

    def _bad(self, theta, lams) -> Evaluation:
        p = self.stats.p
        return Evaluation(theta=theta, ldL2=np.inf, ldS=np.inf, S=np.full((p, p), np.nan),
                          beta=np.full(p, np.nan), r2=np.nan, LE=None, WE=None, lambdas=lams)

    # -- solves with K (result stage) ----------------------------------------
    def conditional_modes(self, ev: Evaluation) -> list[np.ndarray]:
        """Spherical modes ``u`` per factor as (G_k, q_k) arrays, at (θ, β̂)."""
        p = self.stats.p
        beta = ev.beta
        zE = ev.WE[:, :, p] - ev.WE[:, :, :p] @ beta        # L_E⁻¹ v_E   (G, q)
        zR = None if ev.rhsR is None else ev.rhsR[:, p] - ev.rhsR[:, :p] @ beta
        uE, uR = ev.fac.backward(zE, zR)
        return ev.fac.layout.split(uE, uR)

    def conditional_cov(self, ev: Evaluation) -> list[np.ndarray]:
        """Diagonal blocks of K⁻¹ per factor, as (G_k, q_k, q_k) (unit σ, spherical scale)."""
        return ev.fac.diag_inverse()


def make_devfun(design: Design, reml: bool = True) -> DevFun:
    """lme4's ``mkLmerDevfun``: the profiled criterion as a callable of θ."""
    return DevFun(design, reml=reml)
