"""Parameter names as lme4 prints them, for users who compare a fit with R.

``names="lme4"`` (in :meth:`RemlResult.to_dict`, ``varcorr`` and ``tidy``) gives:

* ``(Intercept)`` for ``Intercept``;
* the inner factor of a nesting ``(1 | Block/Variety)`` named ``Variety:Block`` (lme4 lists
  the inner factor first; bayes_hlm's default name is ``Block:Variety``);
* VarCorr's group names: a factor with several terms, e.g. ``(1 | Rat) + (0 + x | Rat)`` or
  ``(x || Rat)``, gives groups ``Rat``, ``Rat.1``, ... (R's ``make.unique``); bayes_hlm's
  default merges them into one group ``Rat``.

* the levels of such an inner factor as lme4 labels them (``A:W1``, inner level first), in
  ``tidy(..., effects="ran_vals", names="lme4")``.

Fixed-effect interactions already follow the formula's order (``Variety:nitro`` for
``Variety * nitro``), as in R.
"""

from __future__ import annotations

import numpy as np

NAME_STYLES = ("bayes_hlm", "lme4")


def check_names(names: str) -> str:
    if names not in NAME_STYLES:
        raise ValueError(f"names must be one of {NAME_STYLES}, not {names!r}")
    return names


def term_label(term: str, names: str) -> str:
    """A model column's name: ``Intercept`` is ``(Intercept)`` in lme4's style."""
    return "(Intercept)" if names == "lme4" and term == "Intercept" else term


def _random_terms(design, spec) -> list:
    parsed = getattr(spec, "parsed", None)
    if parsed is not None and len(parsed.random) == len(design.groups):
        return list(parsed.random)
    return [None] * len(design.groups)


def factor_labels(design, spec, names: str) -> list[str]:
    """Per group term: its grouping factor's name (lme4: ``b:a`` for the inner factor of ``a/b``)."""
    out = []
    for g, t in zip(design.groups, _random_terms(design, spec)):
        out.append(t.lme4_factor if names == "lme4" and t is not None else g.factor)
    return out


def group_labels(design, spec, names: str) -> list[str]:
    """Per group term: its VarCorr group (lme4: ``Rat``, ``Rat.1`` for two terms on ``Rat``)."""
    factors = factor_labels(design, spec, names)
    if names != "lme4":
        return factors
    seen: dict[str, int] = {}
    out = []
    for f in factors:
        n = seen.get(f, 0)
        seen[f] = n + 1
        out.append(f if n == 0 else f"{f}.{n}")
    return out


def level_labels(design, spec, names: str) -> dict[str, dict[str, str]]:
    """Per grouping factor: level label -> lme4's label (``A:W1`` for level ``W1:A`` of ``a/b``).

    Only factors whose names differ (inner factors of a nesting, ``names="lme4"``) appear.
    """
    out: dict[str, dict[str, str]] = {}
    data = getattr(spec, "data", None)
    if names != "lme4" or data is None:
        return out
    from ..spec.build import factor_labels

    for g, t in zip(design.groups, _random_terms(design, spec)):
        if t is None or not t.nested or g.factor in out:
            continue
        ours = np.asarray(g.levels, dtype=object)[g.codes]
        theirs = np.asarray(factor_labels(data, tuple(reversed(t.factor_columns))), dtype=object)
        out[g.factor] = {str(a): str(b) for a, b in zip(ours, theirs)}
    return out
