"""The validator: any bytes become a typed event or one :class:`InvalidRecord` with its reason.

A msgspec fast path decodes the common record shape straight into the typed events; anything it
refuses goes to the full path, which gives the exact reason (``not_utf8``, ``not_json``, ``too_large``,
``too_deep``, ``not_object``, ``missing_field``, ``wrong_type``, ``non_finite``, ``bad_timestamp``,
``future``, ``bad_name``, ``bad_value``).  Both paths accept the same records (property tests and
``bench/validator_fuzz.py``); no input raises anything else.
"""

from __future__ import annotations

import functools
import math
import operator
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
    MAX_STRING_VALUE_LEN,
    MAX_TS,
    MIN_TS,
    FeatureValue,
    InferenceEvent,
    InvalidRecord,
    LabelEvent,
    ShadowPrediction,
)
from streams.contracts.decode import _json_type, decode_json, json_depth  # noqa: F401 (json_depth: re-exported)


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
            if all(_names_ok(m, v) for m, v in keys) and _shadow_names_ok(evs):
                return evs, keys
    decode, names_ok, feature_names_ok = _INPUT_DECODER.decode, _names_ok, _feature_names_ok
    out: list = []
    add = out.append
    for raw in raws:
        if raw.__class__ is bytes and len(raw) <= max_bytes:
            try:
                ev = decode(raw)
                if (ev.ts <= limit and names_ok(ev.model, ev.model_version) and feature_names_ok(ev.features)
                        and (ev.shadow is None or _name_ok_cached(ev.shadow.model_version))):
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
_SHADOW = operator.attrgetter("shadow")


def _shadow_names_ok(evs: "Sequence[InferenceEvent]") -> bool:
    """Shadow versions follow the name rule.  Only the batch's shadows are looked at (a C-level filter: nothing is done
    in Python for an event without one; a Struct is always true)."""
    return all(_name_ok_cached(s.model_version) for s in filter(None, map(_SHADOW, evs)))


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
# known fields: every byte was decoded (UTF-8 checked throughout) and its nesting is at most 3 (the
# types bound it: the object, ``shadow``, its ``scores``), so no depth or UTF-8 pre-check is needed; records with extra fields are valid but
# take the full path.  tests/test_events_fast_path.py and bench/validator_fuzz.py check that both
# paths accept the same records with the same result.
_INPUT_DECODER = msgspec.json.Decoder(InferenceEvent)


_LABEL_DECODER = msgspec.json.Decoder(LabelEvent)


def _fast_input(ev: InferenceEvent, now: float | None = None, max_future_s: float | None = None) -> InferenceEvent | None:
    if not _names_ok(ev.model, ev.model_version) or not _feature_names_ok(ev.features):
        return None
    if ev.shadow is not None and not _name_ok_cached(ev.shadow.model_version):
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


_name_ok_cached = functools.lru_cache(maxsize=4096)(_name_ok)  # shadow versions: a few names on every record


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
    prediction = _prediction_value(obj.get("prediction"), "prediction")
    scores = _scores_value(obj.get("scores"), "scores")
    return InferenceEvent(event_id, model, version, ts, features, entity, prediction, scores, _shadow_value(obj.get("shadow")))


def _prediction_value(prediction: Any, name: str) -> float | str | None:
    """A prediction (``name``: where it is, for the message): a number (booleans count as 0/1), a string or null."""
    if prediction is None:
        return None
    if isinstance(prediction, bool):
        return float(prediction)
    if isinstance(prediction, (int, float)):
        try:
            return _finite(float(prediction), name)
        except OverflowError:
            raise InvalidRecord("non_finite", f"'{name}' is too large for a float") from None
    if isinstance(prediction, str):
        _scalar_values(prediction, f"'{name}'")
        return prediction
    raise InvalidRecord("wrong_type", f"'{name}' must be a number or string, got {_json_type(prediction)}")


def _scores_value(scores: Any, name: str) -> tuple[float, ...] | None:
    """Scores (``name``: where they are): a non-empty list of finite numbers, or null."""
    if scores is None:
        return None
    if not isinstance(scores, list) or not scores:
        raise InvalidRecord("wrong_type", f"'{name}' must be a non-empty list of numbers, got {_json_type(scores)}")
    out = []
    for i, s in enumerate(scores):
        if isinstance(s, bool) or not isinstance(s, (int, float)):
            raise InvalidRecord("wrong_type", f"'{name}[{i}]' must be a number, got {_json_type(s)}")
        try:
            out.append(_finite(float(s), f"{name}[{i}]"))
        except OverflowError:
            raise InvalidRecord("non_finite", f"'{name}[{i}]' is too large for a float") from None
    return tuple(out)


def _shadow_value(shadow: Any) -> ShadowPrediction | None:
    """The optional ``shadow`` object: a version's name and its prediction/scores, by the top-level rules (unknown
    fields inside it are ignored, as at the top level)."""
    if shadow is None:
        return None
    if not isinstance(shadow, dict):
        raise InvalidRecord("wrong_type", "'shadow' must be an object {\"model_version\", \"prediction\", \"scores\"} "
                                          f"(the prediction of the version served in shadow) or null, got {_json_type(shadow)}")
    return ShadowPrediction(_name(shadow, "model_version", "shadow.model_version"),
                            _prediction_value(shadow.get("prediction"), "shadow.prediction"),
                            _scores_value(shadow.get("scores"), "shadow.scores"))


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


def _required(obj: Mapping[str, Any], name: str, label: str | None = None) -> Any:
    """``obj[name]`` (``label``: the field's path in messages, default ``name``)."""
    if name not in obj or obj[name] is None:
        raise InvalidRecord("missing_field", f"required field '{label or name}' is missing; see the event contract in docs/design.md")
    return obj[name]


def _id(obj: Mapping[str, Any], name: str, label: str | None = None) -> str:
    value = _required(obj, name, label)
    name = label or name
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidRecord("wrong_type", f"'{name}' must be a string (or integer), got {_json_type(value)}")
    text = value if isinstance(value, str) else _int_text(value, name)
    if not text or len(text) > MAX_ID_LEN:
        raise InvalidRecord("bad_value", f"'{name}' must be 1..{MAX_ID_LEN} characters, got {len(text)}")
    _scalar_values(text, f"'{name}'")
    return text


def _name(obj: Mapping[str, Any], name: str, label: str | None = None) -> str:
    """A model or version name: an id that also follows the name pattern (see MAX_NAME_LEN)."""
    text = _id(obj, name, label)
    name = label or name
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
