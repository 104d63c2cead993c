"""Evaluation metrics for classifiers: numpy in, plain dicts and floats out.

>>> import numpy as np
>>> y = np.array([0, 0, 1, 1]); proba = np.array([[.9, .1], [.4, .6], [.2, .8], [.3, .7]])
>>> accuracy(y, proba.argmax(1))
0.75
>>> per_class_recall(y, proba.argmax(1))
{0: 0.5, 1: 1.0}
>>> round(expected_calibration_error(y, proba), 3)
0.3
"""

from __future__ import annotations

from typing import Mapping

import numpy as np


def _labels(a) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1:
        raise ValueError(f"expected a 1-D array of labels, got shape {a.shape}")
    return a


def accuracy(y_true, y_pred) -> float:
    """Fraction of correct predictions (NaN when there is nothing to score)."""
    y_true, y_pred = _labels(y_true), _labels(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in length")
    if y_true.size == 0:
        return float("nan")
    return float(np.mean(y_true == y_pred))


def per_class_recall(y_true, y_pred, classes=None) -> dict[int, float]:
    """Recall of each class present in ``y_true`` (or of each of ``classes``; NaN if absent)."""
    y_true, y_pred = _labels(y_true), _labels(y_pred)
    if classes is None:
        classes = np.unique(y_true)
    out = {}
    for c in classes:
        m = y_true == c
        out[int(c)] = float(np.mean(y_pred[m] == c)) if m.any() else float("nan")
    return out


def expected_calibration_error(y_true, proba, n_bins: int = 15) -> float:
    """ECE of the top-1 confidence over ``n_bins`` equal-width bins (Guo et al. 2017)."""
    y_true = _labels(y_true)
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[0] != y_true.shape[0]:
        raise ValueError(f"proba must be (n, n_classes) with n={y_true.shape[0]}, got {proba.shape}")
    if y_true.size == 0:
        return float("nan")
    conf = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y_true).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    gap = np.abs(np.bincount(bins, weights=correct, minlength=n_bins) - np.bincount(bins, weights=conf, minlength=n_bins))
    return float(gap.sum() / y_true.size)


def slice_accuracy(y_true, y_pred, slices: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Accuracy and sample count per named slice (boolean mask or index array)."""
    y_true, y_pred = _labels(y_true), _labels(y_pred)
    out = {}
    for name, sel in slices.items():
        sel = np.asarray(sel)
        if sel.dtype == bool and sel.shape != y_true.shape:
            raise ValueError(f"slice {name!r}: mask has shape {sel.shape}, data has {y_true.shape}")
        yt, yp = y_true[sel], y_pred[sel]
        out[str(name)] = {"accuracy": accuracy(yt, yp), "n": int(yt.size)}
    return out


def slices_by_value(values) -> dict[str, np.ndarray]:
    """Boolean masks, one per distinct value of a column (e.g. ``country``); keys are ``str(value)``."""
    keys = np.array([str(v) for v in values], dtype=object)
    return {k: keys == k for k in sorted(set(keys.tolist()))}


def classification_report(y_true, proba, slices: Mapping[str, np.ndarray] | None = None, n_bins: int = 15) -> dict:
    """Accuracy, per-class recall, ECE and (optionally) per-slice accuracy in one dict."""
    y_true = _labels(y_true)
    proba = np.asarray(proba)
    pred = proba.argmax(axis=1) if proba.size else np.zeros(0, dtype=np.int64)
    rep = {
        "n": int(y_true.size),
        "accuracy": accuracy(y_true, pred),
        "per_class_recall": per_class_recall(y_true, pred),
        "ece": expected_calibration_error(y_true, proba, n_bins) if y_true.size else float("nan"),
    }
    if slices:
        rep["slices"] = slice_accuracy(y_true, pred, slices)
    return rep
