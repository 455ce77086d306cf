"""Sufficient statistics of a Gaussian LMM for the marginalised backend.

One pass over the rows reduces a :class:`~bayes_hlm.spec.design.Design` to the
per-group cross-products that the collapsed log-likelihood
(:mod:`bayes_hlm.backends.marginal_loglik`) and the exact group-effect draws
(:mod:`bayes_hlm.backends.conditional_draws`) need; after this step no per-step
cost depends on the number of rows ``N`` (see ``shared/notes/marginal-lmm.md``).

Three layouts, chosen by :func:`structure`:

* ``"single"``  -- one grouping factor (:class:`SingleStats`);
* ``"nested"``  -- two factors, every inner level inside one outer level
  (:class:`NestedStats`, two-stage Schur complement);
* ``"crossed"`` -- anything else with >= 2 factors: the factor with most levels
  is marginalised, the other terms' effects stay parameters that enter the mean
  (:class:`CrossedStats`);
* ``"none"``    -- no group terms (:class:`BaseStats`, plain regression).

Terms that share one factor (``(1|g) + (0+x|g)``) are merged into one block
whose columns are the concatenation of the terms' ``Z`` columns (see
:class:`FactorBlock`); the covariance factor of the block is the block-diagonal
of the terms' factors.

All statistics are plain sums over rows, so statistics of row chunks that were
computed with the same :class:`StatsPlan` add up (``a + b`` / :meth:`merge`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Literal, Sequence

import numpy as np
import scipy.sparse as sp

Structure = Literal["none", "single", "nested", "crossed"]

__all__ = [
    "BaseStats",
    "CrossedStats",
    "FactorBlock",
    "MarginalStats",
    "NestedStats",
    "SingleStats",
    "StatsPlan",
    "compute_stats",
    "make_plan",
    "merge_stats",
    "structure",
]


# --------------------------------------------------------------------------- #
# Plan: which factor plays which role (computed once on all rows)
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class FactorBlock:
    """The merged terms of one grouping factor.

    Attributes
    ----------
    factor : str
        Factor name as in :attr:`GroupTerm.factor`.
    term_index : tuple of int
        Indices into ``design.groups`` of the merged terms, in formula order;
        the block's columns are their ``Z`` columns concatenated in this order.
    q_sizes : tuple of int
        ``q`` of each merged term.
    n_levels : int
        Number of levels ``G`` of the factor.
    """

    factor: str
    term_index: tuple[int, ...]
    q_sizes: tuple[int, ...]
    n_levels: int

    @property
    def q(self) -> int:
        return int(sum(self.q_sizes))

    @property
    def offsets(self) -> tuple[int, ...]:
        """Column offset of each merged term inside the block."""
        return tuple(int(o) for o in np.concatenate([[0], np.cumsum(self.q_sizes)[:-1]]))


@dataclass(frozen=True)
class StatsPlan:
    """Roles of the grouping factors, fixed before any statistics are summed.

    Chunked / distributed computation must share one plan so the partial
    statistics have identical layouts (a chunk alone could look nested when the
    full data are crossed).

    Attributes
    ----------
    structure : {"none", "single", "nested", "crossed"}
    blocks : tuple of FactorBlock
        ``()`` for "none"; ``(block,)`` for "single"; ``(outer, inner)`` for
        "nested"; ``(marginalised,)`` for "crossed".
    other_terms : tuple of int
        "crossed" only: indices into ``design.groups`` of the terms whose
        effects are sampled (not marginalised), in formula order.
    other_q, other_levels : tuple of int
        "crossed" only: ``q_k`` and ``G_k`` of each sampled term.
    parent : ndarray of int64 or None
        "nested" only: outer level of each inner level (``0`` for inner levels
        with no rows; their statistics are all zero so the choice is harmless).
    """

    structure: Structure
    blocks: tuple[FactorBlock, ...]
    other_terms: tuple[int, ...] = ()
    other_q: tuple[int, ...] = ()
    other_levels: tuple[int, ...] = ()
    parent: np.ndarray | None = None

    @property
    def other_offsets(self) -> tuple[int, ...]:
        """Start column of each sampled term in ``b_o`` (length ``len + 1``; last is ``m``)."""
        sizes = [g * q for g, q in zip(self.other_levels, self.other_q)]
        return tuple(int(o) for o in np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]))


def _factor_blocks(design) -> list[FactorBlock]:
    """Group the design's terms by factor (formula order of first appearance)."""
    order: dict[str, list[int]] = {}
    for k, g in enumerate(design.groups):
        order.setdefault(g.factor, []).append(k)
    blocks = []
    for fac, idx in order.items():
        first = design.groups[idx[0]]
        for k in idx[1:]:
            if not np.array_equal(design.groups[k].codes, first.codes):
                raise ValueError(f"terms of factor {fac!r} have different level codes")
        blocks.append(
            FactorBlock(fac, tuple(idx), tuple(design.groups[k].q for k in idx), first.n_levels)
        )
    return blocks


