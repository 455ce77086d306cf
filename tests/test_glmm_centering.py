"""Centring of generalized models' group effects: level-2 predictors keep a factor non-centred.

verbagg (binary, 316 persons x 24 items) has person-level (Anger, Gender) and item-level
(btype, situ) predictors; with both factors centred the compiled engine's chains stuck
(R-hat 1.85, min ESS 6 at the defaults), non-centred they mix (R-hat 1.009, min ESS 416).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayes_hlm as bh
from bayes_hlm.backends.parametrization import choose_centering
from bayes_hlm.families import get_family
from bayes_hlm.spec.build import build_spec
from bayes_hlm.statistics import constant_within_levels


def test_constant_within_levels():
    codes = np.array([0, 0, 1, 1, 2, 3])
    X = np.column_stack([[1, 1, 2, 2, 5, 7],            # one value per level
                         [1, 2, 3, 3, 4, 4],            # varies in level 0
                         [1e9, 1e9, 0, 0, 1, 1]])       # large scale, constant
    assert constant_within_levels(X, codes, 5).tolist() == [True, False, True]  # level 4 empty


def _binary(level2: bool, seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(40), 200)                   # 200 rows per level: well identified
    w = rng.normal(size=40)[g]                          # a level-2 predictor
    x = rng.normal(size=g.size)
    eta = 0.3 * x + 1.5 * rng.normal(size=40)[g] + (0.5 * w if level2 else 0)
    df = pd.DataFrame({"y": (rng.random(g.size) < 1 / (1 + np.exp(-eta))).astype(int),
                       "x": x, "w": w, "g": g})
    return df


@pytest.mark.parametrize("level2", [False, True])
def test_level2_predictor_keeps_the_factor_non_centred(level2):
    df = _binary(level2)
    f = "y ~ x + w + (1 | g)" if level2 else "y ~ x + (1 | g)"
    design = build_spec(f, df, family="bernoulli").design
    assert choose_centering(design, get_family("bernoulli")) == {"g": not level2}


def test_verbagg_factors_non_centred():
    d = bh.datasets.load("verbagg")
    design = build_spec("r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", d,
                        family="bernoulli").design
    assert choose_centering(design, get_family("bernoulli")) == {"id": False, "item": False}


@pytest.mark.slow
def test_verbagg_converges_at_defaults():
    d = bh.datasets.load("verbagg")
    m = bh.fit("r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", d,
               family="bernoulli", seed=1)
    dg = m.diagnostics()
    assert dg["divergences"] == 0 and dg["max_r_hat_all"] <= 1.01, dg


def _broods(seed=0, L=60):
    """Grouseticks' shape: counts of chicks in broods nested in locations (1-3 broods per
    location, 1-6 chicks per brood), a brood-level year and a location-level altitude."""
    rng = np.random.default_rng(seed)
    rows = []
    for loc in range(L):
        h = rng.normal()
        b_loc = rng.normal(0, 0.5)
        for br in range(rng.integers(1, 4)):
            year = rng.integers(0, 3)
            b_br = rng.normal(0, 0.8)
            for _ in range(rng.integers(1, 7)):
                eta = 1.0 + [0, 1.1, -1.0][year] - 0.5 * h + b_loc + b_br
                rows.append((f"l{loc}", f"l{loc}b{br}", str(year), h, rng.poisson(np.exp(eta))))
    df = pd.DataFrame(rows, columns=["loc", "brood", "year", "h", "y"])
    df["obs"] = [f"o{i}" for i in range(len(df))]
    return df


@pytest.mark.parametrize("olre", [False, True])
def test_nested_child_is_centred_on_its_parent_in_the_compiled_engine(olre):
    """Broods (well identified by their chicks' counts) are centred on their location's
    non-centred effect; an observation-level effect (one row per level, weak) neither is
    centred nor keeps its brood parent non-centred. PyMC's model keeps the old rule."""
    df = _broods()
    f = "y ~ year + h + (1 | loc) + (1 | brood)" + (" + (1 | obs)" if olre else "")
    fam = get_family("poisson")
    design = build_spec(f, df, family=fam).design
    want = {"loc": False, "brood": True} | ({"obs": False} if olre else {})
    assert choose_centering(design, fam, nested=True) == want
    assert not any(choose_centering(design, fam).values())


def test_grouseticks_centring():
    d = bh.datasets.load("grouseticks")
    fam = get_family("poisson")
    design = build_spec("TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION) + (1 | INDEX)", d,
                        family=fam).design
    assert choose_centering(design, fam, nested=True) == {"BROOD": True, "LOCATION": False,
                                                          "INDEX": False}
