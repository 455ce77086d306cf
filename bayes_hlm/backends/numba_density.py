"""The collapsed log density of a Gaussian mixed model as one cached Numba function.

For every grouping structure (one factor; two nested factors, both integrated out in two
stages, :func:`nested_term`; crossed or deeper designs with the largest factor
integrated out and the other factors' effects, any q, sampled) with normal fixed-effect
priors, the usual scale priors and LKJ(η) on correlated blocks of any size q, the whole
log posterior and its gradient is a single Numba function (:func:`logp_grad`) over a flat
parameter vector and one float64 buffer that holds the prior parameters and the sufficient
statistics. A fit runs its structure's entry point (:func:`kernel`: the same body with the
structure, and for one factor the group term's q, fixed at compile time, so a one-factor
fit never compiles the nested and crossed kernels), compiled once per machine
(``cache=True``; the sizes are data in the buffer) and exported as a C callback
(:func:`.numba_nuts.callbacks`), so nutpie's NUTS calls it from its worker threads without
Python or the GIL: a warm process starts sampling at once, and a gradient costs one pass
over the groups (:mod:`.group_kernel`).

Parameters (unconstrained, in this order)::

    raw fixed effects (p)      β = raw, intercept shifted as Bambi's centred predictors
    log σ
    per group term: log SD (q_t), then, for a correlated term, the q_t(q_t − 1)/2
    canonical partial correlations as z = atanh(c), row-major lower-triangle order
    (for q_t = 2 the one z is atanh ρ)
    per sampled (crossed) term, coarse factors first: levels × q_t values, level-major:
    z (non-centred, b_g = L z_g) or the group means m (centred, b_g = m_g − shift_g,
    shift = the same-named fixed effect plus a nesting parent's effect)

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
from typing import TYPE_CHECKING

import numba
import numpy as np

# NumPy and Numba only at import (no pandas, PyTensor, SciPy): a background compile's child
# (:mod:`.background_compile`) imports this module to compile the kernels, nothing else
from ..spec.intercept import intercept_shift
from ..spec.prior_registry import PRIOR_DISTS, numba_code
from .group_kernel import cholesky_lower, cross_sandwich, sandwich, term_and_grad
from .nuts_callbacks import FUSE

if TYPE_CHECKING:
    from ..spec.design import Design
    from ..spec.priors import PriorSet
    from .sufficient_stats import CrossedStats, NestedStats


def _stats_types():
    """``(SingleStats, CrossedStats, NestedStats)``, imported when first needed."""
    from .sufficient_stats import CrossedStats, NestedStats, SingleStats

    return SingleStats, CrossedStats, NestedStats

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
_HEAD = 15  # header entries before the per-term blocks
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


def priors_unsupported(design: Design, ps: PriorSet) -> str | None:
    """``None`` when the compiled densities (Gaussian collapsed, GLMM full and quadrature)
    have the priors of the fixed effects and group SDs in code, else why not: fixed effects
    Normal(mu, sigma); SDs from :data:`POSITIVE_FAMILIES`, one family per correlated term."""
    from ..spec.priors import sd_key

    for n in design.fixed_names:
        p = ps.priors[n]
        if p.dist != "Normal" or set(p.params) != {"mu", "sigma"} or np.ndim(p.params["mu"]):
            return f"prior {p} on {n!r} (only Normal(mu, sigma))"
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


def unsupported_reason(design: Design, ps: PriorSet, stats) -> str | None:
    """``None`` when the compiled density covers this model, else why not."""
    if type(stats) not in _stats_types():
        return f"{stats.plan.structure} grouping structure"
    if _positive_code(ps.priors["sigma"]) is None:
        return f"prior {ps.priors['sigma']} on sigma"
    return priors_unsupported(design, ps)


# --------------------------------------------------------------------------- #
# packing the model into one buffer
# --------------------------------------------------------------------------- #
@dataclass
class SampledTerm:
    """A sampled (crossed) term: where its draws sit in ``x`` and how it is centred.

    Its ``levels × q`` coordinates are level-major: ``z`` (non-centred, ``b_g = L z_g``)
    or the group means ``m`` (centred, ``b_g = m_g − shift_g``)."""

    term: int  # index in design.groups
    x_at: int  # offset of its levels in the parameter vector
    levels: int
    centered: bool
    fixed: np.ndarray  # per column: fixed effect it is centred on (-1: none)
    parent: int  # design.groups index of the nesting parent it is centred on (-1: none)
    pmap: np.ndarray | None  # level -> parent level
    pcols: np.ndarray | None = None  # per column: the parent's column it is centred on (-1: none)
    q: int = 1


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


def _term_blocks(stats) -> dict[int, tuple[int, int]]:
    """GroupTerm index -> (marginalised block: 0 single/outer, 1 nested inner; column offset)."""
    blocks = [stats.outer, stats.inner] if isinstance(stats, _stats_types()[2]) else [stats.block]
    return {k: (b, off) for b, blk in enumerate(blocks)
            for k, off in zip(blk.term_index, blk.offsets)}


def pack(design: Design, ps: PriorSet, stats) -> Packed:
    """Lay out prior parameters and statistics for :func:`logp_grad`.

    ``stats``: :class:`SingleStats`, :class:`CrossedStats` (the largest factor
    marginalised, the others' effects sampled, any q) or :class:`NestedStats` (both
    factors integrated out in two stages: inner levels within each outer level).
    """
    from ..spec.priors import corr_key

    _, CrossedStats, NestedStats = _stats_types()
    nested = isinstance(stats, NestedStats)
    if nested:  # the outer factor takes the single block's place; inner levels by outer level
        c, B, A = stats.c_out, stats.B_out, stats.A_out
        c_in, B_in, A_in, C_in, w_in, ptr = inner_rows(stats)
        inner = [c_in.ravel(), B_in.ravel(), A_in.ravel(), C_in.ravel(), _as_slots(ptr), w_in]
        Gi, qi = c_in.shape
    else:
        c, B, A = stats.c, stats.B, stats.A
        inner, Gi, qi = [], 0, 0
    p, (G, q) = design.p, c.shape
    names = design.fixed_names
    i_int = names.index("Intercept") if ps.centered else -1
    crossed = isinstance(stats, CrossedStats)
    others = list(stats.other_terms) if crossed else []
    head = [0.0, p, G, q, stats.N, float(stats.yty), len(design.groups), i_int,
            *_positive_code(ps.priors["sigma"]), len(others), stats.m if crossed else 0, Gi, qi]
    assert len(head) == _HEAD
    where = _term_blocks(stats)
    per_term, terms, init = [], [], []
    mu = np.array([float(ps.priors[n].params["mu"]) for n in names])
    sd = np.array([float(ps.priors[n].params["sigma"]) for n in names])
    init += list(mu)
    init.append(np.log(_scale(ps.priors["sigma"])))
    for k, g in enumerate(design.groups):
        eta = float(ps.priors[corr_key(g.factor)].params.get("eta", 1.0)) if g.correlated else 0.0
        blk, off = where.get(k, (-1, -1))
        per_term += [g.q, float(g.correlated), eta, blk, off]
        codes, starts = sd_prior_entries(g, ps)
        per_term += [v for c in codes for v in c]
        init += starts
        if g.correlated:
            init += [0.0] * n_corr(g.q)
        terms.append((g.q, g.correlated))
    body = [np.asarray(head), np.asarray(per_term, dtype=float), mu, sd,
            np.asarray(ps.x_mean, dtype=float), stats.XtX.ravel(), stats.Xty.ravel(),
            c.ravel(), B.ravel(), A.ravel(), *inner]
    sampled, centered = [], {}
    if crossed:
        body_c, sampled, centered, init_eff = _pack_sampled(design, stats, len(init), mu, ps)
        init += init_eff
        body += body_c
    buf = np.ascontiguousarray(np.concatenate(body), dtype=np.float64)
    buf[0] = buf.size
    return Packed(buf=buf, ndim=len(init), p=p, terms=terms, init=np.asarray(init),
                  sampled=sampled, centered=centered)


#: relative size below which an eigenvalue of a merged unit's cross-product matrix is
#: rounding noise (its direction carries no data): dropped, see :func:`inner_rows`
_RANK_TOL = 1e-11


def inner_rows(stats: NestedStats, merge: bool = True):
    """A nested design's inner levels as :func:`nested_term` reads them: ``(c, B, A, C, w, ptr)``,
    sorted by outer level (those of outer level ``a`` are ``ptr[a]:ptr[a+1]``).

    With one inner column (``(1 | outer:inner)``, the common case) the inner levels of an
    outer level that share ``A_j = Z_jᵀZ_j`` (e.g. the same number of rows) enter the
    density only through the cross-products of their rows ``m_j = [C_j, c_j, B_j]``
    (``K_jj = σ² + l²A_j`` is the same for all of them; everything else in
    :func:`_nested_term_q1` is bilinear in ``(C_j, e_j = c_j − B_jβ)``). Such a unit of
    ``n`` levels is replaced by ``r ≤ q_o + 1 + p`` pseudo-levels with the same ``Σ m_jm_jᵀ``
    (``r`` = its rank: scaled eigenvectors), each standing for ``w = n / r`` levels in the
    terms that count levels (``log K_jj``). Exact up to rounding; a longitudinal design
    (children with the same number of yearly rows, 25 per school) shrinks ~8x. ``w`` is 1
    for levels left as they are (a unit no larger than its rank, ``q_i > 1``, or ``merge=False``).
    """
    order = np.argsort(stats.parent, kind="stable")
    par = stats.parent[order]
    c, B, A, C = stats.c_in[order], stats.B_in[order], stats.A_in[order], stats.C[order]
    Go = stats.c_out.shape[0]
    Gi, qi = c.shape
    w = np.ones(Gi)
    if merge and qi == 1 and Gi:
        qo, p = C.shape[2], B.shape[2]
        d = qo + 1 + p
        key = np.lexsort((A[:, 0, 0], par))  # units: (outer level, A_j), contiguous
        pk, ak = par[key], A[key, 0, 0]
        start = np.flatnonzero(np.r_[True, (pk[1:] != pk[:-1]) | (ak[1:] != ak[:-1])])
        size = np.diff(np.r_[start, Gi])
        big = size > d  # merging makes these units smaller
        if big.any():
            in_big = np.repeat(big, size)
            M = np.concatenate([C[key, 0, :], c[key], B[key, 0, :]], axis=1)[in_big]
            seg = np.r_[0, np.cumsum(size[big])[:-1]]
            gram = np.add.reduceat(M[:, :, None] * M[:, None, :], seg, axis=0)
            lam, V = np.linalg.eigh(gram)  # gram = Σ_k λ_k v_k v_kᵀ: rows √λ_k v_kᵀ
            keep = lam > _RANK_TOL * lam[:, -1:]
            keep[:, -1] = True  # one row even for an all-zero unit: it still holds n levels
            rows = (np.sqrt(np.where(keep, lam, 0.0))[:, :, None] * np.swapaxes(V, 1, 2))[keep]
            r = keep.sum(axis=1)
            units = start[big]
            m_par = np.repeat(pk[units], r)
            m_A = np.repeat(ak[units], r)
            rest = key[~in_big]
            par = np.concatenate([par[rest], m_par])
            c = np.concatenate([c[rest], rows[:, qo:qo + 1]])
            C = np.concatenate([C[rest], rows[:, None, :qo]])
            B = np.concatenate([B[rest], rows[:, None, qo + 1:]])
            A = np.concatenate([A[rest], m_A[:, None, None]])
            w = np.concatenate([w[rest], np.repeat(size[big] / r, r)])
            o = np.argsort(par, kind="stable")
            par, c, B, A, C, w = par[o], c[o], B[o], A[o], C[o], w[o]
    ptr = np.searchsorted(par, np.arange(Go + 1)).astype(np.int64)
    return (np.ascontiguousarray(c), np.ascontiguousarray(B), np.ascontiguousarray(A),
            np.ascontiguousarray(C), np.ascontiguousarray(w), ptr)


#: fields of a sampled term's row in the buffer (see :func:`_pack_sampled`)
_ROW = 9


def _pack_sampled(design: Design, stats: CrossedStats, x_at: int, mu, ps):
    """Sampled (crossed) terms as the PyMC model builds them: coarse factors first,
    centred per factor from the data, hierarchically centred on a nesting parent.

    Per term a row ``[term, x_at, levels, q, centred, parent column in b_o (-1: none),
    parent q, column in b_o, segment offset]``; after the rows, per term a segment of
    ``q`` fixed-effect indices, ``q`` parent columns (-1: none) and, with a parent, the
    level -> parent level map."""
    from .group_effects import build_order, nesting_parent
    from .parametrization import choose_centering

    centered = choose_centering(design)
    col = dict(zip(stats.other_terms, stats.other_offsets))
    beta0 = mu.copy()
    if ps.centered:
        i = design.fixed_names.index("Intercept")
        beta0[i] -= intercept_shift(mu, ps.x_mean, i)
    rows, segs, sampled, init, done, seg_len = [], [], [], [], [], 0
    for k in build_order(design, list(stats.other_terms)):
        g = design.groups[k]
        cent = bool(centered.get(g.factor, False))
        fx = np.array([design.fixed_names.index(t) if cent and t in design.fixed_names else -1
                       for t in g.terms], dtype=np.int64)
        par, pmap, pcols, pq = -1, None, np.full(g.q, -1, dtype=np.int64), 0
        if cent:
            found = nesting_parent(design, k, [d for d in done if centered.get(design.groups[d].factor)])
            if found is not None:
                pterms = list(design.groups[found[0]].terms)
                pc = np.array([pterms.index(t) if t in pterms else -1 for t in g.terms], dtype=np.int64)
                if np.any(pc >= 0):
                    par, pmap, pcols, pq = found[0], np.asarray(found[1], dtype=np.int64), pc, len(pterms)
        seg = [fx.astype(float), pcols.astype(float)] + ([pmap.astype(float)] if par >= 0 else [])
        rows.append([k, x_at, g.n_levels, g.q, float(cent), col[par] if par >= 0 else -1, pq, col[k],
                     seg_len])
        segs += seg
        seg_len += sum(len(a) for a in seg)
        sampled.append(SampledTerm(k, x_at, g.n_levels, cent, fx, par, pmap, pcols, g.q))
        init += [beta0[j] if j >= 0 else 0.0 for j in fx] * g.n_levels
        x_at += g.n_levels * g.q
        done.append(k)
    ZZ = stats.ZotZo.tocsr()
    folds, BZ = _fold_nested(design, stats, col, stats.BZo.tocsr())
    unit, bz_ptr, bz_idx, bz_val = _unit_entries(BZ)
    fold_rows = [[col[c], design.groups[c].q, list(design.groups[c].terms).index("Intercept"), col[pk],
                  len(pmap)] for c, pk, pmap in folds]
    body = [np.asarray(rows, dtype=float).ravel(), *segs, stats.Zoty.ravel(), stats.XtZo.ravel(),
            _as_slots(ZZ.indptr), _as_slots(ZZ.indices), ZZ.data,
            np.array([len(folds)], dtype=float), np.asarray(fold_rows, dtype=float).ravel(),
            *[_as_slots(pmap) for _, _, pmap in folds], np.array([float(unit)]),
            _as_slots(bz_ptr), _as_slots(bz_idx), bz_val]
    return body, sampled, {f: c for f, c in centered.items() if f in
                           {design.groups[k].factor for k in stats.other_terms}}, init


def _fold_nested(design: Design, stats: CrossedStats, col: dict, BZ):
    """Sampled intercepts of a factor that contains another sampled factor with an intercept
    (InstEval: departments above lecturers) folded into that child's intercept column.

    ``Z_P = Z_C M`` (``M``: child level -> parent level) makes ``Z_sᵀZ_o b_o`` equal to the
    product without ``P``'s columns on ``b_o`` with ``b_P[pmap[g]]`` added to child level
    ``g``'s intercept: :func:`logp_grad` reads ``Z_sᵀZ_o`` once per term pair fewer (the
    densest part of a gradient). Each fold is checked on the statistics (exact up to
    rounding). Returns ``[(child, parent, pmap)]`` (coarse parents first: the kernel adds
    them in this order, so a chain of nestings accumulates) and ``Z_sᵀZ_o`` without the
    folded columns."""
    from .group_effects import build_order, nesting_parent

    terms = build_order(design, list(stats.other_terms))
    folds, drop = [], []
    for pk in terms:
        gp = design.groups[pk]
        if gp.q != 1 or list(gp.terms) != ["Intercept"]:
            continue
        kids = [c for c in terms if c != pk and "Intercept" in design.groups[c].terms
                and nesting_parent(design, c, [pk]) is not None]
        if not kids:
            continue
        c = min(kids, key=lambda k: design.groups[k].n_levels)  # the coarsest child: fewest adds
        pmap = np.asarray(nesting_parent(design, c, [pk])[1], dtype=np.int64)
        gc = design.groups[c]
        ccols = col[c] + np.arange(gc.n_levels) * gc.q + list(gc.terms).index("Intercept")
        lhs = BZ[:, col[pk]:col[pk] + gp.n_levels]
        diff = (lhs - BZ[:, ccols] @ _level_map(pmap, gp.n_levels)).tocsr().data
        if np.abs(diff).max(initial=0.0) > 1e-12 * max(np.abs(lhs.data).max(initial=0.0), 1.0):
            continue  # not the same columns after all (weights, a slope): keep P's columns
        folds.append((c, pk, pmap))
        drop += range(col[pk], col[pk] + gp.n_levels)
    if drop:
        keep = np.ones(BZ.shape[1])
        keep[drop] = 0.0
        BZ = (BZ @ _diag(keep)).tocsr()
        BZ.eliminate_zeros()
    return folds, BZ


def _level_map(pmap: np.ndarray, n_parent: int):
    import scipy.sparse as sp

    return sp.csr_matrix((np.ones(len(pmap)), (np.arange(len(pmap)), pmap)),
                         shape=(len(pmap), n_parent))


def _diag(v: np.ndarray):
    import scipy.sparse as sp

    return sp.diags(v, format="csr")


#: repeated entries above which a count matrix stays stored with its values
_UNIT_MAX_GROWTH = 1.25


def _unit_entries(BZ):
    """``Z_sᵀZ_o`` as the kernel reads it: ``(unit, indptr, indices, values)``. When it holds
    counts (intercept-only crossed factors: the rows a pair of levels shares) each entry is
    its column index repeated count times (at most :data:`_UNIT_MAX_GROWTH` times the
    entries; ``unit``, no values): the kernel's two products then read no values (~20%
    faster on InstEval, where every count is 1)."""
    BZ.sort_indices()
    v = BZ.data
    if v.size and (np.any(v < 1.0) or np.any(v != np.round(v)) or v.sum() > _UNIT_MAX_GROWTH * v.size):
        return False, BZ.indptr, BZ.indices, v
    n = v.astype(np.int64)
    rows = np.repeat(np.arange(BZ.shape[0]), np.diff(BZ.indptr))
    ptr = np.r_[0, np.cumsum(np.bincount(rows, weights=n, minlength=BZ.shape[0]).astype(np.int64))]
    return True, ptr, np.repeat(BZ.indices, n), np.zeros(0)


def _as_slots(ints: np.ndarray) -> np.ndarray:
    """Integers stored bit for bit in float64 slots of the buffer (read back with ``.view``)."""
    return np.ascontiguousarray(ints, dtype=np.int64).view(np.float64)


def _scale(prior) -> float:
    """A typical value of a positive prior (PyMC starts near its support point)."""
    v = float(PRIOR_DISTS[prior.dist].typical(prior.params))
    return v if v > 0 else 1.0


def sd_prior_entries(g, ps: PriorSet) -> tuple[list, list[float]]:
    """A term's SD priors as every compiled density's buffer holds them: per SD its
    positive-prior code (:func:`_positive_code`) and its start value (log of the prior's
    typical value), in the term's column order."""
    from ..spec.priors import sd_key

    priors = [ps.priors[sd_key(t, g.factor)] for t in g.terms]
    return [_positive_code(p) for p in priors], [np.log(_scale(p)) for p in priors]


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


