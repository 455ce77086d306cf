"""The full (non-marginalised) PyMC model: group effects are sampled by NUTS."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from ..spec.design import Design
from ..spec.priors import PriorSet
from . import naming
from .hyperparameters import add_hyperparameters, coords, factor_blocks


def group_effect(k: int, design: Design, chol: pt.TensorVariable, centered: bool):
    """Effects of GroupTerm ``k``, shape (levels, q): centred or non-centred."""
    g = design.groups[k]
    shape = (g.n_levels, g.q)
    if centered:
        if g.q == 1:
            return pm.Normal(f"_b{k}__{g.factor}", 0.0, chol[0, 0], shape=shape)
        return pm.MvNormal(f"_b{k}__{g.factor}", mu=np.zeros(g.q), chol=chol, shape=shape)
    z = pm.Normal(f"_z{k}__{g.factor}", 0.0, 1.0, shape=shape)
    return z @ chol.T


def build_full_model(design: Design, ps: PriorSet, centered: dict[str, bool] | None = None) -> pm.Model:
    """PyMC model with the group effects as parameters (Bambi's model, plus correlations).

    Parameters
    ----------
    design, ps
        Numeric design and priors.
    centered : dict, optional
        Factor name -> use the centred parametrisation ``b ~ N(0, Sigma)``
        instead of the non-centred ``b = L z`` (default non-centred).
    """
    centered = centered or {}
    with pm.Model(coords=coords(design)) as model:
        h = add_hyperparameters(design, ps)
        mu = pt.dot(design.X, h.beta)
        for factor, ks in factor_blocks(design).items():
            parts = []
            for k in ks:
                g = design.groups[k]
                b = group_effect(k, design, h.chols[k], centered.get(factor, False))
                mu = mu + (g.Z * b[g.codes]).sum(axis=1)
                parts.append(b)
            r = pt.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
            pm.Deterministic(naming.effect_var(factor), r,
                             dims=(naming.level_dim(factor), naming.term_dim(factor)))
        pm.Normal("y", mu=mu, sigma=h.sigma, observed=design.y)
    return model
