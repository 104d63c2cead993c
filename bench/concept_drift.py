"""Concept drift on a frozen classifier's 0/1 error stream: driftloop's engine vs River and frouros.

For each River generator family, a classifier (scikit-learn HistGradientBoosting) is trained on
pre-drift data and frozen.  A stream of labelled examples follows: ``pre`` events of the old
concept, then the new concept (abrupt switch, or a linear mix over ``width`` events); controls
keep the old concept.  Every detector sees the same error stream (prediction != label):

- driftloop: ``DriftEngine.ingest_labelled`` with a reference profile built from held-out
  pre-drift data with predictions and labels (reference error rate); alarms are its
  ``concept_drift`` alerts (at ``details.detected_ts``) and ``performance`` alerts (at the end
  of their window).  ``ingest_labelled`` is the worker's path (label windows carry their error
  sequence; judging a window feeds it to the concept detectors), so this measures what the
  worker runs;
- driftloop [adwin]: the same engine with ``concept_detectors: [adwin]`` (concept alerts only):
  River's ADWIN as the engine runs it (restarted after an alarm, rebuilt from the last
  ``river_history`` errors), to compare with plain River ADWIN;
- River ADWIN, PageHinkley (on the 0/1 values), DDM, EDDM, HDDM_A, HDDM_W (river.drift.binary);
- frouros CUSUM and PageHinkley (default configs, reset after each alarm).

Detection: the first alarm after the drift start and no later than start + width + ``--horizon``
events (default 2,500 = five windows of 500).  Delay: alarm position - drift start.
False alarms: alarms before the drift start in drift streams, and every alarm on controls
(counted as windows of 500 events with an alarm, like drift_quality).

    .venv/bin/python bench/concept_drift.py [--smoke|--quick|--full]
"""

from __future__ import annotations

import common  # noqa: F401  (first: threads, telemetry, sys.path)

import itertools
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

import drift_data as dd
from common import EventClock, Timer, fa_upper_95, fmt, md_table, parse_args, write_results

NAME = "concept_drift"
MODEL = "bench-clf"
VERSION = "1"


# --------------------------------------------------------------------------- data


def _sea(v):
    from river.datasets import synth

    return lambda seed: synth.SEA(variant=v, seed=seed)


def _agrawal(f):
    from river.datasets import synth

    return lambda seed: synth.Agrawal(classification_function=f, seed=seed)


def _stagger(f):
    from river.datasets import synth

    return lambda seed: synth.STAGGER(classification_function=f, seed=seed)


def _hyperplane():
    from river.datasets import synth

    return lambda seed: synth.Hyperplane(seed=seed, n_features=10, noise_percentage=0.05)


#: family -> (old concept, new concept); each is seed -> River generator.  Hyperplane's seed draws
#: its weights, so another seed is another concept over the same (uniform) inputs.
FAMILIES: dict[str, tuple[Callable, Callable, str]] = {
    "sea_0_to_1": (_sea(0), _sea(1), "SEA variant 0 -> 1 (threshold 8 -> 9)"),
    "sea_0_to_3": (_sea(0), _sea(3), "SEA variant 0 -> 3 (threshold 8 -> 9.5)"),
    "agrawal_0_to_2": (_agrawal(0), _agrawal(2), "Agrawal function 0 -> 2"),
    "hyperplane_switch": (_hyperplane(), _hyperplane(), "Hyperplane(10 features, 5% noise) weights redrawn"),
    "stagger_0_to_1": (_stagger(0), _stagger(1), "STAGGER function 0 -> 1"),
}


@dataclass
class ErrorStream:
    name: str
    family: str
    kind: str  # abrupt | gradual | none
    features: pd.DataFrame
    labels: np.ndarray
    predictions: np.ndarray
    errors: np.ndarray  # int8 0/1
    reference: pd.DataFrame  # held-out pre-drift rows with prediction and label columns
    drift_start: int | None
    width: int
    pre_error: float
    post_error: float | None

    @property
    def n(self) -> int:
        return len(self.errors)


