"""The numeric design of a linear mixed model: what every backend consumes.

A :class:`Design` is the output of the model-spec stage (``build_design``) and
the only input the backends (PyMC full model, marginalised NUTS, REML) need.
Group terms are stored as integer factor codes plus their ``n x q`` columns,
never as the dense ``n x (levels*q)`` indicator matrix: that matrix is what
makes formula-based group designs blow up on large data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class GroupTerm:
    """One random-effect term ``(expr | factor)``.

    Attributes
    ----------
    factor : str
        Grouping factor as written in the formula; nested factors are joined
        with ``:`` (the inner factor of ``(1|batch/cask)`` is ``"batch:cask"``).
    terms : tuple of str
        Names of the ``q`` columns of ``Z`` (``"Intercept"``, ``"Days"``, ...).
    correlated : bool
        ``True`` for ``(x|g)`` (full covariance with LKJ prior on the
        correlation); ``False`` for terms split out of ``(x||g)``. A term with
        ``q == 1`` is reported as uncorrelated whatever this flag says.
    codes : ndarray of int64, shape (n,)
        Level index of each row, in ``0 .. n_levels-1``.
    levels : pandas.Index
        Level labels, in code order.
    Z : ndarray of float64, shape (n, q)
        Row-wise model columns of the term (a column of ones for ``1``).
    """

    factor: str
    terms: tuple[str, ...]
    correlated: bool
    codes: np.ndarray
    levels: pd.Index
    Z: np.ndarray

    @property
    def q(self) -> int:
        return len(self.terms)

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    @property
    def name(self) -> str:
        """Label used for PyMC variables and ArviZ coords: ``"1|Subject"`` style."""
        return f"{'+'.join(self.terms)}|{self.factor}"


@dataclass(frozen=True)
class Design:
    """Numeric design of a Gaussian linear mixed model ``y = X b + sum_k Z_k u_k + e``.

    Attributes
    ----------
    formula : str
        The formula as the user wrote it.
    response : str
        Name of the response column.
    y : ndarray, shape (n,)
    X : ndarray, shape (n, p)
        Fixed-effect design (intercept column first when present).
    fixed_names : tuple of str
        Column names of ``X`` as lme4 prints them (``"Intercept"``,
        ``"sectorCatholic"``, ``"x:z"``).
    groups : tuple of GroupTerm
        Random-effect terms in formula order.
    row_index : pandas.Index
        Index labels (in the user's data frame) of the rows used, after dropping
        missing values; lets results line up with the user's data.
    fixed_formula : str
        Right-hand side of the fixed part, as handed to formulae (used to
        rebuild ``X`` for new data).
    info : dict
        Extra facts recorded while building (dropped rows, dropped aliased
        columns, ...), for reports and warnings.
    trials : ndarray, shape (n,), optional
        Binomial models: trials per row (``y`` holds the successes).
    offset : ndarray, shape (n,), optional
        Sum of the formula's ``offset(...)`` terms: part of the linear predictor
        with its coefficient fixed at 1 (never a column of ``X``); ``None`` when
        the formula has none.
    weights : ndarray, shape (n,), optional
        Frequency weights (``fit(weights=...)``): row ``i``'s log likelihood is multiplied
        by ``weights[i]`` (brms ``weights()``); ``None`` when unweighted. Binomial
        proportions with weights hold their trials in ``trials`` instead.
    row_pattern : ndarray of int64, shape (n,), optional
        Rows with equal codes have equal ``X`` rows and offsets (codes in order of first
        appearance: the distinct rows of the fixed part's columns, found while building
        when they are few); ``None`` when not computed. Lets 10⁷-row designs with a few
        patterns reduce to them without hashing ``X`` again (data moments, Poisson
        sufficient statistics).
    """

    formula: str
    response: str
    y: np.ndarray
    X: np.ndarray
    fixed_names: tuple[str, ...]
    groups: tuple[GroupTerm, ...]
    row_index: pd.Index
    fixed_formula: str = ""
    info: dict = field(default_factory=dict)
    trials: np.ndarray | None = None  # binomial: the number of trials of each row
    offset: np.ndarray | None = None
    weights: np.ndarray | None = None  # frequency weights of the rows' log likelihood
    row_pattern: np.ndarray | None = None  # equal codes: equal X rows and offsets

    @property
    def working_y(self) -> np.ndarray:
        """The response the Gaussian likelihood sees: ``y - offset``.

        ``y ~ N(offset + X b + Z u, sigma^2)`` is ``y - offset ~ N(X b + Z u, sigma^2)``,
        so every Gaussian backend (and its sufficient statistics) fits the working response;
        results add the offset back to the linear predictor.
        """
        return self.y if self.offset is None else self.y - self.offset

    @property
    def n(self) -> int:
        return int(self.y.shape[0])

    @property
    def p(self) -> int:
        return int(self.X.shape[1])

    @property
    def has_intercept(self) -> bool:
        return "Intercept" in self.fixed_names

    def factors(self) -> dict[str, int]:
        """Grouping factors and their number of levels, in formula order."""
        out: dict[str, int] = {}
        for g in self.groups:
            out.setdefault(g.factor, g.n_levels)
        return out
