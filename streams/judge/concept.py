"""Label-side judging of the drift engine: performance windows and concept-drift detectors.

:class:`ConceptMixin` is part of :class:`streams.judge.engine.DriftEngine` (split out to keep the
engine module readable); it uses the engine's ``config``, ``hyst``, ``stats`` and ``_alert``.

What an error is comes from the reference profile (:class:`streams.judge.profile.LabelProfile`:
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
estimated change point (the CUSUM's last zero; for a River detector the first error it holds)
to the end of the alarm's window, and ``window.n`` is the number of labelled events in that
evidence run.

Regression models.  When the profile stores the reference loss distribution
(``LabelProfile.loss_quantiles``), the ``cusum`` detector is the loss CUSUM of
:mod:`streams.judge.loss` on each example's continuous loss (same ``cusum_h``, in nats) instead of
the Bernoulli CUSUM on 0/1 exceedances of the tolerance, which loses information; the
performance verdict and the "still drifting" test keep the exceedance rate.  Classifiers (and
profiles without a loss distribution) keep the Bernoulli CUSUM.

Feeding.  The engine's ``judge`` calls :meth:`ConceptMixin._observe_errors` with the error
sequence of each label window, sorted by (event time, event_id): backtest and the worker run
the same detectors on the same sequence (see the engine's module docstring).

River detectors in the state.  River detectors are Python objects (ADWIN's core is Cython);
they are not serialised.  Instead their state is made a function of a bounded tail of the error
stream: a River detector restarts (a new instance) after each of its alarms, and when it has
seen ``2 * river_history`` errors since its restart it is rebuilt from the last
``river_history`` of them (alarms during that re-feed are ignored).  The state keeps the last
``2 * river_history`` errors (bit-packed, shared by the River detectors) and each detector's
age; loading re-feeds the tail, which reproduces the detector exactly.
"""

from __future__ import annotations

import base64
import math
from collections import deque
from typing import Any, Sequence

import numpy as np

from streams.judge.drift_metrics import BernoulliCusum, binomial_increase, ece_from_bins
from streams.judge.loss import LossCusum
from streams.contracts.events import Alert, make_alert_id
from streams.judge.policy import Component, FeatureTest, Finding, select_findings
from streams.judge.quality import QualityMixin, quality_state
from streams.judge.windows import CONF_UNITS, WindowAccumulator


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


class RiverTrack:
    """One River detector: its live object (rebuilt from the tail on load) and where its memory starts."""

    __slots__ = ("det", "age", "first_ts", "mid_ts")

    def __init__(self, age: int = 0, first_ts: float | None = None, mid_ts: float | None = None) -> None:
        self.det: Any = None  # None: (re)build from the last ``age`` errors of the tail before use
        self.age = age  # errors fed since the detector's restart (after an alarm) or rebuild
        self.first_ts = first_ts  # event time of the first of them (start of the evidence run)
        self.mid_ts = mid_ts  # event time of the error fed at age river_history + 1 (first_ts after a rebuild)

    def to_dict(self) -> dict[str, Any]:
        return {"age": self.age, "first_ts": self.first_ts, "mid_ts": self.mid_ts}


