"""The full (non-marginalised) PyMC model: group effects are sampled by NUTS."""

from __future__ import annotations

import pymc as pm
import pytensor.tensor as pt

from ..families import Family, default_family
from ..spec.design import Design
from ..spec.priors import PriorSet
from ..spec import variable_names as naming
from .group_effects import sampled_effects
from .hyperparameters import add_hyperparameters, coords, factor_blocks


def record_effects(design: Design, effects: dict[int, pt.TensorVariable], factors: list[str]) -> None:
    """``r__<factor>`` deterministics: the factor's terms side by side, (levels, q)."""
    blocks = factor_blocks(design)
    for factor in factors:
        parts = [effects[k] for k in blocks[factor]]
        r = pt.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
        pm.Deterministic(naming.effect_var(factor), r,
                         dims=(naming.level_dim(factor), naming.term_dim(factor)))


def build_full_model(design: Design, ps: PriorSet, centered: dict[str, bool] | None = None,
                     family: Family | None = None) -> pm.Model:
    """PyMC model with the group effects as parameters (Bambi's model, plus correlations).

    Parameters
    ----------
    design, ps
        Numeric design and priors.
    centered : dict, optional
        Factor name -> centred (hierarchically, see :mod:`.group_effects`)
        instead of non-centred ``b = L z`` group effects (default non-centred).
    family : Family, optional
        Response family (default Gaussian, identity link): builds the likelihood of
        ``y`` from the linear predictor and creates the family's own parameters.
    """
    centered = centered or {}
    family = family or default_family()
    with pm.Model(coords=coords(design)) as model:
        h = add_hyperparameters(design, ps, family)
        effects = sampled_effects(design, list(range(len(design.groups))), h.chols, centered, h.beta)
        mu = pt.dot(design.X, h.beta)
        for k, g in enumerate(design.groups):
            mu = mu + (g.Z * effects[k][g.codes]).sum(axis=1)
        record_effects(design, effects, list(factor_blocks(design)))
        if design.offset is not None:  # coefficient fixed at 1
            mu = mu + design.offset
        params = dict(h.family)
        if design.trials is not None:  # binomial: successes of a known number of trials
            params["trials"] = design.trials
        y = family.likelihood("y", mu, params, design.y)
        weights = getattr(design, "weights", None)
        if weights is not None:  # frequency weights: row i's log likelihood counted w_i times
            pm.Potential("y_weights", pt.sum((weights - 1.0) * pm.logp(y, design.y)))
    return model
