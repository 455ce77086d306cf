"""Post-fit cost at scale (#18 item 8): what runs after sampling is bounded and says so.

Timings are measured in benchmarks/bench_dask.py (post-fit / fit column); here: the rules."""

import numpy as np
import pytest

from bayes_hlm.results import draws as draws_mod
from bayes_hlm.results.stats_result import EFFECT_DRAW_COST, _cross, _lin, _quad


class _Src(draws_mod.DrawSource):
    def __init__(self, size):  # only what postfit_draws/thinned read
        self.n_chains, self.n_draws = 4, size // 4

    @property
    def size(self):
        return self.n_chains * self.n_draws


def test_postfit_draws_budget():
    src = _Src(4000)
    assert len(src.postfit_draws("auto", 180 * 4)) == draws_mod.POSTFIT_MAX_DRAWS  # sleepstudy
    # many groups x 2 terms of exact effect draws: the work budget picks fewer, evenly spaced
    for groups in (2_000, 5_000, 20_000):
        per_draw = EFFECT_DRAW_COST * groups * 2
        k = len(src.postfit_draws("auto", per_draw))
        assert draws_mod.POSTFIT_MIN_DRAWS <= k <= draws_mod.POSTFIT_MAX_DRAWS
        assert k == draws_mod.POSTFIT_MIN_DRAWS or k * per_draw <= draws_mod.POSTFIT_WORK * 1.01
    assert len(src.postfit_draws("auto", EFFECT_DRAW_COST * 5_000 * 2)) < draws_mod.POSTFIT_MAX_DRAWS
    assert len(src.postfit_draws("auto", 1e12)) == draws_mod.POSTFIT_MIN_DRAWS  # never fewer
    idx = src.postfit_draws("auto", 1e12)
    assert idx[0] == 0 and idx[-1] == 3999 and np.all(np.diff(idx) > 0)
    assert len(src.postfit_draws(None, 1e12)) == 4000  # explicit: as given
    assert len(src.postfit_draws(100, 1)) == 100
    with pytest.raises(ValueError, match="auto"):
        src.postfit_draws("all", 1)


def test_r2_contractions_equal_einsum():
    rng = np.random.default_rng(0)
    S, G, q, p = 7, 13, 3, 2
    b, c = rng.normal(size=(S, G, q)), rng.normal(size=(S, G, 2))
    B, A, C = rng.normal(size=(G, q, p)), rng.normal(size=(G, q, q)), rng.normal(size=(G, q, 2))
    beta, v = rng.normal(size=(S, p)), rng.normal(size=(G, q))
    np.testing.assert_allclose(_lin(b, v), np.einsum("sgq,gq->s", b, v))
    np.testing.assert_allclose(_cross(b, B, beta), np.einsum("sgq,gqp,sp->s", b, B, beta))
    np.testing.assert_allclose(_quad(b, A, b), np.einsum("sgi,gij,sgj->s", b, A, b))
    np.testing.assert_allclose(_quad(b, C, c), np.einsum("sgi,gij,sgj->s", b, C, c))


def test_fit_json_says_how_many_draws_r2_used(sleep_fit):
    from bayes_hlm.results.export import fit_json

    js = fit_json(sleep_fit)
    assert js["r2_bayes"]["draws"] == f"all {sleep_fit._draws.size}"
    assert "effects_covered" in js["diagnostics"]
