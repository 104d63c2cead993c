"""Promotion gate: a candidate model replaces the current one only when it has earned it.

The candidate is scored on held-out *new* data (the drift window) and on held-out
*old* data (e.g. replayed examples of earlier versions). It is promoted only if

* it improves accuracy on the new data by at least ``min_improvement_new``;
* it loses at most ``max_forgetting_old`` accuracy on the old data (forgetting guard);
* no configured slice of the new data with at least ``min_slice_samples`` rows loses
  more than ``max_slice_regression`` accuracy (smaller slices are reported, not judged);
* its expected calibration error stays within ``max_ece`` and rises by at most
  ``max_ece_increase`` (either bound may be None to switch it off).

Otherwise the current version stays and :attr:`GateReport.reasons` says why, plainly.

>>> import numpy as np
>>> y = np.array([0, 1] * 50)
>>> good = lambda X: np.eye(2)[y] * 0.9 + 0.05
>>> bad = lambda X: np.tile([0.6, 0.4], (len(X), 1))
>>> rep = PromotionGate().evaluate(bad, good, np.zeros((100, 1)), y, np.zeros((100, 1)), y)
>>> rep.promoted, rep.reasons
(True, [])
>>> PromotionGate().evaluate(good, bad, np.zeros((100, 1)), y, np.zeros((100, 1)), y).promoted
False
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from trainers.training import evaluation as ev

Scorer = Callable[[np.ndarray], np.ndarray]


@dataclass
class GateConfig:
    """Thresholds of the promotion gate (accuracy and ECE as fractions, 0.01 = 1 point)."""

    min_improvement_new: float = 0.01
    max_forgetting_old: float = 0.02
    max_slice_regression: float = 0.05
    max_ece: float | None = 0.15
    max_ece_increase: float | None = None
    min_slice_samples: int = 30
    ece_bins: int = 15


@dataclass
class GateReport:
    """Why a candidate was (not) promoted, with the figures behind the verdict."""

    promoted: bool
    reasons: list[str]
    accuracy_new_before: float | None
    accuracy_new_after: float
    accuracy_old_before: float | None
    accuracy_old_after: float
    improvement_new: float | None
    forgetting: float | None
    ece_before: float | None
    ece_after: float
    per_class_recall_before: dict[int, float] | None
    per_class_recall_after: dict[int, float]
    per_class_recall_old_before: dict[int, float] | None = None
    per_class_recall_old_after: dict[int, float] = field(default_factory=dict)
    slices_before: dict[str, dict[str, float]] | None = None
    slices_after: dict[str, dict[str, float]] = field(default_factory=dict)
    slices_not_judged: list[str] = field(default_factory=list)
    n_new: int = 0
    n_old: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    def to_json(self, **kw) -> str:
        kw.setdefault("sort_keys", True)
        return json.dumps(self.to_dict(), **kw)

    def to_text(self) -> str:
        """A short human-readable report."""

        def pct(v):
            return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}%"

        def delta(v):
            return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:+.1f} pts"

        lines = [
            f"verdict: {'PROMOTE candidate' if self.promoted else 'KEEP current version'}",
            f"new data ({self.n_new} rows): accuracy {pct(self.accuracy_new_before)} -> {pct(self.accuracy_new_after)}"
            f" ({delta(self.improvement_new)})",
            f"old data ({self.n_old} rows): accuracy {pct(self.accuracy_old_before)} -> {pct(self.accuracy_old_after)}"
            f" (forgetting {delta(self.forgetting)})",
            f"calibration (ECE): {pct(self.ece_before)} -> {pct(self.ece_after)}",
        ]
        if self.per_class_recall_after:
            before = self.per_class_recall_before or {}
            lines.append("per-class recall on new data: " + ", ".join(
                f"{c}: {pct(before.get(c))} -> {pct(r)}" for c, r in sorted(self.per_class_recall_after.items())))
        for name, s in sorted(self.slices_after.items()):
            b = (self.slices_before or {}).get(name, {})
            note = " (too few rows, not judged)" if name in self.slices_not_judged else ""
            lines.append(f"slice {name} ({s['n']} rows): {pct(b.get('accuracy'))} -> {pct(s['accuracy'])}{note}")
        if self.training:
            t = self.training
            lines.append("training: " + ", ".join(f"{k}={t[k]}" for k in
                                                  ("strategy", "device", "time_s", "epochs_run", "steps") if k in t))
        if self.reasons:
            lines.append("reasons:")
            lines.extend(f"  - {r}" for r in self.reasons)
        return "\n".join(lines)


def _jsonable(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, (np.floating, float)):
        f = float(o)
        return None if math.isnan(f) else f
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.bool_):
        return bool(o)
    return o


def as_scorer(model: Any) -> Scorer:
    """``X -> probabilities`` for a torch module (softmax of its outputs) or a callable."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency of trainers
        torch = None
    if torch is not None and isinstance(model, torch.nn.Module):
        from trainers.training.continual import as_predict_proba

        return as_predict_proba(model)
    if callable(model):
        return model
    raise TypeError(f"expected a torch module or a callable returning probabilities, got {type(model).__name__}")


def _proba(scorer: Scorer, X) -> np.ndarray:
    p = np.asarray(scorer(X), dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"the model must return (n, n_classes) probabilities, got shape {p.shape}")
    return p


