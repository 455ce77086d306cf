"""Per-row log likelihoods of the non-Gaussian families and their derivatives, in Numba.

One row (or one compressed cell, :mod:`.compression`) of a generalized model contributes
``l(eta; y, n, phi)`` where ``eta`` is the linear predictor *including the offset*, ``y``
the response, ``n`` the trials (binomial; 1 for Bernoulli and unused otherwise) and
``phi`` the family parameter (NB and Gamma ``alpha``; unused otherwise).
:func:`row_terms` returns, for one row::

    (l, dl/deta, d2l/deta2, dl/dphi, d2l/(deta dphi), d2l/dphi2)

without the part that depends on the data only (``log C(n, y)``, ``-log y!``,
``-log y``): that constant is :func:`data_constant`, computed once per data set. So
``row_terms(...)[0] + data_constant(...)`` equals the family's NumPy
:meth:`~bayes_hlm.families.base.Family.logpdf` (tested), and every engine that needs
the likelihood of a generalized model (the compiled full model
:mod:`.glmm_density`, the quadrature-collapsed engine) reads it from here: one
implementation per family and link.

Kernel codes (:func:`kernel_code`) are plain integers so a jitted caller branches on
them without first-class functions (``cache=True`` keeps working). A weight (frequency
or likelihood weight) multiplies every entry; the caller applies it.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ..errors import BayesHLMError
from ..statistics.fast_math import FASTMATH, fast_exp, log1p_unit

__all__ = ["KERNELS", "kernel_code", "row_terms", "data_constant", "loglik_sum", "fast_exp",
           "log1p_unit", "loglik_rows", "bernoulli_logit_sum", "eta_derivatives", "digamma", "trigamma", "has_param"]

#: (family name, link name) -> kernel code
KERNELS: dict[tuple[str, str], int] = {
    ("binomial", "logit"): 0,
    ("binomial", "probit"): 1,
    ("binomial", "cloglog"): 2,
    ("poisson", "log"): 3,
    ("negativebinomial", "log"): 4,
    ("gamma", "log"): 5,
    ("gamma", "inverse"): 6,
    ("gamma", "identity"): 7,
}
_WITH_PARAM = frozenset({4, 5, 6, 7})
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_SQRT1_2 = 1.0 / math.sqrt(2.0)


def kernel_code(family) -> int:
    """The kernel code of a :class:`~bayes_hlm.families.base.Family` (Bernoulli uses the
    binomial kernel with one trial); an uncovered family/link is a clear error."""
    name = "binomial" if family.name == "bernoulli" else family.name
    try:
        return KERNELS[(name, family.link.name)]
    except KeyError:
        raise BayesHLMError(f"no compiled likelihood for the {family.name} family with the "
                            f"{family.link.name} link") from None


def has_param(code: int) -> bool:
    """Whether the kernel reads the family parameter ``phi`` (NB and Gamma ``alpha``)."""
    return code in _WITH_PARAM


# --------------------------------------------------------------------------- #
# special functions Numba's math module lacks
# --------------------------------------------------------------------------- #
@numba.njit(cache=True, fastmath=False)
def digamma(x: float) -> float:
    """ψ(x) for x > 0: recurrence up to x ≥ 10, then the asymptotic series (|err| < 1e-13)."""
    acc = 0.0
    while x < 10.0:
        acc -= 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    return acc + math.log(x) - 0.5 / x - f * (1.0 / 12 - f * (1.0 / 120 - f * (
        1.0 / 252 - f * (1.0 / 240 - f * (1.0 / 132)))))


@numba.njit(cache=True, fastmath=False)
def trigamma(x: float) -> float:
    """ψ'(x) for x > 0: recurrence up to x ≥ 10, then the asymptotic series."""
    acc = 0.0
    while x < 10.0:
        acc += 1.0 / (x * x)
        x += 1.0
    f = 1.0 / (x * x)
    return acc + 1.0 / x + 0.5 * f + (1.0 / x) * f * (1.0 / 6 - f * (1.0 / 30 - f * (
        1.0 / 42 - f * (1.0 / 30))))


@numba.njit(cache=True, fastmath=False)
def _log_ndtr_mills(x: float):
    """``(log Φ(x), φ(x)/Φ(x))`` without underflow (asymptotic series below x = -30)."""
    if x > -30.0:
        cdf = 0.5 * math.erfc(-x * _SQRT1_2)
        return math.log(cdf), math.exp(-0.5 * x * x - _LOG_SQRT_2PI) / cdf
    # Φ(x) = φ(x)/(-x) · s,  s = 1 - 1/x² + 3/x⁴ - 15/x⁶ + 105/x⁸
    z = 1.0 / (x * x)
    s = 1.0 - z * (1.0 - z * (3.0 - z * (15.0 - 105.0 * z)))
    return -0.5 * x * x - _LOG_SQRT_2PI - math.log(-x) + math.log(s), -x / s


