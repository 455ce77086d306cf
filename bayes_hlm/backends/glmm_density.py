"""The full log posterior of a generalized mixed model as one cached Numba function.

The same posterior as :func:`~bayes_hlm.backends.full.build_full_model` (Bambi 0.21's
priors from the model's :class:`~bayes_hlm.spec.priors.PriorSet`; the likelihood of each
row from :mod:`.glmm_kernels`), in other coordinates, with its gradient, compiled once
per machine and handed to nutpie as a C callback (:mod:`.glmm_nuts`). One gradient is
one pass over the rows (or compressed cells, :mod:`.compression`) plus one over the
groups.

Parameters (unconstrained, in this order)::

    raw fixed effects (p)      β = raw, intercept shifted as Bambi's centred predictors
    log φ                      the family parameter (NB / Gamma alpha), when it has one
    per group term: log SD (q_t), then for a correlated term the q_t(q_t − 1)/2
    partial correlations z = atanh(c) (LKJ as :mod:`.numba_density`)
    per group term, in build order (coarse factors first): its effects, level-major
    (levels × q_t): non-centred z (b_g = L z_g) or centred m (b_g = m_g − shift_g)

Centred factors are centred hierarchically as :mod:`.group_effects` does (shift = the
term's fixed effect plus the effect of a centred factor it is nested in), chosen per
factor by :func:`~bayes_hlm.backends.parametrization.choose_centering` as the PyMC full
model is. Models outside the covered case get a reason from :func:`unsupported_reason`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np

from ..spec.design import Design
from ..statistics.fast_math import FASTMATH
from ..spec.priors import PriorSet, corr_key, intercept_shift
from . import glmm_kernels as gk
from .numba_density import _log_positive, _positive_code, _scale, fixed_prior, priors_unsupported
from .numba_density import sd_prior_entries
from .numba_density import cpc_backward, cpc_corr, lkj_cpc, n_corr

_HEAD = 32   # header entries
_TERM = 15   # fixed entries of a term's block (then 5 per coordinate)
_CHUNK = 512  # rows per likelihood pass in the gradient


# --------------------------------------------------------------------------- #
# which models qualify
# --------------------------------------------------------------------------- #
def unsupported_reason(design: Design, ps: PriorSet, family) -> str | None:
    """``None`` when the compiled GLMM density covers this model, else why not."""
    if family is None:
        return "the Gaussian family (the collapsed engines fit it)"
    try:
        code = gk.kernel_code(family)
    except Exception as exc:  # noqa: BLE001 - the message says which family/link
        return str(exc)
    if not design.groups:
        return "no grouping factor"
    if gk.has_param(code):
        name = family.param_names[0]
        if _positive_code(ps.priors[name]) is None:
            return f"prior {ps.priors[name]} on {name}"
    return priors_unsupported(design, ps)


# --------------------------------------------------------------------------- #
# the rows the likelihood reads
# --------------------------------------------------------------------------- #
@dataclass
class Rows:
    """The likelihood's data: one entry per row, or per compressed cell.

    ``y`` successes/counts/values, ``n`` trials (1 where unused), ``w`` weights
    (frequency weight of a merged cell times any user weight), ``offset``, ``X`` (N, p),
    per group term ``codes`` (N,) and ``Z`` (N, q_t).
    """

    y: np.ndarray
    n: np.ndarray
    w: np.ndarray
    offset: np.ndarray
    X: np.ndarray
    codes: list
    Z: list

    @property
    def N(self) -> int:
        return int(self.y.shape[0])


def design_rows(design: Design) -> Rows:
    """The design's rows as the likelihood reads them (trials 1 and offset 0 when absent)."""
    N = design.n
    w = getattr(design, "weights", None)
    return Rows(y=np.asarray(design.y, dtype=float),
                n=np.ones(N) if design.trials is None else np.asarray(design.trials, dtype=float),
                w=np.ones(N) if w is None else np.asarray(w, dtype=float),
                offset=np.zeros(N) if design.offset is None else np.asarray(design.offset, float),
                X=np.asarray(design.X, dtype=float),
                codes=[np.asarray(g.codes, dtype=np.int64) for g in design.groups],
                Z=[np.asarray(g.Z, dtype=float) for g in design.groups])


# --------------------------------------------------------------------------- #
# packing the model into one buffer
# --------------------------------------------------------------------------- #
@dataclass
class TermLayout:
    """Where GroupTerm ``term``'s parameters sit in ``x``."""

    term: int
    q: int
    correlated: bool
    levels: int
    sd_x: int
    z_x: int
    eff_x: int
    centered: bool
    fixed_cols: list  # per coordinate: fixed-effect column it is centred on (-1 none)
    parent: int       # design.groups index of the centring parent (-1 none)
    parent_cols: list  # per coordinate: the parent's coordinate (-1 none)
    pmap: np.ndarray | None
    #: centred intercept's level-2 predictors: coordinate, fixed columns, per-level values
    l2: tuple | None = None
    #: 0; 1: integrated out (no parameters, :func:`integrated_parents`); 2: the centred
    #: child whose parent (``parent``) is integrated out
    collapse: int = 0
    #: a q = 1 term centred level by level: True where the level is centred, else
    #: non-centred (``b = sd z``); None: every level as ``centered`` says
    level_centred: np.ndarray | None = None



@dataclass
class GlmmPacked:
    """The buffer and how to read the parameter vector back."""

    buf: np.ndarray
    ndim: int
    p: int
    phi_x: int            # index of log φ in x (-1: none)
    phi_name: str | None
    terms: list            # TermLayout per GroupTerm, in design order
    init: np.ndarray
    i_int: int
    centered: dict = field(default_factory=dict)


def integrated_parents(design: Design, centered: dict[str, bool]) -> dict[int, int]:
    """Centred child term -> its non-centred parent term, for the parents :func:`pack`
    integrates out (``integrate=True``).

    A random intercept ``b_P`` (q = 1) whose only centred child term is a random intercept
    ``m_g ~ N(shift_g + b_P[parent(g)], sd_g^2)`` enters the likelihood only through that
    child: the row's ``b_P + (m_g - shift_g - b_P)`` cancels it. So it integrates out in
    closed form: per parent level the children's ``c_g = m_g - shift_g`` are jointly
    ``N(0, sd_g^2 I + sd_P^2 J)``, and ``b_P`` is drawn afterwards from its Gaussian
    conditional (:func:`constrained`). The posterior is the same; NUTS no longer sees the
    parent's effects, whose non-centred ``sd_P z_P`` coupled ``sd_P`` to the child's SD along
    a ridge (grouseticks' locations over broods, 35 of 63 locations with one brood: min ESS
    of ``sd(LOCATION)`` 250-370 -> ~800 at 4 x 1000 draws). A term centred on the child is
    centred on its ``c_g`` (the parent's effect included), so the parent cancels from its rows
    too. ``centered`` may also name factors centred level by level (``pack``'s
    ``level_centred``): pass them as centred.
    """
    from .group_effects import build_order, nesting_parent

    order = build_order(design, list(range(len(design.groups))))
    parent_of: dict[int, int] = {}
    for i, k in enumerate(order):
        g = design.groups[k]
        if not centered.get(g.factor, False):
            continue
        found = nesting_parent(design, k, order[:i])
        if found is not None and set(g.terms) & set(design.groups[found[0]].terms):
            parent_of[k] = found[0]
    out = {}
    for k, j in parent_of.items():
        g, h = design.groups[k], design.groups[j]
        if (list(g.terms) == ["Intercept"] and list(h.terms) == ["Intercept"]
                and not centered.get(h.factor, False)
                and [c for c, pj in parent_of.items() if pj == j] == [k]):
            out[k] = j
    return out


