"""Other libraries' notices that are not the user's problem, silenced at our call sites.

Each entry is narrow (category + message start): PyTensor's paragraph about BLAS linking
(a build detail of the environment, not of the model), Python's fork() deprecation from
multiprocess chains, and ArviZ's guess about the chain dimension of short runs (our own
diagnostics already warn when draws are too few). Anything else still reaches the user.

PyMC's sampler also logs its steps at INFO ("Initializing NUTS using jitter+adapt_diag...",
"Multiprocess sampling (4 chains in 4 jobs)", "NUTS: [...]", "Sampling 4 chains ... took 3
seconds", "Sampling: [y]") on its own stderr handler, beside our progress bar and phase lines
(:mod:`bayes_hlm.progress`), which say the same; :func:`quiet_pymc_steps` drops those INFO
records around our calls. PyMC's warnings and errors (level WARNING and up) still print.
"""

from __future__ import annotations

import contextlib
import logging
import warnings

FOREIGN: tuple[tuple[type[Warning], str], ...] = (
    (UserWarning, r"PyTensor could not link to a BLAS installation"),
    (DeprecationWarning, r"This process \(pid=\d+\) is multi-threaded, use of fork\(\)"),
    (UserWarning, r"More chains \(\d+\) than draws \(\d+\)"),
)


def ignore_foreign() -> None:
    """Add the filters to the current warning filters (inside a ``catch_warnings`` block)."""
    for category, message in FOREIGN:
        warnings.filterwarnings("ignore", message=message, category=category)


@contextlib.contextmanager
def quiet_foreign():
    """Run a block with the foreign notices above silenced; restores the filters after."""
    with warnings.catch_warnings():
        ignore_foreign()
        yield


class _BelowWarning(logging.Filter):
    """Drops records under WARNING (PyMC's step-by-step INFO lines)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


@contextlib.contextmanager
def quiet_pymc_steps():
    """Run a block with PyMC's INFO log lines dropped (its warnings still print): the filter
    sits on the ``pymc`` logger's handlers, where records of ``pymc.sampling.*`` arrive."""
    handlers = list(logging.getLogger("pymc").handlers)
    filt = _BelowWarning()
    for h in handlers:
        h.addFilter(filt)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(filt)
