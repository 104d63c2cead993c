"""The run report: one self-contained HTML page (inline SVG plots, no scripts, no network) about one run.

``driftloop demo`` writes it at the end of a run; ``driftloop report RUN_DIR [--out FILE]`` makes the
same page from an existing run directory.  Pure: no Kafka, Faust, Feast or Ray.

    report = build_report(run_dir, config)   # streams.report.data: the series and tables
    html = render_html(report)               # streams.report.render: the page
    write_report(run_dir, out=None, config=None) -> Path   # both; default out: RUN_DIR/report.html

Run-directory contract (the demo writes exactly this):

- ``run.json``: ``{"domain": str, "model": str, "window_seconds": float, "started_at"/"finished_at":
  epoch seconds (wall clock), "phases": [{"name": str, "start": event-time s, "end": event-time s,
  "description": str}], "outcome": {free-form: e.g. "verdict", "accuracy_before", "accuracy_after",
  "promoted_version"}, "registry": optional path to the model registry directory,
  "reference_profiles": optional [paths relative to the run directory of reference profile JSON
  files, as streams/adapters/reference_store.py writes them]}``.
- ``inputs.jsonl``, ``labels.jsonl``: inference inputs and labels exactly as published
  (docs/design.md: inputs carry the model_version as served, prediction and scores).
- ``alerts.jsonl``: alerts as consumed from the alerts topic (``Alert.to_dict``).
- ``retrain_requests.jsonl``, ``retrain_results.jsonl``, ``model_updates.jsonl``: records as on
  those topics (trainers/records.py).
- ``gate_reports.jsonl``: one line per candidate ``{"model", "version", "promoted": bool, "status",
  "reasons": [...], "report": the gate report dict stored in the registry (registry load(...).report)}``.

Only ``run.json`` and ``inputs.jsonl`` are required; a missing or empty file makes its section say
"none"; a bad line is skipped and counted on the page, never fatal.
"""

from __future__ import annotations

from pathlib import Path

from streams.judge.drift_config import DriftConfig
from streams.report.data import AccuracySeries, DriftSeries, RunReport, SwapMark, build_report
from streams.report.render import render_html
from streams.report.rundir import RunDirError

REPORT_FILE = "report.html"


def write_report(run_dir: str | Path, out: str | Path | None = None, config: DriftConfig | None = None) -> Path:
    """Build the page of ``run_dir`` and write it (default ``RUN_DIR/report.html``); returns its path.

    Raises :class:`RunDirError` (the message says what is missing and how to make a run directory)."""
    import warnings

    with warnings.catch_warnings():  # matplotlib's font parsers warn about pyparsing's renamed API at import
        warnings.simplefilter("ignore")
        report = build_report(run_dir, config)
        page = render_html(report)
    path = Path(out) if out is not None else Path(run_dir) / REPORT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path


__all__ = ["AccuracySeries", "DriftSeries", "RunDirError", "RunReport", "SwapMark", "build_report", "render_html",
           "write_report", "REPORT_FILE"]
