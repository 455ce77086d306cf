"""Sampler engines: standard output, seeding, and the fast JAX engine against PyMC's NUTS."""

import warnings

import numpy as np
import pytest

import bayes_hlm as bh
from bayes_hlm.backends import jax_nuts, sampling
from bayes_hlm.backends.marginal import build_marginal_model
from bayes_hlm.spec.build import build_spec
from bayes_hlm.spec.priors import resolve_priors

FORMULA = "Reaction ~ Days + (Days | Subject)"
STAT_VARS = {"diverging", "energy", "tree_depth", "step_size", "lp"}
needs_jax = pytest.mark.skipif(not jax_nuts.available(), reason="jax/numpyro not installed")


def _fit(data, sampler, **kw):
    args = dict(method="marginal", chains=2, draws=300, tune=300, seed=5, progressbar=False, warn=False)
    args.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bh.fit(FORMULA, data, sampler=sampler, **args)


def _model(data):
    spec = build_spec(FORMULA, data)
    return build_marginal_model(spec.design, resolve_priors(spec.design, None))[0]


def _layout(res):
    post = res.posterior
    return {v: (post[v].dims, {d: list(np.asarray(post[v][d])) for d in post[v].dims if d in post.coords})
            for v in post.data_vars}


@pytest.fixture(scope="module")
def pymc_ref(sleepstudy):
    return _fit(sleepstudy, "pymc", draws=1000, tune=1000, seed=1)


@pytest.fixture(scope="module")
def jax_fit(sleepstudy):
    if not jax_nuts.available():
        pytest.skip("jax/numpyro not installed")
    return _fit(sleepstudy, "jax", draws=1000, tune=1000, seed=2)


def test_config_accepts_engines():
    for s in ("auto", "numba", "jax", "pymc", "nutpie", "numpyro"):
        assert sampling.SamplerConfig(sampler=s).sampler == s
    with pytest.raises(ValueError):
        sampling.SamplerConfig(sampler="stan")


@needs_jax
def test_jax_standard_output(jax_fit, pymc_ref):
    assert jax_fit.info.sampler == "jax"
    assert _layout(jax_fit) == _layout(pymc_ref)
    for v in ("fixed", "sigma", "sd__Subject", "corr__Subject", "r__Subject"):
        assert v in jax_fit.posterior.data_vars
    ss = jax_fit.tree["sample_stats"].to_dataset()
    assert STAT_VARS <= set(ss.data_vars)
    assert ss["diverging"].shape == (2, 1000)


def test_numba_standard_output(sleepstudy, pymc_ref):
    r = _fit(sleepstudy, "numba", draws=1000, tune=1000, seed=3)
    assert r.info.sampler == "numba"
    assert _layout(r) == _layout(pymc_ref)
    assert r.posterior["fixed"].values.tobytes() == _fit(
        sleepstudy, "numba", draws=1000, tune=1000, seed=3).posterior["fixed"].values.tobytes()
    ss = r.tree["sample_stats"].to_dataset()
    assert {"diverging", "energy", "step_size"} <= set(ss.data_vars)
    assert ss["diverging"].shape == (2, 1000)


@needs_jax
def test_jax_broken_cache_entry_is_rebuilt(sleepstudy, jax_fit, monkeypatch):
    import jax

    real_load = jax_nuts._load

    def broken(path):
        progs = real_load(path)
        if progs is None:
            return None

        def fail(*args, **kwargs):
            raise jax.errors.JaxRuntimeError("NOT_FOUND: Function wrapped_slice not found")

        return jax_nuts.Programs(progs.run, fail, progs.meta)

    monkeypatch.setattr(jax_nuts, "_load", broken)
    monkeypatch.setattr(jax_nuts, "_MEMO", {})
    r = _fit(sleepstudy, "jax", draws=1000, tune=1000, seed=2)
    np.testing.assert_array_equal(r.posterior["fixed"].values, jax_fit.posterior["fixed"].values)


