"""Several grouping factors with a small remainder: ``K = ΛᵀZᵀWZΛ + I`` factorised in compiled
code with a fixed structure (MixedModels.jl's blocked layout, the largest factor first).

``u`` splits into the largest factor's effects ``E`` (``K_EE`` block diagonal: one ``q_E × q_E``
block per level) and the rest ``R`` (``n_R`` effects, held dense). With ``K_EE = L Lᵀ`` per
block, ``LB = L⁻¹ K_ER`` (sparse: a level touches only the R columns its rows touch) and the
Schur complement ``S = K_RR - LBᵀ LB = L_S L_Sᵀ``, the Cholesky factor of ``K`` is
``[[L, 0], [LBᵀ, L_S]]``: ``log det K = 2 Σ log diag L + 2 Σ log diag L_S``.

Everything that depends on θ or the weights (``ZΛ``'s values, the assembly, both
factorisations, solves, ``ZΛu`` and ``ΛᵀZᵀv``) is one compiled call; the pattern (which R
columns each level touches, where each row's products land) is found once per model. On
grouseticks (E = 118 or 403 levels, R = 63 or 181) one factorisation costs ~20-60 µs where
SuperLU with SciPy's sparse assembly cost ~1 ms.
"""

from __future__ import annotations

import numba
import numpy as np

from ..statistics.theta_map import ThetaMap

__all__ = ["CrossedSystem", "CrossedFactor", "fits_crossed"]

#: the dense remainder is factorised densely: at most this many effects outside the largest
#: factor (a 400 × 400 Cholesky is ~2 ms), and the per-level coupling at most this many entries
R_MAX = 400


def fits_crossed(layout: ThetaMap) -> bool:
    """Whether :class:`CrossedSystem` takes this layout (several factors, small remainder)."""
    if len(layout.factors) < 2:
        return False
    sizes = sorted(f.size for f in layout.factors)
    return sum(sizes[:-1]) <= R_MAX


