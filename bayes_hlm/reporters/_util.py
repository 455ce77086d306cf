"""Helpers shared by the plot modules: axes creation, factor/term defaults, REML lookup."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..errors import BayesHLMError
from ..results.reference import FrequentistReference, MissingReference, Reference, norm_term, reference_for

if TYPE_CHECKING:
    from ..results.bayes_result import BayesResult

BAYES_COLOR = "C0"
REML_COLOR = "C3"
NOPOOL_COLOR = "0.35"
POOLED_COLOR = "C2"


def axes_or_new(ax=None, figsize=(6, 4)):
    """(figure, axes): the given axes' figure, or a new single-panel figure."""
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return fig, ax


def pick_factor(result: "BayesResult", factor: str | None) -> str:
    if not result.factors:
        raise BayesHLMError("the model has no grouping factors")
    if factor is None:
        return result.factors[0]
    if factor not in result.factors:
        raise BayesHLMError(f"unknown factor {factor!r}; factors: {result.factors}")
    return factor


def factor_terms(result: "BayesResult", factor: str) -> list[str]:
    return [norm_term(t) for t in result._terms(factor)]


def reference(result: "BayesResult", reml_result=None) -> Reference:
    """The typed REML reference (or why there is none) for the plots of ``result``."""
    return reference_for(result, reml_result)


def values(ref: Reference) -> FrequentistReference | None:
    """The reference's values, or None when it is a :class:`MissingReference`."""
    return ref if isinstance(ref, FrequentistReference) else None


def note_missing(fig, ref: Reference | str | None) -> None:
    """Write why the REML marks are absent at the bottom of ``fig`` (nothing if they are there)."""
    text = ref.note if isinstance(ref, MissingReference) else ref if isinstance(ref, str) else None
    if text:
        fig.text(0.01, 0.005, f"Note: {text}", fontsize=7, color=REML_COLOR, ha="left", va="bottom",
                 wrap=True)
        # keep the axes (and their x labels) clear of the note: a constrained layout is told to
        # leave the note's lines free at the bottom
        from matplotlib.layout_engine import ConstrainedLayoutEngine

        engine = fig.get_layout_engine()
        if isinstance(engine, ConstrainedLayoutEngine):
            width_pt = fig.get_figwidth() * 72
            lines = int(np.ceil(len(text) * 7 * 0.55 / max(width_pt, 1))) + 0.3
            h = min(0.3, lines * 9 / 72 / fig.get_figheight())
            engine.set(rect=(0, h, 1, 1 - h))


def row_levels(result: "BayesResult", factor: str) -> np.ndarray:
    """Level label (str) of each fitted row for ``factor``."""
    g = next(g for g in result.design.groups if g.factor == factor)
    return np.asarray([str(v) for v in g.levels], dtype=object)[g.codes]


def slope_column(result: "BayesResult", factor: str | None = None) -> str | None:
    """A numeric data column used as a slope (in the factor's terms, else the fixed part)."""
    data = result.spec.data
    cands = factor_terms(result, factor) if factor else []
    cands += [norm_term(n) for n in result.design.fixed_names]
    for t in cands:
        if t != "Intercept" and t in data and pd.api.types.is_numeric_dtype(data[t]):
            return t
    return None


def pc_figure(pc):
    """The matplotlib figure of an ArviZ 1.x PlotCollection."""
    try:
        return pc.viz["figure"].item()
    except Exception:
        return plt.gcf()


# ----------------------------------------------------------------------------- family-aware labels
#: what one unit of the linear predictor is, per link (axis labels of link-scale plots)
LINK_SCALE = {"logit": "log-odds", "probit": "probit scale", "cloglog": "cloglog scale", "log": "log scale",
              "inverse": "inverse scale", "identity": None}
BINARY_FAMILIES = ("bernoulli", "binomial")
COUNT_FAMILIES = ("poisson", "negativebinomial")


def family_of(result: "BayesResult"):
    from ..results.family_draws import family_of as _family_of

    return _family_of(result)


def family_link(result: "BayesResult") -> tuple[str, str]:
    """(family name, link name) of the fit (Gaussian, identity link for fits made before families)."""
    fam = family_of(result)
    return str(fam.name), str(fam.link.name)


def family_tag(result: "BayesResult") -> str:
    """``"binomial family, logit link"``: the tag of plot titles."""
    fam, link = family_link(result)
    return f"{fam} family, {link} link"


def link_scale_label(result: "BayesResult") -> str | None:
    """``"log-odds (logit link)"``, ``"log rate (log link)"``, ...; None for identity-link fits
    (the coefficient is on the response's own scale)."""
    fam, link = family_link(result)
    scale = LINK_SCALE.get(link, f"{link} scale")
    if scale is None:
        return None
    if link == "log" and fam in COUNT_FAMILIES:
        scale = "log rate"
    elif link == "log":
        scale = "log mean"
    return f"{scale} ({link} link)"


def response_label(result: "BayesResult") -> str:
    """What ``predict(kind="mean")`` is, in the user's words: ``P(use = Y)``, ``P(incidence per
    trial)``, ``expected TICKS``, or the response name for Gaussian fits."""
    fam, _ = family_link(result)
    resp = result.spec.parsed.response
    data = result.spec.data
    if fam == "bernoulli":
        col = data[resp] if resp in data.columns else None
        if col is not None and isinstance(col.dtype, pd.CategoricalDtype) and len(col.cat.categories) == 2:
            return f"P({resp} = {col.cat.categories[-1]})"
        if col is not None and pd.api.types.is_bool_dtype(col):
            return f"P({resp})"
        return f"P({resp} = 1)"
    if fam == "binomial":
        inner = resp[resp.index("(") + 1:].split(",")[0].strip() if "(" in resp else resp
        return f"P({inner}) per trial"
    if fam in COUNT_FAMILIES or fam == "gamma":
        return f"expected {resp}"
    return resp


def reference_label(result: "BayesResult") -> str:
    """Who the red marks come from: ``"REML"`` (lme4's lmer) for identity-link Gaussian fits,
    ``"glmer"`` (lme4's Laplace fit) for the other families."""
    fam, link = family_link(result)
    return "REML" if fam == "gaussian" and link == "identity" else "glmer"
