"""Compile the Numba kernels of a first fit into Numba's cache, ahead of that fit.

``python -m bayes_hlm.warmup`` fits a small model once (sleepstudy random slopes and a tiny nested
model, the compiled collapsed engine, a few draws) so that the kernels the default engine compiles on first use
(the collapsed log density and its C callback, the exact group-effect draws) are cached
(``NUMBA_CACHE_DIR``, default next to the sources). ``scripts/bootstrap.sh`` runs it after
installing, so the README's first fit starts warm. Safe to run again (it then only loads the
cache); prints one line, or nothing with ``--quiet``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings


def warm_up() -> float:
    """Run the small fit; returns its seconds."""
    os.environ.setdefault("BAYES_HLM_QUIET", "1")  # the phase lines of the fit itself
    t = time.perf_counter()
    import bayes_hlm as bh

    data = bh.datasets.load("sleepstudy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a 50-draw fit warns about its ESS: not the point here
        fit = bh.fit("Reaction ~ Days + (Days | Subject)", data, method="marginal", chains=1,
                     draws=50, tune=50, seed=1, progressbar=False, warn=False)
        assert fit.info.method == "marginal"  # its group effects were drawn: those kernels too
        # a tiny nested model: the nested effect-draw kernel (a three-level model is the next
        # thing the notebooks and many users fit); the density is the same compiled function
        sim = bh.datasets.simulate(n_groups=4, rows_per_group=6, slope=False, nested=2,
                                   group_sd=(1.0,), sigma=1.0, seed=1)
        bh.fit(sim.formula, sim.data, method="marginal", chains=1, draws=20, tune=20, seed=1,
               progressbar=False, warn=False)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if not args.quiet:
        print("bayes_hlm: compiling the sampler's kernels once for this machine (about a minute) …",
              file=sys.stderr, flush=True)
    s = warm_up()
    if not args.quiet:
        print(f"bayes_hlm: kernels compiled and cached in {s:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
