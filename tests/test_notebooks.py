"""The tutorial notebooks run top to bottom (BAYES_HLM_FAST=1: 2 chains x 300 draws) and are stored stripped."""

import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NB_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = {
    "01_sleepstudy.ipynb": [],
    "02_hsb_schools.ipynb": [],
    "03_crossed.ipynb": [pytest.mark.slow],  # InstEval: minutes even when subsampled
    "04_benchmarks.ipynb": [],
    "05_generalized.ipynb": [],  # contraception + grouse ticks: four short full-model fits
}
#: notebooks whose executed outputs must be free of warnings (stderr text naming a Warning)
NO_WARNINGS = {"05_generalized.ipynb"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=m) for n, m in NOTEBOOKS.items()])
def test_notebook_runs(name, monkeypatch):
    monkeypatch.setenv("BAYES_HLM_FAST", "1")
    nb = nbformat.read(NB_DIR / name, as_version=4)
    t0 = time.perf_counter()
    client = nbclient.NotebookClient(nb, timeout=1500, kernel_name="python3",
                                     resources={"metadata": {"path": str(NB_DIR)}})
    client.execute()  # raises CellExecutionError with the failing cell
    print(f"{name}: {time.perf_counter() - t0:.0f} s")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    if name in NO_WARNINGS:
        stderr = [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if o.get("output_type") == "stream" and o.get("name") == "stderr"]
        assert not [t for t in stderr if "Warning" in t], stderr


@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_notebook_is_stripped(name):
    nb = nbformat.read(NB_DIR / name, as_version=4)
    for c in nb.cells:
        if c.cell_type == "code":
            assert not c.get("outputs") and c.get("execution_count") is None, f"{name}: outputs in git"


def test_fast_switch_is_read():
    """Every sampling notebook reads BAYES_HLM_FAST so tests stay short."""
    for name in ["01_sleepstudy.ipynb", "02_hsb_schools.ipynb", "03_crossed.ipynb", "05_generalized.ipynb"]:
        text = (NB_DIR / name).read_text()
        assert "BAYES_HLM_FAST" in text, name


def test_benchmark_notebook_plots_results(tmp_path, monkeypatch):
    """04_benchmarks draws time and ESS/s vs rows when result files exist."""
    import json
    import shutil

    (tmp_path / "notebooks").mkdir()
    res = tmp_path / "benchmarks" / "results"
    res.mkdir(parents=True)
    runs = [{"case": "sim", "contender": m, "rows": n, "wall_s": t * n / 1e4, "min_ess_bulk": 800.0,
             "status": "ok"} for m, t in (("full", 5.0), ("marginal", 0.5)) for n in (1_000, 10_000, 100_000)]
    (res / "scaling.json").write_text(json.dumps({"name": "scaling", "cpu_count": 2, "rows": runs}))
    (res / "reml.json").write_text(json.dumps({"cases": [
        {"case": "a", "n_obs": 180, "ours_s": 0.02, "lme4_s": 0.05, "ours_crit": 1.0, "lme4_crit": 1.0}]}))
    (res / "other.json").write_text(json.dumps([{"rows": 10, "scheduler": "threads", "peak": [1, 2]}]))
    shutil.copy(NB_DIR / "04_benchmarks.ipynb", tmp_path / "notebooks")
    nb = nbformat.read(tmp_path / "notebooks" / "04_benchmarks.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path / "notebooks")}}).execute()
    outs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert sum("image/png" in o.get("data", {}) for o in outs) >= 3
    text = "".join(o.get("text", "") for o in outs)
    assert "3 benchmark file" in text and "Bayesian runs: 6, REML cases: 1" in text
