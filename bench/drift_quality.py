"""Data-drift detection quality: driftloop's engine and its peers on the same streams, in one run.

Streams (bench/drift_data.py): River generators whose inputs change (abrupt, gradual,
incremental), covariate shifts injected into River and bundled real data sets, concept-only
River ConceptDriftStreams (inputs unchanged: nothing for a data-drift detector to find), and
same-length no-drift controls.  Every event gets an event time so that an event-time window
of the engine's default length holds ``--window`` events (500).

Per detector: detection rate (an alarm after the drift point and no later than two windows
after it for abrupt drifts, width + two windows for gradual/incremental), median delay in
events, false alarms per million events on controls (an alarm = a window with at least one
alarm, whatever the detector), with a one-sided 95 % upper bound.

    .venv/bin/python bench/drift_quality.py [--smoke|--quick|--full]
"""

from __future__ import annotations

import common  # noqa: F401  (first: threads, telemetry, sys.path)

import math
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy import stats

import drift_data as dd
from common import EventClock, Timer, fa_upper_95, fmt, md_table, parse_args, write_results

NAME = "drift_quality"
MODEL = "bench"
VERSION = "1"


# --------------------------------------------------------------------------- results


@dataclass
class Run:
    """What one detector did on one stream: alarm positions (events seen when it alarmed)."""

    alarms: list[int]
    lo: int  # first event index processed
    hi: int  # one past the last event index processed
    seconds: float
    error: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def events(self) -> int:
        return self.hi - self.lo