# --------------------------------------------------------------------------- #
# the kernels
# --------------------------------------------------------------------------- #
@numba.njit(cache=True, fastmath=False)
def _binomial(code, y, n, eta):
    """Binomial with ``n`` trials (Bernoulli: n = 1), without ``log C(n, y)``."""
    f = n - y
    if code == 0:  # logit: l = y eta − n log(1 + e^eta); one exp and one log1p per row
        e = math.exp(-abs(eta))
        sp = max(eta, 0.0) + math.log1p(e)  # log(1 + e^eta)
        if eta >= 0.0:
            p, q = 1.0 / (1.0 + e), e / (1.0 + e)
        else:
            p, q = e / (1.0 + e), 1.0 / (1.0 + e)
        return y * eta - n * sp, y - n * p, -n * p * q
    if code == 1:  # probit: log Φ(±eta), inverse Mills ratios
        lp, mp = _log_ndtr_mills(eta)
        lq, mq = _log_ndtr_mills(-eta)
        ll = 0.0
        d1 = 0.0
        d2 = 0.0
        if y > 0.0:
            ll += y * lp
            d1 += y * mp
            d2 -= y * mp * (eta + mp)
        if f > 0.0:
            ll += f * lq
            d1 -= f * mq
            d2 -= f * mq * (mq - eta)
        return ll, d1, d2
    # cloglog: log q = -u, log p = log(1 - e^-u), u = e^eta
    u = math.exp(eta)
    ll = 0.0
    d1 = 0.0
    d2 = 0.0
    if f > 0.0:
        ll -= f * u
        d1 -= f * u
        d2 -= f * u
    if y > 0.0:
        ll += y * math.log(-math.expm1(-u))
        if u > 700.0:  # p = 1 to double precision: g = u e^-u underflows
            g = 0.0
            dg = 0.0
        elif u < 1e-3:  # g = u/(e^u - 1) = 1 - u/2 + u²/12 - u⁴/720; dg = u g'(u)
            g = 1.0 - u * (0.5 - u * (1.0 / 12 - u * u / 720.0))
            dg = u * (-0.5 + u * (1.0 / 6 - u * u / 180.0))
        else:
            em = math.expm1(u)
            g = u / em
            dg = u * (em - u * (em + 1.0)) / (em * em)
        d1 += y * g
        d2 += y * dg
    return ll, d1, d2


@numba.njit(cache=True, fastmath=False)
def row_terms(code, y, n, eta, phi):
    """One row's ``(l, l_eta, l_eta_eta, l_phi, l_eta_phi, l_phi_phi)`` (see module doc).

    Parameters
    ----------
    code : int
        :func:`kernel_code` of the family and link.
    y, n : float
        Response and trials (``n`` is read by the binomial kernels only).
    eta : float
        Linear predictor including the offset.
    phi : float
        Family parameter (NB/Gamma ``alpha``); read only where :func:`has_param`.
    """
    if code <= 2:
        ll, d1, d2 = _binomial(code, y, n, eta)
        return ll, d1, d2, 0.0, 0.0, 0.0
    if code == 3:  # Poisson, log link
        mu = math.exp(eta)
        ll = y * eta - mu
        return ll, y - mu, -mu, 0.0, 0.0, 0.0
    if code == 4:  # NB2, log link, size a (Bambi/PyMC alpha)
        a = phi
        mu = math.exp(eta)
        am = a + mu
        lam = math.log(am)
        ll = (math.lgamma(y + a) - math.lgamma(a) + a * math.log(a) + y * eta
              - (a + y) * lam)
        d1 = a * (y - mu) / am
        d2 = -(a + y) * a * mu / (am * am)
        dp = digamma(y + a) - digamma(a) + math.log(a) + 1.0 - lam - (a + y) / am
        dep = (y - mu) * mu / (am * am)
        dpp = trigamma(y + a) - trigamma(a) + 1.0 / a - 1.0 / am - (mu - y) / (am * am)
        return ll, d1, d2, dp, dep, dpp
    # Gamma with shape a and mean mu: a log a - lgamma(a) + a log y - a y/mu - a log mu
    a = phi
    ly = math.log(y)
    if code == 5:  # log link: log mu = eta
        r = y * math.exp(-eta)  # y/mu
        logmu = eta
        d1u = r - 1.0          # per unit of a
        d2u = -r
    elif code == 6:  # inverse link: mu = 1/eta (eta > 0)
        if eta <= 0.0:
            return -np.inf, 0.0, 0.0, 0.0, 0.0, 0.0
        r = y * eta
        logmu = -math.log(eta)
        d1u = -y + 1.0 / eta
        d2u = -1.0 / (eta * eta)
    else:  # identity: mu = eta (eta > 0)
        if eta <= 0.0:
            return -np.inf, 0.0, 0.0, 0.0, 0.0, 0.0
        r = y / eta
        logmu = math.log(eta)
        d1u = (r - 1.0) / eta
        d2u = (1.0 - 2.0 * r) / (eta * eta)
    ll = a * math.log(a) - math.lgamma(a) + a * ly - a * r - a * logmu
    dp = math.log(a) + 1.0 - digamma(a) + ly - r - logmu
    dpp = 1.0 / a - trigamma(a)
    return ll, a * d1u, a * d2u, dp, d1u, dpp


