"""Marginal means, contrasts and slopes on emmeans' reference grid, for any mixed-model result.

* :func:`reference_grid` - emmeans ``ref_grid``.
* :func:`emmeans` - estimated marginal means (factors at every level and averaged with
  equal weights, covariates at their means).
* :func:`contrasts` - pairwise (or treatment-vs-control) contrasts of marginal means
  (emmeans ``pairs()`` / ``contrast()``).
* :func:`slopes` - slopes of a covariate at chosen values of other predictors
  (emmeans ``emtrends``, marginaleffects ``slopes``).

Each builds a matrix ``L`` of fixed-effect weights; the result estimates ``L β`` itself
(``result._linear_estimates``: posterior draws summarised with an HDI / ETI, or Wald
t-intervals with Satterthwaite df on a REML fit).
"""

from __future__ import annotations

import itertools
from typing import Literal, Sequence

import numpy as np
import pandas as pd

from ..errors import BayesHLMError
from ._args import resolve_level

__all__ = ["reference_grid", "emmeans", "contrasts", "slopes"]


def _as_list(x) -> list[str]:
    if x is None:
        return []
    return [x] if isinstance(x, str) else list(x)


def _spec(model):
    spec = getattr(model, "spec", None)
    if spec is None or getattr(spec, "data", None) is None:
        raise BayesHLMError("this result has no model spec with data (fit from a formula + data "
                            "to use reference grids)")
    return spec


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


def _with_cells(cells: pd.DataFrame, out: pd.DataFrame) -> pd.DataFrame:
    """Cell columns next to the estimates, the interval label kept."""
    name, attrs = out.columns.name, dict(out.attrs)
    res = pd.concat([cells.reset_index(drop=True), out.reset_index(drop=True)], axis=1)
    res.columns.name = name
    res.attrs.update(attrs)
    return res


def emmeans(model, specs: str | Sequence[str], by: str | Sequence[str] | None = None,
            at: dict | None = None, level: float | None = None, kind: str = "hdi",
            prob: float | None = None) -> pd.DataFrame:
    """Estimated marginal means (emmeans ``emmeans(m, ~ specs | by)``).

    The reference grid holds every level of each factor and covariates at their
    means (or the values in ``at``); the mean of a cell of ``specs`` (and ``by``)
    averages the grid's population-level predictions with equal weights over the
    other factors. Group effects are not included (as emmeans for ``lmer``).

    Bayesian: posterior mean, SD, and HDI (``kind="eti"`` for quantiles) per cell;
    REML: estimate, SE, Satterthwaite df and t-interval. ``level`` defaults to 0.95
    (``prob`` is its deprecated spelling).
    """
    level = resolve_level(level, prob, "emmeans")
    cells, L = _cell_matrix(model, _as_list(specs) + _as_list(by), at)
    return _with_cells(cells, model._linear_estimates(L, level, kind))


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
              at: dict | None = None, level: float | None = None, kind: str = "hdi",
              adjust: str | None = None, prob: float | None = None) -> pd.DataFrame:
    """Contrasts of estimated marginal means (emmeans ``pairs()`` / ``contrast(method=)``).

    ``"pairwise"`` gives ``a - b`` for every pair in level order (emmeans'
    ``pairs``), ``"trt.vs.ctrl"`` each level minus the first. Within ``by`` cells
    when given. Bayesian: posterior of each difference (with ``pd``, the probability
    of direction). REML (tables with p-values): t-tests with Satterthwaite df; ``adjust`` =
    ``"tukey"`` (default for pairwise, as emmeans), ``"bonferroni"``, ``"holm"`` or ``"none"``.
    """
    level = resolve_level(level, prob, "contrasts")
    specs, by = _as_list(specs), _as_list(by)
    cells, L = _cell_matrix(model, specs + by, at)
    labels, bys, W, sizes = _contrast_matrix(cells, specs, by, method)
    if len(W) == 0:
        raise BayesHLMError("no contrasts: the specs have a single level")
    out = model._linear_estimates(W @ L, level, kind)
    if "p.value" in out.columns:  # frequentist tests: multiplicity adjustment, as emmeans
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
        from scipy import stats as sps  # only here: scipy.stats costs seconds to import

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
           level: float | None = None, kind: str = "hdi", eps: float | None = None,
           prob: float | None = None) -> pd.DataFrame:
    """Slope of the population-level prediction in ``variable`` (emmeans ``emtrends``,
    marginaleffects ``slopes``), per combination of the values in ``at`` (e.g.
    ``at={"sector": ["Public", "Catholic"]}``) and levels of ``by``, averaged over
    the other factors; other covariates at their means.

    The derivative is a central finite difference of the design matrix, so
    transformed terms (``I(x**2)``, ``poly``) are handled; for linear terms it is exact.
    """
    level = resolve_level(level, prob, "slopes")
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
    out = model._linear_estimates(L, level, kind)
    out.insert(0, "term", variable)
    return _with_cells(cells, out) if len(cells.columns) else out
