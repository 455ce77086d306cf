"""Data rules of the design builder, written once for the in-memory and the out-of-core paths.

:func:`bayes_hlm.spec.build.build_spec` applies them to a whole frame;
:mod:`bayes_hlm.distributed.design_meta` applies them partition by partition and to the
merged metadata (so a model built from Parquet files reads the data as the in-memory
one does): which values are missing, what is said about dropped rows, the
``a:b`` labels of interaction factors, which two factors are nested, and the
lmerControl-style check messages.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..errors import BayesHLMWarning, DataError
from .control import Control, apply_check

__all__ = ["aliased_columns", "check_group_sizes", "check_na_action", "check_numeric_group", "check_rank", "column_na", "inf_error",
           "interaction_labels", "is_factor_dtype", "missing_mask", "no_data_error", "no_rows_left_error",
           "report_missing", "response_not_numeric"]


def check_na_action(na_action: str) -> None:
    """``na_action`` must be "omit" or "raise"."""
    if na_action not in ("omit", "raise"):
        raise DataError(f"na_action must be 'omit' or 'raise', not {na_action!r}")


def inf_error(name: str, n_inf: int) -> DataError:
    """Infinite values are an error, never dropped silently."""
    return DataError(f"column {name!r} has {n_inf} infinite value(s); remove or recode them "
                     "(infinite values are never dropped silently)")


def column_na(name: str, col: pd.Series) -> np.ndarray | None:
    """Missing-value mask of one column (``col.isna()``), ``None`` when there is none.

    Infinite values in numeric columns raise (:func:`inf_error`).  NumPy float
    columns cost one reduction when clean (a finite sum has no NaN/inf); integer
    and boolean columns cannot hold missing values.
    """
    dt = col.dtype
    if isinstance(dt, np.dtype):
        if dt.kind == "f":
            a = col.to_numpy()
            with np.errstate(all="ignore"):
                if np.isfinite(np.add.reduce(a, dtype=np.float64)):
                    return None
            n_inf = int(np.isinf(a).sum())
            if n_inf:
                raise inf_error(name, n_inf)
            m = np.isnan(a)
            return m if m.any() else None
        if dt.kind in "iub":
            return None
    elif isinstance(dt, pd.CategoricalDtype):
        m = np.asarray(col.cat.codes) < 0
        return m if m.any() else None
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        n_inf = int(np.isinf(col.to_numpy(dtype=float, na_value=np.nan)).sum())
        if n_inf:
            raise inf_error(name, n_inf)
    m = np.asarray(col.isna().to_numpy(), dtype=bool)
    return m if m.any() else None


def missing_mask(sub: pd.DataFrame, columns=None) -> tuple[np.ndarray | None, dict]:
    """Rows with a missing value in any of ``columns`` (default all) and the count per column.

    Returns ``(mask or None, {column: count})``; infinite values raise.
    """
    bad = None
    per_col = {}
    for name in (sub.columns if columns is None else columns):
        m = column_na(name, sub[name])
        if m is None:
            continue
        per_col[name] = int(m.sum())
        bad = m.copy() if bad is None else (bad | m)
    return bad, per_col


def report_missing(n_na: int, n_rows: int, per_col: dict, na_action: str, stacklevel: int) -> None:
    """Raise (``na_action="raise"``) or warn about ``n_na`` dropped rows of ``n_rows``."""
    if na_action == "raise":
        raise DataError(f"{n_na} row(s) have missing values in used columns {per_col}; drop them or "
                        "use na_action='omit'")
    check_na_action(na_action)
    warnings.warn(f"dropped {n_na} of {n_rows} rows with missing values in {per_col} "
                  "(na_action='omit')", BayesHLMWarning, stacklevel=stacklevel + 1)


def no_data_error() -> DataError:
    return DataError("data has no rows")


def no_rows_left_error() -> DataError:
    return DataError("no rows left after dropping rows with missing values in used columns")


def response_not_numeric(name: str, family: str = "gaussian") -> DataError:
    hint = " (a two-level factor: family='bernoulli')" if family == "gaussian" else ""
    return DataError(f"response {name!r} is not numeric; a {family.capitalize()} model needs a "
                     f"numeric response{hint}")


def check_numeric_group(control: Control, name: str, values: np.ndarray) -> None:
    """A numeric grouping column with non-integer values is a factor (lmerControl-style check)."""
    vals = np.asarray(values, dtype=float)
    apply_check(control, "check_numeric_group", bool(np.all(vals == np.round(vals))),
                f"grouping column {name!r} is numeric with non-integer values; it is treated "
                f"as categorical with {len(np.unique(vals))} levels")


def check_group_sizes(control: Control, factor: str, source: str, n_levels: int, q: int, n: int,
                      allow_n: bool = False) -> None:
    """lme4's checks of a random term's level count against the rows (``check_nlev_gtr_1``,
    ``check_nobs_vs_nlev``, ``check_nobs_vs_nRE``). ``allow_n``: one level per row is allowed
    (glmer's observation-level effects for non-Gaussian families, ``checkNlevels(allow.n=TRUE)``)."""
    apply_check(control, "check_nlev_gtr_1", n_levels > 1,
                f"grouping factor {factor!r} has {n_levels} level; grouping factors need at "
                "least 2 levels")
    apply_check(control, "check_nobs_vs_nlev", n_levels < n or (allow_n and n_levels <= n),
                f"number of levels of grouping factor {factor!r} (={n_levels}) must be < number "
                f"of observations (={n}): every group has one row, so the group effect and the "
                "residual cannot be told apart")
    apply_check(control, "check_nobs_vs_nRE", n_levels * q < n or (allow_n and n_levels * q <= n),
                f"number of observations (={n}) <= number of random effects (={n_levels * q})"
                f" for term ({source}); the random-effects parameters and the residual "
                "variance are probably unidentifiable")


def check_rank(control: Control, names, drop: np.ndarray) -> list[str]:
    """The rank-deficiency check for aliased fixed-effect columns ``drop``; their names."""
    dropped = [names[j] for j in drop]
    if dropped:
        apply_check(control, "check_rank", control.check_rank == "ignore",
                    f"fixed-effect model matrix is rank deficient so dropping {len(drop)} column(s)"
                    f" / coefficient(s): {', '.join(dropped)}")
    return dropped


def interaction_labels(parts: list[np.ndarray]) -> np.ndarray:
    """Labels ``"a:b:..."`` of an interaction factor from its columns' string labels
    (``None`` where any part is ``None``), in the columns' order."""
    out = np.asarray(parts[0], dtype=object)
    for p in parts[1:]:
        p = np.asarray(p, dtype=object)
        ok = (out != None) & (p != None)  # noqa: E711
        out = np.where(ok, out.astype(str) + ":" + p.astype(str), None)
    return out


def is_factor_dtype(col: pd.Series) -> bool:
    """Columns read as factors whatever the formula: categorical, object, string, boolean."""
    return (
        isinstance(col.dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(col)
        or pd.api.types.is_string_dtype(col)
        or pd.api.types.is_bool_dtype(col)
    )


def aliased_columns(X: np.ndarray, tol: float = 1e-7) -> np.ndarray:
    """Indices of columns linearly dependent on earlier ones (R's lm order)."""
    norms = np.sqrt(np.einsum("ij,ij->j", X, X))
    norms[norms == 0] = 1.0
    G = (X.T @ X) / np.outer(norms, norms)
    keep: list[int] = []
    drop: list[int] = []
    for j in range(G.shape[0]):
        if keep:
            Gs = G[np.ix_(keep, keep)]
            g = G[keep, j]
            resid = G[j, j] - g @ np.linalg.solve(Gs, g)
        else:
            resid = G[j, j]
        (keep if resid > tol else drop).append(j)
    return np.array(drop, dtype=int)
