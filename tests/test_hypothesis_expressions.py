"""hypothesis() expressions are parsed with ast: arithmetic of parameters and numbers only,
powers with a small number exponent; anything else is refused with a clear error (no eval)."""

import time

import numpy as np
import pytest

from bayes_hlm.errors import BayesHLMError
from bayes_hlm.inference.hypotheses import linear_weights, parse, posterior_hypothesis

RNG = np.random.default_rng(0)
POST = {"Intercept": RNG.normal(2.0, 0.1, 400), "Days": RNG.normal(0.5, 0.05, 400)}


def _no_prior(n):  # point hypotheses use prior draws (Savage-Dickey evidence ratio)
    rng = np.random.default_rng(1)
    return {k: rng.normal(0.0, 5.0, n) for k in POST}


def _estimate(h):
    return float(posterior_hypothesis(h, POST, _no_prior).iloc[0]["Estimate"])


@pytest.mark.parametrize("h, expect", [
    ("Days - 2*Intercept = 0", lambda p: p["Days"] - 2 * p["Intercept"]),
    ("Days^2 > 0", lambda p: p["Days"] ** 2),
    ("-(Intercept + Days) / 2 < 1", lambda p: -(p["Intercept"] + p["Days"]) / 2 - 1),
    ("Intercept^-1 = 0.5", lambda p: p["Intercept"] ** -1.0 - 0.5),
    ("1.5e1 * Days = Intercept", lambda p: 15 * p["Days"] - p["Intercept"]),
])
def test_arithmetic_is_evaluated(h, expect):
    assert _estimate(h) == pytest.approx(float(np.mean(expect(POST))), rel=1e-12)


@pytest.mark.parametrize("h", ["9**9**9**9 > 0", "9^9^9^9 > 0", "Days^Intercept > 0",
                               "Days^(1+1) > 0", "Days^100 > 0"])
def test_big_or_non_number_powers_are_refused_at_once(h):
    t0 = time.perf_counter()
    with pytest.raises(BayesHLMError, match="exponent must be a number"):
        posterior_hypothesis(h, POST, _no_prior)
    assert time.perf_counter() - t0 < 5  # refused, not computed


@pytest.mark.parametrize("h, match", [
    ("Days > )", "not an arithmetic expression"),
    ("(Days)(Intercept) > 0", "only parameters, numbers"),
    ("Days // 2 > 0", "not an arithmetic expression|only parameters"),
    ("sigma > 0", "unknown name"),
])
def test_other_expressions_are_refused_clearly(h, match):
    with pytest.raises(BayesHLMError, match=match):
        posterior_hypothesis(h, POST, _no_prior)


def test_linear_weights_unchanged():
    keys = ["Intercept", "Days", "b_Intercept", "b_Days"]  # as wald_hypothesis parses
    expr, _op, _used = parse("Days - 2*Intercept = 1", keys)
    w, c = linear_weights(expr, ["Intercept", "Days"])
    np.testing.assert_allclose(w, [-2.0, 1.0])
    assert c == pytest.approx(-1.0)
