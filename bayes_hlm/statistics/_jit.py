"""The compiled pair-sum kernel (Numba; imported only when the compiled engine is used).

Kept apart from :mod:`.pairs` so that importing the statistics layer does not import
Numba (REML and small in-memory fits never need it).  Compiled once per machine
(``cache=True``); releases the GIL, so the Dask threads scheduler runs partitions in
parallel.
"""

from __future__ import annotations

import numba
import numpy as np

from .._numba_cache import install as _install_numba_cache

__all__ = ["pair_sums_nb"]


_install_numba_cache()  # stamps cover every compiled file (bayes_hlm._numba_cache)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def pair_sums_nb(cols, codes, remap, u, pk, pl, gk, gl, ck, cl):  # pragma: no cover - compiled
    """Compiled :func:`bayes_hlm.statistics.pairs.pair_sums_numpy` (same sums, same row order)."""
    n = cols[0].shape[0]
    K = len(cols)
    T, TG, TC = pk.shape[0], gk.shape[0], ck.shape[0]
    m = remap.shape[0]
    ident = m == 0                 # no remap: the codes are the local groups
    # pass 1: column means (for the centred products); code checks
    sums = np.zeros(K + 1)
    for i in range(n):
        k = codes[i]
        if ident:
            if k < 0 or k >= u:
                raise IndexError("group code out of range")
        elif k < 0 or k >= m or remap[k] < 0 or remap[k] >= u:
            raise IndexError("group code out of range")
        c = 0
        for col in cols:
            sums[c] += col[i]
            c += 1
    means = sums / max(n, 1)
    means[K] = 1.0
    # pass 2: products of column pairs, per group and global
    H = np.zeros((u, T))
    S = np.zeros(TG)
    M = np.zeros(TC)
    rv = np.empty(K + 1)
    dv = np.zeros(K + 1)        # centred values; the ones column stays 0
    rv[K] = 1.0
    for i in range(n):
        c = 0
        for col in cols:
            v = col[i]
            rv[c] = v
            dv[c] = v - means[c]
            c += 1
        g = codes[i] if ident else remap[codes[i]]
        for t in range(T):
            H[g, t] += rv[pk[t]] * rv[pl[t]]
        for t in range(TG):
            S[t] += rv[gk[t]] * rv[gl[t]]
        for t in range(TC):
            M[t] += dv[ck[t]] * dv[cl[t]]
    return H, S, M, means
