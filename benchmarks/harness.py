"""Shared machinery of the fit benchmarks: cases, contenders, subprocess runs, tables, JSON.

Every contender runs in its own Python process (``python benchmarks/harness.py --worker``),
so the peak memory (``ru_maxrss`` of that process) and the time cap are per contender, and
imports are excluded from the timings (the worker imports everything, and creates one tiny
xarray Dataset, before the clock starts). Our marginal backend runs twice: the first process
with empty caches (*cold*: JAX programs and Numba kernels compiled; ``BAYES_HLM_CACHE`` and
``NUMBA_CACHE_DIR`` point at a fresh directory), the second with the caches the first left
(*warm*: the case the targets are about).

Columns: rows, groups, wall (s; ``result.info.wall_s`` for ours, ``fit()`` for Bambi), compile
(s), sampling (s), effects (s, group-effect draws), min bulk ESS over all parameters including
group effects, min ESS per second of wall, divergences, max R-hat, peak RSS (MB).
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
ROOT = HERE.parent
RESULTS = HERE / "results"
SCRATCH = Path(os.environ.get("BENCH_SCRATCH", "/tmp/perf"))

CASES = {
    "sleepstudy": dict(data="sleepstudy", formula="Reaction ~ Days + (Days|Subject)"),
    "hsb82": dict(data="hsb82", formula="mAch ~ cses + meanses + sector + (cses|school)"),
    "penicillin": dict(data="penicillin", formula="diameter ~ 1 + (1|plate) + (1|sample)"),
    "insteval": dict(data="insteval", formula="y ~ service + (1|s) + (1|d) + (1|dept)"),
    "sim200k": dict(sim=dict(n_groups=2000, rows_per_group=100), formula="y ~ x + (x|g)"),
    "sim1M": dict(sim=dict(n_groups=10_000, rows_per_group=100), formula="y ~ x + (x|g)"),
    "sim10M": dict(sim=dict(n_groups=100_000, rows_per_group=100), formula="y ~ x + (x|g)"),
}

CONTENDERS = ("bambi_pymc", "bambi_nutpie", "full", "marginal_pymc", "marginal_nutpie",
              "marginal", "lme4")


# --------------------------------------------------------------------------- #
# worker (runs in the child process)
# --------------------------------------------------------------------------- #
def load_case(name: str):
    import bayes_hlm as bh

    c = CASES[name]
    if "sim" in c:
        return bh.datasets.simulate(**c["sim"], slope=True, corr=0.3, seed=1).data
    return bh.datasets.load(c["data"])


def all_effect_diagnostics(r) -> tuple[dict, float]:
    """``(diagnostics, seconds)`` of a BayesResult: ESS/R-hat of every parameter incl. every
    group effect, unless all effect draws at once would not fit in 2 GB (then the documented
    random subset of levels). Shared by every benchmark so their min-ESS columns agree."""
    t1 = time.perf_counter()
    S = r.posterior.sizes["chain"] * r.posterior.sizes["draw"]
    n_eff = sum(r.ngrps()[f] * len(r._terms(f)) for f in r.factors)
    d = r.diagnostics(effects="all" if S * n_eff * 8 < 2e9 else "auto")
    return d, time.perf_counter() - t1


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _preimport(contender: str):
    """Import what each contender imports lazily, so imports stay outside the timings."""
    import importlib

    mods = ["bayes_hlm.backends.marginal", "bayes_hlm.backends.full", "bayes_hlm.backends.sampling",
            "bayes_hlm.backends.jax_nuts", "pymc.sampling.mcmc", "arviz"]
    if "nutpie" in contender:
        mods += ["nutpie", "nutpie.compile_pymc"]
    if contender == "marginal":
        mods += ["nutpie", "nutpie.compile_pymc", "bayes_hlm.backends.numba_nuts", "jax", "jax.numpy", "jax.experimental.serialize_executable", "numpyro",
                 "numpyro.infer.hmc", "pytensor.link.jax.dispatch", "pymc.initial_point"]
    if contender.startswith("bambi"):
        mods += ["bambi"]
    for m in mods:
        try:
            importlib.import_module(m)
        except Exception:  # noqa: BLE001
            pass


def _worker(args) -> dict:
    import warnings

    warnings.filterwarnings("ignore")
    import numpy as np
    import xarray as xr

    import bayes_hlm as bh

    xr.Dataset({"a": ("x", np.zeros(1))})  # xarray's lazy duck-array imports, outside the clock
    _preimport(args.contender)
    data = load_case(args.case)
    formula = CASES[args.case]["formula"]
    s = dict(chains=args.chains, draws=args.draws, tune=args.tune)
    out: dict = {}
    if args.contender.startswith("bambi"):
        import arviz as az
        import bambi as bmb

        t0 = time.perf_counter()
        m = bmb.Model(formula, data)
        kw = dict(draws=s["draws"], tune=s["tune"], chains=s["chains"], random_seed=args.seed,
                  progressbar=False)
        if args.contender == "bambi_nutpie":
            kw["inference_method"] = "nutpie"
        idata = m.fit(**kw)
        wall = time.perf_counter() - t0
        post = idata.posterior if hasattr(idata, "posterior") else idata["posterior"]
        t1 = time.perf_counter()
        ess = az.ess(post)
        rhat = az.rhat(post)
        stats_s = time.perf_counter() - t1
        ss = idata.sample_stats if hasattr(idata, "sample_stats") else idata["sample_stats"]
        out = dict(wall_s=wall, compile_s=None,
                   sample_s=float(post.attrs.get("sampling_time", np.nan)) or None,
                   effects_s=None,
                   min_ess_bulk=float(min(np.nanmin(ess[v].values) for v in ess.data_vars)),
                   max_rhat=float(max(np.nanmax(rhat[v].values) for v in rhat.data_vars)),
                   divergences=int(ss["diverging"].values.sum()), stats_s=stats_s)
    else:
        method = "full" if args.contender == "full" else "marginal"
        sampler = {"full": None, "marginal": "auto", "marginal_pymc": "pymc",
                   "marginal_nutpie": "nutpie"}[args.contender]
        r = bh.fit(formula, data, method=method, sampler=sampler, seed=args.seed,
                   progressbar=False, warn=False, **s)
        peak_fit = _peak_mb()
        d, stats_s = all_effect_diagnostics(r)
        i = r.info
        out = dict(wall_s=i.wall_s, compile_s=i.compile_s, sample_s=i.sample_s,
                   effects_s=i.effects_s, min_ess_bulk=d["min_ess_bulk"],
                   max_rhat=d.get("max_r_hat_all", d.get("max_r_hat")),
                   divergences=int(d.get("divergences", d.get("n_divergent", 0)) or 0),
                   stats_s=stats_s, lazy_effects=list(i.extra.get("lazy_effects", []) or []),
                   sampler=i.sampler, cache_warm=bool(
                       r.tree["posterior"].attrs.get("cache_warm", False)),
                   effects_checked=d.get("effects_diagnostics"), peak_mb_fit=peak_fit)
    out["peak_mb"] = _peak_mb()
    out["rows"] = int(len(data))
    return out


# --------------------------------------------------------------------------- #
# driver
# --------------------------------------------------------------------------- #
def _groups(name: str) -> str:
    return {"sleepstudy": "18", "hsb82": "160", "penicillin": "24+6", "insteval": "2972+1128+14",
            "sim200k": "2000", "sim1M": "10000", "sim10M": "100000"}[name]


def _run_child(case, contender, cfg, cap, env=None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--case", case,
           "--contender", contender, "--chains", str(cfg.chains), "--draws", str(cfg.draws),
           "--tune", str(cfg.tune), "--seed", str(cfg.seed)]
    t0 = time.perf_counter()
    # own process group: at the cap, the contender's chain processes are killed with it
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env={**os.environ, **(env or {})}, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=cap)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"status": f"> {cap:.0f} s (cap)", "wall_s": None}
    p = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    for line in p.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            res = json.loads(line[7:])
            res["status"] = "ok"
            res["process_s"] = time.perf_counter() - t0
            return res
    return {"status": "error", "error": (p.stderr or p.stdout)[-2000:]}


def _run_lme4(case, cap) -> dict:
    if not shutil.which("Rscript"):
        return {"status": "R not installed"}
    SCRATCH.mkdir(parents=True, exist_ok=True)
    csv = SCRATCH / f"bench_{case}.csv"
    if not csv.exists():
        load_case(case).to_csv(csv, index=False)
    cmd = ["Rscript", str(HERE / "r" / "lme4_timing.R"), str(csv), CASES[case]["formula"],
           "--n", "1" if case.startswith("sim") else "3"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=cap)
        res = json.loads(p.stdout)
        return {"status": "ok", "wall_s": res["wall_s"], "rows": res.get("n_obs")}
    except subprocess.TimeoutExpired:
        return {"status": f"> {cap:.0f} s (cap)"}
    except Exception as e:  # noqa: BLE001
        return {"status": f"error: {e}"}


def run_cases(cases, contenders, cfg, cap, name: str, caps=None) -> list[dict]:
    rows = []
    caps = caps or {}
    cap_all = cap
    for case in cases:
        for con in contenders:
            cap = caps.get(con, cap_all)
            if con == "lme4":
                r = _run_lme4(case, cap)
                rows.append({"case": case, "contender": "lme4 REML", **r})
            elif con == "marginal":
                SCRATCH.mkdir(parents=True, exist_ok=True)  # a fresh machine has no scratch folder
                cache = tempfile.mkdtemp(prefix="bh_cache_", dir=SCRATCH)
                # both of our caches start empty: compiled JAX programs and Numba kernels
                env = {"BAYES_HLM_CACHE": cache, "NUMBA_CACHE_DIR": str(Path(cache) / "numba")}
                for phase in ("cold", "warm"):
                    r = _run_child(case, con, cfg, cap, env=env)
                    rows.append({"case": case, "contender": f"ours marginal ({phase})", **r})
                shutil.rmtree(cache, ignore_errors=True)
            else:
                label = {"bambi_pymc": "Bambi (PyMC NUTS)", "bambi_nutpie": "Bambi + nutpie",
                         "full": "ours full (PyMC NUTS)", "marginal_pymc": "ours marginal, PyMC NUTS",
                         "marginal_nutpie": "ours marginal, nutpie"}[con]
                rows.append({"case": case, "contender": label, **_run_child(case, con, cfg, cap)})
            for r in rows[-2 if con == "marginal" else -1:]:
                r["cap_s"] = cap
                r["load_avg_after"] = os.getloadavg()
                print_row(r)
    out = {"name": name, "settings": vars(cfg) | {"cap_s": cap_all, "caps": caps},
           "load_avg_at_start": os.getloadavg(), "cpu_count": os.cpu_count(), "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=1, default=str))
    print()
    print(table(rows))
    return rows


def _f(v, fmt="{:.2f}"):
    return "" if v is None else fmt.format(v)


def print_row(r):
    print(f"  {r['case']:<11} {r['contender']:<26} {r.get('status')} wall={_f(r.get('wall_s'))}",
          file=sys.stderr, flush=True)


def table(rows) -> str:
    hdr = ("| case | contender | rows | groups | wall s | compile s | sampling s | effects s | "
           "min ESS bulk | min ESS/s | div | max R-hat | peak MB |")
    lines = [hdr, "|" + "---|" * 13]
    for r in rows:
        if r.get("status") != "ok":
            lines.append(f"| {r['case']} | {r['contender']} | | {_groups(r['case'])} | "
                         f"{r.get('status')} | | | | | | | | |")
            continue
        ess, wall = r.get("min_ess_bulk"), r.get("wall_s")
        lines.append(
            f"| {r['case']} | {r['contender']} | {r.get('rows', '')} | {_groups(r['case'])} | "
            f"{_f(wall)} | {_f(r.get('compile_s'))} | {_f(r.get('sample_s'))} | "
            f"{_f(r.get('effects_s'))} | {_f(ess, '{:.0f}')} | "
            f"{_f(ess / wall if ess and wall else None, '{:.1f}')} | {_f(r.get('divergences'), '{}')} | "
            f"{_f(r.get('max_rhat'), '{:.3f}')} | {_f(r.get('peak_mb'), '{:.0f}')} |")
    return "\n".join(lines)


def main(default_cases, name, default_contenders=CONTENDERS, argv=None):
    ap = argparse.ArgumentParser(description=f"benchmark: {name}")
    ap.add_argument("--cases", default=",".join(default_cases))
    ap.add_argument("--contenders", default=",".join(default_contenders))
    ap.add_argument("--quick", action="store_true", help="500+500 draws, our contenders and lme4 only")
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cap", type=float, default=600.0, help="seconds per contender")
    ap.add_argument("--cap-for", action="append", default=[], metavar="CONTENDER=S",
                    help="per-contender cap overriding --cap (repeatable)")
    ap.add_argument("--name", default=name)
    a = ap.parse_args(argv)
    contenders = [c for c in a.contenders.split(",") if c]
    if a.quick:
        a.draws, a.tune = 500, 500
        contenders = [c for c in contenders if c in ("marginal", "lme4")]
    cfg = argparse.Namespace(chains=a.chains, draws=a.draws, tune=a.tune, seed=a.seed)
    caps = {k: float(v) for k, v in (x.split("=", 1) for x in a.cap_for)}
    return run_cases([c for c in a.cases.split(",") if c], contenders, cfg, a.cap, a.name, caps)


if __name__ == "__main__":
    if "--worker" in sys.argv:
        ap = argparse.ArgumentParser()
        ap.add_argument("--worker", action="store_true")
        for k in ("case", "contender"):
            ap.add_argument(f"--{k}")
        for k in ("chains", "draws", "tune", "seed"):
            ap.add_argument(f"--{k}", type=int)
        res = _worker(ap.parse_args())
        print("RESULT " + json.dumps(res, default=float), flush=True)
    else:
        main(list(CASES), "fits")
