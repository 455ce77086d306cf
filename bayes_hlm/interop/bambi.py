"""Bambi users keep their models: fit a ``bambi.Model`` here, hand our posterior to Bambi.

* :func:`fit_arguments` (what ``bh.fit(model)`` translates a ``bambi.Model`` with) takes over the
  model's formula, family, link, data and *final* priors (Bambi's scaled defaults and every
  prior the user set, read from the model's terms after Bambi built them) and fits the
  same model with our engines. In Bambi ``(x|g)`` is **uncorrelated** (an independent
  normal per term, each with its own SD), so it becomes our ``(1 + x || g)`` with Bambi's
  prior on every SD. Before any sampling the translation is checked: our fixed design
  matrix and every group-term column must equal Bambi's, and anything we cannot fit (an
  offset or HSGP term, a distributional parameter model such as ``sigma ~ x``, a
  censored/truncated/weighted response, an unsupported family or link, a hierarchical or
  constant prior, ``center_predictors=False``, potentials) is a
  :class:`~bayes_hlm.errors.BayesHLMError` naming the term.
* :func:`to_bambi` (``result.to_bambi()``) writes our posterior with Bambi's names, dims
  and coordinates, so ``bambi.interpret`` and ArviZ plots work on it next to a Bambi fit.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import BayesHLMError
from ..spec.priors import Prior, sd_key

#: Bambi family name -> ours (same names; listed so a rename on either side is one line)
FAMILY_NAMES = {"gaussian": "gaussian", "bernoulli": "bernoulli", "poisson": "poisson",
                "binomial": "binomial", "gamma": "gamma", "negativebinomial": "negativebinomial",
                "t": "t"}

_OBS_DIM = "__obs__"  # Bambi's observation dimension


def is_bambi_model(obj) -> bool:
    """Whether ``obj`` is a ``bambi.Model`` (without importing Bambi when it is not loaded)."""
    bmb = sys.modules.get("bambi")
    return bmb is not None and isinstance(obj, bmb.Model)


@dataclass(frozen=True)
class BambiNames:
    """Bambi's names for our parameters.

    ``fixed``: per column of our fixed design, ``(bambi variable, level or None)``;
    ``groups``: ``(factor, our term, bambi name, factor dim, level labels)`` per group term;
    ``response``: the observed variable's name.
    """

    fixed: list[tuple[str, str | None]]
    groups: list[tuple[str, str, str, str, list[str]]]
    response: str
    family_params: tuple[str, ...] = ("sigma",)


@dataclass(frozen=True)
class Translation:
    """A ``bambi.Model`` as our fit arguments (see :func:`translate`)."""

    formula: str
    data: pd.DataFrame
    priors: dict[str, Prior]
    family: str
    link: str
    names: BambiNames = field(repr=False)


def _term_error(term: str, what: str) -> BayesHLMError:
    return BayesHLMError(f"Bambi model term {term!r}: {what}; bayes_hlm cannot fit it - remove the "
                         f"term or fit this model with model.fit()")


def _prior(bprior, where: str) -> Prior:
    """Our Prior from a Bambi ``Prior`` (no hierarchical or constant priors)."""
    if not hasattr(bprior, "name") or not hasattr(bprior, "args"):
        raise _term_error(where, f"prior {bprior!r} is not a distribution (a constant value "
                                 f"fixes the parameter, which bayes_hlm does not support)")
    args = {}
    for k, v in bprior.args.items():
        if hasattr(v, "args"):
            raise _term_error(where, f"hierarchical prior {bprior} (parameter {k!r} has a prior)")
        args[k] = v
    return Prior(bprior.name, **args)


def _sd_prior(bprior, where: str) -> Prior:
    """The prior of a group term's SD from Bambi's ``Normal(mu=0, sigma=<prior>)``."""
    sigma = bprior.args.get("sigma") if getattr(bprior, "name", None) == "Normal" else None
    mu = np.asarray(bprior.args.get("mu", 0.0)) if sigma is not None else None
    if sigma is None or not hasattr(sigma, "args") or np.any(mu != 0):
        raise _term_error(where, f"group-level prior {bprior} is not Normal(mu=0, sigma=<prior>)")
    return _prior(sigma, where + "_sigma")


def _refuse_unsupported(model) -> None:
    """Everything we cannot fit, named, before any design is built."""
    from ..families import FAMILIES

    fam = model.family
    parent = fam.likelihood.parent
    ours = FAMILY_NAMES.get(fam.name)
    if ours is None or ours not in FAMILIES:
        raise BayesHLMError(f"Bambi family {fam.name!r} is not supported by bayes_hlm (families "
                            f"available: {', '.join(sorted(FAMILIES))}); fit it with model.fit()")
    for name in model.conditional_parameters:
        if name != parent:
            raise BayesHLMError(f"Bambi model has a model for the distributional parameter "
                                f"{name!r} ({name} ~ ...); bayes_hlm models only {parent!r}: "
                                f"drop that formula or fit it with model.fit()")
    if model.potentials:
        raise BayesHLMError("Bambi model has potentials, which bayes_hlm does not support")
    resp = model.response_term
    for flag in ("is_censored", "is_truncated", "is_weighted", "is_constrained"):
        if getattr(resp, flag, False):
            raise _term_error(resp.name, f"the response is {flag[3:]}")
    from bambi.terms import CommonTerm, GroupSpecificTerm, OffsetTerm

    comp = model.parameters[parent]
    for name, term in comp.terms.items():
        if type(term) not in (CommonTerm, GroupSpecificTerm, OffsetTerm):
            raise _term_error(name, f"a {type(term).__name__}")
        if isinstance(term, GroupSpecificTerm) and \
                term.shape[1] != len(term.groups):
            raise _term_error(name, "a group-level term with several columns (a categorical "
                                    "expression); write one numeric term per column")
    if not model.center_predictors and comp.intercept_term is not None and comp.common_terms:
        raise BayesHLMError("Bambi model has center_predictors=False: its intercept prior is on "
                            "the uncentred intercept, ours on the centred one (Bambi's default); "
                            "build the model with center_predictors=True")


def _common(comp, offsets: bool = False) -> list[tuple[str, object, slice]]:
    """(name, term, columns) of the common terms (intercept included) in design-matrix order;
    with ``offsets`` the ``offset(...)`` terms instead (coefficient 1, no parameter)."""
    from bambi.terms import OffsetTerm

    if comp.design.common is None:
        return []
    sl = comp.design.common.slices
    ordered = sorted(sl.items(), key=lambda kv: kv[1].start)
    return [(name, comp.terms[name], s) for name, s in ordered
            if isinstance(comp.terms[name], OffsetTerm) == offsets]


def _formula(model) -> str:
    """Our formula: the common terms as written, ``(1 + x || g)`` per grouping factor."""
    comp = model.parameters[model.family.likelihood.parent]
    common = [name for name, _, _ in _common(comp)]
    rhs = ["1" if "Intercept" in common else "0"]
    rhs += [n for n in common if n != "Intercept"] + [n for n, _, _ in _common(comp, offsets=True)]
    by_factor: dict[str, list[str]] = {}
    for term in comp.group_specific_terms.values():
        factor = term.term.factor.name
        expr = term.term.expr.name
        by_factor.setdefault(factor, []).append("1" if expr == "Intercept" else expr)
    for factor, exprs in by_factor.items():
        if exprs == ["1"]:
            rhs.append(f"(1 | {factor})")
        else:
            lead = [] if "1" in exprs else ["0"]
            rhs.append(f"({' + '.join(lead + exprs)} || {factor})")
    return f"{model.response_term.name} ~ {' + '.join(rhs)}"


def _check_same_design(model, design) -> None:
    """Our design must be Bambi's, column for column (same model, same data)."""
    comp = model.parameters[model.family.likelihood.parent]
    if design.n != len(np.asarray(model.response_term.data)):
        raise BayesHLMError(f"the Bambi model has {len(model.response_term.data)} rows, "
                            f"our design {design.n} (missing values handled differently?)")
    y = np.asarray(model.response_term.data, dtype=float)
    if y.ndim == 1 and not np.allclose(y, design.y, rtol=1e-10, atol=1e-10):
        raise _term_error(model.response_term.name, "our response is not Bambi's (a different "
                                                    "success level or transformation?)")
    if comp.design.common is not None:
        full = np.asarray(comp.design.common.design_matrix, dtype=float)
        X = np.concatenate([full[:, s] for _, _, s in _common(comp)] or [full[:, :0]], axis=1)
        off = sum((full[:, s].sum(axis=1) for _, _, s in _common(comp, offsets=True)),
                  np.zeros(design.n))
        ours_off = np.zeros(design.n) if getattr(design, "offset", None) is None else design.offset
        if not np.allclose(off, ours_off, rtol=1e-10, atol=1e-10):
            raise _term_error([n for n, _, _ in _common(comp, offsets=True)][0] if
                              _common(comp, offsets=True) else "offset",
                              "it does not translate to the same offset")
        if X.shape != design.X.shape or not np.allclose(X, design.X, rtol=1e-10, atol=1e-10):
            raise BayesHLMError(f"the common terms {[n for n, _, _ in _common(comp)]} do not "
                                f"translate to "
                                f"the same design matrix (ours: {list(design.fixed_names)})")
    for name, term in comp.group_specific_terms.items():
        ours = _our_group_columns(design, term)
        theirs = comp.design.group.design_matrix[:, comp.design.group.slices[name]]
        theirs = np.asarray(theirs.toarray() if hasattr(theirs, "toarray") else theirs, float)
        if ours is None or ours.shape != theirs.shape or \
                not np.allclose(ours, theirs, rtol=1e-10, atol=1e-10):
            raise _term_error(name, "it does not translate to the same group-level columns")


