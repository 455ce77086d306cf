"""The negative binomial family (NB2): ``Var(y) = mu + mu^2 / alpha``."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .base import FamilyParam
from .poisson import Poisson


class NegativeBinomial(Poisson):
    """Overdispersed counts, NB2 with mean ``mu = exp(eta)`` and size ``alpha``.

    * ``alpha`` is Bambi's (and PyMC's) NB2 size parameter, equal to lme4's ``theta``
      (``glmer.nb``) and to the inverse of statsmodels' ``alpha``; ``Var(y) = mu + mu^2/alpha``;
    * ``alpha ~ HalfCauchy(beta=1)`` (Bambi 0.21's default);
    * latent-scale variance as :class:`~.poisson.Poisson` with ``Var(y|mu)/mu^2 =
      1/mu + 1/alpha`` (lognormal: ``log(1 + 1/mu + 1/alpha)``, insight's).
    """

    name = "negativebinomial"
    #: not Poisson's quadrature-collapsed engine (its alpha is not covered yet)
    default_engines = frozenset({"full"})
    params = (FamilyParam("alpha", lambda y_mean, y_sd: ("HalfCauchy", {"beta": 1.0})),)

    def likelihood(self, name: str, eta, params: Mapping[str, object], observed):
        import pymc as pm

        return pm.NegativeBinomial(name, mu=self.link.inverse_tensor(eta), alpha=params["alpha"],
                                   observed=observed)

    def logpdf(self, y, eta, *, alpha, **_) -> np.ndarray:
        from scipy.special import gammaln, xlogy

        mu = self.mean(eta)
        y = np.asarray(y, dtype=float)
        a = np.asarray(alpha, dtype=float)
        return (gammaln(y + a) - gammaln(a) - gammaln(y + 1) + xlogy(a, a / (a + mu))
                + xlogy(y, mu / (a + mu)))

    def random(self, eta, rng, *, alpha, **_) -> np.ndarray:
        mu = self.mean(eta)
        a = np.broadcast_to(np.asarray(alpha, dtype=float), np.shape(mu))
        return rng.poisson(rng.gamma(a, mu / a)).astype(float)

    def variance(self, mu, alpha=None) -> np.ndarray:
        mu = np.asarray(mu, dtype=float)
        return mu if alpha is None else mu + mu ** 2 / np.asarray(alpha, dtype=float)

    def response_variance(self, mu, *, alpha, **_) -> np.ndarray:
        return self.variance(mu, alpha)

    def cv2(self, mu, params) -> np.ndarray:
        return 1.0 / np.asarray(mu, dtype=float) + 1.0 / np.asarray(params["alpha"], dtype=float)
