"""Reading a run directory (the contract is in :mod:`streams.report`): run.json and the JSON-lines files.

A missing run directory, run.json or inputs.jsonl is a :class:`RunDirError` that says how to make
one; any other file may be missing or empty.  A line that is not a JSON object is skipped and
counted (:attr:`JsonLines.bad`), never fatal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RUN_JSON = "run.json"
INPUTS = "inputs.jsonl"
LABELS = "labels.jsonl"
ALERTS = "alerts.jsonl"
RETRAIN_REQUESTS = "retrain_requests.jsonl"
RETRAIN_RESULTS = "retrain_results.jsonl"
MODEL_UPDATES = "model_updates.jsonl"
GATE_REPORTS = "gate_reports.jsonl"
OPTIONAL_FILES = (LABELS, ALERTS, RETRAIN_REQUESTS, RETRAIN_RESULTS, MODEL_UPDATES, GATE_REPORTS)
HOW_TO_MAKE = "`driftloop demo` writes one (see the run-directory contract in streams/report/__init__.py)"


class RunDirError(ValueError):
    """The run directory cannot be reported on; the message says what is missing and how to make one."""


@dataclass(frozen=True)
class Phase:
    name: str
    start: float  # event-time seconds
    end: float
    description: str = ""


@dataclass(frozen=True)
class RunInfo:
    """run.json."""

    domain: str
    model: str
    window_seconds: float
    started_at: float | None  # wall-clock epoch seconds
    finished_at: float | None
    phases: list[Phase]
    outcome: dict[str, Any]
    registry: str | None = None
    reference_profiles: list[str] = field(default_factory=list)  # relative to the run directory
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class JsonLines:
    """The JSON objects of one .jsonl file, with how many lines were skipped and why."""

    name: str
    records: list[dict[str, Any]] = field(default_factory=list)
    bad: int = 0
    missing: bool = False
    first_error: str | None = None  # "line N: why" of the first bad line


def _num(d: dict[str, Any], key: str, where: str, default: Any = ...) -> Any:
    v = d.get(key, default)
    if v is ... or (v is None and default is ...):
        raise RunDirError(f"{where}: '{key}' is missing; {HOW_TO_MAKE}")
    if v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        raise RunDirError(f"{where}: '{key}' must be a number of seconds, got {v!r}") from None


def read_run_info(run_dir: Path) -> RunInfo:
    """Parse run.json; RunDirError when the directory or the file is missing or is not a run.json."""
    if not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} does not exist; {HOW_TO_MAKE}")
    path = run_dir / RUN_JSON
    if not path.is_file():
        raise RunDirError(f"{path} is missing, so {run_dir} is not a run directory; {HOW_TO_MAKE}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{path} cannot be read as JSON ({exc}); {HOW_TO_MAKE}") from None
    if not isinstance(raw, dict):
        raise RunDirError(f"{path} must hold a JSON object, got {type(raw).__name__}")
    where = str(path)
    window = _num(raw, "window_seconds", where)
    if not window or window <= 0:
        raise RunDirError(f"{where}: 'window_seconds' must be > 0, got {window}")
    phases = []
    for i, p in enumerate(raw.get("phases") or []):
        if not isinstance(p, dict):
            raise RunDirError(f"{where}: phases[{i}] must be an object with name, start, end, description")
        phases.append(Phase(str(p.get("name", f"phase {i + 1}")), _num(p, "start", f"{where}: phases[{i}]"),
                            _num(p, "end", f"{where}: phases[{i}]"), str(p.get("description", ""))))
    refs = raw.get("reference_profiles") or []
    if not isinstance(refs, list):
        raise RunDirError(f"{where}: 'reference_profiles' must be a list of paths relative to the run directory")
    outcome = raw.get("outcome") or {}
    return RunInfo(
        domain=str(raw.get("domain", "")), model=str(raw.get("model", "")), window_seconds=window,
        started_at=_num(raw, "started_at", where, None), finished_at=_num(raw, "finished_at", where, None),
        phases=phases, outcome=outcome if isinstance(outcome, dict) else {"outcome": outcome},
        registry=None if raw.get("registry") is None else str(raw["registry"]),
        reference_profiles=[str(r) for r in refs], raw=raw,
    )


def read_jsonl(path: Path) -> JsonLines:
    """Every JSON object of a .jsonl file; blank lines are ignored, other bad lines counted."""
    out = JsonLines(path.name)
    if not path.is_file():
        out.missing = True
        return out
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
                why = None if isinstance(rec, dict) else f"a JSON {type(rec).__name__}, not an object"
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                rec, why = None, f"not JSON ({exc.__class__.__name__})"
            if why is not None:
                out.bad += 1
                out.first_error = out.first_error or f"line {lineno}: {why}"
                continue
            out.records.append(rec)
    return out
