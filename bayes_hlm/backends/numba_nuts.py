"""NUTS on the compiled collapsed density (``sampler="numba"``): nutpie's sampler
calling :mod:`.numba_density`'s cached C callback.

nutpie (Rust; Stan-style adaptation; one thread per chain) samples any model
given as a C log-density callback plus a data pointer; its PyMC front end builds
that callback by compiling the model graph with Numba on every call (10–20 s,
not cacheable). Here the callback is a fixed function compiled once per machine,
so a new fit only packs its statistics into a buffer and starts sampling. Every compiled
density (the collapsed Gaussian one's per-structure entry points, the GLMM densities) gets
its callbacks from one factory, :func:`callbacks` (:mod:`.nuts_callbacks`, re-exported here).

Uses nutpie's ``CompiledPyMCModel`` container (nutpie 0.16); if its layout
changes, :func:`available` turns this engine off and ``"auto"`` falls back to
the JAX or PyMC engines.
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
import xarray as xr

from ..progress import phase
from ..spec.design import Design
from ..spec.priors import PriorSet
from . import background_compile, naming
from .hyperparameters import coords as model_coords
from .hyperparameters import factor_blocks
from .sampling import SamplerConfig, SampleOutput, run_nutpie, with_posterior
# the callback factory lives in a light module of its own (a background compile's child
# imports only it and the density); re-exported here, where the engines look for it
from .nuts_callbacks import (_CALLBACKS, _bound_logp, _expand_c, _logp_c,  # noqa: F401
                             _signatures, callbacks, compile_cache_cold, loaded)


def available() -> bool:
    try:
        import dataclasses

        from nutpie.compile_pymc import CompiledPyMCModel

        names = {f.name for f in dataclasses.fields(CompiledPyMCModel)}
    except Exception:
        return False
    return {"compiled_logp_func", "compiled_expand_func", "user_data", "shape_info"} <= names


def callback_phase(kernel, density: str, warm: str) -> tuple[str, bool]:
    """``(phase line, long)`` of the step that gets ``kernel``'s callbacks: compiling
    (``density`` names it, "once per machine"), loading from Numba's cache, or ``warm``
    (what the step does besides) when this process has them already."""
    if loaded(kernel):
        return warm, False
    if compile_cache_cold(kernel):
        return f"compiling the {density} with Numba (once per machine)", True
    return f"loading the compiled {density} from Numba's cache", False


def compile_ahead(design: Design, ps: PriorSet, stats) -> bool:
    """Start compiling the collapsed density of this model in a child process when this
    machine's cache lacks it (:mod:`.background_compile`): it compiles while this process
    loads nutpie and packs the statistics, and :func:`sample` loads it from the cache.
    False when nothing started (nutpie missing, a model the density does not cover, the
    density cached or loaded already, or no child process)."""
    import importlib.util

    if importlib.util.find_spec("nutpie") is None:
        return False
    from .numba_density import kernel, kernel_args, unsupported_reason

    if not background_compile.enabled() or unsupported_reason(design, ps, stats) is not None:
        return False
    kind, q = kernel_args(stats)
    kern = kernel(kind, q)
    if loaded(kern) or not compile_cache_cold(kern):
        return False
    return background_compile.start(kern, (kernel.__module__, kernel.__name__, (kind, q)))


def _compiled_model(packed, seed_jitter: bool = True, cbs=None):
    """nutpie's model container around C callbacks ``cbs`` (default: those of the compiled
    collapsed Gaussian density's entry point for ``packed``; the GLMM engines pass theirs)."""
    from nutpie.compile_pymc import CompiledPyMCModel

    if cbs is None:
        from .numba_density import kernel_for

        cbs = callbacks(kernel_for(packed))
    logp_cfunc, expand_cfunc = cbs
    n = packed.ndim

    def initial_point(seed):
        # PyMC's default: the prior's central point, jittered by U(-1, 1)
        rng = np.random.default_rng(seed)
        return packed.init + (rng.uniform(-1.0, 1.0, n) if seed_jitter else 0.0)

    return CompiledPyMCModel(
        dims={"_x": ("_x_dim",)}, compiled_logp_func=logp_cfunc, compiled_expand_func=expand_cfunc,
        initial_point_func=initial_point, shared_data={}, shared_var_keys={},
        user_data=packed.buf, n_expanded=n, shape_info=(["_x"], [slice(0, n)], [(n,)]),
        logp_func=None, expand_func=None, _n_dim=n, _shapes={"_x": (n,)},
        _coords={"_x_dim": np.arange(n)},
    )


def posterior_dataset(design: Design, ps: PriorSet, packed, z: np.ndarray) -> xr.Dataset:
    """The same posterior variables, dims and coords as the PyMC model's."""
    from .numba_density import constrained

    C, D = z.shape[:2]
    v = constrained(packed, ps, design, z.reshape(C * D, -1))

    def cd(a):
        return a.reshape((C, D) + a.shape[1:])

    out = {naming.FIXED: (("chain", "draw", naming.FIXED_DIM), cd(v["fixed"])),
           naming.SIGMA: (("chain", "draw"), cd(v["sigma"]))}
    blocks = factor_blocks(design)
    for f, fv in v["factors"].items():
        td, tdb, ld = naming.term_dim(f), naming.term_dim_b(f), naming.level_dim(f)
        out[naming.sd_var(f)] = (("chain", "draw", td), cd(fv["sd"]))
        if any(design.groups[k].correlated for k in blocks[f]):
            out[naming.corr_var(f)] = (("chain", "draw", td, tdb), cd(fv["corr"]))
        if "b" in fv:  # sampled (crossed) factor: its effects are parameters
            out[naming.effect_var(f)] = (("chain", "draw", ld, td), cd(fv["b"]))
    used = {d for dims, _ in out.values() for d in dims} - {"chain", "draw"}
    cs = model_coords(design)
    return xr.Dataset(out, coords={"chain": np.arange(C), "draw": np.arange(D),
                                   **{k: cs[k] for k in used}})


def sample(design: Design, ps: PriorSet, stats, cfg: SamplerConfig) -> SampleOutput:
    """NUTS with nutpie on the packed model; posterior as the PyMC engines name it."""
    from .numba_density import kernel_for, pack

    t0 = time.perf_counter()
    with phase("packing the model's statistics"):
        packed = pack(design, ps, stats)
    kern = kernel_for(packed)  # the model's structure's entry point: only it compiles
    what, cold = callback_phase(kern, "collapsed density", "building the sampler's model")
    with phase(what, long=cold):
        # a child compiling it (compile_ahead): wait, then load it from the cache it wrote;
        # if it failed, callbacks() compiles here
        background_compile.join(kern)
        compiled = _compiled_model(packed, cbs=callbacks(kern))
    t1 = time.perf_counter()
    # without nutpie's own bar (a log, a pipe): a phase line, so sampling is not a silent stretch
    sampling = (contextlib.nullcontext() if cfg.progressbar else
                phase(f"sampling ({cfg.chains} chains x {cfg.tune} + {cfg.draws} iterations, nutpie)"))
    with sampling:
        tree, interrupted = run_nutpie(compiled, cfg)
    t2 = time.perf_counter()
    with phase("transforming the draws to the model's parameters"):
        z = np.asarray(tree["posterior"]["_x"].values)
        # the label predates the module's name (numba_nuts): kept as saved files carry it
        out = with_posterior(tree, posterior_dataset(design, ps, packed, z), "bayes_hlm.compiled_nuts")
    return SampleOutput(tree=out, compile_s=t1 - t0, sample_s=t2 - t1, interrupted=interrupted,
                        extra={"centered": packed.centered})
