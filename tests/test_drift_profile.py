"""Reference profiles: bins with open tails, missing and unknown categories, JSON, tables."""

import json

import numpy as np
import pandas as pd
import pytest

from streams.contracts.events import InferenceEvent, LabelledExample
from streams.judge.profile import ProfileError, ReferenceProfile, load_table
from streams.judge.profile_build import build_profile, numeric_profile
from streams.judge.windows import Encoder, WindowAccumulator


def _frame(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(10, 2, n)
    x[:20] = np.nan
    return pd.DataFrame({"x": x, "c": rng.choice(["a", "b", "c", "d"], n, p=[0.4, 0.3, 0.2, 0.1]), "k": rng.integers(0, 3, n)})


def test_numeric_bins_quantiles_tails_and_missing():
    p = numeric_profile(np.concatenate([np.arange(1000.0), [np.nan] * 5]))
    assert p.missing == 5 and p.n == 1005
    assert sum(p.counts) == 1000
    coarse = p.coarse(np.asarray(p.counts))
    assert len(coarse) == 10
    assert np.all(np.abs(coarse - 100) <= 1)  # deciles hold equal mass
    edges = np.asarray(p.edges)
    assert edges[0] < 0 and edges[-1] > 999  # ladder beyond the reference range
    far_below, far_above = np.searchsorted(edges, [-1e9, 1e9])
    just_above = np.searchsorted(edges, 999.0 + 0.3 * p.spread)
    assert far_below == 0 and far_above == len(edges)
    assert 0 < just_above < far_above  # open tails still separate "a bit" from "far" outside


def test_constant_feature_has_usable_bins():
    p = numeric_profile(np.full(100, 3.0))
    assert p.spread > 0
    idx = np.searchsorted(p.edges, [2.0, 3.0, 4.0])
    assert len(set(idx.tolist())) == 3


def test_categorical_topk_other_missing_and_unknown_categories():
    df = pd.DataFrame({"c": ["a"] * 50 + ["b"] * 30 + ["c"] * 15 + ["d"] * 5 + [None] * 10})
    p = build_profile(df, "m", "1", top_k=2)
    fp = p.features["c"]
    assert fp.kind == "categorical"
    assert fp.categories == ["a", "b"]
    assert fp.counts == [50, 30, 20] and fp.missing == 10
    enc = Encoder(p)
    acc = WindowAccumulator.empty(enc)
    acc.add_columns(enc, {"c": np.array(["a", "zzz-unseen", None, "b", 7], dtype=object)})
    vals, miss, inv = acc.segment(enc.segments[0])
    assert vals.tolist() == [1, 1, 2] and miss == 1  # unseen and the number count as "other"


def test_profile_json_roundtrip_and_content_id(tmp_path):
    p = build_profile(_frame(), "fraud", 3)
    assert p.id.startswith("ref-") and p.model_version == "3"
    assert {k: v.kind for k, v in p.features.items()} == {"x": "numeric", "c": "categorical", "k": "numeric"}
    path = p.save(tmp_path / "p.json")
    q = ReferenceProfile.load(path)
    assert q.to_dict() == p.to_dict()
    assert build_profile(_frame(), "fraud", 3).id == p.id  # same data, same id
    assert build_profile(_frame(seed=1), "fraud", 3).id != p.id
    with pytest.raises(ProfileError, match="reference build"):
        ReferenceProfile.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text(json.dumps({"id": "x"}))
    with pytest.raises(ProfileError):
        ReferenceProfile.load(tmp_path / "bad.json")


def test_profile_from_labelled_events_has_error_rate_and_ece():
    exs = [
        LabelledExample(f"e{i}", "m", "1", float(i), {"x": float(i % 7)}, float(i % 2), float((i % 2) if i % 10 else 1 - i % 2),
                        (0.1, 0.9))
        for i in range(1000)
    ]
    p = build_profile(exs, "m", "1")
    assert p.labels is not None and p.labels.n == 1000
    assert p.reference_error_rate == pytest.approx(0.1)
    assert p.reference_ece == pytest.approx(0.0, abs=1e-9)  # confidence 0.9, accuracy 0.9
    assert p.prediction is not None and p.score is not None


def test_load_table_csv_parquet_jsonl(tmp_path):
    df = _frame(200)
    df.to_csv(tmp_path / "t.csv", index=False)
    df.to_parquet(tmp_path / "t.parquet")
    with open(tmp_path / "t.jsonl", "w") as fh:
        for i, row in df.iterrows():
            feats = {k: (None if isinstance(v, float) and np.isnan(v) else (v.item() if hasattr(v, "item") else v)) for k, v in row.items()}
            ev = InferenceEvent(f"e{i}", "m", "1", float(i), feats, prediction=1.0)
            fh.write(json.dumps({**ev.to_dict(), "label": 1}) + "\n")
    ids = set()
    for name in ("t.csv", "t.parquet", "t.jsonl"):
        t = load_table(tmp_path / name)
        p = build_profile(t, "m", "1")
        assert set(p.features) == {"x", "c", "k"}
        ids.add(json.dumps(p.features["x"].counts))
    assert len(ids) == 1  # same bins whatever the format
    (tmp_path / "bad.jsonl").write_text('{"event_id": "e1", "features": {"x": 1}}\n')
    with pytest.raises(ProfileError, match="bad.jsonl:1.*model"):
        load_table(tmp_path / "bad.jsonl")
    (tmp_path / "bad2.jsonl").write_text('{"x": 1}\n{nope\n')
    with pytest.raises(ProfileError, match="bad2.jsonl:2"):
        load_table(tmp_path / "bad2.jsonl")


def test_psi_bins_of_a_mostly_zero_feature_are_not_tiny():
    rng = np.random.default_rng(4)
    x = np.where(rng.random(10_000) < 0.9, 0.0, rng.exponential(size=10_000))
    p = numeric_profile(x)
    coarse = p.coarse(np.asarray(p.counts))
    assert coarse.sum() == 10_000
    assert coarse.min() >= 0.05 * 10_000  # no PSI/chi-square cell with a sliver of the mass