def pack(design: Design, ps: PriorSet, family, centered: dict[str, bool],
         rows: Rows | None = None, integrate: bool = False,
         level_centred: dict[str, np.ndarray] | None = None) -> GlmmPacked:
    """Lay out priors, structure and rows for :func:`logp_grad`.

    ``integrate``: integrate out the parents :func:`integrated_parents` finds (the fit's
    default, :mod:`.glmm_nuts`); ``False`` keeps every effect a parameter.
    ``level_centred``: factor (a q = 1 random intercept) -> per level, centred (True) or
    non-centred (:func:`~bayes_hlm.backends.parametrization.level_centering`); overrides
    ``centered`` for that factor.
    """
    from .group_effects import build_order, level2_shift, nesting_parent

    rows = design_rows(design) if rows is None else rows
    code = gk.kernel_code(family)
    p, N = design.p, rows.N
    names = design.fixed_names
    i_int = names.index("Intercept") if ps.centered else -1
    mu = np.array([float(ps.priors[n].params["mu"]) for n in names])
    sd = np.array([float(ps.priors[n].params["sigma"]) for n in names])
    init = list(mu)
    phi_x, phi_name, phi_prior = -1, None, (0, 0.0, 0.0)
    if gk.has_param(code):
        phi_name = family.param_names[0]
        phi_x = len(init)
        phi_prior = _positive_code(ps.priors[phi_name])
        init.append(np.log(_scale(ps.priors[phi_name])))
    # SDs and correlations, design order
    sd_x, z_x = [], []
    for g in design.groups:
        sd_x.append(len(init))
        init += sd_prior_entries(g, ps)[1]
        z_x.append(len(init))
        if g.correlated and g.q > 1:
            init += [0.0] * n_corr(g.q)
    beta0 = mu.copy()
    if i_int >= 0:
        beta0[i_int] -= intercept_shift(mu, ps.x_mean, i_int)
    # effects, build order (coarse first: a centring parent precedes its children)
    order = build_order(design, list(range(len(design.groups))))
    level_centred = {f: np.asarray(v, bool) for f, v in (level_centred or {}).items()}
    for k, g in enumerate(design.groups):
        if g.factor in level_centred and (g.q != 1 or len(level_centred[g.factor]) != g.n_levels):
            raise ValueError(f"level_centred[{g.factor!r}]: a q = 1 term, one flag per level")
    collapsed = (integrated_parents(design, {**centered, **{f: True for f in level_centred}})
                 if integrate else {})
    layouts: dict[int, TermLayout] = {}
    done: list[int] = []
    for k in order:
        g = design.groups[k]
        lc = level_centred.get(g.factor)
        cent = bool(centered.get(g.factor, False)) if lc is None else True
        if k in collapsed.values():  # integrated out: no parameters
            layouts[k] = TermLayout(k, g.q, False, g.n_levels, sd_x[k], z_x[k], len(init), False,
                                    [-1], -1, [-1], None, None, collapse=1)
            done.append(k)
            continue
        fcols = [names.index(t) if cent and t in names else -1 for t in g.terms]
        par, pcols, pmap = -1, [-1] * g.q, None
        if cent:
            # the parent may be non-centred: its b is computed first either way (build order)
            found = nesting_parent(design, k, done)
            if found is not None:
                pterms = list(design.groups[found[0]].terms)
                pcols = [pterms.index(t) if t in pterms else -1 for t in g.terms]
                if any(c >= 0 for c in pcols):
                    par, pmap = found[0], np.asarray(found[1], dtype=np.int64)
                else:
                    pcols = [-1] * g.q
        l2 = level2_shift(design, k) if cent else None
        layouts[k] = TermLayout(k, g.q, bool(g.correlated and g.q > 1), g.n_levels, sd_x[k],
                                z_x[k], len(init), cent, fcols, par, pcols, pmap, l2,
                                collapse=2 if k in collapsed else 0, level_centred=lc)
        init += list(_start(layouts[k], beta0).ravel())
        done.append(k)
    if _split_intercept(design, layouts, order):
        for k in order:
            lt = layouts[k]
            if lt.centered and lt.collapse != 1:
                init[lt.eff_x:lt.eff_x + lt.levels * lt.q] = list(_start(lt, beta0).ravel())
    # rows sorted by the levels of the term with most levels (the "primary" term): a
    # gradient then reads that term's effects once per run of rows of one level (a segment)
    # and sums its gradient in registers, instead of one gather and one scatter per row
    kp = max((k for k in order if layouts[k].collapse != 1),
             key=lambda k: (design.groups[k].n_levels, -order.index(k)))
    fold = _fold_plan(rows, design, layouts, order, kp)
    rows = _sorted_rows(rows, rows.codes[kp], None if fold is None else rows.codes[fold[0]])
    # the buffer: header, term blocks (build order), then arrays
    blocks, arrays = [], []
    at = _HEAD

    def place(a):
        nonlocal at
        a = np.ascontiguousarray(a, dtype=np.float64).ravel()
        arrays.append(a)
        where = at
        at += a.size
        return where

    T = len(order)
    term_block_len = sum(_TERM + 5 * layouts[k].q for k in order)
    at += term_block_len
    term_at_pos = {}
    pos = _HEAD
    for k in order:
        term_at_pos[k] = pos
        pos += _TERM + 5 * layouts[k].q
    for k in order:
        lt, g = layouts[k], design.groups[k]
        eta = float(ps.priors[corr_key(g.factor)].params.get("eta", 1.0)) if lt.correlated else 1.0
        codes_at = place(rows.codes[k])  # small integers, exact in float64
        Z_at = place(rows.Z[k])
        pmap_at = place(lt.pmap) if lt.pmap is not None else -1
        par_pos = term_at_pos[lt.parent] if lt.parent >= 0 else -1
        l2_at = (place(np.concatenate([[lt.l2[0], len(lt.l2[1])], lt.l2[1], lt.l2[2].ravel()]))
                 if lt.l2 is not None else 0)  # 0: none (the header is never a table)
        lc_at = place(lt.level_centred.astype(float)) if lt.level_centred is not None else 0
        blk = [lt.q, float(lt.correlated), eta, lt.levels, lt.sd_x, lt.z_x, lt.eff_x,
               float(lt.centered), par_pos, pmap_at, codes_at, Z_at, l2_at, lt.collapse, lc_at]
        for i, c in enumerate(sd_prior_entries(g, ps)[0]):
            blk += list(c)
            blk += [lt.fixed_cols[i], lt.parent_cols[i]]
        blocks.append(np.asarray(blk, dtype=float))
    segs, chunks = _segments(rows.codes[kp], _CHUNK)
    # the fixed part of eta: from a table of distinct (X row, offset) pairs when there are
    # few (categorical predictors, the common GLMM design: one index per row instead of p
    # coefficients), else per row, its columns merged with the primary term's (below)
    from .compression import row_table

    xi, first = row_table(rows)
    dense = len(first) > N // 4 and fold is None
    cols, xslot, zslot = _merged_columns(rows.X if dense else None, rows.Z[kp])
    D = 0 if dense or fold is not None else len(first)
    X_at = place(rows.X[first]) if not dense else 0
    y_at, n_at, w_at = place(rows.y), place(rows.n), place(rows.w)
    off_at = place(rows.offset[first]) if not dense else 0
    xi_at = place(xi) if not dense else 0
    offr_at = (place(rows.offset) if (dense or fold is not None) and np.any(rows.offset != 0.0)
               else -1)
    fold_at = 0
    if fold is not None:
        ks, colsP, colsS = fold
        XP = _per_level(rows.X[:, colsP], rows.codes[kp], design.groups[kp].n_levels)
        XS = _per_level(rows.X[:, colsS], rows.codes[ks], design.groups[ks].n_levels)
        GS = design.groups[ks].n_levels
        grid = _grid_chunks(segs, chunks, rows.codes[ks], GS) if not cols else np.zeros(len(chunks))
        fold_at = place(np.concatenate([[order.index(ks), len(colsP), len(colsS)], colsP, colsS,
                                        XP.ravel(), XS.ravel(), grid]))
    mu_at, sd_at, xm_at = place(mu), place(sd), place(np.asarray(ps.x_mean, dtype=float)
                                                      if ps.centered else np.zeros(p))
    seg_at, ch_at = place(segs), place(chunks)
    M_at = place(np.stack(cols)) if cols else 0  # column-major: one column after another
    map_at = place(np.concatenate([xslot, zslot]).astype(float))
    head = [0.0, N, p, T, code, i_int, phi_x, *phi_prior, len(init), X_at, y_at, n_at, w_at,
            off_at, mu_at, sd_at, xm_at, max((layouts[k].q for k in order), default=1),
            D, xi_at if fold is None else fold_at, order.index(kp), len(chunks), ch_at, seg_at, len(cols), M_at, map_at,
            float(dense), offr_at,
            float(code == 0 and np.all(rows.n == 1.0) and np.all(rows.w == 1.0))]
    head = head + [0.0] * (_HEAD - len(head))
    assert len(head) == _HEAD
    buf = np.concatenate([np.asarray(head, dtype=float), *blocks, *arrays])
    buf[0] = buf.size
    buf = np.ascontiguousarray(buf, dtype=np.float64)
    terms = [layouts[k] for k in range(len(design.groups))]
    cent_used = {design.groups[k].factor: layouts[k].centered for k in order}
    return GlmmPacked(buf=buf, ndim=len(init), p=p, phi_x=phi_x, phi_name=phi_name,
                      terms=terms, init=np.asarray(init), i_int=i_int, centered=cent_used)


