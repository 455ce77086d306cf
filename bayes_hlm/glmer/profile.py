"""Profile-likelihood intervals of glmer's fixed effects (``confint(m, method = "profile")``
for the ``beta`` rows).

For each fixed effect ``β_j`` the criterion (Laplace / AGQ, as fitted) is minimised over θ and
the other fixed effects with ``β_j`` held at a value ``b`` (BOBYQA from the fit's estimates);
the interval's ends are where that profile deviance exceeds the minimum by the χ²₁ quantile
of ``level``, found by Brent's method between the estimate and a Wald-scaled bracket (lme4
interpolates a spline through a grid of profile points; the root here is the exact one).
"""

from __future__ import annotations

import numpy as np
from scipy import special as _sf

from ..errors import BayesHLMError
from .optimize import DEFAULT_CONTROL, bobyqa

__all__ = ["profile_fixed"]


def _profile_dev(res, j: int):
    fit = res.fit
    dev = fit.devfun
    k = len(fit.theta)
    f2 = dev.criterion(fit.nagq) if fit.nagq >= 1 else None
    if f2 is None:
        raise BayesHLMError("profile intervals need a Laplace / AGQ fit (nagq >= 1)")
    x_hat = np.concatenate([fit.theta, fit.beta])
    free = np.array([i for i in range(len(x_hat)) if i != k + j])
    lower = np.concatenate([fit.model.layout.lower, np.full(len(fit.beta), -np.inf)])[free]
    ctl = {**DEFAULT_CONTROL, "xtol_abs": 1e-6, "ftol_abs": 1e-7}
    start = {"x": x_hat[free].copy()}

    def pdev(b):
        def g(z):
            x = x_hat.copy()
            x[free] = z
            x[k + j] = b
            return f2(x)
        o = bobyqa(g, start["x"], lower, ctl)
        start["x"] = o.x
        return o.fun
    return pdev


def profile_fixed(res, level: float, parm=None):
    """Lower / upper profile bounds of the fixed effects named in ``parm`` (default all)."""
    import pandas as pd
    from scipy.optimize import brentq

    names = list(res.fixed_names)
    which = names if parm is None else [p for p in parm if p in names]
    crit = float(_sf.chdtri(1, 1 - level))          # χ²₁ quantile
    se = np.sqrt(np.diag(res.vcov()))
    d0 = res.objective
    rows = {}
    for name in which:
        j = names.index(name)
        pdev = _profile_dev(res, j)
        b0 = res.beta[j]
        ends = []
        for sign in (-1.0, 1.0):
            h = lambda b: pdev(b) - d0 - crit          # noqa: E731
            step = 1.5 * np.sqrt(crit) * se[j]
            far = b0 + sign * step
            for _ in range(8):                         # widen until the profile crosses
                if h(far) > 0:
                    break
                far = b0 + sign * (abs(far - b0) * 2)
            else:
                ends.append(np.nan)
                continue
            ends.append(brentq(h, b0, far, xtol=1e-6 * max(1.0, abs(b0))) if sign > 0
                        else brentq(h, far, b0, xtol=1e-6 * max(1.0, abs(b0))))
        rows[name] = ends
    return pd.DataFrame(rows, index=["lower", "upper"]).T
