"""Benchmark two source trees side by side in one run: did a refactor slow anything down?

Usage::

    python benchmarks/bench_refactor.py OLD_TREE NEW_TREE [--reps 3] [--reml-reps 5]
        [--cases sleepstudy,hsb82,penicillin,sim200k] [--reml-cases ...] [--insteval]

Each tree gets one persistent worker process (this file with ``--worker``, run with
``PYTHONPATH=<tree>`` and the tree as working directory, so it imports that tree's
``bayes_hlm``; its own ``BAYES_HLM_CACHE``/``NUMBA_CACHE_DIR``). Both workers first fit every
case once (warm-up: Numba/JAX compilation, discarded, run in parallel), then the timed runs
alternate between the trees, the order swapped every repetition (old, new, new, old, ...), so
slow drift of the machine load falls on both alike. Same seeds in both trees (rep ``i``:
``seed = 1 + i``), so identical numerics give identical ESS.

Bayesian cases: ``bh.fit`` with default settings (2 chains x 1000 tune + 1000 draws),
wall time of the ``bh.fit`` call, min bulk ESS over every parameter including all group
effects (``result.diagnostics``, as ``harness.py`` does) and min ESS per second of wall.
REML cases (those of ``bench_reml.py``): ``build_spec`` + ``reml`` wall time, median of
``--reml-inner`` calls per timed run (insteval, ~30 s a fit: one call, ``--reps`` runs).

The 1-min load average is recorded before every run. Prints a Markdown table (median and
min per tree, ratio new/old of the medians and of the minima, verdict) and writes
``benchmarks/results/refactor.json``.

Verdict: ``slower`` only when the median ratio exceeds 1 + ``--tol`` (default 0.10) *and*
every new run is slower than every old run; ``faster`` symmetrically; else ``same``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import all_effect_diagnostics  # noqa: E402  (benchmarks/ is not a package)

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SCRATCH = Path(os.environ.get("BENCH_SCRATCH", "/tmp/perf"))

BAYES = {
    "sleepstudy": "Reaction ~ Days + (Days|Subject)",
    "hsb82": "mAch ~ cses + meanses + sector + (cses|school)",
    "penicillin": "diameter ~ 1 + (1|plate) + (1|sample)",
    "sim200k": "y ~ x + (x|g)",
}
REML = {  # as in bench_reml.py
    "reml_sleep_ri": ("sleep3", "Reaction ~ Days + (1|Subject)"),
    "reml_sleep_rs": ("sleep3", "Reaction ~ Days + (Days|Subject)"),
    "reml_sleep_uncorr": ("sleep3", "Reaction ~ Days + (Days||Subject)"),
    "reml_sleep_3level": ("sleep3", "Reaction ~ Days + (1|School) + (1|Subject:School)"),
    "reml_hsb_null": ("hsb82", "mAch ~ 1 + (1|school)"),
    "reml_hsb_ses": ("hsb82", "mAch ~ ses + (1|school)"),
    "reml_hsb_full": ("hsb82", "mAch ~ cses + meanses + sector + (cses|school)"),
    "reml_penicillin": ("penicillin", "diameter ~ 1 + (1|plate) + (1|sample)"),
    "reml_insteval": ("insteval", "y ~ service + (1|s) + (1|d) + (1|dept)"),
}


# --------------------------------------------------------------------------- #
# worker: one per tree, reads jobs (JSON lines) on stdin, answers on a private fd
# --------------------------------------------------------------------------- #
def _data(name: str, cache: dict):
    if name not in cache:
        import numpy as np

        import bayes_hlm as bh

        if name == "sim200k":
            d = bh.datasets.simulate(n_groups=2000, rows_per_group=100, slope=True, corr=0.3,
                                     seed=1).data
        elif name == "sleep3":
            d = bh.datasets.load("sleepstudy")
            d["School"] = np.repeat(["1", "2", "3"], 60)
        else:
            d = bh.datasets.load(name)
        cache[name] = d
    return cache[name]


def _bayes_job(job: dict, cache: dict) -> dict:
    import bayes_hlm as bh

    data = _data(job["case"], cache)
    t0 = time.perf_counter()
    r = bh.fit(BAYES[job["case"]], data, chains=2, draws=1000, tune=1000, seed=job["seed"],
               progressbar=False, warn=False)
    wall = time.perf_counter() - t0
    d, stats_s = all_effect_diagnostics(r)
    i = r.info
    return dict(wall_s=wall, info_wall_s=i.wall_s, compile_s=i.compile_s, sample_s=i.sample_s,
                effects_s=i.effects_s, stats_s=stats_s, min_ess_bulk=float(d["min_ess_bulk"]),
                ess_per_s=float(d["min_ess_bulk"]) / wall,
                divergences=int(d.get("divergences", d.get("n_divergent", 0)) or 0),
                sampler=str(i.sampler), method=str(getattr(i, "method", "")))


def _reml_job(job: dict, cache: dict) -> dict:
    from bayes_hlm.reml import reml  # same spelling in both trees (bh.reml is callable only in new)
    from bayes_hlm.spec.build import build_spec

    src, formula = REML[job["case"]]
    data = _data(src, cache)
    ts = []
    for _ in range(job["inner"]):
        t = time.perf_counter()
        m = reml(build_spec(formula, data))
        ts.append(time.perf_counter() - t)
    return dict(wall_s=statistics.median(ts), objective=float(m.objective))


def _worker() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # library prints go to stderr; the protocol has fd ``out`` to itself
    sys.stdout = sys.stderr
    import bayes_hlm as bh

    out.write(json.dumps({"ready": bh.__file__}) + "\n")
    cache: dict = {}
    for line in sys.stdin:
        job = json.loads(line)
        load = os.getloadavg()[0]
        try:
            res = (_bayes_job if job["kind"] == "bayes" else _reml_job)(job, cache)
            res["status"] = "ok"
        except Exception as e:  # noqa: BLE001
            res = {"status": f"error: {type(e).__name__}: {e}"}
        res["load1"] = load
        out.write(json.dumps(res, default=float) + "\n")


# --------------------------------------------------------------------------- #
# driver
# --------------------------------------------------------------------------- #
class Tree:
    def __init__(self, tag: str, path: str):
        self.tag, self.path = tag, str(Path(path).resolve())
        cache = SCRATCH / f"refactor_{tag}"
        env = {**os.environ, "PYTHONPATH": self.path, "BAYES_HLM_CACHE": str(cache),
               "NUMBA_CACHE_DIR": str(cache / "numba")}
        self.log = open(SCRATCH / f"refactor_{tag}.log", "w")
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, cwd=self.path, env=env)
        hello = json.loads(self.proc.stdout.readline())
        if not hello["ready"].startswith(self.path):
            raise SystemExit(f"{tag}: imported {hello['ready']}, not from {self.path}")

    def send(self, job: dict) -> None:
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()

    def recv(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"{self.tag} worker died; see {self.log.name}")
        return json.loads(line)

    def run(self, job: dict) -> dict:
        self.send(job)
        return self.recv()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def _verdict(old: list[float], new: list[float], tol: float) -> str:
    ratio = statistics.median(new) / statistics.median(old)
    if ratio > 1 + tol and min(new) > max(old):
        return "slower"
    if ratio < 1 - tol and max(new) < min(old):
        return "faster"
    return "same (within noise)"


def summarise(case: str, runs: dict, tol: float) -> dict:
    row = {"case": case}
    for tag in ("old", "new"):
        ok = [r for r in runs[tag] if r.get("status") == "ok"]
        w = [r["wall_s"] for r in ok]
        row[tag] = dict(n=len(w), median_s=statistics.median(w) if w else None,
                        min_s=min(w) if w else None, max_s=max(w) if w else None)
        if ok and "ess_per_s" in ok[0]:
            row[tag]["median_ess_per_s"] = statistics.median(r["ess_per_s"] for r in ok)
            row[tag]["min_ess_bulk"] = sorted({round(r["min_ess_bulk"], 1) for r in ok})
            row[tag]["sampler"] = sorted({r["sampler"] for r in ok})
        if ok and "objective" in ok[0]:
            row[tag]["objective"] = ok[0]["objective"]
    o, n = row["old"], row["new"]
    if o["n"] and n["n"]:
        row["ratio_median"] = n["median_s"] / o["median_s"]
        row["ratio_min"] = n["min_s"] / o["min_s"]
        if "median_ess_per_s" in o:
            row["ratio_ess_per_s"] = n["median_ess_per_s"] / o["median_ess_per_s"]
        row["verdict"] = _verdict([r["wall_s"] for r in runs["old"] if r.get("status") == "ok"],
                                  [r["wall_s"] for r in runs["new"] if r.get("status") == "ok"],
                                  tol)
    else:
        row["verdict"] = "error"
    loads = [r["load1"] for t in ("old", "new") for r in runs[t]]
    row["load1_median"] = statistics.median(loads)
    row["load1_range"] = [min(loads), max(loads)]
    return row


def table(rows: list[dict]) -> str:
    f = lambda v, p=3: "" if v is None else f"{v:.{p}f}"  # noqa: E731
    lines = ["| case | old median s | old min s | new median s | new min s | ratio new/old "
             "(median) | ratio (min) | ESS/s old → new | load 1-min | verdict |",
             "|" + "---|" * 10]
    for r in rows:
        o, n = r["old"], r["new"]
        ess = (f"{o['median_ess_per_s']:.0f} → {n['median_ess_per_s']:.0f}"
               if "median_ess_per_s" in o and "median_ess_per_s" in n else "")
        lines.append(f"| {r['case']} | {f(o['median_s'])} | {f(o['min_s'])} | {f(n['median_s'])} "
                     f"| {f(n['min_s'])} | {f(r.get('ratio_median'), 2)} | "
                     f"{f(r.get('ratio_min'), 2)} | {ess} | {r['load1_median']:.1f} "
                     f"({r['load1_range'][0]:.1f}-{r['load1_range'][1]:.1f}) | {r['verdict']} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--cases", default=",".join(BAYES))
    ap.add_argument("--reml-cases", default=",".join(c for c in REML if c != "reml_insteval"))
    ap.add_argument("--insteval", action="store_true", help="add the REML insteval case")
    ap.add_argument("--reps", type=int, default=3, help="timed runs per tree per Bayesian case")
    ap.add_argument("--small-reps", type=int, default=5,
                    help="timed runs per tree for the small (sub-second) Bayesian cases")
    ap.add_argument("--reml-reps", type=int, default=5, help="timed runs per tree per REML case")
    ap.add_argument("--reml-inner", type=int, default=5, help="calls per REML timed run")
    ap.add_argument("--tol", type=float, default=0.10)
    ap.add_argument("--out", default=str(RESULTS / "refactor.json"))
    a = ap.parse_args(argv)
    SCRATCH.mkdir(parents=True, exist_ok=True)
    trees = {"old": Tree("old", a.old), "new": Tree("new", a.new)}
    jobs = [("bayes", c) for c in a.cases.split(",") if c]
    reml_cases = [c for c in a.reml_cases.split(",") if c]
    if a.insteval and "reml_insteval" not in reml_cases:
        reml_cases.append("reml_insteval")
    jobs += [("reml", c) for c in reml_cases]

    # warm-up: both trees at once (compilation; timings discarded)
    t0 = time.perf_counter()
    for kind, case in jobs:
        job = dict(kind=kind, case=case, seed=1, inner=1)
        for t in trees.values():
            t.send(job)
        for t in trees.values():
            r = t.recv()
            if r.get("status") != "ok":
                print(f"warm-up {t.tag} {case}: {r['status']}", file=sys.stderr)
    print(f"warm-up done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)

    rows, raw = [], {}
    for kind, case in jobs:
        if kind == "bayes":
            reps = a.reps if case == "sim200k" else max(a.reps, a.small_reps)
        elif case == "reml_insteval":  # ~30 s a fit: one call per run, --reps runs
            reps = a.reps
        else:
            reps = a.reml_reps
        inner = 1 if case == "reml_insteval" else a.reml_inner
        runs = {"old": [], "new": []}
        for i in range(reps):
            order = ("old", "new") if i % 2 == 0 else ("new", "old")
            for tag in order:
                r = trees[tag].run(dict(kind=kind, case=case, seed=1 + i, inner=inner))
                r["rep"], r["position"] = i, order.index(tag)
                runs[tag].append(r)
                print(f"  {case:<18} {tag} rep {i}: {r.get('status')} "
                      f"wall={r.get('wall_s', float('nan')):.3f} load={r['load1']:.2f}",
                      file=sys.stderr, flush=True)
        raw[case] = runs
        rows.append(summarise(case, runs, a.tol))
    for t in trees.values():
        t.close()

    out = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "old": trees["old"].path,
           "new": trees["new"].path, "settings": vars(a), "cpu_count": os.cpu_count(),
           "rows": rows, "runs": raw}
    for tag in ("old", "new"):
        try:
            out[f"{tag}_commit"] = subprocess.run(
                ["git", "-C", trees[tag].path, "rev-parse", "--short", "HEAD"],
                capture_output=True, text=True).stdout.strip()
        except OSError:
            pass
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1, default=float))
    print(table(rows))


if __name__ == "__main__":
    if "--worker" in sys.argv:
        _worker()
    else:
        main()
