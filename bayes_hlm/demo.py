"""The README demo: sleepstudy random slopes, Bayesian vs REML, plots.

Run with ``python -m bayes_hlm.demo [--out DIR] [--draws N] [--method full|marginal|auto]``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import pandas as pd

import bayes_hlm as bh


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="out/demo", help="directory for plots and the report")
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--method", default="auto", choices=["auto", "full", "marginal"])
    ap.add_argument("--seed", type=int, default=2024)
    args = ap.parse_args(argv)
    pd.set_option("display.width", 140)
    pd.set_option("display.max_columns", 12)
    pd.set_option("display.precision", 3)

    data = bh.datasets.load("sleepstudy")
    formula = "Reaction ~ Days + (Days | Subject)"
    print(f"Fitting {formula} on sleepstudy ({len(data)} rows) ...")
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        m = bh.fit(formula, data, method=args.method, chains=args.chains, draws=args.draws,
                   tune=args.draws, seed=args.seed)
    print(f"done in {time.perf_counter() - t:.1f} s (method={m.info.method}, sampler={m.info.sampler}, "
          f"wall_s={m.info.wall_s:.2f})\n")
    print("Posterior summary (95% HDI):")
    print(m.summary().drop(columns=["mcse_mean", "mcse_sd"]), "\n")
    print("Adjusted ICC:")
    print(m.icc(), "\n")
    print("R² (Bayesian, marginal, conditional):")
    print(m.r2(), "\n")
    d = m.diagnostics()
    print(f"Diagnostics: {d['divergences']} divergences, max R-hat {d['max_r_hat']:.3f} "
          f"({d['max_r_hat_all']:.3f} incl. group effects), min bulk ESS {d['min_ess_bulk']:.0f}, "
          f"min tail ESS {d['min_ess_tail']:.0f}, tree depth saturated {d['treedepth_saturated']}, "
          f"min E-BFMI {d['bfmi_min']:.2f}\n")
    if hasattr(m, "compare_reml"):
        try:
            print("Bayesian posterior vs lme4-style REML:")
            print(m.compare_reml(), "\n")
        except ImportError as exc:  # the REML engine is optional at import time
            print(f"(REML comparison unavailable: {exc})\n")
    try:
        from .reporters import write_plots

        out = Path(args.out)
        paths = write_plots(m, out)
        print(f"Wrote {len(paths)} files to {out}/ (open {out}/report.html)")
    except ImportError as exc:
        print(f"(plots unavailable: {exc})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
