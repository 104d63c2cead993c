"""The engine cases of shared/cases (04, 05, 06, 07, 12, 13), each asserting the right value from
the cases README.  Inputs are copied into tests/data/cases/<folder>/ (the shared folder,
``<repo>/../shared/cases``, is used only when the copy is missing)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from streams.cli.backtest import replay
from streams.judge.drift_config import DriftConfig
from streams.judge.engine import DriftEngine
from streams.contracts.events import LabelledExample
from streams.contracts.validate import parse_input
from streams.judge.profile import ReferenceProfile, load_table
from streams.judge.profile_build import build_profile

HERE = Path(__file__).parent


def case(folder: str) -> Path:
    local = HERE / "data" / "cases" / folder
    if local.is_dir():
        return local
    return Path(__file__).parents[2] / "shared" / "cases" / folder


def run(inputs: Path, labels: Path | None = None, profiles=None, **cfg):
    out = io.StringIO()
    summary = replay(Path(inputs), out, DriftConfig(**cfg), profiles or [], labels, io.StringIO(), progress=False)
    alerts = [json.loads(line) for line in out.getvalue().splitlines()]
    return summary, alerts


# --------------------------------------------------------------------------- 13 float32 ties


@pytest.fixture(scope="module")
def case13(tmp_path_factory):
    d = tmp_path_factory.mktemp("c13")
    subprocess.run([sys.executable, str(case("13_float32_ties") / "gen.py")], cwd=d, check=True)
    return d


def test_13_float32_ties_round_trip_of_an_unchanged_stream_gives_no_alert(case13):
    prof = build_profile(load_table(case13 / "reference.jsonl"), "m", "1")
    summary, alerts = run(case13 / "inputs_float32.jsonl", profiles=[prof])
    assert summary["windows_judged"] > 10
    assert alerts == []


def test_13_float16_round_trip_and_atoms_never_straddle_an_edge(case13):
    ref = load_table(case13 / "reference.jsonl")
    prof = build_profile(ref, "m", "1")
    for name, fp in prof.features.items():
        vals = np.unique(ref["features." + name].to_numpy(float))
        edges = np.asarray(fp.edges)
        # every reference atom is at least half a gap away from every edge
        gap = np.min(np.diff(vals))
        assert np.min(np.abs(vals[:, None] - edges[None, :])) >= gap / 2 - 1e-12
    rows = [json.loads(line) for line in (case13 / "inputs_float32.jsonl").read_text().splitlines()]
    for r in rows:
        r["features"] = {k: float(np.float16(v)) for k, v in r["features"].items()}
    p = case13 / "inputs_float16.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _, alerts = run(p, profiles=[prof])
    assert alerts == []


# --------------------------------------------------------------------------- 04 always wrong


def test_04_regression_model_gets_no_concept_alert_while_its_error_rate_holds():
    c = case("04_always_wrong")
    summary, alerts = run(c / "min_inputs.jsonl", c / "min_labels.jsonl", reference_events=200)
    # the reference is the whole windows holding the first 200 events (240 here); every later label is judged
    n_ref = summary["references_built"]["m v1"]["n"]
    assert n_ref == 240 and summary["labelled_joined"] == 1000 - n_ref
    assert [a for a in alerts if a["kind"] in ("concept_drift", "performance")] == []


def test_04_regression_error_definition_is_declared_in_the_reference():
    c = case("04_always_wrong")
    evs = [parse_input(line) for line in (c / "min_inputs.jsonl").read_text().splitlines()[:200]]
    labels = {json.loads(x)["event_id"]: json.loads(x)["label"] for x in (c / "min_labels.jsonl").read_text().splitlines()}
    exs = [LabelledExample(e.event_id, e.model, e.model_version, e.ts, e.features, labels[e.event_id], e.prediction)
           for e in evs]
    prof = build_profile(exs, "m", "1")
    assert prof.labels.error == "absolute" and prof.labels.tolerance > 0
    # every |error| is 0.5 (a constant bias): at the tolerance (the 90th percentile), not over it
    assert prof.labels.tolerance == pytest.approx(0.5) and prof.reference_error_rate == 0.0
    back = ReferenceProfile.from_dict(json.loads(prof.to_json()))
    assert back.labels.error == "absolute" and back.labels.tolerance == prof.labels.tolerance


def _labelled(n, err_rate, t0=0.0, seed=0, dt=0.1):
    rng = np.random.default_rng(seed)
    wrong = rng.random(n) < err_rate
    return [LabelledExample(f"e{seed}-{i}", "m", "1", t0 + i * dt, {"x": 0.0}, 1, 0 if w else 1) for i, w in enumerate(wrong)]


def _classifier_profile(err_rate, n=2000):
    rows = [{"features": {"x": float(i % 7)}, "prediction": 0 if i < err_rate * n else 1, "label": 1} for i in range(n)]
    return build_profile(rows, "m", "1")


def test_04_always_wrong_classifier_is_not_tested_and_says_so():
    prof = _classifier_profile(1.0)
    assert prof.reference_error_rate == 1.0
    eng = DriftEngine(DriftConfig(window_seconds=60, min_samples=200), [prof])
    alerts = []
    for i in range(0, 6000, 500):
        alerts += eng.ingest_labelled(_labelled(500, 1.0, t0=i * 0.1, seed=i))
    alerts += eng.flush()
    assert [a for a in alerts if a.kind == "concept_drift"] == []
    assert eng.stats["concept_untestable"] == 1


def test_04_cusum_reference_rate_is_not_capped_below_the_true_rate():
    prof = _classifier_profile(0.97, n=20000)
    eng = DriftEngine(DriftConfig(window_seconds=60, min_samples=200, cusum_shift=0.02), [prof])
    alerts = []
    for i in range(0, 20000, 1000):
        alerts += eng.ingest_labelled(_labelled(1000, 0.97, t0=i * 0.1, seed=i))
    assert [a for a in alerts if a.kind == "concept_drift"] == []
    assert eng._models[("m", "1")].cusum.p0 >= 0.97


# --------------------------------------------------------------------------- 05 stray string


def test_05_stray_string_keeps_the_column_numeric_and_the_3x_shift_is_detected():
    c = case("05_stray_string")
    summary, alerts = run(c / "min_inputs.jsonl", reference_events=1000, min_samples=100)
    built = [json.loads(x) for x in (c / "min_inputs.jsonl").read_text().splitlines()[:1000]]
    prof = build_profile(built, "m", "1")
    assert prof.features["amount"].kind == "numeric" and prof.features["amount"].invalid == 1
    assert [(a["kind"], a["feature"]) for a in alerts] == [("data_drift", "amount")]
    assert alerts[0]["window"]["n"] == 500


def test_stray_text_in_a_numeric_batch_is_counted_invalid_whatever_the_batch():
    prof = build_profile(pd.DataFrame({"x": np.arange(1000.0)}), "m", "1")
    eng = DriftEngine(DriftConfig(), [prof])
    enc = eng.encoder("m", "1")
    a = enc.encode({"x": np.array([1.0, "12", None, "n/a"], dtype=object)}, 4)
    b = enc.encode({"x": np.array(["12"], dtype=object)}, 1)
    seg = enc.segments[0]
    invalid = seg.offset + seg.size - 1
    assert a[1] == invalid and a[3] == invalid and b[0] == invalid and a[2] == invalid - 1


def test_boolean_column_with_one_missing_cell_keeps_its_kind(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("flag,x\n" + "".join(f"{'True' if i % 3 else 'False'},{i}\n" for i in range(300)) + ",5\n")
    full = build_profile(pd.DataFrame({"flag": [bool(i % 3) for i in range(300)], "x": range(300)}), "m", "1")
    holed = build_profile(load_table(p), "m", "1")
    assert full.features["flag"].kind == holed.features["flag"].kind == "numeric"
    assert holed.features["flag"].missing == 1


# --------------------------------------------------------------------------- 06 postcodes


def test_06_postcodes_are_categories_counted_the_same_whatever_the_batch():
    c = case("06_zip_codes")
    prof = build_profile(load_table(c / "min_train.csv"), "m", "1")
    fp = prof.features["zip"]
    assert fp.kind == "categorical" and "02134" in fp.categories
    for name in ("min_inputs_clean.jsonl", "min_inputs_one_unknown.jsonl"):
        evs = [parse_input(x) for x in (c / name).read_text().splitlines()]
        counts = []
        for size in (7, 100, 500):
            eng = DriftEngine(DriftConfig(), [prof])
            acc = None
            for i in range(0, len(evs), size):
                for _, a in eng.accumulate(evs[i:i + size]).items():
                    acc = a if acc is None else acc.merge(a)
            counts.append(acc.counts.tolist())
            vals, miss, inv = acc.segment(eng.encoder("m", "1").segments[0])
            assert miss == 0 and inv == 0
            assert vals[-1] == (1 if "unknown" in name else 0)  # "unknown" is one "other" category
        assert counts[0] == counts[1] == counts[2]
        summary, alerts = run(c / name, profiles=[prof], min_samples=100)
        assert summary["windows_judged"] >= 1 and alerts == []


# --------------------------------------------------------------------------- 07 reserved names


def test_07_a_model_whose_only_feature_is_score_does_not_crash():
    c = case("07_reserved_names")
    summary, alerts = run(c / "min_crash_inputs.jsonl", reference_events=10, min_samples=5)
    assert summary["references_built"]["m v1"]["n"] >= 10  # whole windows holding the first 10 events
    prof = build_profile([json.loads(x) for x in (c / "min_crash_inputs.jsonl").read_text().splitlines()], "m", "1")
    assert list(prof.features) == ["score"] and prof.score is None


def test_07_features_named_like_reserved_fields_are_monitored():
    c = case("07_reserved_names")
    summary, alerts = run(c / "min_silent_inputs.jsonl", reference_events=500, min_samples=100)
    assert {a["feature"] for a in alerts if a["kind"] == "data_drift"} == {"score", "credit_score"}
    rows = [{"event_id": f"e{i}", "model": "m", "model_version": "1", "ts": float(i),
             "features": {n: float(i % 5) for n in ("score", "model", "label", "ts", "prediction", "event_id")}}
            for i in range(100)]
    prof = build_profile(rows, "m", "1")
    assert set(prof.features) == {"score", "model", "label", "ts", "prediction", "event_id"}
    assert prof.labels is None and prof.prediction is None


# --------------------------------------------------------------------------- 12 duplicates


def test_12_a_retried_event_is_counted_once():
    c = case("12_duplicates")
    s_unique, a_unique = run(c / "min_inputs_unique.jsonl", reference_events=800)
    s_retry, a_retry = run(c / "min_inputs_retried.jsonl", reference_events=800)
    assert s_retry["duplicate_events"] == 250 and s_unique["duplicate_events"] == 0
    assert s_retry["events_replayed"] == s_unique["events_replayed"] == 500
    assert a_retry == [] and a_unique == []