def _parent_map(inner_codes: np.ndarray, n_inner: int, outer_codes: np.ndarray) -> np.ndarray | None:
    """Outer level of each inner level, or ``None`` if inner is not nested in outer.

    Nested means every inner level that occurs meets exactly one outer level.
    """
    lo = np.full(n_inner, np.iinfo(np.int64).max, dtype=np.int64)
    hi = np.full(n_inner, -1, dtype=np.int64)
    oc = np.asarray(outer_codes, dtype=np.int64)
    np.minimum.at(lo, inner_codes, oc)
    np.maximum.at(hi, inner_codes, oc)
    seen = hi >= 0
    if not np.array_equal(lo[seen], hi[seen]):
        return None
    return np.where(seen, hi, 0)


def make_plan(design, force: Structure | None = None) -> StatsPlan:
    """Decide the structure and the role of each grouping factor.

    Parameters
    ----------
    design : Design
    force : {"crossed"}, optional
        ``"crossed"`` uses the crossed layout for any design with >= 2
        factors (always valid; e.g. to cross-check a nested fit).

    Returns
    -------
    StatsPlan
        Two factors where one is nested in the other give "nested" (outer =
        the containing factor; if each contains the other, the first in the
        formula).  Three or more factors, or two crossed factors, give
        "crossed": marginalising the largest factor and sampling the rest is
        valid for any structure, whereas deeper nesting chains would need a
        recursive Schur complement (not implemented yet; the plan layout
        leaves room for more blocks).
    """
    blocks = _factor_blocks(design)
    if force not in (None, "crossed"):
        raise ValueError("force must be None or 'crossed'")
    if not blocks:
        return StatsPlan("none", ())
    if len(blocks) == 1:
        return StatsPlan("single", (blocks[0],))
    if len(blocks) == 2 and force != "crossed":
        codes = [design.groups[b.term_index[0]].codes for b in blocks]
        for o, i in ((0, 1), (1, 0)):
            parent = _parent_map(codes[i], blocks[i].n_levels, codes[o])
            if parent is not None:
                return StatsPlan("nested", (blocks[o], blocks[i]), parent=parent)
    # Crossed: marginalise the factor with most levels (ties: first in formula);
    # it carries most parameters, so removing it helps NUTS most.
    m = max(range(len(blocks)), key=lambda j: (blocks[j].n_levels, -j))
    others = tuple(sorted(k for j, b in enumerate(blocks) if j != m for k in b.term_index))
    return StatsPlan(
        "crossed", (blocks[m],), other_terms=others,
        other_q=tuple(design.groups[k].q for k in others),
        other_levels=tuple(design.groups[k].n_levels for k in others),
    )


def structure(design) -> Structure:
    """Classify the random-effect structure: "none", "single", "nested" or "crossed"."""
    return make_plan(design).structure


# --------------------------------------------------------------------------- #
# Statistics containers
# --------------------------------------------------------------------------- #
class _Additive:
    """Chunk statistics add field by field (arrays, sparse matrices, counts)."""

    _static: tuple[str, ...] = ("plan",)

    def merge(self, other):
        """Statistics of the union of two disjoint row sets (same plan)."""
        if type(other) is not type(self):
            raise TypeError("can only merge statistics of the same structure")
        if other.plan is not self.plan and other.plan.structure != self.plan.structure:
            raise ValueError("statistics were computed with different plans")
        upd = {}
        for f in fields(self):
            if f.name in self._static:
                continue
            a, b = getattr(self, f.name), getattr(other, f.name)
            if a is None:
                upd[f.name] = None
                continue
            if np.shape(a) != np.shape(b):
                raise ValueError(f"field {f.name!r}: shapes {np.shape(a)} and {np.shape(b)} differ")
            upd[f.name] = a + b
        return replace(self, **upd)

    def __add__(self, other):
        return self.merge(other)


