"""Cold first fit vs warm first fit, phase by phase (#18 item 5).

Each run is a fresh ``python`` process doing what a user's first session does: import
bayes_hlm, load sleepstudy, ``bh.fit("Reaction ~ Days + (Days | Subject)")`` with the
defaults (4 chains x 1000 draws). *cold*: ``NUMBA_CACHE_DIR`` and ``BAYES_HLM_CACHE`` point at
empty directories (first use on a machine, or after an upgrade); *warm*: the same process
again with the caches the cold one left. Reported per run: the fit's seconds (the ``bh.fit``
call), the process's seconds (imports included), the longest *silent* stretch (seconds of
stderr with no phase line open: the phase reporter prints ``X …`` when a step has run 2 s and
``X: done in N s`` at its end; between those the user knows what is happening), and where the
time went:

* every phase of the fit (:func:`bayes_hlm.progress.phase`, recorded whether or not it printed);
* every Numba compile (``numba:compile`` events): per kernel its *self* seconds (its own
  compile, the kernels it calls excluded) and the C callbacks (``numba.cfunc`` compiles raise no
  event: their seconds are the wall time of building them minus their callees' events).

Target: cold fit <= 2.5 x warm fit, and no silent stretch over 5 s.

On a cold cache the fit compiles its density in a child process
(:mod:`bayes_hlm.backends.background_compile`, started before the fit loads its libraries): its
compiles are not in this process's list; ``child_cpu_s`` is its CPU time, and ``--in-process``
adds, per repeat, an interleaved cold/warm pair with the child turned off
(``BAYES_HLM_COMPILE_IN_PROCESS=1``).

Python's own bytecode cache is warm in every run (``PYTHONPYCACHEPREFIX`` in a scratch directory,
filled by one import first; an environment with ``PYTHONDONTWRITEBYTECODE`` would otherwise
recompile every module in every run). A third run per pair, *after warm-up*, starts from empty
caches, runs ``python -m bayes_hlm.warmup`` (what ``scripts/bootstrap.sh`` does after installing)
and then the same first fit: what a user following the README meets.

    python benchmarks/bench_cold_start.py [--repeats 3] [--in-process] [--no-warmup]
                                          [--out benchmarks/results/cold_start.json]
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
ROOT = HERE.parent

# the child: the user's first session, instrumented (phases and Numba compiles recorded)
CHILD = r"""
import json, sys, time
T0 = time.perf_counter()
import numba
from numba.core import event as ev

compiles, stack = [], []  # (name, start, end, seconds spent in nested compiles)

class Compiles(ev.Listener):
    def on_start(self, event):
        d = event.data["dispatcher"]
        stack.append([f"{d.py_func.__module__.split('.')[-1]}.{d.py_func.__name__}",
                      time.perf_counter(), 0.0])

    def on_end(self, event):
        name, t0, inner = stack.pop()
        dt = time.perf_counter() - t0
        if stack:
            stack[-1][2] += dt
        compiles.append((name, t0 - T0, dt, dt - inner, len(stack)))

ev.register("numba:compile", Compiles())
cfuncs = []
_cfunc = numba.cfunc

def timed_cfunc(*a, **k):  # numba.cfunc compiles raise no event: time them here
    deco = _cfunc(*a, **k)

    def wrap(f):
        n0, t0 = len(compiles), time.perf_counter()
        out = deco(f)
        dt = time.perf_counter() - t0
        inner = sum(c[2] for c in compiles[n0:] if c[4] == 0)
        cfuncs.append((f.__name__, t0 - T0, dt, dt - inner))
        return out
    return wrap

numba.cfunc = timed_cfunc
import bayes_hlm.progress as progress
phases = []
_init, _end = progress._Phase.__init__, progress._Phase.end

def init(self, what, *a, **k):
    _init(self, what, *a, **k)
    phases.append([what, self.t0 - T0, None])
    self._rec = len(phases) - 1

def end(self, ok):
    phases[self._rec][2] = time.perf_counter() - self.t0
    _end(self, ok)

progress._Phase.__init__, progress._Phase.end = init, end
import warnings
import bayes_hlm as bh
data = bh.datasets.load("sleepstudy")
import resource
t1, c1 = time.perf_counter(), time.process_time()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    m = bh.fit("Reaction ~ Days + (Days | Subject)", data, seed=2024)
t2, c2 = time.perf_counter(), time.process_time()
d = m.diagnostics()
kids = resource.getrusage(resource.RUSAGE_CHILDREN)
print("RESULT", json.dumps(dict(
    import_s=t1 - T0, fit_s=t2 - t1, fit_at=t1 - T0, diagnostics_s=time.perf_counter() - t2,
    fit_cpu_s=c2 - c1, child_cpu_s=kids.ru_utime + kids.ru_stime,
    method=m.info.method, sampler=m.info.sampler,
    compile_s=m.info.compile_s, sample_s=m.info.sample_s, effects_s=m.info.effects_s,
    divergences=int(d["divergences"]), phases=phases, compiles=compiles, cfuncs=cfuncs)),
    flush=True)
