"""Marginalised NUTS: group effects integrated out, then drawn exactly.

The PyMC model holds the same hyperparameters and priors as the full model
(:func:`add_hyperparameters`); the likelihood is the marginal density from
per-group sufficient statistics (``marginal_loglik_pt``), so a gradient costs
O(groups), not O(rows). Crossed designs marginalise the factor with most
levels and sample the others' effects. After sampling, one exact draw of the
marginalised effects per posterior draw (``conditional_draws``) gives the
joint posterior of the full model.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pymc as pm
import xarray as xr

from ..progress import phase
from ..spec.design import Design
from ..spec.priors import PriorSet
from ..spec import variable_names as naming
from . import numba_nuts
from . import background_compile
from .conditional_draws import chunk_work, compile_ahead, default_chunk_draws, draw_group_effects
from .kernel_variants import map_chunks
from .effect_refresh import refresh_sampled_effects, refreshable_terms
from .full import record_effects
from .group_effects import sampled_effects
from .hyperparameters import add_hyperparameters, coords, factor_blocks
from .marginal_loglik import marginal_loglik_pt
from .parametrization import choose_centering
from .sampling import SamplerConfig, SampleOutput, sample_model
from .sufficient_stats import CrossedStats, compute_stats

# group-effect draws above this size are regenerated on demand instead of stored
MATERIALIZE_BYTES = 256e6
# working-set size of one chunk of exact effect draws (measured: 3x faster than one big batch)
CHUNK_BYTES = 1e7


def supports_marginal(design: Design) -> bool:
    """Gaussian models with at least one grouping factor (any structure)."""
    return bool(design.groups)


def marginalised_factors(stats) -> list[str]:
    return [b.factor for b in stats.plan.blocks]


def build_marginal_model(design: Design, ps: PriorSet, stats=None) -> tuple[pm.Model, object]:
    """The collapsed PyMC model; returns ``(model, stats)``."""
    stats = stats if stats is not None else compute_stats(design)
    plan = stats.plan
    sampled = set(plan.other_terms)
    centered = choose_centering(design) if sampled else {}
    with pm.Model(coords=coords(design)) as model:
        h = add_hyperparameters(design, ps)
        effects = sampled_effects(design, list(plan.other_terms), h.chols, centered, h.beta)
        b_other = [effects[k] for k in plan.other_terms]
        record_effects(design, effects, [f for f, ks in factor_blocks(design).items() if set(ks) & sampled])
        pm.Potential("_marginal_loglik",
                     marginal_loglik_pt(stats, h.beta, h.sigma, h.chols, b_other or None))
    model._bayes_hlm_centered = centered  # recorded in FitInfo.extra
    return model, stats


def _term_factors(design: Design, posterior: xr.Dataset, idx: np.ndarray) -> list:
    """Per GroupTerm: (S, q, q) Cholesky factor (or (S, q) SDs) from the posterior draws."""
    out = []
    offsets: dict[str, int] = {}
    for g in design.groups:
        o = offsets.get(g.factor, 0)
        offsets[g.factor] = o + g.q
        sd = _flat(posterior, naming.sd_var(g.factor))[idx][:, o:o + g.q]
        if g.correlated:
            corr = _flat(posterior, naming.corr_var(g.factor))[idx][:, o:o + g.q, o:o + g.q]
            cov = corr * sd[:, :, None] * sd[:, None, :]
            out.append(np.linalg.cholesky(cov + 1e-12 * np.eye(g.q) * sd.max() ** 2))
        else:
            out.append(sd)
    return out


def _flat(posterior: xr.Dataset, var: str) -> np.ndarray:
    a = posterior[var].values
    return a.reshape((-1,) + a.shape[2:])


def _other_columns(design: Design, plan) -> list[tuple[str, int, int]]:
    """Per sampled term: (r__ variable, first column in it, q)."""
    out, seen = [], {}
    for k in plan.other_terms:
        key, q = naming.effect_var(design.groups[k].factor), design.groups[k].q
        o = seen.get(key, 0)
        out.append((key, o, q))
        seen[key] = o + q
    return out


def _other_effects(design: Design, posterior: xr.Dataset, plan, idx) -> list[np.ndarray]:
    """The sampled terms' effects of draws ``idx``: (S, G_k, q_k) each."""
    return [_flat(posterior, key)[idx][:, :, o:o + q] for key, o, q in _other_columns(design, plan)]