def _group_of(design, factor: str, term: str):
    for g in design.groups:
        if g.factor == factor and term in g.terms:
            return g, g.terms.index(term)
    return None, None


def _our_group_columns(design, bterm) -> np.ndarray | None:
    """Our Z column of a Bambi group term spread over levels in Bambi's level order (n, L)."""
    expr = bterm.term.expr.name
    g, j = _group_of(design, bterm.term.factor.name, "Intercept" if expr == "Intercept" else expr)
    if g is None:
        return None
    labels = [str(v) for v in g.levels]
    pos = {lab: i for i, lab in enumerate(labels)}
    order = [pos.get(str(lab)) for lab in bterm.groups]
    if None in order or len(order) != len(labels):
        return None
    dense = np.zeros((design.n, len(labels)))
    dense[np.arange(design.n), g.codes] = g.Z[:, j]
    return dense[:, order]


def bambi_names(model, design) -> BambiNames:
    """Bambi's names, dims and level coordinates for the parameters of ``design``."""
    comp = model.parameters[model.family.likelihood.parent]
    fixed: list[tuple[str, str | None]] = []
    for name, term, cols in _common(comp):
        width = cols.stop - cols.start
        var = term.alias or name
        levels = getattr(term.term, "levels", None) if term.categorical else None
        if levels is None and width > 1:
            levels = [str(i) for i in range(width)]
        fixed += [(var, None)] if levels is None else [(var, str(lev)) for lev in levels]
    groups = []
    for name, term in comp.group_specific_terms.items():
        expr = term.term.expr.name
        groups.append((term.term.factor.name, "Intercept" if expr == "Intercept" else expr,
                       term.alias or name, f"{term.term.factor.name}__factor_dim",
                       [str(v) for v in term.groups]))
    resp = model.response_term
    return BambiNames(fixed=fixed, groups=groups, response=resp.alias or resp.name,
                      family_params=tuple(model.marginal_parameters))


