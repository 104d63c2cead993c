"""The main demo (``driftloop demo``): real tweets, a pretrained backbone, a real change, a pipeline bug.

What runs, in order (the timeline is event time, so the outcome does not depend on the machine's load):

1. Kafka (driftloop's own broker, or yours from KAFKA_BOOTSTRAP_SERVERS) and this run's Feast
   repository (tweet text statistics of the real tweets, materialised into SQLite).
2. Version 1 of ``tweets`` (which outlet posted a health-news tweet): WordLlama's pretrained
   embeddings + encoder + head trained on 2013 (streams/demo/tweets_model.py), registered with its
   reference profile, replay buffer, backbone origin and licence decision, and promoted.
3. The drift worker and the retrain dispatcher (which starts a local Ray cluster and its dashboard).
4. The serving simulator (streams/demo/serving.py) serves the live version and publishes inputs,
   then labels 30 s of event time later, phase by phase (streams/demo/tweets_world.py):
   quiet (2013), change (2014: alerts, a retrain request, a Ray job, the gate; on promotion the
   simulator hot-swaps), recovery, pipeline bug (two served columns swapped: parity alerts, drift
   explained by them, no retrain), fixed.
5. The run directory and its HTML report (streams/report); every process it started is stopped
   unless ``--keep``.

Exit status 0 when every expectation held (no alert in the quiet phase; labels confirmed the change;
the gate decided; the bug was reported as parity and caused no retrain), else 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from streams import config as cfg
from streams.adapters.kafka_clients import child_section
from streams.cli.stack import LocalStack, StackProgress
from streams.cli.stack_procs import free_port
from streams.demo.processes import new_run_home, kafka_for_demo, say
from streams.errors import StackError
from streams.demo.recorder import RunRecorder
from streams.demo.serving import MIXUP, accuracy
from streams.demo.tweets_world import PHASES, TweetsPlan

DESCRIPTIONS = {
    "quiet": "2013 tweets (the reference period's traffic), served by version 1",
    "change": "January-June 2014: the world changed (outlet mix, topics, link shorteners)",
    "shadow": "July 2014, served by version 1 with the candidate in shadow (the live gate compares both)",
    "recovery": "July-December 2014, served by the live version",
    "pipeline_bug": f"a serving release swaps the columns {MIXUP[0]} and {MIXUP[1]}",
    "fixed": "the serving bug fixed",
}


def prepare_feature_store(repo: Path) -> None:
    """This run's Feast repository: the definitions of feature_repo/, its sources (the tweets' text statistics, and
    small payments sources), applied and materialised into a SQLite online store."""
    import shutil
    from datetime import datetime, timedelta, timezone

    from feature_repo import REPO_PATH, data_gen
    from feature_repo import store as st

    shutil.copytree(REPO_PATH, repo, ignore=shutil.ignore_patterns("data", "__pycache__", "*.db"))
    data_gen.generate(repo, days=2, n_customers=50, n_merchants=10, n_transactions=200)
    import contextlib
    import io

    fs = st.open_store(repo, "sqlite")
    with contextlib.redirect_stdout(io.StringIO()):  # Feast prints a coloured line per view
        st.apply(fs)
        st.materialize(fs, datetime.now(timezone.utc) + timedelta(seconds=1))


@dataclass
class Follower:
    """Reads the alerts, retrain-requests, retrain-results and model-updates topics; records and prints them, and
    hands model updates to the serving simulator (what a model server's update listener does)."""

    consumer: Any
    topics: dict[str, str]
    recorder: RunRecorder
    on_update: Callable[[Any], bool]
    plan: TweetsPlan
    alerts: list[Any] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)
    updates: list[Any] = field(default_factory=list)
    _seen: set = field(default_factory=set)

    def poll(self, timeout_ms: int = 500) -> None:
        from streams.contracts.events import Alert
        from trainers.records import ModelUpdate, RetrainResult

        order = [self.topics[t] for t in ("alerts", "retrain_requests", "retrain_results", "model_updates")]
        batches = self.consumer.poll(timeout_ms=timeout_ms)
        # one poll's records in the loop's causal order: alerts, then the request they caused, then results
        for tp in sorted(batches, key=lambda tp: order.index(tp.topic) if tp.topic in order else len(order)):
            for rec in batches[tp]:
                data = json.loads(rec.value)
                if rec.topic == self.topics["alerts"]:
                    a = Alert.from_dict(data)
                    if a.alert_id in self._seen:
                        continue  # at-least-once delivery: the alert id is stable
                    self._seen.add(a.alert_id)
                    self.alerts.append(a)
                    self.recorder.add("alerts", [data])
                    held = a.kind in ("performance", "concept_drift") and any(
                        p.kind == "parity" and p.model_version == a.model_version for p in self.alerts)
                    say(f"ALERT {a.severity:<8} {a.kind:<16} {a.feature or '-':<11} v{a.model_version} "
                        f"{a.metric}={a.score:.3f} (threshold {a.threshold}) in {self.phase_of(a.window.start)}"
                        + (f" [explained by {a.explained_by}]" if a.explained_by else "")
                        + (" [no retrain while a parity alert is open: worker.retrain.hold_while_parity_open]"
                           if held else ""))
                elif rec.topic == self.topics["retrain_requests"]:
                    self.requests.append(data)
                    self.recorder.add("retrain_requests", [data])
                    say(f"retrain request {data.get('request_id')} for v{data.get('model_version')} "
                        f"({', '.join(data.get('kinds', []))}; {data.get('n_labelled')} labelled examples of this "
                        "version so far, the job trains on those of the alert window)")
                elif rec.topic == self.topics["retrain_results"]:
                    res = RetrainResult(**data)
                    self.results.append(res)
                    self.recorder.add("retrain_results", [data])
                    say(f"Ray job {res.job_id}: {res.status}" + (f", candidate v{res.new_version}" if res.new_version
                                                                 else "") + (" promoted" if res.promoted else "")
                        + (" passed the gate: in shadow on live traffic" if res.shadow else ""))
                elif rec.topic == self.topics["model_updates"]:
                    upd = ModelUpdate.from_dict(data)
                    self.updates.append(upd)
                    self.recorder.add("model_updates", [data])
                    swapped = self.on_update(upd)
                    shadow = f"; v{upd.shadow} in shadow" if upd.shadow else "; no shadow"
                    say(f"serving simulator {'hot-swapped to' if swapped else 'serves'} v{upd.version}{shadow} "
                        f"({upd.action})")

    def phase_of(self, ts: float) -> str:
        for p in PHASES:
            if self.plan.phase_start(p) <= ts < self.plan.phase_end(p):
                return p
        return "after the run" if ts >= self.plan.phase_end(PHASES[-1]) else "before the run"

    def finished(self) -> list[Any]:
        """The final result of each retrain request, in order (one per request id)."""
        out: dict[str, Any] = {}
        for r in self.results:
            if r.status in ("succeeded", "rejected") or (r.status == "failed" and r.request_id not in out
                                                         and "gave up" in (r.error or "")):
                out.setdefault(r.request_id, r)
        return list(out.values())

    def final_result(self) -> Any:
        """The first retrain's final result (the one the demo's story waits for)."""
        done = self.finished()
        return done[0] if done else None

    def live_verdict(self, candidate: str) -> Any:
        """The model update that ended ``candidate``'s shadow (promote or reject), or None."""
        return next((u for u in self.updates if (u.action == "promote" and u.version == candidate)
                     or u.action == "reject"), None)


