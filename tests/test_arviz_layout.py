"""``BayesResult.tree`` as ArviZ sees it: summary, trace and forest plots agree with
``ranef()``/``fixef()``/``varcorr()`` label by label, for both methods, with no warning."""

import warnings

import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr

import bayes_hlm as bh
from bayes_hlm.errors import BayesHLMWarning
from bayes_hlm.results.arviz_layout import dims_consistent, to_backend
from bayes_hlm.results.io import CHECKSUM_ATTR


@pytest.fixture(scope="module")
def marginal_fit(sleepstudy):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bh.fit("Reaction ~ Days + (Days | Subject)", sleepstudy, method="marginal",
                      chains=2, draws=100, tune=100, seed=3, progressbar=False)


@pytest.fixture(params=["full", "marginal"])
def result(request, sleep_fit, marginal_fit):
    return sleep_fit if request.param == "full" else marginal_fit


def _summary(tree):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        return az.summary(tree, round_to="none")


def test_summary_rows_match_accessors_and_do_not_warn(result):
    s = _summary(result.tree)
    re = result.ranef()["Subject"]
    for (level, term), row in re.iterrows():
        assert s.loc[f"r__Subject[{level}, {term}]", "mean"] == pytest.approx(row["mean"], rel=1e-9)
    fe = result.fixef()
    for term in fe.index:
        assert s.loc[f"fixed[{term}]", "mean"] == pytest.approx(fe.loc[term, "mean"], rel=1e-9)
    vc = result.varcorr().set_index(["group", "term", "term_b"])
    for term in ("Intercept", "Days"):
        assert s.loc[f"sd__Subject[{term}]", "mean"] == pytest.approx(vc.loc[("Subject", term, ""), "sd"])
    # one row per free correlation, no constant diagonal
    corr_rows = [i for i in s.index if i.startswith("corr__")]
    assert corr_rows == ["corr__Subject[Intercept, Days]"]
    assert s.loc[corr_rows[0], "mean"] == pytest.approx(vc.loc[("Subject", "Intercept", "Days"), "corr"])
    assert np.isfinite(s["r_hat"]).all()


def test_dataset_dims_follow_every_variable(result):
    post = result.tree["posterior"].to_dataset()
    assert dims_consistent(post)
    assert "Subject__term_b" not in post.dims


def test_trace_panels_show_the_named_effect(result):
    re = result.ranef()["Subject"]
    pc = az.plot_trace(result.tree, var_names=["fixed", "r__Subject", "corr__Subject"],
                       coords={"Subject__level": ["308", "309", "310"]}, backend="matplotlib")
    fig = pc.viz["figure"].item()
    seen = 0
    for ax in fig.axes:
        var, _, label = ax.get_title().partition("\n")
        ys = np.concatenate([ln.get_ydata() for ln in ax.get_lines()]) if ax.get_lines() else None
        if var == "r__Subject":
            level, term = label.split(", ")
            assert ys.mean() == pytest.approx(re.loc[(level, term), "mean"], rel=1e-9)
            seen += 1
        elif var == "fixed":
            assert ys.mean() == pytest.approx(result.fixef().loc[label, "mean"], rel=1e-9)
            seen += 1
    assert seen == 6 + 2
    plt.close(fig)


def test_forest_rows_show_the_named_effect(result):
    re = result.ranef()["Subject"]
    pc = az.plot_forest(result.tree, var_names=["r__Subject"], combined=True, point_estimate="mean",
                        coords={"Subject__level": ["308", "309", "335"]}, backend="matplotlib")
    labels = pc.viz["Subject__term_label"]["r__Subject"]
    points = pc.viz["point_estimate"]["r__Subject"]
    for level in ("308", "309", "335"):
        for term in ("Intercept", "Days"):
            text = labels.sel(Subject__level=level, Subject__term=term).item()
            assert text.get_text() == term
            x, y = points.sel(Subject__level=level, Subject__term=term).item().get_offsets()[0]
            assert y == pytest.approx(text.get_position()[1])  # drawn on the row it labels
            assert x == pytest.approx(re.loc[(level, term), "mean"], rel=1e-9)
    plt.close(pc.viz["figure"].item())


