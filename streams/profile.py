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
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, Union

import numpy as np
import pandas as pd

from streams.events import InferenceEvent, InvalidRecord, LabelledExample, parse_input

FORMAT_VERSION = 1
#: Columns of a table that are not features (everything else is).
META_COLUMNS = ("event_id", "model", "model_version", "ts", "entity", "prediction", "scores", "score", "label")
#: Multiples of the reference spread at which tail edges are placed beyond min and max.
TAIL_LADDER = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
#: A PSI bin holds at least this share of 1/n_bins of the reference values (smaller ones are merged).
MIN_BIN_SHARE = 0.5
#: Number of confidence bins for the expected calibration error.
ECE_BINS = 10


class ProfileError(ValueError):
    """A reference profile cannot be built or read."""


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

    @property
    def n_buckets(self) -> int:
        return len(self.edges) + 1

    def reps(self) -> np.ndarray:
        """A representative value per fine bin (midpoints; open tails one ladder step out)."""
        e = np.asarray(self.edges, dtype=float)
        if e.size == 0:
            return np.array([self.median])
        if e.size == 1:
            return np.array([e[0], e[0] + self.spread])
        mids = (e[1:] + e[:-1]) / 2.0
        lo = e[0] - (e[1] - e[0])
        hi = e[-1] + (e[-1] - e[-2])
        return np.concatenate([[lo], mids, [hi]])

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
    """Reference performance: error rate (1 - accuracy) and calibration."""

    n: int
    errors: int
    ece: float | None = None
    ece_count: list[int] = field(default_factory=list)
    ece_correct: list[int] = field(default_factory=list)

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
        try:
            return cls.from_dict(json.loads(p.read_text(encoding="utf-8")))
        except json.JSONDecodeError as exc:
            raise ProfileError(f"reference profile {p} is not JSON: {exc}") from None


def content_id(profile: ReferenceProfile) -> str:
    """``ref-`` + a hash of everything but the id, creation time and source."""
    d = profile.to_dict()
    for k in ("id", "created_at", "source"):
        d.pop(k, None)
    return "ref-" + hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- building


