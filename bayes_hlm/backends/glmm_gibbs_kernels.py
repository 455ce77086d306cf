"""Compiled sweeps of the Metropolis-within-Gibbs GLMM engine (:mod:`.glmm_gibbs`).

The state is the compiled full-model density's parameter vector ``x``
(:mod:`.glmm_density`'s layout, one centred factor): raw fixed effects (p), log SDs (q),
partial correlations ``atanh`` (q(q-1)/2), the centred effects ``m_g`` (G x q, level-major).
One sweep:

1. every group's ``m_g | beta, Sigma, y_g`` by independence Metropolis-Hastings: the proposal
   is a Gaussian (or multivariate t) at a Laplace point reached by a fixed number of Newton
   steps from a start that does not depend on the current ``m_g`` (frozen at the end of the
   warm-up), so the step is exact whatever the Newton steps converged to. The first step uses
   the likelihood's gradient and Hessian at the frozen start (computed once), so ``newton=1``
   costs one pass over the group's rows per sweep (the proposal's log likelihood); the
   current state's log likelihood is cached (it depends on ``m_g`` only: every fixed column
   is a column of the term, so ``X beta + Z b = Z m``);
2. the raw fixed effects ``| m, Sigma``: Gaussian (Normal priors), drawn exactly;
3. log SDs and partial correlations ``| m, beta``: univariate slice sampling (Neal 2003,
   stepping out) on :func:`.glmm_density._chol_of` (the compiled SD priors and LKJ, the one
   implementation) plus the effects' Gaussian density from their scatter matrix: no data pass.

Random numbers come from Numba's per-thread generator, seeded per chain (:func:`run_block`'s
``seed_value``; :func:`seed` for a caller of the steps themselves).
"""

from __future__ import annotations

import numba
import numpy as np

from . import glmm_kernels as gk
from .glmm_collapsed import _chol, _inv_lower, _spd_solve
from .glmm_density import _chol_of

_NEWTON_CLIP = 10.0  # largest Newton move per coordinate (a deterministic map: still exact)


@numba.njit(cache=True, nogil=True)
def seed(s):
    """Seed the calling thread's generator (each chain runs in its own thread)."""
    np.random.seed(s)


@numba.njit(cache=True, nogil=True, fastmath=gk._FAST, error_model="numpy", inline="always")
def _row_ll(code, y, n, e):
    """One row's log likelihood (no data constant) at ``eta = e``: logit (code 0) or log
    (code 3), from :mod:`.glmm_kernels`' vectorisable row formulas (no division: only the
    value is kept)."""
    if code == 0:
        sp, _ = gk._logit_row(e)
        return y * e - n * sp
    return y * e - (gk.fast_exp(e) if e <= 709.0 else np.inf)


@numba.njit(cache=True, nogil=True, fastmath=gk._FAST, error_model="numpy", inline="always")
def _fill_eta(Zc, off, N, a, e, q, m, et):
    """``et = offset + Z m`` over rows ``a:e`` (``Zc`` column-major: q columns of N rows)."""
    o = off[a:e]
    for k in range(e - a):
        et[k] = o[k]
    for i in range(q):
        col = Zc[i * N + a:i * N + e]
        mi = m[i]
        for k in range(e - a):
            et[k] += col[k] * mi


