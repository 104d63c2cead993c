"""Prometheus metrics of the drift worker, in a :class:`WorkerMetrics` object with its own registry.

No global registry: the app creates one ``WorkerMetrics`` and passes it to the agents;
:meth:`WorkerMetrics.serve` exposes it on ``/metrics`` with ``prometheus_client.start_http_server``.

>>> m = WorkerMetrics()
>>> m.events.labels(topic="t", model="fraud", model_version="1").inc(3)
>>> b"driftloop_events_total" in m.render()
True
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class WorkerMetrics:
    """Every metric the worker exports (names prefixed ``driftloop_``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.events = Counter("driftloop_events_total", "Valid records consumed", ["topic", "model", "model_version"], registry=r)
        self.invalid = Counter("driftloop_invalid_events_total", "Records sent to the dead-letter topic, by reason",
                               ["topic", "reason"], registry=r)
        self.late = Counter("driftloop_late_events_total", "Events later than the allowed lateness (dead-lettered as 'late')",
                            ["topic", "model", "model_version"], registry=r)
        self.paced = Counter("driftloop_paced_total", "Times an inputs or labels partition was paused: it ran ahead of "
                             "the other stream while that one had unread records", ["topic", "partition"], registry=r)
        self.replayed = Counter("driftloop_replayed_records_total", "Records skipped because the state already holds them (after a restart)",
                                ["topic"], registry=r)
        self.window_samples = Gauge("driftloop_window_samples", "Events in the last judged window",
                                    ["model", "model_version", "stream"], registry=r)
        self.labelled = Counter("driftloop_labelled_predictions_total", "Labelled predictions in judged label windows "
                                "(the denominator of the error ratio; hopping windows count a prediction once per window)",
                                ["model", "model_version"], registry=r)
        self.labelled_errors = Counter("driftloop_labelled_errors_total", "Wrong predictions in judged label windows "
                                       "(the numerator of the error ratio, by the reference's error definition)",
                                       ["model", "model_version"], registry=r)
        self.windows_judged = Counter("driftloop_windows_judged_total", "Windows judged", ["model", "model_version", "stream"], registry=r)
        self.partials = Counter("driftloop_partials_total", "Partial window accumulators published / merged / duplicates",
                                ["action"], registry=r)
        self.drift_score = Gauge("driftloop_drift_score", "Latest drift score per feature and metric (from alerts)",
                                 ["model", "model_version", "feature", "metric"], registry=r)
        self.alerts = Counter("driftloop_alerts_total", "Alerts published", ["model", "kind", "severity"], registry=r)
        self.retrain_requests = Counter("driftloop_retrain_requests_total", "Retrain decisions", ["model", "decision"], registry=r)
        self.reference = Gauge("driftloop_reference_info", "1 per model version with its reference source",
                               ["model", "model_version", "source"], registry=r)
        self.reference_windows = Counter("driftloop_reference_bootstrap_events_total",
                                         "Events used to bootstrap a reference (not judged)", ["model", "model_version"], registry=r)
        self.labels = Counter("driftloop_label_join_total", "Label join outcomes", ["outcome"], registry=r)
        self.untracked = Counter("driftloop_untracked_events_total", "Events of model versions beyond worker.max_models / "
                                 "max_versions_per_model (not tracked), by which limit", ["reason"], registry=r)
        self.broken_references = Counter("driftloop_broken_references_total", "Reference profile files that could not be "
                                         "read as the profile of their model version (treated as no reference)", registry=r)
        self.duplicates = Counter("driftloop_duplicate_events_total", "Inputs whose event_id was seen already (a producer's "
                                  "retry): counted once", ["topic"], registry=r)
        self.partitioner_mismatch = Gauge("driftloop_partitioner_mismatch", "1 when the inputs and labels topics were "
                                          "partitioned by different partitioners (labels miss their inputs)", registry=r)
        self.source_idle = Gauge("driftloop_source_idle", "1 while a source partition is idle: it sent no watermark for "
                                 "worker.idle_source_timeout_s and no longer holds the event-time watermark back",
                                 ["partition"], registry=r)
        self.source_records = Counter("driftloop_source_records_total", "Records read per source partition (valid or "
                                      "not): with the watermark, tells a stalled watermark from a quiet partition",
                                      ["stream", "partition"], registry=r)
        self.watermark = Gauge("driftloop_watermark_seconds", "Event-time watermark per source partition", ["stream", "partition"], registry=r)
        self.event_time_lag = Gauge("driftloop_event_time_lag_seconds", "Wall clock minus the watermark", ["stream", "partition"], registry=r)
        self.processing = Histogram("driftloop_batch_processing_seconds", "Micro-batch processing time", ["agent"],
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("driftloop_batch_size", "Records per micro-batch", ["agent"],
                                    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000), registry=r)
        # model quality: label-free estimates (streams.judge.estimate) and SLO burn rates (streams.judge.slo)
        self.estimated_accuracy = Gauge("driftloop_estimated_accuracy", "Label-free accuracy estimate of the last "
                                        "judged input window (calibrated confidence, CBPE-style)",
                                        ["model", "model_version"], registry=r)
        self.realised_accuracy = Gauge("driftloop_realised_accuracy", "Accuracy of the last judged label window",
                                       ["model", "model_version"], registry=r)
        self.estimate_abs_error = Gauge("driftloop_estimate_abs_error", "|estimated - realised| accuracy of the last "
                                        "window whose labels arrived", ["model", "model_version"], registry=r)
        self.estimate_error = Histogram("driftloop_estimate_error", "|estimated - realised| accuracy per window "
                                        "(rate of _sum / _count: the mean estimation error)", ["model"],
                                        buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5), registry=r)
        self.slo_objective = Gauge("driftloop_slo_objective", "Quality objective of each model that has one (slo "
                                   "section: slo.objectives, else slo.default_target when set; none by default): "
                                   "the target of the metric; the alerting rules' error budget is 1 - it",
                                   ["model", "metric"], registry=r)
        self.slo_burn_rate = Gauge("driftloop_slo_burn_rate", "Error-budget burn rate over a burn rate's long or short "
                                   "span of event time, from judged label windows", ["model", "model_version",
                                                                                     "burn_rate", "span"], registry=r)
        self.consumer_lag = Gauge("driftloop_consumer_lag", "Highwater minus committed offset", ["topic", "partition"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def serve(self, port: int, addr: str = "127.0.0.1"):
        """Serve ``/metrics`` on ``addr``:``port``, loopback unless told otherwise (returns the server and its thread)."""
        return start_http_server(port, addr=addr, registry=self.registry)


def read_metrics(url: str, timeout_s: float = 2.0) -> dict[str, float]:
    """Scrape a /metrics endpoint (:func:`parse_metrics`); ``{}`` when it does not answer (e.g. the worker is still
    starting)."""
    import urllib.request

    try:
        text = urllib.request.urlopen(url, timeout=timeout_s).read().decode()
    except OSError:
        return {}
    return parse_metrics(text)


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition (a scrape, or a snapshot file): each series as ``name{labels}`` plus, per metric
    name, the sum over its labels."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        series, value = line.rsplit(" ", 1)
        base = series.split("{", 1)[0]
        if series == base:  # a metric without labels: the series is its own sum
            out[base] = float(value)
            continue
        out[series] = float(value)
        out[base] = out.get(base, 0.0) + float(value)
    return out
