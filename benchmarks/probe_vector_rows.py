"""Probe (measurement only, not the implementation): SVML and vectorised row loops for glmer.

1. Prints Numba's SVML state (``intel-cmplr-lib-rt`` cannot switch it on with llvmlite >= 0.45:
   its LLVM carries no SVML patch, and ``-vector-library`` is not an option llvmlite accepts).
2. Times the 200k-row binary correlated-slope ``glmer`` fit (``bench_glmer.py --big`` data) with
   ``kernels.block_pass`` as it is against the same fit whose binomial/logit q = 2 passes run a
   three-phase prototype: eta loop (gathers) -> branch-free 1-D row loop on the libm-free
   ``glmm_kernels.fast_exp`` / ``log1p_unit`` (LLVM vectorises it) -> per-group scatter.
   Interleaved repeats; prints the ratio and the parity of the two fits.

The prototype below copies the q = 2 arithmetic of ``kernels.block_pass`` on purpose (to measure
it without touching the kernel); the implementation, if adopted, belongs in ``glmer/kernels.py``.

Usage: python benchmarks/probe_vector_rows.py [--reps 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numba as nb
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bayes_hlm as bh  # noqa: E402
from bayes_hlm.backends.glmm_kernels import _FAST, fast_exp, log1p_unit  # noqa: E402
from bayes_hlm.glmer import kernels  # noqa: E402
from bayes_hlm.glmer.kernels import _EPS, _joint_acc, _unpack  # noqa: E402
from bench_glmer import simulate_binary_slope  # noqa: E402


@nb.njit(fastmath=_FAST, error_model="numpy")
def _logit_rows(y, pw, sat, eta, mu, W, s, dr):  # pragma: no cover - compiled
    """The binomial/logit branch of ``kernels._row``, branch-free on 1-D arrays."""
    dsum = 0.0
    ll = 0.0
    for i in range(eta.shape[0]):
        e = min(max(eta[i], -30.0), 30.0)
        ee = fast_exp(-abs(e))
        inv = 1.0 / (1.0 + ee)
        m = inv if e >= 0.0 else ee * inv
        lm = -(max(-e, 0.0) + log1p_unit(ee))
        lli = pw[i] * (y[i] * lm + (1.0 - y[i]) * (lm - e))
        d = sat[i] - 2.0 * lli
        mu[i] = m
        W[i] = pw[i] * max(m * (1.0 - m), _EPS)
        s[i] = pw[i] * (y[i] - m)
        dr[i] = d
        dsum += d
        ll += lli
    return dsum, ll


@nb.njit(error_model="numpy")
def _pass_q2(y, pw, sat, offset, X, beta, codes, Z, lam, U, G, joint, eta, mu, W, dr):  # pragma: no cover
    N, p = X.shape
    for i in range(N):  # eta: gathers over 2-D rows, not vectorised
        g = codes[i]
        z0 = Z[i, 0] * lam[0, 0] + Z[i, 1] * lam[1, 0]
        z1 = Z[i, 0] * lam[0, 1] + Z[i, 1] * lam[1, 1]
        e = offset[i] + z0 * U[g, 0] + z1 * U[g, 1]
        for j in range(p):
            e += X[i, j] * beta[j]
        eta[i] = e
    s = np.empty(N)
    dsum, ll = _logit_rows(y, pw, sat, eta, mu, W, s, dr)
    pj = p if joint else 0
    Kp = np.zeros((G, 3))
    r = np.zeros((G, 2))
    C = np.zeros((G, 2 * pj))
    XtWX = np.zeros(pj * (pj + 1) // 2)
    rb = np.zeros(pj)
    zl = np.empty(2)
    for i in range(N):
        g = codes[i]
        z0 = Z[i, 0] * lam[0, 0] + Z[i, 1] * lam[1, 0]
        z1 = Z[i, 0] * lam[0, 1] + Z[i, 1] * lam[1, 1]
        w = W[i]
        c = s[i] if joint else w * (z0 * U[g, 0] + z1 * U[g, 1]) + s[i]
        w0 = w * z0
        Kp[g, 0] += w0 * z0
        Kp[g, 1] += w0 * z1
        Kp[g, 2] += w * z1 * z1
        r[g, 0] += c * z0
        r[g, 1] += c * z1
        if joint:
            zl[0] = z0
            zl[1] = z1
            _joint_acc(C, XtWX, rb, g, zl, X, i, w, s[i])
    XX = np.empty((pj, pj))
    t = 0
    for j in range(pj):
        for k in range(j + 1):
            XX[j, k] = XX[k, j] = XtWX[t]
            t += 1
    return _unpack(Kp, 2), r, C.reshape((G, 2, pj)), XX, rb, dsum, ll


_ORIG = kernels.block_pass


def _routed(fam, lk, th, y, pw, sat, offset, X, beta, codes, Z, lam, U, G, mode, eta, mu, W, dr):
    if fam == 0 and lk == 0 and Z.shape[1] == 2 and mode in (kernels.MODE_LME4, kernels.MODE_JOINT):
        return _pass_q2(y, pw, sat, offset, X, beta, codes, Z, lam, U, G,
                        mode == kernels.MODE_JOINT, eta, mu, W, dr)
    return _ORIG(fam, lk, th, y, pw, sat, offset, X, beta, codes, Z, lam, U, G, mode, eta, mu, W, dr)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    from numba.misc.numba_sysinfo import get_sysinfo
    info = get_sysinfo()
    print({k: info[k] for k in ("SVML State", "SVML Lib Loaded", "LLVM SVML Patched")})
    df = simulate_binary_slope()
    times: dict[str, list[float]] = {"as_is": [], "vector_rows": []}
    fits = {}
    for rep in range(args.reps + 1):
        for name, bp in (("as_is", _ORIG), ("vector_rows", _routed)):
            kernels.block_pass = bp
            try:
                t0 = time.perf_counter()
                fits[name] = bh.glmer("y ~ x + (x | g)", df, family="binomial")
                dt = time.perf_counter() - t0
            finally:
                kernels.block_pass = _ORIG
            if rep:  # rep 0 compiles
                times[name].append(dt)
    for name, v in times.items():
        print(f"{name:12s} {[round(x, 2) for x in v]} s, median {np.median(v):.2f} s")
    print(f"as_is / vector_rows: {np.median(times['as_is']) / np.median(times['vector_rows']):.2f}x (median), "
          f"{min(times['as_is']) / min(times['vector_rows']):.2f}x (min)")
    a, b = fits["as_is"], fits["vector_rows"]
    for attr in ("loglik", "deviance", "theta", "beta"):
        va, vb = getattr(a, attr), getattr(b, attr)
        va, vb = np.atleast_1d(va() if callable(va) else va), np.atleast_1d(vb() if callable(vb) else vb)
        print(f"{attr:9s} max relative difference {np.max(np.abs(va - vb) / np.abs(va)):.1e}")


if __name__ == "__main__":
    main()
