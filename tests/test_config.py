"""Typed configuration: unknown sections and keys and wrong types are refused at start, with the key's path."""

from __future__ import annotations

import pytest

from streams import config as cfg
from streams.adapters.faust_app import load_settings
from streams.config import ConfigError


def _write(tmp_path, text: str):
    p = tmp_path / "driftloop.yaml"
    p.write_text(text)
    return p


def test_unknown_section_is_refused_with_a_suggestion(tmp_path):
    p = _write(tmp_path, "topic:\n  inputs: x\n")
    with pytest.raises(ConfigError, match=r"unknown section\(s\) 'topic' \(did you mean 'topics'\?\)"):
        cfg.load_file(p)


def test_unknown_key_is_refused_with_its_section(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['metric_port'\] in section 'worker'"):
        load_settings({"worker": {"metric_port": 9100}})


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"worker": {"metrics_port": "29118x"}}, r"worker.metrics_port: expected an integer, got str '29118x'"),
        ({"worker": {"label_join": "yes"}}, r"worker.label_join: expected a boolean, got str 'yes'"),
        ({"worker": {"batch_size": True}}, r"worker.batch_size: expected an integer, got bool True"),
        ({"topics": {"partitions": 2.5}}, r"topics.partitions: expected an integer, got float 2.5"),
        ({"drift": {"window_seconds": "60"}}, r"drift.window_seconds: expected a number, got str '60'"),
        ({"drift": {"concept_detectors": "adwin"}}, r"drift.concept_detectors: expected a list, got str 'adwin'"),
        ({"drift": {"concept_detectors": ["adwin", 3]}}, r"drift.concept_detectors\[1\]: expected a string, got int 3"),
        ({"worker": {"retrain": ["performance"]}}, r"worker.retrain: expected a mapping"),
        ({"worker": 5}, r"section 'worker' in the configuration must be a mapping"),
    ],
)
def test_wrong_types_are_refused_with_the_path_and_expected_type(raw, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(raw)


def test_valid_values_are_converted_where_lossless():
    s = load_settings({"drift": {"window_seconds": 30, "concept_detectors": ["cusum", "adwin"]},
                       "worker": {"allowed_lateness_s": None, "idle_source_timeout_s": 2}})
    assert s.drift.window_seconds == 30.0 and isinstance(s.drift.window_seconds, float)
    assert s.drift.concept_detectors == ("cusum", "adwin")
    assert s.worker.allowed_lateness_s is None and s.worker.idle_source_timeout_s == 2.0


def test_a_file_with_every_documented_section_loads(tmp_path):
    text = "\n".join(f"{name}: {{}}" for name in cfg.SECTIONS)
    assert set(cfg.load_file(_write(tmp_path, text))) == set(cfg.SECTIONS)


@pytest.mark.parametrize("text, message", [
    ("topic:\n  inputs: x\n", "did you mean 'topics'"),
    ('worker:\n  metrics_port: "29118x"\n', "worker.metrics_port: expected an integer"),
    ("worker:\n  retrain: {cooldown: 5}\n", "unknown key(s) ['cooldown'] in section 'worker.retrain'"),
    ("kafka: {password: hunter2, x: [}\n", "not valid YAML at line 1"),
])
@pytest.mark.parametrize("command", [["kafka", "status"], ["models", "list"]])
def test_every_command_refuses_a_bad_file_in_one_line_without_a_traceback(tmp_path, capsys, text, message, command):
    from streams.cli.main import main

    p = _write(tmp_path, text)
    assert main(["--config", str(p), *command]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and "hunter2" not in err and len(err.splitlines()) == 1