@dataclass(frozen=True, eq=False)
class BaseStats(_Additive):
    """Global statistics (all structures carry these).

    Attributes
    ----------
    plan : StatsPlan
    N : int
        Number of rows.
    yty : float
        ``yᵀy``.
    Xty : ndarray, shape (p,)
    XtX : ndarray, shape (p, p)
    """

    plan: StatsPlan
    N: int
    yty: float
    Xty: np.ndarray
    XtX: np.ndarray

    @property
    def structure(self) -> Structure:
        return self.plan.structure

    @property
    def p(self) -> int:
        return int(self.Xty.shape[0])


@dataclass(frozen=True, eq=False)
class SingleStats(BaseStats):
    """One grouping factor (block ``plan.blocks[0]``, ``G`` levels, ``q`` columns).

    Attributes
    ----------
    n_g : ndarray, shape (G,)
        Rows per level.
    A : ndarray, shape (G, q, q)
        ``Z_gᵀ Z_g``.
    B : ndarray, shape (G, q, p)
        ``Z_gᵀ X_g``.
    c : ndarray, shape (G, q)
        ``Z_gᵀ y_g``.
    """

    n_g: np.ndarray = None
    A: np.ndarray = None
    B: np.ndarray = None
    c: np.ndarray = None

    @property
    def block(self) -> FactorBlock:
        return self.plan.blocks[0]


@dataclass(frozen=True, eq=False)
class NestedStats(BaseStats):
    """Two nested factors: ``outer`` (``G_o`` levels, ``q_o``) and ``inner`` (``G_i``, ``q_i``).

    Attributes
    ----------
    parent : ndarray of int64, shape (G_i,)
        Outer level of each inner level (copy of ``plan.parent``).
    n_in, A_in, B_in, c_in
        Per inner level: rows, ``Z_iᵀZ_i`` (G_i, q_i, q_i), ``Z_iᵀX`` (G_i, q_i, p),
        ``Z_iᵀy`` (G_i, q_i).
    C : ndarray, shape (G_i, q_i, q_o)
        Per inner level: ``Z_iᵀ Z_o`` over the level's rows (the coupling between
        an inner effect and its outer effect).
    n_out, A_out, B_out, c_out
        Per outer level: rows, ``Z_oᵀZ_o`` (G_o, q_o, q_o), ``Z_oᵀX`` (G_o, q_o, p),
        ``Z_oᵀy`` (G_o, q_o).
    """

    n_in: np.ndarray = None
    A_in: np.ndarray = None
    B_in: np.ndarray = None
    c_in: np.ndarray = None
    C: np.ndarray = None
    n_out: np.ndarray = None
    A_out: np.ndarray = None
    B_out: np.ndarray = None
    c_out: np.ndarray = None
    parent: np.ndarray = None

    _static = ("plan", "parent")

    @property
    def outer(self) -> FactorBlock:
        return self.plan.blocks[0]

    @property
    def inner(self) -> FactorBlock:
        return self.plan.blocks[1]


