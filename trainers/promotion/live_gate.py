"""The live gate: a candidate in shadow and a promoted version under watch, judged on live labelled traffic.

The offline promotion gate (:mod:`trainers.training.gate`) judges a candidate on a held-out split of its own
training window.  That is not the traffic it will serve.  The live gate closes the loop on real traffic:

- **shadow**: a candidate that passed the offline gate is served in shadow (the server publishes its
  prediction in the input's ``shadow`` field next to the live one).  Once labels arrive, each labelled
  example says whether the live version and the candidate were right on *the same input*, so the two are
  compared paired (McNemar's exact test on the discordant pairs; a paired t-test on the top-label Brier
  score for calibration; the same per slice).  Verdict: ``promote`` when the candidate is significantly
  better, or at ``max_samples`` when it is not significantly worse by more than the margin (as canary analysis:
  the offline gate already found it better, so the live gate looks for harm, and the watch goes on looking);
  ``reject`` when it is significantly worse by more than the margin (accuracy, calibration or any slice).
  Labels of inputs served before the shadow began (they arrive late) carry no shadow prediction and are not
  its evidence: the switch's event time is the update's ``at`` when event time is on the wall clock, else the
  shadow's first shadowed input; inputs served after it without one are rejected as "no shadow" once they span
  ``watch_s`` of event time while fewer than ``min_samples`` carried one.
- **watch**: after a promotion, the new version is watched for ``watch_s`` seconds of event time.  When the
  server keeps the parent in shadow, the comparison is paired as above; else the new version's labelled
  outcomes are compared with the parent's last ``baseline_samples`` outcomes before the promotion
  (Fisher's exact test, Welch's t-test on Brier: unpaired, so slower to reach significance).  Verdict:
  ``rollback`` when the new version is significantly worse by more than the margin, ``end_watch`` (kept)
  when the watch period or ``max_samples`` passes without that, or (kept unjudged, saying so) when the new
  version served fewer than ``min_samples`` labelled examples while the parent went on serving for ``watch_s``
  after the switch (known only when event time is on the wall clock).

Model updates are the registry's state of a model: an evaluation lives while the updates say what it judges
is live and in shadow (a person's rollback or promotion ends it); an update older (``at``) than the
evaluation's own, read again after a restart, changes nothing.

Repeated looks: a verdict is considered only at ``min_samples``, ``2 * min_samples``, ... up to
``max_samples`` (``looks`` of them, the last at ``max_samples`` exactly, and one more at the end of a watch period), each at ``alpha / (looks + 1)`` and divided again over the tests of that
look (accuracy, calibration, each slice): Bonferroni, so the chance of a false verdict over the whole
evaluation stays below ``alpha``.  Every example is counted once per evaluation (by ``event_id``).

Pure: labelled examples (:class:`streams.contracts.events.LabelledExample` dicts) and model updates
(:class:`trainers.records.ModelUpdate` dicts) in, :class:`LiveVerdict` out; the dispatcher carries them out
on the registry (``trainers.dispatch.live_step``).  State round-trips through :meth:`LiveGate.to_dict`.

>>> gate = LiveGate(LiveGateConfig(min_samples=100, max_samples=200))
>>> gate.on_update({"model": "m", "action": "shadow", "version": "1", "shadow": "2"})
[]
>>> ex = [{"event_id": f"e{i}", "model": "m", "model_version": "1", "ts": float(i), "label": i % 2,
...        "prediction": i % 2 if i % 4 else 1 - i % 2, "shadow": {"model_version": "2", "prediction": i % 2}}
...       for i in range(100)]
>>> [(v.action, v.version, v.incumbent) for v in gate.on_labelled(ex)]
[('promote', '2', '1')]
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Iterable, Mapping

from streams.judge.profile import is_error
from trainers.promotion.live_statistics import (Outcomes, Paired, finite_json, top_brier, unpaired_calibration_worse,
                                                unpaired_worse)

SHADOW, WATCH = "shadow", "watch"
#: seconds by which a model update may predate the evaluation's own and still count (clocks of two processes)
STALE_UPDATE_S = 1.0
#: distinct values per slice feature that are tracked (the rest are counted in the totals only)
MAX_SLICE_VALUES = 20
#: event-time seconds servers take to act on a model update (inputs served sooner may predate it)
SERVER_GRACE_S = 60.0
#: an update's ``at`` is the switch's event time when the model's labelled inputs are within this much of it (labels
#: arrive late, a dispatcher restarts later); else event time is not on the wall clock (a replay of the past)
MAX_LABEL_LAG_S = 30 * 86400.0
PROMOTE, REJECT, ROLLBACK, END_WATCH = "promote", "reject", "rollback", "end_watch"


@dataclass(frozen=True)
class LiveGateConfig:
    """The ``promotion`` config section.

    ``shadow``: a candidate that passed the offline gate is served in shadow before promotion (needs a server
    that publishes the inputs' ``shadow`` field; off by default: promoted at once, then watched).  A shadow
    whose live examples carry no shadow prediction for ``watch_s`` of event time after the switch is rejected, saying so.  ``watch``: a promoted version is watched and rolled back on live evidence.
    ``min_samples``/``max_samples``: labelled examples per look / at which an evaluation ends (its power:
    ``bench/results/live_gate_power.md``: a fine-tune 2 points worse than its parent is rejected, an unrelated model
    with independent errors needs more than 3,000 pairs to tell 2-3 points from noise).
    ``max_error_increase``: the margin (absolute error-rate increase, e.g. 0.01 = one accuracy point) below
    which a difference does not matter; ``max_calibration_increase`` the same for the top-label Brier score;
    ``max_slice_error_increase`` for a slice (a value of one of ``slices``, categorical features) with at least
    ``min_slice_samples`` pairs.  ``alpha``: the chance of a false verdict over a whole evaluation.
    ``watch_s``: event-time seconds a promoted version is watched, and the longest a candidate stays in shadow
    (then judged on what it has, or not promoted when that is under ``min_samples``).  ``baseline_samples``: the live version's
    last labelled outcomes kept, the baseline of a watch without shadow predictions.  ``error``/``tolerance``:
    what counts as an error (``mismatch``, or ``absolute``/``relative`` within ``tolerance`` for regression
    models; :func:`streams.judge.profile.is_error`).
    """

    shadow: bool = False
    watch: bool = True
    min_samples: int = 300
    max_samples: int = 3000
    alpha: float = 0.01
    max_error_increase: float = 0.01
    max_calibration_increase: float = 0.01
    slices: tuple[str, ...] = ()
    min_slice_samples: int = 200
    max_slice_error_increase: float = 0.05
    watch_s: float = 3600.0
    baseline_samples: int = 2000
    error: str = "mismatch"
    tolerance: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < int(self.min_samples) <= int(self.max_samples):
            raise ValueError(f"promotion.min_samples must be in 1..max_samples ({self.max_samples}), got {self.min_samples}")
        if not 0 < float(self.alpha) < 1:
            raise ValueError(f"promotion.alpha must be in (0, 1), got {self.alpha}")
        if self.error not in ("mismatch", "absolute", "relative"):
            raise ValueError(f"promotion.error must be mismatch, absolute or relative, got {self.error!r}")
        for name in ("min_slice_samples", "baseline_samples"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"promotion.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_error_increase", "max_calibration_increase", "max_slice_error_increase", "tolerance"):
            if not 0.0 <= float(getattr(self, name)) < math.inf:
                raise ValueError(f"promotion.{name} must be a finite number >= 0, got {getattr(self, name)}")
        if not 0.0 < float(self.watch_s) < math.inf:
            raise ValueError(f"promotion.watch_s must be a finite number of seconds > 0, got {self.watch_s}")
        object.__setattr__(self, "slices", tuple(self.slices))

    @property
    def looks(self) -> int:
        return math.ceil(self.max_samples / self.min_samples)


@dataclass(frozen=True)
class LiveVerdict:
    """What to do: ``action`` (promote | reject | rollback | end_watch) on ``version`` of ``model``, compared
    with ``incumbent`` (the live version for a shadow, the parent for a watch); ``reason`` in words and the
    ``evidence`` (counts, rates, p-values, event-time window) to keep in the registry."""

    action: str
    model: str
    version: str
    incumbent: str
    reason: str
    evidence: dict[str, Any]


# --------------------------------------------------------------------------- evaluations


@dataclass
class Evaluation:
    """One evaluation in progress: a ``shadow`` (subject = candidate, incumbent = live) or a ``watch``
    (subject = the promoted version, incumbent = its parent)."""

    kind: str
    model: str
    subject: str
    incumbent: str
    paired: Paired = field(default_factory=Paired)
    alone: Outcomes = field(default_factory=Outcomes)  # the subject's outcomes, shadow or not (watch)
    baseline: Outcomes = field(default_factory=Outcomes)  # the incumbent's last outcomes before a watch
    slices: dict[str, Paired] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    first_ts: float | None = None
    last_ts: float | None = None
    looks_done: int = 0
    decided: str | None = None
    missing: int = 0  # a shadow's live examples without the candidate's prediction, served after it started
    opened_at: float | None = None  # the model update's ``at`` (wall clock): older updates change nothing
    opened_ts: float | None = None  # the model's latest event time when the evaluation opened
    start_ts: float | None = None  # event time of the switch (``opened_at``, when event time is on the wall clock)
    start_checked: bool = False
    shadow_start: float | None = None  # a shadow's earliest input that carried the candidate's prediction
    parent_after: list = field(default_factory=lambda: [0, None])  # a watch's parent-served inputs after start_ts

    @property
    def n(self) -> int:
        return self.paired.n if self.is_paired else self.alone.n

    @property
    def is_paired(self) -> bool:
        """Judged paired: a shadow always; a watch when most of its examples carried the parent's shadow prediction."""
        return self.kind == SHADOW or self.paired.n >= self.alone.n / 2

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["seen"] = sorted(self.seen)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Evaluation":
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}  # a state of another version of the gate
        d["paired"] = Paired(**d["paired"])
        d["alone"] = Outcomes(**d["alone"])
        d["baseline"] = Outcomes(**d["baseline"])
        d["slices"] = {k: Paired(**v) for k, v in d["slices"].items()}
        d["seen"] = set(d["seen"])
        return cls(**d)


