"""Run NUTS on a PyMC model with a given engine and time its phases.

Engines: PyMC's own NUTS (``"pymc"``), nutpie (``"nutpie"``, numba-compiled),
NumPyro through ``pm.sample`` (``"numpyro"``), and ``"jax"``: NumPyro's NUTS
kernel on the jaxified model in one vectorised XLA program whose compiled
form is cached across processes (:mod:`bayes_hlm.backends.jax_nuts`).
``"numba"`` (nutpie on the compiled collapsed density) needs no PyMC model and
runs from :func:`bayes_hlm.backends.marginal.run_marginal`. Which engine runs
a fit, and what ``"auto"`` means, is decided in one place:
:func:`bayes_hlm.backends.engine.choose_engine`. PyMC 6.4's ``pm.sample``
silently picks nutpie when installed, so the engine is always passed explicitly.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import pymc as pm
import xarray as xr

from ..errors import BayesHLMError
from ..progress import phase
from ..settings import MASS_MATRICES, SAMPLERS
# nutpie engines: a low-rank-corrected mass matrix learns the ridge between an
# intercept and sampled effects in small collapsed posteriors (penicillin, 10
# parameters: min ESS 540-660 -> 1500-1620 of 2000 draws; sleepstudy 1280 -> 1420);
# on insteval's 1,150 parameters it tuned worse (12 divergences, min ESS 370), so
# only small problems get it
LOW_RANK_MAX_DIM = 64


@dataclass
class SamplerConfig:
    """NUTS settings shared by every backend."""

    sampler: str = "pymc"
    chains: int = 4
    draws: int = 1000
    tune: int = 1000
    target_accept: float = 0.8
    seed: int | None = None
    progressbar: bool | None = None
    cores: int | None = None
    mass_matrix: str = "auto"  # nutpie engines: "diag", "low_rank", or "auto" (by dimension)
    #: jitter the model's initial point (PyMC's default); False: start every chain there
    jitter: bool = True

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, not {self.sampler!r}")
        if self.mass_matrix not in MASS_MATRICES:
            raise ValueError(f"mass_matrix must be one of {MASS_MATRICES}, not {self.mass_matrix!r}")
        for name in ("chains", "draws", "tune"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        if not 0 < self.target_accept < 1:
            raise ValueError(f"target_accept must be in (0, 1), not {self.target_accept}")
        if self.seed is None:
            # draw one so the fit is reproducible from its recorded seed
            self.seed = int(np.random.SeedSequence().generate_state(1)[0] % (2**31))
        if self.progressbar is None:
            self.progressbar = _interactive()
        if self.cores is None:
            self.cores = min(self.chains, os.cpu_count() or 1)


def _interactive() -> bool:
    if os.environ.get("CI"):
        return False
    try:
        from IPython import get_ipython

        if get_ipython() is not None:
            return True
    except ImportError:
        pass
    return sys.stderr.isatty()


@dataclass
class SampleOutput:
    tree: xr.DataTree
    compile_s: float
    sample_s: float
    interrupted: bool = False
    extra: dict = field(default_factory=dict)  # engine facts for FitInfo.extra


def sample_model(model: pm.Model, cfg: SamplerConfig, var_names: list[str] | None = None) -> SampleOutput:
    """Sample ``model`` with ``cfg.sampler``; returns the DataTree (posterior + sample_stats)
    and phase timings. ``cfg`` is never modified.

    ``cfg.sampler="auto"`` (this stage used on its own) resolves with
    :func:`bayes_hlm.backends.engine.choose_model_sampler`; the engine that ran is
    ``SampleOutput.extra["sampler"]``. A ``KeyboardInterrupt`` during nutpie sampling keeps
    the draws done so far (the result is flagged ``interrupted``); PyMC's own sampler does the same.
    """
    if cfg.sampler == "auto":
        from .engine import choose_model_sampler, engine_status, run_with_fallback

        choice, out = run_with_fallback(lambda u: choose_model_sampler("auto", u),
                                        lambda c: sample_model(model, replace(cfg, sampler=c.sampler),
                                                               var_names),
                                        engine_status())
        return out
    if cfg.sampler == "numba":
        raise ValueError("sampler='numba' runs the compiled collapsed density, not a PyMC model: "
                         "use backends.marginal.run_marginal")
    from ..foreign_warnings import quiet_foreign, quiet_pymc_steps

    # PyTensor's BLAS paragraph, fork() deprecation, PyMC's "Initializing NUTS..." INFO lines:
    # not the user's problem (our progress bar and phase lines say what is happening)
    with quiet_foreign(), quiet_pymc_steps():
        if cfg.sampler == "jax":
            from . import jax_nuts

            if not jax_nuts.available():
                raise ImportError("sampler='jax' needs the optional extra: pip install 'bayes_hlm[jax]'")
            out = jax_nuts.sample_jax(model, cfg, var_names)
        elif cfg.sampler == "nutpie":
            out = _sample_nutpie(model, cfg, var_names)
        else:
            out = _sample_pm(model, cfg, var_names)
    out.extra.setdefault("sampler", cfg.sampler)
    return out


def _sample_pm(model: pm.Model, cfg: SamplerConfig, var_names) -> SampleOutput:
    """``pm.sample`` with PyMC's NUTS or NumPyro's."""
    t0 = time.perf_counter()
    kwargs = dict(
        draws=cfg.draws, tune=cfg.tune, chains=cfg.chains, cores=cfg.cores,
        target_accept=cfg.target_accept, random_seed=cfg.seed, progressbar=cfg.progressbar,
        nuts_sampler=cfg.sampler, compute_convergence_checks=False, var_names=var_names,
    )
    if not cfg.jitter:
        kwargs["init"] = "adapt_diag"  # PyMC's NUTS: the model's initial point, not jittered
    if cfg.sampler == "numpyro":
        from .group_kernel import register_jax

        register_jax()
        kwargs["nuts_sampler_kwargs"] = {"chain_method": "sequential" if cfg.cores < 2 else "parallel"}
    with model, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Tt]he number of samples is too small.*")
        tree = pm.sample(**kwargs)
    total = time.perf_counter() - t0
    stats = tree["sample_stats"].attrs if "sample_stats" in tree.children else {}
    sample_s = float(stats.get("sampling_time", total))
    # pm.sample swallows Ctrl-C and returns the draws done so far: fewer draws = interrupted
    kept = tree["posterior"].sizes.get("draw", 0) if "posterior" in tree.children else 0
    if kept < cfg.draws:
        tree = finished_draws(tree)
    return SampleOutput(tree=tree, compile_s=max(total - sample_s, 0.0), sample_s=sample_s,
                        interrupted=kept < cfg.draws)


def _sample_nutpie(model: pm.Model, cfg: SamplerConfig, var_names) -> SampleOutput:
    import nutpie

    t0 = time.perf_counter()
    with phase("compiling the model with nutpie (Numba; every fit, 10-20 s)", long=True):
        compiled = nutpie.compile_pymc_model(model, var_names=var_names,
                                             **({} if cfg.jitter else {"jitter_rvs": set()}))
    t1 = time.perf_counter()
    tree, interrupted = run_nutpie(compiled, cfg)
    t2 = time.perf_counter()
    return SampleOutput(tree=tree, compile_s=t1 - t0, sample_s=t2 - t1, interrupted=interrupted)


def mass_matrix(cfg: SamplerConfig, n_dim: int, auto: str | None = None) -> str:
    """nutpie's ``adaptation`` for a model with ``n_dim`` unconstrained parameters;
    ``auto``: the engine's own choice under ``mass_matrix="auto"`` (else by dimension)."""
    if cfg.mass_matrix != "auto":
        return cfg.mass_matrix
    if auto is not None:
        return auto
    return "low_rank" if n_dim <= LOW_RANK_MAX_DIM else "diag"


