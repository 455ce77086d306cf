"""Fused one-pass kernel of the statistics pass (Numba, GIL released; NumPy fallback).

One grouping factor: everything the statistics pass needs from a partition is a
sum over rows of products of two *distinct columns* of the design -- the data
columns it is made of plus a column of ones.  With ``y ~ x + (x | g)`` the
columns are ``(y, x, 1)`` and

* per group, ``n_g, A_g = Z_gᵀZ_g, B_g = Z_gᵀX_g, c_g = Z_gᵀy_g, Z_gᵀ1`` use the 5
  distinct products ``1·1, 1·x, x·x, 1·y, x·y`` (not the 12 entries they fill);
* globally, ``N, yᵀy, Xᵀy, XᵀX`` use the raw products of all pairs, and the
  centred moments of ``y`` and of the ``X``/``Z`` columns (for the default priors)
  the centred products of the data columns.

:func:`single_partial` lists the distinct pairs once, accumulates them in two
passes over the rows (column means, then the products) in
:func:`_pair_sums` -- no ``X``/``Z`` matrix is materialised -- and expands the
sums into ``A, B, c, ...`` with a few ``(groups, pairs)`` gathers.  This is the
algebra of :func:`bayes_hlm.backends.sufficient_stats.compute_stats` (one
grouping factor) and :meth:`~bayes_hlm.distributed.partition_stats.Moments.of`;
only the order of the floating-point sums differs (tests check 1e-9 relative
agreement with the in-memory statistics).  Partials keep the pair sums ``H``
(:class:`PairLayout` expands them after the reduction).

Also here: :func:`lut_codes` (integer group ids to level codes through a lookup
table: two passes, no hash, no sort) and :func:`merge_sorted` (sum per-group rows
of parts keyed by sorted ids: linear pairwise merges).  The Numba functions are
compiled once per machine (``cache=True``) and release the GIL, so the threads
scheduler runs partitions in parallel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["HAVE_NUMBA", "PairLayout", "lut_codes", "merge_sorted", "single_pairs", "single_partial"]

try:  # numba comes with the compiled-density backend; the NumPy path is the fallback
    import numba

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover
    numba = None
    HAVE_NUMBA = False


def _pair_sums_py(cols, codes, remap, u, pk, pl, gk, gl, ck, cl):
    n = cols[0].shape[0]
    if len(remap) == 0:
        remap = np.arange(u)
    if n and (codes.min() < 0 or codes.max() >= len(remap)):
        raise IndexError("group code out of range")
    g = remap[codes]
    if n and (g.min() < 0 or g.max() >= u):
        raise IndexError("group code out of range")
    ext = list(cols) + [np.ones(n)]
    means = np.array([c.sum() / max(n, 1) for c in cols] + [1.0])
    H = np.stack([np.bincount(g, weights=ext[a] * ext[b], minlength=u) for a, b in zip(pk, pl)],
                 axis=1) if len(pk) else np.zeros((u, 0))
    S = np.array([ext[a] @ ext[b] for a, b in zip(gk, gl)])
    D = [c - means[k] for k, c in enumerate(cols)] + [np.zeros(n)]
    M = np.array([D[a] @ D[b] for a, b in zip(ck, cl)])
    return H, S, M, means


if HAVE_NUMBA:
    @numba.njit(cache=True, nogil=True, error_model="numpy")
    def _pair_sums_nb(cols, codes, remap, u, pk, pl, gk, gl, ck, cl):  # pragma: no cover - compiled
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


class _Pairs:
    """Distinct unordered pairs of column indices, numbered in order of first use."""

    def __init__(self):
        self.ids: dict = {}

    def __call__(self, a: int, b: int) -> int:
        return self.ids.setdefault((min(a, b), max(a, b)), len(self.ids))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        keys = list(self.ids)
        return (np.array([k[0] for k in keys], dtype=np.int64),
                np.array([k[1] for k in keys], dtype=np.int64))


def _readonly(a) -> np.ndarray:
    """A read-only contiguous float64 view: one Numba type for every column (Arrow-backed
    columns are read-only, computed ones are not; a mixed tuple would not index)."""
    v = np.ascontiguousarray(a, dtype=np.float64).view()
    v.flags.writeable = False
    return v


@dataclass(frozen=True, eq=False)
class PairLayout:
    """Where ``n_g, A, B, c, Z_gᵀ1`` sit among the per-group pair sums ``H`` (groups, pairs).

    Partial statistics keep ``H`` (5 numbers per group for ``y ~ x + (x | g)``
    instead of the 13 it expands to), so partials are smaller to hold, merge and
    ship; :meth:`expand` gives the backend's fields once, after the reduction.
    """

    A: np.ndarray      # (q, q) column of H per entry
    B: np.ndarray      # (q, p)
    c: np.ndarray      # (q,)
    zsum: np.ndarray   # (q,)

    def expand(self, H: np.ndarray) -> dict:
        return {"n": H[:, 0].copy(), "A": H[:, self.A], "B": H[:, self.B], "c": H[:, self.c],
                "zsum": H[:, self.zsum]}


def single_pairs(cols, yi: int, xi, zi, codes: np.ndarray, remap: np.ndarray, u: int):
    """Pair sums of one partition (see module docstring and :func:`single_partial`).

    Returns ``(H, layout, XtX, Xty, yty, y_mean, X_mean, Z_mean, y_M2, X_M2, Z_M2)``:
    ``H`` (u, pairs) per-group pair sums and ``layout`` a :class:`PairLayout`.
    """
    cols = tuple(_readonly(c) for c in cols)
    K = len(cols)
    ONE = K
    yi = int(yi)
    xs = [ONE if int(c) < 0 else int(c) for c in np.asarray(xi).reshape(-1)]
    zs = [ONE if int(c) < 0 else int(c) for c in np.asarray(zi).reshape(-1)]
    p, q = len(xs), len(zs)
    # per-group pairs (n_g first)
    P = _Pairs()
    P(ONE, ONE)
    layout = PairLayout(
        A=np.array([[P(a, b) for b in zs] for a in zs], dtype=np.int64).reshape(q, q),
        B=np.array([[P(a, j) for j in xs] for a in zs], dtype=np.int64).reshape(q, p),
        c=np.array([P(a, yi) for a in zs], dtype=np.int64),
        zsum=np.array([P(a, ONE) for a in zs], dtype=np.int64))
    # global raw pairs
    Gp = _Pairs()
    XtXi = np.array([[Gp(j, l) for l in xs] for j in xs], dtype=np.int64).reshape(p, p)
    Xtyi = np.array([Gp(j, yi) for j in xs], dtype=np.int64)
    ytyi = Gp(yi, yi)
    # centred pairs of data columns (the ones column is 0 once centred: index -1 -> 0)
    Cp = _Pairs()

    def cid(a, b):
        return -1 if a == ONE or b == ONE else Cp(a, b)

    X2i = np.array([[cid(j, l) for l in xs] for j in xs], dtype=np.int64).reshape(p, p)
    Z2i = np.array([cid(a, a) for a in zs], dtype=np.int64)
    y2i = cid(yi, yi)
    pk, pl = P.arrays()
    gk, gl = Gp.arrays()
    ck, cl = Cp.arrays()
    codes = np.asarray(codes)
    if codes.dtype not in (np.int32, np.int64) or not codes.flags.c_contiguous:
        codes = np.ascontiguousarray(codes, dtype=np.int64)
    remap = np.ascontiguousarray(remap, dtype=np.int64)
    fn = _pair_sums_nb if HAVE_NUMBA else _pair_sums_py
    H, S, M, means = fn(cols, codes, remap, int(u), pk, pl, gk, gl, ck, cl)
    M = np.append(M, 0.0)                    # index -1: the ones column, centred
    mx = means[np.array(xs, dtype=np.int64)] if p else np.zeros(0)
    mz = means[np.array(zs, dtype=np.int64)] if q else np.zeros(0)
    return (H, layout, S[XtXi], S[Xtyi], float(S[ytyi]), float(means[yi]), mx, mz,
            float(M[y2i]), M[X2i], M[Z2i])


def single_partial(cols, yi: int, xi, zi, codes: np.ndarray, remap: np.ndarray, u: int):
    """Fused statistics of one partition (see module docstring).

    Parameters
    ----------
    cols : tuple of 1-d float arrays
        The distinct numeric columns the design is made of (no copies into ``X``/``Z``).
    yi : int
        Index in ``cols`` of the response.
    xi, zi : sequence of int
        Per ``X`` / ``Z`` column: index in ``cols``, or -1 for a column of ones.
    codes, remap : int arrays
        Row ``i`` belongs to local group ``remap[codes[i]]`` (in ``0..u-1``); an empty
        ``remap`` means ``codes`` are the local groups.
    u : int
        Number of local groups.

    Returns
    -------
    tuple
        ``(n_g, A, B, c, zsum, XtX, Xty, yty, y_mean, X_mean, Z_mean, y_M2, X_M2, Z_M2)``
        with ``X_M2`` the (p, p) centred cross-products and ``Z_M2`` the (q,) centred sums
        of squares of the ``Z`` columns.
    """
    H, layout, *rest = single_pairs(cols, yi, xi, zi, codes, remap, u)
    f = layout.expand(H)
    return (f["n"], f["A"], f["B"], f["c"], f["zsum"], *rest)


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