class LiveGate:
    """Live evaluations of every model (see the module docstring).  ``state``: :meth:`to_dict` of a former gate."""

    def __init__(self, cfg: LiveGateConfig | None = None, state: Mapping[str, Any] | None = None) -> None:
        self.cfg = cfg or LiveGateConfig()
        self._def = self.cfg  # is_error reads .error and .tolerance
        self.evaluations: dict[str, Evaluation] = {}
        self.baselines: dict[tuple[str, str], deque] = {}  # (model, version) -> recent (wrong, brier)
        self.clock: dict[str, float] = {}  # model -> latest event time of its labelled examples
        if state:
            self.evaluations = {m: Evaluation.from_dict(e) for m, e in state.get("evaluations", {}).items()}
            self.clock = {str(m): float(t) for m, t in state.get("clock", {}).items()}
            for m, v, rows in state.get("baselines", []):
                self.baselines[(m, v)] = deque(map(tuple, rows), maxlen=self.cfg.baseline_samples)

    def to_dict(self) -> dict[str, Any]:
        return {"evaluations": {m: e.to_dict() for m, e in self.evaluations.items()}, "clock": dict(self.clock),
                "baselines": [[m, v, list(q)] for (m, v), q in self.baselines.items()]}

    # ------------------------------------------------------------------ model updates
    def on_update(self, update: Mapping[str, Any]) -> list[LiveVerdict]:
        """A model update (dict of :class:`trainers.records.ModelUpdate`): the registry's state of the model after
        it (``version`` live, ``shadow`` served in shadow), so it starts, keeps, replaces or ends the evaluation.
        An update older (``at``) than the evaluation's own, read again after a restart, changes nothing."""
        model, version = str(update["model"]), str(update.get("version"))
        action, shadow, parent = update.get("action"), update.get("shadow"), update.get("previous_version")
        shadow, parent = (str(shadow) if shadow else None), (str(parent) if parent else None)
        at = update.get("at")
        at = float(at) if isinstance(at, (int, float)) and math.isfinite(at) and at > 0 else None  # 0: not given
        current = self.evaluations.get(model)
        if current is not None and at is not None and current.opened_at is not None \
                and at < current.opened_at - STALE_UPDATE_S:
            return []
        wanted = None  # (kind, subject, incumbent) the registry's state calls for
        if action == SHADOW and shadow:
            wanted = (SHADOW, shadow, version)
        elif action == PROMOTE and self.cfg.watch and parent and parent != version and shadow == parent:
            wanted = (WATCH, version, parent)  # watched only when the registry watches it (servers shadow the parent)
        if current is not None and (current.kind, current.subject, current.incumbent) == wanted:
            return []  # the same state again (the update read back from the topic, or redelivered): nothing changes
        self.evaluations.pop(model, None)
        if wanted is not None:
            kind, subject, incumbent = wanted
            ev = Evaluation(kind, model, subject, incumbent, opened_at=at, opened_ts=self.clock.get(model))
            if ev.kind == WATCH:
                for wrong, brier in self.baselines.get((model, ev.incumbent), ()):
                    ev.baseline.add(bool(wrong), brier)
            self.evaluations[model] = ev
        for (m, v) in [k for k in self.baselines if k[0] == model and k[1] not in (version, parent)]:
            del self.baselines[(m, v)]  # keep the baselines of the live version and its parent only
        return []

    # ------------------------------------------------------------------ labelled examples
    def on_labelled(self, examples: Iterable[Mapping[str, Any]]) -> list[LiveVerdict]:
        """Labelled examples (dicts of :class:`streams.contracts.events.LabelledExample`), any models, any order."""
        out: list[LiveVerdict] = []
        for ex in examples:
            model, version = str(ex.get("model")), str(ex.get("model_version"))
            label, pred = ex.get("label"), ex.get("prediction")
            if label is None or pred is None:
                continue
            wrong = is_error(pred, label, self._def)
            brier = top_brier(pred, ex.get("scores"), wrong)
            ts = ex.get("ts")
            ts = float(ts) if isinstance(ts, (int, float)) and math.isfinite(ts) else None  # without one: spans nothing
            if ts is not None:
                self.clock[model] = max(ts, self.clock.get(model, ts))
            ev = self.evaluations.get(model)
            if ev is not None and not ev.decided and ev.kind == WATCH and ev.incumbent == version:
                # the parent's labels still arriving for inputs it served before the promotion: the most recent
                # outcomes it has, so they join the watch's baseline (once each)
                eid = str(ex.get("event_id"))
                if eid not in ev.seen and ev.baseline.n < self.cfg.baseline_samples + self.cfg.max_samples:  # bounded
                    ev.seen.add(eid)
                    ev.baseline.add(wrong, brier)
                if self._after_switch(ev, ts):  # the parent still serves: the servers did not switch
                    ev.parent_after[0] += 1
                    ev.parent_after[1] = max(ts, ev.parent_after[1] if ev.parent_after[1] is not None else ts)
                self._baseline(model, version, wrong, brier)
            elif ev is None or ev.decided or (ev.kind == WATCH and ev.subject != version) \
                    or (ev.kind == SHADOW and ev.incumbent != version):
                self._baseline(model, version, wrong, brier)
            elif (eid := str(ex.get("event_id"))) not in ev.seen:
                ev.seen.add(eid)
                self._count(ev, ex, ts, label, wrong, brier)
            if ev is not None and not ev.decided and self._look_due(ev):
                # judged at the example that completes a look: the same verdict whatever the batching
                v = self._judge(ev)
                if v is not None:
                    out.append(v)
        return out

    def _count(self, ev: Evaluation, ex: Mapping[str, Any], ts: float | None, label: Any, wrong: bool,
               brier: float | None) -> None:
        """One labelled example of the evaluation's live version (served by the subject of a watch, by the incumbent
        of a shadow), counted once."""
        if ev.kind == SHADOW:
            self._baseline(ev.model, ev.incumbent, wrong, brier)
        shadow = ex.get("shadow") or None
        s_pred = shadow.get("prediction") if isinstance(shadow, Mapping) else None
        shadowed = s_pred is not None and str(shadow.get("model_version")) == (
            ev.subject if ev.kind == SHADOW else ev.incumbent)
        if ev.kind == SHADOW and not shadowed and not self._after_switch(ev, ts):
            # served before the shadow began (labels of earlier inputs arrive late): not the shadow's evidence.  Once
            # the shadow's start is known (its first shadowed input, or the update's time) later ones are: missing
            return
        if ts is not None:
            ev.first_ts = ts if ev.first_ts is None else min(ev.first_ts, ts)
            ev.last_ts = ts if ev.last_ts is None else max(ev.last_ts, ts)
        if ev.kind == WATCH:
            ev.alone.add(wrong, brier)
        if not shadowed:
            ev.missing += 1
            return
        if ev.kind == SHADOW and ts is not None:
            ev.shadow_start = ts if ev.shadow_start is None else min(ev.shadow_start, ts)
        s_wrong = is_error(s_pred, label, self._def)
        s_brier = top_brier(s_pred, shadow.get("scores"), s_wrong)
        subj = (s_wrong, s_brier) if ev.kind == SHADOW else (wrong, brier)
        inc = (wrong, brier) if ev.kind == SHADOW else (s_wrong, s_brier)
        d = None if subj[1] is None or inc[1] is None else subj[1] - inc[1]
        ev.paired.add(subj[0], inc[0], d)
        features = ex.get("features")
        for feat in self.cfg.slices if isinstance(features, Mapping) else ():
            value = features.get(feat)
            if value is None or isinstance(value, (dict, list)):
                continue
            name = f"{feat}={value}"
            if name in ev.slices or sum(k.startswith(feat + "=") for k in ev.slices) < MAX_SLICE_VALUES:
                ev.slices.setdefault(name, Paired()).add(subj[0], inc[0], d)

    def _after_switch(self, ev: Evaluation, ts: float | None) -> bool:
        """Whether an input at event time ``ts`` was served after the evaluation's switch: from a shadow's first
        shadowed input, else from the switch's event time plus SERVER_GRACE_S; False while neither is known."""
        if ts is None:
            return False
        if ev.shadow_start is not None:
            return ts >= ev.shadow_start
        return self._switched(ev, ts) and ts >= ev.start_ts + SERVER_GRACE_S

    def _switched(self, ev: Evaluation, ts: float | None) -> bool:
        """Whether the event time of the evaluation's switch is known (``ev.start_ts``): the update's ``at`` once the
        model's event time is seen on the wall clock (its latest labelled input when the evaluation opened, else an
        example's, within MAX_LABEL_LAG_S of ``at``); unknown in a replay of past event time."""
        if ev.start_ts is None and ev.opened_at is not None:
            ref = ev.opened_ts if ev.opened_ts is not None and not ev.start_checked else ts
            ev.start_checked = True  # the clock at the opening is asked once; then each example
            if ref is not None and abs(ref - ev.opened_at) <= MAX_LABEL_LAG_S:
                ev.start_ts = ev.opened_at
        return ev.start_ts is not None

    def _look_due(self, ev: Evaluation) -> bool:
        return ev.n >= self._next_look(ev) or self._period_over(ev) or self._quiet(ev) is not None

    def _next_look(self, ev: Evaluation) -> int:
        """Examples at which the next look is due: ``min_samples`` apart, the last one at ``max_samples``."""
        return min((ev.looks_done + 1) * self.cfg.min_samples, self.cfg.max_samples)

    def _period_over(self, ev: Evaluation) -> bool:
        return ev.first_ts is not None and ev.last_ts is not None and ev.last_ts - ev.first_ts >= self.cfg.watch_s

    def _quiet(self, ev: Evaluation) -> float | None:
        """A watch whose promoted version served fewer than ``min_samples`` labelled examples while the parent went on
        serving inputs for ``watch_s`` after the switch, or after the version's last input (the servers did not load
        it, or went back): those seconds; else None."""
        if ev.kind != WATCH or ev.alone.n >= self.cfg.min_samples or ev.start_ts is None or ev.parent_after[1] is None:
            return None
        span = ev.parent_after[1] - max(ev.start_ts, ev.last_ts if ev.last_ts is not None else ev.start_ts)
        return span if span >= self.cfg.watch_s else None

    def _baseline(self, model: str, version: str, wrong: bool, brier: float | None) -> None:
        q = self.baselines.get((model, version))
        if q is None:
            q = self.baselines[(model, version)] = deque(maxlen=self.cfg.baseline_samples)
        q.append((int(wrong), brier))

    # ------------------------------------------------------------------ verdicts
    def _judge(self, ev: Evaluation) -> LiveVerdict | None:
        c = self.cfg
        quiet = self._quiet(ev)
        if ev.kind == SHADOW and ev.paired.n < c.min_samples and ev.missing >= c.min_samples and self._period_over(ev):
            n_without = ev.missing
            span = ev.last_ts - ev.first_ts if ev.first_ts is not None and ev.last_ts is not None else 0.0
            reason = (f"candidate v{ev.subject} in shadow against live v{ev.incumbent}: {n_without} labelled examples "
                      f"of v{ev.incumbent} served over {span:.0f} s of event time since the shadow began carried no "
                      f"shadow prediction of v{ev.subject} ({ev.paired.n} did); "
                      "the server must publish the inputs' `shadow` field (docs/design.md), or set promotion.shadow: "
                      "false")
            ev.decided = REJECT
            return LiveVerdict(REJECT, ev.model, ev.subject, ev.incumbent, reason,
                               finite_json({"kind": SHADOW, "subject": ev.subject, "incumbent": ev.incumbent,
                                        "failed": ["no shadow"], "failed_checks": ["no_shadow"], "missing": n_without,
                                        "paired": True, "looks": ev.looks_done, "alpha": c.alpha, "compared": False,
                                        "window": {"start": ev.first_ts, "end": ev.last_ts},
                                        "error_rate": {"subject": None, "incumbent": None, "difference": 0.0,
                                                       "p_value": None, "n": ev.paired.n}}))
        if ev.kind == WATCH and quiet is not None:
            ev.decided = END_WATCH
            reason = (f"v{ev.subject} watched against its parent v{ev.incumbent}: {ev.alone.n} labelled examples of "
                      f"v{ev.subject} (promotion.min_samples {c.min_samples}), and v{ev.incumbent} served "
                      f"{ev.parent_after[0]} labelled inputs over {quiet:.0f} s of event time after the promotion "
                      f"(promotion.watch_s {c.watch_s:g}): do the servers serve "
                      f"v{ev.subject}? kept unjudged")
            return LiveVerdict(END_WATCH, ev.model, ev.subject, ev.incumbent, reason,
                               {"kind": WATCH, "subject": ev.subject, "incumbent": ev.incumbent, "failed": [],
                                "failed_checks": [], "paired": False, "looks": ev.looks_done, "alpha": c.alpha,
                                "compared": False, "ended_by": "promotion.watch_s",
                                "window": {"start": ev.start_ts, "end": ev.parent_after[1]},
                                "error_rate": {"subject": ev.alone.error_rate, "incumbent": ev.baseline.error_rate
                                               if ev.baseline.n else None, "difference": 0.0, "p_value": None,
                                               "n": ev.alone.n}})
        uncomparable = ev.kind == WATCH and not ev.is_paired and ev.baseline.n < c.min_samples
        period_over = self._period_over(ev)
        if uncomparable and not period_over and ev.alone.n < c.max_samples:
            return None  # no shadow, and too few outcomes of the parent to compare with: wait for the end
        if not period_over and not uncomparable and ev.n < self._next_look(ev):
            return None
        ev.looks_done += 1
        alpha = c.alpha / (c.looks + 1)  # one more look for the end of a period
        worse, tests = self._tests(ev, alpha)
        last = period_over or uncomparable or ev.looks_done >= c.looks or ev.n >= c.max_samples
        enough = ev.n >= c.min_samples and not uncomparable and not tests["degenerate"]
        ended_by = "promotion.watch_s" if period_over else "promotion.max_samples"
        if worse and enough:
            return self._verdict(ev, REJECT if ev.kind == SHADOW else ROLLBACK, worse, tests)
        if ev.kind == WATCH:
            return self._verdict(ev, END_WATCH, [], tests, ended_by=ended_by, compared=enough) if last else None
        better, p = ev.paired.better(alpha)
        unchecked = {k: v.n for k, v in ev.slices.items() if v.n < c.min_slice_samples}
        if better and not unchecked and enough:
            return self._verdict(ev, PROMOTE, worse, tests, better_p=p)
        if not last:
            return None  # not shown better yet, or a slice still too small to check: more evidence
        if not enough:
            return self._verdict(ev, REJECT, [], tests, ended_by=ended_by, compared=False)
        # not shown worse by more than the margin at the end: promoted (the offline gate found it better; the live
        # gate looks for harm, at alpha, and the watch after the promotion goes on looking)
        return self._verdict(ev, PROMOTE, worse, tests, ended_by=ended_by,
                             upper_difference=float(ev.paired.upper_difference(0.05)))

    def _tests(self, ev: Evaluation, alpha: float) -> tuple[list[str], dict[str, Any]]:
        """The failed checks (in words) and every test's figures, at ``alpha`` split over the tests."""
        c = self.cfg
        paired = ev.is_paired
        slices = {k: s for k, s in ev.slices.items() if s.n >= c.min_slice_samples} if paired else {}
        a = alpha / (2 + len(slices))
        tests: dict[str, Any] = {"paired": paired, "alpha": a}
        worse: list[str] = []
        if paired:
            bad, p, diff = ev.paired.worse(c.max_error_increase, a)
            cal_bad, cal_p, cal_d = ev.paired.calibration_worse(c.max_calibration_increase, a)
            tests["error_rate"] = {"subject": ev.paired.subj_err / max(ev.paired.n, 1),
                                   "incumbent": ev.paired.inc_err / max(ev.paired.n, 1), "difference": diff,
                                   "p_value": p, "n": ev.paired.n, "discordant": [ev.paired.b, ev.paired.c]}
        else:
            bad, p, diff = unpaired_worse(ev.alone, ev.baseline, c.max_error_increase, a)
            cal_bad, cal_p, cal_d = unpaired_calibration_worse(ev.alone, ev.baseline, c.max_calibration_increase, a)
            tests["error_rate"] = {"subject": ev.alone.error_rate, "incumbent": ev.baseline.error_rate,
                                   "difference": diff, "p_value": p, "n": ev.alone.n, "n_baseline": ev.baseline.n}
        n_cal = ev.paired.nd if paired else min(ev.alone.nb, ev.baseline.nb)
        tests["calibration"] = {"metric": "top-label Brier", "difference": cal_d, "p_value": cal_p, "n": n_cal}
        rates = [r for r in (tests["error_rate"]["subject"], tests["error_rate"]["incumbent"]) if r is not None]
        tests["degenerate"] = len(rates) == 2 and min(rates) >= 0.99  # every prediction an error: nothing to compare
        tests["failed_checks"] = checks = []  # machine-readable, in the order of ``worse``
        if bad:
            worse.append(f"error rate {diff:+.3f} (p={p:.2g}, margin {c.max_error_increase})")
            checks.append("error_rate")
        if cal_bad:
            worse.append(f"top-label Brier {cal_d:+.3f} (p={cal_p:.2g}, margin {c.max_calibration_increase})")
            checks.append("calibration")
        tests["slices"] = {}
        for name, s in sorted(slices.items()):
            s_bad, s_p, s_diff = s.worse(c.max_slice_error_increase, a)
            tests["slices"][name] = {"difference": s_diff, "p_value": s_p, "n": s.n}
            if s_bad:
                worse.append(f"slice {name}: error rate {s_diff:+.3f} (p={s_p:.2g}, margin {c.max_slice_error_increase})")
                checks.append(f"slice:{name}")
        tests["slices_unchecked"] = {k: v.n for k, v in sorted(ev.slices.items()) if v.n < c.min_slice_samples}
        return worse, tests

    def _verdict(self, ev: Evaluation, action: str, worse: list[str], tests: dict[str, Any], **extra: Any) -> LiveVerdict:
        ev.decided = action
        er = tests["error_rate"]
        what = {SHADOW: f"candidate v{ev.subject} in shadow against live v{ev.incumbent}",
                WATCH: f"v{ev.subject} watched against its parent v{ev.incumbent}"}[ev.kind]
        how = "paired on the same inputs" if tests["paired"] else "against the parent's outcomes before the promotion"
        rates = (f"error rate {er['subject']:.3f} vs {er['incumbent']:.3f}" if er["subject"] is not None
                 and er["incumbent"] is not None else "no labelled outcomes")
        ended = f"ended by {extra.get('ended_by')}"
        if worse:
            reason = f"{what}: worse on live traffic ({'; '.join(worse)}), {how}, n={er['n']}"
        elif extra.get("compared") is False:
            why = ("every prediction of both counts as an error (a regression model? set promotion.error and "
                   "tolerance)" if tests["degenerate"] else
                   f"only {er['n']} labelled examples (promotion.min_samples {self.cfg.min_samples})" if ev.n <
                   self.cfg.min_samples or ev.kind == SHADOW else
                   f"no shadow predictions of v{ev.incumbent} and only {ev.baseline.n} labelled outcomes of it before "
                   f"the promotion (promotion.min_samples {self.cfg.min_samples})")
            verdict = "not promoted" if action == REJECT else "kept unjudged"
            reason = f"{what}: {ended} without a comparison: {why}; {verdict} ({rates})"
        elif action == PROMOTE and "better_p" in extra:
            reason = f"{what}: better on live traffic ({rates}, p={extra['better_p']:.2g}, {how}, n={er['n']})"
        elif action == PROMOTE:
            reason = f"{what}: not worse on live traffic ({rates}, {how}, n={er['n']}, {ended})"
        else:
            reason = f"{what}: kept ({rates}, {how}, n={er['n']}, {ended})"
        evidence = {"kind": ev.kind, "subject": ev.subject, "incumbent": ev.incumbent, "looks": ev.looks_done,
                    "window": {"start": ev.first_ts, "end": ev.last_ts}, "failed": worse, **tests, **extra}
        return LiveVerdict(action, ev.model, ev.subject, ev.incumbent, reason, finite_json(evidence))


__all__ = ["LiveGate", "LiveGateConfig", "LiveVerdict", "Evaluation"]
