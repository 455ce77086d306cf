"""Generalized mixed models: the compiled GLMM density (``method="auto"``) vs the PyMC full model.

Cases (issue #17):

* ``bern20k``: 20,000 rows / 200 groups of binary data, ``y ~ x + (x | g)`` (correlated random
  slope), 2 chains x (1000 tune + 1000 draws); ``bern200k`` (2,000 groups) and ``bern1M``
  (10,000 groups) the same model at 10x and 50x;
* ``pois10M``: 10,000,000 rows of Poisson counts, ``y ~ a + b + (1 | g)`` with ``a`` of 5 and
  ``b`` of 3 levels and 100,000 groups (at most 1.5M distinct cells; compressed);
  ``pois1M`` is the same at 1M rows / 10,000 groups.

Contenders, each in its own process (imports outside the clock): ``ours`` (``bh.fit`` with the
defaults: for the Bernoulli cases the Metropolis-within-Gibbs engine, ``sampler="gibbs"``; run
twice, the first process with a fresh Numba cache = *cold*, the second = *warm*, the number
the targets are about), ``ours_nuts`` (nutpie on the compiled GLMM density), ``pymc_full``
(the same model through PyMC's NUTS, ``method="full", sampler="pymc"``) and ``bambi_nutpie``
(Bambi 0.21 + nutpie; Bambi's ``(x | g)`` has uncorrelated effects) and ``glmer`` (lme4's
Laplace point fit of the same data, ``benchmarks/r/glmer_timing.R``, one fit, data loaded).

Columns: wall (s), compile (s), sampling (s), min bulk ESS over every parameter incl. every
group effect (:func:`harness.all_effect_diagnostics`), min ESS/s of wall, divergences, max
R-hat, peak RSS (MB), rows and cells. Writes ``results/glmm.json``.

    python benchmarks/bench_glmm.py                       # bern20k: ours (cold, warm), pymc_full
    python benchmarks/bench_glmm.py --cases pois10M --contenders ours
    python benchmarks/bench_glmm.py --cases pois1M pois10M --probe   # what bounds them
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
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results"

CASES = {
    "bern20k": dict(kind="bernoulli", groups=200, rows=20_000, formula="y ~ x + (x | g)"),
    "bern200k": dict(kind="bernoulli", groups=2_000, rows=200_000, formula="y ~ x + (x | g)"),
    "bern1M": dict(kind="bernoulli", groups=10_000, rows=1_000_000, formula="y ~ x + (x | g)"),
    "pois1M": dict(kind="poisson", groups=10_000, rows=1_000_000, formula="y ~ a + b + (1 | g)"),
    "pois10M": dict(kind="poisson", groups=100_000, rows=10_000_000, formula="y ~ a + b + (1 | g)"),
}


def simulate(case: str, seed: int = 1):
    """The case's data (numpy only; deterministic in ``seed``)."""
    import numpy as np
    import pandas as pd

    c = CASES[case]
    rng = np.random.default_rng(seed)
    G, N = c["groups"], c["rows"]
    g = np.repeat(np.arange(G), N // G)
    if c["kind"] == "bernoulli":
        x = rng.normal(size=N)
        cov = np.array([[1.0, 0.3 * 0.5], [0.3 * 0.5, 0.25]])
        b = rng.multivariate_normal([0.0, 0.0], cov, size=G)
        eta = -0.5 + b[g, 0] + (1.0 + b[g, 1]) * x
        y = (rng.random(N) < 1 / (1 + np.exp(-eta))).astype(np.int8)
        return pd.DataFrame({"y": y, "x": x, "g": pd.Categorical.from_codes(g, [f"g{i}" for i in range(G)])})
    a = rng.integers(0, 5, N)
    bb = rng.integers(0, 3, N)
    eta = 0.2 + np.array([0, .3, -.2, .5, .1])[a] + np.array([0, -.4, .2])[bb] + rng.normal(0, .5, G)[g]
    y = rng.poisson(np.exp(eta)).astype(np.int32)
    return pd.DataFrame({"y": y, "a": pd.Categorical.from_codes(a, list("ABCDE")),
                         "b": pd.Categorical.from_codes(bb, list("xyz")),
                         "g": pd.Categorical.from_codes(g, [f"g{i}" for i in range(G)])})


def _worker(args) -> dict:
    import warnings

    warnings.filterwarnings("ignore")
    import numpy as np

    import bayes_hlm as bh
    from harness import _peak_mb, _preimport, all_effect_diagnostics

    _preimport("marginal")
    for m in ("bayes_hlm.backends.glmm_nuts", "bayes_hlm.backends.glmm_density",
              "bayes_hlm.backends.compression"):
        __import__(m)
    c = CASES[args.case]
    t0 = time.perf_counter()
    data = simulate(args.case)
    sim_s = time.perf_counter() - t0
    s = dict(chains=args.chains, draws=args.draws, tune=args.tune)
    if args.contender == "bambi_nutpie":
        import arviz as az
        import bambi as bmb

        t0 = time.perf_counter()
        m = bmb.Model(c["formula"], data, family=c["kind"])
        idata = m.fit(draws=s["draws"], tune=s["tune"], chains=s["chains"], random_seed=args.seed,
                      progressbar=False, inference_method="nutpie")
        wall = time.perf_counter() - t0
        post = idata.posterior
        ess, rhat = az.ess(post), az.rhat(post)
        return dict(wall_s=wall, compile_s=None, sample_s=None,
                    min_ess_bulk=float(min(np.nanmin(ess[v].values) for v in ess.data_vars)),
                    max_rhat=float(max(np.nanmax(rhat[v].values) for v in rhat.data_vars)),
                    divergences=int(idata.sample_stats["diverging"].values.sum()),
                    peak_mb=_peak_mb(), sim_s=sim_s, rows=len(data))
    kw = {"ours": {}, "ours_nuts": dict(method="full", sampler="numba")}.get(
        args.contender, dict(method="full", sampler="pymc"))
    if args.contender == "ours_nuts":
        import bayes_hlm.backends.numba_nuts  # noqa: F401  (imports outside the clock)
    t0, c0 = time.perf_counter(), time.process_time()
    r = bh.fit(c["formula"], data, family=c["kind"], seed=args.seed, progressbar=False,
               warn=False, **kw, **s)
    fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _peak_mb()
    d, stats_s = all_effect_diagnostics(r)
    frames = [r.summary()] + [f for f in r._effects_checks().values()]
    ess_all = __import__("pandas").concat([f["ess_bulk"] for f in frames])
    i = r.info
    ss = r._group("sample_stats")
    steps = dict(steps_per_draw=float(ss["n_steps"].mean()), step_size=float(ss["step_size"].mean()),
                 max_depth=int(ss["depth"].max())) if "n_steps" in ss else {}
    return dict(**steps, wall_s=i.wall_s, fit_call_s=fit_s, compile_s=i.compile_s, sample_s=i.sample_s,
                min_ess_bulk=d["min_ess_bulk"], max_rhat=d.get("max_r_hat_all", d.get("max_r_hat")),
                divergences=int(d.get("divergences", 0) or 0), stats_s=stats_s, peak_mb=peak,
                fit_cpu_s=fit_cpu, min_ess_param=str(ess_all.idxmin()),
                gibbs=i.extra.get("gibbs"),
                sampler=i.sampler, method=i.method, rows=int(i.extra.get("rows", len(data))),
                cells=int(i.extra.get("cells", len(data))), centered=i.extra.get("centered"),
                sim_s=sim_s)


def probe(case: str, n_grad: int = 20) -> dict:
    """What bounds a case without sampling it: data, spec, centring, compression, packing
    and one gradient of the compiled density (seconds; the gradient in milliseconds)."""
    import numpy as np

    from bayes_hlm.backends import glmm_density as gd
    from bayes_hlm.backends.compression import compress_rows
    from bayes_hlm.backends.parametrization import choose_centering
    from bayes_hlm.families import get_family
    from bayes_hlm.fitting.problem import build_problem
    from harness import _peak_mb

    from bayes_hlm.backends import glmm_kernels as gk
    from bayes_hlm.backends import group_effects  # noqa: F401  (imports outside the clock)

    c = CASES[case]
    fam = get_family(c["kind"])
    one = np.ones(1)
    gk.eta_derivatives(gk.kernel_code(fam), one, one, one, one, 1.0, one.copy(), one.copy())
    out = {}
    t = time.perf_counter()
    data = simulate(case)
    out["simulate_s"] = time.perf_counter() - t
    t = time.perf_counter()
    pr = build_problem(c["formula"], data, family=fam, method="full")
    out["build_problem_s"] = time.perf_counter() - t
    del data
    t = time.perf_counter()
    cent = choose_centering(pr.design, fam)
    out["centering_s"], out["centered"] = time.perf_counter() - t, cent
    t = time.perf_counter()
    rows = gd.design_rows(pr.design)
    cells = compress_rows(rows, fam)
    out["compress_s"], out["rows"], out["cells"] = time.perf_counter() - t, rows.N, cells.N
    t = time.perf_counter()
    pk = gd.pack(pr.design, pr.fit_priors, fam, cent, cells)
    out["pack_s"], out["ndim"], out["buffer_mb"] = time.perf_counter() - t, pk.ndim, pk.buf.nbytes / 1e6
    g = np.empty(pk.ndim)
    gd.logp_grad(pk.init, pk.buf, g)  # compile / load
    n_grad = max(n_grad, int(2e6 / max(cells.N, 1)))
    t, c = time.perf_counter(), time.process_time()
    for _ in range(n_grad):
        gd.logp_grad(pk.init, pk.buf, g)
    out["gradient_ms"] = (time.perf_counter() - t) / n_grad * 1e3
    out["gradient_cpu_ms"] = (time.process_time() - c) / n_grad * 1e3  # robust to the load
    out["peak_mb"] = _peak_mb()
    return out


def _glmer(case: str, args) -> dict:
    """lme4::glmer's Laplace fit of the case's data (Rscript; wall of the fit, data loaded)."""
    import csv
    import shutil

    if shutil.which("Rscript") is None:
        return dict(error="Rscript not found")
    c = CASES[case]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.csv"
        simulate(case).to_csv(path, index=False, quoting=csv.QUOTE_NONNUMERIC)
        fam = "binomial" if c["kind"] == "bernoulli" else c["kind"]
        cmd = ["Rscript", str(HERE / "r" / "glmer_timing.R"), str(path), c["formula"],
               "--family", fam, "--n", "1"]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            return dict(error=f"timed out after {args.timeout} s")
    if p.returncode != 0:
        return dict(error=p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "R failed")
    out = json.loads(p.stdout)
    return {k: out.get(k) for k in ("wall_s", "cpu_s", "logLik", "fixed", "theta", "singular",
                                    "messages", "versions")}


def _run(case: str, contender: str, args, env=None) -> dict:
    if contender == "glmer":
        load0 = os.getloadavg()[0]
        out = _glmer(case, args)
        out["load_start_end"] = [round(load0, 1), round(os.getloadavg()[0], 1)]
        return out
    cmd = [sys.executable, __file__, "--worker", "--case", case, "--contender", contender,
           "--chains", str(args.chains), "--draws", str(args.draws), "--tune", str(args.tune),
           "--seed", str(args.seed)]
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout,
                           env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        return dict(error=f"timed out after {args.timeout} s")
    if p.returncode != 0:
        return dict(error=p.stderr.strip().splitlines()[-1] if p.stderr.strip() else str(p.returncode))
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["process_s"] = time.perf_counter() - t0
    out["load_start_end"] = [round(load0, 1), round(os.getloadavg()[0], 1)]
    if out.get("min_ess_bulk") and out.get("wall_s"):
        out["min_ess_per_s"] = out["min_ess_bulk"] / out["wall_s"]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--case", default="bern20k")
    ap.add_argument("--contender", default="ours")
    ap.add_argument("--cases", nargs="+", default=["bern20k"], choices=list(CASES))
    ap.add_argument("--contenders", nargs="+", default=["ours", "pymc_full"],
                    choices=["ours", "ours_warm", "ours_nuts", "pymc_full", "bambi_nutpie", "glmer"],
                    help="ours_warm: ours once, with the Numba cache this checkout already has; "
                    "ours_nuts: NUTS on the compiled full-model density (sampler='numba')")
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--out", default=str(RESULTS / "glmm.json"))
    ap.add_argument("--probe", action="store_true",
                    help="time data, spec, compression, packing and one gradient; no sampling")
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args), default=str))
        return
    if args.probe:
        path = Path(args.out)
        results = json.loads(path.read_text()) if path.exists() else {}
        for case in args.cases:
            results.setdefault(case, {})["probe"] = probe(case)
            print(case, results[case]["probe"], flush=True)
            path.write_text(json.dumps(results, indent=2, default=str))
        return
    path = Path(args.out)
    results = json.loads(path.read_text()) if path.exists() else {}
    for case in args.cases:
        res = results.setdefault(case, {})
        res["settings"] = dict(chains=args.chains, draws=args.draws, tune=args.tune,
                               machine=f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at start")
        done: list[str] = []  # a contender named twice runs twice (keys ours, ours_2, ...)
        for who in args.contenders:
            if who == "ours":
                with tempfile.TemporaryDirectory() as cache:  # cold: empty Numba cache
                    res["ours_cold"] = _run(case, who, args, {"NUMBA_CACHE_DIR": cache})
                    print(case, "ours_cold", res["ours_cold"], flush=True)
                    res["ours"] = _run(case, who, args, {"NUMBA_CACHE_DIR": cache})
            elif who == "ours_warm":
                key = "ours" if "ours" not in done else f"ours_{done.count('ours') + 1}"
                done.append("ours")
                res[key] = _run(case, "ours", args)
                who = key
            else:
                key = who if who not in done else f"{who}_{done.count(who) + 1}"
                done.append(who)
                res[key] = _run(case, who, args)
                who = key
            print(case, who, res[who], flush=True)
            path.parent.mkdir(exist_ok=True)  # after each contender: a timeout keeps the rest
            path.write_text(json.dumps(results, indent=2, default=str))
        ours, ref = res.get("ours", {}), res.get("pymc_full", {})
        if ours.get("min_ess_per_s") and ref.get("min_ess_per_s"):
            res["ratio_ess_per_s_vs_pymc_full"] = ours["min_ess_per_s"] / ref["min_ess_per_s"]
        bam = res.get("bambi_nutpie", {})
        if ours.get("min_ess_per_s") and bam.get("min_ess_per_s"):
            res["ratio_ess_per_s_vs_bambi_nutpie"] = ours["min_ess_per_s"] / bam["min_ess_per_s"]
        gl = res.get("glmer", {})
        if ours.get("wall_s") and gl.get("wall_s"):  # < 1: our full posterior beats its point fit
            res["ratio_wall_vs_glmer"] = ours["wall_s"] / gl["wall_s"]
        for k in [k for k in res if k.startswith("ours_") and k[5:].isdigit()]:  # repeated runs
            if res[k].get("min_ess_per_s") and bam.get("min_ess_per_s"):
                res[f"ratio_ess_per_s_vs_bambi_nutpie_{k}"] = res[k]["min_ess_per_s"] / bam["min_ess_per_s"]
            if res[k].get("wall_s") and gl.get("wall_s"):
                res[f"ratio_wall_vs_glmer_{k}"] = res[k]["wall_s"] / gl["wall_s"]
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