@needs_jax
def test_jax_seed_reproducible(sleepstudy, jax_fit):
    a = _fit(sleepstudy, "jax", draws=1000, tune=1000, seed=2)
    np.testing.assert_array_equal(a.posterior["fixed"].values, jax_fit.posterior["fixed"].values)
    np.testing.assert_array_equal(a.posterior["r__Subject"].values,
                                  jax_fit.posterior["r__Subject"].values)
    f = a.posterior["fixed"].values
    assert not np.allclose(f[0], f[1])  # chains differ
    b = _fit(sleepstudy, "jax", draws=1000, tune=1000, seed=3)
    assert not np.allclose(b.posterior["fixed"].values, f)


@needs_jax
def test_jax_matches_pymc_within_mcse(jax_fit, pymc_ref):
    import arviz as az

    names = ["fixed", "sigma", "sd__Subject"]
    for method, stat in (("mean", np.mean), ("sd", np.std)):
        m1 = az.mcse(jax_fit.posterior[names], method=method)
        m2 = az.mcse(pymc_ref.posterior[names], method=method)
        for v in names:
            a = stat(jax_fit.posterior[v].values, axis=(0, 1))
            b = stat(pymc_ref.posterior[v].values, axis=(0, 1))
            tol = 4 * np.sqrt(np.asarray(m1[v]) ** 2 + np.asarray(m2[v]) ** 2)
            assert np.all(np.abs(a - b) <= tol), (v, method, a, b, tol)
    # the correlation of the random intercept and slope
    # (stored as its free pairs: BayesResult.tree's ArviZ layout)
    c1 = jax_fit.posterior["corr__Subject"].sel(Subject__pair="Intercept, Days").values.ravel()
    c2 = pymc_ref.posterior["corr__Subject"].sel(Subject__pair="Intercept, Days").values.ravel()
    assert abs(c1.mean() - c2.mean()) < 4 * np.hypot(c1.std() / np.sqrt(200), c2.std() / np.sqrt(200))


@needs_jax
def test_structure_key_ignores_data_values(sleepstudy):
    k1, sh1 = jax_nuts.model_structure(_model(sleepstudy))
    d2 = sleepstudy.copy()
    d2["Reaction"] = d2["Reaction"] * 1.1 + 3
    k2, sh2 = jax_nuts.model_structure(_model(d2))
    assert k1 == k2 and [s.name for s in sh1] == [s.name for s in sh2]
    k3, _ = jax_nuts.model_structure(_model(sleepstudy[sleepstudy["Subject"].astype(str) != "308"]))
    assert k3 != k1  # fewer groups: other shapes


@needs_jax
def test_new_data_same_structure_reuses_programs(sleepstudy, jax_fit):
    d2 = sleepstudy.copy()
    d2["Reaction"] = d2["Reaction"] + 50.0
    r = _fit(d2, "jax", draws=1000, tune=1000, seed=2)
    assert r.info.compile_s < 5.0  # no tracing or compiling: the programs are reused
    shift = r.posterior["fixed"].sel(fixed_term="Intercept").mean() \
        - jax_fit.posterior["fixed"].sel(fixed_term="Intercept").mean()
    assert 40 < float(shift) < 60


def test_auto_falls_back_to_pymc_without_jax(sleepstudy, monkeypatch):
    from bayes_hlm.backends import numba_nuts

    monkeypatch.setattr(jax_nuts, "available", lambda: False)
    monkeypatch.setattr(numba_nuts, "available", lambda: False)
    r = _fit(sleepstudy, "auto", chains=1, draws=50, tune=50)
    assert r.info.sampler == "pymc"
    with pytest.raises(ImportError):
        _fit(sleepstudy, "jax", chains=1, draws=50, tune=50)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["nutpie", "numpyro"])
def test_other_engines_standard_output(sleepstudy, pymc_ref, engine):
    r = _fit(sleepstudy, engine, draws=200, tune=200)
    assert r.info.sampler == engine
    assert set(r.posterior.data_vars) == set(pymc_ref.posterior.data_vars)
    for v in r.posterior.data_vars:
        assert r.posterior[v].dims == pymc_ref.posterior[v].dims


