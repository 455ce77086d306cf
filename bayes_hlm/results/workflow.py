"""Model workflow: refit with changes, compare by LOO / k-fold CV, posterior predictive draws.

* :func:`update` - R's ``update()`` / brms ``update()``: refit with a new formula
  (``". ~ . + x"``, ``". ~ . - x"``), new data or other fit settings.
* :func:`compare` - ``loo_compare`` / ``arviz.compare`` by PSIS-LOO (or k-fold ELPD),
  with Pareto-k diagnostics per model.
* :func:`kfold` - brms ``kfold()``: exact k-fold cross-validation by refitting;
  grouped folds (``group="Subject"``) and leave-one-group-out (``k`` = levels).
* :func:`posterior_predict` (``BayesResult.simulate``) - lme4 ``simulate()`` / brms
  ``posterior_predict()``: new response vectors from the posterior predictive for the
  data rows.
"""

from __future__ import annotations

import re
import warnings
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from ..spec import variable_names as naming
from ..errors import BayesHLMError, BayesHLMWarning, FormulaError
from .draws import factor_design

if TYPE_CHECKING:
    from .bayes_result import BayesResult

__all__ = ["update", "update_formula", "compare", "kfold", "posterior_predict", "user_priors"]

PARETO_K_BAD = 0.7


# --------------------------------------------------------------------- update
def _split_terms(rhs: str) -> list[tuple[str, str]]:
    """Top-level ``+``/``-`` separated terms of a formula side, as (sign, term)."""
    out, depth, cur, sign = [], 0, "", "+"
    for ch in rhs:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if depth == 0 and ch in "+-":
            if cur.strip():
                out.append((sign, cur.strip()))
            elif ch == "-" and sign == "-":  # "- -x"
                sign = "+"
                continue
            sign, cur = ch, ""
            continue
        cur += ch
    if cur.strip():
        out.append((sign, cur.strip()))
    return out


def _norm(term: str) -> str:
    return re.sub(r"\s+", "", term)


_DOT = re.compile(r"(?<![\w.])\.(?![\w.])")


def update_formula(old: str, new: str) -> str:
    """R's ``update.formula``: ``.`` stands for the old response / right-hand side.

    ``". ~ . + x"`` adds a term, ``". ~ . - x"`` or ``". ~ . - (1 | g)"`` removes one
    (matched as written, ignoring spaces), ``"log(.) ~ ."`` transforms the response,
    ``"~ . + x"`` keeps the response.
    """
    if "~" not in old:
        raise FormulaError(f"old formula {old!r} has no '~'")
    old_lhs, old_rhs = (s.strip() for s in old.split("~", 1))
    if "~" in new:
        new_lhs, new_rhs = (s.strip() for s in new.split("~", 1))
    else:
        new_lhs, new_rhs = ".", new.strip()
    lhs = _DOT.sub(old_lhs, new_lhs or ".") if new_lhs else old_lhs
    terms: list[str] = []
    for sign, t in _split_terms(new_rhs):
        expanded = [(s2, t2) for s2, t2 in _split_terms(old_rhs)] if t == "." else [(sign, t)]
        if t == "." and sign == "-":
            raise FormulaError("'- .' is not supported in update formulas")
        for s2, t2 in expanded:
            if s2 == "+":
                if _norm(t2) not in map(_norm, terms):
                    terms.append(t2)
            else:
                hit = [x for x in terms if _norm(x) == _norm(t2)]
                if hit:
                    terms.remove(hit[0])
                elif t2 == "1":
                    terms.append("-1")
                elif t2 == "0":
                    terms.append("1")
                else:
                    raise FormulaError(f"cannot remove term {t2!r}: it is not in {old_rhs!r} "
                                       "(terms are matched as written)")
    if not terms:
        terms = ["1"]
    rhs = ""
    for t in terms:
        if t == "-1":
            rhs += " - 1"
        else:
            rhs += (" + " if rhs else "") + t
    return f"{lhs} ~ {rhs.strip()}"


def user_priors(result: "BayesResult") -> dict:
    """The priors of ``result`` that differ from the defaults (the user's overrides)."""
    from ..spec.priors import default_priors

    defaults = default_priors(result.design).priors
    return {k: p for k, p in result.priors.priors.items() if defaults.get(k) != p}


