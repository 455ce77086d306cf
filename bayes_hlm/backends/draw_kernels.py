"""The exact group-effect draws' Numba kernels (:mod:`.conditional_draws` documents the
algebra): one factor (:func:`_block_draws`) and two nested factors (:func:`_nested_draws`), each
with its serial twin. NumPy and Numba only, so that a background child compiles them on a cold
cache while the fit loads its samplers (:func:`compile_draws`, #18 item 5)."""

from __future__ import annotations

import numba
import numpy as np

from .group_kernel import cholesky_lower, sandwich
from .kernel_variants import serial_twin


@numba.njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def _block_draws(e, A, Lam, sigma, xi):
    """``b = Λ R⁻ᵀ(R⁻¹Λᵀe + σξ)`` per draw and group, ``RRᵀ = I + ΛᵀAΛ`` (no noise: the mean).

    One fused loop (parallel over draws) instead of ~10 batched NumPy passes over
    (S, G, q, q) temporaries; ``q`` is small, so the per-group algebra stays in registers.
    """
    S, G, q = e.shape
    out = np.empty((S, G, q))
    noisy = xi.shape[0] > 0
    for s in numba.prange(S):
        L = Lam[s]
        AL = np.empty((q, q))
        M = np.empty((q, q))
        R = np.empty((q, q))
        z = np.empty(q)
        for g in range(G):
            sandwich(A, g, L, 1.0, AL, M)  # M = I + ΛᵀAΛ
            cholesky_lower(M, R)
            # z = R⁻¹ Λᵀ e (+ σ ξ)
            for i in range(q):
                t = 0.0
                for k in range(q):
                    t += L[k, i] * e[s, g, k]
                for k in range(i):
                    t -= R[i, k] * z[k]
                z[i] = t / R[i, i]
            if noisy:  # after the whole forward solve: the noise is not propagated through it
                for i in range(q):
                    z[i] += sigma[s] * xi[s, g, i]
            # w = R⁻ᵀ z (in place), b = Λ w
            for i in range(q - 1, -1, -1):
                t = z[i]
                for k in range(i + 1, q):
                    t -= R[k, i] * z[k]
                z[i] = t / R[i, i]
            for i in range(q):
                t = 0.0
                for k in range(q):
                    t += L[i, k] * z[k]
                out[s, g, i] = t
    return out


_block_draws_serial = serial_twin(_block_draws, nogil=True, error_model="numpy")


