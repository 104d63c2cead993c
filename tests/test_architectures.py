"""Architecture plug-ins, preprocessing parity (refused at load) and the licence gate, on the registry."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from torch import nn

from trainers.architectures import build, origin_of, resolve
from trainers.licences import LicenceError, LicencePolicy
from trainers.registry import ModelRegistry, Provenance, sha256_file
from trainers.training.models import ModelSpec, PreprocessingMismatch, build_model


class Tiny(nn.Module):
    """A user's own architecture: a body and a ``head``."""

    def __init__(self, d_in: int, n_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d_in, 8), nn.Tanh())
        self.head = nn.Linear(8, n_classes)

    def forward(self, x):
        return self.head(self.body(x))


def tiny_factory(spec, *, seed=None, pretrained=False):
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        m = Tiny(spec.input_dim, spec.n_classes)
    if pretrained:
        m.backbone_origin = {"package": "tiny-weights", "version": "1.0", "file": "tiny.safetensors",
                             "sha256": "0" * 64, "licences": ["LicenseRef-Proprietary"]}
    return m


def rows(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"a": float(rng.normal()), "b": float(rng.normal()), "c": ["x", "y"][i % 2]} for i in range(n)]


def test_architectures_resolve_by_name_entry_point_and_reference():
    assert resolve("mlp").__module__ == "trainers.architectures.mlp"
    assert resolve("wordllama-text").__module__ == "trainers.architectures.text"
    assert resolve("tests.test_architectures:tiny_factory") is tiny_factory
    with pytest.raises(ValueError, match="unknown architecture 'nope'.*mlp.*wordllama-text"):
        resolve("nope")
    with pytest.raises(ValueError, match="has no callable 'missing'"):
        resolve("tests.test_architectures:missing")


def test_a_user_architecture_is_registered_loaded_and_rebuilt_with_its_weights(tmp_path):
    spec = ModelSpec(["a", "b", "c"], 2, categorical={"c": ["x", "y"]}, arch="tests.test_architectures:tiny_factory")
    model = build_model(spec, seed=3)
    reg = ModelRegistry(tmp_path)
    reg.register("m", spec, model.state_dict(), provenance=Provenance(base_model={"source": "here", "licence": "MIT"}))
    loaded = reg.load("m", "1")
    again = loaded.build_model()
    assert isinstance(again, Tiny)
    X = torch.from_numpy(spec.encode(rows(20)))
    assert torch.equal(model(X), again(X))


def test_an_edited_feature_order_is_refused_at_load(tmp_path):
    spec = ModelSpec(["a", "b", "c"], 2, hidden=(4,), categorical={"c": ["x", "y"]}).with_scaling(rows(50))
    reg = ModelRegistry(tmp_path)
    reg.register("m", spec, build_model(spec, seed=0).state_dict(),
                 provenance=Provenance(base_model={"source": "here", "licence": "MIT"}))
    # someone swaps two features in spec.json and re-hashes the manifest, so the integrity check passes
    vdir = tmp_path / "m" / "versions" / "1"
    d = json.loads((vdir / "spec.json").read_text())
    d["feature_names"] = ["b", "a", "c"]
    (vdir / "spec.json").write_text(json.dumps(d))
    man = json.loads((vdir / "manifest.json").read_text())
    man["files"]["spec.json"]["sha256"] = sha256_file(vdir / "spec.json")
    (vdir / "manifest.json").write_text(json.dumps(man))
    index = json.loads((tmp_path / "m" / "index.json").read_text())
    index["versions"]["1"]["manifest_sha256"] = sha256_file(vdir / "manifest.json")
    (tmp_path / "m" / "index.json").write_text(json.dumps(index))
    with pytest.raises(PreprocessingMismatch, match="encodes inputs differently from how the weights were trained"):
        reg.load("m", "1")


