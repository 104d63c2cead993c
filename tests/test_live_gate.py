"""The live gate (trainers/promotion/live_gate.py): shadow verdicts, watch and rollback, calibration, slices,
de-duplication, state round trip and the false-verdict rate on healthy traffic.  Pure: no broker."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trainers.promotion.live_gate import END_WATCH, PROMOTE, REJECT, ROLLBACK, LiveGate, LiveGateConfig
from trainers.promotion.live_statistics import Paired, top_brier


def examples(n, live_acc, shadow_acc=None, *, version="1", shadow="2", model="m", seed=0, t0=0.0, dt=1.0,
             live_conf=None, shadow_conf=None, slice_of=None, prefix="e"):
    """n labelled examples (dicts) of a binary model: the live version right with probability ``live_acc``, the
    shadow one with ``shadow_acc`` (None: no shadow field); confidences as top-label scores when given."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = int(rng.integers(2))
        live_ok = rng.random() < live_acc
        ex = {"event_id": f"{prefix}{seed}-{i}", "model": model, "model_version": version, "ts": t0 + i * dt,
              "label": label, "prediction": label if live_ok else 1 - label,
              "features": {"country": slice_of(i) if slice_of else "DE"}}
        if live_conf is not None:
            ex["scores"] = [1 - live_conf, live_conf]
        if shadow_acc is not None:
            ok = live_ok if shadow_acc == "same" else rng.random() < (shadow_acc(i) if callable(shadow_acc) else shadow_acc)
            ex["shadow"] = {"model_version": shadow, "prediction": label if ok else 1 - label}
            if shadow_conf is not None:
                ex["shadow"]["scores"] = [1 - shadow_conf, shadow_conf]
        out.append(ex)
    return out


def run(gate, exs, batch=50):
    verdicts = []
    for i in range(0, len(exs), batch):
        verdicts += gate.on_labelled(exs[i:i + batch])
    return verdicts


CFG = LiveGateConfig(min_samples=200, max_samples=2000)


def shadow_gate(cfg=CFG):
    gate = LiveGate(cfg)
    gate.on_update({"model": "m", "action": "shadow", "version": "1", "previous_version": "1", "shadow": "2"})
    return gate


def test_a_better_candidate_is_promoted_early():
    verdicts = run(shadow_gate(), examples(2000, 0.78, 0.89))
    assert [(v.action, v.version, v.incumbent) for v in verdicts] == [(PROMOTE, "2", "1")]
    ev = verdicts[0].evidence
    assert ev["looks"] < 10 and ev["paired"] and ev["error_rate"]["n"] == 200 * ev["looks"]  # at a look, before the last
    assert ev["error_rate"]["subject"] < ev["error_rate"]["incumbent"]


def test_a_candidate_worse_live_is_rejected_with_its_evidence():
    verdicts = run(shadow_gate(), examples(2000, 0.90, 0.80))
    assert [v.action for v in verdicts] == [REJECT]
    v = verdicts[0]
    assert "worse on live traffic" in v.reason and "error rate" in v.reason
    assert v.evidence["error_rate"]["p_value"] < v.evidence["alpha"]
    assert v.evidence["failed"]


def test_an_equal_candidate_is_promoted_only_at_max_samples():
    verdicts = run(shadow_gate(), examples(3000, 0.85, 0.85, seed=3))
    assert [v.action for v in verdicts] == [PROMOTE]
    assert verdicts[0].evidence["error_rate"]["n"] == 2000 and verdicts[0].evidence["looks"] == 10


def test_fewer_examples_than_min_samples_decide_nothing():
    assert run(shadow_gate(), examples(199, 0.9, 0.1)) == []


def test_examples_without_the_candidates_shadow_do_not_count():
    gate = shadow_gate()
    assert run(gate, examples(500, 0.9, 0.1, shadow="7")) == []  # another version's shadow
    assert run(gate, examples(500, 0.9, None, seed=1)) == []  # no shadow field
    assert gate.evaluations["m"].paired.n == 0


