"""The parity step of the streaming worker: Feast lookups + the pure parity checker.

The worker calls, per micro-batch of valid inference events::

    alerts = await step.check(events)          # parity alerts (and one "parity unknown" per outage)
    drift_alerts = step.explain(drift_alerts)  # data drift on features with open parity -> explained_by

``check`` never raises for store trouble and never waits longer than the lookup
timeout per model version in the batch: a slow or unreachable store makes parity
"unknown" for the batch (counted, alerted once) and drift detection goes on.

Built from the config file with :func:`from_config` (sections ``features`` and ``parity``)::

    parity:
      enabled: true
      checker: {window_seconds: 60, min_samples: 50, warning_rate: 0.02}
      lookup: {timeout_s: 0.5, cache_ttl_s: 30}
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from streams.contracts.events import Alert, InferenceEvent
from streams.adapters.feast_online import FeastOnlineClient, LookupConfig, StoreUnavailable
from streams.alerts.parity import METRIC_UNKNOWN, ParityChecker, ParityConfig
from streams.alerts.explain import explain

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParitySettings:
    """The ``parity`` config section."""

    enabled: bool = True
    checker: ParityConfig = field(default_factory=ParityConfig)
    lookup: LookupConfig = field(default_factory=LookupConfig)


class ParityMetrics:
    """Prometheus metrics of the parity step, registered on ``registry`` (the worker's)."""

    def __init__(self, registry: Any, prefix: str = "driftloop_parity") -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.lookups = Counter(f"{prefix}_lookups", "Batched online-store lookups by result",
                               ["result"], registry=registry)
        self.latency = Histogram(f"{prefix}_lookup_seconds", "Latency of one batched lookup (cache included)",
                                 buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
                                 registry=registry)
        self.events = Counter(f"{prefix}_events", "Events seen by the parity step by status",
                              ["model", "status"], registry=registry)
        self.cache = Counter(f"{prefix}_cache", "Entity rows answered from the cache (hit) or the store (miss)",
                             ["result"], registry=registry)
        self.mismatch_rate = Gauge(f"{prefix}_mismatch_rate", "Mismatch rate of the last judged window",
                                   ["model", "model_version", "feature"], registry=registry)
        self.unknown = Gauge(f"{prefix}_unknown", "1 while parity is unknown (store slow or down)",
                             ["model", "model_version"], registry=registry)
        self.alerts = Counter(f"{prefix}_alerts", "Parity alerts raised", ["model", "metric"], registry=registry)


class ParityStep:
    """Parity on live traffic: see the module docstring."""

    def __init__(self, client: FeastOnlineClient, config: ParityConfig | None = None,
                 metrics: ParityMetrics | None = None, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.metrics = metrics
        self.checker = ParityChecker(config or ParityConfig(), self._schema_of, clock)
        self._hits = 0
        self._misses = 0
        self._warned_no_service: set[tuple[str, str]] = set()
        self._said_starting = False

    def _schema_of(self, model: str, version: str):
        spec = self.client.cached_spec(model, version)
        return spec.schema if spec is not None else None

    async def start(self, models: Iterable[tuple[str, str]] = ()) -> bool:
        """Open the store ahead of traffic; False (logged) when it cannot be opened now."""
        try:
            await self.client.warmup(list(models))
            return True
        except StoreUnavailable as exc:
            log.warning("parity: feature store not ready (%s); parity stays unknown until it answers", exc)
            return False

    def prepare(self, models: Iterable[tuple[str, str]] = (), timeout_s: float | None = None) -> bool:
        """Open the store before the worker starts consuming (blocking; no event loop needed).
        False (logged) when it cannot be opened now; parity then stays unknown until it answers."""
        try:
            self.client.open_blocking(list(models), timeout_s)
            log.info("parity: feature store open")
            return True
        except StoreUnavailable as exc:
            log.warning("parity: feature store not ready (%s); parity stays unknown until it answers", exc)
            return False

    async def check(self, events: Sequence[InferenceEvent]) -> list[Alert]:
        """Compare the batch with the store; returns parity alerts of the windows that closed."""
        groups: dict[tuple[str, str], list[InferenceEvent]] = {}
        for ev in events:
            groups.setdefault((ev.model, ev.model_version), []).append(ev)
        alerts: list[Alert] = []
        for (model, version), evs in groups.items():
            t0 = time.perf_counter()
            try:
                rows = await self.client.lookup(model, version, [ev.entity for ev in evs])
            except StoreUnavailable as exc:
                if exc.reason == "starting" and not self._said_starting:
                    self._said_starting = True
                    log.info("parity: feature store still opening; events are counted as unchecked meanwhile")
                # while the store is still opening (Feast import, registry load) events are counted, not alerted
                alerts += self.checker.unknown(evs, f"{exc.reason}: {exc}", alert=exc.reason != "starting")
                self._count(model, version, "unknown", len(evs), "unknown", time.perf_counter() - t0)
                continue
            except Exception as exc:  # never let parity take the worker down
                log.exception("parity: lookup failed unexpectedly")
                alerts += self.checker.unknown(evs, f"error: {type(exc).__name__}: {exc}")
                self._count(model, version, "unknown", len(evs), "unknown", time.perf_counter() - t0)
                continue
            if self.client.cached_spec(model, version) is None and (model, version) not in self._warned_no_service:
                self._warned_no_service.add((model, version))
                log.warning("parity: no feature service for model %s version %s; its events are not compared",
                            model, version)
            alerts += self.checker.ingest(evs, rows)
            n_cmp = sum(r is not None for r in rows)
            self._count(model, version, "compared", n_cmp, "ok", time.perf_counter() - t0)
            if len(evs) - n_cmp and self.metrics:
                self.metrics.events.labels(model, "no_entity").inc(len(evs) - n_cmp)
        self._export(alerts)
        return alerts

    def flush(self) -> list[Alert]:
        alerts = self.checker.flush()
        self._export(alerts)
        return alerts

    def open_parity_features(self, model: str, version: str) -> set[str]:
        """Features with an open (or already breaching, not yet judged) parity alert."""
        return set(self.open_parity_alerts(model, version))

    def open_parity_alerts(self, model: str, version: str) -> dict[str, str]:
        """Features with an open (or already breaching, not yet judged) parity alert -> its alert id."""
        return self.checker.open_alerts(model, version, include_pending=True)

    open_features = open_parity_alerts  # the name streams/adapters/faust_app.py documents

    def explain(self, alerts: Iterable[Alert]) -> list[Alert]:
        """:func:`streams.alerts.parity.explain` with this step's open parity alerts."""
        alerts = list(alerts)
        mvs = {(a.model, a.model_version) for a in alerts}
        return explain(alerts, {mv: self.open_parity_alerts(*mv) for mv in mvs},
                       {mv: self.checker.open_since(*mv) for mv in mvs})

    def state_dict(self) -> dict[str, Any]:
        return self.checker.state_dict()

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        self.checker.load_state_dict(d)

    def close(self) -> None:
        self.client.close()

    # -- metrics ---------------------------------------------------------------------------

    def _count(self, model: str, version: str, status: str, n: int, result: str, seconds: float) -> None:
        m = self.metrics
        if m is None:
            return
        m.lookups.labels(result).inc()
        m.latency.observe(seconds)
        m.events.labels(model, status).inc(n)
        m.unknown.labels(model, version).set(1 if (model, version) in self.checker.unknown_models() else 0)
        st = self.client.stats
        m.cache.labels("hit").inc(st.cache_hits - self._hits)
        m.cache.labels("miss").inc(st.cache_misses - self._misses)
        self._hits, self._misses = st.cache_hits, st.cache_misses

    def _export(self, alerts: list[Alert]) -> None:
        m = self.metrics
        if m is None:
            return
        for a in alerts:
            m.alerts.labels(a.model, a.metric).inc()
        for (model, version, feature), (rate, _n) in self.checker.last_rates.items():
            m.mismatch_rate.labels(model, version, feature).set(rate)


def from_config(raw: Mapping[str, Any], registry: Any = None, prepare: bool = False) -> ParityStep | None:
    """The step described by the ``features`` and ``parity`` sections, or ``None`` when
    ``parity.enabled`` is false.  ``registry``: a prometheus CollectorRegistry for its metrics;
    ``prepare``: open the store now (blocking, see :meth:`ParityStep.prepare`)."""
    from feature_repo.settings import load as load_features
    from streams.config import section

    settings = section(ParitySettings, raw.get("parity"), "parity")
    if not settings.enabled:
        return None
    feats = load_features(raw)
    client = FeastOnlineClient.from_repo(feats.repo, feats.online_store, feats.redis_connection or None, settings.lookup)
    metrics = ParityMetrics(registry) if registry is not None else None
    step = ParityStep(client, settings.checker, metrics)
    if prepare:
        step.prepare()
    return step


__all__ = ["ParitySettings", "ParityMetrics", "ParityStep", "from_config", "METRIC_UNKNOWN"]
