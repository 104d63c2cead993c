"""The run report's figures, computed from a run directory (pure: no Kafka, Faust or Ray).

- Drift scores per (model, version, kind, feature) and window: the inputs (and labels) replayed
  through the same :class:`streams.judge.engine.DriftEngine` path as ``driftloop backtest``
  (:func:`streams.cli.backtest.replay`: dedupe by event id, the shared reference bootstrap rule,
  the run's reference profiles when given), read off every judged data window through
  ``engine.window_observer``.  Windows the engine does not judge (too few events, the reference's
  own period) have no score.
- Live accuracy per served version and window: inputs joined to labels by ``event_id`` (first
  input of an id, last label), ``prediction == label``, windows of ``run.json``'s ``window_seconds``
  by the input's event time.
- Hot-swap moments: a model update is placed at the event time of the first input served by its
  version (after the previous version was first served, for a rollback); a served version without
  an update record is marked too, as "first served".
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.judge.drift_config import DriftConfig
from streams.report.rundir import (
    ALERTS, GATE_REPORTS, INPUTS, LABELS, MODEL_UPDATES, RETRAIN_REQUESTS, RETRAIN_RESULTS, HOW_TO_MAKE,
    JsonLines, RunDirError, RunInfo, read_jsonl, read_run_info,
)

SCORE_METRICS = ("psi", "js", "ks", "wasserstein", "missing_delta")


@dataclass
class DriftSeries:
    """One feature's drift scores over the judged windows of one (model, version)."""

    model: str
    version: str
    kind: str  # data_drift | prediction_drift
    feature: str
    start: list[float] = field(default_factory=list)  # event-time seconds
    end: list[float] = field(default_factory=list)
    n: list[int] = field(default_factory=list)
    metrics: list[dict[str, float]] = field(default_factory=list)  # psi, js, ks, wasserstein, ..., p_value

    def values(self, metric: str = "psi") -> list[float]:
        """The metric per window (NaN where this feature's test does not give it)."""
        return [math.nan if m.get(metric) is None else float(m[metric]) for m in self.metrics]


@dataclass
class AccuracySeries:
    """Live accuracy of one served (model, version) per window."""

    model: str
    version: str
    start: list[float] = field(default_factory=list)
    end: list[float] = field(default_factory=list)
    n: list[int] = field(default_factory=list)
    correct: list[int] = field(default_factory=list)

    @property
    def accuracy(self) -> list[float]:
        return [c / n if n else math.nan for c, n in zip(self.correct, self.n)]


@dataclass(frozen=True)
class SwapMark:
    """A served version changing: a model update placed in event time, or a version first served without one."""

    model: str
    version: str
    previous_version: str | None
    action: str  # "promote" | "rollback" | ... | "first served"
    ts: float | None  # event time; None: the version was never served in the inputs
    at: float | None = None  # the update's wall-clock time


@dataclass
class RunReport:
    """Everything the page shows."""

    run_dir: Path
    info: RunInfo
    config: DriftConfig
    drift: list[DriftSeries]
    accuracy: list[AccuracySeries]
    swaps: list[SwapMark]
    files: dict[str, JsonLines]  # alerts, retrain requests/results, model updates, gate reports
    inputs_read: int = 0
    inputs_bad: int = 0
    labels_read: int = 0
    labels_bad: int = 0
    joined: int = 0
    duplicate_inputs: int = 0
    t0: float = 0.0  # event time the plots count from
    notes: list[str] = field(default_factory=list)
    engine_summary: dict[str, Any] = field(default_factory=dict)

    def records(self, name: str) -> list[dict[str, Any]]:
        f = self.files.get(name)
        return f.records if f else []

    def series(self, feature: str, version: str | None = None, kind: str | None = None) -> list[DriftSeries]:
        return [s for s in self.drift if s.feature == feature and (version is None or s.version == version)
                and (kind is None or s.kind == kind)]


