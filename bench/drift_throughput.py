"""Throughput in feature values per second per core: driftloop's engine vs River ADWIN / KSWIN
per-feature updates and Evidently's data-drift preset, on the same micro-batches, in one process.

Data: ``--features`` (20) numeric features, standard normal with a mean shift in the second
half (so judging also finds drift and builds alerts), micro-batches of ``--batch`` events,
event-time windows of ``--window`` events.  One thread everywhere (bench/common.py pins the
BLAS/OpenMP pools); rates are given per CPU second of this process (``time.process_time``,
robust when other jobs share the machine) and per wall second.  Peers run in interleaved
rounds and each rate is the median over rounds.

Rows:
- driftloop ingest(events): InferenceEvent objects (built outside the timer, as the Kafka
  worker has them after validation) -> accumulate + judge every window that closes;
- driftloop ingest_columns(matrix): the columnar fast path, same data, accumulate + judge;
- driftloop accumulate(events) / accumulate_columns: the partial-accumulator path alone;
- River ADWIN / KSWIN: one detector per feature, ``update`` per value, timed after 200 warm-up
  values per detector (KSWIN runs its test only once its 100-value window is full);
- Evidently DataDriftPreset: one report per window against the same 5,000-row reference.

    .venv/bin/python bench/drift_throughput.py [--smoke|--quick|--full]
"""

from __future__ import annotations

import common  # noqa: F401  (first: threads, telemetry, sys.path)

import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from common import EventClock, fmt, md_table, parse_args, peak_rss_mb, write_results

NAME = "drift_throughput"
MODEL, VERSION = "bench-tp", "1"


@dataclass(frozen=True)
class Plan:
    rounds: int
    engine_events: int
    adwin_events: int
    kswin_events: int
    evidently_windows: int


PLANS = {
    "smoke": Plan(1, 2_000, 500, 20, 1),
    "quick": Plan(3, 100_000, 10_000, 300, 2),
    "full": Plan(5, 1_000_000, 50_000, 2_000, 10),
}


