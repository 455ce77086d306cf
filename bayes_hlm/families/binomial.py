"""The binomial family: ``y ~ Binomial(trials, g^-1(eta))`` (successes out of trials)."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..errors import DataError
from .bernoulli import Bernoulli


class Binomial(Bernoulli):
    """Successes out of a known number of trials (lme4's ``cbind(s, f)``, Bambi's ``p(s, n)``).

    Links, priors and latent-scale variance as :class:`~.bernoulli.Bernoulli`. The trials
    travel with the data (``Design.trials``) and reach :meth:`likelihood`, :meth:`logpdf`
    and :meth:`random` as the ``trials`` keyword.
    """

    name = "binomial"
    needs_trials = True

    def check_response(self, y: np.ndarray, column: str, trials: np.ndarray | None = None) -> None:
        super(Bernoulli, self).check_response(y, column)  # finite values; not Bernoulli's 0/1
        y = np.asarray(y, dtype=float)
        if trials is None:
            raise DataError(f"the binomial family needs the number of trials: write the response "
                            f"as cbind(successes, failures) or p(successes, trials), not "
                            f"{column!r} alone (0/1 outcomes: family='bernoulli')")
        n = np.asarray(trials, dtype=float)
        checks = [
            ((y < 0) | (y != np.round(y)), "successes must be whole numbers >= 0", y),
            ((n < 1) | (n != np.round(n)), "trials must be whole numbers >= 1", n),
            (y > n, "successes exceed trials", y),
        ]
        for bad, what, vals in checks:
            rows = np.flatnonzero(bad)
            if rows.size:
                r = rows[0]
                raise DataError(f"response {column!r} cannot be modelled by the binomial family: "
                                f"{what} (row {r}: {y[r]:g} successes of {n[r]:g} trials)")

    def likelihood(self, name: str, eta, params: Mapping[str, object], observed):
        import pymc as pm

        n = params["trials"]
        if self.link.name == "logit":
            return pm.Binomial(name, n=n, logit_p=eta, observed=observed)
        return pm.Binomial(name, n=n, p=self.link.inverse_tensor(eta), observed=observed)

    def logpdf(self, y, eta, *, trials, **_) -> np.ndarray:
        from scipy.special import gammaln

        lp, lq = self._log_p_q(eta)
        y = np.asarray(y, dtype=float)
        n = np.asarray(trials, dtype=float)
        comb = gammaln(n + 1) - gammaln(y + 1) - gammaln(n - y + 1)
        # 0 * log(0) is 0 here: y = 0 or y = n with p at 0 or 1
        return comb + np.where(y > 0, y * lp, 0.0) + np.where(n - y > 0, (n - y) * lq, 0.0)

    def random(self, eta, rng, *, trials, **_) -> np.ndarray:
        p = self.p(eta)
        return rng.binomial(np.broadcast_to(np.asarray(trials, dtype=np.int64), np.shape(p)),
                            p).astype(float)
