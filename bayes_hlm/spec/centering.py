"""Group-mean and grand-mean centring of predictors.

Centring a level-1 predictor within groups splits its effect into a
within-group part (the centred column) and a between-group part (the group
mean), e.g. hsb82's ``cses = ses - meanses`` with ``meanses`` the school mean
of ``ses``. :func:`center` builds both columns on a copy of the data.
"""

from __future__ import annotations

import difflib
from collections.abc import Hashable, Sequence

import numpy as np
import pandas as pd

from ..errors import ColumnNotFoundError

__all__ = ["ColumnNotFoundError", "center"]


def _closest(name: Hashable, columns: Sequence[Hashable]) -> str | None:
    cols = [str(c) for c in columns]
    lower = {c.lower(): c for c in cols}
    key = str(name)
    if key.lower() in lower:  # a case-only difference is the most likely slip
        return lower[key.lower()]
    hit = difflib.get_close_matches(key, cols, n=1, cutoff=0.6)
    if hit:
        return hit[0]
    hit = difflib.get_close_matches(key.lower(), list(lower), n=1, cutoff=0.6)
    return lower[hit[0]] if hit else None


def _require(data: pd.DataFrame, name: Hashable, role: str) -> None:
    if name in data.columns:
        return
    close = _closest(name, list(data.columns))
    hint = f" Did you mean {close!r}?" if close is not None else ""
    shown = ", ".join(map(repr, list(data.columns)[:20])) + (", ..." if data.shape[1] > 20 else "")
    raise ColumnNotFoundError(
        f"{role} {name!r} is not a column of the data.{hint} "
        f"Pass one of the existing columns ({shown}) or add the column first."
    )


def center(
    data: pd.DataFrame,
    column: str,
    by: str | Sequence[str] | None = None,
    *,
    name: str | None = None,
    mean_name: str | None = None,
    overwrite: bool = False,
) -> pd.DataFrame:
    """Centre ``column`` at its group means (or at its grand mean).

    Returns a new frame with two columns appended: the centred values and the
    mean they were centred at. The input frame is never modified.

    Parameters
    ----------
    data : pandas.DataFrame
        Input data; left unchanged.
    column : str
        Numeric column to centre (e.g. ``"ses"``).
    by : str or list of str, optional
        Grouping column(s): group-mean centring, ``c = x - mean(x | group)``.
        ``None`` (default) centres at the grand mean of the whole column.
    name : str, optional
        Name of the centred column; default ``"c" + column`` (``"cses"``).
    mean_name : str, optional
        Name of the mean column; default ``"mean" + column`` (``"meanses"``).
    overwrite : bool, default False
        Replace ``name``/``mean_name`` if they already exist in ``data``
        (otherwise that is a ``ValueError``).

    Returns
    -------
    pandas.DataFrame
        A copy of ``data`` (same index and row order) with ``name`` and
        ``mean_name`` as float64 columns.

    Notes
    -----
    Means skip missing values (``NaN``): a row with a missing ``column`` gets a
    missing centred value but still its group's mean. Rows whose group key is
    missing get missing values in both new columns. Unobserved categories of a
    categorical ``by`` column are ignored.

    Raises
    ------
    ColumnNotFoundError
        (a ``KeyError``) if ``column`` or a ``by`` column is missing; the
        message names the closest existing column.
    ValueError
        If ``column`` is not numeric, is also a ``by`` column, or an output
        name already exists and ``overwrite`` is False.

    Examples
    --------
    >>> from bayes_hlm.datasets import load
    >>> hsb = load("hsb82").drop(columns=["cses", "meanses"])
    >>> out = center(hsb, "ses", by="school")
    >>> list(out.columns[-2:])
    ['cses', 'meanses']
    """
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"center() needs a pandas DataFrame, got {type(data).__name__}")
    _require(data, column, "column")
    if by is None:
        keys: list = []
    elif isinstance(by, (str, bytes)) or not isinstance(by, Sequence):
        keys = [by]
    else:
        keys = list(by)
    for key in keys:
        _require(data, key, "grouping column (by)")
    if column in keys:
        raise ValueError(f"cannot centre {column!r} within groups of itself; choose a different `by` column")

    values = data[column]
    if isinstance(values, pd.DataFrame):
        raise ValueError(f"column name {column!r} is duplicated in the data; make column names unique first")
    if not (pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype)):
        raise ValueError(
            f"column {column!r} has dtype {values.dtype}, not a numeric type; only numeric "
            f"predictors can be centred (convert it, e.g. with .astype(float), first)"
        )

    name = f"c{column}" if name is None else name
    mean_name = f"mean{column}" if mean_name is None else mean_name
    if name == mean_name:
        raise ValueError(f"name and mean_name must differ (both are {name!r})")
    if not overwrite:
        taken = [n for n in (name, mean_name) if n in data.columns]
        if taken:
            raise ValueError(
                f"column(s) {taken} already exist in the data; pass name=/mean_name= to choose "
                f"other names, drop them first, or pass overwrite=True to replace them"
            )

    x = pd.Series(values.to_numpy(dtype="float64", na_value=np.nan), index=data.index)
    if keys:
        mean = x.groupby([data[k] for k in keys], observed=True, sort=False, dropna=True).transform("mean")
    else:
        mean = pd.Series(x.mean(), index=data.index, dtype="float64")

    out = data.copy(deep=True)
    out[mean_name] = mean.to_numpy(dtype="float64")
    out[name] = (x - mean).to_numpy(dtype="float64")
    cols = [c for c in out.columns if c not in (name, mean_name)] + [name, mean_name]
    return out[cols]
