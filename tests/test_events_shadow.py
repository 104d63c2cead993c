"""The optional ``shadow`` field of inference inputs (docs/design.md): a version served in shadow, its prediction and
scores; checked by the rules of the top-level prediction and scores, on both validator paths."""

from __future__ import annotations

import json

import pytest

from streams.contracts.events import InferenceEvent, InvalidRecord, LabelledExample, ShadowPrediction
from streams.contracts.validate import _parse_input_full, parse_input, parse_input_batch

NOW = 1_764_115_200.0
BASE = {"event_id": "e1", "model": "news", "model_version": "1", "ts": NOW - 5, "features": {"x": 1.0},
        "prediction": "cnn", "scores": [0.6, 0.4]}
SHADOW = {"model_version": "2", "prediction": "bbc", "scores": [0.1, 0.9]}


def raw(**fields) -> bytes:
    return json.dumps({**BASE, **fields}).encode()  # ASCII: a lone surrogate is a \u escape


def both(data: bytes):
    """The fast and the full path's outcome (they must agree)."""
    out = []
    for parse in (parse_input, _parse_input_full):
        try:
            out.append(("ok", parse(data, now=NOW)))
        except InvalidRecord as err:
            out.append((err.reason, str(err)))
    fast, full = out
    assert fast[0] == full[0] and (fast[0] != "ok" or fast[1] == full[1])
    return full


def test_a_shadow_prediction_is_decoded_and_written_back():
    ev = parse_input(raw(shadow=SHADOW), now=NOW)
    assert ev.shadow == ShadowPrediction("2", "bbc", (0.1, 0.9))
    assert ev.to_dict()["shadow"] == SHADOW
    assert parse_input(json.dumps(ev.to_dict()).encode(), now=NOW) == ev
    assert "shadow" not in parse_input(raw(), now=NOW).to_dict()
    assert both(raw(shadow=SHADOW))[1] == ev


@pytest.mark.parametrize("shadow, expected", [
    (None, None),
    ({"model_version": "2"}, ShadowPrediction("2")),
    ({"model_version": "v2|eu", "prediction": 1, "scores": [1]}, ShadowPrediction("v2|eu", 1.0, (1.0,))),
    ({"model_version": 7, "prediction": True}, ShadowPrediction("7", 1.0)),  # like the top level: full path only
    ({"model_version": "2", "prediction": None, "scores": None, "note": "x"}, ShadowPrediction("2")),  # unknown: ignored
])
def test_valid_shadows(shadow, expected):
    reason, ev = both(raw(shadow=shadow))
    assert reason == "ok" and ev.shadow == expected


@pytest.mark.parametrize("shadow, reason, says", [
    ("2", "wrong_type", "'shadow' must be an object"),
    ([SHADOW], "wrong_type", "'shadow' must be an object"),
    ({}, "missing_field", "'shadow.model_version' is missing"),
    ({"prediction": "bbc"}, "missing_field", "'shadow.model_version' is missing"),
    ({"model_version": "2 "}, "bad_name", "'shadow.model_version'"),
    ({"model_version": "v\n"}, "bad_name", "'shadow.model_version'"),
    ({"model_version": "x" * 300}, "bad_value", "'shadow.model_version' must be 1..256"),
    ({"model_version": ""}, "bad_value", "'shadow.model_version' must be 1..256"),
    ({"model_version": "\ud800"}, "not_utf8", "'shadow.model_version'"),
    ({"model_version": "2", "prediction": [1]}, "wrong_type", "'shadow.prediction' must be a number or string"),
    ({"model_version": "2", "prediction": {"a": 1}}, "wrong_type", "'shadow.prediction'"),
    ({"model_version": "2", "prediction": 10**400}, "non_finite", "shadow.prediction"),
    ({"model_version": "2", "prediction": "a\udc00"}, "not_utf8", "'shadow.prediction'"),
    ({"model_version": "2", "scores": []}, "wrong_type", "'shadow.scores' must be a non-empty list of numbers"),
    ({"model_version": "2", "scores": 0.5}, "wrong_type", "'shadow.scores' must be a non-empty list"),
    ({"model_version": "2", "scores": [0.5, "x"]}, "wrong_type", "'shadow.scores[1]' must be a number"),
    ({"model_version": "2", "scores": [0.5, True]}, "wrong_type", "'shadow.scores[1]' must be a number"),
    ({"model_version": "2", "scores": [10**400]}, "non_finite", "shadow.scores[0]"),
])
def test_invalid_shadows_get_one_reason_that_says_what_to_fix(shadow, reason, says):
    got, message = both(raw(shadow=shadow))
    assert got == reason and says in message, message


def test_the_top_level_messages_are_unchanged_by_the_shared_checks():
    assert both(raw(prediction=[1]))[1].startswith("'prediction' must be a number or string")
    assert both(raw(scores=[0.5, None]))[1].startswith("'scores[1]' must be a number")


def test_a_batch_with_shadows_takes_the_bulk_path_only_when_every_shadow_name_is_valid():
    good = [raw(event_id=f"e{i}", shadow=dict(SHADOW, model_version=str(i % 3 + 2))) for i in range(20)]
    evs, keys = parse_input_batch(good, now=NOW)
    assert keys == {("news", "1")} and all(isinstance(e, InferenceEvent) and e.shadow for e in evs)
    bad = good[:5] + [raw(event_id="bad", shadow={"model_version": " 2"})] + good[5:]
    out, keys = parse_input_batch(bad, now=NOW)
    assert keys is None and isinstance(out[5], InvalidRecord) and out[5].reason == "bad_name"
    assert [o for i, o in enumerate(out) if i != 5] == evs


def test_labelled_examples_carry_the_shadow_as_plain_json():
    ev = parse_input(raw(shadow=SHADOW), now=NOW)
    ex = LabelledExample(ev.event_id, ev.model, ev.model_version, ev.ts, ev.features, "bbc", ev.prediction, ev.scores,
                         ev.entity, ev.shadow.to_dict())
    d = json.loads(json.dumps(ex.to_dict()))
    assert d["shadow"] == SHADOW
    assert LabelledExample.from_dict(d) == ex
    plain = LabelledExample("e2", "news", "1", NOW, {"x": 1.0}, "cnn")
    assert "shadow" not in plain.to_dict() and LabelledExample.from_dict(plain.to_dict()) == plain
    with pytest.raises(InvalidRecord, match="shadow.scores"):
        LabelledExample.from_dict(dict(d, shadow={"model_version": "2", "scores": "high"}))