@dataclass(frozen=True, eq=False)
class CrossedStats(SingleStats):
    """Crossed factors: one marginalised block plus sampled "other" terms.

    With ``W = [X | Z_o]`` (``Z_o`` the sparse ``N × m`` indicator-times-column
    matrix of the other terms, ``m = Σ_k G_k q_k``) and ``θ = [β; b_o]``, the
    per-step quantities ``rᵀr`` and ``Z_gᵀ r`` need only the statistics below;
    ``b_o`` is laid out term after term (``other_terms`` order), level-major
    inside a term: column ``other_offsets[k] + level * q_k + j``.

    ``n_g, A, B, c`` are those of the marginalised block (``B`` is the ``X``
    part ``Z_gᵀX``).  The ``Z_o`` parts are ``scipy.sparse`` CSR: ``Z_oᵀZ_o``
    is ``m × m`` with nnz ≤ the levels' cross-tabulation, and ``Z_gᵀZ_o`` has
    only the (group, other level) pairs that co-occur -- dense would cost
    ``m²`` and ``G q m`` memory, which for e.g. 100k × 5k levels is prohibitive.
    ``XᵀZ_o`` (p × m) and ``Z_oᵀy`` (m,) are dense since p is small.

    The sampled terms' indices, ``q_k``, ``G_k`` and column offsets are on
    the plan (``plan.other_terms``, ``other_q``, ``other_levels``,
    ``other_offsets``).

    Attributes
    ----------
    XtZo : ndarray, shape (p, m)
    Zoty : ndarray, shape (m,)
    ZotZo : scipy.sparse.csr_matrix, shape (m, m)
    BZo : scipy.sparse.csr_matrix, shape (G*q, m)
        Row ``g*q + i``: ``(Z_gᵀ Z_o)[i, :]``.
    """

    XtZo: np.ndarray = None
    Zoty: np.ndarray = None
    ZotZo: sp.csr_matrix = None
    BZo: sp.csr_matrix = None

    @property
    def other_terms(self) -> tuple[int, ...]:
        return self.plan.other_terms

    @property
    def other_offsets(self) -> tuple[int, ...]:
        return self.plan.other_offsets

    @property
    def m(self) -> int:
        return int(self.Zoty.shape[0])

    def merge(self, other):
        out = super().merge(other)
        # Sparse sums may leave explicit zeros / unsorted indices: canonicalise.
        for name in ("ZotZo", "BZo"):
            getattr(out, name).sum_duplicates()
        return out


MarginalStats = BaseStats | SingleStats | NestedStats | CrossedStats


def merge_stats(parts: Sequence[MarginalStats]) -> MarginalStats:
    """Sum statistics computed on disjoint row chunks with one plan."""
    parts = list(parts)
    out = parts[0]
    for s in parts[1:]:
        out = out.merge(s)
    return out


# --------------------------------------------------------------------------- #
# Computation
# --------------------------------------------------------------------------- #
def _block_Z(design, block: FactorBlock, rows: slice) -> tuple[np.ndarray, np.ndarray]:
    """Codes and concatenated ``Z`` columns of a block on a row range."""
    terms = [design.groups[k] for k in block.term_index]
    codes = np.asarray(terms[0].codes[rows], dtype=np.int64)
    Z = np.concatenate([np.asarray(t.Z[rows], dtype=np.float64).reshape(-1, t.q) for t in terms], axis=1)
    return codes, Z


def _group_cross(codes: np.ndarray, G: int, U: np.ndarray, V: np.ndarray, sym: bool = False) -> np.ndarray:
    """Per-level ``U_gᵀ V_g`` as (G, a, b), one ``bincount`` per entry.

    ``bincount`` is a single C pass per entry with O(N) scratch memory and no
    sorting -- faster than ``np.add.at`` and than sort + ``reduceat`` for the
    small ``a·b`` of random-effect blocks.
    """
    a, b = U.shape[1], V.shape[1]
    out = np.empty((G, a, b))
    for i in range(a):
        for j in range(b):
            if sym and j < i:
                out[:, i, j] = out[:, j, i]
                continue
            out[:, i, j] = np.bincount(codes, weights=U[:, i] * V[:, j], minlength=G)
    return out


