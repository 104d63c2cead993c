"""Prometheus metrics of the dispatcher, in a :class:`DispatcherMetrics` object with its own registry.

``driftloop_retrain_jobs_total{model, outcome}``, fed with every result the dispatcher
publishes (:func:`trainers.dispatch.ledger.outcome_of` names the outcome); the alerting rules in
``infra/prometheus/rules/`` page on ``failed`` and open a ticket on repeated ``rejected``.  A model's
series are created at zero on its first request, so ``increase()`` sees its first failure too.
``driftloop_retrain_requests_refused_total{reason}`` counts records refused before anything was submitted
(dead-lettered: not a request, or refused by :func:`trainers.dispatch.validate.check_request`); by reason only,
since a refused request's model name is not to be trusted as a label.

>>> from trainers.records import RetrainResult
>>> m = DispatcherMetrics()
>>> m.count(RetrainResult("rr-1", "fraud", "3", "rejected"))
>>> b'driftloop_retrain_jobs_total{model="fraud",outcome="rejected"} 1.0' in m.render()
True
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest, start_http_server

from trainers.dispatch.ledger import OUTCOMES, outcome_of
from trainers.records import RetrainResult


class DispatcherMetrics:
    """Every metric the dispatcher exports (names prefixed ``driftloop_``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.jobs = Counter("driftloop_retrain_jobs_total", "Retrain requests by how they ended: promoted, kept (passed the "
                            "gate, not promoted), rejected (by the gate or before training), failed (gave up after "
                            "dispatcher.max_attempts); retried counts each failed attempt that was retried",
                            ["model", "outcome"], registry=r)
        self.refusals = Counter("driftloop_retrain_requests_refused_total", "Records on the retrain-requests topic "
                                "refused before submission and dead-lettered, by reason (not a request, malformed "
                                "ids or names, bad window, unknown kind, model or version not in the registry)",
                                ["reason"], registry=r)
        self.live = Counter("driftloop_live_verdicts_total", "Verdicts of the live gate on live labelled traffic: promote "
                            "(a candidate in shadow), reject (it), rollback (a watched promotion), end_watch (kept); "
                            "carried_out=false when the registry had already moved (redone after a restart) or refused",
                            ["model", "verdict", "carried_out"], registry=r)
        self._models: set[str] = set()

    def count(self, result: RetrainResult) -> None:
        """Count one published result (results that end nothing, e.g. ``running``, only create the model's series)."""
        if result.model not in self._models:
            self._models.add(result.model)
            for outcome in OUTCOMES:
                self.jobs.labels(model=result.model, outcome=outcome)
        outcome = outcome_of(result)
        if outcome is not None:
            self.jobs.labels(model=result.model, outcome=outcome).inc()

    def refused(self, reason: str) -> None:
        """Count one refused (dead-lettered) record on the retrain-requests topic."""
        self.refusals.labels(reason=reason).inc()

    def live_verdict(self, model: str, verdict: str, carried_out: bool) -> None:
        """Count one verdict of the live gate (trainers.dispatch.live_step)."""
        self.live.labels(model=model, verdict=verdict, carried_out=str(carried_out).lower()).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def serve(self, port: int, addr: str = "127.0.0.1"):
        """Serve ``/metrics`` on ``addr``:``port``, loopback unless told otherwise (returns the server and its thread)."""
        return start_http_server(port, addr=addr, registry=self.registry)