@numba.njit(cache=True, nogil=True, fastmath=gk._FAST, error_model="numpy")
def group_ll(code, y, n, Zc, off, N, a, e, q, m, eta, unit):
    """Log likelihood (without data constants) of rows ``a:e`` at effects ``m``, in one
    fused loop (q = 1, 2 spelled out; ``eta`` scratch for larger q): the hot loop of a sweep.
    ``unit`` 2: Bernoulli rows without offset whose first column is ones (``(1 + x | g)``):
    only ``y`` and the other column are read."""
    plain = unit == 2
    ln = e - a
    yy = y[a:e]
    nn = n[a:e]
    o = off[a:e]
    tot = 0.0
    if plain and q == 2:
        c1 = Zc[N + a:N + e]
        m0, m1 = m[0], m[1]
        for k in range(ln):
            et = m0 + c1[k] * m1
            sp, _ = gk._logit_row(et)
            tot += yy[k] * et - sp
        return tot
    if plain and q == 1:
        sp, _ = gk._logit_row(m[0])
        s1 = 0.0
        for k in range(ln):
            s1 += yy[k]
        return s1 * m[0] - ln * sp
    if q == 2:
        c0 = Zc[a:e]
        c1 = Zc[N + a:N + e]
        m0, m1 = m[0], m[1]
        for k in range(ln):
            tot += _row_ll(code, yy[k], nn[k], o[k] + c0[k] * m0 + c1[k] * m1)
        return tot
    if q == 1:
        c0 = Zc[a:e]
        m0 = m[0]
        for k in range(ln):
            tot += _row_ll(code, yy[k], nn[k], o[k] + c0[k] * m0)
        return tot
    et = eta[:ln]
    _fill_eta(Zc, off, N, a, e, q, m, et)
    for k in range(ln):
        tot += _row_ll(code, yy[k], nn[k], et[k])
    return tot


@numba.njit(cache=True, nogil=True, fastmath=gk._FAST, error_model="numpy", inline="always")
def _row_derivs(code, y, n, e):
    """One row's log likelihood, its eta-derivative and negative second derivative (logit:
    ``n p (1 - p)``; log: ``mu``), from :mod:`.glmm_kernels`' vectorisable row formulas."""
    if code == 0:
        sp, pr = gk._logit_row(e)
        return y * e - n * sp, y - n * pr, n * pr * (1.0 - pr)
    mu = gk.fast_exp(e) if e <= 709.0 else np.inf
    return y * e - mu, y - mu, mu


@numba.njit(cache=True, nogil=True, fastmath=gk._FAST, error_model="numpy")
def group_grad_hess(code, y, n, Zc, off, N, a, e, q, m, eta, d, gl, Hl):
    """The log likelihood (without data constants) of rows ``a:e`` at effects ``m``, its
    gradient ``gl`` (q) and negative Hessian ``Hl`` (q, q) in ``m``. ``Zc`` column-major (q
    columns of N rows); ``eta``, ``d``: scratch of at least ``e - a``."""
    ln = e - a
    et = eta[:ln]
    dd = d[:ln]
    yy = y[a:e]
    nn = n[a:e]
    _fill_eta(Zc, off, N, a, e, q, m, et)
    ll = 0.0
    for k in range(ln):
        lk, dk, wk = _row_derivs(code, yy[k], nn[k], et[k])
        ll += lk
        dd[k] = dk
        et[k] = wk  # eta is no longer needed: the weights
    for i in range(q):
        ci = Zc[i * N + a:i * N + e]
        s = 0.0
        for k in range(ln):
            s += ci[k] * dd[k]
        gl[i] = s
        for j in range(i + 1):
            cj = Zc[j * N + a:j * N + e]
            h = 0.0
            for k in range(ln):
                h += ci[k] * cj[k] * et[k]
            Hl[i, j] = h
            Hl[j, i] = h
    return ll


@numba.njit(cache=True, nogil=True)
def _gamma_half(nu):
    """A Gamma(nu/2, 1) draw: for even nu <= 20 as -log of a product of nu/2 uniforms (3x
    cheaper than the general sampler, which the other nu take)."""
    k = int(nu) // 2
    if 2 * k == nu and k <= 10:
        u = 1.0
        for _ in range(k):
            u *= 1.0 - np.random.random()  # in (0, 1]
        return -np.log(u)
    return np.random.standard_gamma(0.5 * nu)


@numba.njit(cache=True, nogil=True)
def _quad(P, v):
    """``vᵀ P v``."""
    q = v.shape[0]
    s = 0.0
    for i in range(q):
        for j in range(q):
            s += v[i] * P[i, j] * v[j]
    return s


