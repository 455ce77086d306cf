"""Numba's on-disk cache keyed on every compiled source file of the package, not only the
function's own.

Why: Numba stamps a cached function with its own file's hash only, but a kernel calls
(and often inlines: ``inline="always"``, :mod:`.statistics.fast_math`) jitted functions of
other modules, whose code is compiled into the caller's cache entry. After an update that
changes only the callee's file (``git pull`` on a clone, a rebase, an editable install), the
caller's stale entry would load and run the old callee: silently wrong numbers. Here every
bayes_hlm function's stamp also carries a hash of all of the package's files that use Numba,
so any change to compiled code recompiles every kernel once (the "compiling once per machine"
phase), and a file without Numba (reporters, docs) invalidates nothing.

:func:`install` puts the locator in front of Numba's own (idempotent); each subpackage with
compiled kernels calls it before defining them. The cache directory is Numba's usual one
(``NUMBA_CACHE_DIR`` or ``__pycache__`` next to the sources); only the stamp changes.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=1)
def package_fingerprint() -> bytes:
    """SHA-256 over the path and bytes of every ``.py`` file of the package that mentions
    Numba (read once per process: ~1.6 MB of sources, a few ms)."""
    h = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*.py")):
        data = path.read_bytes()
        if b"numba" in data:
            h.update(str(path.relative_to(_PACKAGE)).encode())
            h.update(len(data).to_bytes(8, "little"))
            h.update(data)
    return h.digest()


def _inside_package(py_file: str) -> bool:
    try:
        Path(py_file).resolve().relative_to(_PACKAGE)
    except (ValueError, OSError):
        return False
    return True


@functools.lru_cache(maxsize=1)
def _locator_class():
    from numba.core import caching

    class PackageStampLocator(caching._CacheLocator):
        """Numba's own locator for the file (same cache directory), with the package's
        fingerprint added to the source stamp."""

        def __init__(self, inner):
            self._inner = inner

        def ensure_cache_path(self):
            self._inner.ensure_cache_path()

        def get_cache_path(self):
            return self._inner.get_cache_path()

        def get_source_stamp(self):
            return (self._inner.get_source_stamp(), package_fingerprint())

        def get_disambiguator(self):
            return self._inner.get_disambiguator()

        @classmethod
        def from_function(cls, py_func, py_file):
            if not _inside_package(py_file):
                return None
            for other in caching.CacheImpl._locator_classes:
                if other is cls:
                    continue
                inner = other.from_function(py_func, py_file)
                if inner is not None:
                    return cls(inner)
            return None

    return PackageStampLocator


def install() -> None:
    """Put :class:`PackageStampLocator` first in Numba's locator list (once per process)."""
    from numba.core import caching

    cls = _locator_class()
    if cls not in caching.CacheImpl._locator_classes:
        caching.CacheImpl._locator_classes.insert(0, cls)
