"""The old-vs-new benchmark driver's summary and verdict (no fitting here)."""

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_refactor.py"
_spec = importlib.util.spec_from_file_location("bench_refactor", _PATH)
br = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(br)


@pytest.mark.parametrize("old,new,verdict", [
    ([1.0, 1.1, 1.2], [1.5, 1.6, 1.7], "slower"),        # every new run slower, ratio > 1.1
    ([1.0, 1.1, 1.2], [0.5, 0.6, 0.7], "faster"),
    ([1.0, 1.1, 1.2], [1.05, 1.1, 1.3], "same (within noise)"),
    ([1.0, 1.1, 2.0], [1.5, 1.6, 1.7], "same (within noise)"),  # overlapping runs: noise
    ([1.0, 1.0, 1.0], [1.05, 1.05, 1.05], "same (within noise)"),  # disjoint but < tol
])
def test_verdict(old, new, verdict):
    assert br._verdict(old, new, 0.10) == verdict


def test_summarise_ratios_and_load():
    def run(w, load, ess=None):
        r = {"status": "ok", "wall_s": w, "load1": load}
        if ess is not None:
            r |= {"ess_per_s": ess / w, "min_ess_bulk": ess, "sampler": "numba"}
        return r

    runs = {"old": [run(2.0, 1.0, 1000), run(4.0, 3.0, 1000), run(3.0, 2.0, 1000)],
            "new": [run(1.0, 2.0, 1000), run(2.0, 2.0, 1000), {"status": "error: x", "load1": 5.0}]}
    row = br.summarise("c", runs, 0.10)
    assert row["old"]["median_s"] == 3.0 and row["old"]["min_s"] == 2.0
    assert row["new"]["n"] == 2 and row["new"]["median_s"] == 1.5
    assert row["ratio_median"] == pytest.approx(0.5)
    assert row["ratio_min"] == pytest.approx(0.5)
    assert row["load1_range"] == [1.0, 5.0]
    assert row["verdict"] == "same (within noise)"  # new max 2.0 is not below old min 2.0
    assert "| c |" in br.table([row])
