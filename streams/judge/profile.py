"""Reference profiles: what "no drift" looks like for one (model, model_version).

A profile is built once from training data (a CSV, Parquet or JSONL file, a
DataFrame, or a list of inference events) and serialised to JSON with a content
hash id.  Per feature it stores the buckets that window accumulators count into:

* numeric: fine bin edges at the reference quantiles (``fine_bins``, default 100),
  plus a geometric ladder of edges beyond the reference minimum and maximum (open
  tails: values far outside the reference still land in distinct bins), plus a
  missing bucket.  The PSI bins (``n_bins``, default 10 deciles) are groups of
  fine bins, so one count vector serves PSI, KS and Wasserstein.
* categorical: the ``top_k`` most frequent categories, "other" (including
  categories never seen in the reference) and missing.

It also stores the prediction and score distributions and, when labels are
present, the reference error rate and expected calibration error.

>>> import pandas as pd
>>> from streams.judge.profile_build import build_profile
>>> p = build_profile(pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "c": ["a", "b", "a", None]}), "m", "1")
>>> p.features["x"].kind, p.features["c"].kind, p.features["c"].missing
('numeric', 'categorical', 1)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np
import pandas as pd

from streams.judge.tables import (  # noqa: F401  (re-exported: the table API lived here)
    EVENT_FIELDS,
    FEATURE_PREFIX,
    KINDS,
    META_COLUMNS,
    ProfileError,
    as_float,
    category_text,
    events_to_frame,
    feature_frame,
    infer_kind,
    load_table,
)

#: Format 1 profiles (before edges between distinct values, invalid counts and error
#: definitions) still load: every new field has a default that means "as before".
FORMAT_VERSION = 1
ERROR_KINDS = ("mismatch", "absolute", "relative")
#: Default regression tolerance: this quantile of the reference absolute errors.
REGRESSION_ERROR_QUANTILE = 0.9
#: Number of reference loss quantiles a regression profile stores (at probabilities (i + 0.5) / n).
LOSS_QUANTILES = 200
#: Relative precision below which an error is "at" the tolerance, not over it (109.06 - 108.56 != 0.5 in floats).
PRECISION = 1e-9
#: Multiples of the reference spread at which tail edges are placed beyond min and max.
TAIL_LADDER = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
#: A PSI bin holds at least this share of 1/n_bins of the reference values (smaller ones are merged).
MIN_BIN_SHARE = 0.5
#: Number of confidence bins for the expected calibration error.
ECE_BINS = 10


# --------------------------------------------------------------------------- feature profiles


@dataclass
class NumericProfile:
    """Quantile bins of one numeric feature.  Bin ``i`` holds ``edges[i-1] < x <= edges[i]``."""

    edges: list[float]
    counts: list[int]  # per fine bin, len(edges) + 1
    coarse_starts: list[int]  # first fine bin of each PSI bin (for np.add.reduceat)
    missing: int
    n: int  # rows, missing included
    spread: float  # robust standard deviation (IQR / 1.349, else std, else 1)
    median: float
    kind: str = "numeric"
    invalid: int = 0  # present values that are not numbers (text in a numeric column)
    means: list[float] | None = None  # mean reference value per fine bin (None: midpoints; old profiles)

    @property
    def n_buckets(self) -> int:
        return len(self.edges) + 1

    def reps(self) -> np.ndarray:
        """A representative value per fine bin: the reference mean of the bin when it holds
        reference values (exact for atoms), else its midpoint (open tails one ladder step out)."""
        e = np.asarray(self.edges, dtype=float)
        if e.size == 0:
            return np.array([self.median])
        if e.size == 1:
            mid = np.array([e[0], e[0] + self.spread])
        else:
            mids = (e[1:] + e[:-1]) / 2.0
            lo = e[0] - (e[1] - e[0])
            hi = e[-1] + (e[-1] - e[-2])
            mid = np.concatenate([[lo], mids, [hi]])
        if self.means is not None and len(self.means) == len(mid):
            m = np.asarray([np.nan if v is None else v for v in self.means], dtype=float)
            mid = np.where(np.isfinite(m), m, mid)
        return mid

    def coarse(self, fine_counts: np.ndarray) -> np.ndarray:
        return np.add.reduceat(np.asarray(fine_counts), self.coarse_starts)


@dataclass
class CategoricalProfile:
    """Top-k categories of one categorical feature, plus "other" and missing."""

    categories: list[str]
    counts: list[int]  # per category, then "other": len(categories) + 1
    missing: int
    n: int
    kind: str = "categorical"

    @property
    def n_buckets(self) -> int:
        return len(self.categories) + 1


FeatureProfile = Union[NumericProfile, CategoricalProfile]


def _feature_from_dict(d: Mapping[str, Any]) -> FeatureProfile:
    d = dict(d)
    kind = d.pop("kind", None)
    if kind == "numeric":
        return NumericProfile(**d)
    if kind == "categorical":
        return CategoricalProfile(**d)
    raise ProfileError(f"unknown feature kind {kind!r}; expected 'numeric' or 'categorical'")


@dataclass
class ScoreCalibration:
    """The reference's labelled outcomes per score bin (the bins of ``ReferenceProfile.score``).

    ``count[b]``, ``correct[b]``: labelled reference rows whose score value (:func:`streams.judge.
    profile_build._score_value`) falls in bin ``b`` and how many of them were right; ``confidence[b]``:
    their mean top-class probability.  What :mod:`streams.judge.estimate` calibrates on (label-free
    performance estimates); absent in profiles built before it (then nothing is estimated).
    """

    count: list[int]
    correct: list[int]
    confidence: list[float | None]


@dataclass
class LabelProfile:
    """Reference performance: error rate (1 - accuracy) and calibration, and what an error is.

    ``error``: ``mismatch`` (classification: prediction != label), ``absolute``
    (regression: ``|prediction - label| > tolerance``) or ``relative``
    (``|prediction - label| > tolerance * |label|``).  ``abs_error_quantiles``: the reference
    absolute errors at 10%, 25%, 50%, 75%, 90%, 99% (regression only, for reports).
    ``loss_quantiles``: the reference distribution of the loss (:func:`loss_array`: absolute or
    relative error) at the :data:`LOSS_QUANTILES` probabilities ``(i + 0.5) / LOSS_QUANTILES``
    (regression only; the loss CUSUM of :mod:`streams.judge.loss` tests the stream against it).
    """

    n: int
    errors: int
    ece: float | None = None
    ece_count: list[int] = field(default_factory=list)
    ece_correct: list[int] = field(default_factory=list)
    error: str = "mismatch"
    tolerance: float | None = None
    abs_error_quantiles: list[float] | None = None
    loss_quantiles: list[float] | None = None
    calibration: ScoreCalibration | None = None

    def __post_init__(self) -> None:
        if isinstance(self.calibration, Mapping):
            self.calibration = ScoreCalibration(**self.calibration)

    def is_error(self, prediction: Any, label: Any) -> bool:
        return is_error(prediction, label, self)

    @property
    def error_rate(self) -> float:
        return self.errors / self.n if self.n else 0.0

    @property
    def accuracy(self) -> float:
        return 1.0 - self.error_rate


@dataclass
class ReferenceProfile:
    id: str
    model: str
    model_version: str
    n: int
    features: dict[str, FeatureProfile]
    prediction: FeatureProfile | None = None
    score: NumericProfile | None = None
    labels: LabelProfile | None = None
    n_bins: int = 10
    fine_bins: int = 100
    top_k: int = 20
    created_at: float = field(default_factory=time.time)
    source: str = ""
    format_version: int = FORMAT_VERSION

    @property
    def reference_error_rate(self) -> float | None:
        return self.labels.error_rate if self.labels and self.labels.n else None

    @property
    def reference_accuracy(self) -> float | None:
        return self.labels.accuracy if self.labels and self.labels.n else None

    @property
    def reference_ece(self) -> float | None:
        return self.labels.ece if self.labels else None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(self.to_json() + "\n", encoding="utf-8")
        return p

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ReferenceProfile":
        try:
            d = dict(d)
            if int(d.get("format_version", FORMAT_VERSION)) != FORMAT_VERSION:
                raise ProfileError(f"profile format {d.get('format_version')} is not {FORMAT_VERSION}; rebuild it with `driftloop reference build`")
            d["features"] = {k: _feature_from_dict(v) for k, v in d["features"].items()}
            if d.get("prediction") is not None:
                d["prediction"] = _feature_from_dict(d["prediction"])
            if d.get("score") is not None:
                d["score"] = _feature_from_dict(d["score"])
            if d.get("labels") is not None:
                d["labels"] = LabelProfile(**d["labels"])
            d["model_version"] = str(d["model_version"])
            return cls(**d)
        except ProfileError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileError(f"not a reference profile ({exc!r}); build one with `driftloop reference build`") from None

    @classmethod
    def load(cls, path: str | Path) -> "ReferenceProfile":
        p = Path(path)
        if not p.is_file():
            raise ProfileError(f"reference profile {p} does not exist; build one with `driftloop reference build`")
        text = p.read_text(encoding="utf-8")
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            first = text.lstrip().split("\n", 1)[0]
            try:
                d = json.loads(first)
            except json.JSONDecodeError:
                raise ProfileError(f"reference profile {p} is not JSON: {exc}") from None
            if isinstance(d, dict) and _looks_like_event(d):
                raise ProfileError(
                    f"{p} is a file of events (JSON lines), not a reference profile; build one first: "
                    f"`driftloop reference build --model M --version V --table {p} --out ref.json`, "
                    "then pass --reference ref.json (or leave --reference out to use the first events)"
                ) from None
            raise ProfileError(f"reference profile {p} is not JSON: {exc}") from None
        if isinstance(d, dict) and _looks_like_event(d):
            raise ProfileError(f"{p} holds one event, not a reference profile; build one with `driftloop reference build --table {p}`")
        return cls.from_dict(d)


def _looks_like_event(d: Mapping[str, Any]) -> bool:
    return isinstance(d.get("features"), Mapping) and "format_version" not in d and (
        "event_id" in d or "ts" in d)


def content_id(profile: ReferenceProfile) -> str:
    """``ref-`` + a hash of everything but the id, creation time and source."""
    d = profile.to_dict()
    for k in ("id", "created_at", "source"):
        d.pop(k, None)
    if d.get("labels") is not None and d["labels"].get("calibration") is None:
        d["labels"].pop("calibration", None)  # profiles without one keep the id they had before it existed
    return "ref-" + hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- building


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def is_error(prediction: Any, label: Any, definition: "LabelProfile | None" = None) -> bool:
    """One labelled outcome is an error, by the profile's error definition (default: mismatch).

    ``mismatch``: prediction and label differ (numbers compared as numbers, else as text);
    ``absolute``: ``|prediction - label| > tolerance``; ``relative``: ``> tolerance * |label|``
    (a prediction or label that is not a number is an error).  A missing side is never an error.
    """
    if prediction is None or label is None:
        return False
    kind = definition.error if definition is not None else "mismatch"
    if kind != "mismatch":
        d = abs(_num(prediction) - _num(label))
        if math.isnan(d):
            return True
        tol = float(definition.tolerance or 0.0)
        lim = tol * abs(_num(label)) if kind == "relative" else tol
        return d > lim + PRECISION * max(abs(lim), abs(_num(label)))
    try:
        return float(prediction) != float(label)
    except (TypeError, ValueError):
        return category_text(prediction) != category_text(label)


def numeric_pairs(predictions: Sequence[Any], labels: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(predictions float (n,), labels float (n,), both present bool (n,)): nan where not a number or
    missing; one numpy conversion when the values are numbers (the common case), else per value."""
    n = len(labels)
    try:
        p, y = np.asarray(predictions, dtype=float).reshape(n), np.asarray(labels, dtype=float).reshape(n)
    except (TypeError, ValueError):
        p = np.fromiter((_num(v) if v is not None else math.nan for v in predictions), float, n)
        y = np.fromiter((_num(v) if v is not None else math.nan for v in labels), float, n)
    if not (np.isnan(p).any() or np.isnan(y).any()):
        return p, y, np.ones(n, bool)
    present = np.fromiter((a is not None and b is not None for a, b in zip(predictions, labels)), bool, n)
    return p, y, present


