"""``bayes-hlm fit`` prints a brms-style summary (JSON only with --json or --out), and the
files it and ``BayesResult.save()`` write get the umask's permissions."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bayes_hlm.cli import main
from bayes_hlm.results.atomic import atomic_path

ROOT = Path(__file__).resolve().parents[1]
FIT = ["--method", "marginal", "--sampler", "pymc", "--chains", "1", "--draws", "60", "--tune", "60",
       "--seed", "3", "--mass-matrix", "diag"]
HEADERS = ["Family: gaussian", "Formula: y ~ x + (1|g)", "Number of observations: 40",
           "Population-Level Effects:", "Group-Level Effects:", "~g (Number of levels: 8)",
           "Estimate", "Est.Error", "l-95% CI", "u-95% CI", "Rhat", "Bulk_ESS", "Tail_ESS",
           "sd(Intercept)", "sigma"]


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(8), 5)
    x = rng.normal(size=40)
    y = 1 + 0.5 * x + rng.normal(size=8)[g] + rng.normal(size=40) * 0.5
    path = tmp_path_factory.mktemp("cli") / "d.csv"
    path.write_text("y,x,g\n" + "\n".join(f"{a},{b},g{c}" for a, b, c in zip(y, x, g)) + "\n")
    return str(path)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_fit_prints_summary_not_json_and_out_honours_umask(csv, tmp_path):
    out = tmp_path / "fit.json"
    p = subprocess.run([sys.executable, "-m", "bayes_hlm", "fit", "y ~ x + (1|g)", csv, *FIT,
                        "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=600,
                       env={**os.environ, "PYTHONPATH": str(ROOT)},
                       preexec_fn=lambda: os.umask(0o027))
    assert p.returncode == 0, p.stderr
    for h in HEADERS:
        assert h in p.stdout, (h, p.stdout)
    assert '"fixed"' not in p.stdout and not p.stdout.lstrip().startswith("{")
    assert "Intercept" in p.stdout and "x " in p.stdout
    assert set(json.loads(out.read_text())) >= {"fixed", "sigma", "reml", "diagnostics"}
    assert _mode(out) == 0o666 & ~0o027


def test_fit_json_flag_prints_json(csv, capsys):
    rc = main(["fit", "y ~ x + (1|g)", csv, *FIT, "--json"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    d = json.loads(cap.out)  # nothing but the JSON on stdout
    assert d["n_obs"] == 40 and "reml" in d
    assert "Population-Level Effects" not in cap.out


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_save_honours_umask(sleep_fit, tmp_path, mask):
    old = os.umask(mask)
    try:
        sleep_fit.save(tmp_path / "fit.nc")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "fit.nc") == 0o666 & ~mask


def test_atomic_path_keeps_an_existing_files_mode_and_cleans_up(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("old")
    os.chmod(target, 0o600)
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and _mode(target) == 0o600
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError
    assert target.read_text() == "new" and list(tmp_path.iterdir()) == [target]
