"""The Poisson–lognormal integral of one random intercept, without per-call quadrature.

For a Poisson pseudo-row (total count ``Y``, rate ``S e^b``, ``b ~ N(0, σ²)``)::

    F̃(Y, S, σ) = log ∫ exp(Y b − S e^b) N(b | 0, σ²) db

(the Poisson log likelihood without ``Y log S`` and ``log Y!``). Its integrand's mode is
explicit through Lambert's W: with ``W`` the root of ``W + log W = ℓ``,
``ℓ = log(σ² S) + σ² Y``, the mode is ``b̂ = σ² Y − W``, the rate there ``μ̂ = W / σ²`` and the
curvature ``C² = 1 + W`` (in ``v = b / σ``). In the whitened variable ``w = C (v − v̂)`` the
integrand is exactly ``exp(r(w)) φ(w)`` with::

    r(w) = −β² (e^{ρw} − 1 − ρw − ρ²w²/2) / ρ²,    ρ = σ / C,   β² = 1 − τ,   τ = 1 / C²,

so ``F̃ = Y b̂ − μ̂ − b̂² / (2σ²) − ½ log C² + log J(ρ², τ)`` with ``J = E_φ[exp r(w)]``: a
function of *two* numbers only, whatever the data. :func:`table` holds ``log J / ρ²`` as a
2-D Chebyshev series in ``(ρ² / RHO_MAX², τ)`` over ``ρ ≤ RHO_MAX``, ``τ ∈ [0, 1]``, fitted
once (at import, 224 values) from a 161-node Gauss–Hermite rule; its error is below
:data:`TABLE_TOL` in ``log J`` everywhere in that domain (``tests/test_poisson_lognormal.py``
checks it against independent quadrature). A group's term then costs a few ``log`` (W's
Halley steps) and a short Chebyshev sum instead of a quadrature's 2K ``exp`` (K ≈ 13 for
1e-11 per group at ρ ≈ 0.1); groups with ``ρ > RHO_MAX`` (small counts) keep the quadrature.

Along a fixed ``σ`` (one gradient) ``ρ² = σ² τ``, so the table restricted to that line is a
polynomial of degree ``_NX + _NT − 2`` in ``τ``: :func:`line_series` re-expands it exactly on
the ``τ`` range of the groups at hand and drops the trailing coefficients (their sum, the
error bound, below 2e-15 in Q), leaving a short series per gradient.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .._numba_cache import install as _install_numba_cache

__all__ = ["RHO_MAX", "TABLE_TOL", "lambert_w_log", "line_series", "log_j_reference", "table"]

#: the table covers ρ = σ / C ≤ RHO_MAX
RHO_MAX = 0.3
#: bound on the table's error in log J over its domain (checked in the tests)
TABLE_TOL = 1e-12
#: Chebyshev degrees + 1 in x = ρ² / RHO_MAX² and in τ
_NX, _NT = 14, 16
#: points of the per-gradient line re-expansion: the restricted polynomial's degree + 1
LINE_N = _NX + _NT - 1
_GH_NODES = 161


def _cubic_tail(y: np.ndarray) -> np.ndarray:
    """``e^y − 1 − y − y²/2`` without cancellation (series for |y| < 2)."""
    acc = np.zeros_like(y)
    for k in range(40, 2, -1):
        acc = acc * y + 1.0 / math.factorial(k)
    return np.where(np.abs(y) < 2.0, y ** 3 * acc, np.expm1(y) - y - 0.5 * y * y)


def log_j_reference(rho2, tau, nodes: int = _GH_NODES) -> np.ndarray:
    """``log J(ρ², τ)`` by a ``nodes``-point Gauss–Hermite rule (NumPy, any shapes)."""
    t, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    rho2, tau = np.broadcast_arrays(np.asarray(rho2, float), np.asarray(tau, float))
    rho = np.sqrt(np.maximum(rho2, 1e-300))[..., None]
    r = -(1.0 - tau[..., None]) * _cubic_tail(rho * t) / (rho * rho)
    return np.log1p(np.sum(w * np.expm1(r), axis=-1))


def _cheb_nodes(n: int) -> np.ndarray:
    return np.cos(np.pi * (np.arange(n) + 0.5) / n)


def _cheb_coef_matrix(n: int) -> np.ndarray:
    """``A`` with ``c = A f`` for values ``f`` at the n first-kind Chebyshev nodes."""
    X = _cheb_nodes(n)
    A = (2.0 / n) * np.cos(np.outer(np.arange(n), np.arccos(X)))
    A[0] *= 0.5
    return A


def _fit_table() -> tuple[np.ndarray, np.ndarray]:
    X, T = _cheb_nodes(_NX), _cheb_nodes(_NT)
    x = 0.5 * (X + 1.0)  # ρ² / RHO_MAX², never 0 at these nodes
    tau = 0.5 * (T + 1.0)
    rho2 = x[:, None] * RHO_MAX ** 2
    Q = log_j_reference(rho2, tau[None, :]) / rho2
    c = _cheb_coef_matrix(_NX) @ Q @ _cheb_coef_matrix(_NT).T
    cx = np.polynomial.chebyshev.chebder(c, axis=0) * 2.0  # ∂/∂x (X = 2x − 1)
    cx = np.vstack([cx, np.zeros((1, _NT))])
    return np.ascontiguousarray(c), np.ascontiguousarray(cx)


_C, _CX = _fit_table()
_LINE_A = _cheb_coef_matrix(LINE_N)
_LINE_NODES = _cheb_nodes(LINE_N)


def table() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(c, cx, A, nodes)``: the coefficients of ``Q = log J / ρ²`` and of ``∂Q/∂x`` (each
    (_NX, _NT), in ``(X, T) = (2x − 1, 2τ − 1)``, ``x = ρ² / RHO_MAX²``) and the line
    re-expansion's matrix and nodes (:func:`line_series`)."""
    return _C, _CX, _LINE_A, _LINE_NODES


