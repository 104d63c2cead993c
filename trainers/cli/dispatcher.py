"""``driftloop dispatcher``: retrain requests from Kafka become Ray jobs (Ray Jobs API).

A thin shell around :class:`trainers.dispatch.ledger.DispatchLedger`: a kafka-python consumer
group reads the retrain-requests topic (offsets committed only after each request is
recorded in the ledger file, or dead-lettered to ``<topic>.dlq`` when it is no request or
:func:`trainers.dispatch.validate.check_request` refuses it: malformed ids or names, a bad window,
an unknown kind, a model or version the registry does not hold), :class:`JobsAdapter` submits ``python -m
trainers.retrain_job`` through ``JobSubmissionClient`` with a submission id derived from
the request (``retrain-<model>-v<version>-<request>-a<attempt>``) and metadata {model, version,
request_id, alert_ids, kinds, n_labelled, ...}, polls running jobs and reads each finished job's
result line from its logs; results go to the retrain-results topic and are counted on
``/metrics`` (``dispatcher.metrics_port``).  What the Ray dashboard shows: a promoted candidate's job
SUCCEEDED; a rejected one FAILED with exit code 3 and a status message ending in the job's verdict
("candidate v3 rejected by the promotion gate: ..."), recorded in the ledger as ``rejected``, not retried.  With no ``dispatcher.ray_address`` it reuses or starts a local Ray
cluster (dashboard on 127.0.0.1, token authentication on) that outlives the dispatcher,
so a restart finds its running jobs again.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from streams.contracts.events import DeadLetter, InvalidRecord
from trainers.records import RetrainRequest, RetrainResult
from streams.contracts.validate import decode_json
from trainers.dispatch.validate import Refusal, check_request
from trainers.dispatch.ledger import (
    TERMINAL_JOB, DispatchLedger, DispatcherConfig, Publish, Submit, is_duplicate_submission_error, job_metadata,
    parse_job_result,
)

log = logging.getLogger("driftloop.dispatcher")

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the repository (trainers/cli/dispatcher.py)


class JobsAdapter:
    """Carries out submissions and status polls through the Ray Jobs API."""

    def __init__(self, client: Any, *, settings: Mapping[str, Any], registry: str, python: str = "python",
                 runtime_env: str = "pythonpath", labelled_file: str = "", publish: str = "kafka",
                 entrypoint_num_cpus: float = 0.0, extra_env: Mapping[str, str] | None = None) -> None:
        self.client = client
        self.settings = dict(settings)
        self.registry = registry
        self.python = python
        self.runtime_env_mode = runtime_env
        self.labelled_file = labelled_file
        self.publish = publish
        self.entrypoint_num_cpus = entrypoint_num_cpus
        self.extra_env = dict(extra_env or {})

    def entrypoint(self, req: RetrainRequest, sid: str) -> str:
        # the job id first: the Ray dashboard's entrypoint column then starts with the readable name
        args = [self.python, "-m", "trainers.retrain_job", "--job-id", sid, "--request", req.to_json(),
                "--registry", self.registry, "--settings", json.dumps(self.settings, sort_keys=True),
                "--publish", self.publish, "--no-publish-result"]
        if self.labelled_file:
            args += ["--labelled-file", self.labelled_file]
        return " ".join(shlex.quote(a) for a in args)

    def runtime_env(self) -> dict[str, Any]:
        env_vars = dict(self.extra_env)
        if self.runtime_env_mode == "working_dir":
            return {"working_dir": str(PROJECT_ROOT), "env_vars": env_vars,
                    "excludes": [".venv", ".git", ".driftloop", ".whl", ".gl", "bench/results",
                                 "feature_repo/data", "**/__pycache__", "*.npz"]}
        env_vars["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        return {"env_vars": env_vars}

    @staticmethod
    def metadata(req: RetrainRequest, attempt: int, sid: str = "") -> dict[str, str]:
        return job_metadata(req, attempt, sid)

    def submit(self, action: Submit, tries: int = 3, backoff_s: float = 1.0) -> bool:
        """Submit; returns True when Ray already had this submission id (adopted), raises on other errors.

        Transient errors (the job agent still starting, a dropped connection) are retried
        ``tries`` times under the same submission id, so a submit that did reach Ray is
        adopted, never doubled.
        """
        for i in range(tries):
            try:
                self.client.submit_job(entrypoint=self.entrypoint(action.request, action.submission_id),
                                       submission_id=action.submission_id, runtime_env=self.runtime_env(),
                                       metadata=self.metadata(action.request, action.attempt, action.submission_id),
                                       entrypoint_num_cpus=self.entrypoint_num_cpus)
                return False
            except Exception as exc:
                if is_duplicate_submission_error(exc):
                    return True
                if i == tries - 1 or not _transient(exc):
                    raise
                log.info("submit of %s failed (%s); retrying", action.submission_id, str(exc).splitlines()[-1:])
                time.sleep(backoff_s * (i + 1))
        raise AssertionError("unreachable")

    def status(self, sid: str) -> tuple[str, str]:
        info = self.client.get_job_info(sid)
        return str(getattr(info.status, "value", info.status)), info.message or ""

    def result(self, sid: str) -> dict[str, Any] | None:
        return parse_job_result(self.client.get_job_logs(sid))


def _transient(exc: BaseException) -> bool:
    text = str(exc)
    return any(m in text for m in ("Server disconnected", "Connection refused", "Max retries exceeded",
                                   "status code 500", "status code 502", "status code 503", "timed out"))


class Dispatcher:
    """Applies ledger actions with a :class:`JobsAdapter`, persists the ledger, publishes results."""

    def __init__(self, ledger: DispatchLedger, ledger_path: str | os.PathLike, jobs: JobsAdapter,
                 publish: Callable[[RetrainResult], None], metrics: Any = None) -> None:
        self.ledger = ledger
        self.ledger_path = Path(ledger_path)
        self.jobs = jobs
        self.publish = publish
        self.metrics = metrics  # trainers.dispatch.metrics.DispatcherMetrics, or None
        self.submit_times: dict[str, float] = {}

    @classmethod
    def open(cls, ledger_path: str | os.PathLike, jobs: JobsAdapter, publish: Callable[[RetrainResult], None],
             max_attempts: int = 3, prefix: str = "retrain", metrics: Any = None) -> "Dispatcher":
        p = Path(ledger_path)
        if p.is_file():
            ledger = DispatchLedger.from_dict(json.loads(p.read_text(encoding="utf-8")), max_attempts)
        else:
            ledger = DispatchLedger(max_attempts, prefix)
        return cls(ledger, p, jobs, publish, metrics)

    def save(self) -> None:
        from trainers.registry import _write_json_atomic

        self.ledger_path.parent.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(self.ledger_path, self.ledger.to_dict())

    def handle(self, req: RetrainRequest) -> None:
        """One request: recorded (ledger saved) before anything is submitted."""
        actions = self.ledger.on_request(req)
        self.save()
        self._apply(actions)

    def recover(self) -> None:
        """After a restart: resubmit recorded-but-unsubmitted requests, then poll jobs in flight."""
        self._apply(self.ledger.recover())
        self.poll()

    def poll(self) -> None:
        for rid, sid in self.ledger.in_flight():
            try:
                status, message = self.jobs.status(sid)
            except Exception as exc:  # job unknown to this cluster (e.g. the cluster was replaced)
                if "does not exist" in str(exc) or "not found" in str(exc).lower():
                    self._apply(self.ledger.on_job_status(rid, sid, "FAILED", message=f"job vanished: {exc}"))
                    continue
                log.warning("cannot poll job %s: %s", sid, exc)
                continue
            result = self.jobs.result(sid) if status in TERMINAL_JOB else None
            self._apply(self.ledger.on_job_status(rid, sid, status, message=message, job_result=result))

    def _apply(self, actions: list) -> None:
        """Carry out actions; the ledger is saved after each submit and at the end.

        Results are published before the state that produced them is saved: a crash in
        between re-publishes a result after the restart (at least once), never loses it.
        """
        queue = list(actions)
        if not queue:
            return
        while queue:
            action = queue.pop(0)
            if isinstance(action, Publish):
                r = action.result
                verdict = self.ledger.entries[r.request_id].verdict if r.request_id in self.ledger.entries else ""
                if verdict and r.status in ("succeeded", "rejected"):
                    log.info("job %s: %s", r.job_id, verdict)
                self.publish(r)
                if self.metrics is not None:
                    self.metrics.count(r)
                continue
            assert isinstance(action, Submit)
            rid = action.request.request_id
            try:
                adopted = self.jobs.submit(action)
            except Exception as exc:
                log.warning("submitting %s failed: %s", action.submission_id, exc)
                more = self.ledger.on_submit_error(rid, action.submission_id, str(exc))
            else:
                self.submit_times[action.submission_id] = time.time()
                log.info("%s %s (model %s v%s, attempt %d)", "adopted" if adopted else "submitted",
                         action.submission_id, action.request.model, action.request.model_version, action.attempt)
                more = self.ledger.on_submitted(rid, action.submission_id, adopted=adopted)
            self.save()
            queue.extend(more)
        self.save()


def serve(dispatcher: Dispatcher, consumer: Any, *, poll_interval_s: float = 1.0,
          dead_letter: Callable[[DeadLetter, bytes | None], None] | None = None,
          check: Callable[[RetrainRequest], Refusal | None] | None = None,
          should_stop: Callable[[], bool] = lambda: False, live: Callable[[], Any] | None = None) -> None:
    """The consume -> check -> record -> commit -> submit -> poll loop (kafka-python consumer).

    A record that is no retrain request, or that ``check`` refuses (:func:`trainers.dispatch.validate.check_request`),
    is never submitted: it goes to ``dead_letter(letter, key)`` (the worker's dead-letter format, to
    ``<topic>.dlq``) and is counted in ``driftloop_retrain_requests_refused_total{reason}``.  ``live``: called once per
    turn (the live gate's poll of the labelled and model-updates topics, :func:`trainers.dispatch.live_step.poll`)."""
    dispatcher.recover()
    last_poll = 0.0
    while not should_stop():
        batch = consumer.poll(timeout_ms=int(max(0.05, poll_interval_s) * 1000))
        for tp, msgs in batch.items():
            for m in msgs:
                try:
                    req = RetrainRequest.from_dict(decode_json(m.value))
                    refusal = check(req) if check is not None else None
                    if refusal is not None:
                        raise InvalidRecord(refusal.reason, refusal.error)
                except InvalidRecord as err:
                    log.warning("refused retrain request at %s[%d]@%d (%s): %s", tp.topic, tp.partition, m.offset,
                                err.reason, err)
                    if dispatcher.metrics is not None:
                        dispatcher.metrics.refused(err.reason)
                    if dead_letter is not None:
                        dead_letter(DeadLetter.from_bytes(tp.topic, tp.partition, m.offset, err, m.value),
                                    DeadLetter.key_for(m.key))
                    continue
                dispatcher.handle(req)
        if batch:
            consumer.commit()
        if live is not None:
            try:
                live()
            except Exception:  # noqa: BLE001 - the live gate must never stop retrain dispatch; its state was not saved
                log.exception("live gate: a batch of the labelled or model-updates topics failed; dispatching goes on")
                if dispatcher.metrics is not None:
                    dispatcher.metrics.live_verdict("-", "error", carried_out=False)
        if time.monotonic() - last_poll >= poll_interval_s:
            dispatcher.poll()
            last_poll = time.monotonic()


# --------------------------------------------------------------------------- command


def NEEDS_KAFKA(args: argparse.Namespace) -> bool:
    """streams/cli/main.py checks the broker answers before run(), unless only the local cluster is asked about."""
    return not (args.stop_local_cluster or args.cluster_info)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ray-address", help="Ray dashboard address (overrides dispatcher.ray_address)")
    parser.add_argument("--registry", help="registry folder (overrides dispatcher.registry)")
    parser.add_argument("--labelled-file", help="training data from this JSONL instead of the labelled topic")
    parser.add_argument("--max-seconds", type=float, default=0.0, help="stop after this long (0: run until killed)")
    parser.add_argument("--until-idle", action="store_true",
                        help="stop once no job is in flight and no request arrived for a poll interval")
    parser.add_argument("--stop-local-cluster", action="store_true",
                        help="stop the local Ray cluster this dispatcher started earlier, then exit")
    parser.add_argument("--cluster-info", action="store_true", help="print the local Ray cluster's address and exit")


def job_settings(raw: Mapping[str, Any], registry: str, state_dir: Path) -> tuple[dict[str, Any], dict[str, str], Any]:
    """What a retrain job is told: its config (``--settings``), its environment, and the dispatcher's own Kafka
    connection.  No secret in either: Ray stores the entrypoint, the metadata and the runtime_env and shows them in
    its dashboard, so the Kafka password reaches the job as the path of a 0600 file (``kafka.sasl_password_file``)."""
    from streams import config as C
    from streams.adapters.kafka_clients import child_section, from_settings
    from trainers.reference import reference_settings

    kafka = C.kafka_settings(raw)
    conn = from_settings(kafka)
    settings = {"kafka": child_section(conn, kafka, state_dir), "topics": raw.get("topics") or {},
                "trainers": dict(raw.get("trainers") or {}, registry=registry),
                "licences": dict(raw.get("licences") or {}),  # the job's licence gate uses the operator's policy
                "registry": dict(raw.get("registry") or {}),  # signing: allow_unsigned, key_file (a path, never the key)
                "promotion": dict(raw.get("promotion") or {}),  # shadow: a candidate that passes goes to shadow first
                # the candidate's reference profile goes where the worker reads it, binned as the worker bins
                "worker": {"reference_dir": str(Path(reference_settings(raw)[0]).resolve())},
                "drift": dict(raw.get("drift") or {})}
    key_env = {k: os.environ[k] for k in ("DRIFTLOOP_REGISTRY_KEY_FILE",) if os.environ.get(k)}
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers, "DRIFTLOOP_HOME": str(C.home()), **key_env}
    return settings, env, conn


