"""Per-draw quantities of a fit that go through its response family (one place for all).

The result stores draws of the linear predictor's parts and of the family's own parameters
(Gaussian ``sigma``; NB and Gamma ``alpha``; Student-t ``sigma`` and ``nu``); everything
that turns a linear predictor into data-scale numbers asks the family:

* :func:`pointwise_loglik` - ``log p(y_i | eta_i, params)`` per draw (loo);
* :func:`replicate` - draws of new responses (posterior predictive, ``kind="response"``);
* :func:`response_mean` - ``g^-1(eta)`` (times the trials for binomial models);
* :func:`eta_mean` - the per-draw mean of the fixed part of the linear predictor, the
  ``mu`` the latent variance of count families needs (``performance`` uses the null
  model's intercept; per draw this is the closest quantity the fit has).
"""

from __future__ import annotations

import numpy as np

from ..spec import variable_names as naming
from ..families import Family, default_family


def family_of(result) -> Family:
    """The fit's family (results saved before families existed are Gaussian)."""
    return getattr(result.spec, "family", None) or default_family()


def param_draws(src, family: Family, idx: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Flat draws ``(S,)`` of every family parameter (``idx``: a subset of flat draws)."""
    out = {}
    for name in family.param_names:
        v = src.flat(name)
        out[name] = v if idx is None else v[idx]
    return out


def _row_params(params: dict[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
    return {k: v[start:stop, None] for k, v in params.items()}


def trials_kw(design, newdata=None, spec=None, trials=None) -> dict:
    """``{"trials": (n,)}`` for binomial fits, else ``{}``.

    On the fitted rows, the fit's trials; on ``newdata``, ``trials`` when given (a number or
    one per row), else read from the response's ``cbind``/``p`` columns (or the weights column
    of a proportion response) through ``spec`` - an error naming what is missing.
    """
    from ..errors import DataError

    if design.trials is None:
        if trials is not None:
            raise DataError("trials= is for binomial models only")
        return {}
    if newdata is None and trials is None:
        return {"trials": design.trials}
    n_rows = design.n if newdata is None else len(newdata)
    if trials is None:
        n = spec.trials(newdata)
    else:
        n = np.broadcast_to(np.asarray(trials, dtype=float), (n_rows,)) \
            if np.ndim(trials) == 0 else np.asarray(trials, dtype=float)
        if n.shape != (n_rows,):
            raise DataError(f"trials= needs one number per row ({n_rows}), not shape {n.shape}")
    bad = np.flatnonzero(~np.isfinite(n) | (n < 1) | (n != np.round(n)))
    if bad.size:
        raise DataError(f"the number of trials must be a whole number >= 1 on every row "
                        f"(row {bad[0]}: {n[bad[0]]!r})")
    return {"trials": n}


def weights_of(design) -> np.ndarray | None:
    """The fit's frequency weights (None: unweighted; older results have none)."""
    return getattr(design, "weights", None)


def pointwise_loglik(src, design, family: Family) -> np.ndarray:
    """``(S, n)`` pointwise log likelihood over all draws, in flat draw order."""
    from .draws import factor_design

    params = param_draws(src, family)
    extra = trials_kw(design)
    blocks, start = [], 0
    for mu in src.linpred_chunks(np.arange(src.size), design.X, factor_design(design),
                                 offset=design.offset):
        stop = start + mu.shape[0]
        blocks.append(family.logpdf(design.y[None, :], mu, **_row_params(params, start, stop),
                                    **extra))
        start = stop
    ll = np.concatenate(blocks)
    w = weights_of(design)
    # a weighted row is its log likelihood times w (brms log_lik): loo then treats it as one
    # observation; loo of the expanded rows would leave out one copy at a time instead
    return ll if w is None else ll * w


def replicate(eta: np.ndarray, src, idx, family: Family, rng, extra: dict) -> np.ndarray:
    """Draws of responses given ``(s, n)`` linear predictors for flat draws ``idx``."""
    params = param_draws(src, family, idx)
    return family.random(eta, rng, **{k: v[:, None] for k, v in params.items()}, **extra)


def response_mean(eta: np.ndarray, family: Family, extra: dict) -> np.ndarray:
    """Expected response ``g^-1(eta)`` (binomial: successes, ``trials * p``)."""
    mu = family.link.inverse(eta)
    return mu * extra["trials"] if "trials" in extra else mu


def eta_mean(src, design) -> np.ndarray:
    """Per-draw mean over rows of ``X beta`` (the fixed part of the linear predictor)."""
    return src.flat(naming.FIXED) @ design.X.mean(axis=0) if design.p else np.zeros(src.size)
