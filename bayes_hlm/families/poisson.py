"""The Poisson family: ``y ~ Poisson(exp(eta))`` for counts."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..errors import BayesHLMError, DataError
from .base import Family

#: approximations of the latent-scale (log-link) distribution variance of count models
#: (Nakagawa, Johnson & Schielzeth 2017); "lognormal" is performance's default
APPROXIMATIONS = ("lognormal", "delta", "trigamma")


def count_latent_variance(cv2: np.ndarray, approximation: str) -> np.ndarray:
    """Latent variance from the squared coefficient of variation ``cv2 = Var(y|mu)/mu^2``.

    ``lognormal``: ``log(1 + cv2)``; ``delta``: ``cv2``; ``trigamma``: ``trigamma(1/cv2)``.
    """
    if approximation == "lognormal":
        return np.log1p(cv2)
    if approximation == "delta":
        return cv2
    if approximation == "trigamma":
        from scipy.special import polygamma

        return polygamma(1, 1.0 / cv2)
    raise BayesHLMError(f"unknown approximation {approximation!r}; use one of "
                        f"{', '.join(APPROXIMATIONS)}")


class Poisson(Family):
    """Counts with mean ``mu = exp(eta)``.

    * link: log;
    * no family parameter; the linear predictor's priors are Bambi's with response mean 0
      and SD 1;
    * latent-scale variance (``performance::icc`` / ``r2_nakagawa`` for glmer): the
      lognormal approximation ``log(1 + 1/mu)`` by default, ``1/mu`` (delta) or
      ``trigamma(mu)`` on request, with ``mu = exp(eta_mean)``, ``eta_mean`` the intercept
      of the null model (performance uses the null model refitted with the same random
      effects; per posterior draw we pass the draw's value).
    """

    name = "poisson"
    positive_mean = True
    links = ("log",)
    params = ()
    #: "marginal": effects integrated out by adaptive quadrature (backends/glmm_collapsed.py)
    default_engines = frozenset({"full", "marginal"})
    link_engines = frozenset({"numba"})  # compiled GLMM density (backends/glmm_density.py)

    def mean(self, eta) -> np.ndarray:
        return self.link.inverse(np.asarray(eta, dtype=float))

    def check_response(self, y: np.ndarray, column: str) -> None:
        super().check_response(y, column)
        y = np.asarray(y, dtype=float)
        bad = np.flatnonzero((y < 0) | (y != np.round(y)))
        if bad.size:
            raise DataError(f"response {column!r} has the value {y[bad[0]]:g} (row {bad[0]}); "
                            f"the {self.name} family models counts (whole numbers >= 0)")

    def likelihood(self, name: str, eta, params: Mapping[str, object], observed):
        import pymc as pm

        return pm.Poisson(name, mu=self.link.inverse_tensor(eta), observed=observed)

    def logpdf(self, y, eta, **_) -> np.ndarray:
        from scipy.special import gammaln, xlogy

        mu = self.mean(eta)
        y = np.asarray(y, dtype=float)
        return xlogy(y, mu) - mu - gammaln(y + 1)

    def random(self, eta, rng, **_) -> np.ndarray:
        return rng.poisson(self.mean(eta)).astype(float)

    def variance(self, mu) -> np.ndarray:
        return np.asarray(mu, dtype=float)

    def cv2(self, mu, params) -> np.ndarray:
        """``Var(y | mu) / mu^2``."""
        return 1.0 / np.asarray(mu, dtype=float)

    def latent_variance(self, params, eta_mean=None, approximation: str = "lognormal"):
        if eta_mean is None:
            raise BayesHLMError(f"the latent variance of the {self.name} family needs the mean "
                                "of the linear predictor (eta_mean)")
        mu = np.exp(np.asarray(eta_mean, dtype=float))  # Poisson trigamma: trigamma(mu)
        return count_latent_variance(self.cv2(mu, params), approximation)
