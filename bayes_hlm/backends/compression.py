"""Lossless compression of a generalized model's rows into cells.

Rows with the same group codes, fixed-effect row, group-term columns and offset share
one linear predictor ``eta`` in every posterior draw, so their likelihood terms can be
added up front:

* binomial (Bernoulli) rows: ``Σ w_i [y_i log p + (n_i − y_i) log(1 − p)]`` is one
  binomial cell with ``Σ w_i y_i`` successes of ``Σ w_i n_i`` trials;
* Poisson rows: ``Σ w_i (y_i eta − e^eta)`` is one cell with weight ``Σ w_i`` and
  response ``Σ w_i y_i / Σ w_i``;
* other families (NB, Gamma): rows that also share the response (and trials) merge
  into one row with the summed weight.

The log likelihood is unchanged up to a constant that does not depend on any parameter
(the binomial coefficients and ``log y!`` that :mod:`.glmm_kernels` leaves out anyway),
so the posterior is the same. The pointwise log likelihood (LOO) is computed from the
original rows by the results (:mod:`bayes_hlm.results.loo`), never from the cells.

:func:`row_table` is the same factorization on the fixed part only: the compiled density
evaluates ``X β + offset`` once per distinct pair (a handful with categorical predictors).
"""

from __future__ import annotations

import numpy as np

from ..spec.row_keys import firsts as _firsts
from ..spec.row_keys import row_key
from . import glmm_kernels as gk
from .glmm_density import Rows

__all__ = ["cell_index", "compress_rows", "row_table"]


def _columns(rows: Rows, with_response: bool):
    """The columns that define a cell (constant columns are skipped)."""
    cols = [c for c in rows.codes]
    cols += [rows.X[:, j] for j in range(rows.X.shape[1])]
    cols += [Z[:, j] for Z in rows.Z for j in range(Z.shape[1])]
    cols.append(rows.offset)
    if with_response:
        cols += [rows.y, rows.n]
    return cols


def cell_index(rows: Rows, with_response: bool = False, max_cells: int | None = None
               ) -> tuple[np.ndarray, int] | None:
    """``(cell of each row, number of cells)``: rows equal in every defining column (group
    codes, X, Z, offset; with ``with_response`` also y and trials) share a cell. ``None``
    when there would be more than ``max_cells`` (the caller then keeps the rows)."""
    return row_key(_columns(rows, with_response), rows.N, max_cells)


def row_table(rows: Rows) -> tuple[np.ndarray, np.ndarray]:
    """``(index, first)``: the distinct ``(X row, offset)`` pairs of ``rows`` are the rows
    ``first`` (in order of first appearance); ``index`` gives each row's pair."""
    cols = [rows.X[:, j] for j in range(rows.X.shape[1])] + [rows.offset]
    key, _ = row_key(cols, rows.N)
    return key, _firsts(key)


def compress_rows(rows: Rows, family, max_cells: int | None = None) -> Rows:
    """The cells of ``rows`` for ``family`` (module docstring); ``rows`` itself when no two
    rows merge or there would be more than ``max_cells`` cells."""
    code = gk.kernel_code(family)
    sufficient = code <= 3  # binomial kernels and Poisson are linear in (y, n, w)
    found = cell_index(rows, with_response=not sufficient, max_cells=max_cells)
    if found is None or found[1] == rows.N:
        return rows
    cell, K = found
    first = _firsts(cell)
    wsum = np.bincount(cell, weights=rows.w, minlength=K)
    if code <= 2:
        y = np.bincount(cell, weights=rows.w * rows.y, minlength=K)
        n = np.bincount(cell, weights=rows.w * rows.n, minlength=K)
        w = np.ones(K)
    elif code == 3:
        ysum = np.bincount(cell, weights=rows.w * rows.y, minlength=K)
        y = np.divide(ysum, wsum, out=np.zeros(K), where=wsum > 0)
        n, w = np.ones(K), wsum
    else:
        y, n, w = rows.y[first], rows.n[first], wsum
    return Rows(y=y, n=n, w=w, offset=rows.offset[first], X=rows.X[first],
                codes=[c[first] for c in rows.codes], Z=[Z[first] for Z in rows.Z])
