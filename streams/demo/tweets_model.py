"""Version 1 of the tweets demo's model: WordLlama's pretrained embeddings, an encoder and a head.

The architecture is ``wordllama-text`` (trainers/architectures/text.py): WordLlama's
l2_supercat token embeddings (read offline from the ``wordllama`` wheel) mean-pooled, then
Linear + ReLU (``encoder``) and the ``head``.  Version 1 trains the encoder and head on 2013
tweets with the backbone frozen, fills its replay buffer from them, and is registered with
its backbone's origin and the licence decision, then promoted.

WordLlama's weights come with the Llama 2 community licence, which is not an OSI licence: the
demo's config accepts it explicitly (``licences.accept``) with the reason below, as a user of
the real product must decide for themselves.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streams.demo.tweets_world import TweetsWorld

MODEL = "tweets"
LICENCE_ACCEPTANCE = {"wordllama": "driftloop demo: Llama 2 community licence terms reviewed, research demo use"}
SPEC = {"max_tokens": 48, "hidden": (128,), "dim": 256}
V1_LEARNER = {"transfer": {"strategy": "layers", "layers": ["encoder*"]}, "optimizer": "adam", "epochs": 20}
REPLAY_CAPACITY = 1000  # its held-out 30% (300 tweets of 2013) is the gate's "old data": 150 made the verdict noisy


def train_version_1(world: TweetsWorld, *, seed: int = 0) -> tuple[Any, Any]:
    """Version 1 trained on ``world.train`` (backbone frozen): (ContinualLearner with its replay buffer, ModelSpec)."""
    from trainers.architectures import build
    from trainers.architectures.text import text_spec
    from trainers.training.continual import ContinualLearner
    from trainers.training.replay import ReplayBuffer

    spec = text_spec(["text"], len(world.outlets), ["text"], **SPEC)
    X = spec.encode([{"text": t} for t in world.train["text"]])
    y = world.train["outlet"].map({o: i for i, o in enumerate(world.outlets)}).to_numpy(np.int64)
    net = build(spec, seed=seed, pretrained=True)
    learner = ContinualLearner(net, replay=ReplayBuffer(REPLAY_CAPACITY, seed=seed), device="cpu", seed=seed,
                               **V1_LEARNER)
    learner.fit(X, y)
    return learner, spec


def reference_rows(learner: Any, spec: Any, world: TweetsWorld, t_start: float) -> list[Any]:
    """Version 1's served predictions on ``world.reference`` with their labels (``LabelledExample``s), the rows of
    its reference profile (one a second of event time from ``t_start``)."""
    from feature_repo.tweets import text_stats, tweet_key
    from streams.contracts.events import LabelledExample

    texts = list(world.reference["text"])
    proba = learner.predict_proba(spec.encode([{"text": t} for t in texts]))
    return [LabelledExample(f"ref-{tid}", MODEL, "1", t_start + i, {"text": text, **text_stats(text)}, outlet,
                            world.outlets[int(p.argmax())], [round(float(v), 5) for v in p],
                            {"tweet_id": tweet_key(tid)})
            for i, (tid, text, outlet, p) in enumerate(zip(world.reference["tweet_id"], texts,
                                                           world.reference["outlet"], proba))]


def register_version_1(registry_dir: str, learner: Any, spec: Any, world: TweetsWorld, reference_id: str) -> str:
    """Register version 1 with its backbone origin, replay buffer and licence decision, and promote it."""
    from trainers.architectures import origin_of
    from trainers.licences import LicencePolicy
    from trainers.registry import ModelRegistry, Provenance

    policy = LicencePolicy(accept=LICENCE_ACCEPTANCE)
    reg = ModelRegistry(registry_dir)
    prov = Provenance(base_model=origin_of(learner.model), reference_profile_id=reference_id,
                      training={"data": "Health News in Twitter, 2013 tweets", "n": int(len(world.train)),
                                "learner": V1_LEARNER})
    info = reg.register(MODEL, spec, learner.model.state_dict(), replay=learner.replay, classes=list(world.outlets),
                        provenance=prov, licence_policy=policy)
    reg.promote(MODEL, info.version, licence_policy=policy, actor="driftloop demo",
                reason="version 1 of the demo, trained on 2013 tweets")
    return info.version
