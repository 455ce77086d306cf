"""``bayes_hlm._xarray_build``: xarray objects built from numpy arrays without importing the
array libraries (dask.array, ...) that xarray checks every array against; same objects, and
xarray answers as before once the block ends."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import xarray as xr

from bayes_hlm._xarray_build import unimported_duck_arrays_absent


def _dataset():
    return xr.Dataset({"a": (("chain", "draw"), np.arange(6.0).reshape(2, 3))},
                      coords={"chain": np.arange(2), "draw": np.arange(3)})


def test_same_objects_and_the_cache_restored():
    from xarray.namedarray import pycompat

    before = dict(pycompat._cached_duck_array_modules)
    with unimported_duck_arrays_absent():
        a = _dataset()
        tree = xr.DataTree.from_dict({"posterior": a})
    assert dict(pycompat._cached_duck_array_modules).keys() == before.keys()
    xr.testing.assert_identical(a, _dataset())
    xr.testing.assert_identical(tree["posterior"].to_dataset(), _dataset())


def test_no_dask_import_inside_and_dask_arrays_recognised_after():
    """In a fresh process: no dask.array import while the block builds Datasets with
    coordinates; afterwards a dask array is still a dask array to xarray (lazy)."""
    code = (
        "import sys, numpy as np, xarray as xr\n"
        "from bayes_hlm._xarray_build import unimported_duck_arrays_absent\n"
        "with unimported_duck_arrays_absent():\n"
        "    xr.Dataset({'a': (('chain',), np.zeros(2))}, coords={'chain': np.arange(2)})\n"
        "    xr.DataArray(np.zeros((2, 2)), dims=('x', 'y'))\n"
        "inside = 'dask.array' in sys.modules\n"
        "import dask.array as da\n"
        "v = xr.DataArray(da.zeros(4, chunks=2), dims=('x',))\n"
        "print(inside, isinstance(v.data, da.Array))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]
