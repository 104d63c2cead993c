"""``driftloop backtest``: replay input (and label) files through the drift engine.

Reads inference inputs (JSONL, one event per line; or a CSV/Parquet table with the columns
of ``reference build`` plus ``ts``, and optionally ``event_id``, ``model``, ``model_version``
(default ``--model``/``--version``) and ``label``), optionally labels (JSONL, joined
to the inputs by ``event_id``; a table's ``label`` column also counts), drops repeated
``event_id``s (a producer retry: counted once per window and joined once,
:class:`streams.judge.dedupe.EventDedup`), replays them in event-time order through the same
:class:`streams.judge.engine.DriftEngine` the Kafka worker runs, and writes one alert per
line (docs/design.md schema).  A bad line is reported on stderr with its line number and
skipped.  Without ``--reference``, each (model, version) bootstraps its reference as the
worker does (:func:`streams.judge.bootstrap.bootstrap_cutoff`): its events up to the end of the
hop slot holding its ``drift.reference_events``-th event become the reference and are not
replayed; windows starting before that cutoff are not judged.  A summary goes to stderr.  Exit status 1 when no valid event was read (a CI gate
must not read "alerts: 0" as "no drift"), 2 on bad arguments.

Large files: a first pass validates every line and keeps only (event time, byte
offset); the second pass reads the events again in event-time order, in chunks.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from streams.cli.event_files import TABLE_SUFFIXES, is_table, lines as _lines, table_rows  # noqa: F401 (re-exported)

CHUNK = 5000
#: Up to this many parsed events stay in memory between the two passes; beyond, the second pass re-reads.
KEEP_IN_MEMORY = 100_000
PROGRESS_MIN_EVENTS = 100_000
PROGRESS_MIN_BYTES = 50_000_000


def _report_bad(where: str, exc: Exception, bad: int, bad_limit: int, err: TextIO) -> None:
    """Say why the ``bad``-th bad line of a file was skipped; only the first ``bad_limit`` are listed."""
    if bad <= bad_limit:
        print(f"{where}: skipped ({exc.reason}): {exc}", file=err)
    elif bad == bad_limit + 1:
        print(f"{where.split(':')[0]}: more bad lines; only the first {bad_limit} are listed", file=err)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reference", action="append", metavar="PROFILE.json",
                        help="reference profile (repeat for several model versions); default: bootstrapped from the "
                             "whole windows holding the first drift.reference_events events of each model version")
    parser.add_argument("--inputs", required=True, metavar="INPUTS.jsonl",
                        help="inference inputs: JSON lines, or a .csv/.parquet table (features, ts, optional "
                             "event_id, model, model_version, prediction, scores, label)")
    parser.add_argument("--model", help="model of a CSV/Parquet table without a model column")
    parser.add_argument("--version", help="model version of a CSV/Parquet table without a model_version column")
    parser.add_argument("--labels", metavar="LABELS.jsonl", help="labels, one JSON object per line, joined by event_id")
    parser.add_argument("--out", required=True, metavar="ALERTS.jsonl", help="where to write the alerts ('-' for stdout)")
    parser.add_argument("--window-seconds", type=float, help="window length in event-time seconds (default: config, 60)")
    parser.add_argument("--hop-seconds", type=float, help="hop for hopping windows (default: tumbling)")
    parser.add_argument("--min-samples", type=int, help="events a window needs for a verdict (default: config, 500)")
    parser.add_argument("--reference-events", type=int, help="events per model version for a reference built from the inputs")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _drift_config(args: argparse.Namespace):
    from streams.config import load_file, section
    from streams.judge.drift_config import DriftConfig

    raw = load_file(getattr(args, "config", None))
    sect = dict(raw.get("drift") or {})
    for opt, key in (("window_seconds", "window_seconds"), ("hop_seconds", "hop_seconds"),
                     ("min_samples", "min_samples"), ("reference_events", "reference_events")):
        val = getattr(args, opt, None)
        if val is not None:
            sect[key] = val
    return section(DriftConfig, sect, "drift")


def _slo_config(args: argparse.Namespace):
    from streams.config import load_file, section
    from streams.judge.slo import SloConfig

    return section(SloConfig, load_file(getattr(args, "config", None)).get("slo"), "slo")


def _bar(total: int, unit: str, desc: str, err: TextIO):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, unit=unit, unit_scale=True, file=err, desc=desc, mininterval=0.5)


def scan_inputs(
    path: Path, err: TextIO, bad_limit: int = 100, keep_limit: int = 0, progress: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, list | None]:
    """First pass: validate every line.

    Returns (event times, byte offsets, line numbers) of the good lines, the bad count, and the
    parsed events themselves when there are at most ``keep_limit`` of them (else None: re-read).
    """
    from streams.contracts.events import InvalidRecord
    from streams.contracts.validate import parse_input

    kept: list | None = []
    ts: list[float] = []
    offs: list[int] = []
    nums: list[int] = []
    bad = 0
    bar = _bar(path.stat().st_size, "B", "reading", err) if progress and path.stat().st_size >= PROGRESS_MIN_BYTES else None
    for lineno, off, raw in _lines(path):
        if bar is not None:
            bar.update(len(raw))
        if not raw.strip():
            continue
        try:
            ev = parse_input(raw)
        except InvalidRecord as exc:
            bad += 1
            _report_bad(f"{path}:{lineno}", exc, bad, bad_limit, err)
            continue
        ts.append(ev.ts)
        offs.append(off)
        nums.append(lineno)
        if kept is not None:
            kept.append(ev)
            if len(kept) > keep_limit:
                kept = None
    if bar is not None:
        bar.close()
    return np.asarray(ts, float), np.asarray(offs, np.int64), np.asarray(nums, np.int64), bad, kept


def scan_table(path: Path, err: TextIO, model: str | None = None, version: str | None = None,
               kinds: dict | None = None, bad_limit: int = 100) -> tuple[np.ndarray, list, int, dict]:
    """A CSV/Parquet table -> (event times (n,), events (n,), bad rows, {event_id: (model, label)}).

    Rows map to events as :func:`streams.cli.event_files.table_rows` says.  Rows that fail
    validation are reported on ``err`` with their row number and skipped.  Raises ProfileError
    when the table cannot be read or lacks ``ts`` / a model.
    """
    from streams.contracts.events import InvalidRecord
    from streams.contracts.validate import parse_input

    events, times, labels, bad = [], [], {}, 0
    for row in table_rows(path, model, version, kinds):
        try:
            ev = parse_input(row.event)
        except InvalidRecord as exc:
            bad += 1
            _report_bad(f"{path}: row {row.number}", exc, bad, bad_limit, err)
            continue
        events.append(ev)
        times.append(ev.ts)
        if row.label is not None:
            labels[row.event["event_id"]] = (ev.model, row.label)
    return np.asarray(times, float), events, bad, labels


def read_labels(path: Path, err: TextIO, bad_limit: int = 100) -> tuple[dict[str, Any], int]:
    """event_id -> LabelEvent (the last label of an event wins), and the number of bad lines."""
    from streams.contracts.events import InvalidRecord
    from streams.contracts.validate import parse_label

    labels: dict[str, Any] = {}
    bad = 0
    for lineno, _off, raw in _lines(path):
        if not raw.strip():
            continue
        try:
            lab = parse_label(raw)
        except InvalidRecord as exc:
            bad += 1
            _report_bad(f"{path}:{lineno}", exc, bad, bad_limit, err)
            continue
        labels[lab.event_id] = lab
    return labels, bad


def replay(
    inputs: Path,
    out: TextIO,
    config,
    profiles: list | None = None,
    labels_path: Path | None = None,
    err: TextIO = sys.stderr,
    progress: bool = True,
    model: str | None = None,
    version: str | None = None,
    observer=None,
    slo=None,
    quality_observer=None,
) -> dict[str, Any]:
    """Replay ``inputs`` (and labels) through a fresh engine; write alerts to ``out``; return the summary.

    ``observer``: the engine's ``window_observer`` (every judged data window's tests; the run report uses it).
    ``slo``: the :class:`streams.judge.slo.SloConfig` (default: its defaults); ``quality_observer``: gets the
    engine's quality records (label-free estimates, their errors, SLO burn rates: :mod:`streams.judge.quality`).

    Raises :class:`streams.judge.profile.ProfileError` when a table of inputs cannot be read.
    """
    from streams.judge.engine import DriftEngine
    from streams.judge.bootstrap import bootstrap_cutoff
    from streams.contracts.events import LabelledExample
    from streams.contracts.validate import parse_input
    from streams.judge.dedupe import EventDedup
    from streams.judge.profile import ProfileError
    from streams.judge.profile_build import build_profile

    table_labels: dict = {}
    if is_table(inputs):
        kinds = {n: fp.kind for p in (profiles or []) for n, fp in p.features.items()}
        ts, kept, bad_inputs, table_labels = scan_table(inputs, err, model, version, kinds)
        offs = np.zeros(len(ts), np.int64)
    else:
        ts, offs, nums, bad_inputs, kept = scan_inputs(inputs, err, keep_limit=KEEP_IN_MEMORY, progress=progress)
    labels, bad_labels = read_labels(labels_path, err) if labels_path else ({}, 0)
    if table_labels:
        from streams.contracts.events import LabelEvent

        for eid, (m, y) in table_labels.items():
            labels.setdefault(eid, LabelEvent(event_id=eid, model=m, ts=0.0, label=y))
    order = np.argsort(ts, kind="stable")
    dedup = EventDedup(horizon_s=config.window_seconds + config.allowed_lateness_s + config.hop)
    engine = DriftEngine(config, profiles or [])
    if slo is not None:
        engine.slo = slo
    engine.window_observer = observer
    est_errors: list[float] = []

    def on_quality(rec: dict[str, Any]) -> None:
        if rec.get("type") == "estimate_error":
            est_errors.append(float(rec["abs_error"]))
        if quality_observer is not None:
            quality_observer(rec)

    engine.quality_observer = on_quality
    summary: dict[str, Any] = {
        "events_read": int(len(ts)),
        "bad_input_lines": bad_inputs,
        "labels_read": len(labels),
        "bad_label_lines": bad_labels,
        "labelled_joined": 0,
        "duplicate_events": 0,
        "label_model_mismatch": 0,
    }
    building: dict[tuple[str, str], list] = defaultdict(list)  # (model, version) -> reference events so far
    cutoffs: dict[tuple[str, str], float] = {}  # (model, version) -> its bootstrap cutoff, once known
    have_ref = {(p.model, p.model_version) for p in (profiles or [])}
    failed_ref: set = set()
    references_built: dict[str, Any] = {}
    alerts_written = 0

    def emit(alerts) -> None:
        nonlocal alerts_written
        for a in alerts:
            out.write(a.to_json() + "\n")
            alerts_written += 1

    def to_labelled(evs):
        exs = []
        for e in evs:
            lab = labels.get(e.event_id)
            if lab is None:
                continue
            if lab.model != e.model or (lab.model_version is not None and lab.model_version != e.model_version):
                summary["label_model_mismatch"] += 1
                continue
            exs.append(LabelledExample(e.event_id, e.model, e.model_version, e.ts, e.features, lab.label,
                                       e.prediction, e.scores, e.entity, None if e.shadow is None else e.shadow.to_dict()))
        return exs

    def make_reference(key, evs, note: str, cutoff: float = -math.inf) -> None:
        exs = {x.event_id: x for x in to_labelled(evs)}
        rows = [exs.get(e.event_id, e) for e in evs]
        try:
            prof = build_profile(rows, key[0], key[1], n_bins=config.n_bins, fine_bins=config.fine_bins,
                                 top_k=config.top_k, source=f"backtest: {note}")
        except ProfileError as exc:
            print(f"{key[0]} v{key[1]}: no reference could be built from {note}: {exc}; not judged", file=err)
            failed_ref.add(key)
            return
        engine.set_profile(prof, judge_from=cutoff)
        report_invalid(prof, err)
        have_ref.add(key)
        references_built[f"{key[0]} v{key[1]}"] = {"id": prof.id, "n": prof.n, "note": note}
        print(f"reference for {key[0]} v{key[1]}: built from {note} ({prof.n} events, id {prof.id})", file=err)

    bar = _bar(len(order), "ev", "replaying", err) if progress and len(order) >= PROGRESS_MIN_EVENTS else None
    with inputs.open("rb") as fh:
        for c0 in range(0, len(order), CHUNK):
            sel = order[c0 : c0 + CHUNK]
            if kept is not None:
                batch = [kept[i] for i in sel]
            else:
                batch = []
                for off in offs[sel]:
                    fh.seek(int(off))
                    batch.append(parse_input(fh.readline()))
            first = dedup.first_occurrences([e.event_id for e in batch], [e.ts for e in batch])
            if not first.all():
                batch = [e for e, k in zip(batch, first.tolist()) if k]
            replayed = []
            for e in batch:  # event-time order: the bootstrap rule of the worker (bootstrap.bootstrap_cutoff)
                key = (e.model, e.model_version)
                if key not in have_ref and key not in failed_ref:
                    buf = building[key]
                    cut = cutoffs.get(key)
                    if cut is None or e.ts < cut:
                        buf.append(e)
                        if cut is None and len(buf) == config.reference_events:
                            cutoffs[key] = bootstrap_cutoff([x.ts for x in buf], config.reference_events, config.hop)
                        continue
                    make_reference(key, buf, f"the {len(buf)} events before t={cut:g} (not replayed)", cut)
                    del building[key]
                replayed.append(e)
            if replayed:
                emit(engine.ingest(replayed))
                exs = to_labelled(replayed)
                summary["labelled_joined"] += len(exs)
                if exs:
                    emit(engine.ingest_labelled(exs))
            if bar is not None:
                bar.update(len(sel))
    if bar is not None:
        bar.close()
    emit(engine.flush())
    summary["duplicate_events"] = dedup.duplicates
    for key in [k for k in building if k in cutoffs]:  # the stream ended inside the bootstrap period
        evs = building.pop(key)
        make_reference(key, evs, f"the {len(evs)} events before t={cutoffs[key]:g}", cutoffs[key])
    for key, buf in building.items():
        print(f"{key[0]} v{key[1]}: only {len(buf)} events, fewer than reference_events={config.reference_events}; "
              "not judged (pass --reference or lower --reference-events)", file=err)
    st = engine.stats
    summary.update(
        events_replayed=int(st.get("events", 0)),
        windows_judged=int(st.get("windows_judged", 0)),
        insufficient_windows=int(st.get("windows_insufficient", 0)),
        label_windows_judged=int(st.get("label_windows_judged", 0)),
        insufficient_label_windows=int(st.get("label_windows_insufficient", 0)),
        late_events=int(st.get("late_events", 0)),
        events_without_reference=int(st.get("no_reference", 0)),
        alerts=alerts_written,
        alerts_by_kind=dict(st.get("alerts_by_kind", {})),
        alerts_cleared=int(st.get("alerts_cleared", 0)),
        references_built=references_built,
        concept_untestable={f"{m} v{v}": why for (m, v), why in engine.untestable().items()},
        estimate_windows_checked=len(est_errors),
        estimate_mean_abs_error=float(np.mean(est_errors)) if est_errors else None,
    )
    return summary


def report_invalid(prof, err: TextIO) -> None:
    """One line per feature whose reference holds values that do not fit its kind."""
    for name, fp in prof.features.items():
        if getattr(fp, "invalid", 0):
            print(f"reference for {prof.model} v{prof.model_version}: feature {name!r} is {fp.kind}; "
                  f"{fp.invalid} of {fp.n} reference values are not numbers and are counted invalid", file=err)


def print_summary(summary: dict[str, Any], err: TextIO) -> None:
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(summary["alerts_by_kind"].items())) or "none"
    lines = [
        f"events read: {summary['events_read']} (bad lines skipped: {summary['bad_input_lines']}), "
        f"replayed: {summary['events_replayed']}"
        + (f", repeated event_ids dropped: {summary['duplicate_events']}" if summary.get("duplicate_events") else ""),
    ]
    if summary["labels_read"] or summary["bad_label_lines"]:
        lines.append(f"labels read: {summary['labels_read']} (bad lines skipped: {summary['bad_label_lines']}), "
                     f"joined to inputs: {summary['labelled_joined']}")
    lines.append(f"windows judged: {summary['windows_judged']}, insufficient windows: {summary['insufficient_windows']}")
    if summary["label_windows_judged"] or summary["insufficient_label_windows"]:
        lines.append(f"label windows judged: {summary['label_windows_judged']}, "
                     f"insufficient: {summary['insufficient_label_windows']}")
    if summary["events_without_reference"]:
        lines.append(f"events without a reference (not judged): {summary['events_without_reference']}")
    for mv, why in (summary.get("concept_untestable") or {}).items():
        lines.append(f"concept drift not tested for {mv}: {why}")
    if summary.get("estimate_windows_checked"):
        lines.append(f"label-free accuracy estimates checked against labels: {summary['estimate_windows_checked']} "
                     f"windows, mean absolute error {summary['estimate_mean_abs_error']:.3f}")
    lines.append(f"alerts: {summary['alerts']} ({kinds}); cleared: {summary['alerts_cleared']}")
    print("\n".join(lines), file=err)


def run(args: argparse.Namespace) -> int:
    from streams.config import ConfigError
    from streams.judge.profile import ProfileError, ReferenceProfile

    err = sys.stderr
    try:
        config = _drift_config(args)
        slo = _slo_config(args)
    except (ConfigError, ValueError, TypeError) as exc:
        print(f"backtest: bad configuration: {exc}", file=err)
        return 2
    inputs = Path(args.inputs)
    if not inputs.is_file():
        print(f"backtest: inputs file {inputs} does not exist", file=err)
        return 2
    labels = Path(args.labels) if args.labels else None
    if labels is not None and not labels.is_file():
        print(f"backtest: labels file {labels} does not exist", file=err)
        return 2
    profiles = []
    for ref in args.reference or []:
        try:
            profiles.append(ReferenceProfile.load(ref))
        except ProfileError as exc:
            print(f"backtest: {exc}", file=err)
            return 2
    if not profiles:
        print(f"backtest: no --reference given; each model version's reference is built from the whole windows "
              f"holding its first {config.reference_events} events (in event-time order), which are not replayed",
              file=err)
    out_path = args.out
    kw = dict(progress=not args.quiet, model=getattr(args, "model", None), version=getattr(args, "version", None),
              slo=slo)
    try:
        if out_path == "-":
            summary = replay(inputs, sys.stdout, config, profiles, labels, err, **kw)
        else:
            Path(out_path).parent.mkdir(parents=True, exist_ok=True)
            with open(out_path, "w", encoding="utf-8") as out:
                summary = replay(inputs, out, config, profiles, labels, err, **kw)
    except ProfileError as exc:
        print(f"backtest: {exc}", file=err)
        return 2
    print_summary(summary, err)
    if getattr(args, "verbose", False):
        print(json.dumps(summary, sort_keys=True), file=err)
    if summary["events_read"] == 0:
        print(f"backtest: FAILED: no valid event was read from {inputs} ({summary['bad_input_lines']} bad lines); "
              "inputs must be JSON lines in the inference-input contract, or a .csv/.parquet table with a ts "
              "column; nothing was judged, so 'alerts: 0' does not mean 'no drift'", file=err)
        return 1
    if summary["windows_judged"] == 0 and summary["label_windows_judged"] == 0:
        print("backtest: warning: no window was judged (too few events per window or for the reference); "
              "'alerts: 0' does not mean 'no drift'", file=err)
    return 0
