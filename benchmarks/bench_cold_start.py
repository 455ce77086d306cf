"""Cold first fit vs warm first fit (#18 item 5).

Each run is a fresh ``python`` process doing what a user's first session does: import
bayes_hlm, load sleepstudy, ``bh.fit("Reaction ~ Days + (Days | Subject)")`` with the
defaults (4 chains x 1000 draws). *cold*: ``NUMBA_CACHE_DIR`` and ``BAYES_HLM_CACHE`` point at
empty directories (first use on a machine, or after an upgrade); *warm*: the same process
again with the caches the cold one left. Reported per run: the fit's seconds (the ``bh.fit``
call), the process's seconds (imports included), and the longest *silent* stretch: seconds
of stderr with no phase line open (the phase reporter prints ``X …`` when a step has run 2 s
and ``X: done in N s`` at its end; between those the user knows what is happening).

Target: cold fit <= 2.5 x warm fit, and no silent stretch over 5 s.

Python's own bytecode cache is warm in every run (``PYTHONPYCACHEPREFIX`` in a scratch directory,
filled by one import first; an environment with ``PYTHONDONTWRITEBYTECODE`` would otherwise
recompile every module in every run). A third run per pair, *after warm-up*, starts from empty
caches, runs ``python -m bayes_hlm.warmup`` (what ``scripts/bootstrap.sh`` does after installing)
and then the same first fit: what a user following the README meets.

    python benchmarks/bench_cold_start.py [--repeats 2] [--out benchmarks/results/cold_start.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

CHILD = r"""
import time, sys
t0 = time.perf_counter()
import warnings
import bayes_hlm as bh
data = bh.datasets.load("sleepstudy")
t1 = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    m = bh.fit("Reaction ~ Days + (Days | Subject)", data, seed=2024)
t2 = time.perf_counter()
d = m.diagnostics()
print("RESULT", t1 - t0, t2 - t1, m.info.method, m.info.sampler, m.info.compile_s, m.info.sample_s,
      d["divergences"], flush=True)
"""


def _silent_stretches(events: list[tuple[float, str]], end: float) -> float:
    """Longest stretch with no open phase line and nothing printed."""
    open_phases: set[str] = set()
    last, worst = 0.0, 0.0
    for t, line in events:
        if not open_phases:
            worst = max(worst, t - last)
        line = line.strip()
        if ": done in" in line:
            open_phases.discard(line.split(": done in")[0])
        elif line.endswith("…") or line.endswith("..."):
            open_phases.add(line.rstrip("….").strip())
        last = t
    if not open_phases:
        worst = max(worst, end - last)
    return worst


PYC = Path(tempfile.gettempdir()) / "bayes_hlm_bench_pyc"


def _env(numba_dir: str, cache_dir: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=numba_dir, BAYES_HLM_CACHE=cache_dir,
               PYTHONPYCACHEPREFIX=str(PYC),
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("BAYES_HLM_QUIET", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_once(numba_dir: str, cache_dir: str) -> dict:
    env = _env(numba_dir, cache_dir)
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, bufsize=1)
    events, result = [], None
    for line in p.stdout:
        t = time.perf_counter() - t0
        if line.startswith("RESULT"):
            result = line.split()[1:]
            continue
        events.append((t, line.rstrip("\n")))
    p.wait()
    total = time.perf_counter() - t0
    if result is None:
        raise RuntimeError("child failed:\n" + "\n".join(l for _, l in events[-30:]))
    imp, fit, method, sampler, compile_s, sample_s, div = result
    return dict(process_s=round(total, 2), import_s=round(float(imp), 2), fit_s=round(float(fit), 2),
                method=method, sampler=sampler, compile_s=round(float(compile_s), 2),
                sample_s=round(float(sample_s), 2), divergences=int(div),
                max_silent_s=round(_silent_stretches(events, total), 2),
                lines=[f"{t:7.2f} {l}" for t, l in events])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=1, help="cold/warm pairs")
    ap.add_argument("--out", default=str(HERE / "results" / "cold_start.json"))
    ap.add_argument("--verbose", action="store_true", help="print each run's stderr lines")
    args = ap.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory() as nd, tempfile.TemporaryDirectory() as cd:  # fill PYC
        subprocess.run([sys.executable, "-c", "import bayes_hlm.fitting, bayes_hlm.backends.engine as e; "
                        "e.engine_status(); import pymc, nutpie, arviz"], env=_env(nd, cd), check=True,
                       capture_output=True)
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as nd, tempfile.TemporaryDirectory() as cd:
            cold = run_once(nd, cd)
            warm = run_once(nd, cd)
        with tempfile.TemporaryDirectory() as nd, tempfile.TemporaryDirectory() as cd:
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "bayes_hlm.warmup", "--quiet"], env=_env(nd, cd),
                           check=True)
            warmup_s = time.perf_counter() - t
            after = run_once(nd, cd)
            after["warmup_s"] = round(warmup_s, 2)
        for kind, res in (("cold", cold), ("warm", warm), ("after warm-up", after)):
            res.update(kind=kind, repeat=r)
            runs.append(res)
            print(f"{kind:13s} fit {res['fit_s']:6.2f} s  process {res['process_s']:6.2f} s  "
                  f"(import {res['import_s']:.2f}, compile {res['compile_s']:.2f}, sample {res['sample_s']:.2f})"
                  f"  longest silent stretch {res['max_silent_s']:.1f} s  [{res['method']}/{res['sampler']}]")
            if args.verbose:
                print("\n".join("      " + l for l in res["lines"]))
        print(f"     cold/warm: fit {cold['fit_s'] / warm['fit_s']:.2f}x, "
              f"process {cold['process_s'] / warm['process_s']:.2f}x  (target fit <= 2.5x); "
              f"after the bootstrap's warm-up ({after['warmup_s']:.0f} s at install): "
              f"{after['fit_s'] / warm['fit_s']:.2f}x")
    colds = sorted(r["fit_s"] for r in runs if r["kind"] == "cold")
    warms = sorted(r["fit_s"] for r in runs if r["kind"] == "warm")
    summary = dict(cold_fit_s=colds[len(colds) // 2], warm_fit_s=warms[len(warms) // 2])
    summary["ratio"] = round(summary["cold_fit_s"] / summary["warm_fit_s"], 2)
    summary["max_silent_s"] = max(r["max_silent_s"] for r in runs)
    afters = sorted(r["fit_s"] for r in runs if r["kind"] == "after warm-up")
    summary["after_warmup_fit_s"] = afters[len(afters) // 2]
    print(f"median cold {summary['cold_fit_s']} s / warm {summary['warm_fit_s']} s = {summary['ratio']}x; "
          f"longest silent stretch {summary['max_silent_s']} s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(name="cold_start", cpu_count=os.cpu_count(),
                                   load_avg=os.getloadavg(), summary=summary, runs=runs), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