@numba.njit(cache=True, nogil=True)
def _newton_step(gl, Hl, P, t, mu, Q, R, r, step):
    """The Newton step of a group's conditional at ``t`` (likelihood gradient ``gl``, negative
    Hessian ``Hl``; prior mean ``mu``, precision ``P``) into ``step``, with ``Q = Hl + P =
    R Rᵀ``; False (and ``R``, ``step`` unusable) when ``Q`` is not positive definite."""
    q = t.shape[0]
    for i in range(q):
        s = gl[i]
        for j in range(q):
            Q[i, j] = Hl[i, j] + P[i, j]
            s -= P[i, j] * (t[j] - mu[j])
        r[i] = s
    if not _chol(Q, R):
        return False
    _spd_solve(R, r, step)
    return True


@numba.njit(cache=True, nogil=True)
def _solve_lower_t(R, b, out):
    """``out = R⁻ᵀ b`` (``R`` lower triangular)."""
    q = R.shape[0]
    for i in range(q - 1, -1, -1):
        s = b[i]
        for k in range(i + 1, q):
            s -= R[k, i] * out[k]
        out[i] = s / R[i, i]


@numba.njit(cache=True, nogil=True)
def _prior_term(P, v, mu, dv):
    """``(v − mu)ᵀ P (v − mu) / 2`` (``dv``: scratch)."""
    for i in range(v.shape[0]):
        dv[i] = v[i] - mu[i]
    return 0.5 * _quad(P, dv)


@numba.njit(cache=True, nogil=True)
def _shift(F, x, p, mu):
    """The effects' prior mean ``mu = F raw`` (``raw = x[:p]``)."""
    for i in range(mu.shape[0]):
        v = 0.0
        for j in range(p):
            v += F[i, j] * x[j]
        mu[i] = v


@numba.njit(cache=True, nogil=True)
def effects_step(x, ex, G, q, mu, P, code, unit, y, n, Zc, off, N, gstart,
                 start, g0, H0, llc, newton, nu, warm, eta, d, acc):
    """One independence-MH update of every group's ``m_g`` (module docstring, step 1).

    ``mu`` (q) and ``P`` (q, q): the effects' prior mean and precision given beta, Sigma.
    ``start``/``g0``/``H0``: per group the Newton start and the likelihood's gradient and
    negative Hessian there; ``llc``: the current state's log likelihood per group (updated).
    ``newton`` Newton steps (the first from the frozen ``g0``/``H0``: ``newton - 1`` extra
    passes); ``nu`` > 0: multivariate t proposal with ``nu`` degrees of freedom, else Gaussian.
    ``warm`` (warm-up only): 1 -- the start is the current ``m_g`` and its ``g0``/``H0``/``llc``
    are computed here and the proposal is always taken (approximate Gibbs from the Laplace
    approximation at Newton steps from the current state: it walks in from a far start, where
    a Metropolis test with this state-dependent proposal would reject every move); 2 -- every
    proposal is taken (a fresh start after the Newton starts were frozen); 0 -- the exact step.
    ``acc[g]`` is set to 1.0 where the proposal was accepted. Returns the accepted count.
    """
    t = np.empty(q)
    gl = np.empty(q)
    Hl = np.empty((q, q))
    Q = np.empty((q, q))
    R = np.empty((q, q))
    r = np.empty(q)
    step = np.empty(q)
    prop = np.empty(q)
    cur = np.empty(q)
    dv = np.empty(q)
    n_acc = 0
    for g in range(G):
        a, e = gstart[g], gstart[g + 1]
        o = ex + g * q
        for i in range(q):
            cur[i] = x[o + i]
        if warm == 1:
            for i in range(q):
                start[g, i] = cur[i]
            llc[g] = group_grad_hess(code, y, n, Zc, off, N, a, e, q, cur, eta, d,
                                     g0[g], H0[g])
        for i in range(q):
            t[i] = start[g, i]
            gl[i] = g0[g, i]
            for j in range(q):
                Hl[i, j] = H0[g, i, j]
        ok = True
        for it in range(newton):
            if it > 0:
                group_grad_hess(code, y, n, Zc, off, N, a, e, q, t, eta, d, gl, Hl)
            if not _newton_step(gl, Hl, P, t, mu, Q, R, r, step):
                ok = False
                break
            for i in range(q):
                t[i] += min(max(step[i], -_NEWTON_CLIP), _NEWTON_CLIP)
        # proposal: centre t, precision Q = R Rᵀ (the last Hessian plus the prior's)
        if not ok:
            acc[g] = 0.0
            continue
        for i in range(q):
            r[i] = np.random.standard_normal()
        scale = 1.0
        if nu > 0.0 and warm != 1:  # warm-up Gibbs: Gaussian (a t draw far out, then Newton
            # from there on a flat logistic likelihood, can run away)
            scale = np.sqrt(nu / (2.0 * _gamma_half(nu)))
        _solve_lower_t(R, r, step)  # prop = t + scale R⁻ᵀ r
        for i in range(q):
            prop[i] = t[i] + scale * step[i]
        # log q at prop and at cur (constants cancel)
        qp = 0.0
        for i in range(q):
            qp += r[i] * r[i]
        qp *= scale * scale
        for i in range(q):
            dv[i] = cur[i] - t[i]
        qc = _quad(Q, dv)
        if nu > 0.0 and warm != 1:
            lq_prop = -0.5 * (nu + q) * np.log1p(qp / nu)
            lq_cur = -0.5 * (nu + q) * np.log1p(qc / nu)
        else:
            lq_prop, lq_cur = -0.5 * qp, -0.5 * qc
        ll_prop = group_ll(code, y, n, Zc, off, N, a, e, q, prop, eta, unit)
        lp_prop = ll_prop - _prior_term(P, prop, mu, dv)
        lp_cur = llc[g] - _prior_term(P, cur, mu, dv)
        log_a = lp_prop - lp_cur + lq_cur - lq_prop
        if warm > 0 or np.log(np.random.random()) < log_a:
            for i in range(q):
                x[o + i] = prop[i]
            llc[g] = ll_prop
            acc[g] = 1.0
            n_acc += 1
        else:
            acc[g] = 0.0
    return n_acc


