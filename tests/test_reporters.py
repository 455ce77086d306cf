"""Every plot renders headless from a real (small) fit; the HTML report is self-contained."""

import base64
import re
import sys
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from test_compare_reml import FixtureReml, real_or_stub  # noqa: E402

from bayes_hlm import reporters as rp  # noqa: E402


@pytest.fixture(scope="module")
def ref(sleep_fit):
    return real_or_stub(sleep_fit, "sleep_rs")


@pytest.fixture(scope="module")
def ri_fit(sleepstudy):
    """Random-intercept model: one term per group (no 2-D shrinkage, no correlations)."""
    import bayes_hlm as bh

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bh.fit("Reaction ~ Days + (1 | Subject)", sleepstudy, method="full", chains=2,
                      draws=200, tune=200, seed=3, progressbar=False)


def _png(obj) -> bytes:
    import io

    fig = obj if isinstance(obj, Figure) else obj.figure
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)
    plt.close(fig)
    return buf.getvalue()


PLOTS = {
    "shrinkage": lambda r, ref: rp.plot_shrinkage(r, ref),
    "shrinkage_slope": lambda r, ref: rp.plot_shrinkage(r, ref, term="Days"),
    "shrinkage_2d": lambda r, ref: rp.plot_shrinkage_2d(r, ref),
    "caterpillar": lambda r, ref: rp.plot_caterpillar(r, ref),
    "group_lines": lambda r, ref: rp.plot_group_lines(r, "Days", levels=["308", "309", "310"]),
    "spaghetti": lambda r, ref: rp.plot_spaghetti(r, "Days", n_draws=10, levels=["308", "309"]),
    "variance": lambda r, ref: rp.plot_variance_distributions(r, ref, max_draws=200),
    "forest": lambda r, ref: rp.plot_forest(r, ref),
    "ppc": lambda r, ref: rp.plot_ppc(r, n_draws=20),
    "trace": lambda r, ref: rp.plot_trace(r),
    "rank": lambda r, ref: rp.plot_rank(r),
    "energy": lambda r, ref: rp.plot_energy(r),
}


@pytest.mark.parametrize("name", list(PLOTS))
def test_plot_renders(name, sleep_fit, ref):
    out = PLOTS[name](sleep_fit, ref)
    assert isinstance(out, (Figure, Axes))
    png = _png(out)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000


def test_plots_draw_reml_marks(sleep_fit, ref):
    ax = rp.plot_shrinkage(sleep_fit, ref)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "REML BLUP" in labels and "no pooling (OLS per group)" in labels
    assert len(ax.get_yticks()) == 18
    fig = rp.plot_variance_distributions(sleep_fit, ref, max_draws=200)
    legends = [t.get_text() for a in fig.axes if a.get_legend() for t in a.get_legend().get_texts()]
    assert any(s.startswith("REML 0.72") for s in legends)  # ICC 0.7217 (performance::icc)
    plt.close("all")


def test_random_intercept_model(ri_fit):
    ref = real_or_stub(ri_fit, "sleep_ri")
    fig = rp.plot_caterpillar(ri_fit, ref)
    assert len(fig.axes) == 1
    _png(fig)
    _png(rp.plot_forest(ri_fit, ref))
    from bayes_hlm.errors import BayesHLMError

    with pytest.raises(BayesHLMError, match="two"):
        rp.plot_shrinkage_2d(ri_fit, ref)


def test_plots_without_reml_engine(sleep_fit, monkeypatch):
    monkeypatch.setitem(sys.modules, "bayes_hlm.reml", None)
    _png(rp.plot_shrinkage(sleep_fit))
    _png(rp.plot_forest(sleep_fit))
    tab = rp.shrinkage_table(sleep_fit)
    assert tab["blup"].isna().all() and tab["post_mean"].notna().all()


def test_simpson_without_fit():
    d = rp.simpson_toy()
    pooled = np.polyfit(d["x"], d["y"], 1)[0]
    within = [np.polyfit(g["x"], g["y"], 1)[0] for _, g in d.groupby("group", observed=True)]
    assert pooled > 0 and all(s < 0 for s in within)
    ax = rp.plot_simpson(d, "x", "y", "group")
    assert len(ax.get_lines()) == 4  # 3 groups + pooled
    _png(ax)


