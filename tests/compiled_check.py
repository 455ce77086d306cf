"""The compiled collapsed density against the PyMC (PyTensor) marginal model: the exact check
shared by the compiled-engine tests."""

import numpy as np

from bayes_hlm.backends.marginal import build_marginal_model
from bayes_hlm.backends.numba_density import logp_grad, pack, unsupported_reason


def _cov_packed(xt, q):
    """PyMC's LKJCholeskyCov value (packed rows of L, log diagonal) from this engine's
    coordinates (log SDs, atanh of the partial correlations); complex-step safe."""
    sd, z = np.exp(xt[:q]), xt[q:]
    W = np.zeros((q, q), dtype=xt.dtype)
    t = 0
    for i in range(q):
        P = 1.0
        for j in range(i):
            c = np.tanh(z[t])
            W[i, j] = c * P
            P = P * np.sqrt(1.0 - c * c)
            t += 1
        W[i, i] = P
    L = sd[:, None] * W
    return np.array([np.log(L[i, j]) if i == j else L[i, j] for i in range(q) for j in range(i + 1)])


def _log_jac(f, x):
    """log|det ∂f/∂x| by complex-step differentiation (exact to rounding)."""
    h = 1e-30
    J = np.array([np.imag(f(x + 1j * h * e)) / h for e in np.eye(len(x))]).T
    return np.linalg.slogdet(J)[1]


def _point(spec, pk, names, x):
    """The parameter vector ``x`` as a point of the PyMC model; and log|Jacobian| between them."""
    p = spec.design.p
    point, k, jac = {names[0]: x[:p], names[1]: x[p]}, p + 1, 0.0
    for gi, gt in enumerate(spec.design.groups):
        if gt.correlated:
            q = gt.q
            n = q + q * (q - 1) // 2
            key = next(n_ for n_ in names if n_.startswith(f"_chol{gi}"))
            point[key] = _cov_packed(x[k:k + n], q)
            jac += _log_jac(lambda v: _cov_packed(v, q), x[k:k + n].astype(complex))
            k += n
        else:
            keys = [n for n in names if n.startswith(f"_sd{gi}__")]
            for j in range(gt.q):
                point[keys[j]] = x[k]
                k += 1
    for st in pk.sampled:  # same coordinates: z (non-centred) or m (centred)
        key = f"_{'m' if st.centered else 'z'}{st.term}__{spec.design.groups[st.term].factor}"
        point[key] = x[st.x_at:st.x_at + st.levels * st.q].reshape(st.levels, st.q)
    assert set(point) == set(names)
    return point, jac


def check_density(spec, ps, points=4, seed=3):
    """Compiled log density = PyMC marginal model's + log|Jacobian| + constant, and its
    gradient = central finite differences, at ``points`` random points near the start."""
    model, stats = build_marginal_model(spec.design, ps)
    assert unsupported_reason(spec.design, ps, stats) is None
    pk = pack(spec.design, ps, stats)
    logp = model.compile_logp()
    names = [v.name for v in model.value_vars]
    rng = np.random.default_rng(seed)
    diffs = []
    check = np.sort(rng.choice(pk.ndim, size=min(pk.ndim, 40), replace=False))
    for _ in range(points):
        x = pk.init + rng.normal(scale=0.3, size=pk.ndim)
        g = np.zeros(pk.ndim)
        lp = logp_grad(x, pk.buf, g)
        num = [(logp_grad(x + h, pk.buf, np.zeros(pk.ndim)) - logp_grad(x - h, pk.buf, np.zeros(pk.ndim)))
               / 2e-6 for h in np.eye(pk.ndim)[check] * 1e-6]
        np.testing.assert_allclose(g[check], num, rtol=1e-5, atol=1e-5 * (1 + np.abs(g).max()))
        point, jac = _point(spec, pk, names, x)
        diffs.append(lp - (logp(point) + jac))
    assert np.ptp(diffs) < 1e-9 * (1 + abs(diffs[0]))
    return pk


