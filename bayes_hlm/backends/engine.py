"""Which method and NUTS engine run a fit: one pure function, documented here once.

Methods
    ``"full"`` samples every group effect; ``"marginal"`` integrates them out and draws them
    exactly afterwards (same posterior). ``"auto"``: marginal, which covers every Gaussian
    model with a grouping factor (models without one are refused before this point); full
    for a family without the collapsed form. Generalized models (Bernoulli/binomial logit,
    Poisson log; the integrated factor with at most 2 effect columns) have a collapsed form
    too: effects integrated out by adaptive Gauss-Hermite quadrature, nutpie's NUTS on the
    rest, exact effect draws (:mod:`.glmm_collapsed`; several factors: the one with most
    levels integrated out, the others sampled, :mod:`.glmm_collapsed_crossed`), run by
    ``method="marginal"``; ``"auto"`` fits them with the full model (measured faster per
    effective draw on cbpp-to-verbagg sizes except the smallest: bench_glmm_collapsed.py,
    bench_glmm_engines.py, benchmarks/README.md), except
    a Poisson random intercept: its collapsed density needs only per-group sufficient
    statistics (:mod:`.glmm_sufficient`, O(cells) per gradient), which ``"auto"`` runs. An
    engine runs only families that list it
    (:meth:`bayes_hlm.families.base.Family.engines`). Out of core (``engine="dask"``) only
    the marginal model exists.

Samplers (``sampler=None`` is ``"auto"`` for the marginal model and ``"pymc"`` for the full one)
    ``"auto"`` takes the first engine of this order that can run the model:

    1. ``"numba"`` (marginal only): nutpie's NUTS on bayes_hlm's compiled collapsed density,
       when it covers the model (:func:`~bayes_hlm.backends.numba_density.unsupported_reason`:
       every grouping structure -- one factor, two nested factors, crossed or deeper ones with
       sampled terms of any q -- and correlated blocks of any size; Normal fixed-effect priors
       and the compiled scale priors) and nutpie is installed. For the non-Gaussian
       families under method ``"full"`` (also with ``sampler=None``), ``"numba"`` is nutpie's
       NUTS on the compiled full-model GLMM density
       (:func:`~bayes_hlm.backends.glmm_density.unsupported_reason`: Bernoulli/binomial,
       Poisson and negative-binomial families, Normal fixed-effect priors, the compiled scale
       priors, no ``weights=``); a model it does not cover keeps the PyMC full model;
    2. ``"jax"``: NumPyro's NUTS on the model's JAX log density (programs cached across
       processes), when JAX and NumPyro import. If the model's graph then turns out not to
       lower to JAX, the choice is made again with ``"jax"`` marked unavailable
       (:func:`run_with_fallback`);
    3. ``"pymc"``: PyMC's own NUTS.

    Before 1., method ``"full"`` or ``"auto"`` of a generalized model (sampler ``None``,
    ``"auto"`` or ``"gibbs"``) takes ``"gibbs"``, exact Metropolis-within-Gibbs
    (:mod:`.glmm_gibbs`: one row pass per sweep instead of NUTS's 15-31 per draw), when it
    covers the model (:func:`~bayes_hlm.backends.glmm_gibbs.unsupported_reason`: one factor,
    one term, every fixed column a column of the term, logit or Poisson log, no weights),
    the data have at least :data:`~bayes_hlm.backends.glmm_gibbs.AUTO_MIN_ROWS` rows and
    :func:`~bayes_hlm.backends.parametrization.choose_centering` centres the factor (the
    groups carry much information: centred Gibbs then mixes fast; measured in
    bench_glmm.py, benchmarks/README.md), unless the user set ``centered=``.

    An explicit engine runs as asked or fails with the reason (``"numba"`` on a model it
    does not cover, ``"jax"`` without JAX, ``"gibbs"`` on a model it does not cover).

Every skipped engine and why is in :attr:`EngineChoice.reason`, which the fit records.
Nothing here mutates a configuration: a fallback is a new :class:`EngineChoice`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from ..errors import BayesHLMError
from ..progress import phase

T = TypeVar("T")


@dataclass(frozen=True)
class EngineChoice:
    """The resolved method and engine.

    Attributes
    ----------
    method : {"full", "marginal"}
    sampler : {"numba", "jax", "pymc", "nutpie", "numpyro", "gibbs"}
    reason : str
        Why: the rule that chose it and every engine skipped on the way.
    automatic : bool
        Chosen under ``sampler="auto"`` (so a run-time failure of ``"jax"`` may fall back).
    """

    method: str
    sampler: str
    reason: str
    automatic: bool = False


def engine_status() -> dict[str, str | None]:
    """Which optional engines are installed: ``{engine: None}`` if usable, else why not.

    The only impure part of the choice (it imports); :func:`choose_engine` takes its result.
    """
    from . import numba_nuts, jax_nuts

    with phase("loading the samplers (nutpie, Numba)"):  # first imports take seconds
        numba = numba_nuts.available()
        if numba:  # the compiled density's module (imports Numba): the chooser asks it next
            try:
                from . import numba_density  # noqa: F401
            except ImportError:  # left to the chooser, which reports it as before
                pass
    return {
        "numba": None if numba else
        "nutpie (with its CompiledPyMCModel interface) is not installed",
        "jax": None if jax_nuts.available() else "JAX/NumPyro are not installed "
        "(pip install 'bayes_hlm[jax]')",
    }


def _supports(family, engine: str) -> bool:
    """Whether ``family`` (None: Gaussian) can be fitted by ``engine`` (its ``engines()``)."""
    return family is None or family.supports(engine)


def _family_name(family) -> str:
    return f"family {family.name!r} (link {family.link.name!r})"


def choose_method(method: str, has_groups: bool, out_of_core: bool = False,
                  family=None) -> tuple[str, str]:
    """``(method, reason)``: ``"auto"`` -> marginal whenever the model has a grouping factor
    and its family has the collapsed (conjugate Gaussian) form, else full."""
    if not has_groups:
        raise BayesHLMError(no_groups_message())
    generalized = family is not None and family.name != "gaussian"
    if out_of_core and (method == "full" or not _supports(family, "marginal") or generalized):
        raise BayesHLMError(
            "method='full' is not available with engine='dask': the full model samples one "
            "effect per group with the rows in every gradient; the out-of-core engine uses the "
            "marginal model (same posterior), method='marginal' or 'auto'"
            + ("" if _supports(family, "marginal") and not generalized else
               f", which {_family_name(family)} does not have out of core"))
    if method == "marginal" and not _supports(family, "marginal"):
        raise BayesHLMError(f"method='marginal' integrates Gaussian group effects out; "
                            f"{_family_name(family)} has no such form: use method='full' or 'auto'")
    if method == "auto":
        if not _supports(family, "marginal"):
            return "full", f"method 'auto': full ({_family_name(family)} has no marginal form)"
        if generalized:  # measured: the quadrature engine's K^q node passes cost more
            return "full", (f"method 'auto': full (the quadrature-collapsed form of "
                            f"{_family_name(family)} runs with method='marginal'; slower than "
                            "the full model where measured, bench_glmm_collapsed.py)")
        return "marginal", "method 'auto': marginal (group effects integrated out, drawn exactly after)"
    return method, f"method {method!r} as asked"


def no_groups_message() -> str:
    """lme4's refusal of a formula without a ``( | )`` term, with what to use instead."""
    return ("no random-effect terms in the formula (like lme4: 'No random effects terms specified "
            "in formula'): bayes_hlm fits hierarchical models, which need at least one term "
            "such as (1 | group). Add one, or fit an ordinary linear model instead "
            "(bambi.Model(formula, data), statsmodels.formula.api.ols, or R's lm/brm)")


