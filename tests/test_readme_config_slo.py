"""The README's configuration example documents the quality keys (``slo``, the drift estimate) with their defaults."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from streams.config import section
from streams.judge.drift_config import DriftConfig
from streams.judge.slo import SloConfig
from tests.test_readme_config import README


def _block() -> dict:
    blocks = [b.split("```", 1)[0] for b in README.read_text(encoding="utf-8").split("```yaml")[1:]]
    return yaml.safe_load(next(b for b in blocks if b.startswith("\nkafka:")))


def test_readme_slo_example_names_every_key_with_its_default():
    raw = _block()["slo"]
    assert set(raw) == {f.name for f in dataclasses.fields(SloConfig)}
    got, default = section(SloConfig, raw, "slo"), SloConfig()
    for key in ("enabled", "default_target", "window_days", "min_labelled"):
        assert getattr(got, key) == getattr(default, key), key
    assert got.burn_rates.keys() == default.burn_rates.keys()
    for name, r in default.burn_rates.items():
        g = got.burn_rates[name]
        assert (g.long_h, g.short_h, g.factor, g.budget_percent, g.severity) == (
            r.long_h, pytest.approx(r.short_h, abs=1e-4), r.factor, r.budget_percent, r.severity), name


def test_readme_drift_example_names_the_estimate_keys_with_their_defaults():
    raw = _block()["drift"]
    got, default = section(DriftConfig, raw, "drift"), DriftConfig()
    for key in ("estimate_performance", "estimate_calibration"):
        assert key in raw and getattr(got, key) == getattr(default, key), key
    assert "estimated_accuracy" in raw["thresholds"]
    assert got.thresholds.estimated_accuracy == default.thresholds.estimated_accuracy
