"""Decision policy: evidence + effect size, multiple-testing control, hysteresis (pure).

A window's tests become *findings* only when

1. the test is significant after Benjamini-Hochberg across the tests of the same
   kind in that window (each feature's components are Bonferroni-combined first), and
2. at least one effect size of a significant component is at or above its warning
   threshold (PSI 0.1, KS 0.1, Wasserstein 0.1 reference sd, JS 0.1, ...).

Large windows therefore do not alert on negligible shifts (they fail 2) and small
windows do not alert on noise (they fail 1).  Severity is ``critical`` when an
effect reaches its critical threshold.

:class:`Hysteresis` turns findings into alerts: an alert opens after ``open_after``
consecutive drifting (judged) windows, or at once when the evidence is
overwhelming (BH-adjusted p <= ``immediate_alpha``); it closes after
``close_after`` consecutive clean windows.  One alert is open per
(model, version, kind, feature).

>>> round(bh_cutoff([0.001, 0.02, 0.5], alpha=0.05), 4)
0.0333
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np


@dataclass(frozen=True)
class Level:
    """Warning and critical thresholds of one effect-size metric."""

    warning: float
    critical: float


@dataclass(frozen=True)
class Thresholds:
    """Effect-size thresholds per metric (``drift.thresholds`` in the config file)."""

    psi: Level = Level(0.1, 0.25)
    js: Level = Level(0.13, 0.21)  # Jensen-Shannon distance, base 2 (about PSI 0.1 / 0.25)
    ks: Level = Level(0.1, 0.2)  # KS statistic (largest CDF gap)
    wasserstein: Level = Level(0.1, 0.25)  # in reference standard deviations
    missing_rate: Level = Level(0.05, 0.2)  # absolute change of the missing (or invalid) rate
    error_rate: Level = Level(0.05, 0.1)  # absolute increase over the reference error rate
    ece: Level = Level(0.05, 0.1)  # absolute increase over the reference ECE
    estimated_accuracy: Level = Level(0.05, 0.1)  # drop of the label-free accuracy estimate below the reference accuracy

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> "Thresholds":
        raw = dict(raw or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown threshold metric(s) {unknown}; known: {sorted(known)}")
        kw = {}
        for k, v in raw.items():
            if isinstance(v, Level):
                kw[k] = v
            elif isinstance(v, Mapping):
                kw[k] = Level(float(v["warning"]), float(v["critical"]))
            elif isinstance(v, (list, tuple)) and len(v) == 2:
                kw[k] = Level(float(v[0]), float(v[1]))
            else:
                raise ValueError(f"threshold {k!r} must be {{warning: W, critical: C}} or [W, C], got {v!r}")
        return cls(**kw)

    def level(self, metric: str) -> Level:
        return getattr(self, metric)


@dataclass
class Component:
    """One test inside a feature's check: p-value and the effect sizes it supports."""

    name: str  # "distribution" | "missing" | "error_rate" | ...
    p_value: float | None  # None = effect-only check
    effects: dict[str, float]  # metric -> effect size (same orientation as the thresholds)


@dataclass
class FeatureTest:
    kind: str
    feature: str | None
    components: list[Component]
    metrics: dict[str, float] = field(default_factory=dict)  # everything worth reporting

    @property
    def p_value(self) -> float:
        ps = [c.p_value for c in self.components if c.p_value is not None]
        if not ps:
            return 1.0
        return min(1.0, min(ps) * len(ps))


@dataclass
class Finding:
    kind: str
    feature: str | None
    metric: str
    score: float
    threshold: float
    severity: str
    p_value: float | None  # raw p-value of the component
    q_value: float | None  # BH-adjusted p-value of the feature test
    ratio: float  # score / warning threshold: the ranking key
    metrics: dict[str, float] = field(default_factory=dict)


def bh_cutoff(pvals: Iterable[float], alpha: float) -> float:
    """Benjamini-Hochberg critical value ``alpha * R / m`` (R = number rejected at FDR ``alpha``; 0.0 when none is).

    Exactly the p-values at or below it are rejected.
    """
    p = np.sort(np.asarray(list(pvals), dtype=float))
    m = len(p)
    if m == 0:
        return 0.0
    ok = np.flatnonzero(p <= alpha * np.arange(1, m + 1) / m)
    return float(alpha * (ok[-1] + 1) / m) if ok.size else 0.0


