"""Typed keys: any model and version string round-trips unchanged through state and message keys."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from streams.contracts.keys import ModelKey, decode_parts, encode_parts, model_key
from streams.alerts.parity import ParityWindowKey
from streams.worker.state import mv_key, mv_parts

names = st.text(min_size=1, max_size=30)


@given(names, names)
def test_model_key_round_trips_any_text(model, version):
    assert ModelKey.decode(ModelKey(model, version).encode()) == ModelKey(model, version)
    assert mv_parts(mv_key(model, version)) == (model, version)


def test_separator_characters_keep_their_place():
    assert mv_parts(mv_key("fraud|eu", "3")) == ("fraud|eu", "3")
    assert mv_parts(mv_key("fraud", "eu|3")) == ("fraud", "eu|3")
    assert mv_key("fraud|eu", "3") != mv_key("fraud", "eu|3")
    assert model_key("a\x1fb", "1") == ModelKey("a\x1fb", "1").encode()


@given(names, names, st.floats(allow_nan=False, allow_infinity=False), st.floats(allow_nan=False, allow_infinity=False))
def test_parity_window_key_round_trips(model, version, start, end):
    k = ParityWindowKey(model, version, start, end)
    assert ParityWindowKey.from_str(k.to_str()) == k


@pytest.mark.parametrize("bad", ["fraud|3", '["only-one"]', '{"a": 1}', "", b"\xff"])
def test_decoding_a_foreign_key_fails_clearly(bad):
    with pytest.raises(ValueError, match="not a"):
        ModelKey.decode(bad)


def test_parts_keep_numbers():
    assert decode_parts(encode_parts("m", "1", 0.5, 60.0), 4) == ["m", "1", 0.5, 60.0]