def effect_draws(design: Design, posterior: xr.Dataset, seed: int, stats=None):
    """Function ``(factors, draw_idx, groups=None) -> {factor: (S', levels, q)}`` of exact
    conditional draws of the marginalised ``factors``.

    One pass draws every marginalised factor (a nested design's two factors come from the
    same two-stage solve), so asking for several at once costs one pass, not one each.
    Deterministic in ``(seed, draw index)``: the same draw is regenerated identically
    however the draws are chunked or which groups are asked for.
    """
    stats = stats if stats is not None else compute_stats(design)
    plan = stats.plan
    blocks = {b.factor: b for b in plan.blocks}

    def draws(factors, idx: np.ndarray, groups=None) -> dict[str, np.ndarray]:
        for factor in factors:
            if factor not in blocks:
                raise KeyError(f"{factor!r} is not a marginalised factor")
            if plan.structure == "nested" and factor == plan.blocks[1].factor and groups is not None:
                raise ValueError("group subsets of a nested inner factor: ask for the outer levels")
        idx = np.asarray(idx)
        beta = _flat(posterior, naming.FIXED)[idx]
        sigma = _flat(posterior, naming.SIGMA)[idx]
        L_list = _term_factors(design, posterior, idx)
        b_other = _other_effects(design, posterior, plan, idx) if plan.other_terms else None
        # cache-sized chunks of draws: the batched small-matrix algebra is memory-bound
        step = default_chunk_draws(stats, budget_bytes=CHUNK_BYTES)
        if groups is not None and plan.structure == "single":  # a subset's temporaries shrink
            step = max(step, int(step * stats.A.shape[0] / max(len(groups), 1)))  # with it
        out = {}  # filled chunk by chunk (no list of parts to concatenate: half the peak memory)

        def chunk(a):
            sl = slice(a, a + step)
            eff = draw_group_effects(stats, beta[sl], sigma[sl], [L[sl] for L in L_list],
                                     None if b_other is None else [b[sl] for b in b_other],
                                     seed=seed, draw_index=idx[sl], groups=groups)
            for f in factors:
                blk = blocks[f]
                for k, o, qk in zip(blk.term_index, blk.offsets, blk.q_sizes):
                    if f not in out:  # only in the first chunk, which runs alone
                        out[f] = np.empty((len(idx), eff[k].shape[1], blk.q))
                    out[f][sl, :, o:o + qk] = eff[k]

        if len(idx):
            chunk(0)  # sizes the outputs; the other chunks on threads (keyed noise: same numbers)
        map_chunks(chunk, range(step, len(idx), step), work=chunk_work(stats, step))
        return out

    return draws


def effect_generator(design: Design, posterior: xr.Dataset, seed: int, stats=None):
    """Function ``(factor, draw_idx, groups=None) -> (S', levels, q)`` of exact conditional
    draws (one factor of :func:`effect_draws`)."""
    return _one_factor(effect_draws(design, posterior, seed, stats))


def _one_factor(draws):
    def generate(factor: str, idx: np.ndarray, groups=None) -> np.ndarray:
        return draws([factor], idx, groups)[factor]

    return generate


def effects_seed(seed: int) -> int:
    """Seed of the group-effect draws, distinct from the sampler's stream."""
    return int(np.random.SeedSequence([seed, 7919]).generate_state(1)[0])


def run_marginal(design: Design, ps: PriorSet, cfg: SamplerConfig, stats=None
                 ) -> tuple[SampleOutput, object, dict]:
    """Sample the collapsed model and attach (or register) exact group-effect draws.

    ``stats`` may be precomputed (e.g. on Dask); then no row of the data is touched.
    ``cfg.sampler`` is the engine to run (chosen by
    :func:`bayes_hlm.backends.engine.choose_engine`); ``"auto"`` (this stage used on its
    own) asks the chooser here. ``cfg`` is never modified.
    """
    t0 = time.perf_counter()
    stats = stats if stats is not None else compute_stats(design)
    if cfg.sampler in ("auto", "numba"):
        from .engine import choose_engine, engine_status, run_with_fallback

        def choose(unavailable):
            return choose_engine(design, ps, stats, method="marginal", sampler=cfg.sampler,
                                 unavailable=unavailable)

        if cfg.sampler == "auto":
            return run_with_fallback(choose, lambda c: run_marginal(
                design, ps, replace(cfg, sampler=c.sampler), stats), engine_status())[1]
        choose(engine_status())  # raises when the compiled density does not cover the model
        model = None
        if background_compile.pending():  # the density compiles in a child: meanwhile these
            with _effects_phase(design, stats, ahead=True):
                compile_ahead(stats)
        t_build = time.perf_counter() - t0
        out = numba_nuts.sample(design, ps, stats, cfg)
    else:
        model, stats = build_marginal_model(design, ps, stats=stats)
        t_build = time.perf_counter() - t0
        out = sample_model(model, cfg)
    t1 = time.perf_counter()
    with _effects_phase(design, stats):
        gen, lazy, refreshed = _attach_effects(design, stats, out, cfg.seed)
    effects_s = time.perf_counter() - t1
    out.compile_s += t_build
    seed = effects_seed(cfg.seed)
    extra = {"structure": stats.plan.structure, "marginalised": marginalised_factors(stats),
             "lazy_effects": lazy, "effects_s": effects_s, "effects_seed": seed,
             "gibbs_refreshed": refreshed,
             "sampler": out.extra.get("sampler", cfg.sampler),
             "centered": getattr(model, "_bayes_hlm_centered", out.extra.get("centered", {}))}
    return out, gen, extra


