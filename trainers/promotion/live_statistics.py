"""The live gate's statistics: paired (McNemar, paired t) and unpaired (Fisher, Welch) comparisons of two versions.

Pure counters with sums, so an evaluation's state is a few numbers and round-trips through JSON.  Each test
returns ``(significantly worse by more than the margin, p-value, effect)``; the gate
(:mod:`trainers.promotion.live_gate`) sets the margins and Bonferroni-divided levels.  scipy.stats does the
distributions (``binomtest``, ``fisher_exact``, ``t``, ``norm``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping


@dataclass
class Paired:
    """Paired outcomes of a subject and an incumbent on the same examples.

    ``b``: subject wrong, incumbent right; ``c``: subject right, incumbent wrong; ``d_*``: sums of the
    per-example Brier difference (subject - incumbent) over the ``nd`` examples where both gave scores."""

    n: int = 0
    subj_err: int = 0
    inc_err: int = 0
    b: int = 0
    c: int = 0
    nd: int = 0
    d_sum: float = 0.0
    d_sq: float = 0.0

    def add(self, subj_wrong: bool, inc_wrong: bool, d_brier: float | None) -> None:
        self.n += 1
        self.subj_err += subj_wrong
        self.inc_err += inc_wrong
        self.b += subj_wrong and not inc_wrong
        self.c += inc_wrong and not subj_wrong
        if d_brier is not None:
            self.nd += 1
            self.d_sum += d_brier
            self.d_sq += d_brier * d_brier

    def worse(self, margin: float, alpha: float) -> tuple[bool, float, float]:
        """(subject significantly worse by more than ``margin``, p-value, error-rate difference)."""
        from scipy.stats import binomtest

        diff = (self.subj_err - self.inc_err) / self.n if self.n else 0.0
        p = binomtest(self.b, self.b + self.c, 0.5, alternative="greater").pvalue if self.b + self.c else 1.0
        return (p < alpha and diff > margin), float(p), diff

    def better(self, alpha: float) -> tuple[bool, float]:
        from scipy.stats import binomtest

        p = binomtest(self.c, self.b + self.c, 0.5, alternative="greater").pvalue if self.b + self.c else 1.0
        return p < alpha and self.c > self.b, float(p)

    def upper_difference(self, alpha: float) -> float:
        """One-sided upper confidence bound (level 1 - alpha) of the error-rate difference (Wald, paired)."""
        from scipy.stats import norm

        if not self.n:
            return math.inf
        d = (self.b - self.c) / self.n
        var = max((self.b + self.c) / self.n - d * d, 0.0) / self.n
        return d + norm.isf(alpha) * math.sqrt(var) + 1.0 / self.n

    def calibration_worse(self, margin: float, alpha: float) -> tuple[bool, float, float]:
        """Paired one-sided t-test that the mean Brier difference exceeds 0, with effect > ``margin``."""
        return _mean_test(self.nd, self.d_sum, self.d_sq, margin, alpha)


def _mean_test(n: int, s: float, sq: float, margin: float, alpha: float) -> tuple[bool, float, float]:
    from scipy.stats import t as student

    if n < 2:
        return False, 1.0, 0.0
    mean = s / n
    var = max((sq - n * mean * mean) / (n - 1), 0.0)
    if var == 0.0:
        return mean > margin, 0.0 if mean > 0 else 1.0, mean
    p = float(student.sf(mean / math.sqrt(var / n), n - 1))
    return (p < alpha and mean > margin), p, mean


@dataclass
class Outcomes:
    """Unpaired outcomes of one version: errors and Brier scores (sums)."""

    n: int = 0
    err: int = 0
    nb: int = 0
    b_sum: float = 0.0
    b_sq: float = 0.0

    def add(self, wrong: bool, brier: float | None) -> None:
        self.n += 1
        self.err += wrong
        if brier is not None:
            self.nb += 1
            self.b_sum += brier
            self.b_sq += brier * brier

    @property
    def error_rate(self) -> float | None:
        return self.err / self.n if self.n else None

    @property
    def brier(self) -> float | None:
        return self.b_sum / self.nb if self.nb else None


def unpaired_worse(subj: Outcomes, base: Outcomes, margin: float, alpha: float) -> tuple[bool, float, float]:
    """Fisher's exact test (one-sided) that the subject's error rate is above the baseline's, with effect > margin."""
    from scipy.stats import fisher_exact

    if not subj.n or not base.n:
        return False, 1.0, 0.0
    diff = subj.err / subj.n - base.err / base.n
    _, p = fisher_exact([[subj.err, subj.n - subj.err], [base.err, base.n - base.err]], alternative="greater")
    return (p < alpha and diff > margin), float(p), diff


def unpaired_calibration_worse(subj: Outcomes, base: Outcomes, margin: float, alpha: float) -> tuple[bool, float, float]:
    """Welch's one-sided t-test that the subject's mean Brier score is above the baseline's, with effect > margin."""
    from scipy.stats import t as student

    if subj.nb < 2 or base.nb < 2:
        return False, 1.0, 0.0
    m1, m2 = subj.b_sum / subj.nb, base.b_sum / base.nb
    v1 = max((subj.b_sq - subj.nb * m1 * m1) / (subj.nb - 1), 0.0) / subj.nb
    v2 = max((base.b_sq - base.nb * m2 * m2) / (base.nb - 1), 0.0) / base.nb
    diff = m1 - m2
    if v1 + v2 == 0.0:
        return diff > margin, 0.0 if diff > 0 else 1.0, diff
    df = (v1 + v2) ** 2 / ((v1 * v1 / (subj.nb - 1) if v1 else 0.0) + (v2 * v2 / (base.nb - 1) if v2 else 0.0) or 1.0)
    p = float(student.sf(diff / math.sqrt(v1 + v2), df))
    return (p < alpha and diff > margin), p, diff


def top_brier(prediction: Any, scores: Any, wrong: bool) -> float | None:
    """Top-label Brier score of one prediction: ``(max(scores) - correct)^2``; None without scores, or when they are
    not probabilities (a top score outside [0, 1], e.g. logits: calibration is then not judged for the example)."""
    if not scores:
        return None
    try:
        conf = max(float(s) for s in scores)
    except (TypeError, ValueError):
        return None
    if not 0.0 <= conf <= 1.0:
        return None
    return (conf - (0.0 if wrong else 1.0)) ** 2


def finite_json(obj: Any) -> Any:
    """``obj`` with every float that is not finite replaced by None: evidence is strict JSON (alerts, registry)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


__all__ = ["Paired", "Outcomes", "top_brier", "unpaired_worse", "unpaired_calibration_worse", "finite_json"]
