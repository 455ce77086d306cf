"""The collapsed log density of a one-factor model as one cached Numba function.

For the common case (one grouping factor, normal fixed-effect priors, the usual
scale priors, LKJ(η) on correlated blocks of any size q) the whole log posterior and its gradient
is a single Numba function over a flat parameter vector and one float64 buffer
that holds the prior parameters and the sufficient statistics. It is compiled
once per machine (``cache=True``) and exported as a C callback, so nutpie's NUTS
calls it from its worker threads without Python or the GIL: a warm process
starts sampling at once, and a gradient costs one pass over the groups
(:mod:`.group_kernel`).

Parameters (unconstrained, in this order)::

    raw fixed effects (p)      β = raw, intercept shifted as Bambi's centred predictors
    log σ
    per group term: log SD (q_t), then, for a correlated term, the q_t(q_t − 1)/2
    canonical partial correlations as z = atanh(c), row-major lower-triangle order
    (for q_t = 2 the one z is atanh ρ)

The prior is the model's :class:`~bayes_hlm.spec.priors.PriorSet`, the same
prior as the PyMC model of the other engines; only the coordinates differ.
The correlation's Cholesky factor W is built from the partial correlations
(Stan's ``cholesky_corr_constrain``: ``W_ij = c_ij Π_{k<j} √(1 − c_ik²)``), and
LKJ(η) on ``R = WWᵀ`` with every Jacobian (tanh, c → W) becomes separable::

    log p(z) = Σ_{i>j} (η − 1 + (q − j)/2) · log(1 − c_ij²)     (j 0-based)

(for q = 2: ``η log(1 − ρ²)``). Models outside this case return a reason from
:func:`unsupported_reason` and use the PyMC graph instead.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numba
import numpy as np

from ..spec.design import Design
from ..spec.prior_registry import PRIOR_DISTS, numba_code
from ..spec.priors import PriorSet, corr_key, intercept_shift, sd_key
from .group_kernel import term_and_grad
from .sufficient_stats import CrossedStats, SingleStats

#: positive-parameter priors with a compiled density: name -> (code, parameter names),
#: generated from the prior registry (:mod:`bayes_hlm.spec.prior_registry`)
POSITIVE_FAMILIES = {n: (d.numba_code, d.numba_params) for n, d in PRIOR_DISTS.items()
                     if d.numba_code is not None and d.transform == "log"}
# branch codes of :func:`_log_positive` (compile-time constants inside the jitted code)
_HALF_NORMAL = numba_code("HalfNormal")
_HALF_STUDENT_T = numba_code("HalfStudentT")
_HALF_CAUCHY = numba_code("HalfCauchy")
_EXPONENTIAL = numba_code("Exponential")
_GAMMA = numba_code("Gamma")
_INVERSE_GAMMA = numba_code("InverseGamma")
_LOG_NORMAL = numba_code("LogNormal")
_HEAD = 13  # header entries before the per-term blocks
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
    if type(stats) not in (SingleStats, CrossedStats):
        return f"{stats.plan.structure} grouping structure"
    if isinstance(stats, CrossedStats):
        for k in stats.other_terms:
            if design.groups[k].q != 1:
                return f"sampled crossed term {design.groups[k].name} with {design.groups[k].q} coefficients"
    for n in design.fixed_names:
        p = ps.priors[n]
        if p.dist != "Normal" or set(p.params) != {"mu", "sigma"} or np.ndim(p.params["mu"]):
            return f"prior {p} on {n!r} (only Normal(mu, sigma))"
    if _positive_code(ps.priors["sigma"]) is None:
        return f"prior {ps.priors['sigma']} on sigma"
    for g in design.groups:
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
class SampledTerm:
    """A sampled (crossed) q = 1 term: where its draws sit in ``x`` and how it is centred."""

    term: int  # index in design.groups
    x_at: int  # offset of its levels in the parameter vector
    levels: int
    centered: bool
    fixed: int  # fixed effect it is centred on (-1: none)
    parent: int  # design.groups index of the nesting parent it is centred on (-1: none)
    pmap: np.ndarray | None  # level -> parent level


@dataclass
class Packed:
    """The buffer and how to read the parameter vector back."""

    buf: np.ndarray
    ndim: int
    p: int
    terms: list  # (q_t, correlated) per GroupTerm; a correlated term has n_corr(q_t) z's
    init: np.ndarray  # PyMC-style starting point (before jitter)
    sampled: list = field(default_factory=list)  # SampledTerm per sampled (crossed) term
    centered: dict = field(default_factory=dict)  # factor -> centred (sampled factors)


def pack(design: Design, ps: PriorSet, stats: SingleStats) -> Packed:
    """Lay out prior parameters and statistics for :func:`logp_grad`."""
    p, (G, q) = design.p, stats.c.shape
    names = design.fixed_names
    i_int = names.index("Intercept") if ps.centered else -1
    crossed = isinstance(stats, CrossedStats)
    others = list(stats.other_terms) if crossed else []
    head = [0.0, p, G, q, stats.N, float(stats.yty), len(design.groups), i_int,
            *_positive_code(ps.priors["sigma"]), len(others), stats.m if crossed else 0]
    assert len(head) == _HEAD
    block_off = dict(zip(stats.block.term_index, stats.block.offsets))
    per_term, terms, init = [], [], []
    mu = np.array([float(ps.priors[n].params["mu"]) for n in names])
    sd = np.array([float(ps.priors[n].params["sigma"]) for n in names])
    init += list(mu)
    init.append(np.log(_scale(ps.priors["sigma"])))
    sd_at = []
    for k, g in enumerate(design.groups):
        eta = float(ps.priors[corr_key(g.factor)].params.get("eta", 1.0)) if g.correlated else 0.0
        per_term += [g.q, float(g.correlated), eta, block_off.get(k, -1)]
        sd_at.append(len(init))
        for t in g.terms:
            prior = ps.priors[sd_key(t, g.factor)]
            per_term += list(_positive_code(prior))
            init.append(np.log(_scale(prior)))
        if g.correlated:
            init += [0.0] * n_corr(g.q)
        terms.append((g.q, g.correlated))
    body = [np.asarray(head), np.asarray(per_term, dtype=float), mu, sd,
            np.asarray(ps.x_mean, dtype=float), stats.XtX.ravel(), stats.Xty.ravel(),
            stats.c.ravel(), stats.B.ravel(), stats.A.ravel()]
    sampled, centered = [], {}
    if crossed:
        body_c, sampled, centered, init_eff = _pack_sampled(design, stats, sd_at, len(init), mu, ps)
        init += init_eff
        body += body_c
    buf = np.ascontiguousarray(np.concatenate(body), dtype=np.float64)
    buf[0] = buf.size
    return Packed(buf=buf, ndim=len(init), p=p, terms=terms, init=np.asarray(init),
                  sampled=sampled, centered=centered)


def _pack_sampled(design: Design, stats: CrossedStats, sd_at: list, x_at: int, mu, ps):
    """Sampled (crossed) terms as the PyMC model builds them: coarse factors first,
    centred per factor from the data, hierarchically centred on a nesting parent."""
    from .group_effects import build_order, nesting_parent
    from .parametrization import choose_centering

    centered = choose_centering(design)
    col = dict(zip(stats.other_terms, stats.other_offsets))
    beta0 = mu.copy()
    if ps.centered:
        i = design.fixed_names.index("Intercept")
        beta0[i] -= intercept_shift(mu, ps.x_mean, i)
    rows, pmaps, sampled, init, done = [], [], [], [], []
    for k in build_order(design, list(stats.other_terms)):
        g = design.groups[k]
        cent = bool(centered.get(g.factor, False))
        j = design.fixed_names.index(g.terms[0]) if cent and g.terms[0] in design.fixed_names else -1
        par, pmap = -1, None
        if cent:
            found = nesting_parent(design, k, [d for d in done if centered.get(design.groups[d].factor)])
            if found is not None and design.groups[found[0]].terms[0] == g.terms[0]:
                par, pmap = found[0], np.asarray(found[1], dtype=np.int64)
                pmaps.append(pmap.astype(float))
        rows.append([sd_at[k], x_at, g.n_levels, float(cent), j, col[par] if par >= 0 else -1, col[k]])
        sampled.append(SampledTerm(k, x_at, g.n_levels, cent, j, par, pmap))
        init += [beta0[j] if j >= 0 else 0.0] * g.n_levels
        x_at += g.n_levels
        done.append(k)
    ZZ, BZ = stats.ZotZo.tocsr(), stats.BZo.tocsr()
    body = [np.asarray(rows, dtype=float).ravel(), *pmaps, stats.Zoty.ravel(), stats.XtZo.ravel(),
            _as_slots(ZZ.indptr), _as_slots(ZZ.indices), ZZ.data,
            _as_slots(BZ.indptr), _as_slots(BZ.indices), BZ.data]
    return body, sampled, {f: c for f, c in centered.items() if f in
                           {design.groups[k].factor for k in stats.other_terms}}, init


def _as_slots(ints: np.ndarray) -> np.ndarray:
    """Integers stored bit for bit in float64 slots of the buffer (read back with ``.view``)."""
    return np.ascontiguousarray(ints, dtype=np.int64).view(np.float64)


def _scale(prior) -> float:
    """A typical value of a positive prior (PyMC starts near its support point)."""
    v = float(PRIOR_DISTS[prior.dist].typical(prior.params))
    return v if v > 0 else 1.0


# --------------------------------------------------------------------------- #
# LKJ(η) in canonical partial correlations (any q)
# --------------------------------------------------------------------------- #
@numba.njit(cache=True, nogil=True, error_model="numpy")
def n_corr(q):
    """Number of partial correlations of a q × q correlation matrix."""
    return q * (q - 1) // 2


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _log_sech2(z):
    """``log(1 − tanh² z) = −2 log cosh z``, finite for any z (tanh saturates at |z| ≈ 19)."""
    a = abs(z)
    return -2.0 * (a + np.log1p(np.exp(-2.0 * a)) - np.log(2.0))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def cpc_cholesky(z, q, W):
    """Cholesky factor ``W`` (q × q, lower, unit rows) of the correlation matrix with
    partial correlations ``c = tanh z`` (row-major lower-triangle order)."""
    t = 0
    for i in range(q):
        P = 1.0  # √(1 − Σ_{k<j} W_ik²) = Π_{k<j} √(1 − c_ik²)
        for j in range(i):
            W[i, j] = np.tanh(z[t]) * P
            P *= np.exp(0.5 * _log_sech2(z[t]))
            t += 1
        W[i, i] = P
        for j in range(i + 1, q):
            W[i, j] = 0.0


@numba.njit(cache=True, nogil=True, error_model="numpy")
def lkj_cpc(z, eta, W, gz):
    """LKJ(η) log density of ``R = WWᵀ`` in the coordinates ``z`` (all Jacobians included,
    up to a constant); writes ``W`` and sets ``gz`` to the density's z-gradient."""
    q = W.shape[0]
    cpc_cholesky(z, q, W)
    lp = 0.0
    t = 0
    for i in range(1, q):
        for j in range(i):
            a = eta - 1.0 + 0.5 * (q - j)
            lp += a * _log_sech2(z[t])
            gz[t] = -2.0 * a * np.tanh(z[t])
            t += 1
    return lp