def run(args: argparse.Namespace) -> int:
    from streams import config as C
    from trainers.dispatch.ray_cluster import connect_or_start, job_client, load_recorded_cluster, stop_local_cluster
    from trainers.retrain_job import TrainerConfig, check_trainer_config

    raw = C.load_file(args.config)
    cfg = C.section(DispatcherConfig, raw.get("dispatcher"), "dispatcher")
    tcfg = C.section(TrainerConfig, raw.get("trainers"), "trainers")
    try:
        check_trainer_config(tcfg)  # a bad learner/gate key fails here, not inside the first Ray job
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    state_dir = Path(cfg.state_dir or C.home() / "dispatcher")
    ray_state = state_dir / "ray"
    if args.stop_local_cluster:
        print("stopped" if stop_local_cluster(ray_state) else "no local cluster was running")
        return 0
    if args.cluster_info:
        cluster = load_recorded_cluster(ray_state)
        print(json.dumps(cluster.to_dict() if cluster else None, indent=2))
        return 0

    address = args.ray_address or cfg.ray_address
    cluster = None
    if not address:
        cluster, started = connect_or_start(ray_state, num_cpus=cfg.local_num_cpus, num_gpus=cfg.local_num_gpus,
                                            object_store_mb=cfg.local_object_store_mb,
                                            dashboard_port=cfg.local_dashboard_port, token_auth=cfg.token_auth)
        address = cluster.dashboard_url
        log.info("%s local Ray cluster: dashboard %s", "started" if started else "reusing", address)
    python = cfg.entrypoint_python or (sys.executable if cluster is not None else "python")
    registry = str(Path(args.registry or cfg.registry or tcfg.registry or C.home() / "registry").resolve())
    topics = C.topics(raw)
    settings, extra_env, conn = job_settings(raw, registry, state_dir)
    if os.environ.get("DRIFTLOOP_REGISTRY_KEY") and cluster is None:
        log.warning("DRIFTLOOP_REGISTRY_KEY is set here but is not sent to the Ray cluster at %s (a secret in a job's "
                    "runtime_env would show in the Ray dashboard): set it on the Ray nodes too, or give every process "
                    "the key as a file (DRIFTLOOP_REGISTRY_KEY_FILE or registry.key_file)", address)
    jobs = JobsAdapter(job_client(address), settings=settings, registry=registry, python=python,
                       runtime_env=cfg.runtime_env, labelled_file=args.labelled_file or cfg.labelled_file,
                       entrypoint_num_cpus=cfg.entrypoint_num_cpus, extra_env=extra_env)

    from kafka import KafkaConsumer, KafkaProducer

    producer = KafkaProducer(**conn.kafka_python(), acks="all", enable_idempotence=True,
                             value_serializer=lambda s: s if isinstance(s, bytes) else s.encode("utf-8"))
    consumer = KafkaConsumer(topics.retrain_requests, **conn.kafka_python(),
                             group_id=cfg.group_id, enable_auto_commit=False, auto_offset_reset="earliest")

    def publish(result: RetrainResult) -> None:
        log.info("result %s: %s %s", result.request_id, result.status, result.error or "")
        producer.send(topics.retrain_results, key=result.request_id.encode(), value=result.to_json())
        producer.flush(timeout=30)

    def dead_letter(dl: DeadLetter, key: bytes | None) -> None:
        # written before the offset is committed (get() raises when the broker refuses it: nothing is lost)
        producer.send(topics.dlq(topics.retrain_requests), key=key, value=dl.to_bytes()).get(timeout=30)

    from trainers.registry import ModelRegistry

    known = ModelRegistry(registry)

    def check(req: RetrainRequest) -> Refusal | None:
        return check_request(req, known.known_versions)

    from trainers.dispatch.metrics import DispatcherMetrics

    metrics = DispatcherMetrics()
    if cfg.metrics_port:
        try:
            metrics.serve(cfg.metrics_port, cfg.metrics_host)
            log.info("dispatcher metrics on %s:%d/metrics", cfg.metrics_host, cfg.metrics_port)
        except OSError as exc:  # a second dispatcher (or anything) on the port: dispatch anyway
            log.warning("dispatcher metrics: cannot listen on port %d (%s); running without /metrics. Set "
                        "dispatcher.metrics_port to a free port (0: none)", cfg.metrics_port, exc)
    dispatcher = Dispatcher.open(state_dir / "ledger.json", jobs, publish, cfg.max_attempts, cfg.submission_prefix,
                                 metrics)
    live_consumer, live = _live_gate(raw, conn, cfg, topics, known, state_dir, producer, metrics)
    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    deadline = time.monotonic() + args.max_seconds if args.max_seconds else None
    idle = {"since": time.monotonic(), "n": len(dispatcher.ledger.entries)}

    def should_stop() -> bool:
        if stop["flag"] or (deadline is not None and time.monotonic() > deadline):
            return True
        if args.until_idle:
            n = len(dispatcher.ledger.entries)
            if dispatcher.ledger.in_flight() or n != idle["n"]:
                idle.update(since=time.monotonic(), n=n)
            return time.monotonic() - idle["since"] > max(5.0, 3 * cfg.poll_interval_s)
        return False

    log.info("dispatching %s -> Ray jobs at %s (registry %s)", topics.retrain_requests, address, registry)
    try:
        serve(dispatcher, consumer, poll_interval_s=cfg.poll_interval_s, dead_letter=dead_letter, check=check,
              should_stop=should_stop, live=live)
    finally:
        consumer.close()
        if live_consumer is not None:
            live_consumer.close()
        producer.flush(timeout=10)
        producer.close()
        if cluster is not None and cfg.stop_local_cluster_on_exit:
            cluster.stop()
    return 0


