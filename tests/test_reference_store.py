"""Reference profiles are looked up by a hash of (model, version) inside the reference folder: no event
names a file (issue 11), and a broken file is "no reference", reported once, never a crash."""

from __future__ import annotations

import logging
import os

import pytest

from streams.contracts.validate import parse_input
from streams.judge.profile_build import build_profile
from streams.adapters.reference_store import ReferenceStore, reference_id
from streams.cli.sample import SampleTraffic


@pytest.fixture(scope="module")
def events():
    return [parse_input(e) for e in SampleTraffic(seed=7).events(300)]


def profile(events, model="fraud", version="1"):
    return build_profile(events, model, version)


def files_under(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_profiles_are_stored_and_found_by_id(tmp_path, events):
    store = ReferenceStore(tmp_path / "refs")
    p = store.save(profile(events))
    assert p == tmp_path / "refs" / "by-id" / f"{reference_id('fraud', '1')}.json"
    fresh = ReferenceStore(tmp_path / "refs")
    assert fresh.get("fraud", "1").id == profile(events).id
    assert fresh.get("fraud", "2") is None


@pytest.mark.parametrize("model", ["../../evil", "/tmp/abs", "a/../../b", "..", "fraud|eu", "C:\\x", "~root"])
def test_no_model_name_writes_or_reads_outside_the_folder(tmp_path, events, model):
    root = tmp_path / "refs"
    store = ReferenceStore(root)
    store.put(profile(events, model, "../1"), save=True)
    assert [f for f in files_under(tmp_path)] == [os.path.join("refs", "by-id", f"{reference_id(model, '../1')}.json")]
    assert ReferenceStore(root).get(model, "../1").model == model
    assert reference_id(model, "../1") != reference_id(model + "/..", "1")


def test_legacy_layout_is_read_only_for_safe_names_inside_the_folder(tmp_path, events):
    root = tmp_path / "refs"
    profile(events, "fraud", "1").save(root / "fraud" / "1.json")
    assert ReferenceStore(root).get("fraud", "1") is not None
    # a profile outside the folder that a crafted name would reach
    profile(events, "../outside", "1").save(tmp_path / "outside" / "1.json")
    assert ReferenceStore(root).get("../outside", "1") is None
    # a symlinked model folder pointing outside is not followed
    (tmp_path / "elsewhere").mkdir()
    profile(events, "linked", "1").save(tmp_path / "elsewhere" / "1.json")
    os.symlink(tmp_path / "elsewhere", root / "linked")
    assert ReferenceStore(root).get("linked", "1") is None
    assert ReferenceStore(root).legacy_path(".hidden", "1") is None and ReferenceStore(root).legacy_path("m", "a/b") is None


@pytest.mark.parametrize("content", [b"not json", b"[1, 2]", b'{"model": "fraud"}', b"\xff\xfe", b""])
def test_a_broken_file_is_no_reference_reported_once(tmp_path, events, content, caplog):
    root = tmp_path / "refs"
    store = ReferenceStore(root, recheck_s=0.0)
    p = store.path("fraud", "1")
    p.parent.mkdir(parents=True)
    p.write_bytes(content)
    seen = []
    store.on_broken = lambda *a: seen.append(a)
    with caplog.at_level(logging.WARNING, logger="driftloop.references"):
        assert store.get("fraud", "1") is None
        assert store.get("fraud", "1") is None  # read again (recheck 0), reported once
    assert store.broken == 1 and len(seen) == 1
    assert len([r for r in caplog.records if "not a usable profile" in r.getMessage()]) == 1
    store.save(profile(events))  # fixed: picked up without a restart
    assert store.get("fraud", "1") is not None


def test_another_models_profile_under_a_name_is_refused(tmp_path, events):
    root = tmp_path / "refs"
    profile(events, "churn", "1").save(root / "fraud" / "1.json")  # legacy path of fraud v1 holds churn's profile
    store = ReferenceStore(root)
    assert store.get("fraud", "1") is None and store.broken == 1


def test_misses_are_cached_for_the_recheck_interval(tmp_path, events):
    store = ReferenceStore(tmp_path, recheck_s=3600)
    assert store.get("fraud", "1") is None
    ReferenceStore(tmp_path).save(profile(events))
    assert store.get("fraud", "1") is None  # cached miss
    store.forget("fraud", "1")
    assert store.get("fraud", "1") is not None


def test_put_keeps_an_existing_file_and_serves_the_profile(tmp_path, events):
    store = ReferenceStore(tmp_path)
    first = profile(events)
    store.put(first, save=True)
    before = store.path("fraud", "1").read_bytes()
    other = build_profile(events[:150], "fraud", "1")
    store.put(other, save=True)
    assert store.path("fraud", "1").read_bytes() == before
    assert store.get("fraud", "1") is other
    assert not [f for f in files_under(tmp_path) if f.endswith(".tmp")]