def test_each_event_is_counted_once():
    gate = shadow_gate()
    exs = examples(150, 0.9, 0.1)
    assert run(gate, exs + exs + exs) == []
    assert gate.evaluations["m"].paired.n == 150


def test_worse_calibration_rejects_at_equal_accuracy():
    # right on the same inputs, the candidate far more confident than it should be (0.99 where 80% are right)
    verdicts = run(shadow_gate(), examples(2000, 0.8, "same", seed=5, live_conf=0.8, shadow_conf=0.99))
    assert [v.action for v in verdicts] == [REJECT]
    assert "Brier" in verdicts[0].reason


def test_a_slice_worse_alone_is_found():
    cfg = LiveGateConfig(min_samples=400, max_samples=2000, slices=("country",), min_slice_samples=100)
    # candidate as good overall except on country=FR (a quarter of the traffic), where it is much worse
    country = lambda i: "FR" if i % 4 == 0 else "DE"  # noqa: E731
    verdicts = run(shadow_gate(cfg), examples(2000, 0.85, lambda i: 0.55 if i % 4 == 0 else 0.93, seed=2,
                                              slice_of=country))
    assert [v.action for v in verdicts] == [REJECT]
    assert "slice country=FR" in verdicts[0].reason
    assert set(verdicts[0].evidence["slices"]) == {"country=DE", "country=FR"}


def promote(gate, parent="1", new="2"):
    gate.on_update({"model": "m", "action": "promote", "version": new, "previous_version": parent, "shadow": parent})


def test_a_degraded_promotion_is_rolled_back_paired():
    gate = LiveGate(CFG)
    promote(gate)
    # served by v2 with v1 in shadow: v2 worse
    verdicts = run(gate, examples(1000, 0.75, 0.90, version="2", shadow="1"))
    assert [(v.action, v.version, v.incumbent) for v in verdicts] == [(ROLLBACK, "2", "1")]
    assert verdicts[0].evidence["paired"] and verdicts[0].evidence["kind"] == "watch"


def test_a_healthy_promotion_ends_its_watch_after_the_period():
    gate = LiveGate(LiveGateConfig(min_samples=200, max_samples=5000, watch_s=600.0))
    promote(gate)
    verdicts = run(gate, examples(1000, 0.9, 0.85, version="2", shadow="1", dt=1.0))
    assert [v.action for v in verdicts] == [END_WATCH]
    assert verdicts[0].evidence["ended_by"] == "promotion.watch_s"
    assert verdicts[0].evidence["window"]["end"] - verdicts[0].evidence["window"]["start"] >= 600


def test_a_watch_without_shadow_compares_with_the_parents_last_outcomes():
    gate = LiveGate(LiveGateConfig(min_samples=300, max_samples=3000, baseline_samples=2000))
    run(gate, examples(3000, 0.9, None, version="1", prefix="before"))  # v1 live: its outcomes are the baseline
    promote(gate)
    ev = gate.evaluations["m"]
    assert ev.baseline.n == 2000  # the last baseline_samples
    verdicts = run(gate, examples(1500, 0.8, None, version="2", seed=9))
    assert [v.action for v in verdicts] == [ROLLBACK]
    assert not verdicts[0].evidence["paired"] and verdicts[0].evidence["error_rate"]["n_baseline"] == 2000


def test_the_watch_of_an_older_promotion_ignores_other_versions():
    gate = LiveGate(CFG)
    promote(gate)
    assert run(gate, examples(1000, 0.1, 0.9, version="1", shadow="2")) == []  # v1's late labels: not the subject


def test_a_rollback_or_reject_update_ends_the_evaluation():
    gate = shadow_gate()
    gate.on_update({"model": "m", "action": "reject", "version": "1", "previous_version": "1"})
    assert "m" not in gate.evaluations
    promote(gate)
    gate.on_update({"model": "m", "action": "rollback", "version": "1", "previous_version": "2"})
    assert "m" not in gate.evaluations


def test_no_second_verdict_after_the_first():
    gate = shadow_gate()
    first = run(gate, examples(400, 0.9, 0.5))
    assert len(first) == 1
    assert run(gate, examples(2000, 0.9, 0.5, seed=4)) == []


