"""hsb82 and penicillin fit cleanly at default settings (Bambi's default: 174 divergences on penicillin)."""

import warnings

import pytest

import bayes_hlm as bh


@pytest.mark.parametrize("name, formula", [
    ("hsb82", "mAch ~ cses + meanses + sector + (cses | school)"),
    ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
])
def test_default_settings_no_divergences(name, formula):
    data = bh.datasets.load(name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = bh.fit(formula, data, seed=20)
    d = r.diagnostics()
    assert d["divergences"] == 0
    assert d["max_r_hat_all"] < 1.01
    assert d["min_ess_bulk"] > 400
    assert not [w for w in caught if issubclass(w.category, bh.ConvergenceWarning)]
