"""Event-time windows and their mergeable accumulators (pure numpy).

A :class:`WindowAccumulator` holds integer counts only (per feature bucket, per
prediction/score bucket, labelled/error/calibration counts) plus the min/max
event time, so partial accumulators of one window built on different partitions
merge exactly and in any order.  A label window also carries its *error sequence*
(event time, event_id, 0/1 error and a regression model's loss of each labelled example whose own hop slot
starts the window, see :meth:`WindowAccumulator.add_labels`): merging concatenates it,
and :meth:`WindowAccumulator.error_sequence` sorts it by (event time, event_id), a total
order that does not depend on partitioning or batching.  Updates are column-wise: a micro-batch is encoded
to bucket indices (numeric features: ``np.searchsorted`` on their edges, for all of them at once through
:class:`GridSearch` when they form a float matrix; one ``pandas.Categorical`` lookup per categorical
feature), then counted with a single ``np.bincount`` over all features.

Windows are tumbling (``hop == size``) or hopping (``size`` a multiple of ``hop``);
an event at time ``t`` belongs to the windows starting at ``k*hop`` with
``k*hop <= t < k*hop + size``.

>>> import pandas as pd
>>> from streams.judge.profile_build import build_profile
>>> prof = build_profile(pd.DataFrame({"x": range(100)}), "m", "1")
>>> enc = Encoder(prof)
>>> a = WindowAccumulator.empty(enc); a.add_columns(enc, {"x": np.arange(10.0)})
>>> b = WindowAccumulator.empty(enc); b.add_columns(enc, {"x": np.arange(10.0, 20.0)})
>>> a.merge(b).n
20
"""

from __future__ import annotations

import base64
import math
import operator
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd

from streams.judge.profile import (ECE_BINS, CategoricalProfile, NumericProfile, ReferenceProfile, category_text,
                                   error_array, loss_array)
from streams.judge.profile_build import _confidence, _score_value
from streams.judge.encoding import BatchEncoding, GridSearch
from streams.judge.tables import as_float as _as_float

#: Confidence sums are kept as integers in these units, so that merging is exact.
CONF_UNITS = 1_000_000

INPUTS = "inputs"
LABELS = "labels"


class WindowKey(NamedTuple):
    """One window of one model version.  ``stream`` is ``inputs`` (feature windows) or ``labels``."""

    model: str
    model_version: str
    start: float
    end: float
    stream: str = INPUTS

    def to_str(self) -> str:
        return "|".join([self.model, self.model_version, repr(float(self.start)), repr(float(self.end)), self.stream])

    @classmethod
    def from_str(cls, s: str) -> "WindowKey":
        parts = s.rsplit("|", 4)
        if len(parts) != 5:
            raise ValueError(f"not a window key: {s!r}")
        return cls(parts[0], parts[1], float(parts[2]), float(parts[3]), parts[4])


def window_indices(ts: np.ndarray, size: float, hop: float) -> tuple[np.ndarray, np.ndarray]:
    """For each event, the windows it belongs to: (event positions, window index k), start = k * hop."""
    per = int(round(size / hop))
    base = np.floor(np.asarray(ts, dtype=float) / hop).astype(np.int64)
    if per == 1:
        return np.arange(len(base)), base
    pos = np.repeat(np.arange(len(base)), per)
    k = (base[:, None] - np.arange(per)[None, :]).ravel()
    return pos, k


# --------------------------------------------------------------------------- encoding


@dataclass(frozen=True)
class Segment:
    name: str
    kind: str  # numeric | categorical
    offset: int
    size: int  # buckets incl. missing and invalid