@numba.njit(cache=True, nogil=True, error_model="numpy")
def cpc_backward(z, q, gW, gz):
    """Adds ``∂/∂z`` of a function of ``W = cpc_cholesky(z)`` with ``∂/∂W = gW`` to ``gz``.

    With ``W_ij = c_ij P_j``, ``W_ii = P_i``, ``P_j = Π_{k<j} √(1 − c_ik²)``:
    ``∂/∂z_im = gW_im P_m (1 − c_im²) − c_im Σ_{m<j≤i} gW_ij W_ij``.
    """
    W = np.empty((q, q))
    cpc_cholesky(z, q, W)
    t = 0
    for i in range(1, q):
        P = 1.0
        for m in range(i):
            c = np.tanh(z[t])
            s = 0.0
            for j in range(m + 1, i + 1):
                s += gW[i, j] * W[i, j]
            gz[t] += gW[i, m] * P * np.exp(_log_sech2(z[t])) - c * s
            P *= np.exp(0.5 * _log_sech2(z[t]))
            t += 1


def cpc_corr(z: np.ndarray, q: int) -> np.ndarray:
    """Correlation matrices (S, q, q) from draws ``z`` (S, n_corr(q)) of the partial correlations."""
    S = z.shape[0]
    W = np.zeros((S, q, q))
    t = 0
    for i in range(q):
        P = np.ones(S)
        for j in range(i):
            c = np.tanh(z[:, t])
            W[:, i, j] = c * P
            P = P * np.sqrt(np.exp(_log_sech2_np(z[:, t])))
            t += 1
        W[:, i, i] = P
    R = W @ np.swapaxes(W, 1, 2)
    R[:, np.arange(q), np.arange(q)] = 1.0
    return R


