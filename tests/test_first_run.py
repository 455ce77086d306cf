"""What a new user meets first (#18): the README's commands create an environment that opens
the notebooks, and the first fit's Numba kernels are compiled at install, not during it."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _extras() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def test_bootstrap_installs_jupyterlab_and_ipywidgets():
    """notebooks/README.md says `.venv/bin/jupyter lab notebooks/` after the bootstrap: the
    extras the bootstrap installs must contain JupyterLab (and ipywidgets: without it tqdm in a
    notebook prints 'TqdmWarning: IProgress not found')."""
    boot = (ROOT / "scripts" / "bootstrap.sh").read_text()
    m = re.search(r'^EXTRAS="([^"]+)"', boot, re.M)
    assert m, "bootstrap.sh names its extras in EXTRAS=..."
    installed = [req for extra in m.group(1).split(",") for req in _extras()[extra]]
    names = {re.split(r"[<>=\[ ]", r)[0].lower() for r in installed}
    assert {"jupyterlab", "ipywidgets", "ipykernel"} <= names
    assert '-e ".[$EXTRAS]"' in boot
    readme = (ROOT / "notebooks" / "README.md").read_text()
    assert "bash scripts/bootstrap.sh" in readme and ".venv/bin/jupyter lab notebooks/" in readme
    assert ".venv/bin/pip" not in readme  # uv's venv has no pip


def test_bootstrap_warms_the_compile_cache():
    boot = (ROOT / "scripts" / "bootstrap.sh").read_text()
    assert ".venv/bin/python -m bayes_hlm.warmup" in boot


def test_warmup_leaves_the_first_fit_kernels_cached(tmp_path):
    """After `python -m bayes_hlm.warmup` with an empty NUMBA_CACHE_DIR, the kernels a first
    sleepstudy fit compiles are in the cache (checked in a fresh process), and the density
    entry points of the common structures and their C callbacks load from it."""
    import os

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-m", "bayes_hlm.warmup"], env=env, capture_output=True,
                         text=True, timeout=1200)
    assert run.returncode == 0, run.stderr
    assert "kernels compiled and cached" in run.stderr
    check = ("from bayes_hlm.backends import numba_density as nd, numba_nuts as nn, conditional_draws;"
             "from bayes_hlm.warmup import DENSITIES;"
             "ks = [nd.kernel(*s) for s in DENSITIES];"
             "print(*[nn.compile_cache_cold(k) for k in ks], conditional_draws.compile_cache_cold(),"
             "      *[nn.callbacks(k)[0].cache_hits for k in ks])")
    out = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True,
                         timeout=300)
    from bayes_hlm.warmup import DENSITIES

    n = len(DENSITIES)
    assert ("single", 1) in DENSITIES  # (1 | g)
    assert ("single", 2) in DENSITIES  # the demo's and README's sleepstudy model
    assert out.stdout.split() == ["False"] * (n + 1) + ["1"] * n, out.stderr
    # glmer (the frequentist column of every binomial/Poisson Bayesian fit): its kernels load
    # from the cache in a fresh process, nothing compiles (a family's first fit compiles ~30 s)
    glmer_check = (
        "import warnings, numpy as np, pandas as pd, bayes_hlm as bh;"
        "from bayes_hlm.glmer import kernels;"
        "warnings.simplefilter('ignore');"
        "r = np.random.default_rng(3); d = pd.DataFrame({'x': r.normal(size=300),"
        " 'g': pd.Categorical(np.arange(300) % 15)}); d['y'] = r.binomial(1, 0.4, size=300);"
        "d['k'] = r.poisson(3.0, size=300);"
        "bh.glmer('y ~ x + (x | g)', d, family='binomial'); bh.glmer('k ~ x + (1 | g)', d, family='poisson');"
        "print(sum(kernels.block_pass.stats.cache_hits.values()),"
        "      sum(kernels.block_pass.stats.cache_misses.values()))")
    out = subprocess.run([sys.executable, "-c", glmer_check], env=env, capture_output=True,
                         text=True, timeout=300)
    hits, misses = out.stdout.split()
    assert int(hits) >= 1 and int(misses) == 0, out.stderr
