"""Bayesian posterior next to the REML (lme4-exact) reference fit.

* :func:`compare_reml` - one row per fixed effect, group SD, correlation,
  residual SD, ICC, R²m and R²c: posterior mean / median / HDI, the REML
  estimate (and SE for fixed effects) and ``diff_in_post_sd``.
* :func:`shrinkage_table` - per group and term: no-pooling OLS coefficient,
  complete-pooling coefficient, posterior coefficient and the REML BLUP.

The reference is a typed :class:`~bayes_hlm.results.reference.FrequentistReference`
(from a :class:`~bayes_hlm.reml.RemlResult`, or fitted on demand). When there is none - the
REML fit failed - the REML columns are empty and the table's note (printed with it, and in
``attrs["reference"]``) says why. ICC and R² use one definition on both sides
(performance's, :mod:`bayes_hlm.inference.variance`).

Both return a :class:`ReportFrame`: a DataFrame with a rich notebook HTML
rendering, :meth:`ReportFrame.to_markdown` (no ``tabulate`` needed) and
pandas' ``to_latex``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..spec import variable_names as naming
from ..statistics import constant_within_levels
from ..errors import BayesHLMError
from ..inference._args import resolve_level
from ..inference.frames import ReportFrame
from ..inference.intervals import interval_label, label_interval
from . import tables
from .family_draws import family_of
from .glm_pooling import complete_pooling_glm, is_linear, no_pooling_glm
from .reference import FrequentistReference, MissingReference, Reference, norm_term, reference_for

if TYPE_CHECKING:
    from .bayes_result import BayesResult

COMPARE_COLUMNS = ["kind", "mean", "median", "hdi_low", "hdi_high", "reml", "reml_se",
                   "diff_in_post_sd"]


# ----------------------------------------------------------------- compare
def _row(name: str, kind: str, draws: np.ndarray, ref: float, se: float, prob: float) -> dict:
    d = np.asarray(draws, dtype=float)
    lo, hi = tables.hdi(d, prob)
    sd = d.std(ddof=1) if d.size > 1 else np.nan
    mean = d.mean()
    diff = (mean - ref) / sd if np.isfinite(ref) and sd and np.isfinite(sd) and sd > 0 else np.nan
    return {"parameter": name, "kind": kind, "mean": mean, "median": float(np.median(d)),
            "hdi_low": float(lo), "hdi_high": float(hi), "reml": ref, "reml_se": se,
            "diff_in_post_sd": diff}


def posterior_rows(result: "BayesResult") -> list[tuple[str, str, np.ndarray, tuple]]:
    """(name, kind, flat draws, key) of every scalar parameter compared with REML.

    ``key`` locates the REML counterpart: ("fixed", term), ("sd", factor, term),
    ("corr", factor, a, b), ("sigma",), ("icc",), ("r2m",), ("r2c",).
    """
    src = result._draws
    out = []
    beta = src.flat(naming.FIXED)
    for i, t in enumerate(result.design.fixed_names):
        out.append((t, "fixed", beta[:, i], ("fixed", t)))
    for f in result.factors:
        terms = result._terms(f)
        sd = src.flat(naming.sd_var(f))
        for i, t in enumerate(terms):
            out.append((f"sd({t} | {f})", "sd", sd[:, i], ("sd", f, t)))
        if src.has(naming.corr_var(f)):
            c = src.flat(naming.corr_var(f))
            for i, j in result._corr_pairs(f):
                out.append((f"cor({terms[i]}, {terms[j]} | {f})", "corr", c[:, i, j],
                            ("corr", f, terms[i], terms[j])))
    if src.has(naming.SIGMA):  # only families with a residual SD (not Bernoulli, Poisson, ...)
        out.append(("sigma", "sigma", src.flat(naming.SIGMA), ("sigma",)))
    if result.factors:
        vp = result.variance_parts()
        out.append(("ICC (adjusted)", "icc", vp.icc(), ("icc",)))
        out.append(("R2 marginal", "r2", vp.r2_marginal(), ("r2m",)))
        out.append(("R2 conditional", "r2", vp.r2_conditional(), ("r2c",)))
    return out


def reml_value(vals: FrequentistReference | None, key: tuple) -> tuple[float, float]:
    """REML (estimate, SE) for a :func:`posterior_rows` key; NaN when unknown."""
    if vals is None:
        return np.nan, np.nan
    kind = key[0]
    if kind == "fixed":
        return vals.fixed(key[1])
    if kind == "sd":
        return vals.sd(key[1], key[2]), np.nan
    if kind == "corr":
        return vals.corr(key[1], key[2], key[3]), np.nan
    return {"sigma": vals.sigma, "icc": vals.icc, "r2m": vals.r2m, "r2c": vals.r2c}[kind], np.nan


def _values(ref: Reference) -> FrequentistReference | None:
    return ref if isinstance(ref, FrequentistReference) else None


def compare_reml(result: "BayesResult", reml_result=None, level: float | None = None,
                 prob: float | None = None) -> ReportFrame:
    """Posterior summaries next to the REML estimates, one row per parameter.

    Parameters
    ----------
    result : BayesResult
    reml_result : RemlResult, FrequentistReference or MissingReference, optional
        The reference; fitted on ``result.spec`` when omitted (a failed fit leaves the REML
        columns empty and the table's note says why; a missing REML engine raises).
    level : float
        HDI probability (default 0.95; ``prob`` is its deprecated spelling).

    Returns
    -------
    ReportFrame
        Index ``parameter``; columns ``kind`` (fixed/sd/corr/sigma/icc/r2), ``mean``,
        ``median``, ``hdi_low``, ``hdi_high``, ``reml``, ``reml_se`` (fixed effects
        only) and ``diff_in_post_sd`` = (posterior mean - REML) / posterior sd.
        ``attrs["singular"]`` records whether the REML fit is singular,
        ``attrs["reference"]`` the reference engine or why there is none. The ICC / R² rows
        use performance's definition on both sides (random terms with an intercept).
    """
    prob = resolve_level(level, prob, "compare_reml")
    ref = reference_for(result, reml_result, engine_required=True)
    vals = _values(ref)
    rows = [_row(name, kind, d, *reml_value(vals, key), prob)
            for name, kind, d, key in posterior_rows(result)]
    out = ReportFrame(pd.DataFrame(rows).set_index("parameter")[COMPARE_COLUMNS])
    label_interval(out, prob, "hdi")
    if ref.singular:
        # performance's convention for a singular fit (ICC and R² conditional NA; R² marginal
        # with no random variance) is not the quantity the posterior describes: a
        # "diff in posterior SDs" against it would read as a disagreement (#18)
        icc_r2 = out["kind"].isin(["icc", "r2"])
        out.loc[icc_r2, "diff_in_post_sd"] = np.nan
        out.note = ("REML fit is singular: its ICC / R² follow performance's convention for "
                    "singular fits (NA, or R² marginal without the random variances), so they are "
                    "not compared with the posterior (diff left empty)")
    engine = vals.engine if vals is not None else "REML"
    out.caption = (f"{result.formula}: posterior ({interval_label(prob, 'hdi')}) vs {engine}"
                   + (" (REML fit is singular)" if ref.singular else ""))
    out.attrs["singular"] = ref.singular
    if vals is None:
        out.note = ref.note
        out.attrs["reference"] = ref.reason
    else:
        out.attrs["reference"] = vals.engine
    return out


# --------------------------------------------------------------- shrinkage
def _factor_terms(result: "BayesResult", factor: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Terms, row codes and Z columns (n, q) of one factor, in posterior order."""
    terms, Zs, codes = [], [], None
    for g in result.design.groups:
        if g.factor == factor:
            terms += [norm_term(t) for t in g.terms]
            Zs.append(g.Z)
            codes = g.codes
    if codes is None:
        raise BayesHLMError(f"unknown factor {factor!r}; factors: {result.factors}")
    return terms, codes, np.hstack(Zs)


def _lstsq(M: np.ndarray, y: np.ndarray, keep: int) -> np.ndarray:
    """OLS coefficients of the first ``keep`` columns; later columns dropped when aliased."""
    cols = list(range(keep))
    for j in range(keep, M.shape[1]):
        trial = M[:, cols + [j]]
        if np.linalg.matrix_rank(trial) == len(cols) + 1:
            cols.append(j)
    A = M[:, cols]
    if A.shape[0] < A.shape[1] or np.linalg.matrix_rank(A[:, :keep]) < keep:
        return np.full(keep, np.nan)
    return np.linalg.lstsq(A, y, rcond=None)[0][:keep]


def no_pooling(result: "BayesResult", factor: str) -> pd.DataFrame:
    """Separate OLS per level of ``factor``: y on the factor's terms plus the other fixed columns.

    Fixed columns constant within a group (level-2 predictors) are aliased with
    the intercept there and dropped. Returns a (level x term) frame of
    coefficients (NaN where a group has too few rows). Generalized fits: per-group GLMs on the
    link scale (:func:`~bayes_hlm.results.glm_pooling.no_pooling_glm`).
    """
    d = result.design
    terms, codes, Z = _factor_terms(result, factor)
    fam = family_of(result)
    if not is_linear(fam):
        return no_pooling_glm(result, factor, fam, terms, codes, Z)
    zn = {norm_term(t) for t in terms}
    other = [i for i, n in enumerate(d.fixed_names) if norm_term(n) not in zn]
    levels = [str(v) for v in result._levels(factor)]
    est = np.full((len(levels), len(terms)), np.nan)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(levels) + 1))
    for j in range(len(levels)):
        rows = order[bounds[j]:bounds[j + 1]]
        if len(rows) < len(terms):
            continue
        M = np.hstack([Z[rows], d.X[rows][:, other]])
        est[j] = _lstsq(M, d.working_y[rows], len(terms))
    return pd.DataFrame(est, index=pd.Index(levels, name="level"), columns=terms)


