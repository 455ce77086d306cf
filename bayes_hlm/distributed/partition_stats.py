"""Pass 2: per-partition design rows and partial sufficient statistics.

Each partition builds its own design rows with the sample spec of
:class:`~bayes_hlm.distributed.design_meta.DesignMeta` (formulae's
``evaluate_new_data`` with the global factor levels, so contrasts and column
order equal the in-memory design) and reduces them at once to a
:class:`Partial`: global sums (N, yᵀy, Xᵀy, XᵀX, centred moments of y, X and
each Z column) plus per-group statistics for only the groups that occur in the
partition, keyed by their global level ids.  The statistics themselves come
from :func:`bayes_hlm.backends.sufficient_stats.compute_stats` on the
partition's rows (local group codes, local plan), so the algebra is the one the
in-memory backend uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import formulae as fm
import numpy as np
import pandas as pd

from ..backends.sufficient_stats import FactorBlock, StatsPlan, compute_stats
from ..errors import DataError
from ..spec.design import Design, GroupTerm
from .design_meta import DesignMeta, _clean

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


def _prepared_frame(sub: pd.DataFrame, meta: DesignMeta) -> tuple[pd.DataFrame, dict]:
    """Formula columns with factor columns as categoricals over the global levels; column codes."""
    spec = meta.spec()
    codes, cols = {}, {}
    for name in meta.mf.used:
        col = sub[name]
        if name in meta.col_levels:
            codes[name] = meta.column_codes(name, col)
            if name in meta.mf.formula_cols:
                dtype = spec.data[name].dtype
                cols[name] = pd.Categorical.from_codes(codes[name], dtype=dtype)
        elif name in meta.mf.formula_cols:
            cols[name] = col.to_numpy()
    frame = pd.DataFrame(cols, index=pd.RangeIndex(len(sub)), copy=False)
    if spec.parsed.response not in frame:
        frame[spec.parsed.response] = 0.0
    return frame, codes


def partition_design(df: pd.DataFrame, meta: DesignMeta) -> dict:
    """Design rows of one partition: ``y``, ``X`` (all formulae columns), and per term codes and Z.

    Global level codes; the in-memory :func:`build_spec` on the same rows gives
    the same columns (tested).  Returns a dict with ``y``, ``X``, ``codes``
    (per distinct factor), ``Z`` (per term).
    """
    sub, _, _ = _clean(df, meta.mf)
    spec = meta.spec()
    frame, col_codes = _prepared_frame(sub, meta)
    resp = spec.parsed.response
    n = len(sub)
    if n == 0:
        y = np.zeros(0)
        X = np.zeros((0, len(meta.fixed_names_full)))
    else:
        if resp in sub.columns and resp in frame:
            y = np.asarray(frame[resp], dtype=np.float64)
        else:
            y = np.asarray(fm.design_matrices(f"{resp} ~ 1", frame).response.design_matrix,
                           dtype=np.float64).reshape(-1)
        X = np.asarray(spec._fixed_dm.common.evaluate_new_data(frame).design_matrix, dtype=np.float64)
    Zs = []
    for k, dm in enumerate(spec._random_dms):
        if dm is None:
            Zs.append(np.ones((n, 1)))
        elif n == 0:
            Zs.append(np.zeros((0, len(meta.term_names[k]))))
        else:
            Zs.append(np.asarray(dm.evaluate_new_data(frame).design_matrix, dtype=np.float64))
    codes = [meta.factor_codes(fi, col_codes) for fi in range(len(meta.factors))]
    return {"y": y, "X": X, "codes": codes, "Z": Zs}


def _local(codes: np.ndarray, G: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted global ids present and local codes ``0..len(ids)-1``."""
    if len(codes) == 0:
        return np.zeros(0, dtype=np.int64), codes
    if G <= 4 * len(codes):
        present = np.bincount(codes, minlength=G) > 0
        ids = np.flatnonzero(present)
        lut = np.cumsum(present) - 1
        return ids, lut[codes]
    ids, inv = np.unique(codes, return_inverse=True)
    return ids, inv.astype(np.int64)


def partition_stats(df: pd.DataFrame, meta: DesignMeta) -> Partial:
    """Partial statistics of one partition (pass 2 map step)."""
    d = partition_design(df, meta)
    y, X = d["y"], d["X"]
    n = len(y)
    out = Partial(N=n, yty=float(y @ y), Xty=X.T @ y, XtX=X.T @ X, y_mom=Moments.of(y[:, None]),
                  X_mom=Moments.of(X), n_partitions=1)
    if meta.structure == "none":
        return out
    blocks = meta.blocks()
    local_ids, local_codes = [], []
    for fi, _ in blocks:
        ids, lc = _local(d["codes"][fi], meta.factors[fi].n_levels)
        local_ids.append(ids)
        local_codes.append(lc)
    groups_by_term: list = [None] * len(meta.term_names)
    fblocks = []
    for b, (fi, ks) in enumerate(blocks):
        for k in ks:
            groups_by_term[k] = GroupTerm(factor=meta.factors[fi].name, terms=meta.term_names[k],
                                          correlated=False, codes=local_codes[b],
                                          levels=pd.RangeIndex(0), Z=d["Z"][k])
        fblocks.append(FactorBlock(meta.factors[fi].name, ks, tuple(len(meta.term_names[k]) for k in ks),
                                   len(local_ids[b])))
    design = Design(formula="", response="", y=y, X=X, fixed_names=meta.fixed_names_full,
                    groups=tuple(groups_by_term), row_index=pd.RangeIndex(n))
    Zb = [np.concatenate([d["Z"][k] for k in ks], axis=1) for _, ks in blocks]
    out.Z_mom = [Moments.of(Z, full=False) for Z in Zb]

    def zsum(b):
        Z = Zb[b]
        return np.stack([np.bincount(local_codes[b], weights=Z[:, j], minlength=len(local_ids[b]))
                         for j in range(Z.shape[1])], axis=1)

    if meta.structure == "single":
        st = compute_stats(design, plan=StatsPlan("single", (fblocks[0],)))
        out.groups = [GroupPart(local_ids[0], {"n": st.n_g, "A": st.A, "B": st.B, "c": st.c,
                                                "zsum": zsum(0)})]
        return out
    # nested: blocks are in formula order; the plan wants (outer, inner)
    fo, fi_ = meta.outer_inner
    bo = next(b for b, (f, _) in enumerate(blocks) if f == fo)
    bi = next(b for b, (f, _) in enumerate(blocks) if f == fi_)
    gpar = meta.parent[local_ids[bi]]                     # global outer id of each local inner level
    lpar = np.searchsorted(local_ids[bo], gpar).astype(np.int64)
    if len(gpar) and not np.array_equal(local_ids[bo][np.minimum(lpar, len(local_ids[bo]) - 1)], gpar):
        raise DataError("nesting map inconsistent with the partition's rows")
    plan = StatsPlan("nested", (fblocks[bo], fblocks[bi]), parent=lpar)
    st = compute_stats(design, plan=plan)
    parts = [None, None]
    parts[bo] = GroupPart(local_ids[bo], {"n": st.n_out, "A": st.A_out, "B": st.B_out, "c": st.c_out,
                                          "zsum": zsum(bo)})
    parts[bi] = GroupPart(local_ids[bi], {"n": st.n_in, "A": st.A_in, "B": st.B_in, "c": st.c_in,
                                          "C": st.C, "zsum": zsum(bi)})
    out.groups = parts
    return out