def _same(pred: Any, label: Any) -> bool:
    """prediction == label, numbers compared as numbers (1 == 1.0 == "1"), anything else as text."""
    try:
        return float(pred) == float(label)
    except (TypeError, ValueError):
        return str(pred) == str(label)


def _lines(n: int) -> str:
    return f"{n} bad line" + ("" if n == 1 else "s")


def _read_events(path: Path, parse) -> tuple[list, int, str | None]:
    """Validated records of a .jsonl file with the project's validator, the bad count and the first error."""
    from streams.contracts.events import InvalidRecord

    out, bad, first = [], 0, None
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                out.append(parse(raw))
            except InvalidRecord as exc:
                bad += 1
                first = first or f"line {lineno}: {exc.reason}: {exc}"
    return out, bad, first


def accuracy_series(inputs: list, labels: dict[str, Any], window_seconds: float) -> tuple[list[AccuracySeries], int]:
    """Per (model, version): windows of the inputs' event time, labelled examples and correct ones; and the join count."""
    acc: dict[tuple[str, str], dict[float, list[int]]] = defaultdict(dict)
    seen: set[str] = set()
    joined = 0
    for e in inputs:
        if e.event_id in seen:
            continue
        seen.add(e.event_id)
        lab = labels.get(e.event_id)
        if lab is None or e.prediction is None or lab.model != e.model:
            continue
        if lab.model_version is not None and lab.model_version != e.model_version:
            continue
        joined += 1
        start = math.floor(e.ts / window_seconds) * window_seconds
        cell = acc[(e.model, e.model_version)].setdefault(start, [0, 0])
        cell[0] += 1
        cell[1] += _same(e.prediction, lab.label)
    out = []
    for (model, version), cells in sorted(acc.items()):
        s = AccuracySeries(model, version)
        for start in sorted(cells):
            s.start.append(start)
            s.end.append(start + window_seconds)
            s.n.append(cells[start][0])
            s.correct.append(cells[start][1])
        out.append(s)
    return out, joined


def swap_marks(inputs: list, updates: list[dict[str, Any]]) -> tuple[list[SwapMark], list[str]]:
    """Hot-swap moments in event time (see the module docstring), and notes on updates that cannot be placed."""
    first: dict[tuple[str, str], list[float]] = defaultdict(list)  # (model, version) -> sorted event times
    for e in inputs:
        first[(e.model, e.model_version)].append(e.ts)
    for ts in first.values():
        ts.sort()
    starts = {k: v[0] for k, v in first.items()}
    marks, notes, placed = [], [], set()
    for u in updates:
        model, version = str(u.get("model", "")), str(u.get("version", ""))
        prev = None if u.get("previous_version") is None else str(u["previous_version"])
        action = str(u.get("action", "update"))
        served = first.get((model, version), [])
        after = starts.get((model, prev), -math.inf) if action == "rollback" and prev is not None else -math.inf
        ts = next((t for t in served if t >= after), None)
        if ts is None and isinstance(u.get("ts"), (int, float)):
            ts = float(u["ts"])
        if ts is None:
            notes.append(f"model update {model} v{version} ({action}) is not placed on the plots: "
                         "no input was served by that version")
        at = u.get("at")
        marks.append(SwapMark(model, version, prev, action, ts, float(at) if isinstance(at, (int, float)) else None))
        placed.add((model, version))
    by_model: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for (model, version), t in starts.items():
        by_model[model].append((t, version))
    for model, vs in by_model.items():
        vs.sort()
        for i, (t, version) in enumerate(vs[1:], 1):  # the first version of a model was serving at the start
            if (model, version) not in placed:
                marks.append(SwapMark(model, version, vs[i - 1][1], "first served", t))
    marks.sort(key=lambda m: (math.inf if m.ts is None else m.ts, m.version))
    return marks, notes


