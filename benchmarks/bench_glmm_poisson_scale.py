"""Poisson counts at scale (issue #17): ``y ~ a + b + (1 | g)``, ``a`` of 5 and ``b`` of 3 levels.

Cases (data from :func:`bench_glmm.simulate`): ``pois20k`` (20,000 rows / 200 groups),
``pois1M`` (1M rows / 10,000 groups), ``pois10M`` (10M rows / 100,000 groups; at most 1.5M
distinct cells). 2 chains x (1000 tune + 1000 draws), every fit in its own process after a
warm-up process has filled the Numba cache (the *second process* of the targets).

Contenders: ``ours`` (``bh.fit`` defaults: ``method="auto"`` picks the per-group sufficient
form of the collapsed density, backends/glmm_sufficient.py) and ``full`` (the compiled full
model through nutpie, ``method="full"``: the default before it).

Phases (seconds): spec (``build_problem``: formula and data to the design), reduce (rows to
per-group cells), compile (node choice, callbacks; reduce excluded), sampling, effect draws,
post-fit (the result: everything else of ``bh.fit``); total is ``bh.fit``'s wall clock from
the DataFrame in memory. Also: the fit's CPU seconds (every thread; what an unloaded machine with as many cores
would need), nutpie's mean leapfrog steps per kept draw, the 1-minute load average at the
end, min bulk ESS over every parameter incl. every group effect
(:func:`harness.all_effect_diagnostics`), max R-hat, divergences, peak RSS (MB), quadrature
nodes. Writes ``results/glmm_poisson_scale.json``.

    python benchmarks/bench_glmm_poisson_scale.py                        # pois20k, pois1M: ours, full
    python benchmarks/bench_glmm_poisson_scale.py --cases pois10M --contenders ours
    python benchmarks/bench_glmm_poisson_scale.py --cases pois10M --phases   # one default fit, per phase
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

from bench_glmm import CASES as _GLMM_CASES  # noqa: E402

CASES = {"pois20k": dict(kind="poisson", groups=200, rows=20_000, formula="y ~ a + b + (1 | g)"),
         "pois1M": _GLMM_CASES["pois1M"], "pois10M": _GLMM_CASES["pois10M"]}


def simulate(case: str, seed: int = 1):
    import bench_glmm

    bench_glmm.CASES.setdefault(case, CASES[case])
    return bench_glmm.simulate(case, seed)


def _worker(case: str, contender: str, seed: int, chains: int, draws: int, tune: int) -> dict:
    import warnings

    warnings.filterwarnings("ignore")
    import bayes_hlm as bh
    from bayes_hlm.fitting.problem import build_problem
    from harness import _peak_mb, _preimport, all_effect_diagnostics

    _preimport("marginal")
    for m in ("bayes_hlm.backends.glmm_sufficient", "bayes_hlm.backends.glmm_collapsed",
              "bayes_hlm.backends.glmm_nuts", "bayes_hlm.backends.compression"):
        __import__(m)
    if os.environ.get("BENCH_FLOAT32_DRAWS"):  # a warm-up that compiles the float32 draws too
        import bayes_hlm.backends.glmm_sufficient as gs

        gs.FLOAT32_DRAWS = 0
    c = CASES[case]
    data = simulate(case)
    t = time.perf_counter()
    build_problem(c["formula"], data, family=c["kind"])  # the spec phase alone (timed again in fit)
    spec_s = time.perf_counter() - t
    kw = {} if contender == "ours" else dict(method="full")
    cpu0 = time.process_time()
    r = bh.fit(c["formula"], data, family=c["kind"], seed=seed, progressbar=False, warn=False,
               chains=chains, draws=draws, tune=tune, **kw)
    cpu_s = time.process_time() - cpu0  # every thread of the process (the load-free cost)
    peak = _peak_mb()
    ss = r._group("sample_stats")
    steps = float(ss["n_steps"].values.mean()) if "n_steps" in ss else None
    d, stats_s = all_effect_diagnostics(r)
    i, x = r.info, r.info.extra
    reduce_s = float(x.get("reduce_s", 0.0))
    compile_s = i.compile_s - reduce_s
    effects_s = float(x.get("effects_s", 0.0) or 0.0)
    # the rest of bh.fit (spec timed in its own build_problem call: its noise can push this below 0)
    post_s = max(0.0, i.wall_s - spec_s - reduce_s - compile_s - i.sample_s - effects_s)
    return dict(case=case, contender=contender, method=i.method, form=x.get("form"),
                whitened=x.get("whitened"), nuts_maxdepth=x.get("nuts_maxdepth"),
                total_s=i.wall_s, spec_s=spec_s, reduce_s=reduce_s, compile_s=compile_s,
                sample_s=i.sample_s, effects_s=effects_s, postfit_s=post_s, cpu_s=cpu_s,
                leapfrogs_per_draw=steps, load=os.getloadavg()[0],
                peak_mb=peak, min_ess_bulk=d["min_ess_bulk"],
                max_rhat=d.get("max_r_hat_all", d.get("max_r_hat")),
                divergences=int(d.get("divergences", 0) or 0), diagnostics_s=stats_s,
                rows=int(x.get("rows", len(data))), cells=int(x.get("cells", len(data))),
                nodes=(x.get("quadrature") or {}).get("K"),
                node_error=(x.get("quadrature") or {}).get("max_error_vs_doubled"))


#: (module, function, phase): what ``--phases`` times inside one default ``bh.fit``
_PHASES = [("bayes_hlm.fitting.api", "build_problem", "spec"),
           ("bayes_hlm.backends.glmm_sufficient", "reduce_rows", "reduce"),
           ("bayes_hlm.backends.glmm_collapsed", "mode_and_spread", "mode (BFGS)"),
           ("bayes_hlm.backends.glmm_collapsed", "choose_nodes", "node check"),
           ("bayes_hlm.backends.sampling", "run_nutpie", "sampling"),
           ("bayes_hlm.backends.glmm_sufficient", "draw_effects", "effect draws"),
           ("bayes_hlm.backends.glmm_collapsed", "posterior_dataset", "posterior assembly"),
           ("bayes_hlm.fitting.tail", "_result", "result"),
           ("bayes_hlm.results.diagnostics", "diagnostics", "fit-time check (R-hat, ESS)"),
           ("bayes_hlm.fitting.tail", "warn_overdispersion", "overdispersion check")]


def _phase_timers() -> list:
    """Wrap :data:`_PHASES` so each call appends ``(phase, wall s, CPU s)`` (process CPU: every
    thread) to the returned list; the wrapped names are looked up at call time by the fit."""
    import importlib

    out = []
    for mod, name, label in _PHASES:
        m = importlib.import_module(mod)
        f = getattr(m, name)

        def timed(*a, _f=f, _label=label, **k):
            w, c = time.perf_counter(), time.process_time()
            try:
                return _f(*a, **k)
            finally:
                out.append((_label, time.perf_counter() - w, time.process_time() - c))
        setattr(m, name, timed)
    return out


def _phases_worker(case: str, seed: int, chains: int, draws: int, tune: int) -> dict:
    """One default ``bh.fit`` (``warn=True``: the fit-time convergence and overdispersion
    checks included), timed phase by phase (:func:`_phase_timers`)."""
    import warnings

    warnings.filterwarnings("ignore")
    import bayes_hlm as bh
    from harness import _peak_mb, _preimport

    _preimport("marginal")
    import bayes_hlm.results.diagnostics as rd

    timers = _phase_timers()
    import bayes_hlm.fitting.tail as tail

    # tail imported diagnostics' warning_messages only; the check itself runs through
    # BayesResult.diagnostics -> results.diagnostics.diagnostics (wrapped above)
    assert tail is not None and rd is not None
    c = CASES[case]
    data = simulate(case)
    w, cpu = time.perf_counter(), time.process_time()
    r = bh.fit(c["formula"], data, family=c["kind"], seed=seed, progressbar=False, chains=chains,
               draws=draws, tune=tune)
    wall, cpu = time.perf_counter() - w, time.process_time() - cpu
    phases: dict = {}
    for label, pw, pc in timers:
        a = phases.setdefault(label, [0.0, 0.0])
        a[0] += pw
        a[1] += pc
    ss = r._group("sample_stats")
    x = r.info.extra
    return dict(case=case, seed=seed, wall_s=wall, cpu_s=cpu, load=os.getloadavg()[0],
                peak_mb=_peak_mb(), leapfrogs_per_draw=float(ss["n_steps"].values.mean()),
                whitened=x.get("whitened"), nuts_maxdepth=x.get("nuts_maxdepth"),
                gaussian_deviation=x.get("gaussian_deviation"),
                phases={k: {"wall_s": v[0], "cpu_s": v[1]} for k, v in phases.items()},
                other_wall_s=wall - sum(v[0] for v in phases.values()),
                fixed_mean=[float(v) for v in r.posterior["fixed"].mean(("chain", "draw")).values],
                sd_mean=float(r.posterior["sd__g"].mean()))


def _spawn(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True,
                         text=True)
    if out.returncode != 0:
        return {"error": out.stderr[-2000:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", nargs="+", default=["pois20k", "pois1M"], choices=list(CASES))
    ap.add_argument("--contenders", nargs="+", default=["ours", "full"], choices=["ours", "full"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--worker", nargs=2, metavar=("CASE", "CONTENDER"))
    ap.add_argument("--phases", action="store_true",
                    help="time one default fit (warn=True) phase by phase per case (ours only)")
    ap.add_argument("--phases-worker", metavar="CASE")
    ap.add_argument("--key", default="",
                    help="store under 'CASE/phases (KEY)' (--phases) or 'CASE/CONTENDER (KEY)' instead")
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(_worker(*a.worker, a.seed, a.chains, a.draws, a.tune)))
        return
    if a.phases_worker:
        print(json.dumps(_phases_worker(a.phases_worker, a.seed, a.chains, a.draws, a.tune)))
        return
    if a.phases:
        common = ["--seed", str(a.seed), "--chains", str(a.chains), "--draws", str(a.draws),
                  "--tune", str(a.tune)]
        _spawn(["pois20k", "ours", "--draws", "50", "--tune", "50"])  # the Numba cache
        os.environ["BENCH_FLOAT32_DRAWS"] = "1"  # and its float32 effect draws (10M rows' kind)
        _spawn(["pois20k", "ours", "--draws", "50", "--tune", "50"])
        del os.environ["BENCH_FLOAT32_DRAWS"]
        for case in a.cases:
            out = subprocess.run([sys.executable, __file__, "--phases-worker", case, *common],
                                 capture_output=True, text=True)
            res = (json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0
                   else {"case": case, "error": out.stderr[-2000:]})
            print(json.dumps(res), flush=True)
            for k, v in res.get("phases", {}).items():
                print(f"  {k:32s} wall {v['wall_s']:7.2f}  CPU {v['cpu_s']:7.2f}")
            RESULTS.mkdir(exist_ok=True)
            path = RESULTS / "glmm_poisson_scale.json"
            old = json.loads(path.read_text()) if path.exists() else {}
            old[f"{case}/phases" + (f" ({a.key})" if a.key else "")] = res
            path.write_text(json.dumps(old, indent=1))
        return
    common = ["--seed", str(a.seed), "--chains", str(a.chains), "--draws", str(a.draws),
              "--tune", str(a.tune)]
    for who in a.contenders:  # fills the Numba cache: the timed fits run in a second process
        _spawn(["pois20k", who, "--draws", "50", "--tune", "50"])
    rows = []
    for case in a.cases:
        for who in a.contenders:
            res = _spawn([case, who, *common])
            res.setdefault("case", case)
            res.setdefault("contender", who)
            rows.append(res)
            print(json.dumps(res), flush=True)
    cols = ["case", "contender", "total_s", "cpu_s", "spec_s", "reduce_s", "compile_s", "sample_s",
            "effects_s", "postfit_s", "leapfrogs_per_draw", "load", "peak_mb", "min_ess_bulk", "max_rhat", "divergences",
            "cells", "nodes"]
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(f"{r.get(k):.4g}" if isinstance(r.get(k), float) else str(r.get(k))
                         for k in cols))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "glmm_poisson_scale.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    old.update({f"{r['case']}/{r['contender']}" + (f" ({a.key})" if a.key else ""): r for r in rows})
    path.write_text(json.dumps(old, indent=1))


if __name__ == "__main__":
    main()
