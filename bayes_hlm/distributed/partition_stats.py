"""Pass 2: per-partition design rows and partial sufficient statistics.

Each partition builds its own design rows with the sample spec of
:class:`~bayes_hlm.distributed.design_meta.DesignMeta` and reduces them at once
to a :class:`Partial`: global sums (N, yᵀy, Xᵀy, XᵀX, centred moments of y, X
and each Z column) plus per-group statistics for only the groups that occur in
the partition, keyed by their global level ids.

* Design rows: when every design column is the intercept or a numeric data
  column (``y ~ x + (x | g)``; :class:`~.design_meta.DirectDesign`, checked
  against formulae on the sample rows) the data columns are used as they are;
  otherwise formulae's ``evaluate_new_data`` with the global factor levels, so
  contrasts and column order equal the in-memory design.
* Groups: integer ids in a compact range map to level codes through a lookup
  table built once per process; other columns are factorised once per partition
  (categoricals keep their codes) and only the distinct values are looked up in
  the global levels (:meth:`~.design_meta.DesignMeta.column_local`).
* Statistics: the statistics layer's kernels, as in memory -- one grouping
  factor: one fused Numba pass over the distinct data columns
  (:func:`bayes_hlm.statistics.single_pairs`, GIL released); two nested factors:
  :func:`bayes_hlm.statistics.block_cross` per factor on the partition's rows
  (local group codes), the function :func:`bayes_hlm.statistics.compute_stats` uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import DataError
from ..spec.build import design_matrices
from ..statistics import block_cross, single_pairs
from .design_meta import DesignMeta, _clean, local_codes

__all__ = ["Moments", "GroupPart", "Partial", "partition_design", "partition_stats"]


@dataclass
class Moments:
    """Count, means and centred cross-products of the columns of a matrix (Chan et al. merge)."""

    n: int
    mean: np.ndarray
    M2: np.ndarray  # (k, k) centred cross-products, or (k,) diagonal only

    @classmethod
    def of(cls, A: np.ndarray, full: bool = True) -> "Moments":
        A = np.asarray(A, dtype=np.float64)
        n = A.shape[0]
        k = A.shape[1]
        if n == 0:
            return cls(0, np.zeros(k), np.zeros((k, k)) if full else np.zeros(k))
        m = A.mean(axis=0)
        D = A - m
        return cls(n, m, D.T @ D if full else np.einsum("ij,ij->j", D, D))

    def merge(self, o: "Moments") -> "Moments":
        if o.n == 0:
            return self
        if self.n == 0:
            return o
        n = self.n + o.n
        d = o.mean - self.mean
        mean = self.mean + d * (o.n / n)
        corr = self.n * o.n / n
        M2 = self.M2 + o.M2 + (np.outer(d, d) if self.M2.ndim == 2 else d * d) * corr
        return Moments(n, mean, M2)

    def var(self, ddof: int = 0) -> np.ndarray:
        M = np.diag(self.M2) if self.M2.ndim == 2 else self.M2
        return M / max(self.n - ddof, 1)

    def cov(self, ddof: int = 1) -> np.ndarray:
        return self.M2 / max(self.n - ddof, 1)


@dataclass
class GroupPart:
    """Per-group statistics of the groups present in some partitions.

    ``ids`` are sorted global level ids; each array in ``fields`` has ``len(ids)``
    rows (``n``, ``A``, ``B``, ``c``, ``zsum`` and, for a nested inner factor, ``C``).
    """

    ids: np.ndarray
    fields: dict


@dataclass
class Partial:
    """Mergeable partial statistics of one or more partitions."""

    N: int = 0
    yty: float = 0.0
    Xty: np.ndarray | None = None      # all formulae columns (aliased ones dropped at the end)
    XtX: np.ndarray | None = None
    y_mom: Moments | None = None
    X_mom: Moments | None = None
    Z_mom: list = field(default_factory=list)   # per block: Moments (diagonal)
    groups: list = field(default_factory=list)  # per block: GroupPart
    n_partitions: int = 0
    layouts: list = field(default_factory=list)  # per block: PairLayout when fields == {"H": ...}


def _prepared_frame(sub: pd.DataFrame, meta: DesignMeta) -> pd.DataFrame:
    """Formula columns, factor columns as categoricals over the global levels (for formulae)."""
    spec = meta.spec()
    cols = {}
    for name in meta.mf.formula_cols:
        col = sub[name]
        if name in meta.col_levels:
            cols[name] = pd.Categorical.from_codes(meta.column_codes(name, col),
                                                   dtype=spec.data[name].dtype)
        else:
            cols[name] = col.to_numpy()
    frame = pd.DataFrame(cols, index=pd.RangeIndex(len(sub)), copy=False)
    if spec.parsed.response not in frame:
        frame[spec.parsed.response] = 0.0
    return frame


def formulae_design(sub: pd.DataFrame, meta: DesignMeta) -> dict:
    """``y``, ``X`` (all formulae columns) and per-term ``Z`` of clean rows, with formulae."""
    spec = meta.spec()
    frame = _prepared_frame(sub, meta)
    resp = spec.parsed.response
    n = len(sub)
    p = len(meta.fixed_names_full)
    if n == 0:
        y, X = np.zeros(0), np.zeros((0, p))
    else:
        if resp in sub.columns and resp in frame:
            y = np.asarray(frame[resp], dtype=np.float64)
        else:
            y = np.asarray(design_matrices(f"{resp} ~ 1", frame).response.design_matrix,
                           dtype=np.float64).reshape(-1)
        common = spec._fixed_dm.common
        X = (np.asarray(common.evaluate_new_data(frame).design_matrix, dtype=np.float64)
             if common is not None else np.zeros((n, 0)))
    Zs = []
    for k, dm in enumerate(spec._random_dms):
        if dm is None:
            Zs.append(np.ones((n, 1)))
        elif n == 0:
            Zs.append(np.zeros((0, len(meta.term_names[k]))))
        else:
            Zs.append(np.asarray(dm.evaluate_new_data(frame).design_matrix, dtype=np.float64))
    return {"y": y, "X": X, "Z": Zs}


def _fill(n: int, sources: tuple, sub: pd.DataFrame) -> np.ndarray:
    M = np.empty((n, len(sources)))
    for j, name in enumerate(sources):
        if name is None:
            M[:, j] = 1.0
        else:
            M[:, j] = sub[name].to_numpy()
    return M


def design_arrays(sub: pd.DataFrame, meta: DesignMeta, direct=None) -> dict:
    """``y``, ``X`` and per-term ``Z`` of clean rows: the data columns themselves when the
    formula allows (:class:`~bayes_hlm.distributed.design_meta.DirectDesign`), else formulae."""
    direct = meta.direct if direct is None else direct
    if direct is None:
        return formulae_design(sub, meta)
    n = len(sub)
    y = np.asarray(sub[direct.y].to_numpy(), dtype=np.float64)
    return {"y": y, "X": _fill(n, direct.X, sub), "Z": [_fill(n, z, sub) for z in direct.Z]}


def design_columns(sub: pd.DataFrame, meta: DesignMeta, ks: tuple) -> tuple:
    """The design as distinct columns plus index maps, for :func:`bayes_hlm.statistics.single_pairs`.

    Returns ``(cols, yi, xi, zi)``: ``cols`` a tuple of 1-d float64 arrays, ``yi`` the
    response's index, ``xi``/``zi`` per ``X``/``Z`` column (terms ``ks`` concatenated) an
    index into ``cols`` or -1 for ones.  With a :class:`DirectDesign` the data columns are
    used as they are (no ``X``/``Z`` copies); otherwise formulae's matrices are split.
    """
    direct = meta.direct
    if direct is None:
        d = formulae_design(sub, meta)
        Z = np.concatenate([d["Z"][k] for k in ks], axis=1)
        X = d["X"]
        cols = (d["y"],) + tuple(np.ascontiguousarray(X.T)) + tuple(np.ascontiguousarray(Z.T))
        p = X.shape[1]
        return cols, 0, np.arange(1, 1 + p), np.arange(1 + p, 1 + p + Z.shape[1])
    names: list = []

    def index(name):
        if name is None:
            return -1
        if name not in names:
            names.append(name)
        return names.index(name)

    yi = index(direct.y)
    xi = [index(c) for c in direct.X]
    zi = [index(c) for k in ks for c in direct.Z[k]]
    cols = tuple(np.asarray(sub[c].to_numpy(), dtype=np.float64) for c in names)
    return cols, yi, np.asarray(xi, dtype=np.int64), np.asarray(zi, dtype=np.int64)


def partition_design(df: pd.DataFrame, meta: DesignMeta) -> dict:
    """Design rows of one partition: ``y``, ``X`` (all formulae columns), and per term codes and Z.

    Global level codes; the in-memory :func:`build_spec` on the same rows gives
    the same columns (tested).  Returns a dict with ``y``, ``X``, ``codes``
    (per distinct factor), ``Z`` (per term).
    """
    sub, _, _ = _clean(df, meta.mf)
    d = design_arrays(sub, meta)
    col_codes = {c: meta.column_codes(c, sub[c]) for c in meta.mf.group_cols}
    d["codes"] = [meta.factor_codes(fi, col_codes) for fi in range(len(meta.factors))]
    return d


def _local(codes: np.ndarray, G: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted global ids present and local codes ``0..len(ids)-1``."""
    return local_codes(codes, G)


