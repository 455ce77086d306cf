"""The posterior layout handed to ArviZ (``BayesResult.tree``), and the way back.

The backends produce ``corr__<factor>`` as a full (term, term_b) matrix and
append variables in sampling order. Two things in that layout mislead ArviZ:

* ArviZ 1.x labels the rows of ``az.summary`` per variable (``xarray_sel_iter``,
  in the variable's own dimension order) but takes the values from
  ``Dataset.to_stacked_array``, which stacks every variable in the *dataset's*
  dimension order - the order in which dimensions first appear over the data
  variables. With ``sd__Subject`` (term) written before ``r__Subject`` (level,
  term) the dataset order is (term, level), the values of ``r__Subject`` are
  stacked term-major and labelled level-major: row ``r__Subject[308, Days]``
  showed subject 309's intercept. Every variable here is written so that its
  dimensions appear in the dataset's order (a group factor's effects before its
  SDs), whatever order the backend wrote them in.
* The matrix's diagonal is the constant 1 and each correlation appears twice:
  R-hat is undefined (a warning on every ``az.summary``) and rank plots show
  empty "p=0.00" panels. The tree stores only the free pairs (i < j within a
  correlated block), ``corr__<factor>`` (chain, draw, ``<factor>__pair``) with
  labels ``"<term_i>, <term_j>"``.

:func:`backend_values` gives any variable back in the backend layout (the
matrix), so every accessor reads both layouts, including files saved before
this layout existed. ``fixed`` stays one vector (its coefficients have
different scales: plot them with ``az.plot_trace(result.tree, compact=False)``).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..spec import variable_names as naming
from ..spec.design import Design

SAMPLE_DIMS = ("chain", "draw")
# posterior attribute naming the factors whose group effects are not stored (too large):
# ``ranef()``, ``predict()`` etc. draw them exactly on demand; ArviZ cannot see them
ON_DEMAND_ATTR = "group_effects_on_demand"


def corr_pairs(design: Design, factor: str) -> list[tuple[int, int]]:
    """Index pairs (i < j) of the correlations that are parameters (within a correlated block)."""
    pairs, start = [], 0
    for g in design.groups:
        if g.factor != factor:
            continue
        if g.correlated:
            pairs += [(start + i, start + j) for i in range(g.q) for j in range(i + 1, g.q)]
        start += g.q
    return pairs


def _pair_var(design: Design, factor: str, da: xr.DataArray) -> xr.DataArray | None:
    """A (chain, draw, term, term_b) correlation matrix as its free pairs; None if it has none."""
    pairs = corr_pairs(design, factor)
    if not pairs:
        return None
    td, tdb = naming.term_dim(factor), naming.term_dim_b(factor)
    m = da.transpose(*SAMPLE_DIMS, td, tdb)
    terms = [str(t) for t in m.coords[td].values]
    vals = np.stack([m.values[..., i, j] for i, j in pairs], axis=-1)
    return xr.DataArray(vals, dims=(*SAMPLE_DIMS, naming.pair_dim(factor)),
                        coords={"chain": da.coords["chain"], "draw": da.coords["draw"],
                                naming.pair_dim(factor): [f"{terms[i]}, {terms[j]}" for i, j in pairs]},
                        attrs=da.attrs)


def _ordered_names(design: Design, names) -> list[str]:
    """fixed, sigma, then per factor its effects, SDs, correlations; anything else after."""
    first = [naming.FIXED, naming.SIGMA]
    for f in design.factors():
        first += [naming.effect_var(f), naming.sd_var(f), naming.corr_var(f)]
    names = list(names)
    return [n for n in first if n in names] + [n for n in names if n not in first]


def to_arviz(posterior: xr.Dataset, design: Design) -> xr.Dataset:
    """The posterior as ``BayesResult.tree`` stores it (idempotent; accepts either layout)."""
    data = dict(posterior.data_vars)
    for f in design.factors():
        cv = naming.corr_var(f)
        if cv in data and naming.term_dim_b(f) in data[cv].dims:
            pv = _pair_var(design, f, data.pop(cv))
            if pv is not None:
                data[cv] = pv
    names = _ordered_names(design, data)
    # the first variable holding a dimension fixes its place in the dataset's order: a
    # variable whose own order disagrees is transposed (never the case for our variables)
    order: list = list(SAMPLE_DIMS)
    for n in names:
        order += [d for d in data[n].dims if d not in order]
    out = {}
    for n in names:
        da = data[n]
        own = [d for d in order if d in da.dims]
        out[n] = da.transpose(*own) if list(da.dims) != own else da
    used = {d for da in out.values() for d in da.dims}
    coords = {k: v for k, v in posterior.coords.items()
              if set(v.dims) <= used and k not in out}
    ds = xr.Dataset(out, attrs=posterior.attrs)
    return ds.assign_coords({k: v for k, v in coords.items() if k not in ds.coords})


def arviz_tree(tree: xr.DataTree, design: Design) -> xr.DataTree:
    """``tree`` with its ``posterior`` (and ``prior``) groups in the ArviZ layout."""
    from .._xarray_build import unimported_duck_arrays_absent

    with unimported_duck_arrays_absent():  # numpy draws: no dask import
        return _arviz_tree(tree, design)


def _arviz_tree(tree: xr.DataTree, design: Design) -> xr.DataTree:
    groups = {k: tree[k].to_dataset() for k in tree.children}
    for g in ("posterior", "prior"):
        if g in groups:
            groups[g] = to_arviz(groups[g], design)
    if "posterior" in groups:  # the marginal method may regenerate effects instead of storing them
        missing = [f for f in design.factors() if naming.effect_var(f) not in groups["posterior"]]
        if missing:
            groups["posterior"].attrs[ON_DEMAND_ATTR] = ", ".join(missing)
    out = xr.DataTree.from_dict(groups)
    out.attrs.update(tree.attrs)
    return out


def _matrix(da: xr.DataArray, factor: str, design: Design, terms: list[str]) -> np.ndarray:
    """(chain, draw, q, q) correlation matrix from the pair layout (identity where not a parameter)."""
    q = len(terms)
    C, D = da.sizes["chain"], da.sizes["draw"]
    m = np.broadcast_to(np.eye(q), (C, D, q, q)).copy()
    vals = da.transpose(*SAMPLE_DIMS, naming.pair_dim(factor)).values
    for k, (i, j) in enumerate(corr_pairs(design, factor)):
        m[..., i, j] = m[..., j, i] = vals[..., k]
    return m


def _factor_of_corr(var: str) -> str | None:
    prefix = naming.corr_var("")
    return var[len(prefix):] if var.startswith(prefix) else None


def backend_values(posterior: xr.Dataset, var: str, design: Design) -> np.ndarray:
    """``posterior[var].values`` in the backend layout: correlations as (chain, draw, q, q)."""
    da = posterior[var]
    f = _factor_of_corr(var)
    if f is not None and naming.pair_dim(f) in da.dims:
        return _matrix(da, f, design, _terms(posterior, f))
    return da.values


def _terms(posterior: xr.Dataset, factor: str) -> list[str]:
    return [str(t) for t in posterior[naming.sd_var(factor)].coords[naming.term_dim(factor)].values]


def to_backend(posterior: xr.Dataset, design: Design) -> xr.Dataset:
    """The posterior in the backend layout (full correlation matrices), e.g. for the
    marginal method's exact effect generator on a loaded result."""
    out = posterior.copy(deep=False)
    for f, ks in _blocks(design).items():
        cv = naming.corr_var(f)
        if not any(design.groups[k].correlated for k in ks):
            continue
        if cv in out and naming.term_dim_b(f) in out[cv].dims:
            continue
        terms = _terms(posterior, f)
        if cv in out:
            m = _matrix(out[cv], f, design, terms)
            out = out.drop_vars(cv)
        else:  # no free pair (e.g. a single correlated term): the identity
            q, C, D = len(terms), out.sizes["chain"], out.sizes["draw"]
            m = np.broadcast_to(np.eye(q), (C, D, q, q)).copy()
        out[cv] = xr.DataArray(m, dims=(*SAMPLE_DIMS, naming.term_dim(f), naming.term_dim_b(f)),
                               coords={naming.term_dim(f): terms, naming.term_dim_b(f): terms})
    return out.drop_dims([naming.pair_dim(f) for f in design.factors()
                          if naming.pair_dim(f) in out.dims])


def _blocks(design: Design) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for k, g in enumerate(design.groups):
        out.setdefault(g.factor, []).append(k)
    return out


def dims_consistent(ds: xr.Dataset) -> bool:
    """Whether every variable's dimensions appear in the dataset's dimension order
    (what ArviZ's labelling assumes)."""
    order = {d: i for i, d in enumerate(ds.dims)}
    return all(list(da.dims) == sorted(da.dims, key=order.__getitem__) for da in ds.data_vars.values())
