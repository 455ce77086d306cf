"""Plots and reports for Bayesian hierarchical fits, with the REML reference fit alongside.

Every plot function takes the result (and optionally a REML result / axes) and
returns a matplotlib Figure or Axes; all render headless (Agg). The discrete posterior
predictive checks (``plot_rootogram``, ``plot_ppc_bars``, ``plot_calibration``) take the data
themselves (observed, replicates, predicted probabilities), as ArviZ's plots do.
"""

from ..results.compare_reml import compare_reml, shrinkage_table
from .caterpillar import plot_caterpillar
from .diagnostic_plots import plot_energy, plot_ppc, plot_rank, plot_trace
from .tab_model import TabModel, tab_model
from .distributions import plot_variance_distributions
from .forest import plot_forest
from .ppc_discrete import calibration_table, plot_calibration, plot_ppc_bars, plot_rootogram
from .group_lines import plot_group_lines, plot_spaghetti
from .report_html import render_plots, write_plots, write_report
from .shrinkage import plot_shrinkage, plot_shrinkage_2d
from .simpson import plot_simpson, simpson_toy

__all__ = [
    "TabModel", "calibration_table", "compare_reml", "plot_calibration", "plot_ppc_bars", "plot_rootogram", "plot_caterpillar", "plot_energy", "plot_forest", "plot_group_lines",
    "plot_ppc", "plot_rank", "plot_shrinkage", "plot_shrinkage_2d", "plot_simpson", "plot_spaghetti",
    "plot_trace", "plot_variance_distributions", "render_plots", "shrinkage_table", "simpson_toy",
    "tab_model", "write_plots", "write_report",
]
