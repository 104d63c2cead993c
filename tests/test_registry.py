"""Model registry: round trip, integrity (tamper) checks, promote/rollback/list, the CLI."""

from __future__ import annotations

import json

from pathlib import Path

import numpy as np
import pytest
import torch

from trainers.training.models import ModelSpec, build_model
from trainers.registry import (
    MANIFEST, REPLAY, WEIGHTS, IntegrityError, ModelRegistry, Provenance, RegistryError, sha256_file,
)
from trainers.training.replay import ReplayBuffer

SPEC = ModelSpec(["amount", "country"], 3, hidden=(8, 8), categorical={"country": ["DE", "FR"]})


def _register(reg: ModelRegistry, seed: int = 0, parent: str | None = None, request_id: str | None = None,
              with_replay: bool = True, gate: bool | None = None):
    model = build_model(SPEC, seed=seed)
    buf = None
    if with_replay:
        rng = np.random.default_rng(seed)
        buf = ReplayBuffer(20, seed=seed)
        buf.add(rng.normal(size=(30, SPEC.input_dim)).astype("float32"), rng.integers(0, 3, 30))
    prov = Provenance(parent_version=parent, request_id=request_id, alert_ids=["a1", "a2"],
                      window={"start": 100.0, "end": 160.0}, metrics={"promoted": gate},
                      base_model={"source": "trained here on synthetic data", "licence": "Apache-2.0"},
                      reference_profile_id="ref-1")
    report = None if gate is None else {"promoted": gate, "reasons": ["ok" if gate else "forgets"]}
    return model, reg.register("fraud", SPEC, model.state_dict(), provenance=prov, replay=buf,
                               classes=["no", "yes", "maybe"], report=report,
                               report_text=None if gate is None else "gate: ok\n")


def test_round_trip_keeps_weights_spec_replay_and_provenance(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "reg")
    model, info = _register(reg, gate=True, request_id="rr-1")
    assert info.version == "1" and not info.current and info.promoted is True
    loaded = reg.load("fraud", "1")
    assert loaded.spec.to_dict() == SPEC.to_dict()
    assert loaded.classes == ["no", "yes", "maybe"]
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict[k], v)
    rebuilt = loaded.build_model()
    x = torch.randn(5, SPEC.input_dim)
    assert torch.allclose(rebuilt(x), model(x))
    assert len(loaded.replay) == 20 and loaded.replay.model_version == "1"
    assert loaded.provenance.alert_ids == ["a1", "a2"]
    assert loaded.provenance.base_model["licence"] == "Apache-2.0"
    assert loaded.provenance.base_model["licence_decision"]["licences"] == ["Apache-2.0"]
    assert loaded.provenance.code_version  # git describe or package version
    assert loaded.report == {"promoted": True, "reasons": ["ok"]}
    manifest = json.loads((Path(info.path) / MANIFEST).read_text())
    assert set(manifest["files"]) == {"weights.safetensors", "spec.json", "replay.npz", "provenance.json",
                                      "report.json", "report.txt"}
    assert reg.find_by_request("fraud", "rr-1") == "1"
    assert reg.find_by_request("fraud", "rr-other") is None