def test_old_layout_files_load(marginal_fit, tmp_path):
    """A file saved before the ArviZ layout (full correlation matrix, sd__ before r__)."""
    path = tmp_path / "new.nc"
    marginal_fit.save(path)
    tree = xr.open_datatree(path, engine="h5netcdf").load()
    post = to_backend(tree["posterior"].to_dataset(), marginal_fit.design)
    old = post[["fixed", "sigma", "sd__Subject", "corr__Subject", "r__Subject"]]
    assert old["corr__Subject"].dims[2:] == ("Subject__term", "Subject__term_b")
    groups = {k: tree[k].to_dataset() for k in tree.children}
    groups["posterior"] = old
    old_tree = xr.DataTree.from_dict(groups)
    old_tree.attrs.update(tree.attrs)
    old_tree.attrs.pop(CHECKSUM_ATTR)  # files of that age carried no checksum
    old_tree.to_netcdf(tmp_path / "old.nc", engine="h5netcdf")
    with pytest.warns(BayesHLMWarning, match="could not be verified"):
        back = bh.load(tmp_path / "old.nc")
    assert back.tree["posterior"]["corr__Subject"].dims[2:] == ("Subject__pair",)
    for a, b in [(back.varcorr(), marginal_fit.varcorr()), (back.summary(), marginal_fit.summary())]:
        np.testing.assert_allclose(a.select_dtypes("number").to_numpy(float),
                                   b.select_dtypes("number").to_numpy(float), equal_nan=True)
    np.testing.assert_allclose(back.ranef()["Subject"].to_numpy(), marginal_fit.ranef()["Subject"].to_numpy())
    _summary(back.tree)


def test_backend_values_rebuild_the_matrix(result):
    c = result._draws.flat("corr__Subject")
    assert c.shape[1:] == (2, 2)
    np.testing.assert_array_equal(c[:, 0, 0], 1.0)
    np.testing.assert_array_equal(c[:, 0, 1], c[:, 1, 0])
    np.testing.assert_array_equal(c[:, 0, 1], result.posterior["corr__Subject"].values.reshape(-1))


def test_trace_dist_non_compact_gives_each_coefficient_its_panel(marginal_fit):
    """Intercept (~250) and Days (~10) are not drawn on one axis with compact=False."""
    pc = az.plot_trace_dist(marginal_fit.tree, var_names=["fixed", "corr__Subject"], compact=False,
                            backend="matplotlib")
    fig = pc.viz["figure"].item()
    labels = [ax.get_xlabel() for ax in fig.axes if ax.get_xlabel() and ax.get_xlabel() != "Draw"]
    assert labels == ["fixed\nIntercept", "fixed\nDays", "corr__Subject\nIntercept, Days"]
    plt.close(fig)


def test_on_demand_effects_are_named_and_load_regenerates_them(sleepstudy, monkeypatch, tmp_path):
    """Too-large marginal effects are not in the tree (ArviZ cannot see them): the posterior
    says which, and a saved-and-loaded result regenerates the same draws from the pair layout."""
    import bayes_hlm.backends.marginal as M

    monkeypatch.setattr(M, "MATERIALIZE_BYTES", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lazy = bh.fit("Reaction ~ Days + (Days | Subject)", sleepstudy, method="marginal",
                      chains=2, draws=60, tune=60, seed=8, sampler="pymc", progressbar=False)
    post = lazy.tree["posterior"]
    assert "r__Subject" not in post and post.attrs["group_effects_on_demand"] == "Subject"
    _summary(lazy.tree)
    lazy.save(tmp_path / "lazy.nc")
    back = bh.load(tmp_path / "lazy.nc")
    np.testing.assert_allclose(back._draws.effects("Subject"), lazy._draws.effects("Subject"),
                               rtol=1e-10, atol=1e-10)


def test_layout_is_built_on_first_tree_use(sleepstudy):
    """BayesResult.__init__ does not build the ArviZ layout (~10-20 ms a fit, #18): a fit's
    own tail (diagnostics) and the accessors leave it unbuilt; ``.tree`` builds it once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bh.fit("Reaction ~ Days + (Days | Subject)", sleepstudy, method="marginal", chains=2,
                     draws=200, tune=200, seed=3, progressbar=False)
    assert fit._tree is None
    fit.diagnostics()
    fit.summary()
    fit.ranef()
    assert fit._tree is None
    tree = fit.tree
    assert fit.tree is tree and fit._backend_tree is None
    assert fit.posterior["corr__Subject"].dims[2:] == ("Subject__pair",)
    assert dims_consistent(fit.posterior)
