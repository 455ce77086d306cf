"""The frequentist reference of a Bayesian result: :func:`reference_for`.

The reference types (:class:`FrequentistReference`, :class:`MissingReference`) are defined
in :mod:`bayes_hlm.inference.reference` (shared with :mod:`bayes_hlm.reml`, which makes
them) and re-exported here.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from ..errors import BayesHLMError, BayesHLMWarning
from ..inference.reference import FrequentistReference, MissingReference, Reference, norm_term

if TYPE_CHECKING:
    from .bayes_result import BayesResult

__all__ = ["FrequentistReference", "MissingReference", "Reference", "reference_for", "norm_term"]


def reference_for(result: "BayesResult", given=None, engine_required: bool = False) -> Reference:
    """The frequentist reference for ``result``.

    ``given``: a :class:`FrequentistReference` or :class:`MissingReference` (used as is) or a
    :class:`~bayes_hlm.reml.RemlResult` or :class:`~bayes_hlm.glmer.GlmerResult` (its
    :meth:`reference`); anything else raises ``TypeError``. Without one, the model is fitted
    by REML (``result.reml()``, cached; Gaussian, identity link) or by glmer's Laplace
    approximation (``result.glmer()``, cached; binomial, Poisson, negative binomial, Gamma): if that
    fit raises, the error becomes a :class:`MissingReference` whose reason carries the message,
    and a :class:`BayesHLMWarning` says so. An REML engine that cannot be imported raises
    :class:`BayesHLMError` when ``engine_required``, else is a :class:`MissingReference` too.
    """
    if isinstance(given, (FrequentistReference, MissingReference)):
        return given
    try:
        from ..reml import RemlResult
    except ImportError as exc:
        msg = f"the REML engine bayes_hlm.reml cannot be imported ({exc})"
        if engine_required or given is not None:
            raise BayesHLMError(f"{msg}; pass reml_result=<FrequentistReference> explicitly") from exc
        return MissingReference(msg)
    if given is not None:
        from ..glmer import GlmerResult

        if not isinstance(given, (RemlResult, GlmerResult)):
            raise TypeError("reml_result must be a RemlResult, a GlmerResult, a "
                            f"FrequentistReference or a MissingReference, not {type(given).__name__}")
        return given.reference()
    family = getattr(result.spec, "family", None)
    engine = "REML"
    if family is not None and "reml" not in family.engines():  # the family states what fits it
        from ..glmer.api import GLMER_FAMILY_NAMES

        if family.name not in GLMER_FAMILY_NAMES:
            return MissingReference(f"no frequentist reference for family {family.name!r} (link "
                                    f"{family.link.name!r}): REML fits identity-link Gaussian "
                                    f"models, glmer the {', '.join(GLMER_FAMILY_NAMES)} families")
        engine = "glmer (Laplace)"
    try:
        fit = result.reml() if engine == "REML" else result.glmer()
    except Exception as exc:  # any failure of the reference fit is reported, not dropped
        reason = f"the {engine} fit failed: {type(exc).__name__}: {exc}"
        warnings.warn(f"{reason}; comparisons show the Bayesian values only", BayesHLMWarning,
                      stacklevel=3)
        return MissingReference(reason)
    return fit.reference()
