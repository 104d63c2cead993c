"""Typed keys: how a (model, version) or a window is named in state, tables and Kafka messages.

Any model and version string the validator accepts round-trips unchanged, whatever
characters it holds (``fraud|eu``, ``a"b``, unicode): a key is encoded as a compact JSON
array, never joined with a separator and split again.

>>> k = ModelKey("fraud|eu", "3")
>>> k.encode()
'["fraud|eu","3"]'
>>> ModelKey.decode(k.encode()) == k
True
>>> decode_parts('["m","1",0.0,60.0]', 4)
['m', '1', 0.0, 60.0]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

_SEPARATORS = (",", ":")


def encode_parts(*parts: Any) -> str:
    """``parts`` (strings and numbers) -> one compact JSON array text; inverse of :func:`decode_parts`."""
    return json.dumps(list(parts), ensure_ascii=False, separators=_SEPARATORS)


def decode_parts(text: str | bytes, arity: int) -> list[Any]:
    """The parts of an :func:`encode_parts` key; ``ValueError`` when ``text`` is not a key of ``arity`` parts."""
    try:
        parts = json.loads(text)
    except (TypeError, ValueError):
        raise ValueError(f"not a key: {text!r}") from None
    if not isinstance(parts, list) or len(parts) != arity:
        raise ValueError(f"not a key of {arity} parts: {text!r}")
    return parts


@dataclass(frozen=True, slots=True, order=True)
class ModelKey:
    """One (model, version): the unit the worker aggregates, judges and retrains."""

    model: str
    version: str

    def encode(self) -> str:
        return encode_parts(self.model, self.version)

    @classmethod
    def decode(cls, text: str | bytes) -> "ModelKey":
        model, version = decode_parts(text, 2)
        if not isinstance(model, str) or not isinstance(version, str):
            raise ValueError(f"not a model key: {text!r}")
        return cls(model, version)

    def __str__(self) -> str:
        return f"{self.model} v{self.version}"


def model_key(model: str, version: str) -> str:
    """Encoded :class:`ModelKey` of ``model``/``version`` (the form stored in state dicts)."""
    return encode_parts(model, version)


__all__ = ["ModelKey", "model_key", "encode_parts", "decode_parts"]
