"""Training/serving parity by value and by window: one served value against the store's, per-feature
tallies, and the mergeable window records the checker keeps.

A numeric value matches when ``|served - stored| <= atol + rtol * |stored|``; a categorical
(string) value when equal; null against a value is a mismatch (``served_missing`` or
``store_missing``); a number against a string is a mismatch (``type``).  Columns are compared
vectorised over a micro-batch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from streams.contracts.keys import decode_parts, encode_parts

#: reason codes of :func:`compare_codes` (0 = match)
CODES = (None, "value", "type", "served_missing", "store_missing")


METRIC_MISMATCH = "mismatch_rate"
METRIC_NOT_IN_STORE = "schema_not_in_store"
METRIC_NOT_IN_STREAM = "schema_not_in_stream"
METRIC_UNKNOWN = "parity_unknown"


_NUMERIC_TYPES = frozenset({float, int, type(None)})


_STRING_TYPES = frozenset({str, type(None)})


_NONE = type(None)


def compare_codes(served: Sequence[Any], stored: Sequence[Any], rtol: float, atol: float) -> np.ndarray:
    """Mismatch code per position (index into :data:`CODES`; 0 = match), vectorised.

    All-numeric and all-string columns (nulls allowed) take numpy fast paths; mixed
    columns are compared value by value with the same rules.
    """
    n = len(served)
    ts, tt = set(map(type, served)), set(map(type, stored))
    if ts <= _NUMERIC_TYPES and tt <= _NUMERIC_TYPES:
        a = np.array(served, dtype=float)
        b = np.array(stored, dtype=float)
        na, nb = np.isnan(a), np.isnan(b)
        codes = np.zeros(n, dtype=np.int8)
        with np.errstate(invalid="ignore"):
            codes[~na & ~nb & ~(np.abs(a - b) <= atol + rtol * np.abs(b))] = 1
        codes[na & ~nb] = 3
        codes[~na & nb] = 4
        return codes
    if ts <= _STRING_TYPES and tt <= _STRING_TYPES:
        a = np.array(served, dtype=object)
        b = np.array(stored, dtype=object)
        na, nb = np.equal(a, None), np.equal(b, None)
        codes = np.zeros(n, dtype=np.int8)
        codes[~na & ~nb & (a != b)] = 1
        codes[na & ~nb] = 3
        codes[~na & nb] = 4
        return codes
    return np.array([_compare_one(x, y, rtol, atol) for x, y in zip(served, stored)], dtype=np.int8)


def _compare_one(s: Any, t: Any, rtol: float, atol: float) -> int:
    s = None if isinstance(s, float) and math.isnan(s) else s  # NaN is missing, as in the fast path
    t = None if isinstance(t, float) and math.isnan(t) else t
    s_num = isinstance(s, (int, float)) and not isinstance(s, bool)
    t_num = isinstance(t, (int, float)) and not isinstance(t, bool)
    if s is None or t is None:
        return 0 if s is t else (3 if s is None else 4)
    if s_num and t_num:
        return 0 if abs(s - t) <= atol + rtol * abs(t) else 1
    if s_num or t_num:
        return 2
    return 0 if s == t else 1


def compare_column(served: Sequence[Any], stored: Sequence[Any], rtol: float, atol: float) -> list[str | None]:
    """Reason of mismatch per position (``None`` = match).

    >>> compare_column([1.0, 2.0, None, "DE", "DE", 5.0, None], [1.00001, 3.0, 1.0, "DE", "FR", "x", None], 1e-4, 0)
    [None, 'value', 'served_missing', None, 'value', 'type', None]
    """
    return [CODES[c] for c in compare_codes(served, stored, rtol, atol)]


@dataclass
class FeatureTally:
    """Per window and feature: compared values, mismatches by reason, examples (mergeable)."""

    n: int = 0
    mismatches: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    #: sum and count of log10(|served / stored|) over numeric value mismatches
    log_ratio_sum: float = 0.0
    log_ratio_n: int = 0
    #: up to max_examples mismatches, the smallest event ids (so merging is order-free)
    examples: list[dict[str, Any]] = field(default_factory=list)

    def merge(self, other: "FeatureTally", max_examples: int) -> "FeatureTally":
        self.n += other.n
        self.mismatches += other.mismatches
        for k, v in other.reasons.items():
            self.reasons[k] = self.reasons.get(k, 0) + v
        self.log_ratio_sum += other.log_ratio_sum
        self.log_ratio_n += other.log_ratio_n
        self.examples = _merge_examples(self.examples, other.examples, max_examples)
        return self

    @property
    def rate(self) -> float:
        return self.mismatches / self.n if self.n else 0.0

    def typical_ratio(self) -> float | None:
        """Geometric mean of served/stored over numeric value mismatches (100.0 = scaled by 100)."""
        return 10 ** (self.log_ratio_sum / self.log_ratio_n) if self.log_ratio_n else None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FeatureTally":
        return cls(int(d["n"]), int(d["mismatches"]), dict(d["reasons"]), float(d["log_ratio_sum"]),
                   int(d["log_ratio_n"]), [dict(e) for e in d["examples"]])


@dataclass(frozen=True, order=True)
class ParityWindowKey:
    model: str
    model_version: str
    start: float
    end: float

    def to_str(self) -> str:
        return encode_parts(self.model, self.model_version, float(self.start), float(self.end))

    @classmethod
    def from_str(cls, s: str) -> "ParityWindowKey":
        m, v, a, b = decode_parts(s, 4)
        return cls(str(m), str(v), float(a), float(b))


@dataclass
class ParityWindow:
    """Everything one window of one model version accumulated (exactly mergeable)."""

    n_events: int = 0
    n_compared_events: int = 0
    n_unknown: int = 0
    n_no_entity: int = 0
    features: dict[str, FeatureTally] = field(default_factory=dict)
    #: feature -> events that sent it (schema parity)
    sent: dict[str, int] = field(default_factory=dict)

    def merge(self, other: "ParityWindow", max_examples: int) -> "ParityWindow":
        self.n_events += other.n_events
        self.n_compared_events += other.n_compared_events
        self.n_unknown += other.n_unknown
        self.n_no_entity += other.n_no_entity
        for f, t in other.features.items():
            mine = self.features.get(f)
            if mine is None:
                self.features[f] = FeatureTally.from_dict(t.to_dict())
            else:
                mine.merge(t, max_examples)
        for f, c in other.sent.items():
            self.sent[f] = self.sent.get(f, 0) + c
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_events": self.n_events,
            "n_compared_events": self.n_compared_events,
            "n_unknown": self.n_unknown,
            "n_no_entity": self.n_no_entity,
            "features": {f: t.to_dict() for f, t in self.features.items()},
            "sent": dict(self.sent),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ParityWindow":
        return cls(int(d["n_events"]), int(d["n_compared_events"]), int(d["n_unknown"]), int(d["n_no_entity"]),
                   {f: FeatureTally.from_dict(t) for f, t in d["features"].items()}, dict(d["sent"]))




def _merge_examples(a: list[dict[str, Any]], b: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for e in (*a, *b):
        seen.setdefault(str(e["event_id"]), e)
    return [seen[i] for i in sorted(seen)[: max(0, k)]]
