"""Finite-difference gradients / Hessians with Richardson extrapolation (numDeriv-like).

``f`` maps an (k,) vector to an (m,) vector; :func:`derivs` returns the (m, k) Jacobian and,
when asked, the (m, k, k) Hessians, from one shared stencil per step size.
"""

from __future__ import annotations

import numpy as np


def _stencil(f, x, h, f0, want_hessian):
    k = len(x)
    m = f0.shape[0]
    grad = np.empty((m, k))
    hess = np.empty((m, k, k)) if want_hessian else None
    fp = np.empty((k, m))
    fm = np.empty((k, m))
    for i in range(k):
        e = np.zeros(k)
        e[i] = h[i]
        fp[i] = f(x + e)
        fm[i] = f(x - e)
        grad[:, i] = (fp[i] - fm[i]) / (2 * h[i])
        if want_hessian:
            hess[:, i, i] = (fp[i] - 2 * f0 + fm[i]) / (h[i] ** 2)
    if want_hessian:
        for i in range(k):
            for j in range(i + 1, k):
                ei = np.zeros(k)
                ej = np.zeros(k)
                ei[i] = h[i]
                ej[j] = h[j]
                v = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) \
                    / (4 * h[i] * h[j])
                hess[:, i, j] = v
                hess[:, j, i] = v
    return grad, hess


def derivs(f, x, *, want_hessian=False, rel_step=1e-3, min_step=1e-4, levels=2):
    """Central differences at steps h, h/2, ... with Richardson extrapolation (order 2 terms)."""
    x = np.asarray(x, dtype=float)
    f0 = np.atleast_1d(np.asarray(f(x), dtype=float))
    h = np.maximum(np.abs(x) * rel_step, min_step)
    G, H = [], []
    for lv in range(levels):
        g, hs = _stencil(f, x, h / (2 ** lv), f0, want_hessian)
        G.append(g)
        H.append(hs)
    # Richardson: errors in even powers of h
    for it in range(1, levels):
        fac = 4.0 ** it
        G = [(fac * G[i + 1] - G[i]) / (fac - 1) for i in range(len(G) - 1)]
        if want_hessian:
            H = [(fac * H[i + 1] - H[i]) / (fac - 1) for i in range(len(H) - 1)]
    out = {"f": f0, "grad": G[0]}
    if want_hessian:
        out["hess"] = H[0]
    return out
