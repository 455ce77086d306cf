"""Bayesian posterior next to the REML (lme4-exact) reference fit.

* :func:`compare_reml` - one row per fixed effect, group SD, correlation,
  residual SD, ICC, R²m and R²c: posterior mean / median / HDI, the REML
  estimate (and SE for fixed effects) and ``diff_in_post_sd``.
* :func:`shrinkage_table` - per group and term: no-pooling OLS coefficient,
  complete-pooling coefficient, posterior coefficient and the REML BLUP.

Both return a :class:`ReportFrame`: a DataFrame with a rich notebook HTML
rendering, :meth:`ReportFrame.to_markdown` (no ``tabulate`` needed) and
pandas' ``to_latex``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
import pandas as pd

from ..backends import naming
from ..errors import BayesHLMError
from . import tables

if TYPE_CHECKING:
    from .bayes_result import BayesResult

COMPARE_COLUMNS = ["kind", "mean", "median", "hdi_low", "hdi_high", "reml", "reml_se",
                   "diff_in_post_sd"]


# --------------------------------------------------------------------- frame
class ReportFrame(pd.DataFrame):
    """A DataFrame that renders as a styled table in notebooks and exports to Markdown/LaTeX."""

    _metadata = ["caption"]

    @property
    def _constructor(self):
        return ReportFrame

    def styled(self, digits: int = 3):
        """A pandas ``Styler``: fixed digits, |diff_in_post_sd| > 2 highlighted, NaN as blank."""
        sty = self.style.format(precision=digits, na_rep="")
        if "diff_in_post_sd" in self.columns:
            sty = sty.map(lambda v: "background-color:#fde0dd;font-weight:bold"
                          if isinstance(v, (float, int)) and np.isfinite(v) and abs(v) > 2 else "",
                          subset=["diff_in_post_sd"])
        cap = getattr(self, "caption", None)
        if cap:
            sty = sty.set_caption(cap)
        return sty.set_table_styles([{"selector": "th", "props": "text-align:left"}])

    def _repr_html_(self) -> str:  # noqa: D401 - IPython hook
        try:
            return self.styled().to_html()
        except Exception:  # jinja2 missing: plain pandas rendering
            return pd.DataFrame(self).to_html(float_format=lambda v: f"{v:.3f}", na_rep="")

    def to_markdown(self, buf=None, digits: int = 3, **_: Any) -> str | None:
        """GitHub-flavoured Markdown table (index included)."""
        df = pd.DataFrame(self)
        idx_names = [n or "" for n in df.index.names]

        def fmt(v):
            if isinstance(v, (float, np.floating)):
                return "" if not np.isfinite(v) else f"{v:.{digits}f}"
            return str(v)

        head = idx_names + [str(c) for c in df.columns]
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        for key, row in df.iterrows():
            keys = list(key) if isinstance(key, tuple) else [key]
            lines.append("| " + " | ".join([str(k) for k in keys] + [fmt(v) for v in row]) + " |")
        text = "\n".join(lines) + "\n"
        if buf is None:
            return text
        buf.write(text)
        return None

    def to_latex(self, *args, float_format=None, na_rep: str = "", **kwargs) -> str | None:
        """LaTeX tabular (pandas ``to_latex`` with 3-digit floats and blank NaN)."""
        return pd.DataFrame(self).to_latex(*args, float_format=float_format or "{:.3f}".format,
                                           na_rep=na_rep, **kwargs)


# ---------------------------------------------------------------- REML access
def get_reml(result: "BayesResult", reml_result=None, required: bool = True):
    """The REML fit of ``result``'s model: ``reml_result`` or a fresh ``bayes_hlm.reml.reml`` fit.

    Returns None (when ``required`` is False) if the REML engine is unavailable
    or the model has no random effects.
    """
    if reml_result is not None:
        return reml_result
    try:
        from ..reml import reml
    except ImportError as exc:
        if required:
            raise BayesHLMError("the REML engine bayes_hlm.reml is not available yet "
                                f"({exc}); pass reml_result=... explicitly") from exc
        return None
    try:
        return reml(result.spec)
    except Exception:
        if required:
            raise
        return None


def norm_term(name: str) -> str:
    """lme4 spells the intercept ``(Intercept)``; the Bayesian side ``Intercept``."""
    s = str(name)
    return "Intercept" if s in ("(Intercept)", "Intercept") else s


def _call(obj):
    return obj() if callable(obj) else obj


def scalar_from(obj: Any, keys: Iterable[str]) -> float:
    """Pull one number out of whatever a REML accessor returns (float, dict, Series, DataFrame)."""
    keys = list(keys)
    try:
        obj = _call(obj)
    except Exception:
        return np.nan
    if obj is None:
        return np.nan
    if isinstance(obj, (int, float, np.number)):
        return float(obj)
    if isinstance(obj, pd.DataFrame):
        for k in keys:
            if k in obj.index:
                row = obj.loc[k]
                for col in ("estimate", "value", "mean", k):
                    if col in obj.columns:
                        return float(row[col])
                return float(pd.to_numeric(row, errors="coerce").dropna().iloc[0])
            if k in obj.columns:
                return float(obj[k].iloc[0])
        return np.nan
    if isinstance(obj, (dict, pd.Series)):
        for k in keys:
            if k in obj:
                return scalar_from(obj[k], [])
        if len(obj) == 1:
            return scalar_from(next(iter(dict(obj).values())), [])
        return np.nan
    if hasattr(obj, "__float__"):
        return float(obj)
    for k in keys:  # dataclass / namedtuple style
        if hasattr(obj, k):
            return scalar_from(getattr(obj, k), [])
    return np.nan


ICC_KEYS = ("icc", "icc_adjusted", "adjusted", "ICC_adjusted", "ICC")
R2M_KEYS = ("r2_marginal", "marginal", "R2_marginal", "r2m", "R2m")
R2C_KEYS = ("r2_conditional", "conditional", "R2_conditional", "r2c", "R2c")


class RemlValues:
    """REML point estimates keyed like :func:`compare_reml` rows (lme4 naming normalised)."""

    def __init__(self, ref):
        self.ref = ref
        fx = _call(ref.fixef)
        fx = fx.copy()
        fx.index = [norm_term(i) for i in fx.index]
        self.fixef = fx
        vc = _call(ref.varcorr).copy()
        for c in ("term", "term_b"):
            if c in vc:
                vc[c] = vc[c].fillna("").map(lambda t: norm_term(t) if t else "")
        self.varcorr = vc
        self.sigma = float(_call(ref.sigma)) if hasattr(ref, "sigma") else self._resid_sd()
        self.icc = scalar_from(getattr(ref, "icc", None), ICC_KEYS)
        r2 = getattr(ref, "r2", None)
        self.r2m = scalar_from(r2, R2M_KEYS)
        self.r2c = scalar_from(r2, R2C_KEYS)
        self.singular = bool(_call(getattr(ref, "singular", False)))

    def _resid_sd(self) -> float:
        rows = self.varcorr[self.varcorr["group"] == "Residual"]
        return float(rows["sd"].iloc[0]) if len(rows) else np.nan

    def _group_rows(self, factor: str) -> pd.DataFrame:
        vc = self.varcorr
        rows = vc[vc["group"] == factor]
        if not len(rows):  # lme4 names split (x||g) blocks g, g.1, ...
            rows = vc[vc["group"].astype(str).map(lambda g: re.sub(r"\.\d+$", "", g)) == factor]
        return rows

    def sd(self, factor: str, term: str) -> float:
        rows = self._group_rows(factor)
        rows = rows[(rows["term"] == term) & (rows["term_b"].fillna("") == "")]
        return float(rows["sd"].iloc[0]) if len(rows) else np.nan

    def corr(self, factor: str, a: str, b: str) -> float:
        rows = self._group_rows(factor)
        hit = rows[((rows["term"] == a) & (rows["term_b"] == b)) | ((rows["term"] == b) & (rows["term_b"] == a))]
        return float(hit["corr"].iloc[0]) if len(hit) else np.nan

    def fixed(self, term: str) -> tuple[float, float]:
        if term not in self.fixef.index:
            return np.nan, np.nan
        row = self.fixef.loc[term]
        return float(row["estimate"]), float(row.get("se", np.nan))

    def modes(self, factor: str) -> pd.DataFrame | None:
        """Conditional modes of ``factor`` indexed (level, term), or None."""
        try:
            re_ = _call(self.ref.ranef)
        except Exception:
            return None
        df = re_.get(factor) if isinstance(re_, dict) else None
        if df is None:
            return None
        df = df.copy()
        lv, tm = df.index.get_level_values(0), df.index.get_level_values(1)
        df.index = pd.MultiIndex.from_arrays([lv.astype(str), [norm_term(t) for t in tm]],
                                             names=["level", "term"])
        return df


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
    out.append(("sigma", "sigma", src.flat(naming.SIGMA), ("sigma",)))
    if result.factors:
        vp = result.variance_parts()
        out.append(("ICC (adjusted)", "icc", vp.icc(), ("icc",)))
        out.append(("R2 marginal", "r2", vp.r2_marginal(), ("r2m",)))
        out.append(("R2 conditional", "r2", vp.r2_conditional(), ("r2c",)))
    return out


def reml_value(vals: RemlValues | None, key: tuple) -> tuple[float, float]:
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


def compare_reml(result: "BayesResult", reml_result=None, prob: float = tables.HDI_PROB) -> ReportFrame:
    """Posterior summaries next to the REML estimates, one row per parameter.

    Parameters
    ----------
    result : BayesResult
    reml_result : RemlResult, optional
        A fit from :func:`bayes_hlm.reml.reml`; fitted on ``result.spec`` when omitted.
    prob : float
        HDI probability.

    Returns
    -------
    ReportFrame
        Index ``parameter``; columns ``kind`` (fixed/sd/corr/sigma/icc/r2), ``mean``,
        ``median``, ``hdi_low``, ``hdi_high``, ``reml``, ``reml_se`` (fixed effects
        only) and ``diff_in_post_sd`` = (posterior mean - REML) / posterior sd.
        ``attrs["singular"]`` records whether the REML fit is singular.
    """
    ref = get_reml(result, reml_result, required=True)
    vals = RemlValues(ref)
    rows = [_row(name, kind, d, *reml_value(vals, key), prob)
            for name, kind, d, key in posterior_rows(result)]
    out = ReportFrame(pd.DataFrame(rows).set_index("parameter")[COMPARE_COLUMNS])
    out.caption = (f"{result.formula}: posterior ({int(prob * 100)}% HDI) vs REML"
                   + (" (REML fit is singular)" if vals.singular else ""))
    out.attrs["singular"] = vals.singular
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
    coefficients (NaN where a group has too few rows).
    """
    d = result.design
    terms, codes, Z = _factor_terms(result, factor)
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
        est[j] = _lstsq(M, d.y[rows], len(terms))
    return pd.DataFrame(est, index=pd.Index(levels, name="level"), columns=terms)


