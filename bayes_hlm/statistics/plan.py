"""Roles of the grouping factors in the statistics layout (computed once on all rows).

A :class:`StatsPlan` fixes, before any row is summed, which factor's cross-products
are kept per level and how the others enter; chunked and distributed computations
share one plan so their partial statistics add up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

Structure = Literal["none", "single", "nested", "crossed"]

__all__ = ["FactorBlock", "StatsPlan", "Structure", "factor_blocks", "find_nesting", "make_plan",
           "parent_map", "structure"]


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


def factor_blocks(design) -> list[FactorBlock]:
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


def parent_map(inner_codes: np.ndarray, n_inner: int, outer_codes: np.ndarray) -> np.ndarray | None:
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


def find_nesting(codes: Sequence[np.ndarray], n_levels: Sequence[int]) -> tuple[int, int, np.ndarray] | None:
    """Which of two factors is nested in the other: ``(outer, inner, parent)`` or ``None``.

    ``codes`` are the two factors' codes on the same rows (or on their distinct
    combinations); the first factor is tried as the outer one first (formula order),
    so when each contains the other the first in the formula is the outer.
    """
    for o, i in ((0, 1), (1, 0)):
        parent = parent_map(codes[i], n_levels[i], codes[o])
        if parent is not None:
            return o, i, parent
    return None


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
    blocks = factor_blocks(design)
    if force not in (None, "crossed"):
        raise ValueError("force must be None or 'crossed'")
    if not blocks:
        return StatsPlan("none", ())
    if len(blocks) == 1:
        return StatsPlan("single", (blocks[0],))
    if len(blocks) == 2 and force != "crossed":
        nest = find_nesting([design.groups[b.term_index[0]].codes for b in blocks],
                            [b.n_levels for b in blocks])
        if nest is not None:
            o, i, parent = nest
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


