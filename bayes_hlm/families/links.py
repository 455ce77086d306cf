"""Link functions ``eta = g(mu)`` with their inverses, for NumPy and PyTensor.

A family names its allowed links (:attr:`bayes_hlm.families.Family.links`); the
links themselves are shared here, so ``logit`` is written once for Bernoulli and
binomial models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import BayesHLMError

__all__ = ["Link", "LINKS", "get_link"]


@dataclass(frozen=True)
class Link:
    """A link function.

    Attributes
    ----------
    name : str
    link : callable
        NumPy ``mu -> eta``.
    inverse : callable
        NumPy ``eta -> mu``.
    inverse_tensor : callable
        PyTensor ``eta -> mu`` (the identity returns its argument: the graph is unchanged).
    """

    name: str
    link: Callable[[np.ndarray], np.ndarray]
    inverse: Callable[[np.ndarray], np.ndarray]
    inverse_tensor: Callable


def _sp():
    from scipy import special  # lazy: importing the spec stage stays light

    return special


def _pt():
    import pytensor.tensor as pt

    return pt


def _probit_inv_pt(eta):
    pt = _pt()
    return 0.5 * pt.erfc(-eta / np.sqrt(2.0))


LINKS: dict[str, Link] = {
    "identity": Link("identity", lambda mu: np.asarray(mu, dtype=float),
                     lambda eta: np.asarray(eta, dtype=float), lambda eta: eta),
    "log": Link("log", np.log, np.exp, lambda eta: _pt().exp(eta)),
    "logit": Link("logit", lambda mu: _sp().logit(mu), lambda eta: _sp().expit(eta),
                  lambda eta: _pt().sigmoid(eta)),
    "probit": Link("probit", lambda mu: _sp().ndtri(mu), lambda eta: _sp().ndtr(eta),
                   _probit_inv_pt),
    "cloglog": Link("cloglog", lambda mu: np.log(-np.log1p(-np.asarray(mu, dtype=float))),
                    lambda eta: -np.expm1(-np.exp(eta)),
                    lambda eta: -_pt().expm1(-_pt().exp(eta))),
    "inverse": Link("inverse", lambda mu: 1.0 / np.asarray(mu, dtype=float),
                    lambda eta: 1.0 / np.asarray(eta, dtype=float), lambda eta: 1.0 / eta),
}


def get_link(name: str) -> Link:
    """The link called ``name``; an unknown name is an error listing the known ones."""
    try:
        return LINKS[name]
    except (KeyError, TypeError):
        raise BayesHLMError(f"unknown link {name!r}; known links: {', '.join(LINKS)}") from None