def _live_gate(raw: Mapping[str, Any], conn: Any, cfg: DispatcherConfig, topics: Any, registry: Any, state_dir: Path,
               producer: Any, metrics: Any) -> tuple[Any, Callable[[], Any] | None]:
    """The live gate's consumer (labelled + model-updates topics, group ``<group_id>-live``) and its poll, or
    (None, None) when ``promotion.shadow`` and ``promotion.watch`` are both off."""
    from kafka import KafkaConsumer

    from streams import config as C
    from trainers.dispatch.live_step import LiveStep, poll
    from trainers.promotion.live_gate import LiveGateConfig

    pcfg = C.section(LiveGateConfig, raw.get("promotion"), "promotion")
    if not (pcfg.shadow or pcfg.watch):
        return None, None

    def publish_update(update: Any) -> None:
        producer.send(topics.model_updates, key=update.model.encode(), value=update.to_json()).get(timeout=30)

    def publish_alert(alert: Any) -> None:
        producer.send(topics.alerts, key=alert.alert_id.encode(), value=alert.to_json()).get(timeout=30)

    from trainers.licences import LicencePolicy

    step = LiveStep.open(pcfg, registry, state_dir / "live_gate.json", publish_update=publish_update,
                         publish_alert=publish_alert, metrics=metrics,
                         licence_policy=C.section(LicencePolicy, raw.get("licences"), "licences"))
    consumer = KafkaConsumer(topics.labelled, topics.model_updates, **conn.kafka_python(),
                             group_id=cfg.group_id + "-live", enable_auto_commit=False, auto_offset_reset="earliest")
    log.info("live gate: %s and %s (shadow %s, watch %s)", topics.labelled, topics.model_updates,
             "on" if pcfg.shadow else "off", "on" if pcfg.watch else "off")
    # not 0 ms: kafka-python joins the group and fetches only within a poll's time (0 returns before it ever joins)
    return consumer, lambda: poll(step, consumer, updates_topic=topics.model_updates, timeout_ms=200)
