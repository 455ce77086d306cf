"""Metropolis-within-Gibbs for a one-factor GLMM with the factor centred (method ``"full"``,
``sampler="gibbs"``): exact MCMC on the same posterior as the PyMC full model.

Why: NUTS on the full model needs ~15-31 leapfrog passes over every row per draw in
400-20,000 dimensions (HMC's d^(1/4) step scaling, benchmarks/README.md). When the groups
carry much information (the case :func:`~.parametrization.choose_centering` centres),
centred Gibbs mixes fast (lag-1 autocorrelation ~ V_data / (V_data + Sigma)) and a sweep
costs one pass over the rows: each group's effects by an independence Metropolis-Hastings
step with a Laplace proposal whose Newton start is frozen after the warm-up, the fixed
effects drawn exactly, the SDs and correlations by slice sampling on the effects'
sufficient statistics (:mod:`.glmm_gibbs_kernels`).

Covered (:func:`unsupported_reason`): Bernoulli/binomial with the logit link and Poisson with
the log link, offsets, one grouping factor with one term (any q, correlated or not), every
fixed column also a column of the term (``y ~ x + (x | g)``: the fixed effects are the
effects' means), Normal fixed-effect priors and the compiled SD priors, no ``weights=``.
Fixed columns outside the term (they couple every row) are left to the NUTS engine.

The warm-up (``tune`` sweeps, discarded) starts each group's Newton iteration at its current
effects (a state-dependent proposal: only before the draws), adapts the slice widths, and
ends by freezing each group's start at its warm-up mean. The draws come back under the PyMC
full model's names (:func:`.glmm_nuts.posterior_dataset`); ``sample_stats`` holds each
sweep's acceptance rate over the groups (no NUTS statistics: nothing diverges here). Each
kept draw is the last of :data:`SWEEPS_PER_DRAW` sweeps.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import numpy as np
import xarray as xr

from .._xarray_build import unimported_duck_arrays_absent
from ..progress import numba_cache_cold, phase
from ..spec.design import Design
from ..spec.priors import PriorSet
from . import glmm_kernels as gk
from .sampling import SampleOutput, SamplerConfig

#: Newton steps per proposal after the warm-up (the first from the frozen start's gradient
#: and Hessian: ``NEWTON - 1`` extra passes over the rows per sweep)
NEWTON = 1
#: Newton steps per proposal in the warm-up (from the current effects)
NEWTON_WARM = 2
#: proposal: multivariate t with this many degrees of freedom (0: Gaussian). Measured on
#: bern200k: a Gaussian proposal left a few of 4,000 effects sticky in their tails (min
#: ESS 361 at 91% acceptance); t(6): min effect ESS ~990 at ~90% acceptance
PROPOSAL_NU = 6.0
#: slice-sampling passes over the log SDs and correlations per sweep
HYPER_ROUNDS = 2
#: interweave a non-centred random-walk move of the fixed effects, SDs and correlations
#: (one more row pass per sweep)
NONCENTRED = False
#: ... moving the fixed effects too (else the SDs and correlations only)
NC_FIXED = True
_NC_TARGET = 0.3  # its acceptance rate aimed at in the warm-up
#: Newton steps toward each group's conditional mode when its start is frozen
FREEZE_NEWTON = 4
_BLOCK = 50  # sweeps per compiled call
#: sweeps per kept draw (the others are run and discarded, as NUTS discards its leapfrog
#: states): the SDs' lag-1 autocorrelation is high where a group's effects carry little
#: information, so a kept draw of two sweeps is worth ~2x the ESS at ~2x the cost, and the
#: 1,000 draws a chain keeps bring R-hat's sampling noise under 1.01 (benchmarks/README.md,
#: "Gibbs: two sweeps a draw")
SWEEPS_PER_DRAW = 2
#: ``method="auto"`` takes this engine from this many rows (measured faster per effective
#: draw than NUTS on the full model at 20k-1M rows, benchmarks/README.md; below, NUTS takes
#: about a second and stays the engine the small-data equivalence tests pin)
AUTO_MIN_ROWS = 5000


def unsupported_reason(design: Design, ps: PriorSet, family) -> str | None:
    """``None`` when this engine covers the model, else why not."""
    from .glmm_density import unsupported_reason as density_unsupported

    why = density_unsupported(design, ps, family)
    if why is not None:
        return why
    code = gk.kernel_code(family)
    if code not in (0, 3):
        return f"the {family.name} family with the {family.link.name} link (logit and Poisson log only)"
    if getattr(design, "weights", None) is not None:
        return "weights= (the PyMC full model applies them)"
    if len(design.groups) != 1:
        return "more than one random-effect term (one factor with one term only)"
    g = design.groups[0]
    others = [n for n in design.fixed_names if n not in g.terms]
    if others:
        return (f"fixed effects outside the random term ({', '.join(others)}): they couple every "
                "row (NUTS on the full model covers them)")
    for n in design.fixed_names:
        if not np.array_equal(design.X[:, design.fixed_names.index(n)], g.Z[:, g.terms.index(n)]):
            return f"the fixed column {n!r} differs from the term's column"
    return None


@dataclass
class _Model:
    """What every chain reads (shared, read-only)."""

    buf: np.ndarray
    tb: int
    ex: int
    G: int
    q: int
    p: int
    u0: int
    n_u: int
    corr: bool
    F: np.ndarray
    mu0: np.ndarray
    sd0: np.ndarray
    code: int
    unit: int  # 1: Bernoulli (one trial per row); 2: and no offset, first column ones; else 0
    y: np.ndarray
    n: np.ndarray
    maxg: int  # rows of the largest group (the scratch arrays' length)
    Zc: np.ndarray
    off: np.ndarray
    N: int
    gstart: np.ndarray
    ndim: int


def _pack(design: Design, ps: PriorSet, family):
    """The compiled density's layout of this engine's state (priors, term block, where each
    parameter sits) for the one factor, centred.

    This engine's effects are ``m_g = F raw + b_g`` (:func:`_model`'s ``F``): no level-2
    shift. The density centres an intercept also on the fixed columns constant within the
    levels (:func:`~bayes_hlm.backends.group_effects.level2_shift`; here a slope that does not
    vary within any level), which :func:`.glmm_density.constrained` would subtract from these
    draws too: the layout says there is none. The rows are read by :func:`_model` (sorted by
    group, Z column-major), so pack gets one row instead of a copy of all."""
    from . import glmm_density as gd

    g = design.groups[0]
    packed = gd.pack(design, ps, family, {g.factor: True}, gd.Rows(
        y=np.zeros(1), n=np.ones(1), w=np.ones(1), offset=np.zeros(1),
        X=design.X[:1], codes=[g.codes[:1]], Z=[g.Z[:1]]))
    packed.terms[0].l2 = None
    return packed


def _model(design: Design, ps: PriorSet, family, packed) -> _Model:
    from .glmm_density import _HEAD, design_rows

    g = design.groups[0]
    lt = packed.terms[0]
    rows = design_rows(design)
    perm = np.argsort(rows.codes[0], kind="stable")
    codes = rows.codes[0][perm]
    G, q, p, N = g.n_levels, g.q, design.p, rows.N
    gstart = np.searchsorted(codes, np.arange(G + 1)).astype(np.int64)
    # shift of each effect coordinate = F raw (the fixed effect, Bambi's intercept shift)
    A = np.eye(p)
    if packed.i_int >= 0:
        A[packed.i_int] -= np.asarray(ps.x_mean, dtype=float)
        A[packed.i_int, packed.i_int] = 1.0
    F = np.zeros((q, p))
    for i, c in enumerate(lt.fixed_cols):
        if c >= 0:
            F[i] = A[c]
    names = design.fixed_names
    code = gk.kernel_code(family)
    y, n = rows.y[perm], rows.n[perm]
    maxg = int(np.max(np.diff(gstart))) if G else 1
    return _Model(
        buf=packed.buf, tb=_HEAD, ex=lt.eff_x, G=G, q=q, p=p, u0=lt.sd_x,
        n_u=q + (q * (q - 1) // 2 if lt.correlated else 0), corr=lt.correlated, F=F,
        mu0=np.array([float(ps.priors[k].params["mu"]) for k in names]),
        sd0=np.array([float(ps.priors[k].params["sigma"]) for k in names]),
        code=code, unit=_unit(code, n, rows.offset, rows.Z[0]), y=np.ascontiguousarray(y),
        n=np.ascontiguousarray(n), maxg=max(maxg, 1),
        Zc=np.ascontiguousarray(rows.Z[0][perm].T).ravel(),
        off=np.ascontiguousarray(rows.offset[perm]), N=N, gstart=gstart, ndim=packed.ndim)


def _unit(code: int, n: np.ndarray, offset: np.ndarray, Z: np.ndarray) -> int:
    """The row loops' shortcut (:func:`.glmm_gibbs_kernels.group_ll`): 2 for Bernoulli rows
    without offset whose term starts with a column of ones, 1 for other Bernoulli rows, else 0."""
    if code != 0 or not np.all(n == 1.0):
        return 0
    return 2 if not np.any(offset) and np.all(Z[:, 0] == 1.0) else 1


def _windows(tune: int) -> list[int]:
    """Warm-up window ends: 1/8 (the costlier Newton-from-the-current-state window), 1/4,
    1/2 and the end of the warm-up."""
    return sorted({max(1, tune * k // 8) for k in (1, 2, 4)} | {tune})


class _Chain:
    """One chain's state and work arrays."""

    def __init__(self, m: _Model, x0: np.ndarray, seed: int = -1):
        G, q = m.G, m.q
        self.seed = seed  # seeds this thread's generator on the first compiled call
        self.x = x0.copy()
        self.start = np.zeros((G, q))
        self.g0 = np.zeros((G, q))
        self.H0 = np.zeros((G, q, q))
        self.llc = np.zeros(G)
        self.widths = np.ones(m.n_u)
        self.u_sd = np.zeros(m.p + m.n_u)  # warm-up SDs of the raw fixed effects, log SDs
        # and correlations
        self.nc_mult = 0.5  # the non-centred move's step, in those SDs (adapted)
        maxg = m.maxg
        self.eta = np.empty(maxg)
        self.d = np.empty(maxg)
        self.acc = np.zeros(G)

    def block(self, m: _Model, draws, rates, warm, sums=None, newton=NEWTON,
              adapt: bool = False) -> np.ndarray:
        """``draws.shape[0]`` sweeps; returns whether each sweep's non-centred move was taken
        (``adapt``: tune its step toward :data:`_NC_TARGET` from these)."""
        from .glmm_gibbs_kernels import run_block

        nc = np.zeros(draws.shape[0])
        steps = self.nc_mult * self.u_sd if NONCENTRED else np.zeros(m.p + m.n_u)
        if not NC_FIXED:
            steps[:m.p] = 0.0
        run_block(self.x, m.buf, m.tb, m.ex, m.G, m.q, m.p, m.u0, m.n_u, m.corr, m.F, m.mu0,
                  m.sd0, m.code, m.unit, m.y, m.n, m.Zc, m.off, m.N, m.gstart, self.start,
                  self.g0, self.H0, self.llc, newton, PROPOSAL_NU, warm, self.widths,
                  HYPER_ROUNDS, self.eta, self.d, self.acc, draws, rates,
                  np.zeros((m.G, m.q)) if sums is None else sums, sums is not None, steps, nc,
                  self._seed_once(), -1)
        if adapt and steps[m.p] > 0.0:
            self.nc_mult *= float(np.exp(2.0 * (nc.mean() - _NC_TARGET)))
        return nc

    def _seed_once(self) -> int:
        s, self.seed = self.seed, -1
        return s

    def freeze(self, m: _Model, start: np.ndarray):
        """Newton starts: :data:`FREEZE_NEWTON` steps from ``start`` toward each group's
        conditional mode at the current fixed effects and Sigma, then kept fixed."""
        from .glmm_gibbs_kernels import run_block

        self.start[:] = start
        none = np.empty((0, m.ndim))
        run_block(self.x, m.buf, m.tb, m.ex, m.G, m.q, m.p, m.u0, m.n_u, m.corr, m.F, m.mu0,
                  m.sd0, m.code, m.unit, m.y, m.n, m.Zc, m.off, m.N, m.gstart, self.start,
                  self.g0, self.H0, self.llc, NEWTON, PROPOSAL_NU, 0, self.widths,
                  HYPER_ROUNDS, self.eta, self.d, self.acc, none, np.empty(0),
                  np.zeros((m.G, m.q)), False, np.zeros(m.p + m.n_u), np.empty(0),
                  self._seed_once(), FREEZE_NEWTON)


