"""The engine's model-quality side: label-free estimates per input window, their check against the
realised accuracy, and SLO burn rates per label window (pure; part of :class:`streams.judge.engine.DriftEngine`).

* Input windows: :mod:`streams.judge.estimate` turns the window's score-bin counts into an estimated
  accuracy (when the reference profile holds a :class:`streams.judge.profile.ScoreCalibration`); a
  judged window also gets an ``estimated_performance`` test (one-sided z test against the reference
  accuracy, effect = the drop, threshold ``drift.thresholds.estimated_accuracy``) that goes through the
  same BH + effect size + hysteresis as the data tests: an early warning before labels arrive.
* Label windows: the realised accuracy is paired with the estimate of the same window (whichever
  comes first waits for the other) into an ``estimate_error`` record; the window's counts feed the
  model version's :class:`streams.judge.slo.SloTracker`, whose burning burn rates open ``slo_burn``
  alerts (feature = the burn rate's name) through the shared :class:`streams.judge.policy.Hysteresis`.

Records (plain dicts, ``type`` = ``estimate`` | ``realised`` | ``estimate_error`` | ``slo``) go to
``engine.quality_observer`` when set, else to a bounded buffer that ``engine.take_quality()`` drains
(the worker turns them into Prometheus gauges; backtest and the bench read them).
"""

from __future__ import annotations

from typing import Any

from streams.contracts.events import make_alert_id
from streams.judge.estimate import Calibrator, Estimate, estimate_window, fit_calibrator
from streams.judge.policy import Component, FeatureTest, Finding, select_findings
from streams.judge.slo import SloConfig, SloTracker

ESTIMATE_KIND = "estimated_performance"
SLO_KIND = "slo_burn"
#: Records buffered for take_quality() at most (oldest dropped), and windows waiting for their pair.
MAX_RECORDS = 10_000
MAX_PENDING = 512


class QualityTrack:
    """Per (model, version): the calibrator, windows waiting for their pair, the SLO tracker."""

    def __init__(self) -> None:
        self.calibrator: Calibrator | None = None
        self.fitted = False
        self.pending: dict[float, dict[str, Any]] = {}  # window start -> {"estimate": .., "realised": ..}
        self.slo: SloTracker | None = None
        self.slo_ready = False
        self.slo_windows: list = []  # restored SLO windows (state_dict), read when the tracker is made

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: the windows waiting for their pair and the SLO tracker's windows."""
        windows = self.slo.to_dict()["windows"] if self.slo is not None else [list(w) for w in self.slo_windows]
        return {"pending": [[s, {k: list(v) for k, v in slot.items()}] for s, slot in sorted(self.pending.items())],
                "slo_windows": windows}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "QualityTrack":
        qt = cls()
        for s, slot in (d or {}).get("pending", []):
            qt.pending[float(s)] = {k: tuple(v) for k, v in slot.items()}
        qt.slo_windows = [tuple(w) for w in (d or {}).get("slo_windows", [])]
        return qt


def quality_state(ms) -> dict[str, Any] | None:
    """The JSON-safe quality state of a model state: its track's, else what was restored and not used yet."""
    qt = getattr(ms, "quality", None)
    return qt.to_dict() if qt is not None else getattr(ms, "quality_saved", None)


