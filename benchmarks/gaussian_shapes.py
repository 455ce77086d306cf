"""Simulated data of the two held-out Gaussian shapes of issue #20 (used by
``bench_gaussian_shapes.py`` and, at small sizes, by the compiled-engine tests).

* ``school_area``: ``score ~ x * gender + (x | school) + (1 | area)``, pupils in schools in
  areas; school ids are unique across areas, so the nesting is implied by the ids only.
* ``longitudinal``: ``y ~ year * z + (year | school) + (1 | school:child)``, yearly
  measurements of children in schools (``z`` a child-level covariate).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SCHOOL_AREA = "score ~ x * gender + (x | school) + (1 | area)"
LONGITUDINAL = "y ~ year * z + (year | school) + (1 | school:child)"


def school_area(n_rows: int = 31_000, *, rows_per_school: float = 40.0, schools_per_area: int = 20,
                effect_scale: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """Pupils (``n_rows``) in schools (~``rows_per_school`` pupils) in areas; a random
    intercept and ``x`` slope per school (SDs 0.6, 0.25, correlation 0.3), an intercept per
    area (SD 0.4); ``effect_scale`` multiplies these SDs (residual SD 1)."""
    rng = np.random.default_rng(seed)
    n_school = max(4, int(round(n_rows / rows_per_school)))
    n_area = max(2, n_school // schools_per_area)
    school = np.sort(rng.integers(0, n_school, n_rows))
    school = np.unique(school, return_inverse=True)[1]
    n_school = school.max() + 1
    area_of = rng.integers(0, n_area, n_school)
    area_of[:n_area] = np.arange(n_area)  # every area has a school
    x = rng.normal(size=n_rows)
    gender = rng.choice(["F", "M"], n_rows)
    m = (gender == "M").astype(float)
    cov = np.array([[0.6 ** 2, 0.3 * 0.6 * 0.25], [0.3 * 0.6 * 0.25, 0.25 ** 2]])
    u = rng.multivariate_normal(np.zeros(2), cov * effect_scale**2, size=n_school)
    a = rng.normal(0.0, 0.4 * effect_scale, n_area)
    y = (0.5 + 0.4 * x - 0.2 * m + 0.1 * x * m + u[school, 0] + u[school, 1] * x
         + a[area_of[school]] + rng.normal(0.0, 1.0, n_rows))
    return pd.DataFrame({"score": y, "x": x, "gender": gender,
                         "school": [f"s{s}" for s in school],
                         "area": [f"a{a_}" for a_ in area_of[school]]})


def longitudinal(n_rows: int = 7_000, *, years: int = 5, children_per_school: int = 25,
                 effect_scale: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """Children measured ``years`` times (about ``n_rows`` rows), ``children_per_school`` per
    school; a random intercept and ``year`` slope per school (SDs 0.5, 0.15, correlation
    −0.2; times ``effect_scale``), an intercept per child (SD 0.7), residual SD 0.6 (child
    ids repeat across schools: the nesting is written ``school:child``)."""
    rng = np.random.default_rng(seed)
    n_child = max(4, n_rows // years)
    n_school = max(2, n_child // children_per_school)
    school_of = rng.integers(0, n_school, n_child)
    school_of[:n_school] = np.arange(n_school)
    child_in = np.zeros(n_child, dtype=int)
    for s in range(n_school):  # child numbers restart in every school
        idx = np.flatnonzero(school_of == s)
        child_in[idx] = np.arange(len(idx))
    child = np.repeat(np.arange(n_child), years)
    year = np.tile(np.arange(years, dtype=float), n_child)
    z = rng.normal(size=n_child)[child]
    cov = np.array([[0.5 ** 2, -0.2 * 0.5 * 0.15], [-0.2 * 0.5 * 0.15, 0.15 ** 2]])
    u = rng.multivariate_normal(np.zeros(2), cov * effect_scale**2, size=n_school)
    c = rng.normal(0.0, 0.7, n_child)
    sch = school_of[child]
    y = (1.0 + 0.3 * year + 0.5 * z + 0.05 * year * z + u[sch, 0] + u[sch, 1] * year + c[child]
         + rng.normal(0.0, 0.6, len(child)))
    return pd.DataFrame({"y": y, "year": year, "z": z, "school": [f"s{s}" for s in sch],
                         "child": [f"c{i}" for i in child_in[child]]})
