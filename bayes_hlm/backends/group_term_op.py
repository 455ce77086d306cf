"""The fused group term (:mod:`.group_kernel`) as a PyTensor Op with its gradient, its Numba
implementation registered with PyTensor's Numba backend and (on demand) its JAX one.

Apart from the kernels so that they import without PyTensor; ``group_kernel.GroupMarginalTerm``
and ``group_kernel.register_jax`` resolve here.
"""

from __future__ import annotations

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import disconnected_type
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from .group_kernel import KERNEL_VERSION, group_term_grad

# --------------------------------------------------------------------------- #
# PyTensor Op
# --------------------------------------------------------------------------- #
class GroupMarginalTerm(Op):
    """``F(e, A, L, σ)`` with its gradient as extra outputs (one fused kernel).

    Outputs ``(F, ∂F/∂e, ∂F/∂L, ∂F/∂σ)``; graphs use output 0 and the gradient
    reads the others from the same node, so a log-density-and-gradient
    evaluation runs the kernel once.
    """

    __props__ = ()

    def make_node(self, e, A, L, sigma):
        e = pt.as_tensor_variable(e).astype("float64")
        A = pt.as_tensor_variable(A).astype("float64")
        L = pt.as_tensor_variable(L).astype("float64")
        sigma = pt.as_tensor_variable(sigma).astype("float64")
        if (e.ndim, A.ndim, L.ndim, sigma.ndim) != (2, 3, 2, 0):
            raise TypeError("GroupMarginalTerm needs e (G, q), A (G, q, q), L (q, q), scalar sigma")
        outs = [pt.dscalar(), e.type(), L.type(), pt.dscalar()]
        return Apply(self, [e, A, L, sigma], outs)

    def perform(self, node, inputs, output_storage):
        e, A, L, sigma = inputs
        res = group_term_grad(np.ascontiguousarray(e), np.ascontiguousarray(A),
                              np.ascontiguousarray(L), float(sigma))
        output_storage[0][0] = np.asarray(res[0])
        output_storage[1][0] = res[1]
        output_storage[2][0] = res[2]
        output_storage[3][0] = np.asarray(res[3])

    def infer_shape(self, *args):
        # (node, shapes) in current PyTensor, (fgraph, node, shapes) before; shapes come last
        shapes = args[-1]
        return [(), shapes[0], shapes[2], ()]

    def connection_pattern(self, node):
        # rows: inputs; columns: outputs. The statistics A are data (no gradient).
        return [[True, True, True, True], [False, False, False, False],
                [True, True, True, True], [True, True, True, True]]

    def pullback(self, inputs, outputs, output_grads):
        from pytensor.gradient import DisconnectedType

        if any(not isinstance(g.type, DisconnectedType) for g in output_grads[1:]):
            raise NotImplementedError("second derivatives of the marginal term are not implemented")
        gF = output_grads[0]
        _, gE, gL, gs = outputs
        return [gF * gE, disconnected_type(), gF * gL, gF * gs]


def _register_numba():
    from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key

    @register_funcify_default_op_cache_key(GroupMarginalTerm)
    def _numba_group_term(op, node=None, **kwargs):
        kernel = group_term_grad

        @numba.njit(nogil=True, error_model="numpy")  # inf/nan, never ZeroDivisionError
        def fn(e, A, L, sigma):
            F, gE, gL, gs = kernel(np.ascontiguousarray(e), np.ascontiguousarray(A),
                                   np.ascontiguousarray(L), sigma.item())
            return np.asarray(F), gE, gL, np.asarray(gs)

        return fn, KERNEL_VERSION


_JAX_REGISTERED = False


def register_jax() -> None:
    """Teach PyTensor's JAX backend this Op (imports JAX, so only when a JAX engine runs)."""
    global _JAX_REGISTERED
    if _JAX_REGISTERED:
        return
    from pytensor.link.jax.dispatch import jax_funcify

    @jax_funcify.register(GroupMarginalTerm)
    def _jax_group_term(op, **kwargs):
        import jax
        import jax.numpy as jnp

        def F(e, A, L, sigma):
            s2 = sigma * sigma
            q = e.shape[1]
            v = e @ L  # rows v_gᵀ = e_gᵀ L
            if q <= 2:  # closed forms: elementwise on (G,) vectors, which XLA fuses
                r = range(q)
                AL = [[sum(A[:, k, m] * L[m, j] for m in r) for j in r] for k in r]
                K = [[sum(L[k, i] * AL[k][j] for k in r) + (s2 if i == j else 0.0) for j in r]
                     for i in r]
                if q == 1:
                    return jnp.sum(jnp.log(K[0][0]) - v[:, 0] ** 2 / K[0][0] / s2)
                det = K[0][0] * K[1][1] - K[0][1] ** 2
                quad = (K[1][1] * v[:, 0] ** 2 - 2.0 * K[0][1] * v[:, 0] * v[:, 1]
                        + K[0][0] * v[:, 1] ** 2) / det
                return jnp.sum(jnp.log(det) - quad / s2)
            K = s2 * jnp.eye(q) + jnp.einsum("ki,gkl,lj->gij", L, A, L)
            C = jnp.linalg.cholesky(K)
            u = jax.scipy.linalg.solve_triangular(C, v[..., None], lower=True)[..., 0]
            logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(C, axis1=1, axis2=2)))
            return logdet - jnp.sum(u * u) / s2

        vg = jax.value_and_grad(F, argnums=(0, 2, 3))

        def fn(e, A, L, sigma):
            val, (gE, gL, gs) = vg(e, A, L, sigma)
            return val, gE, gL, gs

        return fn

    _JAX_REGISTERED = True


_register_numba()
