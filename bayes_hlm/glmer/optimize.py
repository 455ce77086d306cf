"""lme4's two-stage glmer optimisation and its convergence checks (``optimizeGlmer``,
``deriv12``, ``checkConv``).

Stage 1 minimises the ``nAGQ = 0`` criterion over θ (β inside PIRLS) from θ = identity; stage 2
(``nagq >= 1``) minimises the Laplace / AGQ criterion over ``(θ, β)`` from stage 1's estimates.
Both use derivative-free BOBYQA (nlopt ``LN_BOBYQA``; lower bound 0 on the diagonal elements of
Λ, none on β). A few projected Newton steps on the finite-difference Hessian (lme4's
``deriv12``, step 1e-4) then finish the optimum (lme4 stops where BOBYQA stops; grouseticks
shows it can stop 0.02 log-likelihood units short); that Hessian gives the fixed effects'
covariance (``vcov``: ``2 H⁻¹``, as lme4) and the convergence checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..reml.optimize import bobyqa as _nlopt_bobyqa

__all__ = ["OptResult", "bobyqa", "deriv12", "newton_polish", "check_convergence",
           "DEFAULT_CONTROL"]

DEFAULT_CONTROL = {
    "maxfun": 100_000,
    "xtol_abs": 1e-7,
    "ftol_abs": 1e-9,
    "check_conv_tol": 0.002,           # lme4's check.conv.grad tol
    "check_conv_hess_reltol": 1e-6,    # lme4's check.conv.hess relTol
    "check_singular_tol": 1e-4,
    "boundary_tol": 1e-5,
    "polish": True,
    "restarts": 3,                     # BOBYQA restarts while the gradient check fails
    "calc_derivs": True,
    "ftol_abs1": 1e-6,                 # stage 1's ftol when a stage 2 follows (nagq >= 1)
    "rhobeg2": 2e-4,                   # stage 2's initial trust radius (lme4's optwrap adj)
    # stage 2's ftol: lme4's Laplace criterion rides on a PIRLS stopped at tolPwrss (relative
    # 1e-7 of the penalised deviance), so it jumps by ~1e-4 where the iteration count changes;
    # an ftol far below that kept BOBYQA wandering (contraception 1374 evaluations, 152 with
    # 1e-6). The Newton polish and the gradient-checked restarts finish the optimum.
    "ftol_abs2": 1e-6,
}


@dataclass
class OptResult:
    x: np.ndarray
    fun: float
    n_evals: int
    message: str
    success: bool
    gradient: np.ndarray | None = None
    hessian: np.ndarray | None = None
    extra: dict = field(default_factory=dict)


def bobyqa(f, x0, lower, ctl: dict, rhobeg: float | None = None) -> OptResult:
    """Minimise ``f`` by BOBYQA within ``lower`` (the package's one wrapper,
    :func:`bayes_hlm.reml.optimize.bobyqa`) with glmer's settings: no xtol_rel, lme4's rhobeg
    (stage 1; stage 2 passes ``rhobeg`` = 2e-4, lme4's ``optwrap(adj = TRUE)``: it starts next
    to stage 1's optimum, and a wide first trust region there costs grouseticks 4x the
    evaluations); the best point seen is kept when nlopt stops on round-off."""
    x0 = np.maximum(np.asarray(x0, dtype=float), np.where(np.isfinite(lower), lower, -np.inf))
    k = len(x0)
    # lme4's rhobeg: 0.2 max|x|, at most 0.95; at least 0.05 so a zero start still moves
    step = float(np.clip(0.2 * np.max(np.abs(x0)), 0.05, 0.95)) if k else 0.1
    if rhobeg is not None:
        step = float(rhobeg)
    r = _nlopt_bobyqa(f, x0, lower, xtol_abs=ctl["xtol_abs"], ftol_abs=ctl["ftol_abs"],
                      xtol_rel=None, maxfun=ctl["maxfun"], initial_step=step,
                      recover=(ValueError,))
    # re-evaluate at the optimum: PIRLS warm-starts, so the value seen during the search and
    # the value now may differ in the last digits; keep the better of the two points
    x = r.x
    fun = float(f(x))
    if r.best_f < fun:
        x, fun = r.best_x, float(f(r.best_x))
    return OptResult(x=x, fun=fun, n_evals=r.nit, message=r.message, success=r.success)


def deriv12(f, x, delta: float = 1e-4, fx: float | None = None, lower=None):
    """Gradient and Hessian by central differences, lme4's ``deriv12`` (one-sided at ``lower``)."""
    x = np.asarray(x, dtype=float)
    k = len(x)
    fx = float(f(x)) if fx is None else fx
    ld = np.full(k, delta)
    if lower is not None:
        act = np.isfinite(lower) & (x - delta < lower)
        ld[act] = x[act] - lower[act]
    ud = np.full(k, delta)
    xadd, xsub = x + ud, x - ld
    H = np.empty((k, k))
    g = np.empty(k)
    fa = np.empty(k)
    fs = np.empty(k)
    for j in range(k):
        e = x.copy()
        e[j] = xadd[j]
        fa[j] = f(e)
        e[j] = xsub[j]
        fs[j] = f(e)
        if ld[j] > 0:
            H[j, j] = fa[j] / ud[j] ** 2 - 2 * fx / (ud[j] * ld[j]) + fs[j] / ld[j] ** 2
            g[j] = (fa[j] - fs[j]) / (ud[j] + ld[j])
        else:   # at the bound: forward differences
            e[j] = x[j] + 2 * ud[j]
            f2 = f(e)
            H[j, j] = (f2 - 2 * fa[j] + fx) / ud[j] ** 2
            g[j] = (fa[j] - fx) / ud[j]
        for i in range(j):
            def at(si, sj):
                e = x.copy()
                e[i] = xadd[i] if si > 0 else xsub[i]
                e[j] = xadd[j] if sj > 0 else xsub[j]
                return f(e)
            di, dj = ud[i] + ld[i], ud[j] + ld[j]
            if di > ud[i] and dj > ud[j]:
                v = (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1)) / (di * dj)
            else:        # a bound: forward cross difference
                e = x.copy()
                e[i] += ud[i]
                e[j] += ud[j]
                v = (f(e) - fa[i] - fa[j] + fx) / (ud[i] * ud[j])
            H[i, j] = H[j, i] = v
    return g, H


