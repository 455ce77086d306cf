"""engine='dask': statistics from the Dask map-reduce equal the in-memory statistics."""

import warnings

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("dask")
pytest.importorskip("pyarrow")

from bayes_hlm.backends.sufficient_stats import compute_stats  # noqa: E402
from bayes_hlm.datasets.simulate import simulate, write_parquet  # noqa: E402
from bayes_hlm.distributed import OutOfCoreError, compute_stats_dask, priors_from_stats  # noqa: E402
from bayes_hlm.spec.build import build_spec  # noqa: E402
from bayes_hlm.spec.priors import default_priors  # noqa: E402

TOL = 1e-9


def _rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape
    scale = max(np.max(np.abs(a)) if a.size else 0.0, 1e-300)
    return float(np.max(np.abs(a - b)) / scale) if a.size else 0.0


def _assert_same(ref, got, names):
    for k in names:
        r = _rel(getattr(ref, k), getattr(got, k))
        assert r < TOL, (k, r)


SINGLE = ["N", "yty", "Xty", "XtX", "n_g", "A", "B", "c"]
NESTED = ["N", "yty", "Xty", "XtX", "n_in", "A_in", "B_in", "c_in", "C", "n_out", "A_out", "B_out", "c_out"]


def _messy(seed=3, n_groups=120):
    """Uneven groups, shuffled (groups split across partitions), categorical predictor, NAs."""
    sim = simulate(n_groups, "lognormal", corr=0.4, seed=seed, mean_rows=9)
    df = sim.data.copy()
    rng = np.random.default_rng(seed)
    df["c"] = pd.Series(rng.choice(["lo", "mid", "hi"], len(df)), dtype=object)
    df["k"] = pd.Categorical(rng.choice(["b", "a", "z"], len(df)), categories=["z", "b", "a"])
    df.loc[rng.choice(len(df), 25, replace=False), "x"] = np.nan
    df.loc[rng.choice(len(df), 7, replace=False), "c"] = None
    df.loc[rng.choice(len(df), 5, replace=False), "y"] = np.nan
    return df.sample(frac=1, random_state=seed).reset_index(drop=True)


def _memory(formula, df):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = build_spec(formula, df)
    return spec, compute_stats(spec.design)


