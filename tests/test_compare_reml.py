"""compare_reml / shrinkage_table: values line up with lme4, exports render."""

import json
import os

import numpy as np
import pandas as pd
import pytest

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "lme4_reference.json")


class FixtureReml:
    """The pinned lme4 fixture values; :meth:`reference` makes the typed reference from them."""

    def __init__(self, case: str):
        with open(FIXTURES) as fh:
            c = json.load(fh)["cases"][case]
        self._c = c
        self.sigma = c["sigma"]
        self.singular = bool(c["singular"])
        self.reml_criterion = c["reml_criterion"]

    def fixef(self):
        return pd.DataFrame(self._c["fixed"]).T[["estimate", "se", "df", "t", "p"]].rename_axis("term")

    def varcorr(self):
        rows = []
        for g, v in self._c["varcorr"].items():
            if g == "Residual":
                rows.append(dict(group="Residual", term="", term_b="", sd=v["sd"], variance=v["var"], corr=np.nan))
                continue
            for t, s in v["sd"].items():
                rows.append(dict(group=g, term=t, term_b="", sd=s, variance=s**2, corr=np.nan))
            for k, r in (v.get("cor") or {}).items():
                a, b = k.split(",")
                rows.append(dict(group=g, term=a, term_b=b, sd=np.nan, variance=np.nan, corr=r))
        return pd.DataFrame(rows)

    def ranef(self):
        out = {}
        for g, v in self._c["ranef"].items():
            idx = pd.MultiIndex.from_product([v["levels"], v["terms"]], names=["level", "term"])
            mode = np.column_stack([v["condval"][t] for t in v["terms"]]).ravel()
            csd = np.column_stack([v["condsd"][t] for t in v["terms"]]).ravel()
            out[g] = pd.DataFrame({"mode": mode, "cond_sd": csd}, index=idx)
        return out

    def icc(self):
        return self._c["performance"]["icc_adjusted"]

    def r2(self):
        p = self._c["performance"]
        return {"r2_marginal": p["r2_marginal"], "r2_conditional": p["r2_conditional"]}

    def reference(self):
        """The lme4 values as the typed reference comparisons take (no duck typing)."""
        from bayes_hlm.results.reference import FrequentistReference

        r2 = self.r2()
        return FrequentistReference(
            engine="lme4 fixture", method="REML", fixef=self.fixef(), varcorr=self.varcorr(),
            sigma=self.sigma, icc=self.icc(), r2_marginal=r2["r2_marginal"],
            r2_conditional=r2["r2_conditional"], singular=self.singular, modes=self.ranef())


def real_or_stub(result, case):
    """The real REML fit when bayes_hlm.reml has landed, else the fixture stub."""
    try:
        from bayes_hlm.reml import reml

        return reml(result.spec)
    except ImportError:
        return FixtureReml(case).reference()


@pytest.fixture(scope="module")
def ref():
    return FixtureReml("sleep_rs").reference()


def test_compare_rows_and_values(sleep_fit, ref):
    from bayes_hlm.results.compare_reml import compare_reml

    tab = compare_reml(sleep_fit, ref)
    assert list(tab.index) == ["Intercept", "Days", "sd(Intercept | Subject)", "sd(Days | Subject)",
                               "cor(Intercept, Days | Subject)", "sigma", "ICC (adjusted)",
                               "R2 marginal", "R2 conditional"]
    assert {"mean", "median", "hdi_low", "hdi_high", "reml", "reml_se", "diff_in_post_sd"} <= set(tab.columns)
    assert tab.loc["Intercept", "reml"] == pytest.approx(251.405, abs=1e-3)
    assert tab.loc["Days", "reml_se"] == pytest.approx(1.546, abs=1e-3)
    assert np.isnan(tab.loc["sigma", "reml_se"])
    assert tab["reml"].notna().all()
    # diff_in_post_sd is what it says
    r = tab.loc["Days"]
    d = sleep_fit._draws.flat("fixed")[:, 1]
    assert r["diff_in_post_sd"] == pytest.approx((d.mean() - r["reml"]) / d.std(ddof=1))
    # the posterior agrees with REML on the fixed effects, within 1 posterior sd
    assert (tab.loc[["Intercept", "Days"], "diff_in_post_sd"].abs() < 1).all()
    assert (tab["hdi_low"] <= tab["median"]).all() and (tab["median"] <= tab["hdi_high"]).all()


