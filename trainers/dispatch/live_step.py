"""The dispatcher's live step: the live gate's verdicts carried out on the registry, the model-updates topic
and the alerts topic (a thin shell around :class:`trainers.promotion.live_gate.LiveGate`).

It reads the worker's labelled topic (inputs joined with their labels, each with the shadow prediction its
input carried) and the model-updates topic (which version is live, which is in shadow or watched), and for
each verdict:

- ``promote``: the candidate in shadow becomes live (``registry.promote(..., watch=promotion.watch)``: the
  model update tells servers to keep the parent in shadow while it is watched);
- ``reject``: the candidate is refused (``registry.reject``; servers stop shadowing it); a ``shadow_rejected``
  alert says why;
- ``rollback``: the parent is live again (``registry.rollback`` with the evidence); a ``rollback`` alert;
- ``end_watch``: the promoted version is kept (``registry.end_watch``; servers stop shadowing the parent).

Each model update it publishes is also fed to the gate at once, so the next examples count for the next
evaluation (the same update read back from the topic changes nothing).  Verdicts are idempotent against the
registry (a verdict redone after a crash finds the registry already moved and only re-publishes), and the
gate's state is written atomically after every batch, before the consumer commits: a restart resumes the
evaluations where they were, and examples read again are not counted twice (the gate de-duplicates by
``event_id``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from streams.contracts.events import Alert, AlertReference, AlertWindow
from trainers.promotion.live_gate import END_WATCH, PROMOTE, REJECT, ROLLBACK, LiveGate, LiveGateConfig, LiveVerdict
from trainers.records import ModelUpdate

log = logging.getLogger("driftloop.live")

ACTOR = "live gate (dispatcher)"


def verdict_alert(v: LiveVerdict, cfg: LiveGateConfig, now: float | None = None) -> Alert | None:
    """The alert of a ``reject`` (``shadow_rejected``, warning) or ``rollback`` (critical) verdict; None otherwise.
    Its metric, score and p-value are those of the first failed check (error rate, top-label Brier or a slice's
    error rate: the evidence's ``failed_checks``), its reference the incumbent version; ``details.reason`` says it
    in words."""
    if v.action not in (REJECT, ROLLBACK):
        return None
    ev = v.evidence
    er, w = ev["error_rate"], ev["window"]
    check = next(iter(ev.get("failed_checks") or ()), "error_rate")
    feature, metric, score, threshold, p = None, "error_rate_increase", er["difference"], cfg.max_error_increase, \
        er["p_value"]
    if check == "calibration":
        cal = ev.get("calibration") or {}
        metric, score, threshold, p = "brier_increase", cal.get("difference"), cfg.max_calibration_increase, \
            cal.get("p_value")
    elif check.startswith("slice:"):
        name = check[len("slice:"):]
        s = (ev.get("slices") or {}).get(name) or {}
        feature, metric, score, threshold, p = name, "slice_error_rate_increase", s.get("difference"), \
            cfg.max_slice_error_increase, s.get("p_value")
    elif check == "no_shadow" or ev.get("compared") is False:
        metric, score, p = "not_compared", 0.0, None
    start = w["start"] if w["start"] is not None else 0.0
    return Alert(model=v.model, model_version=v.version, kind="rollback" if v.action == ROLLBACK else "shadow_rejected",
                 feature=feature, metric=metric, score=float(score or 0.0), threshold=threshold, p_value=p,
                 severity="critical" if v.action == ROLLBACK else "warning",
                 window=AlertWindow(start, w["end"] if w["end"] is not None else start, int(er["n"] or 0)),
                 reference=AlertReference(f"live:v{v.incumbent}", int(er.get("n_baseline") or er["n"] or 0)),
                 emitted_at=time.time() if now is None else now,
                 details={"reason": v.reason, "evidence": v.evidence})


class LiveStep:
    """Feeds the gate, carries out its verdicts, keeps its state in ``state_path`` (JSON, atomic)."""

    def __init__(self, gate: LiveGate, registry: Any, state_path: str | os.PathLike, *,
                 publish_update: Callable[[ModelUpdate], None], publish_alert: Callable[[Alert], None],
                 metrics: Any = None, licence_policy: Any = None) -> None:
        self.gate, self.registry = gate, registry
        self.licence_policy = licence_policy  # the operator's ``licences`` section: checked again at promotion
        self.state_path = Path(state_path)
        self.publish_update, self.publish_alert = publish_update, publish_alert
        self.metrics = metrics

    @classmethod
    def open(cls, cfg: LiveGateConfig, registry: Any, state_path: str | os.PathLike, **kw: Any) -> "LiveStep":
        """The step with the state of a former run (if any), and evaluations for the shadows and watches the
        registry holds that the state does not know (a first start, or a state file removed)."""
        p = Path(state_path)
        state = json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None
        step = cls(LiveGate(cfg, state), registry, p, **kw)
        for model in registry.models():
            if model in step.gate.evaluations:
                continue
            shadow, watch, current = registry.shadow(model), registry.watch(model), registry.current(model)
            if shadow and current:
                step.gate.on_update({"model": model, "action": "shadow", "version": current, "shadow": shadow["version"],
                                     "at": shadow.get("since")})
            elif watch and watch.get("version") == current:  # servers shadow the parent while it is watched
                step.gate.on_update({"model": model, "action": "promote", "version": current, "at": watch.get("since"),
                                     "previous_version": watch.get("parent"), "shadow": watch.get("parent")})
        return step

    def save(self) -> None:
        from trainers.registry_records import _write_json_atomic

        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(self.state_path, self.gate.to_dict())

    def handle(self, updates: Iterable[dict[str, Any]], labelled: Iterable[dict[str, Any]]) -> list[LiveVerdict]:
        """One batch: model updates first, then labelled examples; verdicts carried out; state saved."""
        for u in updates:
            self.gate.on_update(u)
        verdicts = self.gate.on_labelled(list(labelled))
        for v in verdicts:
            self.apply(v)
        self.save()
        return verdicts

    def apply(self, v: LiveVerdict) -> ModelUpdate | None:
        """Carry out one verdict on the registry and publish what it changed (model update, alert).

        A verdict the registry already carried out (redone after a crash, before the state was saved) publishes the
        registry's present state again (:meth:`present`), since the first publication may not have happened; one the
        registry's state contradicts (a person promoted or rolled back meanwhile) is logged and counted, never
        applied."""
        from trainers.licences import LicenceError
        from trainers.registry_records import RegistryError

        reg, model = self.registry, v.model
        update = None
        try:
            if v.action == PROMOTE:
                shadow = reg.shadow(model)
                if shadow and shadow.get("version") == v.version:
                    update = reg.promote(model, v.version, watch=self.gate.cfg.watch, actor=ACTOR, reason=v.reason,
                                         evidence=v.evidence, licence_policy=self.licence_policy)
                elif reg.current(model) == v.version:
                    update = self.present(model, PROMOTE)
            elif v.action == REJECT:
                update = reg.reject(model, v.version, evidence=v.evidence, actor=ACTOR, reason=v.reason) \
                    or self.present(model, REJECT)
            elif v.action == ROLLBACK:
                update = reg.rollback(model, actor=ACTOR, reason=v.reason, evidence=v.evidence, version=v.version) \
                    or self.present(model, ROLLBACK)
            elif v.action == END_WATCH:
                update = reg.end_watch(model, v.version, evidence=v.evidence, actor=ACTOR, reason=v.reason) \
                    or self.present(model, "watch_end")
        except (RegistryError, LicenceError) as exc:  # e.g. a person promoted another version meanwhile: never crash
            log.error("live gate: cannot %s %s v%s: %s", v.action, model, v.version, exc)
            if self.metrics is not None:
                self.metrics.live_verdict(model, v.action, carried_out=False)
            return None
        if update is None:
            log.warning("live gate: %s of %s v%s overtaken by the registry (live: v%s); nothing done", v.action, model,
                        v.version, reg.current(model))
        else:
            log.warning("live gate: %s %s v%s: %s", v.action, model, v.version, v.reason)
            self.publish_update(update)
            self.gate.on_update(update.to_dict())
        alert = verdict_alert(v, self.gate.cfg)
        if alert is not None:
            self.publish_alert(alert)
        if self.metrics is not None:
            self.metrics.live_verdict(model, v.action, carried_out=update is not None)
        return update

    def present(self, model: str, action: str) -> ModelUpdate | None:
        """:func:`present_update` of this step's registry."""
        return present_update(self.registry, model, action)


def present_update(registry: Any, model: str, action: str) -> ModelUpdate | None:
    """The registry's present state of ``model`` as a model update (the live version, and what servers shadow: the
    candidate in shadow or the watched version's parent); None without a live version.  Publishing it again is
    always safe (servers and the live gate take it as the same state)."""
    current = registry.current(model)
    if current is None:
        return None
    in_shadow = (registry.shadow(model) or {}).get("version")
    watched = (registry.watch(model) or {}).get("parent")
    shadow = in_shadow or watched
    if shadow is not None and action not in ("shadow", PROMOTE):  # what is shadowed now says which update it is
        action = "shadow" if in_shadow else PROMOTE
    # a watched promotion names its parent, as the first publication did (the gate then watches it again)
    previous = watched if action == PROMOTE and watched else current
    return ModelUpdate(model=model, version=current, previous_version=previous, action=action,
                       sha256=registry.info(model, current).weights_sha256, shadow=shadow)


def poll(step: LiveStep, consumer: Any, *, updates_topic: str, timeout_ms: int = 200,
         on_bad: Callable[[str, Exception], None] | None = None) -> int:
    """One poll of a kafka-python consumer of the labelled and model-updates topics: handle, save, commit.
    Records that are not JSON objects are skipped and logged (the worker validated the labelled records; a foreign
    record on these topics is not ours to dead-letter).  Returns the records read."""
    from streams.contracts.events import InvalidRecord

    batch = consumer.poll(timeout_ms=timeout_ms)
    updates, labelled, n = [], [], 0
    for tp, msgs in sorted(batch.items(), key=lambda kv: kv[0].topic != updates_topic):  # updates first
        for m in msgs:
            n += 1
            try:
                d = json.loads(m.value)
                if not isinstance(d, dict):
                    raise ValueError(f"a JSON {type(d).__name__}, not an object")
                if tp.topic == updates_topic:
                    d = ModelUpdate.from_dict(d).to_dict()  # a record the registry could not have written: skipped
            except (ValueError, UnicodeDecodeError, InvalidRecord) as exc:
                log.warning("live gate: skipped %s[%d]@%d: %s", tp.topic, tp.partition, m.offset, exc)
                if on_bad is not None:
                    on_bad(tp.topic, exc)
                continue
            (updates if tp.topic == updates_topic else labelled).append(d)
    if n:
        step.handle(updates, labelled)
        consumer.commit()
    return n


__all__ = ["LiveStep", "poll", "present_update", "verdict_alert", "ACTOR"]
