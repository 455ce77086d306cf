"""Centring of generalized models' group effects: level-2 predictors keep a factor non-centred.

verbagg (binary, 316 persons x 24 items) has person-level (Anger, Gender) and item-level
(btype, situ) predictors; with both factors centred on the intercept the compiled engine's
chains stuck (R-hat 1.85, min ESS 6 at the defaults), non-centred they mix (R-hat 1.009, min
ESS 416). The compiled engine now centres both with only one of them on the intercept
(glmm_density._split_intercept; min ESS ~4000 at 15 steps per draw); PyMC keeps the old rule.
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


# --------------------------------------------------------------------------- #
# crossed centred factors: only one is centred on the intercept (glmm_density._split_intercept)
# --------------------------------------------------------------------------- #
VERBAGG = "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)"


def test_verbagg_factors_centred_on_the_compiled_engine():
    """Both factors are well identified (link-scale ratios 6.5 and 9.8); with the intercept
    split (``crossed``) their level-2 predictors no longer keep them non-centred."""
    d = bh.datasets.load("verbagg")
    design = build_spec(VERBAGG, d, family="bernoulli").design
    fam = get_family("bernoulli")
    assert choose_centering(design, fam, nested=True, crossed=True) == {"id": True, "item": True}
    assert choose_centering(design, fam, nested=True) == {"id": False, "item": False}


def test_crossed_rule_counts_factors_outside_nests_only():
    """The split needs two centred crossed factors outside any nest: next to a nest (h / k:
    h's parent non-centred, k centred on it) the person factor g keeps the level-2 rule."""
    d = _crossed_l2()
    d["k"] = d["h"] + "_" + (np.arange(len(d)) % 2).astype(str)
    fam = get_family("bernoulli")
    cases = {"y ~ x + w + v + (1 | g) + (1 | h)": {"g": True, "h": True},
             "y ~ x + w + v + (1 | g) + (1 | h/k)": {"g": False, "h": False, "h:k": True}}
    for f, want in cases.items():
        design = build_spec(f, d, family="bernoulli").design
        assert choose_centering(design, fam, nested=True, crossed=True) == want, f
        assert not choose_centering(design, fam, nested=True)["g"]


def _crossed_l2(seed=0, G=14, H=6, m=8):
    """Binary rows of G persons x H items (m replicates), a person-level w (continuous, mean
    far from 0), an item-level v and a row-level x."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(G), H * m)
    h = np.tile(np.repeat(np.arange(H), m), G)
    w = (5.0 + rng.normal(size=G))[g]
    v = np.array(["a", "b", "c"])[np.arange(H) % 3][h]
    x = rng.normal(size=g.size)
    eta = (-0.3 + 0.4 * (w - 5) + 0.3 * x + np.array([0, 0.5, -0.5])[np.arange(H) % 3][h]
           + rng.normal(0, 1.0, G)[g] + rng.normal(0, 0.6, H)[h])
    return pd.DataFrame({"y": (rng.random(g.size) < 1 / (1 + np.exp(-eta))).astype(int),
                         "x": x, "w": w, "v": v, "g": [f"g{i}" for i in g],
                         "h": [f"h{i}" for i in h]})


@pytest.mark.parametrize("formula", ["y ~ x + w + v + (1 | g) + (1 | h)",
                                     "y ~ x + v + (1 | g) + (1 | h)",
                                     "y ~ x + w + v + (x | g) + (1 | h)"])
def test_split_intercept_is_a_change_of_variables(formula):
    """Both crossed factors centred: only the owner (fewest levels, h) is centred on the
    intercept and on the other factor's level-2 means; the other on its own level-2
    predictors minus their mean. The density at x equals the non-centred one at the same
    (beta, b) up to the Jacobian, ``constrained`` returns that b, and the gradient is exact."""
    from bayes_hlm.backends import glmm_density as gd
    from bayes_hlm.fitting.problem import build_problem

    d = _crossed_l2()
    fam = get_family("bernoulli")
    pr = build_problem(formula, d, family=fam, method="full")
    design = pr.design
    pk = gd.pack(design, pr.fit_priors, fam, {"g": True, "h": True})
    nc = gd.pack(design, pr.fit_priors, fam, {})
    lay = {design.groups[lt.term].factor: lt for lt in pk.terms}
    ig = design.groups[pk.terms.index(lay["g"])].terms.index("Intercept")
    assert lay["g"].fixed_cols[ig] == -1 and lay["h"].fixed_cols[0] >= 0   # h owns it
    if "w +" in formula:  # g's level-2 w, centred on its mean over g's levels
        assert np.allclose(lay["g"].l2[2].mean(axis=0), 0.0)
        assert set(lay["g"].l2[1]) <= set(lay["h"].l2[1])  # h carries w's mean
    rng = np.random.default_rng(3)
    tmp, grad = np.empty(pk.ndim), np.empty(pk.ndim)
    for _ in range(3):
        x = pk.init + rng.normal(0, 0.3, pk.ndim)
        v = gd.constrained(pk, pr.fit_priors, design, x[None])
        x2 = x.copy()  # same fixed effects, SDs and correlations; effects as z = L^-1 b
        jac = 0.0
        for lt, lt2 in zip(pk.terms, nc.terms):
            f = design.groups[lt.term].factor
            b = v["factors"][f]["b"][0]
            sd = v["factors"][f]["sd"][0]
            L = sd[:, None] * np.linalg.cholesky(v["factors"][f]["corr"][0])
            x2[lt2.eff_x:lt2.eff_x + lt.levels * lt.q] = np.linalg.solve(L, b.T).T.ravel()
            jac += lt.levels * np.sum(np.log(np.diag(L)))
        np.testing.assert_allclose(gd.logp_grad(x, pk.buf, tmp),
                                   gd.logp_grad(x2, nc.buf, tmp) - jac, rtol=1e-10)
        gd.logp_grad(x, pk.buf, grad)
        h = 1e-6
        fd = np.array([(gd.logp_grad(x + h * e, pk.buf, tmp) - gd.logp_grad(x - h * e, pk.buf, tmp))
                       / (2 * h) for e in np.eye(pk.ndim)])
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5)


def test_split_intercept_leaves_one_centred_factor_alone():
    """One centred factor (the other non-centred) or a nested pair: no split."""
    from bayes_hlm.backends import glmm_density as gd
    from bayes_hlm.fitting.problem import build_problem

    d = _crossed_l2()
    fam = get_family("bernoulli")
    pr = build_problem("y ~ x + w + v + (1 | g) + (1 | h)", d, family=fam, method="full")
    pk = gd.pack(pr.design, pr.fit_priors, fam, {"g": True})
    lt = next(t for t in pk.terms if t.centered)
    assert lt.fixed_cols == [pr.design.fixed_names.index("Intercept")]
    assert not np.allclose(lt.l2[2].mean(axis=0), 0.0)  # w as it is (mean ~5)


def test_split_intercept_posterior_equals_pymc_full_model():
    """End to end: both crossed factors centred with the intercept split (the compiled
    engine) against PyMC's full model with both non-centred: every scalar, incl. every
    person and item effect, within 4 combined MCSE in mean and SD."""
    import warnings

    from posterior_compare import all_scalars, disagreements

    d = _crossed_l2(seed=2)
    f = "y ~ x + w + v + (1 | g) + (1 | h)"
    kw = dict(chains=2, draws=1000, tune=800, warn=False, progressbar=False, target_accept=0.95)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = bh.fit(f, d, family="bernoulli", centered={"g": True, "h": True}, seed=3, **kw)
        ref = bh.fit(f, d, family="bernoulli", method="full", sampler="pymc", centered={}, seed=4,
                     **kw)
    assert (ours.info.method, ours.info.sampler) == ("full", "numba")
    assert ours.info.extra["centered"] == {"g": True, "h": True}
    assert len(all_scalars(ours)) >= 14 + 6 + 6
    bad = disagreements(ref, ours)
    assert bad.empty, bad