def run_nutpie(compiled, cfg: SamplerConfig, auto: str | None = None,
               settings: dict | None = None) -> tuple[xr.DataTree, bool]:
    """nutpie's NUTS on a compiled model; Ctrl-C keeps the draws done so far. ``auto``: the
    adaptation ``mass_matrix="auto"`` means for this engine (:func:`mass_matrix`);
    ``settings``: more of nutpie's sampler settings (e.g. ``maxdepth``)."""
    import nutpie

    try:
        sampler = nutpie.sample(
            compiled, draws=cfg.draws, tune=cfg.tune, chains=cfg.chains, cores=cfg.cores,
            seed=cfg.seed, progress_bar=cfg.progressbar, save_warmup=False, blocking=False,
            target_accept=cfg.target_accept, adaptation=mass_matrix(cfg, compiled.n_dim, auto),
            **(settings or {}),
        )
        try:
            return sampler.wait(), False
        except KeyboardInterrupt:
            return finished_draws(sampler.abort()), True
    except BaseException as e:
        if not is_rust_panic(e):
            raise
        raise BayesHLMError(panic_message(e, cfg)) from None


def with_posterior(tree: xr.DataTree, posterior: xr.Dataset, engine: str) -> xr.DataTree:
    """nutpie's result of a compiled engine with its unconstrained ``_x`` draws replaced by
    the model's ``posterior``; every group labelled with the engine (saved files carry it)."""
    groups = {k: tree[k].to_dataset() for k in tree.children if k != "posterior"}
    groups["posterior"] = posterior
    for k in groups:
        groups[k].attrs.update({"engine": engine, "inference_library": "nutpie"})
    return xr.DataTree.from_dict(groups)


def is_rust_panic(e: BaseException) -> bool:
    """A panic inside nutpie's Rust code reaches Python as ``pyo3_runtime.PanicException``,
    a BaseException (so no ``except Exception`` stops it); that module cannot be imported."""
    return type(e).__name__ == "PanicException"


def panic_message(e: BaseException, cfg: SamplerConfig) -> str:
    """What a user can change when nutpie's sampler stops on an internal assertion."""
    return (f"nutpie's NUTS ({cfg.sampler!r} engine) stopped on an internal error "
            f"({str(e).strip() or type(e).__name__}) with tune={cfg.tune}, draws={cfg.draws}, "
            f"chains={cfg.chains}, mass_matrix={cfg.mass_matrix!r}. Raise tune (the warm-up, "
            f"e.g. tune=1000), try mass_matrix='diag', or use another engine "
            f"(sampler='pymc' or 'jax')")


def finished_draws(tree: xr.DataTree) -> xr.DataTree:
    """The leading draws every chain finished (an interrupted nutpie run pads the chains
    that were behind with NaN, which would make every summary NaN)."""
    post = tree["posterior"].to_dataset()
    done = None
    for v in post.data_vars:
        if np.issubdtype(post[v].dtype, np.floating):
            ok = np.isfinite(post[v]).all(dim=[d for d in post[v].dims if d != "draw"]).values
            done = ok if done is None else done & ok
    if done is None or done.all():
        return tree
    n = int(np.argmin(done))
    groups = {k: tree[k].to_dataset() for k in tree.children}
    return xr.DataTree.from_dict({k: ds.isel(draw=slice(0, n)) if "draw" in ds.dims else ds
                                  for k, ds in groups.items()})