def _log_sech2_np(z: np.ndarray) -> np.ndarray:
    a = np.abs(z)
    return -2.0 * (a + np.log1p(np.exp(-2.0 * a)) - np.log(2.0))


# --------------------------------------------------------------------------- #
# the density
# --------------------------------------------------------------------------- #
@numba.njit(cache=True, nogil=True, error_model="numpy")
def _log_positive(code, a, b, u):
    """log prior of ``v = exp(u)`` plus the log-Jacobian ``u``; and its u-derivative."""
    v = np.exp(u)
    if code == _HALF_NORMAL:  # HalfNormal(sigma=a)
        lp, d = -0.5 * (v / a) ** 2, -v / (a * a)
    elif code == _HALF_STUDENT_T:  # HalfStudentT(nu=a, sigma=b)
        lp, d = -0.5 * (a + 1.0) * np.log1p(v * v / (a * b * b)), -(a + 1.0) * v / (a * b * b + v * v)
    elif code == _HALF_CAUCHY:  # HalfCauchy(beta=a)
        lp, d = -np.log1p((v / a) ** 2), -2.0 * v / (a * a + v * v)
    elif code == _EXPONENTIAL:  # Exponential(lam=a)
        lp, d = -a * v, -a
    elif code == _GAMMA:  # Gamma(alpha=a, beta=b)
        lp, d = (a - 1.0) * u - b * v, (a - 1.0) / v - b
    elif code == _INVERSE_GAMMA:  # InverseGamma(alpha=a, beta=b)
        lp, d = -(a + 1.0) * u - b / v, -(a + 1.0) / v + b / (v * v)
    elif code == _LOG_NORMAL:  # LogNormal(mu=a, sigma=b)
        lp, d = -u - 0.5 * ((u - a) / b) ** 2, (-1.0 - (u - a) / (b * b)) / v
    else:  # a code without a branch: no density (the registry test catches this)
        lp, d = np.nan, np.nan
    return lp + u, d * v + 1.0


