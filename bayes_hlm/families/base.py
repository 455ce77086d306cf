"""What a response family states: the interface every family module implements.

A family (Gaussian now; Bernoulli, binomial, Poisson, negative binomial,
Student-t and Gamma next, #15) is one module under :mod:`bayes_hlm.families`
defining a :class:`Family` subclass and calling :func:`bayes_hlm.families.register`.
Everything else asks the family:

* the likelihood: :meth:`Family.likelihood` builds the PyMC observed variable from
  the linear predictor and the family's own parameters (full backend);
  :meth:`Family.logpdf` is the pointwise log likelihood in NumPy (loo, power-scaling);
* :attr:`Family.links` (the first is Bambi's default) and the chosen :attr:`Family.link`;
* :meth:`Family.variance` (the GLM variance function ``V(mu)``);
* its own parameters (:attr:`Family.params`: Gaussian ``sigma``, NB ``alpha``,
  Student-t ``sigma`` and ``nu``) with Bambi 0.21's default prior of each, and the
  data moments Bambi scales the linear predictor's priors with
  (:meth:`Family.prior_moments`);
* :meth:`Family.latent_variance`, the distribution-specific variance used by
  ICC/R² (``performance::icc``, ``r2_nakagawa``);
* :meth:`Family.engines`, the engines that can fit it;
* :meth:`Family.check_response`, which responses it can model.

The package imports nothing from :mod:`bayes_hlm.spec` (the spec stage imports
the families, not the other way round); priors are returned as
``(distribution, parameters)`` and turned into ``Prior`` objects by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Mapping

import numpy as np

from ..errors import BayesHLMError
from .links import Link, get_link

__all__ = ["ENGINES", "Family", "FamilyParam", "ScaleFamily"]

#: every engine name a family may list
ENGINES = ("full", "marginal", "numba", "jax", "reml")


@dataclass(frozen=True)
class FamilyParam:
    """A parameter of the family itself (not of the linear predictor).

    Attributes
    ----------
    name : str
        Parameter and prior key (``"sigma"``, ``"alpha"``, ``"nu"``).
    default_prior : callable
        ``(y_mean, y_sd) -> (distribution, {parameter: value})``: Bambi 0.21's default.
    dispersion : bool
        True for the parameter reported as the family's dispersion.
    """

    name: str
    default_prior: Callable[[float, float], tuple[str, dict]]
    dispersion: bool = True


class Family:
    """Base class of a response family; subclasses set the class attributes and
    implement the methods that raise ``NotImplementedError``.

    Parameters
    ----------
    link : str, optional
        One of :attr:`links`; default the first (Bambi's default link).
    """

    #: registry name (``"gaussian"``)
    name: ClassVar[str] = ""
    #: allowed link names; the first is the default
    links: ClassVar[tuple[str, ...]] = ()
    #: the family's own parameters, in the order they are reported
    params: ClassVar[tuple[FamilyParam, ...]] = ()
    #: engines able to fit the family with its default link
    default_engines: ClassVar[frozenset[str]] = frozenset({"full"})
    #: engines that fit the family with any of its links (non-Gaussian families: ``"numba"``,
    #: the compiled full-model density of :mod:`bayes_hlm.backends.glmm_density`)
    link_engines: ClassVar[frozenset[str]] = frozenset()
    #: the response carries a number of trials (binomial): ``Design.trials``
    needs_trials: ClassVar[bool] = False
    #: the mean is positive (counts, Gamma): links other than log bound the linear predictor
    positive_mean: ClassVar[bool] = False

    @property
    def bounded_eta(self) -> bool:
        """The linear predictor must stay in part of the real line (a positive-mean family
        with the inverse or identity link: ``eta > 0``). PyMC's jittered start around
        ``eta = 0`` is then invalid, so the full model starts at the data instead
        (:func:`bayes_hlm.backends.full.start_values`)."""
        return self.positive_mean and self.link.name in ("inverse", "identity")

    @property
    def binary_prior_scaling(self) -> bool:
        """Bambi 0.21 scales the linear predictor's priors specially for Bernoulli/binomial
        models with the logit or probit link (``PriorScaler.scale_common``/``scale_intercept``)."""
        return False

    def __init__(self, link: str | None = None):
        if link is None:
            link = self.links[0]
        if link not in self.links:
            raise BayesHLMError(f"link {link!r} is not available for the {self.name} family; "
                                f"use one of: {', '.join(self.links)}")
        self.link: Link = get_link(link)

    # ------------------------------------------------------------------ facts
    def __repr__(self) -> str:
        return f"{type(self).__name__}(link={self.link.name!r})"

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other.link.name == self.link.name

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.link.name))

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def has_dispersion(self) -> bool:
        """Whether the family has a dispersion/scale parameter (Gaussian ``sigma``: yes;
        Bernoulli, Poisson: no)."""
        return any(p.dispersion for p in self.params)

    def engines(self) -> frozenset[str]:
        """Engines that can fit this family with its link (see :data:`ENGINES`).

        Only the default link keeps the collapsed (conjugate) engines; :attr:`link_engines`
        fit every link.
        """
        if self.link.name == self.links[0]:
            return self.default_engines | self.link_engines
        return frozenset({"full"}) | self.link_engines

    def supports(self, engine: str) -> bool:
        return engine in self.engines()

    def to_dict(self) -> dict:
        return {"family": self.name, "link": self.link.name}

    # ---------------------------------------------------------------- priors
    def prior_moments(self, y_mean: float, y_sd: float) -> tuple[float, float]:
        """The response mean and SD Bambi scales the linear predictor's priors with.

        Bambi uses the data's for Gaussian and Student-t models and ``(0, 1)`` for
        every other family (``bambi.priors.scaler.PriorScaler``).
        """
        return 0.0, 1.0

    def default_priors(self, y_mean: float, y_sd: float) -> dict[str, tuple[str, dict]]:
        """Bambi 0.21's default prior of each family parameter: ``{name: (dist, params)}``."""
        return {p.name: p.default_prior(y_mean, y_sd) for p in self.params}

    # -------------------------------------------------------------- response
    def check_response(self, y: np.ndarray, column: str) -> None:
        """Refuse a response this family cannot model (a 3 in a Bernoulli response, negative
        counts), naming ``column``, the family and an example row. Default: any finite value."""
        bad = np.flatnonzero(~np.isfinite(np.asarray(y, dtype=float)))
        if bad.size:
            raise BayesHLMError(f"response {column!r} has a non-finite value (row {bad[0]}) "
                                f"that the {self.name} family cannot model")

    # ------------------------------------------------------------ likelihood
    def likelihood(self, name: str, eta, params: Mapping[str, object], observed):
        """The observed PyMC variable ``name`` (inside a ``pm.Model``) given the linear
        predictor ``eta`` and the family parameters ``params`` (PyTensor variables)."""
        raise NotImplementedError

    def logpdf(self, y: np.ndarray, eta: np.ndarray, **params: np.ndarray) -> np.ndarray:
        """Pointwise log likelihood ``log p(y | eta, params)`` (NumPy, broadcasting)."""
        raise NotImplementedError

    def random(self, eta: np.ndarray, rng: np.random.Generator,
               **params: np.ndarray) -> np.ndarray:
        """Draws of the response given the linear predictor (posterior predictive)."""
        raise NotImplementedError

    def variance(self, mu: np.ndarray) -> np.ndarray:
        """The variance function ``V(mu)``: ``Var(y | mu) = dispersion * V(mu)``."""
        raise NotImplementedError

    def response_variance(self, mu: np.ndarray, **params: np.ndarray) -> np.ndarray:
        """``Var(y | mu, params)`` (Pearson residuals). Default: ``V(mu)`` (no dispersion)."""
        return self.variance(mu)

    def latent_variance(self, params: Mapping[str, np.ndarray],
                        eta_mean: np.ndarray | None = None) -> np.ndarray:
        """Distribution-specific (residual) variance on the latent scale, per draw.

        Parameters
        ----------
        params : mapping
            Draws of the family parameters (``{"sigma": (S,)}``).
        eta_mean : ndarray, optional
            Per-draw mean of the linear predictor of the null model, which the
            lognormal and trigamma approximations of count families need
            (``performance::r2_nakagawa``); unused by Gaussian and binomial families.
        """
        raise NotImplementedError


class ScaleFamily(Family):
    """A location-scale family with residual scale ``sigma`` (Gaussian, Student-t).

    The parts they share: the linear predictor's priors are scaled by ``mean(y)`` and
    ``sd(y)``; the variance function is constant; ``Var(y | mu)`` and the latent-scale
    variance (ICC/R²) are ``sigma^2`` (for the t, the scale squared: its own variance
    ``sigma^2 nu/(nu-2)`` is infinite for ``nu <= 2``).
    """

    def prior_moments(self, y_mean: float, y_sd: float) -> tuple[float, float]:
        return y_mean, y_sd

    def variance(self, mu) -> np.ndarray:
        return np.ones_like(np.asarray(mu, dtype=float))

    def response_variance(self, mu, *, sigma, **_) -> np.ndarray:
        return np.broadcast_to(np.asarray(sigma, dtype=float) ** 2, np.shape(mu))

    def latent_variance(self, params, eta_mean=None) -> np.ndarray:
        return np.asarray(params["sigma"], dtype=float) ** 2