def test_state_round_trips_mid_evaluation():
    exs = examples(1200, 0.86, 0.83, seed=11)
    a = shadow_gate()
    run(a, exs[:700])
    b = LiveGate(CFG, json.loads(json.dumps(a.to_dict())))
    rest_a, rest_b = run(a, exs[:1200]), run(b, exs[:1200])  # replayed examples are counted once
    assert [(v.action, v.evidence) for v in rest_a] == [(v.action, v.evidence) for v in rest_b]
    assert a.to_dict() == b.to_dict()


def test_regression_models_count_errors_by_tolerance():
    gate = LiveGate(LiveGateConfig(min_samples=100, max_samples=200, error="absolute", tolerance=1.0))
    gate.on_update({"model": "m", "action": "shadow", "version": "1", "shadow": "2"})
    exs = [{"event_id": f"r{i}", "model": "m", "model_version": "1", "ts": float(i), "label": 10.0,
            "prediction": 10.5, "shadow": {"model_version": "2", "prediction": 12.0 if i % 3 else 10.2}}
           for i in range(200)]
    verdicts = gate.on_labelled(exs)
    assert [v.action for v in verdicts] == [REJECT]


@pytest.mark.parametrize("kind", ["shadow", "watch"])
def test_false_verdicts_on_healthy_traffic_stay_below_alpha(kind):
    """Equal versions, 200 seeded evaluations each run to max_samples: rejections / rollbacks stay rare."""
    cfg = LiveGateConfig(min_samples=200, max_samples=2000, alpha=0.05)
    bad = 0
    for seed in range(200):
        gate = LiveGate(cfg)
        if kind == "shadow":
            gate.on_update({"model": "m", "action": "shadow", "version": "1", "shadow": "2"})
            exs = examples(2000, 0.85, 0.85, seed=seed)
        else:
            promote(gate)
            exs = examples(2000, 0.85, 0.85, version="2", shadow="1", seed=seed)
        verdicts = run(gate, exs, batch=200)
        bad += any(v.action in (REJECT, ROLLBACK) for v in verdicts)
    assert bad / 200 <= 0.05


def test_paired_statistics():
    p = Paired()
    for s, i in [(True, False)] * 30 + [(False, True)] * 5 + [(False, False)] * 465:
        p.add(s, i, None)
    worse, pval, diff = p.worse(0.01, 0.01)
    assert worse and pval < 1e-4 and diff == pytest.approx(25 / 500)
    assert not p.better(0.05)[0]
    assert top_brier(1, [0.2, 0.8], wrong=False) == pytest.approx(0.04)
    assert top_brier(1, None, wrong=False) is None


def test_config_is_checked():
    with pytest.raises(ValueError, match="min_samples"):
        LiveGateConfig(min_samples=0)
    with pytest.raises(ValueError, match="error"):
        LiveGateConfig(error="huber")


def test_the_same_update_again_changes_nothing():
    gate = shadow_gate()
    run(gate, examples(150, 0.9, 0.1))
    gate.on_update({"model": "m", "action": "shadow", "version": "1", "previous_version": "1", "shadow": "2"})
    assert gate.evaluations["m"].paired.n == 150
    promote(gate)
    run(gate, examples(150, 0.9, 0.9, version="2", shadow="1"))
    promote(gate)
    assert gate.evaluations["m"].kind == "watch" and gate.evaluations["m"].paired.n == 150


def test_a_shadow_without_shadow_predictions_is_rejected_saying_why():
    """Inputs served after the shadow began (its update's time, event time on the wall clock) never carry the
    candidate's prediction: rejected once they span watch_s (however many: servers may load a shadow late, or run
    a clock ahead); the late labels of inputs served before do not count."""
    gate = LiveGate(CFG)
    run(gate, examples(100, 0.9, None, prefix="before"))  # the model's traffic up to event time 99
    gate.on_update({"model": "m", "action": "shadow", "version": "1", "shadow": "2", "at": 1000.0})
    verdicts = run(gate, examples(4800, 0.9, None, t0=100.0))  # ts 100..4899: the first 960 predate the shadow
    assert [v.action for v in verdicts] == [REJECT]
    v = verdicts[0]
    assert "shadow` field" in v.reason and "since the shadow began" in v.reason and v.evidence["missing"] == 3601
    assert v.evidence["window"] == {"start": 1060.0, "end": 4660.0}