def _group_vec(codes: np.ndarray, G: int, U: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Per-level ``U_gᵀ v_g`` as (G, a)."""
    cols = [np.bincount(codes, weights=U[:, i] * v, minlength=G) for i in range(U.shape[1])]
    return np.stack(cols, axis=1).reshape(G, U.shape[1])


def _base_fields(design, rows: slice) -> tuple[dict, np.ndarray, np.ndarray]:
    X = np.asarray(design.X[rows], dtype=np.float64)
    y = np.asarray(design.y[rows], dtype=np.float64)
    return dict(N=int(y.shape[0]), yty=float(y @ y), Xty=X.T @ y, XtX=X.T @ X), X, y


def _single_fields(design, block: FactorBlock, rows, X, y) -> tuple[dict, np.ndarray, np.ndarray]:
    codes, Z = _block_Z(design, block, rows)
    G = block.n_levels
    return dict(
        n_g=np.bincount(codes, minlength=G).astype(np.float64),
        A=_group_cross(codes, G, Z, Z, sym=True),
        B=_group_cross(codes, G, Z, X),
        c=_group_vec(codes, G, Z, y),
    ), codes, Z


def _other_Z(design, plan: StatsPlan, rows) -> sp.csr_matrix:
    """Sparse ``Z_o`` (rows × m) of the sampled terms, built straight in CSR."""
    terms = [design.groups[k] for k in plan.other_terms]
    qs, offs = plan.other_q, plan.other_offsets
    n = design.y[rows].shape[0]
    cols, vals = [], []
    for t, off in zip(terms, offs):
        c = off + np.asarray(t.codes[rows], dtype=np.int64)[:, None] * t.q + np.arange(t.q)
        cols.append(c)
        vals.append(np.asarray(t.Z[rows], dtype=np.float64).reshape(n, t.q))
    nper = sum(qs)
    indices = np.concatenate(cols, axis=1).ravel()
    data = np.concatenate(vals, axis=1).ravel()
    indptr = np.arange(0, n * nper + 1, nper, dtype=np.int64)
    return sp.csr_matrix((data, indices, indptr), shape=(n, offs[-1]))


def _stats_rows(design, plan: StatsPlan, rows: slice) -> MarginalStats:
    base, X, y = _base_fields(design, rows)
    if plan.structure == "none":
        return BaseStats(plan=plan, **base)
    if plan.structure == "single":
        f, _, _ = _single_fields(design, plan.blocks[0], rows, X, y)
        return SingleStats(plan=plan, **base, **f)
    if plan.structure == "nested":
        outer, inner = plan.blocks
        fo, co, Zo = _single_fields(design, outer, rows, X, y)
        fi, ci, Zi = _single_fields(design, inner, rows, X, y)
        C = _group_cross(ci, inner.n_levels, Zi, Zo)
        return NestedStats(
            plan=plan, **base,
            n_in=fi["n_g"], A_in=fi["A"], B_in=fi["B"], c_in=fi["c"], C=C,
            n_out=fo["n_g"], A_out=fo["A"], B_out=fo["B"], c_out=fo["c"],
            parent=plan.parent,
        )
    # crossed
    block = plan.blocks[0]
    f, codes, Zm = _single_fields(design, block, rows, X, y)
    Zo = _other_Z(design, plan, rows)
    G, q = block.n_levels, block.q
    n = codes.shape[0]
    # Marginalised block as sparse (rows × G q) so Z_gᵀZ_o is one sparse product.
    Zs = sp.csr_matrix(
        (Zm.ravel(), (codes[:, None] * q + np.arange(q)).ravel(), np.arange(0, n * q + 1, q, dtype=np.int64)),
        shape=(n, G * q),
    )
    ZoT = Zo.T.tocsr()
    ZotZo = (ZoT @ Zo).tocsr()
    BZo = (Zs.T.tocsr() @ Zo).tocsr()
    for M in (ZotZo, BZo):
        M.sum_duplicates()
        M.sort_indices()
    return CrossedStats(
        plan=plan, **base, **f,
        XtZo=np.asarray((ZoT @ X).T), Zoty=np.asarray(ZoT @ y).ravel(), ZotZo=ZotZo, BZo=BZo,
    )


def compute_stats(design, *, plan: StatsPlan | None = None, chunk_rows: int | None = None) -> MarginalStats:
    """Sufficient statistics of ``design`` for the marginalised backend.

    Parameters
    ----------
    design : Design
    plan : StatsPlan, optional
        Roles of the factors; default :func:`make_plan` on ``design``.  Pass
        the plan of the full data when ``design`` holds only a partition.
    chunk_rows : int, optional
        Process rows in chunks of this size and add the partial statistics;
        bounds temporary memory to O(chunk_rows · (q + p)) (the crossed layout
        also builds a chunk-sized sparse ``Z_o``).

    Returns
    -------
    BaseStats, SingleStats, NestedStats or CrossedStats
        According to ``plan.structure``.
    """
    plan = make_plan(design) if plan is None else plan
    n = design.n
    if not chunk_rows or chunk_rows >= n:
        return _stats_rows(design, plan, slice(0, n))
    parts = (_stats_rows(design, plan, slice(s, min(s + chunk_rows, n))) for s in range(0, n, chunk_rows))
    out = next(parts)
    for s in parts:
        out = out.merge(s)
    return out

