"""The Gaussian family: ``y ~ Normal(g^-1(eta), sigma)``."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .base import FamilyParam, ScaleFamily


class Gaussian(ScaleFamily):
    """Normal residuals with SD ``sigma``.

    * links: identity (default), log, inverse (Bambi's);
    * ``sigma ~ HalfStudentT(nu=4, sigma=sd(y))`` (Bambi 0.21's ``PriorScaler.scale_response``,
      ``numpy.std`` with ddof = 0) and the linear predictor's priors scaled by ``mean(y)``
      and ``sd(y)``;
    * latent-scale variance ``sigma^2``;
    * every engine with the identity link (the group effects integrate out in closed form).
    """

    name = "gaussian"
    links = ("identity", "log", "inverse")
    params = (FamilyParam("sigma", lambda y_mean, y_sd: ("HalfStudentT",
                                                         {"nu": 4.0, "sigma": y_sd})),)
    default_engines = frozenset({"full", "marginal", "numba", "jax", "reml"})

    def likelihood(self, name: str, eta, params: Mapping[str, object], observed):
        import pymc as pm

        return pm.Normal(name, mu=self.link.inverse_tensor(eta), sigma=params["sigma"],
                         observed=observed)

    def logpdf(self, y, eta, *, sigma, **_) -> np.ndarray:
        from scipy.stats import norm

        return norm.logpdf(y, self.link.inverse(eta), sigma)

    def random(self, eta, rng, *, sigma, **_) -> np.ndarray:
        mu = self.link.inverse(eta)
        return mu + rng.standard_normal(np.shape(mu)) * sigma