def cpc_factor(z: np.ndarray, q: int) -> np.ndarray:
    """Cholesky factors W (S, q, q) of the correlation matrices with partial correlations
    ``tanh z`` (draws ``z`` (S, n_corr(q))), as :func:`cpc_cholesky` for each draw."""
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
    return W


def cpc_corr(z: np.ndarray, q: int) -> np.ndarray:
    """Correlation matrices (S, q, q) from draws ``z`` (S, n_corr(q)) of the partial correlations."""
    W = cpc_factor(z, q)
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
def fixed_prior(x, p, mu, sd, xm, i_int, grad):
    """Normal prior of the raw (centred-intercept) fixed effects ``x[:p]``, the same in every
    compiled density: returns ``(lp, β)`` (β with the intercept shifted back) and sets
    ``grad[:p]`` to the prior's gradient."""
    raw = x[:p]
    beta = raw.copy()
    if i_int >= 0:
        beta[i_int] -= _intercept_shift(raw, xm, i_int)
    lp = 0.0
    for j in range(p):
        z = (raw[j] - mu[j]) / sd[j]
        lp -= 0.5 * z * z
        grad[j] = -z / sd[j]
    return lp, beta


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _csr_matvec(indptr, indices, data, v, out, sign):
    """``out += sign · M v`` for a CSR matrix; no ``data``: every entry is 1 (a count
    stored as a repeated index, :func:`_unit_entries`)."""
    if data.shape[0] == 0:
        for r in range(out.shape[0]):
            s = 0.0
            for t in range(indptr[r], indptr[r + 1]):
                s += v[indices[t]]
            out[r] += sign * s
        return
    for r in range(out.shape[0]):
        s = 0.0
        for t in range(indptr[r], indptr[r + 1]):
            s += data[t] * v[indices[t]]
        out[r] += sign * s


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _csr_rmatvec(indptr, indices, data, u, out, sign):
    """``out += sign · Mᵀ u`` (no ``data``: as :func:`_csr_matvec`)."""
    if data.shape[0] == 0:
        for r in range(u.shape[0]):
            ur = sign * u[r]
            for t in range(indptr[r], indptr[r + 1]):
                out[indices[t]] += ur
        return
    for r in range(u.shape[0]):
        for t in range(indptr[r], indptr[r + 1]):
            out[indices[t]] += sign * data[t] * u[r]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _fold(folds, buf, fmap, v, back):
    """The folded parents of :func:`_fold_nested` (rows ``[child at, child q, child's
    intercept column, parent at, child levels]``, level maps from ``buf[fmap]``): adds each
    parent's entry of ``v`` to its children's (coarse parents first), or, ``back``, the
    transpose (each child's entry to its parent's, in reverse order)."""
    nf = folds.shape[0]
    at = np.empty(nf, dtype=np.int64)
    o = fmap
    for f in range(nf):
        at[f] = o
        o += int(folds[f, 4])
    for k in range(nf):
        f = nf - 1 - k if back else k
        c, qc, ic, pa, n = (int(folds[f, 0]), int(folds[f, 1]), int(folds[f, 2]),
                            int(folds[f, 3]), int(folds[f, 4]))
        pmap = buf[at[f]:at[f] + n].view(np.int64)
        for g in range(n):
            if back:
                v[pa + pmap[g]] += v[c + g * qc + ic]
            else:
                v[c + g * qc + ic] += v[pa + pmap[g]]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _sampled_q1(x, xo, n, l, cent, beta, fj, par, pc, pq, pmap, bo, off):
    """A sampled term with one column (``(1 | f)``, the common case) written out: its log
    prior; writes its effects to ``bo[off:off + n]``. Centred: ``m_g ~ N(shift_g, l²)``,
    ``b_g = m_g − shift_g`` (shift: fixed effect ``fj`` and, when ``par ≥ 0``, the parent
    level's effect ``bo[par + pmap[g]·pq + pc]``); else ``z_g ~ N(0, 1)``, ``b_g = l z_g``."""
    ss = 0.0
    if cent:
        sh = beta[fj] if fj >= 0 else 0.0
        for g in range(n):
            b = x[xo + g] - sh
            if par >= 0:
                b -= bo[par + int(pmap[g]) * pq + pc]
            bo[off + g] = b
            ss += b * b
        return -0.5 * ss / (l * l) - n * np.log(l)
    for g in range(n):
        z = x[xo + g]
        ss += z * z
        bo[off + g] = l * z
    return -0.5 * ss


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _sampled_q1_back(x, xo, n, l, cent, fj, par, pc, pq, pmap, bo, gbo, off, grad, gbeta):
    """:func:`_sampled_q1`'s gradient: writes ``∂lp/∂x`` of its coordinates from ``gbo``
    (``∂/∂b``), passes the centring's share on to ``gbeta`` and the parent's ``gbo``;
    returns ``∂lp/∂l``."""
    gl = 0.0
    if cent:  # lp_g = −½ b²/l² − log l: ∂/∂b = −b/l², ∂/∂l = b²/l³ − 1/l
        il2 = 1.0 / (l * l)
        sdb = 0.0
        for g in range(n):
            b = bo[off + g]
            w = b * il2
            db = gbo[off + g] - w
            grad[xo + g] = db
            gl += w * b
            sdb += db
            if par >= 0:
                gbo[par + int(pmap[g]) * pq + pc] -= db
        if fj >= 0:
            gbeta[fj] -= sdb
        return gl / l - n / l
    for g in range(n):  # b = l z: ∂/∂z = −z + l ∂/∂b, ∂/∂l = Σ z ∂/∂b
        z = x[xo + g]
        gb = gbo[off + g]
        grad[xo + g] = -z + l * gb
        gl += gb * z
    return gl


