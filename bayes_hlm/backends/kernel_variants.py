"""Serial twins of the ``parallel=True`` Numba kernels, for work too small to need threads.

``parallel=True`` roughly doubles a kernel's compile time (Numba's parfor passes): on an
empty cache (first use on a machine, after an upgrade) the first small fit paid seconds of
compiling for a loop that runs in milliseconds. Each parallel kernel gets a serial twin
compiled from the same Python function (``prange`` runs as ``range``); callers pick by the
amount of work with :func:`pick`, so a small fit compiles only the serial twin and the parallel
kernel compiles the first time a large one needs it. Both compute each output element with
the same arithmetic: the numbers do not depend on which ran.
"""

from __future__ import annotations

import types

import numba

#: elements of work (e.g. draws x groups x q) from which the parallel kernel runs
PARALLEL_MIN_WORK = 2_000_000


def serial_twin(kernel, **options):
    """A ``cache=True`` serial compilation of ``kernel``'s Python function (``options``: the
    other ``njit`` options). It is renamed ``<name>_serial`` so that it has its own cache file:
    Numba keys cache entries by function name and signature, not by ``parallel=``."""
    f = kernel.py_func
    g = types.FunctionType(f.__code__, f.__globals__, f.__name__ + "_serial", f.__defaults__,
                           f.__closure__)
    g.__qualname__ = f.__qualname__ + "_serial"
    g.__module__ = f.__module__
    g.__doc__ = f.__doc__
    return numba.njit(cache=True, **options)(g)


def pick(parallel, serial, work: int):
    """The kernel to run for ``work`` elements: ``parallel`` from :data:`PARALLEL_MIN_WORK` on."""
    return parallel if work >= PARALLEL_MIN_WORK else serial
