"""The retrain job builds a promoted candidate's own reference profile (issue 16: references follow the served version).

Pure: the job runs in-process (``use_ray=False``), no broker.  The parent learned "label = sign of b"; the window's
concept is "label = sign of a", so the candidate predicts differently from its parent on the same rows.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from streams.adapters.reference_store import ReferenceStore
from streams.contracts.events import LabelledExample
from streams.judge.profile_build import build_profile
from trainers.data import WindowData
from trainers.records import RetrainRequest
from trainers.registry import ModelRegistry, Provenance
from trainers.retrain_job import TrainerConfig, run_job
from trainers.training.continual import ContinualLearner
from trainers.training.models import ModelSpec, build_model
from trainers.training.replay import ReplayBuffer

SPEC = ModelSpec(["a", "b"], 2, hidden=(16,))
CLASSES = ["no", "yes"]
PASS = {"min_improvement_new": 0.05, "max_forgetting_old": 0.15, "max_ece": 0.5}
IMPOSSIBLE = dict(PASS, min_improvement_new=1.0)  # no candidate gains 100 points: rejected


def _window(n: int, seed: int, rule: int) -> tuple[np.ndarray, np.ndarray, WindowData]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2)).astype("float32")
    y = (X[:, rule] > 0).astype("int64")
    ex = [LabelledExample(f"e{seed}-{i}", "toy", "1", 100.0 + i, {"a": float(X[i, 0]), "b": float(X[i, 1])},
                          CLASSES[y[i]], prediction=None, scores=None, entity=None) for i in range(n)]
    return X, y, WindowData(ex, {"selected": n})


def _parent(tmp_path: Path, refs: Path) -> tuple[ModelRegistry, str]:
    """Version 1 (promoted), with its own reference profile saved by (toy, 1)."""
    torch.set_num_threads(1)
    reg = ModelRegistry(tmp_path / "registry")
    base = ContinualLearner(build_model(SPEC, seed=0), replay=ReplayBuffer(100, seed=0), epochs=10, device="cpu")
    X, y, data = _window(300, 0, rule=1)
    base.fit(X, y)
    proba = base.predict_proba(X)
    rows = [LabelledExample(e.event_id, "toy", "1", e.ts, e.features, e.label, CLASSES[int(p.argmax())],
                            tuple(float(v) for v in p)) for e, p in zip(data.examples, proba)]
    v1_ref = build_profile(rows, "toy", "1", source="version 1's predictions")
    ReferenceStore(refs).save(v1_ref)
    v1 = reg.register("toy", SPEC, base.model.state_dict(), replay=base.replay, classes=CLASSES,
                      provenance=Provenance(base_model={"source": "test", "licence": "MIT"},
                                            reference_profile_id=v1_ref.id))
    reg.promote("toy", v1.version)
    return reg, v1_ref.id


def _predicted(reg: ModelRegistry, version: str, X: np.ndarray) -> Counter:
    net = reg.load("toy", version, with_replay=False).build_model().eval()
    with torch.no_grad():
        pred = net(torch.as_tensor(SPEC.encode([{"a": float(a), "b": float(b)} for a, b in X]))).argmax(1).numpy()
    return Counter(CLASSES[int(p)] for p in pred)


def test_a_promoted_candidate_gets_its_own_reference_before_promotion(tmp_path: Path) -> None:
    refs = tmp_path / "references"
    reg, v1_ref_id = _parent(tmp_path, refs)
    X, y, data = _window(300, 1, rule=0)
    req = RetrainRequest("toy", "1", ["al-1"], ["concept_drift"], 100.0, 400.0)
    out = run_job(req, reg, TrainerConfig(min_examples=50, learner={"epochs": 10}, gate=PASS), data, use_ray=False,
                  references=refs)
    assert out.status == "succeeded" and out.promoted and out.new_version == "2" and reg.current("toy") == "2"

    store = ReferenceStore(refs)
    assert store.path("toy", "2").is_file()
    prof = store.get("toy", "2")
    assert prof is not None and prof.model == "toy" and prof.model_version == "2"
    assert prof.n == len(data) == 300  # every row of the window, not only the training split
    # labels (error rate, calibration) only of the 60 rows the candidate did not train on: out of sample
    from trainers.retrain_job import split_indices

    _, held_out = split_indices(300, 0.2, 0)
    assert prof.labels is not None and prof.labels.n == len(held_out) == 60 and prof.labels.calibration is not None
    assert set(prof.features) == {"a", "b"}

    # the predictions are the candidate's (class names, as the server publishes them), not the parent's
    counts = dict(zip(prof.prediction.categories, prof.prediction.counts))
    assert counts == dict(_predicted(reg, "2", X))
    assert counts != dict(_predicted(reg, "1", X))
    assert prof.reference_accuracy == pytest.approx(_predicted_accuracy(reg, "2", X[held_out], y[held_out]))

    prov = reg.load("toy", "2").provenance
    assert prov.reference_profile_id == prof.id != v1_ref_id
    assert out.report["reference_profile"] == {"id": prof.id, "source": prof.source, "n": 300}
    line = f"reference profile {prof.id}: {prof.source}"
    assert line in out.text and line in reg.report_text("toy", "2")
    assert "retrain job " + req.request_id in prof.source
    assert reg.load("toy", "2").report["reference_profile"]["id"] == prof.id

    # a rollback to v1 finds v1's own reference again: references are keyed by (model, version)
    assert store.get("toy", "1").id == v1_ref_id


def _predicted_accuracy(reg: ModelRegistry, version: str, X: np.ndarray, y: np.ndarray) -> float:
    net = reg.load("toy", version, with_replay=False).build_model().eval()
    with torch.no_grad():
        pred = net(torch.as_tensor(SPEC.encode([{"a": float(a), "b": float(b)} for a, b in X]))).argmax(1).numpy()
    return float((pred == y).mean())


def test_a_rejected_candidate_gets_no_reference(tmp_path: Path) -> None:
    refs = tmp_path / "references"
    reg, _ = _parent(tmp_path, refs)
    _, _, data = _window(300, 1, rule=0)
    req = RetrainRequest("toy", "1", ["al-1"], ["concept_drift"], 100.0, 400.0)
    out = run_job(req, reg, TrainerConfig(min_examples=50, learner={"epochs": 3}, gate=IMPOSSIBLE), data,
                  use_ray=False, references=refs)
    assert out.status == "rejected" and out.new_version == "2" and reg.current("toy") == "1"
    assert not ReferenceStore(refs).path("toy", "2").exists()
    assert reg.load("toy", "2").provenance.reference_profile_id is None
    assert out.report["reference_profile"]["id"] is None and "never served" in out.report["reference_profile"]["why"]
    assert "reference profile: none (the candidate did not pass the gate" in out.text


def test_pre_encoded_npz_data_gets_no_reference(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    refs = tmp_path / "references"
    reg, _ = _parent(tmp_path, refs)
    X, y, _ = _window(300, 1, rule=0)
    data = WindowData([], {"selected": 300}, SPEC.encode([{"a": float(a), "b": float(b)} for a, b in X]), y)
    req = RetrainRequest("toy", "1", ["al-1"], ["concept_drift"], 100.0, 400.0)
    with caplog.at_level("INFO", logger="driftloop.retrain_job"):
        out = run_job(req, reg, TrainerConfig(min_examples=50, learner={"epochs": 10}, gate=PASS), data,
                      use_ray=False, references=refs)
    assert out.promoted and out.new_version == "2"
    assert not ReferenceStore(refs).path("toy", "2").exists()
    assert reg.load("toy", "2").provenance.reference_profile_id is None
    assert "npz" in out.report["reference_profile"]["why"]
    assert any("reference profile: none" in r.getMessage() and "npz" in r.getMessage() for r in caplog.records)


def test_no_references_folder_builds_none(tmp_path: Path) -> None:
    reg, _ = _parent(tmp_path, tmp_path / "references")
    _, _, data = _window(300, 1, rule=0)
    req = RetrainRequest("toy", "1", ["al-1"], ["concept_drift"], 100.0, 400.0)
    out = run_job(req, reg, TrainerConfig(min_examples=50, learner={"epochs": 10}, gate=PASS), data, use_ray=False)
    assert out.promoted and reg.load("toy", "2").provenance.reference_profile_id is None
    assert not ReferenceStore(tmp_path / "references").path("toy", "2").exists()


def test_the_job_saves_where_the_worker_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.adapters.faust_app import load_settings
    from trainers.reference import reference_settings

    monkeypatch.setenv("DRIFTLOOP_HOME", str(tmp_path / "home"))
    folder, options = reference_settings({})
    assert folder == load_settings({}).reference_dir == (tmp_path / "home" / "references").resolve()
    assert options == {"n_bins": 10, "fine_bins": 100, "top_k": 20}
    raw = {"worker": {"reference_dir": str(tmp_path / "elsewhere")}, "drift": {"top_k": 5}}
    folder, options = reference_settings(raw)
    assert folder == load_settings(raw).reference_dir == tmp_path / "elsewhere" and options["top_k"] == 5