@numba.njit(cache=True, nogil=True)
def freeze(x, ex, G, q, code, unit, y, n, Zc, off, N, gstart, start, g0, H0, llc, eta, d,
           mu, P, iters):
    """Fix each group's Newton start: ``iters`` damped Newton steps (halved until the
    conditional density given ``mu`` and ``P`` rises: plain Newton on a logistic likelihood
    can diverge from a far start) from ``start`` (e.g. its warm-up mean), written back to
    ``start``; the likelihood's gradient and negative Hessian there; the current state's log
    likelihood."""
    cur = np.empty(q)
    Q = np.empty((q, q))
    R = np.empty((q, q))
    r = np.empty(q)
    step = np.empty(q)
    t = np.empty(q)
    dv = np.empty(q)
    for g in range(G):
        a, e = gstart[g], gstart[g + 1]
        for _ in range(iters):
            ll = group_grad_hess(code, y, n, Zc, off, N, a, e, q, start[g], eta, d,
                                 g0[g], H0[g])
            lp = ll - _prior_term(P, start[g], mu, dv)
            if not _newton_step(g0[g], H0[g], P, start[g], mu, Q, R, r, step):
                break
            h = 1.0
            for _k in range(30):
                for i in range(q):
                    t[i] = start[g, i] + h * min(max(step[i], -_NEWTON_CLIP), _NEWTON_CLIP)
                lt = group_ll(code, y, n, Zc, off, N, a, e, q, t, eta, unit)
                if lt - _prior_term(P, t, mu, dv) >= lp:
                    break
                h *= 0.5
            else:
                break
            for i in range(q):
                start[g, i] = t[i]
        group_grad_hess(code, y, n, Zc, off, N, a, e, q, start[g], eta, d, g0[g], H0[g])
        for i in range(q):
            cur[i] = x[ex + g * q + i]
        llc[g] = group_ll(code, y, n, Zc, off, N, a, e, q, cur, eta, unit)


