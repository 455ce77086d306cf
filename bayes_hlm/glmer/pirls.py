"""glmer's deviance function (lme4's ``mkGlmerDevfun`` / ``glmerLaplace`` / ``glmerAGQ``).

Penalised iteratively reweighted least squares (PIRLS) finds the conditional modes ``û`` of the
spherical random effects (``b = Λ u``, ``u ~ N(0, I)``) given θ and β (``nagq >= 1``), or of
``(u, β)`` together (``nagq = 0``), minimising the penalised deviance
``Σ devres(y, μ(η)) + |u|²``, ``η = offset + Xβ + ZΛu``, by Fisher scoring with step halving
(Newton for canonical links), from the previous evaluation's modes. It is iterated until the
step in ``u`` (and β) is below 1e-10 (much tighter than lme4's ``tolPwrss = 1e-7``): ``log det K``
depends on ``û`` to first order, so only an exact mode makes the criterion smooth enough for the
optimiser and the finite-difference Hessian (step 1e-4).

The criterion is then, as lme4 computes it,

* Laplace (``nagq <= 1``): ``aic(μ̂) + |û|² + log det K``, ``K = ΛᵀZᵀWZΛ + I`` at the modes,
  ``aic`` = R's ``family()$aic`` (-2 log-likelihood; Gamma with the moment dispersion);
* adaptive Gauss–Hermite (``nagq > 1``, one grouping factor with up to two effect columns;
  :mod:`.agq`): per level the deviance residuals plus ``|u|²`` at ``û + L_g⁻ᵀ t_m``, weighted
  as ``glmerAGQ`` does; this drops the saturated model's log-likelihood (lme4's convention;
  see :attr:`GlmerDevfun.saturated_loglik`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import BayesHLMError
from ..statistics.quadrature import gh_rule  # noqa: F401 - re-exported (lme4's GHrule)

__all__ = ["GlmerDevfun", "PirlsState", "gh_rule"]

STEP_TOL = 1e-10
LME4_TOL = 1e-7        # glmerControl(tolPwrss)
LME4_HALVINGS = 20
PIRLS_MAXIT = 200


@dataclass
class PirlsState:
    """The conditional modes and everything the criterion / result read at them."""

    theta: np.ndarray
    beta: np.ndarray
    u: np.ndarray
    eta: np.ndarray
    mu: np.ndarray
    W: np.ndarray
    devres: np.ndarray
    factor: object
    aic: float
    n_iter: int

    @property
    def ussq(self) -> float:
        return float(self.u @ self.u)

    @property
    def ldL2(self) -> float:
        return self.factor.logdet

    @property
    def laplace(self) -> float:
        return self.ldL2 + self.ussq + self.aic


class GlmerDevfun:
    """Criterion of one glmer model; see the module docstring.

    Parameters
    ----------
    model : GlmerModel
        Response, prior weights, offset, X and the random-effect system.
    """

    def __init__(self, model):
        self.model = model
        self.system = model.system
        self.family = model.family
        self.X = model.X
        self.p = self.X.shape[1]
        self.n_evals = 0
        self._u = np.zeros(model.system.Q)
        self._beta = None
        self._theta = None
        self.last: PirlsState | None = None
        self.lp0: np.ndarray | None = None      # stage 1's final linear predictor
        self.lme4_laplace = True
        self._llvar = 0.0
        self._const = 0.0
        self._const_key = None
        self._last_eta_rows = None
        self._sat = None
        self._lp0_rows = None            # (lp0, family, NB θ, _rows(lp0)): see _rows_lp0
        self._lp0_mom = None             # (lp0, family, NB θ, moments): see _lp0_moments
        self._Xc = self._offc = None     # contiguous X and offset for the compiled passes

    # ------------------------------------------------------------------ rows
    def _rows(self, eta):
        """Mean, Fisher weights, score and deviance residuals at ``eta`` (one compiled pass);
        the mean-dependent log-likelihood goes to ``self._llvar``."""
        from . import kernels

        m = self.model
        f = self.family
        N = len(eta)
        mu, W, s, dr = np.empty(N), np.empty(N), np.empty(N), np.empty(N)
        th = f.nb_theta if f.nb_theta is not None else 1.0
        eta_c = np.ascontiguousarray(eta, dtype=float)
        if self._sat is None:
            self._sat = np.ascontiguousarray(f.saturated_terms(m.y, m.pw))
        _, self._llvar = kernels.rows(kernels.FAMILY_CODE[f.name], kernels.LINK_CODE[f.link],
                                      float(th), m.y, m.n, m.pw, self._sat, eta_c, mu, W, s, dr)
        self._last_eta_rows = eta
        return mu, W, s, dr

    def _rows_lp0(self):
        """:meth:`_rows` at ``lp0``, where every stage-2 evaluation starts: ``lp0`` is fixed
        after stage 1, so the pass is done once (per ``lp0``, family and NB θ). Unlike
        :meth:`_rows` it leaves ``_llvar`` / ``_last_eta_rows`` possibly stale; both callers
        overwrite them from their own last pass."""
        f = self.family
        th = f.nb_theta
        c = self._lp0_rows
        if c is None or c[0] is not self.lp0 or c[1] is not f or c[2] != th:
            c = self._lp0_rows = (self.lp0, f, th, self._rows(self.lp0))
        return c[3]

    def _devres(self, eta) -> np.ndarray:
        """Deviance residuals at ``eta`` (compiled pass; leaves the PIRLS state alone)."""
        from . import kernels

        m, f = self.model, self.family
        N = len(eta)
        mu, W, s, dr = np.empty(N), np.empty(N), np.empty(N), np.empty(N)
        if self._sat is None:
            self._sat = np.ascontiguousarray(f.saturated_terms(m.y, m.pw))
        th = f.nb_theta if f.nb_theta is not None else 1.0
        kernels.rows(kernels.FAMILY_CODE[f.name], kernels.LINK_CODE[f.link], float(th), m.y, m.n,
                     m.pw, self._sat, np.ascontiguousarray(eta, dtype=float), mu, W, s, dr)
        return dr

    def _aic(self, mu, dr) -> float:
        """R's ``family()$aic`` at the last :meth:`_rows` pass (constant + compiled part;
        Gamma through its dispersion, in NumPy)."""
        f, m = self.family, self.model
        if f.name == "Gamma":
            return f.aic(m.y, m.n, mu, m.pw, float(dr.sum()))
        key = (f.name, f.nb_theta)
        if self._const_key != key:
            self._const, self._const_key = f.loglik_constant(m.y, m.n, m.pw), key
        return -2.0 * (self._const + self._llvar)

    def set_theta(self, theta):
        theta = np.asarray(theta, dtype=float)
        if self._theta is None or not np.array_equal(theta, self._theta):
            self.system.set_theta(theta)
            self._theta = theta.copy()

    # ------------------------------------------------------------------ PIRLS
    def pirls(self, theta, beta=None, joint: bool = False, u0=None) -> PirlsState:
        """Conditional modes at θ (and β, unless ``joint``: then β is estimated too)."""
        m = self.model
        self.set_theta(theta)
        sysm = self.system
        if beta is None:
            beta = self._beta if self._beta is not None else m.beta0
        beta = np.array(beta, dtype=float)
        u = (self._u if u0 is None else np.asarray(u0, dtype=float)).copy()
        if not np.all(np.isfinite(u)):
            u = np.zeros(sysm.Q)
        if sysm.kind == "block":
            return self._pirls_block(theta, beta, u, joint)
        base = m.offset + self.X @ beta if not joint else None

        def eta_of(u, beta):
            lin = (m.offset + self.X @ beta) if joint else base
            return lin + sysm.zl_u(u)

        eta = eta_of(u, beta)
        mu, W, s, dr = self._rows(eta)
        pdev = float(dr.sum() + u @ u)
        if not np.isfinite(pdev):          # a bad warm start: restart from zero effects
            u = np.zeros(sysm.Q)
            eta = eta_of(u, beta)
            mu, W, s, dr = self._rows(eta)
            pdev = float(dr.sum() + u @ u)
        it = 0
        F = None
        for it in range(1, PIRLS_MAXIT + 1):
            F = sysm.factor(W)
            ru = sysm.zlt(s) - u
            if joint:
                C = sysm.zlt_mat(W[:, None] * self.X)          # ΛᵀZᵀWX (Q, p)
                KiC = F.solve(C)
                S = self.X.T @ (W[:, None] * self.X) - C.T @ KiC
                rb = self.X.T @ s
                Kir = F.solve(ru)
                db = np.linalg.solve(S, rb - C.T @ Kir)
                du = Kir - KiC @ db
                dec = float(du @ ru + db @ rb)
            else:
                du = F.solve(ru)
                db = np.zeros(self.p)
                dec = float(du @ ru)
            if not np.isfinite(dec):
                raise BayesHLMError("PIRLS produced a non-finite step: the linear predictor "
                                    "overflows (check for complete separation or extreme "
                                    "covariate scales)")
            small = max(float(np.max(np.abs(du), initial=0.0)), float(np.max(np.abs(db), initial=0.0)))
            if small < STEP_TOL:
                # converged: the remaining step is below what the criterion can resolve
                # (ldL2 depends on û to first order, so û must be exact, not just pdev)
                break

            def trial(un, bn):
                etan = eta_of(un, bn)
                rows = self._rows(etan)
                return (etan, *rows), float(rows[3].sum() + un @ un)

            u, beta, (eta, mu, W, s, dr), pdev = _halve_step(trial, u, beta, du, db, pdev,
                                                             small, theta)
        else:
            raise BayesHLMError(f"PIRLS did not converge in {PIRLS_MAXIT} iterations "
                                f"(theta = {np.round(theta, 6).tolist()})")
        self.n_evals += 1
        if self._last_eta_rows is not eta:     # the compiled sums belong to this eta
            self._rows(eta)
        aic = self._aic(mu, dr)
        self._u, self._beta = u, beta
        st = PirlsState(np.array(theta, float), beta, u, eta, mu, W, dr, F, aic, it)
        self.last = st
        return st

    def _block_args(self):
        """What every :func:`.kernels.block_pass` call of this model shares."""
        from . import kernels

        m, f = self.model, self.family
        if self._sat is None:
            self._sat = np.ascontiguousarray(f.saturated_terms(m.y, m.pw))
        if self._Xc is None:
            self._Xc = np.ascontiguousarray(self.X, dtype=float)
            self._offc = np.ascontiguousarray(m.offset, dtype=float)
        th = float(f.nb_theta if f.nb_theta is not None else 1.0)
        return (kernels.FAMILY_CODE[f.name], kernels.LINK_CODE[f.link], th, m.y, m.pw,
                self._sat, self._offc, self._Xc)

    def _pirls_block(self, theta, beta, u, joint) -> PirlsState:
        """:meth:`pirls` for one grouping factor: one compiled pass per step
        (:func:`.kernels.block_pass`), per-level q × q algebra; the same iterates and stopping
        rule."""
        from . import kernels
        from .resystem import BlockFactor

        sysm = self.system
        G, q, p = sysm.G, sysm.q, self.p
        args = self._block_args()
        mode = kernels.MODE_JOINT if joint else kernels.MODE_SCORE
        N = len(self.model.y)
        rows = (np.empty(N), np.empty(N), np.empty(N), np.empty(N))   # eta, mu, W, dr

        def at(u, beta):   # the rows always hold the last point evaluated (= the accepted one)
            return kernels.block_pass(*args, beta, sysm.codes, sysm.Z, sysm.lam, u.reshape(G, q), G,
                                      mode, *rows)

        def pd_of(r, u):
            return float(r[5] + u @ u)

        r = at(u, beta)
        pdev = pd_of(r, u)
        if not np.isfinite(pdev):
            u = np.zeros(sysm.Q)
            r = at(u, beta)
            pdev = pd_of(r, u)
        it = 0
        for it in range(1, PIRLS_MAXIT + 1):
            K, ru = r[0], r[1] - u.reshape(G, q)
            if joint:
                C = r[2]                                           # (G, q, p)
                KiCr = kernels.block_solve(K, np.concatenate([C, ru[:, :, None]], axis=2))
                KiC, Kinv_ru = KiCr[:, :, :p], KiCr[:, :, p]
                S = r[3] - np.einsum("gqj,gqk->jk", C, KiC)
                rb = r[4]
                db = np.linalg.solve(S, rb - np.einsum("gqj,gq->j", C, Kinv_ru))
                du = (Kinv_ru - np.einsum("gqj,j->gq", KiC, db)).reshape(-1)
            else:
                du, db = kernels.block_solve(K, ru[:, :, None]).reshape(-1), np.zeros(p)
            small = max(float(np.max(np.abs(du), initial=0.0)),
                        float(np.max(np.abs(db), initial=0.0)))
            if small < STEP_TOL:
                break

            def trial(un, bn):
                rn = at(un, bn)
                return rn, pd_of(rn, un)

            u, beta, r, pdev = _halve_step(trial, u, beta, du, db, pdev, small, theta)
        else:
            raise BayesHLMError(f"PIRLS did not converge in {PIRLS_MAXIT} iterations "
                                f"(theta = {np.round(theta, 6).tolist()})")
        eta, mu, W, dr = rows
        self._llvar = r[6]
        self._last_eta_rows = eta
        self.n_evals += 1
        aic = self._aic(mu, dr)
        self._u, self._beta = u, beta
        st = PirlsState(np.array(theta, float), beta, u, eta, mu, W, dr, BlockFactor(r[0]), aic,
                        it)
        self.last = st
        return st

    def pirls_lme4(self, theta, beta) -> PirlsState:
        """lme4's own PIRLS path for the stage-2 criterion (``glmerLaplace``, u only): every
        evaluation starts from the weights at ``lp0`` (the linear predictor at the end of
        stage 1), solves the penalised weighted least-squares problem for ``u`` and repeats
        until the penalised deviance changes by less than ``tolPwrss = 1e-7`` (relative); the
        factor ``K`` kept is the last one built, i.e. from the weights *before* the last update.
        ``log det K`` then differs from its value at the exact mode by O(1e-4) (cbpp: the
        Laplace log-likelihood moves by 3e-4), which lme4's estimates and Hessian standard
        errors carry; reproducing it is what makes them agree to 4 significant figures."""
        m = self.model
        self.set_theta(theta)
        sysm = self.system
        beta = np.asarray(beta, dtype=float)
        if sysm.kind == "block":
            return self._pirls_lme4_block(theta, beta)
        off = m.offset + self.X @ beta
        eta = self.lp0
        mu, W, s, dr = self._rows_lp0()
        u = np.zeros(sysm.Q)
        old = np.inf
        F = None
        for it in range(1, PIRLS_MAXIT + 1):
            F = sysm.factor(W)
            un = F.solve(sysm.zlt(W * (eta - off) + s))
            du_full = un - u

            def trial(ut):
                etat = off + sysm.zl_u(ut)
                rows = self._rows(etat)
                return (etat, *rows), float(rows[3].sum() + ut @ ut)

            u, (eta, mu, W, s, dr), pdev = _lme4_halving(trial, u, du_full, old)
            if abs((old - pdev) / pdev) < LME4_TOL:
                break
            old = pdev
        else:
            raise BayesHLMError(f"PIRLS did not converge in {PIRLS_MAXIT} iterations")
        self.n_evals += 1
        if self._last_eta_rows is not eta:     # the compiled sums belong to this eta
            self._rows(eta)
        aic = self._aic(mu, dr)
        st = PirlsState(np.array(theta, float), beta, u, eta, mu, W, dr, F, aic, it)
        self.last = st
        return st

    def _lp0_moments(self):
        """Per level ``Σ W₀ z zᵀ``, ``Σ z (W₀ (lp0 - offset) + s₀)`` and ``Σ W₀ z xᵀ`` at
        ``lp0`` (unscaled ``Z``; once per ``lp0``, family and NB θ): every stage-2 evaluation's
        first system ``K₀ = I + ΛᵀAΛ``, ``r₀ = Λᵀ(b - Cβ)`` then costs O(G q²), not a pass."""
        from . import kernels

        f, m, sysm = self.family, self.model, self.system
        c = self._lp0_mom
        if c is None or c[0] is not self.lp0 or c[1] is not f or c[2] != f.nb_theta:
            _, W0, s0, _ = self._rows_lp0()
            v = W0 * (self.lp0 - m.offset) + s0
            mom = kernels.group_moments(sysm.codes, np.ascontiguousarray(sysm.f.Z, dtype=float),
                                        np.ascontiguousarray(self.X, dtype=float), W0, v, sysm.G)
            c = self._lp0_mom = (self.lp0, f, f.nb_theta, mom)
        return c[3]

    def _pirls_lme4_block(self, theta, beta) -> PirlsState:
        """:meth:`pirls_lme4` for one grouping factor: each step is one compiled pass
        (:func:`.kernels.block_pass`) and per-level q × q solves; the same iterates."""
        from . import kernels
        from .resystem import BlockFactor

        sysm = self.system
        G, q = sysm.G, sysm.q
        args = self._block_args()
        N = len(self.model.y)
        rows = (np.empty(N), np.empty(N), np.empty(N), np.empty(N))   # eta, mu, W, dr

        def at(U):
            return kernels.block_pass(*args, beta, sysm.codes, sysm.Z, sysm.lam, U, G,
                                      kernels.MODE_LME4, *rows)

        # start: the weights at lp0 (lme4 resets mu to lp0), as in pirls_lme4
        A, b, C = self._lp0_moments()
        K, rhs = kernels.lambda_system(A, b, C, beta, sysm.lam)
        U = np.zeros((G, q))
        old = np.inf
        for it in range(1, PIRLS_MAXIT + 1):
            Kf = K
            dU = kernels.block_solve(Kf, rhs[:, :, None])[:, :, 0] - U

            def trial(Ut):
                res = at(Ut)
                return res, float(res[5] + np.sum(Ut * Ut))

            U, (K, rhs, _, _, _, dsum, ll), pdev = _lme4_halving(trial, U, dU, old)
            if abs((old - pdev) / pdev) < LME4_TOL:
                break
            old = pdev
        else:
            raise BayesHLMError(f"PIRLS did not converge in {PIRLS_MAXIT} iterations")
        eta, mu, W, dr = rows
        self._llvar = ll
        self._last_eta_rows = eta
        self.n_evals += 1
        aic = self._aic(mu, dr)
        st = PirlsState(np.array(theta, float), beta, U.reshape(-1), eta, mu, W, dr,
                        BlockFactor(Kf), aic, it)
        self.last = st
        return st

    def laplace_lme4(self, theta, beta) -> float:
        try:
            return self.pirls_lme4(theta, beta).laplace
        except (BayesHLMError, np.linalg.LinAlgError, FloatingPointError):
            return np.inf

    # ------------------------------------------------------------------ criteria
    def stage1(self, theta) -> float:
        """nAGQ = 0: θ only, β inside PIRLS (lme4's first stage)."""
        try:
            return self.pirls(theta, joint=True).laplace
        except (BayesHLMError, np.linalg.LinAlgError, FloatingPointError):
            self._u = np.zeros(self.system.Q)
            return np.inf

    def laplace(self, theta, beta) -> float:
        try:
            return self.pirls(theta, beta).laplace
        except (BayesHLMError, np.linalg.LinAlgError, FloatingPointError):
            self._u = np.zeros(self.system.Q)
            return np.inf

    def agq(self, theta, beta, nagq: int) -> float:
        try:
            st = self.pirls(theta, beta)
        except (BayesHLMError, np.linalg.LinAlgError, FloatingPointError):
            self._u = np.zeros(self.system.Q)
            return np.inf
        return self.agq_at(st, nagq)

    def agq_at(self, st: PirlsState, nagq: int) -> float:
        """The adaptive Gauss–Hermite criterion at ``st`` (:func:`.agq.agq_deviance`)."""
        from .agq import agq_deviance

        return agq_deviance(self, st, nagq)

    def criterion(self, nagq: int):
        """``x = (θ, β) -> deviance`` for stage 2 (``nagq >= 1``)."""
        k = len(self.system.layout.lower)
        if nagq <= 1:
            if self.lme4_laplace:
                return lambda x: self.laplace_lme4(x[:k], x[k:])
            return lambda x: self.laplace(x[:k], x[k:])
        return lambda x: self.agq(x[:k], x[k:], nagq)

    @property
    def saturated_loglik(self) -> float:
        m = self.model
        return self.family.saturated_loglik(m.y, m.n, m.pw)


def _halve_step(trial, u, beta, du, db, pdev: float, small: float, theta):
    """The exact PIRLS path's step-halving (both systems): the first of ``step = 1, 1/2, ...``
    (30 tries) whose penalised deviance does not rise (to 1e-10 relative) or whose step is
    below 1e-6. ``trial(u, beta) -> (state, pdev)``; returns ``(u, beta, state, pdev)``."""
    step = 1.0
    for _ in range(30):
        un, bn = u + step * du, beta + step * db
        state, pn = trial(un, bn)
        if np.isfinite(pn) and (pn <= pdev + 1e-10 * max(1.0, abs(pdev)) or small * step < 1e-6):
            return un, bn, state, pn
        step *= 0.5
    raise BayesHLMError("PIRLS step-halving failed to reduce the penalised deviance "
                        f"(theta = {np.round(theta, 6).tolist()})")


def _lme4_halving(trial, u, du, old: float):
    """lme4's own PIRLS step-halving (both systems): at most ``LME4_HALVINGS`` halvings, the
    last try kept even if the deviance rose (as lme4's ``pwrssUpdate`` does).
    ``trial(u) -> (state, pdev)``; returns ``(u, state, pdev)``."""
    step = 1.0
    for _ in range(LME4_HALVINGS + 1):
        ut = u + step * du
        state, pdev = trial(ut)
        if np.isfinite(pdev) and pdev <= old:
            break
        step *= 0.5
    if not np.isfinite(pdev):
        raise BayesHLMError("PIRLS produced a non-finite deviance")
    return ut, state, pdev
