"""Smoke run of bench/live_gate_power.py (``--smoke``): it writes its results for every row, and the gate's clear
cases hold (an equal candidate never rejected in these seeds, a 5-point-worse fine-tune never promoted).
No timing assertions."""

from __future__ import annotations

import json

from bench.live_gate_power import WORSE, main


def test_live_gate_power_smoke(tmp_path):
    assert main(["--smoke", "--out-dir", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "live_gate_power.json").read_text())["rows"]
    assert [(r["errors"], r["worse_points"]) for r in rows] == [
        (e, w * 100) for e in ("correlated", "independent") for w in WORSE]
    by = {(r["errors"], r["worse_points"]): r for r in rows}
    assert by[("correlated", 0.0)]["rejected"] == 0 and by[("independent", 0.0)]["rejected"] == 0
    assert by[("correlated", 5.0)]["promoted"] == 0
    assert (tmp_path / "live_gate_power.md").read_text().startswith("# live_gate_power")
