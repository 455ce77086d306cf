"""The phase reporter (bayes_hlm.progress): no silent minutes, and silence when asked."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from bayes_hlm import progress
from bayes_hlm.progress import numba_cache_cold, phase, reporting


@pytest.fixture(autouse=True)
def _loud(monkeypatch):
    monkeypatch.delenv("BAYES_HLM_QUIET", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setitem(progress._chain, "end", float("-inf"))  # no chain from an earlier test


def test_short_phase_prints_nothing(capsys):
    with phase("quick step"):
        pass
    assert capsys.readouterr().err == ""


def test_slow_phase_says_what_and_how_long(capsys):
    with reporting(None), phase("slow step", delay=0.05):
        time.sleep(0.3)
    err = capsys.readouterr().err
    assert err.startswith("slow step …\n")  # a log (not a terminal): one line at the start
    assert "slow step: done in " in err


def test_back_to_back_short_phases_are_not_a_silent_stretch(capsys):
    # each step is shorter than the delay, together they are not: the later ones speak
    with reporting(None):
        for k in range(4):
            with phase(f"step {k}", delay=0.25):
                time.sleep(0.1)
    err = capsys.readouterr().err
    assert "step 0" not in err and "step 1" not in err
    assert "step 2: done in" in err or "step 3: done in" in err


def test_long_phase_is_announced_at_once(capsys):
    with reporting(True), phase("compiling (once per machine)", long=True):
        assert capsys.readouterr().err == "compiling (once per machine) …\n"
    assert "compiling (once per machine): done in" in capsys.readouterr().err


def test_failed_phase_says_stopped(capsys):
    with pytest.raises(RuntimeError), reporting(None), phase("step", long=True):
        raise RuntimeError("boom")
    assert "step: stopped after" in capsys.readouterr().err


@pytest.mark.parametrize("how", ["progressbar", "env"])
def test_silenced(capsys, monkeypatch, how):
    if how == "env":
        monkeypatch.setenv("BAYES_HLM_QUIET", "1")
    with reporting(False if how == "progressbar" else True):
        with phase("long step", long=True, delay=0.0):
            time.sleep(0.05)
    assert capsys.readouterr().err == ""


def test_nested_phase_is_silent(capsys):
    with reporting(None), phase("outer", long=True), phase("inner", long=True):
        pass
    err = capsys.readouterr().err
    assert "outer" in err and "inner" not in err


def test_live_mode_updates_one_line(capsys, monkeypatch):
    monkeypatch.setattr(progress, "interactive", lambda: True)
    monkeypatch.setattr(progress, "_TICK_S", 0.05)
    with reporting(True), phase("compiling", long=True):
        time.sleep(0.3)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.count("\rcompiling …") >= 2
    assert "\rcompiling: done in" in err


def test_numba_cache_cold():
    def cached(index):
        return SimpleNamespace(_cache=SimpleNamespace(
            _cache_file=SimpleNamespace(_load_index=lambda: index)))

    assert numba_cache_cold(cached({}))                   # no index: compiles
    assert not numba_cache_cold(cached({"sig": "file"}))  # index present
    assert not numba_cache_cold(object())                 # unknown: not claimed


def test_real_numba_dispatcher_is_understood():
    pytest.importorskip("numba")
    from bayes_hlm.backends.numba_density import logp_grad

    index = logp_grad._cache._cache_file._load_index()  # the private API numba_cache_cold reads
    assert isinstance(index, dict)


def _fit(progressbar):
    import bayes_hlm as bh

    data = bh.datasets.load("sleepstudy")
    return bh.fit("Reaction ~ Days + (Days | Subject)", data, draws=100, tune=100, chains=2,
                  seed=1, progressbar=progressbar, sampler="numba")


@pytest.mark.filterwarnings("ignore::bayes_hlm.errors.ConvergenceWarning")
def test_fit_reports_a_cold_compile(capsys, monkeypatch):
    from bayes_hlm.backends import conditional_draws, numba_nuts, nuts_callbacks

    monkeypatch.setattr(numba_nuts, "compile_cache_cold", lambda kernel: True)
    monkeypatch.setattr(conditional_draws, "compile_cache_cold", lambda structure=None: True)
    # as in a new process: fetched again (the factory's registry, re-exported by numba_nuts)
    monkeypatch.setattr(nuts_callbacks, "_CALLBACKS", {})
    _fit(None)
    err = capsys.readouterr().err
    assert "compiling the collapsed density with Numba (once per machine) …" in err
    assert "compiling the collapsed density with Numba (once per machine): done in" in err
    assert "drawing group effects (first time on this machine" in err


@pytest.mark.filterwarnings("ignore::bayes_hlm.errors.ConvergenceWarning")
def test_fit_with_progressbar_false_prints_nothing(capsys, monkeypatch):
    from bayes_hlm.backends import conditional_draws, numba_nuts, nuts_callbacks

    monkeypatch.setattr(numba_nuts, "compile_cache_cold", lambda kernel: True)
    monkeypatch.setattr(conditional_draws, "compile_cache_cold", lambda structure=None: True)
    monkeypatch.setattr(nuts_callbacks, "_CALLBACKS", {})
    _fit(False)
    assert capsys.readouterr().err == ""


@pytest.mark.filterwarnings("ignore::bayes_hlm.errors.ConvergenceWarning")
def test_sampling_without_a_bar_is_a_phase(capsys, monkeypatch):
    """In a log or pipe nutpie draws no bar: sampling longer than the delay prints its phase
    line (no silent stretch, #18); with progressbar=False nothing."""
    from bayes_hlm.backends import numba_nuts

    real = numba_nuts.run_nutpie

    def slow(compiled, cfg):
        time.sleep(progress.DELAY_S + 0.3)
        return real(compiled, cfg)

    monkeypatch.setattr(numba_nuts, "run_nutpie", slow)
    _fit(None)
    err = capsys.readouterr().err
    assert "sampling (2 chains x 100 + 100 iterations, nutpie) …" in err
    assert "sampling (2 chains x 100 + 100 iterations, nutpie): done in" in err
    _fit(False)
    assert "sampling" not in capsys.readouterr().err
