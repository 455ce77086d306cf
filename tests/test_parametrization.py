"""Automatic centred / non-centred choice per factor (backends.parametrization)."""

import numpy as np
import pandas as pd

import bayes_hlm as bh
from bayes_hlm.backends.parametrization import (INFORMATIVE, _residuals, choose_centering,
                                                term_information)
from bayes_hlm.spec.build import build_spec


def _design(formula, data):
    return build_spec(formula, data).design


def test_intercept_ratio_is_the_one_way_anova_formula():
    rng = np.random.default_rng(0)
    n_g, G = 7, 30
    g = np.repeat(np.arange(G), n_g)
    y = rng.normal(0, 1.5, G)[g] + rng.normal(0, 1, G * n_g)
    design = _design("y ~ 1 + (1|g)", pd.DataFrame({"y": y, "g": g}))
    e = y - y.mean()
    means = np.bincount(g, e) / n_g
    within = np.sum((e - means[g]) ** 2) / (G * n_g - G)
    tau2 = means.var(ddof=1) - within / n_g
    expected = n_g * tau2 / within
    np.testing.assert_allclose(term_information(design.groups[0], _residuals(design)), [expected],
                               rtol=1e-10)


def test_weak_slope_next_to_strong_intercept_is_not_centred():
    # strong intercepts (ratio ~ 40 * 4 / 1), no slope variation at all
    sim = bh.datasets.simulate(n_groups=60, rows_per_group=40, group_sd=(2.0, 0.0), sigma=1.0, seed=3)
    design = _design(sim.formula, sim.data)
    ratios = term_information(design.groups[0], _residuals(design))
    assert ratios[0] > 10 * INFORMATIVE and ratios[1] < 1.0
    assert choose_centering(design) == {"g": False}
    d1 = _design("y ~ x + (1|g)", sim.data)
    assert choose_centering(d1) == {"g": True}


def test_uncorrelated_terms_of_one_factor_decide_together():
    sim = bh.datasets.simulate(n_groups=60, rows_per_group=40, group_sd=(2.0, 0.0), sigma=1.0, seed=3)
    assert choose_centering(_design("y ~ x + (x || g)", sim.data)) == {"g": False}


def test_too_few_rows_per_level_is_non_centred():
    # two rows per level for an intercept and a slope: no residual dof within any level
    # but the last, so no spread of per-level estimates to compare
    rng = np.random.default_rng(1)
    g = np.r_[np.arange(20) // 2, np.full(10, 10)]
    df = pd.DataFrame({"y": rng.normal(size=30), "x": rng.normal(size=30), "g": g})
    design = _design("y ~ 1 + (x|g)", df)
    np.testing.assert_array_equal(term_information(design.groups[0], _residuals(design)), [0.0, 0.0])
    assert choose_centering(design) == {"g": False}


def test_reference_data_choices():
    ss = _design("Reaction ~ Days + (Days | Subject)", bh.datasets.load("sleepstudy"))
    assert choose_centering(ss) == {"Subject": True}
    hsb = _design("mAch ~ cses + meanses + sector + (cses | school)", bh.datasets.load("hsb82"))
    assert choose_centering(hsb) == {"school": False}
    pen = _design("diameter ~ 1 + (1|plate) + (1|sample)", bh.datasets.load("penicillin"))
    assert choose_centering(pen) == {"plate": False, "sample": True}
