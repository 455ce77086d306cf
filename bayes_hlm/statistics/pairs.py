"""Per-group sums of products of column pairs: the one kernel behind every cross-product.

Every per-group cross-product the engines need is a sum over a group's rows of the
product of two *distinct columns* of the design -- the data columns plus a column of
ones.  With ``y ~ x + (x | g)`` the columns are ``(y, x, 1)`` and per group
``n_g, A_g = Z_gᵀZ_g, B_g = Z_gᵀX_g, c_g = Z_gᵀy_g, Z_gᵀ1`` use the 5 distinct
products ``1·1, 1·x, x·x, 1·y, x·y`` (not the 12 entries they fill).
:func:`single_pairs` lists the distinct pairs once, accumulates them in one pass
(:func:`pair_sums`; optionally with the global and the centred products the Dask
statistics pass needs) and :class:`PairLayout` expands the sums into ``A, B, c, ...``
with a few ``(groups, pairs)`` gathers.

Two engines compute the same sums in the same row order, so they agree bit for bit on
the per-group sums: NumPy (one ``bincount`` per distinct pair) and a compiled Numba
pass over the rows (:mod:`._jit`, used for large inputs where one pass beats one
``bincount`` per pair, and by the Dask partitions).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np

__all__ = ["NUMBA_MIN_ROWS", "PairLayout", "have_numba", "pair_sums", "pair_sums_numpy",
           "single_pairs", "single_partial"]

#: rows from which the "auto" engine uses the compiled pass (below, NumPy's bincounts are
#: as fast and need neither Numba's import nor a compiled-kernel load)
NUMBA_MIN_ROWS = 200_000

_EMPTY = np.zeros(0, dtype=np.int64)
_HAVE_NUMBA: bool | None = None


def have_numba() -> bool:
    """Whether Numba is installed (checked without importing it)."""
    global _HAVE_NUMBA
    if _HAVE_NUMBA is None:
        _HAVE_NUMBA = importlib.util.find_spec("numba") is not None
    return _HAVE_NUMBA


def pair_sums_numpy(cols, codes, remap, u, pk, pl, gk=_EMPTY, gl=_EMPTY, ck=_EMPTY, cl=_EMPTY):
    """Per-group, global and centred pair sums with NumPy (arguments as :func:`pair_sums`)."""
    n = cols[0].shape[0]
    K = len(cols)
    if len(remap) == 0:
        remap = np.arange(u)
    if n and (codes.min() < 0 or codes.max() >= len(remap)):
        raise IndexError("group code out of range")
    g = remap[codes]
    if n and (g.min() < 0 or g.max() >= u):
        raise IndexError("group code out of range")

    def prod(a, b, ext):
        # a product with the ones column is the other column itself (bitwise the same sum)
        if a == K:
            return None if b == K else ext[b]
        return ext[a] if b == K else ext[a] * ext[b]

    def gsum(a, b):
        w = prod(a, b, cols)
        return np.bincount(g, weights=w, minlength=u) if w is not None else \
            np.bincount(g, minlength=u).astype(np.float64)

    H = np.stack([gsum(a, b) for a, b in zip(pk, pl)], axis=1) if len(pk) else np.zeros((u, 0))
    means = np.array([c.sum() / max(n, 1) for c in cols] + [1.0]) if len(ck) or len(gk) \
        else np.ones(K + 1)
    ext = list(cols) + [np.ones(n)]
    S = np.array([ext[a] @ ext[b] for a, b in zip(gk, gl)])
    D = [c - means[k] for k, c in enumerate(cols)] + [np.zeros(n)] if len(ck) else []
    M = np.array([D[a] @ D[b] for a, b in zip(ck, cl)])
    return H, S, M, means


def pair_sums(cols, codes, remap, u, pk, pl, gk=_EMPTY, gl=_EMPTY, ck=_EMPTY, cl=_EMPTY,
              engine: str = "auto"):
    """Sums of products of column pairs, per group and over all rows.

    Parameters
    ----------
    cols : tuple of 1-d float64 arrays
        The distinct columns; index ``len(cols)`` stands for a column of ones.
    codes, remap : int arrays
        Row ``i`` belongs to group ``remap[codes[i]]`` (in ``0..u-1``); an empty
        ``remap`` means ``codes`` are the groups.
    u : int
        Number of groups.
    pk, pl : int64 arrays
        Per-group pairs: ``H[g, t] = Σ_{i in g} col[pk[t]]_i · col[pl[t]]_i``.
    gk, gl, ck, cl : int64 arrays, optional
        Global pairs ``S[t]`` and centred pairs ``M[t]`` (columns minus their means).
    engine : {"auto", "numba", "numpy"}
        "auto": Numba when installed and the rows are at least :data:`NUMBA_MIN_ROWS`.

    Returns
    -------
    H : (u, len(pk)) ndarray
    S : (len(gk),) ndarray
    M : (len(ck),) ndarray
    means : (len(cols) + 1,) ndarray
        Column means (the last, for the ones column, is 1).

    Raises
    ------
    IndexError
        A code outside ``remap`` or a group outside ``0..u-1``.
    """
    n = cols[0].shape[0]
    if engine == "auto":
        engine = "numba" if n >= NUMBA_MIN_ROWS and have_numba() else "numpy"
    if engine == "numba" and have_numba():
        from ._jit import pair_sums_nb

        return pair_sums_nb(tuple(_readonly(c) for c in cols), codes, remap, int(u),
                            pk, pl, gk, gl, ck, cl)
    if engine not in ("numba", "numpy"):
        raise ValueError(f"engine must be 'auto', 'numba' or 'numpy', not {engine!r}")
    return pair_sums_numpy(cols, codes, remap, int(u), pk, pl, gk, gl, ck, cl)


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


def _codes(codes) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.dtype not in (np.int32, np.int64) or not codes.flags.c_contiguous:
        codes = np.ascontiguousarray(codes, dtype=np.int64)
    return codes


@dataclass(frozen=True, eq=False)
class PairLayout:
    """Where ``n_g, A, B, c, Z_gᵀ1`` (and ``C``) sit among the per-group pair sums ``H``.

    Partial statistics may keep ``H`` (5 numbers per group for ``y ~ x + (x | g)``
    instead of the 13 it expands to), so partials are smaller to hold, merge and
    ship; :meth:`expand` gives the backend's fields once, after the reduction.
    """

    A: np.ndarray      # (q, q) column of H per entry
    B: np.ndarray      # (q, p)
    c: np.ndarray      # (q,)
    zsum: np.ndarray   # (q,)
    C: np.ndarray | None = None   # (q, r): products with the extra columns ``wi``

    def expand(self, H: np.ndarray) -> dict:
        out = {"n": H[:, 0].copy(), "A": H[:, self.A], "B": H[:, self.B], "c": H[:, self.c],
               "zsum": H[:, self.zsum]}
        if self.C is not None:
            out["C"] = H[:, self.C]
        return out


def single_pairs(cols, yi: int, xi, zi, codes: np.ndarray, remap: np.ndarray, u: int, *,
                 moments: bool = True, wi=None, engine: str = "numba"):
    """Pair sums of one block of rows: per group ``n, A, B, c, Z_gᵀ1`` (and the globals).

    Parameters
    ----------
    cols : tuple of 1-d float arrays
        The distinct numeric columns the design is made of (no copies into ``X``/``Z``).
    yi : int
        Index in ``cols`` of the response.
    xi, zi : sequence of int
        Per ``X`` / ``Z`` column: index in ``cols``, or -1 for a column of ones.
    codes, remap, u
        Groups as in :func:`pair_sums`.
    moments : bool
        Also the global ``XᵀX, Xᵀy, yᵀy`` and the centred moments (the Dask pass needs
        them; in memory they come from BLAS).
    wi : sequence of int, optional
        Extra columns ``W`` for a per-group ``Z_gᵀW_g`` (``layout.C``; a nested inner
        factor's coupling to its outer factor's columns).
    engine : {"numba", "auto", "numpy"}
        See :func:`pair_sums`; the default is the compiled pass whatever the size (the
        Dask partitions; :func:`bayes_hlm.statistics.cross.block_cross` passes "auto").

    Returns
    -------
    tuple
        ``(H, layout)`` when ``moments`` is False, else
        ``(H, layout, XtX, Xty, yty, y_mean, X_mean, Z_mean, y_M2, X_M2, Z_M2)``: ``H``
        (u, pairs) per-group pair sums, ``layout`` a :class:`PairLayout`.
    """
    cols = tuple(cols)
    K = len(cols)
    ONE = K
    yi = int(yi)
    xs = [ONE if int(c) < 0 else int(c) for c in np.asarray(xi).reshape(-1)]
    zs = [ONE if int(c) < 0 else int(c) for c in np.asarray(zi).reshape(-1)]
    ws = None if wi is None else [ONE if int(c) < 0 else int(c) for c in np.asarray(wi).reshape(-1)]
    p, q = len(xs), len(zs)
    # per-group pairs (n_g first)
    P = _Pairs()
    P(ONE, ONE)
    layout = PairLayout(
        A=np.array([[P(a, b) for b in zs] for a in zs], dtype=np.int64).reshape(q, q),
        B=np.array([[P(a, j) for j in xs] for a in zs], dtype=np.int64).reshape(q, p),
        c=np.array([P(a, yi) for a in zs], dtype=np.int64),
        zsum=np.array([P(a, ONE) for a in zs], dtype=np.int64),
        C=None if ws is None else
        np.array([[P(a, w) for w in ws] for a in zs], dtype=np.int64).reshape(q, len(ws)))
    pk, pl = P.arrays()
    codes = _codes(codes)
    remap = np.ascontiguousarray(remap, dtype=np.int64)
    if not moments:
        H, _, _, _ = pair_sums(cols, codes, remap, int(u), pk, pl, engine=engine)
        return H, layout
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
    gk, gl = Gp.arrays()
    ck, cl = Cp.arrays()
    H, S, M, means = pair_sums(cols, codes, remap, int(u), pk, pl, gk, gl, ck, cl, engine=engine)
    M = np.append(M, 0.0)                    # index -1: the ones column, centred
    mx = means[np.array(xs, dtype=np.int64)] if p else np.zeros(0)
    mz = means[np.array(zs, dtype=np.int64)] if q else np.zeros(0)
    return (H, layout, S[XtXi], S[Xtyi], float(S[ytyi]), float(means[yi]), mx, mz,
            float(M[y2i]), M[X2i], M[Z2i])


def single_partial(cols, yi: int, xi, zi, codes: np.ndarray, remap: np.ndarray, u: int,
                   engine: str = "numba"):
    """:func:`single_pairs` expanded (arguments as there).

    Returns
    -------
    tuple
        ``(n_g, A, B, c, zsum, XtX, Xty, yty, y_mean, X_mean, Z_mean, y_M2, X_M2, Z_M2)``
        with ``X_M2`` the (p, p) centred cross-products and ``Z_M2`` the (q,) centred sums
        of squares of the ``Z`` columns.
    """
    H, layout, *rest = single_pairs(cols, yi, xi, zi, codes, remap, u, engine=engine)
    f = layout.expand(H)
    return (f["n"], f["A"], f["B"], f["c"], f["zsum"], *rest)