"""


def _silent_stretches(events: list[tuple[float, str]], end: float) -> float:
    """Longest stretch with no open phase line and nothing printed."""
    open_phases: set[str] = set()
    last, worst = 0.0, 0.0
    for t, line in events:
        if not open_phases:
            worst = max(worst, t - last)
        line = line.strip()
        if ": done in" in line:
            open_phases.discard(line.split(": done in")[0])
        elif line.endswith("…") or line.endswith("..."):
            open_phases.add(line.rstrip("….").strip())
        last = t
    if not open_phases:
        worst = max(worst, end - last)
    return worst


PYC = Path(tempfile.gettempdir()) / "bayes_hlm_bench_pyc"


def _env(numba_dir: str, cache_dir: str, in_process: bool = False) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=numba_dir, BAYES_HLM_CACHE=cache_dir,
               PYTHONPYCACHEPREFIX=str(PYC),
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("BAYES_HLM_QUIET", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("BAYES_HLM_COMPILE_IN_PROCESS", None)
    if in_process:  # no background compile (bayes_hlm.backends.background_compile)
        env["BAYES_HLM_COMPILE_IN_PROCESS"] = "1"
    return env


def _kernels(res: dict) -> dict[str, float]:
    """Seconds of compiling per kernel (self time), C callbacks included, largest first."""
    out: dict[str, float] = {}
    for name, _, _, self_s, _ in res["compiles"]:
        out[name] = out.get(name, 0.0) + self_s
    for name, _, _, self_s in res["cfuncs"]:
        out[f"cfunc {name}"] = out.get(f"cfunc {name}", 0.0) + self_s
    return {k: round(v, 2) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def _phases(res: dict) -> dict[str, float]:
    """Seconds per phase of the fit (outermost phases only; nested ones print nothing),
    plus the import and what no phase covered."""
    out = {"import bayes_hlm + load data": res["import_s"]}
    spans, covered = [], 0.0
    for what, t0, dt in res["phases"]:
        if dt is None or any(s0 <= t0 and t0 + dt <= s0 + sd + 1e-6 for s0, sd in spans):
            continue  # nested in an earlier phase
        spans.append((t0, dt))
        if t0 >= res["fit_at"]:
            covered += dt
        out[what] = out.get(what, 0.0) + dt
    out["(in the fit, outside any phase)"] = res["fit_s"] - covered
    return {k: round(v, 2) for k, v in out.items()}


def run_once(numba_dir: str, cache_dir: str, in_process: bool = False) -> dict:
    env = _env(numba_dir, cache_dir, in_process)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, bufsize=1)
    events, result = [], None
    for line in p.stdout:
        t = time.perf_counter() - t0
        if line.startswith("RESULT"):
            result = json.loads(line[len("RESULT"):])
            t_result = t
            continue
        events.append((t, line.rstrip("\n")))
    p.wait()
    total = time.perf_counter() - t0
    if result is None:
        raise RuntimeError("child failed:\n" + "\n".join(l for _, l in events[-30:]))
    res = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in result.items()}
    # the longest silent stretch of the session up to the user's last call (the interpreter's
    # exit after it is reported on its own: exit_s)
    res.update(process_s=round(total, 2), exit_s=round(total - t_result, 2),
               load_before=round(load0, 2), load_after=round(os.getloadavg()[0], 2),
               max_silent_s=round(_silent_stretches(events, t_result), 2),
               lines=[f"{t:7.2f} {l}" for t, l in events])
    res["kernels"] = _kernels(result)
    res["compile_total_s"] = round(sum(res["kernels"].values()), 2)
    res["phase_s"] = _phases(result)
    return res


def _table(cold: dict, warm: dict, after: dict) -> str:
    rows = [("fit (bh.fit)", "fit_s"), ("process", "process_s"),
            ("  of which the interpreter's exit", "exit_s"),
            ("longest silent stretch (to the last call)", "max_silent_s"),
            ("Numba compiling (this process's kernels)", "compile_total_s"),
            ("fit CPU s (this process, all threads)", "fit_cpu_s"),
            ("  + background compile child CPU s", "child_cpu_s"),
            ("load average before", "load_before")]
    lines = [f"{'':46s} {'cold':>8s} {'warm':>8s} {'warm-up':>8s}"]
    for label, key in rows:
        lines.append(f"{label:46s} {cold[key]:8.2f} {warm[key]:8.2f} {after[key]:8.2f}")
    lines.append("phases:")
    names = list(dict.fromkeys([*cold["phase_s"], *warm["phase_s"], *after["phase_s"]]))
    for n in names:
        vals = [r["phase_s"].get(n) for r in (cold, warm, after)]
        lines.append(f"  {n[:44]:44s} " + " ".join(f"{v:8.2f}" if v is not None else f"{'':8s}"
                                                  for v in vals))
    lines.append("Numba compiles in the cold run (self seconds):")
    for n, s in cold["kernels"].items():
        if s >= 0.05:
            lines.append(f"  {n[:44]:44s} {s:8.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=1, help="cold/warm pairs")
    ap.add_argument("--out", default=str(HERE / "results" / "cold_start.json"))
    ap.add_argument("--verbose", action="store_true", help="print each run's stderr lines")
    ap.add_argument("--no-warmup", action="store_true", help="skip the after-warm-up run")
    ap.add_argument("--in-process", action="store_true",
                    help="also a cold/warm pair per repeat with the density compiled in-process "
                         "(BAYES_HLM_COMPILE_IN_PROCESS=1), interleaved: the A/B of the child")
    args = ap.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory() as nd, tempfile.TemporaryDirectory() as cd:  # fill PYC
        subprocess.run([sys.executable, "-c", "import bayes_hlm.fitting, bayes_hlm.backends.engine as e; "
                        "e.engine_status(); import pymc, nutpie, arviz"], env=_env(nd, cd), check=True,
                       capture_output=True)
    for r in range(args.repeats):
        if args.in_process:
            with tempfile.TemporaryDirectory() as nd, tempfile.TemporaryDirectory() as cd:
                ip_cold = run_once(nd, cd, in_process=True)
                ip_warm = run_once(nd, cd, in_process=True)
            for kind, res in (("cold in-process", ip_cold), ("warm in-process", ip_warm)):
                res.update(kind=kind, repeat=r, load_avg=os.getloadavg()[0])
                runs.append(res)
            print(f"in-process compile: cold {ip_cold['fit_s']:.2f} s / warm {ip_warm['fit_s']:.2f} s = "
                  f"{ip_cold['fit_s'] / ip_warm['fit_s']:.2f}x (load {ip_cold['load_before']:.1f})",
                  flush=True)
        with tempfile.TemporaryDirectory() as nd, tempfile.TemporaryDirectory() as cd:
            cold = run_once(nd, cd)
            warm = run_once(nd, cd)
        with tempfile.TemporaryDirectory() as nd, tempfile.TemporaryDirectory() as cd:
            t = time.perf_counter()
            if not args.no_warmup:
                subprocess.run([sys.executable, "-m", "bayes_hlm.warmup", "--quiet"],
                               env=_env(nd, cd), check=True)
            warmup_s = time.perf_counter() - t
            after = run_once(nd, cd) if not args.no_warmup else dict(warm)
            after["warmup_s"] = round(warmup_s, 2)
        for kind, res in (("cold", cold), ("warm", warm), ("after warm-up", after)):
            res.update(kind=kind, repeat=r, load_avg=os.getloadavg()[0])
            runs.append(res)
            if args.verbose:
                print(f"{kind}: [{res['method']}/{res['sampler']}]")
                print("\n".join("      " + l for l in res["lines"]))
        print(_table(cold, warm, after))
        print(f"     cold/warm: fit {cold['fit_s'] / warm['fit_s']:.2f}x, "
              f"process {cold['process_s'] / warm['process_s']:.2f}x  (target fit <= 2.5x); "
              f"after the bootstrap's warm-up ({after['warmup_s']:.0f} s at install): "
              f"{after['fit_s'] / warm['fit_s']:.2f}x", flush=True)
    colds = sorted(r["fit_s"] for r in runs if r["kind"] == "cold")
    warms = sorted(r["fit_s"] for r in runs if r["kind"] == "warm")
    summary = dict(cold_fit_s=colds[len(colds) // 2], warm_fit_s=warms[len(warms) // 2])
    summary["ratio"] = round(summary["cold_fit_s"] / summary["warm_fit_s"], 2)
    summary["max_silent_s"] = max(r["max_silent_s"] for r in runs)
    afters = sorted(r["fit_s"] for r in runs if r["kind"] == "after warm-up")
    summary["after_warmup_fit_s"] = afters[len(afters) // 2]
    ratios = sorted(c["fit_s"] / w["fit_s"] for c, w in zip(
        [r for r in runs if r["kind"] == "cold"], [r for r in runs if r["kind"] == "warm"]))
    summary["ratio_per_pair"] = [round(x, 2) for x in ratios]
    if args.in_process:
        ip = sorted(c["fit_s"] / w["fit_s"] for c, w in zip(
            [r for r in runs if r["kind"] == "cold in-process"],
            [r for r in runs if r["kind"] == "warm in-process"]))
        summary["in_process_ratio_per_pair"] = [round(x, 2) for x in ip]
    print(f"median cold {summary['cold_fit_s']} s / warm {summary['warm_fit_s']} s = {summary['ratio']}x "
          f"(per pair {summary['ratio_per_pair']}); longest silent stretch {summary['max_silent_s']} s")
    if args.in_process:
        print(f"in-process compile, per pair: {summary['in_process_ratio_per_pair']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(name="cold_start", cpu_count=os.cpu_count(),
                                   load_avg=os.getloadavg(), summary=summary, runs=runs), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