def choose_model_sampler(sampler: str, unavailable: Mapping[str, str | None]) -> EngineChoice:
    """Engine for a built PyMC model (full, or marginal without the compiled density);
    ``method`` is left empty (a PyMC model is either)."""
    if sampler == "jax" and unavailable.get("jax"):
        raise ImportError(f"sampler='jax' is not available: {unavailable['jax']}")
    if sampler != "auto":
        return EngineChoice("", sampler, f"sampler {sampler!r} as asked")
    if unavailable.get("jax"):
        return EngineChoice("", "pymc", f"sampler 'auto': pymc (jax skipped: {unavailable['jax']})",
                            automatic=True)
    return EngineChoice("", "jax", "sampler 'auto': jax (cached JAX/NumPyro NUTS)", automatic=True)


def choose_engine(design, priors, stats, *, method: str = "auto", sampler: str | None = None,
                  unavailable: Mapping[str, str | None] | None = None,
                  out_of_core: bool = False, family=None,
                  parametrised: bool = False) -> EngineChoice:
    """The method and NUTS engine of a fit (rules in the module docstring). Pure.

    Parameters
    ----------
    design : Design
        The design that will be sampled (only its grouping structure is read).
    priors : PriorSet
        Priors of that design (the compiled density covers some families only).
    stats : sufficient statistics or None
        Of ``design`` (``compute_stats``, or the Dask passes); needed to rule on
        ``"numba"`` for the marginal model, unused for ``method="full"``.
    method, sampler : str
        As given to :func:`bayes_hlm.fit` (``sampler=None`` allowed).
    unavailable : mapping, optional
        ``{engine: why}`` for engines that cannot run (:func:`engine_status`, plus any that
        failed at run time); ``None`` entries mean available.
    out_of_core : bool
        The statistics come from Dask: the full model is not available.
    family : Family, optional
        The response family (None: Gaussian); only engines in ``family.engines()`` are used.
    parametrised : bool
        The user set ``centered=`` for some factor: ``"auto"`` keeps a generalized model on
        the full model (the only one with a parametrisation to set), as before the
        sufficient-statistics form existed.

    Returns
    -------
    EngineChoice
    """
    if sampler in ("numba", "jax") and not _supports(family, sampler):
        raise BayesHLMError(f"sampler={sampler!r} does not fit {_family_name(family)}; "
                            "use sampler='auto' or 'pymc'")
    unavailable = dict(unavailable or {})
    gibbs = _gibbs_choice(design, priors, method, sampler, family, out_of_core, parametrised)
    if gibbs is not None:
        return gibbs
    if family is not None and family.name != "gaussian" and _supports(family, "marginal") \
            and method == "marginal" and design.groups and not out_of_core:
        return _glmm_collapsed_choice(design, priors, sampler, unavailable, family)
    if method == "auto" and not out_of_core and sampler in (None, "auto", "numba") \
            and not parametrised \
            and family is not None and family.name != "gaussian" and design.groups \
            and _supports(family, "marginal") and not unavailable.get("numba"):
        from .glmm_sufficient import unsupported_reason as sufficient_unsupported

        if sufficient_unsupported(design, priors, family) is None:
            return EngineChoice("marginal", "numba", "method 'auto': marginal (Poisson random "
                                "intercept: integrated out through per-group sufficient "
                                "statistics, nutpie NUTS on the rest, exact effect draws; "
                                "faster than the full model, bench_glmm.py)", True)
    for engine in ("numba", "jax"):
        if not _supports(family, engine) and not unavailable.get(engine):
            unavailable[engine] = f"{_family_name(family)} is not supported by it"
    if getattr(design, "weights", None) is not None and not unavailable.get("numba"):
        # weights= multiply the rows' log likelihood in the PyMC full model only
        unavailable["numba"] = "weights= are applied by the PyMC model only"
    method, why_method = choose_method(method, bool(design.groups), out_of_core, family)
    given = sampler
    glmm = family is not None and family.name != "gaussian" and _supports(family, "numba")
    if sampler is None:
        sampler = "auto" if method == "marginal" or glmm else "pymc"
        why_method += f"; sampler None -> {sampler!r} for the {method} model"
    if method == "full":
        if glmm and sampler in ("auto", "numba"):
            from .glmm_density import unsupported_reason as glmm_unsupported

            why_not = unavailable.get("numba") or glmm_unsupported(design, priors, family)
            if why_not is None:
                return EngineChoice("full", "numba", f"{why_method}; sampler {sampler!r}: numba "
                                    "(compiled GLMM density, nutpie)", sampler == "auto")
            if sampler == "numba":
                raise BayesHLMError(f"sampler='numba' does not cover this model: {why_not}; "
                                    "use sampler='auto' (JAX or PyMC engines)")
            why_method += f"; numba skipped ({why_not})"
            if given is None:  # as before this engine existed: PyMC's NUTS
                sampler = "pymc"
        if sampler == "numba":
            raise BayesHLMError("sampler='numba' samples the marginal model only; use "
                                "method='marginal' (or 'auto') or another sampler")
        c = choose_model_sampler(sampler, unavailable)
        why = why_method if given is None else f"{why_method}; {c.reason}"
        return EngineChoice("full", c.sampler, why, c.automatic)
    if sampler in ("auto", "numba"):
        from .numba_density import unsupported_reason

        if stats is None:
            why_not = "no sufficient statistics given"
        else:
            why_not = unavailable.get("numba") or unsupported_reason(design, priors, stats)
        if why_not is None:
            return EngineChoice("marginal", "numba", f"{why_method}; sampler {sampler!r}: numba "
                                "(compiled collapsed density covers the model)", sampler == "auto")
        if sampler == "numba":
            raise BayesHLMError(f"sampler='numba' does not cover this model: {why_not}; "
                                "use sampler='auto' (JAX or PyMC engines)")
        c = choose_model_sampler("auto", unavailable)
        return EngineChoice("marginal", c.sampler,
                            f"{why_method}; numba skipped ({why_not}); {c.reason}", True)
    c = choose_model_sampler(sampler, unavailable)
    return EngineChoice("marginal", c.sampler, f"{why_method}; {c.reason}", c.automatic)


