"""Hypotheses, linear combinations, marginal means, contrasts and slopes.

Posterior versions (on :class:`~bayes_hlm.results.bayes_result.BayesResult`) work
draw by draw; the REML versions (on :class:`~bayes_hlm.reml.RemlResult`) are Wald
tests with Satterthwaite degrees of freedom (lmerTest / emmeans' ``lmer.df =
"satterthwaite"``). Every public function accepts either result type.

* :func:`hypothesis` - brms ``hypothesis()``: ``"sectorCatholic > 0"``,
  ``"Days - 2*Intercept = 0"``; Estimate, Est.Error, CI, Evid.Ratio, Post.Prob.
* :func:`lincom` - a linear combination of fixed effects given as weights.
* :func:`emmeans` - estimated marginal means on emmeans' reference grid
  (factors at every level and averaged with equal weights, covariates at their means).
* :func:`contrasts` - pairwise (or treatment-vs-control) contrasts of marginal means
  (emmeans ``pairs()`` / ``contrast()``).
* :func:`slopes` - slopes of a covariate at chosen values of other predictors
  (emmeans ``emtrends``, marginaleffects ``slopes``).
"""

from __future__ import annotations

import itertools
import re
from typing import TYPE_CHECKING, Iterable, Literal, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..backends import naming
from ..errors import BayesHLMError
from . import tables

if TYPE_CHECKING:
    from .bayes_result import BayesResult

__all__ = ["hypothesis", "hypothesis_reml", "lincom", "emmeans", "emmeans_reml", "contrasts",
           "contrasts_reml", "slopes", "slopes_reml", "reference_grid", "prior_draws",
           "parameter_draws", "interval"]


# ------------------------------------------------------------------- helpers
def is_bayes(model) -> bool:
    from .bayes_result import BayesResult

    return isinstance(model, BayesResult)


def interval(draws: np.ndarray, prob: float, kind: str = "hdi") -> tuple[np.ndarray, np.ndarray]:
    """HDI or equal-tailed interval over the leading axis of ``draws``."""
    if kind == "hdi":
        return tables.hdi(draws, prob)
    if kind == "eti":
        a = (1 - prob) / 2
        q = np.quantile(draws, [a, 1 - a], axis=0)
        return q[0], q[1]
    raise BayesHLMError(f"kind must be 'hdi' or 'eti', not {kind!r}")


def _summarise_draws(draws: np.ndarray, prob: float, kind: str) -> pd.DataFrame:
    """estimate / std.error / conf.low / conf.high / pd of each column of (S, k) draws."""
    lo, hi = interval(draws, prob, kind)
    pos = (draws > 0).mean(0)
    return pd.DataFrame({"estimate": draws.mean(0), "std.error": draws.std(0, ddof=1),
                         "conf.low": lo, "conf.high": hi, "pd": np.maximum(pos, 1 - pos)})


