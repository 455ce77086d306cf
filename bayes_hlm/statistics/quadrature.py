"""Gauss–Hermite rules for the standard normal: the one implementation of the nodes and weights
that adaptive Gauss–Hermite quadrature (AGQ) uses, in the Bayesian collapsed GLMM engine
(:mod:`bayes_hlm.backends.glmm_collapsed`) and in glmer's ``nAGQ > 1`` criterion
(:mod:`bayes_hlm.glmer.pirls`).

Both integrate one group's q effects, ``∫ exp(h(v)) φ_q(v) dv``, with the tensor product of K
probabilists' nodes: after the adaptive change of variables ``v = v̂ + M t`` (M from the
Cholesky factor of the negative Hessian at the mode) the integrand is
``Σ_m ω_m exp(h(v̂ + M t_m) + |t_m|²/2)``, so the rules here return ``log ω_m + |t_m|²/2``.
The rule has ``K^q`` nodes, i.e. that many evaluations of a group's likelihood: cheap for
q ≤ 2 (25² = 625 at most), which is where both engines stop.
"""

from __future__ import annotations

import numpy as np

__all__ = ["gh_rule", "tensor_rule"]


def gh_rule(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Hermite nodes ``z`` and weights ``w`` for the standard normal (``Σ w = 1``),
    lme4's ``GHrule(n)``."""
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"the number of Gauss-Hermite nodes must be a whole number >= 1, not {n!r}")
    z, w = np.polynomial.hermite_e.hermegauss(int(n))
    return z, w / np.sqrt(2 * np.pi)


def tensor_rule(K: int, q: int, prune: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Tensor product of :func:`gh_rule` ``(K)`` in q dimensions: nodes ``t`` (K^q, q), first
    coordinate slowest, and ``log ω_m + |t_m|²/2`` (Σ ω = 1), the form the AGQ sum uses.

    ``prune``: drop the smallest-weight nodes (the corners of the tensor grid) whose weights
    sum to at most this much (pruned AGQ).
    """
    x, w = gh_rule(K)
    w = w / w.sum()
    grids = np.meshgrid(*([x] * q), indexing="ij")
    t = np.stack([a.ravel() for a in grids], axis=1)
    wq = np.prod(np.stack(np.meshgrid(*([w] * q), indexing="ij"), -1).reshape(-1, q), axis=1)
    if prune > 0.0:
        order = np.argsort(wq)
        drop = order[np.cumsum(wq[order]) <= prune]
        keep = np.setdiff1d(np.arange(len(wq)), drop)
        t, wq = t[keep], wq[keep]
    return np.ascontiguousarray(t), np.log(wq) + 0.5 * np.sum(t * t, axis=1)
