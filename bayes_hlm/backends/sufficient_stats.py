"""Sufficient statistics of a Gaussian LMM for the marginalised backend.

The computation lives in the statistics layer (:mod:`bayes_hlm.statistics`, shared
with the REML criterion and the Dask pass); this module keeps the names the backend
and its users import.  Layouts (:func:`structure`): ``"single"`` (:class:`SingleStats`),
``"nested"`` (:class:`NestedStats`), ``"crossed"`` (:class:`CrossedStats`), ``"none"``
(:class:`BaseStats`); terms of one factor are merged into one :class:`FactorBlock`.
"""

from __future__ import annotations

from ..statistics import (BaseStats, CrossedStats, FactorBlock, MarginalStats, NestedStats,
                          SingleStats, StatsPlan, Structure, compute_stats, make_plan,
                          merge_stats, structure)

__all__ = [
    "BaseStats",
    "CrossedStats",
    "FactorBlock",
    "MarginalStats",
    "NestedStats",
    "SingleStats",
    "StatsPlan",
    "Structure",
    "compute_stats",
    "make_plan",
    "merge_stats",
    "structure",
]