def update(result: "BayesResult", formula: str | None = None, data: pd.DataFrame | None = None,
           **fit_kwargs) -> "BayesResult":
    """Refit ``result`` with changes (R ``update()``, brms ``update.brmsfit``).

    Parameters
    ----------
    formula : str, optional
        New formula; ``.`` means the old response / right-hand side, as in R:
        ``". ~ . + sx"``, ``". ~ . - (Days | Subject) + (1 | Subject)"``.
    data : DataFrame, optional
        New data; default the rows used by the original fit (their used columns, so
        a formula with new variables needs ``data``).
    **fit_kwargs
        Any :func:`bayes_hlm.fit` argument; they win. Every other setting is the original
        fit's *as the user gave it* (``result.info.requested``: method, sampler - ``None`` or
        ``"auto"`` stays so, and the engine is chosen afresh for the new model -, chains,
        draws, tune, target_accept, mass_matrix, rescale, centered, na_action, control,
        engine), except the seed, which is the one the fit used (so an unchanged update
        reproduces it). The user's priors (those differing from the defaults) are kept for
        parameters that still exist; ``centered`` entries for factors the new model lacks
        are dropped. Files saved before settings were recorded replay the resolved
        chains/draws/tune/target_accept/seed and method, and the default sampler.
    """
    from ..fitting import fit

    new_formula = result.formula if formula is None else update_formula(result.formula, formula)
    kw = replay_settings(result.info)
    pri = kw.pop("priors", None)
    if "priors" not in fit_kwargs:
        if result.info.requested is None:  # an older file: the priors differing from the defaults
            pri = user_priors(result)
        if pri:
            from ..spec.build import build_design

            try:
                keep = set(_defaults_keys(build_design(new_formula, result.spec.data
                                                       if data is None else data)))
            except Exception:
                keep = set(pri)
            dropped = [k for k in pri if k not in keep]
            if dropped:
                warnings.warn(f"priors for {dropped} dropped: not parameters of the new model",
                              BayesHLMWarning, stacklevel=2)
            kw["priors"] = {k: v for k, v in pri.items() if k in keep}
    kw.update(fit_kwargs)
    frame = result.spec.data if data is None else data
    if isinstance(kw.get("centered"), dict) and "centered" not in fit_kwargs:
        from ..spec.formula import parse_formula

        factors = {t.factor for t in parse_formula(new_formula).random}
        kw["centered"] = {f: c for f, c in kw["centered"].items() if f in factors}
    try:
        return fit(new_formula, frame, **kw)
    except FormulaError as exc:
        if data is None and "not in the data" in str(exc):
            raise FormulaError(f"{exc}. The stored data holds only the columns of the original "
                               "model; pass data=... to update()") from None
        raise


def replay_settings(info) -> dict:
    """:func:`bayes_hlm.fit` keyword arguments that replay a fit's settings as given."""
    settings = info.requested
    if settings is None:  # saved before settings were recorded: the resolved ones
        return dict(method=info.method, chains=info.chains, draws=info.draws, tune=info.tune,
                    target_accept=info.target_accept, seed=info.seed)
    kw = settings.fit_kwargs()
    kw["seed"] = info.seed  # the seed used (drawn when none was given)
    if kw.get("engine") == "memory":
        kw.pop("engine")
    return kw


def _defaults_keys(design) -> list[str]:
    from ..spec.priors import default_priors

    return list(default_priors(design).priors)


# -------------------------------------------------------------------- compare
def _elpd(obj):
    from arviz_stats.utils import ELPDData

    from .bayes_result import BayesResult

    if isinstance(obj, BayesResult):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return obj.loo()
    if isinstance(obj, ELPDData):
        return obj
    raise BayesHLMError(f"compare() takes BayesResult or ELPD (loo/kfold) objects, not "
                        f"{type(obj).__name__}")


COMPARE_DECIMALS = {"elpd": 1, "elpd_diff": 1, "se": 1, "dse": 1, "p": 1, "weight": 3, "p_worse": 2, "p_better": 2}