class Encoder(BatchEncoding):
    """Turns columns of a micro-batch into global bucket indices for one reference profile.

    Layout per feature: its value buckets, then ``missing`` (None/NaN/absent), then ``invalid``
    (a string in a numeric feature).  The prediction and score segments follow the features.
    """

    def __init__(self, profile: ReferenceProfile) -> None:
        self.profile = profile
        self.names = list(profile.features)
        self.segments: list[Segment] = []
        off = 0
        for name in self.names:
            fp = profile.features[name]
            self.segments.append(Segment(name, fp.kind, off, fp.n_buckets + 2))
            off += fp.n_buckets + 2
        self.n_feature_buckets = off
        self.pred_segment = None
        if profile.prediction is not None:
            self.pred_segment = Segment("prediction", profile.prediction.kind, off, profile.prediction.n_buckets + 2)
            off += self.pred_segment.size
        self.score_segment = None
        if profile.score is not None:
            self.score_segment = Segment("score", "numeric", off, profile.score.n_buckets + 2)
            off += self.score_segment.size
        self.n_buckets = off
        self.numeric = [s for s in self.segments if s.kind == "numeric"]
        self.numeric_names = [s.name for s in self.numeric]
        names = self.numeric_names
        self._numeric_getter = operator.itemgetter(*names) if len(names) > 1 else (lambda f: tuple(f[k] for k in names))
        self._edges = {s.name: np.asarray(profile.features[s.name].edges, dtype=float) for s in self.numeric}
        self._grid = GridSearch([self._edges[n] for n in names])
        self._num_missing = np.array([len(self._edges[n]) + 1 for n in names], dtype=np.int64)[:, None]
        self._num_offsets = np.array([s.offset for s in self.numeric], dtype=np.int64)[:, None]
        self._num_rows = [i for i, s in enumerate(self.segments) if s.kind == "numeric"]
        self._cats = {
            s.name: pd.CategoricalDtype(profile.features[s.name].categories) for s in self.segments if s.kind == "categorical"
        }

    # -- per-kind encoders: values -> local bucket index
    @staticmethod
    def _num_local(edges: np.ndarray, x: np.ndarray, invalid: np.ndarray | None = None) -> np.ndarray:
        idx = np.searchsorted(edges, x, side="left")
        nan = np.isnan(x)
        idx[nan] = len(edges) + 1  # missing
        if invalid is not None:
            idx[invalid] = len(edges) + 2
        return idx

    @staticmethod
    def _cat_local(dtype: pd.CategoricalDtype, values: Sequence[Any]) -> np.ndarray:
        arr = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
        if arr.dtype == object and arr.size:
            nonstr = np.fromiter((not (v is None or isinstance(v, str)) for v in arr), bool, arr.size)
            if nonstr.any():
                arr = arr.copy()
                for i in np.flatnonzero(nonstr):
                    v = arr[i]
                    arr[i] = None if (isinstance(v, float) and math.isnan(v)) else category_text(v)
        k = len(dtype.categories)
        codes = pd.Categorical(arr, dtype=dtype).codes.astype(np.int64)
        missing = pd.isna(arr) if arr.dtype == object else np.zeros(arr.size, bool)
        codes[(codes < 0) & ~missing] = k  # other / unseen category
        codes[missing] = k + 1
        return codes

    def encode(self, columns: Mapping[str, Any], n: int) -> np.ndarray:
        """Global bucket indices (flat, all features) for a batch of ``n`` events given as columns."""
        parts = []
        for seg in self.segments:
            col = columns.get(seg.name)
            if col is None:
                parts.append(np.full(n, seg.offset + seg.size - 2, dtype=np.int64))  # absent -> missing
                continue
            if seg.kind == "numeric":
                x, invalid = _as_float(col)
                parts.append(seg.offset + self._num_local(self._edges[seg.name], x, invalid))
            else:
                parts.append(seg.offset + self._cat_local(self._cats[seg.name], col))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def encode_outputs(self, predictions: Sequence[Any] | None, scores: Sequence[Any] | None, n: int) -> np.ndarray:
        parts = []
        prof = self.profile
        if self.pred_segment is not None and predictions is not None:
            if prof.prediction.kind == "numeric":
                x, invalid = _as_float(predictions)
                parts.append(self.pred_segment.offset + self._num_local(np.asarray(prof.prediction.edges), x, invalid))
            else:
                dtype = pd.CategoricalDtype(prof.prediction.categories)
                parts.append(self.pred_segment.offset + self._cat_local(dtype, list(predictions)))
        if self.score_segment is not None and scores is not None:
            sv = scores if isinstance(scores, np.ndarray) and scores.dtype.kind == "f" else np.array(
                [_score_value(s) for s in scores], dtype=float
            )
            parts.append(self.score_segment.offset + self._num_local(np.asarray(prof.score.edges), sv))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

# --------------------------------------------------------------------------- accumulator