def names_from_design(design, family_params=("sigma",)) -> BambiNames:
    """Bambi-style names for a model fitted from a formula (no ``bambi.Model`` at hand):
    each fixed column a scalar variable under our name, group terms ``1|g`` / ``x|g``."""
    groups = [(g.factor, t, sd_key(t, g.factor), f"{g.factor}__factor_dim",
               [str(v) for v in g.levels]) for g in design.groups for t in g.terms]
    return BambiNames(fixed=[(n, None) for n in design.fixed_names], groups=groups,
                      response=design.response, family_params=tuple(family_params))


def translate(model) -> Translation:
    """A ``bambi.Model`` as our formula, data, priors, family and link; refuses what we cannot fit.

    Raises
    ------
    BayesHLMError
        Naming the term, family or setting we cannot fit; raised before any sampling.
    """
    from ..families import get_family
    from ..spec.build import build_design

    _refuse_unsupported(model)
    parent = model.family.likelihood.parent
    comp = model.parameters[parent]
    formula = _formula(model)
    data = model.data
    family, link = FAMILY_NAMES[model.family.name], model.family.link[parent].name
    design = build_design(formula, data, family=get_family(family, link))
    _check_same_design(model, design)
    names = bambi_names(model, design)
    priors: dict[str, Prior] = {}
    col = 0
    for name, term, cols in _common(comp):
        width = cols.stop - cols.start
        base = _prior(term.prior, name)
        for k in range(width):
            params = {p: (np.asarray(v).ravel()[k] if np.asarray(v).size == width > 1 else v)
                      for p, v in base.params.items()}
            priors[design.fixed_names[col]] = Prior(base.dist, **params)
            col += 1
    for name, term in comp.group_specific_terms.items():
        expr = term.term.expr.name
        priors[sd_key("Intercept" if expr == "Intercept" else expr, term.term.factor.name)] = \
            _sd_prior(term.prior, name)
    for name, c in model.marginal_parameters.items():
        priors[name] = _prior(c.prior, name)
    return Translation(formula=formula, data=data, priors=priors, family=family, link=link,
                       names=names)