def watermarks(metrics_url: str, stream: str) -> list[float]:
    """The worker's event-time watermark per source partition of ``stream`` (from its /metrics)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = urllib.request.urlopen(metrics_url, timeout=2).read().decode()
    except OSError:
        return []
    return [s.value for fam in text_string_to_metric_families(text) if fam.name == "driftloop_watermark_seconds"
            for s in fam.samples if s.labels.get("stream") == stream]


def wait_for(what: str, done: Callable[[], bool], step: Callable[[], None], timeout_s: float, stack: Any) -> bool:
    """Call ``step`` until ``done()`` (True) or ``timeout_s`` (False), with a spinner; raises StackError when the
    worker or the dispatcher stops being healthy."""
    from tqdm import tqdm

    deadline = time.monotonic() + timeout_s
    checked = time.monotonic()
    with tqdm(desc=f"[demo] waiting for {what}", bar_format="{desc}: {elapsed}", leave=False,
              disable=not sys.stderr.isatty()) as bar:
        while not done():
            if stack is not None and time.monotonic() - checked > 10.0:
                checked = time.monotonic()
                down = [c for c in stack.status() if c.name in ("worker", "dispatcher") and not c.healthy]
                if down:
                    raise StackError(f"the {down[0].name} is {down[0].state}: {down[0].reason or 'see its log'}",
                                     f"read {stack.paths.log_file(down[0].name)}")
            if time.monotonic() > deadline:
                return False
            step()
            bar.update(0)
    return True


def run(args: argparse.Namespace) -> int:
    from kafka import KafkaConsumer, KafkaProducer

    from streams.adapters.kafka_admin import ensure_topics
    from streams.adapters.reference_store import ReferenceStore
    from streams.demo import tweets_model
    from streams.demo.serving import ServingSimulator
    from streams.demo.tweets_world import build_world
    from streams.judge.profile_build import build_profile

    import logging

    logging.getLogger("streams.adapters.kafka_admin").setLevel(logging.WARNING)  # the story says what it creates
    plan = TweetsPlan.quick() if getattr(args, "quick", False) else TweetsPlan()
    raw = cfg.load_file(args.config)
    topics0 = cfg.topics(raw)
    run_id, home = new_run_home()
    t0 = time.monotonic()
    stack = consumer = producer = None
    model = tweets_model.MODEL
    recorder = RunRecorder(home, {"domain": "tweets", "model": model, "window_seconds": plan.window_s,
                                  "registry": str(home / "registry"), "run_id": run_id})
    say(f"run {run_id}: files in {home}")
    with kafka_for_demo(raw, args.keep_running) as bootstrap:
        try:
            topics = {name: f"{getattr(topics0, name)}.demo-{run_id}" for name in
                      ("inputs", "labels", "alerts", "retrain_requests", "retrain_results", "labelled", "model_updates")}
            topics["partitions"] = topics0.partitions
            metrics_port = free_port()
            conf = {
                "kafka": child_section(bootstrap, cfg.kafka_settings(raw), home),
                "topics": topics,
                "drift": {"window_seconds": plan.window_s, "min_samples": plan.per_window // 2,
                          "reference_events": plan.per_window},
                "features": {"repo_path": str(home / "feature_repo")},
                # lookups share 2 cores with a Ray training job here: a wider timeout than the default 0.5 s
                "parity": {"enabled": True, "lookup": {"timeout_s": 5.0}},
                "worker": {
                    "app_id": f"driftloop-demo-{run_id}", "reference_dir": str(home / "references"),
                    "metrics_port": metrics_port, "label_ttl_s": 4 * plan.label_delay_s,
                    # a version without a registered reference (version 2) bootstraps it from its first window
                    "reference_bootstrap_n": plan.per_window,
                    # covariate drift alone only warns; labels must confirm (docs/design.md)
                    "retrain": {"min_labelled": 200, "cooldown_s": 3600.0, "kinds": ["performance", "concept_drift"]},
                },
                "dispatcher": {"state_dir": str(home / "dispatcher"), "registry": str(home / "registry"),
                               "metrics_port": free_port(),
                               "stop_local_cluster_on_exit": not args.keep_running},
                "licences": {"accept": tweets_model.LICENCE_ACCEPTANCE},
                # a candidate that passes the offline gate is served in shadow for the shadow phase; the live gate
                # decides on its labelled tweets (the last look at the phase's end), then watches the promotion
                "promotion": {"shadow": True, "min_samples": plan.n_events("shadow") // 2,
                              "max_samples": plan.n_events("shadow"), "watch_s": 2 * plan.window_s},
                "trainers": {"registry": str(home / "registry"), "min_examples": 100, "data_until": "window",
                             # the backbone stays frozen: the encoder and head adapt (fast on CPU; see
                             # bench/continual_text.py for the other strategies)
                             "learner": {"transfer": {"strategy": "layers", "layers": ["encoder*"]}}},
            }
            import yaml

            config_file = home / "driftloop.yaml"
            config_file.write_text(yaml.safe_dump(conf, sort_keys=False))
            env = {**os.environ, "DRIFTLOOP_HOME": str(home)}
            env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
            ensure_topics(bootstrap, [topics["inputs"], topics["labels"]], partitions=topics0.partitions)
            ensure_topics(bootstrap, [topics[t] for t in ("alerts", "retrain_requests", "retrain_results",
                                                           "model_updates")], partitions=1)
            say(f"config of this run: {config_file}")

            # ------------------------------------------------------------ feature store, version 1
            prepare_feature_store(home / "feature_repo")
            say(f"Feast repository applied and materialised: {home / 'feature_repo'} (tweet_stats of 62,215 tweets)")
            world = build_world(plan)
            learner, spec = tweets_model.train_version_1(world)
            rows = tweets_model.reference_rows(learner, spec, world, plan.t0 - 86_400.0)
            profile = build_profile(rows, model, "1", source="version 1's predictions on held-out 2013 tweets")
            ReferenceStore(home / "references").save(profile)
            recorder.meta["reference_profiles"] = [str(p.relative_to(home))
                                                   for p in sorted((home / "references").rglob("*.json"))]
            version = tweets_model.register_version_1(str(home / "registry"), learner, spec, world, profile.id)
            v1_quiet = float((learner.predict(spec.encode([{"text": t} for t in world.reference["text"]]))
                              == world.reference["outlet"].map({o: i for i, o in enumerate(world.outlets)})
                              .to_numpy()).mean())
            say(f"registered and promoted {model} v{version}: WordLlama embeddings (wordllama wheel) + encoder + head, "
                f"{len(world.outlets)} outlets, trained on {len(world.train)} tweets of 2013 "
                f"({v1_quiet:.1%} on held-out 2013); reference profile {profile.id}")

            # ------------------------------------------------------------ worker + dispatcher (+ Ray)
            stack = LocalStack(conf, home, str(config_file), on_progress=StackProgress(prefix="[demo]"))
            info = stack.up()
            for line in info.lines():
                say(line)
            _say_dashboard(stack, home, config_file)
            metrics_url = info.metrics_url

            sim = ServingSimulator(str(home / "registry"), model)
            consumer = KafkaConsumer(**bootstrap.kafka_python(), auto_offset_reset="earliest",
                                     enable_auto_commit=False, group_id=f"driftloop-demo-follow-{run_id}")
            consumer.subscribe([topics[t] for t in ("alerts", "retrain_requests", "retrain_results", "model_updates")])
            follow = Follower(consumer, topics, recorder, sim.on_model_update, plan)
            producer = KafkaProducer(**bootstrap.kafka_python(), acks="all", linger_ms=20)
            served: dict[str, Any] = {}

            def publish(phase: str) -> None:
                df = world.phases[phase]
                s = sim.serve(zip(df["tweet_id"], df["text"], df["outlet"]), t_start=plan.phase_start(phase),
                              rate=plan.rate, label_delay_s=plan.label_delay_s,
                              column_mixup=phase == "pipeline_bug")
                served[phase] = s
                # in event-time order, as a live system sees them: each label arrives label_delay_s after its input
                stream = sorted([(r["ts"], 0, i, r) for i, r in enumerate(s.inputs)] +
                                [(r["ts"], 1, i, r) for i, r in enumerate(s.labels)], key=lambda r: r[:3])
                for _, is_label, _, rec in stream:
                    producer.send(topics["labels" if is_label else "inputs"], json.dumps(rec).encode(),
                                  key=rec["event_id"].encode())
                producer.flush()
                recorder.add("inputs", s.inputs)
                recorder.add("labels", s.labels)
                recorder.phase(phase, plan.phase_start(phase), plan.phase_end(phase), DESCRIPTIONS[phase])
                say(f"phase {phase:<12} {len(s.inputs)} tweets served by v{s.version}, live accuracy "
                    f"{accuracy(s.inputs, s.labels):.1%} ({DESCRIPTIONS[phase]})")

            # ------------------------------------------------------------ quiet, then the change
            publish("quiet")
            publish("change")
            ok = wait_for("the retrain: alerts, request, Ray job, gate", lambda: follow.final_result() is not None
                          and (not follow.final_result().promoted or sim.version == follow.final_result().new_version),
                          follow.poll, args.timeout, stack)
            if not ok:
                say(f"no retrain result within {args.timeout:.0f}s; see the logs in {home}")
                return _fail(stack, recorder)
            final = follow.final_result()
            _record_gate(recorder, home / "registry", model, final)

            # ------------------------------------------------------------ the candidate in shadow, the live gate
            publish("shadow")
            live = None
            if final.shadow:
                ok = wait_for(f"the live gate's verdict on v{final.new_version} in shadow",
                              lambda: (u := follow.live_verdict(final.new_version)) is not None
                              and (u.action != "promote" or sim.version == u.version), follow.poll, args.timeout, stack)
                if not ok:
                    say(f"no live-gate verdict within {args.timeout:.0f}s; see the dispatcher log in {home}")
                    return _fail(stack, recorder)
                live = follow.live_verdict(final.new_version)
                judged = sim.registry.info(model, final.new_version).live_verdict or {}
                say(f"live gate: {judged.get('reason') or live.action} (the shadow phase: "
                    f"{_shadow_accuracy(served['shadow'])}; `driftloop models show {model} {final.new_version}`)")

            # ------------------------------------------------------------ recovery, the bug, fixed
            publish("recovery")
            publish("pipeline_bug")
            publish("fixed")
            bug_end = plan.phase_end("pipeline_bug")
            ok = wait_for("the worker to judge the pipeline-bug windows",
                          lambda: min(watermarks(metrics_url, "inputs") or [0.0]) >= bug_end, follow.poll,
                          args.timeout, stack)
            for _ in range(6):  # what the worker sent with those windows
                follow.poll(500)
            if not ok:
                say(f"the worker did not reach the end of the bug within {args.timeout:.0f}s; see {home}")
                return _fail(stack, recorder)
            # a later request (v2 judged against its own reference: July-December moved on from its January-June
            # training window) runs to its end too, so the run shows where it got to
            if not wait_for("every retrain to end", lambda: len(follow.finished()) >= len(follow.requests),
                            follow.poll, args.timeout, stack):
                say(f"a retrain did not end within {args.timeout:.0f}s; see the dispatcher log in {home}")
            for res in follow.finished()[1:]:
                say(f"later retrain of v{res.parent_version}: {res.status}"
                    + (f", candidate v{res.new_version} in shadow: no traffic is left in this run to judge it live"
                       if res.shadow else f", candidate v{res.new_version} promoted" if res.promoted else ""))
            _snapshot_metrics(metrics_url, home / "metrics.prom")
            kept = sim.accuracy_of("1", served["recovery"].inputs, served["recovery"].labels)
            from streams.judge.drift_config import DriftConfig

            drift_cfg = cfg.section(DriftConfig, conf["drift"], "drift")  # the report judges as the worker did
            promoted = final.promoted or (live is not None and live.action == "promote")
            return _conclude(follow, served, final, promoted, kept, recorder, home, time.monotonic() - t0, drift_cfg)
        finally:
            for client in (consumer, producer):
                if client is not None:
                    client.close()
            if stack is not None and not args.keep_running:
                say("stopping: " + "; ".join(stack.down()))
            elif stack is not None:
                where = f"DRIFTLOOP_HOME={home} driftloop --config {config_file}"
                say(f"--keep: everything is still running. Look with `{where} status`, stop with `{where} down`, "
                    f"and Kafka with `DRIFTLOOP_HOME={cfg.home()} driftloop kafka stop`")


def _snapshot_metrics(url: str, path: Path) -> None:
    """The worker's /metrics at the end of the run (what Prometheus and the Grafana dashboard would show)."""
    import urllib.request

    try:
        path.write_bytes(urllib.request.urlopen(url, timeout=5).read())
    except OSError as exc:
        say(f"could not read the worker's /metrics ({exc}); no metrics snapshot")


