"""Smoke runs of the drift benchmarks (``--smoke``), so that they cannot rot.

Each bench runs as its users run it (``python bench/<name>.py --smoke``) into a temporary
folder; the test checks that it wrote its JSON and Markdown, that every detector ran without
an error, and that the engine saw every event it was given.  No timing assertions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


def _run(name: str, out: Path) -> dict:
    env = dict(os.environ, PYTHONHASHSEED="0")
    proc = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), "--smoke", "--out-dir", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{name} --smoke failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    md = (out / f"{name}.md").read_text()
    assert md.startswith(f"# {name} (smoke)")
    return json.loads((out / f"{name}.json").read_text())


def test_drift_quality_smoke(tmp_path):
    res = _run("drift_quality", tmp_path)
    summary = res["summary"]
    assert "driftloop (default config)" in summary
    for peer in ("River ADWIN per feature", "River PageHinkley per feature", "River KSWIN per feature",
                 "naive PSI>0.1 per feature", "naive KS/chi2 p<0.05 per feature",
                 "evidently DataDriftPreset (dataset drift)", "evidently DataDriftPreset (any column)"):
        assert peer in summary, f"{peer} missing from the run"
    for name, s in summary.items():
        assert not s["errors"], f"{name} failed: {s['errors']}"
    dl = [r for r in res["rows"] if r["detector"] == "driftloop (default config)"]
    assert dl and all(r["events"] > 0 for r in dl)
    assert sum(r["events"] for r in dl) == summary["driftloop (default config)"]["events"]
    assert res["summary"]["driftloop (default config)"]["controls_ge20"]["events"] > 0


def test_concept_drift_smoke(tmp_path):
    res = _run("concept_drift", tmp_path)
    summary = res["summary"]
    for name in ("driftloop (default config)", "River ADWIN", "River DDM", "River HDDM_A", "frouros CUSUM"):
        assert name in summary, f"{name} missing from the run"
    for name, s in summary.items():
        assert not s["errors"], f"{name} failed: {s['errors']}"
    assert summary["driftloop (default config)"]["control_events"] > 0


def test_drift_throughput_smoke(tmp_path):
    res = _run("drift_throughput", tmp_path)
    r = res["results"]
    for name in ("driftloop ingest(events) [accumulate + judge]", "driftloop ingest_columns(matrix) [accumulate + judge]",
                 "River ADWIN per feature", "River KSWIN per feature"):
        assert name in r and r[name]["values_per_cpu_s"] > 0, name
    assert r["River ADWIN per feature"]["x_adwin"] == pytest.approx(1.0)
