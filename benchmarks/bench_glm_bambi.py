"""Benchmark: generalized mixed models, ours vs Bambi (PyMC NUTS and nutpie) vs lme4::glmer, same run.

Cases (issue #15): cbpp (binomial), grouseticks (Poisson; ``grouseticks_olre`` adds lme4's
observation-level ``(1 | INDEX)``), contraception (Bernoulli, correlated urban
slope per district), verbagg (Bernoulli, crossed people x items). Contenders, each in its own Python
process (imports outside the clock, one time cap each):

* ``ours``: ``bh.fit(formula, data, family=...)`` at its defaults (engine chosen by ``bh.fit``;
  4 chains x 1000 draws + 1000 tuning);
* ``bambi_pymc``: ``bambi.Model(...).fit()`` (PyMC NUTS), 2 chains x 1000 + 1000;
* ``bambi_nutpie``: the same with ``inference_method="nutpie"``;
* ``glmer``: ``Rscript benchmarks/r/lme4_timing.R --family ...`` (Laplace, median of repeated fits, data
  loaded); no ESS (not a sampler).

Columns: wall (s; ``result.info.wall_s`` for ours, the ``fit()`` call for Bambi), min bulk ESS over every
parameter including every group effect (ours: ``diagnostics(effects="all")``; Bambi: ArviZ over every
posterior variable except its per-observation means and non-centred offsets), min ESS / s, divergences,
max R-hat. Bambi fits every ``(x | g)`` term with *uncorrelated* effects (it has no LKJ); ours and glmer
fit the correlation of contraception's ``(urban | district)``.

Usage: python benchmarks/bench_glm_bambi.py [--cases cbpp,grouseticks] [--contenders ours,glmer]
           [--cap 3600] [--name glm_bambi] [--seed 1] [--ours-chains 2]
Prints a Markdown table; writes benchmarks/results/<name>.json after every contender (a long run can be
read while it goes on).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SCRATCH = Path(os.environ.get("BENCH_SCRATCH", "/tmp/perf"))

# ours: lme4 syntax (R's `I(age^2)`, `cbind`); bambi: its formulae syntax, 0/1 responses
CASES = {
    "cbpp": dict(family="binomial", ours="cbind(incidence, size - incidence) ~ period + (1 | herd)",
                 bambi="p(incidence, size) ~ period + (1 | herd)", bambi_family="binomial"),
    "grouseticks": dict(family="poisson", ours="TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)",
                        bambi="TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)", bambi_family="poisson"),
    "grouseticks_olre": dict(family="poisson",
                             ours="TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION) + (1 | INDEX)",
                             bambi="TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION) + (1 | INDEX)",
                             bambi_family="poisson", data="grouseticks"),
    "contraception": dict(family="bernoulli", ours="use ~ age + I(age^2) + urban + livch + (urban | district)",
                          bambi="use ~ age + I(age ** 2) + urban + livch + (urban | district)",
                          bambi_family="bernoulli", binary=("use", "Y")),
    "verbagg": dict(family="bernoulli", ours="r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
                    bambi="r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
                    bambi_family="bernoulli", binary=("r2", "Y")),
}
CONTENDERS = ("ours", "bambi_pymc", "bambi_nutpie", "glmer")
R_FAMILY = {"binomial": "binomial", "bernoulli": "binomial", "poisson": "poisson"}


# --------------------------------------------------------------------------- worker (child process)
def _bambi_scalars(idata):
    """The posterior variables that are model parameters (fixed, SDs, group effects)."""
    post = idata["posterior"]
    post = post.to_dataset() if hasattr(post, "to_dataset") else post
    keep = [v for v in post.data_vars if not str(v).endswith("_offset")
            and not any(str(d).endswith("__obs__") for d in post[v].dims)]
    return post[keep]


def _worker(case: str, contender: str, seed: int, chains: int | None = None) -> dict:
    import warnings

    warnings.filterwarnings("ignore")
    import numpy as np

    import bayes_hlm as bh

    sys.path.insert(0, str(HERE))
    from harness import _preimport, all_effect_diagnostics

    # what each contender imports lazily (nutpie, ArviZ, Bambi, bayes_hlm's engines) outside
    # the clock, as the docstring says: ours imported nutpie inside its timed fit (3 s at load 5)
    _preimport("ours_nutpie" if contender == "ours" else contender)
    if contender == "ours":
        import bayes_hlm.backends.glmm_nuts  # noqa: F401
        import bayes_hlm.backends.numba_nuts  # noqa: F401
        import bayes_hlm.fitting  # noqa: F401
    c = CASES[case]
    data = bh.datasets.load(c.get("data", case))
    if contender == "ours":

        kw = {} if chains is None else dict(chains=chains)  # None: bh.fit's default (4)
        r = bh.fit(c["ours"], data, family=c["family"], seed=seed, progressbar=False, warn=False, **kw)
        d, _ = all_effect_diagnostics(r)
        i = r.info
        return dict(wall_s=i.wall_s, min_ess_bulk=d["min_ess_bulk"], max_rhat=d.get("max_r_hat_all"),
                    divergences=int(d.get("divergences", 0) or 0), engine=f"{i.method}/{i.sampler}",
                    chains=i.chains, draws=i.draws, tune=i.tune)
    import arviz as az
    import bambi as bmb

    if "binary" in c:
        col, success = c["binary"]
        data = data.assign(**{col: (data[col].astype(str) == success).astype(int)})
    kw = dict(draws=1000, tune=1000, chains=2, random_seed=seed, progressbar=False)
    if contender == "bambi_nutpie":
        kw["inference_method"] = "nutpie"
    t0 = time.perf_counter()
    model = bmb.Model(c["bambi"], data, family=c["bambi_family"])
    idata = model.fit(**kw)
    wall = time.perf_counter() - t0
    post = _bambi_scalars(idata)
    ess, rhat = az.ess(post, method="bulk"), az.rhat(post)
    return dict(wall_s=wall, min_ess_bulk=float(min(np.nanmin(ess[v].values) for v in ess.data_vars)),
                max_rhat=float(max(np.nanmax(rhat[v].values) for v in rhat.data_vars)),
                divergences=int(idata["sample_stats"]["diverging"].values.sum()),
                engine="pymc" if contender == "bambi_pymc" else "nutpie", chains=2, draws=1000, tune=1000,
                variables=sorted(map(str, post.data_vars)))


# --------------------------------------------------------------------------- parent
def _run_child(case, contender, seed, cap, chains=None) -> dict:
    cmd = [sys.executable, __file__, "--worker", case, contender, "--seed", str(seed)]
    if chains is not None:
        cmd += ["--ours-chains", str(chains)]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=cap, env=os.environ.copy())
    except subprocess.TimeoutExpired:
        return dict(status=f"> {cap} s (cap)")
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        return dict(status="failed", error=(p.stderr or p.stdout)[-800:], elapsed_s=time.perf_counter() - t0)
    return dict(status="ok", **json.loads(lines[-1]))


def _run_glmer(case, cap) -> dict:
    import csv as csvmod

    import bayes_hlm as bh

    c = CASES[case]
    SCRATCH.mkdir(parents=True, exist_ok=True)
    csv = SCRATCH / f"glm_{case}.csv"
    # quoted strings are factors for lme4_timing.R (the convention of the shared data files)
    bh.datasets.load(c.get("data", case)).to_csv(csv, index=False, quoting=csvmod.QUOTE_NONNUMERIC)
    cmd = ["Rscript", str(HERE / "r" / "lme4_timing.R"), str(csv), c["ours"], "--family", R_FAMILY[c["family"]],
           "--n", "3"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=cap)
    except FileNotFoundError:
        return dict(status="Rscript not installed")
    except subprocess.TimeoutExpired:
        return dict(status=f"> {cap} s (cap)")
    if p.returncode != 0:
        return dict(status="failed", error=p.stderr[-800:])
    out = json.loads(p.stdout)
    return dict(status="ok", wall_s=out["wall_s"], engine=f"glmer Laplace (lme4 {out['versions']['lme4']})",
                warnings=out.get("warnings", []), fixed=out["fixed"], theta=out["theta"])


def _fmt(v, fmt):
    return "–" if v is None else fmt.format(v)


def table(rows) -> str:
    head = "| case | contender | engine | wall (s) | min ESS bulk | min ESS/s | divergences | max R-hat |"
    out = [head, "|" + "---|" * 8]
    for r in rows:
        if r["status"] != "ok":
            out.append(f"| {r['case']} | {r['contender']} | | {r['status']} | | | | |")
            continue
        ess = r.get("min_ess_bulk")
        out.append(f"| {r['case']} | {r['contender']} | {r.get('engine', '')} | {r['wall_s']:.1f} | "
                   f"{_fmt(ess, '{:.0f}')} | {_fmt(ess / r['wall_s'] if ess else None, '{:.1f}')} | "
                   f"{_fmt(r.get('divergences'), '{:d}')} | {_fmt(r.get('max_rhat'), '{:.3f}')} |")
    return "\n".join(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", nargs=2, metavar=("CASE", "CONTENDER"), help=argparse.SUPPRESS)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--contenders", default=",".join(CONTENDERS))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ours-chains", type=int, default=None,
                    help="chains for ours (default: bh.fit's, 4); Bambi always runs 2")
    ap.add_argument("--cap", type=float, default=3600.0, help="seconds per contender")
    ap.add_argument("--name", default="glm_bambi")
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(*args.worker, args.seed, args.ours_chains)))
        return
    cases, contenders = args.cases.split(","), args.contenders.split(",")
    bad = [c for c in cases if c not in CASES] + [c for c in contenders if c not in CONTENDERS]
    if bad:
        ap.error(f"unknown case/contender {bad}; cases {list(CASES)}, contenders {list(CONTENDERS)}")
    RESULTS.mkdir(exist_ok=True)
    rows = []
    meta = dict(name=args.name, machine=platform.platform(), cpu_count=os.cpu_count(), seed=args.seed,
                ours_chains=args.ours_chains, started=time.strftime("%Y-%m-%d %H:%M"))
    for case in cases:
        for con in contenders:
            load0 = os.getloadavg()[0]
            r = _run_glmer(case, args.cap) if con == "glmer" else _run_child(case, con, args.seed, args.cap,
                                                                                        args.ours_chains)
            rows.append({"case": case, "contender": con, "formula": CASES[case]["ours"],
                         "load": [round(load0, 2), round(os.getloadavg()[0], 2)], **r})
            print(table(rows[-1:]).splitlines()[-1], flush=True)
            (RESULTS / f"{args.name}.json").write_text(json.dumps({**meta, "rows": rows}, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
