"""The collapsed log density of a one-factor model as one cached Numba function.

For the common case (one grouping factor, normal fixed-effect priors, the usual
scale priors, LKJ on 2×2 correlations) the whole log posterior and its gradient
is a single Numba function over a flat parameter vector and one float64 buffer
that holds the prior parameters and the sufficient statistics. It is compiled
once per machine (``cache=True``) and exported as a C callback, so nutpie's NUTS
calls it from its worker threads without Python or the GIL: a warm process
starts sampling at once, and a gradient costs one pass over the groups
(:mod:`.group_kernel`).

Parameters (unconstrained, in this order)::

    raw fixed effects (p)      β = raw, intercept shifted as Bambi's centred predictors
    log σ
    per group term: log SD (q_t), then atanh(ρ) when the term is a correlated 2×2

The prior is the model's :class:`~bayes_hlm.spec.priors.PriorSet`, the same
prior as the PyMC model of the other engines; only the coordinates differ
(LKJ(η) on ρ becomes ``η log(1 − ρ²)`` in ``z = atanh ρ``). Models outside
this case return a reason from :func:`unsupported_reason` and use the PyMC
graph instead.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numba
import numpy as np

from ..spec.design import Design
from ..spec.priors import PriorSet, corr_key, sd_key
from .group_kernel import term_and_grad
from .sufficient_stats import SingleStats

#: positive-parameter priors: name -> (code, parameter names)
POSITIVE_FAMILIES = {
    "HalfNormal": (1, ("sigma",)),
    "HalfStudentT": (2, ("nu", "sigma")),
    "HalfCauchy": (3, ("beta",)),
    "Exponential": (4, ("lam",)),
    "Gamma": (5, ("alpha", "beta")),
    "InverseGamma": (6, ("alpha", "beta")),
    "LogNormal": (7, ("mu", "sigma")),
}
_HEAD = 11  # header entries before the per-term blocks
_LOG2PI = float(np.log(2.0 * np.pi))


# --------------------------------------------------------------------------- #
# which models qualify
# --------------------------------------------------------------------------- #
def _positive_code(prior) -> tuple[int, float, float] | None:
    fam = POSITIVE_FAMILIES.get(prior.dist)
    if fam is None or set(prior.params) != set(fam[1]):
        return None
    vals = [float(np.asarray(prior.params[k])) for k in fam[1]] + [0.0]
    return fam[0], vals[0], vals[1]


def unsupported_reason(design: Design, ps: PriorSet, stats) -> str | None:
    """``None`` when the compiled density covers this model, else why not."""
    if type(stats) is not SingleStats:
        return f"{stats.plan.structure} grouping structure"
    for n in design.fixed_names:
        p = ps.priors[n]
        if p.dist != "Normal" or set(p.params) != {"mu", "sigma"} or np.ndim(p.params["mu"]):
            return f"prior {p} on {n!r} (only Normal(mu, sigma))"
    if _positive_code(ps.priors["sigma"]) is None:
        return f"prior {ps.priors['sigma']} on sigma"
    for g in design.groups:
        if g.correlated and g.q > 2:
            return f"correlated term {g.name} with {g.q} coefficients (only 2)"
        fams = set()
        for t in g.terms:
            p = ps.priors[sd_key(t, g.factor)]
            if _positive_code(p) is None:
                return f"prior {p} on {sd_key(t, g.factor)!r}"
            fams.add(p.dist)
        if g.correlated and len(fams) > 1:  # the PyMC model rejects this with a clear message
            return f"SD priors of {g.name} from different families"
    return None


# --------------------------------------------------------------------------- #
# packing the model into one buffer
# --------------------------------------------------------------------------- #
@dataclass
class Packed:
    """The buffer and how to read the parameter vector back."""

    buf: np.ndarray
    ndim: int
    p: int
    terms: list  # (q_t, correlated) per GroupTerm
    init: np.ndarray  # PyMC-style starting point (before jitter)


def pack(design: Design, ps: PriorSet, stats: SingleStats) -> Packed:
    """Lay out prior parameters and statistics for :func:`logp_grad`."""
    p, (G, q) = design.p, stats.c.shape
    names = design.fixed_names
    i_int = names.index("Intercept") if ps.centered else -1
    head = [0.0, p, G, q, stats.N, float(stats.yty), len(design.groups), i_int,
            *_positive_code(ps.priors["sigma"])]
    assert len(head) == _HEAD
    per_term, terms, init = [], [], []
    mu = np.array([float(ps.priors[n].params["mu"]) for n in names])
    sd = np.array([float(ps.priors[n].params["sigma"]) for n in names])
    init += list(mu)
    init.append(np.log(_scale(ps.priors["sigma"])))
    for g in design.groups:
        eta = float(ps.priors[corr_key(g.factor)].params.get("eta", 1.0)) if g.correlated else 0.0
        per_term += [g.q, float(g.correlated), eta]
        for t in g.terms:
            prior = ps.priors[sd_key(t, g.factor)]
            per_term += list(_positive_code(prior))
            init.append(np.log(_scale(prior)))
        if g.correlated:
            init.append(0.0)
        terms.append((g.q, g.correlated))
    body = [np.asarray(head), np.asarray(per_term, dtype=float), mu, sd,
            np.asarray(ps.x_mean, dtype=float), stats.XtX.ravel(), stats.Xty.ravel(),
            stats.c.ravel(), stats.B.ravel(), stats.A.ravel()]
    buf = np.ascontiguousarray(np.concatenate(body), dtype=np.float64)
    buf[0] = buf.size
    return Packed(buf=buf, ndim=len(init), p=p, terms=terms, init=np.asarray(init))


def _scale(prior) -> float:
    """A typical value of a positive prior (PyMC starts near its support point)."""
    pr = prior.params
    v = {"HalfNormal": lambda: pr["sigma"], "HalfStudentT": lambda: pr["sigma"],
         "HalfCauchy": lambda: pr["beta"], "Exponential": lambda: 1.0 / pr["lam"],
         "Gamma": lambda: pr["alpha"] / pr["beta"],
         "InverseGamma": lambda: pr["beta"] / (pr["alpha"] + 1.0),
         "LogNormal": lambda: np.exp(pr["mu"])}[prior.dist]()
    return float(v) if float(v) > 0 else 1.0


# --------------------------------------------------------------------------- #
# the density
# --------------------------------------------------------------------------- #
@numba.njit(cache=True, nogil=True, error_model="numpy")
def _log_positive(code, a, b, u):
    """log prior of ``v = exp(u)`` plus the log-Jacobian ``u``; and its u-derivative."""
    v = np.exp(u)
    if code == 1:  # HalfNormal(sigma=a)
        lp, d = -0.5 * (v / a) ** 2, -v / (a * a)
    elif code == 2:  # HalfStudentT(nu=a, sigma=b)
        lp, d = -0.5 * (a + 1.0) * np.log1p(v * v / (a * b * b)), -(a + 1.0) * v / (a * b * b + v * v)
    elif code == 3:  # HalfCauchy(beta=a)
        lp, d = -np.log1p((v / a) ** 2), -2.0 * v / (a * a + v * v)
    elif code == 4:  # Exponential(lam=a)
        lp, d = -a * v, -a
    elif code == 5:  # Gamma(alpha=a, beta=b)
        lp, d = (a - 1.0) * u - b * v, (a - 1.0) / v - b
    elif code == 6:  # InverseGamma(alpha=a, beta=b)
        lp, d = -(a + 1.0) * u - b / v, -(a + 1.0) / v + b / (v * v)
    else:  # LogNormal(mu=a, sigma=b)
        lp, d = -u - 0.5 * ((u - a) / b) ** 2, (-1.0 - (u - a) / (b * b)) / v
    return lp + u, d * v + 1.0


@numba.njit(cache=True, nogil=True, error_model="numpy")
def logp_grad(x, buf, grad):
    """Log posterior (up to a constant) at ``x``; writes its gradient to ``grad``."""
    p, G, q = int(buf[1]), int(buf[2]), int(buf[3])
    N, yty, T, i_int = buf[4], buf[5], int(buf[6]), int(buf[7])
    o = _HEAD
    term_at = o
    for _ in range(T):  # skip the per-term blocks to find the fixed-effect priors
        o += 3 + 3 * int(buf[o])
    mu, sd, xm = buf[o:o + p], buf[o + p:o + 2 * p], buf[o + 2 * p:o + 3 * p]
    o += 3 * p
    XtX = buf[o:o + p * p].reshape((p, p))
    o += p * p
    Xty = buf[o:o + p]
    o += p
    c = buf[o:o + G * q].reshape((G, q))
    o += G * q
    B = buf[o:o + G * q * p].reshape((G, q, p))
    o += G * q * p
    A = buf[o:o + G * q * q].reshape((G, q, q))

    lp = 0.0
    # fixed effects: Normal prior on the raw (centred-intercept) coefficients
    raw = x[:p]
    beta = raw.copy()
    if i_int >= 0:
        for j in range(p):
            if j != i_int:
                beta[i_int] -= xm[j] * raw[j]
    for j in range(p):
        z = (raw[j] - mu[j]) / sd[j]
        lp -= 0.5 * z * z
        grad[j] = -z / sd[j]
    # sigma
    u = x[p]
    sigma = np.exp(u)
    l_s, d_s = _log_positive(int(buf[8]), buf[9], buf[10], u)
    lp += l_s
    # group-level SDs and correlations -> block Cholesky factor L
    L = np.zeros((q, q))
    k = p + 1
    off = 0
    o = term_at
    for _ in range(T):
        qt, corr, eta = int(buf[o]), buf[o + 1] > 0.5, buf[o + 2]
        for i in range(qt):
            l_i, d_i = _log_positive(int(buf[o + 3 + 3 * i]), buf[o + 4 + 3 * i],
                                     buf[o + 5 + 3 * i], x[k + i])
            lp += l_i
            grad[k + i] = d_i
            L[off + i, off + i] = np.exp(x[k + i])
        if corr:  # 2×2: L = [[s1, 0], [s2 ρ, s2 √(1−ρ²)]], ρ = tanh z
            rho = np.tanh(x[k + qt])
            s2_ = L[off + 1, off + 1]
            L[off + 1, off] = s2_ * rho
            L[off + 1, off + 1] = s2_ * np.sqrt(1.0 - rho * rho)
            lp += eta * np.log1p(-rho * rho)  # LKJ(η) density × tanh Jacobian
            grad[k + qt] = -2.0 * eta * rho
        o += 3 + 3 * qt
        k += qt + corr
        off += qt

    # marginal likelihood
    e = c.copy()
    for g in range(G):
        for i in range(q):
            s = 0.0
            for j in range(p):
                s += B[g, i, j] * beta[j]
            e[g, i] -= s
    gE = np.empty((G, q))
    gL = np.zeros((q, q))
    s2 = sigma * sigma
    F, gs2 = term_and_grad(e, A, L, s2, gE, gL)
    Xb = XtX @ beta
    rr = yty - 2.0 * (beta @ Xty) + beta @ Xb
    lp += -0.5 * (N * _LOG2PI + (N - G * q) * np.log(s2) + F + rr / s2)
    # d/dβ: −½ (∂F/∂β + (2XᵀXβ − 2Xᵀy)/σ²), ∂F/∂β = −Σ_g B_gᵀ ∂F/∂e_g
    gbeta = -(Xb - Xty) / s2
    for g in range(G):
        for i in range(q):
            for j in range(p):
                gbeta[j] += 0.5 * B[g, i, j] * gE[g, i]
    # d/du (u = log σ): σ ∂/∂σ with ∂F/∂σ = 2σ ∂F/∂σ²
    grad[p] = d_s - 0.5 * (2.0 * (N - G * q) + 2.0 * s2 * gs2 - 2.0 * rr / s2)
    # back through the centred-intercept shift: β = S raw
    for j in range(p):
        grad[j] += gbeta[j]
        if i_int >= 0 and j != i_int:
            grad[j] -= xm[j] * gbeta[i_int]
    # d/dL = −½ ∂F/∂L, then to log SDs and z
    k = p + 1
    off = 0
    o = term_at
    for _ in range(T):
        qt, corr = int(buf[o]), buf[o + 1] > 0.5
        for i in range(qt):
            gsd = 0.0
            for j in range(qt):  # L[off+i, off+j] = sd_i Lc[i, j]
                gsd += -0.5 * gL[off + i, off + j] * L[off + i, off + j]
            grad[k + i] += gsd  # sd_i ∂/∂sd_i = Σ_j g_ij L_ij
        if corr:
            rho = np.tanh(x[k + qt])
            sd2 = np.exp(x[k + 1])
            r = np.sqrt(1.0 - rho * rho)
            drho = -0.5 * sd2 * (gL[off + 1, off] - gL[off + 1, off + 1] * rho / r)
            grad[k + qt] += drho * (1.0 - rho * rho)
        o += 3 + 3 * qt
        k += qt + corr
        off += qt
    return lp


# --------------------------------------------------------------------------- #
# C callbacks for nutpie (signatures of nutpie's compiled PyMC models)
# --------------------------------------------------------------------------- #
_LOGP_SIG = numba.types.int64(numba.types.uint64, numba.types.CPointer(numba.types.double),
                              numba.types.CPointer(numba.types.double),
                              numba.types.CPointer(numba.types.double), numba.types.voidptr)
_EXPAND_SIG = numba.types.int64(numba.types.uint64, numba.types.uint64,
                                numba.types.CPointer(numba.types.double),
                                numba.types.CPointer(numba.types.double), numba.types.voidptr)


def _logp_c(dim, x_, out_, logp_, data_):
    head = numba.carray(data_, (1,), dtype=np.float64)
    buf = numba.carray(data_, (int(head[0]),), dtype=np.float64)
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (dim,))
    val = logp_grad(x, buf, out)
    logp_[0] = val
    if not np.isfinite(val):
        return 4
    for i in range(dim):
        if not np.isfinite(out[i]):
            return 3
    return 0


def _expand_c(dim, expanded, x_, out_, data_):
    # the draws are stored as sampled; the posterior variables are derived afterwards
    for i in range(dim):
        out_[i] = x_[i]
    return 0


@functools.cache
def callbacks():
    """``(logp, expand)`` C callbacks, compiled on first use (then loaded from Numba's cache)."""
    kw = dict(cache=True, nogil=True, error_model="numpy")
    return numba.cfunc(_LOGP_SIG, **kw)(_logp_c), numba.cfunc(_EXPAND_SIG, **kw)(_expand_c)


# --------------------------------------------------------------------------- #
# parameter vector -> posterior variables (vectorised over draws)
# --------------------------------------------------------------------------- #
def constrained(packed: Packed, ps: PriorSet, z: np.ndarray) -> dict[str, np.ndarray]:
    """``fixed`` (S, p), ``sigma`` (S,), ``sd`` (S, q), ``corr`` (S, q, q) from draws ``z`` (S, ndim)."""
    p = packed.p
    raw = z[:, :p]
    beta = raw.copy()
    if ps.centered:
        i = int(packed.buf[7])
        beta[:, i] = raw[:, i] - (raw @ ps.x_mean - raw[:, i] * ps.x_mean[i])
    sds, blocks = [], []
    k = p + 1
    q = sum(qt for qt, _ in packed.terms)
    corr = np.broadcast_to(np.eye(q), (z.shape[0], q, q)).copy()
    off = 0
    for qt, correlated in packed.terms:
        sds.append(np.exp(z[:, k:k + qt]))
        if correlated:
            rho = np.tanh(z[:, k + qt])
            corr[:, off, off + 1] = corr[:, off + 1, off] = rho
        k += qt + correlated
        off += qt
    return {"fixed": beta, "sigma": np.exp(z[:, p]), "sd": np.concatenate(sds, axis=1),
            "corr": corr}
