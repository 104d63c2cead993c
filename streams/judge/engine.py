"""The drift engine: windows, gating, tests, policy (pure; no Kafka, Faust, Feast or Ray).

The same object runs inside the Faust agents and inside ``driftloop backtest``.

API (the truth for other modules)::

    DriftConfig(window_seconds=60.0, hop_seconds=None, min_samples=500, allowed_lateness_s=0.0,
                fdr_alpha=0.05, immediate_alpha=1e-5, open_after=2, close_after=3,
                thresholds=Thresholds(), concept_detectors=("cusum",), cusum_shift=0.1, cusum_h=12.0,
                concept_warmup=1000, river_history=5000, reference_events=10000, n_bins=10, fine_bins=100, top_k=20)
        the "drift" config section: streams.config.section(DriftConfig, raw.get("drift"), "drift")
    engine = DriftEngine(config, profiles)   # profiles: {(model, version): ReferenceProfile},
                                             # a list of profiles, or a callable (model, version) -> profile | None
    engine.ingest(events: Sequence[InferenceEvent]) -> list[Alert]            # window, watermark, judge
    engine.ingest_columns(model, version, ts, columns, predictions=None, scores=None) -> list[Alert]
        # columnar fast path: columns = {name: array} or an (n, F) float matrix in
        # engine.encoder(model, version).numeric_names order (NaN = missing)
    engine.ingest_labelled(examples: Sequence[LabelledExample]) -> list[Alert]  # label windows:
        # accumulate_labelled + close + judge, the worker's path (concept detectors run inside judge)
    engine.flush() -> list[Alert]; engine.state_dict() -> dict (JSON-safe); engine.load_state_dict(d)
    engine.stats -> dict of counters; engine.take_cleared() -> list[dict] (alerts closed by hysteresis)
    engine.set_profile(profile, judge_from=-inf)   # windows starting before judge_from are not judged
    engine.open_alerts() -> {(model, version, kind, feature): alert_id}; engine.slo, .take_quality(): quality.py
    engine.window_observer = fn(key, n, {kind: [FeatureTest]}) # every judged data window's tests (reports)
  Distributed path (partials per partition, merged by an aggregator, judged once):
    engine.accumulate(events) -> dict[WindowKey, WindowAccumulator]           # no judging, no state
    engine.accumulate_columns(model, version, ts, columns, predictions=None, scores=None) -> same
    engine.accumulate_labelled(examples) -> dict[WindowKey, WindowAccumulator] # key.stream == "labels"
    WindowAccumulator.merge(other) (exact, in place), .to_dict()/.from_dict(), .n, .n_labelled
    engine.judge(key, acc) -> list[Alert]   # label windows: concept detectors on the window's error sequence,
                                            # then gating + carry-forward + tests + BH + effect size + hysteresis;
                                            # call in window order per (model, version, stream)
    WindowKey(model, model_version, start, end, stream="inputs"): NamedTuple, .to_str()/.from_str()

Alerts are :class:`streams.contracts.events.Alert` with ``alert_id = make_alert_id(model, version, kind,
feature, start of the window in which the alert opened)``; ``details`` carries ``rank``
(1 = largest effect in its window), ``q_value`` and all metrics.  Tests per window: see
:mod:`streams.judge.data_tests`; concept drift: :mod:`streams.judge.concept`.

Policy (:mod:`streams.judge.policy`): a window with fewer than ``min_samples`` events is
insufficient (no verdict; its counts are carried into the next window, so a low-traffic model
is still judged).  A finding needs a Benjamini-Hochberg significant test (FDR ``fdr_alpha``) and
an effect size at or above its warning threshold; an alert opens after ``open_after`` drifting
windows (at once when the adjusted p-value is <= ``immediate_alpha``) and closes after
``close_after`` clean ones.

One label path: backtest (``ingest_labelled`` + ``flush``) and the worker (``accumulate_labelled``
per partition, partials merged, ``judge`` once the global watermark passed the window) run the
same code: a label window carries its error sequence, and ``judge`` feeds it, sorted by (event
time, event_id), to the concept detectors before the window's performance verdict.  With
hopping windows an example enters the sequence of one window only, the one starting at its own
hop slot ``floor(ts / hop) * hop``.

Features are counted by the kind their profile gives them, never by what a batch holds: a value
that does not fit (text in a numeric feature) is counted ``invalid`` for that feature.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from streams.contracts.events import (
    Alert,
    AlertReference,
    AlertWindow,
    InferenceEvent,
    LabelledExample,
    make_alert_id,
    model_version_of,
)
from streams.judge.concept import ConceptMixin, ConceptState
from streams.judge.data_tests import DataTestsMixin
from streams.judge.drift_config import DriftConfig
from streams.judge.drift_metrics import NumericBatch
from streams.judge.policy import Finding, Hysteresis, Level, Thresholds, select_findings
from streams.judge.profile import ReferenceProfile
from streams.judge.windows import (
    INPUTS,
    LABELS,
    Encoder,
    WindowAccumulator,
    WindowKey,
    label_arrays,
    window_indices,
)

DATA_KINDS = ("data_drift", "prediction_drift")
LABEL_KINDS = ("performance", "concept_drift")


class _ModelState(ConceptState):
    """Everything the engine tracks for one (model, version)."""

    def __init__(self, profile: ReferenceProfile, smoothing: float) -> None:
        super().__init__()
        self.profile = profile
        self.encoder = Encoder(profile)
        num = [profile.features[s.name] for s in self.encoder.numeric]
        self.batch = NumericBatch([fp.counts for fp in num], [fp.coarse_starts for fp in num],
                                  [fp.reps() for fp in num], [fp.spread for fp in num], smoothing)
        # gather index: (F_num, Bmax) positions of fine-bin counts in the accumulator (padding -> a zero slot)
        pad = self.encoder.n_buckets
        g = np.full((len(num), self.batch.bmax), pad, dtype=np.int64)
        for i, seg in enumerate(self.encoder.numeric):
            b = profile.features[seg.name].n_buckets
            g[i, :b] = np.arange(seg.offset, seg.offset + b)
        self.gather = g
        self.miss_idx = np.array([s.offset + s.size - 2 for s in self.encoder.numeric], dtype=np.int64)
        self.ref_missing = np.array([fp.missing + getattr(fp, "invalid", 0) for fp in num], dtype=float)
        self.ref_n = np.array([fp.n for fp in num], dtype=float)
        self.open: dict[float, WindowAccumulator] = {}
        self.open_labels: dict[float, WindowAccumulator] = {}
        self.watermark = -math.inf
        self.closed_through = -math.inf
        self.lwatermark = -math.inf
        self.lclosed_through = -math.inf
        self.carry: tuple[float, WindowAccumulator] | None = None
        self.lcarry: tuple[float, WindowAccumulator] | None = None


class DriftEngine(ConceptMixin, DataTestsMixin):
    """Windowed drift detection for many (model, version) pairs; see the module docstring."""

    def __init__(
        self,
        config: DriftConfig | None = None,
        profiles: Mapping[tuple[str, str], ReferenceProfile]
        | Sequence[ReferenceProfile]
        | Callable[[str, str], ReferenceProfile | None]
        | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config or DriftConfig()
        self._lookup: Callable[[str, str], ReferenceProfile | None]
        self._profiles: dict[tuple[str, str], ReferenceProfile] = {}
        self._judge_from: dict[tuple[str, str], float] = {}
        if callable(profiles):
            self._lookup = profiles
        else:
            if isinstance(profiles, Mapping):
                items = [(tuple(map(str, k)), v) for k, v in profiles.items()]
            else:
                items = [((p.model, p.model_version), p) for p in (profiles or [])]
            self._profiles = dict(items)
            self._lookup = lambda m, v: self._profiles.get((m, v))
        self.clock = clock
        self.hyst = Hysteresis(self.config.open_after, self.config.close_after, self.config.immediate_alpha)
        self._models: dict[tuple[str, str], _ModelState] = {}
        self._cleared: list[dict[str, Any]] = []
        self.window_observer: Callable[[WindowKey, int, dict[str, list[Any]]], None] | None = None
        self.stats: dict[str, Any] = defaultdict(int)
        self.stats["alerts_by_kind"] = defaultdict(int)

    # ------------------------------------------------------------------ profiles / state
    def set_profile(self, profile: ReferenceProfile, judge_from: float = -math.inf) -> None:
        """Add or replace one (model, version)'s reference (open windows of an old profile are dropped)."""
        self._profiles[(profile.model, profile.model_version)] = profile
        self._judge_from[(profile.model, profile.model_version)] = judge_from
        old = self._models.get((profile.model, profile.model_version))
        if old is not None and old.profile.id != profile.id:
            del self._models[(profile.model, profile.model_version)]

    def _state(self, model: str, version: str) -> _ModelState | None:
        ms = self._models.get((model, version))
        if ms is not None:
            return ms
        prof = self._lookup(model, version)
        if prof is None:
            return None
        ms = _ModelState(prof, self.config.psi_smoothing)
        self._models[(model, version)] = ms
        return ms

    def encoder(self, model: str, version: str) -> Encoder | None:
        ms = self._state(model, version)
        return ms.encoder if ms else None

    # ------------------------------------------------------------------ accumulate (no judging)
    @staticmethod
    def _group(events: Iterable[Any], mv: tuple[str, str] | None = None) -> dict[tuple[str, str], list[Any]]:
        if isinstance(events, list) and events:
            keys = {mv} if mv is not None else set(map(model_version_of, events))  # mv: the caller knows it
            if len(keys) == 1:  # the usual micro-batch: one model version, no per-event Python loop
                return {keys.pop(): events}
        groups: dict[tuple[str, str], list[Any]] = {}
        for e in events:
            groups.setdefault((e.model, e.model_version), []).append(e)
        return groups

    def accumulate(self, events: Sequence[InferenceEvent], mv: tuple[str, str] | None = None
                   ) -> dict[WindowKey, WindowAccumulator]:
        """Partial window accumulators of input events (no judging, state untouched; ``mv``: every event's pair)."""
        out: dict[WindowKey, WindowAccumulator] = {}
        for (model, version), evs in self._group(events, mv).items():
            ms = self._state(model, version)
            if ms is None:
                self.stats["no_reference"] += len(evs)
                continue
            enc = ms.encoder
            ts = np.fromiter((e.ts for e in evs), dtype=float, count=len(evs))
            preds = [e.prediction for e in evs] if enc.pred_segment is not None else None
            if preds is not None and all(p is None for p in preds):
                preds = None
            scores = [e.scores for e in evs] if enc.score_segment is not None else None
            if scores is not None and all(s is None for s in scores):
                scores = None
            out.update(self._accumulate_encoded(ms, model, version, ts, enc.encode_events(evs), preds, scores))
        return out

    def accumulate_columns(
        self, model: str, version: str, ts: np.ndarray, columns: Mapping[str, Any] | np.ndarray,
        predictions: Sequence[Any] | None = None, scores: Sequence[Any] | None = None,
    ) -> dict[WindowKey, WindowAccumulator]:
        """Columnar variant of :meth:`accumulate` for one (model, version)."""
        ms = self._state(str(model), str(version))
        ts = np.asarray(ts, dtype=float)
        if ms is None:
            self.stats["no_reference"] += len(ts)
            return {}
        enc = ms.encoder
        if isinstance(columns, np.ndarray):
            if columns.ndim != 2 or columns.shape[1] != len(enc.numeric_names):
                raise ValueError(f"matrix must be (n, {len(enc.numeric_names)}) in order {enc.numeric_names}")
            idx = enc.encode_matrix(columns.astype(float, copy=False))
            missing = [s for s in enc.segments if s.kind != "numeric"]
            if missing:
                idx = np.concatenate([idx] + [np.full(len(ts), s.offset + s.size - 2, np.int64) for s in missing])
        else:
            idx = enc.encode(columns, len(ts))
        return self._accumulate_encoded(ms, str(model), str(version), ts, idx, predictions, scores)

    def _accumulate_encoded(self, ms, model, version, ts, idx, preds, scores) -> dict[WindowKey, WindowAccumulator]:
        n = len(ts)
        if n == 0:
            return {}
        out_idx = ms.encoder.encode_outputs(preds, scores, n)
        if out_idx.size:
            idx = np.concatenate([idx, out_idx])
        mat = idx.reshape(-1, n)
        cfg = self.config
        pos, k = window_indices(ts, cfg.window_seconds, cfg.hop)
        out: dict[WindowKey, WindowAccumulator] = {}
        ks = np.unique(k)
        for kk in ks:
            sel = pos[k == kk] if len(ks) > 1 or len(pos) != n else pos
            acc = WindowAccumulator.empty(ms.encoder)
            acc.add_indices(mat[:, sel].ravel(), len(sel), ts[sel])
            start = float(kk) * cfg.hop
            out[WindowKey(model, version, start, start + cfg.window_seconds, INPUTS)] = acc
        return out

    def accumulate_labelled(self, examples: Sequence[LabelledExample]) -> dict[WindowKey, WindowAccumulator]:
        """Partial label-window accumulators (error and calibration counts), keyed with stream "labels"."""
        out: dict[WindowKey, WindowAccumulator] = {}
        cfg = self.config
        for (model, version), exs in self._group(examples).items():
            ms = self._state(model, version)
            if ms is None:
                self.stats["no_reference"] += len(exs)
                continue
            ts = np.fromiter((e.ts for e in exs), dtype=float, count=len(exs))
            errors, conf, loss = label_arrays(exs, ms.profile.labels)
            ids = [e.event_id for e in exs]
            pos, k = window_indices(ts, cfg.window_seconds, cfg.hop)
            own = np.floor(ts / cfg.hop).astype(np.int64)  # the example's own hop slot (its latest window)
            for kk in np.unique(k):
                sel = pos[k == kk]
                acc = WindowAccumulator.empty(ms.encoder)
                # the error sequence of a window holds the examples of its own first hop only, so that
                # every example reaches the event-level detectors once (see judge)
                acc.add_labels(errors[sel], conf[sel], ts[sel], [ids[i] for i in sel.tolist()], own[sel] == kk, None if loss is None else loss[sel])
                start = float(kk) * cfg.hop
                out[WindowKey(model, version, start, start + cfg.window_seconds, LABELS)] = acc
        return out

    # ------------------------------------------------------------------ single-process path
    def ingest(self, events: Sequence[InferenceEvent]) -> list[Alert]:
        """Count a micro-batch of input events, advance the watermark, judge the windows it closes."""
        self.stats["events"] += len(events)
        return self._absorb(self.accumulate(events))

    def ingest_columns(
        self, model: str, version: str, ts: np.ndarray, columns: Mapping[str, Any] | np.ndarray,
        predictions: Sequence[Any] | None = None, scores: Sequence[Any] | None = None,
    ) -> list[Alert]:
        """Columnar variant of :meth:`ingest` for one (model, version)."""
        self.stats["events"] += len(ts)
        return self._absorb(self.accumulate_columns(model, version, ts, columns, predictions, scores))

    def ingest_labelled(self, examples: Sequence[LabelledExample]) -> list[Alert]:
        """Count labelled examples into label windows, advance the label watermark, judge the windows it
        closes (the worker's path: accumulate, close, :meth:`judge`, which also feeds the concept detectors)."""
        self.stats["labelled"] += len(examples)
        return self._absorb(self.accumulate_labelled(examples))

    def _absorb(self, partials: Mapping[WindowKey, WindowAccumulator]) -> list[Alert]:
        touched: dict[tuple[str, str, str], float] = {}
        for key, acc in sorted(partials.items(), key=lambda kv: kv[0].start):
            ms = self._state(key.model, key.model_version)
            if ms is None:
                continue
            labels = key.stream == LABELS
            closed = ms.lclosed_through if labels else ms.closed_through
            if key.start < self._judge_from.get((key.model, key.model_version), -math.inf):
                self.stats["bootstrap_period_events"] += acc.n  # in the reference's own period: not judged
                continue
            if key.end <= closed:  # that window was judged already
                self.stats["late_label_events" if labels else "late_events"] += acc.n_labelled if labels else acc.n
                continue
            store = ms.open_labels if labels else ms.open
            if key.start in store:
                store[key.start].merge(acc)
            else:
                store[key.start] = acc
            tk = (key.model, key.model_version, key.stream)
            touched[tk] = max(touched.get(tk, -math.inf), acc.max_ts)
        alerts: list[Alert] = []
        for (model, version, stream), max_ts in touched.items():
            ms = self._models[(model, version)]
            if stream == LABELS:
                ms.lwatermark = max(ms.lwatermark, max_ts)
            else:
                ms.watermark = max(ms.watermark, max_ts)
            alerts += self._close(ms, model, version, stream, final=False)
        return alerts

    def _close(self, ms: _ModelState, model: str, version: str, stream: str, final: bool) -> list[Alert]:
        labels = stream == LABELS
        store = ms.open_labels if labels else ms.open
        wm = (ms.lwatermark if labels else ms.watermark) - self.config.allowed_lateness_s
        alerts: list[Alert] = []
        for start in sorted(store):
            end = start + self.config.window_seconds
            if not final and end > wm:
                break
            acc = store.pop(start)
            if labels:
                ms.lclosed_through = max(ms.lclosed_through, end)
            else:
                ms.closed_through = max(ms.closed_through, end)
            alerts += self.judge(WindowKey(model, version, start, end, stream), acc)
        return alerts

    def flush(self) -> list[Alert]:
        """Close and judge every open window (end of a replay)."""
        alerts: list[Alert] = []
        for (model, version), ms in list(self._models.items()):
            alerts += self._close(ms, model, version, INPUTS, final=True)
            alerts += self._close(ms, model, version, LABELS, final=True)
        return alerts

    # ------------------------------------------------------------------ judging
    def judge(self, key: WindowKey, acc: WindowAccumulator) -> list[Alert]:
        """Judge one complete window: gating (with carry-forward), tests, BH + effect size, hysteresis."""
        ms = self._state(key.model, key.model_version)
        if ms is None:
            return []
        if acc.profile_id != ms.profile.id:
            raise ValueError(
                f"window of profile {acc.profile_id} judged against profile {ms.profile.id}; "
                "accumulate and judge with the same reference"
            )
        labels = key.stream == LABELS
        concept: list[Alert] = self._quality_observe(ms, key, acc, labels)  # before gating: the window's own counts
        if labels:
            # event-level concept detectors first: this window's own error sequence, in (event time,
            # event_id) order, whatever its verdict below (a carried window is not fed again)
            ts, errors, ids, loss = acc.sequence()
            if len(ts):
                concept += self._observe_errors(ms, ts, errors, ids, loss)
        carry = ms.lcarry if labels else ms.carry
        start = key.start
        if carry is not None:
            start = carry[0]
            acc = carry[1].copy().merge(acc)
        n = acc.n_labelled if labels else acc.n
        p0 = self._p0(ms) if labels else None
        if n < self.config.min_samples or (labels and p0 is None):
            self.stats["label_windows_insufficient" if labels else "windows_insufficient"] += 1
            keep = (start, acc) if self.config.tumbling else None
            if labels:
                ms.lcarry = keep
            else:
                ms.carry = keep
            return concept
        if labels:
            ms.lcarry = None
            self.stats["label_windows_judged"] += 1
            hit = any(start <= t < key.end for t in ms.concept_alarms)
            ms.concept_alarms = [t for t in ms.concept_alarms if t >= key.end]
            findings = self._label_findings(ms, acc, p0, hit)
            kinds = LABEL_KINDS
        else:
            ms.carry = None
            self.stats["windows_judged"] += 1
            findings = []
            by_kind = self._data_tests(ms, acc)
            if self.window_observer is not None:  # start: of the carried window when one was merged in
                self.window_observer(WindowKey(key.model, key.model_version, start, key.end, key.stream), n, by_kind)
            for kind, tests in by_kind.items():
                findings += select_findings(tests, self.config.fdr_alpha, self.config.thresholds)
            kinds = self._with_estimate(ms, acc, findings, DATA_KINDS)  # + estimated_performance (quality.py)
        findings.sort(key=lambda f: (-f.ratio, f.kind, str(f.feature)))
        rank = {(f.kind, f.feature): i + 1 for i, f in enumerate(findings)}
        model, version = key.model, key.model_version

        def make_id(f: Finding, wstart: float) -> str:
            return make_alert_id(model, version, f.kind, f.feature, wstart)

        alerts = []
        for tr in self.hyst.step(model, version, kinds, start, findings, make_id):
            if tr.action == "clear":
                self._cleared.append(
                    {"model": model, "model_version": version, "kind": tr.key[2], "feature": tr.key[3] or None,
                     "cleared_at_window_end": key.end}
                )
                self.stats["alerts_cleared"] += 1
                continue
            f = tr.finding
            alerts.append(self._alert(ms, f, start, key.end, n, rank[(f.kind, f.feature)]))
        return concept + alerts

    def _alert(self, ms: _ModelState, f: Finding, start: float, end: float, n: int, rank: int, extra=None) -> Alert:
        p = ms.profile
        details = {"rank": rank, "q_value": f.q_value, "effect_ratio": f.ratio, "metrics": f.metrics}
        if extra:
            details.update(extra)
        self.stats["alerts_by_kind"][f.kind] += 1
        return Alert(
            model=p.model, model_version=p.model_version, kind=f.kind, feature=f.feature, metric=f.metric,
            score=float(f.score), threshold=float(f.threshold), p_value=f.p_value, severity=f.severity,
            window=AlertWindow(float(start), float(end), int(n)), reference=AlertReference(p.id, int(p.n)),
            emitted_at=self.clock(), details=_json_safe(details),
        )

    def take_cleared(self) -> list[dict[str, Any]]:
        """Alerts closed by hysteresis since the last call (model, version, kind, feature, window end)."""
        out, self._cleared = self._cleared, []
        return out

    def untestable(self) -> dict[tuple[str, str], str]:
        """(model, version) -> why its concept drift is not tested (its reference error rate leaves no room)."""
        return {k: ms.untestable for k, ms in self._models.items() if ms.untestable}

    def open_alerts(self) -> dict[tuple[str, str, str, str], str]:
        return self.hyst.open_alerts()

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe snapshot: open windows, carries, watermarks, hysteresis, CUSUM, counters."""
        models = {}
        for (model, version), ms in self._models.items():
            models[f"{model}\x1f{version}"] = {
                "profile_id": ms.profile.id,
                "open": [[s, a.to_dict()] for s, a in sorted(ms.open.items())],
                "open_labels": [[s, a.to_dict()] for s, a in sorted(ms.open_labels.items())],
                "watermark": _f(ms.watermark),
                "closed_through": _f(ms.closed_through),
                "lwatermark": _f(ms.lwatermark),
                "lclosed_through": _f(ms.lclosed_through),
                "carry": None if ms.carry is None else [ms.carry[0], ms.carry[1].to_dict()],
                "lcarry": None if ms.lcarry is None else [ms.lcarry[0], ms.lcarry[1].to_dict()],
                **ms.concept_dict(),
            }
        st = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in self.stats.items()}
        return {"format": 1, "models": models, "hysteresis": self.hyst.state_dict(), "stats": st, "cleared": list(self._cleared)}

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` snapshot (profiles must be available to the engine)."""
        self._models = {}
        for k, m in d.get("models", {}).items():
            model, version = k.split("\x1f", 1)
            ms = self._state(model, version)
            if ms is None or ms.profile.id != m["profile_id"]:
                raise ValueError(
                    f"state of {model} v{version} was built on profile {m['profile_id']}, "
                    f"which this engine does not have; load the same reference profile"
                )
            ms.open = {float(s): WindowAccumulator.from_dict(a) for s, a in m["open"]}
            ms.open_labels = {float(s): WindowAccumulator.from_dict(a) for s, a in m["open_labels"]}
            ms.watermark, ms.closed_through = _unf(m["watermark"]), _unf(m["closed_through"])
            ms.lwatermark, ms.lclosed_through = _unf(m["lwatermark"]), _unf(m["lclosed_through"])
            ms.carry = None if m["carry"] is None else (float(m["carry"][0]), WindowAccumulator.from_dict(m["carry"][1]))
            ms.lcarry = None if m["lcarry"] is None else (float(m["lcarry"][0]), WindowAccumulator.from_dict(m["lcarry"][1]))
            ms.load_concept(m)
        self.hyst.load_state_dict(d.get("hysteresis", {}))
        self.stats = defaultdict(int)
        for k, v in d.get("stats", {}).items():
            self.stats[k] = defaultdict(int, v) if isinstance(v, Mapping) else v
        self.stats.setdefault("alerts_by_kind", defaultdict(int))
        self._cleared = list(d.get("cleared", []))


def _f(x: float) -> float | None:
    return None if math.isinf(x) else x


def _unf(x: float | None) -> float:
    return -math.inf if x is None else float(x)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


__all__ = ["DriftConfig", "DriftEngine", "WindowKey", "WindowAccumulator", "Thresholds", "Level"]