def test_a_server_with_another_feature_order_is_refused(tmp_path):
    spec = ModelSpec(["a", "b", "c"], 2, hidden=(4,), categorical={"c": ["x", "y"]})
    reg = ModelRegistry(tmp_path)
    reg.register("m", spec, build_model(spec, seed=0).state_dict(),
                 provenance=Provenance(base_model={"source": "here", "licence": "MIT"}))
    assert reg.load("m", "1", expect_preprocessing=spec).spec.fingerprint() == spec.fingerprint()
    server = ModelSpec(["b", "a", "c"], 2, hidden=(4,), categorical={"c": ["x", "y"]})
    with pytest.raises(PreprocessingMismatch, match=r"feature order \['b', 'a', 'c'\] \(this spec\) vs \['a', 'b', 'c'\] \(the model's\)"):
        reg.load("m", "1", expect_preprocessing=server)
    with pytest.raises(PreprocessingMismatch, match="is not the expected"):
        reg.load("m", "1", expect_preprocessing=server.fingerprint())


def test_the_licence_gate_refuses_then_records_an_explicit_acceptance_and_checks_again_at_promotion(tmp_path):
    spec = ModelSpec(["a", "b"], 2, arch="tests.test_architectures:tiny_factory")
    model = build_model(spec, seed=0, pretrained=True)
    origin = origin_of(model)
    reg = ModelRegistry(tmp_path)
    with pytest.raises(LicenceError, match=r"licence LicenseRef-Proprietary is not allowed.*accept: \{tiny-weights:"):
        reg.register("m", spec, model.state_dict(), provenance=Provenance(base_model=origin))
    assert not (tmp_path / "m" / "versions").exists() or not any((tmp_path / "m" / "versions").iterdir())
    policy = LicencePolicy(accept={"tiny-weights": "vendor contract 42 allows internal use"})
    info = reg.register("m", spec, model.state_dict(), provenance=Provenance(base_model=origin),
                        licence_policy=policy)
    decision = info.provenance["base_model"]["licence_decision"]
    assert decision["accepted"] and decision["acceptance"] == "vendor contract 42 allows internal use"
    assert decision["refused"] == ["LicenseRef-Proprietary"]
    with pytest.raises(LicenceError):  # a policy without the acceptance refuses the promotion
        reg.promote("m", "1")
    assert reg.promote("m", "1", licence_policy=policy).version == "1"


def test_licence_policy_from_config():
    assert LicencePolicy.from_config(None).check({"licence": "Apache-2.0"}).allowed
    assert not LicencePolicy.from_config({"allowed": ["MIT"]}).check({"licence": "Apache-2.0"}).allowed
    assert not LicencePolicy().check({"package": "x"}).allowed  # no licence recorded: refused
    with pytest.raises(ValueError, match="needs a reason"):
        LicencePolicy(accept={"x": ""})
    with pytest.raises(ValueError, match="unknown keys"):
        LicencePolicy.from_config({"accepted": {}})


# ----------------------------------------------------------------------------- the text backbone


@pytest.fixture(scope="module")
def text_spec():
    from trainers.architectures.text import text_spec as make

    return make(["text", "n"], 3, ["text"], max_tokens=16, hidden=(8,), dim=64)


def test_the_pretrained_text_backbone_loads_from_its_package_with_its_origin(text_spec):
    from trainers.datasets.wordllama_backbone import load_wordllama_embeddings

    model = build(text_spec, seed=0, pretrained=True)
    matrix, _, _ = load_wordllama_embeddings(64)
    assert torch.equal(model.backbone.weight.detach(), torch.from_numpy(matrix))
    o = origin_of(model)
    assert o["package"] == "wordllama" and o["licences"] == ["MIT", "LicenseRef-Llama-2-Community"]
    assert len(o["sha256"]) == 64 and o["file"].endswith(".safetensors")
    X = text_spec.encode([{"text": "Flu season hits early", "n": 1.0}, {"text": None, "n": 0.0}])
    assert X.shape == (2, 17) and (X[0, :16] >= 0).sum() > 2 and (X[1, :16] == -1).all()
    assert model(torch.from_numpy(X)).shape == (2, 3)