def compare(models: dict, method: str = "stacking", warn: bool = True) -> pd.DataFrame:
    """Compare models by expected log predictive density (brms/loo ``loo_compare``,
    ``arviz.compare``).

    ``models``: ``{name: BayesResult or ELPD object}`` - results are scored by
    PSIS-LOO (computed on demand); ELPD objects from :func:`kfold` (or
    ``result.loo()``) are used as given, so LOGO/k-fold results can be compared
    the same way. All models must be scored on the same rows.

    Returns ArviZ's comparison table (rank, elpd, p, elpd_diff, weight, se, dse,
    warning) plus ``n_pareto_k_bad`` (observations with Pareto k > 0.7) and
    ``max_pareto_k`` per model; a warning suggests :func:`kfold` when any k is high.
    """
    import arviz as az

    if len(models) < 2:
        raise BayesHLMError("compare() needs at least two models")
    elpds = {name: _elpd(m) for name, m in models.items()}
    sizes = {e.n_data_points for e in elpds.values()}
    if len(sizes) > 1:
        raise BayesHLMError(f"models are scored on different numbers of rows {sizes}; compare "
                            "models fitted to the same data")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # ArviZ's "auto" rounding keeps ~2 significant digits of se in elpd (-23225.2 printed
        # as -23200.0); fixed decimals as loo_compare prints them keep the digits readable
        tab = az.compare(elpds, method=method, round_to="none")
    tab = pd.DataFrame(tab)
    for col, nd in COMPARE_DECIMALS.items():
        if col in tab:
            tab[col] = pd.to_numeric(tab[col], errors="coerce").round(nd)
    kind, nbad, kmax = {}, {}, {}
    for name, e in elpds.items():
        kind[name] = getattr(e, "kind", None) or "loo"
        k = getattr(e, "pareto_k", None)
        if k is None:
            nbad[name], kmax[name] = 0, np.nan
        else:
            k = np.asarray(k)
            nbad[name], kmax[name] = int((k > PARETO_K_BAD).sum()), float(k.max())
    tab["criterion"] = pd.Series(kind)
    tab["n_pareto_k_bad"] = pd.Series(nbad)
    tab["max_pareto_k"] = pd.Series(kmax)
    bad = [n for n, v in nbad.items() if v]
    if bad and warn:
        warnings.warn(f"models {bad} have observations with Pareto k > {PARETO_K_BAD}: their "
                      "PSIS-LOO estimate is unreliable; use kfold(result, group=...) (k-fold or "
                      "leave-one-group-out CV) and compare those", BayesHLMWarning, stacklevel=2)
    return tab


# ---------------------------------------------------------------------- kfold
def _logmeanexp(a: np.ndarray, axis: int = 0) -> np.ndarray:
    m = a.max(axis=axis, keepdims=True)
    return (m + np.log(np.mean(np.exp(a - m), axis=axis, keepdims=True))).squeeze(axis)


def heldout_loglik(fitted: "BayesResult", newdata: pd.DataFrame, y: np.ndarray,
                   max_draws: int | None = None, *, trials: np.ndarray | None = None,
                   weights: np.ndarray | None = None, new_group_draws: int = 20,
                   seed: int = 0, exact: bool = True) -> np.ndarray:
    """(draws, rows) log predictive density of held-out rows.

    Group effects of levels seen in fitting are used draw by draw; for levels not seen
    (leave-group-out) the new group's effect is integrated out: exactly for Gaussian
    identity-link models, ``y ~ N(x beta + z_seen b, sigma^2 + z Sigma z')`` per draw, and
    by Monte Carlo for other families (``new_group_draws`` effects ``b ~ N(0, Sigma)`` per
    posterior draw and new level, averaged on the density scale; brms
    ``sample_new_levels = "gaussian"`` with several draws). ``trials``: binomial trials of
    the rows; ``weights``: frequency weights (the row's log density times ``w``, as in loo).
    ``exact=False`` uses the Monte Carlo integral for Gaussian models too (a check of it).
    """
    from scipy.stats import norm

    from .family_draws import family_of
    from .predict import _factor_columns

    fam = family_of(fitted)
    src = fitted._draws
    idx = src.thinned(max_draws)
    X = fitted.spec.fixed_matrix(newdata)
    mu = src.flat(naming.FIXED)[idx] @ X.T
    off = fitted.spec.offset(newdata)
    if off is not None:
        mu = mu + off
    gaussian = exact and fam.name == "gaussian" and fam.link.name == "identity"
    var = np.broadcast_to(src.flat(naming.SIGMA)[idx, None] ** 2, mu.shape).copy() \
        if gaussian else None
    unseen_parts = []
    for f in fitted.factors:
        codes, Z, labels = _factor_columns(fitted, f, newdata)
        seen = codes >= 0
        if seen.any():
            b = src.effects(f, idx)
            mu[:, seen] += np.einsum("snq,nq->sn", b[:, codes[seen], :], Z[seen])
        if (~seen).any():
            cov = src.covariance(f)[idx]
            if gaussian:
                var[:, ~seen] += np.einsum("nq,sqr,nr->sn", Z[~seen], cov, Z[~seen])
            else:
                unseen_parts.append((~seen, labels, Z, cov))
    if gaussian:
        ll = norm.logpdf(y[None, :], mu, np.sqrt(var))
    else:
        ll = _mc_heldout(fam, src, idx, mu, y, unseen_parts, trials, new_group_draws, seed)
    return ll if weights is None else ll * np.asarray(weights, dtype=float)[None, :]


