"""``reml.result.cond_sds``: the one condVar-SD helper of lmer and glmer results (#16) is the
diagonal of ``σ² Λ C_g Λᵀ`` per level."""

import numpy as np

from bayes_hlm.reml.result import cond_sds


def test_cond_sds_is_the_diagonal_of_lambda_c_lambda_t():
    rng = np.random.default_rng(3)
    lam = np.array([[1.3, 0.0], [-0.4, 0.7]])
    A = rng.normal(size=(5, 2, 2))
    C = A @ A.transpose(0, 2, 1) + np.eye(2)
    got = cond_sds(lam, C, sigma=2.0)
    want = np.concatenate([np.sqrt(np.diag(4.0 * lam @ Cg @ lam.T)) for Cg in C])
    np.testing.assert_allclose(got, want, rtol=1e-14)
    np.testing.assert_allclose(cond_sds(np.eye(1), np.full((3, 1, 1), 0.25)), [0.5] * 3)
