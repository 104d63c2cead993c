"""The ``worker.retrain`` section is refused at load when it would silently never retrain: an unknown alert kind
(a typo such as ``perfomance``), no kind at all, an unknown severity."""

from __future__ import annotations

import pytest

from streams.config import ConfigError, check_all, section


def test_an_unknown_retrain_kind_is_refused_with_the_valid_ones():
    from streams.alerts.retrain_policy import RetrainPolicyConfig
    from streams.contracts.events import ALERT_KINDS

    with pytest.raises(ConfigError) as e:
        section(RetrainPolicyConfig, {"kinds": ["perfomance", "slo-burn"]}, "worker.retrain")
    msg = str(e.value)
    assert "'perfomance' (did you mean 'performance'?)" in msg and "'slo-burn' (did you mean 'slo_burn'?)" in msg
    assert all(k in msg for k in ALERT_KINDS)
    with pytest.raises(ConfigError, match="unknown alert kind"):
        check_all({"worker": {"retrain": {"kinds": ["performance", "drift"]}}})
    with pytest.raises(ConfigError, match="kinds is empty.*enabled: false"):
        section(RetrainPolicyConfig, {"kinds": []}, "worker.retrain")
    with pytest.raises(ConfigError, match="min_severity must be one of"):
        section(RetrainPolicyConfig, {"min_severity": "page"}, "worker.retrain")
    assert section(RetrainPolicyConfig, {"kinds": list(ALERT_KINDS)}, "worker.retrain").kinds == ALERT_KINDS
    assert not section(RetrainPolicyConfig, {"kinds": [], "enabled": False}, "worker.retrain").enabled


def test_any_command_says_bad_configuration_not_a_traceback(tmp_path, monkeypatch, capsys):
    from streams.cli.main import main

    monkeypatch.setenv("DRIFTLOOP_HOME", str(tmp_path / "home"))
    cfg = tmp_path / "x.yml"
    cfg.write_text("worker:\n  retrain: {kinds: [perfomance, slo-burn]}\n")
    assert main(["--config", str(cfg), "models", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("driftloop models: bad configuration: worker.retrain.kinds: unknown alert kind(s)"), err
