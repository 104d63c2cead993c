"""Event contracts (docs/design.md): the typed records on driftloop's topics.

Inference inputs and labels (msgspec Structs, decoded straight from JSON by the validator in
:mod:`streams.contracts.validate`), labelled examples, alerts with deterministic ids, and dead
letters that always fit the dead-letter topic.  The limits of the contract (sizes, nesting,
names, future skew) are the constants here; :class:`InvalidRecord` carries one reason of
:data:`REASONS`.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import operator
import os
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, Mapping, Union

import msgspec

FeatureValue = Union[float, str, None]

#: Largest accepted message, in bytes.  Bigger payloads are dead-lettered with reason ``too_large``.
DEFAULT_MAX_BYTES = 1_000_000
MAX_ID_LEN = 256
MAX_FEATURES = 10_000
MAX_STRING_VALUE_LEN = 1024
#: Event times outside [MIN_TS, MAX_TS] (1970 .. 2500) are rejected as ``bad_timestamp``.
MIN_TS = 0.0
MAX_TS = 16_725_225_600.0
#: Event times more than this many seconds ahead of the wall clock are rejected as ``future``
#: (``max_future_s`` of parse_input/parse_label; None turns the check off).
DEFAULT_MAX_FUTURE_S = 300.0
#: Deepest JSON nesting accepted anywhere in a record (unknown fields included); deeper is ``too_deep``.
#: A valid event needs 2 levels (the object and ``features``/``entity``/``scores``).
MAX_NESTING = 64
#: Model and version names: 1..MAX_NAME_LEN printable characters (str.isprintable: no control,
#: format, separator-other-than-space, surrogate, private-use or unassigned characters), no leading
#: or trailing space.  Any other character is allowed (``fraud|eu``, ``team/model``, ``../x``):
#: names are data, never file paths (references are looked up by a hash, streams/adapters/reference_store.py).
MAX_NAME_LEN = 128
#: Default byte budget of one encoded dead letter (DeadLetter.to_bytes): far under Kafka's default
#: 1,048,588-byte max.message.bytes, leaving room for the key, headers and batch overhead.
DEFAULT_DLQ_MAX_BYTES = 512 * 1024
#: Longest Kafka key copied onto a dead letter; longer keys are replaced by ``sha256:<hex>``.
MAX_DLQ_KEY_BYTES = 1024

# Reason codes (the ``reason`` of InvalidRecord and the metric label of invalid events).
REASONS = (
    "not_utf8",
    "not_json",
    "too_large",
    "not_object",
    "missing_field",
    "wrong_type",
    "non_finite",
    "bad_timestamp",
    "bad_value",
    "bad_name",  # model or model_version outside the name pattern (see MAX_NAME_LEN)
    "too_deep",  # JSON nested deeper than MAX_NESTING (anywhere, unknown fields included)
    "future",  # event time more than max_future_s ahead of the wall clock
    "late",  # event time older than the worker's watermark minus the allowed lateness
)


class InvalidRecord(ValueError):
    """A record that does not satisfy its contract.

    ``reason`` is one of :data:`REASONS`; ``str(err)`` says what is wrong and what to do.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self):  # keep reason through pickling (multiprocessing, Ray)
        return (type(self), (self.reason, str(self)))


# --------------------------------------------------------------------------- records


# Inputs and labels are msgspec Structs (``gc=False``: they hold only strings, numbers and flat dicts, so
# they can never be part of a reference cycle, and the garbage collector need not track them - the
# worker keeps hundreds of thousands alive in its join store).  Not dataclasses: the validator's fast path decodes JSON
# straight into them, with the contract's limits as field constraints (see _fast_input below).
# Constructing one directly does not check anything; use parse_input/parse_label for untrusted data.
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LEN)]
_Ts = Annotated[float, msgspec.Meta(ge=MIN_TS, le=MAX_TS)]
_Str = Annotated[str, msgspec.Meta(max_length=MAX_STRING_VALUE_LEN)]


