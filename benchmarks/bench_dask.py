"""Benchmark of engine='dask': metadata + statistics passes (rows/s), sampling, peak memory per process.

Data: ``datasets.simulate`` (random intercept and correlated random slope, ``y ~ x + (x | g)``,
100 rows per group) generated 1M rows at a time and written to Parquet in 1M-row files.  The
group column holds integer ids (``--ids int``, the default: ``write_parquet(factor_codes=True)``
layout, same levels in the same order as simulate's labels), strings (``--ids str``) or a
dictionary column with every label in every file (``--ids dict``, ``write_parquet``'s default).
Generation is timed separately and not part of the fit.

Each case runs ``bayes_hlm.fitting.fit_dask`` end to end (both passes, the tree reduction,
NUTS on the statistics, result and diagnostics) in a fresh subprocess, so the client's peak
RSS (``ru_maxrss``) is that of the fit alone; with ``--cluster`` the statistics run on a
``LocalCluster`` of 2 worker processes x 1 thread and each worker reports its own peak RSS.

    python benchmarks/bench_dask.py                       # the standard cases (below)
    python benchmarks/bench_dask.py --case 10M:100k --cluster --stats-only

Writes ``benchmarks/results/dask.json`` (replacing it; ``--append`` keeps earlier records)
and prints a Markdown table.  The machine's load average (1 min) is recorded before and
after each run: on a shared machine the rates depend on it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
OUT = HERE / "results" / "dask.json"
FORMULA = "y ~ x + (x | g)"
ROWS_PER_GROUP = 100
# (rows, groups, schedulers); the target case is 100M rows / 1M groups
CASES = [(10_000_000, 100_000, ("threads", "cluster")), (50_000_000, 500_000, ("threads",)),
         (100_000_000, 1_000_000, ("threads",))]
TRUTH = {"fixed": [1.0, 0.5], "sd": [1.0, 0.5], "corr": 0.3, "sigma": 1.0}


def peak_mb() -> float:
    """Peak resident memory of this process (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _num(s: str) -> int:
    s = s.strip().upper()
    mult = {"K": 10**3, "M": 10**6, "G": 10**9}.get(s[-1], 1)
    return int(float(s[:-1] if s[-1] in "KMG" else s) * mult)


def generate(path: Path, rows: int, groups: int, ids: str = "int", seed: int = 1,
             rows_per_file: int = 1_000_000) -> float:
    """Write ``rows`` rows in ``groups`` equal groups as 1M-row Parquet files; seconds."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bayes_hlm.datasets.simulate import simulate

    t0 = time.perf_counter()
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    per_group = rows // groups
    gpf = rows_per_file // per_group
    n_files = -(-groups // gpf)
    width = len(str(groups))
    dtype = None
    if ids == "dict":
        labels = np.char.add("g", np.char.zfill(np.arange(1, groups + 1).astype(str), width))
        dtype = pd.CategoricalDtype(pd.Index(labels), ordered=False)
    for i in range(n_files):
        k = min(gpf, groups - i * gpf)
        d = simulate(k, per_group, corr=TRUTH["corr"], seed=[seed, i]).data
        codes = np.asarray(d.g.cat.codes, dtype=np.int64) + i * gpf
        if ids == "int":
            g = codes.astype(np.int32)
        elif ids == "str":
            g = np.char.add("g", np.char.zfill((codes + 1).astype(str), width)).astype(object)
        else:
            g = pd.Categorical.from_codes(codes, dtype=dtype)
        df = pd.DataFrame({"y": d.y.to_numpy(), "x": d.x.to_numpy(), "g": g})
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path / f"part-{i:05d}.parquet")
    return time.perf_counter() - t0


def run_one(a) -> dict:
    """One fit in this process (called in a fresh subprocess by :func:`main`)."""
    rows, groups = _num(a.rows), _num(a.groups)
    path = Path(a.path)
    rec = {"rows": rows, "groups": groups, "formula": FORMULA, "ids": a.ids,
           "scheduler": "LocalCluster(2 workers x 1 thread)" if a.scheduler == "cluster" else "threads",
           "cpus": os.cpu_count(), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
           "load_avg_1m_before": os.getloadavg()[0]}
    rec["disk_mb"] = sum(f.stat().st_size for f in path.glob("*.parquet")) / 2**20
    import bayes_hlm.distributed as bd
    from bayes_hlm.backends.engine import engine_status
    from bayes_hlm.fitting import fit_dask
    from bayes_hlm.results.export import fit_json

    import dask.dataframe  # noqa: F401  imports (seconds) are not part of the fit's timings
    engine_status()

    client = cluster = None
    scheduler = "threads"
    if a.scheduler == "cluster":
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                               memory_limit="4GB")
        client = Client(cluster)
        scheduler = client
    t0 = time.perf_counter()
    c0 = time.process_time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if a.stats_only:
            ds = bd.compute_stats_dask(FORMULA, str(path), scheduler, progressbar=False)
            timings = ds.timings
        else:
            # warn=False: the fit's own diagnostics are timed below, as post-fit work
            res = fit_dask(FORMULA, str(path), scheduler, chains=a.chains, draws=a.draws,
                              tune=a.tune, seed=1, progressbar=False, warn=False)
            timings = res.info.extra["stats_timings"]
            fit_s = time.perf_counter() - t0
            # post-fit cost (#18 item 8): everything after sampling -- the diagnostics a fit
            # computes (warn=True) and the CLI's JSON (summary, ICC, R², ...) -- vs the fit
            t1 = time.perf_counter()
            res.diagnostics()
            rec["diagnostics_s"] = time.perf_counter() - t1
            t1 = time.perf_counter()
            js = fit_json(res)
            rec["json_s"] = time.perf_counter() - t1
            rec["fit_s"] = fit_s
            rec["postfit_s"] = rec["diagnostics_s"] + rec["json_s"]
            rec["postfit_share"] = rec["postfit_s"] / fit_s
            rec["postfit_notes"] = {"r2_bayes draws": js["r2_bayes"].get("draws"),
                                    "effects covered": js["diagnostics"].get("effects_covered")}
    rec["end_to_end_s"] = time.perf_counter() - t0
    rec["client_cpu_s"] = time.process_time() - c0     # all threads of this process
    rec["warnings"] = sorted({str(w.message)[:160] for w in caught})
    rec.update({k: timings[k] for k in ("warmup_s", "meta_s", "stats_s", "n_partitions")})
    rec["rows_per_s_stats_pass"] = rows / timings["stats_s"]
    rec["rows_per_s_both_passes"] = rows / (timings["stats_s"] + timings["meta_s"])
    if client is not None:
        rec["worker_peak_mb"] = sorted(client.run(peak_mb).values())
        client.close()
        cluster.close()
    if not a.stats_only:
        info = res.info
        rec.update({"sampler": info.sampler, "chains": info.chains, "draws": info.draws, "tune": info.tune,
                    "compile_s": info.compile_s, "sample_s": info.sample_s,
                    "effects_s": info.effects_s, "fit_wall_s": info.wall_s})
        steps = 0
        for grp in ("warmup_sample_stats", "sample_stats"):
            if grp in res.tree.children and "n_steps" in res.tree[grp]:
                steps += int(res.tree[grp]["n_steps"].values.sum())
        rec["leapfrog_steps"] = steps or None             # gradients (tuning included when recorded)
        post = res.tree["posterior"]
        rec["posterior_means"] = {
            "fixed": post["fixed"].mean(("chain", "draw")).values.tolist(),
            "sd_g": post["sd__g"].mean(("chain", "draw")).values.tolist(),
            "corr": float(res._draws.flat("corr__g")[:, 0, 1].mean()),  # either tree layout
            "sigma": float(post["sigma"].mean())}
        rec["truth"] = TRUTH
        diag = res.diagnostics()
        rec["diagnostics"] = {k: (float(v) if isinstance(v, (int, float, np.floating)) else v)
                              for k, v in diag.items()}
        t1 = time.perf_counter()
        b = res.effects_draws("g", idx=np.arange(10))      # on-demand effects: 10 draws x all groups
        rec["effects_10_draws_s"] = time.perf_counter() - t1
        del b
    rec["client_peak_mb"] = peak_mb()
    rec["load_avg_1m_after"] = os.getloadavg()[0]
    return rec


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", action="append", help="ROWS:GROUPS, e.g. 10M:100k (default: the standard cases)")
    ap.add_argument("--cluster", action="store_true", help="also run each --case on a 2-worker LocalCluster")
    ap.add_argument("--ids", choices=("int", "str", "dict"), default="int")
    ap.add_argument("--dir", default="/tmp/bayes_hlm_bench_dask")
    ap.add_argument("--stats-only", action="store_true", help="metadata + statistics passes only")
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--keep", action="store_true", help="keep the Parquet files")
    ap.add_argument("--append", action="store_true", help="append to dask.json instead of replacing it")
    ap.add_argument("--timeout", type=int, default=1500, help="seconds per fit (subprocess)")
    # internal: one fit in a subprocess
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--rows", help=argparse.SUPPRESS)
    ap.add_argument("--groups", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--scheduler", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        Path(a.out).write_text(json.dumps(run_one(a), indent=1))
        return 0
    if a.case:
        cases = [(_num(c.split(":")[0]), _num(c.split(":")[1]),
                  ("threads", "cluster") if a.cluster else ("threads",)) for c in a.case]
    else:
        cases = CASES
    hist = json.loads(OUT.read_text()) if (a.append and OUT.exists()) else []
    for rows, groups, schedulers in cases:
        path = Path(a.dir) / f"r{rows}_g{groups}_{a.ids}"
        gen = None
        if not (path.exists() and any(path.glob("*.parquet"))):
            print(f"generating {rows:,} rows / {groups:,} groups ({a.ids} ids) in {path}", file=sys.stderr)
            gen = generate(path, rows, groups, a.ids)
        for sched in schedulers:
            out = Path(a.dir) / "record.json"
            out.unlink(missing_ok=True)
            cmd = [sys.executable, __file__, "--one", "--rows", str(rows), "--groups", str(groups),
                   "--path", str(path), "--scheduler", sched, "--ids", a.ids, "--out", str(out),
                   "--chains", str(a.chains), "--draws", str(a.draws), "--tune", str(a.tune)]
            if a.stats_only:
                cmd.append("--stats-only")
            print(f"fit: {rows:,} rows / {groups:,} groups, {sched}", file=sys.stderr)
            t0 = time.perf_counter()
            try:
                proc = subprocess.run(cmd, timeout=a.timeout)
                rc = proc.returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
            if out.exists():
                rec = json.loads(out.read_text())
            else:
                rec = {"rows": rows, "groups": groups, "scheduler": sched, "ids": a.ids,
                       "error": f"no result (rc={rc}) after {time.perf_counter() - t0:.0f} s"}
            rec["generate_s"] = gen
            hist.append(rec)
            OUT.parent.mkdir(exist_ok=True)
            OUT.write_text(json.dumps(hist, indent=1))
            print(table([rec]), file=sys.stderr)
        if not a.keep:
            shutil.rmtree(path, ignore_errors=True)
    print(table(hist))
    return 0


COLUMNS = [("rows", "rows"), ("groups", "groups"), ("ids", "ids"), ("scheduler", "scheduler"),
           ("generate_s", "generate s"), ("meta_s", "metadata pass s"), ("stats_s", "statistics pass s"),
           ("rows_per_s_both_passes", "both passes rows/s"), ("rows_per_s_stats_pass", "stats pass rows/s"),
           ("sampler", "sampler"), ("sample_s", "sampling s"), ("end_to_end_s", "end to end s"),
           ("fit_s", "fit s"), ("postfit_s", "post-fit s (diagnostics + JSON)"),
           ("postfit_share", "post-fit / fit"),
           ("client_peak_mb", "client peak MB"), ("worker_peak_mb", "worker peak MB"),
           ("load_avg_1m_before", "load avg")]


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        return " / ".join(_fmt(x) for x in v)
    if isinstance(v, float):
        return f"{v / 1e6:.2f}M" if v >= 1e5 else (f"{v:,.0f}" if v >= 100 else f"{v:.1f}")
    if isinstance(v, int) and v >= 1000:
        return f"{v / 1e6:g}M" if v >= 10**6 else f"{v / 1e3:g}k"
    return str(v)


def table(hist) -> str:
    lines = ["| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in hist:
        vals = []
        for key, _ in COLUMNS:
            v = r.get(key)
            if key in ("client_peak_mb",) and isinstance(v, float):
                v = f"{v:,.0f}"
            elif key == "worker_peak_mb" and isinstance(v, list):
                v = " / ".join(f"{x:,.0f}" for x in v)
            elif key == "load_avg_1m_before" and v is not None:
                v = f"{v:.1f} → {r.get('load_avg_1m_after', float('nan')):.1f}"
            vals.append(_fmt(v) if not isinstance(v, str) else v)
        if "error" in r:
            vals[-1] = r["error"]
        lines.append("| " + " | ".join(vals) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
