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
}


@pytest.mark.parametrize("name", [pytest.param(n, marks=m) for n, m in NOTEBOOKS.items()])
def test_notebook_runs(name, monkeypatch):
    monkeypatch.setenv("BAYES_HLM_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NB_DIR / name, as_version=4)
    t0 = time.perf_counter()
    client = nbclient.NotebookClient(nb, timeout=1500, kernel_name="python3",
                                     resources={"metadata": {"path": str(NB_DIR)}})
    client.execute()  # raises CellExecutionError with the failing cell
    print(f"{name}: {time.perf_counter() - t0:.0f} s")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors


@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_notebook_is_stripped(name):
    nb = nbformat.read(NB_DIR / name, as_version=4)
    for c in nb.cells:
        if c.cell_type == "code":
            assert not c.get("outputs") and c.get("execution_count") is None, f"{name}: outputs in git"


def test_fast_switch_is_read():
    """Every sampling notebook reads BAYES_HLM_FAST so tests stay short."""
    for name in ["01_sleepstudy.ipynb", "02_hsb_schools.ipynb", "03_crossed.ipynb"]:
        text = (NB_DIR / name).read_text()
        assert "BAYES_HLM_FAST" in text, name