def _gibbs_choice(design, priors, method, sampler, family, out_of_core,
                  parametrised) -> EngineChoice | None:
    """The Metropolis-within-Gibbs engine where it applies (module docstring), an error for
    an explicit ``sampler="gibbs"`` it cannot run, else None."""
    explicit = sampler == "gibbs"
    generalized = family is not None and family.name != "gaussian"
    if not explicit and (method != "auto" or sampler not in (None, "auto") or out_of_core
                         or parametrised or not generalized or not design.groups):
        return None
    if explicit and (method == "marginal" or out_of_core):
        raise BayesHLMError("sampler='gibbs' samples the full model (every group effect); use "
                            "method='full' or 'auto' (in memory)")
    from .glmm_gibbs import AUTO_MIN_ROWS, unsupported_reason

    why = unsupported_reason(design, priors, family) if generalized else \
        "the Gaussian family (its collapsed engines are exact and faster)"
    if why is None and not explicit and design.n < AUTO_MIN_ROWS:
        why = f"{design.n} rows (< {AUTO_MIN_ROWS}: NUTS is as fast)"
    if why is None and not explicit:
        from .parametrization import choose_centering

        factor = design.groups[0].factor
        if not choose_centering(design, family, nested=True).get(factor, False):
            why = f"factor {factor!r} is not centred (its groups carry little information)"
    if why is None:
        return EngineChoice("full", "gibbs", f"method {method!r}: full, sampler {sampler!r}: "
                            "gibbs (one centred factor: Metropolis-within-Gibbs, one row pass "
                            "per sweep)", not explicit)
    if explicit:
        raise BayesHLMError(f"sampler='gibbs' does not cover this model: {why}; use "
                            "sampler='auto' (NUTS on the full model)")
    return None


