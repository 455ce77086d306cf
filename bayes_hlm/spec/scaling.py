"""Internal standardisation: sample on a well-scaled problem, report on the user's scale.

NUTS adapts a diagonal mass matrix during tuning, but with few tuning steps it
cannot bridge many orders of magnitude: with ``y ~ 1e6`` and ``x ~ 1e-6`` the
slope's posterior SD is ~1e12 while the others are ~1, and chains do not mix
(measured: R-hat 2.4 at 200 draws; with ``y ~ 1e-6, x ~ 1e6`` also 72
divergences). Rescaling fixes the geometry exactly, with no change to the model:

* ``y' = y / s_y``; ``X'_j = X_j / s_j``; ``Z'_kj = Z_kj / t_kj`` (no shifts, so
  models without an intercept stay the same model);
* then ``beta'_j = beta_j s_j / s_y``, ``sigma' = sigma / s_y``,
  ``sd'_kj = sd_kj t_kj / s_y``, ``b'_kj = b_kj t_kj / s_y``; correlations are
  unchanged (each column is scaled by a positive constant);
* each prior is transformed to the prior of the scaled parameter
  (:func:`scale_prior`), so the posterior is the same distribution, only
  rescaled. Bambi's data-scaled defaults are equivariant: the defaults of the
  scaled design *are* the transformed defaults.

All functions here are pure (no PyMC); :func:`unscale_posterior` maps draws back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import xarray as xr

from ..errors import ScalingError  # noqa: F401 - re-exported (the class lives in errors.py)
from . import variable_names as naming
from .design import Design
from .prior_registry import PRIOR_DISTS, ScalingError
from .priors import Prior, PriorSet, corr_key, sd_key

#: "auto" rescales when some parameter's natural scale is outside [1/AUTO_RATIO, AUTO_RATIO].
AUTO_RATIO = 100.0


@dataclass(frozen=True)
class Scaling:
    """Divisors of the response and of every model column.

    Attributes
    ----------
    y_scale : float
        ``y' = y / y_scale``.
    x_scale : ndarray, shape (p,)
        ``X'[:, j] = X[:, j] / x_scale[j]`` (1 for the intercept and constant columns).
    z_scale : tuple of ndarray
        Per GroupTerm, shape (q,): ``Z'_k[:, j] = Z_k[:, j] / z_scale[k][j]``.
    """

    y_scale: float
    x_scale: np.ndarray
    z_scale: tuple[np.ndarray, ...]

    @property
    def fixed_factor(self) -> np.ndarray:
        """``beta' = beta * fixed_factor``."""
        return self.x_scale / self.y_scale

    def term_factor(self, k: int) -> np.ndarray:
        """``sd'_k = sd_k * term_factor(k)`` and ``b'_k = b_k * term_factor(k)``."""
        return self.z_scale[k] / self.y_scale

    def factor_factor(self, design: Design, factor: str) -> np.ndarray:
        """Concatenated term factors of all GroupTerms of ``factor`` (formula order)."""
        return np.concatenate([self.term_factor(k) for k, g in enumerate(design.groups)
                               if g.factor == factor])

    def to_dict(self) -> dict:
        return {"y_scale": self.y_scale, "x_scale": self.x_scale.tolist(),
                "z_scale": [z.tolist() for z in self.z_scale]}


def _col_scale(col: np.ndarray) -> float:
    s = float(np.std(col))
    return s if s > 0 and np.isfinite(s) else 1.0


def compute_scaling(design: Design) -> Scaling:
    """Standard deviations (ddof=0) of ``y`` and of every non-constant column; 1 otherwise."""
    x = np.array([1.0 if name == "Intercept" else _col_scale(design.X[:, j])
                  for j, name in enumerate(design.fixed_names)], dtype=float)
    z = tuple(np.array([1.0 if t == "Intercept" else _col_scale(g.Z[:, j])
                        for j, t in enumerate(g.terms)], dtype=float) for g in design.groups)
    return Scaling(y_scale=_col_scale(design.working_y), x_scale=x, z_scale=z)


def natural_scales(design: Design) -> np.ndarray:
    """Prior-implied scale of every parameter: ``sd(y)``, ``sd(y)/sd(x_j)``, ``sd(y)/sd(z_kj)``."""
    sc = compute_scaling(design)
    vals = [sc.y_scale]
    vals += list(sc.y_scale / sc.x_scale)
    for z in sc.z_scale:
        vals += list(sc.y_scale / z)
    return np.asarray(vals, dtype=float)


def needs_scaling(design: Design, ratio: float = AUTO_RATIO) -> bool:
    """True when some natural parameter scale lies outside ``[1/ratio, ratio]``."""
    s = natural_scales(design)
    return bool(np.any(s > ratio) or np.any(s < 1.0 / ratio))


