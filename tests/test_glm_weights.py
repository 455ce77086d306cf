"""``weights=`` (#15): binomial proportions with the trials as weights (R's glm/glmer) and
frequency weights for the other families, through the design, the PyMC likelihood, the
priors, loo, predict, save/load, update and the CLI; bad weights are clear errors."""

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest

import bayes_hlm as bh
from bayes_hlm.backends.full import build_full_model
from bayes_hlm.errors import BayesHLMError, DataError
from bayes_hlm.spec.build import build_spec
from bayes_hlm.spec.priors import resolve_priors

TINY = dict(chains=1, draws=60, tune=60, seed=4, warn=False, progressbar=False)


@pytest.fixture(scope="module")
def counts():
    rng = np.random.default_rng(11)
    n = 48
    d = pd.DataFrame({"g": np.repeat([f"g{k}" for k in range(8)], 6), "x": rng.normal(size=n)})
    eta = 0.4 + 0.6 * d["x"] + np.repeat(rng.normal(0, 0.5, 8), 6)
    d["y"] = rng.poisson(np.exp(eta))
    d["yb"] = (rng.random(n) < 1 / (1 + np.exp(-eta + 0.4))).astype(int)
    d["pos"] = rng.gamma(3.0, np.exp(eta) / 3.0)
    d["tr"] = rng.integers(3, 9, n)
    d["s"] = rng.binomial(d["tr"], 1 / (1 + np.exp(-eta + 0.4)))
    d["w"] = rng.integers(1, 4, n)
    return d


def _expand(d, col="w"):
    return d.loc[d.index.repeat(d[col].astype(int))].reset_index(drop=True)


def _logp_at(spec, shift=0.13):
    ps = resolve_priors(spec.design, None, spec.family)
    model = build_full_model(spec.design, ps, {}, spec.family)
    point = {k: v + shift for k, v in model.initial_point().items()}
    return model, point, model.compile_logp()(point), ps


@pytest.mark.parametrize("formula,family", [
    ("y ~ x + (x | g)", "poisson"),
    ("y ~ x + (1 | g)", "negativebinomial"),
    ("yb ~ x + (1 | g)", "bernoulli"),
    ("cbind(s, tr - s) ~ x + (1 | g)", "binomial"),
    ("pos ~ x + (1 | g)", "gamma"),
    ("pos ~ x + (1 | g)", "t"),
])
def test_weighted_log_density_equals_expanded_rows_exactly(counts, formula, family):
    """Integer frequency weights = repeating rows: the same model log density (likelihood
    and Bambi's data-scaled priors) at any parameter value."""
    a = build_spec(formula, counts, family=family, weights="w")
    b = build_spec(formula, _expand(counts), family=family)
    assert a.design.n == len(counts) and b.design.n == int(counts["w"].sum())
    np.testing.assert_array_equal(a.design.weights, counts["w"].to_numpy(float))
    ma, point, la, pa = _logp_at(a)
    mb, _, lb, pb = _logp_at(b)
    pd.testing.assert_frame_equal(pa.table(), pb.table())
    assert la == pytest.approx(lb, rel=1e-10, abs=1e-8)


def test_binomial_proportion_with_trials_as_weights_is_cbind(counts):
    d = counts.assign(prop=counts["s"] / counts["tr"])
    a = build_spec("prop ~ x + (1 | g)", d, family="binomial", weights="tr")
    b = build_spec("cbind(s, tr - s) ~ x + (1 | g)", d, family="binomial")
    np.testing.assert_array_equal(a.design.y, b.design.y)
    np.testing.assert_array_equal(a.design.trials, b.design.trials)
    assert a.design.weights is None and a.weights_are_trials
    assert _logp_at(a)[2] == pytest.approx(_logp_at(b)[2], rel=1e-12)


@pytest.mark.parametrize("change,match", [
    (dict(w=-1.0), "weights column 'w' is negative"),
    (dict(w=np.nan), "weights column 'w' is missing"),
    (dict(w=np.inf), "weights column 'w' is infinite"),
    (dict(w="a"), "weights column 'w' must be numeric"),
])
def test_bad_frequency_weights_name_the_column_and_row(counts, change, match):
    d = counts.copy()
    d["w"] = d["w"].astype(object if change["w"] == "a" else float)
    d.loc[5, "w"] = change["w"]
    with pytest.raises(DataError, match=match):
        build_spec("y ~ x + (1 | g)", d, family="poisson", weights="w")


