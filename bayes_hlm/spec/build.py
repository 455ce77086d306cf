"""From formula + data frame to a numeric :class:`Design` (lme4's ``lFormula``).

``formulae`` builds the fixed-effect matrix and each random term's ``n x q``
columns; the grouping factors become integer codes. The user's frame is never
modified: we work on a copy of the used columns.
"""

from __future__ import annotations

import difflib
import re
import warnings
from dataclasses import dataclass, field

import formulae as fm
import numpy as np
import pandas as pd
from formulae.environment import Environment

from .._large_arrays import empty as large_empty
from ..errors import BayesHLMWarning, DataError, FormulaError
from ..families import Family, default_family, get_family
from .control import Control, apply_check
from .collate import r_sorted
from .design import Design, GroupTerm
from .formula import ParsedFormula, RandomTerm, parse_formula
from .formula_safety import FORMULAE_FUNCTIONS, FUNCTIONS, NUMPY_FUNCTIONS, formula_namespace
from .row_keys import firsts, row_key
from .response import PLACEHOLDER, Response, check_response, evaluate_response, parse_response
from .weights import (check_weights_column, proportion_successes, read_weights,
                      refuse_gaussian_weights)
from .lme4_names import lme4_name
from .rules import (aliased_columns as _aliased, check_group_sizes, check_na_action,
                    check_numeric_group, check_rank, interaction_labels,
                    is_factor_dtype as _is_factor_dtype, missing_mask, no_data_error,
                    no_rows_left_error, report_missing, response_not_numeric)


