"""reml and glmer share one θ ↔ Λ layout, one BOBYQA wrapper and one BLAS-thread limiter
(as lme4 shares them between lmer and glmer)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayes_hlm.spec.build import build_spec
from bayes_hlm.statistics.theta_map import ThetaMap, make_theta_map


def _frame(seed=0, n=400):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(size=n), "z": rng.normal(size=n),
                         "g": rng.integers(0, 20, n).astype(str),
                         "h": rng.integers(0, 7, n).astype(str),
                         "y": rng.integers(0, 2, n)})


def test_theta_map_layout_offsets_and_correlation():
    spec = build_spec("y ~ x + (x | g) + (1 + z || h)", _frame())
    tm = make_theta_map(spec.design)
    g, h = tm.factor("g"), tm.factor("h")
    # (x | g): 3 elements, lower triangle column-major; (1 + z || h): its diagonal only
    assert tm.n_theta == 5
    assert list(tm.lower) == [0.0, -np.inf, 0.0, 0.0, 0.0]
    assert list(tm.theta0) == [1.0, 0.0, 1.0, 1.0, 1.0]
    assert g.correlated == (True,) and not any(h.correlated)
    # u: per factor, level-major, factors one after the other
    assert [f.offset for f in tm.factors] == [0, tm.factors[0].size]
    assert tm.n_u == g.size + h.size == 2 * 20 + 2 * 7
    L = tm.lambdas(np.array([2.0, 0.5, 3.0, 4.0, 5.0]))
    assert np.array_equal(L[0], [[2.0, 0.0], [0.5, 3.0]])
    assert np.array_equal(L[1], np.diag([4.0, 5.0]))


def test_reml_and_glmer_use_the_same_layout():
    from bayes_hlm.glmer.glmfamily import make_glm_family
    from bayes_hlm.glmer.model import build_model
    from bayes_hlm.reml.criterion import DevFun

    spec = build_spec("y ~ x + (x | g) + (1 | h)", _frame(1), family="bernoulli")
    model = build_model(spec, make_glm_family("binomial", "logit"))
    tm = DevFun(spec.design).tmap
    assert isinstance(model.layout, ThetaMap) and isinstance(tm, ThetaMap)
    assert model.layout.names == tm.names
    assert np.array_equal(model.layout.lower, tm.lower)


def test_one_bobyqa_wrapper_both_settings():
    from bayes_hlm.glmer import optimize as gopt
    from bayes_hlm.reml.optimize import bobyqa

    assert gopt._nlopt_bobyqa is bobyqa
    f = lambda x: (x[0] - 1.5) ** 2 + (x[1] + 2.0) ** 2 + 0.5 * x[0] * x[1]   # noqa: E731
    lower = np.array([0.0, -np.inf])
    r = bobyqa(f, [1.0, 0.0], lower)                    # lmer's nloptwrap settings
    xs = np.linalg.solve([[2.0, 0.5], [0.5, 2.0]], [3.0, -4.0])
    assert np.allclose(r.x, xs, atol=1e-3) and r.success and r.nit > 0
    assert r.best_f == r.fun
    g = gopt.bobyqa(f, [1.0, 0.0], lower, gopt.DEFAULT_CONTROL)   # glmer's settings
    assert np.allclose(g.x, xs, atol=1e-5) and g.fun <= r.fun + 1e-12
    # the bound holds
    rb = bobyqa(lambda x: (x[0] + 1.0) ** 2, [0.5], np.array([0.0]))
    assert rb.x[0] >= 0.0 and abs(rb.x[0]) < 1e-6


def test_one_blas_thread_limiter():
    import contextlib

    from bayes_hlm.glmer import api as gapi
    from bayes_hlm.reml.api import blas_threads

    assert gapi.blas_threads is blas_threads
    assert isinstance(blas_threads(None), contextlib.nullcontext)
    with blas_threads(1):
        pass
