"""Retrain policy: turn judged alerts into (at most) one retrain request per model and cooldown.

Pure and deterministic: time is the *event time* of the judged window (not the wall
clock), so a replayed stream makes the same decisions.

Rules, in order (the first that applies gives the decision's ``reason``):

1. only alert kinds in ``kinds`` count (data drift alone does not retrain unless listed);
2. alerts explained by a parity finding (``alert.explained_by``, or their feature is in
   the open parity features of that model version) never trigger a retrain: a pipeline
   bug is fixed by a person, not by training on broken features;
3. while a parity alert is open for the model version (``hold_while_parity_open``, on by default),
   no alert retrains, whatever its kind: labelled examples served through a broken pipeline
   would teach the model the bug (reason ``parity_open``); retraining resumes once parity closes;
4. at least ``min_labelled`` labelled examples must have been seen for the version;
5. at most one request per model every ``cooldown_s`` seconds of event time.

>>> p = RetrainPolicyConfig(min_labelled=10, cooldown_s=3600)
>>> st = RetrainState()
>>> from streams.contracts.events import Alert, AlertWindow, AlertReference
>>> a = Alert("fraud", "3", "performance", None, "error_rate", 0.3, 0.1, 1e-6, "critical",
...           AlertWindow(0.0, 60.0, 500), AlertReference("r", 1000))
>>> d = decide(p, st, [a], n_labelled=50)
>>> d.request is not None, d.reason
(True, 'requested')
>>> decide(p, d.state, [a], n_labelled=50).reason
'cooldown'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from streams.contracts.events import Alert
from trainers.records import RetrainRequest


@dataclass(frozen=True)
class RetrainPolicyConfig:
    """The ``worker.retrain`` config section."""

    enabled: bool = True
    # covariate drift alone only warns (docs/design.md: "retrain when labels confirm, else warn"): list
    # "data_drift"/"prediction_drift" here to retrain on input-side drift without labels
    kinds: tuple[str, ...] = ("performance", "concept_drift")
    min_severity: str = "warning"  # "warning" or "critical"
    min_labelled: int = 200
    cooldown_s: float = 3600.0
    #: no retrain while a parity alert of the model version is open (rule 3)
    hold_while_parity_open: bool = True

    def __post_init__(self) -> None:
        """Refuse what would silently never retrain: an alert kind that does not exist (a typo such as
        ``perfomance``), no kind at all, an unknown severity."""
        import difflib

        from streams.config import ConfigError  # a ValueError whose message is shown as it is
        from streams.contracts.events import ALERT_KINDS

        if isinstance(self.kinds, str) or not isinstance(self.kinds, (list, tuple)):
            raise ConfigError(f"worker.retrain.kinds must be a list of alert kinds, got {self.kinds!r}")
        unknown = [k for k in self.kinds if k not in ALERT_KINDS]
        if unknown:
            hints = [f"{k!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(str(k), ALERT_KINDS, 1))
                     else repr(k) for k in unknown]
            raise ConfigError(f"worker.retrain.kinds: unknown alert kind(s) {', '.join(hints)}; "
                             f"valid kinds: {list(ALERT_KINDS)}")
        if not self.kinds and self.enabled:
            raise ConfigError("worker.retrain.kinds is empty: no alert would ever retrain; list the alert kinds that "
                             f"retrain (valid kinds: {list(ALERT_KINDS)}) or set worker.retrain.enabled: false")
        if self.min_severity not in _SEV:
            raise ConfigError(f"worker.retrain.min_severity must be one of {list(_SEV)}, got {self.min_severity!r}")


@dataclass(frozen=True)
class RetrainState:
    """Event time of the last request per model (JSON-safe via to_dict/from_dict)."""

    last_request_at: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"last_request_at": dict(self.last_request_at)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "RetrainState":
        return cls(dict((d or {}).get("last_request_at") or {}))


@dataclass(frozen=True)
class Decision:
    request: RetrainRequest | None
    reason: str  # requested | disabled | no_alerts | explained_by_parity | parity_open | too_few_labels | cooldown
    state: RetrainState


_SEV = {"warning": 0, "critical": 1}


def decide(
    cfg: RetrainPolicyConfig,
    state: RetrainState,
    alerts: Iterable[Alert],
    n_labelled: int,
    open_parity_features: Iterable[str] = (),
) -> Decision:
    """Decide whether the alerts of one judged window (one model version) ask for a retrain."""
    alerts = list(alerts)
    if not cfg.enabled:
        return Decision(None, "disabled", state)
    relevant = [a for a in alerts if a.kind in cfg.kinds and _SEV[a.severity] >= _SEV[cfg.min_severity]]
    if not relevant:
        return Decision(None, "no_alerts", state)
    parity = set(open_parity_features)
    unexplained = [a for a in relevant if not a.explained_by and (a.feature is None or a.feature not in parity)]
    if any(a.kind == "parity" for a in alerts) and all(a.kind in ("data_drift", "prediction_drift") for a in unexplained):
        unexplained = []  # a parity finding in the same window explains input-side drift
    if not unexplained:
        return Decision(None, "explained_by_parity", state)
    if cfg.hold_while_parity_open and (parity or any(a.kind == "parity" for a in alerts)):
        return Decision(None, "parity_open", state)
    if n_labelled < cfg.min_labelled:
        return Decision(None, "too_few_labels", state)
    model, version = unexplained[0].model, unexplained[0].model_version
    at = max(a.window.end for a in unexplained)
    last = state.last_request_at.get(model)
    if last is not None and at - last < cfg.cooldown_s:
        return Decision(None, "cooldown", state)
    req = RetrainRequest(
        model=model,
        model_version=version,
        alert_ids=sorted(a.alert_id for a in unexplained),
        kinds=sorted({a.kind for a in unexplained}),
        window_start=min(a.window.start for a in unexplained),
        window_end=at,
        n_labelled=int(n_labelled),
        reason="; ".join(sorted({f"{a.kind}:{a.feature or a.metric}" for a in unexplained})),
        requested_at=at,
    )
    new_state = dataclasses.replace(state, last_request_at={**state.last_request_at, model: at})
    return Decision(req, "requested", new_state)
