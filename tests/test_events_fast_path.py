"""The msgspec fast path of parse_input/parse_label accepts only what the full validator accepts, with the same result.

bench/validator_fuzz.py runs the same comparison on millions of generated and mutated records."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.contracts.events import InvalidRecord, MAX_ID_LEN, MAX_NAME_LEN, MAX_NESTING, MAX_STRING_VALUE_LEN, REASONS
from streams.contracts.validate import _parse_input_full, _parse_label_full, parse_input, parse_inputs, parse_label

NOW = 1_764_115_200.0 + 86_400  # a fixed wall clock: the future check is part of both paths
FUTURE = 300.0


# Each field is valid most of the time, so that many records are accepted (by both paths) and the
# rest are wrong in one or two places.
def mostly(good, bad):
    return st.one_of(good, good, good, good, bad)


surrogates = st.sampled_from(["\ud800", "m\udfff", "\udc00\ud800", "a\ud83d"])
weird = st.sampled_from(["m\n", " m", "m ", "\x00", "a\u200bb", "\u2028", "fraud|eu", "../x", "/etc/passwd", "a\tb",
                         "x" * MAX_NAME_LEN, "x" * (MAX_NAME_LEN + 1), "\U0001f600", "\ud83d\ude00"])
numbers = (st.floats(allow_nan=False, allow_infinity=False) | st.integers(min_value=-(10**20), max_value=10**20)
           | st.floats(min_value=-1e10, max_value=2e10))
huge = st.integers(min_value=10**308, max_value=10**320) | st.just(1e308)
ids = mostly(st.text(min_size=1, max_size=20),
             st.text(min_size=MAX_ID_LEN - 1, max_size=MAX_ID_LEN + 2) | st.integers() | st.booleans() | st.none() | st.just("")
             | surrogates | weird)
stamps = mostly(st.floats(min_value=0, max_value=4e9) | st.integers(min_value=0, max_value=4 * 10**9)
                | st.floats(min_value=NOW + FUTURE - 2, max_value=NOW + FUTURE + 2),
                numbers | huge | st.sampled_from(["2025-11-26T00:00:00Z", "1764115200", "soon", "", None, True, "2499-01-01T00:00:00Z",
                                                  "\ud800"]))
values = mostly(numbers | st.none() | st.text(max_size=20),
                st.booleans() | huge | st.text(min_size=MAX_STRING_VALUE_LEN - 1, max_size=MAX_STRING_VALUE_LEN + 1)
                | st.lists(st.integers(), max_size=2) | surrogates)
names = mostly(st.text(min_size=1, max_size=12), st.just("") | st.text(min_size=MAX_ID_LEN - 1, max_size=MAX_ID_LEN + 1)
               | surrogates)
features = mostly(st.dictionaries(names, values, min_size=1, max_size=6),
                  st.just({}) | st.none() | st.lists(numbers, max_size=2) | st.text(max_size=3))
nested = st.integers(min_value=MAX_NESTING - 3, max_value=MAX_NESTING + 3).map(lambda n: json.loads("[" * n + "]" * n))
optional = (st.none() | st.booleans() | numbers | huge | st.text(max_size=5) | surrogates | nested
            | st.lists(numbers | st.booleans() | st.text(max_size=2), max_size=3)
            | st.dictionaries(st.text(max_size=4) | surrogates, st.text(max_size=4) | st.integers() | st.booleans() | numbers
                              | surrogates, max_size=3))


def outcome(parse, raw, **kw):
    try:
        return "ok", parse(raw, now=NOW, max_future_s=FUTURE, **kw)
    except InvalidRecord as err:
        assert err.reason in REASONS
        return err.reason, None


def encodings(obj):
    return [json.dumps(obj).encode(), json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")]


@settings(max_examples=600, deadline=None)
@given(st.fixed_dictionaries({"event_id": ids, "model": ids, "model_version": ids, "ts": stamps, "features": features},
                             optional={"entity": optional, "prediction": optional, "scores": optional, "x": optional}))
def test_inputs_fast_path_agrees_with_the_full_validator(obj):
    for raw in encodings(obj):
        assert outcome(parse_input, raw) == outcome(_parse_input_full, raw)
    assert [batched(r) for r in parse_inputs(encodings(obj), now=NOW, max_future_s=FUTURE)] == [
        outcome(parse_input, raw) for raw in encodings(obj)]


shadow_predictions = mostly(
    st.fixed_dictionaries({"model_version": ids},
                          optional={"prediction": mostly(numbers | st.text(max_size=5) | st.none(), optional),
                                    "scores": mostly(st.lists(numbers, min_size=1, max_size=3) | st.none(), optional),
                                    "x": optional}),
    optional | st.just({}))


@settings(max_examples=400, deadline=None)
@given(st.fixed_dictionaries({"event_id": st.just("e1"), "model": st.just("m"), "model_version": st.just("1"),
                              "ts": st.just(NOW - 10), "features": st.just({"a": 1.0}), "shadow": shadow_predictions},
                             optional={"prediction": optional, "scores": optional}))
def test_shadow_predictions_fast_path_agrees_with_the_full_validator(obj):
    raws = encodings(obj)
    for raw in raws:
        assert outcome(parse_input, raw) == outcome(_parse_input_full, raw)
    assert [batched(r) for r in parse_inputs(raws, now=NOW, max_future_s=FUTURE)] == [outcome(parse_input, r) for r in raws]


def batched(r):
    """The outcome of one record of parse_inputs, in outcome()'s form."""
    if isinstance(r, InvalidRecord):
        assert r.reason in REASONS
        return r.reason, None
    return "ok", r


