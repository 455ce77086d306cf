"""broom.mixed-style tidy tables and posterior intervals for every parameter.

* :func:`tidy` - ``broom.mixed::tidy()``: one long table with columns ``effect``
  (``"fixed"``, ``"ran_pars"``, ``"ran_vals"``), ``group``, ``level``, ``term``,
  ``estimate``, ``std.error``, ``conf.low``, ``conf.high`` (plus ``df``,
  ``statistic``, ``p.value`` for REML fixed effects) for a Bayesian or REML fit.
  Random-parameter terms use broom.mixed's names: ``sd__Intercept``,
  ``cor__Intercept.Days``, and ``sd__Observation`` (group ``Residual``).
* :func:`confint` - posterior HDI or equal-tailed interval of every parameter
  (``brms::posterior_interval``, ``bayestestR::ci`` / ``hdi``).

Both return a :class:`~bayes_hlm.results.compare_reml.ReportFrame`, so
``.to_markdown()`` and ``.to_latex()`` export them.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Iterable, Literal

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..backends import naming
from ..errors import BayesHLMError, BayesHLMWarning
from .compare_reml import ReportFrame
from .hypotheses import interval, is_bayes

if TYPE_CHECKING:
    from .bayes_result import BayesResult

__all__ = ["tidy", "confint", "tidy_reml"]

TIDY_COLUMNS = ["effect", "group", "level", "term", "estimate", "std.error", "conf.low", "conf.high"]
EFFECTS = ("fixed", "ran_pars", "ran_vals")


def _bayes_params(result: "BayesResult", effects: Iterable[str]):
    """(effect, group, level, term, summary-name, flat draws) for every parameter."""
    src = result._draws
    out = []
    if "fixed" in effects:
        beta = src.flat(naming.FIXED)
        for j, n in enumerate(result.design.fixed_names):
            out.append(("fixed", "", "", n, n, beta[:, j]))
    if "ran_pars" in effects:
        for f in result.factors:
            terms = result._terms(f)
            sd = src.flat(naming.sd_var(f))
            for i, t in enumerate(terms):
                out.append(("ran_pars", f, "", f"sd__{t}", f"sd({t} | {f})", sd[:, i]))
            if src.has(naming.corr_var(f)):
                c = src.flat(naming.corr_var(f))
                for i, j in result._corr_pairs(f):
                    out.append(("ran_pars", f, "", f"cor__{terms[i]}.{terms[j]}",
                                f"cor({terms[i]}, {terms[j]} | {f})", c[:, i, j]))
        out.append(("ran_pars", "Residual", "", "sd__Observation", "sigma", src.flat(naming.SIGMA)))
    if "ran_vals" in effects:
        for f in result.factors:
            b = src.effects(f)
            levels = [str(v) for v in result._levels(f)]
            for li, lvl in enumerate(levels):
                for i, t in enumerate(result._terms(f)):
                    out.append(("ran_vals", f, lvl, t, f"r_{f}[{lvl},{t}]", b[:, li, i]))
    return out


def _check_effects(effects) -> tuple[str, ...]:
    effects = (effects,) if isinstance(effects, str) else tuple(effects)
    bad = [e for e in effects if e not in EFFECTS]
    if bad:
        raise BayesHLMError(f"effects must be among {EFFECTS}, not {bad}")
    return effects


def tidy(model, effects: str | Iterable[str] = ("fixed", "ran_pars"), conf_level: float = 0.95,
         conf_method: Literal["eti", "hdi", "wald", "profile", "boot"] | None = None,
         **kwargs) -> ReportFrame:
    """broom.mixed ``tidy(model, effects = ..., conf.int = TRUE)`` for either result type.

    Bayesian: estimate = posterior mean, std.error = posterior SD, interval
    ``conf_method="eti"`` (quantiles, broom.mixed's default for brms) or ``"hdi"``.
    REML: estimate and Wald SE (Satterthwaite df, t and p for fixed effects);
    intervals for fixed effects are Wald; for ``ran_pars`` they come from
    ``RemlResult.confint(method=conf_method)`` when that method is available
    (``"profile"``, ``"boot"``), else blank; ``ran_vals`` use the conditional SDs.
    """
    effects = _check_effects(effects)
    if not is_bayes(model):
        return tidy_reml(model, effects, conf_level, conf_method or "wald", **kwargs)
    kind = conf_method or "eti"
    if kind not in ("eti", "hdi"):
        raise BayesHLMError("conf_method for a Bayesian fit must be 'eti' or 'hdi'")
    rows = []
    for eff, grp, lvl, term, _, d in _bayes_params(model, effects):
        lo, hi = interval(d[:, None], conf_level, kind)
        rows.append({"effect": eff, "group": grp, "level": lvl, "term": term,
                     "estimate": d.mean(), "std.error": d.std(ddof=1),
                     "conf.low": float(lo[0]), "conf.high": float(hi[0])})
    return ReportFrame(pd.DataFrame(rows, columns=TIDY_COLUMNS))


def _reml_ranpar_ci(m, conf_level: float, conf_method: str, **kwargs) -> pd.DataFrame | None:
    if conf_method == "wald":
        return None
    try:
        ci = m.confint(method=conf_method, level=conf_level, **kwargs)
    except (NotImplementedError, ValueError, TypeError) as exc:
        warnings.warn(f"no {conf_method!r} intervals for the random-effect parameters of this "
                      f"REML fit ({exc}); left blank", BayesHLMWarning, stacklevel=3)
        return None
    return ci


def _reml_row_name(effect_term: str, group: str) -> list[str]:
    """Candidate row names of ``RemlResult.confint`` for a tidy ran_pars term."""
    if group == "Residual":
        return ["sigma", ".sigma"]
    kind, rest = effect_term.split("__", 1)
    if kind == "sd":
        return [f"sd_{rest}|{group}", f"sd({rest} | {group})"]
    a, b = rest.split(".", 1)
    return [f"cor_{a}.{b}|{group}", f"cor({a}, {b} | {group})"]


def tidy_reml(m, effects: Iterable[str] = ("fixed", "ran_pars"), conf_level: float = 0.95,
              conf_method: str = "wald", names: str = "bayes_hlm", **kwargs) -> ReportFrame:
    """:func:`tidy` for a :class:`~bayes_hlm.reml.RemlResult` (broom.mixed on ``lmerTest``).

    ``names="lme4"`` gives lme4's names as broom.mixed prints them: ``(Intercept)``,
    groups ``Rat`` / ``Rat.1`` for two terms on one factor, ``Variety:Block`` for the inner
    factor of ``(1 | Block/Variety)`` (see :mod:`bayes_hlm.reml.names`).
    """
    from ..reml.names import check_names, factor_labels, level_labels, term_label

    effects = _check_effects(effects)
    check_names(names)
    rows = []
    z = sps.norm.ppf(0.5 + conf_level / 2)
    if "fixed" in effects:
        fe = m.fixef()
        for term, r in fe.iterrows():
            rows.append({"effect": "fixed", "group": "", "level": "", "term": term_label(term, names),
                         "estimate": r["estimate"], "std.error": r["se"],
                         "conf.low": r["estimate"] - z * r["se"],
                         "conf.high": r["estimate"] + z * r["se"],
                         "df": r["df"], "statistic": r["t"], "p.value": r["p"]})
    if "ran_pars" in effects:
        ci = _reml_ranpar_ci(m, conf_level, conf_method, **kwargs)
        shown = m.varcorr(names=names)  # same rows, in the same order, as m.varcorr()
        for (_, r), (_, rs) in zip(m.varcorr().iterrows(), shown.iterrows()):
            if r["group"] == "Residual":
                term, est = "sd__Observation", r["sd"]
            elif r["term_b"]:
                term, est = f"cor__{r['term']}.{r['term_b']}", r["corr"]
            else:
                term, est = f"sd__{r['term']}", r["sd"]
            lo = hi = np.nan
            if ci is not None:
                for name in _reml_row_name(term, r["group"]):
                    if name in ci.index:
                        lo, hi = ci.loc[name].iloc[0], ci.loc[name].iloc[1]
                        break
            if names != "bayes_hlm" and r["group"] != "Residual":
                term = (f"cor__{rs['term']}.{rs['term_b']}" if r["term_b"] else f"sd__{rs['term']}")
            rows.append({"effect": "ran_pars", "group": rs["group"], "level": "", "term": term,
                         "estimate": est, "std.error": np.nan, "conf.low": lo, "conf.high": hi})
    if "ran_vals" in effects:
        flab = dict(zip((g.factor for g in m.design.groups), factor_labels(m.design, m.spec, names)))
        llab = level_labels(m.design, m.spec, names)
        for f, df in m.ranef().items():
            for (lvl, term), r in df.iterrows():
                se = r.get("cond_sd", np.nan)
                rows.append({"effect": "ran_vals", "group": flab.get(f, f),
                             "level": llab.get(f, {}).get(lvl, lvl),
                             "term": term_label(term, names),
                             "estimate": r["mode"], "std.error": se,
                             "conf.low": r["mode"] - z * se, "conf.high": r["mode"] + z * se})
    cols = TIDY_COLUMNS + (["df", "statistic", "p.value"] if "fixed" in effects else [])
    return ReportFrame(pd.DataFrame(rows, columns=cols))


def confint(result: "BayesResult", prob: float = 0.95, kind: Literal["hdi", "eti"] = "hdi",
            pars: Iterable[str] | None = None, ranef: bool = False) -> ReportFrame:
    """Posterior interval of every parameter (brms ``posterior_interval``; ``confint`` in R).

    Rows use :meth:`BayesResult.summary`'s names (``Days``, ``sd(Days | Subject)``,
    ``cor(Intercept, Days | Subject)``, ``sigma``), plus ``r_<factor>[level,term]``
    group effects with ``ranef=True``. Columns: ``estimate`` (posterior mean),
    ``lower``, ``upper`` (HDI, or the equal-tailed interval with ``kind="eti"``).
    ``pars`` selects rows by name.
    """
    if not is_bayes(result):
        raise BayesHLMError("confint() here is for Bayesian results; use RemlResult.confint()")
    effects = ("fixed", "ran_pars") + (("ran_vals",) if ranef else ())
    params = _bayes_params(result, effects)
    if pars is not None:
        pars = list(pars)
        names = [p[4] for p in params]
        missing = [p for p in pars if p not in names]
        if missing:
            raise BayesHLMError(f"unknown parameter(s) {missing}; parameters: {names}")
        params = [p for p in params if p[4] in pars]
    D = np.column_stack([p[5] for p in params])
    lo, hi = interval(D, prob, kind)
    out = pd.DataFrame({"estimate": D.mean(0), "lower": lo, "upper": hi},
                       index=pd.Index([p[4] for p in params], name="parameter"))
    out = ReportFrame(out)
    out.attrs.update(prob=prob, kind=kind)
    return out