class ConceptState:
    """Per (model, version) label-side state (part of ``_ModelState``); JSON-safe via to_dict/load."""

    def __init__(self) -> None:
        self.warm_n = 0
        self.warm_err = 0
        self.cusum: BernoulliCusum | None = None
        self.loss_cusum: LossCusum | None = None  # regression models with a reference loss distribution
        self.untestable: str | None = None  # why concept drift is not tested (no room for a rise)
        self.river: dict[str, RiverTrack] = {}
        self.tail = np.zeros(0, np.int8)  # the last 2 * river_history errors (River detectors only)
        self.concept_alarms: list[float] = []  # event times of concept alarms not yet seen by a label window
        self.run_start_ts: float | None = None  # event time where the CUSUM's current run began
        self.recent: deque = deque()  # (n_labelled, n_errors) of the last close_after label windows

    def concept_dict(self) -> dict[str, Any]:
        return {
            "warm_n": self.warm_n, "warm_err": self.warm_err,
            "cusum": None if self.cusum is None else self.cusum.state_dict(),
            "loss_cusum": None if self.loss_cusum is None else self.loss_cusum.state_dict(),
            "untestable": self.untestable, "concept_alarms": self.concept_alarms,
            "run_start_ts": self.run_start_ts, "recent": [list(x) for x in self.recent],
            "river": {name: t.to_dict() for name, t in sorted(self.river.items())},
            "error_tail": {"n": int(len(self.tail)),
                           "bits": base64.b64encode(np.packbits(self.tail.astype(np.uint8)).tobytes()).decode("ascii")},
            "quality": quality_state(self),  # streams.judge.quality
        }

    def load_concept(self, m: dict[str, Any]) -> None:
        self.warm_n, self.warm_err = int(m.get("warm_n", 0)), int(m.get("warm_err", 0))
        self.cusum = None if m.get("cusum") is None else BernoulliCusum.from_state(m["cusum"])
        lq = getattr(getattr(self, "profile", None), "labels", None)
        self.loss_cusum = (None if m.get("loss_cusum") is None or lq is None or not lq.loss_quantiles
                           else LossCusum.from_state(m["loss_cusum"], lq.loss_quantiles))
        self.untestable = m.get("untestable")
        self.concept_alarms = [float(t) for t in m.get("concept_alarms", [])]
        self.run_start_ts = m.get("run_start_ts")
        self.recent = deque((int(a), int(b)) for a, b in m.get("recent", []))
        self.river = {str(k): RiverTrack(int(v["age"]), v.get("first_ts"), v.get("mid_ts"))
                      for k, v in (m.get("river") or {}).items()}
        tail = m.get("error_tail") or {"n": 0, "bits": ""}
        bits = np.unpackbits(np.frombuffer(base64.b64decode(tail["bits"]), dtype=np.uint8))
        self.tail = bits[: int(tail["n"])].astype(np.int8)
        self.quality_saved = m.get("quality")  # read by streams.judge.quality when the track is first needed


