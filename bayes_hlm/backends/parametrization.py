"""Centred or non-centred group effects, chosen per factor from the data.

Non-centred (``b = L z``) samples well when the data say little about each
group's effect (few rows per level, small between-group variance); centred
(``b ~ N(0, Sigma)``) when they say a lot, where the non-centred form turns
into a funnel in the other direction. The signal, per term, is the ratio of
the between-group variance of the effect to the sampling variance of one
group's estimate of it -- for an intercept ``n_g tau^2 / sigma^2`` -- from
per-group least squares on OLS residuals (one pass over the rows).

A factor is centred only when *every* one of its terms is well identified:
one weak term (hsb82's ``cses`` slope, next to a strong school intercept)
makes a centred correlated block a funnel in that term's SD.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..spec.design import Design, GroupTerm
from ..statistics import block_cross, constant_within_levels

# n_g tau^2 / sigma^2 above which centring wins. At 4 the group's own data carry
# 80% of the information about its effect; penicillin's samples (~60) and
# sleepstudy's intercepts (~20) are centred, hsb82's cses slopes (~0.1) are not.
INFORMATIVE = 4.0
# Generalized models: a factor nested in another is centred on its parent's effect (and on
# its fixed part, level-2 predictors included) above this ratio. For a two-level nest the
# centred chain's autocorrelation is ~1/(1 + ratio), the non-centred one's ~ratio/(1 + ratio)
# (Papaspiliopoulos, Roberts & Skold 2007): the crossover is at 1, but with the SDs sampled
# too a child near it is fragile (binary (1 | c/g), 2 g of 12 rows per c, ratio 1.7: 5 and 64
# divergences in two runs centred, none non-centred), so 2. Non-centred, the child's and the
# parent's effects are identified only through their sum (grouseticks' broods in locations,
# ratio 2.5: 12 and 71 divergences in 4000 draws at two seeds; centred on the location: none).
NESTED_INFORMATIVE = 2.0


def _residuals(design: Design) -> np.ndarray:
    y = design.working_y
    if not design.p:
        return y - y.mean()
    beta, *_ = np.linalg.lstsq(design.X, y, rcond=None)
    return y - design.X @ beta


def term_information(g: GroupTerm, e: np.ndarray) -> np.ndarray:
    """``tau_j^2 / median_g(sigma^2 / (Z_g'Z_g)_jj)`` for each term ``j`` of ``g`` (length q).

    Each level's effect is estimated by least squares of the residuals ``e`` on
    its rows of ``Z``; levels with too few rows (singular ``Z_g'Z_g``) are left
    out. The between-level variance ``tau_j^2`` is the spread of the estimates
    minus their mean sampling variance (method of moments, floored at 0). For
    an intercept-only term this is ``median(n_g) tau^2 / sigma^2``.
    """
    q, L = g.q, g.n_levels
    cross = block_cross(g.codes, L, g.Z, y=e)
    ZtZ, Zte, n_g = cross["A"], cross["c"], cross["n_g"]
    scale = np.maximum(np.einsum("gii->gi", ZtZ).max(axis=1), 1e-300)
    ok = (n_g > q) & (np.linalg.eigvalsh(ZtZ / scale[:, None, None])[:, 0] > 1e-8)
    if ok.sum() < 2:
        return np.zeros(q)
    inv = np.linalg.inv(ZtZ[ok])
    bhat = np.einsum("gij,gj->gi", inv, Zte[ok])
    rows_ok = ok[g.codes]
    fitted = np.einsum("ni,ni->n", g.Z[rows_ok], _expand(bhat, ok, g.codes[rows_ok]))
    dof = rows_ok.sum() - q * ok.sum()
    if dof <= 0:
        return np.zeros(q)
    sigma2 = np.sum((e[rows_ok] - fitted) ** 2) / dof
    if sigma2 <= 0:
        return np.full(q, np.inf)
    tau2 = np.maximum(bhat.var(axis=0, ddof=1) - sigma2 * np.einsum("gii->gi", inv).mean(axis=0), 0.0)
    # information about b_gj with the level's other effects known: the diagonal of the
    # precision, not of the covariance (an intercept far from the data's x is not "weak")
    cond = sigma2 / np.einsum("gii->gi", ZtZ[ok])
    return tau2 / np.median(cond, axis=0)


def _expand(bhat: np.ndarray, ok: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Per-row estimates of the row's level (rows of usable levels only)."""
    slot = np.cumsum(ok) - 1
    return bhat[slot[codes]]


def information_ratio(design: Design, g: GroupTerm, e: np.ndarray | None = None) -> float:
    """The weakest term's information ratio of GroupTerm ``g``."""
    e = _residuals(design) if e is None else e
    return float(term_information(g, e).min())


def glm_working(design: Design, family) -> tuple[np.ndarray, np.ndarray]:
    """``(e, sqrt_w)``: working residuals and square-root working weights of the GLM fit of
    the fixed part (Newton on the log likelihood of :mod:`.glmm_kernels`, step halving).

    On the scale ``sqrt(w)`` the working model ``e ≈ sqrt(w) Z b + noise`` has unit noise
    variance, so :func:`term_information` on ``(sqrt(w) Z, e)`` is the ratio of the effect's
    variance to its sampling variance on the link scale, as for a Gaussian model.
    """
    from . import glmm_kernels as gk
    from .compression import compress_rows
    from .glmm_density import design_rows

    code = gk.kernel_code(family)
    rows = design_rows(design)
    # the fixed part's GLM: rows equal in (X row, offset) merge losslessly (binomial/Poisson
    # cells; NB rows that also share y), so Newton runs on a handful of cells when the
    # predictors are categorical (10M rows: seconds instead of minutes)
    fixed_only = replace(rows, codes=[], Z=[])
    cells = compress_rows(fixed_only, family)
    X, y, n, w, off = cells.X, cells.y, cells.n, cells.w, cells.offset
    beta = np.zeros(design.p)
    if "Intercept" in design.fixed_names:  # start at the mean response on the link scale
        m = float(np.sum(rows.w * rows.y) / np.sum(rows.w * rows.n))
        m = min(max(m, 0.02), 0.98) if code <= 2 else max(m, 0.1)
        beta[design.fixed_names.index("Intercept")] = float(family.link.link(m)) - rows.offset.mean()
    d1, d2 = np.empty(cells.N), np.empty(cells.N)

    def ll_at(b):
        return gk.eta_derivatives(code, y, n, w, off + X @ b, 1.0, d1, d2)

    ll = ll_at(beta)
    for _ in range(30):
        H = X.T @ (X * np.maximum(-d2, 1e-12)[:, None]) + 1e-9 * np.eye(design.p)
        step = np.linalg.solve(H, X.T @ d1)
        t = 1.0
        while t > 1e-4:
            new = ll_at(beta + t * step)
            if np.isfinite(new) and new >= ll - 1e-9:
                break
            t *= 0.5
        beta = beta + t * step
        ll = ll_at(beta)
        if np.max(np.abs(t * step)) < 1e-8:
            break
    d1, d2 = np.empty(rows.N), np.empty(rows.N)  # per row at the fit
    gk.eta_derivatives(code, rows.y, rows.n, rows.w, rows.offset + rows.X @ beta, 1.0, d1, d2)
    sw = np.sqrt(np.maximum(-d2, 1e-12))
    return d1 / sw, sw


def choose_centering(design: Design, family=None, nested: bool = False,
                     crossed: bool = False) -> dict[str, bool]:
    """Factor -> True (centred) when all its terms are well identified by the data.

    ``family``: a non-Gaussian family measures the information on the link scale from the
    GLM working residuals and weights (:func:`glm_working`), and a correlated term counts
    with the geometric mean of its coordinates' ratios; a factor with level-2 predictors
    (fixed columns constant within its levels) or with a well-identified factor nested in it
    stays non-centred, a factor nested in another is centred above
    :data:`NESTED_INFORMATIVE` (on its parent's effect and its level-2 predictors,
    :func:`~bayes_hlm.backends.group_effects.level2_shift`); ``None`` or Gaussian: OLS (every
    coordinate's ratio). ``crossed`` (the compiled GLMM density, which centres only one of
    several crossed factors on the fixed intercept, :func:`.glmm_density._split_intercept`):
    when two or more non-nested factors are well identified, those with level-2 predictors
    are centred too.
    """
    e, groups = None, design.groups
    if family is not None and family.name != "gaussian":
        from ..errors import BayesHLMError

        try:
            e, sw = glm_working(design, family)
            groups = [replace(g, Z=g.Z * sw[:, None]) for g in design.groups]
        except BayesHLMError:  # no compiled likelihood for the family (Student-t): OLS
            pass
    e = _residuals(design) if e is None else e
    ratio: dict[str, float] = {}
    for g in groups:
        r = term_information(g, e)
        if groups is not design.groups and g.correlated and g.q > 1:  # link scale (GLMM)
            # a correlated GLMM term moves as one vector (b_g = L z_g): its geometric mean
            # ratio. 20k binary rows, (x | g), ratios (15.6, 3.0): centred min ESS 1440,
            # non-centred 243 (on the fixed intercept), same tree depth (benchmarks/README.md)
            r = np.exp(np.mean(np.log(np.maximum(r, 1e-300))))
        ratio[g.factor] = min(ratio.get(g.factor, np.inf), float(np.min(r)))
    out = {f: r > INFORMATIVE for f, r in ratio.items()}
    children: dict[str, str] = {}  # child factor -> parent factor
    if groups is not design.groups and len(design.groups) > 1:
        from .group_effects import nesting_parent

        ks = range(len(design.groups))
        for k in ks:
            found = nesting_parent(design, k, [j for j in ks if j != k])
            if found is not None:
                children[design.groups[k].factor] = design.groups[found[0]].factor
    if family is not None and family.name != "gaussian":
        # a factor with level-2 predictors (fixed columns constant within its levels: an
        # item's type, a person's trait) stays non-centred (unless nested, below): centred,
        # each such coefficient trades off against the mean of its levels' effects along a
        # ridge (verbagg, both factors centred: R-hat 1.85, min ESS 6; non-centred: R-hat
        # 1.009, min ESS 416). Moving them into the centring shift is not enough there (R-hat
        # 1.18, min ESS 17): two crossed centred factors also share the intercept -- unless
        # only one of them is centred on it (``crossed``; verbagg, seeds 1-3: R-hat <= 1.008,
        # min ESS 3945-4333, 15 leapfrog steps per draw instead of 28)
        X = np.asarray(design.X, float)
        slope_free = [j for j, n in enumerate(design.fixed_names) if n != "Intercept"]
        # counted: centred random intercepts outside any nest (a nest's parent ends up
        # non-centred, its child centred on it: neither takes part in the split)
        with_int = {g.factor for g in design.groups if "Intercept" in g.terms}
        nest = set(children) | set(children.values())
        split = crossed and sum(1 for f, c in out.items()
                                if c and f in with_int and f not in nest) >= 2
        for g in design.groups:
            if out.get(g.factor) and not split and slope_free and constant_within_levels(
                    X[:, slope_free], g.codes, len(g.levels)).any():
                out[g.factor] = False
    # a nested factor is centred on its parent's effect from NESTED_INFORMATIVE on (see
    # there); its level-2 predictors move into that shift. The parent learns its effect from
    # its few child levels, not from its rows (which the per-level fit counts): non-centred,
    # or its SD is a centred funnel (binomial (1 | c/g) with 2 g per c: 20 divergences of
    # 2000) -- unless the child is itself weak (an observation-level (1 | INDEX): one row per
    # level), when the parent's rows do inform it
    if not nested:
        out.update({p: False for p in children.values()})
        return out
    strong = [(c, p) for c, p in children.items() if ratio[c] > NESTED_INFORMATIVE]
    out.update({c: True for c, _ in strong})
    out.update({p: False for _, p in strong})  # after: a middle level with a strong child
    return out


# One observation's link-scale information times the effect's variance above which an
# observation-level effect is centred: the crossover of the centred and non-centred chains'
# rates for a two-level Gaussian nest (Papaspiliopoulos, Roberts & Skold 2007).
LEVEL_INFORMATIVE = 1.0


def observation_level_variance(design: Design, k: int, e: np.ndarray, w: np.ndarray) -> float:
    """Moment estimate of an observation-level term's variance on the link scale.

    Under the fixed-part GLM the working residuals ``e`` have unit variance; an effect of
    variance ``tau^2`` per row adds ``w_i tau^2``. Within the levels of the factor the term
    is nested in (its coarser effects removed by a weighted mean per level):
    ``tau^2 ~ (sum d_i^2 - dof) / sum w_i``, floored at 0.
    """
    from .group_effects import nesting_parent

    others = [j for j, h in enumerate(design.groups) if h.factor != design.groups[k].factor]
    found = nesting_parent(design, k, others)
    sw = np.sqrt(w)
    if found is None:
        d, dof = e, e.size
    else:
        codes = np.asarray(design.groups[found[0]].codes)
        L = design.groups[found[0]].n_levels
        shift = np.bincount(codes, sw * e, L) / np.maximum(np.bincount(codes, w, L), 1e-300)
        d, dof = e - sw * shift[codes], e.size - np.unique(codes).size
    return max(float((np.sum(d * d) - dof) / np.sum(w)), 0.0)


def level_centering(design: Design, family, centered: dict[str, bool]) -> dict[str, np.ndarray]:
    """Observation-level random intercepts (one row per level), non-centred as a factor,
    centred level by level where that row's link-scale information ``w_i`` times the term's
    variance exceeds :data:`LEVEL_INFORMATIVE` (the compiled GLMM density's ``level_centred``).

    Such a factor has no per-level estimate for :func:`term_information`; its rows differ
    widely in what they say (grouseticks' ``(1 | INDEX)``: counts 0 to 85): a count of 30
    pins its row's effect (non-centred, a funnel in ``sd(INDEX)`` and a ridge with its
    brood's effect), a zero hardly does (centred, the funnel the other way). With the
    broods' locations integrated out, per-row centring raised the min ESS of the brood and
    row effects from ~300-400 to thousands (4 x 1000 draws).
    """
    if family is None or family.name == "gaussian":
        return {}
    ks = [k for k, g in enumerate(design.groups)
          if g.q == 1 and list(g.terms) == ["Intercept"] and not centered.get(g.factor, False)
          and g.n_levels == design.n and np.bincount(g.codes, minlength=g.n_levels).max() == 1]
    if not ks:
        return {}
    from ..errors import BayesHLMError

    try:
        e, sw = glm_working(design, family)
    except BayesHLMError:
        return {}
    w = sw * sw
    out = {}
    for k in ks:
        g = design.groups[k]
        tau2 = observation_level_variance(design, k, e, w)
        flags = np.zeros(g.n_levels, dtype=bool)
        flags[np.asarray(g.codes)] = w * tau2 > LEVEL_INFORMATIVE
        if flags.any():
            out[g.factor] = flags
    return out
