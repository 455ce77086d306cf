"""Reports for generalized fits (#15): discrete posterior predictive checks, link-scale shrinkage,
family/link/scale labels, response-scale conditional effects and the HTML report per family."""

import re
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from scipy.special import expit, logit  # noqa: E402

import bayes_hlm as bh  # noqa: E402
from bayes_hlm import reporters as rp  # noqa: E402
from bayes_hlm.errors import BayesHLMError  # noqa: E402
from bayes_hlm.families import get_family  # noqa: E402
from bayes_hlm.reporters import ppc_discrete as ppd  # noqa: E402
from bayes_hlm.results import glm_pooling  # noqa: E402

# PyMC's NUTS: these tests are about the plots, on a sampler whose posteriors are known good
KW = dict(chains=2, draws=150, tune=150, progressbar=False, warn=False, sampler="pymc")


def _fit(formula, data, family, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bh.fit(formula, data, family=family, seed=seed, **KW)


def _sim_bernoulli(G=20, m=15, seed=4):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(G), m)
    x = rng.normal(size=G * m)
    b0, b1 = rng.normal(0, 0.8, G), rng.normal(0, 0.4, G)
    y = rng.random(G * m) < expit(-0.2 + 0.7 * x + b0[g] + b1[g] * x)
    return pd.DataFrame({"y": pd.Categorical(np.where(y, "yes", "no"), ["no", "yes"]), "x": x,
                         "g": [f"g{i:02d}" for i in g]})


@pytest.fixture(scope="module")
def fits():
    grouse = bh.datasets.load("grouseticks")
    return {
        "bernoulli": _fit("y ~ x + (x | g)", _sim_bernoulli(), "bernoulli", 1),
        "binomial": _fit("cbind(incidence, size - incidence) ~ period + (1 | herd)", bh.datasets.load("cbpp"),
                         "binomial", 2),
        "poisson": _fit("TICKS ~ YEAR + cHEIGHT + (1 | LOCATION)", grouse, "poisson", 3),
        "negativebinomial": _fit("TICKS ~ YEAR + cHEIGHT + (1 | LOCATION)", grouse, "negativebinomial", 4),
    }


def _texts(ax_or_fig):
    fig = ax_or_fig if hasattr(ax_or_fig, "savefig") else ax_or_fig.figure
    out = [fig._suptitle.get_text()] if fig._suptitle else []
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        if ax.get_legend():
            out += [t.get_text() for t in ax.get_legend().get_texts()]
    return " | ".join(out)


# ------------------------------------------------------------------ data-level PPC functions
def test_count_frequencies_counts_each_value():
    y = np.array([0, 0, 1, 3, 3, 3])
    yrep = np.array([[0, 1, 1, 2, 3, 9], [0, 0, 0, 0, 0, 0]])
    k, obs, rep = ppd.count_frequencies(y, yrep, max_count=4)
    assert list(k) == [0, 1, 2, 3, 4]
    assert list(obs) == [2, 1, 0, 3, 0]
    assert list(rep[0]) == [1, 2, 1, 1, 0] and list(rep[1]) == [6, 0, 0, 0, 0]  # 9 is past the cut
    # absurd replicates (a broken posterior) are cut at 3 * max(y) + 10, not allocated
    k, _, rep = ppd.count_frequencies(y, np.full((2, 6), 1e24))
    assert k[-1] == 19 and rep.sum() == 0


def test_rootogram_hangs_observed_from_expected():
    rng = np.random.default_rng(0)
    y = rng.poisson(2.0, 500)
    yrep = rng.poisson(2.0, (100, 500))
    ax = ppd.plot_rootogram(y, yrep, title="t")
    assert isinstance(ax, Axes)
    k, obs, rep = ppd.count_frequencies(y, yrep)
    bars = ax.patches[:len(k)]
    bottoms = np.array([b.get_y() for b in bars])
    heights = np.array([b.get_height() for b in bars])
    np.testing.assert_allclose(heights, np.sqrt(obs))
    np.testing.assert_allclose(bottoms + heights, np.sqrt(rep.mean(0)))  # top at the expected
    assert np.all(np.abs(bottoms[:6]) < 2.5)  # a right model: bars end near the zero line
    # one interval throughout the package (95%), named in the legend
    assert any("95% interval" in t.get_text() for t in ax.get_legend().get_texts())
    bars_ax = ppd.plot_ppc_bars(y, yrep)
    assert any("95% interval" in t.get_text() for t in bars_ax.get_legend().get_texts())
    plt.close("all")
    ax = ppd.plot_ppc_bars(y, yrep)
    assert isinstance(ax, Axes) and len(ax.patches) == len(k)
    plt.close("all")