class PromotionGate:
    """Decides whether a candidate model replaces the current one (see module docs)."""

    def __init__(self, config: GateConfig | None = None) -> None:
        self.config = config or GateConfig()

    def evaluate(
        self,
        current: Any,
        candidate: Any,
        new_X,
        new_y,
        old_X,
        old_y,
        slices_new: Mapping[str, np.ndarray] | None = None,
        training: dict[str, Any] | None = None,
        **extra: Any,
    ) -> GateReport:
        """Score ``current`` (None for a first version) and ``candidate``; return the verdict.

        ``slices_new`` maps slice names to boolean masks (or indices) over ``new_X``.
        ``training`` (e.g. ``FitReport.to_dict()``) and ``extra`` are carried into the report.
        """
        cfg = self.config
        new_y = np.asarray(new_y)
        old_y = np.asarray(old_y)
        if len(new_y) == 0:
            raise ValueError("the gate needs held-out new data (new_X/new_y are empty)")
        cand = as_scorer(candidate)
        cur = as_scorer(current) if current is not None else None

        p_new_c = _proba(cand, new_X)
        p_old_c = _proba(cand, old_X) if len(old_y) else None
        pred_new_c = p_new_c.argmax(1)
        acc_new_c = ev.accuracy(new_y, pred_new_c)
        acc_old_c = ev.accuracy(old_y, p_old_c.argmax(1)) if p_old_c is not None else float("nan")
        ece_c = self._ece(new_y, p_new_c, old_y, p_old_c)
        rec_c = ev.per_class_recall(new_y, pred_new_c)
        rec_old_c = ev.per_class_recall(old_y, p_old_c.argmax(1)) if p_old_c is not None else {}
        sl_c = ev.slice_accuracy(new_y, pred_new_c, slices_new) if slices_new else {}

        acc_new_b = acc_old_b = ece_b = None
        rec_b = rec_old_b = sl_b = None
        if cur is not None:
            p_new_b = _proba(cur, new_X)
            p_old_b = _proba(cur, old_X) if len(old_y) else None
            pred_new_b = p_new_b.argmax(1)
            acc_new_b = ev.accuracy(new_y, pred_new_b)
            acc_old_b = ev.accuracy(old_y, p_old_b.argmax(1)) if p_old_b is not None else float("nan")
            ece_b = self._ece(new_y, p_new_b, old_y, p_old_b)
            rec_b = ev.per_class_recall(new_y, pred_new_b)
            rec_old_b = ev.per_class_recall(old_y, p_old_b.argmax(1)) if p_old_b is not None else {}
            sl_b = ev.slice_accuracy(new_y, pred_new_b, slices_new) if slices_new else {}

        reasons: list[str] = []
        improvement = forgetting = None
        if acc_new_b is not None:
            improvement = acc_new_c - acc_new_b
            if improvement < cfg.min_improvement_new:
                reasons.append(
                    f"not enough gain on new data: accuracy {100 * acc_new_b:.1f}% -> {100 * acc_new_c:.1f}% "
                    f"({100 * improvement:+.1f} pts), needs at least +{100 * cfg.min_improvement_new:.1f} pts"
                )
        if acc_old_b is not None and not math.isnan(acc_old_b):
            forgetting = acc_old_b - acc_old_c
            if forgetting > cfg.max_forgetting_old:
                reasons.append(
                    f"forgets old data: accuracy {100 * acc_old_b:.1f}% -> {100 * acc_old_c:.1f}% "
                    f"(loses {100 * forgetting:.1f} pts, at most {100 * cfg.max_forgetting_old:.1f} allowed)"
                )
        not_judged = []
        for name, s in sl_c.items():
            if s["n"] < cfg.min_slice_samples:
                not_judged.append(name)
                continue
            if sl_b is None:
                continue
            drop = sl_b[name]["accuracy"] - s["accuracy"]
            if drop > cfg.max_slice_regression:
                reasons.append(
                    f"slice {name!r} regresses: accuracy {100 * sl_b[name]['accuracy']:.1f}% -> "
                    f"{100 * s['accuracy']:.1f}% on {s['n']} rows (loses {100 * drop:.1f} pts, "
                    f"at most {100 * cfg.max_slice_regression:.1f} allowed)"
                )
        if cfg.max_ece is not None and ece_c > cfg.max_ece:
            reasons.append(
                f"miscalibrated: expected calibration error {100 * ece_c:.1f}% exceeds the bound "
                f"{100 * cfg.max_ece:.1f}%"
            )
        if cfg.max_ece_increase is not None and ece_b is not None and ece_c - ece_b > cfg.max_ece_increase:
            reasons.append(
                f"calibration got worse: expected calibration error {100 * ece_b:.1f}% -> {100 * ece_c:.1f}% "
                f"(at most +{100 * cfg.max_ece_increase:.1f} pts allowed)"
            )
        return GateReport(
            promoted=not reasons,
            reasons=reasons,
            accuracy_new_before=acc_new_b,
            accuracy_new_after=acc_new_c,
            accuracy_old_before=acc_old_b,
            accuracy_old_after=acc_old_c,
            improvement_new=improvement,
            forgetting=forgetting,
            ece_before=ece_b,
            ece_after=ece_c,
            per_class_recall_before=rec_b,
            per_class_recall_after=rec_c,
            per_class_recall_old_before=rec_old_b,
            per_class_recall_old_after=rec_old_c,
            slices_before=sl_b,
            slices_after=sl_c,
            slices_not_judged=not_judged,
            n_new=int(len(new_y)),
            n_old=int(len(old_y)),
            config=asdict(cfg),
            training=training,
            extra=dict(extra),
        )

    def _ece(self, new_y, p_new, old_y, p_old) -> float:
        """ECE over the new and old held-out rows together."""
        if p_old is None:
            return ev.expected_calibration_error(new_y, p_new, self.config.ece_bins)
        return ev.expected_calibration_error(
            np.concatenate([new_y, old_y]), np.concatenate([p_new, p_old]), self.config.ece_bins
        )
