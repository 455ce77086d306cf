"""Posterior predictions for the fitted rows or new data (lme4 ``predict``, brms ``posterior_epred``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from .._blas import blas_threads
from ..spec import variable_names as naming
from ..spec.build import factor_labels
from ..errors import BayesHLMError, DataError
from . import tables
from .family_draws import family_of, replicate, trials_kw

if TYPE_CHECKING:
    from .bayes_result import BayesResult


def _included(result: "BayesResult", group_effects) -> list[str]:
    if group_effects is True:
        return result.factors
    if group_effects is False or group_effects is None:
        return []
    chosen = [group_effects] if isinstance(group_effects, str) else list(group_effects)
    unknown = [f for f in chosen if f not in result.factors]
    if unknown:
        raise BayesHLMError(f"group_effects names unknown factor(s) {unknown}; factors: {result.factors}")
    return chosen


def _factor_columns(result: "BayesResult", factor: str, newdata) -> tuple[np.ndarray, np.ndarray, pd.Index]:
    """codes (-1 = level unseen in training), Z and the labels of the rows for one factor."""
    codes, Zs, labels = None, [], None
    for k, g in enumerate(result.design.groups):
        if g.factor != factor:
            continue
        if newdata is None:
            c, Z = g.codes, g.Z
        else:
            c, Z = result.spec.group_columns(k, newdata)
        codes = c
        Zs.append(Z)
    if newdata is not None:
        cols = next(t.factor_columns for t in result.spec.parsed.random if t.factor == factor)
        labels = factor_labels(newdata, cols)
    return codes, np.hstack(Zs), labels


NEW_GROUPS = ("error", "sample", "zero")


def _refuse_unseen(cols: dict, new_groups: str) -> None:
    """lme4's ``allow.new.levels = FALSE``: a level not seen in fitting (often a typo)
    is an error unless the caller says how to treat it."""
    if new_groups != "error":
        return
    for f, (codes, _, labels) in cols.items():
        unseen = codes < 0
        if not unseen.any():
            continue
        names = pd.unique(np.asarray(labels, dtype=object)[unseen])
        shown = ", ".join("missing" if x is None or x != x else repr(str(x)) for x in names[:5])
        more = f" and {len(names) - 5} more" if len(names) > 5 else ""
        raise DataError(
            f"newdata has {len(names)} level(s) of the grouping factor {f!r} not seen in fitting "
            f"({int(unseen.sum())} row(s)): {shown}{more}. Check the spelling, or say how to "
            "predict for new groups: new_groups='sample' (draw their effects from the fitted "
            "population distribution, brms sample_new_levels='gaussian') or new_groups='zero' "
            "(population-level prediction for them, lme4 allow.new.levels=TRUE).")


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    """Symmetric square roots of (S, q, q) covariances; robust to singular (boundary) draws."""
    w, v = np.linalg.eigh(cov)
    return v * np.sqrt(np.clip(w, 0, None))[:, None, :]


def predict(result: "BayesResult", newdata: pd.DataFrame | None = None, *,
            group_effects: bool | str | list[str] = True,
            new_groups: Literal["error", "sample", "zero"] = "error",
            kind: Literal["link", "mean", "response"] = "mean",
            prob: float = tables.HDI_PROB, max_draws: int | None = None,
            seed: int | None = None, return_draws: bool = False, trials=None,
            population_averaged: bool = False):
    """Posterior predictions with intervals.

    Parameters
    ----------
    newdata : DataFrame, optional
        Rows to predict; the fitted rows when omitted.
    group_effects : bool, str or list of str
        Which factors' group effects to include (lme4 ``re.form``): all
        (``True``), none (``False``, population-level prediction) or the named ones.
    new_groups : {"error", "sample", "zero"}
        Levels of an included factor not seen in fitting: refuse, naming them
        (default, as lme4 and brms do: an unseen level is often a typo); draw
        their effects from the population distribution ``N(0, Sigma)`` per
        posterior draw (brms ``sample_new_levels="gaussian"``); or set them to
        0 (lme4 ``allow.new.levels = TRUE``).
    kind : {"link", "mean", "response"}
        The linear predictor ``eta`` (``posterior_linpred``), the expected value
        ``g^-1(eta)`` (``posterior_epred``; binomial: the success probability) or a new
        observation drawn from the family (``posterior_predict``). The same for
        ``"link"`` and ``"mean"`` in Gaussian identity-link models.
    max_draws : int, optional
        Use at most this many evenly spaced draws.
    return_draws : bool
        Also return the (draws, rows) array.
    trials : int or array, optional
        Binomial models, ``kind="response"``: the number of trials of each new row (a number
        or one per row). Default: read from the response's ``cbind(s, f)``/``p(s, n)`` columns
        in ``newdata`` (or the weights column of a proportion response); an error when they
        are missing. ``kind="mean"`` is the success probability and needs no trials.
    population_averaged : bool
        Integrate every factor's group effects out instead of conditioning on them (the
        marginal, population-averaged prediction of a GEE): per posterior draw, the mean is
        ``E_b[g^-1(eta + z'b)]`` with ``b ~ N(0, Sigma)`` of each factor: a one-dimensional
        integral over the row's total group effect, ``N(0, v)`` with
        ``v = sum_f z_f' Sigma_f z_f``, by quadrature (:func:`normal_grid`; the probit link
        gives ``Phi(eta / sqrt(1 + v))``, the log link ``exp(eta + v/2)``). ``kind="link"`` is the
        fixed part ``x'beta`` (+ offset), ``kind="response"`` a new observation of a new
        group. ``group_effects`` and ``new_groups`` do not apply.

    Returns
    -------
    DataFrame with ``mean``, ``sd``, ``hdi_low``, ``hdi_high`` per row (and the draws).
    """
    if population_averaged:
        if group_effects is not True or new_groups != "error":
            raise BayesHLMError("population_averaged=True integrates every factor's group effects "
                                "out: leave group_effects and new_groups at their defaults")
        return _population_averaged(result, newdata, kind, prob, max_draws, seed, return_draws,
                                    trials)
    if new_groups not in NEW_GROUPS:
        raise BayesHLMError(f"new_groups must be one of {NEW_GROUPS}, not {new_groups!r}")
    if kind not in ("link", "mean", "response"):
        raise BayesHLMError(f"kind must be 'link', 'mean' or 'response', not {kind!r}")
    src = result._draws
    rng = np.random.default_rng(result.info.seed if seed is None else seed)
    X = result.design.X if newdata is None else result.spec.fixed_matrix(newdata)
    index = result.design.row_index if newdata is None else newdata.index
    cols = {f: _factor_columns(result, f, newdata) for f in _included(result, group_effects)}
    if newdata is not None:
        _refuse_unseen(cols, new_groups)
    idx = src.thinned(max_draws)
    groups = [(f, c, Z) for f, (c, Z, _) in cols.items()]
    offset = result.design.offset if newdata is None else result.spec.offset(newdata)
    mu = np.concatenate(list(src.linpred_chunks(idx, X, groups, offset=offset)))
    if new_groups == "sample":
        for f, (codes, Z, labels) in cols.items():
            unseen = codes < 0
            if not unseen.any():
                continue
            new_codes, _ = pd.factorize(labels[unseen], use_na_sentinel=False)
            root = _psd_sqrt(src.covariance(f)[idx])  # (s, q, q)
            z = rng.standard_normal((len(idx), new_codes.max() + 1, Z.shape[1]))
            b = np.einsum("sij,smj->smi", root, z)
            mu[:, unseen] += np.einsum("snq,nq->sn", b[:, new_codes, :], Z[unseen])
    fam = family_of(result)
    if kind == "mean":  # the expected response g^-1(eta); the identity for Gaussian models
        mu = fam.link.inverse(mu)
    elif kind == "response":
        mu = replicate(mu, src, idx, fam, rng,
                       trials_kw(result.design, newdata, result.spec, trials))
    lo, hi = tables.hdi(mu, prob)
    frame = pd.DataFrame({"mean": mu.mean(0), "sd": mu.std(0, ddof=1) if len(idx) > 1 else 0.0,
                          "hdi_low": lo, "hdi_high": hi}, index=index)
    tables.label_interval(frame, prob, "hdi")
    return (frame, mu) if return_draws else frame


#: draws x rows values per chunk of :func:`fitted_mean`'s streamed rows (128 MB)
FITTED_CHUNK = 1 << 24
#: :func:`fitted_mean`'s cell form: at most this many distinct fixed rows (with offsets) ...
_CELL_PATTERNS = 4096
#: ... and groups per block of its exponentiated effects (draws x block: 32 MB at 2,000 draws)
_CELL_BLOCK = 2048


def fitted_mean(result: "BayesResult", group_effects: bool | str | list[str] = True,
                idx: np.ndarray | None = None) -> np.ndarray:
    """Posterior mean of ``g^-1(eta)`` on the data rows: ``predict(result)["mean"]`` (the
    same numbers up to rounding) without its draws x rows matrix (10M rows x 2,000 draws
    would be 160 GB), so ``fitted()``, Pearson residuals and the fit's overdispersion check
    work at any size.

    Log link, one factor with a random intercept only and the spec's distinct fixed rows
    (``Design.row_pattern``; Poisson at scale): ``exp(x_c'beta + b_g) = exp(x_c'beta) exp(b_g)``,
    so the mean of cell ``(g, c)`` is ``(1/S) sum_s exp(b_gs) exp(x_c'beta_s)``, one matrix
    product of the exponentiated effects (draws x groups, in blocks) and fixed parts
    (draws x patterns): O(draws x (groups + patterns)) ``exp`` instead of O(draws x rows).
    Otherwise rows in chunks of :data:`FITTED_CHUNK` values, every draw.

    ``idx``: flat draw indices to average over (default every draw; the fit's overdispersion
    check passes an evenly spaced subset, :func:`~bayes_hlm.fitting.tail.warn_overdispersion`)."""
    src, design = result._draws, result.design
    fam = family_of(result)
    factors = _included(result, group_effects)
    beta = src.flat(naming.FIXED)
    if idx is not None:
        idx = np.asarray(idx)
        beta = beta[idx]
    cells = _fitted_cells(result, factors, fam, beta, idx)
    if cells is not None:
        return cells
    cols = [(src.effects(f, idx), *_factor_columns(result, f, None)[:2]) for f in factors]
    X, off = design.X, design.offset
    out = np.empty(design.n)
    step = max(1, FITTED_CHUNK // max(len(beta), 1))
    for r0 in range(0, design.n, step):
        r1 = min(r0 + step, design.n)
        mu = beta @ X[r0:r1].T
        if off is not None:
            mu += off[r0:r1]
        for b, codes, Z in cols:
            c, z = codes[r0:r1], Z[r0:r1]
            known = c >= 0
            mu[:, known] += np.einsum("snq,nq->sn", b[:, c[known], :], z[known])
        out[r0:r1] = fam.link.inverse(mu).mean(0)
    return out


def _fitted_cells(result: "BayesResult", factors: list[str], fam, beta: np.ndarray,
                  idx: np.ndarray | None = None):
    """:func:`fitted_mean`'s cell form (its docstring), or ``None`` where it does not apply
    (more than :data:`_CELL_PATTERNS` distinct fixed rows among them). ``beta``: the fixed
    effects of the flat draws ``idx`` (None: every draw)."""
    from ..spec.row_keys import firsts, row_key

    design, src = result.design, result._draws
    if fam.link.name != "log" or design.n == 0 or len(factors) > 1 or len(design.groups) > 1:
        return None
    if factors and (design.groups[0].terms != ("Intercept",) or not np.all(design.groups[0].Z == 1.0)):
        return None
    pat = getattr(design, "row_pattern", None)
    if pat is None or len(pat) != design.n:  # the distinct fixed rows (and offsets), hashed
        off = [] if design.offset is None else [design.offset]
        found = row_key([design.X[:, j] for j in range(design.p)] + off, design.n,
                        max_keys=_CELL_PATTERNS)
        if found is None:
            return None
        pat = found[0]
    first = firsts(pat)
    if len(first) > _CELL_PATTERNS:
        return None
    eta = beta @ design.X[first].T
    if design.offset is not None:
        eta += design.offset[first]
    E = np.exp(eta)  # (S, P)
    if not factors:
        return E.mean(0)[pat]
    var = naming.effect_var(factors[0])
    if src.has(var):  # (S, G): a view, or one selection of the draws idx
        b = src.flat(var)[..., 0] if idx is None else src.flat(var)[idx, :, 0]
    else:
        b = src.effects(factors[0], idx)[..., 0]
    G = b.shape[1]
    F = np.empty((G, len(first)))
    # one BLAS thread: many small (block x draws) @ (draws x patterns) products, for which
    # threads only contend (100k groups x 200 draws: 0.22 -> 0.04 s, loaded 2-core machine)
    with blas_threads(1):
        for g0 in range(0, G, _CELL_BLOCK):
            F[g0:g0 + _CELL_BLOCK] = np.exp(b[:, g0:g0 + _CELL_BLOCK].astype(float)).T @ E
    F /= b.shape[0]
    return F[design.groups[0].codes, pat]


def normal_grid(sd_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of ``E f(Z)``, ``Z ~ N(0, 1)``: the trapezoid rule on
    ``[-9 - sd_max, 9 + sd_max]``.

    A uniform grid is spectrally accurate for Gaussian-weighted smooth integrands; its step
    resolves ``g^-1(eta + sd * z)``, which turns over on a scale ``1/sd`` (Gauss-Hermite with
    40 nodes is off by 3e-3 for a probit mean at ``sd = 5``; this grid by < 1e-12).
    """
    h = min(0.09, 0.3 / max(sd_max, 1e-12))
    half = 9.0 + sd_max  # the log link's integrand exp(sd z) phi(z) peaks at z = sd
    z = np.linspace(-half, half, int(np.ceil(2 * half / h)) + 1)
    w = np.exp(-0.5 * z * z)
    return z, w / w.sum()


def _population_averaged(result, newdata, kind, prob, max_draws, seed, return_draws, trials):
    """``predict(population_averaged=True)``: group effects integrated out per draw."""
    if kind not in ("link", "mean", "response"):
        raise BayesHLMError(f"kind must be 'link', 'mean' or 'response', not {kind!r}")
    src = result._draws
    rng = np.random.default_rng(result.info.seed if seed is None else seed)
    X = result.design.X if newdata is None else result.spec.fixed_matrix(newdata)
    index = result.design.row_index if newdata is None else newdata.index
    idx = src.thinned(max_draws)
    offset = result.design.offset if newdata is None else result.spec.offset(newdata)
    eta = np.concatenate(list(src.linpred_chunks(idx, X, [], offset=offset)))
    var = np.zeros_like(eta)  # Var(sum_f z_f'b_f) per draw and row: factors are independent
    zdata = newdata
    if newdata is not None:  # only Z is read: the grouping columns need not be given
        absent = {c for t in result.spec.parsed.random for c in t.factor_columns
                  if c not in newdata.columns}
        zdata = newdata.assign(**{c: result.spec.data[c].iloc[0] for c in absent})
    for f in result.factors:
        _, Z, _ = _factor_columns(result, f, zdata)
        var += np.einsum("nq,sqr,nr->sn", Z, src.covariance(f)[idx], Z)
    fam = family_of(result)
    if kind == "link":
        out = eta
    elif kind == "mean":
        z, w = normal_grid(float(np.sqrt(var.max())) if var.size else 0.0)
        sd = np.sqrt(var)
        out = np.zeros_like(eta)
        for zk, wk in zip(z, w):
            out += wk * fam.link.inverse(eta + sd * zk)
    else:  # a new observation of a new group: its total effect drawn, then the family's noise
        e = eta + np.sqrt(var) * rng.standard_normal(eta.shape)
        out = replicate(e, src, idx, fam, rng, trials_kw(result.design, newdata, result.spec,
                                                         trials))
    lo, hi = tables.hdi(out, prob)
    frame = pd.DataFrame({"mean": out.mean(0), "sd": out.std(0, ddof=1) if len(idx) > 1 else 0.0,
                          "hdi_low": lo, "hdi_high": hi}, index=index)
    tables.label_interval(frame, prob, "hdi")
    return (frame, out) if return_draws else frame