def test_a_text_model_round_trips_with_its_tokenizer_and_a_tokenizer_mismatch_is_refused(text_spec, tmp_path):
    model = build(text_spec, seed=0, pretrained=True)
    reg = ModelRegistry(tmp_path)
    with pytest.raises(LicenceError, match="LicenseRef-Llama-2-Community"):
        reg.register("tweets", text_spec, model.state_dict(), provenance=Provenance(base_model=origin_of(model)))
    policy = LicencePolicy(accept={"wordllama": "Llama 2 community licence terms reviewed for this use"})
    reg.register("tweets", text_spec, model.state_dict(), provenance=Provenance(base_model=origin_of(model)),
                 licence_policy=policy)
    loaded = reg.load("tweets", "1", expect_preprocessing=text_spec)
    batch = [{"text": "New study links sleep and memory", "n": 2.0}]
    assert np.array_equal(loaded.spec.encode(batch), text_spec.encode(batch))
    X = torch.from_numpy(text_spec.encode(batch))
    assert torch.equal(loaded.build_model()(X), model(X))
    # a server that tokenises differently (another vocabulary) is refused, not silently mis-encoded
    tok = json.loads(text_spec.tokenizer_files()["text"])
    tok["model"]["vocab"] = dict(list(tok["model"]["vocab"].items())[::-1])
    other = json.dumps(tok)
    with pytest.raises(PreprocessingMismatch, match="this tokenizer's sha256 is"):
        ModelSpec.from_dict(text_spec.to_dict()).attach_tokenizer("text", other)
    server = ModelSpec.from_dict(dict(text_spec.to_dict(), text={
        "text": {"tokenizer_sha256": hashlib.sha256(other.encode()).hexdigest(), "max_tokens": 16}}))
    with pytest.raises(PreprocessingMismatch, match="text"):
        reg.load("tweets", "1", expect_preprocessing=server)


def test_a_spec_file_with_an_unknown_or_missing_key_is_refused():
    with pytest.raises(ValueError, match=r"unknown keys \['hiden'\]"):
        ModelSpec.from_dict({"feature_names": ["a"], "n_classes": 2, "hiden": [4]})
    with pytest.raises(ValueError, match=r"missing \['feature_names'\]"):
        ModelSpec.from_dict({"n_classes": 2})
    with pytest.raises(ValueError, match="needs {'tokenizer_sha256'"):
        ModelSpec(["t"], 2, text={"t": {"max_tokens": 8}}, arch="wordllama-text")


def test_the_pretrained_backbone_refuses_a_foreign_tokenizer(text_spec):
    foreign = ModelSpec.from_dict(dict(text_spec.to_dict(), text={"text": {"tokenizer_sha256": "0" * 64}}))
    with pytest.raises(ValueError, match="another tokenizer than WordLlama's"):
        build(foreign, seed=0, pretrained=True)


def test_register_base_pretrained_with_training_keeps_the_backbone_and_asks_for_the_licence(text_spec, tmp_path, capsys):
    from streams.cli.main import main
    from trainers.datasets.wordllama_backbone import load_wordllama_embeddings

    spec = tmp_path / "spec.json"
    d = text_spec.to_dict()
    d["text"]["text"].pop("tokenizer_sha256")  # register-base fills WordLlama's in
    spec.write_text(json.dumps(dict(d, classes=["a", "b", "c"])))
    data = tmp_path / "train.jsonl"
    words = {"a": "flu vaccine season", "b": "heart attack risk", "c": "new cancer drug"}
    data.write_text("".join(json.dumps({"event_id": f"e{i}", "model": "tw", "model_version": "0", "ts": 1000 + i,
                                        "features": {"text": words[k], "n": 1.0}, "label": k}) + "\n"
                            for i, k in enumerate(list(words) * 20)))
    cmd = ["models", "--registry", str(tmp_path / "reg"), "register-base", "tw", "--spec", str(spec), "--pretrained",
           "--source", "wordllama", "--licence", "MIT", "--train", str(data), "--epochs", "2"]
    assert main(cmd) == 1 and "LicenseRef-Llama-2-Community is not allowed" in capsys.readouterr().err
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("licences:\n  accept:\n    wordllama: reviewed for this test\n")
    assert main(["--config", str(cfg)] + cmd) == 0, capsys.readouterr().err
    loaded = ModelRegistry(tmp_path / "reg").load("tw", "1")
    assert loaded.provenance.base_model["package"] == "wordllama"
    assert loaded.provenance.base_model["licence_decision"]["accepted"]
    matrix, _, _ = load_wordllama_embeddings(64)  # trained from the pretrained embeddings (they move a little)
    emb = loaded.state_dict["backbone.weight"].numpy()
    assert np.corrcoef(emb.ravel()[:100000], matrix.ravel()[:100000])[0, 1] > 0.9  # pretrained, not a random init