def _profiles(run_dir: Path, info: RunInfo, notes: list[str]) -> list:
    from streams.judge.profile import ReferenceProfile

    out = []
    for rel in info.reference_profiles:
        path = run_dir / rel
        try:
            out.append(ReferenceProfile.load(path))
        except Exception as exc:  # a broken profile is a note; that version's reference is bootstrapped
            notes.append(f"reference profile {rel} could not be read ({exc}); its version's reference is "
                         "bootstrapped from its first events instead")
    return out


def build_report(run_dir: str | Path, config: DriftConfig | None = None) -> RunReport:
    """Read a run directory and compute the page's series.  ``config``: the drift section to judge with
    (default: the embedded defaults); its window length is always ``run.json``'s ``window_seconds``.

    Raises :class:`RunDirError` when run_dir, run.json or inputs.jsonl is missing or run.json is unusable."""
    from streams.cli.backtest import replay
    from streams.contracts.validate import parse_input, parse_label

    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    inputs_path = run_dir / INPUTS
    if not inputs_path.is_file():
        raise RunDirError(f"{inputs_path} is missing: a run directory holds the inference inputs as published; {HOW_TO_MAKE}")
    config = dataclasses.replace(config or DriftConfig(), window_seconds=info.window_seconds, hop_seconds=None)
    notes: list[str] = []
    inputs, inputs_bad, first_bad = _read_events(inputs_path, lambda r: parse_input(r, max_future_s=None))
    if inputs_bad:
        notes.append(f"{INPUTS}: {_lines(inputs_bad)} skipped (first: {first_bad})")
    labels_path = run_dir / LABELS
    labels: dict[str, Any] = {}
    labels_bad = 0
    if labels_path.is_file():
        labs, labels_bad, first_bad = _read_events(labels_path, lambda r: parse_label(r, max_future_s=None))
        labels = {lab.event_id: lab for lab in labs}
        if labels_bad:
            notes.append(f"{LABELS}: {_lines(labels_bad)} skipped (first: {first_bad})")
    files = {name: read_jsonl(run_dir / name) for name in
             (ALERTS, RETRAIN_REQUESTS, RETRAIN_RESULTS, MODEL_UPDATES, GATE_REPORTS)}
    for f in files.values():
        if f.bad:
            notes.append(f"{f.name}: {_lines(f.bad)} skipped (first: {f.first_error})")

    windows: dict[tuple[str, str, str, str], DriftSeries] = {}

    def observe(key, n: int, by_kind: dict[str, list]) -> None:
        for kind, tests in by_kind.items():
            for t in tests:
                k = (key.model, key.model_version, kind, str(t.feature))
                s = windows.setdefault(k, DriftSeries(key.model, key.model_version, kind, str(t.feature)))
                s.start.append(float(key.start))
                s.end.append(float(key.end))
                s.n.append(int(n))
                s.metrics.append({**{m: float(v) for m, v in t.metrics.items() if isinstance(v, (int, float))},
                                  "p_value": float(t.p_value)})

    err = io.StringIO()
    summary = replay(inputs_path, io.StringIO(), config, _profiles(run_dir, info, notes),
                     labels_path if labels_path.is_file() else None, err=err, progress=False, observer=observe)
    for line in err.getvalue().splitlines():
        if "skipped (" not in line and "more bad lines" not in line:  # bad lines are counted above
            notes.append(f"drift engine: {line}")
    accuracy, joined = accuracy_series(inputs, labels, info.window_seconds)
    swaps, swap_notes = swap_marks(inputs, files[MODEL_UPDATES].records)
    notes += swap_notes
    times = [e.ts for e in inputs] + [p.start for p in info.phases]
    return RunReport(
        run_dir=run_dir, info=info, config=config,
        drift=sorted(windows.values(), key=lambda s: (s.model, s.version, s.kind, s.feature)),
        accuracy=accuracy, swaps=swaps, files=files, inputs_read=len(inputs), inputs_bad=inputs_bad,
        labels_read=len(labels), labels_bad=labels_bad, joined=joined,
        duplicate_inputs=int(summary.get("duplicate_events", 0)), t0=min(times) if times else 0.0,
        notes=notes, engine_summary=summary,
    )