def _effects_phase(design: Design, stats, ahead: bool = False):
    """The progress line of the effect draws: named as a compile where the kernels are cold
    (``ahead``: their compile alone, before sampling, :func:`.conditional_draws.compile_ahead`)."""
    from .conditional_draws import compile_cache_cold

    if not marginalised_factors(stats):
        return phase("drawing group effects")
    cold = compile_cache_cold(stats.plan.structure)
    if ahead:
        return phase("compiling the group-effect draws with Numba (once per machine)", long=cold)
    return phase("drawing group effects (first time on this machine: compiling their Numba "
                 "kernels)" if cold else "drawing group effects", long=cold)


def _attach_effects(design: Design, stats, out: SampleOutput, sampler_seed: int
                    ) -> tuple[object, list[str], list[str]]:
    """Add exact draws of the marginalised effects to ``out``'s posterior (``out.tree`` is
    replaced); returns ``(effect generator, factors left lazy, Gibbs-refreshed factors)``."""
    post = out.tree["posterior"].to_dataset()
    post = post.drop_vars([v for v in post.data_vars if str(v).startswith("_")])
    seed = effects_seed(sampler_seed)
    # the marginalised effects are drawn (and regenerated) given the NUTS draws of the
    # sampled ones, which the Gibbs refresh below replaces in `post` only
    draws = effect_draws(design, post.copy(deep=False), seed, stats)
    gen = _one_factor(draws)
    S = post.sizes["chain"] * post.sizes["draw"]
    lazy, small = [], []
    for factor in marginalised_factors(stats):
        q = sum(design.groups[k].q for k in factor_blocks(design)[factor])
        (lazy if S * design.factors()[factor] * q * 8 > MATERIALIZE_BYTES else small).append(factor)
    stored = draws(small, np.arange(S)) if small else {}  # one pass for all of them
    for factor, b in stored.items():
        post[naming.effect_var(factor)] = (
            ("chain", "draw", naming.level_dim(factor), naming.term_dim(factor)),
            b.reshape(post.sizes["chain"], post.sizes["draw"], b.shape[1], b.shape[2]))
    refreshed = _refresh_sampled(design, stats, post, gen, seed, stored)
    post = post.assign_coords({d: v for d, v in coords(design).items() if d not in post.coords
                               and any(d in post[v_].dims for v_ in post.data_vars)})
    groups = {k: out.tree[k].to_dataset() for k in out.tree.children}
    groups["posterior"] = post
    out.tree = xr.DataTree.from_dict(groups)
    return gen, lazy, refreshed


def _refresh_sampled(design: Design, stats, post: xr.Dataset, gen, seed: int, stored: dict
                     ) -> list[str]:
    """Replace the sampled q = 1 crossed effects in ``post`` by one exact Gibbs sweep
    (:mod:`.effect_refresh`); returns the refreshed factors."""
    if not isinstance(stats, CrossedStats) or not refreshable_terms(stats):
        return []
    plan = stats.plan
    factor = marginalised_factors(stats)[0]
    S = post.sizes["chain"] * post.sizes["draw"]
    cols = _other_columns(design, plan)
    new = np.empty((S, sum(g * q for g, q in zip(plan.other_levels, plan.other_q))))
    step = default_chunk_draws(stats, budget_bytes=CHUNK_BYTES)

    # the posterior's arrays looked up once (xarray lookups hold the GIL the chunks share);
    # per chunk only views of them. Only the q = 1 terms' SDs are read (correlated terms'
    # factors, whose jitter depends on the draws taken together, are not)
    b_all = np.concatenate([b.reshape(S, -1) for b in _other_effects(design, post, plan, slice(None))], 1)
    L_all = _term_factors(design, post, slice(None))
    sd_all = [np.asarray(L_all[k]).reshape(S, -1)[:, 0] for k in plan.other_terms]
    beta_all, sigma_all = _flat(post, naming.FIXED), _flat(post, naming.SIGMA)

    def chunk(a):
        sl = slice(a, min(a + step, S))
        idx = np.arange(sl.start, sl.stop)
        b_marg = stored[factor][sl] if factor in stored else gen(factor, idx)
        new[sl] = refresh_sampled_effects(
            stats, beta_all[sl], sigma_all[sl], [x[sl] for x in sd_all], b_all[sl], b_marg,
            seed=seed, draw_index=idx)

    # chunks on threads (keyed noise: the same numbers); its noise is smaller than the
    # marginalised factor's, whose draws `gen` may make for each chunk
    map_chunks(chunk, range(0, S, step), work=max(chunk_work(stats, step), step * new.shape[1]))
    out = set()
    for i in refreshable_terms(stats):
        key, o, _ = cols[i]
        off, G = plan.other_offsets[i], plan.other_levels[i]
        arr = post[key].values.copy()  # a new array: the generator keeps the NUTS draws
        arr[..., o] = new[:, off:off + G].reshape(arr.shape[:-1])
        post[key] = (post[key].dims, arr)
        out.add(design.groups[plan.other_terms[i]].factor)
    return sorted(out)