def _glmm_collapsed_choice(design, priors, sampler, unavailable, family) -> EngineChoice:
    """``method="marginal"`` for a generalized model: the quadrature-collapsed engine
    (nutpie on :mod:`.glmm_collapsed`), or a clear error where it does not cover the model."""
    from .glmm_collapsed import unsupported_reason

    why = unavailable.get("numba") or unsupported_reason(design, priors, family)
    if why is None and sampler not in (None, "auto", "numba"):
        why = f"sampler {sampler!r} (the quadrature-collapsed density runs on nutpie: 'numba')"
    if why is None:
        return EngineChoice("marginal", "numba", "method 'marginal' as asked (group effects "
                            "integrated out by adaptive Gauss-Hermite quadrature, nutpie NUTS, "
                            "exact effect draws)", sampler in (None, "auto"))
    raise BayesHLMError(f"method='marginal' for {_family_name(family)}: {why}; "
                        "use method='full' or 'auto'")


def run_with_fallback(choose: Callable[[dict], EngineChoice], run: Callable[[EngineChoice], T],
                      unavailable: Mapping[str, str | None]) -> tuple[EngineChoice, T]:
    """Run the chosen engine; when ``"jax"``, chosen automatically, fails at run time (an op
    without a JAX implementation), choose again with it marked unavailable.

    ``choose(unavailable) -> EngineChoice`` is :func:`choose_engine` with the model bound, so
    the fallback and its reason come from the one chooser.
    """
    unavailable = dict(unavailable)
    while True:
        choice = choose(unavailable)
        try:
            return choice, run(choice)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # e.g. a batched Cholesky gradient PyTensor cannot lower to JAX
            if not (choice.automatic and choice.sampler == "jax"):
                raise
            warnings.warn(f"JAX NUTS unavailable for this model ({type(exc).__name__}: {exc}); "
                          "using PyMC's NUTS", RuntimeWarning, stacklevel=3)
            unavailable["jax"] = f"failed on this model ({type(exc).__name__}: {exc})"
