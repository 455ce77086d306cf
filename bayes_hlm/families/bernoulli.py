"""The Bernoulli family: ``y ~ Bernoulli(g^-1(eta))`` for 0/1 outcomes."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..errors import DataError
from .base import Family

#: latent-scale variance of the standard logistic, normal and Gumbel (min) distributions:
#: the residual variance of a binary/binomial GLMM on the link scale (performance::icc)
BINARY_LATENT_VARIANCE = {"logit": np.pi ** 2 / 3, "probit": 1.0, "cloglog": np.pi ** 2 / 6}


class Bernoulli(Family):
    """0/1 outcomes with success probability ``p = g^-1(eta)``.

    * links: logit (default), probit, cloglog;
    * no family parameter; the linear predictor's priors follow Bambi 0.21's special case
      for Bernoulli/binomial models with the logit or probit link
      (:attr:`binary_prior_scaling`);
    * latent-scale variance ``pi^2/3`` (logit), ``1`` (probit), ``pi^2/6`` (cloglog), as
      ``performance::icc`` / ``r2_nakagawa`` for glmer fits.
    """

    name = "bernoulli"
    links = ("logit", "probit", "cloglog")
    params = ()
    #: "marginal": effects integrated out by adaptive quadrature (backends/glmm_collapsed.py)
    default_engines = frozenset({"full", "marginal"})
    link_engines = frozenset({"numba"})  # compiled GLMM density (backends/glmm_density.py)

    @property
    def binary_prior_scaling(self) -> bool:
        return self.link.name in ("logit", "probit")

    def p(self, eta) -> np.ndarray:
        return self.link.inverse(np.asarray(eta, dtype=float))

    def _log_p_q(self, eta):
        """``(log p, log(1-p))`` computed without cancellation."""
        eta = np.asarray(eta, dtype=float)
        if self.link.name == "logit":
            return -np.logaddexp(0.0, -eta), -np.logaddexp(0.0, eta)
        if self.link.name == "probit":
            from scipy.special import log_ndtr

            return log_ndtr(eta), log_ndtr(-eta)
        # cloglog: p = 1 - exp(-exp(eta)), 1 - p = exp(-exp(eta))
        e = np.exp(eta)
        return np.log(-np.expm1(-e)), -e

    def check_response(self, y: np.ndarray, column: str) -> None:
        super().check_response(y, column)
        y = np.asarray(y, dtype=float)
        bad = np.flatnonzero((y != 0) & (y != 1))
        if bad.size:
            raise DataError(f"response {column!r} has the value {y[bad[0]]:g} (row {bad[0]}); "
                            f"the {self.name} family needs 0/1, booleans or a two-level factor "
                            "(for counts out of a number of trials use family='binomial' with "
                            "cbind(successes, failures) or p(successes, trials))")

    def likelihood(self, name: str, eta, params: Mapping[str, object], observed):
        import pymc as pm

        if self.link.name == "logit":
            return pm.Bernoulli(name, logit_p=eta, observed=observed)
        return pm.Bernoulli(name, p=self.link.inverse_tensor(eta), observed=observed)

    def logpdf(self, y, eta, **_) -> np.ndarray:
        lp, lq = self._log_p_q(eta)
        y = np.asarray(y, dtype=float)
        return np.where(y == 1, lp, lq)

    def random(self, eta, rng, **_) -> np.ndarray:
        p = self.p(eta)
        return (rng.random(np.shape(p)) < p).astype(float)

    def variance(self, mu) -> np.ndarray:
        mu = np.asarray(mu, dtype=float)
        return mu * (1.0 - mu)

    def latent_variance(self, params, eta_mean=None) -> np.ndarray:
        ref = eta_mean if eta_mean is not None else next(iter(params.values()), 0.0)
        return np.full(np.shape(ref), BINARY_LATENT_VARIANCE[self.link.name])