@numba.njit(cache=True, fastmath=False)
def data_constant(code, y, n):
    """The data-only part of one row's log likelihood that :func:`row_terms` leaves out."""
    if code <= 2:
        return math.lgamma(n + 1.0) - math.lgamma(y + 1.0) - math.lgamma(n - y + 1.0)
    if code <= 4:
        return -math.lgamma(y + 1.0)
    return -math.log(y)


# --------------------------------------------------------------------------- #
# vectorised helpers (tests, pointwise log likelihood, Newton steps)
# --------------------------------------------------------------------------- #
@numba.njit(cache=True, fastmath=False)
def loglik_rows(code, y, n, w, eta, phi, with_constant):
    """Per-row ``w_i · l_i`` (plus the data constant when ``with_constant``)."""
    out = np.empty(eta.shape[0])
    for i in range(eta.shape[0]):
        t = row_terms(code, y[i], n[i], eta[i], phi)
        c = data_constant(code, y[i], n[i]) if with_constant else 0.0
        out[i] = w[i] * (t[0] + c)
    return out


# --------------------------------------------------------------------------- #
# the gradient's hot loop: logit and Poisson without libm calls
# --------------------------------------------------------------------------- #
# libm's exp and log1p cost ~30 ns a call each and block vectorisation; a full-model
# gradient is almost nothing else (20k Bernoulli rows: 1.8 ms): the rows below use the
# branch-free fast_exp / log1p_unit of statistics.fast_math (2 ulp), which LLVM vectorises.
_FAST = FASTMATH


@numba.njit(cache=True, fastmath=_FAST, inline="always")
def _logit_row(e):
    """``(log(1 + e^eta), sigmoid(eta))`` of one logit row, without cancellation."""
    ee = fast_exp(-abs(e))
    inv = 1.0 / (1.0 + ee)
    return max(e, 0.0) + log1p_unit(ee), (inv if e >= 0.0 else ee * inv)


@numba.njit(cache=True, fastmath=_FAST, error_model="numpy")
def _logit_sum(y, n, w, eta, d_eta):
    tot = 0.0
    for i in range(eta.shape[0]):
        sp, p = _logit_row(eta[i])
        tot += w[i] * (y[i] * eta[i] - n[i] * sp)
        d_eta[i] = w[i] * (y[i] - n[i] * p)
    return tot


@numba.njit(cache=True, fastmath=_FAST, error_model="numpy", nogil=True)
def bernoulli_logit_sum(y, eta, d_eta):
    """:func:`loglik_sum` for Bernoulli rows with unit weights (logit link): 10% less work
    than the weighted loop (no trials or weights read)."""
    tot = 0.0
    for i in range(eta.shape[0]):
        sp, p = _logit_row(eta[i])
        tot += y[i] * eta[i] - sp
        d_eta[i] = y[i] - p
    return tot


@numba.njit(cache=True, fastmath=_FAST, error_model="numpy")
def _poisson_sum(y, w, eta, d_eta):
    tot = 0.0
    for i in range(eta.shape[0]):
        e = eta[i]
        mu = fast_exp(e) if e <= 709.0 else np.inf
        tot += w[i] * (y[i] * e - mu)
        d_eta[i] = w[i] * (y[i] - mu)
    return tot


@numba.njit(cache=True, fastmath=False)
def loglik_sum(code, y, n, w, eta, phi, d_eta):
    """``Σ w_i l_i`` without data constants; writes ``w_i dl_i/deta`` into ``d_eta`` and
    returns ``(sum, d/dphi of the sum)``. Logit and Poisson take the libm-free loops above
    (same values as :func:`row_terms` to ~1e-15 relative, tested)."""
    if code == 0:
        return _logit_sum(y, n, w, eta, d_eta), 0.0
    if code == 3:
        return _poisson_sum(y, w, eta, d_eta), 0.0
    tot = 0.0
    dphi = 0.0
    for i in range(eta.shape[0]):
        t = row_terms(code, y[i], n[i], eta[i], phi)
        tot += w[i] * t[0]
        d_eta[i] = w[i] * t[1]
        dphi += w[i] * t[3]
    return tot, dphi


@numba.njit(cache=True, fastmath=False)
def eta_derivatives(code, y, n, w, eta, phi, d1, d2):
    """Writes ``w_i dl_i/deta`` and ``w_i d2l_i/deta2`` (Newton / Laplace / quadrature
    modes) and returns the weighted log likelihood without data constants."""
    tot = 0.0
    for i in range(eta.shape[0]):
        t = row_terms(code, y[i], n[i], eta[i], phi)
        tot += w[i] * t[0]
        d1[i] = w[i] * t[1]
        d2[i] = w[i] * t[2]
    return tot