def newton_polish(f, x, fun, lower, free_of, max_steps: int = 4, gain_tol: float = 1e-9):
    """Projected Newton steps on the free parameters; returns ``(x, fun, g, H)``.

    One finite-difference Hessian serves while the steps stay small (< 1e-3: the Hessian is the
    same to that order, the gradient is updated by ``H dx``); a larger step gets fresh
    derivatives. The returned derivatives are lme4's ``checkConv`` input."""
    g, H = deriv12(f, x, fx=fun, lower=lower)
    for _ in range(max_steps):
        free = free_of(x)
        idx = np.flatnonzero(free)
        if not len(idx):
            break
        gs, Hs = g[idx], H[np.ix_(idx, idx)]
        try:
            np.linalg.cholesky(Hs)
            step = np.linalg.solve(Hs, gs)
        except np.linalg.LinAlgError:
            break
        if 0.5 * float(gs @ step) < gain_tol:
            break
        moved = False
        for a in (1.0, 0.5, 0.25, 0.125):
            t = x.copy()
            t[idx] -= a * step
            t = np.maximum(t, np.where(np.isfinite(lower), lower, -np.inf))
            ft = float(f(t))
            if ft < fun:
                dx = t - x
                x, fun, moved = t, ft, True
                break
        if not moved:
            break
        if np.max(np.abs(dx)) < 1e-3:
            g = g + H @ dx
        else:
            g, H = deriv12(f, x, fx=fun, lower=lower)
    return x, fun, g, H


def check_convergence(g, H, free, ctl: dict) -> list[str]:
    """lme4's ``checkConv`` on the parameters off the boundary; messages say what to try."""
    msgs: list[str] = []
    if g is None or not np.any(free):
        return msgs
    idx = np.flatnonzero(free)
    g, H = g[idx], H[np.ix_(idx, idx)]
    tol = ctl["check_conv_tol"]
    try:
        R = np.linalg.cholesky(H).T
        scgrad = np.linalg.solve(R.T, g)   # lme4: solve(chol(H), g)
    except np.linalg.LinAlgError:
        scgrad = g
    mingrad = np.minimum(np.abs(scgrad), np.abs(g))
    if mingrad.max() > tol:
        msgs.append(f"Model failed to converge with max|grad| = {mingrad.max():.6g} (tol = {tol}, "
                    f"component {int(np.argmax(mingrad)) + 1}); try rescaling covariates or "
                    "control=Control(opt_ctrl={'maxfun': ...})")
    ev = np.linalg.eigvalsh(0.5 * (H + H.T))
    if ev.min() < -tol:
        msgs.append(f"Model failed to converge: degenerate Hessian with {int(np.sum(ev < -tol))} "
                    "negative eigenvalue(s); the model may be over-parameterised (simplify the "
                    "random effects)")
    else:
        evd = np.where(ev < 0, np.finfo(float).eps, ev)
        ratio = evd.min() / evd.max()
        if ratio < ctl["check_conv_hess_reltol"]:
            msgs.append(f"Model is nearly unidentifiable: very large eigenvalue ratio of the "
                        f"Hessian ({1 / ratio:.3g}); rescale variables (centre/scale covariates "
                        "such as squared terms)")
    return msgs
