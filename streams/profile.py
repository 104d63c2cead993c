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
>>> p = build_profile(pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "c": ["a", "b", "a", None]}), "m", "1")
>>> p.features["x"].kind, p.features["c"].kind, p.features["c"].missing
('numeric', 'categorical', 1)
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, Union

import numpy as np
import pandas as pd

from streams.events import InferenceEvent, LabelledExample
from streams.tables import (  # noqa: F401  (re-exported: the table API lived here)
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
class LabelProfile:
    """Reference performance: error rate (1 - accuracy) and calibration, and what an error is.

    ``error``: ``mismatch`` (classification: prediction != label), ``absolute``
    (regression: ``|prediction - label| > tolerance``) or ``relative``
    (``|prediction - label| > tolerance * |label|``).  ``abs_error_quantiles``: the reference
    absolute errors at 10%, 25%, 50%, 75%, 90%, 99% (regression only, for reports).
    """

    n: int
    errors: int
    ece: float | None = None
    ece_count: list[int] = field(default_factory=list)
    ece_correct: list[int] = field(default_factory=list)
    error: str = "mismatch"
    tolerance: float | None = None
    abs_error_quantiles: list[float] | None = None

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
    return "ref-" + hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- building


def between_distinct(candidates: np.ndarray, distinct: np.ndarray) -> np.ndarray:
    """Move each candidate edge to the midpoint between the distinct reference values around it.

    ``distinct``: sorted unique reference values (D,); ``candidates``: edges (E,) inside
    ``[distinct[0], distinct[-1]]``.  A candidate ``q`` with ``u[j] <= q < u[j+1]`` becomes
    ``(u[j] + u[j+1]) / 2``; candidates at or above the maximum are dropped.  Every reference
    value then lies at least half a gap between distinct values away from every edge, so a
    difference far below the data's precision (a float32 or float16 round trip of an atom)
    never moves a value across an edge.  O(E log D).
    """
    u = np.asarray(distinct, dtype=float)
    q = np.asarray(candidates, dtype=float)
    j = np.searchsorted(u, q, side="right") - 1
    keep = (j >= 0) & (j < len(u) - 1)
    j = j[keep]
    return np.unique((u[j] + u[j + 1]) / 2.0)


def numeric_profile(values: Any, n_bins: int = 10, fine_bins: int = 100) -> NumericProfile:
    """Profile of one numeric column: numbers and booleans are values, None/NaN missing,
    anything else (text) invalid (see :func:`streams.tables.as_float`).

    Fine-bin edges are the reference quantiles moved between distinct reference values
    (:func:`between_distinct`), so ties and atoms are never split by an edge; beyond the
    minimum and maximum, a ladder of tail edges.  ``means`` holds the reference mean of each
    fine bin (the representative value of binned Wasserstein).
    """
    x, bad = as_float(values)
    invalid = int(bad.sum()) if bad is not None else 0
    nan = np.isnan(x)
    missing = int(nan.sum()) - invalid
    v = x[~nan]
    n = int(len(x))
    if v.size == 0:
        return NumericProfile([], [0], [0], missing, n, 1.0, 0.0, invalid=invalid)
    q25, med, q75 = np.quantile(v, [0.25, 0.5, 0.75])
    spread = float((q75 - q25) / 1.349)
    if not spread > 0:
        spread = float(np.std(v))
    if not spread > 0:
        spread = max(abs(float(med)) * 0.1, 1.0)
    u = np.unique(v)
    qs = np.quantile(v, np.arange(1, fine_bins) / fine_bins)
    step = max(fine_bins // n_bins, 1)
    coarse_vals = between_distinct(qs[step - 1 :: step][: n_bins - 1], u)
    lo, hi = float(u[0]), float(u[-1])
    ladder = np.asarray(TAIL_LADDER) * spread
    inner = between_distinct(np.concatenate([[lo], qs]), u)
    edges = np.unique(np.concatenate([lo - ladder[::-1], inner, hi + ladder]))
    edges = edges[np.isfinite(edges)]
    bins = np.searchsorted(edges, v, side="left")
    counts = np.bincount(bins, minlength=len(edges) + 1)
    sums = np.bincount(bins, weights=v, minlength=len(edges) + 1)
    means = [float(s / c) if c else None for s, c in zip(sums, counts)]
    # PSI bins: (-inf, first decile], ..., (last decile, +inf); fine bins are nested inside.
    coarse_starts = [0] + [int(i) + 1 for i in np.searchsorted(edges, coarse_vals)]
    coarse_starts = sorted(set(s for s in coarse_starts if s < len(edges) + 1))
    coarse_starts = _merge_small_groups(counts, coarse_starts, MIN_BIN_SHARE / n_bins * v.size)
    return NumericProfile(
        edges=[float(e) for e in edges],
        counts=[int(c) for c in counts],
        coarse_starts=coarse_starts,
        missing=missing,
        n=n,
        spread=spread,
        median=float(med),
        invalid=invalid,
        means=means,
    )


def _merge_small_groups(counts: np.ndarray, starts: list[int], min_count: float) -> list[int]:
    """Merge PSI bins holding less than ``min_count`` reference values into their right (last: left) neighbour.

    Ties (e.g. a feature that is 0 most of the time) collapse quantile edges and can leave a bin with a
    fraction of a percent of the mass; chi-square tails are unreliable on such cells.
    """
    group = np.add.reduceat(counts, starts)
    out: list[int] = []
    pending, start = 0, None
    for s0, c in zip(starts, group):
        if start is None:
            start = s0
        pending += int(c)
        if pending >= min_count:
            out.append(start)
            start, pending = None, 0
    if not out:
        out.append(0)
    return out




def categorical_profile(values: Sequence[Any], top_k: int = 20) -> CategoricalProfile:
    """Profile of one categorical column (None/NaN = missing); values compare as text (:func:`category_text`)."""
    s = pd.Series(values, dtype=object)
    miss = s.isna()
    present = s[~miss].map(category_text)
    vc = present.value_counts()
    # most frequent first, ties by name, so the profile is deterministic
    items = sorted(vc.items(), key=lambda kv: (-kv[1], kv[0]))
    cats = [str(k) for k, _ in items[:top_k]]
    other = int(sum(c for _, c in items[top_k:]))
    return CategoricalProfile(cats, [int(c) for _, c in items[:top_k]] + [other], int(miss.sum()), int(len(s)))


def _score_value(scores: Any) -> float:
    """One number per score vector: the positive-class score when binary, else the top score."""
    if scores is None or (isinstance(scores, float) and np.isnan(scores)):
        return float("nan")
    if isinstance(scores, (int, float, np.number)):
        return float(scores)
    s = list(scores)
    if not s:
        return float("nan")
    return float(s[-1]) if len(s) == 2 else float(max(s))


def _confidence(scores: Any) -> float:
    if scores is None or isinstance(scores, (int, float, np.number)):
        return float("nan") if scores is None else float(scores)
    s = list(scores)
    return float(max(s)) if s else float("nan")




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


def error_array(predictions: Sequence[Any], labels: Sequence[Any], definition: "LabelProfile | None" = None) -> np.ndarray:
    """Vectorised :func:`is_error`: (n,) int8 0/1.  O(n); numeric definitions in numpy."""
    kind = definition.error if definition is not None else "mismatch"
    n = len(labels)
    if kind == "mismatch" or n == 0:
        return np.fromiter((is_error(p, y, definition) for p, y in zip(predictions, labels)), dtype=np.int8, count=n)
    p = np.fromiter((_num(v) if v is not None else math.nan for v in predictions), float, n)
    y = np.fromiter((_num(v) if v is not None else math.nan for v in labels), float, n)
    present = np.fromiter((a is not None and b is not None for a, b in zip(predictions, labels)), bool, n)
    d = np.abs(p - y)
    tol = float(definition.tolerance or 0.0)
    lim = tol * np.abs(y) if kind == "relative" else np.full(n, tol)
    with np.errstate(invalid="ignore"):
        err = np.isnan(d) | (d > lim + PRECISION * np.maximum(np.abs(lim), np.abs(y)))
    return (err & present).astype(np.int8)


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


def build_profile(
    table: pd.DataFrame | Sequence[InferenceEvent] | Sequence[LabelledExample] | Sequence[Mapping[str, Any]],
    model: str,
    model_version: str,
    *,
    label_column: str | None = None,
    prediction_column: str | None = None,
    score_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    kinds: Mapping[str, str] | None = None,
    error: tuple[str, float] | None = None,
    n_bins: int = 10,
    fine_bins: int = 100,
    top_k: int = 20,
    profile_id: str | None = None,
    source: str = "",
) -> ReferenceProfile:
    """Build a reference profile from training data.

    ``table``: a flat DataFrame (CSV/Parquet: one column per feature, plus optional
    ``prediction``, ``scores``/``score`` and ``label`` columns), a namespaced DataFrame from
    :func:`streams.tables.events_to_frame`, or a list of events / event dicts (features in their
    own namespace: a feature may be called ``score`` or ``label``).  Output columns default to
    ``label``, ``prediction`` and ``scores`` (or ``score``) when present; naming one that is not
    in the table raises :class:`ProfileError`.  ``kinds``: {feature: "numeric"|"categorical"}
    overrides :func:`streams.tables.infer_kind`.  ``error``: (``absolute``|``relative``|``mismatch``,
    tolerance) declares what a labelled error is (default: see :func:`error_definition`).
    """
    if n_bins < 2 or fine_bins < n_bins:
        raise ProfileError(f"need 2 <= n_bins <= fine_bins, got n_bins={n_bins}, fine_bins={fine_bins}")
    df = table if isinstance(table, pd.DataFrame) else events_to_frame(table)
    if df.empty:
        raise ProfileError("the reference table is empty; give it at least a few hundred rows of training data")
    kinds = dict(kinds or {})
    bad = {k: v for k, v in kinds.items() if v not in KINDS}
    if bad:
        raise ProfileError(f"unknown kind(s) {bad}; expected 'numeric' or 'categorical'")
    for name, col in (("label", label_column), ("prediction", prediction_column), ("score", score_column)):
        if col is not None and col not in df.columns:
            raise ProfileError(f"{name} column {col!r} is not in the table; columns are {list(df.columns)[:20]}")
    label_column = label_column or ("label" if "label" in df.columns else None)
    prediction_column = prediction_column or ("prediction" if "prediction" in df.columns else None)
    if score_column is None:
        score_column = "scores" if "scores" in df.columns else ("score" if "score" in df.columns else None)
    if feature_frame(df):  # namespaced: features are the features.* columns, whatever their names
        colmap = {str(c)[len(FEATURE_PREFIX):]: c for c in df.columns if str(c).startswith(FEATURE_PREFIX)}
    else:
        skip = set(EVENT_FIELDS) | {"prediction", "scores", "score", "label"} | {c for c in (label_column, prediction_column, score_column) if c}
        colmap = {str(c): c for c in df.columns if c not in skip}
    if feature_columns is not None:
        missing = [c for c in feature_columns if c not in colmap and c not in df.columns]
        if missing:
            raise ProfileError(f"feature column(s) {missing} not in the table")
        colmap = {str(c): colmap.get(c, c) for c in feature_columns}
    if not colmap:
        raise ProfileError("the reference table has no feature columns")
    unknown = [k for k in kinds if k not in colmap]
    if unknown:
        raise ProfileError(f"--kind names feature(s) {unknown} that are not in the table")
    features: dict[str, FeatureProfile] = {}
    for name, c in colmap.items():
        col = df[c]
        kind = kinds.get(name) or infer_kind(col)
        if kind == "numeric":
            vals = col.to_numpy() if col.dtype.kind in "fiub" else col.tolist()
            features[name] = numeric_profile(vals, n_bins, fine_bins)
        else:
            features[name] = categorical_profile(col.tolist(), top_k)
    pred_prof: FeatureProfile | None = None
    if prediction_column:
        pcol = df[prediction_column]
        if infer_kind(pcol) == "numeric" and pcol.dropna().nunique() > top_k:
            pred_prof = numeric_profile(pcol.tolist() if pcol.dtype == object else pcol.to_numpy(), n_bins, fine_bins)
        elif pcol.notna().any():
            pred_prof = categorical_profile(pcol.tolist(), top_k)
    score_prof = None
    conf = None
    if score_column:
        sv = np.array([_score_value(s) for s in df[score_column].tolist()], dtype=float)
        if (~np.isnan(sv)).any():
            score_prof = numeric_profile(sv, n_bins, fine_bins)
        conf = np.array([_confidence(s) for s in df[score_column].tolist()], dtype=float)
    label_prof = None
    if label_column and prediction_column:
        both = df[label_column].notna() & df[prediction_column].notna()
        if both.any():
            kind, tol, qs = error_definition(df.loc[both, prediction_column], df.loc[both, label_column], pred_prof, error)
            label_prof = LabelProfile(n=int(both.sum()), errors=0, error=kind, tolerance=tol, abs_error_quantiles=qs)
            err = error_array(df.loc[both, prediction_column].tolist(), df.loc[both, label_column].tolist(), label_prof).astype(bool)
            label_prof.errors = int(err.sum())
            if conf is not None:
                c = conf[both.to_numpy()]
                ok = ~np.isnan(c)
                if ok.any():
                    b = np.clip((c[ok] * ECE_BINS).astype(int), 0, ECE_BINS - 1)
                    cnt = np.bincount(b, minlength=ECE_BINS)
                    cor = np.bincount(b, weights=(~err[ok]).astype(float), minlength=ECE_BINS)
                    csum = np.bincount(b, weights=c[ok], minlength=ECE_BINS)
                    from streams.drift_metrics import ece_from_bins

                    label_prof.ece = ece_from_bins(cnt, cor, csum)
                    label_prof.ece_count = [int(x) for x in cnt]
                    label_prof.ece_correct = [int(x) for x in cor]
    elif error is not None:
        raise ProfileError("an error definition needs labelled rows: give --label-column and --prediction-column")
    prof = ReferenceProfile(
        id="",
        model=str(model),
        model_version=str(model_version),
        n=int(len(df)),
        features=features,
        prediction=pred_prof,
        score=score_prof,
        labels=label_prof,
        n_bins=n_bins,
        fine_bins=fine_bins,
        top_k=top_k,
        source=source,
    )
    prof.id = profile_id or content_id(prof)
    return prof