def numeric_profile(values: np.ndarray, n_bins: int = 10, fine_bins: int = 100) -> NumericProfile:
    """Profile of one numeric column (NaN = missing)."""
    x = np.asarray(values, dtype=float)
    missing = int(np.isnan(x).sum())
    v = x[~np.isnan(x)]
    n = int(len(x))
    if v.size == 0:
        return NumericProfile([], [0], [0], missing, n, 1.0, 0.0)
    q25, med, q75 = np.quantile(v, [0.25, 0.5, 0.75])
    spread = float((q75 - q25) / 1.349)
    if not spread > 0:
        spread = float(np.std(v))
    if not spread > 0:
        spread = max(abs(float(med)) * 0.1, 1.0)
    qs = np.quantile(v, np.arange(1, fine_bins) / fine_bins)
    step = max(fine_bins // n_bins, 1)
    coarse_vals = np.unique(qs[step - 1 :: step][: n_bins - 1])
    lo, hi = float(v.min()), float(v.max())
    ladder = np.asarray(TAIL_LADDER) * spread
    edges = np.unique(np.concatenate([lo - ladder[::-1], [lo], qs, [hi], hi + ladder]))
    edges = edges[np.isfinite(edges)]
    counts = np.bincount(np.searchsorted(edges, v, side="left"), minlength=len(edges) + 1)
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
    """Profile of one categorical column (None/NaN = missing); values compare as strings."""
    s = pd.Series(values, dtype=object)
    miss = s.isna()
    present = s[~miss].map(category_text)
    vc = present.value_counts()
    # most frequent first, ties by name, so the profile is deterministic
    items = sorted(vc.items(), key=lambda kv: (-kv[1], kv[0]))
    cats = [str(k) for k, _ in items[:top_k]]
    other = int(sum(c for _, c in items[top_k:]))
    return CategoricalProfile(cats, [int(c) for _, c in items[:top_k]] + [other], int(miss.sum()), int(len(s)))


def category_text(v: Any) -> str:
    """How a categorical value is compared: strings as they are, integral numbers without '.0'."""
    if isinstance(v, str):
        return v
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _is_numeric(col: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return True
    nonnull = col.dropna()
    if nonnull.empty:
        return True
    return bool(nonnull.map(lambda v: isinstance(v, (int, float, np.number)) and not isinstance(v, bool)).all())


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


def is_error(prediction: Any, label: Any) -> bool:
    """A classification error: prediction and label differ (numbers compared as numbers, else as text)."""
    if prediction is None or label is None:
        return False
    try:
        return float(prediction) != float(label)
    except (TypeError, ValueError):
        return category_text(prediction) != category_text(label)


def build_profile(
    table: pd.DataFrame | Sequence[InferenceEvent] | Sequence[LabelledExample] | Sequence[Mapping[str, Any]],
    model: str,
    model_version: str,
    *,
    label_column: str | None = None,
    prediction_column: str | None = None,
    score_column: str | None = None,
    feature_columns: Sequence[str] | None = None,
    n_bins: int = 10,
    fine_bins: int = 100,
    top_k: int = 20,
    profile_id: str | None = None,
    source: str = "",
) -> ReferenceProfile:
    """Build a reference profile from training data.

    ``table`` is a DataFrame (one column per feature, plus optional ``prediction``,
    ``scores``/``score`` and ``label`` columns) or a list of events / event dicts.
    Columns default to ``label``, ``prediction`` and ``scores`` (or ``score``) when present.
    """
    if n_bins < 2 or fine_bins < n_bins:
        raise ProfileError(f"need 2 <= n_bins <= fine_bins, got n_bins={n_bins}, fine_bins={fine_bins}")
    df = table if isinstance(table, pd.DataFrame) else events_to_frame(table)
    if df.empty:
        raise ProfileError("the reference table is empty; give it at least a few hundred rows of training data")
    label_column = label_column or ("label" if "label" in df.columns else None)
    prediction_column = prediction_column or ("prediction" if "prediction" in df.columns else None)
    if score_column is None:
        score_column = "scores" if "scores" in df.columns else ("score" if "score" in df.columns else None)
    for name, col in (("label", label_column), ("prediction", prediction_column), ("score", score_column)):
        if col is not None and col not in df.columns:
            raise ProfileError(f"{name} column {col!r} is not in the table; columns are {list(df.columns)[:20]}")
    skip = set(META_COLUMNS) | {c for c in (label_column, prediction_column, score_column) if c}
    names = list(feature_columns) if feature_columns is not None else [c for c in df.columns if c not in skip]
    if not names:
        raise ProfileError("the reference table has no feature columns")
    features: dict[str, FeatureProfile] = {}
    for name in names:
        if name not in df.columns:
            raise ProfileError(f"feature column {name!r} is not in the table")
        col = df[name]
        if _is_numeric(col):
            features[str(name)] = numeric_profile(pd.to_numeric(col, errors="coerce").to_numpy(dtype=float), n_bins, fine_bins)
        else:
            features[str(name)] = categorical_profile(col.tolist(), top_k)
    pred_prof: FeatureProfile | None = None
    if prediction_column:
        pcol = df[prediction_column]
        if _is_numeric(pcol) and pcol.dropna().nunique() > top_k:
            pred_prof = numeric_profile(pd.to_numeric(pcol, errors="coerce").to_numpy(dtype=float), n_bins, fine_bins)
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
            err = np.array([is_error(p, y) for p, y in zip(df.loc[both, prediction_column], df.loc[both, label_column])], dtype=bool)
            label_prof = LabelProfile(n=int(both.sum()), errors=int(err.sum()))
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


# --------------------------------------------------------------------------- tables


def events_to_frame(rows: Iterable[InferenceEvent | LabelledExample | Mapping[str, Any]]) -> pd.DataFrame:
    """Events (typed or dicts in the inference-input contract) -> one row each, features flattened to columns."""
    records = []
    for r in rows:
        if isinstance(r, (InferenceEvent, LabelledExample)):
            rec = {"event_id": r.event_id, "model": r.model, "model_version": r.model_version, "ts": r.ts}
            rec.update(r.features)
            if r.prediction is not None:
                rec["prediction"] = r.prediction
            if r.scores is not None:
                rec["scores"] = list(r.scores)
            if isinstance(r, LabelledExample):
                rec["label"] = r.label
            records.append(rec)
            continue
        d = dict(r)
        rec: dict[str, Any] = {k: d.get(k) for k in ("event_id", "model", "model_version", "ts") if k in d}
        feats = d.get("features")
        if isinstance(feats, Mapping):
            rec.update(feats)
        else:
            rec.update({k: v for k, v in d.items() if k not in META_COLUMNS})
        for k in ("prediction", "scores", "label"):
            if d.get(k) is not None:
                rec[k] = d[k]
        records.append(rec)
    return pd.DataFrame.from_records(records)


def load_table(path: str | Path) -> pd.DataFrame:
    """Read training data: CSV, Parquet, or JSONL of inference inputs (features flattened to columns).

    Bad JSONL lines are refused with their line number: a reference must be clean.
    """
    p = Path(path)
    if not p.is_file():
        raise ProfileError(f"table {p} does not exist")
    suffix = "".join(p.suffixes[-2:]).lower() if p.suffix == ".gz" else p.suffix.lower()
    if suffix in (".csv", ".csv.gz"):
        return pd.read_csv(p)
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(p)
    if suffix in (".jsonl", ".ndjson", ".json", ".jsonl.gz"):
        import gzip

        opener = gzip.open if suffix.endswith(".gz") else open
        rows = []
        with opener(p, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ProfileError(f"{p}:{lineno}: not JSON ({exc})") from None
                if isinstance(obj, dict) and "features" in obj:
                    try:
                        ev = parse_input(obj)
                    except InvalidRecord as exc:
                        raise ProfileError(f"{p}:{lineno}: {exc}") from None
                    d = ev.to_dict()
                    if obj.get("label") is not None:
                        d["label"] = obj["label"]
                    rows.append(d)
                elif isinstance(obj, dict):
                    rows.append(obj)
                else:
                    raise ProfileError(f"{p}:{lineno}: expected a JSON object")
        return events_to_frame(rows)
    raise ProfileError(f"unknown table format {p.suffix!r}; use .csv, .parquet or .jsonl")