class WindowAccumulator:
    """Integer counts of one window (or of a partial of it).  ``merge`` is exact and commutative."""

    __slots__ = ("profile_id", "counts", "n", "n_labelled", "n_errors", "ece_count", "ece_correct", "ece_conf", "min_ts", "max_ts",
                 "seq_ts", "seq_err", "seq_ids", "seq_loss")

    def __init__(
        self,
        profile_id: str,
        counts: np.ndarray,
        n: int = 0,
        n_labelled: int = 0,
        n_errors: int = 0,
        ece_count: np.ndarray | None = None,
        ece_correct: np.ndarray | None = None,
        ece_conf: np.ndarray | None = None,
        min_ts: float = math.inf,
        max_ts: float = -math.inf,
        seq_ts: np.ndarray | None = None,
        seq_err: np.ndarray | None = None,
        seq_ids: list[str] | None = None,
        seq_loss: np.ndarray | None = None,
    ) -> None:
        self.profile_id = profile_id
        self.counts = counts
        self.n = n
        self.n_labelled = n_labelled
        self.n_errors = n_errors
        self.ece_count = np.zeros(ECE_BINS, np.int64) if ece_count is None else ece_count
        self.ece_correct = np.zeros(ECE_BINS, np.int64) if ece_correct is None else ece_correct
        self.ece_conf = np.zeros(ECE_BINS, np.int64) if ece_conf is None else ece_conf
        self.min_ts = min_ts
        self.max_ts = max_ts
        # error sequence (label windows): event time float64, error int8 (0/1), event_id, loss; unsorted
        self.seq_ts = np.zeros(0, np.float64) if seq_ts is None else seq_ts
        self.seq_err = np.zeros(0, np.int8) if seq_err is None else seq_err
        self.seq_ids = [] if seq_ids is None else seq_ids
        # loss float64 (regression; nan = no outcome): for all of the sequence's examples or none (classifiers)
        self.seq_loss = np.zeros(0, np.float64) if seq_loss is None else seq_loss

    @classmethod
    def empty(cls, encoder: Encoder) -> "WindowAccumulator":
        return cls(encoder.profile.id, np.zeros(encoder.n_buckets, dtype=np.int64))

    def _ts(self, ts: np.ndarray | None) -> None:
        if ts is not None and len(ts):
            self.min_ts = min(self.min_ts, float(np.min(ts)))
            self.max_ts = max(self.max_ts, float(np.max(ts)))

    def add_columns(
        self,
        encoder: Encoder,
        columns: Mapping[str, Any],
        *,
        n: int | None = None,
        predictions: Sequence[Any] | None = None,
        scores: Sequence[Any] | None = None,
        ts: np.ndarray | None = None,
    ) -> None:
        """Count a micro-batch given as columns (feature name -> values)."""
        if n is None:
            n = len(next(iter(columns.values()))) if columns else (len(ts) if ts is not None else 0)
        if n == 0:
            return
        idx = encoder.encode(columns, n)
        out = encoder.encode_outputs(predictions, scores, n)
        if out.size:
            idx = np.concatenate([idx, out])
        self.counts += np.bincount(idx, minlength=len(self.counts))
        self.n += int(n)
        self._ts(ts)

    def add_indices(self, idx: np.ndarray, n: int, ts: np.ndarray | None = None) -> None:
        """Count pre-encoded global bucket indices of ``n`` events (see :meth:`Encoder.encode_matrix`)."""
        self.counts += np.bincount(idx, minlength=len(self.counts))
        self.n += int(n)
        self._ts(ts)

    def add_labels(
        self, errors: np.ndarray, confidence: np.ndarray | None = None, ts: np.ndarray | None = None,
        event_ids: Sequence[str] | None = None, in_sequence: np.ndarray | None = None,
        losses: np.ndarray | None = None,
    ) -> None:
        """Count labelled outcomes: ``errors`` 0/1 per example, optional top-class confidence (NaN = none).

        With ``ts`` and ``event_ids`` the examples are also appended to the error sequence that the
        engine feeds to its event-level concept detectors when the window is judged; ``in_sequence``
        (bool per example) keeps only some of them (hopping windows: an example enters the sequence
        of one window only, the one that starts at its own hop slot).  ``losses`` (regression models,
        float per example) go into the sequence with them (:mod:`streams.judge.loss`).
        """
        errors = np.asarray(errors).astype(bool)
        if ts is not None and event_ids is not None:
            t = np.asarray(ts, dtype=np.float64)
            ids = list(map(str, event_ids))
            if len(t) != errors.size or len(ids) != errors.size:
                raise ValueError("errors, ts and event_ids must have the same length")
            loss = None if losses is None else np.asarray(losses, dtype=np.float64)
            if in_sequence is not None:
                keep = np.asarray(in_sequence, dtype=bool)
                t, e = t[keep], errors[keep]
                ids = [i for i, k in zip(ids, keep.tolist()) if k]
                loss = None if loss is None else loss[keep]
            else:
                e = errors
            if len(t):
                self._append_loss(loss, len(t))
                self.seq_ts = np.concatenate([self.seq_ts, t])
                self.seq_err = np.concatenate([self.seq_err, e.astype(np.int8)])
                self.seq_ids = self.seq_ids + ids
        self.n_labelled += int(errors.size)
        self.n_errors += int(errors.sum())
        if confidence is not None:
            c = np.asarray(confidence, dtype=float)
            ok = ~np.isnan(c)
            if ok.any():
                b = np.clip((c[ok] * ECE_BINS).astype(np.int64), 0, ECE_BINS - 1)
                self.ece_count += np.bincount(b, minlength=ECE_BINS)
                self.ece_correct += np.bincount(b[~errors[ok]], minlength=ECE_BINS)
                q = np.rint(np.clip(c[ok], 0.0, 1.0) * CONF_UNITS).astype(np.int64)
                self.ece_conf += np.bincount(b, weights=q, minlength=ECE_BINS).astype(np.int64)
        self._ts(ts)

    def _append_loss(self, loss: np.ndarray | None, n: int) -> None:
        """Append the losses of ``n`` new sequence examples (None: none); a sequence that mixes examples
        with and without losses (never from one profile) keeps nan for the missing ones."""
        if loss is None and not len(self.seq_loss):
            return
        if len(self.seq_loss) != len(self.seq_ts):
            self.seq_loss = np.full(len(self.seq_ts), np.nan)
        self.seq_loss = np.concatenate([self.seq_loss, np.full(n, np.nan) if loss is None else loss])

    def merge(self, other: "WindowAccumulator") -> "WindowAccumulator":
        """In-place exact merge (returns self)."""
        if other.profile_id != self.profile_id:
            raise ValueError(f"cannot merge windows of profiles {self.profile_id} and {other.profile_id}")
        self.counts += other.counts
        self.n += other.n
        self.n_labelled += other.n_labelled
        self.n_errors += other.n_errors
        self.ece_count += other.ece_count
        self.ece_correct += other.ece_correct
        self.ece_conf += other.ece_conf
        self.min_ts = min(self.min_ts, other.min_ts)
        self.max_ts = max(self.max_ts, other.max_ts)
        if len(other.seq_ts):
            self._append_loss(other.seq_loss if len(other.seq_loss) else None, len(other.seq_ts))
            self.seq_ts = np.concatenate([self.seq_ts, other.seq_ts])
            self.seq_err = np.concatenate([self.seq_err, other.seq_err])
            self.seq_ids = self.seq_ids + list(other.seq_ids)
        return self

    def copy(self) -> "WindowAccumulator":
        return WindowAccumulator(
            self.profile_id, self.counts.copy(), self.n, self.n_labelled, self.n_errors,
            self.ece_count.copy(), self.ece_correct.copy(), self.ece_conf.copy(), self.min_ts, self.max_ts,
            self.seq_ts.copy(), self.seq_err.copy(), list(self.seq_ids), self.seq_loss.copy(),
        )

    def error_sequence(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """The error sequence sorted by (event time, event_id, error, loss): (ts float64, errors int8, event_ids)."""
        return self.sequence()[:3]

    def sequence(self) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray | None]:
        """The error sequence sorted by (event time, event_id, error, loss): (ts float64, errors int8,
        event_ids, losses float64 or None when the sequence holds none).

        A total order: the same examples give the same sequence however they were partitioned,
        batched and merged.
        """
        loss = self.seq_loss if len(self.seq_loss) else None
        if not len(self.seq_ts):
            return self.seq_ts, self.seq_err, [], loss
        keys = (self.seq_err, np.asarray(self.seq_ids, dtype=str), self.seq_ts)
        order = np.lexsort(keys if loss is None else (loss,) + keys)
        return (self.seq_ts[order], self.seq_err[order], [self.seq_ids[i] for i in order.tolist()],
                None if loss is None else loss[order])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WindowAccumulator) and self.to_dict() == other.to_dict()

    # -- views used by the metrics
    def segment(self, seg: Segment) -> tuple[np.ndarray, int, int]:
        """(value bucket counts, missing, invalid) of one segment."""
        c = self.counts[seg.offset : seg.offset + seg.size]
        return c[:-2], int(c[-2]), int(c[-1])

    def to_dict(self) -> dict[str, Any]:
        nz = np.flatnonzero(self.counts)
        out = {
            "profile_id": self.profile_id,
            "size": int(len(self.counts)),
            "idx": nz.tolist(),
            "val": self.counts[nz].tolist(),
            "n": self.n,
            "n_labelled": self.n_labelled,
            "n_errors": self.n_errors,
            "ece_count": self.ece_count.tolist(),
            "ece_correct": self.ece_correct.tolist(),
            "ece_conf": self.ece_conf.tolist(),
            "min_ts": None if math.isinf(self.min_ts) else self.min_ts,
            "max_ts": None if math.isinf(self.max_ts) else self.max_ts,
        }
        if len(self.seq_ts):
            # compact and exact: event times as base64 of little-endian float64, errors as a digit string
            out["seq"] = {
                "ts": base64.b64encode(self.seq_ts.astype("<f8").tobytes()).decode("ascii"),
                "err": (self.seq_err.astype(np.uint8) + 48).tobytes().decode("ascii"),
                "ids": list(self.seq_ids),
            }
            if len(self.seq_loss):  # exact, JSON-safe (nan/inf included): base64 of little-endian float64
                out["seq"]["loss"] = base64.b64encode(self.seq_loss.astype("<f8").tobytes()).decode("ascii")
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "WindowAccumulator":
        counts = np.zeros(int(d["size"]), dtype=np.int64)
        counts[np.asarray(d["idx"], dtype=np.int64)] = np.asarray(d["val"], dtype=np.int64)
        return cls(
            str(d["profile_id"]),
            counts,
            int(d["n"]),
            int(d.get("n_labelled", 0)),
            int(d.get("n_errors", 0)),
            np.asarray(d.get("ece_count", [0] * ECE_BINS), dtype=np.int64),
            np.asarray(d.get("ece_correct", [0] * ECE_BINS), dtype=np.int64),
            np.asarray(d.get("ece_conf", [0] * ECE_BINS), dtype=np.int64),
            math.inf if d.get("min_ts") is None else float(d["min_ts"]),
            -math.inf if d.get("max_ts") is None else float(d["max_ts"]),
            *_seq_from_dict(d.get("seq")),
        )


