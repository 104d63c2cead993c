"""``driftloop backtest`` and ``driftloop reference`` end to end on generated files."""

import json

import numpy as np
import pytest

from streams.cli.main import main

T0 = 1_764_115_200.0
RATE = 10.0  # events per second
WINDOW = 50.0  # seconds: 500 events per window


def _write_inputs(path, n=20_000, drift_at=15_000, shift=0.8, seed=0, shuffle=True, bad=True, model="fraud"):
    """Events with a mean shift in ``f2`` from event ``drift_at``; the file is not in event-time order."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n) if shuffle else np.arange(n)
    lines = []
    for i in order:
        x = rng.normal(size=6)
        if i >= drift_at:
            x[2] += shift
        feats = {f"f{j}": round(float(x[j]), 5) for j in range(6)}
        feats["country"] = str(rng.choice(["DE", "FR", "IT"]))
        y = int(x[0] > 0)
        wrong = rng.random() < (0.1 if i < drift_at else 0.35)
        pred = 1 - y if wrong else y
        ts = T0 + i / RATE
        lines.append(json.dumps({"event_id": f"e{i}", "model": model, "model_version": "3",
                                 "ts": ts if i % 2 else _iso(ts), "features": feats, "prediction": pred,
                                 "scores": [0.2, 0.8] if pred else [0.8, 0.2], "_label": y}))
    if bad:
        lines.insert(10, "{this is not json")
        lines.insert(20, json.dumps({"event_id": "x1", "model": "fraud", "ts": T0}))  # no model_version, no features
        lines.insert(30, json.dumps({"event_id": "x2", "model": "fraud", "model_version": "3", "ts": T0, "features": {"f0": "NaN-ish", "f1": [1]}}))
    path.write_text("\n".join(lines) + "\n")
    return lines


def _iso(ts):
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


def _write_labels(inputs_lines, path, bad=True):
    out = []
    for line in inputs_lines:
        try:
            d = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "_label" in d:
            out.append(json.dumps({"event_id": d["event_id"], "model": d["model"], "ts": T0 + 1e5, "label": d["_label"]}))
    if bad:
        out.insert(5, json.dumps({"event_id": "e1", "model": "fraud"}))  # no label
    path.write_text("\n".join(out) + "\n")


def _alerts(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_backtest_without_reference_finds_the_drift_within_two_windows(tmp_path, capsys):
    inputs = tmp_path / "inputs.jsonl"
    _write_inputs(inputs)
    out = tmp_path / "alerts.jsonl"
    rc = main(["backtest", "--inputs", str(inputs), "--out", str(out), "--window-seconds", str(WINDOW),
               "--reference-events", "5000"])
    err = capsys.readouterr().err
    assert rc == 0
    # bad lines are reported with their line numbers and skipped
    assert f"{inputs}:11: skipped (not_json)" in err
    assert f"{inputs}:21: skipped (missing_field)" in err
    assert f"{inputs}:31: skipped (wrong_type)" in err
    assert "built from the 5000 events before t=" in err  # windows of 500 events: the cutoff is the 10th's end
    assert "events read: 20000 (bad lines skipped: 3), replayed: 15000" in err
    assert "windows judged: 30" in err
    alerts = _alerts(out)
    drift_t = T0 + 15_000 / RATE
    assert [(a["kind"], a["feature"]) for a in alerts] == [("data_drift", "f2")]
    a = alerts[0]
    assert drift_t <= a["window"]["start"] and a["window"]["end"] <= drift_t + 2 * WINDOW
    for key in ("alert_id", "model", "model_version", "kind", "feature", "metric", "score", "threshold", "p_value",
                "severity", "window", "reference", "emitted_at"):
        assert key in a
    assert a["model"] == "fraud" and a["model_version"] == "3" and a["reference"]["n"] == 5000


def test_backtest_with_reference_labels_and_config(tmp_path, capsys):
    train = tmp_path / "train.jsonl"
    lines = _write_inputs(train, n=6000, drift_at=10**9, seed=1, bad=False)
    # the training table carries labels: the profile gets a reference error rate
    train.write_text("\n".join(json.dumps({**json.loads(l), "label": json.loads(l)["_label"]}) for l in lines) + "\n")
    prof = tmp_path / "ref.json"
    assert main(["reference", "build", "--model", "fraud", "--version", "3", "--table", str(train), "--out", str(prof)]) == 0
    shown = capsys.readouterr()
    assert "wrote" in shown.err and "reference error rate" in shown.err
    inputs, labels = tmp_path / "inputs.jsonl", tmp_path / "labels.jsonl"
    lines = _write_inputs(inputs, n=12_000, drift_at=8_000, seed=2)
    _write_labels(lines, labels)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"drift:\n  window_seconds: {WINDOW}\n  min_samples: 400\n")
    out = tmp_path / "alerts.jsonl"
    rc = main(["--config", str(cfg), "backtest", "--reference", str(prof), "--inputs", str(inputs),
               "--labels", str(labels), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 0
    assert f"{labels}:6: skipped (missing_field)" in err
    assert "joined to inputs: 12000" in err
    alerts = _alerts(out)
    kinds = {a["kind"] for a in alerts}
    assert {"data_drift", "concept_drift", "performance"} <= kinds
    drift_t = T0 + 8_000 / RATE
    assert all(a["window"]["start"] >= drift_t - WINDOW for a in alerts)  # none before the drift
    concept = next(a for a in alerts if a["kind"] == "concept_drift")
    assert concept["details"]["detected_ts"] >= drift_t
    assert concept["details"]["detected_ts"] - drift_t <= 300 / RATE  # within 300 events
    assert json.loads(prof.read_text())["id"] == alerts[0]["reference"]["id"]


def test_backtest_is_deterministic_and_no_drift_means_no_alert(tmp_path, capsys):
    inputs = tmp_path / "in.jsonl"
    _write_inputs(inputs, n=12_000, drift_at=10**9, seed=3, bad=False)
    outs = []
    for k in range(2):
        out = tmp_path / f"a{k}.jsonl"
        assert main(["backtest", "--inputs", str(inputs), "--out", str(out), "--window-seconds", "50",
                     "--reference-events", "4000", "--quiet"]) == 0
        outs.append(_alerts(out))
    assert outs[0] == outs[1] == []
    capsys.readouterr()


def test_backtest_reports_missing_files_and_bad_config(tmp_path, capsys):
    assert main(["backtest", "--inputs", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("drift:\n  window_secs: 5\n")
    assert main(["--config", str(cfg), "backtest", "--inputs", str(inputs), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "window_secs" in capsys.readouterr().err


def test_reference_show(tmp_path, capsys):
    train = tmp_path / "train.csv"
    train.write_text("a,b\n1,x\n2,y\n3,x\n,\n")
    prof = tmp_path / "p.json"
    assert main(["reference", "build", "--model", "m", "--version", "1", "--table", str(train), "--out", str(prof)]) == 0
    assert main(["reference", "show", str(prof)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["features"]["a"]["kind"] == "numeric" and shown["features"]["b"]["kind"] == "categorical"
    assert shown["features"]["a"]["missing"] == 1


@pytest.mark.feast
def test_reference_build_from_the_feast_offline_store(feast_repo, tmp_path, capsys):
    from datetime import timedelta

    out = tmp_path / "ref.json"
    start = (feast_repo.end - timedelta(days=6)).isoformat()
    end = feast_repo.end.isoformat()
    rc = main(["reference", "build", "--model", "fraud", "--version", "1", "--start", start, "--end", end,
               "--repo", str(feast_repo.path), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    prof = json.loads(out.read_text())
    assert prof["n"] > 0 and prof["source"].startswith("feast offline store")
    assert "amount" in prof["features"] and "is_fraud" not in prof["features"]
    rc = main(["reference", "build", "--model", "nope", "--version", "1", "--start", start, "--end", end,
               "--repo", str(feast_repo.path), "--out", str(tmp_path / "x.json")])
    assert rc == 2 and "no training table" in capsys.readouterr().err
