"""Bytes to one JSON object, or one :class:`InvalidRecord` saying why not (``too_large``, ``not_utf8``, ``not_json``,
``too_deep``, ``non_finite``, ``not_object``): the first step of the validator's full path
(:mod:`streams.contracts.validate`)."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

from streams.contracts.events import DEFAULT_MAX_BYTES, MAX_NESTING, InvalidRecord

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
