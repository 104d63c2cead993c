"""What a retrain job ends with, and how its log says it: :class:`JobOutcome`, the training progress lines
and the one-line verdict an operator reads in the Ray dashboard (pure; used by :mod:`trainers.retrain_job`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from trainers.records import ModelUpdate, RetrainRequest, RetrainResult


def training_progress(fit: Mapping[str, Any], name: str, max_lines: int = 8) -> list[str]:
    """Short progress lines of one training from its FitReport dict: a few epochs (first, evenly spaced, last)
    with their losses, then the summary.

    >>> fit = {"history": [{"epoch": e, "train_loss": 1 / e, "val_loss": 2 / e, "val_accuracy": 0.5 + e / 100}
    ...                    for e in (1, 2, 3)], "epochs_run": 3, "steps": 30, "stopped_early": False, "device": "cpu"}
    >>> print("\\n".join(training_progress(fit, "candidate")))
    candidate epoch 1/3: train loss 1.0000, val loss 2.0000, val accuracy 51.0%
    candidate epoch 2/3: train loss 0.5000, val loss 1.0000, val accuracy 52.0%
    candidate epoch 3/3: train loss 0.3333, val loss 0.6667, val accuracy 53.0%
    candidate: 3 epochs, 30 steps on cpu
    """
    hist = list(fit.get("history") or [])
    n = len(hist)
    if n > max_lines:
        keep = sorted({round(i * (n - 1) / (max_lines - 1)) for i in range(max_lines)})
        hist = [hist[i] for i in keep]
    lines = []
    for h in hist:
        parts = [f"train loss {h['train_loss']:.4f}"]
        if h.get("val_loss") is not None:
            parts.append(f"val loss {h['val_loss']:.4f}")
        if h.get("val_accuracy") is not None:
            parts.append(f"val accuracy {100 * h['val_accuracy']:.1f}%")
        lines.append(f"{name} epoch {int(h['epoch'])}/{n}: " + ", ".join(parts))
    lines.append(f"{name}: {fit.get('epochs_run', n)} epochs, {fit.get('steps', 0)} steps on {fit.get('device', '?')}"
                 + (" (stopped early)" if fit.get("stopped_early") else ""))
    return lines


@dataclass
class JobOutcome:
    status: str  # succeeded | rejected
    new_version: str | None = None
    promoted: bool = False
    error: str | None = None
    report: dict[str, Any] = field(default_factory=dict)
    update: ModelUpdate | None = None
    text: str = ""  # what the job log shows of the work: training progress and the gate's table
    gate_passed: bool = False
    reasons: list[str] = field(default_factory=list)  # the gate's reasons (why it rejected, or its warnings)
    shadow: bool = False  # passed the gate, served in shadow until the live gate decides (promotion.shadow)

    def result(self, req: RetrainRequest, job_id: str | None) -> RetrainResult:
        return RetrainResult(request_id=req.request_id, model=req.model, parent_version=req.model_version,
                             status=self.status, job_id=job_id, new_version=self.new_version, promoted=self.promoted,
                             error=self.error, report=self.report, shadow=self.shadow)


def verdict_line(outcome: JobOutcome, req: RetrainRequest) -> str:
    """One line an operator reads in the Ray dashboard (the job's last log line).

    >>> req = RetrainRequest("fraud", "2", ["a1"], ["data_drift"], 0.0, 60.0)
    >>> verdict_line(JobOutcome("rejected", "3", reasons=["forgetting 12.0 pts > 5.0", "ece"]), req)
    'candidate v3 rejected by the promotion gate: forgetting 12.0 pts > 5.0 (fraud, parent v2)'
    >>> verdict_line(JobOutcome("succeeded", "3", promoted=True, gate_passed=True), req)
    'candidate v3 promoted: passed the promotion gate (fraud, parent v2)'
    >>> verdict_line(JobOutcome("succeeded", "3", gate_passed=True, shadow=True), req)
    'candidate v3 passed the promotion gate; in shadow on live traffic until the live gate decides (fraud, parent v2)'
    >>> verdict_line(JobOutcome("rejected", error="insufficient data: 7 labelled examples"), req)
    'no candidate: insufficient data: 7 labelled examples (fraud, parent v2)'
    """
    who = f"({req.model}, parent v{req.model_version})"
    if outcome.new_version is None:
        return f"no candidate: {outcome.error or outcome.status} {who}"
    v = f"candidate v{outcome.new_version}"
    note = str(outcome.report.get("note") or "") if isinstance(outcome.report, Mapping) else ""
    if note:  # made earlier for this request
        return f"{v} {'promoted' if outcome.promoted else outcome.status}: {note} {who}"
    if outcome.status == "rejected":
        first = outcome.reasons[0] if outcome.reasons else (outcome.error or "no reason given")
        return f"{v} rejected by the promotion gate: {first} {who}"
    if outcome.promoted:
        return f"{v} promoted: passed the promotion gate {who}"
    if outcome.shadow:
        return f"{v} passed the promotion gate; in shadow on live traffic until the live gate decides {who}"
    return f"{v} passed the promotion gate, not promoted: the current version moved while training {who}"


__all__ = ["JobOutcome", "training_progress", "verdict_line"]
