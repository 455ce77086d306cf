"""Profile-likelihood / bootstrap intervals and optimiser paths of the REML engine, vs pinned lme4.

lme4's ``confint(method="profile")`` evaluates ζ on a grid and inverts an interpolating spline;
we solve ζ(v) = ±z exactly. Measured differences to the fixture (lme4 1.1-31): at most 5e-6
relative for SDs, σ and fixed effects, 3.3e-5 absolute for the correlation (sleep_rs upper end)
— lme4's spline error. Tolerances below: 1e-4 relative, 1e-4 absolute for correlations.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from bayes_hlm.datasets import load
from bayes_hlm.reml import reml
from bayes_hlm.reml.profile import param_names, phi_to_theta, theta_to_phi

FIX = Path(__file__).parent / "fixtures" / "lme4_reference.json"


@pytest.fixture(scope="module")
def ref():
    return json.loads(FIX.read_text())


_FITS: dict = {}


def _fit(ref, case, **kw):
    key = (case, repr(sorted(kw.items())))
    if key not in _FITS:
        c = ref["cases"][case]
        d = load(c["data"])
        if c["data"] == "sleepstudy":
            d["School"] = np.repeat(["1", "2", "3"], 60)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _FITS[key] = reml(c["formula"], d, method="REML" if c["REML"] else "ML", **kw)
    return _FITS[key]


def _our_name(lme4_name: str, c: dict) -> str:
    """lme4 ``.sig01``/``.sigma``/coef name -> our row name."""
    if lme4_name == "(Intercept)":
        return "Intercept"
    if lme4_name not in c["confint_profile_names"]:
        return lme4_name
    new = c["confint_profile_names"][lme4_name]           # sd_(Intercept)|Subject, cor_Days.(Intercept)|Subject
    if new == "sigma":
        return "sigma"
    kind, rest = new.split("_", 1)
    terms, factor = rest.rsplit("|", 1)
    fix = lambda t: "Intercept" if t == "(Intercept)" else t  # noqa: E731
    if kind == "sd":
        return f"sd({fix(terms)} | {factor})"
    a, b = terms.split(".", 1) if not terms.startswith("(") else (terms[:terms.index(")") + 1],
                                                                   terms[terms.index(")") + 2:])
    return f"cor({fix(b)}, {fix(a)} | {factor})"       # lme4 names row term first


@pytest.mark.parametrize("case", ["sleep_ri", "sleep_rs"])
def test_profile_confint_matches_lme4(ref, case):
    c = ref["cases"][case]
    ci = _fit(ref, case).confint("profile")
    assert len(ci) == len(c["confint_profile"])
    for name, r in c["confint_profile"].items():
        ours = _our_name(name, c)
        for side in ("lower", "upper"):
            got, want = ci.loc[ours, side], r[side]
            if ours.startswith("cor("):
                assert abs(got - want) < 1e-4, (ours, side, got, want)
            else:
                assert abs(got - want) < 1e-4 * abs(want), (ours, side, got, want)


def test_profile_level_and_parm(ref):
    m = _fit(ref, "sleep_ri")
    ci95 = m.confint("profile", parm=["sigma", "Days"])
    ci80 = m.confint("profile", level=0.8, parm=["sigma", "Days"])
    assert list(ci95.index) == ["sigma", "Days"]
    for n in ci95.index:
        assert ci95.loc[n, "lower"] < ci80.loc[n, "lower"] < ci80.loc[n, "upper"] < ci95.loc[n, "upper"]
    # fixed effects: the profile interval is close to (slightly wider than) the ML Wald one
    w = m.confint("wald")
    assert abs(ci95.loc["Days", "upper"] - w.loc["Days", "upper"]) < 0.1


def test_profile_boundary_sd_is_zero(ref):
    m = _fit(ref, "sleep_3level")         # School SD estimated at 0 (singular)
    ci = m.confint("profile", parm=["sd(Intercept | School)"])
    assert ci.loc["sd(Intercept | School)", "lower"] == 0.0
    assert ci.loc["sd(Intercept | School)", "upper"] > 0.0


def test_phi_theta_roundtrip(ref):
    m = _fit(ref, "sleep_rs")
    tm = m.devfun.tmap
    phi = theta_to_phi(tm, m.theta, m.sigma)
    np.testing.assert_allclose(phi_to_theta(tm, phi), m.theta, rtol=1e-12, atol=1e-14)
    assert param_names(tm) == ["sd(Intercept | Subject)", "cor(Intercept, Days | Subject)",
                               "sd(Days | Subject)", "sigma"]
    vc = ref["cases"]["sleep_rs"]["varcorr"]["Subject"]
    assert abs(phi[1] - vc["cor"]["(Intercept),Days"]) < 1e-4


def test_boot_confint_reproducible_and_sane(ref):
    m = _fit(ref, "sleep_ri")
    a = m.confint("boot", nsim=60, seed=3)
    b = m.confint("boot", nsim=60, seed=3)
    assert a.equals(b)
    prof = m.confint("profile")
    for n in prof.index:
        assert a.loc[n, "lower"] < a.loc[n, "upper"]
        width = prof.loc[n, "upper"] - prof.loc[n, "lower"]
        # percentile intervals from 60 draws: same location and size as the profile ones
        assert abs(a.loc[n, "lower"] - prof.loc[n, "lower"]) < 0.5 * width, n
        assert abs(a.loc[n, "upper"] - prof.loc[n, "upper"]) < 0.5 * width, n


@pytest.mark.parametrize("case", ["sleep_rs", "sleep_3level", "penicillin"])
def test_lbfgsb_fallback_same_optimum(ref, case):
    """Without nlopt the engine uses scipy L-BFGS-B (+ restart, Newton polish): same fit."""
    c = ref["cases"][case]
    m = _fit(ref, case, control={"optimizer": "L-BFGS-B"})
    assert abs(m.objective - c["reml_criterion"]) < 1e-3
    # lme4 orders factors by number of levels, we by the formula: compare sorted
    for k, v in zip(sorted(m.theta), sorted(c["theta"].values())):
        assert abs(k - v) < 1e-3 * max(abs(v), 1.0)
