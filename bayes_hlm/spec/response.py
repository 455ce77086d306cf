"""The response as researchers hold it, turned into numbers the family can model.

* a numeric column or expression (``y``, ``log(y)``): evaluated by formulae as before;
* a two-level factor, a string column or booleans for a Bernoulli model: R's rule, the
  first level (R's level order, or the pandas Categorical's) is the failure (0), every other
  level a success (1); ``False`` < ``True``;
* ``cbind(successes, failures)`` (lme4) and ``p(successes, trials)`` (Bambi) for binomial
  models: each argument a column or an expression of columns.

The family then checks the values (:meth:`bayes_hlm.families.Family.check_response`): a 3 in a
Bernoulli response, a negative or fractional count, more successes than trials are a
:class:`~bayes_hlm.errors.DataError` naming the column, the family and an example row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from ..errors import DataError
from ..families import Family

__all__ = ["ResponseForm", "Response", "parse_response", "evaluate_response", "PLACEHOLDER"]

#: column name standing in for a response formulae cannot evaluate itself
PLACEHOLDER = "y0bhlm"

_CALL = re.compile(r"^\s*(cbind|p)\s*\((.*)\)\s*$", re.S)


@dataclass(frozen=True)
class ResponseForm:
    """The response's spelling: ``kind`` is ``"plain"``, ``"cbind"`` or ``"p"``; ``args`` the
    two argument expressions of ``cbind``/``p`` (empty for plain)."""

    kind: str
    text: str
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Response:
    """Numeric response: ``y`` (values, or successes) and ``trials`` (binomial) or None."""

    y: np.ndarray
    trials: np.ndarray | None = None


def _split_args(inner: str) -> list[str]:
    """Split at top-level commas (``cbind(a, I(b - c))``)."""
    out, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        depth += (ch == "(") - (ch == ")")
        cur += ch
    out.append(cur.strip())
    return out


def parse_response(text: str) -> ResponseForm:
    """Recognise ``cbind(s, f)`` and ``p(s, n)``; anything else is a plain response."""
    m = _CALL.match(text)
    if not m:
        return ResponseForm("plain", text)
    args = _split_args(m.group(2))
    if len(args) != 2 or not all(args):
        raise DataError(f"response {text!r}: {m.group(1)}() takes two arguments, "
                        f"{'cbind(successes, failures)' if m.group(1) == 'cbind' else 'p(successes, trials)'}")
    return ResponseForm(m.group(1), text, tuple(args))


def binary_codes(col: pd.Series, column: str, family: Family) -> np.ndarray:
    """0/1 from a factor, string or boolean column (R's rule: first level = failure).

    ``col`` is already a Categorical in R's level order (see ``build._as_factor``).
    """
    cat = col.array if isinstance(col.dtype, pd.CategoricalDtype) else pd.Categorical(col)
    levels = list(cat.categories)
    if len(levels) > 2:
        raise DataError(f"response {column!r} has {len(levels)} levels {levels[:5]!r}; the "
                        f"{family.name} family needs two (the first, {levels[0]!r}, is the "
                        "failure); recode it, e.g. df[col] == 'level'")
    codes = np.asarray(cat.codes)
    if levels and all(isinstance(v, (bool, np.bool_)) for v in levels):  # booleans: True = 1
        return np.asarray(levels, dtype=float)[codes]
    return (codes > 0).astype(float)


def evaluate_response(form: ResponseForm, sub: pd.DataFrame, family: Family,
                      numeric: Callable[[str], np.ndarray]) -> Response:
    """Numbers for a ``cbind``/``p`` response or a factor-like response column.

    Parameters
    ----------
    form : ResponseForm
        Not ``"plain"`` with a numeric column (formulae evaluates those).
    sub : DataFrame
        The prepared rows (factors as R-ordered Categoricals).
    numeric : callable
        ``expression -> (n,) float array`` evaluated on ``sub`` (formulae, with the
        package's formula functions).
    """
    def value(expr: str) -> np.ndarray:
        if expr in sub.columns:
            col = sub[expr]
            if isinstance(col.dtype, pd.CategoricalDtype):
                raise DataError(f"{expr!r} in the response {form.text!r} is not numeric; "
                                "successes, failures and trials are counts")
            return np.asarray(col, dtype=float)
        return np.asarray(numeric(expr), dtype=float).reshape(-1)

    if form.kind == "plain":
        y = binary_codes(sub[form.text], form.text, family)
        trials = None
    else:
        if not family.needs_trials:
            raise DataError(f"response {form.text!r} gives successes and trials, which the "
                            f"{family.name} family does not model; use family='binomial'")
        s, other = (value(a) for a in form.args)
        y, trials = s, (s + other if form.kind == "cbind" else other)
        if form.kind == "cbind" and np.any(other < 0):
            r = int(np.flatnonzero(other < 0)[0])
            raise DataError(f"response {form.text!r} cannot be modelled by the binomial family: "
                            f"failures must be >= 0 (row {r}: {other[r]:g} failures)")
    for arr in (y, trials):
        if arr is not None and not np.all(np.isfinite(arr)):
            r = int(np.flatnonzero(~np.isfinite(arr))[0])
            raise DataError(f"response {form.text!r} evaluates to a non-finite value (row {r})")
    return Response(y=y, trials=trials)


def check_response(family: Family, resp: Response, column: str) -> None:
    """The family's own check (binomial also sees the trials)."""
    if family.needs_trials:
        family.check_response(resp.y, column, trials=resp.trials)
    else:
        family.check_response(resp.y, column)
