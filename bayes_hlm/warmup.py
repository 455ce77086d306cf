"""Compile the Numba kernels of the common first fits into Numba's cache, ahead of those fits.

``python -m bayes_hlm.warmup`` compiles what the default engine compiles on first use, so that
a later first fit only loads it (``NUMBA_CACHE_DIR``, default next to the sources):

* the collapsed density's entry points (and their nutpie C callbacks) of the common model
  structures (:data:`DENSITIES`): one factor (``(1 | g)`` and the demo's ``(Days | Subject)``),
  nested ``(1 | g/h)`` and crossed ``(1 | a) + (1 | b)``;
* the exact group-effect draws (block and nested kernels) and their keyed noise, by fitting
  sleepstudy random slopes and a tiny nested model (one chain, a few draws);
* glmer's kernels for binomial/logit and Poisson/log (:func:`warm_glmer`): the frequentist
  reference of every such Bayesian fit.

``scripts/bootstrap.sh`` runs it after installing, so the README's first fit starts warm. Safe
to run again (it then only loads the cache); prints a line per step, or nothing with ``--quiet``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np
import pandas as pd

#: (structure, q) of the collapsed density entry points compiled ahead
#: (:func:`bayes_hlm.backends.numba_density.kernel`)
#: (one factor: per q of its group term, :func:`~bayes_hlm.backends.group_kernel.term_for_q`)
DENSITIES = (("single", 1), ("single", 2), ("nested", 1), ("crossed", 1))


def warm_densities(say=lambda msg: None) -> None:
    """Compile (or load) the density entry points of :data:`DENSITIES` and their callbacks."""
    from .backends.numba_density import kernel
    from .backends.numba_nuts import callbacks

    for kind, q in DENSITIES:
        say(f"the collapsed density ({kind})")
        callbacks(kernel(kind, q))


def warm_up(say=lambda msg: None) -> float:
    """Compile the densities and run the small fits; returns the seconds taken."""
    os.environ.setdefault("BAYES_HLM_QUIET", "1")  # the phase lines of the fits themselves
    t = time.perf_counter()
    warm_densities(say)
    say("the group-effect draws (two small fits)")
    import bayes_hlm as bh

    data = bh.datasets.load("sleepstudy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a 50-draw fit warns about its ESS: not the point here
        fit = bh.fit("Reaction ~ Days + (Days | Subject)", data, method="marginal", chains=1,
                     draws=50, tune=50, seed=1, progressbar=False, warn=False)
        assert fit.info.method == "marginal"  # its group effects were drawn: those kernels too
        # a tiny nested model: the nested effect-draw kernel (a three-level model is the next
        # thing the notebooks and many users fit)
        sim = bh.datasets.simulate(n_groups=4, rows_per_group=6, slope=False, nested=2,
                                   group_sd=(1.0,), sigma=1.0, seed=1)
        bh.fit(sim.formula, sim.data, method="marginal", chains=1, draws=20, tune=20, seed=1,
               progressbar=False, warn=False)
    warm_glmer(say)
    return time.perf_counter() - t


def warm_glmer(say=lambda msg: None) -> None:
    """Compile glmer's kernels for the binomial/logit and Poisson/log families (one factor with a
    correlated slope, and crossed factors): the frequentist column of every Bernoulli, binomial
    and Poisson Bayesian fit is a glmer fit, and each family's first fit compiles ~30 s."""
    import bayes_hlm as bh

    say("glmer's kernels (binomial and Poisson)")
    rng = np.random.default_rng(1)
    n = 240
    d = pd.DataFrame({"x": rng.normal(size=n), "g": pd.Categorical(np.arange(n) % 12),
                      "h": pd.Categorical(np.arange(n) % 5)})
    d["y"] = rng.binomial(1, 0.5, size=n)
    d["k"] = rng.poisson(2.0, size=n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny random data: singular fits are not the point
        for form, fam in (("y ~ x + (x | g)", "binomial"), ("y ~ x + (1 | g) + (1 | h)", "binomial"),
                          ("k ~ x + (x | g)", "poisson"), ("k ~ x + (1 | g) + (1 | h)", "poisson")):
            bh.glmer(form, d, family=fam)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    def say(msg: str) -> None:
        if not args.quiet:
            print(f"bayes_hlm: compiling the sampler's kernels once for this machine: {msg} …",
                  file=sys.stderr, flush=True)

    s = warm_up(say)
    if not args.quiet:
        print(f"bayes_hlm: kernels compiled and cached in {s:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