def test_exports(sleep_fit, ref):
    from bayes_hlm.results.compare_reml import compare_reml

    tab = compare_reml(sleep_fit, ref)
    assert isinstance(tab, pd.DataFrame)
    html = tab._repr_html_()
    assert "<table" in html and "Days" in html
    md = tab.to_markdown()
    assert md.splitlines()[0].startswith("| parameter | kind | mean")
    assert len(md.splitlines()) == len(tab) + 2
    tex = tab.to_latex()
    assert "\\begin{tabular}" in tex and "Days" in tex
    # slicing keeps the rich type
    assert hasattr(tab.loc[["Days"]], "_repr_html_")


def test_missing_reml_engine_is_clear(sleep_fit, monkeypatch):
    import sys

    from bayes_hlm.errors import BayesHLMError
    from bayes_hlm.results.compare_reml import compare_reml

    monkeypatch.setitem(sys.modules, "bayes_hlm.reml", None)  # import fails
    with pytest.raises(BayesHLMError, match="REML engine"):
        compare_reml(sleep_fit)


def test_shrinkage_table(sleep_fit, ref, sleepstudy):
    from bayes_hlm.results.compare_reml import shrinkage_table

    tab = shrinkage_table(sleep_fit, ref)
    assert tab.shape[0] == 18 * 2
    assert list(tab.index.names) == ["level", "term"]
    # no pooling = separate lm(Reaction ~ Days) for each subject
    s = sleepstudy[sleepstudy["Subject"].astype(str) == "308"]
    slope, icpt = np.polyfit(s["Days"], s["Reaction"], 1)
    assert tab.loc[("308", "Intercept"), "no_pool"] == pytest.approx(icpt)
    assert tab.loc[("308", "Days"), "no_pool"] == pytest.approx(slope)
    # complete pooling = lm(Reaction ~ Days)
    assert tab.loc[("308", "Days"), "complete_pool"] == pytest.approx(10.467286, abs=1e-5)
    # BLUP = REML fixed effect + conditional mode (lme4 coef())
    assert tab["blup"].notna().all()
    # partial pooling lies between no pooling and complete pooling for most groups
    # (measured towards complete pooling; the shrinkage column itself is bounded, see below)
    raw = 1 - (tab["post_mean"] - tab["complete_pool"]) / (tab["no_pool"] - tab["complete_pool"])
    inside = raw.between(-0.05, 1.05)
    assert inside.mean() > 0.8
    # the posterior means are close to the BLUPs
    assert np.corrcoef(tab["post_mean"], tab["blup"])[0, 1] > 0.98
    assert "| level | term |" in tab.to_markdown()


def test_with_real_reml_engine(sleep_fit):
    from bayes_hlm.results.compare_reml import compare_reml, shrinkage_table

    tab = compare_reml(sleep_fit)
    assert tab.loc["Intercept", "reml"] == pytest.approx(251.405, abs=1e-2)
    assert tab.loc["sd(Days | Subject)", "reml"] == pytest.approx(5.922, abs=1e-2)
    assert tab.loc["ICC (adjusted)", "reml"] == pytest.approx(0.7217, abs=1e-2)
    assert shrinkage_table(sleep_fit)["blup"].notna().all()


# ------------------------------------------------ shrinkage: the fraction travelled (#18 item 3)
from hypothesis import given, strategies as st  # noqa: E402

_finite = st.floats(-1e3, 1e3, allow_nan=False)


@given(_finite, _finite, _finite, st.floats(1e-3, 1e2))
def test_fraction_travelled_is_bounded_or_na_with_a_reason(no_pool, post, pop, sd):
    from bayes_hlm.results.compare_reml import MIN_DISTANCE_SD, fraction_travelled

    f, note = fraction_travelled([no_pool], [post], [pop], [sd])
    f, note = f[0], note[0]
    if abs(no_pool - pop) < MIN_DISTANCE_SD * sd:
        assert np.isnan(f) and note.startswith("NA")
    else:
        assert 0.0 <= f <= 1.0
        raw = (no_pool - post) / (no_pool - pop)
        if 0 <= raw <= 1:  # the plain case: the fraction itself, no note
            assert f == pytest.approx(raw) and note == ""
        else:
            assert note in ("moved away: shown as 0", "crossed: shown as 1")


