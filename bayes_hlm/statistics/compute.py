"""Statistics of an in-memory :class:`~bayes_hlm.spec.design.Design` (one pass per block).

After this step no per-step cost of the collapsed likelihood depends on the number of
rows ``N`` (see ``shared/notes/marginal-lmm.md``).
"""

from __future__ import annotations

import numpy as np

from .containers import BaseStats, CrossedStats, MarginalStats, NestedStats, SingleStats
from .cross import block_cross, global_cross, indicator_csr, sparse_cross, stacked_csr
from .plan import FactorBlock, StatsPlan, make_plan

__all__ = ["block_columns", "compute_stats"]


def block_columns(design, block: FactorBlock, rows: slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
    """Codes and concatenated ``Z`` columns (formula order) of a block on a row range."""
    terms = [design.groups[k] for k in block.term_index]
    codes = np.asarray(terms[0].codes[rows], dtype=np.int64)
    Z = np.concatenate([np.asarray(t.Z[rows], dtype=np.float64).reshape(-1, t.q) for t in terms], axis=1)
    return codes, Z


def _single_fields(codes, Z, G, X, y, W=None) -> dict:
    f = block_cross(codes, G, Z, X, y, W)
    f.pop("zsum")
    return f


def _stats_rows(design, plan: StatsPlan, rows: slice) -> MarginalStats:
    X = np.asarray(design.X[rows], dtype=np.float64)
    y = np.asarray(design.working_y[rows], dtype=np.float64)
    base = global_cross(X, y)
    if plan.structure == "none":
        return BaseStats(plan=plan, **base)
    if plan.structure == "single":
        codes, Z = block_columns(design, plan.blocks[0], rows)
        return SingleStats(plan=plan, **base, **_single_fields(codes, Z, plan.blocks[0].n_levels, X, y))
    if plan.structure == "nested":
        outer, inner = plan.blocks
        co, Zo = block_columns(design, outer, rows)
        ci, Zi = block_columns(design, inner, rows)
        fo = _single_fields(co, Zo, outer.n_levels, X, y)
        fi = _single_fields(ci, Zi, inner.n_levels, X, y, W=Zo)
        return NestedStats(
            plan=plan, **base,
            n_in=fi["n_g"], A_in=fi["A"], B_in=fi["B"], c_in=fi["c"], C=fi["C"],
            n_out=fo["n_g"], A_out=fo["A"], B_out=fo["B"], c_out=fo["c"],
            parent=plan.parent,
        )
    # crossed: the marginalised block per level, the sampled terms as sparse columns
    block = plan.blocks[0]
    codes, Zm = block_columns(design, block, rows)
    f = _single_fields(codes, Zm, block.n_levels, X, y)
    others = [design.groups[k] for k in plan.other_terms]
    Zo = stacked_csr([(np.asarray(t.codes[rows], dtype=np.int64), t.Z[rows], t.n_levels)
                      for t in others])
    s = sparse_cross(indicator_csr(codes, Zm, block.n_levels * block.q), Zo, X, y)
    return CrossedStats(plan=plan, **base, **f,
                        XtZo=s["RtX"].T, Zoty=s["Rty"], ZotZo=s["RtR"], BZo=s["ERt"])


def compute_stats(design, *, plan: StatsPlan | None = None, chunk_rows: int | None = None) -> MarginalStats:
    """Sufficient statistics of ``design`` for the marginalised backend.

    Parameters
    ----------
    design : Design
    plan : StatsPlan, optional
        Roles of the factors; default :func:`~.plan.make_plan` on ``design``.  Pass
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
