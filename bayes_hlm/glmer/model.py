"""glmer's model frame (lme4's ``glFormula`` + ``mkRespMod``): the spec's design, the response
as R's ``glm`` holds it (binomial: proportion ``y``, prior weights = trials × user weights), the
offset, the starting β and the random-effect system."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import FormulaError
from .glmfamily import GlmFamily
from ..statistics.theta_map import ThetaMap, make_theta_map
from .resystem import make_system

__all__ = ["GlmerModel", "build_model", "spec_family_name"]


@dataclass
class GlmerModel:
    design: object
    spec: object
    family: GlmFamily
    y: np.ndarray          # response (binomial: proportion)
    n: np.ndarray          # binomial: R's n for family()$aic
    pw: np.ndarray         # prior weights
    offset: np.ndarray
    X: np.ndarray
    layout: ThetaMap
    system: object
    beta0: np.ndarray
    user_weights: np.ndarray | None

    @property
    def N(self) -> int:
        return len(self.y)


def spec_family_name(family: GlmFamily, data: pd.DataFrame | None, response: str,
                     weights) -> str:
    """Which bayes_hlm family builds the spec: binomial takes ``cbind``/``p`` and proportions
    with ``weights=`` the trials (binomial), or a 0/1 / two-level response (bernoulli)."""
    if family.name == "binomial":
        from ..spec.response import parse_response

        if parse_response(response).kind != "plain" or weights is not None:
            return "binomial"
        return "bernoulli"
    return {"poisson": "poisson", "Gamma": "gamma",
            "negative_binomial": "negativebinomial"}[family.name]


def _mustart(family: GlmFamily, y, pw):
    if family.name == "binomial":
        return (pw * y + 0.5) / (pw + 1)
    if family.name == "poisson":
        return y + 0.1
    if family.name == "Gamma":
        return y
    return y + (y == 0) / 6.0


def _linkfun(link, mu):
    return {"logit": lambda m: np.log(m / (1 - m)), "probit": lambda m: __import__(
        "scipy.special", fromlist=["ndtri"]).ndtri(m),
            "cloglog": lambda m: np.log(-np.log1p(-m)), "log": np.log,
            "identity": lambda m: m, "inverse": lambda m: 1 / m}[link](mu)


def build_model(spec, family: GlmFamily) -> GlmerModel:
    """The response as R's ``glm`` holds it: binomial ``y`` = proportion, prior weights = trials
    (``cbind``/``p``, or the ``weights=`` column of a proportion response); other families'
    ``weights=`` are frequency weights (the design's ``weights``)."""
    d = spec.design
    if not d.groups:
        raise FormulaError("the model has no random-effect terms such as (1 | group); glmer "
                           "needs at least one (for a plain GLM use statsmodels or R's glm)")
    y = np.asarray(d.y, dtype=float)
    N = len(y)
    w = None if getattr(d, "weights", None) is None else np.asarray(d.weights, dtype=float)
    if family.name == "binomial" and d.trials is not None:   # successes of trials
        t = np.asarray(d.trials, dtype=float)
        yy = np.where(t > 0, y / np.where(t > 0, t, 1), 0.0)
        pw = t * (1.0 if w is None else w)
        n = t
    else:
        yy = y
        pw = np.ones(N) if w is None else w
        n = pw.copy() if family.name == "binomial" else np.ones(N)
    offset = np.zeros(N) if d.offset is None else np.asarray(d.offset, dtype=float)
    X = np.asarray(d.X, dtype=float)
    mu0 = np.clip(_mustart(family, yy, pw), 1e-8, None)
    if family.name == "binomial":
        mu0 = np.clip(mu0, 1e-8, 1 - 1e-8)
    z0 = _linkfun(family.link, mu0) - offset
    beta0 = np.linalg.lstsq(X, z0, rcond=None)[0] if X.shape[1] else np.zeros(0)
    layout = make_theta_map(d)
    return GlmerModel(d, spec, family, yy, n, pw, offset, X, layout, make_system(layout),
                      beta0, w)
