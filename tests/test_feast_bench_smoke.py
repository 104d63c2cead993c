"""bench/parity_cost.py --smoke, as its users run it, so the benchmark cannot rot (no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.feast

ROOT = Path(__file__).resolve().parent.parent


def test_parity_cost_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "parity_cost.py"), "--smoke", "--out-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"parity_cost --smoke failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert (tmp_path / "parity_cost.md").read_text().startswith("# parity_cost (smoke)")
    res = json.loads((tmp_path / "parity_cost.json").read_text())
    cost = res["parity_cost"]
    assert set(cost) == {"batched + cached", "batched, no cache", "unbatched, no cache", "comparison only (no Feast)"}
    for name, c in cost.items():  # every variant saw the scaled feature and nothing else
        assert c["alerts"] == [["customer_avg_amount_30d", "mismatch_rate"]], name
    assert cost["unbatched, no cache"]["store_calls"] == 2 * cost["unbatched, no cache"]["n_events"]
    assert cost["batched + cached"]["store_calls"] < cost["batched, no cache"]["store_calls"]
    worker = res["worker_pipeline"]
    assert ["customer_avg_amount_30d", True] in worker["alerts_on"]["drift_alerts"]  # explained with parity on
    assert ["customer_avg_amount_30d", False] in worker["alerts_off"]["drift_alerts"]
