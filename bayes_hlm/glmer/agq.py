"""glmer's adaptive Gauss–Hermite criterion (``nAGQ > 1``, lme4's ``glmerAGQ``), for one grouping
factor with up to two effect columns per level.

The model's effects factor over the levels ``g`` of its one grouping factor, so the marginal
likelihood is a product of q-dimensional integrals. At the conditional modes ``û_g`` (PIRLS at
θ, β) with ``K_g = L_g L_gᵀ`` the level's block of ``ΛᵀZᵀWZΛ + I``, the nodes are
``u_gm = û_g + L_g⁻ᵀ t_m`` (``t_m`` the tensor-product rule of
:func:`bayes_hlm.statistics.quadrature.tensor_rule`, ``K^q`` nodes) and::

    -2 log p_g ≈ d_g(û_g) + log det K_g - 2 log Σ_m ω_m exp(-(d_g(u_gm) - d_g(û_g))/2 + |t_m|²/2)

with ``d_g(u) = Σ_{i in g} devres_i(η(u)) + |u|²``. For q = 1 this is lme4's ``glmerAGQ``
(``L_g⁻ᵀ t = t / sqrt(K_gg)``); with ``nagq = 1`` (the single node 0) it is the Laplace
criterion at the exact modes. Like lme4 the deviance residuals leave out the saturated model's
log-likelihood (see :attr:`.pirls.GlmerDevfun.saturated_loglik`).

Why q ≤ 2 (:data:`MAX_Q`): each node costs one pass over the rows, ``K^q`` of them per
evaluation of the criterion (nagq = 9: 81 for q = 2, 729 for q = 3). lme4 stops at q = 1; the
Bayesian collapsed engine (:mod:`bayes_hlm.backends.glmm_collapsed`) at the same q = 2.
Several grouping factors (crossed or nested) do not factor per level and are refused.
"""

from __future__ import annotations

import numba
import numpy as np

from ..errors import BayesHLMError
from ..statistics.quadrature import tensor_rule
from .kernels import _row

__all__ = ["MAX_Q", "MAX_NAGQ", "agq_deviance", "check_agq", "node_deviances"]

#: most effect columns of the one grouping factor (K^q nodes per level)
MAX_Q = 2
#: most nodes per dimension (lme4's limit for nAGQ)
MAX_NAGQ = 25


def _term_label(term) -> str:
    """``(1 + x | g)`` as written in a formula (``||`` for an uncorrelated term)."""
    cols = " + ".join("1" if t == "Intercept" else t for t in term.terms)
    bar = "|" if term.correlated or term.q == 1 else "||"
    return f"({cols} {bar} {term.factor})"


def check_agq(model, nagq: int) -> None:
    """Refuse ``nagq > 1`` where the quadrature does not apply or is not cheap, naming the
    term(s) and what to do."""
    lay = model.layout
    groups = getattr(model.design, "groups", ())
    if len(lay.factors) != 1:
        names = ", ".join(repr(f.name) for f in lay.factors)
        raise BayesHLMError(
            f"nagq = {nagq} (adaptive Gauss-Hermite quadrature) integrates the effects of one "
            f"grouping factor level by level; this model has {len(lay.factors)} grouping "
            f"factors ({names}: crossed or nested), whose effects do not split into per-level "
            "integrals. Use nagq=1 (Laplace), as lme4 does")
    f = lay.factors[0]
    if f.q > MAX_Q:
        terms = " + ".join(_term_label(groups[j]) for j in f.term_index if j < len(groups))
        raise BayesHLMError(
            f"nagq = {nagq} (adaptive Gauss-Hermite quadrature) is available for at most "
            f"{MAX_Q} random-effect columns per level; {terms} gives factor {f.name!r} {f.q} "
            f"columns ({', '.join(f.terms)}), i.e. nagq^{f.q} = {nagq ** f.q} likelihood "
            f"evaluations per level and criterion call. Use nagq=1 (Laplace), or keep at most "
            f"{MAX_Q} columns for {f.name!r} (lme4 allows nAGQ > 1 for one scalar term only)")
    if nagq > MAX_NAGQ:
        raise BayesHLMError(f"nagq = {nagq}: at most {MAX_NAGQ} quadrature points per dimension "
                            "(lme4's limit)")


@numba.njit(cache=True, nogil=True, error_model="numpy")
def node_deviances(fam, lk, th, y, pw, sat, base, codes, ZL, UN, G):  # pragma: no cover
    """``out[m, g] = Σ_{i in g} devres_i(base_i + ZL_i · UN[g, m])``: every node of every level
    in one pass over the rows (the row formulas are :func:`.kernels._row`'s)."""
    nm, q = UN.shape[1], UN.shape[2]
    out = np.zeros((nm, G))
    for i in range(base.shape[0]):
        g = codes[i]
        for m in range(nm):
            e = base[i]
            for a in range(q):
                e += ZL[i, a] * UN[g, m, a]
            out[m, g] += _row(fam, lk, th, y[i], pw[i], sat[i], e)[3]
    return out


def agq_deviance(devfun, st, nagq: int) -> float:
    """The AGQ criterion (lme4's ``-2 logLik`` for ``nAGQ > 1``) at the PIRLS state ``st``
    (exact conditional modes and their K blocks) of a one-factor model; see the module
    docstring."""
    from .kernels import FAMILY_CODE, LINK_CODE

    sysm, fam, m = devfun.system, devfun.family, devfun.model
    f = sysm.layout.factors[0]
    G, q, codes = f.n_levels, f.q, f.codes
    U = st.u.reshape(G, q)
    devc0 = np.sum(U * U, axis=1) + np.bincount(codes, weights=st.devres, minlength=G)
    # M_g = L_g⁻ᵀ, L_g the Cholesky factor of the level's K block
    M = np.linalg.inv(np.linalg.cholesky(st.factor.K)).transpose(0, 2, 1)
    t, lw = tensor_rule(nagq, q)
    off = np.any(t != 0, axis=1)             # the mode itself: d_g(û_g) - d_g(û_g) = 0
    UN = np.ascontiguousarray(U[:, None, :] + np.einsum("gab,mb->gma", M, t[off]))   # (G, m, q)
    if devfun._sat is None:
        devfun._sat = np.ascontiguousarray(fam.saturated_terms(m.y, m.pw))
    base = np.ascontiguousarray(st.eta - sysm.zl_u(st.u), dtype=float)
    dr = node_deviances(FAMILY_CODE[fam.name], LINK_CODE[fam.link],
                        float(fam.nb_theta if fam.nb_theta is not None else 1.0), m.y, m.pw,
                        devfun._sat, base, codes, np.ascontiguousarray(sysm.ZL), UN, G)
    a = lw[off][:, None] - 0.5 * (np.sum(UN * UN, axis=2).T + dr - devc0[None, :])   # (m, G)
    if not np.all(off):
        a = np.vstack([a, np.full((1, G), lw[~off][0])])
    return float(devc0.sum() + st.ldL2 - 2.0 * np.sum(np.logaddexp.reduce(a, axis=0)))
