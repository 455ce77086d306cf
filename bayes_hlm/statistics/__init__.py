"""The statistics layer: one implementation of the per-group cross-products.

``spec -> statistics -> backends / reml / distributed -> results -> reporters``: every
engine reads the data only through the cross-products computed here (as MixedModels.jl
builds one set of cross-product blocks that all its methods use):

* :mod:`.pairs` -- the kernel: per-group sums of products of column pairs (NumPy
  ``bincount`` or one compiled Numba pass; the same sums either way);
* :mod:`.cross` -- cross-products of design matrices: global (``XᵀX, Xᵀy, yᵀy``),
  per level (``Z_gᵀZ_g, Z_gᵀX_g, Z_gᵀy_g``, nested ``Z_iᵀZ_o``) and the sparse
  products with other factors' columns (crossed designs);
* :mod:`.plan` -- which factor plays which role (single / nested / crossed);
* :mod:`.containers` -- the statistics objects (additive over row chunks);
* :mod:`.compute` -- :func:`compute_stats` of an in-memory design;
* :mod:`.level_constant` -- columns constant within every level (level-2 predictors).

Users: the collapsed Bayesian backend (:mod:`bayes_hlm.backends`), the REML criterion
(:mod:`bayes_hlm.reml.criterion`) and the Dask partitions
(:mod:`bayes_hlm.distributed.partition_stats`, which run :func:`.pairs.single_pairs` or
:func:`compute_stats` per partition and then add the partials).
"""

from .compute import block_columns, compute_stats
from .containers import BaseStats, CrossedStats, MarginalStats, NestedStats, SingleStats, merge_stats
from .cross import block_cross, global_cross, group_cross, indicator_csr, sparse_cross, stacked_csr
from .level_constant import constant_within_levels
from .pairs import PairLayout, pair_sums, single_pairs, single_partial
from .plan import (FactorBlock, StatsPlan, Structure, factor_blocks, find_nesting, make_plan, parent_map,
                   structure)

__all__ = [
    "BaseStats", "CrossedStats", "FactorBlock", "MarginalStats", "NestedStats", "PairLayout",
    "SingleStats", "StatsPlan", "Structure", "block_columns", "block_cross", "compute_stats", "constant_within_levels",
    "factor_blocks", "find_nesting", "global_cross", "group_cross", "indicator_csr", "make_plan", "merge_stats",
    "pair_sums", "parent_map", "single_pairs", "single_partial", "sparse_cross", "stacked_csr",
    "structure",
]
