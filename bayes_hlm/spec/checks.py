"""Input checks, all run through one configurable mechanism (lme4's ``lmerControl``).

Each check has a name and an action: ``"stop"`` (raise :class:`DataError`),
``"warning"`` (warn and go on) or ``"ignore"``. Messages state the numbers.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields, replace
from typing import Literal

from ..errors import BayesHLMWarning, DataError

Action = Literal["stop", "warning", "ignore"]


@dataclass(frozen=True)
class Control:
    """Actions for the model-input checks (names follow ``lme4::lmerControl``).

    Attributes
    ----------
    check_nlev_gtr_1 : {"stop", "warning", "ignore"}
        Every grouping factor must have at least two levels.
    check_nobs_vs_nlev : {"stop", "warning", "ignore"}
        Number of levels of each grouping factor must be < number of observations.
    check_nobs_vs_nRE : {"stop", "warning", "ignore"}
        Number of random effects (levels x terms) must be < number of observations.
    check_rank : {"drop", "stop", "ignore"}
        Rank-deficient fixed effects: drop aliased columns with a warning (lme4's
        default ``"message+drop.cols"``), or stop.
    check_numeric_group : {"warning", "stop", "ignore"}
        A grouping column with non-integer numbers (looks continuous).
    check_slope_variation : {"warning", "stop", "ignore"}
        A random slope whose column is constant within every group.
    """

    check_nlev_gtr_1: Action = "stop"
    check_nobs_vs_nlev: Action = "stop"
    check_nobs_vs_nRE: Action = "stop"
    check_rank: Literal["drop", "stop", "ignore"] = "drop"
    check_numeric_group: Action = "warning"
    check_slope_variation: Action = "warning"

    def with_(self, **changes: str) -> "Control":
        """Copy with some actions changed; unknown names raise ``TypeError``."""
        known = {f.name for f in fields(self)}
        bad = set(changes) - known
        if bad:
            raise TypeError(f"unknown check(s) {sorted(bad)}; known: {sorted(known)}")
        return replace(self, **changes)


def apply_check(control: Control, name: str, ok: bool, message: str) -> None:
    """Act on one check: raise, warn or stay silent, as ``control`` says for ``name``."""
    if ok:
        return
    action = getattr(control, name)
    if action == "stop":
        raise DataError(f"{message} (check '{name}'; to go on anyway pass control=Control({name}="
                        f"'warning') in Python or --control {name}=warning on the command line)")
    if action in ("warning", "drop"):
        warnings.warn(message, BayesHLMWarning, stacklevel=3)