def _is_window(remap: np.ndarray) -> bool:
    """``remap`` is ``cumsum(present) - 1`` over a window of codes (non-decreasing, steps <= 1)."""
    d = np.diff(remap)
    return bool(len(d) == 0 or (d.min() >= 0 and d.max() <= 1))


def _single_fast(sub: pd.DataFrame, meta: DesignMeta) -> Partial:
    """One grouping factor: local group codes and one fused kernel pass (:mod:`bayes_hlm.statistics.pairs`).

    The per-group part is kept as pair sums ``H`` (:class:`~bayes_hlm.statistics.PairLayout`), expanded
    to ``n, A, B, c, Z_gᵀ1`` by :func:`~.reduce.finalize` after the reduction.
    """
    (fi, ks), = meta.blocks()
    cols, yi, xi, zi = design_columns(sub, meta, ks)
    n = len(sub)
    ids, codes, remap = meta.factor_local(fi, sub)
    present = None
    if len(remap) and len(remap) <= 2 * len(ids) and np.array_equal(
            remap[[0, -1]], [0, len(ids) - 1]) and _is_window(remap):
        # codes index a window of levels mostly present (unsorted data): accumulate by code
        # and drop the absent rows after -- one random access per row instead of two
        present = np.diff(remap, prepend=-1) > 0
        remap, u = np.zeros(0, dtype=np.int64), len(present)
    else:
        u = len(ids)
    (H, layout, XtX, Xty, yty, my, mx, mz, y2, X2, Z2) = single_pairs(
        cols, yi, xi, zi, codes, remap, u)
    if present is not None and not present.all():
        H = H[present]
    return Partial(N=n, yty=float(yty), Xty=Xty, XtX=XtX,
                   y_mom=Moments(n, np.array([my]), np.array([[y2]])), X_mom=Moments(n, mx, X2),
                   Z_mom=[Moments(n, mz, Z2)], groups=[GroupPart(ids, {"H": H})],
                   n_partitions=1, layouts=[layout])


