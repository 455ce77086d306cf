"""Posterior variable names and dims shared by every backend and reporter.

The parameters a spec defines, by the names every backend gives their draws, so
reporters never ask which one ran (they live in ``spec`` so that every layer above it -
backends, results, reporters - can import them):

* ``fixed``            (chain, draw, fixed_term)
* ``sigma``            (chain, draw)
* ``sd__<factor>``     (chain, draw, <factor>__term)
* ``corr__<factor>``   (chain, draw, <factor>__term, <factor>__term_b)  [correlated factors]
* ``r__<factor>``      (chain, draw, <factor>__level, <factor>__term)   group effects

That is the layout the backends produce. ``BayesResult.tree`` (what ArviZ sees) stores
the correlations as their free pairs only, ``corr__<factor>`` (chain, draw,
<factor>__pair), and orders variables so ArviZ labels them correctly; see
:mod:`bayes_hlm.results.arviz_layout`.
"""

FIXED = "fixed"
FIXED_DIM = "fixed_term"
SIGMA = "sigma"


def sd_var(factor: str) -> str:
    return f"sd__{factor}"


def corr_var(factor: str) -> str:
    return f"corr__{factor}"


def effect_var(factor: str) -> str:
    return f"r__{factor}"


def term_dim(factor: str) -> str:
    return f"{factor}__term"


def term_dim_b(factor: str) -> str:
    return f"{factor}__term_b"


def level_dim(factor: str) -> str:
    return f"{factor}__level"


def pair_dim(factor: str) -> str:
    """Dimension of the correlation pairs ``"<term_i>, <term_j>"`` (i < j) in ``BayesResult.tree``."""
    return f"{factor}__pair"


__all__ = ["FIXED", "FIXED_DIM", "SIGMA", "corr_var", "effect_var", "level_dim", "pair_dim",
           "sd_var", "term_dim", "term_dim_b"]
