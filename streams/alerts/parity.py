"""Training/serving parity: served feature values against the feature store (pure, no I/O).

A model server that computes a feature differently from the feature store (a unit
change, a stale cache, a wrong join) produces "drift" that no retraining can fix.
:class:`ParityChecker` compares, event by event, each feature the server sent with the
value the store holds for the event's entity keys, and accumulates per event-time
window and feature:

- a numeric value matches when ``|served - stored| <= atol + rtol * |stored|``;
- a categorical (string) value matches when equal;
- null against a value is a mismatch (``served_missing`` or ``store_missing``);
- a number against a string is a mismatch (``type``).

A window is judged once the watermark (newest event time minus the allowed lateness)
passes its end.  A feature with at least ``min_samples`` compared values and a mismatch
rate above ``warning_rate`` (and binomially significant at ``alpha``) opens a parity
alert (kind ``"parity"``, metric ``"mismatch_rate"``) naming the feature, the rate, the
typical served/stored ratio and example entity keys.  One alert per open finding: it
closes after ``close_after`` clean judged windows.  Schema parity is judged per window
too: a feature sent that neither the store nor the model's request-time features know
(metric ``"schema_not_in_store"``), and a store feature of the model's service that no
event sent (``"schema_not_in_stream"``).

When the store cannot answer, :meth:`ParityChecker.unknown` counts the events and
raises one ``"parity_unknown"`` alert per model version until lookups succeed again.

:func:`explain` marks data-drift alerts on features with an open parity alert as
explained by it (``explained_by``), so that the retrain policy skips them.

>>> schema = ModelSchema(frozenset({"avg"}), frozenset({"amount"}))
>>> checker = ParityChecker(ParityConfig(window_seconds=10, allowed_lateness_s=0, min_samples=5,
...                                      schema_min_events=5), {("m", "1"): schema})
>>> evs = [InferenceEvent(f"e{i}", "m", "1", float(i), {"avg": 100.0 if i % 2 else 1.0, "amount": 3.0},
...                       {"customer_id": f"c-{i}"}) for i in range(10)]
>>> checker.ingest(evs, [{"avg": 1.0}] * 10)
[]
>>> alerts = checker.flush()
>>> [(a.kind, a.feature, a.metric, a.score) for a in alerts]
[('parity', 'avg', 'mismatch_rate', 0.5)]
>>> checker.open_alerts("m", "1") == {"avg": alerts[0].alert_id}
True
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter, itemgetter
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from scipy.stats import binom

from streams.alerts.parity_values import (
    CODES,
    METRIC_MISMATCH,
    METRIC_NOT_IN_STORE,
    METRIC_NOT_IN_STREAM,
    METRIC_UNKNOWN,
    FeatureTally,
    ParityWindow,
    ParityWindowKey,
    compare_codes,
)
from streams.contracts.events import (
    Alert,
    AlertReference,
    AlertWindow,
    InferenceEvent,
    make_alert_id,
)
from streams.judge.policy import Hysteresis, TrackState

REASONS = ("value", "type", "served_missing", "store_missing")
_ABSENT = object()
_ts = attrgetter("ts")


@dataclass(frozen=True)
class ParityConfig:
    """Thresholds of the parity check (the ``parity.checker`` config section)."""

    window_seconds: float = 60.0
    allowed_lateness_s: float = 10.0
    #: compared values of a feature in a window before any verdict ("insufficient" below)
    min_samples: int = 50
    #: mismatch rate above which a parity alert opens (warning) ...
    warning_rate: float = 0.02
    #: ... and at or above which it is critical
    critical_rate: float = 0.10
    #: significance of "rate > warning_rate" (one-sided binomial test)
    alpha: float = 0.01
    rtol: float = 1e-4
    atol: float = 1e-6
    max_examples: int = 5
    close_after: int = 3
    schema_checks: bool = True
    #: events in a window before schema parity is judged
    schema_min_events: int = 50

    def __post_init__(self) -> None:
        if self.window_seconds <= 0:
            raise ValueError("parity window_seconds must be > 0")
        if self.min_samples < 1 or self.schema_min_events < 1:
            raise ValueError("parity min_samples and schema_min_events must be >= 1")
        if not (0.0 <= self.warning_rate <= self.critical_rate <= 1.0):
            raise ValueError("parity rates must satisfy 0 <= warning_rate <= critical_rate <= 1")
        if self.rtol < 0 or self.atol < 0:
            raise ValueError("parity rtol and atol must be >= 0")


@dataclass(frozen=True)
class ModelSchema:
    """What the store knows about a model: the features of its service, and the
    request-time features it computes itself (legitimately absent from the store)."""

    store_features: frozenset[str]
    request_features: frozenset[str] = frozenset()
    #: cited as the alert's reference id, e.g. ``feast:driftloop_demo/fraud``
    source: str = "feast"


SchemaLookup = Callable[[str, str], "ModelSchema | None"]


# --------------------------------------------------------------------------- comparison


# --------------------------------------------------------------------------- accumulators


# --------------------------------------------------------------------------- checker


class ParityChecker:
    """Windows, gating and alerting of the parity check; see the module docstring.

    ``schemas`` maps ``(model, model_version)`` to :class:`ModelSchema`, or is a callable
    doing that lookup (``None`` = unknown model: values are still compared on the
    features present in both the event and the stored row, schema parity is skipped).
    """

    def __init__(self, config: ParityConfig | None = None,
                 schemas: Mapping[tuple[str, str], ModelSchema] | SchemaLookup | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config or ParityConfig()
        if schemas is None:
            self._schema: SchemaLookup = lambda m, v: None
        elif callable(schemas):
            self._schema = schemas
        else:
            table = dict(schemas)
            self._schema = lambda m, v: table.get((m, v))
        self._clock = clock
        self._windows: dict[ParityWindowKey, ParityWindow] = {}
        self._watermark: dict[tuple[str, str], float] = {}
        self._closed_before: dict[tuple[str, str], float] = {}
        # one open alert per (model, version, check, feature): the engine's hysteresis, opening at once
        self.hyst = Hysteresis(open_after=1, close_after=self.config.close_after)
        self._unknown: dict[tuple[str, str], str] = {}
        self.late_events = 0
        #: (model, version, feature) -> (mismatch rate, compared values) of the last judged window
        self.last_rates: dict[tuple[str, str, str], tuple[float, int]] = {}

    # -- accumulation (pure partials) ------------------------------------------------

    def window_of(self, model: str, version: str, ts: float) -> ParityWindowKey:
        ws = self.config.window_seconds
        start = math.floor(ts / ws) * ws
        return ParityWindowKey(model, version, float(start), float(start + ws))

    def accumulate(self, events: Sequence[InferenceEvent],
                   stored: Sequence[Mapping[str, Any] | None]) -> dict[ParityWindowKey, ParityWindow]:
        """Partial windows of one batch.  ``stored[i]`` is the store's row for ``events[i]``
        (feature -> value, ``None`` values for entities it does not know), or ``None`` when
        the event has no entity keys."""
        if len(events) != len(stored):
            raise ValueError(f"{len(events)} events but {len(stored)} stored rows; pass one row (or None) per event")
        cfg = self.config
        groups = self._group(events)
        out: dict[ParityWindowKey, ParityWindow] = {}
        for key, idx in groups.items():
            win = ParityWindow(n_events=len(idx))
            schema = self._schema(key.model, key.model_version)
            win.sent = dict(Counter(chain.from_iterable(events[i].features for i in idx)))
            cmp_idx = [i for i in idx if stored[i] is not None]
            win.n_no_entity = len(idx) - len(cmp_idx)
            win.n_compared_events = len(cmp_idx)
            if cmp_idx:
                feat_dicts = [events[i].features for i in cmp_idx]
                rows = [stored[i] for i in cmp_idx]
                if schema is not None:
                    feats = schema.store_features
                else:
                    feats = frozenset(chain.from_iterable(r.keys() for r in rows))  # type: ignore[union-attr]
                for f in sorted(feats):
                    get = itemgetter(f)
                    # fast path: every event sent f and every stored row has it; otherwise positions
                    # where the event did not send f, or no row of f's view was looked up, are skipped
                    try:
                        served = list(map(get, feat_dicts))
                        absent = False
                    except KeyError:
                        served = [d.get(f, _ABSENT) for d in feat_dicts]
                        absent = True
                    try:
                        stor = list(map(get, rows))
                    except KeyError:
                        stor = [r.get(f, _ABSENT) for r in rows]  # type: ignore[union-attr]
                        absent = True
                    pos = cmp_idx
                    if absent:
                        keep = [j for j, (x, y) in enumerate(zip(served, stor)) if x is not _ABSENT and y is not _ABSENT]
                        if not keep:
                            continue
                        served = [served[j] for j in keep]
                        stor = [stor[j] for j in keep]
                        pos = [cmp_idx[j] for j in keep]
                    codes = compare_codes(served, stor, cfg.rtol, cfg.atol)
                    tally = FeatureTally(n=len(served))
                    bad = np.flatnonzero(codes)
                    if len(bad):
                        tally.mismatches = int(len(bad))
                        counts = np.bincount(codes[bad], minlength=len(CODES))
                        tally.reasons = {CODES[c]: int(counts[c]) for c in range(1, len(CODES)) if counts[c]}
                        for j in bad[codes[bad] == 1]:
                            x, y = served[j], stor[j]
                            if isinstance(x, (int, float)) and isinstance(y, (int, float)) and x and y:
                                tally.log_ratio_sum += math.log10(abs(x / y))
                                tally.log_ratio_n += 1
                        picked = sorted(bad, key=lambda j: events[pos[j]].event_id)[: cfg.max_examples]
                        tally.examples = [
                            {"event_id": events[pos[j]].event_id, "entity": dict(events[pos[j]].entity or {}),
                             "served": served[j], "stored": stor[j], "reason": CODES[codes[j]]}
                            for j in picked
                        ]
                    win.features[f] = tally
            out[key] = win
        return out

    def _group(self, events: Sequence[InferenceEvent]) -> dict[ParityWindowKey, list[int]]:
        """Event positions per (model, version, window); one vectorised pass in the usual case
        of a batch inside one window of one model version."""
        ws = self.config.window_seconds
        if not events:
            return {}
        starts = np.floor(np.fromiter(map(_ts, events), float, len(events)) / ws) * ws
        mvs = {(ev.model, ev.model_version) for ev in events}
        if len(mvs) == 1 and starts[0] == starts[-1] and starts.min() == starts.max():
            (m, v), start = next(iter(mvs)), float(starts[0])
            return {ParityWindowKey(m, v, start, start + ws): list(range(len(events)))}
        groups: dict[ParityWindowKey, list[int]] = {}
        for i, ev in enumerate(events):
            start = float(starts[i])
            groups.setdefault(ParityWindowKey(ev.model, ev.model_version, start, start + ws), []).append(i)
        return groups

    def merge_into_state(self, partials: Mapping[ParityWindowKey, ParityWindow]) -> None:
        """Add partial windows (from :meth:`accumulate`, maybe of another process) to the open ones.
        Partials of windows already judged are dropped and counted in ``late_events``."""
        for key, win in partials.items():
            mv = (key.model, key.model_version)
            if key.end <= self._closed_before.get(mv, -math.inf):
                self.late_events += win.n_events
                continue
            mine = self._windows.get(key)
            if mine is None:
                self._windows[key] = win
            else:
                mine.merge(win, self.config.max_examples)

    # -- the single-process path -----------------------------------------------------

    def ingest(self, events: Sequence[InferenceEvent], stored: Sequence[Mapping[str, Any] | None]) -> list[Alert]:
        """Accumulate a batch whose lookups succeeded, then judge the windows the watermark closed."""
        self.merge_into_state(self.accumulate(events, stored))
        for mv in {(e.model, e.model_version) for e in events}:
            self._unknown.pop(mv, None)
        self._advance(events)
        return self._judge_closed()

    def unknown(self, events: Sequence[InferenceEvent], reason: str, alert: bool = True) -> list[Alert]:
        """The store could not answer for ``events``: count them (and their sent features) and
        raise one ``parity_unknown`` alert per model version until lookups succeed again
        (``alert=False``: count only, e.g. while the store is still opening)."""
        alerts: list[Alert] = []
        by_mv: dict[tuple[str, str], list[InferenceEvent]] = {}
        for ev in events:
            by_mv.setdefault((ev.model, ev.model_version), []).append(ev)
        for mv, evs in by_mv.items():
            partial: dict[ParityWindowKey, ParityWindow] = {}
            for ev in evs:
                win = partial.setdefault(self.window_of(ev.model, ev.model_version, ev.ts), ParityWindow())
                win.n_events += 1
                win.n_unknown += 1
                for f in ev.features:
                    win.sent[f] = win.sent.get(f, 0) + 1
            self.merge_into_state(partial)
            if alert and mv not in self._unknown:
                self._unknown[mv] = reason
                first = min(partial)
                schema = self._schema(*mv)
                alerts.append(Alert(
                    model=mv[0], model_version=mv[1], kind="parity", feature=None, metric=METRIC_UNKNOWN,
                    score=1.0, threshold=0.0, p_value=None, severity="warning",
                    window=AlertWindow(first.start, first.end, len(evs)),
                    reference=AlertReference(schema.source if schema else "feast", 0),
                    emitted_at=self._clock(),
                    details={"status": "unknown", "reason": reason,
                             "message": "the feature store did not answer; parity is unknown, drift detection goes on"},
                ))
        self._advance(events)
        return alerts + self._judge_closed()

    def flush(self) -> list[Alert]:
        """Judge every open window (end of input)."""
        alerts: list[Alert] = []
        for key in sorted(self._windows):
            alerts += self._close(key)
        return alerts

    def _advance(self, events: Sequence[InferenceEvent]) -> None:
        if not events:
            return
        mvs = {(ev.model, ev.model_version) for ev in events}
        if len(mvs) == 1:
            (mv,) = mvs
            newest = max(map(_ts, events))
            if newest > self._watermark.get(mv, -math.inf):
                self._watermark[mv] = newest
            return
        for ev in events:
            mv = (ev.model, ev.model_version)
            if ev.ts > self._watermark.get(mv, -math.inf):
                self._watermark[mv] = ev.ts

    def _judge_closed(self) -> list[Alert]:
        alerts: list[Alert] = []
        lateness = self.config.allowed_lateness_s
        for key in sorted(self._windows):
            wm = self._watermark.get((key.model, key.model_version), -math.inf)
            if key.end <= wm - lateness:
                alerts += self._close(key)
        return alerts

    def _close(self, key: ParityWindowKey) -> list[Alert]:
        win = self._windows.pop(key)
        mv = (key.model, key.model_version)
        self._closed_before[mv] = max(self._closed_before.get(mv, -math.inf), key.end)
        return self.judge(key, win)

    # -- judging -----------------------------------------------------------------------

    def judge(self, key: ParityWindowKey, win: ParityWindow) -> list[Alert]:
        """Verdicts of one complete window; updates the open/closed state of findings."""
        cfg = self.config
        mv = (key.model, key.model_version)
        schema = self._schema(*mv)
        source = schema.source if schema else "feast"
        alerts: list[Alert] = []
        for f in sorted(win.features):
            t = win.features[f]
            if t.n < cfg.min_samples:
                continue  # insufficient data: no verdict, no state change
            self.last_rates[(key.model, key.model_version, f)] = (t.rate, t.n)
            p = _binom_sf(t.mismatches, t.n, cfg.warning_rate)
            breach = t.rate > cfg.warning_rate and p <= cfg.alpha
            alerts += self._verdict(key, f, "value", breach, lambda: Alert(
                model=key.model, model_version=key.model_version, kind="parity", feature=f, metric=METRIC_MISMATCH,
                score=round(t.rate, 6), threshold=cfg.warning_rate, p_value=p,
                severity="critical" if t.rate >= cfg.critical_rate else "warning",
                window=AlertWindow(key.start, key.end, t.n), reference=AlertReference(source, t.n),
                emitted_at=self._clock(),
                details={
                    "mismatch_rate": round(t.rate, 6), "n_compared": t.n, "n_mismatch": t.mismatches,
                    "reasons": dict(sorted(t.reasons.items())), "typical_ratio": _round(t.typical_ratio()),
                    "entity_keys": [e["entity"] for e in t.examples], "examples": list(t.examples),
                    "message": f"served '{f}' differs from the feature store for {t.rate:.1%} of {t.n} events "
                               f"(training/serving skew); retraining cannot fix this, check the serving pipeline",
                },
            ))
        if cfg.schema_checks and schema is not None and win.n_events >= cfg.schema_min_events:
            known = schema.store_features | schema.request_features
            for f in sorted(set(win.sent) | schema.store_features):
                if f in schema.store_features:
                    bad, metric = win.sent.get(f, 0) == 0, METRIC_NOT_IN_STREAM
                    score = 1.0 - win.sent.get(f, 0) / win.n_events
                    msg = f"store feature '{f}' of the model's feature service was sent by no event"
                elif f not in known:
                    bad, metric = True, METRIC_NOT_IN_STORE
                    score = win.sent.get(f, 0) / win.n_events
                    msg = (f"'{f}' is sent by the model server but is neither a store feature nor a declared "
                           f"request feature (tag request_features of its feature service)")
                else:
                    continue
                alerts += self._verdict(key, f, "schema", bad, lambda: Alert(
                    model=key.model, model_version=key.model_version, kind="parity", feature=f, metric=metric,
                    score=round(score, 6), threshold=0.0, p_value=None, severity="warning",
                    window=AlertWindow(key.start, key.end, win.n_events),
                    reference=AlertReference(source, win.n_events), emitted_at=self._clock(),
                    details={"schema": metric, "message": msg, "n_events": win.n_events},
                ))
        return alerts

    def _verdict(self, key: ParityWindowKey, feature: str, check: str, breach: bool,
                 make: Callable[[], Alert]) -> list[Alert]:
        """One judged window of one (feature, check): :meth:`Hysteresis.observe` decides open / stay / clear."""
        made: list[Alert] = []

        def make_id(_start: float) -> str:
            made.append(make())
            return made[0].alert_id

        self.hyst.observe((key.model, key.model_version, f"parity_{check}", feature), breach, key.start, True, make_id)
        return made

    # -- queries and state ---------------------------------------------------------------

    def open_alerts(self, model: str, version: str, include_pending: bool = False) -> dict[str, str]:
        """Features with an open value-parity alert -> that alert's id.

        ``include_pending`` adds features whose still-open window already breaches (enough
        samples, rate above threshold, significant), with the id the alert will get when the
        window closes (ids are deterministic): drift judged before the parity window closes
        is still explained."""
        out = {k[3]: st.open_id for k, st in self.hyst.tracks.items()
               if k[0] == model and k[1] == version and k[2] == "parity_value" and st.open_id}
        if include_pending:
            for f, aid in self.pending_breaches(model, version).items():
                out.setdefault(f, aid)
        return out

    def open_since(self, model: str, version: str) -> dict[str, float]:
        """Features with an open (or pending, as in :meth:`open_alerts`) value-parity alert -> the event-time start
        (s) of the window it opened with: drift in a window that ended before is not explained by it."""
        out = {k[3]: st.opened_start for k, st in self.hyst.tracks.items()
               if k[0] == model and k[1] == version and k[2] == "parity_value" and st.open_id
               and st.opened_start is not None}
        for f, start in self._pending_starts(model, version).items():
            out.setdefault(f, start)
        return out

    def pending_breaches(self, model: str, version: str) -> dict[str, str]:
        """Features breaching in a not yet judged window -> the id their alert will have."""
        return {f: make_alert_id(model, version, "parity", f, start)
                for f, start in self._pending_starts(model, version).items()}

    def _pending_starts(self, model: str, version: str) -> dict[str, float]:
        """Features breaching in a not yet judged window -> that window's start (the earliest)."""
        cfg = self.config
        out: dict[str, float] = {}
        for key in sorted(self._windows):
            if (key.model, key.model_version) != (model, version):
                continue
            for f, t in self._windows[key].features.items():
                if f in out or t.n < cfg.min_samples or t.rate <= cfg.warning_rate:
                    continue
                if _binom_sf(t.mismatches, t.n, cfg.warning_rate) <= cfg.alpha:
                    out[f] = key.start
        return out

    def open_features(self, model: str, version: str) -> set[str]:
        return set(self.open_alerts(model, version))

    def unknown_models(self) -> dict[tuple[str, str], str]:
        """Model versions whose parity is currently unknown -> why."""
        return dict(self._unknown)

    def pending_windows(self) -> list[ParityWindowKey]:
        return sorted(self._windows)

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state, for restarts."""
        return {
            "windows": {k.to_str(): w.to_dict() for k, w in self._windows.items()},
            "watermark": [[m, v, t] for (m, v), t in self._watermark.items()],
            "closed_before": [[m, v, t] for (m, v), t in self._closed_before.items()],
            "hysteresis": self.hyst.state_dict(),
            "unknown": [[m, v, r] for (m, v), r in self._unknown.items()],
            "late_events": self.late_events,
        }

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        self._windows = {ParityWindowKey.from_str(k): ParityWindow.from_dict(w) for k, w in d["windows"].items()}
        self._watermark = {(m, v): float(t) for m, v, t in d["watermark"]}
        self._closed_before = {(m, v): float(t) for m, v, t in d["closed_before"]}
        self.hyst.load_state_dict(d.get("hysteresis") or {})
        for m, v, f, c, aid, clean in d.get("open", []):  # state written before the shared hysteresis
            self.hyst.tracks[(m, v, f"parity_{c}", f)] = TrackState(drifting=0, clean=int(clean), open_id=aid)
        self._unknown = {(m, v): r for m, v, r in d["unknown"]}
        self.late_events = int(d.get("late_events", 0))


# --------------------------------------------------------------------------- explained drift


# --------------------------------------------------------------------------- helpers


def _binom_sf(k: int, n: int, p: float) -> float:
    """P[X >= k] for X ~ Binomial(n, p): the one-sided p-value of "rate > p"."""
    if n == 0 or k == 0:
        return 1.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    return float(binom.sf(k - 1, n, p))


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(x, digits)