def test_weights_are_safetensors_not_pickles(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    _, info = _register(reg)
    head = (Path(info.path) / WEIGHTS).read_bytes()[:8]
    header_len = int.from_bytes(head, "little")  # safetensors: u64 header length, then JSON
    header = json.loads((Path(info.path) / WEIGHTS).read_bytes()[8:8 + header_len])
    assert "0.weight" in header


@pytest.mark.parametrize("name", [WEIGHTS, REPLAY, "spec.json", "provenance.json"])
def test_tampered_file_is_refused_with_both_hashes(tmp_path: Path, name: str) -> None:
    reg = ModelRegistry(tmp_path)
    _, info = _register(reg)
    path = Path(info.path) / name
    before = sha256_file(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # flip one bit
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as err:
        reg.load("fraud", "1")
    assert err.value.path == str(path)
    assert err.value.expected == before
    assert err.value.actual == sha256_file(path) != before
    assert name in str(err.value) and before in str(err.value)
    with pytest.raises(IntegrityError):
        reg.promote("fraud", "1")


def test_rewritten_manifest_is_refused(tmp_path: Path) -> None:
    """Whoever edits a file and its manifest entry is still caught by the hash in the index."""
    reg = ModelRegistry(tmp_path)
    _, info = _register(reg)
    vdir = Path(info.path)
    w = vdir / WEIGHTS
    w.write_bytes(w.read_bytes()[:-1] + b"\x00")
    manifest = json.loads((vdir / MANIFEST).read_text())
    manifest["files"][WEIGHTS]["sha256"] = sha256_file(w)
    (vdir / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match="manifest.json"):
        reg.verify("fraud", "1")


def test_promote_rollback_and_list(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    for i in range(3):
        _register(reg, seed=i, parent=str(i) if i else None)
    assert [v.version for v in reg.versions("fraud")] == ["1", "2", "3"]
    assert reg.current("fraud") is None
    with pytest.raises(RegistryError, match="no promoted version"):
        reg.load("fraud")
    u1 = reg.promote("fraud", "1")
    assert (u1.version, u1.previous_version, u1.action) == ("1", None, "promote")
    assert u1.sha256 == reg.info("fraud", "1").weights_sha256 == sha256_file(Path(reg.info("fraud", "1").path) / WEIGHTS)
    reg.promote("fraud", "2")
    u3 = reg.promote("fraud", "3")
    assert (u3.version, u3.previous_version) == ("3", "2")
    assert reg.load("fraud").info.version == "3"
    assert [v.current for v in reg.versions("fraud")] == [False, False, True]
    back = reg.rollback("fraud")
    assert (back.version, back.previous_version, back.action) == ("2", "3", "rollback")
    assert reg.rollback("fraud").version == "1"
    with pytest.raises(RegistryError, match="no earlier promoted version"):
        reg.rollback("fraud")
    with pytest.raises(RegistryError, match="already current"):
        reg.promote("fraud", "1")
    with pytest.raises(RegistryError, match="no version '9'"):
        reg.promote("fraud", "9")
    assert reg.models() == ["fraud"]


def test_names_cannot_escape_the_registry(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path / "r")
    with pytest.raises(RegistryError, match="not allowed"):
        reg.register("../evil", SPEC, build_model(SPEC).state_dict())
    with pytest.raises(RegistryError, match="not allowed"):
        reg.load("fraud", "../../x")


def test_failed_registration_leaves_no_half_version(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)

    class Boom:
        def save(self, path):
            Path(path).write_bytes(b"partial")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        reg.register("fraud", SPEC, build_model(SPEC).state_dict(), replay=Boom())
    mdir = tmp_path / "fraud"
    assert list((mdir / "versions").iterdir()) == []
    assert not [p for p in mdir.iterdir() if p.name.startswith(".stage-")]
    _, info = _register(reg)
    assert info.version == "1"


def test_orphan_folder_does_not_reuse_its_number(tmp_path: Path) -> None:
    """A version folder renamed into place whose index update was lost (crash) is never overwritten."""
    reg = ModelRegistry(tmp_path)
    _register(reg)
    (tmp_path / "fraud" / "versions" / "2").mkdir()
    _, info = _register(reg, seed=1)
    assert info.version == "3"


def test_serving_history_says_what_was_live_when_who_changed_it_and_why(tmp_path: Path, capsys) -> None:
    import time

    from streams.cli.main import main

    reg = ModelRegistry(tmp_path)
    _register(reg)
    _register(reg, seed=1, parent="1", request_id="rr-7")
    before = time.time()
    reg.promote("fraud", "1", actor="ops", reason="first version")
    mid = time.time()
    reg.promote("fraud", "2", actor="retrain job (request rr-7)", reason="passed the gate")
    reg.rollback("fraud", actor="oncall", reason="worse live accuracy")
    changes = reg.changes("fraud")
    assert [(c["action"], c["version"], c["previous"], c["actor"], c["reason"]) for c in changes] == [
        ("promote", "1", None, "ops", "first version"), ("promote", "2", "1", "retrain job (request rr-7)",
                                                         "passed the gate"),
        ("rollback", "1", "2", "oncall", "worse live accuracy")]
    assert changes[1]["weights_sha256"] == reg.info("fraud", "2").weights_sha256 and changes[1]["request_id"] == "rr-7"
    assert changes[1]["replay_sha256"] == json.loads((Path(reg.info("fraud", "2").path) / "manifest.json").read_text()
                                                     )["files"]["replay.npz"]["sha256"]
    assert reg.served_at("fraud", before - 1) is None and reg.served_at("fraud", mid) == "1"
    assert reg.served_at("fraud", changes[1]["at"]) == "2" and reg.served_at("fraud", time.time()) == "1"
    assert main(["models", "--registry", str(tmp_path), "history", "fraud"]) == 0
    out = capsys.readouterr().out
    assert "rollback  v1 (was v2)  by oncall" in out and "why: worse live accuracy" in out
    assert "promote   v1 (first)  by ops" in out and "None" not in out
    assert main(["models", "--registry", str(tmp_path), "history", "fraud", "--at", str(mid), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == "1"
    assert main(["models", "--registry", str(tmp_path), "history", "fraud", "--at", "nan"]) == 2
    assert main(["models", "--registry", str(tmp_path), "history", "nope"]) == 2
    assert "'nope' is not in the registry (fraud)" in capsys.readouterr().err


def test_models_cli_list_show_promote_rollback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from streams.cli.main import main

    reg = ModelRegistry(tmp_path)
    _register(reg, gate=True)
    _register(reg, seed=1, parent="1", request_id="rr-x", gate=False)
    base = ["models", "--registry", str(tmp_path)]
    assert main(base + ["promote", "fraud", "1", "--no-publish"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == "1"
    assert main(base + ["promote", "fraud", "2", "--no-publish"]) == 0
    capsys.readouterr()
    assert main(base + ["list", "fraud"]) == 0
    out = capsys.readouterr().out
    assert "* 2" in out and "rejected" in out and "rr-x" in out
    assert main(base + ["show", "fraud", "2"]) == 0
    out = capsys.readouterr().out
    assert "integrity:    ok" in out and "Apache-2.0" in out and "gate: ok" in out
    assert main(base + ["rollback", "fraud", "--no-publish"]) == 0
    assert json.loads(capsys.readouterr().out)["action"] == "rollback"
    assert reg.current("fraud") == "1"
    w = Path(reg.info("fraud", "2").path) / WEIGHTS
    w.write_bytes(b"x" + w.read_bytes()[1:])
    assert main(base + ["show", "fraud", "2"]) == 1
    assert "integrity check failed" in capsys.readouterr().err


def test_register_base_trains_from_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from streams.cli.main import main

    rng = np.random.default_rng(0)
    data = tmp_path / "base.jsonl"
    with data.open("w") as fh:
        for i in range(120):
            a = float(rng.normal())
            fh.write(json.dumps({"event_id": f"e{i}", "model": "fraud", "model_version": "0", "ts": 1000 + i,
                                 "features": {"amount": a, "country": "DE" if i % 2 else "FR"},
                                 "label": "yes" if a > 0 else "no"}) + "\n")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(dict(ModelSpec(["amount", "country"], 2, hidden=(8,),
                                              categorical={"country": ["DE", "FR"]}).to_dict(), classes=["no", "yes"])))
    reg_dir = tmp_path / "reg"
    cmd = ["models", "--registry", str(reg_dir), "register-base", "fraud", "--spec", str(spec), "--train", str(data),
           "--source", "synthetic", "--licence", "CC0-1.0", "--epochs", "3", "--replay-capacity", "40",
           "--promote", "--no-publish"]
    # CC0 is not an OSI licence: refused with the reason and the way to accept it, nothing registered
    assert main(cmd) == 1
    err = capsys.readouterr().err
    assert "licence CC0-1.0 is not allowed" in err and "licences: {accept: {synthetic:" in err
    assert not (reg_dir / "fraud" / "versions").exists() or not list((reg_dir / "fraud" / "versions").iterdir())
    cfg = tmp_path / "config.yaml"
    cfg.write_text("licences:\n  accept:\n    synthetic: public-domain synthetic data, reviewed\n")
    rc = main(["--config", str(cfg)] + cmd)
    assert rc == 0, capsys.readouterr()
    loaded = ModelRegistry(reg_dir).load("fraud")
    assert loaded.info.version == "1" and loaded.info.current
    assert loaded.classes == ["no", "yes"] and len(loaded.replay) == 40
    decision = loaded.provenance.base_model.pop("licence_decision")
    assert decision["accepted"] and decision["acceptance"] == "public-domain synthetic data, reviewed"
    assert loaded.provenance.base_model == {"source": "synthetic", "licence": "CC0-1.0"}
    assert loaded.provenance.window == {"start": 1000.0, "end": 1119.0}



# --------------------------------------------------------------------------- the retrain job (in-process, no Ray)


def _window(n: int, seed: int, region: float, rule: int):
    from trainers.data import WindowData
    from streams.contracts.events import LabelledExample

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2)).astype("float32")
    X[:, 0] += region
    y = (X[:, rule] > 0).astype(int)
    ex = [LabelledExample(f"e{seed}-{i}", "toy", "1", 100.0 + i, {"a": float(X[i, 0]), "b": float(X[i, 1])},
                          ["no", "yes"][y[i]], entity=None) for i in range(n)]
    return X, y, WindowData(ex, {"selected": n})


def test_retrain_job_registers_candidate_with_provenance_and_is_idempotent(tmp_path: Path) -> None:
    from trainers.records import RetrainRequest
    from trainers.training.continual import ContinualLearner
    from trainers.retrain_job import TrainerConfig, run_job

    reg = ModelRegistry(tmp_path)
    spec = ModelSpec(["a", "b"], 2, hidden=(16,))
    X, y, _ = _window(300, 0, -2.0, 1)
    base = ContinualLearner(build_model(spec, seed=0), replay=ReplayBuffer(100, seed=0), epochs=10, device="cpu")
    base.fit(X, y)
    v1 = reg.register("toy", spec, base.model.state_dict(), replay=base.replay, classes=["no", "yes"],
                      provenance=Provenance(base_model={"source": "test", "licence": "MIT"}, reference_profile_id="r1"))
    reg.promote("toy", v1.version)
    _, _, data = _window(300, 1, 2.0, 0)
    req = RetrainRequest("toy", "1", ["al-1"], ["concept_drift"], 100.0, 400.0)
    cfg = TrainerConfig(min_examples=50, learner={"epochs": 10},
                        gate={"min_improvement_new": 0.05, "max_forgetting_old": 0.15, "max_ece": 0.5})
    out = run_job(req, reg, cfg, data, use_ray=False)
    assert out.new_version == "2" and out.status == "succeeded", out
    assert out.promoted and out.update is not None and out.update.version == "2" and reg.current("toy") == "2"
    new = reg.load("toy", "2")
    prov = new.provenance
    assert (prov.parent_version, prov.request_id, prov.alert_ids) == ("1", req.request_id, ["al-1"])
    assert prov.base_model["licence_decision"]["allowed"] and not prov.base_model["licence_decision"]["accepted"]
    prov.base_model.pop("licence_decision")
    assert prov.base_model == {"source": "test", "licence": "MIT"}
    assert prov.reference_profile_id is None  # no references folder given: none built, and the parent's is not v2's
    assert prov.training["n_holdout_old"] > 0 and prov.training["n_holdout_new"] == 60
    assert new.report["promoted"] is True and new.classes == ["no", "yes"]
    assert len(new.replay) == 100 and len(new.replay.experience_counts()) == 2  # old rows kept + new experience

    again = run_job(req, reg, cfg, data, use_ray=False)  # redelivered to the job itself: nothing trains
    assert again.new_version == "2" and "not trained again" in again.report["note"]
    assert [v.version for v in reg.versions("toy")] == ["1", "2"]


def test_retrain_job_with_too_little_data_registers_nothing(tmp_path: Path) -> None:
    from trainers.records import RetrainRequest
    from trainers.retrain_job import TrainerConfig, run_job

    reg = ModelRegistry(tmp_path)
    spec = ModelSpec(["a", "b"], 2, hidden=(4,))
    reg.promote("toy", reg.register("toy", spec, build_model(spec).state_dict(), classes=["no", "yes"]).version)
    _, _, data = _window(20, 1, 0.0, 0)
    out = run_job(RetrainRequest("toy", "1", ["x"], ["data_drift"], 0.0, 1e9), reg, TrainerConfig(min_examples=50),
                  data, use_ray=False)
    assert out.status == "rejected" and "insufficient data: 20" in out.error and out.new_version is None
    assert [v.version for v in reg.versions("toy")] == ["1"]