def test_a_shadow_loaded_late_by_busy_servers_is_not_rejected():
    """50 inputs/s, the servers shadow v2 only 180 s after the update, labels 300 s late: 9,000 labels without the
    candidate's prediction arrive before its first pair, and the equal candidate is still judged on its pairs."""
    gate = LiveGate(LiveGateConfig())
    run(gate, examples(1000, 0.9, None, dt=0.02, prefix="before"))
    gate.on_update({"model": "m", "action": "shadow", "version": "1", "shadow": "2", "at": 20.0})
    late = examples(9000, 0.9, None, t0=20.0, dt=0.02, prefix="late")  # ts 20..200: not shadowed yet
    shadowed = examples(3000, 0.9, "same", t0=200.0, dt=0.02, seed=4)
    assert [v.action for v in run(gate, late + shadowed)] == [PROMOTE]


def test_a_restarted_dispatcher_finds_the_switch_however_late_it_restarts():
    """The evaluation is restored from the registry an hour after the shadow began (first example 3,600 s after
    ``at``): the switch is still the update's time, and a server that publishes no shadow is rejected."""
    gate = LiveGate(CFG)
    gate.on_update({"model": "m", "action": "shadow", "version": "1", "shadow": "2", "at": 1000.0})
    verdicts = run(gate, examples(4000, 0.9, None, t0=4600.0))
    assert [v.action for v in verdicts] == [REJECT] and gate.evaluations["m"].start_ts == 1000.0


def test_a_replay_of_past_event_time_never_takes_the_update_time_for_the_shadows_start():
    gate = LiveGate(CFG)
    run(gate, examples(100, 0.9, None, prefix="before"))
    gate.on_update({"model": "m", "action": "shadow", "version": "1", "shadow": "2", "at": 1.7e9})  # wall clock
    assert run(gate, examples(3000, 0.9, None, t0=100.0)) == []  # no start known: nothing counts against it
    assert [v.action for v in run(gate, examples(2000, 0.8, 0.95, t0=4000.0, seed=2))] == [PROMOTE]


def test_the_parents_late_labels_join_the_watch_baseline():
    """Labels of inputs the parent served before the promotion, arriving after it, are its latest outcomes."""
    gate = LiveGate(LiveGateConfig(min_samples=300, max_samples=3000))
    run(gate, examples(200, 0.9, None, version="1", prefix="early"))
    promote(gate)
    run(gate, examples(500, 0.9, None, version="1", prefix="late", t0=200.0))
    run(gate, examples(500, 0.9, None, version="1", prefix="late", t0=200.0))  # redelivered: counted once
    assert gate.evaluations["m"].baseline.n == 700


def test_a_watch_without_shadow_and_without_a_baseline_waits_and_says_it_could_not_compare():
    gate = LiveGate(LiveGateConfig(min_samples=300, max_samples=3000, watch_s=600.0))
    promote(gate)  # the parent has no labelled outcomes yet
    verdicts = run(gate, examples(1000, 0.5, None, version="2"))
    assert [v.action for v in verdicts] == [END_WATCH]
    assert verdicts[0].evidence["compared"] is False and "without a comparison" in verdicts[0].reason


# ------------------------------------------------------------------ found by the new-user review


def test_scores_that_are_not_probabilities_never_break_the_gate_and_evidence_is_strict_json():
    gate = shadow_gate()
    exs = examples(2000, 0.9, 0.8, live_conf=0.8, shadow_conf=0.7)
    for i, e in enumerate(exs):
        if i % 3 == 0:
            e["scores"] = [1e300, -1e300]
            e["shadow"]["scores"] = [1e100, 3.0]
    verdicts = run(gate, exs)
    assert [v.action for v in verdicts] == [REJECT]
    json.dumps(verdicts[0].evidence, allow_nan=False)
    assert top_brier(1, [4.2, -1.0], wrong=False) is None  # logits: calibration not judged for this example


