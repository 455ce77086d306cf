"""Warnings a GLMM user needs (#15): separation of a binary/binomial outcome by the fixed
effects (before sampling, naming the term) and overdispersion of a Poisson fit (after)."""

import warnings

import numpy as np
import pandas as pd
import pytest

import bayes_hlm as bh
from bayes_hlm.errors import OverdispersionWarning, SeparationWarning
from bayes_hlm.families.checks import find_separation, pearson_dispersion

RNG = np.random.default_rng(0)
N = 200
X_CONT = RNG.normal(size=N)
GRP = (RNG.random(N) < 0.2).astype(float)
X = np.column_stack([np.ones(N), X_CONT, GRP])
NAMES = ["Intercept", "x", "grpB"]
Y = (RNG.random(N) < 1 / (1 + np.exp(-X_CONT))).astype(float)


def test_no_separation_in_ordinary_binary_and_binomial_data():
    assert find_separation(X, Y, NAMES) is None
    s = RNG.binomial(5, 0.4, size=N).astype(float)
    assert find_separation(X, s, NAMES, trials=np.full(N, 5.0)) is None


def test_quasi_complete_separation_by_a_factor_level_names_it():
    y = Y.copy()
    y[GRP == 1] = 1
    sep = find_separation(X, y, NAMES)
    assert sep.terms == ("grpB",) and not sep.complete
    assert "every row with grpB = 1 is a success" in sep.message()
    assert sep.message().startswith("quasi-complete separation")


def test_binomial_level_with_no_successes_is_separated():
    s = RNG.binomial(5, 0.4, size=N).astype(float)
    s[GRP == 1] = 0
    sep = find_separation(X, s, NAMES, trials=np.full(N, 5.0))
    assert sep.terms == ("grpB",) and "is a failure" in sep.message()


def test_complete_separation_by_a_continuous_predictor_leads_with_it():
    sep = find_separation(X, (X_CONT > 0).astype(float), NAMES)
    assert sep.complete and sep.terms[0] == "x"
    assert sep.message().startswith("complete separation")


def test_large_designs_get_the_indicator_check(monkeypatch):
    import bayes_hlm.families.checks as checks

    monkeypatch.setattr(checks, "_MAX_LP_CELLS", 10)
    assert find_separation(X, Y, NAMES) is None
    y = Y.copy()
    y[GRP == 1] = 0
    sep = find_separation(X, y, NAMES)
    assert sep.terms == ("grpB",) and "every row with grpB = 1 is a failure" in sep.message()


def test_pearson_dispersion_is_chi2_over_residual_df():
    r = np.array([1.0, -2.0, 0.5, 1.5])
    assert pearson_dispersion(r, 1) == pytest.approx((1 + 4 + 0.25 + 2.25) / 3)
    # the rows in chunks (an iterator of arrays): the same statistic
    assert pearson_dispersion(iter([r[:3], r[3:]]), 1) == pytest.approx(pearson_dispersion(r, 1))