def choose_scaling(design: Design, mode: bool | str = "auto") -> Scaling | None:
    """``None`` (sample as is) or the :class:`Scaling` to use; ``mode`` is True/False/"auto"."""
    if mode is False or mode is None:
        return None
    if mode == "auto":
        return compute_scaling(design) if needs_scaling(design) else None
    if mode is True:
        return compute_scaling(design)
    raise ValueError(f"rescale must be True, False or 'auto', not {mode!r}")


def scale_design(design: Design, sc: Scaling) -> Design:
    """The design with ``y``, ``X`` and every ``Z`` divided by their scales."""
    groups = tuple(replace(g, Z=g.Z / sc.z_scale[k]) for k, g in enumerate(design.groups))
    info = dict(design.info, scaling=sc.to_dict())
    offset = None if design.offset is None else design.offset / sc.y_scale
    return replace(design, y=design.y / sc.y_scale, X=design.X / sc.x_scale, groups=groups,
                   info=info, offset=offset)


def scale_prior(prior: Prior, a) -> Prior:
    """Prior of ``a * theta`` when ``theta ~ prior`` (``a > 0``; scalar or per-element array).

    Each parameter's role (location, scale, rate, ...) is stated in
    :mod:`bayes_hlm.spec.prior_registry`.

    Raises
    ------
    ScalingError
        For a family (or parameter) whose transformation is not known.
    """
    dist = PRIOR_DISTS.get(prior.dist)
    if dist is None:
        raise ScalingError(f"cannot rescale a {prior.dist} prior; known: {sorted(PRIOR_DISTS)}")
    a = np.asarray(a, dtype=float)
    if np.any(a <= 0) or not np.all(np.isfinite(a)):
        raise ValueError(f"scale factor must be positive and finite, got {a}")
    return Prior(prior.dist, **dist.rescale(prior.params, a))


def scale_priors(ps: PriorSet, design: Design, sc: Scaling) -> PriorSet:
    """Priors of the scaled parameters (``design`` is the *original* design)."""
    priors = dict(ps.priors)
    ff = sc.fixed_factor
    for j, name in enumerate(design.fixed_names):
        priors[name] = scale_prior(ps.priors[name], ff[j])
    priors["sigma"] = scale_prior(ps.priors["sigma"], 1.0 / sc.y_scale)
    for k, g in enumerate(design.groups):
        tf = sc.term_factor(k)
        for j, t in enumerate(g.terms):
            key = sd_key(t, g.factor)
            priors[key] = scale_prior(ps.priors[key], tf[j])
        if corr_key(g.factor) in ps.priors:
            priors[corr_key(g.factor)] = ps.priors[corr_key(g.factor)]
    x_mean = np.asarray(ps.x_mean, dtype=float) / sc.x_scale
    return replace(ps, priors=priors, x_mean=x_mean)


def unscale_posterior(post: xr.Dataset, design: Design, sc: Scaling) -> xr.Dataset:
    """Draws of the scaled model -> draws on the user's scale (``design``: original).

    Maps ``fixed``, ``sigma``, ``sd__<factor>`` and ``r__<factor>``; correlations
    and anything else are unchanged.
    """

    out = post.copy()
    if naming.FIXED in out:
        out[naming.FIXED] = out[naming.FIXED] / xr.DataArray(sc.fixed_factor, dims=naming.FIXED_DIM)
    if naming.SIGMA in out:
        out[naming.SIGMA] = out[naming.SIGMA] * sc.y_scale
    for factor in dict.fromkeys(g.factor for g in design.groups):
        f = xr.DataArray(sc.factor_factor(design, factor), dims=naming.term_dim(factor))
        for var in (naming.sd_var(factor), naming.effect_var(factor)):
            if var in out:
                out[var] = out[var] / f
    return out


def unscale_effects(design: Design, sc: Scaling, factor: str, effects: np.ndarray) -> np.ndarray:
    """Group-effect draws ``(..., levels, q)`` of ``factor`` from the scaled to the user's scale."""
    return np.asarray(effects) / sc.factor_factor(design, factor)


def wrap_generator(generate, design: Design, sc: Scaling):
    """An effect generator (``(factor, idx, groups=None) -> (S, L, q)``) on the user's scale."""
    if generate is None:
        return None

    def unscaled(factor, idx, groups=None):
        return unscale_effects(design, sc, factor, generate(factor, idx, groups))

    return unscaled


__all__ = ["Scaling", "ScalingError", "compute_scaling", "natural_scales", "needs_scaling",
           "choose_scaling", "scale_design", "scale_prior", "scale_priors", "unscale_posterior",
           "unscale_effects", "wrap_generator", "AUTO_RATIO"]
