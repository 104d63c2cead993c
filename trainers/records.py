"""The trainers' records on Kafka: retrain requests, retrain results and model updates (JSON).

Published by the worker's retrain policy (requests), the dispatcher (results) and the registry
(model updates for the servers to hot-swap); idempotent by their ids.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from streams.contracts.events import InvalidRecord, json_default


def retrain_request_id(model: str, model_version: str, alert_ids: list[str]) -> str:
    key = json.dumps([model, str(model_version), sorted(alert_ids)])
    return "rr-" + hashlib.sha256(key.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class RetrainRequest:
    """Published by the retrain policy on the retrain-requests topic; idempotent by ``request_id``."""

    model: str
    model_version: str
    alert_ids: list[str]
    kinds: list[str]
    window_start: float
    window_end: float
    n_labelled: int = 0
    reason: str = ""
    requested_at: float = field(default_factory=time.time)
    request_id: str = ""

    def __post_init__(self) -> None:
        if not self.request_id:
            object.__setattr__(self, "request_id", retrain_request_id(self.model, self.model_version, self.alert_ids))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RetrainRequest":
        try:
            return cls(
                model=str(d["model"]),
                model_version=str(d["model_version"]),
                alert_ids=[str(a) for a in d.get("alert_ids", [])],
                kinds=[str(k) for k in d.get("kinds", [])],
                window_start=float(d["window_start"]),
                window_end=float(d["window_end"]),
                n_labelled=int(d.get("n_labelled", 0)),
                reason=str(d.get("reason", "")),
                requested_at=float(d.get("requested_at", 0.0)),
                request_id=str(d.get("request_id", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidRecord("missing_field" if isinstance(exc, KeyError) else "wrong_type",
                                f"not a retrain request: {exc!r}; see RetrainRequest in streams/contracts/events.py") from None


RETRAIN_STATUSES = ("submitted", "running", "succeeded", "rejected", "failed", "duplicate")


@dataclass(frozen=True)
class RetrainResult:
    """Published by the dispatcher on the retrain-results topic."""

    request_id: str
    model: str
    parent_version: str
    status: str
    job_id: str | None = None
    new_version: str | None = None
    promoted: bool = False
    attempts: int = 1
    error: str | None = None
    report: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)
    shadow: bool = False  # the candidate passed the gate and is served in shadow until the live gate decides

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=json_default)


@dataclass(frozen=True)
class ModelUpdate:
    """Published on the model-updates topic when a version is promoted or rolled back."""

    model: str
    version: str
    previous_version: str | None
    action: str  # "promote" | "rollback"
    sha256: str
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)
