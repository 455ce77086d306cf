"""The fitted REML / ML model (lme4's ``mkMerMod`` + lmerTest / performance summaries)."""

from __future__ import annotations

import warnings
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import special as _sf  # not scipy.stats: its import costs seconds (CLI start-up)

from ..errors import BayesHLMError, BayesHLMWarning, ConvergenceWarning
from ..inference.frames import ReportFrame
from ..inference.intervals import DEFAULT_LEVEL, label_interval, wald_table
from ..inference.contract import MixedModelResult, ModelSummary, ValueTable
from ..inference.variance import VarianceParts, VarianceTerms, variance_parts
from .criterion import DevFun
from .optimize import OptResult

SINGULAR_MSG = ("boundary (singular) fit: a variance is estimated as zero or a correlation as +-1; "
                "see 'Singular fits' in docs/r_to_bayes_hlm.md (bayes_hlm's docs) for what it means "
                "and what to do")

__all__ = ["RemlResult", "SINGULAR_MSG", "coef_frames", "cond_sds", "newdata_eta"]


def newdata_eta(spec, factors, beta: np.ndarray, modes: list[np.ndarray], newdata: pd.DataFrame,
                group_effects: bool, allow_new_levels: bool) -> np.ndarray:
    """Linear predictor of ``newdata`` for a frequentist fit (lmer and glmer ``predict``):
    ``X β`` + offset, plus each factor's conditional modes (``modes[k]``, levels × q) when
    ``group_effects``. Levels unseen in fitting raise unless ``allow_new_levels`` (then their
    effects are 0, lme4's ``allow.new.levels``)."""
    eta = spec.fixed_matrix(newdata) @ beta
    off = spec.offset(newdata)
    if off is not None:
        eta = eta + off
    if not group_effects:
        return eta
    for k, f in enumerate(factors):
        parts = [spec.group_columns(j, newdata) for j in f.term_index]
        codes = parts[0][0]
        Z = np.hstack([p[1] for p in parts])
        unseen = codes < 0
        if unseen.any() and not allow_new_levels:
            raise BayesHLMError(f"newdata has {int(unseen.sum())} row(s) with levels of {f.name!r} "
                                "not seen in fitting; pass allow_new_levels=True to predict them "
                                "at the population level")
        b = modes[k][np.where(unseen, 0, codes)]
        eta = eta + np.where(unseen, 0.0, np.einsum("nq,nq->n", Z, b))
    return eta


def coef_frames(factors, fixed_names, beta, modes) -> dict[str, pd.DataFrame]:
    """lme4's ``coef``: per factor, each level's fixed effects plus its group effects (conditional
    modes ``modes[k]``, levels x terms). The one implementation for lmer and glmer results."""
    out = {}
    for k, f in enumerate(factors):
        cols = {n: np.full(f.n_levels, b) for n, b in zip(fixed_names, beta)}
        for j, t in enumerate(f.terms):
            cols[t] = cols.get(t, 0.0) + modes[k][:, j]
        out[f.name] = pd.DataFrame(cols, index=pd.Index([str(v) for v in f.levels]))
    return out