def _start(lt: TermLayout, beta0: np.ndarray) -> np.ndarray:
    """A term's effects at the prior's centre (levels, q): a centred level at its shift."""
    start = np.tile([beta0[c] if c >= 0 else 0.0 for c in lt.fixed_cols], (lt.levels, 1))
    if lt.l2 is not None:
        start[:, lt.l2[0]] += lt.l2[2] @ beta0[lt.l2[1]]
    if lt.level_centred is not None:
        start[~lt.level_centred] = 0.0
    return start


def _split_intercept(design: Design, layouts: dict, order: list) -> bool:
    """Crossed centred random intercepts: only one (the *owner*) is centred on the fixed
    intercept; rewrites the layouts in place, True when it did.

    Two crossed factors both centred on the intercept (and each on its level-2 predictors,
    :func:`~bayes_hlm.backends.group_effects.level2_shift`) leave ``-β0`` in every row's
    ``η = m_id + m_item − β0``, and each shift's intercept carries the other factor's
    level-2 coefficients (``β0 = raw0 − Σ x̄_j β_j``): the fixed effects trade off against the
    means of both factors' effects (verbagg: R-hat 1.18, min ESS 17). Here the owner (the
    factor with fewest levels) keeps the intercept and its own level-2 predictors and is
    also centred on ``x̄_j β_j`` for the others' level-2 columns; every other such factor is
    centred on ``(x_gj − x̄_j) β_j`` over its own level-2 columns, ``x̄_j`` the mean over its
    levels (so its shifts sum to zero). Then ``η = m_owner + Σ m_other + (the row-level
    predictors)``: the fixed intercept and the level-2 coefficients leave the likelihood.
    Any shift is a unit-Jacobian change of variables: the posterior is the same.
    """
    cand = [k for k in order if layouts[k].centered and layouts[k].collapse == 0
            and layouts[k].parent < 0 and layouts[k].level_centred is None
            and "Intercept" in design.groups[k].terms
            and layouts[k].fixed_cols[design.groups[k].terms.index("Intercept")] >= 0]
    if len(cand) < 2:
        return False
    owner = min(cand, key=lambda k: (design.groups[k].n_levels, order.index(k)))
    own = layouts[owner].l2
    own_cols = set() if own is None else set(int(c) for c in own[1])
    extra_cols, extra_vals = [], []
    for k in cand:
        if k == owner:
            continue
        lt, g = layouts[k], design.groups[k]
        ii = g.terms.index("Intercept")
        lt.fixed_cols = [-1 if i == ii else c for i, c in enumerate(lt.fixed_cols)]
        if lt.l2 is None:
            continue
        keep = [j for j, c in enumerate(lt.l2[1]) if int(c) not in own_cols | set(extra_cols)]
        if not keep:
            lt.l2 = None
            continue
        cols, vals = lt.l2[1][keep], lt.l2[2][:, keep]
        xbar = vals.mean(axis=0)
        lt.l2 = (lt.l2[0], cols, vals - xbar[None, :])
        extra_cols += [int(c) for c in cols]
        extra_vals += list(xbar)
    if extra_cols:
        lt, g = layouts[owner], design.groups[owner]
        G = lt.levels
        add = np.tile(np.asarray(extra_vals, float), (G, 1))
        if lt.l2 is None:
            lt.l2 = (g.terms.index("Intercept"), np.asarray(extra_cols, dtype=np.int64), add)
        else:
            lt.l2 = (lt.l2[0], np.concatenate([lt.l2[1], np.asarray(extra_cols, dtype=np.int64)]),
                     np.concatenate([lt.l2[2], add], axis=1))
    return True