def _mc_heldout(fam, src, idx, mu, y, unseen_parts, trials, m: int, seed: int) -> np.ndarray:
    """``log mean_m p(y | eta + z b_m)`` with ``b_m ~ N(0, Sigma_s)`` per new level (one
    effect per level, shared by its rows), for each posterior draw ``s``."""
    from .family_draws import param_draws
    from .predict import _psd_sqrt

    params = {k: v[:, None, None] for k, v in param_draws(src, fam, idx).items()}
    extra = {} if trials is None else {"trials": np.asarray(trials, dtype=float)}
    if not unseen_parts:
        return fam.logpdf(y[None, :], mu, **{k: v[:, 0] for k, v in params.items()}, **extra)
    rng = np.random.default_rng(seed)
    eta = np.repeat(mu[:, None, :], m, axis=1)  # (S, m, n)
    for rows, labels, Z, cov in unseen_parts:
        new_codes, _ = pd.factorize(np.asarray(labels, dtype=object)[rows], use_na_sentinel=False)
        root = _psd_sqrt(cov)  # (S, q, q)
        z = rng.standard_normal((len(idx), m, new_codes.max() + 1, Z.shape[1]))
        b = np.einsum("sij,smlj->smli", root, z)
        eta[:, :, rows] += np.einsum("smnq,nq->smn", b[:, :, new_codes, :], Z[rows])
    ll = fam.logpdf(y[None, None, :], eta, **params, **extra)
    return _logmeanexp(ll, 1)


def make_folds(result: "BayesResult", k: int | None = 10, group: str | None = None,
               seed: int | None = None) -> np.ndarray:
    """Fold number (0..k-1) of each fitted row: random rows, or whole levels of ``group``
    (leave-one-group-out when ``k`` is None or at least the number of levels)."""
    rng = np.random.default_rng(seed)
    n = result.nobs()
    if group is None:
        if k is None or k < 2 or k > n:
            raise BayesHLMError(f"k must be between 2 and {n}")
        return rng.permutation(np.arange(n) % k)
    data = result.spec.data
    if group not in data.columns:
        raise BayesHLMError(f"group {group!r} is not a column of the model's data "
                            f"({list(data.columns)})")
    codes, levels = pd.factorize(data[group].astype(str), sort=True)
    L = len(levels)
    if k is None or k >= L:
        return codes
    if k < 2:
        raise BayesHLMError("k must be at least 2")
    level_fold = rng.permutation(np.arange(L) % k)
    return level_fold[codes]