def _record_gate(recorder: RunRecorder, registry: Path, model: str, final: Any) -> None:
    if not final.new_version:
        return
    from trainers.registry import ModelRegistry

    loaded = ModelRegistry(registry).load(model, final.new_version, with_replay=False)
    report = loaded.report or {}
    recorder.add("gate_reports", [{"model": model, "version": final.new_version, "promoted": bool(final.promoted),
                                   "status": final.status, "reasons": list(report.get("reasons", [])),
                                   "report": report}])
    gate = report.get("gate", report)

    def pct(key: str, d: Any = gate) -> str:
        v = d.get(key) if isinstance(d, dict) else None
        return "?" if v is None else f"{v:.1%}"

    verdict = ("promoted" if final.promoted else "passed: in shadow next" if final.shadow
               else "refused: " + "; ".join(report.get("reasons", [])[:1]))
    say(f"promotion gate on v{final.new_version}: new data {pct('accuracy_new_before')} -> {pct('accuracy_new_after')}, "
        f"old data (v1's replay hold-out) {pct('accuracy_old_before')} -> {pct('accuracy_old_after')}; plain "
        f"fine-tuned baseline {pct('accuracy_new', gate.get('baseline'))} new / {pct('accuracy_old', gate.get('baseline'))} "
        f"old; {verdict} "
        f"(`driftloop models show {model} {final.new_version}` prints the whole report)")