def test_a_promotion_without_a_watch_is_not_watched():
    gate = LiveGate(CFG)
    gate.on_update({"model": "m", "action": "promote", "version": "2", "previous_version": "1", "shadow": None})
    assert "m" not in gate.evaluations  # a person's plain promotion: the registry does not watch it either
    gate.on_update({"model": "m", "action": "promote", "version": "2", "previous_version": "2", "shadow": "2"})
    assert "m" not in gate.evaluations  # no version is its own parent


def test_a_stale_update_ends_nothing_newer():
    """Updates older (``at``) than the evaluation's own, read again after a restart, change nothing."""
    gate = shadow_gate()
    gate.on_update({"model": "m", "action": "shadow", "version": "1", "previous_version": "1", "shadow": "3",
                    "at": 1000.0})
    gate.on_update({"model": "m", "action": "rollback", "version": "1", "previous_version": "2", "shadow": None,
                    "at": 900.0})
    gate.on_update({"model": "m", "action": "watch_end", "version": "2", "previous_version": "2", "shadow": None,
                    "at": 800.0})
    gate.on_update({"model": "m", "action": "shadow", "version": "1", "previous_version": "1", "shadow": "2",
                    "at": 700.0})
    assert (gate.evaluations["m"].kind, gate.evaluations["m"].subject) == ("shadow", "3")


def test_any_newer_update_that_leaves_no_shadow_ends_the_shadow():
    """A person rolls back (or promotes another version) while a candidate is in shadow: the registry no longer
    shadows it, so the gate stops judging it (no verdict the registry would refuse later)."""
    gate = LiveGate(CFG)
    gate.on_update({"model": "m", "action": "shadow", "version": "2", "shadow": "3", "at": 1000.0})
    run(gate, examples(100, 0.8, 0.9, version="2", shadow="3"))
    gate.on_update({"model": "m", "action": "rollback", "version": "1", "previous_version": "2", "shadow": None,
                    "at": 1100.0})
    assert "m" not in gate.evaluations
    assert run(gate, examples(1000, 0.8, 0.95, version="2", shadow="3", prefix="late")) == []


def test_labels_with_random_delays_do_not_reject_a_shadow_before_its_own_labels_arrive():
    """Labels arrive after exponential delays (mean 30 min, 1 input/s): the oldest late label predates the shadow by
    hours, yet the shadow waits for the labels of the inputs served in it."""
    rng = np.random.default_rng(0)
    start = 30_000.0
    ts = np.arange(0.0, start + 20_000.0)
    arrive = ts + rng.exponential(1800.0, len(ts))
    gate = LiveGate(LiveGateConfig(min_samples=200, max_samples=2000, watch_s=3600.0))
    seen = [i for i in np.argsort(arrive) if arrive[i] < start]
    gate.on_labelled([{"event_id": f"e{i}", "model": "m", "model_version": "1", "ts": float(ts[i]), "label": 1,
                       "prediction": 1} for i in seen])
    gate.on_update({"model": "m", "action": "shadow", "version": "1", "shadow": "2", "at": start})
    later = [i for i in np.argsort(arrive) if arrive[i] >= start]
    exs = [{"event_id": f"e{i}", "model": "m", "model_version": "1", "ts": float(ts[i]), "label": 1,
            "prediction": 1 if i % 5 else 0} for i in later]
    for ex in exs:
        if ex["ts"] >= start + 1.0:
            ex["shadow"] = {"model_version": "2", "prediction": 1}
    verdicts = run(gate, exs)
    assert [v.action for v in verdicts] == [PROMOTE], [v.reason for v in verdicts]


