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
    from trainers.licences import LicencePolicy
    from trainers.registry_signing import RegistrySettings
    from trainers.retrain_job import TrainerConfig
    from streams.judge.slo import SloConfig
    from trainers.promotion.live_gate import LiveGateConfig

    blocks = [b.split("```", 1)[0] for b in README.read_text(encoding="utf-8").split("```yaml")[1:]]
    block = next(b for b in blocks if b.startswith("\nkafka:"))  # the Configuration section's example
    raw = yaml.safe_load(block)
    sections = {"drift": DriftConfig, "worker": WorkerConfig, "dispatcher": DispatcherConfig,
                "trainers": TrainerConfig, "features": FeaturesSettings, "parity": ParitySettings,
                "licences": LicencePolicy, "registry": RegistrySettings, "slo": SloConfig, "promotion": LiveGateConfig}
    optional = {"slo"}  # checked when the example holds it
    assert set(raw) | optional == {"kafka", "topics", *sections}, "a README section without a check here"
    sections = {k: v for k, v in sections.items() if k in raw}
    assert C.kafka_settings(raw).external  # an address in the file means the user's own cluster
    assert C.topics(raw).inputs == "driftloop.inputs"
    for name, cls in sections.items():
        assert isinstance(C.section(cls, raw[name], name), cls)
    C.check_all(raw)  # and the whole file, as every command checks it at start
    for b in blocks:  # the other examples (e.g. a licences section) are valid config too
        C.check_all(yaml.safe_load(b))
