"""The configuration example in the README is accepted by every config section it names."""

from __future__ import annotations

from pathlib import Path

import yaml

from streams import config as C

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_config_example_is_valid():
    from feature_repo.settings import FeaturesSettings
    from streams.judge.drift_config import DriftConfig
    from streams.adapters.parity_step import ParitySettings
    from streams.worker.state import WorkerConfig
    from trainers.dispatch.ledger import DispatcherConfig
    from trainers.retrain_job import TrainerConfig

    block = README.read_text(encoding="utf-8").split("```yaml", 1)[1].split("```", 1)[0]
    raw = yaml.safe_load(block)
    sections = {"drift": DriftConfig, "worker": WorkerConfig, "dispatcher": DispatcherConfig,
                "trainers": TrainerConfig, "features": FeaturesSettings, "parity": ParitySettings}
    assert set(raw) == {"kafka", "topics", *sections}, "a README section without a check here"
    assert C.kafka_settings(raw).external  # an address in the file means the user's own cluster
    assert C.topics(raw).inputs == "driftloop.inputs"
    for name, cls in sections.items():
        assert isinstance(C.section(cls, raw[name], name), cls)
