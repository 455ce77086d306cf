"""θ ↔ Λ: the layout of the relative covariance factor's parameters (lme4's ``Lind`` / ``Lambdat``).

One implementation shared by the REML criterion (:mod:`bayes_hlm.reml.criterion`) and glmer's
penalised IRLS (:mod:`bayes_hlm.glmer.resystem`), as lme4 shares it between lmer and glmer.
The terms of each grouping factor are merged (:func:`~bayes_hlm.statistics.factor_blocks`);
per term, in formula order, θ holds the lower triangle of its Λ block column by column
(correlated terms ``(x | g)``: ``q(q+1)/2`` elements; uncorrelated or scalar terms: the
diagonal only). Diagonal elements have lower bound 0 and start at 1 (Λ = I).

The spherical effects ``u`` are laid out per factor (formula order), level-major:
``u[offset + g q + a]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .compute import block_columns
from .plan import factor_blocks

__all__ = ["FactorInfo", "ThetaMap", "make_theta_map"]


@dataclass(frozen=True)
class FactorInfo:
    """The merged terms of one grouping factor (columns concatenated in formula order)."""

    name: str
    term_index: tuple[int, ...]   # indices into design.groups
    terms: tuple[str, ...]        # column names (concatenated)
    term_slices: tuple[slice, ...]
    n_levels: int
    levels: object
    codes: np.ndarray
    Z: np.ndarray                 # (N, q)
    # Λ entries: Λ[rows[i], cols[i]] = θ[tidx[i]]
    rows: np.ndarray
    cols: np.ndarray
    tidx: np.ndarray
    correlated: tuple[bool, ...] = ()   # per term: full lower triangle (q > 1 and correlated)
    offset: int = 0                     # first index of this factor in u

    @property
    def q(self) -> int:
        return len(self.terms)

    @property
    def size(self) -> int:
        return self.q * self.n_levels


@dataclass(frozen=True)
class ThetaMap:
    """Layout of θ: per term in formula order, lower-triangular Λ elements column-major.

    Correlated terms (``(x|g)``) contribute ``q(q+1)/2`` elements, uncorrelated (or
    scalar) terms their diagonal only. Diagonal elements have lower bound 0.
    """

    factors: tuple[FactorInfo, ...]
    n_theta: int
    lower: np.ndarray
    names: tuple[str, ...]
    theta0: np.ndarray

    @property
    def n_u(self) -> int:
        """Number of spherical effects ``u`` (all factors' levels × columns)."""
        return sum(f.size for f in self.factors)

    def lambdas(self, theta: np.ndarray) -> list[np.ndarray]:
        theta = np.asarray(theta)
        out = []
        for f in self.factors:
            L = np.zeros((f.q, f.q))
            L[f.rows, f.cols] = theta[f.tidx]
            out.append(L)
        return out

    def factor(self, name: str) -> FactorInfo:
        for f in self.factors:
            if f.name == name:
                return f
        raise KeyError(name)


def make_theta_map(design) -> ThetaMap:
    """θ layout of ``design`` (a :class:`~bayes_hlm.spec.design.Design`): its terms merged per
    factor (:func:`~bayes_hlm.statistics.factor_blocks`)."""
    factors = []
    t = off_u = 0
    lower, names, theta0 = [], [], []
    for blk in factor_blocks(design):
        fname, idx = blk.factor, blk.term_index
        gs = [design.groups[k] for k in idx]
        g0 = gs[0]
        terms, slices, corrs, rows, cols, tidx = [], [], [], [], [], []
        off = 0
        for g in gs:
            q = g.q
            slices.append(slice(off, off + q))
            terms.extend(g.terms)
            corr = bool(g.correlated and q > 1)
            corrs.append(corr)
            for j in range(q):          # column-major lower triangle (lme4 order)
                for i in range(j, q):
                    if i != j and not corr:
                        continue
                    rows.append(off + i)
                    cols.append(off + j)
                    tidx.append(t)
                    lower.append(0.0 if i == j else -np.inf)
                    theta0.append(1.0 if i == j else 0.0)
                    names.append(f"{fname}.{g.terms[i]}" if i == j
                                 else f"{fname}.{g.terms[i]}.{g.terms[j]}")
                    t += 1
            off += q
        codes, Z = block_columns(design, blk)
        f = FactorInfo(
            name=fname, term_index=tuple(idx), terms=tuple(terms), term_slices=tuple(slices),
            n_levels=g0.n_levels, levels=g0.levels, codes=codes,
            Z=Z, rows=np.array(rows, dtype=int), cols=np.array(cols, dtype=int),
            tidx=np.array(tidx, dtype=int), correlated=tuple(corrs), offset=off_u)
        factors.append(f)
        off_u += f.size
    return ThetaMap(factors=tuple(factors), n_theta=t, lower=np.array(lower),
                    names=tuple(names), theta0=np.array(theta0))
