"""A fit made from sufficient statistics only (``engine="dask"``): no row-level design.

:class:`StatsResult` is a :class:`~bayes_hlm.results.bayes_result.BayesResult`
whose design has no rows (:class:`~bayes_hlm.distributed.design_meta.StatsDesign`).
Everything that needs only the statistics works:

* summaries, fixed effects, VarCorr, group effects (drawn on demand from the
  statistics; streamed over draw chunks when they do not fit in memory);
* ICC, marginal/conditional R² (``cov(X)`` from ``XᵀX, Xᵀ1, N``; ``ZᵀZ/n`` from ``Σ_g A_g``);
* Bayesian R²: ``var(μ)`` and ``var(y − μ)`` from ``Σμ``, ``Σμ²``, ``Σyμ`` which are
  quadratic forms in ``β`` and ``b_g`` with ``XᵀX, Xᵀy, yᵀy, A_g, B_g, c_g, C_j, Z_gᵀ1``;
* predictions for given new data.

What needs the rows again (fitted values and residuals of every row, pointwise
log-likelihood for LOO) raises :class:`~bayes_hlm.distributed.design_meta.OutOfCoreError`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..spec import variable_names as naming
from ..inference._args import resolve_level
from ..inference.intervals import label_interval
from . import tables
from .bayes_result import BayesResult
from ..inference.variance import VarianceParts, VarianceTerms, random_variance, term_mask

__all__ = ["StatsResult"]

# work of one exact draw of one group effect, in the units of draws.POSTFIT_WORK (a small
# Cholesky solve and two normals per level, ~10x a row's linear predictor)
EFFECT_DRAW_COST = 10.0
# effect draws up to this size are materialised by ranef/effects_stats; above it, streamed
EFFECTS_BUDGET_BYTES = 1e9
# diagnostics(effects="auto") skips a factor whose random-subset check would draw more standard
# normals than this: the exact conditional draws of a subset still draw the noise of every level
# (bayes_hlm.backends.conditional_draws), draws x levels x q of them (~5 ns each)
EFFECTS_DIAG_MAX_NORMALS = 1.5e9


# Contractions of the R² sums over (draw s, group g, small q): one matmul or one pass of
# NumPy's C einsum. (einsum(..., optimize=True) chose batched matmuls over reshaped copies of
# (S, G, q, p) temporaries: 45 s of a 62 s CLI JSON at 2M rows / 20k groups.)
def _lin(b: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Σ_g b_g · v_g per draw: (S, G, q), (G, q) -> (S,)."""
    S = b.shape[0]
    return b.reshape(S, -1) @ v.reshape(-1)


