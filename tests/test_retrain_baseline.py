"""The retrain job trains a plain fine-tuned baseline next to the candidate and the gate compares them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from trainers.retrain_job import (
    BASELINE_PLAIN, TrainerConfig, baseline_learner_kwargs, run_job, split_indices, subset_buffer, train_and_gate,
)
from trainers.training.continual import ContinualLearner
from trainers.training.models import ModelSpec, build_model
from trainers.training.replay import ReplayBuffer

SPEC = ModelSpec(["a", "b"], 2, hidden=(16,))
#: only the baseline rule can refuse: no gain needed, any forgetting and calibration allowed; and it judges the
#: new data only, because the new concept here contradicts the old one, so plain fine-tuning forgets the old
#: data and the combined rule would (rightly) keep a candidate that does not (tests/test_gate.py covers that)
ONLY_BASELINE = {"min_improvement_new": -1.0, "max_forgetting_old": 1.0, "max_ece": None, "baseline_old_weight": 0.0}


def _data(n: int, seed: int, rule: int):
    """2 features; the label is the sign of feature ``rule`` (0 or 1): changing it is a concept shift."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2)).astype("float32")
    return X, (X[:, rule] > 0).astype("int64")


def _payload(learner: dict, baseline_learner: dict | None = None, gate: dict | None = None, baseline: bool = True):
    torch.set_num_threads(1)
    parent = ContinualLearner(build_model(SPEC, seed=0), replay=ReplayBuffer(200, seed=0), epochs=10, device="cpu")
    parent.fit(*_data(400, 0, rule=1))  # the old concept
    rtr, rho = split_indices(len(parent.replay), 0.3, 1)
    held_old = subset_buffer(parent.replay, rho)
    X, y = _data(500, 1, rule=0)  # the new concept
    tr, ho = split_indices(len(y), 0.2, 0)
    return {
        "spec": SPEC.to_dict(),
        "state_dict": {k: v.numpy() for k, v in parent.model.state_dict().items()},
        "replay": subset_buffer(parent.replay, rtr),
        "X_train": X[tr], "y_train": y[tr], "X_new": X[ho], "y_new": y[ho],
        "X_old": held_old.X, "y_old": held_old.y, "slices_new": {},
        "learner": learner, "gate": gate or ONLY_BASELINE, "seed": 0,
        "baseline": baseline, "baseline_learner": baseline_learner or {},
    }


#: a candidate that barely moves from the parent (tiny steps), against a baseline that learns the new concept
WEAK = {"lr": 1e-6, "epochs": 2}
STRONG_BASELINE = {"optimizer": "sgd", "lr": 0.1, "epochs": 20}


def test_baseline_learner_kwargs_keep_the_schedule_and_train_plainly():
    kw = baseline_learner_kwargs({"epochs": 7, "batch_size": 16, "val_fraction": 0.2, "seed": 3, "strategy": "head",
                                  "lr": 0.1, "distill": 0.3, "logit_adjust": 1.0, "replay_batch_size": 64})
    assert {k: kw[k] for k in ("epochs", "batch_size", "val_fraction", "seed", "strategy")} == {
        "epochs": 7, "batch_size": 16, "val_fraction": 0.2, "seed": 3, "strategy": "head"}
    assert kw["optimizer"] == "adam" and kw["lr"] == 1e-3 and kw["distill"] == 0.0 and kw["logit_adjust"] == 0.0
    assert "replay_batch_size" not in kw
    assert baseline_learner_kwargs({"epochs": 7}, {"lr": 0.01, "epochs": 3})["lr"] == 0.01
    assert baseline_learner_kwargs({"epochs": 7}, {"epochs": 3})["epochs"] == 3
    assert baseline_learner_kwargs({}) == BASELINE_PLAIN
    layers = {"strategy": "last_n", "last_n": 1}
    assert baseline_learner_kwargs({"transfer": layers, "lr": 0.1})["transfer"] == layers
    with pytest.raises(ValueError, match="replay"):
        baseline_learner_kwargs({}, {"replay": None})


def test_a_candidate_worse_than_the_baseline_is_refused_with_both_figures():
    out = train_and_gate(_payload(WEAK, STRONG_BASELINE))
    g = out["gate"]
    b = g["baseline"]
    assert b["accuracy_new"] > 0.85 and g["accuracy_new_after"] < 0.75  # the shapes the test relies on
    assert not out["promoted"] and b["below"] is True
    assert len(g["reasons"]) == 1, g["reasons"]
    r = g["reasons"][0]
    assert "loses to the plain fine-tuned baseline" in r
    assert f"candidate new data {100 * g['accuracy_new_after']:.1f}% vs baseline {100 * b['accuracy_new']:.1f}%" in r
    assert f"old data {100 * g['accuracy_old_after']:.1f}% vs {100 * b['accuracy_old']:.1f}%" in r
    assert "plain fine-tuned baseline: new data" in out["gate_text"] and "KEEP current version" in out["gate_text"]

    # the same candidate without the baseline passes this gate: the refusal above is the baseline's
    alone = train_and_gate(_payload(WEAK, STRONG_BASELINE, baseline=False))
    assert alone["promoted"] and alone["baseline"] is None and alone["gate"]["baseline"] is None
    # allowed below the baseline: promoted, and the reasons say so
    allowed = train_and_gate(_payload(WEAK, STRONG_BASELINE, gate=dict(ONLY_BASELINE, allow_below_baseline=True)))
    assert allowed["promoted"] and "allowed because allow_below_baseline is set" in allowed["gate"]["reasons"][0]


