"""Benchmark: a Bambi user's one-line change, ``model.fit()`` -> ``bh.fit(model)``, same run.

Sleepstudy, Bambi's ``Reaction ~ Days + (Days|Subject)`` (uncorrelated), 2 chains x 1000 draws
+ 1000 tuning, one process: imports before the clock; ``bh.fit(model)`` timed cold (first call:
Numba kernels compiled, or loaded from the on-disk cache) and warm (second call). Wall is the
whole call (Bambi: ``model.fit()``, which builds the PyMC model; ours: ``bh.fit`` including the
translation). Min bulk ESS over every scalar Bambi names (fixed, SDs, sigma, all group effects;
ours through ``result.to_bambi()``, so the same 41 scalars), and min ESS per second of wall.

Usage: python benchmarks/bench_bambi_interop.py [--draws N] [--seed S]
Prints a Markdown table and writes benchmarks/results/bambi_interop.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def min_ess(posterior) -> float:
    """Smallest bulk ESS over every scalar of a posterior Dataset."""
    import arviz as az

    ess = az.ess(posterior, method="bulk")
    return float(min(float(ess[v].min()) for v in ess.data_vars))


def max_rhat(posterior) -> float:
    import arviz as az

    rh = az.rhat(posterior)
    return float(max(float(rh[v].max()) for v in rh.data_vars))


def row(name: str, wall: float, posterior) -> dict:
    ess = min_ess(posterior)
    return {"contender": name, "wall_s": round(wall, 3), "min_ess_bulk": round(ess, 1),
            "min_ess_per_s": round(ess / wall, 1), "max_rhat": round(max_rhat(posterior), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    import bambi as bmb

    import bayes_hlm as bh

    data = bh.datasets.load("sleepstudy")
    formula = "Reaction ~ Days + (Days|Subject)"
    kw = dict(chains=2, draws=args.draws, tune=args.draws)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = bmb.Model(formula, data)
        t0 = time.perf_counter()
        idata = model.fit(**kw, random_seed=args.seed, progressbar=False)
        rows.append(row("bambi: model.fit()", time.perf_counter() - t0, idata["posterior"]))
        for label, seed in (("bayes_hlm: bh.fit(model), cold", args.seed),
                            ("bayes_hlm: bh.fit(model), warm", args.seed + 1)):
            t0 = time.perf_counter()
            result = bh.fit(model, **kw, seed=seed, progressbar=False, warn=False)
            wall = time.perf_counter() - t0
            rows.append(row(label, wall, result.to_bambi()["posterior"]))
            rows[-1]["engine"] = f"{result.info.method}/{result.info.sampler}"
    base = rows[0]["min_ess_per_s"]
    for r in rows:
        r["speedup_ess_per_s"] = round(r["min_ess_per_s"] / base, 1)
    cols = ["contender", "wall_s", "min_ess_bulk", "min_ess_per_s", "speedup_ess_per_s", "max_rhat"]
    print(f"sleepstudy, {formula} (Bambi: uncorrelated), 2 chains x {args.draws} + {args.draws}")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    RESULTS.mkdir(exist_ok=True)
    out = {"case": "sleepstudy", "formula": formula, "chains": 2, "draws": args.draws,
           "tune": args.draws, "seed": args.seed, "machine": platform.platform(),
           "bambi_version": bmb.__version__, "rows": rows}
    (RESULTS / "bambi_interop.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