def test_late_labels_of_inputs_served_before_the_shadow_do_not_count_against_it():
    """5 inputs/s with labels 10 min late: 3,000 labels of inputs served before the shadow arrive first."""
    gate = LiveGate(LiveGateConfig())  # max_samples 3000, watch_s 3600
    gate.on_update({"model": "m", "action": "shadow", "version": "1", "shadow": "2"})
    before = examples(3000, 0.80, None, dt=0.2, prefix="old")
    after = examples(3000, 0.80, 0.95, t0=600.0, dt=0.2, prefix="new", seed=1)
    verdicts = run(gate, before + after)
    assert [v.action for v in verdicts] == [PROMOTE], [v.reason for v in verdicts]
    ev = verdicts[0].evidence
    assert ev["window"]["start"] >= 600.0 and ev["error_rate"]["n"] <= 3000


def test_a_watch_whose_version_serves_nothing_ends_after_its_period_of_the_models_traffic():
    """The servers never loaded v2: v1 goes on serving for watch_s after the promotion; the watch ends (kept
    unjudged, saying so) instead of blocking every later candidate."""
    gate = LiveGate(LiveGateConfig(watch_s=3600.0))
    run(gate, examples(100, 0.9, None, prefix="before"))
    gate.on_update({"model": "m", "action": "promote", "version": "2", "previous_version": "1", "shadow": "1",
                    "at": 100.0})
    verdicts = run(gate, examples(4000, 0.9, None, t0=100.0, prefix="after"))
    assert [v.action for v in verdicts] == [END_WATCH]
    assert verdicts[0].evidence["compared"] is False and "do the servers serve v2" in verdicts[0].reason
    assert verdicts[0].evidence["window"] == {"start": 100.0, "end": 3700.0}