def complete_pooling(result: "BayesResult") -> pd.Series:
    """OLS of y on the fixed design, ignoring groups."""
    d = result.design
    beta = np.linalg.lstsq(d.X, d.y, rcond=None)[0]
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


def shrinkage_table(result: "BayesResult", reml_result=None, factor: str | None = None,
                    prob: float = tables.HDI_PROB) -> ReportFrame:
    """No pooling vs partial pooling (posterior and REML) vs complete pooling, per group and term.

    Coefficients are on the lme4 ``coef()`` scale: fixed effect + group effect.

    Parameters
    ----------
    result : BayesResult
    reml_result : RemlResult, optional
        Supplies the BLUPs (REML fixed effect + conditional mode); fitted when
        omitted, and the ``blup`` column is NaN if the REML engine is unavailable.
    factor : str, optional
        Grouping factor; default all factors (a ``factor`` column tells them apart).
    prob : float
        HDI probability.

    Returns
    -------
    ReportFrame
        Index (level, term); columns ``no_pool``, ``post_mean``, ``post_sd``,
        ``hdi_low``, ``hdi_high``, ``blup``, ``complete_pool`` and ``shrinkage`` =
        1 - (post_mean - complete_pool) / (no_pool - complete_pool).
    """
    factors = [factor] if factor else result.factors
    ref = get_reml(result, reml_result, required=False)
    vals = RemlValues(ref) if ref is not None else None
    pooled = complete_pooling(result)
    frames = []
    for f in factors:
        nop = no_pooling(result, f)
        draws, terms = coefficient_draws(result, f)
        S, L, q = draws.shape
        flat = draws.reshape(S, L * q)
        lo, hi = tables.hdi(flat, prob)
        idx = pd.MultiIndex.from_product([list(nop.index), terms], names=["level", "term"])
        df = pd.DataFrame({"factor": f, "no_pool": nop.to_numpy().ravel(), "post_mean": flat.mean(0),
                           "post_sd": flat.std(0, ddof=1), "hdi_low": lo, "hdi_high": hi}, index=idx)
        blup = np.full(len(df), np.nan)
        modes = vals.modes(f) if vals is not None else None
        if modes is not None and "mode" in modes:
            m = modes["mode"].reindex(idx).to_numpy()
            fix = np.array([vals.fixed(t)[0] if t in vals.fixef.index else 0.0 for _, t in idx])
            blup = m + fix
        df["blup"] = blup
        df["complete_pool"] = [pooled.get(t, 0.0) for _, t in idx]
        with np.errstate(all="ignore"):
            df["shrinkage"] = 1 - (df["post_mean"] - df["complete_pool"]) / (df["no_pool"] - df["complete_pool"])
        frames.append(df)
    out = pd.concat(frames)
    if len(factors) == 1:
        out = out.drop(columns="factor")
    out = ReportFrame(out)
    out.caption = f"{result.formula}: no pooling vs partial pooling vs complete pooling"
    return out


__all__ = ["ReportFrame", "compare_reml", "shrinkage_table", "no_pooling", "complete_pooling",
           "coefficient_draws", "get_reml", "RemlValues", "posterior_rows", "reml_value", "norm_term"]