@numba.njit(cache=True, nogil=True)
def fixed_step(x, ex, G, q, p, F, P, mu0, sd0):
    """Raw fixed effects ``| m, Sigma`` (every fixed column a term column, ``shift = F raw``):
    Gaussian with precision ``G Fᵀ P F + diag(1/sd0²)``, drawn exactly into ``x[:p]``."""
    sm = np.zeros(q)
    for g in range(G):
        for i in range(q):
            sm[i] += x[ex + g * q + i]
    PF = P @ F
    Lam = G * (F.T @ PF)
    rhs = F.T @ (P @ sm)
    for j in range(p):
        Lam[j, j] += 1.0 / (sd0[j] * sd0[j])
        rhs[j] += mu0[j] / (sd0[j] * sd0[j])
    R = np.empty((p, p))
    _chol(Lam, R)
    mean = np.empty(p)
    _spd_solve(R, rhs, mean)
    for i in range(p):  # + R⁻ᵀ ε
        rhs[i] = np.random.standard_normal()
    z = np.empty(p)
    _solve_lower_t(R, rhs, z)
    for j in range(p):
        x[j] = mean[j] + z[j]


@numba.njit(cache=True, nogil=True)
def scatter(x, ex, G, q, mu, S):
    """``S = Σ_g (m_g − mu)(m_g − mu)ᵀ``."""
    for i in range(q):
        for j in range(q):
            S[i, j] = 0.0
    v = np.empty(q)
    for g in range(G):
        for i in range(q):
            v[i] = x[ex + g * q + i] - mu[i]
        for i in range(q):
            for j in range(i + 1):
                S[i, j] += v[i] * v[j]
    for i in range(q):
        for j in range(i):
            S[j, i] = S[i, j]


@numba.njit(cache=True, nogil=True)
def hyper_logp(x, buf, tb, q, corr, G, S, L, scratch):
    """Log density of the log SDs and partial correlations given the effects' scatter ``S``
    (G effects): the compiled priors (:func:`.glmm_density._chol_of`) plus
    ``−G log|L| − tr(Σ⁻¹ S)/2``; writes ``L`` (Σ = L Lᵀ)."""
    lp = _chol_of(x, buf, tb, q, corr, L, scratch)
    if not np.isfinite(lp):
        return -np.inf
    logdet = 0.0
    for i in range(q):
        if not L[i, i] > 0.0:
            return -np.inf
        logdet += np.log(L[i, i])
    # tr(L⁻¹ S L⁻ᵀ) = Σ_j ||L⁻¹ s_j||² over S's Cholesky columns: use S directly via A = L⁻¹ S
    A = np.empty((q, q))
    for c in range(q):
        for i in range(q):
            s = S[i, c]
            for k in range(i):
                s -= L[i, k] * A[k, c]
            A[i, c] = s / L[i, i]
    # tr(L⁻¹ S L⁻ᵀ) = tr(A L⁻ᵀ) = Σ_i (L⁻¹ Aᵀ)_ii
    tr = 0.0
    B = np.empty(q)
    for i in range(q):  # row i of A, solve L b = A[i, :]ᵀ, take b[i]
        for r in range(q):
            s = A[i, r]
            for k in range(r):
                s -= L[r, k] * B[k]
            B[r] = s / L[r, r]
        tr += B[i]
    return lp - G * logdet - 0.5 * tr


