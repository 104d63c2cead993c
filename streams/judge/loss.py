"""Loss-based concept detector for regression models: a CUSUM on the continuous loss.

A regression model's labelled outcome carries more than "over the tolerance or not": its loss
(``|prediction - label|``, or relative, :func:`streams.judge.profile.loss_array`).  The reference
profile stores the reference loss distribution as :data:`~streams.judge.profile.LOSS_QUANTILES`
quantiles (``LabelProfile.loss_quantiles``), and :class:`LossCusum` tests the stream against it.

Statistic.  Each loss ``x`` is mapped through the reference distribution to a half-normal score,
``g = Phi^-1((1 + F0(x)) / 2)`` with ``F0`` the reference CDF interpolated between the stored
quantiles (mid-rank on atoms: a loss equal to a reference atom, e.g. a constant bias, gets the
middle of the atom's probability mass).  Under no change ``g`` is distributed as ``|N(0, 1)|``
whatever the loss distribution (skewed, heavy-tailed, discrete).  The CUSUM adds the
log-likelihood ratio of "the loss scaled by ``r``" over "unchanged" for that model,
``llr = -ln r + g^2 (1 - 1/r^2) / 2``, i.e. a scale CUSUM (optimal for Gaussian residuals whose
spread grows, MAE x ``r``).  It is a true likelihood ratio in the reference, so the average run
length under no change is at least ``exp(h)`` (Wald), as for the Bernoulli CUSUM with the same
``cusum_h``.  The score is bounded (the interpolation stops half a quantile step beyond the
extreme quantiles: ``g <= 3.2``), so one huge loss adds at most ``~2`` nats: outliers do not alarm
alone.  Estimation noise of the reference: ``g`` is divided by ``1 + sqrt(2 / n0)`` (the reference
spread taken at its upper ~2-standard-error bound, as the Bernoulli CUSUM uses ``p0`` + 2 SE).

Design shift ``r`` = :data:`LOSS_SCALE_SHIFT` (1.3: the loss grows by 30%); a larger change is
detected faster (``h / E[llr]`` events: about 65 for MAE x1.5, 250 for x1.25 at ``h = 12``).
A missing side (no outcome) gets the reference median (``F0 = 0.5``): no evidence either way.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from scipy import special

from streams.judge.drift_metrics import Cusum

#: The loss scale factor the CUSUM is tuned for (1.3 = MAE +30%).
LOSS_SCALE_SHIFT = 1.3


def reference_cdf(qs: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``F0(x)`` from quantiles ``qs`` at probabilities ``(i + 0.5) / m``: linear between quantiles,
    mid-rank on atoms (repeated quantiles), half a step beyond the ends; nan -> 0.5."""
    m = len(qs)
    p = (np.arange(m) + 0.5) / m
    x = np.asarray(x, dtype=float)
    xf = np.where(np.isnan(x), qs[m // 2], x)
    tol = 1e-9 * np.maximum(np.abs(np.where(np.isinf(xf), 0.0, xf)), abs(qs[-1])) + 1e-300
    lo = np.searchsorted(qs, xf - tol, "left")
    hi = np.searchsorted(qs, xf + tol, "right")
    j = np.clip(lo, 1, m - 1) if m > 1 else np.zeros_like(lo)
    den = qs[j] - qs[j - 1] if m > 1 else np.zeros(len(xf))
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(den > 0, (xf - qs[j - 1]) / np.where(den > 0, den, 1.0), 0.5)
    u = p[j - 1] + np.clip(frac, 0.0, 1.0) * (p[j] - p[j - 1]) if m > 1 else np.full(len(xf), 0.5)
    u = np.where(lo == 0, p[0] / 2, np.where(lo >= m, (1 + p[-1]) / 2, u))
    atom = hi > lo
    u = np.where(atom, (p[np.minimum(lo, m - 1)] + p[np.maximum(hi - 1, 0)]) / 2, u)
    return np.where(np.isnan(x), 0.5, u)


class LossCusum(Cusum):
    """Scale CUSUM of a regression model's losses against the reference loss quantiles (module doc).

    >>> qs = np.quantile(np.abs(np.random.default_rng(0).normal(size=5000)), (np.arange(200) + 0.5) / 200)
    >>> c = LossCusum(qs, 5000, h=12.0)
    >>> c.update(np.abs(np.random.default_rng(1).normal(size=5000)))
    []
    >>> 0 < c.update(np.abs(np.random.default_rng(2).normal(0, 2.0, size=500)))[0] < 100
    True
    """

    def __init__(self, quantiles: Sequence[float], n0: int, h: float, r: float = LOSS_SCALE_SHIFT,
                 s: float = 0.0, n: int = 0, run: int = 0) -> None:
        super().__init__(h, s, n, run)
        self.qs = np.asarray(quantiles, dtype=float)
        self.n0, self.r = int(n0), float(r)
        self._shrink = 1.0 + math.sqrt(2.0 / max(self.n0, 1))
        self._a, self._b = -math.log(self.r), (1.0 - 1.0 / self.r**2) / 2.0

    def llr(self, losses: np.ndarray) -> np.ndarray:
        g = special.ndtri((1.0 + reference_cdf(self.qs, losses)) / 2.0) / self._shrink
        return self._a + self._b * g * g

    def update(self, losses: np.ndarray) -> list[int]:
        """Feed losses in event order; positions of alarms (``alarm_runs``: see :meth:`Cusum._run`)."""
        return self._run(self.llr(np.asarray(losses, dtype=float)))

    def state_dict(self) -> dict[str, Any]:
        return {"n0": self.n0, "r": self.r, "h": self.h, "s": self.s, "n": self.n, "run": self.run}

    @classmethod
    def from_state(cls, d: dict[str, Any], quantiles: Sequence[float]) -> "LossCusum":
        return cls(quantiles, int(d["n0"]), float(d["h"]), float(d.get("r", LOSS_SCALE_SHIFT)),
                   float(d.get("s", 0.0)), int(d.get("n", 0)), int(d.get("run", 0)))
