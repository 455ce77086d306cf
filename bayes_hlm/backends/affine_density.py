"""A compiled density sampled in whitened coordinates: ``x = m + C z``.

NUTS with a diagonal (or nutpie's low-rank) mass matrix leaves the correlations of a small,
near-Gaussian posterior partly in place: the 10M-row Poisson model's 7 treatment-coded fixed
effects correlate at 0.5-0.6, and nutpie took 4.8 leapfrogs a draw where a standard normal
of the same dimension takes 3.8. Sampling ``z`` with ``x = m + C z`` (``m`` the posterior
mode, ``C`` the Cholesky factor of the inverse of the exact Hessian there, by central
differences of the exact gradient) removes them: the log density of ``z`` is that of ``x``
plus the constant ``log |det C|`` (left out: densities are up to a constant), its gradient
``Cᵀ ∇ₓ``. Any ``m`` and invertible ``C`` give the same posterior; a good pair only makes the
sampler's work easier. The draws are mapped back exactly (:meth:`Whitening.to_model`).

Short trajectories: on a near-standard-normal density of at most :data:`SHORT_MAX_DIM`
dimensions, NUTS's doubling often runs 7 leapfrogs (≈ one period of the oscillation) where
3 already give an almost independent draw; nutpie's tree depth is then capped at
:data:`SHORT_DEPTH` (still exact NUTS: any depth limit keeps the posterior). Only where the
whitened density is measured to be near standard normal (:func:`gaussian_deviation` ≤
:data:`GAUSS_TOL`): a skewed posterior (few groups, an SD near 0) needs the longer
trajectories in its tails (measured: half the ESS there with the cap). Measurements:
benchmarks/README.md, "10M rows: whitened NUTS".

The wrapper kernel reads ``m`` and ``C`` from the front of its buffer,
``[length, n, m (n), C (n x n, row-major), the inner density's buffer]``, and passes the
inner buffer (a view) to the inner kernel unchanged, so any ``logp_grad(x, buf, grad)``
kernel can be whitened (:func:`kernel`).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import types
from dataclasses import dataclass, replace

import numpy as np

#: most parameters whitened (a dense C: O(n²) per gradient, and 4n gradients to find it)
MAX_DIM = 64
#: nutpie's tree depth on a near-standard-normal whitened density (≤ 3 leapfrogs a draw)
SHORT_DEPTH = 2
#: largest dimension with short trajectories (standard normal, 2 chains x (1000 + 1000):
#: ESS per gradient 205 vs 150 at 8 dimensions, equal at 16, 40 vs 125 at 64)
SHORT_MAX_DIM = 10
#: largest |log density − standard normal's| (nats, relative to the mode) at the check points
#: of :func:`gaussian_deviation` for short trajectories (measured: 0.005-0.15 where they
#: helped, 0.6-3.3 on skewed posteriors of 10-20 groups)
GAUSS_TOL = 0.25
_HEAD = 2


@dataclass(frozen=True)
class Whitening:
    """``x = m + C z`` (``C`` lower triangular) and how near standard normal the whitened
    density is (:func:`gaussian_deviation`; NaN when not measured)."""

    m: np.ndarray
    C: np.ndarray
    deviation: float = float("nan")

    @property
    def n(self) -> int:
        return len(self.m)

    def to_model(self, z: np.ndarray) -> np.ndarray:
        """Model coordinates ``x`` of whitened draws ``z`` (..., n)."""
        return self.m + np.asarray(z, dtype=float) @ self.C.T

    def to_white(self, x: np.ndarray) -> np.ndarray:
        """Whitened coordinates ``z`` of model points ``x`` (..., n)."""
        from scipy.linalg import solve_triangular

        x = np.asarray(x, dtype=float)
        return solve_triangular(self.C, (x - self.m).reshape(-1, self.n).T, lower=True).T.reshape(x.shape)

    def short_trajectories(self) -> bool:
        """True where NUTS's tree depth is capped at :data:`SHORT_DEPTH` (module docstring)."""
        return self.n <= SHORT_MAX_DIM and bool(self.deviation <= GAUSS_TOL)

    def nuts_settings(self) -> dict:
        """nutpie settings of this whitened density (``maxdepth`` for short trajectories)."""
        return {"maxdepth": SHORT_DEPTH} if self.short_trajectories() else {}


def _grad(logp, buf, x):
    g = np.empty(len(x))
    v = logp(np.asarray(x, dtype=float), buf, g)
    return v, g


def hessian(logp, buf, x: np.ndarray) -> np.ndarray:
    """``−∇² log p`` at ``x`` by central differences of the exact gradient (symmetrised):
    a first pass with steps 1e-4 finds each coordinate's curvature, a second with steps of
    1% of the implied standard deviation (4n gradients in all)."""
    x = np.asarray(x, dtype=float)
    n = len(x)
    h = np.full(n, 1e-4)
    H = np.empty((n, n))
    for _ in range(2):
        for i in range(n):
            e = np.zeros(n)
            e[i] = h[i]
            H[:, i] = -(_grad(logp, buf, x + e)[1] - _grad(logp, buf, x - e)[1]) / (2.0 * h[i])
        H = 0.5 * (H + H.T)
        d = np.diag(H)
        if not (np.all(np.isfinite(d)) and np.all(d > 0)):
            return H
        h = 1e-2 / np.sqrt(d)
    return H


