"""The registry's live evaluation (trainers/registry_live.py): a candidate in shadow, rejected on live evidence; a
promotion under watch, kept or rolled back; the ModelUpdates they return, the serving history, redone decisions,
signatures and licences; ``driftloop models show/history`` in words."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from streams.contracts.events import InvalidRecord
from trainers.licences import LicenceError, LicencePolicy
from trainers.records import ACTIONS, ModelUpdate
from trainers.registry import WEIGHTS, IntegrityError, ModelRegistry, Provenance, RegistryError, UnsignedManifest
from trainers.registry_signing import KEY_ENV, KEY_FILE_ENV, RegistrySettings, SigningKey
from trainers.training.models import ModelSpec, build_model

SPEC = ModelSpec(["x", "y"], 2, hidden=(4,))
KEY = SigningKey(b"0123456789abcdef0123456789abcdef", "test")
EVIDENCE = {"n": 1200, "live_accuracy": 0.81, "shadow_accuracy": 0.74, "p_value": 0.001}


@pytest.fixture(autouse=True)
def _no_key_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)


ACCEPT = LicencePolicy(accept={"vendor": "contract 42 allows internal use"})


def registry(tmp_path: Path, n: int = 3, key: SigningKey | None = None, licence: str = "Apache-2.0") -> ModelRegistry:
    """``n`` versions of "m", v1 live; the others' backbone under ``licence``."""
    reg = ModelRegistry(tmp_path, key=key)
    for i in range(n):
        reg.register("m", SPEC, build_model(SPEC, seed=i).state_dict(), licence_policy=ACCEPT,
                     provenance=Provenance(parent_version=str(i) if i else None,
                                           base_model={"source": "vendor", "licence": licence if i else "Apache-2.0"}))
    reg.promote("m", "1", actor="ops")
    return reg


def sha(reg: ModelRegistry, v: str) -> str:
    return reg.info("m", v).weights_sha256