def _fail(stack: Any, recorder: RunRecorder) -> int:
    for name in ("worker", "dispatcher"):
        log = stack.paths.log_file(name)
        tail = log.read_bytes()[-2500:].decode("utf-8", "replace") if log.exists() else "(no log)"
        print(f"--- {name} log tail ({log}) ---\n{tail}")
    recorder.finish({"verdict": "did not finish"})
    return 1


def _say_dashboard(stack: Any, home: Path, config_file: Path) -> None:
    """Where the Ray dashboard is and how to log in (the local cluster uses token authentication)."""
    try:
        d = stack.dashboard()
    except Exception as exc:  # the demo goes on without the hint
        say(f"Ray dashboard: unknown ({exc})")
        return
    login = (f"log in with the token in {d.token_path}" if d.auth_mode == "token" and d.token_path
             else f"authentication: {d.auth_mode}")
    say(f"Ray dashboard: {d.url} ({login}; or `DRIFTLOOP_HOME={home} driftloop --config {config_file} dashboard`); "
        "the retrain appears there as a job")


def _shadow_accuracy(served: Any) -> str:
    """Live and shadow accuracy of the shadow phase's tweets, in words."""
    shadowed = [r for r in served.inputs if r.get("shadow")]
    if not shadowed:
        return "no shadow predictions"
    live = accuracy(shadowed, served.labels)
    cand = accuracy([dict(r, prediction=r["shadow"]["prediction"]) for r in shadowed], served.labels)
    return f"v{served.version} {live:.1%} live vs v{shadowed[0]['shadow']['model_version']} {cand:.1%} in shadow"


