"""The validator: any bytes become a typed event or one :class:`InvalidRecord` with its reason.

A msgspec fast path decodes the common record shape straight into the typed events; anything it
refuses goes to the full path, which gives the exact reason (``not_utf8``, ``not_json``, ``too_large``,
``too_deep``, ``not_object``, ``missing_field``, ``wrong_type``, ``non_finite``, ``bad_timestamp``,
``future``, ``bad_name``, ``bad_value``).  Both paths accept the same records (property tests and
``bench/validator_fuzz.py``); no input raises anything else.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import operator
import re
import time
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

import msgspec

from streams.contracts.events import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_FUTURE_S,
    MAX_FEATURES,
    MAX_ID_LEN,
    MAX_NAME_LEN,
    MAX_NESTING,
    MAX_STRING_VALUE_LEN,
    MAX_TS,
    MIN_TS,
    FeatureValue,
    InferenceEvent,
    InvalidRecord,
    LabelEvent,
)

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


def parse_inputs(raws: "Sequence[bytes]", max_bytes: int = DEFAULT_MAX_BYTES, *, now: float | None = None,
                 max_future_s: float | None = DEFAULT_MAX_FUTURE_S) -> "list[InferenceEvent | InvalidRecord]":
    """:func:`parse_input` over a micro-batch: one event or one :class:`InvalidRecord` per record, in order
    (the same verdicts; the common shape is decoded without a Python call per record)."""
    return parse_input_batch(raws, max_bytes, now=now, max_future_s=max_future_s)[0]


def parse_input_batch(raws: "Sequence[bytes]", max_bytes: int = DEFAULT_MAX_BYTES, *, now: float | None = None,
                      max_future_s: float | None = DEFAULT_MAX_FUTURE_S
                      ) -> "tuple[list[InferenceEvent | InvalidRecord], set[tuple[str, str]] | None]":
    """:func:`parse_inputs`, and the set of (model, model_version) of the batch when every record is valid
    (None when some are not).

    The usual batch (every record bytes within ``max_bytes``, of the fast path's shape, not in the future, with
    valid names) is decoded by one C-level ``map`` and checked in bulk: the event times by their maximum, the
    names once per distinct (model, version).  Otherwise (or when any record fails there) every record goes
    through the per-record path below, which gives each one its verdict."""
    if max_future_s is not None and now is None:
        now = time.time()
    limit = math.inf if max_future_s is None else now + max_future_s
    if raws and len(set(map(type, raws))) == 1 and raws[0].__class__ is bytes and max(map(len, raws)) <= max_bytes:
        try:
            evs = list(map(_INPUT_DECODER.decode, raws))
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            evs = None
        if evs is not None and max(map(_TS, evs)) <= limit and _feature_names_ok(set().union(*map(_FEATURES, evs))):
            keys = set(map(_MODEL_VERSION, evs))
            if all(_names_ok(m, v) for m, v in keys):
                return evs, keys
    decode, names_ok, feature_names_ok = _INPUT_DECODER.decode, _names_ok, _feature_names_ok
    out: list = []
    add = out.append
    for raw in raws:
        if raw.__class__ is bytes and len(raw) <= max_bytes:
            try:
                ev = decode(raw)
                if ev.ts <= limit and names_ok(ev.model, ev.model_version) and feature_names_ok(ev.features):
                    add(ev)
                    continue
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                pass
        try:
            add(_parse_input_full(raw, max_bytes, now=now, max_future_s=max_future_s))
        except InvalidRecord as err:
            add(err)
    return out, (None if raws else set())


_TS = operator.attrgetter("ts")
_MODEL_VERSION = operator.attrgetter("model", "model_version")
_FEATURES = operator.attrgetter("features")


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
    if not _names_ok(ev.model, ev.model_version) or not _feature_names_ok(ev.features):
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


def _feature_names_ok(names: "Iterable[str]") -> bool:
    """Feature names of 1..MAX_ID_LEN characters (what the full path's _input_from_obj accepts; msgspec
    already refused lone surrogates in them).  A batch passes the set of its distinct names: msgspec's key
    cache makes repeated names one object, so the set is built without comparing strings."""
    return all(0 < len(k) <= MAX_ID_LEN for k in names)


def is_valid_name(name: Any) -> bool:
    """Whether ``name`` is a valid model or version name (see MAX_NAME_LEN for the pattern)."""
    return isinstance(name, str) and _name_ok(name)


@functools.lru_cache(maxsize=4096)  # a model's names repeat on every record: checked once per pair
def _names_ok(model: str, version: str) -> bool:
    return _name_ok(model) and _name_ok(version)


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
        raise InvalidRecord("missing_field", f"required field '{name}' is missing; see the event contract in docs/design.md")
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