_install_numba_cache()  # stamps cover every compiled file (bayes_hlm._numba_cache)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _cheb2d(c, X, T):
    """``Σ_jk c_jk T_j(X) T_k(T)`` (Clenshaw in X of the Clenshaw sums in T)."""
    nx, nt = c.shape
    b1 = 0.0
    b2 = 0.0
    for j in range(nx - 1, -1, -1):
        d1 = 0.0
        d2 = 0.0
        for k in range(nt - 1, -1, -1):
            d1, d2 = 2.0 * T * d1 - d2 + c[j, k], d1
        cj = d1 - T * d2
        if j == 0:
            return cj + X * b1 - b2
        b1, b2 = 2.0 * X * b1 - b2 + cj, b1
    return 0.0


@numba.njit(cache=True, nogil=True, error_model="numpy")
def line_series(c, A, nodes, sig2, tlo, thi, out):
    """Chebyshev coefficients (into ``out``, length LINE_N) of ``τ ↦ Q(σ² τ / RHO_MAX², τ)``
    on ``[tlo, thi]`` (series ``c``: the table or its x-derivative); returns how many to keep:
    the dropped coefficients sum to less than 2e-15 (the re-expansion is exact otherwise,
    the restriction being a polynomial of degree LINE_N − 1)."""
    n = nodes.shape[0]
    f = np.empty(n)
    half, mid = 0.5 * (thi - tlo), 0.5 * (thi + tlo)
    for i in range(n):
        tau = mid + half * nodes[i]
        f[i] = _cheb2d(c, 2.0 * sig2 * tau / (RHO_MAX * RHO_MAX) - 1.0, 2.0 * tau - 1.0)
    for j in range(n):
        s = 0.0
        for i in range(n):
            s += A[j, i] * f[i]
        out[j] = s
    keep = n
    tail = 0.0
    while keep > 1:
        tail += abs(out[keep - 1])
        if tail >= 2e-15:
            break
        keep -= 1
    return keep


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _halley(W, ell):
    """One Halley step for ``W + log W = ℓ`` (cubic convergence; one log, one division)."""
    f = W + math.log(W) - ell
    return W - 2.0 * f * W * (W + 1.0) / (2.0 * (W + 1.0) * (W + 1.0) + f)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def lambert_w_log(ell):
    """``W ≥ 0`` with ``W + log W = ℓ`` (Lambert's W of ``e^ℓ``) to ~1 ulp. For ℓ ≥ 1.5 a
    fixed two Halley steps (one for ℓ ≥ 12) from the asymptotic series ``ℓ − L + L/ℓ + …``
    (``L = log ℓ``; relative error after them ≤ 3e-16 on a dense grid, tested); below,
    Halley steps to convergence from Winitzki's approximation of ``W(e^ℓ)``."""
    if ell >= 1.5:
        L = math.log(ell)
        il = 1.0 / ell
        W = ell - L + L * il * (1.0 + il * (0.5 * (L - 2.0)
                                            + il * (L * (2.0 * L - 9.0) + 6.0) / 6.0))
        W = _halley(W, ell)
        return W if ell >= 12.0 else _halley(W, ell)
    if ell < -30.0:  # W = z − z² + O(z³), z = e^ℓ < 1e-13
        z = math.exp(ell)
        return z - z * z
    L = math.log1p(math.exp(ell))
    W = L * (1.0 - math.log1p(L) / (2.0 + L))
    for _ in range(12):
        Wn = max(_halley(W, ell), 0.5 * W)
        if abs(Wn - W) <= 4e-16 * W:
            return Wn
        W = Wn
    return W