def _wald(m, L: np.ndarray, prob: float, null: np.ndarray | float = 0.0) -> pd.DataFrame:
    """Estimates, SEs, Satterthwaite df, t, p and t-based CIs of the rows of ``L``."""
    L = np.atleast_2d(np.asarray(L, dtype=float))
    est = L @ m.beta
    se = np.sqrt(np.einsum("ij,jk,ik->i", L, m.vcov(), L))
    df = np.asarray(m.df(L), dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (est - null) / se
    q = sps.t.ppf(0.5 + prob / 2, df)
    return pd.DataFrame({"estimate": est, "std.error": se, "df": df, "statistic": t,
                         "p.value": 2 * sps.t.sf(np.abs(t), df),
                         "conf.low": est - q * se, "conf.high": est + q * se})


def _fixed_names(model) -> list[str]:
    return list(model.design.fixed_names)


def _spec(model):
    spec = getattr(model, "spec", None)
    if spec is None or getattr(spec, "data", None) is None:
        raise BayesHLMError("this result has no model spec with data (fit from a formula + data "
                            "to use reference grids)")
    return spec


# ---------------------------------------------------------- parameter draws
def _param_keys(model) -> dict[str, tuple]:
    """Names usable in hypotheses -> how to get them: fixed effects (plain and ``b_``
    prefixed), ``sigma``, brms-style ``sd_<factor>__<term>`` and ``cor_<factor>__<a>__<b>``."""
    keys: dict[str, tuple] = {}
    for j, n in enumerate(_fixed_names(model)):
        keys[n] = ("fixed", j)
        keys[f"b_{n}"] = ("fixed", j)
    keys["sigma"] = ("sigma",)
    if is_bayes(model):
        for f in model.factors:
            terms = model._terms(f)
            for i, t in enumerate(terms):
                keys[f"sd_{f}__{t}"] = ("sd", f, i)
            if model._draws.has(naming.corr_var(f)):
                for i, j in model._corr_pairs(f):
                    keys[f"cor_{f}__{terms[i]}__{terms[j]}"] = ("cor", f, i, j)
    return keys


def parameter_draws(result: "BayesResult", names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Flat posterior draws of named parameters (see :func:`hypothesis` for the names)."""
    keys = _param_keys(result)
    names = list(keys) if names is None else list(names)
    out = {}
    src = result._draws
    for n in names:
        if n not in keys:
            raise BayesHLMError(f"unknown parameter {n!r}; parameters: {', '.join(keys)}")
        k = keys[n]
        if k[0] == "fixed":
            out[n] = src.flat(naming.FIXED)[:, k[1]]
        elif k[0] == "sigma":
            out[n] = src.flat(naming.SIGMA)
        elif k[0] == "sd":
            out[n] = src.flat(naming.sd_var(k[1]))[:, k[2]]
        else:
            out[n] = src.flat(naming.corr_var(k[1]))[:, k[2], k[3]]
    return out


def _draw_dist(prior, n: int, rng: np.random.Generator) -> np.ndarray:
    import pymc as pm

    from ..spec.prior_registry import get_prior_dist

    dist = get_prior_dist(prior.dist).pymc().dist(**prior.params)
    return np.asarray(pm.draw(dist, draws=n, random_seed=int(rng.integers(2**31))), dtype=float)


def prior_draws(result: "BayesResult", n: int = 4000, seed: int | None = 0) -> dict[str, np.ndarray]:
    """Draws from the prior of every named parameter (as brms ``sample_prior = "only"``).

    Fixed effects are drawn on Bambi's centred-intercept scale and transformed back, as
    the model does; a correlation of an LKJ(eta) block of size q has the marginal
    ``2 Beta(a, a) - 1`` with ``a = eta - 1 + q / 2``.
    """
    from ..spec.priors import corr_key, intercept_shift, sd_key

    rng = np.random.default_rng(seed)
    ps = result.priors
    names = _fixed_names(result)
    raw = np.column_stack([_draw_dist(ps.priors[nm], n, rng) for nm in names]) if names else \
        np.zeros((n, 0))
    if ps.centered and "Intercept" in names:
        i = names.index("Intercept")
        raw[:, i] = raw[:, i] - intercept_shift(raw, ps.x_mean, i)
    out = {}
    for j, nm in enumerate(names):
        out[nm] = out[f"b_{nm}"] = raw[:, j]
    out["sigma"] = _draw_dist(ps.priors["sigma"], n, rng)
    for f in result.factors:
        terms = result._terms(f)
        for t in terms:
            out[f"sd_{f}__{t}"] = _draw_dist(ps.priors[sd_key(t, f)], n, rng)
        if result._draws.has(naming.corr_var(f)):
            eta = ps.priors.get(corr_key(f))
            eta = 1.0 if eta is None else float(eta.params.get("eta", 1.0))
            q = sum(g.q for g in result.design.groups if g.factor == f and g.correlated)
            a = eta - 1 + q / 2
            for i, j in result._corr_pairs(f):
                out[f"cor_{f}__{terms[i]}__{terms[j]}"] = 2 * rng.beta(a, a, n) - 1
    return out


# ---------------------------------------------------------------- hypotheses
_CMP = re.compile(r"(<=|>=|==|=|<|>)")
_SAFE = re.compile(r"^[\s\d.eE+\-*/()_p]*$")


def _parse(hyp: str, names: Sequence[str]) -> tuple[str, str, list[str]]:
    """(python expression of lhs - rhs, comparator, used names)."""
    parts = _CMP.split(hyp)
    if len(parts) == 1:
        lhs, op, rhs = parts[0], "=", "0"
    elif len(parts) == 3:
        lhs, op, rhs = parts
    else:
        raise BayesHLMError(f"hypothesis {hyp!r} must contain exactly one of =, <, >")
    op = {"==": "=", "<=": "<", ">=": ">"}.get(op, op)
    expr = f"({lhs.strip()}) - ({rhs.strip() or '0'})"
    used: list[str] = []
    tokens = {}
    for k, name in enumerate(sorted(names, key=len, reverse=True)):
        pat = r"(?<![\w.:\[\]])" + re.escape(name) + r"(?![\w.:\[\]])"
        tok = f"_p{k}_"
        new = re.sub(pat, tok, expr)
        if new != expr:
            used.append(name)
            tokens[tok] = name
            expr = new
    expr = expr.replace("^", "**")
    if not _SAFE.match(expr):
        bad = re.sub(r"_p\d+_", "", expr)
        bad = re.sub(r"[\s\d.eE+\-*/()]", " ", bad).split()
        raise BayesHLMError(f"hypothesis {hyp!r} uses unknown name(s) {bad}; parameters: "
                            f"{', '.join(n for n in names if not n.startswith('b_'))}")
    return expr, op, [tokens[t] for t in sorted(tokens)]


def _evaluate(expr: str, values: dict[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
    order = sorted(names, key=len, reverse=True)
    ns = {f"_p{k}_": np.asarray(values[n]) for k, n in enumerate(order) if n in values}
    return np.asarray(eval(expr, {"__builtins__": {}}, ns), dtype=float)  # noqa: S307 - sanitised


def hypothesis(model, hypotheses: str | Sequence[str], alpha: float = 0.05,
               robust: bool = False, seed: int | None = 0) -> pd.DataFrame:
    """Test hypotheses about parameters (brms ``hypothesis()``).

    Each hypothesis compares two expressions with ``=``, ``<`` or ``>``; the
    difference ``lhs - rhs`` is evaluated per draw. Names: fixed effects as in
    ``fixef()`` (``Days``, ``sectorCatholic``, ``cses:sectorCatholic``; also with the
    ``b_`` prefix), ``sigma``, ``sd_<factor>__<term>`` and ``cor_<factor>__<a>__<b>``
    (brms names). Arithmetic: ``+ - * / ^`` and parentheses.

    Returns brms' columns: ``Estimate`` (mean, median with ``robust``), ``Est.Error``,
    ``CI.Lower``/``CI.Upper`` (equal-tailed ``1 - alpha``; one-sided for ``<``/``>``,
    as brms), ``Evid.Ratio`` (``P(h) / P(not h)`` for one-sided hypotheses;
    Savage-Dickey density ratio posterior/prior at the point for ``=``, the prior
    density from prior draws), ``Post.Prob`` and ``Star`` (``*`` when the CI excludes
    the hypothesised value). For a :class:`~bayes_hlm.reml.RemlResult` this dispatches
    to :func:`hypothesis_reml`.
    """
    if not is_bayes(model):
        return hypothesis_reml(model, hypotheses, alpha=alpha)
    hyps = [hypotheses] if isinstance(hypotheses, str) else list(hypotheses)
    keys = list(_param_keys(model))
    post = parameter_draws(model)
    prior = None
    rows = []
    for h in hyps:
        expr, op, used = _parse(h, keys)
        d = np.broadcast_to(_evaluate(expr, post, keys), (model._draws.size,))
        est = float(np.median(d) if robust else d.mean())
        err = float(d.std(ddof=1))
        if op == "=":
            lo, hi = np.quantile(d, [alpha / 2, 1 - alpha / 2])
            if prior is None:
                prior = prior_draws(model, n=max(4000, d.size), seed=seed)
            pd_ = np.broadcast_to(_evaluate(expr, prior, keys), (len(prior["sigma"]),))
            er = _density_at_zero(d) / _density_at_zero(pd_)
            pp = er / (1 + er) if np.isfinite(er) else np.nan
            star = "*" if (lo > 0 or hi < 0) else ""
        elif op == ">":
            lo, hi = np.quantile(d, alpha), np.inf
            pp = float((d > 0).mean())
            er = pp / (1 - pp) if pp < 1 else np.inf
            star = "*" if lo > 0 else ""
        else:
            lo, hi = -np.inf, np.quantile(d, 1 - alpha)
            pp = float((d < 0).mean())
            er = pp / (1 - pp) if pp < 1 else np.inf
            star = "*" if hi < 0 else ""
        rows.append({"Hypothesis": f"{expr_label(h)} {op} 0", "Estimate": est, "Est.Error": err,
                     "CI.Lower": float(lo), "CI.Upper": float(hi), "Evid.Ratio": float(er),
                     "Post.Prob": float(pp), "Star": star})
    return pd.DataFrame(rows)


def expr_label(h: str) -> str:
    parts = _CMP.split(h)
    if len(parts) != 3:
        return h.strip()
    lhs, rhs = parts[0].strip(), parts[2].strip()
    return f"({lhs})" if rhs in ("0", "") else f"({lhs}) - ({rhs})"


def _density_at_zero(d: np.ndarray) -> float:
    d = np.asarray(d, dtype=float)
    if d.std() == 0:
        return np.inf if np.all(d == 0) else 0.0
    return float(sps.gaussian_kde(d)(0.0)[0])


def _linear_weights(expr: str, names: list[str], used: list[str]) -> tuple[np.ndarray, float]:
    """(L, c) with ``expr(beta) = L @ beta + c``; raises if not linear in the fixed effects."""
    p = len(names)
    keys = {n: ("b_" + n) for n in names}

    def f(beta):
        vals = {n: beta[j] for j, n in enumerate(names)}
        vals.update({keys[n]: beta[j] for j, n in enumerate(names)})
        return float(_evaluate(expr, vals, list(vals)))

    c = f(np.zeros(p))
    L = np.array([f(np.eye(p)[j]) - c for j in range(p)])
    z = np.random.default_rng(1).normal(size=p)
    if not np.isclose(f(z), L @ z + c, rtol=1e-8, atol=1e-8):
        raise BayesHLMError("REML hypotheses must be linear in the fixed effects")
    return L, c


def hypothesis_reml(m, hypotheses: str | Sequence[str], alpha: float = 0.05) -> pd.DataFrame:
    """Wald t-tests of linear hypotheses on a REML fit, Satterthwaite df (lmerTest ``contest``).

    Same syntax as :func:`hypothesis` (fixed effects only). One-sided hypotheses
    (``<``, ``>``) give one-sided p-values and intervals; ``p.value`` tests the
    hypothesis' complement being the truth for ``=`` (``H0: lhs = rhs``).
    """
    hyps = [hypotheses] if isinstance(hypotheses, str) else list(hypotheses)
    names = _fixed_names(m)
    keys = names + [f"b_{n}" for n in names]
    rows = []
    for h in hyps:
        expr, op, used = _parse(h, keys)
        if any(u not in keys for u in used):
            raise BayesHLMError("REML hypotheses can use fixed effects only")
        L, c = _linear_weights(expr, names, used)
        w = _wald(m, L, 1 - alpha, null=-c).iloc[0]
        est = float(w["estimate"] + c)
        se, df = float(w["std.error"]), float(w["df"])
        t = est / se
        if op == "=":
            q = sps.t.ppf(1 - alpha / 2, df)
            lo, hi, p = est - q * se, est + q * se, 2 * sps.t.sf(abs(t), df)
        elif op == ">":  # H1: h > 0
            lo, hi, p = est - sps.t.ppf(1 - alpha, df) * se, np.inf, sps.t.sf(t, df)
        else:
            lo, hi, p = -np.inf, est + sps.t.ppf(1 - alpha, df) * se, sps.t.cdf(t, df)
        rows.append({"Hypothesis": f"{expr_label(h)} {op} 0", "estimate": est, "std.error": se,
                     "df": df, "statistic": t, "p.value": float(p), "conf.low": float(lo),
                     "conf.high": float(hi)})
    return pd.DataFrame(rows)


def lincom(model, weights: dict[str, float] | Sequence[float], prob: float = 0.95,
           kind: str = "hdi") -> pd.DataFrame:
    """A linear combination ``sum_j w_j beta_j`` of the fixed effects (``multcomp::glht`` /
    ``lincom``): posterior summary, or Wald/Satterthwaite on a REML fit."""
    names = _fixed_names(model)
    if isinstance(weights, dict):
        unknown = [k for k in weights if k not in names]
        if unknown:
            raise BayesHLMError(f"unknown fixed effect(s) {unknown}; fixed effects: {names}")
        L = np.array([float(weights.get(n, 0.0)) for n in names])
        label = " + ".join(f"{w:g}*{k}" for k, w in weights.items())
    else:
        L = np.asarray(weights, dtype=float)
        if L.shape != (len(names),):
            raise BayesHLMError(f"weights need one value per fixed effect ({len(names)})")
        label = " + ".join(f"{w:g}*{n}" for w, n in zip(L, names) if w != 0)
    out = _estimate_rows(model, L[None, :], prob, kind)
    out.insert(0, "term", [label])
    return out


def _estimate_rows(model, L: np.ndarray, prob: float, kind: str) -> pd.DataFrame:
    if is_bayes(model):
        beta = model._draws.flat(naming.FIXED)
        return _summarise_draws(beta @ L.T, prob, kind)
    return _wald(model, L, prob)


# ------------------------------------------------------------ reference grid
def _as_list(x) -> list[str]:
    if x is None:
        return []
    return [x] if isinstance(x, str) else list(x)


def _grid_values(spec, at: dict | None) -> dict[str, list]:
    """Reference-grid values per fixed-effect variable: factors at all levels, numbers at means."""
    at = dict(at or {})
    vars_ = sorted(spec._fixed_vars())
    unknown = [k for k in at if k not in vars_]
    if unknown:
        raise BayesHLMError(f"`at` names variable(s) {unknown} not among the model's fixed-effect "
                            f"variables {vars_}")
    out = {}
    for v in vars_:
        col = spec.data[v]
        if v in at:
            vals = at[v]
            out[v] = list(vals) if isinstance(vals, (list, tuple, np.ndarray, pd.Index)) else [vals]
        elif isinstance(col.dtype, pd.CategoricalDtype):
            out[v] = list(col.cat.categories)
        else:
            out[v] = [float(col.astype(float).mean())]
    return out


def reference_grid(model, at: dict | None = None) -> pd.DataFrame:
    """emmeans ``ref_grid``: every combination of factor levels, covariates at their means
    (or the values in ``at``)."""
    spec = _spec(model)
    vals = _grid_values(spec, at)
    rows = list(itertools.product(*vals.values()))
    grid = pd.DataFrame(rows, columns=list(vals))
    for v in vals:
        col = spec.data[v]
        if isinstance(col.dtype, pd.CategoricalDtype):
            grid[v] = pd.Categorical(grid[v], categories=col.cat.categories)
    return grid


def _check_specs(spec, specs: list[str]):
    vars_ = spec._fixed_vars()
    bad = [s for s in specs if s not in vars_]
    if bad:
        raise BayesHLMError(f"{bad} not among the model's fixed-effect variables {sorted(vars_)}")


def _cell_matrix(model, specs: list[str], at: dict | None, X_fn=None) -> tuple[pd.DataFrame, np.ndarray]:
    """Cells of ``specs`` and the (cells, p) matrix averaging the grid rows of each cell."""
    spec = _spec(model)
    _check_specs(spec, specs)
    grid = reference_grid(model, at)
    X = (X_fn or spec.fixed_matrix)(grid)
    if not specs:
        return pd.DataFrame(index=[0]), X.mean(0, keepdims=True)
    keys = grid[specs].astype(object)
    cells = keys.drop_duplicates().reset_index(drop=True)
    L = np.vstack([X[(keys == row.values).all(axis=1).to_numpy()].mean(0)
                   for _, row in cells.iterrows()])
    for s in specs:
        if isinstance(spec.data[s].dtype, pd.CategoricalDtype):
            cells[s] = pd.Categorical(cells[s], categories=spec.data[s].cat.categories)
    return cells, L


def emmeans(model, specs: str | Sequence[str], by: str | Sequence[str] | None = None,
            at: dict | None = None, prob: float = 0.95, kind: str = "hdi") -> pd.DataFrame:
    """Estimated marginal means (emmeans ``emmeans(m, ~ specs | by)``).

    The reference grid holds every level of each factor and covariates at their
    means (or the values in ``at``); the mean of a cell of ``specs`` (and ``by``)
    averages the grid's population-level predictions with equal weights over the
    other factors. Group effects are not included (as emmeans for ``lmer``).

    Bayesian: posterior mean, SD, and HDI (``kind="eti"`` for quantiles) per cell;
    REML: estimate, SE, Satterthwaite df and t-interval.
    """
    cells, L = _cell_matrix(model, _as_list(specs) + _as_list(by), at)
    out = _estimate_rows(model, L, prob, kind)
    return pd.concat([cells, out], axis=1)


def _contrast_matrix(cells: pd.DataFrame, specs: list[str], by: list[str], method: str):
    """Contrast rows (labels, by-values, weights over cells)."""
    groups = [((), cells.index.to_numpy())] if not by else \
        [(k if isinstance(k, tuple) else (k,), idx.to_numpy())
         for k, idx in cells.groupby(by, observed=True, sort=False).groups.items()]
    labels, bys, W = [], [], []

    def name(i):
        return ",".join(str(cells.loc[i, s]) for s in specs)

    for key, idx in groups:
        if method == "pairwise":
            pairs = [(a, b) for a, b in itertools.combinations(idx, 2)]
        elif method == "revpairwise":
            pairs = [(b, a) for a, b in itertools.combinations(idx, 2)]
        elif method == "trt.vs.ctrl":
            pairs = [(b, idx[0]) for b in idx[1:]]
        else:
            raise BayesHLMError("method must be 'pairwise', 'revpairwise' or 'trt.vs.ctrl'")
        for a, b in pairs:
            w = np.zeros(len(cells))
            w[a], w[b] = 1.0, -1.0
            labels.append(f"{name(a)} - {name(b)}")
            bys.append(key)
            W.append(w)
    return labels, bys, np.array(W), {tuple(k): len(idx) for k, idx in groups}


def contrasts(model, specs: str | Sequence[str], by: str | Sequence[str] | None = None,
              method: Literal["pairwise", "revpairwise", "trt.vs.ctrl"] = "pairwise",
              at: dict | None = None, prob: float = 0.95, kind: str = "hdi",
              adjust: str | None = None) -> pd.DataFrame:
    """Contrasts of estimated marginal means (emmeans ``pairs()`` / ``contrast(method=)``).

    ``"pairwise"`` gives ``a - b`` for every pair in level order (emmeans'
    ``pairs``), ``"trt.vs.ctrl"`` each level minus the first. Within ``by`` cells
    when given. Bayesian: posterior of each difference (with ``pd``, the probability
    of direction). REML: t-tests with Satterthwaite df; ``adjust`` = ``"tukey"``
    (default for pairwise, as emmeans), ``"bonferroni"``, ``"holm"`` or ``"none"``.
    """
    specs, by = _as_list(specs), _as_list(by)
    cells, L = _cell_matrix(model, specs + by, at)
    labels, bys, W, sizes = _contrast_matrix(cells, specs, by, method)
    if len(W) == 0:
        raise BayesHLMError("no contrasts: the specs have a single level")
    C = W @ L
    out = _estimate_rows(model, C, prob, kind)
    if not is_bayes(model):
        adjust = adjust or ("tukey" if method in ("pairwise", "revpairwise") else "none")
        out["p.value"] = _adjust(out, adjust, [sizes[tuple(b)] for b in bys], bys)
        out.attrs["adjust"] = adjust
    out.insert(0, "contrast", labels)
    for j, b in enumerate(by):
        out.insert(1 + j, b, [k[j] for k in bys])
    return out


def _adjust(out: pd.DataFrame, adjust: str, ks: list[int], bys) -> np.ndarray:
    p = out["p.value"].to_numpy().copy()
    if adjust == "none":
        return p
    if adjust == "tukey":
        t = np.abs(out["statistic"].to_numpy())
        return np.array([sps.studentized_range.sf(ti * np.sqrt(2), k, df) if k > 2 else pi
                         for ti, k, df, pi in zip(t, ks, out["df"].to_numpy(), p)])
    res = p.copy()
    for key in dict.fromkeys(bys):  # per by-group family, as emmeans
        sel = np.array([b == key for b in bys])
        ps = p[sel]
        m = len(ps)
        if adjust == "bonferroni":
            res[sel] = np.minimum(ps * m, 1.0)
        elif adjust == "holm":
            order = np.argsort(ps)
            adj = np.maximum.accumulate((m - np.arange(m)) * ps[order])
            tmp = np.empty(m)
            tmp[order] = np.minimum(adj, 1.0)
            res[sel] = tmp
        else:
            raise BayesHLMError("adjust must be 'tukey', 'bonferroni', 'holm' or 'none'")
    return res


def slopes(model, variable: str, at: dict | None = None, by: str | Sequence[str] | None = None,
           prob: float = 0.95, kind: str = "hdi", eps: float | None = None) -> pd.DataFrame:
    """Slope of the population-level prediction in ``variable`` (emmeans ``emtrends``,
    marginaleffects ``slopes``), per combination of the values in ``at`` (e.g.
    ``at={"sector": ["Public", "Catholic"]}``) and levels of ``by``, averaged over
    the other factors; other covariates at their means.

    The derivative is a central finite difference of the design matrix, so
    transformed terms (``I(x**2)``, ``poly``) are handled; for linear terms it is exact.
    """
    spec = _spec(model)
    _check_specs(spec, [variable])
    col = spec.data[variable]
    if isinstance(col.dtype, pd.CategoricalDtype):
        raise BayesHLMError(f"{variable!r} is categorical: use contrasts() for its effects")
    h = eps or 1e-4 * max(float(col.astype(float).std()), 1e-8)

    def dX(grid):
        up, dn = grid.copy(), grid.copy()
        up[variable] = up[variable].astype(float) + h
        dn[variable] = dn[variable].astype(float) - h
        return (spec.fixed_matrix(up) - spec.fixed_matrix(dn)) / (2 * h)

    cells_by = [k for k in (at or {}) if k != variable] + _as_list(by)
    cells, L = _cell_matrix(model, cells_by, at, X_fn=dX)
    if variable in (at or {}):  # one row per value of the variable itself too
        cells, L = _cell_matrix(model, [variable] + cells_by, at, X_fn=dX)
    out = _estimate_rows(model, L, prob, kind)
    out.insert(0, "term", variable)
    return pd.concat([cells.reset_index(drop=True), out], axis=1) if len(cells.columns) else out


def emmeans_reml(m, specs, **kwargs) -> pd.DataFrame:
    """:func:`emmeans` for a :class:`~bayes_hlm.reml.RemlResult` (Satterthwaite df)."""
    return emmeans(m, specs, **kwargs)


def contrasts_reml(m, specs, **kwargs) -> pd.DataFrame:
    """:func:`contrasts` for a :class:`~bayes_hlm.reml.RemlResult` (Satterthwaite df)."""
    return contrasts(m, specs, **kwargs)


def slopes_reml(m, variable, **kwargs) -> pd.DataFrame:
    """:func:`slopes` for a :class:`~bayes_hlm.reml.RemlResult` (Satterthwaite df)."""
    return slopes(m, variable, **kwargs)