#: groups per block of :func:`_term_in_chunks`: its e and ∂F/∂e stay in cache (no G-sized temporaries)
_CHUNK = 2048


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _term_in_chunks(c, B, A, beta, L, s2, gL, gbeta):
    """``F`` and ``∂F/∂σ²`` block by block; adds ``∂F/∂L`` to ``gL`` and ``−½∂F/∂β`` to ``gbeta``."""
    G, q = c.shape
    p = beta.shape[0]
    e = np.empty((_CHUNK, q))
    gE = np.empty((_CHUNK, q))
    gLc = np.zeros(q * q).reshape((q, q))  # as logp_grad's: one np.zeros signature
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
def _solve_lower(C, b, out):
    """``out = C⁻¹ b`` (C lower triangular)."""
    n = C.shape[0]
    for i in range(n):
        s = b[i]
        for k in range(i):
            s -= C[i, k] * out[k]
        out[i] = s / C[i, i]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _chol_inverse(C, Ki, t):
    """``Ki = (C Cᵀ)⁻¹`` from the lower Cholesky factor ``C`` (``t``: scratch of length q)."""
    q = C.shape[0]
    for col in range(q):
        for i in range(q):
            s = 1.0 if i == col else 0.0
            for k in range(i):
                s -= C[i, k] * t[k]
            t[i] = s / C[i, i]
        for i in range(q - 1, -1, -1):
            s = t[i]
            for k in range(i + 1, q):
                s -= C[k, i] * Ki[k, col]
            Ki[i, col] = s / C[i, i]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _nested_term_q1(eo, Ao, Lo, ei, Ai, Cc, Li, ptr, w, s2, gEo, gLo, gEi, gLi):
    """:func:`nested_term` for one inner column (``(1 | outer:inner)``, the common case):
    the inner blocks are scalars, so their algebra is written out (~5x fewer operations
    than the general small-matrix loops). Row ``j`` stands for ``w[j]`` inner levels
    (:func:`inner_rows`): ``w[j]`` times its ``log K_jj`` and ``K_jj⁻¹``; the caller counts
    one ``log σ²`` per row, so ``(1 − w[j]) log σ²`` makes that ``w[j]``."""
    Go, qo = eo.shape
    nmax = 0
    for a in range(Go):
        nmax = max(nmax, ptr[a + 1] - ptr[a])
    inv_s2 = 1.0 / s2
    l = Li[0, 0]
    ALo, Koo, S = np.empty((qo, qo)), np.empty((qo, qo)), np.empty((qo, qo))
    CS, Si, Woo = np.empty((qo, qo)), np.empty((qo, qo)), np.empty((qo, qo))
    CL = np.empty((nmax, qo))  # C_j L_o (row)
    P = np.empty((nmax, qo))  # K_jj⁻¹ K_jo
    ik = np.empty(nmax)
    yv = np.empty(nmax)
    vi = np.empty(nmax)
    vo, r, xo, to, PS, Wjo = (np.empty(qo), np.empty(qo), np.empty(qo), np.empty(qo),
                              np.empty(qo), np.empty(qo))
    extra = 0.0  # Σ_j (1 − w_j): levels the rows stand for beyond one each
    for j in range(ptr[Go]):
        extra += 1.0 - w[j]
    F = extra * np.log(s2)
    gs2 = extra * inv_s2
    gl = 0.0
    a_last, lk, ikj = np.nan, 0.0, 0.0
    for a in range(Go):
        sandwich(Ao, a, Lo, s2, ALo, Koo)
        for i in range(qo):
            s = 0.0
            for k in range(qo):
                s += Lo[k, i] * eo[a, k]
            vo[i] = s
            r[i] = s
            for j in range(qo):
                S[i, j] = Koo[i, j]
        j0, n = ptr[a], ptr[a + 1] - ptr[a]
        for jj in range(n):
            j = j0 + jj
            if Ai[j, 0, 0] != a_last:  # a merged unit's rows (balanced designs: all) share K_jj
                a_last = Ai[j, 0, 0]
                kjj = s2 + l * l * a_last
                lk = np.log(kjj)
                ikj = 1.0 / kjj
            F += w[j] * lk
            ik[jj] = ikj
            v = l * ei[j, 0]
            vi[jj] = v
            yv[jj] = v * ikj
            for b in range(qo):
                s = 0.0
                for k in range(qo):
                    s += Cc[j, 0, k] * Lo[k, b]
                CL[jj, b] = s
                P[jj, b] = l * s * ikj
            for b in range(qo):  # S −= K_joᵀP_j, r −= K_joᵀy_j (K_jo = l CL)
                kb = l * CL[jj, b]
                for c in range(qo):
                    S[b, c] -= kb * P[jj, c]
                r[b] -= kb * yv[jj]
        F += cholesky_lower(S, CS)
        _chol_inverse(CS, Si, to)
        quad = 0.0
        trw = 0.0
        for i in range(qo):
            s = 0.0
            for k in range(qo):
                s += Si[i, k] * r[k]
            xo[i] = s
        for i in range(qo):
            quad += vo[i] * xo[i]
            trw += Si[i, i] + xo[i] * xo[i] * inv_s2
            for k in range(qo):
                Woo[i, k] = Si[i, k] + xo[i] * xo[k] * inv_s2
        for i in range(qo):
            for b in range(qo):
                s = 0.0
                for k in range(qo):
                    s += ALo[i, k] * Woo[k, b]
                gLo[i, b] += 2.0 * (s - eo[a, i] * xo[b] * inv_s2)
            s = 0.0
            for k in range(qo):
                s += Lo[i, k] * xo[k]
            gEo[a, i] = -2.0 * s * inv_s2
        for jj in range(n):
            j = j0 + jj
            xj = yv[jj]
            for k in range(qo):
                xj -= P[jj, k] * xo[k]
            quad += vi[jj] * xj
            wjj = w[j] * ik[jj] + xj * xj * inv_s2
            g = 0.0
            for b in range(qo):
                s = 0.0
                for k in range(qo):
                    s += P[jj, k] * Si[k, b]
                wjj += s * P[jj, b]
                Wjo[b] = -s + xj * xo[b] * inv_s2
                g += CL[jj, b] * Wjo[b]
            trw += wjj
            gl += 2.0 * (Ai[j, 0, 0] * l * wjj + g - ei[j, 0] * xj * inv_s2)
            gEi[j, 0] = -2.0 * l * xj * inv_s2
            for i in range(qo):  # coupling part of ∂F/∂L_o: 2 C_jᵀ L_i W_jo
                ci = 2.0 * Cc[j, 0, i] * l
                for b in range(qo):
                    gLo[i, b] += ci * Wjo[b]
        F -= quad * inv_s2
        gs2 += trw + quad * inv_s2 * inv_s2
    gLi[0, 0] += gl
    return F, gs2


