"""The fitted GLMM (lme4's ``mkMerMod`` for ``glmer``), on the shared result contract."""

from __future__ import annotations

import warnings
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import special as _sf

from ..errors import BayesHLMError, BayesHLMWarning, ConvergenceWarning
from ..inference.contract import MixedModelResult, ModelSummary, ValueTable
from ..inference.frames import ReportFrame
from ..inference.intervals import DEFAULT_LEVEL, label_interval, wald_table
from ..inference.variance import VarianceParts, VarianceTerms, variance_parts
from ..reml.result import coef_frames, cond_sds, newdata_eta
from .fit import GlmerFit, sigma_of

__all__ = ["GlmerResult", "SINGULAR_MSG"]

SINGULAR_MSG = ("boundary (singular) fit: a variance is estimated as zero or a correlation as +-1 "
                "(theta = {theta}); simplify the random effects (drop the correlation or the term) "
                "or see 'Singular fits' in docs/r_to_bayes_hlm.md")

_FAMILY_TITLE = {"binomial": "binomial", "poisson": "poisson", "Gamma": "Gamma",
                 "negative_binomial": "Negative Binomial"}


class GlmerResult(MixedModelResult):
    """A maximum-likelihood GLMM fit (Laplace, adaptive Gauss–Hermite or nAGQ = 0), as glmer.

    Attributes
    ----------
    family : GlmFamily
        Family, link and (negative binomial) ``nb_theta``.
    nagq : int
    theta, beta : ndarray
        Relative covariance factor elements (lme4's θ, formula order) and fixed effects.
    sigma : float
        lme4's ``sigma()``: 1 except Gamma (``sqrt(pwrss / n)``).
    objective : float
        The optimised criterion (lme4's ``-2 logLik``; for ``nagq > 1`` without the saturated
        model's term).
    singular : bool
        Some diagonal θ below ``check_singular_tol`` (1e-4), lme4's ``isSingular``.
    convergence_messages : list of str
    vcov_method : str
        ``"hessian"`` (lme4's default for ``nagq >= 1``: the finite-difference Hessian over
        (θ, β)) or ``"RX"`` (``σ² (RXᵀRX)⁻¹``: ``nagq = 0``, and Gamma, see :meth:`vcov`).
    wall_s : float
        Seconds from parsing the formula to the fitted result.
    """

    def __init__(self, fit: GlmerFit, control: dict | None = None, wall_s: float = float("nan"),
                 formula: str | None = None):
        self.fit = fit
        self.model = fit.model
        self.spec = fit.model.spec
        self.family = fit.model.family
        self.nagq = fit.nagq
        self.control = control or {}
        self.theta = fit.theta
        self.beta = fit.beta
        self.theta_names = fit.model.layout.names
        self.fixed_names = tuple(self.design.fixed_names)
        self.objective = fit.objective
        self.sigma = sigma_of(fit.model, fit.state)
        self.vcov_method = fit.vcov_method
        self.wall_s = wall_s
        self._formula = formula
        self.convergence_messages = list(fit.messages)
        tol = self.control.get("check_singular_tol", 1e-4)
        low = fit.model.layout.lower == 0
        self.singular = bool(np.any(self.theta[low] < tol))
        for m in self.convergence_messages:
            warnings.warn(m, ConvergenceWarning, stacklevel=3)
        if self.singular:
            warnings.warn(self.singular_message, BayesHLMWarning, stacklevel=3)

    # ------------------------------------------------------------------ basics
    @property
    def design(self):
        return self.model.design

    @property
    def formula(self) -> str:
        return self._formula or self.design.formula

    @property
    def singular_message(self) -> str:
        return SINGULAR_MSG.format(theta=np.round(self.theta, 5).tolist())

    @property
    def converged(self) -> bool:
        return not self.convergence_messages

    @property
    def npar(self) -> int:
        extra = 1 if self.family.name in ("Gamma", "negative_binomial") else 0
        return len(self.beta) + len(self.theta) + extra

    @property
    def loglik_lme4(self) -> float:
        """The log-likelihood as lme4's ``logLik`` prints it (``nagq > 1``: without the saturated
        model's term, e.g. cbpp -50.005)."""
        return -0.5 * self.objective

    @property
    def loglik_saturated(self) -> float:
        return self.fit.devfun.saturated_loglik

    @property
    def loglik(self) -> float:
        """The full log-likelihood (for ``nagq > 1`` lme4's value plus the saturated term)."""
        if self.nagq > 1:
            return self.loglik_lme4 + self.loglik_saturated
        return self.loglik_lme4

    @property
    def aic(self) -> float:
        return -2 * self.loglik + 2 * self.npar

    @property
    def bic(self) -> float:
        return -2 * self.loglik + np.log(self.nobs()) * self.npar

    @property
    def deviance(self) -> float:
        """``-2 logLik`` (the 'deviance' column of glmer's summary)."""
        return -2 * self.loglik

    @property
    def conditional_deviance(self) -> float:
        """lme4's ``deviance(m)``: the sum of squared deviance residuals at the modes."""
        return float(self.fit.state.devres.sum())

    @property
    def nb_theta(self) -> float | None:
        return self.family.nb_theta if self.family.name == "negative_binomial" else None

    def __repr__(self) -> str:
        return (f"GlmerResult({self.formula!r}, {self.family.name}({self.family.link}), "
                f"nagq={self.nagq}, logLik {self.loglik:.4f})")

    # ------------------------------------------------------------------ fixed
    def vcov(self) -> np.ndarray:
        """Covariance of the fixed effects, lme4's default: ``2 H⁻¹`` from the finite-difference
        Hessian of the criterion over (θ, β) for ``nagq >= 1``; ``σ² (RXᵀRX)⁻¹`` for
        ``nagq = 0``. Gamma fits use ``σ² (RXᵀRX)⁻¹`` always: lme4's Hessian ones are ~20x too
        small there (its criterion plugs in the moment dispersion; the fixture's notes), and
        the RX ones are lme4's ``vcov(m, use.hessian = FALSE)``."""
        return self.fit.vcov

    def fixef(self, level: float | None = None) -> pd.DataFrame:
        """Estimates, SEs, z (t for Gamma, as glmer labels it; normal p-values either way)."""
        se = np.sqrt(np.diag(self.vcov()))
        z = self.beta / se
        p = 2 * _sf.ndtr(-np.abs(z))
        return pd.DataFrame({"estimate": self.beta, "se": se, "z": z, "p": p},
                            index=pd.Index(self.fixed_names, name="term"))

    # ------------------------------------------------------------------ random
    def covariances(self) -> dict[str, np.ndarray]:
        lams = self.model.layout.lambdas(self.theta)
        return {f.name: self.sigma ** 2 * (L @ L.T) for f, L in zip(self.model.layout.factors, lams)}

    def varcorr(self) -> pd.DataFrame:
        """Group SDs and within-term correlations (lme4 ``VarCorr``); Gamma adds the residual
        row (``sigma``)."""
        rows = []
        covs = self.covariances()
        for f in self.model.layout.factors:
            S = covs[f.name]
            sd = np.sqrt(np.clip(np.diag(S), 0, None))
            for i, t in enumerate(f.terms):
                rows.append({"group": f.name, "term": t, "term_b": "", "sd": sd[i],
                             "variance": S[i, i], "corr": np.nan})
            for sl, corr in zip(f.term_slices, f.correlated):
                if not corr:
                    continue
                for i in range(sl.start, sl.stop):
                    for j in range(i + 1, sl.stop):
                        c = S[i, j] / (sd[i] * sd[j]) if sd[i] > 0 and sd[j] > 0 else np.nan
                        rows.append({"group": f.name, "term": f.terms[i], "term_b": f.terms[j],
                                     "sd": np.nan, "variance": np.nan, "corr": c})
        if self.family.has_scale:
            rows.append({"group": "Residual", "term": "", "term_b": "", "sd": self.sigma,
                         "variance": self.sigma ** 2, "corr": np.nan})
        return pd.DataFrame(rows, columns=["group", "term", "term_b", "sd", "variance", "corr"])

    @cached_property
    def _modes(self) -> list[np.ndarray]:
        u = self.fit.state.u
        lams = self.model.layout.lambdas(self.theta)
        out = []
        for f, L in zip(self.model.layout.factors, lams):
            U = u[f.offset:f.offset + f.size].reshape(f.n_levels, f.q)
            out.append(self.sigma * U @ L.T if self.family.has_scale else U @ L.T)
        return out

    def ranef(self, cond_var: bool = True) -> dict[str, pd.DataFrame]:
        """Conditional modes per factor, indexed (level, term), with lme4's ``condVar`` SDs
        (``σ² Λ K⁻¹ Λᵀ`` per level)."""
        blocks = self.fit.state.factor.block_inverse() if cond_var else None
        lams = self.model.layout.lambdas(self.theta)
        out = {}
        for k, f in enumerate(self.model.layout.factors):
            idx = pd.MultiIndex.from_product([[str(v) for v in f.levels], list(f.terms)],
                                             names=["level", "term"])
            df = pd.DataFrame({"mode": self._modes[k].ravel()}, index=idx)
            if blocks is not None:
                df["cond_sd"] = cond_sds(lams[k], blocks[k], self.sigma)
            out[f.name] = df
        return out

    def coef(self) -> dict[str, pd.DataFrame]:
        """Fixed + group effects per level (lme4 ``coef``)."""
        return coef_frames(self.model.layout.factors, self.fixed_names, self.beta, self._modes)

    # ------------------------------------------------------------------ predictions
    def _inverse_link(self, eta):
        return self.family.mu_eta(np.asarray(eta, dtype=float))[0]

    def fitted(self) -> pd.Series:
        """Fitted means (response scale) at the conditional modes (lme4 ``fitted``)."""
        return pd.Series(self.fit.state.mu, index=self.design.row_index, name="fitted")

    def predict(self, newdata: pd.DataFrame | None = None, type: str = "link",
                group_effects: bool = True, allow_new_levels: bool = False) -> pd.DataFrame:
        """Predictions (lme4 ``predict.merMod``) on the link (``type="link"``, default) or the
        response scale (``"response"``): ``Xβ + offset`` plus the conditional modes
        (``group_effects=False``: population level). Unseen levels raise unless
        ``allow_new_levels`` (then their effects are 0, as lme4). Column ``estimate``."""
        if type not in ("link", "response"):
            raise BayesHLMError(f"type must be 'link' or 'response', not {type!r}")
        d = self.design
        if newdata is None:
            eta = d.X @ self.beta + self.model.offset
            if group_effects:
                eta = self.fit.state.eta
            index = d.row_index
        else:
            if self.spec is None:
                raise BayesHLMError("predict(newdata) needs a fit made from a formula and data")
            eta = newdata_eta(self.spec, self.model.layout.factors, self.beta, self._modes,
                              newdata, group_effects, allow_new_levels)
            index = newdata.index
        est = eta if type == "link" else self._inverse_link(eta)
        return pd.DataFrame({"estimate": np.asarray(est, dtype=float)}, index=index)

    def residuals(self, type: str = "deviance") -> pd.Series:
        """Deviance (default), Pearson or response residuals (lme4 ``residuals.glmResp``)."""
        m, st = self.model, self.fit.state
        if type == "response":
            r = m.y - st.mu
        elif type == "pearson":
            r = (m.y - st.mu) * np.sqrt(m.pw / self.family.variance(st.mu))
        elif type == "deviance":
            r = np.sign(m.y - st.mu) * np.sqrt(np.clip(st.devres, 0, None))
        else:
            raise BayesHLMError(f"type must be 'deviance', 'pearson' or 'response', not {type!r}")
        return pd.Series(r, index=self.design.row_index, name="residuals")

    # ------------------------------------------------------------------ ICC / R²
    def variance_parts(self, terms: VarianceTerms = "performance") -> VarianceParts:
        from .variance import glmer_variance_parts

        return glmer_variance_parts(self, terms)

    def _value_table(self, values: dict[str, np.ndarray], level: float) -> ValueTable:
        return ValueTable(pd.DataFrame({"estimate": [float(np.asarray(v).ravel()[0])
                                                     for v in values.values()]},
                                       index=pd.Index(list(values), name="quantity")))

    def icc(self, by_factor: bool = False, level: float | None = None,
            terms: VarianceTerms = "performance", prob: float | None = None) -> ValueTable:
        """ICC (``performance::icc``); NaN for singular fits, as performance returns NA."""
        out = super().icc(by_factor, level, terms, prob)
        if self.singular:
            warnings.warn("Can't compute random effect variances: the fit is singular "
                          "(performance returns NA here)", BayesHLMWarning, stacklevel=2)
            out.loc[["icc", "icc_unadjusted"], "estimate"] = np.nan
        return out

    def r2(self, level: float | None = None, terms: VarianceTerms = "performance",
           prob: float | None = None) -> ValueTable:
        """Nakagawa's R² (``performance::r2_nakagawa``); singular fits: R²m without the random
        variances, R²c NaN (performance's convention)."""
        out = super().r2(level, terms, prob)
        if self.singular:
            warnings.warn("Can't compute random effect variances: the fit is singular "
                          "(performance returns NA for R2c)", BayesHLMWarning, stacklevel=2)
            vp = self.variance_parts(terms)
            out.loc["r2_marginal", "estimate"] = float(vp.fixed[0] / (vp.fixed[0] + vp.residual[0]))
            out.loc["r2_conditional", "estimate"] = np.nan
        return out

    # ------------------------------------------------------------------ intervals
    def confint(self, level: float | None = None, method: str | None = None, parm=None,
                **kwargs) -> pd.DataFrame:
        """Wald intervals of the fixed effects (``method="wald"``, the default; lme4's
        ``confint(m, method = "Wald")``): columns ``lower``, ``upper``; the header names the
        level. ``method="profile"``: profile-likelihood intervals (lme4's
        ``confint(m, method = "profile")``) of the variance parameters (rows
        ``sd(term | factor)``, ``cor(a, b | factor)``: lme4's ``.sig01, ...`` in its order)
        and the fixed effects, the criterion minimised over all other parameters at each
        value; see :mod:`bayes_hlm.glmer.profile` (NB: θ_NB held at its estimate; Gamma:
        fixed effects only, as lme4). ``parm`` selects rows (the profile computes only
        those)."""
        level = DEFAULT_LEVEL if level is None else float(level)
        method = (method or "wald").lower()
        if method == "wald":
            z = _sf.ndtri(0.5 + level / 2)
            se = np.sqrt(np.diag(self.vcov()))
            out = pd.DataFrame({"lower": self.beta - z * se, "upper": self.beta + z * se},
                               index=pd.Index(self.fixed_names))
        elif method == "profile":
            out = self._profile_rows(level, parm)
        else:
            raise BayesHLMError(f"method must be 'wald' or 'profile', not {method!r}")
        if parm is not None:
            out = out.loc[[p for p in parm if p in out.index]]
        return label_interval(out, level, method)

    def _profile_rows(self, level: float, parm) -> pd.DataFrame:
        """Profile intervals of the rows in ``parm`` (default all), each computed once per
        level (``tidy(conf_method="profile")`` asks for the fixed and variance rows
        separately; a profile costs many refits)."""
        from .profile import profile_confint, profile_names

        names = profile_names(self)
        want = names if parm is None else [n for n in names if n in parm]
        cache = self.__dict__.setdefault("_profile_cache", {}).setdefault(level, {})
        missing = [n for n in want if n not in cache]
        if missing:
            new = profile_confint(self, level, missing)
            cache.update({n: (float(r["lower"]), float(r["upper"])) for n, r in new.iterrows()})
        return pd.DataFrame([cache[n] for n in want], index=pd.Index(want),
                            columns=["lower", "upper"])

    # ------------------------------------------------------- estimation hooks
    def _linear_estimates(self, L: np.ndarray, level: float = DEFAULT_LEVEL,
                          kind: str | None = None) -> pd.DataFrame:
        """Wald z-table of the rows of ``L β`` (normal reference, as glmer)."""
        return wald_table(self.beta, self.vcov(), lambda L: np.full(len(np.atleast_2d(L)), np.inf),
                          L, level)

    def linear_draws(self, L: np.ndarray) -> np.ndarray:
        raise BayesHLMError("a glmer fit has no draws (return_draws / draws need a Bayesian fit)")

    def hypothesis(self, hypotheses, alpha: float = 0.05) -> pd.DataFrame:
        """Wald (z) tests of linear hypotheses (brms ``hypothesis`` syntax)."""
        from ..inference.hypotheses import wald_hypothesis

        return wald_hypothesis(self, hypotheses, alpha=alpha)

    def tidy(self, effects=("fixed", "ran_pars"), conf_level: float = DEFAULT_LEVEL,
             conf_method: str | None = None, exponentiate: bool = False, **kwargs) -> ReportFrame:
        """broom.mixed's ``tidy`` of a glmer fit: fixed rows with z statistics; ``exponentiate``
        gives odds / rate ratios (estimate and interval exponentiated, ``std.error`` by the delta
        method, as broom)."""
        from ..inference.tidy import check_effects, wald_tidy

        effects = check_effects(effects)
        rest = [e for e in effects if e != "fixed"]
        parts = []
        if "fixed" in effects:
            fe = self.fixef()
            if (conf_method or "wald").lower() == "profile":     # broom.mixed: profile rows
                ci = self.confint(conf_level, method="profile", parm=list(self.fixed_names))
                lo, hi = ci["lower"].to_numpy(), ci["upper"].to_numpy()
            else:
                z = float(_sf.ndtri(0.5 + conf_level / 2))
                lo = (fe["estimate"] - z * fe["se"]).to_numpy()
                hi = (fe["estimate"] + z * fe["se"]).to_numpy()
            parts.append(pd.DataFrame({
                "effect": "fixed", "group": "", "level": "", "term": fe.index,
                "estimate": fe["estimate"].to_numpy(), "std.error": fe["se"].to_numpy(),
                "conf.low": lo, "conf.high": hi,
                "statistic": fe["z"].to_numpy(), "p.value": fe["p"].to_numpy()}))
        if rest:
            parts.append(pd.DataFrame(wald_tidy(self, rest, conf_level, conf_method, **kwargs)))
        out = ReportFrame(pd.concat(parts, ignore_index=True))
        label_interval(out, conf_level, conf_method or "wald")
        if exponentiate:
            fx = out["effect"] == "fixed"
            est = out.loc[fx, "estimate"].to_numpy(dtype=float)
            out.loc[fx, "std.error"] = out.loc[fx, "std.error"].to_numpy(dtype=float) * np.exp(est)
            for c in ("estimate", "conf.low", "conf.high"):
                out.loc[fx, c] = np.exp(out.loc[fx, c].to_numpy(dtype=float))
        return out

    # shim for wald_tidy / wald_hypothesis, which read lmerTest-style columns
    def df(self, L=None) -> np.ndarray:
        n = len(self.beta) if L is None else len(np.atleast_2d(L))
        return np.full(n, np.inf)

    def reference(self):
        """This fit as the typed frequentist reference Bayesian comparisons take."""
        from ..inference.reference import FrequentistReference

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BayesHLMWarning)
            try:
                icc = float(self.icc().loc["icc", "estimate"])
                r2 = self.r2()
                r2m = float(r2.loc["r2_marginal", "estimate"])
                r2c = float(r2.loc["r2_conditional", "estimate"])
            except BayesHLMError:
                icc = r2m = r2c = float("nan")
        fe = self.fixef().rename(columns={"z": "t"})
        fe.insert(2, "df", np.inf)
        how = {0: "nAGQ = 0", 1: "Laplace"}.get(self.nagq, f"adaptive GHQ, nAGQ = {self.nagq}")
        return FrequentistReference(
            engine=f"ML ({how}; bayes_hlm.glmer, lme4-exact)", method="ML", fixef=fe,
            varcorr=self.varcorr(), sigma=float(self.sigma) if self.family.has_scale else float("nan"),
            icc=icc, r2_marginal=r2m, r2_conditional=r2c, singular=self.singular,
            modes=self.ranef())

    # ------------------------------------------------------------------ output
    def to_dict(self) -> dict:
        """The JSON of ``bayes-hlm glmer``: ``family, link, nagq, n_obs, groups, fixed {NAME:
        {estimate, se, z, p}}, group_sd, group_corr, dispersion (NB θ / Gamma σ, else null),
        loglik (full), loglik_lme4, deviance (-2 loglik), deviance_conditional (lme4's
        deviance(m)), aic, bic, npar, theta, singular, converged, messages, vcov_method, wall_s``."""
        fe = self.fixef()
        gsd: dict = {}
        gcor: dict = {}
        for _, r in self.varcorr().iterrows():
            if r["group"] == "Residual":
                continue
            if r["term_b"]:
                gcor.setdefault(r["group"], {})[f"{r['term']},{r['term_b']}"] = float(r["corr"])
            else:
                gsd.setdefault(r["group"], {})[r["term"]] = float(r["sd"])
        disp = self.nb_theta if self.nb_theta is not None else (
            float(self.sigma) if self.family.has_scale else None)
        msgs = list(self.convergence_messages) + ([self.singular_message] if self.singular else [])
        return {
            "family": self.family.name, "link": self.family.link, "nagq": int(self.nagq),
            "n_obs": int(self.nobs()), "groups": {k: int(v) for k, v in self.ngrps().items()},
            "fixed": {t: {"estimate": float(r["estimate"]), "se": float(r["se"]),
                          "z": float(r["z"]), "p": float(r["p"])} for t, r in fe.iterrows()},
            "group_sd": gsd, "group_corr": gcor, "dispersion": disp,
            "loglik": float(self.loglik), "loglik_lme4": float(self.loglik_lme4),
            "deviance": float(self.deviance), "deviance_conditional": self.conditional_deviance,
            "aic": float(self.aic), "bic": float(self.bic), "npar": int(self.npar),
            "theta": {n: float(v) for n, v in zip(self.theta_names, self.theta)},
            "singular": bool(self.singular), "converged": bool(self.converged),
            "messages": msgs, "vcov_method": self.vcov_method, "wall_s": float(self.wall_s),
        }

    def summary(self, level: float | None = None) -> ModelSummary:
        """The parameter table; ``print`` shows glmer's report."""
        fe = self.fixef()
        rows = [{"parameter": t, "kind": "fixed", "estimate": r["estimate"], "se": r["se"],
                 "z": r["z"], "p": r["p"]} for t, r in fe.iterrows()]
        for _, r in self.varcorr().iterrows():
            if r["group"] == "Residual":
                rows.append({"parameter": "sigma", "kind": "sigma", "estimate": r["sd"]})
            elif r["term_b"]:
                rows.append({"parameter": f"cor({r['term']}, {r['term_b']} | {r['group']})",
                             "kind": "corr", "estimate": r["corr"]})
            else:
                rows.append({"parameter": f"sd({r['term']} | {r['group']})", "kind": "sd",
                             "estimate": r["sd"]})
        out = ModelSummary(pd.DataFrame(rows).set_index("parameter")
                           .reindex(columns=["kind", "estimate", "se", "z", "p"]))
        out.text = self._summary_text()
        return out

    def _summary_text(self) -> str:
        how = {0: "Adaptive Gauss-Hermite Quadrature (nAGQ = 0)",
               1: "Laplace Approximation"}.get(self.nagq,
                                               f"Adaptive Gauss-Hermite Quadrature (nAGQ = {self.nagq})")
        fam = _FAMILY_TITLE[self.family.name]
        if self.nb_theta is not None:
            fam = f"Negative Binomial({self.nb_theta:.4g})"
        lines = [f"Generalized linear mixed model fit by maximum likelihood ({how}) ['glmerMod']",
                 f" Family: {fam}  ( {self.family.link} )", f"Formula: {self.formula}", ""]
        lines.append(f"{'AIC':>9}{'BIC':>9}{'logLik':>9}{'deviance':>9}{'df.resid':>9}")
        lines.append(f"{self.aic:9.1f}{self.bic:9.1f}{self.loglik:9.1f}{self.deviance:9.1f}"
                     f"{self.nobs() - self.npar:9d}")
        if self.nagq > 1:
            lines.append(f"(lme4 prints logLik {self.loglik_lme4:.1f}: without the saturated "
                         "model's term for nAGQ > 1)")
        res = self.residuals("pearson").to_numpy()
        qs = np.quantile(res, [0, .25, .5, .75, 1])
        lines += ["", "Scaled residuals:", "    Min      1Q  Median      3Q     Max",
                  " ".join(f"{v:7.4f}" for v in qs), "", "Random effects:",
                  f" {'Groups':<10} {'Name':<12} {'Variance':>10} {'Std.Dev.':>9}  Corr"]
        for _, r in self.varcorr().iterrows():
            if r["term_b"]:
                lines.append(f" {'':<10} {r['term']}~{r['term_b']:<12} corr {r['corr']:6.3f}")
            else:
                nm = "" if r["group"] == "Residual" else r["term"]
                lines.append(f" {r['group']:<10} {nm:<12} {r['variance']:10.4g} {r['sd']:9.4g}")
        lines.append(f"Number of obs: {self.nobs()}, groups:  "
                     + ", ".join(f"{k}, {v}" for k, v in self.ngrps().items()))
        stat = "t value" if self.family.has_scale else "z value"
        lines += ["", "Fixed effects:",
                  f"{'':<16}{'Estimate':>11}{'Std. Error':>11}{stat:>9}{'Pr(>|z|)':>11}"]
        for t, r in self.fixef().iterrows():
            lines.append(f"{t:<16}{r['estimate']:11.4g}{r['se']:11.4g}{r['z']:9.3f}{r['p']:11.3g}")
        if self.singular:
            lines += ["", self.singular_message]
        lines += self.convergence_messages
        return "\n".join(lines)