def _cross(b: np.ndarray, B: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Σ_g b_gᵀ B_g β per draw: (S, G, q), (G, q, p), (S, p) -> (S,)."""
    S = b.shape[0]
    t = b.reshape(S, -1) @ B.reshape(-1, B.shape[-1])  # (S, p)
    return np.einsum("sp,sp->s", t, beta)


def _quad(b: np.ndarray, A: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Σ_g b_gᵀ A_g c_g per draw: (S, G, q), (G, q, r), (S, G, r) -> (S,)."""
    return np.einsum("sgi,gij,sgj->s", b, A, c, optimize=False)


def _not_available(what: str, why: str):
    from ..errors import OutOfCoreError

    return OutOfCoreError(
        f"{what} is not available for an out-of-core fit (engine='dask'): {why}. The fit kept only "
        "the sufficient statistics, not the rows. Predictions for given new data work: "
        "result.predict(newdata)")


class StatsResult(BayesResult):
    """Posterior of a model fitted from sufficient statistics (see module docstring).

    Extra attributes
    ----------------
    stats : SingleStats or NestedStats
        The statistics the posterior was computed from.
    extras : bayes_hlm.distributed.reduce.StatsExtras
        Moments of ``y``, ``X`` and ``Z`` columns, ``ZᵀZ`` and ``Z_gᵀ1`` per factor.
    """

    def __init__(self, spec, priors, tree, info, effect_generator, stats, extras):
        super().__init__(spec, priors, tree, info, effect_generator)
        self.stats = stats
        self.extras = extras

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + ", engine=dask>"

    # --------------------------------------------------------- effect draws
    def _effects_bytes(self, factor: str) -> float:
        q = len(self._terms(factor))
        return float(self._draws.size) * self.ngrps()[factor] * q * 8

    def _chunk_draws(self, factor: str, budget: float = 2.5e8) -> int:
        q = len(self._terms(factor))
        return int(max(1, budget // max(1, self.ngrps()[factor] * q * 8 * 4)))

    def ranef(self, level: float | None = None, prob: float | None = None) -> dict[str, pd.DataFrame]:
        """Group effects per factor (mean, sd, HDI); with too many draws x groups to hold,
        mean and sd are streamed over draw chunks and the HDI columns are NaN."""
        prob = resolve_level(level, prob, "ranef")
        small = [f for f in self.factors if self._effects_bytes(f) <= EFFECTS_BUDGET_BYTES]
        if len(small) == len(self.factors):
            return super().ranef(prob)
        out = {}
        for f in self.factors:
            terms = self._terms(f)
            idx = pd.MultiIndex.from_product([[str(v) for v in self._levels(f)], terms],
                                             names=["level", "term"])
            if f in small:
                b = self._draws.effects(f)
                S = b.shape[0]
                flat = b.reshape(S, -1)
                lo, hi = tables.hdi(flat, prob)
                out[f] = pd.DataFrame({"mean": flat.mean(0), "sd": flat.std(0, ddof=1),
                                       "hdi_low": lo, "hdi_high": hi}, index=idx)
                continue
            mean, sd = self._streamed_moments(f)
            out[f] = pd.DataFrame({"mean": mean.ravel(), "sd": sd.ravel(),
                                   "hdi_low": np.nan, "hdi_high": np.nan}, index=idx)
        return {f: label_interval(df, prob, "hdi") for f, df in out.items()}

    def _streamed_moments(self, factor: str) -> tuple[np.ndarray, np.ndarray]:
        S = self._draws.size
        step = self._chunk_draws(factor)
        s1 = s2 = None
        shift = None
        for a in range(0, S, step):
            b = self._draws.effects(factor, np.arange(a, min(a + step, S)))
            if shift is None:
                shift = b[0].copy()
                s1 = np.zeros_like(shift)
                s2 = np.zeros_like(shift)
            d = b - shift
            s1 += d.sum(0)
            s2 += (d * d).sum(0)
        mean = shift + s1 / S
        var = (s2 - s1 * s1 / S) / max(S - 1, 1)
        return mean, np.sqrt(np.clip(var, 0, None))

    def effects_stats(self, prob: float = tables.HDI_PROB) -> dict[str, pd.DataFrame]:
        self._refuse_all_draws("effects_stats() (ESS/R-hat of every group effect)",
                               "use ranef() (streamed mean/sd) or "
                               "result.effects_draws(factor, groups=...) for a subset")
        return super().effects_stats(prob)

    def _effects_checks(self) -> dict[str, pd.DataFrame]:
        self._refuse_all_draws("effects_stats() (ESS/R-hat of every group effect)",
                               "use ranef() (streamed mean/sd) or "
                               "result.effects_draws(factor, groups=...) for a subset")
        return super()._effects_checks()

    def _refuse_all_draws(self, what: str, remedy: str) -> None:
        """Raise when ``what`` would hold all draws of a factor beyond the memory budget."""
        big = [f for f in self.factors if self._effects_bytes(f) > EFFECTS_BUDGET_BYTES]
        if big:
            raise _not_available(what, f"it needs all draws of all levels of {big} at once "
                                       f"({self._effects_bytes(big[0]) / 1e9:.1f} GB); {remedy}")

    def effects_draws(self, factor: str, groups=None, idx=None) -> np.ndarray:
        """Draws (S', G', q) of the group effects of ``factor`` (optionally a subset of levels)."""
        idx = np.arange(self._draws.size) if idx is None else np.asarray(idx)
        gen = self._draws.generator
        if groups is None or gen is None:
            return self._draws.effects(factor, idx)
        return gen(factor, idx, groups)

    def effects_stats_subset(self, factor: str, n_groups: int, seed: int = 0,
                             prob: float = tables.HDI_PROB) -> pd.DataFrame:
        """As :meth:`BayesResult.effects_stats_subset` (draws generated for those levels only;
        all levels of a factor whose draws fit ``EFFECTS_BUDGET_BYTES``)."""
        if min(int(n_groups), self.ngrps()[factor]) >= self.ngrps()[factor]:
            if self._effects_bytes(factor) > EFFECTS_BUDGET_BYTES:
                raise _not_available(
                    f"effects_stats_subset({factor!r}, n_groups >= levels)",
                    f"every level's draws ({self._effects_bytes(factor) / 1e9:.1f} GB) are needed at "
                    "once; ask for fewer levels")
            return self._effects_stats_one(factor, prob)
        return super().effects_stats_subset(factor, n_groups, seed, prob)

    def diagnostics(self, effects="auto") -> dict:
        """As :meth:`BayesResult.diagnostics`, with the limits of a statistics-only fit.

        ``effects="auto"``: as in memory (every effect up to 5000 effect parameters, else a
        seeded random 1000 levels per factor), except that a factor is skipped -- and
        ``"effects_diagnostics"`` says why -- when even a subset would draw more than
        ``EFFECTS_DIAG_MAX_NORMALS`` standard normals: the exact conditional draws of any
        subset still draw the noise of every level and draw (1M levels x 2 terms x 2000
        draws = 4e9 normals, tens of seconds), while the hyperparameters' R-hat/ESS, which
        the effect draws follow, are always reported.  An int asks for that many random
        levels per factor regardless of cost; ``"all"`` raises when a factor's draws exceed
        ``EFFECTS_BUDGET_BYTES``.
        """
        from .diagnostics import EFFECTS_SUBSET, _nanmax, _nanmin, diagnostics

        key = ("diag", effects)
        if key in self._cache:
            return self._cache[key]
        if effects == "all":
            self._refuse_all_draws("diagnostics(effects='all')",
                                   "use effects='auto' or an int (a random subset of levels)")
        skip = {}
        if effects == "auto":
            for f in self.factors:
                q = len(self._terms(f))
                normals = float(self._draws.size) * self._noise_levels(f) * q
                if normals > EFFECTS_DIAG_MAX_NORMALS:
                    skip[f] = (f"skipped ({self.ngrps()[f]} levels x {q} terms x {self._draws.size} "
                               f"draws: a subset's exact draws would still draw {normals:.1e} "
                               "normals); R-hat/ESS above cover the hyperparameters, which the "
                               "exact conditional effect draws follow; "
                               "result.diagnostics(effects=1000) summarises a random 1000 levels")
        if not skip:
            self._cache[key] = super().diagnostics(effects)
            return self._cache[key]
        out = diagnostics(self, include_effects=False)
        notes = {}
        for f in self.factors:
            if f in skip:
                notes[f] = skip[f]
                continue
            frame = self.effects_stats_subset(f, EFFECTS_SUBSET)
            notes[f] = frame.attrs.get("subset", f"all {self.ngrps()[f]} levels")
            out["max_r_hat_all"] = _nanmax([out["max_r_hat_all"], _nanmax(frame["r_hat"])])
            out["min_ess_bulk"] = _nanmin([out["min_ess_bulk"], _nanmin(frame["ess_bulk"])])
            out["min_ess_tail"] = _nanmin([out["min_ess_tail"], _nanmin(frame["ess_tail"])])
        out["effects_diagnostics"] = notes
        self._cache[key] = out
        return out

    def _noise_levels(self, factor: str) -> int:
        """Levels whose noise a draw of ``factor``'s effects generates (all of its statistics)."""
        st = self.stats
        if st.plan.structure == "nested":
            return int(st.c_out.shape[0] + st.c_in.shape[0])
        return int(st.c.shape[0])

    def _effects_stats_one(self, factor: str, prob: float = tables.HDI_PROB) -> pd.DataFrame:
        b = self._draws.effects(factor)
        S, L, q = b.shape
        names = [f"{lvl}|{t}" for lvl in map(str, self._levels(factor)) for t in self._terms(factor)]
        out = tables.stat_frame(b.reshape(self._draws.n_chains, S // self._draws.n_chains, L * q),
                                names, prob)
        out.attrs["subset"] = f"all {L} levels"
        return out

    def _effect_means(self, factor: str) -> np.ndarray:
        if self._effects_bytes(factor) <= EFFECTS_BUDGET_BYTES:
            return super()._effect_means(factor)
        return self._streamed_moments(factor)[0]

    # -------------------------------------------------------------- variance
    def variance_parts(self, terms: VarianceTerms = "performance") -> VarianceParts:
        key = ("vp", terms)
        if key not in self._cache:
            ex = self.extras
            n = self.design.n
            C = ex.X_mom.cov(ddof=1) if n >= 2 else np.zeros((self.design.p, self.design.p))
            beta = self._draws.flat(naming.FIXED)
            var_f = np.einsum("sp,pq,sq->s", beta, np.atleast_2d(C), beta)
            random = {}
            for f in self.factors:
                cov = self._draws.covariance(f)
                random[f] = random_variance(cov, ex.ZtZ[f] / n, term_mask(self.design, f, terms))
            self._cache[key] = VarianceParts(fixed=var_f, random=random,
                                             residual=self._draws.flat(naming.SIGMA) ** 2)
        return self._cache[key]

    def _mu_sums(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per draw in ``idx``: Σμ, Σμ², Σyμ over all rows, from the statistics."""
        st, ex = self.stats, self.extras
        beta = self._draws.flat(naming.FIXED)[idx]                     # (S, p)
        s_mu = beta @ ex.X_mom.mean * st.N
        s_mu2 = np.einsum("sp,pq,sq->s", beta, st.XtX, beta)
        s_ymu = beta @ st.Xty
        plan = st.plan
        if plan.structure == "none":
            return s_mu, s_mu2, s_ymu
        if plan.structure == "single":
            f = plan.blocks[0].factor
            b = self._draws.effects(f, idx)                            # (S, G, q)
            s_mu = s_mu + _lin(b, ex.zsum[f])
            s_mu2 = s_mu2 + 2 * _cross(b, st.B, beta) + _quad(b, st.A, b)
            s_ymu = s_ymu + _lin(b, st.c)
            return s_mu, s_mu2, s_ymu
        fo, fi = plan.blocks[0].factor, plan.blocks[1].factor
        bo = self._draws.effects(fo, idx)
        bi = self._draws.effects(fi, idx)
        s_mu = s_mu + _lin(bo, ex.zsum[fo]) + _lin(bi, ex.zsum[fi])
        s_mu2 = (s_mu2 + 2 * _cross(bo, st.B_out, beta) + _quad(bo, st.A_out, bo)
                 + 2 * _cross(bi, st.B_in, beta) + _quad(bi, st.A_in, bi)
                 + 2 * _quad(bi, st.C, bo[:, st.parent, :]))
        s_ymu = s_ymu + _lin(bo, st.c_out) + _lin(bi, st.c_in)
        return s_mu, s_mu2, s_ymu

    def r2_draws(self, max_draws: int | None | str = "auto",
                 terms: VarianceTerms = "performance") -> dict[str, np.ndarray]:
        """Bayesian R² per draw from the statistics (same definition as in memory). Each draw
        needs an exact draw of every group's effects: ``max_draws="auto"`` uses up to 2000
        evenly spaced draws, fewer (at least 400) for many groups."""
        vp = self.variance_parts(terms)
        G = sum(self.ngrps()[f] * len(self._terms(f)) for f in self.factors)
        idx = self._draws.postfit_draws(max_draws, EFFECT_DRAW_COST * G)
        st, ex = self.stats, self.extras
        N = st.N
        G = sum(self.ngrps().values()) or 1
        step = max(1, int(2.5e8 // (8 * 8 * G)))
        vals = []
        for a in range(0, len(idx), step):
            sel = idx[a:a + step]
            s_mu, s_mu2, s_ymu = self._mu_sums(sel)
            var_mu = (s_mu2 - s_mu ** 2 / N) / (N - 1)
            s_e = ex.ysum - s_mu
            s_e2 = st.yty - 2 * s_ymu + s_mu2
            var_e = (s_e2 - s_e ** 2 / N) / (N - 1)
            vals.append(var_mu / (var_mu + var_e))
        return {"r2_bayes": np.concatenate(vals), "r2_bayes_idx": idx,
                "r2_marginal": vp.r2_marginal(), "r2_conditional": vp.r2_conditional()}

    # ----------------------------------------------------------- row-level
    def fitted(self, group_effects: bool = True) -> pd.Series:
        raise _not_available("fitted() for every row",
                             "it is one value per row of the data, which was never loaded in one process")

    def residuals(self) -> pd.Series:
        raise _not_available("residuals() for every row",
                             "they are one value per row of the data, which was never loaded in one process")

    def log_likelihood(self):
        raise _not_available("the pointwise log-likelihood (and LOO)",
                             "it is draws x rows values and needs every row")

    def loo(self, pointwise: bool = False):
        raise _not_available("loo()", "PSIS-LOO needs the pointwise log-likelihood of every row")

    def predict(self, newdata: pd.DataFrame | None = None, **kwargs) -> pd.DataFrame:
        """Posterior predictions for ``newdata`` (required: the fitted rows are not kept)."""
        if newdata is None:
            raise _not_available("predict() for the fitted rows", "it needs every row")
        return super().predict(newdata, **kwargs)

    def save(self, path) -> None:
        raise _not_available("save()", "the result file format stores the rows used")
