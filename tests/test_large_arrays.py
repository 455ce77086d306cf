"""bayes_hlm._large_arrays: large written-once arrays without numpy's huge-page advice."""

import mmap
import os
import pickle

import numpy as np
import pandas as pd
import pytest

from bayes_hlm import _large_arrays as la


def _sysfs(tmp_path, enabled, defrag):
    (tmp_path / "enabled").write_text(enabled + "\n")
    (tmp_path / "defrag").write_text(defrag + "\n")
    return tmp_path


@pytest.mark.parametrize("enabled,defrag,stalls", [
    ("always [madvise] never", "always defer defer+madvise [madvise] never", True),
    ("[always] madvise never", "always defer [defer+madvise] madvise never", True),
    ("always madvise [never]", "always defer defer+madvise [madvise] never", False),
    ("[always] madvise never", "always [defer] defer+madvise madvise never", False),
    ("always [madvise] never", "always defer defer+madvise madvise [never]", False),
])
def test_advice_stalls_reads_the_active_thp_choices(tmp_path, monkeypatch, enabled, defrag, stalls):
    monkeypatch.setattr(la, "_THP", _sysfs(tmp_path, enabled, defrag))
    la.advice_stalls.cache_clear()
    try:
        assert la.advice_stalls() is stalls
    finally:
        la.advice_stalls.cache_clear()


def test_no_thp_sysfs_means_numpy_arrays(tmp_path, monkeypatch):
    monkeypatch.setattr(la, "_THP", tmp_path / "absent")
    la.advice_stalls.cache_clear()
    try:
        assert la.advice_stalls() is False
        a = la.empty((2, 3), np.float32)
        assert a.flags.owndata and a.shape == (2, 3) and a.dtype == np.float32
    finally:
        la.advice_stalls.cache_clear()


@pytest.mark.skipif(not hasattr(mmap, "MAP_ANONYMOUS"), reason="no anonymous mappings here")
@pytest.mark.parametrize("shape,dtype", [((3, 5, 1), np.float32), ((7, 2), float), (11, np.int64)])
def test_large_arrays_come_from_an_unadvised_mapping(monkeypatch, shape, dtype):
    monkeypatch.setattr(la, "advice_stalls", lambda: True)
    monkeypatch.setattr(la, "MIN_BYTES", 0)
    a = la.empty(shape, dtype)
    assert isinstance(a.base, mmap.mmap) and not a.flags.owndata
    assert a.shape == (shape if isinstance(shape, tuple) else (shape,)) and a.dtype == dtype
    assert a.flags.c_contiguous and a.flags.writeable and a.flags.aligned
    assert not a.any()  # a fresh anonymous mapping is zero-filled
    a[...] = np.arange(a.size).reshape(a.shape)
    b = pickle.loads(pickle.dumps(a))  # by value, as any array
    np.testing.assert_array_equal(a, b)


def test_small_arrays_stay_numpys(monkeypatch):
    monkeypatch.setattr(la, "advice_stalls", lambda: True)
    a = la.empty((4, 4))
    assert a.flags.owndata and a.dtype == np.float64


def test_effect_draws_and_spec_X_from_the_mapping_are_unchanged(monkeypatch):
    """The sufficient form's effect draws and the spec's expanded X are the same values when
    they are written into the unadvised mapping (every array of them large)."""
    import bayes_hlm.backends.glmm_sufficient as gs
    from bayes_hlm.fitting.problem import build_problem

    rng = np.random.default_rng(0)
    G, n = 150, 8  # >= 1,000 rows: the spec builds X from the distinct fixed rows
    g = np.repeat(np.arange(G), n)
    a = rng.integers(0, 3, G * n)
    y = rng.poisson(np.exp(0.2 + 0.3 * a + rng.normal(0, 0.5, G)[g]))
    df = pd.DataFrame({"y": y, "a": pd.Categorical.from_codes(a, list("ABC")), "g": g.astype(str)})

    def run():
        pr = build_problem("y ~ a + (1 | g)", df, family="poisson")
        d, ps, fam = pr.design, pr.fit_priors, pr.spec.family
        assert d.row_pattern is not None  # X expanded from the distinct rows
        pk = gs.density_form(d).pack(d, ps, fam, 7)
        xs = np.array([pk.init, pk.init + 0.05])
        return d.X, gs.draw_effects(pk, xs, 11, np.array([4, 9]), dtype=np.float32)[0]

    X0, b0 = run()
    assert not isinstance(X0.base, mmap.mmap) and b0.flags.owndata  # small: numpy's arrays
    monkeypatch.setattr(la, "advice_stalls", lambda: True)
    monkeypatch.setattr(la, "MIN_BYTES", 0)
    X1, b1 = run()
    assert isinstance(X1.base, mmap.mmap) and isinstance(b1.base, mmap.mmap)
    assert X1.flags.c_contiguous and X1.dtype == np.float64
    np.testing.assert_array_equal(X1, X0)
    np.testing.assert_array_equal(b1, b0)


@pytest.mark.skipif(not hasattr(mmap, "MADV_NOHUGEPAGE") or not os.path.exists("/proc/self/smaps"),
                    reason="no MADV_NOHUGEPAGE / smaps here")
def test_the_mapping_refuses_huge_pages_even_where_thp_is_always(monkeypatch):
    """THP ``enabled=always`` backs unadvised memory too: the mapping says no explicitly
    (VmFlags ``nh`` in /proc/self/smaps)."""
    monkeypatch.setattr(la, "advice_stalls", lambda: True)
    monkeypatch.setattr(la, "MIN_BYTES", 0)
    a = la.empty((1 << 22,), np.float64)  # 32 MiB
    start = a.__array_interface__["data"][0]
    flags = None
    with open("/proc/self/smaps") as fh:
        current = None
        for line in fh:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(x, 16) for x in head.split("-"))
                current = lo <= start < hi
            elif current and line.startswith("VmFlags:"):
                flags = line.split()[1:]
                break
    assert flags is not None and "nh" in flags