def test_calibration_table_detects_miscalibration():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.05, 0.95, 4000)
    y = (rng.random(p.size) < p).astype(float)
    yrep = (rng.random((300, p.size)) < p).astype(float)
    tab = ppd.calibration_table(y, p, yrep, n_bins=10)
    assert len(tab) == 10 and tab["rows"].sum() == 4000
    np.testing.assert_allclose(tab["predicted"], tab["observed"], atol=0.06)
    inside = (tab["observed"] >= tab["rep_low"]) & (tab["observed"] <= tab["rep_high"])
    assert inside.mean() >= 0.8
    # predictions pulled towards 0.5: the extreme bins fall outside their intervals
    q = 0.5 + 0.5 * (p - 0.5)
    bad = ppd.calibration_table(y, q, (rng.random((300, p.size)) < q).astype(float), n_bins=10)
    off = (bad["observed"] < bad["rep_low"]) | (bad["observed"] > bad["rep_high"])
    assert off.iloc[0] and off.iloc[-1]
    # binomial rows: proportion = successes / trials over the bin
    t = np.array([10, 10, 20, 20])
    tab = ppd.calibration_table(np.array([1, 3, 10, 12]), np.array([0.1, 0.2, 0.5, 0.6]), trials=t, n_bins=2)
    np.testing.assert_allclose(tab["observed"], [4 / 20, 22 / 40])
    np.testing.assert_allclose(tab["predicted"], [(1 + 2) / 20, (10 + 12) / 40])
    ax = ppd.plot_calibration(y, p, yrep)
    assert isinstance(ax, Axes)
    plt.close("all")


# ------------------------------------------------------------------ link-scale no pooling
def test_irls_matches_binomial_mle():
    from scipy.optimize import minimize

    rng = np.random.default_rng(2)
    X = np.column_stack([np.ones(200), rng.normal(size=200)])
    t = rng.integers(1, 8, 200).astype(float)
    s = rng.binomial(t.astype(int), expit(0.3 - 0.8 * X[:, 1]))
    b = glm_pooling.irls(X, s / t, get_family("binomial"), None, t)
    nll = lambda w: -np.sum(s * (X @ w) - t * np.logaddexp(0, X @ w))  # noqa: E731
    ref = minimize(nll, np.zeros(2), method="BFGS").x
    np.testing.assert_allclose(b, ref, atol=1e-5)
    # Poisson with an offset
    off = rng.normal(size=200)
    y = rng.poisson(np.exp(0.5 + 0.4 * X[:, 1] + off))
    b = glm_pooling.irls(X, y.astype(float), get_family("poisson"), off)
    ref = minimize(lambda w: -np.sum(y * (X @ w + off) - np.exp(X @ w + off)), np.zeros(2), method="BFGS").x
    np.testing.assert_allclose(b, ref, atol=1e-4)
    assert np.isnan(glm_pooling.irls(np.ones((3, 2)), np.ones(3) * 0.5, get_family("bernoulli"))).all()


def test_no_pooling_is_the_empirical_logit(fits):
    """Intercept of a per-herd GLM with the period effects held at their posterior means and
    half a pseudo-success and pseudo-failure spread over the herd's rows: it solves that GLM's
    score equation; without other predictors it is the empirical logit log((s+1/2)/(f+1/2))."""
    m = fits["binomial"]
    tab = rp.shrinkage_table(m)
    d = bh.datasets.load("cbpp")
    beta = m.fixef()["mean"]
    held = d["period"].astype(str).map({"1": 0.0, "2": beta["period2"], "3": beta["period3"],
                                        "4": beta["period4"]}).astype(float)
    for herd in ["1", "5", "13"]:
        r = d[d["herd"] == herd]
        a = tab.loc[(herd, "Intercept"), "no_pool"]
        p = expit(a + held[r.index].to_numpy())
        score = np.sum(r["incidence"] + 0.5 / len(r) - (r["size"] + 1 / len(r)) * p)
        assert abs(score) < 1e-6
    assert np.isfinite(tab["no_pool"]).all()  # herds without a case too
    # intercept only: the classical empirical logit
    X = np.ones((4, 1))
    s, t = np.array([0, 0, 1, 0]), np.array([5, 3, 4, 2])
    fam = get_family("binomial")
    b = glm_pooling.irls(X, (s + 0.5 / 4) / (t + 1 / 4), fam, None, t + 1 / 4)  # as no_pooling_glm spreads it
    assert b[0] == pytest.approx(np.log((1 + 0.5) / (13 + 0.5)), abs=1e-8)