def test_mass_matrix_choice():
    small, big = sampling.LOW_RANK_MAX_DIM, sampling.LOW_RANK_MAX_DIM + 1
    cfg = sampling.SamplerConfig(sampler="numba", seed=1)
    assert sampling.mass_matrix(cfg, small) == "low_rank"
    assert sampling.mass_matrix(cfg, big) == "diag"
    # an engine's own choice for "auto" (the compiled GLMM density: draw-based diagonal)
    assert sampling.mass_matrix(cfg, small, auto="draw_diag") == "draw_diag"
    cfg = sampling.SamplerConfig(sampler="numba", seed=1, mass_matrix="diag")
    assert sampling.mass_matrix(cfg, 3) == "diag"
    assert sampling.mass_matrix(cfg, 3, auto="draw_diag") == "diag"  # the user's choice wins
    with pytest.raises(ValueError, match="mass_matrix must be one of"):
        sampling.SamplerConfig(mass_matrix="dense")


def test_fit_passes_mass_matrix(sleepstudy):
    kw = dict(chains=1, draws=50, tune=50, seed=3, warn=False)
    f = "Reaction ~ Days + (Days | Subject)"
    auto = bh.fit(f, sleepstudy, **kw)  # 6 parameters: low-rank
    low = bh.fit(f, sleepstudy, mass_matrix="low_rank", **kw)
    diag = bh.fit(f, sleepstudy, mass_matrix="diag", **kw)
    np.testing.assert_array_equal(auto.posterior["sigma"].values, low.posterior["sigma"].values)
    assert not np.array_equal(auto.posterior["sigma"].values, diag.posterior["sigma"].values)
    with pytest.raises(ValueError, match="mass_matrix must be one of"):
        bh.fit(f, sleepstudy, mass_matrix="dense", **kw)


def test_pymc_step_lines_are_quiet_but_warnings_print():
    """PyMC's "Initializing NUTS using jitter+adapt_diag..." / "NUTS: [...]" INFO lines do not
    print beside our progress (#18); a PyMC warning still does."""
    import logging

    import pymc as pm

    from bayes_hlm.foreign_warnings import quiet_pymc_steps

    class Collect(logging.Handler):  # stands in for PyMC's stderr handler
        def __init__(self):
            super().__init__()
            self.lines = []

        def emit(self, record):
            self.lines.append(record.getMessage())

    pymc_log = logging.getLogger("pymc")
    h = Collect()
    level = pymc_log.level
    pymc_log.addHandler(h)
    pymc_log.setLevel(logging.INFO)  # as PyMC sets it on import (pytest's logging may change it)
    try:
        with pm.Model() as model:
            pm.Normal("x")
        cfg = sampling.SamplerConfig(sampler="pymc", chains=1, cores=1, draws=20, tune=20, seed=1,
                                     progressbar=False)
        sampling.sample_model(model, cfg)
        assert not any("Initializing NUTS" in s or s.startswith("NUTS: [") for s in h.lines), h.lines
        with quiet_pymc_steps():
            logging.getLogger("pymc.sampling.mcmc").warning("a real PyMC warning")
        assert "a real PyMC warning" in h.lines
        # the filter is gone afterwards: PyMC outside our calls logs as it always did
        logging.getLogger("pymc.sampling.mcmc").info("pymc info outside")
        assert "pymc info outside" in h.lines
    finally:
        pymc_log.removeHandler(h)
        pymc_log.setLevel(level)


def test_jax_available_does_not_import_a_lazily_registered_jax(monkeypatch):
    """Another library's lazy ``jax`` module in ``sys.modules``: reading its ``__spec__`` (as
    ``find_spec`` does) would import JAX (seconds) on every numba fit's engine check."""
    import sys
    import types

    class Lazy(types.ModuleType):
        def __getattribute__(self, name):
            raise AssertionError(f"touched {name}")

    monkeypatch.setitem(sys.modules, "jax", Lazy("jax"))
    monkeypatch.setitem(sys.modules, "numpyro", Lazy("numpyro"))
    assert jax_nuts.available()
    monkeypatch.setitem(sys.modules, "jax", None)  # import blocked
    assert not jax_nuts.available()