def run_chain(m: _Model, x0: np.ndarray, tune: int, draws: int, seed: int,
              stop: threading.Event | None = None, out: np.ndarray | None = None,
              sweeps: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One chain: ``tune`` warm-up sweeps, then ``draws`` kept, each the last of ``sweeps``
    sweeps (into ``out`` (draws, ndim) when given: the caller's array for all chains, no
    copy). Returns the draws (draws, ndim), each kept draw's acceptance rate over the groups
    (the mean over its sweeps) and whether a non-centred move was taken in its sweeps.

    Warm-up in windows (:func:`_windows`): the first starts each group's Newton iteration at
    its current effects (fast from the prior's centre; not exact); at the end of each window
    but the last, each group's start is frozen at its conditional mode (Newton from its mean
    over the window's second half, at the current fixed effects and Sigma), the slice widths
    set to ~3 SDs of the window's draws, and the effects restart from the new proposal (a
    group left in a tail that its proposal rarely reaches would stay there: seen with
    high-count Poisson groups whose start was frozen while Sigma still moved). The last
    window already runs the kernel the draws use (exact: the proposal depends on beta, Sigma
    and the frozen start only)."""
    c = _Chain(m, x0, seed)  # this thread's generator: the chain is reproducible from its seed
    sl = slice(m.u0, m.u0 + m.n_u)
    ends = _windows(tune)
    done = 0
    for w, end in enumerate(ends):
        n_w = end - done
        wdraws = np.empty((n_w, m.ndim))
        wrates = np.empty(n_w)
        sums = np.zeros((m.G, m.q))
        n_sum = 0
        cuts = sorted(set(range(0, n_w, _BLOCK)) | {n_w // 2, n_w})
        for a, b in zip(cuts[:-1], cuts[1:]):
            second = a >= n_w // 2
            c.block(m, wdraws[a:b], wrates[a:b], 1 if w == 0 else 0, sums if second else None,
                    newton=NEWTON_WARM if w == 0 else NEWTON, adapt=end < tune)
            n_sum += (b - a) if second else 0
            if stop is not None and stop.is_set():
                return np.empty((0, m.ndim)), np.empty(0), np.empty(0)
        u = wdraws[n_w // 2:]
        if u.shape[0] >= 4:  # slice widths: ~3 posterior SDs of each coordinate
            c.u_sd[:] = np.clip(np.r_[u[:, :m.p].std(axis=0), u[:, sl].std(axis=0)], 1e-4, 5.0)
            c.widths[:] = np.clip(3.0 * c.u_sd[m.p:], 1e-3, 10.0)
        done = end
        if end < tune and n_sum > 0:
            c.freeze(m, sums / n_sum)
            c.block(m, np.empty((1, m.ndim)), np.empty(1), 2)  # restart from the proposal
    out = np.empty((draws, m.ndim)) if out is None else out
    rates = np.empty(draws)
    nc = np.empty(draws)
    k = max(1, int(sweeps))
    step = max(1, _BLOCK // k)  # kept draws per compiled call
    scratch = np.empty((step * k, m.ndim)) if k > 1 else None
    srates = np.empty(step * k)
    for a in range(0, draws, step):
        b = min(a + step, draws)
        if k == 1:
            nc[a:b] = c.block(m, out[a:b], rates[a:b], 0)
        else:  # k sweeps per draw: the last of each k is kept, rates averaged over all k
            n = (b - a) * k
            taken = c.block(m, scratch[:n], srates[:n], 0)
            out[a:b] = scratch[k - 1:n:k]
            rates[a:b] = srates[:n].reshape(-1, k).mean(axis=1)
            nc[a:b] = taken.reshape(-1, k).max(axis=1)
        if stop is not None and stop.is_set():
            return out[:b], rates[:b], nc[:b]
    return out, rates, nc


def _initial_points(packed, design: Design, ps: PriorSet, chains: int,
                    seed: np.random.SeedSequence) -> list:
    """The NUTS engine's start (:func:`.glmm_nuts._initial_point`: the prior's centre jittered)."""
    from .glmm_nuts import _initial_point

    f = _initial_point(packed, design, ps)
    return [f(int(s.generate_state(1)[0])) for s in seed.spawn(chains)]


def sample(design: Design, ps: PriorSet, family, cfg: SamplerConfig) -> SampleOutput:
    """Metropolis-within-Gibbs on the centred one-factor GLMM; posterior as the PyMC full
    model names it. Raises :class:`~bayes_hlm.errors.BayesHLMError` where not covered."""
    from ..errors import BayesHLMError
    from .glmm_nuts import posterior_dataset

    why = unsupported_reason(design, ps, family)
    if why is not None:
        raise BayesHLMError(f"sampler='gibbs' does not cover this model: {why}; "
                            "use sampler='auto' or 'numba'")
    t0 = time.perf_counter()
    with phase("packing the model's rows (Gibbs engine)"):
        factor = design.groups[0].factor
        packed = _pack(design, ps, family)
        m = _model(design, ps, family, packed)
        from . import glmm_gibbs_kernels  # noqa: F401  (compiled on first use, cached)
    seeds = np.random.SeedSequence(cfg.seed).spawn(cfg.chains + 1)
    x0s = _initial_points(packed, design, ps, cfg.chains, seeds[-1])
    chain_seeds = [int(s.generate_state(1)[0]) for s in seeds[:-1]]
    t1 = time.perf_counter()
    results: list = [None] * cfg.chains
    stop = threading.Event()
    interrupted = False

    z = np.empty((cfg.chains, cfg.draws, m.ndim))  # 1M rows / 10k groups: 320 MB

    def work(k):
        results[k] = run_chain(m, x0s[k], cfg.tune, cfg.draws, chain_seeds[k], stop, z[k],
                               sweeps=SWEEPS_PER_DRAW)

    workers = max(1, min(cfg.chains, cfg.cores or os.cpu_count() or 1))  # a thread per chain
    threads: list = []
    what = (f"Gibbs sampling ({cfg.chains} chains x {cfg.tune} warm-up sweeps + {cfg.draws} "
            f"draws of {SWEEPS_PER_DRAW} sweeps)")
    if numba_cache_cold(glmm_gibbs_kernels.run_block):  # its first call compiles (~30 s)
        what += ", first compiling its kernels with Numba (once per machine)"
    with phase(what, long=True):
        pending = list(range(cfg.chains))
        try:
            while pending:
                batch, pending = pending[:workers], pending[workers:]
                threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in batch]
                for t in threads:
                    t.start()
                for t in threads:
                    while t.is_alive():
                        t.join(0.2)
        except KeyboardInterrupt:
            stop.set()
            interrupted = True
            for t in threads:
                t.join()
    t2 = time.perf_counter()
    done = [k for k, r in enumerate(results) if r is not None and r[0].shape[0] > 0]
    if not done:
        raise KeyboardInterrupt
    D = min(results[k][0].shape[0] for k in done)
    z = z[done, :D] if (len(done) < cfg.chains or D < cfg.draws) else z
    results = [results[k] for k in done]
    rates = np.stack([r[1][:D] for r in results])
    nc_taken = np.stack([r[2][:D] for r in results])
    del results  # views of z: its memory goes with z below
    with phase("transforming the draws to the model's parameters"), \
            unimported_duck_arrays_absent():
        post = posterior_dataset(design, ps, packed, z, cfg.seed)
        del z
        C = len(done)
        stats = xr.Dataset({"acceptance_rate": (("chain", "draw"), rates),
                            "scale_move_accepted": (("chain", "draw"), nc_taken.astype(bool))},
                           coords={"chain": np.arange(C), "draw": np.arange(D)})
        attrs = {"engine": "bayes_hlm.glmm_gibbs", "inference_library": "bayes_hlm"}
        post.attrs.update(attrs)
        stats.attrs.update(attrs)
        tree = xr.DataTree.from_dict({"posterior": post, "sample_stats": stats})
    return SampleOutput(tree=tree, compile_s=t1 - t0, sample_s=t2 - t1, interrupted=interrupted,
                        extra={"centered": {factor: True}, "rows": design.n, "cells": design.n,
                               "integrated": [], "level_centred": {}, "sampler": "gibbs",
                               "gibbs": {"newton": NEWTON, "proposal_nu": PROPOSAL_NU,
                                         "hyper_rounds": HYPER_ROUNDS,
                                         "row_passes_per_sweep": NEWTON + int(NONCENTRED),
                                         "sweeps_per_draw": SWEEPS_PER_DRAW,
                                         "scale_move_rate": float(nc_taken.mean()),
                                         "acceptance_rate": float(rates.mean()),
                                         "min_chain_acceptance": float(rates.mean(axis=1).min())}})
