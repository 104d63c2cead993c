"""The dispatcher's live step (trainers/dispatch/live_step.py) on a real registry folder: the live gate's verdicts
carried out (promote, reject, rollback, end of watch), their model updates and alerts, a verdict redone after a
crash, a verdict overtaken by a person.  No broker (tests/test_live_promotion.py runs it on one)."""

from __future__ import annotations

import json

import pytest

from tests.test_live_gate import examples
from trainers.dispatch.live_step import LiveStep
from trainers.promotion.live_gate import LiveGateConfig
from trainers.records import ModelUpdate

MODEL = "m"
CFG = LiveGateConfig(min_samples=200, max_samples=2000, watch_s=600.0)


def registry_with(tmp, versions=("1", "2"), model=MODEL):
    """A registry holding small versions of ``model``, the first promoted; the others passed the offline gate."""
    from trainers.registry import ModelRegistry, Provenance
    from trainers.training.models import ModelSpec, build_model

    reg = ModelRegistry(tmp / "registry", key=None)
    spec = ModelSpec(["amount"], 2, hidden=(4,))
    for i, v in enumerate(versions):
        info = reg.register(model, spec, build_model(spec, seed=i).state_dict(), report={"promoted": True},
                            provenance=Provenance(parent_version=versions[i - 1] if i else None,
                                                  base_model={"source": "scratch", "licence": "Apache-2.0"}))
        assert info.version == v
    reg.promote(model, versions[0], actor="test", reason="base")
    return reg


class Published:
    def __init__(self):
        self.updates, self.alerts = [], []

    def kw(self):
        return {"publish_update": self.updates.append, "publish_alert": self.alerts.append}


def step_for(tmp, reg, pub, cfg=CFG):
    return LiveStep.open(cfg, reg, tmp / "live_gate.json", **pub.kw())


def test_a_better_candidate_in_shadow_is_promoted_and_then_watched(tmp_path):
    reg, pub = registry_with(tmp_path), Published()
    reg.start_shadow(MODEL, "2", actor="retrain job", reason="passed the gate")
    step = step_for(tmp_path, reg, pub)  # the evaluation starts from the registry's shadow
    verdicts = step.handle([], examples(2000, 0.78, 0.90))
    assert [v.action for v in verdicts] == ["promote"]
    assert reg.current(MODEL) == "2" and reg.shadow(MODEL) is None and reg.watch(MODEL)["parent"] == "1"
    assert reg.info(MODEL, "2").live_verdict["verdict"] == "promoted"
    assert [(u.action, u.version, u.shadow) for u in pub.updates] == [("promote", "2", "1")]
    assert pub.alerts == []
    assert step.gate.evaluations[MODEL].kind == "watch"  # fed at once: the next examples count for the watch
    assert json.loads((tmp_path / "live_gate.json").read_text())["evaluations"][MODEL]["kind"] == "watch"


def test_a_worse_candidate_is_rejected_with_an_alert(tmp_path):
    reg, pub = registry_with(tmp_path), Published()
    reg.start_shadow(MODEL, "2")
    step_for(tmp_path, reg, pub).handle([], examples(2000, 0.92, 0.80))
    assert reg.current(MODEL) == "1" and reg.shadow(MODEL) is None
    assert reg.info(MODEL, "2").live_verdict["verdict"] == "rejected"
    assert [(u.action, u.version, u.shadow) for u in pub.updates] == [("reject", "1", None)]
    [alert] = pub.alerts
    assert (alert.kind, alert.model_version, alert.severity) == ("shadow_rejected", "2", "warning")
    assert alert.score > CFG.max_error_increase and alert.reference.id == "live:v1"
    json.loads(alert.to_json())  # the evidence is plain JSON


def test_a_degraded_promotion_is_rolled_back_and_a_healthy_one_kept(tmp_path):
    reg, pub = registry_with(tmp_path, ("1", "2", "3")), Published()
    step = step_for(tmp_path, reg, pub)
    step.handle([reg.promote(MODEL, "2", watch=True).to_dict()], examples(1000, 0.78, 0.92, version="2", shadow="1"))
    assert reg.current(MODEL) == "1" and reg.watch(MODEL) is None
    assert reg.info(MODEL, "2").live_verdict["verdict"] == "rolled_back"
    assert [(u.action, u.version) for u in pub.updates] == [("rollback", "1")]
    assert [(a.kind, a.severity) for a in pub.alerts] == [("rollback", "critical")]
    # v3, healthy: kept when the watch period ends
    step.handle([reg.promote(MODEL, "3", watch=True).to_dict()],
                examples(1000, 0.92, 0.90, version="3", shadow="1", seed=5, t0=10_000.0))
    assert reg.current(MODEL) == "3" and reg.watch(MODEL) is None
    assert reg.info(MODEL, "3").live_verdict["verdict"] == "kept"
    assert [(u.action, u.version, u.shadow) for u in pub.updates][-1] == ("watch_end", "3", None)


