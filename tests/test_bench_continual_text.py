"""Smoke run of bench/continual_text.py (``--smoke``), so that it cannot rot: it writes its results, every
strategy ran naive, with replay and jointly, and the backbone's origin is recorded.  No timing assertions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent


def test_continual_text_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "continual_text.py"), "--smoke", "--out-dir",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "continual_text.smoke.json").read_text())
    methods = {r["method"] for r in res["summary"]}
    for s in ("head", "layers", "full", "lora"):
        assert {f"{s} / naive", f"{s} / replay", f"{s} / joint"} <= methods
    assert res["meta"]["backbone"]["package"] == "wordllama" and len(res["meta"]["backbone"]["sha256"]) == 64
    assert all(0.0 <= r["old"] <= 1.0 and 0.0 <= r["new"] <= 1.0 for r in res["rows"])
    assert (tmp_path / "continual_text.smoke.md").read_text().startswith("# Continual fine-tuning")