def fit_arguments(model, data, given: dict, defaults: dict) -> dict:
    """The arguments of :func:`bayes_hlm.fit` for a ``bambi.Model`` (what ``bh.fit(model)`` runs).

    :func:`bayes_hlm.fit` translates the model here and then runs itself: this module never
    imports the fit pipeline.

    Parameters
    ----------
    model : bambi.Model
    data : None
        Must be None: the data come from the model.
    given : dict
        The other keywords of the ``fit`` call as passed. ``priors=`` given are laid over the
        Bambi model's; ``family``/``link`` must be left at their defaults (they are the model's).
    defaults : dict
        ``fit``'s default of each keyword.

    Returns
    -------
    dict
        ``formula``, ``data``, ``priors``, ``family``, ``link`` and the rest of ``given``.
    """
    if data is not None:
        raise BayesHLMError("bh.fit(bambi_model) takes the data from the Bambi model; "
                            "do not pass data=")
    kwargs = dict(given)
    for key in ("family", "link"):  # the Bambi model's
        if key in kwargs and kwargs.pop(key) != defaults.get(key):
            raise BayesHLMError(f"bh.fit(bambi_model): the {key} comes from the Bambi model; "
                                f"do not pass {key}=")
    tr = translate(model)
    priors = {**tr.priors, **(kwargs.pop("priors", None) or {})}
    return dict(kwargs, formula=tr.formula, data=tr.data, priors=priors, family=tr.family,
                link=tr.link)