def kfold(result: "BayesResult", k: int | None = 10, group: str | None = None,
          folds: Sequence[int] | None = None, seed: int | None = None, save_fits: bool = False,
          **fit_kwargs):
    """Exact k-fold cross-validation by refitting (brms ``kfold``, ``loo::kfold``).

    Parameters
    ----------
    k : int, optional
        Number of folds. With ``group`` and ``k=None`` (or ``k`` >= number of
        levels) each level is its own fold: leave-one-group-out (LOGO) CV.
    group : str, optional
        A data column (usually a grouping factor) whose levels are kept whole
        within folds (brms ``folds = "grouped"``, ``group = ...``).
    folds : sequence of int, optional
        Explicit fold ids per fitted row (overrides ``k`` and ``group``).
    seed : int, optional
        Seed of the random fold assignment; the refits use the original fit's
        seed unless ``fit_seed=`` is given.
    save_fits : bool
        Keep the refitted results (``.fold_fits``).
    **fit_kwargs
        Passed to :func:`update` for every refit (e.g. ``draws=500``).

    Returns
    -------
    arviz_stats ``ELPDDataLOOKFold`` (elpd, se, p, pointwise ``elpd_i``, ``n_folds``),
    accepted by :func:`compare`. Held-out observations of levels unseen in training
    are scored with the new group effect integrated out.
    """
    from arviz_stats.utils import ELPDDataLOOKFold

    if "fit_seed" in fit_kwargs:
        fit_kwargs["seed"] = fit_kwargs.pop("fit_seed")
    fit_kwargs.setdefault("warn", False)
    data = result.spec.data
    fold = np.asarray(folds) if folds is not None else make_folds(result, k, group, seed)
    if fold.shape != (result.nobs(),):
        raise BayesHLMError(f"folds need one id per fitted row ({result.nobs()})")
    ids = np.unique(fold)
    y = np.asarray(result.design.y)
    trials, weights = result.design.trials, getattr(result.design, "weights", None)
    elpd_i = np.full(len(y), np.nan)
    fits = {}
    for f in ids:
        test = fold == f
        train = data.loc[~test]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sub = update(result, data=train, priors=user_priors(result) or None, **fit_kwargs)
        ll = heldout_loglik(sub, data.loc[test], y[test], trials=None if trials is None else
                            trials[test], weights=None if weights is None else weights[test],
                            seed=int(f))
        elpd_i[test] = _logmeanexp(ll, 0)
        if save_fits:
            fits[int(f)] = sub
    # in-sample lpd of the full fit gives the effective number of parameters
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ll_full = result.log_likelihood()["log_likelihood"]["y"].values
    lpd_i = _logmeanexp(ll_full.reshape(-1, ll_full.shape[-1]), 0)
    n = len(y)
    dims = "obs"
    return ELPDDataLOOKFold(
        elpd=float(elpd_i.sum()), se=float(np.sqrt(n * np.var(elpd_i))),
        p=float(lpd_i.sum() - elpd_i.sum()), n_samples=result._draws.size, n_data_points=n,
        scale="log", warning=False, good_k=None,
        elpd_i=xr.DataArray(elpd_i, dims=[dims]), n_folds=len(ids),
        p_kfold_i=xr.DataArray(lpd_i - elpd_i, dims=[dims]), fold_fits=fits or None,
    )


# ------------------------------------------------------------ posterior_predict
def posterior_predict(result: "BayesResult", n: int = 100, seed: int | None = None,
             as_frame: bool = True):
    """``n`` replicated response vectors for the data rows from the posterior predictive
    (lme4 ``simulate()``, brms ``posterior_predict(ndraws = n)``).

    Each replicate uses one posterior draw (chosen at random, without replacement
    when ``n`` <= number of draws): its fixed and group effects and residual noise.
    Returns a DataFrame n x rows (columns: the data's row index) or an array.
    """
    src = result._draws
    rng = np.random.default_rng(result.info.seed if seed is None else seed)
    idx = np.sort(rng.choice(src.size, size=n, replace=n > src.size))
    order = rng.permutation(n)
    mu = np.concatenate(list(src.linpred_chunks(idx, result.design.X, factor_design(result.design),
                                               offset=result.design.offset)))
    from .family_draws import family_of, replicate, trials_kw

    # the family's noise (Gaussian: mu + N(0, sigma^2); binomial: successes of the trials)
    y = replicate(mu, src, idx, family_of(result), rng, trials_kw(result.design))
    y, idx = y[order], idx[order]
    if not as_frame:
        return y
    return pd.DataFrame(y, columns=result.design.row_index,
                        index=pd.Index(idx, name="draw"))
