"""Benchmark of engine='dask': statistics pass (rows/s), sampling time, peak memory per process.

Data: ``datasets.simulate`` (random intercept and correlated random slope, ``y ~ x + (x | g)``)
generated chunk by chunk (so generation fits in memory) and written to Parquet in 1M-row
files whose ``g`` column is dictionary-encoded with all group labels.

    python benchmarks/bench_dask.py --rows 10e6 --groups 1e6 [--cluster] [--sample]

Writes ``benchmarks/results/dask.json`` (appending one record per run) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
OUT = HERE / "results" / "dask.json"


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def generate(path: Path, rows: int, groups: int, seed: int = 1, rows_per_file: int = 1_000_000) -> float:
    """Write ``rows`` rows in ``groups`` groups (equal sizes) as 1M-row Parquet files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bayes_hlm.datasets.simulate import simulate

    t0 = time.perf_counter()
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    n_files = -(-rows // rows_per_file)
    per_group = rows // groups
    gpf = rows_per_file // per_group          # groups per file
    width = len(str(groups))
    labels = np.char.add("g", np.char.zfill(np.arange(1, groups + 1).astype(str), width))
    dtype = pd.CategoricalDtype(pd.Index(labels), ordered=False)
    for i in range(n_files):
        sim = simulate(gpf, per_group, corr=0.3, seed=[seed, i])
        d = sim.data
        codes = np.asarray(d.g.cat.codes, dtype=np.int64) + i * gpf
        df = pd.DataFrame({"y": d.y.to_numpy(), "x": d.x.to_numpy(),
                           "g": pd.Categorical.from_codes(codes, dtype=dtype)})
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path / f"part-{i:05d}.parquet")
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=float, default=10e6)
    ap.add_argument("--groups", type=float, default=1e6)
    ap.add_argument("--dir", default="/tmp/bayes_hlm_bench_dask")
    ap.add_argument("--cluster", action="store_true", help="LocalCluster(n_workers=2, threads_per_worker=1)")
    ap.add_argument("--sample", action="store_true", help="also sample (NUTS) from the statistics")
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--keep", action="store_true", help="keep the Parquet files")
    a = ap.parse_args(argv)
    rows, groups = int(a.rows), int(a.groups)
    path = Path(a.dir) / f"r{rows}_g{groups}"
    rec = {"rows": rows, "groups": groups, "formula": "y ~ x + (x | g)",
           "scheduler": "LocalCluster(2 workers x 1 thread)" if a.cluster else "threads",
           "cpus": os.cpu_count(), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    if not (path.exists() and any(path.glob("*.parquet"))):
        rec["generate_s"] = generate(path, rows, groups)
    rec["disk_mb"] = sum(f.stat().st_size for f in path.glob("*.parquet")) / 2**20
    from bayes_hlm.distributed import compute_stats_dask, priors_from_stats
    from bayes_hlm.backends.marginal import run_marginal

    client = cluster = None
    scheduler = "threads"
    if a.cluster:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                               memory_limit="4GB")
        client = Client(cluster)
        scheduler = client
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = compute_stats_dask("y ~ x + (x | g)", str(path), scheduler, progressbar=False)
    rec["stats_wall_s"] = time.perf_counter() - t0
    rec.update({k: ds.timings[k] for k in ("meta_s", "stats_s", "n_partitions")})
    rec["rows_per_s_stats_pass"] = rows / ds.timings["stats_s"]
    rec["rows_per_s_both_passes"] = rows / (ds.timings["stats_s"] + ds.timings["meta_s"])
    rec["client_peak_mb_after_stats"] = peak_mb()
    if client is not None:
        rec["worker_peak_mb"] = list(client.run(peak_mb).values())
        client.close()
        cluster.close()
    if a.sample:
        from bayes_hlm.backends.sampling import SamplerConfig

        ps = priors_from_stats(ds)
        cfg = SamplerConfig(sampler="nutpie", chains=a.chains, draws=a.draws, tune=a.tune, seed=1,
                            progressbar=False)
        t1 = time.perf_counter()
        out, gen, extra = run_marginal(ds.design, ps, cfg, ds.stats)
        rec["sample_total_s"] = time.perf_counter() - t1
        rec["compile_s"] = out.compile_s
        rec["sample_s"] = out.sample_s
        rec.update({"chains": a.chains, "draws": a.draws, "tune": a.tune})
        post = out.tree["posterior"]
        rec["posterior_means"] = {"fixed": post["fixed"].mean(("chain", "draw")).values.tolist(),
                                  "sd_g": post["sd__g"].mean(("chain", "draw")).values.tolist(),
                                  "corr": float(post["corr__g"].mean(("chain", "draw")).values[0, 1]),
                                  "sigma": float(post["sigma"].mean())}
        t2 = time.perf_counter()
        b = gen("g", np.arange(10))  # on-demand group effects: 10 draws x all groups
        rec["effects_10_draws_s"] = time.perf_counter() - t2
        del b
        rec["end_to_end_s"] = rec["stats_wall_s"] + rec["sample_total_s"]
        rec["client_peak_mb"] = peak_mb()
    if not a.keep:
        shutil.rmtree(path, ignore_errors=True)
    OUT.parent.mkdir(exist_ok=True)
    hist = json.loads(OUT.read_text()) if OUT.exists() else []
    hist.append(rec)
    OUT.write_text(json.dumps(hist, indent=1))
    print(table(hist))


def table(hist) -> str:
    cols = ["rows", "groups", "scheduler", "meta_s", "stats_s", "rows_per_s_stats_pass",
            "client_peak_mb", "worker_peak_mb", "sample_s", "end_to_end_s"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in hist:
        vals = []
        for c in cols:
            v = r.get(c, r.get("client_peak_mb_after_stats") if c == "client_peak_mb" else None)
            if isinstance(v, float):
                v = f"{v:,.0f}" if v > 100 else f"{v:.1f}"
            elif isinstance(v, list):
                v = "/".join(f"{x:,.0f}" for x in v)
            vals.append("" if v is None else str(v))
        lines.append("| " + " | ".join(vals) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
