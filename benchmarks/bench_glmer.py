"""Benchmark bh.glmer against lme4::glmer / glmer.nb (Rscript), side by side in the same run.

Cases: the pinned fixture cases (tests/fixtures/glmer_reference.json: cbpp Laplace / nAGQ = 9 /
nAGQ = 0 / probit, grouseticks Poisson (+ observation-level effect) and NB, verbagg crossed,
contraception correlated slope, simulated Gamma / NB / Poisson with offsets) and a simulated
binary model with a correlated random slope, 200k rows / 2k groups (``--big``).

Ours: ``bh.glmer`` from the data frame (formula parsing to result, the CLI's ``wall_s``;
imports excluded; warm-up fits of tiny models first (one factor, AGQ, crossed) so that
Numba's cached kernels are loaded, and each case fitted once untimed before its timed fit)
and the process CPU time of the same fit. lme4: ``benchmarks/r/glmer_timing.R``
(median of N fits, data loaded, ``glmerControl(optimizer = "bobyqa", optCtrl = list(maxfun =
1e5))``), run right after ours per case. ``lme4_over_ours``: ratio of the wall times;
``lme4_over_ours_cpu`` the ratio of process CPU times (fairer on a shared, loaded machine);
``dloglik``: ours minus lme4's log-likelihood (lme4's convention, ``loglik_lme4``).

Usage: python benchmarks/bench_glmer.py [--no-r] [--big] [--only-big] [--n N] [--cases ...]
Writes benchmarks/results/glmer.json and prints a table.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

FAMILY = {"binomial": "binomial", "poisson": "poisson", "Gamma": "gamma",
          "negative_binomial": "negativebinomial"}


def simulate_binary_slope(n_groups=2000, per=100, seed=1) -> pd.DataFrame:
    """y ~ x + (x | g): intercept -0.5, slope 0.7, SDs 0.5 / 0.3, correlation 0.3."""
    rng = np.random.default_rng(seed)
    n = n_groups * per
    g = np.repeat(np.arange(n_groups), per)
    x = rng.normal(size=n)
    C = np.array([[0.25, 0.3 * 0.5 * 0.3], [0.3 * 0.5 * 0.3, 0.09]])
    b = rng.multivariate_normal([0, 0], C, size=n_groups)
    eta = -0.5 + 0.7 * x + b[g, 0] + b[g, 1] * x
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"y": y, "x": x, "g": pd.Categorical([f"g{i:04d}" for i in g])})


def fixture_cases():
    from test_glmer_reference import _fixture_frame

    from bayes_hlm import datasets

    ref = json.loads((ROOT / "tests/fixtures/glmer_reference.json").read_text())
    out = []
    for name, c in ref["cases"].items():
        df = (datasets.load(c["data"]) if c["data"] in ("cbpp", "grouseticks", "verbagg",
                                                          "contraception")
              else _fixture_frame(c["data"]))
        out.append(dict(name=name, formula=c["formula"], data=df, family=c["family"],
                        link=c["link"], nagq=c["nAGQ"],
                        weights=c["weights"] if isinstance(c["weights"], str) else None))
    return out


def time_ours(case):
    from bayes_hlm.glmer import glmer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c0 = time.process_time()
        t0 = time.perf_counter()
        r = glmer(case["formula"], case["data"], family=FAMILY[case["family"]], link=case["link"],
                  nagq=case["nagq"], weights=case["weights"])
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
    return r, wall, cpu


def time_lme4(case, n):
    if shutil.which("Rscript") is None:
        return None, "Rscript not found"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.csv"
        case["data"].to_csv(path, index=False, quoting=csv.QUOTE_NONNUMERIC)
        cmd = ["Rscript", str(ROOT / "benchmarks/r/glmer_timing.R"), str(path), case["formula"],
               "--family", case["family"], "--link", case["link"], "--nagq", str(case["nagq"]),
               "--n", str(n)]
        if case["weights"]:
            cmd += ["--weights", case["weights"]]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        if p.returncode != 0:
            return None, p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "R failed"
        return json.loads(p.stdout), None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-r", action="store_true")
    ap.add_argument("--big", action="store_true", help="add the 200k-row binary slope model")
    ap.add_argument("--only-big", action="store_true")
    ap.add_argument("--n", type=int, default=3, help="lme4 fits per case (median)")
    ap.add_argument("--cases", nargs="*", default=None)
    a = ap.parse_args()
    cases = [] if a.only_big else fixture_cases()
    if a.cases:
        cases = [c for c in cases if c["name"] in a.cases]
    if a.big or a.only_big:
        cases.append(dict(name="sim_binary_slope_200k", formula="y ~ x + (x | g)",
                          data=simulate_binary_slope(), family="binomial", link="logit", nagq=1,
                          weights=None))
    # warm-up: load the cached compiled kernels once (not part of any case's time): one
    # factor (Laplace and AGQ) and two crossed factors
    small = simulate_binary_slope(20, 20)
    small["h"] = pd.Categorical(np.arange(len(small)) % 7)
    for form, nagq in (("y ~ x + (1 | g)", 1), ("y ~ x + (1 | g)", 3),
                       ("y ~ x + (1 | g) + (1 | h)", 1)):
        time_ours(dict(formula=form, data=small, family="binomial", link="logit", nagq=nagq,
                       weights=None))
    rows = []
    for c in cases:
        # each case once untimed first: its family/link's kernels compile (or load from the
        # cache) on first use, which the tiny binomial warm-up above does not cover (a Gamma
        # case measured 24 s of Numba compiling against 0.03 s warm); reported as first_wall_s
        _, first_wall, _ = time_ours(c)
        r, wall, cpu = time_ours(c)
        lme4, err = (None, "skipped") if a.no_r else time_lme4(c, 1 if c["name"].startswith("sim_binary") else a.n)
        row = {"case": c["name"], "n_obs": int(r.nobs()), "formula": c["formula"],
               "family": c["family"], "link": c["link"], "nagq": c["nagq"],
               "ours_wall_s": wall, "ours_cpu_s": cpu, "ours_first_wall_s": first_wall, "ours_loglik_lme4": r.loglik_lme4,
               "ours_converged": r.converged, "ours_evals": r.fit.devfun.n_evals,
               "lme4_wall_s": None if lme4 is None else lme4["wall_s"],
               "lme4_cpu_s": None if lme4 is None else lme4.get("cpu_s"),
               "lme4_loglik": None if lme4 is None else lme4["logLik"],
               "lme4_messages": None if lme4 is None else lme4["messages"], "lme4_error": err}
        if lme4 is not None:
            row["lme4_over_ours"] = lme4["wall_s"] / wall
            if lme4.get("cpu_s"):
                row["lme4_over_ours_cpu"] = lme4["cpu_s"] / cpu
            row["dloglik"] = r.loglik_lme4 - lme4["logLik"]
        rows.append(row)
        print(f"{c['name']:24s} n={row['n_obs']:7d} ours {wall:8.2f}s (cpu {cpu:7.2f})  lme4 "
              + (f"{row['lme4_wall_s']:8.2f}s (cpu {row['lme4_cpu_s']:7.2f})  "
                 f"x{row['lme4_over_ours']:6.1f} wall x{row.get('lme4_over_ours_cpu', np.nan):6.1f} cpu"
                 f"  dLL {row['dloglik']:+.2e}" if lme4 is not None else f"-- ({err})"), flush=True)
    out = ROOT / "benchmarks/results/glmer.json"
    old = json.loads(out.read_text()) if out.exists() else {"cases": []}
    keep = [r for r in old.get("cases", []) if r["case"] not in {x["case"] for x in rows}]
    import os
    meta = {"machine": f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end",
            "note": "wall times on a shared machine; *_cpu_s: process CPU time of each side "
                    "(lme4: user + system of the fit)"}
    out.write_text(json.dumps({"meta": meta, "cases": keep + rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
