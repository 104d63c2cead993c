"""Event contracts (DESIGN.md): typed records and their validation.

Every record on a driftloop topic is one UTF-8 JSON object.  ``parse_input`` and
``parse_label`` turn raw bytes into typed events or raise :class:`InvalidRecord`
with one machine-readable ``reason`` and a message that says what is wrong and
how to fix it.  They never raise anything else, whatever the bytes are.

>>> ev = parse_input(b'{"event_id": "e1", "model": "fraud", "model_version": 3, '
...                  b'"ts": "2025-11-26T00:00:00Z", "features": {"amount": 12.5, "country": "DE"}}')
>>> ev.model_version, ev.ts
('3', 1764115200.0)
>>> try:
...     parse_input(b'{"event_id": "e1"}')
... except InvalidRecord as err:
...     print(err.reason)
missing_field
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import itertools
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
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
#: names are data, never file paths (references are looked up by a hash, streams/reference_store.py).
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


# Inputs and labels are msgspec Structs, not dataclasses: the validator's fast path decodes JSON
# straight into them, with the contract's limits as field constraints (see _fast_input below).
# Constructing one directly does not check anything; use parse_input/parse_label for untrusted data.
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LEN)]
_Ts = Annotated[float, msgspec.Meta(ge=MIN_TS, le=MAX_TS)]
_Str = Annotated[str, msgspec.Meta(max_length=MAX_STRING_VALUE_LEN)]


class InferenceEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    event_id: _Id
    model: _Id
    model_version: _Id
    ts: _Ts
    features: Annotated[dict[str, Union[float, _Str, None]], msgspec.Meta(min_length=1, max_length=MAX_FEATURES)]
    entity: Union[dict[str, Union[str, int]], None] = None
    prediction: Union[float, str, None] = None
    scores: Union[Annotated[tuple[float, ...], msgspec.Meta(min_length=1)], None] = None

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
        return d


class LabelEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
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

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if self.scores is not None:
            d["scores"] = list(self.scores)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LabelledExample":
        ev = _input_from_obj(d)
        label = _label_value(d)
        return cls(ev.event_id, ev.model, ev.model_version, ev.ts, ev.features, label, ev.prediction, ev.scores, ev.entity)


ALERT_KINDS = ("data_drift", "prediction_drift", "performance", "concept_drift", "parity")
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
    """One finding, in the DESIGN.md alert schema (plus optional ``explained_by``/``details``)."""

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


def retrain_request_id(model: str, model_version: str, alert_ids: list[str]) -> str:
    key = json.dumps([model, str(model_version), sorted(alert_ids)])
    return "rr-" + hashlib.sha256(key.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class RetrainRequest:
    """Published by the retrain policy on the retrain-requests topic; idempotent by ``request_id``."""

    model: str
    model_version: str
    alert_ids: list[str]
    kinds: list[str]
    window_start: float
    window_end: float
    n_labelled: int = 0
    reason: str = ""
    requested_at: float = field(default_factory=time.time)
    request_id: str = ""

    def __post_init__(self) -> None:
        if not self.request_id:
            object.__setattr__(self, "request_id", retrain_request_id(self.model, self.model_version, self.alert_ids))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RetrainRequest":
        try:
            return cls(
                model=str(d["model"]),
                model_version=str(d["model_version"]),
                alert_ids=[str(a) for a in d.get("alert_ids", [])],
                kinds=[str(k) for k in d.get("kinds", [])],
                window_start=float(d["window_start"]),
                window_end=float(d["window_end"]),
                n_labelled=int(d.get("n_labelled", 0)),
                reason=str(d.get("reason", "")),
                requested_at=float(d.get("requested_at", 0.0)),
                request_id=str(d.get("request_id", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidRecord("missing_field" if isinstance(exc, KeyError) else "wrong_type",
                                f"not a retrain request: {exc!r}; see RetrainRequest in streams/events.py") from None


RETRAIN_STATUSES = ("submitted", "running", "succeeded", "rejected", "failed", "duplicate")


@dataclass(frozen=True)
class RetrainResult:
    """Published by the dispatcher on the retrain-results topic."""

    request_id: str
    model: str
    parent_version: str
    status: str
    job_id: str | None = None
    new_version: str | None = None
    promoted: bool = False
    attempts: int = 1
    error: str | None = None
    report: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=json_default)


@dataclass(frozen=True)
class ModelUpdate:
    """Published on the model-updates topic when a version is promoted or rolled back."""

    model: str
    version: str
    previous_version: str | None
    action: str  # "promote" | "rollback"
    sha256: str
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


# --------------------------------------------------------------------------- validation
#
# The contract, for any bytes: parse_input/parse_label return a valid event or raise InvalidRecord
# with exactly one reason of REASONS; nothing else escapes (no RecursionError, MemoryError aside).
# Both have a fast path (msgspec, below) and a full path (json + checks in Python); the full path is
# the reference: the fast path returns an event only when it is sure the full path returns the same
# event, else it hands the record over (tests/test_events_fast_path.py, bench/validator_fuzz.py).
#
# Rules beyond the JSON shape (DESIGN.md's event contract):
# * nesting: JSON nested deeper than MAX_NESTING anywhere (unknown fields too) -> ``too_deep``;
# * strings kept in the event (ids, names, feature names and values, entity, prediction, label) are
#   Unicode scalar values: a lone surrogate from a ``\ud800`` escape -> ``not_utf8``;
# * model and version names follow the name pattern (see MAX_NAME_LEN) -> ``bad_name``;
# * an event time more than ``max_future_s`` ahead of ``now`` (default: the wall clock) -> ``future``.

_OPENERS = (b"[", b"{")
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_BRACKET_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _BRACKET_STEP)


def json_depth(data: bytes) -> int:
    """Deepest bracket nesting of JSON text ``data`` (brackets inside strings do not count).

    Cheap for ordinary records: when there are at most MAX_NESTING opening brackets in all, the
    depth cannot exceed it and the text is not scanned."""
    openers = data.count(b"[") + data.count(b"{")
    if openers <= MAX_NESTING:
        return openers
    brackets = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    return max(itertools.accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0)


def _check_depth(data: bytes) -> None:
    depth = json_depth(data)
    if depth > MAX_NESTING:
        raise InvalidRecord("too_deep", f"JSON is nested {depth} levels deep, over the limit of {MAX_NESTING}; "
                                        "send flat records (unknown fields count too)")


def decode_json(raw: bytes | bytearray | memoryview | str | None, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, Any]:
    """Bytes -> JSON object, or :class:`InvalidRecord` saying why not."""
    if raw is None:
        raise InvalidRecord("not_json", "empty message (null value); producers must send one JSON object per message")
    if isinstance(raw, str):
        data = raw.encode("utf-8", "surrogatepass")
    else:
        data = bytes(raw)
    if len(data) > max_bytes:
        raise InvalidRecord(
            "too_large", f"payload is {len(data)} bytes, over the limit of {max_bytes}; send fewer features or raise max_bytes"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRecord("not_utf8", f"payload is not UTF-8 (byte {exc.start}); encode JSON as UTF-8") from None
    if not text.strip():
        raise InvalidRecord("not_json", "empty message; producers must send one JSON object per message")
    _check_depth(data)
    try:
        obj = json.loads(text, parse_constant=_reject_constant, parse_int=_parse_int)
    except InvalidRecord:
        raise
    except RecursionError:  # not expected after _check_depth; never let it escape
        raise InvalidRecord("too_deep", "JSON is nested too deeply; send flat records") from None
    except (ValueError, TypeError) as exc:
        raise InvalidRecord("not_json", f"payload is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidRecord("not_object", f"payload must be a JSON object, got {_json_type(obj)}")
    return obj


def parse_input(raw: bytes | str | Mapping[str, Any], max_bytes: int = DEFAULT_MAX_BYTES, *,
                now: float | None = None, max_future_s: float | None = DEFAULT_MAX_FUTURE_S) -> InferenceEvent:
    """Validate one inference-input record (bytes, text, or an already decoded mapping).

    ``now`` (default: the wall clock) and ``max_future_s`` (None: no check) bound the event time."""
    if max_future_s is not None and now is None:
        now = time.time()
    if isinstance(raw, (bytes, bytearray)) and len(raw) <= max_bytes:
        try:
            ev = _fast_input(_INPUT_DECODER.decode(raw), now, max_future_s)
            if ev is not None:
                return ev
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            pass  # not the common well-formed shape: the full validator says exactly why
    return _parse_input_full(raw, max_bytes, now=now, max_future_s=max_future_s)


def _parse_input_full(raw: bytes | str | Mapping[str, Any], max_bytes: int = DEFAULT_MAX_BYTES, *,
                      now: float | None = None, max_future_s: float | None = None) -> InferenceEvent:
    try:
        obj = raw if isinstance(raw, Mapping) else decode_json(raw, max_bytes)
        return _input_from_obj(obj, now, max_future_s)
    except InvalidRecord:
        raise
    except RecursionError:
        raise InvalidRecord("too_deep", "record is nested too deeply; send flat records") from None
    except Exception as exc:  # defensive: the contract is "never raise anything else"
        raise InvalidRecord("bad_value", f"record could not be read: {exc!r}"[:500]) from None


def parse_label(raw: bytes | str | Mapping[str, Any], max_bytes: int = DEFAULT_MAX_BYTES, *,
                now: float | None = None, max_future_s: float | None = DEFAULT_MAX_FUTURE_S) -> LabelEvent:
    """Validate one label record (``now``/``max_future_s`` as in :func:`parse_input`)."""
    if max_future_s is not None and now is None:
        now = time.time()
    if isinstance(raw, (bytes, bytearray)) and len(raw) <= max_bytes:
        try:
            lab = _fast_label(_LABEL_DECODER.decode(raw), now, max_future_s)
            if lab is not None:
                return lab
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            pass
    return _parse_label_full(raw, max_bytes, now=now, max_future_s=max_future_s)


def _parse_label_full(raw: bytes | str | Mapping[str, Any], max_bytes: int = DEFAULT_MAX_BYTES, *,
                      now: float | None = None, max_future_s: float | None = None) -> LabelEvent:
    try:
        obj = raw if isinstance(raw, Mapping) else decode_json(raw, max_bytes)
        event_id = _id(obj, "event_id")
        model = _name(obj, "model")
        ts = _not_future(parse_timestamp(_required(obj, "ts"), "ts"), now, max_future_s)
        label = _label_value(obj)
        version = None if obj.get("model_version") is None else _name(obj, "model_version")
        return LabelEvent(event_id, model, ts, label, version)
    except InvalidRecord:
        raise
    except RecursionError:
        raise InvalidRecord("too_deep", "record is nested too deeply; send flat records") from None
    except Exception as exc:  # defensive
        raise InvalidRecord("bad_value", f"record could not be read: {exc!r}"[:500]) from None


# Fast path: msgspec decodes the common shape straight into the event, checking the contract's
# limits in C (string ids, numeric epoch ``ts``, finite numbers, lengths, valid UTF-8 and no lone
# surrogate escapes): ~3.5x faster than json.loads plus the checks below.  Anything it refuses
# (integer ids, ISO times, booleans, bad JSON...) goes through the full validator, which gives the
# exact reason.  The events forbid unknown fields, so a record the fast path accepts holds only
# known fields: every byte was decoded (UTF-8 checked throughout) and its nesting is at most 2 (the
# types bound it), so no depth or UTF-8 pre-check is needed; records with extra fields are valid but
# take the full path.  tests/test_events_fast_path.py and bench/validator_fuzz.py check that both
# paths accept the same records with the same result.
_INPUT_DECODER = msgspec.json.Decoder(InferenceEvent)
_LABEL_DECODER = msgspec.json.Decoder(LabelEvent)


def _fast_input(ev: InferenceEvent, now: float | None = None, max_future_s: float | None = None) -> InferenceEvent | None:
    f = ev.features  # feature names are checked here: 3x cheaper than a msgspec key constraint
    if "" in f or max(map(len, f)) > MAX_ID_LEN:
        return None
    if not (_name_ok(ev.model) and _name_ok(ev.model_version)):
        return None
    if max_future_s is not None and ev.ts > now + max_future_s:
        return None
    return ev


def _fast_label(lab: LabelEvent, now: float | None = None, max_future_s: float | None = None) -> LabelEvent | None:
    if not _name_ok(lab.model) or (lab.model_version is not None and not _name_ok(lab.model_version)):
        return None
    if max_future_s is not None and lab.ts > now + max_future_s:
        return None
    return lab


def is_valid_name(name: Any) -> bool:
    """Whether ``name`` is a valid model or version name (see MAX_NAME_LEN for the pattern)."""
    return isinstance(name, str) and _name_ok(name)


def _name_ok(s: str) -> bool:
    # isprintable() is False for every lone surrogate, control and format character, and every
    # whitespace but the ASCII space
    return 0 < len(s) <= MAX_NAME_LEN and s.isprintable() and s[0] != " " and s[-1] != " "


def _not_future(ts: float, now: float | None, max_future_s: float | None, name: str = "ts") -> float:
    if max_future_s is not None and ts > now + max_future_s:
        raise InvalidRecord(
            "future", f"'{name}'={ts} is {ts - now:.0f} s ahead of the worker's clock (limit {max_future_s:g} s); "
                      "fix the producer's clock or time zone (send UTC)"
        )
    return ts


def parse_timestamp(value: Any, name: str = "ts") -> float:
    """Epoch seconds (number) or ISO 8601 text -> epoch seconds (naive ISO times are UTC)."""
    if isinstance(value, bool) or value is None:
        raise InvalidRecord("bad_timestamp", f"'{name}' must be epoch seconds or ISO 8601 text, got {_json_type(value)}")
    if isinstance(value, (int, float)):
        try:
            ts = float(value)
        except OverflowError:
            raise InvalidRecord("bad_timestamp", f"'{name}' is out of range; send epoch seconds") from None
    elif isinstance(value, str):
        text = value.strip()
        try:
            ts = float(text)
        except ValueError:
            try:
                dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            except ValueError:
                raise InvalidRecord(
                    "bad_timestamp", f"'{name}' {_show(value)} is neither epoch seconds nor ISO 8601 (e.g. 2025-11-26T08:00:00Z)"
                ) from None
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone.utc)
            try:
                ts = dt.timestamp()
            except (OverflowError, OSError, ValueError):
                raise InvalidRecord("bad_timestamp", f"'{name}' {_show(value)} is out of range") from None
    else:
        raise InvalidRecord("bad_timestamp", f"'{name}' must be epoch seconds or ISO 8601 text, got {_json_type(value)}")
    if not math.isfinite(ts) or not (MIN_TS <= ts <= MAX_TS):
        raise InvalidRecord(
            "bad_timestamp", f"'{name}'={_show(value)} is outside 1970..2500; send epoch seconds (not milliseconds) or ISO 8601"
        )
    return ts


def _input_from_obj(obj: Mapping[str, Any], now: float | None = None, max_future_s: float | None = None) -> InferenceEvent:
    event_id = _id(obj, "event_id")
    model = _name(obj, "model")
    version = _name(obj, "model_version")
    ts = _not_future(parse_timestamp(_required(obj, "ts"), "ts"), now, max_future_s)
    raw_features = _required(obj, "features")
    if not isinstance(raw_features, dict):
        raise InvalidRecord("wrong_type", f"'features' must be an object of name -> value, got {_json_type(raw_features)}")
    if not raw_features:
        raise InvalidRecord("bad_value", "'features' is empty; send at least one feature")
    if len(raw_features) > MAX_FEATURES:
        raise InvalidRecord("too_large", f"'features' has {len(raw_features)} entries, over the limit of {MAX_FEATURES}")
    features: dict[str, FeatureValue] = {}
    for name, value in raw_features.items():
        if not name or len(name) > MAX_ID_LEN:
            raise InvalidRecord("bad_value", f"feature name {_show(name, 40)} must be 1..{MAX_ID_LEN} characters")
        _scalar_values(name, "feature name")
        features[name] = _feature_value(name, value)
    entity = obj.get("entity")
    if entity is not None:
        if not isinstance(entity, dict):
            raise InvalidRecord("wrong_type", f"'entity' must be an object of key -> id, got {_json_type(entity)}")
        for k, v in entity.items():
            _scalar_values(k, "entity key")
            if isinstance(v, bool) or not isinstance(v, (str, int)):
                raise InvalidRecord("wrong_type", f"entity key {_show(k, 40)} must be a string or integer id, got {_json_type(v)}")
            if isinstance(v, str):
                _scalar_values(v, f"entity {_show(k, 40)}")
        entity = dict(entity)
    prediction = obj.get("prediction")
    if prediction is not None:
        if isinstance(prediction, bool):
            prediction = float(prediction)
        elif isinstance(prediction, (int, float)):
            try:
                prediction = _finite(float(prediction), "prediction")
            except OverflowError:
                raise InvalidRecord("non_finite", "'prediction' is too large for a float") from None
        elif isinstance(prediction, str):
            _scalar_values(prediction, "'prediction'")
        else:
            raise InvalidRecord("wrong_type", f"'prediction' must be a number or string, got {_json_type(prediction)}")
    scores = obj.get("scores")
    if scores is not None:
        if not isinstance(scores, list) or not scores:
            raise InvalidRecord("wrong_type", f"'scores' must be a non-empty list of numbers, got {_json_type(scores)}")
        out = []
        for i, s in enumerate(scores):
            if isinstance(s, bool) or not isinstance(s, (int, float)):
                raise InvalidRecord("wrong_type", f"'scores[{i}]' must be a number, got {_json_type(s)}")
            try:
                out.append(_finite(float(s), f"scores[{i}]"))
            except OverflowError:
                raise InvalidRecord("non_finite", f"'scores[{i}]' is too large for a float") from None
        scores = tuple(out)
    return InferenceEvent(event_id, model, version, ts, features, entity, prediction, scores)


def _feature_value(name: str, value: Any) -> FeatureValue:
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidRecord("wrong_type", f"feature {_show(name, 40)} is a boolean; send 0/1 (numeric) or a string (categorical)")
    if isinstance(value, (int, float)):
        try:
            f = float(value)
        except OverflowError:
            raise InvalidRecord("non_finite", f"feature {_show(name, 40)} is too large for a float") from None
        return _finite(f, f"feature {_show(name, 40)}")
    if isinstance(value, str):
        if len(value) > MAX_STRING_VALUE_LEN:
            raise InvalidRecord("bad_value", f"feature {_show(name, 40)} is a string of {len(value)} characters (limit {MAX_STRING_VALUE_LEN})")
        _scalar_values(value, f"feature {_show(name, 40)}")
        return value
    raise InvalidRecord(
        "wrong_type", f"feature {_show(name, 40)} must be a number, a string (categorical) or null (missing), got {_json_type(value)}"
    )


def _label_value(obj: Mapping[str, Any]) -> float | str:
    label = _required(obj, "label")
    if isinstance(label, bool):
        return float(label)
    if isinstance(label, (int, float)):
        try:
            return _finite(float(label), "label")
        except OverflowError:
            raise InvalidRecord("non_finite", "'label' is too large for a float") from None
    if isinstance(label, str) and label:
        _scalar_values(label, "'label'")
        return label
    raise InvalidRecord("wrong_type", f"'label' must be a number or a non-empty string, got {_json_type(label)}")


def _required(obj: Mapping[str, Any], name: str) -> Any:
    if name not in obj or obj[name] is None:
        raise InvalidRecord("missing_field", f"required field '{name}' is missing; see the event contract in DESIGN.md")
    return obj[name]


def _id(obj: Mapping[str, Any], name: str) -> str:
    value = _required(obj, name)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidRecord("wrong_type", f"'{name}' must be a string (or integer), got {_json_type(value)}")
    text = value if isinstance(value, str) else _int_text(value, name)
    if not text or len(text) > MAX_ID_LEN:
        raise InvalidRecord("bad_value", f"'{name}' must be 1..{MAX_ID_LEN} characters, got {len(text)}")
    _scalar_values(text, f"'{name}'")
    return text


def _name(obj: Mapping[str, Any], name: str) -> str:
    """A model or version name: an id that also follows the name pattern (see MAX_NAME_LEN)."""
    text = _id(obj, name)
    if not _name_ok(text):
        raise InvalidRecord(
            "bad_name", f"'{name}' {_show(text, 40)} is not a valid name: 1..{MAX_NAME_LEN} printable characters, "
                        "no control characters (e.g. a trailing newline), no leading or trailing space"
        )
    return text


def _int_text(value: int, name: str) -> str:
    try:
        return str(value)
    except ValueError:  # more digits than int->str allows: far over MAX_ID_LEN anyway
        raise InvalidRecord("bad_value", f"'{name}' must be 1..{MAX_ID_LEN} characters") from None


def _scalar_values(s: str, what: str) -> None:
    """Strings must be Unicode scalar values: a lone surrogate (a ``\\ud800`` JSON escape) cannot be encoded."""
    if not s.isascii():
        try:
            s.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidRecord(
                "not_utf8", f"{what} holds a lone surrogate (U+{ord(s[exc.start]):04X}, from a JSON \\u escape) at "
                            f"character {exc.start}; strings must be valid Unicode"
            ) from None


def _show(value: Any, n: int = 64) -> str:
    """A short printable rendering of a value for messages (never fails, never huge)."""
    try:
        return ascii(value[:n] if isinstance(value, str) else value)[: n + 16]
    except Exception:  # pragma: no cover
        return "<unprintable>"


def _finite(value: float, what: str) -> float:
    if not math.isfinite(value):
        raise InvalidRecord("non_finite", f"{what} is {value}; send a finite number or null for missing")
    return value


def _parse_int(text: str) -> int | float:
    # Python refuses int() of more than 4300 digits (a CPython guard, not a JSON rule); such a number
    # is valid JSON (msgspec skips it in unknown fields) and far beyond any float: make it +-inf, which
    # the checks reject as non_finite (or wrong_type) wherever it is kept.
    try:
        return int(text)
    except ValueError:
        return float("-inf") if text.startswith("-") else float("inf")


def _reject_constant(name: str) -> Any:
    raise InvalidRecord("non_finite", f"JSON contains {name}, which is not valid JSON; send null for missing values")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


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
