"""The Gamma family: positive continuous outcomes with constant coefficient of variation."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..errors import BayesHLMError, DataError
from .base import Family, FamilyParam


class Gamma(Family):
    """``y ~ Gamma(shape=alpha, mean=mu)``, ``mu = g^-1(eta)``, ``Var(y) = mu^2 / alpha``.

    * links: inverse (default, Bambi's and R's canonical link), log, identity;
    * ``alpha ~ HalfCauchy(beta=1)`` (Bambi 0.21); lme4's ``sigma`` is ``1/sqrt(alpha)``;
    * latent-scale variance from the shape: ``1/alpha`` by default (what
      ``performance::icc`` / ``r2_nakagawa`` 0.10.2 compute for glmer Gamma fits),
      ``log(1 + 1/alpha)`` (lognormal) or ``trigamma(alpha)`` on request.
    """

    name = "gamma"
    positive_mean = True
    links = ("inverse", "log", "identity")
    params = (FamilyParam("alpha", lambda y_mean, y_sd: ("HalfCauchy", {"beta": 1.0})),)

    def check_response(self, y: np.ndarray, column: str) -> None:
        super().check_response(y, column)
        y = np.asarray(y, dtype=float)
        bad = np.flatnonzero(y <= 0)
        if bad.size:
            raise DataError(f"response {column!r} has the value {y[bad[0]]:g} (row {bad[0]}); "
                            "the gamma family models positive values (> 0)")

    def likelihood(self, name: str, eta, params: Mapping[str, object], observed):
        import pymc as pm

        mu = self.link.inverse_tensor(eta)
        return pm.Gamma(name, mu=mu, sigma=mu / params["alpha"] ** 0.5, observed=observed)

    def logpdf(self, y, eta, *, alpha, **_) -> np.ndarray:
        from scipy.stats import gamma

        mu = self.link.inverse(eta)
        return gamma.logpdf(y, alpha, scale=mu / alpha)

    def random(self, eta, rng, *, alpha, **_) -> np.ndarray:
        mu = self.link.inverse(eta)
        a = np.broadcast_to(np.asarray(alpha, dtype=float), np.shape(mu))
        return rng.gamma(a, mu / a)

    def variance(self, mu) -> np.ndarray:
        return np.asarray(mu, dtype=float) ** 2

    def response_variance(self, mu, *, alpha, **_) -> np.ndarray:
        return np.asarray(mu, dtype=float) ** 2 / np.asarray(alpha, dtype=float)

    def latent_variance(self, params, eta_mean=None, approximation: str = "performance"):
        a = np.asarray(params["alpha"], dtype=float)
        if approximation == "performance":
            return 1.0 / a
        if approximation == "lognormal":
            return np.log1p(1.0 / a)
        if approximation == "trigamma":
            from scipy.special import polygamma

            return polygamma(1, a)
        raise BayesHLMError(f"unknown approximation {approximation!r} for the gamma family; use "
                            "'performance', 'lognormal' or 'trigamma'")
