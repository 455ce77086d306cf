"""Counter-based standard normals keyed by (seed, stream, draw, level, component).

The exact group-effect draws of the marginal backend are regenerated on demand
(chunks of draws, subsets of levels). With one random stream per draw, a subset
of 1,000 of 1M levels still costs generating all 1M levels' noise for each
draw; here every normal is a pure function of its key, so any subset, chunk or
order of evaluation costs O(what is asked) and gives identical numbers.

Each pair of normals is Box-Muller on two 53-bit uniforms; each uniform is a 64-bit
hash of the key (chained ``fmix64``, the MurmurHash3 finaliser, whose output
passes BigCrush as a counter-based generator when chained this way -- the
construction of SplitMix64 / Java's ``SplittableRandom``).
"""

from __future__ import annotations

import numba
import numpy as np

from .kernel_variants import pick, serial_twin

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
_S11 = np.uint64(11)
_TWO_PI = 2.0 * np.pi
_INV_2_53 = 1.0 / 9007199254740992.0


@numba.njit(cache=True, inline="always")
def _fmix(h):
    h ^= h >> _S33
    h *= _M1
    h ^= h >> _S33
    h *= _M2
    h ^= h >> _S33
    return h


@numba.njit(cache=True, inline="always")
def _mix(h, x):
    # every field is folded in through the finaliser, so nearby keys decorrelate
    return _fmix(h ^ (np.uint64(x) * _GOLDEN + _GOLDEN))


@numba.njit(cache=True, inline="always")
def _uniform(h):
    return (np.float64(h >> _S11) + 0.5) * _INV_2_53  # in (0, 1): log is finite


@numba.njit(cache=True, parallel=True, nogil=True)
def _fill(key, stream, draws, levels, q, out):
    base = _mix(np.uint64(key), stream)
    for r in numba.prange(draws.shape[0]):
        hd = _mix(base, draws[r])
        for i in range(levels.shape[0]):
            hl = _mix(hd, levels[i])
            for j in range(0, q, 2):  # both Box-Muller outputs: columns j and j + 1
                h = _mix(hl, j)
                rad = np.sqrt(-2.0 * np.log(_uniform(_mix(h, 0))))
                ang = _TWO_PI * _uniform(_mix(h, 1))
                out[r, i, j] = rad * np.cos(ang)
                if j + 1 < q:
                    out[r, i, j + 1] = rad * np.sin(ang)


_fill_serial = serial_twin(_fill, nogil=True)  # nogil: chunks of draws run on threads; small requests: compiles in a third of the time


def compiled_kernels() -> tuple:
    """The cached Numba kernel a fit's first (small) requests use behind :func:`keyed_normals`
    (to tell a cold compile cache)."""
    return (_fill_serial,)


def seed_key(entropy) -> int:
    """A 64-bit key from a seed's entropy (int or sequence of ints, as SeedSequence takes)."""
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])


def keyed_normals(key: int, stream: int, draws, levels, q: int) -> np.ndarray:
    """Standard normals ``z[r, i, j]`` for draw ``draws[r]``, level ``levels[i]``, column ``j``.

    Parameters
    ----------
    key : int
        From :func:`seed_key`.
    stream : int
        Separates independent uses under one key (e.g. outer and inner factor).
    draws, levels : array_like of int
        Global draw and level indices; the values do not depend on which others
        are asked for alongside.
    q : int
        Columns per level.

    Returns
    -------
    ndarray, shape (len(draws), len(levels), q)
    """
    draws = np.ascontiguousarray(draws, dtype=np.int64)
    levels = np.ascontiguousarray(levels, dtype=np.int64)
    out = np.empty((draws.shape[0], levels.shape[0], q))
    fill = pick(_fill, _fill_serial, out.size)
    fill(np.uint64(key), np.int64(stream), draws, levels, np.int64(q), out)
    return out
