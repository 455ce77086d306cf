"""sjPlot ``tab_model``-style table: Bayesian and REML columns side by side."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from scipy import stats as sps

from ..spec import variable_names as naming
from ..inference.intervals import DEFAULT_LEVEL, interval_label
from ..results import tables
from ._util import reference, values

if TYPE_CHECKING:
    from ..results.bayes_result import BayesResult

CSS = """
table.tabmodel {border-collapse: collapse; font-family: sans-serif; font-size: 13px}
table.tabmodel th, table.tabmodel td {padding: 3px 10px; text-align: right}
table.tabmodel td.lbl {text-align: left}
table.tabmodel tr.sec td {text-align: left; font-style: italic; border-top: 1px solid #999;
  border-bottom: 1px solid #ccc; background: #f6f6f6}
table.tabmodel thead tr:first-child th {border-top: 2px solid #333}
table.tabmodel thead tr:last-child th {border-bottom: 1px solid #333}
table.tabmodel tbody tr:last-child td {border-bottom: 2px solid #333}
"""


@dataclass
class TabModel:
    """A rendered comparison table: ``frame`` (strings), ``html`` (fragment incl. CSS)."""

    frame: pd.DataFrame
    html: str

    def _repr_html_(self) -> str:
        return self.html

    def __str__(self) -> str:
        return self.frame.to_string()


def _f(v, digits):
    return "" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def _ci(lo, hi, digits):
    return "" if not (np.isfinite(lo) and np.isfinite(hi)) else f"{lo:.{digits}f} – {hi:.{digits}f}"


def _p(p):
    if p is None or not np.isfinite(p):
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def tab_model(result: "BayesResult", reml_result=None, prob: float = DEFAULT_LEVEL,
              digits: int = 2) -> TabModel:
    """Fixed effects with intervals, random-effect variances (σ², τ00, τ11, ρ01), ICC, N per group,
    observations and R²m / R²c, each with a Bayesian and a REML column (sjPlot ``tab_model`` layout).

    Parameters
    ----------
    result : BayesResult
    reml_result : RemlResult, FrequentistReference or MissingReference, optional
        Fitted on ``result.spec`` when omitted; without one the REML columns are blank and a
        note under the table says why.
    prob : float
        Level of both intervals (default 0.95): the posterior HDI and the REML Wald interval
        (estimate ± z SE); both headers name it.
    digits : int

    Returns
    -------
    TabModel
    """
    ref = reference(result, reml_result)
    vals = values(ref)
    z = float(sps.norm.ppf(0.5 + prob / 2))
    src = result._draws
    rows: list[tuple] = []  # (section or None, label, b_est, b_ci, r_est, r_ci, p)

    def post(d):
        lo, hi = tables.hdi(np.asarray(d, float), prob)
        return _f(np.mean(d), digits), _ci(float(lo), float(hi), digits)

    beta = src.flat(naming.FIXED)
    rfx = vals.fixef if vals is not None else pd.DataFrame()
    rows.append(("Fixed effects",))
    for i, t in enumerate(result.design.fixed_names):
        b_est, b_ci = post(beta[:, i])
        r_est = r_ci = p = ""
        if vals is not None and t in rfx.index:
            est, se = vals.fixed(t)
            r_est, r_ci = _f(est, digits), _ci(est - z * se, est + z * se, digits)
            p = _p(float(rfx.loc[t, "p"])) if "p" in rfx else ""
        rows.append((None, t, b_est, b_ci, r_est, r_ci, p))
    rows.append(("Random effects",))
    vp = result.variance_parts() if result.factors else None
    if src.has(naming.SIGMA):
        s = src.flat(naming.SIGMA)
        rows.append((None, "σ²", *post(s ** 2), _f(vals.sigma ** 2, digits) if vals else "", "", ""))
    elif vp is not None:  # no residual SD: the family's latent-scale residual variance (sjPlot's σ²)
        rows.append((None, "σ² (latent scale)", *post(vp.residual), "", "", ""))
    for f in result.factors:
        terms = result._terms(f)
        sd = src.flat(naming.sd_var(f))
        for i, t in enumerate(terms):
            lab = f"τ00 {f}" if t in ("Intercept", "(Intercept)") else f"τ{i}{i} {f}.{t}"
            r = vals.sd(f, t) if vals else np.nan
            rows.append((None, lab, *post(sd[:, i] ** 2), _f(r ** 2, digits), "", ""))
        if src.has(naming.corr_var(f)):
            c = src.flat(naming.corr_var(f))
            for i, j in result._corr_pairs(f):
                r = vals.corr(f, terms[i], terms[j]) if vals else np.nan
                rows.append((None, f"ρ{i}{j} {f}", *post(c[:, i, j]), _f(r, digits), "", ""))
    if result.factors:
        rows.append((None, "ICC", *post(vp.icc()), _f(vals.icc, digits) if vals else "", "", ""))
    for f, n in result.ngrps().items():
        rows.append((None, f"N {f}", str(n), "", str(n) if vals else "", "", ""))
    rows.append((None, "Observations", str(result.nobs()), "", str(result.nobs()) if vals else "", "", ""))
    if result.factors:
        rows.append((None, "Marginal R² / Conditional R²",
                     f"{np.mean(vp.r2_marginal()):.3f} / {np.mean(vp.r2_conditional()):.3f}", "",
                     f"{vals.r2m:.3f} / {vals.r2c:.3f}" if vals else "", "", ""))
    cols = ["Estimate (Bayes)", interval_label(prob, "hdi"), "Estimate (REML)",
            interval_label(prob, "wald"), "p"]
    body, frame_rows = [], []
    for r in rows:
        if len(r) == 1:
            body.append(f'<tr class="sec"><td colspan="6">{html.escape(r[0])}</td></tr>')
            continue
        frame_rows.append(pd.Series(r[2:], index=cols, name=r[1]))
        cells = "".join(f"<td>{html.escape(str(v))}</td>" for v in r[2:])
        body.append(f'<tr><td class="lbl">{html.escape(r[1])}</td>{cells}</tr>')
    fam = getattr(result.spec, "family", None)
    fam_txt = f" (family: {fam.name}, link: {fam.link.name})" if fam is not None else ""
    title = html.escape(f"{result.design.response}: {result.formula}{fam_txt}")
    head = (f'<thead><tr><th></th><th colspan="2">Bayesian (posterior mean)</th>'
            f'<th colspan="3">REML (lme4)</th></tr><tr><th class="lbl">Predictors</th>'
            + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr></thead>")
    out = (f"<style>{CSS}</style><table class='tabmodel'><caption>{title}</caption>{head}"
           f"<tbody>{''.join(body)}</tbody></table>")
    if ref.singular:
        out += "<p><b>Note:</b> the REML fit is singular (a variance estimate is on the boundary).</p>"
    if vals is None:
        out += f"<p><b>Note:</b> {html.escape(ref.note)}</p>"
    return TabModel(pd.DataFrame(frame_rows), out)
