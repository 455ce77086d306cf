"""broom.mixed-style tidy tables and parameter intervals, for any mixed-model result.

* :func:`tidy` - ``broom.mixed::tidy()``: one long table with columns ``effect``
  (``"fixed"``, ``"ran_pars"``, ``"ran_vals"``), ``group``, ``level``, ``term``,
  ``estimate``, ``std.error``, ``conf.low``, ``conf.high`` (plus ``df``,
  ``statistic``, ``p.value`` for REML fixed effects). Random-parameter terms use
  broom.mixed's names: ``sd__Intercept``, ``cor__Intercept.Days``, and ``sd__Observation``
  (group ``Residual``).
* :func:`draws_tidy` / :func:`draws_interval_table` - the same from named posterior draws
  (the Bayesian result hands them over); :func:`wald_tidy` - from a REML fit's public API.

The interval level is in every table's header (``columns.name``, e.g. ``"95% ETI"``).
"""

from __future__ import annotations

import warnings
from typing import Callable, Iterable, NamedTuple, Sequence

import numpy as np
import pandas as pd
from scipy import special as _sf  # not scipy.stats: its import costs seconds (CLI start-up)

from ..errors import BayesHLMError, BayesHLMWarning
from .frames import ReportFrame
from .intervals import DEFAULT_LEVEL, interval, label_interval

__all__ = ["tidy", "TIDY_COLUMNS", "EFFECTS", "check_effects", "Parameter", "TidyLabels",
           "draws_tidy", "draws_interval_table", "wald_tidy", "ratio_name", "exponentiate_fixed"]

TIDY_COLUMNS = ["effect", "group", "level", "term", "estimate", "std.error", "conf.low", "conf.high"]
EFFECTS = ("fixed", "ran_pars", "ran_vals")


class Parameter(NamedTuple):
    """One scalar parameter with its posterior draws (flat)."""

    effect: str      # fixed / ran_pars / ran_vals
    group: str
    level: str
    term: str        # broom.mixed's term name
    name: str        # the summary()/confint() row name
    draws: np.ndarray


class TidyLabels(NamedTuple):
    """How a fit shows its names (e.g. lme4's, see :mod:`bayes_hlm.reml.names`)."""

    term: Callable[[str], str]                 # model column -> shown term (``(Intercept)``)
    varcorr: pd.DataFrame                      # ``varcorr()`` rows as shown, same order
    factor: dict[str, str]                     # grouping factor -> shown group
    level: dict[str, dict[str, str]]           # factor -> level -> shown level


def tidy(model, effects: str | Iterable[str] = ("fixed", "ran_pars"),
         conf_level: float = DEFAULT_LEVEL, conf_method: str | None = None, **kwargs) -> ReportFrame:
    """broom.mixed ``tidy(model, effects = ..., conf.int = TRUE)`` for any result.

    Bayesian fits of a logit/log/cloglog link also take ``exponentiate=True`` (odds, rate or
    hazard ratios of the fixed effects; see :func:`exponentiate_fixed`).

    Same as ``model.tidy(effects, conf_level, conf_method=...)``. Bayesian: estimate =
    posterior mean, std.error = posterior SD, interval ``conf_method="eti"`` (quantiles,
    broom.mixed's default for brms) or ``"hdi"``. REML: estimate and Wald SE (Satterthwaite
    df, t and p for fixed effects); intervals for fixed effects are Wald; for ``ran_pars``
    they come from ``RemlResult.confint(method=conf_method)`` (``"profile"``, ``"boot"``),
    else blank; ``ran_vals`` use the conditional SDs.
    """
    return model.tidy(effects, conf_level, conf_method=conf_method, **kwargs)


def check_effects(effects) -> tuple[str, ...]:
    effects = (effects,) if isinstance(effects, str) else tuple(effects)
    bad = [e for e in effects if e not in EFFECTS]
    if bad:
        raise BayesHLMError(f"effects must be among {EFFECTS}, not {bad}")
    return effects


# -------------------------------------------------------------- exponentiate
#: links whose exponentiated coefficients are ratios (logit: odds; cloglog: hazards; log: means)
_RATIOS = {"logit": "odds ratios", "cloglog": "hazard ratios", "log": "ratios of means"}
_COUNT_FAMILIES = ("poisson", "negativebinomial")


def ratio_name(family: str, link: str) -> str:
    """What ``exp(coefficient)`` is under ``link``: ``"odds ratios"`` (logit), ``"rate ratios"``
    (log link of a count family), ``"ratios of means"`` (other log links), ``"hazard ratios"``
    (cloglog). Other links (identity, probit, inverse) have no such reading: an error."""
    if link not in _RATIOS:
        raise BayesHLMError(
            f"exponentiate=True needs a logit, log or cloglog link, where exp(coefficient) is an "
            f"odds, rate or hazard ratio; this {family} model has the {link} link, whose "
            "coefficients are differences on that scale: use exponentiate=False")
    return "rate ratios" if link == "log" and family in _COUNT_FAMILIES else _RATIOS[link]


def exponentiate_fixed(params: Sequence[Parameter], family: str, link: str) -> list[Parameter]:
    """The fixed effects' draws exponentiated (broom.mixed's ``exponentiate = TRUE``), the other
    parameters unchanged. Each draw is exponentiated before summarising: the posterior mean of
    ``exp(beta)`` is not ``exp`` of the mean of ``beta`` (Jensen), while quantile intervals are
    the same either way."""
    ratio_name(family, link)
    return [p._replace(draws=np.exp(p.draws)) if p.effect == "fixed" else p for p in params]