@settings(max_examples=400, deadline=None)
@given(st.fixed_dictionaries({"event_id": ids, "model": ids, "ts": stamps, "label": values},
                             optional={"model_version": ids, "x": optional}))
def test_labels_fast_path_agrees_with_the_full_validator(obj):
    for raw in encodings(obj):
        assert outcome(parse_label, raw) == outcome(_parse_label_full, raw)


def test_fast_path_edge_cases_agree():
    base = {"event_id": "e", "model": "m", "model_version": "1", "ts": 1.0, "features": {"a": 1.0}}
    deep = json.dumps(base).encode()[:-1] + b', "debug": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    cases = [b'{"event_id":"e","model":"m","model_version":"1","ts":1,"features":{"a":NaN}}',
             b'{"event_id":"e","model":"m","model_version":"1","ts":1,"features":{"a":1e400}}',
             b'{"event_id":"e","model":"m","model_version":"1","ts":1,"features":{"a":1,"a":2}}',
             b'{"event_id":"\\ud800","model":"m","model_version":"1","ts":1,"features":{"a":1}}',
             b'{"event_id":"e","model":"m\\ud800","model_version":"1","ts":1,"features":{"a":1}}',
             b'{"event_id":"e","model":"m\\n","model_version":"1","ts":1,"features":{"a":1}}',
             b'{"event_id":"e","model":"m","model_version":"1","ts":1,"features":{"a":1},"x":"\\udc00"}',
             b'  {"event_id":"e","model":"m","model_version":"1","ts":1,"features":{"":1}}',
             b'{"event_id":"e","model":"m","model_version":"1","ts":1,"features":{"a":1},"x":"[[[[' + b"[" * 100 + b'"}',
             b'{"event_id":"e","model":"m","model_version":"1","ts":1,"features":{"a":1},"x":"\xed\xa0\x80"}',  # fuzz find
             b'{"event_id":"e","model":"m","model_version":"1","ts":1,"features":{"a":1},"\xff":1}',
             b'{"event_id":"e","model":"m","model_version":"1","ts":1,"features":{"a":1},"x":1' + b"0" * 5000 + b"}",
             b'{"event_id":"e","model":"m","model_version":"1","ts":1,"features":{"a":-1' + b"0" * 5000 + b"}}",
             b'{"event_id":"e","model":"m","model_version":"1","ts":1' + b"0" * 5000 + b',"features":{"a":1}}',
             deep, deep[:-1], b"[" * 5000, b'"' + b"[" * 5000,
             b'\xff' + json.dumps(base).encode(), json.dumps(base).encode() + b" x", b"", b"[]", b"null"]
    assert [batched(r) for r in parse_inputs(cases, now=NOW, max_future_s=FUTURE)] == [
        outcome(parse_input, raw) for raw in cases]
    for raw in cases:
        assert outcome(parse_input, raw) == outcome(_parse_input_full, raw), raw
        assert outcome(parse_label, raw) == outcome(_parse_label_full, raw), raw
    big = json.dumps(dict(base, features={"a": 1.0, "s": "x" * 200})).encode()
    assert outcome(lambda r, **kw: parse_input(r, max_bytes=100, **kw), big) == ("too_large", None)