@numba.njit(cache=True, nogil=True, error_model="numpy")
def nested_term(eo, Ao, Lo, ei, Ai, Cc, Li, ptr, w, s2, gEo, gLo, gEi, gLi):
    """The two-stage marginal term of a nested design: ``F`` and ``∂F/∂σ²``.

    Per outer level ``a`` the effects of the level and of its inner levels ``j`` have the
    block-arrowhead system ``K = σ²I + LᵀA L`` (``L = diag(L_o, L_i, …)``): blocks
    ``K_oo = σ²I + L_oᵀA_aL_o``, ``K_jj = σ²I + L_iᵀA_jL_i``, ``K_jo = L_iᵀC_jL_o``.
    The inner blocks are eliminated first (Schur complement ``S = K_oo − Σ_j K_joᵀK_jj⁻¹K_jo``),
    so with ``v = Lᵀe``, ``x = K⁻¹v``::

        F = Σ_a [Σ_j log|K_jj| + log|S_a| − vᵀx / σ²]
        x_o = S⁻¹(v_o − Σ_j K_joᵀK_jj⁻¹v_j),  x_j = K_jj⁻¹(v_j − K_jo x_o)

    and the gradient is :mod:`.group_kernel`'s ``∂F/∂L = 2ALW − 2exᵀ/σ²``
    (``W = K⁻¹ + xxᵀ/σ²``) on the diagonal blocks, for which only the blocks
    ``W_oo``, ``W_jo``, ``W_jj`` of ``K⁻¹`` are needed::

        (K⁻¹)_oo = S⁻¹,  (K⁻¹)_jo = −P_j S⁻¹,  (K⁻¹)_jj = K_jj⁻¹ + P_j S⁻¹ P_jᵀ   (P_j = K_jj⁻¹K_jo)

    Writes ``∂F/∂e`` to ``gEo`` / ``gEi``, adds ``∂F/∂L_o``, ``∂F/∂L_i`` to ``gLo``, ``gLi``.
    Inner levels are sorted by outer level: those of ``a`` are ``ptr[a]:ptr[a+1]``; ``w``:
    the levels each inner row stands for (:func:`inner_rows`: ``w[j]`` times row ``j``'s
    ``log|K_jj|`` and ``K_jj⁻¹``, plus ``(1 − w[j]) log σ²``; all 1 when ``q_i > 1``).
    """
    Go, qo = eo.shape
    qi = ei.shape[1]
    if qi == 1:  # measured: 3-5x faster than the loops below with q_i = 1
        return _nested_term_q1(eo, Ao, Lo, ei, Ai, Cc, Li, ptr, w, s2, gEo, gLo, gEi, gLi)
    nmax = 0
    for a in range(Go):
        nmax = max(nmax, ptr[a + 1] - ptr[a])
    inv_s2 = 1.0 / s2
    ALo, Koo, S = np.empty((qo, qo)), np.empty((qo, qo)), np.empty((qo, qo))
    CS, Si = np.empty((qo, qo)), np.empty((qo, qo))
    ALi = np.empty((nmax, qi, qi))
    Kjo = np.empty((nmax, qi, qo))
    Kinv = np.empty((nmax, qi, qi))
    P = np.empty((nmax, qi, qo))
    yv = np.empty((nmax, qi))
    vi = np.empty((nmax, qi))
    xi = np.empty((nmax, qi))
    Kjj, Cj = np.empty((qi, qi)), np.empty((qi, qi))
    CLo = np.empty((qi, qo))
    vo, r, xo, to = np.empty(qo), np.empty(qo), np.empty(qo), np.empty(qo)
    ti = np.empty(qi)
    Woo, PS = np.empty((qo, qo)), np.empty((qi, qo))
    Wjo, Wjj = np.empty((qi, qo)), np.empty((qi, qi))
    extra = 0.0  # Σ_j (1 − w_j), see _nested_term_q1
    for j in range(ptr[Go]):
        extra += 1.0 - w[j]
    F = extra * np.log(s2)
    gs2 = extra * inv_s2
    for a in range(Go):
        sandwich(Ao, a, Lo, s2, ALo, Koo)
        for i in range(qo):
            s = 0.0
            for k in range(qo):
                s += Lo[k, i] * eo[a, k]
            vo[i] = s
            r[i] = s
            for j in range(qo):
                S[i, j] = Koo[i, j]
        j0, n = ptr[a], ptr[a + 1] - ptr[a]
        for jj in range(n):
            j = j0 + jj
            sandwich(Ai, j, Li, s2, ALi[jj], Kjj)
            F += w[j] * cholesky_lower(Kjj, Cj)
            _chol_inverse(Cj, Kinv[jj], ti)
            cross_sandwich(Cc, j, Li, Lo, CLo, Kjo[jj])  # K_jo = L_iᵀ C_j L_o
            for i in range(qi):
                s = 0.0
                for k in range(qi):
                    s += Li[k, i] * ei[j, k]
                vi[jj, i] = s
            for i in range(qi):  # P_j = K_jj⁻¹K_jo, y_j = K_jj⁻¹v_j
                for b in range(qo):
                    s = 0.0
                    for k in range(qi):
                        s += Kinv[jj, i, k] * Kjo[jj, k, b]
                    P[jj, i, b] = s
                s = 0.0
                for k in range(qi):
                    s += Kinv[jj, i, k] * vi[jj, k]
                yv[jj, i] = s
            for b in range(qo):  # S −= K_joᵀP_j, r −= K_joᵀy_j
                for c in range(qo):
                    s = 0.0
                    for k in range(qi):
                        s += Kjo[jj, k, b] * P[jj, k, c]
                    S[b, c] -= s
                s = 0.0
                for k in range(qi):
                    s += Kjo[jj, k, b] * yv[jj, k]
                r[b] -= s
        F += cholesky_lower(S, CS)
        _chol_inverse(CS, Si, to)
        quad = 0.0
        trw = 0.0
        for i in range(qo):
            s = 0.0
            for k in range(qo):
                s += Si[i, k] * r[k]
            xo[i] = s
        for i in range(qo):
            quad += vo[i] * xo[i]
            trw += Si[i, i] + xo[i] * xo[i] * inv_s2
            for k in range(qo):
                Woo[i, k] = Si[i, k] + xo[i] * xo[k] * inv_s2
        # outer block of ∂F/∂L_o: 2 A_a L_o W_oo − 2 e_a x_oᵀ/σ² (+ the coupling, below)
        for i in range(qo):
            for b in range(qo):
                s = 0.0
                for k in range(qo):
                    s += ALo[i, k] * Woo[k, b]
                gLo[i, b] += 2.0 * (s - eo[a, i] * xo[b] * inv_s2)
            s = 0.0
            for k in range(qo):
                s += Lo[i, k] * xo[k]
            gEo[a, i] = -2.0 * s * inv_s2
        for jj in range(n):
            j = j0 + jj
            for i in range(qi):  # x_j = y_j − P_j x_o
                s = yv[jj, i]
                for k in range(qo):
                    s -= P[jj, i, k] * xo[k]
                xi[jj, i] = s
                quad += vi[jj, i] * s
            for i in range(qi):  # PS = P_j S⁻¹
                for b in range(qo):
                    s = 0.0
                    for k in range(qo):
                        s += P[jj, i, k] * Si[k, b]
                    PS[i, b] = s
                    Wjo[i, b] = -s + xi[jj, i] * xo[b] * inv_s2
            for i in range(qi):
                for b in range(qi):
                    s = 0.0
                    for k in range(qo):
                        s += PS[i, k] * P[jj, b, k]
                    Wjj[i, b] = w[j] * Kinv[jj, i, b] + s + xi[jj, i] * xi[jj, b] * inv_s2
                trw += Wjj[i, i]
            # ∂F/∂L_i: 2 (A_j L_i W_jj + C_j L_o W_oj) − 2 e_j x_jᵀ/σ²
            for i in range(qi):
                for k in range(qo):
                    s = 0.0
                    for m in range(qo):
                        s += Cc[j, i, m] * Lo[m, k]
                    CLo[i, k] = s
            for i in range(qi):
                for b in range(qi):
                    s = 0.0
                    for k in range(qi):
                        s += ALi[jj, i, k] * Wjj[k, b]
                    for k in range(qo):
                        s += CLo[i, k] * Wjo[b, k]
                    gLi[i, b] += 2.0 * (s - ei[j, i] * xi[jj, b] * inv_s2)
                s = 0.0
                for k in range(qi):
                    s += Li[i, k] * xi[jj, k]
                gEi[j, i] = -2.0 * s * inv_s2
            # coupling part of ∂F/∂L_o: 2 C_jᵀ L_i W_jo
            for i in range(qo):
                for b in range(qo):
                    s = 0.0
                    for k in range(qi):
                        t = 0.0
                        for m in range(qi):
                            t += Li[k, m] * Wjo[m, b]
                        s += Cc[j, k, i] * t
                    gLo[i, b] += 2.0 * s
        F -= quad * inv_s2
        gs2 += trw + quad * inv_s2 * inv_s2
    return F, gs2


