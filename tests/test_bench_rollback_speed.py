"""Smoke run of bench/rollback_speed.py (``--smoke``), so that it cannot rot: it writes its results, every
detector ran on both releases and both label delays, and the figures are in range.  No timing assertions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_rollback_speed_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "rollback_speed.py"), "--smoke", "--out-dir",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "rollback_speed.smoke.json").read_text())
    assert set(res["summary"]) == {"degraded|30", "degraded|600", "healthy|30", "healthy|600"}
    for key, by_detector in res["summary"].items():
        assert set(by_detector) == {"gate_shadow", "gate_no_shadow", "label_only_recent", "label_only_recent_alert",
                                    "label_only_profile"}, key
        for s in by_detector.values():
            assert s["seeds"] == res["sizes"]["seeds"] and 0 <= s["rollbacks"] <= s["seeds"]
    for acc in res["accuracy"].values():
        assert all(0.0 <= v <= 1.0 for v in acc.values())
    assert res["estimates"]["degraded"]["windows"]
    assert (tmp_path / "rollback_speed.smoke.md").read_text().startswith("# rollback_speed (smoke)")
