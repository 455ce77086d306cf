"""Metadata pass: fix the design (levels, contrasts, factor codes, structure) before any statistics.

Pass 1 over the partitions (:func:`scan_partition`, reduced by :func:`merge_scans`)
collects, after dropping rows with missing values in used columns exactly as
:func:`bayes_hlm.spec.build.build_spec` does:

* row and missing-value counts (per column);
* the levels of every factor-typed used column (category order for
  categoricals, e.g. Parquet dictionaries; sorted values otherwise; unused
  categories dropped, as ``_as_factor`` does in memory);
* for multi-column grouping factors (``a:b``) and for designs with two
  factors, the observed combinations of the grouping columns (O(groups)), which
  give the interaction levels in the in-memory order and the nesting map;
* the first clean rows, used to build a tiny :class:`~bayes_hlm.spec.build.ModelSpec`.

:class:`DesignMeta` then holds everything each partition needs to build its
design rows with the same encoding as the in-memory path: the sample spec
(formulae's fixed and random design matrices, whose ``evaluate_new_data``
maps levels consistently), the global levels of each factor column and the
global level table of each grouping factor.  Because levels come from a pass
over all partitions, no partition can meet an unseen level.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import BayesHLMError, DataError, FormulaError
from ..errors import OutOfCoreError  # noqa: F401 - re-exported: the class lives in errors.py
from ..statistics import FactorBlock, StatsPlan, find_nesting
from ..spec.build import ModelSpec, expr_vars, used_columns, build_spec
from ..spec.control import Control
from ..spec.design import Design, GroupTerm
from ..spec.formula import ParsedFormula, parse_formula
from ..spec.rules import (check_na_action, check_numeric_group, interaction_labels, is_factor_dtype,
                          missing_mask, no_data_error, no_rows_left_error, report_missing,
                          response_not_numeric)
from .kernels import lut_codes

__all__ = ["OutOfCoreError", "ModelFrame", "ScanPart", "DesignMeta", "DirectDesign", "StatsDesign",
           "scan_partition", "merge_scans", "local_codes"]

HEAD_ROWS = 200
MAX_COMBOS = 20_000_000
# integer group ids use a lookup table when max - min + 1 <= max(this x levels, LUT_MIN_SPAN)
LUT_SPAN_PER_LEVEL = 8
LUT_MIN_SPAN = 1 << 20


# --------------------------------------------------------------------------- #
# Static facts from the formula and the column names
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class ModelFrame:
    """Formula facts needed before reading any row."""

    formula: str
    parsed: ParsedFormula
    used: tuple[str, ...]
    group_cols: tuple[str, ...]          # columns that define grouping factors
    formula_cols: tuple[str, ...]        # columns used in the response, fixed part or Z expressions
    na_action: str = "omit"

    @classmethod
    def make(cls, formula: str, columns, na_action: str = "omit") -> "ModelFrame":
        check_na_action(na_action)
        parsed = parse_formula(formula)
        if "offset(" in parsed.fixed_rhs.replace(" ", ""):
            raise OutOfCoreError(
                "offset(...) terms are not supported by the out-of-core engine (engine='dask') yet; "
                "fit in memory, or subtract the offset from the response in the data")
        used = used_columns(parsed, pd.DataFrame(columns=list(columns)))
        gcols = []
        for t in parsed.random:
            for c in t.factor_columns:
                if c not in gcols:
                    gcols.append(c)
        fcols = set(expr_vars(parsed.fixed_rhs)) | set(expr_vars(parsed.response))
        for t in parsed.random:
            fcols |= expr_vars(t.expr)
        return cls(formula, parsed, tuple(used), tuple(gcols),
                   tuple(c for c in used if c in fcols), na_action)

    @property
    def factors(self) -> list[tuple[str, tuple[str, ...]]]:
        """Distinct grouping factors (name, columns) in formula order."""
        out: dict[str, tuple[str, ...]] = {}
        for t in self.parsed.random:
            out.setdefault(t.factor, t.factor_columns)
        return list(out.items())

    @property
    def needs_combos(self) -> bool:
        facs = self.factors
        return len(facs) >= 2 or any(len(c) > 1 for _, c in facs)


# --------------------------------------------------------------------------- #
# Pass 1
# --------------------------------------------------------------------------- #
@dataclass
class ColumnLevels:
    """Levels seen in some partitions of one factor-typed column."""

    categories: pd.Index | None = None   # categorical input: its categories ...
    used: np.ndarray | None = None       # ... and which of them occur
    values: object = None                # otherwise: the distinct values (NumPy or Arrow strings)
    numeric: bool = False

    def labels(self) -> np.ndarray:
        if self.categories is not None:
            return np.asarray(self.categories[self.used])
        return self.values


@dataclass
class ScanPart:
    """Pass-1 summary of one or more partitions (mergeable)."""

    n_rows: int = 0
    n_kept: int = 0
    na_rows: int = 0
    na_cols: dict = field(default_factory=dict)
    levels: dict = field(default_factory=dict)      # column -> ColumnLevels
    combos: pd.DataFrame | None = None               # distinct tuples of the grouping columns
    head: pd.DataFrame | None = None
    dtypes: dict = field(default_factory=dict)


def _clean(df: pd.DataFrame, mf: ModelFrame) -> tuple[pd.DataFrame, dict, int]:
    """Used columns with rows having missing values dropped (as in memory); infinities raise.

    The rule of :func:`bayes_hlm.spec.build.build_spec`: :func:`bayes_hlm.spec.rules.missing_mask`.
    """
    used = list(mf.used)
    sub = df if list(df.columns) == used else df[used]
    bad, per_col = missing_mask(sub, used)
    if bad is None:
        return sub, per_col, 0
    n_na = int(bad.sum())
    return sub.loc[~bad], per_col, n_na


def _is_factor_col(name: str, col: pd.Series, mf: ModelFrame) -> bool:
    return name in mf.group_cols or is_factor_dtype(col)


def scan_partition(df: pd.DataFrame, mf: ModelFrame) -> ScanPart:
    """Pass-1 facts of one partition (after dropping rows with missing values)."""
    sub, per_col, n_na = _clean(df, mf)
    out = ScanPart(n_rows=len(df), n_kept=len(sub), na_rows=n_na, na_cols=per_col,
                   dtypes={c: str(df[c].dtype) for c in mf.used})
    for name in mf.used:
        col = sub[name]
        if not _is_factor_col(name, col, mf):
            continue
        if isinstance(col.dtype, pd.CategoricalDtype):
            cats = col.cat.categories
            used = np.bincount(np.asarray(col.cat.codes, dtype=np.int64) + 1,
                               minlength=len(cats) + 1)[1:] > 0
            out.levels[name] = ColumnLevels(categories=cats, used=used)
        else:
            vals = col.unique()  # hash-based; Arrow strings stay Arrow
            if not (isinstance(vals, pd.api.extensions.ExtensionArray)
                    and pd.api.types.is_string_dtype(vals.dtype)):
                vals = np.asarray(vals)
            num = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
            out.levels[name] = ColumnLevels(values=vals, numeric=num)
    if mf.needs_combos and len(sub):
        out.combos = sub[list(mf.group_cols)].drop_duplicates().reset_index(drop=True)
    out.head = sub.head(HEAD_ROWS) if len(sub) else None
    return out


def _merge_levels(a: ColumnLevels, b: ColumnLevels) -> ColumnLevels:
    if a.categories is not None and b.categories is not None and (
            a.categories is b.categories or a.categories.equals(b.categories)):
        return ColumnLevels(categories=a.categories, used=a.used | b.used)
    va, vb = a.labels(), b.labels()
    if (isinstance(va, pd.api.extensions.ExtensionArray) and type(va) is type(vb)
            and va.dtype == vb.dtype):
        # e.g. Arrow strings: concatenated and hashed in Arrow, no Python objects
        vals = type(va)._concat_same_type([va, vb]).unique()
        return ColumnLevels(values=vals, numeric=a.numeric and b.numeric)
    va, vb = np.asarray(va), np.asarray(vb)
    if va.dtype == vb.dtype and va.dtype != object:
        # same NumPy dtype (integer / float ids): no boxing into Python objects
        vals = pd.unique(np.concatenate([va, vb]))
    else:
        vals = pd.unique(np.concatenate([va.astype(object), vb.astype(object)]))
    return ColumnLevels(values=np.asarray(vals), numeric=a.numeric and b.numeric)


def merge_scans(parts: list[ScanPart]) -> ScanPart:
    """Union of pass-1 summaries (associative; used in the tree reduction)."""
    parts = [p for p in parts if p is not None]
    out = ScanPart()
    combos = []
    for p in parts:
        out.n_rows += p.n_rows
        out.n_kept += p.n_kept
        out.na_rows += p.na_rows
        for c, v in p.na_cols.items():
            out.na_cols[c] = out.na_cols.get(c, 0) + v
        for c, lv in p.levels.items():
            out.levels[c] = lv if c not in out.levels else _merge_levels(out.levels[c], lv)
        if p.combos is not None:
            combos.append(p.combos)
        if out.head is None and p.head is not None:
            out.head = p.head
        for c, d in p.dtypes.items():
            out.dtypes.setdefault(c, d)
    if combos:
        cat = pd.concat(combos, ignore_index=True) if len(combos) > 1 else combos[0]
        out.combos = cat.drop_duplicates().reset_index(drop=True) if len(combos) > 1 else cat
        if len(out.combos) > MAX_COMBOS:
            raise OutOfCoreError(
                f"more than {MAX_COMBOS} distinct combinations of the grouping columns: the "
                "factors are crossed, which the out-of-core engine does not handle (crossed "
                "factors need a pass over the rows at every sampler step)")
    return out


# --------------------------------------------------------------------------- #
# Global design facts
# --------------------------------------------------------------------------- #
def _sorted_levels(values: np.ndarray) -> list:
    from ..spec.collate import r_sorted  # R's (en_US) level order, as in-memory fits use

    return r_sorted(values)


def _column_levels(lv: ColumnLevels) -> pd.Index:
    """Global levels of a column in R's order (category order, else sorted values)."""
    if lv.categories is not None:
        return lv.categories[lv.used]
    vals = lv.values
    try:
        idx = pd.Index(vals)
    except Exception:  # pragma: no cover
        idx = pd.Index(vals, dtype=object)
    if idx.dtype != object and pd.api.types.is_numeric_dtype(idx.dtype):
        return idx.sort_values()   # vectorised: numeric order (= Python's sorted)
    # strings (object or Arrow): R's collation, the rule of the in-memory _as_factor
    return pd.Index(_sorted_levels(list(idx)), dtype=idx.dtype if idx.dtype != object else object)