#: the structure :func:`logp_grad`'s body serves: "any" (read from the buffer) here; one of
#: "single", "nested", "crossed" in the entry points of :func:`kernel`, where it is a
#: compile-time constant: Numba prunes the other structures' branches before typing
_KIND = "any"


@numba.njit(cache=True, nogil=True, error_model="numpy")
def logp_grad(x, buf, grad):
    """Log posterior (up to a constant) at ``x``; writes its gradient to ``grad``.

    Every structure; a fit calls its structure's entry point (:func:`kernel`), which computes
    the same numbers and compiles only what that structure runs."""
    p, G, q = int(buf[1]), int(buf[2]), int(buf[3])
    N, yty, T, i_int = buf[4], buf[5], int(buf[6]), int(buf[7])
    K_o, m = int(buf[11]), int(buf[12])
    Gi, qi = int(buf[13]), int(buf[14])
    o = _HEAD
    term_at = o
    qmax = 1
    for _ in range(T):  # skip the per-term blocks to find the fixed-effect priors
        qmax = max(qmax, int(buf[o]))
        o += 5 + 3 * int(buf[o])
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
    if _KIND != "single":  # one factor: no inner factor (pruned in its entry point)
        # nested: the inner factor's statistics, its levels sorted by outer level
        c_in = buf[o:o + Gi * qi].reshape((Gi, qi))
        o += Gi * qi
        B_in = buf[o:o + Gi * qi * p].reshape((Gi, qi, p))
        o += Gi * qi * p
        A_in = buf[o:o + Gi * qi * qi].reshape((Gi, qi, qi))
        o += Gi * qi * qi
        C_in = buf[o:o + Gi * qi * q].reshape((Gi, qi, q))
        o += Gi * qi * q
        ptr = buf[o:o + G + 1].view(np.int64) if Gi else np.zeros(0, dtype=np.int64)
        o += G + 1 if Gi else 0
        w_in = buf[o:o + Gi]  # levels each inner row stands for (:func:`inner_rows`)
        o += Gi
    for i in range(grad.shape[0]):
        grad[i] = 0.0

    lp, beta = fixed_prior(x, p, mu, sd, xm, i_int, grad)
    # sigma
    u = x[p]
    sigma = np.exp(u)
    l_s, d_s = _log_positive(int(buf[8]), buf[9], buf[10], u)
    lp += l_s
    # group-level SDs and correlations: each term's Cholesky factor Lt[t]; the
    # marginalised blocks' factors L (single / outer) and Li (nested inner)
    # zeroed arrays as np.zeros(n).reshape: one np.zeros signature to compile, not one per
    # number of dimensions (a cold compile's Numba helpers, #18 item 5)
    Lt = np.zeros(T * qmax * qmax).reshape((T, qmax, qmax))
    gLt = np.zeros(T * qmax * qmax).reshape((T, qmax, qmax))  # ∂lp/∂L_t
    x_sd = np.empty(T, dtype=np.int64)
    L = np.zeros(q * q).reshape((q, q))
    Li = np.zeros(qi * qi).reshape((qi, qi))
    k = p + 1
    ot = term_at
    for t in range(T):
        qt, corr, eta = int(buf[ot]), buf[ot + 1] > 0.5, buf[ot + 2]
        blk, off = int(buf[ot + 3]), int(buf[ot + 4])
        x_sd[t] = k
        for i in range(qt):
            l_i, d_i = _log_positive(int(buf[ot + 5 + 3 * i]), buf[ot + 6 + 3 * i],
                                     buf[ot + 7 + 3 * i], x[k + i])
            lp += l_i
            grad[k + i] = d_i
            Lt[t, i, i] = np.exp(x[k + i])
        nc = n_corr(qt) if corr else 0
        if corr:  # L = diag(sd) W, W from the partial correlations (module docstring)
            W = np.empty((qt, qt))
            lp += lkj_cpc(x[k + qt:k + qt + nc], eta, W, grad[k + qt:k + qt + nc])
            for i in range(qt):
                sd_i = Lt[t, i, i]
                for j in range(i + 1):
                    Lt[t, i, j] = sd_i * W[i, j]
        if blk >= 0:
            for i in range(qt):
                for j in range(qt):
                    if blk == 0:
                        L[off + i, off + j] = Lt[t, i, j]
                    else:
                        Li[off + i, off + j] = Lt[t, i, j]
        ot += 5 + 3 * qt
        k += qt + nc

    if _KIND != "single":  # one factor: no sampled effects (m = 0; pruned in its entry point)
        # sampled (crossed) effects b_o, coarse factors first
        rows = buf[o:o + _ROW * K_o].reshape((K_o, _ROW))
        o += _ROW * K_o
        seg0 = o
        for r in range(K_o):
            o += 2 * int(rows[r, 3]) + (int(rows[r, 2]) if rows[r, 5] >= 0 else 0)
        bo = np.zeros(m)
        bv = np.empty(qmax)
        uv = np.empty(qmax)
        if _KIND == "any" or _KIND == "crossed":
            for r in range(K_o):
                t, xo, Gk, qk = int(rows[r, 0]), int(rows[r, 1]), int(rows[r, 2]), int(rows[r, 3])
                cent, par, pq, off = rows[r, 4] > 0.5, int(rows[r, 5]), int(rows[r, 6]), int(rows[r, 7])
                sg = seg0 + int(rows[r, 8])
                Lk = Lt[t, :qk, :qk]
                if qk == 1:
                    lp += _sampled_q1(x, xo, Gk, Lk[0, 0], cent, beta, int(buf[sg]),
                                      par if par >= 0 and buf[sg + 1] >= 0 else -1,
                                      int(buf[sg + 1]), pq, buf[sg + 2:sg + 2 + Gk], bo, off)
                    continue
                logdiag = 0.0
                for i in range(qk):
                    logdiag += np.log(Lk[i, i])
                for g in range(Gk):
                    v = x[xo + g * qk:xo + (g + 1) * qk]
                    if cent:  # m ~ N(shift, LLᵀ), b = m − shift
                        for i in range(qk):
                            sh = 0.0
                            fj = int(buf[sg + i])
                            if fj >= 0:
                                sh += beta[fj]
                            pc = int(buf[sg + qk + i])
                            if par >= 0 and pc >= 0:
                                sh += bo[par + int(buf[sg + 2 * qk + g]) * pq + pc]
                            bv[i] = v[i] - sh
                        _solve_lower(Lk, bv[:qk], uv[:qk])
                        for i in range(qk):
                            lp -= 0.5 * uv[i] * uv[i]
                        lp -= logdiag
                        for i in range(qk):
                            bo[off + g * qk + i] = bv[i]
                    else:  # z ~ N(0, I), b = L z
                        for i in range(qk):
                            lp -= 0.5 * v[i] * v[i]
                            s = 0.0
                            for j in range(i + 1):
                                s += Lk[i, j] * v[j]
                            bo[off + g * qk + i] = s
        Zoty = buf[o:o + m]
        o += m
        XtZo = buf[o:o + p * m].reshape((p, m))
        o += p * m
        zz_p = buf[o:o + m + 1].view(np.int64) if m else np.zeros(0, dtype=np.int64)
        nz = zz_p[m] if m else 0
        zz_i = buf[o + m + 1:o + m + 1 + nz].view(np.int64)
        zz_v = buf[o + m + 1 + nz:o + m + 1 + 2 * nz]
        o += m + 1 + 2 * nz
        # sampled intercepts folded into a nested child's column (:func:`_fold_nested`)
        nf = int(buf[o]) if m else 0
        folds = buf[o + 1:o + 1 + 5 * nf].reshape((nf, 5))
        o += 1 + 5 * nf
        fmap = o  # the folds' level maps, one after the other
        for f in range(nf):
            o += int(folds[f, 4])
        unit = buf[o] > 0.5 if m else True  # Z_sᵀZ_o as repeated indices, no values (:func:`_unit_entries`)
        o += 1
        bz_p = buf[o:o + G * q + 1].view(np.int64) if m else np.zeros(0, dtype=np.int64)
        nb = bz_p[G * q] if m else 0
        bz_i = buf[o + G * q + 1:o + G * q + 1 + nb].view(np.int64)
        bz_v = buf[o + G * q + 1 + nb:o + G * q + 1 + (nb if unit else 2 * nb)]

    # marginal likelihood given β, b_o: e_g = c_g − B_g β − (Z_gᵀZ_o) b_o
    s2 = sigma * sigma
    gL = np.zeros(q * q).reshape((q, q))
    gLi = np.zeros(qi * qi).reshape((qi, qi))
    # rr = ‖y − Xβ − Z_o b_o‖² from the statistics
    # one factor: X'Xβ as a loop (p is small), not `@` (Numba's BLAS matrix-vector product
    # costs a one-factor fit's cold compile ~0.4 s, #18 item 5); the condition is spelt out so
    # that an entry point's constants decide it (as below)
    if _KIND == "single" or (_KIND == "any" and m == 0 and Gi == 0):
        Xb = np.empty(p)
        for i in range(p):
            s = 0.0
            for j in range(p):
                s += XtX[i, j] * beta[j]
            Xb[i] = s
    else:
        Xb = XtX @ beta
    rr = yty - 2.0 * (beta @ Xty) + beta @ Xb
    gbeta = Xb - Xty  # then + X'Z_o b_o, then −(·)/σ²
    if _KIND != "single":  # the sampled effects' part (none for one factor)
        ZZb = np.zeros(m)
        if _KIND != "nested" and m:
            _csr_matvec(zz_p, zz_i, zz_v, bo, ZZb, 1.0)
        XZb = XtZo @ bo
        rr = rr - 2.0 * (bo @ Zoty) + 2.0 * (beta @ XZb) + bo @ ZZb
        gbeta += XZb
    # d/dβ: −½ (∂F/∂β + ∂rr/∂β / σ²), ∂F/∂β = −Σ_g B_gᵀ ∂F/∂e_g (added below)
    gbeta = -gbeta / s2
    gE = np.empty((0, q))  # ∂F/∂e over all groups: kept only for the crossed products below
    if _KIND == "single" or (_KIND == "any" and m == 0 and Gi == 0):
        F, gs2 = _term_in_chunks(c, B, A, beta, L, s2, gL, gbeta)
    else:  # crossed or nested: e and ∂F/∂e over all groups
        e = c.copy()
        for g in range(G):
            for i in range(q):
                s = 0.0
                for jj in range(p):
                    s += B[g, i, jj] * beta[jj]
                e[g, i] -= s
        if _KIND != "nested" and m:
            bf = bo.copy()  # b_o with each folded parent's effect added to its children
            _fold(folds, buf, fmap, bf, False)
            _csr_matvec(bz_p, bz_i, bz_v, bf, e.reshape(G * q), -1.0)
        gE = np.empty((G, q))
        if _KIND == "nested" or (_KIND == "any" and Gi):
            e_in = c_in.copy()
            for g in range(Gi):
                for i in range(qi):
                    s = 0.0
                    for jj in range(p):
                        s += B_in[g, i, jj] * beta[jj]
                    e_in[g, i] -= s
            gEi = np.empty((Gi, qi))
            F, gs2 = nested_term(e, A, L, e_in, A_in, C_in, Li, ptr, w_in, s2, gE, gL, gEi, gLi)
            for g in range(Gi):
                for i in range(qi):
                    for jj in range(p):
                        gbeta[jj] += 0.5 * B_in[g, i, jj] * gEi[g, i]
        else:
            F, gs2 = term_and_grad(e, A, L, s2, gE, gL)
        for g in range(G):
            for i in range(q):
                for jj in range(p):
                    gbeta[jj] += 0.5 * B[g, i, jj] * gE[g, i]
    n_eff = G * q + Gi * qi  # integrated-out effects: log|K| = log|M| + n_eff log σ²
    lp += -0.5 * (N * _LOG2PI + (N - n_eff) * np.log(s2) + F + rr / s2)
    if _KIND == "any" or _KIND == "crossed":  # back through the sampled effects
        # d/db_o likewise: ½ BZoᵀ ∂F/∂e − (ZoᵀZo b_o − Zoᵀy + Z_oᵀX β) / σ²
        gbo = (Zoty - ZZb - XtZo.T @ beta) / s2
        if m and nf:  # through the folds: the parents' share from their children's
            gf = np.zeros(m)
            _csr_rmatvec(bz_p, bz_i, bz_v, gE.reshape(G * q), gf, 0.5)
            _fold(folds, buf, fmap, gf, True)
            for j in range(m):
                gbo[j] += gf[j]
        elif m:
            _csr_rmatvec(bz_p, bz_i, bz_v, gE.reshape(G * q), gbo, 0.5)
        # back through the sampled effects, children before their parents
        gb = np.empty(qmax)
        for r in range(K_o - 1, -1, -1):
            t, xo, Gk, qk = int(rows[r, 0]), int(rows[r, 1]), int(rows[r, 2]), int(rows[r, 3])
            cent, par, pq, off = rows[r, 4] > 0.5, int(rows[r, 5]), int(rows[r, 6]), int(rows[r, 7])
            sg = seg0 + int(rows[r, 8])
            Lk = Lt[t, :qk, :qk]
            if qk == 1:
                gLt[t, 0, 0] += _sampled_q1_back(x, xo, Gk, Lk[0, 0], cent, int(buf[sg]),
                                                 par if par >= 0 and buf[sg + 1] >= 0 else -1,
                                                 int(buf[sg + 1]), pq, buf[sg + 2:sg + 2 + Gk],
                                                 bo, gbo, off, grad, gbeta)
                continue
            for g in range(Gk):
                for i in range(qk):
                    gb[i] = gbo[off + g * qk + i]
                if cent:
                    # lp_g = −½‖L⁻¹b‖² − log|L|: ∂/∂b = −L⁻ᵀu, ∂/∂L = L⁻ᵀu uᵀ − diag(1/L_ii)
                    for i in range(qk):
                        bv[i] = bo[off + g * qk + i]
                    _solve_lower(Lk, bv[:qk], uv[:qk])
                    for i in range(qk - 1, -1, -1):  # w = L⁻ᵀu into bv
                        s = uv[i]
                        for j in range(i + 1, qk):
                            s -= Lk[j, i] * bv[j]
                        bv[i] = s / Lk[i, i]
                    for i in range(qk):
                        db = gb[i] - bv[i]
                        grad[xo + g * qk + i] = db
                        for j in range(i + 1):
                            gLt[t, i, j] += bv[i] * uv[j]
                        gLt[t, i, i] -= 1.0 / Lk[i, i]
                        fj = int(buf[sg + i])
                        if fj >= 0:
                            gbeta[fj] -= db
                        pc = int(buf[sg + qk + i])
                        if par >= 0 and pc >= 0:
                            gbo[par + int(buf[sg + 2 * qk + g]) * pq + pc] -= db
                else:  # b = L z: ∂/∂z = −z + Lᵀ gb, ∂/∂L = gb zᵀ
                    for j in range(qk):
                        s = -x[xo + g * qk + j]
                        for i in range(j, qk):
                            s += Lk[i, j] * gb[i]
                        grad[xo + g * qk + j] = s
                    for i in range(qk):
                        for j in range(i + 1):
                            gLt[t, i, j] += gb[i] * x[xo + g * qk + j]
    # d/du (u = log σ): σ ∂/∂σ with ∂F/∂σ = 2σ ∂F/∂σ²
    grad[p] = d_s - 0.5 * (2.0 * (N - n_eff) + 2.0 * s2 * gs2 - 2.0 * rr / s2)
    # back through the centred-intercept shift (its transpose): β = S raw
    for jj in range(p):
        grad[jj] += gbeta[jj]
        if i_int >= 0 and jj != i_int:
            grad[jj] -= xm[jj] * gbeta[i_int]
    # d/dL_t (−½ ∂F/∂L on the marginalised blocks), then to log SDs and z
    ot = term_at
    for t in range(T):
        qt, corr, blk, off = int(buf[ot]), buf[ot + 1] > 0.5, int(buf[ot + 3]), int(buf[ot + 4])
        if blk >= 0:
            for i in range(qt):
                for j in range(qt):
                    gLt[t, i, j] -= 0.5 * (gL[off + i, off + j] if blk == 0 else gLi[off + i, off + j])
        k = x_sd[t]
        for i in range(qt):  # L_ij = sd_i W_ij: sd_i ∂/∂sd_i = Σ_j g_ij L_ij
            gsd = 0.0
            for j in range(qt):
                gsd += gLt[t, i, j] * Lt[t, i, j]
            grad[k + i] += gsd
        if corr:
            nc = n_corr(qt)
            gW = np.empty((qt, qt))
            for i in range(qt):
                sd_i = np.exp(x[k + i])
                for j in range(qt):
                    gW[i, j] = gLt[t, i, j] * sd_i
            cpc_backward(x[k + qt:k + qt + nc], qt, gW, grad[k + qt:k + qt + nc])
        ot += 5 + 3 * qt
    return lp