def complete_pooling(result: "BayesResult", factor: str | None = None) -> pd.Series:
    """OLS of y on the fixed design, ignoring groups (generalized fits: one GLM, link scale,
    the factors other than ``factor`` held at their posterior means)."""
    d = result.design
    fam = family_of(result)
    if not is_linear(fam):
        return complete_pooling_glm(result, fam, factor)
    beta = np.linalg.lstsq(d.X, d.working_y, rcond=None)[0]
    return pd.Series(beta, index=[norm_term(n) for n in d.fixed_names])


def coefficient_draws(result: "BayesResult", factor: str) -> tuple[np.ndarray, list[str]]:
    """Draws of the per-group coefficients fixed + group effect: (S, levels, q)."""
    b = result._draws.effects(factor)
    terms = [norm_term(t) for t in result._terms(factor)]
    beta = result._draws.flat(naming.FIXED)
    names = [norm_term(n) for n in result.design.fixed_names]
    out = b.copy()
    for i, t in enumerate(terms):
        if t in names:
            out[:, :, i] += beta[:, names.index(t), None]
    return out, terms


def level2_columns(result: "BayesResult", factor: str) -> tuple[list[str], np.ndarray]:
    """Fixed columns constant within every level of ``factor`` (level-2 predictors such as a
    school's ``meanses`` or ``sector``), and their part of each level's intercept,
    ``W_g @ E[beta_W]`` (one value per level, in level order).

    A per-group OLS intercept absorbs these columns (they are aliased with the intercept
    inside a group); the model's intercept does not: subtract this part to compare like
    with like."""
    d = result.design
    g = next(g for g in d.groups if g.factor == factor)
    codes, L = np.asarray(g.codes), len(g.levels)
    terms = {norm_term(t) for t in result._terms(factor)}
    X = np.asarray(d.X, float)
    names, cols = [], []
    constant = constant_within_levels(X, codes, L)
    for j, n in enumerate(d.fixed_names):
        n = str(n)
        if n in ("(Intercept)", "Intercept") or n in terms:
            continue
        if constant[j]:
            names.append(n)
            cols.append(j)
    part = np.zeros(L)
    if cols:
        beta = result._draws.flat(naming.FIXED).mean(0)
        W = np.zeros((L, len(cols)))
        W[codes] = X[:, cols]
        part = W @ beta[cols]
    return names, part