def test_overdispersion_check_in_row_chunks_is_the_whole_rows_statistic(monkeypatch):
    """warn_overdispersion sums the Pearson residuals in row chunks: the residuals of a row
    slice are the whole vector's slice, and the warning's chi2/df is the unchunked one."""
    import bayes_hlm.fitting.tail as tail
    from bayes_hlm.results.predict import fitted_mean
    from bayes_hlm.results.residuals import pearson_residuals

    mu = np.exp(1.0 + 0.3 * X_CONT)
    d = pd.DataFrame({"y": RNG.poisson(RNG.gamma(1.0, mu)), "x": X_CONT, "g": _groups(N)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = bh.fit("y ~ x + (1|g)", d, family="poisson", chains=1, draws=60, tune=60, seed=2,
                   progressbar=False, warn=False)
    from bayes_hlm.families.checks import OVERDISPERSION_DRAWS

    idx = r._draws.thinned(OVERDISPERSION_DRAWS)  # the check's draws
    fit = fitted_mean(r, True, idx)
    whole = pearson_residuals(r, fit, idx)
    s = slice(7, 40)
    np.testing.assert_array_equal(pearson_residuals(r, fit[s], idx, rows=s), whole[s])
    n_params = r.design.p + len(r.varcorr())
    want = pearson_dispersion(whole, n_params)
    monkeypatch.setattr(tail, "_PEARSON_ROWS", 13)  # several chunks, the last one short
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tail.warn_overdispersion(r)
    msg = [str(w.message) for w in caught if issubclass(w.category, OverdispersionWarning)]
    assert want > 1.5 and len(msg) == 1 and f"chi2/df = {want:.2f}" in msg[0]


def _groups(n, G=10):
    return [f"g{i}" for i in np.arange(n) % G]


def test_fit_warns_about_separation_before_sampling():
    d = pd.DataFrame({"y": Y.astype(int), "x": X_CONT, "grp": np.where(GRP == 1, "B", "A"),
                      "g": _groups(N)})
    d.loc[d.grp == "B", "y"] = 1
    with pytest.warns(SeparationWarning, match=r"\['grpB'\]"):
        bh.fit("y ~ x + grp + (1|g)", d, family="bernoulli", chains=1, draws=20, tune=20,
               seed=1, progressbar=False, warn=False)


def _poisson_fit(y, warn=True):
    d = pd.DataFrame({"y": y, "x": X_CONT, "g": _groups(N)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bh.fit("y ~ x + (1|g)", d, family="poisson", chains=1, draws=60, tune=60, seed=2,
               progressbar=False, warn=warn)
    return [w for w in caught if issubclass(w.category, OverdispersionWarning)]


def test_overdispersed_counts_warn_and_suggest_negative_binomial():
    mu = np.exp(1.0 + 0.3 * X_CONT)
    y = RNG.poisson(RNG.gamma(1.0, mu))  # NB2 with alpha = 1: Var = mu + mu^2
    caught = _poisson_fit(y)
    assert len(caught) == 1
    msg = str(caught[0].message)
    assert "family='negativebinomial'" in msg and "(1 | obs)" in msg
    assert not _poisson_fit(y, warn=False)


def test_poisson_counts_do_not_warn():
    assert not _poisson_fit(RNG.poisson(np.exp(1.0 + 0.3 * X_CONT)))


def test_dask_engine_refuses_other_families_instead_of_fitting_a_gaussian_model():
    from bayes_hlm.errors import BayesHLMError

    d = pd.DataFrame({"y": Y, "x": X_CONT, "g": _groups(N)})
    with pytest.raises(BayesHLMError, match="Gaussian models only, not the bernoulli family"):
        bh.fit("y ~ x + (1|g)", d, engine="dask", family="bernoulli")


def test_no_separation_certificate_agrees_with_the_lp(monkeypatch):
    """The NNLS certificate (Stiemke weights) only ever short-cuts to None where the LP says
    None: separated data are never certified, ordinary data are (no LP solved)."""
    import bayes_hlm.families.checks as checks

    rng = np.random.default_rng(5)
    for trial in range(30):
        n = int(rng.integers(20, 400))
        X_ = np.column_stack([np.ones(n), rng.normal(size=n), (rng.random(n) < 0.3).astype(float)])
        y = (rng.random(n) < 1 / (1 + np.exp(-2 * X_[:, 1]))).astype(float)
        if trial % 3 == 0:
            y = (X_[:, 1] > 0.1).astype(float)   # complete separation
        elif trial % 3 == 1:
            y[X_[:, 2] == 1] = 1.0                # quasi-complete
        A = np.vstack([X_[y > 0], -X_[y == 0]]) / np.abs(X_).max(axis=0)
        lp = find_separation(X_, y, NAMES)
        if checks._not_separated(A, 1e-7):
            assert lp is None
        if lp is not None:
            assert not checks._not_separated(A, 1e-7)
    calls = []
    monkeypatch.setattr("scipy.optimize.linprog", lambda *a, **k: calls.append(1))
    assert find_separation(X, Y, NAMES) is None and not calls  # certified: no LP
    n = 200_000  # issue #17's 200k binary rows: the LP took ~20 s CPU, the certificate ~0.1 s
    x = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(0.5 - x))).astype(float)
    assert find_separation(np.column_stack([np.ones(n), x]), y, ["Intercept", "x"]) is None
    assert not calls


def test_overdispersion_check_on_a_subset_of_draws_is_the_same_decision(monkeypatch):
    """The check averages OVERDISPERSION_DRAWS evenly spaced draws: chi2/df within ~1/S of every
    draw's value (here 20 of 400 draws: within 0.05), and it still fires on overdispersed
    counts and not on Poisson ones."""
    import bayes_hlm.families.checks as checks
    from bayes_hlm.results.predict import fitted_mean
    from bayes_hlm.results.residuals import pearson_residuals

    monkeypatch.setattr(checks, "OVERDISPERSION_DRAWS", 20)
    mu = np.exp(1.0 + 0.3 * X_CONT)
    for y, fires in ((RNG.poisson(RNG.gamma(1.0, mu)), True), (RNG.poisson(mu), False)):
        d = pd.DataFrame({"y": y, "x": X_CONT, "g": _groups(N)})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = bh.fit("y ~ x + (1|g)", d, family="poisson", chains=2, draws=200, tune=100,
                       seed=2, progressbar=False)
        assert any(issubclass(w.category, OverdispersionWarning)
                   and "20 evenly spaced draws" in str(w.message) for w in caught) == fires
        n_params = r.design.p + len(r.varcorr())
        full = checks.pearson_dispersion(r.residuals("pearson").to_numpy(), n_params)
        idx = r._draws.thinned(20)
        sub = checks.pearson_dispersion(pearson_residuals(r, fitted_mean(r, True, idx), idx),
                                        n_params)
        assert full != sub
        if not fires:  # the bound's premise (Poisson information per cell) holds: ≲ 1/S
            assert abs(full - sub) < 0.05, (full, sub)
        else:  # overdispersed: larger posterior spread of the means, so the Monte Carlo error
            # of 20 draws is measured: 10 disjoint evenly spaced subsets; same decision
            total = r.info.chains * r.info.draws
            subsets = [(idx + k) % total for k in range(1, 11)]
            others = [checks.pearson_dispersion(
                pearson_residuals(r, fitted_mean(r, True, j), j), n_params) for j in subsets]
            assert abs(full - sub) < 4 * np.std(others, ddof=1) + 0.05, (full, sub, others)
            assert min([sub] + others) > checks.OVERDISPERSION_RATIO
