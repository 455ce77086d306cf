"""Tests for bayes_hlm.datasets: bundled reference data and the simulator."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from bayes_hlm import datasets
from bayes_hlm.datasets import SimulatedData, load, names, simulate, write_parquet

# --------------------------------------------------------------------------
# bundled data
# --------------------------------------------------------------------------

EXPECTED = {
    "sleepstudy": (180, {"Reaction": "float64", "Days": "float64", "Subject": "category"}),
    "hsb82": (
        7185,
        {
            "school": "category",
            "minrty": "category",
            "sx": "category",
            "ses": "float64",
            "mAch": "float64",
            "meanses": "float64",
            "sector": "category",
            "cses": "float64",
        },
    ),
    "mathachschool": (
        160,
        {
            "School": "category",
            "Size": "float64",
            "Sector": "category",
            "PRACAD": "float64",
            "DISCLIM": "float64",
            "HIMINTY": "category",
            "MEANSES": "float64",
        },
    ),
    "mathachieve": (
        7185,
        {
            "School": "category",
            "Minority": "category",
            "Sex": "category",
            "SES": "float64",
            "MathAch": "float64",
            "MEANSES": "float64",
        },
    ),
    "penicillin": (144, {"diameter": "float64", "plate": "category", "sample": "category"}),
    "insteval": (
        73421,
        {
            "s": "category",
            "d": "category",
            "studage": "category",
            "lectage": "category",
            "service": "category",
            "dept": "category",
            "y": "int64",
        },
    ),
    "cbpp": (56, {"herd": "category", "incidence": "int64", "size": "int64", "period": "category"}),
    "grouseticks": (
        403,
        {
            "INDEX": "category",
            "TICKS": "int64",
            "BROOD": "category",
            "HEIGHT": "float64",
            "YEAR": "category",
            "LOCATION": "category",
            "cHEIGHT": "float64",
        },
    ),
    "verbagg": (
        7584,
        {
            "Anger": "int64",
            "Gender": "category",
            "item": "category",
            "resp": "category",
            "id": "category",
            "btype": "category",
            "situ": "category",
            "mode": "category",
            "r2": "category",
        },
    ),
    "contraception": (
        1934,
        {
            "woman": "category",
            "district": "category",
            "use": "category",
            "livch": "category",
            "age": "float64",
            "urban": "category",
        },
    ),
}

# lme4::VerbAgg$item in R's level order (as printed by levels(VerbAgg$item) in R 4.2.2 / lme4 1.1-31)
VERBAGG_ITEMS = [
    "S1WantCurse", "S1WantScold", "S1WantShout", "S2WantCurse", "S2WantScold", "S2WantShout",
    "S3WantCurse", "S3WantScold", "S3WantShout", "S4wantCurse", "S4WantScold", "S4WantShout",
    "S1DoCurse", "S1DoScold", "S1DoShout", "S2DoCurse", "S2DoScold", "S2DoShout",
    "S3DoCurse", "S3DoScold", "S3DoShout", "S4DoCurse", "S4DoScold", "S4DoShout",
]

SLEEP_SUBJECTS = ["308", "309", "310", "330", "331", "332", "333", "334", "335",
                  "337", "349", "350", "351", "352", "369", "370", "371", "372"]

LEVELS = {
    ("sleepstudy", "Subject"): SLEEP_SUBJECTS,
    ("hsb82", "minrty"): ["No", "Yes"],
    ("hsb82", "sx"): ["Male", "Female"],
    ("hsb82", "sector"): ["Public", "Catholic"],
    ("mathachschool", "Sector"): ["Public", "Catholic"],
    ("mathachschool", "HIMINTY"): ["0", "1"],
    ("mathachieve", "Minority"): ["No", "Yes"],
    ("mathachieve", "Sex"): ["Male", "Female"],
    ("penicillin", "plate"): list("abcdefghijklmnopqrstuvwx"),
    ("penicillin", "sample"): list("ABCDEF"),
    ("insteval", "studage"): ["2", "4", "6", "8"],
    ("insteval", "lectage"): ["1", "2", "3", "4", "5", "6"],
    ("insteval", "service"): ["0", "1"],
    ("insteval", "dept"): ["15", "5", "10", "12", "6", "7", "4", "8", "9", "14", "1", "3", "11", "2"],
    # generalized-model data: orders from /work/shared/data/README.md (R's levels)
    ("cbpp", "herd"): [str(i) for i in range(1, 16)],
    ("cbpp", "period"): ["1", "2", "3", "4"],
    ("grouseticks", "YEAR"): ["95", "96", "97"],
    ("verbagg", "Gender"): ["F", "M"],
    ("verbagg", "item"): VERBAGG_ITEMS,
    ("verbagg", "resp"): ["no", "perhaps", "yes"],
    ("verbagg", "btype"): ["curse", "scold", "shout"],
    ("verbagg", "situ"): ["other", "self"],
    ("verbagg", "mode"): ["want", "do"],
    ("verbagg", "r2"): ["N", "Y"],
    ("contraception", "use"): ["N", "Y"],
    ("contraception", "livch"): ["0", "1", "2", "3+"],
    ("contraception", "urban"): ["N", "Y"],
}


def test_names():
    assert names() == sorted(EXPECTED)
    assert datasets.names() == names()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shape_dtypes_no_missing(name):
    n_rows, dtypes = EXPECTED[name]
    df = load(name)
    assert isinstance(df, pd.DataFrame)
    assert df.shape == (n_rows, len(dtypes))
    assert list(df.columns) == list(dtypes)
    assert {c: str(t) for c, t in df.dtypes.items()} == dtypes
    assert not df.isna().any().any()
    assert isinstance(df.index, pd.RangeIndex)
    for col in df.select_dtypes("category"):
        cat = df[col].cat
        assert not cat.ordered, f"{name}.{col} should be unordered (treatment contrasts)"
        assert all(isinstance(v, str) for v in cat.categories), f"{name}.{col} levels must be strings"
        assert cat.categories.is_unique
        # every declared level is observed
        assert (df[col].value_counts() > 0).all()


@pytest.mark.parametrize(("name", "col"), sorted(LEVELS))
def test_r_level_order(name, col):
    assert list(load(name)[col].cat.categories) == LEVELS[(name, col)]


@pytest.mark.parametrize(
    ("name", "col", "n_levels"),
    [("hsb82", "school", 160), ("mathachschool", "School", 160), ("mathachieve", "School", 160),
     ("insteval", "s", 2972), ("insteval", "d", 1128),
     ("grouseticks", "INDEX", 403), ("grouseticks", "BROOD", 118), ("grouseticks", "LOCATION", 63),
     ("verbagg", "id", 316), ("contraception", "woman", 1934), ("contraception", "district", 60)],
)
def test_id_factors_sorted_numerically(name, col, n_levels):
    cats = list(load(name)[col].cat.categories)
    assert len(cats) == n_levels
    assert cats == sorted(cats, key=int)


def test_hsb82_school_order_is_first_appearance():
    df = load("hsb82")
    assert list(df.school.cat.categories) == list(pd.unique(df.school.astype(str)))
    assert df.school.cat.categories[0] == "1224"


def test_reference_levels():
    assert load("hsb82").sector.cat.categories[0] == "Public"
    assert load("insteval").dept.cat.categories[0] == "15"
    assert load("insteval").service.cat.categories[0] == "0"


def test_content_spot_checks():
    sleep = load("sleepstudy")
    assert sleep.Reaction.iloc[0] == pytest.approx(249.56)
    assert sorted(sleep.Days.unique()) == list(range(10))
    assert (sleep.Subject.value_counts() == 10).all()

    pen = load("penicillin")
    assert (pd.crosstab(pen.plate, pen["sample"]) == 1).all().all()  # fully crossed, once each

    ie = load("insteval")
    assert set(ie.y.unique()) == {1, 2, 3, 4, 5}
    assert list(ie.iloc[0].astype(str)) == ["1", "1002", "2", "2", "0", "2", "5"]

    hsb = load("hsb82")
    assert hsb.school.iloc[0] == "1224"
    assert hsb.meanses.iloc[0] == pytest.approx(-0.434382978723404)
    # sector is a school-level variable
    assert (hsb.groupby("school", observed=True).sector.nunique() == 1).all()

    ma = load("mathachieve")
    np.testing.assert_array_equal(ma.SES.to_numpy(), hsb.ses.to_numpy())
    np.testing.assert_array_equal(ma.MathAch.to_numpy(), hsb.mAch.to_numpy())


def test_glmm_content_spot_checks():
    cbpp = load("cbpp")
    assert list(cbpp.iloc[0].astype(str)) == ["1", "2", "14", "1"]
    assert (cbpp.incidence >= 0).all() and (cbpp.incidence <= cbpp["size"]).all()
    assert cbpp.incidence.sum() == 99 and cbpp["size"].sum() == 842

    gt = load("grouseticks")
    # cHEIGHT is HEIGHT centred at its sample mean, as in lme4's ?grouseticks example
    np.testing.assert_allclose(gt.cHEIGHT, gt.HEIGHT - gt.HEIGHT.mean(), atol=1e-12)
    assert gt.HEIGHT.mean() == pytest.approx(462.2407, abs=1e-4)
    assert (gt.INDEX.value_counts() == 1).all()  # one level per row: an observation-level factor
    assert (gt.TICKS >= 0).all() and gt.TICKS.max() == 85
    assert (gt.groupby("BROOD", observed=True).LOCATION.nunique() == 1).all()  # broods nested in locations
    assert gt.YEAR.value_counts(sort=False).tolist() == [117, 155, 131]

    va = load("verbagg")
    assert (pd.crosstab(va.id, va.item) == 1).all().all()  # 316 x 24, fully crossed, once each
    np.testing.assert_array_equal(va.r2 == "Y", va.resp != "no")  # r2 = resp dichotomised
    # the item label spells out its situation, mode and behaviour
    item = va.item.astype(str).str.lower()
    assert all(i[2:].startswith(m) and i.endswith(b)
               for i, m, b in zip(item, va["mode"].astype(str), va.btype.astype(str)))
    assert (va.groupby("id", observed=True)[["Anger", "Gender"]].nunique() == 1).all().all()

    co = load("contraception")
    assert (co.woman.value_counts() == 1).all()
    assert "54" not in co.district.cat.categories  # R's Contraception has no district 54
    assert co.district.cat.categories[-1] == "61"
    assert abs(co.age.mean()) < 0.01  # age is centred (mlmRev: at the mean of the original sample)
    assert co.use.value_counts(sort=False).tolist() == [1175, 759]


def test_fresh_copy_each_call():
    a = load("sleepstudy")
    a.loc[0, "Reaction"] = -1.0
    a["Subject"] = a["Subject"].cat.rename_categories(lambda s: "x" + s)
    b = load("sleepstudy")
    assert b.loc[0, "Reaction"] == pytest.approx(249.56)
    assert b.Subject.cat.categories[0] == "308"
    assert load("sleepstudy") is not load("sleepstudy")


def test_name_is_case_insensitive():
    assert load("SleepStudy").shape == (180, 3)


def test_unknown_name_lists_available():
    with pytest.raises(ValueError) as err:
        load("sleepstudi")
    msg = str(err.value)
    for n in names():
        assert n in msg
    assert "sleepstudy" in msg


def test_with_school_join():
    plain = load("hsb82")
    joined = load("hsb82", with_school=True)
    school = load("mathachschool")
    assert list(joined.columns) == list(plain.columns) + ["Size", "PRACAD", "DISCLIM", "HIMINTY"]
    assert len(joined) == len(plain)
    pd.testing.assert_frame_equal(joined[plain.columns], plain)  # row order kept
    assert str(joined.Size.dtype) == "float64"
    assert list(joined.HIMINTY.cat.categories) == ["0", "1"]
    assert not joined[["Size", "PRACAD", "DISCLIM", "HIMINTY"]].isna().any().any()

    ref = plain[["school"]].astype(str).merge(
        school.assign(School=school.School.astype(str)), left_on="school", right_on="School", how="left"
    )
    for col in ("Size", "PRACAD", "DISCLIM"):
        np.testing.assert_array_equal(joined[col].to_numpy(), ref[col].to_numpy())
    np.testing.assert_array_equal(joined.HIMINTY.astype(str).to_numpy(), ref.HIMINTY.astype(str).to_numpy())
    # first school 1224: Size 842, PRACAD 0.35, DISCLIM 1.597, HIMINTY "0"
    first = joined.iloc[0]
    assert (first.Size, first.PRACAD, first.DISCLIM, first.HIMINTY) == (842.0, 0.35, 1.597, "0")
    # mathachschool's Sector agrees with hsb82's sector
    sec = dict(zip(school.School.astype(str), school.Sector.astype(str)))
    assert (plain.school.astype(str).map(sec) == plain.sector.astype(str)).all()


def test_with_school_only_for_hsb82():
    with pytest.raises(ValueError, match="hsb82"):
        load("sleepstudy", with_school=True)


# --------------------------------------------------------------------------
# simulate
# --------------------------------------------------------------------------


def test_simulate_defaults_shape_and_columns():
    sim = simulate(seed=0)
    assert isinstance(sim, SimulatedData)
    df = sim.data
    assert df.shape == (500, 3)
    assert list(df.columns) == ["y", "x", "g"]
    assert df.y.dtype == np.float64 and df.x.dtype == np.float64
    assert isinstance(df.g.dtype, pd.CategoricalDtype)
    assert len(df.g.cat.categories) == 50
    assert df.g.cat.categories[0] == "g01" and df.g.cat.categories[-1] == "g50"
    assert sim.formula == "y ~ x + (x | g)"
    assert sim.n_obs == 500 and sim.truth["n_obs"] == 500
    t = sim.truth
    assert set(t["fixed"]) == {"Intercept", "x"}
    assert set(t["group_sd"]) == {"Intercept", "x"}
    assert t["group_effects"].shape == (50, 2)
    assert t["group_effects"].index.equals(pd.Index(df.g.cat.categories, name="g"))
    assert (df.x.abs() <= 1).all()


def test_labels_zero_padded_sorted_equals_code_order():
    sim = simulate(1234, 2, seed=1, crossed=120, nested=12)
    for col in ("g", "h", "sub"):
        cats = list(sim.data[col].cat.categories)
        assert cats == sorted(cats), col
    assert sim.data.g.cat.categories[0] == "g0001"
    assert sim.data.h.cat.categories[0] == "h001"
    # rows sorted by group
    assert (np.diff(sim.data.g.cat.codes.to_numpy()) >= 0).all()


def test_simulate_seed_determinism():
    kw = dict(n_groups=40, rows_per_group="poisson", corr=0.3, crossed=7, nested=3, n_level2_predictors=2)
    a, b = simulate(**kw, seed=42), simulate(**kw, seed=42)
    pd.testing.assert_frame_equal(a.data, b.data)
    pd.testing.assert_frame_equal(a.truth["group_effects"], b.truth["group_effects"])
    assert a.formula == b.formula
    c = simulate(**kw, seed=43)
    assert not np.array_equal(a.data.y.to_numpy()[:20], c.data.y.to_numpy()[:20])
    g1 = simulate(10, 5, seed=np.random.default_rng(5))
    g2 = simulate(10, 5, seed=np.random.default_rng(5))
    pd.testing.assert_frame_equal(g1.data, g2.data)


def test_components_use_independent_streams():
    base = simulate(30, 8, seed=7)
    more = simulate(30, 8, seed=7, crossed=5, nested=2, n_level2_predictors=1)
    np.testing.assert_array_equal(base.data.x.to_numpy(), more.data.x.to_numpy())
    pd.testing.assert_frame_equal(base.truth["group_effects"], more.truth["group_effects"])


def _reconstruct_residuals(sim: SimulatedData) -> np.ndarray:
    """y minus everything the truth says went into it (should be pure noise)."""
    df, t = sim.data, sim.truth
    g = df.g.cat.codes.to_numpy()
    u = t["group_effects"]
    fitted = t["fixed"]["Intercept"] + t["fixed"]["x"] * df.x.to_numpy() + u["Intercept"].to_numpy()[g]
    if "x" in u:
        fitted = fitted + u["x"].to_numpy()[g] * df.x.to_numpy()
    for name, coef in t["fixed"].items():
        if name.startswith("w"):
            fitted = fitted + coef * df[name].to_numpy()
    if "h" in df:
        fitted = fitted + t["crossed_effects"].reindex(df.h.cat.categories).to_numpy()[df.h.cat.codes.to_numpy()]
    if "sub" in df:
        fitted = fitted + t["nested_effects"].reindex(df["sub"].cat.categories).to_numpy()[df["sub"].cat.codes.to_numpy()]
    return df.y.to_numpy() - fitted


@pytest.mark.parametrize("corr", [-0.6, 0.0, 0.5])
def test_moments_recover_truth(corr):
    n_groups, size = 20_000, 5
    sd = (1.5, 0.7)
    sigma = 0.8
    sim = simulate(n_groups, size, corr=corr, group_sd=sd, sigma=sigma, fixed=(2.0, -1.0),
                   x_distribution="normal", seed=11)
    u = sim.truth["group_effects"]
    # tolerances: ~5 standard errors of each sample moment
    se_corr = (1 - corr**2) / np.sqrt(n_groups)
    assert np.corrcoef(u["Intercept"], u["x"])[0, 1] == pytest.approx(corr, abs=5 * se_corr + 1e-12)
    assert u["Intercept"].std() == pytest.approx(sd[0], abs=5 * sd[0] / np.sqrt(2 * n_groups))
    assert u["x"].std() == pytest.approx(sd[1], abs=5 * sd[1] / np.sqrt(2 * n_groups))
    assert u["Intercept"].mean() == pytest.approx(0.0, abs=5 * sd[0] / np.sqrt(n_groups))
    assert sim.truth["fixed"] == {"Intercept": 2.0, "x": -1.0}
    assert sim.truth["corr"] == corr and sim.truth["sigma"] == sigma

    n = sim.n_obs
    e = _reconstruct_residuals(sim)
    assert e.std() == pytest.approx(sigma, abs=5 * sigma / np.sqrt(2 * n))
    assert e.mean() == pytest.approx(0.0, abs=5 * sigma / np.sqrt(n))
    assert abs(np.corrcoef(e, sim.data.x)[0, 1]) < 5 / np.sqrt(n)
    x = sim.data.x
    assert x.mean() == pytest.approx(0, abs=5 / np.sqrt(n)) and x.std() == pytest.approx(1, abs=0.02)


def test_perfect_correlation_allowed():
    sim = simulate(200, 2, corr=1.0, group_sd=(1.0, 2.0), seed=3)
    u = sim.truth["group_effects"]
    np.testing.assert_allclose(u["x"], 2.0 * u["Intercept"], atol=1e-12)


def test_no_slope():
    sim = simulate(100, 4, slope=False, group_sd=0.9, seed=2)
    assert sim.formula == "y ~ x + (1 | g)"
    assert list(sim.truth["group_effects"].columns) == ["Intercept"]
    assert sim.truth["group_sd"] == {"Intercept": 0.9}
    assert sim.truth["corr"] == 0.0
    assert np.abs(_reconstruct_residuals(sim)).max() < 6
    with pytest.raises(ValueError, match="slope"):
        simulate(10, 2, slope=False, corr=0.5)


def test_level2_predictors_constant_within_group():
    sim = simulate(300, 6, n_level2_predictors=3, fixed={"w2": -2.0}, seed=4)
    df = sim.data
    assert list(df.columns) == ["y", "x", "w1", "w2", "w3", "g"]
    assert sim.formula == "y ~ x + w1 + w2 + w3 + (x | g)"
    assert sim.truth["fixed"] == {"Intercept": 1.0, "x": 0.5, "w1": 0.25, "w2": -2.0, "w3": 0.25}
    assert (df.groupby("g", observed=True)[["w1", "w2", "w3"]].nunique() == 1).all().all()
    lvl2 = sim.truth["level2"]
    np.testing.assert_array_equal(lvl2.loc[df.g.astype(str), "w2"].to_numpy(), df.w2.to_numpy())
    e = _reconstruct_residuals(sim)
    assert e.std() == pytest.approx(1.0, abs=0.1)
    with pytest.raises(ValueError, match="fixed"):
        simulate(5, 2, n_level2_predictors=2, fixed=(1.0, 2.0, 3.0))


def test_crossed_structure():
    sim = simulate(60, 20, crossed=15, crossed_sd=2.0, seed=5)
    df = sim.data
    assert sim.formula == "y ~ x + (x | g) + (1 | h)"
    assert list(df.columns) == ["y", "x", "g", "h"]
    assert len(df.h.cat.categories) == 15
    assert sim.truth["crossed_sd"] == 2.0
    assert sim.truth["crossed_effects"].index.equals(pd.Index(df.h.cat.categories, name="h"))
    # crossed, not nested: levels of h appear in many groups and vice versa
    assert (df.groupby("h", observed=True).g.nunique() > 1).all()
    assert (df.groupby("g", observed=True).h.nunique() > 1).all()
    assert np.abs(_reconstruct_residuals(sim)).max() < 6


def test_nested_structure():
    sim = simulate(80, 12, nested=4, nested_sd=0.3, seed=6)
    df = sim.data
    assert sim.formula == "y ~ x + (x | g) + (1 | g:sub)"
    assert list(df.columns) == ["y", "x", "g", "sub"]
    # each subgroup lies in exactly one group, and its label starts with that group's label
    assert (df.groupby("sub", observed=True).g.nunique() == 1).all()
    assert (df["sub"].astype(str).str.split("_s").str[0] == df.g.astype(str)).all()
    assert df.groupby("g", observed=True)["sub"].nunique().max() <= 4
    # every sub level is observed, effects indexed by those levels
    assert (df["sub"].value_counts() > 0).all()
    assert sim.truth["nested_effects"].index.equals(pd.Index(df["sub"].cat.categories, name="sub"))
    assert sim.truth["nested_sd"] == 0.3
    assert np.abs(_reconstruct_residuals(sim)).max() < 6
    assert simulate(20, 3, slope=False, nested=2, seed=1).formula == "y ~ x + (1 | g/sub)"
    both = simulate(20, 3, slope=False, nested=2, crossed=3, seed=1)
    assert both.formula == "y ~ x + (1 | g/sub) + (1 | h)"


def test_group_size_options():
    sizes = np.arange(1, 21)
    sim = simulate(20, sizes, seed=0)
    np.testing.assert_array_equal(sim.data.g.value_counts(sort=False).to_numpy(), sizes)
    np.testing.assert_array_equal(sim.truth["group_sizes"], sizes)
    for kind in ("poisson", "lognormal"):
        s = simulate(4000, kind, mean_rows=8, seed=1)
        gs = s.truth["group_sizes"]
        assert gs.min() >= 1 and gs.sum() == s.n_obs
        assert gs.mean() == pytest.approx(8, rel=0.1)
        np.testing.assert_array_equal(s.data.g.value_counts(sort=False).to_numpy(), gs)
    assert simulate(4000, "lognormal", mean_rows=8, seed=1).truth["group_sizes"].max() > 40  # heavy tail
    with pytest.raises(ValueError):
        simulate(3, [1, 2])
    with pytest.raises(ValueError):
        simulate(3, 0)
    with pytest.raises(ValueError):
        simulate(3, "gamma")


def test_invalid_arguments():
    for kw in (dict(corr=1.5), dict(sigma=-1), dict(x_distribution="cauchy"), dict(crossed=0), dict(n_groups=0)):
        with pytest.raises(ValueError):
            simulate(**{"n_groups": 5, **kw})


def test_one_million_rows_fast():
    t0 = time.perf_counter()
    sim = simulate(10_000, 100, seed=0, crossed=50)
    elapsed = time.perf_counter() - t0
    assert sim.n_obs == 1_000_000
    assert elapsed < 5.0, f"1M rows took {elapsed:.2f}s"
    # compact: float64 y/x, integer codes, no per-row Python strings
    assert sim.data.memory_usage(deep=True).sum() < 30e6
    assert sim.data.g.cat.codes.dtype.itemsize <= 4


# --------------------------------------------------------------------------
# write_parquet
# --------------------------------------------------------------------------


def test_write_parquet_roundtrip(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    sim = simulate(250, 10, crossed=4, nested=2, n_level2_predictors=1, seed=8)
    files = write_parquet(sim, tmp_path / "sim", rows_per_file=1000)
    assert [f.name for f in files] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert [pq.read_metadata(f).num_rows for f in files] == [1000, 1000, 500]
    # every partition carries the full category dictionary
    first = pq.read_table(files[-1]).to_pandas()
    assert list(first.g.cat.categories) == list(sim.data.g.cat.categories)
    back = pq.read_table(tmp_path / "sim").to_pandas()
    pd.testing.assert_frame_equal(back, sim.data, check_categorical=True)
    meta = pq.read_schema(files[0]).metadata
    assert meta[b"bayes_hlm.formula"].decode() == sim.formula
    truth = json.loads(meta[b"bayes_hlm.truth"])
    assert truth["fixed"] == sim.truth["fixed"] and truth["n_obs"] == 2500

    with pytest.raises(FileExistsError):
        write_parquet(sim, tmp_path / "sim")
    files = sim.to_parquet(tmp_path / "sim", rows_per_file=5000, overwrite=True)
    assert len(files) == 1 and len(list((tmp_path / "sim").glob("*.parquet"))) == 1


def test_write_parquet_dataframe(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    df = load("penicillin")
    files = write_parquet(df, tmp_path / "pen", rows_per_file=100)
    assert len(files) == 2
    back = pq.read_table(tmp_path / "pen").to_pandas()
    pd.testing.assert_frame_equal(back, df)
    with pytest.raises(TypeError):
        write_parquet([1, 2], tmp_path / "x")