#: the one centred-intercept shift (:func:`~bayes_hlm.spec.priors.intercept_shift`), compiled
_intercept_shift = numba.njit(cache=True, nogil=True, error_model="numpy")(intercept_shift)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _csr_matvec(indptr, indices, data, v, out, sign):
    """``out += sign · M v`` for a CSR matrix."""
    for r in range(out.shape[0]):
        s = 0.0
        for t in range(indptr[r], indptr[r + 1]):
            s += data[t] * v[indices[t]]
        out[r] += sign * s


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _csr_rmatvec(indptr, indices, data, u, out, sign):
    """``out += sign · Mᵀ u``."""
    for r in range(u.shape[0]):
        for t in range(indptr[r], indptr[r + 1]):
            out[indices[t]] += sign * data[t] * u[r]


#: groups per block of :func:`_term_in_chunks`: its e and ∂F/∂e stay in cache (no G-sized temporaries)
_CHUNK = 2048


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _term_in_chunks(c, B, A, beta, L, s2, gL, gbeta):
    """``F`` and ``∂F/∂σ²`` block by block; adds ``∂F/∂L`` to ``gL`` and ``−½∂F/∂β`` to ``gbeta``."""
    G, q = c.shape
    p = beta.shape[0]
    e = np.empty((_CHUNK, q))
    gE = np.empty((_CHUNK, q))
    gLc = np.zeros((q, q))
    F = 0.0
    gs2 = 0.0
    for a in range(0, G, _CHUNK):
        n = min(_CHUNK, G - a)
        for g in range(n):
            for i in range(q):
                s = c[a + g, i]
                for j in range(p):
                    s -= B[a + g, i, j] * beta[j]
                e[g, i] = s
        Fc, gc = term_and_grad(e[:n], A[a:a + n], L, s2, gE[:n], gLc)
        F += Fc
        gs2 += gc
        for i in range(q):
            for j in range(q):
                gL[i, j] += gLc[i, j]
        for g in range(n):
            for i in range(q):
                for j in range(p):
                    gbeta[j] += 0.5 * B[a + g, i, j] * gE[g, i]
    return F, gs2