def test_tab_model(sleep_fit, ref):
    t = rp.tab_model(sleep_fit, ref)
    idx = list(t.frame.index)
    for lab in ["Intercept", "Days", "σ²", "τ00 Subject", "τ11 Subject.Days", "ρ01 Subject", "ICC",
                "N Subject", "Observations", "Marginal R² / Conditional R²"]:
        assert lab in idx
    assert t.frame.loc["Intercept", "Estimate (REML)"] == "251.41"
    assert t.frame.loc["N Subject", "Estimate (Bayes)"] == "18"
    assert "<table class='tabmodel'>" in t._repr_html_()


def test_write_plots_and_report(sleep_fit, ref, tmp_path):
    written = rp.write_plots(sleep_fit, tmp_path / "plots", reml_result=ref, dpi=40)
    for name in ["forest", "caterpillar", "shrinkage", "shrinkage_2d", "group_lines", "variance", "ppc",
                 "trace", "rank", "energy"]:
        assert written[name].read_bytes()[:4] == b"\x89PNG"
    html = written["report"].read_text()
    assert "Reaction ~ Days + (Days | Subject)" in html
    assert "τ00 Subject" in html and "Priors" in html and "HalfNormal" in html
    assert "not drawn" not in html
    imgs = re.findall(r"src='data:image/png;base64,([^']+)'", html)
    assert len(imgs) >= 10 and base64.b64decode(imgs[0])[:4] == b"\x89PNG"
    assert not re.search(r"src=['\"]https?:", html)  # self-contained


def test_report_warns_on_singular_reml(sleep_fit, tmp_path):
    import dataclasses

    def Singular():  # noqa: N802 - was a FixtureReml subclass; the reference is typed now
        return dataclasses.replace(FixtureReml("sleep_rs").reference(), singular=True)

    import bayes_hlm.reporters.report_html as rh

    html = rh.build_report(sleep_fit, Singular(), plots={})
    assert "singular" in html and "Diagnostics" in html
    out = rp.write_report(sleep_fit, tmp_path / "r" / "report.html", reml_result=Singular())
    assert out.exists() and "<img" in out.read_text()


# ---------------------------------------------------------------- issue 18 items 3, 10
STORAGE_NAMES = ("fixed", "sd__", "corr__", "r__", "sigma__")


def _texts(fig):
    out = [fig._suptitle.get_text()] if fig._suptitle else []
    for ax in fig.axes:
        out += [ax.get_title(loc) for loc in ("left", "center", "right")]
        out += [ax.get_xlabel(), ax.get_ylabel()] + [t.get_text() for t in ax.get_yticklabels()]
    return [t for t in out if t]


@pytest.mark.parametrize("name", ["trace", "rank", "forest"])
def test_panels_use_user_facing_names(name, sleep_fit, ref):
    fig = PLOTS[name](sleep_fit, ref)
    fig = fig if isinstance(fig, Figure) else fig.figure
    texts = _texts(fig)
    assert not [t for t in texts if any(t == s or t.startswith(s) for s in STORAGE_NAMES)], texts
    if name != "forest":
        for label in ("Intercept", "Days", "sd(Intercept | Subject)", "sd(Days | Subject)",
                      "cor(Intercept, Days | Subject)", "sigma"):
            assert label in texts
    plt.close("all")


def test_report_uses_95_percent_throughout(sleep_fit, ref):
    import bayes_hlm.reporters.report_html as rh

    specs = rh.plot_specs(sleep_fit, ref)
    captions = " ".join(c for _, c, _ in specs)
    assert "94%" not in captions and "95%" in captions
    html = rh.build_report(sleep_fit, ref, plots={})
    assert "94%" not in html and "95% HDI" in html
    for needle in ("R-hat", "Bulk ESS", "Tail ESS", "gaussian", "identity", "matplotlib", "numpy",
                   "Divergent transitions"):
        assert needle in html
    assert "{'" not in html and "max_r_hat" not in html  # a table, not a dict dump
    fig = rp.plot_group_lines(sleep_fit, "Days", levels=["308"], prob=rh.PROB)
    assert "95%" in fig._suptitle.get_text()
    plt.close("all")