class ShadowPrediction(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """What a version served in shadow predicted for the same input (``InferenceEvent.shadow``: not returned to
    the user; the live gate compares it with the live prediction once the label arrives)."""

    model_version: _Id
    prediction: Union[float, str, None] = None
    scores: Union[Annotated[tuple[float, ...], msgspec.Meta(min_length=1)], None] = None

    def to_dict(self) -> dict[str, Any]:
        """``{"model_version", "prediction", "scores"}`` as plain JSON values (the form kept on labelled examples)."""
        return {"model_version": self.model_version, "prediction": self.prediction,
                "scores": None if self.scores is None else list(self.scores)}


class InferenceEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    event_id: _Id
    model: _Id
    model_version: _Id
    ts: _Ts
    # feature names are plain str: a key constraint would turn off msgspec's key cache (repeated names decoded
    # once, as one shared string): 2.06 -> 1.42 us per 20-feature record; the validator checks their length
    # (1..MAX_ID_LEN) per batch over the distinct names (streams.contracts.validate._feature_names_ok)
    features: Annotated[dict[str, Union[float, _Str, None]], msgspec.Meta(min_length=1, max_length=MAX_FEATURES)]
    entity: Union[dict[str, Union[str, int]], None] = None
    prediction: Union[float, str, None] = None
    scores: Union[Annotated[tuple[float, ...], msgspec.Meta(min_length=1)], None] = None
    shadow: Union[ShadowPrediction, None] = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "event_id": self.event_id,
            "model": self.model,
            "model_version": self.model_version,
            "ts": self.ts,
            "features": dict(self.features),
        }
        if self.entity is not None:
            d["entity"] = dict(self.entity)
        if self.prediction is not None:
            d["prediction"] = self.prediction
        if self.scores is not None:
            d["scores"] = list(self.scores)
        if self.shadow is not None:
            d["shadow"] = self.shadow.to_dict()
        return d


class LabelEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    event_id: _Id
    model: _Id
    ts: _Ts
    label: Union[float, Annotated[str, msgspec.Meta(min_length=1)]]
    model_version: Union[_Id, None] = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"event_id": self.event_id, "model": self.model, "ts": self.ts, "label": self.label}
        if self.model_version is not None:
            d["model_version"] = self.model_version
        return d


@dataclass(frozen=True, slots=True)
class LabelledExample:
    """An inference input joined with its label (the ``labelled`` topic; training data)."""

    event_id: str
    model: str
    model_version: str
    ts: float
    features: dict[str, FeatureValue]
    label: float | str
    prediction: float | str | None = None
    scores: tuple[float, ...] | None = None
    entity: dict[str, Any] | None = None
    #: the shadow version's prediction for this input (``ShadowPrediction.to_dict``: model_version, prediction, scores)
    shadow: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if self.scores is not None:
            d["scores"] = list(self.scores)
        if self.shadow is None:
            del d["shadow"]  # records without a shadow stay as they were
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LabelledExample":
        from streams.contracts.validate import (  # the validator builds on these records
            _input_from_obj,
            _label_value,
        )

        ev = _input_from_obj(d)
        label = _label_value(d)
        return cls(ev.event_id, ev.model, ev.model_version, ev.ts, ev.features, label, ev.prediction, ev.scores, ev.entity,
                   None if ev.shadow is None else ev.shadow.to_dict())


#: (model, model_version) of an event, label or labelled example (C-level, for grouping whole batches).
model_version_of = operator.attrgetter("model", "model_version")

ALERT_KINDS = ("data_drift", "prediction_drift", "performance", "concept_drift", "parity", "cardinality",
               "estimated_performance", "slo_burn", "shadow_rejected", "rollback")
SEVERITIES = ("warning", "critical")


