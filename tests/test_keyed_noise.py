"""Counter-based normals for regenerated group-effect draws (backends.keyed_noise)."""

import numpy as np
from scipy import stats

from bayes_hlm.backends.keyed_noise import keyed_normals, seed_key


def test_values_depend_only_on_their_key():
    k = seed_key(7)
    full = keyed_normals(k, 0, np.arange(30), np.arange(500), 3)
    draws, levels = np.array([29, 0, 11]), np.array([499, 3, 250, 3])
    np.testing.assert_array_equal(keyed_normals(k, 0, draws, levels, 3), full[np.ix_(draws, levels)])
    # a column's value does not depend on how many columns are asked for (pairs share a hash)
    np.testing.assert_array_equal(keyed_normals(k, 0, draws, levels, 4)[..., :3],
                                  full[np.ix_(draws, levels)])
    assert not np.allclose(keyed_normals(k, 1, draws, levels, 3), full[np.ix_(draws, levels)])
    assert not np.allclose(keyed_normals(seed_key(8), 0, draws, levels, 3), full[np.ix_(draws, levels)])
    assert seed_key(7) == seed_key(7) and seed_key([7, 1]) != seed_key(7)


def test_standard_normal_and_independent():
    z = keyed_normals(seed_key(2026), 0, np.arange(400), np.arange(1250), 2)  # 1e6 values
    x = z.ravel()
    n = x.size
    se = 1 / np.sqrt(n)
    assert abs(x.mean()) < 5 * se
    assert abs(x.var() - 1) < 5 * np.sqrt(2 / n)
    assert abs(stats.skew(x)) < 5 * np.sqrt(6 / n)
    assert abs(stats.kurtosis(x)) < 5 * np.sqrt(24 / n)
    assert stats.kstest(x, "norm").pvalue > 1e-4
    # neighbours along every key axis are uncorrelated, and so are the two streams
    pairs = [(z[:-1], z[1:]), (z[:, :-1], z[:, 1:]), (z[..., 0], z[..., 1]),
             (z, keyed_normals(seed_key(2026), 1, np.arange(400), np.arange(1250), 2))]
    for a, b in pairs:
        r = np.corrcoef(a.ravel(), b.ravel())[0, 1]
        assert abs(r) < 5 / np.sqrt(a.size), r
    # tails: P(|z| > 3) and P(|z| > 4) within 5 binomial SEs
    for t in (3.0, 4.0):
        p = 2 * stats.norm.sf(t)
        assert abs(np.mean(np.abs(x) > t) - p) < 5 * np.sqrt(p * (1 - p) / n)


def test_serial_and_parallel_kernels_agree(monkeypatch):
    """Small requests run the serial twin (compiles in a fraction of the time, #18), large
    ones the parallel kernel: the same numbers either way."""
    from bayes_hlm.backends import conditional_draws as cd, kernel_variants as kv

    small = keyed_normals(7, 1, np.arange(30), np.arange(11), 3)
    monkeypatch.setattr(kv, "PARALLEL_MIN_WORK", 1)  # everything parallel
    np.testing.assert_array_equal(keyed_normals(7, 1, np.arange(30), np.arange(11), 3), small)
    rng = np.random.default_rng(0)
    S, G, q = 20, 9, 2
    e = rng.normal(size=(S, G, q))
    A = rng.normal(size=(G, q, q))
    A = A @ A.transpose(0, 2, 1) + np.eye(q)
    Lam = np.broadcast_to(np.eye(q) * 0.7, (S, q, q)).copy()
    sigma = np.full(S, 1.3)
    xi = rng.normal(size=(S, G, q))
    np.testing.assert_array_equal(cd._block_draws_serial(e, A, Lam, sigma, xi),
                                  cd._block_draws(e, A, Lam, sigma, xi))
    assert kv.pick("par", "ser", 10) == "par"  # threshold patched to 1
    monkeypatch.undo()
    assert kv.pick("par", "ser", 10) == "ser" and kv.pick("par", "ser", kv.PARALLEL_MIN_WORK) == "par"
