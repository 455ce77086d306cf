"""The centred-intercept shift, in a module of its own: NumPy only, so that the compiled
densities (which compile it) load without pandas (#18 item 5: a background compile's child)."""

from __future__ import annotations


def intercept_shift(raw, x_mean, i: int):
    """The centred-intercept shift ``sum_{j != i} x_mean[j] raw[..., j]``.

    Bambi samples the intercept of centred predictors; the intercept of the user's
    (uncentred) predictors is ``raw[i] - intercept_shift(raw, x_mean, i)`` and the
    other coefficients are unchanged. The one definition, used on NumPy draws
    ``(..., p)``, PyTensor vectors (PyMC graphs) and inside Numba-compiled code.
    """
    return raw @ x_mean - x_mean[i] * raw[..., i]