#: below this many posterior SDs between the no-pooling estimate and the population mean,
#: "the fraction of the distance travelled" divides by noise: NA
MIN_DISTANCE_SD = 0.5
NA_FEW_ROWS = "NA: too few rows"
NA_CLOSE = "NA: within 0.5 SD of population"
MOVED_AWAY = "moved away: shown as 0"
CROSSED = "crossed: shown as 1"
#: the table note explaining the short notes above
SHRINKAGE_LEGEND = ("shrinkage = (no_pool - post_mean) / (no_pool - population), the fraction of the "
                    "way from the no-pooling estimate to the population mean travelled by partial "
                    "pooling; NA where that distance is under 0.5 posterior SD (dividing by noise) or "
                    "a group has too few rows; bounded to [0, 1] where a correlated term pulls a "
                    "coefficient past the population mean (crossed) or away from it (moved away)")


def fraction_travelled(no_pool, post_mean, population, post_sd) -> tuple[np.ndarray, np.ndarray]:
    """The fraction of the distance from the no-pooling estimate to the population mean
    that partial pooling travels, ``(no_pool - post_mean) / (no_pool - population)``.

    Bounded to [0, 1]: with correlated terms a coefficient can be pulled past the population
    mean or away from it (the pooling acts on the group's whole coefficient vector); such
    rows show 1 or 0 and say so. NA where the distance is under :data:`MIN_DISTANCE_SD`
    posterior SDs (the ratio would divide by noise) or there is no no-pooling estimate.

    Returns
    -------
    (fraction, note) : arrays of floats (NaN for NA) and strings ("" where plain).
    """
    a, b, c, s = (np.asarray(v, float) for v in (no_pool, post_mean, population, post_sd))
    a, b, c, s = np.broadcast_arrays(a, b, c, s)
    dist = a - c
    with np.errstate(all="ignore"):
        raw = (a - b) / dist
    frac = np.clip(raw, 0.0, 1.0)
    note = np.full(a.shape, "", dtype=object)  # object: pandas shows strings, not bytes
    note[raw < 0] = MOVED_AWAY
    note[raw > 1] = CROSSED
    close = ~(np.abs(dist) >= MIN_DISTANCE_SD * s)  # NaN SD counts as close
    few = ~np.isfinite(a)
    frac[close | few] = np.nan
    note[close] = NA_CLOSE
    note[few] = NA_FEW_ROWS
    return frac, note