def _fold_plan(rows: Rows, design: Design, layouts: dict, order: list, kp: int):
    """``(secondary term, columns P, columns S)`` when every fixed column is constant within
    the primary term's levels (P, the intercept among them) or within one other term's (S):
    a random intercept (q = 1, Z = 1) that is neither integrated out nor the primary. Then a
    row's ``X β`` is the primary level's ``X_P β_P`` (added once per segment) plus the
    secondary level's ``X_S β_S`` (added to its effect once per gradient): no per-row fixed
    part (verbagg: the person's Anger and Gender, the item's type and situation). ``None``
    when the fixed part is not of that form. Constant means exactly equal (the folded values
    are the level's own), checked in O(rows x columns) vectorised passes."""
    p = rows.X.shape[1]
    cand = [k for k in order if k != kp and layouts[k].collapse != 1
            and design.groups[k].q == 1]
    if p == 0 or rows.N == 0 or not cand:
        return None
    inP = _constant(rows.X, rows.codes[kp], design.groups[kp].n_levels)
    rest = np.flatnonzero(~inP)
    for k in cand:
        if not np.all(rows.Z[k] == 1.0):
            continue
        if rest.size and not _constant(rows.X[:, rest], rows.codes[k],
                                       design.groups[k].n_levels).all():
            continue
        return (k, np.flatnonzero(inP).astype(np.int64), rest.astype(np.int64))
    return None


def _constant(X: np.ndarray, codes: np.ndarray, L: int) -> np.ndarray:
    """Per column of ``X``: True where every row equals its level's (last) row exactly."""
    ref = np.zeros((L, X.shape[1]))
    ref[codes] = X
    return np.all(X == ref[codes], axis=0)


def _grid_chunks(segs: np.ndarray, chunks: np.ndarray, codes: np.ndarray, L: int) -> np.ndarray:
    """Per chunk 1.0 when each of its segments is one row per secondary level in order
    (``0, 1, ..., L - 1``: a complete person x item grid), else 0.0. Such a chunk reads and
    writes the secondary effects as one contiguous run per segment (vectorised), not by code."""
    out = np.zeros(chunks.shape[0])
    full = np.arange(L)
    ok = np.array([m == L and np.array_equal(codes[a:a + m], full)
                   for a, m, _ in segs.astype(np.int64)], dtype=bool)
    for i, (f, c) in enumerate(chunks.astype(np.int64)):
        out[i] = float(ok[f:f + c].all())
    return out


def _per_level(X: np.ndarray, codes: np.ndarray, L: int) -> np.ndarray:
    """(L, columns): each level's value of columns constant within levels (0: no rows)."""
    out = np.zeros((L, X.shape[1]))
    out[codes] = X
    return out


def _sorted_rows(rows: Rows, codes: np.ndarray, then: np.ndarray | None = None) -> Rows:
    """``rows`` ordered by ``codes`` (stable; ties by ``then``): the likelihood is a sum over
    rows, so the order is free; only the packed buffer holds it (pointwise log likelihoods
    stay per original row)."""
    perm = np.argsort(codes, kind="stable") if then is None else np.lexsort((then, codes))
    if np.all(perm[1:] > perm[:-1]):
        return rows
    return Rows(y=rows.y[perm], n=rows.n[perm], w=rows.w[perm], offset=rows.offset[perm],
                X=rows.X[perm], codes=[c[perm] for c in rows.codes], Z=[Z[perm] for Z in rows.Z])