@dataclass(frozen=True, eq=False)
class StatsDesign(Design):
    """A :class:`Design` with no rows: names, levels and sizes only (the rows stay on disk).

    ``y``/``X`` and each term's ``codes``/``Z`` have zero rows; :attr:`n` is the
    number of rows used by the fit.
    """

    n_rows: int = 0

    @property
    def n(self) -> int:  # type: ignore[override]
        return int(self.n_rows)


@dataclass
class FactorInfo:
    """One grouping factor: its columns and how to turn column codes into level ids."""

    name: str
    columns: tuple[str, ...]
    n_levels: int
    _labels: pd.Index | None = field(default=None, repr=False)  # level labels (strings), code order
    combined: np.ndarray | None = None    # multi-column: sorted combined column codes of the levels
    radix: tuple[int, ...] = ()           # per column: number of column levels
    source: pd.Index | None = field(default=None, repr=False)   # one column: its global levels

    @property
    def labels(self) -> pd.Index:
        """Level labels as strings, in code order (built on first use: not needed by the passes,
        and 1M labels cost ~0.3 s)."""
        if self._labels is None:
            self._labels = _string_labels(self.source)
        return self._labels

    def __getstate__(self):
        d = dict(self.__dict__)
        if self.source is not None:  # rebuilt on demand; workers never need it
            d["_labels"] = None
        return d