def _take(it, n: int) -> tuple[list[dict], list[Any]]:
    xs, ys = [], []
    for x, y in itertools.islice(it, n):
        xs.append(x)
        ys.append(y)
    return xs, ys


def _frame(xs: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame.from_records(xs)
    df.columns = [f"x{c}" if isinstance(c, (int, np.integer)) else str(c) for c in df.columns]
    return df.astype(np.float64)


def make_stream(family: str, kind: str, seed: int, n_train: int, n_ref: int, start: int, width: int, n: int,
                model_cache: dict) -> ErrorStream:
    """Old concept from one generator instance: train | reference | stream; the new concept from another."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    old, new, _ = FAMILIES[family]
    g0 = iter(old(seed))
    xtr, ytr = _take(g0, n_train)
    key = (family, seed)
    if key not in model_cache:
        model_cache[key] = HistGradientBoostingClassifier(max_iter=100, random_state=0).fit(_frame(xtr), np.asarray(ytr))
    clf = model_cache[key]
    xref, yref = _take(g0, n_ref)
    if kind == "none":
        xs, ys = _take(g0, n)
        drift_start = None
    else:
        g1 = iter(new(seed + 7919))
        rng = np.random.default_rng(seed + 17)
        i = np.arange(n)
        p = (i >= start).astype(float) if width <= 0 else np.clip((i - start) / width, 0, 1)
        from_new = rng.random(n) < p
        xs, ys = [], []
        for flag in from_new:
            x, y = next(g1) if flag else next(g0)
            xs.append(x)
            ys.append(y)
        drift_start = start
    X, Xref = _frame(xs), _frame(xref)
    y, yr = np.asarray(ys).astype(int), np.asarray(yref).astype(int)
    pred, pref = clf.predict(X).astype(int), clf.predict(Xref).astype(int)
    errors = (pred != y).astype(np.int8)
    ref = Xref.copy()
    ref["prediction"] = pref
    ref["label"] = yr
    post = None
    if drift_start is not None:
        post = float(errors[drift_start + width:].mean())
    pre = float(errors[: drift_start].mean()) if drift_start is not None else float(errors.mean())
    return ErrorStream(f"{family}/{kind}/s{seed}", family, kind, X, y, pred, errors, ref, drift_start, width, pre, post)


# --------------------------------------------------------------------------- detectors


class RiverDet:
    def __init__(self, name: str, factory: Callable[[], Any], binary: bool) -> None:
        self.name, self.factory, self.binary = name, factory, binary

    def run(self, s: ErrorStream, clock: EventClock) -> tuple[list[int], float]:
        det = self.factory()
        alarms = []
        vals = [bool(v) for v in s.errors.tolist()] if self.binary else [float(v) for v in s.errors.tolist()]
        with Timer() as t:
            for i, v in enumerate(vals):
                det.update(v)
                if det.drift_detected:
                    alarms.append(i + 1)
        return alarms, t.s


class FrourosDet:
    def __init__(self, name: str, factory: Callable[[], Any]) -> None:
        self.name, self.factory = name, factory

    def run(self, s: ErrorStream, clock: EventClock) -> tuple[list[int], float]:
        det = self.factory()
        alarms = []
        vals = s.errors.tolist()
        with Timer() as t:
            for i, v in enumerate(vals):
                det.update(value=v)
                if det.drift:
                    alarms.append(i + 1)
                    det.reset()
        return alarms, t.s


class DriftloopConcept:
    """DriftEngine.ingest_labelled on micro-batches of LabelledExamples (features, prediction, label)."""

    def __init__(self, name: str = "driftloop (default config)", config: Any = None, batch: int = 500,
                 kinds: tuple[str, ...] = ("concept_drift", "performance")) -> None:
        self.name, self.config, self.batch, self.kinds = name, config, batch, kinds

    def run(self, s: ErrorStream, clock: EventClock) -> tuple[list[int], float]:
        from streams.judge.drift_config import DriftConfig
        from streams.judge.engine import DriftEngine
        from streams.contracts.events import LabelledExample
        from streams.judge.profile_build import build_profile

        recs = s.features.to_dict("records")
        ts = clock.ts(0, s.n).tolist()
        preds, labels = s.predictions.tolist(), s.labels.tolist()
        exs = [LabelledExample(f"e{i}", MODEL, VERSION, ts[i], recs[i], float(labels[i]), float(preds[i]))
               for i in range(s.n)]
        with Timer() as t:
            prof = build_profile(s.reference, MODEL, VERSION, label_column="label", prediction_column="prediction")
            eng = DriftEngine(self.config or DriftConfig(), {(MODEL, VERSION): prof})
            alerts = []
            for b0 in range(0, s.n, self.batch):
                alerts += eng.ingest_labelled(exs[b0:b0 + self.batch])
            alerts += eng.flush()
        alarms = []
        for a in alerts:
            if a.kind not in self.kinds:
                continue
            at = a.details.get("detected_ts") if a.details else None
            # detected_ts is an event's time: the alarm is raised once that event is seen (+1)
            alarms.append(clock.index_of(at - clock.dt / 2) + 1 if at is not None else clock.index_of(a.window.end))
        return sorted(alarms), t.s


def detectors(extra: dict[str, Any]) -> tuple[list[Any], list[str]]:
    from river import drift
    from river.drift import binary

    from streams.judge.drift_config import DriftConfig

    dets: list[Any] = [DriftloopConcept(),
                       DriftloopConcept("driftloop [adwin]", DriftConfig(concept_detectors=("adwin",)), kinds=("concept_drift",))]
    for name, cfg in extra.items():
        dets.append(DriftloopConcept(name, cfg))
    dets += [
        RiverDet("River ADWIN", lambda: drift.ADWIN(), binary=False),
        RiverDet("River PageHinkley", lambda: drift.PageHinkley(), binary=False),
        RiverDet("River DDM", lambda: binary.DDM(), binary=True),
        RiverDet("River EDDM", lambda: binary.EDDM(), binary=True),
        RiverDet("River HDDM_A", lambda: binary.HDDM_A(), binary=True),
        RiverDet("River HDDM_W", lambda: binary.HDDM_W(), binary=True),
    ]
    skipped = []
    try:
        from frouros.detectors.concept_drift import CUSUM, PageHinkley

        dets += [FrourosDet("frouros CUSUM", lambda: CUSUM()), FrourosDet("frouros PageHinkley", lambda: PageHinkley())]
    except Exception as exc:
        skipped.append(f"frouros: {exc!r}")
    return dets, skipped


# --------------------------------------------------------------------------- plan, scoring, report


@dataclass(frozen=True)
class Plan:
    families: tuple[str, ...]
    kinds: tuple[str, ...]
    seeds: int
    control_seeds: int
    control_events: int
    start: int = 5250
    width: int = 1000
    post: int = 5000
    n_train: int = 5000
    n_ref: int = 5000


PLANS = {
    "smoke": Plan(("sea_0_to_3",), ("abrupt",), 1, 1, 2_000, start=1250, post=1500, n_train=1000, n_ref=1000),
    "quick": Plan(tuple(FAMILIES), ("abrupt", "gradual"), 3, 2, 20_000),
    "full": Plan(tuple(FAMILIES), ("abrupt", "gradual"), 10, 10, 100_000),
}


def score(s: ErrorStream, alarms: list[int], window: int, horizon: int) -> dict[str, Any]:
    wins = sorted({(a - 1) // window for a in alarms})
    r: dict[str, Any] = {"stream": s.name, "family": s.family, "kind": s.kind, "events": s.n,
                         "pre_error": round(s.pre_error, 4), "post_error": None if s.post_error is None else round(s.post_error, 4)}
    if s.drift_start is None:
        r["false_alarms"] = len(wins)
        return r
    end = s.drift_start + s.width + horizon
    hits = [a for a in alarms if s.drift_start < a <= end]
    r.update(detected=bool(hits), delay=(hits[0] - s.drift_start) if hits else None,
             pre_drift_false_alarms=len([w for w in wins if (w + 1) * window <= s.drift_start]),
             pre_drift_events=s.drift_start)
    return r


def summarise(rows: list[dict]) -> dict[str, dict]:
    out = {}
    for name in dict.fromkeys(r["detector"] for r in rows):
        r = [x for x in rows if x["detector"] == name]
        dr = [x for x in r if "detected" in x]
        ctl = [x for x in r if x["kind"] == "none"]
        delays = [x["delay"] for x in dr if x["delay"] is not None]
        ab = [x["delay"] for x in dr if x["kind"] == "abrupt" and x["delay"] is not None]
        fa = sum(x["false_alarms"] for x in ctl)
        ev = sum(x["events"] for x in ctl)
        pre = sum(x["pre_drift_false_alarms"] for x in dr)
        pre_ev = sum(x["pre_drift_events"] for x in dr)
        out[name] = {
            "detected": (sum(x["detected"] for x in dr), len(dr)),
            "median_delay": statistics.median(delays) if delays else None,
            "median_delay_abrupt": statistics.median(ab) if ab else None,
            "control_false_alarms": fa, "control_events": ev,
            "control_fa_per_million": fa / ev * 1e6 if ev else None, "control_fa_upper95": fa_upper_95(fa, ev),
            "pre_drift_false_alarms": pre, "pre_drift_events": pre_ev,
            "seconds": round(sum(x["seconds"] for x in r), 2),
            "errors": sorted({x["error"] for x in r if x.get("error")}),
        }
    return out


def markdown(summary: dict, rows: list[dict], meta: dict) -> str:
    lines = [f"# concept_drift ({meta['mode']})", "", f"Command: `{meta['command']}`  ",
             f"Windows of {meta['window']} events (engine window {meta['engine_window_seconds']} s). Detected = first alarm "
             f"after the drift start, at most width + {meta['horizon']} events later. Written {meta['written_at']}; "
             f"run took {meta['seconds']:.0f} s; checkout {meta['git']['commit']}"
             f"{' with uncommitted changes in streams/' if meta['git']['streams_dirty'] else ''}.", ""]
    head = ["detector", "detected", "median delay (events)", "median delay, abrupt", "false alarms on controls",
            "FA/M controls (95% upper)", "pre-drift false alarms", "seconds"]
    body = []
    for name, s in summary.items():
        k, n = s["detected"]
        body.append([name, f"{k}/{n} ({100 * k / n:.0f}%)" if n else "—", s["median_delay"], s["median_delay_abrupt"],
                     f"{s['control_false_alarms']} in {fmt(s['control_events'])} events",
                     f"{fmt(s['control_fa_per_million'])} ({fmt(s['control_fa_upper95'])})",
                     f"{s['pre_drift_false_alarms']} in {fmt(s['pre_drift_events'])} events", s["seconds"]])
    lines += [md_table(head, body), ""]
    if meta.get("goals"):
        lines += ["## Goals (driftloop, default config)", "", md_table(["goal", "measured", "met"], meta["goals"]), ""]
    fams = sorted({(x["family"], x["kind"]) for x in rows if "detected" in x})
    body = []
    for fam, kind in fams:
        row = [f"{fam}/{kind}"]
        for d in summary:
            xs = [x for x in rows if x["detector"] == d and x["family"] == fam and x["kind"] == kind]
            ds = [x["delay"] for x in xs if x["delay"] is not None]
            row.append(f"{sum(x['detected'] for x in xs)}/{len(xs)}" + (f" · {statistics.median(ds):.0f}" if ds else ""))
        body.append(row)
    lines += ["## Per family: detected/streams · median delay", "", md_table(["stream"] + list(summary), body), ""]
    lines += ["## Error rates of the frozen classifier", "",
              md_table(["family", "description", "error before", "error after"], meta["families"]), ""]
    if meta.get("skipped"):
        lines += ["Skipped: " + "; ".join(meta["skipped"]), ""]
    return "\n".join(lines)


def goals(summary: dict, name: str) -> list[list[Any]]:
    s = summary.get(name)
    if not s:
        return []
    k, n = s["detected"]
    return [
        ["no false alarms on controls", f"{s['control_false_alarms']} in {fmt(s['control_events'])} events "
         f"(+ {s['pre_drift_false_alarms']} before drift points)", s["control_false_alarms"] == 0],
        ["median delay ≤ 300 events", f"{fmt(s['median_delay'])} (detected {k}/{n})",
         s["median_delay"] is not None and s["median_delay"] <= 300],
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv, extra=[
        (("--window",), {"type": int, "default": 500, "help": "events per event-time window (default 500)"}),
        (("--horizon",), {"type": int, "default": 2500, "help": "events after start + width a detection may take"}),
    ])
    plan = PLANS[args.mode]
    t0 = time.perf_counter()
    try:
        from streams.judge.drift_config import DriftConfig

        wsec = float(DriftConfig().window_seconds)
    except ImportError:
        wsec = 60.0
    clock = EventClock.aligned(wsec, args.window)
    dets, skipped = detectors({})
    cache: dict = {}
    rows: list[dict] = []
    fam_err: dict[str, list] = {}
    jobs = []
    for fam in plan.families:
        for kind in plan.kinds:
            for seed in range(plan.seeds):
                jobs.append((fam, kind, args.seed + seed))
        for seed in range(plan.control_seeds):
            jobs.append((fam, "none", args.seed + seed))
    for fam, kind, seed in jobs:
        width = 0 if kind in ("abrupt", "none") else plan.width
        n = plan.control_events if kind == "none" else plan.start + width + plan.post
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = make_stream(fam, kind, seed, plan.n_train, plan.n_ref, plan.start, width, n, cache)
        if kind != "none":
            fam_err.setdefault(fam, []).append((s.pre_error, s.post_error))
        for det in dets:
            try:
                alarms, secs = det.run(s, clock)
                err = None
            except Exception as exc:
                alarms, secs, err = [], 0.0, f"{exc.__class__.__name__}: {exc}"[:300]
            r = score(s, alarms, args.window, args.horizon)
            r.update(detector=det.name, seconds=round(secs, 3), alarms=len(alarms))
            if err:
                r["error"] = err
            rows.append(r)
        print(f"[{time.perf_counter() - t0:6.1f}s] {s.name}", file=sys.stderr, flush=True)
    summary = summarise(rows)
    meta = {"mode": args.mode, "window": args.window, "horizon": args.horizon, "engine_window_seconds": wsec,
            "seconds": time.perf_counter() - t0, "skipped": skipped, "plan": plan.__dict__,
            "command": ".venv/bin/python bench/concept_drift.py" + ("" if args.mode == "quick" else f" --{args.mode}"),
            "written_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "git": common._git_state(),
            "families": [[f, FAMILIES[f][2], round(float(np.mean([a for a, _ in v])), 3),
                          round(float(np.mean([b for _, b in v])), 3)] for f, v in fam_err.items()]}
    meta["goals"] = goals(summary, "driftloop (default config)")
    name = NAME + ("_full" if args.mode == "full" else "")  # a full run does not replace the quick table
    jp, mp = write_results(name, {"name": NAME, "meta": meta, "summary": summary, "rows": rows},
                           markdown(summary, rows, meta), args.out_dir)
    print(mp.read_text())
    print(f"wrote {jp} and {mp}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
