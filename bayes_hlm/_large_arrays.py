"""Large arrays written once, without numpy's transparent-huge-page advice.

numpy asks the kernel to back every allocation of 4 MiB or more with 2 MiB transparent huge
pages (``madvise(MADV_HUGEPAGE)``). Where the kernel's THP ``defrag`` setting is ``madvise``
(a common default), ``defer+madvise`` or ``always``, advised memory is compacted
*synchronously* at its first touch whenever no free huge page is at hand: on a long-running
machine, writing a fresh 0.8 GB array then stalls for 1.5-4 s of system time, against about
0.25 s of ordinary 4 KiB page faults (measured: the effect draws of a 10M-row Poisson fit,
2,000 x 100k float32; the spec's 10M x 7 design matrix). :func:`empty` takes such arrays
from an anonymous private mapping advised ``MADV_NOHUGEPAGE`` (THP ``enabled=always`` would
back it with huge pages too), and is
``np.empty`` everywhere else (small arrays, other systems, kernels without the stall).
"""

from __future__ import annotations

import functools
import math
import mmap
from pathlib import Path

import numpy as np

#: arrays of at least this many bytes may come from :func:`empty`'s own mapping
MIN_BYTES = 64 << 20

_THP = Path("/sys/kernel/mm/transparent_hugepage")


def _choice(text: str) -> str:
    """The bracketed (active) choice of a sysfs setting such as ``always [madvise] never``."""
    a, b = text.find("["), text.find("]")
    return text[a + 1:b] if 0 <= a < b else text.strip()


@functools.cache
def advice_stalls() -> bool:
    """Whether numpy's huge-page advice can stall a first touch on compaction here (THP
    ``enabled`` not ``never`` and ``defrag`` compacting synchronously for advised memory)."""
    try:
        enabled = _choice((_THP / "enabled").read_text())
        defrag = _choice((_THP / "defrag").read_text())
    except OSError:  # not Linux, or no THP
        return False
    return (enabled in ("always", "madvise") and defrag in ("always", "madvise", "defer+madvise")
            and hasattr(mmap, "MAP_PRIVATE") and hasattr(mmap, "MAP_ANONYMOUS"))


def empty(shape, dtype=float) -> np.ndarray:
    """An uninitialised, writable, C-contiguous array like ``np.empty(shape, dtype)``; from an
    anonymous private mapping without huge-page advice when it is at least :data:`MIN_BYTES`
    and :func:`advice_stalls` (module docstring), so writing it costs page faults only. The
    mapping lives as long as the array (its ``base``) and is zero-filled."""
    dt = np.dtype(dtype)
    shp = (int(shape),) if np.ndim(shape) == 0 else tuple(int(s) for s in shape)
    nbytes = math.prod(shp) * dt.itemsize
    if nbytes < MIN_BYTES or not advice_stalls():
        return np.empty(shp, dtype=dt)
    buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):  # THP ``enabled=always`` backs unadvised memory too
        buf.madvise(mmap.MADV_NOHUGEPAGE)
    return np.ndarray(shp, dtype=dt, buffer=buf)  # its base: the mapping
