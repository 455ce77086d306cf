"""#21 "No crashes": nutpie's Rust panics never reach the user.

A panic inside nutpie (``assertion failed: early_end < num_tune`` for tune=0) arrives as
``pyo3_runtime.PanicException``, a BaseException that slips past every ``except Exception``.
These checks run in a subprocess so that a panic (or an abort) fails the test instead of
taking the test process down with it.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent('''
    import warnings
    import numpy as np, pandas as pd, pymc as pm
    import bayes_hlm as bh
    from bayes_hlm.backends.sampling import SamplerConfig, run_nutpie
    from bayes_hlm.errors import BayesHLMError
    import nutpie

    # 1. a panic inside nutpie becomes a BayesHLMError naming what to change
    with pm.Model() as m:
        pm.Normal("a")
    cfg = SamplerConfig(sampler="nutpie", chains=1, draws=10, tune=1, progressbar=False)
    cfg.tune = 0  # past every validation: the one input known to make nutpie panic
    try:
        run_nutpie(nutpie.compile_pymc_model(m), cfg)
        print("NO ERROR")
    except BayesHLMError as e:
        print("CLEAR ERROR:", e)

    # 2. a badly identified model (3 groups with slopes) fits with honest warnings
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(3), 10)
    x = rng.normal(size=30)
    y = 1 + 0.5 * x + rng.normal(size=3)[g] + 0.3 * rng.normal(size=3)[g] * x + rng.normal(size=30)
    df = pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})
    for kw in (dict(draws=30, tune=1, chains=2),
               dict(draws=30, tune=1, chains=2, mass_matrix="diag"),
               dict(draws=100, tune=100, chains=2),
               dict(method="full", sampler="nutpie", draws=30, tune=1, chains=2)):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            fit = bh.fit("y ~ x + (x | g)", df, progressbar=False, **kw)
        warned = any("ConvergenceWarning" in type(x.message).__name__ for x in w)
        print("FIT", fit.info.sampler, fit.info.draws, "warned" if warned else "silent")
''')


def test_nutpie_panics_become_clear_errors_and_small_models_fit():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=600)
    out = run.stdout
    assert run.returncode == 0, run.stderr[-3000:]
    assert "PanicException" not in run.stderr, run.stderr[-3000:]
    assert "CLEAR ERROR:" in out and "tune=0" in out and "Raise tune" in out, out
    fits = [line for line in out.splitlines() if line.startswith("FIT")]
    assert len(fits) == 4, out
    # a 3-group slope model cannot be estimated well: the user is told so
    assert all(line.endswith("warned") for line in fits), out
