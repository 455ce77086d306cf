"""Small Numba kernels for the tests of kernel_variants.specialised and numba_nuts.callbacks
(fast to compile; in a module of their own so that a subprocess can import them)."""

import numba
import numpy as np

_MODE = "any"


@numba.njit(cache=True)
def _plus_one(x):
    return x + 1.0


@numba.njit(cache=True)
def _untypable(x):
    return x.no_such_attribute  # a typing error the moment anything compiles a call to it


@numba.njit(cache=True)
def pick(x):
    """``_plus_one`` where ``_MODE`` is "one", else the kernel that cannot compile."""
    if _MODE == "one":
        return _plus_one(x)
    return _untypable(x)


@numba.njit(cache=True, nogil=True)
def logp_sq(x, buf, grad):
    """``−½ Σ (x − buf[1:])²`` and its gradient (buf[0]: the buffer's length)."""
    lp = 0.0
    for i in range(x.shape[0]):
        d = x[i] - buf[1 + i]
        lp -= 0.5 * d * d
        grad[i] = -d
    return lp


@numba.njit(cache=True, nogil=True)
def logp_sq_fused(x, buf, grad):
    """:func:`logp_sq`'s numbers, compiled into its callback (numba_nuts.callbacks): its locals
    ``head``, ``val`` and ``i`` are also the callback template's."""
    head = 0.0
    val = 0.0
    for i in range(x.shape[0]):
        d = x[i] - buf[1 + i]
        val -= 0.5 * d * d
        grad[i] = -d
        head += d
    return val + 0.0 * head


logp_sq_fused.fuse_into_callback = True


@numba.njit(cache=True, nogil=True)
def two_returns(x, buf, grad):
    if x[0] > 0:
        return 0.0
    return 1.0


two_returns.fuse_into_callback = True


def buffer(mu) -> np.ndarray:
    mu = np.asarray(mu, dtype=float)
    return np.concatenate([[mu.size + 1.0], mu])


def get(name: str):
    """A kernel of this module by name (a factory for background_compile's child)."""
    return globals()[name]


def broken():
    """A factory that fails (the child of background_compile then exits non-zero)."""
    raise RuntimeError("no kernel here")