def test_a_candidate_in_shadow_and_rejected(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    t0 = time.time()
    up = reg.start_shadow("m", "2", actor="dispatcher", reason="passed the offline gate")
    assert up == ModelUpdate("m", "1", "1", "shadow", sha(reg, "1"), up.at, shadow="2")
    assert reg.shadow("m") == {"version": "2", "since": pytest.approx(t0, abs=5), "actor": "dispatcher",
                               "reason": "passed the offline gate"}
    assert reg.current("m") == "1" and reg.watch("m") is None
    up = reg.reject("m", "2", evidence=EVIDENCE, actor="live gate", reason="worse than v1 on 1200 labels")
    assert (up.action, up.version, up.previous_version, up.shadow, up.sha256) == ("reject", "1", "1", None, sha(reg, "1"))
    assert reg.shadow("m") is None and reg.current("m") == "1"
    verdict = reg.info("m", "2").live_verdict
    assert verdict["verdict"] == "rejected" and verdict["evidence"] == EVIDENCE and verdict["actor"] == "live gate"
    assert verdict["reason"] == "worse than v1 on 1200 labels" and verdict["at"] >= t0
    changes = reg.changes("m")
    assert [(c["action"], c["version"], c["previous"], c.get("candidate")) for c in changes] == [
        ("promote", "1", None, None), ("shadow", "1", "1", "2"), ("reject", "1", "1", "2")]
    assert all(reg.served_at("m", c["at"]) == "1" for c in changes)  # shadowing never changes what is live
    assert reg.served_at("m", time.time()) == "1"


def test_a_new_candidate_replaces_the_one_in_shadow_and_it_is_recorded(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    reg.start_shadow("m", "2")
    up = reg.start_shadow("m", "3", reason="newer candidate")
    assert up.shadow == "3" and reg.shadow("m")["version"] == "3"
    assert reg.changes("m")[-1]["replaced"] == "2"
    with pytest.raises(RegistryError, match="not in shadow \\(in shadow: 3\\)"):
        reg.reject("m", "2", evidence={})


def test_shadow_refuses_what_cannot_be_compared(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    reg.register("m", SPEC, build_model(SPEC).state_dict(), provenance=Provenance(base_model={"licence": "MIT"}))
    with pytest.raises(RegistryError, match="no live version to compare"):
        reg.start_shadow("m", "1")
    reg = registry(tmp_path / "b")
    with pytest.raises(RegistryError, match="is live; shadow a candidate other than the live version"):
        reg.start_shadow("m", "1")
    with pytest.raises(RegistryError, match="has no version '9'"):
        reg.start_shadow("m", "9")
    with pytest.raises(RegistryError, match="not allowed"):
        reg.start_shadow("m", "../x")


def test_a_shadow_candidate_is_verified_and_licence_checked_like_a_promotion(tmp_path: Path) -> None:
    reg = registry(tmp_path, licence="LicenseRef-proprietary")
    with pytest.raises(LicenceError):  # accepted at registration; a policy without the acceptance refuses it
        reg.start_shadow("m", "2")
    assert reg.start_shadow("m", "2", licence_policy=ACCEPT).shadow == "2"
    reg = registry(tmp_path / "b")
    w = Path(reg.info("m", "2").path) / WEIGHTS
    w.write_bytes(b"x" + w.read_bytes()[1:])
    with pytest.raises(IntegrityError):
        reg.start_shadow("m", "2")
    assert reg.shadow("m") is None and reg.changes("m")[-1]["action"] == "promote"


def test_a_signed_registry_refuses_an_unsigned_candidate_in_shadow(tmp_path: Path) -> None:
    reg = registry(tmp_path, n=2)  # no key: unsigned versions
    signed = ModelRegistry(tmp_path, key=KEY, settings=RegistrySettings())
    with pytest.raises(UnsignedManifest, match="driftloop models sign"):
        signed.start_shadow("m", "2")
    signed = ModelRegistry(tmp_path, key=KEY, settings=RegistrySettings(allow_unsigned=True))
    signed.sign("m", "2")
    assert ModelRegistry(tmp_path, key=KEY).start_shadow("m", "2").shadow == "2"
    assert reg.shadow("m")["version"] == "2"


def test_promoting_the_candidate_under_watch_then_keeping_it(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    reg.start_shadow("m", "2")
    up = reg.promote("m", "2", watch=True, actor="live gate", reason="better on live traffic")
    assert (up.action, up.version, up.previous_version, up.shadow, up.sha256) == ("promote", "2", "1", "1", sha(reg, "2"))
    assert reg.shadow("m") is None  # the candidate is live now
    assert reg.watch("m") == {"version": "2", "parent": "1", "since": reg.changes("m")[-1]["at"]}
    assert reg.changes("m")[-1]["ended"] == {"shadow": "2"} and reg.changes("m")[-1]["watch"]["parent"] == "1"
    with pytest.raises(RegistryError, match="watched after its promotion .* end the watch"):
        reg.start_shadow("m", "3")  # one shadow at a time: the parent is in shadow
    with pytest.raises(RegistryError, match="version 1 of 'm' is not live \\(live: 2\\)"):
        reg.end_watch("m", "1", evidence={})
    up = reg.end_watch("m", "2", evidence=EVIDENCE, actor="live gate", reason="held up for a day")
    assert (up.action, up.version, up.previous_version, up.shadow) == ("watch_end", "2", "2", None)
    assert reg.watch("m") is None and reg.info("m", "2").live_verdict["verdict"] == "kept"
    assert reg.changes("m")[-1]["parent"] == "1" and reg.served_at("m", time.time()) == "2"
    reg.promote("m", "3")
    with pytest.raises(RegistryError, match="live but not watched"):
        reg.end_watch("m", "3", evidence={})


def test_a_watched_promotion_rolled_back(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    reg.promote("m", "2", watch=True)
    up = reg.rollback("m", actor="live gate", reason="live accuracy fell", evidence=EVIDENCE, version="2")
    assert (up.action, up.version, up.previous_version, up.shadow, up.sha256) == ("rollback", "1", "2", None, sha(reg, "1"))
    assert reg.watch("m") is None and reg.current("m") == "1"
    verdict = reg.info("m", "2").live_verdict
    assert verdict["verdict"] == "rolled_back" and verdict["evidence"] == EVIDENCE
    assert reg.changes("m")[-1]["ended"] == {"watch": "2"} and reg.served_at("m", time.time()) == "1"
    with pytest.raises(RegistryError, match="not live .* a watch ends only on the live version"):
        reg.end_watch("m", "2", evidence={})


def test_a_plain_rollback_keeps_working_and_records_a_verdict(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    reg.promote("m", "2")
    reg.start_shadow("m", "3")
    up = reg.rollback("m")
    assert up.version == "1" and up.shadow is None and reg.shadow("m") is None  # the shadow compared v2: it ends
    assert reg.info("m", "2").live_verdict["evidence"] == {}
    assert reg.changes("m")[-1]["ended"] == {"shadow": "3"}


def test_redone_decisions_change_nothing_and_return_none(tmp_path: Path) -> None:
    """The dispatcher may redo a decision after a crash: the second call is a no-op (None), the history unchanged."""
    reg = registry(tmp_path)
    assert reg.start_shadow("m", "2") is not None
    n = len(reg.changes("m"))
    assert reg.start_shadow("m", "2") is None and len(reg.changes("m")) == n
    assert reg.reject("m", "2", evidence=EVIDENCE) is not None
    first = reg.info("m", "2").live_verdict
    assert reg.reject("m", "2", evidence={"other": 1}) is None and reg.info("m", "2").live_verdict == first
    reg.promote("m", "3", watch=True)
    assert reg.end_watch("m", "3", evidence={}) is not None
    n = len(reg.changes("m"))
    assert reg.end_watch("m", "3", evidence={}) is None and len(reg.changes("m")) == n
    reg2 = registry(tmp_path / "b")
    reg2.promote("m", "2", watch=True)
    assert reg2.rollback("m", version="2") is not None
    assert reg2.rollback("m", version="2") is None and reg2.current("m") == "1"  # not rolled back twice
    with pytest.raises(RegistryError, match="version 3 of 'm' is not live"):
        reg2.rollback("m", version="3")
    with pytest.raises(RegistryError, match="not in shadow \\(in shadow: nothing\\)"):
        reg2.reject("m", "3", evidence={})


def test_a_first_promotion_cannot_be_watched_and_a_new_promotion_ends_a_watch(tmp_path: Path) -> None:
    reg = ModelRegistry(tmp_path)
    for i in range(3):
        reg.register("m", SPEC, build_model(SPEC, seed=i).state_dict(), provenance=Provenance(base_model={"licence": "MIT"}))
    with pytest.raises(RegistryError, match="no parent to watch it against"):
        reg.promote("m", "1", watch=True)
    reg.promote("m", "1")
    reg.promote("m", "2", watch=True)
    up = reg.promote("m", "3")
    assert up.shadow is None and reg.watch("m") is None and reg.changes("m")[-1]["ended"] == {"watch": "2"}


def test_model_updates_round_trip_and_invalid_ones_say_what_is_wrong(tmp_path: Path) -> None:
    reg = registry(tmp_path)
    for up in (reg.start_shadow("m", "2"), reg.reject("m", "2", evidence={}), reg.promote("m", "2", watch=True),
               reg.end_watch("m", "2", evidence={}), reg.rollback("m")):
        assert ModelUpdate.from_dict(json.loads(up.to_json())) == up
        assert up.action in ACTIONS
    old = {"model": "m", "version": "2", "previous_version": "1", "action": "promote", "sha256": "", "at": 1.0}
    assert ModelUpdate.from_dict(old) == ModelUpdate("m", "2", "1", "promote", "", 1.0)  # records before shadow
    good = dict(old, action="shadow", version="1", previous_version="1", shadow="2")
    assert ModelUpdate.from_dict(dict(good, extra="ignored")).shadow == "2"
    for bad, reason, says in [
        ({k: v for k, v in good.items() if k != "version"}, "missing_field", "'version' is missing"),
        (dict(good, action="deploy"), "bad_value", "'action' 'deploy' is not one of promote, rollback, shadow"),
        (dict(good, shadow=None), "missing_field", "names the candidate to shadow"),
        (dict(good, action="reject"), "bad_value", "a 'reject' update stops shadowing"),
        (dict(good, action="watch_end"), "bad_value", "'shadow' must be null"),
        (dict(good, shadow="1"), "bad_value", "is the live version itself"),
        (dict(good, shadow="v\n"), "bad_name", "'shadow'"),
        (dict(good, version=3), "bad_name", "'version' 3"),
        (dict(good, sha256="xyz"), "bad_value", "64 lowercase hex"),
        (dict(good, at="soon"), "wrong_type", "'at' must be epoch seconds"),
        (dict(good, at=float("nan")), "wrong_type", "'at'"),
        (["m"], "not_object", "expected an object"),
    ]:
        with pytest.raises(InvalidRecord, match=says) as err:
            ModelUpdate.from_dict(bad)
        assert err.value.reason == reason


def test_models_show_and_history_say_the_live_state_in_words(tmp_path: Path, capsys) -> None:
    from streams.cli.main import main

    reg = registry(tmp_path)
    base = ["models", "--registry", str(tmp_path)]
    reg.start_shadow("m", "2", actor="dispatcher")
    assert main(base + ["show", "m", "1"]) == 0
    out = capsys.readouterr().out
    assert "shadow:       v2 in shadow of live v1 (candidate, since" in out and "live verdict: none" in out
    reg.reject("m", "2", evidence={"live_accuracy": 0.9, "shadow_accuracy": 0.7}, actor="live gate", reason="worse")
    reg.promote("m", "3", watch=True)
    assert main(base + ["show", "m", "2", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["live_verdict"]["verdict"] == "rejected" and d["watch"]["parent"] == "1" and d["shadow"] is None
    assert main(base + ["show", "m", "2"]) == 0
    out = capsys.readouterr().out
    assert "live verdict: rejected in shadow on " in out and "by live gate: worse (evidence: {\"live_accuracy\": 0.9" in out
    assert "v3 watched after its promotion, its parent v1 in shadow" in out
    reg.rollback("m", reason="fell", evidence={"n": 3})
    assert main(base + ["history", "m"]) == 0
    out = capsys.readouterr().out
    assert "shadow    v2 in shadow of live v1  by dispatcher" in out
    assert "reject    v2 rejected in shadow; v1 stays live, nothing in shadow  by live gate" in out
    assert "promote   v3 (was v1), watched with v1 in shadow" in out
    assert "rollback  v1 (was v3); ends the watch of v3" in out


def test_the_live_gates_steps_by_hand(tmp_path: Path, capsys) -> None:
    """``models shadow``, ``reject`` and ``end-watch``: a person starts a shadow, refuses it, and ends a watch; each
    prints its model update (not published here) and lands in the serving history."""
    from streams.cli.main import main

    reg = registry(tmp_path)
    base = ["models", "--registry", str(tmp_path)]
    assert main(base + ["shadow", "m", "2", "--reason", "try it", "--no-publish"]) == 0
    assert json.loads(capsys.readouterr().out)["action"] == "shadow" and reg.shadow("m")["version"] == "2"
    assert main(base + ["reject", "m", "3", "--no-publish"]) == 1  # v3 is not the one in shadow
    assert "v3 of m is not in shadow (in shadow: v2)" in capsys.readouterr().err
    assert main(base + ["reject", "m", "2", "--reason", "too slow", "--no-publish"]) == 0
    u = json.loads(capsys.readouterr().out)
    assert (u["action"], u["version"], u["shadow"]) == ("reject", "1", None)
    assert reg.info("m", "2").live_verdict["verdict"] == "rejected"
    assert main(base + ["end-watch", "m", "--no-publish"]) == 1  # nothing watched
    assert "no promotion of m is watched" in capsys.readouterr().err
    reg.promote("m", "3", watch=True)
    assert main(base + ["end-watch", "m", "--no-publish"]) == 0
    assert json.loads(capsys.readouterr().out)["action"] == "watch_end" and reg.watch("m") is None
    assert reg.info("m", "3").live_verdict["verdict"] == "kept"
    assert main(base + ["history", "m"]) == 0
    assert "by driftloop models reject" in capsys.readouterr().out
    # re-runs (the first publication failed): the registry's present state is published again, exit 0
    assert main(base + ["reject", "m", "2", "--no-publish"]) == 0
    out = capsys.readouterr()
    assert "reject already done" in out.err and json.loads(out.out)["version"] == "3"
    assert main(base + ["end-watch", "m", "--no-publish"]) == 0
    assert json.loads(capsys.readouterr().out)["shadow"] is None
    assert main(base + ["end-watch", "nope", "--no-publish"]) == 1
    assert "'nope' is not in the registry" in capsys.readouterr().err