def test_weight_errors_for_columns_rows_and_families(counts):
    with pytest.raises(DataError, match="weights column 'ww' is not in the data; did you mean 'w'"):
        build_spec("y ~ x + (1 | g)", counts, family="poisson", weights="ww")
    # a row dropped for a missing predictor needs no weight
    d = counts.assign(x=counts["x"].where(counts.index != 3), w=counts["w"].astype(float))
    d.loc[3, "w"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert build_spec("y ~ x + (1 | g)", d, family="poisson", weights="w").design.n == 47
    with pytest.raises(DataError, match="gaussian family are not supported: lme4's lmer"):
        build_spec("pos ~ x + (1 | g)", counts, weights="w")
    prop = counts.assign(prop=counts["s"] / counts["tr"])
    with pytest.raises(DataError, match=r"not a whole number of successes .*\(row \d+: "):
        build_spec("prop ~ x + (1 | g)", prop.assign(tr=prop["tr"] + 1), family="binomial",
                   weights="tr")
    with pytest.raises(DataError, match="trials here and must be whole numbers >= 1"):
        build_spec("prop ~ x + (1 | g)", prop.assign(tr=prop["tr"] + 0.5), family="binomial",
                   weights="tr")
    with pytest.raises(DataError, match=r"must be a proportion in \[0, 1\]"):
        build_spec("s ~ x + (1 | g)", prop, family="binomial", weights="tr")
    with pytest.raises(BayesHLMError, match="weights must be None or the name of a data column"):
        bh.fit("y ~ x + (1 | g)", counts, family="poisson", weights=counts["w"].to_numpy())


@pytest.fixture(scope="module")
def weighted_fit(counts):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bh.fit("y ~ x + (1 | g)", counts, family="poisson", weights="w", **TINY)


def test_loo_log_likelihood_is_weighted(weighted_fit, counts):
    from bayes_hlm.results.family_draws import family_of, pointwise_loglik

    r = weighted_fit
    ll = r.log_likelihood()["log_likelihood"]["y"].values.reshape(-1, len(counts))
    plain = pointwise_loglik(r._draws, dataclasses.replace(r.design, weights=None), family_of(r))
    np.testing.assert_allclose(ll, plain * counts["w"].to_numpy()[None, :])
    assert np.isfinite(r.loo().elpd)


def test_weights_survive_save_load_and_update(weighted_fit, counts, tmp_path):
    path = tmp_path / "w.nc"
    weighted_fit.save(path)
    back = bh.BayesResult.load(path)
    np.testing.assert_array_equal(back.design.weights, counts["w"].to_numpy(float))
    assert back.info.requested.weights == "w"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        up = weighted_fit.update(draws=30)
    np.testing.assert_array_equal(up.design.weights, counts["w"].to_numpy(float))
    # predictions ignore weights (they weigh the likelihood, not the mean)
    p = weighted_fit.predict(counts.drop(columns="w").iloc[:3])
    assert np.isfinite(p["mean"]).all()


def test_binomial_predict_on_new_data_takes_trials_from_the_data_or_argument(counts):
    d = counts.assign(prop=counts["s"] / counts["tr"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cb = bh.fit("cbind(s, tr - s) ~ x + (1 | g)", d, family="binomial", **TINY)
        pf = bh.fit("p(s, tr) ~ x + (1 | g)", d, family="binomial", **TINY)
        pw = bh.fit("prop ~ x + (1 | g)", d, family="binomial", weights="tr", **TINY)
    new = d.iloc[:4].assign(tr=[1, 5, 50, 7], s=[0, 0, 0, 0])
    for r in (cb, pf, pw):
        _, draws = r.predict(new, kind="response", return_draws=True)
        assert (draws <= new["tr"].to_numpy()[None, :]).all() and draws[:, 2].max() > 7
        _, d2 = r.predict(new[["x", "g"]], kind="response", trials=[1, 5, 50, 7],
                          return_draws=True)
        assert (d2 <= new["tr"].to_numpy()[None, :]).all()
        with pytest.raises(DataError, match="needs the number of trials of each new row"):
            r.predict(new[["x", "g"]], kind="response")
        assert np.isfinite(r.predict(new[["x", "g"]], kind="mean")["mean"]).all()
    _, d3 = cb.predict(new[["x", "g"]], kind="response", trials=1, return_draws=True)
    assert set(np.unique(d3)) <= {0.0, 1.0}
    with pytest.raises(DataError, match="trials= needs one number per row"):
        cb.predict(new, kind="response", trials=[1, 2])
    with pytest.raises(DataError, match="whole number >= 1"):
        cb.predict(new, kind="response", trials=0)


def test_cli_weights_flag(counts, tmp_path, capsys):
    import json

    from bayes_hlm.cli import main

    path = tmp_path / "c.csv"
    counts.to_csv(path, index=False)
    rc = main(["fit", "y ~ x + (1|g)", str(path), "--family", "poisson", "--weights", "w",
               "--method", "full", "--chains", "1", "--draws", "40", "--tune", "40",
               "--seed", "1", "--json"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert json.loads(cap.out)["family"] == "poisson"
    rc = main(["fit", "pos ~ x + (1|g)", str(path), "--weights", "w", "--method", "full",
               "--chains", "1", "--draws", "40", "--tune", "40"])
    cap = capsys.readouterr()
    assert rc != 0 and "gaussian family are not supported" in cap.err


@pytest.mark.slow
def test_weighted_posterior_equals_expanded_rows_within_mcse(counts):
    """The sampled posteriors agree too (4 combined MCSE on every scalar summary row)."""
    kw = dict(chains=4, draws=1000, tune=1000, seed=9, warn=False, progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = bh.fit("y ~ x + (1 | g)", counts, family="negativebinomial", weights="w", **kw)
        b = bh.fit("y ~ x + (1 | g)", _expand(counts), family="negativebinomial", **kw)
    sa, sb = a.summary(), b.summary()
    se = np.sqrt(sa["mcse_mean"] ** 2 + sb["mcse_mean"] ** 2)
    assert (np.abs(sa["mean"] - sb["mean"]) <= 4 * se).all()
