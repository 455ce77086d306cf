"""nutpie's C callbacks around a compiled density: one factory for every compiled density
(the collapsed Gaussian one's per-structure entry points, the GLMM densities).

nutpie samples any model given as a C log-density callback plus a data pointer. A density
kernel ``logp_grad(x, buf, grad)`` (a ``cache=True`` Numba dispatcher) gets its callbacks here,
compiled once per machine into Numba's cache. Light on purpose (NumPy and Numba only): a
background compile's child (:mod:`.background_compile`) imports this and the density's module,
not the samplers, PyMC or pandas. :mod:`.numba_nuts` re-exports these names.
"""

from __future__ import annotations

import functools
import types

import numpy as np


# --------------------------------------------------------------------------- #
# C callbacks for nutpie: one factory for every compiled density
# --------------------------------------------------------------------------- #
def _logp_c(dim, x_, out_, logp_, data_):
    """nutpie's log-density callback around a density kernel ``logp_grad(x, buf, grad)``
    (a template: :func:`_bound_logp` binds ``logp_grad`` per kernel). ``data_`` is the packed
    buffer, its length in its first slot. Returns 0, or nutpie's codes 4 (log density not
    finite) and 3 (gradient not finite)."""
    head = numba.carray(data_, (1,), dtype=np.float64)
    buf = numba.carray(data_, (int(head[0]),), dtype=np.float64)
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (dim,))
    val = logp_grad(x, buf, out)  # noqa: F821 - bound per kernel in the function's globals
    logp_[0] = val
    if not np.isfinite(val):
        return 4
    for i in range(dim):
        if not np.isfinite(out[i]):
            return 3
    return 0


def _expand_c(dim, expanded, x_, out_, data_):
    # the draws are stored as sampled; the posterior variables are derived afterwards
    for i in range(dim):
        out_[i] = x_[i]
    return 0


def _signatures():
    import numba

    d = numba.types.CPointer(numba.types.double)
    logp = numba.types.int64(numba.types.uint64, d, d, d, numba.types.voidptr)
    expand = numba.types.int64(numba.types.uint64, numba.types.uint64, d, d, numba.types.voidptr)
    return logp, expand


@functools.cache
def _bound_logp(kernel):
    """:func:`_logp_c` calling ``kernel`` (a ``cache=True`` Numba dispatcher), as a function of
    its own that Numba caches on disk.

    Numba does not cache a closure over a dispatcher (the pickled closure differs between
    processes: every process compiled again, measured), so the template's code is re-bound
    with ``kernel`` as its global ``logp_grad``, named after the kernel and filed under the
    kernel's source file and line: Numba keys the cache file by that name and line, and checks
    it against that file's time stamp, so editing the density also invalidates its callback
    (which has the density compiled into it)."""
    import numba

    f = kernel.py_func
    name = f"{f.__name__}_logp_c"
    code = _logp_c.__code__.replace(co_name=name, co_filename=f.__code__.co_filename,
                                    co_firstlineno=f.__code__.co_firstlineno)
    g = types.FunctionType(code, {"numba": numba, "np": np, "logp_grad": kernel}, name)
    g.__qualname__ = f"{f.__qualname__}_logp_c"
    g.__module__ = f.__module__
    g.__doc__ = _logp_c.__doc__
    return g


def compile_cache_cold(kernel) -> bool:
    """True when :func:`callbacks` for ``kernel`` will compile (no usable Numba cache entry
    for its callback on this machine: first use, an upgrade, an empty ``NUMBA_CACHE_DIR``)."""
    from numba.core.caching import FunctionCache

    from ..progress import numba_cache_cold

    try:
        cache = FunctionCache(_bound_logp(kernel))
    except Exception:  # no cache locator (e.g. a read-only install): cannot tell, don't claim
        return False
    return numba_cache_cold(types.SimpleNamespace(_cache=cache))


#: kernel -> its (logp, expand) callbacks, built in this process
_CALLBACKS: dict = {}


def callbacks(kernel):
    """``(logp, expand)`` C callbacks for nutpie around the density ``kernel``
    (``logp_grad(x, buf, grad) -> log density``, gradient written to ``grad``), compiled on
    first use, then loaded from Numba's cache (once per process)."""
    if kernel not in _CALLBACKS:
        import numba

        kw = dict(cache=True, nogil=True, error_model="numpy")
        logp_sig, expand_sig = _signatures()
        _CALLBACKS[kernel] = (numba.cfunc(logp_sig, **kw)(_bound_logp(kernel)),
                              numba.cfunc(expand_sig, **kw)(_expand_c))
    return _CALLBACKS[kernel]


def loaded(kernel) -> bool:
    """True when ``kernel``'s callbacks were built in this process already."""
    return kernel in _CALLBACKS
