"""Fit one glmer model: the two optimisation stages, the boundary check, the final PIRLS state
and the fixed effects' covariance (lme4's ``glmer`` body after ``glFormula``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import BayesHLMError
from .model import GlmerModel
from .optimize import DEFAULT_CONTROL, OptResult, bobyqa, check_convergence, newton_polish
from .pirls import GlmerDevfun, PirlsState

__all__ = ["GlmerFit", "fit_model", "check_nagq"]


@dataclass
class GlmerFit:
    """What :class:`~bayes_hlm.glmer.result.GlmerResult` is made from."""

    model: GlmerModel
    devfun: GlmerDevfun
    nagq: int
    theta: np.ndarray
    beta: np.ndarray
    objective: float               # the optimised criterion (lme4's -2 logLik)
    state: PirlsState
    vcov: np.ndarray
    vcov_method: str
    hessian: np.ndarray | None
    gradient: np.ndarray | None
    messages: list[str]
    opt: dict = field(default_factory=dict)


def check_nagq(model: GlmerModel, nagq) -> int:
    if isinstance(nagq, bool) or not isinstance(nagq, (int, np.integer)) or nagq < 0:
        raise BayesHLMError(f"nagq must be a whole number >= 0, not {nagq!r}")
    nagq = int(nagq)
    if nagq > 1:
        from .agq import check_agq

        check_agq(model, nagq)
    return nagq


def _free_of(k: int, lower: np.ndarray, tol: float):
    def free(x):
        out = np.ones(len(x), dtype=bool)
        out[:k] = ~((lower[:k] == 0) & (x[:k] <= tol))
        return out
    return free


def _boundary(f, x, fun, lower, k, tol):
    """lme4's ``check.boundary``: θ diagonal elements within ``tol`` of 0 are set to 0 when
    that does not worsen the criterion."""
    near = np.flatnonzero((lower[:k] == 0) & (x[:k] > 0) & (x[:k] < tol))
    if near.size:
        t = x.copy()
        t[near] = 0.0
        ft = float(f(t))
        if ft <= fun:
            return t, ft
    return x, fun


def rx_inverse(devfun: GlmerDevfun, st: PirlsState) -> np.ndarray:
    """``(RXᵀRX)⁻¹``: the inverse Schur complement of X in the penalised system at the modes."""
    X = devfun.X
    C = devfun.system.zlt_mat(st.W[:, None] * X)
    S = X.T @ (st.W[:, None] * X) - C.T @ st.factor.solve(C)
    return np.linalg.inv(S)


def fit_model(model: GlmerModel, nagq: int = 1, control: dict | None = None,
              start: tuple[np.ndarray, np.ndarray] | None = None, polish: bool = True,
              devfun: GlmerDevfun | None = None) -> GlmerFit:
    """Both stages (stage 2 only when ``start = (θ, β)`` is given, as lme4's ``refit``)."""
    ctl = {**DEFAULT_CONTROL, **(control or {})}
    nagq = check_nagq(model, nagq)
    dev = devfun or GlmerDevfun(model)
    lower = model.layout.lower
    k, p = len(lower), model.X.shape[1]
    info: dict = {}
    if start is None:
        # with nagq >= 1 stage 1 only gives stage 2 its start (and lp0): no need to pin its
        # criterion to 1e-9 (nagq = 0 is the final fit: lme4's tolerances)
        c1 = ctl if nagq == 0 else {**ctl, "ftol_abs": ctl["ftol_abs1"]}
        o1 = bobyqa(dev.stage1, model.layout.theta0, lower, c1)
        theta, fun = o1.x, o1.fun
        info["stage1"] = {"evals": o1.n_evals, "message": o1.message}
        if nagq == 0:
            theta, fun = _boundary(dev.stage1, theta, fun, lower, k, ctl["boundary_tol"])
        st1 = dev.pirls(theta, joint=True)
        beta = st1.beta
        dev.lp0 = st1.eta
        if not np.isfinite(fun):
            raise BayesHLMError("glmer: the nAGQ = 0 criterion is not finite anywhere the "
                                "optimiser looked (check the response and the covariate scales)")
    else:
        theta, beta = (np.asarray(s, dtype=float) for s in start)
        if dev.lp0 is None:
            dev.lp0 = dev.pirls(theta, beta).eta
    g = H = None
    free = None
    if nagq == 0:
        st = dev.pirls(theta, joint=True)
        objective = st.laplace
        beta = st.beta
        if ctl["calc_derivs"]:
            from .optimize import deriv12
            f1 = dev.stage1
            g, H = deriv12(f1, theta, fx=objective, lower=lower)
            dev.pirls(theta, joint=True)
            free = _free_of(k, lower, ctl["check_singular_tol"])(theta)
        st = dev.pirls(theta, joint=True)
    else:
        f2 = dev.criterion(nagq)
        lower2 = np.concatenate([lower, np.full(p, -np.inf)])
        x0 = np.concatenate([theta, beta])
        o2 = bobyqa(f2, x0, lower2, {**ctl, "ftol_abs": ctl["ftol_abs2"]}, rhobeg=ctl["rhobeg2"])
        x, fun = o2.x, o2.fun
        info["stage2"] = {"evals": o2.n_evals, "message": o2.message}
        x, fun = _boundary(f2, x, fun, lower2, k, ctl["boundary_tol"])
        freef = _free_of(k, lower2, ctl["check_singular_tol"])
        if polish and ctl["calc_derivs"]:
            x, fun, g, H = newton_polish(f2, x, fun, lower2, freef)
            free = freef(x)
            # BOBYQA can stop short on this piecewise-smooth criterion (lme4 does on
            # grouseticks: max|grad| 0.83); restart it from its own estimates, as one does
            # with update(m, start = ...), while the gradient check fails
            for _ in range(ctl["restarts"]):
                if not any("max|grad|" in m for m in check_convergence(g, H, free, ctl)):
                    break
                o3 = bobyqa(f2, x, lower2, ctl)
                info["restarts"] = info.get("restarts", 0) + 1
                if o3.fun >= fun - 1e-9:
                    break
                x, fun = _boundary(f2, o3.x, o3.fun, lower2, k, ctl["boundary_tol"])
                x, fun, g, H = newton_polish(f2, x, fun, lower2, freef)
                free = freef(x)
        theta, beta = x[:k], x[k:]
        if nagq == 1 and dev.lme4_laplace:
            st = dev.pirls_lme4(theta, beta)
            objective = st.laplace
        else:
            st = dev.pirls(theta, beta)
            objective = st.laplace if nagq == 1 else dev.agq_at(st, nagq)
    msgs = check_convergence(g, H, free, ctl) if free is not None else []
    V, how = _vcov(model, dev, st, H, k, nagq)
    return GlmerFit(model, dev, nagq, np.asarray(theta, float), np.asarray(beta, float),
                    float(objective), st, V, how, H, g, msgs, info)


def sigma_of(model: GlmerModel, st: PirlsState) -> float:
    """lme4's ``sigma()``: 1 for binomial / Poisson / NB; Gamma: ``sqrt(pwrss / n)``."""
    if not model.family.has_scale:
        return 1.0
    var = model.family.variance(st.mu)
    wrss = float(np.sum(model.pw * (model.y - st.mu) ** 2 / var))
    return float(np.sqrt((wrss + st.ussq) / model.N))


def _vcov(model, dev, st, H, k, nagq):
    """lme4's default: ``2 H⁻¹`` (finite-difference Hessian over (θ, β)) for ``nagq >= 1``;
    ``σ² (RXᵀRX)⁻¹`` for ``nagq = 0`` and for Gamma (see GlmerResult.vcov: lme4's Hessian SEs
    of Gamma fits are not usable)."""
    unsc = rx_inverse(dev, st)
    if nagq >= 1 and H is not None and not model.family.has_scale:
        try:
            Hi = np.linalg.inv(H)
            V = (Hi + Hi.T)[k:, k:]
            if np.all(np.isfinite(V)) and np.linalg.eigvalsh(V).min() > 0:
                return V, "hessian"
        except np.linalg.LinAlgError:
            pass
    return sigma_of(model, st) ** 2 * unsc, "RX"
