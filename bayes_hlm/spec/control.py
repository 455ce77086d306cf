"""Input checks, all run through one configurable mechanism (lme4's ``lmerControl``).

Each check has a name and an action: ``"stop"`` (raise :class:`DataError`),
``"warning"`` (warn and go on) or ``"ignore"``. Messages state the numbers.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields, replace
from typing import Any, Literal, Mapping

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
    optimizer : {"bobyqa", "L-BFGS-B"}
        Optimiser of the frequentist (REML/ML) fit, as ``lmerControl(optimizer=)``: nlopt's
        BOBYQA (lme4's default ``nloptwrap``) or scipy's L-BFGS-B. Not used by Bayesian fits.
    opt_ctrl : mapping
        Optimiser / convergence-check settings of the REML/ML fit, as ``lmerControl(optCtrl=)``
        (``maxiter``, ``maxfun``, ``xtol_abs``, ``xtol_rel``, ``ftol_abs``, ``check_conv_tol``,
        ``check_singular_tol``, ``calc_derivs``, ``blas_threads``, ...; see
        ``bayes_hlm.reml.optimize.DEFAULT_CONTROL``). Stored as sorted ``(key, value)`` pairs so
        that a Control stays hashable; pass a dict.
    """

    check_nlev_gtr_1: Action = "stop"
    check_nobs_vs_nlev: Action = "stop"
    check_nobs_vs_nRE: Action = "stop"
    check_rank: Literal["drop", "stop", "ignore"] = "drop"
    check_numeric_group: Action = "warning"
    check_slope_variation: Action = "warning"
    optimizer: str = "bobyqa"
    opt_ctrl: Mapping[str, Any] | tuple = ()

    def __post_init__(self):
        # a dict (or the list of pairs a saved result holds) -> sorted tuple of pairs
        items = self.opt_ctrl.items() if isinstance(self.opt_ctrl, Mapping) else self.opt_ctrl
        object.__setattr__(self, "opt_ctrl", tuple(sorted((str(k), v) for k, v in items)))

    def optimizer_settings(self) -> dict[str, Any]:
        """``{"optimizer": ..., **opt_ctrl}``: the settings handed to the REML/ML optimiser."""
        return {"optimizer": self.optimizer, **dict(self.opt_ctrl)}

    def with_(self, **changes: str) -> "Control":
        """Copy with some settings changed; unknown names raise ``TypeError``."""
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