def _dask(formula, source, scheduler="sync", **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compute_stats_dask(formula, source, scheduler, progressbar=False, **kw)


@pytest.mark.parametrize("formula", ["y ~ x + c + k + (x | g)", "y ~ x * c + (1 | g)",
                                     "y ~ c + (0 + x || g)"])
def test_single_stats_match_pandas_partitions(formula):
    df = _messy()
    spec, ref = _memory(formula, df)
    ds = _dask(formula, df, npartitions=7)
    assert ds.timings["n_partitions"] == 7
    _assert_same(ref, ds.stats, SINGLE)
    assert ds.design.fixed_names == spec.design.fixed_names
    assert ds.design.n == spec.design.n
    for g0, g1 in zip(spec.design.groups, ds.design.groups):
        assert list(g0.levels) == list(g1.levels) and g0.terms == g1.terms
    # priors from the moments in the statistics equal Bambi's defaults from the rows
    p0, p1 = default_priors(spec.design), priors_from_stats(ds)
    assert list(p0.priors) == list(p1.priors)
    for k in p0.priors:
        for a, b in zip(p0.priors[k].params.values(), p1.priors[k].params.values()):
            assert abs(a - b) <= 1e-9 * max(abs(a), 1), k
    np.testing.assert_allclose(p0.x_mean, p1.x_mean, rtol=1e-12, atol=1e-14)


def test_missing_values_dropped_and_counted():
    df = _messy()
    with pytest.warns(Warning, match="dropped 37 of"):
        ds = compute_stats_dask("y ~ x + c + (x | g)", df, "sync", npartitions=4, progressbar=False)
    assert ds.meta.na_rows == 37 and ds.design.info["n_dropped_na"] == 37


def test_parquet_dir_file_glob_and_csv(tmp_path):
    sim = simulate(200, "poisson", corr=0.3, seed=5, mean_rows=7)
    write_parquet(sim, tmp_path / "pq", rows_per_file=300)
    df = pd.read_parquet(tmp_path / "pq")
    spec, ref = _memory(sim.formula, df)
    for src in [tmp_path / "pq", str(tmp_path / "pq" / "part-*.parquet")]:
        ds = _dask(sim.formula, src)
        assert ds.timings["n_partitions"] > 3
        _assert_same(ref, ds.stats, SINGLE)
        assert list(ds.design.groups[0].levels) == list(spec.design.groups[0].levels)
    one = tmp_path / "one.parquet"
    sim.data.to_parquet(one)
    _assert_same(ref, _dask(sim.formula, one).stats, SINGLE)
    csv = tmp_path / "d.csv"
    sim.data.to_csv(csv, index=False)
    spec_c, ref_c = _memory(sim.formula, pd.read_csv(csv))
    ds = _dask(sim.formula, str(csv))
    _assert_same(ref_c, ds.stats, SINGLE)


def test_dask_dataframe_numeric_group_ids():
    import dask.dataframe as dd

    sim = simulate(60, 6, corr=0.2, seed=9)
    df = sim.data.assign(g=sim.data.g.cat.codes.astype(int) * 3 + 11)  # numeric ids: sorted numerically
    df = df.sample(frac=1, random_state=0).reset_index(drop=True)
    spec, ref = _memory(sim.formula, df)
    ds = _dask(sim.formula, dd.from_pandas(df, npartitions=5))
    _assert_same(ref, ds.stats, SINGLE)
    assert list(ds.design.groups[0].levels) == list(spec.design.groups[0].levels)


@pytest.mark.parametrize("formula", ["y ~ x + (1 | g/sub)", "y ~ x + (x | g) + (1 | g:sub)"])
def test_nested_stats_match(formula):
    sim = simulate(40, "poisson", nested=3, slope=True, seed=4, mean_rows=12)
    df = sim.data.sample(frac=1, random_state=2).reset_index(drop=True)
    spec, ref = _memory(formula, df)
    ds = _dask(formula, df, npartitions=6)
    assert ds.stats.plan.structure == ref.plan.structure == "nested"
    _assert_same(ref, ds.stats, NESTED)
    np.testing.assert_array_equal(ref.parent, ds.stats.parent)
    for g0, g1 in zip(spec.design.groups, ds.design.groups):
        assert list(g0.levels) == list(g1.levels)


def test_crossed_and_stateful_rejected():
    sim = simulate(30, 8, crossed=5, seed=1)
    with pytest.raises(OutOfCoreError, match="crossed"):
        _dask(sim.formula, sim.data, npartitions=3)
    with pytest.raises(Exception, match="center"):
        _dask("y ~ center(x) + (1 | g)", sim.data)


def test_local_cluster_matches():
    distributed = pytest.importorskip("distributed")
    df = _messy(seed=11, n_groups=80)
    formula = "y ~ x + c + (x | g)"
    _, ref = _memory(formula, df)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        ds = _dask(formula, df, scheduler=client, npartitions=6)
        assert ds.timings["scheduler"].startswith("distributed")
        _assert_same(ref, ds.stats, SINGLE)


# --------------------------------------------------------------------------- #
# Fast paths of the passes (integer / string ids, direct design, fused kernel)
# --------------------------------------------------------------------------- #
def test_integer_ids_parquet_equal_in_memory(tmp_path):
    """write_parquet(factor_codes=True): int32 ids, same levels in the same order, same statistics."""
    sim = simulate(300, "poisson", corr=0.3, seed=21, mean_rows=6)
    df = sim.data.sample(frac=1, random_state=4).reset_index(drop=True)  # groups split across files
    write_parquet(df, tmp_path / "pq", rows_per_file=250, factor_codes=True)
    back = pd.read_parquet(tmp_path / "pq")
    assert back["g"].dtype == np.int32
    spec, ref = _memory(sim.formula, df)                 # categorical labels, in memory
    ds = _dask(sim.formula, tmp_path / "pq", scheduler="threads")
    assert ds.meta.direct is not None                     # y ~ x + (x | g): data columns as they are
    _assert_same(ref, ds.stats, SINGLE)
    levels = list(ds.design.groups[0].levels)
    assert levels == [str(i) for i in range(len(spec.design.groups[0].levels))]
    _, ref_back = _memory(sim.formula, back)             # and the frame read back from the files
    _assert_same(ref_back, ds.stats, SINGLE)


def test_string_ids_parquet_and_missing(tmp_path):
    """Plain string ids (Arrow strings, unsorted, with missing values) through Parquet."""
    sim = simulate(150, "lognormal", corr=0.2, seed=8, mean_rows=5)
    df = sim.data.copy()
    rng = np.random.default_rng(2)
    df["g"] = np.asarray(["id-" + s[::-1] for s in df["g"].astype(str)], dtype=object)
    df.loc[rng.choice(len(df), 9, replace=False), "g"] = None
    df.loc[rng.choice(len(df), 6, replace=False), "x"] = np.nan
    df = df.sample(frac=1, random_state=3).reset_index(drop=True)
    write_parquet(df, tmp_path / "pq", rows_per_file=200)
    back = pd.read_parquet(tmp_path / "pq")
    spec, ref = _memory(sim.formula, back)
    ds = _dask(sim.formula, tmp_path / "pq")
    _assert_same(ref, ds.stats, SINGLE)
    assert list(ds.design.groups[0].levels) == list(spec.design.groups[0].levels)
    assert ds.meta.na_rows == spec.design.info["n_dropped_na"] > 0


@pytest.mark.parametrize("formula,direct", [("y ~ x + (x | g)", True), ("y ~ 0 + x + (0 + x | g)", True),
                                            ("y ~ x + I(x ** 2) + (1 | g)", False),
                                            ("y ~ log(x + 2) + (x | g)", False)])
def test_direct_design_only_when_columns_are_data_columns(formula, direct):
    sim = simulate(50, 7, corr=0.3, seed=6)
    df = sim.data.assign(x=sim.data.x + 0.0)
    _, ref = _memory(formula, df)
    ds = _dask(formula, df, npartitions=3)
    assert (ds.meta.direct is not None) == direct
    _assert_same(ref, ds.stats, SINGLE)


def test_group_merges_overlapping_and_disjoint():
    from bayes_hlm.distributed.partition_stats import GroupPart
    from bayes_hlm.distributed.reduce import merge_group_parts

    rng = np.random.default_rng(1)
    G = 400
    parts = []
    for size in (300, 20, 150, 390, 1):
        ids = np.sort(rng.choice(G, size, replace=False))
        parts.append(GroupPart(ids, {"n": rng.random(size), "A": rng.random((size, 2, 2))}))
    m = merge_group_parts(parts)                          # overlapping: pairwise sorted merges
    ref_n = np.zeros(G)
    ref_A = np.zeros((G, 2, 2))
    for p in parts:
        np.add.at(ref_n, p.ids, p.fields["n"])
        np.add.at(ref_A, p.ids, p.fields["A"])
    present = np.flatnonzero(np.isin(np.arange(G), np.concatenate([p.ids for p in parts])))
    np.testing.assert_array_equal(m.ids, present)
    np.testing.assert_allclose(m.fields["n"], ref_n[present], rtol=1e-14)
    np.testing.assert_allclose(m.fields["A"], ref_A[present], rtol=1e-14)
    few = [GroupPart(np.array([5, 9]), {"n": np.ones(2)}), GroupPart(np.array([9, 100_000]), {"n": np.ones(2)})]
    np.testing.assert_array_equal(merge_group_parts(few).ids, [5, 9, 100_000])
    np.testing.assert_array_equal(merge_group_parts(few).fields["n"], [1, 2, 1])
    dis = [GroupPart(np.array([1, 2]), {"n": np.ones(2)}), GroupPart(np.array([3]), {"n": np.ones(1)})]
    np.testing.assert_array_equal(merge_group_parts(dis).ids, [1, 2, 3])   # disjoint: concatenated


@pytest.mark.parametrize("scale,offset,dtype", [(7, -300, np.int32), (10**12, 5, np.int64)])
def test_integer_ids_lookup_table_and_factorize_paths(scale, offset, dtype):
    """Compact integer ids go through a lookup table, sparse ones through factorize: same stats."""
    sim = simulate(80, 6, corr=0.2, seed=12)
    ids = sim.data.g.cat.codes.to_numpy().astype(np.int64) * scale + offset
    df = sim.data.assign(g=ids.astype(dtype)).sample(frac=1, random_state=1).reset_index(drop=True)
    spec, ref = _memory(sim.formula, df)
    ds = _dask(sim.formula, df, npartitions=4)
    assert (ds.meta._int_lut("g") is not None) == (scale < 1000)
    _assert_same(ref, ds.stats, SINGLE)
    assert list(ds.design.groups[0].levels) == list(spec.design.groups[0].levels)
