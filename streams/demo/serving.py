"""A small model server for the demo: serves the live registry version and hot-swaps on model updates.

What a real model server does in the loop, in one process: it loads the version that the
registry says is live, answers requests (here: rows of the demo's world) with that version's
prediction and class probabilities, publishes each request as an inference input
(docs/design.md contract) and, later, its label; when a model-updates event arrives
(``trainers.records.ModelUpdate``), it loads the new version and serves it from the next
request on (:meth:`ServingSimulator.on_model_update`).  When the update names a ``shadow`` version
(a candidate before its promotion, or the parent while a promotion is watched), each input also
carries that version's prediction and scores in its ``shadow`` field, as a real server running a
shadow model would publish them (the live gate compares both on the same labelled inputs).

Features are computed at serving time with the same function as the feature store's batch
pipeline (``feature_repo/tweets.py``), unless ``column_mixup`` simulates a serving bug that
swaps two columns (a training/serving skew: the parity check's case).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

#: the serving bug of the demo's last phase: two served feature columns swapped
MIXUP = ("n_words", "n_hashtags")


def accuracy(inputs: list[dict[str, Any]], labels: list[dict[str, Any]]) -> float:
    """Share of ``inputs`` whose prediction equals their label (joined by event_id; unlabelled ones left out)."""
    truth = {lab["event_id"]: lab["label"] for lab in labels}
    hits = [inp["prediction"] == truth[inp["event_id"]] for inp in inputs if inp["event_id"] in truth]
    return sum(hits) / max(1, len(hits))


@dataclass(frozen=True)
class Served:
    """One phase's published records: inputs (with prediction and scores) and their labels."""

    inputs: list[dict[str, Any]]
    labels: list[dict[str, Any]]
    version: str


class ServingSimulator:
    """Serves ``model`` from the registry at ``registry_dir``; starts on the registry's live version."""

    def __init__(self, registry_dir: str, model: str) -> None:
        from trainers.registry import ModelRegistry

        self.registry = ModelRegistry(registry_dir)
        self.model_name = model
        self.version: str | None = None
        self.shadow: str | None = None  # the version whose predictions go in the inputs' shadow field
        self._shadow_model: tuple[Any, Any, list[Any]] | None = None
        self.swaps: list[tuple[str, str]] = []  # (from version, to version) in order
        self._net = self._spec = self._classes = None
        live = self.registry.current(model)
        if live is None:
            raise RuntimeError(f"no live version of {model!r} in {registry_dir}: register and promote one first")
        self._load(live)

    def _load(self, version: str) -> None:
        self._net, self._spec, self._classes = self._model(version)
        self.version = version

    def _model(self, version: str) -> tuple[Any, Any, list[Any]]:
        loaded = self.registry.load(self.model_name, version, with_replay=False)
        net = loaded.build_model()
        net.eval()
        return net, loaded.spec, list(loaded.classes or [])

    def accuracy_of(self, version: str, inputs: list[dict[str, Any]], labels: list[dict[str, Any]]) -> float:
        """What ``version`` would have scored on these requests (a counterfactual: it did not serve them)."""
        import torch

        net, spec, classes = self._model(version)
        with torch.no_grad():
            X = torch.as_tensor(spec.encode([{"text": r["features"]["text"]} for r in inputs]), dtype=torch.float32)
            pred = net(X).argmax(dim=1).numpy()
        return accuracy([dict(r, prediction=classes[int(p)]) for r, p in zip(inputs, pred)], labels)

    def on_model_update(self, update: Any) -> bool:
        """Serve ``update.version`` (hot swap when it is not already served) and shadow ``update.shadow`` (None: no
        shadow) when the update is for this model; True if the live version was swapped."""
        if update.model != self.model_name:
            return False
        shadow = getattr(update, "shadow", None)
        if shadow != self.shadow:
            self._shadow_model = self._model(shadow) if shadow else None
            self.shadow = shadow
        if update.version == self.version:
            return False
        old = self.version
        self._load(update.version)
        self.swaps.append((old or "", update.version))
        return True

    def predict_proba(self, features: list[dict[str, Any]], model: tuple[Any, Any, list[Any]] | None = None) -> np.ndarray:
        """Class probabilities of the live version (or of ``model``: (net, spec, classes)), shape (n, n_classes)."""
        import torch

        net, spec, _ = model or (self._net, self._spec, None)
        X = torch.as_tensor(spec.encode(features), dtype=torch.float32)
        with torch.no_grad():
            return torch.softmax(net(X), dim=1).numpy()

    def serve(self, rows: Iterable[tuple[int, str, str]], *, t_start: float, rate: float, label_delay_s: float,
              column_mixup: bool = False) -> Served:
        """Answer ``rows`` of (tweet id, text, outlet): one request every ``1/rate`` s of event time from
        ``t_start``; each label ``label_delay_s`` later.  Returns the records to publish."""
        from feature_repo.tweets import text_stats, tweet_key

        rows = list(rows)
        texts = [{"text": text} for _, text, _ in rows]
        proba = self.predict_proba(texts)
        shadow = self.predict_proba(texts, self._shadow_model) if self._shadow_model is not None else None
        inputs, labels = [], []
        for i, ((tid, text, outlet), p) in enumerate(zip(rows, proba)):
            ts = round(t_start + i / rate, 3)
            feats: dict[str, Any] = {"text": text, **text_stats(text)}
            if column_mixup:
                a, b = MIXUP
                feats[a], feats[b] = feats[b], feats[a]
            eid = f"tw-{tid}"
            inputs.append({"event_id": eid, "model": self.model_name, "model_version": self.version, "ts": ts,
                           "entity": {"tweet_id": tweet_key(tid)}, "features": feats,
                           "prediction": self._classes[int(p.argmax())],
                           "scores": [round(float(v), 5) for v in p]})
            if shadow is not None:
                classes = self._shadow_model[2]
                inputs[-1]["shadow"] = {"model_version": self.shadow, "prediction": classes[int(shadow[i].argmax())],
                                        "scores": [round(float(v), 5) for v in shadow[i]]}
            labels.append({"event_id": eid, "model": self.model_name, "ts": round(ts + label_delay_s, 3),
                           "label": outlet})
        return Served(inputs, labels, self.version or "")