# ------------------------------------------------------------------ draws
def draws_tidy(params: Sequence[Parameter], conf_level: float = DEFAULT_LEVEL,
               conf_method: str | None = None) -> ReportFrame:
    """The tidy table of named posterior draws (``conf_method`` ``"eti"``, default, or ``"hdi"``)."""
    kind = conf_method or "eti"
    if kind not in ("eti", "hdi"):
        raise BayesHLMError("conf_method for a Bayesian fit must be 'eti' or 'hdi'")
    rows = []
    for p in params:
        lo, hi = interval(p.draws[:, None], conf_level, kind)
        rows.append({"effect": p.effect, "group": p.group, "level": p.level, "term": p.term,
                     "estimate": p.draws.mean(), "std.error": p.draws.std(ddof=1),
                     "conf.low": float(lo[0]), "conf.high": float(hi[0])})
    out = ReportFrame(pd.DataFrame(rows, columns=TIDY_COLUMNS))
    return label_interval(out, conf_level, kind)


def draws_interval_table(params: Sequence[Parameter], level: float = DEFAULT_LEVEL,
                         kind: str = "hdi", parm: Iterable[str] | None = None) -> ReportFrame:
    """``estimate`` (posterior mean), ``lower``, ``upper`` of each parameter, rows by name."""
    if parm is not None:
        parm = [parm] if isinstance(parm, str) else list(parm)
        names = [p.name for p in params]
        missing = [p for p in parm if p not in names]
        if missing:
            raise BayesHLMError(f"unknown parameter(s) {missing}; parameters: {names}")
        params = [p for p in params if p.name in parm]
    D = np.column_stack([p.draws for p in params])
    lo, hi = interval(D, level, kind)
    out = ReportFrame(pd.DataFrame({"estimate": D.mean(0), "lower": lo, "upper": hi},
                                   index=pd.Index([p.name for p in params], name="parameter")))
    out.attrs.update(prob=level, kind=kind)
    return label_interval(out, level, kind)


# ------------------------------------------------------------------- Wald
def _ranpar_ci(m, conf_level: float, conf_method: str, **kwargs) -> pd.DataFrame | None:
    if conf_method == "wald":
        return None
    try:
        return m.confint(conf_level, method=conf_method, **kwargs)
    except (NotImplementedError, ValueError, TypeError) as exc:
        warnings.warn(f"no {conf_method!r} intervals for the random-effect parameters of this "
                      f"REML fit ({exc}); left blank", BayesHLMWarning, stacklevel=4)
        return None


def _ranpar_row_name(effect_term: str, group: str) -> str:
    """``RemlResult.confint``'s row name of a tidy ran_pars term."""
    if group == "Residual":
        return "sigma"
    kind, rest = effect_term.split("__", 1)
    if kind == "sd":
        return f"sd({rest} | {group})"
    a, b = rest.split(".", 1)
    return f"cor({a}, {b} | {group})"


def wald_tidy(m, effects: Iterable[str] = ("fixed", "ran_pars"), conf_level: float = DEFAULT_LEVEL,
              conf_method: str | None = None, labels: TidyLabels | None = None,
              **kwargs) -> ReportFrame:
    """The tidy table of a frequentist fit (broom.mixed on ``lmerTest``), from its public API:
    ``fixef()``, ``varcorr()``, ``ranef()`` and ``confint()``; ``labels`` renames what is shown
    (lme4's names), the values stay."""
    conf_method = conf_method or "wald"
    effects = check_effects(effects)
    rows = []
    z = float(_sf.ndtri(0.5 + conf_level / 2))
    show = labels.term if labels is not None else (lambda t: t)
    if "fixed" in effects:
        fe = m.fixef()
        for term, r in fe.iterrows():
            rows.append({"effect": "fixed", "group": "", "level": "", "term": show(term),
                         "estimate": r["estimate"], "std.error": r["se"],
                         "conf.low": r["estimate"] - z * r["se"],
                         "conf.high": r["estimate"] + z * r["se"],
                         "df": r["df"], "statistic": r["t"], "p.value": r["p"]})
    if "ran_pars" in effects:
        ci = _ranpar_ci(m, conf_level, conf_method, **kwargs)
        vc = m.varcorr()
        shown = labels.varcorr if labels is not None else vc
        for (_, r), (_, rs) in zip(vc.iterrows(), shown.iterrows()):
            if r["group"] == "Residual":
                term, est = "sd__Observation", r["sd"]
            elif r["term_b"]:
                term, est = f"cor__{r['term']}.{r['term_b']}", r["corr"]
            else:
                term, est = f"sd__{r['term']}", r["sd"]
            lo = hi = np.nan
            name = _ranpar_row_name(term, r["group"])
            if ci is not None and name in ci.index:
                lo, hi = ci.loc[name].iloc[0], ci.loc[name].iloc[1]
            if labels is not None and r["group"] != "Residual":
                term = f"cor__{rs['term']}.{rs['term_b']}" if r["term_b"] else f"sd__{rs['term']}"
            rows.append({"effect": "ran_pars", "group": rs["group"], "level": "", "term": term,
                         "estimate": est, "std.error": np.nan, "conf.low": lo, "conf.high": hi})
    if "ran_vals" in effects:
        flab = labels.factor if labels is not None else {}
        llab = labels.level if labels is not None else {}
        for f, df in m.ranef().items():
            for (lvl, term), r in df.iterrows():
                se = r.get("cond_sd", np.nan)
                rows.append({"effect": "ran_vals", "group": flab.get(f, f),
                             "level": llab.get(f, {}).get(lvl, lvl), "term": show(term),
                             "estimate": r["mode"], "std.error": se,
                             "conf.low": r["mode"] - z * se, "conf.high": r["mode"] + z * se})
    cols = TIDY_COLUMNS + (["df", "statistic", "p.value"] if "fixed" in effects else [])
    out = ReportFrame(pd.DataFrame(rows, columns=cols))
    return label_interval(out, conf_level, conf_method)