good_ids = st.text(min_size=1, max_size=20)
good_names = st.text(st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs")), min_size=1, max_size=20)


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({"event_id": good_ids, "model": good_names, "model_version": good_names,
                              "ts": st.floats(min_value=0, max_value=NOW) | st.integers(min_value=0, max_value=int(NOW)),
                              "features": st.dictionaries(st.text(min_size=1, max_size=12), numbers | st.none() | st.text(max_size=20),
                                                          min_size=1, max_size=8)},
                             optional={"entity": st.dictionaries(st.text(max_size=4), st.text(max_size=4) | st.integers(), max_size=3),
                                       "prediction": numbers | st.text(max_size=5),
                                       "scores": st.lists(numbers, min_size=1, max_size=3)}))
def test_well_formed_inputs_take_the_fast_path_with_the_same_result(obj):
    from streams.contracts.validate import _INPUT_DECODER, _fast_input

    for raw in encodings(obj):
        fast = _fast_input(_INPUT_DECODER.decode(raw), NOW, FUTURE)
        assert fast is not None and fast == _parse_input_full(raw, now=NOW, max_future_s=FUTURE)


def test_batch_of_valid_records_is_checked_in_bulk_with_the_same_verdicts():
    """parse_input_batch: a batch of valid records (the bulk path) gives the per-record results and its
    (model, version) pairs; one bad record anywhere (future, bad name, not the fast shape, too large,
    not bytes, an empty or too long feature name) sends the whole batch through the per-record path,
    with the same verdicts."""
    from streams.contracts.validate import parse_input_batch

    def rec(i, **kw):
        d = {"event_id": f"e{i}", "model": "m", "model_version": str(i % 2), "ts": NOW - i, "features": {"a": float(i)}}
        d.update(kw)
        return json.dumps(d).encode()

    good = [rec(i) for i in range(20)]
    evs, keys = parse_input_batch(good, now=NOW, max_future_s=FUTURE)
    assert keys == {("m", "0"), ("m", "1")}
    assert [batched(r) for r in evs] == [outcome(parse_input, raw) for raw in good]
    bad = [rec(0, ts=NOW + FUTURE + 1), rec(0, model="m\n"), rec(0, x=1), b"{", b"", bytearray(good[0]),
           json.dumps({"event_id": "e", "model": "m", "model_version": "1", "ts": 1.0,
                       "features": {"s": "x" * 200}}).encode()]
    for b in bad:
        for pos in (0, 7, 20):
            batch = good[:pos] + [b] + good[pos:]
            evs, keys = parse_input_batch(batch, max_bytes=150, now=NOW, max_future_s=FUTURE)
            assert keys is None
            want = [outcome(lambda r, **kw: parse_input(r, max_bytes=150, **kw), raw) for raw in batch]
            assert [batched(r) for r in evs] == want
    names = ({"": 1.0}, {"a": 1.0, "k" * 257: 1.0}, {"k" * 256: 1.0})
    for b in (rec(0, features=f) for f in names):
        for pos in (0, 20):
            batch = good[:pos] + [b] + good[pos:]
            evs, keys = parse_input_batch(batch, now=NOW, max_future_s=FUTURE)
            assert [batched(r) for r in evs] == [outcome(parse_input, raw) for raw in batch]
            assert [batched(r) for r in evs] == [outcome(_parse_input_full, raw) for raw in batch]
    assert parse_input_batch([], now=NOW) == ([], set())
