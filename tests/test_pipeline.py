"""The one fit pipeline (#14 item 4, #21 "Arguments").

* the engine chooser is pure and rules on every structure (no sampling);
* every bad argument of ``fit``/``fit_dask``/the CLI is refused naming the argument;
* a formula without a group term is refused before any sampling;
* ``update()`` replays the settings as the user gave them (default sampler into a model
  ``"numba"`` does not cover), overrides win, and save/load keeps them;
* the shared tail warns on Ctrl-C for in-memory and Dask fits alike.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

import bayes_hlm as bh
from bayes_hlm.backends.engine import (EngineChoice, choose_engine, choose_model_sampler,
                                       run_with_fallback)
from bayes_hlm.backends.sufficient_stats import compute_stats
from bayes_hlm.errors import BayesHLMError, ConvergenceWarning
from bayes_hlm.results.bayes_result import FitInfo
from bayes_hlm.settings import FitSettings, validate_settings
from bayes_hlm.spec.priors import Prior, resolve_priors

TINY = dict(chains=1, draws=20, tune=20, progressbar=False, warn=False)
ALL = {"numba": None, "jax": None}


def _sim(n_groups=12, rows=8, seed=0, nested=False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_groups * rows
    g = np.repeat(np.arange(n_groups), rows)
    x, z = rng.normal(size=n), rng.normal(size=n)
    b = rng.normal(size=(n_groups, 3)) * [1.0, 0.5, 0.5]
    y = 1 + 0.5 * x - 0.3 * z + b[g, 0] + b[g, 1] * x + b[g, 2] * z + rng.normal(size=n)
    df = pd.DataFrame({"y": y, "x": x, "z": z, "g": [f"g{i}" for i in g],
                       "h": [f"h{i % 5}" for i in range(n)]})
    if nested:
        df["b"] = [f"b{i % 2}" for i in range(n)]
    return df


def _choice(formula, df=None, priors=None, **kw):
    spec = bh.build_spec(formula, _sim(nested=True) if df is None else df)
    ps = resolve_priors(spec.design, priors)
    kw.setdefault("unavailable", ALL)
    return choose_engine(spec.design, ps, compute_stats(spec.design), **kw)


# --------------------------------------------------------------------------- engine chooser
@pytest.mark.parametrize("formula, sampler, skipped", [
    ("y ~ x + (x | g)", "numba", None),
    ("y ~ x + (1 | g) + (1 | h)", "numba", None),                    # crossed, q = 1
    ("y ~ x + z + (x + z | g)", "numba", None),                      # 3-term correlated block (LKJ)
    ("y ~ x + (1 | g/b)", "numba", None),                            # nested (two-stage, #20)
    ("y ~ x + (1 | g) + (x | h)", "numba", None),                    # crossed, sampled q = 2 (#20)
    ("y ~ x + (1 | g/b)", "jax", "prior StudentT"),                  # a prior it does not compile
])
def test_auto_rules_per_structure(formula, sampler, skipped):
    priors = {"x": Prior("StudentT", nu=3.0, mu=0.0, sigma=1.0)} if skipped else None
    c = _choice(formula, priors=priors)
    assert (c.method, c.sampler, c.automatic) == ("marginal", sampler, True)
    if skipped:
        assert "numba skipped" in c.reason and skipped in c.reason
    no_jax = _choice(formula, unavailable={"numba": None, "jax": "not installed"}, priors=priors)
    assert no_jax.sampler == ("numba" if skipped is None else "pymc")
    if skipped:
        assert "jax skipped: not installed" in no_jax.reason


def test_chooser_rules_engines_and_methods():
    assert _choice("y ~ x + (x | g)", unavailable={"numba": "no nutpie", "jax": None}).sampler == "jax"
    c = _choice("y ~ x + (x | g)", priors={"x": Prior("StudentT", nu=3.0, mu=0.0, sigma=1.0)})
    assert c.sampler == "jax" and "'x'" in c.reason
    full = _choice("y ~ x + (x | g)", method="full")
    assert (full.method, full.sampler, full.automatic) == ("full", "pymc", False)
    assert _choice("y ~ x + (x | g)", method="full", sampler="auto").sampler == "jax"
    assert _choice("y ~ x + (x | g)", method="marginal", sampler="pymc").sampler == "pymc"
    assert _choice("y ~ x + (x | g)", sampler="nutpie").sampler == "nutpie"
    with pytest.raises(BayesHLMError, match="sampler='numba' does not cover this model: prior"):
        _choice("y ~ x + (1 | g/b)", sampler="numba",
                priors={"x": Prior("StudentT", nu=3.0, mu=0.0, sigma=1.0)})
    with pytest.raises(BayesHLMError, match="numba"):
        _choice("y ~ x + (x | g)", method="full", sampler="numba")
    with pytest.raises(ImportError, match="sampler='jax'"):
        _choice("y ~ x + (x | g)", sampler="jax", unavailable={"jax": "not installed"})
    with pytest.raises(BayesHLMError, match="engine='dask'"):
        _choice("y ~ x + (x | g)", method="full", out_of_core=True)


def test_chooser_follows_the_family():
    from bayes_hlm.families import get_family

    bern = get_family("bernoulli")
    # the full model through the compiled GLMM density (backends/glmm_density.py) ...
    c = _choice("y ~ x + (x | g)", family=bern)
    assert (c.method, c.sampler) == ("full", "numba") and "bernoulli" in c.reason
    # ... or, without nutpie, PyMC's NUTS on the full model (JAX does not fit the family)
    no_numba = {**ALL, "numba": "not installed"}
    c = _choice("y ~ x + (x | g)", family=bern, unavailable=no_numba)
    assert (c.method, c.sampler) == ("full", "pymc") and "bernoulli" in c.reason
    assert _choice("y ~ x + (x | g)", family=bern, sampler="auto",
                   unavailable=no_numba).sampler == "pymc"
    assert _choice("y ~ x + (x | g)", family=get_family("gaussian")).sampler == "numba"
    # method="marginal": the quadrature-collapsed engine (backends/glmm_collapsed.py)
    c = _choice("y ~ x + (x | g)", family=bern, method="marginal")
    assert (c.method, c.sampler) == ("marginal", "numba") and "quadrature" in c.reason
    for kw in (dict(sampler="jax"), dict(out_of_core=True)):
        with pytest.raises(BayesHLMError, match="bernoulli"):
            _choice("y ~ x + (x | g)", family=bern, **kw)
    with pytest.raises(BayesHLMError, match="'t'"):  # no compiled likelihood for Student-t
        _choice("y ~ x + (x | g)", family=get_family("t"), sampler="numba")


def test_chooser_is_pure():
    unavailable = {"numba": None, "jax": "missing"}
    spec = bh.build_spec("y ~ x + (1 | g/b)", _sim(nested=True))
    ps, st = resolve_priors(spec.design), compute_stats(spec.design)
    a = choose_engine(spec.design, ps, st, unavailable=unavailable)
    b = choose_engine(spec.design, ps, st, unavailable=unavailable)
    assert a == b and unavailable == {"numba": None, "jax": "missing"}


def test_runtime_fallback_is_a_new_choice_with_reason():
    ran = []

    def run(c: EngineChoice):
        ran.append(c.sampler)
        if c.sampler == "jax":
            raise NotImplementedError("no JAX op for batched Cholesky")
        return "draws"

    with pytest.warns(RuntimeWarning, match="JAX NUTS unavailable"):
        choice, out = run_with_fallback(lambda u: choose_model_sampler("auto", u), run, {"jax": None})
    assert ran == ["jax", "pymc"] and out == "draws" and choice.sampler == "pymc"
    assert "batched Cholesky" in choice.reason
    with pytest.raises(NotImplementedError):  # asked for explicitly: no fallback
        run_with_fallback(lambda u: choose_model_sampler("jax", u), run, {"jax": None})


# --------------------------------------------------------------------------- arguments
BAD = [
    ("seed", dict(seed="abc")), ("seed", dict(seed=-1)), ("seed", dict(seed=2**40)),
    ("seed", dict(seed=1.5)), ("target_accept", dict(target_accept="0.9")),
    ("target_accept", dict(target_accept=1.0)), ("target_accept", dict(target_accept=0)),
    ("target_accept", dict(target_accept=float("nan"))), ("target_accept", dict(target_accept=True)),
    ("chains", dict(chains=True)), ("chains", dict(chains=0)), ("chains", dict(chains=2.0)),
    ("draws", dict(draws=0)), ("draws", dict(draws="100")), ("tune", dict(tune=0)),
    ("tune", dict(tune=-5)), ("method", dict(method="exact")), ("method", dict(method=None)),
    ("sampler", dict(sampler="stan")), ("mass_matrix", dict(mass_matrix="dense")),
    ("mass_matrix", dict(mass_matrix="low_rank", sampler="pymc")),
    ("sampler", dict(method="full", sampler="numba")), ("priors", dict(priors=[Prior("Normal", mu=0, sigma=1)])),
    ("priors", dict(priors={"x": 3.0})), ("priors", dict(priors={1: Prior("Normal", mu=0, sigma=1)})),
    ("na_action", dict(na_action="drop")), ("control", dict(control={"check_rank": "stop"})),
    ("centered", dict(centered="yes")), ("centered", dict(centered={"g": "yes"})),
    ("rescale", dict(rescale="yes")), ("rescale", dict(rescale=None)), ("engine", dict(engine="gpu")),
    ("progressbar", dict(progressbar="yes")), ("warn", dict(warn="no")),
]


@pytest.mark.parametrize("name, kwargs", BAD, ids=[f"{n}-{i}" for i, (n, _) in enumerate(BAD)])
def test_bad_argument_names_it(name, kwargs):
    df = _sim()
    with pytest.raises(BayesHLMError, match=rf"\b{name}\b"):
        bh.fit("y ~ x + (1 | g)", df, **kwargs)
    if name not in ("engine",):
        from bayes_hlm.distributed import fit_dask

        with pytest.raises(BayesHLMError, match=rf"\b{name}\b"):
            fit_dask("y ~ x + (1 | g)", df, "sync", **kwargs)


@pytest.mark.parametrize("name, kwargs", [("npartitions", dict(npartitions=0)),
                                          ("split_every", dict(split_every=1)),
                                          ("split_every", dict(split_every=2.5))])
def test_bad_dask_argument_names_it(name, kwargs):
    from bayes_hlm.distributed import fit_dask

    with pytest.raises(BayesHLMError, match=name):
        fit_dask("y ~ x + (1 | g)", _sim(), "sync", **kwargs)


@pytest.mark.parametrize("name, kwargs", [("draws", dict(draws=0)), ("seed", dict(seed="a"))])
def test_prior_predictive_arguments(name, kwargs):
    with pytest.raises(BayesHLMError, match=name):
        bh.sample_prior_predictive("y ~ x + (1 | g)", _sim(), **kwargs)


def test_centered_checked_against_the_model():
    df = _sim()
    with pytest.raises(BayesHLMError, match="centered names 'Nope'"):
        bh.fit("y ~ x + (1 | g)", df, method="full", centered={"Nope": True}, **TINY)
    with pytest.raises(BayesHLMError, match="method='full'"):  # the marginal model has none
        bh.fit("y ~ x + (1 | g)", df, centered={"g": True}, **TINY)


def test_settings_kept_as_given():
    s = validate_settings(seed=np.int64(3), target_accept=np.float32(0.5), chains=np.int32(2),
                          priors={"x": {"dist": "Normal", "mu": 0.0, "sigma": 2.0}})
    assert (s.seed, s.chains, s.sampler, s.method) == (3, 2, None, "auto")
    assert FitSettings.from_dict(s.to_dict()) == s
    assert isinstance(s.fit_kwargs()["priors"]["x"], Prior)


@pytest.mark.parametrize("argv, flag", [
    (["--tune", "0"], "--tune"), (["--seed", "-1"], "--seed"), (["--chains", "0"], "--chains"),
    (["--target-accept", "1.5"], "--target-accept"), (["--draws", "0"], "--draws"),
    (["--method", "full", "--sampler", "numba"], "--sampler"),
    (["--mass-matrix", "low_rank", "--sampler", "jax"], "--mass-matrix"),
])
def test_cli_fit_flags_validated(tmp_path, capsys, argv, flag):
    from bayes_hlm.cli import main

    data = tmp_path / "d.csv"
    _sim().to_csv(data, index=False)
    assert main(["fit", "y ~ x + (1 | g)", str(data), *argv]) == 2
    assert flag in capsys.readouterr().err


# --------------------------------------------------------------------------- no group terms
def test_model_without_group_terms_refused_before_sampling(sleepstudy, tmp_path, capsys):
    for kw in ({}, {"method": "full"}, {"method": "marginal"}, {"engine": "dask"}):
        with pytest.raises(BayesHLMError, match=r"no random-effect terms.*\(1 \| group\)"):
            bh.fit("Reaction ~ Days", sleepstudy, **kw)
    from bayes_hlm.cli import main

    data = tmp_path / "s.csv"
    sleepstudy.to_csv(data, index=False)
    assert main(["fit", "Reaction ~ Days", str(data)]) == 1
    assert "no random-effect terms" in capsys.readouterr().err


# --------------------------------------------------------------------------- update replay
STUDENT_X = {"x": Prior("StudentT", nu=3.0, mu=0.0, sigma=1.0)}
STUDENT_X_RECORDED = {"x": {"dist": "StudentT", "nu": 3.0, "mu": 0.0, "sigma": 1.0}}  # in FitInfo
GIVEN = dict(chains=1, draws=30, tune=30, target_accept=0.85, seed=5, mass_matrix="diag",
             rescale=False, progressbar=False, warn=False)


@pytest.fixture(scope="module", autouse=True)
def fresh_jax_cache(tmp_path_factory):
    """A private JAX program cache: these tests neither read nor leave programs of other runs
    (a warm cache once segfaulted on the q = 3 model's Cholesky, fixed in jax_nuts)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BAYES_HLM_CACHE", str(tmp_path_factory.mktemp("jax_cache")))
        yield


@pytest.fixture(scope="module")
def q1_fit():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bh.fit("y ~ x + z + (x | g)", _sim(), **GIVEN)


def _kept(info: FitInfo, **changed):
    r = info.requested
    want = {k: v for k, v in GIVEN.items() if k not in ("progressbar", "warn")}
    want.update(changed)
    got = {k: getattr(r, k) for k in want}
    assert got == want
    return r


def test_update_replays_settings_into_a_model_numba_does_not_cover(q1_fit):
    assert q1_fit.info.sampler == "numba"
    r = _kept(q1_fit.info)
    assert (r.method, r.sampler, r.centered, r.priors) == ("auto", None, "auto", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        covered = q1_fit.update(". ~ . + (x | h)", data=_sim())  # sampled crossed slope (#20)
        # a prior the compiled density does not have
        q3 = q1_fit.update(". ~ . + (x | h)", data=_sim(), priors=STUDENT_X)
    assert covered.info.sampler == "numba" and covered.formula == "y ~ x + z + (x | g) + (x | h)"
    assert q3.formula == "y ~ x + z + (x | g) + (x | h)"
    assert q3.info.sampler in ("jax", "pymc") and "numba skipped" in q3.info.engine_reason
    r = _kept(q3.info, priors=STUDENT_X_RECORDED)
    assert (r.method, r.sampler, r.centered) == ("auto", None, "auto")
    assert (q3.info.chains, q3.info.draws, q3.info.tune, q3.info.seed) == (1, 30, 30, 5)
    assert q3.info.target_accept == 0.85 and "rescaled" not in q3.info.extra


def test_update_overrides_win(q1_fit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = q1_fit.update(draws=25, seed=9, method="full", centered={"g": False})
    _kept(m.info, draws=25, seed=9)
    assert m.info.requested.method == "full" and m.info.requested.centered == {"g": False}
    assert m.info.method == "full" and m.info.extra["centered"] == {"g": False}
    # replaying a full fit with centered into a model without that factor drops the entry
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m2 = m.update(". ~ . - (x | g) + (1 | h)", data=_sim())
    assert m2.info.requested.centered == {} and m2.info.requested.method == "full"


def test_settings_survive_save_load(q1_fit, tmp_path):
    q1_fit.save(tmp_path / "m.nc")
    back = bh.load(tmp_path / "m.nc")
    assert back.info.requested == q1_fit.info.requested
    assert back.info.engine_reason == q1_fit.info.engine_reason


def test_fitinfo_from_older_files():
    old = {"method": "marginal", "sampler": "numba", "chains": 2, "draws": 10, "tune": 10,
           "target_accept": 0.8, "seed": 1, "extra": {}, "a_future_field": 1}
    info = FitInfo.from_dict(old)
    assert info.requested is None and info.engine_reason == ""
    from bayes_hlm.results.workflow import replay_settings

    kw = replay_settings(info)
    assert "sampler" not in kw and kw["method"] == "marginal" and kw["seed"] == 1
    new = FitInfo(**{k: v for k, v in old.items() if k != "a_future_field"},
                  requested=FitSettings(seed=1), engine_reason="why")
    assert FitInfo.from_dict(new.to_dict()) == new


# --------------------------------------------------------------------------- Ctrl-C, Dask
def _nan_tail(tree, n_nan: int):
    """The tree as an aborted nutpie run returns it: the last draws of chain 0 NaN-padded."""
    import xarray as xr

    groups = {k: tree[k].to_dataset() for k in tree.children}
    post = groups["posterior"].copy()
    for v in post.data_vars:
        if np.issubdtype(post[v].dtype, np.floating):
            a = post[v].values.copy()
            a[0, -n_nan:] = np.nan
            post[v] = (post[v].dims, a)
    groups["posterior"] = post
    return xr.DataTree.from_dict(groups)


def test_finished_draws_cuts_nan_padding():
    import xarray as xr

    from bayes_hlm.backends.sampling import finished_draws

    a = np.arange(2 * 10, dtype=float).reshape(2, 10)
    a[1, 7:] = np.nan
    tree = xr.DataTree.from_dict({
        "posterior": xr.Dataset({"mu": (("chain", "draw"), a)}),
        "sample_stats": xr.Dataset({"diverging": (("chain", "draw"), np.zeros((2, 10), bool))})})
    cut = finished_draws(tree)
    assert cut["posterior"].sizes["draw"] == 7 and cut["sample_stats"].sizes["draw"] == 7
    assert np.isfinite(cut["posterior"]["mu"].values).all()
    assert finished_draws(cut) is cut


def _interrupt_nutpie(monkeypatch):
    from bayes_hlm.backends import numba_nuts
    from bayes_hlm.backends.sampling import finished_draws

    real = numba_nuts.run_nutpie
    monkeypatch.setattr(numba_nuts, "run_nutpie", lambda compiled, cfg: (
        finished_draws(_nan_tail(real(compiled, cfg)[0], 5)), True))


def test_ctrl_c_warning_through_the_shared_tail(monkeypatch):
    pytest.importorskip("dask")
    from bayes_hlm.distributed import fit_dask

    _interrupt_nutpie(monkeypatch)
    df = _sim()
    kw = dict(TINY, seed=2, sampler="numba")
    with pytest.warns(ConvergenceWarning, match="holds the 15 draws per chain done so far, not the 20"):
        m = bh.fit("y ~ x + (1 | g)", df, **kw)
    with pytest.warns(ConvergenceWarning, match="interrupted"):
        d = fit_dask("y ~ x + (1 | g)", df, "sync", **kw)
    for r in (m, d):
        assert r.info.interrupted and r.info.draws == 15 and r.info.requested.draws == 20
        assert np.isfinite(r.summary()["mean"]).all()


def test_fit_dask_is_the_same_pipeline():
    pytest.importorskip("dask")
    from bayes_hlm.distributed import OutOfCoreError, fit_dask

    df = _sim()
    with pytest.raises(OutOfCoreError, match="rescale=True"):
        fit_dask("y ~ x + (1 | g)", df, "sync", rescale=True)
    with pytest.raises(OutOfCoreError, match="centered"):
        bh.fit("y ~ x + (1 | g)", df, engine="dask", scheduler="sync", centered={"g": True})
    big = df.assign(y=df.y * 1e6)
    with pytest.raises(OutOfCoreError, match="rescale=False"):
        fit_dask("y ~ x + (1 | g)", big, "sync", **TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = fit_dask("y ~ x + (1 | g)", big, "sync", rescale=False, seed=4, **TINY)
        m = bh.fit("y ~ x + (1 | g)", big, rescale=False, seed=4, **TINY)
    assert d.info.requested.rescale is False and d.info.requested.engine == "dask"
    assert d.info.extra["engine"] == "dask" and "stats_timings" in d.info.extra
    assert (d.info.method, d.info.sampler) == (m.info.method, m.info.sampler) == ("marginal", "numba")
    assert d.info.engine_reason == m.info.engine_reason


def test_pymc_interrupted_run_is_flagged(monkeypatch):
    """pm.sample swallows Ctrl-C and returns fewer draws: the fit says so (#21: the CLI record
    said 'interrupted: false, draws: 20000' for 2,159 draws)."""
    from bayes_hlm.backends import sampling

    real = sampling.pm.sample
    monkeypatch.setattr(sampling.pm, "sample", lambda **kw: real(**{**kw, "draws": kw["draws"] - 5}))
    with pytest.warns(ConvergenceWarning, match="holds the 15 draws"):
        m = bh.fit("y ~ x + (1 | g)", _sim(), method="full", sampler="pymc", **dict(TINY, seed=3))
    assert m.info.interrupted and m.info.draws == 15 and m.info.requested.draws == 20


def test_update_replays_settings_into_a_nested_model(q1_fit):
    """#14: a fit made with the default sampler (resolved to "numba") updated into a NESTED
    model with a prior the compiled density does not cover (nested designs themselves are
    covered since #20): it fits on the next engine of the "auto" order instead of failing on
    a replayed sampler="numba", and every setting is kept."""
    assert q1_fit.info.sampler == "numba"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        covered = q1_fit.update(". ~ . + (1 | g:b)", data=_sim(nested=True))
        nested = q1_fit.update(". ~ . + (1 | g:b)", data=_sim(nested=True), priors=STUDENT_X)
    assert covered.info.sampler == "numba" and covered.info.extra["structure"] == "nested"
    assert nested.formula == "y ~ x + z + (x | g) + (1 | g:b)"
    assert nested.info.sampler in ("jax", "pymc") and nested.info.sampler != q1_fit.info.sampler
    assert "numba skipped" in nested.info.engine_reason and "prior" in nested.info.engine_reason
    r = _kept(nested.info, priors=STUDENT_X_RECORDED)
    assert (r.method, r.sampler, r.centered) == ("auto", None, "auto")
    assert (nested.info.method, nested.info.chains, nested.info.draws, nested.info.tune,
            nested.info.seed, nested.info.target_accept) == ("marginal", 1, 30, 30, 5, 0.85)
    assert "rescaled" not in nested.info.extra
