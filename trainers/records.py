"""The trainers' records on Kafka: retrain requests, retrain results and model updates (JSON).

Published by the worker's retrain policy (requests), the dispatcher (results) and the registry
(model updates for the servers to hot-swap); idempotent by their ids.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
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


#: What a model update does (ModelUpdate.action).  ``version`` is always the version that must be live after it.
ACTIONS = ("promote", "rollback", "shadow", "reject", "watch_end")
_NO_SHADOW = ("rollback", "reject", "watch_end")  # actions after which nothing is served in shadow


@dataclass(frozen=True)
class ModelUpdate:
    """Published on the model-updates topic when the live version or the version served in shadow changes.

    ``version`` is always the version that must be live (a server that only knows "load ``version``" stays correct);
    ``shadow`` is the version whose predictions servers publish as the inputs' ``shadow`` from now on (None: none).
    Actions (:data:`ACTIONS`): ``promote`` (``version`` becomes live; ``shadow`` its parent while it is watched),
    ``rollback`` (the previous version is live again), ``shadow`` (start shadowing the candidate ``shadow``),
    ``reject`` (the candidate was refused on live evidence: stop shadowing), ``watch_end`` (the watch after a promotion
    ended: stop shadowing the parent)."""

    model: str
    version: str
    previous_version: str | None
    action: str
    sha256: str  # of the live version's weights
    at: float = field(default_factory=time.time)
    shadow: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelUpdate":
        """A model update read from the topic, checked (:class:`InvalidRecord` says what is wrong); unknown keys are
        ignored, as in the other records."""
        from streams.contracts.validate import is_valid_name

        def bad(reason: str, what: str) -> InvalidRecord:
            return InvalidRecord(reason, f"not a model update: {what}; see ModelUpdate in trainers/records.py")

        if not isinstance(d, Mapping):
            raise bad("not_object", f"expected an object, got {type(d).__name__}")
        for name in ("model", "version", "action", "sha256"):
            if d.get(name) is None:
                raise bad("missing_field", f"'{name}' is missing")
        for name in ("model", "version", "previous_version", "shadow"):
            value = d.get(name)
            if value is not None and not is_valid_name(value):
                raise bad("bad_name", f"'{name}' {value!r} is not a model or version name (1..128 printable characters)")
        action, sha, at = d["action"], d["sha256"], d.get("at", 0.0)
        if action not in ACTIONS:
            raise bad("bad_value", f"'action' {action!r} is not one of {', '.join(ACTIONS)}")
        if not isinstance(sha, str) or (sha and not (len(sha) == 64 and all(c in "0123456789abcdef" for c in sha))):
            raise bad("bad_value", f"'sha256' must be 64 lowercase hex digits (or empty), got {sha!r}")
        if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
            raise bad("wrong_type", f"'at' must be epoch seconds, got {at!r}")
        shadow = d.get("shadow")
        if action == "shadow" and shadow is None:
            raise bad("missing_field", "a 'shadow' update names the candidate to shadow in 'shadow'")
        if action in _NO_SHADOW and shadow is not None:
            raise bad("bad_value", f"a {action!r} update stops shadowing: 'shadow' must be null, got {shadow!r}")
        if shadow is not None and shadow == d["version"]:
            raise bad("bad_value", f"'shadow' {shadow!r} is the live version itself; shadow another version")
        return cls(model=d["model"], version=d["version"], previous_version=d.get("previous_version"), action=action,
                   sha256=sha, at=float(at), shadow=shadow)