def shrinkage_table(result: "BayesResult", reml_result=None, factor: str | None = None,
                    level: float | None = None, prob: float | None = None) -> ReportFrame:
    """No pooling vs partial pooling (posterior and REML) vs complete pooling, per group and term.

    Coefficients are on the lme4 ``coef()`` scale: fixed effect + group effect.

    Parameters
    ----------
    result : BayesResult
    reml_result : RemlResult, FrequentistReference or MissingReference, optional
        Supplies the BLUPs (REML fixed effect + conditional mode); fitted when
        omitted. Without a reference the ``blup`` column is NaN and the table's note says why.
    factor : str, optional
        Grouping factor; default all factors (a ``factor`` column tells them apart).
    level : float
        HDI probability (default 0.95; ``prob`` is its deprecated spelling).

    Returns
    -------
    ReportFrame
        Index (level, term); columns ``no_pool`` (per-group OLS), ``post_mean``, ``post_sd``,
        ``hdi_low``, ``hdi_high``, ``blup``, ``complete_pool`` (OLS ignoring groups),
        ``population`` (posterior mean of the fixed effect: where partial pooling pulls),
        ``shrinkage`` (:func:`fraction_travelled`: the fraction of the distance from the
        no-pooling estimate to ``population`` that the posterior mean travels, in [0, 1] or
        NA) and ``shrinkage_note`` (why a value is NA or bounded; empty otherwise). An
        intercept's fraction is measured from the no-pooling intercept minus its fitted
        level-2 part (:func:`level2_columns`), which the model's intercept does not contain.
    """
    prob = resolve_level(level, prob, "shrinkage_table")
    factors = [factor] if factor else result.factors
    ref = reference_for(result, reml_result)
    vals = _values(ref)
    beta = pd.Series(result._draws.flat(naming.FIXED).mean(0),
                     index=[norm_term(n) for n in result.design.fixed_names])
    frames, level2 = [], set()
    linear = is_linear(family_of(result))
    for f in factors:
        pooled = complete_pooling(result, f)
        nop = no_pooling(result, f)
        draws, terms = coefficient_draws(result, f)
        S, L, q = draws.shape
        flat = draws.reshape(S, L * q)
        lo, hi = tables.hdi(flat, prob)
        idx = pd.MultiIndex.from_product([list(nop.index), terms], names=["level", "term"])
        df = pd.DataFrame({"factor": f, "no_pool": nop.to_numpy().ravel(), "post_mean": flat.mean(0),
                           "post_sd": flat.std(0, ddof=1), "hdi_low": lo, "hdi_high": hi}, index=idx)
        blup = np.full(len(df), np.nan)
        modes = vals.mode_table(f) if vals is not None else None
        if modes is not None and "mode" in modes:
            m = modes["mode"].reindex(idx).to_numpy()
            fix = np.array([vals.fixed(t)[0] if t in vals.fixef.index else 0.0 for _, t in idx])
            blup = m + fix
        df["blup"] = blup
        df["complete_pool"] = [pooled.get(t, 0.0) for _, t in idx]
        df["population"] = [beta.get(t, 0.0) for _, t in idx]
        like = df["no_pool"].to_numpy().copy()
        # a GLM's no-pooling fit holds level-2 predictors at their fitted part already (glm_pooling)
        names, part = level2_columns(result, f) if linear else ([], None)
        if names:  # compare intercepts like with like
            level2.update(names)
            like -= np.where(df.index.get_level_values("term") == "Intercept", np.repeat(part, q), 0.0)
        df["shrinkage"], df["shrinkage_note"] = fraction_travelled(like, df["post_mean"], df["population"],
                                                                   df["post_sd"])
        frames.append(df)
    out = pd.concat(frames)
    if len(factors) == 1:
        out = out.drop(columns="factor")
    out = label_interval(ReportFrame(out), prob, "hdi")
    out.caption = f"{result.formula}: no pooling vs partial pooling vs complete pooling"
    out.attrs["level2"] = sorted(level2)
    notes = [SHRINKAGE_LEGEND] if out["shrinkage_note"].astype(bool).any() else []
    if level2:
        notes.append(f"shrinkage of an intercept is measured from its no-pooling value minus the "
                     f"fitted {', '.join(sorted(level2))} part (level-2 predictors it absorbs)")
    if vals is None:
        notes.append(ref.note)
        out.attrs["reference"] = ref.reason
        out.attrs["reference_note"] = ref.note  # what a plot of this table must say (no BLUPs)
    if notes:
        out.note = "; ".join(n for n in notes if n)
    return out


__all__ = ["ReportFrame", "compare_reml", "shrinkage_table", "fraction_travelled", "level2_columns",
           "no_pooling", "complete_pooling",
           "coefficient_draws", "posterior_rows", "reml_value", "norm_term", "FrequentistReference",
           "MissingReference", "reference_for"]
