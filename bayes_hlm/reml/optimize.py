"""Optimise the profiled criterion over θ (lme4's ``optimizeLmer``) and check convergence.

Derivative-free BOBYQA (nlopt ``LN_BOBYQA`` with lme4's ``nloptwrap`` settings: xtol_abs =
ftol_abs = 1e-8, and the xtol_rel = 1e-4 that R's nloptr adds as its default) when ``nlopt``
is installed, else bounded quasi-Newton (scipy L-BFGS-B with central-difference gradients);
lower bound 0 on the diagonal of Λ, start where lme4 starts (``DevFun.start``: the moment
start for models of scalar intercepts only, θ = identity otherwise). A projected Newton step (numerical Hessian) follows only when it predicts a gain above
1e-8; its derivatives are reused by lme4's ``checkConv``:
scaled gradient ``|H⁻¹ g| < 0.002`` (falling back to ``|g|``) and a positive-definite
Hessian, computed on the parameters not on the boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .numderiv import derivs

__all__ = ["OptResult", "BobyqaResult", "bobyqa", "optimize_theta", "check_convergence",
           "DEFAULT_CONTROL"]

DEFAULT_CONTROL = {
    "optimizer": "bobyqa",      # nlopt LN_BOBYQA (lme4 default); "L-BFGS-B" (scipy) otherwise
    "maxiter": 1000,
    "ftol": 1e-14,
    "gtol": 1e-8,
    "grad_step": 1e-6,
    "check_conv_tol": 0.002,
    "check_singular_tol": 1e-4,
    "calc_derivs": True,
}


@dataclass
class OptResult:
    theta: np.ndarray
    fun: float
    n_evals: int
    n_iter: int
    message: str
    success: bool
    messages: list = field(default_factory=list)
    gradient: np.ndarray | None = None
    hessian: np.ndarray | None = None
    free: np.ndarray | None = None


def _num_grad(f, x, f0, h, lower):
    g = np.empty_like(x)
    for i in range(len(x)):
        hi = h * max(1.0, abs(x[i]))
        xp = x.copy()
        xm = x.copy()
        xp[i] += hi
        xm[i] -= hi
        g[i] = (f(xp) - f(xm)) / (2 * hi)
    return g


def _have_nlopt() -> bool:
    try:
        import nlopt  # noqa: F401
    except ImportError:
        return False
    return True


def bobyqa(f, x0, lower, *, xtol_abs: float = 1e-8, ftol_abs: float = 1e-8,
           xtol_rel: float | None = 1e-4, maxfun: int = 100_000,
           initial_step: float | None = None, recover: tuple = ()) -> BobyqaResult:
    """Minimise ``f`` by nlopt's ``LN_BOBYQA`` within ``lower`` (upper bounds infinite).

    The one BOBYQA wrapper of the package (lmer's θ search here, glmer's two stages in
    :mod:`bayes_hlm.glmer.optimize`; lme4 shares its ``nloptwrap`` the same way). Defaults are
    lme4's ``nloptwrap`` settings (xtol_abs = ftol_abs = 1e-8, plus the xtol_rel = 1e-4 that R's
    nloptr adds); ``xtol_rel=None`` leaves nlopt's own (none), ``initial_step=None`` its own
    rhobeg. A non-finite value is seen as 1e300. When nlopt stops on round-off (or on an
    exception in ``recover`` raised by ``f``), the best point seen is returned. ``best_x`` /
    ``best_f`` always hold the best point seen."""
    import nlopt

    x0 = np.maximum(np.asarray(x0, dtype=float), np.where(np.isfinite(lower), lower, -np.inf))
    k = len(x0)
    o = nlopt.opt(nlopt.LN_BOBYQA, k)
    o.set_lower_bounds([lo if np.isfinite(lo) else -np.inf for lo in lower])
    o.set_upper_bounds([np.inf] * k)
    o.set_xtol_abs(xtol_abs)
    o.set_ftol_abs(ftol_abs)
    if xtol_rel is not None:
        o.set_xtol_rel(xtol_rel)
    o.set_maxeval(int(maxfun))
    if initial_step is not None:
        o.set_initial_step(initial_step)
    best = {"f": np.inf, "x": x0.copy(), "n": 0}

    def obj(x, grad):
        best["n"] += 1
        v = float(f(np.asarray(x)))
        if not np.isfinite(v):
            v = 1e300
        if v < best["f"]:
            best["f"], best["x"] = v, np.array(x, dtype=float)
        return v

    o.set_min_objective(obj)
    try:
        x = o.optimize(x0)
        fun = o.last_optimum_value()
        code = o.last_optimize_result()
        ok = code in (1, 2, 3, 4)   # 5, 6: maxeval / maxtime reached
        msg = f"NLOPT result code {code}"
    except (nlopt.RoundoffLimited, RuntimeError, *recover) as e:  # keep the best point seen
        x, fun, ok, msg = best["x"], best["f"], True, f"NLOPT: {type(e).__name__}"
    return BobyqaResult(x=np.array(x, dtype=float), fun=float(fun), nit=best["n"], success=ok,
                        message=msg, best_x=best["x"], best_f=float(best["f"]))


@dataclass
class BobyqaResult:
    x: np.ndarray
    fun: float
    nit: int            # evaluations of f
    success: bool
    message: str
    best_x: np.ndarray | None = None
    best_f: float = np.inf


def optimize_theta(devfun, control: dict | None = None, theta0=None) -> OptResult:
    ctl = {**DEFAULT_CONTROL, **(control or {})}
    lower = devfun.lower
    if theta0 is None:      # lme4's start where it has one (mkLmerDevfun), else Λ = I
        x0 = devfun.start() if hasattr(devfun, "start") else devfun.theta0
    else:
        x0 = np.asarray(theta0, dtype=float)
    bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
    h = ctl["grad_step"]

    def fg(x):
        f0 = devfun(x)
        return f0, _num_grad(devfun, x, f0, h, lower)

    opts = {"maxiter": ctl["maxiter"], "ftol": ctl["ftol"], "gtol": ctl["gtol"], "maxls": 50}
    method = ctl.get("optimizer", "bobyqa")
    if method == "bobyqa" and not _have_nlopt():
        method = "L-BFGS-B"

    def run(start):
        if method == "bobyqa":
            return bobyqa(devfun, start, lower, xtol_abs=ctl.get("xtol_abs", 1e-8),
                          ftol_abs=ctl.get("ftol_abs", 1e-8), xtol_rel=ctl.get("xtol_rel", 1e-4),
                          maxfun=ctl.get("maxfun", 100_000))
        from scipy.optimize import minimize  # only here: importing it costs ~1 s at CLI start-up

        return minimize(fg, start, jac=True, method="L-BFGS-B", bounds=bounds, options=opts)

    r = run(x0)
    theta = np.array(r.x, dtype=float)
    fun = float(r.fun)
    # A diagonal element of a q>1 block at 0 is a stationary point of the criterion (it enters
    # ΛΛᵀ squared), where a gradient method can stall although moving off the bound lowers
    # the criterion (BOBYQA, lme4's default, does not stall there). Restart off the bound.
    for _ in range(3):
        at0 = (lower == 0) & (theta < 1e-6)
        if not at0.any():
            break
        best = None
        probe = theta.copy()
        probe[at0] = 0.05
        if devfun(probe) >= fun:      # moving off the bound does not help: a genuine boundary fit
            break
        for v in (0.1, 0.5):
            t0 = theta.copy()
            t0[at0] = v
            r2 = run(t0)
            if r2.fun < fun - 1e-9 and (best is None or r2.fun < best.fun):
                best = r2
        if best is None:
            break
        r = best
        theta, fun = np.array(best.x, dtype=float), float(best.fun)
    # L-BFGS-B can stop a hair above the bound; snap tiny diagonal elements as lme4 reports 0
    near = (lower == 0) & (theta < ctl["check_singular_tol"]) & (theta != 0)
    if near.any():
        t2 = theta.copy()
        t2[near] = 0.0
        f2 = devfun(t2)
        if f2 <= fun + 1e-10:
            theta, fun = t2, f2
    cache = {}
    if ctl.get("polish", True):
        theta, fun = _newton_polish(devfun, theta, fun, lower, ctl, cache=cache)
    out = OptResult(theta=theta, fun=fun, n_evals=getattr(devfun, "n_evals", -1),
                    n_iter=int(r.nit), message=str(r.message), success=bool(r.success))
    if "theta" in cache and np.array_equal(cache["theta"], theta):
        out.gradient, out.hessian = cache["grad"], cache["hess"]
        out.free = cache["free"]
    return out


def _newton_polish(devfun, theta, fun, lower, ctl, max_steps=2, cache=None):
    """A few projected Newton steps on the parameters off the boundary (numerical Hessian)."""
    for _ in range(max_steps):
        free = ~((lower == 0) & (theta <= 1e-8))
        idx = np.flatnonzero(free)
        if not len(idx):
            break

        def fsub(z, idx=idx):
            t = theta.copy()
            t[idx] = z
            return np.array([devfun(t)])

        d = derivs(fsub, theta[idx], want_hessian=True, rel_step=1e-3, min_step=1e-4, levels=1)
        g, H = d["grad"][0], d["hess"][0]
        if cache is not None:
            cache.update(theta=theta.copy(), grad=g, hess=H, free=free.copy())
        try:
            np.linalg.cholesky(H)
            step = np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            break
        # predicted gain of the Newton step below the optimiser's own tolerance: keep the point
        # (the derivatives just computed then serve checkConv, as in lme4)
        if 0.5 * float(g @ step) < ctl.get("polish_ftol", 1e-8):
            break
        improved = False
        for a in (1.0, 0.5, 0.25):
            t = theta.copy()
            t[idx] = t[idx] - a * step
            t = np.maximum(t, np.where(np.isfinite(lower), lower, -np.inf))
            f = devfun(t)
            if f < fun:
                improved = fun - f > 1e-12
                theta, fun = t, f
                break
        if not improved or np.max(np.abs(step)) < 1e-9:
            break
    return theta, fun


def check_convergence(devfun, opt: OptResult, control: dict | None = None) -> list[str]:
    """lme4 ``checkConv``: messages (empty when fine)."""
    ctl = {**DEFAULT_CONTROL, **(control or {})}
    msgs: list[str] = []
    if not opt.success and "ABNORMAL" not in opt.message.upper():
        msgs.append(f"optimizer did not converge: {opt.message}")
    if not ctl["calc_derivs"]:
        return msgs
    theta = opt.theta
    free = ~((devfun.lower == 0) & (theta <= ctl["check_singular_tol"]))
    if not free.any():
        return msgs
    idx = np.flatnonzero(free)

    def fsub(z):
        t = theta.copy()
        t[idx] = z
        return np.array([devfun(t)])

    if opt.hessian is not None and np.array_equal(getattr(opt, "free", None), free):
        g, H = opt.gradient, opt.hessian
    else:
        d = derivs(fsub, theta[idx], want_hessian=True, rel_step=1e-3, levels=1)
        g = d["grad"][0]
        H = d["hess"][0]
    opt.gradient, opt.hessian = g, H
    tol = ctl["check_conv_tol"]
    try:
        Lc = np.linalg.cholesky(H)
        scgrad = np.linalg.solve(Lc.T, np.linalg.solve(Lc, g))
        pd = True
    except np.linalg.LinAlgError:
        scgrad = g
        pd = False
    mx = float(np.max(np.minimum(np.abs(scgrad), np.abs(g))))
    if mx > tol:
        k = int(np.argmax(np.minimum(np.abs(scgrad), np.abs(g)))) + 1
        msgs.append(f"Model failed to converge with max|grad| = {mx:.6g} (tol = {tol}, "
                    f"component {k})")
    if not pd:
        msgs.append("Model failed to converge: degenerate  Hessian with "
                    f"{int(np.sum(np.linalg.eigvalsh(H) <= 0))} negative eigenvalues")
    else:
        ev = np.linalg.eigvalsh(H)
        if ev[-1] / max(ev[0], 1e-300) > 1e6 and False:  # lme4 reports only for huge ratios
            msgs.append("Model is nearly unidentifiable: very large eigenvalue ratio")
    return msgs