@pytest.mark.parametrize("delay", [7200.0, 30_000.0])
def test_the_parents_late_labels_never_end_a_watch_however_late_they_come(delay):
    """Labels 2 h late (more than watch_s), or a quiet night before the promotion: the parent's labels that arrive
    afterwards are of inputs it served before the promotion, so the watch waits for v2's and rolls it back."""
    gate = LiveGate(LiveGateConfig(min_samples=200, max_samples=2000, watch_s=3600.0))
    run(gate, examples(1000, 0.85, None, prefix="p"))  # labelled up to event time 999
    switch = 1000.0 + delay
    gate.on_update({"model": "m", "action": "promote", "version": "2", "previous_version": "1", "shadow": "1",
                    "at": switch})
    assert run(gate, examples(int(delay) // 2, 0.85, None, t0=1000.0, dt=2.0, prefix="q")) == []
    verdicts = run(gate, examples(2000, 0.60, 0.85, version="2", shadow="1", t0=switch, seed=2))
    assert [v.action for v in verdicts] == [ROLLBACK]


def test_an_evaluation_ends_at_max_samples_even_between_looks():
    gate = LiveGate(LiveGateConfig(min_samples=300, max_samples=1000))
    gate.on_update({"model": "m", "action": "shadow", "version": "1", "shadow": "2"})
    verdicts = run(gate, examples(2000, 0.85, 0.85, seed=5), batch=1)
    assert [v.action for v in verdicts] == [PROMOTE] and verdicts[0].evidence["error_rate"]["n"] == 1000


def test_an_early_promotion_waits_for_every_slice_to_be_checked():
    cfg = LiveGateConfig(min_samples=300, max_samples=3000, slices=("country",), min_slice_samples=200)
    country = lambda i: "DE" if i % 10 == 0 else "FR"  # noqa: E731  (DE: a tenth of the traffic)
    verdicts = run(shadow_gate(cfg), examples(3000, 0.8, lambda i: 0.3 if i % 10 == 0 else 0.97, seed=7,
                                              slice_of=country))
    assert [v.action for v in verdicts] == [REJECT]
    assert "slice country=DE" in verdicts[0].reason and verdicts[0].evidence["error_rate"]["n"] >= 2000


def test_regression_predictions_that_are_all_errors_are_not_compared():
    gate = LiveGate(LiveGateConfig(min_samples=100, max_samples=300))  # error: mismatch on continuous predictions
    gate.on_update({"model": "m", "action": "shadow", "version": "1", "shadow": "2"})
    exs = [{"event_id": f"r{i}", "model": "m", "model_version": "1", "ts": float(i), "label": 10.0 + i,
            "prediction": 11.0 + i, "shadow": {"model_version": "2", "prediction": 1000.0 + i}} for i in range(300)]
    verdicts = gate.on_labelled(exs)
    assert [v.action for v in verdicts] == [REJECT]
    assert "without a comparison" in verdicts[0].reason and "regression" in verdicts[0].reason


def test_an_uncomparable_watch_ends_at_max_samples_and_a_quiet_shadow_at_its_period():
    gate = LiveGate(LiveGateConfig(min_samples=100, max_samples=500, watch_s=10_000.0))
    promote(gate)
    verdicts = run(gate, examples(600, 0.0, None, version="2"))
    assert [(v.action, v.evidence["compared"]) for v in verdicts] == [(END_WATCH, False)]
    gate = LiveGate(LiveGateConfig(min_samples=100, max_samples=500, watch_s=60.0))
    gate.on_update({"model": "m", "action": "shadow", "version": "1", "shadow": "2"})
    verdicts = run(gate, examples(50, 0.9, 0.9, dt=2.0))  # 50 pairs over 100 s: fewer than min_samples
    assert [(v.action, v.evidence["compared"]) for v in verdicts] == [(REJECT, False)]
    assert "labelled examples" in verdicts[0].reason and "not promoted" in verdicts[0].reason


@pytest.mark.parametrize("bad", [{"baseline_samples": -3}, {"watch_s": -5}, {"watch_s": float("nan")},
                                 {"tolerance": -1.0}, {"max_error_increase": float("inf")}, {"min_slice_samples": 0}])
def test_config_ranges_are_checked(bad):
    with pytest.raises(ValueError, match="promotion." + next(iter(bad))):
        LiveGateConfig(**bad)


def test_slices_survive_odd_features_and_track_a_bounded_number_of_values():
    from trainers.promotion.live_gate import MAX_SLICE_VALUES

    gate = LiveGate(LiveGateConfig(min_samples=100, max_samples=3000, slices=("country",)))
    gate.on_update({"model": "m", "action": "shadow", "version": "1", "shadow": "2"})
    odd = [dict(e, features="x") for e in examples(50, 0.9, 0.9, prefix="odd")]
    many = examples(500, 0.9, 0.9, slice_of=lambda i: f"c{i}")  # a new value on every example
    assert run(gate, odd + many) == []
    assert len(gate.evaluations["m"].slices) == MAX_SLICE_VALUES and gate.evaluations["m"].paired.n == 550


def test_an_update_without_a_time_is_never_stale():
    """A hand-made record without ``at`` (read from the topic as at=0) still ends the shadow it contradicts."""
    gate = LiveGate(CFG)
    gate.on_update({"model": "m", "action": "shadow", "version": "1", "shadow": "2", "at": 1000.0})
    gate.on_update({"model": "m", "action": "rollback", "version": "0", "previous_version": "1", "shadow": None,
                    "at": 0.0})
    assert "m" not in gate.evaluations


def test_a_watch_whose_version_stopped_serving_ends_after_the_parent_served_its_period():
    """v2 served 100 labelled inputs (under min_samples), then the servers went back to v1 for good."""
    gate = LiveGate(LiveGateConfig(min_samples=300, watch_s=3600.0))
    run(gate, examples(100, 0.9, None, prefix="before"))
    gate.on_update({"model": "m", "action": "promote", "version": "2", "previous_version": "1", "shadow": "1",
                    "at": 100.0})
    assert run(gate, examples(100, 0.9, "same", version="2", shadow="1", t0=100.0)) == []
    verdicts = run(gate, examples(4000, 0.9, None, t0=200.0, prefix="back"))
    assert [v.action for v in verdicts] == [END_WATCH] and verdicts[0].evidence["error_rate"]["n"] == 100
    assert verdicts[0].evidence["window"]["end"] - 199.0 >= 3600.0
