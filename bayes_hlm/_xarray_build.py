"""Building xarray objects without the import of array libraries nobody uses.

xarray asks of every array it wraps whether it is a dask (cupy, sparse, pint, cubed) array,
importing each installed such library on first use: dask.array costs 0.2-0.6 s (loaded
machine) in a process that has not imported it, a quarter of a 20k-row Gibbs fit's wall. The
fit's own Datasets (numpy arrays only) need no such import.
"""

from __future__ import annotations

import contextlib

#: the array libraries xarray checks every array against (its cache key: the module that
#: defines the array type, imported on first use)
_DUCK_MODULES = {"dask": "dask.array", "cupy": "cupy", "sparse": "sparse", "pint": "pint",
                 "cubed": "cubed"}


@contextlib.contextmanager
def unimported_duck_arrays_absent():
    """Build xarray objects without xarray importing array libraries nobody has imported.

    xarray's first Dataset in a process imports dask (installed here for the out-of-core
    engine) to ask whether each array is a dask array: 0.3-0.6 s CPU of a 20k fit's ~1 s
    (measured; in the Gibbs engine's threads it also held the GIL the chains need).
    An object of a module's type cannot exist while the module is not imported, so for
    such a module the answer is "no" without importing it: its entry in xarray's cache says
    so for the duration of the block and is removed after (a later import answers as usual).
    Not applied where xarray's private cache is missing."""
    import sys

    try:
        from xarray.namedarray import pycompat
        cache = pycompat._cached_duck_array_modules
        absent = [k for k, mod in _DUCK_MODULES.items()
                  if mod not in sys.modules and k not in cache]
        for k in absent:
            cache[k] = _Absent()
    except (ImportError, AttributeError):  # another xarray: build as usual
        yield
        return
    try:
        yield
    finally:
        for k in absent:
            cache.pop(k, None)


class _Absent:
    """xarray's view of a duck-array module that is not imported (no type matches)."""

    module = None
    type: tuple = ()
    available = False

    def __init__(self):
        from packaging.version import Version

        self.version = Version("0.0.0")
