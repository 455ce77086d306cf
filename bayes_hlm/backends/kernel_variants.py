"""Variants of a Numba kernel compiled from its one Python body: serial twins of the
``parallel=True`` kernels, for work too small to need threads, and specialised entry points
(:func:`specialised`) that compile only the branches a model uses.

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
    return _recompiled(kernel, "serial", kernel.py_func.__globals__, options)


def specialised(kernel, suffix: str, replace: dict):
    """``kernel`` compiled again (``cache=True``, its own options) as ``<name>_<suffix>``, with
    the globals in ``replace`` bound to other values: compile-time constants (Numba prunes the
    branches they decide before typing, so the kernels called only there are never compiled)
    or other kernels to call. One Python body, several compiled entry points, each compiled
    the first time it is used and cached under its own name.

    The globals are a copy taken now: call this after the kernel's module has run."""
    opts = {k: v for k, v in kernel.targetoptions.items() if k not in ("nopython", "boundscheck")}
    return _recompiled(kernel, suffix, {**kernel.py_func.__globals__, **replace}, opts)


def _recompiled(kernel, suffix: str, globals_: dict, options: dict):
    f = kernel.py_func
    g = types.FunctionType(f.__code__, globals_, f"{f.__name__}_{suffix}", f.__defaults__,
                           f.__closure__)
    g.__qualname__ = f"{f.__qualname__}_{suffix}"
    g.__module__ = f.__module__
    g.__doc__ = f.__doc__
    return numba.njit(cache=True, **options)(g)


def pick(parallel, serial, work: int):
    """The kernel to run for ``work`` elements: ``parallel`` from :data:`PARALLEL_MIN_WORK` on."""
    return parallel if work >= PARALLEL_MIN_WORK else serial


def map_chunks(fn, starts, work: int) -> None:
    """Call ``fn(start)`` for each chunk start, on Numba's threads' worth of Python threads when
    each chunk's ``work`` is below :data:`PARALLEL_MIN_WORK` (its kernels run serial and
    ``nogil``; a parallel kernel must not be launched from several threads at once), else in
    order. ``fn`` writes its own disjoint slice of the output, so the numbers do not depend on
    which ran where or when; an exception in any chunk is raised here."""
    starts = list(starts)
    threads = min(numba.get_num_threads(), len(starts))
    if threads < 2 or work >= PARALLEL_MIN_WORK:
        for a in starts:
            fn(a)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(fn, a) for a in starts]:
            f.result()