def test_fraction_travelled_values():
    from bayes_hlm.results.compare_reml import fraction_travelled

    f, note = fraction_travelled([10.0, 10.0, 10.0, 10.0, np.nan, 0.4],
                                 [4.0, 12.0, -1.0, 10.0, 3.0, 0.2], 0.0, 1.0)
    np.testing.assert_allclose(f[:4], [0.6, 0.0, 1.0, 0.0])
    assert list(note[:4]) == ["", "moved away: shown as 0", "crossed: shown as 1", ""]
    assert np.isnan(f[4]) and note[4] == "NA: too few rows"
    assert np.isnan(f[5]) and note[5] == "NA: within 0.5 SD of population"


def test_shrinkage_fraction_sleepstudy(sleep_fit, ref):
    """The column shown as 'fraction travelled' used to read 1.333 and -0.270 (#18)."""
    from bayes_hlm.results.compare_reml import shrinkage_table

    tab = shrinkage_table(sleep_fit, ref)
    s = tab["shrinkage"]
    assert s.dropna().between(0, 1).all()
    assert (tab.loc[s.isna(), "shrinkage_note"].str.startswith("NA")).all()
    assert s.notna().mean() > 0.8
    # population = posterior mean of the fixed effect; plain rows are the literal fraction
    plain = tab[tab["shrinkage_note"] == ""]
    frac = (plain["no_pool"] - plain["post_mean"]) / (plain["no_pool"] - plain["population"])
    np.testing.assert_allclose(plain["shrinkage"], frac)
    # the close-to-the-mean rows are NA because the distance is under a posterior SD
    close = tab[tab["shrinkage_note"] == "NA: within 0.5 SD of population"]
    assert ((close["no_pool"] - close["population"]).abs() < 0.5 * close["post_sd"]).all()
    assert "shrinkage = (no_pool - post_mean)" in (tab.note or "")


def test_shrinkage_fraction_hsb82_level2_like_with_like():
    """hsb82 with meanses and sector: the no-pooling intercept absorbs them, the fraction is
    measured without them (else nearly every school 'crosses' or 'moves away')."""
    import warnings

    import bayes_hlm as bh
    from bayes_hlm.results.compare_reml import shrinkage_table

    hsb = bh.center(bh.datasets.load("hsb82").drop(columns=["cses", "meanses"]), "ses", by="school")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = bh.fit("mAch ~ cses + meanses + sector + (cses | school)", hsb, chains=2, draws=300,
                   tune=300, seed=3, progressbar=False)
    tab = shrinkage_table(m, None)
    assert tab.attrs["level2"] == ["meanses", "sectorCatholic"]
    assert "meanses, sectorCatholic part" in tab.note
    icpt = tab.xs("Intercept", level="term")
    s = icpt["shrinkage"]
    assert s.dropna().between(0, 1).all()
    # like with like: most schools' intercepts travel a plain fraction of the way
    assert (icpt["shrinkage_note"] == "").mean() > 0.6
    assert s.notna().mean() > 0.6


def test_shrinkage_plot_does_not_print_the_column_legend(sleep_fit, ref):
    """The table's note explains the shrinkage column; the plots only say why REML marks are
    missing (the legend used to be drawn in red under the figure)."""
    import matplotlib.pyplot as plt

    from bayes_hlm.reporters import plot_shrinkage, plot_shrinkage_2d

    for ax in (plot_shrinkage(sleep_fit, ref, term="Days"), plot_shrinkage_2d(sleep_fit, ref)):
        assert not any("shrinkage =" in t.get_text() for t in ax.figure.texts)
    plt.close("all")


def test_singular_reference_icc_r2_not_compared(sleep_fit, ref):
    """A singular REML fit's ICC/R² follow performance's NA convention: no 'diff in posterior
    SDs' against it (it read as -3.4 SDs in notebook 01's three-level model, #18)."""
    import dataclasses

    from bayes_hlm.results.compare_reml import compare_reml

    sing = dataclasses.replace(ref, singular=True) if dataclasses.is_dataclass(ref) else None
    if sing is None:
        pytest.skip("reference is not a dataclass")
    tab = compare_reml(sleep_fit, sing)
    rows = tab[tab["kind"].isin(["icc", "r2"])]
    assert rows["diff_in_post_sd"].isna().all() and rows["reml"].notna().any()
    assert tab.loc["Days", "diff_in_post_sd"] == pytest.approx(
        compare_reml(sleep_fit, ref).loc["Days", "diff_in_post_sd"])
    assert "singular" in tab.note
