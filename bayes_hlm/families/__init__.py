"""Response families: one module per family, found by name through :func:`get_family`.

Adding a family is one module (a :class:`Family` subclass, see :mod:`.base`) that
calls :func:`register`, plus its tests; nothing else changes. The default family
is Gaussian with the identity link.
"""

from __future__ import annotations

from ..errors import BayesHLMError
from .base import ENGINES, Family, FamilyParam
from .links import LINKS, Link, get_link

__all__ = ["ENGINES", "FAMILIES", "Family", "FamilyParam", "LINKS", "Link", "default_family",
           "get_family", "get_link", "register"]

#: registered families by name
FAMILIES: dict[str, type[Family]] = {}


def register(cls: type[Family]) -> type[Family]:
    """Register a :class:`Family` subclass under ``cls.name`` (usable as a decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Family)) or not cls.name or not cls.links:
        raise TypeError(f"{cls!r} is not a Family subclass with a name and links")
    FAMILIES[cls.name] = cls
    return cls


def get_family(name: "str | Family" = "gaussian", link: str | None = None) -> Family:
    """The family ``name`` with ``link`` (default: the family's default link).

    A :class:`Family` instance is returned as is (``link`` must then be None or its link).
    Unknown families and links are errors naming the valid ones.
    """
    if isinstance(name, Family):
        if link is not None and link != name.link.name:
            return type(name)(link)
        return name
    cls = FAMILIES.get(name.lower()) if isinstance(name, str) else None
    if cls is None:
        raise BayesHLMError(f"unknown family {name!r}; available families: "
                            f"{', '.join(sorted(FAMILIES))}")
    return cls(link)


def default_family() -> Family:
    """Gaussian with the identity link."""
    return get_family("gaussian")


from .bernoulli import Bernoulli  # noqa: E402  (each family registers below)
from .binomial import Binomial  # noqa: E402
from .gamma import Gamma  # noqa: E402
from .gaussian import Gaussian  # noqa: E402
from .negativebinomial import NegativeBinomial  # noqa: E402
from .poisson import Poisson  # noqa: E402
from .t import StudentT  # noqa: E402

for _cls in (Gaussian, Bernoulli, Binomial, Poisson, NegativeBinomial, StudentT, Gamma):
    register(_cls)
