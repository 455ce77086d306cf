"""Issue 7: clear errors on bad input, documented warnings, honest diagnostics, nothing lost.

Every bad input must end in one of our error classes with a message that names the
offending column / term / level; doubtful input ends in a :class:`BayesHLMWarning`
and a correct design. Fits here are tiny (chains 1-2, <= 200 draws).
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayes_hlm as bh
from bayes_hlm.errors import BayesHLMError, BayesHLMWarning, ConvergenceWarning, DataError, FormulaError
from bayes_hlm.results import diagnostics as dg
from bayes_hlm.results.export import fit_json
from bayes_hlm.spec.build import build_design, build_spec
from bayes_hlm.spec.control import Control


def _frame(n_groups=8, per=5, seed=0):
    rng = np.random.default_rng(seed)
    n = n_groups * per
    g = np.repeat([f"g{i}" for i in range(n_groups)], per)
    x = rng.normal(size=n)
    y = 1 + 0.5 * x + rng.normal(size=n_groups)[np.repeat(np.arange(n_groups), per)] \
        + rng.normal(size=n) * 0.5
    return pd.DataFrame({"y": y, "x": x, "z": rng.normal(size=n), "g": g,
                         "h": np.tile(["a", "b"], n // 2)})


DF = _frame()


def _with(**cols):
    return DF.assign(**cols)


def _set(col, i, value):
    d = DF.copy()
    d[col] = d[col].astype(object) if value is None else d[col]
    d.loc[d.index[i], col] = value
    return d


# (id, formula, data, kwargs, error class, fragment the message must contain)
BAD = [
    ("unbalanced-open", "y ~ x + (1|g", DF, {}, FormulaError, "unbalanced parentheses"),
    ("unbalanced-close", "y ~ x) + (1|g)", DF, {}, FormulaError, "unbalanced parentheses"),
    ("empty-factor", "y ~ x + (x|)", DF, {}, FormulaError, "(x|)"),
    ("empty-expr", "y ~ x + (|g)", DF, {}, FormulaError, "nothing before '|'"),
    ("unknown-function", "y ~ foo(x) + (1|g)", DF, {}, FormulaError, "unknown function 'foo'"),
    ("unknown-function-in-re", "y ~ x + (foo(x)|g)", DF, {}, FormulaError, "'foo'"),
    ("missing-column", "y ~ xx + (1|g)", DF, {}, FormulaError, "did you mean 'x'"),
    ("missing-group", "y ~ x + (1|gg)", DF, {}, FormulaError, "did you mean 'g'"),
    ("missing-response", "yy ~ x + (1|g)", DF, {}, FormulaError, "'yy'"),
    ("bar-outside", "y ~ x | g", DF, {}, FormulaError, "'|' outside"),
    ("two-tildes", "y ~ x ~ z", DF, {}, FormulaError, "exactly one '~'"),
    ("no-tilde", "y x", DF, {}, FormulaError, "'~'"),
    ("empty-formula", "", DF, {}, FormulaError, "non-empty string"),
    ("formula-not-str", 3, DF, {}, FormulaError, "non-empty string"),
    ("empty-rhs", "y ~ ", DF, {}, FormulaError, "nothing on the right"),
    ("nothing-to-fit", "y ~ 0", DF, {}, FormulaError, "neither fixed nor random"),
    ("bad-group-expr", "y ~ x + (1|g+h)", DF, {}, FormulaError, "'g+h'"),
    ("bad-operator", "y ~ x +* (1|g)", DF, {}, FormulaError, "'*'"),
    ("response-string", "h ~ x + (1|g)", DF, {}, DataError, "response 'h' is not numeric"),
    ("response-bool", "b ~ x + (1|g)", _with(b=DF.x > 0), {}, DataError, "response 'b'"),
    ("empty-frame", "y ~ x + (1|g)", DF.iloc[:0], {}, DataError, "no rows"),
    ("not-a-frame", "y ~ x + (1|g)", DF.to_dict(), {}, DataError, "pandas DataFrame"),
    ("all-missing", "y ~ x + (1|g)", _with(y=np.nan), {}, DataError, "no rows left"),
    ("inf-response", "y ~ x + (1|g)", _set("y", 3, np.inf), {}, DataError, "column 'y' has 1 infinite"),
    ("inf-predictor", "y ~ x + (1|g)", _set("x", 0, -np.inf), {}, DataError, "column 'x' has 1 infinite"),
    ("inf-in-slope", "y ~ 1 + (z|g)", _set("z", 0, np.inf), {}, DataError, "column 'z'"),
    ("nan-raise", "y ~ x + (1|g)", _set("x", 2, np.nan), {"na_action": "raise"}, DataError, "'x': 1"),
    ("none-raise", "y ~ x + (1|g)", _set("g", 2, None), {"na_action": "raise"}, DataError, "'g': 1"),
    ("bad-na-action", "y ~ x + (1|g)", DF, {"na_action": "drop"}, DataError, "na_action"),
    ("single-level", "y ~ x + (1|k)", _with(k="only"), {}, DataError, "'k' has 1 level"),
    ("all-singletons", "y ~ x + (1|k)", _with(k=[f"s{i}" for i in range(len(DF))]), {},
     DataError, "must be < number of observations"),
    ("too-many-re", "y ~ x + (x + z|k)", _with(k=np.arange(len(DF)) // 2), {}, DataError,
     "number of random effects"),
    ("log-of-negative", "y ~ log(x) + (1|g)", DF, {}, DataError, "'log(x)'"),
    ("log-response", "log(x) ~ z + (1|g)", DF, {}, DataError, "response 'log(x)'"),
    ("duplicate-column", "y ~ x + (1|g)", pd.concat([DF, DF[["x"]]], axis=1), {}, DataError,
     "'x' appears more than once"),
    ("complex-column", "y ~ c + (1|g)", _with(c=DF.x + 1j), {}, DataError, "'c' holds complex"),
    ("datetime-column", "y ~ t + (1|g)", _with(t=pd.date_range("2020", periods=len(DF))), {},
     DataError, "'t' holds dates"),
    ("one-level-factor", "y ~ x * f + (1|g)", _with(f="lo"), {}, DataError, "factor 'f' has 1 level"),
    ("object-values", "y ~ o + (1|g)", _with(o=[object()] * len(DF)), {}, DataError, "'o' holds values"),
]


@pytest.mark.parametrize("formula,data,kw,cls,fragment", [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_bad_input_gives_clear_error(formula, data, kw, cls, fragment):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BayesHLMWarning)
        with pytest.raises(cls) as info:
            build_spec(formula, data, **kw)
    assert isinstance(info.value, BayesHLMError)
    assert fragment in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["unknown-function", "missing-column", "inf-response",
                                  "single-level", "all-singletons"])
def test_bad_input_through_fit_and_reml(name):
    """The same errors come out of ``fit`` and ``reml`` before any sampling."""
    _, formula, data, kw, cls, fragment = next(b for b in BAD if b[0] == name)
    with pytest.raises(cls, match=None) as info:
        bh.fit(formula, data, method="full", sampler="pymc", chains=1, draws=10, tune=10, **kw)
    assert fragment in str(info.value)
    from bayes_hlm.reml import reml

    with pytest.raises(cls) as info:
        reml(formula, data, **kw)
    assert fragment in str(info.value)


# ---------------------------------------------------------------- warnings + correct design

def _warns(formula, data, fragment, **kw):
    with pytest.warns(BayesHLMWarning, match=fragment):
        return build_design(formula, data, **kw)


def test_missing_values_dropped_with_count():
    d = DF.copy()
    d.loc[[1, 5], "x"] = np.nan
    d.loc[7, "g"] = None
    des = _warns("y ~ x + (1|g)", d, r"dropped 3 of 40 rows")
    assert des.n == 37 and des.info["n_dropped_na"] == 3
    assert list(des.row_index) == [i for i in range(40) if i not in (1, 5, 7)]
    # a column the formula does not use never drops rows
    d2 = DF.assign(unused=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BayesHLMWarning)
        assert build_design("y ~ x + (1|g)", d2).n == 40


def test_numeric_continuous_group_is_factor_with_warning():
    d = DF.assign(k=np.repeat(np.linspace(0.1, 0.8, 8), 5))
    des = _warns("y ~ x + (1|k)", d, "grouping column 'k' is numeric with non-integer")
    assert des.groups[0].n_levels == 8


def test_integer_group_is_factor_silently():
    d = DF.assign(k=np.repeat(np.arange(8) * 10, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("error", BayesHLMWarning)
        des = build_design("y ~ x + (1|k)", d)
    assert list(des.groups[0].levels) == [str(v) for v in range(0, 80, 10)]


def test_rank_deficient_columns_dropped_and_named():
    d = DF.assign(x2=2 * DF.x, c=3.0)
    des = _warns("y ~ x + x2 + c + (1|g)", d, r"dropping 2 column\(s\).*x2, c")
    assert des.fixed_names == ("Intercept", "x") and des.info["dropped_fixed"] == ["x2", "c"]
    assert np.linalg.matrix_rank(des.X) == des.p
    with pytest.raises(DataError, match="x2"):
        build_design("y ~ x + x2 + (1|g)", d, control=Control(check_rank="stop"))


def test_slope_without_within_group_variation_warns():
    d = DF.assign(w=np.repeat(np.arange(8.0), 5))
    des = _warns("y ~ w + (w|g)", d, r"random slope 'w' .* does not vary within any level of 'g'")
    assert des.groups[0].terms == ("Intercept", "w")


def test_mixed_text_and_numbers_warns():
    d = DF.assign(m=[1.5, "oops"] + list(DF.x[2:]))
    with pytest.warns(BayesHLMWarning, match=r"column 'm' mixes numbers and text.*'oops'"):
        # a factor with one level per row: now also refused (issue #21, p >= n)
        with pytest.raises(DataError, match="fixed-effect coefficient"):
            build_design("y ~ m + (1|g)", d)


def test_common_r_functions_work_in_formulas():
    d = DF.assign(p=np.exp(DF.x))
    des = build_design("y ~ log(p) + sqrt(p) + (1|g)", d)
    np.testing.assert_allclose(des.X[:, 1], DF.x, rtol=1e-12)


def test_no_fixed_effects_design():
    des = build_design("y ~ 0 + (1|g)", DF)
    assert des.X.shape == (40, 0)


def test_control_recorded_on_spec():
    ctl = Control(check_nlev_gtr_1="warning")
    with pytest.warns(BayesHLMWarning, match="1 level"):
        spec = build_spec("y ~ x + (1|k)", DF.assign(k="a"), control=ctl)
    assert spec.control == ctl and spec.na_action == "omit"


# ---------------------------------------------------------------- nothing mutated

def _digest(df: pd.DataFrame) -> str:
    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(df, index=True).values.tobytes())
    h.update(repr(list(df.columns)).encode())
    h.update(repr(df.dtypes.to_dict()).encode())
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            h.update(repr((list(df[c].cat.categories), df[c].cat.ordered)).encode())
    return h.hexdigest()


def _user_frame():
    d = DF.copy()
    d["g"] = pd.Categorical(d["g"], categories=[f"g{i}" for i in reversed(range(8))])
    d["h"] = pd.Categorical(d["h"], categories=["b", "a", "unused"])
    d.loc[3, "x"] = np.nan
    return d


def test_build_design_and_reml_do_not_mutate():
    from bayes_hlm.reml import reml

    d = _user_frame()
    before = _digest(d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        des = build_design("y ~ x + h + (1|g)", d)
        reml("y ~ x + h + (1|g)", d)
    assert _digest(d) == before
    assert list(d["g"].cat.categories) == [f"g{i}" for i in reversed(range(8))]
    # the user's level order is the design's level order and reference level
    assert list(des.groups[0].levels) == [f"g{i}" for i in reversed(range(8))]
    assert des.fixed_names == ("Intercept", "x", "ha")


@pytest.fixture(scope="module")
def tiny_marginal():
    d = _user_frame()
    before = _digest(d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = bh.fit("y ~ x + h + (1|g)", d, method="marginal", sampler="pymc", chains=2, draws=100,
                   tune=100, seed=5, progressbar=False)
    return r, d, before


def test_fit_and_predict_do_not_mutate(tiny_marginal):
    r, d, before = tiny_marginal
    assert _digest(d) == before
    r.predict(d.dropna())
    assert _digest(d) == before


def test_marginal_save_load_roundtrip(tiny_marginal, tmp_path):
    r = tiny_marginal[0]
    path = tmp_path / "m.nc"
    r.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        back = bh.load(path)
    assert back.info.method == "marginal"
    for v in r.tree["posterior"].data_vars:
        np.testing.assert_array_equal(back.tree["posterior"][v].values, r.tree["posterior"][v].values)
    pd.testing.assert_frame_equal(back.summary(), r.summary())
    np.testing.assert_allclose(back.ranef()["g"]["mean"].values, r.ranef()["g"]["mean"].values,
                               rtol=1e-9, atol=1e-12)
    assert list(back.design.groups[0].levels) == list(r.design.groups[0].levels)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_same_seed_same_draws_different_chains_differ(tiny_marginal):
    r, d, _ = tiny_marginal
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r2 = bh.fit("y ~ x + h + (1|g)", d, method="marginal", sampler="pymc", chains=2, draws=100,
                    tune=100, seed=5, progressbar=False)
    a, b = r.tree["posterior"]["fixed"].values, r2.tree["posterior"]["fixed"].values
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(r.tree["posterior"]["r__g"].values, r2.tree["posterior"]["r__g"].values)
    assert not np.allclose(a[0], a[1])


# ---------------------------------------------------------------- Ctrl-C keeps draws (nutpie)

@pytest.mark.skipif(os.name != "posix", reason="SIGINT from a thread needs POSIX")
def test_sigint_during_nutpie_keeps_draws(monkeypatch):
    """Ctrl-C while nutpie samples: the draws so far come back, flagged ``interrupted``."""
    nutpie = pytest.importorskip("nutpie")
    import pymc as pm

    from bayes_hlm.backends.sampling import SamplerConfig, sample_model

    real_sample = nutpie.sample
    timers = []

    def sample_then_interrupt(*args, **kwargs):  # SIGINT 2 s after sampling has started
        sampler = real_sample(*args, **kwargs)
        t = threading.Timer(2.0, lambda: os.kill(os.getpid(), signal.SIGINT))
        timers.append(t)
        t.start()
        return sampler

    monkeypatch.setattr(nutpie, "sample", sample_then_interrupt)
    with pm.Model() as model:
        pm.Normal("x", 0, 1, shape=3)
    cfg = SamplerConfig(sampler="nutpie", chains=1, draws=5_000_000, tune=100, seed=1,
                        progressbar=False)
    t0 = time.perf_counter()
    try:
        out = sample_model(model, cfg)
    finally:
        for t in timers:
            t.cancel()
    assert out.interrupted
    assert time.perf_counter() - t0 < 120
    draws = out.tree["posterior"]["x"].sizes["draw"]
    assert 0 < draws < 5_000_000


# ---------------------------------------------------------------- diagnostics tell the truth

CLEAN = {"divergences": 0, "max_r_hat": 1.001, "max_r_hat_all": 1.003, "min_ess_bulk": 900.0,
         "min_ess_tail": 800.0, "treedepth_saturated": 0, "bfmi_min": 0.9}


@pytest.mark.parametrize("key,value,fragment", [
    ("divergences", 5, "5 divergent transitions.*target_accept"),
    ("max_r_hat_all", 1.05, r"R-hat 1.050 > 1.01.*Run longer"),
    ("min_ess_bulk", 120.0, r"bulk ESS 120.*Increase draws"),
    ("min_ess_tail", 50.0, r"tail ESS 50.*Increase draws"),
    ("treedepth_saturated", 7, "7 iterations hit the maximum tree depth"),
    ("bfmi_min", 0.1, r"E-BFMI 0.10 < 0.3.*parametrisation"),
])
def test_each_diagnostic_warning_fires_alone(key, value, fragment):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dg.warn_on(dict(CLEAN), "full") == []
    with pytest.warns(ConvergenceWarning, match=fragment) as rec:
        msgs = dg.warn_on({**CLEAN, key: value}, "full")
    assert len(msgs) == 1 and len([w for w in rec if w.category is ConvergenceWarning]) == 1


def test_remedies_depend_on_method():
    assert "method='marginal'" in dg.warning_messages({**CLEAN, "divergences": 1}, "full")[0]
    assert "more tuning" in dg.warning_messages({**CLEAN, "divergences": 1}, "marginal")[0]


class _FakeResult:
    """Just what ``diagnostics()`` reads: summary, factors and sample_stats."""

    def __init__(self, stats: dict, r_hat=1.0, ess=1000.0):
        self.tree = xr.DataTree.from_dict({"sample_stats": xr.Dataset(
            {k: (("chain", "draw"), v) for k, v in stats.items()})})
        self._summ = pd.DataFrame({"r_hat": [r_hat, 1.0], "ess_bulk": [ess, 2000.0],
                                   "ess_tail": [ess, 2000.0]}, index=["a", "b"])
        self.factors = []

    def summary(self):
        return self._summ

    def _group(self, name):  # BayesResult._group: a tree group's dataset, None when absent
        return self.tree[name].to_dataset() if name in self.tree.children else None


def _clean_stats(engine="pymc", C=2, S=500, seed=0):
    rng = np.random.default_rng(seed)
    st = {"diverging": np.zeros((C, S), bool), "energy": rng.normal(size=(C, S)).cumsum(axis=1) * 0
          + rng.normal(size=(C, S))}
    if engine == "pymc":
        st["reached_max_treedepth"] = np.zeros((C, S), bool)
        st["tree_depth"] = np.full((C, S), 3)
    elif engine == "nutpie":
        st["maxdepth_reached"] = np.zeros((C, S), bool)
        st["depth"] = np.full((C, S), 3)
    else:
        st["tree_depth"] = np.full((C, S), 3)
    return st


@pytest.mark.parametrize("engine", ["pymc", "nutpie", "jax"])
def test_diagnostics_from_sample_stats(engine):
    st = _clean_stats(engine)
    d = dg.diagnostics(_FakeResult(st), include_effects=False)
    assert d["divergences"] == 0 and d["treedepth_saturated"] == 0 and d["bfmi_min"] > 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dg.warn_on(d, "full") == []

    bad = {k: v.copy() for k, v in st.items()}
    bad["diverging"][0, :4] = True
    for key in ("reached_max_treedepth", "maxdepth_reached"):
        if key in bad:
            bad[key][1, :6] = True
    if engine == "jax":
        bad["tree_depth"][1, :6] = 10
    # a random walk in energy: the E-BFMI of a sampler stuck in a funnel
    rng = np.random.default_rng(1)
    bad["energy"] = rng.normal(size=bad["energy"].shape).cumsum(axis=1) * 0.05
    d = dg.diagnostics(_FakeResult(bad, r_hat=1.2, ess=50.0), include_effects=False)
    assert d["divergences"] == 4 and d["treedepth_saturated"] == 6 and d["bfmi_min"] < 0.3
    msgs = dg.warning_messages(d, "full")
    assert len(msgs) == 5


def test_diagnostics_all_nan_rhat_does_not_crash():
    d = dg.diagnostics(_FakeResult(_clean_stats(), r_hat=np.nan), include_effects=False)
    assert d["max_r_hat"] == 1.0  # the non-NaN row


def test_bfmi_matches_definition():
    e = np.random.default_rng(3).normal(size=(2, 1000))
    b = dg.bfmi(e)
    ref = np.sum(np.diff(e, axis=1) ** 2, axis=1) / (e.shape[1] - 1) / np.var(e, axis=1)
    np.testing.assert_allclose(b, ref)
    assert np.all(b > 1.5)  # independent energies: E-BFMI ~ 2


def test_diagnostics_of_a_real_fit_are_consistent(tiny_marginal):
    r = tiny_marginal[0]
    d = r.diagnostics()
    for key in ("divergences", "max_r_hat", "max_r_hat_all", "min_ess_bulk", "min_ess_tail"):
        assert key in d
    assert d["max_r_hat_all"] >= d["max_r_hat"]
    ss = r.tree["sample_stats"]
    assert d["divergences"] == int(ss["diverging"].values.sum())
    # 200 draws in all: ESS < 400 by construction, so the ESS warning must be among them
    assert any("ESS" in m for m in dg.warning_messages(d, "marginal"))


# ---------------------------------------------------------------- REML honesty

def test_reml_singular_fit_reported():
    """Group means exactly equal: the group SD estimate sits on the boundary (0)."""
    from bayes_hlm.reml import reml

    rng = np.random.default_rng(0)
    d = pd.DataFrame({"y": rng.normal(size=60), "g": np.repeat(list("abcdef"), 10)})
    d["y"] -= d.groupby("g")["y"].transform("mean")
    with pytest.warns(BayesHLMWarning, match="singular"):
        r = reml("y ~ 1 + (1|g)", d)
    out = r.to_dict()
    assert r.singular and out["singular"] is True
    assert out["group_sd"]["g"]["Intercept"] < 1e-3  # reported as a boundary estimate
    assert "singular" in r.summary(print_out=False)


def test_reml_nonconvergence_reported():
    from bayes_hlm.reml import reml

    d = _frame(per=6, seed=2).assign(w=lambda f: f.x * 3 + 1)
    with pytest.warns(ConvergenceWarning):
        r = reml("y ~ x + (x + z|g)", d, control={"maxiter": 2, "optimizer": "L-BFGS-B"})
    assert r.convergence_messages


def test_a_tree_depth_capped_by_design_does_not_warn():
    """The collapsed GLMM engine caps nutpie's depth on a whitened near-Gaussian posterior
    (backends/affine_density): every draw reaching the cap is by design, not a warning."""
    st = _clean_stats("nutpie")
    st["maxdepth_reached"][:] = True
    st["depth"][:] = 2
    fake = _FakeResult(st)
    d = dg.diagnostics(fake, include_effects=False)
    assert d["treedepth_saturated"] == st["depth"].size and "treedepth_cap" not in d
    assert any("maximum tree depth" in m for m in dg.warning_messages(d, "marginal"))
    fake.info = SimpleNamespace(extra={"nuts_maxdepth": 2})
    d = dg.diagnostics(fake, include_effects=False)
    assert d["treedepth_cap"] == 2 and d["treedepth_saturated"] == st["depth"].size
    assert dg.warning_messages(d, "marginal") == []
    # the remedy never reads "Increase tune or use more tuning"
    msg = dg.warning_messages({**CLEAN, "treedepth_saturated": 3}, "marginal")[0]
    assert msg.endswith("Increase tune.")


def test_whitened_poisson_fit_reports_its_depth_cap_without_warning():
    rng = np.random.default_rng(4)
    G, n = 300, 10
    g = np.repeat(np.arange(G), n)
    a = rng.integers(0, 3, G * n)
    y = rng.poisson(np.exp(0.5 + 0.3 * (a == 1) - 0.2 * (a == 2) + rng.normal(0, 0.5, G)[g]))
    df = pd.DataFrame({"y": y, "a": pd.Categorical(a), "g": g.astype(str)})
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        r = bh.fit("y ~ a + (1 | g)", df, family="poisson", chains=2, draws=400, tune=400,
                   seed=5, progressbar=False)
    assert not [w for w in rec if "tree depth" in str(w.message)]
    cap = r.info.extra["nuts_maxdepth"]
    assert cap is not None
    d = r.diagnostics()
    assert d["treedepth_cap"] == cap and d["treedepth_saturated"] > 0
    out = fit_json(r)["diagnostics"]
    assert out["treedepth_cap"] == cap and not [m for m in out["warnings"] if "tree depth" in m]
