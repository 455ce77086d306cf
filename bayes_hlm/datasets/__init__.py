"""Reference data sets and synthetic hierarchical data.

- :func:`load` / :func:`names`: bundled R reference data with R's factor
  levels: Gaussian (sleepstudy, hsb82, mathachschool, mathachieve, penicillin,
  insteval) and generalized (cbpp, grouseticks, verbagg, contraception).
- :func:`simulate`: synthetic hierarchical Gaussian data with known truth.
- :func:`write_parquet`: write a frame as a directory of Parquet partitions.
"""

from .loaders import load, names
from .simulate import SimulatedData, simulate, write_parquet

__all__ = ["SimulatedData", "load", "names", "simulate", "write_parquet"]
