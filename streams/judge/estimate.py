"""Label-free performance estimates: confidence-based, in the manner of NannyML's CBPE (pure).

Labels often come days after the predictions.  A classifier that publishes probability scores
says how sure it is of each prediction; once those scores are *calibrated* on labelled data, the
expected accuracy of a window is the mean calibrated probability that each prediction is right,
with no label in sight (NannyML's confidence-based performance estimation, CBPE).  The estimate
follows covariate shift (inputs the model is less sure about lower it); it cannot see concept
drift (the same inputs now meaning another label), which only labels reveal.

The calibration is fitted on the reference profile's labelled rows, per score bin (the bins the
window accumulators already count the scores into, so a window's estimate needs no new state):
:class:`streams.judge.profile.ScoreCalibration` holds per bin how many reference predictions
there were, how many were right and their mean confidence.  Two methods:

* ``isotonic`` (default, as CBPE): the share of right predictions per bin, made non-decreasing in
  the bins' mean confidence by pool-adjacent-violators (weighted by the bin counts);
* ``histogram``: the share of right predictions per bin, shrunk towards the reference accuracy
  by ``prior_weight`` pseudo-counts.

Bins the reference never filled (scores beyond its range) take their nearest filled bin.  The
test of a window: its estimate against the reference accuracy, with the sampling spread of the
calibrated accuracy over the reference's scores (a one-sided z test: the estimate drops).

>>> import numpy as np
>>> from streams.judge.profile import ScoreCalibration
>>> cal = fit_calibrator(ScoreCalibration([100, 100], [60, 90], [0.6, 0.9]))
>>> est = estimate_window(cal, np.array([300, 100]))
>>> round(est.estimated_accuracy, 3), est.n_scored
(0.675, 400)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from streams.judge.profile import ScoreCalibration

METHODS = ("isotonic", "histogram")


def score_calibration(edges: Sequence[float], score_values: np.ndarray, confidence: np.ndarray,
                      correct: np.ndarray) -> ScoreCalibration | None:
    """Per score bin of a profile's score ``edges``: labelled rows, right predictions, mean confidence.

    ``score_values``: the score value of each labelled row (NaN: no score), ``confidence``: its
    top-class probability, ``correct``: bool per row.  None when no labelled row has a score.
    """
    sv = np.asarray(score_values, dtype=float)
    conf = np.asarray(confidence, dtype=float)
    ok = np.isfinite(sv) & np.isfinite(conf)
    if not ok.any():
        return None
    nb = len(edges) + 1
    b = np.searchsorted(np.asarray(edges, dtype=float), sv[ok], side="left")
    cnt = np.bincount(b, minlength=nb)
    cor = np.bincount(b, weights=np.asarray(correct, dtype=bool)[ok].astype(float), minlength=nb)
    csum = np.bincount(b, weights=conf[ok], minlength=nb)
    mean = [round(float(s / c), 6) if c else None for s, c in zip(csum, cnt)]
    return ScoreCalibration([int(x) for x in cnt], [int(round(x)) for x in cor], mean)


def isotonic(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least-squares fit of ``y`` non-decreasing in ``x`` (pool adjacent violators), in input order."""
    order = np.argsort(np.asarray(x, dtype=float), kind="stable")
    ys, ws = np.asarray(y, dtype=float)[order], np.asarray(w, dtype=float)[order]
    vals: list[float] = []
    wts: list[float] = []
    sizes: list[int] = []
    for v, wt in zip(ys, ws):
        vals.append(v)
        wts.append(wt)
        sizes.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            w2 = wts[-2] + wts[-1]
            v2 = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / w2 if w2 > 0 else (vals[-2] + vals[-1]) / 2
            s2 = sizes[-2] + sizes[-1]
            del vals[-1], wts[-1], sizes[-1]
            vals[-1], wts[-1], sizes[-1] = v2, w2, s2
    fitted = np.repeat(vals, sizes)
    out = np.empty_like(fitted)
    out[order] = fitted
    return out


