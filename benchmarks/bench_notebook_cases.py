"""Every model fit of the notebooks, warm, at the notebooks' own settings (issue #20: "every case
in the notebooks under 10 s warm").

Usage: python benchmarks/bench_notebook_cases.py [--cases 03_inst,...] [--name notebook_cases]
                                                 [--no-warmup] [--list]

Cases run in notebook order in one process, each as its notebook calls ``bh.fit`` (4 chains x
1000 + 1000, seed 2024; the notebooks' ``target_accept`` where they set one). A tiny fit first
loads the libraries and the compiled kernels (``--no-warmup``: the first case pays that), so each
case's time is what a user waits for that cell on a warm machine: ``bh.fit``'s wall time and the
process CPU time it used (on a shared machine the CPU time is the steadier number; with ``c``
chains on ``k`` idle cores the sampling wall is about its CPU time / min(c, k)). Steps per draw:
NUTS's mean leapfrog steps per kept draw (compiled engines). Results go to
``results/<name>.json`` with the load average before and after each case.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import bayes_hlm as bh

SAMPLE = dict(chains=4, draws=1000, tune=1000, seed=2024)


def _sleep3():
    sleep = bh.datasets.load("sleepstudy")
    return sleep.assign(School=pd.Categorical(np.repeat(["1", "2", "3"], 60)))


def _hsb():
    hsb = bh.datasets.load("hsb82").drop(columns=["cses", "meanses"])
    return bh.center(hsb, "ses", by="school")


#: (notebook, formula, data, extra fit options): the notebooks' fit cells, in order
CASES = {
    "01_ri": ("01", "Reaction ~ Days + (1 | Subject)", lambda: bh.datasets.load("sleepstudy"), {}),
    "01_rs": ("01", "Reaction ~ Days + (Days | Subject)", lambda: bh.datasets.load("sleepstudy"), {}),
    "01_3": ("01", "Reaction ~ Days + (1 | School) + (1 | Subject:School)", _sleep3,
             {"target_accept": 0.95}),
    "01_3s": ("01", "Reaction ~ Days + (Days | School) + (1 | Subject:School)", _sleep3,
              {"target_accept": 0.95}),
    "02_null": ("02", "mAch ~ 1 + (1 | school)", _hsb, {}),
    "02_ses": ("02", "mAch ~ ses + (1 | school)", _hsb, {}),
    "02_cses": ("02", "mAch ~ cses + (1 | school)", _hsb, {}),
    "02_level2": ("02", "mAch ~ cses + meanses + sector + (1 | school)", _hsb, {}),
    "02_slope": ("02", "mAch ~ cses + meanses + sector + (cses | school)", _hsb, {}),
    "02_cross": ("02", "mAch ~ cses * sector + meanses + (cses | school)", _hsb, {}),
    "03_pen": ("03", "diameter ~ 1 + (1 | plate) + (1 | sample)", lambda: bh.datasets.load("penicillin"), {}),
    "03_inst": ("03", "y ~ service + (1 | s) + (1 | d) + (1 | dept)", lambda: bh.datasets.load("insteval"), {}),
    "05_contra": ("05", "use ~ age + I(age^2) + urban + livch + (urban | district)",
                  lambda: bh.datasets.load("contraception"), {"family": "bernoulli"}),
    "05_grouse": ("05", "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)",
                  lambda: bh.datasets.load("grouseticks"), {"family": "poisson"}),
    "05_grouse_olre": ("05", "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION) + (1 | INDEX)",
                       lambda: bh.datasets.load("grouseticks"), {"family": "poisson"}),
}


def _steps_per_draw(m) -> float | None:
    try:
        return float(np.asarray(m.tree["sample_stats"]["n_steps"].values).mean())
    except (KeyError, TypeError, AttributeError):
        return None


def run_case(name: str) -> dict:
    nb, formula, data, kw = CASES[name]
    df = data()
    load0 = os.getloadavg()[0]
    c0, t0 = time.process_time(), time.perf_counter()
    m = bh.fit(formula, df, **(SAMPLE | {"progressbar": False} | kw))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    d = m.diagnostics()
    i = m.info
    return {"notebook": nb, "formula": formula + "".join(f" [{k} {v}]" for k, v in kw.items()),
            "wall": round(wall, 2), "cpu": round(cpu, 2), "sampler": i.sampler, "method": i.method,
            "compile": round(i.compile_s, 2), "sample": round(i.sample_s, 2),
            "effects": round(getattr(i, "effects_s", 0.0) or 0.0, 2),
            "structure": (i.extra or {}).get("structure"), "steps_per_draw": _steps_per_draw(m),
            "divergences": d["divergences"], "max_r_hat_all": round(float(d["max_r_hat_all"]), 4),
            "min_ess_bulk": round(float(d["min_ess_bulk"])), "load": [round(load0, 1), round(os.getloadavg()[0], 1)]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--name", default="notebook_cases")
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args(argv)
    if a.list:
        print("\n".join(f"{k}: {v[1]}" for k, v in CASES.items()))
        return
    names = [c for c in a.cases.split(",") if c]
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        sys.exit(f"unknown cases {unknown}; --list shows them")
    if not a.no_warmup:  # libraries and compiled kernels loaded once, as in a notebook session
        bh.fit("Reaction ~ Days + (1 | Subject)", bh.datasets.load("sleepstudy"), chains=2, draws=50,
               tune=50, seed=1, progressbar=False)
    out = {"settings": "the notebooks' settings (4 chains x 1000 + 1000, seed 2024, their target_accept); "
                       "one process, cases in notebook order after a warm-up fit; wall/cpu = bh.fit "
                       "wall and process CPU seconds",
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(), "cases": {}}
    print("| case | engine | wall (s) | CPU (s) | sampling (s) | effects (s) | steps/draw | div | max R-hat | min ESS | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in names:
        r = run_case(n)
        out["cases"][n] = r
        eng = f"{r['sampler']} ({r['structure']})" if r["structure"] else r["sampler"]
        spd = "" if r["steps_per_draw"] is None else f"{r['steps_per_draw']:.1f}"
        print(f"| {n} | {eng} | {r['wall']} | {r['cpu']} | {r['sample']} | {r['effects']} | {spd} | "
              f"{r['divergences']} | {r['max_r_hat_all']} | {r['min_ess_bulk']} | {r['load'][0]}-{r['load'][1]} |",
              flush=True)
    path = Path(__file__).resolve().parent / "results" / f"{a.name}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