def loss_array(predictions: Sequence[Any], labels: Sequence[Any], kind: str = "absolute") -> np.ndarray:
    """The loss of each labelled example, (n,) float: ``|prediction - label|`` (``absolute``) or
    ``|prediction - label| / |label|`` (``relative``; 0 when both are 0).  ``nan`` where a side is
    missing (no outcome); ``inf`` where a side is not a number or the relative loss has no scale."""
    p, y, present = numeric_pairs(predictions, labels)
    d = np.abs(p - y)
    if kind == "relative":
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(d == 0, 0.0, d / np.abs(y))
    return np.where(present, np.where(np.isnan(d), math.inf, d), math.nan)


def error_array(predictions: Sequence[Any], labels: Sequence[Any], definition: "LabelProfile | None" = None) -> np.ndarray:
    """Vectorised :func:`is_error`: (n,) int8 0/1.  O(n); numeric definitions in numpy."""
    kind = definition.error if definition is not None else "mismatch"
    n = len(labels)
    if kind == "mismatch" or n == 0:
        return np.fromiter((is_error(p, y, definition) for p, y in zip(predictions, labels)), dtype=np.int8, count=n)
    p, y, present = numeric_pairs(predictions, labels)
    d = np.abs(p - y)
    tol = float(definition.tolerance or 0.0)
    lim = tol * np.abs(y) if kind == "relative" else np.full(n, tol)
    with np.errstate(invalid="ignore"):
        err = np.isnan(d) | (d > lim + PRECISION * np.maximum(np.abs(lim), np.abs(y)))
    return (err & present).astype(np.int8)


