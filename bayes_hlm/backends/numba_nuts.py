"""NUTS on the compiled collapsed density (``sampler="numba"``): nutpie's sampler
calling :mod:`.numba_density`'s cached C callback.

nutpie (Rust; Stan-style adaptation; one thread per chain) samples any model
given as a C log-density callback plus a data pointer; its PyMC front end builds
that callback by compiling the model graph with Numba on every call (10–20 s,
not cacheable). Here the callback is a fixed function compiled once per machine,
so a new fit only packs its statistics into a buffer and starts sampling.

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
from . import naming
from .hyperparameters import coords as model_coords
from .hyperparameters import factor_blocks
from .sampling import SamplerConfig, SampleOutput, run_nutpie


def available() -> bool:
    try:
        import dataclasses

        from nutpie.compile_pymc import CompiledPyMCModel

        names = {f.name for f in dataclasses.fields(CompiledPyMCModel)}
    except Exception:
        return False
    return {"compiled_logp_func", "compiled_expand_func", "user_data", "shape_info"} <= names


def _compiled_model(packed, seed_jitter: bool = True, cbs=None):
    """nutpie's model container around C callbacks ``cbs`` (default: the compiled collapsed
    Gaussian density's; the quadrature-collapsed GLMM engine passes its own)."""
    from nutpie.compile_pymc import CompiledPyMCModel

    from .numba_density import callbacks

    logp_cfunc, expand_cfunc = cbs if cbs is not None else callbacks()
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
    from .numba_density import callbacks, compile_cache_cold, pack

    t0 = time.perf_counter()
    if callbacks.cache_info().currsize:  # compiled or loaded already in this process
        what, cold = "packing the model's statistics", False
    else:
        cold = compile_cache_cold()
        what = ("compiling the collapsed density with Numba (once per machine, ~30 s)" if cold
                else "loading the compiled collapsed density from Numba's cache")
    with phase(what, long=cold):
        packed = pack(design, ps, stats)
        compiled = _compiled_model(packed)
    t1 = time.perf_counter()
    # without nutpie's own bar (a log, a pipe): a phase line, so sampling is not a silent stretch
    sampling = (contextlib.nullcontext() if cfg.progressbar else
                phase(f"sampling ({cfg.chains} chains x {cfg.tune} + {cfg.draws} iterations, nutpie)"))
    with sampling:
        tree, interrupted = run_nutpie(compiled, cfg)
    t2 = time.perf_counter()
    with phase("transforming the draws to the model's parameters"):
        z = np.asarray(tree["posterior"]["_x"].values)
        groups = {k: tree[k].to_dataset() for k in tree.children if k != "posterior"}
        groups["posterior"] = posterior_dataset(design, ps, packed, z)
    for k in groups:
        # the label predates the module's name (numba_nuts): kept as saved files carry it
        groups[k].attrs.update({"engine": "bayes_hlm.compiled_nuts", "inference_library": "nutpie"})
    out = xr.DataTree.from_dict(groups)
    return SampleOutput(tree=out, compile_s=t1 - t0, sample_s=t2 - t1, interrupted=interrupted,
                        extra={"centered": packed.centered})
