"""The Bayesian fit result: lme4-style accessors over an ArviZ DataTree."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import numpy as np
import pandas as pd
import xarray as xr

from ..spec import variable_names as naming
from ..progress import phase
from ..settings import FitSettings
from ..spec.build import ModelSpec
from ..spec.priors import PriorSet
from ..inference._args import pop_deprecated, reject_unknown, resolve_level
from ..inference.frames import ReportFrame
from ..inference.intervals import DEFAULT_LEVEL, label_interval, summarise_draws
from . import tables
from .arviz_layout import arviz_tree, corr_pairs
from ..inference.contract import MixedModelResult, ModelSummary, ValueTable
from .draws import DrawSource, EffectGenerator, factor_design
from .family_draws import (eta_mean, family_of, param_draws, replicate, response_mean,
                           trials_kw)
from ..inference.variance import VarianceParts, VarianceTerms, bayes_r2, variance_parts


@dataclass
class FitInfo:
    """How the fit was made.

    ``method``, ``sampler``, ``chains`` ... ``seed`` are what *ran* (resolved: method
    ``"marginal"``, sampler ``"numba"``, the seed drawn when none was given);
    ``requested`` is every setting as the user gave it (``None``/``"auto"`` kept), which
    ``update()`` replays; ``engine_reason`` says why this method and engine were chosen
    (:func:`bayes_hlm.backends.engine.choose_engine`). Timings in seconds.
    """

    method: str
    sampler: str
    chains: int
    draws: int
    tune: int
    target_accept: float
    seed: int
    wall_s: float = 0.0
    compile_s: float = 0.0
    sample_s: float = 0.0
    effects_s: float = 0.0
    interrupted: bool = False
    extra: dict = field(default_factory=dict)
    requested: FitSettings | None = None  # None: a file saved before settings were recorded
    engine_reason: str = ""

    def __post_init__(self):
        if isinstance(self.requested, dict):  # dataclasses.asdict / JSON round trip
            self.requested = FitSettings.from_dict(self.requested)

    def to_dict(self) -> dict:
        """JSON-able record (``requested`` as a plain dict); inverse of :meth:`from_dict`."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FitInfo":
        """Read :meth:`to_dict` output; fields missing in older files take their defaults,
        unknown ones (a newer file) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class BayesResult(MixedModelResult):
    """Posterior of a hierarchical linear model with lme4/brms-style accessors.

    Implements the result contract of :class:`~bayes_hlm.inference.contract.MixedModelResult`
    (shared with the REML fit); every interval defaults to a 95% HDI.

    Attributes
    ----------
    tree : xarray.DataTree
        ArviZ data: ``posterior``, ``sample_stats``, ``observed_data`` (and
        ``log_likelihood`` / ``posterior_predictive`` when requested).
    spec : ModelSpec
        Parsed formula and design (rebuilds designs for ``predict``).
    priors : PriorSet
    info : FitInfo
    """

    def __init__(self, spec: ModelSpec, priors: PriorSet, tree: xr.DataTree, info: FitInfo,
                 effect_generator: EffectGenerator | None = None):
        self.spec = spec
        self.priors = priors
        self.info = info
        # the ArviZ layout (labelled right by ArviZ, any saved layout) costs ~10-20 ms a fit
        # and is only needed when ``tree``/``posterior`` is read: built then, from this
        self._backend_tree = tree
        self._tree: xr.DataTree | None = None
        # accessors read draws in either layout (arviz_layout.backend_values)
        self._draws = DrawSource(tree["posterior"].to_dataset(), spec.design, effect_generator)
        self._cache: dict = {}

    @property
    def tree(self) -> xr.DataTree:
        """ArviZ data (see the class docstring), in the layout ArviZ labels right; built on first use."""
        if self._tree is None:
            self._tree = arviz_tree(self._backend_tree, self.spec.design)
            self._backend_tree = None
        return self._tree

    @tree.setter
    def tree(self, value: xr.DataTree) -> None:
        self._tree = arviz_tree(value, self.spec.design)  # idempotent on the ArviZ layout
        self._backend_tree = None
        self._cache.pop("_posterior", None)

    def _group(self, name: str) -> xr.Dataset | None:
        """A group other than ``posterior``/``prior`` (same in both layouts), without building
        the ArviZ layout; None when absent."""
        t = self._tree if self._tree is not None else self._backend_tree
        return t[name].to_dataset() if name in t.children else None

    # ----------------------------------------------------------------- basics
    @property
    def design(self):
        return self.spec.design

    @property
    def formula(self) -> str:
        return self.design.formula

    @property
    def posterior(self) -> xr.Dataset:
        """The posterior draws as ArviZ sees them (``tree["posterior"]``)."""
        if "_posterior" not in self._cache:
            self._cache["_posterior"] = self.tree["posterior"].to_dataset()
        return self._cache["_posterior"]

    @property
    def factors(self) -> list[str]:
        return list(self.design.factors())

    def __repr__(self) -> str:
        return (f"<BayesResult {self.formula!r}: {self.nobs()} obs, groups {self.ngrps()}, "
                f"{self.info.chains}x{self.info.draws} draws, method={self.info.method}, "
                f"sampler={self.info.sampler}>")

    # --------------------------------------------------------------- summaries
    def summary(self, level: float | None = None, prob: float | None = None, *,
                exponentiate: bool = False) -> ModelSummary:
        """Fixed effects, group-level SDs and correlations, residual SD.

        Columns: kind, mean, sd, HDI bounds (``level``, default 95%, named in the header),
        bulk/tail ESS, R-hat, MCSE. ``print(fit.summary())`` shows it with the model header.
        ``prob`` is the deprecated spelling of ``level``. ``exponentiate=True`` summarises
        ``exp`` of each fixed-effect draw (odds/rate/hazard ratios, named in the header) for
        logit, log and cloglog links, and is an error for other links.
        """
        prob = resolve_level(level, prob, "summary")
        fam = family_of(self)
        frame = self._summary_frame(prob)
        ratios = None
        if exponentiate:
            from ..inference.tidy import ratio_name

            ratios = ratio_name(fam.name, fam.link.name)
            fixed = tables.stat_frame(np.exp(self._draws.chained(naming.FIXED)),
                                      list(self.design.fixed_names), prob)
            frame.loc[fixed.index, tables.STAT_COLUMNS] = fixed[tables.STAT_COLUMNS].to_numpy()
        out = ModelSummary(frame)
        kind = "linear" if fam.name == "gaussian" and fam.link.name == "identity" else "generalized linear"
        head = [f"Bayesian {kind} mixed model (method={self.info.method}, sampler="
                f"{self.info.sampler}, {self.info.chains} chains x {self.info.draws} draws)",
                f"Family: {fam.name} (link: {fam.link.name})",
                f"Formula: {self.formula}",
                f"Number of obs: {self.nobs()}, groups: "
                + ", ".join(f"{k}, {v}" for k, v in self.ngrps().items()),
                f"Intervals: {out.columns.name}"]
        if ratios:
            head.append(f"Fixed effects exponentiated: {ratios} (exp of each draw, then summarised)")
        head.append("")
        out.text = "\n".join(head) + pd.DataFrame(out).to_string(float_format=lambda v: f"{v:.4g}")
        return out

    def _summary_frame(self, prob: float) -> pd.DataFrame:
        key = ("summary", prob)
        if key not in self._cache:
            parts = [self._frame_fixed(prob).assign(kind="fixed")]
            for f in self.factors:
                parts.append(self._frame_sd(f, prob).assign(kind="sd"))
                if self._draws.has(naming.corr_var(f)):
                    parts.append(self._frame_corr(f, prob).assign(kind="corr"))
            for name in family_of(self).param_names:  # sigma only where the family has one
                parts.append(tables.stat_frame(self._draws.chained(name), [name], prob)
                             .assign(kind="sigma" if name == naming.SIGMA else "family"))
            df = pd.concat(parts)
            self._cache[key] = label_interval(df[["kind"] + tables.STAT_COLUMNS], prob, "hdi")
        return self._cache[key].copy()

    def _frame_fixed(self, prob):
        return tables.stat_frame(self._draws.chained(naming.FIXED), list(self.design.fixed_names), prob)

    def _terms(self, factor: str) -> list[str]:
        post = self._draws.posterior  # same terms in both layouts; does not build the ArviZ one
        return [str(t) for t in post[naming.sd_var(factor)].coords[naming.term_dim(factor)].values]

    def _frame_sd(self, factor, prob):
        names = [f"sd({t} | {factor})" for t in self._terms(factor)]
        return tables.stat_frame(self._draws.chained(naming.sd_var(factor)), names, prob)

    def _corr_pairs(self, factor) -> list[tuple[int, int]]:
        """Index pairs (i<j) of correlations that are parameters (within a correlated block)."""
        return corr_pairs(self.design, factor)

    def _frame_corr(self, factor, prob):
        terms = self._terms(factor)
        arr = self._draws.chained(naming.corr_var(factor))
        pairs = self._corr_pairs(factor)
        sub = np.stack([arr[:, :, i, j] for i, j in pairs], axis=-1)
        names = [f"cor({terms[i]}, {terms[j]} | {factor})" for i, j in pairs]
        return tables.stat_frame(sub, names, prob)

    def fixef(self, level: float | None = None, prob: float | None = None) -> pd.DataFrame:
        """Posterior of the fixed effects (lme4 ``fixef``): mean, sd, HDI (``level``, default
        95%), diagnostics. ``prob`` is the deprecated spelling of ``level``."""
        prob = resolve_level(level, prob, "fixef")
        return self._summary_frame(prob).query("kind == 'fixed'").drop(columns="kind")

    def varcorr(self) -> pd.DataFrame:
        """Posterior means of group SDs, correlations and the residual SD (lme4 ``VarCorr``)."""
        rows = []
        for f in self.factors:
            terms = self._terms(f)
            sd = self._draws.flat(naming.sd_var(f))
            for i, t in enumerate(terms):
                rows.append({"group": f, "term": t, "term_b": "", "sd": sd[:, i].mean(),
                             "variance": (sd[:, i] ** 2).mean(), "corr": np.nan})
            if self._draws.has(naming.corr_var(f)):
                c = self._draws.flat(naming.corr_var(f))
                for i, j in self._corr_pairs(f):
                    rows.append({"group": f, "term": terms[i], "term_b": terms[j], "sd": np.nan,
                                 "variance": np.nan, "corr": c[:, i, j].mean()})
        if naming.SIGMA in family_of(self).param_names:
            s = self._draws.flat(naming.SIGMA)
            rows.append({"group": "Residual", "term": "", "term_b": "", "sd": s.mean(),
                         "variance": (s**2).mean(), "corr": np.nan})
        return pd.DataFrame(rows)

    def ranef(self, level: float | None = None, prob: float | None = None) -> dict[str, pd.DataFrame]:
        """Group effects per factor: posterior mean, sd and HDI (``level``, default 95%) per
        (level, term). ``prob`` is the deprecated spelling of ``level``."""
        prob = resolve_level(level, prob, "ranef")
        out = {}
        for f in self.factors:
            b = self._draws.effects(f)  # (S, L, q)
            S, L, q = b.shape
            terms = self._terms(f)
            flat = b.reshape(S, L * q)
            lo, hi = tables.hdi(flat, prob)
            idx = pd.MultiIndex.from_product([[str(v) for v in self._levels(f)], terms],
                                             names=["level", "term"])
            out[f] = label_interval(pd.DataFrame({"mean": flat.mean(0), "sd": flat.std(0, ddof=1),
                                                  "hdi_low": lo, "hdi_high": hi}, index=idx),
                                    prob, "hdi")
        return out

    def effects_stats(self, prob: float = tables.HDI_PROB) -> dict[str, pd.DataFrame]:
        """Full statistics (incl. ESS and R-hat) of every group effect, per factor."""
        key = ("effects_stats", prob)
        if key not in self._cache:
            out = {}
            C = self._draws.n_chains
            for f in self.factors:
                b = self._draws.effects(f)
                S, L, q = b.shape
                terms = self._terms(f)  # once: an xarray lookup (1.3 s over InstEval's 4,100 levels)
                names = [f"{lvl}|{t}" for lvl in map(str, self._levels(f)) for t in terms]
                out[f] = tables.stat_frame(b.reshape(C, S // C, L * q), names, prob)
            self._cache[key] = out
        return self._cache[key]

    def _effects_checks(self) -> dict[str, pd.DataFrame]:
        """ESS and R-hat of every group effect, per factor (:func:`tables.check_frame`):
        :meth:`effects_stats`' columns when it has run, else only those."""
        for key in self._cache:
            if key[0] == "effects_stats":
                return self._cache[key]
        if ("effects_checks",) not in self._cache:
            out = {}
            C = self._draws.n_chains
            for f in self.factors:
                b = self._draws.effects(f)
                S, L, q = b.shape
                terms = self._terms(f)
                names = [f"{lvl}|{t}" for lvl in map(str, self._levels(f)) for t in terms]
                out[f] = tables.check_frame(b.reshape(C, S // C, L * q), names)
            self._cache[("effects_checks",)] = out
        return self._cache[("effects_checks",)]

    def effects_stats_subset(self, factor: str, n_groups: int, seed: int = 0,
                             prob: float = tables.HDI_PROB) -> pd.DataFrame:
        """Statistics (incl. ESS and R-hat) of the effects of ``n_groups`` random levels.

        Levels drawn uniformly without replacement (``seed``), all draws; with
        ``n_groups`` at least the number of levels, every level. ``attrs["subset"]``
        describes the subset.
        """
        L = self.ngrps()[factor]
        k = min(int(n_groups), L)
        if k >= L:
            return self.effects_stats(prob)[factor]
        groups = np.sort(np.random.default_rng(seed).choice(L, size=k, replace=False))
        b = self._draws.effects(factor, groups=groups)  # (S, k, q)
        C, S = self._draws.n_chains, b.shape[0]
        levels = np.asarray(self._levels(factor), dtype=object)[groups]
        terms = self._terms(factor)
        names = [f"{lvl}|{t}" for lvl in map(str, levels) for t in terms]
        out = tables.stat_frame(b.reshape(C, S // C, -1), names, prob)
        out.attrs["subset"] = (f"random subset of {k} of {L} levels (seed {seed}); given the "
                               "hyperparameters the effects are independent across levels")
        return out

    def diagnostics(self, effects="auto") -> dict:
        """Divergences, R-hat, ESS, tree depth, BFMI (see :mod:`bayes_hlm.results.diagnostics`).

        ``effects``: ``"auto"`` covers every group effect up to 5000 effect
        parameters and a random 1000 levels per factor beyond; ``"all"``; or an
        int (levels per factor).
        """
        from .diagnostics import diagnostics

        key = ("diag", effects)
        if key not in self._cache:
            self._cache[key] = diagnostics(self, effects=effects)
        return self._cache[key]

    def _levels(self, factor: str) -> pd.Index:
        for g in self.design.groups:
            if g.factor == factor:
                return g.levels
        raise KeyError(factor)

    def coef(self) -> dict[str, pd.DataFrame]:
        """Per-level coefficients: fixed effect + group effect posterior means (lme4 ``coef``)."""
        fixed = self._draws.flat(naming.FIXED).mean(0)
        names = list(self.design.fixed_names)
        out = {}
        for f in self.factors:
            b = self._effect_means(f)
            df = pd.DataFrame(np.tile(fixed, (b.shape[0], 1)), columns=names,
                              index=pd.Index(list(map(str, self._levels(f))), name=f))
            for i, t in enumerate(self._terms(f)):
                df[t] = df[t] + b[:, i] if t in df else b[:, i]
            out[f] = df
        return out

    def _effect_means(self, factor: str) -> np.ndarray:
        """Posterior means of ``factor``'s effects, (levels, q); streamed in subclasses."""
        return self._draws.effects(factor).mean(0)

    # --------------------------------------------------------------- variance
    def variance_parts(self, terms: VarianceTerms = "performance") -> VarianceParts:
        """Per-draw variance components (performance's rule by default, see
        :mod:`bayes_hlm.inference.variance`; ``terms="all"`` counts every random term).

        Poisson / negative binomial: the distribution-specific variance uses performance's
        ``mu = exp(intercept of the null model)``, the null model (the same random effects,
        intercept only) fitted by glmer as ``insight::null_model`` refits it -- one number for
        every draw; the fixed, random and NB dispersion parts vary per draw.
        """
        key = ("vp", terms)
        if key not in self._cache:
            covs = {f: self._draws.covariance(f) for f in self.factors}
            fam = family_of(self)
            self._cache[key] = variance_parts(self.design, self._draws.flat(naming.FIXED), None,
                                              covs, family=fam, terms=terms,
                                              family_params=param_draws(self._draws, fam),
                                              eta_mean=self._null_eta(fam))
        return self._cache[key]

    def _null_eta(self, fam) -> np.ndarray | None:
        """Per-draw ``eta_mean`` for count families' latent variance (None for the others):
        the glmer null model's intercept; where glmer cannot fit it, the mean of the fixed
        part of the linear predictor per draw, with a warning."""
        if fam.name not in ("poisson", "negativebinomial"):
            return None
        key = ("null_eta",)
        if key not in self._cache:
            from ..errors import BayesHLMError
            from ..glmer.variance import null_model_intercept

            try:
                with phase("fitting the null model for the count family's ICC (performance's mu)"):
                    b0 = null_model_intercept(self.glmer())
                self._cache[key] = np.full(self._draws.size, b0)
            except (BayesHLMError, np.linalg.LinAlgError, ValueError) as exc:
                import warnings

                warnings.warn(f"the null model for performance's mu could not be fitted ({exc}); "
                              "the ICC/R\u00b2 use the mean fixed-part linear predictor instead",
                              stacklevel=3)
                self._cache[key] = eta_mean(self._draws, self.design)
        return self._cache[key]

    def _value_table(self, values: dict[str, np.ndarray], level: float) -> ValueTable:
        """Posterior summary of derived per-draw quantities (one HDI table)."""
        C = self._draws.n_chains
        frames = []
        for name, v in values.items():
            v = np.asarray(v, dtype=float)
            # a quantity on a thinned subset of draws (Bayesian R²) is one pseudo-chain
            arr = v.reshape(C, -1) if len(v) == self._draws.size else v[None, :]
            frames.append(tables.stat_frame(arr, [name], level))
        out = ValueTable(pd.concat(frames)[["mean", "sd", "hdi_low", "hdi_high", "ess_bulk", "r_hat"]])
        return label_interval(out, level, "hdi")

    def _r2_extra(self, max_draws: int | None | str = "auto") -> dict[str, np.ndarray]:
        return {"r2_bayes": self.r2_draws(max_draws)["r2_bayes"]}

    def r2_draws(self, max_draws: int | None | str = "auto",
                 terms: VarianceTerms = "performance") -> dict[str, np.ndarray]:
        """Per-draw Bayesian, marginal and conditional R² (Bayesian R² on a thinned set:
        ``max_draws="auto"`` is up to 2000 evenly spaced draws, fewer -- at least 400 -- where
        a draw's linear predictor over every row is large; ``r2_bayes_idx`` says which)."""
        vp = self.variance_parts(terms)
        per_draw = self.design.n * (self.design.p + sum(g.q for g in self.design.groups))
        idx = self._draws.postfit_draws(max_draws, per_draw)
        chunks = self._draws.linpred_chunks(idx, self.design.X, factor_design(self.design),
                                    offset=self.design.offset)
        fam, extra = family_of(self), trials_kw(self.design)
        # brms' bayes_R2 on the expected response (posterior_epred)
        means = (response_mean(eta, fam, extra) for eta in chunks)
        return {"r2_bayes": bayes_r2(self.design.y, means), "r2_bayes_idx": idx,
                "r2_marginal": vp.r2_marginal(), "r2_conditional": vp.r2_conditional()}

    # ------------------------------------------------------- estimation hooks
    def _linear_estimates(self, L: np.ndarray, level: float = DEFAULT_LEVEL,
                          kind: str | None = None) -> pd.DataFrame:
        """Posterior summary (mean, sd, HDI or ETI, pd) of each row of ``L β``."""
        return summarise_draws(self.linear_draws(L), level, kind or "hdi")

    def linear_draws(self, L: np.ndarray) -> np.ndarray:
        """Draws of ``L β``: (draws, rows of L)."""
        return self._draws.flat(naming.FIXED) @ np.atleast_2d(L).T

    # ------------------------------------------------------------- predictions
    def fitted(self, group_effects: bool = True) -> pd.Series:
        """Posterior mean of the expected response ``g^-1(eta)`` for the data rows (the
        linear predictor for Gaussian models; the probability for binomial ones, as lme4)."""
        from .predict import fitted_mean

        return pd.Series(fitted_mean(self, group_effects), index=self.design.row_index,
                         name="fitted")

    def residuals(self, type: str = "response", *, kind: str | None = None,
                  ndraws: int | None = 1000, seed: int | None = None) -> pd.Series:
        """Residuals: ``"response"``, ``"pearson"`` or ``"quantile"`` (DHARMa's randomised
        quantile residuals from the posterior predictive); ``kind=`` is the same as ``type=``.
        See :func:`bayes_hlm.results.residuals.residuals`."""
        from ..errors import BayesHLMError
        from .residuals import residuals

        if kind is not None and type != "response" and kind != type:
            raise BayesHLMError(f"residuals(): type={type!r} and kind={kind!r} disagree; give one")
        return residuals(self, kind or type, ndraws=ndraws, seed=seed)

    def predict(self, newdata: pd.DataFrame | None = None, **kwargs) -> pd.DataFrame:
        """Posterior predictions; see :func:`bayes_hlm.results.predict.predict`."""
        from .predict import predict

        return predict(self, newdata, **kwargs)

    # ------------------------------------------------------------ LOO and I/O
    def log_likelihood(self) -> xr.DataTree:
        """The DataTree with a pointwise ``log_likelihood`` group (conditional on group effects).

        Computed on demand (it is draws x rows) and cached.
        """
        if "log_likelihood" not in self.tree.children:
            from .loo import pointwise_loglik

            ll = pointwise_loglik(self)
            ds = xr.Dataset({"y": (("chain", "draw", "obs"), ll)},
                            coords={"chain": self.posterior.chain, "draw": self.posterior.draw})
            groups = {k: self.tree[k].to_dataset() for k in self.tree.children}
            groups["log_likelihood"] = ds
            self.tree = xr.DataTree.from_dict(groups)
        return self.tree

    def posterior_predictive(self, seed: int | None = None) -> xr.DataTree:
        """The DataTree with a ``posterior_predictive`` group: one replicated y per draw.

        Computed on demand (draws x rows) and cached; used by PPC plots.
        """
        if "posterior_predictive" not in self.tree.children:
            src = self._draws
            rng = np.random.default_rng(self.info.seed + 1 if seed is None else seed)
            idx = np.arange(src.size)
            mu = np.concatenate(list(src.linpred_chunks(idx, self.design.X, factor_design(self.design),
                                    offset=self.design.offset)))
            yrep = replicate(mu, src, idx, family_of(self), rng, trials_kw(self.design)).reshape(
                src.n_chains, src.n_draws, -1)
            ds = xr.Dataset({"y": (("chain", "draw", "obs"), yrep)},
                            coords={"chain": self.posterior.chain, "draw": self.posterior.draw})
            groups = {k: self.tree[k].to_dataset() for k in self.tree.children}
            groups["posterior_predictive"] = ds
            self.tree = xr.DataTree.from_dict(groups)
        return self.tree

    def prior_predictive(self, draws: int = 500, seed: int | None = None) -> xr.DataTree:
        """Draws from the prior and the prior predictive of this model (``prior``, ``prior_predictive``)."""
        from ..fitting import sample_prior_predictive

        return sample_prior_predictive(self.spec, draws=draws, seed=seed, priors=self.priors)

    def loo(self, pointwise: bool = False):
        """PSIS-LOO (ArviZ's ``ELPDDataLOO``), warning when Pareto k > 0.7 (then try ``kfold``/LOGO CV).

        Computed vectorised (:mod:`bayes_hlm.results.loo`; same numbers as ``arviz.loo``) and cached.
        """
        import warnings

        from ..errors import ConvergenceWarning
        from .loo import loo

        if "loo" not in self._cache:
            with phase("PSIS-LOO: pointwise log-likelihood and Pareto smoothing"):
                ll = self.log_likelihood()["log_likelihood"]["y"].values
                self._cache["loo"] = loo(self, ll)
        res = self._cache["loo"]
        k = np.asarray(res.pareto_k)
        bad = int((k > 0.7).sum())
        if bad:
            warnings.warn(
                f"{bad} of {k.size} observations have Pareto k > 0.7: PSIS-LOO is unreliable for "
                "them (common in hierarchical models); use leave-one-group-out or k-fold "
                "cross-validation instead", ConvergenceWarning, stacklevel=2)
        return res

    def save(self, path) -> None:
        """Write the result (posterior, model spec, data used) to a netCDF file, atomically."""
        from .io import save_result

        save_result(self, path)

    @classmethod
    def load(cls, path) -> "BayesResult":
        """Read a result written by :meth:`save`."""
        from .io import load_result

        return load_result(path)

    # ------------------------------------------------------------ reporting
    def reml(self, method: str = "REML"):
        """The frequentist fit of the same model (lme4's REML/ML), cached."""
        key = ("reml", method)
        if key not in self._cache:
            from ..reml import reml

            with phase(f"fitting the {method} reference (lme4's criterion)"):
                self._cache[key] = reml(self.spec, method=method)
        return self._cache[key]

    def glmer(self, nagq: int = 1):
        """The maximum-likelihood fit of the same generalized model (lme4's glmer), cached."""
        key = ("glmer", nagq)
        if key not in self._cache:
            from ..glmer.api import glmer_spec

            with phase("fitting the glmer reference (lme4's Laplace criterion)"):
                self._cache[key] = glmer_spec(self.spec, nagq=nagq)
        return self._cache[key]

    def reference(self, reml_result=None):
        """The frequentist reference of this model (typed; see
        :func:`bayes_hlm.results.reference.reference_for`): a
        :class:`~bayes_hlm.results.reference.FrequentistReference`, or a
        :class:`~bayes_hlm.results.reference.MissingReference` saying why there is none."""
        from .reference import reference_for

        return reference_for(self, reml_result)

    def compare_reml(self, reml_result=None, level: float | None = None, prob: float | None = None):
        """Posterior next to the REML estimates: one row per parameter, ICC and R².

        See :func:`bayes_hlm.results.compare_reml.compare_reml`.
        """
        from .compare_reml import compare_reml

        return compare_reml(self, reml_result, level, prob)

    def shrinkage_table(self, factor: str | None = None, reml_result=None):
        """Per group: no-pooling OLS, posterior mean (partial pooling) and REML BLUP."""
        from .compare_reml import shrinkage_table

        return shrinkage_table(self, reml_result, factor=factor)

    def report(self, path, reml_result=None):
        """Write a self-contained HTML report (model, priors, diagnostics, tables, plots)."""
        from ..reporters import write_report

        return write_report(self, path, reml_result=reml_result)

    def plot_shrinkage(self, **kwargs):
        """Shrinkage plot (no pooling -> partial pooling -> complete pooling); see reporters."""
        from ..reporters import plot_shrinkage

        return plot_shrinkage(self, **kwargs)

    def plot_caterpillar(self, **kwargs):
        """Caterpillar plot of the group effects with REML BLUPs marked."""
        from ..reporters import plot_caterpillar

        return plot_caterpillar(self, **kwargs)

    # ---- parity (issue 9) ----
    # Thin delegates; the R call each mirrors is in docs/r_to_bayes_hlm.md.
    def update(self, formula: str | None = None, data: pd.DataFrame | None = None,
               **fit_kwargs) -> "BayesResult":
        """Refit with changes (R/brms ``update``): ``". ~ . + x"`` formulas, new data, settings."""
        from .workflow import update

        return update(self, formula, data, **fit_kwargs)

    def kfold(self, k: int | None = 10, group: str | None = None, **kwargs):
        """Exact k-fold / leave-one-group-out CV by refitting (brms ``kfold``)."""
        from .workflow import kfold

        return kfold(self, k=k, group=group, **kwargs)

    def simulate(self, n: int = 100, seed: int | None = None, as_frame: bool = True):
        """``n`` posterior predictive response vectors for the data rows (lme4 ``simulate``)."""
        from .workflow import posterior_predict

        return posterior_predict(self, n, seed=seed, as_frame=as_frame)

    def confint(self, level: float = DEFAULT_LEVEL, method: str | None = None, parm=None,
                ranef: bool = False, **kwargs) -> ReportFrame:
        """Posterior interval of every parameter (brms ``posterior_interval``, R ``confint``).

        Rows use :meth:`summary`'s names (``Days``, ``sd(Days | Subject)``,
        ``cor(Intercept, Days | Subject)``, ``sigma``), plus ``r_<factor>[level,term]``
        group effects with ``ranef=True``. Columns: ``estimate`` (posterior mean),
        ``lower``, ``upper``; the header names the interval (``"95% HDI"``).

        Parameters
        ----------
        level : float
            Interval probability (default 0.95). ``prob=`` is its deprecated spelling.
        method : {"hdi", "eti"}
            Highest-density (default) or equal-tailed interval. ``kind=``: deprecated.
        parm : list of str, optional
            Rows to return (lme4's name; ``pars=``: deprecated).
        """
        prob = pop_deprecated(kwargs, "prob", "level", "confint")
        kind = pop_deprecated(kwargs, "kind", "method", "confint")
        pars = pop_deprecated(kwargs, "pars", "parm", "confint")
        reject_unknown(kwargs, "confint")
        level = prob if prob is not None else level
        method = method or kind or "hdi"
        parm = parm if parm is not None else pars
        from ..inference.tidy import draws_interval_table
        from .parameters import posterior_parameters

        effects = ("fixed", "ran_pars") + (("ran_vals",) if ranef else ())
        return draws_interval_table(posterior_parameters(self, effects), level, method, parm)

    def tidy(self, effects=("fixed", "ran_pars"), conf_level: float = DEFAULT_LEVEL,
             conf_method: str | None = None, exponentiate: bool = False,
             **kwargs) -> ReportFrame:
        """broom.mixed ``tidy``: effect, group, term, estimate, std.error, conf.low, conf.high
        (``conf_method`` ``"eti"``, broom.mixed's default for brms, or ``"hdi"``).

        ``exponentiate=True``: fixed effects as odds ratios (logit link), rate ratios (log link
        of Poisson/NB), ratios of means (other log links) or hazard ratios (cloglog), summarised
        from ``exp`` of each draw; an error for other links (identity, probit, inverse)."""
        from ..inference.tidy import draws_tidy, exponentiate_fixed
        from .parameters import posterior_parameters

        reject_unknown(kwargs, "tidy")
        params = posterior_parameters(self, effects)
        if exponentiate:
            fam = family_of(self)
            params = exponentiate_fixed(params, fam.name, fam.link.name)
        return draws_tidy(params, conf_level, conf_method)

    def hypothesis(self, hypotheses, alpha: float = 0.05, robust: bool = False,
                   seed: int | None = 0) -> pd.DataFrame:
        """brms ``hypothesis``: ``"sectorCatholic > 0"``, ``"Days - 2*Intercept = 0"``.

        Names: fixed effects (also ``b_``-prefixed), ``sigma``, ``sd_<factor>__<term>``,
        ``cor_<factor>__<a>__<b>``; see :func:`bayes_hlm.inference.hypotheses.posterior_hypothesis`.
        """
        from ..inference.hypotheses import posterior_hypothesis
        from .parameters import parameter_draws, prior_draws

        return posterior_hypothesis(hypotheses, parameter_draws(self),
                                    lambda n: prior_draws(self, n=n, seed=seed), alpha, robust)

    def parameter_draws(self, names=None) -> dict[str, np.ndarray]:
        """Flat posterior draws of named parameters (brms names; see :mod:`.parameters`)."""
        from .parameters import parameter_draws

        return parameter_draws(self, names)

    def prior_sensitivity(self, scales=(0.5, 2.0), threshold: float = 0.5, **kwargs):
        """Refit with every prior scale multiplied by ``scales``; flag moved estimates."""
        from .sensitivity import prior_sensitivity

        return prior_sensitivity(self, scales, threshold, **kwargs)

    def power_sensitivity(self, **kwargs) -> pd.DataFrame:
        """Power-scaling prior/likelihood sensitivity (priorsense via ``arviz.psense_summary``)."""
        from .sensitivity import power_sensitivity

        return power_sensitivity(self, **kwargs)

    def conditional_effects(self, effect: str, by: str | None = None, **kwargs) -> pd.DataFrame:
        """Prediction grid along ``effect`` (brms ``conditional_effects`` data)."""
        from ..reporters.conditional_effects import conditional_effects

        return conditional_effects(self, effect, by, **kwargs)

    def plot_conditional_effects(self, effect: str, by: str | None = None, **kwargs):
        """Conditional-effects plot with data points and intervals; returns the Axes."""
        from ..reporters.conditional_effects import plot_conditional_effects

        return plot_conditional_effects(self, effect, by, **kwargs)
    # ---- end parity (issue 9) ----

    # ---------------------------------------------------------------- priors
    def to_bambi(self, model=None) -> xr.DataTree:
        """The posterior with Bambi's names, dims and coordinates, for ``bambi.interpret`` and
        ArviZ plots next to a Bambi fit; see :func:`bayes_hlm.interop.bambi.to_bambi`."""
        from ..interop.bambi import to_bambi

        return to_bambi(self, model)

    def prior_summary(self) -> pd.DataFrame:
        """Every prior in use (brms ``prior_summary``)."""
        return self.priors.table()

    # ---------------------------------------------------------- model checks
    def pp_check(self, kind: str = "auto", ndraws: int | None = None, seed: int | None = 0, ax=None):
        """Posterior predictive check, as brms's ``pp_check`` (bayesplot); returns the matplotlib Axes.

        ``kind``: ``"auto"`` (default: the family's check - a hanging rootogram for counts, a
        calibration plot for binary/binomial outcomes, a density overlay otherwise),
        ``"dens_overlay"`` (density of y over ``ndraws`` replicated data sets), ``"hist"``,
        ``"stat"`` (replicated means and SDs against the observed), ``"bars"``, ``"rootogram"``
        or ``"calibration"``; see :func:`bayes_hlm.reporters.plot_ppc`.
        """
        from ..reporters.diagnostic_plots import plot_ppc

        return plot_ppc(self, n_draws=ndraws, seed=seed, ax=ax, kind=kind)