def loss_quantiles(losses: np.ndarray) -> list[float] | None:
    """The reference loss distribution stored in a regression profile: :data:`LOSS_QUANTILES` quantiles
    of the finite losses (an infinite loss is above all of them), None when there are none."""
    x = np.asarray(losses, dtype=float)
    x = x[np.isfinite(x)]
    if not x.size:
        return None
    probs = (np.arange(LOSS_QUANTILES) + 0.5) / LOSS_QUANTILES
    return [float(v) for v in np.maximum.accumulate(np.quantile(x, probs))]


def error_definition(predictions: pd.Series, labels: pd.Series, pred_prof: "FeatureProfile | None",
                     error: tuple[str, float] | None) -> tuple[str, float | None, list[float] | None]:
    """(error kind, tolerance, reference absolute-error quantiles) for a reference's labelled rows.

    ``error`` = (kind, tolerance) when declared (``reference build --error absolute:2.5``); else a
    model with a numeric prediction profile (more distinct numeric predictions than ``top_k``)
    and numeric labels is a regression model: ``absolute`` with the tolerance at the
    :data:`REGRESSION_ERROR_QUANTILE` of the reference absolute errors (reference error rate
    about 10%, room to rise); anything else is ``mismatch``.
    """
    p = pd.to_numeric(predictions, errors="coerce").to_numpy(dtype=float)
    y = pd.to_numeric(labels, errors="coerce").to_numpy(dtype=float)
    ok = ~(np.isnan(p) | np.isnan(y))
    ae = np.abs(p[ok] - y[ok])
    qs = [float(v) for v in np.quantile(ae, [0.1, 0.25, 0.5, 0.75, 0.9, 0.99])] if ae.size else None
    if error is not None:
        kind, tol = error
        if kind not in ERROR_KINDS:
            raise ProfileError(f"error definition {kind!r}: expected one of {ERROR_KINDS}")
        return kind, (None if kind == "mismatch" else float(tol)), qs
    regression = isinstance(pred_prof, NumericProfile) and ae.size > 0 and ok.sum() >= 0.95 * len(ok)
    if not regression:
        return "mismatch", None, None
    return "absolute", float(np.quantile(ae, REGRESSION_ERROR_QUANTILE)), qs


