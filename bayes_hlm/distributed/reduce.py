"""Reduce partial statistics by group (tree reduction) and assemble the backend's stats objects."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..statistics import BaseStats, NestedStats, SingleStats
from ..spec.control import Control
from ..spec.rules import aliased_columns, check_rank
from .design_meta import DesignMeta
from .kernels import merge_sorted
from .partition_stats import GroupPart, Moments, Partial

__all__ = ["merge_group_parts", "merge_partials", "tree_reduce", "finalize", "StatsExtras"]

SPLIT_EVERY = 8


def merge_group_parts(parts: list[GroupPart]) -> GroupPart:
    """Sum per-group statistics over partitions; groups split across partitions are added.

    Disjoint, ordered parts (data sorted by group) are concatenated; otherwise the
    fields, flattened side by side, go through :func:`.kernels.merge_sorted` (linear
    pairwise merges of the sorted ids: no sort and nothing sized by all levels).
    """
    parts = [p for p in parts if p is not None and len(p.ids)]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    ids = np.concatenate([p.ids for p in parts])
    names = list(parts[0].fields)
    # fast path: disjoint, already ordered ids (data sorted by group)
    if np.all(ids[1:] > ids[:-1]):
        return GroupPart(ids, {k: np.concatenate([p.fields[k] for p in parts]) for k in names})
    shapes = [parts[0].fields[k].shape[1:] for k in names]
    widths = [int(np.prod(sh)) for sh in shapes]
    flat = [(p.ids, np.concatenate([p.fields[k].reshape(len(p.ids), -1) for k in names], axis=1))
            for p in parts]
    out_ids, vals = merge_sorted(flat)
    out, o = {}, 0
    for k, sh, w in zip(names, shapes, widths):
        out[k] = vals[:, o:o + w].reshape((len(out_ids),) + sh)
        o += w
    return GroupPart(out_ids, out)


def merge_partials(parts: list[Partial]) -> Partial:
    """Associative merge of partial statistics (one node of the tree reduction)."""
    parts = [p for p in parts if p is not None]
    if len(parts) == 1:
        return parts[0]
    out = Partial()
    for p in parts:
        out.N += p.N
        out.yty += p.yty
        out.n_partitions += p.n_partitions
        out.Xty = p.Xty.copy() if out.Xty is None else out.Xty + p.Xty
        out.XtX = p.XtX.copy() if out.XtX is None else out.XtX + p.XtX
        out.y_mom = p.y_mom if out.y_mom is None else out.y_mom.merge(p.y_mom)
        out.X_mom = p.X_mom if out.X_mom is None else out.X_mom.merge(p.X_mom)
        if p.Z_mom:
            out.Z_mom = list(p.Z_mom) if not out.Z_mom else [a.merge(b) for a, b in zip(out.Z_mom, p.Z_mom)]
        if p.layouts and not out.layouts:
            out.layouts = list(p.layouts)
    nb = max(len(p.groups) for p in parts)
    out.groups = [merge_group_parts([p.groups[b] for p in parts if p.groups]) for b in range(nb)]
    return out


def tree_reduce(items: list, fn, split_every: int = SPLIT_EVERY, name: str = "reduce"):
    """Delayed tree reduction of ``items`` with ``fn(list) -> item`` (fan-in ``split_every``)."""
    import dask

    level = 0
    items = list(items)
    f = dask.delayed(fn, pure=True)
    while len(items) > 1:
        items = [f(items[i:i + split_every], dask_key_name=f"{name}-{level}-{i}-{_tok(items[i:i + split_every])}")
                 for i in range(0, len(items), split_every)]
        level += 1
    if len(items) == 1 and level == 0:
        items = [f(items, dask_key_name=f"{name}-0-0-{_tok(items)}")]
    return items[0]


def _tok(x) -> str:
    from dask.base import tokenize

    return tokenize([getattr(i, "key", i) for i in x])


@dataclass
class StatsExtras:
    """What the stats-only result needs beyond the backend's statistics.

    Attributes
    ----------
    y_mom, X_mom : Moments
        Mean/centred cross-products of ``y`` and of the kept ``X`` columns.
    Z_mom : dict
        Per factor: Moments (diagonal) of its Z columns (terms concatenated).
    ZtZ : dict
        Per factor: ``Σ_g A_g`` (``ZᵀZ`` over all rows).
    zsum : dict
        Per factor: (G, q) per-group column sums ``Z_gᵀ1``.
    ysum : float
    n_partitions : int
    """

    y_mom: Moments
    X_mom: Moments
    Z_mom: dict
    ZtZ: dict
    zsum: dict
    ysum: float
    n_partitions: int


def _dense(gp: GroupPart, G: int) -> dict:
    out = {}
    for k, v in gp.fields.items():
        a = np.zeros((G,) + v.shape[1:])
        a[gp.ids] = v
        out[k] = a
    return out


def kept_columns(part: Partial, meta: DesignMeta, control: Control | None = None) -> np.ndarray:
    """Columns of the formulae fixed matrix kept after dropping aliased ones (from XᵀX)."""
    control = control or Control()
    XtX = part.XtX
    p = XtX.shape[0]
    if p == 0:
        return np.zeros(0, dtype=int)
    # aliased_columns works on X; a Cholesky-like factor R with RᵀR = XᵀX gives the same Gram matrix
    w, V = np.linalg.eigh(XtX)
    R = (V * np.sqrt(np.clip(w, 0, None))).T
    drop = aliased_columns(R)
    check_rank(control, meta.fixed_names_full, drop)
    return np.setdiff1d(np.arange(p), drop)


def finalize(part: Partial, meta: DesignMeta, kept: np.ndarray):
    """The backend's stats object (global plan, dense per-group arrays) and :class:`StatsExtras`."""
    plan = meta.plan()
    kx = np.asarray(kept, dtype=int)
    base = dict(N=int(part.N), yty=float(part.yty), Xty=part.Xty[kx], XtX=part.XtX[np.ix_(kx, kx)])
    X_mom = Moments(part.X_mom.n, part.X_mom.mean[kx], part.X_mom.M2[np.ix_(kx, kx)])
    ysum = float(part.y_mom.mean[0] * part.y_mom.n)
    blocks = meta.blocks()
    extras = StatsExtras(y_mom=part.y_mom, X_mom=X_mom, Z_mom={}, ZtZ={}, zsum={}, ysum=ysum,
                         n_partitions=part.n_partitions)
    if plan.structure == "none":
        return BaseStats(plan=plan, **base), extras
    dense = []
    for b, (fi, _) in enumerate(blocks):
        G = meta.factors[fi].n_levels
        d = _dense(part.groups[b], G)
        if part.layouts and part.layouts[b] is not None:     # pair sums -> n, A, B, c, zsum
            d = part.layouts[b].expand(d["H"])
        d["B"] = d["B"][:, :, kx]
        dense.append(d)
        name = meta.factors[fi].name
        extras.Z_mom[name] = part.Z_mom[b]
        extras.ZtZ[name] = d["A"].sum(axis=0)
        extras.zsum[name] = d["zsum"]
    if plan.structure == "single":
        d = dense[0]
        st = SingleStats(plan=plan, **base, n_g=d["n"], A=d["A"], B=d["B"], c=d["c"])
        return st, extras
    fo, fi_ = meta.outer_inner
    bo = next(b for b, (f, _) in enumerate(blocks) if f == fo)
    bi = next(b for b, (f, _) in enumerate(blocks) if f == fi_)
    o, i = dense[bo], dense[bi]
    st = NestedStats(plan=plan, **base, n_in=i["n"], A_in=i["A"], B_in=i["B"], c_in=i["c"], C=i["C"],
                     n_out=o["n"], A_out=o["A"], B_out=o["B"], c_out=o["c"], parent=plan.parent)
    return st, extras