def test_result_carries_the_baseline_figures_and_fit_and_leaves_the_buffer_alone():
    p = _payload({"epochs": 10, "min_steps": 0}, {"epochs": 5})  # min_steps is inherited: at most 5 epochs
    exp_before = p["replay"].n_experiences
    out = train_and_gate(p)
    base = out["baseline"]
    assert base["learner"]["optimizer"] == "adam" and base["fit"]["optimizer"] == "adam"
    assert base["learner"]["lr"] == 1e-3 and base["fit"]["lr"] == 1e-3 and base["learner"]["distill"] == 0.0
    assert base["learner"]["epochs"] == 5 and base["learner"]["seed"] == 0
    assert base["fit"]["replay_size_before"] == 0 and base["fit"]["replay_size_after"] == 0
    assert base["fit"]["epochs_run"] <= 5 and base["fit"]["steps"] > 0
    assert base["time_s"] > 0 and base["cpu_s"] >= 0
    # same rows in the same seeded train/validation split as the candidate
    assert (base["fit"]["n_train"], base["fit"]["n_val"], base["fit"]["experience"]) == (
        out["fit"]["n_train"], out["fit"]["n_val"], out["fit"]["experience"])
    # the buffer got the candidate's experience only
    assert exp_before == 1 and out["replay"].n_experiences == 2
    assert sorted(out["replay"].experience_counts()) == list(range(exp_before + 1))
    g = out["gate"]["baseline"]
    for k in ("accuracy_new", "accuracy_old", "margin_new", "margin_old", "margin_combined", "margin_new_se",
              "disagree_new", "forgetting", "below"):
        assert k in g, k
    assert g["margin_new"] == pytest.approx(out["gate"]["accuracy_new_after"] - g["accuracy_new"])
    assert g["training"]["optimizer"] == "adam"
    assert g["training"]["epochs_run"] == base["fit"]["epochs_run"]


def test_run_job_records_the_baseline_in_the_registry(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    from streams.contracts.events import LabelledExample
    from trainers.data import WindowData
    from trainers.records import RetrainRequest
    from trainers.registry import ModelRegistry, Provenance

    torch.set_num_threads(1)
    reg = ModelRegistry(tmp_path)
    base = ContinualLearner(build_model(SPEC, seed=0), replay=ReplayBuffer(100, seed=0), epochs=10, device="cpu")
    base.fit(*_data(300, 0, rule=1))
    reg.promote("toy", reg.register("toy", SPEC, base.model.state_dict(), replay=base.replay, classes=["no", "yes"],
                                    provenance=Provenance(base_model={"source": "test", "licence": "MIT"})).version)
    X, y = _data(300, 1, rule=0)
    data = WindowData([LabelledExample(f"e{i}", "toy", "1", 100.0 + i, {"a": float(X[i, 0]), "b": float(X[i, 1])},
                                       ["no", "yes"][y[i]], entity=None) for i in range(len(y))], {"selected": len(y)})
    req = RetrainRequest("toy", "1", ["al-1"], ["concept_drift"], 100.0, 400.0)
    cfg = TrainerConfig(learner=WEAK, baseline_learner=STRONG_BASELINE, gate=ONLY_BASELINE)
    out = run_job(req, reg, cfg, data, use_ray=False)
    assert out.status == "rejected" and not out.promoted and out.new_version == "2"
    assert "loses to the plain fine-tuned baseline" in out.error
    assert out.report["gate"]["baseline"]["below"] is True
    tb = out.report["training"]["baseline"]
    assert tb["learner"]["lr"] == 0.1 and tb["epochs_run"] >= 1 and tb["wall_s"] > 0
    stored = reg.load("toy", "2")
    assert stored.report["baseline"]["below"] is True and stored.provenance.training["baseline"]["steps"] > 0
    assert reg.current("toy") == "1"

    # allowed below the baseline: promoted, and the job's log says why it might not have been
    req2 = RetrainRequest("toy", "1", ["al-2"], ["concept_drift"], 100.0, 400.0)
    cfg2 = TrainerConfig(learner=WEAK, baseline_learner=STRONG_BASELINE,
                         gate=dict(ONLY_BASELINE, allow_below_baseline=True))
    with caplog.at_level("WARNING", logger="driftloop.retrain_job"):
        out2 = run_job(req2, reg, cfg2, data, use_ray=False)
    assert out2.promoted and reg.current("toy") == "3"
    assert any("passes the gate with reasons" in r.getMessage() and "allow_below_baseline" in r.getMessage()
               for r in caplog.records)


def test_a_bad_learner_or_gate_key_is_refused_at_start_not_inside_the_job():
    from trainers.retrain_job import TrainerConfig, check_trainer_config

    check_trainer_config(TrainerConfig(learner={"transfer": {"strategy": "lora"}, "epochs": 3}))
    for bad, why in (({"learner": {"transfr": {}}}, r"trainers.learner: unknown key\(s\) \['transfr'\]"),
                     ({"learner": {"transfer": {"strategy": "lora", "layers": ["x"]}}}, "trainers.learner.transfer"),
                     ({"gate": {"max_baseline_gapp": 1}}, "trainers.gate"),
                     ({"baseline_learner": {"nope": 1}}, "trainers.baseline_learner")):
        with pytest.raises(ValueError, match=why):
            check_trainer_config(TrainerConfig(**bad))