def partition_stats(df: pd.DataFrame, meta: DesignMeta) -> Partial:
    """Partial statistics of one partition (pass 2 map step)."""
    if meta.structure == "single":
        sub, _, _ = _clean(df, meta.mf)
        return _single_fast(sub, meta)
    d = partition_design(df, meta)
    y, X = d["y"], d["X"]
    n = len(y)
    out = Partial(N=n, yty=float(y @ y), Xty=X.T @ y, XtX=X.T @ X, y_mom=Moments.of(y[:, None]),
                  X_mom=Moments.of(X), n_partitions=1)
    if meta.structure == "none":
        return out
    blocks = meta.blocks()
    local_ids, lcodes, Zb = [], [], []
    for fi, ks in blocks:
        ids, lc = _local(d["codes"][fi], meta.factors[fi].n_levels)
        local_ids.append(ids)
        lcodes.append(lc)
        Zb.append(np.concatenate([d["Z"][k] for k in ks], axis=1))
    out.Z_mom = [Moments.of(Z, full=False) for Z in Zb]
    # nested: the inner factor's levels also carry Z_iᵀZ_o (coupling to its outer level)
    fo, fi_ = meta.outer_inner
    bo = next(b for b, (f, _) in enumerate(blocks) if f == fo)
    bi = next(b for b, (f, _) in enumerate(blocks) if f == fi_)
    gpar = meta.parent[local_ids[bi]]                     # global outer id of each local inner level
    lpar = np.searchsorted(local_ids[bo], gpar).astype(np.int64)
    if len(gpar) and not np.array_equal(local_ids[bo][np.minimum(lpar, len(local_ids[bo]) - 1)], gpar):
        raise DataError("nesting map inconsistent with the partition's rows")
    parts = [None, None]
    for b, W in ((bo, None), (bi, Zb[bo])):
        f = block_cross(lcodes[b], len(local_ids[b]), Zb[b], X, y, W)
        f["n"] = f.pop("n_g")
        parts[b] = GroupPart(local_ids[b], f)
    out.groups = parts
    return out