@numba.njit(cache=True, nogil=True)
def hyper_step(x, buf, tb, u0, nu_, q, corr, G, S, L, scratch, widths, rounds):
    """Univariate slice sampling (stepping out, then shrinking) of ``x[u0:u0 + nu_]`` (log
    SDs then partial correlations) on :func:`hyper_logp`; ``rounds`` passes over them.
    Returns the number of density evaluations."""
    evals = 0
    f0 = hyper_logp(x, buf, tb, q, corr, G, S, L, scratch)
    evals += 1
    for _ in range(rounds):
        for c in range(u0, u0 + nu_):
            w = widths[c - u0]
            x0 = x[c]
            level = f0 + np.log(np.random.random())
            lo = x0 - w * np.random.random()
            hi = lo + w
            j = int(50 * np.random.random())  # Neal's split of at most 50 steps: reversible
            for _k in range(j):
                x[c] = lo
                evals += 1
                if hyper_logp(x, buf, tb, q, corr, G, S, L, scratch) <= level:
                    break
                lo -= w
            for _k in range(49 - j):
                x[c] = hi
                evals += 1
                if hyper_logp(x, buf, tb, q, corr, G, S, L, scratch) <= level:
                    break
                hi += w
            while True:
                x1 = lo + (hi - lo) * np.random.random()
                x[c] = x1
                evals += 1
                f1 = hyper_logp(x, buf, tb, q, corr, G, S, L, scratch)
                if f1 > level:
                    f0 = f1
                    break
                if x1 < x0:
                    lo = x1
                else:
                    hi = x1
                if hi - lo < 1e-12:  # cannot happen for a proper density; keep x0
                    x[c] = x0
                    f0 = hyper_logp(x, buf, tb, q, corr, G, S, L, scratch)
                    break
    hyper_logp(x, buf, tb, q, corr, G, S, L, scratch)  # L at the new state
    return evals


@numba.njit(cache=True, nogil=True)
def noncentred_step(x, buf, tb, ex, G, q, p, u0, n_u, corr, F, mu0, sd0, L, scratch, steps,
                    code, unit, y, n, Zc, off, N, gstart, llc, eta, d, mnew, llnew):
    """One random-walk Metropolis move of the raw fixed effects, log SDs and correlations
    together with the effects' standardised deviations ``z_g = L⁻¹(m_g − F raw)`` held
    fixed (the non-centred direction, interwoven with the centred Gibbs steps: Yu & Meng
    2011). In ``(raw, u, z)`` the target is ``p(raw) p(u) Π N(z_g) lik(F raw + L z_g)``, so
    the ratio is the priors' (Normal; :func:`_chol_of`) times the likelihoods'; one pass over
    the rows. ``steps`` (p + n_u): the proposal SD per coordinate (raw first).
    Returns 1.0 if accepted. ``L`` is left at the final state."""
    lp0 = _chol_of(x, buf, tb, q, corr, L, scratch)
    Lold = L.copy()
    old = x[u0:u0 + n_u].copy()
    raw_old = x[:p].copy()
    for j in range(p):
        zj = (raw_old[j] - mu0[j]) / sd0[j]
        lp0 -= 0.5 * zj * zj
    for j in range(p):
        x[j] = raw_old[j] + steps[j] * np.random.standard_normal()
    for c in range(n_u):
        x[u0 + c] = old[c] + steps[p + c] * np.random.standard_normal()
    lp1 = _chol_of(x, buf, tb, q, corr, L, scratch)
    for j in range(p):
        zj = (x[j] - mu0[j]) / sd0[j]
        lp1 -= 0.5 * zj * zj
    if not np.isfinite(lp1):
        x[:p] = raw_old
        x[u0:u0 + n_u] = old
        _chol_of(x, buf, tb, q, corr, L, scratch)
        return 0.0
    mu_old = F @ raw_old
    mu_new = F @ x[:p]
    v = np.empty(q)
    zz = np.empty(q)
    dll = 0.0
    for g in range(G):
        o = ex + g * q
        for i in range(q):  # z = Lold⁻¹ (m − mu_old)
            t = x[o + i] - mu_old[i]
            for k in range(i):
                t -= Lold[i, k] * zz[k]
            zz[i] = t / Lold[i, i]
        for i in range(q):
            t = mu_new[i]
            for k in range(i + 1):
                t += L[i, k] * zz[k]
            v[i] = t
            mnew[g, i] = t
        llnew[g] = group_ll(code, y, n, Zc, off, N, gstart[g], gstart[g + 1], q, v, eta,
                             unit)
        dll += llnew[g] - llc[g]
    if np.log(np.random.random()) < lp1 - lp0 + dll:
        for g in range(G):
            for i in range(q):
                x[ex + g * q + i] = mnew[g, i]
            llc[g] = llnew[g]
        return 1.0
    x[:p] = raw_old
    x[u0:u0 + n_u] = old
    _chol_of(x, buf, tb, q, corr, L, scratch)
    return 0.0


