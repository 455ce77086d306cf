"""NUTS on the compiled GLMM density (method ``"full"``, sampler ``"numba"`` for the
non-Gaussian families): nutpie calling :mod:`.glmm_density`'s cached C callback through
the same container as the collapsed Gaussian engine (:func:`.numba_nuts._compiled_model`).

The draws come back under the PyMC full model's names, dims and coordinates (``fixed``,
the family parameter, ``sd__*``, ``corr__*``, ``r__*``), so every result accessor and
reporter reads them unchanged. The likelihood reads the rows losslessly merged into cells
where that shrinks them (:mod:`.compression`).
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import xarray as xr

from ..progress import phase
from ..spec.design import Design
from ..spec.priors import PriorSet
from . import naming
from .hyperparameters import coords as model_coords
from .hyperparameters import factor_blocks
from .sampling import SamplerConfig, SampleOutput, run_nutpie, with_posterior


# mass_matrix="auto" on this engine: nutpie's diagonal mass matrix from the draws' variances
# (Stan's and PyMC's estimate; nutpie's default also reads the gradients'). Measured at the
# defaults (4 x 1000 + 1000, after the integrated nests and row-wise centring), min bulk ESS
# over every parameter, gradient-based -> draw-based: cbpp 813 -> 1207-1255, grouseticks
# 765-927 -> 1264-1917, + (1 | INDEX) 490-881 -> 953-1054, verbagg 473 -> 921 (R-hat 1.017 ->
# 1.007), contraception 1009 -> 1008; no divergences in any of these runs
ADAPTATION = "draw_diag"


def posterior_dataset(design: Design, ps: PriorSet, packed, z: np.ndarray,
                      seed: int | None = None) -> xr.Dataset:
    """The PyMC full model's posterior variables, dims and coords from the draws ``z``
    (``seed``: of the draws of integrated-out effects, :func:`.glmm_density.constrained`)."""
    from .glmm_density import constrained

    C, D = z.shape[:2]
    v = constrained(packed, ps, design, z.reshape(C * D, -1), rng=np.random.default_rng(seed))

    def cd(a):
        return a.reshape((C, D) + a.shape[1:])

    out = {naming.FIXED: (("chain", "draw", naming.FIXED_DIM), cd(v["fixed"]))}
    if packed.phi_name is not None:
        out[packed.phi_name] = (("chain", "draw"), cd(v[packed.phi_name]))
    blocks = factor_blocks(design)
    for f, fv in v["factors"].items():
        td, tdb, ld = naming.term_dim(f), naming.term_dim_b(f), naming.level_dim(f)
        out[naming.sd_var(f)] = (("chain", "draw", td), cd(fv["sd"]))
        if any(design.groups[k].correlated for k in blocks[f]):
            out[naming.corr_var(f)] = (("chain", "draw", td, tdb), cd(fv["corr"]))
        out[naming.effect_var(f)] = (("chain", "draw", ld, td), cd(fv["b"]))
    used = {d for dims, _ in out.values() for d in dims} - {"chain", "draw"}
    cs = model_coords(design)
    return xr.Dataset(out, coords={"chain": np.arange(C), "draw": np.arange(D),
                                   **{k: cs[k] for k in used}})


def _initial_point(packed, design: Design, ps: PriorSet):
    """PyMC's start (the prior's centre jittered by U(-1, 1)), with each fixed effect's
    jitter scaled to its prior SD when that is below 1: a covariate of range ±60 with prior SD
    0.07 (grouseticks' cHEIGHT) jittered by ±1 starts at exp(60) counts and NUTS never adapts."""
    scale = np.ones(packed.ndim)
    scale[:packed.p] = np.minimum(1.0, [float(ps.priors[n].params["sigma"]) for n in design.fixed_names])

    def initial_point(seed):
        rng = np.random.default_rng(seed)
        return packed.init + scale * rng.uniform(-1.0, 1.0, packed.ndim)

    return initial_point


def sample(design: Design, ps: PriorSet, family, cfg: SamplerConfig,
           centered: dict[str, bool], compress: bool | str = "auto",
           level_centred: dict[str, np.ndarray] | None = None) -> SampleOutput:
    """NUTS with nutpie on the compiled GLMM density; posterior as the full PyMC model names it.

    Parameters
    ----------
    design, ps, family
        The model (the design and priors the full PyMC model would be built from).
    cfg : SamplerConfig
    centered : dict
        Factor -> centred, as :func:`~bayes_hlm.backends.parametrization.choose_centering`
        or the user chose it.
    level_centred : dict, optional
        Factor -> per level centred or not
        (:func:`~bayes_hlm.backends.parametrization.level_centering`).
    compress : bool or "auto"
        Merge identical rows into cells (:mod:`.compression`); ``"auto"`` when that removes
        at least a fifth of the rows.
    """
    from . import glmm_density as gd
    from .compression import compress_rows
    from .numba_nuts import _compiled_model, callback_phase, callbacks

    t0 = time.perf_counter()
    what, cold = callback_phase(gd.logp_grad, "GLMM density", "packing the model's rows")
    with phase(what, long=cold):
        rows = gd.design_rows(design)
        n_rows = rows.N
        if compress:  # "auto": only when it removes at least a fifth of the rows
            rows = compress_rows(rows, family,
                                 max_cells=None if compress is True else int(0.8 * n_rows))
        packed = gd.pack(design, ps, family, centered, rows, integrate=True,
                         level_centred=level_centred)
        compiled = _compiled_model(packed, cbs=callbacks(gd.logp_grad))
        compiled = replace(compiled, initial_point_func=_initial_point(packed, design, ps))
    t1 = time.perf_counter()
    tree, interrupted = run_nutpie(compiled, cfg, auto=ADAPTATION)
    t2 = time.perf_counter()
    with phase("transforming the draws to the model's parameters"):
        z = np.asarray(tree["posterior"]["_x"].values)
        out = with_posterior(tree, posterior_dataset(design, ps, packed, z, cfg.seed),
                             "bayes_hlm.glmm_nuts")
    return SampleOutput(tree=out, compile_s=t1 - t0, sample_s=t2 - t1,
                        interrupted=interrupted,
                        extra={"centered": dict(packed.centered), "rows": n_rows,
                               "level_centred": {design.groups[lt.term].factor:
                                                 int(lt.level_centred.sum())
                                                 for lt in packed.terms
                                                 if lt.level_centred is not None},
                               "integrated": [design.groups[lt.term].factor for lt in packed.terms
                                              if lt.collapse == 1],
                               "cells": rows.N, "sampler": "numba"})
