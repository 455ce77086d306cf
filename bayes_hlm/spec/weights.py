"""Row weights (``fit(weights="col")``, ``--weights COL``): checked once, here.

Two meanings, as in R's ``glm``/``glmer`` and brms:

* **binomial proportions**: a plain response that is a proportion in [0, 1] with the number
  of trials as the weights (``glm(prop ~ x, family = binomial, weights = n)``): the model
  is ``round(prop * n)`` successes out of ``n`` trials, exactly as ``cbind(s, n - s)``;
* **frequency weights** for every other family: row ``i``'s log likelihood is multiplied
  by ``w_i`` (brms ``y | weights(w)``), so integer weights equal repeating the row ``w_i``
  times. The Gaussian family is refused: lme4's ``lmer(weights=)`` are *precision* weights
  (residual variance ``sigma^2 / w``), a different model under the same name, and the
  collapsed Gaussian engines work on unweighted sufficient statistics.

The weights column is read on the rows the formula keeps (after missing-value handling of
the formula's columns); a missing, negative or non-finite weight is an error naming the
column and the row, never a silently dropped row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DataError

__all__ = ["check_weights_column", "read_weights", "proportion_successes", "refuse_gaussian_weights"]


def _row(rows: pd.Index, r: int) -> str:
    return f"row {rows[r]!r}"


def check_weights_column(data: pd.DataFrame, column) -> None:
    """``column`` names one numeric column of ``data``."""
    if not isinstance(column, str):
        raise DataError(f"weights must be the name of a data column (e.g. weights='n'), not "
                        f"{type(column).__name__}")
    if column not in data.columns:
        import difflib

        close = difflib.get_close_matches(column, [str(c) for c in data.columns], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DataError(f"weights column {column!r} is not in the data{hint}")
    if int((data.columns == column).sum()) > 1:
        raise DataError(f"weights column {column!r} appears more than once in the data")
    dtype = data[column].dtype
    if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
        raise DataError(f"weights column {column!r} must be numeric (dtype {dtype} given)")


def read_weights(data: pd.DataFrame, column: str, keep: np.ndarray | None = None) -> np.ndarray:
    """The weights column ``column`` of ``data`` (rows ``keep``, a boolean mask), checked.

    Raises
    ------
    DataError
        The column is missing, not numeric, or has a missing, non-finite or negative value
        (naming the column and the first such row).
    """
    check_weights_column(data, column)
    col = data[column] if keep is None else data[column].loc[np.asarray(keep, dtype=bool)]
    w = np.asarray(col, dtype=float)
    for bad, what in ((np.isnan(w), "is missing"), (~np.isfinite(w) & ~np.isnan(w), "is infinite"),
                      (w < 0, "is negative")):
        idx = np.flatnonzero(bad)
        if idx.size:
            r = int(idx[0])
            raise DataError(f"weights column {column!r} {what} in {idx.size} used row(s) "
                            f"({_row(col.index, r)}: {col.iloc[r]!r}); weights must be finite "
                            "numbers >= 0 on every row the model uses")
    return w


def proportion_successes(prop: np.ndarray, trials: np.ndarray, response: str, column: str,
                         rows: pd.Index) -> np.ndarray:
    """Successes ``prop * trials`` of a binomial proportion response with trials as weights.

    Raises
    ------
    DataError
        A proportion outside [0, 1], trials that are not whole numbers >= 1, or
        ``prop * trials`` not a whole number (R's glm only warns "non-integer #successes").
    """
    prop = np.asarray(prop, dtype=float)
    n = np.asarray(trials, dtype=float)
    checks = (
        ((prop < 0) | (prop > 1), f"the response {response!r} must be a proportion in [0, 1] "
         f"when weights {column!r} give the trials"),
        ((n < 1) | (n != np.round(n)), f"weights {column!r} are the binomial trials here and "
         "must be whole numbers >= 1"),
    )
    for bad, what in checks:
        idx = np.flatnonzero(bad)
        if idx.size:
            r = int(idx[0])
            raise DataError(f"{what} ({_row(rows, r)}: proportion {prop[r]:g}, trials {n[r]:g})")
    s = prop * n
    off = np.abs(s - np.round(s)) > 1e-6 * np.maximum(1.0, n)
    idx = np.flatnonzero(off)
    if idx.size:
        r = int(idx[0])
        raise DataError(f"proportion {response!r} times the trials in weights {column!r} is not a "
                        f"whole number of successes in {idx.size} row(s) ({_row(rows, r)}: "
                        f"{prop[r]:g} x {n[r]:g} = {s[r]:g}); check that the weights are the "
                        "numbers of trials, or write the response as cbind(successes, failures)")
    return np.round(s)


def refuse_gaussian_weights(column: str) -> DataError:
    """The error for ``weights=`` with the Gaussian family (why, and what to do)."""
    return DataError(
        f"weights {column!r} with the gaussian family are not supported: lme4's lmer(weights=) "
        "are precision weights (residual variance sigma^2 / w), a different model from the "
        "frequency weights bayes_hlm applies to other families, and the collapsed Gaussian "
        "engines use unweighted sufficient statistics. Repeat rows for frequency weights, or "
        "use family='t' for a robust model")
