"""The full (non-marginalised) PyMC model: group effects are sampled by NUTS."""

from __future__ import annotations

import numpy as np
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


def start_values(design: Design, ps: PriorSet, family: Family, model: pm.Model) -> dict:
    """Initial values inside the linear predictor's domain (``eta > 0`` for a positive-mean
    family with the inverse or identity link): the intercept at ``g(mean(y))`` less the mean
    offset, other coefficients 0, group effects 0 and their SDs a tenth of that ``eta``.

    PyMC starts at ``eta = 0`` (``mu = 1/0`` with Gamma's inverse link) jittered by
    U(-1, 1), where such a model has no density; this start is valid for every row.
    """
    y = np.asarray(design.y, dtype=float)
    w = getattr(design, "weights", None)
    ybar = float(np.average(y, weights=w)) if len(y) else 1.0
    eta0 = float(family.link.link(max(ybar, 1e-3)))
    if design.offset is not None:
        eta0 -= float(np.average(design.offset, weights=w))
    out: dict = {}
    if "_fixed_c" in model.named_vars and design.has_intercept:
        beta = np.zeros(design.p)
        beta[design.fixed_names.index("Intercept")] = eta0
        out[model["_fixed_c"]] = beta
    elif design.has_intercept and "_fixed_c__Intercept" in model.named_vars:
        out[model["_fixed_c__Intercept"]] = np.asarray(eta0)
    sd0 = 0.1 * abs(eta0) if eta0 != 0 else 0.1
    for rv in model.free_RVs:
        name = rv.name
        if name.startswith("_sd"):
            out[rv] = np.full(tuple(rv.shape.eval()), sd0)
        elif name.startswith("_z") or name.startswith("_b"):
            out[rv] = np.zeros(tuple(rv.shape.eval()))
    return out


def build_full_model(design: Design, ps: PriorSet, centered: dict[str, bool] | None = None,
                     family: Family | None = None, nested_shift: bool = False) -> pm.Model:
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
    nested_shift : bool
        Centre also on a non-centred parent's effect and on level-2 predictors, in the
        coordinates of the compiled GLMM density (:mod:`.group_effects`); PyMC's own NUTS
        samples the default ones better (bernoulli ``(1 | c/g)``: 110 vs 17 divergences).
    """
    centered = centered or {}
    family = family or default_family()
    with pm.Model(coords=coords(design)) as model:
        h = add_hyperparameters(design, ps, family)
        effects = sampled_effects(design, list(range(len(design.groups))), h.chols, centered, h.beta,
                                  generalized=nested_shift)
        mu = pt.dot(design.X, h.beta)
        for k, g in enumerate(design.groups):
            mu = mu + (g.Z * effects[k][g.codes]).sum(axis=1)
        record_effects(design, effects, list(factor_blocks(design)))
        if design.offset is not None:  # coefficient fixed at 1
            mu = mu + design.offset
        params = dict(h.family)
        if design.trials is not None:  # binomial: successes of a known number of trials
            params["trials"] = design.trials
        if family.bounded_eta:
            for var, value in start_values(design, ps, family, model).items():
                model.set_initval(var, value)
        y = family.likelihood("y", mu, params, design.y)
        weights = getattr(design, "weights", None)
        if weights is not None:  # frequency weights: row i's log likelihood counted w_i times
            pm.Potential("y_weights", pt.sum((weights - 1.0) * pm.logp(y, design.y)))
    return model
