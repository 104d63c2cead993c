"""Event contracts: validation gives one clear reason per bad record and never crashes."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.contracts.events import REASONS, Alert, AlertReference, AlertWindow, DeadLetter, InvalidRecord, LabelledExample, make_alert_id
from trainers.records import RetrainRequest
from streams.contracts.validate import parse_input, parse_label, parse_timestamp

GOOD = {
    "event_id": "e-000123",
    "model": "fraud",
    "model_version": "3",
    "ts": 1764124800.25,
    "entity": {"customer_id": "c-17"},
    "features": {"amount": 12.5, "country": "DE", "age": None},
    "prediction": 1,
    "scores": [0.2, 0.8],
}


def enc(obj) -> bytes:
    return json.dumps(obj).encode()


def reason_of(raw, parse=parse_input) -> str:
    with pytest.raises(InvalidRecord) as info:
        parse(raw)
    assert info.value.reason in REASONS
    assert str(info.value)  # a message for people
    return info.value.reason


def test_good_input_round_trips():
    ev = parse_input(enc(GOOD))
    assert ev.features == {"amount": 12.5, "country": "DE", "age": None}
    assert ev.scores == (0.2, 0.8)
    assert parse_input(enc(ev.to_dict())) == ev


def test_iso_timestamps_are_normalised_to_epoch_seconds():
    assert parse_timestamp("2025-11-26T00:00:00Z") == 1764115200.0
    assert parse_timestamp("2025-11-26T01:00:00+01:00") == 1764115200.0
    assert parse_timestamp("2025-11-26T00:00:00") == 1764115200.0  # naive = UTC
    assert parse_timestamp(1764115200) == 1764115200.0


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"\xff\xfe not utf8", "not_utf8"),
        (b"{not json", "not_json"),
        (b"", "not_json"),
        (b"[1, 2]", "not_object"),
        (enc({k: v for k, v in GOOD.items() if k != "event_id"}), "missing_field"),
        (enc({**GOOD, "features": [1, 2]}), "wrong_type"),
        (enc({**GOOD, "features": {"amount": [1]}}), "wrong_type"),
        (enc({**GOOD, "features": {"flag": True}}), "wrong_type"),
        (b'{"event_id": "e", "model": "m", "model_version": "1", "ts": 1, "features": {"x": NaN}}', "non_finite"),
        (enc({**GOOD, "scores": [0.1, "a"]}), "wrong_type"),
        (enc({**GOOD, "features": {"x": float("inf")}}), "non_finite"),
        (enc({**GOOD, "ts": "yesterday"}), "bad_timestamp"),
        (enc({**GOOD, "ts": 1764124800250}), "bad_timestamp"),  # milliseconds
        (enc({**GOOD, "ts": True}), "bad_timestamp"),
        (enc({**GOOD, "features": {}}), "bad_value"),
        (enc({**GOOD, "model": ""}), "bad_value"),
    ],
)
def test_bad_inputs_get_one_clear_reason(raw, reason):
    assert reason_of(raw) == reason


def test_payload_over_the_size_limit():
    big = enc({**GOOD, "features": {f"f{i}": float(i) for i in range(200)}})
    with pytest.raises(InvalidRecord) as info:
        parse_input(big, max_bytes=1000)
    assert info.value.reason == "too_large"
    assert "1000" in str(info.value)


def test_huge_integer_feature_is_non_finite_not_a_crash():
    raw = b'{"event_id": "e", "model": "m", "model_version": "1", "ts": 1, "features": {"x": 1' + b"0" * 400 + b"}}"
    assert reason_of(raw) == "non_finite"


def test_deep_nesting_is_rejected_cleanly():
    raw = b'{"event_id": "e", "model": "m", "model_version": "1", "ts": 1, "features": {"x": ' + b"[" * 100000 + b"]" * 100000 + b"}}"
    assert reason_of(raw) == "too_deep"


def test_labels():
    lab = parse_label(b'{"event_id": "e-1", "model": "fraud", "ts": "2025-11-26T00:00:00Z", "label": 1}')
    assert lab.label == 1.0 and lab.ts == 1764115200.0
    assert reason_of(b'{"event_id": "e-1", "model": "fraud", "ts": 1}', parse_label) == "missing_field"
    assert reason_of(b'{"event_id": "e-1", "model": "fraud", "ts": 1, "label": {}}', parse_label) == "wrong_type"


def test_alert_ids_are_deterministic_and_schema_is_complete():
    kw = dict(
        model="fraud", model_version="3", kind="data_drift", feature="amount", metric="psi", score=0.31,
        threshold=0.25, p_value=1e-9, severity="critical", window=AlertWindow(100.0, 160.0, 4210),
        reference=AlertReference("ref-v3", 50000),
    )
    a, b = Alert(**kw, emitted_at=1.0), Alert(**kw, emitted_at=2.0)
    assert a.alert_id == b.alert_id == make_alert_id("fraud", "3", "data_drift", "amount", 100.0)
    assert Alert(**{**kw, "feature": "age"}).alert_id != a.alert_id
    d = json.loads(a.to_json())
    assert set(d) >= {"alert_id", "model", "model_version", "kind", "feature", "metric", "score", "threshold",
                      "p_value", "severity", "window", "reference", "emitted_at"}
    assert Alert.from_dict(d) == a
    with pytest.raises(ValueError):
        Alert(**{**kw, "kind": "vibes"})


def test_dead_letters_keep_the_original_bytes():
    for raw in (b'{"bad": 1}', b"\xff\x00binary"):
        try:
            parse_input(raw)
        except InvalidRecord as err:
            dl = DeadLetter.from_bytes("driftloop.inputs", 2, 17, err, raw)
        back = json.loads(dl.to_json())
        assert back["error"] and back["reason"] in REASONS and back["offset"] == 17
        assert DeadLetter(**back).raw_bytes() == raw


def test_retrain_request_ids_are_idempotent():
    a = RetrainRequest("fraud", "3", ["b", "a"], ["data_drift"], 0.0, 60.0)
    b = RetrainRequest("fraud", "3", ["a", "b"], ["data_drift"], 0.0, 60.0, requested_at=5.0)
    assert a.request_id == b.request_id
    assert RetrainRequest.from_dict(json.loads(a.to_json())) == a


def test_labelled_example_round_trip():
    ex = LabelledExample("e1", "fraud", "3", 10.0, {"amount": 1.0, "country": "DE"}, 1.0, 1.0, (0.1, 0.9))
    assert LabelledExample.from_dict(json.loads(json.dumps(ex.to_dict()))) == ex


# ---------------------------------------------------------------- property-based: no bytes crash the validator

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2000))
def test_no_byte_string_crashes_the_validator(raw):
    for parse in (parse_input, parse_label):
        try:
            parse(raw)
        except InvalidRecord as err:
            assert err.reason in REASONS


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(["event_id", "model", "model_version", "ts", "features", "entity",
                                         "prediction", "scores", "label", "x"]), json_values, max_size=9))
def test_no_json_object_crashes_the_validator(obj):
    raw = json.dumps(obj).encode()
    for parse in (parse_input, parse_label):
        try:
            ev = parse(raw)
        except InvalidRecord as err:
            assert err.reason in REASONS
        else:
            assert math.isfinite(ev.ts)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=10), st.none() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10), min_size=1, max_size=10),
       st.floats(min_value=0, max_value=4e9, allow_nan=False))
# (ts up to 2096: ``now`` is passed so that none is in the future)
def test_every_valid_event_is_accepted(features, ts):
    ev = parse_input(enc({"event_id": "e", "model": "m", "model_version": 1, "ts": ts, "features": features}), now=4e9)
    assert ev.features == features


# ---------------------------------------------------------------- strings, names, future times (issue 11)

def _with(**kw) -> bytes:
    base = {"event_id": "e", "model": "m", "model_version": "1", "ts": 1764115200.0, "features": {"x": 1.0}}
    return json.dumps({**base, **kw}).encode()  # json.dumps writes a lone surrogate as a \ud800 escape


@pytest.mark.parametrize("field, value", [
    ("model", "m\ud800"), ("model_version", "\udfff"), ("event_id", "e\ud800"),
    ("features", {"x\ud800": 1.0}), ("features", {"x": "DE\udc00"}), ("entity", {"c": "\ud800"}),
    ("entity", {"\ud800": "c"}), ("prediction", "\ud800"),
])
def test_lone_surrogates_are_rejected_wherever_they_are_kept(field, value):
    assert reason_of(_with(**{field: value})) == "not_utf8"


def test_lone_surrogates_in_labels_are_rejected_and_pairs_are_fine():
    lab = {"event_id": "e", "model": "m", "ts": 1764115200.0, "label": 1}
    for k, v in [("model", "m\ud800"), ("event_id", "\ud800"), ("label", "yes\ud800"), ("model_version", "\ud800")]:
        assert reason_of(json.dumps({**lab, k: v}).encode(), parse_label) == "not_utf8"
    assert parse_input(_with(model="m\U0001f600", features={"\U0001f600": "\ud83d\ude00"})).model == "m\U0001f600"


@pytest.mark.parametrize("name", ["m\n", "m\r", " m", "m ", "a\tb", "\x00", "a\u200bb", "a\u2028b", "m\x7f", "x" * 129, "a\u00a0"])
def test_model_and_version_names_follow_the_pattern(name):
    assert reason_of(_with(model=name)) == "bad_name"
    assert reason_of(_with(model_version=name)) == "bad_name"
    assert reason_of(json.dumps({"event_id": "e", "model": name, "ts": 1, "label": 1}).encode(), parse_label) == "bad_name"


@pytest.mark.parametrize("name", ["fraud|eu", "team/fraud", "../x", "/etc/passwd", "a b", "modèle", "x" * 128, "3", ".."])
def test_names_are_data_not_paths(name):
    from streams.contracts.validate import is_valid_name

    assert parse_input(_with(model=name, model_version=name)).model == name
    assert is_valid_name(name)


def test_event_times_too_far_ahead_of_the_clock_are_future():
    now = 1764115200.0
    ok = parse_input(_with(ts=now + 299), now=now, max_future_s=300)
    assert ok.ts == now + 299
    assert reason_of(_with(ts=now + 301), lambda r: parse_input(r, now=now, max_future_s=300)) == "future"
    assert reason_of(_with(ts="2499-01-01T00:00:00Z")) == "future"  # the wall clock by default
    assert parse_input(_with(ts=now + 86400), now=now, max_future_s=None).ts == now + 86400  # check off
    lab = json.dumps({"event_id": "e", "model": "m", "ts": now + 3600, "label": 1}).encode()
    assert reason_of(lab, lambda r: parse_label(r, now=now, max_future_s=60)) == "future"
    assert parse_label(lab, now=now, max_future_s=7200).ts == now + 3600


def test_messages_never_carry_unprintable_text():
    for raw in [_with(ts="\ud800 soon"), _with(features={"\ud800" * 300: 1}), _with(model="m\n" * 100)]:
        with pytest.raises(InvalidRecord) as info:
            parse_input(raw)
        str(info.value).encode("utf-8")  # loggable
        assert len(str(info.value)) < 500


# ---------------------------------------------------------------- dead letters fit their budget

@pytest.mark.parametrize("payload", [
    b'"\\' * 200_000,  # quotes and backslashes: doubled by JSON escaping
    "\U0001f600".encode() * 250_000,  # astral characters: 12 bytes each once escaped
    bytes(range(256)) * 4000,  # binary: base64
    b"\x01" * 300_000,  # control characters: 6 bytes each once escaped
])
def test_dead_letters_fit_their_byte_budget_and_keep_length_and_hash(payload):
    import hashlib

    dl = DeadLetter.from_bytes("driftloop.inputs", 1, 5, InvalidRecord("too_large", "too big"), payload)
    for budget in (512 * 1024, 100_000, 2_000):
        out = dl.to_bytes(budget)
        assert len(out) <= budget
        back = DeadLetter(**json.loads(out))
        assert back.raw_truncated and back.raw_length == len(payload)
        assert back.raw_sha256 == hashlib.sha256(payload).hexdigest()
        assert payload.startswith(back.raw_bytes()) and len(back.raw_bytes()) > budget // 20
        assert (back.reason, back.error, back.offset) == ("too_large", "too big", 5)


def test_small_dead_letters_are_whole():
    dl = DeadLetter.from_bytes("t", 0, 1, InvalidRecord("not_json", "x"), b"{bad")
    back = DeadLetter(**json.loads(dl.to_bytes()))
    assert back.raw_bytes() == b"{bad" and not back.raw_truncated and back.raw_length == 4
    old = {"topic": "t", "partition": 0, "offset": 1, "error": "e", "raw": "x", "reason": "not_json"}
    assert DeadLetter(**old).raw_bytes() == b"x"  # letters written before the new fields still load
    assert DeadLetter.key_for(b"k") == b"k" and DeadLetter.key_for(None) is None
    assert DeadLetter.key_for(b"k" * 5000).startswith(b"sha256:") and len(DeadLetter.key_for(b"k" * 5000)) == 71
