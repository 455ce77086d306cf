"""Benchmark: the quadrature-collapsed engine on a Bernoulli model with a correlated random slope.

20k rows / 200 groups (issue #17's first target), ``y ~ x + (x | g)``, 2 chains x 1000 +
1000. Contenders, each in its own process, same run: ours collapsed (``method="marginal"``:
effects integrated out by adaptive Gauss-Hermite quadrature, nutpie, exact effect draws;
cold = empty Numba cache, then warm), ours full PyMC model (``method="full"``), and
optionally Bambi + nutpie (``--bambi``; its model has uncorrelated effects). Columns as
harness.py: wall, min bulk ESS over every parameter incl. every group effect, ESS/s,
divergences, max R-hat. Writes benchmarks/results/glmm_collapsed.json.

Usage: python benchmarks/bench_glmm_collapsed.py [--groups 200] [--rows 100] [--bambi]
       [--contenders collapsed,full] [--cap 1800]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import RESULTS, SCRATCH, all_effect_diagnostics, _peak_mb  # noqa: E402

FORMULA = "y ~ x + (x | g)"


def simulate(groups: int, rows: int, seed: int = 1):
    """Bernoulli data: intercept -0.5, slope 0.8, group SDs (1, 0.5), correlation 0.3."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), rows)
    x = rng.uniform(-1.5, 1.5, groups * rows)
    sd = np.array([1.0, 0.5])
    cov = np.outer(sd, sd) * np.array([[1.0, 0.3], [0.3, 1.0]])
    b = rng.multivariate_normal(np.zeros(2), cov, size=groups)
    eta = -0.5 + 0.8 * x + b[g, 0] + b[g, 1] * x
    y = rng.binomial(1, 1.0 / (1.0 + np.exp(-eta)))
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{k}" for k in g]})


def worker(args) -> dict:
    import warnings

    warnings.filterwarnings("ignore")
    import numpy as np

    import bayes_hlm as bh

    data = simulate(args.groups, args.rows, args.seed)
    s = dict(chains=args.chains, draws=args.draws, tune=args.tune)
    if args.contender == "bambi":
        import arviz as az
        import bambi as bmb

        t0 = time.perf_counter()
        m = bmb.Model("y ~ x + (x | g)", data, family="bernoulli")
        idata = m.fit(draws=s["draws"], tune=s["tune"], chains=s["chains"], random_seed=args.seed,
                      progressbar=False, inference_method="nutpie")
        wall = time.perf_counter() - t0
        post = idata.posterior if hasattr(idata, "posterior") else idata["posterior"]
        ess, rhat = az.ess(post), az.rhat(post)
        ss = idata.sample_stats if hasattr(idata, "sample_stats") else idata["sample_stats"]
        return dict(wall_s=wall, min_ess_bulk=float(min(np.nanmin(ess[v].values) for v in ess.data_vars)),
                    max_rhat=float(max(np.nanmax(rhat[v].values) for v in rhat.data_vars)),
                    divergences=int(ss["diverging"].values.sum()), peak_mb=_peak_mb())
    method = "marginal" if args.contender == "collapsed" else "full"
    r = bh.fit(FORMULA, data, family="bernoulli", method=method, seed=args.seed,
               progressbar=False, warn=False, **s)
    d, stats_s = all_effect_diagnostics(r)
    i = r.info
    return dict(wall_s=i.wall_s, compile_s=i.compile_s, sample_s=i.sample_s, effects_s=i.effects_s,
                min_ess_bulk=d["min_ess_bulk"], max_rhat=d.get("max_r_hat_all", d.get("max_r_hat")),
                divergences=int(d.get("divergences", 0) or 0), stats_s=stats_s,
                sampler=i.sampler, quadrature=i.extra.get("quadrature"),
                effects_acceptance=i.extra.get("effects_acceptance"),
                effects_checked=d.get("effects_diagnostics"), peak_mb=_peak_mb(),
                fixed_mean=[float(v) for v in r.posterior["fixed"].mean(("chain", "draw")).values],
                sd_mean=[float(v) for v in r.posterior["sd__g"].mean(("chain", "draw")).values])


def run_child(args, contender, env=None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--contender", contender,
           "--groups", str(args.groups), "--rows", str(args.rows), "--chains", str(args.chains),
           "--draws", str(args.draws), "--tune", str(args.tune), "--seed", str(args.seed)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})}, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=args.cap)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"status": f"> {args.cap:.0f} s (cap)"}
    for line in out.splitlines()[::-1]:
        if line.startswith("RESULT "):
            res = json.loads(line[7:])
            res.update(status="ok", process_s=time.perf_counter() - t0)
            return res
    return {"status": "error", "error": (err or out)[-2000:]}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--contender", default="collapsed")
    ap.add_argument("--contenders", default="collapsed,full")
    ap.add_argument("--bambi", action="store_true")
    ap.add_argument("--warm-only", action="store_true", help="skip the cold-cache collapsed run")
    ap.add_argument("--groups", type=int, default=200)
    ap.add_argument("--rows", type=int, default=100)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cap", type=float, default=1800.0)
    ap.add_argument("--name", default="glmm_collapsed")
    args = ap.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(args), default=str))
        return
    contenders = args.contenders.split(",") + (["bambi"] if args.bambi else [])
    rows = []
    for con in contenders:
        if con == "collapsed":  # cold (empty Numba cache) then warm
            SCRATCH.mkdir(parents=True, exist_ok=True)
            cache = tempfile.mkdtemp(prefix="bh_cache_", dir=SCRATCH)
            env = ({} if args.warm_only else
                   {"NUMBA_CACHE_DIR": str(Path(cache) / "numba"), "BAYES_HLM_CACHE": cache})
            for phase in (("warm",) if args.warm_only else ("cold", "warm")):
                rows.append({"contender": f"ours collapsed ({phase})", **run_child(args, con, env)})
                print(rows[-1], flush=True)
            shutil.rmtree(cache, ignore_errors=True)
        else:
            label = {"full": "ours full (PyMC NUTS)", "bambi": "Bambi + nutpie (uncorrelated)"}[con]
            rows.append({"contender": label, **run_child(args, con)})
            print(rows[-1], flush=True)
    for r in rows:
        if r.get("status") == "ok" and r.get("wall_s"):
            r["ess_per_s"] = r["min_ess_bulk"] / r["wall_s"]
    warm = next((r for r in rows if r["contender"] == "ours collapsed (warm)" and "ess_per_s" in r), None)
    ratios = {r["contender"]: warm["ess_per_s"] / r["ess_per_s"] for r in rows
              if warm is not None and "ess_per_s" in r and r is not warm}
    out = {"name": args.name, "case": f"bernoulli {args.groups * args.rows} rows / {args.groups} groups, "
           f"{FORMULA}", "settings": {k: v for k, v in vars(args).items() if k not in ("worker", "contender")},
           "load_avg_at_end": os.getloadavg(), "cpu_count": os.cpu_count(), "rows": rows,
           "ess_per_s_ratio_warm_collapsed_over": ratios}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(out, indent=1, default=str))
    print("| contender | wall s | min bulk ESS | ESS/s | div | max R-hat |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['contender']} | {r.get('wall_s', r.get('status'))} | {r.get('min_ess_bulk')} | "
              f"{r.get('ess_per_s')} | {r.get('divergences')} | {r.get('max_rhat')} |")
    print("ratios (ESS/s of warm collapsed over):", ratios)


if __name__ == "__main__":
    main()
