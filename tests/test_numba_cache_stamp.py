"""Numba's cache entries of bayes_hlm kernels are stamped with every compiled file of the
package (bayes_hlm._numba_cache): a change in a callee's file (inlined into the caller's
cache entry) must invalidate the caller, which Numba's own per-file stamp does not do."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from bayes_hlm import _numba_cache  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _cached_dispatchers(module):
    for name in dir(module):
        f = getattr(module, name)
        if isinstance(f, numba.core.registry.CPUDispatcher) \
                and type(f._cache).__name__ == "FunctionCache" \
                and getattr(f, "__module__", "") == module.__name__:
            yield name, f


@pytest.mark.parametrize("modname", [
    "bayes_hlm.statistics.fast_math", "bayes_hlm.statistics.poisson_lognormal",
    "bayes_hlm.statistics._jit", "bayes_hlm.backends.glmm_kernels",
    "bayes_hlm.backends.glmm_density", "bayes_hlm.glmer.kernels",
])
def test_every_cached_kernel_carries_the_package_stamp(modname):
    mod = importlib.import_module(modname)
    found = list(_cached_dispatchers(mod))
    assert found, f"no cached Numba function found in {modname}"
    for name, f in found:
        loc = f._cache._impl.locator
        assert type(loc).__name__ == "PackageStampLocator", (modname, name, type(loc))
        stamp = loc.get_source_stamp()
        assert stamp[1] == _numba_cache.package_fingerprint()


def test_fingerprint_covers_compiled_files_only(tmp_path):
    fp = _numba_cache.package_fingerprint()
    assert isinstance(fp, bytes) and len(fp) == 32
    # a file that mentions Numba is part of it, one that does not is not (reporters, docs)
    pkg = Path(_numba_cache.__file__).parent
    assert b"numba" in (pkg / "statistics" / "fast_math.py").read_bytes()
    assert b"numba" not in (pkg / "reporters" / "caterpillar.py").read_bytes()


def test_changed_package_stamp_invalidates_a_compiled_entry(tmp_path):
    """Compile a kernel into an empty cache, then see its index read as stale (empty) once the
    package fingerprint differs, and as valid again with the same fingerprint: in a child
    process so the cache directory is fresh."""
    code = r"""
import numpy as np
from bayes_hlm import _numba_cache
from bayes_hlm.statistics import fast_math
x = np.ones(4); fast_math.log_array(x, np.empty(4), np.empty(4))
f = fast_math.log_array
assert f._cache._cache_file._load_index(), "entry not written"
from numba.core.caching import FunctionCache
real = _numba_cache.package_fingerprint
_numba_cache.package_fingerprint = lambda: b"other" + real()  # another version of a callee
assert FunctionCache(f.py_func)._cache_file._load_index() == {}, "stale entry still loads"
_numba_cache.package_fingerprint = real
assert FunctionCache(f.py_func)._cache_file._load_index()
print("ok")
"""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


def test_functions_outside_the_package_keep_numbas_locator(tmp_path):
    src = tmp_path / "outside_mod.py"
    src.write_text("import numba\n@numba.njit(cache=True)\ndef f(x):\n    return x + 1\n")
    sys.path.insert(0, str(tmp_path))
    try:
        mod = importlib.import_module("outside_mod")
        assert mod.f(1) == 2
        assert type(mod.f._cache._impl.locator).__name__ != "PackageStampLocator"
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("outside_mod", None)
