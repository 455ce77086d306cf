"""The part of the PyMC model both backends share: priors and hyperparameters.

The full and the marginalised backend call :func:`add_hyperparameters` inside
their ``pm.Model`` so they sample exactly the same prior; they differ only in how
the group effects enter the likelihood.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from ..errors import BayesHLMError
from ..families import Family, default_family
from ..spec.design import Design
from ..spec.prior_registry import get_prior_dist
from ..spec.priors import PriorSet, corr_key, intercept_shift, sd_key
from ..spec import variable_names as naming


@dataclass
class Hyper:
    """Handles to the model's hyperparameters (pytensor variables)."""

    beta: pt.TensorVariable            # fixed effects on the original (uncentred) scale, (p,)
    chols: list[pt.TensorVariable]     # per GroupTerm: absolute covariance Cholesky factor (q, q)
    family: dict[str, pt.TensorVariable] = field(default_factory=dict)  # the family's parameters

    @property
    def sigma(self) -> pt.TensorVariable:
        """Residual SD (Gaussian family)."""
        return self.family[naming.SIGMA]


def factor_blocks(design: Design) -> dict[str, list[int]]:
    """GroupTerm indices per factor, in formula order."""
    out: dict[str, list[int]] = {}
    for k, g in enumerate(design.groups):
        out.setdefault(g.factor, []).append(k)
    return out


def coords(design: Design) -> dict[str, list]:
    """PyMC/ArviZ coordinates for every dim in :mod:`naming`."""
    c: dict[str, list] = {naming.FIXED_DIM: list(design.fixed_names)}
    for factor, ks in factor_blocks(design).items():
        terms = [t for k in ks for t in design.groups[k].terms]
        c[naming.term_dim(factor)] = terms
        c[naming.term_dim_b(factor)] = terms
        c[naming.level_dim(factor)] = [str(v) for v in design.groups[ks[0]].levels]
    return c


def _dist(prior, name: str, **kw):
    return get_prior_dist(prior.dist, name).pymc()(name, **prior.params, **kw)


def _fixed(design: Design, ps: PriorSet) -> pt.TensorVariable:
    priors = [ps.priors[n] for n in design.fixed_names]
    if all(p.dist == "Normal" and set(p.params) == {"mu", "sigma"} for p in priors):
        mu = np.array([p.params["mu"] for p in priors])
        sd = np.array([p.params["sigma"] for p in priors])
        raw = pm.Normal("_fixed_c", mu=mu, sigma=sd, dims=naming.FIXED_DIM)
    else:
        raw = pt.stack([_dist(p, f"_fixed_c__{n}") for n, p in zip(design.fixed_names, priors)])
    if ps.centered:
        # Bambi samples the intercept of centred predictors; undo the centring
        i = design.fixed_names.index("Intercept")
        raw = pt.set_subtensor(raw[i], raw[i] - intercept_shift(raw, ps.x_mean, i))
    return pm.Deterministic(naming.FIXED, raw, dims=naming.FIXED_DIM)


def _sd_dist(priors, name: str, q: int):
    dists = {p.dist for p in priors}
    if len(dists) != 1:
        raise BayesHLMError(
            f"the SD priors of the correlated term {name!r} must share one distribution "
            f"family (got {sorted(dists)}); give them the same family with different parameters"
        )
    keys = priors[0].params.keys()
    params = {k: np.array([p.params[k] for p in priors]) for k in keys}
    return get_prior_dist(priors[0].dist, name).pymc().dist(**params, shape=q)


def _chol_of_term(k: int, design: Design, ps: PriorSet) -> tuple[pt.TensorVariable, pt.TensorVariable]:
    """Cholesky factor and SD vector of GroupTerm ``k``."""
    g = design.groups[k]
    priors = [ps.priors[sd_key(t, g.factor)] for t in g.terms]
    if g.correlated:
        eta = ps.priors[corr_key(g.factor)].params.get("eta", 1.0)
        chol, _, sds = pm.LKJCholeskyCov(
            f"_chol{k}__{g.factor}", n=g.q, eta=eta, sd_dist=_sd_dist(priors, g.name, g.q),
            compute_corr=True, store_in_trace=False,
        )
        return chol, sds
    sds = pt.stack([_dist(p, f"_sd{k}__{sd_key(t, g.factor)}") for t, p in zip(g.terms, priors)])
    return pt.diag(sds), sds


def add_hyperparameters(design: Design, ps: PriorSet, family: Family | None = None) -> Hyper:
    """Create fixed effects, the family's parameters (Gaussian: residual SD) and group-level
    covariances in the current model.

    Also records the factor-level deterministics ``sd__<factor>`` and
    ``corr__<factor>`` (for factors with a correlated term).
    """
    beta = _fixed(design, ps)
    fam = {name: _dist(ps.priors[name], name) for name in (family or default_family()).param_names}
    chols: list = [None] * len(design.groups)
    for factor, ks in factor_blocks(design).items():
        sds, blocks = [], []
        for k in ks:
            chols[k], s = _chol_of_term(k, design, ps)
            sds.append(s)
            blocks.append(chols[k])
        pm.Deterministic(naming.sd_var(factor), pt.concatenate(sds), dims=naming.term_dim(factor))
        if any(design.groups[k].correlated for k in ks):
            L = pt.linalg.block_diag(*blocks) if len(blocks) > 1 else blocks[0]
            cov = L @ L.T
            d = pt.sqrt(pt.diag(cov))
            corr = cov / pt.outer(d, d)
            pm.Deterministic(naming.corr_var(factor), corr,
                             dims=(naming.term_dim(factor), naming.term_dim_b(factor)))
    return Hyper(beta=beta, chols=chols, family=fam)
