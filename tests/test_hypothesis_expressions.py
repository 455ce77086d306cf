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


#: expression -> what the error says; big or non-number powers are refused before computing
REFUSED = {
    "9**9**9**9 > 0": "exponent must be a number", "9^9^9^9 > 0": "exponent must be a number",
    "Days^Intercept > 0": "exponent must be a number", "Days^(1+1) > 0": "exponent must be",
    "Days^100 > 0": "exponent must be a number", "Days > )": "not an arithmetic expression",
    "(Days)(Intercept) > 0": "only parameters, numbers", "sigma > 0": "unknown name",
    "Days // 2 > 0": "not an arithmetic expression|only parameters",
}


@pytest.mark.parametrize("h", sorted(REFUSED))
def test_refused_at_once_with_a_clear_error(h):
    t0 = time.perf_counter()
    with pytest.raises(BayesHLMError, match=REFUSED[h]):
        posterior_hypothesis(h, POST, _no_prior)
    assert time.perf_counter() - t0 < 5  # refused, not computed


def test_linear_weights_unchanged():
    keys = ["Intercept", "Days", "b_Intercept", "b_Days"]  # as wald_hypothesis parses
    expr, _op, _used = parse("Days - 2*Intercept = 1", keys)
    w, c = linear_weights(expr, ["Intercept", "Days"])
    np.testing.assert_allclose(w, [-2.0, 1.0])
    assert c == pytest.approx(-1.0)