def cond_sds(lam: np.ndarray, blocks: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """lme4's ``condVar`` SDs of one factor's group effects, levels-major ``(G q,)``: the
    diagonals of ``σ² Λ C_g Λᵀ``, ``C_g`` the (G, q, q) diagonal blocks of ``K⁻¹`` (the
    conditional covariance of the spherical effects). The one implementation for lmer and
    glmer results."""
    C = sigma ** 2 * np.einsum("ij,gjk,lk->gil", lam, blocks, lam)
    return np.sqrt(np.clip(np.diagonal(C, axis1=1, axis2=2), 0, None)).ravel()


class RemlResult(MixedModelResult):
    """A frequentist (RE)ML fit of a Gaussian linear mixed model.

    Implements the result contract of :class:`~bayes_hlm.inference.contract.MixedModelResult`
    (shared with the Bayesian fit): ``nobs()``, ``fixef()``, ``confint(level=0.95, method=)``,
    ``icc()``/``r2()`` tables, ``summary()`` returning a :class:`ModelSummary`, ...

    Attributes
    ----------
    theta : ndarray
        Free elements of the relative covariance factor Λ (per term in formula order,
        lower triangle column-major); names in ``theta_names``.
    sigma : float
        Residual standard deviation.
    beta : ndarray
        Fixed effects (``fixed_names`` order).
    reml_criterion : float or None
        REML criterion at the optimum (REML fits).
    deviance : float
        ML deviance for ML fits; for REML fits the REML criterion (as lme4's
        ``deviance(m, REML=TRUE)``); see :attr:`loglik`.
    singular : bool
        lme4's ``isSingular`` (some diagonal element of Λ < 1e-4).
    convergence_messages : list of str
    """

    def __init__(self, spec, devfun: DevFun, opt: OptResult, messages: list[str],
                 control: dict | None = None):
        self.spec = spec
        self._design = devfun.design
        self.devfun = devfun
        self.opt = opt
        self.control = control or {}
        self.method = "REML" if devfun.reml else "ML"
        self.theta = opt.theta
        self.theta_names = devfun.tmap.names
        ev = devfun.evaluate(opt.theta)
        self._ev = ev
        self.beta = ev.beta
        self.sigma = devfun.sigma_hat(ev)
        self.objective = float(devfun.deviance(ev))
        self.reml_criterion = self.objective if devfun.reml else None
        self.deviance = self.objective
        self.fixed_names = tuple(self.design.fixed_names)
        self.convergence_messages = list(messages)
        tol = self.control.get("check_singular_tol", 1e-4)
        low = devfun.lower == 0
        self.singular = bool(np.any(self.theta[low] < tol))
        for m in self.convergence_messages:
            warnings.warn(m, ConvergenceWarning, stacklevel=3)
        if self.singular:
            warnings.warn(SINGULAR_MSG, BayesHLMWarning, stacklevel=3)

    # ------------------------------------------------------------------ basics
    @property
    def design(self):
        return self._design

    @property
    def npar(self) -> int:
        return self.devfun.stats.p + len(self.theta) + 1

    @property
    def loglik(self) -> float:
        return -0.5 * self.objective

    @property
    def aic(self) -> float:
        return -2 * self.loglik + 2 * self.npar

    @property
    def bic(self) -> float:
        return -2 * self.loglik + np.log(self.nobs()) * self.npar

    def __repr__(self) -> str:
        crit = (f"REML criterion {self.reml_criterion:.4f}" if self.reml_criterion is not None
                else f"deviance {self.deviance:.4f}")
        return f"RemlResult({self.formula!r}, {self.method}, {crit})"

    # ------------------------------------------------------------------ fixed
    def vcov(self) -> np.ndarray:
        return self.sigma ** 2 * np.linalg.inv(self._ev.S)

    @cached_property
    def _satt(self):
        from .api import blas_threads
        from .satterthwaite import vcov_varpar
        with blas_threads(self.control.get("blas_threads", 1)):
            return vcov_varpar(self.devfun, self.theta, self.sigma)

    def df(self, L=None) -> np.ndarray:
        """Satterthwaite df of each contrast row of ``L`` (default: each coefficient)."""
        from .satterthwaite import satterthwaite_df
        A, _, J = self._satt
        L = np.eye(len(self.beta)) if L is None else np.atleast_2d(L)
        return satterthwaite_df(self.vcov(), A, J, L)

    def fixef(self, level: float | None = None, ddf: str = "Satterthwaite") -> pd.DataFrame:
        """Estimates, SEs, Satterthwaite df, t and two-sided p (lmerTest's summary table).

        ``level``: accepted for the common signature; the table has no intervals (use
        :meth:`confint`). ``ddf="normal"`` gives z-tests."""
        if isinstance(level, str):  # fixef("Satterthwaite"): ddf was the first argument
            ddf, level = level, None
        se = np.sqrt(np.diag(self.vcov()))
        t = self.beta / se
        if ddf == "Satterthwaite":
            df = self.df()
            p = 2 * _sf.stdtr(df, -np.abs(t))  # = 2 t.sf(|t|, df)
        else:
            df = np.full(len(t), np.nan)
            p = 2 * _sf.ndtr(-np.abs(t))
        return pd.DataFrame({"estimate": self.beta, "se": se, "df": df, "t": t, "p": p},
                            index=pd.Index(self.fixed_names, name="term"))

    # ------------------------------------------------------------------ random
    def covariances(self) -> dict[str, np.ndarray]:
        """Σ_k = σ² Λ_k Λ_kᵀ per factor (terms of the factor concatenated)."""
        lams = self.devfun.tmap.lambdas(self.theta)
        return {f.name: self.sigma ** 2 * (L @ L.T)
                for f, L in zip(self.devfun.tmap.factors, lams)}

    def varcorr(self, names: str = "bayes_hlm") -> pd.DataFrame:
        """Group SDs, within-term correlations and residual SD (lme4 ``VarCorr``).

        ``names="lme4"``: lme4's group and term names (``Rat``, ``Rat.1``, ``(Intercept)``,
        ``Variety:Block``), see :mod:`bayes_hlm.reml.names`.
        """
        from .names import check_names, group_labels, term_label

        labels = group_labels(self.design, self.spec, check_names(names))
        rows = []
        covs = self.covariances()
        for f in self.devfun.tmap.factors:
            S = covs[f.name]
            sd = np.sqrt(np.clip(np.diag(S), 0, None))
            grp = [labels[k] for k, sl in zip(f.term_index, f.term_slices) for _ in range(sl.start, sl.stop)]
            tl = [term_label(t, names) for t in f.terms]
            for i, t in enumerate(tl):
                rows.append({"group": grp[i], "term": t, "term_b": "", "sd": sd[i],
                             "variance": S[i, i], "corr": np.nan})
            for k, sl in zip(f.term_index, f.term_slices):
                if not self.design.groups[k].correlated:
                    continue
                idx = range(sl.start, sl.stop)
                for i in idx:
                    for j in idx:
                        if j <= i:
                            continue
                        c = S[i, j] / (sd[i] * sd[j]) if sd[i] > 0 and sd[j] > 0 else np.nan
                        rows.append({"group": labels[k], "term": tl[i], "term_b": tl[j],
                                     "sd": np.nan, "variance": np.nan, "corr": c})
        rows.append({"group": "Residual", "term": "", "term_b": "", "sd": self.sigma,
                     "variance": self.sigma ** 2, "corr": np.nan})
        return pd.DataFrame(rows)

    @cached_property
    def _modes(self):
        u = self.devfun.conditional_modes(self._ev)
        lams = self._ev.lambdas
        return [uk @ L.T for uk, L in zip(u, lams)]

    def ranef(self, cond_var: bool = True) -> dict[str, pd.DataFrame]:
        """Conditional modes per factor, indexed by (level, term), with lme4 ``condVar`` SDs."""
        out = {}
        from .api import blas_threads
        with blas_threads(self.control.get("blas_threads", 1)):
            covs = self.devfun.conditional_cov(self._ev) if cond_var else None
        for k, f in enumerate(self.devfun.tmap.factors):
            b = self._modes[k]
            idx = pd.MultiIndex.from_product([[str(v) for v in f.levels], list(f.terms)],
                                             names=["level", "term"])
            df = pd.DataFrame({"mode": b.ravel()}, index=idx)
            if covs is not None:
                df["cond_sd"] = cond_sds(self._ev.lambdas[k], covs[k], self.sigma)
            out[f.name] = df
        return out

    def coef(self) -> dict[str, pd.DataFrame]:
        """Fixed + group effects per level (lme4 ``coef``)."""
        return coef_frames(self.devfun.tmap.factors, self.fixed_names, self.beta, self._modes)

    def fitted(self) -> pd.Series:
        mu = self.design.X @ self.beta
        if self.design.offset is not None:
            mu = mu + self.design.offset
        for k, f in enumerate(self.devfun.tmap.factors):
            mu = mu + np.einsum("nq,nq->n", f.Z, self._modes[k][f.codes])
        return pd.Series(mu, index=self.design.row_index, name="fitted")

    def residuals(self) -> pd.Series:
        r = self.design.y - self.fitted().to_numpy()
        return pd.Series(r, index=self.design.row_index, name="residuals")

    # ------------------------------------------------------------------ ICC / R²
    def variance_parts(self, terms: VarianceTerms = "performance") -> VarianceParts:
        """Variance components at the estimates: the Bayesian
        :func:`~bayes_hlm.inference.variance.variance_parts` with one "draw" (so both sides use
        one definition; performance's rule for slope-only terms by default)."""
        covs = {}
        for f, S in self.covariances().items():
            covs[f] = S[None]
        return variance_parts(self.design, self.beta[None, :], np.array([self.sigma]), covs,
                              terms=terms)

    def variance_components(self, terms: VarianceTerms = "performance") -> dict:
        """performance/insight variance parts: fixed, per-factor random, residual (floats).

        Per random term (lme4 group): a random intercept contributes its variance; a term with
        intercept and slopes ``(x|g)`` contributes Johnson's (2014) ``tr(Σ Zᵀ Z / n)``; a term
        without intercept (the slope part of ``(x||g)``) contributes nothing, as in
        ``insight::get_variance`` (performance 0.10.x), whose numbers the tests pin.
        ``terms="all"`` counts it too.
        """
        vp = self.variance_parts(terms)
        return {"fixed": float(vp.fixed[0]), "random": {k: float(v[0]) for k, v in vp.random.items()},
                "residual": float(vp.residual[0])}

    def _value_table(self, values: dict[str, np.ndarray], level: float) -> ValueTable:
        return ValueTable(pd.DataFrame({"estimate": [float(np.asarray(v).ravel()[0])
                                                     for v in values.values()]},
                                       index=pd.Index(list(values), name="quantity")))

    def icc(self, by_factor: bool = False, level: float | None = None,
            terms: VarianceTerms = "performance", prob: float | None = None) -> ValueTable:
        """ICC table (``performance::icc``; see :meth:`MixedModelResult.icc`). NaN for singular
        fits, as performance returns NA there."""
        out = super().icc(by_factor, level, terms, prob)
        if self.singular:
            warnings.warn("Can't compute random effect variances: the fit is singular "
                          "(performance returns NA here)", BayesHLMWarning, stacklevel=2)
            out.loc[["icc", "icc_unadjusted"], "estimate"] = np.nan
        return out

    def r2(self, level: float | None = None, terms: VarianceTerms = "performance",
           prob: float | None = None) -> ValueTable:
        """Nakagawa marginal / conditional R² (``performance::r2_nakagawa``).

        For singular fits performance drops the random variances: R²m = var_f / (var_f + σ²),
        R²c = NaN; reproduced here.
        """
        out = super().r2(level, terms, prob)
        if self.singular:
            warnings.warn("Can't compute random effect variances: the fit is singular "
                          "(performance returns NA for R2c)", BayesHLMWarning, stacklevel=2)
            vc = self.variance_components(terms)
            out.loc["r2_marginal", "estimate"] = vc["fixed"] / (vc["fixed"] + vc["residual"])
            out.loc["r2_conditional", "estimate"] = np.nan
        return out

    # ------------------------------------------------------------------ intervals
    def confint(self, *args, level: float | None = None, method: str | None = None, parm=None,
                nsim: int = 500, seed=None) -> pd.DataFrame:
        """Confidence intervals, as lme4's ``confint.merMod``: columns ``lower``, ``upper``; the
        header names the level and method (``"95% Wald CI"``).

        Call as on every result: ``confint(level=0.95, method="wald", parm=None)``, positional
        ``confint(0.9)`` / ``confint(0.9, "profile")``. The older call with the method first
        (``confint("profile")``, ``confint("wald", 0.9)``) still works, with a
        ``DeprecationWarning``.

        ``method="wald"``: fixed effects only (``β ± z se``).
        ``method="profile"``: profile-likelihood intervals for the variance parameters (rows
        ``sd(term | factor)``, ``cor(a, b | factor)``, ``sigma``) and the fixed effects, from the
        ML deviance (REML fits are refitted by ML first, as lme4 does); see
        :mod:`bayes_hlm.reml.profile`.
        ``method="boot"``: parametric-bootstrap percentile intervals for the same rows
        (``nsim`` simulations, ``seed``), refitting by this fit's criterion (lme4 ``bootMer``).
        ``parm``: optional list of row names to return (the profile computes only those; the
        bootstrap refits give all parameters at once).
        """
        if len(args) > 2:
            raise TypeError("confint() takes at most two positional arguments (level, method)")
        pos = list(args)
        if pos and isinstance(pos[0], str):  # the older order: method first
            warnings.warn("confint(method, ...) with the method first is deprecated: use "
                          "confint(level, method=...)", DeprecationWarning, stacklevel=2)
            pos = pos[1:2] + pos[:1]
            if len(pos) == 1:
                pos = [None] + pos
        if pos:
            if level is not None and pos[0] is not None:
                raise TypeError("confint() got the level twice")
            level = pos[0] if pos[0] is not None else level
        if len(pos) > 1:
            if method is not None:
                raise TypeError("confint() got the method twice")
            method = pos[1]
        level = DEFAULT_LEVEL if level is None else float(level)
        method = method or "wald"
        from .api import blas_threads
        with blas_threads(self.control.get("blas_threads", 1)):
            out = self._confint(method, level, parm, nsim, seed)
        if parm is not None:
            out = out.loc[[p for p in parm if p in out.index]]
        return label_interval(out, level, method)

    def _confint(self, method, level, parm, nsim, seed) -> pd.DataFrame:
        if method == "wald":
            z = _sf.ndtri(0.5 + level / 2)
            se = np.sqrt(np.diag(self.vcov()))
            out = pd.DataFrame({"lower": self.beta - z * se, "upper": self.beta + z * se},
                               index=pd.Index(self.fixed_names))
        elif method == "profile":
            from .profile import profile_confint
            if self.method == "ML":
                ml = self
            else:
                if "_ml_fit" not in self.__dict__:
                    from .api import _refit_ml
                    self.__dict__["_ml_fit"] = _refit_ml(self)
                ml = self.__dict__["_ml_fit"]
            out = profile_confint(self, level=level, which=parm, ml=ml)
        elif method == "boot":
            from .profile import boot_confint
            out = boot_confint(self, level=level, nsim=nsim, seed=seed)
        else:
            raise BayesHLMError(f"method must be 'wald', 'profile' or 'boot', not {method!r}")
        return out

    # ------------------------------------------------------------------ output
    # ------------------------------------------------------- estimation hooks
    def _linear_estimates(self, L: np.ndarray, level: float = DEFAULT_LEVEL,
                          kind: str | None = None) -> pd.DataFrame:
        """Wald t-table of the rows of ``L β`` with Satterthwaite df (``kind`` is ignored)."""
        return wald_table(self.beta, self.vcov(), self.df, L, level)

    def linear_draws(self, L: np.ndarray) -> np.ndarray:
        raise BayesHLMError("a REML fit has no draws (return_draws / draws need a Bayesian fit)")

    def hypothesis(self, hypotheses, alpha: float = 0.05) -> pd.DataFrame:
        """Wald tests of linear hypotheses with Satterthwaite df (brms ``hypothesis`` syntax,
        lmerTest ``contest``); see :func:`bayes_hlm.inference.hypotheses.wald_hypothesis`."""
        from ..inference.hypotheses import wald_hypothesis

        return wald_hypothesis(self, hypotheses, alpha=alpha)

    def tidy(self, effects=("fixed", "ran_pars"), conf_level: float = DEFAULT_LEVEL,
             conf_method: str | None = None, names: str = "bayes_hlm", **kwargs) -> ReportFrame:
        """broom.mixed-style long table (``conf_method`` ``"wald"``, ``"profile"``, ``"boot"``
        for the random-effect parameters).

        ``names="lme4"`` gives lme4's names as broom.mixed prints them: ``(Intercept)``,
        groups ``Rat`` / ``Rat.1`` for two terms on one factor, ``Variety:Block`` for the inner
        factor of ``(1 | Block/Variety)`` (see :mod:`bayes_hlm.reml.names`).
        """
        from ..inference.tidy import TidyLabels, wald_tidy
        from .names import check_names, factor_labels, level_labels, term_label

        check_names(names)
        labels = None
        if names != "bayes_hlm":
            flab = dict(zip((g.factor for g in self.design.groups),
                            factor_labels(self.design, self.spec, names)))
            labels = TidyLabels(term=lambda t: term_label(t, names),
                                varcorr=self.varcorr(names=names), factor=flab,
                                level=level_labels(self.design, self.spec, names))
        return wald_tidy(self, effects, conf_level, conf_method, labels, **kwargs)

    def predict(self, newdata: pd.DataFrame | None = None, group_effects: bool = True,
                allow_new_levels: bool = False) -> pd.DataFrame:
        """Predictions (lme4 ``predict.merMod``): ``X β`` plus the conditional modes of the
        groups (``group_effects=False``: population level). Levels unseen in fitting raise
        unless ``allow_new_levels`` (then their effects are 0, as lme4). Column ``estimate``."""
        if newdata is None:
            mu = self.fitted().to_numpy() if group_effects else self.design.X @ self.beta + (
                0.0 if self.design.offset is None else self.design.offset)
            return pd.DataFrame({"estimate": mu}, index=self.design.row_index)
        if self.spec is None:
            raise BayesHLMError("predict(newdata) needs a fit made from a formula and data")
        mu = newdata_eta(self.spec, self.devfun.tmap.factors, self.beta, self._modes, newdata,
                         group_effects, allow_new_levels)
        return pd.DataFrame({"estimate": mu}, index=newdata.index)

    def reference(self):
        """This fit as the typed reference that Bayesian comparisons and plots take
        (:class:`~bayes_hlm.inference.reference.FrequentistReference`)."""
        from ..inference.reference import FrequentistReference

        with warnings.catch_warnings():  # singular: NaN below, flagged by `singular`
            warnings.simplefilter("ignore", BayesHLMWarning)
            icc = float(self.icc().loc["icc", "estimate"])
            r2 = self.r2()
        return FrequentistReference(
            engine="REML (bayes_hlm.reml, lme4-exact)" if self.method == "REML"
            else "ML (bayes_hlm.reml, lme4-exact)",
            method=self.method, fixef=self.fixef(), varcorr=self.varcorr(), sigma=float(self.sigma),
            icc=icc, r2_marginal=float(r2.loc["r2_marginal", "estimate"]),
            r2_conditional=float(r2.loc["r2_conditional", "estimate"]), singular=self.singular,
            modes=self.ranef())

    def to_dict(self, names: str = "bayes_hlm") -> dict:
        """JSON-ready summary: fixed effects, variance components and ``glance()``'s fit statistics.

        Keys: ``fixed``, ``group_sd``, ``group_corr`` (keyed ``"termA,termB"``),
        ``group_corr_list`` (records ``{group, term1, term2, corr}``, unambiguous when a term
        name contains a comma), ``sigma``, ``method``, ``nobs``, ``ngrps`` (levels per
        grouping factor), ``npar``, ``df_residual``, ``theta``, ``logLik``, ``AIC``, ``BIC``,
        ``deviance`` (ML fits; ``null`` for REML, as broom.mixed's ``glance``),
        ``reml_criterion`` (REML fits; ``null`` for ML), ``singular``. The same keys for REML
        and ML. ``names="lme4"`` uses lme4's names (see :mod:`bayes_hlm.reml.names`).
        """
        from .names import factor_labels, term_label

        fe = self.fixef()
        vc = self.varcorr(names=names)
        gsd: dict = {}
        gcor: dict = {}
        records: list = []
        for _, r in vc.iterrows():
            if r["group"] == "Residual":
                continue
            if r["term_b"]:
                gcor.setdefault(r["group"], {})[f"{r['term']},{r['term_b']}"] = float(r["corr"])
                records.append({"group": r["group"], "term1": r["term"], "term2": r["term_b"],
                                "corr": float(r["corr"])})
            else:
                gsd.setdefault(r["group"], {})[r["term"]] = float(r["sd"])
        flabels = factor_labels(self.design, self.spec, names)
        fnames = {g.factor: lab for g, lab in zip(self.design.groups, flabels)}
        theta_names = self.theta_names
        if names == "lme4":  # getME(m, "theta") names: factor.(Intercept), factor.termB.termA
            theta_names = []
            for f in self.devfun.tmap.factors:
                for r_, c_ in zip(f.rows, f.cols):
                    a, b = term_label(f.terms[r_], names), term_label(f.terms[c_], names)
                    theta_names.append(f"{fnames[f.name]}.{a}" if r_ == c_
                                       else f"{fnames[f.name]}.{a}.{b}")
        return {
            "fixed": {term_label(t, names): {"estimate": float(r["estimate"]), "se": float(r["se"]),
                                             "df": float(r["df"]), "p": float(r["p"])}
                      for t, r in fe.iterrows()},
            "group_sd": gsd,
            "group_corr": gcor,
            "group_corr_list": records,
            "sigma": float(self.sigma),
            "method": self.method,
            "nobs": int(self.nobs()),
            "ngrps": {fnames[k]: int(v) for k, v in self.ngrps().items()},
            "npar": int(self.npar),
            "df_residual": int(self.nobs() - self.npar),
            "theta": {n: float(v) for n, v in zip(theta_names, self.theta)},
            "logLik": float(self.loglik),
            "AIC": float(self.aic),
            "BIC": float(self.bic),
            "deviance": float(self.deviance) if self.method == "ML" else None,
            "reml_criterion": None if self.reml_criterion is None else float(self.reml_criterion),
            "singular": bool(self.singular),
        }

    def summary(self, level: float | None = None, print_out=None) -> ModelSummary:
        """lmerTest's summary: a :class:`ModelSummary` (one row per parameter: fixed effects with
        estimate, SE, Satterthwaite df, t, p; group SDs, correlations and sigma) whose ``print``
        is lme4's report. ``level`` is accepted for the common signature (no intervals here).

        The older ``summary(print_out=...)`` (printing, returning the text) still works, with a
        ``DeprecationWarning``.
        """
        out = ModelSummary(self._summary_table())
        out.text = self._summary_text()
        if print_out is None:
            return out
        warnings.warn("summary(print_out=...) is deprecated: summary() returns the table; "
                      "print(fit.summary()) prints the report", DeprecationWarning, stacklevel=2)
        if print_out:
            print(out.text)
        return out.text

    def _summary_table(self) -> pd.DataFrame:
        fe = self.fixef()
        rows = [{"parameter": t, "kind": "fixed", "estimate": r["estimate"], "se": r["se"],
                 "df": r["df"], "t": r["t"], "p": r["p"]} for t, r in fe.iterrows()]
        for _, r in self.varcorr().iterrows():
            if r["group"] == "Residual":
                rows.append({"parameter": "sigma", "kind": "sigma", "estimate": r["sd"]})
            elif r["term_b"]:
                rows.append({"parameter": f"cor({r['term']}, {r['term_b']} | {r['group']})",
                             "kind": "corr", "estimate": r["corr"]})
            else:
                rows.append({"parameter": f"sd({r['term']} | {r['group']})", "kind": "sd",
                             "estimate": r["sd"]})
        cols = ["kind", "estimate", "se", "df", "t", "p"]
        return pd.DataFrame(rows).set_index("parameter").reindex(columns=cols)

    def _summary_text(self) -> str:
        lines = []
        title = ("Linear mixed model fit by REML. t-tests use Satterthwaite's method"
                 if self.method == "REML" else
                 "Linear mixed model fit by maximum likelihood. t-tests use Satterthwaite's method")
        lines += [title, f"Formula: {self.formula}", ""]
        if self.method == "REML":
            lines.append(f"REML criterion at convergence: {self.reml_criterion:.1f}")
        else:
            lines.append(f"{'AIC':>9}{'BIC':>9}{'logLik':>9}{'deviance':>9}{'df.resid':>9}")
            lines.append(f"{self.aic:9.1f}{self.bic:9.1f}{self.loglik:9.1f}{self.deviance:9.1f}"
                         f"{self.nobs() - self.npar:9d}")
        res = self.residuals().to_numpy() / self.sigma
        qs = np.quantile(res, [0, .25, .5, .75, 1])
        lines += ["", "Scaled residuals:", "    Min      1Q  Median      3Q     Max",
                  " ".join(f"{v:7.4f}" for v in qs), "", "Random effects:"]
        vc = self.varcorr()
        lines.append(f" {'Groups':<10} {'Name':<12} {'Variance':>10} {'Std.Dev.':>9}  Corr")
        for _, r in vc.iterrows():
            if r["term_b"]:
                lines.append(f" {'':<10} {r['term']}~{r['term_b']:<12} corr {r['corr']:6.3f}")
            else:
                nm = "" if r["group"] == "Residual" else r["term"]
                lines.append(f" {r['group']:<10} {nm:<12} {r['variance']:10.4g} {r['sd']:9.4g}")
        lines.append(f"Number of obs: {self.nobs()}, groups:  "
                     + ", ".join(f"{k}, {v}" for k, v in self.ngrps().items()))
        lines += ["", "Fixed effects:"]
        fe = self.fixef()
        lines.append(f"{'':<16}{'Estimate':>11}{'Std. Error':>11}{'df':>9}{'t value':>9}"
                     f"{'Pr(>|t|)':>11}")
        for t, r in fe.iterrows():
            lines.append(f"{t:<16}{r['estimate']:11.4g}{r['se']:11.4g}{r['df']:9.2f}"
                         f"{r['t']:9.3f}{r['p']:11.3g}")
        if self.singular:
            lines += ["", SINGULAR_MSG]
        for m in self.convergence_messages:
            lines.append(m)
        return "\n".join(lines)
