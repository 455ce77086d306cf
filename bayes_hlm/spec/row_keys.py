"""Row keys: rows equal in every given column share one integer key (hashing, O(N)).

Used where many rows repeat a few distinct patterns: the fixed-effect design is evaluated
on the distinct rows only (:mod:`.build`), and generalized models merge identical rows
into cells (:mod:`bayes_hlm.backends.compression`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["firsts", "row_key"]

#: integer-code columns whose product of level counts is at most this are keyed by their
#: mixed-radix number (one factorization instead of one per column)
_RADIX_MAX = 1 << 40


def row_key(cols, N: int, max_keys: int | None = None) -> tuple[np.ndarray, int] | None:
    """``(key, k)``: rows equal in every column share a key in ``0..k-1``, numbered in order
    of first appearance; ``None`` as soon as there are more than ``max_keys`` keys.

    Each column is factorized (hashing, O(N)) and folded into the key, which is factorized
    again after every column so it stays below ``N²``. A column may be given as a pair
    ``(codes, n_codes)`` of integer codes already in ``0..n_codes-1`` (e.g. a categorical's
    codes): it is folded in without hashing it first. Floats: ``-0.0`` and ``0.0`` are one
    value.
    """
    cols = list(cols)
    floats = [c for c in cols if not isinstance(c, tuple) and np.asarray(c).dtype.kind == "f"]
    if len(floats) >= 3 and N:
        hashed = _hashed_key(floats)
        if hashed is not None:  # the float columns as one pair of codes
            cols = [c for c in cols if isinstance(c, tuple) or np.asarray(c).dtype.kind != "f"]
            cols.append(hashed)
    if N and cols and all(isinstance(c, tuple) for c in cols):
        radix = 1
        for c in cols:
            radix *= max(int(c[1]), 1)
        in_range = all(np.asarray(c).min() >= 0 and np.asarray(c).max() < max(int(n), 1)
                       for c, n in cols)
        if radix <= _RADIX_MAX and in_range:  # integer codes only: one mixed-radix number, one factorization
            mixed = np.zeros(N, dtype=np.int64)
            for codes, n_u in cols:
                mixed *= max(int(n_u), 1)
                mixed += np.asarray(codes, dtype=np.int64)
            key, u = pd.factorize(mixed, sort=False)
            if max_keys is not None and len(u) > max_keys:
                return None
            return key.astype(np.int64, copy=False), len(u)
    key = np.zeros(N, dtype=np.int64)
    k = 1 if N else 0
    for col in cols:
        if isinstance(col, tuple):
            codes, n_u = np.asarray(col[0], dtype=np.int64), int(col[1])
        else:
            col = np.asarray(col)
            if col.dtype.kind == "f":
                col = col + 0.0  # -0.0 and 0.0 are one value
            codes, uniq = pd.factorize(col, sort=False)
            n_u = len(uniq)
        if n_u <= 1:
            continue
        if k == 1:  # the first column that varies: its codes renumbered in first appearance
            key, u = pd.factorize(codes, sort=False)
        else:
            key, u = pd.factorize(key * n_u + codes, sort=False)
        k = len(u)
        if max_keys is not None and k > max_keys:
            return None
    return key.astype(np.int64, copy=False), k


def firsts(key: np.ndarray) -> np.ndarray:
    """First row of each key, in key order (keys numbered in order of first appearance)."""
    if key.size == 0:
        return np.zeros(0, dtype=np.int64)
    K = int(key.max()) + 1
    n = min(key.size, 1 << 12)
    while True:  # few keys appear early: a prefix that holds them all has the same firsts
        cm = np.maximum.accumulate(key[:n])
        if cm[-1] == K - 1 or n == key.size:
            return np.flatnonzero(np.r_[True, cm[1:] > cm[:-1]])
        n = min(key.size, 8 * n)


def _hashed_key(cols) -> tuple[np.ndarray, int] | None:
    """``(codes, n_codes)`` of the rows of several float columns from one random linear
    combination of them, factorized once (instead of one factorization per column); exact:
    each code's rows are checked equal to its first row, and ``None`` (hash both ways) is
    returned on a collision. Elementwise arithmetic in a fixed order, so equal rows always
    get equal hashes."""
    w = np.random.default_rng(20261129).uniform(1.0, 2.0, len(cols))
    h = np.zeros(len(cols[0]))
    for c, wj in zip(cols, w):
        h += np.asarray(c, dtype=float) * wj
    codes, uniq = pd.factorize(h + 0.0, sort=False)
    first = firsts(codes)
    for c in cols:
        c = np.asarray(c)
        if not np.array_equal(c[first][codes], c):  # -0.0 == 0.0: one value, as documented
            return None
    return codes.astype(np.int64, copy=False), len(uniq)
