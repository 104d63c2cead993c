"""Label-side judging of the drift engine: performance windows and concept-drift detectors.

:class:`ConceptMixin` is part of :class:`streams.engine.DriftEngine` (split out to keep the
engine module readable); it uses the engine's ``config``, ``hyst``, ``stats`` and ``_alert``.

What an error is comes from the reference profile (:class:`streams.profile.LabelProfile`:
``mismatch`` for classifiers, ``absolute``/``relative`` error over a tolerance for
regression models), so a regression model whose prediction never equals its label exactly
is not "always wrong".

CUSUM reference rate.  The one-sided Bernoulli CUSUM tests "error rate p0u + shift" against
``p0u``, the reference error rate plus two standard errors of its estimate (estimation noise
must not alarm).  It is never capped below the true rate.  When ``p0u + cusum_shift > 1`` the
reference error rate leaves no room for the rise the detector is built for: concept drift is
then not tested for that model version; ``stats["concept_untestable"]`` counts such versions,
and every performance verdict says so in ``metrics["concept_drift_testable"]`` / ``concept_drift_note``.

One alert per sustained change.  An alarm opens the concept-drift alert (at once); while it
is open, a label window counts as "still drifting" when a detector alarmed in it *or* the
pooled error rate of the last ``close_after`` label windows is significantly above ``p0u``
(one-sided binomial test at ``fdr_alpha``).  The alert clears after ``close_after`` windows
that are neither, so a sustained rise near the detector threshold (where the restarted CUSUM
alarms only every few windows) gives one open alert until the error rate really comes back.
The alert's ``window`` spans the detector's evidence: from the hop-aligned window of the
estimated change point (the CUSUM's last zero) to the end of the alarm's window, and
``window.n`` is the number of labelled events in that evidence run.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Sequence

import numpy as np

from streams.drift_metrics import BernoulliCusum, binomial_increase, ece_from_bins
from streams.events import Alert, make_alert_id
from streams.policy import Component, FeatureTest, Finding, select_findings
from streams.windows import CONF_UNITS, WindowAccumulator, WindowKey


def _river_detector(name: str):
    from river import drift
    from river.drift import binary

    return {
        "adwin": lambda: drift.ADWIN(),
        "page_hinkley": lambda: drift.PageHinkley(),
        "ddm": lambda: binary.DDM(),
        "eddm": lambda: binary.EDDM(),
        "hddm_a": lambda: binary.HDDM_A(),
        "hddm_w": lambda: binary.HDDM_W(),
    }[name]()


class ConceptState:
    """Per (model, version) label-side state (part of ``_ModelState``); JSON-safe via to_dict/load."""

    def __init__(self) -> None:
        self.warm_n = 0
        self.warm_err = 0
        self.cusum: BernoulliCusum | None = None
        self.untestable: str | None = None  # why concept drift is not tested (no room for a rise)
        self.river: dict[str, Any] = {}
        self.concept_alarms: list[float] = []  # event times of concept alarms not yet seen by a label window
        self.sequential = False  # True once observe_errors fed the event-level detectors
        self.run_start_ts: float | None = None  # event time where the CUSUM's current run began
        self.recent: deque = deque()  # (n_labelled, n_errors) of the last close_after label windows

    def concept_dict(self) -> dict[str, Any]:
        return {
            "warm_n": self.warm_n, "warm_err": self.warm_err,
            "cusum": None if self.cusum is None else self.cusum.state_dict(),
            "untestable": self.untestable, "concept_alarms": self.concept_alarms, "sequential": self.sequential,
            "run_start_ts": self.run_start_ts, "recent": [list(x) for x in self.recent],
        }

    def load_concept(self, m: dict[str, Any]) -> None:
        self.warm_n, self.warm_err = int(m.get("warm_n", 0)), int(m.get("warm_err", 0))
        self.cusum = None if m.get("cusum") is None else BernoulliCusum.from_state(m["cusum"])
        self.untestable = m.get("untestable")
        self.concept_alarms = [float(t) for t in m.get("concept_alarms", [])]
        self.sequential = bool(m.get("sequential", False))
        self.run_start_ts = m.get("run_start_ts")
        self.recent = deque((int(a), int(b)) for a, b in m.get("recent", []))


class ConceptMixin:
    """Performance and concept-drift judging; see the module docstring."""

    # ------------------------------------------------------------------ reference error rate
    def _p0(self, ms) -> float | None:
        """Reference error rate: from the labelled profile, else from the warm-up examples."""
        lp = ms.profile.labels
        if lp is not None and lp.n > 0:
            return lp.error_rate
        if ms.warm_n >= self.config.concept_warmup:
            return ms.warm_err / ms.warm_n
        return None

    def _p0_n(self, ms) -> int:
        lp = ms.profile.labels
        return lp.n if lp is not None and lp.n > 0 else ms.warm_n

    def _cusum(self, ms) -> BernoulliCusum | None:
        """The CUSUM of this model version, or None when the reference rate leaves no room for a rise."""
        if ms.cusum is None and ms.untestable is None:
            p0, n0 = self._p0(ms), max(self._p0_n(ms), 1)
            # conservative reference rate: upper ~2-sigma bound, so estimation noise does not alarm
            p0u = p0 + 2.0 * math.sqrt(max(p0 * (1 - p0), 1e-4) / n0)
            shift = self.config.cusum_shift
            if p0u + shift > 1.0:
                ms.untestable = (f"reference error rate {p0:.4f} (upper bound {min(p0u, 1.0):.4f}) leaves no room "
                                 f"for a rise of {shift}: concept drift is not tested")
                self.stats["concept_untestable"] += 1
                return None
            ms.cusum = BernoulliCusum(p0u, p0u + shift, self.config.cusum_h)
        return ms.cusum

    # ------------------------------------------------------------------ label windows
    def _concept_open(self, ms) -> bool:
        key = self.hyst.key(ms.profile.model, ms.profile.model_version, "concept_drift", None)
        st = self.hyst.tracks.get(key)
        return st is not None and st.open_id is not None

    def _sustained(self, ms, acc: WindowAccumulator) -> bool:
        """Record this label window; True when the concept alert is open and the pooled error rate
        of the last ``close_after`` windows is still significantly above the CUSUM's reference rate."""
        ms.recent.append((int(acc.n_labelled), int(acc.n_errors)))
        while len(ms.recent) > max(self.config.close_after, 1):
            ms.recent.popleft()
        if ms.cusum is None or not self._concept_open(ms):
            return False
        n = sum(a for a, _ in ms.recent)
        e = sum(b for _, b in ms.recent)
        return binomial_increase(ms.cusum.p0, e, n) <= self.config.fdr_alpha

    def _label_findings(self, ms, acc: WindowAccumulator, p0: float, concept_hit: bool) -> list[Finding]:
        n, e = acc.n_labelled, acc.n_errors
        rate = e / n
        p = binomial_increase(p0, e, n)
        metrics: dict[str, Any] = {"error_rate": rate, "reference_error_rate": p0, "accuracy": 1.0 - rate, "n_labelled": n}
        lp = ms.profile.labels
        if lp is not None and lp.error != "mismatch":
            metrics.update(error_definition=lp.error, error_tolerance=lp.tolerance)
        if ms.untestable is not None:
            metrics.update(concept_drift_testable=False, concept_drift_note=ms.untestable)
        if acc.ece_count.sum() > 0:
            metrics["ece"] = ece_from_bins(acc.ece_count, acc.ece_correct, acc.ece_conf / CONF_UNITS)
            if ms.profile.reference_ece is not None:
                metrics["reference_ece"] = ms.profile.reference_ece
        test = FeatureTest("performance", None, [Component("error_rate", p, {"error_rate": rate - p0})], metrics)
        findings = select_findings([test], self.config.fdr_alpha, self.config.thresholds)
        sustained = self._sustained(ms, acc)
        if concept_hit or sustained:
            # the concept-drift track stays "drifting" while its detectors alarm in its windows or the
            # recent error rate stays significantly above the reference (one alert per sustained change)
            findings.append(Finding("concept_drift", None, "cusum", 0.0, self.config.cusum_h, "critical", None, None, 0.0, {}))
        return findings

    def _window_cusum(self, ms, key: WindowKey, start: float, acc: WindowAccumulator) -> list[Alert]:
        """CUSUM on window error counts (distributed path: per-event order is not known after merging)."""
        if "cusum" not in self.config.concept_detectors:
            return []
        c = self._cusum(ms)
        if c is None:
            return []
        was_zero = c.s <= 0.0
        if was_zero:
            ms.run_start_ts = start
        if not c.update_counts(acc.n_errors, acc.n_labelled):
            if c.s <= 0.0:
                ms.run_start_ts = None
            return []
        wstart = ms.run_start_ts if ms.run_start_ts is not None else start
        ms.run_start_ts = None
        return self._concept_alarm(ms, key.model, key.model_version, "cusum", self.config.cusum_h, wstart, key.end,
                                   c.alarm_runs[-1], {"detector": "cusum", "granularity": "window"}, ts=start)

    def _concept_alarm(self, ms, model, version, name, score, wstart, wend, n, extra, ts=None) -> list[Alert]:
        if ts is not None:
            ms.concept_alarms.append(float(ts))
        key = self.hyst.key(model, version, "concept_drift", None)
        f = Finding("concept_drift", None, name, float(score), float(self.config.cusum_h if name == "cusum" else score),
                    "critical", None, None, 1.0, {})
        tr = self.hyst.force_open(key, f, wstart, lambda f_, s_: make_alert_id(model, version, "concept_drift", None, s_))
        if tr is None:
            return []
        extra = dict(extra)
        extra["reference_error_rate"] = self._p0(ms)
        if ms.cusum is not None:
            extra["cusum_reference_rate"] = ms.cusum.p0
        return [self._alert(ms, f, wstart, wend, int(n), 1, extra)]

    # ------------------------------------------------------------------ event-level detectors
    def observe_errors(
        self, model: str, version: str, ts: np.ndarray, errors: np.ndarray, event_ids: Sequence[str] | None = None
    ) -> list[Alert]:
        """Feed the 0/1 error stream (n,) of one model version, in event-time order (ts (n,) seconds),
        to the concept detectors; returns the concept-drift alerts that open."""
        ms = self._state(str(model), str(version))
        if ms is None:
            return []
        cfg = self.config
        errors = np.asarray(errors).astype(np.int8)
        ts = np.asarray(ts, dtype=float)
        start = 0
        if self._p0(ms) is None:  # warm-up: estimate the error rate first
            take = min(cfg.concept_warmup - ms.warm_n, len(errors))
            ms.warm_n += take
            ms.warm_err += int(errors[:take].sum())
            start = take
            if self._p0(ms) is None:
                return []
        ms.sequential = True
        alarms: list[tuple[int, str, float, int]] = []  # (position, detector, score, evidence run)
        run_starts: dict[int, float] = {}  # alarm position -> event time of its run's first event
        if "cusum" in cfg.concept_detectors:
            c = self._cusum(ms)
            if c is not None and start < len(errors):
                before = ms.run_start_ts  # a run carried over from an earlier batch

                def first_ts(p: int) -> float:
                    return float(ts[p]) if p >= start else (before if before is not None else float(ts[start]))

                hits = c.update(errors[start:])
                for i, run in zip(hits, c.alarm_runs):
                    alarms.append((start + i, "cusum", cfg.cusum_h, run))
                    run_starts[start + i] = first_ts(start + i - run + 1)
                ms.run_start_ts = None if c.run == 0 else first_ts(len(errors) - c.run)
        for name in cfg.concept_detectors:
            if name == "cusum":
                continue
            det = ms.river.get(name)
            if det is None:
                det = ms.river[name] = _river_detector(name)
            binary = name not in ("adwin", "page_hinkley")
            last = start
            for i in range(start, len(errors)):
                det.update(bool(errors[i]) if binary else float(errors[i]))
                if det.drift_detected:
                    alarms.append((i, name, 1.0, i - last + 1))
                    last = i + 1
        alerts: list[Alert] = []
        for pos, name, score, run in sorted(alarms):
            t0 = run_starts.get(pos, float(ts[pos])) if name == "cusum" else float(ts[max(pos - run + 1, 0)])
            wstart = math.floor(t0 / cfg.hop) * cfg.hop
            wend = math.floor(ts[pos] / cfg.hop) * cfg.hop + cfg.window_seconds
            extra = {
                "detector": name,
                "granularity": "event",
                "detected_ts": float(ts[pos]),
                "detected_event_id": None if event_ids is None else event_ids[pos],
                "change_ts": t0,
            }
            alerts += self._concept_alarm(ms, ms.profile.model, ms.profile.model_version, name, score, wstart,
                                          wend, run, extra, ts=ts[pos])
        return alerts
