"""Stage 1 of a fit: the problem to sample (spec + priors + scaling + statistics).

Like lme4's ``lFormula``: usable on its own. A :class:`Problem` comes from rows in memory
(:func:`build_problem`) or from sufficient statistics computed elsewhere, e.g. on Dask
(:func:`bayes_hlm.fitting.fit_dask` builds one); the later stages do not care which.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from ..backends.engine import no_groups_message
from ..errors import BayesHLMError, FormulaError
from ..families import Family
from ..results.bayes_result import BayesResult
from ..spec.build import ModelSpec, build_spec
from ..spec.control import Control
from ..spec.design import Design
from ..spec.priors import PriorSet, resolve_priors
from ..spec.scaling import Scaling, ScalingError, choose_scaling, scale_design, scale_priors


@dataclass
class Problem:
    """What is sampled, and how the result is reported.

    Attributes
    ----------
    spec, priors
        The user's model and priors (the result is on this scale).
    design, fit_priors
        What the sampler sees: a rescaled copy when ``scaling`` is set, else the same objects.
    scaling : Scaling or None
    stats : sufficient statistics of ``design``, or None
        Needed by the marginal model (``None`` for ``method="full"``).
    out_of_core : bool
        Built from statistics only (no rows): the full model is not available.
    observed : array or None
        The response attached to the result as ``observed_data`` (None out of core).
    result_type, result_args
        ``result_type(spec, priors, tree, info, generator, *result_args)`` builds the result.
    source : dict
        Facts about the data source recorded in ``FitInfo.extra`` (e.g. Dask timings).
    """

    spec: ModelSpec
    priors: PriorSet
    design: Design
    fit_priors: PriorSet
    scaling: Scaling | None = None
    stats: object | None = None
    out_of_core: bool = False
    observed: object | None = None
    result_type: Callable[..., BayesResult] = BayesResult
    result_args: tuple = ()
    source: dict = field(default_factory=dict)


def refuse_without_groups(design: Design) -> None:
    """lme4 refuses a formula without ``( | )`` terms before any work; so do we."""
    if not design.groups:
        raise BayesHLMError(no_groups_message())


def warn_separation(design: Design, family: Family | None, stacklevel: int = 4) -> None:
    """Before sampling: a :class:`SeparationWarning` naming the fixed effects that perfectly
    predict a binary/binomial outcome (their posterior would be the prior's)."""
    import warnings

    from ..errors import SeparationWarning
    from ..families.checks import SEPARATION_FAMILIES, find_separation

    if family is None or family.name not in SEPARATION_FAMILIES:
        return
    sep = find_separation(design.X, design.y, design.fixed_names, design.trials)
    if sep is not None:
        warnings.warn(sep.message(), SeparationWarning, stacklevel=stacklevel)


def build_problem(formula: str, data: pd.DataFrame, *, priors: dict | None = None,
                  na_action: str = "omit", control: Control | None = None,
                  rescale: bool | str = "auto", method: str = "auto",
                  family: Family | None = None, weights: str | None = None) -> Problem:
    """Spec, priors, scaling and (unless ``method="full"``) the sufficient statistics.

    Arguments as in :func:`bayes_hlm.fit` (validated there).
    """
    spec = build_spec(formula, data, na_action=na_action, control=control, family=family,
                      weights=weights)
    refuse_without_groups(spec.design)
    if spec.design.p == 0:  # the samplers' draw layouts assume >= 1 coefficient
        raise FormulaError(
            f"formula {formula!r} has no fixed effects; lme4 and bayes_hlm.reml.reml() fit such "
            "a model, but the Bayesian samplers need at least one fixed effect: keep the "
            "intercept (drop '0 +'/'- 1') or use reml()")
    warn_separation(spec.design, spec.family)
    ps = resolve_priors(spec.design, priors, spec.family)
    # rescaling divides y by its SD: only for the Gaussian family (counts stay counts)
    gaussian = spec.family.name == "gaussian"
    if not gaussian and rescale is True:
        raise BayesHLMError(f"rescale=True divides the response by its SD, which only a Gaussian "
                            f"model allows, not the {spec.family.name} family; use rescale=False")
    design, ps_fit = spec.design, ps
    scaling = choose_scaling(spec.design, rescale) if gaussian else None
    if scaling is not None:
        try:
            ps_fit = scale_priors(ps, spec.design, scaling)
            design = scale_design(spec.design, scaling)
        except ScalingError as exc:  # a user prior of a family we cannot transform
            if rescale is True:
                raise BayesHLMError(f"rescale=True: {exc}") from None
            scaling, design, ps_fit = None, spec.design, ps
    stats = None
    if method != "full" and gaussian:  # else: the full model (or the quadrature-collapsed one, no statistics)
        from ..backends.sufficient_stats import compute_stats

        stats = compute_stats(design)
    return Problem(spec=spec, priors=ps, design=design, fit_priors=ps_fit, scaling=scaling,
                   stats=stats, observed=spec.design.y)