@numba.njit(cache=True, nogil=True, error_model="numpy")
def logp_grad(x, buf, grad):
    """Log posterior (up to a constant) at ``x``; writes its gradient to ``grad``."""
    p, G, q = int(buf[1]), int(buf[2]), int(buf[3])
    N, yty, T, i_int = buf[4], buf[5], int(buf[6]), int(buf[7])
    K_o, m = int(buf[11]), int(buf[12])
    o = _HEAD
    term_at = o
    for _ in range(T):  # skip the per-term blocks to find the fixed-effect priors
        o += 4 + 3 * int(buf[o])
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
    o += G * q * q
    for i in range(grad.shape[0]):
        grad[i] = 0.0

    lp = 0.0
    # fixed effects: Normal prior on the raw (centred-intercept) coefficients
    raw = x[:p]
    beta = raw.copy()
    if i_int >= 0:
        beta[i_int] -= _intercept_shift(raw, xm, i_int)
    for j in range(p):
        z = (raw[j] - mu[j]) / sd[j]
        lp -= 0.5 * z * z
        grad[j] = -z / sd[j]
    # sigma
    u = x[p]
    sigma = np.exp(u)
    l_s, d_s = _log_positive(int(buf[8]), buf[9], buf[10], u)
    lp += l_s
    # group-level SDs and correlations; the marginalised block's Cholesky factor L
    L = np.zeros((q, q))
    k = p + 1
    ot = term_at
    for _ in range(T):
        qt, corr, eta, off = int(buf[ot]), buf[ot + 1] > 0.5, buf[ot + 2], int(buf[ot + 3])
        for i in range(qt):
            l_i, d_i = _log_positive(int(buf[ot + 4 + 3 * i]), buf[ot + 5 + 3 * i],
                                     buf[ot + 6 + 3 * i], x[k + i])
            lp += l_i
            grad[k + i] = d_i
            if off >= 0:
                L[off + i, off + i] = np.exp(x[k + i])
        nc = n_corr(qt) if corr else 0
        if corr:  # L = diag(sd) W, W from the partial correlations (module docstring)
            W = np.empty((qt, qt))
            lp += lkj_cpc(x[k + qt:k + qt + nc], eta, W, grad[k + qt:k + qt + nc])
            if off >= 0:
                for i in range(qt):
                    sd_i = L[off + i, off + i]
                    for j in range(i + 1):
                        L[off + i, off + j] = sd_i * W[i, j]
        ot += 4 + 3 * qt
        k += qt + nc

    # sampled (crossed) effects b_o, coarse factors first
    rows = buf[o:o + 7 * K_o].reshape((K_o, 7))
    o += 7 * K_o
    pm_at = np.empty(K_o, dtype=np.int64)
    for r in range(K_o):
        pm_at[r] = o
        if rows[r, 5] >= 0:
            o += int(rows[r, 2])
    bo = np.zeros(m)
    for r in range(K_o):
        sdk = np.exp(x[int(rows[r, 0])])
        xo, Gk, cent, j, par, off = (int(rows[r, 1]), int(rows[r, 2]), rows[r, 3] > 0.5,
                                     int(rows[r, 4]), int(rows[r, 5]), int(rows[r, 6]))
        for g in range(Gk):
            v = x[xo + g]
            if cent:  # m ~ N(shift, sd), b = m − shift
                sh = beta[j] if j >= 0 else 0.0
                if par >= 0:
                    sh += bo[par + int(buf[pm_at[r] + g])]
                b = v - sh
                lp -= 0.5 * (b / sdk) ** 2 + np.log(sdk)
            else:  # z ~ N(0, 1), b = sd z
                b = sdk * v
                lp -= 0.5 * v * v
            bo[off + g] = b
    Zoty = buf[o:o + m]
    o += m
    XtZo = buf[o:o + p * m].reshape((p, m))
    o += p * m
    zz_p = buf[o:o + m + 1].view(np.int64) if m else np.zeros(0, dtype=np.int64)
    nz = zz_p[m] if m else 0
    zz_i = buf[o + m + 1:o + m + 1 + nz].view(np.int64)
    zz_v = buf[o + m + 1 + nz:o + m + 1 + 2 * nz]
    o += m + 1 + 2 * nz
    bz_p = buf[o:o + G * q + 1].view(np.int64) if m else np.zeros(0, dtype=np.int64)
    nb = bz_p[G * q] if m else 0
    bz_i = buf[o + G * q + 1:o + G * q + 1 + nb].view(np.int64)
    bz_v = buf[o + G * q + 1 + nb:o + G * q + 1 + 2 * nb]

    # marginal likelihood given β, b_o: e_g = c_g − B_g β − (Z_gᵀZ_o) b_o
    s2 = sigma * sigma
    gL = np.zeros((q, q))
    ZZb = np.zeros(m)
    if m:
        _csr_matvec(zz_p, zz_i, zz_v, bo, ZZb, 1.0)
    Xb = XtX @ beta
    XZb = XtZo @ bo
    rr = yty - 2.0 * (beta @ Xty) + beta @ Xb - 2.0 * (bo @ Zoty) + 2.0 * (beta @ XZb) + bo @ ZZb
    # d/dβ: −½ (∂F/∂β + ∂rr/∂β / σ²), ∂F/∂β = −Σ_g B_gᵀ ∂F/∂e_g (added below)
    gbeta = -(Xb - Xty + XZb) / s2
    gE = np.empty((0, q))  # ∂F/∂e over all groups: kept only for the crossed products below
    if m == 0:
        F, gs2 = _term_in_chunks(c, B, A, beta, L, s2, gL, gbeta)
    else:  # crossed: e and ∂F/∂e over all groups (sparse products with b_o)
        e = c.copy()
        for g in range(G):
            for i in range(q):
                s = 0.0
                for jj in range(p):
                    s += B[g, i, jj] * beta[jj]
                e[g, i] -= s
        _csr_matvec(bz_p, bz_i, bz_v, bo, e.reshape(G * q), -1.0)
        gE = np.empty((G, q))
        F, gs2 = term_and_grad(e, A, L, s2, gE, gL)
        for g in range(G):
            for i in range(q):
                for jj in range(p):
                    gbeta[jj] += 0.5 * B[g, i, jj] * gE[g, i]
    lp += -0.5 * (N * _LOG2PI + (N - G * q) * np.log(s2) + F + rr / s2)
    # d/db_o likewise: ½ BZoᵀ ∂F/∂e − (ZoᵀZo b_o − Zoᵀy + Z_oᵀX β) / σ²
    gbo = (Zoty - ZZb - XtZo.T @ beta) / s2
    if m:
        _csr_rmatvec(bz_p, bz_i, bz_v, gE.reshape(G * q), gbo, 0.5)
    # back through the sampled effects, children before their parents
    for r in range(K_o - 1, -1, -1):
        ks = int(rows[r, 0])
        sdk = np.exp(x[ks])
        xo, Gk, cent, j, par, off = (int(rows[r, 1]), int(rows[r, 2]), rows[r, 3] > 0.5,
                                     int(rows[r, 4]), int(rows[r, 5]), int(rows[r, 6]))
        for g in range(Gk):
            b = bo[off + g]
            if cent:
                db = gbo[off + g] - b / (sdk * sdk)
                grad[xo + g] = db
                grad[ks] += (b / sdk) ** 2 - 1.0
                if j >= 0:
                    gbeta[j] -= db
                if par >= 0:
                    gbo[par + int(buf[pm_at[r] + g])] -= db
            else:
                grad[xo + g] = -x[xo + g] + sdk * gbo[off + g]
                grad[ks] += b * gbo[off + g]
    # d/du (u = log σ): σ ∂/∂σ with ∂F/∂σ = 2σ ∂F/∂σ²
    grad[p] = d_s - 0.5 * (2.0 * (N - G * q) + 2.0 * s2 * gs2 - 2.0 * rr / s2)
    # back through the centred-intercept shift (its transpose): β = S raw
    for jj in range(p):
        grad[jj] += gbeta[jj]
        if i_int >= 0 and jj != i_int:
            grad[jj] -= xm[jj] * gbeta[i_int]
    # d/dL = −½ ∂F/∂L, then to log SDs and z
    k = p + 1
    ot = term_at
    for _ in range(T):
        qt, corr, off = int(buf[ot]), buf[ot + 1] > 0.5, int(buf[ot + 3])
        if off >= 0:
            for i in range(qt):
                gsd = 0.0
                for jj in range(qt):  # L[off+i, off+jj] = sd_i Lc[i, jj]
                    gsd += -0.5 * gL[off + i, off + jj] * L[off + i, off + jj]
                grad[k + i] += gsd  # sd_i ∂/∂sd_i = Σ_j g_ij L_ij
        nc = n_corr(qt) if corr else 0
        if corr and off >= 0:
            gW = np.empty((qt, qt))  # ∂lp/∂W = −½ ∂F/∂L · sd_i (L_ij = sd_i W_ij)
            for i in range(qt):
                sd_i = np.exp(x[k + i])
                for j in range(qt):
                    gW[i, j] = -0.5 * gL[off + i, off + j] * sd_i
            cpc_backward(x[k + qt:k + qt + nc], qt, gW, grad[k + qt:k + qt + nc])
        ot += 4 + 3 * qt
        k += qt + nc
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


