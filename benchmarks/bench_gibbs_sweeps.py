"""Gibbs engine: sweeps per kept draw, 1 against the default, same process, same seeds.

For each seed the two settings run back to back (interleaved) on ``bench_glmm``'s data,
2 chains x (1000 + 1000); min bulk ESS and max R-hat over every parameter incl. every group
effect::

    python benchmarks/bench_gibbs_sweeps.py bern20k 1,2,3
    python benchmarks/bench_gibbs_sweeps.py bern200k 1,2,3

Prints a row per fit and writes ``results/glmm_gibbs_sweeps_<case>.json``.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    case, seeds = argv[0], [int(s) for s in argv[1].split(",")]
    warnings.filterwarnings("ignore")
    import pandas as pd

    import bayes_hlm as bh
    from bayes_hlm.backends import glmm_gibbs
    from bench_glmm import CASES, simulate

    data, c = simulate(case), CASES[case]
    default = glmm_gibbs.SWEEPS_PER_DRAW
    kw = dict(family=c["kind"], progressbar=False, warn=False, chains=2, draws=1000, tune=1000)
    bh.fit(c["formula"], simulate("bern20k"), **{**kw, "draws": 50, "tune": 50}, seed=9)  # loads
    rows = []
    for seed in seeds:
        for k in sorted({1, default}):
            glmm_gibbs.SWEEPS_PER_DRAW = k
            t0, c0 = time.perf_counter(), time.process_time()
            r = bh.fit(c["formula"], data, seed=seed, **kw)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            frames = [r.summary()] + list(r._effects_checks().values())
            ess = pd.concat([f["ess_bulk"] for f in frames])
            rhat = pd.concat([f["r_hat"] for f in frames])
            row = dict(case=case, seed=seed, sweeps=k, sampler=r.info.sampler, wall_s=round(wall, 2),
                       cpu_s=round(cpu, 2), min_ess=round(float(ess.min())), min_ess_at=str(ess.idxmin()),
                       max_rhat=round(float(rhat.max()), 4), max_rhat_at=str(rhat.idxmax()),
                       min_ess_per_s=round(float(ess.min()) / wall, 1))
            print(row, flush=True)
            rows.append(row)
    glmm_gibbs.SWEEPS_PER_DRAW = default
    out = Path(__file__).parent / "results" / f"glmm_gibbs_sweeps_{case}.json"
    out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