class ConceptMixin(QualityMixin):
    """Performance and concept-drift judging; see the module docstring (and :mod:`streams.judge.quality`:
    label-free estimates and SLO burn rates, the rest of the engine's model-quality side)."""

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

    def _p0u(self, ms) -> float | None:
        """Conservative reference rate: upper ~2-sigma bound of ``_p0``, so estimation noise does not alarm."""
        p0, n0 = self._p0(ms), max(self._p0_n(ms), 1)
        return None if p0 is None else p0 + 2.0 * math.sqrt(max(p0 * (1 - p0), 1e-4) / n0)

    def _loss_cusum(self, ms) -> LossCusum | None:
        """The loss CUSUM of a regression model version whose profile has a reference loss distribution."""
        lp = ms.profile.labels
        if ms.loss_cusum is None and lp is not None and lp.error != "mismatch" and lp.loss_quantiles:
            ms.loss_cusum = LossCusum(lp.loss_quantiles, lp.n, self.config.cusum_h)
        return ms.loss_cusum

    def _cusum(self, ms) -> BernoulliCusum | None:
        """The CUSUM of this model version, or None when the reference rate leaves no room for a rise."""
        if ms.cusum is None and ms.untestable is None:
            p0, p0u = self._p0(ms), self._p0u(ms)
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
        if (ms.cusum is None and ms.loss_cusum is None) or not self._concept_open(ms):
            return False
        n = sum(a for a, _ in ms.recent)
        e = sum(b for _, b in ms.recent)
        p0u = ms.cusum.p0 if ms.cusum is not None else self._p0u(ms)
        return binomial_increase(p0u, e, n) <= self.config.fdr_alpha

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

    def _concept_alarm(self, ms, model, version, name, score, wstart, wend, n, extra, ts=None) -> list[Alert]:
        if ts is not None:
            ms.concept_alarms.append(float(ts))
        key = self.hyst.key(model, version, "concept_drift", None)
        f = Finding("concept_drift", None, name, float(score), float(self.config.cusum_h if "cusum" in name else score),
                    "critical", None, None, 1.0, {})
        tr = self.hyst.force_open(key, f, wstart, lambda f_, s_: make_alert_id(model, version, "concept_drift", None, s_))
        if tr is None:
            return []
        extra = dict(extra)
        extra["reference_error_rate"] = self._p0(ms)
        if ms.cusum is not None:
            extra["cusum_reference_rate"] = ms.cusum.p0
        if ms.loss_cusum is not None:
            lq = ms.profile.labels.loss_quantiles
            med = float(np.interp(0.5, (np.arange(len(lq)) + 0.5) / len(lq), lq))
            extra.update(loss_scale_shift=ms.loss_cusum.r, reference_loss_median=med)
        return [self._alert(ms, f, wstart, wend, int(n), 1, extra)]

    # ------------------------------------------------------------------ event-level detectors
    def _observe_errors(self, ms, ts: np.ndarray, errors: np.ndarray, event_ids: Sequence[str] | None = None,
                        losses: np.ndarray | None = None) -> list[Alert]:
        """Feed the 0/1 error stream (n,) of one model version, in (event time, event_id) order (ts (n,)
        seconds), and a regression model's losses (n,), to the concept detectors; returns the concept-drift
        alerts that open.  Called by the engine's ``judge`` with each label window's error sequence: the
        one feed of the detectors."""
        cfg = self.config
        errors = np.asarray(errors).astype(np.int8)
        ts = np.asarray(ts, dtype=float)
        start = 0
        if self._p0(ms) is None:  # warm-up: estimate the error rate first
            take = min(cfg.concept_warmup - ms.warm_n, len(errors))
            ms.warm_n += take
            ms.warm_err += int(errors[:take].sum())
            start = take
            self.stats["label_examples_warmup"] += take
            if self._p0(ms) is None:
                return []
        alarms: list[tuple[int, str, float, int, float]] = []  # (position, detector, score, evidence run, its first ts)
        if "cusum" in cfg.concept_detectors:
            lc = self._loss_cusum(ms)
            c = self._cusum(ms) if lc is None else lc
            if lc is not None and losses is None:  # a window from before losses were kept: not fed
                self.stats["label_examples_without_loss"] += len(errors) - start
                c = None
            if c is not None and start < len(errors):
                before = ms.run_start_ts  # a run carried over from an earlier window

                def first_ts(p: int) -> float:
                    return float(ts[p]) if p >= start else (before if before is not None else float(ts[start]))

                hits = c.update(errors[start:] if lc is None else np.asarray(losses, dtype=float)[start:])
                name = "cusum" if lc is None else "loss_cusum"
                for i, run in zip(hits, c.alarm_runs):
                    alarms.append((start + i, name, cfg.cusum_h, run, first_ts(start + i - run + 1)))
                ms.run_start_ts = None if c.run == 0 else first_ts(len(errors) - c.run)
        river = [name for name in cfg.concept_detectors if name != "cusum"]
        if river and start < len(errors):
            alarms += self._feed_river(ms, river, ts, errors, start)
        alerts: list[Alert] = []
        for pos, name, score, run, t0 in sorted(alarms):
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

    def _feed_river(self, ms, names: list[str], ts: np.ndarray, errors: np.ndarray, start: int) -> list[tuple]:
        """River detectors on errors[start:]; restart after an alarm, rebuild from the tail (see module doc)."""
        h = self.config.river_history
        hist = np.concatenate([ms.tail, errors[start:]])
        base = len(ms.tail) - start  # hist index of errors[i] is base + i
        out = []
        for name in names:
            tr = ms.river.get(name)
            if tr is None:
                tr = ms.river[name] = RiverTrack()
            binary = name not in ("adwin", "page_hinkley")
            if tr.det is None:  # first use, or after load_state_dict: re-feed what it had seen
                tr.det = _replay(name, hist[max(len(ms.tail) - tr.age, 0) : len(ms.tail)], binary)
            det = tr.det
            for i in range(start, len(errors)):
                x = int(errors[i])
                det.update(bool(x) if binary else float(x))
                tr.age += 1
                if tr.age == 1:
                    tr.first_ts = float(ts[i])
                if tr.age == h + 1:
                    tr.mid_ts = float(ts[i])
                if det.drift_detected:
                    out.append((i, name, 1.0, tr.age, tr.first_ts))
                    det = _river_detector(name)
                    tr.age, tr.first_ts, tr.mid_ts = 0, None, None
                elif tr.age >= 2 * h:
                    end = base + i + 1
                    det = _replay(name, hist[end - h : end], binary)
                    tr.age, tr.first_ts, tr.mid_ts = h, tr.mid_ts, None
            tr.det = det
        ms.tail = hist[-2 * h :].copy()
        return out


def _replay(name: str, errors: np.ndarray, binary: bool) -> Any:
    """A new River detector fed ``errors`` (its alarms during the re-feed are ignored)."""
    det = _river_detector(name)
    for x in errors.tolist():
        det.update(bool(x) if binary else float(x))
    return det
