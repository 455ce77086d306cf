"""Stages 2 and 3 of a fit: choose the engine, then sample.

:func:`choose` asks :func:`bayes_hlm.backends.engine.choose_engine` (the one place the
method and engine are decided) about a :class:`~.problem.Problem`; :func:`sample` runs
the choice. :func:`choose_and_sample` does both, choosing again when an automatically
chosen engine fails at run time (:func:`~bayes_hlm.backends.engine.run_with_fallback`).
"""

from __future__ import annotations

from dataclasses import replace

from ..backends.engine import EngineChoice, choose_engine, engine_status, run_with_fallback
from ..backends.sampling import SampleOutput, SamplerConfig
from ..progress import phase
from ..settings import FitSettings, check_centered
from .problem import Problem


def choose(problem: Problem, settings: FitSettings, unavailable: dict | None = None) -> EngineChoice:
    """The method and engine for ``problem`` under the user's ``settings``; also checks the
    settings that depend on the choice (``centered``)."""
    choice = choose_engine(problem.design, problem.fit_priors, problem.stats, method=settings.method,
                           sampler=settings.sampler,
                           unavailable=engine_status() if unavailable is None else unavailable,
                           out_of_core=problem.out_of_core,
                           family=getattr(problem.spec, "family", None),
                           parametrised=isinstance(settings.centered, dict) and bool(settings.centered))
    check_centered(settings.centered, list(problem.spec.design.factors()), choice.method)
    return choice


def sampler_config(settings: FitSettings, progressbar: bool | None) -> SamplerConfig:
    """NUTS settings of a fit (the engine is filled in per choice; the seed drawn once here,
    so a fallback engine uses the same recorded seed)."""
    return SamplerConfig(sampler="pymc", chains=settings.chains, draws=settings.draws,
                         tune=settings.tune, target_accept=settings.target_accept,
                         seed=settings.seed, progressbar=progressbar,
                         mass_matrix=settings.mass_matrix)


def sample(problem: Problem, choice: EngineChoice, cfg: SamplerConfig, centered="auto"
           ) -> tuple[SampleOutput, object, dict]:
    """Run ``choice`` on ``problem``: ``(output, effect generator or None, facts for FitInfo.extra)``."""
    cfg = replace(cfg, sampler=choice.sampler)
    family = getattr(problem.spec, "family", None)
    if choice.method == "marginal" and family is not None and family.name != "gaussian":
        from ..backends.glmm_collapsed import run_collapsed

        return run_collapsed(problem.design, problem.fit_priors, family, cfg)
    if choice.method == "marginal":
        from ..backends.marginal import run_marginal

        return run_marginal(problem.design, problem.fit_priors, cfg, problem.stats)
    if choice.sampler == "gibbs":  # Metropolis-within-Gibbs, the factor centred
        from ..backends import glmm_gibbs

        if isinstance(centered, dict) and not all(centered.values()):
            from ..errors import BayesHLMError

            raise BayesHLMError("sampler='gibbs' samples the factor centred; drop centered= "
                                "or use sampler='numba' for a non-centred factor")
        out = glmm_gibbs.sample(problem.design, problem.fit_priors, family, cfg)
        return out, None, {"centered": out.extra["centered"], "rows": out.extra["rows"],
                           "cells": out.extra["cells"], "gibbs": out.extra["gibbs"]}
    from ..backends.full import build_full_model
    from ..backends.parametrization import choose_centering
    from ..backends.sampling import sample_model

    family = getattr(problem.spec, "family", None)
    compiled = choice.sampler == "numba"
    cent = (choose_centering(problem.design, family, nested=compiled, crossed=compiled)
            if centered == "auto" else dict(centered or {}))
    if choice.sampler == "numba":  # the compiled GLMM density (non-Gaussian families)
        from ..backends import glmm_nuts

        from ..backends.parametrization import level_centering

        levels = level_centering(problem.design, family, cent) if centered == "auto" else None
        out = glmm_nuts.sample(problem.design, problem.fit_priors, family, cfg, cent,
                               level_centred=levels)
        return out, None, {"centered": cent, "rows": out.extra["rows"], "cells": out.extra["cells"],
                           "integrated": out.extra["integrated"],
                           "level_centred": out.extra["level_centred"]}
    with phase("building the PyMC model"):
        model = build_full_model(problem.design, problem.fit_priors, cent, family=family)
    if family is not None and family.bounded_eta:  # start at the data's values, unjittered
        cfg = replace(cfg, jitter=False)
    out = sample_model(model, cfg)
    return out, None, {"centered": cent}


def compile_ahead(problem: Problem, settings: FitSettings) -> None:
    """Where the collapsed Gaussian density may run (Gaussian family, marginal or automatic
    method, compiled or automatic sampler), start compiling it in a child process if this
    machine's cache lacks it: it compiles while the samplers load (#18 item 5)."""
    family = getattr(problem.spec, "family", None)
    gaussian = family is None or (family.name == "gaussian" and family.supports("marginal"))
    if (gaussian and settings.method in ("auto", "marginal") and settings.sampler in (None, "auto", "numba")
            and problem.stats is not None and not problem.out_of_core):
        from ..backends.numba_nuts import compile_ahead as density_ahead

        try:
            density_ahead(problem.design, problem.fit_priors, problem.stats)
        except Exception:  # a head start only: the fit compiles what it needs itself
            pass


def choose_and_sample(problem: Problem, settings: FitSettings, cfg: SamplerConfig
                      ) -> tuple[EngineChoice, tuple[SampleOutput, object, dict]]:
    """:func:`choose` then :func:`sample`, with the chooser's run-time fallback."""
    compile_ahead(problem, settings)
    from ..backends import background_compile

    background_compile.release()  # a child started ahead that this fit gave no kernel
    return run_with_fallback(lambda unavailable: choose(problem, settings, unavailable),
                             lambda c: sample(problem, c, cfg, settings.centered), engine_status())