def test_singular_boundary_rows_have_no_diff(sleep_fit):
    import pandas as pd

    import bayes_hlm.reporters.report_html as rh

    frame = pd.DataFrame({"kind": ["fixed", "sd", "corr"], "mean": [250.0, 3.0, 0.1], "median": [250.0, 3.0, 0.1],
                          "hdi_low": [240.0, 0.1, -0.8], "hdi_high": [260.0, 6.0, 0.9], "reml": [251.0, 0.0, np.nan],
                          "reml_se": [7.0, np.nan, np.nan], "diff_in_post_sd": [-0.2, 3.35, np.nan]},
                         index=["(Intercept)", "sd(Days | Subject)", "cor(Intercept, Days | Subject)"])
    html = rh.compare_table(frame, singular=True)
    assert "3.35" not in html and "-3.35" not in html and "at boundary*" in html and "-0.20" in html
    assert "3.35" in rh.compare_table(frame, singular=False)


def test_degenerate_r2_panel_skipped():
    from bayes_hlm.reporters.distributions import degenerate

    assert degenerate(np.full(100, 1e-30) * np.random.default_rng(0).random(100))
    assert not degenerate(np.random.default_rng(0).random(100))


def test_reflected_kde_matches_arviz_and_keeps_mass_at_bound():
    """Boundary-corrected like ArviZ: an SD posterior piling up at 0 is drawn high at 0."""
    from arviz_stats.base import array_stats

    from bayes_hlm.reporters._kde import kde, silverman_bw

    x = np.abs(np.random.default_rng(1).normal(size=4000))  # half-normal: density max at 0
    grid, pdf = kde(x, lower=0.0, lims=(0.0, x.max()))
    assert grid[0] == 0 and pdf[0] > 0.7  # true density 0.80 at 0; uncorrected KDE ~0.4
    g0, p0, _ = array_stats.kde(x, bw=float(silverman_bw(x)), custom_lims=(0.0, x.max()), bound_correction=True)
    assert np.max(np.abs(np.interp(g0, grid, pdf) - p0)) < 0.03
    assert abs(np.trapezoid(pdf, grid) - 1) < 0.01


@pytest.mark.parametrize("kind", ["dens_overlay", "hist", "stat"])
def test_pp_check_returns_axes(kind, sleep_fit):
    ax = sleep_fit.pp_check(kind=kind, ndraws=10)
    assert isinstance(ax, Axes) and kind in ax.get_title()
    plt.close("all")
    from bayes_hlm.errors import BayesHLMError

    with pytest.raises(BayesHLMError, match="dens_overlay"):
        sleep_fit.pp_check(kind="nope")


def test_shrinkage_compares_like_with_like_with_level2_predictor(sleepstudy):
    """A per-group OLS intercept absorbs a level-2 predictor (constant within the group) that
    the model's intercept does not: the plot takes its fitted part off (hsb82's meanses/sector)."""
    import bayes_hlm as bh
    from bayes_hlm.reporters import shrinkage as sh

    data = sleepstudy.copy()
    subj = data["Subject"].astype(str)
    w = {s: 100.0 + i for i, s in enumerate(sorted(subj.unique()))}
    data["w"] = subj.map(w).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = bh.fit("Reaction ~ Days + w + (1 | Subject)", data, method="full", chains=1, draws=150,
                   tune=150, seed=5, progressbar=False)
    names, part = sh.level2_columns(m, "Subject")
    assert names == ["w"] and np.ptp(part) > 0
    raw = rp.shrinkage_table(m, None, "Subject").xs("Intercept", level="term")
    adj = sh._table(m, None, "Subject", 0.95).xs("Intercept", level="term")
    gap_raw = abs((raw["no_pool"] - raw["post_mean"]).mean())
    gap_adj = abs((adj["no_pool"] - adj["post_mean"]).mean())
    assert gap_adj < 0.1 * gap_raw
    ax = rp.plot_shrinkage(m, None)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("minus the fitted w part" in s for s in labels)
    plt.close("all")