def make_data(n: int, f: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame(rng.normal(size=(5000, f)), columns=[f"f{j}" for j in range(f)])
    x = rng.normal(size=(n, f))
    x[n // 2:, : max(1, f // 10)] += 0.5  # drift in the second half on 10% of the features
    return ref, x


class Measure:
    """Rates of one peer over rounds: values per CPU second and per wall second."""

    def __init__(self, name: str, values_per_call: int, note: str = "") -> None:
        self.name, self.values_per_call, self.note = name, values_per_call, note
        self.cpu: list[float] = []
        self.wall: list[float] = []

    def time(self, fn: Callable[[], Any]) -> Any:
        c0, w0 = time.process_time(), time.perf_counter()
        out = fn()
        c1, w1 = time.process_time(), time.perf_counter()
        self.cpu.append(self.values_per_call / max(c1 - c0, 1e-9))
        self.wall.append(self.values_per_call / max(w1 - w0, 1e-9))
        return out

    def summary(self) -> dict[str, Any]:
        return {"values_per_call": self.values_per_call, "note": self.note,
                "values_per_cpu_s": statistics.median(self.cpu) if self.cpu else None,
                "values_per_wall_s": statistics.median(self.wall) if self.wall else None,
                "rounds_cpu": self.cpu, "rounds_wall": self.wall}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv, extra=[
        (("--features",), {"type": int, "default": 20}),
        (("--batch",), {"type": int, "default": 500, "help": "events per micro-batch"}),
        (("--window",), {"type": int, "default": 500, "help": "events per event-time window"}),
    ])
    plan = PLANS[args.mode]
    F, B = args.features, args.batch
    t_start = time.perf_counter()
    from river import drift

    from streams.judge.drift_config import DriftConfig
    from streams.judge.engine import DriftEngine
    from streams.contracts.events import InferenceEvent
    from streams.judge.profile_build import build_profile

    cfg = DriftConfig()
    clock = EventClock.aligned(cfg.window_seconds, args.window)
    ref, x = make_data(plan.engine_events, F, args.seed)
    names = list(ref.columns)
    prof = build_profile(ref, MODEL, VERSION)
    ts_all = clock.ts(0, plan.engine_events)
    # events as the worker has them after validation (built outside the timers)
    rows = x.tolist()
    events = [InferenceEvent(f"e{i}", MODEL, VERSION, float(ts_all[i]), dict(zip(names, rows[i])))
              for i in range(plan.engine_events)]
    batches = [(i, min(i + B, plan.engine_events)) for i in range(0, plan.engine_events, B)]
    nvals = plan.engine_events * F

    m_ing = Measure("driftloop ingest(events) [accumulate + judge]", nvals, f"{plan.engine_events:,} events")
    m_col = Measure("driftloop ingest_columns(matrix) [accumulate + judge]", nvals, f"{plan.engine_events:,} events")
    m_acc = Measure("driftloop accumulate(events) [no judging]", nvals, f"{plan.engine_events:,} events")
    m_accc = Measure("driftloop accumulate_columns(matrix) [no judging]", nvals, f"{plan.engine_events:,} events")
    m_adw = Measure("River ADWIN per feature", plan.adwin_events * F, f"{plan.adwin_events:,} events")
    m_ksw = Measure("River KSWIN per feature", plan.kswin_events * F, f"{plan.kswin_events:,} events")
    ev_vals = plan.evidently_windows * args.window * F
    m_evi = Measure("Evidently DataDriftPreset per window", ev_vals, f"{plan.evidently_windows} windows of {args.window}")

    engine_alerts: list[int] = []

    def run_ingest():
        eng = DriftEngine(cfg, {(MODEL, VERSION): prof})
        n = 0
        for a, b in batches:
            n += len(eng.ingest(events[a:b]))
        return n + len(eng.flush())

    def run_columns():
        eng = DriftEngine(cfg, {(MODEL, VERSION): prof})
        n = 0
        for a, b in batches:
            n += len(eng.ingest_columns(MODEL, VERSION, ts_all[a:b], x[a:b]))
        return n + len(eng.flush())

    def run_accumulate():
        eng = DriftEngine(cfg, {(MODEL, VERSION): prof})
        parts = 0
        for a, b in batches:
            parts += len(eng.accumulate(events[a:b]))
        return parts

    def run_accumulate_columns():
        eng = DriftEngine(cfg, {(MODEL, VERSION): prof})
        parts = 0
        for a, b in batches:
            parts += len(eng.accumulate_columns(MODEL, VERSION, ts_all[a:b], x[a:b]))
        return parts

    xa = x[: plan.adwin_events]
    xk = x[: plan.kswin_events]

    warm_rows = ref.to_numpy()[-200:]

    def river_detectors(factory):
        """One detector per feature, already past its warm-up (KSWIN tests only once its window is full)."""
        dets = [factory() for _ in range(F)]
        for j, d in enumerate(dets):
            for v in warm_rows[:, j].tolist():
                d.update(v)
        return dets

    def run_river(dets, data):
        cols = [data[:, j].tolist() for j in range(F)]  # Python floats (cheap next to the updates)
        hits = 0
        for a in range(0, len(data), B):
            for j in range(F):
                d = dets[j]
                for v in cols[j][a:a + B]:
                    d.update(v)
                    hits += d.drift_detected
        return hits

    evidently_error = None
    try:
        from evidently import Report
        from evidently.presets import DataDriftPreset
    except Exception as exc:  # reported, not fatal
        evidently_error = repr(exc)

    def run_evidently():
        drifted = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = Report([DataDriftPreset()])
            for w in range(plan.evidently_windows):
                a = (plan.engine_events // 2 + w * args.window) % max(plan.engine_events - args.window, 1)
                cur = pd.DataFrame(x[a:a + args.window], columns=names)
                report.run(current_data=cur, reference_data=ref)
                drifted += 1
        return drifted

    if evidently_error is None and args.mode != "smoke":  # first call pays one-off set-up: warm it outside the timers
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Report([DataDriftPreset()]).run(current_data=ref.iloc[:args.window], reference_data=ref)
    run_columns()  # warm the engine's code paths once

    for r in range(plan.rounds):
        engine_alerts.append(m_ing.time(run_ingest))
        m_col.time(run_columns)
        m_acc.time(run_accumulate)
        m_accc.time(run_accumulate_columns)
        dets = river_detectors(lambda: drift.ADWIN())
        m_adw.time(lambda: run_river(dets, xa))
        dets = river_detectors(lambda: drift.KSWIN(seed=1))
        m_ksw.time(lambda: run_river(dets, xk))
        if evidently_error is None:
            m_evi.time(run_evidently)
        print(f"[{time.perf_counter() - t_start:6.1f}s] round {r + 1}/{plan.rounds}", file=sys.stderr, flush=True)

    measures = [m_ing, m_col, m_acc, m_accc, m_adw, m_ksw] + ([m_evi] if evidently_error is None else [])
    res = {m.name: m.summary() for m in measures}
    adw = res[m_adw.name]["values_per_cpu_s"]
    ksw = res[m_ksw.name]["values_per_cpu_s"]
    evi = res[m_evi.name]["values_per_cpu_s"] if evidently_error is None else None
    for m in measures:
        s = res[m.name]
        v = s["values_per_cpu_s"]
        s["x_adwin"] = v / adw if adw else None
        s["x_kswin"] = v / ksw if ksw else None
        s["x_evidently"] = v / evi if evi else None

    main_row = res[m_ing.name]
    col_row = res[m_col.name]
    goal_rows = [
        ["≥ 4x River ADWIN (ingest(events))", f"{main_row['x_adwin']:.1f}x", main_row["x_adwin"] >= 4],
        ["≥ 1000x River KSWIN (ingest(events))", f"{main_row['x_kswin']:,.0f}x", main_row["x_kswin"] >= 1000],
        ["≥ 4x River ADWIN (ingest_columns)", f"{col_row['x_adwin']:.1f}x", col_row["x_adwin"] >= 4],
        ["≥ 1000x River KSWIN (ingest_columns)", f"{col_row['x_kswin']:,.0f}x", col_row["x_kswin"] >= 1000],
    ]
    meta = {"mode": args.mode, "features": F, "batch": B, "window": args.window, "rounds": plan.rounds,
            "engine_config": {"window_seconds": cfg.window_seconds, "min_samples": cfg.min_samples},
            "engine_alerts_per_run": engine_alerts, "evidently_error": evidently_error,
            "seconds": time.perf_counter() - t_start, "peak_rss_mb": peak_rss_mb(),
            "command": ".venv/bin/python bench/drift_throughput.py" + ("" if args.mode == "quick" else f" --{args.mode}"),
            "written_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "git": common._git_state()}
    env = common.environment()
    lines = [f"# drift_throughput ({args.mode})", "", f"Command: `{meta['command']}`  ",
             f"{F} numeric features, micro-batches of {B} events, windows of {args.window} events; one thread "
             f"(OMP/MKL/OPENBLAS_NUM_THREADS=1, OPENBLAS_CORETYPE={env.get('OPENBLAS_CORETYPE') or 'unset'}); {plan.rounds} "
             f"interleaved rounds, median. CPU: {env.get('cpu')}. Written {meta['written_at']}; run took "
             f"{meta['seconds']:.0f} s; checkout {meta['git']['commit']}"
             f"{' with uncommitted changes in streams/' if meta['git']['streams_dirty'] else ''}. Rates per CPU second of the bench process (per core); wall-clock rates "
             "in the JSON.", "",
             md_table(["path", "measured on", "values / s / core", "vs ADWIN", "vs KSWIN", "vs Evidently", "values / wall s"],
                      [[m.name, m.note, res[m.name]["values_per_cpu_s"], res[m.name]["x_adwin"], res[m.name]["x_kswin"],
                        res[m.name]["x_evidently"], res[m.name]["values_per_wall_s"]] for m in measures]), "",
             "## Goals", "", md_table(["goal", "measured", "met"], goal_rows), ""]
    if evidently_error:
        lines.append(f"Evidently skipped: {evidently_error}")
    name = NAME + ("_full" if args.mode == "full" else "")  # a full run does not replace the quick table
    jp, mp = write_results(name, {"name": NAME, "meta": meta, "results": res, "goals": goal_rows, "environment": env},
                           "\n".join(lines), args.out_dir)
    print(mp.read_text())
    print(f"wrote {jp} and {mp}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
