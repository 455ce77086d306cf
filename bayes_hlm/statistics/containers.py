"""Containers of the per-group cross-products, one class per :class:`~.plan.StatsPlan` structure.

All statistics are plain sums over rows, so statistics of row chunks that were
computed with the same plan add up (``a + b`` / :meth:`merge` / :func:`merge_stats`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from .plan import FactorBlock, StatsPlan, Structure

__all__ = ["BaseStats", "CrossedStats", "MarginalStats", "NestedStats", "SingleStats", "merge_stats"]


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


