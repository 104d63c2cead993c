"""Smoke run of bench/continual_tabular.py (``--smoke``: 1 seed, 300 rows, 2 epochs), so that it cannot rot.

Checks that every method of the grid ran on both variants, that the gate's same-parent baseline
was measured for the replay methods, and the data facts of the census files.  The figures of a
smoke run mean nothing and are not judged.  No timing assertions.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_continual_tabular_smoke(tmp_path: Path):
    sys.path.insert(0, str(ROOT))
    import bench.continual_tabular as ct

    out = tmp_path / "ct"
    assert ct.main(["--smoke", "--parts", "census", "scaled", "--out", str(out)]) == 0
    res = json.loads((tmp_path / "ct.json").read_text())
    assert (tmp_path / "ct.md").read_text().startswith("# Continual fine-tuning on tabular streams")
    assert res["data_facts"]["rows_per_year"] == {"2015": 68785, "2016": 69126, "2017": 69635, "2018": 70131}
    for variant in ("census", "scaled"):
        rows = {r["method"]: r for r in res["variants"][variant]["rows"]}
        assert set(rows) == set(ct.GRID)
        for name, r in rows.items():
            assert r["n_failed"] == 0, (variant, name, r.get("errors"))
            assert len(r["R"]) == 4 and len(r["R"][0]) == 4
            replay = next(m for m in ct.METHODS if m.name == name).replay
            assert ("vs_baseline_updates" in r) == replay, name  # 3 updates x 1 seed for every replay method
            if replay:
                assert r["vs_baseline_updates"] == 3
    shares = res["variants"]["scaled"]["info"]["employed_share_train"]
    assert shares == [pytest.approx(p, abs=0.01) for p in ct.SCALED_PRIORS]