def test_shrinkage_and_caterpillar_are_labelled_on_the_link_scale(fits):
    ax = rp.plot_shrinkage(fits["binomial"])
    txt = _texts(ax)
    assert "log-odds (logit link)" in ax.get_xlabel() and "binomial family, logit link" in ax.get_title()
    assert "empirical logit" in txt and "continuity correction" in txt
    plt.close("all")
    ax = rp.plot_shrinkage(fits["poisson"])
    assert "log rate (log link)" in ax.get_xlabel() and "poisson family, log link" in ax.get_title()
    plt.close("all")
    ax = rp.plot_shrinkage_2d(fits["bernoulli"])
    assert "log-odds" in ax.get_xlabel() and "log-odds" in ax.get_ylabel()
    plt.close("all")
    fig = rp.plot_caterpillar(fits["negativebinomial"])
    assert "negativebinomial family, log link" in fig._suptitle.get_text()
    assert "log rate (log link)" in fig.axes[0].get_xlabel()
    plt.close("all")
    # Gaussian plots keep their labels (no scale suffix)
    tab = rp.shrinkage_table(fits["bernoulli"])
    assert tab["no_pool"].notna().sum() >= 0.9 * len(tab)


# ------------------------------------------------------------------ pp_check by family
@pytest.mark.parametrize("family,kind", [("bernoulli", "calibration"), ("binomial", "calibration"),
                                         ("poisson", "rootogram"), ("negativebinomial", "rootogram")])
def test_pp_check_chooses_by_family(fits, family, kind):
    m = fits[family]
    ax = m.pp_check(ndraws=40)
    assert isinstance(ax, Axes)
    title = ax.get_title()
    assert kind in title and f"{family} family" in title and "link" in title
    plt.close("all")
    other = "bars" if kind == "rootogram" else "bars"
    assert other in m.pp_check(kind=other, ndraws=20).get_title()
    plt.close("all")


def test_calibration_refused_for_counts(fits):
    with pytest.raises(BayesHLMError, match="calibration plot needs a bernoulli or binomial"):
        fits["poisson"].pp_check(kind="calibration")


def test_trace_shows_the_family_parameter(fits):
    fig = rp.plot_trace(fits["negativebinomial"])
    assert "alpha" in [ax.get_title(loc="left") for ax in fig.axes]
    plt.close("all")


# ------------------------------------------------------------------ response-scale conditional effects
def test_conditional_effects_on_the_response_scale(fits):
    m = fits["bernoulli"]
    tab = m.conditional_effects("x")
    assert tab["estimate"].between(0, 1).all() and (tab["lower"] <= tab["estimate"]).all()
    assert tab["estimate"].is_monotonic_increasing  # positive slope on the logit scale
    ax = m.plot_conditional_effects("x")
    assert ax.get_ylabel() == "P(y = yes)" and "bernoulli family, logit link" in ax.get_title()
    assert "observed proportion (binned)" in _texts(ax)
    plt.close("all")
    ax = fits["poisson"].plot_conditional_effects("cHEIGHT", "YEAR")
    assert ax.get_ylabel() == "expected TICKS" and "response scale" in ax.get_title()
    plt.close("all")
    ax = fits["binomial"].plot_conditional_effects("period")
    assert ax.get_ylabel() == "P(incidence) per trial"
    ys = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections if hasattr(c, "get_offsets")])
    assert ys.max() <= 1.0  # observed proportions, not counts
    plt.close("all")


# ------------------------------------------------------------------ HTML report for each family
@pytest.mark.parametrize("family", ["bernoulli", "binomial", "poisson", "negativebinomial"])
def test_report_for_each_family(fits, family, tmp_path):
    m = fits[family]
    written = rp.write_plots(m, tmp_path, dpi=40)
    html = written["report"].read_text()
    link = m.spec.family.link.name
    assert f"Family <code>{family}</code>, link <code>{link}</code>" in html
    assert "not drawn" not in html, re.findall(r"<b>(\w+)</b>: not drawn \(([^)]*)", html)
    for name in ["forest", "caterpillar", "shrinkage", "ppc", "variance", "conditional_effects", "trace"]:
        assert written[name].read_bytes()[:4] == b"\x89PNG", name
    assert "group_lines" not in written  # linear-probability lines do not belong to a GLMM report
    assert "latent scale" in html and ("rootogram" in html or "calibration" in html)
    plt.close("all")
