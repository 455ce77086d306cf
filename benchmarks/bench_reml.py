"""Benchmark the REML engine against lme4 (Rscript) and statsmodels MixedLM.

Times parse + design + optimisation (``build_spec`` + ``reml``: the CLI's ``wall_s``;
Satterthwaite df are lazy and not included, as lme4's ``lmer`` does not compute them); imports
and file reading excluded. ``ours_cpu_s`` is the process CPU time of the same fits (the machine
is shared: under load the wall clock mostly measures the other jobs). lme4 times come from
``benchmarks/r/lme4_timing.R`` (median of N ``lmer`` fits, data loaded), run back to back with
ours per case; ``lme4_over_ours`` is the ratio of the two wall times. ``ours_evals`` /
``lme4_feval``: criterion evaluations (ours include the 19 of the convergence check's Hessian;
lme4's count is the optimiser's only). statsmodels MixedLM (REML, lbfgs) is timed on the
single-factor cases it can fit.

Crossed cases: insteval (73k rows, 2972 × 1128 × 14 crossed levels) and two simulated crossed
designs with a correlated slope: 30k rows, ``(x | g)`` 300 levels crossed with ``(1 | h)`` 2000
levels (the slope in the remainder), and 60k rows, ``(x | g)`` 3000 levels crossed with
``(1 | h)`` 1100 (the slope in the first, largest factor); all on the blocked sparse Cholesky
(:mod:`bayes_hlm.statistics.blocked_cholesky`).

Usage: python benchmarks/bench_reml.py [--quick] [--no-r] [--no-statsmodels] [--n N] [--cases ...]
Writes benchmarks/results/reml.json (with --cases: updates those rows, keeps the others) and
prints a table.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from bayes_hlm.datasets import load, simulate
from bayes_hlm.reml import reml
from bayes_hlm.spec.build import build_spec

ROOT = Path(__file__).resolve().parents[1]


def cases(quick: bool):
    sleep = load("sleepstudy")
    sleep["School"] = np.repeat(["1", "2", "3"], 60)
    hsb = load("hsb82")
    out = [
        ("sleep_ri", "Reaction ~ Days + (1|Subject)", sleep, "Subject"),
        ("sleep_rs", "Reaction ~ Days + (Days|Subject)", sleep, "Subject"),
        ("sleep_uncorr", "Reaction ~ Days + (Days||Subject)", sleep, None),
        ("sleep_3level", "Reaction ~ Days + (1|School) + (1|Subject:School)", sleep, None),
        ("hsb_null", "mAch ~ 1 + (1|school)", hsb, "school"),
        ("hsb_ses", "mAch ~ ses + (1|school)", hsb, "school"),
        ("hsb_full", "mAch ~ cses + meanses + sector + (cses|school)", hsb, "school"),
        ("penicillin", "diameter ~ 1 + (1|plate) + (1|sample)", load("penicillin"), None),
    ]
    if not quick:
        out.append(("insteval", "y ~ service + (1|s) + (1|d) + (1|dept)", load("insteval"), None))
        cr = simulate(n_groups=300, rows_per_group=100, slope=True, corr=0.3, crossed=2000, seed=3)
        out.append(("sim_crossed_slope", cr.formula, cr.data, None))
        cr = simulate(n_groups=3000, rows_per_group=20, slope=True, corr=0.3, crossed=1100, seed=3)
        out.append(("sim_crossed_slope_first", cr.formula, cr.data, None))
        sim = simulate(n_groups=10_000, rows_per_group=100, slope=True, corr=0.3, seed=1)
        d = sim.data.copy()
        d["g"] = d["g"].astype(str)
        out.append(("sim_1M_slope", sim.formula, d, "g"))
    return out


def time_ours(formula, data, n):
    ts, tspec, cpu = [], [], []
    for _ in range(n):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = time.perf_counter()
            c = time.process_time()
            spec = build_spec(formula, data)
            t1 = time.perf_counter()
            m = reml(spec)
            ts.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
            tspec.append(t1 - t)
    return float(np.median(ts)), float(np.median(tspec)), m, float(np.median(cpu))


def time_lme4(formula, data, n):
    if shutil.which("Rscript") is None:
        return None, "Rscript not found"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.csv"
        data.to_csv(path, index=False, quoting=csv.QUOTE_NONNUMERIC)
        levels = []
        for c in data.columns:
            if hasattr(data[c], "cat"):
                levels += ["--levels", f"{c}=" + ",".join(map(str, data[c].cat.categories))]
        cmd = ["Rscript", str(ROOT / "benchmarks/r/lme4_timing.R"), str(path), formula,
               "--n", str(n)] + (levels if len(",".join(levels)) < 20000 else [])
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        return None, r.stderr[-500:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    return float(out["wall_s"]), out


def time_statsmodels(formula, data, group, n):
    import statsmodels.formula.api as smf
    if group is None:
        return None
    fixed = formula.split("+ (")[0].strip()
    rhs = formula.split("(")[-1].split("|")[0].strip()
    re_formula = None if rhs == "1" else "~" + rhs
    ts = []
    for _ in range(n):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = time.perf_counter()
            smf.mixedlm(fixed, data, groups=data[group], re_formula=re_formula).fit(
                reml=True, method="lbfgs")
            ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def _nlopt() -> bool:
    try:
        import nlopt  # noqa: F401
    except ImportError:
        return False
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="skip insteval and the 1M-row case")
    ap.add_argument("--no-r", action="store_true")
    ap.add_argument("--no-statsmodels", action="store_true")
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--cases", nargs="*", help="only these cases (others keep their rows in the JSON)")
    a = ap.parse_args()
    rows = []
    for name, formula, data, group in cases(a.quick and not a.cases):
        if a.cases and name not in a.cases:
            continue
        big = len(data) > 50_000
        n = 1 if big else a.n
        ours, spec_s, m, cpu = time_ours(formula, data, n)
        lme4, info = (None, "skipped") if a.no_r else time_lme4(formula, data, n)
        sm = None
        if not a.no_statsmodels and group is not None and len(data) < 200_000:
            sm = time_statsmodels(formula, data, group, n)
        row = {"case": name, "formula": formula, "n_obs": len(data), "ours_s": ours,
               "ours_cpu_s": cpu, "ours_spec_s": spec_s, "lme4_s": lme4, "statsmodels_s": sm,
               "lme4_over_ours": None if lme4 is None else lme4 / ours,
               "ours_crit": m.objective,
               "lme4_crit": info.get("reml_criterion") if isinstance(info, dict) else None,
               "ours_evals": int(m.devfun.n_evals),
               "lme4_feval": info.get("feval") if isinstance(info, dict) else None,
               "schur_mode": m.devfun.stats.blocks.mode}
        rows.append(row)
        f = lambda v: "   n/a" if v is None else f"{v:8.3f}"  # noqa: E731
        print(f"{name:<14} n={len(data):>8}  ours {f(ours)} (cpu {f(cpu)}, formula/design "
              f"{f(spec_s)}, {row['ours_evals']} evals)  lme4 {f(lme4)} ({row['lme4_feval']} evals)  "
              f"statsmodels {f(sm)}  crit ours-lme4 "
              f"{m.objective - row['lme4_crit'] if row['lme4_crit'] is not None else float('nan'):+.2e}",
              flush=True)
    out = ROOT / "benchmarks/results/reml.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    import os
    if a.cases and out.exists():      # a partial run updates its rows and keeps the others
        done = {r["case"] for r in rows}
        rows = [r for r in json.loads(out.read_text())["cases"] if r["case"] not in done] + rows
    out.write_text(json.dumps({"cases": rows, "n_runs": a.n, "load_avg_at_end": os.getloadavg(),
                               "optimizer": "nlopt LN_BOBYQA" if _nlopt() else "scipy L-BFGS-B",
                               "note": "seconds, median of runs, ours / lme4 / statsmodels timed "
                               "back to back per case; ours_s includes formula parsing + design "
                               "(ours_spec_s); shared 2-core machine, indicative only"}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