# ----------------------------------------------------------------------------- kernels
@numba.njit(cache=True, nogil=True, error_model="numpy")
def _zl_u(cols, vals, u):  # pragma: no cover - compiled
    N, m = cols.shape
    out = np.empty(N)
    for i in range(N):
        acc = 0.0
        for j in range(m):
            acc += vals[i, j] * u[cols[i, j]]
        out[i] = acc
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _zlt(cols, vals, v, Q):  # pragma: no cover - compiled
    N, m = cols.shape
    out = np.zeros(Q)
    for i in range(N):
        for j in range(m):
            out[cols[i, j]] += vals[i, j] * v[i]
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _factor(W, vals, gE, qE, GE, rslot, rcol, posB, nB, nR):  # pragma: no cover - compiled
    """The blocked Cholesky factor of ``K`` at weights ``W`` (see the module docstring).

    Row ``i``: its E effects are ``vals[i, 0:qE]`` of level ``gE[i]``; its R effects
    ``vals[i, rslot[j]]`` at dense R index ``rcol[i, j]``, whose E-R products land at
    ``posB[i, j]`` of the per-level coupling list (``nB`` entries). Returns (L (GE, qE, qE),
    LB (nB, qE), L_S (nR, nR), log det K); a non-positive pivot raises LinAlgError."""
    N = W.shape[0]
    mR = rcol.shape[1]
    D = np.zeros((GE, qE, qE))
    B = np.zeros((nB, qE))
    S = np.zeros((nR, nR))
    for i in range(N):
        w = W[i]
        g = gE[i]
        for a in range(qE):
            wa = w * vals[i, a]
            for b in range(a + 1):
                D[g, a, b] += wa * vals[i, b]
            for j in range(mR):
                B[posB[i, j], a] += wa * vals[i, rslot[j]]
        for j in range(mR):
            wj = w * vals[i, rslot[j]]
            cj = rcol[i, j]
            for k in range(mR):
                S[cj, rcol[i, k]] += wj * vals[i, rslot[k]]
    logdet = 0.0
    # per-level Cholesky of I + D (lower triangle accumulated)
    L = np.zeros((GE, qE, qE))
    for g in range(GE):
        for a in range(qE):
            for b in range(a + 1):
                acc = D[g, a, b] + (1.0 if a == b else 0.0)
                for c in range(b):
                    acc -= L[g, a, c] * L[g, b, c]
                if a == b:
                    if not acc > 0.0:
                        raise np.linalg.LinAlgError("K is not positive definite")
                    L[g, a, a] = np.sqrt(acc)
                    logdet += 2.0 * np.log(L[g, a, a])
                else:
                    L[g, a, b] = acc / L[g, b, b]
    return L, B, S, logdet


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _schur(L, B, S, Bptr, Bcol):  # pragma: no cover - compiled
    """``LB = L⁻¹ B`` per level (in place) and ``S = I + S - LBᵀ LB`` (in place)."""
    GE, qE = L.shape[0], L.shape[1]
    nR = S.shape[0]
    for g in range(GE):
        for k in range(Bptr[g], Bptr[g + 1]):
            for a in range(qE):
                acc = B[k, a]
                for c in range(a):
                    acc -= L[g, a, c] * B[k, c]
                B[k, a] = acc / L[g, a, a]
        for k1 in range(Bptr[g], Bptr[g + 1]):
            c1 = Bcol[k1]
            for k2 in range(Bptr[g], Bptr[g + 1]):
                acc = 0.0
                for a in range(qE):
                    acc += B[k1, a] * B[k2, a]
                S[c1, Bcol[k2]] -= acc
    for c in range(nR):
        S[c, c] += 1.0


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _chol_skip(S):  # pragma: no cover - compiled
    """In-place lower Cholesky factor of the dense ``S`` that skips structural zeros (the
    remainder's largest factor comes first and its block stays diagonal, so most columns
    update a handful of entries); returns ``log det S``. Only the lower triangle is read."""
    n = S.shape[0]
    idx = np.empty(n, dtype=np.int64)
    logdet = 0.0
    for k in range(n):
        d = S[k, k]
        if not d > 0.0:
            raise np.linalg.LinAlgError("K is not positive definite")
        d = np.sqrt(d)
        S[k, k] = d
        logdet += 2.0 * np.log(d)
        cnt = 0
        for i in range(k + 1, n):
            if S[i, k] != 0.0:
                S[i, k] /= d
                idx[cnt] = i
                cnt += 1
        for a in range(cnt):
            i = idx[a]
            lik = S[i, k]
            for b in range(a + 1):
                j = idx[b]
                S[i, j] -= lik * S[j, k]
    return logdet


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _solve(L, LB, LS, Bptr, Bcol, bE, bR):  # pragma: no cover - compiled
    """``K x = b`` with the factor of :func:`_factor` (``bE`` (GE, qE), ``bR`` (nR,))."""
    GE, qE = L.shape[0], L.shape[1]
    nR = LS.shape[0]
    yE = np.empty((GE, qE))
    zR = bR.copy()
    for g in range(GE):
        for a in range(qE):
            acc = bE[g, a]
            for c in range(a):
                acc -= L[g, a, c] * yE[g, c]
            yE[g, a] = acc / L[g, a, a]
        for k in range(Bptr[g], Bptr[g + 1]):
            acc = 0.0
            for a in range(qE):
                acc += LB[k, a] * yE[g, a]
            zR[Bcol[k]] -= acc
    # L_S y = z, L_Sᵀ x = y
    for r in range(nR):
        acc = zR[r]
        for c in range(r):
            acc -= LS[r, c] * zR[c]
        zR[r] = acc / LS[r, r]
    for r in range(nR - 1, -1, -1):
        acc = zR[r]
        for c in range(r + 1, nR):
            acc -= LS[c, r] * zR[c]
        zR[r] = acc / LS[r, r]
    xE = np.empty((GE, qE))
    for g in range(GE):
        t = yE[g].copy()
        for k in range(Bptr[g], Bptr[g + 1]):
            for a in range(qE):
                t[a] -= LB[k, a] * zR[Bcol[k]]
        for a in range(qE - 1, -1, -1):
            acc = t[a]
            for c in range(a + 1, qE):
                acc -= L[g, c, a] * xE[g, c]
            xE[g, a] = acc / L[g, a, a]
    return xE, zR


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _solve_u(L, LB, LS, Bptr, Bcol, offE, R_glob, B):  # pragma: no cover - compiled
    """``K X = B`` for the columns of ``B`` (Q, k), in glmer's ``u`` layout."""
    GE, qE = L.shape[0], L.shape[1]
    Q, k = B.shape
    X = np.empty((Q, k))
    bE = np.empty((GE, qE))
    bR = np.empty(R_glob.shape[0])
    for c in range(k):
        for g in range(GE):
            for a in range(qE):
                bE[g, a] = B[offE + g * qE + a, c]
        for r in range(R_glob.shape[0]):
            bR[r] = B[R_glob[r], c]
        xE, xR = _solve(L, LB, LS, Bptr, Bcol, bE, bR)
        for g in range(GE):
            for a in range(qE):
                X[offE + g * qE + a, c] = xE[g, a]
        for r in range(R_glob.shape[0]):
            X[R_glob[r], c] = xR[r]
    return X