def _string_labels(levels: pd.Index) -> pd.Index:
    return pd.Index(np.asarray(levels.astype(str), dtype=object), dtype=object)


_IGNORE = Control(check_nlev_gtr_1="ignore", check_nobs_vs_nlev="ignore", check_nobs_vs_nRE="ignore",
                  check_rank="ignore", check_numeric_group="ignore", check_slope_variation="ignore")


@dataclass
class DesignMeta:
    """Everything fixed by the metadata pass; picklable (ships to the workers once).

    The :class:`ModelSpec` itself holds formulae objects that do not pickle, so
    workers rebuild it from ``sample`` (a few rows; deterministic) and cache it.
    """

    mf: ModelFrame
    sample: pd.DataFrame                  # rows that give formulae every level of factor predictors
    col_levels: dict                      # factor-typed column -> pd.Index of global levels
    factors: list                         # FactorInfo per distinct grouping factor, formula order
    structure: str                        # "none" | "single" | "nested"
    outer_inner: tuple[int, ...] = ()     # nested: indices into ``factors`` of (outer, inner)
    parent: np.ndarray | None = None      # nested: outer level of each inner level
    n_rows: int = 0
    n_kept: int = 0
    na_rows: int = 0
    na_cols: dict = field(default_factory=dict)
    fixed_names_full: tuple[str, ...] = ()
    term_names: tuple = ()                # per random term: Z column names
    direct: "DirectDesign | None" = None  # design columns that are data columns verbatim
    token: str = ""
    _spec: ModelSpec | None = field(default=None, repr=False)
    _luts: dict = field(default_factory=dict, repr=False)   # integer-id lookup tables, per process

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_spec"] = None
        d["_luts"] = {}
        return d

    # ---------------------------------------------------------------- spec
    def spec(self) -> ModelSpec:
        """The sample :class:`ModelSpec` (categories of factor columns set to the global levels)."""
        if self._spec is None:
            self._spec = _cached_spec(self)
        return self._spec

    def factor_of_term(self, k: int) -> int:
        name = self.mf.parsed.random[k].factor
        return next(i for i, f in enumerate(self.factors) if f.name == name)

    def blocks(self) -> list[tuple[int, tuple[int, ...]]]:
        """(factor index, term indices) per distinct factor, formula order."""
        out: dict[int, list[int]] = {}
        for k in range(len(self.mf.parsed.random)):
            out.setdefault(self.factor_of_term(k), []).append(k)
        return [(f, tuple(ks)) for f, ks in out.items()]

    def plan(self) -> StatsPlan:
        blocks = []
        for fi, ks in self.blocks():
            blocks.append(FactorBlock(self.factors[fi].name, ks,
                                      tuple(len(self.term_names[k]) for k in ks),
                                      self.factors[fi].n_levels))
        if self.structure == "none":
            return StatsPlan("none", ())
        if self.structure == "single":
            return StatsPlan("single", (blocks[0],))
        order = {b.factor: b for b in blocks}
        o, i = (self.factors[j].name for j in self.outer_inner)
        return StatsPlan("nested", (order[o], order[i]), parent=self.parent)

    def design(self, kept: np.ndarray, n_rows: int, info: dict | None = None) -> StatsDesign:
        parsed = self.mf.parsed
        groups = []
        for k, t in enumerate(parsed.random):
            f = self.factors[self.factor_of_term(k)]
            q = len(self.term_names[k])
            groups.append(GroupTerm(factor=t.factor, terms=self.term_names[k],
                                    correlated=t.correlated and q > 1,
                                    codes=np.zeros(0, dtype=np.int64), levels=f.labels,
                                    Z=np.zeros((0, q))))
        names = tuple(self.fixed_names_full[j] for j in kept)
        return StatsDesign(formula=self.mf.formula, response=parsed.response, y=np.zeros(0),
                           X=np.zeros((0, len(names))), fixed_names=names, groups=tuple(groups),
                           row_index=pd.RangeIndex(0), fixed_formula=parsed.fixed_rhs,
                           info=dict(info or {}), n_rows=n_rows)

    # ---------------------------------------------------------- codes
    def column_codes(self, name: str, col: pd.Series) -> np.ndarray:
        """Global level codes of a factor-typed column (no missing values).

        Categoricals map their category codes through a cached table; other
        columns are factorised locally (one hash pass) and only the distinct
        values are looked up in the global levels.
        """
        levels = self.col_levels[name]
        if isinstance(col.dtype, pd.CategoricalDtype):
            m = _category_map(name, col.cat.categories, levels)
            codes = m[np.asarray(col.cat.codes, dtype=np.int64)]
        else:
            local, uniq = pd.factorize(col, use_na_sentinel=True)
            gl = self._lookup(name, levels, uniq)
            codes = gl[local]
        if len(codes) and codes.min() < 0:
            raise _unseen(name)
        return codes.astype(np.int64, copy=False)

    def column_local(self, name: str, col: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Groups of a factor column without an n-sized remapping.

        Returns ``(ids, codes, remap)``: the sorted global level ids present, and
        row codes with ``remap[codes[i]]`` the local id (``0..len(ids)-1``) of row ``i``.
        Integer ids in a compact range go through a lookup table (:func:`.kernels.lut_codes`;
        ``codes`` index the window of level codes between the lowest and highest present,
        ``remap = cumsum(present) - 1``); categoricals keep their category codes; other
        columns are factorised once (one hash pass) and only the distinct values are looked up.
        """
        levels = self.col_levels[name]
        lut = self._int_lut(name) if col.dtype.kind in "iu" else None
        if lut is not None:
            codes, present, lo, ok = lut_codes(col.to_numpy(), lut[0], lut[1])
            if not ok:
                raise _unseen(name)
            ids = np.flatnonzero(present).astype(np.int64) + lo
            remap = np.cumsum(present, dtype=np.int64) - 1
            return ids, codes, remap
        if isinstance(col.dtype, pd.CategoricalDtype):
            codes = np.asarray(col.cat.codes)
            ncat = len(col.cat.categories)
            m = _category_map(name, col.cat.categories, levels)[:ncat]
            present = np.bincount(codes.astype(np.intp, copy=False), minlength=ncat) > 0 \
                if len(codes) else np.zeros(ncat, dtype=bool)
            cats = np.flatnonzero(present)
            gl = m[cats]
        else:
            codes, uniq = pd.factorize(col, use_na_sentinel=True)
            cats = None
            gl = self._lookup(name, levels, uniq)
        if len(codes) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        if gl.min() < 0 or codes.min() < 0:
            raise _unseen(name)
        order = np.argsort(gl, kind="stable")
        rank = np.empty(len(gl), dtype=np.int64)
        rank[order] = np.arange(len(gl), dtype=np.int64)
        if cats is not None:
            remap = np.full(ncat, -1, dtype=np.int64)
            remap[cats] = rank
        else:
            remap = rank
        return gl[order].astype(np.int64, copy=False), codes, remap

    def _int_lut(self, name: str):
        """``(vmin, table)`` with ``table[v - vmin]`` the global code of integer id ``v`` (-1: not
        a level), when the column's levels are integers in a compact range; cached per process."""
        if name in self._luts:
            return self._luts[name]
        lut = None
        levels = self.col_levels[name]
        if levels.dtype.kind in "iu" and len(levels):
            vals = np.asarray(levels, dtype=np.int64)
            vmin, vmax = int(vals.min()), int(vals.max())
            span = vmax - vmin + 1
            if span <= max(LUT_SPAN_PER_LEVEL * len(vals), LUT_MIN_SPAN) and span < 2**31:
                table = np.full(span, -1, dtype=np.int32 if len(vals) < 2**31 else np.int64)
                table[vals - vmin] = np.arange(len(vals))
                lut = (vmin, table)
        self._luts[name] = lut
        return lut

    @staticmethod
    def _lookup(name: str, levels: pd.Index, uniq) -> np.ndarray:
        try:
            return np.asarray(levels.get_indexer(uniq), dtype=np.int64)
        except Exception:  # pragma: no cover - unorderable/odd mixes: compare as objects
            return np.asarray(pd.Index(levels, dtype=object).get_indexer(
                pd.Index(np.asarray(uniq, dtype=object), dtype=object)), dtype=np.int64)

    def factor_local(self, fi: int, sub: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Factor ``fi`` on ``sub``: ``(ids, codes, remap)`` as :meth:`column_local`."""
        f = self.factors[fi]
        if f.combined is None:
            return self.column_local(f.columns[0], sub[f.columns[0]])
        codes = self.factor_codes(fi, {c: self.column_codes(c, sub[c]) for c in f.columns})
        ids, local = local_codes(codes, f.n_levels)
        return ids, local, np.arange(len(ids), dtype=np.int64)

    def factor_codes(self, fi: int, col_codes: dict) -> np.ndarray:
        f = self.factors[fi]
        if f.combined is None:
            return col_codes[f.columns[0]]
        comb = np.zeros(len(col_codes[f.columns[0]]), dtype=np.int64)
        for c, k in zip(f.columns, f.radix):
            comb = comb * k + col_codes[c]
        return np.searchsorted(f.combined, comb).astype(np.int64)


def _unseen(name: str) -> DataError:
    return DataError(f"column {name!r} has values that the metadata pass did not see; was "
                     "the data changed between the two passes?")


def local_codes(codes: np.ndarray, G: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted global ids present in ``codes`` (values in ``0..G-1``) and local codes."""
    if len(codes) == 0:
        return np.zeros(0, dtype=np.int64), np.asarray(codes, dtype=np.int64)
    if G <= 4 * len(codes):
        present = np.bincount(codes, minlength=G) > 0
        ids = np.flatnonzero(present)
        lut = np.cumsum(present, dtype=np.int64) - 1
        return ids.astype(np.int64, copy=False), lut[codes]
    ids, inv = np.unique(codes, return_inverse=True)
    return ids.astype(np.int64, copy=False), inv.astype(np.int64)


@dataclass(frozen=True)
class DirectDesign:
    """Design columns that are data columns verbatim (``None``: a column of ones).

    Found by :func:`direct_design` when every fixed-effect and random-effect
    column of the formula is the intercept or a numeric data column (``y ~ x +
    (x | g)``); then the statistics pass takes the columns as they are instead
    of evaluating formulae's design matrices on each partition.
    """

    y: str
    X: tuple
    Z: tuple          # per random term: tuple of column names / None


def _plain_numeric(col: pd.Series) -> bool:
    dt = col.dtype
    return isinstance(dt, np.dtype) and dt.kind in "iuf"


def direct_design(meta: "DesignMeta") -> DirectDesign | None:
    """The :class:`DirectDesign` of ``meta`` when it applies, checked on the sample rows."""
    from .partition_stats import design_arrays, formulae_design

    spec = meta.spec()
    sample = meta.sample
    resp = meta.mf.parsed.response
    if resp not in sample.columns or not _plain_numeric(sample[resp]):
        return None
    formula_cols = set(meta.mf.formula_cols)

    def sources(names):
        out = []
        for nm in names:
            if nm == "Intercept":
                out.append(None)
            elif nm in formula_cols and nm in sample.columns and _plain_numeric(sample[nm]):
                out.append(nm)
            else:
                return None
        return tuple(out)

    common = spec._fixed_dm.common if spec._fixed_dm is not None else None
    X = sources(list(common.as_dataframe().columns)) if common is not None else ()
    if X is None or len(X) != len(meta.fixed_names_full):
        return None
    Z = []
    for k, dm in enumerate(spec._random_dms):
        z = (None,) if dm is None else sources(list(dm.as_dataframe().columns))
        if z is None or len(z) != len(meta.term_names[k]):
            return None
        Z.append(z)
    direct = DirectDesign(resp, X, tuple(Z))
    # the same numbers as formulae on real rows, or no shortcut
    try:
        ref = formulae_design(sample, meta)
        got = design_arrays(sample, meta, direct)
    except Exception:  # pragma: no cover - defensive: the formulae path stays available
        return None
    same = (np.array_equal(ref["y"], got["y"]) and np.array_equal(ref["X"], got["X"])
            and all(np.array_equal(a, b) for a, b in zip(ref["Z"], got["Z"])))
    return direct if same else None


_CAT_MAPS: dict = {}
_SPECS: dict = {}


def _category_map(name: str, cats: pd.Index, levels: pd.Index) -> np.ndarray:
    """Map from a partition's category codes to global level codes (cached per process)."""
    key = (name, len(cats), len(levels))
    hit = _CAT_MAPS.get(key)
    if hit is not None and (hit[0] is cats or hit[0].equals(cats)) and hit[1] is levels:
        return hit[2]
    m = np.append(levels.get_indexer(cats).astype(np.int64), -1)  # code -1 -> -1
    if len(_CAT_MAPS) > 64:
        _CAT_MAPS.clear()
    _CAT_MAPS[key] = (cats, levels, m)
    return m


def _cached_spec(meta: DesignMeta) -> ModelSpec:
    hit = _SPECS.get(meta.token)
    if hit is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hit = build_spec(meta.mf.formula, meta.sample, control=_IGNORE)
        # grouping-only columns: the sample does not hold every level; give the spec the global ones
        for name, levels in meta.col_levels.items():
            if name in hit.data.columns:
                hit.data[name] = pd.Categorical(hit.data[name], categories=levels, ordered=True)
        if len(_SPECS) > 8:
            _SPECS.clear()
        _SPECS[meta.token] = hit
    return hit


def _build_sample(scan: ScanPart, mf: ModelFrame, col_levels: dict) -> pd.DataFrame:
    """A few real rows, extended so each factor predictor shows every global level once."""
    head = scan.head.reset_index(drop=True).copy()
    extra = []
    for name in mf.formula_cols:
        if name not in col_levels or name == mf.parsed.response:
            continue
        levels = col_levels[name]
        seen = set(pd.Index(head[name].astype(object)).unique())
        missing = [v for v in levels if v not in seen]
        if missing:
            rows = head.iloc[np.zeros(len(missing), dtype=int)].copy()
            rows[name] = pd.Series(missing, index=rows.index, dtype=object)
            extra.append(rows)
    if extra:
        head = pd.concat([head.astype({c: object for c in col_levels if c in head})] + extra,
                         ignore_index=True)
    for name, levels in col_levels.items():
        if name in head:
            vals = head[name]
            if isinstance(vals.dtype, pd.CategoricalDtype):
                vals = vals.astype(object)
            head[name] = pd.Categorical(vals, categories=levels, ordered=True)
    return head


def build_meta(scan: ScanPart, mf: ModelFrame, control: Control | None = None,
               token: str = "") -> DesignMeta:
    """Global design facts from the merged pass-1 summary."""
    control = control or Control()
    if scan.n_rows == 0:
        raise no_data_error()
    if scan.na_rows:
        per = {c: scan.na_cols[c] for c in mf.used if c in scan.na_cols}
        report_missing(scan.na_rows, scan.n_rows, per, mf.na_action, stacklevel=3)
    if scan.n_kept == 0 or scan.head is None:
        raise no_rows_left_error()
    col_levels = {c: _column_levels(lv) for c, lv in scan.levels.items()}
    for name in mf.group_cols:
        lv = scan.levels[name]
        if lv.categories is None and lv.numeric:
            check_numeric_group(control, name, col_levels[name])
    sample = _build_sample(scan, mf, col_levels)
    # grouping factors
    combos_codes = None
    if scan.combos is not None:
        combos_codes = {}
        for c in mf.group_cols:
            combos_codes[c] = col_levels[c].get_indexer(pd.Index(
                scan.combos[c].astype(object) if isinstance(scan.combos[c].dtype, pd.CategoricalDtype)
                else scan.combos[c]))
    factors: list[FactorInfo] = []
    factor_row_codes = {}
    for name, cols in mf.factors:
        if len(cols) == 1:
            lv = col_levels[cols[0]]
            factors.append(FactorInfo(name, cols, len(lv), source=lv))
            if combos_codes is not None:
                factor_row_codes[name] = combos_codes[cols[0]]
            continue
        radix = tuple(len(col_levels[c]) for c in cols)
        comb = np.zeros(len(scan.combos), dtype=np.int64)
        for c, k in zip(cols, radix):
            comb = comb * k + combos_codes[c]
        uniq, inv = np.unique(comb, return_inverse=True)
        parts, rem = [], uniq.copy()
        for c, k in reversed(list(zip(cols, radix))):
            parts.append(np.asarray(col_levels[c].astype(str), dtype=object)[rem % k])
            rem //= k
        labels = pd.Index(interaction_labels(parts[::-1]), dtype=object)
        factors.append(FactorInfo(name, cols, len(uniq), _labels=labels, combined=uniq, radix=radix))
        factor_row_codes[name] = inv.astype(np.int64)
    structure, outer_inner, parent = "none", (), None
    if len(factors) == 1:
        structure = "single"
    elif len(factors) == 2:
        nest = find_nesting([factor_row_codes[f.name] for f in factors], [f.n_levels for f in factors])
        if nest is not None:
            structure, outer_inner, parent = "nested", nest[:2], nest[2]
        else:
            raise OutOfCoreError(
                f"grouping factors {[f.name for f in factors]} are crossed: the out-of-core "
                "engine handles one grouping factor or two nested ones (crossed factors need a "
                "pass over the rows at every sampler step); use engine='memory'")
    elif len(factors) > 2:
        raise OutOfCoreError(
            f"{len(factors)} grouping factors: the out-of-core engine handles one grouping factor "
            "or two nested ones; use engine='memory'")
    meta = DesignMeta(mf=mf, sample=sample, col_levels=col_levels, factors=factors,
                      structure=structure, outer_inner=outer_inner, parent=parent,
                      n_rows=scan.n_rows, n_kept=scan.n_kept, na_rows=scan.na_rows,
                      na_cols=dict(scan.na_cols), token=token)
    spec = meta.spec()
    from ..spec.lme4_names import lme4_name

    meta.fixed_names_full = tuple(lme4_name(c) for c in spec._fixed_dm.common.as_dataframe().columns)
    meta.term_names = tuple(g.terms for g in spec.design.groups)
    if spec.parsed.response in spec.data and isinstance(spec.data[spec.parsed.response].dtype,
                                                        pd.CategoricalDtype):
        raise response_not_numeric(spec.parsed.response)
    meta.direct = direct_design(meta)
    return meta


def check_formula_supported(mf: ModelFrame) -> None:
    """Formula features the out-of-core engine cannot reproduce exactly."""
    stateful = ("center(", "scale(", "standardize(", "poly(", "bs(")
    text = mf.formula.replace(" ", "")
    for s in stateful:
        if s in text:
            raise FormulaError(
                f"{s[:-1]}() in the formula: its constants would come from a sample, not from all "
                "rows, in the out-of-core engine; centre/scale the column beforehand (e.g. "
                "bayes_hlm.center on each partition with global means) or use engine='memory'")