# --------------------------------------------------------------------------- #
# per-structure entry points (compiled on first use, cached once per machine)
# --------------------------------------------------------------------------- #
def kernel(kind: str, q: int = 1):
    """The density of one structure: :func:`logp_grad` with ``_KIND`` fixed at compile time.

    ``kind``: ``"single"`` (one marginalised factor), ``"nested"`` (two-stage) or
    ``"crossed"`` (sampled effects); ``q``: the single factor's columns (its group term's
    kernel, :func:`.group_kernel.term_for_q`, is called straight from the chunk loop: q = 1,
    2 or any larger q share one kernel) or the nested inner factor's (1 sends the inner term
    straight to :func:`_nested_term_q1`); ignored for crossed designs. A sleepstudy fit
    compiles one function and one group-term kernel instead of every structure's kernels
    (the generic :func:`logp_grad` compiled ~3x longer); the numbers are :func:`logp_grad`'s,
    from the same Python bodies (tested bit for bit)."""
    if kind == "nested":
        return _entry("nested_q1" if q == 1 else "nested")
    if kind == "single":
        return _entry(f"single_q{q}" if q <= 2 else "single_qn")
    if kind == "crossed":
        return _entry(kind)
    raise ValueError(f"unknown structure {kind!r}")


@functools.cache
def _entry(name: str):
    from .kernel_variants import specialised

    kind, _, variant = name.partition("_")
    inner = {}
    if name == "nested_q1":  # the inner term's kernel itself (nested_term sends q = 1 there)
        inner = {"nested_term": _nested_term_q1}
    elif kind == "single":  # the chunk loop calling its q's group-term kernel
        inner = {"_term_in_chunks": _chunks(variant)}
    entry = specialised(logp_grad, name, {"_KIND": kind, **inner})
    # nutpie's callback compiles this body itself rather than calling it: the density is
    # compiled once, not as a library of its own and again in the callback (#18 item 5)
    setattr(entry, FUSE, True)
    return entry


