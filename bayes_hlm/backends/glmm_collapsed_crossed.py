"""Collapsed generalized models with several grouping factors: the factor with the most
levels integrated out per level by adaptive Gauss–Hermite quadrature, the others sampled.

As the Gaussian engine does for crossed and nested designs: the *integrated* factor ``F``
(most levels; at most :data:`~.glmm_collapsed.MAX_Q` effect columns) is integrated out
level by level exactly as in the one-factor engine (:mod:`.glmm_collapsed`), while NUTS
samples the fixed effects, every SD/correlation and the effects of the other (*sampled*)
factors, centred or non-centred as :func:`~.parametrization.choose_centering` decides for
the full model. Given the sampled effects, each row's linear predictor is
``o_i + ζ_iᵀ v_F`` with the offset ``o_i = x_iᵀβ + offset_i + Σ_sampled z_iᵀ b`` and the
rows of one level of ``F`` are conditionally independent of every other level's: the
per-level integrals are exact products, so the collapsed density is exact up to the
quadrature sum (node count checked against doubled nodes, as in the one-factor engine).

Parameters (unconstrained): those of the compiled full-model density
(:mod:`.glmm_density`) of the design without ``F`` (fixed effects, the sampled factors'
SDs, correlations and effects), then ``F``'s log SDs and partial correlations. The
gradient runs back through the same code as the full model's
(:func:`.glmm_density.prior_effects` / :func:`.glmm_density.effects_backward`) and the
one-factor engine's per-level quadrature (:func:`.glmm_collapsed._group_term`, which
returns each row's derivative w.r.t. its offset). ``F``'s effects are then drawn exactly
per posterior draw (:mod:`.glmm_effect_draws`'s ratio of uniforms given the offsets).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numba
import numpy as np

from ..spec.design import Design
from ..spec.priors import PriorSet
from . import glmm_density as gd
from .glmm_collapsed import (MAX_Q, _group_term, gauss_hermite, prepare_group, term_blocks,
                             term_priors, term_scratch, terms_backward)
from .glmm_effect_draws import draw_groups
from .glmm_kernels import kernel_code
from .keyed_noise import _mix
from .numba_density import n_corr

_HEAD = 15


# --------------------------------------------------------------------------- #
# which factor, which models
# --------------------------------------------------------------------------- #
def integrated_factor(design: Design) -> str:
    """The factor with the most levels (ties: the first in the formula)."""
    levels: dict[str, int] = {}
    for g in design.groups:
        levels.setdefault(g.factor, g.n_levels)
    return max(levels, key=lambda f: (levels[f], -list(levels).index(f)))


def split_design(design: Design, factor: str) -> tuple[Design, list]:
    """``(design without factor's terms, factor's GroupTerms)``."""
    rest = tuple(g for g in design.groups if g.factor != factor)
    return dataclasses.replace(design, groups=rest), [g for g in design.groups if g.factor == factor]


def unsupported_reason(design: Design, ps: PriorSet, family) -> str | None:
    """Why the crossed/nested form does not cover a model whose family and priors the
    one-factor engine covers (:func:`.glmm_collapsed.unsupported_reason` checks those)."""
    f = integrated_factor(design)
    rest, terms = split_design(design, f)
    q = sum(g.q for g in terms)
    if q > MAX_Q:
        return (f"{q} effect columns of the integrated factor {f!r} (the one with most levels; "
                f"quadrature engine: at most {MAX_Q})")
    why = gd.unsupported_reason(rest, ps, family)
    return None if why is None else f"sampled factors: {why}"


# --------------------------------------------------------------------------- #
# packing
# --------------------------------------------------------------------------- #
@dataclass
class CrossedPacked:
    """The buffer of :func:`logp_grad` and how to read ``x`` back."""

    buf: np.ndarray
    ndim: int
    p: int
    q: int       # integrated factor's effect columns
    G: int       # its levels
    K: int
    terms: list  # (q_t, correlated) per GroupTerm of the integrated factor
    init: np.ndarray
    order: np.ndarray   # rows sorted by the integrated factor's level
    factor: str
    sampled: gd.GlmmPacked  # layout of x[:n_sampled] (fixed, sampled factors)
    rest: Design
    centered: dict


def pack(design: Design, ps: PriorSet, family, K: int = 7, centered: dict | None = None
         ) -> CrossedPacked:
    """Rows sorted by the integrated factor's level, the sampled part as
    :func:`.glmm_density.pack` lays it out, then the integrated factor's priors and the
    quadrature rule."""
    f = integrated_factor(design)
    rest, fterms = split_design(design, f)
    codes = fterms[0].codes
    order = np.argsort(codes, kind="stable")
    G = fterms[0].n_levels
    indptr = np.zeros(G + 1, dtype=np.int64)
    np.cumsum(np.bincount(codes, minlength=G), out=indptr[1:])
    cent = {k: v for k, v in (centered or {}).items() if k != f}
    A = gd.pack(rest, ps, family, cent)  # its term blocks and priors; the rows are ours:
    rows = gd.design_rows(rest)           # sorted by the integrated factor's level
    Z = np.ascontiguousarray(np.concatenate([g.Z for g in fterms], axis=1)[order], dtype=float)
    q, N = Z.shape[1], design.n
    t, lw = gauss_hermite(K, q)
    per_term, terms, init = term_blocks(fterms, ps)
    init = list(A.init) + init
    nmax = int(np.max(np.diff(indptr))) if G else 0
    a0 = _HEAD
    a1 = a0 + A.buf.size
    f_at = a1
    # the sampled terms' rows: per term (q, effects at, codes at, Z at), then the arrays
    data = [rows.y[order], rows.n[order], rows.offset[order], rows.X[order].ravel()]
    s_at = f_at + len(per_term) + G + 1 + N * q + t.size + lw.size
    at = s_at + 4 * len(rest.groups) + sum(a.size for a in data)
    table, arrays = [], []
    for k, lt in enumerate(A.terms):
        c, z = rows.codes[k][order].astype(float), rows.Z[k][order].ravel()
        table += [lt.q, lt.eff_x, at, at + N]
        arrays += [c, z]
        at += N + z.size
    sections = [np.asarray(per_term, float), indptr.view(np.float64), Z.ravel(), t.ravel(), lw,
                np.asarray(table, float), *data, *arrays]
    head = [0.0, a0, a1, A.ndim, G, N, q, len(fterms), len(lw), nmax, kernel_code(family),
            f_at, len(rest.groups), s_at, design.p]
    assert len(head) == _HEAD
    buf = np.concatenate([np.asarray(head, float), A.buf, *sections])
    assert buf.size == at
    buf[0] = buf.size
    return CrossedPacked(buf=np.ascontiguousarray(buf), ndim=len(init), p=design.p, q=q, G=G,
                         K=K, terms=terms, init=np.asarray(init), order=order, factor=f,
                         sampled=A, rest=rest, centered=dict(A.centered))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def unpack(buf):
    """``(A, kF, G, N, q, T, code, nmax, term_at, indptr, Z, t, lw, y, nn, off, X, table)``:
    the sampled part's buffer (a view: its priors and term blocks), where ``F``'s
    parameters start in x, ``F``'s sections, the rows (sorted by F's level) and per sampled
    term ``(q, effects at, codes at, Z at)``."""
    a0, a1, kF, G, N = int(buf[1]), int(buf[2]), int(buf[3]), int(buf[4]), int(buf[5])
    q, T, Mn, nmax, code = int(buf[6]), int(buf[7]), int(buf[8]), int(buf[9]), int(buf[10])
    n_s, s_at, p = int(buf[12]), int(buf[13]), int(buf[14])
    o = int(buf[11])
    term_at = o
    for _ in range(T):
        o += 4 + 3 * int(buf[o])
    indptr = buf[o:o + G + 1].view(np.int64)
    o += G + 1
    Z = buf[o:o + N * q].reshape((N, q))
    o += N * q
    t = buf[o:o + Mn * q].reshape((Mn, q))
    o += Mn * q
    lw = buf[o:o + Mn]
    o = s_at
    table = buf[o:o + 4 * n_s].reshape((n_s, 4))
    o += 4 * n_s
    y, nn, off = buf[o:o + N], buf[o + N:o + 2 * N], buf[o + 2 * N:o + 3 * N]
    o += 3 * N
    X = buf[o:o + N * p].reshape((N, p))
    return (buf[a0:a1], kF, G, N, q, T, code, nmax, term_at, indptr, Z, t, lw, y, nn, off, X,
            table)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def offsets(buf, beta, b, eta):
    """``eta[r] = x_rᵀβ + offset_r + Σ_sampled z_rᵀ b`` for every row (F's level order)."""
    (A, kF, G, N, q, T, code, nmax, term_at, indptr, Z, t, lw, y, nn, off, X,
     table) = unpack(buf)
    p = X.shape[1]
    for r in range(N):
        s = off[r]
        for j in range(p):
            s += X[r, j] * beta[j]
        eta[r] = s
    for k in range(table.shape[0]):
        gd._term_eta(buf, int(table[k, 0]), int(table[k, 2]), int(table[k, 3]),
                     int(table[k, 1]), b, eta, N)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _offsets_backward(buf, go, gbeta, gb):
    """The transpose of :func:`offsets`: ``gbeta += Xᵀ go``, ``gb += Σ Zᵀ go``."""
    (A, kF, G, N, q, T, code, nmax, term_at, indptr, Z, t, lw, y, nn, off, X,
     table) = unpack(buf)
    p = X.shape[1]
    for r in range(N):
        for j in range(p):
            gbeta[j] += X[r, j] * go[r]
    for k in range(table.shape[0]):
        gd._term_scatter(buf, int(table[k, 0]), int(table[k, 2]), int(table[k, 3]),
                         int(table[k, 1]), gb, go, N)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _density(x, buf, grad):
    """``(log prior, Σ_g log p_g)`` at ``x``; the gradient of their sum into ``grad``."""
    (A, kF, G, N, q, T, code, nmax, term_at, indptr, Z, t, lw, y, nn, off, X,
     table) = unpack(buf)
    p = X.shape[1]
    lp, beta, phi, dphi, tpos, Ls, b, gb = gd.prior_effects(x, A, grad)
    lpf, L = term_priors(x, kF, buf, term_at, T, q, grad)
    eta = np.empty(N)
    offsets(buf, beta, b, eta)
    X0 = np.empty((N, 0))
    b0 = np.empty(0)
    o, zeta, d1, d2, d3, Dm, kap, r, Tm, zbar, obar, go = term_scratch(nmax, q, t.shape[0])
    go_all = np.empty(N)
    gL = np.zeros((q, q))
    ll = 0.0
    for g in range(G):
        a, e = indptr[g], indptr[g + 1]
        prepare_group(a, e, X0, Z, eta, b0, L, o, zeta)
        ll += _group_term(code, y, nn, a, e, Z, t, lw, o, zeta, d1, d2, d3, Dm, kap, r, Tm,
                          zbar, obar, go, gL)
        for i in range(e - a):
            go_all[a + i] = go[i]
    gbeta = np.zeros(p)
    _offsets_backward(buf, go_all, gbeta, gb)
    gd.effects_backward(x, A, tpos, Ls, b, gb, gbeta, grad)
    terms_backward(x, kF, buf, term_at, T, L, gL, grad)
    return lp + lpf, ll


@numba.njit(cache=True, nogil=True, error_model="numpy")
def logp_grad(x, buf, grad):
    """Log posterior (up to a constant) at ``x``; writes its gradient to ``grad``."""
    lp, ll = _density(x, buf, grad)
    return lp + ll


def loglik_at(packed: CrossedPacked, x: np.ndarray) -> float:
    """The summed AGQ log likelihood (no prior) at parameter vector ``x``."""
    return float(_density(np.asarray(x, float), packed.buf, np.empty(packed.ndim))[1])


# --------------------------------------------------------------------------- #
# exact draws of the integrated factor's effects
# --------------------------------------------------------------------------- #
@numba.njit(cache=True, nogil=True, error_model="numpy", parallel=True)
def _draw(xs, draw_index, key, buf, out, tries):
    (A, kF, G, N, q, T, code, nmax, term_at, indptr, Z, t, lw, y, nn, off, X,
     table) = unpack(buf)
    base = _mix(np.uint64(key), 0)
    for s in numba.prange(xs.shape[0]):
        grad = np.zeros(xs.shape[1])
        _, beta, _, _, _, _, b, _ = gd.prior_effects(xs[s], A, grad)
        _, L = term_priors(xs[s], kF, buf, term_at, T, q, grad)
        eta = np.empty(N)
        offsets(buf, beta, b, eta)
        tries[s] = draw_groups(code, y, nn, indptr, nmax, np.empty((N, 0)), Z, eta,
                               np.empty(0), L, _mix(base, draw_index[s]), out[s])


def draw_effects(packed: CrossedPacked, xs: np.ndarray, key: int, draw_index
                 ) -> tuple[np.ndarray, float]:
    """Exact draws ``b`` (S, G, q) of the integrated factor's effects given each parameter
    vector in ``xs`` (S, ndim; sampled effects included); returns ``(b, acceptance rate)``
    (as :func:`.glmm_effect_draws.draw_effects`)."""
    from .glmm_effect_draws import check_draws

    xs = np.ascontiguousarray(xs, dtype=float)
    out = np.empty((xs.shape[0], packed.G, packed.q))
    tries = np.zeros(xs.shape[0], dtype=np.int64)
    _draw(xs, np.ascontiguousarray(draw_index, dtype=np.int64), np.uint64(key), packed.buf,
          out, tries)
    return check_draws(out, tries)


# --------------------------------------------------------------------------- #
# draws -> the full model's variables
# --------------------------------------------------------------------------- #
def posterior_dataset(design: Design, ps: PriorSet, packed: CrossedPacked, z: np.ndarray,
                      b: np.ndarray):
    """The full PyMC model's variables, dims and coords from draws ``z`` (C, D, ndim) and
    the integrated factor's effects ``b`` (C·D, G, q)."""
    import xarray as xr

    from .glmm_nuts import posterior_dataset as sampled_dataset
    from .numba_density import cpc_corr
    from .hyperparameters import coords as model_coords
    from ..spec import variable_names as naming

    C, D = z.shape[:2]
    A = packed.sampled
    ds = sampled_dataset(packed.rest, ps, A, z[:, :, :A.ndim])
    flat = z.reshape(C * D, -1)
    f, q = packed.factor, packed.q
    sds, corr, k, o = [], np.broadcast_to(np.eye(q), (C * D, q, q)).copy(), A.ndim, 0
    for qt, correlated in packed.terms:
        sds.append(np.exp(flat[:, k:k + qt]))
        nc = n_corr(qt) if correlated else 0
        if correlated:
            corr[:, o:o + qt, o:o + qt] = cpc_corr(flat[:, k + qt:k + qt + nc], qt)
        k += qt + nc
        o += qt
    td, tdb, ld = naming.term_dim(f), naming.term_dim_b(f), naming.level_dim(f)
    out = {naming.sd_var(f): (("chain", "draw", td), np.concatenate(sds, axis=1).reshape(C, D, q)),
           naming.effect_var(f): (("chain", "draw", ld, td), b.reshape(C, D, packed.G, q))}
    if any(c for _, c in packed.terms):
        out[naming.corr_var(f)] = (("chain", "draw", td, tdb), corr.reshape(C, D, q, q))
    cs = model_coords(design)
    used = {d for dims, _ in out.values() for d in dims} - {"chain", "draw"}
    extra = xr.Dataset(out, coords={"chain": np.arange(C), "draw": np.arange(D),
                                    **{kk: cs[kk] for kk in used}})
    return xr.merge([ds, extra])

