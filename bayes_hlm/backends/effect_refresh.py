"""One exact Gibbs sweep over the sampled (crossed) group effects.

In a crossed model the marginal backend integrates out one factor and lets NUTS
sample the others. Each posterior draw ``(θ, b_o)`` from NUTS, completed with
the exact draw ``b_m ~ p(b_m | θ, b_o, y)`` of the marginalised factor, is a
draw from the joint posterior; so is the same draw after replacing a sampled
term's effects ``b_k`` with a fresh draw from their full conditional
``p(b_k | θ, b_m, b_{o,-k}, y)`` (one Gibbs step leaves the posterior invariant).

The fresh draw carries new noise, which breaks most of the autocorrelation
NUTS leaves in many weakly coupled effects: on insteval (1,128 lecturers) the
largest tail R-hat over the lecturer effects drops from 1.011–1.017 to
1.005–1.007 at 2 chains × 1000 draws, for ~0.1 s.

For a q = 1 term the levels are conditionally independent: with ``D_l`` the
term's diagonal of ``Z_oᵀZ_o``, ``t_l = Z_lᵀ(y − Xβ − Z_{o,−k} b_{o,−k} − Z_m b_m)``,

    b_l | · ~ N(t_l / σ² / P_l, 1 / P_l),   P_l = D_l / σ² + 1 / τ_k²,

computed from the crossed sufficient statistics (never the rows). Terms with
q > 1 keep their NUTS draws. The marginalised factor's draws stay conditioned
on the NUTS values (they were drawn, and are regenerated, from those), which is
what makes the completed draw exact.
"""

from __future__ import annotations

import numpy as np

from .keyed_noise import keyed_normals, seed_key
from .sufficient_stats import CrossedStats

STREAM = 1000  # keyed-noise streams of refreshed terms: STREAM + position among the sampled terms


def refreshable_terms(stats: CrossedStats) -> list[int]:
    """Positions (in ``plan.other_terms``) of the sampled terms that get a Gibbs step."""
    return [i for i, q in enumerate(stats.plan.other_q) if q == 1]


def refresh_sampled_effects(stats: CrossedStats, beta: np.ndarray, sigma: np.ndarray,
                            sd: list[np.ndarray], b_other: np.ndarray, b_marg: np.ndarray, *,
                            seed: int, draw_index: np.ndarray) -> np.ndarray:
    """Refreshed sampled effects for a chunk of draws.

    Parameters
    ----------
    stats : CrossedStats
    beta : ndarray (S, p); sigma : ndarray (S,)
    sd : list of ndarray (S,)
        Per sampled term (``plan.other_terms`` order), the SD ``τ_k``; ignored for q > 1 terms.
    b_other : ndarray (S, m)
        The NUTS draws of all sampled effects, laid out as ``Z_o``'s columns.
    b_marg : ndarray (S, G, q)
        The marginalised factor's exact draws, conditioned on ``b_other``.
    seed : int
        Effects seed; the noise is keyed by (seed, term, draw, level).
    draw_index : ndarray (S,)
        Global draw indices of the chunk.

    Returns
    -------
    ndarray (S, m)
        ``b_other`` with the q = 1 terms replaced by their Gibbs draws.
    """
    S = beta.shape[0]
    out = np.array(b_other, dtype=np.float64, copy=True)
    bm = b_marg.reshape(S, -1)
    # t = Z_oᵀ(y − Xβ − Z_o b_o − Z_m b_m) for every draw: (S, m)
    t = stats.Zoty[None, :] - beta @ stats.XtZo - (stats.ZotZo @ out.T).T - (stats.BZo.T @ bm.T).T
    diag = stats.ZotZo.diagonal()
    key = seed_key(seed)
    s2 = (np.asarray(sigma, dtype=np.float64) ** 2)[:, None]
    for i in refreshable_terms(stats):
        off, G = stats.plan.other_offsets[i], stats.plan.other_levels[i]
        cols = slice(off, off + G)
        tau2 = (np.asarray(sd[i], dtype=np.float64) ** 2)[:, None]
        old = out[:, cols]
        prec = diag[cols][None, :] / s2 + 1.0 / tau2
        mean = (t[:, cols] + diag[cols][None, :] * old) / s2 / prec
        z = keyed_normals(key, STREAM + i, draw_index, np.arange(G), 1)[:, :, 0]
        new = mean + z / np.sqrt(prec)
        # later terms condition on this one's new values
        t -= (stats.ZotZo[:, cols] @ (new - old).T).T
        out[:, cols] = new
    return out
