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
