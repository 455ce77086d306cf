"""The GLM family pieces glmer's penalised IRLS needs (lme4's ``glmFamily``): inverse link and
its derivative, variance function, deviance residuals and R's ``family()$aic`` (-2 log-likelihood).

The response families of :mod:`bayes_hlm.families` say *which* family and link a model has; this
module is the numeric kernel of the frequentist fit, row-vectorised in NumPy. For binomial
models ``y`` is the proportion of successes and the prior weights are the trials (times any user
weights), as R's ``glm`` and lme4 hold them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special as sf

from ..errors import BayesHLMError

__all__ = ["GlmFamily", "make_glm_family", "GLMER_FAMILIES"]

_EPS = np.finfo(float).eps
_THRESH = 30.0                 # R's binomial logit clamps eta at +-30 (mu in [eps, 1-eps])
_MTHRESH = -30.0


# ----------------------------------------------------------------------------- links
def _logit(eta):
    e = np.clip(eta, -_THRESH, _THRESH)
    mu = sf.expit(e)
    d = mu * (1 - mu)
    return mu, np.maximum(d, _EPS)


def _probit(eta):
    thr = -sf.ndtri(_EPS)
    e = np.clip(eta, -thr, thr)
    return sf.ndtr(e), np.maximum(np.exp(-0.5 * e * e) / np.sqrt(2 * np.pi), _EPS)


def _cloglog(eta):
    e = np.minimum(eta, 700.0)
    ex = np.exp(e)
    mu = np.clip(-np.expm1(-ex), _EPS, 1 - _EPS)
    return mu, np.maximum(ex * np.exp(-ex), _EPS)


def _log(eta):
    mu = np.maximum(np.exp(np.minimum(eta, 700.0)), _EPS)
    return mu, mu


def _identity(eta):
    return eta.copy(), np.ones_like(eta)


def _inverse(eta):
    return 1.0 / eta, -1.0 / (eta * eta)


_LINKS = {"logit": _logit, "probit": _probit, "cloglog": _cloglog, "log": _log,
          "identity": _identity, "inverse": _inverse}


def _ylogy(y, mu):
    """``y log(y / mu)`` with 0 log 0 = 0."""
    return np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / mu), 0.0)


# ----------------------------------------------------------------------------- families
@dataclass(frozen=True)
class GlmFamily:
    """One family + link as glmer fits it.

    Attributes
    ----------
    name : str
        ``"binomial"``, ``"poisson"``, ``"Gamma"`` or ``"negative_binomial"`` (R's names).
    link : str
    nb_theta : float or None
        Negative binomial size (``Var = mu + mu^2 / theta``).
    """

    name: str
    link: str
    nb_theta: float | None = None

    @property
    def has_scale(self) -> bool:
        """Gamma: lme4 reports a scale (sigma) and a t column."""
        return self.name == "Gamma"

    @property
    def canonical(self) -> bool:
        return (self.name, self.link) in {("binomial", "logit"), ("poisson", "log")}

    def with_theta(self, theta: float) -> "GlmFamily":
        return GlmFamily(self.name, self.link, float(theta))

    def mu_eta(self, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(mu, dmu/deta)``."""
        return _LINKS[self.link](eta)

    def variance(self, mu: np.ndarray) -> np.ndarray:
        if self.name == "binomial":
            return np.maximum(mu * (1 - mu), _EPS)
        if self.name == "poisson":
            return mu
        if self.name == "Gamma":
            return mu * mu
        return mu + mu * mu / self.nb_theta

    def dev_resid(self, y, mu, wt) -> np.ndarray:
        """Deviance residuals (R's ``family()$dev.resids``)."""
        if self.name == "binomial":
            return 2 * wt * (_ylogy(y, mu) + _ylogy(1 - y, 1 - mu))
        if self.name == "poisson":
            return 2 * wt * (_ylogy(y, mu) - (y - mu))
        if self.name == "Gamma":
            return -2 * wt * (np.log(y / mu) - (y - mu) / mu)
        th = self.nb_theta
        return 2 * wt * (_ylogy(y, mu) - (y + th) * np.log((y + th) / (mu + th)))

    def aic(self, y, n, mu, wt, dev: float) -> float:
        """R's ``family()$aic``: -2 log-likelihood (Gamma: with its moment dispersion and +2)."""
        if self.name == "binomial":
            m = n
            k = np.round(m * y)
            ll = (sf.gammaln(m + 1) - sf.gammaln(k + 1) - sf.gammaln(m - k + 1)
                  + sf.xlogy(k, mu) + sf.xlog1py(m - k, -mu))
            return float(-2 * np.sum(np.where(m > 0, wt / np.where(m > 0, m, 1), 0.0) * ll))
        if self.name == "poisson":
            return float(-2 * np.sum(wt * (sf.xlogy(y, mu) - mu - sf.gammaln(y + 1))))
        if self.name == "Gamma":
            disp = dev / np.sum(wt)
            a = 1.0 / disp
            ll = -sf.gammaln(a) - a * np.log(mu * disp) + (a - 1) * np.log(y) - y / (mu * disp)
            return float(-2 * np.sum(wt * ll) + 2)
        th = self.nb_theta
        ll = (sf.gammaln(th + y) - sf.gammaln(th) - sf.gammaln(y + 1) + th * np.log(th)
              + sf.xlogy(y, mu + (y == 0)) - (th + y) * np.log(th + mu))
        return float(-2 * np.sum(wt * ll))

    def loglik_constant(self, y, n, wt) -> float:
        """The part of the log-likelihood that does not depend on the mean (binomial, Poisson,
        negative binomial): ``-aic/2 = constant + mean-dependent part``, the latter summed by the
        compiled row pass (:func:`.kernels.rows`)."""
        if self.name == "binomial":
            # the compiled pass sums pw (y log mu + (1 - y) log(1 - mu)), i.e. R's
            # (wt / m) dbinom(m y, m, mu) up to the binomial coefficient when m y is whole
            m = n
            k = np.round(m * y)
            c = sf.gammaln(m + 1) - sf.gammaln(k + 1) - sf.gammaln(m - k + 1)
            return float(np.sum(np.where(m > 0, wt / np.where(m > 0, m, 1), 0.0) * c))
        if self.name == "poisson":
            return float(-np.sum(wt * sf.gammaln(y + 1)))
        if self.name == "negative_binomial":
            th = self.nb_theta
            return float(np.sum(wt * (sf.gammaln(th + y) - sf.gammaln(th) - sf.gammaln(y + 1)
                                      + th * np.log(th))))
        return float("nan")

    def saturated_terms(self, y, wt) -> np.ndarray:
        """Binomial: ``2 wt (y log y + (1 - y) log(1 - y))`` per row (deviance residuals are
        this minus twice the row's log-likelihood kernel); zeros for the other families."""
        if self.name != "binomial":
            return np.zeros_like(y)
        return 2 * wt * (_ylogy(y, np.ones_like(y)) + _ylogy(1 - y, np.ones_like(y)))

    def saturated_loglik(self, y, n, wt) -> float:
        """``-aic(y, n, mu = y, wt, 0) / 2``: binomial and Poisson (NaN otherwise, as lme4)."""
        if self.name not in ("binomial", "poisson"):
            return float("nan")
        mu = np.clip(y, 0.0, 1.0) if self.name == "binomial" else y
        return -0.5 * self.aic(y, n, mu, wt, 0.0)


#: bayes_hlm family name -> (R's family name, allowed links; the first is R's default)
GLMER_FAMILIES = {
    "binomial": ("binomial", ("logit", "probit", "cloglog", "log")),
    "bernoulli": ("binomial", ("logit", "probit", "cloglog", "log")),
    "poisson": ("poisson", ("log", "identity")),
    "gamma": ("Gamma", ("inverse", "log", "identity")),
    "negativebinomial": ("negative_binomial", ("log", "identity")),
}
_ALIASES = {"nb": "negativebinomial", "negative_binomial": "negativebinomial",
            "negbinomial": "negativebinomial"}


def make_glm_family(family: str, link: str | None = None) -> GlmFamily:
    """glmer's family from a bayes_hlm family name (``"binomial"`` also takes 0/1 responses)."""
    key = str(getattr(family, "name", family)).lower()
    key = _ALIASES.get(key, key)
    if link is None and hasattr(family, "link"):
        link = family.link.name
    if key == "gaussian":
        raise BayesHLMError("glmer() fits generalized models; for a Gaussian response use "
                            "bh.reml(formula, data) (lme4's lmer)")
    if key not in GLMER_FAMILIES:
        raise BayesHLMError(f"glmer() has no family {family!r}; use one of "
                            f"{', '.join(sorted(GLMER_FAMILIES))}")
    rname, links = GLMER_FAMILIES[key]
    link = links[0] if link is None else link
    if link not in links:
        raise BayesHLMError(f"link {link!r} is not available for the {key} family in glmer(); "
                            f"use one of: {', '.join(links)}")
    return GlmFamily(rname, link, 1.0 if rname == "negative_binomial" else None)
