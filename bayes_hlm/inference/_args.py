"""Deprecated argument spellings, mapped in one place (each mapping warns once per call)."""

from __future__ import annotations

import warnings

from .intervals import DEFAULT_LEVEL

_UNSET = object()


def resolve_level(level, prob, where: str, stacklevel: int = 4) -> float:
    """``level`` (the one spelling), or the deprecated ``prob`` with a DeprecationWarning."""
    if prob is not None:
        warnings.warn(f"{where}(prob=...) is deprecated: use level=...", DeprecationWarning,
                      stacklevel=stacklevel)
        if level is not None and level != prob:
            raise TypeError(f"{where}: give level= only (prob= is its deprecated spelling)")
        return float(prob)
    return DEFAULT_LEVEL if level is None else float(level)


def pop_deprecated(kwargs: dict, old: str, new: str, where: str, stacklevel: int = 4):
    """Remove ``old`` from ``kwargs`` (warning that ``new`` is its name now); its value or None."""
    if old not in kwargs:
        return None
    warnings.warn(f"{where}({old}=...) is deprecated: use {new}=...", DeprecationWarning,
                  stacklevel=stacklevel)
    return kwargs.pop(old)


def reject_unknown(kwargs: dict, where: str) -> None:
    if kwargs:
        raise TypeError(f"{where}() got unexpected keyword argument(s) {sorted(kwargs)}")
