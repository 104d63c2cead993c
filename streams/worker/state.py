"""What the worker's roles share: config, window geometry, keys, records on the internal topic, the engine port.

The roles themselves: :mod:`streams.worker.source` (one inputs partition's watermark and open
windows), :mod:`streams.worker.label_join` (labels joined to stored inputs),
:mod:`streams.worker.aggregate_state` (partials merged and judged per model version); the core
that moves them is :mod:`streams.worker.core`.

State is plain JSON-safe dicts kept in changelog-backed tables.  Exactly-once state under
at-least-once delivery: every state record stores the last source offset it includes and
records at or below it are skipped after a restart (state may be ahead of the committed
consumer offset, never behind).  Partials are deduplicated by (window, source partition);
alerts carry deterministic ids (consumers deduplicate by ``alert_id``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import msgspec
import numpy as np

from streams.contracts.events import InferenceEvent, json_default
from streams.contracts.keys import ModelKey, model_key

INPUTS = "inputs"
LABELS = "labels"

_STATE_ENCODER = msgspec.json.Encoder(enc_hook=json_default)


def encode_state(value: Any) -> bytes:
    """State and partial records -> JSON bytes (msgspec: ~5x faster than json.dumps on these dicts)."""
    return _STATE_ENCODER.encode(value)


def decode_state(data: bytes) -> Any:
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError:  # e.g. a lone surrogate escape in an event's text (bootstrap rows): only json accepts it
        import json

        return json.loads(data)


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class WorkerConfig:
    """The ``worker`` config section (all optional)."""

    app_id: str = "driftloop-worker"
    data_dir: str = ""  # default: $DRIFTLOOP_HOME/worker/<app_id>
    batch_size: int = 1000  # records per micro-batch (most per fetch with batch delivery; stream.take's n otherwise)
    batch_within_s: float = 0.5
    allowed_lateness_s: float | None = None  # None: drift.allowed_lateness_s, else 0
    label_join: bool = True
    label_ttl_s: float = 600.0  # a label must arrive within this much event time after its input
    reference_dir: str = ""  # default: $DRIFTLOOP_HOME/references
    reference_bootstrap_n: int = 10_000
    metrics_port: int = 9108  # 0: no /metrics server
    # interface of /metrics (and of Faust's web server when web_port is set): loopback unless you say otherwise,
    # e.g. "0.0.0.0" for a Prometheus on another host (then protect the port: /metrics has no authentication)
    metrics_host: str = "127.0.0.1"
    web_port: int = 0  # Faust's own web server; 0 picks a free port
    source_partitions: int = 0  # 0: topics.partitions
    internal_partitions: int = 0  # 0: topics.partitions (tables' changelogs get the same count)
    partials_topic: str = ""  # default: <app_id>.partials
    processing_guarantee: str = "at_least_once"  # or exactly_once (see streams/adapters/faust_app.py)
    # A source partition that sent no watermark for this long (wall time) stops holding the global event-time
    # watermark back (Flink's withIdleness); 0: every partition must report before any window closes.
    idle_source_timeout_s: float = 10.0
    max_rows_per_message: int = 500
    # Event times further ahead of the wall clock are dead-lettered with reason "future" (a clock-poisoned
    # producer must not move the watermark years ahead); None or a negative value: no check.
    max_future_s: float | None = 300.0
    # Bounded cardinality (per source partition): model versions beyond these are not tracked; their
    # events are counted (driftloop_untracked_events_total) and one "cardinality" alert says so.
    max_models: int = 100
    max_versions_per_model: int = 20
    # Byte budget of one encoded dead letter: its raw payload is cut to fit (raw_length and raw_sha256 kept);
    # keep it well under the broker's max.message.bytes (1 MiB by default).
    dlq_max_bytes: int = 512 * 1024
    producer_linger_ms: int = 5
    # How records of the inputs and labels topics reach the worker: "batch" hands each fetched batch to
    # one call (streams/adapters/batch_delivery.py, ~10x the events/s); "stream" is Faust's per-message path
    # (agents with stream.take_events(batch_size, within=batch_within_s)).
    delivery: str = "batch"
    # The consumer's fetch_max_wait_ms (Faust fixes it at 1500; only "batch" delivery changes it): an
    # empty partition (the assignor topic, an idle labels topic) holds the broker's one fetch slot this
    # long, and the inputs wait behind it (bench/results/worker_throughput.tuning.md).
    fetch_max_wait_ms: int = 100
    # Python's cyclic GC: young-generation threshold (0: Python's default, 700); see streams/cli/worker.py.
    gc_threshold: int = 50_000
    # Kafka fetch size per partition (Faust consumer_max_fetch_size).
    fetch_max_bytes: int = 4 * 1024 * 1024
    lag_interval_s: float = 5.0
    session_timeout_s: float = 10.0  # a killed worker's partitions move to the others after this long
    retrain: dict = field(default_factory=dict)  # RetrainPolicyConfig fields

    def __post_init__(self) -> None:
        if not 0 <= int(self.metrics_port) <= 65535:
            raise ValueError(f"worker.metrics_port must be a TCP port, 0 to 65535 (0: no /metrics), got {self.metrics_port}")

    def lateness(self, drift_allowed_lateness: float | None) -> float:
        if self.allowed_lateness_s is not None:
            return float(self.allowed_lateness_s)
        return float(drift_allowed_lateness or 0.0)


@dataclass(frozen=True)
class Geometry:
    """Window size, hop and allowed lateness (seconds of event time)."""

    size: float
    hop: float
    lateness: float

    def last_end(self, ts: np.ndarray) -> np.ndarray:
        """End of the latest window containing each event time."""
        return np.floor(ts / self.hop) * self.hop + self.size

    def closed(self, end: float, watermark: float | None) -> bool:
        return watermark is not None and end + self.lateness <= watermark


def mv_key(model: str, version: str) -> str:
    """The (model, version) key of state dicts, message keys and table keys (:mod:`streams.contracts.keys`)."""
    return model_key(model, version)


def mv_parts(mv: str) -> tuple[str, str]:
    """Inverse of :func:`mv_key`."""
    k = ModelKey.decode(mv)
    return k.model, k.version


def win_str(start: float, end: float) -> str:
    return f"{float(start)!r}|{float(end)!r}"


def win_parse(s: str) -> tuple[float, float]:
    a, b = s.split("|")
    return float(a), float(b)


# --------------------------------------------------------------------------- engine port


class EnginePort:
    """What the worker needs from the drift engine; :func:`engine_port` builds the real one.

    ``accumulate(profile, events, mv=None)`` (``mv``: the (model, version) of every event, when known)
    and ``accumulate_labelled(profile, examples)`` return
    {WindowKey: WindowAccumulator}; ``acc_from_dict(d)``; ``new_judge(profile)`` returns an
    object with ``judge(key, acc) -> list[Alert]``, ``state_dict()`` and ``load_state_dict(d)``;
    ``build_profile(events, model, version)``; ``profile_from_dict(d)``;
    ``window_key(model, version, start, end, stream)``.
    """

    def __init__(self, **fns: Callable[..., Any]) -> None:
        for name in ("accumulate", "accumulate_labelled", "acc_from_dict", "new_judge", "build_profile",
                     "profile_from_dict", "window_key"):
            if name not in fns:
                raise TypeError(f"EnginePort needs {name}")
        self.__dict__.update(fns)


# --------------------------------------------------------------------------- records on the internal topic


def partial_record(src: int, stream: str, model: str, version: str, window: str, mode: str, n: int, acc: dict | None) -> dict:
    return {"type": "partial", "src": src, "stream": stream, "model": model, "version": version,
            "window": window, "mode": mode, "n": n, "acc": acc}


def rows_record(src: int, model: str, version: str, window: str, rows: list[list[Any]]) -> dict:
    """``rows``: [offset, event dict] pairs of one window of a version without a profile."""
    return {"type": "rows", "src": src, "stream": INPUTS, "model": model, "version": version, "window": window, "rows": rows}


def watermark_record(src: int, stream: str, wm: float | None, idle: bool = False) -> dict:
    """Watermark of source partition ``src``; ``idle``: the partition stops holding the global watermark back."""
    rec = {"type": "wm", "src": src, "stream": stream, "wm": wm}
    if idle:
        rec["idle"] = True
    return rec


def compact_event(ev: InferenceEvent) -> dict[str, Any]:
    return ev.to_dict()


# --------------------------------------------------------------------------- source side


# --------------------------------------------------------------------------- aggregator side


# --------------------------------------------------------------------------- label join


# --------------------------------------------------------------------------- the real engine


def engine_port(drift_config: Any, slo: Any = None) -> EnginePort:
    """An :class:`EnginePort` on :class:`streams.judge.engine.DriftEngine` (one engine per reference profile;
    ``slo``: the :class:`streams.judge.slo.SloConfig` its judges alert burn rates with)."""
    from streams.judge.engine import DriftEngine
    from streams.judge.profile import ReferenceProfile
    from streams.judge.profile_build import build_profile
    from streams.judge.windows import WindowAccumulator, WindowKey

    engines: dict[str, Any] = {}

    def _engine(profile: Any) -> Any:
        eng = engines.get(profile.id)
        if eng is None:
            if len(engines) > 256:
                engines.clear()
            eng = engines[profile.id] = DriftEngine(drift_config, [profile])
        return eng

    def new_judge(profile: Any) -> Any:
        eng = DriftEngine(drift_config, [profile])
        if slo is not None:
            eng.slo = slo
        return eng

    def build(events: Sequence[InferenceEvent], model: str, version: str) -> Any:
        return build_profile(list(events), model, version, n_bins=drift_config.n_bins, fine_bins=drift_config.fine_bins, top_k=drift_config.top_k,
                             source="worker-bootstrap")

    return EnginePort(
        accumulate=lambda profile, events, mv=None: _engine(profile).accumulate(events, mv=mv),
        accumulate_labelled=lambda profile, examples: _engine(profile).accumulate_labelled(examples),
        acc_from_dict=WindowAccumulator.from_dict,
        new_judge=new_judge,
        build_profile=build,
        profile_from_dict=ReferenceProfile.from_dict,
        window_key=lambda m, v, s, e, stream: WindowKey(m, v, s, e, stream),
    )
