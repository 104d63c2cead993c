"""The card-payments demo (``driftloop demo --domain payments``): synthetic payments, a model trained on the spot.

1. Kafka: driftloop's own broker (or yours, from KAFKA_BOOTSTRAP_SERVERS).
2. A base model ``fraud`` v1, trained on pre-drift labelled traffic, registered with its
   reference profile, replay buffer and provenance, and promoted.
3. The Faust drift worker (``driftloop worker``) and the retrain dispatcher
   (``driftloop dispatcher``, which starts a local Ray cluster with its dashboard).
4. Traffic: clean card payments, then a changed world (``amount`` x3 and a concept change:
   part of the labels flip), labels later, malformed records mixed in.
5. Alerts as they arrive on the alerts topic; the retrain request they cause becomes a Ray job
   that fine-tunes v1 with replay, and the promotion gate decides on v2.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from streams import config as cfg
from streams.adapters.kafka_clients import child_section
from streams.demo.processes import new_run_home, Child, kafka_for_demo, say
from streams.demo.processes import cli as _cli

MODEL = "fraud"


def run(args: argparse.Namespace) -> int:
    """The payments loop; 0 when it finished with a gate verdict and no alert before the change."""
    from kafka import KafkaConsumer, KafkaProducer

    from streams.contracts.events import Alert, LabelledExample
    from trainers.records import RetrainResult
    from streams.contracts.validate import parse_input
    from streams.adapters.kafka_admin import ensure_topics
    from streams.judge.profile_build import build_profile
    from streams.cli.sample import CATEGORICAL, CHANNELS, COUNTRIES, NUMERIC, Drift, SampleTraffic, fraud_ring, malformed

    import logging

    logging.getLogger("streams.adapters.kafka_admin").setLevel(logging.WARNING)
    raw = cfg.load_file(args.config)
    topics0 = cfg.topics(raw)
    run_id, home = new_run_home()
    t0 = time.monotonic()
    children: list[Child] = []
    with kafka_for_demo(raw, args.keep_running) as bootstrap:
        try:
            # ---------------------------------------------------------------- config of this run
            topics = {name: f"{getattr(topics0, name)}.demo-{run_id}" for name in
                      ("inputs", "labels", "alerts", "retrain_requests", "retrain_results", "labelled", "model_updates")}
            topics["partitions"] = topics0.partitions
            per_window = int(args.rate * args.window_seconds)
            conf = {
                "kafka": child_section(bootstrap, cfg.kafka_settings(raw), home),
                "topics": topics,
                "drift": {"window_seconds": args.window_seconds, "min_samples": min(500, per_window // 2)},
                "worker": {
                    "app_id": f"driftloop-demo-{run_id}", "reference_dir": str(home / "references"),
                    "metrics_port": 0, "label_ttl_s": 90.0,  # labels arrive 30 s after their inputs
                    # covariate drift alone only warns; labels must confirm (docs/design.md)
                    "retrain": {"min_labelled": 200, "cooldown_s": 3600.0, "kinds": ["performance", "concept_drift"]},
                },
                "dispatcher": {"state_dir": str(home / "dispatcher"), "registry": str(home / "registry"),
                               "stop_local_cluster_on_exit": True},
                "trainers": {"registry": str(home / "registry"), "min_examples": 100, "slices": ["country"],
                             "replay_policy": "reservoir", "data_until": "latest",
                             # no logit adjustment: it helps class-incremental streams, but on a rare-positive
                             # task scored by accuracy it trades accuracy for minority recall
                             "learner": {"logit_adjust": 0.0}},
            }
            config_file = home / "driftloop.yaml"
            import yaml

            config_file.write_text(yaml.safe_dump(conf, sort_keys=False))
            env = {**os.environ, "DRIFTLOOP_HOME": str(home)}
            env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
            ensure_topics(bootstrap, [topics["inputs"], topics["labels"]], partitions=topics0.partitions)
            say(f"config of this run: {config_file}")

            # ---------------------------------------------------------------- base model v1
            traffic = SampleTraffic(seed=11, rate_per_s=args.rate, start_ts=1_764_115_200.0)
            train_events = SampleTraffic(seed=5, rate_per_s=args.rate, start_ts=traffic.start_ts - 86_400).events(6000)
            train_labels = {lab["event_id"]: lab["label"] for lab in SampleTraffic(seed=5).labels(train_events)}
            train_file = home / "train.jsonl"
            with open(train_file, "w") as f:
                for ev in train_events:
                    parsed = parse_input(ev)
                    ex = LabelledExample(parsed.event_id, MODEL, "1", parsed.ts, parsed.features,
                                         float(train_labels[ev["event_id"]]), parsed.prediction, parsed.scores, parsed.entity)
                    f.write(json.dumps(ex.to_dict()) + "\n")
            profile = build_profile([parse_input(e) for e in train_events], MODEL, "1", prediction_column="prediction")
            from streams.adapters.reference_store import ReferenceStore

            ReferenceStore(home / "references").save(profile)  # where the worker looks it up (by id)
            spec = {"feature_names": NUMERIC + CATEGORICAL, "n_classes": 2, "hidden": [64, 64],
                    "categorical": {"country": COUNTRIES, "channel": CHANNELS}}
            (home / "spec.json").write_text(json.dumps(spec))
            _cli(["--config", str(config_file), "models", "register-base", MODEL, "--spec", str(home / "spec.json"),
                  "--source", "trained here on seeded demo traffic (streams/cli/sample.py)", "--licence", "Apache-2.0",
                  "--train", str(train_file), "--epochs", "8",
                  # reservoir replay keeps the class prior of an imbalanced task (fraud is rare);
                  # class-balanced replay suits class-incremental tasks
                  "--replay-policy", "reservoir", "--reference-profile", profile.id, "--promote", "--no-publish"], env)
            say(f"registered base model {MODEL} v1 (trained on {len(train_events)} labelled events) "
                f"with reference profile {profile.id}")

            # ---------------------------------------------------------------- worker + dispatcher
            children.append(Child("worker", ["--config", str(config_file), "worker"], env, home / "worker.log"))
            children.append(Child("dispatcher", ["--config", str(config_file), "dispatcher"], env, home / "dispatcher.log"))
            say(f"started the drift worker and the retrain dispatcher (logs: {home}/worker.log, dispatcher.log)")

            # ---------------------------------------------------------------- traffic
            n_clean = n_drift = args.windows * per_window
            change_at = traffic.start_ts + n_clean / args.rate
            traffic.drifts.append(Drift("amount", change_at, scale=3.0))
            events = traffic.events(n_clean + n_drift)
            # The changed world: amounts x3 (covariate drift) and a fraud ring on large web payments
            # (concept drift: a learnable new pattern that v1 misses).
            labels = traffic.labels(events[:n_clean], delay_s=30) + \
                SampleTraffic(seed=12).labels(events[n_clean:], delay_s=30, rule=fraud_ring(150.0))
            bad = malformed(args.bad, seed=3)
            producer = KafkaProducer(**bootstrap.kafka_python(), acks="all", linger_ms=20)
            stride = max(1, len(events) // max(1, len(bad)))
            # In event-time order, as a live system sees them: each label arrives 30 s after its input.
            stream = sorted([(ev["ts"], 0, i, ev) for i, ev in enumerate(events)] +
                            [(lab["ts"], 1, i, lab) for i, lab in enumerate(labels)], key=lambda r: r[:3])
            for _, is_label, i, rec in stream:
                topic = topics["labels"] if is_label else topics["inputs"]
                producer.send(topic, json.dumps(rec).encode(), key=rec["event_id"].encode())
                if not is_label and i % stride == 0 and i // stride < len(bad):
                    producer.send(topics["inputs"], bad[i // stride])
            producer.flush()
            producer.close()
            say(f"published {len(events)} events ({args.windows} clean windows of {per_window}, then {args.windows} "
                f"with 'amount' x3 and a fraud ring on web payments over 150), {len(labels)} labels and {len(bad)} malformed records")

            # ---------------------------------------------------------------- follow alerts and results
            consumer = KafkaConsumer(**bootstrap.kafka_python(), auto_offset_reset="earliest", enable_auto_commit=False,
                                     group_id=f"driftloop-demo-follow-{run_id}")
            ensure_topics(bootstrap, [topics["alerts"], topics["retrain_results"], topics["retrain_requests"]],
                          partitions=1)
            consumer.subscribe([topics["alerts"], topics["retrain_requests"], topics["retrain_results"]])
            seen: set[str] = set()
            alerts: list[Alert] = []
            final: RetrainResult | None = None
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline and final is None:
                for c in children:
                    if not c.alive():
                        raise RuntimeError(f"the {c.name} stopped ({c.proc.returncode}); its log ends with:\n{c.tail()}")
                for recs in consumer.poll(timeout_ms=1000).values():
                    for rec in recs:
                        data = json.loads(rec.value)
                        if rec.topic == topics["alerts"]:
                            a = Alert.from_dict(data)
                            if a.alert_id in seen:
                                continue
                            seen.add(a.alert_id)
                            alerts.append(a)
                            when = a.window.start - change_at
                            say(f"ALERT {a.severity:<8} {a.kind:<16} {a.feature or '-':<14} {a.metric}={a.score:.3f} "
                                f"(threshold {a.threshold}) window at {when:+.0f}s from the change, n={a.window.n}"
                                + (f" [explained by {a.explained_by}]" if a.explained_by else ""))
                        elif rec.topic == topics["retrain_requests"]:
                            say(f"retrain request {data.get('request_id')} for {data.get('model')} v{data.get('model_version')} "
                                f"({', '.join(data.get('kinds', []))}, {data.get('n_labelled')} labelled examples)")
                        else:
                            res = RetrainResult(**data)
                            say(f"retrain {res.status}: job {res.job_id}" + (f" -> v{res.new_version}" if res.new_version else ""))
                            if res.status in ("succeeded", "rejected", "failed"):
                                final = res
            consumer.close()
            if final is None:
                say(f"the loop did not finish within {args.timeout:.0f}s; see the logs in {home}")
                for c in children:
                    print(f"--- {c.name} log tail ---\n{c.tail()}")
                return 1

            # ---------------------------------------------------------------- outcome
            say("promotion gate report:")
            print(_cli(["--config", str(config_file), "models", "show", MODEL, final.new_version or ""], env))
            print(_cli(["--config", str(config_file), "models", "list", MODEL], env))
            before = [a for a in alerts if a.window.end <= change_at]
            say(f"{len(alerts)} alerts, {len(before)} before the change; retrain {final.status}, "
                f"{'promoted' if final.promoted else 'not promoted'}; {time.monotonic() - t0:.0f}s in all")
            return 0 if final.status in ("succeeded", "rejected") and not before else 1
        finally:
            for c in reversed(children):
                c.stop()
            if children:
                say("stopped the worker and the dispatcher (and the Ray cluster it started)")
