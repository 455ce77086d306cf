"""The Student-t family: robust regression, ``y ~ StudentT(nu, g^-1(eta), sigma)``."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .base import FamilyParam, ScaleFamily


class StudentT(ScaleFamily):
    """Student-t residuals with scale ``sigma`` and degrees of freedom ``nu``.

    * links: identity (default), log, inverse;
    * ``sigma ~ HalfStudentT(nu=4, sigma=sd(y))`` and ``nu ~ Gamma(alpha=2, beta=0.1)``
      (Bambi 0.21); the linear predictor's priors are scaled by ``mean(y)``, ``sd(y)`` as
      for Gaussian models;
    * latent-scale variance ``sigma^2`` (the scale, as for Gaussian models; the t's own
      variance ``sigma^2 nu/(nu-2)`` is infinite for ``nu <= 2``).
    """

    name = "t"
    links = ("identity", "log", "inverse")
    params = (FamilyParam("sigma", lambda y_mean, y_sd: ("HalfStudentT", {"nu": 4.0, "sigma": y_sd})),
              FamilyParam("nu", lambda y_mean, y_sd: ("Gamma", {"alpha": 2.0, "beta": 0.1}),
                          dispersion=False))

    def likelihood(self, name: str, eta, params: Mapping[str, object], observed):
        import pymc as pm

        return pm.StudentT(name, nu=params["nu"], mu=self.link.inverse_tensor(eta),
                           sigma=params["sigma"], observed=observed)

    def logpdf(self, y, eta, *, sigma, nu, **_) -> np.ndarray:
        from scipy.stats import t

        return t.logpdf(y, nu, self.link.inverse(eta), sigma)

    def random(self, eta, rng, *, sigma, nu, **_) -> np.ndarray:
        mu = self.link.inverse(eta)
        return mu + rng.standard_t(np.broadcast_to(nu, np.shape(mu))) * sigma