@dataclass(frozen=True)
class Calibrator:
    """Calibrated probability of a right prediction per score bin, and what the reference says."""

    accuracy: np.ndarray  # (n_bins,) calibrated P(right) per score bin
    reference_accuracy: float  # mean of ``accuracy`` over the reference's scores
    reference_sd: float  # sd of the calibrated P(right) over the reference's scores (per event)
    n_reference: int
    method: str

    def expected(self, bins: np.ndarray) -> np.ndarray:
        """Calibrated P(right) of events by their score bin."""
        return self.accuracy[np.clip(np.asarray(bins, dtype=np.int64), 0, len(self.accuracy) - 1)]


def fit_calibrator(cal: ScoreCalibration | None, method: str = "isotonic", prior_weight: float = 2.0) -> Calibrator | None:
    """The :class:`Calibrator` of a profile's :class:`ScoreCalibration` (None when it has no labelled score)."""
    if method not in METHODS:
        raise ValueError(f"calibration method {method!r}: expected one of {METHODS}")
    if cal is None:
        return None
    cnt = np.asarray(cal.count, dtype=float)
    cor = np.asarray(cal.correct, dtype=float)
    total = cnt.sum()
    if total <= 0:
        return None
    a0 = float(cor.sum() / total)
    filled = cnt > 0
    rate = np.where(filled, cor / np.maximum(cnt, 1), np.nan)
    if method == "histogram":
        rate = np.where(filled, (cor + prior_weight * a0) / (cnt + prior_weight), np.nan)
    else:
        conf = np.array([np.nan if c is None else float(c) for c in cal.confidence], dtype=float)
        sel = filled & np.isfinite(conf)
        fit = rate.copy()
        fit[sel] = isotonic(conf[sel], rate[sel], cnt[sel])
        rate = np.where(sel, fit, np.nan)
    idx = np.flatnonzero(np.isfinite(rate))
    if not idx.size:
        return None
    near = idx[np.abs(np.arange(len(rate))[:, None] - idx[None, :]).argmin(axis=1)]
    acc = np.clip(rate[near], 0.0, 1.0)
    mean = float((acc * cnt).sum() / total)
    sd = float(math.sqrt(max(((acc - mean) ** 2 * cnt).sum() / total, 0.0)))
    return Calibrator(acc, mean, sd, int(total), method)


@dataclass(frozen=True)
class Estimate:
    """A window's label-free accuracy estimate and its test against the reference."""

    estimated_accuracy: float
    n_scored: int
    reference_accuracy: float
    drop: float  # reference_accuracy - estimated_accuracy (positive: worse)
    p_value: float  # one-sided: the window's scores give a lower expected accuracy than the reference's
    standard_error: float  # sd of the realised accuracy around the estimate, if the calibration holds

    def to_dict(self) -> dict[str, float]:
        return {"estimated_accuracy": self.estimated_accuracy, "n_scored": self.n_scored,
                "reference_accuracy": self.reference_accuracy, "estimated_accuracy_drop": self.drop,
                "estimate_standard_error": self.standard_error}


def estimate_window(cal: Calibrator, counts: np.ndarray) -> Estimate | None:
    """The estimate of a window from its score-bin counts (the score segment's value bins; None: no score)."""
    c = np.asarray(counts, dtype=float)[: len(cal.accuracy)]
    n = float(c.sum())
    if n <= 0:
        return None
    acc = cal.accuracy[: len(c)]
    est = float((c * acc).sum() / n)
    se = float(math.sqrt(max((c * acc * (1.0 - acc)).sum(), 0.0)) / n)
    drop = cal.reference_accuracy - est
    spread = cal.reference_sd / math.sqrt(n)
    if spread > 0:
        p = 0.5 * math.erfc((drop / spread) / math.sqrt(2.0))
    else:
        p = 0.0 if drop > 1e-12 else 1.0
    return Estimate(est, int(n), cal.reference_accuracy, float(drop), float(min(max(p, 0.0), 1.0)), se)


__all__ = ["Calibrator", "Estimate", "METHODS", "estimate_window", "fit_calibrator", "isotonic", "score_calibration"]