def make_alert_id(model: str, model_version: str, kind: str, feature: str | None, window_start: float) -> str:
    """Stable id of a finding: the same (model, version, kind, feature, window start) gives the same id."""
    key = json.dumps([model, str(model_version), kind, feature or "", round(float(window_start), 3)])
    return hashlib.sha256(key.encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class AlertWindow:
    start: float
    end: float
    n: int


@dataclass(frozen=True, slots=True)
class AlertReference:
    id: str
    n: int


@dataclass(frozen=True)
class Alert:
    """One finding, in the docs/design.md alert schema (plus optional ``explained_by``/``details``)."""

    model: str
    model_version: str
    kind: str
    feature: str | None
    metric: str
    score: float
    threshold: float
    p_value: float | None
    severity: str
    window: AlertWindow
    reference: AlertReference
    emitted_at: float = field(default_factory=time.time)
    alert_id: str = ""
    explained_by: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ALERT_KINDS:
            raise ValueError(f"alert kind {self.kind!r} is not one of {ALERT_KINDS}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"alert severity {self.severity!r} is not one of {SEVERITIES}")
        if not self.alert_id:
            object.__setattr__(
                self, "alert_id", make_alert_id(self.model, self.model_version, self.kind, self.feature, self.window.start)
            )

    def to_dict(self) -> dict[str, Any]:
        d = {
            "alert_id": self.alert_id,
            "model": self.model,
            "model_version": self.model_version,
            "kind": self.kind,
            "feature": self.feature,
            "metric": self.metric,
            "score": self.score,
            "threshold": self.threshold,
            "p_value": self.p_value,
            "severity": self.severity,
            "window": dataclasses.asdict(self.window),
            "reference": dataclasses.asdict(self.reference),
            "emitted_at": self.emitted_at,
        }
        if self.explained_by:
            d["explained_by"] = self.explained_by
        if self.details:
            d["details"] = self.details
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False, default=json_default)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Alert":
        try:
            return cls(
                model=str(d["model"]),
                model_version=str(d["model_version"]),
                kind=d["kind"],
                feature=d.get("feature"),
                metric=d["metric"],
                score=float(d["score"]),
                threshold=float(d["threshold"]),
                p_value=None if d.get("p_value") is None else float(d["p_value"]),
                severity=d["severity"],
                window=AlertWindow(float(d["window"]["start"]), float(d["window"]["end"]), int(d["window"]["n"])),
                reference=AlertReference(str(d["reference"]["id"]), int(d["reference"]["n"])),
                emitted_at=float(d.get("emitted_at", 0.0)),
                alert_id=str(d.get("alert_id", "")),
                explained_by=d.get("explained_by"),
                details=dict(d.get("details") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidRecord("bad_value", f"not an alert record: {exc!r}") from None


#: Longest ``error`` text kept on a dead letter.
MAX_DLQ_ERROR_CHARS = 2000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that failed validation, with where it came from and why (``<topic>.dlq``).

    ``raw`` is the original payload (UTF-8 text, else base64).  ``raw_length`` and ``raw_sha256``
    describe the original bytes; when the letter would not fit its byte budget
    (:meth:`to_bytes`), ``raw`` holds only a prefix of them and ``raw_truncated`` is true.
    """

    topic: str
    partition: int
    offset: int
    error: str
    raw: str
    reason: str = "bad_value"
    raw_encoding: str = "text"  # "text" or "base64"
    failed_at: float = field(default_factory=time.time)
    raw_length: int | None = None  # bytes of the original payload (None: letters written before these fields)
    raw_sha256: str | None = None  # hex sha256 of the original payload
    raw_truncated: bool = False  # raw holds only the first bytes of the payload

    @classmethod
    def from_bytes(cls, topic: str, partition: int, offset: int, err: InvalidRecord | str, raw: bytes | None) -> "DeadLetter":
        reason = err.reason if isinstance(err, InvalidRecord) else "bad_value"
        raw = bytes(raw or b"")
        try:
            text, enc = raw.decode("utf-8"), "text"
        except UnicodeDecodeError:
            text, enc = base64.b64encode(raw).decode("ascii"), "base64"
        return cls(topic, partition, offset, str(err)[:MAX_DLQ_ERROR_CHARS], text, reason, enc,
                   raw_length=len(raw), raw_sha256=hashlib.sha256(raw).hexdigest())

    def raw_bytes(self) -> bytes:
        """The payload bytes held by the letter (the first bytes only when ``raw_truncated``)."""
        return base64.b64decode(self.raw) if self.raw_encoding == "base64" else self.raw.encode("utf-8")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def to_bytes(self, max_bytes: int = DEFAULT_DLQ_MAX_BYTES) -> bytes:
        """The letter as UTF-8 JSON of at most ``max_bytes`` bytes: the payload is cut if needed.

        JSON escaping can make a letter up to 12x its payload (a 400 kB record of quotes and
        backslashes becomes 2.4 MB of ``raw``); over the budget, ``raw`` keeps the longest prefix
        of the payload that fits (whole characters for text) and ``raw_truncated`` says so."""
        data = self.to_json().encode("utf-8")
        if len(data) <= max_bytes:
            return data
        return self.truncated(max_bytes).to_json().encode("utf-8")

    def truncated(self, max_bytes: int = DEFAULT_DLQ_MAX_BYTES) -> "DeadLetter":
        """This letter with ``raw`` cut so that :meth:`to_json` is at most ``max_bytes`` bytes (best effort
        when even an empty payload does not fit: the error text is cut too)."""
        payload = self.raw_bytes()
        length = self.raw_length if self.raw_length is not None else len(payload)
        digest = self.raw_sha256 if self.raw_sha256 is not None else hashlib.sha256(payload).hexdigest()
        # base64 (4/3) keeps more of a payload that JSON escaping inflates (control characters: 6x)
        b64 = self.raw_encoding == "base64" or len(json.dumps(self.raw)) > 1.4 * len(payload)
        empty = dataclasses.replace(self, raw="", raw_length=length, raw_sha256=digest, raw_truncated=True,
                                    raw_encoding="base64" if b64 else "text")
        room = max_bytes - len(empty.to_json().encode("utf-8"))
        if room < 0:
            empty = dataclasses.replace(empty, error=self.error[:200])
            room = max_bytes - len(empty.to_json().encode("utf-8"))
        if room <= 0:
            return empty
        if b64:
            n = min(len(payload), (room // 4) * 3)
            return dataclasses.replace(empty, raw=base64.b64encode(payload[:n]).decode("ascii"))
        text = self.raw

        def size(k: int) -> int:  # encoded bytes of text[:k] inside the letter's JSON
            return len(json.dumps(text[:k])) - 2

        lo, hi = min(len(text), room // 12), min(len(text), room)  # 12: the worst escape (an astral char)
        while lo < hi:  # largest k with size(k) <= room
            mid = (lo + hi + 1) // 2
            if size(mid) <= room:
                lo = mid
            else:
                hi = mid - 1
        return dataclasses.replace(empty, raw=text[:lo])

    @staticmethod
    def key_for(key: bytes | None, max_key_bytes: int = MAX_DLQ_KEY_BYTES) -> bytes | None:
        """The Kafka key of a dead letter: the record's key, or ``sha256:<hex>`` of it when longer than ``max_key_bytes``."""
        if key is None or len(key) <= max_key_bytes:
            return key
        return b"sha256:" + hashlib.sha256(key).hexdigest().encode("ascii")


# --------------------------------------------------------------------------- validation
#
# The contract, for any bytes: parse_input/parse_label return a valid event or raise InvalidRecord
# with exactly one reason of REASONS; nothing else escapes (no RecursionError, MemoryError aside).
# Both have a fast path (msgspec, below) and a full path (json + checks in Python); the full path is
# the reference: the fast path returns an event only when it is sure the full path returns the same
# event, else it hands the record over (tests/test_events_fast_path.py, bench/validator_fuzz.py).
#
# Rules beyond the JSON shape (docs/design.md's event contract):
# * nesting: JSON nested deeper than MAX_NESTING anywhere (unknown fields too) -> ``too_deep``;
# * strings kept in the event (ids, names, feature names and values, entity, prediction, label) are
#   Unicode scalar values: a lone surrogate from a ``\ud800`` escape -> ``not_utf8``;
# * model and version names follow the name pattern (see MAX_NAME_LEN) -> ``bad_name``;
# * an event time more than ``max_future_s`` ahead of ``now`` (default: the wall clock) -> ``future``.


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)`` for driftloop's records: numpy scalars and arrays, paths,
    dataclasses and objects with ``to_dict``."""
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
