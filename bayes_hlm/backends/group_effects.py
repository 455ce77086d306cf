"""Sampled group effects, centred or non-centred, with hierarchical centring.

A centred factor is sampled as group *means* rather than deviations:
``m_g ~ N(shift_g, Sigma)`` with ``b_g = m_g - shift_g``, where ``shift_g`` is the
fixed effect of the same term (e.g. the intercept) plus, when the factor is
nested in another centred factor, that parent's effect. This is an exact
reparametrisation (unit Jacobian), but it removes the ridge between the
intercept and the mean of the group effects that makes plain centring mix
slowly when there are few groups (penicillin's 6 samples; insteval's
departments, with lecturers nested in them).

``generalized=True`` (the coordinates of the compiled GLMM density :mod:`.glmm_density`)
also centres on a *non-centred* parent's effect and puts a centred random intercept's
level-2 predictors into its shift (:func:`level2_shift`): grouseticks' broods, centred on
their locations' non-centred effects and on their year and altitude.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from ..spec.design import Design
from ..statistics import constant_within_levels, parent_map


def nesting_parent(design: Design, k: int, candidates: list[int]) -> tuple[int, np.ndarray] | None:
    """A term among ``candidates`` whose factor contains term ``k``'s factor: (index, level map)."""
    g = design.groups[k]
    best = None
    for j in candidates:
        h = design.groups[j]
        if h.factor == g.factor or h.n_levels >= g.n_levels:
            continue
        pmap = parent_map(g.codes, g.n_levels, h.codes)
        if pmap is not None and (best is None or h.n_levels > design.groups[best[0]].n_levels):
            best = (j, pmap)
    return best


def build_order(design: Design, terms: list[int]) -> list[int]:
    """Terms ordered so that coarser factors (potential parents) come first."""
    return sorted(terms, key=lambda k: (design.groups[k].n_levels, k))


def level2_shift(design: Design, k: int) -> tuple | None:
    """``(coordinate, columns, values)`` of GroupTerm ``k``'s level-2 predictors, or None.

    A centred random intercept is centred on the fixed columns constant within its levels
    too (an item's type, a brood's year: ``values`` (levels, columns) their per-level values),
    not only on the fixed intercept: otherwise each such coefficient trades off against the
    mean of its levels' effects along a ridge (verbagg, both factors centred on the intercept
    alone: R-hat 1.85, min ESS 6). Any shift is a unit-Jacobian change of variables; the
    posterior is the same.
    """
    g = design.groups[k]
    if "Intercept" not in g.terms or not design.p:
        return None
    X = np.asarray(design.X, float)
    cols = [j for j, n in enumerate(design.fixed_names) if n != "Intercept"]
    if not cols:
        return None
    cols = [c for c, const in zip(cols, constant_within_levels(X[:, cols], g.codes, g.n_levels))
            if const]
    if not cols:
        return None
    codes = np.asarray(g.codes)
    first = np.full(g.n_levels, -1)
    first[codes[::-1]] = np.arange(len(codes))[::-1]  # a row of each level
    vals = np.where(first[:, None] >= 0, X[np.maximum(first, 0)][:, cols], 0.0)
    return g.terms.index("Intercept"), np.asarray(cols, dtype=np.int64), vals


def _shift(design: Design, k: int, beta, parent) -> pt.TensorVariable | None:
    g = design.groups[k]
    cols = [design.fixed_names.index(t) if t in design.fixed_names else None for t in g.terms]
    parts = [beta[i] if i is not None else pt.constant(0.0) for i in cols]
    has_fixed = any(i is not None for i in cols)
    shift = pt.stack(parts)[None, :] if has_fixed else None
    if parent is not None:
        b_par, terms_par, pmap = parent
        match = [terms_par.index(t) if t in terms_par else None for t in g.terms]
        if any(m is not None for m in match):
            cols_par = pt.stack([b_par[:, m] if m is not None else pt.zeros(b_par.shape[0])
                                 for m in match], axis=1)
            add = cols_par[pmap]
            shift = add if shift is None else shift + add
    return shift


def sampled_effect(k: int, design: Design, chol: pt.TensorVariable, centered: bool, beta=None,
                   parent=None, level2: bool = False) -> pt.TensorVariable:
    """Effects of GroupTerm ``k`` as a (levels, q) tensor of deviations ``b``.

    ``parent`` is ``(b_parent, parent_terms, level_map)`` for hierarchical
    centring on a nested-in factor; ``level2``: centre on the level-2 predictors too
    (:func:`level2_shift`).
    """
    g = design.groups[k]
    shape = (g.n_levels, g.q)
    if not centered:
        z = pm.Normal(f"_z{k}__{g.factor}", 0.0, 1.0, shape=shape)
        return z @ chol.T
    shift = _shift(design, k, beta, parent) if beta is not None else None
    mu = pt.zeros(shape) if shift is None else pt.broadcast_to(shift, shape)
    l2 = level2_shift(design, k) if level2 and beta is not None else None
    if l2 is not None:
        ic, cols, vals = l2
        mu = pt.set_subtensor(mu[:, ic], mu[:, ic] + pt.dot(pt.constant(vals), beta[cols]))
    if g.q == 1:
        m = pm.Normal(f"_m{k}__{g.factor}", mu, chol[0, 0], shape=shape)
    else:
        m = pm.MvNormal(f"_m{k}__{g.factor}", mu=mu, chol=chol, shape=shape)
    return m - mu


def sampled_effects(design: Design, terms: list[int], chols, centered: dict[str, bool], beta,
                    generalized: bool = False) -> dict[int, pt.TensorVariable]:
    """Build the sampled effects of ``terms`` (coarse factors first), hierarchically centred
    (``generalized``: on non-centred parents and level-2 predictors too, see the module)."""
    out: dict[int, pt.TensorVariable] = {}
    done: list[int] = []
    for k in build_order(design, terms):
        g = design.groups[k]
        cent = centered.get(g.factor, False)
        parent = None
        if cent:
            cands = [j for j in done if generalized or centered.get(design.groups[j].factor, False)]
            found = nesting_parent(design, k, cands)
            if found is not None:
                j, pmap = found
                parent = (out[j], list(design.groups[j].terms), pmap)
        out[k] = sampled_effect(k, design, chols[k], cent, beta, parent, level2=generalized)
        done.append(k)
    return out