@functools.cache
def _chunks(variant: str):
    """:func:`_term_in_chunks` calling :func:`.group_kernel.term_for_q`'s kernel directly
    (``variant``: ``"q1"``, ``"q2"`` or ``"qn"``): the run-time choice by q, and the two kernels
    it does not run, are not compiled."""
    from .group_kernel import term_for_q
    from .kernel_variants import specialised

    q = {"q1": 1, "q2": 2}.get(variant, 3)
    return specialised(_term_in_chunks, variant, {"term_and_grad": term_for_q(q)})


def _shared():
    """The kernels every structure's entry point calls, with the argument types it passes
    (arrays: C-contiguous float64 vectors and matrices; tested against the entry points)."""
    v, m, i, f = numba.float64[::1], numba.float64[:, ::1], numba.int64, numba.float64
    return {fixed_prior: (v, i, v, v, v, i, v), _log_positive: (i, f, f, f),
            lkj_cpc: (v, f, m, v), cpc_backward: (v, i, m, v)}


def compile_shared() -> None:
    """Compile (or load) :func:`_shared`'s kernels: a background compile's child does this
    while the first fit loads its libraries, before the model says which entry point it runs
    (:func:`prestart`)."""
    for f, sig in _shared().items():
        f.compile(sig)


def prestart() -> bool:
    """On a cold cache, before a session's first fit loads its libraries: start the background
    compile's child on :func:`compile_shared` (:func:`.background_compile.prestart`); the
    fit's :func:`.numba_nuts.compile_ahead` then hands it the model's entry point. False when
    nothing started (the kernels cached, nutpie missing, no child). Never raises."""
    try:
        import importlib.util

        from ..progress import numba_cache_cold
        from . import background_compile

        if importlib.util.find_spec("nutpie") is None or not numba_cache_cold(*_shared()):
            return False
        return background_compile.prestart((__name__, "compile_shared", ()))
    except Exception:  # a head start only
        return False