def test_a_verdict_redone_after_a_crash_publishes_the_registrys_state_again(tmp_path):
    reg, pub = registry_with(tmp_path), Published()
    reg.start_shadow(MODEL, "2")
    exs = examples(2000, 0.78, 0.90)
    first = step_for(tmp_path, reg, pub)
    state = json.dumps(first.gate.to_dict())
    first.handle([], exs)
    # the dispatcher crashed after the registry moved, before its state was saved: the old state, the same examples
    (tmp_path / "live_gate.json").write_text(state)
    again = step_for(tmp_path, reg, pub)
    assert [v.action for v in again.handle([], exs)] == ["promote"]
    assert reg.current(MODEL) == "2" and len([c for c in reg.changes(MODEL) if c["action"] == "promote"]) == 2  # base+v2
    assert [(u.action, u.version, u.previous_version, u.shadow) for u in pub.updates] == [("promote", "2", "1", "1")] * 2
    # and the redone promotion is watched against its parent, as the first one was
    ev = again.gate.evaluations[MODEL]
    assert (ev.kind, ev.subject, ev.incumbent) == ("watch", "2", "1")
    verdicts = again.handle([], examples(1000, 0.6, 0.95, version="2", shadow="1", seed=8, t0=5000.0))
    assert [v.action for v in verdicts] == ["rollback"] and reg.current(MODEL) == "1"
    assert [v["verdict"] for v in reg.info(MODEL, "2").live_verdicts] == ["promoted"]  # the shadow's evidence kept
    assert reg.info(MODEL, "2").live_verdict["verdict"] == "rolled_back"


def test_a_verdict_overtaken_by_a_person_changes_nothing(tmp_path):
    reg, pub = registry_with(tmp_path, ("1", "2", "3")), Published()
    reg.start_shadow(MODEL, "2")
    step = step_for(tmp_path, reg, pub)
    reg.promote(MODEL, "3", actor="a person", reason="hotfix")  # ends the shadow of v2
    step.handle([], examples(2000, 0.78, 0.90))
    assert reg.current(MODEL) == "3" and pub.updates == []


@pytest.mark.parametrize("action", ["shadow", "promote"])
def test_the_state_of_the_registry_as_an_update_is_a_valid_record(tmp_path, action):
    reg, pub = registry_with(tmp_path), Published()
    if action == "shadow":
        reg.start_shadow(MODEL, "2")
    else:
        reg.promote(MODEL, "2", watch=True)
    update = step_for(tmp_path, reg, pub).present(MODEL, "reject")
    assert ModelUpdate.from_dict(update.to_dict()) == update
    assert (update.action, update.shadow) == (("shadow", "2") if action == "shadow" else ("promote", "1"))


def test_a_promotion_the_licence_gate_refuses_is_reported_not_a_crash(tmp_path):
    from trainers.licences import LicencePolicy
    from trainers.registry import ModelRegistry, Provenance
    from trainers.training.models import ModelSpec, build_model

    reg, pub = ModelRegistry(tmp_path / "registry", key=None), Published()
    spec = ModelSpec(["amount"], 2, hidden=(4,))
    base = {"source": "a wheel", "licence": "LicenseRef-Custom"}
    accepted = LicencePolicy(accept={"a wheel": "tested here"})
    for i in range(2):
        reg.register(MODEL, spec, build_model(spec, seed=i).state_dict(), report={"promoted": True},
                     provenance=Provenance(base_model=dict(base)), licence_policy=accepted)
    reg.promote(MODEL, "1", licence_policy=accepted)
    reg.start_shadow(MODEL, "2", licence_policy=accepted)
    # the operator's policy accepts it: promoted
    LiveStep.open(CFG, reg, tmp_path / "a.json", licence_policy=accepted, **pub.kw()).handle([], examples(2000, 0.78, 0.9))
    assert reg.current(MODEL) == "2"
    # without the acceptance: refused at promotion, logged, nothing published, no exception
    reg.rollback(MODEL)
    reg.start_shadow(MODEL, "2", licence_policy=accepted)
    pub2 = Published()
    LiveStep.open(CFG, reg, tmp_path / "b.json", **pub2.kw()).handle([], examples(2000, 0.78, 0.9, seed=3))
    assert reg.current(MODEL) == "1" and pub2.updates == []


def test_a_watch_the_registry_holds_is_restored_without_the_state_file(tmp_path):
    """The dispatcher restarts on a fresh disk (state file gone, offsets committed): the registry's watch is judged
    again, and a degraded v2 is still rolled back."""
    reg, pub = registry_with(tmp_path), Published()
    reg.promote(MODEL, "2", watch=True, actor="test", reason="passed the gate")
    step = step_for(tmp_path, reg, pub)
    assert (step.gate.evaluations[MODEL].kind, step.gate.evaluations[MODEL].incumbent) == ("watch", "1")
    step.handle([], examples(1000, 0.70, 0.92, version="2", shadow="1"))
    assert reg.current(MODEL) == "1" and reg.info(MODEL, "2").live_verdict["verdict"] == "rolled_back"


def test_an_alert_names_the_check_that_failed(tmp_path):
    """Worse calibration alone: the rejection's alert is about the top-label Brier score, not the error rate."""
    reg, pub = registry_with(tmp_path), Published()
    reg.start_shadow(MODEL, "2")
    step_for(tmp_path, reg, pub).handle([], examples(2000, 0.9, "same", live_conf=0.9, shadow_conf=0.55))
    [alert] = pub.alerts
    assert (alert.kind, alert.metric) == ("shadow_rejected", "brier_increase")
    assert alert.score > CFG.max_calibration_increase and alert.p_value < 0.01
    assert "top-label Brier" in alert.details["reason"]