@numba.njit(cache=True, nogil=True)
def effects_prior(x, buf, tb, q, p, corr, F):
    """The effects' prior mean ``F raw`` and precision ``Σ⁻¹`` at state ``x``."""
    L = np.zeros((q, q))
    _chol_of(x, buf, tb, q, corr, L, np.zeros(x.shape[0]))
    P = np.empty((q, q))
    precision(L, P)
    return F @ x[:p].copy(), P


@numba.njit(cache=True, nogil=True)
def precision(L, P):
    """``P = (L Lᵀ)⁻¹``."""
    q = L.shape[0]
    Linv = np.zeros((q, q))
    _inv_lower(L, Linv)
    for i in range(q):
        for j in range(q):
            s = 0.0
            for k in range(q):
                s += Linv[k, i] * Linv[k, j]
            P[i, j] = s


@numba.njit(cache=True, nogil=True)
def run_block(x, buf, tb, ex, G, q, p, u0, nu_, corr, F, mu0, sd0, code, unit, y, n, Zc,
              off, N, gstart, start, g0, H0, llc, newton, nu, warm, widths, rounds, eta, d,
              acc, draws, acc_rate, sums, accumulate, steps, nc_rate, seed_value, freeze_iters):
    """``draws.shape[0]`` sweeps from state ``x``; writes each sweep's ``x`` into ``draws`` and
    its acceptance rate over the groups into ``acc_rate``; with ``accumulate`` adds each
    sweep's effects to ``sums`` (G, q) (the warm-up mean the Newton starts freeze at).
    ``steps`` (p + n_u): the non-centred move's proposal SDs (all zero: no such move);
    ``nc_rate[s]``: whether it was accepted. ``seed_value`` >= 0: seed this thread's
    generator first; ``freeze_iters`` >= 0: instead of sweeps, :func:`freeze` the Newton
    starts (from ``start``) at the current state. One compiled entry point for the engine:
    each separate one costs a cache load (~0.03-0.1 s) per process."""
    if seed_value >= 0:
        np.random.seed(seed_value)
    L = np.zeros((q, q))
    P = np.empty((q, q))
    S = np.empty((q, q))
    scratch = np.zeros(x.shape[0])
    mu = np.empty(q)
    if freeze_iters >= 0:
        mu, P = effects_prior(x, buf, tb, q, p, corr, F)
        freeze(x, ex, G, q, code, unit, y, n, Zc, off, N, gstart, start, g0, H0, llc, eta,
               d, mu, P, freeze_iters)
        return
    mnew = np.empty((G, q))
    llnew = np.empty(G)
    for s in range(draws.shape[0]):
        # Σ from the current state, then the effects, the fixed effects, Σ
        _chol_of(x, buf, tb, q, corr, L, scratch)
        precision(L, P)
        _shift(F, x, p, mu)
        na = effects_step(x, ex, G, q, mu, P, code, unit, y, n, Zc, off, N, gstart, start,
                          g0, H0, llc, newton, nu, warm, eta, d, acc)
        acc_rate[s] = na / G
        fixed_step(x, ex, G, q, p, F, P, mu0, sd0)
        _shift(F, x, p, mu)
        scatter(x, ex, G, q, mu, S)
        hyper_step(x, buf, tb, u0, nu_, q, corr, G, S, L, scratch, widths, rounds)
        nc_rate[s] = 0.0
        if steps[p] > 0.0:
            nc_rate[s] = noncentred_step(x, buf, tb, ex, G, q, p, u0, nu_, corr, F, mu0, sd0, L,
                                         scratch, steps, code, unit, y, n, Zc, off, N,
                                         gstart, llc,
                                         eta, d, mnew, llnew)
        draws[s, :] = x
        if accumulate:
            for g in range(G):
                for i in range(q):
                    sums[g, i] += x[ex + g * q + i]