class QualityMixin:
    """Methods :class:`streams.judge.engine.DriftEngine` gains (needs ``config``, ``hyst``, ``_alert``)."""

    slo: SloConfig = SloConfig()  # set per engine: ``engine.slo = SloConfig(...)`` (the ``slo`` config section)
    quality_observer: Any = None  # fn(record); None: records wait for take_quality()
    _quality: list[dict[str, Any]] | None = None

    def take_quality(self) -> list[dict[str, Any]]:
        """Quality records since the last call (see the module docstring)."""
        out, self._quality = self._quality or [], []
        return out

    def _emit_quality(self, rec: dict[str, Any]) -> None:
        if self.quality_observer is not None:
            self.quality_observer(rec)
            return
        if self._quality is None:
            self._quality = []
        self._quality.append(rec)
        if len(self._quality) > MAX_RECORDS:
            del self._quality[: len(self._quality) - MAX_RECORDS]

    def _qtrack(self, ms) -> QualityTrack:
        qt = getattr(ms, "quality", None)
        if qt is None:
            qt = ms.quality = QualityTrack.from_dict(getattr(ms, "quality_saved", None))
        return qt

    def _calibrator(self, ms) -> Calibrator | None:
        qt = self._qtrack(ms)
        if not qt.fitted:
            qt.fitted = True
            lp = ms.profile.labels
            if getattr(self.config, "estimate_performance", True) and lp is not None and ms.encoder.score_segment is not None:
                qt.calibrator = fit_calibrator(lp.calibration, getattr(self.config, "estimate_calibration", "isotonic"))
        return qt.calibrator

    def _estimate(self, ms, acc) -> Estimate | None:
        cal = self._calibrator(ms)
        seg = ms.encoder.score_segment
        if cal is None or seg is None:
            return None
        return estimate_window(cal, acc.counts[seg.offset: seg.offset + seg.size - 2])

    # ------------------------------------------------------------------ per window, before gating
    def _quality_observe(self, ms, key, acc, labels: bool) -> list:
        """Record one window's estimate (inputs) or realised accuracy (labels; also the SLO burn rates and
        their alerts).  ``acc``: the window's own counts, before any carried window is merged in."""
        qt = self._qtrack(ms)
        base = {"model": key.model, "model_version": key.model_version, "start": key.start, "end": key.end}
        side = None
        gate = self.config.min_samples  # estimates, and their check against the realised accuracy, need as many
        if not labels:
            est = self._estimate(ms, acc)
            if est is not None and est.n_scored >= gate:
                side = ("estimate", est.estimated_accuracy, est.n_scored)
                self._emit_quality({"type": "estimate", **base, **est.to_dict()})
        elif acc.n_labelled > 0:
            real = 1.0 - acc.n_errors / acc.n_labelled
            side = ("realised", real, int(acc.n_labelled)) if acc.n_labelled >= gate else None
            self._emit_quality({"type": "realised", **base, "realised_accuracy": real, "n_labelled": int(acc.n_labelled)})
        if side is not None and (self._calibrator(ms) is not None):
            slot = qt.pending.setdefault(key.start, {})
            slot[side[0]] = (side[1], side[2])
            if "estimate" in slot and "realised" in slot:
                del qt.pending[key.start]
                (e, ns), (r, nl) = slot["estimate"], slot["realised"]
                self._emit_quality({"type": "estimate_error", **base, "estimated_accuracy": e, "realised_accuracy": r,
                                    "error": e - r, "abs_error": abs(e - r), "n_scored": ns, "n_labelled": nl})
            while len(qt.pending) > MAX_PENDING:
                del qt.pending[min(qt.pending)]
        return self._slo_step(ms, key, acc) if labels else []

    # ------------------------------------------------------------------ estimated performance (input windows)
    def _with_estimate(self, ms, acc, findings: list[Finding], kinds: tuple[str, ...]) -> tuple[str, ...]:
        """Add the ``estimated_performance`` finding of a judged input window (if any) to ``findings``; the kinds
        the hysteresis then steps (``kinds`` plus ``estimated_performance``)."""
        findings += self._estimate_findings(ms, acc)
        return tuple(kinds) + (ESTIMATE_KIND,)

    def _estimate_findings(self, ms, acc) -> list[Finding]:
        """The ``estimated_performance`` finding of a judged input window (gated like the data tests)."""
        est = self._estimate(ms, acc)
        if est is None or est.n_scored < self.config.min_samples:
            return []
        metrics = dict(est.to_dict(), calibration=self._calibrator(ms).method)
        test = FeatureTest(ESTIMATE_KIND, None, [Component("estimated_accuracy", est.p_value,
                                                           {"estimated_accuracy": est.drop})], metrics)
        return select_findings([test], self.config.fdr_alpha, self.config.thresholds)

    # ------------------------------------------------------------------ SLO burn rates (label windows)
    def _slo_tracker(self, ms) -> SloTracker | None:
        qt = self._qtrack(ms)
        if not qt.slo_ready:
            qt.slo_ready = True
            obj = self.slo.objective(ms.profile.model) if self.slo.enabled else None
            rates = self.slo.burn_rates_for(obj) if obj is not None else {}
            if rates:
                qt.slo = SloTracker(obj, rates, self.slo.min_labelled, qt.slo_windows)
        return qt.slo

    def _slo_step(self, ms, key, acc) -> list:
        tr = self._slo_tracker(ms)
        if tr is None or acc.n_labelled <= 0:
            return []
        states = tr.observe(key.end, int(acc.n_labelled), int(acc.n_errors))
        model, version = key.model, key.model_version
        obj = tr.objective
        self._emit_quality({"type": "slo", "model": model, "model_version": version, "end": key.end,
                            "metric": obj.metric, "target": obj.target,
                            "burn_rates": {s.name: {"long": s.long_burn, "short": s.short_burn, "long_h": s.rate.long_h,
                                                    "short_h": s.rate.short_h, "factor": s.rate.factor,
                                                    "burning": s.burning, "long_n": s.long_n} for s in states}})
        alerts = []
        for s in states:
            hk = self.hyst.key(model, version, SLO_KIND, s.name)
            if not s.sufficient and hk not in self.hyst.tracks:
                continue
            f = None
            if s.burning:
                ratio = s.long_burn / s.rate.factor
                metrics = {"objective_metric": obj.metric, "objective_target": obj.target,
                           "objective_window_days": obj.window_days, "error_budget": obj.budget,
                           "burn_rate_long": s.long_burn, "burn_rate_short": s.short_burn,
                           "long_h": s.rate.long_h, "short_h": s.rate.short_h, "factor": s.rate.factor,
                           "labelled_long": s.long_n, "labelled_short": s.short_n,
                           "error_ratio_long": s.long_burn * obj.budget}
                f = Finding(SLO_KIND, s.name, "burn_rate", float(s.long_burn), float(s.rate.factor), s.rate.severity,
                            None, None, float(ratio), metrics)
            t = self.hyst.observe(hk, s.burning, key.start, True,
                                  lambda w, name=s.name: make_alert_id(model, version, SLO_KIND, name, w), f)
            if t is None:
                continue
            if t.action == "clear":
                self._cleared.append({"model": model, "model_version": version, "kind": SLO_KIND, "feature": s.name,
                                      "cleared_at_window_end": key.end})
                self.stats["alerts_cleared"] += 1
                continue
            alerts.append(self._alert(ms, f, key.start, key.end, int(acc.n_labelled), 1))
        return alerts


__all__ = ["ESTIMATE_KIND", "SLO_KIND", "QualityMixin", "QualityTrack", "quality_state"]