def _seq_from_dict(q: Mapping[str, Any] | None) -> tuple[np.ndarray | None, ...]:
    if not q:
        return None, None, None, None
    ts = np.frombuffer(base64.b64decode(q["ts"]), dtype="<f8").astype(np.float64)
    err = (np.frombuffer(str(q["err"]).encode("ascii"), dtype=np.uint8) - 48).astype(np.int8)
    ids = [str(i) for i in q["ids"]]
    loss = None if q.get("loss") is None else np.frombuffer(base64.b64decode(q["loss"]), dtype="<f8").astype(np.float64)
    if not (len(ts) == len(err) == len(ids)) or (loss is not None and len(loss) != len(ts)):
        raise ValueError("error sequence with arrays of different lengths")
    return ts, err, ids, loss


def label_arrays(examples: Sequence[Any], definition: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Labelled examples -> (errors 0/1 (n,) int8, top-class confidence or NaN (n,) float, losses (n,)
    float or None).

    ``definition``: the profile's :class:`streams.judge.profile.LabelProfile` (what an error is:
    mismatch, or absolute/relative error over a tolerance); None = mismatch.  Losses
    (:func:`streams.judge.profile.loss_array`) for a regression definition with a reference loss distribution.
    """
    preds, labels = [e.prediction for e in examples], [e.label for e in examples]
    errors = error_array(preds, labels, definition)
    loss = None
    if definition is not None and definition.error != "mismatch" and getattr(definition, "loss_quantiles", None):
        loss = loss_array(preds, labels, definition.error)
    conf = np.fromiter(
        (_confidence(e.scores) if e.scores is not None else math.nan for e in examples), dtype=float, count=len(examples)
    )
    return errors, conf, loss


__all__ = [
    "WindowKey",
    "WindowAccumulator",
    "Encoder",
    "Segment",
    "window_indices",
    "label_arrays",
    "INPUTS",
    "LABELS",
    "NumericProfile",
    "CategoricalProfile",
]
