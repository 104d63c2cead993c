"""Signed registry manifests: with a key, editing a file and re-hashing the manifest (and the index) is
caught; without a key the registry behaves as before; unsigned manifests are refused when a key is set
unless ``registry.allow_unsigned``; ``driftloop models show/sign``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from trainers.registry import (
    MANIFEST, WEIGHTS, IntegrityError, ModelRegistry, Provenance, RegistryError, SignatureError, UnsignedManifest,
    sha256_file,
)
from trainers.registry_signing import KEY_ENV, KEY_FILE_ENV, RegistrySettings, SigningKey, load_key
from trainers.training.models import ModelSpec, build_model

SPEC = ModelSpec(["x", "y"], 2, hidden=(4,))
KEY = SigningKey(b"0123456789abcdef0123456789abcdef", "test")
OTHER = SigningKey(b"fedcba9876543210fedcba9876543210", "test")


@pytest.fixture(autouse=True)
def _no_key_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)


def _register(reg: ModelRegistry, seed: int = 0) -> str:
    return reg.register("fraud", SPEC, build_model(SPEC, seed=seed).state_dict(),
                        provenance=Provenance(base_model={"source": "scratch", "licence": "Apache-2.0"})).version


def _tamper_and_rehash(reg_root: Path, version: str = "1") -> None:
    """What an attacker with write access does: edit the weights, then make every hash agree again."""
    vdir = reg_root / "fraud" / "versions" / version
    w = vdir / WEIGHTS
    w.write_bytes(w.read_bytes()[:-1] + b"\x01")
    manifest = json.loads((vdir / MANIFEST).read_text())
    manifest["files"][WEIGHTS]["sha256"] = sha256_file(w)
    manifest["files"][WEIGHTS]["bytes"] = w.stat().st_size
    (vdir / MANIFEST).write_text(json.dumps(manifest))
    index_path = reg_root / "fraud" / "index.json"
    index = json.loads(index_path.read_text())
    index["versions"][version]["manifest_sha256"] = sha256_file(vdir / MANIFEST)
    index["versions"][version]["weights_sha256"] = sha256_file(w)
    index_path.write_text(json.dumps(index))


def test_tampered_and_rehashed_files_are_detected_with_a_key(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path, key=KEY)
    _register(reg)
    manifest = json.loads((tmp_path / "fraud/versions/1" / MANIFEST).read_text())
    assert manifest["signature"]["alg"] == "hmac-sha256" and manifest["signature"]["key_id"] == KEY.key_id
    assert reg.signature("fraud", "1").valid is True
    reg.load("fraud", "1")

    _tamper_and_rehash(tmp_path)
    with pytest.raises(SignatureError, match="manifest signature does not match: ") as err:
        reg.load("fraud", "1")
    assert isinstance(err.value, IntegrityError) and "register it again" in str(err.value)
    with pytest.raises(SignatureError):
        reg.promote("fraud", "1")
    assert reg.signature("fraud", "1").valid is False
    # without the key only the hashes are checked, and the attacker made them agree: why the key exists
    ModelRegistry(tmp_path, key=None).verify("fraud", "1")


def test_another_key_does_not_validate_the_signature(tmp_path: Path) -> None:
    _register(ModelRegistry(tmp_path, key=KEY))
    with pytest.raises(SignatureError, match=f"signed with key {KEY.key_id}, checked with key {OTHER.key_id}"):
        ModelRegistry(tmp_path, key=OTHER).verify("fraud", "1")


def test_a_signed_folder_moved_to_another_version_is_refused(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path, key=KEY)
    _register(reg, seed=0)
    _register(reg, seed=1)
    v1, v2 = tmp_path / "fraud/versions/1", tmp_path / "fraud/versions/2"
    shutil.rmtree(v2)
    shutil.copytree(v1, v2)
    index = json.loads((tmp_path / "fraud/index.json").read_text())
    index["versions"]["2"]["manifest_sha256"] = sha256_file(v2 / MANIFEST)
    (tmp_path / "fraud/index.json").write_text(json.dumps(index))
    with pytest.raises(RegistryError, match="signed for 'fraud' version '1', not 'fraud' version '2'"):
        reg.load("fraud", "2")


def test_without_a_key_the_registry_works_as_before(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)  # no key in the environment
    assert reg.key is None
    _register(reg)
    assert "signature" not in json.loads((tmp_path / "fraud/versions/1" / MANIFEST).read_text())
    reg.promote("fraud", "1")
    assert reg.load("fraud").info.version == "1"
    assert reg.signature("fraud", "1").describe() == "unsigned"
    _register(ModelRegistry(tmp_path, key=KEY))  # a signed version reads fine without a key too
    assert reg.load("fraud", "2").info.version == "2"
    assert reg.signature("fraud", "2").valid is None


def test_unsigned_manifests_are_refused_when_a_key_is_set_unless_allowed(tmp_path: Path) -> None:
    _register(ModelRegistry(tmp_path, key=None))
    strict = ModelRegistry(tmp_path, key=KEY)
    with pytest.raises(UnsignedManifest, match="is not signed") as err:
        strict.load("fraud", "1")
    assert "driftloop models sign fraud 1" in str(err.value) and "registry.allow_unsigned" in str(err.value)
    with pytest.raises(UnsignedManifest):
        strict.promote("fraud", "1")

    migrating = ModelRegistry(tmp_path, key=KEY, settings=RegistrySettings(allow_unsigned=True))
    assert migrating.load("fraud", "1").info.version == "1"
    migrating.promote("fraud", "1")  # promoting under a key signs the version
    assert strict.signature("fraud", "1").valid is True
    assert strict.load("fraud").info.version == "1"


def test_sign_checks_the_files_first_and_is_idempotent(tmp_path: Path) -> None:
    plain = ModelRegistry(tmp_path, key=None)
    _register(plain)
    _register(plain, seed=1)
    w = tmp_path / "fraud/versions/2" / WEIGHTS
    w.write_bytes(b"x" + w.read_bytes()[1:])
    reg = ModelRegistry(tmp_path, key=KEY)
    assert reg.sign("fraud", "1").valid is True
    assert reg.sign("fraud", "1").valid is True  # already signed: unchanged
    with pytest.raises(IntegrityError):  # a corrupted file is never blessed with a signature
        reg.sign("fraud", "2")
    assert not reg.signature("fraud", "2").signed
    with pytest.raises(RegistryError, match="no registry signing key"):
        plain.sign("fraud", "1")


def test_key_from_the_environment_or_a_file(tmp_path: Path) -> None:
    assert load_key(environ={}) is None
    env_key = load_key(environ={KEY_ENV: "0123456789abcdef0123456789abcdef\n"})
    assert env_key is not None and env_key.key_id == KEY.key_id and env_key.source == KEY_ENV
    assert "0123456789abcdef" not in repr(env_key)
    f = tmp_path / "key"
    f.write_text("0123456789abcdef0123456789abcdef\n")
    assert load_key(environ={KEY_FILE_ENV: str(f)}).key_id == KEY.key_id
    assert load_key(RegistrySettings(key_file=str(f)), environ={}).key_id == KEY.key_id
    with pytest.raises(RegistryError, match="at least 16"):
        load_key(environ={KEY_ENV: "short"})
    with pytest.raises(RegistryError, match="cannot read the registry signing key file") as err:
        load_key(environ={KEY_FILE_ENV: str(tmp_path / "missing")})
    assert "secrets.token_hex" in str(err.value)


def test_registry_config_section_is_known() -> None:
    from streams import config as C

    C.check_all({"registry": {"allow_unsigned": True, "key_file": "/run/secrets/registry-key"}})
    with pytest.raises(C.ConfigError):
        C.check_all({"registry": {"key": "inline secrets are not a thing"}})


def test_models_cli_show_and_sign(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture) -> None:
    from streams.cli.main import main

    _register(ModelRegistry(tmp_path, key=None))
    base = ["models", "--registry", str(tmp_path)]
    assert main(base + ["show", "fraud", "1"]) == 0
    assert "signature:    unsigned" in capsys.readouterr().out

    monkeypatch.setenv(KEY_ENV, "0123456789abcdef0123456789abcdef")
    assert main(base + ["show", "fraud", "1"]) == 1
    assert "is not signed" in capsys.readouterr().err
    assert main(base + ["sign", "fraud", "1"]) == 0
    assert "valid" in capsys.readouterr().out
    assert main(base + ["show", "fraud", "1"]) == 0
    out = capsys.readouterr().out
    assert f"signature:    signed (key {KEY.key_id}), valid" in out
    assert main(base + ["show", "fraud", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["signature"]["valid"] is True

    _register(ModelRegistry(tmp_path, key=None), seed=1)
    assert main(base + ["sign", "fraud", "--all"]) == 0
    out = capsys.readouterr().out
    assert "fraud v1: already signed" in out and "fraud v2: signed" in out and "valid" in out

    _tamper_and_rehash(tmp_path)
    assert main(base + ["show", "fraud", "1"]) == 1
    err = capsys.readouterr().err
    assert "INVALID" in err and "manifest signature does not match" in err
