"""`driftloop produce`: the pure parts (token bucket, file records, topic names) and the command on the real broker."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest

from streams.cli.produce import Invalid, Record, TokenBucket, read_records, resolve_topic
from streams.config import Topics
from streams.worker.partitioners import murmur2_partition


def _event(i: int, **extra) -> dict:
    return {"event_id": f"e-{i}", "model": "fraud", "model_version": "1", "ts": 1764124800.0 + i,
            "features": {"amount": 1.5 * i, "country": "DE"}, **extra}


def _jsonl(path: Path, n: int, bad: dict[int, bytes] | None = None) -> Path:
    """n good events; ``bad`` puts a raw line before event i (line numbers shift accordingly)."""
    with path.open("wb") as f:
        for i in range(n):
            if bad and i in bad:
                f.write(bad[i] + b"\n")
            f.write(json.dumps(_event(i)).encode() + b"\n")
    return path


def _table(n: int) -> pd.DataFrame:
    return pd.DataFrame({"event_id": [f"t-{i}" for i in range(n)], "ts": [1764124800.0 + i for i in range(n)],
                         "amount": [float(i) for i in range(n)], "country": ["DE", "FR"] * (n // 2) + ["DE"] * (n % 2),
                         "label": [i % 2 for i in range(n)]})


# --------------------------------------------------------------------------- pure


def test_token_bucket_spaces_takes_at_the_rate():
    now = [0.0]
    b = TokenBucket(10.0, burst=2, clock=lambda: now[0])
    assert [b.take() for _ in range(2)] == [0.0, 0.0]  # the burst
    assert b.take() == pytest.approx(0.1)
    now[0] += 0.1  # the caller slept
    assert b.take() == pytest.approx(0.1)
    now[0] += 10.0  # idle: at most `burst` tokens accumulate
    assert [b.take() for _ in range(2)] == [0.0, 0.0] and b.take() > 0


def test_token_bucket_unlimited_never_waits():
    b = TokenBucket(0.0)
    assert all(b.take() == 0.0 for _ in range(1000))


def test_jsonl_records_keep_line_numbers_and_keys(tmp_path):
    path = _jsonl(tmp_path / "in.jsonl", 3, bad={1: b"not json", 2: b'{"event_id": "x"}'})
    recs = list(read_records(path, "inputs"))
    assert [type(r) for r in recs] == [Record, Invalid, Record, Invalid, Record]
    assert [r.number for r in recs] == [1, 2, 3, 4, 5]
    assert "not_json" in recs[1].reason and "missing" in recs[3].reason
    assert recs[0].key == b"e-0" and json.loads(recs[0].value) == _event(0)  # the line as written


def test_labels_are_validated_as_labels(tmp_path):
    path = tmp_path / "labels.jsonl"
    path.write_text(json.dumps({"event_id": "e-1", "model": "fraud", "ts": 1.0, "label": 1}) + "\n"
                    + json.dumps(_event(2)) + "\n")
    recs = list(read_records(path, "labels"))
    assert isinstance(recs[0], Record) and recs[0].key == b"e-1"
    assert isinstance(recs[1], Invalid)  # an input is not a label


def test_a_labels_table_needs_no_features_and_no_model_version(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("event_id,ts,label\ne1,1.0,1\ne2,2.0,0\ne3,3.0,1\n")
    recs = list(read_records(path, "labels", model="fraud"))
    assert [json.loads(r.value) for r in recs] == [
        {"event_id": f"e{i}", "model": "fraud", "ts": float(i), "label": lab} for i, lab in ((1, 1), (2, 0), (3, 1))]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_table_rows_become_inputs_as_backtest_reads_them(tmp_path, suffix):
    df = _table(4)
    path = tmp_path / f"t{suffix}"
    df.to_csv(path, index=False) if suffix == ".csv" else df.to_parquet(path)
    recs = list(read_records(path, "inputs", model="fraud", version="1"))
    assert [r.number for r in recs] == [2, 3, 4, 5]  # the header is row 1
    ev = json.loads(recs[1].value)
    assert recs[1].key == b"t-1"
    assert ev["model"] == "fraud" and ev["model_version"] == "1" and ev["ts"] == 1764124801.0
    assert ev["features"] == {"amount": 1.0, "country": "FR"}  # event fields and the label are not features
    labels = [json.loads(r.value) for r in read_records(path, "labels", model="fraud", version="1")]
    assert labels[3] == {"event_id": "t-3", "model": "fraud", "ts": 1764124803.0, "label": 1}


def test_topic_names_resolve_through_the_config():
    t = Topics(inputs="my.in", labels="my.labels")
    assert resolve_topic("inputs", t) == ("my.in", "inputs")
    assert resolve_topic("labels", t) == ("my.labels", "labels")
    assert resolve_topic("alerts", t) == ("driftloop.alerts", "other")
    assert resolve_topic("my.in", t) == ("my.in", "inputs")  # the configured name itself is validated as inputs
    assert resolve_topic("anything.else", t) == ("anything.else", "other")


# --------------------------------------------------------------------------- the command on the real broker


def _consume(bootstrap: str, topic: str, n: int, timeout_s: float = 30.0) -> list:
    from kafka import KafkaConsumer

    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
                      group_id=None, consumer_timeout_ms=1000)
    out: list = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        out += list(c)
    c.close()
    return out


def _produce(tmp_path: Path, *argv: str) -> int:
    from streams.cli.main import main

    cfg = tmp_path / "driftloop.yaml"
    cfg.write_text("topics:\n  partitions: 3\n")
    return main(["--config", str(cfg), "produce", *argv, "--quiet"])


@pytest.mark.kafka
def test_produce_jsonl_keys_by_event_id_on_the_workers_partition(kafka_env, unique_topic, tmp_path, capsys):
    path = _jsonl(tmp_path / "in.jsonl", 60, bad={10: b"{oops", 20: b"[1, 2]"})
    assert _produce(tmp_path, str(path), "--topic", unique_topic, "--limit", "50") == 0
    out = capsys.readouterr()
    assert "sent 50 record(s)" in out.out and "skipped 2 invalid line(s)" in out.out
    assert f"{path}:11: skipped" in out.err and f"{path}:22: skipped" in out.err
    got = _consume(kafka_env, unique_topic, 50)
    assert len(got) == 50
    for m in got:
        assert m.key == json.loads(m.value)["event_id"].encode()
        assert m.partition == murmur2_partition(m.key, 3)  # where the worker's label join looks for it
    assert len({m.partition for m in got}) > 1


@pytest.mark.kafka
def test_produce_rate_limits(kafka_env, unique_topic, tmp_path, capsys, monkeypatch):
    """The command paces its sends by the token bucket: on a clock that moves only when it waits, 30 records at
    20/s (a burst of 2) take 28/20 s of waiting, whatever the machine's speed."""
    import types

    import streams.cli.produce as produce

    clock = [0.0]
    own_time = types.SimpleNamespace(**{k: getattr(time, k) for k in dir(time) if not k.startswith("_")})
    own_time.sleep = lambda s: clock.__setitem__(0, clock[0] + s)  # the command's waits only, not the client's
    monkeypatch.setattr(produce, "time", own_time)
    real_bucket = produce.TokenBucket
    monkeypatch.setattr(produce, "TokenBucket", lambda rate: real_bucket(rate, clock=lambda: clock[0]))
    path = _jsonl(tmp_path / "in.jsonl", 30)
    assert _produce(tmp_path, str(path), "--topic", unique_topic, "--rate", "20") == 0
    assert clock[0] == pytest.approx((30 - 2) / 20)
    assert len(_consume(kafka_env, unique_topic, 30)) == 30


