"""Bounded cardinality: how many models and versions one source partition tracks.

Every new (model, version) string costs windows, state, changelog writes and /metrics series;
a producer that puts a request id in ``model_version`` would grow all of them without bound.
:class:`CardinalityGuard` admits model versions in the order they appear, up to
``max_models`` models and ``max_versions_per_model`` versions of each; events of the others
are not tracked: the caller counts them (``driftloop_untracked_events_total{reason}``, no
model label), logs the first refused name and raises one ``cardinality`` alert per partition
and reason.  The admitted set is part of the partition's state, so the decision is the same
after a restart (per source partition: a model version is tracked where it is admitted).

>>> g = CardinalityGuard(max_models=1, max_versions_per_model=2)
>>> [g.admit("fraud", v) for v in ("1", "2", "3")], g.admit("churn", "1")
([None, None, 'versions'], 'models')
"""

from __future__ import annotations

from typing import Any, Mapping

from streams.contracts.events import Alert, AlertReference, AlertWindow


class CardinalityGuard:
    """Admitted model versions of one partition (JSON-safe via :meth:`to_dict`)."""

    def __init__(self, max_models: int = 100, max_versions_per_model: int = 20,
                 d: Mapping[str, Any] | None = None) -> None:
        self.max_models, self.max_versions = int(max_models), int(max_versions_per_model)
        d = d or {}
        self.admitted: dict[str, list[str]] = {str(m): list(vs) for m, vs in (d.get("admitted") or {}).items()}
        self.refused: dict[str, int] = dict(d.get("refused") or {})  # reason -> events not tracked
        self._known = {(m, v) for m, vs in self.admitted.items() for v in vs}

    def to_dict(self) -> dict[str, Any]:
        return {"admitted": self.admitted, "refused": self.refused}

    def admit(self, model: str, version: str) -> str | None:
        """None when (model, version) is tracked (admitted now or before), else why not: models or versions."""
        if (model, version) in self._known:
            return None
        versions = self.admitted.get(model)
        if versions is None:
            if len(self.admitted) >= self.max_models:
                return "models"
            versions = self.admitted[model] = []
        if len(versions) >= self.max_versions:
            return "versions"
        versions.append(version)
        self._known.add((model, version))
        return None

    def tracked(self, model: str, version: str) -> bool:
        return (model, version) in self._known


def cardinality_alert(partition: int, why: str, n: int, first: tuple[str, str, float], limit: int, hop: float,
                      size: float, now: float) -> Alert:
    """The one ``cardinality`` alert of a partition and limit (model ``*``: it is about the stream, not a model).

    ``first``: (model, version, event time) of the first refused event; the alert's window is the one
    that event falls in, so its id is the same if the batch is processed again."""
    model, version, ts = first
    start = (ts // hop) * hop
    which = "max_models" if why == "models" else "max_versions_per_model"
    return Alert(
        model="*", model_version="*", kind="cardinality", feature=why, metric="untracked_events", score=float(n),
        threshold=float(limit), p_value=None, severity="warning", window=AlertWindow(start, start + size, n),
        reference=AlertReference("worker-limits", limit), emitted_at=now,
        details={"partition": partition, "first_untracked": {"model": model, "model_version": version},
                 "message": f"{model} v{version} and later new ones are not tracked: more than {limit} {why} "
                            f"(worker.{which}); their events are counted in driftloop_untracked_events_total"},
    )


__all__ = ["CardinalityGuard", "cardinality_alert"]
