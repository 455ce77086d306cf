"""Benchmark: full model vs quadrature-collapsed engine on the generalized data sets (issue #17).

For each case of ``bench_glm_bambi.CASES`` (cbpp, grouseticks (± ``(1 | INDEX)``),
contraception, verbagg) ours with ``method="full"`` (compiled full-model density on nutpie)
and ``method="marginal"`` (the factor with most levels integrated out by adaptive
Gauss-Hermite quadrature, :mod:`bayes_hlm.backends.glmm_collapsed` /
:mod:`~bayes_hlm.backends.glmm_collapsed_crossed`), and ``method="auto"`` when asked: each
contender in its own process, one after the other, ``bh.fit`` defaults otherwise (4 chains
x 1000 + 1000). Recorded per fit: wall, CPU seconds of the process (all threads: the
measure on a loaded machine), load average at its start, min bulk ESS over every parameter
incl. every group effect, ESS per wall and per CPU second, divergences, max R-hat, mean
leapfrog steps per draw, the node count K. Writes benchmarks/results/<name>.json.

Usage: python benchmarks/bench_glmm_engines.py [--cases cbpp,contraception,verbagg]
       [--methods full,marginal] [--seeds 1] [--cap 1800] [--name glmm_engines]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results"


def worker(case: str, method: str, seed: int) -> dict:
    import warnings

    warnings.filterwarnings("ignore")
    import bayes_hlm as bh
    from bench_glm_bambi import CASES
    from harness import all_effect_diagnostics

    c = CASES[case]
    data = bh.datasets.load(c.get("data", case))
    t0, c0 = time.perf_counter(), time.process_time()
    r = bh.fit(c["ours"], data, family=c["family"], seed=seed, progressbar=False, warn=False,
               method=method)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    d, _ = all_effect_diagnostics(r)
    i = r.info
    steps = None
    try:
        tree = r._backend_tree if r._backend_tree is not None else r._tree
        steps = float(tree["sample_stats"]["n_steps"].mean())
    except Exception:  # noqa: BLE001 - a sampler without n_steps
        pass
    q = i.extra.get("quadrature") or {}
    return dict(wall_s=wall, cpu_s=cpu, sample_s=i.sample_s, min_ess_bulk=d["min_ess_bulk"],
                max_rhat=d.get("max_r_hat_all"), divergences=int(d.get("divergences", 0) or 0),
                steps_per_draw=steps, engine=f"{i.method}/{i.sampler}", K=q.get("K"),
                quad_error=q.get("max_error_at_draws"), integrated=i.extra.get("marginalised"),
                centered=i.extra.get("centered"))


def run_child(case, method, seed, cap) -> dict:
    load = os.getloadavg()[0]
    cmd = [sys.executable, __file__, "--worker", case, method, "--seeds", str(seed)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=cap, env=os.environ.copy())
    except subprocess.TimeoutExpired:
        return dict(status=f"> {cap} s (cap)", load=load)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        return dict(status="failed", error=(p.stderr or p.stdout)[-800:], load=load)
    return dict(status="ok", load=load, **json.loads(lines[-1]))


def table(rows) -> str:
    out = ["| case | method | engine | seed | load | wall s | CPU s | min ESS | ESS/CPU s | div | "
           "max R-hat | steps/draw | K |", "|" + "---|" * 13]
    for r in rows:
        if r["status"] != "ok":
            out.append(f"| {r['case']} | {r['method']} | | {r['seed']} | {r['load']:.1f} | "
                       f"{r['status']} | | | | | | | |")
            continue
        out.append(f"| {r['case']} | {r['method']} | {r['engine']} | {r['seed']} | {r['load']:.1f} | "
                   f"{r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['min_ess_bulk']:.0f} | "
                   f"{r['min_ess_bulk'] / r['cpu_s']:.1f} | {r['divergences']} | "
                   f"{r['max_rhat']:.3f} | {r['steps_per_draw'] or float('nan'):.1f} | "
                   f"{r['K'] if r['K'] is not None else '–'} |")
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", nargs=2, metavar=("CASE", "METHOD"), help=argparse.SUPPRESS)
    ap.add_argument("--cases", default="cbpp,contraception,verbagg")
    ap.add_argument("--methods", default="full,marginal")
    ap.add_argument("--seeds", default="1")
    ap.add_argument("--cap", type=float, default=1800.0)
    ap.add_argument("--name", default="glmm_engines")
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, int(args.seeds))))
        return
    RESULTS.mkdir(exist_ok=True)
    rows = []
    meta = dict(name=args.name, cpu_count=os.cpu_count(), started=time.strftime("%Y-%m-%d %H:%M"))
    for seed in map(int, args.seeds.split(",")):
        for case in args.cases.split(","):
            for m in args.methods.split(","):
                r = run_child(case, m, seed, args.cap)
                rows.append({"case": case, "method": m, "seed": seed, **r})
                print(table(rows[-1:]).splitlines()[-1], flush=True)
                (RESULTS / f"{args.name}.json").write_text(json.dumps({**meta, "rows": rows}, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