def kernel_for(packed: Packed):
    """The entry point of :func:`kernel` for the model in ``packed`` (read from its header)."""
    buf = packed.buf
    return kernel(*_structure(int(buf[13]), int(buf[14]), int(buf[12]), int(buf[3])))


def kernel_args(stats) -> tuple[str, int]:
    """``(kind, q)`` of :func:`kernel` for a model's statistics, before they are packed:
    :func:`kernel_for` of their :func:`pack` (:func:`.background_compile.start` asks it)."""
    _, CrossedStats, NestedStats = _stats_types()
    nested = isinstance(stats, NestedStats)
    crossed = isinstance(stats, CrossedStats)
    return _structure(stats.c_in.shape[0] if nested else 0, stats.c_in.shape[1] if nested else 0,
                      int(stats.m) if crossed else 0, (stats.c_out if nested else stats.c).shape[1])


def _structure(Gi: int, qi: int, m: int, q: int) -> tuple[str, int]:
    """``(kind, q)`` from the packed header's sizes: inner levels ``Gi`` (``qi`` columns),
    sampled effects ``m``, the marginalised block's columns ``q``."""
    if Gi > 0:  # inner levels of a nested factor
        return "nested", qi
    if m > 0:  # sampled (crossed) effects
        return "crossed", 1
    return "single", q


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
    sd_t, corr_t, chol_t, k = [], [], [], p + 1
    for qt, correlated in packed.terms:
        sd = np.exp(z[:, k:k + qt])
        nc = n_corr(qt) if correlated else 0
        W = (cpc_factor(z[:, k + qt:k + qt + nc], qt) if correlated
             else np.broadcast_to(np.eye(qt), (z.shape[0], qt, qt)))
        sd_t.append(sd)
        corr_t.append(W @ np.swapaxes(W, 1, 2) if correlated else W.copy())
        chol_t.append(sd[:, :, None] * W)
        k += qt + nc
    b_t = {}
    for st in packed.sampled:  # build order: a nesting parent comes before its children
        v = z[:, st.x_at:st.x_at + st.levels * st.q].reshape(z.shape[0], st.levels, st.q)
        if not st.centered:  # b_g = L z_g
            b_t[st.term] = np.einsum("sij,sgj->sgi", chol_t[st.term], v)
            continue
        sh = np.zeros_like(v)  # b = m − shift
        for i in range(st.q):
            if st.fixed[i] >= 0:
                sh[:, :, i] += beta[:, st.fixed[i]][:, None]
            if st.parent >= 0 and st.pcols[i] >= 0:
                sh[:, :, i] += b_t[st.parent][:, st.pmap, st.pcols[i]]
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
            corr[:, np.arange(o, o + qk), np.arange(o, o + qk)] = 1.0
            o += qk
        fo = {"sd": np.concatenate([sd_t[k] for k in ks], axis=1), "corr": corr}
        if all(k in b_t for k in ks):
            fo["b"] = np.concatenate([b_t[k] for k in ks], axis=2)  # (S, levels, q_f)
        out["factors"][f] = fo
    return out