def whiten(logp, buf, mode: np.ndarray, seed: int = 0) -> Whitening | None:
    """The whitening of the density ``logp(x, buf, grad)`` at its mode ``mode`` (module
    docstring), with its :func:`gaussian_deviation`; ``None`` where there is none (more than
    :data:`MAX_DIM` parameters, a log density or Hessian that is not finite, or a Hessian
    that is not positive definite: not a mode)."""
    mode = np.asarray(mode, dtype=float)
    n = len(mode)
    if n > MAX_DIM or not np.all(np.isfinite(mode)) or not np.isfinite(_grad(logp, buf, mode)[0]):
        return None
    H = hessian(logp, buf, mode)
    if not np.all(np.isfinite(H)):
        return None
    try:
        R = np.linalg.cholesky(H)  # H = R Rᵀ, Σ = H⁻¹ = R⁻ᵀ R⁻¹
        C = np.linalg.cholesky(np.linalg.inv(H))
    except np.linalg.LinAlgError:
        return None
    if not (np.all(np.isfinite(C)) and np.all(np.diag(R) > 0)):
        return None
    w = Whitening(m=mode, C=C)
    return replace(w, deviation=gaussian_deviation(logp, buf, w, seed))


def gaussian_deviation(logp, buf, w: Whitening, seed: int = 0) -> float:
    """``max |log p(m + C z) − log p(m) + |z|²/2|`` over ``z = ±2 e_i`` (each axis) and 2n
    random directions at radius √n (where a standard normal's draws lie): 0 for a Gaussian
    posterior whose mode and Hessian ``w`` has; NaN-free (a non-finite value counts as ∞)."""
    n = w.n
    f0 = _grad(logp, buf, w.m)[0]
    rng = np.random.default_rng(seed)
    zs = [s * np.eye(n)[i] for i in range(n) for s in (-2.0, 2.0)]
    for _ in range(2 * n):
        u = rng.normal(size=n)
        zs.append(u * np.sqrt(n) / np.linalg.norm(u))
    worst = 0.0
    for z in zs:
        d = abs(_grad(logp, buf, w.to_model(z))[0] - f0 + 0.5 * float(z @ z))
        worst = max(worst, d if np.isfinite(d) else np.inf)
    return float(worst)


def pack_buffer(w: Whitening, buf: np.ndarray) -> np.ndarray:
    """The wrapper kernel's buffer: ``[length, n, m, C (row-major), buf]``."""
    out = np.concatenate([np.array([0.0, float(w.n)]), w.m, np.ascontiguousarray(w.C).ravel(),
                          np.asarray(buf, dtype=float)])
    out[0] = len(out)
    return out


def pack(w: Whitening, packed):
    """``packed`` (a packed model with ``buf``, ``ndim``, ``init``) for the whitened kernel:
    its buffer :func:`pack_buffer`, its start point in whitened coordinates."""
    return replace(packed, buf=pack_buffer(w, packed.buf), init=w.to_white(packed.init))


def initial_point(w: Whitening, init: np.ndarray, jitter: bool = True):
    """nutpie's ``initial_point_func`` of the whitened model: the unwhitened model's start
    (``init`` jittered by U(-1, 1), PyMC's default) mapped to ``z``, so that chains start
    as far apart as they did."""
    init = np.asarray(init, dtype=float)

    def point(seed):
        rng = np.random.default_rng(seed)
        return w.to_white(init + (rng.uniform(-1.0, 1.0, len(init)) if jitter else 0.0))

    return point


def _affine_logp(z, buf, grad):
    """``log p(m + C z)`` and its gradient ``Cᵀ ∇ₓ`` (``C`` lower triangular); ``m``, ``C``
    and the inner kernel's buffer from ``buf`` (module docstring). A template:
    :func:`kernel` binds ``inner`` per kernel."""
    n = z.shape[0]
    k = 2 + n + n * n
    x = np.empty(n)
    for i in range(n):
        s = buf[2 + i]
        for j in range(i + 1):
            s += buf[2 + n + i * n + j] * z[j]
        x[i] = s
    gx = np.empty(n)
    val = inner(x, buf[k:], gx)  # noqa: F821 - bound per kernel in the function's globals
    for j in range(n):
        s = 0.0
        for i in range(j, n):
            s += buf[2 + n + i * n + j] * gx[i]
        grad[j] = s
    return val


@functools.cache
def kernel(inner):
    """The whitened kernel ``logp_grad(z, buf, grad)`` of the density kernel ``inner`` (a
    ``cache=True`` Numba dispatcher), itself cached on disk: the template's code re-bound with
    ``inner`` as a global and filed under ``inner``'s source file and line (as
    :func:`.nuts_callbacks._bound_logp` does: editing the density invalidates it), its name
    carrying a hash of the template (editing it does too)."""
    import numba

    f = inner.py_func
    tag = hashlib.sha1(inspect.getsource(_affine_logp).encode()).hexdigest()[:8]
    name = f"{f.__name__}_affine{tag}"
    code = _affine_logp.__code__.replace(co_name=name, co_filename=f.__code__.co_filename,
                                         co_firstlineno=f.__code__.co_firstlineno)
    g = types.FunctionType(code, {"np": np, "inner": inner}, name)
    g.__qualname__ = f"{f.__qualname__}_affine{tag}"
    g.__module__ = f.__module__
    g.__doc__ = _affine_logp.__doc__
    return numba.njit(cache=True, nogil=True, error_model="numpy")(g)