@dataclass
class ModelSpec:
    """A parsed model bound to its training data: enough to rebuild designs for new data.

    Attributes
    ----------
    parsed : ParsedFormula
    design : Design
        The numeric design on the training rows.
    data : pandas.DataFrame
        The used columns of the training rows after missing-value handling and
        factor preparation (a copy; the user's frame is untouched).
    kept_fixed : ndarray of int
        Columns of formulae's fixed matrix kept after dropping aliased ones
        (never an ``offset(...)`` column).
    offset_cols : ndarray of int
        Columns of formulae's fixed matrix that are ``offset(...)`` terms.
    family : Family
        Response family and link (default Gaussian, identity).
    """

    parsed: ParsedFormula
    design: Design
    data: pd.DataFrame
    kept_fixed: np.ndarray
    control: Control = field(default_factory=Control)
    na_action: str = "omit"
    family: Family = field(default_factory=default_family)
    _fixed_dm: object = field(default=None, repr=False)
    _random_dms: list = field(default_factory=list, repr=False)
    offset_cols: np.ndarray = field(default_factory=lambda: np.array([], dtype=int))
    #: the ``weights=`` column, and whether it holds binomial trials (proportion response)
    weights_col: str | None = None
    weights_are_trials: bool = False

    def trials(self, newdata: pd.DataFrame) -> np.ndarray:
        """Binomial trials of the rows of ``newdata``: from the ``cbind``/``p`` columns, or the
        weights column of a proportion response; an error saying what is missing."""
        if self.weights_are_trials:
            if self.weights_col not in newdata.columns:
                raise DataError(f"the binomial model needs the number of trials of each new row: "
                                f"newdata lacks the weights column {self.weights_col!r}; add it "
                                "or pass trials=... (a number or one per row)")
            return read_weights(newdata, self.weights_col)
        form = parse_response(self.parsed.response)
        needed = expr_vars(form.args[1]) if form.kind == "p" else \
            _response_vars(self.parsed.response)
        missing = sorted(c for c in needed if c not in newdata.columns)
        if missing:
            raise DataError(f"the binomial model needs the number of trials of each new row: "
                            f"newdata lacks column(s) {missing} of the response "
                            f"{self.parsed.response!r}; add them, or pass trials=... (a number "
                            "or one per row)")
        new = _prepare_new(self, newdata, needed)
        if form.kind == "p":
            return _response_values(self.parsed, new, self.family, part="trials")
        return _response_values(self.parsed, new, self.family).trials

    def weights(self, newdata: pd.DataFrame | None = None) -> np.ndarray | None:
        """Frequency weights of ``newdata`` (default: the training rows); None if unweighted."""
        if self.weights_col is None or self.weights_are_trials:
            return None
        if newdata is None:
            return self.design.weights
        return read_weights(newdata, self.weights_col)

    def _fixed_full(self, newdata: pd.DataFrame) -> np.ndarray | None:
        new = _prepare_new(self, newdata, self._fixed_vars())
        if self._fixed_dm.common is None:
            return None
        return np.asarray(self._fixed_dm.common.evaluate_new_data(new).design_matrix, dtype=float)

    def fixed_matrix(self, newdata: pd.DataFrame) -> np.ndarray:
        """Fixed-effect design rows for ``newdata`` (same columns as the fit)."""
        X = self._fixed_full(newdata)
        return np.zeros((len(newdata), 0)) if X is None else X[:, self.kept_fixed]

    def offset(self, newdata: pd.DataFrame | None = None) -> np.ndarray | None:
        """The offset (sum of the ``offset(...)`` terms) for ``newdata`` (default: the
        training rows); ``None`` when the model has none."""
        if newdata is None:
            return self.design.offset
        if not len(self.offset_cols):
            return None
        off = self._fixed_full(newdata)[:, self.offset_cols].sum(axis=1)
        if not np.all(np.isfinite(off)):
            raise DataError(f"the offset evaluates to {int((~np.isfinite(off)).sum())} non-finite "
                            "value(s) in the new data (NaN or inf, e.g. log of a value <= 0)")
        return off

    def group_columns(self, k: int, newdata: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``(codes, Z)`` of random term ``k`` for ``newdata``; unseen levels get code -1."""
        term = self.parsed.random[k]
        g = self.design.groups[k]
        new = _prepare_new(self, newdata, expr_vars(term.expr) | set(term.factor_columns))
        dm = self._random_dms[k]
        Z = np.asarray(dm.evaluate_new_data(new).design_matrix, dtype=float) if dm is not None \
            else np.ones((len(new), 1))
        labels = factor_labels(new, term.factor_columns)
        codes = pd.Index(g.levels).get_indexer(labels)
        return codes.astype(np.int64), Z

    def _fixed_vars(self) -> set[str]:
        return expr_vars(self.parsed.fixed_rhs)


def expr_vars(rhs: str) -> set[str]:
    """The data columns a formula expression reads (``"x * log(z)"`` -> ``{"x", "z"}``).

    Parameters
    ----------
    rhs : str
        One side of a formula, or one term (formulae's syntax).

    Returns
    -------
    set of str

    Raises
    ------
    FormulaError
        When formulae cannot parse ``rhs``.
    """
    try:
        names = fm.model_description(f"y0bhlm ~ {rhs}").var_names
    except Exception as exc:  # formulae raises several types
        raise FormulaError(f"cannot parse model term(s) {rhs!r}: {exc}") from None
    return {n for n in names if n and n != "y0bhlm"}


def _response_vars(response: str) -> set[str]:
    names = expr_vars(response)
    return names


def _missing_column_error(name: str, columns) -> FormulaError:
    close = difflib.get_close_matches(str(name), [str(c) for c in columns], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return FormulaError(
        f"column {name!r} used in the formula is not in the data{hint} "
        f"(columns: {', '.join(map(str, list(columns)[:20]))})"
    )


def used_columns(parsed: ParsedFormula, data: pd.DataFrame) -> list[str]:
    """The columns of ``data`` a parsed formula reads, response first, each once.

    Raises
    ------
    FormulaError
        A column is not in ``data`` (naming the closest match).
    DataError
        A column name appears more than once in ``data``.
    """
    used: list[str] = []
    groups = [set(t.factor_columns) for t in parsed.random]
    sets = [_response_vars(parsed.response), expr_vars(parsed.fixed_rhs)]
    sets += [expr_vars(t.expr) for t in parsed.random] + groups
    for s in sets:
        for name in sorted(s):
            if name not in data.columns:
                raise _missing_column_error(name, data.columns)
            if int((data.columns == name).sum()) > 1:
                raise DataError(f"column {name!r} appears more than once in the data; rename or "
                                "drop the duplicates")
            if name not in used:
                used.append(name)
    return used


def _as_factor(col: pd.Series) -> pd.Categorical:
    """Categorical with R's level order: given categories, else sorted values; unused dropped.

    Strings sort as R's ``sort()`` in an en_US locale (case-insensitive first:
    ``"chilled" < "Nonchilled"``), see :mod:`bayes_hlm.spec.collate`.
    """
    if isinstance(col.dtype, pd.CategoricalDtype):
        return _drop_unused(col.array)
    levels = r_sorted(col.dropna().unique())
    return pd.Categorical(col, categories=levels, ordered=True)


def _drop_unused(cat: pd.Categorical) -> pd.Categorical:
    """``cat`` as an ordered Categorical without its unused categories (missing stay missing).

    pandas' ``remove_unused_categories`` sorts the codes (O(N log N)); a count per code is
    O(N) and gives the same categories in the same order.
    """
    codes = np.asarray(cat.codes)
    cats = cat.categories
    missing = len(codes) > 0 and codes.min() < 0  # (no N-long mask where none is missing)
    used = np.bincount(codes[codes >= 0] if missing else codes, minlength=len(cats)) > 0
    # the codes are a Categorical's, so valid: from_codes need not check them again
    if used.all():
        return pd.Categorical.from_codes(codes, categories=cats, ordered=True, validate=False)
    new_code = np.full(len(cats) + 1, -1, dtype=codes.dtype)  # last slot: missing (-1)
    new_code[:-1][used] = np.arange(int(used.sum()), dtype=codes.dtype)
    return pd.Categorical.from_codes(new_code[codes], categories=cats[used], ordered=True,
                                     validate=False)


def check_finite(sub: pd.DataFrame) -> None:
    """Infinite values in numeric columns are always an error (never dropped silently)."""
    missing_mask(sub)


def _handle_missing(sub: pd.DataFrame, na_action: str) -> pd.DataFrame:
    bad, per_col = missing_mask(sub)   # the rules of spec/rules.py (shared with the Dask path)
    if bad is not None:
        report_missing(int(bad.sum()), len(sub), per_col, na_action, stacklevel=4)
        sub = sub.loc[~bad]
    if len(sub) == 0:
        raise no_rows_left_error()
    return sub


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")


def looks_like_dates(values) -> bool:
    """True when every non-missing value is an ISO date/time written as text ("2020-01-31")."""
    vals = [v for v in values if isinstance(v, str)]
    return bool(vals) and len(vals) == len([v for v in values if not pd.isna(v)]) \
        and all(_ISO_DATE.match(v.strip()) for v in vals)


def dates_as_text_error(name: str, example: str) -> DataError:
    """The one message for dates written as text in a predictor (API and CLI alike)."""
    return DataError(
        f"column {name!r} holds dates written as text (e.g. {example!r}); as a predictor it would "
        "become a factor with one coefficient per date. Convert it to a number first, e.g. days "
        f"since the first date: (pd.to_datetime(df[{name!r}]) - pd.to_datetime(df[{name!r}]).min())"
        ".dt.days (on the command line: add such a column to the CSV), or group by it with "
        f"(1 | {name})")


def _check_mixed_labels(name: str, col: pd.Series) -> None:
    """Object columns whose distinct values print alike (``1`` and ``"1"``) are refused:
    they would become two levels with one label, which no report or prediction can tell apart."""
    vals = col.dropna()
    if not len(vals):
        return
    kinds = {type(v) for v in vals}
    if len(kinds) < 2:
        return
    labels = vals.map(lambda v: str(v).strip())
    per_label = pd.DataFrame({"label": labels.to_numpy(),
                              "kind": vals.map(lambda v: type(v).__name__).to_numpy()})
    clash = per_label.drop_duplicates().groupby("label")["kind"].nunique()
    clash = clash[clash > 1]
    if len(clash):
        lab = clash.index[0]
        examples = list(dict.fromkeys(v for v in vals if str(v).strip() == lab))[:3]
        raise DataError(
            f"column {name!r} mixes value types that print alike: {examples!r} (types "
            f"{sorted({type(v).__name__ for v in examples})}) would be different levels with the "
            f"same label; make the column one type, e.g. df[{name!r}].astype(str)")


def _check_dtypes(data: pd.DataFrame, used: list[str], group_cols: set[str]) -> None:
    """Column types a linear model cannot use: an error naming the column and the fix."""
    for name in used:
        col = data[name]
        if pd.api.types.is_object_dtype(col):
            _check_mixed_labels(name, col)
        if name in group_cols:
            continue
        if pd.api.types.is_complex_dtype(col):
            raise DataError(f"column {name!r} holds complex numbers; a linear model needs real "
                            "numbers (use the real part or the modulus)")
        if pd.api.types.is_datetime64_any_dtype(col) or pd.api.types.is_timedelta64_dtype(col) \
                or isinstance(col.dtype, pd.PeriodDtype):
            raise DataError(f"column {name!r} holds dates/times; convert it to a number first, "
                            f"e.g. (df[{name!r}] - df[{name!r}].min()).dt.days")
        if not isinstance(col.dtype, pd.CategoricalDtype) \
                and (pd.api.types.is_object_dtype(col) or pd.api.types.is_string_dtype(col)) \
                and looks_like_dates(col.dropna().unique()[:1000]):
            raise dates_as_text_error(name, str(col.dropna().iloc[0]))
        if pd.api.types.is_object_dtype(col):
            vals = col.dropna()
            kinds = {type(v) for v in vals}
            nums = sum(isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
                       for v in vals)
            if nums and nums < len(vals):
                text = [v for v in vals if not isinstance(v, (int, float, np.number))][:3]
                warnings.warn(
                    f"column {name!r} mixes numbers and text (e.g. {text!r}); it is treated as a "
                    f"factor with {vals.astype(str).nunique()} levels. If it is numeric, convert "
                    f"it with pd.to_numeric(df[{name!r}], errors='coerce')",
                    BayesHLMWarning, stacklevel=4,
                )
            elif kinds and not all(issubclass(k, (str, bool, int, float, np.number, np.bool_))
                                   for k in kinds):
                odd = sorted({k.__name__ for k in kinds})
                raise DataError(f"column {name!r} holds values of type {odd}; use numbers, "
                                "strings or a pandas Categorical")


def _prepare(data: pd.DataFrame, used: list[str], parsed: ParsedFormula, na_action: str,
             control: Control) -> pd.DataFrame:
    group_cols = {c for t in parsed.random for c in t.factor_columns}
    _check_dtypes(data, used, group_cols)
    sub = _handle_missing(data[used].copy(), na_action)
    for name in used:
        col = sub[name]
        if name in group_cols and _is_datetime(col):
            sub[name] = col = _date_labels(col)  # ISO labels: printable, saveable, predictable
        if name in group_cols and not _is_factor_dtype(col):
            check_numeric_group(control, name, col.to_numpy(dtype=float))
            sub[name] = _as_factor(col)
        elif _is_factor_dtype(col):
            sub[name] = _as_factor(col)
            cats = sub[name].cat.categories  # listed only for the message (100k levels: 0.1 s)
            if len(cats) < 2 and name != parsed.response and name not in group_cols:
                levels = list(cats)
                raise DataError(
                    f"factor {name!r} has {len(levels)} level {levels!r} in the rows used; a "
                    "factor predictor needs at least 2 levels (contrasts), so drop it from the "
                    "formula"
                )
    return sub


def _is_datetime(col: pd.Series) -> bool:
    return pd.api.types.is_datetime64_any_dtype(col)


def _date_labels(col: pd.Series) -> pd.Series:
    """Dates as ISO text ("2020-01-31", or with the time when it is not midnight): the level
    labels of a grouping factor; the same rule applies to new data in ``predict``."""
    def one(t):
        if pd.isna(t):
            return None
        return t.strftime("%Y-%m-%d") if t == t.normalize() else t.isoformat()
    return col.map(one).astype(object)


def _labels_of(col: pd.Series) -> np.ndarray:
    """String labels of a column (missing/unknown -> None), without float round-trips."""
    cat = col.array if isinstance(col.dtype, pd.CategoricalDtype) else _as_factor(col)
    names = np.asarray(cat.categories.astype(str), dtype=object)
    codes = np.asarray(cat.codes)
    return np.where(codes >= 0, names[np.maximum(codes, 0)], None)


def factor_labels(sub: pd.DataFrame, cols: tuple[str, ...]) -> pd.Index:
    """Level label of each row for the (possibly interacted) grouping factor ``cols``.

    One column gives its level as a string; several give lme4's ``a:b`` labels. Missing
    values give ``None``.
    """
    return pd.Index(interaction_labels([_labels_of(sub[c]) for c in cols]), dtype=object)


def _factor_codes(sub: pd.DataFrame, cols: tuple[str, ...]) -> tuple[np.ndarray, pd.Index]:
    """Integer codes of a (possibly interacted) factor; level order follows the columns' levels."""
    codes = np.zeros(len(sub), dtype=np.int64) if not cols else None
    for c in cols:
        cat = sub[c].array if isinstance(sub[c].dtype, pd.CategoricalDtype) else _as_factor(sub[c])
        cc = np.asarray(cat.codes, dtype=np.int64)
        codes = cc if codes is None else codes * len(cat.categories) + cc
    uniq, inv = _sorted_inverse(codes)
    labels = factor_labels(sub.iloc[_first_rows(inv, len(uniq))], cols)
    return inv.astype(np.int64, copy=False), labels


#: rows per slice of :func:`_first_rows` (2 MiB of int64: reused memory, no fresh pages)
_FIRST_CHUNK = 1 << 18


def _first_rows(inv: np.ndarray, k: int) -> np.ndarray:
    """The first row of each code ``0..k-1`` of ``inv`` (every code present): slices from the
    last to the first, each scattered in reverse so the earliest row is written last (no
    N-long index array)."""
    first = np.zeros(k, dtype=np.int64)
    n = len(inv)
    for e in range(n, 0, -_FIRST_CHUNK):
        s = max(e - _FIRST_CHUNK, 0)
        first[inv[s:e][::-1]] = np.arange(e - 1, s - 1, -1)
    return first


def _sorted_inverse(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(codes, return_inverse=True)`` for non-negative integer codes: by counting
    (O(N + max code)) when the code range is small, else by sorting."""
    top = int(codes.max()) + 1 if len(codes) else 0
    if top > 4 * len(codes) + 1024:
        uniq, inv = np.unique(codes, return_inverse=True)
        return uniq, inv.reshape(-1)
    present = np.bincount(codes, minlength=top) > 0
    rank = np.cumsum(present) - 1
    return np.flatnonzero(present), rank[codes]


#: Functions usable in formulas besides formulae's own (``C``, ``I``, ``scale``, ...): the one
#: allow-list lives in :mod:`.formula_safety`; this name is kept for existing imports.
FORMULA_FUNCTIONS = FUNCTIONS
_FORMULAE_FUNCTIONS = tuple(FORMULAE_FUNCTIONS)


def design_matrices(formula: str, data: pd.DataFrame, **kwargs):
    """formulae's ``design_matrices`` with nothing to evaluate but the allowed functions.

    ``env`` is an empty environment (formulae would otherwise capture the caller's
    globals: modules such as ``pd`` and ``np``), so even a formula that slipped past
    :func:`~.formula_safety.check_formula_text` finds only the allow-list.
    """
    return fm.design_matrices(formula, data, env=Environment([{}]),
                              extra_namespace=formula_namespace(), **kwargs)


def _eval_design(formula: str, sub: pd.DataFrame, what: str):
    try:
        with np.errstate(all="ignore"):  # log(<=0) etc.: reported below as a DataError
            return design_matrices(formula, sub, na_action="error")
    except KeyError as exc:  # formulae's way of saying "unknown function"
        name = str(exc.args[0]) if exc.args else "?"
        if name in sub.columns:
            raise FormulaError(f"cannot build the {what} from {formula!r}: column {name!r} "
                               "cannot be used this way") from None
        known = ", ".join(sorted(set(FORMULA_FUNCTIONS) - {"Rscale"}) + list(_FORMULAE_FUNCTIONS))
        raise FormulaError(
            f"unknown function {name!r} in {formula!r} ({what}); available functions: {known}, "
            f"or np.<name> for {', '.join(NUMPY_FUNCTIONS)}"
        ) from None
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FormulaError(f"cannot build the {what} from {formula!r}: {msg}") from None


def _fixed_term_kinds(common, kept: np.ndarray) -> list[tuple[str, list[int]]]:
    """``(kind, kept column indices)`` of each fixed term: ``intercept``, ``numeric``,
    ``categoric``, ``interaction`` or ``interaction_categoric`` (every component a factor).

    Bambi's default priors of Bernoulli/binomial models depend on these kinds."""
    if common is None:
        return []
    pos = {int(j): i for i, j in enumerate(kept)}
    out = []
    for name, term in common.terms.items():
        kind = term.kind
        if kind == "interaction" and all(getattr(c, "kind", "") == "categoric"
                                         for c in term.components):
            kind = "interaction_categoric"
        sl = common.slices[name]
        cols = [pos[j] for j in range(sl.start, sl.stop) if j in pos]
        if cols:
            out.append((str(kind), cols))
    return out


def _random_term(term: RandomTerm, sub: pd.DataFrame, response: str, control: Control,
                 allow_n: bool = False):
    """One group term; ``allow_n``: one level per row is allowed (glmer's observation-level
    effects for non-Gaussian families, lme4's ``checkNlevels(allow.n = TRUE)``)."""
    codes, levels = _factor_codes(sub, term.factor_columns)
    if term.expr == "1":
        Z, names, dm = np.ones((len(sub), 1)), ("Intercept",), None
    else:
        dms = _eval_design(f"{response} ~ {term.expr}", sub, f"random term ({term.source})")
        dm = dms.common
        Z = np.asarray(dm.design_matrix, dtype=float)
        names = tuple(lme4_name(n) for n in dm.as_dataframe().columns)
    if not np.all(np.isfinite(Z)):
        j = int(np.flatnonzero(~np.all(np.isfinite(Z), axis=0))[0])
        raise DataError(f"random-effect column {names[j]!r} in ({term.source}) evaluates to "
                        "non-finite values (NaN or inf, e.g. log of a value <= 0); fix the data or "
                        "the transformation")
    nlev = len(levels)
    check_group_sizes(control, term.factor, term.source, nlev, Z.shape[1], len(sub),
                      allow_n=allow_n)
    for j, name in enumerate(names):
        if name == "Intercept":
            continue
        col = Z[:, j]
        lo = np.full(nlev, np.inf)
        hi = np.full(nlev, -np.inf)
        np.minimum.at(lo, codes, col)
        np.maximum.at(hi, codes, col)
        apply_check(control, "check_slope_variation", bool(np.any(hi - lo > 0)),
                    f"random slope {name!r} in ({term.source}) does not vary within any level of "
                    f"{term.factor!r}; its group-level variance is not identified by the data")
    gt = GroupTerm(factor=term.factor, terms=names, correlated=term.correlated and len(names) > 1,
                   codes=codes, levels=levels, Z=Z)
    return gt, dm


def build_spec(formula: str, data: pd.DataFrame, *, na_action: str = "omit",
               control: Control | None = None, family: Family | str | None = None,
               weights: str | None = None) -> ModelSpec:
    """Parse ``formula`` against ``data`` and build the numeric design (lme4's ``lFormula``).

    Parameters
    ----------
    formula : str
        lme4 formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``.
    data : pandas.DataFrame
        Never modified.
    na_action : {"omit", "raise"}
        Drop rows with missing values in used columns (with a warning giving the
        count), or raise.
    control : Control, optional
        Actions for the input checks.
    family : Family or str, optional
        Response family (default Gaussian; a name such as ``"bernoulli"`` as in ``fit``): decides which responses are valid (0/1, factors,
        ``cbind(s, f)``, ``p(s, n)``; see :mod:`.response`) and allows one level per row
        (``(1|obs)``) for non-Gaussian families, as glmer does.
    weights : str, optional
        A data column of row weights: the trials of a binomial proportion response, else
        frequency weights (see :mod:`.weights`; refused for the Gaussian family).

    Returns
    -------
    ModelSpec
    """
    control = control or Control()
    check_na_action(na_action)
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    if len(data) == 0:
        raise no_data_error()
    parsed = parse_formula(formula)
    used = used_columns(parsed, data)
    if weights is not None:  # checked on the rows the formula keeps: no NA silently dropped
        check_weights_column(data, weights)
        other_na, _ = missing_mask(data[used])
        read_weights(data, weights, None if other_na is None else ~other_na)
        used = used + [weights] if weights not in used else used
    sub = _prepare(data, used, parsed, na_action, control)
    family = default_family() if family is None else get_family(family)
    form = parse_response(parsed.response)
    factor_response = parsed.response in sub and \
        isinstance(sub[parsed.response].dtype, pd.CategoricalDtype)
    special = _special_response(parsed, sub, family)
    resp_name = PLACEHOLDER if special else parsed.response
    sub_eval = sub.assign(**{PLACEHOLDER: 0.0}) if special else sub
    distinct = None if special else _distinct_fixed_rows(parsed, sub)
    if distinct is None:
        dms = _eval_design(f"{resp_name} ~ {parsed.fixed_rhs}", sub_eval, "fixed-effect design")
    else:  # the same matrix, evaluated once per distinct row (many rows, few patterns)
        first, inv = distinct
        dms = _eval_design(f"{resp_name} ~ {parsed.fixed_rhs}", sub_eval.iloc[first],
                           "fixed-effect design")
    if special:
        resp = _response_values(parsed, sub, family)
    elif distinct is not None:  # a plain numeric column (_distinct_fixed_rows checked)
        resp = Response(sub[parsed.response].to_numpy(dtype=float))
    else:
        y = np.asarray(dms.response.design_matrix, dtype=float)
        if y.ndim == 2 and y.shape[1] != 1 or factor_response:
            raise response_not_numeric(parsed.response, family.name)
        resp = Response(y.reshape(-1))
    y, trials = resp.y, resp.trials
    w, weights_are_trials = None, False
    if weights is not None:  # sub keeps the column (update, kfold, save/load)
        w = sub[weights].to_numpy(dtype=float)
        if family.name == "gaussian":
            raise refuse_gaussian_weights(weights)
        if family.needs_trials and form.kind == "plain":  # glm's proportion + trials as weights
            y = proportion_successes(y, w, parsed.response, weights, sub.index)
            trials, w, weights_are_trials = w, None, True
    if dms.common is None:  # 'y ~ 0 + (...)': no fixed effects at all
        X, names = np.zeros((len(y), 0)), []
        distinct = None
    else:
        X = np.asarray(dms.common.design_matrix, dtype=float)
        names = [lme4_name(c) for c in _column_names(dms.common)]
    # X_rows: the rows the checks below read (the distinct rows, each weighted by its count
    # for the aliasing check: the same XᵀX); X itself is expanded after them
    X_rows = X
    if not np.all(np.isfinite(y)):
        bad = int((~np.isfinite(y)).sum())
        raise DataError(f"response {parsed.response!r} evaluates to {bad} non-finite value(s) "
                        "(NaN or inf, e.g. log of a value <= 0); fix the data or the transformation")
    if X.size and not np.all(np.isfinite(X)):
        if distinct is not None:
            X = X[distinct[1]]  # counts of the message are per row
        j = int(np.flatnonzero(~np.all(np.isfinite(X), axis=0))[0])
        raise DataError(f"fixed-effect term {names[j]!r} evaluates to "
                        f"{int((~np.isfinite(X[:, j])).sum())} non-finite value(s) (NaN or inf, "
                        "e.g. log of a value <= 0); fix the data or the transformation")
    if distinct is not None:  # X stays the distinct rows until the Design is made
        X_rows = X * np.sqrt(np.bincount(distinct[1], minlength=len(X)))[:, None]
    if family.name != "gaussian":
        check_response(family, Response(y, trials), parsed.response)
    # offset(...) terms: coefficient fixed at 1, so they leave X (never estimated, never
    # "dropped as rank deficient"); several offsets add up
    is_off = np.array([n.replace(" ", "").startswith("offset(") for n in names], dtype=bool)
    offset_cols = np.flatnonzero(is_off)
    offset = X[:, offset_cols].sum(axis=1) if len(offset_cols) else None
    if offset is not None and distinct is not None:
        offset = offset[distinct[1]]
    coef_cols = np.flatnonzero(~is_off)
    X, names_all, names = X[:, coef_cols], names, [names[j] for j in coef_cols]
    if X.shape[1] == 0 and not parsed.random:
        raise FormulaError(f"formula {formula!r} has neither fixed nor random effects")
    drop = _aliased(X_rows[:, coef_cols]) if X.shape[1] else np.array([], dtype=int)
    info: dict = {"n_dropped_na": len(data) - len(sub)}
    if len(drop):
        info["dropped_fixed"] = check_rank(control, names, drop)
    kept_local = np.setdiff1d(np.arange(X.shape[1]), drop)
    kept = coef_cols[kept_local]
    if offset is not None:
        info["offset"] = [names_all[j] for j in offset_cols]
    info["fixed_terms"] = _fixed_term_kinds(dms.common, kept)
    groups, rdms = [], []
    for term in parsed.random:
        gt, dm = _random_term(term, sub_eval, resp_name, control,
                              allow_n=family.name != "gaussian")
        groups.append(gt)
        rdms.append(dm)
    # after lme4's own checks (their messages name the factor), before any sampling
    _check_estimable(parsed.response, y if offset is None else y - offset,
                     [names[j] for j in kept_local], family.name == "gaussian")
    X = X[:, kept_local]
    if distinct is not None:
        # the one N x p array of the spec: written once, no huge-page stalls (_large_arrays);
        # mode="clip" (the codes are in range) writes into `out` without numpy's buffer copy
        X = np.take(X, distinct[1], axis=0, mode="clip",
                    out=large_empty((len(distinct[1]), X.shape[1])))
    design = Design(
        formula=formula, response=parsed.response, y=y, X=X,
        fixed_names=tuple(names[j] for j in kept_local), groups=tuple(groups),
        row_index=sub.index, fixed_formula=parsed.fixed_rhs, info=info, trials=trials,
        offset=offset, weights=w,
        row_pattern=None if distinct is None else np.asarray(distinct[1], dtype=np.int64),
    )
    return ModelSpec(parsed=parsed, design=design, data=sub, kept_fixed=kept, control=control,
                     na_action=na_action, family=family, _fixed_dm=dms, _random_dms=rdms,
                     offset_cols=offset_cols, weights_col=weights,
                     weights_are_trials=weights_are_trials)


#: a fixed part of bare column names and operators only: its matrix is a row-wise function of
#: the columns (no stateful transform such as scale() or poly() that reads every row)
_PLAIN_RHS = re.compile(r"^[\s\w+*:\-]*$")


def _distinct_fixed_rows(parsed: ParsedFormula, sub: pd.DataFrame
                         ) -> tuple[np.ndarray, np.ndarray] | None:
    """``(first, inverse)`` of the distinct rows of the fixed part's columns when evaluating
    the fixed design on them alone gives the same matrix (a plain numeric response and a
    row-wise fixed part) and they are at most half the rows; else ``None``."""
    rhs, resp = parsed.fixed_rhs, parsed.response
    if not _PLAIN_RHS.match(rhs) or resp not in sub.columns or len(sub) < 1000:
        return None
    if isinstance(sub[resp].dtype, pd.CategoricalDtype) or sub[resp].dtype.kind not in "iuf":
        return None
    cols = []
    for name in sorted(expr_vars(rhs)):
        col = sub[name]
        if isinstance(col.dtype, pd.CategoricalDtype):
            cols.append((np.asarray(col.cat.codes, dtype=np.int64), len(col.cat.categories)))
        elif col.dtype.kind in "iufb":
            cols.append(col.to_numpy())
        else:
            return None
    found = row_key(cols, len(sub), max_keys=len(sub) // 2)
    if found is None:
        return None
    return firsts(found[0]), found[0]


def _column_names(dm) -> list[str]:
    """formulae's column names of a design matrix (without building its data frame)."""
    from formulae.utils import flatten_list

    return list(flatten_list([t.labels for t in dm.terms.values()]))  # as in as_dataframe


def _special_response(parsed: ParsedFormula, sub: pd.DataFrame, family: Family) -> bool:
    """A response formulae cannot evaluate itself: ``cbind``/``p``, or a factor for Bernoulli."""
    factor_response = parsed.response in sub and \
        isinstance(sub[parsed.response].dtype, pd.CategoricalDtype)
    return parse_response(parsed.response).kind != "plain" or \
        (factor_response and family.name in ("bernoulli",))


def _response_values(parsed: ParsedFormula, sub: pd.DataFrame, family: Family,
                     part: str | None = None) -> Response:
    """The response of the prepared rows ``sub`` (``part="trials"``: only the trials argument
    of ``p(s, n)``, returned as an array)."""
    sub_eval = sub.assign(**{PLACEHOLDER: 0.0})

    def numeric(expr: str) -> np.ndarray:
        return _eval_design(f"{PLACEHOLDER} ~ 0 + I({expr})", sub_eval,
                            f"response {parsed.response}").common.design_matrix

    form = parse_response(parsed.response)
    if part == "trials":
        expr = form.args[1]
        return np.asarray(sub[expr] if expr in sub.columns else numeric(expr),
                          dtype=float).reshape(-1)
    if _special_response(parsed, sub, family):
        return evaluate_response(form, sub, family, numeric)
    y = _eval_design(f"{parsed.response} ~ 1", sub, f"response {parsed.response}").response
    return Response(np.asarray(y.design_matrix, dtype=float).reshape(-1))


def _check_estimable(response: str, y: np.ndarray, coefs: list[str], gaussian: bool) -> None:
    """Models no sampler can answer, refused before any sampling with what is wrong."""
    n, p = len(y), len(coefs)
    if p >= n:
        shown = ", ".join(coefs[:8]) + (", ..." if p > 8 else "")
        raise DataError(
            f"the model has {p} fixed-effect coefficient(s) ({shown}) but only {n} row(s) of "
            "data: they cannot all be estimated (no residual degrees of freedom). Drop terms, or "
            "check for a text column read as a factor with one level per row (dates, IDs)")
    if gaussian and n > 1 and float(np.ptp(y)) == 0.0:
        raise DataError(
            f"response {response!r} is constant (every used row is {y[0]:g}): there is no "
            "variation to model, so the residual and group variances are not identified")


def build_design(formula: str, data: pd.DataFrame, **kwargs) -> Design:
    """Numeric design only; see :func:`build_spec` for the arguments."""
    return build_spec(formula, data, **kwargs).design


def _prepare_new(spec: ModelSpec, newdata: pd.DataFrame, needed: set[str]) -> pd.DataFrame:
    """New data with the training factor levels, so formulae encodes it identically."""
    if not isinstance(newdata, pd.DataFrame):
        raise DataError(f"newdata must be a pandas DataFrame, not {type(newdata).__name__}")
    missing = [c for c in needed if c not in newdata.columns]
    if missing:
        raise _missing_column_error(missing[0], newdata.columns)
    new = newdata[[c for c in spec.data.columns if c in newdata.columns]].copy()
    for name in new.columns:
        train = spec.data[name]
        if isinstance(train.dtype, pd.CategoricalDtype):
            cats = train.cat.categories
            col = _date_labels(new[name]) if _is_datetime(new[name]) else new[name].astype(object)
            if cats.dtype == object or pd.api.types.is_string_dtype(cats.dtype):
                col = col.map(lambda v: v if pd.isna(v) else str(v))
            elif pd.api.types.is_numeric_dtype(cats.dtype):
                col = pd.to_numeric(col, errors="coerce")
            new[name] = pd.Categorical(col, categories=cats, ordered=True)
    if spec.parsed.response not in new.columns and spec.parsed.response in spec.data.columns:
        new[spec.parsed.response] = 0.0
    return new