def bh_adjust(pvals: Iterable[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values), in input order."""
    p = np.asarray(list(pvals), dtype=float)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(q, 1.0)
    return out


def select_findings(tests: list[FeatureTest], alpha: float, thresholds: Thresholds) -> list[Finding]:
    """Findings of one window and kind: BH-significant and above an effect threshold, ranked by effect."""
    if not tests:
        return []
    pvals = [t.p_value for t in tests]
    qvals = bh_adjust(pvals)
    cutoff = bh_cutoff(pvals, alpha)
    findings: list[Finding] = []
    for t, q in zip(tests, qvals):
        best: tuple[float, str, float, float, str, float | None] | None = None
        n_comp = sum(1 for c in t.components if c.p_value is not None)
        for comp in t.components:
            # a component counts when its within-feature Bonferroni p is rejected by BH across features
            if comp.p_value is not None and not (comp.p_value * n_comp <= cutoff and cutoff > 0):
                continue
            for metric, value in comp.effects.items():
                lvl = thresholds.level(metric)
                if value is None or not np.isfinite(value) or value < lvl.warning:
                    continue
                sev = "critical" if value >= lvl.critical else "warning"
                ratio = value / lvl.warning if lvl.warning > 0 else float("inf")
                thr = lvl.critical if sev == "critical" else lvl.warning
                if best is None or ratio > best[0]:
                    best = (ratio, metric, float(value), thr, sev, comp.p_value)
        if best is None:
            continue
        ratio, metric, value, thr, sev, p = best
        findings.append(
            Finding(t.kind, t.feature, metric, value, thr, sev, p, None if p is None else float(q), float(ratio), dict(t.metrics))
        )
    findings.sort(key=lambda f: (-f.ratio, str(f.feature)))
    return findings


# --------------------------------------------------------------------------- hysteresis


@dataclass
class TrackState:
    """Hysteresis state of one (model, version, kind, feature)."""

    drifting: int = 0  # consecutive judged windows with a finding
    clean: int = 0  # consecutive judged windows without one (while open)
    open_id: str | None = None
    opened_start: float | None = None
    first_drift_start: float | None = None  # start of the first window of the current drifting run

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Transition:
    key: tuple[str, str, str, str]
    action: str  # "open" | "clear"
    finding: Finding | None
    window_start: float


class Hysteresis:
    """k drifting windows to open, m clean windows to close; one open alert per key."""

    def __init__(self, open_after: int = 2, close_after: int = 3, immediate_alpha: float = 1e-5) -> None:
        self.open_after = max(int(open_after), 1)
        self.close_after = max(int(close_after), 1)
        self.immediate_alpha = immediate_alpha
        self.tracks: dict[tuple[str, str, str, str], TrackState] = {}

    @staticmethod
    def key(model: str, version: str, kind: str, feature: str | None) -> tuple[str, str, str, str]:
        return (model, version, kind, feature or "")

    def step(
        self, model: str, version: str, kinds: Iterable[str], window_start: float, findings: list[Finding],
        make_id,
    ) -> list[Transition]:
        """Advance every track of ``kinds`` of this model by one judged window (untracked kinds: clean)."""
        kinds = set(kinds)
        found = {self.key(model, version, f.kind, f.feature): f for f in findings}
        out: list[Transition] = []
        for k, f in found.items():
            strong = f.q_value is not None and f.q_value <= self.immediate_alpha
            if f.q_value is None and f.severity == "critical" and self.open_after <= 1:
                strong = True
            tr = self.observe(k, True, window_start, strong, lambda s, f=f: make_id(f, s), f)
            if tr is not None:
                out.append(tr)
        for k in list(self.tracks):
            if k in found or k[0] != model or k[1] != version or k[2] not in kinds:
                continue
            tr = self.observe(k, False, window_start)
            if tr is not None:
                out.append(tr)
        return out

    def observe(self, key: tuple[str, str, str, str], drifting: bool, window_start: float, strong: bool = False,
                make_id: Any = None, finding: Finding | None = None) -> Transition | None:
        """One judged window of one track: the state machine every alert kind shares.

        ``drifting``: the window has a finding for ``key``; ``strong``: open at once (else after
        ``open_after`` drifting windows in a row); ``make_id(window_start)`` names the alert that opens.
        A clean window counts towards closing an open alert (``close_after`` in a row).  Returns the
        transition ("open" or "clear") or None."""
        st = self.tracks.get(key)
        if drifting:
            if st is None:
                st = self.tracks[key] = TrackState()
            if st.drifting == 0:
                st.first_drift_start = window_start
            st.drifting += 1
            st.clean = 0
            if st.open_id is None and (strong or st.drifting >= self.open_after):
                st.open_id = make_id(window_start)
                st.opened_start = window_start
                return Transition(key, "open", finding, window_start)
            return None
        if st is None:
            return None
        st.drifting = 0
        st.first_drift_start = None
        out = None
        if st.open_id is not None:
            st.clean += 1
            if st.clean >= self.close_after:
                out = Transition(key, "clear", None, window_start)
                st.open_id = None
                st.opened_start = None
                st.clean = 0
        if st.open_id is None and st.drifting == 0:
            del self.tracks[key]
        return out

    def open_alerts(self) -> dict[tuple[str, str, str, str], str]:
        return {k: st.open_id for k, st in self.tracks.items() if st.open_id}

    def state_dict(self) -> dict[str, Any]:
        return {"tracks": [[list(k), st.to_dict()] for k, st in self.tracks.items()]}

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        self.tracks = {tuple(k): TrackState(**st) for k, st in d.get("tracks", [])}

    def force_open(self, key: tuple[str, str, str, str], finding: Finding, window_start: float, make_id) -> Transition | None:
        """Open ``key`` now (a sequential detector alarmed); None when it is open already."""
        st = self.tracks.setdefault(key, TrackState())
        st.clean = 0
        if st.open_id is not None:
            return None
        st.drifting = max(st.drifting, 1)
        st.first_drift_start = window_start if st.first_drift_start is None else st.first_drift_start
        st.open_id = make_id(finding, window_start)
        st.opened_start = window_start
        return Transition(key, "open", finding, window_start)