def _effects(result, factor: str) -> np.ndarray:
    """(chain, draw, levels, q) group effects (stored or regenerated)."""
    d = result._draws
    b = d.effects(factor)
    return b.reshape((d.n_chains, d.n_draws) + b.shape[1:])


def to_bambi(result, model=None) -> xr.DataTree:
    """Our posterior with Bambi's names, dims and coordinates.

    Groups: ``posterior`` (``Intercept``, each slope, categorical terms as one variable
    with dim ``<term>_dim``, the family's parameters such as ``sigma``, per group term
    ``1|g_sigma`` and ``1|g`` with dims (chain, draw, ``g__factor_dim``)),
    ``sample_stats`` (ours) and ``observed_data`` (Bambi's response name, dim ``__obs__``).
    With the user's ``bambi.Model`` (``model``, or the one ``bh.fit(model)`` was given)
    names, aliases and level order are Bambi's exactly, so ``bambi.interpret`` runs on it.

    Dropped: the correlations of correlated ``(x|g)`` terms (Bambi has no name for them);
    the SDs and effects are exported, and the dropped variables are listed in
    ``posterior.attrs["bayes_hlm_dropped"]``.
    """
    model = model if model is not None else getattr(result, "bambi_model", None)
    design = result.design
    fam = getattr(result.spec, "family", None)
    fam_params = tuple(getattr(fam, "param_names", ("sigma",)))
    names = bambi_names(model, design) if model is not None else \
        names_from_design(design, fam_params)
    post = result.posterior
    chain, draw = post["chain"].values, post["draw"].values
    fixed = result._draws.chained("fixed")
    out: dict[str, xr.DataArray] = {}
    for p in names.family_params:
        if p in post:
            out[p] = xr.DataArray(np.asarray(post[p].values), dims=("chain", "draw"))
    by_var: dict[str, list[tuple[int, str | None]]] = {}
    for j, (var, level) in enumerate(names.fixed):
        by_var.setdefault(var, []).append((j, level))
    coords: dict[str, list] = {"chain": chain, "draw": draw}
    for var, cols in by_var.items():
        if cols[0][1] is None:
            out[var] = xr.DataArray(fixed[..., cols[0][0]], dims=("chain", "draw"))
        else:
            dim = f"{var}_dim"
            coords[dim] = [lev for _, lev in cols]
            out[var] = xr.DataArray(fixed[..., [j for j, _ in cols]], dims=("chain", "draw", dim))
    effects: dict[str, np.ndarray] = {}
    for factor, term, bname, dim, labels in names.groups:
        terms = result._terms(factor)
        q = terms.index(term)
        sd = result._draws.chained(f"sd__{factor}")[..., q]
        out[f"{bname}_sigma"] = xr.DataArray(sd, dims=("chain", "draw"))
        if factor not in effects:
            effects[factor] = _effects(result, factor)
        ours = [str(v) for v in result._levels(factor)]
        pos = {lab: i for i, lab in enumerate(ours)}
        order = [pos[lab] for lab in labels]
        coords[dim] = labels
        out[bname] = xr.DataArray(effects[factor][:, :, order, q], dims=("chain", "draw", dim))
    dropped = [v for v in post.data_vars if str(v).startswith("corr__")]
    posterior = xr.Dataset(out, coords={k: v for k, v in coords.items()
                                        if any(k in a.dims for a in out.values()) or
                                        k in ("chain", "draw")})
    posterior.attrs.update({"modeling_interface": "bambi", "inference_library": "bayes_hlm",
                            "bayes_hlm_dropped": ", ".join(dropped)})
    groups = {"posterior": posterior}
    if "sample_stats" in result.tree.children:
        groups["sample_stats"] = result.tree["sample_stats"].to_dataset()
    groups["observed_data"] = xr.Dataset(
        {names.response: ((_OBS_DIM,), np.asarray(design.y))},
        coords={_OBS_DIM: np.arange(design.n)})
    return xr.DataTree.from_dict(groups)