# ----------------------------------------------------------------------------- system
class CrossedSystem:
    """Several grouping factors, remainder at most :data:`R_MAX` effects: the interface of
    :class:`~.resystem.SparseSystem` (``set_theta``, ``zl_u``, ``zlt``, ``zlt_mat``,
    ``factor``) in compiled code."""

    kind = "crossed"

    def __init__(self, layout: ThetaMap):
        self.layout = layout
        self.Q = layout.n_u
        fs = layout.factors
        N = len(fs[0].codes)
        self.E = int(np.argmax([f.size for f in fs]))
        # E, then the others largest first: the remainder's leading block stays diagonal
        order = [self.E] + sorted((k for k in range(len(fs)) if k != self.E),
                                  key=lambda k: -fs[k].size)
        self._order = order
        # Z of every factor side by side (E first): ZΛ's row values are Z_all Λ_all with
        # Λ_all block diagonal
        self._Zall = np.ascontiguousarray(np.hstack([np.asarray(fs[k].Z, dtype=float)
                                                     for k in order]))
        m = sum(f.q for f in fs)
        fE = fs[self.E]
        self.qE, self.GE, self.offE = fE.q, fE.n_levels, fE.offset
        # global u index of every row slot, E's slots first
        cols = np.empty((N, m), dtype=np.int64)
        s = 0
        for k in order:
            f = fs[k]
            cols[:, s:s + f.q] = f.offset + f.codes[:, None].astype(np.int64) * f.q + np.arange(f.q)
            s += f.q
        self.cols = cols
        self.gE = np.ascontiguousarray(fE.codes, dtype=np.int64)
        # dense R numbering: the other factors' effects in u order
        self.R_glob = np.concatenate([np.arange(fs[k].offset, fs[k].offset + fs[k].size)
                                      for k in order[1:]]).astype(np.int64)
        self.nR = len(self.R_glob)
        rmap = np.full(self.Q, -1, dtype=np.int64)
        rmap[self.R_glob] = np.arange(self.nR)
        self.rslot = np.arange(self.qE, m, dtype=np.int64)
        self.rcol = np.ascontiguousarray(rmap[cols[:, self.qE:]])
        # per E level, the R columns its rows touch (sorted), and where each product lands
        pair = self.gE[:, None] * self.nR + self.rcol                     # (N, mR)
        uniq, inv = np.unique(pair.ravel(), return_inverse=True)
        self.posB = np.ascontiguousarray(inv.reshape(pair.shape).astype(np.int64))
        self.Bcol = (uniq % self.nR).astype(np.int64)
        self.Bptr = np.searchsorted(uniq // self.nR, np.arange(self.GE + 1)).astype(np.int64)
        self.set_theta(layout.theta0)

    def set_theta(self, theta):
        from .kernels import times_lambda

        self.lams = self.layout.lambdas(theta)
        m = self._Zall.shape[1]
        lam = np.zeros((m, m))
        s = 0
        for k in self._order:
            q = self.lams[k].shape[0]
            lam[s:s + q, s:s + q] = self.lams[k]
            s += q
        self.vals = times_lambda(self._Zall, lam)

    def zl_u(self, u):
        return _zl_u(self.cols, self.vals, np.ascontiguousarray(u, dtype=float))

    def zlt(self, v):
        return _zlt(self.cols, self.vals, np.ascontiguousarray(v, dtype=float), self.Q)

    def zlt_mat(self, M):
        M = np.asarray(M, dtype=float)
        return np.stack([self.zlt(M[:, j]) for j in range(M.shape[1])], axis=1)

    def factor(self, W):
        L, B, S, ld = _factor(np.ascontiguousarray(W, dtype=float), self.vals, self.gE, self.qE,
                              self.GE, self.rslot, self.rcol, self.posB, len(self.Bcol),
                              self.nR)
        _schur(L, B, S, self.Bptr, self.Bcol)
        ld += _chol_skip(S)
        return CrossedFactor(self, L, B, S, ld)


class CrossedFactor:
    """The factor of :meth:`CrossedSystem.factor` seen in glmer's ``u`` layout."""

    def __init__(self, sysm: CrossedSystem, L, LB, LS, logdet: float):
        self.sysm, self.L, self.LB, self.LS = sysm, L, LB, LS
        self.logdet = logdet

    def solve(self, b):
        s = self.sysm
        b = np.asarray(b, dtype=float)
        B = np.ascontiguousarray(b.reshape(s.Q, -1))
        X = _solve_u(self.L, self.LB, self.LS, s.Bptr, s.Bcol, s.offE, s.R_glob, B)
        return X[:, 0] if b.ndim == 1 else X

    def block_inverse(self) -> list[np.ndarray]:
        """Per factor, the (G, q, q) diagonal blocks of ``K⁻¹`` (columns of ``K⁻¹`` by solves;
        once per fit, for the conditional variances)."""
        out = []
        for f in self.sysm.layout.factors:
            blocks = np.empty((f.n_levels, f.q, f.q))
            step = max(1, 256 // f.q)                      # levels per batch of solves
            for g0 in range(0, f.n_levels, step):
                lv = np.arange(g0, min(g0 + step, f.n_levels))
                cols = (f.offset + lv[:, None] * f.q + np.arange(f.q)).ravel()
                E = np.zeros((self.sysm.Q, len(cols)))
                E[cols, np.arange(len(cols))] = 1.0
                X = self.solve(E)[cols].reshape(len(lv), f.q, len(lv), f.q)
                blocks[lv] = X[np.arange(len(lv)), :, np.arange(len(lv)), :]
            out.append(blocks)
        return out