@numba.njit(cache=True, parallel=True, nogil=True, error_model="numpy")
def _nested_draws(eo, Ao, Lamo, ei, Ai, Cc, Lami, ptr, sigma, xio, xii):
    """Nested effects per draw (parallel over draws): the outer effect from its marginal, then
    each inner effect given it (module docstring), all in relative units ``b = Λ w``.

    Per outer level ``a`` and its inner levels ``j`` (``ptr[a]:ptr[a+1]``):
    ``R_jR_jᵀ = I + Λ_iᵀA_jΛ_i``, ``u_j = R_j⁻¹Λ_iᵀe_j``, ``V_j = R_j⁻¹Λ_iᵀC_jΛ_o``,
    ``R_SR_Sᵀ = I + Λ_oᵀA_aΛ_o − Σ_j V_jᵀV_j``, ``ẽ = Λ_oᵀe_a − Σ_j V_jᵀu_j``;
    ``w_o = R_S⁻ᵀ(R_S⁻¹ẽ + σξ_o)``, ``w_j = R_j⁻ᵀ(u_j − V_j w_o + σξ_j)``.
    No noise arrays (size 0): the conditional mean.
    """
    S, Go, qo = eo.shape
    Gi, qi = ei.shape[1], ei.shape[2]
    nmax = 0
    for a in range(Go):
        nmax = max(nmax, ptr[a + 1] - ptr[a])
    noisy = xio.shape[0] > 0
    bo = np.empty((S, Go, qo))
    bi = np.empty((S, Gi, qi))
    for s in numba.prange(S):
        Lo, Li = Lamo[s], Lami[s]
        ALo, Mo, RS = np.empty((qo, qo)), np.empty((qo, qo)), np.empty((qo, qo))
        ALi, Mi = np.empty((qi, qi)), np.empty((qi, qi))
        R = np.empty((nmax, qi, qi))
        V = np.empty((nmax, qi, qo))
        u = np.empty((nmax, qi))
        K = np.empty((qi, qo))
        CL = np.empty((qi, qo))
        et, zo, wo = np.empty(qo), np.empty(qo), np.empty(qo)
        t, zi = np.empty(qi), np.empty(qi)
        for a in range(Go):
            sandwich(Ao, a, Lo, 1.0, ALo, Mo)
            for i in range(qo):
                v = 0.0
                for k in range(qo):
                    v += Lo[k, i] * eo[s, a, k]
                et[i] = v
            j0, n = ptr[a], ptr[a + 1] - ptr[a]
            for jj in range(n):
                j = j0 + jj
                sandwich(Ai, j, Li, 1.0, ALi, Mi)
                cholesky_lower(Mi, R[jj])
                for i in range(qi):  # u_j = R_j⁻¹ Λ_iᵀ e_j
                    v = 0.0
                    for k in range(qi):
                        v += Li[k, i] * ei[s, j, k]
                    for k in range(i):
                        v -= R[jj, i, k] * u[jj, k]
                    u[jj, i] = v / R[jj, i, i]
                for i in range(qi):  # K = Λ_iᵀ C_j Λ_o
                    for b in range(qo):
                        v = 0.0
                        for k in range(qo):
                            v += Cc[j, i, k] * Lo[k, b]
                        CL[i, b] = v
                for i in range(qi):
                    for b in range(qo):
                        v = 0.0
                        for k in range(qi):
                            v += Li[k, i] * CL[k, b]
                        K[i, b] = v
                for b in range(qo):  # V_j = R_j⁻¹ K
                    for i in range(qi):
                        v = K[i, b]
                        for k in range(i):
                            v -= R[jj, i, k] * V[jj, k, b]
                        V[jj, i, b] = v / R[jj, i, i]
                for b in range(qo):  # Schur complement and reduced right-hand side
                    for c in range(qo):
                        v = 0.0
                        for k in range(qi):
                            v += V[jj, k, b] * V[jj, k, c]
                        Mo[b, c] -= v
                    v = 0.0
                    for k in range(qi):
                        v += V[jj, k, b] * u[jj, k]
                    et[b] -= v
            cholesky_lower(Mo, RS)
            for i in range(qo):  # z = R_S⁻¹ ẽ (+ σ ξ)
                v = et[i]
                for k in range(i):
                    v -= RS[i, k] * zo[k]
                zo[i] = v / RS[i, i]
            if noisy:
                for i in range(qo):
                    zo[i] += sigma[s] * xio[s, a, i]
            for i in range(qo - 1, -1, -1):  # w_o = R_S⁻ᵀ z
                v = zo[i]
                for k in range(i + 1, qo):
                    v -= RS[k, i] * wo[k]
                wo[i] = v / RS[i, i]
            for i in range(qo):
                v = 0.0
                for k in range(qo):
                    v += Lo[i, k] * wo[k]
                bo[s, a, i] = v
            for jj in range(n):
                j = j0 + jj
                for i in range(qi):
                    v = u[jj, i]
                    for k in range(qo):
                        v -= V[jj, i, k] * wo[k]
                    if noisy:
                        v += sigma[s] * xii[s, j, i]
                    zi[i] = v
                for i in range(qi - 1, -1, -1):
                    v = zi[i]
                    for k in range(i + 1, qi):
                        v -= R[jj, k, i] * t[k]
                    t[i] = v / R[jj, i, i]
                for i in range(qi):
                    v = 0.0
                    for k in range(qi):
                        v += Li[i, k] * t[k]
                    bi[s, j, i] = v
    return bo, bi


_nested_draws_serial = serial_twin(_nested_draws, nogil=True, error_model="numpy")


def _draw_signatures():
    """A one-factor fit's effect-draw kernels (the serial twins a first, small fit runs) with
    the argument types :func:`.conditional_draws.draw_group_effects` passes (tested)."""
    from .keyed_noise import _fill_serial

    t, i, u = numba.float64[:, :, ::1], numba.int64, numba.uint64
    ro = numba.types.Array(numba.float64, 1, "C", readonly=True)
    return {_block_draws_serial: (t, t, t, ro, t),
            _fill_serial: (u, i, numba.int64[::1], numba.int64[::1], i, t)}


def compile_draws() -> None:
    """Compile (or load) a one-factor fit's effect-draw kernels (:func:`_draw_signatures`): a
    background child's work while the fit loads its samplers and waits for its density."""
    for f, sig in _draw_signatures().items():
        f.compile(sig)