@pytest.mark.kafka
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_produce_tables_to_inputs_and_labels(kafka_env, kafka_topic_factory, tmp_path, suffix, capsys):
    df = _table(20)
    path = tmp_path / f"t{suffix}"
    df.to_csv(path, index=False) if suffix == ".csv" else df.to_parquet(path)
    inputs, labels = kafka_topic_factory("in", partitions=3), kafka_topic_factory("lab", partitions=3)
    assert _produce(tmp_path, str(path), "--topic", inputs, "--model", "fraud", "--version", "1") == 0
    assert _produce(tmp_path, str(path), "--topic", labels, "--model", "fraud", "--version", "1") == 0
    ins, labs = _consume(kafka_env, inputs, 20), _consume(kafka_env, labels, 20)
    assert len(ins) == len(labs) == 20
    where = {m.key: m.partition for m in ins}
    assert all(where[m.key] == m.partition for m in labs)  # each label on its input's partition
    assert sorted(json.loads(m.value)["label"] for m in labs) == [0] * 10 + [1] * 10


@pytest.mark.kafka
def test_produce_strict_stops_at_the_first_invalid_line(kafka_env, unique_topic, tmp_path, capsys):
    path = _jsonl(tmp_path / "in.jsonl", 10, bad={5: b"nope"})
    assert _produce(tmp_path, str(path), "--topic", unique_topic, "--strict") == 2
    err = capsys.readouterr().err
    assert f"{path}:6: not_json" in err and "stopped after 5 record(s)" in err and "Traceback" not in err