def compile_cache_cold() -> bool:
    """True when :func:`callbacks` will compile (no usable Numba cache entry on this machine)."""
    from ..progress import numba_cache_cold

    return numba_cache_cold(logp_grad)


@functools.cache
def callbacks():
    """``(logp, expand)`` C callbacks, compiled on first use (then loaded from Numba's cache)."""
    kw = dict(cache=True, nogil=True, error_model="numpy")
    return numba.cfunc(_LOGP_SIG, **kw)(_logp_c), numba.cfunc(_EXPAND_SIG, **kw)(_expand_c)


# --------------------------------------------------------------------------- #
# parameter vector -> posterior variables (vectorised over draws)
# --------------------------------------------------------------------------- #
def constrained(packed: Packed, ps: PriorSet, design: Design, z: np.ndarray) -> dict:
    """Posterior variables from draws ``z`` (S, ndim): ``fixed`` (S, p), ``sigma`` (S,), and
    per factor ``sd`` (S, q_f), ``corr`` (S, q_f, q_f) and, for sampled factors, ``b``
    (S, levels, q_f)."""
    p = packed.p
    raw = z[:, :p]
    beta = raw.copy()
    if ps.centered:
        i = int(packed.buf[7])
        beta[:, i] = raw[:, i] - intercept_shift(raw, ps.x_mean, i)
    sd_t, corr_t, k = [], [], p + 1
    for qt, correlated in packed.terms:
        sd_t.append(np.exp(z[:, k:k + qt]))
        nc = n_corr(qt) if correlated else 0
        corr_t.append(cpc_corr(z[:, k + qt:k + qt + nc], qt) if correlated
                      else np.broadcast_to(np.eye(qt), (z.shape[0], qt, qt)).copy())
        k += qt + nc
    b_t = {}
    for st in packed.sampled:  # build order: a nesting parent comes before its children
        v = z[:, st.x_at:st.x_at + st.levels]
        if not st.centered:  # b = sd z
            b_t[st.term] = v * sd_t[st.term][:, :1]
            continue
        sh = np.zeros_like(v)  # b = m − shift
        if st.fixed >= 0:
            sh += beta[:, st.fixed:st.fixed + 1]
        if st.parent >= 0:
            sh += b_t[st.parent][:, st.pmap]
        b_t[st.term] = v - sh
    factors = {}
    for k, g in enumerate(design.groups):
        factors.setdefault(g.factor, []).append(k)
    out = {"fixed": beta, "sigma": np.exp(z[:, p]), "factors": {}}
    for f, ks in factors.items():
        q = sum(design.groups[k].q for k in ks)
        corr = np.zeros((z.shape[0], q, q))
        o = 0
        for k in ks:
            qk = design.groups[k].q
            corr[:, o:o + qk, o:o + qk] = corr_t[k]
            o += qk
        fo = {"sd": np.concatenate([sd_t[k] for k in ks], axis=1), "corr": corr}
        if all(k in b_t for k in ks):
            fo["b"] = np.stack([b_t[k] for k in ks], axis=2)  # (S, levels, q_f)
        out["factors"][f] = fo
    return out
