"""Profile-likelihood and parametric-bootstrap confidence intervals (lme4 ``confint.merMod``).

Profile (``method="profile"``), as lme4's ``profile.merMod`` + ``confint.thpr``:

* REML fits are refitted by ML first (lme4's ``devfun2`` calls ``refitML``): the profiled
  quantity is the ML deviance.
* Variance parameters are profiled on the standard-deviation scale, in lme4's ``.sig01, ...,
  .sigma`` layout: for each factor the lower triangle of its covariance, column-major, with the
  SD of a term on the diagonal and the within-term correlation off it (our θ layout), then the
  residual SD. For a fixed value of one of them the ML deviance (β profiled analytically) is
  minimised over all the others.
* Fixed effects: ``β_j`` fixed at ``v`` enters as an offset (``y - v x_j``), the profiled ML
  deviance of the reduced model is minimised over θ (σ and the other β analytic).
* ζ(v) = sign(v - v̂) sqrt(dev(v) - dev_min); the interval ends solve ζ = ∓z_{(1+level)/2}.
  lme4 evaluates ζ on a grid and inverts an interpolating spline (``backSpline``); we solve
  ζ(v) = ±z to ~1e-9 by bracketing + Brent, i.e. the exact profile interval that lme4's
  spline approximates. Where the profile does not reach ±z before a bound (SD 0, correlation
  ±1) the bound is reported, as lme4 does.

Bootstrap (``method="boot"``), as lme4's ``bootMer`` + ``confint(method="boot",
boot.type="perc")``: simulate y* from the fitted model (new random effects and residuals),
refit by the same criterion, percentile intervals of the same parameters.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
from scipy import optimize as sopt
from scipy import stats as sps

from .criterion import DevFun, Stats, remainder_Z, response_cross

__all__ = ["profile_confint", "boot_confint", "param_names", "param_kinds", "theta_to_phi",
           "phi_to_theta", "bounded_minimize", "warm_profile", "first_step", "zeta_root"]


# --------------------------------------------------------------------------- #
# θ, σ  <->  φ = (SDs and correlations per factor, σ)
# --------------------------------------------------------------------------- #
def param_kinds(tmap) -> np.ndarray:
    k = np.empty(tmap.n_theta, dtype=object)
    for f in tmap.factors:
        for r, c, t in zip(f.rows, f.cols, f.tidx):
            k[t] = "sd" if r == c else "cor"
    return np.append(k, "sigma")


def param_names(tmap) -> list[str]:
    """Our names of φ: ``sd(term | factor)``, ``cor(a, b | factor)``, ``sigma``."""
    out = [""] * tmap.n_theta
    for f in tmap.factors:
        for r, c, t in zip(f.rows, f.cols, f.tidx):
            out[t] = (f"sd({f.terms[r]} | {f.name})" if r == c
                      else f"cor({f.terms[c]}, {f.terms[r]} | {f.name})")
    return out + ["sigma"]


def theta_to_phi(tmap, theta, sigma) -> np.ndarray:
    phi = np.empty(tmap.n_theta + 1)
    for f, L in zip(tmap.factors, tmap.lambdas(np.asarray(theta, dtype=float))):
        S = sigma * sigma * (L @ L.T)
        sd = np.sqrt(np.clip(np.diag(S), 0, None))
        for r, c, t in zip(f.rows, f.cols, f.tidx):
            if r == c:
                phi[t] = sd[r]
            else:
                den = sd[r] * sd[c]
                phi[t] = S[r, c] / den if den > 0 else 0.0
    phi[-1] = sigma
    return phi


def phi_to_theta(tmap, phi) -> np.ndarray | None:
    """θ from φ (``None`` where the correlations are not positive definite)."""
    sigma = phi[-1]
    theta = np.empty(tmap.n_theta)
    for f in tmap.factors:
        q = f.q
        C = np.eye(q)
        sd = np.zeros(q)
        for r, c, t in zip(f.rows, f.cols, f.tidx):
            if r == c:
                sd[r] = phi[t]
            else:
                C[r, c] = C[c, r] = phi[t]
        if q == 1:
            Lc = C
        else:
            try:
                Lc = np.linalg.cholesky(C)
            except np.linalg.LinAlgError:
                return None
        Lam = sd[:, None] * Lc / sigma
        theta[f.tidx] = Lam[f.rows, f.cols]
    return theta


# --------------------------------------------------------------------------- #
# small bounded minimiser (nlopt BOBYQA, scipy fallback)
# --------------------------------------------------------------------------- #
def bounded_minimize(fun, x0, lower, upper, step, xtol_rel: float = 1e-10,
                     ftol_abs: float = 1e-11):
    """Minimise ``fun`` within ``[lower, upper]`` from ``x0`` (nlopt BOBYQA, initial steps
    ``step``; scipy L-BFGS-B without nlopt): ``(x, f)``, the best point seen. The inner
    minimiser of the lmer and glmer profiles."""
    x0 = np.clip(np.asarray(x0, dtype=float), lower, upper)
    if len(x0) == 0:
        return x0, float(fun(x0))
    try:
        import nlopt
    except ImportError:
        nlopt = None
    if nlopt is not None:
        o = nlopt.opt(nlopt.LN_BOBYQA, len(x0))
        o.set_lower_bounds(list(lower))
        o.set_upper_bounds(list(upper))
        o.set_initial_step(list(step))
        o.set_xtol_rel(xtol_rel)
        o.set_ftol_abs(ftol_abs)
        o.set_maxeval(20_000)
        best = [np.inf, x0]

        def f(x, grad):
            v = float(fun(x))
            if v < best[0]:
                best[0], best[1] = v, np.array(x)
            return v if np.isfinite(v) else 1e300

        o.set_min_objective(f)
        try:
            o.optimize(x0)
        except (nlopt.RoundoffLimited, RuntimeError, ValueError):
            pass
        return best[1], best[0]
    bounds = list(zip(np.where(np.isfinite(lower), lower, None), np.where(np.isfinite(upper),
                                                                          upper, None)))
    r = sopt.minimize(lambda x: min(float(fun(x)), 1e300), x0, method="L-BFGS-B", bounds=bounds,
                      options={"ftol": 1e-15, "gtol": 1e-9, "maxiter": 2000})
    return np.asarray(r.x), float(r.fun)


# --------------------------------------------------------------------------- #
# profile
# --------------------------------------------------------------------------- #
def warm_profile(objective_at, x_hat, lower, upper, steps, base: float, v_hat: float,
                 **minimize_opts):
    """One parameter's profile, as lme4's ``profile``: for a value ``v`` of the parameter,
    ``dev(v)`` minimises ``objective_at(v)`` (a function of the other parameters ``x``) with
    :func:`bounded_minimize`, warm-started from the last finite solution (initial steps
    ``steps(x0)``); ``zeta(v) = sign(v - v_hat) sqrt(dev(v) - base)``; ``reset()`` goes back to
    the estimates ``x_hat``. Values are cached per ``v``. Returns ``(dev, zeta, reset)``; used
    by the lmer (variance parameters and fixed effects) and glmer profiles."""
    x_hat = np.array(x_hat, dtype=float)
    state = {"x": x_hat.copy()}
    cache: dict[float, float] = {}

    def dev(v: float) -> float:
        if v in cache:
            return cache[v]
        x0 = state["x"]
        x, d = bounded_minimize(objective_at(v), x0, lower, upper, steps(x0), **minimize_opts)
        if np.isfinite(d):
            state["x"] = x
        cache[v] = d
        return d

    def zeta(v: float) -> float:
        return float(np.sign(v - v_hat) * np.sqrt(max(dev(v) - base, 0.0)))

    def reset():
        state["x"] = x_hat.copy()

    return dev, zeta, reset


def _offset_stats(st: Stats, j: int, v: float) -> Stats:
    """Cross-products of the model with ``β_j`` fixed at ``v`` (column j moved to an offset)."""
    p = st.p
    keep = [i for i in range(p) if i != j]
    cols = keep + [p]

    def tr(BC):
        out = BC[..., cols].copy()
        out[..., -1] -= v * BC[..., j]
        return out

    return dataclasses.replace(
        st, p=p - 1, XtX=st.XtX[np.ix_(keep, keep)], Xty=st.Xty[keep] - v * st.XtX[keep, j],
        yty=float(st.yty - 2 * v * st.Xty[j] + v * v * st.XtX[j, j]), BC_E=tr(st.BC_E),
        BC_R=None if st.BC_R is None else tr(st.BC_R))


class _Profiler:
    def __init__(self, ml):
        self.ml = ml
        self.df: DevFun = ml.devfun
        assert not self.df.reml
        self.tmap = self.df.tmap
        self.kinds = param_kinds(self.tmap)
        self.names = param_names(self.tmap)
        self.basedev = float(ml.objective)
        self.phi_hat = theta_to_phi(self.tmap, ml.theta, ml.sigma)
        self.beta_hat = np.asarray(ml.beta, dtype=float)
        self.se_beta = np.sqrt(np.diag(ml.vcov()))
        k = len(self.phi_hat)
        self.lower = np.where(self.kinds == "cor", -1.0, 0.0)
        self.upper = np.where(self.kinds == "cor", 1.0, np.inf)
        self.lower[-1] = 1e-12 * max(ml.sigma, 1e-300)
        self.n = k

    # deviance in φ (ML, β profiled, σ not)
    def dev_phi(self, phi) -> float:
        if phi[-1] <= 0:
            return np.inf
        th = phi_to_theta(self.tmap, phi)
        if th is None:
            return np.inf
        ev = self.df.evaluate(th, full=False)
        if not np.isfinite(ev.ldL2) or not np.isfinite(ev.r2):
            return np.inf
        return float(self.df.deviance_unprofiled(ev, phi[-1]))

    def zeta_var(self, j: int):
        free = np.array([i for i in range(self.n) if i != j])

        def objective_at(v):
            phi = self.phi_hat.copy()
            phi[j] = v

            def fun(x):
                phi[free] = x
                return self.dev_phi(phi)
            return fun

        def steps(x0):
            return np.where(self.kinds[free] == "cor", 0.05,
                            0.1 * np.maximum(np.abs(x0), 1e-3 * self.phi_hat[-1]))

        _, z, reset = warm_profile(objective_at, self.phi_hat[free], self.lower[free],
                                   self.upper[free], steps, self.basedev, self.phi_hat[j])
        return z, reset

    def zeta_beta(self, j: int):
        st = self.df.stats
        lower = np.where(np.isfinite(self.df.lower), self.df.lower, -np.inf)

        def objective_at(v):
            return DevFun(self.df.design, reml=False, tmap=self.tmap, stats=_offset_stats(st, j, v))

        _, z, reset = warm_profile(objective_at, self.ml.theta, lower,
                                   np.full(len(self.ml.theta), np.inf),
                                   lambda x0: 0.1 * np.maximum(np.abs(x0), 0.05), self.basedev,
                                   self.beta_hat[j])
        return z, reset


def first_step(kind: str, v0: float, zc: float, sig: float = 1.0,
               n_obs: int | None = None) -> tuple[float, float]:
    """``(s0, scale)`` for :func:`zeta_root` on a variance parameter of kind ``"sd"``,
    ``"cor"`` or ``"sigma"`` at estimate ``v0``: a first step of about the interval's half-width
    and the scale of the tolerance (``sig``: the residual SD, 1 for GLMMs)."""
    if kind == "sigma":
        return zc * v0 / np.sqrt(2 * n_obs), 1e-3 * v0
    if kind == "sd":
        return (zc * 0.3 * v0 if v0 > 1e-6 * sig else 0.1 * sig), 1e-3 * max(v0, 1e-2 * sig)
    return 0.3, 1e-3


def zeta_root(z, v0, direction, target, s0, lo, hi, scale, rel_tol: float = 1e-10):
    """The v on the ``direction`` side of ``v0`` with ζ(v) = direction·target (ζ increasing),
    to ``rel_tol`` (relative to the bracket's size or ``scale``). The one profile-interval
    solver of lmer (:func:`profile_confint`) and glmer (:mod:`bayes_hlm.glmer.profile`).

    Returns the bound (lo / hi) when the profile does not reach the target before it."""
    bound = lo if direction < 0 else hi
    a, za = v0, 0.0
    s = abs(s0) if s0 > 0 else scale
    b = v0 + direction * s
    for _ in range(60):
        if np.isfinite(bound) and direction * (b - bound) >= 0:
            b = bound
        zb = z(b)
        if direction * zb >= target:
            break
        if np.isfinite(bound) and b == bound:
            return bound
        # secant extrapolation of ζ (nearly linear by construction), with a 10% overshoot
        slope = (zb - za) / (b - a) if b != a else 0.0
        if direction * slope > 0:
            nb = b + 1.1 * (direction * target - zb) / slope
            nb = b + direction * min(max(direction * (nb - b), 0.05 * abs(b - a)),
                                     4.0 * abs(b - v0) + scale)
        else:
            nb = b + direction * 2.0 * max(abs(b - a), scale)
        a, za, b = b, zb, nb
    else:
        return np.nan
    lo_, hi_ = (a, b) if a < b else (b, a)
    tol = rel_tol * max(abs(lo_), abs(hi_), scale)
    return sopt.brentq(lambda v: z(v) - direction * target, lo_, hi_, xtol=tol, rtol=1e-12)


def profile_confint(m, level: float = 0.95, which=None, ml=None) -> pd.DataFrame:
    """Profile-likelihood intervals (see the module docstring). ``m``: a :class:`RemlResult`."""
    from .api import _refit_ml
    if ml is None:
        ml = _refit_ml(m)
    P = _Profiler(ml)
    zc = float(sps.norm.ppf(0.5 + level / 2))
    names = P.names + list(m.fixed_names)
    rows = {}
    sig = P.phi_hat[-1]
    for j, nm in enumerate(P.names):
        if which is not None and nm not in which:
            continue
        kind = P.kinds[j]
        v0 = P.phi_hat[j]
        z, reset = P.zeta_var(j)
        s0, scale = first_step(kind, v0, zc, sig, m.nobs())
        out = []
        for d in (-1, 1):
            reset()
            if kind == "sd" and d < 0 and v0 <= 1e-8 * sig:
                out.append(0.0)
                continue
            out.append(zeta_root(z, v0, d, zc, s0, P.lower[j], P.upper[j], scale))
        rows[nm] = out
    for j, nm in enumerate(m.fixed_names):
        if which is not None and nm not in which:
            continue
        z, reset = P.zeta_beta(j)
        v0 = P.beta_hat[j]
        se = P.se_beta[j]
        out = []
        for d in (-1, 1):
            reset()
            out.append(zeta_root(z, v0, d, zc, zc * se, -np.inf, np.inf, 1e-3 * se))
        rows[nm] = out
    names = [n for n in names if n in rows]
    return pd.DataFrame([rows[n] for n in names], index=pd.Index(names), columns=["lower", "upper"])


# --------------------------------------------------------------------------- #
# parametric bootstrap
# --------------------------------------------------------------------------- #
def _stats_new_y(st: Stats, tmap, X, y, ZR=None) -> Stats:
    """``st`` with the response-dependent cross-products recomputed for a new ``y``."""
    p = st.p
    fE = tmap.factors[st.E]
    BC_E = st.BC_E.copy()
    BC_E[:, :, p] = response_cross(fE, y)
    BC_R = None
    if st.R:
        BC_R = st.BC_R.copy()
        BC_R[:, p] = ZR.T @ y
    return dataclasses.replace(st, Xty=X.T @ y, yty=float(y @ y), BC_E=BC_E, BC_R=BC_R)


def bootstrap_responses(m, nsim: int, seed=None) -> np.ndarray:
    """``nsim`` responses simulated from the fitted model (new effects and residuals), (nsim, N)."""
    rng = np.random.default_rng(seed)
    tmap = m.devfun.tmap
    X = m.design.X
    mu = X @ m.beta
    out = np.empty((nsim, len(mu)))
    lams = tmap.lambdas(m.theta)
    for s in range(nsim):
        y = mu + m.sigma * rng.standard_normal(len(mu))
        for f, L in zip(tmap.factors, lams):
            u = rng.standard_normal((f.n_levels, f.q))
            b = m.sigma * u @ L.T
            y += np.einsum("nq,nq->n", f.Z, b[f.codes])
        out[s] = y
    return out


def boot_confint(m, level: float = 0.95, nsim: int = 500, seed=None,
                 return_samples: bool = False):
    """Parametric bootstrap percentile intervals (lme4 ``bootMer`` + ``confint(type="perc")``)."""
    from .optimize import optimize_theta
    df0: DevFun = m.devfun
    tmap = df0.tmap
    st = df0.stats
    X = np.asarray(m.design.X, dtype=float)
    ZR = None
    if st.R:
        ZR = remainder_Z(tmap, st.R)
    Y = bootstrap_responses(m, nsim, seed)
    names = param_names(tmap) + list(m.fixed_names)
    est = np.full((nsim, len(names)), np.nan)
    ctl = {**m.control, "polish": False, "calc_derivs": False}
    for s in range(nsim):
        dfs = DevFun(m.design, reml=df0.reml, tmap=tmap, stats=_stats_new_y(st, tmap, X, Y[s], ZR))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = optimize_theta(dfs, ctl, theta0=m.theta)
        ev = dfs.evaluate(opt.theta, full=False)
        sig = dfs.sigma_hat(ev)
        est[s] = np.concatenate([theta_to_phi(tmap, opt.theta, sig), ev.beta])
    a = (1 - level) / 2
    lo, hi = np.nanquantile(est, [a, 1 - a], axis=0)
    ci = pd.DataFrame({"lower": lo, "upper": hi}, index=pd.Index(names))
    if return_samples:
        return ci, pd.DataFrame(est, columns=names)
    return ci
