"""The demo's run directory: what was published and what came back, in the files ``driftloop report`` reads.

The contract is in streams/report/__init__.py (and docs/design.md): ``run.json``, then one
JSON object per line in ``inputs.jsonl``, ``labels.jsonl``, ``alerts.jsonl``,
``retrain_requests.jsonl``, ``retrain_results.jsonl``, ``model_updates.jsonl`` and
``gate_reports.jsonl``.  Records are appended as they happen, so a run that stops half way
still leaves a directory that the report can read.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

FILES = ("inputs", "labels", "alerts", "retrain_requests", "retrain_results", "model_updates", "gate_reports")


class RunRecorder:
    """Appends records to ``<run_dir>/<kind>.jsonl`` and keeps ``run.json`` current."""

    def __init__(self, run_dir: Path, meta: Mapping[str, Any]) -> None:
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.meta: dict[str, Any] = {"started_at": time.time(), "phases": [], "outcome": {}, **meta}
        for kind in FILES:
            (self.dir / f"{kind}.jsonl").touch()
        self.save()

    def add(self, kind: str, records: Iterable[Mapping[str, Any]]) -> None:
        if kind not in FILES:
            raise ValueError(f"unknown run-directory file {kind!r}; one of {FILES}")
        with open(self.dir / f"{kind}.jsonl", "a", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, sort_keys=True, default=str) + "\n")

    def phase(self, name: str, start: float, end: float, description: str) -> None:
        self.meta["phases"].append({"name": name, "start": start, "end": end, "description": description})
        self.save()

    def finish(self, outcome: Mapping[str, Any]) -> None:
        self.meta["outcome"] = dict(outcome)
        self.meta["finished_at"] = time.time()
        self.save()

    def save(self) -> None:
        tmp = self.dir / "run.json.tmp"
        tmp.write_text(json.dumps(self.meta, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
        tmp.replace(self.dir / "run.json")
