"""Compiled kernels of the Dask passes that are not statistics (Numba, GIL released; NumPy fallback).

The per-partition statistics kernel is the statistics layer's
(:func:`bayes_hlm.statistics.single_pairs`, re-exported here); this module keeps
:func:`lut_codes` (integer group ids to level codes through a lookup table: two
passes, no hash, no sort) and :func:`merge_sorted` (sum per-group rows of parts keyed
by sorted ids: linear pairwise merges, the reduction step).  The Numba functions are
compiled once per machine (``cache=True``) and release the GIL, so the threads
scheduler runs partitions in parallel.
"""

from __future__ import annotations

import numpy as np

from ..statistics.pairs import PairLayout, single_pairs, single_partial

__all__ = ["HAVE_NUMBA", "PairLayout", "lut_codes", "merge_sorted", "single_pairs", "single_partial"]

try:  # numba comes with the compiled-density backend; the NumPy path is the fallback
    import numba

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover
    numba = None
    HAVE_NUMBA = False


# --------------------------------------------------------------------------- #
# Integer group ids -> global level codes through a lookup table
# --------------------------------------------------------------------------- #
def _lut_codes_py(v, vmin, table):
    off = np.asarray(v, dtype=np.int64) - vmin
    if len(off) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.bool_), 0, True
    if off.min() < 0 or off.max() >= len(table):
        return None, None, 0, False
    g = table[off].astype(np.int64)
    if g.min() < 0:
        return None, None, 0, False
    lo = int(g.min())
    g -= lo
    present = np.bincount(g, minlength=int(g.max()) + 1) > 0
    return g, present, lo, True


if HAVE_NUMBA:
    @numba.njit(cache=True, nogil=True, error_model="numpy")
    def _lut_codes_nb(v, vmin, table):  # pragma: no cover - compiled
        n = v.shape[0]
        R = table.shape[0]
        lo = np.int64(2**62)
        hi = np.int64(-1)
        for i in range(n):             # pass 1: range of the global codes; unseen values
            o = np.int64(v[i]) - vmin
            if o < 0 or o >= R:
                return np.zeros(0, np.int64), np.zeros(0, np.bool_), 0, False
            c = np.int64(table[o])
            if c < 0:
                return np.zeros(0, np.int64), np.zeros(0, np.bool_), 0, False
            lo = min(lo, c)
            hi = max(hi, c)
        if n == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.bool_), 0, True
        codes = np.empty(n, np.int64)
        present = np.zeros(hi - lo + 1, np.bool_)
        for i in range(n):             # pass 2: codes relative to the lowest, presence
            c = np.int64(table[np.int64(v[i]) - vmin]) - lo
            codes[i] = c
            present[c] = True
        return codes, present, lo, True


def lut_codes(v: np.ndarray, vmin: int, table: np.ndarray):
    """Global level codes of integer ids ``v`` through ``table[v - vmin]`` (-1: not a level).

    Returns ``(codes, present, lo, ok)``: codes relative to ``lo`` (the lowest global code
    present), ``present[k]`` whether global code ``lo + k`` occurs; ``ok`` is False when a
    value is not a level.  One pass for the range and one for the codes; no sort, no hash.
    """
    v = np.ascontiguousarray(v)
    if HAVE_NUMBA and v.dtype.kind in "iu":
        return _lut_codes_nb(v, np.int64(vmin), table)
    return _lut_codes_py(v, int(vmin), table)  # pragma: no cover


# --------------------------------------------------------------------------- #
# Merging per-group rows keyed by sorted ids
# --------------------------------------------------------------------------- #
if HAVE_NUMBA:
    @numba.njit(cache=True, nogil=True, error_model="numpy")
    def _merge2_nb(ia, va, ib, vb):  # pragma: no cover - compiled
        na, nb, W = ia.shape[0], ib.shape[0], va.shape[1]
        oi = np.empty(na + nb, np.int64)
        ov = np.empty((na + nb, W))
        i = j = k = 0
        while i < na and j < nb:
            a, b = ia[i], ib[j]
            if a < b:
                oi[k] = a
                for w in range(W):
                    ov[k, w] = va[i, w]
                i += 1
            elif b < a:
                oi[k] = b
                for w in range(W):
                    ov[k, w] = vb[j, w]
                j += 1
            else:
                oi[k] = a
                for w in range(W):
                    ov[k, w] = va[i, w] + vb[j, w]
                i += 1
                j += 1
            k += 1
        while i < na:
            oi[k] = ia[i]
            for w in range(W):
                ov[k, w] = va[i, w]
            i += 1
            k += 1
        while j < nb:
            oi[k] = ib[j]
            for w in range(W):
                ov[k, w] = vb[j, w]
            j += 1
            k += 1
        return oi[:k], ov[:k]


def merge_sorted(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Sum rows with equal ids across ``(ids, values)`` parts, each with sorted unique ids.

    Pairwise linear merges in a balanced tree (O(rows x log parts), sequential memory
    access, no sort, no arrays over all levels); ``values`` are (rows, W) float64.
    """
    parts = [(np.ascontiguousarray(i, dtype=np.int64), np.ascontiguousarray(v, dtype=np.float64))
             for i, v in parts]
    if not HAVE_NUMBA:  # pragma: no cover - NumPy: sort + reduceat
        ids = np.concatenate([i for i, _ in parts])
        vals = np.concatenate([v for _, v in parts])
        order = np.argsort(ids, kind="stable")
        s = ids[order]
        starts = np.flatnonzero(np.concatenate([[True], s[1:] != s[:-1]]))
        return s[starts], np.add.reduceat(vals[order], starts, axis=0)
    while len(parts) > 1:
        nxt = [_merge2_nb(*parts[k], *parts[k + 1]) for k in range(0, len(parts) - 1, 2)]
        if len(parts) % 2:
            nxt.append(parts[-1])
        parts = nxt
    return parts[0]