def _conclude(follow: Follower, served: dict, final: Any, promoted: bool, v1_recovery: float, recorder: RunRecorder,
              home: Path, elapsed: float, drift_cfg: Any) -> int:
    """Check the expectations, print the outcome, write the report."""
    in_phase = lambda a, p: follow.phase_of(a.window.start) == p  # noqa: E731
    quiet = [a for a in follow.alerts if in_phase(a, "quiet")]
    confirmed = [a for a in follow.alerts if a.kind in ("performance", "concept_drift") and in_phase(a, "change")]
    bug_parity = [a for a in follow.alerts if a.kind == "parity" and in_phase(a, "pipeline_bug")]
    explained = [a for a in follow.alerts if in_phase(a, "pipeline_bug") and a.kind == "data_drift" and a.explained_by]
    unexplained = [a for a in follow.alerts if in_phase(a, "pipeline_bug") and a.kind != "parity"
                   and not a.explained_by]
    # a drift alert on a swapped column already open when the bug starts (hysteresis: one open alert per finding)
    open_before = [a for a in follow.alerts if a.kind == "data_drift" and a.feature in MIXUP
                   and a.model_version == served["pipeline_bug"].version
                   and a.window.start < follow.plan.phase_start("pipeline_bug")]
    bug_requests = [r for r in follow.requests if r.get("window_end", 0) > follow.plan.phase_start("pipeline_bug")]
    before = accuracy(served["change"].inputs, served["change"].labels)
    after = accuracy(served["recovery"].inputs, served["recovery"].labels)
    checks = {
        "no alert in the quiet phase": not quiet,
        "labels confirmed the change (performance or concept alert)": bool(confirmed),
        "the gate decided on a candidate": final.status in ("succeeded", "rejected"),
        "the live gate decided on the candidate in shadow": not final.shadow or follow.live_verdict(final.new_version)
        is not None,
        "the pipeline bug raised a parity alert": bool(bug_parity),
        "drift during the bug explained by parity (or open since before it)": bool(explained) or (
            bool(open_before) and not [a for a in unexplained if a.kind == "data_drift" and a.feature in MIXUP]),
        "no retrain request for the bug": not bug_requests,
    }
    outcome = {
        "verdict": f"v{final.new_version} promoted" if promoted else f"retrain {final.status}, v1 kept",
        "promoted_version": final.new_version if promoted else None,
        "accuracy_before": round(before, 4), "accuracy_after": round(after, 4),
        "accuracy_after_if_v1_kept": round(v1_recovery, 4),
        "served_after_change": served["recovery"].version,
        "alerts": len(follow.alerts), "checks": checks, "elapsed_s": round(elapsed, 1),
        "unexplained_alerts_during_bug": len(unexplained),
    }
    # every reference the run made (version 1's, and each candidate's from its training window): the report judges
    # each version's traffic against its own, as the worker did
    recorder.meta["reference_profiles"] = [str(p.relative_to(home)) for p in sorted((home / "references").rglob("*.json"))]
    recorder.finish(outcome)
    from streams.report import write_report

    page = write_report(home, config=drift_cfg)
    say(f"live accuracy: {before:.1%} with v1 while the world changed; then {after:.1%} with "
        f"v{served['recovery'].version} after the {'hot swap' if promoted else 'rejected retrain'} "
        f"(v1 would have scored {v1_recovery:.1%} on the same tweets)")
    for what, held in checks.items():
        say(f"{'ok ' if held else 'NOT'} {what}")
    say(f"{outcome['verdict']}; {len(follow.alerts)} alerts; {elapsed:.0f}s in all")
    say(f"report: {page}")
    return 0 if all(checks.values()) else 1