def _segments(codes: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Runs of equal ``codes`` (sorted) cut to at most ``chunk`` rows: ``segs`` (S, 3) =
    (first row, rows, level); ``chunks`` (C, 2) = (first segment, segments), each chunk whole
    segments of at most ``chunk`` rows together (one likelihood pass each)."""
    N = codes.shape[0]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]) if N else np.zeros(0, int)
    ends = np.r_[starts[1:], N]
    seg = []
    for a, e in zip(starts.tolist(), ends.tolist()):
        for s in range(a, e, chunk):
            seg.append((s, min(chunk, e - s), int(codes[a])))
    chunks, first, filled = [], 0, 0
    for i, (_, m, _) in enumerate(seg):
        if filled + m > chunk:
            chunks.append((first, i - first))
            first, filled = i, 0
        filled += m
    if seg:
        chunks.append((first, len(seg) - first))
    return (np.asarray(seg, dtype=float).reshape(-1, 3), np.asarray(chunks, dtype=float).reshape(-1, 2))


def _merged_columns(X: np.ndarray | None, Z: np.ndarray) -> tuple[list, list, list]:
    """The distinct columns of ``[X | Z]`` (``X`` None: of ``Z``) and where each column of X
    and Z went: a row's ``X·β + Z·b`` is then ``Σ_u c_u M_u`` with ``c_u`` the sum of the
    coefficients mapped to ``u``, one multiply-add per distinct column (``y ~ x + (x | g)``:
    one). A column of ones goes to slot ``len(cols)`` and is not stored."""
    cols: list[np.ndarray] = []
    ones: list[int] = []

    def slot(c):
        if np.all(c == 1.0):
            ones.append(1)
            return -1
        for u, d in enumerate(cols):
            if np.array_equal(c, d):
                return u
        cols.append(np.ascontiguousarray(c, dtype=float))
        return len(cols) - 1

    xs = [slot(X[:, j]) for j in range(X.shape[1])] if X is not None else []
    zs = [slot(Z[:, i]) for i in range(Z.shape[1])]
    r = len(cols)
    return cols, [r if u == -1 else u for u in xs], [r if u == -1 else u for u in zs]


# --------------------------------------------------------------------------- #
# the density
# --------------------------------------------------------------------------- #
@numba.njit(cache=True, nogil=True, error_model="numpy")
def _chol_of(x, buf, tb, q, corr, L, grad):
    """Prior of a term's SDs and correlations; writes ``L = diag(sd) W``; returns log p."""
    lp = 0.0
    sdx, zx = int(buf[tb + 4]), int(buf[tb + 5])
    for i in range(q):
        o = tb + _TERM + 5 * i
        l_i, d_i = _log_positive(int(buf[o]), buf[o + 1], buf[o + 2], x[sdx + i])
        lp += l_i
        grad[sdx + i] += d_i
    for i in range(q):
        for j in range(q):
            L[i, j] = 0.0
    if corr:
        nc = n_corr(q)
        W = np.empty((q, q))
        gz = np.zeros(nc)
        lp += lkj_cpc(x[zx:zx + nc], buf[tb + 2], W, gz)
        for t in range(nc):
            grad[zx + t] += gz[t]
        for i in range(q):
            s = np.exp(x[sdx + i])
            for j in range(i + 1):
                L[i, j] = s * W[i, j]
    else:
        for i in range(q):
            L[i, i] = np.exp(x[sdx + i])
    return lp


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _term_eta(buf, q, ca, za, ex, b, eta, m):
    """``eta[k] += Z_k · b[level_k]`` for ``m`` rows of one term (codes at ``buf[ca:]``,
    Z at ``buf[za:]``); q = 1 and 2 spelled out (the loop over q costs more than the row).
    Over slices from 0 (a computed index into ``buf`` keeps LLVM from vectorising)."""
    cs = buf[ca:ca + m]
    Z = buf[za:za + q * m]
    if q == 1:
        for k in range(m):
            eta[k] += Z[k] * b[ex + int(cs[k])]
    elif q == 2:
        for k in range(m):
            o = ex + 2 * int(cs[k])
            eta[k] += Z[2 * k] * b[o] + Z[2 * k + 1] * b[o + 1]
    else:
        for k in range(m):
            o = ex + q * int(cs[k])
            s = 0.0
            for i in range(q):
                s += Z[q * k + i] * b[o + i]
            eta[k] += s


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _term_scatter(buf, q, ca, za, ex, gb, d, m):
    """``gb[level_k] += Z_k d_k`` for ``m`` rows of one term (the transpose of :func:`_term_eta`)."""
    cs = buf[ca:ca + m]
    Z = buf[za:za + q * m]
    if q == 1:
        for k in range(m):
            gb[ex + int(cs[k])] += Z[k] * d[k]
    elif q == 2:
        for k in range(m):
            o = ex + 2 * int(cs[k])
            gb[o] += Z[2 * k] * d[k]
            gb[o + 1] += Z[2 * k + 1] * d[k]
    else:
        for k in range(m):
            o = ex + q * int(cs[k])
            for i in range(q):
                gb[o + i] += Z[q * k + i] * d[k]


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def _segment_eta(buf, at, N, r, coef, eta, a0, ln):
    """``eta[k] = coef[r] + Σ_u coef[u] M_u[k]`` for the segment's rows ``a0 ≤ k < a0 + ln``
    (column ``u`` of M at ``buf[at + u N:]``, offset to the chunk). Loops over slices from 0:
    indexing ``buf`` with a computed index keeps LLVM from vectorising (4x slower)."""
    e = eta[a0:a0 + ln]
    c1 = coef[r]
    for k in range(ln):
        e[k] = c1
    for u in range(r):
        cu = coef[u]
        col = buf[at + u * N + a0:at + u * N + a0 + ln]
        for k in range(ln):
            e[k] += cu * col[k]


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def _segment_sums(buf, at, N, r, d, a0, ln, acc):
    """The transpose of :func:`_segment_eta`: ``acc[u] = Σ_k M_u[k] d[k]``, ``acc[r] = Σ_k d[k]``
    (reassociated: vectorised)."""
    dd = d[a0:a0 + ln]
    tot = 0.0
    for k in range(ln):
        tot += dd[k]
    acc[r] = tot
    for u in range(r):
        col = buf[at + u * N + a0:at + u * N + a0 + ln]
        tot = 0.0
        for k in range(ln):
            tot += col[k] * dd[k]
        acc[u] = tot


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _secondary_eta(buf, ca, v, eta, m):
    """``eta[k] += v[level_k]`` for ``m`` rows of the folded secondary term (codes at ``buf[ca:]``)."""
    cs = buf[ca:ca + m]
    for k in range(m):
        eta[k] += v[int(cs[k])]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _secondary_scatter(buf, ca, gv, d, m):
    """The transpose of :func:`_secondary_eta`: ``gv[level_k] += d[k]``."""
    cs = buf[ca:ca + m]
    for k in range(m):
        gv[int(cs[k])] += d[k]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _integrated_prior(x, buf, tb, par, b, ex, G, vB, grad, gb, backward):
    """Log density of a centred random intercept's ``c_g = b[ex + g]`` with its parent's
    effect integrated out (:func:`integrated_parents`): per parent level ``l`` with ``n``
    children, ``c_l ~ N(0, vB I + vP J)``, i.e. ``-(1/2)[(n-1) log vB + log(vB + n vP)
    + (Q - vP S^2 / (vB + n vP)) / vB]`` with ``S = sum c``, ``Q = sum c^2``. Forward: the
    value, and the gradient in both log SDs into ``grad``. ``backward``: adds
    ``d/dc_g = -(c_g - vP S / (vB + n vP)) / vB`` to ``gb[ex + g]``."""
    GP, pm_at = int(buf[par + 3]), int(buf[tb + 9])
    psd = int(buf[par + 4])
    vP = np.exp(2.0 * x[psd])
    S = np.zeros(GP)
    Q = np.zeros(GP)
    n = np.zeros(GP)
    for g in range(G):
        pg = int(buf[pm_at + g])
        c = b[ex + g]
        S[pg] += c
        Q[pg] += c * c
        n[pg] += 1.0
    if backward:
        for g in range(G):
            pg = int(buf[pm_at + g])
            gb[ex + g] -= (b[ex + g] - vP * S[pg] / (vB + n[pg] * vP)) / vB
        return 0.0
    lp, dvB, dvP = 0.0, 0.0, 0.0
    lvB = np.log(vB)
    for pg in range(GP):
        den = vB + n[pg] * vP
        r = vP * S[pg] * S[pg] / den
        lp -= 0.5 * ((n[pg] - 1.0) * lvB + np.log(den) + (Q[pg] - r) / vB)
        dvB -= 0.5 * ((n[pg] - 1.0) / vB + 1.0 / den + r / (den * vB) - (Q[pg] - r) / (vB * vB))
        dvP -= 0.5 * (n[pg] / den - S[pg] * S[pg] / (den * den))
    grad[int(buf[tb + 4])] += 2.0 * vB * dvB  # d/d log sd = 2 v d/dv
    grad[psd] += 2.0 * vP * dvP
    return lp


@numba.njit(cache=True, nogil=True, error_model="numpy")
def prior_effects(x, buf, grad):
    """Priors and group effects at ``x`` (the part of :func:`logp_grad` before the rows):
    sets ``grad`` to the priors' gradient; returns ``(lp, beta, phi, d log p(φ), tpos, Ls, b,
    gb)`` (term block positions, Cholesky factors, effects in x's layout, a zero gradient
    buffer for them). Reads the term blocks only, not the rows: shared with the
    quadrature-collapsed crossed density (:mod:`.glmm_collapsed_crossed`), which has rows of
    its own."""
    p, T, i_int = int(buf[2]), int(buf[3]), int(buf[5])
    phi_x = int(buf[6])
    mu = buf[int(buf[16]):int(buf[16]) + p]
    sd = buf[int(buf[17]):int(buf[17]) + p]
    xm = buf[int(buf[18]):int(buf[18]) + p]
    qmax = int(buf[19])
    for i in range(grad.shape[0]):
        grad[i] = 0.0
    lp, beta = fixed_prior(x, p, mu, sd, xm, i_int, grad)
    # family parameter
    phi = 0.0
    d_phi_prior = 0.0
    if phi_x >= 0:
        phi = np.exp(x[phi_x])
        lp_phi, d_phi_prior = _log_positive(int(buf[7]), buf[8], buf[9], x[phi_x])
        lp += lp_phi
    # term blocks (build order), Cholesky factors and effects b (same layout as x)
    tpos = np.empty(T, dtype=np.int64)
    o = _HEAD
    for t in range(T):
        tpos[t] = o
        o += _TERM + 5 * int(buf[o])
    Ls = np.zeros((T, qmax, qmax))
    b = np.zeros(x.shape[0])
    gb = np.zeros(x.shape[0])
    for t in range(T):
        tb = tpos[t]
        q, corr, G, ex = int(buf[tb]), buf[tb + 1] > 0.5, int(buf[tb + 3]), int(buf[tb + 6])
        cent, par, col = buf[tb + 7] > 0.5, int(buf[tb + 8]), int(buf[tb + 13])
        L = Ls[t, :q, :q]
        lp += _chol_of(x, buf, tb, q, corr, L, grad)
        if col == 1:  # integrated out: only its SD's prior here (its child carries the rest)
            continue
        if not cent:  # b_g = L z_g, z ~ N(0, I)
            for g in range(G):
                for i in range(q):
                    s = 0.0
                    for j in range(i + 1):
                        s += L[i, j] * x[ex + g * q + j]
                    b[ex + g * q + i] = s
                    lp -= 0.5 * x[ex + g * q + i] ** 2
        else:  # m_g ~ N(shift_g, LLᵀ), b_g = m_g − shift_g
            pm_at = int(buf[tb + 9])
            pq = int(buf[par]) if par >= 0 else 0
            pex = int(buf[par + 6]) if par >= 0 else 0
            logdet = 0.0
            for i in range(q):
                logdet += np.log(L[i, i])
            v = np.empty(q)
            l2 = int(buf[tb + 12])
            l2c, l2n = (int(buf[l2]), int(buf[l2 + 1])) if l2 > 0 else (-1, 0)
            lc = int(buf[tb + 14])  # > 0: per-level flags (q = 1), 0: non-centred level
            Gc = G
            for g in range(G):
                if lc > 0 and buf[lc + g] < 0.5:  # this level non-centred: b = sd z
                    b[ex + g] = L[0, 0] * x[ex + g]
                    lp -= 0.5 * x[ex + g] ** 2
                    Gc -= 1
                    continue
                pg = int(buf[pm_at + g]) if par >= 0 else 0
                for i in range(q):
                    sh = 0.0
                    fc = int(buf[tb + _TERM + 5 * i + 3])
                    if fc >= 0:
                        sh += beta[fc]
                    if i == l2c:  # the level's level-2 predictors
                        for c in range(l2n):
                            sh += beta[int(buf[l2 + 2 + c])] * buf[l2 + 2 + l2n + g * l2n + c]
                    pc = int(buf[tb + _TERM + 5 * i + 4])
                    if par >= 0 and pc >= 0 and col != 2:
                        sh += b[pex + pg * pq + pc]
                    b[ex + g * q + i] = x[ex + g * q + i] - sh
                if col == 2:  # prior below, with the parent integrated out
                    continue
                for i in range(q):  # v = L⁻¹ b_g
                    s = b[ex + g * q + i]
                    for j in range(i):
                        s -= L[i, j] * v[j]
                    v[i] = s / L[i, i]
                    lp -= 0.5 * v[i] * v[i]
            if col == 2:
                lp += _integrated_prior(x, buf, tb, par, b, ex, G, L[0, 0] ** 2, grad, gb, False)
            else:
                lp -= Gc * logdet
    return lp, beta, phi, d_phi_prior, tpos, Ls, b, gb


@numba.njit(cache=True, nogil=True, error_model="numpy")
def effects_backward(x, buf, tpos, Ls, b, gb, gbeta, grad):
    """Adds to ``grad`` the likelihood's gradient given w.r.t. the effects (``gb``, x's
    layout) and the fixed effects (``gbeta``): back through the centring shifts, the
    Cholesky factors and Bambi's intercept shift (the part of :func:`logp_grad` after the rows)."""
    p, T, i_int = int(buf[2]), int(buf[3]), int(buf[5])
    xm = buf[int(buf[18]):int(buf[18]) + p]
    # back through the effects, children before their parents
    for t in range(T - 1, -1, -1):
        tb = tpos[t]
        q, corr, G, ex = int(buf[tb]), buf[tb + 1] > 0.5, int(buf[tb + 3]), int(buf[tb + 6])
        cent, par, col = buf[tb + 7] > 0.5, int(buf[tb + 8]), int(buf[tb + 13])
        if col == 1:  # no effects; its SD's gradient came from its prior and its child
            continue
        L = Ls[t, :q, :q]
        gL = np.zeros((q, q))
        if col == 2:  # -d prior / d c_g into gb (the likelihood's part is there already)
            _integrated_prior(x, buf, tb, par, b, ex, G, L[0, 0] ** 2, grad, gb, True)
        if not cent:
            for g in range(G):
                for i in range(q):
                    s = -x[ex + g * q + i]
                    for j in range(i, q):  # (Lᵀ gb_g)_i
                        s += L[j, i] * gb[ex + g * q + j]
                    grad[ex + g * q + i] = s
                for i in range(q):
                    for j in range(i + 1):
                        gL[i, j] += gb[ex + g * q + i] * x[ex + g * q + j]
        else:
            pm_at = int(buf[tb + 9])
            pq = int(buf[par]) if par >= 0 else 0
            pex = int(buf[par + 6]) if par >= 0 else 0
            v = np.empty(q)
            u = np.empty(q)
            l2 = int(buf[tb + 12])
            l2c, l2n = (int(buf[l2]), int(buf[l2 + 1])) if l2 > 0 else (-1, 0)
            qv = 0 if col == 2 else q  # col 2: the prior's gradient is in gb already
            for i in range(q):
                u[i] = 0.0
            lc = int(buf[tb + 14])
            Gc = G
            for g in range(G):
                if lc > 0 and buf[lc + g] < 0.5:  # non-centred level (q = 1)
                    grad[ex + g] = -x[ex + g] + L[0, 0] * gb[ex + g]
                    gL[0, 0] += gb[ex + g] * x[ex + g]
                    Gc -= 1
                    continue
                for i in range(qv):  # v = L⁻¹ b_g
                    s = b[ex + g * q + i]
                    for j in range(i):
                        s -= L[i, j] * v[j]
                    v[i] = s / L[i, i]
                for i in range(qv - 1, -1, -1):  # u = L⁻ᵀ v = Σ⁻¹ b_g
                    s = v[i]
                    for j in range(i + 1, q):
                        s -= L[j, i] * u[j]
                    u[i] = s / L[i, i]
                for i in range(qv):
                    for j in range(i + 1):
                        gL[i, j] += u[i] * v[j]
                pg = int(buf[pm_at + g]) if par >= 0 else 0
                for i in range(q):
                    db = gb[ex + g * q + i] - u[i]
                    grad[ex + g * q + i] = db
                    fc = int(buf[tb + _TERM + 5 * i + 3])
                    if fc >= 0:
                        gbeta[fc] -= db
                    if i == l2c:
                        for c in range(l2n):
                            gbeta[int(buf[l2 + 2 + c])] -= db * buf[l2 + 2 + l2n + g * l2n + c]
                    pc = int(buf[tb + _TERM + 5 * i + 4])
                    if par >= 0 and pc >= 0 and col != 2:
                        gb[pex + pg * pq + pc] -= db
            for i in range(qv):
                gL[i, i] -= Gc / L[i, i]
        # L = diag(sd) W: to log SDs and partial correlations
        sdx, zx = int(buf[tb + 4]), int(buf[tb + 5])
        for i in range(q):
            s = 0.0
            for j in range(i + 1):
                s += gL[i, j] * L[i, j]
            grad[sdx + i] += s
        if corr:
            gW = np.zeros((q, q))
            for i in range(q):
                sdi = np.exp(x[sdx + i])
                for j in range(i + 1):
                    gW[i, j] = gL[i, j] * sdi
            nc = n_corr(q)
            gz = np.zeros(nc)
            cpc_backward(x[zx:zx + nc], q, gW, gz)
            for k in range(nc):
                grad[zx + k] += gz[k]
    for j in range(p):
        grad[j] += gbeta[j]
        if i_int >= 0 and j != i_int:
            grad[j] -= xm[j] * gbeta[i_int]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def logp_grad(x, buf, grad):
    """Log posterior (up to a constant) at ``x``; writes its gradient to ``grad``."""
    N, p, T, code, i_int = int(buf[1]), int(buf[2]), int(buf[3]), int(buf[4]), int(buf[5])
    phi_x = int(buf[6])
    D = int(buf[20])  # distinct (X row, offset) pairs; row r uses pair xi[r] (0: X per row)
    X = buf[int(buf[11]):int(buf[11]) + D * p].reshape((D, p))
    xi = buf[int(buf[21]):int(buf[21]) + (N if D > 0 else 0)]
    y = buf[int(buf[12]):int(buf[12]) + N]
    nn = buf[int(buf[13]):int(buf[13]) + N]
    w = buf[int(buf[14]):int(buf[14]) + N]
    off = buf[int(buf[15]):int(buf[15]) + D]
    lp, beta, phi, d_phi_prior, tpos, Ls, b, gb = prior_effects(x, buf, grad)
    # likelihood over the rows
    gbeta = np.zeros(p)
    gphi = 0.0
    tq = np.empty(T, dtype=np.int64)
    tca = np.empty(T, dtype=np.int64)
    tza = np.empty(T, dtype=np.int64)
    tex = np.empty(T, dtype=np.int64)
    tcol = np.empty(T, dtype=np.int64)  # 1: integrated out, not in the rows (it cancels)
    for t in range(T):
        tq[t], tex[t] = int(buf[tpos[t]]), int(buf[tpos[t] + 6])
        tca[t], tza[t] = int(buf[tpos[t] + 10]), int(buf[tpos[t] + 11])
        tcol[t] = int(buf[tpos[t] + 13])
    ex0 = np.empty(D)
    gx = np.zeros(D)
    for d in range(D):
        s = off[d]
        for j in range(p):
            s += X[d, j] * beta[j]
        ex0[d] = s
    # the primary term (rows sorted by its levels) and the merged columns M (pack)
    tp = int(buf[22])
    n_ch, ch_at, seg_at = int(buf[23]), int(buf[24]), int(buf[25])
    r, M_at, map_at = int(buf[26]), int(buf[27]), int(buf[28])
    dense, offr_at, unit = buf[29] > 0.5, int(buf[30]), buf[31] > 0.5
    qp, exp_ = tq[tp], tex[tp]
    px = p if dense else 0
    slots = np.empty(px + qp, dtype=np.int64)
    for i in range(px + qp):
        slots[i] = int(buf[map_at + i])
    coef = np.empty(r + 1)
    acc = np.empty(r + 1)
    # folded fixed part (pack's _fold_plan): X_P β_P per primary level, added to the segment's
    # constant; X_S β_S per level of the secondary term ts, added to its effects (v)
    # (no table and not dense: folded; buf[21], the table's row index otherwise, says where)
    fold_at = int(buf[21]) if D == 0 and buf[29] < 0.5 else 0
    ts, nP, nS = -1, 0, 0
    if fold_at > 0:
        ts, nP, nS = int(buf[fold_at]), int(buf[fold_at + 1]), int(buf[fold_at + 2])
    GP = int(buf[tpos[tp] + 3])
    GS = int(buf[tpos[ts] + 3]) if ts >= 0 else 0
    cP = buf[fold_at + 3:fold_at + 3 + nP]
    cS = buf[fold_at + 3 + nP:fold_at + 3 + nP + nS]
    XP = buf[fold_at + 3 + nP + nS:fold_at + 3 + nP + nS + GP * nP].reshape((GP, nP)) if ts >= 0 \
        else buf[0:0].reshape((0, 0))
    xs0 = fold_at + 3 + nP + nS + GP * nP
    XS = buf[xs0:xs0 + GS * nS].reshape((GS, nS)) if ts >= 0 else buf[0:0].reshape((0, 0))
    grid_at = xs0 + GS * nS  # per chunk: a complete grid (pack's _grid_chunks)
    v = np.empty(GS)
    gv = np.zeros(GS)
    if ts >= 0:
        exs = tex[ts]
        for j in range(GS):
            sv = b[exs + j]
            for c in range(nS):
                sv += XS[j, c] * beta[int(cS[c])]
            v[j] = sv
        tcol[ts] = 1  # not gathered below: read from v
    # per chunk of whole segments (fits L1): eta (per segment: Σ_u c_u M_u; the other terms
    # gathered), one family pass (vectorised for logit and Poisson,
    # :func:`.glmm_kernels.loglik_sum`), then the gradient: per segment summed in registers
    eta_c = np.empty(_CHUNK)
    d_c = np.empty(_CHUNK)
    for ch in range(n_ch):
        s0, ns = int(buf[ch_at + 2 * ch]), int(buf[ch_at + 2 * ch + 1])
        c0 = int(buf[seg_at + 3 * s0])
        sl = seg_at + 3 * (s0 + ns - 1)
        m = int(buf[sl]) + int(buf[sl + 1]) - c0
        grid = ts >= 0 and buf[grid_at + ch] > 0.5  # then r = 0: eta = coef[0] + v
        for s in range(s0, s0 + ns):
            a0, ln, lev = int(buf[seg_at + 3 * s]) - c0, int(buf[seg_at + 3 * s + 1]), int(buf[seg_at + 3 * s + 2])
            for u in range(r + 1):
                coef[u] = 0.0
            for j in range(px):
                coef[slots[j]] += beta[j]
            for i in range(qp):
                coef[slots[px + i]] += b[exp_ + lev * qp + i]
            for c in range(nP):
                coef[r] += XP[lev, c] * beta[int(cP[c])]
            if grid:
                c1 = coef[r]
                for k in range(GS):
                    eta_c[a0 + k] = c1 + v[k]
            else:
                _segment_eta(buf, M_at + c0, N, r, coef, eta_c, a0, ln)
        if ts >= 0 and not grid:
            _secondary_eta(buf, tca[ts] + c0, v, eta_c, m)
        if offr_at >= 0:
            for k in range(m):
                eta_c[k] += buf[offr_at + c0 + k]
        for k in range(m if D > 0 else 0):
            eta_c[k] += ex0[int(xi[c0 + k])]
        for t in range(T):
            if t != tp and tcol[t] != 1:
                _term_eta(buf, tq[t], tca[t] + c0, tza[t] + tq[t] * c0, tex[t], b, eta_c, m)
        if unit:  # Bernoulli, logit, no weights
            ll, dp = gk.bernoulli_logit_sum(y[c0:c0 + m], eta_c[:m], d_c[:m]), 0.0
        else:
            ll, dp = gk.loglik_sum(code, y[c0:c0 + m], nn[c0:c0 + m], w[c0:c0 + m], eta_c[:m],
                                   phi, d_c[:m])
        lp += ll
        gphi += dp
        for k in range(m if D > 0 else 0):
            gx[int(xi[c0 + k])] += d_c[k]
        for s in range(s0, s0 + ns):
            a0, ln, lev = int(buf[seg_at + 3 * s]) - c0, int(buf[seg_at + 3 * s + 1]), int(buf[seg_at + 3 * s + 2])
            if grid:
                tot = 0.0
                for k in range(GS):
                    dk = d_c[a0 + k]
                    tot += dk
                    gv[k] += dk
                acc[r] = tot
            else:
                _segment_sums(buf, M_at + c0, N, r, d_c, a0, ln, acc)
            for j in range(px):
                gbeta[j] += acc[slots[j]]
            for i in range(qp):
                gb[exp_ + lev * qp + i] += acc[slots[px + i]]
            for c in range(nP):
                gbeta[int(cP[c])] += XP[lev, c] * acc[r]
        if ts >= 0 and not grid:
            _secondary_scatter(buf, tca[ts] + c0, gv, d_c, m)
        for t in range(T):
            if t != tp and tcol[t] != 1:
                _term_scatter(buf, tq[t], tca[t] + c0, tza[t] + tq[t] * c0, tex[t], gb, d_c, m)
    for d in range(D):
        for j in range(p):
            gbeta[j] += X[d, j] * gx[d]
    if ts >= 0:
        for j in range(GS):
            gb[tex[ts] + j] += gv[j]
            for c in range(nS):
                gbeta[int(cS[c])] += XS[j, c] * gv[j]
    effects_backward(x, buf, tpos, Ls, b, gb, gbeta, grad)
    if phi_x >= 0:
        grad[phi_x] = d_phi_prior + phi * gphi
    return lp


# --------------------------------------------------------------------------- #
# parameter vector -> posterior variables (vectorised over draws)
# --------------------------------------------------------------------------- #
def constrained(packed: GlmmPacked, ps: PriorSet, design: Design, z: np.ndarray,
                rng: np.random.Generator | None = None) -> dict:
    """Posterior variables from draws ``z`` (S, ndim): ``fixed`` (S, p), the family
    parameter (S,) under its name, and per factor ``sd`` (S, q_f), ``corr`` (S, q_f, q_f),
    ``b`` (S, levels, q_f).

    An integrated-out parent's effects (:func:`integrated_parents`) are drawn from their
    Gaussian conditional given the draw (``rng``, needed then), so every effect is a
    posterior draw."""
    p, S = packed.p, z.shape[0]
    raw = z[:, :p]
    beta = raw.copy()
    if packed.i_int >= 0:
        beta[:, packed.i_int] = raw[:, packed.i_int] - intercept_shift(raw, ps.x_mean, packed.i_int)
    out = {"fixed": beta, "factors": {}}
    if packed.phi_x >= 0:
        out[packed.phi_name] = np.exp(z[:, packed.phi_x])
    sd_t, corr_t, L_t, b_t = {}, {}, {}, {}
    for lt in packed.terms:
        sd = np.exp(z[:, lt.sd_x:lt.sd_x + lt.q])
        R = (cpc_corr(z[:, lt.z_x:lt.z_x + n_corr(lt.q)], lt.q) if lt.correlated
             else np.broadcast_to(np.eye(lt.q), (S, lt.q, lt.q)).copy())
        sd_t[lt.term], corr_t[lt.term] = sd, R
        W = np.linalg.cholesky(R) if lt.correlated else R
        L_t[lt.term] = sd[:, :, None] * W
    c_t = {}  # a child of an integrated parent: its c (what terms centred on it read)
    for lt in sorted(packed.terms, key=lambda t: (t.eff_x, -t.collapse)):  # build order
        if lt.collapse == 1:  # drawn with its child
            continue
        v = z[:, lt.eff_x:lt.eff_x + lt.levels * lt.q].reshape(S, lt.levels, lt.q)
        if not lt.centered:
            b_t[lt.term] = np.einsum("sij,sgj->sgi", L_t[lt.term], v)
            continue
        b = v.copy()  # b = m − shift, in place: one (S, levels, q) array, not three
        for i in range(lt.q):
            if lt.fixed_cols[i] >= 0:
                b[:, :, i] -= beta[:, lt.fixed_cols[i]][:, None]
            if lt.parent >= 0 and lt.parent_cols[i] >= 0 and lt.collapse != 2:
                b[:, :, i] -= c_t.get(lt.parent, b_t[lt.parent])[:, lt.pmap, lt.parent_cols[i]]
        if lt.l2 is not None:
            b[:, :, lt.l2[0]] -= beta[:, lt.l2[1]] @ lt.l2[2].T
        b_t[lt.term] = b
        if lt.level_centred is not None:  # the non-centred levels: b = sd z
            nc = ~lt.level_centred
            b_t[lt.term][:, nc] = L_t[lt.term][:, 0, 0][:, None, None] * v[:, nc]
        if lt.collapse == 2:  # c_g = b_parent + b_g: draw b_parent | c, then b_g = c_g - b_parent
            if rng is None:
                raise ValueError("constrained: an integrated-out parent's effects need rng")
            c = b_t[lt.term][:, :, 0]
            GP = packed.terms[lt.parent].levels
            onehot = np.zeros((lt.levels, GP))
            onehot[np.arange(lt.levels), lt.pmap] = 1.0
            Ssum, n = c @ onehot, onehot.sum(axis=0)
            vB, vP = sd_t[lt.term][:, :1] ** 2, sd_t[lt.parent][:, :1] ** 2
            den = vB + n * vP
            bp = vP * Ssum / den + np.sqrt(vP * vB / den) * rng.standard_normal((S, GP))
            b_t[lt.parent] = bp[:, :, None]
            c_t[lt.term] = b_t[lt.term]
            b_t[lt.term] = b_t[lt.term] - bp[:, lt.pmap, None]
    factors: dict[str, list[int]] = {}
    for k, g in enumerate(design.groups):
        factors.setdefault(g.factor, []).append(k)
    for f, ks in factors.items():
        q = sum(design.groups[k].q for k in ks)
        corr = np.zeros((S, q, q))
        o = 0
        for k in ks:
            qk = design.groups[k].q
            corr[:, o:o + qk, o:o + qk] = corr_t[k]
            o += qk
        out["factors"][f] = {"sd": np.concatenate([sd_t[k] for k in ks], axis=1), "corr": corr,
                             "b": (b_t[ks[0]] if len(ks) == 1  # no copy of the largest array
                                   else np.concatenate([b_t[k] for k in ks], axis=2))}
    return out