def alarm_windows(alarms: list[int], window: int) -> list[int]:
    """Distinct windows (by index) holding at least one alarm; an alarm at position a is in window (a-1)//W."""
    return sorted({(a - 1) // window for a in alarms})


def score(stream: dd.Stream, run: Run, window: int) -> dict[str, Any]:
    wins = alarm_windows(run.alarms, window)
    out: dict[str, Any] = {"stream": stream.name, "scenario": stream.scenario, "kind": stream.kind,
                           "n_features": stream.n_features, "events": run.events, "alarm_windows": len(wins),
                           "seconds": round(run.seconds, 3)}
    if run.error:
        out["error"] = run.error
    if stream.drift_start is None or stream.kind == "concept_only":
        out["false_alarms"] = len(wins)
        return out
    start, end = stream.drift_start, stream.tolerance_end(window)
    hits = [a for a in run.alarms if start < a <= end]
    pre = [w for w in wins if (w + 1) * window <= start]
    late = [a for a in run.alarms if a > start]
    out.update(detected=bool(hits), delay=(hits[0] - start) if hits else None,
               first_alarm_after_start=(late[0] - start) if late else None,
               pre_drift_false_alarms=len(pre), pre_drift_events=max(0, start - run.lo))
    return out


# --------------------------------------------------------------------------- detectors


class Detector:
    name = "?"
    costly = False  # costly detectors only see a region of each stream in smoke/quick mode

    def run(self, s: dd.Stream, clock: EventClock, window: int, lo: int, hi: int) -> Run:
        raise NotImplementedError


def _codes(s: dd.Stream) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Numeric view of every feature (categorical -> integer code by reference category order)."""
    ref, cur = {}, {}
    for c in s.data.columns:
        if c in s.categorical:
            cats = sorted(set(s.reference[c]) | set(s.data[c]))
            m = {k: float(i) for i, k in enumerate(cats)}
            ref[c] = np.fromiter((m[v] for v in s.reference[c]), float, len(s.reference))
            cur[c] = np.fromiter((m[v] for v in s.data[c]), float, len(s.data))
        else:
            ref[c] = s.reference[c].to_numpy(np.float64)
            cur[c] = s.data[c].to_numpy(np.float64)
    return ref, cur


class RiverPerFeature(Detector):
    """One River detector per feature (categoricals as integer codes); an alarm in any feature is an alarm.

    Each detector first sees the last ``warm`` reference rows (alarms there are ignored)."""

    def __init__(self, name: str, factory: Callable[[], Any], warm: int, costly: bool = False) -> None:
        self.name, self.factory, self.warm, self.costly = name, factory, warm, costly

    def run(self, s, clock, window, lo, hi):
        ref, cur = _codes(s)
        alarms: set[int] = set()
        with Timer() as t:
            for c in s.data.columns:
                det = self.factory()
                for v in ref[c][-self.warm:].tolist():
                    det.update(v)
                for i, v in enumerate(cur[c][lo:hi].tolist(), start=lo):
                    det.update(v)
                    if det.drift_detected:
                        alarms.add(i + 1)
        return Run(sorted(alarms), lo, hi, t.s)


class NaiveWindow(Detector):
    """Per-feature test on each window against the reference sample, no multiple-testing control,
    no hysteresis: ``psi`` (reference-decile bins / categories, PSI > 0.1) or ``ks`` (KS p < 0.05,
    chi-square p < 0.05 for categorical)."""

    def __init__(self, test: str) -> None:
        self.test = test
        self.name = "naive PSI>0.1 per feature" if test == "psi" else "naive KS/chi2 p<0.05 per feature"

    def run(self, s, clock, window, lo, hi):
        alarms = []
        with Timer() as t:
            refs = {c: s.reference[c].to_numpy() for c in s.data.columns}
            cols = {c: s.data[c].to_numpy() for c in s.data.columns}
            for w0 in range(lo, hi, window):
                w1 = min(w0 + window, hi)
                if any(self._drift(refs[c], cols[c][w0:w1], c in s.categorical) for c in s.data.columns):
                    alarms.append(w1)
        return Run(alarms, lo, hi, t.s)

    def _drift(self, ref: np.ndarray, cur: np.ndarray, categorical: bool) -> bool:
        if self.test == "psi":
            return dd.psi(ref, cur) > 0.1
        if categorical:
            cats = sorted(set(ref.tolist()) | set(cur.tolist()))
            table = np.array([[np.sum(ref == c) for c in cats], [np.sum(cur == c) for c in cats]])
            table = table[:, table.sum(axis=0) > 0]
            if table.shape[1] < 2:
                return False
            return stats.chi2_contingency(table)[1] < 0.05
        return stats.ks_2samp(ref, cur).pvalue < 0.05


class EvidentlyPreset(Detector):
    """Evidently's DataDriftPreset (its default per-column tests) on each window vs the reference.

    One run gives two rows: ``dataset`` (Evidently's dataset drift: share of drifted columns >= 0.5)
    and ``any column`` (at least one column drifted)."""

    name = "evidently DataDriftPreset"
    costly = True

    def __init__(self) -> None:
        from evidently import Report
        from evidently.presets import DataDriftPreset

        self._report = lambda: Report([DataDriftPreset()])

    def run(self, s, clock, window, lo, hi):
        dataset, anycol = [], []
        with Timer() as t, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = self._report()
            for w0 in range(lo, hi, window):
                w1 = min(w0 + window, hi)
                snap = report.run(current_data=s.data.iloc[w0:w1], reference_data=s.reference)
                count, share = _evidently_drift(snap.dict())
                if share is not None and share >= 0.5:
                    dataset.append(w1)
                if count:
                    anycol.append(w1)
        return Run(dataset, lo, hi, t.s, notes={"any_column": Run(anycol, lo, hi, t.s)})


def _evidently_drift(d: dict) -> tuple[int, float | None]:
    for m in d.get("metrics", []):
        if m.get("metric_name", "").startswith("DriftedColumnsCount"):
            v = m.get("value") or {}
            return int(v.get("count", 0)), float(v.get("share", 0.0))
    return 0, None


class Driftloop(Detector):
    """streams.judge.engine.DriftEngine fed micro-batches of InferenceEvents; an alarm = a data_drift alert,
    placed at its window's end."""

    def __init__(self, name: str = "driftloop (default config)", config: Any = None, batch: int = 500) -> None:
        self.name, self.config, self.batch = name, config, batch

    def run(self, s, clock, window, lo, hi):
        from streams.judge.drift_config import DriftConfig
        from streams.judge.engine import DriftEngine
        from streams.judge.profile_build import build_profile

        with Timer() as t:
            prof = build_profile(s.reference, MODEL, VERSION)
            eng = DriftEngine(self.config or DriftConfig(), {(MODEL, VERSION): prof})
            alerts = []
            for b0 in range(lo, hi, self.batch):
                b1 = min(b0 + self.batch, hi)
                alerts.extend(eng.ingest(to_events(s.data.iloc[b0:b1], clock, b0)))
            alerts.extend(eng.flush())
        alarms = sorted({clock.index_of(a.window.end) for a in alerts if a.kind == "data_drift"})
        notes = {"alerts": len(alerts), "by_metric": _count(a.metric for a in alerts),
                 "features": sorted({str(a.feature) for a in alerts})[:10]}
        return Run(alarms, lo, hi, t.s, notes=notes)


def _count(xs) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in xs:
        out[x] = out.get(x, 0) + 1
    return out


def to_events(df: pd.DataFrame, clock: EventClock, start: int, model: str = MODEL, version: str = VERSION):
    from streams.contracts.events import InferenceEvent

    ts = clock.ts(start, len(df)).tolist()
    recs = df.to_dict("records")
    return [InferenceEvent(f"e{start + i}", model, version, ts[i], recs[i]) for i in range(len(recs))]


def engine_clock(window: int) -> tuple[EventClock, dict[str, Any]]:
    """Event times such that one window of the engine's default length holds ``window`` events."""
    try:
        from streams.judge.drift_config import DriftConfig

        cfg = DriftConfig()
        secs = float(cfg.window_seconds)
        info = {k: getattr(cfg, k) for k in ("window_seconds", "hop_seconds", "min_samples", "allowed_lateness_s",
                                              "open_after", "close_after") if hasattr(cfg, k)}
        for k in ("fdr_alpha", "alpha"):
            if hasattr(cfg, k):
                info[k] = getattr(cfg, k)
    except ImportError as exc:
        secs, info = 60.0, {"engine": f"not importable: {exc}"}
    return EventClock.aligned(secs, window), info


# --------------------------------------------------------------------------- regression models (labels)


def regression_stream(seed: int, n: int, drift_at: int | None, n_ref: int = 5000, factor: float = 1.5):
    """A regression model that is right on average: y = 2 x0 - x1 + N(0, 1); after ``drift_at`` the
    noise sd is ``factor`` (MAE x factor: real error drift).  Returns (ref, stream) lists of
    (features, prediction, label)."""
    rng = np.random.default_rng([seed, 404])

    def rows(k, sd):
        x = rng.normal(size=(k, 3))
        pred = 2 * x[:, 0] - x[:, 1]
        return x, np.round(pred, 2), np.round(pred + rng.normal(0, 1, k) * sd, 2)

    ref = rows(n_ref, np.ones(n_ref))
    sd = np.ones(n)
    if drift_at is not None:
        sd[drift_at:] = factor
    return ref, rows(n, sd)


def regression_rows(seeds: int, n: int, window: int, clock: EventClock) -> list[dict]:
    """driftloop (regression profile: reference loss distribution for the loss CUSUM, |error| over its 90th
    percentile for the binomial window test) vs River ADWIN on the absolute-error stream, same streams."""
    from river import drift

    from streams.judge.drift_config import DriftConfig
    from streams.judge.engine import DriftEngine
    from streams.contracts.events import LabelledExample
    from streams.judge.profile_build import build_profile

    out = []
    drift_at = n // 2
    for seed in range(seeds):
        for has_drift in (True, False):
            (rx, rp, ry), (x, p, y) = regression_stream(seed, n, drift_at if has_drift else None)
            ref = [{"features": {f"f{j}": float(rx[i, j]) for j in range(3)}, "prediction": float(rp[i]),
                    "label": float(ry[i])} for i in range(len(ry))]
            prof = build_profile(ref, MODEL, VERSION)
            ts = clock.ts(0, n)
            with Timer() as t:
                eng = DriftEngine(DriftConfig(), [prof])
                alarms = []
                for b0 in range(0, n, 500):
                    exs = [LabelledExample(f"e{i}", MODEL, VERSION, float(ts[i]), {f"f{j}": float(x[i, j]) for j in range(3)},
                                           float(y[i]), float(p[i])) for i in range(b0, min(b0 + 500, n))]
                    for a in eng.ingest_labelled(exs):
                        if a.kind == "concept_drift":
                            alarms.append(clock.index_of(a.details["detected_ts"]))
                        elif a.kind == "performance":
                            alarms.append(clock.index_of(a.window.end))
            runs = {"driftloop (regression error def.)": (sorted(alarms), t.s)}
            with Timer() as t:
                ad, al = drift.ADWIN(), []
                for i, e in enumerate(np.abs(p - y).tolist()):
                    ad.update(e)
                    if ad.drift_detected:
                        al.append(i)
            runs["River ADWIN (abs error)"] = (al, t.s)
            for name, (al, secs) in runs.items():
                before = [a for a in al if a < drift_at] if has_drift else al
                after = [a for a in al if a >= drift_at] if has_drift else []
                hit = [a for a in after if a <= drift_at + 2 * window]
                out.append({"detector": name, "seed": seed, "drift": has_drift, "events": n,
                            "false_alarms": len(before), "detected": bool(hit) if has_drift else None,
                            "delay": (after[0] - drift_at) if after else None, "seconds": round(secs, 3),
                            "reference_error_rate": prof.reference_error_rate, "tolerance": prof.labels.tolerance})
    return out


REGRESSION_SEEDS = {"smoke": 1, "quick": 5, "full": 20}


def regression_markdown(table: list[list[Any]]) -> str:
    return "### Regression models: error drift (labels)\n\n" + (
        "y = 2 x0 - x1 + N(0, sd); the model predicts 2 x0 - x1. Drift: sd 1 -> 1.5 at mid-stream (MAE x1.5); "
        "control: no change. driftloop runs its loss CUSUM on each example's |error| against the reference loss "
        "distribution (scale shift 1.3, h = cusum_h) and the binomial window test on |error| over its 90th "
        "percentile; ADWIN sees the absolute error of every event. Detection within two windows.\n\n"
        + md_table(["detector", "detected", "median delay (events)", "false alarms", "no-drift events"], table))


def regression_main(args) -> int:
    """``--regression-only``: the regression scenarios alone (same streams and peers as in the full run)."""
    W = args.window
    clock, engine_info = engine_clock(W)
    with Timer() as tr:
        rows = regression_rows(REGRESSION_SEEDS[args.mode], 20 * W, W, clock)
    table = regression_summary(rows)
    meta = {"mode": args.mode, "window": W, "engine": engine_info, "seconds": round(tr.s, 1), "git": common._git_state(),
            "command": ".venv/bin/python bench/drift_quality.py --regression-only" + ("" if args.mode == "quick" else f" --{args.mode}"),
            "written_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    md = f"# Drift quality: regression scenarios only\n\n`{meta['command']}` ({meta['written_at']}, {tr.s:.1f}s)\n\n"
    name = NAME + "_regression" + ("_full" if args.mode == "full" else "")
    jp, mp = write_results(name, {"name": name, "meta": meta, "regression": {"rows": rows, "table": table}},
                           md + regression_markdown(table), args.out_dir)
    print(mp.read_text())
    print(f"wrote {jp} and {mp}", file=sys.stderr)
    return 0


def regression_summary(rows: list[dict]) -> list[list[Any]]:
    table = []
    for name in dict.fromkeys(r["detector"] for r in rows):
        d = [r for r in rows if r["detector"] == name and r["drift"]]
        c = [r for r in rows if r["detector"] == name and not r["drift"]]
        delays = [r["delay"] for r in d if r["delay"] is not None]
        fa_events = sum(r["events"] for r in c) + sum(r["events"] // 2 for r in d)
        fa = sum(r["false_alarms"] for r in c) + sum(r["false_alarms"] for r in d)
        table.append([name, f"{sum(bool(r['detected']) for r in d)}/{len(d)}",
                      statistics.median(delays) if delays else "—", fa, f"{fa_events:,}"])
    return table


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Plan:
    seeds: int
    scenarios: tuple[str, ...] | None  # None = all
    concept_seeds: int
    controls: dict[str, int]  # family -> events
    costly_scenarios: tuple[str, ...]  # costly detectors run on seed 0 of these only
    costly_control_events: int
    costly_pre_windows: int = 1
    costly_max_events: int | None = None  # cap on a costly detector's region (smoke)
    pre_windows: float = 8.5  # windows before the drift point
    post_windows: int = 4  # windows after start + width


#: The streams costly peers (KSWIN per feature, Evidently per window) see in quick mode (seed 0 only).
COSTLY_SCENARIOS = ("rbf_switch/abrupt", "hyperplane_mean_shift/abrupt", "breast_cancer_category/abrupt")

PLANS = {
    "smoke": Plan(1, ("rbf_switch/abrupt", "breast_cancer_category/abrupt"), 0,
                  {"hyperplane20": 2_000}, ("rbf_switch/abrupt",), 0, costly_pre_windows=0, costly_max_events=100,
                  pre_windows=2.5, post_windows=2),
    "quick": Plan(2, None, 1, {"rbf20": 50_000, "hyperplane20": 50_000, "breast_cancer": 50_000,
                               "segments": 20_000, "agrawal": 20_000, "ties": 50_000, "ties_float32": 50_000,
                               "ties_float16": 50_000}, COSTLY_SCENARIOS, 500,
                  costly_pre_windows=0, costly_max_events=1_500),
    "full": Plan(10, None, 3, {"rbf20": 1_000_000, "hyperplane20": 1_000_000, "breast_cancer": 1_000_000,
                               "segments": 200_000, "agrawal": 200_000, "ties": 1_000_000,
                  "ties_float32": 1_000_000, "ties_float16": 1_000_000},
                 tuple(n for n, _ in dd.drift_scenarios()), 5_000),
}


def detectors(mode: str, extra_engine_configs: dict[str, Any]) -> tuple[list[Detector], list[str]]:
    from river import drift

    dets: list[Detector] = [Driftloop()]
    for name, cfg in extra_engine_configs.items():
        dets.append(Driftloop(name, cfg))
    dets += [
        RiverPerFeature("River ADWIN per feature", lambda: drift.ADWIN(), warm=1000),
        RiverPerFeature("River PageHinkley per feature", lambda: drift.PageHinkley(), warm=1000),
        RiverPerFeature("River KSWIN per feature", lambda: drift.KSWIN(seed=1), warm=100, costly=True),
        NaiveWindow("psi"),
        NaiveWindow("ks"),
    ]
    skipped = []
    try:
        dets.append(EvidentlyPreset())
    except Exception as exc:  # reported in the results, not fatal
        skipped.append(f"evidently: {exc!r}")
    return dets, skipped


def region(det: Detector, s: dd.Stream, window: int, plan: Plan, scenario: str, seed: int) -> tuple[int, int] | None:
    """Which events a detector sees: all, or for costly detectors a region around the drift (None = skip)."""
    if not det.costly:
        return 0, s.n
    if s.kind == "none":
        return (0, min(s.n, plan.costly_control_events)) if plan.costly_control_events else None
    cap = plan.costly_max_events or s.n
    if s.kind == "concept_only" or seed != 0 or scenario not in plan.costly_scenarios:
        return None
    lo = max(0, (s.drift_start // window - plan.costly_pre_windows) * window)
    hi = min(s.n, math.ceil(s.tolerance_end(window) / window) * window, lo + cap)
    return lo, hi


# --------------------------------------------------------------------------- summary


def summarise(rows: list[dict], det_names: list[str], window: int) -> dict[str, dict]:
    out = {}
    for name in det_names:
        r = [x for x in rows if x["detector"] == name]
        drift = [x for x in r if "detected" in x]
        ab = [x for x in drift if x["kind"] == "abrupt"]
        gr = [x for x in drift if x["kind"] in ("gradual", "incremental")]
        delays = [x["delay"] for x in drift if x["delay"] is not None]
        ctl = [x for x in r if x["kind"] == "none"]
        ctl20 = [x for x in ctl if x["n_features"] >= 20]
        co = [x for x in r if x["kind"] == "concept_only"]

        def rate(xs):
            return (sum(x["detected"] for x in xs), len(xs))

        def fam(xs):
            fa = sum(x["false_alarms"] for x in xs)
            ev = sum(x["events"] for x in xs)
            return {"false_alarms": fa, "events": ev, "per_million": (fa / ev * 1e6) if ev else None,
                    "upper95_per_million": fa_upper_95(fa, ev)}

        pre_fa = sum(x["pre_drift_false_alarms"] for x in drift)
        pre_ev = sum(x["pre_drift_events"] for x in drift)
        out[name] = {
            "abrupt": rate(ab), "gradual": rate(gr), "all": rate(drift),
            "median_delay": statistics.median(delays) if delays else None,
            "controls_ge20": fam(ctl20), "controls_all": fam(ctl), "concept_only": fam(co),
            "pre_drift": {"false_alarms": pre_fa, "events": pre_ev,
                          "per_million": (pre_fa / pre_ev * 1e6) if pre_ev else None},
            "seconds": round(sum(x["seconds"] for x in r), 2),
            "events": sum(x["events"] for x in r),
            "errors": sorted({x["error"] for x in r if x.get("error")}),
        }
    return out


def _pct(t: tuple[int, int]) -> str:
    k, n = t
    return "—" if n == 0 else f"{k}/{n} ({100.0 * k / n:.0f}%)"


def markdown(summary: dict, rows: list[dict], meta: dict) -> str:
    lines = [f"# drift_quality ({meta['mode']}{', subset of detectors' if meta.get('only') else ''})", "",
             f"Command: `{meta['command']}`  ", f"Window: {meta['window']} events per event-time window "
             f"(engine window {meta['engine'].get('window_seconds', '?')} s); written {meta['written_at']}; "
             f"run took {meta['seconds']:.0f} s; checkout {meta['git']['commit']}"
             f"{' with uncommitted changes in streams/' if meta['git']['streams_dirty'] else ''}.", "",
             "Detected = an alarm after the drift point and at most two windows after it (abrupt), "
             "or width + two windows (gradual / incremental). False alarms are counted as windows with "
             "an alarm; controls ≥ 20 features carry the goal (≤ 1 per million events). "
             "Costly peers (KSWIN, Evidently) see only a region of some streams: see `events`.", ""]
    head = ["detector", "abrupt detected", "gradual detected", "median delay (events)",
            "FA/M controls ≥20 f. (95% upper)", "FA/M all controls", "FA/M concept-only", "FA/M pre-drift",
            "events", "seconds"]
    body = []
    for name, s in summary.items():
        c20 = s["controls_ge20"]
        body.append([name, _pct(s["abrupt"]), _pct(s["gradual"]), s["median_delay"],
                     f"{fmt(c20['per_million'])} ({fmt(c20['upper95_per_million'])}) [{c20['false_alarms']} in {fmt(c20['events'])}]",
                     s["controls_all"]["per_million"], s["concept_only"]["per_million"], s["pre_drift"]["per_million"],
                     s["events"], s["seconds"]])
    lines += [md_table(head, body), ""]
    g = meta.get("goals")
    if g:
        lines += ["## Goals (driftloop, default config)", "", md_table(["goal", "measured", "met"], g), ""]
    # per-scenario detection
    scen = sorted({(x["scenario"], x["kind"]) for x in rows if "detected" in x})
    dets = list(summary)
    body = []
    for sc, kind in scen:
        row = [f"{sc}/{kind}"]
        for d in dets:
            xs = [x for x in rows if x["detector"] == d and x["scenario"] == sc and x["kind"] == kind and "detected" in x]
            if not xs:
                row.append("—")
                continue
            k = sum(x["detected"] for x in xs)
            ds = [x["delay"] for x in xs if x["delay"] is not None]
            row.append(f"{k}/{len(xs)}" + (f" · {statistics.median(ds):.0f}" if ds else ""))
        body.append(row)
    lines += ["## Per scenario: detected/streams · median delay (events)", "", md_table(["scenario"] + dets, body), ""]
    lines += ["## Streams", "", md_table(["scenario", "kind", "source", "features", "changed (PSI, fully drifted)", "note"],
                                         meta["stream_table"]), ""]
    if meta.get("skipped"):
        lines += ["Skipped: " + "; ".join(meta["skipped"]), ""]
    return "\n".join(lines)


def goals(summary: dict, name: str) -> list[list[Any]]:
    s = summary.get(name)
    if not s:
        return []
    ab, gr, c20 = s["abrupt"], s["gradual"], s["controls_ge20"]
    rows = []
    if ab[1]:
        rows.append(["≥ 95% of abrupt drifts within two windows", _pct(ab), ab[0] / ab[1] >= 0.95])
    if gr[1]:
        rows.append(["gradual within width + two windows (taken as ≥ 95%)", _pct(gr), gr[0] / gr[1] >= 0.95])
    if c20["events"]:
        met = c20["per_million"] <= 1.0
        proven = c20["upper95_per_million"] <= 1.0
        rows.append(["≤ 1 false alarm per million events, controls ≥ 20 features",
                     f"{fmt(c20['per_million'])} per M ({c20['false_alarms']} in {fmt(c20['events'])} events; "
                     f"95% upper {fmt(c20['upper95_per_million'])})",
                     "yes" if (met and proven) else ("not refuted (too few events to prove)" if met else "no")])
    return rows


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv, extra=[
        (("--window",), {"type": int, "default": 500, "help": "events per event-time window (default 500)"}),
        (("--only",), {"default": None, "help": "comma-separated detector name substrings to run"}),
        (("--regression-only",), {"action": "store_true",
                                   "help": "run the regression scenarios only (writes drift_quality_regression[_full])"}),
    ])
    if args.regression_only:
        return regression_main(args)
    plan = PLANS[args.mode]
    t_start = time.perf_counter()
    W = args.window
    lay = dd.Layout(window=W, pre_windows=plan.pre_windows, post_windows=plan.post_windows)
    clock, engine_info = engine_clock(W)
    dets, skipped = detectors(args.mode, {})
    if args.only:
        keys = [k.strip().lower() for k in args.only.split(",")]
        dets = [d for d in dets if any(k in d.name.lower() for k in keys)]

    streams: list[tuple[str, int, Callable[[], dd.Stream]]] = []
    for name, build in dd.drift_scenarios():
        if plan.scenarios is None or name in plan.scenarios:
            for seed in range(plan.seeds):
                streams.append((name, seed, lambda b=build, s=seed: b(args.seed + s, lay)))
    for name, build in dd.concept_only_scenarios():
        for seed in range(plan.concept_seeds):
            streams.append((name, seed, lambda b=build, s=seed: b(args.seed + s, lay)))
    for fam, n in plan.controls.items():
        streams.append((f"control_{fam}", 0, lambda f=fam, n=n: dd.control(f, args.seed, n, lay.n_reference)))

    rows: list[dict] = []
    stream_table: dict[str, list] = {}
    gen_seconds = 0.0
    for scen, seed, build in streams:
        with Timer() as tg:
            s = build()
        gen_seconds += tg.s
        key = f"{s.scenario}/{s.kind}"
        if key not in stream_table:
            mag = dd.magnitude(s)
            ch = ", ".join(f"{k} {v:.2f}" for k, v in list(mag.items())[:4]) + (" …" if len(mag) > 4 else "")
            stream_table[key] = [s.scenario, s.kind, s.source, s.n_features, ch or "—", s.note]
        for det in dets:
            reg = region(det, s, W, plan, scen, seed)
            if reg is None:
                continue
            try:
                run = det.run(s, clock, W, *reg)
            except Exception as exc:  # a failing detector is a result, not a crash of the bench
                run = Run([], reg[0], reg[0], 0.0, error=f"{exc.__class__.__name__}: {exc}"[:300])
            r = score(s, run, W)
            r["detector"] = det.name
            rows.append(r)
            if "any_column" in run.notes:
                r2 = score(s, run.notes["any_column"], W)
                r2["detector"] = "evidently DataDriftPreset (any column)"
                r["detector"] = "evidently DataDriftPreset (dataset drift)"
                rows.append(r2)
            if run.notes and "alerts" in run.notes:
                r["engine_alerts"] = run.notes
        print(f"[{time.perf_counter() - t_start:6.1f}s] {s.name} n={s.n}", file=sys.stderr, flush=True)

    with Timer() as tr:
        reg_rows = regression_rows(REGRESSION_SEEDS[args.mode], 20 * W, W, clock)
    reg_table = regression_summary(reg_rows)
    print(f"[{time.perf_counter() - t_start:6.1f}s] regression error drift ({tr.s:.1f}s)", file=sys.stderr, flush=True)
    det_names = list(dict.fromkeys(r["detector"] for r in rows))
    summary = summarise(rows, det_names, W)
    meta = {"mode": args.mode, "window": W, "engine": engine_info, "seconds": time.perf_counter() - t_start,
            "generation_seconds": round(gen_seconds, 1),
            "command": ".venv/bin/python bench/drift_quality.py" + ("" if args.mode == "quick" else f" --{args.mode}"),
            "written_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "skipped": skipped,
            "stream_table": list(stream_table.values()), "plan": plan.__dict__, "only": args.only,
            "git": common._git_state()}
    meta["goals"] = goals(summary, "driftloop (default config)")
    payload = {"name": NAME, "meta": meta, "summary": summary, "rows": rows,
               "regression": {"rows": reg_rows, "table": reg_table}}
    name = NAME + ("_full" if args.mode == "full" else "")  # a full run does not replace the quick table
    if args.only:  # a subset of detectors does not overwrite the full table
        name = f"{NAME}_{args.mode}_only_" + "_".join("".join(ch for ch in k.lower() if ch.isalnum()) for k in args.only.split(","))
        meta["command"] += f" --only {args.only}"
    md = markdown(summary, rows, meta) + "\n\n" + regression_markdown(reg_table)
    jp, mp = write_results(name, payload, md, args.out_dir)
    print(mp.read_text())
    print(f"wrote {jp} and {mp}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
