"""Outputs checked before sampling, fits never lost, strict JSON, honest diagnostics (issue #21)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayes_hlm.fitting as fitting_pkg
from bayes_hlm.cli import _strict, main
from bayes_hlm.results.diagnostics import warning_messages

F = "y ~ x + (1|g)"


@pytest.fixture()
def csv(tmp_path):
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(6), 8)
    df = pd.DataFrame({"y": rng.normal(size=48) + g * 0.3, "x": rng.normal(size=48),
                       "g": [f"s{i}" for i in g]})
    path = tmp_path / "data.csv"
    df.to_csv(path, index=False)
    return path


@pytest.fixture()
def no_sampling(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("sampling started")
    monkeypatch.setattr(fitting_pkg, "fit", boom)


def test_out_naming_the_input_is_refused(csv, capsys, no_sampling):
    before = csv.read_bytes()
    assert main(["fit", F, str(csv), "--out", str(csv)]) != 0
    assert "is the input data file" in capsys.readouterr().err
    assert main(["reml", F, str(csv), "--out", str(csv)]) != 0
    assert csv.read_bytes() == before


def test_unwritable_plots_refused_before_sampling(csv, tmp_path, capsys, no_sampling):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["fit", F, str(csv), "--plots", str(blocker)]) != 0
    assert "cannot write plots" in capsys.readouterr().err
    assert main(["fit", F, str(csv), "--plots", str(blocker / "sub")]) != 0


def test_late_write_failure_saves_the_fit_elsewhere(csv, tmp_path, capsys, monkeypatch):
    import bayes_hlm.reporters as reporters

    def fail(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(reporters, "write_plots", fail)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["fit", F, str(csv), "--plots", str(tmp_path / "plots"), "--out",
                     str(tmp_path / "fit.json"), "--draws", "20", "--tune", "20", "--chains", "1",
                     "--seed", "1"])
    err = capsys.readouterr().err
    assert code != 0 and "No space left on device" in err and "the fit was saved to" in err
    saved = err.split("the fit was saved to ")[1].split(" and ")[0].strip()
    import bayes_hlm as bh
    assert bh.load(saved).nobs() == 48
    Path(saved).unlink()
    js = saved[:-5] + ".json"
    if Path(js).exists():
        json.loads(Path(js).read_text())
        Path(js).unlink()


def test_strict_json_has_no_nan_tokens():
    obj = {"a": float("nan"), "b": [1.0, float("inf"), np.float64("nan")], "c": {"d": np.nan}}
    text = json.dumps(_strict(obj), allow_nan=False)
    assert json.loads(text) == {"a": None, "b": [1.0, None, None], "c": {"d": None}}


@pytest.mark.parametrize("key", ["max_r_hat_all", "min_ess_bulk", "min_ess_tail"])
def test_nan_diagnostics_warn(key):
    diag = {"divergences": 0, "max_r_hat": 1.0, "max_r_hat_all": 1.0, "min_ess_bulk": 1000.0,
            "min_ess_tail": 1000.0, key: float("nan")}
    msgs = warning_messages(diag, "marginal")
    assert any("cannot be judged" in m and key in m for m in msgs)


def test_fit_json_carries_converged_flag_and_warnings(csv, tmp_path, capsys):
    out = tmp_path / "fit.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["fit", F, str(csv), "--out", str(out), "--draws", "3", "--tune", "20",
                     "--chains", "2", "--seed", "2", "--method", "marginal"])
    assert code == 0
    text = out.read_text()
    assert not any(tok in text for tok in (": NaN", ": Infinity", "[NaN", " NaN,"))
    d = json.loads(text)["diagnostics"]
    assert d["converged"] is False and d["warnings"]
    assert {"treedepth_saturated", "bfmi_min", "min_ess_tail"} <= set(d)


def test_foreign_notices_are_filtered_narrowly():
    from bayes_hlm.foreign_warnings import quiet_foreign

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quiet_foreign():
            warnings.warn("PyTensor could not link to a BLAS installation. Operations ...", UserWarning)
            warnings.warn("This process (pid=12) is multi-threaded, use of fork() may lead to "
                          "deadlocks in the child.", DeprecationWarning)
            warnings.warn("More chains (500) than draws (2). Passed array should have shape "
                          "(chains, draws, *shape)", UserWarning)
            warnings.warn("something else entirely", UserWarning)
            warnings.warn("PyTensor could not link to a BLAS installation", RuntimeWarning)
    assert [str(w.message) for w in seen] == ["something else entirely",
                                              "PyTensor could not link to a BLAS installation"]
