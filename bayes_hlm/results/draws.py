"""Access to posterior draws as flat arrays, and linear predictors computed in chunks.

The marginal backend may not store group-effect draws (100k groups x 4000
draws do not fit comfortably in memory); it registers a generator instead,
and everything here asks for effects through :class:`DrawSource`.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import xarray as xr

from ..spec import variable_names as naming
from ..spec.design import Design
from .arviz_layout import backend_values

EffectGenerator = Callable[[str, np.ndarray], np.ndarray]

#: a quantity computed per draw over every row or group after sampling (Bayesian R²) uses
#: at most this many elements of work by default (#18: post-fit summaries <= 20% of the fit
#: at any size); the draws are evenly spaced, never fewer than POSTFIT_MIN_DRAWS
POSTFIT_WORK = 1e8
POSTFIT_MIN_DRAWS = 400
POSTFIT_MAX_DRAWS = 2000


class DrawSource:
    """Flat (S, ...) views of the posterior, with group effects stored or regenerated."""

    def __init__(self, posterior: xr.Dataset, design: Design, generator: EffectGenerator | None = None):
        self.posterior = posterior
        self.design = design
        self.generator = generator
        self.n_chains = posterior.sizes["chain"]
        self.n_draws = posterior.sizes["draw"]

    @property
    def size(self) -> int:
        return self.n_chains * self.n_draws

    def flat(self, var: str) -> np.ndarray:
        a = self.chained(var)
        return a.reshape((self.size,) + a.shape[2:])

    def chained(self, var: str) -> np.ndarray:
        """(chain, draw, ...) values in the backend layout (correlations as matrices)."""
        return backend_values(self.posterior, var, self.design)

    def has(self, var: str) -> bool:
        return var in self.posterior

    def effects(self, factor: str, idx: np.ndarray | None = None, groups=None) -> np.ndarray:
        """Group effects of ``factor`` for flat draw indices ``idx`` and level indices
        ``groups`` (default all): (len(idx), len(groups), q)."""
        var = naming.effect_var(factor)
        if self.has(var):  # one selection: no copy of every draw of every level for a subset
            b = self.flat(var)  # (the fit-time check's 1,000 of 100k levels: 2 s -> 0.1 s)
            if groups is None:
                return b.copy() if idx is None else b[np.asarray(idx)]
            if idx is None:
                return b[:, np.asarray(groups)]
            return b[np.ix_(np.asarray(idx), np.asarray(groups))]
        idx = np.arange(self.size) if idx is None else np.asarray(idx)
        if self.generator is None:
            raise RuntimeError(f"no draws of the group effects of {factor!r} are available")
        if groups is None:
            return self.generator(factor, idx)
        try:
            return self.generator(factor, idx, groups)
        except ValueError:  # a nested inner factor: draw its outer levels whole, then select
            return self.generator(factor, idx)[:, np.asarray(groups)]

    def covariance(self, factor: str) -> np.ndarray:
        """(S, q, q) covariance of ``factor``'s effects from its SDs and correlations."""
        sd = self.flat(naming.sd_var(factor))
        cv = naming.corr_var(factor)
        corr = self.flat(cv) if self.has(cv) else np.broadcast_to(np.eye(sd.shape[1]), sd.shape + (sd.shape[1],))
        return corr * sd[:, :, None] * sd[:, None, :]

    def postfit_draws(self, max_draws: int | None | str, per_draw: float) -> np.ndarray:
        """Evenly spaced flat draw indices for a per-draw quantity costing ``per_draw`` elements
        of work: ``max_draws="auto"`` takes :data:`POSTFIT_MAX_DRAWS`, fewer where they would
        exceed :data:`POSTFIT_WORK` (never under :data:`POSTFIT_MIN_DRAWS`); an int or None
        (all draws) is used as given."""
        if isinstance(max_draws, str):
            if max_draws != "auto":
                raise ValueError(f"max_draws must be an int, None or 'auto', not {max_draws!r}")
            cap = int(POSTFIT_WORK // max(float(per_draw), 1.0))
            max_draws = min(POSTFIT_MAX_DRAWS, max(POSTFIT_MIN_DRAWS, cap))
        return self.thinned(max_draws)

    def thinned(self, max_draws: int | None) -> np.ndarray:
        """Evenly spaced flat draw indices, at most ``max_draws`` of them."""
        if max_draws is None or self.size <= max_draws:
            return np.arange(self.size)
        return np.unique(np.linspace(0, self.size - 1, max_draws).astype(int))

    def linpred_chunks(self, idx: np.ndarray, X: np.ndarray, groups: list[tuple[str, np.ndarray, np.ndarray]],
                       chunk: int | None = None, offset: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """Yield (s, n) linear predictors ``offset + X beta + sum Z b[codes]`` for draws ``idx``.

        ``groups``: (factor, codes, Z) with codes -1 for rows whose group effect is 0;
        ``offset``: the model's ``offset(...)`` terms on these rows (coefficient 1), if any.
        """
        n = X.shape[0]
        chunk = chunk or max(1, int(2e7 // max(n, 1)))
        beta = self.flat(naming.FIXED)
        for s in range(0, len(idx), chunk):
            sel = idx[s : s + chunk]
            mu = beta[sel] @ X.T
            if offset is not None:
                mu = mu + offset
            for factor, codes, Z in groups:
                b = self.effects(factor, sel)  # (s, L, q)
                known = codes >= 0
                contrib = np.einsum("snq,nq->sn", b[:, codes[known], :], Z[known])
                mu[:, known] += contrib
            yield mu


def factor_design(design: Design) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(factor, codes, Z) per factor with its terms concatenated in posterior order."""
    out: dict[str, list] = {}
    for g in design.groups:
        entry = out.setdefault(g.factor, [g.codes, []])
        entry[1].append(g.Z)
    return [(f, codes, np.hstack(zs)) for f, (codes, zs) in out.items()]
