"""Smoke runs of the drift benchmarks (``--smoke``), so that they cannot rot.

The three benches run once, in one child process (their imports -- River, scikit-learn,
Evidently -- dominate a smoke run, so they are paid once), each exactly as
``python bench/<name>.py --smoke --out-dir DIR`` would run it.  The tests check that every
bench wrote its JSON and Markdown, that every detector ran without an error, and that the
engine saw the events it was given.  No timing assertions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHES = ("drift_quality", "concept_drift", "drift_throughput")

_DRIVER = """
import importlib, sys
sys.path.insert(0, {bench!r})
out = {out!r}
for name in {names!r}:
    mod = importlib.import_module(name)
    rc = mod.main(["--smoke", "--out-dir", out])
    if rc:
        sys.exit(f"{{name}} --smoke returned {{rc}}")
"""


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench_smoke")
    code = _DRIVER.format(bench=str(ROOT / "bench"), out=str(out), names=BENCHES)
    env = dict(os.environ, PYTHONHASHSEED="0")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"bench smoke run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return out


def _load(out: Path, name: str) -> dict:
    md = (out / f"{name}.md").read_text()
    assert md.startswith(f"# {name} (smoke)")
    return json.loads((out / f"{name}.json").read_text())


def test_drift_quality_smoke(smoke_dir):
    res = _load(smoke_dir, "drift_quality")
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
    assert summary["driftloop (default config)"]["controls_ge20"]["events"] > 0
    assert summary["driftloop (default config)"]["abrupt"][1] == 2  # both smoke drift streams were scored


def test_concept_drift_smoke(smoke_dir):
    res = _load(smoke_dir, "concept_drift")
    summary = res["summary"]
    for name in ("driftloop (default config)", "River ADWIN", "River DDM", "River HDDM_A", "frouros CUSUM"):
        assert name in summary, f"{name} missing from the run"
    for name, s in summary.items():
        assert not s["errors"], f"{name} failed: {s['errors']}"
    assert summary["driftloop (default config)"]["control_events"] > 0
    assert summary["driftloop (default config)"]["detected"][1] == 1


def test_drift_throughput_smoke(smoke_dir):
    res = _load(smoke_dir, "drift_throughput")
    r = res["results"]
    for name in ("driftloop ingest(events) [accumulate + judge]", "driftloop ingest_columns(matrix) [accumulate + judge]",
                 "River ADWIN per feature", "River KSWIN per feature"):
        assert name in r and r[name]["values_per_cpu_s"] > 0, name
    assert r["River ADWIN per feature"]["x_adwin"] == pytest.approx(1.0)
