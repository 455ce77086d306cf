"""Other libraries' notices that are not the user's problem, silenced at our call sites.

Each entry is narrow (category + message start): PyTensor's paragraph about BLAS linking
(a build detail of the environment, not of the model), Python's fork() deprecation from
multiprocess chains, and ArviZ's guess about the chain dimension of short runs (our own
diagnostics already warn when draws are too few). Anything else still reaches the user.
"""

from __future__ import annotations

import contextlib
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
